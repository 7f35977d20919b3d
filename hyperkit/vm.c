// SPDX-License-Identifier: MIT
/*
 * The VM: /dev/kvm, guest memory, the in-kernel interrupt controller,
 * interrupt routes for MSI, the port and MMIO dispatch tables, the event
 * thread, and the lifecycle of the public API (hyperkit.h).
 *
 * Theory of operation. hk_vm_new makes a KVM VM with guest RAM in two
 * memory slots (below the MMIO hole, and at 4 GiB), an in-kernel IOAPIC,
 * PICs and PIT, and loads the kernel and tables. hk_vm_start runs one
 * thread per vCPU (cpu.c) and the event thread here, which waits in epoll
 * for the file descriptors devices registered (backends, ioeventfds,
 * timers) and an eventfd that wakes it to leave. The guest ends when a
 * vCPU or device calls hk_vm_finish: the first reason is kept, every vCPU
 * is kicked out of KVM_RUN, and hk_vm_wait joins the threads.
 *
 * Interrupt routing: KVM_SET_GSI_ROUTING replaces the whole table, so
 * every update re-sends KVM's default routes (GSI 0-15 to the IOAPIC and
 * the PICs, 16-23 to the IOAPIC) along with the MSI routes in use.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/alloc.h"
#include "devices.h"
#include "internal.h"
#include "pci.h"
#include "rtc.h"

void *hk_gpa(struct hk_vm *vm, uint64_t gpa, uint64_t len)
{
	return hk_mem_gpa(&vm->mem, gpa, len);
}

struct logger *hk_vm_log(struct hk_vm *vm)
{
	return &vm->log;
}

const char *hk_exit_name(int reason)
{
	switch (reason) {
	case HK_EXIT_POWEROFF:
		return "poweroff";
	case HK_EXIT_RESET:
		return "reset";
	case HK_EXIT_TRIPLE_FAULT:
		return "triple fault";
	case HK_EXIT_INTERNAL_ERROR:
		return "internal error";
	case HK_EXIT_KILLED:
		return "killed";
	}
	return "unknown";
}

/* ---------------------------------------------------------------- I/O */

static int range_add(struct hk_vm *vm, struct hk_io_range **tab, size_t *n,
		     size_t *cap, uint64_t base, uint64_t len, hk_io_fn *fn,
		     void *opaque)
{
	struct hk_io_range *t = *tab;
	uint64_t end;
	size_t i;

	if (len == 0 || __builtin_add_overflow(base, len, &end) || !fn)
		return -EINVAL;
	for (i = 0; i < *n; i++)
		if (base < t[i].base + t[i].len && t[i].base < end)
			return -EBUSY;
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;

		t = realloc(t, ncap * sizeof(*t));
		if (!t)
			return -ENOMEM;
		*tab = t;
		*cap = ncap;
	}
	t[(*n)++] = (struct hk_io_range){ base, len, fn, opaque };
	(void)vm;
	return 0;
}

int hk_pio_register(struct hk_vm *vm, uint16_t port, uint16_t len,
		    hk_io_fn *fn, void *opaque)
{
	int err;

	if ((uint32_t)port + len > 0x10000)
		return -EINVAL;
	pthread_rwlock_wrlock(&vm->io_lock);
	err = range_add(vm, &vm->pio, &vm->n_pio, &vm->cap_pio, port, len, fn,
			opaque);
	pthread_rwlock_unlock(&vm->io_lock);
	if (err)
		logger_printf(&vm->log, LOG_LEVEL_ERR,
			      "ports 0x%x+%u: cannot register: %s", port, len,
			      strerror(-err));
	return err;
}

int hk_mmio_register(struct hk_vm *vm, uint64_t gpa, uint64_t len,
		     hk_io_fn *fn, void *opaque)
{
	int err;

	if (hk_gpa(vm, gpa, 1) || hk_gpa(vm, gpa + len - 1, 1))
		return -EINVAL; /* MMIO never overlaps RAM */
	pthread_rwlock_wrlock(&vm->io_lock);
	err = range_add(vm, &vm->mmio, &vm->n_mmio, &vm->cap_mmio, gpa, len,
			fn, opaque);
	pthread_rwlock_unlock(&vm->io_lock);
	return err;
}

/* cppcheck-suppress constParameter ; platform.h's contract: void * */
int hk_mmio_move(struct hk_vm *vm, void *opaque, uint64_t old_gpa,
		 uint64_t new_gpa, uint64_t len)
{
	struct hk_io_range r;
	size_t i;
	int err = -ENOENT;

	pthread_rwlock_wrlock(&vm->io_lock);
	for (i = 0; i < vm->n_mmio; i++) {
		if (vm->mmio[i].opaque != opaque || vm->mmio[i].base != old_gpa)
			continue;
		r = vm->mmio[i];
		vm->mmio[i] = vm->mmio[--vm->n_mmio];
		err = 0;
		if (new_gpa == 0 && len == 0)
			break;
		if (len == 0 || new_gpa + len < new_gpa ||
		    hk_gpa(vm, new_gpa, 1) || hk_gpa(vm, new_gpa + len - 1, 1))
			err = -EINVAL;
		else
			err = range_add(vm, &vm->mmio, &vm->n_mmio,
					&vm->cap_mmio, new_gpa, len, r.fn,
					r.opaque);
		/* A refused move (onto RAM or another range) leaves the range
		 * where it was: pci.c's BAR bookkeeping relies on that. The
		 * slot it left is free, so putting it back cannot fail. */
		if (err)
			(void)range_add(vm, &vm->mmio, &vm->n_mmio,
					&vm->cap_mmio, r.base, r.len, r.fn,
					r.opaque);
		break;
	}
	pthread_rwlock_unlock(&vm->io_lock);
	return err;
}

