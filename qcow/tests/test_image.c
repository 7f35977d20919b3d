// SPDX-License-Identifier: MIT
/*
 * Unit tests of libqcow through its public API, in each case's temporary
 * directory: option checking in qcow_create, guest I/O round trips at
 * unaligned offsets for several cluster sizes and refcount widths,
 * compressed clusters, write-zeroes, discard, resize, backing files,
 * requests of IOV_MAX vectors, compaction, read-only and out-of-range
 * requests, qcow_image_check on clean and on deliberately damaged images,
 * a caller-supplied in-memory I/O backend (with and without hole
 * punching), recovery of a lazy-refcounts image copied before close, I/O
 * error injection on every write and flush of a workload, and qemu's
 * image locks.
 *
 * Comparisons with qemu-img are the end-to-end tests' business
 * (tests/e2e/); here the reference is a plain byte array, the "shadow",
 * holding what the guest must read.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <base/endian.h>
#include <base/test.h>
#include <qcow/qcow.h>

/* --- helpers --- */

static uint64_t rng_state;

static void rng_seed(uint64_t s)
{
	rng_state = s * 0x9e3779b97f4a7c15ull + 1;
}

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static uint64_t rnd_below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

static const char *tpath(const char *name)
{
	static char buf[4][PATH_MAX];
	static int k;
	char *p = buf[k++ % 4];

	snprintf(p, PATH_MAX, "%s/%s", test_tmpdir(), name);
	return p;
}

static void create_opts(const char *path, const struct qcow_create_opts *o)
{
	struct qcow_error err = { 0 };
	int r = qcow_create(path, o, &err);

	if (r != 0)
		TEST_FAIL("qcow_create(%s): %d: %s", path, r, err.msg);
}

static void create_image(const char *path, uint64_t size, uint32_t cs,
			 int version)
{
	struct qcow_create_opts o = { .size = size,
				      .cluster_size = cs,
				      .version = version };

	create_opts(path, &o);
}

static struct qcow_image *open_flags(const char *path, bool rw,
				     bool force_share)
{
	struct qcow_open_opts o = { .read_write = rw,
				    .force_share = force_share };
	struct qcow_error err = { 0 };
	struct qcow_image *img = NULL;
	int r = qcow_image_open(&img, path, &o, &err);

	if (r != 0)
		TEST_FAIL("qcow_image_open(%s): %d: %s", path, r, err.msg);
	ASSERT_NOT_NULL(img);
	return img;
}

static struct qcow_image *open_rw(const char *path)
{
	return open_flags(path, true, false);
}

static struct qcow_image *open_ro(const char *path)
{
	return open_flags(path, false, false);
}

static void close_ok(struct qcow_image *img)
{
	ASSERT_OK(qcow_image_close(img));
}

static void write_ok(struct qcow_image *img, const void *buf, size_t len,
		     uint64_t off)
{
	ssize_t r = qcow_image_pwrite(img, buf, len, off);

	if (r != (ssize_t)len)
		TEST_FAIL("pwrite %zu at %llu: %zd (%s)", len,
			  (unsigned long long)off, r, qcow_image_errmsg(img));
}

static void read_ok(struct qcow_image *img, void *buf, size_t len, uint64_t off)
{
	ssize_t r = qcow_image_pread(img, buf, len, off);

	if (r != (ssize_t)len)
		TEST_FAIL("pread %zu at %llu: %zd (%s)", len,
			  (unsigned long long)off, r, qcow_image_errmsg(img));
}

/* The guest's bytes [off, off+len) equal want; a failure names the first
 * differing guest offset. */
static void expect_bytes(struct qcow_image *img, const uint8_t *want,
			 size_t len, uint64_t off)
{
	uint8_t *got = malloc(len ? len : 1);

	ASSERT_NOT_NULL(got);
	read_ok(img, got, len, off);
	for (size_t i = 0; i < len; i++)
		if (got[i] != want[i])
			TEST_FAIL("guest byte %llu: got 0x%02x, want 0x%02x",
				  (unsigned long long)(off + i), got[i],
				  want[i]);
	free(got);
}

static void expect_fill(struct qcow_image *img, uint8_t v, size_t len,
			uint64_t off)
{
	uint8_t *want = malloc(len ? len : 1);

	ASSERT_NOT_NULL(want);
	memset(want, v, len);
	expect_bytes(img, want, len, off);
	free(want);
}

/* Random bytes that are never zero (so that no write looks like a
 * write of zeros), and so carry only 7 bits each: compressible. */
static void fill_random(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(rnd() >> 56) | 1;
}

/* Random bytes with all 8 bits: deflate cannot shrink them. */
static void fill_noise(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(rnd() >> 56);
}

static struct qcow_check_result check_image(struct qcow_image *img)
{
	struct qcow_check_result res;

	ASSERT_OK(qcow_image_check(img, &res, QCOW_CHECK_NONE));
	return res;
}

static void check_clean(struct qcow_image *img)
{
	struct qcow_check_result res = check_image(img);

	ASSERT_EQ_U64(res.corruptions, 0);
	ASSERT_EQ_U64(res.leaks, 0);
	ASSERT_EQ_U64(res.check_errors, 0);
}

static void check_file_clean(const char *path)
{
	struct qcow_image *img = open_ro(path);

	check_clean(img);
	close_ok(img);
}

static uint64_t file_len(const char *path)
{
	struct stat st;

	ASSERT_EQ_INT(stat(path, &st), 0);
	return (uint64_t)st.st_size;
}

static int64_t actual_size(struct qcow_image *img)
{
	struct qcow_info info;

	ASSERT_OK(qcow_image_info(img, &info));
	return info.actual_size;
}

/* --- qcow_create options --- */

/* A bad option gives -EINVAL (or the errno named), a message, and no
 * file. */
static void create_refused(const struct qcow_create_opts *o, int want)
{
	const char *path = tpath("refused.qcow2");
	struct qcow_error err = { 0 };

	unlink(path);
	ASSERT_ERR(qcow_create(path, o, &err), want);
	ASSERT_EQ_INT(err.code, want);
	if (!err.msg[0])
		TEST_FAIL("no message for error %d", want);
	ASSERT_EQ_INT(access(path, F_OK), -1);
}

TEST(create_rejects_bad_options)
{
	struct qcow_create_opts o;

#define REFUSE(field_assignments, want)   \
	do {                              \
		memset(&o, 0, sizeof(o)); \
		o.size = 1 << 20;         \
		field_assignments;        \
		create_refused(&o, want); \
	} while (0)

	REFUSE(o.version = 1, -EINVAL);
	REFUSE(o.version = 4, -EINVAL);
	REFUSE(o.version = -3, -EINVAL);
	REFUSE(o.cluster_size = 256, -EINVAL);
	REFUSE(o.cluster_size = 4u << 20, -EINVAL);
	REFUSE(o.cluster_size = 3 * 4096, -EINVAL);
	REFUSE(o.cluster_size = 511, -EINVAL);
	REFUSE(o.refcount_bits = 3, -EINVAL);
	REFUSE(o.refcount_bits = 128, -EINVAL);
	REFUSE(o.refcount_bits = 24, -EINVAL);
	REFUSE((o.version = 2, o.refcount_bits = 8), -EINVAL);
	REFUSE((o.version = 2, o.lazy_refcounts = true), -EINVAL);
	REFUSE((o.version = 2, o.compression = QCOW_COMPRESSION_ZSTD), -EINVAL);
	REFUSE(o.compression = (enum qcow_compression)7, -EINVAL);
	REFUSE((o.backing_file = "base.qcow2",
		o.prealloc = QCOW_PREALLOC_METADATA),
	       -EINVAL);
	REFUSE(o.size = (1ull << 62) + 512, -EFBIG);
	/* 512-byte clusters cannot address 2^62 bytes with a 32 MiB L1. */
	REFUSE((o.size = 1ull << 50, o.cluster_size = 512), -EFBIG);
	REFUSE(o.backing_file = "does-not-exist.qcow2", -ENOENT);
	/* An existing backing file of a format we do not read. */
	int fd = open(tpath("base.raw"), O_CREAT | O_WRONLY, 0644);

	ASSERT_GE_INT(fd, 0);
	ASSERT_EQ_INT(ftruncate(fd, 1 << 20), 0);
	close(fd);
	REFUSE((o.backing_file = "base.raw", o.backing_fmt = "vmdk"), -ENOTSUP);
#undef REFUSE
}

TEST(create_rounds_size_and_defaults)
{
	const char *path = tpath("a.qcow2");
	struct qcow_create_opts o = { .size = 1000 };
	struct qcow_info info;
	struct qcow_image *img;

	create_opts(path, &o);
	img = open_ro(path);
	ASSERT_OK(qcow_image_info(img, &info));
	ASSERT_EQ_U64(info.virtual_size, 1024);
	ASSERT_EQ_U64(info.cluster_size, 65536);
	ASSERT_EQ_INT(info.version, 3);
	ASSERT_EQ_U64(info.refcount_bits, 16);
	ASSERT_FALSE(info.dirty);
	ASSERT_TRUE(info.read_only);
	ASSERT_NULL(info.backing_file);
	expect_fill(img, 0, 1024, 0);
	close_ok(img);
	check_file_clean(path);
}

/* --- round trips --- */

struct shadow {
	uint8_t *b;
	uint64_t size;
};

/* A write of random bytes through one to five iovecs. */
static void shadow_write(struct qcow_image *img, struct shadow *s, uint64_t off,
			 size_t len)
{
	uint8_t *buf = malloc(len);
	struct iovec iov[5];
	int n = 1 + (int)rnd_below(5);
	size_t pos = 0;
	ssize_t r;

	ASSERT_NOT_NULL(buf);
	fill_random(buf, len);
	for (int i = 0; i < n; i++) {
		size_t take = i == n - 1 ? len - pos : rnd_below(len - pos + 1);

		iov[i].iov_base = buf + pos;
		iov[i].iov_len = take;
		pos += take;
	}
	r = qcow_image_pwritev(img, iov, n, off);
	if (r != (ssize_t)len)
		TEST_FAIL("pwritev %zu at %llu: %zd (%s)", len,
			  (unsigned long long)off, r, qcow_image_errmsg(img));
	memcpy(s->b + off, buf, len);
	free(buf);
}

