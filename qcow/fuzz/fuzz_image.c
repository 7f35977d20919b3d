/* SPDX-License-Identifier: MIT */
/*
 * fuzz_image: libFuzzer target feeding arbitrary bytes to libqcow as a
 * whole qcow2 image file.
 *
 * The input is copied into an in-memory file served through a
 * `struct qcow_io_ops` backend (a growable buffer with a hard cap, so a
 * write path gone wrong cannot exhaust memory). The image is opened four
 * times, always with no_backing set:
 *
 *  - read-only: info, every snapshot, map over the whole virtual disk
 *    (stopped after MAP_MAX_RUNS runs), reads of the first MiB and of a
 *    few places spread over the disk, and a check;
 *  - read-write: a few small writes and two 1 MiB ones (enough to make
 *    the refcount table of a small-cluster image grow), write-zeroes with
 *    and without unmap, a discard, a compressed cluster write, a flush, a
 *    check with full repair, compaction, reads, a small resize and the
 *    close;
 *  - the same read-write sequence again with a write fault injected into
 *    the backend after a number of writes (one failure, or every write
 *    from then on, as a dying disk), so the error paths run too;
 *  - read-only again, over whatever the faulty pass left.
 *
 * Offsets and lengths are drawn from a small PRNG seeded with a hash of
 * the input, so each input runs the same sequence every time and no state
 * survives between runs. Errors returned by the library are expected and
 * ignored: what this target looks for is crashes, sanitizer reports,
 * leaks and hangs, plus four invariants that trap when broken: map runs
 * tile the disk in order; snapshot ids and names are terminated; on an
 * image that checked clean, a write that succeeded reads back; and such
 * an image still checks clean after the fault-free read-write pass. Every
 * loop is bounded so a run stays far below libFuzzer's -timeout=10 and
 * -rss_limit_mb=2048.
 *
 * Safety: an image may name an external data file, which the library
 * opens through the POSIX backend even with no_backing (qcow.h says so).
 * The fuzzer must never open a file named by its input (a FIFO would hang
 * it, a device or a large file would make runs depend on the machine), so
 * the copy handed to the library has the external-data-file feature bit
 * cleared; the rest of the header, extension included, stays as fuzzed.
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <base/fuzz.h>
#include <qcow/qcow.h>

/* Hard cap on the in-memory file; writes beyond it fail with -EFBIG. */
#define MEMFILE_MAX (64u << 20)

/* Bounds on the work one input can cause. */
#define MAP_MAX_RUNS 4096
#define READ_HEAD (1u << 20) /* read the first MiB */
#define SCATTER_READS 8 /* then this many reads elsewhere */
#define IO_MAX (64u << 10) /* longest scattered read or write */
#define WRITES 4
#define BULK_WRITES 2 /* of BULK bytes each */
#define BULK (1u << 20)
#define FAULT_AFTER_MAX 48 /* writing calls before the fault */
#define L2_CACHE_BYTES (256u << 10) /* small, so eviction runs too */
#define SCRATCH (2u << 20) /* a 2 MiB cluster, or two halves */

/* Byte 79 of a v3 header, bit 2: the external data file feature. */
#define HDR_INCOMPAT_LAST_BYTE 79
#define INCOMPAT_DATA_FILE 0x04

/*
 * The image file: len bytes of content in buf, which holds cap bytes.
 * fail_in counts the writing calls (pwritev, flush, punch_hole, truncate)
 * still to succeed before one fails with -EIO; negative means never. With
 * sticky set, every writing call after that fails too.
 */
struct memfile {
	uint8_t *buf;
	size_t len;
	size_t cap;
	long fail_in;
	bool sticky;
};

/* The injected fault, if this writing call is the one that fails. */
static int memfile_fault(struct memfile *f)
{
	if (f->fail_in < 0)
		return 0;
	if (f->fail_in > 0) {
		f->fail_in--;
		return 0;
	}
	if (!f->sticky)
		f->fail_in = -1;
	return -EIO;
}