/*
 * Find the handler for addr in t (under io_lock) and copy it out: the
 * handler runs after the lock is dropped, because it may itself move or
 * add ranges (a BAR the guest reprograms from a config-port write).
 */
static bool lookup(const struct hk_io_range *t, size_t n, uint64_t addr,
		   struct hk_io_range *out)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (addr >= t[i].base && addr - t[i].base < t[i].len) {
			*out = t[i];
			return true;
		}
	}
	return false;
}

void hk_vm_pio(struct hk_vm *vm, uint16_t port, unsigned size, bool write,
	       uint64_t *val)
{
	struct hk_io_range r;
	bool found;

	pthread_rwlock_rdlock(&vm->io_lock);
	found = lookup(vm->pio, vm->n_pio, port, &r);
	pthread_rwlock_unlock(&vm->io_lock);
	if (found) {
		r.fn(r.opaque, port - r.base, size, write, val);
		return;
	}
	if (!write)
		*val = ~0ull;
	/* Port 0x80 is the POST/delay port: expected, not worth a line. */
	if (port != 0x80)
		logger_printf_limited(&vm->log, &vm->io_rl, LOG_LEVEL_DEBUG,
				      "unhandled port %s 0x%x size %u",
				      write ? "write" : "read", port, size);
}

void hk_vm_mmio(struct hk_vm *vm, uint64_t gpa, unsigned size, bool write,
		uint64_t *val)
{
	struct hk_io_range r;
	bool found;

	pthread_rwlock_rdlock(&vm->io_lock);
	found = lookup(vm->mmio, vm->n_mmio, gpa, &r);
	pthread_rwlock_unlock(&vm->io_lock);
	if (found) {
		r.fn(r.opaque, gpa - r.base, size, write, val);
		return;
	}
	if (!write)
		*val = ~0ull;
	logger_printf_limited(&vm->log, &vm->io_rl, LOG_LEVEL_DEBUG,
			      "unhandled MMIO %s 0x%llx size %u",
			      write ? "write" : "read",
			      (unsigned long long)gpa, size);
}

/* ---------------------------------------------------------------- interrupts */

void hk_irq_set(struct hk_vm *vm, unsigned gsi, bool level)
{
	struct kvm_irq_level l = { .irq = gsi, .level = level };

	if (gsi >= HK_IOAPIC_PINS)
		return;
	if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &l) < 0)
		logger_printf_limited(&vm->log, &vm->io_rl, LOG_LEVEL_WARN,
				      "KVM_IRQ_LINE %u: %s", gsi,
				      strerror(errno));
}

void hk_irq_pulse(struct hk_vm *vm, unsigned gsi)
{
	hk_irq_set(vm, gsi, true);
	hk_irq_set(vm, gsi, false);
}

/* Send the routing table: defaults plus MSI routes in use (gsi_lock). */
static int routes_commit(struct hk_vm *vm)
{
	struct kvm_irq_routing *r;
	unsigned n = 0, gsi;
	size_t max = 16 * 2 + 8 + HK_MSI_GSI_MAX;
	int err = 0;

	r = calloc(1, sizeof(*r) + max * sizeof(r->entries[0]));
	if (!r)
		return -ENOMEM;
	for (gsi = 0; gsi < HK_IOAPIC_PINS; gsi++) {
		r->entries[n++] = (struct kvm_irq_routing_entry){
			.gsi = gsi,
			.type = KVM_IRQ_ROUTING_IRQCHIP,
			.u.irqchip = { .irqchip = KVM_IRQCHIP_IOAPIC,
				       .pin = gsi },
		};
		if (gsi < 16)
			r->entries[n++] = (struct kvm_irq_routing_entry){
				.gsi = gsi,
				.type = KVM_IRQ_ROUTING_IRQCHIP,
				.u.irqchip = {
					.irqchip = gsi < 8
							   ? KVM_IRQCHIP_PIC_MASTER
							   : KVM_IRQCHIP_PIC_SLAVE,
					.pin = gsi % 8 },
			};
	}
	for (gsi = HK_IOAPIC_PINS; gsi < HK_MSI_GSI_MAX; gsi++) {
		if (!vm->msi[gsi].used)
			continue;
		r->entries[n++] = (struct kvm_irq_routing_entry){
			.gsi = gsi,
			.type = KVM_IRQ_ROUTING_MSI,
			.u.msi = { .address_lo = (uint32_t)vm->msi[gsi].addr,
				   .address_hi =
					   (uint32_t)(vm->msi[gsi].addr >> 32),
				   .data = vm->msi[gsi].data },
		};
	}
	r->nr = n;
	if (ioctl(vm->vm_fd, KVM_SET_GSI_ROUTING, r) < 0) {
		err = -errno;
		logger_printf(&vm->log, LOG_LEVEL_ERR,
			      "KVM_SET_GSI_ROUTING: %s", strerror(errno));
	}
	free(r);
	return err;
}

