/* SPDX-License-Identifier: MIT */
/*
 * Reference counts and cluster allocation.
 *
 * Every host cluster in use has a count in a refcount block; the blocks are
 * found through the refcount table. A new cluster is taken from the lowest
 * run of clusters whose count is zero (free_hint remembers where the search
 * may start), so holes left by discards are filled before the file grows.
 *
 * Ordering rules (crash consistency):
 *  - a count is raised in the cache before anything points to the cluster;
 *    meta_flush writes raised counts and syncs before it writes pointers;
 *  - a count is lowered only after the pointer's removal is on disk: callers
 *    queue the cluster with free_later, and apply_frees runs at the end of
 *    meta_flush;
 *  - a new refcount block is written and synced before the table entry that
 *    points to it; a new refcount table before the header that points to it.
 *
 * A missing refcount block is placed in the first cluster of the range it
 * describes (which is free, having no block), so it counts itself. When the
 * table itself is full, a larger one is laid out after the end of the file
 * together with the blocks it needs (grow_reftable).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/endian.h"
#include "internal.h"

/* --- the set of metadata clusters that data must never overwrite --- */

#define META_EMPTY 0
#define META_GONE UINT64_MAX

static int meta_set_grow(struct qcow_image *img)
{
	size_t ncap = img->meta_cap ? img->meta_cap * 2 : 1024;
	uint64_t *n = calloc(ncap, sizeof(uint64_t));

	if (!n)
		return -ENOMEM;
	for (size_t i = 0; i < img->meta_cap; i++) {
		uint64_t k = img->meta_set[i];

		if (k == META_EMPTY || k == META_GONE)
			continue;
		size_t j = (size_t)(k * 0x9e3779b97f4a7c15ull) & (ncap - 1);

		while (n[j] != META_EMPTY)
			j = (j + 1) & (ncap - 1);
		n[j] = k;
	}
	free(img->meta_set);
	img->meta_set = n;
	img->meta_cap = ncap;
	return 0;
}

static size_t meta_slot(const struct qcow_image *img, uint64_t key, bool *found)
{
	size_t mask = img->meta_cap - 1;
	size_t j = (size_t)(key * 0x9e3779b97f4a7c15ull) & mask;
	size_t first_gone = SIZE_MAX;

	for (size_t probes = 0; probes < img->meta_cap; probes++) {
		uint64_t k = img->meta_set[j];

		if (k == key) {
			*found = true;
			return j;
		}
		if (k == META_EMPTY)
			break;
		if (k == META_GONE && first_gone == SIZE_MAX)
			first_gone = j;
		j = (j + 1) & mask;
	}
	*found = false;
	return first_gone != SIZE_MAX ? first_gone : j;
}

/* Clusters are stored as index + 1 so that cluster 0 is not META_EMPTY. */
void qc_meta_set_add(struct qcow_image *img, uint64_t cluster)
{
	bool found;

	if ((img->meta_n + 1) * 2 > img->meta_cap && meta_set_grow(img) < 0)
		return;	/* out of memory: the guard just gets weaker */
	size_t j = meta_slot(img, cluster + 1, &found);

	if (!found) {
		img->meta_set[j] = cluster + 1;
		img->meta_n++;
	}
}

void qc_meta_set_del(struct qcow_image *img, uint64_t cluster)
{
	bool found;

	if (!img->meta_cap)
		return;
	size_t j = meta_slot(img, cluster + 1, &found);

	if (found) {
		img->meta_set[j] = META_GONE;
		img->meta_n--;
	}
}

bool qc_meta_set_has(const struct qcow_image *img, uint64_t cluster)
{
	bool found;

	if (!img->meta_cap)
		return false;
	meta_slot(img, cluster + 1, &found);
	return found;
}

