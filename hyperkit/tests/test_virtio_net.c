// SPDX-License-Identifier: MIT
/*
 * virtio-net on a fake VM, driven through the PCI transport as a driver
 * would: frames the guest transmits reach the peer of a stream socket with
 * vpnkit's LE16 and QEMU's BE32 framing; frames from the peer land in the
 * guest's receive buffers with a virtio_net_hdr_v1, wait while there is no
 * buffer and arrive once one is posted; a bad descriptor breaks the queue
 * (NEEDS_RESET), a closing peer takes the link down. The in-process vpnkit
 * answers an ARP probe sent through the transmit queue, on its own thread.
 */
#include <base/endian.h>
#include <base/test.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../pci.h"
#include "../virtio_net.h"
#include "../virtio_pci.h"
#include "fake_platform.h"
#include "vpnkit/vpnkit.h"

#define MEM (1u << 20)
#define QSZ 8u
/* Ring addresses: queue q at 0x10000 * (q + 1). */
#define DESC(q) (0x10000u * ((q) + 1))
#define AVAIL(q) (DESC(q) + 0x1000u)
#define USED(q) (DESC(q) + 0x2000u)
#define BUF(q) (DESC(q) + 0x4000u) /* buffers: 4 KiB each */

static const uint8_t test_mac[6] = { 0x02, 0x11, 0x22, 0x33, 0x44, 0x55 };

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

/* The driver's initialisation with feature words lo (bits 0-31) and
 * VERSION_1; both queues of size QSZ. */
static void driver_init(struct hk_virtio *vd, uint32_t lo)
{
	bar_wr(vd, 0x14, 1, 1 | 2);
	bar_wr(vd, 0x08, 4, 0);
	bar_wr(vd, 0x0c, 4, lo);
	bar_wr(vd, 0x08, 4, 1);
	bar_wr(vd, 0x0c, 4, 1);
	bar_wr(vd, 0x14, 1, 1 | 2 | 8);
	for (unsigned q = 0; q < 2; q++) {
		bar_wr(vd, 0x16, 2, q);
		bar_wr(vd, 0x18, 2, QSZ);
		bar_wr(vd, 0x20, 4, DESC(q));
		bar_wr(vd, 0x24, 4, 0);
		bar_wr(vd, 0x28, 4, AVAIL(q));
		bar_wr(vd, 0x2c, 4, 0);
		bar_wr(vd, 0x30, 4, USED(q));
		bar_wr(vd, 0x34, 4, 0);
		bar_wr(vd, 0x1c, 2, 1);
	}
	bar_wr(vd, 0x14, 1, 1 | 2 | 8 | 4);
}

static void put_desc(uint8_t *m, unsigned q, unsigned i, uint64_t addr,
		     uint32_t len, uint16_t flags, uint16_t next)
{
	uint8_t *d = m + DESC(q) + 16 * i;

	store_le64(d, addr);
	store_le32(d + 8, len);
	store_le16(d + 12, flags);
	store_le16(d + 14, next);
}

/* Make head available on queue q (the driver's side of the avail ring). */
static void avail_add(uint8_t *m, unsigned q, uint16_t head)
{
	uint16_t idx = load_le16(m + AVAIL(q) + 2);

	store_le16(m + AVAIL(q) + 4 + 2 * (idx % QSZ), head);
	atomic_thread_fence(memory_order_release);
	store_le16(m + AVAIL(q) + 2, (uint16_t)(idx + 1));
}

static uint16_t used_idx(const uint8_t *m, unsigned q)
{
	atomic_thread_fence(memory_order_acquire);
	return load_le16(m + USED(q) + 2);
}

static uint32_t used_len(const uint8_t *m, unsigned q, unsigned i)
{
	return load_le32(m + USED(q) + 4 + 8 * i + 4);
}

/* Post a transmit chain at descriptor 2*slot: header, then the frame. */
static void tx_frame(uint8_t *m, unsigned slot, const void *frame, uint32_t len)
{
	uint64_t hdr = BUF(1) + 0x2000u * slot, data = hdr + 0x100;

	memset(m + hdr, 0, HK_VNET_HDR_LEN);
	memcpy(m + data, frame, len);
	put_desc(m, 1, 2 * slot, hdr, HK_VNET_HDR_LEN, HK_VQ_DESC_F_NEXT,
		 (uint16_t)(2 * slot + 1));
	put_desc(m, 1, 2 * slot + 1, data, len, 0, 0);
	avail_add(m, 1, (uint16_t)(2 * slot));
}

