/* SPDX-License-Identifier: MIT */
/*
 * Offline-style compaction of an open image: move the highest clusters in
 * use into the lowest free ones, then truncate the file after the last
 * cluster in use.
 *
 * Every move keeps the crash-safety rules of the rest of the library: the
 * target's count is raised and the copy made durable before the pointer
 * (L2 entry, L1 entry, refcount table entry or header field) is switched,
 * and the source is released through free_later only after the switch is
 * on disk (meta_flush). A crash at any point leaves at worst a leaked
 * cluster. Data clusters move in batches; tables move one at a time.
 * Compressed clusters and clusters of unknown purpose (leaks, bitmaps) stay
 * where they are, and so bound how far the file can shrink.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/endian.h"
#include "internal.h"

enum owner {
	O_FREE,
	O_PINNED,	/* header, compressed data, bitmaps, leaks */
	O_DATA,		/* loc: guest cluster */
	O_L2,		/* loc: L1 index */
	O_REFBLOCK,	/* loc: refcount table index */
	O_L1,
	O_REFTABLE,
};

struct owners {
	uint8_t *type;
	uint64_t *loc;
	uint64_t n;
};

static void own(struct owners *o, uint64_t c, enum owner t, uint64_t loc)
{
	if (c >= o->n)
		return;
	/* Two owners for one cluster: leave it where it is. */
	o->type[c] = o->type[c] == O_FREE ? (uint8_t)t : O_PINNED;
	o->loc[c] = loc;
}

static int build_owners(struct qcow_image *img, struct owners *o)
{
	uint64_t cs = img->cluster_size;
	int r;

	o->n = img->file_end / cs;
	o->type = calloc(o->n ? o->n : 1, 1);
	o->loc = calloc(o->n ? o->n : 1, sizeof(uint64_t));
	if (!o->type || !o->loc)
		return -ENOMEM;
	own(o, 0, O_PINNED, 0);
	for (uint64_t k = 0; k < div_round_up((uint64_t)img->h.l1_size * 8, cs); k++)
		own(o, img->h.l1_table_offset / cs + k, O_L1, 0);
	for (uint64_t k = 0; k < img->h.refcount_table_clusters; k++)
		own(o, img->h.refcount_table_offset / cs + k, O_REFTABLE, 0);
	for (uint64_t i = 0; i < img->reftable_entries; i++) {
		uint64_t b = img->reftable[i] & REFT_OFFSET_MASK;

		if (b)
			own(o, b / cs, O_REFBLOCK, i);
	}
	for (uint32_t i = 0; i < img->h.l1_size; i++) {
		uint64_t l2 = img->l1[i] & L1E_OFFSET_MASK;

		if (!l2)
			continue;
		own(o, l2 / cs, O_L2, i);
		for (uint64_t j = 0; j < img->l2_entries; j++) {
			uint64_t gc = ((uint64_t)i << img->l2_bits) + j, e, bm;

			if ((gc << img->h.cluster_bits) >= img->h.size)
				break;
			r = qc_guest_entry(img, gc, &e, &bm);
			if (r < 0)
				return r;
			if (e & OFLAG_COMPRESSED) {
				uint64_t first, count, coff, csize;

				qc_compressed_clusters(img, e, &first, &count, &coff, &csize);
				for (uint64_t k = 0; k < count; k++)
					if (first + k < o->n)
						o->type[first + k] = O_PINNED;
				continue;
			}
			if (e & L2E_OFFSET_MASK)
				own(o, (e & L2E_OFFSET_MASK) / cs, O_DATA, gc);
		}
	}
	/* Clusters counted but owned by nothing we know: keep them. */
	for (uint64_t c = 0; c < o->n; c++) {
		uint64_t v;

		if (o->type[c] != O_FREE)
			continue;
		r = qc_rc_get(img, c, &v);
		if (r < 0)
			return r;
		if (v)
			o->type[c] = O_PINNED;
	}
	return 0;
}

static int copy_cluster(struct qcow_image *img, uint64_t from, uint64_t to, uint8_t *buf)
{
	int r = qc_file_pread_zero(&img->file, buf, img->cluster_size, from);

	if (r == 0)
		r = qc_file_pwrite(&img->file, buf, img->cluster_size, to);
	return r;
}

/* Claim cluster c (free in the owner map) as a move target. */
static int claim(struct qcow_image *img, uint64_t c)
{
	return qc_rc_set(img, c, 1);
}

