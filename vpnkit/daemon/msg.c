// SPDX-License-Identifier: MIT
/*
 * Message transports: one Ethernet frame per message, no length prefix.
 *
 * SOCK_DGRAM (vfkit's unixgram link): one socket bound at a path, any
 * number of senders. Each distinct sender address is a VM, a port of its
 * own, and frames for it are sent back to that address. A sender without
 * an address (an unbound socket) cannot be answered and is ignored. Peers
 * have no connection to lose, so a peer whose socket has gone (sendto
 * says ECONNREFUSED or ENOENT) is detached, and when the table is full
 * the peer silent for longest makes room for a new one.
 *
 * An unconnected datagram socket cannot wait for one receiver's queue to
 * drain (EPOLLOUT only covers a connected peer), so when a peer's queue
 * is full the frame is refused with -EAGAIN and a one-shot 1 ms timer
 * resumes the port. The same timer frees dead peers: a port is never
 * freed inside its own send callback.
 *
 * SOCK_SEQPACKET (UML's BESS transport): a listener; each connection is
 * a port, each message a frame, and EPOLLOUT works as usual.
 *
 * A datagram is read with MSG_TRUNC, so a message longer than the buffer
 * is seen for what it is and dropped rather than cut.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon.h"

#define MSG_BUF_SIZE (FRAME_MAX + 1)
#define MSG_PER_WAKEUP 64
#define DGRAM_MAX_PEERS 64
#define DGRAM_RETRY_NS 1000000

struct msg_dgram;
struct msg_listener;

struct dgram_peer {
	struct msg_dgram *s;
	struct sockaddr_un addr;
	socklen_t addr_len;
	struct vpnkit_port *port;
	uint64_t last_rx_ns;
	bool dead; /* its socket is gone: free at the next timer */
	bool want_resume; /* its queue was full */
	struct dgram_peer *next;
};

struct msg_dgram {
	struct daemon *d;
	int fd;
	int timer_fd;
	bool timer_armed;
	char *path;
	uint8_t *buf;
	struct dgram_peer *peers;
	unsigned n_peers;
	struct msg_dgram *next;
};

struct seq_conn {
	struct daemon_conn c;
	struct msg_listener *l;
	struct vpnkit_port *port;
	bool want_resume;
	bool broken;
};

struct msg_listener {
	struct daemon_listener base;
	uint8_t *buf; /* one message, shared by the connections */
	struct msg_listener *next;
};

static size_t iov_total(const struct iovec *iov, int iovcnt)
{
	size_t len = 0;

	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	return len;
}

/* A frame's size is fine for a message link: an Ethernet header, and
 * within the MTU. */
static bool frame_len_ok(const struct daemon *d, size_t len)
{
	return len >= FRAME_MIN && len <= d->mtu + FRAME_MIN &&
	       len <= FRAME_MAX;
}

/*
 * One frame as one message on fd, to addr unless that is NULL. Returns 0
 * once it is sent, or dropped for a size the link may not carry
 * (counted); -EAGAIN if the socket is full, or another -errno.
 */
