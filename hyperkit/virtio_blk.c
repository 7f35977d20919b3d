// SPDX-License-Identifier: MIT
/*
 * virtio-blk: a disk for the guest, on a raw file or on a qcow2 image
 * served in-process by libqcow.
 *
 * Theory of operation. A request is one chain: a 16-byte header (type,
 * reserved, sector) in the readable part, then readable data (OUT) or
 * discard/write-zeroes segments, then writable data (IN, GET_ID), and
 * last one writable status byte. We copy the header out of guest memory
 * before validating it, check every length and range with overflow-safe
 * arithmetic, move data straight between the disk and guest memory with
 * preadv/pwritev on slices of the chain's iovecs (no bounce buffer), and
 * write the status byte after the I/O. Discard and write-zeroes reach the
 * image: on qcow2 through qcow_image_discard and qcow_image_write_zeroes
 * (with QCOW_ZERO_MAY_UNMAP when the guest allows unmapping), so an fstrim
 * in the guest gives clusters back; on a raw file through fallocate's
 * PUNCH_HOLE and ZERO_RANGE.
 *
 * Requests are served on the event thread, one at a time per device
 * (libqcow's own worker queue is the next step for throughput).
 */
#include "virtio_blk.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/endian.h"
#include "platform.h"
#include "qcow/qcow.h"
#include "virtio_pci.h"

#define QUEUE_SIZE 256u
#define ZERO_CHUNK 65536u

struct hk_vblk {
	const struct logger *log;
	struct ratelimit rl;
	int fd; /* raw: the file; -1 for qcow */
	struct qcow_image *img; /* qcow: the image; NULL for raw */
	bool ro;
	uint64_t bytes; /* virtual size */
	uint32_t granularity; /* discard alignment in bytes */
	char id[HK_VBLK_ID_BYTES];
	struct iovec scratch[HK_VQ_MAX_IOV]; /* slices of one request */
};

static const uint8_t zeroes[ZERO_CHUNK];

/* ---------------------------------------------------------------- backend */

/* Move len bytes at offset between the disk and iov[0..n), at most
 * IOV_MAX vectors per call. Returns 0 or -errno (a short transfer is
 * -EIO). */
static int disk_rw(struct hk_vblk *b, bool write, const struct iovec *iov,
		   unsigned n, uint64_t offset)
{
	while (n) {
		int cnt = n > IOV_MAX ? IOV_MAX : (int)n;
		size_t want = 0;
		ssize_t r;

		for (int i = 0; i < cnt; i++)
			want += iov[i].iov_len;
		if (b->img)
			r = write ? qcow_image_pwritev(b->img, iov, cnt,
						       offset) :
				    qcow_image_preadv(b->img, iov, cnt, offset);
		else
			r = write ? pwritev(b->fd, iov, cnt, (off_t)offset) :
				    preadv(b->fd, iov, cnt, (off_t)offset);
		if (r < 0)
			return b->img ? (int)r : -errno;
		if ((size_t)r != want)
			return -EIO;
		iov += cnt;
		n -= (unsigned)cnt;
		offset += want;
	}
	return 0;
}

static int disk_flush(struct hk_vblk *b)
{
	if (b->img)
		return qcow_image_flush(b->img);
	return fdatasync(b->fd) < 0 ? -errno : 0;
}

static int raw_write_zeroes(struct hk_vblk *b, uint64_t off, uint64_t len)
{
	while (len) {
		size_t chunk = len > ZERO_CHUNK ? ZERO_CHUNK : (size_t)len;
		ssize_t r = pwrite(b->fd, zeroes, chunk, (off_t)off);

		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		off += (uint64_t)r;
		len -= (uint64_t)r;
	}
	return 0;
}

static int disk_discard(struct hk_vblk *b, uint64_t off, uint64_t len)
{
	if (b->img)
		return qcow_image_discard(b->img, off, len);
	if (fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)off, (off_t)len) < 0 &&
	    errno != EOPNOTSUPP)
		return -errno;
	return 0; /* discard is advisory */
}

static int disk_write_zeroes(struct hk_vblk *b, uint64_t off, uint64_t len,
			     bool unmap)
{
	if (b->img)
		return qcow_image_write_zeroes(b->img, off, len,
					       unmap ? QCOW_ZERO_MAY_UNMAP : 0);
	if (fallocate(b->fd,
		      unmap ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE :
			      FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
		      (off_t)off, (off_t)len) == 0)
		return 0;
	if (errno != EOPNOTSUPP && errno != ENOSYS)
		return -errno;
	return raw_write_zeroes(b, off, len);
}

/* ---------------------------------------------------------------- open */

struct blk_conf {
	char path[PATH_MAX];
	bool ro, qcow;
};

