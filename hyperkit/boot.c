// SPDX-License-Identifier: MIT
/*
 * Direct boot of a Linux bzImage by the x86 boot protocol
 * (Documentation/arch/x86/boot.rst), with no firmware and no real-mode
 * code: we do what a boot loader would after the kernel's real-mode setup
 * has run.
 *
 * Theory of operation. A bzImage is a 512-byte boot sector, setup_sects
 * more sectors of real-mode setup, then the protected-mode kernel (a
 * self-decompressor). The setup header at file offset 0x1f1 describes it.
 * We validate the header (the file is input we did not write), copy the
 * protected-mode part to its load address in low memory, put the initrd
 * as high in low memory as the kernel allows, and build the zero page
 * (struct boot_params): a copy of the setup header with the loader's
 * fields filled in, the command line pointer and an e820 map. The real
 * setup code would have asked the BIOS for that map; we write it, and it
 * never calls the MMIO hole RAM.
 *
 * Kernels of protocol 2.12 and later that set XLF_KERNEL_64 are entered
 * at their 64-bit entry (load address + 0x200) in long mode, with page
 * tables that identity-map the first 4 GiB and a GDT whose selectors 0x10
 * and 0x18 are flat code and data. Older ones (2.10 and 2.11) get the
 * 32-bit entry, in protected mode without paging, as hyperkit does. In
 * both, %rsi holds the zero page's address.
 *
 * Unless asked not to, a 64-bit kernel's compressed payload is unpacked
 * here instead (vmlinux.c) and the kernel proper is entered at its ELF
 * entry point in the same long-mode state, skipping the guest-side
 * decompressor; the zero page is the same either way.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/endian.h"
#include "internal.h"

/* Setup header fields, as offsets into the file and the zero page. */
#define HDR_SETUP_SECTS 0x1f1
#define HDR_SYSSIZE 0x1f4
#define HDR_VID_MODE 0x1fa
#define HDR_BOOT_FLAG 0x1fe
#define HDR_JUMP 0x200
#define HDR_HEADER 0x202
#define HDR_VERSION 0x206
#define HDR_TYPE_OF_LOADER 0x210
#define HDR_LOADFLAGS 0x211
#define HDR_RAMDISK_IMAGE 0x218
#define HDR_RAMDISK_SIZE 0x21c
#define HDR_CMD_LINE_PTR 0x228
#define HDR_INITRD_ADDR_MAX 0x22c
#define HDR_KERNEL_ALIGNMENT 0x230
#define HDR_RELOCATABLE 0x234
#define HDR_XLOADFLAGS 0x236
#define HDR_CMDLINE_SIZE 0x238
#define HDR_PREF_ADDRESS 0x258
#define HDR_INIT_SIZE 0x260
#define HDR_MIN_END 0x264 /* the fields above, through init_size */
#define HDR_MAX_END 0x290 /* where boot_params' next fields start */

/* Zero page fields outside the setup header. */
#define ZP_ACPI_RSDP 0x070
#define ZP_EXT_RAMDISK_IMAGE 0x0c0
#define ZP_EXT_RAMDISK_SIZE 0x0c4
#define ZP_EXT_CMD_LINE_PTR 0x0c8
#define ZP_E820_ENTRIES 0x1e8
#define ZP_E820_TABLE 0x2d0
#define ZP_SIZE 4096

#define BOOT_FLAG 0xaa55
#define HDRS_MAGIC 0x53726448 /* "HdrS" */
#define LOADED_HIGH 0x01
#define XLF_KERNEL_64 0x01
#define LOADER_UNDEFINED 0xff

#define PAGE 4096ull
#define MAX_KERNEL_FILE (512 * HK_MIB)

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

void hk_mem_split(uint64_t size, uint64_t *low, uint64_t *high)
{
	*low = size < HK_LOW_MEM_MAX ? size : HK_LOW_MEM_MAX;
	*high = size - *low;
}

void *hk_mem_gpa(const struct hk_mem *m, uint64_t gpa, uint64_t len)
{
	uint64_t end;

	if (__builtin_add_overflow(gpa, len, &end))
		return NULL;
	if (end <= m->low)
		return m->host + gpa;
	if (gpa >= HK_HIGH_MEM_BASE && end - HK_HIGH_MEM_BASE <= m->high)
		return m->host + m->low + (gpa - HK_HIGH_MEM_BASE);
	return NULL;
}