int hk_msi_setup(struct hk_vm *vm, struct hk_msi *m, uint64_t addr,
		 uint32_t data)
{
	struct kvm_irqfd irqfd = { 0 };
	int gsi = m->gsi, err;
	bool fresh = gsi < 0;

	pthread_mutex_lock(&vm->gsi_lock);
	if (fresh) {
		for (gsi = HK_IOAPIC_PINS; gsi < HK_MSI_GSI_MAX; gsi++)
			if (!vm->msi[gsi].used)
				break;
		if (gsi == HK_MSI_GSI_MAX) {
			err = -ENOSPC;
			goto out_unlock;
		}
	} else if (gsi < HK_IOAPIC_PINS || gsi >= HK_MSI_GSI_MAX ||
		   !vm->msi[gsi].used) {
		err = -EINVAL;
		goto out_unlock;
	}
	vm->msi[gsi] = (struct hk_msi_route){ true, addr, data };
	err = routes_commit(vm);
	if (err) {
		if (fresh)
			vm->msi[gsi].used = false;
		goto out_unlock;
	}
	if (fresh) {
		m->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (m->efd < 0) {
			err = -errno;
			goto out_unroute;
		}
		irqfd.fd = (uint32_t)m->efd;
		irqfd.gsi = (uint32_t)gsi;
		if (ioctl(vm->vm_fd, KVM_IRQFD, &irqfd) < 0) {
			err = -errno;
			close(m->efd);
			m->efd = -1;
			goto out_unroute;
		}
		m->gsi = gsi;
	}
	m->addr = addr;
	m->data = data;
	pthread_mutex_unlock(&vm->gsi_lock);
	return 0;
out_unroute:
	vm->msi[gsi].used = false;
	routes_commit(vm);
out_unlock:
	pthread_mutex_unlock(&vm->gsi_lock);
	logger_printf(&vm->log, LOG_LEVEL_ERR, "MSI setup: %s", strerror(-err));
	return err;
}

void hk_msi_release(struct hk_vm *vm, struct hk_msi *m)
{
	struct kvm_irqfd irqfd = { 0 };

	if (m->gsi < 0)
		return;
	irqfd.fd = (uint32_t)m->efd;
	irqfd.gsi = (uint32_t)m->gsi;
	irqfd.flags = KVM_IRQFD_FLAG_DEASSIGN;
	ioctl(vm->vm_fd, KVM_IRQFD, &irqfd);
	close(m->efd);
	pthread_mutex_lock(&vm->gsi_lock);
	if (m->gsi >= HK_IOAPIC_PINS && m->gsi < HK_MSI_GSI_MAX) {
		vm->msi[m->gsi].used = false;
		routes_commit(vm);
	}
	pthread_mutex_unlock(&vm->gsi_lock);
	m->gsi = -1;
	m->efd = -1;
}

void hk_msi_fire(struct hk_msi *m)
{
	uint64_t one = 1;

	if (m->efd >= 0 && write(m->efd, &one, sizeof(one)) < 0) {
		/* EAGAIN: the counter is saturated, an interrupt is due. */
	}
}

int hk_ioeventfd(struct hk_vm *vm, int efd, uint64_t gpa, unsigned len,
		 bool deassign)
{
	struct kvm_ioeventfd io = {
		.addr = gpa,
		.len = len,
		.fd = efd,
		.flags = deassign ? KVM_IOEVENTFD_FLAG_DEASSIGN : 0,
	};

	if (len != 2 && len != 4)
		return -EINVAL;
	if (ioctl(vm->vm_fd, KVM_IOEVENTFD, &io) < 0) {
		logger_printf(&vm->log, LOG_LEVEL_ERR,
			      "KVM_IOEVENTFD 0x%llx: %s",
			      (unsigned long long)gpa, strerror(errno));
		return -errno;
	}
	return 0;
}

/* ---------------------------------------------------------------- event loop */

#define LOOP_WAKE_TAG UINT64_MAX