/* Post receive buffer i (4 KiB, one descriptor). */
static void rx_post(uint8_t *m, unsigned i)
{
	put_desc(m, 0, i, BUF(0) + 0x1000u * i, 0x1000, HK_VQ_DESC_F_WRITE, 0);
	avail_add(m, 0, (uint16_t)i);
}

static void make_frame(uint8_t *f, size_t len, uint8_t seed)
{
	memcpy(f, test_mac, 6);
	memset(f + 6, 0xaa, 6);
	store_be16(f + 12, 0x88b5); /* local experimental ethertype */
	for (size_t i = 14; i < len; i++)
		f[i] = (uint8_t)(seed + i);
}

struct rig {
	struct hk_vm *vm;
	struct hk_vnet *n;
	struct hk_virtio *vd;
	int peer;
};

static void rig_open(struct rig *r, enum hk_vnet_framing framing)
{
	int sv[2];
	struct hk_pci_dev *d;

	r->vm = fake_vm_new(MEM);
	ASSERT_NOT_NULL(r->vm);
	ASSERT_OK(hk_pci_bus_new(r->vm, &r->vm->pci));
	ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
	ASSERT_OK(hk_vnet_new_stream(r->vm, 2, 0, sv[0], framing, test_mac,
				     &r->n));
	r->peer = sv[1];
	d = hk_pci_find(r->vm->pci, 2, 0);
	ASSERT_NOT_NULL(d);
	r->vd = d->opaque;
	ASSERT_EQ_U64(load_le16(d->cfg + 2), 0x1041);
}

static void rig_close(struct rig *r)
{
	if (r->peer >= 0)
		close(r->peer);
	hk_pci_bus_free(r->vm->pci);
	fake_vm_free(r->vm);
}

static void read_exact(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);

		ASSERT_GT_INT(n, 0);
		p += n;
		len -= (size_t)n;
	}
}

