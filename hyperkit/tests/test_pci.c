// SPDX-License-Identifier: MIT
/*
 * PCI configuration space through ports 0xCF8/0xCFC on a fake VM: header
 * contents, BAR sizing and placement, MMIO registration following the
 * command register and BAR moves, read-only bits, capability lists,
 * malformed and hostile accesses.
 */
#include <base/endian.h>
#include <base/test.h>
#include <string.h>

#include "../pci.h"
#include "fake_platform.h"

struct bar_hits {
	unsigned n;
	uint64_t last_off;
};

static void bar_fn(void *opaque, uint64_t off, unsigned size, bool write,
		   uint64_t *val)
{
	struct bar_hits *h = opaque;

	(void)size;
	h->n++;
	h->last_off = off;
	if (!write)
		*val = 0x5a;
}

struct rig {
	struct hk_vm *vm;
	struct hk_pci_dev dev;
	struct bar_hits hits;
};

static void rig_init(struct rig *r)
{
	memset(r, 0, sizeof(*r));
	r->vm = fake_vm_new(4096);
	ASSERT_NOT_NULL(r->vm);
	ASSERT_OK(hk_pci_bus_new(r->vm, &r->vm->pci));
	r->dev.slot = 3;
	hk_pci_init_header(&r->dev, 0x1af4, 0x1042, 0x018000, 0x1af4, 0x1100);
	r->dev.bar[0] = (struct hk_pci_bar){ .size = 0x8000,
					     .mem64 = true,
					     .fn = bar_fn };
	r->dev.bar[2] = (struct hk_pci_bar){ .size = 0x1000, .fn = bar_fn };
	r->dev.opaque = &r->hits;
}

static void rig_free(struct rig *r)
{
	hk_pci_bus_free(r->vm->pci);
	fake_vm_free(r->vm);
}

/* Configuration accesses exactly as a guest makes them. */
static uint32_t cfg_rd(struct rig *r, unsigned bus, unsigned slot,
		       unsigned func, unsigned off, unsigned size)
{
	uint64_t a = 0x80000000u | bus << 16 | slot << 11 | func << 8 |
		     (off & 0xfc);
	uint64_t v = 0;

	fake_io_access(r->vm->pio, 0xcf8, 4, true, &a);
	fake_io_access(r->vm->pio, 0xcfc + (off & 3), size, false, &v);
	return (uint32_t)v;
}

static void cfg_wr(struct rig *r, unsigned slot, unsigned off, unsigned size,
		   uint32_t val)
{
	uint64_t a = 0x80000000u | slot << 11 | (off & 0xfc);
	uint64_t v = val;

	fake_io_access(r->vm->pio, 0xcf8, 4, true, &a);
	fake_io_access(r->vm->pio, 0xcfc + (off & 3), size, true, &v);
}

static bool mmio_hits(struct rig *r, uint64_t gpa)
{
	uint64_t v = 0;

	return fake_io_access(r->vm->mmio, gpa, 4, false, &v) && v == 0x5a;
}

TEST(header_reads_through_ports)
{
	struct rig r;

	rig_init(&r);
	ASSERT_OK(hk_pci_attach(r.vm, &r.dev));
	ASSERT_EQ_U64(cfg_rd(&r, 0, 3, 0, 0, 4), 0x10421af4);
	ASSERT_EQ_U64(cfg_rd(&r, 0, 3, 0, 2, 2), 0x1042);
	ASSERT_EQ_U64(cfg_rd(&r, 0, 3, 0, 0x0b, 1), 0x01);
	ASSERT_EQ_U64(cfg_rd(&r, 0, 3, 0, 0x2e, 2), 0x1100);
	/* Absent slot, function, bus: all ones. */
	ASSERT_EQ_U64(cfg_rd(&r, 0, 4, 0, 0, 4), 0xffffffffu);
	ASSERT_EQ_U64(cfg_rd(&r, 0, 3, 1, 0, 2), 0xffff);
	ASSERT_EQ_U64(cfg_rd(&r, 1, 3, 0, 0, 4), 0xffffffffu);
	rig_free(&r);
}

