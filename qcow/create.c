/* SPDX-License-Identifier: MIT */
/*
 * Creating images. The layout is qemu's: cluster 0 holds the header, its
 * extensions and the backing file name; then the refcount table, the
 * refcount blocks that cover the metadata, and the L1 table. Preallocation
 * then maps every guest cluster through the ordinary allocator.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/endian.h"
#include "internal.h"

static int cerr(struct qcow_error *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int cerr(struct qcow_error *err, int code, const char *fmt, ...)
{
	if (err) {
		va_list ap;

		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
		err->code = code;
	}
	return code;
}

/* Size and probed format of a backing file named relative to path. */
static int backing_probe(const char *path, const char *name, const char *fmt,
			 uint64_t *size, const char **probed, struct qcow_error *err)
{
	char *tmp = strdup(path), *full;
	const char *dir;
	struct qcow_open_opts o = { .force_share = true, .no_backing = true };
	struct qcow_image *b;
	struct qcow_error e2 = { 0 };
	uint8_t magic[4] = { 0 };
	int fd, r;

	if (!tmp)
		return cerr(err, -ENOMEM, "out of memory");
	dir = dirname(tmp);
	if (name[0] == '/') {
		full = strdup(name);
	} else {
		size_t n = strlen(dir) + strlen(name) + 2;

		full = malloc(n);
		if (full)
			snprintf(full, n, "%s/%s", dir, name);
	}
	free(tmp);
	if (!full)
		return cerr(err, -ENOMEM, "out of memory");
	fd = open(full, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = cerr(err, -errno, "Could not open backing file '%s': %s", full, strerror(errno));
		free(full);
		return r;
	}
	if (pread(fd, magic, 4, 0) < 0)
		memset(magic, 0, 4);
	bool is_qcow = load_be32(magic) == QCOW_MAGIC;

	if (fmt && strcmp(fmt, "qcow2") && strcmp(fmt, "raw")) {
		close(fd);
		free(full);
		return cerr(err, -ENOTSUP, "backing format '%s' is not supported (qcow2 or raw)", fmt);
	}
	if (fmt)
		is_qcow = strcmp(fmt, "qcow2") == 0;
	*probed = is_qcow ? "qcow2" : "raw";
	if (!is_qcow) {
		struct stat st;

		r = fstat(fd, &st);
		close(fd);
		free(full);
		if (r < 0)
			return cerr(err, -errno, "cannot stat the backing file");
		*size = (uint64_t)st.st_size;
		return 0;
	}
	close(fd);
	r = qcow_image_open(&b, full, &o, &e2);
	free(full);
	if (r < 0)
		return cerr(err, r, "backing file: %s", e2.msg);
	*size = qcow_image_size(b);
	qcow_image_close(b);
	return 0;
}

static int preallocate(const char *path, const struct qcow_create_opts *o,
		       struct qcow_error *err)
{
	struct qcow_open_opts oo = { .read_write = true, .no_backing = true };
	struct qcow_image *img;
	int r = qcow_image_open(&img, path, &oo, err);

	if (r < 0)
		return r;
	pthread_mutex_lock(&img->lock);
	uint64_t n = div_round_up(img->h.size, img->cluster_size);
	uint64_t first = 0, last = 0;

	for (uint64_t gc = 0; gc < n && r == 0; gc++) {
		uint64_t host;

		/* The table first, so that data runs stay contiguous. */
		r = qc_guest_set_entry(img, gc, 0);
		if (r == 0)
			r = qc_alloc_clusters(img, 1, &host);
		if (r == 0)
			r = qc_guest_set_entry(img, gc, host | OFLAG_COPIED |
					    (img->h.version >= 3 ? OFLAG_ZERO : 0));
		if (r == 0) {
			if (!first)
				first = host;
			last = host + img->cluster_size;
		}
	}
	if (r == 0)
		r = qc_meta_flush(img);
	/* The file must reach the last cluster pointed to, as qemu's does. */
	if (r == 0 && last && qc_file_size(&img->file) < (int64_t)last)
		r = qc_file_truncate(&img->file, last);
	if (r == 0 && o->prealloc != QCOW_PREALLOC_METADATA && last > first &&
	    img->file.fd >= 0) {
		if (fallocate(img->file.fd, 0, (off_t)first, (off_t)(last - first)) < 0)
			r = -errno;
	}
	if (r < 0)
		cerr(err, r, "preallocation failed: %s", img->errmsg[0] ? img->errmsg : strerror(-r));
	pthread_mutex_unlock(&img->lock);
	int r2 = qcow_image_close(img);

	return r < 0 ? r : r2;
}

int qcow_create(const char *path, const struct qcow_create_opts *opts,
		struct qcow_error *err)
{
	struct qcow_create_opts o = *opts;
	struct qcow_header h = { 0 };
	const char *probed = NULL;
	uint8_t *buf = NULL;
	size_t used;
	int fd, r;

