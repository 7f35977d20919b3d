/* SPDX-License-Identifier: MIT */
/*
 * libqcow internals: the on-disk constants of qcow2 (docs/interop/qcow2.txt
 * in qemu), the image object and the functions the library's files share.
 *
 * Theory of operation, in one paragraph: guest offsets map through the L1
 * table (kept whole in memory) to L2 tables (cached in slices) to host
 * clusters, whose use is counted in refcount blocks (cached whole) found
 * through the refcount table (kept whole in memory). Guest data goes to the
 * file at once; metadata changes sit in write-back caches and reach the file
 * in a fixed order when the image is flushed: refcount increases, then a
 * barrier, then L2 tables, a barrier, the L1 table, a barrier, and only then
 * the refcount decreases of clusters whose last pointer went away (see
 * meta_flush in image.c). A crash at any point therefore leaves at worst
 * leaked clusters, never a pointer to a cluster whose count is zero.
 */
#ifndef QCOW_INTERNAL_H
#define QCOW_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "qcow/qcow.h"

#define QCOW_MAGIC 0x514649fbu

#define QCOW_INCOMPAT_DIRTY	(1ull << 0)
#define QCOW_INCOMPAT_CORRUPT	(1ull << 1)
#define QCOW_INCOMPAT_DATA_FILE	(1ull << 2)
#define QCOW_INCOMPAT_COMPRESSION (1ull << 3)
#define QCOW_INCOMPAT_EXTL2	(1ull << 4)
#define QCOW_INCOMPAT_KNOWN	0x1full
#define QCOW_COMPAT_LAZY	(1ull << 0)
#define QCOW_AUTOCLEAR_BITMAPS	(1ull << 0)
#define QCOW_AUTOCLEAR_DATA_RAW	(1ull << 1)

#define QCOW_EXT_END		0x00000000u
#define QCOW_EXT_BACKING_FMT	0xe2792acau
#define QCOW_EXT_FEATURES	0x6803f857u
#define QCOW_EXT_BITMAPS	0x23852875u
#define QCOW_EXT_CRYPTO		0x0537be77u
#define QCOW_EXT_DATA_FILE	0x44415441u

/* Header field offsets, for in-place updates. */
#define HDR_SIZE_OFF		24
#define HDR_L1_SIZE_OFF		36
#define HDR_REFTABLE_OFF	48
#define HDR_INCOMPAT_OFF	72
#define HDR_AUTOCLEAR_OFF	88

#define L1E_OFFSET_MASK		0x00fffffffffffe00ull
#define L2E_OFFSET_MASK		0x00fffffffffffe00ull
#define REFT_OFFSET_MASK	0xfffffffffffffe00ull
#define OFLAG_COPIED		(1ull << 63)
#define OFLAG_COMPRESSED	(1ull << 62)
#define OFLAG_ZERO		1ull

#define QCOW_MAX_L1_BYTES	(32u << 20)
#define QCOW_MAX_REFTABLE_BYTES	(8u << 20)
#define QCOW_MAX_SNAPSHOTS	65536u
#define QCOW_MAX_CHAIN		64
#define QCOW_MAX_HEADER_EXT	4096u
#define QCOW_MAX_SIZE		(1ull << 62)	/* largest virtual size accepted */

/* A file: the caller's backend or our POSIX one. */
struct qfile {
	const struct qcow_io_ops *ops;
	void *opaque;
	int fd;		/* POSIX backend: buffered descriptor, else -1 */
	int dfd;	/* POSIX backend with O_DIRECT: direct descriptor */
	int lock_fd;	/* descriptor that holds qemu's byte-range locks */
	bool *failed;	/* set when a metadata write or a flush fails */
};

/* A write-back cache of fixed-size metadata buffers keyed by file offset. */
struct mcache_ent {
	uint64_t off;
	uint64_t lru;
	uint8_t *buf;
	int next;	/* hash chain, -1 ends */
	bool used, dirty;
};

struct mcache {
	size_t buf_size;
	unsigned cap;	/* most entries held */
	unsigned n;	/* entries created so far (<= cap) */
	unsigned nbuckets;
	int *buckets;
	struct mcache_ent *ents;
	uint64_t tick;
	uint64_t hits, misses;
};

/* A cluster whose count drops once the pointers removed from it are on disk. */
struct pending_free {
	uint64_t cluster;	/* host cluster index */
	uint32_t count;		/* number of clusters from there */
	bool punch;
};

struct qcow_snapshot {
	uint64_t l1_offset;
	uint32_t l1_size;
	struct qcow_snapshot_info info;
};

/* An unknown header extension, kept so that it survives. */
struct hdr_ext {
	uint32_t type, len;
};

struct backing {
	struct qcow_image *qcow;	/* or */
	struct qfile raw;
	bool is_raw;
	uint64_t size;
};

