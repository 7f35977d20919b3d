/* SPDX-License-Identifier: MIT */
/*
 * PCI bus 0: what the core needs to create it, and what devices may ask
 * of it beyond platform.h's hk_pci_* functions.
 *
 * The bus answers configuration mechanism #1 at ports 0xCF8 (address,
 * 32-bit; a byte write to 0xCF9 is the reset control register) and
 * 0xCFC-0xCFF (data), and places memory BARs in the 32-bit window
 * [HK_PCI_MMIO_BASE, HK_PCI_MMIO_END), which the core must leave out of
 * the e820 RAM map. Configuration accesses come from vCPU threads and are
 * serialised by the bus lock; a device's cfg_write callback runs under
 * it.
 */
#ifndef HYPERKIT_PCI_H
#define HYPERKIT_PCI_H

#include <stdint.h>

#include "platform.h"

/* The MMIO window for BARs: 3 GiB up to the IOAPIC's page. */
#define HK_PCI_MMIO_BASE 0xC0000000ull
#define HK_PCI_MMIO_END 0xFEC00000ull

#define HK_PCI_CFG_ADDR_PORT 0xCF8
#define HK_PCI_CFG_DATA_PORT 0xCFC

/* Standard header offsets and bits used across devices. */
#define HK_PCI_VENDOR_ID 0x00
#define HK_PCI_DEVICE_ID 0x02
#define HK_PCI_COMMAND 0x04
#define HK_PCI_COMMAND_IO 0x1u
#define HK_PCI_COMMAND_MEMORY 0x2u
#define HK_PCI_COMMAND_MASTER 0x4u
#define HK_PCI_COMMAND_INTX_DISABLE 0x400u
#define HK_PCI_STATUS 0x06
#define HK_PCI_STATUS_CAP_LIST 0x10u
#define HK_PCI_REVISION 0x08
#define HK_PCI_CLASS_PROG 0x09
#define HK_PCI_HEADER_TYPE 0x0e
#define HK_PCI_BAR0 0x10
#define HK_PCI_SUBSYSTEM_VENDOR_ID 0x2c
#define HK_PCI_SUBSYSTEM_ID 0x2e
#define HK_PCI_CAP_PTR 0x34
#define HK_PCI_INTERRUPT_LINE 0x3c
#define HK_PCI_INTERRUPT_PIN 0x3d
#define HK_PCI_CAP_START 0x40

#define HK_PCI_CAP_ID_VNDR 0x09
#define HK_PCI_CAP_ID_MSIX 0x11
#define HK_PCI_MSIX_FLAGS_ENABLE 0x8000u
#define HK_PCI_MSIX_FLAGS_MASKALL 0x4000u

struct hk_pci_bus;

/*
 * Create bus 0 for vm and claim the configuration ports. Returns 0 with
 * *out set, or -errno. The core keeps the bus and returns it from
 * hk_vm_pci_bus(); hk_pci_bus_free(NULL) does nothing.
 */
int hk_pci_bus_new(struct hk_vm *vm, struct hk_pci_bus **out);
void hk_pci_bus_free(struct hk_pci_bus *bus);

/* Provided by the core: the bus created for vm, or NULL before it is. */
struct hk_pci_bus *hk_vm_pci_bus(struct hk_vm *vm);

/* One configuration access, as through ports 0xCF8/0xCFC (for tests and
 * for a later MMCONFIG window). Reads of absent functions or bad offsets
 * give all ones; bad writes are ignored. */
uint32_t hk_pci_cfg_read(struct hk_pci_bus *bus, unsigned slot, unsigned func,
			 unsigned off, unsigned size);
void hk_pci_cfg_write(struct hk_pci_bus *bus, unsigned slot, unsigned func,
		      unsigned off, unsigned size, uint32_t val);

/* Where BAR i of d currently decodes: its address if memory decoding is
 * on and the BAR holds a placed address, else 0. Under the bus lock
 * (from cfg_write) or when the guest cannot be reprogramming it. */
uint64_t hk_pci_bar_mapped(const struct hk_pci_dev *d, unsigned i);

/* hk_pci_attach, and have the bus call release(d) when it is freed. */
int hk_pci_attach_owned(struct hk_vm *vm, struct hk_pci_dev *d,
			void (*release)(struct hk_pci_dev *d));

/* The `-s` emulations that live in configuration space only (conf is
 * ignored). Return 0 or -errno. */
int hk_hostbridge_create(struct hk_vm *vm, unsigned slot, unsigned func,
			 const char *conf);
int hk_lpc_create(struct hk_vm *vm, unsigned slot, unsigned func,
		  const char *conf);

/* Whether the function at slot/func exists (for the core's MP table). */
struct hk_pci_dev *hk_pci_find(struct hk_pci_bus *bus, unsigned slot,
			       unsigned func);

#endif
