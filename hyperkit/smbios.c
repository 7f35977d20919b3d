// SPDX-License-Identifier: MIT
/*
 * SMBIOS tables (DMTF DSP0134, version 2.8), always built, as hyperkit and
 * bhyve do: they tell the guest who made the machine and, with -U, its
 * UUID (Linux shows it as /sys/class/dmi/id/product_uuid; cloud-init and
 * systemd use it as the machine's identity).
 *
 * Layout, at HK_SMBIOS_GPA in the reserved BIOS area where Linux looks
 * for it without EFI (it scans 0xf0000-0xfffff on 16-byte boundaries for
 * "_SM_"): the 31-byte 2.x entry point (its "_DMI_" intermediate part
 * carries the table's address, length and structure count; both parts
 * have checksums), then, at offset 0x20, the structure table:
 *
 *   type 0    BIOS: vendor, version, date; "characteristics not supported"
 *   type 1    system: manufacturer, product, version, serial, UUID, family
 *   type 3    chassis
 *   type 4    one processor per vCPU
 *   type 16   the physical memory array, type 17 a device per RAM region
 *             (below the MMIO hole, above 4 GiB), type 19 their addresses
 *   type 32   boot information (no errors)
 *   type 127  end of table
 *
 * Every structure is a formatted part (type, length, handle, fields)
 * followed by its strings, each NUL-terminated, the set ended by one more
 * NUL (two NULs when there are none); fields name strings by their
 * 1-based position, 0 for none. The layout (entry point at 0, table at
 * 0x20) is also dmidecode's --dump-bin format when gpa is 0, which the
 * unit test uses to have dmidecode read what we build.
 *
 * The UUID goes in SMBIOS byte order: since 2.6 the first three fields
 * (time_low, time_mid, time_hi_and_version) are little-endian, the rest
 * as written. Without -U the UUID is derived from the host name, so a VM
 * keeps the same one from run to run (hyperkit hashes the VM name and the
 * host name for the same reason).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/endian.h"
#include "internal.h"

#define EP_LEN 0x1f
#define TABLE_OFF 0x20

#define VENDOR "unikit"
#define PRODUCT "hyperkit"
#define VERSION "1.0"
#define BIOS_DATE "01/01/2025"

/* A table being written: structures are appended at off. On overflow the
 * writes go to scratch and the build fails at the end. */
struct smb {
	uint8_t *buf;
	size_t len, off;
	bool overflow;
	size_t cur; /* start of the structure being written */
	unsigned strings; /* strings in it so far */
	uint16_t count, max_size;
	uint8_t scratch[256];
};

static uint8_t *st_begin(struct smb *b, uint8_t type, uint8_t length)
{
	uint8_t *p;

	b->cur = b->off;
	b->strings = 0;
	if (b->overflow || b->len - b->off < length) {
		b->overflow = true;
		p = b->scratch;
	} else {
		p = b->buf + b->off;
		b->off += length;
	}
	memset(p, 0, length);
	p[0] = type;
	p[1] = length;
	store_le16(p + 2, b->count); /* handles: 0, 1, 2, ... */
	return p;
}

/* Append a string to the current structure; its number, 0 for none. */
static uint8_t st_str(struct smb *b, const char *s)
{
	size_t n = s ? strlen(s) + 1 : 0;

	if (n <= 1)
		return 0;
	if (b->overflow || b->len - b->off < n) {
		b->overflow = true;
		return 0;
	}
	memcpy(b->buf + b->off, s, n);
	b->off += n;
	return (uint8_t)++b->strings;
}

static void st_end(struct smb *b)
{
	size_t need = b->strings ? 1 : 2;

	if (b->overflow || b->len - b->off < need) {
		b->overflow = true;
		return;
	}
	memset(b->buf + b->off, 0, need);
	b->off += need;
	if (b->off - b->cur > b->max_size)
		b->max_size = (uint16_t)(b->off - b->cur);
	b->count++;
}

/* RFC 4122 byte order (as -U is written) to SMBIOS 2.6+ order. */
static void uuid_to_smbios(uint8_t *d, const uint8_t *u)
{
	d[0] = u[3], d[1] = u[2], d[2] = u[1], d[3] = u[0];
	d[4] = u[5], d[5] = u[4];
	d[6] = u[7], d[7] = u[6];
	memcpy(d + 8, u + 8, 8);
}