static int msg_send(struct daemon *d, int fd, const struct sockaddr_un *addr,
		    socklen_t addr_len, const struct iovec *iov, int iovcnt)
{
	struct msghdr mh = {
		.msg_name = (void *)addr,
		.msg_namelen = addr_len,
		.msg_iov = (struct iovec *)iov,
		.msg_iovlen = (size_t)iovcnt,
	};
	ssize_t n;

	if (!frame_len_ok(d, iov_total(iov, iovcnt))) {
		d->frames_dropped++;
		return 0;
	}
	do {
		n = sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : 0;
}

/* ---------------------------------------------------------------- dgram */

static void dgram_arm_timer(struct msg_dgram *s)
{
	struct itimerspec its = { .it_value.tv_nsec = DGRAM_RETRY_NS };

	if (s->timer_armed)
		return;
	if (timerfd_settime(s->timer_fd, 0, &its, NULL) == 0)
		s->timer_armed = true;
}

static void dgram_peer_free(struct msg_dgram *s, struct dgram_peer *p)
{
	struct dgram_peer **pp;

	for (pp = &s->peers; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	}
	logger_printf(&s->d->log, LOG_LEVEL_DEBUG, "dgram %s: VM %s detached",
		      s->path, vpnkit_port_uuid(p->port));
	vpnkit_port_free(p->port);
	free(p);
	s->n_peers--;
}

static int dgram_send(void *opaque, const struct vpnkit_offload *off,
		      const struct iovec *iov, int iovcnt)
{
	struct dgram_peer *p = opaque;
	int r;

	(void)off;
	if (p->dead)
		return -ENOTCONN;
	r = msg_send(p->s->d, p->s->fd, &p->addr, p->addr_len, iov, iovcnt);
	switch (r) {
	case 0:
		return 0;
	case -EAGAIN:
		p->want_resume = true;
		dgram_arm_timer(p->s);
		return -EAGAIN;
	case -ECONNREFUSED:
	case -ENOENT:
	case -ENOTCONN:
		p->dead = true;
		dgram_arm_timer(p->s);
		return r;
	default:
		/* EMSGSIZE and the like: this frame only. */
		p->s->d->frames_dropped++;
		return 0;
	}
}

static const struct vpnkit_port_ops dgram_ops = {
	.send = dgram_send,
};

static void dgram_timer_event(void *opaque, uint32_t events)
{
	struct msg_dgram *s = opaque;
	struct dgram_peer *p, *next;
	uint64_t ticks;

	(void)events;
	if (read(s->timer_fd, &ticks, sizeof(ticks)) < 0 && errno == EAGAIN)
		return;
	s->timer_armed = false;
	for (p = s->peers; p; p = next) {
		next = p->next;
		if (p->dead) {
			dgram_peer_free(s, p);
		} else if (p->want_resume) {
			p->want_resume = false;
			vpnkit_port_resume(p->port);
		}
	}
}

static struct dgram_peer *dgram_peer_find(struct msg_dgram *s,
					  const struct sockaddr_un *addr,
					  socklen_t len)
{
	struct dgram_peer *p;

	for (p = s->peers; p; p = p->next) {
		if (p->addr_len == len && memcmp(&p->addr, addr, len) == 0)
			return p;
	}
	return NULL;
}

static struct dgram_peer *dgram_peer_new(struct msg_dgram *s,
					 const struct sockaddr_un *addr,
					 socklen_t len)
{
	struct daemon *d = s->d;
	struct vpnkit_port_config pc = { 0 };
	struct dgram_peer *p, *oldest = NULL;
	int r;

	if (s->n_peers >= DGRAM_MAX_PEERS) {
		for (p = s->peers; p; p = p->next) {
			if (!oldest || p->last_rx_ns < oldest->last_rx_ns)
				oldest = p;
		}
		daemon_peer_log(d, LOG_LEVEL_WARN,
				"dgram %s: %u peers: dropping the quietest",
				s->path, s->n_peers);
		if (oldest)
			dgram_peer_free(s, oldest);
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->s = s;
	memcpy(&p->addr, addr, len);
	p->addr_len = len;
	r = vpnkit_port_new(d->vk, &pc, &dgram_ops, p, &p->port);
	if (r < 0) {
		daemon_peer_log(d, LOG_LEVEL_WARN,
				"dgram %s: cannot attach a VM: %s", s->path,
				strerror(-r));
		free(p);
		return NULL;
	}
	p->next = s->peers;
	s->peers = p;
	s->n_peers++;
	logger_printf(&d->log, LOG_LEVEL_INFO, "dgram %s: VM %s attached",
		      s->path, vpnkit_port_uuid(p->port));
	return p;
}

static void dgram_event(void *opaque, uint32_t events)
{
	struct msg_dgram *s = opaque;
	struct daemon *d = s->d;

	(void)events;
	for (int i = 0; i < MSG_PER_WAKEUP; i++) {
		struct sockaddr_un addr;
		socklen_t alen = sizeof(addr);
		struct dgram_peer *p;
		ssize_t n;

		n = recvfrom(s->fd, s->buf, MSG_BUF_SIZE,
			     MSG_DONTWAIT | MSG_TRUNC, (struct sockaddr *)&addr,
			     &alen);
		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != EINTR)
				daemon_peer_log(d, LOG_LEVEL_WARN,
						"dgram %s: recv: %s", s->path,
						strerror(errno));
			return;
		}
		if (alen <= offsetof(struct sockaddr_un, sun_path) ||
		    alen > sizeof(addr)) {
			d->frames_dropped++;
			daemon_peer_log(
				d, LOG_LEVEL_WARN,
				"dgram %s: a datagram from an unbound socket cannot be answered: dropped",
				s->path);
			continue;
		}
		if (!frame_len_ok(d, (size_t)n)) {
			d->frames_dropped++;
			continue;
		}
		p = dgram_peer_find(s, &addr, alen);
		if (!p)
			p = dgram_peer_new(s, &addr, alen);
		if (!p || p->dead)
			continue;
		p->last_rx_ns = daemon_now_ns();
		vpnkit_port_input(p->port, NULL, s->buf, (size_t)n);
	}
}

