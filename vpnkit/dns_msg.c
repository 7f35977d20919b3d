// SPDX-License-Identifier: MIT
/*
 * DNS wire format and resolv.conf helpers for the gateway (dns_msg.h).
 *
 * The gateway relays most messages untouched, so it reads little of them:
 * the header, the first question (whose name is kept in text form for the
 * built-in names and getaddrinfo) and the EDNS OPT record (for the size of
 * answer the requester accepts). Other names are stepped over label by
 * label; a compression pointer ends a name and is never followed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cursor.h"
#include "base/endian.h"
#include "dns_msg.h"

/* Label length bytes: 00xxxxxx a label, 11xxxxxx a pointer; 01 and 10
 * (RFC 6891's extended labels, never deployed) are refused. */
#define LABEL_PTR 0xc0
#define LABEL_MAX 63

/*
 * Read the name starting at the cursor when it must be written out in
 * full (the first name of a message: there is nothing before it to point
 * at). On success the cursor is past the name, *wire_len is its length in
 * bytes and, if text is not NULL, text holds its lower-case text form and
 * *text_ok says whether that form is faithful.
 */
static int name_read_plain(struct cursor *c, char *text, bool *text_ok,
			   size_t *wire_len)
{
	size_t start = cursor_pos(c), tlen = 0;
	bool ok = true;

	for (;;) {
		uint8_t n = cursor_u8(c);
		const uint8_t *label;

		if (cursor_failed(c) || (n & LABEL_PTR))
			return -EINVAL;
		if (n == 0)
			break;
		label = cursor_ptr(c, n);
		if (!label || cursor_pos(c) - start > VK_DNS_NAME_MAX - 1)
			return -EINVAL;
		if (tlen > 0) {
			if (text)
				text[tlen] = '.';
			tlen++;
		}
		for (uint8_t i = 0; i < n; i++, tlen++) {
			uint8_t ch = label[i];

			if (ch == '.' || ch < 0x21 || ch > 0x7e)
				ok = false;
			if (ch >= 'A' && ch <= 'Z')
				ch = (uint8_t)(ch - 'A' + 'a');
			if (text)
				text[tlen] = (char)ch;
		}
	}
	if (text)
		text[tlen] = '\0';
	if (text_ok)
		*text_ok = ok;
	*wire_len = cursor_pos(c) - start;
	return 0;
}

/* Step over a name that may end in a compression pointer. */
static bool name_skip(struct cursor *c)
{
	size_t start = cursor_pos(c);

	for (;;) {
		uint8_t n = cursor_u8(c);

		if (cursor_failed(c))
			return false;
		if ((n & LABEL_PTR) == LABEL_PTR)
			return cursor_skip(c, 1);
		if (n & LABEL_PTR)
			return false;
		if (n == 0)
			return true;
		if (!cursor_skip(c, n) ||
		    cursor_pos(c) - start > VK_DNS_NAME_MAX)
			return false;
	}
}

/* Walk the answer, authority and additional sections for an OPT record. */
static void query_find_opt(struct cursor *c, struct vk_dns_query *q)
{
	uint32_t records = (uint32_t)q->ancount + q->nscount + q->arcount;

	for (uint32_t i = 0; i < records; i++) {
		bool is_root = cursor_remaining(c) > 0 && c->buf[c->pos] == 0;
		uint16_t type, klass, rdlen;
		uint32_t ttl;

		if (!name_skip(c))
			return;
		type = cursor_be16(c);
		klass = cursor_be16(c);
		ttl = cursor_be32(c);
		rdlen = cursor_be16(c);
		if (!cursor_skip(c, rdlen))
			return;
		if (i >= (uint32_t)q->ancount + q->nscount &&
		    type == VK_DNS_TYPE_OPT && is_root && !q->has_opt) {
			q->has_opt = true;
			q->udp_size = klass;
			q->edns_version = (uint8_t)(ttl >> 16);
			q->edns_do = (ttl & 0x8000u) != 0;
		}
	}
}

