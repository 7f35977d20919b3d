// SPDX-License-Identifier: MIT
/*
 * PCI bus 0: configuration space through mechanism #1 (ports 0xCF8 and
 * 0xCFC), BAR placement and sizing, and the two devices that only exist
 * in configuration space, `hostbridge` and `lpc`.
 *
 * Theory of operation. Each function's 256-byte header lives in its
 * struct hk_pci_dev (cfg[]); the bus keeps beside it a write mask, one bit
 * per configuration bit the guest may change. Everything else is read-only,
 * so a guest can only flip the command bits we honour, the BARs, the
 * interrupt line, cache line size and latency timer, and the enable and
 * mask bits of an MSI-X capability. Accesses that are misaligned, of an
 * odd size or past the header read as all ones and write nothing.
 *
 * BARs are placed at attach time, as firmware would, upward from
 * HK_PCI_MMIO_BASE, each aligned to its size, with memory decoding on. A
 * guest that sizes a BAR (writes all ones) reads back the size mask; one
 * that moves a BAR gets its MMIO range moved. A BAR decodes only while
 * the command register's memory bit is set and the whole BAR lies inside
 * the MMIO window, so a guest cannot lay a device over RAM, the IOAPIC or
 * the local APIC. A device sees each configuration write after it has
 * been applied (cfg_write) and finds where its BARs decode with
 * hk_pci_bar_mapped().
 */
#include "pci.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/endian.h"
#include "base/log.h"

#define PCI_SLOTS 32
#define PCI_FUNCS 8
#define CFG_SIZE 256

struct pci_fn {
	struct hk_pci_dev *dev; /* NULL: no function here */
	void (*release)(struct hk_pci_dev *d);
	uint8_t wmask[CFG_SIZE]; /* writable bits outside the BARs */
	uint64_t mapped[HK_PCI_MAX_BARS]; /* where each BAR decodes, 0: not */
};

struct hk_pci_bus {
	struct hk_vm *vm;
	pthread_mutex_t lock;
	uint32_t cfg_addr; /* the 0xCF8 latch */
	uint64_t next_mmio; /* placement cursor in the window */
	struct ratelimit rl;
	struct pci_fn fn[PCI_SLOTS][PCI_FUNCS];
};

static uint32_t cfg_get(const uint8_t *cfg, unsigned off, unsigned size)
{
	uint32_t v = 0;

	for (unsigned i = 0; i < size; i++)
		v |= (uint32_t)cfg[off + i] << (8 * i);
	return v;
}

static void cfg_put(uint8_t *cfg, unsigned off, unsigned size, uint32_t v)
{
	for (unsigned i = 0; i < size; i++)
		cfg[off + i] = (uint8_t)(v >> (8 * i));
}

void hk_pci_init_header(struct hk_pci_dev *d, uint16_t vendor, uint16_t device,
			uint32_t class_code, uint16_t subvendor,
			uint16_t subdevice)
{
	memset(d->cfg, 0, sizeof(d->cfg));
	store_le16(d->cfg + HK_PCI_VENDOR_ID, vendor);
	store_le16(d->cfg + HK_PCI_DEVICE_ID, device);
	/* class_code is class << 16 | subclass << 8 | prog-if. */
	d->cfg[HK_PCI_CLASS_PROG] = (uint8_t)class_code;
	d->cfg[HK_PCI_CLASS_PROG + 1] = (uint8_t)(class_code >> 8);
	d->cfg[HK_PCI_CLASS_PROG + 2] = (uint8_t)(class_code >> 16);
	store_le16(d->cfg + HK_PCI_SUBSYSTEM_VENDOR_ID, subvendor);
	store_le16(d->cfg + HK_PCI_SUBSYSTEM_ID, subdevice);
	d->cfg[HK_PCI_INTERRUPT_PIN] = 1; /* INTA# */
}

/* Length of the capability at p, for the kinds hk_pci_add_cap makes;
 * 0 for a kind we do not know the length of. */
static unsigned cap_len(const uint8_t *cfg, unsigned p)
{
	switch (cfg[p]) {
	case HK_PCI_CAP_ID_MSIX:
		return 12;
	case HK_PCI_CAP_ID_VNDR:
		return cfg[p + 2]; /* vendor capabilities carry their length */
	default:
		return 0;
	}
}

