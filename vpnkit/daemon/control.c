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
	struct daemon_conn c;
	struct control *ctl;
	char in[CONTROL_LINE_MAX + 1];
	size_t in_len;
	struct strbuf out;
	size_t out_off; /* bytes of out already written */
};

struct control {
	struct daemon_listener base;
	struct json_flat req; /* the request being answered */
	unsigned n_clients;
	struct control *next;
};

static void client_destroy(struct daemon_conn *dc)
{
	struct control_client *c =
		daemon_container_of(dc, struct control_client, c);

	daemon_conn_remove(dc);
	strbuf_release(&c->out);
	free(c);
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

/*
 * The reply to an add or a remove of the forward spec that returned r:
 * ok, known_why for the error known (-EEXIST, -ENOENT), or the error's
 * text. done ("added") is for the log.
 */
static void reply_result(struct daemon *d, struct strbuf *sb, int r, int known,
			 const char *known_why, const char *done,
			 const char *spec)
{
	if (r == known) {
		reply_error(sb, known_why, spec);
		return;
	}
	if (r < 0) {
		reply_error(sb, "", strerror(-r));
		return;
	}
	logger_printf(&d->log, LOG_LEVEL_DEBUG, "control: %s forward %s", done,
		      spec);
	strbuf_addf(sb, "{\"ok\":true}");
}

/* Every forward, in a new array of *n (at least one slot); NULL after
 * an error reply. */
static struct vpnkit_forward *forwards_get(struct daemon *d, size_t *n,
					   struct strbuf *sb)
{
	struct vpnkit_forward *list;

	*n = vpnkit_forward_list(d->vk, NULL, 0);
	list = calloc(*n ? *n : 1, sizeof(*list));
	if (!list) {
		reply_error(sb, "", strerror(ENOMEM));
		return NULL;
	}
	*n = vpnkit_forward_list(d->vk, list, *n);
	return list;
}

static void op_add(struct daemon *d, const char *spec, struct strbuf *sb)
{
	struct vpnkit_forward fwd;

	if (vpnkit_forward_parse(spec, &fwd) < 0) {
		reply_error(
			sb,
			"bad forward (want tcp|udp:HOSTIP:PORT:GUESTIP:PORT): ",
			spec);
		return;
	}
	reply_result(d, sb, vpnkit_forward_add(d->vk, &fwd), -EEXIST,
		     "a forward already listens on ", "added", spec);
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
		list = forwards_get(d, &n, sb);
		if (!list)
			return;
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
	reply_result(d, sb, r, -ENOENT, "no such forward: ", "removed", spec);
}

static void op_list(struct daemon *d, struct strbuf *sb)
{
	struct vpnkit_forward *list;
	char text[128];
	size_t n;

	list = forwards_get(d, &n, sb);
	if (!list)
		return;
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
	struct daemon *d = ctl->base.d;
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

/* Write pending replies. Returns -1 if the client is gone. */
static int client_flush(struct control_client *c)
{
	while (c->out_off < c->out.len) {
		ssize_t n = write(c->c.fd, c->out.s + c->out_off,
				  c->out.len - c->out_off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				if (c->out.len - c->out_off > CONTROL_OUT_MAX)
					goto gone;
				daemon_conn_watch_out(&c->c, true);
				return 0;
			}
			goto gone;
		}
		c->out_off += (size_t)n;
	}
	c->out.len = 0;
	c->out_off = 0;
	daemon_conn_watch_out(&c->c, false);
	return 0;
gone:
	client_destroy(&c->c);
	return -1;
}

static void client_event(void *opaque, uint32_t events)
{
	struct control_client *c = opaque;
	struct daemon *d = c->c.d;
	char *nl;
	ssize_t n;

	if ((events & EPOLLOUT) && client_flush(c) < 0)
		return;
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	n = read(c->c.fd, c->in + c->in_len, sizeof(c->in) - c->in_len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		client_destroy(&c->c);
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
		client_destroy(&c->c);
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
			client_destroy(&c->c);
		return;
	}
	client_flush(c);
}

static void control_accept(struct daemon_listener *base, int fd)
{
	struct control *ctl = daemon_container_of(base, struct control, base);
	struct control_client *c;

	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->ctl = ctl;
	if (daemon_conn_add(base, &c->c, fd, client_event, c) < 0) {
		free(c);
		close(fd);
	}
}

int control_listen(struct daemon *d, const char *path)
{
	struct control *ctl;
	int r;

	ctl = calloc(1, sizeof(*ctl));
	if (!ctl)
		return -ENOMEM;
	ctl->base.what = "control";
	ctl->base.count = &ctl->n_clients;
	ctl->base.max = CONTROL_MAX_CLIENTS;
	ctl->base.accept = control_accept;
	ctl->base.destroy = client_destroy;
	r = daemon_listener_open(&ctl->base, d, path, SOCK_STREAM);
	if (r < 0)
		goto out_free;
	if (chmod(path, 0600) < 0) {
		r = -errno;
		daemon_listener_close(&ctl->base);
		goto out_free;
	}
	ctl->next = d->controls;
	d->controls = ctl;
	logger_printf(&d->log, LOG_LEVEL_INFO, "control socket on %s", path);
	return 0;
out_free:
	free(ctl);
	return r;
}

void control_close_all(struct daemon *d)
{
	struct control *ctl;

	while ((ctl = d->controls)) {
		d->controls = ctl->next;
		daemon_listener_close(&ctl->base);
		free(ctl);
	}
}
