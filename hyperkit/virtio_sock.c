// SPDX-License-Identifier: MIT
/*
 * virtio-sock: the guest's AF_VSOCK stream sockets carried to Unix stream
 * sockets in a host directory, hyperkit's way (see virtio_sock.h for the
 * naming and the contract).
 *
 * Theory of operation. A connection is keyed by (guest port, host port);
 * the guest's cid is fixed and the host's is always 2. Packets are the
 * 44-byte little-endian header plus payload. The transmit queue (the
 * guest's packets) is served as fast as it fills: every chain is parsed,
 * acted on and pushed back at once, so the queue never waits for a host
 * peer. The receive queue is the other way: what the device has to tell
 * the guest (control packets, or bytes a host socket has for it) waits on
 * a round-robin list of connections with work, and the list is served
 * whenever the guest has posted receive buffers. Host bytes are read
 * straight from the socket into the guest's buffer, never more than the
 * guest's advertised free space (buf_alloc - (tx_cnt - fwd_cnt)), so
 * nothing is buffered on that side: a socket whose guest has no room is
 * simply not read, and the host peer feels TCP-like back-pressure.
 *
 * Towards the host, the guest's bytes are written to the socket at once;
 * what the socket does not take goes to a per-connection buffer of
 * HK_VSOCK_BUF_ALLOC bytes, which is the buf_alloc we advertise. Credit
 * makes it impossible for a well-behaved guest to overflow it; a guest
 * that does is reset. fwd_cnt counts bytes the host socket took, and a
 * CREDIT_UPDATE goes out once a quarter of the buffer has been consumed
 * since the guest last heard, which keeps a sender that waits for room
 * from stalling.
 *
 * Closing: the guest's SHUTDOWN maps to shutdown(2) on the host socket
 * (SEND after the buffer drains); EOF from the host socket becomes
 * SHUTDOWN SEND to the guest. When both directions are finished, or the
 * guest said it is done with both, the device answers with RST and
 * forgets the connection, as Linux's own transport does. Errors on the
 * host socket, credit violations and packets that make no sense for a
 * connection's state reset it; a packet for no connection gets an RST
 * (kept on a small ring until a receive buffer takes it, dropped when
 * the ring is full), and a header that is not ours (wrong cids, short) is
 * dropped. Device reset closes every connection.
 *
 * Every socket of the device lives in a private epoll set, which is the
 * one descriptor registered with the VM's event loop: the loop has a
 * fixed number of entries, and a private set lets any thread (a vCPU's
 * device reset) close sockets without waiting for the loop.
 */
#include "virtio_sock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/endian.h"
#include "virtio_pci.h"

#define VS_RXQ 0u
#define VS_TXQ 1u
#define VS_EVQ 2u
#define VS_NQ 3u
#define VS_QUEUE_SIZE 256u
#define VS_HASH 2048u /* buckets, a power of two */
#define VS_STRAY_MAX 256u /* RSTs for packets without a connection */
#define VS_MAX_PAYLOAD (64u << 10) /* per packet, either way */
#define VS_TX_BUDGET 1024u /* chains per transmit-queue visit */
#define VS_ACCEPT_BUDGET 16u
#define VS_EVENTS 64

/* Tags of the private epoll set: kind in the top byte, then a generation
 * (connections only) and an index. */
enum vs_kind { VS_K_KICK = 1, VS_K_CONNECT, VS_K_FORWARD, VS_K_CONN };

#define VS_TAG(kind, gen, idx) \
	((uint64_t)(kind) << 56 | (uint64_t)((gen)&0xffffffu) << 32 | (idx))

/* Control packets a connection owes the guest. */
#define CTL_REQUEST 1u
#define CTL_RESPONSE 2u
#define CTL_SHUTDOWN 4u
#define CTL_CREDIT 8u

enum vs_state {
	VS_FREE,
	VS_PREAMBLE, /* accepted on DIR/connect, reading "%08x.%08x\n" */
	VS_CONNECTING, /* REQUEST sent to the guest, waiting for RESPONSE */
	VS_ESTABLISHED,
};

struct vs_hdr {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port, len;
	uint16_t type, op;
	uint32_t flags, buf_alloc, fwd_cnt;
};

struct vs_conn {
	enum vs_state state;
	int fd;
	uint32_t gen;
	uint32_t guest_port, host_port;
	uint32_t events; /* registered in the epoll set; 0: not there */
	struct vs_conn *hnext; /* hash chain */
	struct vs_conn *pprev, *pnext; /* list of connections with work */
	bool pending;
	bool hashed;

	bool readable; /* the host socket may have bytes (or EOF) */
	bool host_eof; /* it gave EOF: SHUTDOWN SEND owed or sent */
	bool wr_shut; /* shutdown(SHUT_WR) done */
	uint32_t guest_shut; /* SHUTDOWN flags the guest sent */
	uint32_t ctl; /* CTL_* owed to the guest */

	/* The guest's receive side, as its packets describe it. */
	uint32_t peer_buf_alloc, peer_fwd_cnt;
	uint32_t tx_cnt; /* payload bytes sent to the guest */
	/* Our receive side. */
	uint32_t rx_cnt; /* payload bytes taken from the guest */
	uint32_t fwd_cnt; /* ... of which the host socket took */
	uint32_t fwd_reported; /* fwd_cnt the guest last saw */
	uint8_t *buf; /* HK_VSOCK_BUF_ALLOC bytes, allocated when needed */
	uint32_t buf_head, buf_len;

	uint8_t pre[HK_VSOCK_PREAMBLE_LEN];
	unsigned pre_got;
};

