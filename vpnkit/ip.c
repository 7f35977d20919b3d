/* SPDX-License-Identifier: MIT */
/*
 * IPv4 and IPv6: parse a VM's packet into a struct vk_pkt after checking
 * every length and the sender's addresses, and build packets for VMs.
 * Also the Internet checksum.
 *
 * Checksums are summed over memory as it lies (native loads), which is
 * the same ones' complement arithmetic in either byte order: the folded
 * result is stored back with memcpy, never with a byte-order helper.
 *
 * What is refused: anything shorter than it says, IPv4 options beyond the
 * header length, bad header checksums, IPv4 or IPv6 fragments (we never
 * send large datagrams to a VM, and a VM's fragments would need a
 * reassembly buffer per source; they are counted and dropped), sources
 * that are not the VM's own address, and transport checksums that fail
 * (unless the link vouches for them through the offload header).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include "base/endian.h"
#include "internal.h"

/* ---------------------------------------------------------------- checksum */

static uint64_t csum_raw(const uint8_t *p, size_t len)
{
	uint64_t s = 0;
	uint32_t w;

	while (len >= 16) {
		uint32_t a, b, c, d;

		memcpy(&a, p, 4);
		memcpy(&b, p + 4, 4);
		memcpy(&c, p + 8, 4);
		memcpy(&d, p + 12, 4);
		s += (uint64_t)a + b + c + d;
		p += 16;
		len -= 16;
	}
	while (len >= 4) {
		memcpy(&w, p, 4);
		s += w;
		p += 4;
		len -= 4;
	}
	if (len >= 2) {
		uint16_t h;

		memcpy(&h, p, 2);
		s += h;
		p += 2;
		len -= 2;
	}
	if (len) {
		uint8_t last[2] = { *p, 0 };
		uint16_t h;

		memcpy(&h, last, 2);
		s += h;
	}
	return s;
}

static uint32_t fold32(uint64_t s)
{
	s = (s & 0xffffffffu) + (s >> 32);
	s = (s & 0xffffffffu) + (s >> 32);
	return (uint32_t)s;
}

uint32_t vk_csum_add(uint32_t sum, const void *buf, size_t len)
{
	return fold32((uint64_t)sum + csum_raw(buf, len));
}

