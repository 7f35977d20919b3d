// SPDX-License-Identifier: MIT
/*
 * Fuzz the virtqueue parser and the virtio-blk request path with
 * arbitrary guest memory.
 *
 * Input: a 16-byte header, then the guest memory image (64 KiB, the
 * input's bytes at the start, zeros after). The header sets the queue
 * size (1 << (h[0] % 11)), the ring addresses (h[1..6], in 16-byte units
 * within guest memory, so some are misaligned after the shift below),
 * the avail index (h[7..8]), event-idx on or off (h[9] & 1) and the
 * number of pops (h[10]). Every chain popped is served as a virtio-blk
 * request against a 64 KiB raw disk in a memfd; bad descriptors must
 * break the queue or fail the request, never crash or touch anything
 * outside the buffer (ASan watches).
 */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../tests/fake_platform.h"
#include "../virtio_blk.h"
#include "../virtqueue.h"
#include "base/endian.h"

#define GUEST_MEM (64u * 1024)
#define DISK_BYTES (64u * 1024)
#define HDR 16u

static struct hk_vq_chain chain; /* too big for the stack; reset per pop */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hk_vblk *blk = NULL;
	struct hk_vm *vm;
	struct hk_vq vq;
	char conf[64];
	unsigned pops;
	int fd;

	if (size < HDR)
		return 0;
	vm = fake_vm_new(GUEST_MEM);
	if (!vm)
		return 0;
	memcpy(vm->mem, data + HDR,
	       size - HDR > GUEST_MEM ? GUEST_MEM : size - HDR);

	hk_vq_init(&vq, vm, NULL, "fuzz");
	vq.size = (uint16_t)(1u << (data[0] % 11));
	/* Mostly aligned, sometimes not: the low bit of each selects. */
	vq.desc_gpa = (uint64_t)load_le16(data + 1) * 16 % GUEST_MEM;
	vq.avail_gpa = (uint64_t)load_le16(data + 3) * 2 % GUEST_MEM;
	vq.used_gpa = (uint64_t)load_le16(data + 5) * 4 % GUEST_MEM;
	vq.event_idx = data[9] & 1;
	pops = data[10] % 32 + 1;
	if (hk_vq_enable(&vq) < 0)
		goto out_vm;
	vq.last_avail = load_le16(data + 7);
	vq.used_idx = load_le16(data + 11);

	fd = memfd_create("fuzz-disk", MFD_CLOEXEC);
	if (fd < 0)
		goto out_vm;
	if (ftruncate(fd, DISK_BYTES) < 0)
		goto out_fd;
	snprintf(conf, sizeof(conf), "/proc/self/fd/%d", fd);
	if (hk_vblk_open(&blk, conf, NULL) < 0)
		goto out_fd;

	for (unsigned i = 0; i < pops; i++) {
		int r = hk_vq_pop(&vq, &chain);

		if (r < 0)
			break;
		if (r == 0) {
			if (!hk_vq_rearm(&vq))
				break;
			continue;
		}
		hk_vq_push(&vq, chain.head, hk_vblk_request(blk, &chain));
		(void)hk_vq_should_interrupt(&vq);
	}
	hk_vblk_close(blk);
out_fd:
	close(fd);
out_vm:
	fake_vm_free(vm);
	return 0;
}