struct vs_listener {
	int fd;
	uint32_t port; /* guest port for a forward */
	char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char link_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

struct vs_dev {
	struct hk_virtio vd;
	struct ratelimit rl;
	uint32_t guest_cid;
	/* Room for "/00000000.00000000" after it in a sockaddr_un. */
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path) - 18];
	int epfd, kick_fd;
	bool in_loop;

	struct vs_listener connect;
	unsigned nfwd;
	struct vs_listener fwd[HK_VSOCK_MAX_FORWARDS];

	struct vs_conn conns[HK_VSOCK_MAX_CONNS];
	unsigned nconn;
	struct vs_conn *hash[VS_HASH];
	struct vs_conn *pend_head, *pend_tail;
	uint32_t next_local_port;

	struct vs_hdr stray[VS_STRAY_MAX]; /* RSTs to send */
	unsigned stray_head, stray_count;

	bool have_rx; /* rxc holds a popped, unused receive chain */
	struct hk_vq_chain rxc, txc;
	struct iovec tmp[HK_VQ_MAX_IOV];
};

static void vs_warn(struct vs_dev *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void vs_warn(struct vs_dev *d, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	logger_printf_limited(d->vd.log, &d->rl, LOG_LEVEL_WARN, "%s: %s",
			      d->vd.name, msg);
}

/* ---------------------------------------------------------------- headers */

static void hdr_decode(struct vs_hdr *h, const uint8_t *b)
{
	h->src_cid = load_le64(b);
	h->dst_cid = load_le64(b + 8);
	h->src_port = load_le32(b + 16);
	h->dst_port = load_le32(b + 20);
	h->len = load_le32(b + 24);
	h->type = load_le16(b + 28);
	h->op = load_le16(b + 30);
	h->flags = load_le32(b + 32);
	h->buf_alloc = load_le32(b + 36);
	h->fwd_cnt = load_le32(b + 40);
}

static void hdr_encode(uint8_t *b, const struct vs_hdr *h)
{
	store_le64(b, h->src_cid);
	store_le64(b + 8, h->dst_cid);
	store_le32(b + 16, h->src_port);
	store_le32(b + 20, h->dst_port);
	store_le32(b + 24, h->len);
	store_le16(b + 28, h->type);
	store_le16(b + 30, h->op);
	store_le32(b + 32, h->flags);
	store_le32(b + 36, h->buf_alloc);
	store_le32(b + 40, h->fwd_cnt);
}

/* A header from the host to the guest for connection c. */
static struct vs_hdr conn_hdr(const struct vs_dev *d, struct vs_conn *c,
			      uint16_t op)
{
	struct vs_hdr h = { .src_cid = HK_VSOCK_HOST_CID,
			    .dst_cid = d->guest_cid,
			    .src_port = c->host_port,
			    .dst_port = c->guest_port,
			    .type = HK_VSOCK_TYPE_STREAM,
			    .op = op,
			    .buf_alloc = HK_VSOCK_BUF_ALLOC,
			    .fwd_cnt = c->fwd_cnt };

	c->fwd_reported = c->fwd_cnt;
	return h;
}

/* ---------------------------------------------------------------- connections */

static unsigned hash_of(uint32_t guest_port, uint32_t host_port)
{
	uint32_t h = guest_port * 2654435761u ^ host_port * 40503u;

	return (h ^ h >> 16) & (VS_HASH - 1);
}

static struct vs_conn *conn_find(struct vs_dev *d, uint32_t guest_port,
				 uint32_t host_port)
{
	struct vs_conn *c = d->hash[hash_of(guest_port, host_port)];

	while (c && (c->guest_port != guest_port || c->host_port != host_port))
		c = c->hnext;
	return c;
}

static void conn_hash(struct vs_dev *d, struct vs_conn *c)
{
	unsigned b = hash_of(c->guest_port, c->host_port);

	c->hnext = d->hash[b];
	d->hash[b] = c;
	c->hashed = true;
}

static void conn_unhash(struct vs_dev *d, struct vs_conn *c)
{
	struct vs_conn **pp = &d->hash[hash_of(c->guest_port, c->host_port)];

	if (!c->hashed)
		return;
	while (*pp && *pp != c)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = c->hnext;
	c->hashed = false;
}

static void pend_del(struct vs_dev *d, struct vs_conn *c)
{
	if (!c->pending)
		return;
	if (c->pprev)
		c->pprev->pnext = c->pnext;
	else
		d->pend_head = c->pnext;
	if (c->pnext)
		c->pnext->pprev = c->pprev;
	else
		d->pend_tail = c->pprev;
	c->pprev = c->pnext = NULL;
	c->pending = false;
}

static void pend_add(struct vs_dev *d, struct vs_conn *c)
{
	if (c->pending)
		return;
	c->pnext = NULL;
	c->pprev = d->pend_tail;
	if (d->pend_tail)
		d->pend_tail->pnext = c;
	else
		d->pend_head = c;
	d->pend_tail = c;
	c->pending = true;
}

/* The guest's free receive space for c. */
static uint32_t peer_credit(const struct vs_conn *c)
{
	uint32_t inflight = c->tx_cnt - c->peer_fwd_cnt;

	return inflight >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - inflight;
}

/* Host bytes may go to the guest now. */
static bool can_send_data(const struct vs_conn *c)
{
	return c->state == VS_ESTABLISHED && c->readable && !c->host_eof &&
	       !(c->guest_shut & HK_VSOCK_SHUT_RCV) && peer_credit(c) > 0;
}

static bool has_work(const struct vs_conn *c)
{
	return c->ctl || can_send_data(c);
}

/* Ask the epoll set for the events c needs now. */
static void conn_poll(struct vs_dev *d, struct vs_conn *c)
{
	struct epoll_event ev = { 0 };
	uint32_t want = 0;
	int op;

	if (c->fd < 0)
		return;
	if (c->state == VS_PREAMBLE)
		want |= EPOLLIN;
	if (c->state == VS_ESTABLISHED && !c->readable && !c->host_eof &&
	    !(c->guest_shut & HK_VSOCK_SHUT_RCV))
		want |= EPOLLIN;
	if (c->buf_len)
		want |= EPOLLOUT;
	if (want == c->events)
		return;
	/* Nothing wanted: out of the set, or a hang-up would be reported
	 * over and over (epoll always reports EPOLLHUP). */
	op = !want ? EPOLL_CTL_DEL : c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
	ev.events = want;
	ev.data.u64 = VS_TAG(VS_K_CONN, c->gen, (uint32_t)(c - d->conns));
	if (epoll_ctl(d->epfd, op, c->fd, &ev) < 0 && op != EPOLL_CTL_DEL) {
		vs_warn(d, "epoll_ctl: %s", strerror(errno));
		return;
	}
	c->events = want;
}

static struct vs_conn *conn_alloc(struct vs_dev *d, int fd)
{
	for (unsigned i = 0; i < HK_VSOCK_MAX_CONNS; i++) {
		struct vs_conn *c = &d->conns[i];
		uint32_t gen = c->gen + 1;

		if (c->state != VS_FREE)
			continue;
		memset(c, 0, sizeof(*c));
		c->gen = gen;
		c->fd = fd;
		d->nconn++;
		return c;
	}
	return NULL;
}

/* Forget c and close its socket (no packet to the guest). */
static void conn_free(struct vs_dev *d, struct vs_conn *c)
{
	if (c->state == VS_FREE)
		return;
	pend_del(d, c);
	conn_unhash(d, c);
	if (c->fd >= 0) {
		if (c->events)
			epoll_ctl(d->epfd, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
	}
	free(c->buf);
	c->buf = NULL;
	c->fd = -1;
	c->state = VS_FREE;
	d->nconn--;
}

/* Queue an RST for the guest about (guest port, host port); dropped when
 * the ring is full (the guest's connection then times out). */
static void stray_rst(struct vs_dev *d, uint32_t guest_port, uint32_t host_port)
{
	struct vs_hdr *h;

	if (d->stray_count == VS_STRAY_MAX) {
		vs_warn(d, "too many resets pending; one dropped");
		return;
	}
	h = &d->stray[(d->stray_head + d->stray_count++) % VS_STRAY_MAX];
	*h = (struct vs_hdr){ .src_cid = HK_VSOCK_HOST_CID,
			      .dst_cid = d->guest_cid,
			      .src_port = host_port,
			      .dst_port = guest_port,
			      .type = HK_VSOCK_TYPE_STREAM,
			      .op = HK_VSOCK_OP_RST };
}

/* Reset c: RST to the guest (unless it never heard of it), socket
 * closed. */
static void conn_reset(struct vs_dev *d, struct vs_conn *c)
{
	if (c->state == VS_CONNECTING || c->state == VS_ESTABLISHED)
		stray_rst(d, c->guest_port, c->host_port);
	conn_free(d, c);
}

/* Both directions are done, or the guest closed: once our buffer is
 * written, say RST and forget c. Returns true if c is gone. */
static bool conn_maybe_finish(struct vs_dev *d, struct vs_conn *c)
{
	bool guest_done = (c->guest_shut & HK_VSOCK_SHUT_SEND) &&
			  ((c->guest_shut & HK_VSOCK_SHUT_RCV) ||
			   (c->host_eof && !(c->ctl & CTL_SHUTDOWN)));

	if (!guest_done || c->buf_len)
		return false;
	conn_reset(d, c);
	return true;
}

static void maybe_credit_update(struct vs_dev *d, struct vs_conn *c)
{
	if (c->fwd_cnt - c->fwd_reported >= HK_VSOCK_BUF_ALLOC / 4) {
		c->ctl |= CTL_CREDIT;
		pend_add(d, c);
	}
}

/* Write buffered guest bytes to the host socket. Returns false if c was
 * reset. */
static bool conn_flush(struct vs_dev *d, struct vs_conn *c)
{
	while (c->buf_len) {
		uint32_t first = HK_VSOCK_BUF_ALLOC - c->buf_head;
		struct iovec iov[2];
		struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 1 };
		ssize_t n;

		if (first > c->buf_len)
			first = c->buf_len;
		iov[0] = (struct iovec){ c->buf + c->buf_head, first };
		if (first < c->buf_len) {
			iov[1] = (struct iovec){ c->buf, c->buf_len - first };
			msg.msg_iovlen = 2;
		}
		n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			conn_reset(d, c);
			return false;
		}
		c->buf_head = (uint32_t)((c->buf_head + (uint32_t)n) %
					 HK_VSOCK_BUF_ALLOC);
		c->buf_len -= (uint32_t)n;
		c->fwd_cnt += (uint32_t)n;
	}
	if (!c->buf_len) {
		c->buf_head = 0;
		if ((c->guest_shut & HK_VSOCK_SHUT_SEND) && !c->wr_shut) {
			shutdown(c->fd, SHUT_WR);
			c->wr_shut = true;
		}
		if (conn_maybe_finish(d, c))
			return false;
	}
	maybe_credit_update(d, c);
	conn_poll(d, c);
	return true;
}

