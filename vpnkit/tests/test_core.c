// SPDX-License-Identifier: MIT
/*
 * Unit tests for libvpnkit's core (core.c, arp.c, ip.c, fwd.c's specs,
 * pcap.c), through the public API only: configuration checks, port
 * identities, ARP, the switch between two ports, the validation of every
 * IPv4 and IPv6 frame a VM can send (with real host sockets listening
 * behind 192.168.65.2, so that a frame wrongly let through would show
 * up there), the counters, forward specs, the capture file and the
 * embedder's watches.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <base/endian.h>
#include <base/test.h>
#include <vpnkit/vpnkit.h>

#include "frames.h"
#include "rig.h"

static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
static const uint8_t zero_mac[6] = { 0 };

static struct in_addr in4(const char *s)
{
	struct in_addr a;

	ASSERT_EQ_INT(inet_pton(AF_INET, s, &a), 1);
	return a;
}

/* ---------------------------------------------------------------- config */

TEST(core_config_rejects_nonsense)
{
	struct vpnkit_config cfg;
	struct vpnkit *vk;
	int i;

	for (i = 0; i < 11; i++) {
		rig_config(&cfg);
		cfg.log.fn = NULL; /* the reasons are expected */
		switch (i) {
		case 0:
			cfg.prefix_len = 31;
			break;
		case 1:
			cfg.prefix_len = 4;
			break;
		case 2:
			cfg.subnet = in4("192.168.65.1"); /* host bits */
			break;
		case 3:
			cfg.gateway = in4("10.0.0.1");
			break;
		case 4:
			cfg.host_ip = in4("10.0.0.2");
			break;
		case 5:
			cfg.pool_first = in4("192.168.65.200");
			cfg.pool_last = in4("192.168.65.100");
			break;
		case 6:
			cfg.mtu = 575;
			break;
		case 7:
			cfg.mtu = 65521;
			break;
		case 8:
			cfg.max_flows = 0;
			break;
		case 9:
			cfg.max_fds = 0;
			break;
		case 10:
			cfg.n_names = VPNKIT_MAX_NAMES + 1;
			break;
		}
		vk = (struct vpnkit *)&cfg; /* must be cleared */
		ASSERT_ERR(vpnkit_new(&cfg, &vk), -EINVAL);
		ASSERT_NULL(vk);
	}
	/* The extremes that are allowed. */
	rig_config(&cfg);
	cfg.mtu = 65520;
	ASSERT_OK(vpnkit_new(&cfg, &vk));
	vpnkit_free(vk);
	cfg.mtu = 576;
	cfg.max_flows = 1;
	cfg.max_fds = 1;
	ASSERT_OK(vpnkit_new(&cfg, &vk));
	vpnkit_free(vk);
	vpnkit_free(NULL);
}

/* ---------------------------------------------------------------- ports */

TEST(core_port_identity)
{
	static const char *uuid = "6a1b2c3d-0000-4000-8000-00000000abcd";
	struct vpnkit_config cfg;
	struct vpnkit *vk;
	struct vpnkit_port *p, *q;
	struct vpnkit_port_config pc;
	struct capture cap = { .budget = -1 };
	uint8_t mac[6], mac2[6];
	struct in_addr ip;

	rig_config(&cfg);
	ASSERT_OK(vpnkit_new(&cfg, &vk));
	memset(&pc, 0, sizeof(pc));
	pc.uuid = uuid;
	ASSERT_ERR(vpnkit_port_new(vk, &pc, NULL, &cap, &p), -EINVAL);
	ASSERT_OK(vpnkit_port_new(vk, &pc, &cap_ops, &cap, &p));
	ASSERT_EQ_STR(vpnkit_port_uuid(p), uuid);
	vpnkit_port_mac(p, mac);
	ip = vpnkit_port_ip(p);
	ASSERT_EQ_U64(ip.s_addr, in4("192.168.65.3").s_addr);
	ASSERT_EQ_U64(mac[0] & 3, 2); /* locally administered unicast */
	/* The same UUID twice at once: busy. */
	ASSERT_ERR(vpnkit_port_new(vk, &pc, &cap_ops, &cap, &q), -EBUSY);
	/* A fresh identity gets the next address. */
	ASSERT_OK(vpnkit_port_new(vk, NULL, &cap_ops, &cap, &q));
	ASSERT_EQ_U64(vpnkit_port_ip(q).s_addr, in4("192.168.65.4").s_addr);
	vpnkit_port_mac(q, mac2);
	ASSERT_NE_INT(memcmp(mac, mac2, 6), 0);
	vpnkit_port_free(q);
	/* Back after a disconnect: the same MAC and address. */
	vpnkit_port_free(p);
	ASSERT_OK(vpnkit_port_new(vk, &pc, &cap_ops, &cap, &p));
	vpnkit_port_mac(p, mac2);
	ASSERT_EQ_MEM(mac, mac2, 6);
	ASSERT_EQ_U64(vpnkit_port_ip(p).s_addr, ip.s_addr);
	/* Preferred addresses: outside the pool, taken, the host's. */
	memset(&pc, 0, sizeof(pc));
	pc.preferred_ip = in4("192.168.65.1");
	ASSERT_ERR(vpnkit_port_new(vk, &pc, &cap_ops, &cap, &q), -ERANGE);
	pc.preferred_ip = in4("10.1.1.1");
	ASSERT_ERR(vpnkit_port_new(vk, &pc, &cap_ops, &cap, &q), -ERANGE);
	pc.preferred_ip = ip;
	ASSERT_ERR(vpnkit_port_new(vk, &pc, &cap_ops, &cap, &q), -EADDRINUSE);
	pc.preferred_ip = in4("192.168.65.100");
	ASSERT_OK(vpnkit_port_new(vk, &pc, &cap_ops, &cap, &q));
	ASSERT_EQ_U64(vpnkit_port_ip(q).s_addr, pc.preferred_ip.s_addr);
	/* A malformed UUID. */
	memset(&pc, 0, sizeof(pc));
	pc.uuid = "not-a-uuid";
	{
		struct vpnkit_port *z;

		ASSERT_ERR(vpnkit_port_new(vk, &pc, &cap_ops, &cap, &z),
			   -EINVAL);
	}
	vpnkit_free(vk); /* frees the ports too */
	cap_release(&cap);
}

