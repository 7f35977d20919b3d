// SPDX-License-Identifier: MIT
/*
 * The DHCPv4 server of the gateway (RFC 2131, options of RFC 2132).
 *
 * There is no lease table here: every port already owns one IPv4 address,
 * given by the core when the port attached (from the pool, by UUID,
 * honouring a preferred address), so a DISCOVER is offered that address, a
 * REQUEST is acknowledged if it asks for that address and refused (NAK)
 * otherwise, and RELEASE and DECLINE change nothing (the address stays the
 * port's; a DECLINE is logged, since it means something else on the link
 * claims it). INFORM gets the configuration without an address or lease.
 *
 * Requests are checked strictly (BOOTREQUEST, Ethernet, the magic cookie,
 * a well-formed option list holding a message type) and anything else is
 * dropped and counted as bad. Answers go to the port's MAC and, until the
 * client has an address, to 255.255.255.255, which a client still without
 * an address (busybox udhcpc listens on a raw socket then) always takes.
 *
 * Options sent, whatever the parameter request list asks: message type,
 * server identifier, lease time, T1 and T2 (not for INFORM), subnet mask,
 * broadcast address, router, DNS servers (the gateway, or with DNS off the
 * host's non-loopback IPv4 nameservers), interface MTU, domain name and
 * domain search list (RFC 3397, split into several option 119 instances
 * when longer than 255 bytes, as RFC 3396 allows). The answer is padded
 * to the 300 bytes old BOOTP clients expect and kept within the size the
 * client accepts (option 57, at least 576 bytes of IP datagram); a search
 * list that does not fit is left out.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include "base/cursor.h"
#include "base/endian.h"
#include "dns_msg.h"
#include "internal.h"

#define BOOTREQUEST 1
#define BOOTREPLY 2
#define HTYPE_ETHER 1
#define DHCP_MAGIC 0x63825363u
#define DHCP_FIXED_LEN 236 /* op .. file, before the magic cookie */
#define DHCP_OPTIONS_OFF 240 /* after the magic cookie */
#define DHCP_FLAG_BROADCAST 0x8000u
#define DHCP_SERVER_PORT 67
#define DHCP_CLIENT_PORT 68
#define BOOTP_MIN_LEN 300 /* RFC 1542: pad replies to at least this */
#define DHCP_MIN_MAX_SIZE 576 /* a client must accept this (IP + UDP + DHCP) */
#define IP_UDP_HLEN 28

/* Option codes. */
#define OPT_PAD 0
#define OPT_SUBNET_MASK 1
#define OPT_ROUTER 3
#define OPT_DNS 6
#define OPT_DOMAIN_NAME 15
#define OPT_MTU 26
#define OPT_BROADCAST 28
#define OPT_REQUESTED_IP 50
#define OPT_LEASE_TIME 51
#define OPT_MSG_TYPE 53
#define OPT_SERVER_ID 54
#define OPT_PARAM_LIST 55
#define OPT_MAX_SIZE 57
#define OPT_T1 58
#define OPT_T2 59
#define OPT_DOMAIN_SEARCH 119
#define OPT_END 255

/* Message types (option 53). */
#define DHCPDISCOVER 1
#define DHCPOFFER 2
#define DHCPREQUEST 3
#define DHCPDECLINE 4
#define DHCPACK 5
#define DHCPNAK 6
#define DHCPRELEASE 7
#define DHCPINFORM 8

/* The largest reply we build: the biggest payload a 576..65520 MTU and
 * option 57 allow is far above what we ever have to say. */
#define DHCP_REPLY_MAX 1500

/* The fields of a request we use, after validation (host order where
 * numeric, addresses as they are on the wire). */
struct dhcp_request {
	const uint8_t *fixed; /* the 236 fixed bytes, for xid, flags, chaddr */
	uint8_t type;
	uint32_t ciaddr;
	bool has_requested_ip, has_server_id;
	uint32_t requested_ip, server_id; /* network order */
	uint16_t max_size; /* option 57, or 0 */
};

/*
 * Walk the options (RFC 2132 section 2): every option must fit, the list
 * must end with END (or simply run out, which some clients do), and the
 * message type must be there. Option overload (52) is ignored: the few
 * options we read are never put in sname or file by real clients.
 */
