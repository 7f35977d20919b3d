// SPDX-License-Identifier: MIT
/*
 * The ACPI tables (acpi.c): checksums and links followed from the RSDP
 * as a guest does, the FADT's fixed hardware, the MADT's processors, the
 * DSDT's \_S5; and, when iasl (acpica-tools) is installed, the tables
 * disassembled by ACPICA's own tool as a peer we did not write.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "../internal.h"
#include "base/endian.h"
#include "base/test.h"

#define GPA 0xe0000

static uint8_t buf[HK_ACPI_MAX];

/* The table at a guest address, checked: signature, length, checksum. */
static const uint8_t *table_at(uint64_t addr, const char *sig, size_t n)
{
	const uint8_t *t;
	uint32_t len;

	ASSERT_GE_U64(addr, GPA);
	ASSERT_LT_U64(addr - GPA, n);
	t = buf + (addr - GPA);
	ASSERT_EQ_MEM(t, sig, 4);
	len = load_le32(t + 4);
	ASSERT_LE_U64(addr - GPA + len, n);
	if (strcmp(sig, "FACS") != 0)
		ASSERT_EQ_U64(hk_checksum(t, len), 0);
	return t;
}

struct tables {
	const uint8_t *rsdp, *xsdt, *fadt, *madt, *dsdt, *facs;
};

static void walk(unsigned cpus, struct tables *ts)
{
	ssize_t n = hk_acpi_build(buf, sizeof(buf), GPA, cpus);
	uint32_t entries, i;

	ASSERT_GT_INT(n, 0);
	memset(ts, 0, sizeof(*ts));
	ts->rsdp = buf;
	ASSERT_EQ_MEM(buf, "RSD PTR ", 8);
	ASSERT_EQ_U64(hk_checksum(buf, 20), 0);
	ASSERT_EQ_U64(buf[15], 2);
	ASSERT_EQ_U64(load_le32(buf + 20), 36);
	ASSERT_EQ_U64(hk_checksum(buf, 36), 0);
	ts->xsdt = table_at(load_le64(buf + 24), "XSDT", (size_t)n);
	entries = (load_le32(ts->xsdt + 4) - 36) / 8;
	for (i = 0; i < entries; i++) {
		uint64_t a = load_le64(ts->xsdt + 36 + 8 * i);
		const uint8_t *t = buf + (a - GPA);

		ASSERT_LT_U64(a - GPA, (uint64_t)n);
		if (memcmp(t, "FACP", 4) == 0)
			ts->fadt = table_at(a, "FACP", (size_t)n);
		else if (memcmp(t, "APIC", 4) == 0)
			ts->madt = table_at(a, "APIC", (size_t)n);
		else
			ASSERT_TRUE(!"unexpected table in the XSDT");
	}
	ASSERT_TRUE(ts->fadt && ts->madt);
	ts->dsdt = table_at(load_le64(ts->fadt + 140), "DSDT", (size_t)n);
	ASSERT_EQ_U64(load_le32(ts->fadt + 40), load_le64(ts->fadt + 140));
	ts->facs = table_at(load_le64(ts->fadt + 132), "FACS", (size_t)n);
	ASSERT_EQ_U64((uint64_t)(ts->facs - buf) % 64, 0);
}

TEST(tables_link_and_sum_to_zero)
{
	struct tables ts;

	walk(1, &ts);
	walk(4, &ts);
	walk(64, &ts);
}

TEST(fadt_fixed_hardware)
{
	struct tables ts;
	const uint8_t *f;

	walk(2, &ts);
	f = ts.fadt;
	ASSERT_EQ_U64(load_le16(f + 46), HK_ACPI_SCI_IRQ);
	ASSERT_EQ_U64(load_le32(f + 48), 0); /* no SMI: ACPI mode always */
	ASSERT_EQ_U64(load_le32(f + 56), HK_ACPI_PM1_EVT_PORT);
	ASSERT_EQ_U64(load_le32(f + 64), HK_ACPI_PM1_CNT_PORT);
	ASSERT_EQ_U64(f[88], 4);
	ASSERT_EQ_U64(f[89], 2);
	/* The 64-bit blocks agree with the 32-bit ones. */
	ASSERT_EQ_U64(f[148], 1); /* system I/O */
	ASSERT_EQ_U64(load_le64(f + 152), HK_ACPI_PM1_EVT_PORT);
	ASSERT_EQ_U64(load_le64(f + 176), HK_ACPI_PM1_CNT_PORT);
	/* Fixed power button (bit 4 clear), reset register (bit 10). */
	ASSERT_EQ_U64(load_le32(f + 112) & (1u << 4), 0);
	ASSERT_NE_U64(load_le32(f + 112) & (1u << 10), 0);
	ASSERT_EQ_U64(load_le64(f + 120), HK_ACPI_RESET_PORT);
	ASSERT_EQ_U64(f[128], HK_ACPI_RESET_VALUE);
}