/* Grow buf to hold at least want bytes; the new tail reads as zeros. */
static int memfile_reserve(struct memfile *f, size_t want)
{
	size_t cap;
	uint8_t *buf;

	if (want > MEMFILE_MAX)
		return -EFBIG;
	if (want <= f->cap)
		return 0;
	cap = f->cap ? f->cap : 4096;
	while (cap < want)
		cap *= 2;
	if (cap > MEMFILE_MAX)
		cap = MEMFILE_MAX;
	buf = realloc(f->buf, cap);
	if (!buf)
		return -ENOMEM;
	memset(buf + f->cap, 0, cap - f->cap);
	f->buf = buf;
	f->cap = cap;
	return 0;
}

/* Total length of an iovec array, or -EINVAL if it overflows or is bad. */
static ssize_t iov_total(const struct iovec *iov, int iovcnt)
{
	size_t total = 0;

	if (iovcnt < 0)
		return -EINVAL;
	for (int i = 0; i < iovcnt; i++) {
		if (__builtin_add_overflow(total, iov[i].iov_len, &total))
			return -EINVAL;
	}
	if (total > SSIZE_MAX)
		return -EINVAL;
	return (ssize_t)total;
}

static ssize_t mem_preadv(void *opaque, const struct iovec *iov, int iovcnt,
			  uint64_t offset)
{
	struct memfile *f = opaque;
	ssize_t total = iov_total(iov, iovcnt);
	size_t done = 0;

	if (total < 0)
		return total;
	if (offset >= f->len)
		return 0;
	for (int i = 0; i < iovcnt && offset + done < f->len; i++) {
		size_t n = iov[i].iov_len;
		size_t left = f->len - (size_t)(offset + done);

		if (n > left)
			n = left;
		if (n)
			memcpy(iov[i].iov_base, f->buf + offset + done, n);
		done += n;
	}
	return (ssize_t)done;
}

static ssize_t mem_pwritev(void *opaque, const struct iovec *iov, int iovcnt,
			   uint64_t offset)
{
	struct memfile *f = opaque;
	ssize_t total = iov_total(iov, iovcnt);
	uint64_t end;
	size_t done = 0;
	int ret;

	if (total < 0)
		return total;
	ret = memfile_fault(f);
	if (ret < 0)
		return ret;
	if (__builtin_add_overflow(offset, (uint64_t)total, &end) ||
	    end > MEMFILE_MAX)
		return -EFBIG;
	ret = memfile_reserve(f, (size_t)end);
	if (ret < 0)
		return ret;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len)
			memcpy(f->buf + offset + done, iov[i].iov_base,
			       iov[i].iov_len);
		done += iov[i].iov_len;
	}
	if (end > f->len)
		f->len = (size_t)end;
	return total;
}

static int mem_flush(void *opaque)
{
	return memfile_fault(opaque);
}

static int mem_punch_hole(void *opaque, uint64_t offset, uint64_t len)
{
	struct memfile *f = opaque;
	uint64_t end;
	int ret = memfile_fault(f);

	if (ret < 0)
		return ret;
	if (__builtin_add_overflow(offset, len, &end))
		return -EINVAL;
	if (offset >= f->len)
		return 0;
	if (end > f->len)
		end = f->len;
	memset(f->buf + offset, 0, (size_t)(end - offset));
	return 0;
}

static int mem_truncate(void *opaque, uint64_t len)
{
	struct memfile *f = opaque;
	int ret = memfile_fault(f);

	if (ret < 0)
		return ret;
	if (len > MEMFILE_MAX)
		return -EFBIG;
	ret = memfile_reserve(f, (size_t)len);
	if (ret < 0)
		return ret;
	/* Bytes cut off must read as zeros if the file grows again. */
	if (len < f->len)
		memset(f->buf + len, 0, f->len - (size_t)len);
	f->len = (size_t)len;
	return 0;
}