/* ---------------------------------------------------------------- host side */

/* A host port for a host-initiated connection to guest_port: counting up
 * from HK_VSOCK_LOCAL_PORT_BASE, skipping pairs in use. */
static uint32_t local_port(struct vs_dev *d, uint32_t guest_port)
{
	for (;;) {
		uint32_t p = d->next_local_port++;

		if (d->next_local_port == 0xffffffffu)
			d->next_local_port = HK_VSOCK_LOCAL_PORT_BASE;
		if (!conn_find(d, guest_port, p))
			return p;
	}
}

/* c (a host socket) asks for guest port: send a REQUEST. */
static void conn_request(struct vs_dev *d, struct vs_conn *c,
			 uint32_t guest_port)
{
	c->guest_port = guest_port;
	c->host_port = local_port(d, guest_port);
	c->state = VS_CONNECTING;
	c->ctl |= CTL_REQUEST;
	conn_hash(d, c);
	pend_add(d, c);
	conn_poll(d, c);
}

static int parse_hex8(const uint8_t *p, uint32_t *out)
{
	uint32_t v = 0;

	for (unsigned i = 0; i < 8; i++) {
		uint8_t ch = p[i];
		unsigned x;

		if (ch >= '0' && ch <= '9')
			x = ch - '0';
		else if (ch >= 'a' && ch <= 'f')
			x = ch - 'a' + 10;
		else if (ch >= 'A' && ch <= 'F')
			x = ch - 'A' + 10;
		else
			return -EINVAL;
		v = v << 4 | x;
	}
	*out = v;
	return 0;
}

