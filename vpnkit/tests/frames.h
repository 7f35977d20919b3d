/* SPDX-License-Identifier: MIT */
/*
 * Frames as a VM would write them, and a strict reader for the frames
 * libvpnkit writes back: Ethernet, ARP, IPv4, IPv6, TCP, UDP and ICMP,
 * with checksums computed here, independently of the library's own code
 * (big-endian word sums, the textbook RFC 1071 way).
 *
 * Shared by the unit tests (through rig.h), the frame fuzz target (for
 * its checksum repairs and its check of every frame the library writes)
 * and the tool that writes that target's seed corpus. Everything is
 * static inline so that each user takes only what it calls; nothing here
 * allocates, asserts or prints.
 *
 * Addresses are raw network-order bytes: 4 for IPv4, 16 for IPv6.
 */
#ifndef VPNKIT_TESTS_FRAMES_H
#define VPNKIT_TESTS_FRAMES_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <base/endian.h>

#define FR_ETH_HLEN 14
#define FR_ETH_IP 0x0800
#define FR_ETH_ARP 0x0806
#define FR_ETH_IPV6 0x86dd

/* TCP flags */
#define FR_FIN 0x01
#define FR_SYN 0x02
#define FR_RST 0x04
#define FR_PSH 0x08
#define FR_ACK 0x10

/* ---------------------------------------------------------------- checksums */

static inline uint32_t fr_sum(uint32_t s, const void *buf, size_t n)
{
	const uint8_t *p = buf;
	size_t i;

	for (i = 0; i + 1 < n; i += 2)
		s += (uint32_t)p[i] << 8 | p[i + 1];
	if (n & 1)
		s += (uint32_t)p[n - 1] << 8;
	/* Fold now and then so long buffers cannot overflow the sum. */
	return (s & 0xffff) + (s >> 16);
}

/* Fold to 16 bits, not complemented. */
static inline uint16_t fr_fold(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)s;
}

/* The pseudo-header sum of TCP, UDP and ICMPv6 (af: 4 or 6). */
static inline uint32_t fr_pseudo(int af, const uint8_t *src, const uint8_t *dst,
				 uint8_t proto, size_t l4_len)
{
	size_t alen = af == 4 ? 4 : 16;
	uint8_t tail[8] = { 0 };

	store_be32(tail, (uint32_t)l4_len);
	tail[7] = proto;
	return fr_sum(fr_sum(fr_sum(0, src, alen), dst, alen), tail, 8);
}

/* Offset of the checksum inside each transport header, or -1. */
static inline int fr_csum_off(uint8_t proto)
{
	switch (proto) {
	case IPPROTO_TCP:
		return 16;
	case IPPROTO_UDP:
		return 6;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		return 2;
	default:
		return -1;
	}
}

/* ---------------------------------------------------------------- building */

/* Where a VM's IP packet goes: link and network addresses. */
struct fr_l3 {
	uint8_t src_mac[6], dst_mac[6];
	int af; /* 4 or 6 */
	uint8_t src[16], dst[16]; /* IPv4: the first 4 bytes */
	uint8_t ttl; /* 0: 64 */
	uint16_t ip_id;
	uint16_t frag; /* IPv4 flags and fragment offset; IPv6: ignored */
};

/*
 * The Ethernet destination of an IPv6 packet to dst: 33:33 and its last
 * four bytes for a multicast group (RFC 2464), else router (the next
 * hop's MAC).
 */
static inline void fr_mac6(const uint8_t dst[16], const uint8_t router[6],
			   uint8_t mac[6])
{
	if (dst[0] == 0xff) {
		mac[0] = mac[1] = 0x33;
		memcpy(mac + 2, dst + 12, 4);
	} else {
		memcpy(mac, router, 6);
	}
}

static inline void fr_eth(uint8_t *f, const uint8_t dst[6],
			  const uint8_t src[6], uint16_t type)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	store_be16(f + 12, type);
}

/* Recompute an IPv4 header's checksum in place (ihl from the header). */
static inline void fr_ip4_fix(uint8_t *ip)
{
	size_t ihl = (size_t)(ip[0] & 0xf) * 4;

	ip[10] = ip[11] = 0;
	store_be16(ip + 10, (uint16_t)~fr_fold(fr_sum(0, ip, ihl)));
}

