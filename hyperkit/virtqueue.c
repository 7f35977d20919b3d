// SPDX-License-Identifier: MIT
/*
 * Split virtqueues over untrusted guest memory.
 *
 * Theory of operation. The driver publishes chain heads in the available
 * ring and bumps avail->idx; we consume them in order (last_avail), walk
 * each chain through the descriptor table, hand the device iovecs into
 * guest RAM, and the device returns the head through the used ring.
 *
 * Every guest-controlled number is checked before it is used: the avail
 * index may run ahead of us by at most the queue size; a head and every
 * "next" must index the table in use; a chain visits at most as many
 * descriptors as its table has (so a cycle is caught after one lap); an
 * indirect table must be a whole number of descriptors, wholly in RAM,
 * not larger than HK_VQ_MAX_SIZE, and may not itself contain an indirect
 * descriptor; a readable descriptor may not follow a writable one; the
 * total length is capped. Descriptors are copied out of guest memory
 * before they are looked at, so a guest rewriting them concurrently sees
 * at worst its own request fail.
 *
 * Ordering: the avail index is read with acquire semantics before the
 * ring entries it covers; used entries are written before the used index
 * is stored with release semantics. Between publishing an index and
 * reading the other side's event index (used_event / avail_event) there is
 * a full barrier, as the spec requires for event suppression to be free
 * of lost wake-ups.
 */
#include "virtqueue.h"

#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "platform.h"

/* Byte layout of the rings (virtio 1.x, 2.7). */
#define DESC_SIZE 16u
#define AVAIL_RING_OFF 4u
#define USED_RING_OFF 4u
#define USED_ELEM_SIZE 8u

struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

static void desc_read(const uint8_t *table, unsigned i, struct desc *d)
{
	uint8_t raw[DESC_SIZE];

	memcpy(raw, table + (size_t)i * DESC_SIZE, sizeof(raw));
	memcpy(&d->addr, raw, 8);
	memcpy(&d->len, raw + 8, 4);
	memcpy(&d->flags, raw + 12, 2);
	memcpy(&d->next, raw + 14, 2);
	d->addr = le64toh(d->addr);
	d->len = le32toh(d->len);
	d->flags = le16toh(d->flags);
	d->next = le16toh(d->next);
}

static uint16_t load16_acquire(const uint8_t *p)
{
	return le16toh(__atomic_load_n((const uint16_t *)(const void *)p,
				       __ATOMIC_ACQUIRE));
}

static uint16_t load16(const uint8_t *p)
{
	return le16toh(__atomic_load_n((const uint16_t *)(const void *)p,
				       __ATOMIC_RELAXED));
}

static void store16_release(uint8_t *p, uint16_t v)
{
	__atomic_store_n((uint16_t *)(void *)p, htole16(v), __ATOMIC_RELEASE);
}

static void store16(uint8_t *p, uint16_t v)
{
	__atomic_store_n((uint16_t *)(void *)p, htole16(v), __ATOMIC_RELAXED);
}

static void store32(uint8_t *p, uint32_t v)
{
	__atomic_store_n((uint32_t *)(void *)p, htole32(v), __ATOMIC_RELAXED);
}

void hk_vq_init(struct hk_vq *vq, struct hk_vm *vm, const struct logger *log,
		const char *name)
{
	memset(vq, 0, sizeof(*vq));
	vq->vm = vm;
	vq->log = log;
	vq->rl = (struct ratelimit)RATELIMIT_DEFAULT;
	snprintf(vq->name, sizeof(vq->name), "%s", name ? name : "vq");
}

void hk_vq_reset(struct hk_vq *vq)
{
	vq->size = 0;
	vq->desc_gpa = vq->avail_gpa = vq->used_gpa = 0;
	vq->event_idx = false;
	vq->enabled = false;
	vq->broken = false;
	vq->desc = vq->avail = vq->used = NULL;
	vq->last_avail = vq->used_idx = vq->signalled_used = 0;
	vq->signalled_used_valid = false;
}

void hk_vq_set_broken(struct hk_vq *vq, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	if (vq->broken)
		return;
	vq->broken = true;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	logger_printf_limited(vq->log, &vq->rl, LOG_LEVEL_WARN,
			      "%s: queue broken: %s", vq->name, msg);
}