int hk_pci_add_cap(struct hk_pci_dev *d, const void *cap, unsigned len)
{
	unsigned off = HK_PCI_CAP_START, last = 0, p, steps = 0;

	if (len < 2 || len > CFG_SIZE - HK_PCI_CAP_START)
		return -EINVAL;
	/* New capabilities go after the end of every existing one. */
	for (p = d->cfg[HK_PCI_CAP_PTR]; p; p = d->cfg[p + 1]) {
		unsigned l;

		if (p < HK_PCI_CAP_START || p > CFG_SIZE - 2 || ++steps > 48)
			return -EINVAL;
		l = cap_len(d->cfg, p);
		if (l < 2)
			return -EINVAL;
		if (p + l > off)
			off = p + l;
		last = p;
	}
	off = (off + 3) & ~3u;
	if (off + len > CFG_SIZE)
		return -ENOSPC;
	memcpy(d->cfg + off, cap, len);
	d->cfg[off + 1] = 0;
	if (last)
		d->cfg[last + 1] = (uint8_t)off;
	else
		d->cfg[HK_PCI_CAP_PTR] = (uint8_t)off;
	d->cfg[HK_PCI_STATUS] |= HK_PCI_STATUS_CAP_LIST;
	return (int)off;
}

static struct pci_fn *fn_of(struct hk_pci_bus *bus, const struct hk_pci_dev *d)
{
	return &bus->fn[d->slot][d->func];
}

/* Where BAR i should decode now, or 0. */
static uint64_t bar_target(const struct hk_pci_dev *d, unsigned i)
{
	const struct hk_pci_bar *b = &d->bar[i];
	uint16_t cmd = load_le16(d->cfg + HK_PCI_COMMAND);

	if (!b->size || !(cmd & HK_PCI_COMMAND_MEMORY))
		return 0;
	if (b->addr < HK_PCI_MMIO_BASE || b->addr > HK_PCI_MMIO_END ||
	    b->size > HK_PCI_MMIO_END - b->addr)
		return 0;
	return b->addr;
}

/* Bring BAR i's MMIO registration in line with the header. */
static void bar_update(struct hk_pci_bus *bus, struct hk_pci_dev *d, unsigned i)
{
	struct pci_fn *f = fn_of(bus, d);
	uint64_t want = bar_target(d, i), have = f->mapped[i];
	int r = 0;

	if (want == have)
		return;
	if (have && want)
		r = hk_mmio_move(bus->vm, d->opaque, have, want,
				 d->bar[i].size);
	else if (have)
		r = hk_mmio_move(bus->vm, d->opaque, have, 0, 0);
	else
		r = hk_mmio_register(bus->vm, want, d->bar[i].size,
				     d->bar[i].fn, d->opaque);
	if (r < 0) {
		logger_printf_limited(
			hk_vm_log(bus->vm), &bus->rl, LOG_LEVEL_WARN,
			"pci %02x.%u: BAR%u at 0x%llx refused: %d", d->slot,
			d->func, i, (unsigned long long)want, r);
		if (!have)
			return;
		if (want) /* the move failed: still at the old place */
			return;
	}
	f->mapped[i] = want;
}

/* Write the BAR registers of BAR i from d->bar[i].addr. */
static void bar_store(struct hk_pci_dev *d, unsigned i)
{
	const struct hk_pci_bar *b = &d->bar[i];
	uint32_t lo = (uint32_t)b->addr & ~0xfu;

	if (b->mem64)
		lo |= 0x4;
	store_le32(d->cfg + HK_PCI_BAR0 + 4 * i, lo);
	if (b->mem64)
		store_le32(d->cfg + HK_PCI_BAR0 + 4 * (i + 1),
			   (uint32_t)(b->addr >> 32));
}

/* A guest write of val to BAR register reg (0..5). */
static void bar_write(struct hk_pci_bus *bus, struct hk_pci_dev *d,
		      unsigned reg, uint32_t val)
{
	unsigned i = reg;
	struct hk_pci_bar *b;
	uint64_t mask;

	if (reg > 0 && d->bar[reg - 1].size && d->bar[reg - 1].mem64)
		i = reg - 1; /* the high half of a 64-bit BAR */
	b = &d->bar[i];
	if (!b->size)
		return; /* unused: reads as 0, writes vanish */
	mask = ~(b->size - 1);
	if (i == reg)
		b->addr = (b->addr & ~0xffffffffull) | (val & (uint32_t)mask);
	else
		b->addr = (b->addr & 0xffffffffull) |
			  ((uint64_t)val << 32 & mask);
	if (!b->mem64)
		b->addr &= 0xffffffffull;
	bar_store(d, i);
	bar_update(bus, d, i);
}

static struct hk_pci_dev *dev_at(struct hk_pci_bus *bus, unsigned slot,
				 unsigned func)
{
	if (slot >= PCI_SLOTS || func >= PCI_FUNCS)
		return NULL;
	return bus->fn[slot][func].dev;
}

