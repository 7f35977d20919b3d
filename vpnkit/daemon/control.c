// SPDX-License-Identifier: MIT
/*
 * The control socket: JSON lines over a Unix stream socket, one request
 * object per line and one reply object per line, in order.
 *
 *   {"op":"add","forward":"tcp:127.0.0.1:8080:192.168.65.3:80"}
 *   {"op":"remove","forward":"tcp:127.0.0.1:8080"}   (guest part optional)
 *   {"op":"list"}    -> {"ok":true,"forwards":["tcp:...",...]}
 *   {"op":"stats"}   -> {"ok":true,"frames_in":...,...}
 *
 * Every reply has "ok"; a failure also has "error" with a reason. A
 * request that is not a flat JSON object with known members gets an
 * error reply; the connection carries on. A line longer than 4 KiB, or a
 * client that lets more than 1 MiB of replies pile up unread, is
 * disconnected. The socket file is made private to its owner (0600):
 * whoever can use it can open ports on the host.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"

#define CONTROL_LINE_MAX JSON_MAX_TEXT
#define CONTROL_OUT_MAX (1u << 20)
#define CONTROL_MAX_CLIENTS 32

struct control;

struct control_client {
	struct control *ctl;
	int fd;
	char in[CONTROL_LINE_MAX + 1];
	size_t in_len;
	struct strbuf out;
	size_t out_off; /* bytes of out already written */
	uint32_t events;
	struct control_client *next, *prev;
};

struct control {
	struct daemon *d;
	struct json_flat req; /* the request being answered */
	int fd;
	char *path;
	unsigned n_clients;
	struct control_client *clients;
	struct control *next;
};

static void client_destroy(struct control_client *c)
{
	struct control *ctl = c->ctl;

	vpnkit_unwatch(ctl->d->vk, c->fd);
	close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		ctl->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	strbuf_release(&c->out);
	free(c);
	ctl->n_clients--;
}

/* ---------------------------------------------------------------- requests */

static bool sockaddr_same(const struct sockaddr_storage *a,
			  const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a,
					 *y = (const void *)b;

		return x->sin_port == y->sin_port &&
		       x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)a,
					  *y = (const void *)b;

		return x->sin6_port == y->sin6_port &&
		       IN6_ARE_ADDR_EQUAL(&x->sin6_addr, &y->sin6_addr);
	}
	return false;
}

/*
 * "tcp:HOSTIP:PORT" with an optional ":GUESTIP:PORT" after it (IPv6 in
 * brackets). Sets *proto and *host; *has_guest says whether more
 * followed. Returns 0 or -EINVAL.
 */
static int parse_host_part(const char *spec, int *proto,
			   struct sockaddr_storage *host, bool *has_guest)
{
	char addr[INET6_ADDRSTRLEN + 1];
	const char *p, *end;
	unsigned long port;
	char *stop;
	size_t n;

	memset(host, 0, sizeof(*host));
	if (strncmp(spec, "tcp:", 4) == 0)
		*proto = IPPROTO_TCP;
	else if (strncmp(spec, "udp:", 4) == 0)
		*proto = IPPROTO_UDP;
	else
		return -EINVAL;
	p = spec + 4;
	if (*p == '[') {
		end = strchr(p, ']');
		if (!end || end[1] != ':')
			return -EINVAL;
		p++;
	} else {
		end = strchr(p, ':');
		if (!end)
			return -EINVAL;
	}
	n = (size_t)(end - p);
	if (n == 0 || n >= sizeof(addr))
		return -EINVAL;
	memcpy(addr, p, n);
	addr[n] = '\0';
	p = end + (*end == ']' ? 2 : 1);
	if (*p < '0' || *p > '9')
		return -EINVAL;
	errno = 0;
	port = strtoul(p, &stop, 10);
	if (errno || port == 0 || port > 65535 ||
	    (*stop != '\0' && *stop != ':'))
		return -EINVAL;
	*has_guest = *stop == ':';
	if (end[0] == ']') {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)host;