TEST(address_register_and_reset_port)
{
	struct rig r;
	uint64_t v = 0x8000ff07u, back = 0;

	rig_init(&r);
	fake_io_access(r.vm->pio, 0xcf8, 4, true, &v);
	fake_io_access(r.vm->pio, 0xcf8, 4, false, &back);
	ASSERT_EQ_U64(back, 0x8000ff04u); /* low two bits read as zero */
	/* With the enable bit clear, data reads all ones. */
	v = 0x00001800;
	fake_io_access(r.vm->pio, 0xcf8, 4, true, &v);
	ASSERT_OK(hk_pci_attach(r.vm, &r.dev));
	fake_io_access(r.vm->pio, 0xcfc, 4, false, &back);
	ASSERT_EQ_U64(back, 0xffffffffu);
	v = 0x06;
	fake_io_access(r.vm->pio, 0xcf9, 1, true, &v);
	ASSERT_EQ_U64(r.vm->resets, 1);
	rig_free(&r);
}

TEST(bars_placed_in_window_and_mapped)
{
	struct rig r;
	uint64_t a0, a2;

	rig_init(&r);
	ASSERT_OK(hk_pci_attach(r.vm, &r.dev));
	a0 = r.dev.bar[0].addr;
	a2 = r.dev.bar[2].addr;
	ASSERT_GE_U64(a0, HK_PCI_MMIO_BASE);
	ASSERT_LE_U64(a2 + 0x1000, HK_PCI_MMIO_END);
	ASSERT_EQ_U64(a0 % 0x8000, 0);
	ASSERT_EQ_U64(cfg_rd(&r, 0, 3, 0, 0x10, 4), (uint32_t)a0 | 0x4);
	ASSERT_EQ_U64(cfg_rd(&r, 0, 3, 0, 0x14, 4), a0 >> 32);
	ASSERT_EQ_U64(cfg_rd(&r, 0, 3, 0, 0x18, 4), (uint32_t)a2);
	ASSERT_EQ_U64(cfg_rd(&r, 0, 3, 0, 0x1c, 4), 0); /* unused */
	ASSERT_TRUE(cfg_rd(&r, 0, 3, 0, 4, 2) & HK_PCI_COMMAND_MEMORY);
	ASSERT_TRUE(mmio_hits(&r, a0 + 0x10));
	ASSERT_EQ_U64(r.hits.last_off, 0x10);
	ASSERT_TRUE(mmio_hits(&r, a2));
	ASSERT_EQ_U64(hk_pci_bar_mapped(&r.dev, 0), a0);
	rig_free(&r);
}

TEST(bar_sizing)
{
	struct rig r;
	uint64_t a0;

	rig_init(&r);
	ASSERT_OK(hk_pci_attach(r.vm, &r.dev));
	a0 = r.dev.bar[0].addr;
	cfg_wr(&r, 3, 4, 2, 0); /* decoding off, as Linux does */
	cfg_wr(&r, 3, 0x10, 4, 0xffffffffu);
	cfg_wr(&r, 3, 0x14, 4, 0xffffffffu);
	cfg_wr(&r, 3, 0x18, 4, 0xffffffffu);
	cfg_wr(&r, 3, 0x1c, 4, 0xffffffffu);
	ASSERT_EQ_U64(cfg_rd(&r, 0, 3, 0, 0x10, 4), 0xffff8004u);
	ASSERT_EQ_U64(cfg_rd(&r, 0, 3, 0, 0x14, 4), 0xffffffffu);
	ASSERT_EQ_U64(cfg_rd(&r, 0, 3, 0, 0x18, 4), 0xfffff000u);
	ASSERT_EQ_U64(cfg_rd(&r, 0, 3, 0, 0x1c, 4), 0);
	ASSERT_FALSE(mmio_hits(&r, a0));
	/* Restore and re-enable: decoding resumes at the old place. */
	cfg_wr(&r, 3, 0x10, 4, (uint32_t)a0);
	cfg_wr(&r, 3, 0x14, 4, 0);
	cfg_wr(&r, 3, 0x18, 4, (uint32_t)r.dev.bar[2].addr & 0);
	cfg_wr(&r, 3, 4, 2, HK_PCI_COMMAND_MEMORY);
	ASSERT_TRUE(mmio_hits(&r, a0));
	ASSERT_EQ_U64(hk_pci_bar_mapped(&r.dev, 2), 0); /* BAR2 at 0 */
	rig_free(&r);
}