unsigned hk_e820_build(struct hk_e820 *e, uint64_t low, uint64_t high)
{
	unsigned n = 0;

	/* Conventional memory, then the EBDA and BIOS area where the MP
	 * and ACPI tables live; 0xa0000 - 0xe0000 (VGA, ROMs) is absent. */
	e[n++] = (struct hk_e820){ 0, HK_EBDA_GPA, HK_E820_RAM };
	e[n++] = (struct hk_e820){ HK_EBDA_GPA, 0xa0000 - HK_EBDA_GPA,
				   HK_E820_RESERVED };
	e[n++] = (struct hk_e820){ HK_ACPI_GPA, 0x100000 - HK_ACPI_GPA,
				   HK_E820_RESERVED };
	if (low > HK_KERNEL_MIN_GPA)
		e[n++] = (struct hk_e820){ HK_KERNEL_MIN_GPA,
					   low - HK_KERNEL_MIN_GPA,
					   HK_E820_RAM };
	if (high)
		e[n++] = (struct hk_e820){ HK_HIGH_MEM_BASE, high,
					   HK_E820_RAM };
	return n;
}

int hk_boot_parse(const uint8_t *img, size_t len, struct hk_setup *s,
		  const struct logger *lg)
{
	uint32_t syssize;
	uint64_t sys_bytes;

	memset(s, 0, sizeof(*s));
	if (len < HDR_MIN_END) {
		logger_printf(lg, LOG_LEVEL_ERR,
			      "kernel: not a bzImage (only %zu bytes)",
			      len);
		return -ENOEXEC;
	}
	if (load_le16(img + HDR_BOOT_FLAG) != BOOT_FLAG ||
	    load_le32(img + HDR_HEADER) != HDRS_MAGIC) {
		logger_printf(lg, LOG_LEVEL_ERR,
			      "kernel: not a bzImage (no boot flag 0xaa55 "
			      "and \"HdrS\" header)");
		return -ENOEXEC;
	}
	s->version = load_le16(img + HDR_VERSION);
	if (s->version < 0x20a) {
		logger_printf(lg, LOG_LEVEL_ERR,
			      "kernel: boot protocol %u.%02u, need 2.10 or later",
			      s->version >> 8, s->version & 0xff);
		return -ENOEXEC;
	}
	s->header_end = 0x202 + (size_t)img[HDR_JUMP + 1];
	if (s->header_end < HDR_MIN_END)
		s->header_end = HDR_MIN_END;
	if (s->header_end > HDR_MAX_END)
		s->header_end = HDR_MAX_END;
	s->loadflags = img[HDR_LOADFLAGS];
	if (!(s->loadflags & LOADED_HIGH)) {
		logger_printf(lg, LOG_LEVEL_ERR,
			      "kernel: not loaded high (a zImage?)");
		return -ENOEXEC;
	}
	s->setup_sects = img[HDR_SETUP_SECTS] ? img[HDR_SETUP_SECTS] : 4;
	s->setup_bytes = ((size_t)s->setup_sects + 1) * 512;
	if (s->setup_bytes >= len) {
		logger_printf(lg, LOG_LEVEL_ERR,
			      "kernel: %u setup sectors but the file has %zu "
			      "bytes", s->setup_sects, len);
		return -ENOEXEC;
	}
	s->payload_bytes = len - s->setup_bytes;
	/* syssize counts 16-byte paragraphs, rounded up by the build. */
	syssize = load_le32(img + HDR_SYSSIZE);
	sys_bytes = (uint64_t)syssize * 16;
	if (syssize == 0 || sys_bytes > (uint64_t)s->payload_bytes + 15) {
		logger_printf(lg, LOG_LEVEL_ERR,
			      "kernel: syssize says %llu bytes, the file has "
			      "%zu after the setup",
			      (unsigned long long)sys_bytes, s->payload_bytes);
		return -ENOEXEC;
	}
	if (sys_bytes < s->payload_bytes)
		s->payload_bytes = sys_bytes; /* trailing bytes: not kernel */
	s->xloadflags = s->version >= 0x20c ? load_le16(img + HDR_XLOADFLAGS)
					    : 0;
	s->relocatable = img[HDR_RELOCATABLE] != 0;
	s->kernel_alignment = load_le32(img + HDR_KERNEL_ALIGNMENT);
	s->pref_address = load_le64(img + HDR_PREF_ADDRESS);
	s->init_size = load_le32(img + HDR_INIT_SIZE);
	s->initrd_addr_max = load_le32(img + HDR_INITRD_ADDR_MAX);
	s->cmdline_size = load_le32(img + HDR_CMDLINE_SIZE);
	if (s->relocatable &&
	    (s->kernel_alignment == 0 ||
	     (s->kernel_alignment & (s->kernel_alignment - 1)))) {
		logger_printf(lg, LOG_LEVEL_ERR,
			      "kernel: alignment 0x%x is not a power of two",
			      s->kernel_alignment);
		return -ENOEXEC;
	}
	if (s->init_size < s->payload_bytes) {
		logger_printf(lg, LOG_LEVEL_ERR,
			      "kernel: init_size %u is smaller than the "
			      "kernel (%zu bytes)", s->init_size,
			      s->payload_bytes);
		return -ENOEXEC;
	}
	s->entry64 = s->version >= 0x20c && (s->xloadflags & XLF_KERNEL_64);
	return 0;
}