int vk_dns_query_parse(const uint8_t *msg, size_t len, struct vk_dns_query *q)
{
	struct cursor c;

	memset(q, 0, sizeof(*q));
	cursor_init(&c, msg, len);
	q->id = cursor_be16(&c);
	q->flags = cursor_be16(&c);
	q->qdcount = cursor_be16(&c);
	q->ancount = cursor_be16(&c);
	q->nscount = cursor_be16(&c);
	q->arcount = cursor_be16(&c);
	if (cursor_failed(&c))
		return -EINVAL;
	if (q->qdcount > 0) {
		size_t name_len;

		if (name_read_plain(&c, q->name, &q->name_ok, &name_len) < 0)
			return -EINVAL;
		q->qtype = cursor_be16(&c);
		q->qclass = cursor_be16(&c);
		if (cursor_failed(&c))
			return -EINVAL;
		q->has_question = true;
		q->question_len = name_len + 4;
		/* Further questions (nobody sends them) are skipped. */
		for (uint16_t i = 1; i < q->qdcount; i++)
			if (!name_skip(&c) || !cursor_skip(&c, 4))
				return 0;
	}
	query_find_opt(&c, q);
	return 0;
}

static uint8_t ascii_lower(uint8_t ch)
{
	return ch >= 'A' && ch <= 'Z' ? (uint8_t)(ch - 'A' + 'a') : ch;
}

bool vk_dns_question_match(const uint8_t *query, size_t query_len,
			   const uint8_t *answer, size_t answer_len)
{
	struct cursor c;
	size_t name_len;
	uint16_t qd, flags;

	if (query_len < VK_DNS_HDR_LEN || answer_len < VK_DNS_HDR_LEN)
		return false;
	qd = load_be16(answer + 4);
	flags = load_be16(answer + 2);
	if (load_be16(query + 4) == 0)
		return qd == 0;
	/* Servers may leave the question out of an error. */
	if (qd == 0)
		return VK_DNS_RCODE(flags) != VK_DNS_NOERROR;
	cursor_init(&c, query, query_len);
	cursor_skip(&c, VK_DNS_HDR_LEN);
	if (name_read_plain(&c, NULL, NULL, &name_len) < 0 ||
	    query_len - VK_DNS_HDR_LEN < name_len + 4 ||
	    answer_len - VK_DNS_HDR_LEN < name_len + 4)
		return false;
	for (size_t i = VK_DNS_HDR_LEN; i < VK_DNS_HDR_LEN + name_len + 4; i++)
		if (ascii_lower(query[i]) != ascii_lower(answer[i]))
			return false;
	return true;
}

size_t vk_dns_udp_limit(const struct vk_dns_query *q)
{
	if (q->has_opt && q->udp_size > VK_DNS_UDP_MIN)
		return q->udp_size;
	return VK_DNS_UDP_MIN;
}

/* A write cursor for the few messages the gateway builds. */
struct out {
	uint8_t *buf;
	size_t cap, len;
	bool failed;
};

static void out_bytes(struct out *o, const void *p, size_t n)
{
	if (o->failed || o->cap - o->len < n) {
		o->failed = true;
		return;
	}
	memcpy(o->buf + o->len, p, n);
	o->len += n;
}

static void out_be16(struct out *o, uint16_t v)
{
	uint8_t b[2];

	store_be16(b, v);
	out_bytes(o, b, 2);
}

static void out_be32(struct out *o, uint32_t v)
{
	uint8_t b[4];

	store_be32(b, v);
	out_bytes(o, b, 4);
}

static uint16_t answer_flags(uint16_t qflags, unsigned rcode, bool aa)
{
	uint16_t f = VK_DNS_QR | VK_DNS_RA | (qflags & (0xfu << 11)) |
		     (qflags & VK_DNS_RD);

	if (aa)
		f |= VK_DNS_AA;
	return (uint16_t)(f | (rcode & 0xfu));
}

