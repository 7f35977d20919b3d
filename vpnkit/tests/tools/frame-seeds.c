// SPDX-License-Identifier: MIT
/*
 * frame-seeds: write the seed corpus of vpnkit/fuzz/fuzz_frame.c.
 *
 * Usage: frame-seeds OUTDIR   (vpnkit/fuzz/make-corpus-frame.sh runs it)
 *
 * Each seed is one input in the record format of frame_input.h: valid
 * frames a VM sends (ARP, DHCP, DNS, TCP to the host address and to the
 * gateway's DNS, UDP, ICMP and ICMPv6 echo, neighbour and router
 * solicitations), short conversations (a TCP connection from handshake
 * to close, with host data, a full link and TSO frames; the port
 * forwards), and malformed frames of every kind the library must refuse.
 * Frames are built with frames.h, as the unit tests build theirs; port A
 * is 192.168.65.3 and port B .4, as the fuzzer's instance assigns them.
 * The output is the same on every run.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <base/endian.h>
#include <vpnkit/vpnkit.h>

#include "../../fuzz/frame_input.h"
#include "../frames.h"

struct out {
	uint8_t buf[1 << 18];
	size_t len;
};

static const uint8_t gw_mac[6] = { 0x02, 0x50, 0x00, 0x00, 0x00, 0x01 };
static const uint8_t mac_a[6] = { 0x02, 0x50, 0xaa, 0xbb, 0xcc, 0x01 };
static const uint8_t mac_b[6] = { 0x02, 0x50, 0xaa, 0xbb, 0xcc, 0x02 };
static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
static const uint8_t ip_a[4] = { 192, 168, 65, 3 };
static const uint8_t ip_b[4] = { 192, 168, 65, 4 };
static const uint8_t gw[4] = { 192, 168, 65, 1 };
static const uint8_t host[4] = { 192, 168, 65, 2 };
static const uint8_t outside[4] = { 93, 184, 216, 34 };

static const char *outdir;
static unsigned written;

static void put(struct out *o, const void *p, size_t n)
{
	if (o->len + n > sizeof(o->buf)) {
		fprintf(stderr, "frame-seeds: seed too large\n");
		exit(1);
	}
	memcpy(o->buf + o->len, p, n);
	o->len += n;
}

static void rec_op(struct out *o, uint8_t op)
{
	put(o, &op, 1);
}

static void rec_arg(struct out *o, uint8_t op, uint8_t arg)
{
	rec_op(o, op);
	put(o, &arg, 1);
}

static void rec_frame(struct out *o, uint8_t op, const uint8_t *f, size_t len)
{
	uint8_t l[2];

	rec_op(o, op);
	store_be16(l, (uint16_t)len);
	put(o, l, 2);
	put(o, f, len);
}

static void rec_frame_off(struct out *o, uint8_t op, const uint8_t off[10],
			  const uint8_t *f, size_t len)
{
	uint8_t l[2];

	rec_op(o, op | FI_OFFLOAD);
	put(o, off, 10);
	store_be16(l, (uint16_t)len);
	put(o, l, 2);
	put(o, f, len);
}

static void save(struct out *o, const char *name)
{
	char path[4096];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", outdir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, o->buf, o->len) != (ssize_t)o->len) {
		fprintf(stderr, "frame-seeds: %s: %s\n", path, strerror(errno));
		exit(1);
	}
	close(fd);
	o->len = 0;
	written++;
}

/* One frame, run: a seed of its own. */
static void save1(struct out *o, const char *name, uint8_t op, const uint8_t *f,
		  size_t len)
{
	rec_frame(o, op, f, len);
	save(o, name);
}

static struct fr_l3 l3_4(const uint8_t *mac, const uint8_t *src,
			 const uint8_t *dst)
{
	struct fr_l3 a;

	memset(&a, 0, sizeof(a));
	memcpy(a.src_mac, mac, 6);
	memcpy(a.dst_mac, gw_mac, 6);
	a.af = 4;
	memcpy(a.src, src, 4);
	memcpy(a.dst, dst, 4);
	a.ip_id = 1;
	a.frag = 0x4000;
	return a;
}

/* Port A's IPv6 addresses: link-local and in the prefix. */
static void ip6_a(uint8_t ll[16], uint8_t global[16])
{
	static const uint8_t prefix[8] = { 0xfd, 0x00, 0x6e, 0x6b,
					   0x76, 0x00, 0x00, 0x01 };

	memset(ll, 0, 16);
	ll[0] = 0xfe;
	ll[1] = 0x80;
	store_be64(ll + 8, FI_IID6);
	memcpy(global, prefix, 8);
	store_be64(global + 8, FI_IID6);
}

