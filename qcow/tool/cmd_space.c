// SPDX-License-Identifier: MIT
/*
 * qcow-tool discard and compact: give a qcow2 image's unused space back
 * to the host, as mirage/ocaml-qcow's qcow-tool did for Docker for Mac.
 *
 * discard reads every cluster the image itself allocates and releases
 * each whole cluster that holds only zeros (clusters already flagged as
 * zeros but still owning a preallocated host cluster are released without
 * reading). Without a backing file a released cluster is simply
 * discarded, which reads as zeros. With one, a discarded cluster would
 * show the backing file's data again, so it is turned into a zero cluster
 * instead (qcow_image_write_zeroes with QCOW_ZERO_MAY_UNMAP), which frees
 * the host cluster and keeps reading zeros. A version 2 image has no zero
 * clusters, so with a backing file nothing can be released safely.
 *
 * compact moves clusters towards the start of the file and truncates it
 * (qcow_image_compact); discard first to have holes to fill.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tool.h"

#define SCAN_BUF (4u << 20)

struct scan {
	struct disk d;
	bool zero_flags; /* release with write_zeroes, not discard */
	uint32_t cs;
	uint64_t released; /* bytes */
	uint64_t pend_off, pend_len; /* a range waiting to be released */
};

static int flush_pending(struct scan *s)
{
	int r;

	if (!s->pend_len)
		return 0;
	if (s->zero_flags)
		r = qcow_image_write_zeroes(s->d.img, s->pend_off, s->pend_len,
					    QCOW_ZERO_MAY_UNMAP);
	else
		r = qcow_image_discard(s->d.img, s->pend_off, s->pend_len);
	if (r < 0) {
		tool_err("%s: cannot release %" PRIu64
			 " bytes at offset %" PRIu64 ": %s",
			 s->d.path, s->pend_len, s->pend_off,
			 disk_errmsg(&s->d, r));
		return r;
	}
	s->released += s->pend_len;
	s->pend_len = 0;
	return 0;
}

/* Queue whole clusters [off, off+len) for release, merging neighbours. */
static int release(struct scan *s, uint64_t off, uint64_t len)
{
	if (s->pend_len && s->pend_off + s->pend_len == off) {
		s->pend_len += len;
		return 0;
	}
	int r = flush_pending(s);

	s->pend_off = off;
	s->pend_len = len;
	return r;
}

static int scan_data(struct scan *s, uint8_t *buf, uint64_t off, uint64_t len)
{
	while (len) {
		size_t n = len < SCAN_BUF ? (size_t)len : SCAN_BUF;
		int r = disk_pread(&s->d, buf, n, off);

		if (r < 0) {
			tool_err("%s: error while reading at byte %" PRIu64
				 ": %s",
				 s->d.path, off, disk_errmsg(&s->d, r));
			return r;
		}
		for (size_t c = 0; c + s->cs <= n; c += s->cs) {
			if (tool_is_zero(buf + c, s->cs)) {
				r = release(s, off + c, s->cs);
				if (r < 0)
					return r;
			}
		}
		off += n;
		len -= n;
	}
	return 0;
}

static int open_qcow2_rw(struct tool *t, struct disk *d, const char *path,
			 const char *cmd)
{
	if (disk_open(d, t, path, NULL, DISK_RW) < 0)
		return -1;
	if (d->format != DISK_QCOW2) {
		tool_err("%s: %s works on qcow2 images only", path, cmd);
		disk_close(d);
		return -1;
	}
	return 0;
}

static int simple_args(int argc, char **argv, bool *quiet, const char **path)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, ":hq", longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			tool_help(stdout);
			return 0;
		case 'q':
			*quiet = true;
			break;
		default:
			return tool_opt_err(c, argv);
		}
	}
	if (optind != argc - 1)
		return tool_usage_err("Expecting one image file name");
	*path = argv[optind];
	return -1;
}

static int64_t allocated_bytes(const char *path)
{
	struct stat st;

	return stat(path, &st) < 0 ? -1 : (int64_t)st.st_blocks * 512;
}