/* A small pool runs out. */
TEST(core_pool_exhausted)
{
	struct vpnkit_config cfg;
	struct vpnkit *vk;
	struct vpnkit_port *p[3], *q;
	struct capture cap = { .budget = -1 };

	rig_config(&cfg);
	cfg.pool_first = in4("192.168.65.3");
	cfg.pool_last = in4("192.168.65.4");
	ASSERT_OK(vpnkit_new(&cfg, &vk));
	ASSERT_OK(vpnkit_port_new(vk, NULL, &cap_ops, &cap, &p[0]));
	ASSERT_OK(vpnkit_port_new(vk, NULL, &cap_ops, &cap, &p[1]));
	ASSERT_ERR(vpnkit_port_new(vk, NULL, &cap_ops, &cap, &q), -ENOSPC);
	/* A detached identity's address is reused. */
	vpnkit_port_free(p[0]);
	ASSERT_OK(vpnkit_port_new(vk, NULL, &cap_ops, &cap, &p[2]));
	ASSERT_EQ_U64(vpnkit_port_ip(p[2]).s_addr, in4("192.168.65.3").s_addr);
	vpnkit_free(vk);
	cap_release(&cap);
}

/* ---------------------------------------------------------------- ARP */

/* The ARP reply in cf answers the rig's VM about ip with mac. */
static void check_arp_reply(const struct rig *r, const struct cap_frame *cf,
			    const uint8_t ip[4], const uint8_t mac[6])
{
	const uint8_t *a = cf->data + FR_ETH_HLEN;

	ASSERT_EQ_U64(cf->len, 42);
	ASSERT_EQ_MEM(cf->data, r->mac, 6);
	ASSERT_EQ_MEM(cf->data + 6, mac, 6);
	ASSERT_EQ_U64(load_be16(cf->data + 12), FR_ETH_ARP);
	ASSERT_EQ_U64(load_be16(a), 1);
	ASSERT_EQ_U64(load_be16(a + 2), FR_ETH_IP);
	ASSERT_EQ_U64(a[4], 6);
	ASSERT_EQ_U64(a[5], 4);
	ASSERT_EQ_U64(load_be16(a + 6), 2);
	ASSERT_EQ_MEM(a + 8, mac, 6);
	ASSERT_EQ_MEM(a + 14, ip, 4);
	ASSERT_EQ_MEM(a + 18, r->mac, 6);
	ASSERT_EQ_MEM(a + 24, r->ip, 4);
}

TEST(core_arp)
{
	static const uint8_t outside[4] = { 8, 8, 8, 8 };
	static const uint8_t nobody[4] = { 192, 168, 65, 77 };
	static const uint8_t zero4[4] = { 0 };
	static const uint8_t spoof[4] = { 192, 168, 65, 9 };
	struct rig r;
	struct cap_frame *cf;
	struct vpnkit_stats s0;
	uint8_t f[64];
	size_t len;

	rig_start(&r, NULL, 0);
	/* The gateway's MAC is not the VM's, and is unicast. */
	ASSERT_NE_INT(memcmp(r.gw_mac, r.mac, 6), 0);
	ASSERT_EQ_U64(r.gw_mac[0] & 1, 0);

	cf = rig_arp(&r, r.gw);
	ASSERT_NOT_NULL(cf);
	check_arp_reply(&r, cf, r.gw, r.gw_mac);
	cf = rig_arp(&r, r.host);
	ASSERT_NOT_NULL(cf);
	check_arp_reply(&r, cf, r.host, r.gw_mac);
	cf = rig_arp(&r, outside);
	ASSERT_NOT_NULL(cf);
	check_arp_reply(&r, cf, outside, r.gw_mac);

	/* No answer: unassigned, its own address, a probe for it. */
	s0 = rig_stats(&r);
	ASSERT_NULL(rig_arp(&r, nobody));
	ASSERT_NULL(rig_arp(&r, r.ip));
	rig_input(&r, f,
		  fr_arp(f, bcast, r.mac, 1, r.mac, zero4, zero_mac, r.ip));
	ASSERT_NULL(rig_next(&r, 0));
	ASSERT_EQ_U64(rig_stats(&r).bad, s0.bad);

	/* A probe (sender 0.0.0.0) for the gateway is answered. */
	rig_input(&r, f,
		  fr_arp(f, bcast, r.mac, 1, r.mac, zero4, zero_mac, r.gw));
	cf = rig_next(&r, 0);
	ASSERT_NOT_NULL(cf);
	ASSERT_EQ_MEM(cf->data + FR_ETH_HLEN + 8, r.gw_mac, 6);

	/* Replies are not needed and get none. */
	rig_input(&r, f,
		  fr_arp(f, r.gw_mac, r.mac, 2, r.mac, r.ip, r.gw_mac, r.gw));
	ASSERT_NULL(rig_next(&r, 0));

	/* Malformed or lying requests: dropped as bad. */
	s0 = rig_stats(&r);
	len = fr_arp(f, bcast, r.mac, 1, r.mac, spoof, zero_mac, r.gw);
	rig_input(&r, f, len); /* a sender address not the VM's */
	len = fr_arp(f, bcast, r.mac, 1, r.gw_mac, r.ip, zero_mac, r.gw);
	rig_input(&r, f, len); /* a sender MAC not the frame's */
	len = fr_arp(f, bcast, r.mac, 1, r.mac, r.ip, zero_mac, r.gw);
	rig_input(&r, f, len - 1); /* truncated */
	store_be16(f + 14, 6); /* hardware type 6 */
	rig_input(&r, f, len);
	len = fr_arp(f, bcast, r.mac, 1, r.mac, r.ip, zero_mac, r.gw);
	f[14 + 4] = 8; /* hardware address length 8 */
	rig_input(&r, f, len);
	ASSERT_EQ_U64(rig_stats(&r).bad, s0.bad + 5);
	ASSERT_NULL(rig_next(&r, 0));

	/* Ethernet padding after the request is fine. */
	len = fr_arp(f, bcast, r.mac, 1, r.mac, r.ip, zero_mac, r.gw);
	memset(f + len, 0, 60 - len);
	rig_input(&r, f, 60);
	cf = rig_next(&r, 0);
	ASSERT_NOT_NULL(cf);
	check_arp_reply(&r, cf, r.gw, r.gw_mac);
	rig_stop(&r);
}

/* ---------------------------------------------------------------- switch */

