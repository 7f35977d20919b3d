/* SPDX-License-Identifier: MIT */
/*
 * TCP: each VM connection is a host socket, with no TCP stack of our own
 * in between. The segments a VM sends are translated into socket calls,
 * and the socket's events into segments for the VM.
 *
 * Theory of operation (after passt's published design):
 *
 * - VM to host. A segment's payload is written to the socket as soon as
 *   it is in sequence, and acknowledged by what the socket took. Data
 *   before the expected sequence is trimmed (a retransmission), data
 *   after it is dropped with a duplicate ACK (the VM's link does not
 *   reorder, so a gap means a loss the VM must repair). The window shown
 *   to the VM is the room left in the socket's send buffer, so the VM
 *   rarely sends what the socket cannot take; when it does, the socket's
 *   short write leaves the rest unacknowledged and three duplicate ACKs
 *   ask for it again at once, once the socket drains.
 *
 * - Host to VM. Data stays in the socket's receive queue until the VM
 *   acknowledges it. It is read with MSG_PEEK, and SO_PEEK_OFF makes
 *   each peek start where the last one stopped, so every byte is copied
 *   out of the kernel once (kernels without SO_PEEK_OFF for TCP peek from
 *   the start into a discard area). An ACK from the VM discards the
 *   acknowledged bytes (recv with MSG_TRUNC). Retransmission rewinds the
 *   peek offset to the first unacknowledged byte. What is sent never
 *   exceeds the window the VM advertises. Links that take offloads get
 *   up to 64 KiB per frame as a TSO super-segment with a partial
 *   checksum, which the VM's kernel segments (or, for a TAP, never needs
 *   to); other links get one segment of the VM's MSS per frame, with its
 *   checksum computed here.
 *
 * - Headers. Every frame's Ethernet, IP and TCP headers are built from a
 *   per-connection template; only lengths, sequence numbers, window and
 *   checksums change per frame.
 *
 * - Closing. A FIN from the VM becomes shutdown(SHUT_WR) once all data
 *   before it is written; end of file on the socket becomes a FIN to the
 *   VM once all data before it is sent. An RST from the VM closes the
 *   socket with SO_LINGER 0, so the host peer gets an RST too; a socket
 *   error becomes an RST to the VM. When both FINs are acknowledged, the
 *   flow and its descriptor are freed at once.
 *
 * - Connections from the host (port forwards) start with a SYN we send
 *   to the VM; from its SYN-ACK on they are like any other.
 *
 * Options: the MSS from the VM's SYN, window scaling both ways (we
 * announce a shift of 7, up to 8 MiB); no timestamps or SACK (the link
 * does not lose or reorder frames on its own).
 */
#include <errno.h>
#include <inttypes.h>
#include <linux/sock_diag.h>
#include <linux/sockios.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "base/endian.h"
#include "internal.h"

#define TCP_WS_SHIFT 7 /* our window scale */
#define TCP_MAX_WINDOW (0xffffu << TCP_WS_SHIFT)
#define TCP_PEEK_BUF (1u << 20) /* bytes peeked at once */
#define TCP_MAX_FRAMES 1024 /* frames built per peek */
/* Frames a flow may have in flight towards a VM, whatever its window:
 * a TAP hands frames to the kernel's backlog (netdev_max_backlog, 1000
 * by default) and a burst beyond it is dropped, which the VM then sees as
 * loss (rootlesskit PR #615 found pasta collapsing so at MTU 1500). */
#define TCP_LINK_FRAMES 512
#define TCP_HDR_MAX (VK_ETH_HLEN + 40 + 20)
#define TCP_RTO_MIN_NS 200000000ull
#define TCP_RTO_MAX_NS 10000000000ull
#define TCP_MAX_RETRIES 9
#define TCP_SYN_TIMEOUT_NS 20000000000ull
#define TCP_FIN_TIMEOUT_NS 60000000000ull

/* TCP header flags */
#define F_FIN 0x01
#define F_SYN 0x02
#define F_RST 0x04
#define F_PSH 0x08
#define F_ACK 0x10

enum tcp_state {
	/* VM-initiated: the VM's SYN came, the socket is connecting */
	T_CONNECTING = 1,
	/* VM-initiated: socket connected, our SYN-ACK is out */
	T_SYN_ACK_SENT,
	/* host-initiated (forward): our SYN is out */
	T_SYN_SENT,
	T_ESTABLISHED,
};

/* Per-flow state, in the flow's private area. */
struct tcp_conn {
	uint8_t state;
	uint8_t ws_guest; /* the VM's window scale shift */
	bool ws_ok; /* both sides scale */
	bool inbound; /* made for a port forward */
	bool guest_fin; /* the VM's FIN was taken (rcv_nxt counts it) */
	bool host_eof; /* the socket reached end of file */
	bool fin_sent; /* our FIN is out (snd_nxt counts it) */
	bool fin_acked;
	bool ack_due; /* an ACK for the VM is owed (deferred) */
	bool on_deferred; /* in the deferred list */
	bool on_blocked; /* waiting for the port to drain */
	bool want_out; /* EPOLLOUT is on: a short write to drain */
	bool peek_off; /* SO_PEEK_OFF works on this socket */
	bool dupacks_owed; /* send 3 duplicate ACKs when writable */
	bool rdhup; /* the peer closed its side */
	bool host_ready; /* the socket may hold data not yet peeked */
	bool wnd_low; /* we showed a small window: update it when the
		       * socket drains */
	uint8_t retries;
	uint8_t dupacks; /* duplicate ACKs seen from the VM */
	uint16_t mss; /* payload per segment to the VM */
	uint32_t snd_una; /* the VM has acknowledged up to here */
	uint32_t snd_nxt; /* next sequence number we send */
	uint32_t rcv_nxt; /* next sequence number we expect */
	uint32_t rcv_wnd_sent; /* window last advertised, bytes */
	uint32_t rcv_acked; /* rcv_nxt in the last ACK we sent */
	uint32_t sndbuf; /* the socket's send buffer when last asked */
	uint32_t snd_wnd; /* the VM's window, bytes */
	uint64_t rto_ns; /* current retransmission timeout */
	uint64_t deadline; /* retransmit, SYN or FIN timeout; 0: none */
	uint32_t ip_id;
	uint8_t hdr_len; /* Ethernet + IP + TCP in the template */
	uint8_t ip_len; /* 20 or 40 */
	uint8_t tmpl[TCP_HDR_MAX]; /* header template */
};

_Static_assert(sizeof(struct tcp_conn) <= VK_FLOW_PRIV, "tcp_conn fits");

