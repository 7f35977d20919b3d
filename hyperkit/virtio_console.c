// SPDX-License-Identifier: MIT
/*
 * virtio-console with one port (the guest's /dev/hvc0): queue 0 carries
 * bytes to the guest, queue 1 bytes from it. The backend is a chardev
 * (chardev.h): `virtio-console[,stdio|autopty|PATH]`, stdio by default.
 *
 * Theory of operation. Output: each chain on the transmit queue is
 * written to the backend whole and pushed back with length 0 (bytes a
 * pty nobody reads are dropped, as on the UART). Input: the backend's fd
 * is polled by the event thread; bytes are read into a small host buffer
 * only when it is empty, and the buffer is copied into receive chains the
 * guest posted. While the buffer cannot be delivered (no receive buffers,
 * driver not ready) the fd is not polled; the guest's next notification
 * on the receive queue delivers the rest and polls again. So input never
 * outruns the guest, and nothing is lost or allocated per byte.
 *
 * The optional emergency write (VIRTIO_CONSOLE_F_EMERG_WRITE, config
 * offset 8) sends one byte to the backend before the queues are up.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "base/endian.h"
#include "chardev.h"
#include "virtio_pci.h"

#define VCON_QUEUE_SIZE 64u
#define VCON_RX 0u
#define VCON_TX 1u
#define VCON_F_EMERG_WRITE 2
#define VCON_CONFIG_LEN 12u /* cols, rows, max_nr_ports, emerg_wr */
#define VCON_RXBUF 4096u

struct vcon_dev {
	struct hk_virtio vd;
	struct hk_chardev cd;
	bool in_polled; /* cd.in_fd is in the event loop */
	bool in_paused; /* ... with no events asked for */
	uint8_t rx[VCON_RXBUF]; /* input not yet in the guest */
	size_t rx_off, rx_len;
	struct hk_vq_chain chain;
};

static void input_pause(struct vcon_dev *d, bool pause)
{
	if (!d->in_polled || d->in_paused == pause)
		return;
	d->in_paused = pause;
	hk_loop_mod(d->vd.pci.vm, d->cd.in_fd, pause ? 0 : EPOLLIN);
}

/* Copy pending input into receive chains (lock held). Returns true when
 * the buffer is empty. */
static bool rx_deliver(struct vcon_dev *d)
{
	struct hk_virtio *vd = &d->vd;
	struct hk_vq *vq = &vd->vq[VCON_RX];
	bool pushed = false;

	if (!(vd->status & HK_VIRTIO_S_DRIVER_OK))
		return d->rx_len == 0;
	while (d->rx_len && hk_vq_pop(vq, &d->chain) > 0) {
		size_t n = hk_iov_from_buf(d->chain.iov + d->chain.n_out,
					   d->chain.n_in, 0, d->rx + d->rx_off,
					   d->rx_len);

		hk_vq_push(vq, d->chain.head, (uint32_t)n);
		pushed = true;
		d->rx_off += n;
		d->rx_len -= n;
		if (n == 0)
			break; /* a chain with no writable byte */
	}
	if (pushed)
		(void)hk_virtio_queue_done(vd, VCON_RX);
	return d->rx_len == 0;
}

/* The event thread: the backend has input. */
static void vcon_input(void *opaque, uint32_t events)
{
	struct vcon_dev *d = opaque;
	ssize_t r;

	pthread_mutex_lock(&d->vd.lock);
	if (d->rx_len == 0) {
		r = read(d->cd.in_fd, d->rx, sizeof(d->rx));
		if (r > 0) {
			d->rx_off = 0;
			d->rx_len = (size_t)r;
		} else if (r == 0 || (errno != EAGAIN && errno != EINTR) ||
			   (events & (EPOLLHUP | EPOLLERR))) {
			/* End of input: the guest just gets no more. */
			hk_loop_del(d->vd.pci.vm, d->cd.in_fd);
			d->in_polled = false;
			goto out_unlock;
		}
	} else if (events & (EPOLLHUP | EPOLLERR)) {
		/* Input ended with bytes still waiting: stop polling (a
		 * hang-up is reported even when paused) and let the guest's
		 * receive notifications drain them. */
		hk_loop_del(d->vd.pci.vm, d->cd.in_fd);
		d->in_polled = false;
	}
	if (!rx_deliver(d))
		input_pause(d, true);
out_unlock:
	pthread_mutex_unlock(&d->vd.lock);
}

