// SPDX-License-Identifier: MIT
/*
 * An 8250/16550A UART at COM1 (0x3f8, IRQ 4) or COM2 (0x2f8, IRQ 3), the
 * guest's console, with a backend on the host: our stdin/stdout (a raw
 * terminal when it is a tty, restored when the UART is freed), a new
 * pseudo-terminal (autopty), a tty or character device given by path, or
 * a file that receives the output.
 *
 * Registers, by offset: 0 RBR/THR (DLL with DLAB), 1 IER (DLM with
 * DLAB), 2 IIR/FCR, 3 LCR, 4 MCR, 5 LSR, 6 MSR, 7 SCR. Transmission is
 * instant: a THR write goes to the backend and the transmitter is empty
 * again at once (LSR THRE|TEMT), which raises the "THR empty" interrupt if
 * enabled. Received bytes wait in a 16-byte FIFO; "data ready" interrupts
 * while it is not empty. Loopback mode (MCR bit 4) sends THR writes to the
 * FIFO and reflects the modem control outputs in MSR, as Linux's probe
 * checks. The interrupt line follows IIR: asserted while an enabled
 * condition is pending.
 *
 * Threads: vCPU threads access the registers, the event thread feeds
 * input; a mutex covers both. Input stops being polled while the FIFO is
 * full and resumes when the guest reads.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "chardev.h"
#include "internal.h"

#define FIFO_SIZE 16

#define IER_RDA 0x01
#define IER_THRE 0x02
#define IER_MSI 0x08
#define IIR_NONE 0x01
#define IIR_THRE 0x02
#define IIR_RDA 0x04
#define IIR_FIFO 0xc0
#define FCR_ENABLE 0x01
#define FCR_CLEAR_RX 0x02
#define LCR_DLAB 0x80
#define MCR_LOOP 0x10
#define LSR_DR 0x01
#define LSR_OE 0x02
#define LSR_THRE 0x20
#define LSR_TEMT 0x40

struct hk_uart {
	struct hk_vm *vm;
	pthread_mutex_t lock;
	unsigned irq;
	uint8_t ier, lcr, mcr, scr, fcr, lsr_err, dll, dlm;
	bool thre_pending; /* "THR empty" interrupt not yet acknowledged */
	bool line; /* the interrupt line's level */
	uint8_t fifo[FIFO_SIZE];
	unsigned head, count;
	struct hk_chardev cd; /* the backend (chardev.c) */
	bool in_polled; /* cd.in_fd is in the event loop */
	bool in_paused; /* ... but not polled: FIFO full */
	struct ratelimit rl;
};

static uint8_t iir_of(const struct hk_uart *u)
{
	uint8_t fifo = (u->fcr & FCR_ENABLE) ? IIR_FIFO : 0;

	if ((u->ier & IER_RDA) && u->count)
		return IIR_RDA | fifo;
	if ((u->ier & IER_THRE) && u->thre_pending)
		return IIR_THRE | fifo;
	return IIR_NONE | fifo;
}

static void irq_update(struct hk_uart *u)
{
	bool level = !(iir_of(u) & IIR_NONE);

	if (level != u->line) {
		u->line = level;
		hk_irq_set(u->vm, u->irq, level);
	}
}

static void fifo_push(struct hk_uart *u, uint8_t b)
{
	if (u->count == FIFO_SIZE) {
		u->lsr_err |= LSR_OE;
		return;
	}
	u->fifo[(u->head + u->count++) % FIFO_SIZE] = b;
}

/* Poll the input again once there is room (lock held). */
static void input_resume(struct hk_uart *u)
{
	if (u->in_polled && u->in_paused && u->count < FIFO_SIZE) {
		u->in_paused = false;
		hk_loop_mod(u->vm, u->cd.in_fd, EPOLLIN);
	}
}

static void transmit(struct hk_uart *u, uint8_t b)
{
	int r;

	if (u->mcr & MCR_LOOP) {
		fifo_push(u, b);
		return;
	}
	/* A pty nobody reads drops the byte. */
	r = hk_chardev_write(&u->cd, &b, 1);
	if (r < 0)
		logger_printf_limited(&u->vm->log, &u->rl, LOG_LEVEL_WARN,
				      "COM%u output: %s", u->irq == 4 ? 1 : 2,
				      strerror(-r));
}

static uint8_t msr_of(const struct hk_uart *u)
{
	if (u->mcr & MCR_LOOP) {
		/* DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD. */
		return (uint8_t)(((u->mcr & 0x01) << 5) | ((u->mcr & 0x02) << 3) |
				 ((u->mcr & 0x04) << 4) | ((u->mcr & 0x08) << 4));
	}
	return 0xb0; /* DCD, DSR, CTS: a cable and a reader */
}