static struct fr_l3 l3_6(const uint8_t *src, const uint8_t *dst,
			 const uint8_t *dst_mac, uint8_t hops)
{
	struct fr_l3 a;

	memset(&a, 0, sizeof(a));
	memcpy(a.src_mac, mac_a, 6);
	memcpy(a.dst_mac, dst_mac, 6);
	a.af = 6;
	memcpy(a.src, src, 16);
	memcpy(a.dst, dst, 16);
	a.ttl = hops;
	return a;
}

/* ---------------------------------------------------------------- payloads */

static size_t dhcp_msg(uint8_t *m, uint8_t type, const uint8_t *mac,
		       const uint8_t *want_ip)
{
	size_t n = 240;

	memset(m, 0, 240);
	m[0] = 1;
	m[1] = 1;
	m[2] = 6;
	store_be32(m + 4, 0x3903f326);
	store_be16(m + 10, 0x8000);
	memcpy(m + 28, mac, 6);
	store_be32(m + 236, 0x63825363);
	m[n++] = 53;
	m[n++] = 1;
	m[n++] = type;
	m[n++] = 55;
	m[n++] = 6;
	m[n++] = 1;
	m[n++] = 3;
	m[n++] = 6;
	m[n++] = 15;
	m[n++] = 26;
	m[n++] = 119;
	if (want_ip) {
		m[n++] = 50;
		m[n++] = 4;
		memcpy(m + n, want_ip, 4);
		n += 4;
		m[n++] = 54;
		m[n++] = 4;
		memcpy(m + n, gw, 4);
		n += 4;
	}
	m[n++] = 57;
	m[n++] = 2;
	store_be16(m + n, 1500);
	n += 2;
	m[n++] = 255;
	return n;
}

static size_t dns_query(uint8_t *m, const char *name, uint16_t type)
{
	size_t n = 12;
	const char *p = name;

	memset(m, 0, 12);
	store_be16(m, 0x1234);
	store_be16(m + 2, 0x0100);
	store_be16(m + 4, 1);
	while (*p) {
		const char *dot = strchr(p, '.');
		size_t l = dot ? (size_t)(dot - p) : strlen(p);

		m[n++] = (uint8_t)l;
		memcpy(m + n, p, l);
		n += l;
		p += l + (dot ? 1 : 0);
	}
	m[n++] = 0;
	store_be16(m + n, type);
	store_be16(m + n + 2, 1);
	return n + 4;
}

/* ---------------------------------------------------------------- seeds */

static void seeds_arp(struct out *o, uint8_t *f)
{
	static const uint8_t zero[6] = { 0 };

	save1(o, "arp-gateway", FI_FRAME_RUN, f,
	      fr_arp(f, bcast, mac_a, 1, mac_a, ip_a, zero, gw));
	save1(o, "arp-host", FI_FRAME_RUN, f,
	      fr_arp(f, bcast, mac_a, 1, mac_a, ip_a, zero, host));
	save1(o, "arp-outside", FI_FRAME_RUN, f,
	      fr_arp(f, bcast, mac_a, 1, mac_a, ip_a, zero, outside));
	/* Port B asks for port A: proxy ARP. */
	rec_frame(o, FI_FRAME_RUN | FI_PORT_B, f,
		  fr_arp(f, bcast, mac_b, 1, mac_b, ip_b, zero, ip_a));
	save(o, "arp-other-vm");
	save1(o, "arp-probe", FI_FRAME_RUN, f,
	      fr_arp(f, bcast, mac_a, 1, mac_a, (const uint8_t[4]){ 0 }, zero,
		     ip_a));
}

