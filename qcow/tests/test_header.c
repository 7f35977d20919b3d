// SPDX-License-Identifier: MIT
/*
 * Unit tests for qcow/header.c: header_parse on hand-built big-endian
 * headers (one valid v2 and v3 header, then each rule broken in turn) and
 * header_build round trips through header_parse.
 *
 * The reference layout is qemu's docs/interop/qcow2.txt. A valid image
 * here has 64 KiB clusters and 1 GiB of virtual size: the header in
 * cluster 0, a one-cluster refcount table in cluster 1, a refcount block
 * in cluster 2 and the two-entry L1 table in cluster 3.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <base/endian.h>
#include <base/test.h>

#include "../internal.h"

#define CS 65536u
#define FILE_SIZE (4ull * CS)

/* Offsets of the fields, from the specification (not from the library). */
enum {
	O_MAGIC = 0,
	O_VERSION = 4,
	O_BACKING_OFF = 8,
	O_BACKING_SIZE = 16,
	O_CLUSTER_BITS = 20,
	O_SIZE = 24,
	O_CRYPT = 32,
	O_L1_SIZE = 36,
	O_L1_OFF = 40,
	O_RT_OFF = 48,
	O_RT_CLUSTERS = 56,
	O_NB_SNAP = 60,
	O_SNAP_OFF = 64,
	O_INCOMPAT = 72,
	O_COMPAT = 80,
	O_AUTOCLEAR = 88,
	O_REFCOUNT_ORDER = 96,
	O_HDR_LEN = 100,
	O_COMPRESSION = 104,
};

static uint8_t hdr[CS];

/* A valid header of the given version in hdr (the rest of the cluster 0). */
static void make_header(uint32_t version)
{
	memset(hdr, 0, sizeof(hdr));
	store_be32(hdr + O_MAGIC, 0x514649fb);
	store_be32(hdr + O_VERSION, version);
	store_be32(hdr + O_CLUSTER_BITS, 16);
	store_be64(hdr + O_SIZE, 1ull << 30);
	store_be32(hdr + O_L1_SIZE, 2);
	store_be64(hdr + O_L1_OFF, 3ull * CS);
	store_be64(hdr + O_RT_OFF, 1ull * CS);
	store_be32(hdr + O_RT_CLUSTERS, 1);
	if (version >= 3) {
		store_be32(hdr + O_REFCOUNT_ORDER, 4);
		store_be32(hdr + O_HDR_LEN, 104);
	}
}

static char why[512];

static int parse(struct qcow_header *h)
{
	why[0] = 0;
	return qc_header_parse(hdr, sizeof(hdr), FILE_SIZE, h, why, sizeof(why));
}

/* Parsing fails with err and a message that contains word. */
static void expect_reject(int err, const char *word)
{
	struct qcow_header h;

	ASSERT_ERR(parse(&h), err);
	if (!strstr(why, word))
		TEST_FAIL("message \"%s\" does not mention \"%s\"", why, word);
}

TEST(parse_valid_v3)
{
	struct qcow_header h;

	make_header(3);
	store_be64(hdr + O_INCOMPAT, QCOW_INCOMPAT_DIRTY);
	store_be64(hdr + O_COMPAT, QCOW_COMPAT_LAZY);
	store_be64(hdr + O_AUTOCLEAR, 0x8000000000000001ull);
	ASSERT_OK(parse(&h));
	ASSERT_EQ_U64(h.version, 3);
	ASSERT_EQ_U64(h.cluster_bits, 16);
	ASSERT_EQ_U64(h.size, 1ull << 30);
	ASSERT_EQ_U64(h.l1_size, 2);
	ASSERT_EQ_U64(h.l1_table_offset, 3ull * CS);
	ASSERT_EQ_U64(h.refcount_table_offset, CS);
	ASSERT_EQ_U64(h.refcount_table_clusters, 1);
	ASSERT_EQ_U64(h.refcount_order, 4);
	ASSERT_EQ_U64(h.header_length, 104);
	ASSERT_EQ_U64(h.incompatible_features, QCOW_INCOMPAT_DIRTY);
	ASSERT_EQ_U64(h.compatible_features, QCOW_COMPAT_LAZY);
	/* Unknown autoclear bits are not a reason to refuse. */
	ASSERT_EQ_U64(h.autoclear_features, 0x8000000000000001ull);
	ASSERT_EQ_U64(h.compression_type, 0);
	ASSERT_EQ_U64(h.backing_file_offset, 0);
	ASSERT_EQ_U64(h.nb_snapshots, 0);
}

