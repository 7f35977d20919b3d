// SPDX-License-Identifier: MIT
/*
 * The MP table (Intel MultiProcessor Specification 1.4) that tells a guest
 * without ACPI how many CPUs it has and how interrupts are wired.
 *
 * Layout, at HK_MPTABLE_GPA in the reserved BIOS area where Linux scans
 * for it: the 16-byte floating pointer "_MP_", then the configuration
 * table "PCMP" with one processor entry per vCPU (APIC id = index, the
 * first is the boot processor), the buses (PCI 0, ISA 1), the IOAPIC (id
 * = number of CPUs, so it collides with no LAPIC), the interrupt entries
 * and the local interrupts (LINT0 ExtINT, LINT1 NMI on every LAPIC).
 *
 * Wiring matches KVM's default routes: ISA IRQ n goes to IOAPIC pin n
 * (edge, active high as on ISA), and PCI slot s's INTA# to pin
 * HK_PCI_INTX_FIRST_GSI + s % 8 (level, active low).
 */
#include <errno.h>
#include <string.h>

#include "base/endian.h"
#include "internal.h"

#define MP_PROCESSOR 0
#define MP_BUS 1
#define MP_IOAPIC 2
#define MP_INTSRC 3
#define MP_LINTSRC 4

#define MP_INT 0
#define MP_NMI 1
#define MP_EXTINT 3

#define BUS_PCI 0
#define BUS_ISA 1
#define PCI_SLOTS 32

uint8_t hk_checksum(const uint8_t *p, size_t len)
{
	uint8_t sum = 0;

	while (len--)
		sum = (uint8_t)(sum + *p++);
	return sum;
}

static void intsrc(uint8_t *e, uint8_t type, uint16_t flags, uint8_t bus,
		   uint8_t bus_irq, uint8_t apic, uint8_t pin, uint8_t kind)
{
	e[0] = kind;
	e[1] = type;
	store_le16(e + 2, flags);
	e[4] = bus;
	e[5] = bus_irq;
	e[6] = apic;
	e[7] = pin;
}

ssize_t hk_mptable_build(uint8_t *buf, size_t len, uint64_t gpa,
			 unsigned cpus)
{
	size_t need = 16 + 44 + 20 * (size_t)cpus + 8 * (2 + 1 + 16 +
							 PCI_SLOTS + 2);
	uint8_t *cfg, *e;
	uint8_t ioapic_id = (uint8_t)cpus;
	unsigned i, count = 0;

	if (!buf || len < need || cpus == 0 || cpus > 254)
		return -ENOSPC;
	memset(buf, 0, need);
	cfg = buf + 16;

	/* Entries first, after the 44-byte header. */
	e = cfg + 44;
	for (i = 0; i < cpus; i++, e += 20, count++) {
		e[0] = MP_PROCESSOR;
		e[1] = (uint8_t)i; /* LAPIC id */
		e[2] = 0x14; /* LAPIC version */
		e[3] = 0x01 | (i == 0 ? 0x02 : 0); /* enabled, BSP */
		store_le32(e + 4, 0x600); /* family 6 signature */
		store_le32(e + 8, 0x201); /* FPU, APIC */
	}
	e[0] = MP_BUS;
	e[1] = BUS_PCI;
	memcpy(e + 2, "PCI   ", 6);
	e += 8, count++;
	e[0] = MP_BUS;
	e[1] = BUS_ISA;
	memcpy(e + 2, "ISA   ", 6);
	e += 8, count++;
	e[0] = MP_IOAPIC;
	e[1] = ioapic_id;
	e[2] = 0x11; /* version */
	e[3] = 0x01; /* enabled */
	store_le32(e + 4, (uint32_t)HK_IOAPIC_GPA);
	e += 8, count++;
	/* ISA IRQs 0-15: conforming polarity and trigger (edge, high). */
	for (i = 0; i < 16; i++, e += 8, count++)
		intsrc(e, MP_INT, 0, BUS_ISA, (uint8_t)i, ioapic_id, (uint8_t)i,
		       MP_INTSRC);
	/* PCI INTA# of each slot: level (3 << 2), active low (3). */
	for (i = 0; i < PCI_SLOTS; i++, e += 8, count++)
		intsrc(e, MP_INT, 0x0f, BUS_PCI, (uint8_t)(i << 2), ioapic_id,
		       (uint8_t)(HK_PCI_INTX_FIRST_GSI + i % 8), MP_INTSRC);
	intsrc(e, MP_EXTINT, 0, BUS_ISA, 0, 0xff, 0, MP_LINTSRC);
	e += 8, count++;
	intsrc(e, MP_NMI, 0, BUS_ISA, 0, 0xff, 1, MP_LINTSRC);
	e += 8, count++;

	/* The configuration table header. */
	memcpy(cfg, "PCMP", 4);
	store_le16(cfg + 4, (uint16_t)(e - cfg)); /* base table length */
	cfg[6] = 4; /* spec revision 1.4 */
	memcpy(cfg + 8, "UNIKIT  ", 8);
	memcpy(cfg + 16, "HYPERKIT    ", 12);
	store_le16(cfg + 34, (uint16_t)count);
	store_le32(cfg + 36, (uint32_t)HK_LAPIC_GPA);
	cfg[7] = (uint8_t)-hk_checksum(cfg, (size_t)(e - cfg));

	/* The floating pointer. */
	memcpy(buf, "_MP_", 4);
	store_le32(buf + 4, (uint32_t)(gpa + 16));
	buf[8] = 1; /* length in 16-byte units */
	buf[9] = 4; /* revision 1.4 */
	buf[10] = (uint8_t)-hk_checksum(buf, 16);
	return e - buf;
}