int hk_loop_add(struct hk_vm *vm, int fd, uint32_t events, hk_loop_fn *cb,
		void *opaque)
{
	struct epoll_event ev = { .events = events };
	int slot, err = -ENOSPC;

	pthread_mutex_lock(&vm->loop_lock);
	for (slot = 0; slot < HK_LOOP_MAX; slot++)
		if (vm->loop[slot].fd < 0)
			break;
	if (slot < HK_LOOP_MAX) {
		struct hk_loop_entry *e = &vm->loop[slot];

		e->gen++;
		ev.data.u64 = (uint64_t)e->gen << 32 | (uint32_t)slot;
		if (epoll_ctl(vm->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			err = -errno;
		} else {
			e->fd = fd;
			e->cb = cb;
			e->opaque = opaque;
			err = 0;
		}
	}
	pthread_mutex_unlock(&vm->loop_lock);
	return err;
}

static int loop_find(struct hk_vm *vm, int fd)
{
	int slot;

	for (slot = 0; slot < HK_LOOP_MAX; slot++)
		if (vm->loop[slot].fd == fd)
			return slot;
	return -1;
}

int hk_loop_mod(struct hk_vm *vm, int fd, uint32_t events)
{
	struct epoll_event ev = { .events = events };
	int slot, err = -ENOENT;

	pthread_mutex_lock(&vm->loop_lock);
	slot = loop_find(vm, fd);
	if (slot >= 0) {
		ev.data.u64 = (uint64_t)vm->loop[slot].gen << 32 |
			      (uint32_t)slot;
		err = epoll_ctl(vm->epoll_fd, EPOLL_CTL_MOD, fd, &ev) < 0
			      ? -errno
			      : 0;
	}
	pthread_mutex_unlock(&vm->loop_lock);
	return err;
}

void hk_loop_del(struct hk_vm *vm, int fd)
{
	int slot;

	pthread_mutex_lock(&vm->loop_lock);
	slot = loop_find(vm, fd);
	if (slot >= 0) {
		epoll_ctl(vm->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
		vm->loop[slot].fd = -1;
		/* From another thread, wait until a callback running for
		 * this entry returns, so the caller may free its opaque. */
		while (vm->loop_dispatching == slot && vm->loop_started &&
		       !pthread_equal(pthread_self(), vm->loop_thread))
			pthread_cond_wait(&vm->loop_cond, &vm->loop_lock);
	}
	pthread_mutex_unlock(&vm->loop_lock);
}

static void *loop_main(void *arg)
{
	struct hk_vm *vm = arg;
	struct epoll_event evs[32];
	sigset_t kick;

	sigemptyset(&kick);
	sigaddset(&kick, HK_KICK_SIGNAL);
	pthread_sigmask(SIG_BLOCK, &kick, NULL);
	while (!atomic_load(&vm->stopping)) {
		int n = epoll_wait(vm->epoll_fd, evs, 32, -1), i;

		if (n < 0 && errno != EINTR) {
			logger_printf(&vm->log, LOG_LEVEL_ERR, "epoll_wait: %s",
				      strerror(errno));
			hk_vm_finish(vm, HK_EXIT_INTERNAL_ERROR);
			break;
		}
		for (i = 0; i < n; i++) {
			uint64_t tag = evs[i].data.u64;
			unsigned slot = (uint32_t)tag;
			struct hk_loop_entry e;

			if (tag == LOOP_WAKE_TAG)
				continue;
			pthread_mutex_lock(&vm->loop_lock);
			e = vm->loop[slot];
			if (e.fd < 0 || e.gen != (uint32_t)(tag >> 32)) {
				pthread_mutex_unlock(&vm->loop_lock);
				continue; /* deleted since epoll_wait */
			}
			vm->loop_dispatching = (int)slot;
			pthread_mutex_unlock(&vm->loop_lock);
			e.cb(e.opaque, evs[i].events);
			pthread_mutex_lock(&vm->loop_lock);
			vm->loop_dispatching = -1;
			pthread_cond_broadcast(&vm->loop_cond);
			pthread_mutex_unlock(&vm->loop_lock);
		}
	}
	return NULL;
}

static void loop_wake(struct hk_vm *vm)
{
	uint64_t one = 1;

	if (vm->wake_fd >= 0 && write(vm->wake_fd, &one, sizeof(one)) < 0) {
		/* Already pending: the loop wakes anyway. */
	}
}

/* ---------------------------------------------------------------- state */

void hk_vm_set_state(struct hk_vm *vm, enum hk_state st)
{
	vm->state = st;
	if (vm->cfg.on_state)
		vm->cfg.on_state(vm->cfg.opaque, st);
}

void hk_vm_finish(struct hk_vm *vm, enum hk_exit reason)
{
	pthread_mutex_lock(&vm->state_lock);
	if (vm->exit_reason < 0) {
		vm->exit_reason = (int)reason;
		logger_printf(&vm->log, LOG_LEVEL_INFO, "guest ended: %s",
			      hk_exit_name((int)reason));
	}
	atomic_store(&vm->stopping, true);
	atomic_store(&vm->pausing, false);
	pthread_cond_broadcast(&vm->state_cond);
	pthread_mutex_unlock(&vm->state_lock);
	hk_cpu_kick_all(vm);
	loop_wake(vm);
}

void hk_vm_request_poweroff(struct hk_vm *vm)
{
	hk_vm_finish(vm, HK_EXIT_POWEROFF);
}

void hk_vm_request_reset(struct hk_vm *vm)
{
	hk_vm_finish(vm, HK_EXIT_RESET);
}

void hk_vm_kill(struct hk_vm *vm)
{
	hk_vm_finish(vm, HK_EXIT_KILLED);
}

void hk_vm_stop(struct hk_vm *vm)
{
	if (vm->cfg.acpi)
		hk_acpi_power_button(vm);
	else
		hk_vm_kill(vm);
}

int hk_vm_pause(struct hk_vm *vm)
{
	int err = 0;

	pthread_mutex_lock(&vm->state_lock);
	if (vm->state != HK_STATE_RUNNING || atomic_load(&vm->stopping)) {
		err = -EINVAL;
		goto out_unlock;
	}
	atomic_store(&vm->pausing, true);
	pthread_mutex_unlock(&vm->state_lock);
	hk_cpu_kick_all(vm);
	pthread_mutex_lock(&vm->state_lock);
	while (vm->parked < vm->cfg.cpus && atomic_load(&vm->pausing) &&
	       !atomic_load(&vm->stopping))
		pthread_cond_wait(&vm->state_cond, &vm->state_lock);
	if (atomic_load(&vm->pausing) && !atomic_load(&vm->stopping))
		hk_vm_set_state(vm, HK_STATE_PAUSED);
out_unlock:
	pthread_mutex_unlock(&vm->state_lock);
	return err;
}

int hk_vm_resume(struct hk_vm *vm)
{
	int err = 0;

	pthread_mutex_lock(&vm->state_lock);
	if (vm->state != HK_STATE_PAUSED) {
		err = -EINVAL;
	} else {
		atomic_store(&vm->pausing, false);
		pthread_cond_broadcast(&vm->state_cond);
		hk_vm_set_state(vm, HK_STATE_RUNNING);
	}
	pthread_mutex_unlock(&vm->state_lock);
	return err;
}

/* ---------------------------------------------------------------- devices */

struct hk_pci_bus *hk_vm_pci_bus(struct hk_vm *vm)
{
	return vm->pci;
}

const char *hk_emulation_name(size_t i)
{
	const struct hk_device_type *t = hk_device_type_at(i);

	return t ? t->name : NULL;
}

int hk_vm_add_device(struct hk_vm *vm, const char *spec)
{
	char *copy, *emu, *conf, *end;
	unsigned long slot, func = 0;
	const struct hk_device_type *type;
	int err = -EINVAL;

	copy = strdup(spec);
	if (!copy)
		return -ENOMEM;
	emu = strchr(copy, ',');
	if (!emu)
		goto out_bad;
	*emu++ = '\0';
	conf = strchr(emu, ',');
	if (conf)
		*conf++ = '\0';
	errno = 0;
	slot = strtoul(copy, &end, 10);
	if (end == copy || errno)
		goto out_bad;
	if (*end == ':') {
		char *f = end + 1;

		func = strtoul(f, &end, 10);
		if (end == f)
			goto out_bad;
	}
	if (*end || slot > 31 || func > 7)
		goto out_bad;
	type = hk_device_type_find(emu);
	if (!type) {
		logger_printf(&vm->log, LOG_LEVEL_ERR,
			      "-s %s: unknown emulation \"%s\"", spec, emu);
		goto out_free;
	}
	err = type->create(vm, (unsigned)slot, (unsigned)func, conf);
	goto out_free;
out_bad:
	logger_printf(&vm->log, LOG_LEVEL_ERR,
		      "-s %s: expected SLOT[:FUNC],EMULATION[,CONF] with slot "
		      "0-31 and function 0-7", spec);
out_free:
	free(copy);
	return err;
}

int hk_vm_add_serial(struct hk_vm *vm, const char *spec)
{
	unsigned idx;
	const char *backend;

	if (strncmp(spec, "com1,", 5) == 0)
		idx = 0;
	else if (strncmp(spec, "com2,", 5) == 0)
		idx = 1;
	else {
		logger_printf(&vm->log, LOG_LEVEL_ERR,
			      "-l %s: expected com1|com2,stdio|autopty|PATH",
			      spec);
		return -EINVAL;
	}
	backend = spec + 5;
	if (vm->uart[idx]) {
		logger_printf(&vm->log, LOG_LEVEL_ERR, "-l %s: com%u is taken",
			      spec, idx + 1);
		return -EBUSY;
	}
	return hk_uart_new(vm, idx, backend, &vm->uart[idx]);
}

const char *hk_vm_serial_path(struct hk_vm *vm, unsigned port)
{
	return port < 2 && vm->uart[port] ? hk_uart_path(vm->uart[port])
					   : NULL;
}

/* ---------------------------------------------------------------- create */

/*
 * The PCI configuration address port: a guest that walks configuration
 * space writes 0xCF8 before every access to 0xCFC, and Linux's early
 * scans (the AMD GART search reads every slot of 256 buses, twice) make
 * tens of thousands of them. KVM can queue those writes in a ring instead
 * of exiting (the data port still exits, and the ring is applied first),
 * halving the exits of a configuration walk. Optional: without the
 * capability every write exits, as before. The zone covers 0xCF8-0xCFB,
 * so a byte write to 0xCF9 (reset control) waits for the vCPU's next exit
 * too: a guest resetting that way goes on to another method (the ACPI
 * reset register, the keyboard controller) or halts, and either exits.
 */
static void coalesce_setup(struct hk_vm *vm)
{
	struct kvm_coalesced_mmio_zone z = { .addr = 0xcf8, .size = 4,
					     .pio = 1 };
	int page;

	if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_COALESCED_PIO) <= 0)
		return;
	page = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_COALESCED_MMIO);
	if (page <= 0 || (size_t)(page + 1) * 4096 > vm->run_size)
		return;
	if (ioctl(vm->vm_fd, KVM_REGISTER_COALESCED_MMIO, &z) < 0) {
		logger_printf(&vm->log, LOG_LEVEL_DEBUG,
			      "KVM_REGISTER_COALESCED_MMIO: %s", strerror(errno));
		return;
	}
	vm->ring_page = (unsigned)page;
}