static void seeds_dhcp_dns(struct out *o, uint8_t *f)
{
	static const uint8_t zero4[4] = { 0 };
	static const uint8_t all[4] = { 255, 255, 255, 255 };
	uint8_t m[600];
	struct fr_l3 a = l3_4(mac_a, zero4, all);
	size_t n;

	memcpy(a.dst_mac, bcast, 6);
	n = dhcp_msg(m, 1, mac_a, NULL);
	rec_frame(o, FI_FRAME_RUN, f, fr_udp(f, &a, 68, 67, m, n));
	n = dhcp_msg(m, 3, mac_a, ip_a);
	rec_frame(o, FI_FRAME_RUN, f, fr_udp(f, &a, 68, 67, m, n));
	save(o, "dhcp-discover-request");
	n = dhcp_msg(m, 3, mac_a, outside);
	save1(o, "dhcp-request-wrong-ip", FI_FRAME_RUN, f,
	      fr_udp(f, &a, 68, 67, m, n));

	a = l3_4(mac_a, ip_a, gw);
	n = dns_query(m, "host.docker.internal", 1);
	rec_frame(o, FI_FRAME_RUN | FI_FIX_ADDR | FI_FIX_CSUM, f,
		  fr_udp(f, &a, 40000, 53, m, n));
	n = dns_query(m, "gateway.docker.internal", 28);
	rec_frame(o, FI_FRAME_RUN | FI_FIX_ADDR | FI_FIX_CSUM, f,
		  fr_udp(f, &a, 40001, 53, m, n));
	n = dns_query(m, "example.com", 16);
	rec_frame(o, FI_FRAME_RUN | FI_FIX_ADDR | FI_FIX_CSUM, f,
		  fr_udp(f, &a, 40002, 53, m, n));
	save(o, "dns-udp-queries");
}

/* A TCP handshake from port A to dst:dport, as records. */
static void tcp_open(struct out *o, uint8_t *f, const uint8_t *dst,
		     uint16_t sport, uint16_t dport)
{
	struct fr_l3 a = l3_4(mac_a, ip_a, dst);
	uint8_t opts[8];

	rec_frame(o, FI_FRAME_RUN | FI_FIX_ADDR | FI_FIX_CSUM, f,
		  fr_tcp(f, &a, sport, dport, 0x1000, 0, FR_SYN, 65535, opts,
			 fr_tcp_opts(opts, 1460, 7), NULL, 0));
	rec_frame(o, FI_FRAME_RUN | FI_FIX_ALL, f,
		  fr_tcp(f, &a, sport, dport, 0, 0, FR_ACK, 512, NULL, 0, NULL,
			 0));
}

static void tcp_seg(struct out *o, uint8_t *f, uint8_t flags, const void *data,
		    size_t len)
{
	struct fr_l3 a = l3_4(mac_a, ip_a, host);

	rec_frame(o, FI_FRAME_RUN | FI_FIX_ALL, f,
		  fr_tcp(f, &a, 1, 1, 0, 0, flags, 512, NULL, 0, data, len));
}

