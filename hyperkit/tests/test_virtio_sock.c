// SPDX-License-Identifier: MIT
/*
 * virtio-sock on a fake VM, driven through the PCI transport as Linux's
 * virtio_transport would drive it (receive buffers of a 44-byte header
 * descriptor and a 4 KiB one, transmit chains of header and payload),
 * against real Unix sockets in the case's temporary directory: the guest
 * connects to a host listener and data flows both ways; a host client
 * reaches a guest port through DIR/connect and its 18-byte preamble, and
 * through a guest_forwards socket and its symlink; the guest's advertised
 * credit holds host bytes back until it grants more, and ours is enforced;
 * a connect without a listener, hostile headers and a flood of requests
 * get RSTs or are dropped; a device reset closes host sockets; bad
 * options are refused and the device's socket files go away with it.
 */
#include <base/endian.h>
#include <base/test.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "../pci.h"
#include "../virtio_pci.h"
#include "../virtio_sock.h"
#include "fake_platform.h"

#define MEM (8u << 20)
#define QSZ 64u
#define NRX 16u /* receive buffers posted */
#define RXBUF 4096u
#define DESC(q) (0x10000u * ((q) + 1))
#define AVAIL(q) (DESC(q) + 0x1000u)
#define USED(q) (DESC(q) + 0x2000u)
#define RX_AT(i) (0x100000u + 0x2000u * (i)) /* header; payload +0x100 */
#define TX_AT(k) (0x200000u + 0x20000u * (k)) /* header; payload +0x100 */
#define CID 3u
#define SLOT 5u

struct pkt {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port, len;
	uint16_t type, op;
	uint32_t flags, buf_alloc, fwd_cnt;
	uint8_t data[RXBUF];
};

static struct {
	struct hk_vm *vm;
	struct hk_virtio *vd;
	uint8_t *m;
	uint16_t rx_seen, tx_avail;
	char dir[96];
} g;

/* ---------------------------------------------------------------- the guest */

static void bar_wr(uint64_t off, unsigned size, uint64_t v)
{
	hk_virtio_bar_io(g.vd, off, size, true, &v);
}

static uint64_t bar_rd(uint64_t off, unsigned size)
{
	uint64_t v = 0;

	hk_virtio_bar_io(g.vd, off, size, false, &v);
	return v;
}

static void put_desc(unsigned q, unsigned i, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	uint8_t *d = g.m + DESC(q) + 16 * i;

	store_le64(d, addr);
	store_le32(d + 8, len);
	store_le16(d + 12, flags);
	store_le16(d + 14, next);
}

static void avail_add(unsigned q, uint16_t head)
{
	uint16_t idx = load_le16(g.m + AVAIL(q) + 2);

	store_le16(g.m + AVAIL(q) + 4 + 2 * (idx % QSZ), head);
	atomic_thread_fence(memory_order_release);
	store_le16(g.m + AVAIL(q) + 2, (uint16_t)(idx + 1));
}

static uint16_t used_idx(unsigned q)
{
	atomic_thread_fence(memory_order_acquire);
	return load_le16(g.m + USED(q) + 2);
}

/* Post receive buffer i: a header descriptor and a 4 KiB one. */
static void rx_post(unsigned i)
{
	put_desc(0, 2 * i, RX_AT(i), HK_VSOCK_HDR_LEN,
		 HK_VQ_DESC_F_WRITE | HK_VQ_DESC_F_NEXT, (uint16_t)(2 * i + 1));
	put_desc(0, 2 * i + 1, RX_AT(i) + 0x100, RXBUF, HK_VQ_DESC_F_WRITE, 0);
	avail_add(0, (uint16_t)(2 * i));
}

static void driver_init(void)
{
	bar_wr(0x14, 1, 0);
	bar_wr(0x14, 1, 1 | 2);
	bar_wr(0x08, 4, 1);
	bar_wr(0x0c, 4, 1); /* VERSION_1 */
	bar_wr(0x14, 1, 1 | 2 | 8);
	for (unsigned q = 0; q < 3; q++) {
		memset(g.m + DESC(q), 0, 0x3000);
		bar_wr(0x16, 2, q);
		bar_wr(0x18, 2, QSZ);
		bar_wr(0x20, 4, DESC(q));
		bar_wr(0x24, 4, 0);
		bar_wr(0x28, 4, AVAIL(q));
		bar_wr(0x2c, 4, 0);
		bar_wr(0x30, 4, USED(q));
		bar_wr(0x34, 4, 0);
		bar_wr(0x1c, 2, 1);
	}
	g.rx_seen = g.tx_avail = 0;
	for (unsigned i = 0; i < NRX; i++)
		rx_post(i);
	bar_wr(0x14, 1, 1 | 2 | 8 | 4);
	ASSERT_TRUE(bar_rd(0x14, 1) & 4);
	hk_vsock_poll(g.vd, 0); /* DRIVER_OK's kick */
}

