// SPDX-License-Identifier: MIT
/*
 * Unit tests for qcow/cache.c, the write-back cache of metadata buffers:
 * lookup, slots, dropping, least-recently-used eviction of clean entries
 * only, and a randomised comparison against a simple model with many
 * entries sharing hash chains.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <base/test.h>

#include "../internal.h"

#define BS 512u

static struct mcache_ent *must_slot(struct mcache *c, uint64_t off)
{
	struct mcache_ent *e = qc_mcache_slot(c, off);

	ASSERT_NOT_NULL(e);
	ASSERT_EQ_U64(e->off, off);
	ASSERT_TRUE(e->used);
	ASSERT_FALSE(e->dirty);
	ASSERT_NOT_NULL(e->buf);
	return e;
}

TEST(find_slot_drop)
{
	struct mcache c;

	ASSERT_OK(qc_mcache_init(&c, BS, 8));
	ASSERT_NULL(qc_mcache_find(&c, 0));
	ASSERT_EQ_U64(c.misses, 1);

	struct mcache_ent *a = must_slot(&c, 0);
	struct mcache_ent *b = must_slot(&c, 4096);

	ASSERT_TRUE(a != b);
	ASSERT_TRUE(a->buf != b->buf);
	/* Buffers are aligned for O_DIRECT and as large as asked. */
	ASSERT_EQ_U64((uintptr_t)a->buf % 4096, 0);
	memset(a->buf, 0xaa, BS);
	memset(b->buf, 0xbb, BS);
	ASSERT_EQ_PTR(qc_mcache_find(&c, 0), a);
	ASSERT_EQ_PTR(qc_mcache_find(&c, 4096), b);
	ASSERT_EQ_U64(c.hits, 2);
	ASSERT_EQ_U64(a->buf[BS - 1], 0xaa);
	ASSERT_NULL(qc_mcache_find(&c, 512)); /* only exact offsets match */

	qc_mcache_drop(&c, a);
	ASSERT_FALSE(a->used);
	ASSERT_NULL(qc_mcache_find(&c, 0));
	ASSERT_EQ_PTR(qc_mcache_find(&c, 4096), b);
	qc_mcache_drop(&c, a); /* twice: harmless */
	qc_mcache_drop(&c, NULL);
	ASSERT_EQ_PTR(qc_mcache_find(&c, 4096), b);

	/* A dropped entry's slot serves again. */
	struct mcache_ent *d = must_slot(&c, 8192);

	ASSERT_EQ_PTR(qc_mcache_find(&c, 8192), d);
	ASSERT_EQ_PTR(qc_mcache_find(&c, 4096), b);
	qc_mcache_release(&c);
	ASSERT_NULL(c.ents);
}

TEST(capacity_has_a_floor)
{
	struct mcache c;

	ASSERT_OK(qc_mcache_init(&c, BS, 1));
	ASSERT_EQ_U64(c.cap, 4);
	for (uint64_t i = 0; i < 4; i++)
		must_slot(&c, i * BS)->dirty = true;
	ASSERT_NULL(qc_mcache_slot(&c, 99 * BS));
	qc_mcache_release(&c);
}

TEST(lru_evicts_least_recently_used)
{
	struct mcache c;

	ASSERT_OK(qc_mcache_init(&c, BS, 4));
	for (uint64_t i = 0; i < 4; i++)
		must_slot(&c, i * BS);
	/* Use 0, 2 and 3 again: 1 becomes the oldest. */
	ASSERT_NOT_NULL(qc_mcache_find(&c, 0));
	ASSERT_NOT_NULL(qc_mcache_find(&c, 2 * BS));
	ASSERT_NOT_NULL(qc_mcache_find(&c, 3 * BS));
	must_slot(&c, 10 * BS);
	ASSERT_NULL(qc_mcache_find(&c, 1 * BS));
	ASSERT_NOT_NULL(qc_mcache_find(&c, 0));
	ASSERT_NOT_NULL(qc_mcache_find(&c, 2 * BS));
	ASSERT_NOT_NULL(qc_mcache_find(&c, 3 * BS));
	ASSERT_NOT_NULL(qc_mcache_find(&c, 10 * BS));
	/* Now 0 is the oldest (found first above). */
	must_slot(&c, 11 * BS);
	ASSERT_NULL(qc_mcache_find(&c, 0));
	ASSERT_NOT_NULL(qc_mcache_find(&c, 2 * BS));
	ASSERT_NOT_NULL(qc_mcache_find(&c, 11 * BS));
	qc_mcache_release(&c);
}

