/* SPDX-License-Identifier: MIT */
/*
 * Port forwards from the host into a VM. Each forward is a listening TCP
 * socket or a bound UDP socket on the host. An accepted connection
 * becomes a TCP flow that opens with our SYN to the VM's address and
 * port; a datagram becomes a UDP flow whose replies go back through the
 * forward's socket. The VM sees the client's own address (loopback
 * clients appear as the host address), so servers in the VM log real
 * peers.
 *
 * Removing a forward closes its socket before returning, so the host
 * port is free at once, and resets the connections it made. Forwards
 * outlive the VMs they point at: connections to a VM that is not
 * attached are refused (reset) until it comes back.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "internal.h"

struct fwd {
	struct vk_handler h;
	struct vpnkit *vk;
	struct vpnkit_forward spec;
	struct in6_addr gaddr;
	uint16_t gport;
	int fd;
	struct fwd *next;
};

struct fwd_state {
	struct fwd *list;
	uint8_t buf[65536];
};

static struct fwd_state *fwd_st(struct vpnkit *vk, bool create)
{
	struct fwd_state **pp = (struct fwd_state **)vk_fwd_state(vk);

	if (!*pp && create)
		*pp = calloc(1, sizeof(**pp));
	return *pp;
}

/* ---------------------------------------------------------------- specs */

static int parse_addr(const char **pp, struct sockaddr_storage *ss,
		      bool need_port)
{
	const char *p = *pp, *end;
	char host[INET6_ADDRSTRLEN + 1];
	size_t n;
	unsigned long port = 0;
	char *e;

	memset(ss, 0, sizeof(*ss));
	if (*p == '[') {
		end = strchr(p, ']');
		if (!end || end[1] != ':')
			return -EINVAL;
		n = (size_t)(end - p - 1);
		if (n >= sizeof(host))
			return -EINVAL;
		memcpy(host, p + 1, n);
		host[n] = 0;
		p = end + 2;
	} else {
		end = strchr(p, ':');
		if (!end)
			return -EINVAL;
		n = (size_t)(end - p);
		if (n >= sizeof(host))
			return -EINVAL;
		memcpy(host, p, n);
		host[n] = 0;
		p = end + 1;
	}
	if (need_port || *p) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		port = strtoul(p, &e, 10);
		if (port == 0 || port > 65535 || (*e && *e != ':'))
			return -EINVAL;
		p = e;
	}
	if (strchr(host, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
			return -EINVAL;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

		if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
			return -EINVAL;
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
	}
	*pp = p;
	return 0;
}

int vpnkit_forward_parse(const char *spec, struct vpnkit_forward *out)
{
	const char *p = spec;

	memset(out, 0, sizeof(*out));
	if (strncmp(p, "tcp:", 4) == 0)
		out->proto = IPPROTO_TCP;
	else if (strncmp(p, "udp:", 4) == 0)
		out->proto = IPPROTO_UDP;
	else
		return -EINVAL;
	p += 4;
	if (parse_addr(&p, &out->host, true) || *p != ':')
		return -EINVAL;
	p++;
	if (parse_addr(&p, &out->guest, true) || *p)
		return -EINVAL;
	return 0;
}

static int format_addr(const struct sockaddr_storage *ss, char *buf,
		       size_t size)
{
	char a[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)ss;

		inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof(a));
		return snprintf(buf, size, "[%s]:%u", a, ntohs(s6->sin6_port));
	}
	{
		const struct sockaddr_in *s4 = (const void *)ss;

		inet_ntop(AF_INET, &s4->sin_addr, a, sizeof(a));
		return snprintf(buf, size, "%s:%u", a, ntohs(s4->sin_port));
	}
}

int vpnkit_forward_format(const struct vpnkit_forward *fwd, char *buf,
			  size_t size)
{
	char h[64], g[64];
	int n;

	format_addr(&fwd->host, h, sizeof(h));
	format_addr(&fwd->guest, g, sizeof(g));
	n = snprintf(buf, size, "%s:%s:%s",
		     fwd->proto == IPPROTO_UDP ? "udp" : "tcp", h, g);
	if (n < 0 || (size_t)n >= size)
		return -ENOSPC;
	return n;
}

static socklen_t ss_len(const struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) :
					   sizeof(struct sockaddr_in);
}

static bool same_host(const struct sockaddr_storage *a,
		      const struct sockaddr *b)
{
	if (a->ss_family != b->sa_family)
		return false;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a;
		const struct sockaddr_in *y = (const void *)b;

		return x->sin_port == y->sin_port &&
		       x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	{
		const struct sockaddr_in6 *x = (const void *)a;
		const struct sockaddr_in6 *y = (const void *)b;

		return x->sin6_port == y->sin6_port &&
		       IN6_ARE_ADDR_EQUAL(&x->sin6_addr, &y->sin6_addr);
	}
}

/* ---------------------------------------------------------------- events */

