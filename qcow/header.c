/* SPDX-License-Identifier: MIT */
/*
 * The qcow2 header: validation of the big-endian on-disk form into
 * `struct qcow_header`, and the building of a fresh header cluster for
 * qcow_create. Validation follows the untrusted-input rule: size first,
 * then magic and version, then each field's range, then the fields'
 * agreement with one another and with the file's length.
 *
 * The library never rewrites a whole header of an existing image: it
 * updates single fields in place (hdr_write_u64), so unknown fields and
 * header extensions survive untouched.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/endian.h"
#include "internal.h"

int qc_header_parse(const uint8_t *b, size_t len, uint64_t file_size,
		 struct qcow_header *h, char *why, size_t whylen)
{
	memset(h, 0, sizeof(*h));
	if (len < 72) {
		snprintf(why, whylen, "file too short for a qcow2 header");
		return -EINVAL;
	}
	if (load_be32(b) != QCOW_MAGIC) {
		snprintf(why, whylen, "not a qcow2 image (bad magic)");
		return -EINVAL;
	}
	h->version = load_be32(b + 4);
	if (h->version != 2 && h->version != 3) {
		snprintf(why, whylen, "unsupported qcow2 version %u", h->version);
		return -ENOTSUP;
	}
	h->backing_file_offset = load_be64(b + 8);
	h->backing_file_size = load_be32(b + 16);
	h->cluster_bits = load_be32(b + 20);
	h->size = load_be64(b + 24);
	h->crypt_method = load_be32(b + 32);
	h->l1_size = load_be32(b + 36);
	h->l1_table_offset = load_be64(b + 40);
	h->refcount_table_offset = load_be64(b + 48);
	h->refcount_table_clusters = load_be32(b + 56);
	h->nb_snapshots = load_be32(b + 60);
	h->snapshots_offset = load_be64(b + 64);
	if (h->cluster_bits < 9 || h->cluster_bits > 21) {
		snprintf(why, whylen, "unsupported cluster size: 2^%u", h->cluster_bits);
		return -EINVAL;
	}
	if (h->version == 2) {
		h->refcount_order = 4;
		h->header_length = 72;
	} else {
		if (len < 104) {
			snprintf(why, whylen, "file too short for a version 3 header");
			return -EINVAL;
		}
		h->incompatible_features = load_be64(b + 72);
		h->compatible_features = load_be64(b + 80);
		h->autoclear_features = load_be64(b + 88);
		h->refcount_order = load_be32(b + 96);
		h->header_length = load_be32(b + 100);
		if (h->header_length < 104 || h->header_length % 8 ||
		    h->header_length > len) {
			snprintf(why, whylen, "invalid header length %u", h->header_length);
			return -EINVAL;
		}
		if (h->header_length > 104)
			h->compression_type = b[104];
	}

	uint64_t cs = 1ull << h->cluster_bits;

	if (h->header_length > cs) {
		snprintf(why, whylen, "header length %u exceeds the cluster size", h->header_length);
		return -EINVAL;
	}
	if (h->refcount_order > 6) {
		snprintf(why, whylen, "refcount width 2^%u exceeds 64 bits", h->refcount_order);
		return -EINVAL;
	}
	if (h->incompatible_features & ~QCOW_INCOMPAT_KNOWN) {
		snprintf(why, whylen, "unsupported incompatible feature bits 0x%llx",
			 (unsigned long long)(h->incompatible_features & ~QCOW_INCOMPAT_KNOWN));
		return -ENOTSUP;
	}
	if (h->crypt_method) {
		snprintf(why, whylen, "encrypted images are not supported (crypt_method %u)",
			 h->crypt_method);
		return -ENOTSUP;
	}
	if (h->incompatible_features & QCOW_INCOMPAT_COMPRESSION) {
		if (h->header_length <= 104) {
			snprintf(why, whylen, "compression type bit set but no compression type field");
			return -EINVAL;
		}
		if (h->compression_type > 1) {
			snprintf(why, whylen, "unknown compression type %u", h->compression_type);
			return -ENOTSUP;
		}
	} else if (h->compression_type != 0) {
		snprintf(why, whylen, "compression type %u without its feature bit", h->compression_type);
		return -EINVAL;
	}
	if ((h->incompatible_features & QCOW_INCOMPAT_EXTL2) && h->cluster_bits < 14) {
		snprintf(why, whylen, "extended L2 entries need clusters of at least 16 KiB");
		return -EINVAL;
	}
	if (h->size > QCOW_MAX_SIZE) {
		snprintf(why, whylen, "virtual size %llu is too large",
			 (unsigned long long)h->size);
		return -EFBIG;
	}

	/* Tables: aligned, inside the file, of sane size. */
	unsigned esz = (h->incompatible_features & QCOW_INCOMPAT_EXTL2) ? 16 : 8;
	uint64_t l2_entries = cs / esz;
	uint64_t need_l1 = div_round_up(div_round_up(h->size, cs), l2_entries);

	if ((uint64_t)h->l1_size * 8 > QCOW_MAX_L1_BYTES) {
		snprintf(why, whylen, "active L1 table too large (%u entries)", h->l1_size);
		return -EFBIG;
	}
	if (h->l1_size < need_l1) {
		snprintf(why, whylen, "L1 table is too small (%u entries for %llu needed)",
			 h->l1_size, (unsigned long long)need_l1);
		return -EINVAL;
	}
	if (h->l1_size && (h->l1_table_offset % cs ||
			   h->l1_table_offset > file_size ||
			   (uint64_t)h->l1_size * 8 > file_size - h->l1_table_offset)) {
		snprintf(why, whylen, "invalid L1 table offset 0x%llx",
			 (unsigned long long)h->l1_table_offset);
		return -EINVAL;
	}
	if (h->refcount_table_clusters == 0 ||
	    (uint64_t)h->refcount_table_clusters * cs > QCOW_MAX_REFTABLE_BYTES) {
		snprintf(why, whylen, "invalid refcount table size (%u clusters)",
			 h->refcount_table_clusters);
		return -EINVAL;
	}
	if (h->refcount_table_offset % cs || h->refcount_table_offset == 0 ||
	    h->refcount_table_offset > file_size ||
	    (uint64_t)h->refcount_table_clusters * cs > file_size - h->refcount_table_offset) {
		snprintf(why, whylen, "invalid refcount table offset 0x%llx",
			 (unsigned long long)h->refcount_table_offset);
		return -EINVAL;
	}
	if (h->nb_snapshots > QCOW_MAX_SNAPSHOTS) {
		snprintf(why, whylen, "too many snapshots (%u)", h->nb_snapshots);
		return -EFBIG;
	}
	if (h->nb_snapshots && (h->snapshots_offset % cs || h->snapshots_offset >= file_size)) {
		snprintf(why, whylen, "invalid snapshot table offset 0x%llx",
			 (unsigned long long)h->snapshots_offset);
		return -EINVAL;
	}
	if (h->backing_file_offset) {
		if (h->backing_file_size > 1023 || h->backing_file_size == 0 ||
		    h->backing_file_size > cs ||
		    h->backing_file_offset > cs - h->backing_file_size) {
			snprintf(why, whylen, "invalid backing file name (offset 0x%llx, %u bytes)",
				 (unsigned long long)h->backing_file_offset, h->backing_file_size);
			return -EINVAL;
		}
	}
	return 0;
}