struct hk_pci_dev *hk_pci_find(struct hk_pci_bus *bus, unsigned slot,
			       unsigned func)
{
	struct hk_pci_dev *d;

	pthread_mutex_lock(&bus->lock);
	d = dev_at(bus, slot, func);
	pthread_mutex_unlock(&bus->lock);
	return d;
}

static bool access_ok(unsigned off, unsigned size)
{
	return (size == 1 || size == 2 || size == 4) && off < CFG_SIZE &&
	       off + size <= CFG_SIZE && off % size == 0;
}

static uint32_t cfg_read_locked(struct hk_pci_bus *bus, unsigned slot,
				unsigned func, unsigned off, unsigned size)
{
	struct hk_pci_dev *d = dev_at(bus, slot, func);

	if (!d || !access_ok(off, size))
		return size >= 4 ? 0xffffffffu : (1u << (8 * size)) - 1;
	return cfg_get(d->cfg, off, size);
}

static void cfg_write_locked(struct hk_pci_bus *bus, unsigned slot,
			     unsigned func, unsigned off, unsigned size,
			     uint32_t val)
{
	struct hk_pci_dev *d = dev_at(bus, slot, func);
	struct pci_fn *f;
	uint16_t old_cmd;

	if (!d || !access_ok(off, size))
		return;
	f = &bus->fn[slot][func];
	old_cmd = load_le16(d->cfg + HK_PCI_COMMAND);
	if (off >= HK_PCI_BAR0 && off < HK_PCI_BAR0 + 4 * HK_PCI_MAX_BARS) {
		/* An aligned access of at most 4 bytes stays in one BAR
		 * register: merge it into the register, then apply it. */
		unsigned reg = (off - HK_PCI_BAR0) / 4;
		unsigned base = HK_PCI_BAR0 + 4 * reg;
		uint8_t tmp[4];

		memcpy(tmp, d->cfg + base, 4);
		cfg_put(tmp, off - base, size, val);
		bar_write(bus, d, reg, load_le32(tmp));
	} else {
		for (unsigned i = 0; i < size; i++) {
			uint8_t m = f->wmask[off + i];
			uint8_t v = (uint8_t)(val >> (8 * i));

			d->cfg[off + i] =
				(uint8_t)((d->cfg[off + i] & ~m) | (v & m));
		}
		if (old_cmd != load_le16(d->cfg + HK_PCI_COMMAND)) {
			for (unsigned i = 0; i < HK_PCI_MAX_BARS; i++)
				bar_update(bus, d, i);
		}
	}
	if (d->cfg_write)
		d->cfg_write(d, off, size, val);
}

uint32_t hk_pci_cfg_read(struct hk_pci_bus *bus, unsigned slot, unsigned func,
			 unsigned off, unsigned size)
{
	uint32_t v;

	pthread_mutex_lock(&bus->lock);
	v = cfg_read_locked(bus, slot, func, off, size);
	pthread_mutex_unlock(&bus->lock);
	return v;
}

void hk_pci_cfg_write(struct hk_pci_bus *bus, unsigned slot, unsigned func,
		      unsigned off, unsigned size, uint32_t val)
{
	pthread_mutex_lock(&bus->lock);
	cfg_write_locked(bus, slot, func, off, size, val);
	pthread_mutex_unlock(&bus->lock);
}

uint64_t hk_pci_bar_mapped(const struct hk_pci_dev *d, unsigned i)
{
	struct hk_pci_bus *bus = hk_vm_pci_bus(d->vm);

	if (!bus || i >= HK_PCI_MAX_BARS || d->slot >= PCI_SLOTS ||
	    d->func >= PCI_FUNCS || bus->fn[d->slot][d->func].dev != d)
		return 0;
	return bus->fn[d->slot][d->func].mapped[i];
}

/* ---------------------------------------------------------------- ports */

static void cfg_addr_io(void *opaque, uint64_t off, unsigned size, bool write,
			uint64_t *val)
{
	struct hk_pci_bus *bus = opaque;

	pthread_mutex_lock(&bus->lock);
	if (off == 0 && size == 4) {
		if (write)
			bus->cfg_addr = (uint32_t)*val & 0x80fffffcu;
		else
			*val = bus->cfg_addr;
	} else if (off == 1 && size == 1) {
		/* 0xCF9, the reset control register: bit 2 resets. */
		if (write && (*val & 0x4)) {
			pthread_mutex_unlock(&bus->lock);
			hk_vm_request_reset(bus->vm);
			return;
		}
		if (!write)
			*val = 0;
	} else if (!write) {
		*val = size == 8 ? ~0ull : (1ull << (8 * size)) - 1;
	}
	pthread_mutex_unlock(&bus->lock);
}

