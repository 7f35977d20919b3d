// SPDX-License-Identifier: MIT
/*
 * Unix listeners and the connections they accept, for every transport
 * that has them (stream, seqpacket, control): binding over a stale
 * socket file, the accept loop and the limit on connections, the list of
 * a listener's connections, and what the loop watches for each.
 *
 * A transport embeds a struct daemon_listener in its listener and a
 * struct daemon_conn in each connection, fills in what the listener
 * needs (its name for log lines, the counter and limit it shares, and
 * its accept and destroy functions) and keeps the rest of its state to
 * itself. Connections are counted when added and uncounted when
 * removed, so the stream and seqpacket transports can share the
 * daemon's limit while the control socket keeps its own.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon.h"

#define ACCEPTS_PER_WAKEUP 16

int daemon_unix_listen(const char *path, int type)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, probe, r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	fd = socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = -errno;
		if (r != -EADDRINUSE || stat(path, &st) < 0 ||
		    !S_ISSOCK(st.st_mode))
			goto fail;
		/* A socket file: is anyone behind it? */
		probe = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
		if (probe < 0)
			goto fail;
		if (connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0 ||
		    errno != ECONNREFUSED) {
			close(probe);
			goto fail;
		}
		close(probe);
		if (unlink(path) < 0 ||
		    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			r = -errno;
			goto fail;
		}
	}
	if (type != SOCK_DGRAM && listen(fd, 128) < 0) {
		r = -errno;
		unlink(path);
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return r;
}

static void listener_event(void *opaque, uint32_t events)
{
	struct daemon_listener *l = opaque;

	(void)events;
	for (int i = 0; i < ACCEPTS_PER_WAKEUP; i++) {
		int fd = accept4(l->fd, NULL, NULL,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != EINTR && errno != ECONNABORTED)
				daemon_peer_log(l->d, LOG_LEVEL_WARN,
						"%s: accept: %s", l->what,
						strerror(errno));
			return;
		}
		if (*l->count >= l->max &&
		    !(l->make_room && l->make_room(l->d))) {
			daemon_peer_log(l->d, LOG_LEVEL_WARN,
					"%s: %u connections already: refused",
					l->what, *l->count);
			close(fd);
			continue;
		}
		l->accept(l, fd);
	}
}

int daemon_listener_open(struct daemon_listener *l, struct daemon *d,
			 const char *path, int type)
{
	int r;

	l->d = d;
	l->conns = NULL;
	l->path = strdup(path);
	if (!l->path)
		return -ENOMEM;
	l->fd = daemon_unix_listen(path, type);
	if (l->fd < 0) {
		r = l->fd;
		goto out_free_path;
	}
	r = vpnkit_watch(d->vk, l->fd, EPOLLIN, listener_event, l);
	if (r < 0)
		goto out_close;
	return 0;
out_close:
	close(l->fd);
	unlink(path);
out_free_path:
	free(l->path);
	l->path = NULL;
	return r;
}

void daemon_listener_close(struct daemon_listener *l)
{
	while (l->conns)
		l->destroy(l->conns);
	vpnkit_unwatch(l->d->vk, l->fd);
	close(l->fd);
	unlink(l->path);
	free(l->path);
	l->path = NULL;
}

int daemon_conn_add(struct daemon_listener *l, struct daemon_conn *c, int fd,
		    vpnkit_watch_fn *cb, void *opaque)
{
	int r;

	c->d = l->d;
	c->l = l;
	c->fd = fd;
	c->events = EPOLLIN;
	r = vpnkit_watch(l->d->vk, fd, c->events, cb, opaque);
	if (r < 0)
		return r;
	c->id = l->next_id++;
	c->prev = NULL;
	c->next = l->conns;
	if (l->conns)
		l->conns->prev = c;
	l->conns = c;
	(*l->count)++;
	return 0;
}

void daemon_conn_remove(struct daemon_conn *c)
{
	struct daemon_listener *l = c->l;

	vpnkit_unwatch(c->d->vk, c->fd);
	close(c->fd);
	c->fd = -1;
	if (c->prev)
		c->prev->next = c->next;
	else
		l->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->next = c->prev = NULL;
	(*l->count)--;
}

void daemon_conn_watch_out(struct daemon_conn *c, bool on)
{
	uint32_t ev = on ? EPOLLIN | EPOLLOUT : EPOLLIN;

	if (ev == c->events)
		return;
	c->events = ev;
	vpnkit_watch_mod(c->d->vk, c->fd, ev);
}
