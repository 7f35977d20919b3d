/* SPDX-License-Identifier: MIT */
/*
 * The allocation map, in qemu-img map's terms: for each run of the guest
 * disk, at which depth of the backing chain its content is decided, whether
 * it is allocated there (present), reads as zeros, is backed by data, and
 * where in which file that data lies. Adjacent runs that qemu-img map
 * would merge are merged here too.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/*
 * qemu decides that an image has "metadata preallocation" when clearly more
 * clusters are counted in use than the file has allocated on disk, and then
 * reports the holes inside data clusters as zeros. Map the same way, so
 * that our map and qemu-img's agree on any image.
 */
static bool detect_meta_prealloc(struct qcow_image *img)
{
	int64_t len = qc_file_size(&img->file), alloc = qc_file_allocated(&img->file);
	uint64_t count = 0, cs = img->cluster_size;

	if (len < 0 || alloc < 0)
		return false;
	uint64_t real = (uint64_t)alloc / cs;
	uint64_t threshold = real * 10 / 9 > real + 2 ? real * 10 / 9 : real + 2;
	uint64_t end = div_round_up((uint64_t)len, cs);

	for (uint64_t c = 0; c < end && count < threshold; c++) {
		uint64_t v;

		if (qc_rc_get(img, c, &v) < 0)
			return false;
		count += v != 0;
	}
	return count >= threshold;
}

/* With metadata preallocation, look at the file under a data run. */
static void recurse_file(struct qcow_image *img, struct qcow_map_run *run)
{
	struct qfile *f = img->has_data_file ? &img->data : &img->file;
	int64_t len = qc_file_size(f);

	if (f->fd < 0 || len < 0)
		return;
	if (run->offset >= (uint64_t)len) {
		run->zero = true;
		return;
	}
	off_t d = lseek(f->fd, (off_t)run->offset, SEEK_DATA);

	if (d < 0 || (uint64_t)d > run->offset) {
		uint64_t hole_end = d < 0 ? (uint64_t)len : (uint64_t)d;

		run->zero = true;
		if (hole_end - run->offset < run->length)
			run->length = hole_end - run->offset;
		return;
	}
	off_t h = lseek(f->fd, (off_t)run->offset, SEEK_HOLE);

	if (h > 0 && (uint64_t)h - run->offset < run->length)
		run->length = (uint64_t)h - run->offset;
}

/* Describe the longest prefix of [off, off+len) with one status. Lock held. */
static int status(struct qcow_image *img, uint64_t off, uint64_t len, int depth,
		  struct qcow_map_run *run)
{
	uint64_t cs = img->cluster_size;
	uint64_t gc = off >> img->h.cluster_bits, in = off & img->cluster_mask;
	uint64_t e, bm;
	int r;

	memset(run, 0, sizeof(*run));
	run->start = off;
	run->depth = depth;
	run->length = cs - in < len ? cs - in : len;

	uint64_t l1i = gc >> img->l2_bits;
	bool no_table = !(img->l1[l1i] & L1E_OFFSET_MASK);

	if (no_table) {
		/* A whole missing L2 table: one unallocated stretch. */
		uint64_t end = ((l1i + 1) << img->l2_bits) << img->h.cluster_bits;

		run->length = end - off < len ? end - off : len;
		e = bm = 0;
	} else {
		r = qc_guest_entry(img, gc, &e, &bm);
		if (r < 0)
			return r;
	}
	bool zero_flag = img->h.version >= 3 && !img->extl2 && (e & OFLAG_ZERO);
	uint64_t host = e & L2E_OFFSET_MASK;
	bool normal = host || (img->has_data_file && (e & OFLAG_COPIED));
	int kind;	/* 0 unallocated, 1 zero, 2 data */

	if (e & OFLAG_COMPRESSED) {
		run->present = run->data = run->compressed = true;
		return 0;
	}
	if (img->extl2) {
		uint32_t sc = (uint32_t)(in / img->subcluster_size);
		uint64_t sce = (uint64_t)(sc + 1) * img->subcluster_size - in;

		if (!no_table && run->length > sce)
			run->length = sce;
		kind = (bm & (1ull << sc)) ? 2 : (bm & (1ull << (32 + sc))) ? 1 : 0;
	} else {
		kind = zero_flag ? 1 : normal ? 2 : 0;
	}
	/* A host cluster makes the offset known, whatever the subcluster says. */
	bool has_host = normal && (!img->extl2 || host);

	if (kind == 2 || (kind == 1 && has_host)) {
		run->present = true;
		run->data = kind == 2;
		run->zero = kind == 1;
		run->has_offset = true;
		run->offset = host + in;
		if (run->data) {
			if (!img->meta_prealloc_checked) {
				img->meta_prealloc = detect_meta_prealloc(img);
				img->meta_prealloc_checked = true;
			}
			if (img->meta_prealloc)
				recurse_file(img, run);
		}
		return 0;
	}
	if (kind == 1) {
		run->present = run->zero = true;
		return 0;
	}
	/* Unallocated here: the backing file decides, or it reads zeros. */
	struct backing *b = img->backing;

	if (!b || off >= b->size) {
		run->zero = true;
		if (img->extl2 && has_host) {
			run->has_offset = true;
			run->offset = host + in;
		}
		return 0;
	}
	if (run->length > b->size - off)
		run->length = b->size - off;
	if (!b->is_raw) {
		pthread_mutex_lock(&b->qcow->lock);
		r = status(b->qcow, off, run->length, depth + 1, run);
		pthread_mutex_unlock(&b->qcow->lock);
		return r;
	}
	run->depth = depth + 1;
	run->present = true;
	run->has_offset = true;
	run->offset = off;
	if (b->raw.fd >= 0) {
		off_t d = lseek(b->raw.fd, (off_t)off, SEEK_DATA);

		if (d < 0 || (uint64_t)d > off) {
			/* A hole up to d (or to the end). */
			uint64_t hole_end = d < 0 ? b->size : (uint64_t)d;

			run->zero = true;
			if (hole_end - off < run->length)
				run->length = hole_end - off;
			return 0;
		}
		off_t h = lseek(b->raw.fd, (off_t)off, SEEK_HOLE);

		if (h > 0 && (uint64_t)h - off < run->length)
			run->length = (uint64_t)h - off;
	}
	run->data = true;
	return 0;
}

static bool mergeable(const struct qcow_map_run *a, const struct qcow_map_run *b)
{
	if (a->zero != b->zero || a->data != b->data || a->depth != b->depth ||
	    a->present != b->present || a->compressed != b->compressed ||
	    a->has_offset != b->has_offset)
		return false;
	return !a->has_offset || a->offset + a->length == b->offset;
}

int qcow_image_map(struct qcow_image *img, uint64_t off, uint64_t len,
		   qcow_map_fn fn, void *opaque)
{
	struct qcow_map_run cur = { 0 }, next;
	int r = 0;

	if (off > img->h.size)
		return -EINVAL;
	if (len > img->h.size - off)
		len = img->h.size - off;
	while (len) {
		pthread_mutex_lock(&img->lock);
		r = status(img, off, len, 0, &next);
		pthread_mutex_unlock(&img->lock);
		if (r < 0)
			return r;
		if (!next.length)
			return qc_err(img, -EIO, "map made no progress at %llu",
				    (unsigned long long)off);
		if (cur.length && mergeable(&cur, &next)) {
			cur.length += next.length;
		} else {
			if (cur.length) {
				r = fn(opaque, &cur);
				if (r)
					return r;
			}
			cur = next;
		}
		off += next.length;
		len -= next.length;
	}
	if (cur.length)
		r = fn(opaque, &cur);
	return r;
}
