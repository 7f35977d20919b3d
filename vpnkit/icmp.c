/* SPDX-License-Identifier: MIT */
/*
 * ICMP and ICMPv6 from the VMs. Echo requests to the gateway are answered
 * here; echo requests to anything else the host can reach (the host
 * address, which stands for loopback, and the outside world) travel
 * through unprivileged ping sockets, so the VM's ping says whether the
 * host really reaches that address. Neighbour discovery goes to ndp.c.
 * Everything else a VM sends (errors, replies, router advertisements,
 * multicast listener reports) is dropped and counted.
 *
 * Theory of operation. A ping socket (socket(AF_INET, SOCK_DGRAM,
 * IPPROTO_ICMP), or AF_INET6 with IPPROTO_ICMPV6) sends the echo request
 * we give it, but the kernel picks the echo identifier (the socket's
 * "port") and computes the checksum; it delivers only the echo replies
 * that carry its identifier, without the IP header. Each (VM address,
 * echo id, destination) is a flow, keyed {proto, gport = the VM's id,
 * raddr = the destination as the VM sees it}, with one connected ping
 * socket. Requests go out unchanged; a reply comes back with the VM's
 * identifier put back (the sequence number and payload are the remote
 * host's) and the source the VM pinged. A flow with no traffic for
 * icmp_idle_s seconds is closed by vk_icmp_tick.
 *
 * The VM's TTL (hop limit) is passed on, so its traceroute sees the
 * host's path. Errors come back too: a request the host cannot send at
 * all (no route) is answered by the gateway with destination unreachable,
 * and the ICMP errors the host receives for a flow's requests (read from
 * the socket's error queue, IP_RECVERR) are relayed to the VM from the
 * router that sent them, quoting the request as the VM sent it.
 *
 * Where net.ipv4.ping_group_range does not include our group, socket()
 * fails with EACCES: that is said once per instance, and echoes to the
 * outside are dropped while the gateway still answers.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <linux/errqueue.h> /* after <time.h>: it uses struct timespec */

#include "base/endian.h"
#include "internal.h"
#include "ndp.h"

#define ICMP_HLEN 8 /* type, code, checksum, id, sequence */
#define NS_PER_S 1000000000ull

#define VK_ICMP_ECHO_REPLY 0
#define VK_ICMP_DEST_UNREACH 3
#define VK_ICMP_ECHO_REQUEST 8
#define VK_ICMP_TIME_EXCEEDED 11
#define VK_ICMP_PARAM_PROBLEM 12
#define VK_ICMP6_DEST_UNREACH 1
#define VK_ICMP6_PACKET_TOO_BIG 2
#define VK_ICMP6_TIME_EXCEEDED 3
#define VK_ICMP6_PARAM_PROBLEM 4
#define VK_ICMP6_ECHO_REQUEST 128
#define VK_ICMP6_ECHO_REPLY 129

/* How much of the offending packet an error quotes: what fits in 576
 * bytes for IPv4 (RFC 1812 4.3.2.3), in 1280 for IPv6 (RFC 4443 2.4). */
#define ICMP_QUOTE_MAX 548
#define ICMP6_QUOTE_MAX 1232

/* Replies read per wakeup of one flow, so one busy flow cannot starve the
 * others. */
#define ICMP_RECV_BATCH 32

struct icmp_state {
	bool warned; /* ping sockets refused: said once */
};

/* Per flow, in f->priv. */
struct icmp_flow {
	uint64_t requests; /* echo requests sent */
	uint64_t replies; /* echo replies passed to the VM */
	uint64_t errors; /* ICMP errors passed to the VM */
	uint8_t ttl; /* the socket's TTL or hop limit, 0: the default */
};

_Static_assert(sizeof(struct icmp_flow) <= VK_FLOW_PRIV,
	       "ICMP flow state must fit a flow's private area");

static struct icmp_flow *icmp_flow(struct vk_flow *f)
{
	return (struct icmp_flow *)f->priv;
}

