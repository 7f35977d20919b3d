// SPDX-License-Identifier: MIT
/*
 * qcow-tool's small helpers: messages, qemu's number and size syntax,
 * "-o key=value" lists, qemu's human size format and path joining.
 *
 * The parsers follow qemu 7.2 (util/cutils.c do_strtosz, qapi_bool_parse,
 * qemu-img.c cvtnum_full) closely enough that the same inputs are
 * accepted and rejected, with the same messages.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tool.h"

static void vmsg(const char *prefix, const char *fmt, va_list ap)
{
	char buf[2048];

	vsnprintf(buf, sizeof(buf), fmt, ap);
	fprintf(stderr, "%s: %s%s\n", TOOL_NAME, prefix, buf);
}

void tool_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmsg("", fmt, ap);
	va_end(ap);
}

void tool_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmsg("warning: ", fmt, ap);
	va_end(ap);
}

int tool_usage_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmsg("", fmt, ap);
	va_end(ap);
	fprintf(stderr, "Try '%s --help' for more information\n", TOOL_NAME);
	return 1;
}

int tool_output_json(const char *output, bool *json)
{
	*json = output && !strcmp(output, "json");
	if (output && !*json && strcmp(output, "human") != 0) {
		tool_err("--output must be used with human or json as argument.");
		return -1;
	}
	return 0;
}

int tool_opt_err(int c, char **argv)
{
	char shortopt[3] = { '-', (char)optopt, 0 };
	/*
	 * qemu-img names argv[optind - 1], which is wrong for an option in
	 * the middle of a cluster ("-xq"): name a short option by itself.
	 */
	const char *name = optopt > ' ' && optopt < 127 ? shortopt :
							  argv[optind - 1];

	if (c == ':')
		return tool_usage_err("missing argument for option '%s'", name);
	return tool_usage_err("unrecognized option '%s'", name);
}

const char *errstr(int neg_errno)
{
	return strerror(neg_errno < 0 ? -neg_errno : neg_errno);
}

/* --- numbers --- */

static uint64_t suffix_mul(char c)
{
	switch (c) {
	case 'b':
	case 'B':
		return 1;
	case 'k':
	case 'K':
		return 1ull << 10;
	case 'm':
	case 'M':
		return 1ull << 20;
	case 'g':
	case 'G':
		return 1ull << 30;
	case 't':
	case 'T':
		return 1ull << 40;
	case 'p':
	case 'P':
		return 1ull << 50;
	case 'e':
	case 'E':
		return 1ull << 60;
	}
	return 0;
}