static void shadow_verify(struct qcow_image *img, const struct shadow *s,
			  uint64_t off, size_t len)
{
	expect_bytes(img, s->b + off, len, off);
}

/* An offset near a cluster boundary, or anywhere. */
static uint64_t pick_offset(uint64_t size, uint32_t cs)
{
	uint64_t off;

	if (rnd() & 1) {
		uint64_t c = rnd_below(size / cs + 1) * cs;

		off = c - rnd_below(cs / 2 + 1);
		if (off > c) /* wrapped below zero */
			off = 0;
	} else {
		off = rnd_below(size);
	}
	return off < size ? off : size - 1;
}

static void round_trip(uint32_t cs, int version, uint64_t seed)
{
	const char *path = tpath("rt.qcow2");
	/* Five and a bit clusters: the end is not cluster aligned. */
	uint64_t size = 5ull * cs + 1536;
	size_t maxlen = 3u * cs < (512u << 10) ? 3u * cs : (512u << 10);
	struct shadow s = { calloc(1, size), size };
	struct qcow_image *img;

	ASSERT_NOT_NULL(s.b);
	rng_seed(seed);
	create_image(path, size, cs, version);
	img = open_rw(path);
	ASSERT_EQ_U64(qcow_image_size(img), size);
	ASSERT_EQ_U64(qcow_image_cluster_size(img), cs);
	for (int i = 0; i < 120; i++) {
		uint64_t off = pick_offset(size, cs);
		size_t len = 1 + rnd_below(maxlen);

		if (len > size - off)
			len = (size_t)(size - off);
		if (rnd_below(3)) {
			shadow_write(img, &s, off, len);
		} else {
			shadow_verify(img, &s, off, len);
		}
		if (rnd_below(20) == 0)
			ASSERT_OK(qcow_image_flush(img));
	}
	/* The last byte of the disk. */
	shadow_write(img, &s, size - 1, 1);
	shadow_verify(img, &s, 0, size);
	check_clean(img);
	close_ok(img);

	img = open_ro(path);
	shadow_verify(img, &s, 0, size);
	check_clean(img);
	close_ok(img);
	free(s.b);
}

TEST(round_trip_512)
{
	round_trip(512, 3, 1);
}

TEST(round_trip_4k)
{
	round_trip(4096, 3, 2);
}

TEST(round_trip_64k)
{
	round_trip(65536, 3, 3);
}

TEST(round_trip_64k_v2)
{
	round_trip(65536, 2, 4);
}

TEST(round_trip_2m)
{
	round_trip(2u << 20, 3, 5);
}

/* Refcount widths other than 16 bits count the same clusters. */
TEST(round_trip_refcount_widths)
{
	static const unsigned widths[] = { 1, 2, 4, 8, 32, 64 };

	for (size_t w = 0; w < sizeof(widths) / sizeof(widths[0]); w++) {
		const char *path = tpath("w.qcow2");
		struct qcow_create_opts o = { .size = 4 << 20,
					      .cluster_size = 4096,
					      .refcount_bits = widths[w] };
		uint8_t *buf = malloc(3 << 20);
		struct qcow_image *img;
		struct qcow_info info;

		ASSERT_NOT_NULL(buf);
		rng_seed(widths[w]);
		fill_random(buf, 3 << 20);
		create_opts(path, &o);
		img = open_rw(path);
		ASSERT_OK(qcow_image_info(img, &info));
		ASSERT_EQ_U64(info.refcount_bits, widths[w]);
		/* 3 MiB of 4 KiB clusters: two refcount blocks with 64-bit
		 * counts (512 clusters each). */
		write_ok(img, buf, 3 << 20, 1000);
		ASSERT_OK(qcow_image_flush(img));
		check_clean(img);
		close_ok(img);
		img = open_ro(path);
		expect_bytes(img, buf, 3 << 20, 1000);
		check_clean(img);
		close_ok(img);
		free(buf);
	}
}

/* Writing zeros where the disk already reads zeros allocates nothing. */
TEST(zero_writes_allocate_nothing)
{
	const char *path = tpath("z.qcow2");
	static uint8_t zeros[3 * 65536];
	struct qcow_image *img;
	uint64_t len0;

	create_image(path, 1 << 20, 65536, 3);
	len0 = file_len(path);
	img = open_rw(path);
	write_ok(img, zeros, sizeof(zeros), 1000);
	ASSERT_OK(qcow_image_flush(img));
	ASSERT_EQ_U64(file_len(path), len0);
	ASSERT_EQ_U64(check_image(img).allocated_clusters, 0);
	close_ok(img);
}

/* --- compressed clusters --- */

TEST(compressed_round_trip)
{
	const char *path = tpath("c.qcow2");
	const uint32_t cs = 65536;
	uint8_t *buf = malloc(4 * cs), *plain = malloc(cs);
	struct qcow_image *img;
	struct qcow_check_result res;

	ASSERT_NOT_NULL(buf);
	ASSERT_NOT_NULL(plain);
	/* Compressible, and different per cluster. */
	for (size_t i = 0; i < 4 * cs; i++)
		buf[i] = (uint8_t)((i / 100) * 7 + i / cs);
	rng_seed(9);
	fill_noise(plain, cs);
	create_image(path, 6 * cs + 512, cs, 3);
	img = open_rw(path);
	for (int c = 0; c < 4; c++)
		ASSERT_OK(qcow_image_write_compressed(img, buf + c * cs, cs,
						      (uint64_t)c * cs));
	/* Incompressible data falls back to a plain write. */
	ASSERT_OK(qcow_image_write_compressed(img, plain, cs, 4ull * cs));
	/* The last, partial cluster. */
	ASSERT_OK(qcow_image_write_compressed(img, buf, 512, 6ull * cs));
	ASSERT_ERR(qcow_image_write_compressed(img, buf, cs, 100), -EINVAL);
	ASSERT_ERR(qcow_image_write_compressed(img, buf, cs - 512, 0), -EINVAL);
	expect_bytes(img, buf, 4 * cs, 0);
	expect_bytes(img, plain, cs, 4ull * cs);
	expect_bytes(img, buf, 512, 6ull * cs);
	res = check_image(img);
	ASSERT_EQ_U64(res.corruptions, 0);
	ASSERT_EQ_U64(res.leaks, 0);
	ASSERT_EQ_U64(res.compressed_clusters, 5);
	close_ok(img);

	/* Overwrite inside a compressed cluster, and one shared host
	 * cluster's users one by one: counts must stay exact. */
	img = open_rw(path);
	expect_bytes(img, buf, 4 * cs, 0);
	write_ok(img, plain, 1000, cs + 5);
	memcpy(buf + cs + 5, plain, 1000);
	ASSERT_OK(qcow_image_discard(img, 0, cs));
	memset(buf, 0, cs);
	expect_bytes(img, buf, 4 * cs, 0);
	ASSERT_OK(qcow_image_flush(img));
	check_clean(img);
	ASSERT_OK(qcow_image_discard(img, 0, 6ull * cs + 512));
	ASSERT_OK(qcow_image_flush(img));
	check_clean(img);
	ASSERT_EQ_U64(check_image(img).allocated_clusters, 0);
	expect_fill(img, 0, 6 * cs + 512, 0);
	close_ok(img);
	free(buf);
	free(plain);
}

/* --- write-zeroes and discard --- */

static void zeroes_case(int version, unsigned flags)
{
	const char *path = tpath("wz.qcow2");
	const uint32_t cs = 65536;
	const uint64_t size = 8ull * cs;
	uint8_t *want = malloc(size);
	struct qcow_image *img;
	int64_t before, after;

	ASSERT_NOT_NULL(want);
	memset(want, 0xab, size);
	create_image(path, size, cs, version);
	img = open_rw(path);
	write_ok(img, want, size, 0);
	ASSERT_OK(qcow_image_flush(img));
	before = actual_size(img);
	ASSERT_EQ_U64(check_image(img).allocated_clusters, 8);

	/* Half of cluster 0 plus 100 bytes, clusters 1 and 2 whole, half of
	 * cluster 3. */
	uint64_t off = cs / 2 + 100, len = 3ull * cs;

	ASSERT_OK(qcow_image_write_zeroes(img, off, len, flags));
	memset(want + off, 0, len);
	expect_bytes(img, want, size, 0);
	/* Zeroing what reads as zeros already is fine. */
	ASSERT_OK(qcow_image_write_zeroes(img, off, len, flags));
	/* Up to the end of the disk. */
	ASSERT_OK(qcow_image_write_zeroes(img, size - cs - 7, cs + 7, flags));
	memset(want + size - cs - 7, 0, cs + 7);
	ASSERT_OK(qcow_image_flush(img));
	expect_bytes(img, want, size, 0);
	check_clean(img);
	/* Clusters 1, 2 and 7 hold no data now. */
	ASSERT_EQ_U64(check_image(img).allocated_clusters, 5);
	after = actual_size(img);
	if (before > 0 && version >= 3 && (flags & QCOW_ZERO_MAY_UNMAP))
		ASSERT_LE_INT(after, before - 3 * (int64_t)cs);
	close_ok(img);

	img = open_ro(path);
	expect_bytes(img, want, size, 0);
	close_ok(img);
	check_file_clean(path);
	free(want);
}

TEST(write_zeroes_v3)
{
	zeroes_case(3, 0);
}

TEST(write_zeroes_v3_unmap)
{
	zeroes_case(3, QCOW_ZERO_MAY_UNMAP);
}

TEST(write_zeroes_v2)
{
	zeroes_case(2, 0);
}