void hk_smbios_default_uuid(uint8_t uuid[16])
{
	char host[256] = "";
	uint64_t h[2] = { 0xcbf29ce484222325ull, 0x84222325cbf29ce4ull };
	const char *p;
	unsigned i;

	if (gethostname(host, sizeof(host) - 1) < 0)
		host[0] = '\0';
	/* Two FNV-1a hashes of "hyperkit:" and the host name: stable, not
	 * secret, and different from host to host. */
	for (i = 0; i < 2; i++) {
		for (p = "hyperkit:"; *p; p++)
			h[i] = (h[i] ^ (uint8_t)*p) * 0x100000001b3ull;
		for (p = host; *p; p++)
			h[i] = (h[i] ^ (uint8_t)*p) * 0x100000001b3ull;
		h[i] ^= h[i] >> 29;
	}
	store_be64(uuid, h[0]);
	store_be64(uuid + 8, h[1]);
	uuid[6] = (uint8_t)((uuid[6] & 0x0f) | 0x80); /* version 8: custom */
	uuid[8] = (uint8_t)((uuid[8] & 0x3f) | 0x80); /* RFC 4122 variant */
}

static void type0_bios(struct smb *b)
{
	uint8_t *p = st_begin(b, 0, 0x18);

	p[4] = st_str(b, VENDOR);
	p[5] = st_str(b, PRODUCT " " VERSION);
	store_le16(p + 6, 0xf000); /* starting segment */
	p[8] = st_str(b, BIOS_DATE);
	p[9] = 0; /* ROM size: 64 KiB */
	store_le64(p + 10, 1ull << 3); /* characteristics not supported */
	p[0x12] = 0;
	p[0x13] = 1u << 4; /* extension byte 2: a virtual machine */
	p[0x14] = 1; /* BIOS release 1.0 */
	p[0x15] = 0;
	p[0x16] = 0xff; /* no embedded controller */
	p[0x17] = 0xff;
	st_end(b);
}

static void type1_system(struct smb *b, const uint8_t *uuid)
{
	uint8_t *p = st_begin(b, 1, 0x1b);

	p[4] = st_str(b, VENDOR);
	p[5] = st_str(b, PRODUCT);
	p[6] = st_str(b, VERSION);
	p[7] = st_str(b, "Not Specified"); /* serial */
	uuid_to_smbios(p + 8, uuid);
	p[0x18] = 6; /* wake-up type: power switch */
	p[0x19] = 0; /* SKU */
	p[0x1a] = st_str(b, "Virtual Machine");
	st_end(b);
}

static void type3_chassis(struct smb *b)
{
	uint8_t *p = st_begin(b, 3, 0x16);

	p[4] = st_str(b, VENDOR);
	p[5] = 0x01; /* type: other */
	p[6] = st_str(b, VERSION);
	p[9] = 0x03; /* boot-up state: safe */
	p[0x0a] = 0x03; /* power supply: safe */
	p[0x0b] = 0x03; /* thermal: safe */
	p[0x0c] = 0x02; /* security: unknown */
	st_end(b);
}

static void type4_cpus(struct smb *b, unsigned cpus)
{
	char name[16];
	unsigned i;

	for (i = 0; i < cpus; i++) {
		uint8_t *p = st_begin(b, 4, 0x2a);

		snprintf(name, sizeof(name), "CPU %u", i);
		p[4] = st_str(b, name);
		p[5] = 0x03; /* central processor */
		p[6] = 0x01; /* family: other */
		p[0x18] = 0x41; /* socket populated, CPU enabled */
		p[0x19] = 0x06; /* upgrade: none */
		store_le16(p + 0x1a, 0xffff); /* no cache structures */
		store_le16(p + 0x1c, 0xffff);
		store_le16(p + 0x1e, 0xffff);
		p[0x23] = 1; /* cores */
		p[0x24] = 1; /* enabled */
		p[0x25] = 1; /* threads */
		store_le16(p + 0x26, 1u << 2); /* 64-bit capable */
		store_le16(p + 0x28, 0x01);
		st_end(b);
	}
}