/* Instance-wide TCP state: buffers for building frames, and lists. */
struct tcp_inst {
	uint8_t *peek; /* TCP_PEEK_BUF */
	uint8_t (*hdrs)[TCP_HDR_MAX]; /* TCP_MAX_FRAMES */
	uint8_t *discard; /* for kernels without SO_PEEK_OFF */
	uint32_t *deferred; /* flow indices with an ACK owed */
	uint32_t n_deferred;
	uint32_t *blocked; /* flow indices waiting for their port */
	uint32_t *blocked_spare;
	uint32_t n_blocked;
	uint32_t cap; /* of both lists: max_flows */
	uint64_t next_deadline;
	struct vk_flow *flows; /* base of the table, for index -> flow */
};

static struct tcp_conn *conn_of(struct vk_flow *f)
{
	return (struct tcp_conn *)(void *)f->priv;
}

static struct tcp_inst *tcp_st(struct vpnkit *vk)
{
	return *vk_tcp_state(vk);
}

/* A flow slot in use by TCP (lists of indices may outlive a flow). */
static void tcp_sock_event(struct vpnkit *vk, struct vk_handler *h,
			   uint32_t events);

static bool is_tcp(const struct vk_flow *f)
{
	return f->in_use && f->key.proto == IPPROTO_TCP &&
	       f->h.fn == tcp_sock_event;
}

static bool seq_lt(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) < 0;
}

static bool seq_le(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) <= 0;
}

static void tcp_sock_event(struct vpnkit *vk, struct vk_handler *h,
			   uint32_t events);
static int tcp_send_data(struct vpnkit *vk, struct vk_flow *f);
static void wnd_watch(struct vpnkit *vk, struct vk_flow *f);

/* ---------------------------------------------------------------- setup */

void vk_flow_table(struct vpnkit *vk, struct vk_flow **flows, uint32_t **hash,
		   uint32_t *mask, uint32_t **free_head);

int vk_tcp_init(struct vpnkit *vk)
{
	struct tcp_inst *ts = calloc(1, sizeof(*ts));
	uint32_t *hash, mask, *free_head;

	if (!ts)
		return -ENOMEM;
	*vk_tcp_state(vk) = ts;
	ts->cap = vk_config(vk)->max_flows;
	ts->peek = malloc(TCP_PEEK_BUF);
	ts->hdrs = malloc(sizeof(*ts->hdrs) * TCP_MAX_FRAMES);
	ts->deferred = malloc(sizeof(uint32_t) * ts->cap);
	ts->blocked = malloc(sizeof(uint32_t) * ts->cap);
	ts->blocked_spare = malloc(sizeof(uint32_t) * ts->cap);
	ts->next_deadline = UINT64_MAX;
	if (!ts->peek || !ts->hdrs || !ts->deferred || !ts->blocked ||
	    !ts->blocked_spare)
		return -ENOMEM;
	vk_flow_table(vk, &ts->flows, &hash, &mask, &free_head);
	return 0;
}

void vk_tcp_release(struct vpnkit *vk)
{
	struct tcp_inst *ts = tcp_st(vk);

	if (!ts)
		return;
	free(ts->peek);
	free(ts->hdrs);
	free(ts->discard);
	free(ts->deferred);
	free(ts->blocked);
	free(ts->blocked_spare);
	free(ts);
	*vk_tcp_state(vk) = NULL;
}

void vk_tcp_deferred(struct vpnkit *vk);

/* ---------------------------------------------------------------- frames */

/* Build the header template: Ethernet and IP from the flow's key. */
static void tmpl_init(struct vk_flow *f)
{
	struct tcp_conn *c = conn_of(f);
	uint8_t *t = c->tmpl;
	bool v4 = vk_addr_is_v4(&f->key.gaddr);

	vk_eth_header(f->port, v4 ? VK_ETHERTYPE_IP : VK_ETHERTYPE_IPV6, t);
	c->ip_len = (uint8_t)vk_ip_header(t + VK_ETH_HLEN, IPPROTO_TCP,
					  &f->key.raddr, &f->key.gaddr, 20,
					  64);
	c->hdr_len = (uint8_t)(VK_ETH_HLEN + c->ip_len + 20);
	memset(t + VK_ETH_HLEN + c->ip_len, 0, 20);
	store_be16(t + VK_ETH_HLEN + c->ip_len, f->key.rport);
	store_be16(t + VK_ETH_HLEN + c->ip_len + 2, f->key.gport);
}

/*
 * The window to show the VM: the payload the socket's send buffer can
 * still take. The kernel charges buffers by their true size (headers,
 * fragments), not by payload, so the free space (SO_MEMINFO) is scaled
 * by the payload-to-charge ratio of what is queued now (SIOCOUTQ over
 * the queued charge), or halved when nothing is queued.
 */
static uint32_t rcv_window(struct vk_flow *f)
{
	struct tcp_conn *c = conn_of(f);
	uint32_t mi[SK_MEMINFO_VARS];
	socklen_t sl = sizeof(mi);
	uint64_t room, queued, sndbuf;
	int outq = 0;

	if (c->guest_fin || f->fd < 0)
		return 0xffff;
	if (getsockopt(f->fd, SOL_SOCKET, SO_MEMINFO, mi, &sl) < 0 ||
	    sl < sizeof(uint32_t) * (SK_MEMINFO_WMEM_QUEUED + 1))
		return 65535;
	sndbuf = mi[SK_MEMINFO_SNDBUF];
	queued = mi[SK_MEMINFO_WMEM_QUEUED];
	c->sndbuf = (uint32_t)sndbuf;
	room = sndbuf > queued ? sndbuf - queued : 0;
	if (queued > 4096 && ioctl(f->fd, SIOCOUTQ, &outq) == 0 && outq > 0 &&
	    (uint64_t)outq < queued)
		room = room * (uint64_t)outq / queued;
	else
		room /= 2;
	/* Keep a little slack for the next buffer's overhead. */
	room -= room / 16;
	if (room > TCP_MAX_WINDOW)
		room = TCP_MAX_WINDOW;
	return (uint32_t)room;
}

/*
 * Fill a header for a segment with flags and payload length from the
 * template; seq is the sequence number. Computes the IP checksum; the
 * TCP checksum is left for the caller (full or partial).
 */