static void fwd_event(struct vpnkit *vk, struct vk_handler *h, uint32_t ev)
{
	struct fwd *fw = (struct fwd *)h;
	struct fwd_state *st = fwd_st(vk, false);
	struct sockaddr_storage peer;
	socklen_t pl;
	int i;

	(void)ev;
	for (i = 0; i < 64; i++) {
		pl = sizeof(peer);
		if (fw->spec.proto == IPPROTO_TCP) {
			int fd = accept4(fw->fd, (struct sockaddr *)&peer, &pl,
					 SOCK_NONBLOCK | SOCK_CLOEXEC);

			if (fd < 0)
				return;
			if (!vk_fd_take(vk)) {
				close(fd);
				continue;
			}
			vk_tcp_inbound(vk, fd, (struct sockaddr *)&peer,
				       &fw->gaddr, fw->gport);
		} else {
			ssize_t n = recvfrom(fw->fd, st->buf, sizeof(st->buf),
					     MSG_DONTWAIT,
					     (struct sockaddr *)&peer, &pl);

			if (n < 0)
				return;
			vk_udp_inbound(vk, fw->fd, (struct sockaddr *)&peer, pl,
				       &fw->gaddr, fw->gport, st->buf,
				       (size_t)n);
		}
	}
}

int vpnkit_forward_add(struct vpnkit *vk, const struct vpnkit_forward *spec)
{
	struct fwd_state *st = fwd_st(vk, true);
	struct fwd *fw;
	int one = 1, err;
	uint16_t port;

	if (!st)
		return -ENOMEM;
	if (spec->proto != IPPROTO_TCP && spec->proto != IPPROTO_UDP)
		return -EINVAL;
	if ((spec->host.ss_family != AF_INET &&
	     spec->host.ss_family != AF_INET6) ||
	    (spec->guest.ss_family != AF_INET &&
	     spec->guest.ss_family != AF_INET6))
		return -EINVAL;
	for (fw = st->list; fw; fw = fw->next)
		if (fw->spec.proto == spec->proto &&
		    same_host(&fw->spec.host, (const void *)&spec->host))
			return -EEXIST;
	fw = calloc(1, sizeof(*fw));
	if (!fw)
		return -ENOMEM;
	fw->spec = *spec;
	fw->vk = vk;
	fw->h.fn = fwd_event;
	vk_addr_from_host(vk, (const struct sockaddr *)&spec->guest, &fw->gaddr,
			  &port);
	fw->gport = port;
	/* The guest address is the VM's own: undo the loopback mapping. */
	if (spec->guest.ss_family == AF_INET) {
		vk_addr_from_v4(&fw->gaddr,
				((const struct sockaddr_in *)&spec->guest)
					->sin_addr);
	} else {
		fw->gaddr = ((const struct sockaddr_in6 *)&spec->guest)
				    ->sin6_addr;
	}
	if (!vk_addr_is_local(vk, &fw->gaddr) || fw->gport == 0) {
		free(fw);
		return -EINVAL;
	}
	fw->fd = socket(spec->host.ss_family,
			(spec->proto == IPPROTO_TCP ? SOCK_STREAM : SOCK_DGRAM) |
				SOCK_NONBLOCK | SOCK_CLOEXEC,
			0);
	if (fw->fd < 0) {
		err = -errno;
		free(fw);
		return err;
	}
	setsockopt(fw->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (spec->host.ss_family == AF_INET6)
		setsockopt(fw->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one,
			   sizeof(one));
	if (bind(fw->fd, (const struct sockaddr *)&spec->host,
		 ss_len(&spec->host)) < 0 ||
	    (spec->proto == IPPROTO_TCP && listen(fw->fd, 512) < 0)) {
		err = -errno;
		close(fw->fd);
		free(fw);
		return err;
	}
	err = vk_epoll_add(vk, fw->fd, EPOLLIN, &fw->h);
	if (err) {
		close(fw->fd);
		free(fw);
		return err;
	}
	fw->next = st->list;
	st->list = fw;
	{
		char s[160];

		vpnkit_forward_format(spec, s, sizeof(s));
		logger_printf(vk_log(vk), LOG_LEVEL_INFO, "forward %s added", s);
	}
	return 0;
}

static void fwd_close(struct vpnkit *vk, struct fwd *fw)
{
	vk_epoll_del(vk, fw->fd);
	if (fw->spec.proto == IPPROTO_TCP)
		vk_tcp_forward_gone(vk, &fw->gaddr, fw->gport);
	else
		vk_udp_forward_gone(vk, fw->fd);
	close(fw->fd);
	free(fw);
}

int vpnkit_forward_remove(struct vpnkit *vk, int proto,
			  const struct sockaddr *host)
{
	struct fwd_state *st = fwd_st(vk, false);
	struct fwd **pp, *fw;

	if (!st)
		return -ENOENT;
	for (pp = &st->list; (fw = *pp); pp = &fw->next) {
		if (fw->spec.proto == proto && same_host(&fw->spec.host, host)) {
			*pp = fw->next;
			fwd_close(vk, fw);
			logger_printf(vk_log(vk), LOG_LEVEL_INFO,
				      "forward removed");
			return 0;
		}
	}
	return -ENOENT;
}

size_t vpnkit_forward_list(const struct vpnkit *vk,
			   struct vpnkit_forward *out, size_t max)
{
	struct fwd_state *st = fwd_st((struct vpnkit *)vk, false);
	struct fwd *fw;
	size_t n = 0;

	if (!st)
		return 0;
	for (fw = st->list; fw; fw = fw->next) {
		if (n < max)
			out[n] = fw->spec;
		n++;
	}
	return n;
}

void vk_fwd_release(struct vpnkit *vk)
{
	struct fwd_state *st = fwd_st(vk, false);
	struct fwd *fw;

	if (!st)
		return;
	while ((fw = st->list)) {
		st->list = fw->next;
		fwd_close(vk, fw);
	}
	free(st);
	*vk_fwd_state(vk) = NULL;
}
