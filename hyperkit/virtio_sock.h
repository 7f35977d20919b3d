/* SPDX-License-Identifier: MIT */
/*
 * virtio-sock (virtio 1.x device type 19): stream sockets between the
 * guest's AF_VSOCK and Unix stream sockets in a host directory, with
 * hyperkit's naming convention:
 *
 *   -s SLOT,virtio-sock,guest_cid=N,path=DIR[,guest_forwards=P1;P2;...]
 *
 *   guest -> host port P   hyperkit connects to DIR/00000002.PPPPPPPP
 *                          (%08x of 2 and P); no listener: the guest's
 *                          connect is refused (RST)
 *   host -> guest          a client connects to DIR/connect and writes
 *                          the 18 bytes "%08x.%08x\n" (guest cid, port);
 *                          the byte stream follows once the guest accepts
 *   guest_forwards port P  DIR/CCCCCCCC.PPPPPPPP (guest cid, P) listens,
 *                          with a symlink DIR/guest.PPPPPPPP to it; a
 *                          connection there goes to guest port P at once
 *
 * Stale socket files are replaced when the device starts; the files it
 * made are removed when it goes away. Stream sockets only (no feature
 * bits: VIRTIO_VSOCK_F_SEQPACKET is not offered).
 *
 * Threading: every socket of the device sits in one private epoll set,
 * which is the single descriptor the device puts in the VM's event loop;
 * all socket work runs there, under the device lock. Host sockets are
 * non-blocking: a vCPU thread never waits for a host peer. Errors are
 * -errno.
 */
#ifndef HYPERKIT_VIRTIO_SOCK_H
#define HYPERKIT_VIRTIO_SOCK_H

#include <stdint.h>

#include "platform.h"

#define HK_VSOCK_HDR_LEN 44u /* struct virtio_vsock_hdr */
#define HK_VSOCK_HOST_CID 2u
#define HK_VSOCK_TYPE_STREAM 1u

/* Operations (virtio 1.x, 5.10.6). */
#define HK_VSOCK_OP_REQUEST 1u
#define HK_VSOCK_OP_RESPONSE 2u
#define HK_VSOCK_OP_RST 3u
#define HK_VSOCK_OP_SHUTDOWN 4u
#define HK_VSOCK_OP_RW 5u
#define HK_VSOCK_OP_CREDIT_UPDATE 6u
#define HK_VSOCK_OP_CREDIT_REQUEST 7u

/* SHUTDOWN flags: the sender will receive (RCV) or send (SEND) no more. */
#define HK_VSOCK_SHUT_RCV 1u
#define HK_VSOCK_SHUT_SEND 2u

#define HK_VSOCK_MAX_CONNS 1024u /* connections per device */
#define HK_VSOCK_BUF_ALLOC (256u << 10) /* our buf_alloc per connection */
#define HK_VSOCK_MAX_FORWARDS 16u /* guest_forwards ports */
#define HK_VSOCK_PREAMBLE_LEN 18u /* "%08x.%08x\n" on DIR/connect */
/* Local ports of host-initiated connections start above any TCP port. */
#define HK_VSOCK_LOCAL_PORT_BASE 65536u

/* The `-s` emulation (conf as above). Returns 0 or -errno (logged). */
int hk_virtio_sock_create(struct hk_vm *vm, unsigned slot, unsigned func,
			  const char *conf);

/*
 * For tests, which run without the VM's event loop: what the loop runs
 * when the device's epoll set has events, after waiting at most
 * timeout_ms for one. vd is the device found on the PCI bus.
 */
struct hk_virtio;
void hk_vsock_poll(struct hk_virtio *vd, int timeout_ms);

#endif
