// SPDX-License-Identifier: MIT
/*
 * ACPI with -A: the least a Linux guest needs to find its CPUs and to
 * power itself off, and the fixed hardware behind it.
 *
 * Tables, at HK_ACPI_GPA (where Linux scans for the RSDP, and whose
 * address also goes into the zero page):
 *
 *   RSDP (2.0) -> XSDT -> FADT -> FACS, DSDT
 *                      -> MADT: a LAPIC per vCPU, the IOAPIC, the SCI's
 *                               interrupt override, LINT1 as NMI
 *
 * The FADT describes PC fixed hardware (not "hardware reduced"): a PM1a
 * event block (status and enable) and a PM1a control block at I/O ports,
 * the SCI on IRQ 9, no SMI command port (the system is always in ACPI
 * mode), a fixed power button, and a reset register. The DSDT holds
 * \_S5, so the guest knows the SLP_TYP to write for soft-off, and the PCI
 * root bridge, so the guest finds bus 0 under ACPI.
 *
 * Fixed hardware: when the guest writes SLP_EN with SLP_TYP 5 to PM1a
 * control, the VM powers off; a write of the reset value to the reset
 * register resets it. hk_acpi_power_button sets PWRBTN_STS and raises the
 * SCI (level) while a set status bit is enabled.
 */
#include <errno.h>
#include <string.h>

#include "base/endian.h"
#include "internal.h"

#define OEM_ID "UNIKIT"
#define OEM_TABLE_ID "HYPERKIT"

#define RSDP_OFF 0x000
#define XSDT_OFF 0x040
#define FADT_OFF 0x080
#define FACS_OFF 0x180 /* 64-byte aligned */
#define DSDT_OFF 0x1c0
#define FADT_LEN 244 /* revision 4 */
#define FACS_LEN 64

#define PM1_PWRBTN_STS (1u << 8)
#define PM1_SCI_EN 1u
#define PM1_SLP_TYP_SHIFT 10
#define PM1_SLP_EN (1u << 13)

/*
 * The DSDT's body, in AML:
 *   Name (_S5, Package (4) { 5, 5, 0, 0 })
 *   Scope (\_SB) { Device (PCI0) {
 *     Name (_HID, EisaId ("PNP0A03")), Name (_ADR, 0), Name (_UID, 0),
 *     Name (_CRS, ResourceTemplate () {
 *       WordBusNumber 0-0xff, IO 0xcf8 length 8,
 *       WordIO 0-0xcf7, WordIO 0xd00-0xffff,
 *       DWordMemory HK_PCI window 0xc0000000-0xfebfffff }) } }
 * Under ACPI, Linux finds PCI buses only through a PNP0A03 device; its
 * _CRS gives the config ports and the windows BARs are placed in.
 * (Checked against iasl's compiler and disassembler by test_acpi.)
 */
static const uint8_t dsdt_aml[] = {
	0x08, '_', 'S', '5', '_', /* NameOp "_S5_" */
	0x12, 0x08, 0x04, /* PackageOp, PkgLength 8, 4 elements */
	0x0a, HK_ACPI_S5_TYP, 0x0a, HK_ACPI_S5_TYP, /* BytePrefix 5, 5 */
	0x00, 0x00, /* Zero, Zero */
	0x10, 0x42, 0x08, '_', 'S', 'B', '_', /* ScopeOp, PkgLength 0x82 */
	0x5b, 0x82, 0x4a, 0x07, 'P', 'C', 'I', '0', /* DeviceOp, 0x7a */
	0x08, '_', 'H', 'I', 'D', 0x0c, 0x41, 0xd0, 0x0a, 0x03, /* PNP0A03 */
	0x08, '_', 'A', 'D', 'R', 0x00,
	0x08, '_', 'U', 'I', 'D', 0x00,
	0x08, '_', 'C', 'R', 'S', 0x11, 0x48, 0x05, /* BufferOp, 0x58 */
	0x0a, 0x54, /* 84 bytes of resource descriptors */
	/* Word address space, bus numbers 0-0xff */
	0x88, 0x0d, 0x00, 0x02, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff,
	0x00, 0x00, 0x00, 0x00, 0x01,
	/* I/O ports 0xcf8-0xcff */
	0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08,
	/* Word I/O 0-0xcf7 */
	0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03, 0x00, 0x00, 0x00, 0x00, 0xf7,
	0x0c, 0x00, 0x00, 0xf8, 0x0c,
	/* Word I/O 0xd00-0xffff */
	0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03, 0x00, 0x00, 0x00, 0x0d, 0xff,
	0xff, 0x00, 0x00, 0x00, 0xf3,
	/* DWord memory 0xc0000000-0xfebfffff, read-write, non-cacheable */
	0x87, 0x17, 0x00, 0x00, 0x0c, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0xc0, 0xff, 0xff, 0xbf, 0xfe, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0xc0, 0x3e,
	0x79, 0x00, /* end tag */
};

