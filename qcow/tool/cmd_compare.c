// SPDX-License-Identifier: MIT
/*
 * qcow-tool compare: do two images (qcow2 or raw, in any mix) read the
 * same? qemu-img compare's options, messages and exit codes: 0 identical,
 * 1 different, 2 an image could not be opened, 3 allocation status could
 * not be read, 4 data could not be read.
 *
 * Theory of operation. Both images are walked run by run (disk_status):
 * a stretch where both read as zeros is skipped without reading, one
 * where only one side is zero is read on that side alone and scanned for
 * non-zero bytes, and only where both hold data are both read and
 * compared, in large buffers. A terabyte of holes costs a few map calls.
 *
 * qemu reports the first mismatch at the start of the 512-byte sector
 * holding it (its chunks start on run boundaries, which are sector
 * aligned), and so does this. Images of different sizes compare equal if
 * the longer one reads as zeros past the shorter one's end, with a
 * warning; strict mode (-s) wants equal sizes and equal allocation.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

#define CMP_BUF (2u << 20)
#define SECTOR 512u

struct cmp {
	bool quiet, progress;
	struct disk d[2];
	const char *name[2];
	uint8_t *buf[2];
	uint64_t total; /* the larger size, for progress */
	uint64_t done;
	double last_pct;
};

static void progress(struct cmp *c, uint64_t bytes)
{
	double pct;

	if (!c->progress)
		return;
	c->done += bytes;
	pct = c->total ? (double)c->done * 100.0 / (double)c->total : 100.0;
	if (pct > 100.0)
		pct = 100.0;
	if (bytes == 0 || pct - c->last_pct >= 1.0 ||
	    (pct == 100.0 && c->last_pct != 100.0)) {
		c->last_pct = pct;
		printf("    (%3.2f/100%%)\r", pct);
		fflush(stdout);
	}
}