/* Read what there is of the "%08x.%08x\n" preamble; on the whole of it,
 * ask the guest. */
static void conn_preamble(struct vs_dev *d, struct vs_conn *c)
{
	uint32_t cid, port;
	ssize_t n;

	n = recv(c->fd, c->pre + c->pre_got, HK_VSOCK_PREAMBLE_LEN - c->pre_got,
		 MSG_DONTWAIT);
	if (n < 0 &&
	    (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		conn_free(d, c);
		return;
	}
	c->pre_got += (unsigned)n;
	if (c->pre_got < HK_VSOCK_PREAMBLE_LEN)
		return;
	if (c->pre[8] != '.' || c->pre[17] != '\n' ||
	    parse_hex8(c->pre, &cid) < 0 || parse_hex8(c->pre + 9, &port) < 0 ||
	    cid != d->guest_cid) {
		vs_warn(d, "%s/connect: bad request (want \"%08x.PORT\\n\")",
			d->dir, d->guest_cid);
		conn_free(d, c);
		return;
	}
	conn_request(d, c, port);
}

static void accept_some(struct vs_dev *d, struct vs_listener *l, bool forward)
{
	for (unsigned i = 0; i < VS_ACCEPT_BUDGET; i++) {
		int fd = accept4(l->fd, NULL, NULL,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct vs_conn *c;

		if (fd < 0)
			return;
		c = conn_alloc(d, fd);
		if (!c) {
			vs_warn(d, "%u connections: refusing another",
				HK_VSOCK_MAX_CONNS);
			close(fd);
			continue;
		}
		if (forward) {
			conn_request(d, c, l->port);
		} else {
			c->state = VS_PREAMBLE;
			conn_poll(d, c);
		}
	}
}

/* The guest asks for host port hdr->dst_port: connect to
 * DIR/00000002.PORT. */
static void guest_connect(struct vs_dev *d, const struct vs_hdr *h)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct vs_conn *c;
	int fd;

	if (d->nconn >= HK_VSOCK_MAX_CONNS) {
		vs_warn(d, "%u connections: refusing another",
			HK_VSOCK_MAX_CONNS);
		goto out_rst;
	}
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/%08x.%08x", d->dir,
		 HK_VSOCK_HOST_CID, h->dst_port);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto out_rst;
	/* A Unix connect does not wait for the peer: it succeeds, or fails
	 * at once (no listener, or its backlog is full). */
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		close(fd);
		goto out_rst;
	}
	c = conn_alloc(d, fd);
	if (!c) { /* counted above; cannot happen */
		close(fd);
		goto out_rst;
	}
	c->state = VS_ESTABLISHED;
	c->guest_port = h->src_port;
	c->host_port = h->dst_port;
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	c->ctl |= CTL_RESPONSE;
	conn_hash(d, c);
	pend_add(d, c);
	conn_poll(d, c);
	return;

out_rst:
	stray_rst(d, h->src_port, h->dst_port);
}

/* ---------------------------------------------------------------- guest packets */

/* The guest's RW payload (len bytes after the header in the readable part
 * of chain ch) for c. */
static void guest_data(struct vs_dev *d, struct vs_conn *c,
		       const struct hk_vq_chain *ch, uint32_t len)
{
	uint32_t off = HK_VSOCK_HDR_LEN, done = 0;

	if (c->guest_shut & HK_VSOCK_SHUT_SEND ||
	    c->rx_cnt - c->fwd_cnt + (uint64_t)len > HK_VSOCK_BUF_ALLOC) {
		vs_warn(d,
			"port %u: data beyond credit or after shutdown; "
			"resetting",
			c->guest_port);
		conn_reset(d, c);
		return;
	}
	c->rx_cnt += len;
	if (!c->buf_len && len) {
		int n = hk_iov_slice(ch->iov, ch->n_out, off, len, d->tmp,
				     HK_VQ_MAX_IOV);
		struct msghdr msg = { .msg_iov = d->tmp };
		ssize_t s;

		if (n < 0) { /* checked against out_len; cannot happen */
			conn_reset(d, c);
			return;
		}
		msg.msg_iovlen = (size_t)n;
		do
			s = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		while (s < 0 && errno == EINTR);
		if (s < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			conn_reset(d, c);
			return;
		}
		if (s > 0) {
			done = (uint32_t)s;
			c->fwd_cnt += done;
		}
	}
	if (done < len) {
		uint32_t rest = len - done, tail;

		if (!c->buf) {
			c->buf = malloc(HK_VSOCK_BUF_ALLOC);
			if (!c->buf) {
				vs_warn(d, "port %u: out of memory",
					c->guest_port);
				conn_reset(d, c);
				return;
			}
		}
		tail = (c->buf_head + c->buf_len) % HK_VSOCK_BUF_ALLOC;
		while (rest) {
			uint32_t chunk = HK_VSOCK_BUF_ALLOC - tail;
			size_t got;

			if (chunk > rest)
				chunk = rest;
			got = hk_iov_to_buf(ch->iov, ch->n_out, off + done,
					    c->buf + tail, chunk);
			if (got != chunk) { /* cannot happen either */
				conn_reset(d, c);
				return;
			}
			done += chunk;
			rest -= chunk;
			c->buf_len += chunk;
			tail = (tail + chunk) % HK_VSOCK_BUF_ALLOC;
		}
	}
	maybe_credit_update(d, c);
	conn_poll(d, c);
}

static void guest_shutdown(struct vs_dev *d, struct vs_conn *c, uint32_t flags)
{
	flags &= HK_VSOCK_SHUT_RCV | HK_VSOCK_SHUT_SEND;
	c->guest_shut |= flags;
	if (flags & HK_VSOCK_SHUT_RCV)
		shutdown(c->fd, SHUT_RD);
	if (!c->buf_len && (c->guest_shut & HK_VSOCK_SHUT_SEND) &&
	    !c->wr_shut) {
		shutdown(c->fd, SHUT_WR);
		c->wr_shut = true;
	}
	if (conn_maybe_finish(d, c))
		return;
	conn_poll(d, c);
}

