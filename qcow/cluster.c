/* SPDX-License-Identifier: MIT */
/*
 * The guest data path: mapping guest offsets through L1 and L2 to host
 * clusters, reads, writes with copy-on-write, zeroing and discard, and the
 * allocation map.
 *
 * A guest cluster is in one of these states, read off its L2 entry:
 *   unallocated  offset 0, no zero flag: the backing file shows, or zeros
 *   zero         zero flag (v3), offset 0 or a preallocated cluster
 *   normal       offset != 0: the data is there
 *   compressed   a compressed descriptor (read-only in place)
 * Extended L2 entries add a 32-bit allocation and zero bitmap per cluster.
 *
 * A write to a normal cluster whose count is one (COPIED) goes in place.
 * Anything else gets a new cluster: the bytes around the guest's write come
 * from the old state (backing file, zeros, decompressed or shared data) and
 * go out in one vectored write together with the guest data; then the L2
 * entry in the cache points to the new cluster and the old one is queued to
 * be released after the next flush.
 *
 * Data I/O that needs no scratch buffer runs with the image lock dropped
 * (reads of normal clusters, in-place writes, writes into fresh clusters),
 * counted in `inflight` so that meta_flush can wait for it; a guest cluster
 * being filled that way is marked busy so other requests on it wait.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/endian.h"
#include "internal.h"

enum ctype {
	C_UNALLOC,
	C_ZERO_PLAIN,
	C_ZERO_ALLOC,
	C_NORMAL,
	C_COMPRESSED,
};

/* --- iovec helpers --- */

#define SUB_IOV_MAX 1024

static int iov_sub(const struct iovec *iov, int n, size_t skip, size_t len,
		   struct iovec *out, int max)
{
	int k = 0;

	for (int i = 0; i < n && len; i++) {
		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		size_t take = iov[i].iov_len - skip;

		if (take > len)
			take = len;
		if (k == max)
			return -EINVAL;
		out[k].iov_base = (uint8_t *)iov[i].iov_base + skip;
		out[k].iov_len = take;
		k++;
		len -= take;
		skip = 0;
	}
	return k;
}

static void iov_zero(const struct iovec *iov, int n)
{
	for (int i = 0; i < n; i++)
		memset(iov[i].iov_base, 0, iov[i].iov_len);
}

static void iov_from_buf(const struct iovec *iov, int n, const uint8_t *src)
{
	for (int i = 0; i < n; i++) {
		memcpy(iov[i].iov_base, src, iov[i].iov_len);
		src += iov[i].iov_len;
	}
}

static bool iov_is_zero(const struct iovec *iov, int n)
{
	for (int i = 0; i < n; i++) {
		const uint8_t *p = iov[i].iov_base;
		size_t len = iov[i].iov_len;

		while (len && ((uintptr_t)p & 7)) {
			if (*p)
				return false;
			p++;
			len--;
		}
		for (; len >= 8; p += 8, len -= 8) {
			uint64_t v;

			memcpy(&v, p, 8);
			if (v)
				return false;
		}
		while (len--)
			if (*p++)
				return false;
	}
	return true;
}

bool qc_buf_is_zero(const void *buf, size_t len)
{
	struct iovec iov = { (void *)buf, len };

	return iov_is_zero(&iov, 1);
}

/* --- L1 and L2 tables --- */

uint64_t qc_l2_get(const struct qcow_image *img, const uint8_t *slice, uint32_t i,
		uint64_t *bitmap)
{
	const uint8_t *p = slice + (size_t)i * img->l2_entry_size;

	if (bitmap)
		*bitmap = img->extl2 ? load_be64(p + 8) : 0;
	return load_be64(p);
}

void qc_l2_set(const struct qcow_image *img, uint8_t *slice, uint32_t i, uint64_t e,
	    uint64_t bitmap)
{
	uint8_t *p = slice + (size_t)i * img->l2_entry_size;

	store_be64(p, e);
	if (img->extl2)
		store_be64(p + 8, bitmap);
}

int qc_l2_write_dirty(struct qcow_image *img)
{
	int r = qc_cache_write_dirty(img, &img->l2c, "L2 table");

	if (r == 0)
		img->l2_dirty = false;
	return r;
}

