/* SPDX-License-Identifier: MIT */
/*
 * Consistency check and repair, with qemu-img check's meaning.
 *
 * compute_refs walks every structure that points to clusters (header,
 * active and snapshot L1 tables, their L2 tables and data, compressed
 * descriptors, the snapshot table, persistent bitmaps and, when asked, the
 * refcount table and blocks) and counts references per host cluster. The
 * check compares those counts with the refcounts on disk: fewer on disk is
 * a corruption (the cluster could be handed out again while in use), more
 * is a leak (wasted space). It also checks the COPIED flags of the active
 * tables. Repair lowers leaked counts in place, and for corruptions fixes
 * bad entries and COPIED flags and then rebuilds all refcount structures.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/endian.h"
#include "internal.h"

#define MAX_CHECK_CLUSTERS (1ull << 28)

struct walk {
	struct qcow_image *img;
	uint32_t *refs;
	uint64_t n;
	struct qcow_check_result *res;
	bool report;
	uint64_t next_contig;
	uint8_t *tbl;		/* one cluster */
};

static void found(struct walk *w, bool corruption, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void found(struct walk *w, bool corruption, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	if (w->res) {
		if (corruption)
			w->res->corruptions++;
		else
			w->res->leaks++;
	}
	if (!w->report || !w->img->log.fn)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	w->img->log.fn(w->img->log.opaque, QCOW_LOG_WARN, msg);
}

static void inc(struct walk *w, uint64_t off, uint64_t len)
{
	uint64_t cs = w->img->cluster_size;

	if (!len)
		return;
	for (uint64_t c = off / cs; c <= (off + len - 1) / cs; c++) {
		if (c >= w->n) {
			found(w, true, "ERROR: reference to offset 0x%llx beyond the end of the image file",
			      (unsigned long long)(c * cs));
			return;
		}
		if (w->refs[c] < UINT32_MAX)
			w->refs[c]++;
	}
}

static int walk_l2(struct walk *w, uint64_t l2off, bool active)
{
	struct qcow_image *img = w->img;
	uint64_t cs = img->cluster_size;
	int r;

	if (l2off / cs >= w->n)
		return 0;	/* already reported by inc */
	r = qc_file_pread(&img->file, w->tbl, cs, l2off);
	if (r < 0) {
		if (w->res)
			w->res->check_errors++;
		return 0;
	}
	for (uint32_t i = 0; i < img->l2_entries; i++) {
		uint64_t bm;
		uint64_t e = qc_l2_get(img, w->tbl, i, &bm);

		if (e & OFLAG_COMPRESSED) {
			uint64_t first, count, coff, csize;

			qc_compressed_clusters(img, e, &first, &count, &coff, &csize);
			if (img->has_data_file) {
				found(w, true, "ERROR compressed cluster with an external data file");
				continue;
			}
			inc(w, first * cs, count * cs);
			if (active && w->res) {
				/* Fragmented by nature, as qemu counts them. */
				w->res->allocated_clusters++;
				w->res->compressed_clusters++;
				w->res->fragmented_clusters++;
			}
			w->next_contig = 0;
			continue;
		}
		uint64_t off = e & L2E_OFFSET_MASK;
		bool normal = off || (img->has_data_file && (e & OFLAG_COPIED));

		if (img->extl2 && !normal && (bm & 0xffffffffull)) {
			found(w, true, "ERROR subclusters allocated without a host cluster (L2 entry %u)", i);
			continue;
		}
		if (!normal)
			continue;
		if (off & img->cluster_mask) {
			found(w, true, "ERROR offset=%llx: Cluster is not properly aligned; L2 entry corrupted",
			      (unsigned long long)off);
			continue;
		}
		if (active && w->res) {
			bool zero = img->h.version >= 3 && !img->extl2 && (e & OFLAG_ZERO);

			if (!zero) {
				w->res->allocated_clusters++;
				if (w->next_contig && off != w->next_contig)
					w->res->fragmented_clusters++;
				w->next_contig = off + cs;
			}
		}
		if (!img->has_data_file)
			inc(w, off, cs);
	}
	return 0;
}

static int walk_l1(struct walk *w, uint64_t l1off, uint32_t l1size, bool active)
{
	struct qcow_image *img = w->img;
	uint64_t cs = img->cluster_size;
	uint64_t *l1;
	int r;

	if (!l1size)
		return 0;
	inc(w, l1off, (uint64_t)l1size * 8);
	if (active) {
		l1 = img->l1;
	} else {
		l1 = calloc(l1size, 8);
		if (!l1)
			return -ENOMEM;
		r = qc_file_pread(&img->file, l1, (size_t)l1size * 8, l1off);
		if (r < 0) {
			free(l1);
			found(w, true, "ERROR snapshot L1 table at 0x%llx cannot be read",
			      (unsigned long long)l1off);
			return 0;
		}
		for (uint32_t i = 0; i < l1size; i++)
			l1[i] = load_be64(&l1[i]);
	}
	for (uint32_t i = 0; i < l1size; i++) {
		uint64_t l2off = l1[i] & L1E_OFFSET_MASK;

		if (!l2off)
			continue;
		if (l2off & img->cluster_mask) {
			found(w, true, "ERROR l2_offset=%llx: Table is not cluster aligned; L1 entry corrupted",
			      (unsigned long long)l2off);
			continue;
		}
		inc(w, l2off, cs);
		r = walk_l2(w, l2off, active);
		if (r < 0)
			break;
	}
	if (!active)
		free(l1);
	return 0;
}

static void bitmap_ref(void *opaque, uint64_t off, uint64_t len)
{
	inc(opaque, off, len);
}

static void walk_bitmaps(struct walk *w)
{
	if (qc_bitmap_clusters(w->img, bitmap_ref, w) < 0 && w->res)
		w->res->check_errors++;
}

int qc_compute_refs(struct qcow_image *img, uint32_t **refs_out, uint64_t *n_out,
		 bool count_refcount_structs, struct qcow_check_result *res, bool report)
{
	uint64_t cs = img->cluster_size;
	int64_t fsize = qc_file_size(&img->file);
	struct walk w = { .img = img, .res = res, .report = report };
	int r = 0;

	if (fsize < 0)
		return qc_err(img, (int)fsize, "cannot get the image file size");
	w.n = div_round_up((uint64_t)fsize, cs);
	if (img->file_end / cs > w.n)
		w.n = img->file_end / cs;
	if (w.n > MAX_CHECK_CLUSTERS)
		return qc_err(img, -EFBIG, "image file too large to check");
	w.refs = calloc(w.n ? w.n : 1, sizeof(uint32_t));
	if (!w.refs || posix_memalign((void **)&w.tbl, 4096, cs)) {
		free(w.refs);
		return qc_err(img, -ENOMEM, "out of memory for the check");
	}
	inc(&w, 0, cs);
	r = walk_l1(&w, img->h.l1_table_offset, img->h.l1_size, true);
	for (uint32_t i = 0; r == 0 && i < img->h.nb_snapshots; i++) {
		w.next_contig = 0;
		r = walk_l1(&w, img->snaps[i].l1_offset, img->snaps[i].l1_size, false);
	}
	if (img->h.nb_snapshots)
		inc(&w, img->h.snapshots_offset, img->snap_table_size);
	walk_bitmaps(&w);
	if (count_refcount_structs) {
		inc(&w, img->h.refcount_table_offset, (uint64_t)img->h.refcount_table_clusters * cs);
		for (uint64_t i = 0; i < img->reftable_entries; i++) {
			uint64_t o = img->reftable[i] & REFT_OFFSET_MASK;

			if (!o)
				continue;
			if (o & img->cluster_mask) {
				found(&w, true, "ERROR refcount block %llu is not cluster aligned; refcount table entry corrupted",
				      (unsigned long long)i);
				continue;
			}
			if (o / cs >= w.n) {
				found(&w, true, "ERROR refcount block %llu is outside image",
				      (unsigned long long)i);
				continue;
			}
			inc(&w, o, cs);
		}
	}
	free(w.tbl);
	if (r < 0) {
		free(w.refs);
		return qc_err(img, r, "out of memory for the check");
	}
	*refs_out = w.refs;
	*n_out = w.n;
	return 0;
}

/* Compare on-disk counts with refs; with fix, set leaked counts down. */
static int compare_refs(struct qcow_image *img, const uint32_t *refs, uint64_t n,
			struct qcow_check_result *res, bool report, bool fix_leaks)
{
	struct walk w = { .img = img, .res = res, .report = report };
	uint64_t cs = img->cluster_size;
	int r;

	for (uint64_t c = 0; c < n; c++) {
		uint64_t v;

		r = qc_rc_get(img, c, &v);
		if (r < 0) {
			res->check_errors++;
			continue;
		}
		if (refs[c])
			res->image_end_offset = (c + 1) * cs;
		if (v == refs[c])
			continue;
		if (v < refs[c]) {
			found(&w, true, "ERROR cluster %llu refcount=%llu reference=%u",
			      (unsigned long long)c, (unsigned long long)v, refs[c]);
		} else {
			found(&w, false, "%s cluster %llu refcount=%llu reference=%u",
			      fix_leaks ? "Repairing" : "Leaked", (unsigned long long)c,
			      (unsigned long long)v, refs[c]);
			if (fix_leaks) {
				r = qc_rc_set(img, c, refs[c]);
				if (r < 0)
					return r;
				if (refs[c] == 0)
					qc_file_punch(&img->file, c * cs, cs);
			}
		}
	}
	return 0;
}

/* Check (and with fix, correct) the COPIED flags of the active tables. */
static int check_copied(struct qcow_image *img, struct qcow_check_result *res,
			bool report, bool fix)
{
	struct walk w = { .img = img, .res = res, .report = report };
	uint64_t cs = img->cluster_size;
	int r;

	for (uint32_t i = 0; i < img->h.l1_size; i++) {
		uint64_t l1e = img->l1[i], l2off = l1e & L1E_OFFSET_MASK, v;

		if (!l2off || l2off & img->cluster_mask || l2off / cs >= img->file_end / cs)
			continue;
		r = qc_rc_get(img, l2off / cs, &v);
		if (r < 0)
			return r;
		if (((l1e & OFLAG_COPIED) != 0) != (v == 1)) {
			found(&w, true, "%s OFLAG_COPIED L2 cluster: l1_index=%u l1_entry=%llx refcount=%llu",
			      fix ? "Repairing" : "ERROR", i, (unsigned long long)l1e,
			      (unsigned long long)v);
			if (fix) {
				img->l1[i] = v == 1 ? (l1e | OFLAG_COPIED) : (l1e & ~OFLAG_COPIED);
				if (i < img->l1_dirty_lo)
					img->l1_dirty_lo = i;
				if (i + 1 > img->l1_dirty_hi)
					img->l1_dirty_hi = i + 1;
			}
		}
		for (uint64_t s = 0; s < img->l2_entries / img->slice_entries; s++) {
			struct mcache_ent *sl;

			r = qc_l2_load(img, l2off + s * img->slice_size, &sl);
			if (r < 0) {
				res->check_errors++;
				break;
			}
			for (uint32_t k = 0; k < img->slice_entries; k++) {
				uint64_t bm, e = qc_l2_get(img, sl->buf, k, &bm);
				uint64_t off = e & L2E_OFFSET_MASK;

				if ((e & OFLAG_COMPRESSED) || !off || off & img->cluster_mask ||
				    img->has_data_file || off / cs >= img->file_end / cs)
					continue;
				r = qc_rc_get(img, off / cs, &v);
				if (r < 0)
					return r;
				if (((e & OFLAG_COPIED) != 0) == (v == 1))
					continue;
				found(&w, true, "%s OFLAG_COPIED data cluster: l2_entry=%llx refcount=%llu",
				      fix ? "Repairing" : "ERROR", (unsigned long long)e,
				      (unsigned long long)v);
				if (fix) {
					e = v == 1 ? (e | OFLAG_COPIED) : (e & ~OFLAG_COPIED);
					qc_l2_set(img, sl->buf, k, e, bm);
					sl->dirty = true;
					img->l2_dirty = true;
				}
			}
		}
	}
	return 0;
}

static int check_once(struct qcow_image *img, struct qcow_check_result *res,
		      bool report, bool fix_leaks)
{
	uint32_t *refs;
	uint64_t n;
	int r;

	memset(res, 0, sizeof(*res));
	res->total_clusters = div_round_up(img->h.size, img->cluster_size);
	r = qc_compute_refs(img, &refs, &n, true, res, report);
	if (r < 0)
		return r;
	r = compare_refs(img, refs, n, res, report, fix_leaks);
	free(refs);
	if (r < 0)
		return r;
	return check_copied(img, res, report, false);
}

int qcow_image_check(struct qcow_image *img, struct qcow_check_result *res,
		     enum qcow_check_repair repair)
{
	struct qcow_check_result first;
	int r;

	memset(res, 0, sizeof(*res));
	pthread_mutex_lock(&img->lock);
	if (repair && !img->rw) {
		r = qc_err(img, -EBADF, "repair needs the image open read-write");
		goto out;
	}
	r = qc_meta_flush(img);
	if (r < 0)
		goto out;
	r = check_once(img, &first, !repair, false);
	if (r < 0 || !repair || (!first.corruptions && !first.leaks)) {
		*res = first;
		goto out;
	}
	if (first.corruptions && repair == QCOW_CHECK_REPAIR_ALL) {
		uint32_t *refs;
		uint64_t n;
		struct qcow_check_result tmp = { 0 };

		r = qc_compute_refs(img, &refs, &n, false, NULL, false);
		if (r == 0) {
			r = qc_rc_rebuild(img, refs, n);
			free(refs);
		}
		/* With true counts in place, COPIED flags can follow them. */
		if (r == 0)
			r = check_copied(img, &tmp, true, true);
		if (r == 0)
			r = qc_meta_flush(img);
	} else if (first.leaks) {
		struct qcow_check_result tmp = { 0 };
		uint32_t *refs;
		uint64_t n;

		r = qc_compute_refs(img, &refs, &n, true, NULL, false);
		if (r == 0) {
			r = compare_refs(img, refs, n, &tmp, true, true);
			free(refs);
		}
		if (r == 0)
			r = qc_rb_write_dirty(img);
		if (r == 0)
			r = qc_file_flush(&img->file);
	}
	if (r < 0)
		goto out;
	r = check_once(img, res, false, false);
	if (r < 0)
		goto out;
	res->leaks_fixed = first.leaks > res->leaks ? first.leaks - res->leaks : 0;
	res->corruptions_fixed = first.corruptions > res->corruptions ?
				 first.corruptions - res->corruptions : 0;
	if (img->corrupt && !res->corruptions && img->h.version >= 3) {
		img->h.incompatible_features &= ~QCOW_INCOMPAT_CORRUPT;
		r = qc_hdr_write_u64(img, HDR_INCOMPAT_OFF, img->h.incompatible_features);
		if (r == 0)
			r = qc_file_flush(&img->file);
		if (r == 0)
			img->corrupt = false;
	}
out:
	pthread_mutex_unlock(&img->lock);
	return r;
}
