// SPDX-License-Identifier: MIT
/*
 * The Linux boot protocol loader (boot.c) against crafted bzImage
 * headers: what it accepts and refuses, where it puts the kernel and the
 * initrd, the zero page and its e820 map (never RAM in the MMIO hole,
 * memory beyond 3 GiB at 4 GiB), and the command line's bounds.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../internal.h"
#include "base/endian.h"
#include "base/test.h"

#define IMG_LEN (64 * 1024)
#define SETUP_SECTS 3

/* A well-formed header for a 64-bit relocatable kernel of protocol
 * 2.15; tests then break one field at a time. */
static uint8_t *make_image(void)
{
	uint8_t *img = calloc(1, IMG_LEN);
	size_t setup = (SETUP_SECTS + 1) * 512, i;

	ASSERT_TRUE(img != NULL);
	img[0x1f1] = SETUP_SECTS;
	store_le32(img + 0x1f4, (uint32_t)((IMG_LEN - setup) / 16));
	store_le16(img + 0x1fe, 0xaa55);
	img[0x200] = 0xeb;
	img[0x201] = 0x6a; /* header ends at 0x26c */
	memcpy(img + 0x202, "HdrS", 4);
	store_le16(img + 0x206, 0x020f);
	img[0x211] = 0x01; /* LOADED_HIGH */
	store_le32(img + 0x22c, 0x7fffffff);
	store_le32(img + 0x230, 0x200000);
	img[0x234] = 1;
	store_le16(img + 0x236, 0x0001); /* XLF_KERNEL_64 */
	store_le32(img + 0x238, 2047);
	store_le64(img + 0x258, 0x1000000);
	store_le32(img + 0x260, 0x400000);
	for (i = setup; i < IMG_LEN; i++)
		img[i] = (uint8_t)(i * 7);
	return img;
}

static int parse(const uint8_t *img, size_t len, struct hk_setup *s)
{
	return hk_boot_parse(img, len, s, NULL);
}

TEST(parse_accepts_a_64bit_kernel)
{
	uint8_t *img = make_image();
	struct hk_setup s;

	ASSERT_OK(parse(img, IMG_LEN, &s));
	ASSERT_TRUE(s.entry64);
	ASSERT_EQ_U64(s.setup_bytes, 2048);
	ASSERT_EQ_U64(s.payload_bytes, IMG_LEN - 2048);
	ASSERT_EQ_U64(s.header_end, 0x26c);
	ASSERT_EQ_U64(s.cmdline_size, 2047);
	free(img);
}

TEST(parse_reads_zero_setup_sects_as_four)
{
	uint8_t *img = make_image();
	struct hk_setup s;

	img[0x1f1] = 0;
	store_le32(img + 0x1f4, (IMG_LEN - 5 * 512) / 16);
	ASSERT_OK(parse(img, IMG_LEN, &s));
	ASSERT_EQ_U64(s.setup_bytes, 5 * 512);
	free(img);
}

TEST(parse_uses_32bit_entry_without_xlf_kernel_64)
{
	uint8_t *img = make_image();
	struct hk_setup s;

	store_le16(img + 0x236, 0);
	ASSERT_OK(parse(img, IMG_LEN, &s));
	ASSERT_FALSE(s.entry64);
	/* Protocol 2.11 has no xloadflags: 32-bit even with the bit. */
	store_le16(img + 0x236, 1);
	store_le16(img + 0x206, 0x020b);
	ASSERT_OK(parse(img, IMG_LEN, &s));
	ASSERT_FALSE(s.entry64);
	free(img);
}

