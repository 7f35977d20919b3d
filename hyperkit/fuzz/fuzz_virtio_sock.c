// SPDX-License-Identifier: MIT
/*
 * Fuzz the virtio-sock device (virtio_sock.c) as a guest and a host peer
 * would drive it together: the input is a program of guest and host
 * actions against one device on a fake VM (guest_cid=3, path= a private
 * directory made once per process in /dev/shm or /tmp) with real Unix
 * sockets on the host side, so that connections are set up, carry bytes
 * both ways under credit, shut down, reset and are torn down by a device
 * reset, while the guest's packets and descriptor chains are as hostile
 * as the fuzzer likes.
 *
 * Input. Byte 0 configures the device and the driver:
 *   bit 0      guest_forwards=7;8 (host clients reach guest ports 7, 8)
 *   bits 1-3   receive buffers posted at start, 4 per step (0 .. 28)
 *   bit 4      negotiate VIRTIO_F_EVENT_IDX
 *   bit 5      negotiate VIRTIO_F_INDIRECT_DESC
 * The rest is commands, one opcode byte each, kind in the low nibble and
 * an argument A (0 .. 15) in the high one, then the kind's bytes (bytes
 * past the end read as zero; at most MAX_CMDS commands run):
 *   0 .. 6  the guest sends op kind + 1 (REQUEST, RESPONSE, RST,
 *           SHUTDOWN, RW, CREDIT_UPDATE, CREDIT_REQUEST) on connection A
 *           of its table; RW: u16 payload length; SHUTDOWN: flags byte;
 *           CREDIT_UPDATE: a mode byte (buf_alloc: 256 KiB, next byte *
 *           16, u32, 0; fwd_cnt: as counted, minus a byte, u32, plus a
 *           byte)
 *   7       the guest sends a raw 44-byte header (and as much payload as
 *           its len field says, at most MAX_TX_PAYLOAD)
 *   8       shape byte for the next chain sent (split, short or
 *           out-of-memory descriptors, a writable tail, an indirect
 *           table, a len field that lies); see tx_send
 *   9       the guest posts receive buffers: A & 7 + 1 of Linux's shape
 *           (44 + 4096), or with A & 8 one buffer of the shape in the
 *           next byte; see rx_post
 *   10      poll the device's event loop (timeout 0); a client of
 *           DIR/connect needs two: accept, then its preamble
 *   11      the host accepts on listener A & 1 (host port 1 or 2)
 *   12      a host client connects to DIR/connect (A even) and writes a
 *           preamble chosen by the next byte, or to the guest_forwards
 *           socket of port 7 or 8 (A odd)
 *   13      host socket A & 7 writes a u16 count of bytes
 *   14      host socket A & 7: read, shutdown(WR), shutdown(RD), close,
 *           chosen by the next byte
 *   15      the driver: A % 4 = 0 reset and set up again, 1 reset only,
 *           2 notify the receive queue, 3 notify the transmit queue
 *
 * The guest's table of connections (guest port, host port) starts with
 * pairs towards listeners at host ports 1 and 2, one towards a port
 * nobody listens on and one with extreme ports, and learns the pairs of
 * the host-initiated connections from the REQUESTs the device sends. Each
 * entry keeps the buf_alloc the guest advertises and fwd_cnt, the payload
 * bytes it has received, which every packet carries. Every packet the
 * device puts in a receive buffer is checked: it fits the buffer, its
 * used length is header plus len, its cids, type and op are what the
 * host may send, and the payload bytes of a connection never go beyond
 * the credit the guest last gave (buf_alloc + fwd_cnt of its last packet
 * the device took); a violation aborts, as a crash would.
 *
 * Everything is deterministic: Unix sockets on one machine deliver at
 * once, every socket is non-blocking, and the device's loop is polled
 * with timeout 0. The device, its sockets and every host socket go away
 * at the end of each input.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../pci.h"
#include "../tests/fake_platform.h"
#include "../virtio_pci.h"
#include "../virtio_sock.h"
#include "base/endian.h"

#define MEM 0x100000u
#define QSZ 128u
#define DESC(q) (0x2000u * ((q) + 1))
#define AVAIL(q) (DESC(q) + 0x800u)
#define USED(q) (DESC(q) + 0x1000u)
#define SLOT 3u
#define CID 3u

#define RX_SLOTS 32u /* receive buffers, 4 descriptors each */
#define RX_BASE 0x10000u
#define RX_STRIDE 0x1100u
#define RX_AT(i) (RX_BASE + RX_STRIDE * (i))
#define RX_DATA 4096u