static void seeds_tcp(struct out *o, uint8_t *f)
{
	struct fr_l3 a = l3_4(mac_a, ip_a, host);
	uint8_t opts[8], data[4000], m[300];
	size_t n;

	memset(data, 'd', sizeof(data));
	save1(o, "tcp-syn-host", FI_FRAME_RUN | FI_FIX_ADDR | FI_FIX_CSUM, f,
	      fr_tcp(f, &a, 40000, FI_TCP_PORT, 1, 0, FR_SYN, 65535, opts,
		     fr_tcp_opts(opts, 1460, 7), NULL, 0));
	save1(o, "tcp-syn-closed-port",
	      FI_FRAME_RUN | FI_FIX_ADDR | FI_FIX_CSUM, f,
	      fr_tcp(f, &a, 40001, 81, 1, 0, FR_SYN, 65535, opts,
		     fr_tcp_opts(opts, 536, -1), NULL, 0));
	save1(o, "tcp-ack-without-flow",
	      FI_FRAME_RUN | FI_FIX_ADDR | FI_FIX_CSUM, f,
	      fr_tcp(f, &a, 40002, FI_TCP_PORT, 7, 9, FR_ACK, 512, NULL, 0, "x",
		     1));

	/* A whole conversation: both directions, FIN both ways. */
	tcp_open(o, f, host, 40003, FI_TCP_PORT);
	tcp_seg(o, f, FR_ACK | FR_PSH, data, 100);
	rec_arg(o, FI_HOST, 20 << 2); /* the host writes 1281 bytes */
	tcp_seg(o, f, FR_ACK, NULL, 0);
	rec_arg(o, FI_HOST, 0); /* writes 1 byte */
	tcp_seg(o, f, FR_ACK, NULL, 0);
	tcp_seg(o, f, FR_ACK | FR_FIN, NULL, 0);
	rec_arg(o, FI_HOST, 1); /* the host closes */
	tcp_seg(o, f, FR_ACK, NULL, 0);
	save(o, "tcp-conversation");

	/* Reset by the VM, then by the host. */
	tcp_open(o, f, host, 40004, FI_TCP_PORT);
	tcp_seg(o, f, FR_RST, NULL, 0);
	tcp_open(o, f, host, 40005, FI_TCP_PORT);
	rec_arg(o, FI_HOST, 2);
	rec_op(o, FI_RUN);
	save(o, "tcp-resets");

	/* A full link while the host sends, then resume. */
	tcp_open(o, f, host, 40006, FI_TCP_PORT);
	rec_op(o, FI_LINK);
	rec_arg(o, FI_HOST, 63 << 2); /* writes 4033 bytes */
	tcp_seg(o, f, FR_ACK, NULL, 0);
	rec_op(o, FI_LINK);
	tcp_seg(o, f, FR_ACK, NULL, 0);
	save(o, "tcp-link-full");

	/* Retransmitted and out-of-order data from the VM, a window of 0. */
	tcp_open(o, f, host, 40007, FI_TCP_PORT);
	tcp_seg(o, f, FR_ACK, data, 1000);
	rec_frame(o, FI_FRAME_RUN | FI_FIX_ADDR | FI_FIX_CSUM, f,
		  fr_tcp(f, &a, 40007, FI_TCP_PORT, 0x1001, 0, FR_ACK, 0, NULL,
			 0, data, 500));
	rec_frame(o, FI_FRAME_RUN | FI_FIX_ADDR | FI_FIX_CSUM, f,
		  fr_tcp(f, &a, 40007, FI_TCP_PORT, 0x9001, 0, FR_ACK, 0, NULL,
			 0, data, 500));
	save(o, "tcp-vm-retransmits");

	/* A TSO super-frame from the VM on the offload port. */
	{
		uint8_t off[10] = { VPNKIT_OFFLOAD_NEEDS_CSUM,
				    VPNKIT_GSO_TCPV4 };

		store_be16(off + 2, 54);
		store_be16(off + 4, 1460);
		store_be16(off + 6, 34);
		store_be16(off + 8, 16);
		tcp_open(o, f, host, 40008, FI_TCP_PORT);
		n = fr_tcp(f, &a, 1, 1, 0, 0, FR_ACK, 512, NULL, 0, data, 3000);
		rec_frame_off(o, FI_FRAME_RUN | FI_FIX_ADDR | FI_FIX_SEQ, off,
			      f, n);
		save(o, "tcp-offload-tso");
	}

	/* DNS over TCP at the gateway. */
	tcp_open(o, f, gw, 40009, 53);
	n = dns_query(m + 2, "host.docker.internal", 1);
	store_be16(m, (uint16_t)n);
	{
		struct fr_l3 g = l3_4(mac_a, ip_a, gw);

		rec_frame(o, FI_FRAME_RUN | FI_FIX_ALL, f,
			  fr_tcp(f, &g, 1, 1, 0, 0, FR_ACK | FR_PSH, 512, NULL,
				 0, m, n + 2));
	}
	rec_op(o, FI_RUN);
	save(o, "tcp-dns-gateway");

	/* IPv6 to the host address. */
	{
		uint8_t ll[16], g6[16], h6[16];
		struct fr_l3 b;

		ip6_a(ll, g6);
		memcpy(h6, g6, 8);
		memset(h6 + 8, 0, 8);
		h6[15] = 2;
		b = l3_6(g6, h6, gw_mac, 64);
		rec_frame(o, FI_FRAME_RUN | FI_FIX_ADDR | FI_FIX_CSUM, f,
			  fr_tcp(f, &b, 40010, FI_TCP_PORT, 5, 0, FR_SYN, 65535,
				 opts, fr_tcp_opts(opts, 1440, 7), NULL, 0));
		rec_frame(o, FI_FRAME_RUN | FI_FIX_ALL, f,
			  fr_tcp(f, &b, 1, 1, 0, 0, FR_ACK, 512, NULL, 0, data,
				 200));
		save(o, "tcp6-host");
	}
}

