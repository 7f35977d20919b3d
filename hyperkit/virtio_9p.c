// SPDX-License-Identifier: MIT
/*
 * virtio-9p, hyperkit's way: a relay of whole 9P messages between the
 * guest's request queue and a 9P server on a Unix socket or a loopback
 * TCP port (see virtio_9p.h for the contract).
 *
 * Theory of operation. Each popped chain takes a slot: its head, its tag,
 * and copies of its iovecs (pointers into guest RAM, valid until the chain
 * is pushed back). The T-message is checked (size[4] type[1] tag[2]: a
 * size of at least 7 and no more than the readable part, an even type, a
 * tag not already in flight) and the slot joins the send FIFO. Sending
 * goes straight from guest memory with sendmsg; a short send leaves the
 * FIFO's head half sent and asks for EPOLLOUT. Receiving is a small state
 * machine: first the 7-byte header into our buffer, validated before
 * anything else; then the body straight into the writable part of the
 * request whose tag it names (only a request already wholly sent may be
 * answered), or into a scratch buffer when the reply would not fit, in
 * which case the guest gets an error reply instead. A complete reply is
 * pushed with its size as the used length.
 *
 * Two replies change the relay's state: Rversion tells which dialect to
 * use for our own error replies (Rlerror for 9P2000.L, Rerror otherwise),
 * and Rflush means the request it flushed, if still pending, will get no
 * reply: its chain goes back to the guest with length 0, which Linux's
 * transport takes as "no reply".
 */
#include "virtio_9p.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/endian.h"
#include "virtio_pci.h"

#define P9_IO_BUDGET 64u /* messages received per hk_p9relay_io call */
#define P9_EIO 5u

enum p9_dialect { P9_DIALECT_L, P9_DIALECT_U, P9_DIALECT_PLAIN };

struct p9req {
	bool used;
	bool sent; /* the whole T-message is with the server */
	uint16_t head, tag;
	bool is_flush;
	uint16_t oldtag; /* for a Tflush */
	uint32_t tsize; /* bytes of the T-message */
	uint64_t in_len; /* room for the reply */
	unsigned n_out, n_in;
	struct iovec iov[HK_P9_MAX_IOV];
};

struct hk_p9relay {
	const struct hk_p9relay_ops *ops;
	void *opaque;
	const struct logger *log;
	struct ratelimit rl;
	int fd; /* -1: disconnected */
	bool spoken; /* a message went to this server */
	enum p9_dialect dialect;

	unsigned nslots;
	struct p9req *req;

	/* Send FIFO of slot indices; the head is tx_off bytes sent. */
	unsigned *txq;
	unsigned tx_head, tx_count;
	size_t tx_off;

	/* Receive state: header bytes so far, then the body's target. */
	uint8_t rhdr[HK_P9_HDR];
	unsigned rhdr_got;
	bool in_body;
	int rslot; /* the request answered, -1: none */
	bool rdiscard; /* the body goes to scratch (too big for rslot) */
	uint32_t rsize, rgot; /* reply size; bytes of it received */
	uint8_t scratch[4096];
	struct iovec tmp[HK_P9_MAX_IOV];
};

/* ---------------------------------------------------------------- replies */

/* Answer slot i with an error reply (or length 0 if it does not fit) and
 * free it. */
static void answer_error(struct hk_p9relay *r, unsigned i)
{
	struct p9req *q = &r->req[i];
	const struct iovec *in = q->iov + q->n_out;
	static const char ename[] = "I/O error";
	uint8_t m[HK_P9_HDR + 2 + sizeof(ename) - 1 + 4];
	uint32_t len;

	if (r->dialect == P9_DIALECT_L) {
		len = HK_P9_HDR + 4;
		m[4] = HK_P9_RLERROR;
		store_le32(m + HK_P9_HDR, P9_EIO);
	} else {
		len = HK_P9_HDR + 2 + sizeof(ename) - 1;
		m[4] = HK_P9_RERROR;
		store_le16(m + HK_P9_HDR, sizeof(ename) - 1);
		memcpy(m + HK_P9_HDR + 2, ename, sizeof(ename) - 1);
		if (r->dialect == P9_DIALECT_U) {
			store_le32(m + len, P9_EIO);
			len += 4;
		}
	}
	store_le32(m, len);
	store_le16(m + 5, q->tag);
	if (q->in_len < len)
		len = 0;
	else
		hk_iov_from_buf(in, q->n_in, 0, m, len);
	q->used = false;
	r->ops->done(r->opaque, q->head, len);
}

