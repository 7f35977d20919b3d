// SPDX-License-Identifier: MIT
/*
 * virtio_hostile: a hostile virtio driver that runs as root inside a Linux
 * guest and attacks one modern virtio-pci device (virtio-rng or
 * virtio-blk) of its VMM.
 *
 *   virtio_hostile [-t MS] [-q] rng|blk|BDF
 *
 * It takes the device away from Linux (driver/unbind in sysfs), turns on
 * memory decoding and bus mastering through the config file, walks the
 * capability list for the virtio structures, maps the BAR through
 * resourceN, and drives the device itself with rings in its own locked,
 * physically contiguous memory (a huge page, or a run of contiguous pages
 * found through /proc/self/pagemap). No interrupts are used: the driver
 * polls the used ring and the device status.
 *
 * Each attack starts from a freshly reset and initialised device, does
 * one bad thing, and prints one line
 *
 *   HOSTILE <name> <outcome> <recovered|UNRECOVERED> [# detail]
 *
 * where outcome is what the device did:
 *
 *   needs-reset  DEVICE_NEEDS_RESET (0x40) set and no used entry
 *   served       a used entry (virtio-rng; len in the detail)
 *   ok ioerr unsupp status=0xNN
 *                a used entry, with that virtio-blk status byte
 *   ignored      nothing within the timeout
 *   refused      a bad queue or feature setting was not taken
 *   clamped      a queue size above the maximum read back as a legal one
 *   accepted     a bad setting was taken as written
 *   survived     after garbage, the device answered as before and served
 *                a valid request without a reset
 *   broken       ... it did not
 *   dirty        the device wrote guest memory outside the buffers it was
 *                given (appended to the outcome as "+dirty")
 *   skip         the attack does not apply to this device
 *
 * and whether a reset and a valid request afterwards worked. The judging
 * (which outcome is acceptable for which attack) is the caller's: see
 * tests/e2e/hyperkit_hostile.sh. At the end, after a last reset, a valid
 * request must work ("HOSTILE-RECOVERED ok"; for virtio-blk a sector is
 * written with HOSTILE_PATTERN and read back, sector HOSTILE_SECTOR), and
 * the device is reset and its command register restored, so Linux's
 * driver can bind to it again. The exit status is 0 if the program ran to
 * the end (whatever the outcomes), 2 on a setup error.
 */
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define VENDOR_VIRTIO 0x1af4
#define DEVID_BLK 0x1042
#define DEVID_RNG 0x1044

/* PCI configuration space. */
#define PCI_COMMAND 0x04
#define PCI_CMD_MEMORY 0x2
#define PCI_CMD_MASTER 0x4
#define PCI_CMD_INTX_DISABLE 0x400
#define PCI_STATUS 0x06
#define PCI_STATUS_CAP_LIST 0x10
#define PCI_BAR0 0x10
#define PCI_CAP_PTR 0x34
#define PCI_CAP_ID_VNDR 0x09

/* virtio_pci_cap.cfg_type */
#define VCAP_COMMON 1
#define VCAP_NOTIFY 2
#define VCAP_ISR 3
#define VCAP_DEVICE 4

/* Common configuration layout (virtio 1.x, 4.1.4.3). */
#define CC_DFSELECT 0x00
#define CC_DF 0x04
#define CC_GFSELECT 0x08
#define CC_GF 0x0c
#define CC_MSIX_CONFIG 0x10
#define CC_NUM_QUEUES 0x12
#define CC_STATUS 0x14
#define CC_QSELECT 0x16
#define CC_QSIZE 0x18
#define CC_QVECTOR 0x1a
#define CC_QENABLE 0x1c
#define CC_QNOTIFY_OFF 0x1e
#define CC_QDESC 0x20
#define CC_QAVAIL 0x28
#define CC_QUSED 0x30
#define CC_LEN 0x38

#define S_ACKNOWLEDGE 1u
#define S_DRIVER 2u
#define S_DRIVER_OK 4u
#define S_FEATURES_OK 8u
#define S_NEEDS_RESET 0x40u
#define S_FAILED 0x80u

#define F_INDIRECT_DESC 28
#define F_VERSION_1 32

#define D_NEXT 1u
#define D_WRITE 2u
#define D_INDIRECT 4u
#define AVAIL_F_NO_INTERRUPT 1u
#define NO_VECTOR 0xffffu

/* virtio-blk requests. */
#define BLK_T_IN 0u
#define BLK_T_OUT 1u
#define BLK_T_DISCARD 11u
#define BLK_F_DISCARD 13

/* Where the final check writes on a virtio-blk disk, and what. */
#define HOSTILE_SECTOR 1u
#define HOSTILE_PATTERN "HOSTILE-RECOVERED-SECTOR"

/* Addresses that are never guest RAM in a small guest. */
#define GPA_HIGH 0xfffffffff000ull /* top of a 48-bit space */
#define GPA_LAPIC 0xfee00000ull /* the local APIC, in the MMIO hole */
#define GPA_WRAP 0xfffffffffffff000ull /* addr + len overflows */

/*
 * The DMA area: one physically contiguous block.
 *   desc table   up to 1024 entries
 *   avail ring, used ring
 *   indirect tables (up to 2048 entries)
 *   data: buffers, the blk header and status, guard bytes around them
 */
#define OFF_DESC 0x0000u
#define OFF_AVAIL 0x4000u
#define OFF_USED 0x5000u
#define OFF_IND 0x8000u
#define OFF_DATA 0x10000u
#define DMA_LEN 0x20000u
#define DATA_LEN (DMA_LEN - OFF_DATA)
#define GUARD 0xa5
/* Inside the data area. */
#define D_HDR 0x0000u /* blk header, 16 bytes */
#define D_STATUS 0x0100u /* blk status byte */
#define D_BUF 0x1000u /* data buffers, up to 16 KiB */
#define D_BUF_LEN 0x4000u

#define QSIZE_CAP 256u /* the queue size we ask for, at most */

struct vring_desc_le {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct dma {
	uint8_t *va;
	uint64_t pa;
	size_t len;
};

struct hdev {
	char bdf[64];
	char dir[160];
	int cfg_fd;
	uint16_t devid;
	bool blk;
	uint8_t *map[6];
	size_t map_len[6];
	volatile uint8_t *common, *isr, *devcfg, *notify;
	uint32_t notify_mult, notify_len, devcfg_len;
	unsigned cap_bar[5];
	uint16_t orig_cmd;
	uint16_t num_queues;
	uint64_t features; /* offered */
};

struct vq {
	uint16_t size;
	uint16_t avail_idx; /* next index we publish */
	uint16_t used_seen; /* used index we have consumed up to */
	volatile uint16_t *notify;
};

struct ctx {
	struct hdev d;
	struct dma m;
	struct vq q;
	uint64_t ram_end; /* first byte after the top of RAM */
	uint64_t capacity; /* blk: sectors */
	unsigned timeout_ms;
	bool quiet;
	unsigned lines;
	unsigned unrecovered;
};

enum result { R_USED, R_NEEDS_RESET, R_TIMEOUT };

struct used {
	uint32_t id, len;
};

/* ---------------------------------------------------------------- helpers */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stdout, "HOSTILE-SETUP-FAILED ");
	vfprintf(stdout, fmt, ap);
	fprintf(stdout, "\n");
	va_end(ap);
	fflush(stdout);
	exit(2);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_us(unsigned us)
{
	struct timespec ts = { us / 1000000u, (long)(us % 1000000u) * 1000 };

	nanosleep(&ts, NULL);
}

static int read_sysfs(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = 0;
	return 0;
}

static int write_sysfs(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, s, strlen(s));
	close(fd);
	return n < 0 ? -errno : 0;
}

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x;
}

static void fence(void)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/* ---------------------------------------------------------------- MMIO */

static uint8_t rd8(volatile uint8_t *base, unsigned off)
{
	return base[off];
}

static uint16_t rd16(volatile uint8_t *base, unsigned off)
{
	return le16toh(*(volatile uint16_t *)(volatile void *)(base + off));
}

static uint32_t rd32(volatile uint8_t *base, unsigned off)
{
	return le32toh(*(volatile uint32_t *)(volatile void *)(base + off));
}

static void wr8(volatile uint8_t *base, unsigned off, uint8_t v)
{
	base[off] = v;
	fence();
}

static void wr16(volatile uint8_t *base, unsigned off, uint16_t v)
{
	*(volatile uint16_t *)(volatile void *)(base + off) = htole16(v);
	fence();
}

static void wr32(volatile uint8_t *base, unsigned off, uint32_t v)
{
	*(volatile uint32_t *)(volatile void *)(base + off) = htole32(v);
	fence();
}

static void wr64(volatile uint8_t *base, unsigned off, uint64_t v)
{
	wr32(base, off, (uint32_t)v);
	wr32(base, off + 4, (uint32_t)(v >> 32));
}