#define TX_SLOTS 4u /* transmit chains, 4 descriptors each */
#define TX_BASE 0x40000u
#define TX_STRIDE 0x12000u
#define TX_AT(k) (TX_BASE + TX_STRIDE * (k))
#define TX_HDR(k) (TX_AT(k) + 0x100u - HK_VSOCK_HDR_LEN) /* payload at +0x100 */
#define TX_IND(k) (TX_AT(k) + 0x11000u) /* an indirect table */
#define MAX_TX_PAYLOAD 0x10010u /* a little over the device's limit */

#define NPAIRS 16u
#define NLEARN 8u /* pairs 8 .. 15 are learned from REQUESTs */
#define NHOST 8u
#define HOST_PORT_A 1u
#define HOST_PORT_B 2u
#define HOST_PORT_NONE 99u
#define GBUF (256u << 10)
#define MAX_CMDS 512u
#define IO_CHUNK 0x10000u

struct pair {
	uint32_t gp, hp; /* guest port, host port */
	uint32_t buf_alloc; /* what the guest advertises */
	uint32_t fwd_cnt; /* payload bytes the guest has received */
	/* What the device last heard from this pair: the credit it may use
	 * (unknown after a raw header the device may have taken). */
	uint32_t told_buf_alloc, told_fwd_cnt;
	bool unknown;
};

/* A descriptor as the guest wrote it. */
struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
};

struct rx_slot {
	bool posted;
	unsigned n;
	struct desc d[4];
	uint64_t in_len; /* writable bytes */
};

struct fz {
	const uint8_t *p, *end;
	struct hk_vm *vm;
	struct hk_virtio *vd;
	uint8_t *m;
	uint32_t driver_features;

	uint16_t tx_avail, rx_avail, rx_seen;
	unsigned tx_next;
	uint8_t shape; /* for the next chain sent */

	struct rx_slot rx[RX_SLOTS];
	struct pair pairs[NPAIRS];
	unsigned learned;

	int lfd[2]; /* host listeners on ports 1 and 2 */
	int host[NHOST]; /* accepted and client sockets */
	bool forwards;
	uint8_t io[IO_CHUNK]; /* host reads and writes */
};

/* The process's directory for the device's sockets. */
static char fz_dir[64];
static pid_t fz_dir_owner;

/* ---------------------------------------------------------------- input */

static uint8_t get8(struct fz *f)
{
	return f->p < f->end ? *f->p++ : 0;
}

static uint16_t get16(struct fz *f)
{
	uint16_t v = get8(f);

	return (uint16_t)(v | get8(f) << 8);
}

static uint32_t get32(struct fz *f)
{
	uint32_t v = get16(f);

	return v | (uint32_t)get16(f) << 16;
}

/* ---------------------------------------------------------------- files */

static void dir_path(char *out, size_t size, const char *name)
{
	snprintf(out, size, "%s/%s", fz_dir, name);
}

static void dir_remove(void)
{
	static const char *names[] = { "connect",	    "00000002.00000001",
				       "00000002.00000002", "00000003.00000007",
				       "00000003.00000008", "guest.00000007",
				       "guest.00000008" };
	char path[128];

	if (!fz_dir[0] || getpid() != fz_dir_owner)
		return;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		dir_path(path, sizeof(path), names[i]);
		unlink(path);
	}
	rmdir(fz_dir);
}

/* The device broke a rule: report it as a crash, leaving no files. */
static _Noreturn void fz_fail(void)
{
	dir_remove();
	abort();
}

static bool dir_ready(void)
{
	if (fz_dir[0] && fz_dir_owner == getpid())
		return true;
	/* tmpfs if there is one: socket files come and go on every input. */
	snprintf(fz_dir, sizeof(fz_dir), "/dev/shm/hk-fuzz-vsock.XXXXXX");
	if (!mkdtemp(fz_dir)) {
		snprintf(fz_dir, sizeof(fz_dir), "/tmp/hk-fuzz-vsock.XXXXXX");
		if (!mkdtemp(fz_dir)) {
			fz_dir[0] = '\0';
			return false;
		}
	}
	fz_dir_owner = getpid();
	atexit(dir_remove);
	return true;
}