static int dev_open(const char *extra)
{
	char conf[256];
	struct hk_pci_dev *d;
	int r;

	g.vm = fake_vm_new(MEM);
	ASSERT_NOT_NULL(g.vm);
	g.m = g.vm->mem;
	ASSERT_OK(hk_pci_bus_new(g.vm, &g.vm->pci));
	snprintf(g.dir, sizeof(g.dir), "%s/vs", test_tmpdir());
	mkdir(g.dir, 0700);
	snprintf(conf, sizeof(conf), "guest_cid=%u,path=%s%s%s", CID, g.dir,
		 extra ? "," : "", extra ? extra : "");
	r = hk_virtio_sock_create(g.vm, SLOT, 0, conf);
	if (r < 0)
		return r;
	d = hk_pci_find(g.vm->pci, SLOT, 0);
	ASSERT_NOT_NULL(d);
	ASSERT_EQ_U64(load_le16(d->cfg + 2), 0x1040 + 19);
	g.vd = d->opaque;
	ASSERT_EQ_U64(bar_rd(HK_VIRTIO_DEVCFG_OFF, 4), CID);
	ASSERT_EQ_U64(bar_rd(HK_VIRTIO_DEVCFG_OFF + 4, 4), 0);
	driver_init();
	return 0;
}

static void dev_close(void)
{
	hk_pci_bus_free(g.vm->pci);
	fake_vm_free(g.vm);
}

/* The guest transmits one packet: header fields, the length it claims
 * (len_field), payload, and the header descriptor's length (hdr_desc,
 * normally 44). */
static void tx_chain(uint64_t src_cid, uint64_t dst_cid, uint32_t src_port,
		     uint32_t dst_port, uint16_t type, uint16_t op,
		     uint32_t flags, uint32_t buf_alloc, uint32_t fwd_cnt,
		     uint32_t len_field, const void *data, uint32_t len,
		     uint32_t hdr_desc)
{
	unsigned k = g.tx_avail % (QSZ / 2);
	uint8_t *h = g.m + TX_AT(k);
	uint16_t before = used_idx(1);

	store_le64(h, src_cid);
	store_le64(h + 8, dst_cid);
	store_le32(h + 16, src_port);
	store_le32(h + 20, dst_port);
	store_le32(h + 24, len_field);
	store_le16(h + 28, type);
	store_le16(h + 30, op);
	store_le32(h + 32, flags);
	store_le32(h + 36, buf_alloc);
	store_le32(h + 40, fwd_cnt);
	put_desc(1, 2 * k, TX_AT(k), hdr_desc, len ? HK_VQ_DESC_F_NEXT : 0,
		 (uint16_t)(2 * k + 1));
	if (len) {
		memcpy(h + 0x100, data, len);
		put_desc(1, 2 * k + 1, TX_AT(k) + 0x100, len, 0, 0);
	}
	avail_add(1, (uint16_t)(2 * k));
	g.tx_avail++;
	hk_virtio_notify(g.vd, 1);
	ASSERT_EQ_U64(used_idx(1), (uint16_t)(before + 1));
}

static void tx_full(uint64_t src_cid, uint64_t dst_cid, uint32_t src_port,
		    uint32_t dst_port, uint16_t type, uint16_t op,
		    uint32_t flags, uint32_t buf_alloc, uint32_t fwd_cnt,
		    const void *data, uint32_t len)
{
	tx_chain(src_cid, dst_cid, src_port, dst_port, type, op, flags,
		 buf_alloc, fwd_cnt, len, data, len, HK_VSOCK_HDR_LEN);
}

/* A stream packet from the guest's port gp to host port hp. */
static void tx(uint16_t op, uint32_t gp, uint32_t hp, uint32_t flags,
	       uint32_t buf_alloc, uint32_t fwd_cnt, const void *data,
	       uint32_t len)
{
	tx_full(CID, HK_VSOCK_HOST_CID, gp, hp, HK_VSOCK_TYPE_STREAM, op, flags,
		buf_alloc, fwd_cnt, data, len);
}

/* Take the next packet the device gave the guest, polling the device for
 * up to timeout_ms. The buffer is posted again. */