static void transmit(struct vcon_dev *d)
{
	struct hk_virtio *vd = &d->vd;
	struct hk_vq *vq = &vd->vq[VCON_TX];

	do {
		while (hk_vq_pop(vq, &d->chain) > 0) {
			for (unsigned i = 0; i < d->chain.n_out; i++) {
				int r = hk_chardev_write(
					&d->cd, d->chain.iov[i].iov_base,
					d->chain.iov[i].iov_len);

				if (r < 0) {
					logger_printf_limited(vd->log, &vd->rl,
							      LOG_LEVEL_WARN,
							      "%s output: %s",
							      vd->name,
							      strerror(-r));
					break;
				}
			}
			hk_vq_push(vq, d->chain.head, 0);
		}
	} while (hk_virtio_queue_done(vd, VCON_TX));
}

static void vcon_notify(struct hk_virtio *vd, unsigned q)
{
	struct vcon_dev *d = vd->opaque;

	if (q == VCON_TX) {
		transmit(d);
		return;
	}
	/* New receive buffers: deliver what waits, then read more. */
	if (rx_deliver(d))
		input_pause(d, false);
}

static void vcon_driver_ok(struct hk_virtio *vd)
{
	struct vcon_dev *d = vd->opaque;

	if (rx_deliver(d))
		input_pause(d, false);
}

/* cols and rows unknown (0), one port, emerg_wr reads as 0. */
static void vcon_config_fill(uint8_t *cfg)
{
	memset(cfg, 0, VCON_CONFIG_LEN);
	store_le32(cfg + 4, 1);
}

static void vcon_config_write(struct hk_virtio *vd, unsigned off, unsigned size)
{
	/* Only emerg_wr is writable: put the rest back, and send the
	 * character written at offset 8. */
	struct vcon_dev *d = vd->opaque;
	uint8_t ch = vd->config[8];
	int r;

	vcon_config_fill(vd->config);
	if (off != 8 || size < 1 || !hk_virtio_has(vd, VCON_F_EMERG_WRITE))
		return;
	r = hk_chardev_write(&d->cd, &ch, 1);
	if (r < 0)
		logger_printf_limited(vd->log, &vd->rl, LOG_LEVEL_WARN,
				      "%s output: %s", vd->name, strerror(-r));
}

static void vcon_release(struct hk_virtio *vd)
{
	struct vcon_dev *d = vd->opaque;

	if (d->in_polled)
		hk_loop_del(vd->pci.vm, d->cd.in_fd);
	hk_chardev_close(&d->cd);
	pthread_mutex_destroy(&vd->lock);
	free(d);
}

static const struct hk_virtio_ops vcon_ops = {
	.queue_notify = vcon_notify,
	.config_write = vcon_config_write,
	.driver_ok = vcon_driver_ok,
};

int hk_virtio_console_create(struct hk_vm *vm, unsigned slot, unsigned func,
			     const char *conf)
{
	struct logger *lg = hk_vm_log(vm);
	struct vcon_dev *d;
	char name[16];
	int r;

	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	r = hk_chardev_open(&d->cd, conf && *conf ? conf : "stdio", lg);
	if (r < 0)
		goto out_free;
	snprintf(name, sizeof(name), "con%u.%u", slot, func);
	r = hk_virtio_init(&d->vd, vm, slot, func, HK_VIRTIO_ID_CONSOLE, name,
			   2, VCON_QUEUE_SIZE, 1ull << VCON_F_EMERG_WRITE,
			   VCON_CONFIG_LEN, &vcon_ops, d);
	if (r < 0)
		goto out_close;
	vcon_config_fill(d->vd.config);
	if (d->cd.in_fd >= 0) {
		/* Not polled until the driver has receive buffers. */
		int e = hk_loop_add(vm, d->cd.in_fd, 0, vcon_input, d);

		if (e == 0) {
			d->in_polled = true;
			d->in_paused = true;
		} else if (e != -EPERM) {
			logger_printf(lg, LOG_LEVEL_WARN, "%s: no input: %s",
				      name, strerror(-e));
		}
	}
	r = hk_virtio_attach(&d->vd, vcon_release);
	if (r < 0)
		goto out_unpoll;
	return 0;

out_unpoll:
	if (d->in_polled)
		hk_loop_del(vm, d->cd.in_fd);
out_close:
	hk_chardev_close(&d->cd);
out_free:
	logger_printf(lg, LOG_LEVEL_ERR, "virtio-console at %u:%u: %s", slot,
		      func, strerror(-r));
	free(d);
	return r;
}