static int move_data_batch(struct qcow_image *img, struct owners *o,
			   const uint64_t *from, const uint64_t *to, size_t n, uint8_t *buf)
{
	uint64_t cs = img->cluster_size;
	int r = 0;

	for (size_t i = 0; i < n && r == 0; i++)
		r = claim(img, to[i]);
	for (size_t i = 0; i < n && r == 0; i++)
		r = copy_cluster(img, from[i] * cs, to[i] * cs, buf);
	for (size_t i = 0; i < n && r == 0; i++) {
		uint64_t gc = o->loc[from[i]], e, bm;

		r = qc_guest_entry(img, gc, &e, &bm);
		if (r == 0)
			r = qc_guest_set_entry(img, gc, (e & ~L2E_OFFSET_MASK) | (to[i] * cs));
		o->type[to[i]] = O_DATA;
		o->loc[to[i]] = gc;
		o->type[from[i]] = O_FREE;
	}
	if (r == 0)
		r = qc_meta_flush(img);	/* copies, then pointers, then frees */
	return r;
}

static int move_l2(struct qcow_image *img, struct owners *o, uint64_t from, uint64_t to,
		   uint8_t *buf)
{
	uint64_t cs = img->cluster_size;
	uint32_t i = (uint32_t)o->loc[from];
	int r = qc_meta_flush(img);

	if (r == 0)
		r = claim(img, to);
	if (r == 0)
		r = copy_cluster(img, from * cs, to * cs, buf);
	if (r < 0)
		return r;
	qc_mcache_drop_range(&img->l2c, from * cs, cs);
	img->l1[i] = to * cs | OFLAG_COPIED;
	if (i < img->l1_dirty_lo)
		img->l1_dirty_lo = i;
	if (i + 1 > img->l1_dirty_hi)
		img->l1_dirty_hi = i + 1;
	qc_meta_set_add(img, to);
	r = qc_free_later(img, from * cs, 1, true);
	o->type[to] = O_L2;
	o->loc[to] = i;
	o->type[from] = O_FREE;
	return r == 0 ? qc_meta_flush(img) : r;
}

static int move_refblock(struct qcow_image *img, struct owners *o, uint64_t from,
			 uint64_t to, uint8_t *buf)
{
	uint64_t cs = img->cluster_size, i = o->loc[from];
	uint8_t be[8];
	int r = qc_meta_flush(img);

	if (r == 0)
		r = claim(img, to);
	if (r == 0)
		r = qc_rb_write_dirty(img);
	if (r == 0)
		r = copy_cluster(img, from * cs, to * cs, buf);
	if (r == 0)
		r = qc_file_flush(&img->file);
	store_be64(be, to * cs);
	if (r == 0)
		r = qc_file_pwrite(&img->file, be, 8, img->h.refcount_table_offset + i * 8);
	if (r == 0)
		r = qc_file_flush(&img->file);
	if (r < 0)
		return r;
	qc_mcache_drop_range(&img->rbc, from * cs, cs);
	img->reftable[i] = to * cs;
	qc_meta_set_add(img, to);
	o->type[to] = O_REFBLOCK;
	o->loc[to] = i;
	o->type[from] = O_FREE;
	r = qc_free_later(img, from * cs, 1, true);
	return r == 0 ? qc_meta_flush(img) : r;
}

/* Move a whole contiguous table (L1 or refcount table) to run [to, to+n). */
static int move_table(struct qcow_image *img, struct owners *o, bool is_l1, uint64_t to,
		      uint64_t ncl)
{
	uint64_t cs = img->cluster_size;
	uint64_t old = is_l1 ? img->h.l1_table_offset : img->h.refcount_table_offset;
	uint64_t nent = is_l1 ? img->h.l1_size : img->reftable_entries;
	const uint64_t *tbl = is_l1 ? img->l1 : img->reftable;
	uint8_t *b = calloc(ncl, cs);
	int r = qc_meta_flush(img);

	if (!b)
		return -ENOMEM;
	for (uint64_t k = 0; k < ncl && r == 0; k++)
		r = claim(img, to + k);
	for (uint64_t i = 0; i < nent; i++)
		store_be64(b + 8 * i, tbl[i]);
	if (r == 0)
		r = qc_rb_write_dirty(img);
	if (r == 0)
		r = qc_file_pwrite(&img->file, b, ncl * cs, to * cs);
	free(b);
	if (r == 0)
		r = qc_file_flush(&img->file);
	if (r == 0)
		r = qc_hdr_write_u64(img, is_l1 ? 40 : HDR_REFTABLE_OFF, to * cs);
	if (r == 0)
		r = qc_file_flush(&img->file);
	if (r < 0)
		return r;
	if (is_l1)
		img->h.l1_table_offset = to * cs;
	else
		img->h.refcount_table_offset = to * cs;
	for (uint64_t k = 0; k < ncl; k++) {
		o->type[to + k] = is_l1 ? O_L1 : O_REFTABLE;
		o->type[old / cs + k] = O_FREE;
	}
	r = qc_free_later(img, old, ncl, true);
	return r == 0 ? qc_meta_flush(img) : r;
}