/* Each broken field on its own is refused. */
TEST(parse_refuses_bad_headers)
{
	struct {
		const char *what;
		size_t off;
		unsigned width;
		uint64_t val;
	} cases[] = {
		{ "boot flag", 0x1fe, 2, 0xaa56 },
		{ "HdrS magic", 0x202, 4, 0x53726449 },
		{ "protocol 2.09", 0x206, 2, 0x0209 },
		{ "not loaded high", 0x211, 1, 0 },
		{ "setup beyond the file", 0x1f1, 1, 200 },
		{ "syssize zero", 0x1f4, 4, 0 },
		{ "syssize beyond the file", 0x1f4, 4, (IMG_LEN - 2048) / 16 + 2 },
		{ "init_size below the kernel", 0x260, 4, 0x1000 },
		{ "alignment not a power of two", 0x230, 4, 0x300000 },
		{ "alignment zero", 0x230, 4, 0 },
	};
	struct hk_setup s;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t *img = make_image();
		uint8_t *p = img + cases[i].off;

		if (cases[i].width == 1)
			*p = (uint8_t)cases[i].val;
		else if (cases[i].width == 2)
			store_le16(p, (uint16_t)cases[i].val);
		else
			store_le32(p, (uint32_t)cases[i].val);
		test_note("case: %s", cases[i].what);
		ASSERT_EQ_INT(parse(img, IMG_LEN, &s), -ENOEXEC);
		free(img);
	}
}

TEST(parse_refuses_short_files)
{
	uint8_t *img = make_image();
	struct hk_setup s;

	ASSERT_EQ_INT(parse(img, 0x200, &s), -ENOEXEC);
	ASSERT_EQ_INT(parse(img, 0, &s), -ENOEXEC);
	/* Cut inside the payload: syssize now claims too much. */
	ASSERT_EQ_INT(parse(img, IMG_LEN - 64, &s), -ENOEXEC);
	free(img);
}

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b,
			   uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

static void check_e820(uint64_t size)
{
	struct hk_e820 e[HK_E820_MAX];
	uint64_t low, high, ram = 0;
	unsigned n, i;
	bool high_seen = false;

	hk_mem_split(size, &low, &high);
	ASSERT_LE_U64(low, HK_LOW_MEM_MAX);
	ASSERT_EQ_U64(low + high, size);
	n = hk_e820_build(e, low, high);
	ASSERT_LE_U64(n, HK_E820_MAX);
	for (i = 0; i < n; i++) {
		if (i)
			ASSERT_GE_U64(e[i].addr, e[i - 1].addr + e[i - 1].size);
		if (e[i].type != HK_E820_RAM)
			continue;
		ram += e[i].size;
		/* Never RAM in the hole, nor in the VGA/ROM/BIOS area. */
		ASSERT_FALSE(ranges_overlap(e[i].addr, e[i].size,
					    HK_LOW_MEM_MAX,
					    HK_HIGH_MEM_BASE - HK_LOW_MEM_MAX));
		ASSERT_FALSE(ranges_overlap(e[i].addr, e[i].size, 0x9fc00,
					    0x100000 - 0x9fc00));
		if (e[i].addr >= HK_HIGH_MEM_BASE) {
			ASSERT_EQ_U64(e[i].addr, HK_HIGH_MEM_BASE);
			ASSERT_EQ_U64(e[i].size, high);
			high_seen = true;
		}
	}
	ASSERT_EQ_U64(ram, size - (0x100000 - 0x9fc00));
	ASSERT_TRUE(high_seen == (high != 0));
}

TEST(e820_never_reports_the_hole_as_ram)
{
	check_e820(32 * HK_MIB);
	check_e820(256 * HK_MIB);
	check_e820(3 * HK_GIB);
	check_e820(3 * HK_GIB + 2 * HK_MIB);
	check_e820(16 * HK_GIB);
}

