/* SPDX-License-Identifier: MIT */
/*
 * A write-back cache of metadata buffers (L2 slices, refcount blocks) keyed
 * by their offset in the image file. Buffers are allocated on first use up
 * to a fixed number, found through a hash table with chains, and evicted
 * least-recently-used first. The cache never writes anything itself: a
 * dirty entry is never evicted, and when only dirty entries remain
 * mcache_slot returns NULL so that the caller writes back in the proper
 * order (see meta_flush) and tries again.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static unsigned hash_off(const struct mcache *c, uint64_t off)
{
	uint64_t x = off * 0x9e3779b97f4a7c15ull;

	return (unsigned)(x >> 32) & (c->nbuckets - 1);
}

int qc_mcache_init(struct mcache *c, size_t buf_size, unsigned cap)
{
	memset(c, 0, sizeof(*c));
	if (cap < 4)
		cap = 4;
	c->buf_size = buf_size;
	c->cap = cap;
	c->nbuckets = 1;
	while (c->nbuckets < cap)
		c->nbuckets <<= 1;
	c->buckets = malloc(sizeof(int) * c->nbuckets);
	c->ents = calloc(cap, sizeof(*c->ents));
	if (!c->buckets || !c->ents) {
		free(c->buckets);
		free(c->ents);
		memset(c, 0, sizeof(*c));
		return -ENOMEM;
	}
	for (unsigned i = 0; i < c->nbuckets; i++)
		c->buckets[i] = -1;
	return 0;
}

void qc_mcache_release(struct mcache *c)
{
	if (c->ents)
		for (unsigned i = 0; i < c->n; i++)
			free(c->ents[i].buf);
	free(c->ents);
	free(c->buckets);
	memset(c, 0, sizeof(*c));
}

struct mcache_ent *qc_mcache_find(struct mcache *c, uint64_t off)
{
	for (int i = c->buckets[hash_off(c, off)]; i >= 0; i = c->ents[i].next) {
		struct mcache_ent *e = &c->ents[i];

		if (e->off == off) {
			e->lru = ++c->tick;
			c->hits++;
			return e;
		}
	}
	c->misses++;
	return NULL;
}

static void unlink_ent(struct mcache *c, struct mcache_ent *e)
{
	int idx = (int)(e - c->ents);
	int *pp = &c->buckets[hash_off(c, e->off)];

	while (*pp >= 0) {
		if (*pp == idx) {
			*pp = e->next;
			break;
		}
		pp = &c->ents[*pp].next;
	}
	e->used = false;
	e->dirty = false;
	e->next = -1;
}

struct mcache_ent *qc_mcache_slot(struct mcache *c, uint64_t off)
{
	struct mcache_ent *e = NULL;

	if (c->n < c->cap) {
		void *buf = NULL;

		if (posix_memalign(&buf, 4096, c->buf_size) == 0) {
			e = &c->ents[c->n++];
			e->buf = buf;
			e->used = false;
		}
	}
	if (!e) {
		/* Evict the least recently used clean entry. */
		uint64_t best = UINT64_MAX;

		for (unsigned i = 0; i < c->n; i++) {
			struct mcache_ent *x = &c->ents[i];

			if (!x->used) {
				e = x;
				break;
			}
			if (!x->dirty && x->lru < best) {
				best = x->lru;
				e = x;
			}
		}
		if (!e)
			return NULL;
		if (e->used)
			unlink_ent(c, e);
	}
	unsigned b = hash_off(c, off);

	e->off = off;
	e->used = true;
	e->dirty = false;
	e->lru = ++c->tick;
	e->next = c->buckets[b];
	c->buckets[b] = (int)(e - c->ents);
	return e;
}

void qc_mcache_drop(struct mcache *c, struct mcache_ent *e)
{
	if (e && e->used)
		unlink_ent(c, e);
}

void qc_mcache_drop_range(struct mcache *c, uint64_t off, uint64_t len)
{
	for (unsigned i = 0; i < c->n; i++) {
		struct mcache_ent *e = &c->ents[i];

		if (e->used && e->off >= off && e->off - off < len)
			unlink_ent(c, e);
	}
}
