// SPDX-License-Identifier: MIT
/*
 * virtio-blk requests against a raw temporary file and a qcow2 image made
 * with qcow_create: read, write, flush, get-id, discard and write-zeroes
 * reach the disk; malformed requests get IOERR or UNSUPP; discard on
 * qcow2 gives clusters back (qcow_image_map and qemu-img agree). Also one
 * request end to end through the PCI transport on a fake VM.
 */
#include <base/endian.h>
#include <base/test.h>
#include <fcntl.h>
#include <qcow/qcow.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../pci.h"
#include "../virtio_blk.h"
#include "../virtio_pci.h"
#include "fake_platform.h"

#define DISK (4u << 20)
#define CLUSTER 65536u

static struct hk_vq_chain chain;
static uint8_t hdr[16 + 16 * 20], data[1 << 20], status;

static char *make_raw(void)
{
	static char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/disk.raw", test_tmpdir());
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ASSERT_TRUE(fd >= 0);
	ASSERT_OK(ftruncate(fd, DISK));
	close(fd);
	return path;
}

static char *make_qcow(void)
{
	static char path[512];
	struct qcow_create_opts o = { .size = DISK };
	struct qcow_error err;

	snprintf(path, sizeof(path), "%s/disk.qcow2", test_tmpdir());
	ASSERT_OK(qcow_create(path, &o, &err));
	return path;
}

/* A chain: header (+ extra readable bytes), data, status. */
static uint8_t run(struct hk_vblk *b, uint32_t type, uint64_t sector,
		   size_t out_extra, size_t in_data, uint32_t *used)
{
	unsigned n = 0;

	store_le32(hdr, type);
	store_le32(hdr + 4, 0);
	store_le64(hdr + 8, sector);
	memset(&chain, 0, sizeof(chain));
	chain.iov[n++] = (struct iovec){ hdr, 16 };
	if (out_extra) {
		if (type == HK_VBLK_T_OUT)
			chain.iov[n++] = (struct iovec){ data, out_extra };
		else
			chain.iov[n++] = (struct iovec){ hdr + 16, out_extra };
	}
	chain.n_out = n;
	chain.out_len = 16 + out_extra;
	if (in_data)
		chain.iov[n++] = (struct iovec){ data, in_data };
	chain.iov[n++] = (struct iovec){ &status, 1 };
	chain.n_in = n - chain.n_out;
	chain.in_len = in_data + 1;
	status = 0xee;
	*used = hk_vblk_request(b, &chain);
	return status;
}

static void put_seg(unsigned i, uint64_t sector, uint32_t num, uint32_t flags)
{
	store_le64(hdr + 16 + 16 * i, sector);
	store_le32(hdr + 24 + 16 * i, num);
	store_le32(hdr + 28 + 16 * i, flags);
}

static void read_write_roundtrip(struct hk_vblk *b)
{
	uint32_t used;

	for (size_t i = 0; i < 8192; i++)
		data[i] = (uint8_t)(i * 7 + 1);
	ASSERT_EQ_U64(run(b, HK_VBLK_T_OUT, 100, 8192, 0, &used), 0);
	ASSERT_EQ_U64(used, 1);
	memset(data, 0, 8192);
	ASSERT_EQ_U64(run(b, HK_VBLK_T_IN, 100, 0, 8192, &used), 0);
	ASSERT_EQ_U64(used, 8193);
	for (size_t i = 0; i < 8192; i++)
		ASSERT_EQ_U64(data[i], (uint8_t)(i * 7 + 1));
	ASSERT_EQ_U64(run(b, HK_VBLK_T_FLUSH, 0, 0, 0, &used), 0);
	ASSERT_EQ_U64(run(b, HK_VBLK_T_GET_ID, 0, 0, 20, &used), 0);
	ASSERT_EQ_U64(used, 21);
}

