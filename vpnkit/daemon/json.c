// SPDX-License-Identifier: MIT
/*
 * The control socket's JSON: a strict reader of one flat object per line
 * ({"op":"add","forward":"tcp:..."}) and string output for the replies.
 *
 * The reader follows RFC 8259's grammar for what it accepts (strings with
 * every escape, numbers, true, false, null) and refuses the rest with a
 * short reason: nested objects and arrays, trailing commas, bare words,
 * invalid UTF-8, control characters in strings, duplicate keys, more than
 * JSON_MAX_MEMBERS members. Decoded keys and values are copied into the
 * object's own store, which is large enough for any input of
 * JSON_MAX_TEXT bytes (decoding never makes text longer), so the parser
 * allocates nothing. Number values are kept as their validated text.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"

struct json_reader {
	const char *p, *end;
	struct json_flat *out;
	const char *why;
};

static void skip_ws(struct json_reader *r)
{
	while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' ||
				 *r->p == '\n' || *r->p == '\r'))
		r->p++;
}

static int fail(struct json_reader *r, const char *why)
{
	if (!r->why)
		r->why = why;
	return -EINVAL;
}

/* Append bytes to the store; the store is sized so this cannot fail
 * for valid input, but check anyway. */
static int store_put(struct json_reader *r, const void *s, size_t n)
{
	struct json_flat *o = r->out;

	if (n > sizeof(o->store) - o->used)
		return fail(r, "object too large");
	memcpy(o->store + o->used, s, n);
	o->used += n;
	return 0;
}

static int hex4(struct json_reader *r, unsigned *out)
{
	unsigned v = 0;

	if (r->end - r->p < 4)
		return fail(r, "short \\u escape");
	for (int i = 0; i < 4; i++) {
		char ch = *r->p++;

		v <<= 4;
		if (ch >= '0' && ch <= '9')
			v |= (unsigned)(ch - '0');
		else if (ch >= 'a' && ch <= 'f')
			v |= (unsigned)(ch - 'a' + 10);
		else if (ch >= 'A' && ch <= 'F')
			v |= (unsigned)(ch - 'A' + 10);
		else
			return fail(r, "bad \\u escape");
	}
	*out = v;
	return 0;
}

