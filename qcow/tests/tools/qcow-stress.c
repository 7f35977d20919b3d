/* SPDX-License-Identifier: MIT */
/*
 * qcow-stress: a seeded random workload against libqcow, checked against
 * a raw model of the guest disk kept in memory.
 *
 * The program creates IMAGE with qcow_create (or opens it if it exists),
 * and repeats random guest operations on both the image and the model:
 * writes at unaligned offsets and lengths (sometimes all zeros, sometimes
 * several MiB, sometimes vectored), write-zeroes with and without unmap,
 * discard, compressed cluster writes, flush, growing resize, compaction
 * and close/reopen. After every operation it reads the touched range and
 * one random range back and compares them with the model; every
 * --verify-every operations, after a reopen and at the end it compares the
 * whole disk. At the end the model is written to MODEL.raw so that the
 * end-to-end scripts can ask the oracle, qemu-img, whether the image
 * really holds that content (`qemu-img compare`) and is consistent
 * (`qemu-img check`).
 *
 * Model semantics follow qcow.h: discard releases whole clusters only
 * (never the partial cluster at the end of the disk), and a discarded
 * cluster reads as zeros, or as the backing file on a version 2 image with
 * a backing file. For that the model needs the backing file's content as
 * a raw file: --backing-raw (a raw backing file serves as its own).
 *
 * Scripted modes, used by the space, locking and bad-input tests, run
 * before the random operations (whose count then defaults to 0):
 * --fill-range writes seeded random data, --fill-zero-range writes buffers
 * of zeros, --zero-range and --zero-unmap-range write zeroes,
 * --discard-range discards, --grow resizes; --hold keeps the image open
 * read-write for a while after printing "ready".
 *
 * Exit status: 0 when every operation succeeded and every read matched,
 * 1 otherwise (with the operation, its arguments and the first differing
 * byte on stderr; rerun with -v to see the whole sequence), 2 on bad usage,
 * 3 when the library refuses to open the image read-write with EROFS (a
 * feature it supports read-only).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <qcow/qcow.h>

#define MIB (1024u * 1024u)
#define MAX_IO (4u * MIB)
#define MAX_SCRIPT 64

static const char *prog = "qcow-stress";

enum script_kind { FILL, FILL_ZERO, ZERO, ZERO_UNMAP, DISCARD, GROW };

struct script_op {
	enum script_kind kind;
	uint64_t offset, len;
};

struct stress {
	/* configuration */
	const char *path, *model_path;
	struct qcow_open_opts oopts;
	uint64_t seed;
	unsigned long ops, verify_every;
	bool compact;
	bool verbose;
	uint64_t max_size;

	/* the image and what we know about it */
	struct qcow_image *img;
	uint32_t cluster;
	int version;
	bool has_backing;
	bool has_snapshots; /* compaction needs an image without */

	/* the model: guest disk content, and the backing file's */
	unsigned char *model;
	uint64_t size;
	unsigned char *backing;
	uint64_t backing_len;

	uint64_t rng;
	unsigned long opno;
	unsigned char *wbuf, *rbuf;
};

static void die(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));

/* --hold ends early, with a clean close, on SIGTERM or SIGINT. */
static void stop_holding(int sig)
{
	(void)sig;
}

static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void log_to_stderr(void *opaque, enum qcow_log_level level,
			  const char *msg)
{
	static const char *const names[] = { "error", "warning", "info",
					     "debug" };

	(void)opaque;
	if (level <= QCOW_LOG_WARN)
		fprintf(stderr, "%s: %s: %s\n", prog, names[level], msg);
}

/* xorshift64*: fast, seedable, good enough for test data and choices. */
static uint64_t rnd(struct stress *s)
{
	s->rng ^= s->rng >> 12;
	s->rng ^= s->rng << 25;
	s->rng ^= s->rng >> 27;
	return s->rng * 0x2545F4914F6CDD1DULL;
}

/* A uniform-enough number in [0, n), or 0 if n is 0. */
static uint64_t below(struct stress *s, uint64_t n)
{
	return n ? rnd(s) % n : 0;
}

static void fill_random(struct stress *s, unsigned char *p, size_t n)
{
	while (n >= 8) {
		uint64_t v = rnd(s);

		memcpy(p, &v, 8);
		p += 8;
		n -= 8;
	}
	while (n-- > 0)
		*p++ = (unsigned char)rnd(s);
}

