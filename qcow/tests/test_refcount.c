// SPDX-License-Identifier: MIT
/*
 * Unit tests for the pure parts of qcow/refcount.c and qcow/cluster.c:
 * refcount block entries of every width qcow2 allows (rb_get_entry,
 * rb_set_entry), the set of metadata clusters (meta_set_*), and the
 * compressed cluster descriptor arithmetic (compressed_clusters).
 *
 * Expected values come from the specification (docs/interop/qcow2.txt):
 * refcounts narrower than a byte are packed least significant bit first,
 * wider ones are big-endian; a compressed L2 entry holds the host offset
 * in its low x = 62 - (cluster_bits - 8) bits and, above them, the number
 * of 512-byte sectors it occupies beyond the first.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <base/endian.h>
#include <base/test.h>

#include "../internal.h"

#define RB_BYTES 4096u

static const unsigned widths[] = { 1, 2, 4, 8, 16, 32, 64 };
#define N_WIDTHS (sizeof(widths) / sizeof(widths[0]))

static uint64_t width_mask(unsigned bits)
{
	return bits == 64 ? UINT64_MAX : (1ull << bits) - 1;
}

/* A reproducible spread of values for entry i. */
static uint64_t pattern(uint32_t i, unsigned bits)
{
	uint64_t x = (i + 1) * 0x9e3779b97f4a7c15ull;

	x ^= x >> 29;
	return x & width_mask(bits);
}

TEST(entries_round_trip_every_width)
{
	static uint8_t rb[RB_BYTES];

	for (size_t w = 0; w < N_WIDTHS; w++) {
		struct qcow_image img = { .refcount_bits = widths[w] };
		uint32_t n = RB_BYTES * 8 / widths[w];

		memset(rb, 0, sizeof(rb));
		for (uint32_t i = 0; i < n; i++)
			qc_rb_set_entry(&img, rb, i, pattern(i, widths[w]));
		for (uint32_t i = 0; i < n; i++)
			if (qc_rb_get_entry(&img, rb, i) != pattern(i, widths[w]))
				TEST_FAIL(
					"width %u entry %u: got 0x%llx want 0x%llx",
					widths[w], i,
					(unsigned long long)qc_rb_get_entry(&img,
									 rb, i),
					(unsigned long long)pattern(i,
								    widths[w]));
		/* Rewrite in reverse order with other values. */
		for (uint32_t i = n; i-- > 0;)
			qc_rb_set_entry(&img, rb, i, pattern(i + 7, widths[w]));
		for (uint32_t i = 0; i < n; i++)
			ASSERT_EQ_U64(qc_rb_get_entry(&img, rb, i),
				      pattern(i + 7, widths[w]));
	}
}

/* Setting one entry leaves every other entry as it was. */
TEST(entries_leave_neighbours_alone)
{
	static uint8_t rb[RB_BYTES], before[RB_BYTES];

	for (size_t w = 0; w < N_WIDTHS; w++) {
		unsigned bits = widths[w];
		struct qcow_image img = { .refcount_bits = bits };
		uint32_t n = RB_BYTES * 8 / bits;
		const uint32_t probe[] = {
			0, 1, 2, 3, 5, 7, 8, 9, n / 2 - 1, n / 2, n - 2, n - 1
		};

		for (int fill = 0; fill < 2; fill++) {
			for (size_t p = 0; p < sizeof(probe) / sizeof(probe[0]);
			     p++) {
				uint32_t i = probe[p];
				uint64_t v = fill ? 0 : width_mask(bits);

				memset(rb, fill ? 0xff : 0x00, sizeof(rb));
				memcpy(before, rb, sizeof(rb));
				qc_rb_set_entry(&img, rb, i, v);
				ASSERT_EQ_U64(qc_rb_get_entry(&img, rb, i), v);
				/* Only the bits of entry i changed. */
				for (uint32_t k = 0; k < n; k++)
					if (k != i &&
					    qc_rb_get_entry(&img, rb, k) !=
						    qc_rb_get_entry(&img, before,
								 k))
						TEST_FAIL(
							"width %u: setting entry %u changed entry %u",
							bits, i, k);
				size_t lo = (size_t)i * bits / 8;
				size_t hi = ((size_t)(i + 1) * bits + 7) / 8;

				for (size_t b = 0; b < RB_BYTES; b++)
					if ((b < lo || b >= hi) &&
					    rb[b] != before[b])
						TEST_FAIL(
							"width %u: setting entry %u changed byte %zu",
							bits, i, b);
			}
		}
	}
}