static bool rx_next(struct pkt *p, int timeout_ms)
{
	for (int waited = 0;; waited += 10) {
		if (used_idx(0) != g.rx_seen) {
			uint8_t *u = g.m + USED(0) + 4 + 8 * (g.rx_seen % QSZ);
			unsigned i = load_le32(u) / 2;
			uint32_t len = load_le32(u + 4);
			const uint8_t *h = g.m + RX_AT(i);

			g.rx_seen++;
			ASSERT_GE_U64(len, HK_VSOCK_HDR_LEN);
			p->src_cid = load_le64(h);
			p->dst_cid = load_le64(h + 8);
			p->src_port = load_le32(h + 16);
			p->dst_port = load_le32(h + 20);
			p->len = load_le32(h + 24);
			p->type = load_le16(h + 28);
			p->op = load_le16(h + 30);
			p->flags = load_le32(h + 32);
			p->buf_alloc = load_le32(h + 36);
			p->fwd_cnt = load_le32(h + 40);
			ASSERT_EQ_U64(len, HK_VSOCK_HDR_LEN + p->len);
			ASSERT_LE_U64(p->len, RXBUF);
			ASSERT_EQ_U64(p->src_cid, HK_VSOCK_HOST_CID);
			ASSERT_EQ_U64(p->dst_cid, CID);
			ASSERT_EQ_U64(p->type, HK_VSOCK_TYPE_STREAM);
			memcpy(p->data, h + 0x100, p->len);
			rx_post(i);
			hk_virtio_notify(g.vd, 0);
			return true;
		}
		if (waited >= timeout_ms)
			return false;
		hk_vsock_poll(g.vd, 10);
	}
}

static void rx_expect(struct pkt *p, uint16_t op, uint32_t gp, uint32_t hp)
{
	if (!rx_next(p, 2000))
		test__fail(__FILE__, __LINE__, "no packet (want op %u)", op);
	ASSERT_EQ_U64(p->op, op);
	ASSERT_EQ_U64(p->dst_port, gp);
	ASSERT_EQ_U64(p->src_port, hp);
}

static void rx_none(int ms)
{
	struct pkt p;

	if (rx_next(&p, ms))
		test__fail(__FILE__, __LINE__,
			   "unexpected packet op %u %u -> %u len %u", p.op,
			   p.src_port, p.dst_port, p.len);
}

/* ---------------------------------------------------------------- the host */

/* DIR/name (valid until the next call). */
static const char *at(const char *name)
{
	static char path[160];

	snprintf(path, sizeof(path), "%s/%s", g.dir, name);
	return path;
}

static void sun_path(struct sockaddr_un *sun, const char *path)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	ASSERT_LT_U64(strlen(path), sizeof(sun->sun_path));
	memcpy(sun->sun_path, path, strlen(path));
}

static void sun_of(struct sockaddr_un *sun, const char *name)
{
	sun_path(sun, at(name));
}

static int host_listen(uint32_t port)
{
	struct sockaddr_un sun;
	char name[32];
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	snprintf(name, sizeof(name), "%08x.%08x", 2u, port);
	sun_of(&sun, name);
	ASSERT_GE_INT(fd, 0);
	ASSERT_OK(bind(fd, (struct sockaddr *)&sun, sizeof(sun)));
	ASSERT_OK(listen(fd, 2048));
	return fd;
}

static int host_connect(const char *name)
{
	struct sockaddr_un sun;
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	sun_of(&sun, name);
	ASSERT_GE_INT(fd, 0);
	ASSERT_OK(connect(fd, (struct sockaddr *)&sun, sizeof(sun)));
	return fd;
}

/* Read exactly len bytes from fd, polling the device meanwhile. */
static void host_read(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;

	for (int tries = 0; len; tries++) {
		ssize_t n = recv(fd, p, len, MSG_DONTWAIT);

		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		ASSERT_TRUE(n < 0 && errno == EAGAIN);
		ASSERT_LT_INT(tries, 300);
		hk_vsock_poll(g.vd, 10);
	}
}

/* The device closed (or shut down writing to) fd: EOF within a while. */
static void host_expect_eof(int fd)
{
	uint8_t b[64];

	for (int tries = 0;; tries++) {
		ssize_t n = recv(fd, b, sizeof(b), MSG_DONTWAIT);

		if (n == 0)
			return;
		ASSERT_TRUE(n < 0 && errno == EAGAIN);
		ASSERT_LT_INT(tries, 200);
		hk_vsock_poll(g.vd, 10);
	}
}

static void host_write(int fd, const void *buf, size_t len)
{
	ASSERT_EQ_INT(send(fd, buf, len, MSG_NOSIGNAL), (intmax_t)len);
}

/* Receive len bytes of RW payload for (gp, hp) into buf. */
static void guest_read(uint32_t gp, uint32_t hp, uint8_t *buf, size_t len)
{
	struct pkt p;

	while (len) {
		rx_expect(&p, HK_VSOCK_OP_RW, gp, hp);
		ASSERT_LE_U64(p.len, len);
		memcpy(buf, p.data, p.len);
		buf += p.len;
		len -= p.len;
	}
}

#define GBUF (256u << 10) /* the guest's buf_alloc in most cases */

/* The guest connects from gp to a host listener on hp; returns the host's
 * accepted socket. */
