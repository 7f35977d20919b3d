/* SPDX-License-Identifier: MIT */
/*
 * qcow-powercut: does an image survive losing power at any moment?
 *
 * Theory of operation. The program makes a starting image (qcow_create,
 * then a few random guest writes, then a clean close) and keeps its bytes.
 * It then opens a copy through a recording struct qcow_io_ops backend and
 * runs a seeded random guest workload: writes, write-zeroes, discards,
 * compressed writes, flushes, close/reopen, growing resizes, compaction.
 * The backend forwards every call to the POSIX backend and appends each
 * pwritev (offset and data), punch_hole, truncate and flush to a log.
 * Each guest operation remembers the stretch of the log it produced.
 *
 * A power cut after log entry c leaves a file that holds the starting
 * bytes, every entry up to the last flush before c, and any subset, in any
 * order, of the entries between that flush and c (a disk may reorder or
 * drop writes it was never asked to make durable). For many cuts (all of
 * them if the log is short, otherwise an even spread plus random ones) and
 * a few such subsets per cut (the exact prefix, random subsets with random
 * order, and optionally torn writes made of random 512-byte pieces), the
 * program builds that file and asks the oracle:
 *   - `qemu-img check` must exit 0, or 3 (leaks only); 2 (corruption) is a
 *     failure, except on a lazy-refcounts image whose dirty bit is set;
 *   - when it found anything, `qemu-img check -r leaks` on a copy (`-r all`
 *     for a dirty lazy image) must leave it clean (exit 0), and so must
 *     libqcow's own repair on another copy (a read-write open, which
 *     rebuilds the refcounts of a dirty image, then qcow_image_check
 *     repairing leaks, then close), as judged by `qemu-img check`;
 *   - libqcow, read-only, must return what the model says for every sector
 *     whose last write completed before the last completed guest flush
 *     (qcow_image_flush or close) preceding the cut and that no later
 *     operation started before the cut touched; the same holds for both
 *     repaired copies. Everything else may be old or new.
 * The first failing cut is described in full (cut, variant, applied and
 * dropped log entries, guest operations in flight) and its file is kept
 * as DIR/failed-cut-N.qcow2. Checking runs in --jobs worker processes.
 * --sabotage drops a quarter of the flushed writes, to show the checks
 * can fail.
 *
 * Usage: qcow-powercut [options] DIR (a scratch directory that exists).
 * Exit status: 0 if every cut passed, 1 otherwise, 2 on bad usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <qcow/qcow.h>

#define MIB (1024u * 1024u)
#define MAX_IO (256u * 1024u)
#define SECTOR 512u

static const char *prog = "qcow-powercut";

/* ---- helpers ---------------------------------------------------------- */

static void die(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));

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

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p)
		die("out of memory");
	return p;
}

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		die("out of memory");
	return p;
}

static void log_to_stderr(void *opaque, enum qcow_log_level level,
			  const char *msg)
{
	static const char *const names[] = { "error", "warning", "info",
					     "debug" };

	(void)opaque;
	if (level <= QCOW_LOG_ERR)
		fprintf(stderr, "%s: %s: %s\n", prog, names[level], msg);
}

static uint64_t parse_num(const char *arg)
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
	default:
		break;
	}
	if (*end)
		die("bad number: %s", arg);
	return v;
}

static uint64_t rng_next(uint64_t *state)
{
	*state ^= *state >> 12;
	*state ^= *state << 25;
	*state ^= *state >> 27;
	return *state * 0x2545F4914F6CDD1DULL;
}

/* A number in [0, n), or 0 if n is 0. */
static uint64_t rng_below(uint64_t *state, uint64_t n)
{
	return n ? rng_next(state) % n : 0;
}

static unsigned char *read_whole(const char *path, uint64_t *len)
{
	struct stat st;
	unsigned char *p;
	size_t done = 0;
	int fd = open(path, O_RDONLY);

	if (fd < 0 || fstat(fd, &st) < 0)
		die("%s: %s", path, strerror(errno));
	p = xmalloc((size_t)st.st_size);
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

/*
 * Make the file at path hold exactly p[0..len). It is overwritten in place
 * rather than truncated first: freeing and reallocating its blocks for
 * every cut is slow on file systems mounted with online discard.
 */
static void write_whole(const char *path, const unsigned char *p, uint64_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT, 0644);
	uint64_t done = 0;

	if (fd < 0)
		die("%s: %s", path, strerror(errno));
	while (done < len) {
		ssize_t w = pwrite(fd, p + done, len - done, (off_t)done);

		if (w < 0)
			die("%s: write: %s", path, strerror(errno));
		done += (uint64_t)w;
	}
	if (ftruncate(fd, (off_t)len) < 0)
		die("%s: truncate: %s", path, strerror(errno));
	if (close(fd) < 0)
		die("%s: close: %s", path, strerror(errno));
}

/* ---- the recording backend -------------------------------------------- */

enum fop_kind { FOP_WRITE, FOP_FLUSH, FOP_PUNCH, FOP_TRUNC };

struct fop {
	enum fop_kind kind;
	uint64_t off, len; /* TRUNC: off is the new length */
	size_t data; /* WRITE: offset of the bytes in the arena */
};

struct recorder {
	int fd; /* first: qcow_posix_io's opaque */
	bool on;
	struct fop *ops;
	size_t nops, cap;
	unsigned char *arena;
	size_t arena_len, arena_cap;
};

static void rec_add(struct recorder *r, const struct fop *op)
{
	if (r->nops == r->cap) {
		r->cap = r->cap ? 2 * r->cap : 1024;
		r->ops = xrealloc(r->ops, r->cap * sizeof(*r->ops));
	}
	r->ops[r->nops++] = *op;
}

static ssize_t rec_preadv(void *opaque, const struct iovec *iov, int iovcnt,
			  uint64_t offset)
{
	struct recorder *r = opaque;

	return qcow_posix_io.preadv(&r->fd, iov, iovcnt, offset);
}

static ssize_t rec_pwritev(void *opaque, const struct iovec *iov, int iovcnt,
			   uint64_t offset)
{
	struct recorder *r = opaque;
	ssize_t ret = qcow_posix_io.pwritev(&r->fd, iov, iovcnt, offset);
	struct fop op = { .kind = FOP_WRITE, .off = offset };
	size_t left;

	if (ret <= 0 || !r->on)
		return ret;
	/* Record what reached the file (a short write records its part). */
	op.len = (uint64_t)ret;
	if (r->arena_len + op.len > r->arena_cap) {
		while (r->arena_len + op.len > r->arena_cap)
			r->arena_cap = r->arena_cap ? 2 * r->arena_cap : MIB;
		r->arena = xrealloc(r->arena, r->arena_cap);
	}
	op.data = r->arena_len;
	left = (size_t)ret;
	for (int i = 0; i < iovcnt && left > 0; i++) {
		size_t n = iov[i].iov_len < left ? iov[i].iov_len : left;

		memcpy(r->arena + r->arena_len, iov[i].iov_base, n);
		r->arena_len += n;
		left -= n;
	}
	rec_add(r, &op);
	return ret;
}

