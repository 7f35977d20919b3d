// SPDX-License-Identifier: MIT
/*
 * Unit tests for vpnkit/dhcp.c, through the public API: DHCP messages are
 * built here by hand, wrapped in Ethernet, IPv4 and UDP, fed to
 * vpnkit_port_input, and the frames the port's send callback receives are
 * checked byte for byte, options included, against what RFC 2131 and
 * RFC 2132 say the answer must be. Malformed requests must be dropped and
 * counted as bad, with no answer.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <base/endian.h>
#include <base/test.h>
#include <vpnkit/vpnkit.h>

#include "frames.h"
#include "rig.h"

#define FRAME_CAP 2048

static struct in_addr addr4(const char *s)
{
	struct in_addr a;

	ASSERT_EQ_INT(inet_pton(AF_INET, s, &a), 1);
	return a;
}

/* rig.h's configuration, with a resolv.conf that does not exist: with
 * DNS off, DHCP hands out the host's nameservers, and this machine's
 * must not leak into the expected options. */
static void dhcp_config(struct vpnkit_config *cfg)
{
	rig_config(cfg);
	cfg->resolv_conf = "/nonexistent/resolv.conf";
}

static void dhcp_rig(struct rig *r)
{
	struct vpnkit_config cfg;

	dhcp_config(&cfg);
	rig_start(r, &cfg, 0);
}

static struct in_addr rig_ip(const struct rig *r)
{
	struct in_addr a;

	memcpy(&a, r->ip, 4);
	return a;
}

/* A DHCP message from the VM (MAC mac) on port: Ethernet broadcast,
 * IPv4 src to 255.255.255.255, UDP 68 -> 67. */
static void send_on(struct vpnkit_port *port, const uint8_t mac[6],
		    struct in_addr src, const uint8_t *msg, size_t len)
{
	static const uint8_t bcast_mac[6] = {
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff
	};
	uint8_t f[FRAME_CAP];
	struct fr_l3 a;
	struct in_addr dst = addr4("255.255.255.255");

	memset(&a, 0, sizeof(a));
	memcpy(a.src_mac, mac, 6);
	memcpy(a.dst_mac, bcast_mac, 6);
	a.af = 4;
	memcpy(a.src, &src, 4);
	memcpy(a.dst, &dst, 4);
	ASSERT_OK(vpnkit_port_input(port, NULL, f,
				    fr_udp(f, &a, 68, 67, msg, len)));
}

static void send_msg(struct rig *r, struct in_addr src, const uint8_t *msg,
		     size_t len)
{
	send_on(r->port, r->mac, src, msg, len);
}

/* A message sent before the VM has an address. */
static void send_unbound(struct rig *r, const uint8_t *msg, size_t len)
{
	send_msg(r, addr4("0.0.0.0"), msg, len);
}

/* The fixed part of a BOOTREQUEST and the magic cookie; options after. */
static size_t bootp_request(uint8_t *m, const uint8_t mac[6], uint32_t xid,
			    struct in_addr ciaddr)
{
	memset(m, 0, 240);
	m[0] = 1;
	m[1] = 1;
	m[2] = 6;
	store_be32(m + 4, xid);
	store_be16(m + 10, 0x8000); /* broadcast, as udhcpc asks */
	memcpy(m + 12, &ciaddr, 4);
	memcpy(m + 28, mac, 6);
	store_be32(m + 236, 0x63825363);
	return 240;
}

static size_t opt(uint8_t *m, size_t pos, uint8_t code, const void *val,
		  size_t n)
{
	m[pos] = code;
	m[pos + 1] = (uint8_t)n;
	memcpy(m + pos + 2, val, n);
	return pos + 2 + n;
}

static size_t opt_type(uint8_t *m, size_t pos, uint8_t type)
{
	return opt(m, pos, 53, &type, 1);
}

/* ---------------------------------------------------------------- checks */

/*
 * The next frame (already sent: DHCP answers at once) is a BOOTREPLY from
 * the gateway, UDP 67 -> 68, to dst (IP) and the VM's MAC, checksums
 * right (rig.h checks them). Returns the DHCP payload and its length.
 */
