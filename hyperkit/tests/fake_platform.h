/* SPDX-License-Identifier: MIT */
/*
 * A test double of the hyperkit core (platform.h) for unit tests and fuzz
 * targets that run without /dev/kvm: guest memory is a plain buffer, I/O
 * registrations are recorded in tables, interrupts are counted.
 *
 * Include it from exactly one translation unit of a test program: it
 * defines the platform functions, so the linker never pulls the real core
 * (vm.c and friends) out of libhyperkit.a. Not part of the library.
 */
#ifndef HYPERKIT_TESTS_FAKE_PLATFORM_H
#define HYPERKIT_TESTS_FAKE_PLATFORM_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../pci.h"
#include "../platform.h"

#define FAKE_MAX_IO 64

struct fake_io {
	bool used;
	uint64_t base, len;
	hk_io_fn *fn;
	void *opaque;
};

struct hk_vm {
	uint8_t *mem;
	uint64_t mem_size;
	struct logger log;
	struct fake_io pio[FAKE_MAX_IO];
	struct fake_io mmio[FAKE_MAX_IO];
	struct hk_pci_bus *pci;
	unsigned msi_fired; /* hk_msi_fire calls */
	unsigned irq_raised; /* hk_irq_set(level 1) calls */
	unsigned ioeventfds; /* currently assigned */
	unsigned resets; /* hk_vm_request_reset calls */
	int next_gsi;
};

void *hk_gpa(struct hk_vm *vm, uint64_t gpa, uint64_t len)
{
	if (len > vm->mem_size || gpa > vm->mem_size - len)
		return NULL;
	return vm->mem + gpa;
}

struct logger *hk_vm_log(struct hk_vm *vm)
{
	return &vm->log;
}

static int fake_io_add(struct fake_io *t, uint64_t base, uint64_t len,
		       hk_io_fn *fn, void *opaque)
{
	for (unsigned i = 0; i < FAKE_MAX_IO; i++) {
		if (t[i].used && base < t[i].base + t[i].len &&
		    t[i].base < base + len)
			return -EEXIST;
	}
	for (unsigned i = 0; i < FAKE_MAX_IO; i++) {
		if (!t[i].used) {
			t[i] = (struct fake_io){ true, base, len, fn, opaque };
			return 0;
		}
	}
	return -ENOSPC;
}

/* Dispatch an access as the core would; returns false if nothing is
 * registered there (a read then sees all ones). */
static inline bool fake_io_access(struct fake_io *t, uint64_t addr,
				  unsigned size, bool write, uint64_t *val)
{
	for (unsigned i = 0; i < FAKE_MAX_IO; i++) {
		if (t[i].used && addr >= t[i].base &&
		    addr + size <= t[i].base + t[i].len) {
			t[i].fn(t[i].opaque, addr - t[i].base, size, write,
				val);
			return true;
		}
	}
	if (!write)
		*val = size == 8 ? ~0ull : (1ull << (8 * size)) - 1;
	return false;
}

int hk_pio_register(struct hk_vm *vm, uint16_t port, uint16_t len, hk_io_fn *fn,
		    void *opaque)
{
	return fake_io_add(vm->pio, port, len, fn, opaque);
}

int hk_mmio_register(struct hk_vm *vm, uint64_t gpa, uint64_t len, hk_io_fn *fn,
		     void *opaque)
{
	return fake_io_add(vm->mmio, gpa, len, fn, opaque);
}

/* cppcheck-suppress constParameter ; platform.h fixes the signature */
int hk_mmio_move(struct hk_vm *vm, void *opaque, uint64_t old_gpa,
		 uint64_t new_gpa, uint64_t len)
{
	for (unsigned i = 0; i < FAKE_MAX_IO; i++) {
		struct fake_io *r = &vm->mmio[i];

		if (!r->used || r->opaque != opaque || r->base != old_gpa)
			continue;
		if (new_gpa == 0 && len == 0) {
			r->used = false;
			return 0;
		}
		r->base = new_gpa;
		r->len = len;
		return 0;
	}
	return -ENOENT;
}

void hk_irq_set(struct hk_vm *vm, unsigned gsi, bool level)
{
	(void)gsi;
	if (level)
		vm->irq_raised++;
}

void hk_irq_pulse(struct hk_vm *vm, unsigned gsi)
{
	hk_irq_set(vm, gsi, true);
	hk_irq_set(vm, gsi, false);
}

int hk_msi_setup(struct hk_vm *vm, struct hk_msi *m, uint64_t addr,
		 uint32_t data)
{
	if (m->gsi < 0)
		m->gsi = 24 + vm->next_gsi++;
	m->efd = -1; /* counted, not signalled */
	m->addr = addr;
	m->data = data;
	return 0;
}

void hk_msi_release(struct hk_vm *vm, struct hk_msi *m)
{
	(void)vm;
	m->gsi = -1;
	m->efd = -1;
}

/* Counting needs the vm: tests find it through this pointer. */
static struct hk_vm *fake_current_vm;

void hk_msi_fire(struct hk_msi *m)
{
	(void)m;
	if (fake_current_vm)
		fake_current_vm->msi_fired++;
}

int hk_ioeventfd(struct hk_vm *vm, int efd, uint64_t gpa, unsigned len,
		 bool deassign)
{
	(void)efd;
	(void)gpa;
	(void)len;
	if (deassign)
		vm->ioeventfds--;
	else
		vm->ioeventfds++;
	return 0;
}

int hk_loop_add(struct hk_vm *vm, int fd, uint32_t events, hk_loop_fn *cb,
		void *opaque)
{
	(void)vm;
	(void)fd;
	(void)events;
	(void)cb;
	(void)opaque;
	return 0;
}

int hk_loop_mod(struct hk_vm *vm, int fd, uint32_t events)
{
	(void)vm;
	(void)fd;
	(void)events;
	return 0;
}

void hk_loop_del(struct hk_vm *vm, int fd)
{
	(void)vm;
	(void)fd;
}

void hk_vm_request_poweroff(struct hk_vm *vm)
{
	(void)vm;
}

void hk_vm_request_reset(struct hk_vm *vm)
{
	vm->resets++;
}

struct hk_pci_bus *hk_vm_pci_bus(struct hk_vm *vm)
{
	return vm->pci;
}

/* A fake VM with mem_size bytes of zeroed guest RAM at gpa 0. */
static inline struct hk_vm *fake_vm_new(uint64_t mem_size)
{
	struct hk_vm *vm = calloc(1, sizeof(*vm));

	if (!vm)
		return NULL;
	vm->mem = calloc(1, mem_size ? mem_size : 1);
	if (!vm->mem) {
		free(vm);
		return NULL;
	}
	vm->mem_size = mem_size;
	fake_current_vm = vm;
	return vm;
}

static inline void fake_vm_free(struct hk_vm *vm)
{
	if (!vm)
		return;
	if (fake_current_vm == vm)
		fake_current_vm = NULL;
	free(vm->mem);
	free(vm);
}

#endif