/* Recompute the transport checksum of l4 (l4_len bytes) in place. */
static inline void fr_l4_fix(int af, const uint8_t *src, const uint8_t *dst,
			     uint8_t proto, uint8_t *l4, size_t l4_len)
{
	int co = fr_csum_off(proto);
	uint32_t s;
	uint16_t sum;

	if (co < 0 || l4_len < (size_t)co + 2)
		return;
	l4[co] = l4[co + 1] = 0;
	s = proto == IPPROTO_ICMP ? 0 : fr_pseudo(af, src, dst, proto, l4_len);
	sum = fr_fold(fr_sum(s, l4, l4_len));
	/* UDP sends a zero checksum as all ones: zero means "none". */
	if (proto == IPPROTO_UDP && sum == 0xffff)
		store_be16(l4 + co, 0xffff);
	else
		store_be16(l4 + co, (uint16_t)~sum);
}

/*
 * A whole frame: Ethernet, an IPv4 or IPv6 header and the transport
 * message l4 (copied), whose checksum is filled in. Returns the length.
 * f must hold 14 + 40 + l4_len bytes.
 */
static inline size_t fr_ip(uint8_t *f, const struct fr_l3 *a, uint8_t proto,
			   const void *l4, size_t l4_len)
{
	uint8_t *ip = f + FR_ETH_HLEN, *t;
	size_t hl = a->af == 4 ? 20 : 40;

	fr_eth(f, a->dst_mac, a->src_mac, a->af == 4 ? FR_ETH_IP : FR_ETH_IPV6);
	memset(ip, 0, hl);
	if (a->af == 4) {
		ip[0] = 0x45;
		store_be16(ip + 2, (uint16_t)(20 + l4_len));
		store_be16(ip + 4, a->ip_id);
		store_be16(ip + 6, a->frag);
		ip[8] = a->ttl ? a->ttl : 64;
		ip[9] = proto;
		memcpy(ip + 12, a->src, 4);
		memcpy(ip + 16, a->dst, 4);
		fr_ip4_fix(ip);
	} else {
		ip[0] = 0x60;
		store_be16(ip + 4, (uint16_t)l4_len);
		ip[6] = proto;
		ip[7] = a->ttl ? a->ttl : 64;
		memcpy(ip + 8, a->src, 16);
		memcpy(ip + 24, a->dst, 16);
	}
	t = ip + hl;
	memmove(t, l4, l4_len);
	fr_l4_fix(a->af, a->src, a->dst, proto, t, l4_len);
	return FR_ETH_HLEN + hl + l4_len;
}

/* TCP options of a SYN: MSS (if mss) and window scale (if ws >= 0),
 * padded with NOPs to a multiple of 4. Returns their length (0..8). */
static inline size_t fr_tcp_opts(uint8_t *o, unsigned mss, int ws)
{
	size_t n = 0;

	if (mss) {
		o[n++] = 2;
		o[n++] = 4;
		store_be16(o + n, (uint16_t)mss);
		n += 2;
	}
	if (ws >= 0) {
		o[n++] = 1;
		o[n++] = 3;
		o[n++] = 3;
		o[n++] = (uint8_t)ws;
	}
	return n;
}

/* A TCP segment in a frame; opts (optlen, a multiple of 4) may be NULL. */
static inline size_t fr_tcp(uint8_t *f, const struct fr_l3 *a, uint16_t sport,
			    uint16_t dport, uint32_t seq, uint32_t ack,
			    uint8_t flags, uint16_t win, const uint8_t *opts,
			    size_t optlen, const void *data, size_t len)
{
	uint8_t *t = f + FR_ETH_HLEN + (a->af == 4 ? 20 : 40);

	memset(t, 0, 20);
	store_be16(t, sport);
	store_be16(t + 2, dport);
	store_be32(t + 4, seq);
	store_be32(t + 8, ack);
	t[12] = (uint8_t)(((20 + optlen) / 4) << 4);
	t[13] = flags;
	store_be16(t + 14, win);
	if (optlen)
		memcpy(t + 20, opts, optlen);
	if (len)
		memcpy(t + 20 + optlen, data, len);
	return fr_ip(f, a, IPPROTO_TCP, t, 20 + optlen + len);
}

static inline size_t fr_udp(uint8_t *f, const struct fr_l3 *a, uint16_t sport,
			    uint16_t dport, const void *data, size_t len)
{
	uint8_t *u = f + FR_ETH_HLEN + (a->af == 4 ? 20 : 40);

	store_be16(u, sport);
	store_be16(u + 2, dport);
	store_be16(u + 4, (uint16_t)(8 + len));
	store_be16(u + 6, 0);
	if (len)
		memcpy(u + 8, data, len);
	return fr_ip(f, a, IPPROTO_UDP, u, 8 + len);
}

