/* SPDX-License-Identifier: MIT */
/*
 * virtio-net (virtio 1.x, device type 1) with three kinds of backend:
 *
 *   virtio-vpnkit,path=SOCK[,uuid=UUID]  a vpnkit daemon over hyperkit's
 *                                        VMN3T protocol (LE16 framing)
 *   virtio-net,stream=SOCK               a QEMU "stream" socket peer
 *                                        (BE32 framing)
 *   virtio-net,vpnkit[,uuid=UUID]        libvpnkit in-process, with
 *   virtio-vpnkit,inprocess[,uuid=UUID]  checksum and TSO offloads
 *   virtio-tap,NAME                      a Linux TAP device (vnet header)
 *
 * Two queues (receive 0, transmit 1), no control queue. Frames carry the
 * 12-byte virtio_net_hdr_v1 in front.
 *
 * Threading: socket and TAP backends are served on the event thread; the
 * in-process vpnkit instance gets a thread of its own, and the device's
 * queues are served there too (a queue notification only wakes it). The
 * device lock (vd->lock) is held whenever rings are touched.
 */
#ifndef HYPERKIT_VIRTIO_NET_H
#define HYPERKIT_VIRTIO_NET_H

#include <stddef.h>
#include <stdint.h>

#include "platform.h"

/* Feature bits (virtio 1.x, 5.1.3). */
#define HK_VNET_F_CSUM 0
#define HK_VNET_F_GUEST_CSUM 1
#define HK_VNET_F_MTU 3
#define HK_VNET_F_MAC 5
#define HK_VNET_F_GUEST_TSO4 7
#define HK_VNET_F_GUEST_TSO6 8
#define HK_VNET_F_GUEST_ECN 9
#define HK_VNET_F_HOST_TSO4 11
#define HK_VNET_F_HOST_TSO6 12
#define HK_VNET_F_HOST_ECN 13
#define HK_VNET_F_STATUS 16

#define HK_VNET_HDR_LEN 12 /* virtio_net_hdr_v1, with num_buffers */
#define HK_VNET_RXQ 0
#define HK_VNET_TXQ 1

/* Framing of a stream-socket backend. */
enum hk_vnet_framing {
	HK_VNET_FRAMING_LE16, /* vpnkit's VMN3T */
	HK_VNET_FRAMING_BE32, /* QEMU's stream netdev */
};

struct hk_vnet;
struct vpnkit_offload;

int hk_virtio_net_create(struct hk_vm *vm, unsigned slot, unsigned func,
			 const char *conf);
int hk_virtio_vpnkit_create(struct hk_vm *vm, unsigned slot, unsigned func,
			    const char *conf);
int hk_virtio_tap_create(struct hk_vm *vm, unsigned slot, unsigned func,
			 const char *conf);

/*
 * For tests: a device at slot/func whose backend is the connected stream
 * socket fd (taken over; made non-blocking) with the given framing and
 * MAC. Returns 0 and sets *out, or -errno.
 */
int hk_vnet_new_stream(struct hk_vm *vm, unsigned slot, unsigned func, int fd,
		       enum hk_vnet_framing framing, const uint8_t mac[6],
		       struct hk_vnet **out);

/* For tests: what the event loop runs when the backend fd has events. */
void hk_vnet_backend_event(struct hk_vnet *n, uint32_t events);

/*
 * For tests: deliver one frame with offload info off (may be NULL) to
 * the guest as a backend would (takes the lock). Returns 0 once it is
 * taken or dropped, -EAGAIN if there is no receive buffer.
 */
int hk_vnet_inject(struct hk_vnet *n, const struct vpnkit_offload *off,
		   const void *frame, size_t len);

#endif
