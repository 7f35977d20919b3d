// SPDX-License-Identifier: MIT
/*
 * The SMBIOS tables (smbios.c), read back as a guest reads them: Linux's
 * dmi_scan checks of the entry point (anchors, lengths, both checksums,
 * the table's address), a walk of the structures by their lengths and
 * string sets, string lookup, the UUID in SMBIOS byte order printed the
 * way Linux prints product_uuid, the per-vCPU and memory structures; and
 * Debian's dmidecode decoding a --dump-bin style image of what we build.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../internal.h"
#include "base/endian.h"
#include "base/test.h"

#define GPA HK_SMBIOS_GPA

/* "12345678-9abc-def0-1122-334455667788" in RFC 4122 byte order. */
static const uint8_t test_uuid[16] = { 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc,
				       0xde, 0xf0, 0x11, 0x22, 0x33, 0x44,
				       0x55, 0x66, 0x77, 0x88 };
#define TEST_UUID_STR "12345678-9abc-def0-1122-334455667788"

struct structure {
	uint8_t type, length;
	uint16_t handle;
	const uint8_t *p; /* formatted part */
	const char *strings; /* first string (NUL-terminated list) */
	size_t total; /* formatted part, strings and the final NUL */
};

struct walked {
	struct structure s[256];
	unsigned n;
	size_t max_size;
};

static ssize_t build(uint8_t *buf, size_t len, uint64_t gpa, unsigned cpus,
		     uint64_t mem)
{
	struct hk_smbios_info si = { .cpus = cpus };

	hk_mem_split(mem, &si.mem_low, &si.mem_high);
	memcpy(si.uuid, test_uuid, 16);
	return hk_smbios_build(buf, len, gpa, &si);
}

/* The entry point as Linux's dmi_present() checks it; returns the table
 * (offset into buf) and fills its length and count. */
static size_t check_entry(const uint8_t *buf, size_t len, uint64_t gpa,
			  uint16_t *tlen, uint16_t *count, uint16_t *max)
{
	uint32_t addr;

	ASSERT_EQ_U64(gpa % 16, 0); /* Linux scans 16-byte boundaries */
	ASSERT_EQ_MEM(buf, "_SM_", 4);
	ASSERT_TRUE(buf[5] >= 30 && buf[5] <= 32);
	ASSERT_EQ_U64(hk_checksum(buf, buf[5]), 0);
	ASSERT_EQ_U64(load_be16(buf + 6), 0x0208); /* 2.8: UUID order */
	ASSERT_EQ_MEM(buf + 16, "_DMI_", 5);
	ASSERT_EQ_U64(hk_checksum(buf + 16, 15), 0);
	ASSERT_EQ_U64(buf[30], 0x28);
	*max = load_le16(buf + 8);
	*tlen = load_le16(buf + 22);
	addr = load_le32(buf + 24);
	*count = load_le16(buf + 28);
	ASSERT_GE_U64(addr, gpa + 31); /* after the entry point */
	ASSERT_LE_U64(addr - gpa + *tlen, len);
	return addr - gpa;
}

/* Walk count structures in [t, t + tlen) as dmi_decode_table does. */
static void walk(const uint8_t *t, size_t tlen, uint16_t count,
		 struct walked *w)
{
	size_t off = 0;

	memset(w, 0, sizeof(*w));
	while (w->n < count) {
		struct structure *s = &w->s[w->n];
		size_t i;

		ASSERT_LT_U64(w->n, 256);
		ASSERT_LE_U64(off + 4, tlen);
		s->type = t[off];
		s->length = t[off + 1];
		s->handle = load_le16(t + off + 2);
		ASSERT_GE_U64(s->length, 4);
		ASSERT_LE_U64(off + s->length + 2, tlen);
		s->p = t + off;
		s->strings = (const char *)t + off + s->length;
		/* The string set ends with two NULs in a row. */
		i = off + s->length;
		while (i + 1 < tlen && (t[i] || t[i + 1]))
			i++;
		ASSERT_LT_U64(i + 1, tlen);
		s->total = i + 2 - off;
		if (s->total > w->max_size)
			w->max_size = s->total;
		off += s->total;
		w->n++;
		if (s->type == 127)
			break;
	}
	ASSERT_EQ_U64(w->n, count);
	ASSERT_EQ_U64(off, tlen); /* nothing after the last structure */
	ASSERT_EQ_U64(w->s[w->n - 1].type, 127);
}

/* String number idx of s (1-based), as dmi_string_nosave finds it; NULL
 * for 0 or a number past the set. */