static int rec_flush(void *opaque)
{
	struct recorder *r = opaque;
	int ret = qcow_posix_io.flush(&r->fd);

	if (ret == 0 && r->on)
		rec_add(r, &(struct fop){ .kind = FOP_FLUSH });
	return ret;
}

static int rec_punch_hole(void *opaque, uint64_t offset, uint64_t len)
{
	struct recorder *r = opaque;
	int ret;

	if (!qcow_posix_io.punch_hole)
		return -EOPNOTSUPP;
	ret = qcow_posix_io.punch_hole(&r->fd, offset, len);
	if (ret == 0 && r->on)
		rec_add(r, &(struct fop){ .kind = FOP_PUNCH,
					  .off = offset,
					  .len = len });
	return ret;
}

static int rec_truncate(void *opaque, uint64_t len)
{
	struct recorder *r = opaque;
	int ret = qcow_posix_io.truncate(&r->fd, len);

	if (ret == 0 && r->on)
		rec_add(r, &(struct fop){ .kind = FOP_TRUNC, .off = len });
	return ret;
}

static int64_t rec_size(void *opaque)
{
	struct recorder *r = opaque;

	return qcow_posix_io.size(&r->fd);
}

static int64_t rec_allocated(void *opaque)
{
	struct recorder *r = opaque;

	if (!qcow_posix_io.allocated)
		return -ENOTSUP;
	return qcow_posix_io.allocated(&r->fd);
}

static const struct qcow_io_ops recording_io = {
	.preadv = rec_preadv,
	.pwritev = rec_pwritev,
	.flush = rec_flush,
	.punch_hole = rec_punch_hole,
	.truncate = rec_truncate,
	.size = rec_size,
	.allocated = rec_allocated,
};

/* ---- a file image in memory, to replay the log onto ------------------- */

struct fstate {
	unsigned char *p;
	uint64_t len, cap;
};

static void fs_reserve(struct fstate *f, uint64_t len)
{
	if (f->p && len <= f->cap)
		return;
	f->cap = len + len / 4 + MIB;
	f->p = xrealloc(f->p, f->cap);
}

static void fs_set_len(struct fstate *f, uint64_t len)
{
	fs_reserve(f, len);
	if (len > f->len)
		memset(f->p + f->len, 0, len - f->len);
	f->len = len;
}

static void fs_copy(struct fstate *dst, const struct fstate *src)
{
	fs_reserve(dst, src->len);
	if (src->len)
		memcpy(dst->p, src->p, src->len);
	dst->len = src->len;
}

/* Apply [off, off+len) of log entry op (a piece of it, for torn writes). */
static void fs_apply(struct fstate *f, const struct recorder *r,
		     const struct fop *op, uint64_t off, uint64_t len)
{
	switch (op->kind) {
	case FOP_WRITE:
		if (off + len > f->len)
			fs_set_len(f, off + len);
		memcpy(f->p + off, r->arena + op->data + (off - op->off), len);
		break;
	case FOP_PUNCH:
		if (off < f->len)
			memset(f->p + off, 0,
			       off + len > f->len ? f->len - off : len);
		break;
	case FOP_TRUNC:
		fs_set_len(f, op->off);
		break;
	case FOP_FLUSH:
		break;
	}
}

/* ---- the guest workload and its model --------------------------------- */

enum gop_kind {
	G_WRITE,
	G_ZERO,
	G_DISCARD,
	G_COMPRESSED,
	G_FLUSH,
	G_CLOSE,
	G_OPEN,
	G_RESIZE,
	G_COMPACT,
};

static const char *const gop_names[] = {
	"write", "write-zeroes", "discard", "write-compressed", "flush",
	"close", "open",	 "resize",  "compact",
};

struct gop {
	enum gop_kind kind;
	uint64_t off, len; /* guest range; RESIZE: [old size, new size) */
	size_t data; /* WRITE, COMPRESSED: bytes in the data arena */
	size_t log_start, log_end;
};

struct run {
	/* configuration */
	const char *dir;
	struct qcow_create_opts copts;
	uint64_t seed;
	unsigned long ops, prefill;
	unsigned max_cuts, variants;
	bool torn, compact, lazy, verbose, sabotage;
	const char *qemu_img;
	const char *dump_path;

	uint64_t rng;
	char start_path[4096], work_path[4096], cut_path[4096];
	char repair_path[4096], ours_path[4096], out_path[4096];
	char failed_path[4096];

	/* the image under test */
	struct qcow_image *img;
	struct qcow_open_opts oopts;
	struct recorder rec;
	uint32_t cluster;
	int version;
	bool has_backing;
	unsigned char *backing;
	uint64_t backing_len;

	/* the live model (what the guest sees now) */
	unsigned char *model;
	uint64_t size;

	/* guest operations with their data */
	struct gop *gops;
	size_t ngops, gcap;
	unsigned char *gdata;
	size_t gdata_len, gdata_cap;

	unsigned char *buf;
	struct fstate initial;

	/* checking, split over worker processes (cut i goes to worker
	 * i % jobs); each writes its findings to its own report file */
	unsigned jobs, worker;
	FILE *report;
	size_t first_failed_cut;
	unsigned long failures, checked;
};

static void backing_copy(const struct run *r, unsigned char *dst, uint64_t off,
			 uint64_t len)
{
	uint64_t n = 0;

	if (r->backing && off < r->backing_len)
		n = r->backing_len - off < len ? r->backing_len - off : len;
	if (n)
		memcpy(dst, r->backing + off, n);
	memset(dst + n, 0, len - n);
}

/*
 * Apply guest operation g to a model of *size bytes (reallocated on
 * resize). The same function advances the live model and the durable one.
 */
static void model_apply(const struct run *r, unsigned char **model,
			uint64_t *size, const struct gop *g)
{
	uint64_t cs = r->cluster, first, end, full_end;

	switch (g->kind) {
	case G_WRITE:
	case G_COMPRESSED:
		memcpy(*model + g->off, r->gdata + g->data, g->len);
		break;
	case G_ZERO:
		memset(*model + g->off, 0, g->len);
		break;
	case G_DISCARD:
		first = (g->off + cs - 1) / cs * cs;
		end = (g->off + g->len) / cs * cs;
		full_end = *size / cs * cs;
		if (end > full_end)
			end = full_end;
		if (first >= end)
			break;
		if (r->version == 2 && r->has_backing)
			backing_copy(r, *model + first, first, end - first);
		else
			memset(*model + first, 0, end - first);
		break;
	case G_RESIZE:
		*model = xrealloc(*model, g->off + g->len);
		memset(*model + g->off, 0, g->len);
		*size = g->off + g->len;
		break;
	default:
		break;
	}
}