TEST(stream_le16_tx_rx)
{
	struct rig r;
	uint8_t *m, f[60], g[60 + 2], got[64];

	rig_open(&r, HK_VNET_FRAMING_LE16);
	m = r.vm->mem;
	driver_init(r.vd, (1u << HK_VNET_F_MAC) | (1u << HK_VNET_F_STATUS) |
				  (1u << HK_VNET_F_MTU));
	ASSERT_TRUE(bar_rd(r.vd, 0x14, 1) & 4);
	/* Config space: MAC, link up, one queue pair, MTU. */
	ASSERT_EQ_MEM(r.vd->config, test_mac, 6);
	ASSERT_EQ_U64(bar_rd(r.vd, HK_VIRTIO_DEVCFG_OFF + 6, 2), 1);
	ASSERT_EQ_U64(bar_rd(r.vd, HK_VIRTIO_DEVCFG_OFF + 8, 2), 1);
	ASSERT_EQ_U64(bar_rd(r.vd, HK_VIRTIO_DEVCFG_OFF + 10, 2), 1500);
	/* No offloads on a plain stream. */
	bar_wr(r.vd, 0x00, 4, 0);
	ASSERT_EQ_U64(bar_rd(r.vd, 0x04, 4) & ((1u << HK_VNET_F_CSUM) |
					       (1u << HK_VNET_F_GUEST_TSO4)),
		      0);

	/* Transmit: two frames reach the peer, LE16-framed, in order. */
	make_frame(f, sizeof(f), 1);
	tx_frame(m, 0, f, sizeof(f));
	tx_frame(m, 1, f, 40);
	hk_virtio_notify(r.vd, 1);
	ASSERT_EQ_U64(used_idx(m, 1), 2);
	read_exact(r.peer, got, 2 + sizeof(f));
	ASSERT_EQ_U64(load_le16(got), sizeof(f));
	ASSERT_EQ_MEM(got + 2, f, sizeof(f));
	read_exact(r.peer, got, 2 + 40);
	ASSERT_EQ_U64(load_le16(got), 40);
	ASSERT_EQ_MEM(got + 2, f, 40);

	/* Receive: two frames, one buffer: the second waits for a buffer. */
	store_le16(g, 60);
	make_frame(g + 2, 60, 7);
	ASSERT_EQ_INT(write(r.peer, g, sizeof(g)), (int)sizeof(g));
	make_frame(g + 2, 60, 9);
	ASSERT_EQ_INT(write(r.peer, g, sizeof(g)), (int)sizeof(g));
	rx_post(m, 0);
	hk_vnet_backend_event(r.n, EPOLLIN);
	ASSERT_EQ_U64(used_idx(m, 0), 1);
	ASSERT_EQ_U64(used_len(m, 0, 0), HK_VNET_HDR_LEN + 60);
	ASSERT_EQ_U64(load_le16(m + BUF(0) + 10), 1); /* num_buffers */
	ASSERT_EQ_U64(m[BUF(0)], 0); /* no offload flags */
	make_frame(f, 60, 7);
	ASSERT_EQ_MEM(m + BUF(0) + HK_VNET_HDR_LEN, f, 60);
	hk_vnet_backend_event(r.n, EPOLLIN);
	ASSERT_EQ_U64(used_idx(m, 0), 1);
	/* The driver posts a buffer and notifies: the frame arrives. */
	rx_post(m, 1);
	hk_virtio_notify(r.vd, 0);
	ASSERT_EQ_U64(used_idx(m, 0), 2);
	make_frame(f, 60, 9);
	ASSERT_EQ_MEM(m + BUF(0) + 0x1000 + HK_VNET_HDR_LEN, f, 60);

	/* A chain pointing outside guest RAM breaks the queue, nothing
	 * else. */
	put_desc(m, 1, 4, MEM - 4, 64, 0, 0);
	avail_add(m, 1, 4);
	hk_virtio_notify(r.vd, 1);
	ASSERT_TRUE(bar_rd(r.vd, 0x14, 1) & HK_VIRTIO_S_NEEDS_RESET);

	/* The peer goes away: link down. */
	close(r.peer);
	r.peer = -1;
	hk_vnet_backend_event(r.n, EPOLLIN | EPOLLHUP);
	ASSERT_EQ_U64(bar_rd(r.vd, HK_VIRTIO_DEVCFG_OFF + 6, 2), 0);
	rig_close(&r);
}

TEST(stream_be32_and_bad_length)
{
	struct rig r;
	uint8_t *m, f[100], got[104], g[4 + 100];

	rig_open(&r, HK_VNET_FRAMING_BE32);
	m = r.vm->mem;
	driver_init(r.vd, (1u << HK_VNET_F_MAC) | (1u << HK_VNET_F_STATUS));
	make_frame(f, sizeof(f), 3);
	tx_frame(m, 0, f, sizeof(f));
	hk_virtio_notify(r.vd, 1);
	read_exact(r.peer, got, sizeof(got));
	ASSERT_EQ_U64(load_be32(got), sizeof(f));
	ASSERT_EQ_MEM(got + 4, f, sizeof(f));

	/* A too-short transmit chain (header only) is dropped, consumed. */
	put_desc(m, 1, 2, BUF(1) + 0x2000, HK_VNET_HDR_LEN, 0, 0);
	avail_add(m, 1, 2);
	hk_virtio_notify(r.vd, 1);
	ASSERT_EQ_U64(used_idx(m, 1), 2);

	store_be32(g, 100);
	make_frame(g + 4, 100, 5);
	ASSERT_EQ_INT(write(r.peer, g, sizeof(g)), (int)sizeof(g));
	rx_post(m, 0);
	hk_vnet_backend_event(r.n, EPOLLIN);
	ASSERT_EQ_U64(used_idx(m, 0), 1);
	ASSERT_EQ_U64(used_len(m, 0, 0), HK_VNET_HDR_LEN + 100);
	ASSERT_EQ_MEM(m + BUF(0) + HK_VNET_HDR_LEN, g + 4, 100);

	/* A framing length beyond any frame: the link goes down. */
	store_be32(g, 0x7fffffff);
	ASSERT_EQ_INT(write(r.peer, g, 4), 4);
	rx_post(m, 1);
	hk_vnet_backend_event(r.n, EPOLLIN);
	ASSERT_EQ_U64(bar_rd(r.vd, HK_VIRTIO_DEVCFG_OFF + 6, 2), 0);
	ASSERT_EQ_U64(used_idx(m, 0), 1);
	rig_close(&r);
}