		if (inet_pton(AF_INET6, addr, &s6->sin6_addr) != 1)
			return -EINVAL;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)host;

		if (inet_pton(AF_INET, addr, &s4->sin_addr) != 1)
			return -EINVAL;
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
	}
	return 0;
}

static void reply_error(struct strbuf *sb, const char *fmt_prefix,
			const char *why)
{
	struct strbuf msg = { 0 };

	strbuf_addf(&msg, "%s%s", fmt_prefix, why);
	strbuf_add(sb, "{\"ok\":false,\"error\":", 20);
	strbuf_add_json(sb, msg.failed || !msg.s ? "out of memory" : msg.s);
	strbuf_add(sb, "}", 1);
	strbuf_release(&msg);
}

static void op_add(struct daemon *d, const char *spec, struct strbuf *sb)
{
	struct vpnkit_forward fwd;
	int r;

	if (vpnkit_forward_parse(spec, &fwd) < 0) {
		reply_error(
			sb,
			"bad forward (want tcp|udp:HOSTIP:PORT:GUESTIP:PORT): ",
			spec);
		return;
	}
	r = vpnkit_forward_add(d->vk, &fwd);
	if (r == -EEXIST) {
		reply_error(sb, "a forward already listens on ", spec);
		return;
	}
	if (r < 0) {
		reply_error(sb, "", strerror(-r));
		return;
	}
	logger_printf(&d->log, LOG_LEVEL_DEBUG, "control: added forward %s",
		      spec);
	strbuf_addf(sb, "{\"ok\":true}");
}

static void op_remove(struct daemon *d, const char *spec, struct strbuf *sb)
{
	struct sockaddr_storage host;
	struct vpnkit_forward want, *list = NULL;
	bool has_guest, found = false;
	size_t n;
	int proto, r;

	if (parse_host_part(spec, &proto, &host, &has_guest) < 0 ||
	    (has_guest && vpnkit_forward_parse(spec, &want) < 0)) {
		reply_error(
			sb,
			"bad forward (want tcp|udp:HOSTIP:PORT[:GUESTIP:PORT]): ",
			spec);
		return;
	}
	if (has_guest) {
		/* The guest part, when given, must match too. */
		n = vpnkit_forward_list(d->vk, NULL, 0);
		list = calloc(n ? n : 1, sizeof(*list));
		if (!list) {
			reply_error(sb, "", strerror(ENOMEM));
			return;
		}
		n = vpnkit_forward_list(d->vk, list, n);
		for (size_t i = 0; i < n; i++) {
			if (list[i].proto == proto &&
			    sockaddr_same(&list[i].host, &host) &&
			    sockaddr_same(&list[i].guest, &want.guest))
				found = true;
		}
		free(list);
		if (!found) {
			reply_error(sb, "no such forward: ", spec);
			return;
		}
	}
	r = vpnkit_forward_remove(d->vk, proto, (const struct sockaddr *)&host);
	if (r == -ENOENT) {
		reply_error(sb, "no such forward: ", spec);
		return;
	}
	if (r < 0) {
		reply_error(sb, "", strerror(-r));
		return;
	}
	logger_printf(&d->log, LOG_LEVEL_DEBUG, "control: removed forward %s",
		      spec);
	strbuf_addf(sb, "{\"ok\":true}");
}

static void op_list(struct daemon *d, struct strbuf *sb)
{
	struct vpnkit_forward *list;
	char text[128];
	size_t n;

	n = vpnkit_forward_list(d->vk, NULL, 0);
	list = calloc(n ? n : 1, sizeof(*list));
	if (!list) {
		reply_error(sb, "", strerror(ENOMEM));
		return;
	}
	n = vpnkit_forward_list(d->vk, list, n);
	strbuf_addf(sb, "{\"ok\":true,\"forwards\":[");
	for (size_t i = 0; i < n; i++) {
		if (vpnkit_forward_format(&list[i], text, sizeof(text)) < 0)
			continue;
		if (i)
			strbuf_add(sb, ",", 1);
		strbuf_add_json(sb, text);
	}
	strbuf_addf(sb, "]}");
	free(list);
}