static void uart_io(void *opaque, uint64_t off, unsigned size, bool write,
		    uint64_t *val)
{
	struct hk_uart *u = opaque;
	uint8_t v = (uint8_t)*val;

	(void)size;
	pthread_mutex_lock(&u->lock);
	if (write) {
		switch (off) {
		case 0:
			if (u->lcr & LCR_DLAB) {
				u->dll = v;
			} else {
				transmit(u, v);
				u->thre_pending = true;
			}
			break;
		case 1:
			if (u->lcr & LCR_DLAB) {
				u->dlm = v;
			} else {
				/* Enabling THRE with THR empty interrupts. */
				if (!(u->ier & IER_THRE) && (v & IER_THRE))
					u->thre_pending = true;
				u->ier = v & 0x0f;
			}
			break;
		case 2:
			if (v & FCR_CLEAR_RX) {
				u->count = 0;
				input_resume(u);
			}
			u->fcr = v & 0xc9;
			break;
		case 3:
			u->lcr = v;
			break;
		case 4:
			u->mcr = v & 0x1f;
			break;
		case 7:
			u->scr = v;
			break;
		default:
			break; /* LSR and MSR are read-only */
		}
	} else {
		switch (off) {
		case 0:
			if (u->lcr & LCR_DLAB) {
				v = u->dll;
			} else if (u->count) {
				v = u->fifo[u->head];
				u->head = (u->head + 1) % FIFO_SIZE;
				u->count--;
				input_resume(u);
			} else {
				v = 0;
			}
			break;
		case 1:
			v = (u->lcr & LCR_DLAB) ? u->dlm : u->ier;
			break;
		case 2:
			v = iir_of(u);
			if ((v & 0x0f) == IIR_THRE)
				u->thre_pending = false;
			break;
		case 3:
			v = u->lcr;
			break;
		case 4:
			v = u->mcr;
			break;
		case 5:
			v = LSR_THRE | LSR_TEMT | (u->count ? LSR_DR : 0) |
			    u->lsr_err;
			u->lsr_err = 0;
			break;
		case 6:
			v = msr_of(u);
			break;
		case 7:
			v = u->scr;
			break;
		default:
			v = 0xff;
		}
		*val = v;
	}
	irq_update(u);
	pthread_mutex_unlock(&u->lock);
}

/* The event thread: bytes from the backend into the FIFO. */
static void uart_input(void *opaque, uint32_t events)
{
	struct hk_uart *u = opaque;
	uint8_t buf[FIFO_SIZE];
	ssize_t r;
	unsigned i;

	pthread_mutex_lock(&u->lock);
	if (u->count == FIFO_SIZE) {
		u->in_paused = true;
		hk_loop_mod(u->vm, u->cd.in_fd, 0);
		goto out_unlock;
	}
	r = read(u->cd.in_fd, buf, FIFO_SIZE - u->count);
	if (r > 0) {
		for (i = 0; i < (unsigned)r; i++)
			fifo_push(u, buf[i]);
		irq_update(u);
	} else if (r == 0 || (errno != EAGAIN && errno != EINTR) ||
		   (events & (EPOLLHUP | EPOLLERR))) {
		/* End of input: the guest just gets no more. */
		hk_loop_del(u->vm, u->cd.in_fd);
		u->in_polled = false;
	}
out_unlock:
	pthread_mutex_unlock(&u->lock);
}

int hk_uart_new(struct hk_vm *vm, unsigned index, const char *backend,
		struct hk_uart **out)
{
	static const uint16_t ports[2] = { 0x3f8, 0x2f8 };
	static const unsigned irqs[2] = { 4, 3 };
	struct hk_uart *u;
	int err;

	if (index > 1 || !backend || !*backend)
		return -EINVAL;
	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->vm = vm;
	u->irq = irqs[index];
	u->cd.in_fd = u->cd.out_fd = u->cd.pty_slave = -1;
	u->rl = (struct ratelimit)RATELIMIT_DEFAULT;
	u->dll = 12; /* 9600 baud */
	pthread_mutex_init(&u->lock, NULL);
	err = hk_chardev_open(&u->cd, backend, &vm->log);
	if (err)
		goto out_free;
	err = hk_pio_register(vm, ports[index], 8, uart_io, u);
	if (err)
		goto out_free;
	if (u->cd.in_fd >= 0) {
		int r = hk_loop_add(vm, u->cd.in_fd, EPOLLIN, uart_input, u);

		/* A regular file or /dev/null cannot be polled: no input. */
		if (r == 0)
			u->in_polled = true;
		else if (r != -EPERM)
			logger_printf(&vm->log, LOG_LEVEL_WARN,
				      "COM%u: no input: %s", index + 1,
				      strerror(-r));
	}
	*out = u;
	return 0;
out_free:
	hk_uart_free(u);
	return err;
}

const char *hk_uart_path(const struct hk_uart *u)
{
	return u->cd.path[0] ? u->cd.path : NULL;
}

void hk_uart_free(struct hk_uart *u)
{
	if (!u)
		return;
	if (u->in_polled)
		hk_loop_del(u->vm, u->cd.in_fd);
	hk_chardev_close(&u->cd);
	pthread_mutex_destroy(&u->lock);
	free(u);
}