static int guest_connects(int lfd, uint32_t gp, uint32_t hp)
{
	struct pkt p;
	int fd;

	tx(HK_VSOCK_OP_REQUEST, gp, hp, 0, GBUF, 0, NULL, 0);
	rx_expect(&p, HK_VSOCK_OP_RESPONSE, gp, hp);
	ASSERT_EQ_U64(p.buf_alloc, HK_VSOCK_BUF_ALLOC);
	ASSERT_EQ_U64(p.fwd_cnt, 0);
	fd = accept(lfd, NULL, NULL);
	ASSERT_GE_INT(fd, 0);
	return fd;
}

/* ---------------------------------------------------------------- cases */

TEST(guest_to_host)
{
	uint8_t buf[64];
	struct pkt p;
	int lfd, fd;

	ASSERT_OK(dev_open(NULL));
	lfd = host_listen(1234);
	/* The listener's name is hyperkit's: 00000002.000004d2. */
	ASSERT_OK(access(at("00000002.000004d2"), F_OK));
	fd = guest_connects(lfd, 40000, 1234);

	tx(HK_VSOCK_OP_RW, 40000, 1234, 0, GBUF, 0, "hello host", 10);
	host_read(fd, buf, 10);
	ASSERT_EQ_MEM(buf, "hello host", 10);

	host_write(fd, "hello guest", 11);
	guest_read(40000, 1234, buf, 11);
	ASSERT_EQ_MEM(buf, "hello guest", 11);
	rx_none(50);

	/* The guest stops sending: the host reads EOF, and may still
	 * answer. */
	tx(HK_VSOCK_OP_SHUTDOWN, 40000, 1234, HK_VSOCK_SHUT_SEND, GBUF, 11,
	   NULL, 0);
	host_expect_eof(fd);
	host_write(fd, "bye", 3);
	guest_read(40000, 1234, buf, 3);
	ASSERT_EQ_MEM(buf, "bye", 3);
	/* The host closes: SHUTDOWN SEND, then RST (both sides done). */
	close(fd);
	rx_expect(&p, HK_VSOCK_OP_SHUTDOWN, 40000, 1234);
	ASSERT_EQ_U64(p.flags, HK_VSOCK_SHUT_SEND);
	rx_expect(&p, HK_VSOCK_OP_RST, 40000, 1234);
	rx_none(50);
	/* The pair is free again. */
	fd = guest_connects(lfd, 40000, 1234);
	close(fd);
	close(lfd);
	dev_close();
	/* The device removed its own sockets. */
	ASSERT_TRUE(access(at("connect"), F_OK) < 0);
}

TEST(guest_close_waits_for_the_host)
{
	static uint8_t data[200000], got[200000];
	struct pkt p;
	int lfd, fd;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7 + i / 251);
	ASSERT_OK(dev_open(NULL));
	lfd = host_listen(80);
	fd = guest_connects(lfd, 1025, 80);
	/* More than the socket takes: the rest waits in the device. */
	for (size_t off = 0; off < sizeof(data); off += 50000)
		tx(HK_VSOCK_OP_RW, 1025, 80, 0, GBUF, 0, data + off, 50000);
	tx(HK_VSOCK_OP_SHUTDOWN, 1025, 80,
	   HK_VSOCK_SHUT_SEND | HK_VSOCK_SHUT_RCV, GBUF, 0, NULL, 0);
	/* Every byte reaches the host before the RST. */
	host_read(fd, got, sizeof(got));
	ASSERT_EQ_MEM(got, data, sizeof(data));
	host_expect_eof(fd);
	for (;;) {
		ASSERT_TRUE(rx_next(&p, 2000));
		ASSERT_EQ_U64(p.dst_port, 1025);
		if (p.op == HK_VSOCK_OP_RST)
			break;
		ASSERT_EQ_U64(p.op, HK_VSOCK_OP_CREDIT_UPDATE);
	}
	close(fd);
	close(lfd);
	dev_close();
}

TEST(connect_to_missing_socket_is_reset)
{
	struct pkt p;

	ASSERT_OK(dev_open(NULL));
	tx(HK_VSOCK_OP_REQUEST, 5555, 99, 0, GBUF, 0, NULL, 0);
	rx_expect(&p, HK_VSOCK_OP_RST, 5555, 99);
	rx_none(50);
	dev_close();
}