int hk_boot_plan(const struct hk_setup *s, const struct hk_mem *m,
		 uint64_t initrd_size, struct hk_boot_plan *p,
		 const struct logger *lg)
{
	uint64_t top, align;

	memset(p, 0, sizeof(*p));
	if (s->relocatable) {
		align = s->kernel_alignment < PAGE ? PAGE : s->kernel_alignment;
		p->kernel_gpa = align_up(HK_KERNEL_MIN_GPA, align);
	} else {
		p->kernel_gpa = s->pref_address;
		if (p->kernel_gpa < HK_KERNEL_MIN_GPA)
			p->kernel_gpa = HK_KERNEL_MIN_GPA;
	}
	if (__builtin_add_overflow(p->kernel_gpa, (uint64_t)s->init_size,
				   &p->kernel_end) ||
	    p->kernel_end > m->low) {
		logger_printf(lg, LOG_LEVEL_ERR,
			      "kernel: needs memory up to 0x%llx, low memory "
			      "ends at 0x%llx",
			      (unsigned long long)p->kernel_gpa + s->init_size,
			      (unsigned long long)m->low);
		return -ENOMEM;
	}
	p->entry64 = s->entry64;
	p->entry = p->kernel_gpa + (s->entry64 ? 0x200 : 0);
	if (initrd_size == 0)
		return 0;
	/* The initrd ends below initrd_addr_max (its last byte's limit)
	 * and the end of low memory, page aligned, above the kernel. */
	top = m->low;
	if ((uint64_t)s->initrd_addr_max + 1 < top)
		top = (uint64_t)s->initrd_addr_max + 1;
	if (initrd_size > top || ((top - initrd_size) & ~(PAGE - 1)) <
					 p->kernel_end) {
		logger_printf(lg, LOG_LEVEL_ERR,
			      "initrd: %llu bytes do not fit between the kernel "
			      "(ends 0x%llx) and 0x%llx",
			      (unsigned long long)initrd_size,
			      (unsigned long long)p->kernel_end,
			      (unsigned long long)top);
		return -ENOMEM;
	}
	p->initrd_gpa = (top - initrd_size) & ~(PAGE - 1);
	p->initrd_size = initrd_size;
	return 0;
}