TEST(bar_move_follows_guest)
{
	struct rig r;
	uint64_t a0, to = 0xd0000000;

	rig_init(&r);
	ASSERT_OK(hk_pci_attach(r.vm, &r.dev));
	a0 = r.dev.bar[0].addr;
	cfg_wr(&r, 3, 0x10, 4, (uint32_t)to);
	ASSERT_TRUE(mmio_hits(&r, to + 4));
	ASSERT_FALSE(mmio_hits(&r, a0 + 4));
	ASSERT_EQ_U64(hk_pci_bar_mapped(&r.dev, 0), to);
	/* Outside the window (over RAM, or above 4 GiB): not decoded. */
	cfg_wr(&r, 3, 0x10, 4, 0x100000);
	ASSERT_EQ_U64(hk_pci_bar_mapped(&r.dev, 0), 0);
	ASSERT_FALSE(mmio_hits(&r, 0x100000));
	cfg_wr(&r, 3, 0x10, 4, (uint32_t)to);
	cfg_wr(&r, 3, 0x14, 4, 1);
	ASSERT_EQ_U64(hk_pci_bar_mapped(&r.dev, 0), 0);
	cfg_wr(&r, 3, 0x14, 4, 0);
	ASSERT_EQ_U64(hk_pci_bar_mapped(&r.dev, 0), to);
	rig_free(&r);
}

TEST(read_only_bits_stay)
{
	struct rig r;
	uint8_t before[256];

	rig_init(&r);
	ASSERT_OK(hk_pci_attach(r.vm, &r.dev));
	memcpy(before, r.dev.cfg, 256);
	cfg_wr(&r, 3, 0, 4, 0xdeadbeef); /* ids */
	cfg_wr(&r, 3, 8, 4, 0xffffffff); /* revision, class */
	cfg_wr(&r, 3, 0x0e, 1, 0xff); /* header type */
	cfg_wr(&r, 3, 0x2c, 4, 0x12345678); /* subsystem */
	cfg_wr(&r, 3, 0x34, 1, 0x80); /* capability pointer */
	cfg_wr(&r, 3, 0x3d, 1, 4); /* interrupt pin */
	cfg_wr(&r, 3, 0x30, 4, 0xffffffff); /* no expansion ROM */
	ASSERT_EQ_MEM(r.dev.cfg, before, 0x10);
	ASSERT_EQ_MEM(r.dev.cfg + 0x28, before + 0x28, 0x14);
	ASSERT_EQ_U64(r.dev.cfg[0x3d], before[0x3d]);
	/* Writable ones do change. */
	cfg_wr(&r, 3, 0x3c, 1, 11);
	ASSERT_EQ_U64(cfg_rd(&r, 0, 3, 0, 0x3c, 1), 11);
	cfg_wr(&r, 3, 4, 2, 0xffff);
	ASSERT_EQ_U64(cfg_rd(&r, 0, 3, 0, 4, 2), 0x0546);
	rig_free(&r);
}