static size_t hdr_fill(struct vk_flow *f, uint8_t *h, uint32_t seq,
		       uint8_t flags, size_t optlen, size_t plen, uint32_t wnd)
{
	struct tcp_conn *c = conn_of(f);
	uint8_t *ip = h + VK_ETH_HLEN, *th;
	size_t l4 = 20 + optlen + plen;
	uint16_t ck;

	memcpy(h, c->tmpl, c->hdr_len);
	th = ip + c->ip_len;
	if (c->ip_len == 20) {
		size_t tot = 20 + l4;

		store_be16(ip + 2, tot > 0xffff ? 0 : (uint16_t)tot);
		store_be16(ip + 4, (uint16_t)c->ip_id++);
		memset(ip + 10, 0, 2);
		ck = vk_csum_fold(vk_csum_add(0, ip, 20));
		memcpy(ip + 10, &ck, 2);
	} else {
		store_be16(ip + 4, l4 > 0xffff ? 0 : (uint16_t)l4);
	}
	store_be32(th + 4, seq);
	store_be32(th + 8, (flags & F_ACK) ? c->rcv_nxt : 0);
	th[12] = (uint8_t)(((20 + optlen) / 4) << 4);
	th[13] = flags;
	if (flags & F_SYN) {
		wnd = 0xffff;
	} else {
		uint32_t low = 4u * c->mss;

		/* A window this small stalls the VM: ask for EPOLLOUT (at a
		 * third of the buffer free, which shows more than this). */
		if (low > c->sndbuf / 8)
			low = c->sndbuf / 8;
		c->wnd_low = wnd < low && c->state == T_ESTABLISHED &&
			     !c->guest_fin;
		c->rcv_wnd_sent = wnd;
		wnd = c->ws_ok ? wnd >> TCP_WS_SHIFT : (wnd > 0xffff ? 0xffff : wnd);
	}
	store_be16(th + 14, (uint16_t)wnd);
	memset(th + 16, 0, 4);
	if (flags & F_ACK) {
		c->ack_due = false;
		c->rcv_acked = c->rcv_nxt;
	}
	return c->hdr_len + optlen;
}

/* The full checksum of a segment without payload (len header bytes). */
static void hdr_csum(const struct vk_flow *f, uint8_t *th, size_t len)
{
	uint32_t s = vk_csum_pseudo(&f->key.raddr, &f->key.gaddr, IPPROTO_TCP,
				    (uint32_t)len);
	uint16_t ck = vk_csum_fold(vk_csum_add(s, th, len));

	memcpy(th + 16, &ck, 2);
}

/* A segment without data (SYN, ACK, FIN, RST), with options for SYNs. */
static int tcp_send_flags(struct vpnkit *vk, struct vk_flow *f, uint8_t flags)
{
	struct tcp_conn *c = conn_of(f);
	uint8_t h[TCP_HDR_MAX + 12], *th;
	size_t optlen = 0, len;
	uint32_t seq = c->snd_nxt;
	struct iovec iov;

	(void)vk;
	if (flags & F_SYN) {
		optlen = c->ws_ok || c->state == T_SYN_SENT ? 8 : 4;
		seq = c->snd_una;
	} else if ((flags & F_FIN) && c->fin_sent) {
		seq = c->snd_nxt - 1; /* retransmitted FIN */
	}
	len = hdr_fill(f, h, seq, flags, optlen, 0,
		       (flags & F_SYN) ? 0xffff : rcv_window(f));
	th = h + VK_ETH_HLEN + c->ip_len;
	if (optlen) {
		uint8_t *o = th + 20;
		uint16_t mss = (uint16_t)(vk_config(vk)->mtu - c->ip_len - 20);

		o[0] = 2;
		o[1] = 4;
		store_be16(o + 2, mss);
		if (optlen == 8) {
			o[4] = 1;
			o[5] = 3;
			o[6] = 3;
			o[7] = TCP_WS_SHIFT;
		}
	}
	hdr_csum(f, th, 20 + optlen);
	iov.iov_base = h;
	iov.iov_len = len;
	wnd_watch(vk, f);
	return vk_port_send(f->port, NULL, &iov, 1);
}

/* An RST must get out even past a full link: it is tiny. */
static void tcp_send_rst(struct vpnkit *vk, struct vk_flow *f)
{
	bool blocked = f->port->blocked;

	f->port->blocked = false;
	tcp_send_flags(vk, f, F_RST | F_ACK);
	f->port->blocked = blocked || f->port->blocked;
}

/* Send count identical ACKs with the window last advertised. */
static void tcp_send_dup(struct vpnkit *vk, struct vk_flow *f, int count)
{
	struct tcp_conn *c = conn_of(f);
	uint8_t h[TCP_HDR_MAX], *th;
	size_t len;
	struct iovec iov;

	(void)vk;
	len = hdr_fill(f, h, c->snd_nxt, F_ACK, 0, 0, c->rcv_wnd_sent);
	th = h + VK_ETH_HLEN + c->ip_len;
	hdr_csum(f, th, 20);
	iov.iov_base = h;
	iov.iov_len = len;
	while (count--)
		if (vk_port_send(f->port, NULL, &iov, 1))
			break;
}

/* An RST for a segment that has no flow (RFC 793's reset generation). */
static void tcp_rst_for(struct vpnkit *vk, const struct vk_pkt *pkt,
			uint32_t seq, uint32_t ack, bool with_ack)
{
	uint8_t th[20];
	const uint8_t *in = pkt->l4;

	(void)vk;
	memset(th, 0, sizeof(th));
	memcpy(th, in + 2, 2); /* our source port is their destination */
	memcpy(th + 2, in, 2);
	store_be32(th + 4, seq);
	store_be32(th + 8, ack);
	th[12] = 5 << 4;
	th[13] = F_RST | (with_ack ? F_ACK : 0);
	vk_ip_send(pkt->port, IPPROTO_TCP, &pkt->dst, &pkt->src, th, 20, NULL,
		   0);
}

/* ---------------------------------------------------------------- lists */

static void defer_ack(struct vpnkit *vk, struct vk_flow *f)
{
	struct tcp_inst *ts = tcp_st(vk);
	struct tcp_conn *c = conn_of(f);

	c->ack_due = true;
	if (!c->on_deferred && ts->n_deferred < ts->cap) {
		c->on_deferred = true;
		ts->deferred[ts->n_deferred++] = f->index;
	}
}

static void block_on_port(struct vpnkit *vk, struct vk_flow *f)
{
	struct tcp_inst *ts = tcp_st(vk);
	struct tcp_conn *c = conn_of(f);

	if (!c->on_blocked && ts->n_blocked < ts->cap) {
		c->on_blocked = true;
		ts->blocked[ts->n_blocked++] = f->index;
	}
}

static void arm(struct vpnkit *vk, struct tcp_conn *c, uint64_t when)
{
	struct tcp_inst *ts = tcp_st(vk);

	c->deadline = when;
	if (when < ts->next_deadline) {
		ts->next_deadline = when;
		vk_timer_soon(vk, when);
	}
}