static void bad_requests(struct hk_vblk *b)
{
	uint64_t last = DISK / 512;
	uint32_t used;

	/* Past the end, straddling the end, huge sectors, odd lengths. */
	ASSERT_EQ_U64(run(b, HK_VBLK_T_IN, last, 0, 512, &used), 1);
	ASSERT_EQ_U64(run(b, HK_VBLK_T_IN, last - 1, 0, 1024, &used), 1);
	ASSERT_EQ_U64(
		run(b, HK_VBLK_T_OUT, UINT64_MAX / 512 + 5, 512, 0, &used), 1);
	ASSERT_EQ_U64(run(b, HK_VBLK_T_IN, 0, 0, 100, &used), 1);
	ASSERT_EQ_U64(run(b, HK_VBLK_T_OUT, 0, 511, 0, &used), 1);
	/* Unknown type; discard with flags; too many segments; no segment;
	 * a partial segment. */
	ASSERT_EQ_U64(run(b, 77, 0, 0, 0, &used), 2);
	put_seg(0, 0, 8, 1);
	ASSERT_EQ_U64(run(b, HK_VBLK_T_DISCARD, 0, 16, 0, &used), 2);
	ASSERT_EQ_U64(run(b, HK_VBLK_T_DISCARD, 0, 16 * 17, 0, &used), 2);
	ASSERT_EQ_U64(run(b, HK_VBLK_T_DISCARD, 0, 0, 0, &used), 2);
	ASSERT_EQ_U64(run(b, HK_VBLK_T_DISCARD, 0, 8, 0, &used), 2);
	put_seg(0, last - 4, 8, 0);
	ASSERT_EQ_U64(run(b, HK_VBLK_T_DISCARD, 0, 16, 0, &used), 1);
	put_seg(0, 0, 8, 2);
	ASSERT_EQ_U64(run(b, HK_VBLK_T_WRITE_ZEROES, 0, 16, 0, &used), 2);
	/* A header cut short. */
	memset(&chain, 0, sizeof(chain));
	chain.iov[0] = (struct iovec){ hdr, 8 };
	chain.iov[1] = (struct iovec){ &status, 1 };
	chain.n_out = chain.n_in = 1;
	chain.out_len = 8;
	chain.in_len = 1;
	ASSERT_EQ_U64(hk_vblk_request(b, &chain), 1);
	ASSERT_EQ_U64(status, 1);
	/* No writable byte at all: nothing written, no crash. */
	chain.n_in = 0;
	chain.in_len = 0;
	ASSERT_EQ_U64(hk_vblk_request(b, &chain), 0);
}

static void zeroes_and_discard(struct hk_vblk *b)
{
	uint32_t used;

	memset(data, 0xab, 4 * CLUSTER);
	ASSERT_EQ_U64(run(b, HK_VBLK_T_OUT, 0, 4 * CLUSTER, 0, &used), 0);
	put_seg(0, 0, CLUSTER / 512, 1); /* first cluster, may unmap */
	put_seg(1, CLUSTER / 512, CLUSTER / 512 / 2, 0);
	ASSERT_EQ_U64(run(b, HK_VBLK_T_WRITE_ZEROES, 0, 32, 0, &used), 0);
	ASSERT_EQ_U64(run(b, HK_VBLK_T_IN, 0, 0, 2 * CLUSTER, &used), 0);
	for (size_t i = 0; i < CLUSTER + CLUSTER / 2; i++)
		ASSERT_EQ_U64(data[i], 0);
	ASSERT_EQ_U64(data[CLUSTER + CLUSTER / 2], 0xab);
	put_seg(0, 2 * CLUSTER / 512, 2 * CLUSTER / 512, 0);
	ASSERT_EQ_U64(run(b, HK_VBLK_T_DISCARD, 0, 16, 0, &used), 0);
}

static struct hk_vblk *open_disk(const char *conf)
{
	struct hk_vblk *b = NULL;