static int dhcp_parse(const uint8_t *data, size_t len, struct dhcp_request *req)
{
	struct cursor c;
	uint8_t op, htype, hlen;

	memset(req, 0, sizeof(*req));
	cursor_init(&c, data, len);
	op = cursor_u8(&c);
	htype = cursor_u8(&c);
	hlen = cursor_u8(&c);
	cursor_skip(&c, 1 + 4 + 2 + 2); /* hops, xid, secs, flags */
	cursor_copy(&c, &req->ciaddr, 4);
	cursor_seek(&c, DHCP_FIXED_LEN);
	if (cursor_be32(&c) != DHCP_MAGIC || cursor_failed(&c))
		return -EINVAL;
	if (op != BOOTREQUEST || htype != HTYPE_ETHER || hlen != VK_ETH_ALEN)
		return -EINVAL;
	req->fixed = data;

	for (;;) {
		uint8_t code, olen;
		const uint8_t *val;

		if (cursor_remaining(&c) == 0)
			break;
		code = cursor_u8(&c);
		if (code == OPT_PAD)
			continue;
		if (code == OPT_END)
			break;
		olen = cursor_u8(&c);
		val = cursor_ptr(&c, olen);
		if (!val)
			return -EINVAL;
		switch (code) {
		case OPT_MSG_TYPE:
			if (olen != 1 || req->type)
				return -EINVAL;
			req->type = val[0];
			break;
		case OPT_REQUESTED_IP:
			if (olen != 4)
				return -EINVAL;
			req->has_requested_ip = true;
			memcpy(&req->requested_ip, val, 4);
			break;
		case OPT_SERVER_ID:
			if (olen != 4)
				return -EINVAL;
			req->has_server_id = true;
			memcpy(&req->server_id, val, 4);
			break;
		case OPT_MAX_SIZE:
			if (olen != 2)
				return -EINVAL;
			req->max_size = load_be16(val);
			break;
		default:
			break;
		}
	}
	if (req->type < DHCPDISCOVER || req->type > DHCPINFORM)
		return -EINVAL;
	return 0;
}

/* A reply being built: data[0..len) of cap bytes; failed when full. */
struct dhcp_out {
	uint8_t *data;
	size_t len, cap;
	bool failed;
};

static void opt_put(struct dhcp_out *o, uint8_t code, const void *val, size_t n)
{
	if (o->failed || n > 255 || o->cap - o->len < 2 + n) {
		o->failed = true;
		return;
	}
	o->data[o->len++] = code;
	o->data[o->len++] = (uint8_t)n;
	memcpy(o->data + o->len, val, n);
	o->len += n;
}

static void opt_u32(struct dhcp_out *o, uint8_t code, uint32_t host_order)
{
	uint8_t b[4];

	store_be32(b, host_order);
	opt_put(o, code, b, 4);
}

static void opt_addr(struct dhcp_out *o, uint8_t code, struct in_addr a)
{
	opt_put(o, code, &a, 4);
}

/*
 * The search list as RFC 1035 names, one after another (RFC 3397, without
 * compression). Returns the length, 0 for no usable list. Names that do
 * not encode are skipped (the configuration is checked elsewhere).
 */
static size_t search_encode(const char *search, uint8_t *buf, size_t cap)
{
	size_t len = 0;
	const char *p = search;

	while (p && *p) {
		size_t n;
		ssize_t w;

		p += strspn(p, " \t,");
		n = strcspn(p, " \t,");
		if (n == 0)
			break;
		w = vk_dns_name_encode(p, n, buf + len, cap - len);
		if (w > 1) /* not the root alone */
			len += (size_t)w;
		else if (w == -ENOSPC)
			break;
		p += n;
	}
	return len;
}

/* Option 119 as many times as its data needs (RFC 3396). */
static void opt_split(struct dhcp_out *o, uint8_t code, const uint8_t *val,
		      size_t n)
{
	while (n > 0 && !o->failed) {
		size_t chunk = n > 255 ? 255 : n;

		opt_put(o, code, val, chunk);
		val += chunk;
		n -= chunk;
	}
}

static uint32_t prefix_mask(unsigned prefix_len)
{
	if (prefix_len == 0)
		return 0;
	if (prefix_len >= 32)
		return 0xffffffffu;
	return ~((1u << (32 - prefix_len)) - 1);
}

/* The DNS servers to hand out: the gateway, or with DNS at the gateway
 * off, the host's own IPv4 ones (not loopback: the VM cannot reach it). */