static int find_tag(const struct hk_p9relay *r, uint16_t tag)
{
	for (unsigned i = 0; i < r->nslots; i++)
		if (r->req[i].used && r->req[i].tag == tag)
			return (int)i;
	return -1;
}

/* Another slot than self waits for tag. */
static bool tag_taken(const struct hk_p9relay *r, uint16_t tag, unsigned self)
{
	for (unsigned i = 0; i < r->nslots; i++)
		if (i != self && r->req[i].used && r->req[i].tag == tag)
			return true;
	return false;
}

/* Rversion: remember the dialect for our own error replies. */
static void saw_rversion(struct hk_p9relay *r, const struct p9req *q)
{
	uint8_t b[HK_P9_HDR + 4 + 2 + 8];
	size_t n = hk_iov_to_buf(q->iov + q->n_out, q->n_in, 0, b, sizeof(b));

	r->dialect = P9_DIALECT_PLAIN;
	if (n < sizeof(b) || load_le16(b + 11) < 8)
		return;
	if (memcmp(b + 13, "9P2000.L", 8) == 0)
		r->dialect = P9_DIALECT_L;
	else if (memcmp(b + 13, "9P2000.u", 8) == 0)
		r->dialect = P9_DIALECT_U;
}

/* The reply to slot i is complete in its writable part. */
static void reply_done(struct hk_p9relay *r, unsigned i, uint8_t type)
{
	struct p9req *q = &r->req[i];

	if (type == HK_P9_RVERSION)
		saw_rversion(r, q);
	if (type == HK_P9_RFLUSH && q->is_flush) {
		int old = find_tag(r, q->oldtag);

		/* The flushed request gets no reply of its own. */
		if (old >= 0 && (unsigned)old != i && r->req[old].sent) {
			r->req[old].used = false;
			r->ops->done(r->opaque, r->req[old].head, 0);
		}
	}
	q->used = false;
	r->ops->done(r->opaque, q->head, r->rsize);
}

/* ---------------------------------------------------------------- setup */

int hk_p9relay_new(struct hk_p9relay **out, unsigned slots,
		   const struct hk_p9relay_ops *ops, void *opaque,
		   const struct logger *log)
{
	struct hk_p9relay *r;

	if (slots == 0 || slots > HK_VQ_MAX_SIZE)
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->req = calloc(slots, sizeof(*r->req));
	r->txq = calloc(slots, sizeof(*r->txq));
	if (!r->req || !r->txq) {
		free(r->req);
		free(r->txq);
		free(r);
		return -ENOMEM;
	}
	r->nslots = slots;
	r->ops = ops;
	r->opaque = opaque;
	r->log = log;
	r->rl = (struct ratelimit)RATELIMIT_DEFAULT;
	r->fd = -1;
	r->rslot = -1;
	*out = r;
	return 0;
}

void hk_p9relay_free(struct hk_p9relay *r)
{
	if (!r)
		return;
	hk_p9relay_disconnect(r, false);
	free(r->req);
	free(r->txq);
	free(r);
}

void hk_p9relay_set_fd(struct hk_p9relay *r, int fd)
{
	r->fd = fd;
	r->spoken = false;
	r->dialect = P9_DIALECT_L;
}

bool hk_p9relay_spoken(const struct hk_p9relay *r)
{
	return r->spoken;
}