static int sock_at(const char *name, bool listener)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd;

	dir_path(sun.sun_path, sizeof(sun.sun_path), name);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (listener) {
		unlink(sun.sun_path);
		if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0 &&
		    listen(fd, 16) == 0)
			return fd;
	} else if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
		return fd;
	}
	close(fd);
	return -1;
}

/* ---------------------------------------------------------------- driver */

static void bar_wr(struct fz *f, uint64_t off, unsigned size, uint64_t v)
{
	hk_virtio_bar_io(f->vd, off, size, true, &v);
}

static void put_desc(struct fz *f, uint64_t table, unsigned i, uint64_t addr,
		     uint32_t len, uint16_t flags, uint16_t next)
{
	uint8_t *d = f->m + table + 16 * i;

	store_le64(d, addr);
	store_le32(d + 8, len);
	store_le16(d + 12, flags);
	store_le16(d + 14, next);
}

static void avail_add(struct fz *f, unsigned q, uint16_t *idx, uint16_t head)
{
	store_le16(f->m + AVAIL(q) + 4 + 2 * (*idx % QSZ), head);
	(*idx)++;
	store_le16(f->m + AVAIL(q) + 2, *idx);
}

/* Reset the device (unless it is new), then set it up as Linux does,
 * with nothing posted. */
static void driver_init(struct fz *f, bool reset)
{
	if (reset)
		bar_wr(f, 0x14, 1, 0);
	bar_wr(f, 0x14, 1, HK_VIRTIO_S_ACKNOWLEDGE | HK_VIRTIO_S_DRIVER);
	bar_wr(f, 0x08, 4, 0);
	bar_wr(f, 0x0c, 4, f->driver_features);
	bar_wr(f, 0x08, 4, 1);
	bar_wr(f, 0x0c, 4, 1); /* VERSION_1 */
	bar_wr(f, 0x14, 1, 1 | 2 | HK_VIRTIO_S_FEATURES_OK);
	for (unsigned q = 0; q < 3; q++) {
		memset(f->m + DESC(q), 0, 0x2000);
		bar_wr(f, 0x16, 2, q);
		bar_wr(f, 0x18, 2, QSZ);
		bar_wr(f, 0x20, 8, DESC(q));
		bar_wr(f, 0x28, 8, AVAIL(q));
		bar_wr(f, 0x30, 8, USED(q));
		bar_wr(f, 0x1c, 2, 1);
	}
	f->tx_avail = f->rx_avail = f->rx_seen = 0;
	memset(f->rx, 0, sizeof(f->rx));
	bar_wr(f, 0x14, 1,
	       1 | 2 | HK_VIRTIO_S_FEATURES_OK | HK_VIRTIO_S_DRIVER_OK);
}

/* ---------------------------------------------------------------- guest rx */

/* Post one receive buffer of the given shape (0: Linux's 44 + 4096):
 *   r & 3 == 0  one writable descriptor of (r >> 2) * 64 + 64 bytes
 *            1  the header split at (r >> 2) % 44, then 4096 bytes
 *            2  a readable descriptor first, then 44 + 4096
 *            3  one writable descriptor of (r >> 2) % 45 bytes
 */