int hk_boot_zero_page(uint8_t *zp, const uint8_t *img, const struct hk_setup *s,
		      const struct hk_boot_plan *p, const struct hk_mem *m,
		      size_t cmdline_len, uint64_t acpi_rsdp,
		      const struct logger *lg)
{
	struct hk_e820 e[HK_E820_MAX];
	unsigned n, i;
	uint64_t limit;

	/* Protocol 2.06+ gives the limit; before, 255. */
	limit = s->version >= 0x206 ? s->cmdline_size : 255;
	if (limit > HK_CMDLINE_MAX - 1)
		limit = HK_CMDLINE_MAX - 1;
	if (cmdline_len > limit) {
		logger_printf(lg, LOG_LEVEL_ERR,
			      "cmdline: %zu bytes, the kernel takes at most %llu",
			      cmdline_len, (unsigned long long)limit);
		return -E2BIG;
	}
	memset(zp, 0, ZP_SIZE);
	memcpy(zp + HDR_SETUP_SECTS, img + HDR_SETUP_SECTS,
	       s->header_end - HDR_SETUP_SECTS);
	zp[HDR_TYPE_OF_LOADER] = LOADER_UNDEFINED;
	store_le16(zp + HDR_VID_MODE, 0xffff); /* "normal" */
	store_le32(zp + HDR_CMD_LINE_PTR, (uint32_t)HK_CMDLINE_GPA);
	store_le32(zp + ZP_EXT_CMD_LINE_PTR, (uint32_t)(HK_CMDLINE_GPA >> 32));
	store_le32(zp + HDR_RAMDISK_IMAGE, (uint32_t)p->initrd_gpa);
	store_le32(zp + HDR_RAMDISK_SIZE, (uint32_t)p->initrd_size);
	store_le32(zp + ZP_EXT_RAMDISK_IMAGE, (uint32_t)(p->initrd_gpa >> 32));
	store_le32(zp + ZP_EXT_RAMDISK_SIZE, (uint32_t)(p->initrd_size >> 32));
	store_le64(zp + ZP_ACPI_RSDP, acpi_rsdp);
	n = hk_e820_build(e, m->low, m->high);
	zp[ZP_E820_ENTRIES] = (uint8_t)n;
	for (i = 0; i < n; i++) {
		uint8_t *d = zp + ZP_E820_TABLE + 20 * i;

		store_le64(d, e[i].addr);
		store_le64(d + 8, e[i].size);
		store_le32(d + 16, e[i].type);
	}
	return 0;
}

/* Identity-map the first 4 GiB with 2 MiB pages: PML4, one PDPT, four
 * page directories. */
static void write_page_tables(uint8_t *pt)
{
	uint64_t pdpt = HK_PML4_GPA + PAGE, pd = HK_PML4_GPA + 2 * PAGE;
	unsigned i;

	memset(pt, 0, 6 * PAGE);
	store_le64(pt, pdpt | 0x03); /* present, writable */
	for (i = 0; i < 4; i++)
		store_le64(pt + PAGE + 8 * i, (pd + i * PAGE) | 0x03);
	for (i = 0; i < 4 * 512; i++)
		store_le64(pt + 2 * PAGE + 8 * i,
			   ((uint64_t)i << 21) | 0x83); /* 2 MiB page */
}

static void write_gdt(uint8_t *gdt, bool entry64)
{
	memset(gdt, 0, 32);
	/* 0x10: flat code (64-bit or 32-bit), 0x18: flat data. */
	store_le64(gdt + 0x10, entry64 ? 0x00af9b000000ffffull
				       : 0x00cf9b000000ffffull);
	store_le64(gdt + 0x18, 0x00cf93000000ffffull);
}

/* Read a whole file of at most max bytes into a new buffer. */
static int read_file(const char *path, size_t max, uint8_t **out,
		     size_t *out_len, const struct logger *lg)
{
	struct stat st;
	uint8_t *buf;
	size_t done = 0;
	int fd, err;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		logger_printf(lg, LOG_LEVEL_ERR, "%s: %s", path, strerror(errno));
		return err;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size > max) {
		logger_printf(lg, LOG_LEVEL_ERR,
			      "%s: not a regular file of at most %zu bytes",
			      path, max);
		err = -EINVAL;
		goto out_close;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		err = -ENOMEM;
		goto out_close;
	}
	while (done < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + done, (size_t)st.st_size - done);

		if (r <= 0) {
			err = r < 0 ? -errno : -EIO;
			logger_printf(lg, LOG_LEVEL_ERR, "%s: short read", path);
			free(buf);
			goto out_close;
		}
		done += (size_t)r;
	}
	*out = buf;
	*out_len = done;
	err = 0;
out_close:
	close(fd);
	return err;
}

/* Read an initrd straight into guest memory. */
static int load_initrd(int fd, uint8_t *dst, uint64_t size, const char *path,
		       const struct logger *lg)
{
	uint64_t done = 0;

	while (done < size) {
		size_t want = size - done > (1u << 30) ? (1u << 30)
						       : (size_t)(size - done);
		ssize_t r = pread(fd, dst + done, want, (off_t)done);

		if (r <= 0) {
			logger_printf(lg, LOG_LEVEL_ERR, "%s: short read", path);
			return r < 0 ? -errno : -EIO;
		}
		done += (uint64_t)r;
	}
	return 0;
}

