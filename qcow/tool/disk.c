// SPDX-License-Identifier: MIT
/*
 * One disk image for the commands, whether qcow2 or raw.
 *
 * qemu-img lets info, map, compare, convert and bench work on raw files
 * too, and probes the format by content when none is given. Here a file
 * that starts with the qcow2 magic "QFI\xfb" is opened through libqcow
 * (with its backing chain), anything else is a raw file read with
 * pread. Allocation status comes from qcow_image_map for qcow2 and from
 * SEEK_DATA/SEEK_HOLE for raw, in qemu-img map's terms either way, so a
 * sparse terabyte is skipped in a handful of calls.
 *
 * disk_status keeps a batch of qcow_image_map runs: asking for the run at
 * each offset in turn costs one map walk per DISK_RUN_CACHE runs, not
 * one per call.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tool.h"

static const unsigned char qcow2_magic[4] = { 'Q', 'F', 'I', 0xfb };

int probe_is_qcow2(const char *path)
{
	unsigned char buf[4];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	n = pread(fd, buf, sizeof(buf), 0);
	if (n < 0) {
		n = -errno;
		close(fd);
		return (int)n;
	}
	close(fd);
	return n == 4 && !memcmp(buf, qcow2_magic, 4);
}

int check_format_name(const char *fmt, const char *path)
{
	if (!fmt || !strcmp(fmt, "raw") || !strcmp(fmt, "qcow2"))
		return 0;
	tool_err("Could not open '%s': Unknown driver '%s'", path, fmt);
	return -EINVAL;
}

static int raw_open(struct disk *d, const char *path, unsigned flags)
{
	int oflags = O_CLOEXEC | ((flags & DISK_RW) ? O_RDWR : O_RDONLY);
	struct stat st;
	off_t end;

	if (flags & DISK_DIRECT)
		oflags |= O_DIRECT;
	d->fd = open(path, oflags);
	if (d->fd < 0 && (flags & DISK_DIRECT) && errno == EINVAL) {
		/* A file system without O_DIRECT: fall back to the cache. */
		d->fd = open(path, oflags & ~O_DIRECT);
	}
	if (d->fd < 0)
		return -errno;
	if (fstat(d->fd, &st) < 0)
		return -errno;
	if (S_ISBLK(st.st_mode)) {
		uint64_t bytes;

		if (ioctl(d->fd, BLKGETSIZE64, &bytes) < 0)
			return -errno;
		d->size = bytes;
		return 0;
	}
	end = lseek(d->fd, 0, SEEK_END);
	if (end < 0)
		return -errno;
	d->size = (uint64_t)end;
	return 0;
}

static int open_any(struct disk *d, struct tool *t, const char *path,
		    const char *fmt, unsigned flags,
		    const struct qcow_io_ops *io, void *io_opaque)
{
	int r, is_qcow;

	memset(d, 0, sizeof(*d));
	d->path = path;
	d->fd = -1;
	if (check_format_name(fmt, path) < 0)
		return -EINVAL;
	is_qcow = probe_is_qcow2(path);
	if (is_qcow < 0) {
		tool_err("Could not open '%s': Could not open '%s': %s", path,
			 path, errstr(is_qcow));
		return is_qcow;
	}
	if (fmt && !strcmp(fmt, "qcow2") && !is_qcow) {
		tool_err("Could not open '%s': Image is not in qcow2 format",
			 path);
		return -EINVAL;
	}
	if (fmt && !strcmp(fmt, "raw"))
		is_qcow = 0;

	if (!is_qcow) {
		d->format = DISK_RAW;
		r = raw_open(d, path, flags);
		if (r < 0) {
			tool_err("Could not open '%s': Could not open '%s': %s",
				 path, path, errstr(r));
			if (d->fd >= 0)
				close(d->fd);
			d->fd = -1;
		}
		return r;
	}

	struct qcow_open_opts o = {
		.read_write = !!(flags & DISK_RW),
		.force_share = !!(flags & DISK_SHARE),
		.no_backing = !!(flags & DISK_NO_BACKING),
		.direct = !!(flags & DISK_DIRECT),
		.io = io,
		.io_opaque = io_opaque,
		.log = t->log,
	};
	struct qcow_error err = { 0 };

	d->format = DISK_QCOW2;
	r = qcow_image_open(&d->img, path, &o, &err);
	if (r < 0) {
		/* The library's message may name the file already
		 * ("'img.qcow2': ..."): say it once. */
		const char *msg = err.msg[0] ? err.msg : errstr(r);
		size_t plen = strlen(path);

		if (msg[0] == '\'' && !strncmp(msg + 1, path, plen) &&
		    !strncmp(msg + 1 + plen, "': ", 3))
			msg += plen + 4;
		tool_err("Could not open '%s': %s", path, msg);
		d->img = NULL;
		return r;
	}
	d->size = qcow_image_size(d->img);
	return 0;
}