ssize_t vk_dns_answer_build(uint8_t *buf, size_t cap, const uint8_t *msg,
			    const struct vk_dns_query *q, unsigned rcode,
			    bool aa, const struct vk_dns_rr *rr, size_t n_rr,
			    uint16_t udp_size)
{
	struct out o = { .buf = buf, .cap = cap };

	if (!q->has_question)
		n_rr = 0;
	if (rcode > 0xfu && !q->has_opt)
		rcode = VK_DNS_SERVFAIL;
	out_be16(&o, q->id);
	out_be16(&o, answer_flags(q->flags, rcode, aa));
	out_be16(&o, q->has_question ? 1 : 0);
	out_be16(&o, (uint16_t)n_rr);
	out_be16(&o, 0);
	out_be16(&o, q->has_opt ? 1 : 0);
	if (q->has_question)
		out_bytes(&o, msg + VK_DNS_HDR_LEN, q->question_len);
	for (size_t i = 0; i < n_rr; i++) {
		uint16_t alen = rr[i].type == VK_DNS_TYPE_A ? 4 : 16;

		out_be16(&o, LABEL_PTR << 8 | VK_DNS_HDR_LEN);
		out_be16(&o, rr[i].type);
		out_be16(&o, VK_DNS_CLASS_IN);
		out_be32(&o, rr[i].ttl);
		out_be16(&o, alen);
		out_bytes(&o, rr[i].addr, alen);
	}
	if (q->has_opt) {
		/* Root name, type, our size; TTL: extended rcode, version 0,
		 * DO echoed (RFC 3225); no options. */
		out_bytes(&o, "", 1);
		out_be16(&o, VK_DNS_TYPE_OPT);
		out_be16(&o, udp_size);
		out_be32(&o, (uint32_t)(rcode >> 4) << 24 |
				     (q->edns_do ? 0x8000u : 0));
		out_be16(&o, 0);
	}
	if (o.failed)
		return -ENOSPC;
	return (ssize_t)o.len;
}

size_t vk_dns_header_answer(uint8_t out[VK_DNS_HDR_LEN], const uint8_t *msg,
			    unsigned rcode)
{
	memset(out, 0, VK_DNS_HDR_LEN);
	memcpy(out, msg, 2);
	store_be16(out + 2, answer_flags(load_be16(msg + 2), rcode, false));
	return VK_DNS_HDR_LEN;
}

size_t vk_dns_truncate(uint8_t *msg, size_t len)
{
	struct cursor c;
	size_t name_len, new_len = VK_DNS_HDR_LEN;
	uint16_t qd;

	if (len < VK_DNS_HDR_LEN)
		return 0;
	qd = load_be16(msg + 4);
	if (qd > 0) {
		cursor_init(&c, msg, len);
		cursor_skip(&c, VK_DNS_HDR_LEN);
		if (name_read_plain(&c, NULL, NULL, &name_len) < 0 ||
		    !cursor_skip(&c, 4))
			return 0;
		new_len = cursor_pos(&c);
		qd = 1;
	}
	store_be16(msg + 2, (uint16_t)(load_be16(msg + 2) | VK_DNS_TC));
	store_be16(msg + 4, qd);
	memset(msg + 6, 0, 6);
	return new_len;
}

ssize_t vk_dns_name_encode(const char *text, size_t text_len, uint8_t *out,
			   size_t cap)
{
	size_t pos = 0, i = 0;

	if (text_len > 0 && text[text_len - 1] == '.')
		text_len--;
	while (i < text_len) {
		const char *dot = memchr(text + i, '.', text_len - i);
		size_t n = (dot ? (size_t)(dot - text) : text_len) - i;

		if (n == 0 || n > LABEL_MAX)
			return -EINVAL;
		if (pos + 1 + n + 1 > VK_DNS_NAME_MAX)
			return -EINVAL;
		if (cap < pos + 1 + n)
			return -ENOSPC;
		out[pos++] = (uint8_t)n;
		memcpy(out + pos, text + i, n);
		pos += n;
		i += n + 1;
		/* "a." was cut above; "a.." leaves an empty last label. */
		if (dot && i == text_len)
			return -EINVAL;
	}
	if (cap < pos + 1)
		return -ENOSPC;
	out[pos++] = 0;
	return (ssize_t)pos;
}