/* One packet from the transmit queue. */
static void guest_packet(struct vs_dev *d, const struct hk_vq_chain *ch)
{
	uint8_t b[HK_VSOCK_HDR_LEN];
	struct vs_hdr h;
	struct vs_conn *c;

	if (hk_iov_to_buf(ch->iov, ch->n_out, 0, b, sizeof(b)) < sizeof(b)) {
		vs_warn(d, "packet shorter than its header (%llu bytes)",
			(unsigned long long)ch->out_len);
		return;
	}
	hdr_decode(&h, b);
	if (h.src_cid != d->guest_cid || h.dst_cid != HK_VSOCK_HOST_CID) {
		vs_warn(d, "packet from cid %llu to cid %llu dropped",
			(unsigned long long)h.src_cid,
			(unsigned long long)h.dst_cid);
		return;
	}
	c = conn_find(d, h.src_port, h.dst_port);
	if (h.type != HK_VSOCK_TYPE_STREAM || h.len > VS_MAX_PAYLOAD ||
	    h.len > ch->out_len - HK_VSOCK_HDR_LEN ||
	    (h.op != HK_VSOCK_OP_RW && h.len)) {
		vs_warn(d, "bad packet (type %u, op %u, len %u of %llu)",
			h.type, h.op, h.len,
			(unsigned long long)ch->out_len - HK_VSOCK_HDR_LEN);
		goto out_reset;
	}
	if (h.op == HK_VSOCK_OP_RST) {
		if (c)
			conn_free(d, c);
		return;
	}
	if (h.op == HK_VSOCK_OP_REQUEST) {
		if (c)
			goto out_reset; /* the pair is in use */
		guest_connect(d, &h);
		return;
	}
	if (!c)
		goto out_reset;
	if (h.op < HK_VSOCK_OP_REQUEST || h.op > HK_VSOCK_OP_CREDIT_REQUEST ||
	    (h.op == HK_VSOCK_OP_RESPONSE) != (c->state == VS_CONNECTING))
		goto out_reset;
	c->peer_buf_alloc = h.buf_alloc;
	c->peer_fwd_cnt = h.fwd_cnt;
	switch (h.op) {
	case HK_VSOCK_OP_RESPONSE:
		c->state = VS_ESTABLISHED;
		/* Answered (even before it was delivered, by a guest that
		 * guessed the port): the REQUEST is no longer owed. */
		c->ctl &= ~CTL_REQUEST;
		/* The host client may have written already. */
		c->readable = true;
		break;
	case HK_VSOCK_OP_SHUTDOWN:
		guest_shutdown(d, c, h.flags);
		return;
	case HK_VSOCK_OP_RW:
		guest_data(d, c, ch, h.len);
		return;
	case HK_VSOCK_OP_CREDIT_REQUEST:
		c->ctl |= CTL_CREDIT;
		break;
	default: /* CREDIT_UPDATE: the fields above are the news */
		break;
	}
	if (has_work(c))
		pend_add(d, c);
	conn_poll(d, c);
	return;

out_reset:
	if (h.op == HK_VSOCK_OP_RST)
		return;
	if (c)
		conn_reset(d, c);
	else
		stray_rst(d, h.src_port, h.dst_port);
}

/* ---------------------------------------------------------------- to the guest */

/* Write header h (and account for the packet) into the receive chain;
 * returns the used length. */
static uint32_t rx_put(struct vs_dev *d, const struct vs_hdr *h)
{
	uint8_t b[HK_VSOCK_HDR_LEN];
	const struct hk_vq_chain *ch = &d->rxc;

	hdr_encode(b, h);
	hk_iov_from_buf(ch->iov + ch->n_out, ch->n_in, 0, b, sizeof(b));
	return HK_VSOCK_HDR_LEN + h->len;
}

/* Fill the receive chain with the next packet c owes the guest. Returns
 * the used length, or 0 if c had nothing to send after all. c may be
 * gone afterwards (after an RST). */
static uint32_t conn_emit(struct vs_dev *d, struct vs_conn *c)
{
	const struct hk_vq_chain *ch = &d->rxc;
	struct vs_hdr h;

	if (c->ctl & CTL_REQUEST) {
		c->ctl &= ~CTL_REQUEST;
		h = conn_hdr(d, c, HK_VSOCK_OP_REQUEST);
		return rx_put(d, &h);
	}
	if (c->ctl & CTL_RESPONSE) {
		c->ctl &= ~CTL_RESPONSE;
		h = conn_hdr(d, c, HK_VSOCK_OP_RESPONSE);
		return rx_put(d, &h);
	}
	if (can_send_data(c)) {
		uint32_t want = peer_credit(c);
		uint64_t room = ch->in_len - HK_VSOCK_HDR_LEN;
		struct msghdr msg = { .msg_iov = d->tmp };
		ssize_t n;
		int k;

		if (want > room)
			want = (uint32_t)room;
		if (want > VS_MAX_PAYLOAD)
			want = VS_MAX_PAYLOAD;
		k = hk_iov_slice(ch->iov + ch->n_out, ch->n_in,
				 HK_VSOCK_HDR_LEN, want, d->tmp, HK_VQ_MAX_IOV);
		if (k < 0) {
			conn_reset(d, c);
			return 0;
		}
		msg.msg_iovlen = (size_t)k;
		do
			n = recvmsg(c->fd, &msg, MSG_DONTWAIT);
		while (n < 0 && errno == EINTR);
		if (n > 0) {
			h = conn_hdr(d, c, HK_VSOCK_OP_RW);
			h.len = (uint32_t)n;
			c->tx_cnt += (uint32_t)n;
			c->ctl &= ~CTL_CREDIT; /* the header carries it */
			return rx_put(d, &h);
		}
		c->readable = false;
		if (n == 0) {
			c->host_eof = true;
			c->ctl |= CTL_SHUTDOWN;
		} else if (errno != EAGAIN && errno != EWOULDBLOCK) {
			conn_reset(d, c);
			return 0;
		}
		conn_poll(d, c);
	}
	if (c->ctl & CTL_SHUTDOWN) {
		c->ctl &= ~CTL_SHUTDOWN;
		h = conn_hdr(d, c, HK_VSOCK_OP_SHUTDOWN);
		h.flags = HK_VSOCK_SHUT_SEND;
		return rx_put(d, &h);
	}
	if (c->ctl & CTL_CREDIT) {
		c->ctl &= ~CTL_CREDIT;
		h = conn_hdr(d, c, HK_VSOCK_OP_CREDIT_UPDATE);
		return rx_put(d, &h);
	}
	return 0;
}

