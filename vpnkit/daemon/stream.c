// SPDX-License-Identifier: MIT
/*
 * The Unix stream transport: one listening socket where hyperkit's
 * virtio-vpnkit device and QEMU's -netdev stream both connect, each
 * connection becoming a port of the switch.
 *
 * Theory of operation. A connection starts in DETECT and its first byte
 * decides its framing: 'V' is the start of hyperkit's "VMN3T" init, a
 * zero byte the high byte of a QEMU (passt) big-endian length, which is
 * never above 65535. Anything else is garbage and the peer is dropped.
 *
 * hyperkit's handshake (vpnkit/vmnet.h) runs through VMN_INIT (read the
 * client's 49 bytes, answer with ours) and VMN_CMD (read the 41-byte
 * command, attach the port, answer with the 258-byte VIF or disconnect).
 * The port is created before the VIF can be written (the VIF carries the
 * port's MAC), and creating a port may already send frames to it (a
 * router advertisement): so the 258 bytes are reserved in the output
 * buffer first and filled in afterwards, and nothing is flushed until
 * the handshake is complete. A refused command gets its disconnect
 * reply and the connection enters CLOSING: input is ignored, and the
 * socket closes once the reply is written.
 *
 * In FRAMES, reads of up to the free space of a 256 KiB buffer go
 * through framing_parse, which delivers the frames in place; a partial
 * frame is moved to the front for the next read. Frames to the VM are
 * appended to a 512 KiB output buffer by send() and written by flush()
 * with one write(); when the buffer is full, send() says -EAGAIN, the
 * socket is watched for EPOLLOUT, and once it has drained the port is
 * resumed.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon.h"
#include "vpnkit/vmnet.h"

#define STREAM_IN_SIZE (256u * 1024)
#define STREAM_OUT_SIZE (512u * 1024)
#define STREAM_READS_PER_WAKEUP 4
#define STREAM_ACCEPTS_PER_WAKEUP 16
#define STREAM_SOCKBUF (4 << 20)

_Static_assert(STREAM_IN_SIZE > 4 + FRAME_MAX, "a whole frame fits");

enum stream_state {
	ST_DETECT,
	ST_VMN_INIT,
	ST_VMN_CMD,
	ST_FRAMES,
	ST_CLOSING,
};

struct stream_conn;

struct stream_listener {
	struct daemon *d;
	int fd;
	char *path;
	unsigned next_id;
	struct stream_conn *conns;
	struct stream_listener *next;
};

struct stream_conn {
	struct stream_listener *l;
	struct daemon *d;
	int fd;
	unsigned id;
	enum stream_state state;
	struct framing fr;
	struct vpnkit_port *port;
	uint8_t *in;
	size_t in_len;
	struct outbuf out;
	uint32_t events; /* what the loop watches */
	bool want_resume; /* send said -EAGAIN: resume once drained */
	bool broken; /* a write failed: tear down at the next event */
	struct stream_conn *next, *prev;
};

static void conn_watch_out(struct stream_conn *c, bool on)
{
	uint32_t ev = on ? EPOLLIN | EPOLLOUT : EPOLLIN;

	if (ev == c->events)
		return;
	c->events = ev;
	vpnkit_watch_mod(c->d->vk, c->fd, ev);
}

static void conn_destroy(struct stream_conn *c)
{
	struct daemon *d = c->d;

	if (c->port) {
		logger_printf(&d->log, LOG_LEVEL_DEBUG,
			      "stream %u: VM %s detached", c->id,
			      vpnkit_port_uuid(c->port));
		vpnkit_port_free(c->port);
	}
	vpnkit_unwatch(d->vk, c->fd);
	close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		c->l->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	d->frames_dropped += c->fr.dropped;
	outbuf_release(&c->out);
	free(c->in);
	free(c);
	d->n_conns--;
}

/* The peer broke the protocol: count, log, disconnect. */
static void conn_bad(struct stream_conn *c, const char *why)
{
	c->d->peers_bad++;
	daemon_peer_log(c->d, LOG_LEVEL_WARN, "stream %u: %s: disconnected",
			c->id, why);
	conn_destroy(c);
}

/* Write what is queued unless the handshake is still being built or the
 * socket is known to be full. */