static int conf_parse(const char *conf, struct blk_conf *bc,
		      const struct logger *log)
{
	const char *p, *end;
	size_t n;

	memset(bc, 0, sizeof(*bc));
	if (!conf || !*conf) {
		logger_printf(log, LOG_LEVEL_ERR, "virtio-blk: no path given");
		return -EINVAL;
	}
	p = conf;
	if (strncmp(p, "file://", 7) == 0)
		p += 7;
	end = strchr(p, ',');
	n = end ? (size_t)(end - p) : strlen(p);
	if (n == 0 || n >= sizeof(bc->path)) {
		logger_printf(log, LOG_LEVEL_ERR, "virtio-blk: bad path");
		return -EINVAL;
	}
	memcpy(bc->path, p, n);
	while (end) {
		const char *opt = end + 1;
		size_t len;

		end = strchr(opt, ',');
		len = end ? (size_t)(end - opt) : strlen(opt);
		if (len == 2 && !strncmp(opt, "ro", 2))
			bc->ro = true;
		else if (len == 11 && !strncmp(opt, "format=qcow", 11))
			bc->qcow = true;
		else if (len == 12 && !strncmp(opt, "format=qcow2", 12))
			bc->qcow = true;
		else if ((len == 10 && !strncmp(opt, "format=raw", 10)) ||
			 (len == 7 && !strncmp(opt, "nocache", 7)) ||
			 (len == 6 && !strncmp(opt, "direct", 6)) ||
			 (len == 14 && !strncmp(opt, "sectorsize=512", 14)) ||
			 (len > 12 && !strncmp(opt, "qcow-config=", 12)) ||
			 (len > 18 && !strncmp(opt, "qcow-stats-config=", 18)))
			continue; /* accepted for compatibility */
		else {
			logger_printf(log, LOG_LEVEL_ERR,
				      "virtio-blk: unknown option '%.*s'",
				      (int)len, opt);
			return -EINVAL;
		}
	}
	return 0;
}

