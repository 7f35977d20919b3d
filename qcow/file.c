/* SPDX-License-Identifier: MIT */
/*
 * File access for libqcow: the default POSIX backend, exact and zero-filling
 * reads on top of any backend, and qemu's byte-range locks.
 *
 * With O_DIRECT (cache=none) the backend keeps two descriptors: aligned
 * requests go to the direct one, small metadata updates (a header field, an
 * 8-byte L1 entry) to a buffered one. Linux keeps the page cache coherent
 * with direct I/O on the same file, so both see the same bytes.
 *
 * Locking follows qemu's file-posix driver: a holder of permission i takes
 * a shared OFD lock on byte 100+i, and one that does not share permission i
 * with others takes byte 200+i. A newcomer first tests for conflicting
 * holders. Permissions: 0 consistent read, 1 write, 2 write unchanged,
 * 3 resize.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define LOCK_PERM_BASE 100
#define LOCK_SHARED_BASE 200
#define PERM_READ 0
#define PERM_WRITE 1
#define PERM_WRITE_UNCHANGED 2
#define PERM_RESIZE 3
#define NPERMS 4

static const size_t DIRECT_ALIGN = 4096;

struct posix_file {
	int fd, dfd;
};

static bool iov_aligned(const struct iovec *iov, int n, uint64_t off)
{
	if (off % DIRECT_ALIGN)
		return false;
	for (int i = 0; i < n; i++)
		if ((uintptr_t)iov[i].iov_base % DIRECT_ALIGN ||
		    iov[i].iov_len % DIRECT_ALIGN)
			return false;
	return true;
}

static ssize_t posix_preadv(void *opaque, const struct iovec *iov, int n,
			    uint64_t off)
{
	ssize_t r = preadv(*(const int *)opaque, iov, n, (off_t)off);

	return r < 0 ? -errno : r;
}

static ssize_t posix_pwritev(void *opaque, const struct iovec *iov, int n,
			     uint64_t off)
{
	ssize_t r = pwritev(*(const int *)opaque, iov, n, (off_t)off);

	return r < 0 ? -errno : r;
}

/* With O_DIRECT: opaque is int[2], the buffered and the direct descriptor. */
static ssize_t direct_preadv(void *opaque, const struct iovec *iov, int n,
			     uint64_t off)
{
	const int *fds = opaque;
	int fd = iov_aligned(iov, n, off) ? fds[1] : fds[0];
	ssize_t r = preadv(fd, iov, n, (off_t)off);

	return r < 0 ? -errno : r;
}

static ssize_t direct_pwritev(void *opaque, const struct iovec *iov, int n,
			      uint64_t off)
{
	const int *fds = opaque;
	int fd = iov_aligned(iov, n, off) ? fds[1] : fds[0];
	ssize_t r = pwritev(fd, iov, n, (off_t)off);

	return r < 0 ? -errno : r;
}

static int posix_flush(void *opaque)
{
	const int *fds = opaque;

	return fdatasync(fds[0]) < 0 ? -errno : 0;
}

static int posix_punch(void *opaque, uint64_t off, uint64_t len)
{
	const int *fds = opaque;

	if (fallocate(fds[0], FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)off, (off_t)len) < 0)
		return -errno;
	return 0;
}

static int posix_truncate(void *opaque, uint64_t len)
{
	const int *fds = opaque;

	return ftruncate(fds[0], (off_t)len) < 0 ? -errno : 0;
}

static int64_t posix_size(void *opaque)
{
	const int *fds = opaque;
	struct stat st;

	if (fstat(fds[0], &st) < 0)
		return -errno;
	return st.st_size;
}

static int64_t posix_allocated(void *opaque)
{
	const int *fds = opaque;
	struct stat st;

	if (fstat(fds[0], &st) < 0)
		return -errno;
	return (int64_t)st.st_blocks * 512;
}

const struct qcow_io_ops qcow_posix_io = {
	.preadv = posix_preadv,
	.pwritev = posix_pwritev,
	.flush = posix_flush,
	.punch_hole = posix_punch,
	.truncate = posix_truncate,
	.size = posix_size,
	.allocated = posix_allocated,
};

static const struct qcow_io_ops posix_direct_io = {
	.preadv = direct_preadv,
	.pwritev = direct_pwritev,
	.flush = posix_flush,
	.punch_hole = posix_punch,
	.truncate = posix_truncate,
	.size = posix_size,
	.allocated = posix_allocated,
};

