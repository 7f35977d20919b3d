// SPDX-License-Identifier: MIT
/*
 * The Unix stream transport: one listening socket where hyperkit's
 * virtio-vpnkit device and QEMU's -netdev stream both connect, each
 * connection becoming a port of the switch. What the bytes mean is
 * session.c's business; this file moves them between the socket and the
 * session, and keeps the peer in step with the loop.
 *
 * Theory of operation. Reads of up to the free space of the session's
 * 256 KiB input buffer go to session_process, a few per wakeup. Frames
 * to the VM are appended to the session's 512 KiB output buffer by
 * send() and written by flush() with one write(); when the buffer is
 * full, send() says -EAGAIN, the socket is watched for EPOLLOUT, and
 * once it has drained the port is resumed. Nothing is written while the
 * session holds its output (a VMN3T response is being built). A refused
 * peer is closed once its reply is written.
 *
 * Deadlines keep peers that never attach from holding the connection
 * slots. A peer that has begun hyperkit's handshake must finish it within
 * --handshake-timeout seconds of its first byte (hyperkit sends it all at
 * once), and a refused peer must take its reply as quickly; otherwise it
 * is closed, whether it dribbles bytes (a slow loris) or stops. A peer
 * that has sent nothing at all may be QEMU waiting for its guest's first
 * frame, which can take minutes: it is left alone, but once it has been
 * silent for as long as the timeout it gives up its slot when all of
 * them are taken and another peer connects (the one silent for longest
 * goes). One timer per listener is set for the earliest deadline among
 * its connections in the handshake.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "daemon.h"

#define STREAM_READS_PER_WAKEUP 4
#define STREAM_SOCKBUF (4 << 20)

struct stream_listener {
	struct daemon_listener base;
	int timer_fd;
	uint64_t timer_at; /* the deadline the timer is set for; 0: none */
	struct stream_listener *next;
};

struct stream_conn {
	struct daemon_conn c;
	struct session s;
	/* In the handshake: close unless attached by then. Silent: may be
	 * closed to make room from then on. Attached: 0. */
	uint64_t deadline_ns;
	bool want_resume; /* send said -EAGAIN: resume once drained */
	bool broken; /* a write failed: tear down at the next event */
};

static struct stream_conn *conn_of(struct daemon_conn *dc)
{
	return daemon_container_of(dc, struct stream_conn, c);
}

static void conn_destroy(struct daemon_conn *dc)
{
	struct stream_conn *c = conn_of(dc);

	session_release(&c->s);
	daemon_conn_remove(&c->c);
	free(c);
}

/* Write what is queued unless the session holds it or the socket is
 * known to be full. */
static void conn_flush(struct stream_conn *c)
{
	int r;

	if (c->broken || c->s.hold || outbuf_len(&c->s.out) == 0 ||
	    (c->c.events & EPOLLOUT))
		return;
	r = outbuf_flush(&c->s.out, c->c.fd);
	if (r == -EAGAIN) {
		daemon_conn_watch_out(&c->c, true);
	} else if (r < 0) {
		/* EPOLLOUT reports the error at once and we tear down. */
		c->broken = true;
		daemon_conn_watch_out(&c->c, true);
	}
}

/* A refused peer: write its reply, then close. Returns -1 if the
 * connection is already gone. */
static int conn_close_soon(struct stream_conn *c)
{
	conn_flush(c);
	if (c->broken || outbuf_len(&c->s.out) == 0) {
		conn_destroy(&c->c);
		return -1;
	}
	return 0;
}

/* ---------------------------------------------------------------- port ops */

static int conn_send(void *opaque, const struct vpnkit_offload *off,
		     const struct iovec *iov, int iovcnt)
{
	struct stream_conn *c = opaque;
	int r;

	(void)off; /* ports here are made without VPNKIT_PORT_OFFLOAD */
	if (c->broken || c->s.state == SESSION_CLOSING)
		return -EPIPE;
	if (session_queue(&c->s, iov, iovcnt) != -ENOBUFS)
		return 0;
	if (!(c->c.events & EPOLLOUT) && c->s.state == SESSION_FRAMES) {
		r = outbuf_flush(&c->s.out, c->c.fd);
		if (r < 0 && r != -EAGAIN) {
			c->broken = true;
			daemon_conn_watch_out(&c->c, true);
			return r;
		}
		if (session_queue(&c->s, iov, iovcnt) != -ENOBUFS) {
			if (r == -EAGAIN)
				daemon_conn_watch_out(&c->c, true);
			return 0;
		}
	}
	c->want_resume = true;
	daemon_conn_watch_out(&c->c, true);
	return -EAGAIN;
}

static void conn_port_flush(void *opaque)
{
	conn_flush(opaque);
}

static const struct vpnkit_port_ops conn_ops = {
	.send = conn_send,
	.flush = conn_port_flush,
};

/*
 * A VM that reconnects (hyperkit retries every 100 ms) may be quicker
 * than our noticing that its old connection closed: the loop may hand us
 * the new connection's command before the old one's end of file. If
 * another connection holds this UUID and its peer has hung up, drop it
 * now (with whatever frames it left unread: that VM is gone) so the UUID
 * is free. Returns true if it did.
 */