static void sdt_header(uint8_t *t, const char *sig, uint32_t len, uint8_t rev)
{
	memcpy(t, sig, 4);
	store_le32(t + 4, len);
	t[8] = rev;
	memcpy(t + 10, OEM_ID, 6);
	memcpy(t + 16, OEM_TABLE_ID, 8);
	store_le32(t + 24, 1); /* OEM revision */
	memcpy(t + 28, "UNIK", 4); /* creator id */
	store_le32(t + 32, 1); /* creator revision */
}

static void sdt_seal(uint8_t *t)
{
	t[9] = 0;
	t[9] = (uint8_t)-hk_checksum(t, load_le32(t + 4));
}

/* A Generic Address Structure for an I/O port block. */
static void gas_io(uint8_t *g, uint16_t port, uint8_t bytes)
{
	g[0] = 1; /* system I/O */
	g[1] = (uint8_t)(bytes * 8);
	g[2] = 0;
	g[3] = bytes >= 4 ? 3 : bytes == 2 ? 2 : 1; /* access size */
	store_le64(g + 4, port);
}

static size_t build_madt(uint8_t *t, unsigned cpus)
{
	uint8_t *e = t + 44;
	unsigned i;

	store_le32(t + 36, (uint32_t)HK_LAPIC_GPA);
	store_le32(t + 40, 1); /* PCAT_COMPAT: there are 8259s */
	for (i = 0; i < cpus; i++, e += 8) {
		e[0] = 0; /* processor local APIC */
		e[1] = 8;
		e[2] = (uint8_t)i; /* processor UID */
		e[3] = (uint8_t)i; /* APIC id */
		store_le32(e + 4, 1); /* enabled */
	}
	e[0] = 1; /* IOAPIC */
	e[1] = 12;
	e[2] = (uint8_t)cpus; /* IOAPIC id, as in the MP table */
	e[3] = 0;
	store_le32(e + 4, (uint32_t)HK_IOAPIC_GPA);
	store_le32(e + 8, 0); /* GSI base */
	e += 12;
	e[0] = 2; /* interrupt source override: the SCI */
	e[1] = 10;
	e[2] = 0; /* ISA */
	e[3] = HK_ACPI_SCI_IRQ;
	store_le32(e + 4, HK_ACPI_SCI_IRQ);
	store_le16(e + 8, 0x000d); /* level, active high */
	e += 10;
	e[0] = 4; /* local APIC NMI: every processor, LINT1 */
	e[1] = 6;
	e[2] = 0xff;
	store_le16(e + 3, 0);
	e[5] = 1;
	e += 6;
	sdt_header(t, "APIC", (uint32_t)(e - t), 3);
	sdt_seal(t);
	return (size_t)(e - t);
}

static void build_fadt(uint8_t *t, uint64_t gpa)
{
	sdt_header(t, "FACP", FADT_LEN, 4);
	store_le32(t + 36, (uint32_t)(gpa + FACS_OFF));
	store_le32(t + 40, (uint32_t)(gpa + DSDT_OFF));
	t[45] = 0; /* preferred PM profile: unspecified */
	store_le16(t + 46, HK_ACPI_SCI_IRQ);
	store_le32(t + 48, 0); /* no SMI command port: always ACPI mode */
	store_le32(t + 56, HK_ACPI_PM1_EVT_PORT);
	store_le32(t + 64, HK_ACPI_PM1_CNT_PORT);
	t[88] = 4; /* PM1 event block length */
	t[89] = 2; /* PM1 control block length */
	store_le16(t + 96, 101); /* C2 latency > 100: no C2 */
	store_le16(t + 98, 1001); /* C3 latency > 1000: no C3 */
	store_le16(t + 109, 1u << 2); /* IA-PC boot flags: no VGA */
	/* WBINVD, C1 on all CPUs, sleep button is not fixed, reset
	 * register supported; the power button is fixed (bit 4 clear). */
	store_le32(t + 112, 1u << 0 | 1u << 2 | 1u << 5 | 1u << 10);
	gas_io(t + 116, HK_ACPI_RESET_PORT, 1);
	t[128] = HK_ACPI_RESET_VALUE;
	store_le64(t + 132, gpa + FACS_OFF);
	store_le64(t + 140, gpa + DSDT_OFF);
	gas_io(t + 148, HK_ACPI_PM1_EVT_PORT, 4);
	gas_io(t + 172, HK_ACPI_PM1_CNT_PORT, 2);
	sdt_seal(t);
}