TEST(parse_valid_v2_ignores_v3_fields)
{
	struct qcow_header h;

	make_header(2);
	/* A version 2 header ends at byte 72: what follows is not fields. */
	memset(hdr + 72, 0xff, 40);
	ASSERT_OK(parse(&h));
	ASSERT_EQ_U64(h.version, 2);
	ASSERT_EQ_U64(h.refcount_order, 4);
	ASSERT_EQ_U64(h.header_length, 72);
	ASSERT_EQ_U64(h.incompatible_features, 0);
	ASSERT_EQ_U64(h.compatible_features, 0);
	ASSERT_EQ_U64(h.compression_type, 0);
	ASSERT_EQ_U64(h.size, 1ull << 30);
}

TEST(parse_short_buffers)
{
	struct qcow_header h;

	make_header(2);
	ASSERT_ERR(qc_header_parse(hdr, 71, FILE_SIZE, &h, why, sizeof(why)),
		   -EINVAL);
	ASSERT_OK(qc_header_parse(hdr, 72, FILE_SIZE, &h, why, sizeof(why)));
	make_header(3);
	ASSERT_ERR(qc_header_parse(hdr, 103, FILE_SIZE, &h, why, sizeof(why)),
		   -EINVAL);
	ASSERT_OK(qc_header_parse(hdr, 104, FILE_SIZE, &h, why, sizeof(why)));
	/* header_length may not claim more than the buffer holds. */
	store_be32(hdr + O_HDR_LEN, 112);
	ASSERT_ERR(qc_header_parse(hdr, 104, FILE_SIZE, &h, why, sizeof(why)),
		   -EINVAL);
}

TEST(reject_bad_magic)
{
	make_header(3);
	store_be32(hdr + O_MAGIC, 0x514649fa);
	expect_reject(-EINVAL, "magic");
	make_header(3);
	hdr[0] = 'q'; /* "qFI\xfb": a byte-order mistake */
	expect_reject(-EINVAL, "magic");
}

TEST(reject_versions)
{
	static const uint32_t bad[] = { 0, 1, 4, 0x03000000 };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		make_header(3);
		store_be32(hdr + O_VERSION, bad[i]);
		expect_reject(-ENOTSUP, "version");
	}
}

/* Table offsets and sizes follow the cluster size for the bits tests. */
static void set_cluster_bits(uint32_t bits)
{
	uint64_t cs = 1ull << bits;

	make_header(3);
	store_be32(hdr + O_CLUSTER_BITS, bits);
	store_be64(hdr + O_SIZE, 1ull << 20);
	/* 1 MiB needs one L1 entry from 512-byte clusters (64 * 512 B
	 * covers 32 KiB per entry: 32 entries) up. */
	store_be32(hdr + O_L1_SIZE, 64);
	store_be64(hdr + O_RT_OFF, cs);
	store_be64(hdr + O_L1_OFF, 2 * cs);
}

TEST(cluster_bits_limits)
{
	struct qcow_header h;
	char w[256];

	for (uint32_t bits = 9; bits <= 21; bits++) {
		set_cluster_bits(bits);
		ASSERT_OK(qc_header_parse(hdr, sizeof(hdr), 4ull << bits, &h, w,
				       sizeof(w)));
		ASSERT_EQ_U64(h.cluster_bits, bits);
	}
	set_cluster_bits(8);
	ASSERT_ERR(qc_header_parse(hdr, sizeof(hdr), 1 << 20, &h, w, sizeof(w)),
		   -EINVAL);
	ASSERT_TRUE(strstr(w, "cluster size") != NULL);
	set_cluster_bits(22);
	ASSERT_ERR(qc_header_parse(hdr, sizeof(hdr), 4ull << 22, &h, w, sizeof(w)),
		   -EINVAL);
	ASSERT_TRUE(strstr(w, "cluster size") != NULL);
	/* A huge shift count must not reach a C shift. */
	set_cluster_bits(9);
	store_be32(hdr + O_CLUSTER_BITS, 64);
	ASSERT_ERR(qc_header_parse(hdr, sizeof(hdr), 1 << 20, &h, w, sizeof(w)),
		   -EINVAL);
}

