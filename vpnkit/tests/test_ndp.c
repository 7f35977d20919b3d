// SPDX-License-Identifier: MIT
/*
 * Unit tests for vpnkit/ndp.c, driven through the public API: router and
 * neighbour solicitations built by hand go in through vpnkit_port_input,
 * and the advertisements that come out of the port's send callback are
 * checked field by field, checksums recomputed here. The periodic
 * advertisement is driven by calling the timer with a time in the future.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <base/endian.h>
#include <base/test.h>
#include <vpnkit/vpnkit.h>

#include "../internal.h" /* vk_gateway_mac, vk_ndp_tick, vk_now_ns */

#define MAX_FRAMES 16
#define FRAME_CAP 2048

#define ND_RS 133
#define ND_RA 134
#define ND_NS 135
#define ND_NA 136

#define NA_R 0x80
#define NA_S 0x40
#define NA_O 0x20

/* ---------------------------------------------------------------- the rig */

struct capture {
	uint8_t frame[MAX_FRAMES][FRAME_CAP];
	size_t len[MAX_FRAMES];
	unsigned n;
};

static int cap_send(void *opaque, const struct vpnkit_offload *off,
		    const struct iovec *iov, int iovcnt)
{
	struct capture *c = opaque;
	size_t len = 0;

	(void)off;
	ASSERT_LT_U64(c->n, MAX_FRAMES);
	for (int i = 0; i < iovcnt; i++) {
		ASSERT_LE_U64(len + iov[i].iov_len, FRAME_CAP);
		memcpy(c->frame[c->n] + len, iov[i].iov_base, iov[i].iov_len);
		len += iov[i].iov_len;
	}
	c->len[c->n++] = len;
	return 0;
}

static const struct vpnkit_port_ops cap_ops = { .send = cap_send };

/* One VM on the switch. */
struct vm {
	struct vpnkit_port *port;
	struct capture cap;
	uint8_t mac[6];
	struct in6_addr ip6; /* its SLAAC address in the prefix */
	struct in6_addr ll; /* its link-local address */
};

struct rig {
	struct vpnkit *vk;
	struct vpnkit_config cfg;
	struct in6_addr prefix;
	struct vm a, b;
};

static struct in6_addr addr6(const char *s)
{
	struct in6_addr a;

	ASSERT_EQ_INT(inet_pton(AF_INET6, s, &a), 1);
	return a;
}

static struct in6_addr in_prefix(const struct rig *r, uint64_t iid)
{
	struct in6_addr a = r->prefix;

	store_be64(&a.s6_addr[8], iid);
	return a;
}

static void vm_attach(struct rig *r, struct vm *v, uint64_t iid)
{
	memset(v, 0, sizeof(*v));
	ASSERT_OK(vpnkit_port_new(r->vk, NULL, &cap_ops, &v->cap, &v->port));
	vpnkit_port_mac(v->port, v->mac);
	v->ip6 = in_prefix(r, iid);
	v->ll = addr6("fe80::");
	store_be64(&v->ll.s6_addr[8], iid);
}

/* An instance made from cfg (vpnkit_config_init's, then edited), with VM
 * a attached and its greeting advertisement kept in a.cap. */
static void rig_up_cfg(struct rig *r)
{
	ASSERT_OK(vpnkit_new(&r->cfg, &r->vk));
	r->prefix = r->cfg.prefix6;
	vm_attach(r, &r->a, 0x0250aafffebbcc01ull);
}

static void rig_cfg(struct rig *r)
{
	memset(r, 0, sizeof(*r));
	vpnkit_config_init(&r->cfg);
	r->cfg.dns_mode = VPNKIT_DNS_OFF;
}

static void rig_up(struct rig *r)
{
	rig_cfg(r);
	rig_up_cfg(r);
	r->a.cap.n = 0;
}

static void rig_down(struct rig *r)
{
	vpnkit_free(r->vk);
}

static struct vpnkit_stats stats(const struct rig *r)
{
	struct vpnkit_stats s;

	vpnkit_stats_get(r->vk, &s);
	return s;
}

/* ---------------------------------------------------------------- frames */

