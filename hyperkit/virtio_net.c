// SPDX-License-Identifier: MIT
/*
 * virtio-net: the guest's Ethernet card, with vpnkit (a daemon over a Unix
 * socket, or libvpnkit in-process), a QEMU stream socket or a TAP device
 * on the far side. See virtio_net.h for the emulations.
 *
 * Theory of operation. Queue 0 receives (frames to the guest), queue 1
 * transmits. Every frame on a ring starts with the 12-byte
 * virtio_net_hdr_v1, whose first 10 bytes have the layout of struct
 * vpnkit_offload and of the TAP device's vnet header, so offload metadata
 * (partial checksums, TCP segments up to 64 KiB) passes through untouched
 * where both sides negotiated it. Where the guest did not take
 * GUEST_CSUM, a partial checksum is finished here; a TCP segment it did
 * not ask for is dropped (counted, logged with a rate limit).
 *
 * Transmit copies each chain's frame out of guest memory into one buffer
 * sized at setup (the guest may change its memory under us; the backend
 * must see one consistent frame), then hands it to the backend. Receive
 * takes one chain per frame (no MRG_RXBUF): the driver posts buffers big
 * enough for the largest frame it negotiated. When there is no buffer the
 * backend is paused: a stream socket leaves EPOLLIN, the TAP device too
 * (one frame is held), libvpnkit gets -EAGAIN and is resumed when the
 * driver posts buffers (the receive queue's notification).
 *
 * Socket and TAP backends run on the event thread under the device lock.
 * The in-process vpnkit owns a thread that runs its loop; queue
 * notifications (event thread) only write an eventfd that loop watches,
 * so every call into libvpnkit happens on its thread, which then serves
 * the rings under the device lock. libvpnkit's send callback may run
 * inside our own call to vpnkit_port_input, with the lock already held
 * (in_cb says so).
 *
 * A peer that closes, or breaks the framing, takes the link down (config
 * status, with a config interrupt) and later frames are dropped; a bad
 * chain from the guest breaks its queue (virtqueue.c); neither stops the
 * VM.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/endian.h"
#include "virtio_net.h"
#include "internal.h"
#include "virtio_pci.h"
#include "vpnkit/tap.h"
#include "vpnkit/vmnet.h"
#include "vpnkit/vpnkit.h"

#define QUEUE_SIZE 256u
#define CONFIG_LEN 12u
#define VNET_ETH_HLEN 14u
/* Largest frame either way: a 64 KiB TCP segment plus its headers. */
#define FRAME_MAX (65536u + 256u)
#define LINK_UP 1u
#define HANDSHAKE_TIMEOUT_S 10

_Static_assert(sizeof(struct vpnkit_offload) == 10,
	       "vpnkit_offload is virtio_net_hdr's first 10 bytes");

enum vnet_kind {
	VNET_STREAM,
	VNET_TAP,
	VNET_VPNKIT,
};

struct hk_vnet {
	struct hk_virtio vd; /* first: vd->opaque is this */
	enum vnet_kind kind;
	uint8_t mac[6];
	uint16_t mtu;
	uint64_t dropped;
	bool dead; /* the backend went away: frames are dropped */

	/* Stream and TAP backends (event thread). */
	int fd;
	unsigned prefix; /* bytes before each frame on fd: 2, 4 or 10 */
	enum hk_vnet_framing framing;
	uint32_t events; /* what the loop watches on fd now */
	bool in_loop;
	uint8_t *txbuf; /* prefix + frame */
	size_t txlen, txoff; /* a stream frame still being written */
	uint8_t *rxbuf;
	size_t rxcap, rxlen, rxoff; /* stream: bytes read, consumed */
	bool rx_stalled; /* no receive buffer: EPOLLIN is off */
	bool tap_held; /* TAP: rxbuf holds a frame of rxlen bytes */

	/* In-process vpnkit (its thread). */
	struct vpnkit *vk;
	struct vpnkit_port *port;
	pthread_t thread;
	bool thread_started;
	atomic_bool stop;
	int kick_fd, stop_fd;
	bool in_cb; /* the vpnkit thread holds vd.lock */
	bool rx_blocked; /* send returned -EAGAIN */

	struct hk_vq_chain txc, rxc;
};

/* ---------------------------------------------------------------- helpers */

static void vnet_log(struct hk_vnet *n, enum log_level level, const char *fmt,
		     ...) __attribute__((format(printf, 3, 4)));

static void vnet_log(struct hk_vnet *n, enum log_level level, const char *fmt,
		     ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	logger_printf_limited(n->vd.log, &n->vd.rl, level, "%s: %s", n->vd.name,
			      msg);
}

static bool driver_ready(const struct hk_vnet *n)
{
	return (n->vd.status & HK_VIRTIO_S_DRIVER_OK) &&
	       !(n->vd.status & HK_VIRTIO_S_NEEDS_RESET);
}