TEST(refcount_order_limits)
{
	struct qcow_header h;

	for (uint32_t order = 0; order <= 6; order++) {
		make_header(3);
		store_be32(hdr + O_REFCOUNT_ORDER, order);
		ASSERT_OK(parse(&h));
		ASSERT_EQ_U64(h.refcount_order, order);
	}
	make_header(3);
	store_be32(hdr + O_REFCOUNT_ORDER, 7);
	expect_reject(-EINVAL, "refcount");
}

TEST(incompatible_bits)
{
	struct qcow_header h;

	/* Known bits pass (the image layer decides what it can write). */
	make_header(3);
	store_be64(hdr + O_INCOMPAT,
		   QCOW_INCOMPAT_DIRTY | QCOW_INCOMPAT_CORRUPT);
	ASSERT_OK(parse(&h));
	ASSERT_EQ_U64(h.incompatible_features, 3);

	/* Unknown ones are refused, and the message names exactly them. */
	make_header(3);
	store_be64(hdr + O_INCOMPAT,
		   QCOW_INCOMPAT_DIRTY | (1ull << 5) | (1ull << 40));
	expect_reject(-ENOTSUP, "0x10000000020");
	make_header(3);
	store_be64(hdr + O_INCOMPAT, 1ull << 63);
	expect_reject(-ENOTSUP, "0x8000000000000000");
}

TEST(reject_encryption)
{
	make_header(3);
	store_be32(hdr + O_CRYPT, 1);
	expect_reject(-ENOTSUP, "encrypt");
	make_header(2);
	store_be32(hdr + O_CRYPT, 2);
	expect_reject(-ENOTSUP, "encrypt");
}

TEST(l1_table_rules)
{
	struct qcow_header h;

	/* 1 GiB of 64 KiB clusters needs two L1 entries of 8192 each. */
	make_header(3);
	store_be32(hdr + O_L1_SIZE, 1);
	expect_reject(-EINVAL, "L1 table is too small");
	make_header(3);
	store_be64(hdr + O_SIZE, (1ull << 30) + 1); /* one byte more: 3 */
	expect_reject(-EINVAL, "L1 table is too small");
	make_header(3);
	store_be64(hdr + O_SIZE, 0);
	store_be32(hdr + O_L1_SIZE, 0);
	store_be64(hdr + O_L1_OFF, 0);
	ASSERT_OK(parse(&h)); /* an empty disk needs no L1 table */

	make_header(3);
	store_be64(hdr + O_L1_OFF, 3ull * CS + 512);
	expect_reject(-EINVAL, "L1 table offset");
	make_header(3);
	store_be64(hdr + O_L1_OFF, FILE_SIZE);
	expect_reject(-EINVAL, "L1 table offset");
	make_header(3);
	store_be64(hdr + O_L1_OFF, 0xffffffffffff0000ull);
	expect_reject(-EINVAL, "L1 table offset");
	/* Starts inside the file, ends outside. */
	make_header(3);
	ASSERT_ERR(qc_header_parse(hdr, sizeof(hdr), 3ull * CS + 8, &h, why,
				sizeof(why)),
		   -EINVAL);
	ASSERT_OK(qc_header_parse(hdr, sizeof(hdr), 3ull * CS + 16, &h, why,
			       sizeof(why)));

	/* More than 32 MiB of L1 table. */
	make_header(3);
	store_be32(hdr + O_L1_SIZE, (32u << 20) / 8 + 1);
	ASSERT_ERR(qc_header_parse(hdr, sizeof(hdr), 1ull << 40, &h, why,
				sizeof(why)),
		   -EFBIG);
}

TEST(refcount_table_rules)
{
	make_header(3);
	store_be32(hdr + O_RT_CLUSTERS, 0);
	expect_reject(-EINVAL, "refcount table");
	make_header(3);
	store_be32(hdr + O_RT_CLUSTERS, (8u << 20) / CS + 1);
	expect_reject(-EINVAL, "refcount table");
	make_header(3);
	store_be64(hdr + O_RT_OFF, CS + 8);
	expect_reject(-EINVAL, "refcount table offset");
	make_header(3);
	store_be64(hdr + O_RT_OFF, 0);
	expect_reject(-EINVAL, "refcount table offset");
	make_header(3);
	store_be64(hdr + O_RT_OFF, FILE_SIZE);
	expect_reject(-EINVAL, "refcount table offset");
	/* Starts at the last cluster but claims two. */
	make_header(3);
	store_be64(hdr + O_RT_OFF, FILE_SIZE - CS);
	store_be32(hdr + O_RT_CLUSTERS, 2);
	expect_reject(-EINVAL, "refcount table offset");
	make_header(3);
	store_be64(hdr + O_RT_OFF, 0xffffffffffff0000ull);
	expect_reject(-EINVAL, "refcount table offset");
}