static bool stream_reap_uuid(void *opaque, const char *uuid)
{
	struct stream_conn *self = opaque;
	struct daemon *d = self->c.d;
	struct stream_listener *l;
	struct daemon_conn *dc;
	struct pollfd pfd;

	for (l = d->streams; l; l = l->next) {
		for (dc = l->base.conns; dc; dc = dc->next) {
			struct stream_conn *c = conn_of(dc);

			if (c == self || !c->s.port ||
			    strcmp(vpnkit_port_uuid(c->s.port), uuid) != 0)
				continue;
			pfd.fd = dc->fd;
			pfd.events = POLLRDHUP;
			pfd.revents = 0;
			if (poll(&pfd, 1, 0) <= 0 ||
			    !(pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)))
				return false;
			logger_printf(
				&d->log, LOG_LEVEL_DEBUG,
				"stream %u: peer hung up; its UUID reconnects",
				dc->id);
			conn_destroy(dc);
			return true;
		}
	}
	return false;
}

/* ---------------------------------------------------------------- events */

static void stream_timer_arm(struct stream_listener *l);

static struct stream_listener *listener_of(struct stream_conn *c)
{
	return daemon_container_of(c->c.l, struct stream_listener, base);
}

/* Run the session on what was read and keep the deadline in step with
 * its state; -1 if the connection is gone. */
static int conn_process(struct stream_conn *c)
{
	bool silent = c->s.state == SESSION_DETECT;

	if (session_process(&c->s) < 0) {
		conn_destroy(&c->c);
		return -1;
	}
	if (c->s.state == SESSION_FRAMES) {
		c->deadline_ns = 0;
		return 0;
	}
	if (silent && c->s.state != SESSION_DETECT) {
		/* The handshake's time starts with its first byte. */
		c->deadline_ns =
			daemon_now_ns() +
			(uint64_t)c->c.d->handshake_timeout_s * 1000000000u;
		stream_timer_arm(listener_of(c));
	}
	return c->s.state == SESSION_CLOSING ? conn_close_soon(c) : 0;
}

/* Read and process; -1 if the connection is gone. */
static int conn_read(struct stream_conn *c)
{
	for (int i = 0; i < STREAM_READS_PER_WAKEUP; i++) {
		size_t space = SESSION_IN_SIZE - c->s.in_len;
		ssize_t n = read(c->c.fd, c->s.in + c->s.in_len, space);

		if (n == 0) {
			logger_printf(&c->c.d->log, LOG_LEVEL_DEBUG,
				      "stream %u: peer closed", c->c.id);
			conn_destroy(&c->c);
			return -1;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			logger_printf(&c->c.d->log, LOG_LEVEL_DEBUG,
				      "stream %u: read: %s", c->c.id,
				      strerror(errno));
			conn_destroy(&c->c);
			return -1;
		}
		c->s.in_len += (size_t)n;
		if (conn_process(c) < 0)
			return -1;
		if ((size_t)n < space)
			return 0;
	}
	return 0;
}

static void conn_event(void *opaque, uint32_t events)
{
	struct stream_conn *c = opaque;
	int r;

	if (c->broken) {
		conn_destroy(&c->c);
		return;
	}
	if (events & EPOLLOUT) {
		r = outbuf_flush(&c->s.out, c->c.fd);
		if (r < 0 && r != -EAGAIN) {
			conn_destroy(&c->c);
			return;
		}
		if (r == 0) {
			if (c->s.state == SESSION_CLOSING) {
				conn_destroy(&c->c);
				return;
			}
			daemon_conn_watch_out(&c->c, false);
			if (c->want_resume) {
				c->want_resume = false;
				vpnkit_port_resume(c->s.port);
				if (c->broken) {
					conn_destroy(&c->c);
					return;
				}
			}
		}
	}
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		if (conn_read(c) < 0)
			return;
	}
	conn_flush(c);
}

/* ---------------------------------------------------------------- deadlines */

/* A connection whose deadline closes it: one in the handshake, or
 * refused and not yet taking its reply. */
static bool conn_in_handshake(const struct stream_conn *c)
{
	return c->deadline_ns && c->s.state != SESSION_DETECT;
}

/* The earlier of two deadlines, 0 meaning none. */
static uint64_t earlier(uint64_t a, uint64_t b)
{
	return !a || (b && b < a) ? b : a;
}