/* ---------------------------------------------------------------- closing */

static void tcp_close(struct vpnkit *vk, struct vk_flow *f, bool reset_host)
{
	if (reset_host && f->fd >= 0) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };

		setsockopt(f->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	vk_flow_free(vk, f);
}

/* Reset both sides and forget the flow. */
static void tcp_reset(struct vpnkit *vk, struct vk_flow *f)
{
	struct tcp_conn *c = conn_of(f);

	if (c->state != T_CONNECTING && f->port && !f->port->broken) {
		tcp_send_rst(vk, f);
	}
	tcp_close(vk, f, true);
}

/* Both directions are closed and acknowledged: done. */
static bool tcp_maybe_done(struct vpnkit *vk, struct vk_flow *f)
{
	struct tcp_conn *c = conn_of(f);

	if (c->guest_fin && c->fin_acked) {
		tcp_close(vk, f, false);
		return true;
	}
	return false;
}

static void epoll_update(struct vpnkit *vk, struct vk_flow *f)
{
	struct tcp_conn *c = conn_of(f);
	uint32_t ev = EPOLLRDHUP | EPOLLET;

	if (c->state == T_CONNECTING || c->want_out)
		ev |= EPOLLOUT;
	if (c->state != T_CONNECTING && !c->host_eof)
		ev |= EPOLLIN;
	vk_epoll_mod(vk, f->fd, ev, &f->h);
}

/* We showed the VM a small window: watch for the socket draining. */
static void wnd_watch(struct vpnkit *vk, struct vk_flow *f)
{
	struct tcp_conn *c = conn_of(f);

	if (c->wnd_low && !c->want_out && f->fd >= 0) {
		c->want_out = true;
		epoll_update(vk, f);
	}
}

/* ---------------------------------------------------------------- host->VM */

/* Rewind the peek offset to the first byte the VM has not acknowledged. */
static void peek_rewind(struct vk_flow *f)
{
	struct tcp_conn *c = conn_of(f);
	int off = (int)(c->snd_nxt - c->snd_una - (c->fin_sent ? 1 : 0));

	if (c->peek_off)
		setsockopt(f->fd, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof(off));
}

/*
 * Send what the socket holds and the VM's window allows. Returns 0, or
 * -EAGAIN if the port is full (the flow waits for resume), or -ECONNRESET
 * if the flow was reset and freed.
 */
static int tcp_send_data(struct vpnkit *vk, struct vk_flow *f)
{
	struct tcp_inst *ts = tcp_st(vk);
	struct tcp_conn *c = conn_of(f);
	bool gso = f->port->flags & VPNKIT_PORT_OFFLOAD;
	uint32_t inflight, wnd, want, seg;
	struct iovec riov[2];
	struct msghdr mh;
	ssize_t n;
	size_t done = 0, skip = 0;
	unsigned i = 0;
	uint32_t rwnd;

	if (c->state != T_ESTABLISHED || c->host_eof || f->port->broken ||
	    !c->host_ready)
		return 0;
	rwnd = rcv_window(f);
	if (f->port->blocked) {
		block_on_port(vk, f);
		return -EAGAIN;
	}
	for (;;) {
		/* Offloaded frames carry as many whole segments as an IP
		 * length field can describe. */
		seg = c->mss;
		if (gso) {
			uint32_t lim = c->ip_len == 20 ? 65535 - 40 : 65535 - 20;

			seg = lim - lim % c->mss;
		}
		inflight = c->snd_nxt - c->snd_una;
		wnd = c->snd_wnd;
		if (wnd > seg * TCP_LINK_FRAMES)
			wnd = seg * TCP_LINK_FRAMES;
		if (inflight >= wnd)
			return 0;
		want = wnd - inflight;
		if (want > TCP_PEEK_BUF)
			want = TCP_PEEK_BUF;
		if (want > (uint32_t)seg * TCP_MAX_FRAMES)
			want = (uint32_t)seg * TCP_MAX_FRAMES;
		memset(&mh, 0, sizeof(mh));
		if (c->peek_off) {
			riov[0].iov_base = ts->peek;
			riov[0].iov_len = want;
			mh.msg_iov = riov;
			mh.msg_iovlen = 1;
		} else {
			/* Peek from the start: skip what is in flight. */
			skip = inflight;
			if (!ts->discard) {
				ts->discard = malloc(TCP_MAX_WINDOW);
				if (!ts->discard)
					return 0;
			}
			if (skip > TCP_MAX_WINDOW)
				return 0;
			riov[0].iov_base = ts->discard;
			riov[0].iov_len = skip;
			riov[1].iov_base = ts->peek;
			riov[1].iov_len = want;
			mh.msg_iov = skip ? riov : riov + 1;
			mh.msg_iovlen = skip ? 2 : 1;
		}
		n = recvmsg(f->fd, &mh, MSG_PEEK | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN) {
				c->host_ready = false;
				return 0;
			}
			if (errno == EINTR)
				return 0;
			tcp_reset(vk, f);
			return -ECONNRESET;
		}
		if ((size_t)n <= skip) {
			/* With SO_PEEK_OFF, nothing past the offset and no
			 * EAGAIN means end of file; without, only the
			 * hang-up event can tell. */
			if ((c->peek_off && n == 0) ||
			    (!c->peek_off && c->rdhup && (size_t)n == skip))
				goto eof;
			c->host_ready = false;
			return 0;
		}
		n -= (ssize_t)skip;
		/* Frame it. */
		done = 0;
		i = 0;
		while (done < (size_t)n) {
			size_t plen = (size_t)n - done, hl;
			struct vpnkit_offload off;
			struct iovec iov[2];
			uint8_t *h = ts->hdrs[i % TCP_MAX_FRAMES], *th;
			int err;

			if (plen > seg)
				plen = seg;
			hl = hdr_fill(f, h, c->snd_nxt, F_ACK | F_PSH, 0, plen,
				      rwnd);
			th = h + VK_ETH_HLEN + c->ip_len;
			iov[0].iov_base = h;
			iov[0].iov_len = hl;
			iov[1].iov_base = ts->peek + done;
			iov[1].iov_len = plen;
			if (gso) {
				uint32_t s = vk_csum_pseudo(
					&f->key.raddr, &f->key.gaddr,
					IPPROTO_TCP, (uint32_t)(20 + plen));
				uint16_t p = (uint16_t)~vk_csum_fold(s);

				memcpy(th + 16, &p, 2);
				memset(&off, 0, sizeof(off));
				off.flags = VPNKIT_OFFLOAD_NEEDS_CSUM;
				off.csum_start = (uint16_t)(VK_ETH_HLEN +
							    c->ip_len);
				off.csum_offset = 16;
				off.hdr_len = (uint16_t)hl;
				if (plen > c->mss) {
					off.gso_type = c->ip_len == 20 ?
						VPNKIT_GSO_TCPV4 :
						VPNKIT_GSO_TCPV6;
					off.gso_size = c->mss;
				}
				err = vk_port_send(f->port, &off, iov, 2);
			} else {
				uint32_t s = vk_csum_pseudo(
					&f->key.raddr, &f->key.gaddr,
					IPPROTO_TCP, (uint32_t)(20 + plen));
				uint16_t ck;

				s = vk_csum_add(s, th, 20);
				s = vk_csum_add(s, ts->peek + done, plen);
				ck = vk_csum_fold(s);
				memcpy(th + 16, &ck, 2);
				err = vk_port_send(f->port, NULL, iov, 2);
			}
			if (err) {
				/* Not sent: peek it again later. */
				peek_rewind(f);
				c->host_ready = true;
				if (err == -EAGAIN)
					block_on_port(vk, f);
				return err == -EAGAIN ? -EAGAIN : 0;
			}
			c->snd_nxt += (uint32_t)plen;
			done += plen;
			i++;
		}
		f->active_ns = vk_now_ns();
		wnd_watch(vk, f);
		if (!c->deadline)
			arm(vk, c, f->active_ns + c->rto_ns);
		if ((size_t)n < want) {
			/* Drained until the next event; but the peer's end of
			 * file may have come with this data, in the same
			 * edge-triggered event: peek once more to see it. */
			if (!c->rdhup) {
				c->host_ready = false;
				return 0;
			}
		}
	}

