/* SPDX-License-Identifier: MIT */
/*
 * What devices need from the VM, and what the VM needs from devices: the
 * contract between hyperkit's core (vm.c, cpu.c, boot.c, the loop) and
 * its device models (pci.c, virtio*.c, uart.c). Internal: nothing outside
 * hyperkit/ includes it.
 *
 * Guest memory is untrusted input. Devices reach it only through
 * hk_gpa(), the one checked translation: it returns a host pointer for
 * [gpa, gpa + len) if the whole range is guest RAM, else NULL. Nothing
 * here ever touches memory outside guest RAM on a guest's say-so.
 *
 * Threads: vCPU threads run port and MMIO handlers; the event thread runs
 * loop callbacks (ioeventfd notifications, backend sockets, timers). A
 * device that is reached from both locks itself. Errors are -errno.
 */
#ifndef HYPERKIT_PLATFORM_H
#define HYPERKIT_PLATFORM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/log.h"

struct hk_vm;

/* ---------------------------------------------------------------- memory */

/* Host address of guest RAM [gpa, gpa + len), or NULL if any of it is not
 * RAM (MMIO hole, beyond the end, overflow). */
void *hk_gpa(struct hk_vm *vm, uint64_t gpa, uint64_t len);

struct logger *hk_vm_log(struct hk_vm *vm);

/* ---------------------------------------------------------------- exits */

/*
 * Port I/O and MMIO handlers, run on the vCPU thread that exited. For a
 * read, fill *val (size 1, 2, 4 or 8 bytes, little-endian value); for a
 * write, *val holds the value. off is relative to the registered base.
 */
typedef void hk_io_fn(void *opaque, uint64_t off, unsigned size, bool write,
		      uint64_t *val);

int hk_pio_register(struct hk_vm *vm, uint16_t port, uint16_t len,
		    hk_io_fn *fn, void *opaque);
int hk_mmio_register(struct hk_vm *vm, uint64_t gpa, uint64_t len,
		     hk_io_fn *fn, void *opaque);
/* Move or drop an MMIO range (a BAR the guest reprogrammed). gpa 0 with
 * len 0 unregisters. */
int hk_mmio_move(struct hk_vm *vm, void *opaque, uint64_t old_gpa,
		 uint64_t new_gpa, uint64_t len);

/* ---------------------------------------------------------------- interrupts */

/* Raise or lower an IOAPIC/PIC line (GSI 0..23): edge = pulse. */
void hk_irq_set(struct hk_vm *vm, unsigned gsi, bool level);
void hk_irq_pulse(struct hk_vm *vm, unsigned gsi);

/*
 * MSI through an eventfd: allocate a GSI routed to (addr, data), and an
 * eventfd bound to it with KVM_IRQFD. Writing 1 to *efd injects the
 * interrupt without a trip through userspace. Update the route when the
 * guest rewrites the MSI-X entry; release when the vector is disabled.
 */
struct hk_msi {
	int gsi; /* -1 when not allocated */
	int efd; /* -1 when not allocated */
	uint64_t addr;
	uint32_t data;
};
int hk_msi_setup(struct hk_vm *vm, struct hk_msi *m, uint64_t addr,
		 uint32_t data);
void hk_msi_release(struct hk_vm *vm, struct hk_msi *m);
/* Inject once (writes the eventfd; from any thread). */
void hk_msi_fire(struct hk_msi *m);

/*
 * A guest write of any value to the MMIO address gpa (len 2 or 4, the
 * size of the write) signals efd without a trip through userspace
 * (KVM_IOEVENTFD). Returns 0 or -errno. Unregister with the same
 * arguments and deassign=true.
 */
int hk_ioeventfd(struct hk_vm *vm, int efd, uint64_t gpa, unsigned len,
		 bool deassign);

/* ---------------------------------------------------------------- event loop */

/* Run cb(opaque, events) on the event thread when fd has events (epoll
 * flags). Level-triggered. */
typedef void hk_loop_fn(void *opaque, uint32_t events);
int hk_loop_add(struct hk_vm *vm, int fd, uint32_t events, hk_loop_fn *cb,
		void *opaque);
int hk_loop_mod(struct hk_vm *vm, int fd, uint32_t events);
void hk_loop_del(struct hk_vm *vm, int fd);

/* ---------------------------------------------------------------- power */

/* The guest asked to power off (ACPI S5) or to reset. */
void hk_vm_request_poweroff(struct hk_vm *vm);
void hk_vm_request_reset(struct hk_vm *vm);

/* ---------------------------------------------------------------- PCI */

/*
 * A PCI device on bus 0. pci.c owns configuration space: the 256-byte
 * header (type 0) with a capability list, BAR sizing and placement in the
 * MMIO window (below 4 GiB, never reported as RAM by e820), and the
 * config access ports 0xCF8/0xCFC. Devices fill ids and BARs and get
 * callbacks.
 */
#define HK_PCI_MAX_BARS 6

struct hk_pci_bar {
	uint64_t size; /* power of two, >= 4096; 0: unused */
	bool mem64; /* a 64-bit memory BAR (takes two slots) */
	uint64_t addr; /* guest address, set by pci.c (and the guest) */
	hk_io_fn *fn; /* accesses, off relative to the BAR */
};

struct hk_pci_dev {
	struct hk_vm *vm;
	unsigned slot, func;
	uint8_t cfg[256]; /* configuration space as the guest sees it */
	struct hk_pci_bar bar[HK_PCI_MAX_BARS];
	void *opaque; /* passed to BAR and config callbacks */
	/* Optional: a config write the device wants to see (after pci.c
	 * has applied the writable bits); e.g. MSI-X enable. */
	void (*cfg_write)(struct hk_pci_dev *d, unsigned off, unsigned size,
			  uint32_t val);
	/* INTx line, if the device uses one (GSI from the slot). */
	unsigned irq_gsi;
};

/* Set vendor, device, class, subsystem ids, interrupt pin. */
void hk_pci_init_header(struct hk_pci_dev *d, uint16_t vendor,
			uint16_t device, uint32_t class_code, uint16_t subvendor,
			uint16_t subdevice);
/* Append a capability of len bytes (first two: id and next, filled here)
 * and return its offset in cfg, or -ENOSPC. */
int hk_pci_add_cap(struct hk_pci_dev *d, const void *cap, unsigned len);
/* Put the device on the bus at its slot/func: places its BARs and
 * registers their MMIO. -EBUSY if the slot is taken. */
int hk_pci_attach(struct hk_vm *vm, struct hk_pci_dev *d);

/* ---------------------------------------------------------------- devices */

/*
 * Creating a device from hyperkit's `-s SLOT[:FUNC],EMULATION[,CONF]`
 * option: each emulation is one entry of a table in devices.c. conf is
 * the text after the emulation's comma (may be NULL). Returns 0 or -errno
 * with a message logged.
 */
struct hk_device_type {
	const char *name; /* "virtio-blk" */
	int (*create)(struct hk_vm *vm, unsigned slot, unsigned func,
		      const char *conf);
};

#endif