TEST(capabilities_and_msix_bits)
{
	struct rig r;
	uint8_t msix[12] = { HK_PCI_CAP_ID_MSIX, 0, 3, 0 };
	uint8_t vndr[16] = { HK_PCI_CAP_ID_VNDR, 0, 16, 1 };
	int m, v;

	rig_init(&r);
	m = hk_pci_add_cap(&r.dev, msix, sizeof(msix));
	v = hk_pci_add_cap(&r.dev, vndr, sizeof(vndr));
	ASSERT_EQ_INT(m, 0x40);
	ASSERT_EQ_INT(v, 0x4c);
	ASSERT_OK(hk_pci_attach(r.vm, &r.dev));
	ASSERT_TRUE(cfg_rd(&r, 0, 3, 0, 6, 2) & HK_PCI_STATUS_CAP_LIST);
	ASSERT_EQ_U64(cfg_rd(&r, 0, 3, 0, 0x34, 1), 0x40);
	ASSERT_EQ_U64(cfg_rd(&r, 0, 3, 0, 0x41, 1), 0x4c);
	ASSERT_EQ_U64(cfg_rd(&r, 0, 3, 0, 0x4d, 1), 0);
	/* Enable and function mask are writable, the table size is not. */
	cfg_wr(&r, 3, 0x42, 2, 0xffff);
	ASSERT_EQ_U64(cfg_rd(&r, 0, 3, 0, 0x42, 2), 0xc003);
	cfg_wr(&r, 3, 0x44, 4, 0xffffffff); /* table offset: read-only */
	ASSERT_EQ_U64(cfg_rd(&r, 0, 3, 0, 0x44, 4), 0);
	cfg_wr(&r, 3, 0x4c, 4, 0xffffffff); /* vendor cap: read-only */
	ASSERT_EQ_U64(cfg_rd(&r, 0, 3, 0, 0x4c, 4), 0x01100009);
	rig_free(&r);
}

TEST(cap_space_runs_out)
{
	struct rig r;
	uint8_t big[64] = { HK_PCI_CAP_ID_VNDR, 0, 64 };
	int n = 0, rc;

	rig_init(&r);
	while ((rc = hk_pci_add_cap(&r.dev, big, sizeof(big))) > 0)
		n++;
	ASSERT_EQ_INT(rc, -ENOSPC);
	ASSERT_EQ_INT(n, 3);
	rig_free(&r);
}

TEST(bad_accesses_are_ignored)
{
	struct rig r;
	uint8_t before[256];

	rig_init(&r);
	ASSERT_OK(hk_pci_attach(r.vm, &r.dev));
	memcpy(before, r.dev.cfg, 256);
	/* Misaligned and odd-sized data port accesses. */
	cfg_wr(&r, 3, 0x3d, 2, 0xffff);
	cfg_wr(&r, 3, 0x3e, 4, 0xffffffff);
	ASSERT_EQ_U64(cfg_rd(&r, 0, 3, 0, 0x3d, 2), 0xffff);
	ASSERT_EQ_MEM(r.dev.cfg, before, 256);
	/* Direct API: off past the end, size 3 and 8. */
	hk_pci_cfg_write(r.vm->pci, 3, 0, 255, 4, 0);
	hk_pci_cfg_write(r.vm->pci, 3, 0, 4, 3, 0);
	hk_pci_cfg_write(r.vm->pci, 3, 0, 1000, 1, 0);
	hk_pci_cfg_write(r.vm->pci, 40, 9, 0, 4, 0);
	ASSERT_EQ_U64(hk_pci_cfg_read(r.vm->pci, 3, 0, 256, 1), 0xff);
	ASSERT_EQ_U64(hk_pci_cfg_read(r.vm->pci, 3, 0, 2, 8), 0xffffffffu);
	ASSERT_EQ_U64(hk_pci_cfg_read(r.vm->pci, 3, 0, 1, 2), 0xffff);
	ASSERT_EQ_MEM(r.dev.cfg, before, 256);
	rig_free(&r);
}

