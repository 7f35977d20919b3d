/* SPDX-License-Identifier: MIT */
/*
 * The flow table: every TCP connection, UDP association and ICMP echo
 * flow, in one array sized at start (config max_flows), so no frame can
 * make the table grow. Lookups go through a hash of the key with chains
 * threaded through the entries (an entry in use links to the next in its
 * bucket; a free one to the next free entry).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define NIL UINT32_MAX

/* The instance's table fields live in core.c; these reach them. */
struct vk_flow_table {
	struct vk_flow *flows;
	uint32_t *hash;
	uint32_t mask;
	uint32_t *free_head;
	uint32_t n;
};

int vk_flow_table_init(struct vpnkit *vk, struct vk_flow **flows,
		       uint32_t **hash, uint32_t *mask, uint32_t *free_head);
int vk_flow_table_init(struct vpnkit *vk, struct vk_flow **flows,
		       uint32_t **hash, uint32_t *mask, uint32_t *free_head)
{
	uint32_t n = vk_config(vk)->max_flows, buckets = 16, i;

	while (buckets < n * 2)
		buckets <<= 1;
	*flows = calloc(n, sizeof(**flows));
	*hash = malloc(buckets * sizeof(**hash));
	if (!*flows || !*hash)
		return -ENOMEM;
	for (i = 0; i < buckets; i++)
		(*hash)[i] = NIL;
	for (i = 0; i < n; i++) {
		(*flows)[i].index = i;
		(*flows)[i].fd = -1;
		(*flows)[i].next_free = i + 1 < n ? i + 1 : NIL;
	}
	*mask = buckets - 1;
	*free_head = 0;
	return 0;
}

/* core.c hands out its fields through this. */
void vk_flow_table(struct vpnkit *vk, struct vk_flow **flows, uint32_t **hash,
		   uint32_t *mask, uint32_t **free_head);

static uint32_t key_hash(const struct vk_flow_key *k)
{
	const uint8_t *p = (const uint8_t *)k;
	uint64_t h = 0xcbf29ce484222325ull;
	size_t i;

	for (i = 0; i < sizeof(*k); i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return (uint32_t)(h ^ (h >> 32));
}

static void key_norm(struct vk_flow_key *out, const struct vk_flow_key *k)
{
	*out = *k;
	out->pad = 0;
	out->pad2 = 0;
}

/* The per-protocol flow counters of struct vpnkit_stats. */
static void flow_count(struct vpnkit *vk, const struct vk_flow *f, int d)
{
	struct vpnkit_stats *st = vk_stats(vk);
	unsigned *n;

	switch (f->key.proto) {
	case IPPROTO_TCP:
		n = &st->tcp_flows;
		break;
	case IPPROTO_UDP:
		n = &st->udp_flows;
		break;
	default:
		n = &st->icmp_flows;
		break;
	}
	*n = (unsigned)((int)*n + d);
}

struct vk_flow *vk_flow_lookup(struct vpnkit *vk, const struct vk_flow_key *k)
{
	struct vk_flow *flows;
	uint32_t *hash, mask, *free_head, i;
	struct vk_flow_key key;

	vk_flow_table(vk, &flows, &hash, &mask, &free_head);
	key_norm(&key, k);
	for (i = hash[key_hash(&key) & mask]; i != NIL; i = flows[i].next_free)
		if (memcmp(&flows[i].key, &key, sizeof(key)) == 0)
			return &flows[i];
	return NULL;
}

struct vk_flow *vk_flow_new(struct vpnkit *vk, const struct vk_flow_key *k,
			    struct vk_port *port)
{
	struct vk_flow *flows, *f;
	uint32_t *hash, mask, *free_head, b;

	vk_flow_table(vk, &flows, &hash, &mask, &free_head);
	if (*free_head == NIL) {
		vk_stats(vk)->refused++;
		return NULL;
	}
	f = &flows[*free_head];
	*free_head = f->next_free;
	memset(f->priv, 0, sizeof(f->priv));
	key_norm(&f->key, k);
	f->h.fn = NULL;
	f->port = port;
	f->fd = -1;
	f->active_ns = vk_now_ns();
	f->in_use = true;
	f->hashed = true;
	flow_count(vk, f, 1);
	b = key_hash(&f->key) & mask;
	f->next_free = hash[b];
	hash[b] = f->index;
	return f;
}

static void unhash(struct vk_flow *flows, uint32_t *hash, uint32_t mask,
		   struct vk_flow *f)
{
	uint32_t *pp = &hash[key_hash(&f->key) & mask];

	while (*pp != NIL) {
		if (*pp == f->index) {
			*pp = f->next_free;
			break;
		}
		pp = &flows[*pp].next_free;
	}
	f->hashed = false;
}

void vk_flow_free(struct vpnkit *vk, struct vk_flow *f)
{
	struct vk_flow *flows;
	uint32_t *hash, mask, *free_head;

	if (!f->in_use)
		return;
	vk_flow_table(vk, &flows, &hash, &mask, &free_head);
	if (f->hashed)
		unhash(flows, hash, mask, f);
	if (f->fd >= 0) {
		vk_epoll_del(vk, f->fd);
		close(f->fd);
		vk_fd_give(vk);
		f->fd = -1;
	}
	flow_count(vk, f, -1);
	f->in_use = false;
	f->port = NULL;
	f->next_free = *free_head;
	*free_head = f->index;
}

struct vk_flow *vk_flow_at(struct vpnkit *vk, uint32_t index)
{
	struct vk_flow *flows;
	uint32_t *hash, mask, *free_head;

	vk_flow_table(vk, &flows, &hash, &mask, &free_head);
	return &flows[index];
}

void vk_flow_foreach(struct vpnkit *vk,
		     void (*fn)(struct vpnkit *vk, struct vk_flow *f, void *arg),
		     void *arg)
{
	struct vk_flow *flows;
	uint32_t *hash, mask, *free_head, i, n = vk_config(vk)->max_flows;

	vk_flow_table(vk, &flows, &hash, &mask, &free_head);
	for (i = 0; i < n; i++)
		if (flows[i].in_use)
			fn(vk, &flows[i], arg);
}
