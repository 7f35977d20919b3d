/* SPDX-License-Identifier: MIT */
/*
 * UDP: each (VM address and port, remote address and port) pair is a
 * flow with its own connected host socket, so replies find their way
 * back by the kernel's own demultiplexing, and the host's firewall and
 * routes apply per destination. Datagrams from the host are read in
 * batches (recvmmsg). Flows expire after cfg udp_idle_s without traffic.
 *
 * Datagrams for the gateway go to the DHCP server (port 67) and the DNS
 * relay (port 53); the gateway has no other UDP service. Datagrams from
 * a host client to a UDP port forward become flows whose replies leave
 * through the forward's own socket, addressed to that client.
 *
 * A datagram larger than the VM's MTU allows is dropped (we do not
 * fragment towards the VM).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "base/endian.h"
#include "internal.h"

#define UDP_BATCH 32

struct udp_flow {
	int lfd; /* inbound: the forward's socket; -1 for outbound */
	socklen_t peer_len;
	struct sockaddr_storage peer; /* inbound: the host client */
};

_Static_assert(sizeof(struct udp_flow) <= VK_FLOW_PRIV, "udp_flow fits");

struct udp_state {
	uint8_t *bufs; /* UDP_BATCH x mtu, for recvmmsg */
	size_t buf_size;
	struct mmsghdr msgs[UDP_BATCH];
	struct iovec iovs[UDP_BATCH];
	/* Datagrams from VMs staged for sendmmsg until the batch ends. */
	uint8_t *out; /* UDP_BATCH x mtu */
	struct mmsghdr out_msgs[UDP_BATCH];
	struct iovec out_iovs[UDP_BATCH];
	uint32_t out_flow[UDP_BATCH]; /* flow index of each */
	unsigned n_out;
	};

static struct udp_flow *uflow(struct vk_flow *f)
{
	return (struct udp_flow *)(void *)f->priv;
}

int vk_udp_init(struct vpnkit *vk)
{
	struct udp_state *us = calloc(1, sizeof(*us));

	if (!us)
		return -ENOMEM;
	*vk_udp_state(vk) = us;
	us->buf_size = vk_config(vk)->mtu;
	us->bufs = malloc(us->buf_size * UDP_BATCH);
	us->out = malloc(us->buf_size * UDP_BATCH);
	return us->bufs && us->out ? 0 : -ENOMEM;
}

void vk_udp_release(struct vpnkit *vk)
{
	struct udp_state *us = *vk_udp_state(vk);

	if (!us)
		return;
	free(us->bufs);
	free(us->out);
	free(us);
	*vk_udp_state(vk) = NULL;
}

static void udp_free(struct vpnkit *vk, struct vk_flow *f)
{
	/* Staged datagrams of this flow go out before its socket closes. */
	vk_udp_flush(vk);
	vk_flow_free(vk, f);
}

/* Largest UDP payload the VM's link carries in one frame. */
static size_t udp_max(const struct vpnkit *vk, const struct vk_flow *f)
{
	return vk_config(vk)->mtu - (vk_addr_is_v4(&f->key.gaddr) ? 28 : 48);
}

static void udp_sock_event(struct vpnkit *vk, struct vk_handler *h,
			   uint32_t events)
{
	struct vk_flow *f = (struct vk_flow *)h;
	struct udp_state *us = *vk_udp_state(vk);
	int i, n, round;

	(void)events;
	for (round = 0; round < 4 && f->in_use; round++) {
		for (i = 0; i < UDP_BATCH; i++) {
			us->iovs[i].iov_base = us->bufs + (size_t)i * us->buf_size;
			us->iovs[i].iov_len = us->buf_size;
			memset(&us->msgs[i].msg_hdr, 0,
			       sizeof(us->msgs[i].msg_hdr));
			us->msgs[i].msg_hdr.msg_iov = &us->iovs[i];
			us->msgs[i].msg_hdr.msg_iovlen = 1;
		}
		n = recvmmsg(f->fd, us->msgs, UDP_BATCH, MSG_DONTWAIT, NULL);
		if (n <= 0)
			return; /* EAGAIN, or an ICMP error: nothing to do */
		f->active_ns = vk_now_ns();
		for (i = 0; i < n; i++) {
			size_t len = us->msgs[i].msg_len;

			if ((us->msgs[i].msg_hdr.msg_flags & MSG_TRUNC) ||
			    len > udp_max(vk, f)) {
				vk_drop(vk, "UDP datagram larger than the MTU");
				continue;
			}
			vk_udp_send(f->port, &f->key.raddr, f->key.rport,
				    &f->key.gaddr, f->key.gport,
				    us->iovs[i].iov_base, len);
		}
		if (n < UDP_BATCH)
			return;
	}
}

