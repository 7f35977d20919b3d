// SPDX-License-Identifier: MIT
/*
 * The unpacked-kernel path (vmlinux.c, and boot.c's use of it): an ELF
 * "kernel" we build, compressed by the real xz, zlib and zstd libraries
 * the way the kernel's build does (the uncompressed size appended), inside
 * a crafted bzImage. Checked: each format unpacks to the same bytes; the
 * cache is written, read back instead of unpacking, and refused when it is
 * short; a read-only cache directory leaves the kernel to the guest; the
 * ELF loader puts segments at their physical addresses, zeroes the rest
 * of each, and refuses segments outside low RAM or the file; a boot enters
 * at the ELF entry, or at +0x200 when the guest is to decompress.
 */
#include <errno.h>
#include <fcntl.h>
#include <lzma.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "../internal.h"
#include "base/endian.h"
#include "base/test.h"

#define SETUP_BYTES 2048u
#define SEG0_PADDR 0x1000000ull
#define SEG1_PADDR 0x1400000ull
#define SEG0_FILE 0x3000u
#define SEG1_FILE 0x1000u
#define SEG1_MEM 0x5000u /* the rest is "bss" */
#define ELF_LEN (0x1000u + SEG0_FILE + SEG1_FILE)

/* An ELF64 x86-64 executable: two PT_LOAD segments and a NOTE. */
static uint8_t *make_elf(void)
{
	uint8_t *e = calloc(1, ELF_LEN), *ph;
	size_t i;

	ASSERT_NOT_NULL(e);
	memcpy(e, "\177ELF", 4);
	e[4] = 2;
	e[5] = 1;
	e[6] = 1;
	store_le16(e + 16, 2); /* ET_EXEC */
	store_le16(e + 18, 62);
	store_le32(e + 20, 1);
	store_le64(e + 24, SEG0_PADDR + 0x40); /* entry inside segment 0 */
	store_le64(e + 32, 64);
	store_le16(e + 52, 64);
	store_le16(e + 54, 56);
	store_le16(e + 56, 3);
	ph = e + 64;
	store_le32(ph, 1);
	store_le64(ph + 8, 0x1000);
	store_le64(ph + 16, 0xffffffff81000000ull);
	store_le64(ph + 24, SEG0_PADDR);
	store_le64(ph + 32, SEG0_FILE);
	store_le64(ph + 40, SEG0_FILE);
	ph += 56;
	store_le32(ph, 1);
	store_le64(ph + 8, 0x1000 + SEG0_FILE);
	store_le64(ph + 24, SEG1_PADDR);
	store_le64(ph + 32, SEG1_FILE);
	store_le64(ph + 40, SEG1_MEM);
	ph += 56;
	store_le32(ph, 4); /* PT_NOTE: ignored */
	store_le64(ph + 8, 0x1000);
	store_le64(ph + 24, 0x10);
	store_le64(ph + 32, 16);
	store_le64(ph + 40, 16);
	for (i = 0x1000; i < ELF_LEN; i++)
		e[i] = (uint8_t)(i * 13 + (i >> 8));
	return e;
}

enum fmt { XZ, GZIP, ZSTD };

/* Compress the ELF as the kernel's build does, size appended. */
static size_t compress_elf(const uint8_t *elf, enum fmt f, uint8_t *out,
			   size_t cap)
{
	size_t n = 0;

	if (f == XZ) {
		lzma_filter filters[3];
		lzma_options_lzma opt;

		ASSERT_FALSE(lzma_lzma_preset(&opt, 6));
		filters[0].id = LZMA_FILTER_X86; /* as the kernel's xz BCJ */
		filters[0].options = NULL;
		filters[1].id = LZMA_FILTER_LZMA2;
		filters[1].options = &opt;
		filters[2].id = LZMA_VLI_UNKNOWN;
		ASSERT_EQ_INT(lzma_stream_buffer_encode(filters, LZMA_CHECK_CRC32,
							NULL, elf, ELF_LEN, out,
							&n, cap),
			      LZMA_OK);
	} else if (f == GZIP) {
		z_stream z = { 0 };

		ASSERT_EQ_INT(deflateInit2(&z, 9, Z_DEFLATED, 16 + MAX_WBITS, 8,
					   Z_DEFAULT_STRATEGY),
			      Z_OK);
		z.next_in = (uint8_t *)(uintptr_t)elf;
		z.avail_in = ELF_LEN;
		z.next_out = out;
		z.avail_out = (uInt)cap;
		ASSERT_EQ_INT(deflate(&z, Z_FINISH), Z_STREAM_END);
		n = cap - z.avail_out;
		deflateEnd(&z);
	} else {
		/* With a checksum, as the zstd tool writes by default. */
		ZSTD_CCtx *c = ZSTD_createCCtx();

		ASSERT_NOT_NULL(c);
		ASSERT_FALSE(ZSTD_isError(ZSTD_CCtx_setParameter(
			c, ZSTD_c_checksumFlag, 1)));
		n = ZSTD_compress2(c, out, cap, elf, ELF_LEN);
		ASSERT_FALSE(ZSTD_isError(n));
		ZSTD_freeCCtx(c);
	}
	ASSERT_LE_U64(n + 4, cap);
	store_le32(out + n, ELF_LEN);
	return n + 4;
}