/* In-memory form of a validated header. */
struct qcow_header {
	uint32_t version;
	uint64_t backing_file_offset;
	uint32_t backing_file_size;
	uint32_t cluster_bits;
	uint64_t size;
	uint32_t crypt_method;
	uint32_t l1_size;
	uint64_t l1_table_offset;
	uint64_t refcount_table_offset;
	uint32_t refcount_table_clusters;
	uint32_t nb_snapshots;
	uint64_t snapshots_offset;
	uint64_t incompatible_features;
	uint64_t compatible_features;
	uint64_t autoclear_features;
	uint32_t refcount_order;
	uint32_t header_length;
	uint8_t compression_type;
};

struct qcow_image {
	pthread_mutex_t lock;
	pthread_cond_t io_done;
	unsigned inflight;		/* data I/O running outside the lock */
	uint64_t *busy;			/* guest clusters with such I/O */
	unsigned nbusy, busy_cap;

	struct qfile file;
	bool caller_io;			/* file.ops belong to the caller */
	bool failed;			/* a metadata write failed: no more writes */
	bool meta_prealloc, meta_prealloc_checked;	/* qemu's map heuristic */
	char *path;
	char *dir;			/* for relative backing and data file names */
	struct qcow_log log;
	char errmsg[512];

	struct qcow_header h;
	uint32_t cluster_size;
	uint64_t cluster_mask;		/* cluster_size - 1 */
	unsigned l2_bits;		/* log2 of L2 entries per table */
	uint32_t l2_entries;
	unsigned l2_entry_size;		/* 8, or 16 with extended L2 */
	uint32_t slice_size;		/* bytes per cached L2 slice */
	uint32_t slice_entries;
	unsigned refcount_bits;
	uint64_t refcount_max;
	uint32_t rb_entries;		/* refcounts per refcount block */
	uint32_t subcluster_size;	/* extended L2 */

	bool rw;
	bool lazy;			/* lazy refcounts in force */
	bool was_dirty;
	bool corrupt;
	bool direct;
	bool extl2;

	uint64_t *l1;			/* host order */
	uint32_t l1_dirty_lo, l1_dirty_hi;	/* dirty range [lo, hi) */

	uint64_t *reftable;		/* host order */
	uint64_t reftable_entries;

	struct mcache l2c;
	struct mcache rbc;

	uint64_t free_hint;		/* first cluster worth scanning for free */
	uint64_t file_end;		/* bytes: what the file reaches as we know */
	bool rb_dirty;			/* some refcount block is dirty */
	bool l2_dirty;

	struct pending_free *frees;
	size_t nfrees, frees_cap;

	/* Compressed writes pack into the tail of this host cluster. */
	uint64_t comp_next;		/* next free byte, 0: none */

	/* Last decompressed cluster. */
	uint8_t *zbuf;
	uint64_t zbuf_entry;		/* L2 entry it came from, 0: empty */
	uint8_t *zin;			/* compressed input buffer */

	struct backing *backing;
	char *backing_name;
	char *backing_fmt;

	struct qfile data;		/* external data file */
	bool has_data_file;
	char *data_file_name;

	struct qcow_snapshot *snaps;
	uint64_t snap_table_size;	/* bytes */

	/* Header extension bookkeeping. */
	uint32_t nb_bitmaps;
	uint64_t bitmap_dir_offset, bitmap_dir_size;

	/* Metadata clusters that data must never overwrite. */
	uint64_t *meta_set;
	size_t meta_cap, meta_n;

	/* Scratch buffers (cluster sized, aligned) used under the lock. */
	uint8_t *cow_head, *cow_tail, *zero_cluster;
};

/* --- file.c --- */
int qc_file_open_posix(struct qfile *f, const char *path, bool rw, bool direct);
void qc_file_close(struct qfile *f);
bool qc_file_is_posix(const struct qfile *f);
int qc_file_pread(struct qfile *f, void *buf, size_t len, uint64_t off);	/* exact, -EIO when short */
int qc_file_pread_zero(struct qfile *f, void *buf, size_t len, uint64_t off);	/* zeros past EOF */
int qc_file_preadv_zero(struct qfile *f, const struct iovec *iov, int n, uint64_t off);
int qc_file_pwrite(struct qfile *f, const void *buf, size_t len, uint64_t off);
int qc_file_pwritev(struct qfile *f, const struct iovec *iov, int n, uint64_t off);
/* Guest data: a failure here is the guest's, not the image's. */
int qc_file_pwritev_data(struct qfile *f, const struct iovec *iov, int n, uint64_t off);
int qc_file_flush(struct qfile *f);
int qc_file_punch(struct qfile *f, uint64_t off, uint64_t len);
int qc_file_truncate(struct qfile *f, uint64_t len);
int64_t qc_file_size(struct qfile *f);
int64_t qc_file_allocated(struct qfile *f);
int qc_file_lock(struct qfile *f, bool write, char *why, size_t whylen);