static void udp_stage(struct vpnkit *vk, struct vk_flow *f,
		      const uint8_t *data, size_t len);

static struct vk_flow *udp_open(struct vpnkit *vk, const struct vk_pkt *pkt,
				const struct vk_flow_key *key)
{
	struct sockaddr_storage sa;
	socklen_t sl;
	struct vk_flow *f;
	int fd;

	if (vk_addr_to_host(vk, &key->raddr, key->rport, &sa, &sl)) {
		vk_drop(vk, "UDP to an address we do not carry");
		return NULL;
	}
	if (!vk_fd_take(vk))
		return NULL;
	f = vk_flow_new(vk, key, pkt->port);
	if (!f) {
		vk_fd_give(vk);
		return NULL;
	}
	uflow(f)->lfd = -1;
	fd = socket(sa.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		vk_fd_give(vk);
		vk_flow_free(vk, f);
		return NULL;
	}
	f->fd = fd;
	f->h.fn = udp_sock_event;
	if (connect(fd, (struct sockaddr *)&sa, sl) < 0 ||
	    vk_epoll_add(vk, fd, EPOLLIN, &f->h)) {
		udp_free(vk, f);
		return NULL;
	}
	return f;
}

void vk_udp_input(struct vpnkit *vk, const struct vk_pkt *pkt)
{
	const uint8_t *uh = pkt->l4;
	size_t ulen = load_be16(uh + 4);
	struct vk_flow_key key;
	struct vk_flow *f;
	const uint8_t *data;
	size_t len;

	if (ulen < 8 || ulen > pkt->l4_len) {
		vk_drop_bad(vk, "UDP length");
		return;
	}
	data = uh + 8;
	len = ulen - 8;
	memset(&key, 0, sizeof(key));
	key.proto = IPPROTO_UDP;
	key.gaddr = pkt->src;
	key.raddr = pkt->dst;
	key.gport = load_be16(uh);
	key.rport = load_be16(uh + 2);
	if (key.rport == 67 && pkt->af == AF_INET) {
		vk_dhcp_input(vk, pkt, data, len);
		return;
	}
	if (IN6_IS_ADDR_UNSPECIFIED(&pkt->src) ||
	    (vk_addr_is_v4(&pkt->src) && vk_addr_v4(&pkt->src).s_addr == 0)) {
		vk_drop_bad(vk, "UDP from an unspecified address");
		return;
	}
	if (vk_addr_is_gateway(vk, &pkt->dst)) {
		if (key.rport == 53 &&
		    vk_config(vk)->dns_mode != VPNKIT_DNS_OFF)
			vk_dns_udp_input(vk, pkt, key.gport, data, len);
		else
			vk_drop(vk, "UDP to the gateway");
		return;
	}
	if (!key.gport || !key.rport) {
		vk_drop_bad(vk, "UDP port 0");
		return;
	}
	f = vk_flow_lookup(vk, &key);
	if (f && f->port != pkt->port) {
		vk_drop_bad(vk, "UDP flow of another VM");
		return;
	}
	if (!f) {
		f = udp_open(vk, pkt, &key);
		if (!f)
			return;
	}
	f->active_ns = vk_now_ns();
	if (uflow(f)->lfd >= 0) {
		if (sendto(uflow(f)->lfd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL,
			   (struct sockaddr *)&uflow(f)->peer,
			   uflow(f)->peer_len) < 0)
			vk_drop(vk, "UDP send to a forward's client");
		return;
	}
	udp_stage(vk, f, data, len);
}

/*
 * Send the staged datagrams: runs of the same flow go out with one
 * sendmmsg each. A datagram the socket refuses is dropped, as a full
 * queue would drop it on a real link.
 */
void vk_udp_flush(struct vpnkit *vk)
{
	struct udp_state *us = *vk_udp_state(vk);
	unsigned i = 0, j;

	while (us && i < us->n_out) {
		struct vk_flow *f = vk_flow_at(vk, us->out_flow[i]);
		int sent;

		for (j = i + 1; j < us->n_out &&
				us->out_flow[j] == us->out_flow[i];
		     j++)
			;
		if (f->in_use && f->key.proto == IPPROTO_UDP && f->fd >= 0) {
			sent = sendmmsg(f->fd, &us->out_msgs[i], j - i,
					MSG_DONTWAIT | MSG_NOSIGNAL);
			if (sent < 0)
				sent = 0;
			while (i + (unsigned)sent < j) {
				vk_drop(vk, "UDP send");
				sent++;
			}
		}
		i = j;
	}
	if (us)
		us->n_out = 0;
}