static int kvm_setup(struct hk_vm *vm)
{
	static const struct {
		int cap;
		const char *name;
	} caps[] = {
		{ KVM_CAP_USER_MEMORY, "USER_MEMORY" },
		{ KVM_CAP_IRQCHIP, "IRQCHIP" },
		{ KVM_CAP_PIT2, "PIT2" },
		{ KVM_CAP_SET_TSS_ADDR, "SET_TSS_ADDR" },
		{ KVM_CAP_EXT_CPUID, "EXT_CPUID" },
		{ KVM_CAP_IRQFD, "IRQFD" },
		{ KVM_CAP_IOEVENTFD, "IOEVENTFD" },
		{ KVM_CAP_IRQ_ROUTING, "IRQ_ROUTING" },
		{ KVM_CAP_IMMEDIATE_EXIT, "IMMEDIATE_EXIT" },
	};
	struct kvm_pit_config pit = { 0 };
	uint64_t ident = HK_IDENTITY_MAP_GPA;
	size_t i;
	int v;

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		logger_printf(&vm->log, LOG_LEVEL_ERR, "/dev/kvm: %s",
			      strerror(errno));
		return -errno;
	}
	/* kvm-pvm (a KVM for hosts without VMX/SVM) runs only guest kernels
	 * built for it: say so, since a plain Linux guest just never boots. */
	if (access("/sys/module/kvm_pvm", F_OK) == 0 &&
	    access("/sys/module/kvm_intel", F_OK) != 0 &&
	    access("/sys/module/kvm_amd", F_OK) != 0)
		logger_printf(&vm->log, LOG_LEVEL_WARN,
			      "/dev/kvm is kvm-pvm, which boots only PVM-enabled "
			      "guest kernels; use a hardware KVM (kvm_intel, "
			      "kvm_amd) or scripts/kvm-rig.sh");
	v = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (v != KVM_API_VERSION) {
		logger_printf(&vm->log, LOG_LEVEL_ERR,
			      "/dev/kvm: API version %d, need %d", v,
			      KVM_API_VERSION);
		return -ENOTSUP;
	}
	for (i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, caps[i].cap) <= 0) {
			logger_printf(&vm->log, LOG_LEVEL_ERR,
				      "/dev/kvm lacks KVM_CAP_%s",
				      caps[i].name);
			return -ENOTSUP;
		}
	}
	v = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (v <= 0)
		return -ENOTSUP;
	vm->run_size = (size_t)v;
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		logger_printf(&vm->log, LOG_LEVEL_ERR, "KVM_CREATE_VM: %s",
			      strerror(errno));
		return -errno;
	}
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)HK_TSS_GPA) < 0 ||
	    ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &ident) < 0) {
		logger_printf(&vm->log, LOG_LEVEL_ERR,
			      "KVM_SET_TSS_ADDR/IDENTITY_MAP_ADDR: %s",
			      strerror(errno));
		return -errno;
	}
	/* The IRQ chip first: KVM refuses a PIT without one. */
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		logger_printf(&vm->log, LOG_LEVEL_ERR, "KVM_CREATE_IRQCHIP: %s",
			      strerror(errno));
		return -errno;
	}
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		logger_printf(&vm->log, LOG_LEVEL_ERR, "KVM_CREATE_PIT2: %s",
			      strerror(errno));
		return -errno;
	}
	coalesce_setup(vm);
	return 0;
}