int qc_l1_write_dirty(struct qcow_image *img)
{
	uint32_t lo = img->l1_dirty_lo, hi = img->l1_dirty_hi;
	uint8_t *b;
	int r;

	if (lo >= hi)
		return 0;
	b = malloc((size_t)(hi - lo) * 8);
	if (!b)
		return qc_err(img, -ENOMEM, "no memory to write the L1 table");
	for (uint32_t i = lo; i < hi; i++)
		store_be64(b + 8 * (size_t)(i - lo), img->l1[i]);
	r = qc_file_pwrite(&img->file, b, (size_t)(hi - lo) * 8,
			 img->h.l1_table_offset + (uint64_t)lo * 8);
	free(b);
	if (r < 0)
		return qc_err(img, r, "writing the L1 table failed");
	img->l1_dirty_lo = UINT32_MAX;
	img->l1_dirty_hi = 0;
	return 0;
}

static void l1_set(struct qcow_image *img, uint32_t i, uint64_t v)
{
	img->l1[i] = v;
	if (i < img->l1_dirty_lo)
		img->l1_dirty_lo = i;
	if (i + 1 > img->l1_dirty_hi)
		img->l1_dirty_hi = i + 1;
}

int qc_l2_load(struct qcow_image *img, uint64_t slice_off, struct mcache_ent **out)
{
	struct mcache_ent *e = qc_mcache_find(&img->l2c, slice_off);
	int r;

	if (!e) {
		e = qc_mcache_slot(&img->l2c, slice_off);
		if (!e) {
			r = qc_meta_flush(img);
			if (r < 0)
				return r;
			e = qc_mcache_slot(&img->l2c, slice_off);
			if (!e)
				return qc_err(img, -ENOMEM, "no memory for the L2 cache");
		}
		r = qc_file_pread(&img->file, e->buf, img->slice_size, slice_off);
		if (r < 0) {
			qc_mcache_drop(&img->l2c, e);
			return qc_err(img, -EIO, "L2 table at 0x%llx lies outside the image file",
				    (unsigned long long)slice_off);
		}
	}
	*out = e;
	return 0;
}

/* Where guest cluster gc's entry lives. */
struct l2ref {
	uint32_t l1i;
	uint64_t l2off;		/* 0: no table */
	uint64_t slice_off;
	uint32_t idx;		/* within the slice */
};

static int l2_locate(struct qcow_image *img, uint64_t gc, struct l2ref *ref)
{
	uint64_t l1i = gc >> img->l2_bits;
	uint32_t l2i = (uint32_t)(gc & (img->l2_entries - 1));

	if (l1i >= img->h.l1_size)
		return qc_err(img, -EIO, "guest cluster %llu lies beyond the L1 table",
			    (unsigned long long)gc);
	ref->l1i = (uint32_t)l1i;
	ref->l2off = img->l1[l1i] & L1E_OFFSET_MASK;
	if (ref->l2off && (ref->l2off & img->cluster_mask))
		return qc_err(img, -EIO, "L2 table offset 0x%llx is not cluster aligned",
			    (unsigned long long)ref->l2off);
	ref->slice_off = ref->l2off + (uint64_t)(l2i / img->slice_entries) * img->slice_size;
	ref->idx = l2i % img->slice_entries;
	return 0;
}

/* Read guest cluster gc's entry (0 if there is no table). */
static int entry_get(struct qcow_image *img, uint64_t gc, uint64_t *e, uint64_t *bitmap)
{
	struct l2ref ref;
	struct mcache_ent *s;
	int r = l2_locate(img, gc, &ref);

	*e = 0;
	*bitmap = 0;
	if (r < 0 || !ref.l2off)
		return r;
	r = qc_l2_load(img, ref.slice_off, &s);
	if (r < 0)
		return r;
	*e = qc_l2_get(img, s->buf, ref.idx, bitmap);
	return 0;
}

static enum ctype classify(const struct qcow_image *img, uint64_t e)
{
	if (e & OFLAG_COMPRESSED)
		return C_COMPRESSED;
	uint64_t off = e & L2E_OFFSET_MASK;
	bool zero = img->h.version >= 3 && !img->extl2 && (e & OFLAG_ZERO);

	if (!off && !(img->has_data_file && (e & OFLAG_COPIED)))
		return zero ? C_ZERO_PLAIN : C_UNALLOC;
	return zero ? C_ZERO_ALLOC : C_NORMAL;
}

/*
 * Make guest cluster gc's L2 table present and ours alone (COPIED), ready
 * for its entry to change; *slice is the cache entry holding it.
 */
