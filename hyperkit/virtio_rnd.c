// SPDX-License-Identifier: MIT
/*
 * virtio-rnd (entropy device): one queue; every writable buffer the guest
 * posts is filled from the host's getrandom(2). A chain is served up to
 * RND_MAX bytes, so one request cannot keep the event thread busy.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "virtio_pci.h"

#define RND_QUEUE_SIZE 64u
#define RND_MAX 65536u

struct vrnd_dev {
	struct hk_virtio vd;
	struct hk_vq_chain chain;
};

/* Fill the writable part of c; returns the bytes written. */
static uint32_t fill(const struct hk_vq_chain *c)
{
	uint32_t done = 0;

	for (unsigned i = c->n_out; i < c->n_out + c->n_in && done < RND_MAX;
	     i++) {
		size_t want = c->iov[i].iov_len;
		ssize_t r;

		if (want > RND_MAX - done)
			want = RND_MAX - done;
		r = getrandom(c->iov[i].iov_base, want, 0);
		if (r <= 0)
			break;
		done += (uint32_t)r;
		if ((size_t)r < want)
			break;
	}
	return done;
}

static void vrnd_notify(struct hk_virtio *vd, unsigned q)
{
	struct vrnd_dev *dev = vd->opaque;
	struct hk_vq *vq = &vd->vq[q];

	do {
		while (hk_vq_pop(vq, &dev->chain) > 0)
			hk_vq_push(vq, dev->chain.head, fill(&dev->chain));
	} while (hk_virtio_queue_done(vd, q));
}

static void vrnd_release(struct hk_virtio *vd)
{
	pthread_mutex_destroy(&vd->lock);
	free(vd->opaque);
}

static const struct hk_virtio_ops vrnd_ops = {
	.queue_notify = vrnd_notify,
};

int hk_virtio_rnd_create(struct hk_vm *vm, unsigned slot, unsigned func,
			 const char *conf)
{
	struct vrnd_dev *dev;
	char name[16];
	int r;

	(void)conf;
	dev = calloc(1, sizeof(*dev));
	if (!dev)
		return -ENOMEM;
	snprintf(name, sizeof(name), "rnd%u.%u", slot, func);
	r = hk_virtio_init(&dev->vd, vm, slot, func, HK_VIRTIO_ID_RNG, name, 1,
			   RND_QUEUE_SIZE, 0, 0, &vrnd_ops, dev);
	if (r == 0)
		r = hk_virtio_attach(&dev->vd, vrnd_release);
	if (r < 0) {
		logger_printf(hk_vm_log(vm), LOG_LEVEL_ERR,
			      "virtio-rnd at %u:%u: %s", slot, func,
			      strerror(-r));
		free(dev);
	}
	return r;
}