static const uint8_t *check_reply(struct rig *r, struct in_addr dst,
				  size_t *len)
{
	static struct fr_view v;

	rig_expect(r, 0, &v);
	ASSERT_EQ_MEM(v.dst_mac, r->mac, 6);
	ASSERT_EQ_MEM(v.src_mac, r->gw_mac, 6);
	ASSERT_EQ_INT(v.af, 4);
	ASSERT_EQ_U64(v.proto, IPPROTO_UDP);
	ASSERT_EQ_MEM(v.src, r->gw, 4);
	ASSERT_EQ_MEM(v.dst, &dst, 4);
	ASSERT_EQ_U64(v.sport, 67);
	ASSERT_EQ_U64(v.dport, 68);
	ASSERT_GE_U64(v.len, 240);
	*len = v.len;
	return v.data;
}

/* The fixed fields of a reply: BOOTREPLY for this xid and MAC. */
static void check_bootp(const struct rig *r, const uint8_t *m, uint32_t xid,
			struct in_addr ciaddr, struct in_addr yiaddr)
{
	uint8_t chaddr[16] = { 0 };
	uint8_t zeros[192] = { 0 };

	memcpy(chaddr, r->mac, 6);
	ASSERT_EQ_U64(m[0], 2);
	ASSERT_EQ_U64(m[1], 1);
	ASSERT_EQ_U64(m[2], 6);
	ASSERT_EQ_U64(m[3], 0);
	ASSERT_EQ_U64(load_be32(m + 4), xid);
	ASSERT_EQ_U64(load_be16(m + 8), 0);
	ASSERT_EQ_U64(load_be16(m + 10), 0x8000);
	ASSERT_EQ_MEM(m + 12, &ciaddr, 4);
	ASSERT_EQ_MEM(m + 16, &yiaddr, 4);
	ASSERT_EQ_U64(load_be32(m + 20), 0); /* siaddr */
	ASSERT_EQ_U64(load_be32(m + 24), 0); /* giaddr */
	ASSERT_EQ_MEM(m + 28, chaddr, 16);
	ASSERT_EQ_MEM(m + 44, zeros, 192); /* sname, file */
	ASSERT_EQ_U64(load_be32(m + 236), 0x63825363);
}

/* The options, exactly: want[] then END, then zero padding only. */
static void check_options(const uint8_t *m, size_t len, const uint8_t *want,
			  size_t want_len)
{
	ASSERT_GE_U64(len, 240 + want_len + 1);
	ASSERT_EQ_MEM(m + 240, want, want_len);
	ASSERT_EQ_U64(m[240 + want_len], 255);
	for (size_t i = 240 + want_len + 1; i < len; i++)
		ASSERT_EQ_U64(m[i], 0);
	/* RFC 1542: at least 300 bytes of BOOTP. */
	ASSERT_GE_U64(len, 300);
}

/* The options an OFFER or ACK carries with the default configuration
 * (plus domain and search when set), in the order dhcp.c writes them. */
static size_t default_options(uint8_t *w, uint8_t type, bool lease)
{
	static const uint8_t gw[4] = { 192, 168, 65, 1 };
	static const uint8_t mask[4] = { 255, 255, 255, 0 };
	static const uint8_t bcast[4] = { 192, 168, 65, 255 };
	uint8_t b[4];
	size_t p = 0;

	p = opt(w, p, 53, &type, 1);
	p = opt(w, p, 54, gw, 4);
	if (lease) {
		store_be32(b, 7200);
		p = opt(w, p, 51, b, 4);
		store_be32(b, 3600);
		p = opt(w, p, 58, b, 4);
		store_be32(b, 6300);
		p = opt(w, p, 59, b, 4);
	}
	p = opt(w, p, 1, mask, 4);
	p = opt(w, p, 28, bcast, 4);
	p = opt(w, p, 3, gw, 4);
	return p;
}

/* ---------------------------------------------------------------- cases */