	ASSERT_OK(hk_vblk_open(&b, conf, NULL));
	ASSERT_EQ_U64(hk_vblk_sectors(b), DISK / 512);
	return b;
}

static uint64_t allocated_bytes(const char *path)
{
	struct stat st;

	ASSERT_OK(stat(path, &st));
	return (uint64_t)st.st_blocks * 512;
}

TEST(raw_requests)
{
	char *path = make_raw();
	struct hk_vblk *b = open_disk(path);
	uint64_t before;

	read_write_roundtrip(b);
	bad_requests(b);
	{
		uint32_t used;

		memset(data, 0xab, 4 * CLUSTER);
		ASSERT_EQ_U64(run(b, HK_VBLK_T_OUT, 0, 4 * CLUSTER, 0, &used),
			      0);
	}
	before = allocated_bytes(path);
	ASSERT_GE_U64(before, 4 * CLUSTER);
	zeroes_and_discard(b);
	/* The unmapped and discarded clusters left the file. */
	ASSERT_LT_U64(allocated_bytes(path), before);
	hk_vblk_close(b);
}

TEST(raw_read_only)
{
	char conf[600];
	struct hk_vblk *b;
	uint32_t used;

	snprintf(conf, sizeof(conf), "%s,ro", make_raw());
	b = open_disk(conf);
	ASSERT_TRUE(hk_vblk_features(b) & 1ull << HK_VBLK_F_RO);
	ASSERT_FALSE(hk_vblk_features(b) & 1ull << HK_VBLK_F_DISCARD);
	ASSERT_EQ_U64(run(b, HK_VBLK_T_OUT, 0, 512, 0, &used), 1);
	put_seg(0, 0, 8, 0);
	ASSERT_EQ_U64(run(b, HK_VBLK_T_DISCARD, 0, 16, 0, &used), 1);
	ASSERT_EQ_U64(run(b, HK_VBLK_T_IN, 0, 0, 512, &used), 0);
	hk_vblk_close(b);
}

TEST(bad_conf)
{
	struct hk_vblk *b = NULL;
	char conf[600];

	ASSERT_ERR(hk_vblk_open(&b, NULL, NULL), -EINVAL);
	ASSERT_ERR(hk_vblk_open(&b, "", NULL), -EINVAL);
	ASSERT_ERR(hk_vblk_open(&b, "/nonexistent/disk", NULL), -ENOENT);
	snprintf(conf, sizeof(conf), "%s,bogus", make_raw());
	ASSERT_ERR(hk_vblk_open(&b, conf, NULL), -EINVAL);
	/* A raw file opened as qcow2 is refused by libqcow. */
	snprintf(conf, sizeof(conf), "file://%s,format=qcow", make_raw());
	ASSERT_TRUE(hk_vblk_open(&b, conf, NULL) < 0);
}

static int count_data(void *opaque, const struct qcow_map_run *run)
{
	uint64_t *bytes = opaque;

	if (run->data && run->depth == 0)
		*bytes += run->length;
	return 0;
}

static uint64_t qcow_data_bytes(const char *path)
{
	struct qcow_open_opts o = { 0 };
	struct qcow_error err;
	struct qcow_image *img;
	uint64_t bytes = 0;

	ASSERT_OK(qcow_image_open(&img, path, &o, &err));
	ASSERT_OK(qcow_image_map(img, 0, DISK, count_data, &bytes));
	qcow_image_close(img);
	return bytes;
}