static void cfg_data_io(void *opaque, uint64_t off, unsigned size, bool write,
			uint64_t *val)
{
	struct hk_pci_bus *bus = opaque;
	uint32_t a;
	unsigned slot, func, reg;

	pthread_mutex_lock(&bus->lock);
	a = bus->cfg_addr;
	slot = (a >> 11) & 0x1f;
	func = (a >> 8) & 0x7;
	reg = (a & 0xfc) + (unsigned)off;
	if (!(a & 0x80000000u) || ((a >> 16) & 0xff) != 0 || size > 4 ||
	    off + size > 4) {
		if (!write)
			*val = size >= 8 ? ~0ull : (1ull << (8 * size)) - 1;
	} else if (write) {
		cfg_write_locked(bus, slot, func, reg, size, (uint32_t)*val);
	} else {
		*val = cfg_read_locked(bus, slot, func, reg, size);
	}
	pthread_mutex_unlock(&bus->lock);
}

int hk_pci_bus_new(struct hk_vm *vm, struct hk_pci_bus **out)
{
	struct hk_pci_bus *bus;
	int r;

	bus = calloc(1, sizeof(*bus));
	if (!bus)
		return -ENOMEM;
	bus->vm = vm;
	bus->next_mmio = HK_PCI_MMIO_BASE;
	bus->rl = (struct ratelimit)RATELIMIT_DEFAULT;
	pthread_mutex_init(&bus->lock, NULL);
	r = hk_pio_register(vm, HK_PCI_CFG_ADDR_PORT, 4, cfg_addr_io, bus);
	if (r < 0)
		goto out_free;
	r = hk_pio_register(vm, HK_PCI_CFG_DATA_PORT, 4, cfg_data_io, bus);
	if (r < 0)
		goto out_free;
	*out = bus;
	return 0;

out_free:
	pthread_mutex_destroy(&bus->lock);
	free(bus);
	return r;
}

void hk_pci_bus_free(struct hk_pci_bus *bus)
{
	if (!bus)
		return;
	for (unsigned s = 0; s < PCI_SLOTS; s++) {
		for (unsigned f = 0; f < PCI_FUNCS; f++) {
			struct pci_fn *fn = &bus->fn[s][f];

			if (fn->dev && fn->release)
				fn->release(fn->dev);
		}
	}
	pthread_mutex_destroy(&bus->lock);
	free(bus);
}

/* ---------------------------------------------------------------- attach */

static void wmask_init(struct pci_fn *f, const struct hk_pci_dev *d)
{
	unsigned p, steps = 0;

	memset(f->wmask, 0, sizeof(f->wmask));
	/* Command: memory, bus master, parity, SERR, INTx disable. */
	f->wmask[HK_PCI_COMMAND] = HK_PCI_COMMAND_MEMORY |
				   HK_PCI_COMMAND_MASTER | 0x40;
	f->wmask[HK_PCI_COMMAND + 1] = 0x01 | 0x04;
	f->wmask[0x0c] = 0xff; /* cache line size */
	f->wmask[0x0d] = 0xff; /* latency timer */
	f->wmask[HK_PCI_INTERRUPT_LINE] = 0xff;
	for (p = d->cfg[HK_PCI_CAP_PTR];
	     p >= HK_PCI_CAP_START && p <= CFG_SIZE - 4 && steps < 48;
	     p = d->cfg[p + 1], steps++) {
		if (d->cfg[p] == HK_PCI_CAP_ID_MSIX)
			f->wmask[p + 3] = 0xc0; /* enable, function mask */
	}
}

static int bars_place(struct hk_pci_bus *bus, struct hk_pci_dev *d)
{
	uint64_t next = bus->next_mmio;

	for (unsigned i = 0; i < HK_PCI_MAX_BARS; i++) {
		struct hk_pci_bar *b = &d->bar[i];

		if (!b->size)
			continue;
		if (b->size < 4096 || (b->size & (b->size - 1)) || !b->fn ||
		    (b->mem64 &&
		     (i + 1 >= HK_PCI_MAX_BARS || d->bar[i + 1].size)))
			return -EINVAL;
		next = (next + b->size - 1) & ~(b->size - 1);
		if (next > HK_PCI_MMIO_END || b->size > HK_PCI_MMIO_END - next)
			return -ENOSPC;
		b->addr = next;
		next += b->size;
		if (b->mem64)
			i++;
	}
	bus->next_mmio = next;
	return 0;
}

