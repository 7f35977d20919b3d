// SPDX-License-Identifier: MIT
/*
 * The TAP transport: a Linux TAP device (possibly in another network
 * namespace) is one port, with offloads.
 *
 * Every frame on the device's descriptor carries a 10-byte virtio-net
 * header, which is struct vpnkit_offload byte for byte: frames read are
 * passed in with their header as the offload, frames written get theirs
 * (or a zero one) in front, with one writev() per frame. So the kernel
 * and the library exchange partial checksums and 64 KiB TCP segments
 * without anyone splitting or summing them on the way. The port is made
 * with VPNKIT_PORT_OFFLOAD even when the device refused to hand us
 * offloaded frames: writing them to a TAP is always allowed.
 *
 * Reads go on until the device is empty, at most 64 frames per wakeup so
 * that other links get their turn. A device that is down refuses writes
 * with EIO: those frames are dropped, as a switch port with no link
 * would, and the port stays up. A device that fails to read (its
 * namespace is gone) is no longer watched; the daemon carries on.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/uio.h>
#include <unistd.h>

#include "daemon.h"
#include "vpnkit/tap.h"

/* A TSO frame is up to 64 KiB of IP plus headers; leave room. */
#define TAP_BUF_SIZE (VPNKIT_TAP_VNET_HDR_LEN + 128u * 1024)
#define TAP_FRAMES_PER_WAKEUP 64
#define TAP_MAX_IOV 64

struct tap_link {
	struct daemon_conn c; /* the device's descriptor, not accepted */
	char *name;
	struct vpnkit_port *port;
	uint8_t *buf;
	bool want_resume;
	bool broken;
	struct tap_link *next;
};

static int tap_send(void *opaque, const struct vpnkit_offload *off,
		    const struct iovec *iov, int iovcnt)
{
	static const struct vpnkit_offload none;
	struct tap_link *t = opaque;
	struct iovec v[TAP_MAX_IOV + 1];
	ssize_t n;

	if (t->broken)
		return -EIO;
	if (iovcnt > TAP_MAX_IOV) {
		t->c.d->frames_dropped++;
		return 0;
	}
	v[0].iov_base = (void *)(off ? off : &none);
	v[0].iov_len = VPNKIT_TAP_VNET_HDR_LEN;
	memcpy(v + 1, iov, (size_t)iovcnt * sizeof(*iov));
	do {
		n = writev(t->c.fd, v, iovcnt + 1);
	} while (n < 0 && errno == EINTR);
	if (n >= 0)
		return 0;
	switch (errno) {
	case EAGAIN:
		t->want_resume = true;
		daemon_conn_watch_out(&t->c, true);
		return -EAGAIN;
	case EIO: /* the device is down */
	case EINVAL: /* a header the kernel refused */
	case EMSGSIZE:
		t->c.d->frames_dropped++;
		return 0;
	default:
		t->broken = true;
		return -errno;
	}
}

static const struct vpnkit_port_ops tap_ops = {
	.send = tap_send,
};

static void tap_event(void *opaque, uint32_t events)
{
	struct tap_link *t = opaque;
	struct vpnkit_offload off;

	if (events & EPOLLOUT) {
		daemon_conn_watch_out(&t->c, false);
		if (t->want_resume) {
			t->want_resume = false;
			vpnkit_port_resume(t->port);
		}
	}
	if (!(events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
		return;
	for (int i = 0; i < TAP_FRAMES_PER_WAKEUP; i++) {
		ssize_t n = read(t->c.fd, t->buf, TAP_BUF_SIZE);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			/* The device went away (its namespace was
			 * deleted): stop listening, keep running. */
			logger_printf(&t->c.d->log, LOG_LEVEL_ERR,
				      "tap %s: read: %s: link lost", t->name,
				      strerror(errno));
			t->broken = true;
			vpnkit_unwatch(t->c.d->vk, t->c.fd);
			return;
		}
		if ((size_t)n < VPNKIT_TAP_VNET_HDR_LEN + FRAME_MIN) {
			t->c.d->frames_dropped++;
			continue;
		}
		memcpy(&off, t->buf, sizeof(off));
		vpnkit_port_input(t->port, &off,
				  t->buf + VPNKIT_TAP_VNET_HDR_LEN,
				  (size_t)n - VPNKIT_TAP_VNET_HDR_LEN);
	}
}

int tap_link_open(struct daemon *d, const char *name, const char *netns)
{
	struct vpnkit_port_config pc = { .flags = VPNKIT_PORT_OFFLOAD };
	struct tap_link *t;
	int r, offloads;

	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->c.d = d;
	t->c.fd = -1;
	t->name = strdup(name);
	t->buf = malloc(TAP_BUF_SIZE);
	if (!t->name || !t->buf) {
		r = -ENOMEM;
		goto fail;
	}
	offloads = vpnkit_tap_open(name, netns, d->mtu, &t->c.fd);
	if (offloads < 0) {
		r = offloads;
		goto fail;
	}
	r = vpnkit_port_new(d->vk, &pc, &tap_ops, t, &t->port);
	if (r < 0)
		goto fail;
	t->c.events = EPOLLIN;
	r = vpnkit_watch(d->vk, t->c.fd, t->c.events, tap_event, t);
	if (r < 0) {
		vpnkit_port_free(t->port);
		goto fail;
	}
	t->next = d->taps;
	d->taps = t;
	logger_printf(
		&d->log, LOG_LEVEL_INFO,
		"tap %s%s%s: VM %s attached, offloads from the device: %s",
		name, netns ? " in " : "", netns ? netns : "",
		vpnkit_port_uuid(t->port),
		offloads == (VPNKIT_TAP_CSUM | VPNKIT_TAP_TSO) ?
			"checksum, TSO" :
		offloads == VPNKIT_TAP_CSUM ? "checksum" :
					      "none");
	return 0;
fail:
	if (t->c.fd >= 0)
		close(t->c.fd);
	free(t->buf);
	free(t->name);
	free(t);
	return r;
}

void tap_close_all(struct daemon *d)
{
	struct tap_link *t;

	while ((t = d->taps)) {
		d->taps = t->next;
		vpnkit_port_free(t->port);
		vpnkit_unwatch(d->vk, t->c.fd);
		close(t->c.fd);
		free(t->buf);
		free(t->name);
		free(t);
	}
}