static const char *string_of(const struct structure *s, uint8_t idx)
{
	const char *p = s->strings;

	if (idx == 0)
		return NULL;
	while (--idx) {
		if (!*p)
			return NULL;
		p += strlen(p) + 1;
	}
	return *p ? p : NULL;
}

static const struct structure *find(const struct walked *w, uint8_t type,
				    unsigned nth)
{
	for (unsigned i = 0; i < w->n; i++)
		if (w->s[i].type == type && nth-- == 0)
			return &w->s[i];
	return NULL;
}

static unsigned count_type(const struct walked *w, uint8_t type)
{
	unsigned n = 0;

	for (unsigned i = 0; i < w->n; i++)
		n += w->s[i].type == type;
	return n;
}

/* Build at GPA and walk; buf has HK_SMBIOS_MAX bytes. */
static void build_walk(uint8_t *buf, unsigned cpus, uint64_t mem,
		       struct walked *w)
{
	uint16_t tlen, count, max;
	ssize_t n = build(buf, HK_SMBIOS_MAX, GPA, cpus, mem);
	size_t t;

	ASSERT_GT_INT(n, 0);
	t = check_entry(buf, (size_t)n, GPA, &tlen, &count, &max);
	ASSERT_EQ_U64(t + tlen, (uint64_t)n);
	walk(buf + t, tlen, count, w);
	ASSERT_EQ_U64(max, w->max_size);
}

TEST(entry_point_is_where_and_what_linux_looks_for)
{
	static uint8_t buf[HK_SMBIOS_MAX];
	struct walked w;

	/* The region is in the BIOS area Linux scans, clear of the MP
	 * table, and reserved in e820. */
	ASSERT_GE_U64(HK_SMBIOS_GPA, HK_MPTABLE_GPA + HK_MPTABLE_MAX);
	ASSERT_LE_U64(HK_SMBIOS_GPA + HK_SMBIOS_MAX, 0x100000);
	ASSERT_GE_U64(HK_SMBIOS_GPA, 0xf0000);
	build_walk(buf, 1, 256 * HK_MIB, &w);
}

TEST(structures_walk_with_unique_handles)
{
	static uint8_t buf[HK_SMBIOS_MAX];
	struct walked w;

	build_walk(buf, 2, 512 * HK_MIB, &w);
	for (unsigned i = 0; i < w.n; i++)
		for (unsigned j = i + 1; j < w.n; j++)
			ASSERT_NE_U64(w.s[i].handle, w.s[j].handle);
	ASSERT_EQ_U64(count_type(&w, 0), 1);
	ASSERT_EQ_U64(count_type(&w, 1), 1);
	ASSERT_EQ_U64(count_type(&w, 3), 1);
	ASSERT_EQ_U64(count_type(&w, 4), 2);
	ASSERT_EQ_U64(count_type(&w, 16), 1);
	ASSERT_EQ_U64(count_type(&w, 127), 1);
	/* Lengths of the versions we claim (2.8). */
	ASSERT_EQ_U64(find(&w, 0, 0)->length, 0x18);
	ASSERT_EQ_U64(find(&w, 1, 0)->length, 0x1b);
	ASSERT_EQ_U64(find(&w, 4, 0)->length, 0x2a);
	ASSERT_EQ_U64(find(&w, 17, 0)->length, 0x28);
}

TEST(strings_are_found_by_number)
{
	static uint8_t buf[HK_SMBIOS_MAX];
	const struct structure *s;
	struct walked w;

	build_walk(buf, 2, 256 * HK_MIB, &w);
	s = find(&w, 0, 0);
	ASSERT_EQ_STR(string_of(s, s->p[4]), "unikit");
	ASSERT_NOT_NULL(string_of(s, s->p[5]));
	ASSERT_EQ_STR(string_of(s, s->p[8]), "01/01/2025");
	ASSERT_EQ_U64(load_le64(s->p + 10), 1u << 3); /* not supported */
	s = find(&w, 1, 0);
	ASSERT_EQ_STR(string_of(s, s->p[4]), "unikit"); /* sys_vendor */
	ASSERT_EQ_STR(string_of(s, s->p[5]), "hyperkit"); /* product_name */
	ASSERT_EQ_STR(string_of(s, s->p[6]), "1.0");
	ASSERT_EQ_STR(string_of(s, s->p[0x1a]), "Virtual Machine");
	ASSERT_NULL(string_of(s, s->p[0x19])); /* no SKU: string 0 */
	ASSERT_NULL(string_of(s, 9)); /* past the set */
	s = find(&w, 3, 0);
	ASSERT_EQ_STR(string_of(s, s->p[4]), "unikit");
	s = find(&w, 4, 1);
	ASSERT_EQ_STR(string_of(s, s->p[4]), "CPU 1");
	/* A structure without strings ends with two NULs. */
	s = find(&w, 127, 0);
	ASSERT_EQ_U64(s->total, 6);
}

