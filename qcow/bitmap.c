/* SPDX-License-Identifier: MIT */
/*
 * Persistent dirty bitmaps (the 0x23852875 header extension). libqcow does
 * not maintain bitmaps, so it must not leave them looking valid after it
 * writes: like a qemu that lacks bitmap support, it clears the autoclear
 * bit, and then goes further and removes the extension and releases the
 * bitmaps' clusters, so that qemu-img check finds no leaks afterwards.
 *
 * The directory is untrusted input: every length is checked against the
 * directory's size, and tables and data offsets are only reported, never
 * followed beyond one table read per bitmap.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/endian.h"
#include "internal.h"

#define BITMAP_MAX_DIR (64u << 20)
#define BITMAP_MAX_TABLE (64u << 20)
#define BITMAP_DATA_MASK 0x00fffffffffffe00ull

int qc_bitmap_clusters(struct qcow_image *img, qc_range_fn fn, void *opaque)
{
	uint64_t cs = img->cluster_size;
	uint64_t dsize = img->bitmap_dir_size, doff = img->bitmap_dir_offset;
	uint8_t *dir;
	int r;

	if (!img->nb_bitmaps || !dsize)
		return 0;
	if (dsize > BITMAP_MAX_DIR)
		return -EFBIG;
	fn(opaque, doff, dsize);
	dir = malloc(dsize);
	if (!dir)
		return -ENOMEM;
	r = qc_file_pread(&img->file, dir, dsize, doff);
	if (r < 0) {
		free(dir);
		return r;
	}
	uint64_t pos = 0;

	for (uint32_t b = 0; b < img->nb_bitmaps && pos + 24 <= dsize; b++) {
		uint64_t toff = load_be64(dir + pos);
		uint32_t tsize = load_be32(dir + pos + 8);
		uint16_t nlen = load_be16(dir + pos + 18);
		uint32_t xlen = load_be32(dir + pos + 20);
		uint64_t tbytes = (uint64_t)tsize * 8;

		fn(opaque, toff, tbytes);
		if (tbytes && tbytes <= BITMAP_MAX_TABLE && !(toff % cs)) {
			uint8_t *t = malloc(tbytes);

			if (t && qc_file_pread(&img->file, t, tbytes, toff) == 0)
				for (uint32_t i = 0; i < tsize; i++) {
					uint64_t d = load_be64(t + 8 * (size_t)i) & BITMAP_DATA_MASK;

					if (d)
						fn(opaque, d, cs);
				}
			free(t);
		}
		pos = align_up(pos + 24 + xlen + nlen, 8);
	}
	free(dir);
	return 0;
}

struct drop {
	struct qcow_image *img;
	int r;
};

static void drop_range(void *opaque, uint64_t off, uint64_t len)
{
	struct drop *d = opaque;
	uint64_t cs = d->img->cluster_size;

	if (d->r < 0 || !len || off % cs)
		return;
	d->r = qc_free_later(d->img, off, div_round_up(len, cs), true);
}

/*
 * Rewrite cluster 0 (c0, as read at open) without the bitmaps extension
 * and with the autoclear bits cleared, then release the bitmaps' clusters.
 */
int qc_bitmaps_drop(struct qcow_image *img, const uint8_t *c0)
{
	uint32_t cs = img->cluster_size;
	size_t hl = img->h.header_length, in = hl, out = hl;
	uint8_t *nb;
	struct drop d = { img, 0 };
	int r;

	nb = calloc(1, cs);
	if (!nb)
		return qc_err(img, -ENOMEM, "out of memory");
	memcpy(nb, c0, hl);
	store_be64(nb + HDR_AUTOCLEAR_OFF, 0);
	while (in + 8 <= cs) {
		uint32_t type = load_be32(c0 + in), len = load_be32(c0 + in + 4);
		size_t total = 8 + align_up(len, 8);

		if (type == QCOW_EXT_END || total > cs - in)
			break;
		if (type != QCOW_EXT_BITMAPS) {
			memcpy(nb + out, c0 + in, total);
			out += total;
		}
		in += total;
	}
	out += 8;	/* the end marker, already zero */
	if (img->h.backing_file_offset) {
		size_t bl = img->h.backing_file_size;

		if (out + bl > cs) {
			free(nb);
			return qc_err(img, -EINVAL, "header does not fit after removing bitmaps");
		}
		memcpy(nb + out, c0 + img->h.backing_file_offset, bl);
		store_be64(nb + 8, out);
		img->h.backing_file_offset = out;
	}
	/* Collect the clusters before the directory pointer goes away. */
	r = qc_bitmap_clusters(img, drop_range, &d);
	if (r == 0)
		r = d.r;
	if (r == 0)
		r = qc_file_pwrite(&img->file, nb, cs, 0);
	if (r == 0)
		r = qc_file_flush(&img->file);
	free(nb);
	if (r < 0)
		return qc_err(img, r, "removing the bitmaps failed");
	img->h.autoclear_features = 0;
	img->nb_bitmaps = 0;
	return qc_meta_flush(img);
}