/* Byte i of the payload fr_icmp_echo writes. */
static inline uint8_t fr_echo_byte(size_t i)
{
	return (uint8_t)(i * 7 + 3);
}

/*
 * An ICMP (IPv4) or ICMPv6 message laid out as an echo: type, code, id,
 * sequence, then len payload bytes (fr_echo_byte), in a frame.
 */
static inline size_t fr_icmp_echo(uint8_t *f, const struct fr_l3 *a,
				  uint8_t type, uint8_t code, uint16_t id,
				  uint16_t seq, size_t len)
{
	uint8_t *m = f + FR_ETH_HLEN + (a->af == 4 ? 20 : 40);
	size_t i;

	m[0] = type;
	m[1] = code;
	m[2] = m[3] = 0;
	store_be16(m + 4, id);
	store_be16(m + 6, seq);
	for (i = 0; i < len; i++)
		m[8 + i] = fr_echo_byte(i);
	return fr_ip(f, a, a->af == 4 ? IPPROTO_ICMP : IPPROTO_ICMPV6, m,
		     8 + len);
}

/* ICMP or ICMPv6 echo request (type 8 or 128) with len payload bytes. */
static inline size_t fr_echo(uint8_t *f, const struct fr_l3 *a, uint16_t id,
			     uint16_t seq, size_t len)
{
	return fr_icmp_echo(f, a, a->af == 4 ? 8 : 128, 0, id, seq, len);
}

/* An ARP message (op 1 request, 2 reply) for IPv4 over Ethernet. */
static inline size_t fr_arp(uint8_t *f, const uint8_t dst_mac[6],
			    const uint8_t src_mac[6], uint16_t op,
			    const uint8_t sha[6], const uint8_t spa[4],
			    const uint8_t tha[6], const uint8_t tpa[4])
{
	uint8_t *a = f + FR_ETH_HLEN;

	fr_eth(f, dst_mac, src_mac, FR_ETH_ARP);
	store_be16(a, 1);
	store_be16(a + 2, FR_ETH_IP);
	a[4] = 6;
	a[5] = 4;
	store_be16(a + 6, op);
	memcpy(a + 8, sha, 6);
	memcpy(a + 14, spa, 4);
	memcpy(a + 18, tha, 6);
	memcpy(a + 24, tpa, 4);
	return FR_ETH_HLEN + 28;
}

/* ---------------------------------------------------------------- reading */

/* A frame taken apart. Pointers point into the frame. */
struct fr_view {
	uint8_t dst_mac[6], src_mac[6];
	uint16_t type;
	int af; /* 4 or 6 for IP, 0 otherwise */
	const uint8_t *l3;
	size_t l3_len; /* header and payload, as the header says */
	uint8_t src[16], dst[16];
	uint8_t proto, ttl;
	const uint8_t *l4;
	size_t l4_len;
	/* TCP and UDP */
	uint16_t sport, dport;
	/* TCP */
	uint32_t seq, ack;
	uint8_t flags;
	uint16_t win;
	int mss, ws; /* options; -1 when absent */
	size_t optlen;
	/* TCP, UDP and ICMP payload */
	const uint8_t *data;
	size_t len;
};

/*
 * Take a frame apart and check everything a receiving stack would:
 * lengths, the IPv4 header checksum and the transport checksum. Returns
 * NULL, or what is wrong. With partial_ok, a TCP or UDP checksum field
 * holding only the pseudo-header sum (an offloaded frame not finished
 * yet) is accepted as well.
 */
