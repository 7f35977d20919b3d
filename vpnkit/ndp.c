/* SPDX-License-Identifier: MIT */
/*
 * Neighbour discovery (RFC 4861) and router advertisements for SLAAC
 * (RFC 4862), the IPv6 counterpart of ARP and DHCP: the gateway answers
 * neighbour solicitations, advertises itself as the default router with
 * the instance's /64 prefix, the link MTU and itself as DNS server
 * (RFC 8106), and learns the addresses the VMs advertise (ip.c learns
 * those they send from).
 *
 * Which solicitations are answered. The VMs sit on a switch that does not
 * flood: a solicitation reaches us alone, so we answer for everyone who
 * should be reachable:
 *   - the gateway's addresses (prefix::1, fe80::1) and the host address
 *     (prefix::2), with the gateway's MAC, as a router;
 *   - another VM's address, with that VM's MAC (a proxy, as ARP does for
 *     IPv4), so that VM-to-VM frames go straight across the switch;
 *   - an address outside the prefix and not link-local (a VM that thinks
 *     it on-link), with the gateway's MAC: off-link traffic goes through
 *     us anyway.
 * An address of the prefix or link-local that nobody owns gets no answer,
 * so the VM's own neighbour discovery reports it unreachable. Duplicate
 * address detection (a solicitation from ::) is answered only when the
 * address is taken: ours or another VM's.
 *
 * Advertisements go to a VM when its port comes up, when it solicits one,
 * and every 200 to 600 seconds (a random interval, RFC 4861's defaults)
 * to every port. Like every ICMPv6 message vk_ip_send makes, they carry
 * hop limit 255, which neighbour discovery requires; they go to the
 * port's MAC even when the IPv6 destination is all-nodes (ff02::1), which
 * a VM accepts as it would the multicast MAC: each port is its own link.
 */
#include <stdlib.h>
#include <string.h>

#include "base/cursor.h"
#include "base/endian.h"
#include "internal.h"
#include "ndp.h"

#define ND_HOP_LIMIT 255

/* Option types. */
#define ND_OPT_SOURCE_LLADDR 1
#define ND_OPT_TARGET_LLADDR 2
#define ND_OPT_PREFIX_INFO 3
#define ND_OPT_MTU 5
#define ND_OPT_RDNSS 25
#define ND_OPT_DNSSL 31

/* Neighbour advertisement flags (first byte after the checksum). */
#define ND_NA_ROUTER 0x80
#define ND_NA_SOLICITED 0x40
#define ND_NA_OVERRIDE 0x20

/* Prefix information flags: on-link, autonomous configuration. */
#define ND_PI_ONLINK 0x80
#define ND_PI_AUTO 0x40

/* What the advertisements say (radvd's defaults, RFC 4861 section 6.2.1
 * and RFC 8106 section 5.1). */
#define RA_CUR_HOP_LIMIT 64
#define RA_ROUTER_LIFETIME_S 1800
#define RA_PREFIX_VALID_S 86400
#define RA_PREFIX_PREFERRED_S 14400
#define RA_DNS_LIFETIME_S 1800
#define RA_MIN_INTERVAL_S 200
#define RA_MAX_INTERVAL_S 600

/* Room for the DNS search list option's names. */
#define RA_DNSSL_MAX 256
#define RA_MAX (16 + 8 + 8 + 32 + 24 + 8 + RA_DNSSL_MAX)

#define NS_HLEN 24 /* type .. target: NS and NA alike */
#define RS_HLEN 8

#define NS_PER_S 1000000000ull

/*
 * One flat allocation (the instance frees it with free()). The ports to
 * advertise to are found by id: every port id passes through
 * vk_ndp_port_up, ids are never reused, and those of ports gone are
 * skipped, so [low_id, high_id] covers every live port.
 */
struct ndp_state {
	uint64_t next_ra_ns; /* next unsolicited advertisement, 0: none */
	uint32_t rng; /* xorshift state for the interval */
	uint32_t low_id, high_id; /* port ids seen, the lowest maybe live */
};

static const struct in6_addr all_nodes = {
	.s6_addr = { 0xff, 0x02, [15] = 0x01 },
};

/* ff02::1:ff00:0/104, the solicited-node groups. */
static const struct in6_addr solicited_node_prefix = {
	.s6_addr = { 0xff, 0x02, [11] = 0x01, [12] = 0xff },
};

static struct ndp_state *ndp_state(struct vpnkit *vk)
{
	struct ndp_state **st = (struct ndp_state **)vk_ndp_state(vk);

	if (!*st) {
		*st = calloc(1, sizeof(**st));
		if (!*st)
			return NULL;
		(*st)->rng = (uint32_t)vk_now_ns() | 1u;
		(*st)->low_id = UINT32_MAX;
	}
	return *st;
}