TEST(host_to_guest_through_connect)
{
	uint8_t buf[64];
	struct pkt p;
	uint32_t hp;
	int fd;

	ASSERT_OK(dev_open(NULL));
	fd = host_connect("connect");
	/* The preamble arrives in two pieces, bytes for the guest behind
	 * it. */
	host_write(fd, "00000003.0000", 13);
	hk_vsock_poll(g.vd, 10);
	rx_none(20);
	host_write(fd, "1388\nearly bytes", 16);
	ASSERT_TRUE(rx_next(&p, 2000));
	ASSERT_EQ_U64(p.op, HK_VSOCK_OP_REQUEST);
	ASSERT_EQ_U64(p.dst_port, 5000);
	ASSERT_GE_U64(p.src_port, HK_VSOCK_LOCAL_PORT_BASE);
	ASSERT_EQ_U64(p.buf_alloc, HK_VSOCK_BUF_ALLOC);
	hp = p.src_port;
	rx_none(50); /* nothing flows before the guest accepts */
	tx(HK_VSOCK_OP_RESPONSE, 5000, hp, 0, GBUF, 0, NULL, 0);
	guest_read(5000, hp, buf, 11);
	ASSERT_EQ_MEM(buf, "early bytes", 11);
	tx(HK_VSOCK_OP_RW, 5000, hp, 0, GBUF, 11, "pong", 4);
	host_read(fd, buf, 4);
	ASSERT_EQ_MEM(buf, "pong", 4);
	/* The guest resets: the host socket closes. */
	tx(HK_VSOCK_OP_RST, 5000, hp, 0, GBUF, 11, NULL, 0);
	host_expect_eof(fd);
	close(fd);

	/* A second client gets another local port; the guest refuses it. */
	fd = host_connect("connect");
	host_write(fd, "00000003.00001388\n", 18);
	ASSERT_TRUE(rx_next(&p, 2000));
	ASSERT_EQ_U64(p.op, HK_VSOCK_OP_REQUEST);
	ASSERT_NE_U64(p.src_port, hp);
	tx(HK_VSOCK_OP_RST, 5000, p.src_port, 0, 0, 0, NULL, 0);
	host_expect_eof(fd);
	close(fd);

	/* A preamble naming another cid, or not hex: closed, no REQUEST. */
	fd = host_connect("connect");
	host_write(fd, "00000004.00001388\n", 18);
	host_expect_eof(fd);
	close(fd);
	fd = host_connect("connect");
	host_write(fd, "0000000g.00001388\n", 18);
	host_expect_eof(fd);
	close(fd);
	rx_none(50);
	dev_close();
}

TEST(guest_forwards)
{
	char target[64];
	uint8_t buf[64];
	struct pkt p;
	ssize_t n;
	int fd;

	ASSERT_OK(dev_open("guest_forwards=5000;0x10"));
	n = readlink(at("guest.00001388"), target, sizeof(target) - 1);
	ASSERT_GT_INT(n, 0);
	target[n] = '\0';
	ASSERT_EQ_STR(target, "00000003.00001388");
	ASSERT_OK(access(at("guest.00000010"), F_OK));

	/* Through the symlink, without a preamble. */
	fd = host_connect("guest.00001388");
	ASSERT_TRUE(rx_next(&p, 2000));
	ASSERT_EQ_U64(p.op, HK_VSOCK_OP_REQUEST);
	ASSERT_EQ_U64(p.dst_port, 5000);
	tx(HK_VSOCK_OP_RESPONSE, 5000, p.src_port, 0, GBUF, 0, NULL, 0);
	host_write(fd, "ping", 4);
	guest_read(5000, p.src_port, buf, 4);
	ASSERT_EQ_MEM(buf, "ping", 4);
	tx(HK_VSOCK_OP_RW, 5000, p.src_port, 0, GBUF, 4, "pong", 4);
	host_read(fd, buf, 4);
	ASSERT_EQ_MEM(buf, "pong", 4);
	close(fd);
	/* The host's close: SHUTDOWN SEND. */
	rx_expect(&p, HK_VSOCK_OP_SHUTDOWN, 5000, p.src_port);
	ASSERT_EQ_U64(p.flags, HK_VSOCK_SHUT_SEND);
	dev_close();
	ASSERT_TRUE(access(at("guest.00001388"), F_OK) < 0);
	ASSERT_TRUE(access(at("00000003.00001388"), F_OK) < 0);
	ASSERT_TRUE(access(at("connect"), F_OK) < 0);
}