static void fail_lib(struct run *r, const char *what, long long ret)
{
	const char *msg = r->img ? qcow_image_errmsg(r->img) : "";

	die("guest op %zu (seed %" PRIu64 "): %s failed: %s%s%s", r->ngops,
	    r->seed, what, strerror((int)-ret), msg[0] ? ": " : "", msg);
}

static void open_image(struct run *r, const char *path)
{
	struct qcow_error err = { 0 };
	struct qcow_info info;
	int ret = qcow_image_open(&r->img, path, &r->oopts, &err);

	if (ret < 0) {
		r->img = NULL;
		die("%s: open: %s", path,
		    err.msg[0] ? err.msg : strerror(-ret));
	}
	ret = qcow_image_info(r->img, &info);
	if (ret < 0)
		fail_lib(r, "info", ret);
	r->cluster = info.cluster_size;
	r->version = info.version;
	r->has_backing = info.backing_file != NULL;
}

static void close_image(struct run *r)
{
	int ret = qcow_image_close(r->img);

	r->img = NULL;
	if (ret < 0)
		fail_lib(r, "close", ret);
}

static void fill_data(struct run *r, unsigned char *p, size_t n)
{
	switch (rng_below(&r->rng, 5)) {
	case 0:
		memset(p, 0, n);
		break;
	case 1: {
		unsigned char a = (unsigned char)rng_next(&r->rng);

		for (size_t i = 0; i < n; i++)
			p[i] = (unsigned char)(a + i / 509);
		break;
	}
	default:
		for (size_t i = 0; i < n; i++)
			p[i] = (unsigned char)rng_next(&r->rng);
		break;
	}
}

static void rand_range(struct run *r, uint64_t *off, uint64_t *len)
{
	uint64_t cs = r->cluster, l, o;

	switch (rng_below(&r->rng, 4)) {
	case 0:
		l = 1 + rng_below(&r->rng, 4096);
		break;
	case 1:
		l = cs * (1 + rng_below(&r->rng, 4));
		break;
	case 2:
		l = 1 + rng_below(&r->rng, 3 * cs);
		break;
	default:
		l = 1 + rng_below(&r->rng, MAX_IO);
		break;
	}
	if (l > MAX_IO)
		l = MAX_IO;
	if (l > r->size)
		l = r->size;
	if (rng_below(&r->rng, 2))
		o = rng_below(&r->rng, r->size / cs) * cs;
	else
		o = rng_below(&r->rng, r->size);
	if (l > r->size - o)
		l = r->size - o;
	*off = o;
	*len = l;
}

/* Run one guest operation on the image and the live model; record it. */
static void guest_op(struct run *r, struct gop *g, const unsigned char *data)
{
	int ret = 0;
	ssize_t n;

	g->log_start = r->rec.nops;
	switch (g->kind) {
	case G_WRITE:
		n = qcow_image_pwrite(r->img, data, g->len, g->off);
		if (n != (ssize_t)g->len)
			fail_lib(r, "write", n < 0 ? n : -EIO);
		break;
	case G_COMPRESSED:
		ret = qcow_image_write_compressed(r->img, data, g->len, g->off);
		break;
	case G_ZERO:
		ret = qcow_image_write_zeroes(
			r->img, g->off, g->len,
			(unsigned)(g->data & 1) ? QCOW_ZERO_MAY_UNMAP : 0);
		break;
	case G_DISCARD:
		ret = qcow_image_discard(r->img, g->off, g->len);
		break;
	case G_FLUSH:
		ret = qcow_image_flush(r->img);
		break;
	case G_CLOSE:
		close_image(r);
		break;
	case G_OPEN:
		open_image(r, r->work_path);
		break;
	case G_RESIZE:
		ret = qcow_image_resize(r->img, g->off + g->len);
		break;
	case G_COMPACT:
		ret = qcow_image_compact(r->img);
		break;
	}
	if (ret < 0)
		fail_lib(r, gop_names[g->kind], ret);
	g->log_end = r->rec.nops;
	model_apply(r, &r->model, &r->size, g);
	if (r->verbose)
		fprintf(stderr,
			"guest op %zu: %s off=%" PRIu64 " len=%" PRIu64
			" log [%zu, %zu)\n",
			r->ngops, gop_names[g->kind], g->off, g->len,
			g->log_start, g->log_end);
}

static void record_gop(struct run *r, struct gop *g, const unsigned char *data)
{
	if (data) {
		if (r->gdata_len + g->len > r->gdata_cap) {
			while (r->gdata_len + g->len > r->gdata_cap)
				r->gdata_cap = r->gdata_cap ? 2 * r->gdata_cap :
							      MIB;
			r->gdata = xrealloc(r->gdata, r->gdata_cap);
		}
		memcpy(r->gdata + r->gdata_len, data, g->len);
		g->data = r->gdata_len;
		r->gdata_len += g->len;
	}
	guest_op(r, g, data);
	if (r->ngops == r->gcap) {
		r->gcap = r->gcap ? 2 * r->gcap : 256;
		r->gops = xrealloc(r->gops, r->gcap * sizeof(*r->gops));
	}
	r->gops[r->ngops++] = *g;
}

/* Pick a random operation; `recorded` also allows flush/close/compact. */
static void random_gop(struct run *r, bool recorded)
{
	struct gop g = { 0 };
	unsigned char *data = NULL;
	uint64_t cs = r->cluster, k = rng_below(&r->rng, 100);

	if (k < 40) {
		g.kind = G_WRITE;
		rand_range(r, &g.off, &g.len);
		data = r->buf;
		fill_data(r, data, g.len);
	} else if (k < 55) {
		g.kind = G_ZERO;
		rand_range(r, &g.off, &g.len);
		g.data = rng_below(&r->rng, 2); /* bit 0: may unmap */
	} else if (k < 67) {
		uint64_t full_end = r->size / cs * cs;

		g.kind = G_DISCARD;
		rand_range(r, &g.off, &g.len);
		if (g.off >= full_end)
			return;
		if (g.len > full_end - g.off)
			g.len = full_end - g.off;
	} else if (k < 74) {
		g.kind = G_COMPRESSED;
		g.off = rng_below(&r->rng, (r->size + cs - 1) / cs) * cs;
		g.len = r->size - g.off < cs ? r->size - g.off : cs;
		data = r->buf;
		fill_data(r, data, g.len);
	} else if (k < 76) {
		uint64_t grow =
			SECTOR * (1 + rng_below(&r->rng, 4 * cs / SECTOR));

		if (r->size + grow > 2 * r->copts.size)
			return;
		g.kind = G_RESIZE;
		g.off = r->size;
		g.len = grow;
	} else if (recorded && k < 93) {
		g.kind = G_FLUSH;
	} else if (recorded && k < 97) {
		g.kind = G_CLOSE;
		record_gop(r, &g, NULL);
		g = (struct gop){ .kind = G_OPEN };
	} else if (recorded && r->compact) {
		g.kind = G_COMPACT;
	} else {
		return;
	}
	record_gop(r, &g, data);
}