ssize_t hk_acpi_build(uint8_t *buf, size_t len, uint64_t gpa, unsigned cpus)
{
	uint32_t dsdt_len = 36 + sizeof(dsdt_aml);
	size_t madt_off = (DSDT_OFF + dsdt_len + 15) & ~(size_t)15;
	size_t madt_len = 44 + 8 * (size_t)cpus + 12 + 10 + 6;
	uint8_t *t;

	if (!buf || cpus == 0 || cpus > 254 || len < madt_off + madt_len)
		return -ENOSPC;
	memset(buf, 0, madt_off + madt_len);

	t = buf + DSDT_OFF;
	sdt_header(t, "DSDT", dsdt_len, 2);
	memcpy(t + 36, dsdt_aml, sizeof(dsdt_aml));
	sdt_seal(t);

	t = buf + FACS_OFF;
	memcpy(t, "FACS", 4);
	store_le32(t + 4, FACS_LEN);
	t[32] = 1; /* version */

	build_fadt(buf + FADT_OFF, gpa);
	build_madt(buf + madt_off, cpus);

	t = buf + XSDT_OFF;
	sdt_header(t, "XSDT", 36 + 2 * 8, 1);
	store_le64(t + 36, gpa + FADT_OFF);
	store_le64(t + 44, gpa + madt_off);
	sdt_seal(t);

	t = buf + RSDP_OFF;
	memcpy(t, "RSD PTR ", 8);
	memcpy(t + 9, OEM_ID, 6);
	t[15] = 2; /* revision: ACPI 2.0+, XSDT */
	store_le32(t + 16, 0); /* no RSDT */
	store_le32(t + 20, 36);
	store_le64(t + 24, gpa + XSDT_OFF);
	t[8] = (uint8_t)-hk_checksum(t, 20);
	t[32] = (uint8_t)-hk_checksum(t, 36);
	return (ssize_t)(madt_off + madt_len);
}

/* ---------------------------------------------------------------- hardware */

/* Raise or lower the SCI from status & enable (state_lock held). */
static void sci_update(struct hk_vm *vm)
{
	bool level = (vm->pm1_sts & vm->pm1_en) != 0;

	if (level != vm->sci_level) {
		vm->sci_level = level;
		hk_irq_set(vm, HK_ACPI_SCI_IRQ, level);
	}
}

static uint64_t size_mask(unsigned size)
{
	return size >= 8 ? ~0ull : (1ull << (8 * size)) - 1;
}

/* PM1a event block: status (write 1 to clear) at 0, enable at 2. */
static void pm1_evt(void *opaque, uint64_t off, unsigned size, bool write,
		    uint64_t *val)
{
	struct hk_vm *vm = opaque;
	uint32_t reg, mask, v;

	if (off >= 4)
		return;
	pthread_mutex_lock(&vm->state_lock);
	reg = vm->pm1_sts | (uint32_t)vm->pm1_en << 16;
	mask = (uint32_t)(size_mask(size) << (8 * off));
	if (!write) {
		*val = (reg & mask) >> (8 * off);
	} else {
		v = (uint32_t)(*val << (8 * off)) & mask;
		vm->pm1_sts &= (uint16_t)~(v & 0xffff);
		vm->pm1_en = (uint16_t)((vm->pm1_en & ~(mask >> 16)) |
					(v >> 16));
		sci_update(vm);
	}
	pthread_mutex_unlock(&vm->state_lock);
}

/* PM1a control: SCI_EN always reads set; SLP_EN with SLP_TYP 5 is S5. */
static void pm1_cnt(void *opaque, uint64_t off, unsigned size, bool write,
		    uint64_t *val)
{
	struct hk_vm *vm = opaque;
	uint32_t mask = (uint32_t)size_mask(size) << (8 * off), v;
	bool off_now = false;

	if (off >= 2)
		return;
	pthread_mutex_lock(&vm->state_lock);
	if (!write) {
		*val = ((vm->pm1_cnt | PM1_SCI_EN) & mask) >> (8 * off);
	} else {
		v = (vm->pm1_cnt & ~mask) | ((uint32_t)(*val << (8 * off)) & mask);
		if ((v & PM1_SLP_EN) &&
		    ((v >> PM1_SLP_TYP_SHIFT) & 7) == HK_ACPI_S5_TYP)
			off_now = true;
		vm->pm1_cnt = (uint16_t)(v & ~PM1_SLP_EN);
	}
	pthread_mutex_unlock(&vm->state_lock);
	if (off_now)
		hk_vm_request_poweroff(vm);
}

static void reset_reg(void *opaque, uint64_t off, unsigned size, bool write,
		      uint64_t *val)
{
	(void)off;
	(void)size;
	if (!write)
		*val = 0;
	else if ((*val & 0xff) == HK_ACPI_RESET_VALUE)
		hk_vm_request_reset(opaque);
}

int hk_acpi_hw_init(struct hk_vm *vm)
{
	int err;

	err = hk_pio_register(vm, HK_ACPI_PM1_EVT_PORT, 4, pm1_evt, vm);
	if (!err)
		err = hk_pio_register(vm, HK_ACPI_PM1_CNT_PORT, 2, pm1_cnt, vm);
	if (!err)
		err = hk_pio_register(vm, HK_ACPI_RESET_PORT, 1, reset_reg, vm);
	return err;
}

void hk_acpi_power_button(struct hk_vm *vm)
{
	pthread_mutex_lock(&vm->state_lock);
	vm->pm1_sts |= PM1_PWRBTN_STS;
	sci_update(vm);
	pthread_mutex_unlock(&vm->state_lock);
}