static int l2_prepare(struct qcow_image *img, uint64_t gc, struct mcache_ent **slice,
		      uint32_t *idx)
{
	struct l2ref ref;
	uint64_t cs = img->cluster_size;
	int r = l2_locate(img, gc, &ref);

	if (r < 0)
		return r;
	uint64_t l1e = img->l1[ref.l1i];

	if (!ref.l2off || !(l1e & OFLAG_COPIED)) {
		uint64_t noff;
		uint8_t *tbl = NULL;

		r = qc_alloc_clusters(img, 1, &noff);
		if (r < 0)
			return r;
		r = qc_check_overlap(img, noff, cs);
		if (r < 0)
			return r;
		if (posix_memalign((void **)&tbl, 4096, cs))
			return qc_err(img, -ENOMEM, "no memory for an L2 table");
		if (ref.l2off) {
			/* Copy a table shared with a snapshot. The clusters it
			 * points to keep their counts: the snapshot's path
			 * through the old table and ours through the new one
			 * each count once, as before. */
			r = qc_l2_write_dirty(img);
			if (r == 0)
				r = qc_file_pread(&img->file, tbl, cs, ref.l2off);
			if (r < 0) {
				free(tbl);
				return qc_err(img, r, "reading shared L2 table failed");
			}
		} else {
			memset(tbl, 0, cs);
		}
		r = qc_file_pwrite(&img->file, tbl, cs, noff);
		if (r < 0) {
			free(tbl);
			return qc_err(img, r, "writing a new L2 table failed");
		}
		/* Seed the cache with the slice we need. */
		qc_mcache_drop_range(&img->l2c, noff, cs);
		free(tbl);
		qc_meta_set_add(img, noff / cs);
		if (ref.l2off) {
			r = qc_free_later(img, ref.l2off, 1, true);
			if (r < 0)
				return r;
		}
		l1_set(img, ref.l1i, noff | OFLAG_COPIED);
		r = l2_locate(img, gc, &ref);
		if (r < 0)
			return r;
	}
	r = qc_l2_load(img, ref.slice_off, slice);
	*idx = ref.idx;
	return r;
}

/* --- compressed clusters --- */

int qc_compressed_clusters(const struct qcow_image *img, uint64_t e, uint64_t *first,
			uint64_t *count, uint64_t *coff, uint64_t *csize)
{
	unsigned x = 62 - (img->h.cluster_bits - 8);
	uint64_t off = e & ((1ull << x) - 1);
	uint64_t nsec = ((e >> x) & ((1ull << (img->h.cluster_bits - 8)) - 1)) + 1;
	uint64_t start = off & ~511ull;
	uint64_t end = start + nsec * 512;	/* exclusive */

	*coff = off;
	*csize = end - off;
	*first = start >> img->h.cluster_bits;
	*count = ((end - 1) >> img->h.cluster_bits) - *first + 1;
	return 0;
}

static int read_compressed(struct qcow_image *img, uint64_t e)
{
	uint64_t first, count, coff, csize;
	int r;

	if (img->zbuf_entry == e && e)
		return 0;
	qc_compressed_clusters(img, e, &first, &count, &coff, &csize);
	if (csize > 2 * (uint64_t)img->cluster_size + 512)
		return qc_err(img, -EIO, "compressed cluster descriptor too large");
	r = qc_file_pread_zero(&img->file, img->zin, csize, coff);
	if (r < 0)
		return qc_err(img, r, "reading compressed data at 0x%llx failed",
			    (unsigned long long)coff);
	r = qcow_decompress(img->h.compression_type, img->zin, csize, img->zbuf,
			    img->cluster_size);
	if (r < 0) {
		img->zbuf_entry = 0;
		return qc_err(img, -EIO, "compressed cluster at 0x%llx is damaged",
			    (unsigned long long)coff);
	}
	img->zbuf_entry = e;
	return 0;
}

/* --- busy guest clusters --- */

static bool busy_has(const struct qcow_image *img, uint64_t gc)
{
	for (unsigned i = 0; i < img->nbusy; i++)
		if (img->busy[i] == gc)
			return true;
	return false;
}

static void busy_wait(struct qcow_image *img, uint64_t gc)
{
	while (busy_has(img, gc))
		pthread_cond_wait(&img->io_done, &img->lock);
}

static int busy_add(struct qcow_image *img, uint64_t gc)
{
	if (img->nbusy == img->busy_cap) {
		unsigned ncap = img->busy_cap ? img->busy_cap * 2 : 16;
		uint64_t *nb = realloc(img->busy, ncap * sizeof(uint64_t));

		if (!nb)
			return -ENOMEM;
		img->busy = nb;
		img->busy_cap = ncap;
	}
	img->busy[img->nbusy++] = gc;
	return 0;
}