/* ---- running qemu-img ------------------------------------------------- */

/* Run qemu-img with args (NULL-terminated), output to out_path; exit code
 * or -1 if it did not exit normally. posix_spawn, not fork: this process
 * can be large. */
static int run_qemu_img(struct run *r, const char *const *args)
{
	posix_spawn_file_actions_t fa;
	const char *argv[16];
	int argc = 0, status, ret;
	pid_t pid;

	argv[argc++] = r->qemu_img;
	while (*args && argc < 15)
		argv[argc++] = *args++;
	argv[argc] = NULL;

	fflush(NULL);
	if (posix_spawn_file_actions_init(&fa) ||
	    posix_spawn_file_actions_addopen(
		    &fa, 1, r->out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644) ||
	    posix_spawn_file_actions_adddup2(&fa, 1, 2))
		die("posix_spawn_file_actions: out of memory");
	ret = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv,
			   environ);
	posix_spawn_file_actions_destroy(&fa);
	if (ret)
		die("%s: %s", argv[0], strerror(ret));
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			die("waitpid: %s", strerror(errno));
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void print_output(const struct run *r)
{
	uint64_t len;
	unsigned char *p = read_whole(r->out_path, &len);
	unsigned lines = 0;

	fputs("    ", r->report);
	for (uint64_t i = 0; i < len && lines < 20; i++) {
		fputc(p[i], r->report);
		if (p[i] == '\n') {
			fputs("    ", r->report);
			lines++;
		}
	}
	fputc('\n', r->report);
	free(p);
}

/* ---- checking one cut ------------------------------------------------- */

struct cut_ctx {
	size_t cut; /* entries [0, cut) may have happened */
	size_t flush; /* index of the last flush entry before cut, or SIZE_MAX */
	size_t durable_gop; /* guest ops [0, durable_gop) are durable */
	unsigned char *skip; /* per sector: not verifiable at this cut */
	unsigned char *dmodel; /* durable model */
	uint64_t dsize, max_size;
};

/* Read the image at path through libqcow and compare durable sectors;
 * returns NULL or a description of the first problem (static buffer). */
static const char *verify_cut(struct run *r, const char *path,
			      const struct cut_ctx *c)
{
	static char why[1024];
	struct qcow_open_opts o = { .log = { log_to_stderr, NULL } };
	struct qcow_error err = { 0 };
	struct qcow_image *img;
	uint64_t size, off;
	int ret = qcow_image_open(&img, path, &o, &err);

	if (ret < 0) {
		snprintf(why, sizeof(why), "libqcow cannot open it: %s",
			 err.msg[0] ? err.msg : strerror(-ret));
		return why;
	}
	size = qcow_image_size(img);
	if (size < c->dsize || size > c->max_size) {
		snprintf(why, sizeof(why),
			 "virtual size %" PRIu64 ", expected "
			 "%" PRIu64 "..%" PRIu64,
			 size, c->dsize, c->max_size);
		goto out_close;
	}
	why[0] = 0;
	for (off = 0; off < c->dsize && !why[0]; off += MAX_IO) {
		size_t n = MAX_IO;
		ssize_t got;

		if (c->dsize - off < n)
			n = (size_t)(c->dsize - off);
		got = qcow_image_pread(img, r->buf, n, off);

		if (got != (ssize_t)n) {
			snprintf(why, sizeof(why),
				 "libqcow read at %" PRIu64 " failed: %s", off,
				 got < 0 ? qcow_image_errmsg(img) :
					   "short read");
			break;
		}
		for (size_t s = 0; s < n; s += SECTOR) {
			size_t sn = SECTOR;
			uint64_t at = off + s;

			if (n - s < sn)
				sn = n - s;

			if (c->skip[at / SECTOR] ||
			    memcmp(r->buf + s, c->dmodel + at, sn) == 0)
				continue;
			for (size_t i = 0; i < sn; i++) {
				if (r->buf[s + i] == c->dmodel[at + i])
					continue;
				snprintf(why, sizeof(why),
					 "flushed guest data "
					 "lost: offset %" PRIu64 " reads 0x%02x"
					 ", expected 0x%02x",
					 at + i, r->buf[s + i],
					 c->dmodel[at + i]);
				break;
			}
			break;
		}
	}
out_close:
	qcow_image_close(img);
	return why[0] ? why : NULL;
}

static bool header_dirty(const struct fstate *f)
{
	uint64_t v = 0;

	if (f->len < 80 || f->p[7] < 3)
		return false;
	for (int i = 72; i < 80; i++)
		v = v << 8 | f->p[i];
	return v & 1;
}

static void describe_fop(const struct run *r, size_t i, const char *tag)
{
	const struct fop *op = &r->rec.ops[i];
	static const char *const names[] = { "write", "flush", "punch",
					     "truncate" };

	fprintf(r->report, "      %s #%zu %s", tag, i, names[op->kind]);
	if (op->kind == FOP_WRITE || op->kind == FOP_PUNCH)
		fprintf(r->report,
			" off=%" PRIu64 " (cluster %" PRIu64 ") len=%" PRIu64,
			op->off, op->off / r->cluster, op->len);
	else if (op->kind == FOP_TRUNC)
		fprintf(r->report, " len=%" PRIu64, op->off);
	fputc('\n', r->report);
}