TEST(discover_gets_offer_with_every_option)
{
	struct vpnkit_config cfg;
	struct rig r;
	uint8_t m[600], want[600];
	const uint8_t *rep;
	size_t n, len, w;
	static const uint8_t gw[4] = { 192, 168, 65, 1 };
	static const uint8_t search[] = { 1,   'a', 7,	 'e', 'x', 'a',
					  'm', 'p', 'l', 'e', 0,   1,
					  'b', 3,   'c', 'o', 'm', 0 };
	uint8_t prl[] = { 1, 3, 6, 15, 26, 28, 51, 58, 59, 119 };

	dhcp_config(&cfg);
	cfg.dns_mode = VPNKIT_DNS_FORWARD;
	cfg.domain = "docker.test";
	cfg.search = "a.example b.com.";
	cfg.mtu = 9000;
	rig_start(&r, &cfg, 0);

	n = bootp_request(m, r.mac, 0x11223344, addr4("0.0.0.0"));
	n = opt_type(m, n, 1);
	n = opt(m, n, 55, prl, sizeof(prl));
	m[n++] = 255;
	send_unbound(&r, m, n);
	rep = check_reply(&r, addr4("255.255.255.255"), &len);
	check_bootp(&r, rep, 0x11223344, addr4("0.0.0.0"), rig_ip(&r));
	ASSERT_EQ_U64(rig_ip(&r).s_addr, addr4("192.168.65.3").s_addr);

	w = default_options(want, 2, true);
	w = opt(want, w, 6, gw, 4);
	store_be16(m, 9000);
	w = opt(want, w, 26, m, 2);
	w = opt(want, w, 15, "docker.test", 11);
	w = opt(want, w, 119, search, sizeof(search));
	check_options(rep, len, want, w);
	ASSERT_EQ_U64(rig_stats(&r).bad, 0);
	rig_stop(&r);
}

TEST(request_selecting_gets_ack)
{
	struct rig r;
	uint8_t m[600], want[600];
	const uint8_t *rep;
	size_t n, len, w;
	struct in_addr gw = addr4("192.168.65.1");

	dhcp_rig(&r);
	n = bootp_request(m, r.mac, 7, addr4("0.0.0.0"));
	n = opt_type(m, n, 3);
	n = opt(m, n, 54, &gw, 4);
	n = opt(m, n, 50, r.ip, 4);
	m[n++] = 255;
	send_unbound(&r, m, n);
	rep = check_reply(&r, addr4("255.255.255.255"), &len);
	check_bootp(&r, rep, 7, addr4("0.0.0.0"), rig_ip(&r));
	/* DNS off: the host's servers, and this host's file names none. */
	w = default_options(want, 5, true);
	store_be16(m, 1500);
	w = opt(want, w, 26, m, 2);
	check_options(rep, len, want, w);
	rig_stop(&r);
}

TEST(request_init_reboot_for_other_address_gets_nak)
{
	struct rig r;
	uint8_t m[600], want[64];
	const uint8_t *rep;
	size_t n, len, w;
	struct in_addr other = addr4("192.168.65.77");
	static const uint8_t gw[4] = { 192, 168, 65, 1 };

	dhcp_rig(&r);
	n = bootp_request(m, r.mac, 9, addr4("0.0.0.0"));
	n = opt_type(m, n, 3);
	n = opt(m, n, 50, &other, 4);
	m[n++] = 255;
	send_unbound(&r, m, n);
	rep = check_reply(&r, addr4("255.255.255.255"), &len);
	check_bootp(&r, rep, 9, addr4("0.0.0.0"), addr4("0.0.0.0"));
	w = opt(want, 0, 53, (uint8_t[]){ 6 }, 1);
	w = opt(want, w, 54, gw, 4);
	check_options(rep, len, want, w);

	/* The same address the port owns: ACK. */
	n = bootp_request(m, r.mac, 10, addr4("0.0.0.0"));
	n = opt_type(m, n, 3);
	n = opt(m, n, 50, r.ip, 4);
	m[n++] = 255;
	send_unbound(&r, m, n);
	rep = check_reply(&r, addr4("255.255.255.255"), &len);
	ASSERT_EQ_U64(rep[242], 5);
	rig_stop(&r);
}

TEST(request_for_another_server_is_ignored)
{
	struct rig r;
	uint8_t m[600];
	size_t n;
	struct in_addr other = addr4("192.168.65.100");

	dhcp_rig(&r);
	n = bootp_request(m, r.mac, 11, addr4("0.0.0.0"));
	n = opt_type(m, n, 3);
	n = opt(m, n, 54, &other, 4);
	n = opt(m, n, 50, r.ip, 4);
	m[n++] = 255;
	send_unbound(&r, m, n);
	rig_expect_none(&r, 0);
	ASSERT_EQ_U64(rig_stats(&r).bad, 0);
	rig_stop(&r);
}