/* ---------------------------------------------------------------- resolv.conf */

static bool port_parse(const char *s, uint16_t *port)
{
	char *end;
	unsigned long v;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v == 0 || v > 65535)
		return false;
	*port = (uint16_t)v;
	return true;
}

/* One address token: "1.2.3.4", "1.2.3.4:53", "fe80::1%eth0",
 * "[::1]:5353". Returns false if it is none of these. */
static bool ns_parse(char *tok, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	uint16_t port = 53;
	char *scope, *colon;

	memset(ss, 0, sizeof(*ss));
	if (tok[0] == '[') {
		char *close = strchr(tok, ']');

		if (!close)
			return false;
		*close = '\0';
		if (close[1] != '\0' &&
		    (close[1] != ':' || !port_parse(close + 2, &port)))
			return false;
		tok++;
	} else if ((colon = strchr(tok, ':')) && !strchr(colon + 1, ':')) {
		/* One colon: an IPv4 address and a port. */
		*colon = '\0';
		if (!port_parse(colon + 1, &port))
			return false;
	}
	if (inet_pton(AF_INET, tok, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		*len = sizeof(*sin);
		return true;
	}
	scope = strchr(tok, '%');
	if (scope)
		*scope++ = '\0';
	if (inet_pton(AF_INET6, tok, &sin6->sin6_addr) != 1)
		return false;
	if (scope) {
		uint16_t num;

		if (port_parse(scope, &num))
			sin6->sin6_scope_id = num;
		else
			sin6->sin6_scope_id = if_nametoindex(scope);
		if (sin6->sin6_scope_id == 0)
			return false;
	}
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(port);
	*len = sizeof(*sin6);
	return true;
}

void vk_resolv_parse(const char *text, size_t len, struct vk_resolv *out)
{
	static const char key[] = "nameserver";
	size_t pos = 0;

	memset(out, 0, sizeof(*out));
	while (pos < len && out->n < VK_RESOLV_MAX) {
		const char *line = text + pos;
		const char *nl = memchr(line, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - line) : len - pos;
		char tok[128];
		size_t i = sizeof(key) - 1, t = 0;

		pos += n + 1;
		if (n <= i || memcmp(line, key, i) != 0 ||
		    (line[i] != ' ' && line[i] != '\t'))
			continue;
		while (i < n && (line[i] == ' ' || line[i] == '\t'))
			i++;
		while (i < n && line[i] != ' ' && line[i] != '\t' &&
		       line[i] != '\r' && line[i] != '#' && line[i] != ';' &&
		       t < sizeof(tok) - 1)
			tok[t++] = line[i++];
		tok[t] = '\0';
		if (t == 0 || t == sizeof(tok) - 1)
			continue;
		if (ns_parse(tok, &out->ns[out->n], &out->ns_len[out->n]))
			out->n++;
	}
}

#define RESOLV_READ_MAX (64u << 10)

int vk_resolv_load(const char *path, struct vk_resolv *out)
{
	struct stat st;
	char *buf;
	size_t got = 0;
	int fd, ret = 0;

	memset(out, 0, sizeof(*out));
	/* Non-blocking: a FIFO put in its place must not hang the loop. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = -EINVAL;
		goto out_close;
	}
	buf = malloc(RESOLV_READ_MAX);
	if (!buf) {
		ret = -ENOMEM;
		goto out_close;
	}
	while (got < RESOLV_READ_MAX) {
		ssize_t n = read(fd, buf + got, RESOLV_READ_MAX - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			goto out_free;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	vk_resolv_parse(buf, got, out);
out_free:
	free(buf);
out_close:
	close(fd);
	return ret;
}