/* Describe the first failing state of this worker in its report file. */
static void report_failure(struct run *r, const struct cut_ctx *c,
			   unsigned variant, const size_t *order, size_t n,
			   const char *why, bool show_output)
{
	size_t w0 = c->flush == SIZE_MAX ? 0 : c->flush + 1;
	FILE *f = r->report;

	r->failures++;
	if (r->failures > 1)
		return;
	r->first_failed_cut = c->cut;
	fprintf(f,
		"FAIL at cut %zu of %zu log entries (seed %" PRIu64
		"), variant %u (%s)\n    %s\n",
		c->cut, r->rec.nops, r->seed, variant,
		variant == 0		    ? "exact prefix" :
		r->torn && variant % 3 == 2 ? "torn 512-byte pieces" :
					      "random subset, random order",
		why);
	if (show_output) {
		fputs("    qemu-img said:\n", f);
		print_output(r);
	}
	if (c->flush == SIZE_MAX)
		fprintf(f, "    no flush before the cut\n");
	else
		fprintf(f, "    last flush: log entry %zu\n", c->flush);
	if (c->durable_gop)
		fprintf(f, "    durable: guest ops #0..#%zu\n",
			c->durable_gop - 1);
	else
		fprintf(f, "    durable: the starting image only\n");
	fprintf(f, "    log entries after the flush, as applied:\n");
	for (size_t i = 0; i < n; i++)
		describe_fop(r, order[i], "applied");
	for (size_t i = w0; i < c->cut; i++) {
		bool used = false;

		for (size_t j = 0; j < n; j++)
			used |= order[j] == i;
		if (!used)
			describe_fop(r, i, "dropped");
	}
	fprintf(f, "    guest ops around the cut:\n");
	for (size_t i = 0; i < r->ngops; i++) {
		const struct gop *g = &r->gops[i];
		size_t from = c->flush == SIZE_MAX ? 0 : c->flush;

		if (g->log_end + 8 < from || g->log_start > c->cut + 8)
			continue;
		fprintf(f,
			"      guest #%zu %s off=%" PRIu64 " len=%" PRIu64
			" log [%zu, %zu)\n",
			i, gop_names[g->kind], g->off, g->len, g->log_start,
			g->log_end);
	}
	fprintf(f, "    the file is kept as %s\n", r->failed_path);
}

/*
 * libqcow's own repair of a cut state at path: a read-write open (which
 * rebuilds the refcounts of a dirty image), qcow_image_check repairing
 * leaks, and a clean close. Returns NULL or what went wrong.
 */
static const char *our_repair(struct run *r, const char *path)
{
	static char why[1024];
	struct qcow_open_opts o = { .read_write = true,
				    .log = { log_to_stderr, NULL } };
	struct qcow_check_result res;
	struct qcow_error err = { 0 };
	struct qcow_image *img;
	int ret = qcow_image_open(&img, path, &o, &err);

	(void)r;
	if (ret < 0) {
		snprintf(why, sizeof(why),
			 "libqcow cannot open it read-write: "
			 "%s",
			 err.msg[0] ? err.msg : strerror(-ret));
		return why;
	}
	why[0] = 0;
	ret = qcow_image_check(img, &res, QCOW_CHECK_REPAIR_LEAKS);
	if (ret < 0)
		snprintf(why, sizeof(why), "qcow_image_check -r leaks: %s",
			 qcow_image_errmsg(img));
	ret = qcow_image_close(img);
	if (ret < 0 && !why[0])
		snprintf(why, sizeof(why), "closing after the repair: %s",
			 strerror(-ret));
	return why[0] ? why : NULL;
}

/*
 * Check one variant: base holds the file up to and including the last
 * flush; order[0..n) are the window entries to apply (torn: each entry in
 * pieces chosen by the rng). The steps:
 *   1. qemu-img check: 0, or 3 (leaks), or 2 on a dirty lazy image;
 *   2. if it found anything: qemu's repair (-r leaks, or -r all for a
 *      dirty image) on a copy must leave exit 0; and so must ours
 *      (open read-write, check -r leaks, close) on another copy, as
 *      judged by qemu-img check;
 *   3. flushed data reads back through libqcow from the state as cut,
 *      and from both repaired copies.
 */
static void check_variant(struct run *r, const struct cut_ctx *c,
			  const struct fstate *base, struct fstate *work,
			  unsigned variant, const size_t *order, size_t n,
			  bool torn)
{
	const char *check_args[] = { "check", "-f", "qcow2", r->cut_path,
				     NULL };
	const char *repair_args[] = { "check", "-f",	       "qcow2", "-r",
				      "leaks", r->repair_path, NULL };
	const char *ours_args[] = { "check", "-f", "qcow2", r->ours_path,
				    NULL };
	char msg[1200];
	const char *why = NULL;
	bool dirty, repaired, show = true;
	int rc;

	fs_copy(work, base);
	for (size_t i = 0; i < n; i++) {
		const struct fop *op = &r->rec.ops[order[i]];

		if (!torn || op->kind != FOP_WRITE) {
			fs_apply(work, &r->rec, op, op->off, op->len);
			continue;
		}
		/* sector pieces aligned to the file, each kept or not */
		for (uint64_t o = op->off; o < op->off + op->len;) {
			uint64_t end = (o / SECTOR + 1) * SECTOR;

			if (end > op->off + op->len)
				end = op->off + op->len;
			if (rng_below(&r->rng, 2))
				fs_apply(work, &r->rec, op, o, end - o);
			o = end;
		}
	}
	write_whole(r->cut_path, work->p, work->len);
	dirty = r->lazy && header_dirty(work);
	r->checked++;

	rc = run_qemu_img(r, check_args);
	if (rc != 0 && rc != 3 && !(rc == 2 && dirty)) {
		snprintf(msg, sizeof(msg), "qemu-img check exit %d%s", rc,
			 rc == 2 ? " (corruption)" : "");
		why = msg;
		goto out;
	}
	repaired = rc != 0 || dirty;
	if (repaired) {
		write_whole(r->repair_path, work->p, work->len);
		if (dirty)
			repair_args[4] = "all";
		rc = run_qemu_img(r, repair_args);
		if (rc != 0) {
			snprintf(msg, sizeof(msg),
				 "qemu-img check -r %s left "
				 "exit %d",
				 repair_args[4], rc);
			why = msg;
			goto out;
		}
		write_whole(r->ours_path, work->p, work->len);
		why = our_repair(r, r->ours_path);
		if (why) {
			snprintf(msg, sizeof(msg), "libqcow's repair: %s", why);
			why = msg;
			show = false;
			goto out;
		}
		rc = run_qemu_img(r, ours_args);
		if (rc != 0) {
			snprintf(msg, sizeof(msg),
				 "after libqcow's repair "
				 "(open read-write, check -r leaks, close), "
				 "qemu-img check exit %d",
				 rc);
			why = msg;
			goto out;
		}
	}
	show = false;
	why = verify_cut(r, r->cut_path, c);
	if (!why && repaired && (why = verify_cut(r, r->repair_path, c))) {
		snprintf(msg, sizeof(msg), "after qemu-img check -r: %s", why);
		why = msg;
	}
	if (!why && repaired && (why = verify_cut(r, r->ours_path, c))) {
		snprintf(msg, sizeof(msg), "after libqcow's repair: %s", why);
		why = msg;
	}
out:
	if (why) {
		write_whole(r->failed_path, work->p, work->len);
		report_failure(r, c, variant, order, n, why, show);
	}
	unlink(r->ours_path);
}

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	return x < y ? -1 : x > y;
}