static uint64_t icmp_idle_ns(const struct vpnkit *vk)
{
	unsigned idle_s = vk_config(vk)->icmp_idle_s;

	return (uint64_t)(idle_s ? idle_s : 1) * NS_PER_S;
}

static struct vk_flow *flow_of(struct vk_handler *h)
{
	return (struct vk_flow *)((char *)h - offsetof(struct vk_flow, h));
}

/* True if the message's checksum (with a pseudo-header sum already in
 * sum, or 0 for ICMPv4) is right. */
static bool csum_ok(uint32_t sum, const uint8_t *l4, size_t len)
{
	return vk_csum_fold(vk_csum_add(sum, l4, len)) == 0;
}

/*
 * Answer an echo request at the gateway: the same identifier, sequence
 * and payload, from src (the address that was pinged, or the gateway's
 * own for a multicast ping) back to the sender.
 */
static void echo_answer(const struct vk_pkt *pkt, const struct in6_addr *src,
			uint8_t reply_type)
{
	uint8_t hdr[ICMP_HLEN];
	struct iovec payload = {
		.iov_base = (void *)(pkt->l4 + ICMP_HLEN),
		.iov_len = pkt->l4_len - ICMP_HLEN,
	};

	memcpy(hdr, pkt->l4, ICMP_HLEN);
	hdr[0] = reply_type;
	hdr[1] = 0;
	hdr[2] = 0;
	hdr[3] = 0;
	vk_ip_send(pkt->port, pkt->proto, src, &pkt->src, hdr, sizeof(hdr),
		   &payload, 1);
}

/*
 * An ICMP error of this type and code (info: the four bytes after the
 * checksum) from src to the VM at dst on port, quoting the packet it is
 * about (in pieces, cut to what an error may carry).
 */
static void icmp_error_send(struct vk_port *port, const struct in6_addr *src,
			    const struct in6_addr *dst, uint8_t type,
			    uint8_t code, uint32_t info,
			    const struct iovec *quote, int n)
{
	bool v4 = vk_addr_is_v4(dst);
	size_t room = v4 ? ICMP_QUOTE_MAX : ICMP6_QUOTE_MAX;
	uint8_t hdr[ICMP_HLEN] = { type, code };
	struct iovec q[2];
	int i;

	store_be32(hdr + 4, info);
	for (i = 0; i < n && i < 2 && room > 0; i++) {
		q[i] = quote[i];
		if (q[i].iov_len > room)
			q[i].iov_len = room;
		room -= q[i].iov_len;
	}
	vk_ip_send(port, v4 ? IPPROTO_ICMP : IPPROTO_ICMPV6, src, dst, hdr,
		   sizeof(hdr), q, i);
}

/* The gateway's address facing the VM's address a. */
static void gateway_for(struct vpnkit *vk, const struct in6_addr *a,
			struct in6_addr *gw)
{
	if (vk_addr_is_v4(a))
		vk_addr_from_v4(gw, vk_config(vk)->gateway);
	else if (IN6_IS_ADDR_LINKLOCAL(a))
		*gw = *vk_gateway6_ll(vk);
	else
		*gw = *vk_gateway6(vk);
}

/*
 * The host could not send the VM's echo request at all (err from
 * connect or send): the gateway says destination unreachable, as a router
 * without a route would. Other errors just drop the request.
 */
static void echo_unreachable(struct vpnkit *vk, const struct vk_pkt *pkt,
			     int err)
{
	bool v4 = pkt->af == AF_INET;
	struct iovec quote = {
		.iov_base = (void *)pkt->l3,
		.iov_len = pkt->l3_len,
	};
	struct in6_addr gw;
	uint8_t code;

	switch (err) {
	case ENETUNREACH:
		code = 0; /* network unreachable; v6: no route */
		break;
	case EHOSTUNREACH:
		code = v4 ? 1 : 3; /* host unreachable; v6: address */
		break;
	case EACCES:
	case EPERM:
		code = v4 ? 13 : 1; /* administratively prohibited */
		break;
	default:
		vk_drop(vk, "icmp: echo request not sent");
		return;
	}
	gateway_for(vk, &pkt->src, &gw);
	vk_drop(vk, "icmp: echo request unreachable");
	icmp_error_send(pkt->port, &gw, &pkt->src,
			v4 ? VK_ICMP_DEST_UNREACH : VK_ICMP6_DEST_UNREACH, code,
			0, &quote, 1);
}