#define HK_RAM_ALIGN ((size_t)2 << 20)

static int mem_setup(struct hk_vm *vm)
{
	struct kvm_userspace_memory_region r = { 0 };
	void *p;

	hk_mem_split(vm->cfg.mem_bytes, &vm->mem.low, &vm->mem.high);
	/*
	 * Guest RAM starts on a 2 MiB boundary, as guest-physical address 0
	 * does, so that KVM can map it with large pages where the kernel
	 * backs it with transparent huge pages: far fewer faults while the
	 * guest first touches its memory, and fewer TLB misses after.
	 */
	p = mmap(NULL, vm->cfg.mem_bytes + HK_RAM_ALIGN, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		logger_printf(&vm->log, LOG_LEVEL_ERR,
			      "cannot map %llu bytes of guest memory: %s",
			      (unsigned long long)vm->cfg.mem_bytes,
			      strerror(errno));
		return -errno;
	}
	{
		uintptr_t start = (uintptr_t)p;
		uintptr_t aligned = (start + HK_RAM_ALIGN - 1) &
				    ~(uintptr_t)(HK_RAM_ALIGN - 1);
		size_t tail = HK_RAM_ALIGN - (aligned - start);

		if (aligned > start)
			munmap(p, aligned - start);
		if (tail)
			munmap((void *)(aligned + vm->cfg.mem_bytes), tail);
		p = (void *)aligned;
	}
	vm->mem.host = p;
	vm->map_size = vm->cfg.mem_bytes;
	madvise(p, vm->map_size, MADV_HUGEPAGE);
	madvise(p, vm->map_size, MADV_MERGEABLE); /* if KSM runs */
	r.slot = 0;
	r.guest_phys_addr = 0;
	r.memory_size = vm->mem.low;
	r.userspace_addr = (uintptr_t)p;
	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
		goto out_err;
	if (vm->mem.high) {
		r.slot = 1;
		r.guest_phys_addr = HK_HIGH_MEM_BASE;
		r.memory_size = vm->mem.high;
		r.userspace_addr = (uintptr_t)p + vm->mem.low;
		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
			goto out_err;
	}
	return 0;
out_err:
	logger_printf(&vm->log, LOG_LEVEL_ERR, "KVM_SET_USER_MEMORY_REGION: %s",
		      strerror(errno));
	return -errno;
}