static void op_stats(struct daemon *d, struct strbuf *sb)
{
	struct vpnkit_stats st;

	vpnkit_stats_get(d->vk, &st);
	strbuf_addf(sb,
		    "{\"ok\":true,\"frames_in\":%" PRIu64
		    ",\"frames_out\":%" PRIu64 ",\"bytes_in\":%" PRIu64
		    ",\"bytes_out\":%" PRIu64 ",\"dropped\":%" PRIu64
		    ",\"bad\":%" PRIu64 ",\"refused\":%" PRIu64
		    ",\"ports\":%u,\"tcp_flows\":%u,\"udp_flows\":%u"
		    ",\"icmp_flows\":%u,\"fds\":%u"
		    ",\"transport_dropped\":%" PRIu64
		    ",\"transport_peers_bad\":%" PRIu64 ",\"connections\":%u}",
		    st.frames_in, st.frames_out, st.bytes_in, st.bytes_out,
		    st.dropped, st.bad, st.refused, st.ports, st.tcp_flows,
		    st.udp_flows, st.icmp_flows, st.fds, d->frames_dropped,
		    d->peers_bad, d->n_conns);
}

/* Answer one request line (without its newline) into sb. */
static void control_handle(struct control *ctl, const char *line, size_t len,
			   struct strbuf *sb)
{
	struct daemon *d = ctl->d;
	struct json_flat *req = &ctl->req;
	const struct json_member *op, *fwd;
	const char *why;

	if (json_flat_parse(line, len, req, &why) < 0) {
		reply_error(sb, "bad JSON: ", why);
		return;
	}
	op = json_flat_get(req, "op");
	fwd = json_flat_get(req, "forward");
	if (!op || op->kind != JSON_STRING) {
		reply_error(sb, "", "missing \"op\" (a string)");
		return;
	}
	for (unsigned i = 0; i < req->n; i++) {
		if (strcmp(req->m[i].key, "op") != 0 &&
		    strcmp(req->m[i].key, "forward") != 0) {
			reply_error(sb, "unknown member: ", req->m[i].key);
			return;
		}
	}
	if (strcmp(op->value, "add") == 0 || strcmp(op->value, "remove") == 0) {
		if (!fwd || fwd->kind != JSON_STRING) {
			reply_error(sb, "", "missing \"forward\" (a string)");
			return;
		}
		if (strcmp(op->value, "add") == 0)
			op_add(d, fwd->value, sb);
		else
			op_remove(d, fwd->value, sb);
		return;
	}
	if (fwd) {
		reply_error(sb, "\"forward\" does not go with op ", op->value);
		return;
	}
	if (strcmp(op->value, "list") == 0)
		op_list(d, sb);
	else if (strcmp(op->value, "stats") == 0)
		op_stats(d, sb);
	else
		reply_error(sb, "unknown op: ", op->value);
}

/* ---------------------------------------------------------------- clients */

static void client_watch_out(struct control_client *c, bool on)
{
	uint32_t ev = on ? EPOLLIN | EPOLLOUT : EPOLLIN;

	if (ev == c->events)
		return;
	c->events = ev;
	vpnkit_watch_mod(c->ctl->d->vk, c->fd, ev);
}

/* Write pending replies. Returns -1 if the client is gone. */
static int client_flush(struct control_client *c)
{
	while (c->out_off < c->out.len) {
		ssize_t n = write(c->fd, c->out.s + c->out_off,
				  c->out.len - c->out_off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				if (c->out.len - c->out_off > CONTROL_OUT_MAX)
					goto gone;
				client_watch_out(c, true);
				return 0;
			}
			goto gone;
		}
		c->out_off += (size_t)n;
	}
	c->out.len = 0;
	c->out_off = 0;
	client_watch_out(c, false);
	return 0;