TEST(core_switch_two_ports)
{
	struct rig r;
	struct vpnkit_port *pb;
	struct capture cb = { .budget = -1 };
	struct cap_frame *cf;
	struct vpnkit_stats s0;
	uint8_t mac_b[6], ip_b[4], f[128], other[6];
	struct in_addr a;
	struct fr_l3 l3;
	size_t len;

	rig_start(&r, NULL, 0);
	ASSERT_OK(vpnkit_port_new(r.vk, NULL, &cap_ops, &cb, &pb));
	vpnkit_port_mac(pb, mac_b);
	a = vpnkit_port_ip(pb);
	memcpy(ip_b, &a, 4);
	rig_drain(&r);
	cb.next = cb.n;
	ASSERT_EQ_U64(rig_stats(&r).ports, 2);

	/* A asks for B: proxy ARP with B's MAC; B hears nothing. */
	cf = rig_arp(&r, ip_b);
	ASSERT_NOT_NULL(cf);
	check_arp_reply(&r, cf, ip_b, mac_b);
	ASSERT_EQ_U64(cb.n, cb.next);

	/* A unicast frame to B's MAC reaches B unchanged, and only B. */
	l3 = rig_l3(&r, ip_b);
	memcpy(l3.dst_mac, mac_b, 6);
	len = fr_udp(f, &l3, 1234, 5678, "to b", 4);
	s0 = rig_stats(&r);
	rig_input(&r, f, len);
	ASSERT_EQ_U64(cb.n, cb.next + 1);
	ASSERT_EQ_U64(cb.f[cb.next].len, len);
	ASSERT_EQ_MEM(cb.f[cb.next].data, f, len);
	cb.next++;
	ASSERT_NULL(rig_next(&r, 0));
	ASSERT_EQ_U64(rig_stats(&r).frames_out, s0.frames_out + 1);
	ASSERT_EQ_U64(rig_stats(&r).bytes_out, s0.bytes_out + len);

	/* And back from B to A. */
	{
		struct fr_l3 lb;

		memset(&lb, 0, sizeof(lb));
		memcpy(lb.src_mac, mac_b, 6);
		memcpy(lb.dst_mac, r.mac, 6);
		lb.af = 4;
		memcpy(lb.src, ip_b, 4);
		memcpy(lb.dst, r.ip, 4);
		len = fr_udp(f, &lb, 5678, 1234, "to a", 4);
		ASSERT_OK(vpnkit_port_input(pb, NULL, f, len));
		cf = rig_next(&r, 0);
		ASSERT_NOT_NULL(cf);
		ASSERT_EQ_U64(cf->len, len);
		ASSERT_EQ_MEM(cf->data, f, len);
	}

	/* A broadcast that is not ARP is not flooded to B. */
	memcpy(l3.dst_mac, bcast, 6);
	memcpy(l3.dst, (const uint8_t[4]){ 255, 255, 255, 255 }, 4);
	rig_input(&r, f, fr_udp(f, &l3, 1234, 9, "bc", 2));
	ASSERT_EQ_U64(cb.n, cb.next);

	/* An unknown unicast MAC: dropped, not flooded. */
	s0 = rig_stats(&r);
	memcpy(l3.dst_mac, (const uint8_t[6]){ 2, 0, 0, 0, 0, 0x42 }, 6);
	memcpy(l3.dst, ip_b, 4);
	rig_input(&r, f, fr_udp(f, &l3, 1234, 5678, "lost", 4));
	ASSERT_EQ_U64(cb.n, cb.next);
	ASSERT_EQ_U64(rig_stats(&r).dropped, s0.dropped + 1);

	/* Spoofed source MACs: B's, the gateway's, a multicast one. */
	s0 = rig_stats(&r);
	l3 = rig_l3(&r, r.gw);
	memcpy(l3.src_mac, mac_b, 6);
	rig_input(&r, f, fr_udp(f, &l3, 1234, 9, "x", 1));
	memcpy(l3.src_mac, r.gw_mac, 6);
	rig_input(&r, f, fr_udp(f, &l3, 1234, 9, "x", 1));
	memcpy(l3.src_mac, (const uint8_t[6]){ 1, 0, 0x5e, 0, 0, 1 }, 6);
	rig_input(&r, f, fr_udp(f, &l3, 1234, 9, "x", 1));
	ASSERT_EQ_U64(rig_stats(&r).bad, s0.bad + 3);
	ASSERT_EQ_U64(cb.n, cb.next);
	ASSERT_NULL(rig_next(&r, 0));

	/* A VM may change its MAC (a TAP's own): replies follow it. */
	memcpy(other, (const uint8_t[6]){ 0x02, 0x11, 0x22, 0x33, 0x44, 0x55 },
	       6);
	len = fr_arp(f, bcast, other, 1, other, r.ip, zero_mac, r.gw);
	rig_input(&r, f, len);
	cf = rig_next(&r, 0);
	ASSERT_NOT_NULL(cf);
	ASSERT_EQ_MEM(cf->data, other, 6);
	{
		uint8_t m[6];

		vpnkit_port_mac(r.port, m);
		ASSERT_EQ_MEM(m, other, 6);
	}
	/* B reaches A under that MAC. */
	{
		struct fr_l3 lb;

		memset(&lb, 0, sizeof(lb));
		memcpy(lb.src_mac, mac_b, 6);
		memcpy(lb.dst_mac, other, 6);
		lb.af = 4;
		memcpy(lb.src, ip_b, 4);
		memcpy(lb.dst, r.ip, 4);
		len = fr_udp(f, &lb, 5678, 1234, "new", 3);
		ASSERT_OK(vpnkit_port_input(pb, NULL, f, len));
		cf = rig_next(&r, 0);
		ASSERT_NOT_NULL(cf);
		ASSERT_EQ_MEM(cf->data, f, len);
	}

	/* B detached: frames to its MAC are dropped. */
	vpnkit_port_free(pb);
	ASSERT_EQ_U64(rig_stats(&r).ports, 1);
	memcpy(r.mac, other, 6);
	l3 = rig_l3(&r, ip_b);
	memcpy(l3.dst_mac, mac_b, 6);
	s0 = rig_stats(&r);
	rig_input(&r, f, fr_udp(f, &l3, 1234, 5678, "gone", 4));
	ASSERT_EQ_U64(rig_stats(&r).dropped, s0.dropped + 1);
	rig_stop(&r);
	cap_release(&cb);
}

/* A port whose link fails is marked broken; the other carries on. */
static int failing_send(void *opaque, const struct vpnkit_offload *off,
			const struct iovec *iov, int iovcnt)
{
	(void)off;
	(void)iov;
	(void)iovcnt;
	++*(int *)opaque;
	return -EIO;
}