/*
 * Put the unpacked kernel in place of the bzImage's protected-mode part
 * (vmlinux.c), if it can be had and fits below the initrd. True when the
 * plan now enters it; false leaves the plan as it was.
 */
static bool load_vmlinux(const struct hk_mem *m, const uint8_t *img,
			 size_t img_len, const struct hk_setup *s, int unpack,
			 const char *cache_dir, struct hk_boot_plan *p,
			 const struct logger *lg)
{
	uint64_t entry, lo, hi;
	uint8_t *elf = NULL;
	size_t elf_len = 0;
	bool ok = false;

	if (unpack == HK_UNPACK_GUEST)
		return false;
	if (hk_vmlinux_get(img, img_len, s, cache_dir,
			   unpack == HK_UNPACK_CACHE, &elf, &elf_len, lg))
		return false;
	/* The segments must not reach the initrd (placed at the top). */
	if (hk_vmlinux_load(m, elf, elf_len, &entry, &lo, &hi, lg) == 0 &&
	    (!p->initrd_size || hi <= p->initrd_gpa)) {
		p->kernel_gpa = lo;
		p->kernel_end = hi;
		p->entry = entry;
		p->entry64 = true;
		ok = true;
	}
	free(elf);
	return ok;
}

int hk_boot_load(const struct hk_mem *m, const char *kernel,
		 const char *initrd, const char *cmdline, uint64_t acpi_rsdp,
		 int unpack, const char *cache_dir, struct hk_boot_plan *p,
		 const struct logger *lg)
{
	struct hk_setup s;
	uint8_t *img = NULL, *dst;
	size_t img_len = 0, cmd_len = cmdline ? strlen(cmdline) : 0;
	uint64_t initrd_size = 0;
	int initrd_fd = -1, err;

	err = read_file(kernel, MAX_KERNEL_FILE, &img, &img_len, lg);
	if (err)
		return err;
	err = hk_boot_parse(img, img_len, &s, lg);
	if (err) {
		logger_printf(lg, LOG_LEVEL_ERR, "%s: cannot boot this kernel",
			      kernel);
		goto out_free;
	}
	if (initrd) {
		struct stat st;

		initrd_fd = open(initrd, O_RDONLY | O_CLOEXEC);
		if (initrd_fd < 0 || fstat(initrd_fd, &st) < 0 ||
		    !S_ISREG(st.st_mode)) {
			err = initrd_fd < 0 ? -errno : -EINVAL;
			logger_printf(lg, LOG_LEVEL_ERR,
				      "%s: cannot open as an initrd: %s",
				      initrd, strerror(-err));
			goto out_close;
		}
		initrd_size = (uint64_t)st.st_size;
	}
	err = hk_boot_plan(&s, m, initrd_size, p, lg);
	if (err)
		goto out_close;

	if (!load_vmlinux(m, img, img_len, &s, unpack, cache_dir, p, lg)) {
		dst = hk_mem_gpa(m, p->kernel_gpa, s.payload_bytes);
		if (!dst) {
			err = -ENOMEM;
			goto out_close;
		}
		memcpy(dst, img + s.setup_bytes, s.payload_bytes);
	}
	if (initrd_size) {
		dst = hk_mem_gpa(m, p->initrd_gpa, initrd_size);
		err = dst ? load_initrd(initrd_fd, dst, initrd_size, initrd, lg)
			  : -ENOMEM;
		if (err)
			goto out_close;
	}
	err = hk_boot_zero_page(hk_mem_gpa(m, HK_ZERO_PAGE_GPA, ZP_SIZE), img,
				&s, p, m, cmd_len, acpi_rsdp, lg);
	if (err)
		goto out_close;
	dst = hk_mem_gpa(m, HK_CMDLINE_GPA, cmd_len + 1);
	memcpy(dst, cmdline ? cmdline : "", cmd_len + 1);
	write_gdt(hk_mem_gpa(m, HK_GDT_GPA, 32), p->entry64);
	write_page_tables(hk_mem_gpa(m, HK_PML4_GPA, 6 * PAGE));
out_close:
	if (initrd_fd >= 0)
		close(initrd_fd);
out_free:
	free(img);
	return err;
}