gone:
	client_destroy(c);
	return -1;
}

static void client_event(void *opaque, uint32_t events)
{
	struct control_client *c = opaque;
	struct daemon *d = c->ctl->d;
	char *nl;
	ssize_t n;

	if ((events & EPOLLOUT) && client_flush(c) < 0)
		return;
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	n = read(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		client_destroy(c);
		return;
	}
	c->in_len += (size_t)n;
	while ((nl = memchr(c->in, '\n', c->in_len))) {
		size_t len = (size_t)(nl - c->in);
		size_t line_len = len;

		if (line_len && c->in[line_len - 1] == '\r')
			line_len--;
		if (line_len) {
			control_handle(c->ctl, c->in, line_len, &c->out);
			strbuf_add(&c->out, "\n", 1);
		}
		memmove(c->in, nl + 1, c->in_len - len - 1);
		c->in_len -= len + 1;
	}
	if (c->out.failed) {
		client_destroy(c);
		return;
	}
	if (c->in_len == sizeof(c->in)) {
		/* No newline within the limit: say so and hang up. */
		daemon_peer_log(
			d, LOG_LEVEL_WARN,
			"control: request line over %u bytes: disconnected",
			CONTROL_LINE_MAX);
		reply_error(&c->out, "", "line too long");
		strbuf_add(&c->out, "\n", 1);
		if (client_flush(c) == 0)
			client_destroy(c);
		return;
	}
	client_flush(c);
}

static void control_listener_event(void *opaque, uint32_t events)
{
	struct control *ctl = opaque;
	struct control_client *c;
	int fd;

	(void)events;
	fd = accept4(ctl->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return;
	if (ctl->n_clients >= CONTROL_MAX_CLIENTS) {
		daemon_peer_log(ctl->d, LOG_LEVEL_WARN,
				"control: %u clients already: refused",
				ctl->n_clients);
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->ctl = ctl;
	c->fd = fd;
	c->events = EPOLLIN;
	if (vpnkit_watch(ctl->d->vk, fd, c->events, client_event, c) < 0) {
		free(c);
		close(fd);
		return;
	}
	c->next = ctl->clients;
	if (ctl->clients)
		ctl->clients->prev = c;
	ctl->clients = c;
	ctl->n_clients++;
}

int control_listen(struct daemon *d, const char *path)
{
	struct control *ctl;
	int fd, r;

	fd = daemon_unix_listen(path, SOCK_STREAM);
	if (fd < 0)
		return fd;
	if (chmod(path, 0600) < 0) {
		r = -errno;
		goto fail;
	}
	ctl = calloc(1, sizeof(*ctl));
	if (!ctl || !(ctl->path = strdup(path))) {
		free(ctl);
		r = -ENOMEM;
		goto fail;
	}
	ctl->d = d;
	ctl->fd = fd;
	r = vpnkit_watch(d->vk, fd, EPOLLIN, control_listener_event, ctl);
	if (r < 0) {
		free(ctl->path);
		free(ctl);
		goto fail;
	}
	ctl->next = d->controls;
	d->controls = ctl;
	logger_printf(&d->log, LOG_LEVEL_INFO, "control socket on %s", path);
	return 0;
fail:
	close(fd);
	unlink(path);
	return r;
}

void control_close_all(struct daemon *d)
{
	struct control *ctl;

	while ((ctl = d->controls)) {
		d->controls = ctl->next;
		for (struct control_client *c = ctl->clients, *next; c;
		     c = next) {
			next = c->next;
			client_destroy(c);
		}
		vpnkit_unwatch(d->vk, ctl->fd);
		close(ctl->fd);
		unlink(ctl->path);
		free(ctl->path);
		free(ctl);
	}
}