static bool rx_work(const struct vs_dev *d)
{
	return d->stray_count || d->pend_head;
}

/* Give the guest what is owed while it has receive buffers (lock held). */
static void rx_pump(struct vs_dev *d)
{
	struct hk_virtio *vd = &d->vd;
	struct hk_vq *vq = &vd->vq[VS_RXQ];

	if (!(vd->status & HK_VIRTIO_S_DRIVER_OK) || !vq->enabled)
		return;
	for (;;) {
		bool pushed = false, starved = false;

		while (rx_work(d)) {
			uint32_t used;

			if (!d->have_rx) {
				int r = hk_vq_pop(vq, &d->rxc);

				if (r <= 0) {
					starved = true;
					break;
				}
				/* Room for a header and some payload: Linux
				 * posts 4 KiB after the header. */
				if (d->rxc.in_len <= HK_VSOCK_HDR_LEN) {
					vs_warn(d,
						"receive buffer of %llu "
						"bytes",
						(unsigned long long)
							d->rxc.in_len);
					hk_vq_push(vq, d->rxc.head, 0);
					pushed = true;
					continue;
				}
				d->have_rx = true;
			}
			if (d->stray_count) {
				used = rx_put(d, &d->stray[d->stray_head]);
				d->stray_head =
					(d->stray_head + 1) % VS_STRAY_MAX;
				d->stray_count--;
			} else {
				struct vs_conn *c = d->pend_head;

				pend_del(d, c);
				used = conn_emit(d, c);
				if (c->state != VS_FREE && has_work(c))
					pend_add(d, c);
				if (c->state != VS_FREE &&
				    !(c->ctl & CTL_SHUTDOWN))
					(void)conn_maybe_finish(d, c);
			}
			if (used) {
				hk_vq_push(vq, d->rxc.head, used);
				d->have_rx = false;
				pushed = true;
			}
		}
		if (!pushed && !starved)
			break;
		if (!hk_virtio_queue_done(vd, VS_RXQ) || !rx_work(d))
			break;
	}
}

/* Serve the transmit queue; returns false if the budget ran out. */
static bool tx_serve(struct vs_dev *d)
{
	struct hk_virtio *vd = &d->vd;
	struct hk_vq *vq = &vd->vq[VS_TXQ];
	unsigned budget = VS_TX_BUDGET;

	if (!(vd->status & HK_VIRTIO_S_DRIVER_OK) || !vq->enabled)
		return true;
	for (;;) {
		while (budget && hk_vq_pop(vq, &d->txc) > 0) {
			budget--;
			guest_packet(d, &d->txc);
			hk_vq_push(vq, d->txc.head, 0);
		}
		if (!budget) {
			hk_virtio_queue_done(vd, VS_TXQ);
			return false;
		}
		if (!hk_virtio_queue_done(vd, VS_TXQ))
			return true;
	}
}

static void kick(struct vs_dev *d)
{
	uint64_t one = 1;

	if (write(d->kick_fd, &one, sizeof(one)) < 0) {
		/* The counter is already non-zero: the loop wakes anyway. */
	}
}

/* ---------------------------------------------------------------- the loop */