int hk_vq_enable(struct hk_vq *vq)
{
	uint16_t size = vq->size;

	if (size == 0 || size > HK_VQ_MAX_SIZE || (size & (size - 1))) {
		logger_printf_limited(vq->log, &vq->rl, LOG_LEVEL_WARN,
				      "%s: bad queue size %u", vq->name, size);
		return -EINVAL;
	}
	if ((vq->desc_gpa & 15) || (vq->avail_gpa & 1) || (vq->used_gpa & 3)) {
		logger_printf_limited(vq->log, &vq->rl, LOG_LEVEL_WARN,
				      "%s: misaligned ring", vq->name);
		return -EINVAL;
	}
	/* Sizes include avail's used_event and used's avail_event. */
	vq->desc = hk_gpa(vq->vm, vq->desc_gpa, (uint64_t)size * DESC_SIZE);
	vq->avail = hk_gpa(vq->vm, vq->avail_gpa, 6 + 2 * (uint64_t)size);
	vq->used = hk_gpa(vq->vm, vq->used_gpa,
			  6 + USED_ELEM_SIZE * (uint64_t)size);
	if (!vq->desc || !vq->avail || !vq->used) {
		logger_printf_limited(vq->log, &vq->rl, LOG_LEVEL_WARN,
				      "%s: ring outside guest RAM", vq->name);
		vq->desc = vq->avail = vq->used = NULL;
		return -EINVAL;
	}
	vq->last_avail = 0;
	vq->used_idx = 0;
	vq->signalled_used = 0;
	vq->signalled_used_valid = false;
	vq->broken = false;
	vq->enabled = true;
	return 0;
}

/* Append [p, p + len) to the chain as readable or writable. */
static int chain_add(struct hk_vq *vq, struct hk_vq_chain *c,
		     const struct desc *d)
{
	bool writable = d->flags & HK_VQ_DESC_F_WRITE;
	uint64_t total;
	void *p;

	if (!writable && c->n_in) {
		hk_vq_set_broken(vq, "readable descriptor after writable");
		return -EIO;
	}
	if (!u64_add_ok(c->out_len + c->in_len, d->len, &total) ||
	    total > HK_VQ_MAX_CHAIN_BYTES) {
		hk_vq_set_broken(vq, "chain longer than %llu bytes",
				 (unsigned long long)HK_VQ_MAX_CHAIN_BYTES);
		return -EIO;
	}
	if (d->len == 0)
		return 0;
	p = hk_gpa(vq->vm, d->addr, d->len);
	if (!p) {
		hk_vq_set_broken(vq, "buffer 0x%llx+%u outside guest RAM",
				 (unsigned long long)d->addr, d->len);
		return -EIO;
	}
	if (c->n_out + c->n_in >= HK_VQ_MAX_IOV) {
		hk_vq_set_broken(vq, "more than %u buffers in a chain",
				 HK_VQ_MAX_IOV);
		return -EIO;
	}
	c->iov[c->n_out + c->n_in].iov_base = p;
	c->iov[c->n_out + c->n_in].iov_len = d->len;
	if (writable) {
		c->n_in++;
		c->in_len += d->len;
	} else {
		c->n_out++;
		c->out_len += d->len;
	}
	return 0;
}

int hk_vq_pop(struct hk_vq *vq, struct hk_vq_chain *c)
{
	const uint8_t *table;
	unsigned table_len, steps, i;
	bool indirect = false;
	uint16_t avail_idx, head;
	struct desc d;

	if (vq->broken)
		return -EIO;
	if (!vq->enabled)
		return 0;
	avail_idx = load16_acquire(vq->avail + 2);
	if (avail_idx == vq->last_avail)
		return 0;
	if ((uint16_t)(avail_idx - vq->last_avail) > vq->size) {
		hk_vq_set_broken(vq, "avail index %u ran %u ahead of %u",
				 avail_idx,
				 (uint16_t)(avail_idx - vq->last_avail),
				 vq->last_avail);
		return -EIO;
	}
	head = load16(vq->avail + AVAIL_RING_OFF +
		      2u * (vq->last_avail & (vq->size - 1)));
	if (head >= vq->size) {
		hk_vq_set_broken(vq, "head %u beyond queue size %u", head,
				 vq->size);
		return -EIO;
	}

	c->head = head;
	c->n_out = c->n_in = 0;
	c->out_len = c->in_len = 0;
	table = vq->desc;
	table_len = vq->size;
	i = head;
	steps = 0;
	for (;;) {
		if (steps++ >= table_len) {
			hk_vq_set_broken(vq, "descriptor chain loops");
			return -EIO;
		}
		desc_read(table, i, &d);
		if (d.flags & HK_VQ_DESC_F_INDIRECT) {
			if (indirect) {
				hk_vq_set_broken(vq, "nested indirect table");
				return -EIO;
			}
			if (d.flags & HK_VQ_DESC_F_NEXT) {
				hk_vq_set_broken(vq, "indirect with NEXT");
				return -EIO;
			}
			if (d.len == 0 || d.len % DESC_SIZE ||
			    d.len / DESC_SIZE > HK_VQ_MAX_SIZE) {
				hk_vq_set_broken(vq,
						 "indirect table of %u bytes",
						 d.len);
				return -EIO;
			}
			table = hk_gpa(vq->vm, d.addr, d.len);
			if (!table) {
				hk_vq_set_broken(vq,
						 "indirect table 0x%llx+%u "
						 "outside guest RAM",
						 (unsigned long long)d.addr,
						 d.len);
				return -EIO;
			}
			indirect = true;
			table_len = d.len / DESC_SIZE;
			i = 0;
			steps = 0;
			continue;
		}
		if (chain_add(vq, c, &d) < 0)
			return -EIO;
		if (!(d.flags & HK_VQ_DESC_F_NEXT))
			break;
		i = d.next;
		if (i >= table_len) {
			hk_vq_set_broken(vq, "next %u beyond table of %u", i,
					 table_len);
			return -EIO;
		}
	}

	vq->last_avail++;
	/* Tell the driver how far we got: it need not notify us for
	 * buffers we will see anyway. */
	if (vq->event_idx)
		store16(vq->used + USED_RING_OFF +
				USED_ELEM_SIZE * (size_t)vq->size,
			vq->last_avail);
	return 1;
}