TEST(core_broken_link)
{
	static const struct vpnkit_port_ops failing = { .send = failing_send };
	struct rig r;
	struct vpnkit_port *pb;
	int calls = 0;
	uint8_t f[64], mac_b[6], ip_b[4];
	struct in_addr a;
	size_t len;

	rig_start(&r, NULL, 0);
	ASSERT_OK(vpnkit_port_new(r.vk, NULL, &failing, &calls, &pb));
	vpnkit_port_mac(pb, mac_b);
	a = vpnkit_port_ip(pb);
	memcpy(ip_b, &a, 4);
	len = fr_arp(f, bcast, mac_b, 1, mac_b, ip_b, zero_mac, r.gw);
	/* The first frame to B (a router advertisement greeting it, or the
	 * answer to its ARP) fails, and the port is broken from then on. */
	if (calls == 0)
		ASSERT_OK(vpnkit_port_input(pb, NULL, f, len));
	ASSERT_EQ_INT(calls, 1);
	ASSERT_ERR(vpnkit_port_input(pb, NULL, f, len), -EPIPE);
	ASSERT_EQ_INT(calls, 1);
	/* A's frames for B are not sent into the broken link. */
	{
		struct fr_l3 l3 = rig_l3(&r, ip_b);

		memcpy(l3.dst_mac, mac_b, 6);
		rig_input(&r, f, fr_udp(f, &l3, 1, 2, "x", 1));
		ASSERT_EQ_INT(calls, 1);
	}
	ASSERT_NOT_NULL(rig_arp(&r, r.gw));
	vpnkit_port_free(pb);
	rig_stop(&r);
}

/* ---------------------------------------------------------------- IPv4 */

/* The host's view while bad frames go in: a TCP listener and a UDP
 * socket behind 192.168.65.2. Nothing may reach either. */
struct sinks {
	int tcp, udp;
	uint16_t tport, uport;
};

static void sinks_open(struct sinks *s, bool v6)
{
	s->tcp = host_socket(SOCK_STREAM, v6, &s->tport);
	s->udp = host_socket(SOCK_DGRAM, v6, &s->uport);
}

static void sinks_quiet(struct rig *r, struct sinks *s)
{
	struct vpnkit_stats st = rig_stats(r);
	struct pollfd p[2] = { { .fd = s->tcp, .events = POLLIN },
			       { .fd = s->udp, .events = POLLIN } };

	ASSERT_OK(vpnkit_run_once(r->vk, 0));
	ASSERT_EQ_INT(poll(p, 2, 20), 0);
	ASSERT_EQ_U64(st.tcp_flows, 0);
	ASSERT_EQ_U64(st.udp_flows, 0);
	ASSERT_EQ_U64(st.fds, 0);
}

static void sinks_close(struct sinks *s)
{
	close(s->tcp);
	close(s->udp);
}

/* In goes the frame; bad must grow by exactly bad_delta (and dropped by
 * one); nothing comes back. */
static void reject(struct rig *r, const uint8_t *f, size_t len,
		   unsigned bad_delta, const char *what)
{
	struct vpnkit_stats s0 = rig_stats(r), s1;

	rig_input(r, f, len);
	s1 = rig_stats(r);
	if (s1.bad != s0.bad + bad_delta || s1.dropped != s0.dropped + 1) {
		TEST_FAIL("%s: bad %llu -> %llu, dropped %llu -> %llu", what,
			  (unsigned long long)s0.bad,
			  (unsigned long long)s1.bad,
			  (unsigned long long)s0.dropped,
			  (unsigned long long)s1.dropped);
	}
	if (r->cap.next != r->cap.n)
		TEST_FAIL("%s: the library answered", what);
}

/* The test's buffer f gets a copy of frame, changed by the statements
 * given, which the rig r must then reject. */
#define MUTATE(frame, flen, what, bad, ...)     \
	do {                                    \
		memcpy(f, frame, flen);         \
		__VA_ARGS__;                    \
		reject(&r, f, flen, bad, what); \
	} while (0)