static void conn_event(struct vs_dev *d, struct vs_conn *c, uint32_t events)
{
	if (c->state == VS_PREAMBLE) {
		conn_preamble(d, c);
		return;
	}
	if (c->buf_len && (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) &&
	    !conn_flush(d, c))
		return;
	if (c->state == VS_ESTABLISHED &&
	    (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !c->host_eof) {
		c->readable = true;
		if (has_work(c))
			pend_add(d, c);
	}
	conn_poll(d, c);
}

static void vs_events(struct vs_dev *d, int timeout_ms)
{
	struct epoll_event evs[VS_EVENTS];
	int n = epoll_wait(d->epfd, evs, VS_EVENTS, timeout_ms);

	for (int i = 0; i < n; i++) {
		uint64_t tag = evs[i].data.u64;
		unsigned kind = (unsigned)(tag >> 56);
		uint32_t idx = (uint32_t)tag;

		if (kind == VS_K_KICK) {
			uint64_t v;

			if (read(d->kick_fd, &v, sizeof(v)) < 0) {
				/* Not signalled: nothing to drain. */
			}
			if (!tx_serve(d))
				kick(d);
		} else if (kind == VS_K_CONNECT) {
			accept_some(d, &d->connect, false);
		} else if (kind == VS_K_FORWARD && idx < d->nfwd) {
			accept_some(d, &d->fwd[idx], true);
		} else if (kind == VS_K_CONN && idx < HK_VSOCK_MAX_CONNS) {
			struct vs_conn *c = &d->conns[idx];

			/* A connection freed (and maybe reused) since the
			 * wait began is not the one the event is for. */
			if (c->state != VS_FREE &&
			    (c->gen & 0xffffffu) ==
				    (uint32_t)(tag >> 32 & 0xffffffu))
				conn_event(d, c, evs[i].events);
		}
	}
	rx_pump(d);
}

static void vs_loop_cb(void *opaque, uint32_t events)
{
	struct vs_dev *d = opaque;

	(void)events;
	pthread_mutex_lock(&d->vd.lock);
	vs_events(d, 0);
	pthread_mutex_unlock(&d->vd.lock);
}

void hk_vsock_poll(struct hk_virtio *vd, int timeout_ms)
{
	struct vs_dev *d = vd->opaque;

	pthread_mutex_lock(&vd->lock);
	vs_events(d, timeout_ms);
	pthread_mutex_unlock(&vd->lock);
}

/* ---------------------------------------------------------------- device ops */

static void vs_notify(struct hk_virtio *vd, unsigned q)
{
	struct vs_dev *d = vd->opaque;

	if (q == VS_TXQ && !tx_serve(d))
		kick(d);
	/* New receive buffers, or packets that need answers. The event
	 * queue's buffers are kept: this device sends no events. */
	rx_pump(d);
}

static void vs_driver_ok(struct hk_virtio *vd)
{
	/* Buffers posted before DRIVER_OK were not announced: look on the
	 * event thread. */
	kick(vd->opaque);
}

/* The driver reset the device (a vCPU thread, lock held): every
 * connection goes; the listeners stay. */
static void vs_reset(struct hk_virtio *vd)
{
	struct vs_dev *d = vd->opaque;

	for (unsigned i = 0; i < HK_VSOCK_MAX_CONNS; i++)
		conn_free(d, &d->conns[i]);
	d->stray_head = d->stray_count = 0;
	d->have_rx = false;
}

static void listener_close(struct vs_listener *l)
{
	if (l->fd < 0)
		return;
	close(l->fd);
	l->fd = -1;
	if (l->link_path[0])
		unlink(l->link_path);
	unlink(l->sock_path);
}

/* Everything but the memory: sockets, files, the loop entry. */
static void vs_teardown(struct vs_dev *d)
{
	if (d->in_loop)
		hk_loop_del(d->vd.pci.vm, d->epfd);
	d->in_loop = false;
	for (unsigned i = 0; i < HK_VSOCK_MAX_CONNS; i++)
		conn_free(d, &d->conns[i]);
	listener_close(&d->connect);
	for (unsigned i = 0; i < d->nfwd; i++)
		listener_close(&d->fwd[i]);
	if (d->kick_fd >= 0)
		close(d->kick_fd);
	if (d->epfd >= 0)
		close(d->epfd);
	d->kick_fd = d->epfd = -1;
}

static void vs_release(struct hk_virtio *vd)
{
	struct vs_dev *d = vd->opaque;

	vs_teardown(d);
	pthread_mutex_destroy(&vd->lock);
	free(d);
}

static const struct hk_virtio_ops vs_ops = {
	.queue_notify = vs_notify,
	.reset = vs_reset,
	.driver_ok = vs_driver_ok,
};

/* ---------------------------------------------------------------- setup */

/* Remove a stale socket or symlink at path; anything else is in the
 * way. */
static int clear_stale(const char *path, const struct logger *lg)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if ((S_ISSOCK(st.st_mode) || S_ISLNK(st.st_mode)) && unlink(path) == 0)
		return 0;
	logger_printf(lg, LOG_LEVEL_ERR,
		      "virtio-sock: %s exists and is not a stale socket", path);
	return -EEXIST;
}

static int listen_at(struct vs_dev *d, struct vs_listener *l, uint64_t tag,
		     const struct logger *lg)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = tag };
	int r;

	r = clear_stale(l->sock_path, lg);
	if (r < 0)
		return r;
	memcpy(sun.sun_path, l->sock_path, sizeof(sun.sun_path));
	l->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (l->fd < 0)
		return -errno;
	if (bind(l->fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		r = -errno;
		close(l->fd);
		l->fd = -1;
		logger_printf(lg, LOG_LEVEL_ERR, "virtio-sock: bind %s: %s",
			      l->sock_path, strerror(-r));
		return r;
	}
	if (listen(l->fd, 64) < 0 ||
	    epoll_ctl(d->epfd, EPOLL_CTL_ADD, l->fd, &ev) < 0)
		return -errno; /* listener_close removes it */
	return 0;
}