int msg_dgram_open(struct daemon *d, const char *path)
{
	struct msg_dgram *s;
	int r;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->d = d;
	s->timer_fd = -1;
	s->path = strdup(path);
	s->buf = malloc(MSG_BUF_SIZE);
	if (!s->path || !s->buf) {
		r = -ENOMEM;
		goto fail_free;
	}
	s->fd = daemon_unix_listen(path, SOCK_DGRAM);
	if (s->fd < 0) {
		r = s->fd;
		goto fail_free;
	}
	s->timer_fd =
		timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (s->timer_fd < 0) {
		r = -errno;
		goto fail_close;
	}
	r = vpnkit_watch(d->vk, s->fd, EPOLLIN, dgram_event, s);
	if (r < 0)
		goto fail_close;
	r = vpnkit_watch(d->vk, s->timer_fd, EPOLLIN, dgram_timer_event, s);
	if (r < 0) {
		vpnkit_unwatch(d->vk, s->fd);
		goto fail_close;
	}
	s->next = d->dgrams;
	d->dgrams = s;
	logger_printf(&d->log, LOG_LEVEL_INFO,
		      "listening on %s (datagrams, one frame each)", path);
	return 0;
fail_close:
	if (s->timer_fd >= 0)
		close(s->timer_fd);
	close(s->fd);
	unlink(path);
fail_free:
	free(s->buf);
	free(s->path);
	free(s);
	return r;
}

/* ---------------------------------------------------------------- seqpacket */

static struct seq_conn *seq_of(struct daemon_conn *dc)
{
	return daemon_container_of(dc, struct seq_conn, c);
}

static void seq_destroy(struct daemon_conn *dc)
{
	struct seq_conn *c = seq_of(dc);

	logger_printf(&dc->d->log, LOG_LEVEL_DEBUG,
		      "seqpacket %u: VM %s detached", dc->id,
		      vpnkit_port_uuid(c->port));
	vpnkit_port_free(c->port);
	daemon_conn_remove(dc);
	free(c);
}

static int seq_send(void *opaque, const struct vpnkit_offload *off,
		    const struct iovec *iov, int iovcnt)
{
	struct seq_conn *c = opaque;
	int r;

	(void)off;
	if (c->broken)
		return -EPIPE;
	r = msg_send(c->c.d, c->c.fd, NULL, 0, iov, iovcnt);
	if (r == -EAGAIN) {
		c->want_resume = true;
		daemon_conn_watch_out(&c->c, true);
	} else if (r < 0) {
		/* EPOLLOUT reports the error and the event handler tears
		 * down. */
		c->broken = true;
		daemon_conn_watch_out(&c->c, true);
	}
	return r;
}