static int64_t mem_size(void *opaque)
{
	const struct memfile *f = opaque;

	return (int64_t)f->len;
}

static int64_t mem_allocated(void *opaque)
{
	const struct memfile *f = opaque;

	return (int64_t)f->len;
}

static const struct qcow_io_ops mem_io = {
	.preadv = mem_preadv,
	.pwritev = mem_pwritev,
	.flush = mem_flush,
	.punch_hole = mem_punch_hole,
	.truncate = mem_truncate,
	.size = mem_size,
	.allocated = mem_allocated,
};

/*
 * The state of one run. seen adds up the lengths of every string the
 * library hands back (log messages, info and snapshot strings): its
 * address escapes into the library, so the compiler cannot drop the
 * strlen calls, and ASan checks each string is terminated in bounds.
 */
struct run {
	struct memfile file;
	uint8_t *buf; /* SCRATCH bytes */
	uint64_t rng;
	size_t seen;
};

/* xorshift64*: offsets and lengths, reproducible from the input alone. */
static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dull;
}

static uint64_t rng_seed(const uint8_t *data, size_t size)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */

	for (size_t i = 0; i < size; i++)
		h = (h ^ data[i]) * 0x100000001b3ull;
	return h ? h : 1;
}

/* A length in [1, max], mostly small and sometimes sector-aligned. */
static size_t rng_len(uint64_t *s, size_t max)
{
	uint64_t r = rng_next(s);
	size_t len;

	switch (r & 3) {
	case 0:
		len = 512;
		break;
	case 1:
		len = 4096;
		break;
	default:
		len = 1 + (size_t)((r >> 8) % max);
		break;
	}
	return len < max ? len : max;
}

/* An offset such that [offset, offset+len) lies inside size, when possible. */
static uint64_t rng_offset(uint64_t *s, uint64_t size, size_t len)
{
	uint64_t r = rng_next(s);
	uint64_t off;

	if (size <= len)
		return 0;
	off = r % (size - len + 1);
	if (r >> 63)
		off &= ~(uint64_t)511; /* half of them sector-aligned */
	return off;
}

/* Drop log messages, but make sure each one is a valid string. */
static void log_discard(void *opaque, enum qcow_log_level level,
			const char *msg)
{
	struct run *r = opaque;

	(void)level;
	r->seen += strlen(msg);
}

/* The walk of qcow_image_map: runs must tile the range, in order. */
struct map_state {
	unsigned runs;
	uint64_t next; /* where the next run must start */
};

static int map_check_run(void *opaque, const struct qcow_map_run *run)
{
	struct map_state *m = opaque;

	if (run->start != m->next || run->length == 0 ||
	    __builtin_add_overflow(run->start, run->length, &m->next))
		__builtin_trap(); /* a gap, an overlap or an empty run */
	return ++m->runs >= MAP_MAX_RUNS ? 1 : 0;
}

static void map_all(struct qcow_image *img)
{
	uint64_t size = qcow_image_size(img);
	struct map_state m = { 0 };

	/* A walk that ran to the end must have covered the whole disk. */
	if (qcow_image_map(img, 0, size, map_check_run, &m) == 0 &&
	    m.next != size)
		__builtin_trap();
}

static void touch_info(struct run *r, struct qcow_image *img)
{
	struct qcow_info info;

	if (qcow_image_info(img, &info) < 0)
		return;
	/* The strings must be valid for as long as the image is open. */
	if (info.backing_file)
		r->seen += strlen(info.backing_file);
	if (info.backing_fmt)
		r->seen += strlen(info.backing_fmt);
	if (info.data_file)
		r->seen += strlen(info.data_file);
	r->seen += strlen(qcow_image_errmsg(img));
}