	if (err) {
		err->code = 0;
		err->msg[0] = 0;
	}
	if (!o.version)
		o.version = 3;
	if (!o.cluster_size)
		o.cluster_size = 65536;
	if (!o.refcount_bits)
		o.refcount_bits = 16;
	if (o.version != 2 && o.version != 3)
		return cerr(err, -EINVAL, "Invalid compatibility level: version %d", o.version);
	if (o.cluster_size < 512 || o.cluster_size > (2u << 20) ||
	    (o.cluster_size & (o.cluster_size - 1)))
		return cerr(err, -EINVAL, "Cluster size must be a power of two between 512 and 2048k");
	if (o.refcount_bits > 64 || (o.refcount_bits & (o.refcount_bits - 1)))
		return cerr(err, -EINVAL, "Refcount width must be a power of two and may not exceed 64 bits");
	if (o.version == 2 && o.refcount_bits != 16)
		return cerr(err, -EINVAL, "Different refcount widths than 16 bits require compatibility level 1.1 or above (use compat=1.1 or greater)");
	if (o.version == 2 && o.lazy_refcounts)
		return cerr(err, -EINVAL, "Lazy refcounts only supported with compatibility level 1.1 and above (use compat=1.1 or greater)");
	if (o.version == 2 && o.compression != QCOW_COMPRESSION_ZLIB)
		return cerr(err, -EINVAL, "Compression type selection is only supported with compatibility level 1.1 and above (use compat=1.1 or greater)");
	if (o.compression != QCOW_COMPRESSION_ZLIB && o.compression != QCOW_COMPRESSION_ZSTD)
		return cerr(err, -EINVAL, "Unknown compression type");
	if (o.backing_file && o.prealloc != QCOW_PREALLOC_OFF)
		return cerr(err, -EINVAL, "Backing file and preallocation can only be used at the same time if extended_l2 is on");
	if (o.backing_file) {
		uint64_t bsize = 0;

		r = backing_probe(path, o.backing_file, o.backing_fmt, &bsize, &probed, err);
		if (r < 0)
			return r;
		if (!o.size)
			o.size = bsize;
		if (!o.backing_fmt)
			o.backing_fmt = probed;
	}
	if (o.size % 512)
		o.size = align_up(o.size, 512);
	if (o.size > QCOW_MAX_SIZE)
		return cerr(err, -EFBIG, "Image size too large");

	uint64_t cs = o.cluster_size;
	unsigned cbits = (unsigned)__builtin_ctz(o.cluster_size);
	unsigned rorder = (unsigned)__builtin_ctz(o.refcount_bits);
	uint64_t epb = cs * 8 / o.refcount_bits;
	uint64_t l2e = cs / 8;
	uint64_t l1_size = div_round_up(div_round_up(o.size, cs), l2e);
	uint64_t l1c = div_round_up(l1_size * 8, cs);
	uint64_t nb = 1, rtc = 1;

	if (l1_size * 8 > QCOW_MAX_L1_BYTES)
		return cerr(err, -EFBIG, "The image size is too large for file format 'qcow2' (try using a larger cluster size)");
	for (int i = 0; i < 64; i++) {
		uint64_t total = 1 + rtc + nb + l1c;
		uint64_t nnb = div_round_up(total, epb);
		uint64_t nrtc = div_round_up(nnb * 8, cs);

		if (nnb == nb && nrtc == rtc)
			break;
		nb = nnb;
		rtc = nrtc;
	}

	h.version = (uint32_t)o.version;
	h.cluster_bits = cbits;
	h.size = o.size;
	h.l1_size = (uint32_t)l1_size;
	h.refcount_table_offset = cs;
	h.refcount_table_clusters = (uint32_t)rtc;
	h.l1_table_offset = (1 + rtc + nb) * cs;
	h.refcount_order = rorder;
	if (o.lazy_refcounts)
		h.compatible_features |= QCOW_COMPAT_LAZY;
	if (o.compression == QCOW_COMPRESSION_ZSTD) {
		h.incompatible_features |= QCOW_INCOMPAT_COMPRESSION;
		h.compression_type = 1;
	}

	uint64_t total = 1 + rtc + nb + l1c;

	buf = calloc(total, cs);
	if (!buf)
		return cerr(err, -ENOMEM, "out of memory");
	r = qc_header_build(buf, cs, &h, o.backing_file, o.backing_fmt, &used);
	if (r < 0) {
		free(buf);
		return cerr(err, r, r == -ENOSPC ? "header does not fit in one cluster" :
				  "backing file name or format too long");
	}
	/* Refcount table and blocks; the L1 table stays zero. */
	uint8_t *rt = buf + cs, *rb = buf + (1 + rtc) * cs;

	for (uint64_t b = 0; b < nb; b++)
		store_be64(rt + 8 * b, (1 + rtc + b) * cs);
	for (uint64_t c = 0; c < total; c++) {
		struct qcow_image fake = { .refcount_bits = o.refcount_bits };

		qc_rb_set_entry(&fake, rb + (c / epb) * cs, (uint32_t)(c % epb), 1);
	}

	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		r = cerr(err, -errno, "Could not create '%s': %s", path, strerror(errno));
		free(buf);
		return r;
	}
	size_t len = total * cs, done = 0;

	while (done < len) {
		ssize_t w = pwrite(fd, buf + done, len - done, (off_t)done);

		if (w <= 0) {
			r = cerr(err, w < 0 ? -errno : -EIO, "Could not write '%s': %s", path,
				 strerror(w < 0 ? errno : EIO));
			close(fd);
			free(buf);
			return r;
		}
		done += (size_t)w;
	}
	free(buf);
	if (fsync(fd) < 0) {
		r = cerr(err, -errno, "Could not sync '%s': %s", path, strerror(errno));
		close(fd);
		return r;
	}
	close(fd);
	if (o.prealloc != QCOW_PREALLOC_OFF)
		return preallocate(path, &o, err);
	return 0;
}