/* The one's complement sum of bytes [start, end) of iov, folded. */
static uint16_t csum_iov(const struct iovec *iov, int n, size_t start,
			 size_t end)
{
	uint64_t sum = 0;
	size_t pos = 0;
	bool odd = false;

	for (int i = 0; i < n && pos < end; i++) {
		const uint8_t *p = iov[i].iov_base;
		size_t len = iov[i].iov_len;

		for (size_t j = 0; j < len && pos < end; j++, pos++) {
			if (pos < start)
				continue;
			sum += odd ? p[j] : (uint64_t)p[j] << 8;
			odd = !odd;
		}
	}
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)sum;
}

/*
 * Put one frame (the iovecs src, total len bytes) with offload info off
 * (may be NULL) into the receive chain c, adapting the offloads to what
 * the driver negotiated. Returns the bytes written into the chain (header
 * included), or 0 if the frame had to be dropped.
 */
static uint32_t rx_fill(struct hk_vnet *n, const struct hk_vq_chain *c,
			const struct vpnkit_offload *off,
			const struct iovec *src, int nsrc, size_t len)
{
	struct hk_virtio *vd = &n->vd;
	const struct iovec *dst = &c->iov[c->n_out];
	uint8_t hdr[HK_VNET_HDR_LEN] = { 0 };
	struct vpnkit_offload o = { 0 };
	bool finish_csum = false;
	size_t at = HK_VNET_HDR_LEN;

	if (off)
		o = *off;
	if (len < VNET_ETH_HLEN || HK_VNET_HDR_LEN + len > c->in_len) {
		vnet_log(n, LOG_LEVEL_WARN,
			 "dropped a %zu-byte frame (receive buffer %llu)", len,
			 (unsigned long long)c->in_len);
		return 0;
	}
	if ((o.gso_type & ~VPNKIT_GSO_ECN) != VPNKIT_GSO_NONE) {
		unsigned type = o.gso_type & ~VPNKIT_GSO_ECN;
		bool ok = (type == VPNKIT_GSO_TCPV4 &&
			   hk_virtio_has(vd, HK_VNET_F_GUEST_TSO4)) ||
			  (type == VPNKIT_GSO_TCPV6 &&
			   hk_virtio_has(vd, HK_VNET_F_GUEST_TSO6));
		if (!ok || !hk_virtio_has(vd, HK_VNET_F_GUEST_CSUM)) {
			vnet_log(
				n, LOG_LEVEL_WARN,
				"dropped a segment of type %u the driver did not negotiate",
				o.gso_type);
			return 0;
		}
		if (!hk_virtio_has(vd, HK_VNET_F_GUEST_ECN))
			o.gso_type &= (uint8_t)~VPNKIT_GSO_ECN;
	}
	if ((o.flags & VPNKIT_OFFLOAD_NEEDS_CSUM) &&
	    !hk_virtio_has(vd, HK_VNET_F_GUEST_CSUM)) {
		if ((size_t)o.csum_start + o.csum_offset + 2 > len) {
			vnet_log(n, LOG_LEVEL_WARN,
				 "dropped a frame with a bad checksum offset");
			return 0;
		}
		finish_csum = true;
		o.flags = 0;
	}
	if (!hk_virtio_has(vd, HK_VNET_F_GUEST_CSUM))
		o.flags = 0;
	memcpy(hdr, &o, sizeof(o));
	store_le16(hdr + 10, 1); /* num_buffers */
	hk_iov_from_buf(dst, c->n_in, 0, hdr, sizeof(hdr));
	for (int i = 0; i < nsrc; i++) {
		hk_iov_from_buf(dst, c->n_in, at, src[i].iov_base,
				src[i].iov_len);
		at += src[i].iov_len;
	}
	if (finish_csum) {
		uint16_t s = (uint16_t)(0xffffu -
					csum_iov(src, nsrc, o.csum_start, len));
		uint8_t be[2];

		if (s == 0)
			s = 0xffff;
		store_be16(be, s);
		hk_iov_from_buf(dst, c->n_in,
				HK_VNET_HDR_LEN + o.csum_start + o.csum_offset,
				be, 2);
	}
	return (uint32_t)(HK_VNET_HDR_LEN + len);
}

/*
 * Copy the frame of transmit chain c into buf (room for FRAME_MAX) and
 * its header's offload part into *off. Returns the frame length, or 0 if
 * the chain holds no valid frame.
 */
static size_t tx_gather(struct hk_vnet *n, const struct hk_vq_chain *c,
			struct vpnkit_offload *off, uint8_t *buf)
{
	uint8_t hdr[HK_VNET_HDR_LEN];
	uint64_t len;

	if (c->out_len < HK_VNET_HDR_LEN + VNET_ETH_HLEN ||
	    c->out_len - HK_VNET_HDR_LEN > FRAME_MAX) {
		n->dropped++;
		vnet_log(n, LOG_LEVEL_WARN,
			 "dropped a transmit chain of %llu bytes",
			 (unsigned long long)c->out_len);
		return 0;
	}
	len = c->out_len - HK_VNET_HDR_LEN;
	hk_iov_to_buf(c->iov, c->n_out, 0, hdr, sizeof(hdr));
	memcpy(off, hdr, sizeof(*off));
	if (!hk_virtio_has(&n->vd, HK_VNET_F_CSUM))
		memset(off, 0, sizeof(*off));
	return hk_iov_to_buf(c->iov, c->n_out, HK_VNET_HDR_LEN, buf, len);
}