static void rx_post(struct fz *f, bool custom, uint8_t r)
{
	struct rx_slot *s = NULL;
	unsigned i, head;
	uint64_t at;

	for (i = 0; i < RX_SLOTS; i++) {
		if (!f->rx[i].posted) {
			s = &f->rx[i];
			break;
		}
	}
	if (!s)
		return;
	at = RX_AT(i);
	head = 4 * i;
	s->n = 0;
	if (!custom) {
		s->d[s->n++] = (struct desc){ at, HK_VSOCK_HDR_LEN,
					      HK_VQ_DESC_F_WRITE };
		s->d[s->n++] =
			(struct desc){ at + 0x40, RX_DATA, HK_VQ_DESC_F_WRITE };
	} else if ((r & 3) == 0) {
		s->d[s->n++] = (struct desc){ at, (uint32_t)(r >> 2) * 64 + 64,
					      HK_VQ_DESC_F_WRITE };
	} else if ((r & 3) == 1) {
		uint32_t x = (uint32_t)(r >> 2) % HK_VSOCK_HDR_LEN;

		s->d[s->n++] = (struct desc){ at, x, HK_VQ_DESC_F_WRITE };
		s->d[s->n++] = (struct desc){ at + x, HK_VSOCK_HDR_LEN - x,
					      HK_VQ_DESC_F_WRITE };
		s->d[s->n++] =
			(struct desc){ at + 0x40, RX_DATA, HK_VQ_DESC_F_WRITE };
	} else if ((r & 3) == 2) {
		s->d[s->n++] = (struct desc){ at + 0x1080, 16, 0 };
		s->d[s->n++] = (struct desc){ at, HK_VSOCK_HDR_LEN,
					      HK_VQ_DESC_F_WRITE };
		s->d[s->n++] =
			(struct desc){ at + 0x40, RX_DATA, HK_VQ_DESC_F_WRITE };
	} else {
		s->d[s->n++] = (struct desc){ at,
					      (uint32_t)(r >> 2) %
						      (HK_VSOCK_HDR_LEN + 1),
					      HK_VQ_DESC_F_WRITE };
	}
	s->in_len = 0;
	for (unsigned k = 0; k < s->n; k++) {
		bool more = k + 1 < s->n;

		put_desc(f, DESC(0), head + k, s->d[k].addr, s->d[k].len,
			 (uint16_t)(s->d[k].flags |
				    (more ? HK_VQ_DESC_F_NEXT : 0)),
			 (uint16_t)(head + k + 1));
		if (s->d[k].flags & HK_VQ_DESC_F_WRITE)
			s->in_len += s->d[k].len;
	}
	s->posted = true;
	avail_add(f, 0, &f->rx_avail, (uint16_t)head);
}

static struct pair *pair_find(struct fz *f, uint32_t gp, uint32_t hp)
{
	for (unsigned i = 0; i < NPAIRS; i++)
		if (f->pairs[i].gp == gp && f->pairs[i].hp == hp)
			return &f->pairs[i];
	return NULL;
}

/* The used length and the packet a receive buffer holds must be what the
 * device may give: anything else is a device bug. */
static void rx_check(struct fz *f, const struct rx_slot *s, uint32_t used)
{
	uint8_t h[HK_VSOCK_HDR_LEN];
	uint32_t got = 0, len;
	uint16_t op;
	struct pair *pr;

	if (used > s->in_len)
		fz_fail();
	if (used == 0)
		return;
	if (used < HK_VSOCK_HDR_LEN)
		fz_fail();
	for (unsigned k = 0; k < s->n && got < sizeof(h); k++) {
		uint32_t n = s->d[k].len;

		if (!(s->d[k].flags & HK_VQ_DESC_F_WRITE))
			continue;
		if (n > sizeof(h) - got)
			n = sizeof(h) - got;
		memcpy(h + got, f->m + s->d[k].addr, n);
		got += n;
	}
	len = load_le32(h + 24);
	op = load_le16(h + 30);
	if (load_le64(h) != HK_VSOCK_HOST_CID || load_le64(h + 8) != CID ||
	    load_le16(h + 28) != HK_VSOCK_TYPE_STREAM ||
	    op < HK_VSOCK_OP_REQUEST || op > HK_VSOCK_OP_CREDIT_UPDATE ||
	    (op != HK_VSOCK_OP_RST &&
	     load_le32(h + 36) != HK_VSOCK_BUF_ALLOC) ||
	    (uint64_t)used != HK_VSOCK_HDR_LEN + (uint64_t)len ||
	    (op != HK_VSOCK_OP_RW && len) || (op == HK_VSOCK_OP_RW && !len))
		fz_fail();

	pr = pair_find(f, load_le32(h + 20), load_le32(h + 16));
	if (op == HK_VSOCK_OP_REQUEST && !pr) {
		/* A new pair: the device has heard nothing from it. */
		pr = &f->pairs[NPAIRS - NLEARN + f->learned++ % NLEARN];
		*pr = (struct pair){ .gp = load_le32(h + 20),
				     .hp = load_le32(h + 16),
				     .buf_alloc = GBUF };
	} else if (op == HK_VSOCK_OP_REQUEST) {
		/* A pair the guest knew (or guessed and answered already:
		 * the device then still sends the REQUEST it owed, with the
		 * credit of the RESPONSE kept). Its bytes come after this. */
		pr->fwd_cnt = 0;
	} else if (pr &&
		   (op == HK_VSOCK_OP_RESPONSE || op == HK_VSOCK_OP_RST)) {
		pr->fwd_cnt = 0; /* a new connection counts from zero */
	} else if (pr && op == HK_VSOCK_OP_RW) {
		/* Never beyond the credit the guest gave. */
		pr->fwd_cnt += len;
		if (!pr->unknown &&
		    pr->fwd_cnt - pr->told_fwd_cnt > pr->told_buf_alloc)
			fz_fail();
	}
}