TEST(core_ipv4_validation)
{
	struct rig r;
	struct sinks s;
	struct fr_l3 a;
	uint8_t syn[128], udp[128], f[70000], o[8];
	size_t syn_len, udp_len, i;

	rig_start(&r, NULL, 0);
	sinks_open(&s, false);
	a = rig_l3(&r, r.host);
	syn_len = fr_tcp(syn, &a, 33000, s.tport, 1000, 0, FR_SYN, 65535, o,
			 fr_tcp_opts(o, 1460, 7), NULL, 0);
	udp_len = fr_udp(udp, &a, 33001, s.uport, "datagram", 8);

	/* Truncated anywhere. */
	for (i = 0; i < syn_len; i++)
		reject(&r, syn, i, 1, "truncated SYN");
	for (i = 0; i < udp_len; i++)
		reject(&r, udp, i, 1, "truncated UDP");

	/* Header fields that lie. */
	MUTATE(syn, syn_len, "IP header checksum", 1, f[14 + 10] ^= 0x10);
	MUTATE(syn, syn_len, "TCP checksum", 1, f[14 + 20 + 16] ^= 0x01);
	MUTATE(udp, udp_len, "UDP checksum", 1, f[udp_len - 1] ^= 0x01);
	MUTATE(syn, syn_len, "IP version 5", 1, f[14] = 0x55;
	       fr_ip4_fix(f + 14));
	MUTATE(syn, syn_len, "IHL 4", 1, f[14] = 0x44;
	       store_be16(f + 14 + 10, 0));
	MUTATE(syn, syn_len, "IHL past the frame", 1, f[14] = 0x4f;
	       fr_ip4_fix(f + 14));
	MUTATE(syn, syn_len, "total length past the frame", 1,
	       store_be16(f + 16, (uint16_t)(syn_len - 14 + 1));
	       fr_ip4_fix(f + 14));
	MUTATE(syn, syn_len, "total length below the header", 1,
	       store_be16(f + 16, 19);
	       fr_ip4_fix(f + 14));
	MUTATE(syn, syn_len, "total length cuts the TCP header", 1,
	       store_be16(f + 16, 20 + 19);
	       fr_ip4_fix(f + 14));
	MUTATE(syn, syn_len, "TCP data offset 4", 1, f[14 + 20 + 12] = 0x40;
	       fr_l4_fix(4, a.src, a.dst, IPPROTO_TCP, f + 34, syn_len - 34));
	MUTATE(syn, syn_len, "TCP data offset past the segment", 1,
	       f[14 + 20 + 12] = 0xf0;
	       fr_l4_fix(4, a.src, a.dst, IPPROTO_TCP, f + 34, syn_len - 34));
	MUTATE(syn, syn_len, "TCP option length 0", 1, f[14 + 20 + 21] = 0;
	       fr_l4_fix(4, a.src, a.dst, IPPROTO_TCP, f + 34, syn_len - 34));
	MUTATE(syn, syn_len, "TCP option past the header", 1,
	       f[14 + 20 + 21] = 40;
	       fr_l4_fix(4, a.src, a.dst, IPPROTO_TCP, f + 34, syn_len - 34));
	MUTATE(udp, udp_len, "UDP length past the datagram", 1,
	       store_be16(f + 34 + 4, 17);
	       fr_l4_fix(4, a.src, a.dst, IPPROTO_UDP, f + 34, udp_len - 34));
	MUTATE(syn, syn_len, "TCP port 0", 1, store_be16(f + 34, 0);
	       fr_l4_fix(4, a.src, a.dst, IPPROTO_TCP, f + 34, syn_len - 34));
	{
		struct fr_l3 sp = a;

		sp.src[3] = 99; /* not the VM's address */
		reject(&r, f,
		       fr_tcp(f, &sp, 33000, s.tport, 1000, 0, FR_SYN, 65535,
			      NULL, 0, NULL, 0),
		       1, "spoofed source address");
		memset(sp.src, 0, 4); /* 0.0.0.0 is for DHCP only */
		reject(&r, f,
		       fr_tcp(f, &sp, 33000, s.tport, 1000, 0, FR_SYN, 65535,
			      NULL, 0, NULL, 0),
		       1, "TCP from 0.0.0.0");
	}
	/* Fragments: dropped (not malformed), never reassembled. */
	{
		struct fr_l3 fa = a;

		fa.frag = 0x2000; /* more fragments */
		reject(&r, f, fr_udp(f, &fa, 33001, s.uport, "frag", 4), 0,
		       "first fragment");
		fa.frag = 0x0010; /* offset 128 */
		reject(&r, f, fr_udp(f, &fa, 33001, s.uport, "frag", 4), 0,
		       "later fragment");
	}
	/* Not ours to carry: dropped. */
	MUTATE(udp, udp_len, "unknown ethertype", 0,
	       store_be16(f + 12, 0x88b5));
	MUTATE(udp, udp_len, "unknown IP protocol", 0, f[14 + 9] = 47;
	       fr_ip4_fix(f + 14));
	/* Absurdly long. */
	memset(f, 0, sizeof(f));
	memcpy(f, udp, udp_len);
	reject(&r, f, 65551, 1, "frame over 65550 bytes");
	sinks_quiet(&r, &s);

	/* The same frames untouched do get through: the checks above were
	 * not vacuous. IP options and Ethernet padding are fine too. */
	{
		uint8_t opt[128];
		size_t n;
		uint8_t buf[16];

		memcpy(opt, udp, 14);
		opt[14] = 0x46;
		memcpy(opt + 15, udp + 15, 19);
		store_be16(opt + 16, (uint16_t)(udp_len - 14 + 4));
		memset(opt + 34, 1, 4); /* NOPs */
		fr_ip4_fix(opt + 14);
		memcpy(opt + 38, udp + 34, udp_len - 34);
		n = udp_len + 4;
		memset(opt + n, 0xaa, 8);
		rig_input(&r, opt, n + 8);
		ASSERT_TRUE(rig_wait_fd(&r, s.udp, POLLIN, 500));
		ASSERT_EQ_INT(recv(s.udp, buf, sizeof(buf), 0), 8);
		ASSERT_EQ_MEM(buf, "datagram", 8);
	}
	rig_input(&r, syn, syn_len);
	{
		int fd = rig_accept(&r, s.tcp, 1000);

		ASSERT_TRUE(fd >= 0);
		close(fd);
	}
	ASSERT_EQ_U64(rig_stats(&r).tcp_flows, 1);
	sinks_close(&s);
	rig_stop(&r);
}

/* ---------------------------------------------------------------- IPv6 */

/* An IPv6 UDP datagram from src with extra extension headers (ext, a
 * chain whose first next-header is ext_nh) before the UDP header. */
static size_t udp6_frame(uint8_t *f, const struct rig *r, const uint8_t *src,
			 const uint8_t *dst, uint16_t dport, uint8_t ext_nh,
			 const uint8_t *ext, size_t ext_len)
{
	struct fr_l3 a = rig_l3_6(r, dst);
	uint8_t *ip = f + 14, *u;
	size_t len;

	memcpy(a.src, src, 16);
	len = fr_udp(f, &a, 33002, dport, "datagram6", 9);
	if (!ext_len)
		return len;
	u = ip + 40;
	memmove(u + ext_len, u, len - 54);
	memcpy(u, ext, ext_len);
	ip[6] = ext_nh;
	store_be16(ip + 4, (uint16_t)(load_be16(ip + 4) + ext_len));
	return len + ext_len;
}