TEST(header_length_rules)
{
	struct qcow_header h;

	make_header(3);
	store_be32(hdr + O_HDR_LEN, 108);
	expect_reject(-EINVAL, "header length");
	make_header(3);
	store_be32(hdr + O_HDR_LEN, 100);
	expect_reject(-EINVAL, "header length");
	make_header(3);
	store_be32(hdr + O_HDR_LEN, 96);
	expect_reject(-EINVAL, "header length");
	make_header(3);
	store_be32(hdr + O_HDR_LEN, 0);
	expect_reject(-EINVAL, "header length");
	/* Longer headers are fine (unknown fields are kept)... */
	make_header(3);
	store_be32(hdr + O_HDR_LEN, 200);
	ASSERT_OK(parse(&h));
	ASSERT_EQ_U64(h.header_length, 200);
	/* ...but not longer than a cluster. */
	set_cluster_bits(9);
	store_be32(hdr + O_HDR_LEN, 520);
	ASSERT_ERR(qc_header_parse(hdr, 4096, 1 << 20, &h, why, sizeof(why)),
		   -EINVAL);
	ASSERT_TRUE(strstr(why, "header length") != NULL);
}

TEST(compression_type_rules)
{
	struct qcow_header h;

	/* zstd, with its bit and the field. */
	make_header(3);
	store_be32(hdr + O_HDR_LEN, 112);
	store_be64(hdr + O_INCOMPAT, QCOW_INCOMPAT_COMPRESSION);
	hdr[O_COMPRESSION] = 1;
	ASSERT_OK(parse(&h));
	ASSERT_EQ_U64(h.compression_type, 1);

	/* The bit, but a header too short for the field. */
	make_header(3);
	store_be64(hdr + O_INCOMPAT, QCOW_INCOMPAT_COMPRESSION);
	hdr[O_COMPRESSION] = 1;
	expect_reject(-EINVAL, "compression type");

	/* An unknown method. */
	make_header(3);
	store_be32(hdr + O_HDR_LEN, 112);
	store_be64(hdr + O_INCOMPAT, QCOW_INCOMPAT_COMPRESSION);
	hdr[O_COMPRESSION] = 2;
	expect_reject(-ENOTSUP, "compression type");

	/* A non-zlib type without its bit. */
	make_header(3);
	store_be32(hdr + O_HDR_LEN, 112);
	hdr[O_COMPRESSION] = 1;
	expect_reject(-EINVAL, "compression type");

	/* zlib explicitly, without the bit: valid. */
	make_header(3);
	store_be32(hdr + O_HDR_LEN, 112);
	hdr[O_COMPRESSION] = 0;
	ASSERT_OK(parse(&h));
	ASSERT_EQ_U64(h.compression_type, 0);

	/* A byte past a 104-byte header is not the field. */
	make_header(3);
	hdr[O_COMPRESSION] = 7;
	ASSERT_OK(parse(&h));
	ASSERT_EQ_U64(h.compression_type, 0);
}

TEST(extended_l2_needs_16k_clusters)
{
	struct qcow_header h;
	char w[256];

	set_cluster_bits(13);
	store_be64(hdr + O_INCOMPAT, QCOW_INCOMPAT_EXTL2);
	ASSERT_ERR(qc_header_parse(hdr, sizeof(hdr), 4ull << 13, &h, w, sizeof(w)),
		   -EINVAL);
	set_cluster_bits(14);
	store_be64(hdr + O_INCOMPAT, QCOW_INCOMPAT_EXTL2);
	ASSERT_OK(qc_header_parse(hdr, sizeof(hdr), 4ull << 14, &h, w, sizeof(w)));
}