/* The error types worth passing on, and the four bytes after the
 * checksum that go with them (the MTU, the pointer), from ee_info. */
static bool error_relayed(bool v4, const struct sock_extended_err *ee,
			  uint32_t *info)
{
	*info = 0;
	if (v4) {
		if (ee->ee_origin != SO_EE_ORIGIN_ICMP)
			return false;
		if (ee->ee_type == VK_ICMP_DEST_UNREACH && ee->ee_code == 4)
			*info = ee->ee_info & 0xffff; /* next-hop MTU */
		else if (ee->ee_type == VK_ICMP_PARAM_PROBLEM)
			*info = (ee->ee_info & 0xff) << 24; /* pointer */
		return ee->ee_type == VK_ICMP_DEST_UNREACH ||
		       ee->ee_type == VK_ICMP_TIME_EXCEEDED ||
		       ee->ee_type == VK_ICMP_PARAM_PROBLEM;
	}
	if (ee->ee_origin != SO_EE_ORIGIN_ICMP6)
		return false;
	if (ee->ee_type == VK_ICMP6_PACKET_TOO_BIG ||
	    ee->ee_type == VK_ICMP6_PARAM_PROBLEM)
		*info = ee->ee_info; /* MTU, pointer */
	return ee->ee_type >= VK_ICMP6_DEST_UNREACH &&
	       ee->ee_type <= VK_ICMP6_PARAM_PROBLEM;
}

/*
 * Relay the ICMP errors queued on a flow's socket: each comes with the
 * echo request as the kernel sent it (our identifier), which is put back
 * as the VM sent it, behind an IP header from the VM to the destination.
 * The error's source is the router that sent it, as the VM sees it.
 */
static void echo_flow_errors(struct vpnkit *vk, struct vk_flow *f)
{
	bool v4 = vk_addr_is_v4(&f->key.raddr);
	uint8_t data[ICMP6_QUOTE_MAX];
	uint8_t iph[40];
	union {
		struct cmsghdr align;
		uint8_t buf[CMSG_SPACE(sizeof(struct sock_extended_err) +
				       sizeof(struct sockaddr_in6))];
	} ctl;

	for (int i = 0; i < ICMP_RECV_BATCH; i++) {
		struct iovec iov = { .iov_base = data,
				     .iov_len = sizeof(data) };
		struct msghdr mh = {
			.msg_iov = &iov,
			.msg_iovlen = 1,
			.msg_control = ctl.buf,
			.msg_controllen = sizeof(ctl.buf),
		};
		struct sock_extended_err ee;
		struct sockaddr_storage from;
		struct cmsghdr *c;
		struct in6_addr src;
		struct iovec quote[2];
		uint16_t port;
		uint32_t info, sum;
		bool found = false;
		ssize_t n = recvmsg(f->fd, &mh, MSG_ERRQUEUE | MSG_DONTWAIT);

		if (n < 0)
			break;
		memset(&from, 0, sizeof(from));
		for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			size_t extra;

			if (!(c->cmsg_level == SOL_IP &&
			      c->cmsg_type == IP_RECVERR) &&
			    !(c->cmsg_level == SOL_IPV6 &&
			      c->cmsg_type == IPV6_RECVERR))
				continue;
			if (c->cmsg_len < CMSG_LEN(sizeof(ee)))
				continue;
			memcpy(&ee, CMSG_DATA(c), sizeof(ee));
			extra = c->cmsg_len - CMSG_LEN(sizeof(ee));
			memcpy(&from, CMSG_DATA(c) + sizeof(ee),
			       extra < sizeof(from) ? extra : sizeof(from));
			found = true;
		}
		if (!found || (size_t)n < ICMP_HLEN ||
		    !error_relayed(v4, &ee, &info))
			continue;
		if (from.ss_family == (v4 ? AF_INET : AF_INET6))
			vk_addr_from_host(vk, (struct sockaddr *)&from, &src,
					  &port);
		else
			gateway_for(vk, &f->key.gaddr, &src);
		if (vk_addr_is_v4(&src) != v4)
			gateway_for(vk, &f->key.gaddr, &src);

		/* The request as the VM sent it. */
		store_be16(data + 4, f->key.gport);
		data[2] = 0;
		data[3] = 0;
		sum = v4 ? 0 :
			   vk_csum_pseudo(&f->key.gaddr, &f->key.raddr,
					  IPPROTO_ICMPV6, (uint32_t)n);
		sum = vk_csum_fold(vk_csum_add(sum, data, (size_t)n));
		memcpy(data + 2, &sum, 2);
		quote[0].iov_base = iph;
		quote[0].iov_len = vk_ip_header(
			iph, f->key.proto, &f->key.gaddr, &f->key.raddr,
			(size_t)n, icmp_flow(f)->ttl ? icmp_flow(f)->ttl : 64);
		quote[1].iov_base = data;
		quote[1].iov_len = (size_t)n;
		icmp_flow(f)->errors++;
		icmp_error_send(f->port, &src, &f->key.gaddr, ee.ee_type,
				ee.ee_code, info, quote, 2);
	}
}