static void busy_del(struct qcow_image *img, uint64_t gc)
{
	for (unsigned i = 0; i < img->nbusy; i++)
		if (img->busy[i] == gc) {
			img->busy[i] = img->busy[--img->nbusy];
			break;
		}
}

/* --- reads --- */

int qc_backing_read(struct qcow_image *img, void *buf, size_t len, uint64_t off)
{
	struct backing *b = img->backing;
	size_t avail = 0;

	if (b && off < b->size)
		avail = b->size - off < len ? (size_t)(b->size - off) : len;
	if (avail) {
		int r;

		if (b->is_raw) {
			r = qc_file_pread_zero(&b->raw, buf, avail, off);
		} else {
			struct iovec iov = { buf, avail };

			pthread_mutex_lock(&b->qcow->lock);
			r = qc_read_guest(b->qcow, &iov, 1, off, avail, true);
			pthread_mutex_unlock(&b->qcow->lock);
		}
		if (r < 0)
			return qc_err(img, r, "reading the backing file failed: %s",
				    b->is_raw ? "I/O error" : b->qcow->errmsg);
	}
	memset((uint8_t *)buf + avail, 0, len - avail);
	return 0;
}

static int backing_readv(struct qcow_image *img, const struct iovec *iov, int n,
			 uint64_t off)
{
	uint64_t pos = off;

	for (int i = 0; i < n; i++) {
		int r = qc_backing_read(img, iov[i].iov_base, iov[i].iov_len, pos);

		if (r < 0)
			return r;
		pos += iov[i].iov_len;
	}
	return 0;
}

/* Called and returns with img->lock held. */
int qc_read_guest(struct qcow_image *img, const struct iovec *iov, int n, uint64_t off,
	       size_t len, bool unlock_io)
{
	struct iovec sub[SUB_IOV_MAX];
	size_t done = 0;
	int r;

	while (done < len) {
		uint64_t pos = off + done;
		uint64_t gc = pos >> img->h.cluster_bits;
		uint64_t in = pos & img->cluster_mask;
		size_t chunk = img->cluster_size - in;
		uint64_t e, bm;

		if (chunk > len - done)
			chunk = len - done;
		if (img->nbusy)
			busy_wait(img, gc);
		r = entry_get(img, gc, &e, &bm);
		if (r < 0)
			return r;
		enum ctype t = classify(img, e);
		uint64_t host = (e & L2E_OFFSET_MASK) + in;

		if ((t == C_NORMAL || t == C_ZERO_ALLOC) && (e & L2E_OFFSET_MASK & img->cluster_mask))
			return qc_err(img, -EIO, "L2 entry 0x%llx for guest offset %llu is not cluster aligned; image corrupted",
				    (unsigned long long)e, (unsigned long long)pos);

		if (img->extl2 && t != C_COMPRESSED) {
			uint32_t sc = (uint32_t)(in / img->subcluster_size);
			uint64_t sce = (uint64_t)(sc + 1) * img->subcluster_size - in;

			if (chunk > sce)
				chunk = (size_t)sce;
			if (bm & (1ull << sc))
				t = C_NORMAL;
			else if (bm & (1ull << (32 + sc)))
				t = C_ZERO_PLAIN;
			else
				t = C_UNALLOC;
			if (t == C_NORMAL && !(e & L2E_OFFSET_MASK) && !img->has_data_file)
				return qc_err(img, -EIO, "subcluster allocated without a host cluster");
		}
		int k = iov_sub(iov, n, done, chunk, sub, SUB_IOV_MAX);

		if (k < 0)
			return qc_err(img, k, "too many I/O vectors");
		switch (t) {
		case C_UNALLOC:
			r = backing_readv(img, sub, k, pos);
			break;
		case C_ZERO_PLAIN:
		case C_ZERO_ALLOC:
			iov_zero(sub, k);
			r = 0;
			break;
		case C_COMPRESSED:
			r = read_compressed(img, e);
			if (r == 0)
				iov_from_buf(sub, k, img->zbuf + in);
			break;
		case C_NORMAL: {
			struct qfile *f = img->has_data_file ? &img->data : &img->file;

			if (unlock_io) {
				qc_io_begin(img);
				pthread_mutex_unlock(&img->lock);
			}
			r = qc_file_preadv_zero(f, sub, k, host);
			if (unlock_io) {
				pthread_mutex_lock(&img->lock);
				qc_io_end(img);
			}
			if (r < 0)
				r = qc_err(img, r, "reading data at 0x%llx failed",
					 (unsigned long long)host);
			break;
		}
		}
		if (r < 0)
			return r;
		done += chunk;
	}
	return 0;
}