static void seeds_udp_icmp(struct out *o, uint8_t *f)
{
	struct fr_l3 a = l3_4(mac_a, ip_a, host);
	uint8_t ll[16], g6[16], h6[16], m[64];
	struct fr_l3 b;
	size_t n;

	rec_frame(o, FI_FRAME_RUN | FI_FIX_ADDR | FI_FIX_CSUM, f,
		  fr_udp(f, &a, 41000, FI_UDP_PORT, "echo me", 7));
	rec_op(o, FI_RUN);
	rec_op(o, FI_RUN);
	save(o, "udp-host-echo");
	a = l3_4(mac_a, ip_a, outside);
	save1(o, "udp-outside", FI_FRAME_RUN | FI_FIX_ADDR | FI_FIX_CSUM, f,
	      fr_udp(f, &a, 41001, 9, "out", 3));
	a = l3_4(mac_a, ip_a, gw);
	save1(o, "icmp-echo-gateway", FI_FRAME_RUN | FI_FIX_ADDR | FI_FIX_CSUM,
	      f, fr_echo(f, &a, 7, 1, 56));
	a = l3_4(mac_a, ip_a, host);
	save1(o, "icmp-echo-host", FI_FRAME_RUN | FI_FIX_ADDR | FI_FIX_CSUM, f,
	      fr_echo(f, &a, 8, 1, 56));

	ip6_a(ll, g6);
	memcpy(h6, g6, 8);
	memset(h6 + 8, 0, 8);
	h6[15] = 1; /* the gateway, prefix::1 */
	b = l3_6(g6, h6, gw_mac, 64);
	save1(o, "icmp6-echo-gateway", FI_FRAME_RUN, f,
	      fr_echo(f, &b, 9, 1, 56));

	/* Neighbour solicitation for fe80::1 (solicited-node multicast). */
	{
		static const uint8_t snm[16] = {
			0xff, 0x02, [11] = 1, [12] = 0xff, [15] = 1
		};
		static const uint8_t snm_mac[6] = { 0x33, 0x33, 0xff, 0, 0, 1 };

		memset(m, 0, sizeof(m));
		m[0] = 135;
		m[8] = 0xfe;
		m[9] = 0x80;
		m[23] = 1;
		m[24] = 1; /* source link-layer address */
		m[25] = 1;
		memcpy(m + 26, mac_a, 6);
		b = l3_6(ll, snm, snm_mac, 255);
		n = fr_ip(f, &b, IPPROTO_ICMPV6, m, 32);
		save1(o, "ndp-ns-gateway", FI_FRAME_RUN, f, n);
	}
	/* Router solicitation. */
	{
		static const uint8_t routers[16] = { 0xff, 0x02, [15] = 2 };
		static const uint8_t routers_mac[6] = { 0x33, 0x33, 0, 0, 0, 2 };

		memset(m, 0, sizeof(m));
		m[0] = 133;
		m[8] = 1;
		m[9] = 1;
		memcpy(m + 10, mac_a, 6);
		b = l3_6(ll, routers, routers_mac, 255);
		save1(o, "ndp-rs", FI_FRAME_RUN, f,
		      fr_ip(f, &b, IPPROTO_ICMPV6, m, 16));
	}
}

static void seeds_forwards(struct out *o, uint8_t *f)
{
	struct fr_l3 a = l3_4(mac_a, ip_a, host);
	uint8_t opts[8], data[500];

	memset(data, 'f', sizeof(data));
	/* A TCP client of the forward; the VM accepts and talks. */
	rec_arg(o, FI_FORWARD, 1);
	rec_frame(o, FI_FRAME_RUN | FI_FIX_ALL, f,
		  fr_tcp(f, &a, 1, 1, 0x2000, 0, FR_SYN | FR_ACK, 65535, opts,
			 fr_tcp_opts(opts, 1460, 7), NULL, 0));
	tcp_seg(o, f, FR_ACK | FR_PSH, data, sizeof(data));
	rec_arg(o, FI_HOST, 3 << 2); /* writes 193 bytes */
	tcp_seg(o, f, FR_ACK, NULL, 0);
	rec_op(o, FI_FWD_TOGGLE);
	rec_op(o, FI_RUN);
	rec_op(o, FI_FWD_TOGGLE);
	save(o, "forward-tcp");
	/* A UDP client of the forward. */
	rec_arg(o, FI_FORWARD, 10 << 1);
	rec_op(o, FI_RUN);
	save(o, "forward-udp");
}