static void icmp_warn_denied(struct vpnkit *vk, int err)
{
	struct icmp_state **st = (struct icmp_state **)vk_icmp_state(vk);

	if (!*st) {
		*st = calloc(1, sizeof(**st));
		if (!*st)
			return;
	}
	if ((*st)->warned)
		return;
	(*st)->warned = true;
	logger_printf(vk_log(vk), LOG_LEVEL_WARN,
		      "ICMP echo to outside hosts disabled: ping_group_range "
		      "(sysctl net.ipv4.ping_group_range) does not include "
		      "group %u (%s); the gateway still answers pings",
		      (unsigned)getegid(), strerror(err));
}

/* Replies from the host for one flow: back to the VM with its id. */
static void echo_flow_event(struct vpnkit *vk, struct vk_handler *h,
			    uint32_t events)
{
	struct vk_flow *f = flow_of(h);
	uint8_t reply_type = vk_addr_is_v4(&f->key.raddr) ? VK_ICMP_ECHO_REPLY :
							    VK_ICMP6_ECHO_REPLY;
	uint8_t buf[VK_MTU_MAX];

	if (events & EPOLLERR)
		echo_flow_errors(vk, f);
	for (int i = 0; i < ICMP_RECV_BATCH; i++) {
		ssize_t n = recv(f->fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			/* An error for an earlier request, relayed from
			 * the error queue: recv reported and cleared it. */
			continue;
		}
		if ((size_t)n < ICMP_HLEN || buf[0] != reply_type ||
		    buf[1] != 0) {
			vk_drop(vk, "icmp: unexpected message on ping socket");
			continue;
		}
		store_be16(buf + 4, f->key.gport);
		buf[2] = 0;
		buf[3] = 0;

		struct iovec payload = {
			.iov_base = buf + ICMP_HLEN,
			.iov_len = (size_t)n - ICMP_HLEN,
		};

		f->active_ns = vk_now_ns();
		icmp_flow(f)->replies++;
		vk_ip_send(f->port, f->key.proto, &f->key.raddr, &f->key.gaddr,
			   buf, ICMP_HLEN, &payload, 1);
	}
}