/* --- writes --- */

/* Write guest data with the lock dropped; meta_flush waits for it. */
static int write_unlocked(struct qcow_image *img, const struct iovec *v, int n, uint64_t off)
{
	int r;

	qc_io_begin(img);
	pthread_mutex_unlock(&img->lock);
	r = qc_file_pwritev_data(&img->file, v, n, off);
	pthread_mutex_lock(&img->lock);
	qc_io_end(img);
	return r;
}

/* Fill buf (a cluster) with what guest cluster gc reads as now. */
static int old_content(struct qcow_image *img, uint64_t gc, uint64_t e, uint8_t *buf)
{
	struct iovec iov = { buf, img->cluster_size };
	uint64_t start = gc << img->h.cluster_bits;
	size_t len = img->cluster_size;

	(void)e;
	if (start + len > img->h.size)
		len = (size_t)(img->h.size - start);
	memset(buf, 0, img->cluster_size);
	iov.iov_len = len;
	return qc_read_guest(img, &iov, 1, start, len, false);
}

/* Whether guest cluster gc reads as zeros without looking at data. */
static bool reads_zero(const struct qcow_image *img, enum ctype t, uint64_t gc)
{
	if (t == C_ZERO_PLAIN || t == C_ZERO_ALLOC)
		return true;
	if (t != C_UNALLOC)
		return false;
	return !img->backing || (gc << img->h.cluster_bits) >= img->backing->size;
}

/* Queue the release of whatever host clusters entry e holds. */
static int release_entry(struct qcow_image *img, uint64_t e)
{
	enum ctype t = classify(img, e);

	if (t == C_COMPRESSED) {
		uint64_t first, count, coff, csize;

		qc_compressed_clusters(img, e, &first, &count, &coff, &csize);
		for (uint64_t i = 0; i < count; i++) {
			int r = qc_free_later(img, (first + i) * img->cluster_size, 1, true);

			if (r < 0)
				return r;
		}
		return 0;
	}
	if ((t == C_NORMAL || t == C_ZERO_ALLOC) && (e & L2E_OFFSET_MASK) && !img->has_data_file)
		return qc_free_later(img, e & L2E_OFFSET_MASK, 1, true);
	return 0;
}

static int set_entry(struct qcow_image *img, uint64_t gc, uint64_t ne)
{
	struct mcache_ent *s;
	uint32_t idx;
	int r = l2_prepare(img, gc, &s, &idx);

	if (r < 0)
		return r;
	uint64_t old = qc_l2_get(img, s->buf, idx, NULL);

	if (old == ne)
		return 0;
	qc_l2_set(img, s->buf, idx, ne, 0);
	s->dirty = true;
	img->l2_dirty = true;
	if (img->zbuf_entry == old)
		img->zbuf_entry = 0;
	/* A preallocated zero cluster that now holds data stays. */
	if (!(old & OFLAG_COMPRESSED) && (old & L2E_OFFSET_MASK) &&
	    (old & L2E_OFFSET_MASK) == (ne & L2E_OFFSET_MASK))
		return 0;
	return release_entry(img, old);
}