TEST(qcow_requests_and_discard)
{
	char conf[600], cmd[1200];
	char *path = make_qcow();
	struct hk_vblk *b;
	uint64_t before, after;
	uint32_t cfg_align;
	uint8_t cfg[HK_VBLK_CONFIG_LEN];

	snprintf(conf, sizeof(conf), "file://%s,format=qcow", path);
	b = open_disk(conf);
	hk_vblk_config(b, cfg, 126);
	cfg_align = load_le32(cfg + 44);
	ASSERT_EQ_U64(cfg_align, CLUSTER / 512);
	ASSERT_EQ_U64(load_le64(cfg), DISK / 512);
	read_write_roundtrip(b);
	bad_requests(b);
	memset(data, 0xcd, 4 * CLUSTER);
	{
		uint32_t used;

		ASSERT_EQ_U64(run(b, HK_VBLK_T_OUT, 0, 4 * CLUSTER, 0, &used),
			      0);
	}
	hk_vblk_close(b);
	before = qcow_data_bytes(path);
	ASSERT_GE_U64(before, 4 * CLUSTER);

	b = open_disk(conf);
	zeroes_and_discard(b);
	hk_vblk_close(b);
	after = qcow_data_bytes(path);
	/* Cluster 0 unmapped, clusters 2 and 3 discarded. */
	ASSERT_LE_U64(after, before - 3 * CLUSTER);

	if (system("command -v qemu-img >/dev/null 2>&1") != 0)
		return;
	snprintf(cmd, sizeof(cmd), "qemu-img check -q '%s'", path);
	ASSERT_EQ_INT(system(cmd), 0);
	/* qemu-img map agrees: the first cluster is not data. */
	snprintf(cmd, sizeof(cmd),
		 "qemu-img map --output=json '%s' | head -1 | "
		 "grep -q '\"start\": 0,.*\"data\": false'",
		 path);
	ASSERT_EQ_INT(system(cmd), 0);
}

/* ---------------------------------------------------------------- transport */

#define MEM (1u << 20)

static void bar_wr(struct hk_virtio *vd, uint64_t off, unsigned size,
		   uint64_t v)
{
	hk_virtio_bar_io(vd, off, size, true, &v);
}

static uint64_t bar_rd(struct hk_virtio *vd, uint64_t off, unsigned size)
{
	uint64_t v = 0;

	hk_virtio_bar_io(vd, off, size, false, &v);
	return v;
}