TEST(renew_is_answered_at_the_client_address)
{
	struct rig r;
	uint8_t m[600];
	const uint8_t *rep;
	size_t n, len;

	dhcp_rig(&r);
	n = bootp_request(m, r.mac, 12, rig_ip(&r));
	n = opt_type(m, n, 3);
	m[n++] = 255;
	send_msg(&r, rig_ip(&r), m, n);
	rep = check_reply(&r, rig_ip(&r), &len);
	check_bootp(&r, rep, 12, rig_ip(&r), rig_ip(&r));
	ASSERT_EQ_U64(rep[242], 5);

	/* Renewing an address that is not the port's: NAK, broadcast. */
	n = bootp_request(m, r.mac, 13, addr4("192.168.65.200"));
	n = opt_type(m, n, 3);
	m[n++] = 255;
	send_msg(&r, rig_ip(&r), m, n);
	rep = check_reply(&r, addr4("255.255.255.255"), &len);
	check_bootp(&r, rep, 13, addr4("0.0.0.0"), addr4("0.0.0.0"));
	ASSERT_EQ_U64(rep[242], 6);
	rig_stop(&r);
}

TEST(inform_gets_configuration_without_lease)
{
	struct rig r;
	uint8_t m[600], want[600];
	const uint8_t *rep;
	size_t n, len, w;

	dhcp_rig(&r);
	n = bootp_request(m, r.mac, 14, rig_ip(&r));
	n = opt_type(m, n, 8);
	m[n++] = 255;
	send_msg(&r, rig_ip(&r), m, n);
	rep = check_reply(&r, rig_ip(&r), &len);
	check_bootp(&r, rep, 14, rig_ip(&r), addr4("0.0.0.0"));
	w = default_options(want, 5, false);
	store_be16(m, 1500);
	w = opt(want, w, 26, m, 2);
	check_options(rep, len, want, w);
	rig_stop(&r);
}

TEST(release_and_decline_get_no_answer)
{
	struct rig r;
	uint8_t m[600];
	const uint8_t *rep;
	size_t n, len;

	dhcp_rig(&r);
	n = bootp_request(m, r.mac, 15, rig_ip(&r));
	n = opt_type(m, n, 7);
	m[n++] = 255;
	send_msg(&r, rig_ip(&r), m, n);
	n = bootp_request(m, r.mac, 16, addr4("0.0.0.0"));
	n = opt_type(m, n, 4);
	n = opt(m, n, 50, r.ip, 4);
	m[n++] = 255;
	send_unbound(&r, m, n);
	rig_expect_none(&r, 0);
	ASSERT_EQ_U64(rig_stats(&r).bad, 0);
	/* The address stays the port's: a new DISCOVER is offered it. */
	n = bootp_request(m, r.mac, 17, addr4("0.0.0.0"));
	n = opt_type(m, n, 1);
	m[n++] = 255;
	send_unbound(&r, m, n);
	rep = check_reply(&r, addr4("255.255.255.255"), &len);
	ASSERT_EQ_MEM(rep + 16, r.ip, 4);
	rig_stop(&r);
}

TEST(preferred_ip_is_offered)
{
	struct vpnkit_port_config pcfg = { .uuid = NULL };
	struct vpnkit_port *port;
	struct capture cap = { .budget = -1 };
	struct rig r;
	uint8_t m[600], mac[6];
	struct fr_view v;
	size_t n;

	/* A second VM on the switch, asking for .42 when it attaches. */
	dhcp_rig(&r);
	pcfg.preferred_ip = addr4("192.168.65.42");
	ASSERT_OK(vpnkit_port_new(r.vk, &pcfg, &cap_ops, &cap, &port));
	vpnkit_port_mac(port, mac);
	cap.next = cap.n; /* past the router advertisement */
	n = bootp_request(m, mac, 18, addr4("0.0.0.0"));
	n = opt_type(m, n, 1);
	m[n++] = 255;
	send_on(port, mac, addr4("0.0.0.0"), m, n);
	ASSERT_EQ_U64(cap.n, cap.next + 1);
	ASSERT_EQ_PTR(fr_parse(&v, cap.f[cap.next].data, cap.f[cap.next].len,
			       false),
		      NULL);
	ASSERT_EQ_MEM(v.dst_mac, mac, 6);
	ASSERT_GE_U64(v.len, 240);
	ASSERT_EQ_U64(load_be32(v.data + 16), 0xc0a8412a);
	rig_expect_none(&r, 0); /* and nothing for the first VM */
	vpnkit_port_free(port);
	cap_release(&cap);
	rig_stop(&r);
}