/* Write one chunk inside guest cluster gc. Lock held. */
static int write_chunk(struct qcow_image *img, uint64_t gc, uint64_t in,
		       const struct iovec *sub, int k, size_t chunk)
{
	uint64_t cs = img->cluster_size;
	struct mcache_ent *s;
	uint32_t idx;
	int r;

	r = l2_prepare(img, gc, &s, &idx);
	if (r < 0)
		return r;
	uint64_t e = qc_l2_get(img, s->buf, idx, NULL);
	enum ctype t = classify(img, e);
	uint64_t host = e & L2E_OFFSET_MASK;

	if ((t == C_NORMAL || t == C_ZERO_ALLOC) && (host & img->cluster_mask))
		return qc_mark_corrupt(img, "a misaligned L2 entry", host);

	if (t == C_NORMAL && (e & OFLAG_COPIED)) {
		/* In place. */
		r = qc_check_overlap(img, host + in, chunk);
		if (r < 0)
			return r;
		r = busy_add(img, gc);
		if (r < 0)
			return qc_err(img, r, "out of memory");
		r = write_unlocked(img, sub, k, host + in);
		busy_del(img, gc);
		pthread_cond_broadcast(&img->io_done);
		if (r < 0)
			return qc_err(img, r, "writing data at 0x%llx failed",
				    (unsigned long long)(host + in));
		return 0;
	}

	bool reuse = t == C_ZERO_ALLOC && (e & OFLAG_COPIED);
	bool whole = in == 0 && chunk == cs;
	bool zero_old = reads_zero(img, t, gc);
	uint64_t nhost;
	bool fresh;

	if (reuse) {
		nhost = host;
		fresh = false;
	} else {
		uint64_t end_before = img->file_end;

		r = qc_alloc_clusters(img, 1, &nhost);
		if (r < 0)
			return r;
		fresh = nhost >= end_before;
	}
	r = qc_check_overlap(img, nhost, cs);
	if (r < 0)
		return r;

	struct iovec v[SUB_IOV_MAX + 2];
	int nv = 0;
	uint64_t wstart = nhost + in;
	size_t head = (size_t)in, tail = (size_t)(cs - in - chunk);

	if (!whole && !zero_old) {
		r = old_content(img, gc, e, img->cow_head);
		if (r < 0)
			goto out_unclaim;
		if (k + 2 > SUB_IOV_MAX) {
			/* No room to merge: the old bytes go first, alone. */
			memset(img->cow_head + in, 0, chunk);
			r = qc_file_pwrite(&img->file, img->cow_head, cs, nhost);
			if (r == 0)
				r = qc_file_pwritev_data(&img->file, sub, k, nhost + in);
		} else {
			if (head)
				v[nv++] = (struct iovec){ img->cow_head, head };
			memcpy(v + nv, sub, (size_t)k * sizeof(*sub));
			nv += k;
			if (tail)
				v[nv++] = (struct iovec){ img->cow_head + in + chunk, tail };
			r = qc_file_pwritev_data(&img->file, v, nv, nhost);
		}
		if (r < 0) {
			r = qc_err(img, r, "writing data at 0x%llx failed",
				 (unsigned long long)nhost);
			goto out_unclaim;
		}
	} else {
		/* Zeros around the data, unless the cluster is fresh. */
		if (!fresh && (head || tail) && k + 2 > SUB_IOV_MAX) {
			/* No room to merge: zero the cluster first. */
			r = qc_file_pwrite(&img->file, img->zero_cluster, cs, nhost);
			if (r < 0)
				goto out_unclaim;
			fresh = true;
		}
		if (!fresh && head) {
			v[nv++] = (struct iovec){ img->zero_cluster, head };
			wstart = nhost;
		}
		memcpy(v + nv, sub, (size_t)k * sizeof(*sub));
		nv += k;
		if (!fresh && tail)
			v[nv++] = (struct iovec){ img->zero_cluster, tail };
		r = busy_add(img, gc);
		if (r < 0)
			return qc_err(img, r, "out of memory");
		/* Publish in the cache now; meta_flush waits for this I/O
		 * before it writes any L2 table. */
		r = set_entry(img, gc, nhost | OFLAG_COPIED);
		if (r < 0) {
			busy_del(img, gc);
			return r;
		}
		r = write_unlocked(img, v, nv, wstart);
		busy_del(img, gc);
		pthread_cond_broadcast(&img->io_done);
		if (r < 0) {
			/* Never leave a pointer to a cluster whose data did not
			 * arrive: the failed range reads as zeros instead (its
			 * old content was already released). */
			int r2 = set_entry(img, gc, img->h.version >= 3 ? OFLAG_ZERO : 0);

			(void)r2;
			return qc_err(img, r, "writing data at 0x%llx failed",
				    (unsigned long long)wstart);
		}
		return 0;
	}
	return set_entry(img, gc, nhost | OFLAG_COPIED);

out_unclaim:
	/* The new cluster was never pointed to: give it back. */
	if (!reuse)
		qc_free_later(img, nhost, 1, true);
	return r;
}

static int zero_cluster_entry(struct qcow_image *img, uint64_t gc, bool discard, bool unmap);

/*
 * Whole guest clusters from gc on that each need a new host cluster: take
 * them in one allocation, so they lie side by side, and write them with one
 * request. *written is 0 when fewer than two qualify (the caller then goes
 * cluster by cluster). Lock held.
 */
#define RUN_MAX 256