TEST(dirty_entries_are_never_evicted)
{
	struct mcache c;
	struct mcache_ent *e[4];

	ASSERT_OK(qc_mcache_init(&c, BS, 4));
	for (int i = 0; i < 4; i++) {
		e[i] = must_slot(&c, (uint64_t)i * BS);
		e[i]->dirty = true;
		memset(e[i]->buf, i + 1, BS);
	}
	ASSERT_NULL(qc_mcache_slot(&c, 100 * BS));
	/* A failed slot changes nothing. */
	for (int i = 0; i < 4; i++) {
		ASSERT_EQ_PTR(qc_mcache_find(&c, (uint64_t)i * BS), e[i]);
		ASSERT_TRUE(e[i]->dirty);
		ASSERT_EQ_U64(e[i]->buf[0], (uint64_t)i + 1);
	}
	/* The most recently used entry, once clean, is the only victim. */
	e[3]->dirty = false;
	ASSERT_EQ_PTR(qc_mcache_slot(&c, 100 * BS), e[3]);
	ASSERT_NULL(qc_mcache_find(&c, 3 * BS));
	/* Still the only clean entry: it goes again; the dirty ones stay. */
	ASSERT_EQ_PTR(qc_mcache_slot(&c, 101 * BS), e[3]);
	ASSERT_NULL(qc_mcache_find(&c, 100 * BS));
	for (int i = 0; i < 3; i++)
		ASSERT_EQ_PTR(qc_mcache_find(&c, (uint64_t)i * BS), e[i]);
	qc_mcache_release(&c);
}

/* A clean new slot comes back clean even if its entry was dirty before
 * being dropped. */
TEST(slot_after_dirty_drop_is_clean)
{
	struct mcache c;

	ASSERT_OK(qc_mcache_init(&c, BS, 4));
	struct mcache_ent *e = must_slot(&c, 0);

	e->dirty = true;
	qc_mcache_drop(&c, e);
	for (uint64_t i = 1; i <= 4; i++)
		must_slot(&c, i * BS);
	qc_mcache_release(&c);
}

TEST(drop_range_bounds)
{
	struct mcache c;

	ASSERT_OK(qc_mcache_init(&c, BS, 16));
	for (uint64_t i = 0; i < 10; i++)
		must_slot(&c, i * BS);
	/* [2, 5) in entries: 2, 3, 4 go; 1 and 5 stay. */
	qc_mcache_drop_range(&c, 2 * BS, 3 * BS);
	for (uint64_t i = 0; i < 10; i++)
		ASSERT_EQ_INT(qc_mcache_find(&c, i * BS) == NULL, i >= 2 && i < 5);
	/* Entries are keyed by where they start: a range starting one byte
	 * into entry 6 covers the start of 7 only. */
	qc_mcache_drop_range(&c, 6 * BS + 1, BS);
	ASSERT_NOT_NULL(qc_mcache_find(&c, 6 * BS));
	ASSERT_NULL(qc_mcache_find(&c, 7 * BS));
	ASSERT_NOT_NULL(qc_mcache_find(&c, 8 * BS));
	qc_mcache_drop_range(&c, 0, 0); /* empty */
	ASSERT_NOT_NULL(qc_mcache_find(&c, 0));
	/* Dirty entries are dropped too: the caller decided. */
	qc_mcache_find(&c, 8 * BS)->dirty = true;
	qc_mcache_drop_range(&c, 0, UINT64_MAX);
	for (uint64_t i = 0; i < 10; i++)
		ASSERT_NULL(qc_mcache_find(&c, i * BS));
	/* Everything is reusable. */
	for (uint64_t i = 0; i < 16; i++)
		must_slot(&c, (100 + i) * BS);
	qc_mcache_release(&c);
}

/* Near the top of the offset space the range arithmetic must not wrap. */
TEST(drop_range_high_offsets)
{
	struct mcache c;
	uint64_t top = UINT64_MAX - 4 * BS + 1;

	ASSERT_OK(qc_mcache_init(&c, BS, 8));
	must_slot(&c, 0);
	for (uint64_t i = 0; i < 4; i++)
		must_slot(&c, top + i * BS);
	qc_mcache_drop_range(&c, top + BS, 2 * BS);
	ASSERT_NOT_NULL(qc_mcache_find(&c, top));
	ASSERT_NULL(qc_mcache_find(&c, top + BS));
	ASSERT_NULL(qc_mcache_find(&c, top + 2 * BS));
	ASSERT_NOT_NULL(qc_mcache_find(&c, top + 3 * BS));
	ASSERT_NOT_NULL(qc_mcache_find(&c, 0));
	qc_mcache_release(&c);
}

/*
 * The model: which offsets are cached, when each was last used and
 * whether it is dirty. A slot is refused only when cap entries are cached
 * and all are dirty; otherwise the victim is the least recently used clean
 * entry, and only when the cache is full.
 */
struct model_ent {
	uint64_t off, last;
	bool dirty;
};

static uint64_t rng_state = 0x243f6a8885a308d3ull;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static int model_find(const struct model_ent *m, unsigned n, uint64_t off)
{
	for (unsigned i = 0; i < n; i++)
		if (m[i].off == off)
			return (int)i;
	return -1;
}

