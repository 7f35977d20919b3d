// SPDX-License-Identifier: MIT
/*
 * Unit tests for vpnkit/ndp.c, driven through the public API on rig.h's
 * rig (and a second VM where a case needs one): router and neighbour
 * solicitations built by hand go in through vpnkit_port_input, and the
 * advertisements that come out of the port's send callback are checked
 * field by field, lengths and checksums by frames.h. The periodic
 * advertisement is driven by calling the timer with a time in the future.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <base/endian.h>
#include <base/test.h>
#include <vpnkit/vpnkit.h>

#include "../internal.h" /* vk_gateway_mac, vk_ndp_tick, vk_now_ns */
#include "frames.h"
#include "rig.h"

#define ND_RS 133
#define ND_RA 134
#define ND_NS 135
#define ND_NA 136

#define NA_R 0x80
#define NA_S 0x40
#define NA_O 0x20

/* ---------------------------------------------------------------- the rig */

/* One VM on the switch: rig.h's own, or another with a capture of its
 * own. */
struct vm {
	struct vpnkit_port *port;
	struct capture *cap;
	struct capture own;
	uint8_t mac[6];
	uint8_t ip6[16]; /* its SLAAC address in the prefix */
	uint8_t ll[16]; /* its link-local address */
};

/* rig.h's rig, its VM as a, and room for a second one. */
struct ndp {
	struct rig r;
	struct vm a, b;
};

static struct in6_addr in_prefix(const struct ndp *t, uint64_t iid)
{
	struct in6_addr a = t->r.cfg.prefix6;

	store_be64(&a.s6_addr[8], iid);
	return a;
}

/* Another VM, whose addresses have this interface identifier. */
static void vm_attach(struct ndp *t, struct vm *v, uint64_t iid)
{
	struct in6_addr ip6 = in_prefix(t, iid);

	memset(v, 0, sizeof(*v));
	v->cap = &v->own;
	v->own.budget = -1;
	ASSERT_OK(vpnkit_port_new(t->r.vk, NULL, &cap_ops, v->cap, &v->port));
	vpnkit_port_mac(v->port, v->mac);
	memcpy(v->ip6, &ip6, 16);
	v->ll[0] = 0xfe;
	v->ll[1] = 0x80;
	store_be64(v->ll + 8, iid);
}

/* The rig made from cfg (NULL: rig_config's); its greeting
 * advertisement was read past (t->r.cap.f[0]). */
static void ndp_up(struct ndp *t, const struct vpnkit_config *cfg)
{
	memset(t, 0, sizeof(*t));
	rig_start(&t->r, cfg, 0);
	t->a.port = t->r.port;
	t->a.cap = &t->r.cap;
	memcpy(t->a.mac, t->r.mac, 6);
	memcpy(t->a.ip6, t->r.ip6, 16);
	memcpy(t->a.ll, t->r.ll6, 16);
}

static void ndp_down(struct ndp *t)
{
	cap_release(&t->b.own);
	rig_stop(&t->r);
}

/* The end of a case where every frame was well formed and every answer
 * has been read: nothing counted bad, nothing more came. */
static void ndp_done(struct ndp *t)
{
	ASSERT_EQ_U64(rig_stats(&t->r).bad, 0);
	ASSERT_NULL(cap_next(t->a.cap));
	if (t->b.port)
		ASSERT_NULL(cap_next(t->b.cap));
	ndp_down(t);
}

/* ---------------------------------------------------------------- frames */

/* An ICMPv6 message being built. */
struct msg {
	uint8_t b[64];
	size_t len;
};

/* Send m from VM v, src to dst with this hop limit; the ICMPv6 checksum
 * is filled in, and then broken if bad_csum. */