int qc_file_open_posix(struct qfile *f, const char *path, bool rw, bool direct)
{
	int flags = (rw ? O_RDWR : O_RDONLY) | O_CLOEXEC;
	int *fds;

	memset(f, 0, sizeof(*f));
	f->fd = f->dfd = f->lock_fd = -1;
	fds = malloc(2 * sizeof(int));
	if (!fds)
		return -ENOMEM;
	fds[0] = open(path, flags);
	if (fds[0] < 0) {
		int e = -errno;

		free(fds);
		return e;
	}
	fds[1] = -1;
	if (direct) {
		fds[1] = open(path, flags | O_DIRECT);
		if (fds[1] < 0) {
			int e = -errno;

			close(fds[0]);
			free(fds);
			return e;
		}
	}
	f->ops = direct ? &posix_direct_io : &qcow_posix_io;
	f->opaque = fds;
	f->fd = fds[0];
	f->dfd = fds[1];
	f->lock_fd = fds[0];
	return 0;
}

bool qc_file_is_posix(const struct qfile *f)
{
	return f->ops == &qcow_posix_io || f->ops == &posix_direct_io;
}

void qc_file_close(struct qfile *f)
{
	if (qc_file_is_posix(f) && f->opaque) {
		int *fds = f->opaque;

		close(fds[0]);
		if (fds[1] >= 0)
			close(fds[1]);
		free(fds);
	}
	memset(f, 0, sizeof(*f));
	f->fd = f->dfd = f->lock_fd = -1;
}

/* Copy the part of iov from byte skip onward into out (at most max). */
static int iov_tail(const struct iovec *iov, int n, size_t skip,
		    struct iovec *out, int max)
{
	int k = 0;

	for (int i = 0; i < n && k < max; i++) {
		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		out[k].iov_base = (uint8_t *)iov[i].iov_base + skip;
		out[k].iov_len = iov[i].iov_len - skip;
		skip = 0;
		k++;
	}
	return k;
}

#define IOV_MAX_LOCAL 1024

int qc_file_preadv_zero(struct qfile *f, const struct iovec *iov, int n,
		      uint64_t off)
{
	struct iovec rest[IOV_MAX_LOCAL];
	size_t total = 0, done = 0;

	if (n > IOV_MAX_LOCAL)
		return -EINVAL;
	for (int i = 0; i < n; i++)
		total += iov[i].iov_len;
	while (done < total) {
		int k = iov_tail(iov, n, done, rest, IOV_MAX_LOCAL);
		ssize_t r = f->ops->preadv(f->opaque, rest, k, off + done);

		if (r < 0)
			return (int)r;
		if (r == 0) {
			/* Past the end of the file: the rest reads as zeros. */
			for (int i = 0; i < k; i++)
				memset(rest[i].iov_base, 0, rest[i].iov_len);
			break;
		}
		done += (size_t)r;
	}
	return 0;
}

int qc_file_pread_zero(struct qfile *f, void *buf, size_t len, uint64_t off)
{
	struct iovec iov = { buf, len };

	return qc_file_preadv_zero(f, &iov, 1, off);
}

int qc_file_pread(struct qfile *f, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		struct iovec iov = { (uint8_t *)buf + done, len - done };
		ssize_t r = f->ops->preadv(f->opaque, &iov, 1, off + done);

		if (r < 0)
			return (int)r;
		if (r == 0)
			return -EIO;
		done += (size_t)r;
	}
	return 0;
}

int qc_file_pwritev_data(struct qfile *f, const struct iovec *iov, int n, uint64_t off)
{
	struct iovec rest[IOV_MAX_LOCAL];
	size_t total = 0, done = 0;

	if (n > IOV_MAX_LOCAL)
		return -EINVAL;
	for (int i = 0; i < n; i++)
		total += iov[i].iov_len;
	while (done < total) {
		int k = iov_tail(iov, n, done, rest, IOV_MAX_LOCAL);
		ssize_t r = f->ops->pwritev(f->opaque, rest, k, off + done);

		if (r < 0)
			return (int)r;
		if (r == 0)
			return -EIO;
		done += (size_t)r;
	}
	return 0;
}

/*
 * A metadata write that fails may or may not have reached the disk, so
 * the image can no longer know what the file holds: mark it failed.
 */