/* Writing over a cluster zeroed without unmapping reuses it. */
TEST(write_after_zeroes_keeps_data)
{
	const char *path = tpath("wz2.qcow2");
	const uint32_t cs = 4096;
	uint8_t a[4096], b[100];
	struct qcow_image *img;

	memset(a, 0x11, sizeof(a));
	memset(b, 0x22, sizeof(b));
	create_image(path, 4 * cs, cs, 3);
	img = open_rw(path);
	write_ok(img, a, cs, cs);
	ASSERT_OK(qcow_image_write_zeroes(img, cs, cs, 0));
	/* A partial write into the zero cluster: the rest reads zero. */
	write_ok(img, b, sizeof(b), cs + 300);
	memset(a, 0, sizeof(a));
	memcpy(a + 300, b, sizeof(b));
	expect_bytes(img, a, cs, cs);
	ASSERT_OK(qcow_image_flush(img));
	check_clean(img);
	close_ok(img);
	img = open_ro(path);
	expect_bytes(img, a, cs, cs);
	close_ok(img);
}

static void discard_case(int version)
{
	const char *path = tpath("d.qcow2");
	const uint32_t cs = 65536;
	const uint64_t size = 8ull * cs;
	uint8_t *want = malloc(size);
	struct qcow_image *img;
	uint64_t flen;
	int64_t before;

	ASSERT_NOT_NULL(want);
	rng_seed(77);
	fill_random(want, size);
	create_image(path, size, cs, version);
	img = open_rw(path);
	write_ok(img, want, size, 0);
	ASSERT_OK(qcow_image_flush(img));
	flen = file_len(path);
	before = actual_size(img);

	/* Only whole clusters go: [cs/2, 2.5 cs) releases cluster 1 only. */
	ASSERT_OK(qcow_image_discard(img, cs / 2, 2ull * cs));
	memset(want + cs, 0, cs);
	expect_bytes(img, want, size, 0);
	/* Clusters 2..5. */
	ASSERT_OK(qcow_image_discard(img, 2ull * cs, 4ull * cs));
	memset(want + 2 * cs, 0, 4 * cs);
	expect_bytes(img, want, size, 0);
	/* A discard inside one cluster changes nothing. */
	ASSERT_OK(qcow_image_discard(img, 6ull * cs + 1, cs - 2));
	expect_bytes(img, want, size, 0);
	ASSERT_OK(qcow_image_flush(img));
	ASSERT_EQ_U64(check_image(img).allocated_clusters, 3);
	check_clean(img);
	if (before > 0)
		ASSERT_LE_INT(actual_size(img), before - 5 * (int64_t)cs);

	/* New data fills the holes before the file grows. */
	uint8_t *more = malloc(5ull * cs);

	ASSERT_NOT_NULL(more);
	fill_random(more, 5ull * cs);
	write_ok(img, more, 5ull * cs, cs);
	memcpy(want + cs, more, 5ull * cs);
	ASSERT_OK(qcow_image_flush(img));
	ASSERT_EQ_U64(file_len(path), flen);
	expect_bytes(img, want, size, 0);
	check_clean(img);
	close_ok(img);

	img = open_ro(path);
	expect_bytes(img, want, size, 0);
	close_ok(img);
	check_file_clean(path);
	free(more);
	free(want);
}

TEST(discard_v3)
{
	discard_case(3);
}

TEST(discard_v2)
{
	discard_case(2);
}

/* --- resize --- */

TEST(resize_grow_zeroes_new_area)
{
	const char *path = tpath("g.qcow2");
	const uint32_t cs = 65536;
	uint8_t *buf = malloc(2 * cs);
	struct qcow_image *img;

	ASSERT_NOT_NULL(buf);
	memset(buf, 0xaa, 2 * cs);
	create_image(path, 2 * cs, cs, 3);
	img = open_rw(path);
	write_ok(img, buf, 2 * cs, 0);
	/* Shrink into cluster 1 (allowed: no cluster lies wholly beyond),
	 * then grow: the old bytes past 100 KiB must not come back. */
	ASSERT_OK(qcow_image_resize(img, 102400));
	ASSERT_EQ_U64(qcow_image_size(img), 102400);
	ASSERT_OK(qcow_image_resize(img, 1 << 20));
	ASSERT_EQ_U64(qcow_image_size(img), 1 << 20);
	expect_fill(img, 0xaa, 102400, 0);
	expect_fill(img, 0, (1 << 20) - 102400, 102400);
	close_ok(img);

	img = open_rw(path);
	ASSERT_EQ_U64(qcow_image_size(img), 1 << 20);
	expect_fill(img, 0xaa, 102400, 0);
	expect_fill(img, 0, (1 << 20) - 102400, 102400);
	/* The grown area is writable up to its last byte. */
	write_ok(img, buf, 1000, (1 << 20) - 1000);
	expect_fill(img, 0xaa, 1000, (1 << 20) - 1000);
	check_clean(img);
	close_ok(img);
	check_file_clean(path);
	free(buf);
}

/* Growing on the same image, without a reopen in between, after the
 * shrink: a grow from an unaligned end inside an allocated cluster. */
TEST(resize_grow_from_unaligned_end)
{
	const char *path = tpath("g2.qcow2");
	uint8_t buf[4096];
	struct qcow_image *img;

	memset(buf, 0x5a, sizeof(buf));
	create_image(path, 3 * 4096 + 512, 4096, 3);
	img = open_rw(path);
	write_ok(img, buf, 512, 3 * 4096);
	ASSERT_OK(qcow_image_resize(img, 4 * 4096));
	expect_fill(img, 0x5a, 512, 3 * 4096);
	expect_fill(img, 0, 4096 - 512, 3 * 4096 + 512);
	check_clean(img);
	close_ok(img);
}

TEST(resize_grow_l1_table)
{
	const char *path = tpath("l1.qcow2");
	uint8_t buf[3000];
	struct qcow_image *img;
	/* 512-byte clusters: one L1 entry maps 64 clusters, 32 KiB. */
	const uint64_t big = 16ull << 20;

	rng_seed(3);
	fill_random(buf, sizeof(buf));
	create_image(path, 32768, 512, 3);
	img = open_rw(path);
	ASSERT_ERR(qcow_image_pwrite(img, buf, sizeof(buf), 32768 - 1000),
		   -EINVAL);
	write_ok(img, buf, 1000, 32768 - 1000);
	ASSERT_OK(qcow_image_resize(img, big));
	write_ok(img, buf, sizeof(buf), big - sizeof(buf));
	write_ok(img, buf, sizeof(buf), 32768 - 100);
	expect_bytes(img, buf, 900, 32768 - 1000);
	expect_bytes(img, buf, sizeof(buf), 32768 - 100);
	expect_bytes(img, buf, sizeof(buf), big - sizeof(buf));
	expect_fill(img, 0, 1 << 20, 8 << 20);
	ASSERT_OK(qcow_image_flush(img));
	check_clean(img);
	close_ok(img);
	img = open_ro(path);
	ASSERT_EQ_U64(qcow_image_size(img), big);
	expect_bytes(img, buf, sizeof(buf), big - sizeof(buf));
	expect_bytes(img, buf, sizeof(buf), 32768 - 100);
	check_clean(img);
	close_ok(img);
}

TEST(resize_shrink)
{
	const char *path = tpath("s.qcow2");
	const uint32_t cs = 65536;
	uint8_t buf[1000];
	struct qcow_image *img;

	memset(buf, 0x77, sizeof(buf));
	create_image(path, 1 << 20, cs, 3);
	img = open_rw(path);
	write_ok(img, buf, sizeof(buf), 900 << 10);
	write_ok(img, buf, sizeof(buf), 0);
	ASSERT_ERR(qcow_image_resize(img, 512 << 10), -EBUSY);
	ASSERT_TRUE(strstr(qcow_image_errmsg(img), "shrink") != NULL);
	ASSERT_EQ_U64(qcow_image_size(img), 1 << 20);
	expect_fill(img, 0x77, sizeof(buf), 900 << 10);
	/* A cluster zeroed in place still holds a host cluster. */
	ASSERT_OK(qcow_image_write_zeroes(img, 896 << 10, cs, 0));
	ASSERT_ERR(qcow_image_resize(img, 512 << 10), -EBUSY);
	ASSERT_OK(qcow_image_discard(img, 512 << 10, 512 << 10));
	ASSERT_OK(qcow_image_resize(img, 512 << 10));
	ASSERT_EQ_U64(qcow_image_size(img), 512 << 10);
	ASSERT_ERR(qcow_image_pread(img, buf, 1, 512 << 10), -EINVAL);
	ASSERT_ERR(qcow_image_resize(img, 1000), -EINVAL);
	/* Shrinking to zero with data at offset 0 is refused too. */
	ASSERT_ERR(qcow_image_resize(img, 0), -EBUSY);
	check_clean(img);
	close_ok(img);
	img = open_ro(path);
	ASSERT_EQ_U64(qcow_image_size(img), 512 << 10);
	expect_fill(img, 0x77, sizeof(buf), 0);
	close_ok(img);
	check_file_clean(path);
}

/* --- backing files --- */

/* A raw backing file of n bytes of v, named name in the case's directory. */
static void make_raw(const char *name, uint64_t n, uint8_t v)
{
	uint8_t *b = malloc(n);
	int fd = open(tpath(name), O_CREAT | O_TRUNC | O_WRONLY, 0644);

	ASSERT_NOT_NULL(b);
	ASSERT_GE_INT(fd, 0);
	memset(b, v, n);
	ASSERT_EQ_INT(pwrite(fd, b, n, 0), (ssize_t)n);
	close(fd);
	free(b);
}

/*
 * Discarded and zeroed clusters of an overlay: version 3 records zeros so
 * the backing file no longer shows; version 2 cannot, so a discard shows
 * the backing file again while write-zeroes writes zeros.
 */