uint16_t vk_csum_fold(uint32_t sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

uint32_t vk_csum_pseudo(const struct in6_addr *src, const struct in6_addr *dst,
			uint8_t proto, uint32_t l4_len)
{
	uint64_t s = 0;
	uint16_t w;

	if (vk_addr_is_v4(src)) {
		s += csum_raw(&src->s6_addr[12], 4);
		s += csum_raw(&dst->s6_addr[12], 4);
	} else {
		s += csum_raw(src->s6_addr, 16);
		s += csum_raw(dst->s6_addr, 16);
	}
	w = htons(proto);
	s += w;
	w = htons((uint16_t)(l4_len >> 16));
	s += w;
	w = htons((uint16_t)l4_len);
	s += w;
	return fold32(s);
}

/* Sum an iovec whose pieces may have odd lengths. */
static uint32_t csum_iov(uint32_t sum, const struct iovec *iov, int n)
{
	uint64_t s = sum;
	bool odd = false;
	int i;

	for (i = 0; i < n; i++) {
		uint64_t part = csum_raw(iov[i].iov_base, iov[i].iov_len);
		uint32_t f = fold32(part);

		f = (f & 0xffff) + (f >> 16);
		f = (f & 0xffff) + (f >> 16);
		if (odd)
			f = ((f & 0xff) << 8) | (f >> 8);
		s += f;
		if (iov[i].iov_len & 1)
			odd = !odd;
	}
	return fold32(s);
}

/* ---------------------------------------------------------------- input */

static bool l4_csum_ok(const struct vk_pkt *pkt)
{
	uint32_t s;

	if (pkt->off && (pkt->off->flags & (VPNKIT_OFFLOAD_NEEDS_CSUM |
					    VPNKIT_OFFLOAD_DATA_VALID)))
		return true;
	if (pkt->proto == IPPROTO_UDP && pkt->af == AF_INET &&
	    pkt->l4_len >= 8 && load_be16(pkt->l4 + 6) == 0)
		return true; /* IPv4 UDP without a checksum */
	s = vk_csum_pseudo(&pkt->src, &pkt->dst, pkt->proto,
			   (uint32_t)pkt->l4_len);
	s = vk_csum_add(s, pkt->l4, pkt->l4_len);
	return vk_csum_fold(s) == 0;
}

static void deliver(struct vpnkit *vk, struct vk_pkt *pkt)
{
	switch (pkt->proto) {
	case IPPROTO_TCP:
		if (pkt->l4_len < 20)
			break;
		pkt->csum_ok = l4_csum_ok(pkt);
		if (!pkt->csum_ok) {
			vk_drop_bad(vk, "TCP checksum");
			return;
		}
		vk_tcp_input(vk, pkt);
		return;
	case IPPROTO_UDP:
		if (pkt->l4_len < 8)
			break;
		pkt->csum_ok = l4_csum_ok(pkt);
		if (!pkt->csum_ok) {
			vk_drop_bad(vk, "UDP checksum");
			return;
		}
		vk_udp_input(vk, pkt);
		return;
	case IPPROTO_ICMP:
		if (pkt->af != AF_INET)
			break;
		vk_icmp_input(vk, pkt);
		return;
	case IPPROTO_ICMPV6:
		if (pkt->af != AF_INET6)
			break;
		vk_icmp6_input(vk, pkt);
		return;
	default:
		vk_drop(vk, "protocol");
		return;
	}
	vk_drop_bad(vk, "transport header length");
}

static void ip4_input(struct vk_port *port, struct vk_pkt *pkt)
{
	struct vpnkit *vk = port->vk;
	const uint8_t *ip = pkt->frame + VK_ETH_HLEN;
	size_t avail = pkt->frame_len - VK_ETH_HLEN, ihl, tot;
	struct in_addr src, dst;

	if (avail < 20 || (ip[0] >> 4) != 4) {
		vk_drop_bad(vk, "IPv4 header");
		return;
	}
	ihl = (size_t)(ip[0] & 0xf) * 4;
	tot = load_be16(ip + 2);
	if (ihl < 20 || ihl > avail || tot < ihl) {
		vk_drop_bad(vk, "IPv4 lengths");
		return;
	}
	/* A GSO super-segment may say 0 or less than it carries. */
	if (tot > avail || (tot == 0 && pkt->off &&
			    pkt->off->gso_type != VPNKIT_GSO_NONE)) {
		if (!(pkt->off && pkt->off->gso_type != VPNKIT_GSO_NONE)) {
			vk_drop_bad(vk, "IPv4 total length");
			return;
		}
		tot = avail;
	}
	if (vk_csum_fold(vk_csum_add(0, ip, ihl)) != 0) {
		vk_drop_bad(vk, "IPv4 header checksum");
		return;
	}
	if (load_be16(ip + 6) & 0x3fff) {
		vk_drop(vk, "IPv4 fragment");
		return;
	}
	memcpy(&src, ip + 12, 4);
	memcpy(&dst, ip + 16, 4);
	pkt->af = AF_INET;
	pkt->l3 = ip;
	pkt->l3_len = tot;
	pkt->l4 = ip + ihl;
	pkt->l4_len = tot - ihl;
	pkt->proto = ip[9];
	pkt->ttl = ip[8];
	pkt->tos = ip[1];
	vk_addr_from_v4(&pkt->src, src);
	vk_addr_from_v4(&pkt->dst, dst);
	if (src.s_addr != port->ip4.s_addr) {
		/* Only DHCP may come from 0.0.0.0. */
		if (src.s_addr != 0 || pkt->proto != IPPROTO_UDP) {
			vk_drop_bad(vk, "IPv4 source is not the VM's");
			return;
		}
	}
	deliver(vk, pkt);
}

static void ip6_input(struct vk_port *port, struct vk_pkt *pkt)
{
	struct vpnkit *vk = port->vk;
	const uint8_t *ip = pkt->frame + VK_ETH_HLEN;
	size_t avail = pkt->frame_len - VK_ETH_HLEN, plen, off = 40;
	uint8_t nh;
	int hops = 0;

	if (avail < 40 || (ip[0] >> 4) != 6) {
		vk_drop_bad(vk, "IPv6 header");
		return;
	}
	plen = load_be16(ip + 4);
	if (plen + 40 > avail) {
		if (!(pkt->off && pkt->off->gso_type != VPNKIT_GSO_NONE)) {
			vk_drop_bad(vk, "IPv6 payload length");
			return;
		}
		plen = avail - 40;
	}
	if (plen == 0 && pkt->off && pkt->off->gso_type != VPNKIT_GSO_NONE)
		plen = avail - 40;
	nh = ip[6];
	/* Skip hop-by-hop, routing and destination options headers. */
	while (nh == 0 || nh == 43 || nh == 60) {
		size_t elen;

		if (++hops > 4 || off + 8 > 40 + plen) {
			vk_drop_bad(vk, "IPv6 extension headers");
			return;
		}
		elen = ((size_t)ip[off + 1] + 1) * 8;
		if (off + elen > 40 + plen) {
			vk_drop_bad(vk, "IPv6 extension header length");
			return;
		}
		nh = ip[off];
		off += elen;
	}
	if (nh == 44) {
		vk_drop(vk, "IPv6 fragment");
		return;
	}
	pkt->af = AF_INET6;
	pkt->l3 = ip;
	pkt->l3_len = 40 + plen;
	pkt->l4 = ip + off;
	pkt->l4_len = 40 + plen - off;
	pkt->proto = nh;
	pkt->ttl = ip[7];
	pkt->tos = (uint8_t)(((ip[0] & 0xf) << 4) | (ip[1] >> 4));
	memcpy(&pkt->src, ip + 8, 16);
	memcpy(&pkt->dst, ip + 24, 16);
	if (IN6_IS_ADDR_V4MAPPED(&pkt->src) || IN6_IS_ADDR_MULTICAST(&pkt->src) ||
	    IN6_IS_ADDR_LOOPBACK(&pkt->src)) {
		vk_drop_bad(vk, "IPv6 source");
		return;
	}
	if (!IN6_IS_ADDR_UNSPECIFIED(&pkt->src)) {
		struct vk_port *owner;

		if (!vk_addr_is_local(vk, &pkt->src) ||
		    vk_addr_is_gateway(vk, &pkt->src) ||
		    vk_addr_is_host(vk, &pkt->src)) {
			vk_drop_bad(vk, "IPv6 source is not the VM's");
			return;
		}
		owner = vk_port_by_addr(vk, &pkt->src);
		if (owner && owner != port) {
			vk_drop_bad(vk, "IPv6 source owned by another VM");
			return;
		}
		/* Learn the VM's addresses as it uses them. */
		if (IN6_IS_ADDR_LINKLOCAL(&pkt->src))
			port->ip6_ll = pkt->src;
		else
			port->ip6 = pkt->src;
	} else if (nh != IPPROTO_ICMPV6) {
		vk_drop_bad(vk, "IPv6 unspecified source");
		return;
	}
	deliver(vk, pkt);
}

void vk_ip_input(struct vk_port *port, const struct vpnkit_offload *off,
		 const uint8_t *frame, size_t len)
{
	struct vk_pkt pkt;

	memset(&pkt, 0, sizeof(pkt));
	pkt.port = port;
	pkt.off = off;
	pkt.frame = frame;
	pkt.frame_len = len;
	if (load_be16(frame + 12) == VK_ETHERTYPE_IP)
		ip4_input(port, &pkt);
	else if (port->vk && vk_config(port->vk)->ipv6)
		ip6_input(port, &pkt);
	else
		vk_drop(port->vk, "IPv6 is off");
}

/* ---------------------------------------------------------------- output */

/* Offset of the checksum field in each transport header. */
static int csum_offset(uint8_t proto)
{
	switch (proto) {
	case IPPROTO_UDP:
		return 6;
	case IPPROTO_TCP:
		return 16;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		return 2;
	default:
		return -1;
	}
}

/* Write an IPv4 or IPv6 header for l4_total bytes of payload; returns
 * its length. */
size_t vk_ip_header(uint8_t *h, uint8_t proto, const struct in6_addr *src,
		    const struct in6_addr *dst, size_t l4_total, uint8_t ttl)
{
	if (vk_addr_is_v4(src)) {
		size_t tot = 20 + l4_total;

		h[0] = 0x45;
		h[1] = 0;
		store_be16(h + 2, tot > 0xffff ? 0 : (uint16_t)tot);
		store_be16(h + 4, 0);
		store_be16(h + 6, 0x4000); /* DF */
		h[8] = ttl;
		h[9] = proto;
		h[10] = h[11] = 0;
		memcpy(h + 12, &src->s6_addr[12], 4);
		memcpy(h + 16, &dst->s6_addr[12], 4);
		{
			uint16_t c = vk_csum_fold(vk_csum_add(0, h, 20));

			memcpy(h + 10, &c, 2);
		}
		return 20;
	}
	h[0] = 0x60;
	h[1] = h[2] = h[3] = 0;
	store_be16(h + 4, l4_total > 0xffff ? 0 : (uint16_t)l4_total);
	h[6] = proto;
	h[7] = ttl;
	memcpy(h + 8, src->s6_addr, 16);
	memcpy(h + 24, dst->s6_addr, 16);
	return 40;
}

int vk_ip_send(struct vk_port *port, uint8_t proto, const struct in6_addr *src,
	       const struct in6_addr *dst, const void *l4, size_t l4_len,
	       const struct iovec *payload, int payload_cnt)
{
	uint8_t hdr[VK_ETH_HLEN + 40 + 512];
	struct iovec iov[8];
	size_t plen = 0, iplen;
	int i, co = csum_offset(proto);
	uint8_t *l4c;
	uint32_t s;
	uint16_t c;
	bool v4 = vk_addr_is_v4(src);

	if (l4_len > 512 || payload_cnt > 6 || co < 0 ||
	    l4_len < (size_t)co + 2)
		return -EINVAL;
	if (v4 != vk_addr_is_v4(dst))
		return -EINVAL;
	for (i = 0; i < payload_cnt; i++)
		plen += payload[i].iov_len;
	vk_eth_header(port, v4 ? VK_ETHERTYPE_IP : VK_ETHERTYPE_IPV6, hdr);
	/* Neighbour discovery (ICMPv6 types 133 to 137) wants hop limit 255;
	 * everything else 64. */
	iplen = vk_ip_header(hdr + VK_ETH_HLEN, proto, src, dst, l4_len + plen,
			     (proto == IPPROTO_ICMPV6 &&
			      ((const uint8_t *)l4)[0] >= 133 &&
			      ((const uint8_t *)l4)[0] <= 137) ? 255 : 64);
	l4c = hdr + VK_ETH_HLEN + iplen;
	memcpy(l4c, l4, l4_len);
	memset(l4c + co, 0, 2);
	if (proto == IPPROTO_ICMP)
		s = 0;
	else
		s = vk_csum_pseudo(src, dst, proto, (uint32_t)(l4_len + plen));
	iov[0].iov_base = hdr;
	iov[0].iov_len = VK_ETH_HLEN + iplen + l4_len;
	for (i = 0; i < payload_cnt; i++)
		iov[i + 1] = payload[i];
	{
		struct iovec sum_iov[7];

		sum_iov[0].iov_base = l4c;
		sum_iov[0].iov_len = l4_len;
		for (i = 0; i < payload_cnt; i++)
			sum_iov[i + 1] = payload[i];
		s = csum_iov(s, sum_iov, payload_cnt + 1);
	}
	c = vk_csum_fold(s);
	if (proto == IPPROTO_UDP && c == 0)
		c = 0xffff;
	memcpy(l4c + co, &c, 2);
	return vk_port_send(port, NULL, iov, payload_cnt + 1);
}

int vk_udp_send(struct vk_port *port, const struct in6_addr *src,
		uint16_t sport, const struct in6_addr *dst, uint16_t dport,
		const void *data, size_t len)
{
	uint8_t udp[8];
	struct iovec iov = { .iov_base = (void *)data, .iov_len = len };

	if (len > 65507)
		return -EMSGSIZE;
	store_be16(udp, sport);
	store_be16(udp + 2, dport);
	store_be16(udp + 4, (uint16_t)(len + 8));
	store_be16(udp + 6, 0);
	return vk_ip_send(port, IPPROTO_UDP, src, dst, udp, 8, &iov, 1);
}