/* One memory device (type 17) of size bytes, in array handle arr. */
static void type17_device(struct smb *b, uint16_t arr, uint64_t size,
			  const char *locator)
{
	uint8_t *p = st_begin(b, 17, 0x28);
	uint64_t mib = size >> 20;

	store_le16(p + 4, arr);
	store_le16(p + 6, 0xfffe); /* no error information */
	store_le16(p + 8, 64); /* total width */
	store_le16(p + 10, 64); /* data width */
	if (mib < 0x7fff) {
		store_le16(p + 12, (uint16_t)mib);
	} else {
		store_le16(p + 12, 0x7fff); /* see the extended size */
		store_le32(p + 0x1c, (uint32_t)mib);
	}
	p[14] = 0x09; /* form factor: DIMM */
	p[16] = st_str(b, locator);
	p[18] = 0x07; /* type: RAM */
	store_le16(p + 19, 1u << 1); /* detail: other */
	st_end(b);
}

/* A mapped address range (type 19) of [start, start + size). */
static void type19_range(struct smb *b, uint16_t arr, uint64_t start,
			 uint64_t size, unsigned devices)
{
	uint8_t *p = st_begin(b, 19, 0x1f);

	store_le32(p + 4, (uint32_t)(start >> 10));
	store_le32(p + 8, (uint32_t)((start + size) >> 10) - 1);
	store_le16(p + 12, arr);
	p[14] = (uint8_t)devices; /* partition width */
	st_end(b);
}

static void memory(struct smb *b, uint64_t low, uint64_t high)
{
	uint16_t arr = b->count;
	unsigned devices = high ? 2 : 1;
	uint64_t kib = (low + high) >> 10;
	uint8_t *p = st_begin(b, 16, 0x17);

	p[4] = 0x03; /* location: system board */
	p[5] = 0x03; /* use: system memory */
	p[6] = 0x03; /* error correction: none */
	if (kib < 0x80000000ull) {
		store_le32(p + 7, (uint32_t)kib);
	} else {
		store_le32(p + 7, 0x80000000u);
		store_le64(p + 15, low + high);
	}
	store_le16(p + 11, 0xfffe);
	store_le16(p + 13, (uint16_t)devices);
	st_end(b);
	type17_device(b, arr, low, "DIMM 0");
	if (high)
		type17_device(b, arr, high, "DIMM 1");
	type19_range(b, arr, 0, low, 1);
	if (high)
		type19_range(b, arr, HK_HIGH_MEM_BASE, high, 1);
}

ssize_t hk_smbios_build(uint8_t *buf, size_t len, uint64_t gpa,
			const struct hk_smbios_info *info)
{
	struct smb b = { .buf = buf, .len = len, .off = TABLE_OFF };
	uint64_t end;
	size_t table_len;
	uint8_t *p;

	/* The 2.x entry point holds a 32-bit table address. */
	if (!buf || len < TABLE_OFF || info->cpus == 0 ||
	    info->cpus > HK_MAX_CPUS || info->mem_low < HK_KIB ||
	    __builtin_add_overflow(gpa, (uint64_t)len, &end) ||
	    end > 0x100000000ull)
		return -ENOSPC;
	memset(buf, 0, TABLE_OFF);
	type0_bios(&b);
	type1_system(&b, info->uuid);
	type3_chassis(&b);
	type4_cpus(&b, info->cpus);
	memory(&b, info->mem_low, info->mem_high);
	p = st_begin(&b, 32, 0x0b);
	p[10] = 0; /* boot status: no errors */
	st_end(&b);
	st_begin(&b, 127, 4);
	st_end(&b);
	table_len = b.off - TABLE_OFF;
	if (b.overflow || table_len > 0xffff)
		return -ENOSPC;

	/* The entry point: "_SM_" part, then the "_DMI_" part at 16. */
	memcpy(buf, "_SM_", 4);
	buf[5] = EP_LEN;
	buf[6] = 2; /* version 2.8 */
	buf[7] = 8;
	store_le16(buf + 8, b.max_size);
	buf[10] = 0; /* entry point revision */
	memcpy(buf + 16, "_DMI_", 5);
	store_le16(buf + 22, (uint16_t)table_len);
	store_le32(buf + 24, (uint32_t)(gpa + TABLE_OFF));
	store_le16(buf + 28, b.count);
	buf[30] = 0x28; /* BCD revision */
	buf[21] = (uint8_t)-hk_checksum(buf + 16, EP_LEN - 16);
	buf[4] = (uint8_t)-hk_checksum(buf, EP_LEN);
	return (ssize_t)b.off;
}
