/* SPDX-License-Identifier: MIT */
/*
 * libqcow: read and write qcow2 disk images, interchangeable with qemu-img.
 *
 * An image is an opaque `struct qcow_image`, opened from a path (and,
 * optionally, a caller-supplied I/O backend for the top file). Every
 * function returns 0 or a byte count on success and a negative errno value
 * on failure; a readable message for the last failure is kept in the image
 * (qcow_image_errmsg) or, for functions that have no image yet, in a
 * caller-supplied `struct qcow_error`. Nothing in the library prints,
 * exits or aborts on bad input: a damaged image gives an error.
 *
 * Threading: one image may be used from several threads at once; the
 * library serialises metadata updates internally and lets guest data I/O
 * to already-allocated clusters run in parallel. qcow_image_close must not
 * race with any other call on the same image.
 *
 * Ownership: pointer arguments are borrowed for the duration of the call
 * unless said otherwise. Strings returned by the library live as long as
 * the image they came from.
 */
#ifndef QCOW_QCOW_H
#define QCOW_QCOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

struct qcow_image;

/* Log levels, most severe first. */
enum qcow_log_level {
	QCOW_LOG_ERR,
	QCOW_LOG_WARN,
	QCOW_LOG_INFO,
	QCOW_LOG_DEBUG,
};

/* A log sink. fn may be NULL, in which case messages are dropped. */
struct qcow_log {
	void (*fn)(void *opaque, enum qcow_log_level level, const char *msg);
	void *opaque;
};

/* Where the library leaves a message when a call without an image fails. */
struct qcow_error {
	int code;		/* the negative errno value returned */
	char msg[512];
};

/*
 * An I/O backend for the top image file, so a caller can keep the image in
 * memory, record writes (the power-cut tests do) or route I/O elsewhere.
 * Each function returns 0 or a byte count, or a negative errno value.
 * preadv past the end of the file returns a short count (zeros are not
 * filled in). punch_hole may return -EOPNOTSUPP; the library then writes
 * nothing and carries on. Backing files and external data files are always
 * opened through the default POSIX backend.
 */
struct qcow_io_ops {
	ssize_t (*preadv)(void *opaque, const struct iovec *iov, int iovcnt,
			  uint64_t offset);
	ssize_t (*pwritev)(void *opaque, const struct iovec *iov, int iovcnt,
			   uint64_t offset);
	int (*flush)(void *opaque);
	int (*punch_hole)(void *opaque, uint64_t offset, uint64_t len);
	int (*truncate)(void *opaque, uint64_t len);
	int64_t (*size)(void *opaque);		/* file length in bytes */
	int64_t (*allocated)(void *opaque);	/* bytes on disk, or -ENOTSUP */
};

enum qcow_compression {
	QCOW_COMPRESSION_ZLIB = 0,	/* raw deflate, no zlib header */
	QCOW_COMPRESSION_ZSTD = 1,
};

enum qcow_prealloc {
	QCOW_PREALLOC_OFF,
	QCOW_PREALLOC_METADATA,	/* L2 tables and cluster pointers, sparse data */
	QCOW_PREALLOC_FALLOC,	/* metadata plus fallocate of the data */
	QCOW_PREALLOC_FULL,	/* metadata plus data written as zeros */
};

/* Options for qcow_create. Zero-initialise, then set what matters. */
struct qcow_create_opts {
	uint64_t size;			/* virtual size in bytes (0 with a backing file: its size) */
	int version;			/* 2 or 3; 0 means 3 */
	uint32_t cluster_size;		/* 512 .. 2 MiB, power of two; 0 means 64 KiB */
	unsigned refcount_bits;		/* 1, 2, 4 .. 64; 0 means 16 (v2 allows 16 only) */
	bool lazy_refcounts;		/* v3 only */
	enum qcow_compression compression;	/* zstd needs v3 */
	enum qcow_prealloc prealloc;
	const char *backing_file;	/* stored as given */
	const char *backing_fmt;	/* "qcow2" or "raw"; NULL probes the file */
	struct qcow_log log;
};