/* Take every used receive buffer back. */
static void rx_reap(struct fz *f)
{
	uint16_t idx = load_le16(f->m + USED(0) + 2);

	while (f->rx_seen != idx) {
		const uint8_t *u = f->m + USED(0) + 4 + 8 * (f->rx_seen % QSZ);
		uint32_t id = load_le32(u), used = load_le32(u + 4);
		struct rx_slot *s;

		f->rx_seen++;
		if (id % 4 || id / 4 >= RX_SLOTS || !f->rx[id / 4].posted)
			fz_fail(); /* not a head we posted */
		s = &f->rx[id / 4];
		rx_check(f, s, used);
		s->posted = false;
	}
}

/* ---------------------------------------------------------------- guest tx */

/* Send header h (its len field already set) and len payload bytes, as a
 * chain of the pending shape s (then back to 0):
 *   s & 3 == 0  header descriptor, payload descriptor (if any)
 *            1  one descriptor for both
 *            2  the header split at 1 + (s >> 2 & 7) * 5, the payload in
 *               halves
 *            3  a header descriptor of (s >> 2 & 7) * 6 bytes (short),
 *               then the payload
 *   bit 4       a writable descriptor at the end
 *   bit 5       the last descriptor points past guest memory
 *   bit 6       the descriptors in an indirect table
 *   bit 7       the len field says one byte more than the chain holds
 */
static bool tx_send(struct fz *f, uint8_t *h, uint32_t len)
{
	uint16_t before = load_le16(f->m + USED(1) + 2);
	unsigned k = f->tx_next++ % TX_SLOTS;
	uint64_t hdr = TX_HDR(k), pay = TX_AT(k) + 0x100u;
	struct desc d[6];
	unsigned n = 0, head = 4 * k;
	uint8_t s = f->shape;
	uint32_t x;

	f->shape = 0;
	if (s & 0x80)
		store_le32(h + 24, load_le32(h + 24) + 1);
	memcpy(f->m + hdr, h, HK_VSOCK_HDR_LEN);
	/* The payload is whatever the slot holds: the device does not look
	 * at it, and writing it would cost more than the device's work. */
	switch (s & 3) {
	case 0:
		d[n++] = (struct desc){ hdr, HK_VSOCK_HDR_LEN, 0 };
		if (len)
			d[n++] = (struct desc){ pay, len, 0 };
		break;
	case 1:
		d[n++] = (struct desc){ hdr, HK_VSOCK_HDR_LEN + len, 0 };
		break;
	case 2:
		x = 1 + (uint32_t)(s >> 2 & 7) * 5;
		d[n++] = (struct desc){ hdr, x, 0 };
		d[n++] = (struct desc){ hdr + x, HK_VSOCK_HDR_LEN - x, 0 };
		if (len > 1)
			d[n++] = (struct desc){ pay, len / 2, 0 };
		if (len)
			d[n++] = (struct desc){ pay + len / 2, len - len / 2,
						0 };
		break;
	default:
		d[n++] = (struct desc){ hdr, (uint32_t)(s >> 2 & 7) * 6, 0 };
		if (len)
			d[n++] = (struct desc){ pay, len, 0 };
		break;
	}
	if (s & 0x10)
		d[n++] = (struct desc){ TX_AT(k), 16, HK_VQ_DESC_F_WRITE };
	/* A slot of the ring has 4 descriptors; a table has room for all. */
	if (!(s & 0x40) && n > 4)
		n = 4;
	if (s & 0x20)
		d[n - 1].addr = MEM - 8;

	if (s & 0x40) {
		for (unsigned i = 0; i < n; i++)
			put_desc(
				f, TX_IND(k), i, d[i].addr, d[i].len,
				(uint16_t)(d[i].flags |
					   (i + 1 < n ? HK_VQ_DESC_F_NEXT : 0)),
				(uint16_t)(i + 1));
		put_desc(f, DESC(1), head, TX_IND(k), 16 * n,
			 HK_VQ_DESC_F_INDIRECT, 0);
	} else {
		for (unsigned i = 0; i < n; i++)
			put_desc(
				f, DESC(1), head + i, d[i].addr, d[i].len,
				(uint16_t)(d[i].flags |
					   (i + 1 < n ? HK_VQ_DESC_F_NEXT : 0)),
				(uint16_t)(head + i + 1));
	}
	avail_add(f, 1, &f->tx_avail, (uint16_t)head);
	hk_virtio_notify(f->vd, 1);
	/* Served now or never (a reset device, a broken queue); with a
	 * whole header whose len field tells the truth, the device took the
	 * credit fields if the packet was for a connection at all. */
	return load_le16(f->m + USED(1) + 2) != before && !(s & 0xa0) &&
	       (s & 3) != 3;
}