/* Set the timer for at (CLOCK_MONOTONIC ns), or stop it (0). */
static void stream_timer_set(struct stream_listener *l, uint64_t at)
{
	struct itimerspec its = { 0 };

	if (at == l->timer_at)
		return;
	its.it_value.tv_sec = (time_t)(at / 1000000000u);
	its.it_value.tv_nsec = (long)(at % 1000000000u);
	if (timerfd_settime(l->timer_fd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
		l->timer_at = at;
}

/* Set the timer for the earliest deadline of the connections in the
 * handshake, or stop it when there are none. */
static void stream_timer_arm(struct stream_listener *l)
{
	uint64_t next = 0;

	for (struct daemon_conn *dc = l->base.conns; dc; dc = dc->next) {
		const struct stream_conn *c = conn_of(dc);

		if (conn_in_handshake(c))
			next = earlier(next, c->deadline_ns);
	}
	stream_timer_set(l, next);
}

static void stream_timer_event(void *opaque, uint32_t events)
{
	struct stream_listener *l = opaque;
	struct daemon *d = l->base.d;
	struct daemon_conn *dc, *next;
	uint64_t ticks, now, soonest = 0;

	(void)events;
	if (read(l->timer_fd, &ticks, sizeof(ticks)) < 0 && errno == EAGAIN)
		return;
	l->timer_at = 0;
	now = daemon_now_ns();
	for (dc = l->base.conns; dc; dc = next) {
		struct stream_conn *c = conn_of(dc);

		next = dc->next;
		if (!conn_in_handshake(c))
			continue;
		if (c->deadline_ns > now) {
			soonest = earlier(soonest, c->deadline_ns);
			continue;
		}
		d->peers_bad++;
		daemon_peer_log(
			d, LOG_LEVEL_WARN,
			"stream %u: handshake not done within %u s: disconnected",
			dc->id, d->handshake_timeout_s);
		conn_destroy(dc);
	}
	stream_timer_set(l, soonest);
}

bool stream_make_room(struct daemon *d)
{
	struct stream_conn *oldest = NULL;
	uint64_t now = daemon_now_ns();

	for (struct stream_listener *l = d->streams; l; l = l->next) {
		for (struct daemon_conn *dc = l->base.conns; dc;
		     dc = dc->next) {
			struct stream_conn *c = conn_of(dc);

			if (c->s.state == SESSION_DETECT &&
			    c->deadline_ns <= now &&
			    (!oldest || c->deadline_ns < oldest->deadline_ns))
				oldest = c;
		}
	}
	if (!oldest)
		return false;
	d->peers_bad++;
	daemon_peer_log(d, LOG_LEVEL_WARN,
			"stream %u: silent for over %u s: closed to make room",
			oldest->c.id, d->handshake_timeout_s);
	conn_destroy(&oldest->c);
	return true;
}

/* ---------------------------------------------------------------- listener */

static void stream_accept(struct daemon_listener *base, int fd)
{
	struct daemon *d = base->d;
	struct stream_conn *c;
	int size = STREAM_SOCKBUF;

	/* Bigger socket buffers mean fewer wakeups per megabyte; the
	 * forced variant needs CAP_NET_ADMIN, the plain one is capped. */
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)))
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
	c = calloc(1, sizeof(*c));
	if (!c)
		goto fail;
	c->s.d = d;
	c->s.ops = &conn_ops;
	c->s.opaque = c;
	c->s.reap_uuid = stream_reap_uuid;
	if (session_init(&c->s) < 0)
		goto fail_free;
	if (daemon_conn_add(base, &c->c, fd, conn_event, c) < 0)
		goto fail_release;
	c->s.id = c->c.id;
	c->deadline_ns = daemon_now_ns() +
			 (uint64_t)d->handshake_timeout_s * 1000000000u;
	logger_printf(&d->log, LOG_LEVEL_DEBUG, "stream %u: connected",
		      c->c.id);
	return;
fail_release:
	session_release(&c->s);
fail_free:
	free(c);
fail:
	logger_printf(&d->log, LOG_LEVEL_ERR,
		      "stream: no memory for a connection");
	close(fd);
}

int stream_listen(struct daemon *d, const char *path)
{
	struct stream_listener *l;
	int r;

	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->base.what = "stream";
	l->base.count = &d->n_conns;
	l->base.max = d->max_conns;
	l->base.accept = stream_accept;
	l->base.destroy = conn_destroy;
	l->base.make_room = stream_make_room;
	l->timer_fd =
		timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (l->timer_fd < 0) {
		r = -errno;
		goto out_free;
	}
	r = vpnkit_watch(d->vk, l->timer_fd, EPOLLIN, stream_timer_event, l);
	if (r < 0)
		goto out_close_timer;
	r = daemon_listener_open(&l->base, d, path, SOCK_STREAM);
	if (r < 0)
		goto out_unwatch_timer;
	l->next = d->streams;
	d->streams = l;
	logger_printf(&d->log, LOG_LEVEL_INFO,
		      "listening on %s (hyperkit protocol or QEMU stream)",
		      path);
	return 0;
out_unwatch_timer:
	vpnkit_unwatch(d->vk, l->timer_fd);
out_close_timer:
	close(l->timer_fd);
out_free:
	free(l);
	return r;
}

void stream_close_all(struct daemon *d)
{
	struct stream_listener *l;

	while ((l = d->streams)) {
		d->streams = l->next;
		daemon_listener_close(&l->base);
		vpnkit_unwatch(d->vk, l->timer_fd);
		close(l->timer_fd);
		free(l);
	}
}