TEST(reject_absurd_size)
{
	make_header(3);
	store_be64(hdr + O_SIZE, (1ull << 62) + 512);
	expect_reject(-EFBIG, "too large");
	make_header(3);
	store_be64(hdr + O_SIZE, UINT64_MAX);
	expect_reject(-EFBIG, "too large");
	/* Just below the limit it is the L1 table that is too small. */
	make_header(3);
	store_be64(hdr + O_SIZE, 1ull << 62);
	expect_reject(-EINVAL, "L1 table is too small");
}

TEST(snapshot_table_rules)
{
	struct qcow_header h;

	make_header(3);
	store_be32(hdr + O_NB_SNAP, 1);
	store_be64(hdr + O_SNAP_OFF, 2ull * CS);
	ASSERT_OK(parse(&h));
	ASSERT_EQ_U64(h.nb_snapshots, 1);
	ASSERT_EQ_U64(h.snapshots_offset, 2ull * CS);
	store_be64(hdr + O_SNAP_OFF, 2ull * CS + 512);
	expect_reject(-EINVAL, "snapshot table offset");
	store_be64(hdr + O_SNAP_OFF, FILE_SIZE);
	expect_reject(-EINVAL, "snapshot table offset");
	store_be32(hdr + O_NB_SNAP, 65537);
	store_be64(hdr + O_SNAP_OFF, 2ull * CS);
	expect_reject(-EFBIG, "snapshots");
}

TEST(backing_name_rules)
{
	struct qcow_header h;

	make_header(3);
	store_be64(hdr + O_BACKING_OFF, 512);
	store_be32(hdr + O_BACKING_SIZE, 10);
	ASSERT_OK(parse(&h));
	ASSERT_EQ_U64(h.backing_file_offset, 512);
	ASSERT_EQ_U64(h.backing_file_size, 10);
	/* Exactly at the end of cluster 0. */
	store_be64(hdr + O_BACKING_OFF, CS - 10);
	ASSERT_OK(parse(&h));
	/* One byte past it. */
	store_be64(hdr + O_BACKING_OFF, CS - 9);
	expect_reject(-EINVAL, "backing file name");
	/* An offset that would wrap around when added to the size. */
	store_be64(hdr + O_BACKING_OFF, UINT64_MAX - 4);
	expect_reject(-EINVAL, "backing file name");
	store_be64(hdr + O_BACKING_OFF, 512);
	store_be32(hdr + O_BACKING_SIZE, 0);
	expect_reject(-EINVAL, "backing file name");
	store_be32(hdr + O_BACKING_SIZE, 1023);
	ASSERT_OK(parse(&h));
	store_be32(hdr + O_BACKING_SIZE, 1024);
	expect_reject(-EINVAL, "backing file name");
	store_be32(hdr + O_BACKING_SIZE, UINT32_MAX);
	expect_reject(-EINVAL, "backing file name");
}

/* --- header_build --- */

static struct qcow_header base_header(uint32_t version)
{
	struct qcow_header h = {
		.version = version,
		.cluster_bits = 16,
		.size = 1ull << 30,
		.l1_size = 2,
		.l1_table_offset = 3ull * CS,
		.refcount_table_offset = CS,
		.refcount_table_clusters = 1,
		.refcount_order = 4,
	};
	return h;
}

/* Walk the header extensions of buf from pos; returns the data of the
 * extension of that type (NULL if absent) and its length, and checks that
 * the walk meets the end marker before limit. */
static const uint8_t *find_ext(const uint8_t *buf, size_t pos, size_t limit,
			       uint32_t type, uint32_t *len)
{
	const uint8_t *found = NULL;

	for (;;) {
		ASSERT_LE_U64(pos + 8, limit);
		uint32_t t = load_be32(buf + pos), l = load_be32(buf + pos + 4);

		if (t == 0) {
			ASSERT_EQ_U64(l, 0);
			return found;
		}
		if (t == type) {
			found = buf + pos + 8;
			*len = l;
		}
		/* Extension data is padded to 8 bytes. */
		pos += 8 + ((l + 7) & ~7u);
	}
}