/* A bzImage of protocol 2.15 whose payload is the compressed ELF. */
static uint8_t *make_bzimage(enum fmt f, size_t *len, struct hk_setup *s)
{
	uint8_t *img = calloc(1, SETUP_BYTES + ELF_LEN * 2), *elf = make_elf();
	size_t plen;

	ASSERT_NOT_NULL(img);
	plen = compress_elf(elf, f, img + SETUP_BYTES + 0x100,
			    ELF_LEN * 2 - 0x100);
	free(elf);
	*len = SETUP_BYTES + 0x100 + plen;
	img[0x1f1] = SETUP_BYTES / 512 - 1;
	store_le32(img + 0x1f4, (uint32_t)((*len - SETUP_BYTES + 15) / 16));
	store_le16(img + 0x1fe, 0xaa55);
	img[0x200] = 0xeb;
	img[0x201] = 0x6a;
	memcpy(img + 0x202, "HdrS", 4);
	store_le16(img + 0x206, 0x020f);
	img[0x211] = 0x01;
	store_le32(img + 0x22c, 0x7fffffff);
	store_le32(img + 0x230, 0x200000);
	img[0x234] = 1;
	store_le16(img + 0x236, 0x0001);
	store_le32(img + 0x238, 2047);
	store_le32(img + 0x248, 0x100); /* payload_offset */
	store_le32(img + 0x24c, (uint32_t)plen); /* payload_length */
	store_le64(img + 0x258, SEG0_PADDR);
	store_le32(img + 0x260, 0x800000);
	*len = SETUP_BYTES + ((*len - SETUP_BYTES + 15) & ~(size_t)15);
	ASSERT_OK(hk_boot_parse(img, *len, s, NULL));
	return img;
}

TEST(each_format_unpacks_to_the_elf)
{
	uint8_t *elf = make_elf();

	for (int f = XZ; f <= ZSTD; f++) {
		struct hk_setup s;
		size_t len, got_len;
		uint8_t *img = make_bzimage((enum fmt)f, &len, &s), *got;

		ASSERT_OK(hk_vmlinux_get(img, len, &s, NULL, false, &got,
					 &got_len, NULL));
		ASSERT_EQ_U64(got_len, ELF_LEN);
		ASSERT_EQ_MEM(got, elf, ELF_LEN);
		free(got);
		/* A broken stream is refused, never half-used. */
		img[SETUP_BYTES + 0x100 + 40] ^= 0xff;
		img[SETUP_BYTES + 0x100 + 41] ^= 0x55;
		ASSERT_TRUE(hk_vmlinux_get(img, len, &s, NULL, false, &got,
					   &got_len, NULL) < 0);
		free(img);
	}
	free(elf);
}

/* The one file in dir, or "" (and false). */
static bool cache_file(const char *dir, char *path, size_t n)
{
	char cmd[600];
	FILE *p;
	bool ok;

	snprintf(cmd, sizeof(cmd), "ls %s/vmlinux-* 2>/dev/null", dir);
	p = popen(cmd, "r");
	ASSERT_NOT_NULL(p);
	ok = fgets(path, (int)n, p) != NULL;
	pclose(p);
	if (ok)
		path[strcspn(path, "\n")] = '\0';
	return ok;
}