/* List snapshots up to a bound; the id and name must be terminated. */
static void touch_snapshots(struct run *r, struct qcow_image *img)
{
	struct qcow_info info;
	struct qcow_snapshot_info sn;

	if (qcow_image_info(img, &info) < 0)
		return;
	for (uint32_t i = 0; i < info.nb_snapshots && i < 1024; i++) {
		if (qcow_image_snapshot(img, i, &sn) < 0)
			continue;
		/* An unterminated id or name is a library bug. */
		if (memchr(sn.id, 0, sizeof(sn.id)) == NULL ||
		    memchr(sn.name, 0, sizeof(sn.name)) == NULL)
			__builtin_trap();
		r->seen += strlen(sn.id) + strlen(sn.name);
	}
	/* One past the end must fail cleanly. */
	(void)qcow_image_snapshot(img, info.nb_snapshots, &sn);
}

/*
 * Write len bytes of a pattern at off and, if the write succeeded and the
 * image was consistent, read them back: on an image that checked clean, a
 * write that reports success and then reads back different data is a
 * library bug. (On a damaged one, a cluster already claimed twice can
 * lose data without any fault of the write path, as in qemu.)
 */
static void write_verify(struct run *r, struct qcow_image *img, size_t len,
			 uint64_t off, uint8_t fill, bool clean)
{
	uint8_t *back = r->buf + SCRATCH / 2;

	memset(r->buf, fill, len);
	if (qcow_image_pwrite(img, r->buf, len, off) != (ssize_t)len || !clean)
		return;
	if (qcow_image_pread(img, back, len, off) != (ssize_t)len)
		return;
	if (memcmp(r->buf, back, len) != 0)
		__builtin_trap();
}

/* Whether qcow_image_check finds nothing wrong (leaks are not wrong). */
static bool image_clean(struct qcow_image *img)
{
	struct qcow_check_result res;

	return qcow_image_check(img, &res, QCOW_CHECK_NONE) == 0 &&
	       res.corruptions == 0 && res.check_errors == 0;
}

/* A request of at most max bytes inside a disk of size bytes. */
static void pick(struct run *r, uint64_t size, size_t max, uint64_t *off,
		 size_t *len)
{
	*len = rng_len(&r->rng, max);
	if (*len > size)
		*len = (size_t)size;
	*off = rng_offset(&r->rng, size, *len);
}

static void read_spread(struct run *r, struct qcow_image *img)
{
	uint64_t size = qcow_image_size(img);
	uint64_t head = size < READ_HEAD ? size : READ_HEAD;

	if (head)
		(void)qcow_image_pread(img, r->buf, (size_t)head, 0);
	for (int i = 0; i < SCATTER_READS; i++) {
		uint64_t off;
		size_t len;

		pick(r, size, IO_MAX, &off, &len);
		(void)qcow_image_pread(img, r->buf, len, off);
	}
	/* The last sector of the disk, and a read straddling its end. */
	if (size >= 512)
		(void)qcow_image_pread(img, r->buf, 512, size - 512);
	(void)qcow_image_pread(img, r->buf, 4096, size > 100 ? size - 100 : 0);
}

static int open_image(struct run *r, struct qcow_image **img, bool read_write)
{
	struct qcow_open_opts opts = {
		.read_write = read_write,
		.force_share = !read_write,
		.no_backing = true,
		.l2_cache_bytes = L2_CACHE_BYTES,
		.io = &mem_io,
		.io_opaque = &r->file,
		.log = { .fn = log_discard, .opaque = r },
	};
	struct qcow_error err;
	int ret;

	ret = qcow_image_open(img, "fuzz.qcow2", &opts, &err);
	if (ret < 0)
		r->seen += strlen(err.msg);
	return ret;
}

static void phase_read_only(struct run *r)
{
	struct qcow_image *img = NULL;
	struct qcow_check_result res;

	if (open_image(r, &img, false) < 0)
		return;
	touch_info(r, img);
	touch_snapshots(r, img);
	map_all(img);
	read_spread(r, img);
	(void)qcow_image_check(img, &res, QCOW_CHECK_NONE);
	/* Writes to a read-only image must be refused, not attempted. */
	(void)qcow_image_pwrite(img, r->buf, 512, 0);
	(void)qcow_image_close(img);
}