/* Values wider than the entry must not spill into the neighbours. */
TEST(entries_mask_wide_values)
{
	uint8_t rb[16];

	for (unsigned bits = 1; bits <= 8; bits *= 2) {
		struct qcow_image img = { .refcount_bits = bits };

		memset(rb, 0, sizeof(rb));
		qc_rb_set_entry(&img, rb, 1, UINT64_MAX);
		ASSERT_EQ_U64(qc_rb_get_entry(&img, rb, 0), 0);
		ASSERT_EQ_U64(qc_rb_get_entry(&img, rb, 1), width_mask(bits));
		ASSERT_EQ_U64(qc_rb_get_entry(&img, rb, 2), 0);
	}
}

/* The byte layout, as the specification draws it. */
TEST(entries_on_disk_layout)
{
	uint8_t rb[32];
	struct qcow_image img;

	/* 1 bit: entry 0 is bit 0 of byte 0, entry 7 bit 7, entry 8 byte 1. */
	img.refcount_bits = 1;
	memset(rb, 0, sizeof(rb));
	qc_rb_set_entry(&img, rb, 0, 1);
	ASSERT_EQ_U64(rb[0], 0x01);
	qc_rb_set_entry(&img, rb, 7, 1);
	ASSERT_EQ_U64(rb[0], 0x81);
	qc_rb_set_entry(&img, rb, 8, 1);
	ASSERT_EQ_U64(rb[1], 0x01);
	rb[2] = 0x04;
	ASSERT_EQ_U64(qc_rb_get_entry(&img, rb, 18), 1);
	ASSERT_EQ_U64(qc_rb_get_entry(&img, rb, 17), 0);

	/* 2 bits: entry 1 occupies bits 2-3. */
	img.refcount_bits = 2;
	memset(rb, 0, sizeof(rb));
	qc_rb_set_entry(&img, rb, 1, 3);
	ASSERT_EQ_U64(rb[0], 0x0c);
	qc_rb_set_entry(&img, rb, 3, 2);
	ASSERT_EQ_U64(rb[0], 0x8c);
	rb[1] = 0x1b; /* entries 4..7 = 3, 2, 1, 0 */
	ASSERT_EQ_U64(qc_rb_get_entry(&img, rb, 4), 3);
	ASSERT_EQ_U64(qc_rb_get_entry(&img, rb, 5), 2);
	ASSERT_EQ_U64(qc_rb_get_entry(&img, rb, 6), 1);
	ASSERT_EQ_U64(qc_rb_get_entry(&img, rb, 7), 0);

	/* 4 bits: the low nibble is the even entry. */
	img.refcount_bits = 4;
	memset(rb, 0, sizeof(rb));
	qc_rb_set_entry(&img, rb, 0, 0x5);
	qc_rb_set_entry(&img, rb, 1, 0xa);
	ASSERT_EQ_U64(rb[0], 0xa5);
	rb[3] = 0x3c;
	ASSERT_EQ_U64(qc_rb_get_entry(&img, rb, 6), 0xc);
	ASSERT_EQ_U64(qc_rb_get_entry(&img, rb, 7), 0x3);

	img.refcount_bits = 8;
	memset(rb, 0, sizeof(rb));
	qc_rb_set_entry(&img, rb, 5, 0xab);
	ASSERT_EQ_U64(rb[5], 0xab);
	ASSERT_EQ_U64(rb[4], 0);
	ASSERT_EQ_U64(rb[6], 0);

	/* 16, 32 and 64 bits: big-endian. */
	img.refcount_bits = 16;
	memset(rb, 0, sizeof(rb));
	qc_rb_set_entry(&img, rb, 1, 0x1234);
	ASSERT_EQ_U64(rb[2], 0x12);
	ASSERT_EQ_U64(rb[3], 0x34);
	rb[8] = 0xbe;
	rb[9] = 0xef;
	ASSERT_EQ_U64(qc_rb_get_entry(&img, rb, 4), 0xbeef);

	img.refcount_bits = 32;
	memset(rb, 0, sizeof(rb));
	qc_rb_set_entry(&img, rb, 2, 0x01020304);
	ASSERT_EQ_MEM(rb + 8, "\x01\x02\x03\x04", 4);
	ASSERT_EQ_U64(load_be32(rb + 8), 0x01020304);

	img.refcount_bits = 64;
	memset(rb, 0, sizeof(rb));
	qc_rb_set_entry(&img, rb, 3, 0xfedcba9876543210ull);
	ASSERT_EQ_MEM(rb + 24, "\xfe\xdc\xba\x98\x76\x54\x32\x10", 8);
	ASSERT_EQ_U64(qc_rb_get_entry(&img, rb, 3), 0xfedcba9876543210ull);
	ASSERT_EQ_U64(qc_rb_get_entry(&img, rb, 2), 0);
}