eof:
	/* End of file, and everything before it is out: send our FIN. */
	c->host_eof = true;
	if (!c->fin_sent) {
		if (tcp_send_flags(vk, f, F_FIN | F_ACK) == 0) {
			c->fin_sent = true;
			c->snd_nxt++;
			if (!c->deadline)
				arm(vk, c, vk_now_ns() + c->rto_ns);
		} else {
			/* Try again on resume (host_eof without fin_sent). */
			block_on_port(vk, f);
			return -EAGAIN;
		}
	}
	epoll_update(vk, f);
	return 0;
}

/* The VM acknowledged up to ack: drop those bytes from the socket. */
static int tcp_acked(struct vpnkit *vk, struct vk_flow *f, uint32_t ack)
{
	struct tcp_conn *c = conn_of(f);
	uint32_t n = ack - c->snd_una;

	if (!n)
		return 0;
	if (c->fin_sent && ack == c->snd_nxt) {
		c->fin_acked = true;
		n--; /* the FIN is not data */
	}
	if (n) {
		ssize_t r = recv(f->fd, NULL, n, MSG_TRUNC | MSG_DONTWAIT);

		if (r < 0 && errno != EAGAIN) {
			tcp_reset(vk, f);
			return -ECONNRESET;
		}
	}
	c->snd_una = ack;
	c->retries = 0;
	c->dupacks = 0;
	c->rto_ns = TCP_RTO_MIN_NS;
	if (c->snd_una == c->snd_nxt)
		c->deadline = 0;
	else
		arm(vk, c, vk_now_ns() + c->rto_ns);
	return 0;
}

/* Go back to the first unacknowledged byte and send again. */
static void tcp_retransmit(struct vpnkit *vk, struct vk_flow *f)
{
	struct tcp_conn *c = conn_of(f);

	if (c->fin_sent && !c->fin_acked && c->snd_nxt - c->snd_una == 1) {
		tcp_send_flags(vk, f, F_FIN | F_ACK);
		return;
	}
	if (c->fin_sent) {
		c->fin_sent = false;
		c->host_eof = false;
	}
	c->snd_nxt = c->snd_una;
	peek_rewind(f);
	c->host_ready = true;
	tcp_send_data(vk, f);
}

/* ---------------------------------------------------------------- VM->host */

/* Write the segment's payload to the socket; returns bytes taken. */
static size_t tcp_write(struct vpnkit *vk, struct vk_flow *f,
			const uint8_t *data, size_t len)
{
	struct tcp_conn *c = conn_of(f);
	ssize_t n;

	(void)vk;
	if (!len)
		return 0;
	n = send(f->fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return SIZE_MAX;
		n = 0;
	}
	if ((size_t)n < len && !c->want_out) {
		c->want_out = true;
		c->dupacks_owed = true;
		epoll_update(vk, f);
	}
	return (size_t)n;
}

struct seg {
	uint32_t seq, ack;
	uint16_t win;
	uint8_t flags;
	const uint8_t *data;
	size_t len;
	uint16_t mss; /* from options, 0 if none */
	int ws; /* from options, -1 if none */
};

static bool seg_parse(const struct vk_pkt *pkt, struct seg *s)
{
	const uint8_t *th = pkt->l4;
	size_t doff = (size_t)(th[12] >> 4) * 4, i;

	if (doff < 20 || doff > pkt->l4_len)
		return false;
	s->seq = load_be32(th + 4);
	s->ack = load_be32(th + 8);
	s->flags = th[13];
	s->win = load_be16(th + 14);
	s->data = th + doff;
	s->len = pkt->l4_len - doff;
	s->mss = 0;
	s->ws = -1;
	for (i = 20; i < doff;) {
		uint8_t kind = th[i], olen;

		if (kind == 0)
			break;
		if (kind == 1) {
			i++;
			continue;
		}
		if (i + 1 >= doff)
			return false;
		olen = th[i + 1];
		if (olen < 2 || i + olen > doff)
			return false;
		if (kind == 2 && olen == 4)
			s->mss = load_be16(th + i + 2);
		else if (kind == 3 && olen == 3)
			s->ws = th[i + 2] > 14 ? 14 : th[i + 2];
		i += olen;
	}
	return true;
}

static void set_snd_wnd(struct tcp_conn *c, uint16_t win)
{
	c->snd_wnd = (uint32_t)win << (c->ws_ok ? c->ws_guest : 0);
}

/*
 * Socket options for a flow's socket: no Nagle (the VM's stack already
 * decided when to send) and peeking at an offset. Buffer sizes are left
 * to the kernel's autotuning, which the window follows.
 */