/* Data that compresses well but still differs from write to write. */
static void fill_compressible(struct stress *s, unsigned char *p, size_t n)
{
	unsigned char a = (unsigned char)rnd(s), b = (unsigned char)rnd(s);
	size_t run = 1 + below(s, 64);

	for (size_t i = 0; i < n; i++)
		p[i] = (i / run) % 3 ? a : (unsigned char)(b + i / 997);
}

static uint64_t parse_size(const char *arg)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(arg, &end, 0);
	if (errno || end == arg)
		die("bad number: %s", arg);
	switch (*end) {
	case 'k':
	case 'K':
		v <<= 10;
		end++;
		break;
	case 'm':
	case 'M':
		v <<= 20;
		end++;
		break;
	case 'g':
	case 'G':
		v <<= 30;
		end++;
		break;
	default:
		break;
	}
	if (*end)
		die("bad number: %s", arg);
	return v;
}

static unsigned char *read_file(const char *path, uint64_t *len)
{
	struct stat st;
	unsigned char *p;
	size_t done = 0;
	int fd = open(path, O_RDONLY);

	if (fd < 0 || fstat(fd, &st) < 0)
		die("%s: %s", path, strerror(errno));
	p = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!p)
		die("out of memory");
	while (done < (size_t)st.st_size) {
		ssize_t r = read(fd, p + done, (size_t)st.st_size - done);

		if (r <= 0)
			die("%s: read: %s", path, r ? strerror(errno) : "EOF");
		done += (size_t)r;
	}
	close(fd);
	*len = (uint64_t)st.st_size;
	return p;
}