static void conn_flush(struct stream_conn *c)
{
	int r;

	if (c->broken || c->state == ST_VMN_CMD || outbuf_len(&c->out) == 0 ||
	    (c->events & EPOLLOUT))
		return;
	r = outbuf_flush(&c->out, c->fd);
	if (r == -EAGAIN) {
		conn_watch_out(c, true);
	} else if (r < 0) {
		/* EPOLLOUT reports the error at once and we tear down. */
		c->broken = true;
		conn_watch_out(c, true);
	}
}

/* Stop reading, write what is queued, then close. Returns -1 if the
 * connection is already gone. */
static int conn_close_soon(struct stream_conn *c)
{
	c->state = ST_CLOSING;
	c->in_len = 0;
	conn_flush(c);
	if (c->broken || outbuf_len(&c->out) == 0) {
		conn_destroy(c);
		return -1;
	}
	return 0;
}

/* ---------------------------------------------------------------- port ops */

static int conn_send(void *opaque, const struct vpnkit_offload *off,
		     const struct iovec *iov, int iovcnt)
{
	struct stream_conn *c = opaque;
	uint8_t hdr[4];
	size_t len = 0, hlen;
	int r;

	(void)off; /* ports here are made without VPNKIT_PORT_OFFLOAD */
	if (c->broken || c->state == ST_CLOSING)
		return -EPIPE;
	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	if (len < FRAME_MIN || len > c->fr.max_len) {
		c->d->frames_dropped++;
		return 0;
	}
	hlen = framing_hdr_put(c->fr.kind, hdr, len);
	if (outbuf_append(&c->out, hdr, hlen, iov, iovcnt))
		return 0;
	if (!(c->events & EPOLLOUT) && c->state == ST_FRAMES) {
		r = outbuf_flush(&c->out, c->fd);
		if (r < 0 && r != -EAGAIN) {
			c->broken = true;
			conn_watch_out(c, true);
			return r;
		}
		if (outbuf_append(&c->out, hdr, hlen, iov, iovcnt)) {
			if (r == -EAGAIN)
				conn_watch_out(c, true);
			return 0;
		}
	}
	c->want_resume = true;
	conn_watch_out(c, true);
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

static void conn_set_framing(struct stream_conn *c, enum framing_kind kind)
{
	unsigned mtu_frame = c->d->mtu + FRAME_MIN;

	c->fr.kind = kind;
	c->fr.max_len = kind == FRAMING_LE16 ?
				vpnkit_vmnet_max_packet_size(c->d->mtu) :
				FRAME_MAX;
	c->fr.max_frame = mtu_frame < c->fr.max_len ? mtu_frame : c->fr.max_len;
}

/* ---------------------------------------------------------------- handshake */

static int conn_vmn_init(struct stream_conn *c, const uint8_t *msg)
{
	struct vpnkit_vmnet_init init;
	uint8_t reply[VPNKIT_VMNET_INIT_SIZE];
	int r;

	r = vpnkit_vmnet_init_decode(msg, VPNKIT_VMNET_INIT_SIZE, &init);
	if (r < 0 && r != -EPROTONOSUPPORT) {
		conn_bad(c, "bad VMN3T init message");
		return -1;
	}
	vpnkit_vmnet_init_encode(reply, VPNKIT_VMNET_VERSION, NULL);
	outbuf_append(&c->out, reply, sizeof(reply), NULL, 0);
	if (r == -EPROTONOSUPPORT) {
		daemon_peer_log(c->d, LOG_LEVEL_WARN,
				"stream %u: VMN3T version %u, not %u: closing",
				c->id, init.version, VPNKIT_VMNET_VERSION);
		return conn_close_soon(c);
	}
	logger_printf(&c->d->log, LOG_LEVEL_DEBUG,
		      "stream %u: hyperkit protocol, peer commit %s", c->id,
		      init.commit);
	conn_flush(c);
	if (c->broken) {
		conn_destroy(c);
		return -1;
	}
	c->state = ST_VMN_CMD;
	return 0;
}

/*
 * A VM that reconnects (hyperkit retries every 100 ms) may be quicker
 * than our noticing that its old connection closed: the loop may hand us
 * the new connection's command before the old one's end of file. If
 * another connection holds this UUID and its peer has hung up, drop it
 * now (with whatever frames it left unread: that VM is gone) so the UUID
 * is free. Returns true if it did.
 */
static bool stream_reap_uuid(struct daemon *d, const char *uuid,
			     const struct stream_conn *self)
{
	struct stream_listener *l;
	struct stream_conn *c;
	struct pollfd pfd;

	if (!uuid[0])
		return false;
	for (l = d->streams; l; l = l->next) {
		for (c = l->conns; c; c = c->next) {
			if (c == self || !c->port ||
			    strcmp(vpnkit_port_uuid(c->port), uuid) != 0)
				continue;
			pfd.fd = c->fd;
			pfd.events = POLLRDHUP;
			pfd.revents = 0;
			if (poll(&pfd, 1, 0) <= 0 ||
			    !(pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)))
				return false;
			logger_printf(
				&d->log, LOG_LEVEL_DEBUG,
				"stream %u: peer hung up; its UUID reconnects",
				c->id);
			conn_destroy(c);
			return true;
		}
	}
	return false;
}