int disk_open(struct disk *d, struct tool *t, const char *path, const char *fmt,
	      unsigned flags)
{
	return open_any(d, t, path, fmt, flags, NULL, NULL);
}

int disk_open_qcow2_io(struct disk *d, struct tool *t, const char *path,
		       unsigned flags, const struct qcow_io_ops *io,
		       void *io_opaque)
{
	return open_any(d, t, path, "qcow2", flags, io, io_opaque);
}

int disk_close(struct disk *d)
{
	int r = 0;

	if (d->img) {
		r = qcow_image_close(d->img);
		d->img = NULL;
	}
	if (d->fd >= 0) {
		if (close(d->fd) < 0 && r == 0)
			r = -errno;
		d->fd = -1;
	}
	return r;
}

const char *disk_format_name(const struct disk *d)
{
	return d->format == DISK_QCOW2 ? "qcow2" : "raw";
}

const char *disk_errmsg(const struct disk *d, int r)
{
	if (d->img) {
		const char *m = qcow_image_errmsg(d->img);

		if (m && m[0])
			return m;
	}
	return errstr(r);
}

int disk_pread(struct disk *d, void *buf, size_t len, uint64_t off)
{
	if (d->img) {
		ssize_t n = qcow_image_pread(d->img, buf, len, off);

		if (n < 0)
			return (int)n;
		return (size_t)n == len ? 0 : -EIO;
	}
	while (len) {
		ssize_t n = pread(d->fd, buf, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0) {
			memset(buf, 0, len);
			return 0;
		}
		buf = (char *)buf + n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int disk_pwrite(struct disk *d, const void *buf, size_t len, uint64_t off)
{
	if (d->img) {
		ssize_t n = qcow_image_pwrite(d->img, buf, len, off);

		if (n < 0)
			return (int)n;
		return (size_t)n == len ? 0 : -EIO;
	}
	while (len) {
		ssize_t n = pwrite(d->fd, buf, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf = (const char *)buf + n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* A raw file: data up to the next hole, or a hole up to the next data. */
static int raw_status(struct disk *d, uint64_t off, struct qcow_map_run *run)
{
	off_t data, hole;

	memset(run, 0, sizeof(*run));
	run->start = off;
	run->present = true;
	run->has_offset = true;
	run->offset = off;
	data = lseek(d->fd, (off_t)off, SEEK_DATA);
	if (data < 0 && errno != ENXIO) {
		/* No SEEK_DATA here (a pipe, an old file system): all data. */
		run->data = true;
		run->length = d->size - off;
		return 0;
	}
	if (data < 0 || (uint64_t)data > off) {
		uint64_t end = data < 0 ? d->size : (uint64_t)data;

		run->zero = true;
		run->length = (end < d->size ? end : d->size) - off;
		return 0;
	}
	hole = lseek(d->fd, (off_t)off, SEEK_HOLE);
	run->data = true;
	if (hole < 0 || (uint64_t)hole > d->size)
		hole = (off_t)d->size;
	run->length = (uint64_t)hole - off;
	if (!run->length)
		run->length = d->size - off;
	return 0;
}

static int collect_run(void *opaque, const struct qcow_map_run *run)
{
	struct disk *d = opaque;

	d->runs[d->nruns++] = *run;
	return d->nruns == DISK_RUN_CACHE ? 1 : 0;
}

int disk_status(struct disk *d, uint64_t off, struct qcow_map_run *run)
{
	if (off >= d->size)
		return -EINVAL;
	if (!d->img)
		return raw_status(d, off, run);

	for (int pass = 0; pass < 2; pass++) {
		/* The cached runs are sorted: move forward to the one
		 * holding off, if any. */
		while (d->cur < d->nruns &&
		       d->runs[d->cur].start + d->runs[d->cur].length <= off)
			d->cur++;
		if (d->cur < d->nruns && d->runs[d->cur].start <= off) {
			const struct qcow_map_run *c = &d->runs[d->cur];
			uint64_t skip = off - c->start;

			*run = *c;
			run->start = off;
			run->length = c->length - skip;
			if (run->has_offset)
				run->offset += skip;
			return 0;
		}
		if (pass)
			break;
		d->nruns = d->cur = 0;
		int r = qcow_image_map(d->img, off, d->size - off, collect_run,
				       d);

		if (r < 0)
			return r;
	}
	return -EIO;
}