/* A search list long enough for three option 119 instances: 25 names
 * of 22 bytes each in wire form. */
#define LONG_NAMES 25
#define LONG_NAME_WIRE 22

static void long_search(char *s, size_t cap)
{
	size_t p = 0;

	for (int i = 0; i < LONG_NAMES && p + 40 < cap; i++)
		p += (size_t)snprintf(s + p, cap - p,
				      "%sdomain%02d.example.org", i ? " " : "",
				      i);
}

TEST(long_search_list_is_split_when_client_takes_it)
{
	struct vpnkit_config cfg;
	struct rig r;
	char search[1024];
	uint8_t m[2048], joined[1024];
	const uint8_t *rep;
	size_t n, len, pos, jlen = 0;
	unsigned instances = 0;

	long_search(search, sizeof(search));
	dhcp_config(&cfg);
	cfg.search = search;
	rig_start(&r, &cfg, 0);

	n = bootp_request(m, r.mac, 19, addr4("0.0.0.0"));
	n = opt_type(m, n, 1);
	n = opt(m, n, 57, (uint8_t[]){ 0x05, 0xdc }, 2); /* 1500 */
	m[n++] = 255;
	send_unbound(&r, m, n);
	rep = check_reply(&r, addr4("255.255.255.255"), &len);
	ASSERT_LE_U64(len, 1500 - 28);
	/* Concatenate the option 119 instances (RFC 3396) and compare with
	 * the names encoded here. */
	for (pos = 240; pos < len && rep[pos] != 255;) {
		ASSERT_LT_U64(pos + 1, len);
		if (rep[pos] == 119) {
			instances++;
			ASSERT_LE_U64(jlen + rep[pos + 1], sizeof(joined));
			memcpy(joined + jlen, rep + pos + 2, rep[pos + 1]);
			jlen += rep[pos + 1];
		}
		pos += 2 + (size_t)rep[pos + 1];
	}
	ASSERT_EQ_U64(instances, 3);
	ASSERT_EQ_U64(jlen, LONG_NAMES * LONG_NAME_WIRE);
	for (int i = 0; i < LONG_NAMES; i++) {
		uint8_t name[LONG_NAME_WIRE];
		char label[9];

		snprintf(label, sizeof(label), "domain%02d", i);
		name[0] = 8;
		memcpy(name + 1, label, 8);
		memcpy(name + 9,
		       "\x07"
		       "example"
		       "\x03"
		       "org",
		       13);
		ASSERT_EQ_MEM(joined + i * LONG_NAME_WIRE, name,
			      LONG_NAME_WIRE);
	}

	/* Without option 57 the client takes 576 bytes: the list is left
	 * out, the rest still sent. */
	n = bootp_request(m, r.mac, 20, addr4("0.0.0.0"));
	n = opt_type(m, n, 1);
	m[n++] = 255;
	send_unbound(&r, m, n);
	rep = check_reply(&r, addr4("255.255.255.255"), &len);
	ASSERT_LE_U64(len, 576 - 28);
	for (pos = 240; pos < len && rep[pos] != 255;
	     pos += 2 + (size_t)rep[pos + 1])
		ASSERT_NE_U64(rep[pos], 119);
	rig_stop(&r);
}

TEST(dns_off_hands_out_the_hosts_servers)
{
	struct vpnkit_config cfg;
	struct rig r;
	char path[4096];
	uint8_t m[600];
	const uint8_t *rep;
	size_t n, len, pos;
	FILE *f;
	static const uint8_t want[] = { 6, 8, 10, 1, 2, 3, 10, 9, 9, 9 };

	snprintf(path, sizeof(path), "%s/resolv.conf", test_tmpdir());
	f = fopen(path, "w");
	ASSERT_NOT_NULL(f);
	fputs("# test\nsearch example.org\nnameserver 127.0.0.53\n"
	      "nameserver 10.1.2.3\nnameserver ::1\n"
	      "nameserver 10.1.2.4:5353\nnameserver 10.9.9.9 # comment\n",
	      f);
	fclose(f);
	dhcp_config(&cfg);
	cfg.resolv_conf = path;
	rig_start(&r, &cfg, 0);
	n = bootp_request(m, r.mac, 21, addr4("0.0.0.0"));
	n = opt_type(m, n, 1);
	m[n++] = 255;
	send_unbound(&r, m, n);
	rep = check_reply(&r, addr4("255.255.255.255"), &len);
	for (pos = 240; pos < len && rep[pos] != 6;
	     pos += 2 + (size_t)rep[pos + 1])
		ASSERT_NE_U64(rep[pos], 255);
	ASSERT_LE_U64(pos + sizeof(want), len);
	ASSERT_EQ_MEM(rep + pos, want, sizeof(want));
	rig_stop(&r);
}