static size_t dhcp_dns_servers(struct vpnkit *vk, uint8_t *buf, size_t max)
{
	const struct vpnkit_config *cfg = vk_config(vk);
	struct vk_resolv rc;
	size_t n = 0;

	if (cfg->dns_mode != VPNKIT_DNS_OFF) {
		memcpy(buf, &cfg->gateway, 4);
		return 4;
	}
	if (vk_resolv_load(cfg->resolv_conf ? cfg->resolv_conf :
					      "/etc/resolv.conf",
			   &rc) < 0)
		return 0;
	for (unsigned i = 0; i < rc.n && n + 4 <= max; i++) {
		const struct sockaddr_in *sin =
			(const struct sockaddr_in *)&rc.ns[i];

		if (sin->sin_family != AF_INET || sin->sin_port != htons(53) ||
		    (ntohl(sin->sin_addr.s_addr) >> 24) == 127)
			continue;
		memcpy(buf + n, &sin->sin_addr, 4);
		n += 4;
	}
	return n;
}

/* The options common to OFFER, ACK and INFORM's ACK. */
static void dhcp_config_options(struct vpnkit *vk, struct dhcp_out *o,
				size_t limit)
{
	const struct vpnkit_config *cfg = vk_config(vk);
	uint32_t mask = prefix_mask(cfg->prefix_len);
	struct in_addr a;
	uint8_t dns[VK_RESOLV_MAX * 4];
	uint8_t search[1024];
	size_t n;

	a.s_addr = htonl(mask);
	opt_addr(o, OPT_SUBNET_MASK, a);
	a.s_addr = htonl((ntohl(cfg->subnet.s_addr) & mask) | ~mask);
	opt_addr(o, OPT_BROADCAST, a);
	opt_addr(o, OPT_ROUTER, cfg->gateway);
	n = dhcp_dns_servers(vk, dns, sizeof(dns));
	if (n)
		opt_put(o, OPT_DNS, dns, n);
	if (cfg->mtu >= 68 && cfg->mtu <= 65535) {
		uint8_t b[2];

		store_be16(b, (uint16_t)cfg->mtu);
		opt_put(o, OPT_MTU, b, 2);
	}
	n = cfg->domain ? strlen(cfg->domain) : 0;
	if (n > 0 && n <= 255 && o->len + 2 + n + 1 <= limit)
		opt_put(o, OPT_DOMAIN_NAME, cfg->domain, n);
	n = search_encode(cfg->search, search, sizeof(search));
	if (n) {
		/* Each 255 bytes of list costs 2 bytes of option header; keep
		 * room for END. Leave the list out rather than send half. */
		size_t need = n + 2 * ((n + 254) / 255);

		if (o->len + need + 1 <= limit)
			opt_split(o, OPT_DOMAIN_SEARCH, search, n);
		else
			logger_printf(vk_log(vk), LOG_LEVEL_DEBUG,
				      "dhcp: search list of %zu bytes left out "
				      "(the client takes %zu)",
				      n, limit);
	}
}

