// SPDX-License-Identifier: MIT
/*
 * JSON output laid out exactly as qemu-img prints it.
 *
 * qemu-img builds a QObject tree from a QAPI struct and prints it with
 * qobject_to_json_pretty. Two details make its output recognisable, and
 * scripts that compare text (not parsed JSON) depend on them:
 *
 * - Key order. A QDict is a hash table of 512 buckets (tdb_hash of the
 *   key, modulo 512) and is printed bucket by bucket; inside a bucket the
 *   most recently inserted key comes first. So "virtual-size" always
 *   precedes "filename", and callers here add members in QAPI's field
 *   order so that colliding keys come out as qemu's do.
 * - Layout (qobject/json-writer.c): a member or element starts on a new
 *   line indented four spaces per level, a closing bracket goes on a line
 *   of its own unless the container is empty ("[]", "{}"), and strings
 *   escape control characters and everything outside printable ASCII as
 *   \uXXXX (uppercase hex, surrogate pairs beyond the BMP).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

enum json_type {
	JSON_INT,
	JSON_UINT,
	JSON_BOOL,
	JSON_STR,
	JSON_OBJECT,
	JSON_ARRAY,
};

struct json_member {
	char *key; /* NULL in arrays */
	struct json *val;
	unsigned bucket;
	size_t seq; /* insertion order */
};

struct json {
	enum json_type type;
	bool failed; /* a child could not be allocated */
	union {
		int64_t i;
		uint64_t u;
		bool b;
		char *s;
	} v;
	struct json_member *m;
	size_t n;
};

#define QDICT_BUCKET_MAX 512

/* qobject/qdict.c: tdb_hash, the hash qemu uses for QDict keys. */
static unsigned qdict_bucket(const char *name)
{
	unsigned value = 0x238F13AFu * (unsigned)strlen(name);

	for (unsigned i = 0; name[i]; i++)
		value = value +
			((unsigned)(unsigned char)name[i] << (i * 5 % 24));
	return (1103515243u * value + 12345u) % QDICT_BUCKET_MAX;
}

static struct json *json_new(enum json_type type)
{
	struct json *j = calloc(1, sizeof(*j));

	if (j)
		j->type = type;
	return j;
}

struct json *json_object(void)
{
	return json_new(JSON_OBJECT);
}

struct json *json_array(void)
{
	return json_new(JSON_ARRAY);
}

struct json *json_int(int64_t v)
{
	struct json *j = json_new(JSON_INT);

	if (j)
		j->v.i = v;
	return j;
}

struct json *json_uint(uint64_t v)
{
	struct json *j = json_new(JSON_UINT);

	if (j)
		j->v.u = v;
	return j;
}

struct json *json_bool(bool v)
{
	struct json *j = json_new(JSON_BOOL);

	if (j)
		j->v.b = v;
	return j;
}

struct json *json_str(const char *s)
{
	struct json *j = json_new(JSON_STR);

	if (j && !(j->v.s = strdup(s ? s : ""))) {
		free(j);
		return NULL;
	}
	return j;
}

void json_add(struct json *parent, const char *key, struct json *child)
{
	struct json_member *nm;

	if (!parent) {
		json_free(child);
		return;
	}
	if (!child) {
		parent->failed = true;
		return;
	}
	nm = realloc(parent->m, (parent->n + 1) * sizeof(*nm));
	if (!nm) {
		parent->failed = true;
		json_free(child);
		return;
	}
	parent->m = nm;
	nm = &parent->m[parent->n];
	nm->key = NULL;
	nm->bucket = 0;
	nm->seq = parent->n;
	nm->val = child;
	if (parent->type == JSON_OBJECT) {
		nm->key = strdup(key);
		if (!nm->key) {
			parent->failed = true;
			json_free(child);
			return;
		}
		nm->bucket = qdict_bucket(key);
	}
	parent->n++;
}

/* Recursion depth is the nesting of the JSON, a handful of levels. */
// NOLINTNEXTLINE(misc-no-recursion)
void json_free(struct json *j)
{
	if (!j)
		return;
	for (size_t i = 0; i < j->n; i++) {
		free(j->m[i].key);
		json_free(j->m[i].val);
	}
	free(j->m);
	if (j->type == JSON_STR)
		free(j->v.s);
	free(j);
}

/* Decode one UTF-8 sequence; returns the code point or -1 (and consumes
 * one byte) if it is not valid. */