static int tables_setup(struct hk_vm *vm, uint64_t *rsdp)
{
	struct hk_smbios_info si = { .cpus = vm->cfg.cpus,
				     .mem_low = vm->mem.low,
				     .mem_high = vm->mem.high };
	ssize_t n;

	*rsdp = 0;
	if (vm->cfg.has_uuid)
		memcpy(si.uuid, vm->cfg.uuid, sizeof(si.uuid));
	else
		hk_smbios_default_uuid(si.uuid);
	n = hk_smbios_build(hk_gpa(vm, HK_SMBIOS_GPA, HK_SMBIOS_MAX),
			    HK_SMBIOS_MAX, HK_SMBIOS_GPA, &si);
	if (n < 0)
		return (int)n;
	if (!vm->cfg.no_mptable) {
		n = hk_mptable_build(hk_gpa(vm, HK_MPTABLE_GPA, HK_MPTABLE_MAX),
				     HK_MPTABLE_MAX, HK_MPTABLE_GPA,
				     vm->cfg.cpus);
		if (n < 0)
			return (int)n;
	}
	if (vm->cfg.acpi) {
		n = hk_acpi_build(hk_gpa(vm, HK_ACPI_GPA, HK_ACPI_MAX),
				  HK_ACPI_MAX, HK_ACPI_GPA, vm->cfg.cpus);
		if (n < 0)
			return (int)n;
		*rsdp = HK_ACPI_GPA;
		return hk_acpi_hw_init(vm);
	}
	return 0;
}

/* Port 0x80 (POST codes, Linux's I/O delay) reads as 0 and is ignored. */
static void post_port(void *opaque, uint64_t off, unsigned size, bool write,
		      uint64_t *val)
{
	(void)opaque;
	(void)off;
	(void)size;
	if (!write)
		*val = 0;
}

/*
 * The keyboard controller's command port (0x64), for its one command a
 * guest without ACPI's reset register uses to reboot: 0xfe pulses the CPU
 * reset line (Linux tries it right after ACPI). There is no controller
 * behind it. Its status reads as all ones but "input buffer full": Linux
 * waits for that bit to clear before each command, and the "output buffer
 * full" bit that stays set makes its i8042 probe give up at once, as
 * when nothing answered here.
 */
#define KBC_STATUS_IBF 0x02

static void kbc_port(void *opaque, uint64_t off, unsigned size, bool write,
		     uint64_t *val)
{
	(void)off;
	(void)size;
	if (!write)
		*val = 0xff & ~KBC_STATUS_IBF;
	else if ((*val & 0xff) == 0xfe)
		hk_vm_request_reset(opaque);
}

static char *dup_or_null(const char *s, bool *fail)
{
	char *d;

	if (!s)
		return NULL;
	d = strdup(s);
	if (!d)
		*fail = true;
	return d;
}

int hk_vm_new(const struct hk_config *cfg, struct hk_vm **out)
{
	struct hk_vm *vm;
	pthread_mutexattr_t ma;
	struct epoll_event ev = { .events = EPOLLIN };
	uint64_t rsdp;
	bool fail = false;
	int err, i;

	if (cfg->cpus < 1 || cfg->cpus > HK_MAX_CPUS) {
		logger_printf(&cfg->log, LOG_LEVEL_ERR,
			      "%u vCPUs: between 1 and %d, please", cfg->cpus,
			      HK_MAX_CPUS);
		return -EINVAL;
	}
	if (cfg->mem_bytes < HK_MIN_MEM || cfg->mem_bytes % (2 * HK_MIB) ||
	    cfg->mem_bytes > (1ull << 40)) {
		logger_printf(&cfg->log, LOG_LEVEL_ERR,
			      "memory: %llu bytes; need a multiple of 2 MiB "
			      "from 32 MiB to 1 TiB",
			      (unsigned long long)cfg->mem_bytes);
		return -EINVAL;
	}
	if (!cfg->kernel) {
		logger_printf(&cfg->log, LOG_LEVEL_ERR, "no kernel to boot");
		return -EINVAL;
	}
	vm = calloc(1, sizeof(*vm));
	if (!vm)
		return -ENOMEM;
	vm->cfg = *cfg;
	vm->log = cfg->log;
	vm->io_rl = (struct ratelimit)RATELIMIT_DEFAULT;
	vm->kernel = dup_or_null(cfg->kernel, &fail);
	vm->initrd = dup_or_null(cfg->initrd, &fail);
	vm->cmdline = dup_or_null(cfg->cmdline, &fail);
	vm->kernel_cache = dup_or_null(cfg->kernel_cache, &fail);
	vm->cfg.kernel_cache = vm->kernel_cache;
	vm->cfg.kernel = vm->kernel;
	vm->cfg.initrd = vm->initrd;
	vm->cfg.cmdline = vm->cmdline;
	vm->kvm_fd = vm->vm_fd = vm->epoll_fd = vm->wake_fd = -1;
	vm->exit_reason = -1;
	vm->loop_dispatching = -1;
	for (i = 0; i < HK_LOOP_MAX; i++)
		vm->loop[i].fd = -1;
	for (i = 0; i < HK_MAX_CPUS; i++)
		vm->vcpu[i].fd = -1;
	pthread_rwlock_init(&vm->io_lock, NULL);
	pthread_mutex_init(&vm->gsi_lock, NULL);
	pthread_mutex_init(&vm->ring_lock, NULL);
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&vm->loop_lock, &ma);
	/* Recursive: the state callback may call hk_vm_stop. */
	pthread_mutex_init(&vm->state_lock, &ma);
	pthread_mutexattr_destroy(&ma);
	pthread_cond_init(&vm->loop_cond, NULL);
	pthread_cond_init(&vm->state_cond, NULL);
	vm->state = HK_STATE_CREATED;
	if (fail) {
		err = -ENOMEM;
		goto out_free;
	}

	vm->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	vm->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ev.data.u64 = LOOP_WAKE_TAG;
	if (vm->epoll_fd < 0 || vm->wake_fd < 0 ||
	    epoll_ctl(vm->epoll_fd, EPOLL_CTL_ADD, vm->wake_fd, &ev) < 0) {
		err = -errno;
		goto out_free;
	}
	err = kvm_setup(vm);
	if (err)
		goto out_free;
	err = mem_setup(vm);
	if (err)
		goto out_free;
	pthread_mutex_lock(&vm->gsi_lock);
	err = routes_commit(vm);
	pthread_mutex_unlock(&vm->gsi_lock);
	if (err)
		goto out_free;
	err = hk_pci_bus_new(vm, &vm->pci);
	if (err)
		goto out_free;
	err = tables_setup(vm, &rsdp);
	if (err)
		goto out_free;
	err = hk_pio_register(vm, 0x80, 1, post_port, vm);
	if (!err)
		err = hk_pio_register(vm, 0x64, 1, kbc_port, vm);
	if (err)
		goto out_free;
	err = hk_rtc_new(vm, vm->cfg.rtc_utc, &vm->rtc);
	if (err)
		goto out_free;
	err = hk_boot_load(&vm->mem, vm->kernel, vm->initrd, vm->cmdline, rsdp,
			   vm->cfg.kernel_unpack, vm->kernel_cache, &vm->boot,
			   &vm->log);
	if (err)
		goto out_free;
	err = hk_cpu_create_all(vm);
	if (err)
		goto out_free;
	*out = vm;
	return 0;