int parse_size(const char *s, uint64_t *out)
{
	const char *p = s, *digits;
	char *end;
	unsigned long long val;
	long double frac = 0;
	uint64_t mul, r;

	while (*p == ' ' || *p == '\t' || *p == '\n')
		p++;
	if (*p == '+')
		p++;
	digits = p;
	if (*p < '0' || *p > '9')
		return -EINVAL;
	errno = 0;
	val = strtoull(digits, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	if (val == 0 && end == digits + 1 && (*end == 'x' || *end == 'X')) {
		/* Hexadecimal: no fraction; a suffix is deprecated. */
		errno = 0;
		val = strtoull(digits, &end, 16);
		if (errno == ERANGE)
			return -ERANGE;
		if (end == digits + 2 || *end == '.')
			return -EINVAL;
		if (suffix_mul(*end)) {
			tool_warn(
				"Using a multiplier suffix on hex numbers is deprecated: %s",
				s);
		}
	} else if (*end == '.') {
		const char *f = end + 1;

		while (*f >= '0' && *f <= '9') {
			frac = frac * 10 + (*f - '0');
			f++;
		}
		for (size_t i = 0; i < (size_t)(f - end - 1); i++)
			frac /= 10;
		if (*f == 'e' || *f == 'E') {
			/* An exponent, not the exabyte suffix, if digits follow. */
			if ((f[1] >= '0' && f[1] <= '9') || f[1] == '+' ||
			    f[1] == '-')
				return -EINVAL;
		}
		end = (char *)f;
	}
	mul = suffix_mul(*end);
	if (mul)
		end++;
	else
		mul = 1;
	if (*end)
		return -EINVAL;
	if (mul == 1) {
		if (frac != 0)
			return -EINVAL;
		*out = val;
		return 0;
	}
	if (__builtin_mul_overflow((uint64_t)val, mul, &r))
		return -ERANGE;
	{
		long double extra = frac * (long double)mul + 0.5L;

		if (extra >= 18446744073709551616.0L ||
		    __builtin_add_overflow(r, (uint64_t)extra, &r))
			return -ERANGE;
	}
	*out = r;
	return 0;
}

int64_t cvtnum_range(const char *name, const char *value, int64_t min,
		     int64_t max)
{
	uint64_t v;
	int r = parse_size(value, &v);

	if (r < 0 && r != -ERANGE) {
		tool_err(
			"Invalid %s specified. You may use k, M, G, T, P or E suffixes for",
			name);
		tool_err(
			"kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
		return -1;
	}
	if (r == -ERANGE || v > (uint64_t)max || (int64_t)v < min) {
		tool_err("Invalid %s specified. Must be between %lld and %lld.",
			 name, (long long)min, (long long)max);
		return -1;
	}
	return (int64_t)v;
}

int64_t cvtnum(const char *name, const char *value)
{
	return cvtnum_range(name, value, 0, INT64_MAX);
}

int parse_ulong(const char *s, unsigned long long *out)
{
	char *end;
	const char *p = s;

	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == '-' || !*p)
		return -EINVAL;
	errno = 0;
	*out = strtoull(p, &end, 0);
	if (errno || end == p || *end)
		return -EINVAL;
	return 0;
}

int parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "on", "yes", "true", "y" };
	static const char *const no[] = { "off", "no", "false", "n" };

	for (size_t i = 0; i < 4; i++) {
		if (!strcmp(s, yes[i])) {
			*out = true;
			return 0;
		}
		if (!strcmp(s, no[i])) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

void size_to_str(uint64_t v, char *buf, size_t n)
{
	static const char *const suffixes[] = { "",   "Ki", "Mi", "Gi",
						"Ti", "Pi", "Ei" };
	/*
	 * qemu picks the unit from frexp(v / (1000.0 / 1024.0)), so that
	 * it switches to the next unit once the number reaches 1000; the
	 * loop computes the same binary exponent without libm.
	 */
	double x = (double)v / (1000.0 / 1024.0);
	int e = 0, i;

	while (x >= 1.0) {
		x /= 2;
		e++;
	}
	i = (e - 1) / 10;
	if (i < 0)
		i = 0;
	if (i > 6)
		i = 6;
	snprintf(buf, n, "%0.3g %sB", (double)v / (double)(1ull << (i * 10)),
		 suffixes[i]);
}

char *path_combine(const char *base, const char *name)
{
	const char *slash;
	size_t len;
	char *r;

	if (name[0] == '/' || !base)
		return strdup(name);
	slash = strrchr(base, '/');
	len = slash ? (size_t)(slash + 1 - base) : 0;
	size_t nlen = strlen(name);

	r = malloc(len + nlen + 1);
	if (!r)
		return NULL;
	memcpy(r, base, len);
	memcpy(r + len, name, nlen + 1);
	return r;
}

/* --- -o lists --- */

static char *take_until(const char **pp, char stop, char stop2)
{
	const char *p = *pp;
	size_t cap = strlen(p) + 1, n = 0;
	char *out = malloc(cap);

	if (!out)
		return NULL;
	while (*p) {
		if (*p == ',' && p[1] == ',') {
			out[n++] = ',';
			p += 2;
			continue;
		}
		if (*p == stop || *p == stop2)
			break;
		out[n++] = *p++;
	}
	out[n] = 0;
	*pp = p;
	return out;
}

int kvlist_parse(struct kvlist *l, const char *s)
{
	const char *p = s;

	while (*p) {
		struct kv kv;
		struct kv *nv;

		kv.key = take_until(&p, '=', ',');
		if (!kv.key)
			return -ENOMEM;
		if (*p == '=') {
			p++;
			kv.val = take_until(&p, ',', ',');
		} else {
			kv.val = strdup("on");
		}
		if (!kv.val) {
			free(kv.key);
			return -ENOMEM;
		}
		if (*p == ',')
			p++;
		nv = realloc(l->v, (l->n + 1) * sizeof(*nv));
		if (!nv) {
			free(kv.key);
			free(kv.val);
			return -ENOMEM;
		}
		l->v = nv;
		l->v[l->n++] = kv;
	}
	return 0;
}

const char *kvlist_get(const struct kvlist *l, const char *key)
{
	for (size_t i = l->n; i-- > 0;)
		if (!strcmp(l->v[i].key, key))
			return l->v[i].val;
	return NULL;
}

void kvlist_release(struct kvlist *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].key);
		free(l->v[i].val);
	}
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

void *xmalloc_aligned(size_t size)
{
	void *p = NULL;

	if (posix_memalign(&p, 4096, size ? size : 1)) {
		tool_err("out of memory (%zu bytes)", size);
		return NULL;
	}
	return p;
}

bool tool_is_zero(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	size_t i = 0;

	/* Check the first 16 bytes, then let memcmp compare the buffer with
	 * itself shifted by 16: all zero iff both agree. */
	for (; i < len && i < 16; i++)
		if (p[i])
			return false;
	if (len <= 16)
		return true;
	return memcmp(p, p + 16, len - 16) == 0;
}