static void hdr_make(uint8_t *h, uint32_t gp, uint32_t hp, uint16_t op,
		     uint32_t len, uint32_t flags, uint32_t buf_alloc,
		     uint32_t fwd_cnt)
{
	store_le64(h, CID);
	store_le64(h + 8, HK_VSOCK_HOST_CID);
	store_le32(h + 16, gp);
	store_le32(h + 20, hp);
	store_le32(h + 24, len);
	store_le16(h + 28, HK_VSOCK_TYPE_STREAM);
	store_le16(h + 30, op);
	store_le32(h + 32, flags);
	store_le32(h + 36, buf_alloc);
	store_le32(h + 40, fwd_cnt);
}

/* Guest packet op on pair a, with the kind's bytes. */
static void guest_op(struct fz *f, unsigned a, uint16_t op)
{
	struct pair *pr = &f->pairs[a];
	uint32_t len = 0, flags = 0, fwd = pr->fwd_cnt;
	uint8_t h[HK_VSOCK_HDR_LEN];

	if (op == HK_VSOCK_OP_REQUEST) {
		fwd = 0; /* a new connection */
	} else if (op == HK_VSOCK_OP_RW) {
		len = get16(f);
	} else if (op == HK_VSOCK_OP_SHUTDOWN) {
		flags = get8(f);
	} else if (op == HK_VSOCK_OP_CREDIT_UPDATE) {
		uint8_t mode = get8(f);

		switch (mode & 3) {
		case 0:
			pr->buf_alloc = GBUF;
			break;
		case 1:
			pr->buf_alloc = (uint32_t)get8(f) * 16;
			break;
		case 2:
			pr->buf_alloc = get32(f);
			break;
		default:
			pr->buf_alloc = 0;
			break;
		}
		switch (mode >> 2 & 3) {
		case 0:
			break;
		case 1:
			fwd -= get8(f);
			break;
		case 2:
			fwd = get32(f);
			break;
		default:
			fwd += get8(f);
			break;
		}
	}
	hdr_make(h, pr->gp, pr->hp, op, len, flags, pr->buf_alloc, fwd);
	if (tx_send(f, h, len)) {
		/* A REQUEST made a new connection or reset the old one. */
		if (op == HK_VSOCK_OP_REQUEST)
			pr->fwd_cnt = 0;
		pr->told_buf_alloc = pr->buf_alloc;
		pr->told_fwd_cnt = fwd;
		pr->unknown = false;
	}
}