/*
 * Writes of every kind. With faulty set, the backend fails a write part
 * of the way through; otherwise an image that checked clean on open must
 * still check clean (leaks allowed) after all of them.
 */
static void phase_read_write(struct run *r, bool faulty)
{
	struct qcow_image *img = NULL;
	struct qcow_check_result res;
	uint64_t size, off;
	uint32_t cs;
	size_t len;
	bool clean;

	if (open_image(r, &img, true) < 0)
		return;
	size = qcow_image_size(img);
	cs = qcow_image_cluster_size(img);
	clean = image_clean(img);
	if (faulty) {
		/* Armed only now, so the fault hits the writes below. */
		r->file.fail_in = (long)(rng_next(&r->rng) % FAULT_AFTER_MAX);
		r->file.sticky = rng_next(&r->rng) & 1;
	}

	for (int i = 0; i < WRITES; i++) {
		pick(r, size, IO_MAX, &off, &len);
		write_verify(r, img, len, off, (uint8_t)(0x5a + i), clean);
	}
	for (int i = 0; i < BULK_WRITES; i++) {
		off = rng_offset(&r->rng, size, BULK) & ~(uint64_t)4095;
		len = size - off < BULK ? (size_t)(size - off) : BULK;
		write_verify(r, img, len, off, (uint8_t)(0xc3 + i), clean);
	}

	pick(r, size, IO_MAX, &off, &len);
	(void)qcow_image_write_zeroes(img, off, len, 0);
	pick(r, size, 2 * (size_t)cs, &off, &len);
	(void)qcow_image_write_zeroes(img, off, len, QCOW_ZERO_MAY_UNMAP);
	pick(r, size, 3 * (size_t)cs, &off, &len);
	(void)qcow_image_discard(img, off, len);

	/* One compressed cluster (the last one may be short). */
	if (cs && cs <= SCRATCH && size) {
		off = rng_next(&r->rng) % ((size + cs - 1) / cs) * cs;
		len = size - off < cs ? (size_t)(size - off) : cs;
		for (size_t i = 0; i < len; i++)
			r->buf[i] = (uint8_t)(i / 64);
		(void)qcow_image_write_compressed(img, r->buf, len, off);
	}

	(void)qcow_image_flush(img);
	if (clean && !faulty && !image_clean(img))
		__builtin_trap(); /* our own writes damaged the image */
	(void)qcow_image_check(img, &res, QCOW_CHECK_REPAIR_ALL);
	(void)qcow_image_compact(img);
	read_spread(r, img);
	if (cs)
		(void)qcow_image_resize(img, size + cs);
	(void)qcow_image_flush(img);
	touch_info(r, img);
	(void)qcow_image_close(img);
	r->file.fail_in = -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct run r = {
		.file = { .fail_in = -1 },
		.rng = rng_seed(data, size),
	};

	if (size > MEMFILE_MAX || memfile_reserve(&r.file, size ? size : 1) < 0)
		goto out_free_file;
	memcpy(r.file.buf, data, size);
	r.file.len = size;
	/* In a version 2 image (bytes 4-7) byte 79 belongs to an extension. */
	if (size > HDR_INCOMPAT_LAST_BYTE &&
	    !(data[4] == 0 && data[5] == 0 && data[6] == 0 && data[7] == 2))
		r.file.buf[HDR_INCOMPAT_LAST_BYTE] &=
			(uint8_t)~INCOMPAT_DATA_FILE;

	r.buf = malloc(SCRATCH);
	if (!r.buf)
		goto out_free_file;
	phase_read_only(&r);
	phase_read_write(&r, false);
	/* Again with a fault, then see what a reader makes of the result. */
	phase_read_write(&r, true);
	phase_read_only(&r);
	free(r.buf);
out_free_file:
	free(r.file.buf);
	return 0;
}