/* A flow and its connected ping socket for the key, or NULL (said why). */
static struct vk_flow *echo_flow_open(struct vpnkit *vk,
				      const struct vk_pkt *pkt,
				      const struct vk_flow_key *k)
{
	struct sockaddr_storage sa;
	socklen_t sa_len;
	struct vk_flow *f;
	int fd, err, on;

	if (vk_addr_to_host(vk, &k->raddr, 0, &sa, &sa_len) < 0) {
		vk_drop(vk, "icmp: echo to an address with no host route");
		return NULL;
	}
	if (!vk_fd_take(vk)) {
		vk_drop(vk, "icmp: descriptor limit reached");
		return NULL;
	}
	fd = socket(sa.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    sa.ss_family == AF_INET ? IPPROTO_ICMP : IPPROTO_ICMPV6);
	if (fd < 0) {
		err = errno;
		vk_fd_give(vk);
		if (err == EACCES || err == EPERM)
			icmp_warn_denied(vk, err);
		vk_drop(vk, "icmp: no ping socket");
		return NULL;
	}
	if (connect(fd, (const struct sockaddr *)&sa, sa_len) < 0) {
		err = errno;
		close(fd);
		vk_fd_give(vk);
		echo_unreachable(vk, pkt, err);
		return NULL;
	}
	/* Queue the ICMP errors for our requests, to pass them on. */
	on = 1;
	if (sa.ss_family == AF_INET)
		setsockopt(fd, SOL_IP, IP_RECVERR, &on, sizeof(on));
	else
		setsockopt(fd, SOL_IPV6, IPV6_RECVERR, &on, sizeof(on));
	f = vk_flow_new(vk, k, pkt->port);
	if (!f) {
		close(fd);
		vk_fd_give(vk);
		vk_drop(vk, "icmp: flow table full");
		return NULL;
	}
	f->fd = fd;
	f->h.fn = echo_flow_event;
	if (vk_epoll_add(vk, fd, EPOLLIN, &f->h) < 0) {
		vk_flow_free(vk, f);
		vk_drop(vk, "icmp: cannot watch ping socket");
		return NULL;
	}
	vk_timer_soon(vk, f->active_ns + icmp_idle_ns(vk));
	return f;
}

/* An echo request for the host or the outside: through its flow. */
static void echo_forward(struct vpnkit *vk, const struct vk_pkt *pkt)
{
	struct vk_flow_key k;
	struct icmp_flow *st;
	struct vk_flow *f;

	memset(&k, 0, sizeof(k));
	k.proto = pkt->proto;
	k.gport = load_be16(pkt->l4 + 4);
	k.gaddr = pkt->src;
	k.raddr = pkt->dst;
	f = vk_flow_lookup(vk, &k);
	if (!f) {
		f = echo_flow_open(vk, pkt, &k);
		if (!f)
			return;
	}
	st = icmp_flow(f);
	if (pkt->ttl != st->ttl) {
		int ttl = pkt->ttl;
		bool v4 = pkt->af == AF_INET;

		if (setsockopt(f->fd, v4 ? IPPROTO_IP : IPPROTO_IPV6,
			       v4 ? IP_TTL : IPV6_UNICAST_HOPS, &ttl,
			       sizeof(ttl)) == 0)
			st->ttl = pkt->ttl;
	}
	/* The kernel sets the identifier and the checksum. */
	if (send(f->fd, pkt->l4, pkt->l4_len, MSG_DONTWAIT | MSG_NOSIGNAL) <
	    0) {
		echo_unreachable(vk, pkt, errno);
		return;
	}
	f->active_ns = vk_now_ns();
	st->requests++;
}

void vk_icmp_input(struct vpnkit *vk, const struct vk_pkt *pkt)
{
	const uint8_t *m = pkt->l4;

	if (pkt->l4_len < ICMP_HLEN) {
		vk_drop_bad(vk, "icmp: short message");
		return;
	}
	if (!csum_ok(0, m, pkt->l4_len)) {
		vk_drop_bad(vk, "icmp: bad checksum");
		return;
	}
	if (m[0] != VK_ICMP_ECHO_REQUEST) {
		vk_drop(vk, "icmp: type not carried");
		return;
	}
	if (m[1] != 0) {
		vk_drop_bad(vk, "icmp: echo request with a non-zero code");
		return;
	}
	if (vk_addr_is_gateway(vk, &pkt->dst))
		echo_answer(pkt, &pkt->dst, VK_ICMP_ECHO_REPLY);
	else
		echo_forward(vk, pkt);
}