static int pci_attach(struct hk_vm *vm, struct hk_pci_dev *d,
		      void (*release)(struct hk_pci_dev *d))
{
	struct hk_pci_bus *bus = hk_vm_pci_bus(vm);
	struct pci_fn *f;
	uint64_t saved_next;
	int r;

	if (!bus)
		return -ENODEV;
	if (d->slot >= PCI_SLOTS || d->func >= PCI_FUNCS)
		return -EINVAL;
	pthread_mutex_lock(&bus->lock);
	f = &bus->fn[d->slot][d->func];
	if (f->dev) {
		r = -EBUSY;
		goto out_unlock;
	}
	d->vm = vm;
	saved_next = bus->next_mmio;
	r = bars_place(bus, d);
	if (r < 0)
		goto out_unlock;
	wmask_init(f, d);
	for (unsigned i = 0; i < HK_PCI_MAX_BARS; i++) {
		if (d->bar[i].size) {
			bar_store(d, i);
			if (d->bar[i].mem64)
				i++;
		}
	}
	memset(f->mapped, 0, sizeof(f->mapped));
	f->dev = d;
	f->release = release;
	/* As firmware leaves it: memory decoding on. */
	store_le16(d->cfg + HK_PCI_COMMAND,
		   load_le16(d->cfg + HK_PCI_COMMAND) | HK_PCI_COMMAND_MEMORY);
	for (unsigned i = 0; i < HK_PCI_MAX_BARS; i++) {
		bar_update(bus, d, i);
		if (d->bar[i].size && !f->mapped[i]) {
			for (unsigned j = 0; j < i; j++) {
				if (f->mapped[j])
					hk_mmio_move(vm, d->opaque,
						     f->mapped[j], 0, 0);
			}
			f->dev = NULL;
			bus->next_mmio = saved_next;
			r = -EBUSY;
			goto out_unlock;
		}
	}
	/* A second function makes the slot multi-function. */
	if (d->func != 0 && bus->fn[d->slot][0].dev)
		bus->fn[d->slot][0].dev->cfg[HK_PCI_HEADER_TYPE] |= 0x80;
	if (d->func == 0) {
		for (unsigned fn = 1; fn < PCI_FUNCS; fn++) {
			if (bus->fn[d->slot][fn].dev)
				d->cfg[HK_PCI_HEADER_TYPE] |= 0x80;
		}
	}
	if (!d->irq_gsi)
		d->cfg[HK_PCI_INTERRUPT_PIN] = 0;
	else
		d->cfg[HK_PCI_INTERRUPT_LINE] = (uint8_t)d->irq_gsi;
	r = 0;
out_unlock:
	pthread_mutex_unlock(&bus->lock);
	return r;
}

int hk_pci_attach(struct hk_vm *vm, struct hk_pci_dev *d)
{
	return pci_attach(vm, d, NULL);
}

int hk_pci_attach_owned(struct hk_vm *vm, struct hk_pci_dev *d,
			void (*release)(struct hk_pci_dev *d))
{
	return pci_attach(vm, d, release);
}

/* ---------------------------------------------------------------- devices */

static void plain_release(struct hk_pci_dev *d)
{
	free(d);
}

static int plain_create(struct hk_vm *vm, unsigned slot, unsigned func,
			uint16_t vendor, uint16_t device, uint32_t class_code)
{
	struct hk_pci_dev *d = calloc(1, sizeof(*d));
	int r;

	if (!d)
		return -ENOMEM;
	d->slot = slot;
	d->func = func;
	hk_pci_init_header(d, vendor, device, class_code, 0, 0);
	d->cfg[HK_PCI_INTERRUPT_PIN] = 0;
	r = hk_pci_attach_owned(vm, d, plain_release);
	if (r < 0) {
		logger_printf(hk_vm_log(vm), LOG_LEVEL_ERR,
			      "pci slot %u:%u: cannot attach: %d", slot, func,
			      r);
		free(d);
	}
	return r;
}

/* A host bridge: class 06.00.00, no BARs (bhyve's ids, as hyperkit). */
int hk_hostbridge_create(struct hk_vm *vm, unsigned slot, unsigned func,
			 const char *conf)
{
	(void)conf;
	return plain_create(vm, slot, func, 0x1275, 0x1275, 0x060000);
}

/* A PCI-to-ISA (LPC) bridge, class 06.01.00, as hyperkit's lpc. The
 * legacy devices behind it (COM ports) belong to the core. */
int hk_lpc_create(struct hk_vm *vm, unsigned slot, unsigned func,
		  const char *conf)
{
	(void)conf;
	return plain_create(vm, slot, func, 0x8086, 0x7000, 0x060100);
}