static uint64_t lowest_free_run(const struct owners *o, uint64_t n, uint64_t below)
{
	uint64_t run = 0;

	for (uint64_t c = 1; c < below; c++) {
		run = o->type[c] == O_FREE ? run + 1 : 0;
		if (run == n)
			return c + 1 - n;
	}
	return 0;
}

#define BATCH 1024

int qcow_image_compact(struct qcow_image *img)
{
	uint64_t cs = img->cluster_size;
	struct owners o = { 0 };
	uint64_t from[BATCH], to[BATCH];
	uint8_t *buf = NULL;
	int r;

	pthread_mutex_lock(&img->lock);
	if (!img->rw || img->corrupt || img->failed) {
		r = qc_err(img, -EBADF, "compaction needs an image open read-write and not corrupt");
		goto out;
	}
	if (img->h.nb_snapshots) {
		r = qc_err(img, -ENOTSUP, "compaction of images with internal snapshots is not supported");
		goto out;
	}
	r = qc_meta_flush(img);
	if (r == 0)
		r = build_owners(img, &o);
	if (r == 0 && posix_memalign((void **)&buf, 4096, cs))
		r = -ENOMEM;
	if (r < 0) {
		r = qc_err(img, r, "compaction: %s", r == -ENOMEM ? "out of memory" : img->errmsg);
		goto out;
	}

	uint64_t lo = 1, hi = o.n;

	for (;;) {
		size_t nb = 0;

		while (hi > 0 && o.type[hi - 1] == O_FREE)
			hi--;
		if (!hi)
			break;
		uint64_t h = hi - 1;
		enum owner t = o.type[h];

		if (t == O_PINNED)
			break;
		if (t == O_L1 || t == O_REFTABLE) {
			bool l1 = t == O_L1;
			uint64_t ncl = l1 ? div_round_up((uint64_t)img->h.l1_size * 8, cs) :
					    img->h.refcount_table_clusters;
			uint64_t start = (l1 ? img->h.l1_table_offset : img->h.refcount_table_offset) / cs;
			uint64_t dst = lowest_free_run(&o, ncl, start);

			if (!dst)
				break;
			r = move_table(img, &o, l1, dst, ncl);
			if (r < 0)
				break;
			continue;
		}
		while (lo < h && o.type[lo] != O_FREE)
			lo++;
		if (lo >= h)
			break;
		if (t == O_L2) {
			r = move_l2(img, &o, h, lo, buf);
		} else if (t == O_REFBLOCK) {
			r = move_refblock(img, &o, h, lo, buf);
		} else {
			/* A batch of data clusters from the top into the holes. */
			uint64_t f = lo, g = h;

			while (nb < BATCH && f < g) {
				if (o.type[g] != O_DATA)
					break;
				from[nb] = g;
				to[nb] = f;
				o.type[f] = O_PINNED;	/* reserved for this batch */
				nb++;
				do
					g--;
				while (g > f && o.type[g] == O_FREE);
				do
					f++;
				while (f < g && o.type[f] != O_FREE);
			}
			/* Sources were taken from the top down: reverse them so
			 * that data keeps its order in the file. */
			for (size_t i = 0; i < nb / 2; i++) {
				uint64_t x = from[i];

				from[i] = from[nb - 1 - i];
				from[nb - 1 - i] = x;
			}
			r = move_data_batch(img, &o, from, to, nb, buf);
		}
		if (r < 0)
			break;
	}
	if (r == 0) {
		while (hi > 0 && o.type[hi - 1] == O_FREE)
			hi--;
		r = qc_meta_flush(img);
		if (r == 0)
			r = qc_file_flush(&img->file);
		if (r == 0 && hi * cs < img->file_end) {
			r = qc_file_truncate(&img->file, hi * cs);
			if (r == 0) {
				img->file_end = hi * cs;
				if (img->free_hint > hi)
					img->free_hint = hi;
			}
		}
		if (r < 0)
			r = qc_err(img, r, "compaction: truncating the file failed");
	}
out:
	free(o.type);
	free(o.loc);
	free(buf);
	pthread_mutex_unlock(&img->lock);
	return r;
}