TEST(cache_is_written_read_and_checked)
{
	char dir[512], path[600];
	struct hk_setup s;
	size_t len, got_len;
	uint8_t *img = make_bzimage(XZ, &len, &s), *got, *elf = make_elf();
	uint8_t *other = malloc(ELF_LEN);
	int fd;

	snprintf(dir, sizeof(dir), "%s/cache/sub", test_tmpdir());
	ASSERT_OK(hk_vmlinux_get(img, len, &s, dir, true, &got, &got_len,
				 NULL));
	ASSERT_EQ_MEM(got, elf, ELF_LEN);
	free(got);
	ASSERT_TRUE(cache_file(dir, path, sizeof(path)));

	/* Read from the cache, not unpacked: replace the cached bytes. */
	memset(other, 0xa5, ELF_LEN);
	fd = open(path, O_WRONLY | O_TRUNC);
	ASSERT_TRUE(fd >= 0);
	ASSERT_EQ_INT(write(fd, other, ELF_LEN), ELF_LEN);
	close(fd);
	ASSERT_OK(hk_vmlinux_get(img, len, &s, dir, true, &got, &got_len,
				 NULL));
	ASSERT_EQ_MEM(got, other, ELF_LEN);
	free(got);

	/* A short cache file is not used, and is replaced. */
	ASSERT_OK(truncate(path, 100));
	ASSERT_OK(hk_vmlinux_get(img, len, &s, dir, true, &got, &got_len,
				 NULL));
	ASSERT_EQ_MEM(got, elf, ELF_LEN);
	free(got);
	{
		struct stat st;

		ASSERT_OK(stat(path, &st));
		ASSERT_EQ_U64(st.st_size, ELF_LEN);
	}
	free(other);
	free(elf);
	free(img);
}

TEST(unwritable_cache_leaves_it_to_the_guest)
{
	char dir[600], file[512];
	struct hk_setup s;
	size_t len, got_len;
	uint8_t *img = make_bzimage(ZSTD, &len, &s), *got = NULL;
	int fd;

	/* A "directory" below a regular file can never be made. */
	snprintf(file, sizeof(file), "%s/plain", test_tmpdir());
	fd = open(file, O_WRONLY | O_CREAT, 0600);
	ASSERT_TRUE(fd >= 0);
	close(fd);
	snprintf(dir, sizeof(dir), "%s/cache", file);
	ASSERT_EQ_INT(hk_vmlinux_get(img, len, &s, dir, true, &got, &got_len,
				     NULL),
		      -EROFS);
	/* Without the cache it unpacks in memory. */
	ASSERT_OK(hk_vmlinux_get(img, len, &s, dir, false, &got, &got_len,
				 NULL));
	free(got);
	free(img);
}

static struct hk_mem map_mem(uint64_t low)
{
	struct hk_mem m = { .low = low };