static void guest_raw(struct fz *f)
{
	uint8_t h[HK_VSOCK_HDR_LEN];
	struct pair *pr;
	uint32_t len;

	for (unsigned i = 0; i < sizeof(h); i++)
		h[i] = get8(f);
	len = load_le32(h + 24);
	pr = pair_find(f, load_le32(h + 16), load_le32(h + 20));
	tx_send(f, h, len > MAX_TX_PAYLOAD ? MAX_TX_PAYLOAD : len);
	if (pr)
		pr->unknown = true;
}

/* ---------------------------------------------------------------- host */

static void host_add(struct fz *f, int fd)
{
	if (fd < 0)
		return;
	for (unsigned i = 0; i < NHOST; i++) {
		if (f->host[i] < 0) {
			f->host[i] = fd;
			return;
		}
	}
	close(fd);
}

/* A client of DIR/connect writes a preamble chosen by b:
 *   b < 0x80          "00000003.%08x\n" for guest port 7 + (b & 0x3f)
 *   0x80 .. 0xbf      the first (b & 0x1f) % 18 bytes of it (port 7)
 *   0xc0 ..           a wrong one: cid 4, or a bad character at
 *                     (b & 0x1f) % 18
 */
static void host_connect(struct fz *f, unsigned a)
{
	char pre[HK_VSOCK_PREAMBLE_LEN + 1];
	size_t n = HK_VSOCK_PREAMBLE_LEN;
	uint8_t b;
	int fd;

	if (a & 1) {
		if (!f->forwards)
			return;
		host_add(f, sock_at(a & 2 ? "guest.00000008" : "guest.00000007",
				    false));
		return;
	}
	b = get8(f);
	fd = sock_at("connect", false);
	if (fd < 0)
		return;
	snprintf(pre, sizeof(pre), "%08x.%08x\n", CID,
		 b < 0x80 ? 7u + (b & 0x3fu) : 7u);
	if (b >= 0x80 && b < 0xc0) {
		n = (b & 0x1fu) % HK_VSOCK_PREAMBLE_LEN;
	} else if (b >= 0xc0) {
		if (b & 0x20)
			pre[7] = '4';
		else
			pre[(b & 0x1fu) % HK_VSOCK_PREAMBLE_LEN] = 'x';
	}
	if (n && send(fd, pre, n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
		/* The device is gone or full: the socket is still ours. */
	}
	host_add(f, fd);
}

static void host_misc(struct fz *f, unsigned a)
{
	int *fd = &f->host[a % NHOST];
	uint8_t what = get8(f);

	if (*fd < 0)
		return;
	switch (what & 3) {
	case 0:
		for (unsigned i = 0; i < 4; i++)
			if (recv(*fd, f->io,
				 (what >> 2) ? (what >> 2) * 64u : IO_CHUNK,
				 MSG_DONTWAIT) <= 0)
				break;
		break;
	case 1:
		shutdown(*fd, SHUT_WR);
		break;
	case 2:
		shutdown(*fd, SHUT_RD);
		break;
	default:
		close(*fd);
		*fd = -1;
		break;
	}
}

static void host_write(struct fz *f, unsigned a)
{
	int fd = f->host[a % NHOST];
	uint16_t n = get16(f);

	if (fd < 0 || !n)
		return;
	memset(f->io, 'a' + (int)a, n);
	if (send(fd, f->io, n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
		/* Full or reset: the device sees what it sees. */
	}
}

/* ---------------------------------------------------------------- setup */

static void pairs_init(struct fz *f)
{
	static const uint32_t init[NPAIRS - NLEARN][2] = {
		{ 1000, HOST_PORT_A },	      { 1001, HOST_PORT_A },
		{ 1002, HOST_PORT_A },	      { 1000, HOST_PORT_B },
		{ 1001, HOST_PORT_B },	      { 1003, HOST_PORT_NONE },
		{ 0xffffffffu, HOST_PORT_A }, { 1004, 0xffffffffu },
	};

	for (unsigned i = 0; i < NPAIRS; i++) {
		struct pair *p = &f->pairs[i];

		if (i < NPAIRS - NLEARN) {
			p->gp = init[i][0];
			p->hp = init[i][1];
		} else {
			/* Guesses until REQUESTs teach better. */
			p->gp = 7 + (i - (NPAIRS - NLEARN));
			p->hp = HK_VSOCK_LOCAL_PORT_BASE +
				(i - (NPAIRS - NLEARN));
		}
		p->buf_alloc = GBUF;
	}
}

static int dev_open(struct fz *f, uint8_t cfg)
{
	char conf[160];
	struct hk_pci_dev *pd;

	f->vm = fake_vm_new(MEM);
	if (!f->vm)
		return -ENOMEM;
	f->m = f->vm->mem;
	if (hk_pci_bus_new(f->vm, &f->vm->pci) < 0)
		return -ENOMEM;
	f->forwards = cfg & 1;
	snprintf(conf, sizeof(conf), "guest_cid=%u,path=%s%s", CID, fz_dir,
		 f->forwards ? ",guest_forwards=7;8" : "");
	if (hk_virtio_sock_create(f->vm, SLOT, 0, conf) < 0)
		return -EIO;
	pd = hk_pci_find(f->vm->pci, SLOT, 0);
	if (!pd)
		return -EIO;
	f->vd = pd->opaque;
	f->driver_features = (cfg & 0x10 ? 1u << HK_VIRTIO_F_EVENT_IDX : 0) |
			     (cfg & 0x20 ? 1u << HK_VIRTIO_F_INDIRECT_DESC : 0);
	driver_init(f, false);
	for (unsigned i = 0; i < (cfg >> 1 & 7) * 4u; i++)
		rx_post(f, false, 0);
	hk_vsock_poll(f->vd, 0); /* DRIVER_OK's kick */
	rx_reap(f);
	return 0;
}

static void run(struct fz *f)
{
	for (unsigned cmd = 0; cmd < MAX_CMDS && f->p < f->end; cmd++) {
		uint8_t o = get8(f);
		unsigned kind = o & 15, a = o >> 4;

		if (kind <= 6) {
			guest_op(f, a, (uint16_t)(kind + 1));
			rx_reap(f);
			continue;
		}
		switch (kind) {
		case 7:
			guest_raw(f);
			break;
		case 8:
			f->shape = get8(f);
			break;
		case 9:
			if (a & 8) {
				rx_post(f, true, get8(f));
			} else {
				for (unsigned i = 0; i <= (a & 7); i++)
					rx_post(f, false, 0);
			}
			hk_virtio_notify(f->vd, 0);
			break;
		case 10:
			hk_vsock_poll(f->vd, 0);
			break;
		case 11:
			host_add(f, accept4(f->lfd[a & 1], NULL, NULL,
					    SOCK_NONBLOCK | SOCK_CLOEXEC));
			break;
		case 12:
			host_connect(f, a);
			break;
		case 13:
			host_write(f, a);
			break;
		case 14:
			host_misc(f, a);
			break;
		default:
			if (a % 4 == 0)
				driver_init(f, true);
			else if (a % 4 == 1)
				bar_wr(f, 0x14, 1, 0);
			else
				hk_virtio_notify(f->vd, a % 4 == 2 ? 0 : 1);
			break;
		}
		rx_reap(f);
	}
	/* Let what is in flight settle. */
	for (unsigned i = 0; i < 4; i++) {
		hk_vsock_poll(f->vd, 0);
		rx_reap(f);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz *f;

	if (size < 1 || !dir_ready())
		return 0;
	f = calloc(1, sizeof(*f));
	if (!f)
		return 0;
	f->p = data + 1;
	f->end = data + size;
	f->lfd[0] = sock_at("00000002.00000001", true);
	f->lfd[1] = sock_at("00000002.00000002", true);
	for (unsigned i = 0; i < NHOST; i++)
		f->host[i] = -1;
	pairs_init(f);

	if (dev_open(f, data[0]) == 0)
		run(f);

	for (unsigned i = 0; i < NHOST; i++)
		if (f->host[i] >= 0)
			close(f->host[i]);
	if (f->vm) {
		hk_pci_bus_free(f->vm->pci); /* the device and its sockets */
		fake_vm_free(f->vm);
	}
	for (unsigned i = 0; i < 2; i++) {
		char path[128];

		if (f->lfd[i] < 0)
			continue;
		close(f->lfd[i]);
		dir_path(path, sizeof(path),
			 i ? "00000002.00000002" : "00000002.00000001");
		unlink(path);
	}
	free(f);
	return 0;
}