static size_t put_ext(uint8_t *p, uint32_t type, const void *data, uint32_t len)
{
	store_be32(p, type);
	store_be32(p + 4, len);
	if (len)
		memcpy(p + 8, data, len);
	size_t padded = 8 + align_up(len, 8);

	memset(p + 8 + len, 0, padded - 8 - len);
	return padded;
}

static size_t put_feature(uint8_t *p, uint8_t type, uint8_t bit, const char *name)
{
	memset(p, 0, 48);
	p[0] = type;
	p[1] = bit;
	memcpy(p + 2, name, strlen(name));
	return 48;
}

/*
 * Write a header for h (its version, sizes and table offsets set) into buf:
 * fields, the backing format and feature name extensions, the end marker
 * and the backing file name. *used is how many bytes it took; -ENOSPC if
 * it does not fit in bufsize (one cluster).
 */
int qc_header_build(uint8_t *buf, size_t bufsize, const struct qcow_header *hin,
		 const char *backing, const char *backing_fmt, size_t *used)
{
	struct qcow_header h = *hin;
	uint8_t ext[1024];
	size_t elen = 0;

	if (backing_fmt && *backing_fmt) {
		size_t n = strlen(backing_fmt);

		if (n > 64)
			return -EINVAL;
		elen += put_ext(ext + elen, QCOW_EXT_BACKING_FMT, backing_fmt, (uint32_t)n);
	}
	if (h.version >= 3) {
		uint8_t t[8 * 48];
		size_t tl = 0;

		tl += put_feature(t + tl, 0, 0, "dirty bit");
		tl += put_feature(t + tl, 0, 1, "corrupt bit");
		tl += put_feature(t + tl, 0, 2, "external data file");
		tl += put_feature(t + tl, 0, 3, "compression type");
		tl += put_feature(t + tl, 0, 4, "extended L2 entries");
		tl += put_feature(t + tl, 1, 0, "lazy refcounts");
		tl += put_feature(t + tl, 2, 0, "bitmaps");
		tl += put_feature(t + tl, 2, 1, "raw external data");
		/* Like qemu, only where it fits comfortably. */
		if (bufsize >= 4096 * 2)
			elen += put_ext(ext + elen, QCOW_EXT_FEATURES, t, (uint32_t)tl);
	}
	elen += put_ext(ext + elen, QCOW_EXT_END, NULL, 0);

	uint32_t hlen = h.version >= 3 ? 112 : 72;
	size_t blen = backing ? strlen(backing) : 0;

	if (blen > 1023)
		return -ENAMETOOLONG;
	if (hlen + elen + blen > bufsize)
		return -ENOSPC;
	memset(buf, 0, bufsize);
	if (blen) {
		h.backing_file_offset = hlen + elen;
		h.backing_file_size = (uint32_t)blen;
		memcpy(buf + hlen + elen, backing, blen);
	}
	store_be32(buf, QCOW_MAGIC);
	store_be32(buf + 4, h.version);
	store_be64(buf + 8, h.backing_file_offset);
	store_be32(buf + 16, h.backing_file_size);
	store_be32(buf + 20, h.cluster_bits);
	store_be64(buf + 24, h.size);
	store_be32(buf + 32, 0);
	store_be32(buf + 36, h.l1_size);
	store_be64(buf + 40, h.l1_table_offset);
	store_be64(buf + 48, h.refcount_table_offset);
	store_be32(buf + 56, h.refcount_table_clusters);
	store_be32(buf + 60, 0);
	store_be64(buf + 64, 0);
	if (h.version >= 3) {
		store_be64(buf + 72, h.incompatible_features);
		store_be64(buf + 80, h.compatible_features);
		store_be64(buf + 88, h.autoclear_features);
		store_be32(buf + 96, h.refcount_order);
		store_be32(buf + 100, hlen);
		buf[104] = h.compression_type;
	}
	memcpy(buf + hlen, ext, elen);
	*used = hlen + elen + blen;
	return 0;
}