/* Send a malformed message and check it is dropped as bad, unanswered. */
static void expect_bad(struct rig *r, const uint8_t *m, size_t n)
{
	uint64_t bad = rig_stats(r).bad;

	send_unbound(r, m, n);
	rig_expect_none(r, 0);
	ASSERT_EQ_U64(rig_stats(r).bad, bad + 1);
}

TEST(malformed_requests_are_dropped_and_counted)
{
	struct rig r;
	uint8_t good[600], m[600];
	size_t n;

	dhcp_rig(&r);
	n = bootp_request(good, r.mac, 22, addr4("0.0.0.0"));
	n = opt_type(good, n, 1);
	good[n++] = 255;

	memcpy(m, good, n);
	m[0] = 2; /* BOOTREPLY */
	expect_bad(&r, m, n);
	memcpy(m, good, n);
	m[1] = 6; /* IEEE 802 */
	expect_bad(&r, m, n);
	memcpy(m, good, n);
	m[2] = 16;
	expect_bad(&r, m, n);
	memcpy(m, good, n);
	m[239] ^= 1; /* magic cookie */
	expect_bad(&r, m, n);
	expect_bad(&r, good, 239); /* shorter than the cookie */
	expect_bad(&r, good, 100);
	expect_bad(&r, good, 0);
	/* Options: no message type at all. */
	memcpy(m, good, 240);
	m[240] = 255;
	expect_bad(&r, m, 241);
	/* An option running past the end. */
	memcpy(m, good, 240);
	m[240] = 12;
	m[241] = 40;
	m[242] = 'h';
	m[243] = 'o';
	m[244] = 's';
	m[245] = 't';
	expect_bad(&r, m, 246);
	/* Message type twice, of the wrong length, out of range, ours. */
	memcpy(m, good, n - 1);
	n = opt_type(m, n - 1, 3);
	m[n++] = 255;
	expect_bad(&r, m, n);
	n = opt(m, 240, 53, (uint8_t[]){ 1, 1 }, 2);
	m[n++] = 255;
	expect_bad(&r, m, n);
	n = opt_type(m, 240, 9);
	m[n++] = 255;
	expect_bad(&r, m, n);
	n = opt_type(m, 240, 0);
	m[n++] = 255;
	expect_bad(&r, m, n);
	n = opt_type(m, 240, 2); /* an OFFER from the VM */
	m[n++] = 255;
	expect_bad(&r, m, n);
	/* Requested address of the wrong length. */
	n = opt_type(m, 240, 3);
	n = opt(m, n, 50, "abc", 3);
	m[n++] = 255;
	expect_bad(&r, m, n);
	/* A REQUEST naming no address at all. */
	n = opt_type(m, 240, 3);
	m[n++] = 255;
	expect_bad(&r, m, n);

	/* And the good one still works; a list ending without END too. */
	n = bootp_request(good, r.mac, 23, addr4("0.0.0.0"));
	n = opt_type(good, n, 1);
	send_unbound(&r, good, n);
	check_reply(&r, addr4("255.255.255.255"), &n);
	rig_stop(&r);
}

static const struct test_case tests[] = {
	TEST_CASE(discover_gets_offer_with_every_option),
	TEST_CASE(request_selecting_gets_ack),
	TEST_CASE(request_init_reboot_for_other_address_gets_nak),
	TEST_CASE(request_for_another_server_is_ignored),
	TEST_CASE(renew_is_answered_at_the_client_address),
	TEST_CASE(inform_gets_configuration_without_lease),
	TEST_CASE(release_and_decline_get_no_answer),
	TEST_CASE(preferred_ip_is_offered),
	TEST_CASE(long_search_list_is_split_when_client_takes_it),
	TEST_CASE(dns_off_hands_out_the_hosts_servers),
	TEST_CASE(malformed_requests_are_dropped_and_counted),
};

TEST_MAIN(tests);