static const char *attach_error(int err)
{
	switch (err) {
	case -ERANGE:
		return "Preferred IP address out of range.";
	case -EADDRINUSE:
		return "Preferred IP address is taken, or the UUID is assigned to a different IP.";
	case -EBUSY:
		return "UUID is already in use by a connected VM.";
	case -ENOSPC:
		return "No free IP address left.";
	case -EINVAL:
		return "Invalid UUID or address.";
	default:
		return strerror(-err);
	}
}

/* Answer the command with a disconnect, then close. */
static int conn_refuse(struct stream_conn *c, const char *reason)
{
	uint8_t reply[VPNKIT_VMNET_RESPONSE_SIZE];

	vpnkit_vmnet_disconnect_encode(reply, reason);
	outbuf_append(&c->out, reply, sizeof(reply), NULL, 0);
	return conn_close_soon(c);
}

static int conn_vmn_command(struct stream_conn *c, const uint8_t *msg)
{
	static const uint8_t reserved[VPNKIT_VMNET_RESPONSE_SIZE];
	struct vpnkit_vmnet_command cmd;
	struct vpnkit_port_config pc = { 0 };
	uint8_t mac[6];
	size_t rel;
	int r;

	r = vpnkit_vmnet_command_decode(msg, VPNKIT_VMNET_COMMAND_SIZE, &cmd);
	if (r < 0) {
		c->d->peers_bad++;
		daemon_peer_log(c->d, LOG_LEVEL_WARN,
				"stream %u: bad VMN3T command (%s)", c->id,
				strerror(-r));
		return conn_refuse(c, "Malformed command.");
	}
	if (cmd.type == VPNKIT_VMNET_BIND_IPV4) {
		logger_printf(&c->d->log, LOG_LEVEL_DEBUG,
			      "stream %u: legacy bind command refused", c->id);
		return conn_refuse(c, "Bind_ipv4 is not supported.");
	}
	/* Reserve the response: port creation may queue frames behind it. */
	rel = outbuf_len(&c->out);
	outbuf_append(&c->out, reserved, sizeof(reserved), NULL, 0);
	pc.uuid = cmd.uuid;
	pc.preferred_ip = cmd.ip;
	conn_set_framing(c, FRAMING_LE16);
	r = vpnkit_port_new(c->d->vk, &pc, &conn_ops, c, &c->port);
	if (r == -EBUSY && stream_reap_uuid(c->d, cmd.uuid, c))
		r = vpnkit_port_new(c->d->vk, &pc, &conn_ops, c, &c->port);
	if (r < 0) {
		c->port = NULL;
		vpnkit_vmnet_disconnect_encode(c->out.buf + c->out.head + rel,
					       attach_error(r));
		daemon_peer_log(c->d, LOG_LEVEL_WARN,
				"stream %u: VM %s refused: %s", c->id,
				cmd.uuid[0] ? cmd.uuid : "(no uuid)",
				attach_error(r));
		return conn_close_soon(c);
	}
	vpnkit_port_mac(c->port, mac);
	vpnkit_vmnet_vif_encode(c->out.buf + c->out.head + rel, c->d->mtu,
				(uint16_t)c->fr.max_len, mac);
	logger_printf(&c->d->log, LOG_LEVEL_INFO,
		      "stream %u: VM %s attached (hyperkit protocol)", c->id,
		      vpnkit_port_uuid(c->port));
	c->state = ST_FRAMES;
	conn_flush(c);
	if (c->broken) {
		conn_destroy(c);
		return -1;
	}
	return 0;
}