/* The last entry of a 2 MiB refcount block: offsets past 2^32 bits. */
TEST(entries_large_block)
{
	size_t bytes = 2u << 20;
	uint8_t *rb = calloc(1, bytes);

	ASSERT_NOT_NULL(rb);
	for (size_t w = 0; w < N_WIDTHS; w++) {
		struct qcow_image img = { .refcount_bits = widths[w] };
		uint32_t last = (uint32_t)(bytes * 8 / widths[w] - 1);
		uint64_t v = width_mask(widths[w]);

		qc_rb_set_entry(&img, rb, last, v);
		ASSERT_EQ_U64(qc_rb_get_entry(&img, rb, last), v);
		ASSERT_EQ_U64(qc_rb_get_entry(&img, rb, last - 1), 0);
		ASSERT_NE_U64(rb[bytes - 1], 0);
		qc_rb_set_entry(&img, rb, last, 0);
		ASSERT_EQ_U64(rb[bytes - 1], 0);
	}
	free(rb);
}

/* --- the metadata cluster set --- */

TEST(meta_set_add_has_del)
{
	struct qcow_image img = { 0 };

	ASSERT_FALSE(qc_meta_set_has(&img, 0));
	qc_meta_set_del(&img, 5); /* on an empty set: nothing */
	qc_meta_set_add(&img, 0); /* cluster 0 is a valid member */
	ASSERT_TRUE(qc_meta_set_has(&img, 0));
	ASSERT_FALSE(qc_meta_set_has(&img, 1));
	/* Enough members to grow the table several times. */
	for (uint64_t c = 1; c < 20000; c += 3)
		qc_meta_set_add(&img, c * 1000003);
	for (uint64_t c = 1; c < 20000; c++)
		if (qc_meta_set_has(&img, c * 1000003) != (c % 3 == 1))
			TEST_FAIL("cluster %llu: membership wrong",
				  (unsigned long long)(c * 1000003));
	size_t n = img.meta_n;

	qc_meta_set_add(&img, 1000003); /* a duplicate counts once */
	ASSERT_EQ_U64(img.meta_n, n);
	/* Delete every other member; the rest must stay reachable past the
	 * deleted slots (tombstones), and re-adding works. */
	for (uint64_t c = 1; c < 20000; c += 6)
		qc_meta_set_del(&img, c * 1000003);
	for (uint64_t c = 1; c < 20000; c += 3)
		ASSERT_EQ_INT(qc_meta_set_has(&img, c * 1000003), c % 6 != 1);
	for (uint64_t c = 1; c < 20000; c += 6)
		qc_meta_set_add(&img, c * 1000003);
	for (uint64_t c = 1; c < 20000; c += 3)
		ASSERT_TRUE(qc_meta_set_has(&img, c * 1000003));
	ASSERT_TRUE(qc_meta_set_has(&img, 0));
	ASSERT_EQ_U64(img.meta_n, n);
	free(img.meta_set);
}

/* Adding and deleting in turn must not fill the table with tombstones
 * until a lookup of an absent key never ends. */
TEST(meta_set_churn)
{
	struct qcow_image img = { 0 };

	for (uint64_t c = 0; c < 200000; c++) {
		qc_meta_set_add(&img, c);
		if (c >= 8)
			qc_meta_set_del(&img, c - 8);
	}
	ASSERT_EQ_U64(img.meta_n, 8);
	for (uint64_t c = 200000 - 8; c < 200000; c++)
		ASSERT_TRUE(qc_meta_set_has(&img, c));
	ASSERT_FALSE(qc_meta_set_has(&img, 3));
	ASSERT_FALSE(qc_meta_set_has(&img, 1ull << 50));
	free(img.meta_set);
}

/* --- compressed cluster descriptors --- */

