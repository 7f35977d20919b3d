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
#include <time.h>
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
	struct msg_listener *l;
	int fd;
	unsigned id;
	struct vpnkit_port *port;
	bool want_resume;
	bool broken;
	uint32_t events;
	struct seq_conn *next, *prev;
};

struct msg_listener {
	struct daemon *d;
	int fd;
	char *path;
	uint8_t *buf;
	unsigned next_id;
	struct seq_conn *conns;
	struct msg_listener *next;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

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
	struct msghdr mh = {
		.msg_name = &p->addr,
		.msg_namelen = p->addr_len,
		.msg_iov = (struct iovec *)iov,
		.msg_iovlen = (size_t)iovcnt,
	};
	ssize_t n;

	(void)off;
	if (p->dead)
		return -ENOTCONN;
	if (!frame_len_ok(p->s->d, iov_total(iov, iovcnt))) {
		p->s->d->frames_dropped++;
		return 0;
	}
	do {
		n = sendmsg(p->s->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n >= 0)
		return 0;
	switch (errno) {
	case EAGAIN:
		p->want_resume = true;
		dgram_arm_timer(p->s);
		return -EAGAIN;
	case ECONNREFUSED:
	case ENOENT:
	case ENOTCONN:
		p->dead = true;
		dgram_arm_timer(p->s);
		return -errno;
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
		p->last_rx_ns = now_ns();
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

static void seq_watch_out(struct seq_conn *c, bool on)
{
	uint32_t ev = on ? EPOLLIN | EPOLLOUT : EPOLLIN;

	if (ev == c->events)
		return;
	c->events = ev;
	vpnkit_watch_mod(c->l->d->vk, c->fd, ev);
}

static void seq_destroy(struct seq_conn *c)
{
	struct daemon *d = c->l->d;

	logger_printf(&d->log, LOG_LEVEL_DEBUG, "seqpacket %u: VM %s detached",
		      c->id, vpnkit_port_uuid(c->port));
	vpnkit_port_free(c->port);
	vpnkit_unwatch(d->vk, c->fd);
	close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		c->l->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	free(c);
	d->n_conns--;
}

static int seq_send(void *opaque, const struct vpnkit_offload *off,
		    const struct iovec *iov, int iovcnt)
{
	struct seq_conn *c = opaque;
	struct msghdr mh = {
		.msg_iov = (struct iovec *)iov,
		.msg_iovlen = (size_t)iovcnt,
	};
	ssize_t n;

	(void)off;
	if (c->broken)
		return -EPIPE;
	if (!frame_len_ok(c->l->d, iov_total(iov, iovcnt))) {
		c->l->d->frames_dropped++;
		return 0;
	}
	do {
		n = sendmsg(c->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n >= 0)
		return 0;
	if (errno == EAGAIN) {
		c->want_resume = true;
		seq_watch_out(c, true);
		return -EAGAIN;
	}
	/* EPOLLOUT reports the error and the event handler tears down. */
	c->broken = true;
	seq_watch_out(c, true);
	return -errno;
}

static const struct vpnkit_port_ops seq_ops = {
	.send = seq_send,
};

static void seq_event(void *opaque, uint32_t events)
{
	struct seq_conn *c = opaque;
	struct daemon *d = c->l->d;

	if (c->broken) {
		seq_destroy(c);
		return;
	}
	if ((events & EPOLLOUT) && c->want_resume) {
		c->want_resume = false;
		seq_watch_out(c, false);
		vpnkit_port_resume(c->port);
		if (c->broken) {
			seq_destroy(c);
			return;
		}
	} else if (events & EPOLLOUT) {
		seq_watch_out(c, false);
	}
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	for (int i = 0; i < MSG_PER_WAKEUP; i++) {
		ssize_t n = recv(c->fd, c->l->buf, MSG_BUF_SIZE,
				 MSG_DONTWAIT | MSG_TRUNC);

		if (n == 0) {
			seq_destroy(c);
			return;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			seq_destroy(c);
			return;
		}
		if (!frame_len_ok(d, (size_t)n)) {
			d->frames_dropped++;
			continue;
		}
		if (vpnkit_port_input(c->port, NULL, c->l->buf, (size_t)n) <
		    0) {
			seq_destroy(c);
			return;
		}
	}
}

static void seq_accept_one(struct msg_listener *l, int fd)
{
	struct daemon *d = l->d;
	struct vpnkit_port_config pc = { 0 };
	struct seq_conn *c;
	int r;

	if (d->n_conns >= d->max_conns) {
		daemon_peer_log(d, LOG_LEVEL_WARN,
				"seqpacket: %u connections already: refused",
				d->n_conns);
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->l = l;
	c->fd = fd;
	c->id = l->next_id++;
	c->events = EPOLLIN;
	r = vpnkit_port_new(d->vk, &pc, &seq_ops, c, &c->port);
	if (r < 0) {
		daemon_peer_log(d, LOG_LEVEL_WARN,
				"seqpacket: cannot attach a VM: %s",
				strerror(-r));
		goto fail;
	}
	r = vpnkit_watch(d->vk, fd, c->events, seq_event, c);
	if (r < 0) {
		vpnkit_port_free(c->port);
		goto fail;
	}
	c->next = l->conns;
	if (l->conns)
		l->conns->prev = c;
	l->conns = c;
	d->n_conns++;
	logger_printf(&d->log, LOG_LEVEL_INFO, "seqpacket %u: VM %s attached",
		      c->id, vpnkit_port_uuid(c->port));
	return;
fail:
	free(c);
	close(fd);
}

static void seq_listener_event(void *opaque, uint32_t events)
{
	struct msg_listener *l = opaque;

	(void)events;
	for (int i = 0; i < 16; i++) {
		int fd = accept4(l->fd, NULL, NULL,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != EINTR && errno != ECONNABORTED)
				daemon_peer_log(l->d, LOG_LEVEL_WARN,
						"seqpacket: accept: %s",
						strerror(errno));
			return;
		}
		seq_accept_one(l, fd);
	}
}

int msg_seqpacket_listen(struct daemon *d, const char *path)
{
	struct msg_listener *l;
	int r;

	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->d = d;
	l->path = strdup(path);
	l->buf = malloc(MSG_BUF_SIZE);
	if (!l->path || !l->buf) {
		r = -ENOMEM;
		goto fail_free;
	}
	l->fd = daemon_unix_listen(path, SOCK_SEQPACKET);
	if (l->fd < 0) {
		r = l->fd;
		goto fail_free;
	}
	r = vpnkit_watch(d->vk, l->fd, EPOLLIN, seq_listener_event, l);
	if (r < 0) {
		close(l->fd);
		unlink(path);
		goto fail_free;
	}
	l->next = d->seqpackets;
	d->seqpackets = l;
	logger_printf(&d->log, LOG_LEVEL_INFO,
		      "listening on %s (seqpacket, one frame per message)",
		      path);
	return 0;
fail_free:
	free(l->buf);
	free(l->path);
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
		for (struct seq_conn *c = l->conns, *next; c; c = next) {
			next = c->next;
			seq_destroy(c);
		}
		vpnkit_unwatch(d->vk, l->fd);
		close(l->fd);
		unlink(l->path);
		free(l->path);
		free(l->buf);
		free(l);
	}
}