static void backing_case(int version)
{
	const char *path = tpath("over.qcow2");
	const uint32_t cs = 4096;
	struct qcow_create_opts o = { .version = version,
				      .cluster_size = cs,
				      .backing_file = "base.raw",
				      .backing_fmt = "raw" };
	uint8_t data[3 * 4096];
	struct qcow_image *img;
	struct qcow_info info;

	make_raw("base.raw", 16 * cs, 0x11);
	create_opts(path, &o);
	img = open_rw(path);
	ASSERT_EQ_U64(qcow_image_size(img), 16 * cs); /* the backing size */
	ASSERT_OK(qcow_image_info(img, &info));
	ASSERT_EQ_STR(info.backing_file, "base.raw");
	ASSERT_EQ_STR(info.backing_fmt, "raw");
	expect_fill(img, 0x11, 16 * cs, 0);
	/* A partial write copies the rest of the cluster from the base. */
	memset(data, 0x22, sizeof(data));
	write_ok(img, data, 100, cs + 10);
	expect_fill(img, 0x11, 10, cs);
	expect_fill(img, 0x22, 100, cs + 10);
	expect_fill(img, 0x11, cs - 110, cs + 110);

	write_ok(img, data, sizeof(data), 4 * cs);
	ASSERT_OK(qcow_image_discard(img, 4 * cs, cs));
	expect_fill(img, version >= 3 ? 0 : 0x11, cs, 4 * cs);
	ASSERT_OK(qcow_image_write_zeroes(img, 5 * cs, cs, 0));
	expect_fill(img, 0, cs, 5 * cs);
	/* Untouched clusters still show the base, allocated or not. */
	ASSERT_OK(
		qcow_image_write_zeroes(img, 8 * cs, cs, QCOW_ZERO_MAY_UNMAP));
	expect_fill(img, 0, cs, 8 * cs);
	ASSERT_OK(qcow_image_discard(img, 9 * cs, cs));
	expect_fill(img, version >= 3 ? 0 : 0x11, cs, 9 * cs);
	expect_fill(img, 0x11, cs, 10 * cs);
	expect_fill(img, 0x22, cs, 6 * cs);
	check_clean(img);
	close_ok(img);

	img = open_ro(path);
	expect_fill(img, version >= 3 ? 0 : 0x11, cs, 4 * cs);
	expect_fill(img, 0, cs, 5 * cs);
	expect_fill(img, 0x22, cs, 6 * cs);
	expect_fill(img, 0, cs, 8 * cs);
	expect_fill(img, 0x11, cs, 10 * cs);
	expect_fill(img, 0x22, 100, cs + 10);
	expect_fill(img, 0x11, cs - 110, cs + 110);
	close_ok(img);
}

TEST(backing_v3)
{
	backing_case(3);
}

TEST(backing_v2)
{
	backing_case(2);
}

/* --- many I/O vectors --- */

/*
 * A guest request may carry as many vectors as pwritev allows (IOV_MAX,
 * 1024), whichever path the library takes: a fresh cluster, a cluster
 * copied on write (here from a compressed one), a reused cluster.
 */
TEST(pwritev_with_iov_max_vectors)
{
	const char *path = tpath("iov.qcow2");
	const uint32_t cs = 65536;
	enum { N = 1024, EACH = 10 };
	static struct iovec iov[N];
	static uint8_t bytes[N * EACH], comp[65536], want[65536];
	struct qcow_image *img;

	for (size_t i = 0; i < sizeof(bytes); i++)
		bytes[i] = (uint8_t)(i * 3 + 1);
	for (int i = 0; i < N; i++)
		iov[i] = (struct iovec){ bytes + i * EACH, EACH };
	memset(comp, 0x44, sizeof(comp));
	create_image(path, 8 * cs, cs, 3);
	img = open_rw(path);
	/* Cluster 0 compressed, cluster 2 allocated then discarded. */
	ASSERT_OK(qcow_image_write_compressed(img, comp, cs, 0));
	write_ok(img, comp, cs, 2 * cs);
	ASSERT_OK(qcow_image_discard(img, 2 * cs, cs));
	ASSERT_OK(qcow_image_flush(img));

	/* Into the reused cluster, a fresh one, the compressed one. */
	static const uint64_t where[] = { 2 * 65536 + 7, 4 * 65536 + 1000,
					  1000 };
	bool ok[3];
	int bad = 0;

	for (size_t w = 0; w < 3; w++) {
		ssize_t r = qcow_image_pwritev(img, iov, N, where[w]);

		ok[w] = r == (ssize_t)sizeof(bytes);
		if (!ok[w]) {
			test_note("pwritev of %d vectors at %llu: %zd (%s)", N,
				  (unsigned long long)where[w], r,
				  qcow_image_errmsg(img));
			bad++;
		}
	}
	for (size_t w = 0; w < 3; w++) {
		uint64_t c = where[w] / cs * cs;

		memset(want, w == 2 ? 0x44 : 0, sizeof(want));
		if (ok[w])
			memcpy(want + (where[w] - c), bytes, sizeof(bytes));
		expect_bytes(img, want, cs, c);
	}
	/* Read back through as many vectors, too. */
	static uint8_t back[N * EACH];
	static struct iovec riov[N];

	for (int i = 0; i < N; i++)
		riov[i] = (struct iovec){ back + i * EACH, EACH };
	ASSERT_EQ_INT(qcow_image_preadv(img, riov, N, where[1]),
		      (intmax_t)sizeof(back));
	ASSERT_EQ_MEM(back, bytes, sizeof(back));
	ASSERT_OK(qcow_image_flush(img));
	struct qcow_check_result res = check_image(img);

	if (res.corruptions || res.leaks)
		test_note("check: %llu corruptions, %llu leaks",
			  (unsigned long long)res.corruptions,
			  (unsigned long long)res.leaks);
	if (bad)
		TEST_FAIL("%d of 3 writes of IOV_MAX vectors failed", bad);
	ASSERT_EQ_U64(res.corruptions, 0);
	ASSERT_EQ_U64(res.leaks, 0);
	close_ok(img);
}

/* --- compaction --- */

TEST(compact_shrinks_and_keeps_data)
{
	const char *path = tpath("cmp.qcow2");
	const uint32_t cs = 4096;
	const uint64_t size = 64 * cs;
	uint8_t *want = malloc(size);
	struct qcow_image *img;
	uint64_t before;

	ASSERT_NOT_NULL(want);
	rng_seed(5);
	fill_random(want, size);
	create_image(path, size, cs, 3);
	img = open_rw(path);
	write_ok(img, want, size, 0);
	/* Free every other cluster of the first three quarters. */
	for (uint64_t c = 0; c < 48; c += 2) {
		ASSERT_OK(qcow_image_discard(img, c * cs, cs));
		memset(want + c * cs, 0, cs);
	}
	ASSERT_OK(qcow_image_flush(img));
	before = file_len(path);
	ASSERT_OK(qcow_image_compact(img));
	ASSERT_LE_U64(file_len(path), before - 20 * cs);
	expect_bytes(img, want, size, 0);
	check_clean(img);
	/* Still writable where it was compacted. */
	write_ok(img, want + 5, 3 * cs, 7 * cs + 5);
	memcpy(want + 7 * cs + 5, want + 5, 3 * cs);
	expect_bytes(img, want, size, 0);
	close_ok(img);
	img = open_ro(path);
	expect_bytes(img, want, size, 0);
	check_clean(img);
	close_ok(img);
	free(want);
}

/* --- access rules --- */

TEST(read_only_refuses_writes)
{
	const char *path = tpath("ro.qcow2");
	uint8_t buf[512] = { 1 };
	struct iovec iov = { buf, sizeof(buf) };
	struct qcow_check_result res;
	struct qcow_image *img;

	create_image(path, 1 << 20, 65536, 3);
	img = open_ro(path);
	ASSERT_ERR(qcow_image_pwrite(img, buf, sizeof(buf), 0), -EBADF);
	ASSERT_TRUE(strstr(qcow_image_errmsg(img), "read-only") != NULL);
	ASSERT_ERR(qcow_image_pwritev(img, &iov, 1, 512), -EBADF);
	ASSERT_ERR(qcow_image_write_zeroes(img, 0, 512, 0), -EBADF);
	ASSERT_ERR(qcow_image_discard(img, 0, 65536), -EBADF);
	ASSERT_ERR(qcow_image_resize(img, 2 << 20), -EBADF);
	ASSERT_ERR(qcow_image_write_compressed(img, buf, 512, 0), -EBADF);
	ASSERT_ERR(qcow_image_check(img, &res, QCOW_CHECK_REPAIR_LEAKS),
		   -EBADF);
	ASSERT_OK(qcow_image_flush(img));
	ASSERT_EQ_U64(qcow_image_size(img), 1 << 20);
	expect_fill(img, 0, 4096, 0);
	close_ok(img);

	/* force_share means read-only even when read_write is asked. */
	img = open_flags(path, true, true);
	ASSERT_ERR(qcow_image_pwrite(img, buf, sizeof(buf), 0), -EBADF);
	close_ok(img);
}

TEST(out_of_range_requests)
{
	const char *path = tpath("oor.qcow2");
	const uint64_t size = (1 << 20) + 512;
	uint8_t buf[1024] = { 0 };
	struct iovec iov[2] = { { buf, 512 }, { buf + 512, 512 } };
	struct qcow_image *img;

	create_image(path, size, 65536, 3);
	img = open_rw(path);
	ASSERT_ERR(qcow_image_pread(img, buf, 2, size - 1), -EINVAL);
	ASSERT_ERR(qcow_image_pwrite(img, buf, 2, size - 1), -EINVAL);
	ASSERT_ERR(qcow_image_pread(img, buf, 1, size), -EINVAL);
	ASSERT_ERR(qcow_image_pwrite(img, buf, 1, size), -EINVAL);
	ASSERT_ERR(qcow_image_pread(img, buf, 1, UINT64_MAX), -EINVAL);
	ASSERT_ERR(qcow_image_pwrite(img, buf, 16, UINT64_MAX - 8), -EINVAL);
	ASSERT_ERR(qcow_image_preadv(img, iov, 2, size - 1000), -EINVAL);
	ASSERT_ERR(qcow_image_pwritev(img, iov, 2, size - 1000), -EINVAL);
	ASSERT_ERR(qcow_image_write_zeroes(img, size - 512, 1024, 0), -EINVAL);
	ASSERT_ERR(qcow_image_write_zeroes(img, UINT64_MAX, 2, 0), -EINVAL);
	ASSERT_ERR(qcow_image_discard(img, 0, size + 65536), -EINVAL);
	ASSERT_TRUE(strstr(qcow_image_errmsg(img), "beyond") != NULL);
	/* The last byte and empty requests at the end are fine. */
	ASSERT_EQ_INT(qcow_image_pwrite(img, "x", 1, size - 1), 1);
	ASSERT_EQ_INT(qcow_image_pread(img, buf, 0, size), 0);
	ASSERT_EQ_INT(qcow_image_pwrite(img, buf, 0, size), 0);
	ASSERT_EQ_INT(qcow_image_pread(img, buf, 1, size - 1), 1);
	ASSERT_EQ_U64(buf[0], 'x');
	/* Nothing beyond the end was written. */
	check_clean(img);
	ASSERT_EQ_U64(check_image(img).allocated_clusters, 1);
	close_ok(img);
}