TEST(credit_holds_host_bytes_back)
{
	static uint8_t data[5000], got[5000];
	struct pkt p;
	uint32_t fwd = 0;
	size_t have = 0;
	int lfd, fd;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i ^ (i >> 8));
	ASSERT_OK(dev_open(NULL));
	lfd = host_listen(7);
	/* The guest's buffer is 1000 bytes. */
	tx(HK_VSOCK_OP_REQUEST, 2000, 7, 0, 1000, 0, NULL, 0);
	rx_expect(&p, HK_VSOCK_OP_RESPONSE, 2000, 7);
	fd = accept(lfd, NULL, NULL);
	ASSERT_GE_INT(fd, 0);
	host_write(fd, data, sizeof(data));
	while (have < sizeof(data)) {
		size_t window = have;

		/* Exactly up to the credit, then nothing. */
		while (have - window < 1000 && have < sizeof(data)) {
			rx_expect(&p, HK_VSOCK_OP_RW, 2000, 7);
			memcpy(got + have, p.data, p.len);
			have += p.len;
		}
		ASSERT_EQ_U64(have - window, sizeof(data) - window < 1000 ?
						     sizeof(data) - window :
						     1000);
		rx_none(30);
		/* The guest's application read it all. */
		fwd = (uint32_t)have;
		tx(HK_VSOCK_OP_CREDIT_UPDATE, 2000, 7, 0, 1000, fwd, NULL, 0);
	}
	ASSERT_EQ_MEM(got, data, sizeof(data));

	/* A credit request is answered with our counters. */
	tx(HK_VSOCK_OP_CREDIT_REQUEST, 2000, 7, 0, 1000, fwd, NULL, 0);
	rx_expect(&p, HK_VSOCK_OP_CREDIT_UPDATE, 2000, 7);
	ASSERT_EQ_U64(p.buf_alloc, HK_VSOCK_BUF_ALLOC);
	ASSERT_EQ_U64(p.fwd_cnt, 0);
	close(fd);
	close(lfd);
	dev_close();
}

TEST(our_credit_is_enforced)
{
	static uint8_t chunk[65536], sink[65536];
	struct pkt p;
	uint32_t sent = 0;
	int lfd, fd;

	memset(chunk, 0x5a, sizeof(chunk));
	ASSERT_OK(dev_open(NULL));
	lfd = host_listen(8);
	fd = guest_connects(lfd, 3000, 8);
	/* The host does not read: our whole buf_alloc is taken ... */
	while (sent < HK_VSOCK_BUF_ALLOC) {
		tx(HK_VSOCK_OP_RW, 3000, 8, 0, GBUF, 0, chunk, 65536);
		sent += 65536;
	}
	/* ... and the host reading it brings CREDIT_UPDATEs: the guest
	 * learns of at least three quarters of what the host took. */
	for (uint32_t n = 0; n < sent; n += sizeof(sink))
		host_read(fd, sink, sizeof(sink));
	rx_expect(&p, HK_VSOCK_OP_CREDIT_UPDATE, 3000, 8);
	while (rx_next(&p, 30))
		ASSERT_EQ_U64(p.op, HK_VSOCK_OP_CREDIT_UPDATE);
	ASSERT_EQ_U64(p.buf_alloc, HK_VSOCK_BUF_ALLOC);
	ASSERT_GE_U64(p.fwd_cnt, sent - HK_VSOCK_BUF_ALLOC / 4);
	ASSERT_LE_U64(p.fwd_cnt, sent);
	/* A guest that ignores credit is reset: fill the socket and our
	 * buffer again, then one byte more. */
	sent = 0;
	for (int i = 0; i < 64 && sent < 8 * HK_VSOCK_BUF_ALLOC; i++) {
		tx(HK_VSOCK_OP_RW, 3000, 8, 0, GBUF, 0, chunk, 65536);
		sent += 65536;
		/* What the socket takes at once is reported. */
		while (rx_next(&p, 0) && p.op == HK_VSOCK_OP_CREDIT_UPDATE)
			;
		if (p.op == HK_VSOCK_OP_RST)
			break;
	}
	test_note("reset after %u bytes while the host did not read", sent);
	ASSERT_EQ_U64(p.op, HK_VSOCK_OP_RST);
	ASSERT_EQ_U64(p.dst_port, 3000);
	close(fd);
	close(lfd);
	dev_close();
}