/* The UUID as Linux's dmi_save_uuid prints it for SMBIOS >= 2.6 (%pUl:
 * the first three fields little-endian). */
static void linux_uuid(const uint8_t *d, char out[37])
{
	snprintf(out, 37, "%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 load_le32(d), load_le16(d + 4), load_le16(d + 6), d[8], d[9],
		 d[10], d[11], d[12], d[13], d[14], d[15]);
}

TEST(uuid_is_in_smbios_byte_order)
{
	static uint8_t buf[HK_SMBIOS_MAX];
	static const uint8_t want[16] = { 0x78, 0x56, 0x34, 0x12, 0xbc, 0x9a,
					  0xf0, 0xde, 0x11, 0x22, 0x33, 0x44,
					  0x55, 0x66, 0x77, 0x88 };
	const struct structure *s;
	struct walked w;
	char str[37];

	build_walk(buf, 1, 256 * HK_MIB, &w);
	s = find(&w, 1, 0);
	ASSERT_EQ_MEM(s->p + 8, want, 16);
	linux_uuid(s->p + 8, str);
	ASSERT_EQ_STR(str, TEST_UUID_STR);
}

TEST(default_uuid_is_stable_and_well_formed)
{
	uint8_t a[16], b[16], zero[16] = { 0 };

	hk_smbios_default_uuid(a);
	hk_smbios_default_uuid(b);
	ASSERT_EQ_MEM(a, b, 16);
	ASSERT_TRUE(memcmp(a, zero, 16) != 0); /* Linux ignores all-zero */
	ASSERT_EQ_U64(a[6] >> 4, 8); /* version 8 */
	ASSERT_EQ_U64(a[8] >> 6, 2); /* RFC 4122 variant */
}

TEST(cpus_and_memory_are_described)
{
	static uint8_t buf[HK_SMBIOS_MAX];
	const struct structure *s;
	struct walked w;
	uint64_t mem = 3 * HK_GIB + 64 * HK_MIB;

	build_walk(buf, HK_MAX_CPUS, mem, &w);
	ASSERT_EQ_U64(count_type(&w, 4), HK_MAX_CPUS);
	ASSERT_EQ_U64(count_type(&w, 17), 2);
	ASSERT_EQ_U64(count_type(&w, 19), 2);
	s = find(&w, 16, 0);
	ASSERT_EQ_U64(load_le32(s->p + 7), mem >> 10); /* KiB */
	ASSERT_EQ_U64(load_le16(s->p + 13), 2);
	/* Devices: sizes in MiB, linked to the array's handle. */
	ASSERT_EQ_U64(load_le16(find(&w, 17, 0)->p + 12), 3072);
	ASSERT_EQ_U64(load_le16(find(&w, 17, 1)->p + 12), 64);
	ASSERT_EQ_U64(load_le16(find(&w, 17, 0)->p + 4), s->handle);
	/* Mapped ranges in KiB, the end inclusive. */
	ASSERT_EQ_U64(load_le32(find(&w, 19, 0)->p + 4), 0);
	ASSERT_EQ_U64(load_le32(find(&w, 19, 0)->p + 8),
		      (3 * HK_GIB >> 10) - 1);
	ASSERT_EQ_U64(load_le32(find(&w, 19, 1)->p + 4), 4 * HK_GIB >> 10);
	ASSERT_EQ_U64(load_le32(find(&w, 19, 1)->p + 8),
		      ((4 * HK_GIB + 64 * HK_MIB) >> 10) - 1);
	/* 64 vCPUs and 1 TiB still fit the region. */
	ASSERT_GT_INT(build(buf, HK_SMBIOS_MAX, GPA, HK_MAX_CPUS, 1ull << 40),
		      0);
}