static void run_model(unsigned cap, unsigned universe, uint64_t stride,
		      unsigned steps)
{
	struct mcache c;
	struct model_ent *m = calloc(cap, sizeof(*m));
	unsigned n = 0;
	uint64_t now = 0;

	ASSERT_NOT_NULL(m);
	ASSERT_OK(qc_mcache_init(&c, 64, cap));
	for (unsigned step = 0; step < steps; step++) {
		uint64_t off = (rnd() % universe) * stride;
		int mi = model_find(m, n, off);
		unsigned op = (unsigned)(rnd() % 100);
		struct mcache_ent *e = qc_mcache_find(&c, off);

		if ((mi >= 0) != (e != NULL))
			TEST_FAIL("step %u: offset 0x%llx cached %d, model %d",
				  step, (unsigned long long)off, e != NULL,
				  mi >= 0);
		if (e) {
			/* The buffer still holds what was written into it. */
			uint64_t tag;

			memcpy(&tag, e->buf, sizeof(tag));
			ASSERT_EQ_U64(tag, off);
			ASSERT_EQ_INT(e->dirty, m[mi].dirty);
			m[mi].last = ++now;
			if (op < 15) {
				qc_mcache_drop(&c, e);
				m[mi] = m[--n];
			} else if (op < 40) {
				e->dirty = !e->dirty;
				m[mi].dirty = e->dirty;
			}
			continue;
		}
		/* Absent: the model predicts the victim. */
		int victim = -1;

		if (n == cap) {
			for (unsigned i = 0; i < n; i++)
				if (!m[i].dirty &&
				    (victim < 0 || m[i].last < m[victim].last))
					victim = (int)i;
		}
		e = qc_mcache_slot(&c, off);
		if (n == cap && victim < 0) {
			ASSERT_NULL(e);
			/* Clean some entry so that the run goes on. */
			unsigned k = (unsigned)(rnd() % n);
			struct mcache_ent *ke = qc_mcache_find(&c, m[k].off);

			ASSERT_NOT_NULL(ke);
			ke->dirty = false;
			m[k].dirty = false;
			m[k].last = ++now;
			continue;
		}
		ASSERT_NOT_NULL(e);
		ASSERT_EQ_U64(e->off, off);
		if (victim >= 0) {
			uint64_t gone = m[victim].off;

			m[victim] = m[--n];
			if (qc_mcache_find(&c, gone))
				TEST_FAIL(
					"step %u: expected 0x%llx to be evicted",
					step, (unsigned long long)gone);
		}
		memcpy(e->buf, &off, sizeof(off));
		m[n].off = off;
		m[n].last = ++now;
		m[n].dirty = false;
		n++;
		if (op < 30) {
			e->dirty = true;
			m[n - 1].dirty = true;
		}
	}
	/* At the end every modelled entry is there, with its own buffer. */
	for (unsigned i = 0; i < n; i++) {
		struct mcache_ent *e = qc_mcache_find(&c, m[i].off);
		uint64_t tag;

		ASSERT_NOT_NULL(e);
		memcpy(&tag, e->buf, sizeof(tag));
		ASSERT_EQ_U64(tag, m[i].off);
	}
	qc_mcache_release(&c);
	free(m);
}

TEST(model_small_cache)
{
	run_model(4, 12, 4096, 20000);
}

/* 1000 entries in 1024 buckets: chains of several entries are certain. */
TEST(model_many_entries_shared_chains)
{
	run_model(1000, 3000, 65536, 100000);
}

/* Offsets that differ only in high bits, as refcount blocks far apart. */
TEST(model_high_bit_offsets)
{
	run_model(64, 256, 1ull << 40, 50000);
}

/* A full cache of 4096 entries in 4096 buckets has many chains; dropping
 * every third entry unlinks from the heads, middles and tails of them. */
TEST(full_cache_chains)
{
	struct mcache c;
	const unsigned cap = 4096;

	ASSERT_OK(qc_mcache_init(&c, 8, cap));
	for (uint64_t i = 0; i < cap; i++) {
		struct mcache_ent *e = must_slot(&c, i * 8);

		memcpy(e->buf, &i, 8);
	}
	/* Drop every third entry, then every entry must still be found
	 * or absent as expected. */
	for (uint64_t i = 0; i < cap; i += 3)
		qc_mcache_drop(&c, qc_mcache_find(&c, i * 8));
	for (uint64_t i = 0; i < cap; i++) {
		struct mcache_ent *e = qc_mcache_find(&c, i * 8);

		if (i % 3 == 0) {
			ASSERT_NULL(e);
		} else {
			uint64_t v;

			ASSERT_NOT_NULL(e);
			memcpy(&v, e->buf, 8);
			ASSERT_EQ_U64(v, i);
		}
	}
	qc_mcache_release(&c);
}

static const struct test_case tests[] = {
	TEST_CASE(find_slot_drop),
	TEST_CASE(capacity_has_a_floor),
	TEST_CASE(lru_evicts_least_recently_used),
	TEST_CASE(dirty_entries_are_never_evicted),
	TEST_CASE(slot_after_dirty_drop_is_clean),
	TEST_CASE(drop_range_bounds),
	TEST_CASE(drop_range_high_offsets),
	TEST_CASE(model_small_cache),
	TEST_CASE(model_many_entries_shared_chains),
	TEST_CASE(model_high_bit_offsets),
	TEST_CASE(full_cache_chains),
};

TEST_MAIN(tests);