int hk_p9relay_fd(const struct hk_p9relay *r)
{
	return r->fd;
}

uint32_t hk_p9relay_events(const struct hk_p9relay *r)
{
	if (r->fd < 0)
		return 0;
	return EPOLLIN | (r->tx_count ? EPOLLOUT : 0);
}

bool hk_p9relay_has_room(const struct hk_p9relay *r)
{
	for (unsigned i = 0; i < r->nslots; i++)
		if (!r->req[i].used)
			return true;
	return false;
}

void hk_p9relay_disconnect(struct hk_p9relay *r, bool answer)
{
	int fd = r->fd;

	r->fd = -1;
	r->tx_head = r->tx_count = 0;
	r->tx_off = 0;
	r->rhdr_got = 0;
	r->in_body = false;
	r->rslot = -1;
	for (unsigned i = 0; i < r->nslots; i++) {
		if (!r->req[i].used)
			continue;
		if (answer)
			answer_error(r, i);
		else
			r->req[i].used = false;
	}
	if (fd >= 0)
		r->ops->closing(r->opaque, fd);
}

/* A fault of the server: log it (rate-limited) and disconnect. */
static void server_fault(struct hk_p9relay *r, const char *why)
{
	logger_printf_limited(r->log, &r->rl, LOG_LEVEL_WARN,
			      "9p server: %s; disconnecting", why);
	hk_p9relay_disconnect(r, true);
}

/* ---------------------------------------------------------------- sending */