static int failed(struct qfile *f, int r)
{
	if (r < 0 && f->failed)
		*f->failed = true;
	return r;
}

int qc_file_pwritev(struct qfile *f, const struct iovec *iov, int n, uint64_t off)
{
	return failed(f, qc_file_pwritev_data(f, iov, n, off));
}

int qc_file_pwrite(struct qfile *f, const void *buf, size_t len, uint64_t off)
{
	struct iovec iov = { (void *)buf, len };

	return qc_file_pwritev(f, &iov, 1, off);
}

int qc_file_flush(struct qfile *f)
{
	return failed(f, f->ops->flush ? f->ops->flush(f->opaque) : 0);
}

int qc_file_punch(struct qfile *f, uint64_t off, uint64_t len)
{
	if (!f->ops->punch_hole)
		return -EOPNOTSUPP;
	return f->ops->punch_hole(f->opaque, off, len);
}

int qc_file_truncate(struct qfile *f, uint64_t len)
{
	if (!f->ops->truncate)
		return -EOPNOTSUPP;
	return failed(f, f->ops->truncate(f->opaque, len));
}

int64_t qc_file_size(struct qfile *f)
{
	return f->ops->size(f->opaque);
}

int64_t qc_file_allocated(struct qfile *f)
{
	if (!f->ops->allocated)
		return -ENOTSUP;
	return f->ops->allocated(f->opaque);
}

static int lock_byte(int fd, int cmd, short type, off_t byte, struct flock *out)
{
	struct flock fl = {
		.l_type = type,
		.l_whence = SEEK_SET,
		.l_start = byte,
		.l_len = 1,
	};

	if (fcntl(fd, cmd, &fl) < 0)
		return -errno;
	if (out)
		*out = fl;
	return 0;
}

static const char *perm_name(int i)
{
	static const char *const names[NPERMS] = {
		"consistent read", "write", "write unchanged", "resize"
	};

	return names[i];
}

/*
 * Take qemu's locks for a writer (perms read, write, resize; shares only
 * read and write-unchanged) or a reader (perm read; does not share write).
 */
int qc_file_lock(struct qfile *f, bool write, char *why, size_t whylen)
{
	unsigned perm = 1u << PERM_READ;
	unsigned shared = (1u << PERM_READ) | (1u << PERM_WRITE_UNCHANGED);
	int fd = f->lock_fd;

	if (fd < 0)
		return 0;	/* a caller's backend: nothing to lock */
	if (write)
		perm |= (1u << PERM_WRITE) | (1u << PERM_RESIZE);
	else
		shared |= 1u << PERM_RESIZE;

	/* Conflicts: someone not sharing what we need, or holding what we
	 * do not share. */
	for (int i = 0; i < NPERMS; i++) {
		struct flock fl = { .l_type = F_UNLCK };
		int r;

		if (perm & (1u << i)) {
			r = lock_byte(fd, F_OFD_GETLK, F_WRLCK,
				      LOCK_SHARED_BASE + i, &fl);
			if (r < 0)
				return r;
			if (fl.l_type != F_UNLCK) {
				snprintf(why, whylen,
					 "Failed to get \"%s\" lock: is another process using the image?",
					 perm_name(i));
				return -EAGAIN;
			}
		}
		if (!(shared & (1u << i))) {
			r = lock_byte(fd, F_OFD_GETLK, F_WRLCK,
				      LOCK_PERM_BASE + i, &fl);
			if (r < 0)
				return r;
			if (fl.l_type != F_UNLCK) {
				snprintf(why, whylen,
					 "Failed to get shared \"%s\" lock: is another process using the image?",
					 perm_name(i));
				return -EAGAIN;
			}
		}
	}
	for (int i = 0; i < NPERMS; i++) {
		int r = 0;

		if (perm & (1u << i))
			r = lock_byte(fd, F_OFD_SETLK, F_RDLCK, LOCK_PERM_BASE + i, NULL);
		if (!r && !(shared & (1u << i)))
			r = lock_byte(fd, F_OFD_SETLK, F_RDLCK, LOCK_SHARED_BASE + i, NULL);
		if (r < 0) {
			snprintf(why, whylen,
				 "Failed to lock byte %d: is another process using the image?",
				 LOCK_PERM_BASE + i);
			return -EAGAIN;
		}
	}
	return 0;
}