static int put_utf8(struct json_reader *r, unsigned cp)
{
	uint8_t b[4];
	size_t n;

	if (cp < 0x80) {
		b[0] = (uint8_t)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (uint8_t)(0xc0 | cp >> 6);
		b[1] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (uint8_t)(0xe0 | cp >> 12);
		b[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
		b[2] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		b[0] = (uint8_t)(0xf0 | cp >> 18);
		b[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3f));
		b[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
		b[3] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 4;
	}
	return store_put(r, b, n);
}

/* Length of a valid UTF-8 sequence at p (lead byte >= 0x80), or 0. */
static size_t utf8_seq(const uint8_t *p, const uint8_t *end)
{
	size_t n;
	unsigned cp, min;

	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		n = 2;
		cp = p[0] & 0x1fu;
		min = 0x80;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		n = 3;
		cp = p[0] & 0x0fu;
		min = 0x800;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		n = 4;
		cp = p[0] & 0x07u;
		min = 0x10000;
	} else {
		return 0;
	}
	if ((size_t)(end - p) < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3fu);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/* A string at r->p (the opening quote); decoded into the store,
 * NUL-terminated; *out points at it. */
static int read_string(struct json_reader *r, const char **out)
{
	struct json_flat *o = r->out;
	size_t start = o->used;
	unsigned cp = 0, lo = 0;
	int err;

	r->p++; /* the quote */
	for (;;) {
		const uint8_t *u;
		size_t n;

		if (r->p >= r->end)
			return fail(r, "unterminated string");
		u = (const uint8_t *)r->p;
		if (*u == '"') {
			r->p++;
			break;
		}
		if (*u < 0x20)
			return fail(r, "control character in string");
		if (*u >= 0x80) {
			n = utf8_seq(u, (const uint8_t *)r->end);
			if (n == 0)
				return fail(r, "invalid UTF-8");
			err = store_put(r, u, n);
			if (err)
				return err;
			r->p += n;
			continue;
		}
		if (*u != '\\') {
			err = store_put(r, u, 1);
			if (err)
				return err;
			r->p++;
			continue;
		}
		r->p++;
		if (r->p >= r->end)
			return fail(r, "unterminated string");
		switch (*r->p++) {
		case '"':
			err = store_put(r, "\"", 1);
			break;
		case '\\':
			err = store_put(r, "\\", 1);
			break;
		case '/':
			err = store_put(r, "/", 1);
			break;
		case 'b':
			err = store_put(r, "\b", 1);
			break;
		case 'f':
			err = store_put(r, "\f", 1);
			break;
		case 'n':
			err = store_put(r, "\n", 1);
			break;
		case 'r':
			err = store_put(r, "\r", 1);
			break;
		case 't':
			err = store_put(r, "\t", 1);
			break;
		case 'u':
			err = hex4(r, &cp);
			if (err)
				return err;
			if (cp >= 0xdc00 && cp <= 0xdfff)
				return fail(r, "lone low surrogate");
			if (cp >= 0xd800 && cp <= 0xdbff) {
				if (r->end - r->p < 2 || r->p[0] != '\\' ||
				    r->p[1] != 'u')
					return fail(r, "lone high surrogate");
				r->p += 2;
				err = hex4(r, &lo);
				if (err)
					return err;
				if (lo < 0xdc00 || lo > 0xdfff)
					return fail(r, "bad surrogate pair");
				cp = 0x10000 + ((cp - 0xd800) << 10) +
				     (lo - 0xdc00);
			}
			if (cp == 0)
				return fail(r, "\\u0000 in string");
			err = put_utf8(r, cp);
			break;
		default:
			return fail(r, "bad escape");
		}
		if (err)
			return err;
	}
	err = store_put(r, "", 1);
	if (err)
		return err;
	*out = o->store + start;
	return 0;
}

static bool is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

/* A number, RFC 8259 section 6: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int read_number(struct json_reader *r, const char **out)
{
	const char *s = r->p;
	size_t start = r->out->used;
	int err;

	if (r->p < r->end && *r->p == '-')
		r->p++;
	if (r->p >= r->end || !is_digit(*r->p))
		return fail(r, "bad number");
	if (*r->p == '0') {
		r->p++;
	} else {
		while (r->p < r->end && is_digit(*r->p))
			r->p++;
	}
	if (r->p < r->end && *r->p == '.') {
		r->p++;
		if (r->p >= r->end || !is_digit(*r->p))
			return fail(r, "bad number");
		while (r->p < r->end && is_digit(*r->p))
			r->p++;
	}
	if (r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
		r->p++;
		if (r->p < r->end && (*r->p == '+' || *r->p == '-'))
			r->p++;
		if (r->p >= r->end || !is_digit(*r->p))
			return fail(r, "bad number");
		while (r->p < r->end && is_digit(*r->p))
			r->p++;
	}
	err = store_put(r, s, (size_t)(r->p - s));
	if (!err)
		err = store_put(r, "", 1);
	if (err)
		return err;
	*out = r->out->store + start;
	return 0;
}

static bool read_word(struct json_reader *r, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n) != 0)
		return false;
	r->p += n;
	return true;
}

static int read_value(struct json_reader *r, struct json_member *m)
{
	if (r->p >= r->end)
		return fail(r, "missing value");
	switch (*r->p) {
	case '"':
		m->kind = JSON_STRING;
		return read_string(r, &m->value);
	case '{':
	case '[':
		return fail(r, "nested objects and arrays are not accepted");
	case 't':
		m->kind = JSON_TRUE;
		m->value = "true";
		return read_word(r, "true") ? 0 : fail(r, "bad value");
	case 'f':
		m->kind = JSON_FALSE;
		m->value = "false";
		return read_word(r, "false") ? 0 : fail(r, "bad value");
	case 'n':
		m->kind = JSON_NULL;
		m->value = "null";
		return read_word(r, "null") ? 0 : fail(r, "bad value");
	default:
		m->kind = JSON_NUMBER;
		return read_number(r, &m->value);
	}
}

int json_flat_parse(const char *text, size_t len, struct json_flat *out,
		    const char **why)
{
	struct json_reader r = { .p = text, .end = text + len, .out = out };
	struct json_member *m;
	int err;

	memset(out->m, 0, sizeof(out->m));
	out->n = 0;
	out->used = 0;
	*why = NULL;
	if (len > JSON_MAX_TEXT) {
		*why = "line too long";
		return -EINVAL;
	}
	skip_ws(&r);
	if (r.p >= r.end || *r.p != '{') {
		err = fail(&r, "not a JSON object");
		goto out;
	}
	r.p++;
	skip_ws(&r);
	if (r.p < r.end && *r.p == '}') {
		r.p++;
		goto done;
	}
	for (;;) {
		skip_ws(&r);
		if (r.p >= r.end || *r.p != '"') {
			err = fail(&r, "expected a string key");
			goto out;
		}
		if (out->n == JSON_MAX_MEMBERS) {
			err = fail(&r, "too many members");
			goto out;
		}
		m = &out->m[out->n];
		err = read_string(&r, &m->key);
		if (err)
			goto out;
		if (json_flat_get(out, m->key)) {
			err = fail(&r, "duplicate key");
			goto out;
		}
		skip_ws(&r);
		if (r.p >= r.end || *r.p != ':') {
			err = fail(&r, "expected ':'");
			goto out;
		}
		r.p++;
		skip_ws(&r);
		err = read_value(&r, m);
		if (err)
			goto out;
		out->n++;
		skip_ws(&r);
		if (r.p < r.end && *r.p == ',') {
			r.p++;
			continue;
		}
		if (r.p < r.end && *r.p == '}') {
			r.p++;
			break;
		}
		err = fail(&r, "expected ',' or '}'");
		goto out;
	}
done:
	skip_ws(&r);
	if (r.p != r.end) {
		err = fail(&r, "trailing characters after the object");
		goto out;
	}
	return 0;
out:
	*why = r.why;
	out->n = 0;
	return err;
}

const struct json_member *json_flat_get(const struct json_flat *obj,
					const char *key)
{
	for (unsigned i = 0; i < obj->n; i++) {
		if (strcmp(obj->m[i].key, key) == 0)
			return &obj->m[i];
	}
	return NULL;
}

void strbuf_release(struct strbuf *sb)
{
	free(sb->s);
	memset(sb, 0, sizeof(*sb));
}

static bool strbuf_grow(struct strbuf *sb, size_t more)
{
	size_t need, cap;
	char *s;

	if (sb->failed)
		return false;
	if (__builtin_add_overflow(sb->len, more + 1, &need))
		goto fail;
	if (need <= sb->cap && sb->s)
		return true;
	cap = sb->cap ? sb->cap : 256;
	while (cap < need) {
		if (__builtin_mul_overflow(cap, 2, &cap))
			goto fail;
	}
	s = realloc(sb->s, cap);
	if (!s)
		goto fail;
	sb->s = s;
	sb->cap = cap;
	return true;
fail:
	sb->failed = true;
	return false;
}

void strbuf_add(struct strbuf *sb, const char *s, size_t n)
{
	if (!strbuf_grow(sb, n))
		return;
	memcpy(sb->s + sb->len, s, n);
	sb->len += n;
	sb->s[sb->len] = '\0';
}

void strbuf_addf(struct strbuf *sb, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !strbuf_grow(sb, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(sb->s + sb->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	sb->len += (size_t)n;
}

void strbuf_add_json(struct strbuf *sb, const char *s)
{
	const uint8_t *u = (const uint8_t *)s;

	strbuf_add(sb, "\"", 1);
	for (; *u; u++) {
		switch (*u) {
		case '"':
			strbuf_add(sb, "\\\"", 2);
			break;
		case '\\':
			strbuf_add(sb, "\\\\", 2);
			break;
		case '\n':
			strbuf_add(sb, "\\n", 2);
			break;
		case '\r':
			strbuf_add(sb, "\\r", 2);
			break;
		case '\t':
			strbuf_add(sb, "\\t", 2);
			break;
		default:
			if (*u < 0x20 || *u == 0x7f) {
				strbuf_addf(sb, "\\u%04x", *u);
			} else if (*u < 0x80) {
				strbuf_add(sb, (const char *)u, 1);
			} else {
				/* Valid UTF-8 as it is; a stray byte as '?'. */
				size_t n = utf8_seq(
					u, u + strnlen((const char *)u, 4));

				strbuf_add(sb, n ? (const char *)u : "?",
					   n ? n : 1);
				if (n)
					u += n - 1;
			}
		}
	}
	strbuf_add(sb, "\"", 1);
}