/* The one's complement sum of len bytes, folded, plus start. */
static uint32_t sum16(const uint8_t *p, size_t len, uint32_t sum)
{
	for (size_t i = 0; i < len; i++)
		sum += (i & 1) ? p[i] : (uint32_t)p[i] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return sum;
}

TEST(offloads_adapted_to_driver)
{
	struct rig r;
	struct vpnkit_offload off = { 0 };
	uint8_t *m, f[52], pseudo[12];
	uint32_t sum;

	rig_open(&r, HK_VNET_FRAMING_LE16);
	m = r.vm->mem;
	/* A driver without GUEST_CSUM and GUEST_TSO4. */
	driver_init(r.vd, (1u << HK_VNET_F_MAC) | (1u << HK_VNET_F_STATUS));
	rx_post(m, 0);
	rx_post(m, 1);
	rx_post(m, 2);

	/* A UDP datagram with a partial checksum: the pseudo header's sum,
	 * not complemented, in the checksum field. */
	memset(f, 0, sizeof(f));
	make_frame(f, sizeof(f), 0);
	store_be16(f + 12, 0x0800);
	f[14] = 0x45;
	store_be16(f + 16, 38);
	f[22] = 64;
	f[23] = 17;
	f[26] = f[30] = 10;
	f[29] = 1;
	f[33] = 2;
	store_be16(f + 34, 1234);
	store_be16(f + 36, 53);
	store_be16(f + 38, 18);
	memcpy(pseudo, f + 26, 8);
	pseudo[8] = 0;
	pseudo[9] = 17;
	store_be16(pseudo + 10, 18);
	store_be16(f + 40, (uint16_t)sum16(pseudo, sizeof(pseudo), 0));
	off.flags = VPNKIT_OFFLOAD_NEEDS_CSUM;
	off.csum_start = 34;
	off.csum_offset = 6;
	ASSERT_OK(hk_vnet_inject(r.n, &off, f, sizeof(f)));
	ASSERT_EQ_U64(used_idx(m, 0), 1);
	ASSERT_EQ_U64(used_len(m, 0, 0), HK_VNET_HDR_LEN + sizeof(f));
	ASSERT_EQ_U64(m[BUF(0)], 0); /* flags: a complete checksum */
	/* Pseudo header plus the UDP segment now sum to 0xffff. */
	sum = sum16(pseudo, sizeof(pseudo), 0);
	sum = sum16(m + BUF(0) + HK_VNET_HDR_LEN + 34, 18, sum);
	ASSERT_EQ_U64(sum, 0xffff);
	ASSERT_NE_U64(load_be16(m + BUF(0) + HK_VNET_HDR_LEN + 40), 0);

	/* A TCP segment the driver did not ask for is dropped: the buffer
	 * comes back empty. */
	off.gso_type = VPNKIT_GSO_TCPV4;
	off.gso_size = 1448;
	ASSERT_OK(hk_vnet_inject(r.n, &off, f, sizeof(f)));
	ASSERT_EQ_U64(used_idx(m, 0), 2);
	ASSERT_EQ_U64(used_len(m, 0, 1), 0);

	/* A checksum offset beyond the frame: dropped too. */
	off.gso_type = VPNKIT_GSO_NONE;
	off.csum_offset = 100;
	ASSERT_OK(hk_vnet_inject(r.n, &off, f, sizeof(f)));
	ASSERT_EQ_U64(used_len(m, 0, 2), 0);

	/* No buffer left: the backend is told to wait. */
	ASSERT_ERR(hk_vnet_inject(r.n, NULL, f, sizeof(f)), -EAGAIN);
	rig_close(&r);
}

TEST(bad_conf)
{
	struct hk_vm *vm = fake_vm_new(MEM);

	ASSERT_NOT_NULL(vm);
	ASSERT_OK(hk_pci_bus_new(vm, &vm->pci));
	ASSERT_ERR(hk_virtio_vpnkit_create(vm, 2, 0, NULL), -EINVAL);
	ASSERT_ERR(hk_virtio_vpnkit_create(vm, 2, 0, "path=/x,bogus=1"),
		   -EINVAL);
	ASSERT_ERR(hk_virtio_net_create(vm, 2, 0, "path=/x"), -EINVAL);
	ASSERT_ERR(hk_virtio_vpnkit_create(vm, 2, 0,
					   "path=/nonexistent/vpnkit.sock"),
		   -ENOENT);
	ASSERT_ERR(hk_virtio_tap_create(vm, 2, 0, NULL), -EINVAL);
	ASSERT_EQ_PTR(hk_pci_find(vm->pci, 2, 0), NULL);
	hk_pci_bus_free(vm->pci);
	fake_vm_free(vm);
}