static void sock_setup(struct vk_flow *f)
{
	struct tcp_conn *c = conn_of(f);
	int one = 1, zero = 0;

	setsockopt(f->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (setsockopt(f->fd, SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof(zero)) == 0)
		c->peek_off = true;
}

/* A SYN from the VM for a flow we do not have: connect a socket. */
static void tcp_open(struct vpnkit *vk, const struct vk_pkt *pkt,
		     const struct vk_flow_key *key, const struct seg *s)
{
	const struct vpnkit_config *cfg = vk_config(vk);
	struct sockaddr_storage sa;
	socklen_t sl;
	struct vk_flow *f;
	struct tcp_conn *c;
	int fd, err;

	if (vk_addr_is_gateway(vk, &key->raddr) && key->rport == 53)
		err = vk_dns_tcp_target(vk, &sa, &sl);
	else
		err = vk_addr_to_host(vk, &key->raddr, key->rport, &sa, &sl);
	if (err || !vk_fd_take(vk))
		goto refuse;
	f = vk_flow_new(vk, key, pkt->port);
	if (!f) {
		vk_fd_give(vk);
		goto refuse;
	}
	fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    0);
	if (fd < 0) {
		vk_fd_give(vk);
		vk_flow_free(vk, f);
		goto refuse;
	}
	f->fd = fd;
	f->h.fn = tcp_sock_event;
	c = conn_of(f);
	c->state = T_CONNECTING;
	c->rcv_nxt = s->seq + 1;
	c->snd_una = c->snd_nxt = (uint32_t)(vk_now_ns() >> 6) ^
				  (uint32_t)(f->index * 2654435761u);
	c->ws_ok = s->ws >= 0;
	c->ws_guest = (uint8_t)(s->ws >= 0 ? s->ws : 0);
	c->mss = s->mss ? s->mss : (pkt->af == AF_INET ? 536 : 1220);
	if (c->mss > cfg->mtu - (pkt->af == AF_INET ? 40 : 60))
		c->mss = (uint16_t)(cfg->mtu - (pkt->af == AF_INET ? 40 : 60));
	if (c->mss < 64)
		c->mss = 64;
	c->rto_ns = TCP_RTO_MIN_NS;
	c->snd_wnd = s->win; /* SYN windows are never scaled */
	tmpl_init(f);
	sock_setup(f);
	if (vk_epoll_add(vk, fd, EPOLLOUT | EPOLLRDHUP | EPOLLET, &f->h)) {
		tcp_close(vk, f, false);
		goto refuse;
	}
	arm(vk, c, vk_now_ns() + TCP_SYN_TIMEOUT_NS);
	if (connect(fd, (struct sockaddr *)&sa, sl) < 0 &&
	    errno != EINPROGRESS) {
		tcp_close(vk, f, false);
		goto refuse;
	}
	return;

refuse:
	tcp_rst_for(vk, pkt, 0, s->seq + 1 + (uint32_t)s->len, true);
}

/* The socket connected (VM-initiated): answer the VM's SYN. */
static void tcp_connected(struct vpnkit *vk, struct vk_flow *f)
{
	struct tcp_conn *c = conn_of(f);
	int err = 0;
	socklen_t sl = sizeof(err);

	if (getsockopt(f->fd, SOL_SOCKET, SO_ERROR, &err, &sl) < 0 || err) {
		/* Refused or unreachable: tell the VM with an RST. */
		c->state = T_SYN_ACK_SENT; /* so the RST carries an ACK */
		tcp_send_rst(vk, f);
		tcp_close(vk, f, false);
		return;
	}
	c->state = T_SYN_ACK_SENT;
	tcp_send_flags(vk, f, F_SYN | F_ACK);
	c->snd_nxt = c->snd_una + 1;
	arm(vk, c, vk_now_ns() + c->rto_ns);
	epoll_update(vk, f);
}

static void tcp_segment(struct vpnkit *vk, struct vk_flow *f,
			const struct seg *s)
{
	struct tcp_conn *c = conn_of(f);
	const uint8_t *data = s->data;
	size_t len = s->len, n;

	f->active_ns = vk_now_ns();
	if (s->flags & F_RST) {
		/* Accept an RST within the window (RFC 5961 light); to our
		 * SYN, one that acknowledges it. */
		if (c->state == T_SYN_SENT ?
			    ((s->flags & F_ACK) && s->ack == c->snd_una + 1) :
			    (seq_le(c->rcv_nxt, s->seq) &&
			     seq_lt(s->seq, c->rcv_nxt + c->rcv_wnd_sent + 1)))
			tcp_close(vk, f, true);
		return;
	}
	switch (c->state) {
	case T_CONNECTING:
		return; /* a retransmitted SYN while we connect */
	case T_SYN_ACK_SENT:
		if (s->flags & F_SYN) {
			tcp_send_flags(vk, f, F_SYN | F_ACK);
			return;
		}
		if (!(s->flags & F_ACK) || s->ack != c->snd_una + 1)
			return;
		c->snd_una = s->ack;
		c->state = T_ESTABLISHED;
		c->host_ready = true;
		c->deadline = 0;
		break;
	case T_SYN_SENT:
		if ((s->flags & (F_SYN | F_ACK)) != (F_SYN | F_ACK) ||
		    s->ack != c->snd_una + 1)
			return;
		c->rcv_nxt = s->seq + 1;
		c->snd_una = s->ack;
		c->ws_ok = s->ws >= 0;
		c->ws_guest = (uint8_t)(s->ws >= 0 ? s->ws : 0);
		if (s->mss && s->mss < c->mss)
			c->mss = s->mss < 64 ? 64 : s->mss;
		c->state = T_ESTABLISHED;
		c->host_ready = true;
		c->deadline = 0;
		c->snd_wnd = s->win;
		tcp_send_flags(vk, f, F_ACK);
		epoll_update(vk, f);
		tcp_send_data(vk, f);
		return;
	default:
		if (s->flags & F_SYN) { /* a stale SYN: re-ACK */
			defer_ack(vk, f);
			return;
		}
		break;
	}
	if (!(s->flags & F_ACK))
		return;

	/* The ACK side. */
	if (seq_lt(c->snd_una, s->ack) && seq_le(s->ack, c->snd_nxt)) {
		set_snd_wnd(c, s->win);
		if (tcp_acked(vk, f, s->ack))
			return;
	} else if (s->ack == c->snd_una && !len && !(s->flags & F_FIN) &&
		   c->snd_nxt != c->snd_una) {
		uint32_t old = c->snd_wnd;

		set_snd_wnd(c, s->win);
		if (c->snd_wnd == old && ++c->dupacks == 3) {
			tcp_retransmit(vk, f);
			if (!f->in_use)
				return;
		}
	} else {
		set_snd_wnd(c, s->win);
	}

	/* The data side. An unacceptable segment without data (a window
	 * probe, seq one before rcv_nxt) is answered with an ACK. */
	if (!len && !(s->flags & F_FIN) && s->seq != c->rcv_nxt)
		tcp_send_flags(vk, f, F_ACK);
	if (len || (s->flags & F_FIN)) {
		uint32_t seq = s->seq;
		bool fin = s->flags & F_FIN;

		if (seq_lt(seq, c->rcv_nxt)) {
			uint32_t old = c->rcv_nxt - seq;

			if (old >= len) {
				/* Entirely old: a retransmission. */
				if (!(fin && old == len && !c->guest_fin)) {
					defer_ack(vk, f);
					goto out;
				}
				old = (uint32_t)len;
			}
			data += old;
			len -= old;
			seq = c->rcv_nxt;
		}
		if (seq != c->rcv_nxt) {
			/* A gap: ask for what is missing. */
			if (logger_enabled(vk_log(vk), LOG_LEVEL_TRACE))
				logger_printf(vk_log(vk), LOG_LEVEL_TRACE,
					      "tcp: gap of %u bytes",
					      seq - c->rcv_nxt);
			tcp_send_flags(vk, f, F_ACK);
			goto out;
		}
		if (c->guest_fin) {
			defer_ack(vk, f);
			goto out;
		}
		n = tcp_write(vk, f, data, len);
		if (n == SIZE_MAX) {
			tcp_reset(vk, f);
			return;
		}
		c->rcv_nxt += (uint32_t)n;
		if (n == len && fin) {
			c->guest_fin = true;
			c->rcv_nxt++;
			shutdown(f->fd, SHUT_WR);
		}
		if (n == len && c->rcv_nxt - c->rcv_acked >=
					(c->rcv_wnd_sent / 4 > 2u * c->mss ?
						 c->rcv_wnd_sent / 4 :
						 2u * c->mss)) {
			/* Keep the VM's pipeline full: don't sit on a
			 * quarter of its window until the batch ends. */
			tcp_send_flags(vk, f, F_ACK);
		} else if (n < len) {
			/* The socket is full: the rest comes again. */
			if (logger_enabled(vk_log(vk), LOG_LEVEL_TRACE))
				logger_printf(vk_log(vk), LOG_LEVEL_TRACE,
					      "tcp: short write %zu of %zu, window sent %u",
					      n, len, c->rcv_wnd_sent);
			tcp_send_flags(vk, f, F_ACK);
		} else {
			defer_ack(vk, f);
		}
	}
out:
	if (tcp_maybe_done(vk, f))
		return;
	if (c->snd_nxt - c->snd_una < c->snd_wnd)
		tcp_send_data(vk, f);
}