static bool range_hits(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

/*
 * Refuse a data write to [host_off, +len) that would land on metadata, and
 * mark the image corrupt, as qemu does.
 */
int qc_check_overlap(struct qcow_image *img, uint64_t host_off, uint64_t len)
{
	const char *what = NULL;
	uint64_t cs = img->cluster_size;

	if (img->has_data_file)
		return 0;
	if (host_off < cs)
		what = "qcow2_header";
	else if (range_hits(host_off, len, img->h.l1_table_offset,
			    (uint64_t)img->h.l1_size * 8))
		what = "active L1 table";
	else if (range_hits(host_off, len, img->h.refcount_table_offset,
			    (uint64_t)img->h.refcount_table_clusters * cs))
		what = "refcount table";
	else {
		for (uint64_t c = host_off / cs; c <= (host_off + len - 1) / cs; c++)
			if (qc_meta_set_has(img, c)) {
				what = "metadata (L2 table, refcount block or snapshot data)";
				break;
			}
	}
	if (!what)
		return 0;
	return qc_mark_corrupt(img, what, host_off);
}

/* --- refcount block entries --- */

uint64_t qc_rb_get_entry(const struct qcow_image *img, const uint8_t *rb, uint32_t i)
{
	unsigned bits = img->refcount_bits;

	switch (bits) {
	case 8:
		return rb[i];
	case 16:
		return load_be16(rb + 2 * (size_t)i);
	case 32:
		return load_be32(rb + 4 * (size_t)i);
	case 64:
		return load_be64(rb + 8 * (size_t)i);
	default: {
		uint64_t bit = (uint64_t)i * bits;

		return (rb[bit / 8] >> (bit % 8)) & ((1u << bits) - 1);
	}
	}
}

void qc_rb_set_entry(const struct qcow_image *img, uint8_t *rb, uint32_t i, uint64_t v)
{
	unsigned bits = img->refcount_bits;

	switch (bits) {
	case 8:
		rb[i] = (uint8_t)v;
		break;
	case 16:
		store_be16(rb + 2 * (size_t)i, (uint16_t)v);
		break;
	case 32:
		store_be32(rb + 4 * (size_t)i, (uint32_t)v);
		break;
	case 64:
		store_be64(rb + 8 * (size_t)i, v);
		break;
	default: {
		uint64_t bit = (uint64_t)i * bits;
		uint8_t mask = (uint8_t)(((1u << bits) - 1) << (bit % 8));

		rb[bit / 8] = (uint8_t)((rb[bit / 8] & ~mask) | ((v << (bit % 8)) & mask));
	}
	}
}

/* Write every dirty entry of cache c back to the image file. */
int qc_cache_write_dirty(struct qcow_image *img, struct mcache *c, const char *what)
{
	for (unsigned i = 0; i < c->n; i++) {
		struct mcache_ent *e = &c->ents[i];

		if (!e->used || !e->dirty)
			continue;
		int r = qc_file_pwrite(&img->file, e->buf, c->buf_size, e->off);

		if (r < 0)
			return qc_err(img, r, "writing %s at 0x%llx failed", what,
				      (unsigned long long)e->off);
		e->dirty = false;
	}
	return 0;
}

int qc_rb_write_dirty(struct qcow_image *img)
{
	int r = qc_cache_write_dirty(img, &img->rbc, "refcount block");

	if (r == 0)
		img->rb_dirty = false;
	return r;
}

int qc_rb_load(struct qcow_image *img, uint64_t rb_off, struct mcache_ent **out)
{
	struct mcache_ent *e = qc_mcache_find(&img->rbc, rb_off);

	if (!e) {
		e = qc_mcache_slot(&img->rbc, rb_off);
		if (!e) {
			int r = qc_rb_write_dirty(img);

			if (r < 0)
				return r;
			e = qc_mcache_slot(&img->rbc, rb_off);
			if (!e)
				return qc_err(img, -ENOMEM, "no memory for the refcount cache");
		}
		int r = qc_file_pread_zero(&img->file, e->buf, img->rbc.buf_size, rb_off);

		if (r < 0) {
			qc_mcache_drop(&img->rbc, e);
			return qc_err(img, r, "reading refcount block at 0x%llx failed",
				    (unsigned long long)rb_off);
		}
	}
	*out = e;
	return 0;
}

int qc_rc_get(struct qcow_image *img, uint64_t cluster, uint64_t *out)
{
	uint64_t bi = cluster / img->rb_entries;
	struct mcache_ent *e;

	*out = 0;
	if (bi >= img->reftable_entries)
		return 0;
	uint64_t rb_off = img->reftable[bi] & REFT_OFFSET_MASK;

	if (!rb_off)
		return 0;
	int r = qc_rb_load(img, rb_off, &e);

	if (r < 0)
		return r;
	*out = qc_rb_get_entry(img, e->buf, (uint32_t)(cluster % img->rb_entries));
	return 0;
}

static void note_end(struct qcow_image *img, uint64_t end)
{
	if (end > img->file_end)
		img->file_end = end;
}

static int write_reftable_header(struct qcow_image *img, uint64_t off, uint32_t clusters)
{
	uint8_t b[12];

	store_be64(b, off);
	store_be32(b + 8, clusters);
	return qc_file_pwrite(&img->file, b, sizeof(b), HDR_REFTABLE_OFF);
}

/*
 * Make the refcount table hold at least need entries: lay out a bigger
 * table and the refcount blocks its own clusters need after the end of
 * the file, write them, then switch the header to it.
 */
static int grow_reftable(struct qcow_image *img, uint64_t need)
{
	uint64_t cs = img->cluster_size, epb = img->rb_entries;
	uint64_t P = div_round_up(img->file_end, cs);
	uint64_t old_rtc = img->h.refcount_table_clusters;
	uint64_t want = need > img->reftable_entries * 2 ? need : img->reftable_entries * 2;
	uint64_t rtc = div_round_up(want * 8, cs), nb = 0;
	int r;

	for (int iter = 0; iter < 64; iter++) {
		uint64_t T = nb + rtc, cnt = 0;
		uint64_t last_region = (P + T - 1) / epb;

		for (uint64_t reg = P / epb; reg <= last_region; reg++)
			if (reg >= img->reftable_entries || !img->reftable[reg])
				cnt++;
		uint64_t ents = last_region + 1 > want ? last_region + 1 : want;
		uint64_t nrtc = div_round_up(ents * 8, cs);

		if (cnt == nb && nrtc == rtc)
			break;
		nb = cnt;
		rtc = nrtc;
	}
	if (rtc * cs > QCOW_MAX_REFTABLE_BYTES)
		return qc_err(img, -EFBIG, "refcount table would exceed %u bytes",
			    QCOW_MAX_REFTABLE_BYTES);

	uint64_t nents = rtc * cs / 8;
	uint64_t *nt = calloc(nents, sizeof(uint64_t));
	uint8_t *blk = NULL;

	if (!nt)
		return qc_err(img, -ENOMEM, "no memory for the refcount table");
	memcpy(nt, img->reftable, img->reftable_entries * sizeof(uint64_t));
	if (posix_memalign((void **)&blk, 4096, cs)) {
		free(nt);
		return qc_err(img, -ENOMEM, "no memory for a refcount block");
	}

	/* Refcount blocks for regions that lack one, at P, P+1, ... */
	uint64_t T = nb + rtc, k = 0;
	uint64_t last_region = (P + T - 1) / epb;

	for (uint64_t reg = P / epb; reg <= last_region; reg++) {
		if (reg < img->reftable_entries && img->reftable[reg])
			continue;
		nt[reg] = (P + k) * cs;
		k++;
	}
	/* Fill and write the new blocks; raise counts in existing ones. */
	for (uint64_t reg = P / epb; reg <= last_region; reg++) {
		bool fresh = !(reg < img->reftable_entries && img->reftable[reg]);
		uint64_t lo = reg * epb > P ? reg * epb : P;
		uint64_t hi = (reg + 1) * epb < P + T ? (reg + 1) * epb : P + T;

		if (fresh) {
			memset(blk, 0, cs);
			for (uint64_t c = lo; c < hi; c++)
				qc_rb_set_entry(img, blk, (uint32_t)(c - reg * epb), 1);
			r = qc_file_pwrite(&img->file, blk, cs, nt[reg]);
			if (r < 0)
				goto out_free;
		} else {
			for (uint64_t c = lo; c < hi; c++) {
				r = qc_rc_set(img, c, 1);
				if (r < 0)
					goto out_free;
			}
		}
	}
	/* The table, big-endian. */
	uint64_t toff = (P + nb) * cs;
	{
		uint8_t *tb = (uint8_t *)nt;

		for (uint64_t i = 0; i < nents; i++)
			store_be64(tb + 8 * i, nt[i]);
		r = qc_file_pwrite(&img->file, tb, nents * 8, toff);
		for (uint64_t i = 0; i < nents; i++)
			nt[i] = load_be64(tb + 8 * i);
		if (r < 0)
			goto out_free;
	}
	r = qc_rb_write_dirty(img);
	if (r < 0)
		goto out_free;
	r = qc_file_flush(&img->file);
	if (r < 0)
		goto out_free;
	r = write_reftable_header(img, toff, (uint32_t)rtc);
	if (r < 0)
		goto out_free;
	r = qc_file_flush(&img->file);
	if (r < 0)
		goto out_free;

	uint64_t old_off = img->h.refcount_table_offset;

	free(img->reftable);
	img->reftable = nt;
	img->reftable_entries = nents;
	img->h.refcount_table_offset = toff;
	img->h.refcount_table_clusters = (uint32_t)rtc;
	for (uint64_t i = 0; i < nb; i++)
		qc_meta_set_add(img, P + i);
	note_end(img, (P + T) * cs);
	free(blk);
	/* The old table is no longer pointed to. */
	return qc_free_later(img, old_off, old_rtc, true);

out_free:
	free(nt);
	free(blk);
	return qc_err(img, r, "growing the refcount table failed");
}

/* Make sure the refcount block for region bi exists. */
static int ensure_refblock(struct qcow_image *img, uint64_t bi)
{
	uint64_t cs = img->cluster_size;
	int r;

	if (bi >= img->reftable_entries) {
		r = grow_reftable(img, bi + 1);
		if (r < 0)
			return r;
	}
	if (img->reftable[bi] & REFT_OFFSET_MASK)
		return 0;

	uint64_t bc = bi * img->rb_entries;
	struct mcache_ent *e;

	r = qc_check_overlap(img, bc * cs, cs);
	if (r < 0)
		return r;
	e = qc_mcache_slot(&img->rbc, bc * cs);
	if (!e) {
		r = qc_rb_write_dirty(img);
		if (r < 0)
			return r;
		e = qc_mcache_slot(&img->rbc, bc * cs);
		if (!e)
			return qc_err(img, -ENOMEM, "no memory for the refcount cache");
	}
	memset(e->buf, 0, cs);
	qc_rb_set_entry(img, e->buf, 0, 1);
	r = qc_file_pwrite(&img->file, e->buf, cs, bc * cs);
	if (r == 0)
		r = qc_file_flush(&img->file);
	if (r == 0) {
		uint8_t be[8];

		store_be64(be, bc * cs);
		r = qc_file_pwrite(&img->file, be, 8, img->h.refcount_table_offset + bi * 8);
	}
	if (r == 0)
		r = qc_file_flush(&img->file);
	if (r < 0) {
		qc_mcache_drop(&img->rbc, e);
		return qc_err(img, r, "writing a new refcount block failed");
	}
	img->reftable[bi] = bc * cs;
	qc_meta_set_add(img, bc);
	note_end(img, (bc + 1) * cs);
	return 0;
}

int qc_rc_set(struct qcow_image *img, uint64_t cluster, uint64_t v)
{
	uint64_t bi = cluster / img->rb_entries;
	struct mcache_ent *e;
	int r;

	if (v > img->refcount_max)
		return qc_err(img, -ERANGE, "refcount of cluster %llu would overflow",
			    (unsigned long long)cluster);
	r = ensure_refblock(img, bi);
	if (r < 0)
		return r;
	r = qc_rb_load(img, img->reftable[bi] & REFT_OFFSET_MASK, &e);
	if (r < 0)
		return r;
	qc_rb_set_entry(img, e->buf, (uint32_t)(cluster % img->rb_entries), v);
	e->dirty = true;
	img->rb_dirty = true;
	if (v == 0 && cluster < img->free_hint)
		img->free_hint = cluster;
	return 0;
}

int qc_rc_add(struct qcow_image *img, uint64_t cluster, int64_t delta)
{
	uint64_t v;
	int r = qc_rc_get(img, cluster, &v);

	if (r < 0)
		return r;
	if (delta < 0 && v < (uint64_t)-delta)
		return qc_err(img, -EIO, "refcount of cluster %llu would drop below zero",
			    (unsigned long long)cluster);
	return qc_rc_set(img, cluster, v + (uint64_t)delta);
}

/*
 * Take n clusters after the end of the file, with the refcount blocks their
 * regions lack placed right after them (counting themselves too).
 */
static int alloc_at_end(struct qcow_image *img, uint64_t n, uint64_t *host_off)
{
	uint64_t cs = img->cluster_size, epb = img->rb_entries;
	uint64_t P = 0, nb = 0, last_region = 0;
	uint8_t *blk = NULL;
	int r;

	for (int tries = 0;; tries++) {
		if (tries > 8)
			return qc_err(img, -EIO, "cannot lay out new clusters at the end of the file");
		P = div_round_up(img->file_end, cs);
		if (P == 0)
			P = 1;
		nb = 0;
		for (int iter = 0; iter < 64; iter++) {
			uint64_t cnt = 0;

			last_region = (P + n + nb - 1) / epb;
			for (uint64_t reg = P / epb; reg <= last_region; reg++)
				if (reg >= img->reftable_entries || !img->reftable[reg])
					cnt++;
			if (cnt == nb)
				break;
			nb = cnt;
		}
		last_region = (P + n + nb - 1) / epb;
		if (last_region < img->reftable_entries)
			break;
		r = grow_reftable(img, last_region + 1);
		if (r < 0)
			return r;
	}
	if (nb && posix_memalign((void **)&blk, 4096, cs))
		return qc_err(img, -ENOMEM, "no memory for a refcount block");

	uint64_t end = P + n + nb, k = 0;

	/* Whatever happens next, these clusters may now hold data. */
	note_end(img, end * cs);
	r = 0;
	for (uint64_t reg = P / epb; reg <= last_region && r == 0; reg++) {
		uint64_t lo = reg * epb > P ? reg * epb : P;
		uint64_t hi = (reg + 1) * epb < end ? (reg + 1) * epb : end;

		if (img->reftable[reg]) {
			for (uint64_t c = lo; c < hi && r == 0; c++)
				r = qc_rc_set(img, c, 1);
			continue;
		}
		uint64_t bc = P + n + k++;

		memset(blk, 0, cs);
		for (uint64_t c = lo; c < hi; c++)
			qc_rb_set_entry(img, blk, (uint32_t)(c - reg * epb), 1);
		r = qc_file_pwrite(&img->file, blk, cs, bc * cs);
		if (r == 0)
			img->reftable[reg] = bc * cs | (1ull << 63);	/* mark: new */
	}
	free(blk);
	if (r == 0 && nb)
		r = qc_file_flush(&img->file);
	if (r == 0 && nb) {
		/*
		 * The new blocks count one another's clusters, so their table
		 * entries must reach the disk together: one write for the
		 * whole (contiguous) range of entries.
		 */
		uint64_t first = P / epb, cnt = last_region - first + 1;
		uint8_t *be = malloc(cnt * 8);

		if (!be) {
			r = -ENOMEM;
		} else {
			for (uint64_t i = 0; i < cnt; i++)
				store_be64(be + 8 * i, img->reftable[first + i] & ~(1ull << 63));
			r = qc_file_pwrite(&img->file, be, cnt * 8,
					   img->h.refcount_table_offset + first * 8);
			free(be);
		}
		for (uint64_t reg = first; reg <= last_region && r == 0; reg++) {
			if (!(img->reftable[reg] & (1ull << 63)))
				continue;
			img->reftable[reg] &= ~(1ull << 63);
			qc_meta_set_add(img, img->reftable[reg] / cs);
		}
	}
	if (r == 0 && nb)
		r = qc_file_flush(&img->file);
	if (r < 0) {
		/* Forget blocks whose table entry may not be on disk. */
		for (uint64_t reg = P / epb; reg <= last_region; reg++)
			if (img->reftable[reg] & (1ull << 63))
				img->reftable[reg] = 0;
		return qc_err(img, r, "writing new refcount blocks failed");
	}
	note_end(img, end * cs);
	*host_off = P * cs;
	return 0;
}

/*
 * Allocate n contiguous free clusters; their counts become 1. Returns the
 * host offset of the first in *host_off. Holes inside the file are used
 * first; otherwise the clusters come from the end of the file.
 */
int qc_alloc_clusters(struct qcow_image *img, uint64_t n, uint64_t *host_off)
{
	uint64_t cs = img->cluster_size, epb = img->rb_entries;
	uint64_t start = img->free_hint ? img->free_hint : 1;
	uint64_t fend = div_round_up(img->file_end, cs);
	uint64_t run = 0, c, first_free = UINT64_MAX;
	int r;

	for (c = start; run < n; c++) {
		uint64_t v;

		if (c >= fend) {
			/* Nothing below c was free, save first_free. */
			img->free_hint = first_free < c ? first_free : c;
			return alloc_at_end(img, n, host_off);
		}
		if (c % epb == 0 || c == start) {
			r = ensure_refblock(img, c / epb);
			if (r < 0)
				return r;
			fend = div_round_up(img->file_end, cs);
		}
		r = qc_rc_get(img, c, &v);
		if (r < 0)
			return r;
		if (v == 0 && !qc_meta_set_has(img, c)) {
			run++;
			if (first_free == UINT64_MAX)
				first_free = c;
		} else {
			run = 0;
		}
	}
	uint64_t first = c - n;

	for (uint64_t i = 0; i < n; i++) {
		r = qc_rc_set(img, first + i, 1);
		if (r < 0)
			return r;
	}
	/* Everything between the hint and this run is in use. */
	if (first == start || n == 1)
		img->free_hint = first + n;
	*host_off = first * cs;
	return 0;
}

int qc_free_later(struct qcow_image *img, uint64_t host_off, uint64_t n, bool punch)
{
	uint64_t cl = host_off / img->cluster_size;

	if (img->nfrees) {
		struct pending_free *last = &img->frees[img->nfrees - 1];

		if (last->cluster + last->count == cl && last->punch == punch &&
		    last->count + n < UINT32_MAX) {
			last->count += (uint32_t)n;
			return 0;
		}
	}
	if (img->nfrees == img->frees_cap) {
		size_t ncap = img->frees_cap ? img->frees_cap * 2 : 256;
		struct pending_free *nf = realloc(img->frees, ncap * sizeof(*nf));

		if (!nf)
			return qc_err(img, -ENOMEM, "no memory to queue freed clusters");
		img->frees = nf;
		img->frees_cap = ncap;
	}
	img->frees[img->nfrees++] = (struct pending_free){ cl, (uint32_t)n, punch };
	return 0;
}

/* Lower the counts of queued clusters; punch those that became free. */
int qc_apply_frees(struct qcow_image *img)
{
	uint64_t cs = img->cluster_size;
	int r = 0;

	if (!img->nfrees)
		return 0;
	qc_wait_io_idle(img);
	for (size_t i = 0; i < img->nfrees && r == 0; i++) {
		struct pending_free *pf = &img->frees[i];
		uint64_t run_start = 0, run_len = 0;

		for (uint64_t c = pf->cluster; c < pf->cluster + pf->count; c++) {
			uint64_t v;

			r = qc_rc_get(img, c, &v);
			if (r < 0)
				break;
			if (v == 0)
				continue;	/* already free: nothing to undo */
			r = qc_rc_set(img, c, v - 1);
			if (r < 0)
				break;
			if (v - 1 != 0)
				continue;
			qc_meta_set_del(img, c);
			qc_mcache_drop_range(&img->l2c, c * cs, cs);
			if (img->comp_next && img->comp_next / cs == c)
				img->comp_next = 0;
			if (!pf->punch)
				continue;
			if (run_len && run_start + run_len == c) {
				run_len++;
			} else {
				if (run_len)
					qc_file_punch(&img->file, run_start * cs, run_len * cs);
				run_start = c;
				run_len = 1;
			}
		}
		if (run_len)
			qc_file_punch(&img->file, run_start * cs, run_len * cs);
	}
	img->nfrees = 0;
	return r;
}

/*
 * Replace all refcount structures by new ones describing refs (counts for
 * every cluster except the refcount structures themselves), placed after
 * the end of the file. Used to repair, and to rebuild a dirty image.
 */
int qc_rc_rebuild(struct qcow_image *img, const uint32_t *refs, uint64_t nclusters)
{
	uint64_t cs = img->cluster_size, epb = img->rb_entries;
	uint64_t P = div_round_up(img->file_end, cs);
	uint64_t nb = 1, rtc = 1;
	int r;

	if (P < nclusters)
		P = nclusters;
	for (int iter = 0; iter < 64; iter++) {
		uint64_t C = P + nb + rtc;
		uint64_t nnb = div_round_up(C, epb);
		uint64_t nrtc = div_round_up(nnb * 8, cs);

		if (nnb == nb && nrtc == rtc)
			break;
		nb = nnb;
		rtc = nrtc;
	}
	if (rtc * cs > QCOW_MAX_REFTABLE_BYTES)
		return qc_err(img, -EFBIG, "rebuilt refcount table would be too large");
	for (uint64_t c = 0; c < nclusters; c++)
		if (refs[c] > img->refcount_max)
			return qc_err(img, -ERANGE, "cluster %llu has %u references, more than the refcount width allows",
				    (unsigned long long)c, refs[c]);

	uint64_t nents = rtc * cs / 8;
	uint64_t *nt = calloc(nents, sizeof(uint64_t));
	uint8_t *blk = NULL;
	uint64_t C = P + nb + rtc;

	if (!nt || posix_memalign((void **)&blk, 4096, cs)) {
		free(nt);
		return qc_err(img, -ENOMEM, "no memory to rebuild refcounts");
	}
	for (uint64_t b = 0; b < nb; b++) {
		memset(blk, 0, cs);
		for (uint64_t i = 0; i < epb; i++) {
			uint64_t c = b * epb + i;
			uint64_t v = c < nclusters ? refs[c] : 0;

			if (c >= P && c < C)
				v = 1;
			if (v)
				qc_rb_set_entry(img, blk, (uint32_t)i, v);
		}
		nt[b] = (P + b) * cs;
		r = qc_file_pwrite(&img->file, blk, cs, nt[b]);
		if (r < 0)
			goto out;
	}
	{
		uint8_t *tb = (uint8_t *)blk;
		uint64_t toff = (P + nb) * cs;

		/* Write the table one cluster at a time. */
		for (uint64_t k = 0; k < rtc; k++) {
			memset(tb, 0, cs);
			for (uint64_t i = 0; i < cs / 8; i++) {
				uint64_t idx = k * (cs / 8) + i;

				if (idx < nents)
					store_be64(tb + 8 * i, nt[idx]);
			}
			r = qc_file_pwrite(&img->file, tb, cs, toff + k * cs);
			if (r < 0)
				goto out;
		}
		r = qc_file_flush(&img->file);
		if (r < 0)
			goto out;
		r = write_reftable_header(img, toff, (uint32_t)rtc);
		if (r < 0)
			goto out;
		r = qc_file_flush(&img->file);
		if (r < 0)
			goto out;

		/* Old structures are free now: forget and punch them. */
		for (uint64_t i = 0; i < img->reftable_entries; i++) {
			uint64_t o = img->reftable[i] & REFT_OFFSET_MASK;

			if (!o || o % cs)
				continue;
			qc_meta_set_del(img, o / cs);
			if (o / cs < nclusters && refs[o / cs] == 0)
				qc_file_punch(&img->file, o, cs);
		}
		uint64_t oo = img->h.refcount_table_offset;

		for (uint64_t k = 0; k < img->h.refcount_table_clusters; k++) {
			uint64_t c = oo / cs + k;

			if (c < nclusters && refs[c] == 0)
				qc_file_punch(&img->file, c * cs, cs);
		}
		qc_mcache_release(&img->rbc);
		r = qc_mcache_init(&img->rbc, cs, 64);
		if (r < 0)
			goto out;
		free(img->reftable);
		img->reftable = nt;
		nt = NULL;
		img->reftable_entries = nents;
		img->h.refcount_table_offset = toff;
		img->h.refcount_table_clusters = (uint32_t)rtc;
		for (uint64_t b = 0; b < nb; b++)
			qc_meta_set_add(img, P + b);
		note_end(img, C * cs);
		img->free_hint = 1;
		img->rb_dirty = false;
	}
out:
	free(nt);
	free(blk);
	if (r < 0)
		return qc_err(img, r, "rebuilding refcounts failed");
	return 0;
}