static void mark_skip(unsigned char *skip, uint64_t off, uint64_t len)
{
	if (len == 0)
		return;
	memset(skip + off / SECTOR, 1,
	       (off + len + SECTOR - 1) / SECTOR - off / SECTOR);
}

/*
 * Check the cuts. The durable model starts as the guest content of the
 * starting image (start_model) and advances with the guest operations.
 */
static void check_cuts(struct run *r, const unsigned char *start_model,
		       uint64_t start_size)
{
	size_t nlog = r->rec.nops, ncuts, *cuts, *order, gi = 0;
	uint64_t max_size = start_size;
	struct fstate base = { 0 }, work = { 0 };
	struct cut_ctx c = { .flush = SIZE_MAX };
	size_t applied = 0; /* log entries folded into base */

	for (size_t i = 0; i < r->ngops; i++)
		if (r->gops[i].kind == G_RESIZE &&
		    r->gops[i].off + r->gops[i].len > max_size)
			max_size = r->gops[i].off + r->gops[i].len;

	/* Which cuts: all, or an even spread plus random ones. */
	if (nlog + 1 <= r->max_cuts) {
		ncuts = nlog + 1;
		cuts = xmalloc(ncuts * sizeof(*cuts));
		for (size_t i = 0; i < ncuts; i++)
			cuts[i] = i;
	} else {
		size_t even = r->max_cuts * 2 / 3;

		ncuts = r->max_cuts;
		cuts = xmalloc(ncuts * sizeof(*cuts));
		for (size_t i = 0; i < even; i++)
			cuts[i] = i * nlog / (even - 1);
		for (size_t i = even; i < ncuts; i++)
			cuts[i] = rng_below(&r->rng, nlog + 1);
		qsort(cuts, ncuts, sizeof(*cuts), cmp_size);
	}

	fs_copy(&base, &r->initial);
	c.skip = xmalloc(max_size / SECTOR + 1);
	order = xmalloc((nlog + 1) * sizeof(*order));
	c.dmodel = xmalloc(start_size);
	memcpy(c.dmodel, start_model, start_size);
	c.dsize = start_size;

	for (size_t ci = 0; ci < ncuts; ci++) {
		size_t cut = cuts[ci], w0, nwin;

		if (ci > 0 && cut == cuts[ci - 1])
			continue;
		c.cut = cut;

		/* Fold log entries up to the last flush before cut into base. */
		for (size_t i = applied; i < cut; i++)
			if (r->rec.ops[i].kind == FOP_FLUSH)
				c.flush = i;
		if (c.flush != SIZE_MAX) {
			for (; applied <= c.flush; applied++) {
				const struct fop *op = &r->rec.ops[applied];

				/* --sabotage: lose some flushed writes, to
				 * show that the checks can fail */
				if (r->sabotage && op->kind == FOP_WRITE &&
				    applied % 4 == 1)
					continue;
				fs_apply(&base, &r->rec, op, op->off, op->len);
			}
		}
		w0 = c.flush == SIZE_MAX ? 0 : c.flush + 1;
		nwin = cut - w0;

		/* Advance the durable model to the last completed guest
		 * flush (or close) whose log stretch ended by the cut. */
		for (size_t i = gi; i < r->ngops; i++) {
			const struct gop *g = &r->gops[i];

			if (g->log_end > cut)
				break;
			if (g->kind == G_FLUSH || g->kind == G_CLOSE)
				c.durable_gop = i + 1;
		}
		for (; gi < c.durable_gop; gi++)
			model_apply(r, &c.dmodel, &c.dsize, &r->gops[gi]);

		/* Sectors touched by guest ops in flight at the cut. */
		memset(c.skip, 0, max_size / SECTOR + 1);
		c.max_size = c.dsize;
		for (size_t i = c.durable_gop; i < r->ngops; i++) {
			const struct gop *g = &r->gops[i];

			/* An op that starts at or after the cut has
			 * nothing in the file yet, nor has any later one. */
			if (g->log_start >= cut)
				break;
			switch (g->kind) {
			case G_WRITE:
			case G_ZERO:
			case G_DISCARD:
			case G_COMPRESSED:
				mark_skip(c.skip, g->off, g->len);
				break;
			case G_RESIZE:
				mark_skip(c.skip, g->off, g->len);
				if (g->off + g->len > c.max_size)
					c.max_size = g->off + g->len;
				break;
			default:
				break;
			}
		}

		if (ci % r->jobs != r->worker)
			continue;

		/* variant 0: the exact prefix */
		for (size_t i = 0; i < nwin; i++)
			order[i] = w0 + i;
		check_variant(r, &c, &base, &work, 0, order, nwin, false);

		/* random subsets in random order, and torn writes */
		for (unsigned v = 1; v < r->variants && nwin > 0; v++) {
			bool torn = r->torn && v % 3 == 2;
			size_t n = 0;

			for (size_t i = 0; i < nwin; i++)
				if (torn || rng_below(&r->rng, 2))
					order[n++] = w0 + i;
			for (size_t i = n; i > 1; i--) {
				size_t j = rng_below(&r->rng, i),
				       t = order[i - 1];

				order[i - 1] = order[j];
				order[j] = t;
			}
			check_variant(r, &c, &base, &work, v, order, n, torn);
		}
	}
	free(order);
	free(cuts);
	free(c.skip);
	free(c.dmodel);
	free(base.p);
	free(work.p);
}

/* ---- workers ---------------------------------------------------------- */

/* "CHECKED FAILURES FIRST-CUT" from a worker's report; 0 or -1. */
static int parse_result(const char *p, unsigned long *checked,
			unsigned long *failures, size_t *first)
{
	unsigned long long v[3];
	char *end;

	for (int i = 0; i < 3; i++) {
		errno = 0;
		v[i] = strtoull(p, &end, 10);
		if (errno || end == p)
			return -1;
		p = end;
	}
	*checked = (unsigned long)v[0];
	*failures = (unsigned long)v[1];
	*first = (size_t)v[2];
	return 0;
}

static void worker_paths(struct run *r, unsigned k)
{
	snprintf(r->cut_path, sizeof(r->cut_path), "%s/cut-%u.qcow2", r->dir,
		 k);
	snprintf(r->repair_path, sizeof(r->repair_path), "%s/repair-%u.qcow2",
		 r->dir, k);
	snprintf(r->ours_path, sizeof(r->ours_path), "%s/ours-repair-%u.qcow2",
		 r->dir, k);
	snprintf(r->out_path, sizeof(r->out_path), "%s/qemu-img-%u.out", r->dir,
		 k);
	snprintf(r->failed_path, sizeof(r->failed_path),
		 "%s/failed-cut-%u.qcow2", r->dir, k);
}