static void dhcp_reply(struct vpnkit *vk, const struct vk_pkt *pkt,
		       const struct dhcp_request *req, uint8_t type)
{
	const struct vpnkit_config *cfg = vk_config(vk);
	struct vk_port *port = pkt->port;
	uint8_t buf[DHCP_REPLY_MAX];
	struct dhcp_out o = { .data = buf, .cap = sizeof(buf) };
	struct in6_addr src, dst;
	struct in_addr bcast = { .s_addr = htonl(INADDR_BROADCAST) };
	size_t limit = DHCP_MIN_MAX_SIZE - IP_UDP_HLEN;

	/* What the client takes: option 57 (an IP datagram size), and
	 * never more than the link's MTU. */
	if (req->max_size > DHCP_MIN_MAX_SIZE)
		limit = (size_t)req->max_size - IP_UDP_HLEN;
	if (cfg->mtu >= VK_MTU_MIN && limit > cfg->mtu - IP_UDP_HLEN)
		limit = cfg->mtu - IP_UDP_HLEN;
	if (limit > sizeof(buf))
		limit = sizeof(buf);
	o.cap = limit;

	memset(buf, 0, DHCP_OPTIONS_OFF);
	buf[0] = BOOTREPLY;
	buf[1] = HTYPE_ETHER;
	buf[2] = VK_ETH_ALEN;
	memcpy(buf + 4, req->fixed + 4, 4); /* xid */
	memcpy(buf + 10, req->fixed + 10, 2); /* flags */
	if (type == DHCPACK && req->type != DHCPDISCOVER)
		memcpy(buf + 12, &req->ciaddr, 4);
	if (type != DHCPNAK && req->type != DHCPINFORM)
		memcpy(buf + 16, &port->ip4, 4); /* yiaddr */
	memcpy(buf + 24, req->fixed + 24, 4); /* giaddr */
	memcpy(buf + 28, req->fixed + 28, 16); /* chaddr */
	store_be32(buf + DHCP_FIXED_LEN, DHCP_MAGIC);
	o.len = DHCP_OPTIONS_OFF;

	opt_put(&o, OPT_MSG_TYPE, &type, 1);
	opt_addr(&o, OPT_SERVER_ID, cfg->gateway);
	if (type != DHCPNAK) {
		if (req->type != DHCPINFORM) {
			opt_u32(&o, OPT_LEASE_TIME, cfg->lease_s);
			opt_u32(&o, OPT_T1, cfg->lease_s / 2);
			opt_u32(&o, OPT_T2,
				(uint32_t)((uint64_t)cfg->lease_s * 7 / 8));
		}
		dhcp_config_options(vk, &o, limit);
	}
	if (o.failed || o.len >= o.cap) {
		vk_drop(vk, "dhcp: reply does not fit");
		return;
	}
	o.data[o.len++] = OPT_END;
	if (o.len < BOOTP_MIN_LEN && BOOTP_MIN_LEN <= o.cap) {
		memset(o.data + o.len, 0, BOOTP_MIN_LEN - o.len);
		o.len = BOOTP_MIN_LEN;
	}

	/* RFC 2131 4.1: a client with an address (renewing, or INFORM) is
	 * answered at it; otherwise, and for a NAK, by broadcast. */
	vk_addr_from_v4(&src, cfg->gateway);
	if (type != DHCPNAK && req->ciaddr != 0) {
		struct in_addr ci = { .s_addr = req->ciaddr };

		vk_addr_from_v4(&dst, ci);
	} else {
		vk_addr_from_v4(&dst, bcast);
	}
	(void)vk_udp_send(port, &src, DHCP_SERVER_PORT, &dst, DHCP_CLIENT_PORT,
			  o.data, o.len);
}

void vk_dhcp_input(struct vpnkit *vk, const struct vk_pkt *pkt,
		   const uint8_t *data, size_t len)
{
	const struct vpnkit_config *cfg = vk_config(vk);
	struct vk_port *port = pkt->port;
	struct dhcp_request req;

	if (pkt->af != AF_INET) {
		vk_drop(vk, "dhcp: not IPv4");
		return;
	}
	if (dhcp_parse(data, len, &req) < 0) {
		vk_drop_bad(vk, "dhcp: malformed request");
		return;
	}
	if (port->ip4.s_addr == 0) {
		vk_drop(vk, "dhcp: port has no address");
		return;
	}

	switch (req.type) {
	case DHCPDISCOVER:
		dhcp_reply(vk, pkt, &req, DHCPOFFER);
		break;
	case DHCPREQUEST:
		if (req.has_server_id) {
			/* SELECTING: the client chose a server; if not us,
			 * it needs no answer. */
			if (req.server_id != cfg->gateway.s_addr)
				return;
			if (!req.has_requested_ip) {
				vk_drop_bad(vk,
					    "dhcp: request without address");
				return;
			}
		}
		if (req.has_requested_ip) {
			/* SELECTING or INIT-REBOOT. */
			dhcp_reply(vk, pkt, &req,
				   req.requested_ip == port->ip4.s_addr ?
					   DHCPACK :
					   DHCPNAK);
		} else if (req.ciaddr != 0) {
			/* RENEWING or REBINDING. */
			dhcp_reply(vk, pkt, &req,
				   req.ciaddr == port->ip4.s_addr ? DHCPACK :
								    DHCPNAK);
		} else {
			vk_drop_bad(vk, "dhcp: request without address");
		}
		break;
	case DHCPINFORM:
		dhcp_reply(vk, pkt, &req, DHCPACK);
		break;
	case DHCPDECLINE:
		/* Counted and logged (rate-limited) like a drop: the VM saw
		 * its address in use by something else on its link. */
		vk_drop(vk, "dhcp: the VM declined its address");
		break;
	case DHCPRELEASE:
		break;
	default:
		/* Server-to-client types sent by a VM. */
		vk_drop_bad(vk, "dhcp: unexpected message type");
		break;
	}
}