TEST(hostile_headers)
{
	struct pkt p;
	int lfd, fd;

	ASSERT_OK(dev_open(NULL));
	lfd = host_listen(9);
	/* Not from the guest's cid, not to the host: dropped. */
	tx_full(CID + 1, 2, 100, 9, HK_VSOCK_TYPE_STREAM, HK_VSOCK_OP_REQUEST,
		0, GBUF, 0, NULL, 0);
	tx_full(CID, 7, 100, 9, HK_VSOCK_TYPE_STREAM, HK_VSOCK_OP_REQUEST, 0,
		GBUF, 0, NULL, 0);
	rx_none(30);
	/* A chain shorter than a header: dropped. */
	tx_chain(CID, 2, 100, 9, 1, 1, 0, 0, 0, 0, NULL, 0, 20);
	rx_none(30);
	/* SEQPACKET, an unknown op, a length beyond the chain, data on a
	 * control packet, RW for no connection: RST. */
	tx_full(CID, 2, 101, 9, 2, HK_VSOCK_OP_REQUEST, 0, GBUF, 0, NULL, 0);
	rx_expect(&p, HK_VSOCK_OP_RST, 101, 9);
	tx(99, 102, 9, 0, GBUF, 0, NULL, 0);
	rx_expect(&p, HK_VSOCK_OP_RST, 102, 9);
	tx_chain(CID, 2, 103, 9, 1, HK_VSOCK_OP_RW, 0, GBUF, 0, 3000, "ab", 2,
		 HK_VSOCK_HDR_LEN); /* claims 3000 bytes, has 2 */
	rx_expect(&p, HK_VSOCK_OP_RST, 103, 9);
	tx(HK_VSOCK_OP_RW, 110, 9, 0, GBUF, 0, "ab", 2); /* no connection */
	rx_expect(&p, HK_VSOCK_OP_RST, 110, 9);
	tx(HK_VSOCK_OP_REQUEST, 104, 9, 0, GBUF, 0, "x", 1);
	rx_expect(&p, HK_VSOCK_OP_RST, 104, 9);
	/* An RST for nothing gets nothing. */
	tx(HK_VSOCK_OP_RST, 105, 9, 0, 0, 0, NULL, 0);
	rx_none(30);
	/* A RESPONSE on an established connection, a duplicate REQUEST:
	 * the connection is reset and its host socket closed. */
	fd = guest_connects(lfd, 106, 9);
	tx(HK_VSOCK_OP_RESPONSE, 106, 9, 0, GBUF, 0, NULL, 0);
	rx_expect(&p, HK_VSOCK_OP_RST, 106, 9);
	host_expect_eof(fd);
	close(fd);
	fd = guest_connects(lfd, 107, 9);
	tx(HK_VSOCK_OP_REQUEST, 107, 9, 0, GBUF, 0, NULL, 0);
	rx_expect(&p, HK_VSOCK_OP_RST, 107, 9);
	host_expect_eof(fd);
	close(fd);
	/* The device still works. */
	fd = guest_connects(lfd, 108, 9);
	tx(HK_VSOCK_OP_RW, 108, 9, 0, GBUF, 0, "ok", 2);
	{
		uint8_t b[2];

		host_read(fd, b, 2);
		ASSERT_EQ_MEM(b, "ok", 2);
	}
	ASSERT_FALSE(bar_rd(0x14, 1) & HK_VIRTIO_S_NEEDS_RESET);
	close(fd);
	close(lfd);
	dev_close();
}

TEST(request_flood_is_bounded)
{
	struct rlimit rl;
	struct pkt p;
	unsigned responses = 0, resets = 0;
	int lfd;

	/* Room for the device's 1024 sockets plus ours. */
	ASSERT_OK(getrlimit(RLIMIT_NOFILE, &rl));
	if (rl.rlim_max < 1200)
		TEST_SKIP("RLIMIT_NOFILE hard limit %llu",
			  (unsigned long long)rl.rlim_max);
	rl.rlim_cur = rl.rlim_max;
	ASSERT_OK(setrlimit(RLIMIT_NOFILE, &rl));
	ASSERT_OK(dev_open(NULL));
	lfd = host_listen(10);
	for (uint32_t i = 0; i < HK_VSOCK_MAX_CONNS + 50; i++) {
		tx(HK_VSOCK_OP_REQUEST, 10000 + i, 10, 0, GBUF, 0, NULL, 0);
		ASSERT_TRUE(rx_next(&p, 1000));
		ASSERT_EQ_U64(p.dst_port, 10000 + i);
		if (p.op == HK_VSOCK_OP_RESPONSE)
			responses++;
		else if (p.op == HK_VSOCK_OP_RST)
			resets++;
	}
	ASSERT_EQ_U64(responses, HK_VSOCK_MAX_CONNS);
	ASSERT_EQ_U64(resets, 50);
	/* Requests to nowhere, faster than the guest takes the RSTs: some
	 * RSTs are dropped, nothing breaks. */
	for (uint32_t i = 0; i < 600; i++)
		tx(HK_VSOCK_OP_REQUEST, 30000 + i, 11, 0, GBUF, 0, NULL, 0);
	while (rx_next(&p, 30))
		ASSERT_EQ_U64(p.op, HK_VSOCK_OP_RST);
	/* A reset of the device closes everything; it works again. */
	driver_init();
	tx(HK_VSOCK_OP_REQUEST, 9, 10, 0, GBUF, 0, NULL, 0);
	rx_expect(&p, HK_VSOCK_OP_RESPONSE, 9, 10);
	close(lfd);
	dev_close();
}

TEST(device_reset_closes_connections)
{
	int lfd, fd, hfd;
	struct pkt p;

	ASSERT_OK(dev_open(NULL));
	lfd = host_listen(11);
	fd = guest_connects(lfd, 50, 11);
	hfd = host_connect("connect");
	host_write(hfd, "00000003.00000033\n", 18);
	ASSERT_TRUE(rx_next(&p, 2000));
	ASSERT_EQ_U64(p.op, HK_VSOCK_OP_REQUEST);
	ASSERT_EQ_U64(p.dst_port, 0x33);
	bar_wr(0x14, 1, 0);
	host_expect_eof(fd);
	host_expect_eof(hfd);
	close(fd);
	close(hfd);
	close(lfd);
	dev_close();
}