static const struct vpnkit_port_ops seq_ops = {
	.send = seq_send,
};

static void seq_event(void *opaque, uint32_t events)
{
	struct seq_conn *c = opaque;
	struct daemon *d = c->c.d;

	if (c->broken) {
		seq_destroy(&c->c);
		return;
	}
	if (events & EPOLLOUT) {
		daemon_conn_watch_out(&c->c, false);
		if (c->want_resume) {
			c->want_resume = false;
			vpnkit_port_resume(c->port);
			if (c->broken) {
				seq_destroy(&c->c);
				return;
			}
		}
	}
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	for (int i = 0; i < MSG_PER_WAKEUP; i++) {
		ssize_t n = recv(c->c.fd, c->l->buf, MSG_BUF_SIZE,
				 MSG_DONTWAIT | MSG_TRUNC);

		if (n == 0) {
			seq_destroy(&c->c);
			return;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			seq_destroy(&c->c);
			return;
		}
		if (!frame_len_ok(d, (size_t)n)) {
			d->frames_dropped++;
			continue;
		}
		if (vpnkit_port_input(c->port, NULL, c->l->buf, (size_t)n) <
		    0) {
			seq_destroy(&c->c);
			return;
		}
	}
}

static void seq_accept(struct daemon_listener *base, int fd)
{
	struct msg_listener *l =
		daemon_container_of(base, struct msg_listener, base);
	struct daemon *d = base->d;
	struct vpnkit_port_config pc = { 0 };
	struct seq_conn *c;
	int r;

	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->l = l;
	/* In the loop first: the new port may send at once. */
	if (daemon_conn_add(base, &c->c, fd, seq_event, c) < 0) {
		free(c);
		close(fd);
		return;
	}
	r = vpnkit_port_new(d->vk, &pc, &seq_ops, c, &c->port);
	if (r < 0) {
		daemon_peer_log(d, LOG_LEVEL_WARN,
				"seqpacket: cannot attach a VM: %s",
				strerror(-r));
		daemon_conn_remove(&c->c);
		free(c);
		return;
	}
	logger_printf(&d->log, LOG_LEVEL_INFO, "seqpacket %u: VM %s attached",
		      c->c.id, vpnkit_port_uuid(c->port));
}

int msg_seqpacket_listen(struct daemon *d, const char *path)
{
	struct msg_listener *l;
	int r;

	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->base.what = "seqpacket";
	l->base.count = &d->n_conns;
	l->base.max = d->max_conns;
	l->base.accept = seq_accept;
	l->base.destroy = seq_destroy;
	l->base.make_room = stream_make_room;
	l->buf = malloc(MSG_BUF_SIZE);
	if (!l->buf) {
		r = -ENOMEM;
		goto out_free;
	}
	r = daemon_listener_open(&l->base, d, path, SOCK_SEQPACKET);
	if (r < 0)
		goto out_free;
	l->next = d->seqpackets;
	d->seqpackets = l;
	logger_printf(&d->log, LOG_LEVEL_INFO,
		      "listening on %s (seqpacket, one frame per message)",
		      path);
	return 0;
out_free:
	free(l->buf);
	free(l);
	return r;
}

void msg_close_all(struct daemon *d)
{
	struct msg_dgram *s;
	struct msg_listener *l;

	while ((s = d->dgrams)) {
		d->dgrams = s->next;
		for (struct dgram_peer *p = s->peers, *next; p; p = next) {
			next = p->next;
			dgram_peer_free(s, p);
		}
		vpnkit_unwatch(d->vk, s->timer_fd);
		vpnkit_unwatch(d->vk, s->fd);
		close(s->timer_fd);
		close(s->fd);
		unlink(s->path);
		free(s->path);
		free(s->buf);
		free(s);
	}
	while ((l = d->seqpackets)) {
		d->seqpackets = l->next;
		daemon_listener_close(&l->base);
		free(l->buf);
		free(l);
	}
}