static int parse_u32(const char *s, size_t len, uint32_t *out)
{
	char num[16], *end;
	unsigned long long v;
	int base = 10;
	size_t skip = 0;

	if (len == 0 || len >= sizeof(num))
		return -EINVAL;
	memcpy(num, s, len);
	num[len] = '\0';
	if (len > 2 && num[0] == '0' && (num[1] == 'x' || num[1] == 'X')) {
		base = 16;
		skip = 2;
	}
	/* strtoull would take signs and blanks too. */
	for (size_t i = skip; i < len; i++)
		if (!(num[i] >= '0' && num[i] <= '9') &&
		    !(base == 16 && ((num[i] >= 'a' && num[i] <= 'f') ||
				     (num[i] >= 'A' && num[i] <= 'F'))))
			return -EINVAL;
	errno = 0;
	v = strtoull(num, &end, base);
	if (errno || *end || v > 0xffffffffull)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

#define VS_USAGE "guest_cid=N,path=DIR[,guest_forwards=P1;P2;...]"

static int parse_forwards(struct vs_dev *d, const char *s, size_t len,
			  const struct logger *lg)
{
	const char *end = s + len;

	while (s < end) {
		const char *semi = memchr(s, ';', (size_t)(end - s));
		size_t n = semi ? (size_t)(semi - s) : (size_t)(end - s);
		uint32_t port;

		if (parse_u32(s, n, &port) < 0 || port == 0xffffffffu) {
			logger_printf(lg, LOG_LEVEL_ERR,
				      "virtio-sock: bad port '%.*s' in "
				      "guest_forwards",
				      (int)n, s);
			return -EINVAL;
		}
		for (unsigned i = 0; i < d->nfwd; i++) {
			if (d->fwd[i].port == port) {
				logger_printf(lg, LOG_LEVEL_ERR,
					      "virtio-sock: port %u twice in "
					      "guest_forwards",
					      port);
				return -EINVAL;
			}
		}
		if (d->nfwd == HK_VSOCK_MAX_FORWARDS) {
			logger_printf(lg, LOG_LEVEL_ERR,
				      "virtio-sock: at most %u guest_forwards",
				      HK_VSOCK_MAX_FORWARDS);
			return -EINVAL;
		}
		d->fwd[d->nfwd++].port = port;
		s += n + (semi ? 1 : 0);
	}
	return 0;
}

static int parse_conf(struct vs_dev *d, const char *conf,
		      const struct logger *lg)
{
	const char *p = conf;
	bool have_cid = false;

	while (p && *p) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);

		if (len > 10 && strncmp(p, "guest_cid=", 10) == 0) {
			if (parse_u32(p + 10, len - 10, &d->guest_cid) < 0 ||
			    d->guest_cid < 3 || d->guest_cid == 0xffffffffu) {
				logger_printf(lg, LOG_LEVEL_ERR,
					      "virtio-sock: guest_cid must be "
					      "3 .. 4294967294, not '%.*s'",
					      (int)(len - 10), p + 10);
				return -EINVAL;
			}
			have_cid = true;
		} else if (len > 5 && strncmp(p, "path=", 5) == 0) {
			if (len - 5 >= sizeof(d->dir)) {
				logger_printf(lg, LOG_LEVEL_ERR,
					      "virtio-sock: path too long for "
					      "a Unix socket name (at most %zu "
					      "bytes)",
					      sizeof(d->dir) - 1);
				return -ENAMETOOLONG;
			}
			memcpy(d->dir, p + 5, len - 5);
			d->dir[len - 5] = '\0';
		} else if (len >= 15 &&
			   strncmp(p, "guest_forwards=", 15) == 0) {
			int r = parse_forwards(d, p + 15, len - 15, lg);

			if (r < 0)
				return r;
		} else {
			logger_printf(lg, LOG_LEVEL_ERR,
				      "virtio-sock: unknown option '%.*s' "
				      "(expected " VS_USAGE ")",
				      (int)len, p);
			return -EINVAL;
		}
		p = comma ? comma + 1 : NULL;
	}
	if (!have_cid || !d->dir[0]) {
		logger_printf(lg, LOG_LEVEL_ERR,
			      "virtio-sock: %s missing (expected " VS_USAGE ")",
			      !have_cid ? "guest_cid" : "path");
		return -EINVAL;
	}
	return 0;
}

/* The connect socket, the forwards and their symlinks. */
static int open_listeners(struct vs_dev *d, const struct logger *lg)
{
	int r;

	snprintf(d->connect.sock_path, sizeof(d->connect.sock_path),
		 "%s/connect", d->dir);
	r = listen_at(d, &d->connect, VS_TAG(VS_K_CONNECT, 0, 0), lg);
	if (r < 0)
		return r;
	for (unsigned i = 0; i < d->nfwd; i++) {
		struct vs_listener *l = &d->fwd[i];
		char target[24];

		snprintf(l->sock_path, sizeof(l->sock_path), "%s/%08x.%08x",
			 d->dir, d->guest_cid, l->port);
		r = listen_at(d, l, VS_TAG(VS_K_FORWARD, 0, i), lg);
		if (r < 0)
			return r;
		snprintf(target, sizeof(target), "%08x.%08x", d->guest_cid,
			 l->port);
		snprintf(l->link_path, sizeof(l->link_path), "%s/guest.%08x",
			 d->dir, l->port);
		r = clear_stale(l->link_path, lg);
		if (r == 0 && symlink(target, l->link_path) < 0)
			r = -errno;
		if (r < 0) {
			logger_printf(lg, LOG_LEVEL_ERR,
				      "virtio-sock: symlink %s: %s",
				      l->link_path, strerror(-r));
			l->link_path[0] = '\0';
			return r;
		}
	}
	return 0;
}

int hk_virtio_sock_create(struct hk_vm *vm, unsigned slot, unsigned func,
			  const char *conf)
{
	struct logger *lg = hk_vm_log(vm);
	struct vs_dev *d;
	char name[16];
	int r;

	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->epfd = d->kick_fd = d->connect.fd = -1;
	for (unsigned i = 0; i < HK_VSOCK_MAX_FORWARDS; i++)
		d->fwd[i].fd = -1;
	for (unsigned i = 0; i < HK_VSOCK_MAX_CONNS; i++)
		d->conns[i].fd = -1;
	d->rl = (struct ratelimit)RATELIMIT_DEFAULT;
	d->next_local_port = HK_VSOCK_LOCAL_PORT_BASE;
	r = parse_conf(d, conf, lg);
	if (r < 0)
		goto out_free;
	snprintf(name, sizeof(name), "vsock%u.%u", slot, func);
	r = hk_virtio_init(&d->vd, vm, slot, func, HK_VIRTIO_ID_VSOCK, name,
			   VS_NQ, VS_QUEUE_SIZE, 0, 8, &vs_ops, d);
	if (r < 0)
		goto out_free;
	store_le64(d->vd.config, d->guest_cid);
	d->epfd = epoll_create1(EPOLL_CLOEXEC);
	d->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (d->epfd < 0 || d->kick_fd < 0) {
		r = -errno;
		goto out_teardown;
	}
	{
		struct epoll_event ev = { .events = EPOLLIN,
					  .data.u64 = VS_TAG(VS_K_KICK, 0, 0) };

		if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->kick_fd, &ev) < 0) {
			r = -errno;
			goto out_teardown;
		}
	}
	r = open_listeners(d, lg);
	if (r < 0)
		goto out_teardown;
	r = hk_loop_add(vm, d->epfd, EPOLLIN, vs_loop_cb, d);
	if (r < 0)
		goto out_teardown;
	d->in_loop = true;
	r = hk_virtio_attach(&d->vd, vs_release);
	if (r < 0)
		goto out_teardown;
	return 0;

out_teardown:
	vs_teardown(d);
	pthread_mutex_destroy(&d->vd.lock);
out_free:
	logger_printf(lg, LOG_LEVEL_ERR, "virtio-sock at %u:%u: %s", slot, func,
		      strerror(-r));
	free(d);
	return r;
}