void hk_vq_push(struct hk_vq *vq, uint16_t head, uint32_t len)
{
	uint8_t *elem;

	if (!vq->enabled || vq->broken)
		return;
	elem = vq->used + USED_RING_OFF +
	       USED_ELEM_SIZE * (size_t)(vq->used_idx & (vq->size - 1));
	store32(elem, head);
	store32(elem + 4, len);
	vq->used_idx++;
	store16_release(vq->used + 2, vq->used_idx);
}

bool hk_vq_rearm(struct hk_vq *vq)
{
	if (!vq->enabled || vq->broken)
		return false;
	if (vq->event_idx)
		store16(vq->used + USED_RING_OFF +
				USED_ELEM_SIZE * (size_t)vq->size,
			vq->last_avail);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return load16_acquire(vq->avail + 2) != vq->last_avail;
}

bool hk_vq_should_interrupt(struct hk_vq *vq)
{
	uint16_t old, new_idx, used_event;
	bool valid;

	if (!vq->enabled)
		return false;
	/* Our used index must be visible before we read the driver's
	 * wishes, or we could miss its request for an interrupt. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!vq->event_idx)
		return !(load16(vq->avail) & HK_VQ_AVAIL_F_NO_INTERRUPT);

	old = vq->signalled_used;
	valid = vq->signalled_used_valid;
	new_idx = vq->used_idx;
	vq->signalled_used = new_idx;
	vq->signalled_used_valid = true;
	if (!valid)
		return true;
	used_event = load16(vq->avail + AVAIL_RING_OFF + 2u * vq->size);
	/* vring_need_event: did new_idx step past used_event since old? */
	return (uint16_t)(new_idx - used_event - 1) < (uint16_t)(new_idx - old);
}

/* ---------------------------------------------------------------- iovecs */

size_t hk_iov_to_buf(const struct iovec *iov, unsigned n, size_t off, void *buf,
		     size_t len)
{
	size_t done = 0;

	for (unsigned i = 0; i < n && done < len; i++) {
		size_t chunk;

		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		chunk = iov[i].iov_len - off;
		if (chunk > len - done)
			chunk = len - done;
		memcpy((uint8_t *)buf + done, (uint8_t *)iov[i].iov_base + off,
		       chunk);
		done += chunk;
		off = 0;
	}
	return done;
}

size_t hk_iov_from_buf(const struct iovec *iov, unsigned n, size_t off,
		       const void *buf, size_t len)
{
	size_t done = 0;

	for (unsigned i = 0; i < n && done < len; i++) {
		size_t chunk;

		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		chunk = iov[i].iov_len - off;
		if (chunk > len - done)
			chunk = len - done;
		memcpy((uint8_t *)iov[i].iov_base + off,
		       (const uint8_t *)buf + done, chunk);
		done += chunk;
		off = 0;
	}
	return done;
}

int hk_iov_slice(const struct iovec *iov, unsigned n, size_t off, size_t len,
		 struct iovec *dst, unsigned cap)
{
	unsigned out = 0;

	for (unsigned i = 0; i < n && len; i++) {
		size_t chunk;

		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		if (out == cap)
			return -ERANGE;
		chunk = iov[i].iov_len - off;
		if (chunk > len)
			chunk = len;
		dst[out].iov_base = (uint8_t *)iov[i].iov_base + off;
		dst[out].iov_len = chunk;
		out++;
		len -= chunk;
		off = 0;
	}
	return len ? -ERANGE : (int)out;
}