/* ff02::1 (all nodes) and ff02::2 (all routers) include the gateway. */
static bool is_all_nodes_or_routers(const struct in6_addr *a)
{
	static const uint8_t prefix[15] = { 0xff, 0x02 };

	return memcmp(a->s6_addr, prefix, sizeof(prefix)) == 0 &&
	       (a->s6_addr[15] == 1 || a->s6_addr[15] == 2);
}

void vk_icmp6_input(struct vpnkit *vk, const struct vk_pkt *pkt)
{
	const uint8_t *m = pkt->l4;
	uint32_t pseudo;

	if (!vk_config(vk)->ipv6) {
		vk_drop(vk, "icmp6: IPv6 is off");
		return;
	}
	if (pkt->l4_len < ICMP_HLEN) {
		vk_drop_bad(vk, "icmp6: short message");
		return;
	}
	pseudo = vk_csum_pseudo(&pkt->src, &pkt->dst, IPPROTO_ICMPV6,
				(uint32_t)pkt->l4_len);
	if (!csum_ok(pseudo, m, pkt->l4_len)) {
		vk_drop_bad(vk, "icmp6: bad checksum");
		return;
	}
	switch (m[0]) {
	case VK_ND_ROUTER_SOLICIT:
	case VK_ND_NEIGHBOR_SOLICIT:
	case VK_ND_NEIGHBOR_ADVERT:
		vk_ndp_input(vk, pkt);
		return;
	case VK_ICMP6_ECHO_REQUEST:
		break;
	default:
		vk_drop(vk, "icmp6: type not carried");
		return;
	}
	if (m[1] != 0) {
		vk_drop_bad(vk, "icmp6: echo request with a non-zero code");
		return;
	}
	if (vk_addr_is_gateway(vk, &pkt->dst))
		echo_answer(pkt, &pkt->dst, VK_ICMP6_ECHO_REPLY);
	else if (is_all_nodes_or_routers(&pkt->dst))
		echo_answer(pkt,
			    IN6_IS_ADDR_LINKLOCAL(&pkt->src) ?
				    vk_gateway6_ll(vk) :
				    vk_gateway6(vk),
			    VK_ICMP6_ECHO_REPLY);
	else
		echo_forward(vk, pkt);
}

struct icmp_expiry {
	uint64_t now;
	uint64_t idle_ns;
	uint64_t next;
	unsigned live;
};

static void icmp_expire_one(struct vpnkit *vk, struct vk_flow *f, void *arg)
{
	struct icmp_expiry *ex = arg;
	uint64_t deadline;

	if (f->key.proto != IPPROTO_ICMP && f->key.proto != IPPROTO_ICMPV6)
		return;
	deadline = f->active_ns + ex->idle_ns;
	if (deadline <= ex->now) {
		logger_printf(vk_log(vk), LOG_LEVEL_DEBUG,
			      "icmp: echo flow id %u idle, closed after %llu "
			      "requests, %llu replies, %llu errors",
			      (unsigned)f->key.gport,
			      (unsigned long long)icmp_flow(f)->requests,
			      (unsigned long long)icmp_flow(f)->replies,
			      (unsigned long long)icmp_flow(f)->errors);
		vk_flow_free(vk, f);
		return;
	}
	ex->live++;
	if (deadline < ex->next)
		ex->next = deadline;
}

uint64_t vk_icmp_tick(struct vpnkit *vk, uint64_t now)
{
	struct icmp_expiry ex = {
		.now = now,
		.idle_ns = icmp_idle_ns(vk),
		.next = UINT64_MAX,
	};

	vk_flow_foreach(vk, icmp_expire_one, &ex);
	/* Recounted here, since flows also go with their port. */
	vk_stats(vk)->icmp_flows = ex.live;
	/* Expire in batches: no sooner than a second from now. */
	if (ex.next != UINT64_MAX && ex.next < now + NS_PER_S)
		ex.next = now + NS_PER_S;
	return ex.next;
}