/* Broken frames, each a seed: the library must drop them all. */
static void seeds_malformed(struct out *o, uint8_t *f)
{
	struct fr_l3 a = l3_4(mac_a, ip_a, host);
	uint8_t opts[8], ok[128];
	size_t n;

	n = fr_tcp(ok, &a, 42000, FI_TCP_PORT, 1, 0, FR_SYN, 65535, opts,
		   fr_tcp_opts(opts, 1460, 7), NULL, 0);
	save1(o, "bad-runt", FI_FRAME_RUN, ok, 10);
	save1(o, "bad-empty", FI_FRAME_RUN, ok, 0);
	save1(o, "bad-ipv4-truncated", FI_FRAME_RUN, ok, 30);
	save1(o, "bad-tcp-truncated", FI_FRAME_RUN, ok, n - 10);
	memcpy(f, ok, n);
	f[14 + 10] ^= 0xff;
	save1(o, "bad-ip-checksum", FI_FRAME_RUN, f, n);
	memcpy(f, ok, n);
	f[14 + 20 + 16] ^= 0xff;
	save1(o, "bad-tcp-checksum", FI_FRAME_RUN, f, n);
	memcpy(f, ok, n);
	store_be16(f + 16, 1400);
	fr_ip4_fix(f + 14);
	save1(o, "bad-ip-total-length", FI_FRAME_RUN, f, n);
	memcpy(f, ok, n);
	f[14] = 0x4f;
	fr_ip4_fix(f + 14);
	save1(o, "bad-ihl", FI_FRAME_RUN, f, n);
	memcpy(f, ok, n);
	f[14 + 20 + 12] = 0xf0;
	fr_l4_fix(4, a.src, a.dst, IPPROTO_TCP, f + 34, n - 34);
	save1(o, "bad-tcp-data-offset", FI_FRAME_RUN, f, n);
	memcpy(f, ok, n);
	f[14 + 20 + 21] = 0xff;
	fr_l4_fix(4, a.src, a.dst, IPPROTO_TCP, f + 34, n - 34);
	save1(o, "bad-tcp-option-length", FI_FRAME_RUN, f, n);
	memcpy(f, ok, n);
	f[14 + 12 + 3] = 99;
	fr_ip4_fix(f + 14);
	fr_l4_fix(4, f + 26, a.dst, IPPROTO_TCP, f + 34, n - 34);
	save1(o, "bad-spoofed-source", FI_FRAME_RUN, f, n);
	memcpy(f, ok, n);
	memcpy(f + 6, gw_mac, 6);
	save1(o, "bad-spoofed-mac", FI_FRAME_RUN, f, n);
	{
		struct fr_l3 fa = a;

		fa.frag = 0x2000;
		save1(o, "bad-fragment", FI_FRAME_RUN | FI_FIX_ADDR, f,
		      fr_udp(f, &fa, 42001, FI_UDP_PORT, "frag", 4));
	}
	n = fr_udp(f, &a, 42002, FI_UDP_PORT, "udp", 3);
	store_be16(f + 34 + 4, 200);
	save1(o, "bad-udp-length", FI_FRAME_RUN | FI_FIX_ADDR | FI_FIX_CSUM, f,
	      n);
	n = fr_udp(f, &a, 42002, FI_UDP_PORT, "udp", 3);
	store_be16(f + 12, 0x8100); /* a VLAN tag we do not take */
	save1(o, "bad-ethertype", FI_FRAME_RUN, f, n);
	{
		uint8_t ll[16], g6[16], h6[16];
		struct fr_l3 b;

		ip6_a(ll, g6);
		memcpy(h6, g6, 16);
		h6[15] = 2;
		memset(h6 + 8, 0, 7);
		b = l3_6(g6, h6, gw_mac, 64);
		n = fr_udp(f, &b, 42003, FI_UDP_PORT, "six", 3);
		store_be16(f + 18, 2000);
		save1(o, "bad-ipv6-payload-length", FI_FRAME_RUN, f, n);
		n = fr_udp(f, &b, 42003, FI_UDP_PORT, "six", 3);
		f[14 + 6] = 44; /* a fragment header that is not there */
		save1(o, "bad-ipv6-fragment", FI_FRAME_RUN, f, n);
	}
}

int main(int argc, char **argv)
{
	static struct out o;
	static uint8_t f[70000];

	if (argc != 2) {
		fprintf(stderr, "usage: frame-seeds OUTDIR\n");
		return 2;
	}
	outdir = argv[1];
	seeds_arp(&o, f);
	seeds_dhcp_dns(&o, f);
	seeds_tcp(&o, f);
	seeds_udp_icmp(&o, f);
	seeds_forwards(&o, f);
	seeds_malformed(&o, f);
	printf("frame-seeds: %u seeds in %s\n", written, outdir);
	return 0;
}