static void flush_tx(struct hk_p9relay *r)
{
	while (r->fd >= 0 && r->tx_count) {
		unsigned i = r->txq[r->tx_head];
		struct p9req *q = &r->req[i];
		struct msghdr msg = { 0 };
		int n = hk_iov_slice(q->iov, q->n_out, r->tx_off,
				     q->tsize - r->tx_off, r->tmp,
				     HK_P9_MAX_IOV);
		ssize_t s;

		if (n < 0) { /* checked at submit; cannot happen */
			server_fault(r, "internal: bad request slice");
			return;
		}
		msg.msg_iov = r->tmp;
		msg.msg_iovlen = (size_t)n;
		s = sendmsg(r->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (s < 0 && errno == EINTR)
			continue;
		if (s < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (s < 0) {
			server_fault(r, strerror(errno));
			return;
		}
		r->tx_off += (size_t)s;
		if (r->tx_off < q->tsize)
			continue;
		q->sent = true;
		r->tx_off = 0;
		r->tx_head = (r->tx_head + 1) % r->nslots;
		r->tx_count--;
	}
}

void hk_p9relay_submit(struct hk_p9relay *r, const struct hk_vq_chain *c)
{
	uint8_t h[HK_P9_HDR + 2];
	unsigned i;
	struct p9req *q;
	uint32_t size;
	size_t got;

	for (i = 0; i < r->nslots && r->req[i].used; i++)
		;
	if (i == r->nslots) { /* the caller checks has_room first */
		r->ops->done(r->opaque, c->head, 0);
		return;
	}
	q = &r->req[i];
	memset(q, 0, offsetof(struct p9req, iov));
	q->used = true;
	q->head = c->head;
	q->in_len = c->in_len;
	got = hk_iov_to_buf(c->iov, c->n_out, 0, h, sizeof(h));
	if (got < HK_P9_HDR || c->n_in > HK_P9_MAX_IOV) {
		/* No tag to answer to, or no room to keep the buffers. */
		logger_printf_limited(r->log, &r->rl, LOG_LEVEL_WARN,
				      "9p: request without a header or in "
				      "too many pieces");
		q->used = false;
		r->ops->done(r->opaque, c->head, 0);
		return;
	}
	size = load_le32(h);
	q->tag = load_le16(h + 5);
	q->n_in = c->n_in;
	memcpy(q->iov, c->iov + c->n_out, c->n_in * sizeof(struct iovec));
	q->n_out = 0;
	if (size < HK_P9_HDR || size > c->out_len || (h[4] & 1) ||
	    (h[4] == HK_P9_TFLUSH &&
	     (size < HK_P9_HDR + 2 || got < HK_P9_HDR + 2))) {
		logger_printf_limited(r->log, &r->rl, LOG_LEVEL_WARN,
				      "9p: malformed request (size %u of %llu, "
				      "type %u)",
				      size, (unsigned long long)c->out_len,
				      h[4]);
		answer_error(r, i);
		return;
	}
	if (tag_taken(r, q->tag, i)) {
		logger_printf_limited(r->log, &r->rl, LOG_LEVEL_WARN,
				      "9p: tag %u already in flight", q->tag);
		answer_error(r, i);
		return;
	}
	/* Keep the readable iovecs that hold the message, then the
	 * writable ones. */
	{
		int n = hk_iov_slice(c->iov, c->n_out, 0, size, r->tmp,
				     HK_P9_MAX_IOV);

		if (n < 0 || (unsigned)n + c->n_in > HK_P9_MAX_IOV) {
			logger_printf_limited(r->log, &r->rl, LOG_LEVEL_WARN,
					      "9p: request in too many pieces");
			answer_error(r, i);
			return;
		}
		memmove(q->iov + n, q->iov, c->n_in * sizeof(struct iovec));
		memcpy(q->iov, r->tmp, (unsigned)n * sizeof(struct iovec));
		q->n_out = (unsigned)n;
	}
	q->tsize = size;
	if (h[4] == HK_P9_TFLUSH) {
		q->is_flush = true;
		q->oldtag = load_le16(h + HK_P9_HDR);
	}
	if (r->fd < 0) {
		answer_error(r, i);
		return;
	}
	r->txq[(r->tx_head + r->tx_count) % r->nslots] = i;
	r->tx_count++;
	r->spoken = true;
	flush_tx(r);
}

/* ---------------------------------------------------------------- receiving */

/* The header is in: validate it and pick the body's target. Returns false
 * (after disconnecting) on garbage. */
static bool start_reply(struct hk_p9relay *r)
{
	uint32_t size = load_le32(r->rhdr);
	uint8_t type = r->rhdr[4];
	uint16_t tag = load_le16(r->rhdr + 5);
	int i;
	char why[96];

	if (size < HK_P9_HDR || size > HK_P9_MAX_MSG || !(type & 1)) {
		snprintf(why, sizeof(why),
			 "bad reply header (size %u, type %u)", size, type);
		server_fault(r, why);
		return false;
	}
	i = find_tag(r, tag);
	if (i < 0 || !r->req[i].sent) {
		snprintf(why, sizeof(why), "reply for tag %u nobody waits for",
			 tag);
		server_fault(r, why);
		return false;
	}
	r->rslot = i;
	r->rsize = size;
	r->rgot = HK_P9_HDR;
	r->in_body = true;
	r->rdiscard = size > r->req[i].in_len;
	if (r->rdiscard)
		logger_printf_limited(r->log, &r->rl, LOG_LEVEL_WARN,
				      "9p: reply of %u bytes for a %llu-byte "
				      "buffer",
				      size,
				      (unsigned long long)r->req[i].in_len);
	else
		hk_iov_from_buf(r->req[i].iov + r->req[i].n_out, r->req[i].n_in,
				0, r->rhdr, HK_P9_HDR);
	return true;
}

static void finish_reply(struct hk_p9relay *r)
{
	unsigned i = (unsigned)r->rslot;

	r->in_body = false;
	r->rhdr_got = 0;
	r->rslot = -1;
	if (r->rdiscard)
		answer_error(r, i);
	else
		reply_done(r, i, r->rhdr[4]);
}

/* Receive once: returns 1 if progress was made, 0 on EAGAIN, -1 after a
 * disconnect. */
static int receive_some(struct hk_p9relay *r)
{
	struct msghdr msg = { 0 };
	ssize_t n;

	if (!r->in_body) {
		r->tmp[0].iov_base = r->rhdr + r->rhdr_got;
		r->tmp[0].iov_len = HK_P9_HDR - r->rhdr_got;
		msg.msg_iovlen = 1;
	} else if (r->rdiscard) {
		size_t want = r->rsize - r->rgot;

		r->tmp[0].iov_base = r->scratch;
		r->tmp[0].iov_len =
			want < sizeof(r->scratch) ? want : sizeof(r->scratch);
		msg.msg_iovlen = 1;
	} else {
		const struct p9req *q = &r->req[r->rslot];
		int k = hk_iov_slice(q->iov + q->n_out, q->n_in, r->rgot,
				     r->rsize - r->rgot, r->tmp, HK_P9_MAX_IOV);

		if (k < 0) { /* in_len was checked; cannot happen */
			server_fault(r, "internal: bad reply slice");
			return -1;
		}
		msg.msg_iovlen = (size_t)k;
	}
	msg.msg_iov = r->tmp;
	n = recvmsg(r->fd, &msg, MSG_DONTWAIT);
	if (n < 0 && errno == EINTR)
		return 1;
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return 0;
	if (n <= 0) {
		server_fault(r, n == 0 ? "connection closed" : strerror(errno));
		return -1;
	}
	if (!r->in_body) {
		r->rhdr_got += (unsigned)n;
		if (r->rhdr_got < HK_P9_HDR)
			return 1;
		if (!start_reply(r))
			return -1;
	} else {
		r->rgot += (uint32_t)n;
	}
	if (r->in_body && r->rgot == r->rsize)
		finish_reply(r);
	return 1;
}

void hk_p9relay_io(struct hk_p9relay *r, uint32_t events)
{
	unsigned budget = P9_IO_BUDGET * 4;

	if (r->fd < 0)
		return;
	if (events & EPOLLOUT)
		flush_tx(r);
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	while (r->fd >= 0 && budget--)
		if (receive_some(r) <= 0)
			break;
	/* Replies may have freed the way for queued sends. */
	flush_tx(r);
}

/* ---------------------------------------------------------------- the device */

#define V9P_QUEUE_SIZE 128u

struct v9p_dev {
	struct hk_virtio vd;
	struct hk_p9relay *relay;
	struct ratelimit rl; /* connection failures */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	uint16_t port; /* 0: a Unix socket at path */
	int polled_fd; /* the socket in the event loop, -1: none */
	uint32_t polled_events;
	int dead_fd; /* shut down on a vCPU thread, closed by the loop */
	bool in_reset; /* the driver's reset runs (on a vCPU thread) */
	struct hk_vq_chain chain;
};

static void v9p_io(void *opaque, uint32_t events);

static void v9p_done(void *opaque, uint16_t head, uint32_t len)
{
	struct v9p_dev *d = opaque;

	hk_vq_push(&d->vd.vq[0], head, len);
}

/* The relay let go of fd. On the event thread it leaves the loop and is
 * closed now; during a reset (a vCPU thread, which must not wait for the
 * event thread) it is shut down, and the loop closes it when it wakes. */
static void v9p_closing(void *opaque, int fd)
{
	struct v9p_dev *d = opaque;

	if (fd != d->polled_fd) {
		close(fd);
		return;
	}
	d->polled_fd = -1;
	if (d->in_reset && d->dead_fd < 0) {
		shutdown(fd, SHUT_RDWR);
		d->dead_fd = fd;
		return;
	}
	hk_loop_del(d->vd.pci.vm, fd);
	close(fd);
}

static void reap_dead(struct v9p_dev *d)
{
	if (d->dead_fd < 0)
		return;
	hk_loop_del(d->vd.pci.vm, d->dead_fd);
	close(d->dead_fd);
	d->dead_fd = -1;
}

static const struct hk_p9relay_ops v9p_relay_ops = {
	.done = v9p_done,
	.closing = v9p_closing,
};

static void describe(const struct v9p_dev *d, char *buf, size_t len)
{
	if (d->port)
		snprintf(buf, len, "127.0.0.1:%u", d->port);
	else
		snprintf(buf, len, "%s", d->path);
}

/* Connect to the server and poll it. Returns 0 or -errno (logged with a
 * rate limit). */
static int v9p_connect(struct v9p_dev *d)
{
	struct hk_vm *vm = d->vd.pci.vm;
	char where[128];
	int fd, err, one = 1;

	if (d->port) {
		struct sockaddr_in sin = { .sin_family = AF_INET,
					   .sin_port = htons(d->port) };

		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0)
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
				   sizeof(one));
		if (fd >= 0 &&
		    connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
			goto out_close;
	} else {
		struct sockaddr_un sun = { .sun_family = AF_UNIX };

		memcpy(sun.sun_path, d->path, sizeof(sun.sun_path));
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 &&
		    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
			goto out_close;
	}
	if (fd < 0)
		goto out_log;
	err = hk_loop_add(vm, fd, EPOLLIN, v9p_io, d);
	if (err < 0) {
		errno = -err;
		goto out_close;
	}
	d->polled_fd = fd;
	d->polled_events = EPOLLIN;
	hk_p9relay_set_fd(d->relay, fd);
	return 0;

out_close:
	err = errno;
	close(fd);
	errno = err;
out_log:
	err = -errno;
	describe(d, where, sizeof(where));
	logger_printf_limited(d->vd.log, &d->rl, LOG_LEVEL_WARN,
			      "%s: 9p server %s: %s", d->vd.name, where,
			      strerror(-err));
	return err;
}

/* Ask the loop for the events the relay wants now. */
static void sync_poll(struct v9p_dev *d)
{
	uint32_t ev = hk_p9relay_events(d->relay);

	if (d->polled_fd >= 0 && ev && ev != d->polled_events &&
	    hk_p9relay_fd(d->relay) == d->polled_fd &&
	    hk_loop_mod(d->vd.pci.vm, d->polled_fd, ev) == 0)
		d->polled_events = ev;
}

/* Take requests while there are free slots; interrupt for what was
 * pushed meanwhile (event thread, lock held). */
static void serve(struct v9p_dev *d)
{
	struct hk_virtio *vd = &d->vd;
	struct hk_vq *vq = &vd->vq[0];

	reap_dead(d);
	if (!(vd->status & HK_VIRTIO_S_DRIVER_OK) || !vq->enabled) {
		sync_poll(d);
		return;
	}
	for (;;) {
		while (hk_p9relay_has_room(d->relay) &&
		       hk_vq_pop(vq, &d->chain) > 0) {
			if (hk_p9relay_fd(d->relay) < 0)
				(void)v9p_connect(d);
			hk_p9relay_submit(d->relay, &d->chain);
		}
		sync_poll(d);
		if (!hk_virtio_queue_done(vd, 0) ||
		    !hk_p9relay_has_room(d->relay))
			break;
	}
}

static void v9p_io(void *opaque, uint32_t events)
{
	struct v9p_dev *d = opaque;

	pthread_mutex_lock(&d->vd.lock);
	reap_dead(d);
	hk_p9relay_io(d->relay, events);
	serve(d);
	pthread_mutex_unlock(&d->vd.lock);
}

static void v9p_notify(struct hk_virtio *vd, unsigned q)
{
	(void)q;
	serve(vd->opaque);
}

/* The driver reset the device: its requests are gone; so is the 9P
 * session (the next mount starts with Tversion on a new connection). */
static void v9p_reset(struct hk_virtio *vd)
{
	struct v9p_dev *d = vd->opaque;

	/* Linux resets the device when it probes it: a connection that
	 * carried nothing yet is kept. */
	if (!hk_p9relay_spoken(d->relay))
		return;
	d->in_reset = true;
	hk_p9relay_disconnect(d->relay, false);
	d->in_reset = false;
}

static void v9p_release(struct hk_virtio *vd)
{
	struct v9p_dev *d = vd->opaque;

	hk_p9relay_free(d->relay);
	reap_dead(d);
	pthread_mutex_destroy(&vd->lock);
	free(d);
}

static const struct hk_virtio_ops v9p_ops = {
	.queue_notify = v9p_notify,
	.reset = v9p_reset,
};

/* Parse "path=SOCK,tag=TAG" or "port=N,tag=TAG" into d and tag. */
static int parse_conf(struct v9p_dev *d, const char *conf, char *tag,
		      size_t tag_size, const struct logger *lg)
{
	const char *p = conf;
	bool have_where = false;

	tag[0] = '\0';
	while (p && *p) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);

		if (len > 5 && strncmp(p, "path=", 5) == 0 &&
		    len - 5 < sizeof(d->path)) {
			memcpy(d->path, p + 5, len - 5);
			d->path[len - 5] = '\0';
			d->port = 0;
			have_where = true;
		} else if (len > 5 && strncmp(p, "port=", 5) == 0) {
			char num[8] = { 0 }, *e;
			unsigned long v;

			if (len - 5 >= sizeof(num))
				goto out_bad;
			memcpy(num, p + 5, len - 5);
			v = strtoul(num, &e, 10);
			if (*e || v == 0 || v > 65535)
				goto out_bad;
			d->port = (uint16_t)v;
			have_where = true;
		} else if (len > 4 && strncmp(p, "tag=", 4) == 0 &&
			   len - 4 < tag_size) {
			memcpy(tag, p + 4, len - 4);
			tag[len - 4] = '\0';
		} else {
			goto out_bad;
		}
		p = end ? end + 1 : NULL;
	}
	if (have_where && tag[0])
		return 0;