static void link_down(struct hk_vnet *n, const char *why)
{
	if (n->dead)
		return;
	n->dead = true;
	logger_printf(n->vd.log, LOG_LEVEL_WARN, "%s: link down: %s",
		      n->vd.name, why);
	store_le16(n->vd.config + 6, 0);
	hk_virtio_config_changed(&n->vd);
	/*
	 * A closed peer keeps the socket readable (EPOLLHUP) whatever the
	 * loop asks for. hk_loop_del cannot be used here (we may hold the
	 * lock its running callback waits for), so put a quiet eventfd in
	 * the descriptor's place: closing the socket's last reference drops
	 * it from epoll. release() deletes and closes the number as usual.
	 */
	if (n->fd >= 0) {
		int quiet = eventfd(0, EFD_CLOEXEC);

		if (quiet >= 0) {
			dup3(quiet, n->fd, O_CLOEXEC);
			close(quiet);
		}
	}
}

/* ---------------------------------------------------------------- stream and TAP */

static void fd_update_events(struct hk_vnet *n)
{
	uint32_t want = 0;

	if (n->fd < 0 || !n->in_loop)
		return;
	if (!n->dead) {
		if (!n->rx_stalled)
			want |= EPOLLIN;
		if (n->txoff < n->txlen)
			want |= EPOLLOUT;
	}
	if (want != n->events && hk_loop_mod(n->vd.pci.vm, n->fd, want) == 0)
		n->events = want;
}

/* Write out the pending stream frame; false if the socket is full. */
static bool stream_flush(struct hk_vnet *n)
{
	while (n->txoff < n->txlen) {
		ssize_t w = send(n->fd, n->txbuf + n->txoff,
				 n->txlen - n->txoff,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return false;
		if (w <= 0) {
			n->txoff = n->txlen = 0;
			link_down(n, w < 0 ? strerror(errno) : "peer closed");
			return true;
		}
		n->txoff += (size_t)w;
	}
	n->txoff = n->txlen = 0;
	return true;
}

/* Hand one frame (already at txbuf + prefix) to the fd. */
static bool fd_send(struct hk_vnet *n, const struct vpnkit_offload *off,
		    size_t len)
{
	if (n->dead) {
		n->dropped++;
		return true;
	}
	if (n->kind == VNET_TAP) {
		ssize_t w;

		memcpy(n->txbuf, off, sizeof(*off));
		w = write(n->fd, n->txbuf, VPNKIT_TAP_VNET_HDR_LEN + len);
		if (w < 0) {
			n->dropped++;
			if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != EINTR)
				vnet_log(n, LOG_LEVEL_WARN, "tap write: %s",
					 strerror(errno));
		}
		return true;
	}
	if (n->framing == HK_VNET_FRAMING_LE16) {
		if (len > VPNKIT_VMNET_FRAME_MAX) {
			n->dropped++;
			return true;
		}
		store_le16(n->txbuf, (uint16_t)len);
	} else {
		store_be32(n->txbuf, (uint32_t)len);
	}
	n->txoff = 0;
	n->txlen = n->prefix + len;
	return stream_flush(n);
}

/* Serve the transmit queue (lock held, event thread). */
static void fd_tx(struct hk_vnet *n)
{
	struct hk_virtio *vd = &n->vd;
	struct hk_vq *vq = &vd->vq[HK_VNET_TXQ];
	struct vpnkit_offload off;

	if (!stream_flush(n))
		goto out;
	do {
		while (hk_vq_pop(vq, &n->txc) > 0) {
			size_t len = tx_gather(n, &n->txc, &off,
					       n->txbuf + n->prefix);
			bool more = true;

			hk_vq_push(vq, n->txc.head, 0);
			if (len)
				more = fd_send(n, &off, len);
			if (!more) {
				hk_virtio_queue_done(vd, HK_VNET_TXQ);
				goto out;
			}
		}
	} while (hk_virtio_queue_done(vd, HK_VNET_TXQ));
out:
	fd_update_events(n);
}

/*
 * Deliver one frame from the backend into the next receive chain.
 * Returns 1 if it was taken (or dropped), 0 if there is no buffer (the
 * frame stays with the caller).
 */
static int rx_one(struct hk_vnet *n, const struct vpnkit_offload *off,
		  const struct iovec *src, int nsrc, size_t len)
{
	struct hk_vq *vq = &n->vd.vq[HK_VNET_RXQ];
	uint32_t w;
	int r;

	if (!driver_ready(n))
		return 0;
	r = hk_vq_pop(vq, &n->rxc);
	/* Empty: ask for a notification when buffers come, look again. */
	if (r == 0 && hk_vq_rearm(vq))
		r = hk_vq_pop(vq, &n->rxc);
	if (r == 0)
		return 0;
	if (r < 0) {
		n->dropped++;
		return 1;
	}
	w = rx_fill(n, &n->rxc, off, src, nsrc, len);
	if (!w)
		n->dropped++;
	hk_vq_push(vq, n->rxc.head, w);
	return 1;
}