/* A QEMU stream peer: no handshake, a port right away. */
static int conn_attach_qemu(struct stream_conn *c)
{
	struct vpnkit_port_config pc = { 0 };
	int r;

	conn_set_framing(c, FRAMING_BE32);
	c->state = ST_FRAMES;
	r = vpnkit_port_new(c->d->vk, &pc, &conn_ops, c, &c->port);
	if (r < 0) {
		c->port = NULL;
		daemon_peer_log(c->d, LOG_LEVEL_WARN,
				"stream %u: cannot attach a VM: %s", c->id,
				attach_error(r));
		conn_destroy(c);
		return -1;
	}
	logger_printf(&c->d->log, LOG_LEVEL_INFO,
		      "stream %u: VM %s attached (QEMU stream framing)", c->id,
		      vpnkit_port_uuid(c->port));
	return 0;
}

static int conn_deliver(void *opaque, const uint8_t *frame, size_t len)
{
	struct stream_conn *c = opaque;
	int r = vpnkit_port_input(c->port, NULL, frame, len);

	return r < 0 ? r : 0;
}

/*
 * Consume what is in the input buffer as far as the state machine can
 * go; keep the rest at the front. Returns -1 if the connection is gone.
 */
static int conn_process(struct stream_conn *c)
{
	size_t pos = 0;
	ssize_t n;

	for (;;) {
		size_t avail = c->in_len - pos;

		switch (c->state) {
		case ST_DETECT:
			if (avail == 0)
				goto done;
			if (c->in[pos] == 'V') {
				c->state = ST_VMN_INIT;
			} else if (c->in[pos] == 0) {
				if (conn_attach_qemu(c) < 0)
					return -1;
			} else {
				conn_bad(c, "unknown framing");
				return -1;
			}
			continue;
		case ST_VMN_INIT:
			if (avail < VPNKIT_VMNET_INIT_SIZE)
				goto done;
			if (conn_vmn_init(c, c->in + pos) < 0)
				return -1;
			pos += VPNKIT_VMNET_INIT_SIZE;
			continue;
		case ST_VMN_CMD:
			if (avail < VPNKIT_VMNET_COMMAND_SIZE)
				goto done;
			if (conn_vmn_command(c, c->in + pos) < 0)
				return -1;
			pos += VPNKIT_VMNET_COMMAND_SIZE;
			continue;
		case ST_FRAMES:
			n = framing_parse(&c->fr, c->in + pos, avail,
					  conn_deliver, c);
			if (n == -EPROTO) {
				conn_bad(c,
					 c->fr.kind == FRAMING_LE16 ?
						 "bad frame length (u16 LE)" :
						 "bad frame length (u32 BE)");
				return -1;
			}
			if (n < 0) {
				conn_destroy(c); /* the port broke */
				return -1;
			}
			pos += (size_t)n;
			goto done;
		case ST_CLOSING:
			pos = c->in_len;
			goto done;
		}
	}
done:
	if (pos > 0) {
		memmove(c->in, c->in + pos, c->in_len - pos);
		c->in_len -= pos;
	}
	return 0;
}