TEST(madt_lists_every_cpu_and_the_ioapic)
{
	struct tables ts;
	const uint8_t *e, *end;
	unsigned lapics = 0, ioapics = 0, overrides = 0;

	walk(8, &ts);
	ASSERT_EQ_U64(load_le32(ts.madt + 36), HK_LAPIC_GPA);
	e = ts.madt + 44;
	end = ts.madt + load_le32(ts.madt + 4);
	while (e < end) {
		ASSERT_GE_U64(e[1], 2);
		ASSERT_TRUE(e + e[1] <= end);
		switch (e[0]) {
		case 0:
			ASSERT_EQ_U64(e[3], lapics); /* APIC id */
			ASSERT_EQ_U64(load_le32(e + 4) & 1, 1);
			lapics++;
			break;
		case 1:
			ASSERT_EQ_U64(load_le32(e + 4), HK_IOAPIC_GPA);
			ASSERT_EQ_U64(e[2], 8); /* id after the LAPICs */
			ioapics++;
			break;
		case 2:
			ASSERT_EQ_U64(e[3], HK_ACPI_SCI_IRQ);
			overrides++;
			break;
		}
		e += e[1];
	}
	ASSERT_EQ_U64(lapics, 8);
	ASSERT_EQ_U64(ioapics, 1);
	ASSERT_EQ_U64(overrides, 1);
}

TEST(dsdt_has_s5)
{
	static const uint8_t s5[] = { 0x08, '_', 'S', '5', '_', 0x12 };
	struct tables ts;
	const uint8_t *p;
	uint32_t len;

	walk(1, &ts);
	len = load_le32(ts.dsdt + 4);
	p = memmem(ts.dsdt + 36, len - 36, s5, sizeof(s5));
	ASSERT_TRUE(p != NULL);
	/* Package (4) whose first element, SLP_TYPa, is the S5 type. */
	ASSERT_EQ_U64(p[7], 4);
	ASSERT_EQ_U64(p[8], 0x0a);
	ASSERT_EQ_U64(p[9], HK_ACPI_S5_TYP);
}

TEST(tables_refuse_small_buffers)
{
	ASSERT_EQ_INT(hk_acpi_build(buf, 256, GPA, 1), -ENOSPC);
	ASSERT_EQ_INT(hk_acpi_build(NULL, 4096, GPA, 1), -ENOSPC);
	ASSERT_EQ_INT(hk_acpi_build(buf, sizeof(buf), GPA, 0), -ENOSPC);
}

/* Run a shell command in dir; its exit status. */
static int run(const char *dir, const char *cmd)
{
	char line[1024];
	int st;

	snprintf(line, sizeof(line), "cd '%s' && %s", dir, cmd);
	st = system(line);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void dump(const char *dir, const char *name, const uint8_t *t)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	ASSERT_TRUE(f != NULL);
	ASSERT_EQ_U64(fwrite(t, 1, load_le32(t + 4), f), load_le32(t + 4));
	fclose(f);
}

/* Does file in dir contain needle? */
static bool contains(const char *dir, const char *file, const char *needle)
{
	char path[512], *text;
	FILE *f;
	long n;
	bool found;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	f = fopen(path, "r");
	if (!f)
		return false;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	text = calloc(1, (size_t)n + 1);
	ASSERT_TRUE(text != NULL);
	ASSERT_EQ_U64(fread(text, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	found = strstr(text, needle) != NULL;
	if (!found)
		test_note("%s lacks \"%s\":\n%s", file, needle, text);
	free(text);
	return found;
}

TEST(iasl_disassembles_the_tables)
{
	const char *dir = test_tmpdir();
	struct tables ts;

	if (system("command -v iasl >/dev/null 2>&1") != 0)
		TEST_SKIP("iasl not installed (Debian package acpica-tools)");
	walk(2, &ts);
	dump(dir, "dsdt.dat", ts.dsdt);
	dump(dir, "facp.dat", ts.fadt);
	dump(dir, "apic.dat", ts.madt);
	ASSERT_EQ_INT(run(dir, "iasl -d dsdt.dat facp.dat apic.dat "
			       ">iasl.log 2>&1"),
		      0);
	ASSERT_TRUE(contains(dir, "dsdt.dsl", "Name (_S5, Package (0x04)"));
	/* The PCI root bridge and the windows of its _CRS. */
	ASSERT_TRUE(contains(dir, "dsdt.dsl", "EisaId (\"PNP0A03\")"));
	ASSERT_TRUE(contains(dir, "dsdt.dsl", "0xFEBFFFFF"));
	ASSERT_TRUE(contains(dir, "dsdt.dsl", "0x0CF8"));
	ASSERT_TRUE(contains(dir, "facp.dsl", "PM1A Event Block Address : 00000600"));
	ASSERT_TRUE(contains(dir, "facp.dsl", "PM1A Control Block Address : 00000604"));
	ASSERT_TRUE(contains(dir, "apic.dsl", "Local Apic Address : FEE00000"));
	ASSERT_TRUE(contains(dir, "apic.dsl", "I/O Apic ID : 02"));
	ASSERT_TRUE(contains(dir, "apic.dsl", "Address : FEC00000"));
	/* iasl reports checksum and length problems in the output. */
	ASSERT_EQ_INT(run(dir, "! grep -qi 'incorrect\\|invalid\\|error' "
			       "dsdt.dsl facp.dsl apic.dsl"),
		      0);
	/* And the DSDT compiles back from its disassembly. */
	ASSERT_EQ_INT(run(dir, "iasl -p re dsdt.dsl >>iasl.log 2>&1"), 0);
}

static const struct test_case tests[] = {
	TEST_CASE(tables_link_and_sum_to_zero),
	TEST_CASE(fadt_fixed_hardware),
	TEST_CASE(madt_lists_every_cpu_and_the_ioapic),
	TEST_CASE(dsdt_has_s5),
	TEST_CASE(tables_refuse_small_buffers),
	TEST_CASE(iasl_disassembles_the_tables),
};

TEST_MAIN(tests);