	m.host = mmap(NULL, low, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(m.host != MAP_FAILED);
	return m;
}

TEST(elf_segments_land_at_their_physical_addresses)
{
	struct hk_mem m = map_mem(64 * HK_MIB);
	uint8_t *elf = make_elf();
	uint64_t entry, lo, hi;

	memset(m.host + SEG1_PADDR, 0xee, SEG1_MEM);
	ASSERT_OK(hk_vmlinux_load(&m, elf, ELF_LEN, &entry, &lo, &hi, NULL));
	ASSERT_EQ_U64(entry, SEG0_PADDR + 0x40);
	ASSERT_EQ_U64(lo, SEG0_PADDR);
	ASSERT_EQ_U64(hi, SEG1_PADDR + SEG1_MEM);
	ASSERT_EQ_MEM(m.host + SEG0_PADDR, elf + 0x1000, SEG0_FILE);
	ASSERT_EQ_MEM(m.host + SEG1_PADDR, elf + 0x1000 + SEG0_FILE, SEG1_FILE);
	for (unsigned i = SEG1_FILE; i < SEG1_MEM; i++)
		ASSERT_EQ_INT(m.host[SEG1_PADDR + i], 0);
	munmap(m.host, m.low);
	free(elf);
}

TEST(bad_elves_are_refused_before_anything_is_copied)
{
	static const struct {
		const char *what;
		unsigned off; /* into the file; 0x78 is segment 1's header */
		uint64_t value;
		unsigned width;
	} cases[] = {
		{ "not an ELF", 0, 0x464c457e, 4 },
		{ "32-bit", 4, 1, 1 },
		{ "not x86-64", 18, 3, 2 },
		{ "no program headers", 56, 0, 2 },
		{ "headers past the end", 32, ELF_LEN - 8, 8 },
		{ "segment below 1 MiB", 0x78 + 24, 0x80000, 8 },
		{ "segment past RAM", 0x78 + 24, 64 * HK_MIB - 0x1000, 8 },
		{ "filesz > memsz", 0x78 + 32, SEG1_MEM + 1, 8 },
		{ "data past the file", 0x78 + 8, ELF_LEN - 16, 8 },
		{ "huge memsz", 0x78 + 40, ~0ull - 0x1000, 8 },
		{ "entry outside", 24, 0x9000000, 8 },
	};
	struct hk_mem m = map_mem(64 * HK_MIB);
	uint64_t entry, lo, hi;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t *elf = make_elf();

		printf("# case: %s\n", cases[i].what);
		memset(m.host + SEG0_PADDR, 0x77, 16);
		if (cases[i].width == 1)
			elf[cases[i].off] = (uint8_t)cases[i].value;
		else if (cases[i].width == 2)
			store_le16(elf + cases[i].off, (uint16_t)cases[i].value);
		else if (cases[i].width == 4)
			store_le32(elf + cases[i].off, (uint32_t)cases[i].value);
		else
			store_le64(elf + cases[i].off, cases[i].value);
		ASSERT_EQ_INT(hk_vmlinux_load(&m, elf, ELF_LEN, &entry, &lo,
					      &hi, NULL),
			      -ENOEXEC);
		ASSERT_EQ_INT(m.host[SEG0_PADDR], 0x77);
		free(elf);
	}
	munmap(m.host, m.low);
}

TEST(boot_enters_the_unpacked_kernel)
{
	char kpath[512], dir[512];
	struct hk_setup s;
	struct hk_boot_plan p;
	struct hk_mem m = map_mem(64 * HK_MIB);
	size_t len;
	uint8_t *img = make_bzimage(XZ, &len, &s), *elf = make_elf();
	int fd;

	snprintf(kpath, sizeof(kpath), "%s/bzImage", test_tmpdir());
	snprintf(dir, sizeof(dir), "%s/kc", test_tmpdir());
	fd = open(kpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ASSERT_TRUE(fd >= 0);
	ASSERT_EQ_INT(write(fd, img, len), (ssize_t)len);
	close(fd);

	ASSERT_OK(hk_boot_load(&m, kpath, NULL, "quiet", 0, HK_UNPACK_CACHE,
			       dir, &p, NULL));
	ASSERT_TRUE(p.entry64);
	ASSERT_EQ_U64(p.entry, SEG0_PADDR + 0x40);
	ASSERT_EQ_MEM(m.host + SEG1_PADDR, elf + 0x1000 + SEG0_FILE, SEG1_FILE);
	ASSERT_EQ_MEM(m.host + HK_ZERO_PAGE_GPA + 0x202, "HdrS", 4);

	/* Left to the guest: the payload at the load address, +0x200. */
	ASSERT_OK(hk_boot_load(&m, kpath, NULL, "quiet", 0, HK_UNPACK_GUEST,
			       NULL, &p, NULL));
	ASSERT_EQ_U64(p.entry, p.kernel_gpa + 0x200);
	ASSERT_EQ_MEM(m.host + p.kernel_gpa, img + SETUP_BYTES,
		      len - SETUP_BYTES);
	munmap(m.host, m.low);
	free(elf);
	free(img);
}

static const struct test_case tests[] = {
	TEST_CASE(each_format_unpacks_to_the_elf),
	TEST_CASE(cache_is_written_read_and_checked),
	TEST_CASE(unwritable_cache_leaves_it_to_the_guest),
	TEST_CASE(elf_segments_land_at_their_physical_addresses),
	TEST_CASE(bad_elves_are_refused_before_anything_is_copied),
	TEST_CASE(boot_enters_the_unpacked_kernel),
};

TEST_MAIN(tests);