TEST(build_round_trip_v3)
{
	struct qcow_header in = base_header(3), out;
	size_t used = 0;
	uint32_t len = 0;

	in.compatible_features = QCOW_COMPAT_LAZY;
	in.incompatible_features = QCOW_INCOMPAT_COMPRESSION;
	in.compression_type = 1;
	in.refcount_order = 3;
	memset(hdr, 0xee, sizeof(hdr)); /* build must clear the cluster */
	ASSERT_OK(qc_header_build(hdr, CS, &in, NULL, NULL, &used));
	ASSERT_EQ_U64(load_be32(hdr), 0x514649fb);
	ASSERT_OK(qc_header_parse(hdr, CS, FILE_SIZE, &out, why, sizeof(why)));
	ASSERT_EQ_U64(out.version, 3);
	ASSERT_EQ_U64(out.cluster_bits, 16);
	ASSERT_EQ_U64(out.size, in.size);
	ASSERT_EQ_U64(out.l1_size, 2);
	ASSERT_EQ_U64(out.l1_table_offset, in.l1_table_offset);
	ASSERT_EQ_U64(out.refcount_table_offset, CS);
	ASSERT_EQ_U64(out.refcount_table_clusters, 1);
	ASSERT_EQ_U64(out.refcount_order, 3);
	ASSERT_EQ_U64(out.compatible_features, QCOW_COMPAT_LAZY);
	ASSERT_EQ_U64(out.incompatible_features, QCOW_INCOMPAT_COMPRESSION);
	ASSERT_EQ_U64(out.compression_type, 1);
	ASSERT_EQ_U64(out.backing_file_offset, 0);
	ASSERT_EQ_U64(out.header_length % 8, 0);
	ASSERT_GE_U64(out.header_length, 112);
	/* No backing format; a feature name table in a 64 KiB cluster. */
	ASSERT_NULL(find_ext(hdr, out.header_length, used, QCOW_EXT_BACKING_FMT,
			     &len));
	const uint8_t *ft =
		find_ext(hdr, out.header_length, used, QCOW_EXT_FEATURES, &len);

	ASSERT_NOT_NULL(ft);
	ASSERT_EQ_U64(len % 48, 0);
	/* Everything after what the header used is zero. */
	for (size_t i = used; i < CS; i++)
		if (hdr[i])
			TEST_FAIL("byte %zu after the header is 0x%02x", i,
				  hdr[i]);
}

TEST(build_round_trip_v3_backing)
{
	struct qcow_header in = base_header(3), out;
	const char *name = "../images/base image.qcow2";
	size_t used = 0;
	uint32_t len = 0;

	ASSERT_OK(qc_header_build(hdr, CS, &in, name, "qcow2", &used));
	ASSERT_OK(qc_header_parse(hdr, CS, FILE_SIZE, &out, why, sizeof(why)));
	ASSERT_EQ_U64(out.backing_file_size, strlen(name));
	ASSERT_GE_U64(out.backing_file_offset, out.header_length);
	ASSERT_EQ_MEM(hdr + out.backing_file_offset, name, strlen(name));
	ASSERT_EQ_U64(used, out.backing_file_offset + strlen(name));
	const uint8_t *fmt = find_ext(hdr, out.header_length,
				      out.backing_file_offset,
				      QCOW_EXT_BACKING_FMT, &len);

	ASSERT_NOT_NULL(fmt);
	ASSERT_EQ_U64(len, 5);
	ASSERT_EQ_MEM(fmt, "qcow2", 5);
	ASSERT_EQ_U64(fmt[5], 0); /* padding */
	/* A name without a format. */
	ASSERT_OK(qc_header_build(hdr, CS, &in, name, NULL, &used));
	ASSERT_OK(qc_header_parse(hdr, CS, FILE_SIZE, &out, why, sizeof(why)));
	ASSERT_EQ_MEM(hdr + out.backing_file_offset, name, strlen(name));
	ASSERT_NULL(find_ext(hdr, out.header_length, out.backing_file_offset,
			     QCOW_EXT_BACKING_FMT, &len));
}