/* Read and process; -1 if the connection is gone. */
static int conn_read(struct stream_conn *c)
{
	for (int i = 0; i < STREAM_READS_PER_WAKEUP; i++) {
		size_t space = STREAM_IN_SIZE - c->in_len;
		ssize_t n = read(c->fd, c->in + c->in_len, space);

		if (n == 0) {
			logger_printf(&c->d->log, LOG_LEVEL_DEBUG,
				      "stream %u: peer closed", c->id);
			conn_destroy(c);
			return -1;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			logger_printf(&c->d->log, LOG_LEVEL_DEBUG,
				      "stream %u: read: %s", c->id,
				      strerror(errno));
			conn_destroy(c);
			return -1;
		}
		c->in_len += (size_t)n;
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
		conn_destroy(c);
		return;
	}
	if (events & EPOLLOUT) {
		r = outbuf_flush(&c->out, c->fd);
		if (r < 0 && r != -EAGAIN) {
			conn_destroy(c);
			return;
		}
		if (r == 0) {
			if (c->state == ST_CLOSING) {
				conn_destroy(c);
				return;
			}
			conn_watch_out(c, false);
			if (c->want_resume) {
				c->want_resume = false;
				vpnkit_port_resume(c->port);
				if (c->broken) {
					conn_destroy(c);
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

/* ---------------------------------------------------------------- listener */

static void stream_accept_one(struct stream_listener *l, int fd)
{
	struct daemon *d = l->d;
	struct stream_conn *c;
	int size = STREAM_SOCKBUF;

	if (d->n_conns >= d->max_conns) {
		daemon_peer_log(d, LOG_LEVEL_WARN,
				"stream: %u connections already: refused",
				d->n_conns);
		close(fd);
		return;
	}
	/* Bigger socket buffers mean fewer wakeups per megabyte; the
	 * forced variant needs CAP_NET_ADMIN, the plain one is capped. */
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)))
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
	c = calloc(1, sizeof(*c));
	if (!c)
		goto fail;
	c->in = malloc(STREAM_IN_SIZE);
	if (!c->in || outbuf_init(&c->out, STREAM_OUT_SIZE) < 0)
		goto fail_free;
	c->l = l;
	c->d = d;
	c->fd = fd;
	c->id = l->next_id++;
	c->state = ST_DETECT;
	c->events = EPOLLIN;
	if (vpnkit_watch(d->vk, fd, c->events, conn_event, c) < 0)
		goto fail_free;
	c->next = l->conns;
	if (l->conns)
		l->conns->prev = c;
	l->conns = c;
	d->n_conns++;
	logger_printf(&d->log, LOG_LEVEL_DEBUG, "stream %u: connected", c->id);
	return;
fail_free:
	outbuf_release(&c->out);
	free(c->in);
	free(c);
fail:
	logger_printf(&d->log, LOG_LEVEL_ERR,
		      "stream: no memory for a connection");
	close(fd);
}

static void stream_listener_event(void *opaque, uint32_t events)
{
	struct stream_listener *l = opaque;

	(void)events;
	for (int i = 0; i < STREAM_ACCEPTS_PER_WAKEUP; i++) {
		int fd = accept4(l->fd, NULL, NULL,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != EINTR && errno != ECONNABORTED)
				daemon_peer_log(l->d, LOG_LEVEL_WARN,
						"stream: accept: %s",
						strerror(errno));
			return;
		}
		stream_accept_one(l, fd);
	}
}

int stream_listen(struct daemon *d, const char *path)
{
	struct stream_listener *l;
	int fd, r;

	fd = daemon_unix_listen(path, SOCK_STREAM);
	if (fd < 0)
		return fd;
	l = calloc(1, sizeof(*l));
	if (!l || !(l->path = strdup(path))) {
		free(l);
		r = -ENOMEM;
		goto fail;
	}
	l->d = d;
	l->fd = fd;
	r = vpnkit_watch(d->vk, fd, EPOLLIN, stream_listener_event, l);
	if (r < 0) {
		free(l->path);
		free(l);
		goto fail;
	}
	l->next = d->streams;
	d->streams = l;
	logger_printf(&d->log, LOG_LEVEL_INFO,
		      "listening on %s (hyperkit protocol or QEMU stream)",
		      path);
	return 0;
fail:
	close(fd);
	unlink(path);
	return r;
}

void stream_close_all(struct daemon *d)
{
	struct stream_listener *l;

	while ((l = d->streams)) {
		d->streams = l->next;
		for (struct stream_conn *c = l->conns, *next; c; c = next) {
			next = c->next;
			conn_destroy(c);
		}
		vpnkit_unwatch(d->vk, l->fd);
		close(l->fd);
		unlink(l->path);
		free(l->path);
		free(l);
	}
}