static int write_run(struct qcow_image *img, uint64_t gc, const struct iovec *iov, int n,
		     size_t done, size_t avail, size_t *written)
{
	uint64_t cs = img->cluster_size, cnt = 0, host;
	struct iovec sub[SUB_IOV_MAX];
	int r, k;

	*written = 0;
	while ((cnt + 1) * cs <= avail && cnt < RUN_MAX) {
		uint64_t e, bm;

		if (img->nbusy && busy_has(img, gc + cnt))
			break;
		k = iov_sub(iov, n, done + cnt * cs, cs, sub, SUB_IOV_MAX);
		if (k < 0 || iov_is_zero(sub, k))
			break;
		r = entry_get(img, gc + cnt, &e, &bm);
		if (r < 0)
			return r;
		enum ctype t = classify(img, e);

		if ((t == C_NORMAL || t == C_ZERO_ALLOC) && (e & OFLAG_COPIED))
			break;	/* written in place */
		cnt++;
	}
	if (cnt < 2)
		return 0;
	k = iov_sub(iov, n, done, cnt * cs, sub, SUB_IOV_MAX);
	if (k < 0)
		return 0;
	r = qc_alloc_clusters(img, cnt, &host);
	if (r < 0)
		return r;
	r = qc_check_overlap(img, host, cnt * cs);
	if (r < 0)
		return r;
	for (uint64_t i = 0; i < cnt; i++) {
		r = busy_add(img, gc + i);
		if (r == 0)
			r = set_entry(img, gc + i, (host + i * cs) | OFLAG_COPIED);
		if (r < 0) {
			for (uint64_t j = 0; j <= i; j++)
				busy_del(img, gc + j);
			pthread_cond_broadcast(&img->io_done);
			return r;
		}
	}
	r = write_unlocked(img, sub, k, host);
	for (uint64_t i = 0; i < cnt; i++)
		busy_del(img, gc + i);
	pthread_cond_broadcast(&img->io_done);
	if (r < 0) {
		/* As in write_chunk: no pointer to data that did not arrive. */
		for (uint64_t i = 0; i < cnt; i++)
			set_entry(img, gc + i, img->h.version >= 3 ? OFLAG_ZERO : 0);
		return qc_err(img, r, "writing data at 0x%llx failed", (unsigned long long)host);
	}
	*written = cnt * cs;
	return 0;
}

/* Called and returns with img->lock held. */
int qc_write_guest(struct qcow_image *img, const struct iovec *iov, int n, uint64_t off,
		size_t len)
{
	struct iovec sub[SUB_IOV_MAX];
	size_t done = 0;
	int r;

	while (done < len) {
		uint64_t pos = off + done;
		uint64_t gc = pos >> img->h.cluster_bits;
		uint64_t in = pos & img->cluster_mask;
		size_t chunk = img->cluster_size - in;

		if (chunk > len - done)
			chunk = len - done;
		int k = iov_sub(iov, n, done, chunk, sub, SUB_IOV_MAX);

		if (k < 0)
			return qc_err(img, k, "too many I/O vectors");
		if (img->nbusy)
			busy_wait(img, gc);
		if (in == 0 && len - done >= 2 * (size_t)img->cluster_size) {
			size_t w;

			r = write_run(img, gc, iov, n, done, len - done, &w);
			if (r < 0)
				return r;
			if (w) {
				done += w;
				continue;
			}
		}
		if (iov_is_zero(sub, k)) {
			uint64_t e, bm;

			r = entry_get(img, gc, &e, &bm);
			if (r < 0)
				return r;
			enum ctype t = classify(img, e);

			if (reads_zero(img, t, gc)) {
				done += chunk;
				continue;	/* nothing changes */
			}
			if (chunk == img->cluster_size && img->h.version >= 3) {
				r = zero_cluster_entry(img, gc, false, true);
				if (r < 0)
					return r;
				done += chunk;
				continue;
			}
		}
		r = write_chunk(img, gc, in, sub, k, chunk);
		if (r < 0)
			return r;
		done += chunk;
	}
	return 0;
}

/*
 * Make whole guest cluster gc read as zeros (or, for discard, as whatever
 * discarded data reads as) and release its host cluster where allowed.
 */