/*
 * Check the cuts in r->jobs processes (qemu-img check dominates the time,
 * and it is one process per file state). Worker k writes its findings to
 * DIR/report-k.txt and a last line "RESULT checked failures first-cut";
 * the parent adds them up and shows the report of the earliest failure.
 */
static void run_workers(struct run *r, const unsigned char *start_model,
			uint64_t start_size)
{
	char path[4200];
	pid_t pids[16];
	size_t best_cut = SIZE_MAX;
	int best = -1;

	for (unsigned k = 0; k < r->jobs; k++) {
		fflush(NULL);
		pids[k] = fork();
		if (pids[k] < 0)
			die("fork: %s", strerror(errno));
		if (pids[k] > 0)
			continue;
		r->worker = k;
		r->rng ^= (k + 1) * 0xD1B54A32D192ED03ULL;
		worker_paths(r, k);
		snprintf(path, sizeof(path), "%s/report-%u.txt", r->dir, k);
		r->report = fopen(path, "w");
		if (!r->report)
			die("%s: %s", path, strerror(errno));
		check_cuts(r, start_model, start_size);
		fprintf(r->report, "RESULT %lu %lu %zu\n", r->checked,
			r->failures, r->failures ? r->first_failed_cut : 0);
		if (fclose(r->report) != 0)
			_exit(1);
		_exit(0);
	}

	for (unsigned k = 0; k < r->jobs; k++) {
		unsigned long checked = 0, failures = 0;
		size_t first = 0;
		uint64_t len;
		unsigned char *text;
		char *last;
		int status;

		while (waitpid(pids[k], &status, 0) < 0)
			if (errno != EINTR)
				die("waitpid: %s", strerror(errno));
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			die("checking worker %u died (%s %d): libqcow crashed "
			    "on a cut image? see the messages above",
			    k, WIFSIGNALED(status) ? "signal" : "exit",
			    WIFSIGNALED(status) ? WTERMSIG(status) :
						  WEXITSTATUS(status));
		snprintf(path, sizeof(path), "%s/report-%u.txt", r->dir, k);
		text = read_whole(path, &len);
		text = xrealloc(text, len + 1);
		text[len] = 0;
		last = strstr((char *)text, "RESULT ");
		if (!last ||
		    parse_result(last + 7, &checked, &failures, &first) < 0)
			die("%s: no result line", path);
		r->checked += checked;
		r->failures += failures;
		if (failures && first < best_cut) {
			best_cut = first;
			best = (int)k;
		}
		free(text);
	}
	if (best >= 0) {
		uint64_t len;
		unsigned char *text;

		snprintf(path, sizeof(path), "%s/report-%d.txt", r->dir, best);
		text = read_whole(path, &len);
		fprintf(stderr, "%s: ", prog);
		fwrite(text, 1,
		       (size_t)(strstr((char *)text, "RESULT ") - (char *)text),
		       stderr);
		free(text);
	}
}

/* ---- main ------------------------------------------------------------- */

static void usage(void)
{
	fprintf(stderr,
		"usage: %s [options] DIR\n"
		"  --seed N  --ops N (recorded guest ops, 150)  --prefill N (guest ops\n"
		"            before recording, 40)  --size N (8M)\n"
		"  --version 2|3  --cluster-size N  --refcount-bits N  --lazy\n"
		"  --backing FILE --backing-fmt qcow2|raw --backing-raw FILE\n"
		"  --cuts N (at most, 300)  --variants N (per cut, 3)  --torn\n"
		"  --jobs N (checking processes, default: CPUs)\n"
		"  --sabotage (lose a quarter of the flushed writes: must fail)\n"
		"  --no-compact  --qemu-img PATH  --dump FILE (log and guest ops)  -v\n",
		prog);
	exit(2);
}

enum {
	OPT_SEED = 256,
	OPT_OPS,
	OPT_PREFILL,
	OPT_SIZE,
	OPT_VERSION,
	OPT_CLUSTER,
	OPT_REFCOUNT,
	OPT_LAZY,
	OPT_BACKING,
	OPT_BACKING_FMT,
	OPT_BACKING_RAW,
	OPT_CUTS,
	OPT_VARIANTS,
	OPT_TORN,
	OPT_NO_COMPACT,
	OPT_QEMU_IMG,
	OPT_DUMP,
	OPT_JOBS,
	OPT_SABOTAGE,
};