static void send6(struct vm *v, const void *src, const void *dst, uint8_t hop,
		  const struct msg *m, bool bad_csum)
{
	uint8_t f[256];
	struct fr_l3 a;
	size_t len;

	memset(&a, 0, sizeof(a));
	memcpy(a.src_mac, v->mac, 6);
	fr_mac6(dst, vk_gateway_mac, a.dst_mac);
	a.af = 6;
	memcpy(a.src, src, 16);
	memcpy(a.dst, dst, 16);
	a.ttl = hop;
	ASSERT_LE_U64(m->len, sizeof(f) - 54);
	len = fr_ip(f, &a, IPPROTO_ICMPV6, m->b, m->len);
	if (bad_csum) {
		f[54 + 2] ^= 1;
		f[54 + 3] ^= 1;
	}
	ASSERT_OK(vpnkit_port_input(v->port, NULL, f, len));
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

/* A solicitation (NS) or advertisement (NA) for target, with flags and
 * a link-layer address option (source for NS, target for NA) if lla. */
static const struct msg *nd_msg(struct msg *m, uint8_t type, uint8_t flags,
				const void *target, const uint8_t *lla)
{
	memset(m, 0, sizeof(*m));
	m->b[0] = type;
	m->b[4] = flags;
	memcpy(m->b + 8, target, 16);
	m->len =
		24 + (lla ? lla_opt(m->b + 24, type == ND_NS ? 1 : 2, lla) : 0);
	return m;
}

static const struct msg *ns_msg(struct msg *m, const void *target,
				const uint8_t *slla)
{
	return nd_msg(m, ND_NS, 0, target, slla);
}

static const struct msg *na_msg(struct msg *m, uint8_t flags,
				const void *target, const uint8_t *tlla)
{
	return nd_msg(m, ND_NA, flags, target, tlla);
}

/* ff02::1:ffXX:XXXX for target. */
static struct in6_addr solicited_node(const void *target)
{
	struct in6_addr a = rig_addr6("ff02::1:ff00:0");

	memcpy(&a.s6_addr[13], (const uint8_t *)target + 13, 3);
	return a;
}

/* VM v asks for target the usual way: from src to the solicited-node
 * group, with its MAC in an option. */
static void solicit(struct vm *v, const void *src, const void *target)
{
	struct msg m;
	struct in6_addr sn = solicited_node(target);

	send6(v, src, &sn, 255, ns_msg(&m, target, v->mac), false);
}

/* ---------------------------------------------------------------- checks */

/*
 * The next frame v got (rig.h checked its lengths and checksum) is a
 * neighbour discovery message of this type from the gateway, src to dst,
 * with hop limit 255; returns the ICMPv6 message and its length in *len.
 */
static const uint8_t *nd_next(struct vm *v, uint8_t type, const void *src,
			      const void *dst, size_t *len)
{
	struct cap_frame *cf = cap_next(v->cap);
	struct fr_view fv;

	ASSERT_NOT_NULL(cf);
	ASSERT_NULL(fr_parse(&fv, cf->data, cf->len, false));
	ASSERT_EQ_MEM(fv.src_mac, vk_gateway_mac, 6);
	/* The VM's own MAC, or the group's for a multicast destination. */
	if (memcmp(fv.dst_mac, v->mac, 6) != 0) {
		uint8_t mac[6];

		ASSERT_EQ_U64(*(const uint8_t *)dst, 0xff);
		fr_mac6(dst, v->mac, mac);
		ASSERT_EQ_MEM(fv.dst_mac, mac, 6);
	}
	ASSERT_EQ_INT(fv.af, 6);
	ASSERT_EQ_U64(fv.proto, IPPROTO_ICMPV6);
	ASSERT_EQ_U64(fv.ttl, 255);
	ASSERT_EQ_MEM(fv.src, src, 16);
	ASSERT_EQ_MEM(fv.dst, dst, 16);
	ASSERT_GE_U64(fv.l4_len, 8);
	ASSERT_EQ_U64(fv.l4[0], type);
	ASSERT_EQ_U64(fv.l4[1], 0);
	*len = fv.l4_len;
	return fv.l4;
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

/* The next frame of v is the router advertisement the config calls for. */
static const uint8_t *check_ra(const struct ndp *t, struct vm *v,
			       const void *dst, size_t *len)
{
	const struct rig *r = &t->r;
	const uint8_t *m = nd_next(v, ND_RA, r->gw_ll6, dst, len), *o;
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
	ASSERT_EQ_MEM(o + 16, &r->cfg.prefix6, 16);

	o = ra_option(m, *len, 25, &olen);
	if (r->cfg.dns_mode == VPNKIT_DNS_OFF) {
		ASSERT_NULL(o);
	} else {
		ASSERT_NOT_NULL(o);
		ASSERT_EQ_U64(olen, 24);
		ASSERT_GT_U64(load_be32(o + 4), 0);
		ASSERT_EQ_MEM(o + 8, r->gw6, 16);
	}
	return m;
}

/* The next frame of v is a neighbour advertisement for target with mac. */
static void check_na(struct vm *v, const void *src, const void *dst,
		     const void *target, const uint8_t *mac, uint8_t flags)
{
	size_t len;
	const uint8_t *m = nd_next(v, ND_NA, src, dst, &len);

	ASSERT_EQ_U64(len, 32);
	ASSERT_EQ_U64(m[4], flags);
	ASSERT_EQ_MEM(m + 8, target, 16);
	ASSERT_EQ_U64(m[24], 2); /* target link-layer address */
	ASSERT_EQ_U64(m[25], 1);
	ASSERT_EQ_MEM(m + 26, mac, 6);
}

/* Nothing more came to v. */
static void expect_none(struct vm *v)
{
	ASSERT_NULL(cap_next(v->cap));
}

/* ---------------------------------------------------------------- RA */

TEST(port_up_advertises)
{
	struct ndp t;
	struct in6_addr all = rig_addr6("ff02::1");
	size_t len;

	ndp_up(&t, NULL);
	/* The greeting, the first frame the port got (before the rig's
	 * ARP reply). */
	t.r.cap.next = 0;
	check_ra(&t, &t.a, &all, &len);
	ndp_down(&t);
}

TEST(rs_gets_ra)
{
	struct ndp t;
	struct msg m;
	struct in6_addr routers = rig_addr6("ff02::2"), any = rig_addr6("::"),
			all = rig_addr6("ff02::1");
	size_t len;

	ndp_up(&t, NULL);
	/* From the link-local address: answered to it. */
	send6(&t.a, t.a.ll, &routers, 255, rs_msg(&m, t.a.mac), false);
	check_ra(&t, &t.a, t.a.ll, &len);
	ASSERT_EQ_U64(len, 16 + 8 + 8 + 32);

	/* From ::, before the VM has an address: to all nodes. */
	send6(&t.a, &any, &routers, 255, rs_msg(&m, NULL), false);
	check_ra(&t, &t.a, &all, &len);
	ndp_done(&t);
}

TEST(ra_carries_dns_and_mtu)
{
	struct vpnkit_config cfg;
	struct ndp t;
	struct msg m;
	struct in6_addr routers = rig_addr6("ff02::2");
	static const uint8_t want[] = "\4corp\7example\0"
				      "\3lab\7example\0"
				      "\7example\3org\0";
	const uint8_t *ra, *o;
	size_t len, olen;

	rig_config(&cfg);
	cfg.dns_mode = VPNKIT_DNS_HOST;
	cfg.mtu = 9000;
	/* A trailing dot is fine; an empty label is not a name. */
	cfg.search = "corp.example lab.example. bad..name";
	cfg.domain = "example.org";
	ndp_up(&t, &cfg);
	send6(&t.a, t.a.ll, &routers, 255, rs_msg(&m, t.a.mac), false);
	ra = check_ra(&t, &t.a, t.a.ll, &len);

	/* RFC 8106 search list: the valid names as DNS labels, padded. */
	o = ra_option(ra, len, 31, &olen);
	ASSERT_NOT_NULL(o);
	ASSERT_EQ_U64(olen, 8 + 40);
	ASSERT_GT_U64(load_be32(o + 4), 0);
	ASSERT_EQ_MEM(o + 8, want, sizeof(want) - 1);
	for (size_t i = 8 + sizeof(want) - 1; i < olen; i++)
		ASSERT_EQ_U64(o[i], 0);
	ndp_down(&t);
}

TEST(periodic_ra)
{
	struct ndp t;
	struct in6_addr all = rig_addr6("ff02::1");
	uint64_t now = vk_now_ns(), next, later;
	size_t len;
	struct vm gone;

	ndp_up(&t, NULL);
	/* A port that came and went is skipped. */
	vm_attach(&t, &gone, 0x99);
	vpnkit_port_free(gone.port);
	cap_release(&gone.own);
	vm_attach(&t, &t.b, 0x0250aafffebbcc02ull);
	t.b.own.next = t.b.own.n;

	/* Nothing is due yet. */
	next = vk_ndp_tick(t.r.vk, now);
	expect_none(&t.a);
	ASSERT_GE_U64(next, now + 199ull * 1000000000u);
	ASSERT_LE_U64(next, now + 601ull * 1000000000u);

	/* Once it is, every port gets one, and the next is 200-600 s on. */
	later = next + 1;
	next = vk_ndp_tick(t.r.vk, later);
	check_ra(&t, &t.a, &all, &len);
	check_ra(&t, &t.b, &all, &len);
	expect_none(&t.a);
	expect_none(&t.b);
	ASSERT_GE_U64(next, later + 200ull * 1000000000u);
	ASSERT_LE_U64(next, later + 600ull * 1000000000u);
	ndp_down(&t);
}

TEST(ipv6_off_is_silent)
{
	struct vpnkit_config cfg;
	struct ndp t;
	struct msg m;
	struct in6_addr routers = rig_addr6("ff02::2");

	rig_config(&cfg);
	cfg.ipv6 = false;
	ndp_up(&t, &cfg);
	/* No greeting: the rig's ARP reply is all the port got. */
	ASSERT_EQ_U64(t.r.cap.n, 1);
	ASSERT_EQ_U64(load_be16(t.r.cap.f[0].data + 12), FR_ETH_ARP);
	send6(&t.a, t.a.ll, &routers, 255, rs_msg(&m, t.a.mac), false);
	expect_none(&t.a);
	ASSERT_EQ_U64(vk_ndp_tick(t.r.vk, vk_now_ns() + 3600ull * 1000000000u),
		      UINT64_MAX);
	ndp_done(&t);
}

/* ---------------------------------------------------------------- NS */

TEST(ns_for_gateway_answered)
{
	struct ndp t;
	struct msg m;
	const uint8_t *gw, *gw_ll, *host;

	ndp_up(&t, NULL);
	gw = t.r.gw6;
	gw_ll = t.r.gw_ll6;
	host = t.r.host6;

	solicit(&t.a, t.a.ip6, gw);
	check_na(&t.a, gw, t.a.ip6, gw, vk_gateway_mac, NA_R | NA_S | NA_O);

	solicit(&t.a, t.a.ll, gw_ll);
	check_na(&t.a, gw_ll, t.a.ll, gw_ll, vk_gateway_mac,
		 NA_R | NA_S | NA_O);

	/* The host address is the gateway's MAC too. */
	solicit(&t.a, t.a.ip6, host);
	check_na(&t.a, host, t.a.ip6, host, vk_gateway_mac, NA_R | NA_S | NA_O);

	/* Unreachability detection: unicast, without the source option. */
	send6(&t.a, t.a.ll, gw_ll, 255, ns_msg(&m, gw_ll, NULL), false);
	check_na(&t.a, gw_ll, t.a.ll, gw_ll, vk_gateway_mac,
		 NA_R | NA_S | NA_O);
	ndp_done(&t);
}

TEST(ns_for_offlink_answered_by_gateway)
{
	struct ndp t;
	struct in6_addr far = rig_addr6("2001:db8::7");

	ndp_up(&t, NULL);
	solicit(&t.a, t.a.ip6, &far);
	check_na(&t.a, t.r.gw_ll6, t.a.ip6, &far, vk_gateway_mac,
		 NA_R | NA_S | NA_O);
	ndp_done(&t);
}

TEST(ns_for_unowned_address_not_answered)
{
	struct ndp t;
	struct in6_addr nobody, nobody_ll = rig_addr6("fe80::99");

	ndp_up(&t, NULL);
	nobody = in_prefix(&t, 0x99);
	solicit(&t.a, t.a.ip6, &nobody);
	solicit(&t.a, t.a.ll, &nobody_ll);
	/* Nor the VM's own address. */
	solicit(&t.a, t.a.ll, t.a.ip6);
	ndp_done(&t);
}

TEST(dad_answered_only_for_taken_addresses)
{
	struct ndp t;
	struct msg m;
	struct in6_addr any = rig_addr6("::"), all = rig_addr6("ff02::1"),
			fresh, sn;

	ndp_up(&t, NULL);
	fresh = in_prefix(&t, 0x1234);

	/* A free address: silence, so the VM takes it. */
	sn = solicited_node(&fresh);
	send6(&t.a, &any, &sn, 255, ns_msg(&m, &fresh, NULL), false);
	expect_none(&t.a);

	/* The gateway's: defended, to all nodes, not solicited. */
	sn = solicited_node(t.r.gw6);
	send6(&t.a, &any, &sn, 255, ns_msg(&m, t.r.gw6, NULL), false);
	check_na(&t.a, t.r.gw6, &all, t.r.gw6, vk_gateway_mac, NA_R | NA_O);
	ndp_done(&t);
}

TEST(ns_for_other_vm_proxied)
{
	struct ndp t;
	struct msg m;
	struct in6_addr all = rig_addr6("ff02::1"), any = rig_addr6("::"), sn;

	ndp_up(&t, NULL);
	vm_attach(&t, &t.b, 0x0250aafffebbcc02ull);
	t.b.own.next = t.b.own.n;

	/* B announces its global address (an unsolicited advertisement
	 * from its link-local one), and uses its link-local address. */
	send6(&t.b, t.b.ll, &all, 255, na_msg(&m, NA_O, t.b.ip6, t.b.mac),
	      false);
	ASSERT_EQ_U64(rig_stats(&t.r).bad, 0);

	/* A asks for either: B's MAC, not as a router. */
	solicit(&t.a, t.a.ip6, t.b.ip6);
	check_na(&t.a, t.r.gw_ll6, t.a.ip6, t.b.ip6, t.b.mac, NA_S | NA_O);
	solicit(&t.a, t.a.ll, t.b.ll);
	check_na(&t.a, t.r.gw_ll6, t.a.ll, t.b.ll, t.b.mac, NA_S | NA_O);

	/* A probing B's address for duplicates is told it is taken. */
	sn = solicited_node(t.b.ip6);
	send6(&t.a, &any, &sn, 255, ns_msg(&m, t.b.ip6, NULL), false);
	check_na(&t.a, t.r.gw_ll6, &all, t.b.ip6, t.b.mac, NA_O);
	expect_none(&t.a);

	/* B re-probing its own address is not. */
	send6(&t.b, &any, &sn, 255, ns_msg(&m, t.b.ip6, NULL), false);
	expect_none(&t.b);
	ndp_done(&t);
}

/* One malformed message must be dropped, counted, and not answered. */
static void expect_bad(struct ndp *t, const void *src, const void *dst,
		       uint8_t hop, const struct msg *m, bool bad_csum)
{
	uint64_t bad = rig_stats(&t->r).bad;

	send6(&t->a, src, dst, hop, m, bad_csum);
	ASSERT_EQ_U64(rig_stats(&t->r).bad, bad + 1);
	expect_none(&t->a);
}

TEST(malformed_nd_counted)
{
	struct ndp t;
	struct msg m;
	struct in6_addr sn, any = rig_addr6("::"),
			    routers = rig_addr6("ff02::2"),
			    mc = rig_addr6("ff02::1");
	const uint8_t *gw, *ip6;

	ndp_up(&t, NULL);
	gw = t.r.gw6;
	ip6 = t.a.ip6;
	sn = solicited_node(gw);

	/* Hop limit other than 255: it may come from off the link. */
	ns_msg(&m, gw, t.a.mac);
	expect_bad(&t, ip6, &sn, 64, &m, false);
	/* A wrong checksum. */
	expect_bad(&t, ip6, &sn, 255, &m, true);
	/* A code other than 0. */
	m.b[1] = 1;
	expect_bad(&t, ip6, &sn, 255, &m, false);
	m.b[1] = 0;
	/* An option of length zero, and one running past the end. */
	m.b[25] = 0;
	expect_bad(&t, ip6, &sn, 255, &m, false);
	m.b[25] = 2;
	expect_bad(&t, ip6, &sn, 255, &m, false);
	/* Shorter than a solicitation. */
	m.len = 20;
	expect_bad(&t, ip6, &sn, 255, &m, false);
	/* A multicast target. */
	expect_bad(&t, ip6, &sn, 255, ns_msg(&m, &mc, t.a.mac), false);
	/* Duplicate address detection with a source address option, and
	 * one not sent to the solicited-node group. */
	expect_bad(&t, &any, &sn, 255, ns_msg(&m, gw, t.a.mac), false);
	expect_bad(&t, &any, gw, 255, ns_msg(&m, gw, NULL), false);
	/* A router solicitation from :: with a source address option. */
	expect_bad(&t, &any, &routers, 255, rs_msg(&m, t.a.mac), false);
	/* A solicited advertisement to a multicast group. */
	expect_bad(&t, t.a.ll, &mc, 255, na_msg(&m, NA_S, ip6, t.a.mac), false);
	/* A router solicitation shorter than its header. */
	rs_msg(&m, NULL);
	m.len = 6;
	expect_bad(&t, t.a.ll, &routers, 255, &m, false);
	ndp_down(&t);
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