TEST(build_round_trip_v2)
{
	struct qcow_header in = base_header(2), out;
	size_t used = 0;
	uint32_t len = 0;

	ASSERT_OK(qc_header_build(hdr, CS, &in, "base.raw", "raw", &used));
	ASSERT_OK(qc_header_parse(hdr, CS, FILE_SIZE, &out, why, sizeof(why)));
	ASSERT_EQ_U64(out.version, 2);
	ASSERT_EQ_U64(out.header_length, 72);
	ASSERT_EQ_U64(out.refcount_order, 4);
	ASSERT_EQ_U64(out.size, in.size);
	ASSERT_EQ_U64(out.backing_file_size, 8);
	ASSERT_EQ_MEM(hdr + out.backing_file_offset, "base.raw", 8);
	/* Extensions start right after the 72 bytes of a v2 header. */
	const uint8_t *fmt = find_ext(hdr, 72, out.backing_file_offset,
				      QCOW_EXT_BACKING_FMT, &len);

	ASSERT_NOT_NULL(fmt);
	ASSERT_EQ_U64(len, 3);
	ASSERT_EQ_MEM(fmt, "raw", 3);
	/* No feature table in a version 2 image. */
	ASSERT_NULL(find_ext(hdr, 72, out.backing_file_offset,
			     QCOW_EXT_FEATURES, &len));
}

TEST(build_small_clusters)
{
	struct qcow_header in = base_header(3), out;
	char name[1024];
	size_t used = 0;

	in.cluster_bits = 9;
	in.size = 1 << 20;
	in.l1_size = 32;
	in.refcount_table_offset = 512;
	in.l1_table_offset = 1024;
	/* A short name fits in 512 bytes... */
	ASSERT_OK(qc_header_build(hdr, 512, &in, "b.qcow2", "qcow2", &used));
	ASSERT_LE_U64(used, 512);
	ASSERT_OK(qc_header_parse(hdr, 512, 4096, &out, why, sizeof(why)));
	ASSERT_EQ_U64(out.cluster_bits, 9);
	ASSERT_EQ_MEM(hdr + out.backing_file_offset, "b.qcow2", 7);
	/* ...a 500-byte one does not. */
	memset(name, 'n', 500);
	name[500] = 0;
	ASSERT_ERR(qc_header_build(hdr, 512, &in, name, NULL, &used), -ENOSPC);
	/* The largest name that fits, exactly. */
	ASSERT_OK(qc_header_build(hdr, 512, &in, "", NULL, &used));
	size_t room = 512 - used;

	memset(name, 'n', room);
	name[room] = 0;
	ASSERT_OK(qc_header_build(hdr, 512, &in, name, NULL, &used));
	ASSERT_EQ_U64(used, 512);
	ASSERT_OK(qc_header_parse(hdr, 512, 4096, &out, why, sizeof(why)));
	ASSERT_EQ_U64(out.backing_file_size, room);
	name[room] = 'n';
	name[room + 1] = 0;
	ASSERT_ERR(qc_header_build(hdr, 512, &in, name, NULL, &used), -ENOSPC);
}

TEST(build_rejects_long_names)
{
	struct qcow_header in = base_header(3);
	char name[1100], fmt[80];
	size_t used;

	memset(name, 'a', 1023);
	name[1023] = 0;
	ASSERT_OK(qc_header_build(hdr, CS, &in, name, NULL, &used));
	name[1023] = 'a';
	name[1024] = 0;
	ASSERT_ERR(qc_header_build(hdr, CS, &in, name, NULL, &used),
		   -ENAMETOOLONG);
	memset(fmt, 'f', 65);
	fmt[65] = 0;
	ASSERT_ERR(qc_header_build(hdr, CS, &in, "b", fmt, &used), -EINVAL);
}

static const struct test_case tests[] = {
	TEST_CASE(parse_valid_v3),
	TEST_CASE(parse_valid_v2_ignores_v3_fields),
	TEST_CASE(parse_short_buffers),
	TEST_CASE(reject_bad_magic),
	TEST_CASE(reject_versions),
	TEST_CASE(cluster_bits_limits),
	TEST_CASE(refcount_order_limits),
	TEST_CASE(incompatible_bits),
	TEST_CASE(reject_encryption),
	TEST_CASE(l1_table_rules),
	TEST_CASE(refcount_table_rules),
	TEST_CASE(header_length_rules),
	TEST_CASE(compression_type_rules),
	TEST_CASE(extended_l2_needs_16k_clusters),
	TEST_CASE(reject_absurd_size),
	TEST_CASE(snapshot_table_rules),
	TEST_CASE(backing_name_rules),
	TEST_CASE(build_round_trip_v3),
	TEST_CASE(build_round_trip_v3_backing),
	TEST_CASE(build_round_trip_v2),
	TEST_CASE(build_small_clusters),
	TEST_CASE(build_rejects_long_names),
};

TEST_MAIN(tests);