/* ---------------------------------------------------------------- config space */

static uint32_t cfg_read(struct hdev *d, unsigned off, unsigned size)
{
	uint32_t v = 0;

	if (pread(d->cfg_fd, &v, size, off) != (ssize_t)size)
		die("config read at 0x%x: %s", off, strerror(errno));
	return le32toh(v);
}

static void cfg_write(struct hdev *d, unsigned off, unsigned size, uint32_t v)
{
	v = htole32(v);
	if (pwrite(d->cfg_fd, &v, size, off) != (ssize_t)size)
		die("config write at 0x%x: %s", off, strerror(errno));
}

/* ---------------------------------------------------------------- memory */

/* Physical address of the page holding va, or 0. */
static uint64_t virt_to_phys(int pm, const void *va)
{
	uint64_t e, page = (uint64_t)sysconf(_SC_PAGESIZE);
	uintptr_t v = (uintptr_t)va;

	if (pread(pm, &e, 8, (off_t)(v / page * 8)) != 8)
		return 0;
	if (!(e >> 63) || !(e & ((1ull << 55) - 1)))
		return 0;
	return (e & ((1ull << 55) - 1)) * page + v % page;
}

/*
 * DMA_LEN bytes of locked memory, physically contiguous: a 2 MiB huge
 * page if the kernel gives one (after asking for a pool of one), else the
 * first contiguous run in a larger anonymous mapping.
 */
static void dma_alloc(struct dma *m)
{
	size_t huge = 2u << 20, big = 16u << 20, page = 4096;
	int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	char buf[32];
	uint8_t *p;

	if (pm < 0)
		die("/proc/self/pagemap: %s", strerror(errno));
	/* Compaction may move even locked pages unless told not to. */
	(void)write_sysfs("/proc/sys/vm/compact_unevictable_allowed", "0");
	if (read_sysfs("/proc/sys/vm/nr_hugepages", buf, sizeof(buf)) == 0 &&
	    atoi(buf) == 0)
		(void)write_sysfs("/proc/sys/vm/nr_hugepages", "1");
	p = mmap(NULL, huge, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE |
			 MAP_LOCKED,
		 -1, 0);
	if (p != MAP_FAILED) {
		memset(p, 0, huge);
		m->va = p;
		m->pa = virt_to_phys(pm, p);
		m->len = DMA_LEN;
		for (size_t o = 0; m->pa && o < DMA_LEN; o += page) {
			if (virt_to_phys(pm, p + o) != m->pa + o)
				m->pa = 0;
		}
		if (m->pa) {
			close(pm);
			return;
		}
		munmap(p, huge);
	}
	p = mmap(NULL, big, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE | MAP_LOCKED, -1, 0);
	if (p == MAP_FAILED)
		die("mmap of %zu bytes: %s", big, strerror(errno));
	for (size_t start = 0; start + DMA_LEN <= big; start += page) {
		uint64_t pa = virt_to_phys(pm, p + start);
		size_t o;

		if (!pa)
			die("no physical address in /proc/self/pagemap (root?)");
		for (o = page; o < DMA_LEN; o += page) {
			if (virt_to_phys(pm, p + start + o) != pa + o)
				break;
		}
		if (o >= DMA_LEN) {
			m->va = p + start;
			m->pa = pa;
			m->len = DMA_LEN;
			memset(m->va, 0, DMA_LEN);
			close(pm);
			return;
		}
		start += o - page;
	}
	die("no %u physically contiguous bytes", DMA_LEN);
}

/* The end of guest RAM: the top "System RAM" range of /proc/iomem, and
 * reserved ranges right after it (firmware areas inside RAM). */
static uint64_t ram_end(void)
{
	FILE *f = fopen("/proc/iomem", "r");
	char line[256];
	uint64_t end = 0;
	bool grew = true;

	if (!f)
		die("/proc/iomem: %s", strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		unsigned long long a, b;

		if (line[0] == ' ')
			continue;
		if (sscanf(line, "%llx-%llx", &a, &b) == 2 &&
		    strstr(line, ": System RAM") && b + 1 > end)
			end = b + 1;
	}
	while (grew) {
		grew = false;
		rewind(f);
		while (fgets(line, sizeof(line), f)) {
			unsigned long long a, b;

			if (line[0] != ' ' &&
			    sscanf(line, "%llx-%llx", &a, &b) == 2 &&
			    a == end && strstr(line, ": Reserved")) {
				end = b + 1;
				grew = true;
			}
		}
	}
	fclose(f);
	if (end == 0)
		die("no System RAM in /proc/iomem (root?)");
	return end;
}

/* ---------------------------------------------------------------- device */

static bool dev_match(const char *dir, uint16_t devid)
{
	char path[300], buf[32];

	snprintf(path, sizeof(path), "%s/vendor", dir);
	if (read_sysfs(path, buf, sizeof(buf)) < 0 ||
	    strtoul(buf, NULL, 16) != VENDOR_VIRTIO)
		return false;
	snprintf(path, sizeof(path), "%s/device", dir);
	if (read_sysfs(path, buf, sizeof(buf)) < 0)
		return false;
	return strtoul(buf, NULL, 16) == devid;
}

/* Find the device: "rng" or "blk" (the first of its kind), or a BDF. */
static void dev_find(struct hdev *d, const char *want)
{
	const char *root = "/sys/bus/pci/devices";
	uint16_t id = 0;

	if (!strcmp(want, "rng"))
		id = DEVID_RNG;
	else if (!strcmp(want, "blk"))
		id = DEVID_BLK;
	if (id) {
		DIR *dir = opendir(root);
		struct dirent *e;
		char best[64] = "";

		if (!dir)
			die("%s: %s", root, strerror(errno));
		while ((e = readdir(dir))) {
			char p[300];

			if (e->d_name[0] == '.')
				continue;
			snprintf(p, sizeof(p), "%s/%s", root, e->d_name);
			if (dev_match(p, id) &&
			    (!best[0] || strcmp(e->d_name, best) < 0))
				snprintf(best, sizeof(best), "%.63s", e->d_name);
		}
		closedir(dir);
		if (!best[0])
			die("no virtio-%s device (0x%04x)", want, id);
		snprintf(d->bdf, sizeof(d->bdf), "%s", best);
	} else {
		snprintf(d->bdf, sizeof(d->bdf), "%s", want);
	}
	snprintf(d->dir, sizeof(d->dir), "%s/%s", root, d->bdf);
	if (dev_match(d->dir, DEVID_RNG))
		d->devid = DEVID_RNG;
	else if (dev_match(d->dir, DEVID_BLK))
		d->devid = DEVID_BLK;
	else
		die("%s is not a modern virtio-rng or virtio-blk", d->bdf);
	d->blk = d->devid == DEVID_BLK;
}

static void dev_unbind(struct hdev *d)
{
	char path[300];
	int r;

	snprintf(path, sizeof(path), "%s/driver/unbind", d->dir);
	if (access(path, W_OK) != 0)
		return; /* no driver bound */
	r = write_sysfs(path, d->bdf);
	if (r < 0)
		die("unbind %s: %s", d->bdf, strerror(-r));
}