static long utf8_next(const unsigned char **pp)
{
	const unsigned char *p = *pp;
	unsigned n, i;
	long cp, min;

	if (p[0] < 0x80) {
		*pp = p + 1;
		return p[0];
	}
	if ((p[0] & 0xe0) == 0xc0) {
		n = 1, cp = p[0] & 0x1f, min = 0x80;
	} else if ((p[0] & 0xf0) == 0xe0) {
		n = 2, cp = p[0] & 0x0f, min = 0x800;
	} else if ((p[0] & 0xf8) == 0xf0) {
		n = 3, cp = p[0] & 0x07, min = 0x10000;
	} else {
		*pp = p + 1;
		return -1;
	}
	for (i = 1; i <= n; i++) {
		if ((p[i] & 0xc0) != 0x80) {
			*pp = p + i;
			return -1;
		}
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	*pp = p + n + 1;
	/* qemu's "modified UTF-8" lets C0 80 stand for NUL. */
	if (cp < min && !(n == 1 && cp == 0))
		return -1;
	if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return -1;
	return cp;
}

static void print_str(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	fputc('"', f);
	while (*p) {
		long cp = utf8_next(&p);

		switch (cp) {
		case '"':
			fputs("\\\"", f);
			break;
		case '\\':
			fputs("\\\\", f);
			break;
		case '\b':
			fputs("\\b", f);
			break;
		case '\f':
			fputs("\\f", f);
			break;
		case '\n':
			fputs("\\n", f);
			break;
		case '\r':
			fputs("\\r", f);
			break;
		case '\t':
			fputs("\\t", f);
			break;
		default:
			if (cp < 0)
				cp = 0xfffd;
			if (cp > 0xffff)
				fprintf(f, "\\u%04lX\\u%04lX",
					0xd800 + ((cp - 0x10000) >> 10),
					0xdc00 + ((cp - 0x10000) & 0x3ff));
			else if (cp < 0x20 || cp >= 0x7f)
				fprintf(f, "\\u%04lX", cp);
			else
				fputc((int)cp, f);
		}
	}
	fputc('"', f);
}

/* The writer's state, as in qemu's JSONWriter. */
struct writer {
	FILE *f;
	unsigned depth;
	bool need_comma;
	bool started;
};

static void newline(struct writer *w)
{
	fprintf(w->f, "\n%*s", (int)(w->depth * 4), "");
}

static void comma_name(struct writer *w, const char *key)
{
	if (w->need_comma) {
		fputc(',', w->f);
		newline(w);
	} else {
		if (w->started)
			newline(w);
		w->need_comma = true;
	}
	w->started = true;
	if (key) {
		print_str(w->f, key);
		fputs(": ", w->f);
	}
}

static int member_order(const void *a, const void *b)
{
	const struct json_member *x = a, *y = b;

	if (x->bucket != y->bucket)
		return x->bucket < y->bucket ? -1 : 1;
	/* The newest key heads its bucket's list. */
	return x->seq > y->seq ? -1 : x->seq < y->seq ? 1 : 0;
}

/* Recursion depth is the nesting of the JSON, a handful of levels. */
// NOLINTNEXTLINE(misc-no-recursion)
static int emit(struct writer *w, const char *key, const struct json *j)
{
	struct json_member *order = NULL;

	if (j->failed)
		return -ENOMEM;
	comma_name(w, key);
	switch (j->type) {
	case JSON_INT:
		fprintf(w->f, "%" PRId64, j->v.i);
		return 0;
	case JSON_UINT:
		fprintf(w->f, "%" PRIu64, j->v.u);
		return 0;
	case JSON_BOOL:
		fputs(j->v.b ? "true" : "false", w->f);
		return 0;
	case JSON_STR:
		print_str(w->f, j->v.s);
		return 0;
	case JSON_OBJECT:
	case JSON_ARRAY:
		break;
	}
	if (j->n) {
		order = malloc(j->n * sizeof(*order));
		if (!order)
			return -ENOMEM;
		memcpy(order, j->m, j->n * sizeof(*order));
		if (j->type == JSON_OBJECT)
			qsort(order, j->n, sizeof(*order), member_order);
	}
	fputc(j->type == JSON_OBJECT ? '{' : '[', w->f);
	w->depth++;
	w->need_comma = false;
	for (size_t i = 0; i < j->n; i++) {
		int r = emit(w, order[i].key, order[i].val);

		if (r < 0) {
			free(order);
			return r;
		}
	}
	free(order);
	w->depth--;
	if (w->need_comma)
		newline(w);
	fputc(j->type == JSON_OBJECT ? '}' : ']', w->f);
	w->need_comma = true;
	return 0;
}

int json_print(FILE *f, const struct json *j)
{
	struct writer w = { .f = f };

	if (!j)
		return -ENOMEM;
	return emit(&w, NULL, j);
}