/* Keep a copy of the datagram for the batch's sendmmsg. */
static void udp_stage(struct vpnkit *vk, struct vk_flow *f,
		      const uint8_t *data, size_t len)
{
	struct udp_state *us = *vk_udp_state(vk);
	struct mmsghdr *m;

	if (len > us->buf_size) { /* larger than the MTU: cannot be */
		vk_drop(vk, "UDP datagram larger than the MTU");
		return;
	}
	if (us->n_out == UDP_BATCH)
		vk_udp_flush(vk);
	m = &us->out_msgs[us->n_out];
	us->out_iovs[us->n_out].iov_base = us->out + us->n_out * us->buf_size;
	us->out_iovs[us->n_out].iov_len = len;
	memcpy(us->out_iovs[us->n_out].iov_base, data, len);
	memset(m, 0, sizeof(*m));
	m->msg_hdr.msg_iov = &us->out_iovs[us->n_out];
	m->msg_hdr.msg_iovlen = 1;
	us->out_flow[us->n_out++] = f->index;
}

void vk_udp_inbound(struct vpnkit *vk, int lfd, const struct sockaddr *peer,
		    socklen_t peer_len, const struct in6_addr *gaddr,
		    uint16_t gport, const uint8_t *data, size_t len)
{
	struct vk_flow_key key;
	struct vk_port *port = vk_port_by_addr(vk, gaddr);
	struct vk_flow *f;

	if (!port || peer_len > sizeof(struct sockaddr_storage))
		return;
	memset(&key, 0, sizeof(key));
	key.proto = IPPROTO_UDP;
	key.gaddr = *gaddr;
	key.gport = gport;
	vk_addr_from_host(vk, peer, &key.raddr, &key.rport);
	if (vk_addr_is_v4(&key.raddr) != vk_addr_is_v4(gaddr))
		return;
	f = vk_flow_lookup(vk, &key);
	if (f && (f->port != port || uflow(f)->lfd != lfd))
		return;
	if (!f) {
		f = vk_flow_new(vk, &key, port);
		if (!f)
			return;
		f->h.fn = udp_sock_event; /* no socket of its own */
		uflow(f)->lfd = lfd;
		memcpy(&uflow(f)->peer, peer, peer_len);
		uflow(f)->peer_len = peer_len;
	}
	f->active_ns = vk_now_ns();
	if (len > udp_max(vk, f)) {
		vk_drop(vk, "UDP datagram larger than the MTU");
		return;
	}
	vk_udp_send(port, &key.raddr, key.rport, gaddr, gport, data, len);
}

static void gone_one(struct vpnkit *vk, struct vk_flow *f, void *arg)
{
	if (f->key.proto == IPPROTO_UDP && f->h.fn == udp_sock_event &&
	    uflow(f)->lfd == *(int *)arg)
		udp_free(vk, f);
}

void vk_udp_forward_gone(struct vpnkit *vk, int lfd)
{
	vk_flow_foreach(vk, gone_one, &lfd);
}

struct tick_arg {
	uint64_t now, idle, next;
};

static void tick_one(struct vpnkit *vk, struct vk_flow *f, void *arg)
{
	struct tick_arg *t = arg;

	if (f->key.proto != IPPROTO_UDP || f->h.fn != udp_sock_event)
		return;
	if (f->active_ns <= t->now && t->now - f->active_ns >= t->idle) {
		udp_free(vk, f);
		return;
	}
	if (f->active_ns + t->idle < t->next)
		t->next = f->active_ns + t->idle;
}

uint64_t vk_udp_tick(struct vpnkit *vk, uint64_t now)
{
	struct tick_arg t = {
		.now = now,
		.idle = (uint64_t)vk_config(vk)->udp_idle_s * 1000000000ull,
		.next = UINT64_MAX,
	};

	if (!vk_stats(vk)->udp_flows)
		return UINT64_MAX;
	if (t.idle == 0)
		t.idle = 1000000000ull;
	vk_flow_foreach(vk, tick_one, &t);
	return t.next;
}