out_bad:
	logger_printf(lg, LOG_LEVEL_ERR,
		      "virtio-9p,%s: expected path=SOCK,tag=TAG or "
		      "port=N,tag=TAG (tag at most %u bytes)",
		      conf ? conf : "", HK_P9_TAG_MAX);
	return -EINVAL;
}

int hk_virtio_9p_create(struct hk_vm *vm, unsigned slot, unsigned func,
			const char *conf)
{
	struct logger *lg = hk_vm_log(vm);
	char name[16], tag[HK_P9_TAG_MAX + 1];
	struct v9p_dev *d;
	size_t tag_len;
	int r;

	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->polled_fd = d->dead_fd = -1;
	d->rl = (struct ratelimit)RATELIMIT_DEFAULT;
	r = parse_conf(d, conf, tag, sizeof(tag), lg);
	if (r < 0)
		goto out_free;
	tag_len = strlen(tag);
	snprintf(name, sizeof(name), "9p%u.%u", slot, func);
	r = hk_virtio_init(&d->vd, vm, slot, func, HK_VIRTIO_ID_9P, name, 1,
			   V9P_QUEUE_SIZE, 1ull << HK_P9_F_MOUNT_TAG,
			   (unsigned)(2 + tag_len), &v9p_ops, d);
	if (r < 0)
		goto out_free;
	store_le16(d->vd.config, (uint16_t)tag_len);
	memcpy(d->vd.config + 2, tag, tag_len);
	r = hk_p9relay_new(&d->relay, V9P_QUEUE_SIZE, &v9p_relay_ops, d, lg);
	if (r < 0)
		goto out_free;
	r = v9p_connect(d);
	if (r < 0)
		goto out_relay;
	r = hk_virtio_attach(&d->vd, v9p_release);
	if (r < 0)
		goto out_relay;
	return 0;

out_relay:
	hk_p9relay_free(d->relay);
out_free:
	logger_printf(lg, LOG_LEVEL_ERR, "virtio-9p at %u:%u: %s", slot, func,
		      strerror(-r));
	free(d);
	return r;
}
