/* SPDX-License-Identifier: MIT */
/*
 * Split virtqueues (virtio 1.x, "Split Virtqueues"): the descriptor table,
 * the available ring and the used ring live in guest memory and are
 * untrusted input. Every address goes through hk_gpa(); a chain is walked
 * with a step limit, so a loop, a chain longer than the queue, a nested or
 * out-of-range indirect table, an address outside guest RAM or an absurd
 * total length marks the queue broken (logged once, rate-limited), and
 * every later pop returns -EIO until the transport resets the queue. The
 * VMM never crashes and never touches memory outside guest RAM.
 *
 * A chain is returned as iovecs pointing into guest memory: first the
 * device-readable part (iov[0 .. n_out)), then the device-writable part
 * (iov[n_out .. n_out + n_in)). The iovecs are valid until the device
 * pushes the chain back; the guest may change the bytes under us at any
 * time, so devices copy headers out before they validate them.
 *
 * Threading: a queue belongs to its device, whose lock the caller holds
 * for every call here. Nothing here allocates.
 */
#ifndef HYPERKIT_VIRTQUEUE_H
#define HYPERKIT_VIRTQUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "base/log.h"

struct hk_vm;

/* Largest queue size we offer (a power of two, <= 32768 by the spec). */
#define HK_VQ_MAX_SIZE 1024u
/* Most iovecs one chain may produce: a direct chain plus an indirect
 * table, each at most HK_VQ_MAX_SIZE descriptors. */
#define HK_VQ_MAX_IOV (2u * HK_VQ_MAX_SIZE)
/* Most bytes one chain may describe (readable plus writable). */
#define HK_VQ_MAX_CHAIN_BYTES (256ull << 20)

/* Feature bits of the ring layer (the transport offers them). */
#define HK_VIRTIO_F_INDIRECT_DESC 28
#define HK_VIRTIO_F_EVENT_IDX 29
#define HK_VIRTIO_F_VERSION_1 32

/* Descriptor flags (virtio 1.x, 2.7.5). */
#define HK_VQ_DESC_F_NEXT 1u
#define HK_VQ_DESC_F_WRITE 2u
#define HK_VQ_DESC_F_INDIRECT 4u

/* Ring flags. */
#define HK_VQ_AVAIL_F_NO_INTERRUPT 1u

/* One popped chain. */
struct hk_vq_chain {
	uint16_t head; /* index to push back */
	unsigned n_out; /* device-readable iovecs, first */
	unsigned n_in; /* device-writable iovecs, after them */
	uint64_t out_len; /* bytes in the readable part */
	uint64_t in_len; /* bytes in the writable part */
	struct iovec iov[HK_VQ_MAX_IOV];
};

struct hk_vq {
	struct hk_vm *vm;
	const struct logger *log; /* borrowed; may be NULL */
	struct ratelimit rl;
	char name[24]; /* for messages: "blk0.q0" */

	/* Written by the driver through the transport before enable. */
	uint16_t size; /* power of two, 1 .. HK_VQ_MAX_SIZE */
	uint64_t desc_gpa, avail_gpa, used_gpa;
	bool event_idx; /* VIRTIO_F_EVENT_IDX was negotiated */

	/* Set by hk_vq_enable; cleared by hk_vq_reset. */
	bool enabled;
	bool broken;
	uint8_t *desc, *avail, *used; /* host views of the rings */
	uint16_t last_avail; /* next avail ring slot to consume */
	uint16_t used_idx; /* our copy of used->idx */
	uint16_t signalled_used; /* used_idx at the last interrupt */
	bool signalled_used_valid;
};

/* Set up a queue in its reset state (size 0, disabled). log may be NULL. */
void hk_vq_init(struct hk_vq *vq, struct hk_vm *vm, const struct logger *log,
		const char *name);

/*
 * Start serving the queue whose size and ring addresses the driver wrote.
 * Returns 0, or -EINVAL (logged) if the size is not a power of two in
 * range, a ring is misaligned or not wholly in guest RAM.
 */
int hk_vq_enable(struct hk_vq *vq);

/* Back to the reset state: disabled, not broken, indices zero, size 0. */
void hk_vq_reset(struct hk_vq *vq);

/*
 * Take the next available chain into *c. Returns 1 with *c filled, 0 if
 * the ring is empty (or the queue not enabled), -EIO if the queue is (or
 * has just been found) broken.
 */
int hk_vq_pop(struct hk_vq *vq, struct hk_vq_chain *c);

/* Return chain head to the driver with len bytes written into its
 * writable part (publishes the used index with release ordering). */
void hk_vq_push(struct hk_vq *vq, uint16_t head, uint32_t len);

/*
 * After hk_vq_pop returned 0: ask the driver to notify us for the next
 * buffer (VIRTIO_F_EVENT_IDX: avail_event), then look again. Returns true
 * if buffers arrived meanwhile (pop again), false if the queue is idle.
 */
bool hk_vq_rearm(struct hk_vq *vq);

/* After pushes: true if the driver wants an interrupt now (honours
 * VIRTIO_F_EVENT_IDX's used_event or VRING_AVAIL_F_NO_INTERRUPT). */
bool hk_vq_should_interrupt(struct hk_vq *vq);

/* Mark the queue broken with a reason (logged once, rate-limited). */
void hk_vq_set_broken(struct hk_vq *vq, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* ---------------------------------------------------------------- iovecs */

/* Copy up to len bytes starting off bytes into iov[0..n) to buf; returns
 * the bytes copied (fewer if the iovecs end first). */
size_t hk_iov_to_buf(const struct iovec *iov, unsigned n, size_t off, void *buf,
		     size_t len);

/* Copy up to len bytes of buf into iov[0..n) from byte off; returns the
 * bytes copied. */
size_t hk_iov_from_buf(const struct iovec *iov, unsigned n, size_t off,
		       const void *buf, size_t len);

/*
 * Describe bytes [off, off + len) of iov[0..n) as at most cap iovecs in
 * dst. Returns the number of iovecs, or -ERANGE if the range runs past
 * the end of iov or needs more than cap entries.
 */
int hk_iov_slice(const struct iovec *iov, unsigned n, size_t off, size_t len,
		 struct iovec *dst, unsigned cap);

#endif