static void descr(unsigned cluster_bits, uint64_t entry, uint64_t want_first,
		  uint64_t want_count, uint64_t want_off, uint64_t want_size)
{
	struct qcow_image img = { 0 };
	uint64_t first = 1234, count = 1234, coff = 1234, csize = 1234;

	img.h.cluster_bits = cluster_bits;
	img.cluster_size = 1u << cluster_bits;
	ASSERT_OK(qc_compressed_clusters(&img, entry, &first, &count, &coff,
				      &csize));
	ASSERT_EQ_U64(coff, want_off);
	ASSERT_EQ_U64(csize, want_size);
	ASSERT_EQ_U64(first, want_first);
	ASSERT_EQ_U64(count, want_count);
}

static uint64_t centry(unsigned cluster_bits, uint64_t off, uint64_t extra)
{
	unsigned x = 62 - (cluster_bits - 8);

	return OFLAG_COMPRESSED | (extra << x) | off;
}

TEST(compressed_descriptor_inside_one_cluster)
{
	/* 64 KiB clusters: x = 54. Data at 0x51234, 3 more sectors: the
	 * sectors are 0x51200..0x51a00. */
	descr(16, centry(16, 0x51234, 3), 5, 1, 0x51234, 0x51a00 - 0x51234);
	/* Sector aligned, a single sector. */
	descr(16, centry(16, 0x70000, 0), 7, 1, 0x70000, 512);
	/* The last sector of a cluster. */
	descr(16, centry(16, 0x7fe00, 0), 7, 1, 0x7fe00, 512);
	/* The offset field's top bit is bit 53 with 64 KiB clusters. */
	descr(16, centry(16, 1ull << 53, 0), 1ull << 37, 1, 1ull << 53, 512);
}

TEST(compressed_descriptor_crossing_clusters)
{
	/* 64 KiB: 0x5ff00 + 2 sectors beyond 0x5fe00: ends at 0x60400. */
	descr(16, centry(16, 0x5ff00, 2), 5, 2, 0x5ff00, 0x500);
	/* 512-byte clusters: x = 61, one bit of sector count. Data at
	 * 0x1010 with one more sector spans clusters 8 and 9. */
	descr(9, centry(9, 0x1010, 1), 8, 2, 0x1010, 0x1400 - 0x1010);
	descr(9, centry(9, 0x1010, 0), 8, 1, 0x1010, 0x1200 - 0x1010);
	/* 4 KiB clusters: x = 58, 4 bits of sectors: 15 more sectors from
	 * 0x2e00 end at 0x4e00, touching clusters 2, 3 and 4. */
	descr(12, centry(12, 0x2e00, 15), 2, 3, 0x2e00, 0x2000);
	/* 2 MiB clusters: x = 49, 13 bits; the largest count, 8192
	 * sectors (4 MiB), from 100 bytes before the end of cluster 2. */
	descr(21, centry(21, 3ull * (2u << 20) - 100, 8191), 2, 3,
	      3ull * (2u << 20) - 100, 0x9ffe00 - (3ull * (2u << 20) - 100));
}

TEST(compressed_descriptor_fields_do_not_mix)
{
	/* All sector bits set, offset zero: the offset stays zero. */
	descr(16, centry(16, 0, 0xff), 0, 2, 0, 256 * 512);
	/* All offset bits set, no extra sector: nothing leaks into the
	 * count. Offset 2^54 - 1 is in the last sector of its cluster. */
	uint64_t off = (1ull << 54) - 1;

	descr(16, centry(16, off, 0), off >> 16, 1, off, 1);
	/* The COPIED bit (never valid here) is not part of the offset. */
	descr(16, centry(16, 0x51234, 3) | OFLAG_COPIED, 5, 1, 0x51234,
	      0x51a00 - 0x51234);
}

static const struct test_case tests[] = {
	TEST_CASE(entries_round_trip_every_width),
	TEST_CASE(entries_leave_neighbours_alone),
	TEST_CASE(entries_mask_wide_values),
	TEST_CASE(entries_on_disk_layout),
	TEST_CASE(entries_large_block),
	TEST_CASE(meta_set_add_has_del),
	TEST_CASE(meta_set_churn),
	TEST_CASE(compressed_descriptor_inside_one_cluster),
	TEST_CASE(compressed_descriptor_crossing_clusters),
	TEST_CASE(compressed_descriptor_fields_do_not_mix),
};

TEST_MAIN(tests);