static void stream_rx(struct hk_vnet *n)
{
	bool pushed = false;

	n->rx_stalled = false;
	while (!n->dead) {
		size_t avail = n->rxlen - n->rxoff;
		size_t flen;

		if (avail >= n->prefix) {
			const uint8_t *p = n->rxbuf + n->rxoff;

			flen = n->framing == HK_VNET_FRAMING_LE16 ?
				       load_le16(p) :
				       load_be32(p);
			if (flen < VNET_ETH_HLEN || flen > FRAME_MAX) {
				link_down(n, "bad frame length from peer");
				break;
			}
			if (avail >= n->prefix + flen) {
				struct iovec v = { (void *)(p + n->prefix),
						   flen };

				if (!rx_one(n, NULL, &v, 1, flen)) {
					n->rx_stalled = true;
					break;
				}
				pushed = true;
				n->rxoff += n->prefix + flen;
				continue;
			}
		}
		/* Need more bytes: compact, then read. */
		if (n->rxoff) {
			memmove(n->rxbuf, n->rxbuf + n->rxoff, avail);
			n->rxlen = avail;
			n->rxoff = 0;
		}
		ssize_t r = recv(n->fd, n->rxbuf + n->rxlen,
				 n->rxcap - n->rxlen, MSG_DONTWAIT);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (r <= 0) {
			link_down(n, r < 0 ? strerror(errno) : "peer closed");
			break;
		}
		n->rxlen += (size_t)r;
	}
	if (pushed)
		hk_virtio_queue_done(&n->vd, HK_VNET_RXQ);
}

static void tap_rx(struct hk_vnet *n)
{
	bool pushed = false;

	n->rx_stalled = false;
	while (!n->dead) {
		if (!n->tap_held) {
			ssize_t r = read(n->fd, n->rxbuf, n->rxcap);

			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				break;
			if (r <= 0) {
				link_down(n, r < 0 ? strerror(errno) : "EOF");
				break;
			}
			if ((size_t)r <
			    VPNKIT_TAP_VNET_HDR_LEN + VNET_ETH_HLEN) {
				n->dropped++;
				continue;
			}
			n->rxlen = (size_t)r;
			n->tap_held = true;
		}
		struct vpnkit_offload off;
		struct iovec v = { n->rxbuf + VPNKIT_TAP_VNET_HDR_LEN,
				   n->rxlen - VPNKIT_TAP_VNET_HDR_LEN };

		memcpy(&off, n->rxbuf, sizeof(off));
		if (!rx_one(n, &off, &v, 1, v.iov_len)) {
			n->rx_stalled = true;
			break;
		}
		pushed = true;
		n->tap_held = false;
	}
	if (pushed)
		hk_virtio_queue_done(&n->vd, HK_VNET_RXQ);
}

static void fd_rx(struct hk_vnet *n)
{
	if (n->kind == VNET_TAP)
		tap_rx(n);
	else
		stream_rx(n);
	fd_update_events(n);
}

void hk_vnet_backend_event(struct hk_vnet *n, uint32_t events)
{
	pthread_mutex_lock(&n->vd.lock);
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
		fd_rx(n);
	if (events & EPOLLOUT)
		fd_tx(n);
	pthread_mutex_unlock(&n->vd.lock);
}

int hk_vnet_inject(struct hk_vnet *n, const struct vpnkit_offload *off,
		   const void *frame, size_t len)
{
	struct iovec v = { (void *)frame, len };
	int r;

	pthread_mutex_lock(&n->vd.lock);
	r = rx_one(n, off, &v, 1, len);
	if (r)
		hk_virtio_queue_done(&n->vd, HK_VNET_RXQ);
	pthread_mutex_unlock(&n->vd.lock);
	return r ? 0 : -EAGAIN;
}

static void backend_cb(void *opaque, uint32_t events)
{
	hk_vnet_backend_event(opaque, events);
}

/* ---------------------------------------------------------------- in-process vpnkit */

static void kick(int efd)
{
	uint64_t one = 1;

	if (write(efd, &one, sizeof(one)) < 0) {
		/* The counter is saturated: a wake-up is pending anyway. */
	}
}

/* libvpnkit has a frame for the guest (its thread). */
static int vk_send(void *opaque, const struct vpnkit_offload *off,
		   const struct iovec *iov, int iovcnt)
{
	struct hk_vnet *n = opaque;
	bool lock = !n->in_cb;
	size_t len = 0;
	int r = 0;

	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	if (lock)
		pthread_mutex_lock(&n->vd.lock);
	if (!driver_ready(n)) {
		n->dropped++; /* no driver: the link is not there yet */
		goto out;
	}
	if (!rx_one(n, off, iov, iovcnt, len)) {
		n->rx_blocked = true;
		r = -EAGAIN;
		goto out;
	}
	hk_virtio_queue_done(&n->vd, HK_VNET_RXQ);
out:
	if (lock)
		pthread_mutex_unlock(&n->vd.lock);
	return r;
}