TEST(hostile_write_storm)
{
	struct rig r;
	uint64_t seed = 0x1234567;

	rig_init(&r);
	ASSERT_OK(hk_pci_attach(r.vm, &r.dev));
	for (unsigned i = 0; i < 200000; i++) {
		unsigned off, size;
		uint32_t val;

		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		off = (unsigned)(seed >> 33) & 0xff;
		size = 1u << ((seed >> 45) & 3); /* 1, 2, 4, 8 */
		val = (uint32_t)(seed >> 13);
		if (seed >> 63)
			val = 0xffffffffu;
		hk_pci_cfg_write(r.vm->pci, 3, 0, off, size, val);
		(void)hk_pci_cfg_read(r.vm->pci, 3, 0, off, size);
		for (unsigned b = 0; b < HK_PCI_MAX_BARS; b++) {
			uint64_t m = hk_pci_bar_mapped(&r.dev, b);

			if (m)
				ASSERT_TRUE(m >= HK_PCI_MMIO_BASE &&
					    m + r.dev.bar[b].size <=
						    HK_PCI_MMIO_END);
		}
	}
	ASSERT_EQ_U64(load_le16(r.dev.cfg), 0x1af4);
	ASSERT_EQ_U64(load_le16(r.dev.cfg + 2), 0x1042);
	rig_free(&r);
}

TEST(attach_checks)
{
	struct rig r;
	struct hk_pci_dev other, bad;

	rig_init(&r);
	ASSERT_OK(hk_pci_attach(r.vm, &r.dev));
	memset(&other, 0, sizeof(other));
	other.slot = 3;
	hk_pci_init_header(&other, 1, 2, 0, 0, 0);
	ASSERT_ERR(hk_pci_attach(r.vm, &other), -EBUSY);
	other.func = 1;
	ASSERT_OK(hk_pci_attach(r.vm, &other));
	ASSERT_EQ_U64(cfg_rd(&r, 0, 3, 0, 0x0e, 1) & 0x80, 0x80);
	memset(&bad, 0, sizeof(bad));
	bad.slot = 5;
	bad.bar[0] = (struct hk_pci_bar){ .size = 0x1800, .fn = bar_fn };
	ASSERT_ERR(hk_pci_attach(r.vm, &bad), -EINVAL);
	/* 256 MiB BARs: two more fit in the window, a third does not. */
	bad.bar[0].size = 1ull << 28;
	ASSERT_OK(hk_pci_attach(r.vm, &bad));
	memcpy(&other, &bad, sizeof(other));
	other.slot = 6;
	ASSERT_OK(hk_pci_attach(r.vm, &other));
	bad.slot = 7;
	ASSERT_ERR(hk_pci_attach(r.vm, &bad), -ENOSPC);
	bad.slot = 32;
	ASSERT_ERR(hk_pci_attach(r.vm, &bad), -EINVAL);
	bad.slot = 8;
	bad.bar[0].size = 1ull << 31; /* larger than the window */
	ASSERT_ERR(hk_pci_attach(r.vm, &bad), -ENOSPC);
	rig_free(&r);
}

TEST(hostbridge_and_lpc)
{
	struct rig r;

	rig_init(&r);
	ASSERT_OK(hk_hostbridge_create(r.vm, 0, 0, NULL));
	ASSERT_OK(hk_lpc_create(r.vm, 31, 0, NULL));
	ASSERT_ERR(hk_lpc_create(r.vm, 31, 0, NULL), -EBUSY);
	ASSERT_EQ_U64(cfg_rd(&r, 0, 0, 0, 0x08, 4) >> 8, 0x060000);
	ASSERT_EQ_U64(cfg_rd(&r, 0, 31, 0, 0x08, 4) >> 8, 0x060100);
	ASSERT_EQ_U64(cfg_rd(&r, 0, 31, 0, 0, 2), 0x8086);
	rig_free(&r); /* frees both (ASan would see a leak) */
}

static const struct test_case tests[] = {
	TEST_CASE(header_reads_through_ports),
	TEST_CASE(address_register_and_reset_port),
	TEST_CASE(bars_placed_in_window_and_mapped),
	TEST_CASE(bar_sizing),
	TEST_CASE(bar_move_follows_guest),
	TEST_CASE(read_only_bits_stay),
	TEST_CASE(capabilities_and_msix_bits),
	TEST_CASE(cap_space_runs_out),
	TEST_CASE(bad_accesses_are_ignored),
	TEST_CASE(hostile_write_storm),
	TEST_CASE(attach_checks),
	TEST_CASE(hostbridge_and_lpc),
};

TEST_MAIN(tests);