TEST(small_buffers_are_refused_without_overrun)
{
	static uint8_t buf[HK_SMBIOS_MAX + 64];
	ssize_t full = build(buf, HK_SMBIOS_MAX, GPA, 4, 256 * HK_MIB);
	size_t len;

	ASSERT_GT_INT(full, 0);
	for (len = 0; len < (size_t)full; len++) {
		memset(buf, 0xa5, sizeof(buf));
		ASSERT_EQ_INT(build(buf, len, GPA, 4, 256 * HK_MIB), -ENOSPC);
		for (size_t i = len; i < sizeof(buf); i++)
			ASSERT_EQ_U64(buf[i], 0xa5);
	}
	ASSERT_EQ_INT(build(buf, (size_t)full, GPA, 4, 256 * HK_MIB), full);
	/* A table above 4 GiB cannot be named by a 2.x entry point. */
	ASSERT_EQ_INT(build(buf, HK_SMBIOS_MAX, 0xfffffff0ull, 1, 64 * HK_MIB),
		      -ENOSPC);
	ASSERT_EQ_INT(build(buf, HK_SMBIOS_MAX, GPA, 0, 64 * HK_MIB), -ENOSPC);
}

static const char *find_dmidecode(void)
{
	static const char *const paths[] = { "/usr/sbin/dmidecode",
					     "/sbin/dmidecode",
					     "/usr/bin/dmidecode" };

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		if (access(paths[i], X_OK) == 0)
			return paths[i];
	return NULL;
}

TEST(dmidecode_reads_the_tables)
{
	static uint8_t buf[HK_SMBIOS_MAX];
	const char *dmidecode = find_dmidecode();
	char path[512], cmd[1200], line[512];
	char *out = NULL;
	size_t out_len = 0, used = 0;
	ssize_t n;
	FILE *f;
	int status;

	if (!dmidecode)
		TEST_SKIP("dmidecode is not installed (Debian package "
			  "dmidecode)");
	/* dmidecode's dump: the entry point at 0, the table at 0x20 (so
	 * the table address the entry point names is 0x20: build at 0). */
	n = build(buf, sizeof(buf), 0, 2, 3 * HK_GIB + 64 * HK_MIB);
	ASSERT_GT_INT(n, 0);
	ASSERT_EQ_U64(load_le32(buf + 24), 0x20);
	snprintf(path, sizeof(path), "%s/smbios.bin", test_tmpdir());
	f = fopen(path, "wb");
	ASSERT_NOT_NULL(f);
	ASSERT_EQ_U64(fwrite(buf, 1, (size_t)n, f), (uint64_t)n);
	ASSERT_EQ_INT(fclose(f), 0);
	snprintf(cmd, sizeof(cmd), "%s --from-dump %s 2>&1", dmidecode, path);
	f = popen(cmd, "r");
	ASSERT_NOT_NULL(f);
	while (fgets(line, sizeof(line), f)) {
		size_t l = strlen(line);

		if (used + l + 1 > out_len) {
			char *bigger = realloc(out, (used + l + 1) * 2);

			ASSERT_NOT_NULL(bigger);
			out = bigger;
			out_len = (used + l + 1) * 2;
		}
		memcpy(out + used, line, l + 1);
		used += l;
	}
	status = pclose(f);
	ASSERT_NOT_NULL(out);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
	    !strstr(out, "SMBIOS 2.8 present.") ||
	    !strcasestr(out, "\tUUID: " TEST_UUID_STR "\n") ||
	    !strstr(out, "\tManufacturer: unikit\n") ||
	    !strstr(out, "\tProduct Name: hyperkit\n") ||
	    !strstr(out, "\tSocket Designation: CPU 1\n") ||
	    !strstr(out, "\tSize: 3 GB\n") || !strstr(out, "\tSize: 64 MB\n") ||
	    !strstr(out, "\tRange Size: 64 MB\n") ||
	    !strstr(out, "End Of Table") || strstr(out, "nvalid") ||
	    strstr(out, "rong") || strstr(out, "runcated")) {
		test_note("dmidecode said:\n%s", out);
		ASSERT_TRUE(!"dmidecode's output lacks what we wrote");
	}
	free(out);
}

static const struct test_case tests[] = {
	TEST_CASE(entry_point_is_where_and_what_linux_looks_for),
	TEST_CASE(structures_walk_with_unique_handles),
	TEST_CASE(strings_are_found_by_number),
	TEST_CASE(uuid_is_in_smbios_byte_order),
	TEST_CASE(default_uuid_is_stable_and_well_formed),
	TEST_CASE(cpus_and_memory_are_described),
	TEST_CASE(small_buffers_are_refused_without_overrun),
	TEST_CASE(dmidecode_reads_the_tables),
};

TEST_MAIN(tests);