/* Options for qcow_image_open. Zero-initialise, then set what matters. */
struct qcow_open_opts {
	bool read_write;
	bool force_share;		/* read-only and take no locks (qemu-img -U) */
	bool no_backing;		/* do not open the backing chain */
	bool direct;			/* O_DIRECT on the top file (cache=none) */
	uint64_t l2_cache_bytes;	/* 0: enough to cover max(size, 256 GiB) */
	const struct qcow_io_ops *io;	/* NULL: POSIX file at path */
	void *io_opaque;
	struct qcow_log log;
};

/* What qcow_image_info reports; strings are owned by the image. */
struct qcow_info {
	uint64_t virtual_size;
	uint32_t cluster_size;
	int version;
	unsigned refcount_bits;
	bool lazy_refcounts;
	bool dirty;			/* dirty bit was set when opened */
	bool corrupt;
	bool extended_l2;
	bool read_only;
	enum qcow_compression compression;
	const char *backing_file;	/* NULL if none */
	const char *backing_fmt;	/* NULL if not recorded */
	const char *data_file;		/* external data file name, NULL if none */
	bool data_file_raw;
	uint64_t file_length;		/* length of the image file */
	int64_t actual_size;		/* bytes allocated on disk, -1 unknown */
	uint32_t nb_snapshots;
	uint32_t nb_bitmaps;
	uint64_t incompatible_features, compatible_features, autoclear_features;
};

struct qcow_snapshot_info {
	char id[128];
	char name[256];
	uint64_t vm_state_size;
	uint64_t date_sec;
	uint32_t date_nsec;
	uint64_t vm_clock_nsec;
	uint64_t icount;		/* UINT64_MAX if absent */
	uint64_t virtual_size;		/* 0 if absent */
};

/* One run of qcow_image_map, in qemu-img map's terms. */
struct qcow_map_run {
	uint64_t start, length;
	int depth;			/* 0: this image, 1: its backing file ... */
	bool present;			/* allocated somewhere in the chain */
	bool zero;			/* reads as zeros */
	bool data;			/* backed by data in a file */
	bool has_offset;
	uint64_t offset;		/* host offset in the file at depth, if has_offset */
	bool compressed;
};

typedef int (*qcow_map_fn)(void *opaque, const struct qcow_map_run *run);

/* The findings of qcow_image_check, with qemu-img check's meaning. */
struct qcow_check_result {
	uint64_t corruptions, leaks, check_errors;
	uint64_t corruptions_fixed, leaks_fixed;
	uint64_t image_end_offset;
	uint64_t total_clusters, allocated_clusters;
	uint64_t fragmented_clusters, compressed_clusters;
};

enum qcow_check_repair {
	QCOW_CHECK_NONE = 0,
	QCOW_CHECK_REPAIR_LEAKS = 1,
	QCOW_CHECK_REPAIR_ALL = 3,
};

/* write-zeroes flags */
#define QCOW_ZERO_MAY_UNMAP 1u	/* release the clusters (and punch holes) */

/*
 * Create an image file at path (which must not exist, or is truncated).
 * Returns 0 or -errno with err filled in.
 */
int qcow_create(const char *path, const struct qcow_create_opts *opts,
		struct qcow_error *err);

/*
 * Open the image at path and its backing chain. On success *out holds an
 * image to be closed with qcow_image_close. A read-write open takes qemu's
 * write locks, sets the dirty bit for lazy refcounts, rebuilds refcounts
 * of an image found dirty, and clears unknown autoclear bits.
 * Returns 0 or -errno with err filled in.
 */
int qcow_image_open(struct qcow_image **out, const char *path,
		    const struct qcow_open_opts *opts, struct qcow_error *err);

/* Flush, clear the dirty bit, release locks and free. NULL is ignored.
 * Returns 0, or the first error met while writing back metadata. */
int qcow_image_close(struct qcow_image *img);

/* The message of the last failure on img (empty if none). */
const char *qcow_image_errmsg(const struct qcow_image *img);

/* Guest reads and writes; any offset and length within the virtual size.
 * Return len or -errno. */
ssize_t qcow_image_pread(struct qcow_image *img, void *buf, size_t len,
			 uint64_t offset);
ssize_t qcow_image_pwrite(struct qcow_image *img, const void *buf, size_t len,
			  uint64_t offset);
ssize_t qcow_image_preadv(struct qcow_image *img, const struct iovec *iov,
			  int iovcnt, uint64_t offset);
