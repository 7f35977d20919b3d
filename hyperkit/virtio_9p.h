/* SPDX-License-Identifier: MIT */
/*
 * virtio-9p as hyperkit builds it: the device serves no files; it relays
 * whole 9P messages between the guest's request queue and a 9P server on
 * a Unix socket or a loopback TCP port (`virtio-9p,path=SOCK,tag=TAG` or
 * `virtio-9p,port=N,tag=TAG`). This header is the relay without the
 * transport, so unit tests drive it with host buffers and a socketpair.
 *
 * A request is one chain: its readable part holds the T-message, its
 * writable part receives the R-message. Messages start with size[4]
 * type[1] tag[2] (little-endian); replies are matched to requests by tag.
 * A request that cannot be relayed (malformed, a tag already in flight,
 * no server) or whose reply would not fit its writable part is answered
 * with an error reply (Rlerror EIO, or Rerror for 9P2000 and 9P2000.u as
 * the Rversion the relay saw chose). A server that sends garbage (a size
 * below 7 or above HK_P9_MAX_MSG, a T-message, a tag nobody waits for) is
 * disconnected, and every pending request gets an error reply.
 *
 * Nothing here allocates per request: slots are sized at setup (one per
 * queue entry). Not locked: the device's lock covers every call. The
 * relay never registers fds with the event loop; it says which events it
 * wants (hk_p9relay_events) and hands a socket back through `closing`
 * before forgetting it.
 */
#ifndef HYPERKIT_VIRTIO_9P_H
#define HYPERKIT_VIRTIO_9P_H

#include <stdbool.h>
#include <stdint.h>

#include "base/log.h"
#include "virtqueue.h"

#define HK_P9_HDR 7u /* size[4] type[1] tag[2] */
#define HK_P9_MAX_MSG (64u << 20) /* larger replies are garbage */
#define HK_P9_MAX_IOV 272u /* iovecs kept per request */
#define HK_P9_F_MOUNT_TAG 0 /* VIRTIO_9P_MOUNT_TAG */
#define HK_P9_TAG_MAX 64u /* longest mount tag we accept */

/* 9P message types the relay looks at. */
#define HK_P9_RLERROR 7u
#define HK_P9_TVERSION 100u
#define HK_P9_RVERSION 101u
#define HK_P9_RERROR 107u
#define HK_P9_TFLUSH 108u
#define HK_P9_RFLUSH 109u

struct hk_p9relay;

struct hk_p9relay_ops {
	/* A request is finished: push chain head with len bytes written. */
	void (*done)(void *opaque, uint16_t head, uint32_t len);
	/* The relay stops using socket fd (a disconnect): the callee owns
	 * it now, to unregister and close. */
	void (*closing)(void *opaque, int fd);
};

/* A relay with room for slots requests in flight. Returns 0 or -errno. */
int hk_p9relay_new(struct hk_p9relay **out, unsigned slots,
		   const struct hk_p9relay_ops *ops, void *opaque,
		   const struct logger *log);
/* Disconnects (errors to pending requests are not sent) and frees. */
void hk_p9relay_free(struct hk_p9relay *r);

/* Use fd, a connected stream socket, as the server (the relay owns it
 * until it hands it to ops->closing). Only while disconnected. */
void hk_p9relay_set_fd(struct hk_p9relay *r, int fd);
/* The server socket, or -1 while disconnected. */
int hk_p9relay_fd(const struct hk_p9relay *r);
/* A message was sent on the current connection (a session may exist). */
bool hk_p9relay_spoken(const struct hk_p9relay *r);
/* The epoll events the relay wants on its socket now. */
uint32_t hk_p9relay_events(const struct hk_p9relay *r);
/* A free slot exists (pop a chain only then). */
bool hk_p9relay_has_room(const struct hk_p9relay *r);

/* Take one popped chain: queue its T-message for the server, or answer
 * it at once with an error (through ops->done). */
void hk_p9relay_submit(struct hk_p9relay *r, const struct hk_vq_chain *c);

/* The socket has events (EPOLLIN/EPOLLOUT/EPOLLHUP/EPOLLERR): send what
 * is queued, receive what arrived, deliver complete replies. */
void hk_p9relay_io(struct hk_p9relay *r, uint32_t events);

/* Drop the server. With answer, every pending request gets an error
 * reply; without (the driver reset the queue), they are forgotten. */
void hk_p9relay_disconnect(struct hk_p9relay *r, bool answer);

/* The `-s` emulation: `path=SOCK,tag=TAG` or `port=N,tag=TAG`. */
struct hk_vm;
int hk_virtio_9p_create(struct hk_vm *vm, unsigned slot, unsigned func,
			const char *conf);

#endif