static inline const char *fr_parse(struct fr_view *v, const uint8_t *f,
				   size_t len, bool partial_ok)
{
	const uint8_t *ip;
	size_t avail, hl, alen;
	int co;

	memset(v, 0, sizeof(*v));
	v->mss = v->ws = -1;
	if (len < FR_ETH_HLEN)
		return "shorter than an Ethernet header";
	memcpy(v->dst_mac, f, 6);
	memcpy(v->src_mac, f + 6, 6);
	v->type = load_be16(f + 12);
	if (v->type != FR_ETH_IP && v->type != FR_ETH_IPV6)
		return NULL;
	ip = f + FR_ETH_HLEN;
	avail = len - FR_ETH_HLEN;
	if (v->type == FR_ETH_IP) {
		if (avail < 20 || ip[0] != 0x45)
			return "IPv4 header (we never send options)";
		v->l3_len = load_be16(ip + 2);
		if (v->l3_len != avail)
			return "IPv4 total length is not the frame's";
		if (fr_fold(fr_sum(0, ip, 20)) != 0xffff)
			return "IPv4 header checksum";
		if (load_be16(ip + 6) & 0x3fff)
			return "IPv4 fragment";
		v->af = 4;
	} else {
		if (avail < 40 || (ip[0] >> 4) != 6)
			return "IPv6 header";
		v->l3_len = 40 + (size_t)load_be16(ip + 4);
		if (v->l3_len != avail)
			return "IPv6 payload length is not the frame's";
		v->af = 6;
	}
	/* Both headers end with the source and destination addresses. */
	hl = v->af == 4 ? 20 : 40;
	alen = v->af == 4 ? 4 : 16;
	v->proto = ip[v->af == 4 ? 9 : 6];
	v->ttl = ip[v->af == 4 ? 8 : 7];
	memcpy(v->src, ip + hl - 2 * alen, alen);
	memcpy(v->dst, ip + hl - alen, alen);
	v->l3 = ip;
	v->l4 = ip + hl;
	v->l4_len = v->l3_len - hl;
	co = fr_csum_off(v->proto);
	if (co < 0)
		return NULL;
	if (v->l4_len < (size_t)co + 2)
		return "transport header truncated";
	{
		uint32_t ps = v->proto == IPPROTO_ICMP ?
				      0 :
				      fr_pseudo(v->af, v->src, v->dst, v->proto,
						v->l4_len);
		bool ok = fr_fold(fr_sum(ps, v->l4, v->l4_len)) == 0xffff;

		if (!ok && partial_ok && v->proto != IPPROTO_ICMP)
			ok = load_be16(v->l4 + co) == fr_fold(ps);
		if (!ok && !(v->proto == IPPROTO_UDP && v->af == 4 &&
			     load_be16(v->l4 + 6) == 0))
			return "transport checksum";
	}
	if (v->proto == IPPROTO_UDP) {
		if (v->l4_len < 8 || load_be16(v->l4 + 4) != v->l4_len)
			return "UDP length";
		v->sport = load_be16(v->l4);
		v->dport = load_be16(v->l4 + 2);
		v->data = v->l4 + 8;
		v->len = v->l4_len - 8;
	} else if (v->proto == IPPROTO_TCP) {
		size_t doff, i;

		if (v->l4_len < 20)
			return "TCP header truncated";
		doff = (size_t)(v->l4[12] >> 4) * 4;
		if (doff < 20 || doff > v->l4_len)
			return "TCP data offset";
		v->sport = load_be16(v->l4);
		v->dport = load_be16(v->l4 + 2);
		v->seq = load_be32(v->l4 + 4);
		v->ack = load_be32(v->l4 + 8);
		v->flags = v->l4[13];
		v->win = load_be16(v->l4 + 14);
		v->optlen = doff - 20;
		for (i = 20; i < doff;) {
			uint8_t kind = v->l4[i];

			if (kind == 0)
				break;
			if (kind == 1) {
				i++;
				continue;
			}
			if (i + 1 >= doff || v->l4[i + 1] < 2 ||
			    i + v->l4[i + 1] > doff)
				return "TCP option length";
			if (kind == 2 && v->l4[i + 1] == 4)
				v->mss = load_be16(v->l4 + i + 2);
			if (kind == 3 && v->l4[i + 1] == 3)
				v->ws = v->l4[i + 2];
			i += v->l4[i + 1];
		}
		v->data = v->l4 + doff;
		v->len = v->l4_len - doff;
	} else {
		v->data = v->l4 + 8 <= v->l4 + v->l4_len ? v->l4 + 8 : NULL;
		v->len = v->l4_len >= 8 ? v->l4_len - 8 : 0;
	}
	return NULL;
}

/* Sequence space the segment takes: data, plus one for SYN and FIN. */
static inline uint32_t fr_seg_len(const struct fr_view *v)
{
	return (uint32_t)v->len + ((v->flags & FR_SYN) ? 1 : 0) +
	       ((v->flags & FR_FIN) ? 1 : 0);
}

#endif