/* --- image.c --- */
int qc_err(struct qcow_image *img, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void qc_log(struct qcow_image *img, enum qcow_log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int qc_meta_flush(struct qcow_image *img);
int qc_hdr_write_u64(struct qcow_image *img, unsigned off, uint64_t v);
int qc_mark_corrupt(struct qcow_image *img, const char *what, uint64_t off);
void qc_io_begin(struct qcow_image *img);
void qc_io_end(struct qcow_image *img);
void qc_wait_io_idle(struct qcow_image *img);

/* --- header.c --- */
int qc_header_parse(const uint8_t *buf, size_t len, uint64_t file_size,
		 struct qcow_header *h, char *why, size_t whylen);
int qc_header_build(uint8_t *buf, size_t bufsize, const struct qcow_header *h,
		 const char *backing, const char *backing_fmt, size_t *used);

/* --- cache.c --- */
int qc_mcache_init(struct mcache *c, size_t buf_size, unsigned cap);
void qc_mcache_release(struct mcache *c);
/* Find the buffer for off; NULL if absent. */
struct mcache_ent *qc_mcache_find(struct mcache *c, uint64_t off);
/* A slot for off (not yet loaded); may evict a clean entry. NULL if all
 * entries are dirty (caller must write back first) or out of memory. */
struct mcache_ent *qc_mcache_slot(struct mcache *c, uint64_t off);
void qc_mcache_drop(struct mcache *c, struct mcache_ent *e);
void qc_mcache_drop_range(struct mcache *c, uint64_t off, uint64_t len);

/* --- refcount.c --- */
int qc_cache_write_dirty(struct qcow_image *img, struct mcache *c, const char *what);
int qc_rc_get(struct qcow_image *img, uint64_t cluster, uint64_t *out);
int qc_rc_set(struct qcow_image *img, uint64_t cluster, uint64_t v);
int qc_rc_add(struct qcow_image *img, uint64_t cluster, int64_t delta);
int qc_alloc_clusters(struct qcow_image *img, uint64_t n, uint64_t *host_off);
int qc_free_later(struct qcow_image *img, uint64_t host_off, uint64_t n, bool punch);
int qc_apply_frees(struct qcow_image *img);
int qc_rb_write_dirty(struct qcow_image *img);
int qc_rc_rebuild(struct qcow_image *img, const uint32_t *refs, uint64_t nclusters);
uint64_t qc_rb_get_entry(const struct qcow_image *img, const uint8_t *rb, uint32_t i);
void qc_rb_set_entry(const struct qcow_image *img, uint8_t *rb, uint32_t i, uint64_t v);
int qc_rb_load(struct qcow_image *img, uint64_t rb_off, struct mcache_ent **out);
void qc_meta_set_add(struct qcow_image *img, uint64_t cluster);
void qc_meta_set_del(struct qcow_image *img, uint64_t cluster);
bool qc_meta_set_has(const struct qcow_image *img, uint64_t cluster);
int qc_check_overlap(struct qcow_image *img, uint64_t host_off, uint64_t len);

/* --- cluster.c --- */
int qc_l2_load(struct qcow_image *img, uint64_t slice_off, struct mcache_ent **out);
int qc_l2_write_dirty(struct qcow_image *img);
int qc_l1_write_dirty(struct qcow_image *img);
uint64_t qc_l2_get(const struct qcow_image *img, const uint8_t *slice, uint32_t i, uint64_t *bitmap);
void qc_l2_set(const struct qcow_image *img, uint8_t *slice, uint32_t i, uint64_t e, uint64_t bitmap);
int qc_read_guest(struct qcow_image *img, const struct iovec *iov, int n, uint64_t off, size_t len,
	       bool unlock_io);
int qc_write_guest(struct qcow_image *img, const struct iovec *iov, int n, uint64_t off, size_t len);
int qc_zero_or_discard(struct qcow_image *img, uint64_t off, uint64_t len, bool discard, bool unmap);
int qc_compressed_clusters(const struct qcow_image *img, uint64_t entry, uint64_t *first, uint64_t *count,
			uint64_t *coff, uint64_t *csize);
int qc_backing_read(struct qcow_image *img, void *buf, size_t len, uint64_t off);
int qc_guest_entry(struct qcow_image *img, uint64_t gc, uint64_t *e, uint64_t *bitmap);
int qc_guest_set_entry(struct qcow_image *img, uint64_t gc, uint64_t e);
bool qc_buf_is_zero(const void *buf, size_t len);
int qc_read_without_io(struct qcow_image *img, void *buf, size_t len, uint64_t off);

/* --- compress.c --- */
int qcow_decompress(enum qcow_compression t, const uint8_t *in, size_t inlen, uint8_t *out, size_t outlen);
ssize_t qcow_compress(enum qcow_compression t, const uint8_t *in, size_t inlen, uint8_t *out, size_t outlen);

/* --- bitmap.c --- */
typedef void (*qc_range_fn)(void *opaque, uint64_t off, uint64_t len);
int qc_bitmap_clusters(struct qcow_image *img, qc_range_fn fn, void *opaque);
int qc_bitmaps_drop(struct qcow_image *img, const uint8_t *c0);

/* --- check.c --- */
int qc_compute_refs(struct qcow_image *img, uint32_t **refs_out, uint64_t *n_out,
		 bool count_refcount_structs, struct qcow_check_result *res, bool report);

static inline uint64_t div_round_up(uint64_t a, uint64_t b)
{
	return a / b + (a % b != 0);
}

static inline uint64_t align_up(uint64_t a, uint64_t b)
{
	return div_round_up(a, b) * b;
}

#endif