/* --- qcow_image_check --- */

TEST(check_fresh_images)
{
	static const uint32_t sizes[] = { 512, 4096, 65536, 2u << 20 };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		for (int v = 2; v <= 3; v++) {
			const char *path = tpath("f.qcow2");
			struct qcow_image *img;
			struct qcow_check_result res;

			create_image(path, 64ull << 20, sizes[i], v);
			img = open_ro(path);
			res = check_image(img);
			ASSERT_EQ_U64(res.corruptions, 0);
			ASSERT_EQ_U64(res.leaks, 0);
			ASSERT_EQ_U64(res.allocated_clusters, 0);
			ASSERT_EQ_U64(res.total_clusters,
				      (64ull << 20) / sizes[i]);
			close_ok(img);
			unlink(path);
		}
}

/* Raw access to the file, to damage it on purpose. */
static uint64_t raw_u64(int fd, uint64_t off)
{
	uint8_t b[8];

	ASSERT_EQ_INT(pread(fd, b, 8, (off_t)off), 8);
	return load_be64(b);
}

static void raw_put_be16(int fd, uint64_t off, uint16_t v)
{
	uint8_t b[2];

	store_be16(b, v);
	ASSERT_EQ_INT(pwrite(fd, b, 2, (off_t)off), 2);
}

TEST(check_finds_corruption_and_repairs)
{
	const char *path = tpath("bad.qcow2");
	const uint32_t cs = 65536;
	uint8_t buf[100];
	struct qcow_check_result res;
	struct qcow_image *img;

	memset(buf, 0x42, sizeof(buf));
	create_image(path, 1 << 20, cs, 3);
	img = open_rw(path);
	write_ok(img, buf, sizeof(buf), 5000);
	close_ok(img);
	check_file_clean(path);

	/* Drop the refcount of the L2 table to zero. */
	int fd = open(path, O_RDWR);

	ASSERT_GE_INT(fd, 0);
	uint64_t l1 = raw_u64(fd, 40), rt = raw_u64(fd, 48);
	uint64_t l2 = raw_u64(fd, l1) & 0x00fffffffffffe00ull;
	uint64_t rb = raw_u64(fd, rt);

	ASSERT_NE_U64(l2, 0);
	ASSERT_NE_U64(rb, 0);
	raw_put_be16(fd, rb + 2 * (l2 / cs), 0);
	close(fd);

	img = open_ro(path);
	res = check_image(img);
	ASSERT_GE_U64(res.corruptions, 1);
	close_ok(img);

	img = open_rw(path);
	ASSERT_OK(qcow_image_check(img, &res, QCOW_CHECK_REPAIR_ALL));
	ASSERT_EQ_U64(res.corruptions, 0);
	ASSERT_GE_U64(res.corruptions_fixed, 1);
	expect_fill(img, 0x42, sizeof(buf), 5000);
	close_ok(img);
	check_file_clean(path);
	img = open_ro(path);
	expect_fill(img, 0x42, sizeof(buf), 5000);
	close_ok(img);
}

TEST(check_finds_leak_and_repairs)
{
	const char *path = tpath("leak.qcow2");
	const uint32_t cs = 65536;
	struct qcow_check_result res;
	struct qcow_image *img;

	create_image(path, 1 << 20, cs, 3);
	/* One more cluster at the end, counted but used by nothing. */
	uint64_t end = file_len(path);
	int fd = open(path, O_RDWR);

	ASSERT_GE_INT(fd, 0);
	ASSERT_EQ_INT(ftruncate(fd, (off_t)(end + cs)), 0);
	raw_put_be16(fd, raw_u64(fd, raw_u64(fd, 48)) + 2 * (end / cs), 1);
	close(fd);

	img = open_ro(path);
	res = check_image(img);
	ASSERT_EQ_U64(res.corruptions, 0);
	ASSERT_EQ_U64(res.leaks, 1);
	close_ok(img);

	img = open_rw(path);
	ASSERT_OK(qcow_image_check(img, &res, QCOW_CHECK_REPAIR_LEAKS));
	ASSERT_EQ_U64(res.leaks, 0);
	ASSERT_EQ_U64(res.leaks_fixed, 1);
	close_ok(img);
	check_file_clean(path);
}

/* --- an in-memory I/O backend, with failure injection --- */

struct memfile {
	uint8_t *b;
	size_t len, cap;
	long ops; /* pwritev, flush, punch_hole and truncate calls */
	long fail_at; /* the op that fails (1-based); 0: none */
	bool sticky; /* and every op after it */
	long failures;
	size_t limit; /* longest the file may grow; 0: 512 MiB */
	long rt_call; /* the first op that wrote the header's refcount
			   table offset (bytes 48..55); 0: none */
};

static int mem_fail(struct memfile *m)
{
	m->ops++;
	if (m->fail_at &&
	    (m->ops == m->fail_at || (m->sticky && m->ops > m->fail_at))) {
		m->failures++;
		return -EIO;
	}
	return 0;
}

static int mem_reserve(struct memfile *m, size_t len)
{
	if (len > (m->limit ? m->limit : 512u << 20))
		return -ENOSPC; /* a runaway: say so rather than swap */
	if (len > m->cap) {
		size_t ncap = m->cap ? m->cap : 65536;
		uint8_t *nb;

		while (ncap < len)
			ncap *= 2;
		nb = realloc(m->b, ncap);
		if (!nb)
			return -ENOMEM;
		m->b = nb;
		m->cap = ncap;
	}
	if (len > m->len) {
		memset(m->b + m->len, 0, len - m->len); /* a hole reads zero */
		m->len = len;
	}
	return 0;
}

static ssize_t mem_preadv(void *opaque, const struct iovec *iov, int n,
			  uint64_t off)
{
	struct memfile *m = opaque;
	size_t done = 0;

	for (int i = 0; i < n; i++) {
		if (off + done >= m->len)
			break;
		size_t take = m->len - (off + done);

		if (take > iov[i].iov_len)
			take = iov[i].iov_len;
		memcpy(iov[i].iov_base, m->b + off + done, take);
		done += take;
		if (take < iov[i].iov_len)
			break;
	}
	return (ssize_t)done;
}