int hk_vblk_open(struct hk_vblk **out, const char *conf,
		 const struct logger *log)
{
	struct blk_conf bc;
	struct hk_vblk *b;
	const char *base;
	int r;

	r = conf_parse(conf, &bc, log);
	if (r < 0)
		return r;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->log = log;
	b->rl = (struct ratelimit)RATELIMIT_DEFAULT;
	b->ro = bc.ro;
	b->fd = -1;
	base = strrchr(bc.path, '/');
	/* The serial is the file name, NUL-padded, not terminated if it
	 * fills all 20 bytes (as the spec allows). */
	base = base ? base + 1 : bc.path;
	memcpy(b->id, base, strnlen(base, sizeof(b->id)));
	if (bc.qcow) {
		struct qcow_open_opts o = { .read_write = !bc.ro };
		struct qcow_error err = { 0 };

		r = qcow_image_open(&b->img, bc.path, &o, &err);
		if (r < 0) {
			logger_printf(log, LOG_LEVEL_ERR, "virtio-blk: %s: %s",
				      bc.path, err.msg);
			goto out_free;
		}
		b->bytes = qcow_image_size(b->img);
		b->granularity = qcow_image_cluster_size(b->img);
	} else {
		off_t end;

		b->fd = open(bc.path, (bc.ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);
		if (b->fd < 0) {
			r = -errno;
			logger_printf(log, LOG_LEVEL_ERR, "virtio-blk: %s: %s",
				      bc.path, strerror(-r));
			goto out_free;
		}
		end = lseek(b->fd, 0, SEEK_END);
		if (end < 0) {
			r = -errno;
			goto out_close;
		}
		b->bytes = (uint64_t)end;
		b->granularity = 4096;
	}
	b->bytes -= b->bytes % HK_VBLK_SECTOR;
	if (b->granularity < HK_VBLK_SECTOR)
		b->granularity = HK_VBLK_SECTOR;
	*out = b;
	return 0;

out_close:
	close(b->fd);
out_free:
	free(b);
	return r;
}

void hk_vblk_close(struct hk_vblk *b)
{
	if (!b)
		return;
	if (b->img)
		qcow_image_close(b->img);
	if (b->fd >= 0)
		close(b->fd);
	free(b);
}

uint64_t hk_vblk_sectors(const struct hk_vblk *b)
{
	return b->bytes / HK_VBLK_SECTOR;
}

uint64_t hk_vblk_features(const struct hk_vblk *b)
{
	uint64_t f = 1ull << HK_VBLK_F_SEG_MAX | 1ull << HK_VBLK_F_BLK_SIZE |
		     1ull << HK_VBLK_F_FLUSH;

	if (b->ro)
		f |= 1ull << HK_VBLK_F_RO;
	else
		f |= 1ull << HK_VBLK_F_DISCARD | 1ull << HK_VBLK_F_WRITE_ZEROES;
	return f;
}

void hk_vblk_config(const struct hk_vblk *b, uint8_t *cfg, uint32_t seg_max)
{
	memset(cfg, 0, HK_VBLK_CONFIG_LEN);
	store_le64(cfg + 0, hk_vblk_sectors(b)); /* capacity */
	store_le32(cfg + 12, seg_max);
	store_le32(cfg + 20, HK_VBLK_SECTOR); /* blk_size */
	store_le32(cfg + 36, HK_VBLK_MAX_SECTORS); /* max_discard_sectors */
	store_le32(cfg + 40, HK_VBLK_MAX_SEGS); /* max_discard_seg */
	store_le32(cfg + 44, b->granularity / HK_VBLK_SECTOR);
	store_le32(cfg + 48,
		   HK_VBLK_MAX_SECTORS); /* max_write_zeroes_sectors */
	store_le32(cfg + 52, HK_VBLK_MAX_SEGS); /* max_write_zeroes_seg */
	cfg[56] = 1; /* write_zeroes_may_unmap */
}

/* ---------------------------------------------------------------- requests */

/* [sector, sector + bytes / 512) inside the disk? Byte offset in *off. */
static bool range_ok(const struct hk_vblk *b, uint64_t sector, uint64_t bytes,
		     uint64_t *off)
{
	uint64_t end;

	return bytes % HK_VBLK_SECTOR == 0 &&
	       u64_mul_ok(sector, HK_VBLK_SECTOR, off) &&
	       u64_add_ok(*off, bytes, &end) && end <= b->bytes;
}

static uint8_t do_rw(struct hk_vblk *b, const struct hk_vq_chain *c, bool write,
		     uint64_t sector, uint32_t *written)
{
	const struct iovec *part = write ? c->iov : c->iov + c->n_out;
	unsigned n = write ? c->n_out : c->n_in;
	/* Writes: data after the header; reads: data before the status. */
	size_t skip = write ? 16 : 0;
	uint64_t len = write ? c->out_len - 16 : c->in_len - 1;
	uint64_t off;
	int cnt, r;

	if (write && b->ro)
		return HK_VBLK_S_IOERR;
	if (!range_ok(b, sector, len, &off))
		return HK_VBLK_S_IOERR;
	cnt = hk_iov_slice(part, n, skip, (size_t)len, b->scratch,
			   HK_VQ_MAX_IOV);
	if (cnt < 0)
		return HK_VBLK_S_IOERR;
	r = disk_rw(b, write, b->scratch, (unsigned)cnt, off);
	if (r < 0) {
		logger_printf_limited(b->log, &b->rl, LOG_LEVEL_WARN,
				      "virtio-blk: %s at sector %llu: %s",
				      write ? "write" : "read",
				      (unsigned long long)sector, strerror(-r));
		return HK_VBLK_S_IOERR;
	}
	if (!write)
		*written = (uint32_t)len;
	return HK_VBLK_S_OK;
}

/* DISCARD and WRITE_ZEROES: segments of {le64 sector, le32 num_sectors,
 * le32 flags} after the header. */
static uint8_t do_segments(struct hk_vblk *b, const struct hk_vq_chain *c,
			   uint32_t type)
{
	uint64_t bytes = c->out_len - 16;
	unsigned nseg;

	if (b->ro)
		return HK_VBLK_S_IOERR;
	if (bytes == 0 || bytes % 16 || bytes / 16 > HK_VBLK_MAX_SEGS)
		return HK_VBLK_S_UNSUPP;
	nseg = (unsigned)(bytes / 16);
	for (unsigned i = 0; i < nseg; i++) {
		uint8_t seg[16];
		uint64_t sector, off;
		uint32_t num, flags;
		int r;

		if (hk_iov_to_buf(c->iov, c->n_out, 16 + 16 * (size_t)i, seg,
				  16) != 16)
			return HK_VBLK_S_IOERR;
		sector = load_le64(seg);
		num = load_le32(seg + 8);
		flags = load_le32(seg + 12);
		if (num > HK_VBLK_MAX_SECTORS)
			return HK_VBLK_S_IOERR;
		if (type == HK_VBLK_T_DISCARD ? flags != 0 : flags & ~1u)
			return HK_VBLK_S_UNSUPP;
		if (!range_ok(b, sector, (uint64_t)num * HK_VBLK_SECTOR, &off))
			return HK_VBLK_S_IOERR;
		if (num == 0)
			continue;
		if (type == HK_VBLK_T_DISCARD)
			r = disk_discard(b, off,
					 (uint64_t)num * HK_VBLK_SECTOR);
		else
			r = disk_write_zeroes(b, off,
					      (uint64_t)num * HK_VBLK_SECTOR,
					      flags & 1);
		if (r < 0) {
			logger_printf_limited(b->log, &b->rl, LOG_LEVEL_WARN,
					      "virtio-blk: %s at sector %llu: "
					      "%s",
					      type == HK_VBLK_T_DISCARD ?
						      "discard" :
						      "write-zeroes",
					      (unsigned long long)sector,
					      strerror(-r));
			return HK_VBLK_S_IOERR;
		}
	}
	return HK_VBLK_S_OK;
}

uint32_t hk_vblk_request(struct hk_vblk *b, const struct hk_vq_chain *c)
{
	const struct iovec *in = c->iov + c->n_out;
	uint8_t hdr[16], status;
	uint32_t type, written = 0;
	uint64_t sector;

	/* Without a writable byte there is nowhere to put a status. */
	if (c->in_len == 0)
		return 0;
	if (c->out_len < 16 ||
	    hk_iov_to_buf(c->iov, c->n_out, 0, hdr, 16) != 16) {
		status = HK_VBLK_S_IOERR;
		goto out_status;
	}
	type = load_le32(hdr);
	sector = load_le64(hdr + 8);
	switch (type) {
	case HK_VBLK_T_IN:
		status = do_rw(b, c, false, sector, &written);
		break;
	case HK_VBLK_T_OUT:
		status = do_rw(b, c, true, sector, &written);
		break;
	case HK_VBLK_T_FLUSH:
		status = disk_flush(b) < 0 ? HK_VBLK_S_IOERR : HK_VBLK_S_OK;
		break;
	case HK_VBLK_T_GET_ID: {
		size_t n = c->in_len - 1 < HK_VBLK_ID_BYTES ?
				   (size_t)(c->in_len - 1) :
				   HK_VBLK_ID_BYTES;

		written = (uint32_t)hk_iov_from_buf(in, c->n_in, 0, b->id, n);
		status = HK_VBLK_S_OK;
		break;
	}
	case HK_VBLK_T_DISCARD:
	case HK_VBLK_T_WRITE_ZEROES:
		status = do_segments(b, c, type);
		break;
	default:
		status = HK_VBLK_S_UNSUPP;
		break;
	}
out_status:
	hk_iov_from_buf(in, c->n_in, (size_t)(c->in_len - 1), &status, 1);
	return written + 1;
}

/* ---------------------------------------------------------------- device */

struct vblk_dev {
	struct hk_virtio vd;
	struct hk_vblk *blk;
	struct hk_vq_chain chain;
};

static void vblk_notify(struct hk_virtio *vd, unsigned q)
{
	struct vblk_dev *dev = vd->opaque;
	struct hk_vq *vq = &vd->vq[q];

	do {
		while (hk_vq_pop(vq, &dev->chain) > 0)
			hk_vq_push(vq, dev->chain.head,
				   hk_vblk_request(dev->blk, &dev->chain));
	} while (hk_virtio_queue_done(vd, q));
}

static void vblk_release(struct hk_virtio *vd)
{
	struct vblk_dev *dev = vd->opaque;

	hk_vblk_close(dev->blk);
	pthread_mutex_destroy(&vd->lock);
	free(dev);
}

static const struct hk_virtio_ops vblk_ops = {
	.queue_notify = vblk_notify,
};

int hk_virtio_blk_create(struct hk_vm *vm, unsigned slot, unsigned func,
			 const char *conf)
{
	struct logger *log = hk_vm_log(vm);
	struct vblk_dev *dev;
	char name[16];
	int r;

	dev = calloc(1, sizeof(*dev));
	if (!dev)
		return -ENOMEM;
	r = hk_vblk_open(&dev->blk, conf, log);
	if (r < 0)
		goto out_free;
	snprintf(name, sizeof(name), "blk%u.%u", slot, func);
	r = hk_virtio_init(&dev->vd, vm, slot, func, HK_VIRTIO_ID_BLOCK, name,
			   1, QUEUE_SIZE, hk_vblk_features(dev->blk),
			   HK_VBLK_CONFIG_LEN, &vblk_ops, dev);
	if (r < 0)
		goto out_close;
	hk_vblk_config(dev->blk, dev->vd.config, QUEUE_SIZE - 2);
	r = hk_virtio_attach(&dev->vd, vblk_release);
	if (r < 0) {
		pthread_mutex_destroy(&dev->vd.lock);
		goto out_close;
	}
	return 0;

out_close:
	hk_vblk_close(dev->blk);
out_free:
	logger_printf(log, LOG_LEVEL_ERR, "virtio-blk at %u:%u: %s", slot, func,
		      strerror(-r));
	free(dev);
	return r;
}