out_free:
	hk_vm_free(vm);
	return err;
}

int hk_vm_start(struct hk_vm *vm)
{
	pthread_attr_t attr;
	int err;

	if (vm->started)
		return -EALREADY;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, HK_THREAD_STACK);
	err = pthread_create(&vm->loop_thread, &attr, loop_main, vm);
	pthread_attr_destroy(&attr);
	if (err) {
		logger_printf(&vm->log, LOG_LEVEL_ERR,
			      "cannot start the event thread: %s", strerror(err));
		return -err;
	}
	vm->loop_started = true;
	vm->started = true;
	pthread_mutex_lock(&vm->state_lock);
	hk_vm_set_state(vm, HK_STATE_RUNNING);
	pthread_mutex_unlock(&vm->state_lock);
	err = hk_cpu_start_all(vm);
	if (err) {
		hk_vm_finish(vm, HK_EXIT_INTERNAL_ERROR);
		return err;
	}
	return 0;
}

int hk_vm_wait(struct hk_vm *vm)
{
	int reason;

	if (!vm->started)
		return -EINVAL;
	hk_cpu_join_all(vm);
	if (vm->loop_started) {
		/* vCPUs joined; make sure the loop leaves too. */
		atomic_store(&vm->stopping, true);
		loop_wake(vm);
		pthread_join(vm->loop_thread, NULL);
		vm->loop_started = false;
	}
	pthread_mutex_lock(&vm->state_lock);
	if (vm->exit_reason < 0)
		vm->exit_reason = HK_EXIT_KILLED;
	reason = vm->exit_reason;
	if (vm->state != HK_STATE_STOPPED)
		hk_vm_set_state(vm, HK_STATE_STOPPED);
	pthread_mutex_unlock(&vm->state_lock);
	return reason;
}

void hk_vm_free(struct hk_vm *vm)
{
	unsigned i;

	if (!vm)
		return;
	if (vm->started && (vm->loop_started || vm->vcpu[0].started)) {
		hk_vm_kill(vm);
		hk_vm_wait(vm);
	}
	for (i = 0; i < 2; i++)
		hk_uart_free(vm->uart[i]);
	hk_rtc_free(vm->rtc);
	hk_pci_bus_free(vm->pci);
	hk_cpu_destroy_all(vm);
	if (vm->mem.host)
		munmap(vm->mem.host, vm->map_size);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	if (vm->epoll_fd >= 0)
		close(vm->epoll_fd);
	if (vm->wake_fd >= 0)
		close(vm->wake_fd);
	free(vm->pio);
	free(vm->mmio);
	pthread_rwlock_destroy(&vm->io_lock);
	pthread_mutex_destroy(&vm->gsi_lock);
	pthread_mutex_destroy(&vm->ring_lock);
	pthread_mutex_destroy(&vm->loop_lock);
	pthread_cond_destroy(&vm->loop_cond);
	pthread_mutex_destroy(&vm->state_lock);
	pthread_cond_destroy(&vm->state_cond);
	free(vm->kernel);
	free(vm->initrd);
	free(vm->cmdline);
	free(vm->kernel_cache);
	free(vm);
}