/* ---------------------------------------------------------------- sending */

/*
 * s[0..n) as a DNS name in wire form (length-prefixed labels, then a zero)
 * in out. Returns the length, or 0 if s is not a valid name (empty
 * labels, a label over 63 bytes, over 255 bytes in all). One trailing dot
 * is allowed.
 */
static size_t dns_name_encode(const char *s, size_t n, uint8_t out[255])
{
	size_t len = 0;

	if (n > 0 && s[n - 1] == '.')
		n--;
	for (size_t i = 0;;) {
		size_t ll = 0;

		while (i + ll < n && s[i + ll] != '.')
			ll++;
		if (ll == 0 || ll > 63 || len + 1 + ll + 1 > 255)
			return 0;
		out[len++] = (uint8_t)ll;
		memcpy(out + len, s + i, ll);
		len += ll;
		if (i + ll == n)
			break;
		i += ll + 1;
	}
	out[len++] = 0;
	return len;
}

/*
 * The DNS search list option (RFC 8106): the names of cfg->search and
 * cfg->domain, padded to 8 bytes. Names that are not valid DNS names or
 * do not fit are left out. Returns the option's length, 0 if there is no
 * name.
 */
static size_t ra_dnssl(const struct vpnkit_config *cfg, uint8_t *opt)
{
	const char *lists[2] = { cfg->search, cfg->domain };
	uint8_t *names = opt + 8;
	size_t used = 0;

	for (int l = 0; l < 2; l++) {
		const char *s = lists[l];

		while (s && *s) {
			size_t n = strcspn(s, " \t,");
			uint8_t name[255];
			size_t nlen = dns_name_encode(s, n, name);

			if (nlen > 0 && used + nlen <= RA_DNSSL_MAX) {
				memcpy(names + used, name, nlen);
				used += nlen;
			}
			s += n;
			s += strspn(s, " \t,");
		}
	}
	if (used == 0)
		return 0;
	while (used % 8)
		names[used++] = 0;
	opt[0] = ND_OPT_DNSSL;
	opt[1] = (uint8_t)((8 + used) / 8);
	opt[2] = 0;
	opt[3] = 0;
	store_be32(opt + 4, RA_DNS_LIFETIME_S);
	return 8 + used;
}

/* A router advertisement to port's VM at dst (ff02::1 or the solicitor). */
static void ra_send(struct vpnkit *vk, struct vk_port *port,
		    const struct in6_addr *dst)
{
	const struct vpnkit_config *cfg = vk_config(vk);
	uint8_t ra[RA_MAX];
	uint8_t *o;

	memset(ra, 0, sizeof(ra));
	ra[0] = VK_ND_ROUTER_ADVERT;
	ra[4] = RA_CUR_HOP_LIMIT;
	store_be16(ra + 6, RA_ROUTER_LIFETIME_S);
	/* Reachable time and retransmission timer: 0, unspecified. */
	o = ra + 16;

	o[0] = ND_OPT_SOURCE_LLADDR;
	o[1] = 1;
	memcpy(o + 2, vk_gateway_mac, VK_ETH_ALEN);
	o += 8;

	o[0] = ND_OPT_MTU;
	o[1] = 1;
	store_be32(o + 4, cfg->mtu);
	o += 8;

	o[0] = ND_OPT_PREFIX_INFO;
	o[1] = 4;
	o[2] = 64;
	o[3] = ND_PI_ONLINK | ND_PI_AUTO;
	store_be32(o + 4, RA_PREFIX_VALID_S);
	store_be32(o + 8, RA_PREFIX_PREFERRED_S);
	memcpy(o + 16, &cfg->prefix6, 8); /* the /64: low half zero */
	o += 32;

	if (cfg->dns_mode != VPNKIT_DNS_OFF) {
		o[0] = ND_OPT_RDNSS;
		o[1] = 3;
		store_be32(o + 4, RA_DNS_LIFETIME_S);
		memcpy(o + 8, vk_gateway6(vk), 16);
		o += 24;
		o += ra_dnssl(cfg, o);
	}
	vk_ip_send(port, IPPROTO_ICMPV6, vk_gateway6_ll(vk), dst, ra,
		   (size_t)(o - ra), NULL, 0);
}

/* A neighbour advertisement for target with mac, to dst. */
static void na_send(struct vk_port *port, const struct in6_addr *src,
		    const struct in6_addr *dst, const struct in6_addr *target,
		    const uint8_t mac[VK_ETH_ALEN], uint8_t flags)
{
	uint8_t na[NS_HLEN + 8];

	memset(na, 0, sizeof(na));
	na[0] = VK_ND_NEIGHBOR_ADVERT;
	na[4] = flags;
	memcpy(na + 8, target, 16);
	na[24] = ND_OPT_TARGET_LLADDR;
	na[25] = 1;
	memcpy(na + 26, mac, VK_ETH_ALEN);
	vk_ip_send(port, IPPROTO_ICMPV6, src, dst, na, sizeof(na), NULL, 0);
}