TEST(core_ipv6_validation)
{
	static const uint8_t mcast[16] = { 0xff, 0x02, [15] = 1 };
	static const uint8_t unspec[16] = { 0 };
	static const uint8_t mapped[16] = {
		[10] = 0xff, [11] = 0xff, [12] = 192,
		[13] = 168,  [14] = 65,	  [15] = 3
	};
	static const uint8_t outside[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 5 };
	uint8_t gw6[16], f[256], ext[64], ok[256], buf[16];
	struct rig r;
	struct sinks s;
	size_t len, ok_len;
	int probe;

	probe = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (probe < 0)
		TEST_SKIP("no IPv6");
	close(probe);
	rig_start(&r, NULL, 0);
	sinks_open(&s, true);
	memcpy(gw6, &r.cfg.prefix6, 16);
	gw6[15] = 1;
	ok_len = udp6_frame(ok, &r, r.ip6, r.host6, s.uport, 0, NULL, 0);

	for (len = 0; len < ok_len; len++)
		reject(&r, ok, len, 1, "truncated");
	memcpy(f, ok, ok_len);
	store_be16(f + 18, (uint16_t)(ok_len - 54 + 1));
	reject(&r, f, ok_len, 1, "payload length past the frame");
	memcpy(f, ok, ok_len);
	store_be16(f + 54 + 6, 0);
	reject(&r, f, ok_len, 1, "UDP without checksum (mandatory in IPv6)");
	memcpy(f, ok, ok_len);
	f[14] = 0x50;
	reject(&r, f, ok_len, 1, "version 5");
	reject(&r, f, udp6_frame(f, &r, mcast, r.host6, s.uport, 0, NULL, 0), 1,
	       "multicast source");
	reject(&r, f, udp6_frame(f, &r, mapped, r.host6, s.uport, 0, NULL, 0),
	       1, "v4-mapped source");
	reject(&r, f,
	       udp6_frame(f, &r, in6addr_loopback.s6_addr, r.host6, s.uport, 0,
			  NULL, 0),
	       1, "loopback source");
	reject(&r, f, udp6_frame(f, &r, gw6, r.host6, s.uport, 0, NULL, 0), 1,
	       "the gateway's address as source");
	reject(&r, f, udp6_frame(f, &r, r.host6, r.host6, s.uport, 0, NULL, 0),
	       1, "the host's address as source");
	reject(&r, f, udp6_frame(f, &r, outside, r.host6, s.uport, 0, NULL, 0),
	       1, "source outside the prefix");
	reject(&r, f, udp6_frame(f, &r, unspec, r.host6, s.uport, 0, NULL, 0),
	       1, "unspecified source (only ICMPv6 may)");

	/* A fragment header: dropped, not reassembled. */
	memset(ext, 0, sizeof(ext));
	ext[0] = IPPROTO_UDP;
	store_be16(ext + 2, 1); /* offset 0, more fragments */
	reject(&r, f, udp6_frame(f, &r, r.ip6, r.host6, s.uport, 44, ext, 8), 0,
	       "fragment");
	/* Five option headers: more than we walk. */
	memset(ext, 0, sizeof(ext));
	for (len = 0; len < 5; len++)
		ext[len * 8] = len < 4 ? 60 : IPPROTO_UDP;
	reject(&r, f, udp6_frame(f, &r, r.ip6, r.host6, s.uport, 0, ext, 40), 1,
	       "five extension headers");
	/* An option header longer than the packet. */
	memset(ext, 0, sizeof(ext));
	ext[0] = IPPROTO_UDP;
	ext[1] = 20;
	reject(&r, f, udp6_frame(f, &r, r.ip6, r.host6, s.uport, 0, ext, 8), 1,
	       "extension header past the packet");
	/* Another VM's address as source. */
	{
		struct capture cb = { .budget = -1 };
		struct vpnkit_port *pb;
		uint8_t mac_b[6], ip6_b[16];
		struct fr_l3 lb;

		ASSERT_OK(vpnkit_port_new(r.vk, NULL, &cap_ops, &cb, &pb));
		vpnkit_port_mac(pb, mac_b);
		memcpy(ip6_b, r.ip6, 16);
		ip6_b[15] ^= 0x77;
		memset(&lb, 0, sizeof(lb));
		memcpy(lb.src_mac, mac_b, 6);
		memcpy(lb.dst_mac, r.gw_mac, 6);
		lb.af = 6;
		memcpy(lb.src, ip6_b, 16);
		memcpy(lb.dst, r.host6, 16);
		/* B uses the address first (to a closed port: no reply). */
		len = fr_udp(f, &lb, 33003, 9, "b", 1);
		ASSERT_OK(vpnkit_port_input(pb, NULL, f, len));
		reject(&r, f,
		       udp6_frame(f, &r, ip6_b, r.host6, s.uport, 0, NULL, 0),
		       1, "another VM's address");
		vpnkit_port_free(pb);
		cap_release(&cb);
	}
	sinks_quiet(&r, &s);

	/* What passes: the plain datagram, and one behind a hop-by-hop
	 * options header. */
	rig_input(&r, ok, ok_len);
	ASSERT_TRUE(rig_wait_fd(&r, s.udp, POLLIN, 500));
	ASSERT_EQ_INT(recv(s.udp, buf, sizeof(buf), 0), 9);
	memset(ext, 0, sizeof(ext));
	ext[0] = IPPROTO_UDP;
	ext[2] = 1; /* PadN */
	ext[3] = 4;
	len = udp6_frame(f, &r, r.ip6, r.host6, s.uport, 0, ext, 8);
	rig_input(&r, f, len);
	ASSERT_TRUE(rig_wait_fd(&r, s.udp, POLLIN, 500));
	ASSERT_EQ_INT(recv(s.udp, buf, sizeof(buf), 0), 9);
	ASSERT_EQ_MEM(buf, "datagram6", 9);
	sinks_close(&s);
	rig_stop(&r);
}

/* IPv6 turned off: IPv6 frames are dropped, no router advertisement. */
TEST(core_ipv6_off)
{
	struct vpnkit_config cfg;
	struct rig r;
	uint8_t f[256];
	struct vpnkit_stats s0;

	rig_config(&cfg);
	cfg.ipv6 = false;
	rig_start(&r, &cfg, 0);
	s0 = rig_stats(&r);
	rig_input(&r, f, udp6_frame(f, &r, r.ip6, r.host6, 9, 0, NULL, 0));
	ASSERT_EQ_U64(rig_stats(&r).dropped, s0.dropped + 1);
	ASSERT_NULL(rig_next(&r, 20));
	rig_stop(&r);
}

/* ---------------------------------------------------------------- stats */

TEST(core_stats_count_frames)
{
	struct rig r;
	struct vpnkit_stats s0, s1;
	uint8_t f[64];

	rig_start(&r, NULL, 0);
	s0 = rig_stats(&r);
	ASSERT_EQ_U64(s0.ports, 1);
	ASSERT_NOT_NULL(rig_arp(&r, r.gw));
	s1 = rig_stats(&r);
	ASSERT_EQ_U64(s1.frames_in, s0.frames_in + 1);
	ASSERT_EQ_U64(s1.bytes_in, s0.bytes_in + 42);
	ASSERT_EQ_U64(s1.frames_out, s0.frames_out + 1);
	ASSERT_EQ_U64(s1.bytes_out, s0.bytes_out + 42);
	ASSERT_EQ_U64(s1.dropped, s0.dropped);
	/* A frame too short for Ethernet still counts as received. */
	rig_input(&r, f, 5);
	s0 = rig_stats(&r);
	ASSERT_EQ_U64(s0.frames_in, s1.frames_in + 1);
	ASSERT_EQ_U64(s0.bytes_in, s1.bytes_in + 5);
	ASSERT_EQ_U64(s0.bad, s1.bad + 1);
	ASSERT_EQ_U64(s0.dropped, s1.dropped + 1);
	rig_stop(&r);
}

/* ---------------------------------------------------------------- forwards */