/* Wait up to 5 s for queue q's used index to reach want. */
static bool wait_used(const uint8_t *m, unsigned q, uint16_t want)
{
	for (int i = 0; i < 500; i++) {
		if (used_idx(m, q) == want)
			return true;
		nanosleep(&(struct timespec){ .tv_nsec = 10000000 }, NULL);
	}
	return false;
}

TEST(inprocess_vpnkit_arp)
{
	struct hk_vm *vm = fake_vm_new(MEM);
	struct hk_pci_dev *d;
	struct hk_virtio *vd;
	uint8_t *m, arp[42], mac[6];
	uint32_t host;

	ASSERT_NOT_NULL(vm);
	m = vm->mem;
	ASSERT_OK(hk_pci_bus_new(vm, &vm->pci));
	ASSERT_OK(hk_virtio_vpnkit_create(vm, 3, 0, "inprocess"));
	d = hk_pci_find(vm->pci, 3, 0);
	ASSERT_NOT_NULL(d);
	vd = d->opaque;
	/* Offloads are offered in-process. */
	bar_wr(vd, 0x00, 4, 0);
	host = (uint32_t)bar_rd(vd, 0x04, 4);
	ASSERT_TRUE(host & (1u << HK_VNET_F_CSUM));
	ASSERT_TRUE(host & (1u << HK_VNET_F_GUEST_TSO4));
	ASSERT_TRUE(host & (1u << HK_VNET_F_HOST_TSO6));
	pthread_mutex_lock(&vd->lock);
	memcpy(mac, vd->config, 6);
	pthread_mutex_unlock(&vd->lock);
	ASSERT_EQ_U64(mac[0] & 1, 0);
	driver_init(vd, host);
	rx_post(m, 0);
	rx_post(m, 1);
	hk_virtio_notify(vd, 0);

	/* An ARP probe (sender 0.0.0.0) for the gateway 192.168.65.1. */
	memset(arp, 0xff, 6);
	memcpy(arp + 6, mac, 6);
	store_be16(arp + 12, 0x0806);
	store_be16(arp + 14, 1);
	store_be16(arp + 16, 0x0800);
	arp[18] = 6;
	arp[19] = 4;
	store_be16(arp + 20, 1);
	memcpy(arp + 22, mac, 6);
	memset(arp + 28, 0, 4 + 6);
	arp[38] = 192;
	arp[39] = 168;
	arp[40] = 65;
	arp[41] = 1;
	tx_frame(m, 0, arp, sizeof(arp));
	hk_virtio_notify(vd, 1);
	ASSERT_TRUE(wait_used(m, 1, 1));
	ASSERT_TRUE(wait_used(m, 0, 1));
	pthread_mutex_lock(&vd->lock);
	ASSERT_EQ_U64(used_len(m, 0, 0), HK_VNET_HDR_LEN + 42);
	ASSERT_EQ_MEM(m + BUF(0) + HK_VNET_HDR_LEN, mac, 6);
	ASSERT_EQ_U64(load_be16(m + BUF(0) + HK_VNET_HDR_LEN + 12), 0x0806);
	ASSERT_EQ_U64(load_be16(m + BUF(0) + HK_VNET_HDR_LEN + 20), 2);
	ASSERT_EQ_MEM(m + BUF(0) + HK_VNET_HDR_LEN + 28, arp + 38, 4);
	pthread_mutex_unlock(&vd->lock);
	hk_pci_bus_free(vm->pci);
	fake_vm_free(vm);
}

static const struct test_case tests[] = {
	TEST_CASE(stream_le16_tx_rx),
	TEST_CASE(stream_be32_and_bad_length),
	TEST_CASE(offloads_adapted_to_driver),
	TEST_CASE(bad_conf),
	TEST_CASE(inprocess_vpnkit_arp),
};

TEST_MAIN(tests);