void vk_tcp_input(struct vpnkit *vk, const struct vk_pkt *pkt)
{
	struct vk_flow_key key;
	struct vk_flow *f;
	struct seg s;

	if (!seg_parse(pkt, &s)) {
		vk_drop_bad(vk, "TCP header");
		return;
	}
	memset(&key, 0, sizeof(key));
	key.proto = IPPROTO_TCP;
	key.gaddr = pkt->src;
	key.raddr = pkt->dst;
	key.gport = load_be16(pkt->l4);
	key.rport = load_be16(pkt->l4 + 2);
	if (!key.gport || !key.rport) {
		vk_drop_bad(vk, "TCP port 0");
		return;
	}
	f = vk_flow_lookup(vk, &key);
	if (f && f->port != pkt->port) {
		vk_drop_bad(vk, "TCP flow of another VM");
		return;
	}
	if (!f) {
		if (s.flags & F_RST)
			return;
		if ((s.flags & (F_SYN | F_ACK)) == F_SYN) {
			if (IN6_IS_ADDR_UNSPECIFIED(&pkt->src) ||
			    IN6_IS_ADDR_MULTICAST(&pkt->dst)) {
				vk_drop_bad(vk, "TCP SYN addresses");
				return;
			}
			tcp_open(vk, pkt, &key, &s);
			return;
		}
		/* Not ours: reset (RFC 793). */
		if (s.flags & F_ACK)
			tcp_rst_for(vk, pkt, s.ack, 0, false);
		else
			tcp_rst_for(vk, pkt, 0,
				    s.seq + (uint32_t)s.len +
					    ((s.flags & (F_SYN | F_FIN)) ? 1 : 0),
				    true);
		return;
	}
	tcp_segment(vk, f, &s);
}

/* ---------------------------------------------------------------- events */

static void tcp_sock_event(struct vpnkit *vk, struct vk_handler *h,
			   uint32_t events)
{
	struct vk_flow *f = (struct vk_flow *)h;
	struct tcp_conn *c = conn_of(f);

	if (!f->in_use)
		return;
	if (c->state == T_CONNECTING) {
		if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
			tcp_connected(vk, f);
		return;
	}
	if (events & EPOLLERR) {
		int err = 0;
		socklen_t sl = sizeof(err);

		getsockopt(f->fd, SOL_SOCKET, SO_ERROR, &err, &sl);
		if (err) {
			tcp_reset(vk, f);
			return;
		}
	}
	if ((events & EPOLLOUT) && c->want_out) {
		/* The socket drained after a short write (the VM resends)
		 * or after we showed a small window (update it). */
		c->want_out = false;
		epoll_update(vk, f);
		if (c->state == T_ESTABLISHED && c->dupacks_owed) {
			/* A window update, then three duplicates: the VM
			 * retransmits what the socket could not take. */
			c->dupacks_owed = false;
			c->wnd_low = false;
			tcp_send_flags(vk, f, F_ACK);
			tcp_send_dup(vk, f, 3);
		} else if (c->state == T_ESTABLISHED && c->wnd_low) {
			c->wnd_low = false;
			tcp_send_flags(vk, f, F_ACK);
		}
	}
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) {
		if (events & (EPOLLRDHUP | EPOLLHUP))
			c->rdhup = true;
		c->host_ready = true;
		f->active_ns = vk_now_ns();
		tcp_send_data(vk, f);
	}
}

void vk_tcp_port_resume(struct vpnkit *vk, struct vk_port *port)
{
	struct tcp_inst *ts = tcp_st(vk);
	uint32_t *old = ts->blocked, n = ts->n_blocked, i;

	/* Swap lists: flows that block again land in the fresh one. */
	ts->blocked = ts->blocked_spare;
	ts->blocked_spare = old;
	ts->n_blocked = 0;
	for (i = 0; i < n; i++) {
		struct vk_flow *f = &ts->flows[old[i]];
		struct tcp_conn *c = conn_of(f);

		if (!is_tcp(f) || !c->on_blocked)
			continue;
		c->on_blocked = false;
		if (f->port != port) {
			block_on_port(vk, f);
			continue;
		}
		if (port->blocked) {
			block_on_port(vk, f);
			continue;
		}
		if (c->state == T_ESTABLISHED && c->host_eof && !c->fin_sent)
			c->host_eof = false; /* the FIN did not get out */
		c->host_ready = true;
		tcp_send_data(vk, f);
	}
}