TEST(core_forward_parse_format)
{
	static const char *good[] = {
		"tcp:127.0.0.1:8080:192.168.65.3:80",
		"udp:0.0.0.0:53:192.168.65.4:53",
		"tcp:[::1]:8080:[fd00:6e6b:7600:1::3]:80",
		"udp:[::]:1:192.168.65.3:65535",
	};
	static const char *bad[] = {
		"",
		"tcp",
		"tcp:",
		"sctp:127.0.0.1:1:192.168.65.3:1",
		"tcp:127.0.0.1",
		"tcp:127.0.0.1:80",
		"tcp:127.0.0.1:80:",
		"tcp:127.0.0.1:80:192.168.65.3",
		"tcp:127.0.0.1:80:192.168.65.3:",
		"tcp:127.0.0.1:0:192.168.65.3:80",
		"tcp:127.0.0.1:80:192.168.65.3:0",
		"tcp:127.0.0.1:65536:192.168.65.3:80",
		"tcp:127.0.0.1:99999999999999999999:192.168.65.3:80",
		"tcp:127.0.0.1:-1:192.168.65.3:80",
		"tcp:127.0.0.1:+80:192.168.65.3:80",
		"tcp:127.0.0.1:8x:192.168.65.3:80",
		"tcp:127.0.0.1:80:192.168.65.3:80:",
		"tcp:127.0.0.1:80:192.168.65.3:80x",
		"tcp:1.2.3:80:192.168.65.3:80",
		"tcp:1.2.3.256:80:192.168.65.3:80",
		"tcp:localhost:80:192.168.65.3:80",
		"tcp:::1:80:192.168.65.3:80",
		"tcp:[::1:80:192.168.65.3:80",
		"tcp:[::1]80:192.168.65.3:80",
		"tcp:[zz::1]:80:192.168.65.3:80",
		"tcp::80:192.168.65.3:80",
	};
	struct vpnkit_forward fw;
	char buf[128];
	size_t i;
	int n;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		if (vpnkit_forward_parse(good[i], &fw) != 0)
			TEST_FAIL("refused: %s", good[i]);
		n = vpnkit_forward_format(&fw, buf, sizeof(buf));
		ASSERT_EQ_INT(n, (int)strlen(good[i]));
		ASSERT_EQ_STR(buf, good[i]);
		/* Exactly enough room, and one byte less. */
		ASSERT_EQ_INT(vpnkit_forward_format(&fw, buf, (size_t)n + 1),
			      n);
		ASSERT_ERR(vpnkit_forward_format(&fw, buf, (size_t)n), -ENOSPC);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (vpnkit_forward_parse(bad[i], &fw) != -EINVAL)
			TEST_FAIL("accepted: \"%s\"", bad[i]);

	ASSERT_OK(vpnkit_forward_parse("tcp:127.0.0.1:8080:192.168.65.3:80",
				       &fw));
	ASSERT_EQ_INT(fw.proto, IPPROTO_TCP);
	{
		struct sockaddr_in h, g;

		memcpy(&h, &fw.host, sizeof(h));
		memcpy(&g, &fw.guest, sizeof(g));
		ASSERT_EQ_U64(h.sin_family, AF_INET);
		ASSERT_EQ_U64(ntohs(h.sin_port), 8080);
		ASSERT_EQ_U64(ntohl(h.sin_addr.s_addr), 0x7f000001);
		ASSERT_EQ_U64(ntohs(g.sin_port), 80);
		ASSERT_EQ_U64(ntohl(g.sin_addr.s_addr), 0xc0a84103);
	}
	ASSERT_OK(vpnkit_forward_parse("udp:[::1]:53:[fd00::3]:5353", &fw));
	ASSERT_EQ_INT(fw.proto, IPPROTO_UDP);
	{
		struct sockaddr_in6 h;

		memcpy(&h, &fw.host, sizeof(h));
		ASSERT_EQ_U64(h.sin6_family, AF_INET6);
		ASSERT_EQ_U64(ntohs(h.sin6_port), 53);
		ASSERT_TRUE(IN6_IS_ADDR_LOOPBACK(&h.sin6_addr));
	}
}

TEST(core_forward_add_errors)
{
	struct rig r;
	struct vpnkit_forward fw, list[4];
	char spec[96];
	uint16_t port;
	int hold;

	rig_start(&r, NULL, 0);
	port = free_port();
	/* The guest side must be in the VMs' subnet. */
	snprintf(spec, sizeof(spec), "tcp:127.0.0.1:%u:8.8.8.8:80", port);
	ASSERT_OK(vpnkit_forward_parse(spec, &fw));
	ASSERT_ERR(vpnkit_forward_add(r.vk, &fw), -EINVAL);
	fw.proto = IPPROTO_SCTP;
	ASSERT_ERR(vpnkit_forward_add(r.vk, &fw), -EINVAL);
	/* A host port someone else holds. */
	hold = host_socket(SOCK_STREAM, false, &port);
	snprintf(spec, sizeof(spec), "tcp:127.0.0.1:%u:192.168.65.3:80", port);
	ASSERT_OK(vpnkit_forward_parse(spec, &fw));
	ASSERT_ERR(vpnkit_forward_add(r.vk, &fw), -EADDRINUSE);
	close(hold);
	ASSERT_OK(vpnkit_forward_add(r.vk, &fw));
	ASSERT_ERR(vpnkit_forward_add(r.vk, &fw), -EEXIST);
	ASSERT_EQ_U64(vpnkit_forward_list(r.vk, list, 4), 1);
	ASSERT_EQ_INT(list[0].proto, IPPROTO_TCP);
	ASSERT_EQ_MEM(&list[0].host, &fw.host, sizeof(struct sockaddr_in));
	ASSERT_EQ_MEM(&list[0].guest, &fw.guest, sizeof(struct sockaddr_in));
	ASSERT_ERR(vpnkit_forward_remove(r.vk, IPPROTO_UDP,
					 (struct sockaddr *)&fw.host),
		   -ENOENT);
	/* Freed with the instance: the port is free afterwards. */
	rig_stop(&r);
	ASSERT_TRUE(port_is_free(SOCK_STREAM, port));
}

/* ---------------------------------------------------------------- pcap */

