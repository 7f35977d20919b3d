// SPDX-License-Identifier: MIT
/*
 * The MP table (mptable.c), read back the way a guest's parser walks it:
 * floating pointer, checksums, the configuration table's entries by type,
 * and agreement with the interrupt wiring the core sets up.
 */
#include <stdlib.h>
#include <string.h>

#include "../internal.h"
#include "base/endian.h"
#include "base/test.h"

#define GPA 0xf0000

struct parsed {
	unsigned cpus, bsp, buses, ioapics, intsrc, lint;
	uint8_t ioapic_id;
	uint32_t ioapic_addr;
	uint8_t isa_bus;
	bool isa_identity; /* ISA IRQ n -> pin n */
	uint8_t apic_ids[256];
};

static void parse(const uint8_t *buf, size_t len, struct parsed *p)
{
	const uint8_t *cfg, *e, *end;
	uint16_t base_len, count, i;
	int isa_seen = 0;

	memset(p, 0, sizeof(*p));
	p->isa_bus = 0xff;
	p->isa_identity = true;
	ASSERT_GE_U64(len, 16);
	ASSERT_EQ_MEM(buf, "_MP_", 4);
	ASSERT_EQ_U64(buf[8], 1);
	ASSERT_EQ_U64(buf[9], 4);
	ASSERT_EQ_U64(hk_checksum(buf, 16), 0);
	ASSERT_GE_U64(load_le32(buf + 4), GPA);
	cfg = buf + (load_le32(buf + 4) - GPA);
	ASSERT_EQ_MEM(cfg, "PCMP", 4);
	base_len = load_le16(cfg + 4);
	ASSERT_LE_U64((size_t)(cfg - buf) + base_len, len);
	ASSERT_EQ_U64(hk_checksum(cfg, base_len), 0);
	ASSERT_EQ_U64(load_le32(cfg + 36), HK_LAPIC_GPA);
	count = load_le16(cfg + 34);
	e = cfg + 44;
	end = cfg + base_len;
	for (i = 0; i < count; i++) {
		ASSERT_TRUE(e < end);
		switch (e[0]) {
		case 0:
			ASSERT_TRUE(e + 20 <= end);
			if (e[3] & 1)
				p->apic_ids[p->cpus++] = e[1];
			if (e[3] & 2)
				p->bsp++;
			e += 20;
			break;
		case 1:
			if (memcmp(e + 2, "ISA   ", 6) == 0)
				p->isa_bus = e[1];
			p->buses++;
			e += 8;
			break;
		case 2:
			p->ioapics++;
			p->ioapic_id = e[1];
			p->ioapic_addr = load_le32(e + 4);
			e += 8;
			break;
		case 3:
			if (e[4] == p->isa_bus) {
				isa_seen++;
				if (e[5] != e[7] || e[6] != p->ioapic_id)
					p->isa_identity = false;
			}
			p->intsrc++;
			e += 8;
			break;
		case 4:
			p->lint++;
			e += 8;
			break;
		default:
			ASSERT_TRUE(!"unknown MP entry type");
		}
	}
	ASSERT_TRUE(e == end);
	ASSERT_EQ_INT(isa_seen, 16);
}

TEST(table_describes_each_cpu_once)
{
	static const unsigned counts[] = { 1, 2, 4, 16, 64 };
	uint8_t buf[HK_MPTABLE_MAX];
	struct parsed p;
	size_t i;
	unsigned c;

	for (i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		ssize_t n = hk_mptable_build(buf, sizeof(buf), GPA, counts[i]);

		ASSERT_GT_INT(n, 0);
		parse(buf, (size_t)n, &p);
		ASSERT_EQ_U64(p.cpus, counts[i]);
		ASSERT_EQ_U64(p.bsp, 1);
		for (c = 0; c < counts[i]; c++)
			ASSERT_EQ_U64(p.apic_ids[c], c);
		ASSERT_EQ_U64(p.ioapics, 1);
		ASSERT_EQ_U64(p.ioapic_addr, HK_IOAPIC_GPA);
		/* The IOAPIC's id is no LAPIC's. */
		ASSERT_GE_U64(p.ioapic_id, counts[i]);
		ASSERT_EQ_U64(p.buses, 2);
		ASSERT_TRUE(p.isa_identity);
		ASSERT_EQ_U64(p.lint, 2);
	}
}

TEST(table_refuses_small_buffers)
{
	uint8_t buf[256];

	ASSERT_EQ_INT(hk_mptable_build(buf, sizeof(buf), GPA, 4), -ENOSPC);
	ASSERT_EQ_INT(hk_mptable_build(NULL, 4096, GPA, 1), -ENOSPC);
	ASSERT_EQ_INT(hk_mptable_build(buf, sizeof(buf), GPA, 0), -ENOSPC);
}

TEST(a_flipped_byte_breaks_the_checksum)
{
	uint8_t buf[HK_MPTABLE_MAX];
	ssize_t n = hk_mptable_build(buf, sizeof(buf), GPA, 2);

	ASSERT_GT_INT(n, 0);
	ASSERT_EQ_U64(hk_checksum(buf + 16, (size_t)n - 16), 0);
	buf[16 + 50] ^= 1;
	ASSERT_NE_U64(hk_checksum(buf + 16, (size_t)n - 16), 0);
}

static const struct test_case tests[] = {
	TEST_CASE(table_describes_each_cpu_once),
	TEST_CASE(table_refuses_small_buffers),
	TEST_CASE(a_flipped_byte_breaks_the_checksum),
};

TEST_MAIN(tests);