/* ---------------------------------------------------------------- input */

/*
 * Check the options (each with a non-zero length that fits, RFC 4861
 * section 4.6) and find the link-layer address option of type want, if
 * any (*lla stays NULL otherwise). Returns false if malformed.
 */
static bool nd_options(const uint8_t *p, size_t len, uint8_t want,
		       const uint8_t **lla)
{
	struct cursor c;

	*lla = NULL;
	cursor_init(&c, p, len);
	while (cursor_remaining(&c) > 0) {
		uint8_t type = cursor_u8(&c);
		uint8_t units = cursor_u8(&c);
		const uint8_t *body;

		if (cursor_failed(&c) || units == 0)
			return false;
		body = cursor_ptr(&c, (size_t)units * 8 - 2);
		if (!body)
			return false;
		if (type == want && units == 1)
			*lla = body;
	}
	return true;
}

static bool in_prefix(const struct vpnkit *vk, const struct in6_addr *a)
{
	return memcmp(a, &vk_config(vk)->prefix6, 8) == 0;
}

/* ff02::1:ffXX:XXXX, where a duplicate address detection probe goes. */
static bool is_solicited_node(const struct in6_addr *a)
{
	return memcmp(a, &solicited_node_prefix, 13) == 0;
}

/*
 * Remember an address the VM on port advertises as its own: as its
 * link-local or its global address, if a is link-local or in the prefix
 * and not the gateway's or another VM's (ip.c learns source addresses
 * the same way).
 */
static void ndp_learn(struct vpnkit *vk, struct vk_port *port,
		      const struct in6_addr *a)
{
	struct vk_port *owner;
	bool ll = IN6_IS_ADDR_LINKLOCAL(a);

	if (!ll && !in_prefix(vk, a))
		return;
	if (vk_addr_is_gateway(vk, a) || vk_addr_is_host(vk, a))
		return;
	owner = vk_port_by_addr(vk, a);
	if (owner && owner != port)
		return;
	if (ll)
		port->ip6_ll = *a;
	else
		port->ip6 = *a;
}

static bool nd_common_ok(struct vpnkit *vk, const struct vk_pkt *pkt,
			 size_t min_len)
{
	if (pkt->ttl != ND_HOP_LIMIT) {
		vk_drop_bad(vk, "ndp: hop limit is not 255");
		return false;
	}
	if (pkt->l4[1] != 0) {
		vk_drop_bad(vk, "ndp: non-zero code");
		return false;
	}
	if (pkt->l4_len < min_len) {
		vk_drop_bad(vk, "ndp: short message");
		return false;
	}
	return true;
}

static void rs_input(struct vpnkit *vk, const struct vk_pkt *pkt)
{
	const uint8_t *slla;
	bool unspec = IN6_IS_ADDR_UNSPECIFIED(&pkt->src);

	if (!nd_common_ok(vk, pkt, RS_HLEN))
		return;
	if (!nd_options(pkt->l4 + RS_HLEN, pkt->l4_len - RS_HLEN,
			ND_OPT_SOURCE_LLADDR, &slla) ||
	    (unspec && slla)) {
		vk_drop_bad(vk, "ndp: bad router solicitation options");
		return;
	}
	ra_send(vk, pkt->port, unspec ? &all_nodes : &pkt->src);
}

static void ns_input(struct vpnkit *vk, const struct vk_pkt *pkt)
{
	struct in6_addr target;
	const uint8_t *slla;
	const uint8_t *mac = NULL;
	const struct in6_addr *src;
	struct vk_port *owner;
	bool dad = IN6_IS_ADDR_UNSPECIFIED(&pkt->src);
	uint8_t flags = ND_NA_OVERRIDE;

	if (!nd_common_ok(vk, pkt, NS_HLEN))
		return;
	memcpy(&target, pkt->l4 + 8, 16);
	if (IN6_IS_ADDR_MULTICAST(&target)) {
		vk_drop_bad(vk, "ndp: solicitation for a multicast address");
		return;
	}
	if (!nd_options(pkt->l4 + NS_HLEN, pkt->l4_len - NS_HLEN,
			ND_OPT_SOURCE_LLADDR, &slla) ||
	    (dad && (slla || !is_solicited_node(&pkt->dst)))) {
		vk_drop_bad(vk, "ndp: bad neighbour solicitation");
		return;
	}

	/* Who answers for target (see the top of the file). */
	src = vk_gateway6_ll(vk);
	owner = vk_port_by_addr(vk, &target);
	if (vk_addr_is_gateway(vk, &target) || vk_addr_is_host(vk, &target)) {
		mac = vk_gateway_mac;
		flags |= ND_NA_ROUTER;
		src = &target;
	} else if (owner) {
		if (owner != pkt->port)
			mac = owner->mac;
	} else if (!dad && !IN6_IS_ADDR_LINKLOCAL(&target) &&
		   !in_prefix(vk, &target) &&
		   !IN6_IS_ADDR_UNSPECIFIED(&target) &&
		   !IN6_IS_ADDR_LOOPBACK(&target) &&
		   !IN6_IS_ADDR_V4MAPPED(&target)) {
		mac = vk_gateway_mac;
		flags |= ND_NA_ROUTER;
	}
	if (!mac) {
		vk_drop(vk, "ndp: solicitation for an address nobody has");
		return;
	}
	if (dad) {
		na_send(pkt->port, src, &all_nodes, &target, mac, flags);
		return;
	}
	na_send(pkt->port, src, &pkt->src, &target, mac,
		flags | ND_NA_SOLICITED);
}

