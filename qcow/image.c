/* SPDX-License-Identifier: MIT */
/*
 * The image object: open (header, extensions, tables, snapshots, backing
 * chain, locks, dirty-bit repair), the ordered metadata flush, close, and
 * the public entry points that take the lock and call into cluster.c.
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

/* --- messages --- */

static void vfmt(char *buf, size_t len, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

static void vfmt(char *buf, size_t len, const char *fmt, va_list ap)
{
	vsnprintf(buf, len, fmt, ap);
}

int qc_err(struct qcow_image *img, int code, const char *fmt, ...)
{
	char msg[sizeof(img->errmsg)];
	va_list ap;

	va_start(ap, fmt);
	vfmt(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	memcpy(img->errmsg, msg, sizeof(msg));
	if (img->log.fn)
		img->log.fn(img->log.opaque, QCOW_LOG_DEBUG, msg);
	return code;
}

void qc_log(struct qcow_image *img, enum qcow_log_level lvl, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (!img->log.fn)
		return;
	va_start(ap, fmt);
	vfmt(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	img->log.fn(img->log.opaque, lvl, msg);
}

static int seterr(struct qcow_error *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int seterr(struct qcow_error *err, int code, const char *fmt, ...)
{
	if (err) {
		va_list ap;

		va_start(ap, fmt);
		vfmt(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
		err->code = code;
	}
	return code;
}

const char *qcow_image_errmsg(const struct qcow_image *img)
{
	return img ? img->errmsg : "";
}

/* --- data I/O outside the lock --- */

void qc_io_begin(struct qcow_image *img)
{
	img->inflight++;
}

void qc_io_end(struct qcow_image *img)
{
	if (--img->inflight == 0)
		pthread_cond_broadcast(&img->io_done);
}

void qc_wait_io_idle(struct qcow_image *img)
{
	while (img->inflight)
		pthread_cond_wait(&img->io_done, &img->lock);
}

/* --- header fields --- */

int qc_hdr_write_u64(struct qcow_image *img, unsigned off, uint64_t v)
{
	uint8_t b[8];

	store_be64(b, v);
	return qc_file_pwrite(&img->file, b, 8, off);
}

int qc_mark_corrupt(struct qcow_image *img, const char *what, uint64_t off)
{
	if (!img->corrupt && img->rw && img->h.version >= 3) {
		img->h.incompatible_features |= QCOW_INCOMPAT_CORRUPT;
		if (qc_hdr_write_u64(img, HDR_INCOMPAT_OFF, img->h.incompatible_features) == 0)
			qc_file_flush(&img->file);
	}
	img->corrupt = true;
	qc_log(img, QCOW_LOG_ERR,
	     "Marking image as corrupt: Preventing invalid write on metadata (overlaps with %s) at offset 0x%llx; further corruption events will be suppressed",
	     what, (unsigned long long)off);
	return qc_err(img, -EIO, "write at 0x%llx would overlap %s; image marked corrupt",
		    (unsigned long long)off, what);
}

/*
 * Write back metadata in crash-safe order:
 *   1. wait for data writes running outside the lock;
 *   2. raised refcounts, then a barrier (data and counts are durable);
 *   3. L2 tables, a barrier, the L1 table, a barrier;
 *   4. lowered counts of clusters no longer pointed to, a barrier.
 */
int qc_meta_flush(struct qcow_image *img)
{
	bool l1d = img->l1_dirty_lo < img->l1_dirty_hi;
	int r;

	if (!img->rw)
		return 0;
	if (img->failed)
		return qc_err(img, -EIO, "an earlier metadata write failed; reopen the image");
	qc_wait_io_idle(img);
	if (!img->rb_dirty && !img->l2_dirty && !l1d && !img->nfrees)
		return 0;
	if (img->rb_dirty && !img->lazy) {
		r = qc_rb_write_dirty(img);
		if (r < 0)
			return r;
	}
	if (img->l2_dirty || l1d) {
		r = qc_file_flush(&img->file);
		if (r < 0)
			return qc_err(img, r, "flush failed");
	}
	if (img->l2_dirty) {
		r = qc_l2_write_dirty(img);
		if (r < 0)
			return r;
	}
	if (l1d) {
		r = qc_file_flush(&img->file);
		if (r < 0)
			return qc_err(img, r, "flush failed");
		r = qc_l1_write_dirty(img);
		if (r < 0)
			return r;
	}
	r = qc_file_flush(&img->file);
	if (r < 0)
		return qc_err(img, r, "flush failed");
	if (img->nfrees) {
		r = qc_apply_frees(img);
		if (r < 0)
			return r;
		if (!img->lazy) {
			r = qc_rb_write_dirty(img);
			if (r < 0)
				return r;
			r = qc_file_flush(&img->file);
			if (r < 0)
				return qc_err(img, r, "flush failed");
		}
	}
	return 0;
}

/* --- open --- */

struct chain {
	dev_t dev[QCOW_MAX_CHAIN];
	ino_t ino[QCOW_MAX_CHAIN];
	int n;
};

static int image_open(struct qcow_image **out, const char *path,
		      const struct qcow_open_opts *o, struct qcow_error *err,
		      struct chain *ch);

static char *join_path(const char *dir, const char *name)
{
	if (name[0] == '/' || !dir || !*dir)
		return strdup(name);
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);

	if (p)
		snprintf(p, n, "%s/%s", dir, name);
	return p;
}

static int parse_extensions(struct qcow_image *img, const uint8_t *c0, size_t len,
			    char *why, size_t whylen)
{
	size_t pos = img->h.header_length;
	size_t limit = len;
	unsigned seen = 0;

	if (img->h.backing_file_offset && img->h.backing_file_offset < limit)
		limit = (size_t)img->h.backing_file_offset;
	while (pos + 8 <= limit) {
		uint32_t type = load_be32(c0 + pos), elen = load_be32(c0 + pos + 4);
		const uint8_t *d = c0 + pos + 8;

		if (type == QCOW_EXT_END)
			return 0;
		if (++seen > QCOW_MAX_HEADER_EXT || elen > limit - pos - 8) {
			snprintf(why, whylen, "header extension 0x%x is truncated", type);
			return -EINVAL;
		}
		switch (type) {
		case QCOW_EXT_BACKING_FMT:
			free(img->backing_fmt);
			img->backing_fmt = strndup((const char *)d, elen > 63 ? 63 : elen);
			break;
		case QCOW_EXT_DATA_FILE:
			free(img->data_file_name);
			img->data_file_name = strndup((const char *)d, elen > 4095 ? 4095 : elen);
			break;
		case QCOW_EXT_BITMAPS:
			if (elen >= 24 && (img->h.autoclear_features & QCOW_AUTOCLEAR_BITMAPS)) {
				img->nb_bitmaps = load_be32(d);
				img->bitmap_dir_size = load_be64(d + 8);
				img->bitmap_dir_offset = load_be64(d + 16);
			}
			break;
		default:
			break;	/* kept on disk untouched */
		}
		pos += 8 + align_up(elen, 8);
	}
	return 0;
}

static int load_table(struct qfile *f, uint64_t off, uint64_t n, uint64_t **out)
{
	uint64_t *t = calloc(n ? n : 1, sizeof(uint64_t));
	int r;

	if (!t)
		return -ENOMEM;
	if (n) {
		r = qc_file_pread(f, t, n * 8, off);
		if (r < 0) {
			free(t);
			return r;
		}
		for (uint64_t i = 0; i < n; i++)
			t[i] = load_be64(&t[i]);
	}
	*out = t;
	return 0;
}

static int load_snapshots(struct qcow_image *img, char *why, size_t whylen)
{
	uint32_t n = img->h.nb_snapshots;
	uint64_t pos = img->h.snapshots_offset;
	int64_t fsize = qc_file_size(&img->file);

	if (!n)
		return 0;
	img->snaps = calloc(n, sizeof(*img->snaps));
	if (!img->snaps)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		uint8_t f[40], extra[24];
		struct qcow_snapshot *s = &img->snaps[i];
		int r;

		if (pos > (uint64_t)fsize || (uint64_t)fsize - pos < 40) {
			snprintf(why, whylen, "snapshot table is truncated");
			return -EINVAL;
		}
		r = qc_file_pread(&img->file, f, 40, pos);
		if (r < 0)
			return r;
		s->l1_offset = load_be64(f);
		s->l1_size = load_be32(f + 8);
		uint16_t id_len = load_be16(f + 12), name_len = load_be16(f + 14);
		uint32_t extra_len = load_be32(f + 36);

		s->info.date_sec = load_be32(f + 16);
		s->info.date_nsec = load_be32(f + 20);
		s->info.vm_clock_nsec = load_be64(f + 24);
		s->info.vm_state_size = load_be32(f + 32);
		s->info.icount = UINT64_MAX;
		if (extra_len > 1024) {
			snprintf(why, whylen, "snapshot %u has %u bytes of extra data", i, extra_len);
			return -EINVAL;
		}
		memset(extra, 0, sizeof(extra));
		if (extra_len) {
			r = qc_file_pread(&img->file, extra, extra_len < 24 ? extra_len : 24, pos + 40);
			if (r < 0) {
				snprintf(why, whylen, "snapshot table is truncated");
				return -EINVAL;
			}
			if (extra_len >= 8)
				s->info.vm_state_size = load_be64(extra);
			if (extra_len >= 16)
				s->info.virtual_size = load_be64(extra + 8);
			if (extra_len >= 24)
				s->info.icount = load_be64(extra + 16);
		}
		uint64_t idpos = pos + 40 + extra_len;
		char buf[65536 * 2];

		if ((uint64_t)id_len + name_len > sizeof(buf) ||
		    qc_file_pread(&img->file, buf, (size_t)id_len + name_len, idpos) < 0) {
			snprintf(why, whylen, "snapshot table is truncated");
			return -EINVAL;
		}
		snprintf(s->info.id, sizeof(s->info.id), "%.*s", id_len, buf);
		snprintf(s->info.name, sizeof(s->info.name), "%.*s", name_len, buf + id_len);
		if ((uint64_t)s->l1_size * 8 > QCOW_MAX_L1_BYTES ||
		    s->l1_offset & img->cluster_mask) {
			snprintf(why, whylen, "snapshot %u has an invalid L1 table", i);
			return -EINVAL;
		}
		pos = align_up(idpos + id_len + name_len, 8);
	}
	img->snap_table_size = pos - img->h.snapshots_offset;
	return 0;
}

/* Record the clusters holding metadata, so data never lands on them. */
static void build_meta_set(struct qcow_image *img)
{
	uint64_t cs = img->cluster_size;

	for (uint32_t i = 0; i < img->h.l1_size; i++) {
		uint64_t o = img->l1[i] & L1E_OFFSET_MASK;

		if (o)
			qc_meta_set_add(img, o / cs);
	}
	for (uint64_t i = 0; i < img->reftable_entries; i++) {
		uint64_t o = img->reftable[i] & REFT_OFFSET_MASK;

		if (o)
			qc_meta_set_add(img, o / cs);
	}
	if (img->h.nb_snapshots) {
		for (uint64_t k = 0; k < div_round_up(img->snap_table_size, cs); k++)
			qc_meta_set_add(img, img->h.snapshots_offset / cs + k);
		for (uint32_t i = 0; i < img->h.nb_snapshots; i++) {
			struct qcow_snapshot *s = &img->snaps[i];
			uint64_t n = div_round_up((uint64_t)s->l1_size * 8, cs);

			for (uint64_t k = 0; k < n; k++)
				qc_meta_set_add(img, s->l1_offset / cs + k);
		}
	}
	if (img->nb_bitmaps && img->bitmap_dir_offset)
		qc_meta_set_add(img, img->bitmap_dir_offset / cs);
}

static int open_backing(struct qcow_image *img, const struct qcow_open_opts *o,
			struct chain *ch, char *why, size_t whylen)
{
	char *path = join_path(img->dir, img->backing_name);
	struct backing *b;
	uint8_t magic[4] = { 0 };
	int r;

	if (!path)
		return -ENOMEM;
	b = calloc(1, sizeof(*b));
	if (!b) {
		free(path);
		return -ENOMEM;
	}
	b->raw.fd = b->raw.dfd = b->raw.lock_fd = -1;
	r = qc_file_open_posix(&b->raw, path, false, false);
	if (r < 0) {
		snprintf(why, whylen, "could not open backing file '%s': %s", path, strerror(-r));
		goto out_free;
	}
	bool is_qcow;

	if (img->backing_fmt && strcmp(img->backing_fmt, "raw") == 0)
		is_qcow = false;
	else if (img->backing_fmt && strcmp(img->backing_fmt, "qcow2") == 0)
		is_qcow = true;
	else if (img->backing_fmt) {
		r = -ENOTSUP;
		snprintf(why, whylen, "backing file format '%s' is not supported", img->backing_fmt);
		goto out_close;
	} else {
		qc_file_pread_zero(&b->raw, magic, 4, 0);
		is_qcow = load_be32(magic) == QCOW_MAGIC;
	}
	if (is_qcow) {
		struct qcow_open_opts bo = { 0 };
		struct qcow_error berr = { 0 };

		qc_file_close(&b->raw);
		bo.force_share = true;
		bo.log = o->log;
		bo.direct = o->direct;
		r = image_open(&b->qcow, path, &bo, &berr, ch);
		if (r < 0) {
			snprintf(why, whylen, "backing file '%.200s': %.280s", path, berr.msg);
			goto out_free;
		}
		b->size = b->qcow->h.size;
	} else {
		int64_t sz = qc_file_size(&b->raw);
		struct stat st;

		if (sz < 0) {
			r = (int)sz;
			goto out_close;
		}
		if (fstat(b->raw.fd, &st) == 0) {
			for (int i = 0; i < ch->n; i++)
				if (ch->dev[i] == st.st_dev && ch->ino[i] == st.st_ino) {
					r = -ELOOP;
					snprintf(why, whylen, "backing chain loops at '%s'", path);
					goto out_close;
				}
		}
		b->is_raw = true;
		b->size = (uint64_t)sz;
	}
	img->backing = b;
	free(path);
	return 0;

out_close:
	qc_file_close(&b->raw);
out_free:
	free(b);
	free(path);
	return r;
}

static void backing_free(struct backing *b)
{
	if (!b)
		return;
	if (b->is_raw)
		qc_file_close(&b->raw);
	else
		qcow_image_close(b->qcow);
	free(b);
}

static void image_free(struct qcow_image *img)
{
	if (!img)
		return;
	backing_free(img->backing);
	if (img->has_data_file)
		qc_file_close(&img->data);
	if (!img->caller_io)
		qc_file_close(&img->file);
	qc_mcache_release(&img->l2c);
	qc_mcache_release(&img->rbc);
	free(img->l1);
	free(img->reftable);
	free(img->frees);
	free(img->busy);
	free(img->zbuf);
	free(img->zin);
	free(img->snaps);
	free(img->meta_set);
	free(img->cow_head);
	free(img->cow_tail);
	free(img->zero_cluster);
	free(img->backing_name);
	free(img->backing_fmt);
	free(img->data_file_name);
	free(img->path);
	free(img->dir);
	pthread_mutex_destroy(&img->lock);
	pthread_cond_destroy(&img->io_done);
	free(img);
}

static unsigned l2_cache_cap(const struct qcow_image *img, uint64_t bytes)
{
	uint64_t cover = img->h.size > (256ull << 30) ? img->h.size : (256ull << 30);
	uint64_t per_slice = (uint64_t)img->slice_entries * img->cluster_size;
	uint64_t n = div_round_up(cover, per_slice);
	uint64_t max = (64ull << 20) / img->slice_size;	/* 64 MiB at most by default */

	if (bytes)
		n = bytes / img->slice_size;
	else if (n > max)
		n = max;
	if (n < 16)
		n = 16;
	if (n > (1u << 24))
		n = 1u << 24;
	return (unsigned)n;
}

/* Rebuild refcounts of an image whose dirty bit was found set. */
static int repair_dirty(struct qcow_image *img)
{
	uint32_t *refs = NULL;
	uint64_t n = 0;
	int r = qc_compute_refs(img, &refs, &n, false, NULL, false);

	if (r < 0)
		return r;
	r = qc_rc_rebuild(img, refs, n);
	free(refs);
	return r;
}

static int image_open(struct qcow_image **out, const char *path,
		      const struct qcow_open_opts *o, struct qcow_error *err,
		      struct chain *ch)
{
	struct qcow_image *img;
	char why[512] = "";
	uint8_t *c0 = NULL;
	int64_t fsize;
	int r;

	*out = NULL;
	if (ch->n >= QCOW_MAX_CHAIN)
		return seterr(err, -ELOOP, "backing chain is longer than %d images", QCOW_MAX_CHAIN);
	img = calloc(1, sizeof(*img));
	if (!img)
		return seterr(err, -ENOMEM, "out of memory");
	pthread_mutex_init(&img->lock, NULL);
	pthread_cond_init(&img->io_done, NULL);
	img->log = o->log;
	img->rw = o->read_write && !o->force_share;
	img->direct = o->direct;
	img->l1_dirty_lo = UINT32_MAX;
	img->file.fd = img->file.dfd = img->file.lock_fd = -1;
	img->data.fd = img->data.dfd = img->data.lock_fd = -1;
	img->path = strdup(path ? path : "");
	if (path) {
		char *tmp = strdup(path);

		img->dir = tmp ? strdup(dirname(tmp)) : NULL;
		free(tmp);
	}
	if (!img->path) {
		r = seterr(err, -ENOMEM, "out of memory");
		goto out_free;
	}
	if (o->io) {
		img->caller_io = true;
		img->file.ops = o->io;
		img->file.opaque = o->io_opaque;
	} else {
		r = qc_file_open_posix(&img->file, path, img->rw, o->direct);
		if (r < 0) {
			seterr(err, r, "Could not open '%s': %s", path, strerror(-r));
			goto out_free;
		}
		struct stat st;

		if (fstat(img->file.fd, &st) == 0) {
			for (int i = 0; i < ch->n; i++)
				if (ch->dev[i] == st.st_dev && ch->ino[i] == st.st_ino) {
					r = seterr(err, -ELOOP, "backing chain loops at '%s'", path);
					goto out_free;
				}
			ch->dev[ch->n] = st.st_dev;
			ch->ino[ch->n] = st.st_ino;
			ch->n++;
		}
	}

	img->file.failed = &img->failed;
	fsize = qc_file_size(&img->file);
	if (fsize < 0) {
		r = seterr(err, (int)fsize, "cannot get the size of '%s'", path);
		goto out_free;
	}
	/* Header: the first 4 KiB tell the cluster size; then cluster 0. */
	{
		uint8_t first[4096];

		r = qc_file_pread_zero(&img->file, first, sizeof(first), 0);
		if (r < 0) {
			seterr(err, r, "cannot read '%s': %s", path, strerror(-r));
			goto out_free;
		}
		r = qc_header_parse(first, fsize < 4096 ? (size_t)fsize : 4096, (uint64_t)fsize,
				 &img->h, why, sizeof(why));
		if (r < 0 && !(r == -EINVAL && strstr(why, "header length"))) {
			seterr(err, r, "'%s': %s", path, why);
			goto out_free;
		}
	}
	img->cluster_size = 1u << img->h.cluster_bits;
	if (posix_memalign((void **)&c0, 4096, img->cluster_size)) {
		r = seterr(err, -ENOMEM, "out of memory");
		goto out_free;
	}
	r = qc_file_pread_zero(&img->file, c0, img->cluster_size, 0);
	if (r < 0) {
		seterr(err, r, "cannot read '%s': %s", path, strerror(-r));
		goto out_free;
	}
	r = qc_header_parse(c0, (uint64_t)fsize < img->cluster_size ? (size_t)fsize : img->cluster_size,
			 (uint64_t)fsize, &img->h, why, sizeof(why));
	if (r < 0) {
		seterr(err, r, "'%s': %s", path, why);
		goto out_free;
	}

	/* Derived geometry. */
	img->cluster_mask = img->cluster_size - 1;
	img->extl2 = !!(img->h.incompatible_features & QCOW_INCOMPAT_EXTL2);
	img->l2_entry_size = img->extl2 ? 16 : 8;
	img->l2_entries = img->cluster_size / img->l2_entry_size;
	img->l2_bits = (unsigned)__builtin_ctz(img->l2_entries);
	img->slice_size = img->cluster_size < 4096 ? img->cluster_size : 4096;
	img->slice_entries = img->slice_size / img->l2_entry_size;
	img->refcount_bits = 1u << img->h.refcount_order;
	img->refcount_max = img->refcount_bits == 64 ? UINT64_MAX :
			    (1ull << img->refcount_bits) - 1;
	img->rb_entries = (uint32_t)((uint64_t)img->cluster_size * 8 / img->refcount_bits);
	img->subcluster_size = img->cluster_size / 32;
	img->was_dirty = !!(img->h.incompatible_features & QCOW_INCOMPAT_DIRTY);
	img->corrupt = !!(img->h.incompatible_features & QCOW_INCOMPAT_CORRUPT);
	img->file_end = align_up((uint64_t)fsize, img->cluster_size);

	r = parse_extensions(img, c0, img->cluster_size, why, sizeof(why));
	if (r < 0) {
		seterr(err, r, "'%s': %s", path, why);
		goto out_free;
	}
	if (img->h.backing_file_offset) {
		img->backing_name = strndup((const char *)c0 + img->h.backing_file_offset,
					    img->h.backing_file_size);
		if (!img->backing_name || strlen(img->backing_name) != img->h.backing_file_size) {
			r = seterr(err, -EINVAL, "'%s': backing file name is not valid", path);
			goto out_free;
		}
	}
	if (img->h.incompatible_features & QCOW_INCOMPAT_DATA_FILE) {
		if (!img->data_file_name) {
			r = seterr(err, -EINVAL, "'%s': external data file bit set but no data file named", path);
			goto out_free;
		}
		img->has_data_file = true;
	} else if (img->data_file_name) {
		free(img->data_file_name);
		img->data_file_name = NULL;
	}

	/* Refuse what we cannot write before taking locks for writing. */
	if (img->rw) {
		if (img->extl2) {
			r = seterr(err, -EROFS, "'%s' uses extended L2 entries (subclusters), which are supported read-only", path);
			goto out_free;
		}
		if (img->has_data_file) {
			r = seterr(err, -EROFS, "'%s' has an external data file, which is supported read-only", path);
			goto out_free;
		}
	}
	if (!o->force_share) {
		r = qc_file_lock(&img->file, img->rw, why, sizeof(why));
		if (r < 0) {
			seterr(err, r, "'%s': %s", path, why);
			goto out_free;
		}
	}

	r = load_table(&img->file, img->h.l1_table_offset, img->h.l1_size, &img->l1);
	if (r < 0) {
		seterr(err, r, "'%s': cannot read the L1 table", path);
		goto out_free;
	}
	img->reftable_entries = (uint64_t)img->h.refcount_table_clusters * img->cluster_size / 8;
	r = load_table(&img->file, img->h.refcount_table_offset, img->reftable_entries,
		       &img->reftable);
	if (r < 0) {
		seterr(err, r, "'%s': cannot read the refcount table", path);
		goto out_free;
	}
	r = load_snapshots(img, why, sizeof(why));
	if (r < 0) {
		seterr(err, r, "'%s': %s", path, why[0] ? why : strerror(-r));
		goto out_free;
	}
	r = qc_mcache_init(&img->l2c, img->slice_size, l2_cache_cap(img, o->l2_cache_bytes));
	if (r == 0) {
		uint64_t rbcap = (32ull << 20) / img->cluster_size;

		r = qc_mcache_init(&img->rbc, img->cluster_size,
				(unsigned)(rbcap < 16 ? 16 : rbcap > 1024 ? 1024 : rbcap));
	}
	if (r == 0 && (posix_memalign((void **)&img->cow_head, 4096, img->cluster_size) ||
		       posix_memalign((void **)&img->cow_tail, 4096, img->cluster_size) ||
		       posix_memalign((void **)&img->zero_cluster, 4096, img->cluster_size) ||
		       !(img->zbuf = malloc(img->cluster_size)) ||
		       !(img->zin = malloc(2 * (size_t)img->cluster_size + 512))))
		r = -ENOMEM;
	if (r < 0) {
		seterr(err, r, "out of memory");
		goto out_free;
	}
	memset(img->zero_cluster, 0, img->cluster_size);
	build_meta_set(img);

	if (img->backing_name && !o->no_backing) {
		r = open_backing(img, o, ch, why, sizeof(why));
		if (r < 0) {
			seterr(err, r, "'%s': %s", path, why);
			goto out_free;
		}
	}
	if (img->has_data_file) {
		char *dp = join_path(img->dir, img->data_file_name);

		r = dp ? qc_file_open_posix(&img->data, dp, false, o->direct) : -ENOMEM;
		if (r < 0) {
			seterr(err, r, "'%s': could not open data file '%s': %s", path,
			       img->data_file_name, strerror(-r));
			free(dp);
			goto out_free;
		}
		free(dp);
	}

	if (img->rw) {
		if (img->nb_bitmaps) {
			/* Writes would make them stale: drop them cleanly. */
			r = qc_bitmaps_drop(img, c0);
			if (r < 0) {
				seterr(err, r, "'%s': %s", path, img->errmsg);
				goto out_free;
			}
		}
		if (img->h.autoclear_features) {
			/* We keep none of the autoclear promises. */
			img->h.autoclear_features = 0;
			r = qc_hdr_write_u64(img, HDR_AUTOCLEAR_OFF, 0);
			if (r == 0)
				r = qc_file_flush(&img->file);
			if (r < 0) {
				seterr(err, r, "'%s': cannot update the header", path);
				goto out_free;
			}
		}
		if (img->was_dirty) {
			qc_log(img, QCOW_LOG_INFO, "%s: image was not closed cleanly; rebuilding refcounts", path);
			r = repair_dirty(img);
			if (r < 0) {
				seterr(err, r, "'%s': repairing the dirty image failed: %s", path, img->errmsg);
				goto out_free;
			}
		}
		img->lazy = img->h.version >= 3 &&
			    (img->h.compatible_features & QCOW_COMPAT_LAZY);
		uint64_t inc = img->h.incompatible_features & ~QCOW_INCOMPAT_DIRTY;

		if (img->lazy)
			inc |= QCOW_INCOMPAT_DIRTY;
		if (inc != img->h.incompatible_features) {
			img->h.incompatible_features = inc;
			r = qc_hdr_write_u64(img, HDR_INCOMPAT_OFF, inc);
			if (r == 0)
				r = qc_file_flush(&img->file);
			if (r < 0) {
				seterr(err, r, "'%s': cannot update the header", path);
				goto out_free;
			}
		}
	}
	if (img->rw && img->corrupt)
		qc_log(img, QCOW_LOG_WARN, "%s is marked corrupt: writes are refused until a check with repair clears it", path);
	img->free_hint = 1;
	free(c0);
	*out = img;
	return 0;

out_free:
	free(c0);
	image_free(img);
	return r < 0 ? r : -EIO;
}

int qcow_image_open(struct qcow_image **out, const char *path,
		    const struct qcow_open_opts *opts, struct qcow_error *err)
{
	struct qcow_open_opts none = { 0 };
	struct chain ch = { .n = 0 };

	if (err) {
		err->code = 0;
		err->msg[0] = 0;
	}
	if (!out)
		return seterr(err, -EINVAL, "no place for the image");
	if (!path && !(opts && opts->io))
		return seterr(err, -EINVAL, "no path and no I/O backend");
	return image_open(out, path, opts ? opts : &none, err, &ch);
}

int qcow_image_close(struct qcow_image *img)
{
	int r = 0;

	if (!img)
		return 0;
	pthread_mutex_lock(&img->lock);
	if (img->failed)
		r = -EIO;
	if (img->rw && !img->corrupt && !img->failed) {
		r = qc_meta_flush(img);
		if (r == 0 && img->lazy) {
			r = qc_rb_write_dirty(img);
			if (r == 0)
				r = qc_file_flush(&img->file);
			if (r == 0) {
				img->h.incompatible_features &= ~QCOW_INCOMPAT_DIRTY;
				r = qc_hdr_write_u64(img, HDR_INCOMPAT_OFF,
						  img->h.incompatible_features);
			}
		}
		if (r == 0)
			r = qc_file_flush(&img->file);
	}
	pthread_mutex_unlock(&img->lock);
	image_free(img);
	return r;
}

/* --- guest I/O --- */

static int io_check(struct qcow_image *img, uint64_t off, uint64_t len, bool write)
{
	if (write && !img->rw)
		return qc_err(img, -EBADF, "image is open read-only");
	if (write && img->corrupt)
		return qc_err(img, -EIO, "image is marked corrupt");
	if (write && img->failed)
		return qc_err(img, -EIO, "an earlier metadata write failed; reopen the image to go on writing");
	if (off > img->h.size || len > img->h.size - off)
		return qc_err(img, -EINVAL, "request at %llu+%llu is beyond the disk size %llu",
			    (unsigned long long)off, (unsigned long long)len,
			    (unsigned long long)img->h.size);
	return 0;
}

static size_t iov_total(const struct iovec *iov, int n)
{
	size_t t = 0;

	for (int i = 0; i < n; i++)
		t += iov[i].iov_len;
	return t;
}

ssize_t qcow_image_preadv(struct qcow_image *img, const struct iovec *iov, int n,
			  uint64_t off)
{
	size_t len = iov_total(iov, n);
	int r;

	pthread_mutex_lock(&img->lock);
	r = io_check(img, off, len, false);
	if (r == 0)
		r = qc_read_guest(img, iov, n, off, len, true);
	pthread_mutex_unlock(&img->lock);
	return r < 0 ? r : (ssize_t)len;
}

ssize_t qcow_image_pread(struct qcow_image *img, void *buf, size_t len, uint64_t off)
{
	struct iovec iov = { buf, len };

	return qcow_image_preadv(img, &iov, 1, off);
}

static int maybe_flush_frees(struct qcow_image *img)
{
	return img->nfrees > 4096 ? qc_meta_flush(img) : 0;
}

ssize_t qcow_image_pwritev(struct qcow_image *img, const struct iovec *iov, int n,
			   uint64_t off)
{
	size_t len = iov_total(iov, n);
	int r;

	pthread_mutex_lock(&img->lock);
	r = io_check(img, off, len, true);
	if (r == 0)
		r = qc_write_guest(img, iov, n, off, len);
	if (r == 0)
		r = maybe_flush_frees(img);
	pthread_mutex_unlock(&img->lock);
	return r < 0 ? r : (ssize_t)len;
}

ssize_t qcow_image_pwrite(struct qcow_image *img, const void *buf, size_t len,
			  uint64_t off)
{
	struct iovec iov = { (void *)buf, len };

	return qcow_image_pwritev(img, &iov, 1, off);
}

int qcow_image_flush(struct qcow_image *img)
{
	int r = 0;

	pthread_mutex_lock(&img->lock);
	if (img->failed)
		r = qc_err(img, -EIO, "an earlier metadata write failed; reopen the image");
	else if (img->rw) {
		r = qc_meta_flush(img);
		if (r == 0)
			r = qc_file_flush(&img->file);
		if (r < 0)
			r = qc_err(img, r, "flush failed: %s", strerror(-r));
	}
	pthread_mutex_unlock(&img->lock);
	return r;
}

int qcow_image_discard(struct qcow_image *img, uint64_t off, uint64_t len)
{
	int r;

	pthread_mutex_lock(&img->lock);
	r = io_check(img, off, len, true);
	if (r == 0)
		r = qc_zero_or_discard(img, off, len, true, true);
	if (r == 0)
		r = maybe_flush_frees(img);
	pthread_mutex_unlock(&img->lock);
	return r;
}

int qcow_image_write_zeroes(struct qcow_image *img, uint64_t off, uint64_t len,
			    unsigned flags)
{
	int r;

	pthread_mutex_lock(&img->lock);
	r = io_check(img, off, len, true);
	if (r == 0)
		r = qc_zero_or_discard(img, off, len, false, flags & QCOW_ZERO_MAY_UNMAP);
	if (r == 0)
		r = maybe_flush_frees(img);
	pthread_mutex_unlock(&img->lock);
	return r;
}

int qcow_image_write_compressed(struct qcow_image *img, const void *buf, size_t len,
				uint64_t off)
{
	uint64_t cs = img->cluster_size;
	uint8_t *cbuf = NULL;
	int r;

	pthread_mutex_lock(&img->lock);
	r = io_check(img, off, len, true);
	if (r == 0 && (off & img->cluster_mask || (len != cs && off + len != img->h.size) ||
		       len > cs))
		r = qc_err(img, -EINVAL, "compressed writes take one whole cluster");
	if (r < 0)
		goto out;
	struct iovec iov = { (void *)buf, len };

	if (qc_buf_is_zero(buf, len)) {
		r = qc_write_guest(img, &iov, 1, off, len);
		goto out;
	}
	cbuf = malloc(cs);
	if (!cbuf) {
		r = qc_err(img, -ENOMEM, "out of memory");
		goto out;
	}
	uint8_t *in = (uint8_t *)buf;

	if (len < cs) {
		memcpy(img->cow_head, buf, len);
		memset(img->cow_head + len, 0, cs - len);
		in = img->cow_head;
	}
	ssize_t clen = qcow_compress(img->h.compression_type, in, cs, cbuf, cs - 512);

	if (clen <= 0) {
		r = qc_write_guest(img, &iov, 1, off, len);
		goto out;
	}
	uint64_t place;

	uint64_t cur = 0;

	if (img->comp_next) {
		r = qc_rc_get(img, img->comp_next / cs, &cur);
		if (r < 0)
			goto out;
	}
	/* Pack into the current cluster while its count has room. */
	if (img->comp_next && (img->comp_next & img->cluster_mask) + (uint64_t)clen <= cs &&
	    cur < img->refcount_max) {
		place = img->comp_next;
		r = qc_rc_set(img, place / cs, cur + 1);
	} else {
		r = qc_alloc_clusters(img, div_round_up((uint64_t)clen, cs), &place);
	}
	if (r < 0)
		goto out;
	r = qc_check_overlap(img, place, (uint64_t)clen);
	if (r < 0)
		goto out;
	struct iovec civ = { cbuf, (size_t)clen };

	r = qc_file_pwritev_data(&img->file, &civ, 1, place);
	if (r < 0) {
		r = qc_err(img, r, "writing compressed data failed");
		goto out;
	}
	uint64_t end = place + (uint64_t)clen;

	/* The next compressed cluster starts right here, byte-packed. */
	img->comp_next = (end & img->cluster_mask) ? end : 0;
	unsigned x = 62 - (img->h.cluster_bits - 8);
	uint64_t nsec = ((end - 1) >> 9) - (place >> 9);
	uint64_t entry = OFLAG_COMPRESSED | (nsec << x) | place;

	r = qc_guest_set_entry(img, off >> img->h.cluster_bits, entry);
out:
	free(cbuf);
	pthread_mutex_unlock(&img->lock);
	return r;
}

/* --- resize --- */

static int grow_l1(struct qcow_image *img, uint32_t need)
{
	uint64_t cs = img->cluster_size;
	uint64_t ncl = div_round_up((uint64_t)need * 8, cs);
	uint64_t noff, old_off = img->h.l1_table_offset;
	uint64_t old_cl = div_round_up((uint64_t)img->h.l1_size * 8, cs);
	uint64_t *nl1;
	uint8_t *b;
	int r;

	if ((uint64_t)need * 8 > QCOW_MAX_L1_BYTES)
		return qc_err(img, -EFBIG, "L1 table would exceed 32 MiB");
	r = qc_meta_flush(img);
	if (r < 0)
		return r;
	r = qc_alloc_clusters(img, ncl, &noff);
	if (r < 0)
		return r;
	nl1 = calloc(ncl * cs / 8, sizeof(uint64_t));
	b = calloc(ncl, cs);
	if (!nl1 || !b) {
		free(nl1);
		free(b);
		return qc_err(img, -ENOMEM, "out of memory");
	}
	memcpy(nl1, img->l1, (size_t)img->h.l1_size * 8);
	for (uint32_t i = 0; i < need; i++)
		store_be64(b + 8 * (size_t)i, nl1[i]);
	r = qc_rb_write_dirty(img);
	if (r == 0)
		r = qc_file_pwrite(&img->file, b, ncl * cs, noff);
	if (r == 0)
		r = qc_file_flush(&img->file);
	if (r == 0) {
		uint8_t hb[12];

		store_be32(hb, need);
		store_be64(hb + 4, noff);
		r = qc_file_pwrite(&img->file, hb, 12, HDR_L1_SIZE_OFF);
	}
	if (r == 0)
		r = qc_file_flush(&img->file);
	free(b);
	if (r < 0) {
		free(nl1);
		return qc_err(img, r, "growing the L1 table failed");
	}
	free(img->l1);
	img->l1 = nl1;
	img->h.l1_size = need;
	img->h.l1_table_offset = noff;
	img->l1_dirty_lo = UINT32_MAX;
	img->l1_dirty_hi = 0;
	if (old_cl && old_off)
		return qc_free_later(img, old_off, old_cl, true);
	return 0;
}

int qcow_image_resize(struct qcow_image *img, uint64_t new_size)
{
	uint64_t cs = img->cluster_size;
	uint64_t old = img->h.size;
	int r;

	pthread_mutex_lock(&img->lock);
	r = io_check(img, 0, 0, true);
	if (r < 0)
		goto out;
	if (new_size > QCOW_MAX_SIZE || new_size % 512) {
		r = qc_err(img, -EINVAL, "new size must be a multiple of 512 and at most 2^62");
		goto out;
	}
	if (new_size < old) {
		for (uint64_t gc = div_round_up(new_size, cs); gc < div_round_up(old, cs); gc++) {
			uint64_t l1i = gc >> img->l2_bits;

			if (!(img->l1[l1i] & L1E_OFFSET_MASK)) {
				gc = ((l1i + 1) << img->l2_bits) - 1;
				continue;
			}
			uint64_t e, bm;

			r = qc_guest_entry(img, gc, &e, &bm);
			if (r < 0)
				goto out;
			if (e & ~OFLAG_ZERO) {
				r = qc_err(img, -EBUSY, "cannot shrink: data is allocated beyond the new size (guest offset %llu)",
					 (unsigned long long)(gc * cs));
				goto out;
			}
		}
	} else {
		uint64_t need = div_round_up(div_round_up(new_size, cs), img->l2_entries);

		if (need > img->h.l1_size) {
			r = grow_l1(img, (uint32_t)need);
			if (r < 0)
				goto out;
		}
	}
	if (new_size > old) {
		/*
		 * What lies past the old end must read as zeros once the disk
		 * grows: stale bytes in the old last cluster, and the backing
		 * file where it is longer than the old disk. Zero them before
		 * the new size is on disk.
		 */
		uint64_t zend = align_up(old, cs) < new_size ? align_up(old, cs) : new_size;

		if (img->backing && img->backing->size > zend)
			zend = img->backing->size < new_size ? img->backing->size : new_size;
		if (zend > old) {
			img->h.size = zend;	/* let the zeroing reach it */
			r = qc_zero_or_discard(img, old, zend - old, false, false);
			img->h.size = old;
			if (r < 0)
				goto out;
		}
	}
	r = qc_meta_flush(img);
	if (r == 0)
		r = qc_hdr_write_u64(img, HDR_SIZE_OFF, new_size);
	if (r == 0)
		r = qc_file_flush(&img->file);
	if (r < 0) {
		r = qc_err(img, r, "updating the size failed");
		goto out;
	}
	img->h.size = new_size;
out:
	pthread_mutex_unlock(&img->lock);
	return r;
}

/* --- information --- */

uint64_t qcow_image_size(const struct qcow_image *img)
{
	return img->h.size;
}

uint32_t qcow_image_cluster_size(const struct qcow_image *img)
{
	return img->cluster_size;
}

int qcow_image_info(struct qcow_image *img, struct qcow_info *i)
{
	memset(i, 0, sizeof(*i));
	pthread_mutex_lock(&img->lock);
	i->virtual_size = img->h.size;
	i->cluster_size = img->cluster_size;
	i->version = (int)img->h.version;
	i->refcount_bits = img->refcount_bits;
	i->lazy_refcounts = !!(img->h.compatible_features & QCOW_COMPAT_LAZY);
	i->dirty = img->was_dirty;
	i->corrupt = img->corrupt;
	i->extended_l2 = img->extl2;
	i->read_only = !img->rw;
	i->compression = img->h.compression_type;
	i->backing_file = img->backing_name;
	i->backing_fmt = img->backing_fmt;
	i->data_file = img->data_file_name;
	i->data_file_raw = !!(img->h.autoclear_features & QCOW_AUTOCLEAR_DATA_RAW);
	int64_t sz = qc_file_size(&img->file);

	i->file_length = sz > 0 ? (uint64_t)sz : 0;
	i->actual_size = qc_file_allocated(&img->file);
	if (i->actual_size < 0)
		i->actual_size = -1;
	i->nb_snapshots = img->h.nb_snapshots;
	i->nb_bitmaps = img->nb_bitmaps;
	i->incompatible_features = img->h.incompatible_features;
	i->compatible_features = img->h.compatible_features;
	i->autoclear_features = img->h.autoclear_features;
	pthread_mutex_unlock(&img->lock);
	return 0;
}

int qcow_image_snapshot(struct qcow_image *img, uint32_t i, struct qcow_snapshot_info *out)
{
	if (i >= img->h.nb_snapshots)
		return -ENOENT;
	*out = img->snaps[i].info;
	return 0;
}