static int zero_cluster_entry(struct qcow_image *img, uint64_t gc, bool discard, bool unmap)
{
	uint64_t e, bm;
	int r = entry_get(img, gc, &e, &bm);

	if (r < 0)
		return r;
	enum ctype t = classify(img, e);
	bool backing_shows = img->backing &&
			     (gc << img->h.cluster_bits) < img->backing->size;
	uint64_t ne;

	if (discard) {
		if (t == C_UNALLOC && !(backing_shows && img->h.version >= 3))
			return 0;
		ne = (backing_shows && img->h.version >= 3) ? OFLAG_ZERO : 0;
	} else {
		if (reads_zero(img, t, gc) && (!unmap || t != C_ZERO_ALLOC))
			return 0;
		if (img->h.version < 3) {
			if (!backing_shows)
				ne = 0;
			else {
				/* v2 cannot say "zero": write zeros. */
				struct iovec z = { img->zero_cluster, img->cluster_size };

				return write_chunk(img, gc, 0, &z, 1, img->cluster_size);
			}
		} else if (!unmap && (t == C_NORMAL || t == C_ZERO_ALLOC) &&
			   (e & OFLAG_COPIED)) {
			ne = e | OFLAG_ZERO;	/* keep the cluster */
			struct mcache_ent *s;
			uint32_t idx;

			r = l2_prepare(img, gc, &s, &idx);
			if (r < 0)
				return r;
			qc_l2_set(img, s->buf, idx, ne, 0);
			s->dirty = true;
			img->l2_dirty = true;
			return 0;
		} else {
			ne = OFLAG_ZERO;
		}
	}
	if (!ne && !(img->l1[gc >> img->l2_bits] & L1E_OFFSET_MASK))
		return 0;
	return set_entry(img, gc, ne);
}

/* Called and returns with img->lock held. */
int qc_zero_or_discard(struct qcow_image *img, uint64_t off, uint64_t len, bool discard,
		    bool unmap)
{
	uint64_t cs = img->cluster_size;
	uint64_t end = off + len;
	uint64_t a = align_up(off, cs), b = end & ~img->cluster_mask;
	int r;

	if (end == img->h.size)
		b = align_up(end, cs);	/* the last, partial cluster counts as whole */
	if (a >= b)
		a = b = end;	/* no whole cluster inside */
	if (!discard) {
		/* Partial clusters at the edges get zeros written. */
		uint64_t edge[2][2] = { { off, a }, { b, end } };

		for (int i = 0; i < 2; i++) {
			uint64_t s = edge[i][0];

			while (s < edge[i][1]) {
				size_t c = edge[i][1] - s > cs - (s & img->cluster_mask) ?
					   (size_t)(cs - (s & img->cluster_mask)) :
					   (size_t)(edge[i][1] - s);
				struct iovec z = { img->zero_cluster, c };

				r = qc_write_guest(img, &z, 1, s, c);
				if (r < 0)
					return r;
				s += c;
			}
		}
	}
	for (uint64_t gc = a / cs; gc < b / cs; gc++) {
		/* Skip whole missing L2 tables when nothing would change. */
		uint64_t l1i = gc >> img->l2_bits;

		if (!(img->l1[l1i] & L1E_OFFSET_MASK) &&
		    (!img->backing || (gc << img->h.cluster_bits) >= img->backing->size ||
		     (discard && img->h.version < 3))) {
			gc = ((l1i + 1) << img->l2_bits) - 1;
			continue;
		}
		r = zero_cluster_entry(img, gc, discard, unmap);
		if (r < 0)
			return r;
		if (img->nfrees > 65536) {
			r = qc_meta_flush(img);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

int qc_guest_entry(struct qcow_image *img, uint64_t gc, uint64_t *e, uint64_t *bitmap)
{
	return entry_get(img, gc, e, bitmap);
}

int qc_guest_set_entry(struct qcow_image *img, uint64_t gc, uint64_t e)
{
	return set_entry(img, gc, e);
}

/*
 * Complete a read at once when no I/O is needed: every cluster in range
 * reads as zeros. Returns 1 when done, 0 when I/O is needed, or -errno.
 * Lock held.
 */
int qc_read_without_io(struct qcow_image *img, void *buf, size_t len, uint64_t off)
{
	uint64_t end = off + len;

	for (uint64_t pos = off; pos < end;) {
		uint64_t gc = pos >> img->h.cluster_bits, e, bm;
		int r;

		if (img->nbusy && busy_has(img, gc))
			return 0;
		r = entry_get(img, gc, &e, &bm);
		if (r < 0)
			return r;
		if (img->extl2 || !reads_zero(img, classify(img, e), gc))
			return 0;
		pos = (gc + 1) << img->h.cluster_bits;
	}
	memset(buf, 0, len);
	return 1;
}