TEST(transport_end_to_end)
{
	struct hk_vm *vm = fake_vm_new(MEM);
	struct hk_pci_dev *d;
	struct hk_virtio *vd;
	uint8_t *m;
	uint64_t f;

	ASSERT_NOT_NULL(vm);
	ASSERT_OK(hk_pci_bus_new(vm, &vm->pci));
	ASSERT_OK(hk_virtio_blk_create(vm, 2, 0, make_raw()));
	d = hk_pci_find(vm->pci, 2, 0);
	ASSERT_NOT_NULL(d);
	vd = d->opaque;
	ASSERT_EQ_U64(load_le16(d->cfg + 2), 0x1042);
	ASSERT_EQ_U64(vm->ioeventfds, 1);

	/* The driver's side of initialisation (virtio 1.x, 3.1.1). */
	bar_wr(vd, 0x14, 1, 1 | 2);
	bar_wr(vd, 0x00, 4, 1);
	f = bar_rd(vd, 0x04, 4);
	ASSERT_EQ_U64(f & 1, 1); /* VERSION_1 */
	/* Features without VERSION_1 are refused. */
	bar_wr(vd, 0x08, 4, 0);
	bar_wr(vd, 0x0c, 4, 1u << HK_VBLK_F_FLUSH);
	bar_wr(vd, 0x14, 1, 1 | 2 | 8);
	ASSERT_EQ_U64(bar_rd(vd, 0x14, 1) & 8, 0);
	bar_wr(vd, 0x08, 4, 1);
	bar_wr(vd, 0x0c, 4, 1);
	bar_wr(vd, 0x14, 1, 1 | 2 | 8);
	ASSERT_EQ_U64(bar_rd(vd, 0x14, 1) & 8, 8);
	ASSERT_EQ_U64(bar_rd(vd, 0x12, 2), 1);
	ASSERT_EQ_U64(bar_rd(vd, 0x18, 2), 256);
	bar_wr(vd, 0x18, 2, 8);
	bar_wr(vd, 0x20, 4, 0x1000);
	bar_wr(vd, 0x28, 8, 0x2000);
	bar_wr(vd, 0x30, 4, 0x3000);
	bar_wr(vd, 0x34, 4, 0);
	bar_wr(vd, 0x1a, 2, 1);
	ASSERT_EQ_U64(bar_rd(vd, 0x1a, 2), 1);
	bar_wr(vd, 0x1c, 2, 1);
	ASSERT_EQ_U64(bar_rd(vd, 0x1c, 2), 1);
	bar_wr(vd, 0x14, 1, 1 | 2 | 8 | 4);
	ASSERT_EQ_U64(load_le64(vd->config), DISK / 512);
	ASSERT_EQ_U64(bar_rd(vd, HK_VIRTIO_DEVCFG_OFF, 8), DISK / 512);

	/* MSI-X: program vector 1, enable in config space. */
	bar_wr(vd, HK_VIRTIO_MSIX_TABLE_OFF + 16, 4, 0xfee00000);
	bar_wr(vd, HK_VIRTIO_MSIX_TABLE_OFF + 24, 4, 0x41);
	bar_wr(vd, HK_VIRTIO_MSIX_TABLE_OFF + 28, 4, 0);
	hk_pci_cfg_write(vm->pci, 2, 0, vd->msix_cap + 2, 2, 0x8000);
	ASSERT_TRUE(vd->msix_enabled);

	/* A GET_ID request: header, 20 bytes, status. */
	m = vm->mem;
	store_le32(m + 0x4000, HK_VBLK_T_GET_ID);
	store_le64(m + 0x1000, 0x4000);
	store_le32(m + 0x1008, 16);
	store_le16(m + 0x100c, 1);
	store_le16(m + 0x100e, 1);
	store_le64(m + 0x1010, 0x5000);
	store_le32(m + 0x1018, 21);
	store_le16(m + 0x101c, 2);
	store_le16(m + 0x2004, 0);
	store_le16(m + 0x2002, 1);
	m[0x5014] = 0xee;
	hk_virtio_notify(vd, 0);
	ASSERT_EQ_U64(load_le16(m + 0x3002), 1);
	ASSERT_EQ_U64(load_le32(m + 0x3008), 21);
	ASSERT_EQ_U64(m[0x5014], 0);
	ASSERT_EQ_MEM(m + 0x5000, "disk.raw", 8);
	ASSERT_EQ_U64(vm->msi_fired, 1);

	/* A broken ring: NEEDS_RESET, then a reset brings it back. */
	store_le16(m + 0x2006, 9); /* head 9 >= size 8 */
	store_le16(m + 0x2002, 2);
	hk_virtio_notify(vd, 0);
	ASSERT_TRUE(bar_rd(vd, 0x14, 1) & HK_VIRTIO_S_NEEDS_RESET);
	bar_wr(vd, 0x14, 1, 0);
	ASSERT_EQ_U64(bar_rd(vd, 0x14, 1), 0);
	ASSERT_EQ_U64(bar_rd(vd, 0x1c, 2), 0);

	/* Nonsense accesses anywhere in the BAR do no harm. */
	for (uint64_t off = 0; off < HK_VIRTIO_BAR_SIZE; off += 3) {
		bar_wr(vd, off, 1u << (off % 4), 0xffffffffffffffffull);
		(void)bar_rd(vd, off, 1u << (off % 4));
	}
	hk_pci_bus_free(vm->pci);
	ASSERT_EQ_U64(vm->ioeventfds, 0);
	fake_vm_free(vm);
}

static const struct test_case tests[] = {
	TEST_CASE(raw_requests),
	TEST_CASE(raw_read_only),
	TEST_CASE(bad_conf),
	TEST_CASE(qcow_requests_and_discard),
	TEST_CASE(transport_end_to_end),
};

TEST_MAIN(tests);