TEST(core_pcap_file)
{
	struct vpnkit_config cfg;
	struct rig r;
	char path[512];
	uint8_t req[64], *buf;
	size_t req_len, n, off, records = 0;
	uint64_t frames;
	struct cap_frame reply;
	FILE *fp;

	snprintf(path, sizeof(path), "%s/capture.pcap", test_tmpdir());
	rig_config(&cfg);
	cfg.pcap_path = path;
	rig_start(&r, &cfg, 0);
	req_len = fr_arp(req, bcast, r.mac, 1, r.mac, r.ip, zero_mac, r.host);
	rig_input(&r, req, req_len);
	ASSERT_NOT_NULL(rig_next(&r, 0));
	reply = r.cap.f[r.cap.n - 1];
	reply.data = malloc(reply.len);
	ASSERT_NOT_NULL(reply.data);
	memcpy(reply.data, r.cap.f[r.cap.n - 1].data, reply.len);
	frames = rig_stats(&r).frames_in + rig_stats(&r).frames_out;
	rig_stop(&r); /* closes the file */

	fp = fopen(path, "rb");
	ASSERT_NOT_NULL(fp);
	buf = malloc(1 << 20);
	ASSERT_NOT_NULL(buf);
	n = fread(buf, 1, 1 << 20, fp);
	fclose(fp);
	ASSERT_GE_U64(n, 24);
	ASSERT_EQ_U64(load_le32(buf), 0xa1b2c3d4); /* this host's order */
	ASSERT_EQ_U64(load_le16(buf + 4), 2);
	ASSERT_EQ_U64(load_le16(buf + 6), 4);
	ASSERT_EQ_U64(load_le32(buf + 16), 65535);
	ASSERT_EQ_U64(load_le32(buf + 20), 1); /* Ethernet */
	/* Every frame in and out, whole; the last two are ours. */
	off = 24;
	{
		size_t last[2] = { 0, 0 };

		while (off < n) {
			uint32_t incl, orig;

			ASSERT_LE_U64(off + 16, n);
			incl = load_le32(buf + off + 8);
			orig = load_le32(buf + off + 12);
			ASSERT_EQ_U64(incl, orig);
			ASSERT_LE_U64(off + 16 + incl, n);
			last[0] = last[1];
			last[1] = off;
			off += 16 + incl;
			records++;
		}
		ASSERT_EQ_U64(records, frames);
		ASSERT_EQ_U64(load_le32(buf + last[0] + 8), req_len);
		ASSERT_EQ_MEM(buf + last[0] + 16, req, req_len);
		ASSERT_EQ_U64(load_le32(buf + last[1] + 8), reply.len);
		ASSERT_EQ_MEM(buf + last[1] + 16, reply.data, reply.len);
	}
	free(buf);
	free(reply.data);

	/* A capture file that cannot be opened: vpnkit_new fails. */
	{
		struct vpnkit *vk;

		snprintf(path, sizeof(path), "%s/no/such/dir/x.pcap",
			 test_tmpdir());
		cfg.log.fn = NULL;
		ASSERT_ERR(vpnkit_new(&cfg, &vk), -ENOENT);
	}
}

/* ---------------------------------------------------------------- loop */

static void on_pipe(void *opaque, uint32_t events)
{
	int *hits = opaque;

	(void)events;
	(*hits)++;
}

TEST(core_watch)
{
	struct vpnkit_config cfg;
	struct vpnkit *vk;
	int p[2], hits = 0;
	char c;

	rig_config(&cfg);
	ASSERT_OK(vpnkit_new(&cfg, &vk));
	ASSERT_GE_INT(vpnkit_fd(vk), 0);
	ASSERT_OK(pipe2(p, O_CLOEXEC | O_NONBLOCK));
	ASSERT_OK(vpnkit_watch(vk, p[0], EPOLLIN, on_pipe, &hits));
	ASSERT_ERR(vpnkit_watch(vk, p[0], EPOLLIN, on_pipe, &hits), -EEXIST);
	ASSERT_OK(vpnkit_run_once(vk, 0));
	ASSERT_EQ_INT(hits, 0);
	ASSERT_EQ_INT(write(p[1], "x", 1), 1);
	ASSERT_OK(vpnkit_run_once(vk, 100));
	ASSERT_EQ_INT(hits, 1);
	ASSERT_EQ_INT(read(p[0], &c, 1), 1);
	/* Watching for nothing, then unwatched: no more calls. */
	ASSERT_OK(vpnkit_watch_mod(vk, p[0], 0));
	ASSERT_EQ_INT(write(p[1], "x", 1), 1);
	ASSERT_OK(vpnkit_run_once(vk, 20));
	ASSERT_EQ_INT(hits, 1);
	vpnkit_unwatch(vk, p[0]);
	ASSERT_ERR(vpnkit_watch_mod(vk, p[0], EPOLLIN), -ENOENT);
	ASSERT_OK(vpnkit_run_once(vk, 20));
	ASSERT_EQ_INT(hits, 1);
	vpnkit_free(vk);
	close(p[0]);
	close(p[1]);
}

/* Detaching a port closes its flows and their host sockets at once. */
TEST(core_port_free_closes_flows)
{
	struct rig r;
	struct sinks s;
	struct fr_l3 a;
	uint8_t f[128], o[8];
	int base, fd;

	rig_start(&r, NULL, 0);
	sinks_open(&s, false);
	base = count_fds();
	a = rig_l3(&r, r.host);
	rig_input(&r, f, fr_udp(f, &a, 33010, s.uport, "u", 1));
	rig_input(&r, f,
		  fr_tcp(f, &a, 33011, s.tport, 1, 0, FR_SYN, 65535, o,
			 fr_tcp_opts(o, 1460, -1), NULL, 0));
	fd = rig_accept(&r, s.tcp, 1000);
	ASSERT_TRUE(fd >= 0);
	ASSERT_EQ_U64(rig_stats(&r).udp_flows, 1);
	ASSERT_EQ_U64(rig_stats(&r).tcp_flows, 1);
	ASSERT_EQ_U64(rig_stats(&r).fds, 2);
	vpnkit_port_free(r.port);
	r.port = NULL;
	ASSERT_EQ_U64(rig_stats(&r).udp_flows, 0);
	ASSERT_EQ_U64(rig_stats(&r).tcp_flows, 0);
	ASSERT_EQ_U64(rig_stats(&r).fds, 0);
	ASSERT_EQ_U64(rig_stats(&r).ports, 0);
	close(fd);
	ASSERT_EQ_INT(count_fds(), base);
	ASSERT_OK(vpnkit_run_once(r.vk, 10));
	sinks_close(&s);
	rig_stop(&r);
}

static const struct test_case tests[] = {
	TEST_CASE(core_config_rejects_nonsense),
	TEST_CASE(core_port_identity),
	TEST_CASE(core_pool_exhausted),
	TEST_CASE(core_arp),
	TEST_CASE(core_switch_two_ports),
	TEST_CASE(core_broken_link),
	TEST_CASE(core_ipv4_validation),
	TEST_CASE(core_ipv6_validation),
	TEST_CASE(core_ipv6_off),
	TEST_CASE(core_stats_count_frames),
	TEST_CASE(core_forward_parse_format),
	TEST_CASE(core_forward_add_errors),
	TEST_CASE(core_pcap_file),
	TEST_CASE(core_watch),
	TEST_CASE(core_port_free_closes_flows),
};

TEST_MAIN(tests);