ssize_t qcow_image_pwritev(struct qcow_image *img, const struct iovec *iov,
			   int iovcnt, uint64_t offset);

/* Write one whole cluster compressed (falls back to a plain write if it
 * does not shrink). offset must be cluster-aligned; len a cluster, or less
 * at the end of the image. Returns 0 or -errno. */
int qcow_image_write_compressed(struct qcow_image *img, const void *buf,
				size_t len, uint64_t offset);

/* Make all metadata and data written so far durable. Returns 0 or -errno. */
int qcow_image_flush(struct qcow_image *img);

/* Release whole clusters inside [offset, offset+len); partial clusters at
 * the edges are left alone. Discarded ranges read as zeros (or, on a
 * version 2 image with a backing file, as the backing file). */
int qcow_image_discard(struct qcow_image *img, uint64_t offset, uint64_t len);

/* Make [offset, offset+len) read as zeros, storing zero flags (v3) rather
 * than data where whole clusters are covered. */
int qcow_image_write_zeroes(struct qcow_image *img, uint64_t offset,
			    uint64_t len, unsigned flags);

/* Change the virtual size. Shrinking is refused with -EBUSY unless every
 * cluster beyond the new size is unallocated. */
int qcow_image_resize(struct qcow_image *img, uint64_t new_size);

int qcow_image_info(struct qcow_image *img, struct qcow_info *info);
uint64_t qcow_image_size(const struct qcow_image *img);
uint32_t qcow_image_cluster_size(const struct qcow_image *img);

/* Snapshot i (0 <= i < info.nb_snapshots). Returns 0 or -ENOENT. */
int qcow_image_snapshot(struct qcow_image *img, uint32_t i,
			struct qcow_snapshot_info *out);

/* Describe [offset, offset+len) as runs of equal allocation, merged as
 * qemu-img map merges them, calling fn for each; a non-zero return from fn
 * stops the walk and is returned. Returns 0 or -errno. */
int qcow_image_map(struct qcow_image *img, uint64_t offset, uint64_t len,
		   qcow_map_fn fn, void *opaque);

/* Walk all metadata, compare reference counts and report as qemu-img check
 * does; repair as asked (the image must be open read-write to repair).
 * Returns 0 when the check could run (findings are in res), or -errno. */
int qcow_image_check(struct qcow_image *img, struct qcow_check_result *res,
		     enum qcow_check_repair repair);

/* Move allocated clusters towards the start of the file and truncate it,
 * so the file is as short as the live data allows. Image open read-write,
 * without snapshots. Returns 0 or -errno. */
int qcow_image_compact(struct qcow_image *img);

/*
 * Asynchronous I/O: a queue of worker threads serving requests against one
 * image with up to `depth` requests in flight. Completions are delivered
 * by qcow_queue_reap on the caller's thread.
 */
struct qcow_queue;

enum qcow_req_op {
	QCOW_OP_READ,
	QCOW_OP_WRITE,
	QCOW_OP_FLUSH,
	QCOW_OP_DISCARD,
	QCOW_OP_WRITE_ZEROES,
};

struct qcow_req {
	enum qcow_req_op op;
	void *buf;		/* READ and WRITE */
	size_t len;
	uint64_t offset;
	ssize_t result;		/* filled in on completion: len or -errno */
	void *user;		/* for the caller */
};

/* depth is 1 to 1024. Returns 0 or -errno. */
int qcow_queue_new(struct qcow_queue **out, struct qcow_image *img,
		   unsigned depth);
void qcow_queue_free(struct qcow_queue *q);	/* waits for requests in flight */
/* Queue req (borrowed until it is reaped). -EAGAIN if depth requests are
 * already in flight. */
int qcow_queue_submit(struct qcow_queue *q, struct qcow_req *req);
/* Wait for at least min completions (at most max), store them in done.
 * Returns how many were stored. */
int qcow_queue_reap(struct qcow_queue *q, struct qcow_req **done,
		    unsigned min, unsigned max);

/* The default POSIX backend's operations, for wrapping (opaque: a
 * pointer to an int holding the file descriptor). */
extern const struct qcow_io_ops qcow_posix_io;

#ifdef __cplusplus
}
#endif

#endif