static uint32_t sum16(uint32_t s, const void *buf, size_t n)
{
	const uint8_t *p = buf;
	size_t i;

	for (i = 0; i + 1 < n; i += 2)
		s += (uint32_t)p[i] << 8 | p[i + 1];
	if (n & 1)
		s += (uint32_t)p[n - 1] << 8;
	return s;
}

static uint16_t sum_final(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

static uint32_t pseudo6(const void *src, const void *dst, size_t len)
{
	uint8_t tail[8] = { 0 };

	store_be32(tail, (uint32_t)len);
	tail[7] = IPPROTO_ICMPV6;
	return sum16(sum16(sum16(0, src, 16), dst, 16), tail, 8);
}

/* The Ethernet address an IPv6 destination goes to from a VM. */
static void dst_mac(const struct in6_addr *dst, uint8_t mac[6])
{
	if (dst->s6_addr[0] == 0xff) {
		mac[0] = 0x33;
		mac[1] = 0x33;
		memcpy(mac + 2, &dst->s6_addr[12], 4);
	} else {
		memcpy(mac, vk_gateway_mac, 6);
	}
}

/* An ICMPv6 message being built. */
struct msg {
	uint8_t b[64];
	size_t len;
};

/* Send m from VM v, src to dst with this hop limit; the ICMPv6 checksum
 * is filled in, and then broken if bad_csum. */
static void send6(struct vm *v, const struct in6_addr *src,
		  const struct in6_addr *dst, uint8_t hop, const struct msg *m,
		  bool bad_csum)
{
	uint8_t f[256];
	uint8_t *ip = f + 14;
	const uint8_t *msg = m->b;
	size_t len = m->len;

	ASSERT_LE_U64(len, sizeof(f) - 54);
	dst_mac(dst, f);
	memcpy(f + 6, v->mac, 6);
	store_be16(f + 12, 0x86dd);
	memset(ip, 0, 40);
	ip[0] = 0x60;
	store_be16(ip + 4, (uint16_t)len);
	ip[6] = IPPROTO_ICMPV6;
	ip[7] = hop;
	memcpy(ip + 8, src, 16);
	memcpy(ip + 24, dst, 16);
	memcpy(ip + 40, msg, len);
	ip[42] = 0;
	ip[43] = 0;
	store_be16(ip + 42, (uint16_t)(sum_final(sum16(pseudo6(src, dst, len),
						       ip + 40, len)) ^
				       (bad_csum ? 0x0101 : 0)));
	ASSERT_OK(vpnkit_port_input(v->port, NULL, f, 54 + len));
}

/* A link-layer address option of this type for mac at o. */
static size_t lla_opt(uint8_t *o, uint8_t type, const uint8_t mac[6])
{
	o[0] = type;
	o[1] = 1;
	memcpy(o + 2, mac, 6);
	return 8;
}

static const struct msg *rs_msg(struct msg *m, const uint8_t *slla)
{
	memset(m, 0, sizeof(*m));
	m->b[0] = ND_RS;
	m->len = 8 + (slla ? lla_opt(m->b + 8, 1, slla) : 0);
	return m;
}

static const struct msg *ns_msg(struct msg *m, const struct in6_addr *target,
				const uint8_t *slla)
{
	memset(m, 0, sizeof(*m));
	m->b[0] = ND_NS;
	memcpy(m->b + 8, target, 16);
	m->len = 24 + (slla ? lla_opt(m->b + 24, 1, slla) : 0);
	return m;
}

static const struct msg *na_msg(struct msg *m, uint8_t flags,
				const struct in6_addr *target,
				const uint8_t *tlla)
{
	memset(m, 0, sizeof(*m));
	m->b[0] = ND_NA;
	m->b[4] = flags;
	memcpy(m->b + 8, target, 16);
	m->len = 24 + (tlla ? lla_opt(m->b + 24, 2, tlla) : 0);
	return m;
}

/* ff02::1:ffXX:XXXX for target. */
static struct in6_addr solicited_node(const struct in6_addr *target)
{
	struct in6_addr a = addr6("ff02::1:ff00:0");

	memcpy(&a.s6_addr[13], &target->s6_addr[13], 3);
	return a;
}

/* VM v asks for target the usual way: from src to the solicited-node
 * group, with its MAC in an option. */
static void solicit(struct vm *v, const struct in6_addr *src,
		    const struct in6_addr *target)
{
	struct msg m;
	struct in6_addr sn = solicited_node(target);

	send6(v, src, &sn, 255, ns_msg(&m, target, v->mac), false);
}

/* ---------------------------------------------------------------- checks */

/*
 * Frame i of v is a well-formed neighbour discovery message of this type
 * from src to dst, with hop limit 255 and a right checksum; returns the
 * ICMPv6 message and its length in *len.
 */
static const uint8_t *nd_frame(const struct vm *v, unsigned i, uint8_t type,
			       const struct in6_addr *src,
			       const struct in6_addr *dst, size_t *len)
{
	const uint8_t *f = v->cap.frame[i], *ip = f + 14;

	ASSERT_LT_U64(i, v->cap.n);
	ASSERT_GE_U64(v->cap.len[i], 54 + 8);
	ASSERT_EQ_MEM(f + 6, vk_gateway_mac, 6);
	/* The VM's own MAC, or the group's for a multicast destination. */
	if (memcmp(f, v->mac, 6) != 0) {
		uint8_t mac[6];

		dst_mac(dst, mac);
		ASSERT_EQ_U64(dst->s6_addr[0], 0xff);
		ASSERT_EQ_MEM(f, mac, 6);
	}
	ASSERT_EQ_U64(load_be16(f + 12), 0x86dd);
	ASSERT_EQ_U64(ip[0] >> 4, 6);
	*len = load_be16(ip + 4);
	ASSERT_EQ_U64(v->cap.len[i], 54 + *len);
	ASSERT_EQ_U64(ip[6], IPPROTO_ICMPV6);
	ASSERT_EQ_U64(ip[7], 255);
	ASSERT_EQ_MEM(ip + 8, src, 16);
	ASSERT_EQ_MEM(ip + 24, dst, 16);
	ASSERT_EQ_U64(
		sum_final(sum16(pseudo6(ip + 8, ip + 24, *len), ip + 40, *len)),
		0);
	ASSERT_EQ_U64(ip[40], type);
	ASSERT_EQ_U64(ip[41], 0);
	return ip + 40;
}

/* The option of this type in an RA's options, or NULL; *olen its
 * length in bytes. Every option must have a non-zero length that fits. */
static const uint8_t *ra_option(const uint8_t *m, size_t len, uint8_t type,
				size_t *olen)
{
	size_t off = 16;

	while (off < len) {
		ASSERT_LE_U64(off + 2, len);
		ASSERT_NE_U64(m[off + 1], 0);
		ASSERT_LE_U64(off + m[off + 1] * 8u, len);
		if (m[off] == type) {
			*olen = m[off + 1] * 8u;
			return m + off;
		}
		off += m[off + 1] * 8u;
	}
	return NULL;
}

/* Frame i of v is the router advertisement the rig's config calls for. */
static const uint8_t *check_ra(const struct rig *r, const struct vm *v,
			       unsigned i, const struct in6_addr *dst,
			       size_t *len)
{
	struct in6_addr gw_ll = addr6("fe80::1"), gw = in_prefix(r, 1);
	const uint8_t *m = nd_frame(v, i, ND_RA, &gw_ll, dst, len), *o;
	size_t olen;

	ASSERT_GE_U64(*len, 16);
	ASSERT_EQ_U64(m[4], 64); /* cur hop limit */
	ASSERT_EQ_U64(m[5], 0); /* no DHCPv6: SLAAC only */
	ASSERT_GE_U64(load_be16(m + 6), 1200); /* a default router */
	ASSERT_EQ_U64(load_be32(m + 8), 0);
	ASSERT_EQ_U64(load_be32(m + 12), 0);

	o = ra_option(m, *len, 1, &olen);
	ASSERT_NOT_NULL(o);
	ASSERT_EQ_U64(olen, 8);
	ASSERT_EQ_MEM(o + 2, vk_gateway_mac, 6);

	o = ra_option(m, *len, 5, &olen);
	ASSERT_NOT_NULL(o);
	ASSERT_EQ_U64(olen, 8);
	ASSERT_EQ_U64(load_be32(o + 4), r->cfg.mtu);

	o = ra_option(m, *len, 3, &olen);
	ASSERT_NOT_NULL(o);
	ASSERT_EQ_U64(olen, 32);
	ASSERT_EQ_U64(o[2], 64);
	ASSERT_EQ_U64(o[3], 0xc0); /* on-link, autonomous */
	ASSERT_GT_U64(load_be32(o + 4), 0); /* valid */
	ASSERT_GT_U64(load_be32(o + 8), 0); /* preferred */
	ASSERT_LE_U64(load_be32(o + 8), load_be32(o + 4));
	ASSERT_EQ_MEM(o + 16, &r->prefix, 16);

	o = ra_option(m, *len, 25, &olen);
	if (r->cfg.dns_mode == VPNKIT_DNS_OFF) {
		ASSERT_NULL(o);
	} else {
		ASSERT_NOT_NULL(o);
		ASSERT_EQ_U64(olen, 24);
		ASSERT_GT_U64(load_be32(o + 4), 0);
		ASSERT_EQ_MEM(o + 8, &gw, 16);
	}
	return m;
}

/* Frame i of v is a neighbour advertisement for target with mac. */
static void check_na(const struct vm *v, unsigned i, const struct in6_addr *src,
		     const struct in6_addr *dst, const struct in6_addr *target,
		     const uint8_t *mac, uint8_t flags)
{
	size_t len;
	const uint8_t *m = nd_frame(v, i, ND_NA, src, dst, &len);

	ASSERT_EQ_U64(len, 32);
	ASSERT_EQ_U64(m[4], flags);
	ASSERT_EQ_MEM(m + 8, target, 16);
	ASSERT_EQ_U64(m[24], 2); /* target link-layer address */
	ASSERT_EQ_U64(m[25], 1);
	ASSERT_EQ_MEM(m + 26, mac, 6);
}

/* ---------------------------------------------------------------- RA */

TEST(port_up_advertises)
{
	struct rig r;
	struct in6_addr all = addr6("ff02::1");
	size_t len;

	rig_cfg(&r);
	rig_up_cfg(&r);
	ASSERT_EQ_U64(r.a.cap.n, 1);
	check_ra(&r, &r.a, 0, &all, &len);
	rig_down(&r);
}

TEST(rs_gets_ra)
{
	struct rig r;
	struct msg m;
	struct in6_addr routers = addr6("ff02::2"), any = addr6("::"),
			all = addr6("ff02::1");
	size_t len;

	rig_up(&r);
	/* From the link-local address: answered to it. */
	send6(&r.a, &r.a.ll, &routers, 255, rs_msg(&m, r.a.mac), false);
	ASSERT_EQ_U64(r.a.cap.n, 1);
	check_ra(&r, &r.a, 0, &r.a.ll, &len);
	ASSERT_EQ_U64(len, 16 + 8 + 8 + 32);

	/* From ::, before the VM has an address: to all nodes. */
	send6(&r.a, &any, &routers, 255, rs_msg(&m, NULL), false);
	ASSERT_EQ_U64(r.a.cap.n, 2);
	check_ra(&r, &r.a, 1, &all, &len);
	ASSERT_EQ_U64(stats(&r).bad, 0);
	rig_down(&r);
}

TEST(ra_carries_dns_and_mtu)
{
	struct rig r;
	struct msg m;
	struct in6_addr routers = addr6("ff02::2");
	static const uint8_t want[] = "\4corp\7example\0"
				      "\3lab\7example\0"
				      "\7example\3org\0";
	const uint8_t *ra, *o;
	size_t len, olen;

	rig_cfg(&r);
	r.cfg.dns_mode = VPNKIT_DNS_HOST;
	r.cfg.mtu = 9000;
	/* A trailing dot is fine; an empty label is not a name. */
	r.cfg.search = "corp.example lab.example. bad..name";
	r.cfg.domain = "example.org";
	rig_up_cfg(&r);
	r.a.cap.n = 0;
	send6(&r.a, &r.a.ll, &routers, 255, rs_msg(&m, r.a.mac), false);
	ASSERT_EQ_U64(r.a.cap.n, 1);
	ra = check_ra(&r, &r.a, 0, &r.a.ll, &len);

	/* RFC 8106 search list: the valid names as DNS labels, padded. */
	o = ra_option(ra, len, 31, &olen);
	ASSERT_NOT_NULL(o);
	ASSERT_EQ_U64(olen, 8 + 40);
	ASSERT_GT_U64(load_be32(o + 4), 0);
	ASSERT_EQ_MEM(o + 8, want, sizeof(want) - 1);
	for (size_t i = 8 + sizeof(want) - 1; i < olen; i++)
		ASSERT_EQ_U64(o[i], 0);
	rig_down(&r);
}

TEST(periodic_ra)
{
	struct rig r;
	struct in6_addr all = addr6("ff02::1");
	uint64_t now = vk_now_ns(), next, later;
	size_t len;
	struct vm gone;

	rig_up(&r);
	/* A port that came and went is skipped. */
	vm_attach(&r, &gone, 0x99);
	vpnkit_port_free(gone.port);
	vm_attach(&r, &r.b, 0x0250aafffebbcc02ull);
	r.b.cap.n = 0;

	/* Nothing is due yet. */
	next = vk_ndp_tick(r.vk, now);
	ASSERT_EQ_U64(r.a.cap.n, 0);
	ASSERT_GE_U64(next, now + 199ull * 1000000000u);
	ASSERT_LE_U64(next, now + 601ull * 1000000000u);

	/* Once it is, every port gets one, and the next is 200-600 s on. */
	later = next + 1;
	next = vk_ndp_tick(r.vk, later);
	ASSERT_EQ_U64(r.a.cap.n, 1);
	ASSERT_EQ_U64(r.b.cap.n, 1);
	check_ra(&r, &r.a, 0, &all, &len);
	check_ra(&r, &r.b, 0, &all, &len);
	ASSERT_GE_U64(next, later + 200ull * 1000000000u);
	ASSERT_LE_U64(next, later + 600ull * 1000000000u);
	rig_down(&r);
}

TEST(ipv6_off_is_silent)
{
	struct rig r;
	struct msg m;
	struct in6_addr routers = addr6("ff02::2");

	rig_cfg(&r);
	r.cfg.ipv6 = false;
	rig_up_cfg(&r);
	ASSERT_EQ_U64(r.a.cap.n, 0); /* no greeting */
	send6(&r.a, &r.a.ll, &routers, 255, rs_msg(&m, r.a.mac), false);
	ASSERT_EQ_U64(r.a.cap.n, 0);
	ASSERT_EQ_U64(vk_ndp_tick(r.vk, vk_now_ns() + 3600ull * 1000000000u),
		      UINT64_MAX);
	ASSERT_EQ_U64(r.a.cap.n, 0);
	rig_down(&r);
}

/* ---------------------------------------------------------------- NS */

TEST(ns_for_gateway_answered)
{
	struct rig r;
	struct msg m;
	struct in6_addr gw, gw_ll = addr6("fe80::1"), host;

	rig_up(&r);
	gw = in_prefix(&r, 1);
	host = in_prefix(&r, 2);

	solicit(&r.a, &r.a.ip6, &gw);
	ASSERT_EQ_U64(r.a.cap.n, 1);
	check_na(&r.a, 0, &gw, &r.a.ip6, &gw, vk_gateway_mac,
		 NA_R | NA_S | NA_O);

	solicit(&r.a, &r.a.ll, &gw_ll);
	ASSERT_EQ_U64(r.a.cap.n, 2);
	check_na(&r.a, 1, &gw_ll, &r.a.ll, &gw_ll, vk_gateway_mac,
		 NA_R | NA_S | NA_O);

	/* The host address is the gateway's MAC too. */
	solicit(&r.a, &r.a.ip6, &host);
	ASSERT_EQ_U64(r.a.cap.n, 3);
	check_na(&r.a, 2, &host, &r.a.ip6, &host, vk_gateway_mac,
		 NA_R | NA_S | NA_O);

	/* Unreachability detection: unicast, without the source option. */
	send6(&r.a, &r.a.ll, &gw_ll, 255, ns_msg(&m, &gw_ll, NULL), false);
	ASSERT_EQ_U64(r.a.cap.n, 4);
	check_na(&r.a, 3, &gw_ll, &r.a.ll, &gw_ll, vk_gateway_mac,
		 NA_R | NA_S | NA_O);
	ASSERT_EQ_U64(stats(&r).bad, 0);
	rig_down(&r);
}

TEST(ns_for_offlink_answered_by_gateway)
{
	struct rig r;
	struct in6_addr gw_ll = addr6("fe80::1"), far = addr6("2001:db8::7");

	rig_up(&r);
	solicit(&r.a, &r.a.ip6, &far);
	ASSERT_EQ_U64(r.a.cap.n, 1);
	check_na(&r.a, 0, &gw_ll, &r.a.ip6, &far, vk_gateway_mac,
		 NA_R | NA_S | NA_O);
	rig_down(&r);
}

TEST(ns_for_unowned_address_not_answered)
{
	struct rig r;
	struct in6_addr nobody, nobody_ll = addr6("fe80::99");

	rig_up(&r);
	nobody = in_prefix(&r, 0x99);
	solicit(&r.a, &r.a.ip6, &nobody);
	solicit(&r.a, &r.a.ll, &nobody_ll);
	/* Nor the VM's own address. */
	solicit(&r.a, &r.a.ll, &r.a.ip6);
	ASSERT_EQ_U64(r.a.cap.n, 0);
	ASSERT_EQ_U64(stats(&r).bad, 0);
	rig_down(&r);
}

TEST(dad_answered_only_for_taken_addresses)
{
	struct rig r;
	struct msg m;
	struct in6_addr any = addr6("::"), all = addr6("ff02::1"), gw, fresh,
			sn;

	rig_up(&r);
	gw = in_prefix(&r, 1);
	fresh = in_prefix(&r, 0x1234);

	/* A free address: silence, so the VM takes it. */
	sn = solicited_node(&fresh);
	send6(&r.a, &any, &sn, 255, ns_msg(&m, &fresh, NULL), false);
	ASSERT_EQ_U64(r.a.cap.n, 0);

	/* The gateway's: defended, to all nodes, not solicited. */
	sn = solicited_node(&gw);
	send6(&r.a, &any, &sn, 255, ns_msg(&m, &gw, NULL), false);
	ASSERT_EQ_U64(r.a.cap.n, 1);
	check_na(&r.a, 0, &gw, &all, &gw, vk_gateway_mac, NA_R | NA_O);
	ASSERT_EQ_U64(stats(&r).bad, 0);
	rig_down(&r);
}

TEST(ns_for_other_vm_proxied)
{
	struct rig r;
	struct msg m;
	struct in6_addr all = addr6("ff02::1"), any = addr6("::"),
			gw_ll = addr6("fe80::1"), sn;

	rig_up(&r);
	vm_attach(&r, &r.b, 0x0250aafffebbcc02ull);
	r.b.cap.n = 0;

	/* B announces its global address (an unsolicited advertisement
	 * from its link-local one), and uses its link-local address. */
	send6(&r.b, &r.b.ll, &all, 255, na_msg(&m, NA_O, &r.b.ip6, r.b.mac),
	      false);
	ASSERT_EQ_U64(stats(&r).bad, 0);

	/* A asks for either: B's MAC, not as a router. */
	solicit(&r.a, &r.a.ip6, &r.b.ip6);
	ASSERT_EQ_U64(r.a.cap.n, 1);
	check_na(&r.a, 0, &gw_ll, &r.a.ip6, &r.b.ip6, r.b.mac, NA_S | NA_O);
	solicit(&r.a, &r.a.ll, &r.b.ll);
	ASSERT_EQ_U64(r.a.cap.n, 2);
	check_na(&r.a, 1, &gw_ll, &r.a.ll, &r.b.ll, r.b.mac, NA_S | NA_O);

	/* A probing B's address for duplicates is told it is taken. */
	sn = solicited_node(&r.b.ip6);
	send6(&r.a, &any, &sn, 255, ns_msg(&m, &r.b.ip6, NULL), false);
	ASSERT_EQ_U64(r.a.cap.n, 3);
	check_na(&r.a, 2, &gw_ll, &all, &r.b.ip6, r.b.mac, NA_O);

	/* B re-probing its own address is not. */
	send6(&r.b, &any, &sn, 255, ns_msg(&m, &r.b.ip6, NULL), false);
	ASSERT_EQ_U64(r.b.cap.n, 0);
	ASSERT_EQ_U64(stats(&r).bad, 0);
	rig_down(&r);
}

/* One malformed message must be dropped, counted, and not answered. */
static void expect_bad(struct rig *r, const struct in6_addr *src,
		       const struct in6_addr *dst, uint8_t hop,
		       const struct msg *m, bool bad_csum)
{
	uint64_t bad = stats(r).bad;

	send6(&r->a, src, dst, hop, m, bad_csum);
	ASSERT_EQ_U64(stats(r).bad, bad + 1);
	ASSERT_EQ_U64(r->a.cap.n, 0);
}

TEST(malformed_nd_counted)
{
	struct rig r;
	struct msg m;
	struct in6_addr gw, sn, any = addr6("::"), routers = addr6("ff02::2"),
				mc = addr6("ff02::1");

	rig_up(&r);
	gw = in_prefix(&r, 1);
	sn = solicited_node(&gw);

	/* Hop limit other than 255: it may come from off the link. */
	ns_msg(&m, &gw, r.a.mac);
	expect_bad(&r, &r.a.ip6, &sn, 64, &m, false);
	/* A wrong checksum. */
	expect_bad(&r, &r.a.ip6, &sn, 255, &m, true);
	/* A code other than 0. */
	m.b[1] = 1;
	expect_bad(&r, &r.a.ip6, &sn, 255, &m, false);
	m.b[1] = 0;
	/* An option of length zero, and one running past the end. */
	m.b[25] = 0;
	expect_bad(&r, &r.a.ip6, &sn, 255, &m, false);
	m.b[25] = 2;
	expect_bad(&r, &r.a.ip6, &sn, 255, &m, false);
	/* Shorter than a solicitation. */
	m.len = 20;
	expect_bad(&r, &r.a.ip6, &sn, 255, &m, false);
	/* A multicast target. */
	expect_bad(&r, &r.a.ip6, &sn, 255, ns_msg(&m, &mc, r.a.mac), false);
	/* Duplicate address detection with a source address option, and
	 * one not sent to the solicited-node group. */
	expect_bad(&r, &any, &sn, 255, ns_msg(&m, &gw, r.a.mac), false);
	expect_bad(&r, &any, &gw, 255, ns_msg(&m, &gw, NULL), false);
	/* A router solicitation from :: with a source address option. */
	expect_bad(&r, &any, &routers, 255, rs_msg(&m, r.a.mac), false);
	/* A solicited advertisement to a multicast group. */
	expect_bad(&r, &r.a.ll, &mc, 255, na_msg(&m, NA_S, &r.a.ip6, r.a.mac),
		   false);
	/* A router solicitation shorter than its header. */
	rs_msg(&m, NULL);
	m.len = 6;
	expect_bad(&r, &r.a.ll, &routers, 255, &m, false);
	rig_down(&r);
}

static const struct test_case tests[] = {
	TEST_CASE(port_up_advertises),
	TEST_CASE(rs_gets_ra),
	TEST_CASE(ra_carries_dns_and_mtu),
	TEST_CASE(periodic_ra),
	TEST_CASE(ipv6_off_is_silent),
	TEST_CASE(ns_for_gateway_answered),
	TEST_CASE(ns_for_offlink_answered_by_gateway),
	TEST_CASE(ns_for_unowned_address_not_answered),
	TEST_CASE(dad_answered_only_for_taken_addresses),
	TEST_CASE(ns_for_other_vm_proxied),
	TEST_CASE(malformed_nd_counted),
};

TEST_MAIN(tests);