static void na_input(struct vpnkit *vk, const struct vk_pkt *pkt)
{
	struct in6_addr target;
	const uint8_t *tlla;

	if (!nd_common_ok(vk, pkt, NS_HLEN))
		return;
	memcpy(&target, pkt->l4 + 8, 16);
	if (IN6_IS_ADDR_MULTICAST(&target) ||
	    (IN6_IS_ADDR_MULTICAST(&pkt->dst) &&
	     (pkt->l4[4] & ND_NA_SOLICITED)) ||
	    !nd_options(pkt->l4 + NS_HLEN, pkt->l4_len - NS_HLEN,
			ND_OPT_TARGET_LLADDR, &tlla)) {
		vk_drop_bad(vk, "ndp: bad neighbour advertisement");
		return;
	}
	/* An unsolicited advertisement (we never solicit): the VM announces
	 * an address it has. (ip.c learnt the source already.) */
	ndp_learn(vk, pkt->port, &target);
}

void vk_ndp_input(struct vpnkit *vk, const struct vk_pkt *pkt)
{
	if (!vk_config(vk)->ipv6) {
		vk_drop(vk, "ndp: IPv6 is off");
		return;
	}
	switch (pkt->l4[0]) {
	case VK_ND_ROUTER_SOLICIT:
		rs_input(vk, pkt);
		break;
	case VK_ND_NEIGHBOR_SOLICIT:
		ns_input(vk, pkt);
		break;
	case VK_ND_NEIGHBOR_ADVERT:
		na_input(vk, pkt);
		break;
	default:
		vk_drop(vk, "ndp: type not handled");
		break;
	}
}

/* ---------------------------------------------------------------- timers */

/* Seconds to the next unsolicited advertisement, in [200, 600). */
static uint64_t ra_interval_ns(struct ndp_state *st)
{
	uint32_t x = st->rng;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	st->rng = x;
	return (RA_MIN_INTERVAL_S +
		(uint64_t)x % (RA_MAX_INTERVAL_S - RA_MIN_INTERVAL_S)) *
	       NS_PER_S;
}

void vk_ndp_port_up(struct vpnkit *vk, struct vk_port *port)
{
	struct ndp_state *st;

	if (!vk_config(vk)->ipv6)
		return;
	st = ndp_state(vk);
	if (st) {
		if (port->id < st->low_id)
			st->low_id = port->id;
		if (port->id > st->high_id)
			st->high_id = port->id;
		if (st->next_ra_ns == 0) {
			st->next_ra_ns = vk_now_ns() + ra_interval_ns(st);
			vk_timer_soon(vk, st->next_ra_ns);
		}
	}
	ra_send(vk, port, &all_nodes);
}

uint64_t vk_ndp_tick(struct vpnkit *vk, uint64_t now)
{
	struct ndp_state *st = *(struct ndp_state **)vk_ndp_state(vk);
	bool any = false;

	if (!vk_config(vk)->ipv6 || !st || st->next_ra_ns == 0)
		return UINT64_MAX;
	if (now < st->next_ra_ns)
		return st->next_ra_ns;
	for (uint32_t id = st->low_id; id <= st->high_id && id != 0; id++) {
		struct vk_port *p = vk_port_by_id(vk, id);

		if (!p)
			continue;
		if (!any)
			st->low_id = id; /* the ids below are gone for good */
		any = true;
		ra_send(vk, p, &all_nodes);
		if (id == UINT32_MAX)
			break;
	}
	if (!any) {
		/* No port left: wait for the next to come up. */
		st->low_id = UINT32_MAX;
		st->high_id = 0;
		st->next_ra_ns = 0;
		return UINT64_MAX;
	}
	st->next_ra_ns = now + ra_interval_ns(st);
	return st->next_ra_ns;
}