/* Map BAR i through resourceN (once). */
static uint8_t *bar_map(struct hdev *d, unsigned i)
{
	char path[300];
	struct stat st;
	off_t len;
	int fd;
	void *p;

	if (i >= 6)
		die("capability names BAR %u", i);
	if (d->map[i])
		return d->map[i];
	snprintf(path, sizeof(path), "%s/resource%u", d->dir, i);
	fd = open(path, O_RDWR | O_SYNC | O_CLOEXEC);
	if (fd < 0)
		die("%s: %s", path, strerror(errno));
	len = fstat(fd, &st) == 0 ? st.st_size : 0;
	if (len <= 0)
		die("%s: no length", path);
	p = mmap(NULL, (size_t)len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		die("mmap %s: %s", path, strerror(errno));
	d->map[i] = p;
	d->map_len[i] = (size_t)len;
	return p;
}

static volatile uint8_t *cap_region(struct hdev *d, unsigned bar, uint32_t off,
				    uint32_t len)
{
	uint8_t *base = bar_map(d, bar);

	if ((uint64_t)off + len > d->map_len[bar])
		die("capability 0x%x+0x%x beyond BAR %u", off, len, bar);
	return base + off;
}

/* Walk the capability list for the four virtio structures. */
static void dev_caps(struct hdev *d)
{
	unsigned p, n = 0;
	bool seen[5] = { false };

	if (!(cfg_read(d, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST))
		die("%s has no capability list", d->bdf);
	for (p = cfg_read(d, PCI_CAP_PTR, 1) & ~3u; p && n < 48;
	     p = cfg_read(d, p + 1, 1) & ~3u, n++) {
		unsigned type, bar;
		uint32_t off, len;

		if (p < 0x40 || p > 0xf0)
			die("capability pointer 0x%x", p);
		if (cfg_read(d, p, 1) != PCI_CAP_ID_VNDR)
			continue;
		type = cfg_read(d, p + 3, 1);
		bar = cfg_read(d, p + 4, 1);
		off = cfg_read(d, p + 8, 4);
		len = cfg_read(d, p + 12, 4);
		if (type < VCAP_COMMON || type > VCAP_DEVICE || seen[type])
			continue; /* the first of each kind is the one */
		seen[type] = true;
		d->cap_bar[type] = bar;
		switch (type) {
		case VCAP_COMMON:
			if (len < CC_LEN)
				die("common cfg of %u bytes", len);
			d->common = cap_region(d, bar, off, CC_LEN);
			break;
		case VCAP_NOTIFY:
			d->notify_mult = cfg_read(d, p + 16, 4);
			d->notify_len = len;
			d->notify = cap_region(d, bar, off, len);
			break;
		case VCAP_ISR:
			d->isr = cap_region(d, bar, off, 1);
			break;
		case VCAP_DEVICE:
			d->devcfg_len = len;
			d->devcfg = cap_region(d, bar, off, len);
			break;
		}
	}
	if (!d->common || !d->notify || !d->isr)
		die("%s lacks a common, notify or ISR capability", d->bdf);
	if (d->blk && (!d->devcfg || d->devcfg_len < 8))
		die("%s: virtio-blk without device config", d->bdf);
}

static void dev_open(struct ctx *c, const char *want)
{
	struct hdev *d = &c->d;
	char path[300];

	dev_find(d, want);
	dev_unbind(d);
	snprintf(path, sizeof(path), "%s/config", d->dir);
	d->cfg_fd = open(path, O_RDWR | O_CLOEXEC);
	if (d->cfg_fd < 0)
		die("%s: %s", path, strerror(errno));
	d->orig_cmd = (uint16_t)cfg_read(d, PCI_COMMAND, 2);
	cfg_write(d, PCI_COMMAND, 2,
		  d->orig_cmd | PCI_CMD_MEMORY | PCI_CMD_MASTER |
			  PCI_CMD_INTX_DISABLE);
	dev_caps(d);
	d->num_queues = rd16(d->common, CC_NUM_QUEUES);
	wr32(d->common, CC_DFSELECT, 0);
	d->features = rd32(d->common, CC_DF);
	wr32(d->common, CC_DFSELECT, 1);
	d->features |= (uint64_t)rd32(d->common, CC_DF) << 32;
	if (d->blk) {
		c->capacity = rd32(d->devcfg, 0) |
			      (uint64_t)rd32(d->devcfg, 4) << 32;
	}
}

/* ---------------------------------------------------------------- the ring */

static struct vring_desc_le *desc_at(struct ctx *c, unsigned off, unsigned i)
{
	return (struct vring_desc_le *)(void *)(c->m.va + off) + i;
}

static void desc_set(struct vring_desc_le *e, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	e->addr = htole64(addr);
	e->len = htole32(len);
	e->flags = htole16(flags);
	e->next = htole16(next);
}

static volatile uint16_t *avail16(struct ctx *c, unsigned i)
{
	return (volatile uint16_t *)(void *)(c->m.va + OFF_AVAIL) + i;
}

static volatile uint16_t *used_idx(struct ctx *c)
{
	return (volatile uint16_t *)(void *)(c->m.va + OFF_USED + 2);
}

static uint64_t pa_of(struct ctx *c, unsigned off)
{
	return c->m.pa + off;
}

static uint64_t data_pa(struct ctx *c, unsigned off)
{
	return c->m.pa + OFF_DATA + off;
}

static uint8_t *data_va(struct ctx *c, unsigned off)
{
	return c->m.va + OFF_DATA + off;
}

static uint8_t status(struct ctx *c)
{
	return rd8(c->d.common, CC_STATUS);
}

/* Reset the device and wait until it reads back 0 (4.1.4.3.2). */
static bool dev_reset(struct ctx *c)
{
	uint64_t end = now_ms() + c->timeout_ms;

	wr8(c->d.common, CC_STATUS, 0);
	while (status(c) != 0) {
		if (now_ms() > end)
			return false;
		sleep_us(1000);
	}
	return true;
}

/* Rings and data back to a known state: zeroes, and guard bytes over the
 * data area. */
static void mem_clear(struct ctx *c)
{
	memset(c->m.va, 0, OFF_DATA);
	memset(c->m.va + OFF_DATA, GUARD, DATA_LEN);
	*avail16(c, 0) = htole16(AVAIL_F_NO_INTERRUPT);
	c->q.avail_idx = 0;
	c->q.used_seen = 0;
}

/* Negotiate features: VERSION_1, INDIRECT_DESC if offered, plus extra
 * (which may be bits the device did not offer). Returns the status read
 * back after FEATURES_OK was written. */
static uint8_t dev_features(struct ctx *c, uint64_t drop, uint64_t extra)
{
	uint64_t f = (c->d.features &
		      (1ull << F_VERSION_1 | 1ull << F_INDIRECT_DESC)) |
		     extra;

	f &= ~drop;
	wr8(c->d.common, CC_STATUS, S_ACKNOWLEDGE);
	wr8(c->d.common, CC_STATUS, S_ACKNOWLEDGE | S_DRIVER);
	wr32(c->d.common, CC_GFSELECT, 0);
	wr32(c->d.common, CC_GF, (uint32_t)f);
	wr32(c->d.common, CC_GFSELECT, 1);
	wr32(c->d.common, CC_GF, (uint32_t)(f >> 32));
	wr8(c->d.common, CC_STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK);
	return status(c);
}

/* Queue 0's settings, before enable. */
static void queue_program(struct ctx *c, uint16_t size, uint64_t desc,
			  uint64_t avail, uint64_t used)
{
	volatile uint8_t *cc = c->d.common;

	wr16(cc, CC_QSELECT, 0);
	wr16(cc, CC_QSIZE, size);
	wr16(cc, CC_QVECTOR, NO_VECTOR);
	wr64(cc, CC_QDESC, desc);
	wr64(cc, CC_QAVAIL, avail);
	wr64(cc, CC_QUSED, used);
}

static void queue_notify_addr(struct ctx *c)
{
	uint32_t off = rd16(c->d.common, CC_QNOTIFY_OFF) * c->d.notify_mult;

	if (off + 2 > c->d.notify_len)
		off = 0;
	c->q.notify = (volatile uint16_t *)(void *)(c->d.notify + off);
}

/* The whole dance: reset, features, queue 0 of c->q.size, DRIVER_OK.
 * Returns false (with why in err) if the device refused a step. */
static bool dev_setup(struct ctx *c, char *err, size_t errlen)
{
	uint16_t max;
	uint8_t st;

	mem_clear(c);
	if (!dev_reset(c)) {
		snprintf(err, errlen, "reset not done: status 0x%02x",
			 status(c));
		return false;
	}
	st = dev_features(c, 0, 0);
	if (!(st & S_FEATURES_OK)) {
		snprintf(err, errlen, "FEATURES_OK refused: 0x%02x", st);
		return false;
	}
	wr16(c->d.common, CC_QSELECT, 0);
	max = rd16(c->d.common, CC_QSIZE);
	if (max == 0) {
		snprintf(err, errlen, "queue 0 unavailable");
		return false;
	}
	c->q.size = max < QSIZE_CAP ? max : QSIZE_CAP;
	queue_program(c, c->q.size, pa_of(c, OFF_DESC), pa_of(c, OFF_AVAIL),
		      pa_of(c, OFF_USED));
	queue_notify_addr(c);
	wr16(c->d.common, CC_QENABLE, 1);
	if (rd16(c->d.common, CC_QENABLE) != 1) {
		snprintf(err, errlen, "queue enable refused, status 0x%02x",
			 status(c));
		return false;
	}
	wr8(c->d.common, CC_STATUS,
	    S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
	st = status(c);
	if ((st & (S_DRIVER_OK | S_NEEDS_RESET | S_FAILED)) != S_DRIVER_OK) {
		snprintf(err, errlen, "status 0x%02x after DRIVER_OK", st);
		return false;
	}
	return true;
}

static void kick(struct ctx *c)
{
	fence();
	*c->q.notify = htole16(0);
	fence();
}

/* Publish head as the next available entry (at slot avail_idx) and bump
 * the index by step (normally 1), then notify. */
static void post_step(struct ctx *c, uint16_t head, uint16_t step)
{
	*avail16(c, 2 + (c->q.avail_idx & (c->q.size - 1))) = htole16(head);
	fence();
	c->q.avail_idx = (uint16_t)(c->q.avail_idx + step);
	*avail16(c, 1) = htole16(c->q.avail_idx);
	kick(c);
}

static void post(struct ctx *c, uint16_t head)
{
	post_step(c, head, 1);
}

/* Wait for a used entry or NEEDS_RESET, at most ms. */
static enum result wait_for(struct ctx *c, unsigned ms, struct used *u)
{
	uint64_t end = now_ms() + ms;

	for (;;) {
		uint16_t idx = le16toh(*used_idx(c));

		fence();
		if (idx != c->q.used_seen) {
			const uint8_t *e = c->m.va + OFF_USED + 4 +
					   8u * (c->q.used_seen & (c->q.size - 1));

			memcpy(&u->id, e, 4);
			memcpy(&u->len, e + 4, 4);
			u->id = le32toh(u->id);
			u->len = le32toh(u->len);
			c->q.used_seen++;
			return R_USED;
		}
		if (status(c) & S_NEEDS_RESET)
			return R_NEEDS_RESET;
		if (now_ms() > end)
			return R_TIMEOUT;
		sleep_us(500);
	}
}

/* ---------------------------------------------------------------- requests */

/*
 * A valid request at descriptor 0 (and up): virtio-rng, one writable
 * buffer of len bytes at D_BUF; virtio-blk, header + len bytes of data +
 * status byte, a read (or a write of what is at D_BUF) of sector.
 * Returns the number of descriptors used.
 */
static unsigned req_rng(struct ctx *c, unsigned table, unsigned first,
			uint32_t len)
{
	desc_set(desc_at(c, table, first), data_pa(c, D_BUF), len, D_WRITE, 0);
	return 1;
}

static void blk_header(struct ctx *c, uint32_t type, uint64_t sector)
{
	uint8_t *h = data_va(c, D_HDR);
	uint32_t t = htole32(type), z = 0;
	uint64_t s = htole64(sector);

	memcpy(h, &t, 4);
	memcpy(h + 4, &z, 4);
	memcpy(h + 8, &s, 8);
	*data_va(c, D_STATUS) = 0xee;
}

static unsigned req_blk(struct ctx *c, unsigned table, unsigned first,
			uint32_t type, uint64_t sector, uint32_t len)
{
	uint16_t dflag = type == BLK_T_OUT ? 0 : D_WRITE;

	blk_header(c, type, sector);
	desc_set(desc_at(c, table, first), data_pa(c, D_HDR), 16, D_NEXT,
		 (uint16_t)(first + 1));
	desc_set(desc_at(c, table, first + 1), data_pa(c, D_BUF), len,
		 dflag | D_NEXT, (uint16_t)(first + 2));
	desc_set(desc_at(c, table, first + 2), data_pa(c, D_STATUS), 1,
		 D_WRITE, 0);
	return 3;
}

/* A valid request for this device at descriptor 0 of the main table. */
static uint32_t valid_len(const struct ctx *c)
{
	return c->d.blk ? 512 : 64;
}

static void req_valid(struct ctx *c)
{
	memset(data_va(c, D_BUF), 0, valid_len(c));
	if (c->d.blk)
		req_blk(c, OFF_DESC, 0, BLK_T_IN, 0, 512);
	else
		req_rng(c, OFF_DESC, 0, 64);
}

/* The descriptor of the valid request that carries the data buffer. */
static struct vring_desc_le *req_data_desc(struct ctx *c, unsigned table,
					   unsigned first)
{
	return desc_at(c, table, first + (c->d.blk ? 1 : 0));
}

/* Are the data area's bytes outside [D_BUF, D_BUF + buf_len) and the blk
 * header and status still the guard pattern? */
static bool guards_intact(struct ctx *c, uint32_t buf_len)
{
	const uint8_t *d = c->m.va + OFF_DATA;

	for (unsigned i = 0; i < DATA_LEN; i++) {
		if (i < D_HDR + 16 && c->d.blk)
			continue;
		if (i == D_STATUS && c->d.blk)
			continue;
		if (i >= D_BUF && i < D_BUF + buf_len)
			continue;
		if (d[i] != GUARD)
			return false;
	}
	return true;
}

/* Did the device leave the whole data area alone (except what we wrote
 * there ourselves: the header and status)? */
static bool data_untouched(struct ctx *c, uint32_t buf_len, int buf_fill)
{
	const uint8_t *d = c->m.va + OFF_DATA;

	for (unsigned i = D_BUF; i < D_BUF + buf_len && buf_fill >= 0; i++) {
		if (d[i] != buf_fill)
			return false;
	}
	if (c->d.blk && d[D_STATUS] != 0xee)
		return false;
	return guards_intact(c, buf_len);
}

/*
 * The outcome word of a posted request: what the device did within the
 * timeout. buf_len bytes at D_BUF were handed over (filled with buf_fill
 * before); anything else it wrote makes the outcome "+dirty".
 */
static void outcome_of(struct ctx *c, enum result r, const struct used *u,
		       uint32_t buf_len, int buf_fill, char *out,
		       size_t outlen, char *det, size_t detlen)
{
	bool clean;

	switch (r) {
	case R_NEEDS_RESET:
		clean = data_untouched(c, buf_len, buf_fill);
		snprintf(out, outlen, "needs-reset%s", clean ? "" : "+dirty");
		snprintf(det, detlen, "status 0x%02x", status(c));
		return;
	case R_TIMEOUT:
		clean = data_untouched(c, buf_len, buf_fill);
		snprintf(out, outlen, "ignored%s", clean ? "" : "+dirty");
		snprintf(det, detlen, "nothing in %u ms, status 0x%02x",
			 c->timeout_ms, status(c));
		return;
	case R_USED:
		break;
	}
	clean = guards_intact(c, buf_len) && u->len <= buf_len + 1;
	if (!c->d.blk) {
		snprintf(out, outlen, "served%s", clean ? "" : "+dirty");
	} else {
		uint8_t s = *data_va(c, D_STATUS);

		if (s == 0)
			snprintf(out, outlen, "ok");
		else if (s == 1)
			snprintf(out, outlen, "ioerr");
		else if (s == 2)
			snprintf(out, outlen, "unsupp");
		else
			snprintf(out, outlen, "status=0x%02x", s);
		if (!clean)
			snprintf(out + strlen(out), outlen - strlen(out),
				 "+dirty");
	}
	snprintf(det, detlen, "used id %u len %u, status 0x%02x", u->id,
		 u->len, status(c));
}

/* Post head, wait, and describe the outcome. */
static void run_request(struct ctx *c, uint16_t head, uint32_t buf_len,
			int buf_fill, char *out, size_t outlen, char *det,
			size_t detlen)
{
	struct used u = { 0, 0 };
	enum result r;

	post(c, head);
	r = wait_for(c, c->timeout_ms, &u);
	outcome_of(c, r, &u, buf_len, buf_fill, out, outlen, det, detlen);
}

/* ---------------------------------------------------------------- checks */

/* A fresh device serves a valid request correctly: rng bytes that are not
 * all zero, a blk read of sector 0 with status OK. */
static bool valid_request_works(struct ctx *c, char *why, size_t whylen)
{
	struct used u;
	enum result r;

	req_valid(c);
	post(c, 0);
	r = wait_for(c, c->timeout_ms, &u);
	if (r != R_USED) {
		snprintf(why, whylen, "%s, status 0x%02x",
			 r == R_TIMEOUT ? "no answer" : "needs-reset",
			 status(c));
		return false;
	}
	if (!c->d.blk) {
		bool nonzero = false;

		for (unsigned i = 0; i < 64; i++)
			nonzero |= data_va(c, D_BUF)[i] != 0;
		if (u.len != 64 || !nonzero || !guards_intact(c, 64)) {
			snprintf(why, whylen, "rng len %u, bytes %s", u.len,
				 nonzero ? "set" : "all zero");
			return false;
		}
		return true;
	}
	if (*data_va(c, D_STATUS) != 0 || u.len != 513 ||
	    !guards_intact(c, 512)) {
		snprintf(why, whylen, "blk status %u len %u",
			 *data_va(c, D_STATUS), u.len);
		return false;
	}
	return true;
}

/* After an attack: does a reset bring the device back? */
static bool recovers(struct ctx *c, char *why, size_t whylen)
{
	if (!dev_setup(c, why, whylen))
		return false;
	return valid_request_works(c, why, whylen);
}

static void report(struct ctx *c, const char *name, const char *outcome,
		   const char *detail)
{
	char why[160] = "";
	bool ok = recovers(c, why, sizeof(why));

	if (!ok)
		c->unrecovered++;
	printf("HOSTILE %s %s %s # %s%s%s\n", name, outcome,
	       ok ? "recovered" : "UNRECOVERED", detail, ok ? "" : "; ",
	       ok ? "" : why);
	fflush(stdout);
	c->lines++;
	(void)dev_reset(c);
}

/* ---------------------------------------------------------------- attacks */

/* Start an attack on a live device; false (reported) if setup failed. */
static bool begin(struct ctx *c, const char *name)
{
	char why[160];

	if (dev_setup(c, why, sizeof(why)))
		return true;
	printf("HOSTILE %s setup-failed UNRECOVERED # %s\n", name, why);
	fflush(stdout);
	c->unrecovered++;
	c->lines++;
	return false;
}

/* The data descriptor of the valid request points at addr, len bytes. */
static void atk_bad_buffer(struct ctx *c, const char *name, uint64_t addr,
			   uint32_t len, bool blk_write)
{
	char out[48], det[160];

	if (!begin(c, name))
		return;
	if (c->d.blk)
		req_blk(c, OFF_DESC, 0, blk_write ? BLK_T_OUT : BLK_T_IN, 0,
			512);
	else
		req_rng(c, OFF_DESC, 0, 64);
	req_data_desc(c, OFF_DESC, 0)->addr = htole64(addr);
	req_data_desc(c, OFF_DESC, 0)->len = htole32(len);
	run_request(c, 0, 0, GUARD, out, sizeof(out), det, sizeof(det));
	report(c, name, out, det);
}

/* Chains whose links are wrong: a loop back to the head, a self-loop, a
 * next beyond the table, a readable after a writable descriptor. */
static void atk_chain(struct ctx *c, const char *name, int kind)
{
	char out[48], det[160];
	unsigned n;

	if (!begin(c, name))
		return;
	if (c->d.blk)
		n = req_blk(c, OFF_DESC, 0, BLK_T_IN, 0, 512);
	else
		n = req_rng(c, OFF_DESC, 0, 64);
	switch (kind) {
	case 0: /* last descriptor links back to the head */
		if (n == 1) {
			desc_set(desc_at(c, OFF_DESC, 0), data_pa(c, D_BUF), 32,
				 D_WRITE | D_NEXT, 1);
			desc_set(desc_at(c, OFF_DESC, 1),
				 data_pa(c, D_BUF + 32), 32, D_WRITE | D_NEXT,
				 0);
		} else {
			desc_at(c, OFF_DESC, n - 1)->flags |= htole16(D_NEXT);
			desc_at(c, OFF_DESC, n - 1)->next = htole16(0);
		}
		break;
	case 1: /* the head is its own next */
		desc_at(c, OFF_DESC, 0)->flags |= htole16(D_NEXT);
		desc_at(c, OFF_DESC, 0)->next = htole16(0);
		break;
	case 2: /* next == queue size */
		desc_at(c, OFF_DESC, n - 1)->flags |= htole16(D_NEXT);
		desc_at(c, OFF_DESC, n - 1)->next = htole16(c->q.size);
		break;
	case 3: /* next == 0xffff */
		desc_at(c, OFF_DESC, n - 1)->flags |= htole16(D_NEXT);
		desc_at(c, OFF_DESC, n - 1)->next = htole16(0xffff);
		break;
	case 4: /* writable, then readable */
		desc_set(desc_at(c, OFF_DESC, n - 1),
			 le64toh(desc_at(c, OFF_DESC, n - 1)->addr),
			 le32toh(desc_at(c, OFF_DESC, n - 1)->len),
			 (uint16_t)(le16toh(desc_at(c, OFF_DESC, n - 1)->flags) |
				    D_NEXT),
			 (uint16_t)n);
		desc_set(desc_at(c, OFF_DESC, n), data_pa(c, D_BUF + 0x800),
			 16, 0, 0);
		break;
	case 5: /* a chain through every descriptor of the table, then
		 * once more: longer than the queue */
		for (unsigned i = 0; i < c->q.size; i++)
			desc_set(desc_at(c, OFF_DESC, i),
				 data_pa(c, D_BUF + 8 * (i % 256)), 8,
				 D_WRITE | D_NEXT,
				 (uint16_t)((i + 1) % c->q.size));
		break;
	}
	run_request(c, 0, 0, GUARD, out, sizeof(out), det, sizeof(det));
	report(c, name, out, det);
}

/* The avail ring's entry or index is wrong. */
static void atk_avail(struct ctx *c, const char *name, int kind)
{
	char out[48], det[160];
	struct used u = { 0, 0 };
	enum result r;

	if (!begin(c, name))
		return;
	req_valid(c);
	if (kind == 0) {
		/* a head beyond the table */
		post(c, (uint16_t)(c->q.size + 5));
	} else {
		/* the index runs far ahead: size + 1 new entries claimed */
		for (unsigned i = 0; i < c->q.size; i++)
			*avail16(c, 2 + i) = htole16(0);
		post_step(c, 0, (uint16_t)(c->q.size + 1));
	}
	r = wait_for(c, c->timeout_ms, &u);
	outcome_of(c, r, &u, valid_len(c), 0, out, sizeof(out), det,
		   sizeof(det));
	report(c, name, out, det);
}

/* Indirect tables with something wrong, in the indirect area. */
static void atk_indirect(struct ctx *c, const char *name, int kind)
{
	char out[48], det[160];
	uint64_t ind = pa_of(c, OFF_IND);
	uint32_t len;
	unsigned n, buf_len = valid_len(c);
	uint16_t flags = D_INDIRECT;

	if (!begin(c, name))
		return;
	if (!(c->d.features >> F_INDIRECT_DESC & 1)) {
		printf("HOSTILE %s skip recovered # no INDIRECT_DESC\n", name);
		c->lines++;
		return;
	}
	if (c->d.blk)
		n = req_blk(c, OFF_IND, 0, BLK_T_IN, 0, 512);
	else
		n = req_rng(c, OFF_IND, 0, 64);
	memset(data_va(c, D_BUF), 0, buf_len);
	len = 16 * n;
	switch (kind) {
	case 0: /* the table outside RAM */
		ind = GPA_HIGH;
		break;
	case 1: /* a length that is not a whole number of descriptors */
		len = 16 * n + 8;
		break;
	case 2: /* length 0 */
		len = 0;
		break;
	case 3: /* an indirect descriptor inside the indirect table */
		desc_set(desc_at(c, OFF_IND, 0), pa_of(c, OFF_IND + 0x1000),
			 16 * n, D_INDIRECT, 0);
		if (c->d.blk)
			req_blk(c, OFF_IND + 0x1000, 0, BLK_T_IN, 0, 512);
		else
			req_rng(c, OFF_IND + 0x1000, 0, 64);
		len = 16;
		break;
	case 4: /* INDIRECT together with NEXT */
		flags |= D_NEXT;
		desc_set(desc_at(c, OFF_DESC, 1), data_pa(c, D_BUF + 0x800), 16,
			 D_WRITE, 0);
		break;
	case 5: /* a loop inside the table */
		desc_at(c, OFF_IND, n - 1)->flags |= htole16(D_NEXT);
		desc_at(c, OFF_IND, n - 1)->next = htole16(0);
		break;
	case 6: /* next beyond the table's end */
		desc_at(c, OFF_IND, n - 1)->flags |= htole16(D_NEXT);
		desc_at(c, OFF_IND, n - 1)->next = htole16((uint16_t)n);
		break;
	case 7: /* a table claiming 2000 entries (more than any queue) */
		len = 2000 * 16;
		break;
	case 8: { /* a well-formed table of 2 x queue size entries: a chain
		   * longer than the queue; rng only (16-byte buffers) */
		unsigned cnt = 2u * c->q.size;

		if (c->d.blk || cnt * 16 > OFF_DATA - OFF_IND) {
			printf("HOSTILE %s skip recovered # rng only\n", name);
			c->lines++;
			return;
		}
		for (unsigned i = 0; i < cnt; i++)
			desc_set(desc_at(c, OFF_IND, i),
				 data_pa(c, D_BUF + 16 * i), 16,
				 (uint16_t)(D_WRITE | (i + 1 < cnt ? D_NEXT : 0)),
				 (uint16_t)(i + 1));
		memset(data_va(c, D_BUF), 0, 16 * cnt);
		len = 16 * cnt;
		buf_len = 16 * cnt;
		break;
	}
	}
	desc_set(desc_at(c, OFF_DESC, 0), ind, len, flags, 1);
	run_request(c, 0, buf_len, 0, out, sizeof(out), det, sizeof(det));
	if (kind == 8 && !strcmp(out, "served")) {
		/* Served: the bytes reported must be within the table's
		 * buffers (checked) and at most their sum. */
		snprintf(det + strlen(det), sizeof(det) - strlen(det),
			 " of %u offered", buf_len);
	}
	report(c, name, out, det);
}

/* Queue settings written to common cfg before enable. Returns the
 * outcome: refused (not enabled, or NEEDS_RESET), clamped, accepted. */
static void atk_queue_cfg(struct ctx *c, const char *name, int kind)
{
	char det[200];
	uint16_t max, want, got, en;
	uint64_t desc = pa_of(c, OFF_DESC), avail = pa_of(c, OFF_AVAIL),
		 used = pa_of(c, OFF_USED);
	uint8_t st;

	mem_clear(c);
	if (!dev_reset(c) || !(dev_features(c, 0, 0) & S_FEATURES_OK)) {
		report(c, name, "setup-failed", "reset or features");
		return;
	}
	wr16(c->d.common, CC_QSELECT, 0);
	max = rd16(c->d.common, CC_QSIZE);
	want = max < QSIZE_CAP ? max : QSIZE_CAP;
	switch (kind) {
	case 0:
		want = (uint16_t)(want > 4 ? want - 1 : 3); /* not 2^n */
		break;
	case 1:
		want = (uint16_t)(max * 2); /* above the maximum */
		break;
	case 2:
		want = 0x8001; /* above the spec's 32768, not 2^n */
		break;
	case 3:
		want = 0;
		break;
	case 4:
		desc = GPA_LAPIC;
		break;
	case 5:
		used = c->ram_end - 8; /* straddles the end of RAM */
		break;
	case 6:
		avail = GPA_WRAP;
		break;
	case 7:
		desc = pa_of(c, OFF_DESC) + 8; /* misaligned */
		break;
	}
	queue_program(c, want, desc, avail, used);
	got = rd16(c->d.common, CC_QSIZE);
	c->q.size = got;
	wr16(c->d.common, CC_QENABLE, 1);
	en = rd16(c->d.common, CC_QENABLE);
	st = status(c);
	snprintf(det, sizeof(det),
		 "wrote size %u (max %u), read back %u, enable %u, "
		 "status 0x%02x",
		 want, max, got, en, st);
	if (!en || (st & S_NEEDS_RESET)) {
		report(c, name, "refused", det);
		return;
	}
	/* Taken: finish the setup and see what a request does. A size the
	 * device clamped to a legal one is fine if it then works. */
	wr8(c->d.common, CC_STATUS,
	    S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
	if (kind <= 3 && got != want && got && got <= max &&
	    !(got & (got - 1))) {
		char why[160];

		queue_notify_addr(c);
		if (valid_request_works(c, why, sizeof(why))) {
			report(c, name, "clamped", det);
			return;
		}
	}
	if (kind >= 4 && kind <= 6) {
		/* Rings outside RAM: a request (our avail ring is in RAM
		 * unless it is the bad one) must break the device. */
		struct used u;
		enum result r;

		queue_notify_addr(c);
		c->q.size = c->q.size ? c->q.size : 1;
		if (kind != 6)
			req_valid(c);
		if (kind != 6 && !(c->q.size & (c->q.size - 1)))
			post(c, 0);
		else
			kick(c);
		r = wait_for(c, c->timeout_ms, &u);
		if (r == R_NEEDS_RESET) {
			report(c, name, "needs-reset", det);
			return;
		}
	}
	report(c, name, "accepted", det);
}

/* Features the device did not offer, or without VERSION_1. */
static void atk_features(struct ctx *c, const char *name, int kind)
{
	char det[160];
	uint8_t st;

	mem_clear(c);
	if (!dev_reset(c)) {
		report(c, name, "setup-failed", "reset");
		return;
	}
	if (kind == 0) {
		uint64_t bad = 0;

		/* The highest bit the device did not offer. */
		for (int b = 63; b >= 0 && !bad; b--) {
			if (!(c->d.features >> b & 1))
				bad = 1ull << b;
		}
		st = dev_features(c, 0, bad);
	} else {
		st = dev_features(c, 1ull << F_VERSION_1, 0);
	}
	snprintf(det, sizeof(det), "status 0x%02x after FEATURES_OK", st);
	report(c, name, st & S_FEATURES_OK ? "accepted" : "refused", det);
}

/* Is the device still answering as it did? */
static bool dev_sane(struct ctx *c)
{
	return rd16(c->d.common, CC_NUM_QUEUES) == c->d.num_queues &&
	       !(status(c) & S_NEEDS_RESET);
}

/* After garbage, without a reset: the queue still serves a new valid
 * request? (Device at DRIVER_OK with the original rings.) */
static void after_garbage(struct ctx *c, const char *name, const char *extra)
{
	char why[160], det[240];
	bool sane = dev_sane(c);
	bool works = sane && valid_request_works(c, why, sizeof(why));

	if (!sane)
		snprintf(why, sizeof(why), "num_queues %u (was %u), status 0x%02x",
			 rd16(c->d.common, CC_NUM_QUEUES), c->d.num_queues,
			 status(c));
	snprintf(det, sizeof(det), "%s%s%s", extra, works ? "" : "; ",
		 works ? "" : why);
	report(c, name, works ? "survived" : "broken", det);
}

/* Seeded garbage over common cfg, never making a ring address point into
 * RAM (our own guest must survive it), never notifying. Then a reset. */
static void atk_common_garbage(struct ctx *c, const char *name)
{
	volatile uint8_t *cc = c->d.common;
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	char det[120];

	if (!begin(c, name))
		return;
	for (unsigned i = 0; i < 4000; i++) {
		uint64_t r = xorshift(&seed), v = xorshift(&seed);
		unsigned size = 1u << (r & 3), off = (unsigned)(r >> 8) % CC_LEN;

		off &= ~(size - 1);
		if (off + size > CC_LEN)
			continue;
		if (off >= CC_QDESC) {
			/* an address: always far outside RAM */
			unsigned base = CC_QDESC + (off - CC_QDESC) / 8 * 8;

			wr32(cc, base + 4, (uint32_t)(v >> 32) | 0x80000000u);
			wr32(cc, base, (uint32_t)v);
			continue;
		}
		if (off <= CC_STATUS && off + size > CC_STATUS &&
		    (v >> (8 * (CC_STATUS - off)) & 0xff) == 0)
			v |= 0x80ull << (8 * (CC_STATUS - off)); /* no reset */
		switch (size) {
		case 1:
			wr8(cc, off, (uint8_t)v);
			break;
		case 2:
			wr16(cc, off, (uint16_t)v);
			break;
		case 4:
			wr32(cc, off, (uint32_t)v);
			break;
		default:
			wr64(cc, off, v);
			break;
		}
		(void)rd32(cc, off & ~3u);
	}
	(void)rd8(c->d.isr, 0);
	snprintf(det, sizeof(det), "4000 writes, num_queues %u (was %u)",
		 rd16(cc, CC_NUM_QUEUES), c->d.num_queues);
	report(c, name,
	       rd16(cc, CC_NUM_QUEUES) == c->d.num_queues ? "survived" :
							      "broken",
	       det);
}

/* Garbage over the device config space (virtio-blk's is read-only to
 * the driver): the capacity must not change. */
static void atk_devcfg_garbage(struct ctx *c, const char *name)
{
	uint64_t seed = 0x123456789abcdefull, cap;
	char det[120];

	if (!c->d.devcfg) {
		printf("HOSTILE %s skip recovered # no device config\n", name);
		c->lines++;
		return;
	}
	if (!begin(c, name))
		return;
	for (unsigned i = 0; i < 1000; i++) {
		uint64_t v = xorshift(&seed);
		unsigned off = (unsigned)(v >> 40) % c->d.devcfg_len & ~3u;

		if (off + 4 <= c->d.devcfg_len)
			wr32(c->d.devcfg, off, (uint32_t)v);
	}
	cap = rd32(c->d.devcfg, 0) | (uint64_t)rd32(c->d.devcfg, 4) << 32;
	snprintf(det, sizeof(det), "capacity %" PRIu64 " (was %" PRIu64 ")",
		 cap, c->capacity);
	if (c->d.blk && cap != c->capacity)
		report(c, name, "changed", det);
	else
		after_garbage(c, name, det);
}

/* The BAR holding the common cfg: config offset of its low register. */
static unsigned common_bar_reg(struct ctx *c)
{
	return PCI_BAR0 + 4 * c->d.cap_bar[VCAP_COMMON];
}

/*
 * Config-space writes while the device is live, then the original values
 * back; the queue must go on serving without a reset:
 *   0 BAR sizing (all ones to the low and the high half, read, restore)
 *   1 command register flips (decoding and bus mastering off, on)
 *   2 the BAR moved into guest RAM (16 MiB: the kernel's text) and back
 *   3 the BAR moved onto another virtio device's BAR and back
 *   4 a request posted and notified while decoding is off
 */
static void atk_pci(struct ctx *c, const char *name, int kind)
{
	struct hdev *d = &c->d;
	unsigned reg = common_bar_reg(c);
	uint32_t lo = cfg_read(d, reg, 4), hi = 0, size_lo = 0;
	bool bar64 = (lo & 0x6) == 0x4;
	uint16_t cmd = (uint16_t)cfg_read(d, PCI_COMMAND, 2);
	char det[200] = "";

	if (!begin(c, name))
		return;
	if (bar64)
		hi = cfg_read(d, reg + 4, 4);
	switch (kind) {
	case 0:
		cfg_write(d, reg, 4, 0xffffffffu);
		size_lo = cfg_read(d, reg, 4);
		if (bar64) {
			cfg_write(d, reg + 4, 4, 0xffffffffu);
			(void)cfg_read(d, reg + 4, 4);
		}
		cfg_write(d, reg, 4, lo);
		if (bar64)
			cfg_write(d, reg + 4, 4, hi);
		snprintf(det, sizeof(det), "BAR 0x%08x sized 0x%08x", lo,
			 size_lo);
		break;
	case 1:
		for (unsigned i = 0; i < 20; i++) {
			cfg_write(d, PCI_COMMAND, 2,
				  (uint16_t)(cmd & ~(PCI_CMD_MEMORY |
						     PCI_CMD_MASTER)));
			cfg_write(d, PCI_COMMAND, 2, cmd);
		}
		cfg_write(d, PCI_COMMAND, 2, 0xffff);
		cfg_write(d, PCI_COMMAND, 2, cmd);
		snprintf(det, sizeof(det), "21 flips of 0x%04x", cmd);
		break;
	case 2:
		if (bar64)
			cfg_write(d, reg + 4, 4, 0);
		cfg_write(d, reg, 4, 0x01000000u | (lo & 0xf));
		sleep_us(10000);
		cfg_write(d, reg, 4, lo);
		if (bar64)
			cfg_write(d, reg + 4, 4, hi);
		snprintf(det, sizeof(det), "BAR at 16 MiB and back to 0x%08x",
			 lo);
		break;
	case 3: {
		/* another virtio device's BAR of the same size */
		DIR *dir = opendir("/sys/bus/pci/devices");
		struct dirent *e;
		uint32_t other_lo = 0, other_hi = 0;
		char other[64] = "";

		while (dir && (e = readdir(dir))) {
			char p[300], buf[32];
			int fd;
			uint32_t v[2] = { 0, 0 };

			if (e->d_name[0] == '.' || !strcmp(e->d_name, d->bdf))
				continue;
			snprintf(p, sizeof(p), "/sys/bus/pci/devices/%s/vendor",
				 e->d_name);
			if (read_sysfs(p, buf, sizeof(buf)) < 0 ||
			    strtoul(buf, NULL, 16) != VENDOR_VIRTIO)
				continue;
			snprintf(p, sizeof(p), "/sys/bus/pci/devices/%s/config",
				 e->d_name);
			fd = open(p, O_RDONLY | O_CLOEXEC);
			if (fd < 0)
				continue;
			if (pread(fd, v, 8, reg) == 8 &&
			    (le32toh(v[0]) & ~0xfu) && !other[0]) {
				other_lo = le32toh(v[0]);
				other_hi = le32toh(v[1]);
				snprintf(other, sizeof(other), "%.63s", e->d_name);
			}
			close(fd);
		}
		if (dir)
			closedir(dir);
		if (!other[0]) {
			snprintf(det, sizeof(det), "no other virtio BAR");
			break;
		}
		if (bar64)
			cfg_write(d, reg + 4, 4, other_hi);
		cfg_write(d, reg, 4, (other_lo & ~0xfu) | (lo & 0xf));
		sleep_us(10000);
		cfg_write(d, reg, 4, lo);
		if (bar64)
			cfg_write(d, reg + 4, 4, hi);
		snprintf(det, sizeof(det),
			 "BAR onto %s's 0x%08x and back to 0x%08x", other,
			 other_lo, lo);
		break;
	}
	case 4: {
		struct used u;
		enum result r;
		bool served;

		cfg_write(d, PCI_COMMAND, 2,
			  (uint16_t)(cmd & ~PCI_CMD_MEMORY));
		req_valid(c);
		post(c, 0); /* the notify goes nowhere */
		/* The registers do not decode now (reads are all ones):
		 * look at the used ring only. */
		sleep_us(200000);
		served = le16toh(*used_idx(c)) != c->q.used_seen;
		cfg_write(d, PCI_COMMAND, 2, cmd);
		if (!served)
			kick(c);
		r = wait_for(c, c->timeout_ms, &u);
		if (r != R_USED) {
			report(c, name, "broken",
			       "request posted with decoding off not served "
			       "after a notify with decoding on");
			return;
		}
		snprintf(det, sizeof(det), "served %s",
			 served ? "while decoding was off" :
				  "after decoding came back");
		break;
	}
	}
	after_garbage(c, name, det);
	if (!dev_sane(c)) {
		/* Repair what the attack broke (a BAR the VMM lost), so
		 * the attacks after it still mean something. */
		cfg_write(d, PCI_COMMAND, 2, (uint16_t)(cmd & ~PCI_CMD_MEMORY));
		cfg_write(d, PCI_COMMAND, 2, cmd);
	}
}

/* Notifications for queues that do not exist: through the notify
 * structure at queue offsets past num_queues, and queue numbers that do
 * not exist written to queue 0's address. */
static void atk_notify(struct ctx *c, const char *name)
{
	volatile uint8_t *n = c->d.notify;
	uint32_t mult = c->d.notify_mult ? c->d.notify_mult : 4;
	size_t room = c->d.map_len[c->d.cap_bar[VCAP_NOTIFY]] -
		      (size_t)(n - c->d.map[c->d.cap_bar[VCAP_NOTIFY]]);
	struct used u;
	enum result r;
	char det[120];

	if (!begin(c, name))
		return;

	/* Queue numbers past num_queues, where their notify addresses
	 * would be (inside the notify structure or past its end, but in
	 * the BAR). */
	for (unsigned q = c->d.num_queues; q < c->d.num_queues + 64u; q++) {
		if ((uint64_t)q * mult + 2 <= room)
			wr16(n, q * mult, (uint16_t)q);
	}
	wr16((volatile uint8_t *)c->q.notify, 0, 0xffff);
	wr16((volatile uint8_t *)c->q.notify, 0, 7);
	wr32((volatile uint8_t *)c->q.notify, 0, 0xffffffffu);
	/* Nothing was posted: nothing may come back. */
	r = wait_for(c, 300, &u);
	snprintf(det, sizeof(det), "%s after the bogus notifications",
		 r == R_USED ? "a used entry" :
		 r == R_NEEDS_RESET ? "NEEDS_RESET" : "no reaction");
	if (r == R_USED)
		report(c, name, "bogus-used", det);
	else
		after_garbage(c, name, det);
}

/* Ring addresses written while the queue is enabled must not move it. */
static void atk_ring_move_live(struct ctx *c, const char *name)
{
	if (!begin(c, name))
		return;
	wr16(c->d.common, CC_QSELECT, 0);
	wr64(c->d.common, CC_QDESC, GPA_LAPIC);
	wr64(c->d.common, CC_QUSED, GPA_HIGH);
	wr16(c->d.common, CC_QSIZE, 3);
	after_garbage(c, name, "desc, used and size written while enabled");
}

/* ---------------------------------------------------------------- virtio-blk */

/* A virtio-blk request with a bad header. */
static void atk_blk(struct ctx *c, const char *name, int kind)
{
	char out[48], det[160];
	uint32_t buf_len = 512;
	int fill = 0;

	if (!begin(c, name))
		return;
	switch (kind) {
	case 0: /* read the sector past the end */
		req_blk(c, OFF_DESC, 0, BLK_T_IN, c->capacity, 512);
		break;
	case 1: /* a sector whose byte offset overflows */
		req_blk(c, OFF_DESC, 0, BLK_T_IN, ~0ull, 512);
		break;
	case 2: /* a write straddling the end (the host checks the file) */
		memset(data_va(c, D_BUF), 'X', 1024);
		req_blk(c, OFF_DESC, 0, BLK_T_OUT, c->capacity - 1, 1024);
		buf_len = 1024;
		fill = 'X';
		break;
	case 3: /* a type that does not exist */
		req_blk(c, OFF_DESC, 0, 0x7777, 0, 512);
		break;
	case 4: /* a header of 8 bytes */
		req_blk(c, OFF_DESC, 0, BLK_T_IN, 0, 512);
		desc_at(c, OFF_DESC, 0)->len = htole32(8);
		break;
	case 5: /* a data length that is not a whole sector */
		req_blk(c, OFF_DESC, 0, BLK_T_IN, 0, 100);
		buf_len = 100;
		break;
	case 6: { /* discard with too many segments, flags set */
		uint8_t *seg = data_va(c, D_BUF);

		blk_header(c, BLK_T_DISCARD, 0);
		memset(seg, 0, 17 * 16);
		for (unsigned i = 0; i < 17; i++) {
			uint64_t s = htole64(0);
			uint32_t num = htole32(1), fl = htole32(0xffffffffu);

			memcpy(seg + 16 * i, &s, 8);
			memcpy(seg + 16 * i + 8, &num, 4);
			memcpy(seg + 16 * i + 12, &fl, 4);
		}
		desc_set(desc_at(c, OFF_DESC, 0), data_pa(c, D_HDR), 16,
			 D_NEXT, 1);
		desc_set(desc_at(c, OFF_DESC, 1), data_pa(c, D_BUF), 17 * 16,
			 D_NEXT, 2);
		desc_set(desc_at(c, OFF_DESC, 2), data_pa(c, D_STATUS), 1,
			 D_WRITE, 0);
		buf_len = 17 * 16;
		fill = -1;
		break;
	}
	case 7: /* no writable status byte at all */
		req_blk(c, OFF_DESC, 0, BLK_T_IN, 0, 512);
		desc_at(c, OFF_DESC, 0)->flags = htole16(0);
		break;
	}
	if (kind != 2 && kind != 6)
		memset(data_va(c, D_BUF), 0, buf_len);
	run_request(c, 0, buf_len, fill, out, sizeof(out), det, sizeof(det));
	if (kind == 2 || kind == 6) {
		/* the buffer was readable: the device must not have written
		 * it, only the status */
		bool same = true;

		for (unsigned i = 0; i < buf_len && kind == 2; i++)
			same &= data_va(c, D_BUF)[i] == 'X';
		if (!same && !strstr(out, "+dirty"))
			snprintf(out + strlen(out), sizeof(out) - strlen(out),
				 "+dirty");
	}
	report(c, name, out, det);
}

/* The last word: a reset and valid requests. virtio-blk writes
 * HOSTILE_PATTERN to HOSTILE_SECTOR, reads it back and compares. */
static bool final_check(struct ctx *c, char *why, size_t whylen)
{
	struct used u;

	if (!dev_setup(c, why, whylen) || !valid_request_works(c, why, whylen))
		return false;
	if (!c->d.blk)
		return true;
	memset(data_va(c, D_BUF), 0, 512);
	memcpy(data_va(c, D_BUF), HOSTILE_PATTERN, sizeof(HOSTILE_PATTERN));
	req_blk(c, OFF_DESC, 0, BLK_T_OUT, HOSTILE_SECTOR, 512);
	post(c, 0);
	if (wait_for(c, c->timeout_ms, &u) != R_USED ||
	    *data_va(c, D_STATUS) != 0) {
		snprintf(why, whylen, "write of sector %u failed",
			 HOSTILE_SECTOR);
		return false;
	}
	memset(data_va(c, D_BUF), 0, 512);
	req_blk(c, OFF_DESC, 0, BLK_T_IN, HOSTILE_SECTOR, 512);
	post(c, 0);
	if (wait_for(c, c->timeout_ms, &u) != R_USED ||
	    *data_va(c, D_STATUS) != 0 ||
	    memcmp(data_va(c, D_BUF), HOSTILE_PATTERN,
		   sizeof(HOSTILE_PATTERN))) {
		snprintf(why, whylen, "read back of sector %u differs",
			 HOSTILE_SECTOR);
		return false;
	}
	return true;
}

/* ---------------------------------------------------------------- main */

static void usage(void)
{
	fprintf(stderr, "usage: virtio_hostile [-t MS] rng|blk|BDF\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct ctx c;
	char why[200];
	int opt;
	bool ok;

	memset(&c, 0, sizeof(c));
	c.timeout_ms = 3000;
	while ((opt = getopt(argc, argv, "t:")) != -1) {
		switch (opt) {
		case 't':
			c.timeout_ms = (unsigned)atoi(optarg);
			break;
		default:
			usage();
		}
	}
	if (optind + 1 != argc || c.timeout_ms == 0)
		usage();
	setvbuf(stdout, NULL, _IOLBF, 0);
	/* A device that never answers costs a timeout per attack at most;
	 * this bounds the whole run. */
	alarm(600);
	c.ram_end = ram_end();
	dma_alloc(&c.m);
	dev_open(&c, argv[optind]);
	printf("HOSTILE-DEVICE %s %s features 0x%016" PRIx64
	       " queues %u ram_end 0x%" PRIx64 " dma 0x%" PRIx64
	       " capacity %" PRIu64 "\n",
	       c.d.bdf, c.d.blk ? "virtio-blk" : "virtio-rng", c.d.features,
	       c.d.num_queues, c.ram_end, c.m.pa, c.capacity);
	if (!recovers(&c, why, sizeof(why)))
		die("a valid request before any attack failed: %s", why);

	/* Buffers outside guest RAM. */
	atk_bad_buffer(&c, "buf-addr-high", GPA_HIGH, 4096, false);
	atk_bad_buffer(&c, "buf-addr-lapic", GPA_LAPIC, 4096, false);
	atk_bad_buffer(&c, "buf-addr-ram-end", c.ram_end - 2048, 4096, false);
	atk_bad_buffer(&c, "buf-addr-wrap", GPA_WRAP, 0x2000, false);
	atk_bad_buffer(&c, "buf-len-4g", data_pa(&c, D_BUF), 0xffffffffu,
		       false);
	if (c.d.blk) {
		atk_bad_buffer(&c, "blk-write-from-high", GPA_HIGH, 512, true);
		atk_bad_buffer(&c, "blk-write-from-ram-end", c.ram_end - 256,
			       512, true);
	}
	/* Chains. */
	atk_chain(&c, "chain-loop", 0);
	atk_chain(&c, "chain-self-loop", 1);
	atk_chain(&c, "chain-next-eq-size", 2);
	atk_chain(&c, "chain-next-ffff", 3);
	atk_chain(&c, "chain-read-after-write", 4);
	atk_chain(&c, "chain-longer-than-queue", 5);
	atk_avail(&c, "avail-head-out-of-range", 0);
	atk_avail(&c, "avail-idx-jump", 1);
	/* Indirect tables. */
	atk_indirect(&c, "indirect-outside-ram", 0);
	atk_indirect(&c, "indirect-len-not-16n", 1);
	atk_indirect(&c, "indirect-len-zero", 2);
	atk_indirect(&c, "indirect-nested", 3);
	atk_indirect(&c, "indirect-with-next", 4);
	atk_indirect(&c, "indirect-loop", 5);
	atk_indirect(&c, "indirect-next-out-of-range", 6);
	atk_indirect(&c, "indirect-2000-entries", 7);
	atk_indirect(&c, "indirect-longer-than-queue", 8);
	/* Queue setup. */
	atk_queue_cfg(&c, "qsize-not-pow2", 0);
	atk_queue_cfg(&c, "qsize-above-max", 1);
	atk_queue_cfg(&c, "qsize-0x8001", 2);
	atk_queue_cfg(&c, "qsize-zero", 3);
	atk_queue_cfg(&c, "ring-desc-lapic", 4);
	atk_queue_cfg(&c, "ring-used-ram-end", 5);
	atk_queue_cfg(&c, "ring-avail-wrap", 6);
	atk_queue_cfg(&c, "ring-desc-misaligned", 7);
	atk_ring_move_live(&c, "ring-move-while-live");
	atk_features(&c, "features-unoffered", 0);
	atk_features(&c, "features-no-version1", 1);
	/* Registers. */
	atk_common_garbage(&c, "common-cfg-garbage");
	atk_devcfg_garbage(&c, "device-cfg-garbage");
	atk_notify(&c, "notify-bad-queues");
	atk_pci(&c, "pci-bar-sizing", 0);
	atk_pci(&c, "pci-command-flips", 1);
	atk_pci(&c, "pci-bar-into-ram", 2);
	atk_pci(&c, "pci-decode-off-notify", 4);
	atk_pci(&c, "pci-bar-overlap", 3);
	if (c.d.blk) {
		atk_blk(&c, "blk-sector-past-end", 0);
		atk_blk(&c, "blk-sector-overflow", 1);
		atk_blk(&c, "blk-write-straddles-end", 2);
		atk_blk(&c, "blk-bad-type", 3);
		atk_blk(&c, "blk-short-header", 4);
		atk_blk(&c, "blk-len-not-sector", 5);
		atk_blk(&c, "blk-discard-17-segments", 6);
		atk_blk(&c, "blk-no-status", 7);
	}

	ok = final_check(&c, why, sizeof(why));
	printf("HOSTILE-RECOVERED %s%s%s\n", ok ? "ok" : "FAILED ",
	       ok ? "" : "# ", ok ? "" : why);
	printf("HOSTILE-DONE %u attacks, %u unrecovered\n", c.lines,
	       c.unrecovered);
	(void)dev_reset(&c);
	cfg_write(&c.d, PCI_COMMAND, 2, c.d.orig_cmd);
	return 0;
}