static void dump_log(const struct run *r)
{
	FILE *f = fopen(r->dump_path, "w");

	if (!f)
		die("%s: %s", r->dump_path, strerror(errno));
	for (size_t i = 0; i < r->ngops; i++) {
		const struct gop *g = &r->gops[i];

		fprintf(f,
			"guest #%zu %s off=%" PRIu64 " len=%" PRIu64
			" log [%zu, %zu)\n",
			i, gop_names[g->kind], g->off, g->len, g->log_start,
			g->log_end);
		for (size_t j = g->log_start; j < g->log_end; j++) {
			const struct fop *op = &r->rec.ops[j];
			static const char *const names[] = { "write", "flush",
							     "punch",
							     "truncate" };

			fprintf(f,
				"    #%zu %s off=%" PRIu64 " len=%" PRIu64 "\n",
				j, names[op->kind], op->off, op->len);
		}
	}
	fclose(f);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "ops", required_argument, NULL, OPT_OPS },
		{ "prefill", required_argument, NULL, OPT_PREFILL },
		{ "size", required_argument, NULL, OPT_SIZE },
		{ "version", required_argument, NULL, OPT_VERSION },
		{ "cluster-size", required_argument, NULL, OPT_CLUSTER },
		{ "refcount-bits", required_argument, NULL, OPT_REFCOUNT },
		{ "lazy", no_argument, NULL, OPT_LAZY },
		{ "backing", required_argument, NULL, OPT_BACKING },
		{ "backing-fmt", required_argument, NULL, OPT_BACKING_FMT },
		{ "backing-raw", required_argument, NULL, OPT_BACKING_RAW },
		{ "cuts", required_argument, NULL, OPT_CUTS },
		{ "variants", required_argument, NULL, OPT_VARIANTS },
		{ "torn", no_argument, NULL, OPT_TORN },
		{ "no-compact", no_argument, NULL, OPT_NO_COMPACT },
		{ "qemu-img", required_argument, NULL, OPT_QEMU_IMG },
		{ "dump", required_argument, NULL, OPT_DUMP },
		{ "jobs", required_argument, NULL, OPT_JOBS },
		{ "sabotage", no_argument, NULL, OPT_SABOTAGE },
		{ NULL, 0, NULL, 0 },
	};
	struct run r = {
		.seed = 1,
		.ops = 150,
		.prefill = 40,
		.max_cuts = 300,
		.variants = 3,
		.compact = true,
		.qemu_img = "qemu-img",
		.copts = { .size = 8 * MIB },
	};
	const char *backing_raw = NULL;
	struct qcow_error err = { 0 };
	struct fstate replay = { 0 };
	uint64_t final_len;
	unsigned char *final;
	int c, ret;

	while ((c = getopt_long(argc, argv, "v", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_SEED:
			r.seed = parse_num(optarg);
			break;
		case OPT_OPS:
			r.ops = parse_num(optarg);
			break;
		case OPT_PREFILL:
			r.prefill = parse_num(optarg);
			break;
		case OPT_SIZE:
			r.copts.size = parse_num(optarg);
			break;
		case OPT_VERSION:
			r.copts.version = (int)parse_num(optarg);
			break;
		case OPT_CLUSTER:
			r.copts.cluster_size = (uint32_t)parse_num(optarg);
			break;
		case OPT_REFCOUNT:
			r.copts.refcount_bits = (unsigned)parse_num(optarg);
			break;
		case OPT_LAZY:
			r.copts.lazy_refcounts = true;
			break;
		case OPT_BACKING:
			r.copts.backing_file = optarg;
			break;
		case OPT_BACKING_FMT:
			r.copts.backing_fmt = optarg;
			break;
		case OPT_BACKING_RAW:
			backing_raw = optarg;
			break;
		case OPT_CUTS:
			r.max_cuts = (unsigned)parse_num(optarg);
			break;
		case OPT_VARIANTS:
			r.variants = (unsigned)parse_num(optarg);
			break;
		case OPT_TORN:
			r.torn = true;
			break;
		case OPT_NO_COMPACT:
			r.compact = false;
			break;
		case OPT_QEMU_IMG:
			r.qemu_img = optarg;
			break;
		case OPT_DUMP:
			r.dump_path = optarg;
			break;
		case OPT_JOBS:
			r.jobs = (unsigned)parse_num(optarg);
			break;
		case OPT_SABOTAGE:
			r.sabotage = true;
			break;
		case 'v':
			r.verbose = true;
			break;
		default:
			usage();
		}
	}
	if (argc - optind != 1 || r.max_cuts < 4 || r.variants < 1 ||
	    r.jobs > 16)
		usage();
	if (r.jobs == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		r.jobs = n < 1 ? 1 : n > 8 ? 8 : (unsigned)n;
	}
	r.dir = argv[optind];
	r.lazy = r.copts.lazy_refcounts;
	r.rng = r.seed * 0x9E3779B97F4A7C15ULL + 0x632BE59BD9B4E019ULL;
	r.copts.log.fn = log_to_stderr;
	snprintf(r.start_path, sizeof(r.start_path), "%s/start.qcow2", r.dir);
	snprintf(r.work_path, sizeof(r.work_path), "%s/work.qcow2", r.dir);
	r.buf = xmalloc(MAX_IO);

	if (backing_raw)
		r.backing = read_whole(backing_raw, &r.backing_len);
	else if (r.copts.backing_file && r.copts.backing_fmt &&
		 strcmp(r.copts.backing_fmt, "raw") == 0)
		r.backing = read_whole(r.copts.backing_file, &r.backing_len);
	else if (r.copts.backing_file)
		die("--backing needs --backing-raw (or --backing-fmt raw)");

	/* 1. The starting image: created, prefilled, closed cleanly. */
	ret = qcow_create(r.start_path, &r.copts, &err);
	if (ret < 0)
		die("%s: create: %s", r.start_path,
		    err.msg[0] ? err.msg : strerror(-ret));
	r.oopts.read_write = true;
	r.oopts.log.fn = log_to_stderr;
	open_image(&r, r.start_path);
	r.size = qcow_image_size(r.img);
	r.copts.size = r.size;
	r.model = xmalloc(r.size);
	backing_copy(&r, r.model, 0, r.size);
	for (unsigned long i = 0; i < r.prefill; i++)
		random_gop(&r, false);
	close_image(&r);
	r.initial.p = read_whole(r.start_path, &r.initial.len);
	r.initial.cap = r.initial.len;
	write_whole(r.work_path, r.initial.p, r.initial.len);

	/*
	 * 2. The recorded workload on a copy. The guest ops of the prefill
	 * are forgotten: their effect is the start of the durable model.
	 */
	{
		unsigned char *start_model = xmalloc(r.size);
		uint64_t start_size = r.size;

		memcpy(start_model, r.model, r.size);
		r.ngops = 0;
		r.gdata_len = 0;
		r.rec.fd = open(r.work_path, O_RDWR);
		if (r.rec.fd < 0)
			die("%s: %s", r.work_path, strerror(errno));
		r.rec.on = true;
		r.oopts.io = &recording_io;
		r.oopts.io_opaque = &r.rec;
		{
			struct gop g = { .kind = G_OPEN };

			record_gop(&r, &g, NULL);
		}
		for (unsigned long i = 0; i < r.ops; i++)
			random_gop(&r, true);
		{
			struct gop g = { .kind = G_CLOSE };

			record_gop(&r, &g, NULL);
		}
		r.rec.on = false;
		close(r.rec.fd);

		/* The recorder must have seen every change to the file. */
		fs_copy(&replay, &r.initial);
		for (size_t i = 0; i < r.rec.nops; i++)
			fs_apply(&replay, &r.rec, &r.rec.ops[i],
				 r.rec.ops[i].off, r.rec.ops[i].len);
		final = read_whole(r.work_path, &final_len);
		if (final_len != replay.len ||
		    memcmp(final, replay.p, final_len) != 0)
			die("the top file changed behind the io backend: "
			    "replaying %zu log entries gives %" PRIu64
			    " bytes, "
			    "the file has %" PRIu64 " (library wrote without "
			    "qcow_io_ops?)",
			    r.rec.nops, replay.len, final_len);
		free(final);
		free(replay.p);
		if (r.dump_path)
			dump_log(&r);

		/* 3. The cuts. */
		run_workers(&r, start_model, start_size);
		free(start_model);
	}

	printf("%zu log entries (%zu guest ops), %lu file states checked "
	       "by %u workers, %lu failed\n",
	       r.rec.nops, r.ngops, r.checked, r.jobs, r.failures);
	free(r.model);
	free(r.buf);
	free(r.backing);
	free(r.gops);
	free(r.gdata);
	free(r.rec.ops);
	free(r.rec.arena);
	free(r.initial.p);
	return r.failures ? 1 : 0;
}