static void write_model(struct stress *s)
{
	int fd = open(s->model_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	uint64_t done = 0;

	if (fd < 0)
		die("%s: %s", s->model_path, strerror(errno));
	while (done < s->size) {
		ssize_t w = write(fd, s->model + done, s->size - done);

		if (w < 0)
			die("%s: write: %s", s->model_path, strerror(errno));
		done += (uint64_t)w;
	}
	if (close(fd) < 0)
		die("%s: close: %s", s->model_path, strerror(errno));
}

/* Backing content of guest bytes [off, off+len) (zeros past its end). */
static void backing_copy(const struct stress *s, unsigned char *dst,
			 uint64_t off, uint64_t len)
{
	uint64_t n = 0;

	if (s->backing && off < s->backing_len)
		n = s->backing_len - off < len ? s->backing_len - off : len;
	if (n)
		memcpy(dst, s->backing + off, n);
	memset(dst + n, 0, len - n);
}

static void fail_io(struct stress *s, const char *what, long long ret)
{
	const char *msg = s->img ? qcow_image_errmsg(s->img) : "";

	die("op %lu (seed %" PRIu64 "): %s failed: %s%s%s", s->opno, s->seed,
	    what, strerror((int)-ret), msg[0] ? ": " : "", msg);
}

static void trace(struct stress *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void trace(struct stress *s, const char *fmt, ...)
{
	va_list ap;

	if (!s->verbose)
		return;
	fprintf(stderr, "op %lu: ", s->opno);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void open_image(struct stress *s)
{
	struct qcow_error err = { 0 };
	struct qcow_info info;
	int ret = qcow_image_open(&s->img, s->path, &s->oopts, &err);

	if (ret < 0) {
		s->img = NULL;
		fprintf(stderr, "%s: %s: open: %s\n", prog, s->path,
			err.msg[0] ? err.msg : strerror(-ret));
		/* "cannot be written", as opposed to "broken": exit 3 */
		exit(ret == -EROFS && s->oopts.read_write ? 3 : 1);
	}
	ret = qcow_image_info(s->img, &info);
	if (ret < 0)
		fail_io(s, "info", ret);
	s->cluster = info.cluster_size;
	s->version = info.version;
	s->has_backing = info.backing_file != NULL;
	s->has_snapshots = info.nb_snapshots > 0;
	if (info.virtual_size != s->size && s->model)
		die("op %lu: virtual size %" PRIu64
		    " after open, model has %" PRIu64,
		    s->opno, info.virtual_size, s->size);
}

static void close_image(struct stress *s)
{
	int ret = qcow_image_close(s->img);

	s->img = NULL;
	if (ret < 0)
		fail_io(s, "close", ret);
}

/* Read [off, off+len) back, in one or several pieces, and compare. */
static void verify(struct stress *s, uint64_t off, uint64_t len,
		   const char *why)
{
	while (len > 0) {
		size_t n = len < MAX_IO ? (size_t)len : MAX_IO;
		ssize_t r;

		if (n > 1 && below(s, 8) == 0) {
			struct iovec iov[3];
			size_t a = 1 + below(s, n - 1);
			size_t b = below(s, n - a + 1);

			iov[0] = (struct iovec){ s->rbuf, a };
			iov[1] = (struct iovec){ s->rbuf + a, b };
			iov[2] = (struct iovec){ s->rbuf + a + b, n - a - b };
			r = qcow_image_preadv(s->img, iov, 3, off);
		} else {
			r = qcow_image_pread(s->img, s->rbuf, n, off);
		}
		if (r < 0)
			fail_io(s, "read", r);
		if ((size_t)r != n)
			die("op %lu: short read at %" PRIu64 ": %zd of %zu",
			    s->opno, off, r, n);
		if (memcmp(s->rbuf, s->model + off, n) != 0) {
			size_t i = 0;

			while (s->rbuf[i] == s->model[off + i])
				i++;
			die("op %lu (seed %" PRIu64 "): %s: mismatch at guest "
			    "offset %" PRIu64 " (0x%" PRIx64 "): read 0x%02x, "
			    "model 0x%02x",
			    s->opno, s->seed, why, off + i, off + i, s->rbuf[i],
			    s->model[off + i]);
		}
		off += n;
		len -= n;
	}
}

static void verify_all(struct stress *s, const char *why)
{
	if (qcow_image_size(s->img) != s->size)
		die("op %lu: image size %" PRIu64 ", model size %" PRIu64,
		    s->opno, qcow_image_size(s->img), s->size);
	verify(s, 0, s->size, why);
}

/* A random length, mostly small, sometimes several clusters or MiB. */
static uint64_t rand_len(struct stress *s)
{
	uint64_t r = below(s, 100), max;

	if (r < 40)
		max = 4096;
	else if (r < 70)
		max = 4 * (uint64_t)s->cluster;
	else if (r < 92)
		max = 256 * 1024;
	else
		max = MAX_IO;
	if (below(s, 3) == 0) {
		/* sector- or cluster-multiple lengths */
		uint64_t unit = below(s, 2) ? 512 : s->cluster;
		uint64_t units = max / unit, len;

		if (units == 0)
			units = 1;
		len = unit * (1 + below(s, units));

		return len < MAX_IO ? len : MAX_IO;
	}
	return 1 + below(s, max < MAX_IO ? max : MAX_IO);
}

/* A random range inside the disk: [*off, *off + *len), *len >= 1. */
static void rand_range(struct stress *s, uint64_t *off, uint64_t *len)
{
	uint64_t l = rand_len(s), o;

	if (l > s->size)
		l = s->size;
	switch (below(s, 4)) {
	case 0: /* cluster-aligned */
		o = below(s, s->size / s->cluster + 1) * s->cluster;
		break;
	case 1: /* sector-aligned */
		o = below(s, s->size / 512 + 1) * 512;
		break;
	case 2: /* near the end of the disk */
		o = s->size - below(s, 2 * (uint64_t)s->cluster + 1);
		break;
	default:
		o = below(s, s->size);
		break;
	}
	if (o >= s->size)
		o = s->size - 1;
	if (l > s->size - o)
		l = s->size - o;
	*off = o;
	*len = l;
}

enum write_kind {
	W_DATA, /* random or compressible data, one buffer */
	W_ZERO_BUF, /* a buffer of zeros (not write-zeroes) */
	W_VECTOR, /* data, in up to 8 iovecs */
};

static void do_write(struct stress *s, uint64_t off, uint64_t len,
		     enum write_kind kind)
{
	static const char *const names[] = { "write", "write-zero-buf",
					     "writev" };
	const char *what = names[kind];
	ssize_t r;

	trace(s, "%s off=%" PRIu64 " len=%" PRIu64, what, off, len);
	if (kind == W_ZERO_BUF)
		memset(s->wbuf, 0, len);
	else if (below(s, 4) == 0)
		fill_compressible(s, s->wbuf, len);
	else
		fill_random(s, s->wbuf, len);

	if (kind == W_VECTOR && len > 1) {
		struct iovec iov[8];
		int cnt = 0;
		size_t done = 0;

		while (done < len && cnt < 7) {
			size_t piece = 1 + below(s, len - done);

			if (below(s, 2))
				piece = (piece + 511) / 512 * 512;
			if (piece > len - done)
				piece = len - done;
			iov[cnt++] = (struct iovec){ s->wbuf + done, piece };
			done += piece;
		}
		if (done < len)
			iov[cnt++] =
				(struct iovec){ s->wbuf + done, len - done };
		r = qcow_image_pwritev(s->img, iov, cnt, off);
	} else {
		r = qcow_image_pwrite(s->img, s->wbuf, len, off);
	}
	if (r < 0)
		fail_io(s, what, r);
	if ((uint64_t)r != len)
		die("op %lu: short %s: %zd of %" PRIu64, s->opno, what, r, len);
	memcpy(s->model + off, s->wbuf, len);
	verify(s, off, len, what);
}

static void do_zeroes(struct stress *s, uint64_t off, uint64_t len,
		      unsigned flags)
{
	int r;

	trace(s, "write-zeroes%s off=%" PRIu64 " len=%" PRIu64,
	      flags & QCOW_ZERO_MAY_UNMAP ? "(unmap)" : "", off, len);
	r = qcow_image_write_zeroes(s->img, off, len, flags);
	if (r < 0)
		fail_io(s, "write-zeroes", r);
	memset(s->model + off, 0, len);
	verify(s, off, len, "write-zeroes");
}

static void do_discard(struct stress *s, uint64_t off, uint64_t len)
{
	uint64_t cs = s->cluster, first, end, full_end;
	int r;

	trace(s, "discard off=%" PRIu64 " len=%" PRIu64, off, len);
	r = qcow_image_discard(s->img, off, len);
	if (r < 0)
		fail_io(s, "discard", r);

	/*
	 * Whole clusters inside the range read as zeros (or the backing
	 * file on v2); a partial cluster at the end of the disk is never
	 * "whole", so a test cannot depend on how it is treated: random
	 * ranges avoid it (see pick_discard).
	 */
	first = (off + cs - 1) / cs * cs;
	end = (off + len) / cs * cs;
	full_end = s->size / cs * cs;
	if (end > full_end)
		end = full_end;
	if (first < end) {
		if (s->version == 2 && s->has_backing)
			backing_copy(s, s->model + first, first, end - first);
		else
			memset(s->model + first, 0, end - first);
	}
	verify(s, off, len, "discard");
}

static void pick_discard(struct stress *s, uint64_t *off, uint64_t *len)
{
	uint64_t full_end = s->size / s->cluster * s->cluster;

	rand_range(s, off, len);
	if (below(s, 2)) {
		/* most discards cover whole clusters */
		*off = *off / s->cluster * s->cluster;
		*len = (*len + s->cluster - 1) / s->cluster * s->cluster;
	}
	if (*off >= full_end) {
		*off = 0;
		*len = full_end ? s->cluster : 0;
	}
	if (*len > full_end - *off)
		*len = full_end - *off;
}

static void do_compressed(struct stress *s)
{
	uint64_t cs = s->cluster, nclusters = (s->size + cs - 1) / cs;
	uint64_t off = below(s, nclusters) * cs;
	size_t len = s->size - off < cs ? (size_t)(s->size - off) : cs;
	int r;

	trace(s, "write-compressed off=%" PRIu64 " len=%zu", off, len);
	if (below(s, 4) == 0)
		fill_random(s, s->wbuf, len);
	else
		fill_compressible(s, s->wbuf, len);
	r = qcow_image_write_compressed(s->img, s->wbuf, len, off);
	if (r < 0)
		fail_io(s, "write-compressed", r);
	memcpy(s->model + off, s->wbuf, len);
	verify(s, off, len, "write-compressed");
}

/* Grow the disk to new_size; the model grows with zeros. */
static void grow_to(struct stress *s, uint64_t new_size)
{
	unsigned char *m;
	int r;

	if (new_size < s->size)
		die("--grow %" PRIu64 ": the disk has %" PRIu64
		    " bytes already",
		    new_size, s->size);
	trace(s, "resize %" PRIu64 " -> %" PRIu64, s->size, new_size);
	r = qcow_image_resize(s->img, new_size);
	/*
	 * A version 2 image cannot store zero clusters, so growing it over a
	 * longer backing file would need the new area written with zeros;
	 * qemu refuses with ENOTSUP there, and so may we (ENOTSUP is
	 * EOPNOTSUPP on Linux).
	 */
	if (r == -ENOTSUP && s->version == 2 && s->has_backing &&
	    s->backing_len > s->size) {
		trace(s, "resize refused (v2 over a longer backing file)");
		return;
	}
	if (r < 0)
		fail_io(s, "resize", r);
	m = realloc(s->model, new_size);
	if (!m)
		die("out of memory");
	memset(m + s->size, 0, new_size - s->size);
	s->model = m;
	s->size = new_size;
	verify_all(s, "resize");
}

static void do_resize(struct stress *s)
{
	uint64_t grow = 512 * (1 + below(s, 8 * MIB / 512));

	if (s->size + grow <= s->max_size)
		grow_to(s, s->size + grow);
}

static void do_reopen(struct stress *s)
{
	trace(s, "close+reopen");
	close_image(s);
	open_image(s);
	verify_all(s, "reopen");
}

static void do_compact(struct stress *s)
{
	int r;

	trace(s, "compact");
	r = qcow_image_compact(s->img);
	if (r < 0)
		fail_io(s, "compact", r);
	verify_all(s, "compact");
}

static void random_op(struct stress *s)
{
	uint64_t off, len, r = below(s, 1000);
	int ret;

	if (r < 330) {
		rand_range(s, &off, &len);
		do_write(s, off, len, W_DATA);
	} else if (r < 380) {
		rand_range(s, &off, &len);
		do_write(s, off, len, W_VECTOR);
	} else if (r < 430) {
		rand_range(s, &off, &len);
		do_write(s, off, len, W_ZERO_BUF);
	} else if (r < 510) {
		rand_range(s, &off, &len);
		do_zeroes(s, off, len, 0);
	} else if (r < 580) {
		rand_range(s, &off, &len);
		do_zeroes(s, off, len, QCOW_ZERO_MAY_UNMAP);
	} else if (r < 670) {
		pick_discard(s, &off, &len);
		if (len)
			do_discard(s, off, len);
	} else if (r < 720) {
		do_compressed(s);
	} else if (r < 880) {
		rand_range(s, &off, &len);
		trace(s, "read off=%" PRIu64 " len=%" PRIu64, off, len);
		verify(s, off, len, "read");
	} else if (r < 960) {
		trace(s, "flush");
		ret = qcow_image_flush(s->img);
		if (ret < 0)
			fail_io(s, "flush", ret);
	} else if (r < 975) {
		do_resize(s);
	} else if (r < 990) {
		do_reopen(s);
	} else if (s->compact && !s->has_snapshots) {
		do_compact(s);
	}
}

static void script_op(struct stress *s, const struct script_op *op)
{
	uint64_t off = op->offset, len = op->len;

	if (op->kind == GROW) {
		grow_to(s, op->offset);
		s->opno++;
		return;
	}
	if (off > s->size || len > s->size - off)
		die("range %" PRIu64 "+%" PRIu64 " beyond the disk (%" PRIu64
		    ")",
		    off, len, s->size);
	while ((op->kind == FILL || op->kind == FILL_ZERO) && len > 0) {
		uint64_t n = len < MAX_IO ? len : MAX_IO;

		do_write(s, off, n, op->kind == FILL ? W_DATA : W_ZERO_BUF);
		off += n;
		len -= n;
	}
	if (op->kind == ZERO)
		do_zeroes(s, off, len, 0);
	else if (op->kind == ZERO_UNMAP)
		do_zeroes(s, off, len, QCOW_ZERO_MAY_UNMAP);
	else if (op->kind == DISCARD)
		do_discard(s, off, len);
	s->opno++;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: %s [options] IMAGE MODEL.raw\n"
		"  --seed N            random seed (default 1)\n"
		"  --ops N             random operations (default 1000, 0 with scripted ops)\n"
		"  --verify-every N    compare the whole disk every N operations (100)\n"
		"  --size N            virtual size when creating (default 64M, or backing)\n"
		"  --max-size N        no resize beyond this (default 2 x size)\n"
		"  --version 2|3  --cluster-size N  --refcount-bits N  --lazy\n"
		"  --backing FILE      create with this backing file\n"
		"  --backing-fmt qcow2|raw\n"
		"  --backing-raw FILE  the backing chain's content as raw (from qemu-img)\n"
		"  --no-compact        no compaction among the random operations\n"
		"  --fill-range OFF LEN (random data) | --fill-zero-range OFF LEN (zero\n"
		"  buffers) | --zero-range OFF LEN | --zero-unmap-range OFF LEN\n"
		"  | --discard-range OFF LEN | --grow SIZE   scripted operations, in order\n"
		"  --hold SECONDS      at the end, print \"ready\" and keep the image open\n"
		"                      (SIGTERM ends the wait, the image is closed cleanly)\n"
		"  -v                  trace every operation on stderr\n"
		"A new image is created if IMAGE does not exist; otherwise IMAGE is opened\n"
		"and MODEL.raw must hold its content.\n",
		prog);
	exit(2);
}

enum {
	OPT_SEED = 256,
	OPT_OPS,
	OPT_VERIFY_EVERY,
	OPT_SIZE,
	OPT_MAX_SIZE,
	OPT_VERSION,
	OPT_CLUSTER,
	OPT_REFCOUNT,
	OPT_LAZY,
	OPT_BACKING,
	OPT_BACKING_FMT,
	OPT_BACKING_RAW,
	OPT_NO_COMPACT,
	OPT_FILL,
	OPT_ZERO,
	OPT_ZERO_UNMAP,
	OPT_DISCARD,
	OPT_HOLD,
	OPT_FILL_ZERO,
	OPT_GROW,
};

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "ops", required_argument, NULL, OPT_OPS },
		{ "verify-every", required_argument, NULL, OPT_VERIFY_EVERY },
		{ "size", required_argument, NULL, OPT_SIZE },
		{ "max-size", required_argument, NULL, OPT_MAX_SIZE },
		{ "version", required_argument, NULL, OPT_VERSION },
		{ "cluster-size", required_argument, NULL, OPT_CLUSTER },
		{ "refcount-bits", required_argument, NULL, OPT_REFCOUNT },
		{ "lazy", no_argument, NULL, OPT_LAZY },
		{ "backing", required_argument, NULL, OPT_BACKING },
		{ "backing-fmt", required_argument, NULL, OPT_BACKING_FMT },
		{ "backing-raw", required_argument, NULL, OPT_BACKING_RAW },
		{ "no-compact", no_argument, NULL, OPT_NO_COMPACT },
		{ "fill-range", required_argument, NULL, OPT_FILL },
		{ "zero-range", required_argument, NULL, OPT_ZERO },
		{ "zero-unmap-range", required_argument, NULL, OPT_ZERO_UNMAP },
		{ "discard-range", required_argument, NULL, OPT_DISCARD },
		{ "hold", required_argument, NULL, OPT_HOLD },
		{ "fill-zero-range", required_argument, NULL, OPT_FILL_ZERO },
		{ "grow", required_argument, NULL, OPT_GROW },
		{ NULL, 0, NULL, 0 },
	};
	struct qcow_create_opts copts = { .size = 64 * MIB };
	struct script_op script[MAX_SCRIPT];
	struct stress s = { .seed = 1, .verify_every = 100, .compact = true };
	const char *backing_raw = NULL;
	bool ops_given = false, size_given = false;
	unsigned nscript = 0, hold = 0;
	struct stat st;
	int c;

	while ((c = getopt_long(argc, argv, "v", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_SEED:
			s.seed = parse_size(optarg);
			break;
		case OPT_OPS:
			s.ops = parse_size(optarg);
			ops_given = true;
			break;
		case OPT_VERIFY_EVERY:
			s.verify_every = parse_size(optarg);
			break;
		case OPT_SIZE:
			copts.size = parse_size(optarg);
			size_given = true;
			break;
		case OPT_MAX_SIZE:
			s.max_size = parse_size(optarg);
			break;
		case OPT_VERSION:
			copts.version = (int)parse_size(optarg);
			break;
		case OPT_CLUSTER:
			copts.cluster_size = (uint32_t)parse_size(optarg);
			break;
		case OPT_REFCOUNT:
			copts.refcount_bits = (unsigned)parse_size(optarg);
			break;
		case OPT_LAZY:
			copts.lazy_refcounts = true;
			break;
		case OPT_BACKING:
			copts.backing_file = optarg;
			break;
		case OPT_BACKING_FMT:
			copts.backing_fmt = optarg;
			break;
		case OPT_BACKING_RAW:
			backing_raw = optarg;
			break;
		case OPT_NO_COMPACT:
			s.compact = false;
			break;
		case OPT_FILL:
		case OPT_FILL_ZERO:
		case OPT_ZERO:
		case OPT_ZERO_UNMAP:
		case OPT_DISCARD:
			if (nscript == MAX_SCRIPT || optind >= argc)
				usage();
			script[nscript].kind = c == OPT_FILL	  ? FILL :
					       c == OPT_FILL_ZERO ? FILL_ZERO :
					       c == OPT_ZERO	  ? ZERO :
					       c == OPT_ZERO_UNMAP ?
							       ZERO_UNMAP :
							       DISCARD;
			script[nscript].offset = parse_size(optarg);
			script[nscript].len = parse_size(argv[optind++]);
			nscript++;
			break;
		case OPT_GROW:
			if (nscript == MAX_SCRIPT)
				usage();
			script[nscript].kind = GROW;
			script[nscript].offset = parse_size(optarg);
			script[nscript].len = 0;
			nscript++;
			break;
		case OPT_HOLD:
			hold = (unsigned)parse_size(optarg);
			break;
		case 'v':
			s.verbose = true;
			break;
		default:
			usage();
		}
	}
	if (argc - optind != 2)
		usage();
	s.path = argv[optind];
	s.model_path = argv[optind + 1];
	if (!ops_given)
		s.ops = nscript || hold ? 0 : 1000;
	s.rng = s.seed * 0x9E3779B97F4A7C15ULL + 0x632BE59BD9B4E019ULL;
	s.oopts.read_write = true;
	s.oopts.log.fn = log_to_stderr;
	copts.log.fn = log_to_stderr;

	/* The backing file's content, for the initial model and v2 discard. */
	if (backing_raw)
		s.backing = read_file(backing_raw, &s.backing_len);
	else if (copts.backing_file && copts.backing_fmt &&
		 strcmp(copts.backing_fmt, "raw") == 0)
		s.backing = read_file(copts.backing_file, &s.backing_len);
	else if (copts.backing_file)
		die("--backing needs --backing-raw (or --backing-fmt raw)");

	if (stat(s.path, &st) == 0) {
		uint64_t model_len;

		s.model = read_file(s.model_path, &model_len);
		s.size = model_len;
		open_image(&s);
		if (s.has_backing && !s.backing)
			die("%s has a backing file: give --backing-raw",
			    s.path);
	} else {
		struct qcow_error err = { 0 };
		int ret;

		if (copts.backing_file && !size_given)
			copts.size = 0;
		ret = qcow_create(s.path, &copts, &err);
		if (ret < 0)
			die("%s: create: %s", s.path,
			    err.msg[0] ? err.msg : strerror(-ret));
		open_image(&s);
		s.size = qcow_image_size(s.img);
		if (copts.backing_file && !size_given &&
		    s.size != s.backing_len)
			die("created size %" PRIu64 ", backing has %" PRIu64,
			    s.size, s.backing_len);
		s.model = malloc(s.size ? s.size : 1);
		if (!s.model)
			die("out of memory");
		backing_copy(&s, s.model, 0, s.size);
	}
	if (!s.max_size)
		s.max_size = 2 * s.size;
	s.wbuf = malloc(MAX_IO);
	s.rbuf = malloc(MAX_IO);
	if (!s.wbuf || !s.rbuf)
		die("out of memory");

	verify_all(&s, "initial content");
	for (unsigned i = 0; i < nscript; i++)
		script_op(&s, &script[i]);
	for (unsigned long i = 0; i < s.ops; i++, s.opno++) {
		random_op(&s);
		/* one random range besides the touched one */
		if (s.size) {
			uint64_t off, len;

			rand_range(&s, &off, &len);
			verify(&s, off, len, "random read-back");
		}
		if (s.verify_every && (i + 1) % s.verify_every == 0)
			verify_all(&s, "periodic full read-back");
	}
	verify_all(&s, "final full read-back");
	write_model(&s);

	if (hold) {
		struct sigaction sa = { .sa_handler = stop_holding };

		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGINT, &sa, NULL);
		printf("ready\n");
		fflush(stdout);
		sleep(hold);
	}
	close_image(&s);
	free(s.wbuf);
	free(s.rbuf);
	free(s.model);
	free(s.backing);
	return 0;
}