void vk_tcp_deferred(struct vpnkit *vk)
{
	struct tcp_inst *ts = tcp_st(vk);
	uint32_t i;

	for (i = 0; i < ts->n_deferred; i++) {
		struct vk_flow *f = &ts->flows[ts->deferred[i]];
		struct tcp_conn *c = conn_of(f);

		/* The slot may have been freed and reused by another
		 * protocol since it was listed. */
		if (!is_tcp(f))
			continue;
		c->on_deferred = false;
		if (c->ack_due && c->state == T_ESTABLISHED)
			tcp_send_flags(vk, f, F_ACK);
	}
	ts->n_deferred = 0;
}

struct tick_arg {
	uint64_t now;
	uint64_t next;
};

static void tick_one(struct vpnkit *vk, struct vk_flow *f, void *arg)
{
	struct tick_arg *t = arg;
	struct tcp_conn *c = conn_of(f);
	const struct vpnkit_config *cfg = vk_config(vk);

	if (f->key.proto != IPPROTO_TCP || f->h.fn != tcp_sock_event)
		return;
	if (c->deadline && c->deadline <= t->now) {
		c->deadline = 0;
		switch (c->state) {
		case T_CONNECTING:
			tcp_reset(vk, f);
			return;
		case T_SYN_ACK_SENT:
		case T_SYN_SENT:
			if (++c->retries > 5) {
				tcp_reset(vk, f);
				return;
			}
			tcp_send_flags(vk, f, c->state == T_SYN_SENT ?
						      F_SYN :
						      F_SYN | F_ACK);
			c->rto_ns *= 2;
			arm(vk, c, t->now + c->rto_ns);
			break;
		default:
			if (c->snd_nxt == c->snd_una)
				break;
			if (++c->retries > TCP_MAX_RETRIES) {
				tcp_reset(vk, f);
				return;
			}
			c->rto_ns = c->rto_ns * 2 > TCP_RTO_MAX_NS ?
					    TCP_RTO_MAX_NS :
					    c->rto_ns * 2;
			arm(vk, c, t->now + c->rto_ns);
			tcp_retransmit(vk, f);
			if (!f->in_use)
				return;
			break;
		}
	}
	/* Idle and half-dead connections. */
	if (c->state == T_ESTABLISHED) {
		uint64_t idle = (c->guest_fin || c->fin_sent) ?
					TCP_FIN_TIMEOUT_NS :
					(uint64_t)cfg->tcp_idle_s * 1000000000ull;

		if (f->active_ns < t->now && t->now - f->active_ns > idle) {
			tcp_reset(vk, f);
			return;
		}
		if (f->active_ns + idle < t->next)
			t->next = f->active_ns + idle;
	}
	if (c->deadline && c->deadline < t->next)
		t->next = c->deadline;
}

uint64_t vk_tcp_tick(struct vpnkit *vk, uint64_t now)
{
	struct tcp_inst *ts = tcp_st(vk);
	struct tick_arg t = { .now = now, .next = now + 1000000000ull };

	if (!vk_stats(vk)->tcp_flows) {
		ts->next_deadline = UINT64_MAX;
		return UINT64_MAX;
	}
	vk_flow_foreach(vk, tick_one, &t);
	ts->next_deadline = t.next;
	return t.next;
}

/* ---------------------------------------------------------------- inbound */

void vk_tcp_inbound(struct vpnkit *vk, int fd, const struct sockaddr *peer,
		    const struct in6_addr *gaddr, uint16_t gport)
{
	const struct vpnkit_config *cfg = vk_config(vk);
	struct vk_flow_key key;
	struct vk_port *port;
	struct vk_flow *f;
	struct tcp_conn *c;

	memset(&key, 0, sizeof(key));
	key.proto = IPPROTO_TCP;
	key.gaddr = *gaddr;
	key.gport = gport;
	vk_addr_from_host(vk, peer, &key.raddr, &key.rport);
	if (vk_addr_is_v4(&key.raddr) != vk_addr_is_v4(gaddr)) {
		/* A v6 client for a v4 guest: show it as the host. */
		if (vk_addr_is_v4(gaddr))
			vk_addr_from_v4(&key.raddr, cfg->host_ip);
		else
			goto out_close;
	}
	port = vk_port_by_addr(vk, gaddr);
	if (!port || vk_flow_lookup(vk, &key))
		goto out_close;
	f = vk_flow_new(vk, &key, port);
	if (!f)
		goto out_close;
	f->fd = fd;
	f->h.fn = tcp_sock_event;
	c = conn_of(f);
	c->inbound = true;
	c->state = T_SYN_SENT;
	c->snd_una = c->snd_nxt = (uint32_t)(vk_now_ns() >> 6) ^
				  (uint32_t)(f->index * 2654435761u);
	c->mss = (uint16_t)(cfg->mtu - (vk_addr_is_v4(gaddr) ? 40 : 60));
	c->rto_ns = TCP_RTO_MIN_NS;
	c->ws_ok = true; /* until the SYN-ACK says otherwise */
	tmpl_init(f);
	sock_setup(f);
	if (vk_epoll_add(vk, fd, EPOLLRDHUP | EPOLLET, &f->h)) {
		tcp_close(vk, f, true);
		return;
	}
	tcp_send_flags(vk, f, F_SYN);
	c->snd_nxt = c->snd_una + 1;
	arm(vk, c, vk_now_ns() + c->rto_ns);
	return;

out_close:
	{
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };

		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	close(fd);
	vk_fd_give(vk);
}

struct gone_arg {
	const struct in6_addr *gaddr;
	uint16_t gport;
};

static void gone_one(struct vpnkit *vk, struct vk_flow *f, void *arg)
{
	struct gone_arg *g = arg;

	if (f->key.proto == IPPROTO_TCP && f->h.fn == tcp_sock_event &&
	    conn_of(f)->inbound && f->key.gport == g->gport &&
	    IN6_ARE_ADDR_EQUAL(&f->key.gaddr, g->gaddr))
		tcp_reset(vk, f);
}

void vk_tcp_forward_gone(struct vpnkit *vk, const struct in6_addr *gaddr,
			 uint16_t gport)
{
	struct gone_arg g = { .gaddr = gaddr, .gport = gport };

	vk_flow_foreach(vk, gone_one, &g);
}