TEST(bad_options)
{
	char conf[256], path[200];
	struct hk_vm *vm = fake_vm_new(1 << 20);
	int fd;

	ASSERT_NOT_NULL(vm);
	ASSERT_OK(hk_pci_bus_new(vm, &vm->pci));
	snprintf(path, sizeof(path), "%s/d", test_tmpdir());
	ASSERT_OK(mkdir(path, 0700));
	ASSERT_ERR(hk_virtio_sock_create(vm, 4, 0, NULL), -EINVAL);
	ASSERT_ERR(hk_virtio_sock_create(vm, 4, 0, ""), -EINVAL);
	snprintf(conf, sizeof(conf), "guest_cid=3");
	ASSERT_ERR(hk_virtio_sock_create(vm, 4, 0, conf), -EINVAL);
	snprintf(conf, sizeof(conf), "path=%s", path);
	ASSERT_ERR(hk_virtio_sock_create(vm, 4, 0, conf), -EINVAL);
	snprintf(conf, sizeof(conf), "guest_cid=2,path=%s", path);
	ASSERT_ERR(hk_virtio_sock_create(vm, 4, 0, conf), -EINVAL);
	snprintf(conf, sizeof(conf), "guest_cid=-3,path=%s", path);
	ASSERT_ERR(hk_virtio_sock_create(vm, 4, 0, conf), -EINVAL);
	snprintf(conf, sizeof(conf), "guest_cid=4294967295,path=%s", path);
	ASSERT_ERR(hk_virtio_sock_create(vm, 4, 0, conf), -EINVAL);
	snprintf(conf, sizeof(conf), "guest_cid=3,path=%s,color=red", path);
	ASSERT_ERR(hk_virtio_sock_create(vm, 4, 0, conf), -EINVAL);
	snprintf(conf, sizeof(conf), "guest_cid=3,path=%s,guest_forwards=1;x",
		 path);
	ASSERT_ERR(hk_virtio_sock_create(vm, 4, 0, conf), -EINVAL);
	snprintf(conf, sizeof(conf), "guest_cid=3,path=%s,guest_forwards=7;7",
		 path);
	ASSERT_ERR(hk_virtio_sock_create(vm, 4, 0, conf), -EINVAL);
	snprintf(conf, sizeof(conf), "guest_cid=3,path=/%0100d", 0);
	ASSERT_ERR(hk_virtio_sock_create(vm, 4, 0, conf), -ENAMETOOLONG);
	snprintf(conf, sizeof(conf), "guest_cid=3,path=%s/missing", path);
	ASSERT_ERR(hk_virtio_sock_create(vm, 4, 0, conf), -ENOENT);
	/* A regular file where a socket goes is not stale: refused. */
	snprintf(conf, sizeof(conf), "%s/connect", path);
	fd = open(conf, O_CREAT | O_WRONLY, 0600);
	ASSERT_GE_INT(fd, 0);
	close(fd);
	snprintf(conf, sizeof(conf), "guest_cid=3,path=%s", path);
	ASSERT_ERR(hk_virtio_sock_create(vm, 4, 0, conf), -EEXIST);
	ASSERT_NULL(hk_pci_find(vm->pci, 4, 0));
	/* A stale socket is replaced. */
	snprintf(conf, sizeof(conf), "%s/connect", path);
	unlink(conf);
	{
		struct sockaddr_un sun;
		int s = socket(AF_UNIX, SOCK_STREAM, 0);

		sun_path(&sun, conf);
		ASSERT_OK(bind(s, (struct sockaddr *)&sun, sizeof(sun)));
		close(s);
	}
	snprintf(conf, sizeof(conf),
		 "guest_cid=0x10,path=%s,guest_forwards=", path);
	ASSERT_OK(hk_virtio_sock_create(vm, 4, 0, conf));
	ASSERT_NOT_NULL(hk_pci_find(vm->pci, 4, 0));
	hk_pci_bus_free(vm->pci);
	fake_vm_free(vm);
}

static const struct test_case tests[] = {
	TEST_CASE(guest_to_host),
	TEST_CASE(guest_close_waits_for_the_host),
	TEST_CASE(connect_to_missing_socket_is_reset),
	TEST_CASE(host_to_guest_through_connect),
	TEST_CASE(guest_forwards),
	TEST_CASE(credit_holds_host_bytes_back),
	TEST_CASE(our_credit_is_enforced),
	TEST_CASE(hostile_headers),
	TEST_CASE(request_flood_is_bounded),
	TEST_CASE(device_reset_closes_connections),
	TEST_CASE(bad_options),
};

TEST_MAIN(tests);