int cmd_discard(struct tool *t, int argc, char **argv)
{
	struct scan s = { .released = 0 };
	struct qcow_info info;
	const char *path = NULL;
	bool quiet = false;
	uint8_t *buf = NULL;
	uint64_t off = 0, end;
	int64_t before = -1, after;
	int r, ret;

	ret = simple_args(argc, argv, &quiet, &path);
	if (ret >= 0 || !path)
		return ret >= 0 ? ret : 1;
	ret = 1;
	if (open_qcow2_rw(t, &s.d, path, "discard") < 0)
		return 1;
	r = qcow_image_info(s.d.img, &info);
	if (r < 0) {
		tool_err("%s: %s", path, disk_errmsg(&s.d, r));
		goto out;
	}
	s.cs = info.cluster_size;
	s.zero_flags = info.backing_file != NULL;
	if (s.zero_flags && info.version < 3) {
		/* Discarding would expose the backing file's data. */
		tool_warn(
			"%s: a version 2 image with a backing file has no zero clusters, so no cluster can be released",
			path);
		ret = 0;
		goto out;
	}
	buf = xmalloc_aligned(SCAN_BUF > s.cs ? SCAN_BUF : s.cs);
	if (!buf)
		goto out;
	before = allocated_bytes(path);

	/* Whole clusters only: the tail of an odd-sized image stays. */
	end = s.d.size - s.d.size % s.cs;
	while (off < end) {
		struct qcow_map_run run;
		uint64_t a, b;

		r = disk_status(&s.d, off, &run);
		if (r < 0) {
			tool_err("%s: cannot read the allocation map: %s", path,
				 disk_errmsg(&s.d, r));
			goto out;
		}
		a = off;
		b = off + run.length < end ? off + run.length : end;
		off = off + run.length;
		if (run.depth != 0 || !run.present)
			continue;
		/* Runs are cluster-aligned except where clusters split into
		 * subclusters; keep to the whole clusters inside. */
		a = (a + s.cs - 1) / s.cs * s.cs;
		b = b / s.cs * s.cs;
		if (a >= b)
			continue;
		if (run.zero && run.has_offset)
			r = release(&s, a, b - a);
		else if (run.data)
			r = scan_data(&s, buf, a, b - a);
		else
			r = 0;
		if (r < 0)
			goto out;
	}
	if (flush_pending(&s) < 0)
		goto out;
	r = qcow_image_flush(s.d.img);
	if (r < 0) {
		tool_err("%s: flush failed: %s", path, disk_errmsg(&s.d, r));
		goto out;
	}
	ret = 0;
out:
	free(buf);
	r = disk_close(&s.d);
	if (r < 0 && ret == 0) {
		tool_err("%s: error while closing the image: %s", path,
			 errstr(r));
		ret = 1;
	}
	if (ret == 0 && !quiet) {
		after = allocated_bytes(path);
		printf("Released %" PRIu64 " bytes (%" PRIu64
		       " clusters) that read as zeros.\n",
		       s.released, s.released / s.cs);
		if (before >= 0 && after >= 0)
			printf("Allocated on disk: %" PRId64 " -> %" PRId64
			       " bytes.\n",
			       before, after);
	}
	return ret;
}

int cmd_compact(struct tool *t, int argc, char **argv)
{
	struct disk d;
	const char *path = NULL;
	bool quiet = false;
	struct stat st;
	uint64_t before = 0;
	int r, ret;

	ret = simple_args(argc, argv, &quiet, &path);
	if (ret >= 0 || !path)
		return ret >= 0 ? ret : 1;
	ret = 1;
	if (open_qcow2_rw(t, &d, path, "compact") < 0)
		return 1;
	if (stat(path, &st) < 0) {
		tool_err("%s: cannot stat: %s", path, strerror(errno));
		goto out;
	}
	before = (uint64_t)st.st_size;
	r = qcow_image_compact(d.img);
	if (r < 0) {
		tool_err("%s: compaction failed: %s", path, disk_errmsg(&d, r));
		goto out;
	}
	ret = 0;
out:
	r = disk_close(&d);
	if (r < 0 && ret == 0) {
		tool_err("%s: error while closing the image: %s", path,
			 errstr(r));
		ret = 1;
	}
	if (ret == 0 && !quiet && stat(path, &st) == 0)
		printf("File length: %" PRIu64 " -> %" PRIu64 " bytes.\n",
		       before, (uint64_t)st.st_size);
	return ret;
}