static const struct vpnkit_port_ops vk_port_ops = {
	.send = vk_send,
};

/* The guest kicked a queue (relayed by vnet_notify): serve both. */
static void vk_kick_cb(void *opaque, uint32_t events)
{
	struct hk_vnet *n = opaque;
	struct hk_virtio *vd = &n->vd;
	struct hk_vq *vq = &vd->vq[HK_VNET_TXQ];
	struct vpnkit_offload off;
	uint64_t v;

	(void)events;
	if (read(n->kick_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	pthread_mutex_lock(&vd->lock);
	n->in_cb = true;
	if (driver_ready(n) && vq->enabled) {
		do {
			while (hk_vq_pop(vq, &n->txc) > 0) {
				size_t len =
					tx_gather(n, &n->txc, &off, n->txbuf);

				hk_vq_push(vq, n->txc.head, 0);
				if (len)
					vpnkit_port_input(n->port, &off,
							  n->txbuf, len);
			}
		} while (hk_virtio_queue_done(vd, HK_VNET_TXQ));
	}
	if (n->rx_blocked && driver_ready(n)) {
		n->rx_blocked = false;
		vpnkit_port_resume(n->port);
	}
	n->in_cb = false;
	pthread_mutex_unlock(&vd->lock);
}

static void vk_stop_cb(void *opaque, uint32_t events)
{
	struct hk_vnet *n = opaque;
	uint64_t v;

	(void)events;
	if (read(n->stop_fd, &v, sizeof(v)) < 0) {
		/* Nothing to do: the flag is what counts. */
	}
}

static void *vk_thread(void *opaque)
{
	struct hk_vnet *n = opaque;

	while (!atomic_load(&n->stop)) {
		int r = vpnkit_run_once(n->vk, -1);

		if (r < 0 && r != -EINTR) {
			logger_printf(n->vd.log, LOG_LEVEL_ERR,
				      "%s: vpnkit loop: %s", n->vd.name,
				      strerror(-r));
			break;
		}
	}
	return NULL;
}

static int vk_setup(struct hk_vnet *n, struct hk_vm *vm, const char *uuid)
{
	struct vpnkit_config cfg;
	struct vpnkit_port_config pc = { .uuid = uuid,
					 .flags = VPNKIT_PORT_OFFLOAD };
	int r;

	vpnkit_config_init(&cfg);
	cfg.log = *hk_vm_log(vm);
	r = vpnkit_new(&cfg, &n->vk);
	if (r < 0)
		return r;
	n->mtu = (uint16_t)cfg.mtu;
	r = vpnkit_port_new(n->vk, &pc, &vk_port_ops, n, &n->port);
	if (r < 0)
		return r;
	vpnkit_port_mac(n->port, n->mac);
	n->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	n->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (n->kick_fd < 0 || n->stop_fd < 0)
		return -errno;
	r = vpnkit_watch(n->vk, n->kick_fd, EPOLLIN, vk_kick_cb, n);
	if (r == 0)
		r = vpnkit_watch(n->vk, n->stop_fd, EPOLLIN, vk_stop_cb, n);
	return r;
}

/* ---------------------------------------------------------------- device ops */

static void vnet_notify(struct hk_virtio *vd, unsigned q)
{
	struct hk_vnet *n = vd->opaque;

	if (n->kind == VNET_VPNKIT) {
		kick(n->kick_fd);
		return;
	}
	if (q == HK_VNET_TXQ)
		fd_tx(n);
	else
		fd_rx(n);
}

static void vnet_driver_ok(struct hk_virtio *vd)
{
	struct hk_vnet *n = vd->opaque;

	if (n->kind == VNET_VPNKIT) {
		kick(n->kick_fd);
		return;
	}
	if (n->kind == VNET_TAP) {
		unsigned flags = 0;

		/* Ask the kernel only for what the driver takes. */
		if (hk_virtio_has(vd, HK_VNET_F_GUEST_CSUM)) {
			flags |= TUN_F_CSUM;
			if (hk_virtio_has(vd, HK_VNET_F_GUEST_TSO4))
				flags |= TUN_F_TSO4;
			if (hk_virtio_has(vd, HK_VNET_F_GUEST_TSO6))
				flags |= TUN_F_TSO6;
		}
		if (n->fd >= 0 && ioctl(n->fd, TUNSETOFFLOAD, flags) < 0)
			vnet_log(n, LOG_LEVEL_WARN, "TUNSETOFFLOAD: %s",
				 strerror(errno));
	}
	/* Frames may be waiting for buffers. */
	fd_rx(n);
}

static void vnet_release(struct hk_virtio *vd)
{
	struct hk_vnet *n = vd->opaque;

	if (n->thread_started) {
		atomic_store(&n->stop, true);
		kick(n->stop_fd);
		pthread_join(n->thread, NULL);
	}
	if (n->vk) {
		if (n->kick_fd >= 0)
			vpnkit_unwatch(n->vk, n->kick_fd);
		if (n->stop_fd >= 0)
			vpnkit_unwatch(n->vk, n->stop_fd);
		vpnkit_port_free(n->port);
		vpnkit_free(n->vk);
	}
	if (n->kick_fd >= 0)
		close(n->kick_fd);
	if (n->stop_fd >= 0)
		close(n->stop_fd);
	if (n->fd >= 0) {
		if (n->in_loop)
			hk_loop_del(vd->pci.vm, n->fd);
		close(n->fd);
	}
	free(n->txbuf);
	free(n->rxbuf);
	pthread_mutex_destroy(&vd->lock);
	free(n);
}

static const struct hk_virtio_ops vnet_ops = {
	.queue_notify = vnet_notify,
	.driver_ok = vnet_driver_ok,
};

/* ---------------------------------------------------------------- creation */

static struct hk_vnet *vnet_alloc(void)
{
	struct hk_vnet *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	n->fd = n->kick_fd = n->stop_fd = -1;
	n->mtu = 1500;
	n->txbuf = malloc(FRAME_MAX + 16);
	n->rxcap = 2 * (FRAME_MAX + 16);
	n->rxbuf = malloc(n->rxcap);
	if (!n->txbuf || !n->rxbuf) {
		free(n->txbuf);
		free(n->rxbuf);
		free(n);
		return NULL;
	}
	return n;
}

/* Undo what vnet_alloc and a backend set up, before attach. */
static void vnet_discard(struct hk_vnet *n)
{
	if (n->vk) {
		vpnkit_port_free(n->port);
		vpnkit_free(n->vk);
	}
	if (n->kick_fd >= 0)
		close(n->kick_fd);
	if (n->stop_fd >= 0)
		close(n->stop_fd);
	if (n->fd >= 0)
		close(n->fd);
	free(n->txbuf);
	free(n->rxbuf);
	free(n);
}

/* Put n (backend ready) on the bus. On failure n is freed. */
static int vnet_attach(struct hk_vnet *n, struct hk_vm *vm, unsigned slot,
		       unsigned func, uint64_t features)
{
	struct hk_virtio *vd = &n->vd;
	char name[16];
	int r;

	features |= (1ull << HK_VNET_F_MAC) | (1ull << HK_VNET_F_STATUS) |
		    (1ull << HK_VNET_F_MTU);
	snprintf(name, sizeof(name), "net%u.%u", slot, func);
	r = hk_virtio_init(vd, vm, slot, func, HK_VIRTIO_ID_NET, name, 2,
			   QUEUE_SIZE, features, CONFIG_LEN, &vnet_ops, n);
	if (r < 0) {
		vnet_discard(n);
		return r;
	}
	memcpy(vd->config, n->mac, 6);
	store_le16(vd->config + 6, LINK_UP);
	store_le16(vd->config + 8, 1); /* max_virtqueue_pairs */
	store_le16(vd->config + 10, n->mtu);
	if (n->fd >= 0) {
		n->events = EPOLLIN;
		r = hk_loop_add(vm, n->fd, EPOLLIN, backend_cb, n);
		if (r < 0)
			goto out_destroy;
		n->in_loop = true;
	}
	if (n->vk) {
		pthread_attr_t attr;

		pthread_attr_init(&attr);
		pthread_attr_setstacksize(&attr, HK_THREAD_STACK);
		r = -pthread_create(&n->thread, &attr, vk_thread, n);
		pthread_attr_destroy(&attr);
		if (r < 0)
			goto out_loop;
		n->thread_started = true;
	}
	r = hk_virtio_attach(vd, vnet_release);
	if (r < 0)
		goto out_thread;
	return 0;

out_thread:
	if (n->thread_started) {
		atomic_store(&n->stop, true);
		kick(n->stop_fd);
		pthread_join(n->thread, NULL);
	}
out_loop:
	if (n->in_loop)
		hk_loop_del(vm, n->fd);
out_destroy:
	pthread_mutex_destroy(&vd->lock);
	vnet_discard(n);
	return r;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t w = send(fd, p, len, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EPIPE;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

static int read_all(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t r = recv(fd, p, len, 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		if (r == 0)
			return -ECONNRESET;
		p += r;
		len -= (size_t)r;
	}
	return 0;
}

static int unix_connect(const char *path, int *out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = HANDSHAKE_TIMEOUT_S };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int r = -errno;

		close(fd);
		return r;
	}
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	*out = fd;
	return 0;
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

/* hyperkit's VMN3T handshake: fills n->mac and n->mtu. */
static int vmnet_handshake(struct hk_vnet *n, const struct logger *log,
			   const char *uuid)
{
	uint8_t init[VPNKIT_VMNET_INIT_SIZE], cmd[VPNKIT_VMNET_COMMAND_SIZE];
	uint8_t resp[VPNKIT_VMNET_RESPONSE_SIZE];
	struct vpnkit_vmnet_command c = { .type = VPNKIT_VMNET_ETHERNET };
	struct vpnkit_vmnet_init peer = { 0 };
	struct vpnkit_vmnet_response vif = { 0 };
	int r;

	if (uuid && strlen(uuid) > VPNKIT_VMNET_UUID_LEN)
		return -EINVAL;
	if (uuid)
		memcpy(c.uuid, uuid, strlen(uuid) + 1);
	r = vpnkit_vmnet_command_encode(cmd, &c);
	if (r < 0)
		return r;
	vpnkit_vmnet_init_encode(init, VPNKIT_VMNET_VERSION, NULL);
	r = write_all(n->fd, init, sizeof(init));
	if (r == 0)
		r = read_all(n->fd, init, sizeof(init));
	if (r < 0)
		return r;
	r = vpnkit_vmnet_init_decode(init, sizeof(init), &peer);
	if (r == -EPROTONOSUPPORT)
		logger_printf(log, LOG_LEVEL_WARN,
			      "vpnkit speaks protocol version %u, not %u",
			      peer.version, VPNKIT_VMNET_VERSION);
	else if (r < 0)
		return r;
	r = write_all(n->fd, cmd, sizeof(cmd));
	if (r == 0)
		r = read_all(n->fd, resp, sizeof(resp));
	if (r == 0)
		r = vpnkit_vmnet_response_decode(resp, sizeof(resp), &vif);
	if (r < 0)
		return r;
	if (vif.type == VPNKIT_VMNET_DISCONNECT) {
		logger_printf(log, LOG_LEVEL_ERR, "vpnkit refused: %s",
			      vif.reason);
		return -ECONNREFUSED;
	}
	memcpy(n->mac, vif.mac, 6);
	n->mtu = vif.mtu < 68 ? 1500 : vif.mtu;
	if (n->mtu > 65535 - VNET_ETH_HLEN)
		n->mtu = 65535 - VNET_ETH_HLEN;
	return 0;
}

/* Options after the emulation name: comma-separated words. */
struct vnet_opts {
	const char *path; /* path=: a vpnkit daemon */
	const char *stream; /* stream=: a QEMU stream peer */
	const char *uuid;
	bool inprocess; /* "inprocess" or "vpnkit" */
	const char *bare; /* a word without '=' (TAP name) */
};

static int parse_opts(char *s, struct vnet_opts *o, const struct logger *log)
{
	char *save = NULL;

	for (char *w = strtok_r(s, ",", &save); w;
	     w = strtok_r(NULL, ",", &save)) {
		if (strncmp(w, "path=", 5) == 0)
			o->path = w + 5;
		else if (strncmp(w, "stream=", 7) == 0)
			o->stream = w + 7;
		else if (strncmp(w, "uuid=", 5) == 0)
			o->uuid = w + 5;
		else if (strcmp(w, "inprocess") == 0 ||
			 strcmp(w, "vpnkit") == 0)
			o->inprocess = true;
		else if (!strchr(w, '=') && !o->bare)
			o->bare = w;
		else {
			logger_printf(log, LOG_LEVEL_ERR,
				      "virtio-net: unknown option '%s'", w);
			return -EINVAL;
		}
	}
	return 0;
}

static int create_inprocess(struct hk_vm *vm, unsigned slot, unsigned func,
			    const char *uuid)
{
	struct hk_vnet *n = vnet_alloc();
	int r;

	if (!n)
		return -ENOMEM;
	n->kind = VNET_VPNKIT;
	r = vk_setup(n, vm, uuid);
	if (r < 0) {
		vnet_discard(n);
		return r;
	}
	return vnet_attach(n, vm, slot, func,
			   (1ull << HK_VNET_F_CSUM) |
				   (1ull << HK_VNET_F_GUEST_CSUM) |
				   (1ull << HK_VNET_F_HOST_TSO4) |
				   (1ull << HK_VNET_F_HOST_TSO6) |
				   (1ull << HK_VNET_F_GUEST_TSO4) |
				   (1ull << HK_VNET_F_GUEST_TSO6));
}

/* A stream backend (daemon socket or given fd) with its framing. */
static struct hk_vnet *vnet_alloc_stream(enum hk_vnet_framing framing)
{
	struct hk_vnet *n = vnet_alloc();

	if (n) {
		n->kind = VNET_STREAM;
		n->framing = framing;
		n->prefix = framing == HK_VNET_FRAMING_LE16 ? 2 : 4;
	}
	return n;
}

static int create_socket(struct hk_vm *vm, unsigned slot, unsigned func,
			 const char *path, const char *uuid,
			 enum hk_vnet_framing framing)
{
	struct hk_vnet *n = vnet_alloc_stream(framing);
	int r;

	if (!n)
		return -ENOMEM;
	r = unix_connect(path, &n->fd);
	if (r < 0)
		goto out;
	if (framing == HK_VNET_FRAMING_LE16) {
		r = vmnet_handshake(n, hk_vm_log(vm), uuid);
	} else {
		if (getrandom(n->mac, 6, 0) != 6) {
			r = -EIO;
			goto out;
		}
		n->mac[0] = (uint8_t)((n->mac[0] & 0xfe) | 0x02);
	}
	if (r == 0)
		r = set_nonblock(n->fd);
	if (r < 0)
		goto out;
	return vnet_attach(n, vm, slot, func, 0);
out:
	logger_printf(hk_vm_log(vm), LOG_LEVEL_ERR, "%s: %s", path,
		      strerror(-r));
	vnet_discard(n);
	return r;
}

static int create_common(struct hk_vm *vm, unsigned slot, unsigned func,
			 const char *conf, bool vpnkit_name)
{
	const struct logger *log = hk_vm_log(vm);
	struct vnet_opts o = { 0 };
	char *s = strdup(conf ? conf : "");
	int r;

	if (!s)
		return -ENOMEM;
	r = parse_opts(s, &o, log);
	if (r < 0)
		goto out;
	if (o.inprocess && !o.path && !o.stream && !o.bare)
		r = create_inprocess(vm, slot, func, o.uuid);
	else if (vpnkit_name && o.path && !o.stream && !o.bare && !o.inprocess)
		r = create_socket(vm, slot, func, o.path, o.uuid,
				  HK_VNET_FRAMING_LE16);
	else if (!vpnkit_name && o.stream && !o.path && !o.bare && !o.inprocess)
		r = create_socket(vm, slot, func, o.stream, NULL,
				  HK_VNET_FRAMING_BE32);
	else {
		logger_printf(
			log, LOG_LEVEL_ERR,
			vpnkit_name ?
				"virtio-vpnkit needs path=SOCK or inprocess" :
				"virtio-net needs vpnkit or stream=SOCK");
		r = -EINVAL;
	}
out:
	free(s);
	if (r < 0)
		logger_printf(log, LOG_LEVEL_ERR, "%s at %u:%u: %s",
			      vpnkit_name ? "virtio-vpnkit" : "virtio-net",
			      slot, func, strerror(-r));
	return r;
}

int hk_virtio_net_create(struct hk_vm *vm, unsigned slot, unsigned func,
			 const char *conf)
{
	return create_common(vm, slot, func, conf, false);
}

int hk_virtio_vpnkit_create(struct hk_vm *vm, unsigned slot, unsigned func,
			    const char *conf)
{
	return create_common(vm, slot, func, conf, true);
}

int hk_virtio_tap_create(struct hk_vm *vm, unsigned slot, unsigned func,
			 const char *conf)
{
	const struct logger *log = hk_vm_log(vm);
	struct hk_vnet *n;
	uint64_t features = (1ull << HK_VNET_F_CSUM) |
			    (1ull << HK_VNET_F_HOST_TSO4) |
			    (1ull << HK_VNET_F_HOST_TSO6);
	int r;

	if (!conf || !*conf || strchr(conf, ',')) {
		logger_printf(log, LOG_LEVEL_ERR,
			      "virtio-tap at %u:%u needs a device name", slot,
			      func);
		return -EINVAL;
	}
	n = vnet_alloc();
	if (!n)
		return -ENOMEM;
	n->kind = VNET_TAP;
	n->prefix = VPNKIT_TAP_VNET_HDR_LEN;
	r = vpnkit_tap_open(conf, NULL, 0, &n->fd);
	if (r < 0) {
		logger_printf(log, LOG_LEVEL_ERR, "virtio-tap %s: %s", conf,
			      strerror(-r));
		vnet_discard(n);
		return r;
	}
	if (r & VPNKIT_TAP_CSUM)
		features |= 1ull << HK_VNET_F_GUEST_CSUM;
	if (r & VPNKIT_TAP_TSO)
		features |= (1ull << HK_VNET_F_GUEST_TSO4) |
			    (1ull << HK_VNET_F_GUEST_TSO6);
	if (getrandom(n->mac, 6, 0) != 6) {
		vnet_discard(n);
		return -EIO;
	}
	n->mac[0] = (uint8_t)((n->mac[0] & 0xfe) | 0x02);
	return vnet_attach(n, vm, slot, func, features);
}

int hk_vnet_new_stream(struct hk_vm *vm, unsigned slot, unsigned func, int fd,
		       enum hk_vnet_framing framing, const uint8_t mac[6],
		       struct hk_vnet **out)
{
	struct hk_vnet *n = vnet_alloc_stream(framing);
	int r;

	if (!n)
		return -ENOMEM;
	n->fd = fd;
	memcpy(n->mac, mac, 6);
	r = set_nonblock(fd);
	if (r < 0) {
		vnet_discard(n);
		return r;
	}
	r = vnet_attach(n, vm, slot, func, 0);
	if (r == 0)
		*out = n;
	return r;
}