static void say(const struct cmp *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void say(const struct cmp *c, const char *fmt, ...)
{
	va_list ap;

	if (c->quiet)
		return;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
}

/* Offset of the first sector in buf (relative) holding a non-zero byte,
 * or -1. */
static int64_t find_nonzero(const uint8_t *buf, size_t n)
{
	size_t i;

	for (i = 0; i < n; i += SECTOR) {
		size_t len = n - i < SECTOR ? n - i : SECTOR;

		if (!tool_is_zero(buf + i, len))
			return (int64_t)i;
	}
	return -1;
}

/* Check that disk k reads zeros in [off, off+len): 0, 1 (mismatch
 * reported) or 4 (read error). */
static int check_zero(struct cmp *c, int k, uint64_t off, uint64_t len)
{
	while (len) {
		size_t n = len < CMP_BUF ? (size_t)len : CMP_BUF;
		int r = disk_pread(&c->d[k], c->buf[0], n, off);
		int64_t at;

		if (r < 0) {
			tool_err("Error while reading offset %" PRIu64
				 " of %s: %s",
				 off, c->name[k], disk_errmsg(&c->d[k], r));
			return 4;
		}
		at = find_nonzero(c->buf[0], n);
		if (at >= 0) {
			say(c, "Content mismatch at offset %" PRIu64 "!\n",
			    off + (uint64_t)at);
			return 1;
		}
		off += n;
		len -= n;
		progress(c, n);
	}
	return 0;
}

static int compare_data(struct cmp *c, uint64_t off, uint64_t len)
{
	while (len) {
		size_t n = len < CMP_BUF ? (size_t)len : CMP_BUF;

		for (int k = 0; k < 2; k++) {
			int r = disk_pread(&c->d[k], c->buf[k], n, off);

			if (r < 0) {
				tool_err("Error while reading offset %" PRIu64
					 " of %s: %s",
					 off, c->name[k],
					 disk_errmsg(&c->d[k], r));
				return 4;
			}
		}
		if (memcmp(c->buf[0], c->buf[1], n) != 0) {
			size_t i = 0;

			while (i < n &&
			       !memcmp(c->buf[0] + i, c->buf[1] + i,
				       n - i < SECTOR ? n - i : SECTOR))
				i += SECTOR;
			say(c, "Content mismatch at offset %" PRIu64 "!\n",
			    off + i);
			return 1;
		}
		off += n;
		len -= n;
		progress(c, n);
	}
	return 0;
}

/* The status flags qemu's strict mode compares. */
static unsigned status_bits(const struct qcow_map_run *r)
{
	return (r->present ? 1u : 0) | (r->zero ? 2u : 0) | (r->data ? 4u : 0) |
	       (r->has_offset ? 8u : 0);
}

static int compare(struct cmp *c, bool strict)
{
	uint64_t size0 = c->d[0].size, size1 = c->d[1].size;
	uint64_t common = size0 < size1 ? size0 : size1;
	uint64_t off = 0;
	struct qcow_map_run r0, r1;
	int r;

	c->total = size0 > size1 ? size0 : size1;
	progress(c, 0);
	if (strict && size0 != size1) {
		if (!c->quiet)
			printf("Strict mode: Image size mismatch!\n");
		return 1;
	}
	while (off < common) {
		uint64_t chunk;

		for (int k = 0; k < 2; k++) {
			r = disk_status(&c->d[k], off, k ? &r1 : &r0);
			if (r < 0) {
				tool_err(
					"Sector allocation test failed for %s: %s",
					c->name[k], disk_errmsg(&c->d[k], r));
				return 3;
			}
		}
		chunk = r0.length < r1.length ? r0.length : r1.length;
		if (chunk > common - off)
			chunk = common - off;
		if (strict && status_bits(&r0) != status_bits(&r1)) {
			say(c,
			    "Strict mode: Offset %" PRIu64
			    " block status mismatch!\n",
			    off);
			return 1;
		}
		if (r0.zero && r1.zero) {
			progress(c, chunk);
			r = 0;
		} else if (r0.zero) {
			r = check_zero(c, 1, off, chunk);
		} else if (r1.zero) {
			r = check_zero(c, 0, off, chunk);
		} else {
			r = compare_data(c, off, chunk);
		}
		if (r)
			return r;
		off += chunk;
	}
	if (size0 != size1) {
		int k = size0 > size1 ? 0 : 1;

		if (!c->quiet)
			printf("Warning: Image size mismatch!\n");
		while (off < c->d[k].size) {
			r = disk_status(&c->d[k], off, &r0);
			if (r < 0) {
				tool_err(
					"Sector allocation test failed for %s: %s",
					c->name[k], disk_errmsg(&c->d[k], r));
				return 3;
			}
			if (!r0.zero) {
				r = check_zero(c, k, off, r0.length);
				if (r)
					return r;
			} else {
				progress(c, r0.length);
			}
			off += r0.length;
		}
	}
	say(c, "Images are identical.\n");
	return 0;
}

int cmd_compare(struct tool *t, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "force-share", no_argument, NULL, 'U' },
		{ NULL, 0, NULL, 0 },
	};
	struct cmp c = { 0 };
	const char *fmt[2] = { NULL, NULL };
	unsigned flags = 0;
	bool strict = false;
	int ch, ret = 2, opened = 0;

	while ((ch = getopt_long(argc, argv, ":hf:F:T:pqsU", longopts, NULL)) !=
	       -1) {
		switch (ch) {
		case 'h':
			tool_help(stdout);
			return 0;
		case 'f':
			fmt[0] = optarg;
			break;
		case 'F':
			fmt[1] = optarg;
			break;
		case 'T':
			if (strcmp(optarg, "none") != 0 &&
			    strcmp(optarg, "writeback") != 0 &&
			    strcmp(optarg, "writethrough") != 0 &&
			    strcmp(optarg, "directsync") != 0 &&
			    strcmp(optarg, "unsafe") != 0) {
				tool_err("Invalid source cache option: %s",
					 optarg);
				return 2;
			}
			if (!strcmp(optarg, "none") ||
			    !strcmp(optarg, "directsync"))
				flags |= DISK_DIRECT;
			break;
		case 'p':
			c.progress = true;
			break;
		case 'q':
			c.quiet = true;
			break;
		case 's':
			strict = true;
			break;
		case 'U':
			flags |= DISK_SHARE;
			break;
		default:
			return tool_opt_err(ch, argv);
		}
	}
	if (c.quiet)
		c.progress = false;
	if (optind != argc - 2)
		return tool_usage_err("Expecting two image file names");
	c.name[0] = argv[optind];
	c.name[1] = argv[optind + 1];
	for (int k = 0; k < 2; k++) {
		if (disk_open(&c.d[k], t, c.name[k], fmt[k], flags) < 0)
			goto out;
		opened++;
	}
	c.buf[0] = xmalloc_aligned(CMP_BUF);
	c.buf[1] = xmalloc_aligned(CMP_BUF);
	if (!c.buf[0] || !c.buf[1]) {
		ret = 4;
		goto out;
	}
	ret = compare(&c, strict);
	if (c.progress)
		printf("\n");
out:
	fflush(stdout);
	free(c.buf[0]);
	free(c.buf[1]);
	for (int k = 0; k < opened; k++)
		disk_close(&c.d[k]);
	return ret;
}