TEST(gpa_translation_is_checked)
{
	struct hk_mem m;
	uint64_t size = 3 * HK_GIB + 64 * HK_MIB;
	uint8_t *host;

	host = mmap(NULL, size, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	ASSERT_TRUE(host != MAP_FAILED);
	m.host = host;
	hk_mem_split(size, &m.low, &m.high);
	ASSERT_EQ_U64(m.high, 64 * HK_MIB);
	ASSERT_TRUE(hk_mem_gpa(&m, 0, 16) == host);
	ASSERT_TRUE(hk_mem_gpa(&m, m.low - 16, 16) == host + m.low - 16);
	ASSERT_TRUE(hk_mem_gpa(&m, m.low - 16, 17) == NULL);
	ASSERT_TRUE(hk_mem_gpa(&m, HK_LOW_MEM_MAX + 4096, 1) == NULL);
	ASSERT_TRUE(hk_mem_gpa(&m, HK_IOAPIC_GPA, 4) == NULL);
	ASSERT_TRUE(hk_mem_gpa(&m, HK_HIGH_MEM_BASE, 8) == host + m.low);
	ASSERT_TRUE(hk_mem_gpa(&m, HK_HIGH_MEM_BASE + m.high - 8, 8) ==
		    host + size - 8);
	ASSERT_TRUE(hk_mem_gpa(&m, HK_HIGH_MEM_BASE + m.high - 8, 9) == NULL);
	ASSERT_TRUE(hk_mem_gpa(&m, UINT64_MAX - 4, 16) == NULL);
	ASSERT_TRUE(hk_mem_gpa(&m, HK_HIGH_MEM_BASE - 8, 16) == NULL);
	munmap(host, size);
}

static struct hk_mem fake_mem(uint64_t low)
{
	/* Placement only does arithmetic: no memory behind it. */
	return (struct hk_mem){ NULL, low, 0 };
}

TEST(plan_places_kernel_and_initrd)
{
	uint8_t *img = make_image();
	struct hk_setup s;
	struct hk_boot_plan p;
	struct hk_mem m = fake_mem(2 * HK_GIB);

	store_le32(img + 0x22c, 0x37ffffff); /* initrd_addr_max */
	ASSERT_OK(parse(img, IMG_LEN, &s));
	ASSERT_OK(hk_boot_plan(&s, &m, 1000000, &p, NULL));
	ASSERT_EQ_U64(p.kernel_gpa, 0x200000); /* 1 MiB aligned up to 2 */
	ASSERT_EQ_U64(p.kernel_end, 0x200000 + 0x400000);
	ASSERT_EQ_U64(p.entry, 0x200200);
	ASSERT_EQ_U64(p.initrd_gpa % 4096, 0);
	ASSERT_LE_U64(p.initrd_gpa + p.initrd_size, 0x38000000);
	ASSERT_GT_U64(p.initrd_gpa + p.initrd_size, 0x38000000 - 4096);
	ASSERT_GE_U64(p.initrd_gpa, p.kernel_end);

	/* Below initrd_addr_max only if memory reaches it. */
	m = fake_mem(256 * HK_MIB);
	ASSERT_OK(hk_boot_plan(&s, &m, 1000000, &p, NULL));
	ASSERT_LE_U64(p.initrd_gpa + p.initrd_size, 256 * HK_MIB);
	ASSERT_GT_U64(p.initrd_gpa + p.initrd_size, 256 * HK_MIB - 4096);

	/* No initrd, no placement. */
	ASSERT_OK(hk_boot_plan(&s, &m, 0, &p, NULL));
	ASSERT_EQ_U64(p.initrd_gpa, 0);
	free(img);
}

TEST(plan_refuses_what_does_not_fit)
{
	uint8_t *img = make_image();
	struct hk_setup s;
	struct hk_boot_plan p;
	struct hk_mem m = fake_mem(32 * HK_MIB);

	ASSERT_OK(parse(img, IMG_LEN, &s));
	/* The initrd would overlap the kernel's init_size. */
	ASSERT_EQ_INT(hk_boot_plan(&s, &m, 30 * HK_MIB, &p, NULL), -ENOMEM);
	ASSERT_EQ_INT(hk_boot_plan(&s, &m, 64 * HK_MIB, &p, NULL), -ENOMEM);
	ASSERT_OK(hk_boot_plan(&s, &m, 20 * HK_MIB, &p, NULL));
	/* A kernel whose init_size passes the end of low memory. */
	store_le32(img + 0x260, 40 * 1024 * 1024);
	ASSERT_OK(parse(img, IMG_LEN, &s));
	ASSERT_EQ_INT(hk_boot_plan(&s, &m, 0, &p, NULL), -ENOMEM);
	/* A non-relocatable kernel goes to its preferred address. */
	store_le32(img + 0x260, 0x400000);
	img[0x234] = 0;
	ASSERT_OK(parse(img, IMG_LEN, &s));
	ASSERT_OK(hk_boot_plan(&s, &m, 0, &p, NULL));
	ASSERT_EQ_U64(p.kernel_gpa, 0x1000000);
	free(img);
}

TEST(zero_page_fields)
{
	uint8_t *img = make_image(), zp[4096];
	struct hk_setup s;
	struct hk_boot_plan p;
	struct hk_mem m = fake_mem(256 * HK_MIB);
	unsigned i, n;

	ASSERT_OK(parse(img, IMG_LEN, &s));
	ASSERT_OK(hk_boot_plan(&s, &m, 123456, &p, NULL));
	memset(zp, 0xee, sizeof(zp));
	ASSERT_OK(hk_boot_zero_page(zp, img, &s, &p, &m, 10, 0xe0000, NULL));
	ASSERT_EQ_MEM(zp + 0x202, "HdrS", 4);
	ASSERT_EQ_U64(load_le16(zp + 0x1fe), 0xaa55);
	ASSERT_EQ_U64(zp[0x210], 0xff); /* type_of_loader */
	ASSERT_EQ_U64(load_le16(zp + 0x1fa), 0xffff); /* vid_mode */
	ASSERT_EQ_U64(load_le32(zp + 0x228), HK_CMDLINE_GPA);
	ASSERT_EQ_U64(load_le32(zp + 0x218), p.initrd_gpa);
	ASSERT_EQ_U64(load_le32(zp + 0x21c), 123456);
	ASSERT_EQ_U64(load_le64(zp + 0x070), 0xe0000);
	ASSERT_EQ_U64(zp[0x1ef], 0); /* sentinel */
	ASSERT_EQ_U64(zp[0x26c], 0); /* past the header: cleared */
	n = zp[0x1e8];
	ASSERT_GE_U64(n, 4);
	for (i = 0; i < n; i++) {
		const uint8_t *e = zp + 0x2d0 + 20 * i;
		uint64_t a = load_le64(e), len = load_le64(e + 8);

		if (load_le32(e + 16) == HK_E820_RAM)
			ASSERT_LE_U64(a + len, 256 * HK_MIB);
	}
	free(img);
}

TEST(cmdline_bounds)
{
	uint8_t *img = make_image(), zp[4096];
	struct hk_setup s;
	struct hk_boot_plan p;
	struct hk_mem m = fake_mem(256 * HK_MIB);

	ASSERT_OK(parse(img, IMG_LEN, &s));
	ASSERT_OK(hk_boot_plan(&s, &m, 0, &p, NULL));
	ASSERT_OK(hk_boot_zero_page(zp, img, &s, &p, &m, 2047, 0, NULL));
	ASSERT_EQ_INT(hk_boot_zero_page(zp, img, &s, &p, &m, 2048, 0, NULL),
		      -E2BIG);
	/* Before protocol 2.06 the limit is 255 bytes. */
	store_le16(img + 0x206, 0x0205);
	s.version = 0x205;
	ASSERT_OK(hk_boot_zero_page(zp, img, &s, &p, &m, 255, 0, NULL));
	ASSERT_EQ_INT(hk_boot_zero_page(zp, img, &s, &p, &m, 256, 0, NULL),
		      -E2BIG);
	/* A huge cmdline_size is capped by the room we have. */
	s.version = 0x20f;
	s.cmdline_size = 0xffffffff;
	ASSERT_EQ_INT(hk_boot_zero_page(zp, img, &s, &p, &m, HK_CMDLINE_MAX, 0,
					NULL),
		      -E2BIG);
	free(img);
}

static void write_file(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	ASSERT_TRUE(fd >= 0);
	ASSERT_EQ_INT(write(fd, buf, len), (intmax_t)len);
	close(fd);
}

TEST(load_writes_guest_memory)
{
	uint8_t *img = make_image(), initrd[5000], *zp, *pt;
	char kpath[512], ipath[512];
	struct hk_mem m;
	struct hk_boot_plan p;
	const char *cmd = "console=ttyS0 quiet";

	memset(initrd, 0x5a, sizeof(initrd));
	snprintf(kpath, sizeof(kpath), "%s/bzImage", test_tmpdir());
	snprintf(ipath, sizeof(ipath), "%s/initrd", test_tmpdir());
	write_file(kpath, img, IMG_LEN);
	write_file(ipath, initrd, sizeof(initrd));
	m.low = 64 * HK_MIB;
	m.high = 0;
	m.host = mmap(NULL, m.low, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(m.host != MAP_FAILED);
	ASSERT_OK(hk_boot_load(&m, kpath, ipath, cmd, 0, HK_UNPACK_GUEST, NULL, &p, NULL));
	ASSERT_TRUE(p.entry64);
	ASSERT_EQ_MEM(m.host + p.kernel_gpa, img + 2048, IMG_LEN - 2048);
	ASSERT_EQ_MEM(m.host + p.initrd_gpa, initrd, sizeof(initrd));
	ASSERT_EQ_MEM(m.host + HK_CMDLINE_GPA, cmd, strlen(cmd) + 1);
	zp = m.host + HK_ZERO_PAGE_GPA;
	ASSERT_EQ_MEM(zp + 0x202, "HdrS", 4);
	ASSERT_EQ_U64(load_le32(zp + 0x21c), sizeof(initrd));
	/* Long-mode page tables: PML4 -> PDPT -> 4 PDs of 2 MiB pages. */
	pt = m.host + HK_PML4_GPA;
	ASSERT_EQ_U64(load_le64(pt), (HK_PML4_GPA + 0x1000) | 3);
	ASSERT_EQ_U64(load_le64(pt + 0x1000 + 8 * 3),
		      (HK_PML4_GPA + 0x5000) | 3);
	ASSERT_EQ_U64(load_le64(pt + 0x2000 + 8 * 5), (5ull << 21) | 0x83);
	ASSERT_EQ_U64(load_le64(m.host + HK_GDT_GPA + 0x10),
		      0x00af9b000000ffffull);

	/* A kernel that is not a bzImage, a missing initrd. */
	ASSERT_EQ_INT(hk_boot_load(&m, ipath, NULL, NULL, 0, HK_UNPACK_GUEST, NULL, &p, NULL),
		      -ENOEXEC);
	strcat(ipath, ".missing");
	ASSERT_EQ_INT(hk_boot_load(&m, kpath, ipath, NULL, 0, HK_UNPACK_GUEST, NULL, &p, NULL),
		      -ENOENT);
	munmap(m.host, m.low);
	free(img);
}

static const struct test_case tests[] = {
	TEST_CASE(parse_accepts_a_64bit_kernel),
	TEST_CASE(parse_reads_zero_setup_sects_as_four),
	TEST_CASE(parse_uses_32bit_entry_without_xlf_kernel_64),
	TEST_CASE(parse_refuses_bad_headers),
	TEST_CASE(parse_refuses_short_files),
	TEST_CASE(e820_never_reports_the_hole_as_ram),
	TEST_CASE(gpa_translation_is_checked),
	TEST_CASE(plan_places_kernel_and_initrd),
	TEST_CASE(plan_refuses_what_does_not_fit),
	TEST_CASE(zero_page_fields),
	TEST_CASE(cmdline_bounds),
	TEST_CASE(load_writes_guest_memory),
};

TEST_MAIN(tests);