static ssize_t mem_pwritev(void *opaque, const struct iovec *iov, int n,
			   uint64_t off)
{
	struct memfile *m = opaque;
	size_t total = 0;
	int r = mem_fail(m);

	if (r < 0)
		return r;
	for (int i = 0; i < n; i++)
		total += iov[i].iov_len;
	r = mem_reserve(m, off + total);
	if (r < 0)
		return r;
	if (!m->rt_call && off < 56 && off + total > 48)
		m->rt_call = m->ops;
	for (int i = 0; i < n; i++) {
		memcpy(m->b + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	return (ssize_t)total;
}

static int mem_flush(void *opaque)
{
	return mem_fail(opaque);
}

static int mem_punch(void *opaque, uint64_t off, uint64_t len)
{
	struct memfile *m = opaque;
	int r = mem_fail(m);

	if (r < 0)
		return r;
	if (off < m->len)
		memset(m->b + off, 0, len < m->len - off ? len : m->len - off);
	return 0;
}

static int mem_truncate(void *opaque, uint64_t len)
{
	struct memfile *m = opaque;
	int r = mem_fail(m);

	if (r < 0)
		return r;
	if (len < m->len) {
		memset(m->b + len, 0, m->len - len);
		m->len = len;
		return 0;
	}
	return mem_reserve(m, len);
}

static int64_t mem_size(void *opaque)
{
	return (int64_t)((struct memfile *)opaque)->len;
}

static const struct qcow_io_ops mem_io = {
	.preadv = mem_preadv,
	.pwritev = mem_pwritev,
	.flush = mem_flush,
	.punch_hole = mem_punch,
	.truncate = mem_truncate,
	.size = mem_size,
	.allocated = NULL,
};

static void mem_load(struct memfile *m, const char *path)
{
	int fd = open(path, O_RDONLY);
	struct stat st;

	memset(m, 0, sizeof(*m));
	ASSERT_GE_INT(fd, 0);
	ASSERT_EQ_INT(fstat(fd, &st), 0);
	ASSERT_OK(mem_reserve(m, (size_t)st.st_size));
	ASSERT_EQ_INT(pread(fd, m->b, m->len, 0), (ssize_t)m->len);
	close(fd);
}

static void mem_copy(struct memfile *dst, const struct memfile *src)
{
	memset(dst, 0, sizeof(*dst));
	ASSERT_OK(mem_reserve(dst, src->len));
	memcpy(dst->b, src->b, src->len);
}

static void mem_save(const struct memfile *m, const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	ASSERT_GE_INT(fd, 0);
	ASSERT_EQ_INT(pwrite(fd, m->b, m->len, 0), (ssize_t)m->len);
	close(fd);
}

/* The library's log, kept to explain a failure. */
static char log_text[8192];

static void log_keep(void *opaque, enum qcow_log_level level, const char *msg)
{
	size_t used = strlen(log_text);

	(void)opaque;
	(void)level;
	if (strncmp(msg, "Leaked", 6) == 0)
		return; /* leaks are allowed; keep room for the rest */
	snprintf(log_text + used, sizeof(log_text) - used, "#   %s\n", msg);
}

static int mem_open(struct qcow_image **img, struct memfile *m, bool rw,
		    struct qcow_error *err)
{
	/* A small L2 cache: quick to set up, and it makes the library
	 * write back and evict tables in the middle of requests. */
	struct qcow_open_opts o = { .read_write = rw,
				    .io = &mem_io,
				    .io_opaque = m,
				    .l2_cache_bytes = 8192,
				    .log = { log_keep, NULL } };

	log_text[0] = 0;
	return qcow_image_open(img, NULL, &o, err);
}

TEST(memory_backend)
{
	const char *path = tpath("m.qcow2");
	struct memfile m;
	struct qcow_error err = { 0 };
	struct qcow_image *img;
	struct qcow_info info;
	uint8_t buf[70000];

	rng_seed(11);
	fill_random(buf, sizeof(buf));
	create_image(path, 4 << 20, 4096, 3);
	mem_load(&m, path);
	ASSERT_EQ_INT(unlink(path), 0); /* the image lives in memory only */

	ASSERT_OK(mem_open(&img, &m, true, &err));
	write_ok(img, buf, sizeof(buf), 12345);
	expect_bytes(img, buf, sizeof(buf), 12345);
	ASSERT_OK(qcow_image_discard(img, 0, 4 << 20));
	expect_fill(img, 0, sizeof(buf), 12345);
	write_ok(img, buf, sizeof(buf), (4 << 20) - sizeof(buf));
	ASSERT_OK(qcow_image_info(img, &info));
	ASSERT_EQ_INT(info.actual_size, -1); /* the backend cannot say */
	ASSERT_EQ_U64(info.file_length, m.len);
	check_clean(img);
	close_ok(img);
	ASSERT_GT_INT(m.ops, 0);

	/* The bytes in memory are a complete image. */
	mem_save(&m, path);
	img = open_ro(path);
	expect_bytes(img, buf, sizeof(buf), (4 << 20) - sizeof(buf));
	expect_fill(img, 0, 4096, 12345);
	check_clean(img);
	close_ok(img);

	/* Garbage in memory is refused with a message. */
	memset(m.b, 0, 512);
	ASSERT_ERR(mem_open(&img, &m, false, &err), -EINVAL);
	ASSERT_NULL(img);
	ASSERT_TRUE(strstr(err.msg, "magic") != NULL);
	free(m.b);
}

/*
 * Growing an image with 512-byte clusters and 64-bit refcounts (64
 * clusters per refcount block) so far that its L1 table needs more
 * clusters than one refcount block describes. The new L1 table must be
 * contiguous, and the allocator must find such a run. The image is in
 * memory, so that a runaway allocator meets a limit instead of the disk.
 */
TEST(resize_grow_l1_beyond_refcount_block)
{
	const char *path = tpath("l1big.qcow2");
	struct qcow_create_opts o = { .size = 1 << 20,
				      .cluster_size = 512,
				      .refcount_bits = 64 };
	struct qcow_error err = { 0 };
	uint8_t buf[512];
	struct qcow_image *img;
	struct memfile m;
	/* 256 MiB: 8192 L1 entries, 128 clusters of L1 table. */
	const uint64_t big = 256ull << 20;
	int r;

	memset(buf, 0x3c, sizeof(buf));
	create_opts(path, &o);
	mem_load(&m, path);
	m.limit = 64u << 20;
	ASSERT_OK(mem_open(&img, &m, true, &err));
	write_ok(img, buf, sizeof(buf), 0);
	r = qcow_image_resize(img, big);
	if (r != 0)
		TEST_FAIL(
			"resize to 256 MiB: %d (%s) after %ld writes, file %zu bytes",
			r, qcow_image_errmsg(img), m.ops, m.len);
	/* 128 clusters of L1 and a few refcount blocks: well under 1 MiB. */
	ASSERT_LT_U64(m.len, 1 << 20);
	write_ok(img, buf, sizeof(buf), big - 512);
	expect_fill(img, 0x3c, 512, big - 512);
	expect_fill(img, 0x3c, 512, 0);
	check_clean(img);
	qcow_image_close(img);
	free(m.b);
}

/* The same backend without hole punching. */
static const struct qcow_io_ops mem_io_nopunch = {
	.preadv = mem_preadv,
	.pwritev = mem_pwritev,
	.flush = mem_flush,
	.punch_hole = NULL,
	.truncate = mem_truncate,
	.size = mem_size,
	.allocated = NULL,
};

/*
 * Where holes cannot be punched, a released cluster keeps its old bytes.
 * When it is handed out again for a partial write, the rest of it must
 * read as zeros, not as what it held before.
 */
TEST(reused_cluster_without_punch_reads_zero)
{
	const char *path = tpath("np.qcow2");
	const uint32_t cs = 4096;
	struct qcow_open_opts o = { .read_write = true, .io = &mem_io_nopunch };
	struct qcow_error err = { 0 };
	struct qcow_image *img;
	struct memfile m;
	uint8_t a[4096], b[100], want[4096];

	memset(a, 0xaa, sizeof(a));
	memset(b, 0xbb, sizeof(b));
	create_image(path, 8 * cs, cs, 3);
	mem_load(&m, path);
	o.io_opaque = &m;
	ASSERT_OK(qcow_image_open(&img, NULL, &o, &err));
	write_ok(img, a, cs, 0);
	ASSERT_OK(qcow_image_flush(img));
	size_t len = m.len;

	ASSERT_OK(qcow_image_discard(img, 0, cs));
	ASSERT_OK(qcow_image_flush(img));
	write_ok(img, b, sizeof(b), cs + 300);
	ASSERT_OK(qcow_image_flush(img));
	ASSERT_EQ_U64(m.len, len); /* the old cluster was taken again */
	memset(want, 0, sizeof(want));
	memcpy(want + 300, b, sizeof(b));
	expect_bytes(img, want, cs, cs);
	expect_fill(img, 0, cs, 0);
	check_clean(img);
	close_ok(img);
	ASSERT_OK(qcow_image_open(&img, NULL, &o, &err));
	expect_bytes(img, want, cs, cs);
	close_ok(img);
	free(m.b);
}

/* --- lazy refcounts --- */

/*
 * With lazy refcounts the counts on disk may be stale while the image is
 * open (the dirty bit says so). A copy of the file taken before close, as
 * after a crash, must open read-write, have its counts rebuilt, and keep
 * every byte that a flush made durable.
 */
TEST(lazy_refcounts_crash_rebuilds)
{
	const char *path = tpath("lazy.qcow2");
	struct qcow_create_opts co = { .size = 4 << 20,
				       .cluster_size = 4096,
				       .lazy_refcounts = true };
	struct qcow_error err = { 0 };
	struct qcow_image *img;
	struct qcow_info info;
	struct memfile m, crash;
	uint8_t buf[50000];

	rng_seed(21);
	fill_random(buf, sizeof(buf));
	create_opts(path, &co);
	mem_load(&m, path);
	ASSERT_OK(mem_open(&img, &m, true, &err));
	write_ok(img, buf, sizeof(buf), 3000);
	ASSERT_OK(qcow_image_discard(img, 0, 8192));
	write_ok(img, buf, 20000, 2u << 20);
	ASSERT_OK(qcow_image_flush(img));
	mem_copy(&crash, &m); /* the power goes here */
	close_ok(img);

	ASSERT_OK(mem_open(&img, &crash, false, &err));
	ASSERT_OK(qcow_image_info(img, &info));
	ASSERT_TRUE(info.dirty);
	close_ok(img);
	ASSERT_OK(mem_open(&img, &crash, true, &err));
	ASSERT_OK(qcow_image_info(img, &info));
	ASSERT_TRUE(info.dirty); /* it was, when opened */
	check_clean(img);
	expect_fill(img, 0, 8192, 0);
	expect_bytes(img, buf + 8192 - 3000, sizeof(buf) - (8192 - 3000), 8192);
	expect_bytes(img, buf, 20000, 2u << 20);
	close_ok(img);
	/* Closed cleanly now: not dirty any more. */
	ASSERT_OK(mem_open(&img, &crash, false, &err));
	ASSERT_OK(qcow_image_info(img, &info));
	ASSERT_FALSE(info.dirty);
	check_clean(img);
	close_ok(img);
	free(m.b);
	free(crash.b);
}

/*
 * Growing from an unaligned size: the bytes between the old end and the
 * end of its cluster may hold data from before a shrink, and must read as
 * zeros once the disk is larger. That must hold on disk at every moment,
 * so fail every write-side call of the resize (and all after it, as a
 * disk that went away): whatever size the reopened image has, the bytes
 * past the old end within it read as zeros.
 */
TEST(resize_grow_faults_never_expose_old_bytes)
{
	const char *path = tpath("rg.qcow2");
	const uint32_t cs = 4096;
	const uint64_t small = cs + 512, big = 4 * cs;
	uint8_t a[2 * 4096];
	struct qcow_error err = { 0 };
	struct qcow_image *img;
	struct memfile base, m;
	long total;

	memset(a, 0xaa, sizeof(a));
	create_image(path, 2 * cs, cs, 3);
	img = open_rw(path);
	write_ok(img, a, sizeof(a), 0);
	ASSERT_OK(qcow_image_resize(img, small));
	close_ok(img);
	mem_load(&base, path);

	mem_copy(&m, &base);
	ASSERT_OK(mem_open(&img, &m, true, &err));
	ASSERT_OK(qcow_image_resize(img, big));
	close_ok(img);
	total = m.ops;
	free(m.b);
	ASSERT_GT_INT(total, 0);

	for (long n = 1; n <= total; n++) {
		mem_copy(&m, &base);
		m.fail_at = n;
		m.sticky = true;
		ASSERT_OK(mem_open(&img, &m, true, &err));
		int r = qcow_image_resize(img, big);

		ASSERT_TRUE(r == 0 || (r < 0 && r > -4096));
		qcow_image_close(img);
		m.fail_at = 0;
		ASSERT_OK(mem_open(&img, &m, false, &err));
		uint64_t size = qcow_image_size(img);

		ASSERT_TRUE(size == small || size == big);
		expect_fill(img, 0xaa, small, 0);
		if (size == big) {
			uint8_t got[3 * 4096];

			read_ok(img, got, big - small, small);
			for (uint64_t k = 0; k < big - small; k++)
				if (got[k])
					TEST_FAIL(
						"fault at call %ld of %ld: size %llu, but guest byte %llu reads 0x%02x",
						n, total,
						(unsigned long long)size,
						(unsigned long long)(small + k),
						got[k]);
		}
		close_ok(img);
		free(m.b);
	}
	free(base.b);
}

/*
 * The failure workload: guest operations that each touch their own
 * region, so that what a successful one wrote can be checked no matter
 * which others failed. Results go to res[]; 1 means success.
 */
#define WL_OPS 14
#define WL_CS 512u
#define WL_SIZE (4u << 20)
#define WL_MAX (5u << 20) /* the size after the resize */
#define WL_PREFILL_OFF (2u << 20)

struct wl_op {
	int kind; /* 0 write, 1 zeroes, 2 discard, 3 flush, 4 compressed,
		     5 resize */
	uint64_t off, len;
};

static const struct wl_op wl[WL_OPS] = {
	{ 0, 1000, 3000 }, /* crosses clusters, new L2 table */
	{ 0, 65536, 512 }, /* a whole cluster */
	{ 3, 0, 0 },
	{ 0, 200000, 40000 }, /* another L2 table, many clusters */
	{ 1, 201000, 2048 }, /* zeroes inside that */
	{ 0, 512000, 700 },
	{ 2, 204800, 4096 }, /* discard inside the 200000 run */
	{ 4, 600064, 512 }, /* compressed (cluster aligned) */
	{ 3, 0, 0 },
	{ 0, 300000, 100000 }, /* enough to need a new refcount block */
	{ 5, WL_MAX, 0 }, /* grow: a bigger L1 table */
	{ 0, WL_MAX - 5000, 5000 },
	{ 1, 400000, 1 << 20 }, /* zeroes over many clusters */
	{ 3, 0, 0 },
};

static uint8_t wl_byte(int op, uint64_t i)
{
	return (uint8_t)(op * 37 + (i % 251) + 1);
}

/* Bytes written at WL_PREFILL_OFF before the workload, where no
 * operation of it reaches: they take host space, so that the workload
 * starts near where the refcount table must grow. */
static uint64_t wl_prefill;

static uint8_t prefill_byte(uint64_t i)
{
	return (uint8_t)(i % 241 + 3);
}

/* The message of the first operation that failed. */
static char wl_first_error[256];

/* Runs the workload; returns each op's outcome in ok[]. Every call must
 * succeed or fail with a negative errno: anything else fails the test. */
static void run_workload(struct qcow_image *img, bool ok[WL_OPS])
{
	static uint8_t buf[1 << 20];

	for (int i = 0; i < WL_OPS; i++) {
		const struct wl_op *o = &wl[i];
		ssize_t r = 0;

		if (o->kind == 0 || o->kind == 4)
			for (uint64_t k = 0; k < o->len; k++)
				buf[k] = wl_byte(i, k);
		switch (o->kind) {
		case 0:
			r = qcow_image_pwrite(img, buf, o->len, o->off);
			if (r >= 0 && r != (ssize_t)o->len)
				TEST_FAIL("op %d: pwrite returned %zd", i, r);
			if (r > 0)
				r = 0;
			break;
		case 1:
			r = qcow_image_write_zeroes(img, o->off, o->len,
						    QCOW_ZERO_MAY_UNMAP);
			break;
		case 2:
			r = qcow_image_discard(img, o->off, o->len);
			break;
		case 3:
			r = qcow_image_flush(img);
			break;
		case 4:
			r = qcow_image_write_compressed(img, buf, o->len,
							o->off);
			break;
		case 5:
			r = qcow_image_resize(img, o->off);
			break;
		}
		if (r > 0 || r < -4095)
			TEST_FAIL("op %d returned %zd", i, r);
		ok[i] = r == 0;
		if (!ok[i] && !wl_first_error[0])
			snprintf(wl_first_error, sizeof(wl_first_error),
				 "op %d: %s", i, qcow_image_errmsg(img));
	}
}

/*
 * What the guest must read after the workload, given which operations are
 * known to have taken effect (done[]): exp[] holds the bytes, known[] says
 * which bytes are determined. A byte that an operation not in done[] would
 * have changed is open, until a later operation in done[] sets it.
 */
static bool wl_model_valid; /* exp and known hold the model of wl_done */
static bool wl_done[WL_OPS];

static void wl_model(const bool done[WL_OPS], uint8_t *exp, uint8_t *known)
{
	if (wl_model_valid && memcmp(wl_done, done, sizeof(wl_done)) == 0)
		return;
	memcpy(wl_done, done, sizeof(wl_done));
	wl_model_valid = true;
	memset(exp, 0, WL_MAX);
	memset(known, 1, WL_MAX);
	for (uint64_t k = 0; k < wl_prefill; k++)
		exp[WL_PREFILL_OFF + k] = prefill_byte(k);
	for (int i = 0; i < WL_OPS; i++) {
		const struct wl_op *o = &wl[i];
		uint64_t s = o->off, e = o->off + o->len;

		if (o->kind == 3 || o->kind == 5)
			continue;
		if (o->kind == 2) { /* whole clusters only */
			s = (s + WL_CS - 1) / WL_CS * WL_CS;
			e = e / WL_CS * WL_CS;
		}
		if (e > WL_MAX)
			e = WL_MAX;
		if (s >= e)
			continue;
		memset(known + s, done[i], e - s);
		if (o->kind == 0 || o->kind == 4)
			for (uint64_t b = s; b < e; b++)
				exp[b] = wl_byte(i, b - o->off);
		else
			memset(exp + s, 0, e - s);
	}
}

static uint8_t wl_exp[WL_MAX], wl_known[WL_MAX], wl_got[WL_MAX];

/* Compare [off, off+len) of the guest with the model. */
static bool range_matches(struct qcow_image *img, uint64_t off, uint64_t len,
			  char *msg, size_t msglen)
{
	read_ok(img, wl_got + off, len, off);
	for (uint64_t blk = off; blk < off + len; blk += 4096) {
		uint64_t end = off + len - blk < 4096 ? off + len : blk + 4096;

		if (memcmp(wl_got + blk, wl_exp + blk, end - blk) == 0)
			continue;
		for (uint64_t b = blk; b < end; b++)
			if (wl_known[b] && wl_got[b] != wl_exp[b]) {
				snprintf(
					msg, msglen,
					"guest byte %llu is 0x%02x, want 0x%02x",
					(unsigned long long)b, wl_got[b],
					wl_exp[b]);
				return false;
			}
	}
	return true;
}

/*
 * The image reads as the model says wherever the model knows; if not, why
 * is in msg and the result is false. With all set, the whole disk is read;
 * otherwise, to keep sweeps quick, what the workload touches (below 1.5
 * MiB and its last 8 KiB) and a 64 KiB window of the rest chosen by seq.
 */
static bool model_matches(struct qcow_image *img, const bool done[WL_OPS],
			  bool all, long seq, char *msg, size_t msglen)
{
	uint64_t size = qcow_image_size(img);
	const uint64_t touched = 3u << 19, tail = 8192, win = 65536;

	ASSERT_LE_U64(size, WL_MAX);
	wl_model(done, wl_exp, wl_known);
	if (all || size < touched + tail + win)
		return range_matches(img, 0, size, msg, msglen);
	uint64_t span = size - touched - tail - win;
	uint64_t w = touched + (uint64_t)seq * 7 * win % span;

	return range_matches(img, 0, touched, msg, msglen) &&
	       range_matches(img, w, win, msg, msglen) &&
	       range_matches(img, size - tail, tail, msg, msglen);
}

/* A fault-free run: the count of write-side calls, and a check of the
 * workload and its model. */
static long workload_ops(const struct memfile *base, long *rt_call)
{
	struct memfile m;
	struct qcow_error err = { 0 };
	struct qcow_image *img;
	bool ok[WL_OPS];

	mem_copy(&m, base);
	test_note("image file of %zu bytes before the workload", m.len);
	ASSERT_OK(mem_open(&img, &m, true, &err));
	run_workload(img, ok);
	for (int i = 0; i < WL_OPS; i++)
		if (!ok[i])
			TEST_FAIL("op %d failed without injected faults: %s", i,
				  qcow_image_errmsg(img));
	ASSERT_EQ_U64(qcow_image_size(img), WL_MAX);
	char msg[256];

	if (!model_matches(img, ok, true, 0, msg, sizeof(msg)))
		TEST_FAIL("fault-free: %s", msg);
	close_ok(img);
	ASSERT_OK(mem_open(&img, &m, false, &err));
	if (!model_matches(img, ok, true, 0, msg, sizeof(msg)))
		TEST_FAIL("fault-free, reopened: %s", msg);
	check_clean(img);
	close_ok(img);
	/* Where the header says the refcount table is. */
	bool moved = load_be64(m.b + 48) != load_be64(base->b + 48);

	*rt_call = moved ? m.rt_call : 0;
	test_note("%zu bytes after it; refcount table %s", m.len,
		  moved ? "moved" : "in place");
	free(m.b);
	return m.ops;
}

/*
 * For every write-side call n of the workload: fail call n (and, when
 * sticky, every later one, as a disk that went away). The library must
 * report errors, not crash; after close, the bytes must open (or be
 * refused with an error), with no corruption, and every operation that
 * succeeded and was followed by a successful flush (or close) must read
 * back.
 */
static void fault_sweep(bool sticky, unsigned refcount_bits, bool lazy,
			uint64_t prefill)
{
	const char *path = tpath("fi.qcow2");
	struct qcow_create_opts o = { .size = WL_SIZE,
				      .cluster_size = WL_CS,
				      .refcount_bits = refcount_bits,
				      .lazy_refcounts = lazy };
	struct memfile base;
	long total, opened = 0, bad = 0;

	create_opts(path, &o);
	wl_prefill = prefill;
	wl_model_valid = false;
	if (prefill) {
		struct qcow_image *img = open_rw(path);
		uint8_t *p = malloc(prefill);

		ASSERT_NOT_NULL(p);
		for (uint64_t k = 0; k < prefill; k++)
			p[k] = prefill_byte(k);
		write_ok(img, p, prefill, WL_PREFILL_OFF);
		close_ok(img);
		free(p);
	}
	mem_load(&base, path);
	long rt_call, first = 1, last;

	total = workload_ops(&base, &rt_call);
	last = total;
	/* The prefilled sweeps are there to fail around the move to a
	 * bigger refcount table (the rest is the other sweeps' work). */
	if (prefill) {
		ASSERT_GT_INT(rt_call, 0);
		first = rt_call > 60 ? rt_call - 60 : 1;
		last = rt_call + 40 < total ? rt_call + 40 : total;
		test_note("the header moves to the new table at call %ld",
			  rt_call);
	}
	test_note("%ld write-side calls in the workload", total);
	ASSERT_GT_INT(total, 20);

	for (long n = first; n <= last; n++) {
		struct memfile m;
		struct qcow_error err = { 0 };
		struct qcow_image *img;
		bool ok[WL_OPS], durable[WL_OPS];
		int r;

		mem_copy(&m, &base);
		m.fail_at = n;
		m.sticky = sticky;
		wl_first_error[0] = 0;
		r = mem_open(&img, &m, true, &err);
		if (r < 0) {
			/* Lazy refcounts set the dirty bit at open. */
			if (r < -4095 || !err.msg[0])
				TEST_FAIL("n=%ld: open returned %d", n, r);
			free(m.b);
			continue;
		}
		run_workload(img, ok);
		r = qcow_image_close(img);
		if (r > 0 || r < -4095)
			TEST_FAIL("n=%ld: close returned %d", n, r);
		if (m.failures == 0)
			TEST_FAIL("n=%ld: the injected fault was never hit", n);

		/* Durable: succeeded, and a later flush or the close
		 * succeeded. */
		bool flushed = r == 0;

		for (int i = WL_OPS - 1; i >= 0; i--) {
			durable[i] = ok[i] && flushed;
			if (wl[i].kind == 3 && ok[i])
				flushed = true;
		}

		/* Reopen what the "disk" holds, without faults. */
		m.fail_at = 0;
		r = mem_open(&img, &m, lazy, &err);
		if (r < 0) {
			if (r < -4095 || !err.msg[0])
				TEST_FAIL("n=%ld: reopen returned %d", n, r);
			test_note("n=%ld: reopen refused: %s", n, err.msg);
			free(m.b);
			continue;
		}
		opened++;
		log_text[0] = 0;
		struct qcow_check_result res = check_image(img);
		char why[400] = "";

		if (res.corruptions)
			snprintf(why, sizeof(why), "%llu corruptions:\n%.300s",
				 (unsigned long long)res.corruptions, log_text);
		else
			model_matches(img, durable, false, n, why, sizeof(why));
		if (why[0]) {
			/* Report the first few, then the count. */
			char failed[64] = "";

			for (int i = 0; i < WL_OPS; i++)
				if (!ok[i])
					snprintf(failed + strlen(failed),
						 sizeof(failed) -
							 strlen(failed),
						 " %d", i);
			if (bad++ < 3)
				test_note(
					"fault at call %ld%s (failed ops:%s; first: %s): %s",
					n, sticky ? " and after" : "", failed,
					wl_first_error, why);
		}
		close_ok(img);
		free(m.b);
	}
	test_note("%ld of %ld runs reopened", opened, last - first + 1);
	free(base.b);
	ASSERT_GT_INT(opened, 0);
	if (bad)
		TEST_FAIL("%ld of %ld faults left a damaged image or lost data",
			  bad, last - first + 1);
}

#define PREFILL_NEAR_2M (1900u << 10)

TEST(faults_transient)
{
	fault_sweep(false, 16, false, 0);
}

/* 64-bit refcounts: 64 clusters per block, so the workload adds a
 * refcount block every 32 KiB of file. */
TEST(faults_sticky_wide_refcounts)
{
	fault_sweep(true, 64, false, 0);
}

/*
 * 512-byte clusters and 64-bit counts: one refcount table cluster
 * describes 64 blocks of 64 clusters, 2 MiB of file. Prefilled to just
 * under that, the workload makes the table grow, so faults land in the
 * middle of the move to a new table.
 */
TEST(faults_transient_reftable_growth)
{
	fault_sweep(false, 64, false, PREFILL_NEAR_2M);
}

TEST(faults_sticky_reftable_growth)
{
	fault_sweep(true, 64, false, PREFILL_NEAR_2M);
}

TEST(faults_transient_lazy)
{
	fault_sweep(false, 16, true, 0);
}

/* --- locks --- */

TEST(locks_exclude_second_writer)
{
	const char *path = tpath("lock.qcow2");
	struct qcow_open_opts rw = { .read_write = true };
	struct qcow_open_opts ro = { 0 };
	struct qcow_open_opts share = { .force_share = true };
	struct qcow_error err = { 0 };
	struct qcow_image *a, *b = NULL;
	uint8_t buf[512] = { 9 };

	create_image(path, 1 << 20, 65536, 3);
	a = open_rw(path);
	ASSERT_ERR(qcow_image_open(&b, path, &rw, &err), -EAGAIN);
	ASSERT_NULL(b);
	ASSERT_EQ_INT(err.code, -EAGAIN);
	if (!strstr(err.msg, "lock"))
		TEST_FAIL("message \"%s\" does not mention the lock", err.msg);
	/* A reader that wants a consistent view is refused as well. */
	ASSERT_ERR(qcow_image_open(&b, path, &ro, &err), -EAGAIN);
	/* force_share takes no locks (and promises no consistent view:
	 * its tables were read at open). */
	write_ok(a, buf, sizeof(buf), 0);
	ASSERT_OK(qcow_image_flush(a));
	ASSERT_OK(qcow_image_open(&b, path, &share, &err));
	expect_bytes(b, buf, sizeof(buf), 0);
	close_ok(b);
	/* The failed opens must not have dropped a's locks. */
	ASSERT_ERR(qcow_image_open(&b, path, &rw, &err), -EAGAIN);
	close_ok(a);
	/* Released on close. */
	ASSERT_OK(qcow_image_open(&b, path, &rw, &err));
	close_ok(b);
}

TEST(locks_readers_share)
{
	const char *path = tpath("lock2.qcow2");
	struct qcow_open_opts rw = { .read_write = true };
	struct qcow_error err = { 0 };
	struct qcow_image *r1, *r2, *w = NULL;

	create_image(path, 1 << 20, 65536, 3);
	r1 = open_ro(path);
	r2 = open_ro(path);
	ASSERT_ERR(qcow_image_open(&w, path, &rw, &err), -EAGAIN);
	ASSERT_TRUE(strstr(err.msg, "lock") != NULL);
	close_ok(r1);
	ASSERT_ERR(qcow_image_open(&w, path, &rw, &err), -EAGAIN);
	close_ok(r2);
	ASSERT_OK(qcow_image_open(&w, path, &rw, &err));
	close_ok(w);
}

static const struct test_case tests[] = {
	TEST_CASE(create_rejects_bad_options),
	TEST_CASE(create_rounds_size_and_defaults),
	TEST_CASE(round_trip_512),
	TEST_CASE(round_trip_4k),
	TEST_CASE(round_trip_64k),
	TEST_CASE(round_trip_64k_v2),
	TEST_CASE(round_trip_2m),
	TEST_CASE(round_trip_refcount_widths),
	TEST_CASE(zero_writes_allocate_nothing),
	TEST_CASE(compressed_round_trip),
	TEST_CASE(write_zeroes_v3),
	TEST_CASE(write_zeroes_v3_unmap),
	TEST_CASE(write_zeroes_v2),
	TEST_CASE(write_after_zeroes_keeps_data),
	TEST_CASE(discard_v3),
	TEST_CASE(discard_v2),
	TEST_CASE(resize_grow_zeroes_new_area),
	TEST_CASE(resize_grow_from_unaligned_end),
	TEST_CASE(resize_grow_l1_table),
	TEST_CASE(resize_shrink),
	TEST_CASE_TIMEOUT(resize_grow_l1_beyond_refcount_block, 20),
	TEST_CASE(backing_v3),
	TEST_CASE(backing_v2),
	TEST_CASE(pwritev_with_iov_max_vectors),
	TEST_CASE(lazy_refcounts_crash_rebuilds),
	TEST_CASE(resize_grow_faults_never_expose_old_bytes),
	TEST_CASE(compact_shrinks_and_keeps_data),
	TEST_CASE(read_only_refuses_writes),
	TEST_CASE(out_of_range_requests),
	TEST_CASE(check_fresh_images),
	TEST_CASE(check_finds_corruption_and_repairs),
	TEST_CASE(check_finds_leak_and_repairs),
	TEST_CASE(memory_backend),
	TEST_CASE(reused_cluster_without_punch_reads_zero),
	TEST_CASE(faults_transient),
	TEST_CASE(faults_sticky_wide_refcounts),
	TEST_CASE(faults_transient_reftable_growth),
	TEST_CASE(faults_sticky_reftable_growth),
	TEST_CASE(faults_transient_lazy),
	TEST_CASE(locks_exclude_second_writer),
	TEST_CASE(locks_readers_share),
};

TEST_MAIN(tests);
