// SPDX-License-Identifier: MIT
/*
 * qcow-tool convert: copy an image (qcow2 with its backing chain, or raw)
 * into a new qcow2 image or a sparse raw file.
 *
 * Theory of operation. The source is walked run by run (disk_status):
 * stretches that read as zeros are skipped without being read, so the
 * output stays sparse and a mostly empty terabyte converts in moments.
 * Stretches with data are read a window (4 MiB, or one cluster if that is
 * larger) at a time, and each output "grain" in the window is written
 * only if it holds a non-zero byte. A grain is the output's cluster for
 * qcow2 (so all-zero clusters are never allocated) and the sparse size
 * (-S, 4 KiB by default) for raw, which gets holes where the zeros were.
 * Consecutive grains are written with one request; with -c, each cluster
 * goes through qcow_image_write_compressed instead.
 *
 * With -B the output gets a backing file and only what the source's top
 * image allocates is copied (as qemu-img does): the rest is left to the
 * backing file, and clusters the top image reads as zeros are written as
 * zeros. With -n the output exists already and may hold anything, so
 * zero stretches are written as zeros too.
 *
 * As with qemu-img, the default output format is raw and the default
 * cache mode "unsafe": the output is not flushed to disk (-t writeback
 * and the others make it so); libqcow's flushes are turned into no-ops
 * through a wrapper around its POSIX I/O backend.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tool.h"

#define WINDOW (4u << 20)
#define MAX_SPARSE (16u << 20)

struct conv {
	struct disk src, dst;
	bool unsafe; /* cache=unsafe: never flush the output */
	int nosync_fds[2]; /* the output file, for qcow_posix_io */
	struct qcow_io_ops nosync_ops;
	bool compress, only_top, zero_needed, progress, quiet;
	bool sparse; /* skip zeros (-S not 0) */
	uint64_t grain; /* output write unit */
	uint64_t window;
	uint8_t *buf;
	uint8_t *marks; /* per grain of a window: MARK_* */
	uint64_t size;
	double last_pct;
};

enum {
	MARK_SKIP, /* leave alone */
	MARK_COPY, /* write its data (or skip it if all zeros) */
	MARK_ZERO, /* must read as zeros */
	MARK_UNSET = 0xff,
};

/* What a run of the source asks of the output. */
static uint8_t run_mark(const struct conv *cv, const struct qcow_map_run *run)
{
	if (cv->only_top && (run->depth != 0 || !run->present))
		return MARK_SKIP;
	if (!run->zero)
		return MARK_COPY;
	if (!cv->sparse)
		return MARK_COPY;
	return cv->zero_needed || cv->only_top ? MARK_ZERO : MARK_SKIP;
}

static void conv_progress(struct conv *cv, uint64_t done)
{
	double pct;

	if (!cv->progress)
		return;
	pct = cv->size ? (double)done * 100.0 / (double)cv->size : 100.0;
	if (pct - cv->last_pct >= 1.0 || done == 0 || done >= cv->size) {
		cv->last_pct = pct;
		printf("    (%3.2f/100%%)\r", pct);
		fflush(stdout);
	}
}

static int write_zeroes(struct conv *cv, uint64_t off, uint64_t len)
{
	static const uint8_t zeros[65536];

	if (cv->dst.img)
		return qcow_image_write_zeroes(cv->dst.img, off, len, 0);
	if (fallocate(cv->dst.fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
		      (off_t)off, (off_t)len) == 0 ||
	    fallocate(cv->dst.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)off, (off_t)len) == 0)
		return 0;
	while (len) {
		size_t n = len < sizeof(zeros) ? (size_t)len : sizeof(zeros);
		int r = disk_pwrite(&cv->dst, zeros, n, off);

		if (r < 0)
			return r;
		off += n;
		len -= n;
	}
	return 0;
}

/* Write grains [first, last) of the window at woff, all with data. */
static int write_grains(struct conv *cv, uint64_t woff, uint64_t first,
			uint64_t last, uint64_t wlen)
{
	uint64_t off = woff + first * cv->grain;
	uint64_t end = woff + last * cv->grain;
	int r;

	if (end > woff + wlen)
		end = woff + wlen;
	if (!cv->compress)
		return disk_pwrite(&cv->dst, cv->buf + (off - woff),
				   (size_t)(end - off), off);
	for (; off < end; off += cv->grain) {
		uint64_t n = end - off < cv->grain ? end - off : cv->grain;

		r = qcow_image_write_compressed(
			cv->dst.img, cv->buf + (off - woff), (size_t)n, off);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Mark the grains of [woff, woff+wlen) from the source's runs. A grain
 * that runs of different kinds share is copied: its content, read
 * through the whole chain, is right whatever the parts are. */
static int mark_window(struct conv *cv, uint64_t woff, uint64_t wlen,
		       bool *any_copy)
{
	uint64_t ngrains = (wlen + cv->grain - 1) / cv->grain;
	uint64_t off = woff;

	memset(cv->marks, MARK_UNSET, ngrains);
	*any_copy = false;
	while (off < woff + wlen) {
		struct qcow_map_run run;
		uint64_t end, g0, g1;
		uint8_t mark;
		int r = disk_status(&cv->src, off, &run);

		if (r < 0)
			return r;
		end = off + run.length;
		if (end > woff + wlen)
			end = woff + wlen;
		mark = run_mark(cv, &run);
		g0 = (off - woff) / cv->grain;
		g1 = (end - woff + cv->grain - 1) / cv->grain;
		for (uint64_t g = g0; g < g1; g++) {
			if (cv->marks[g] == MARK_UNSET)
				cv->marks[g] = mark;
			else if (cv->marks[g] != mark)
				cv->marks[g] = MARK_COPY;
			if (cv->marks[g] == MARK_COPY)
				*any_copy = true;
		}
		off = end;
	}
	return 0;
}

static int convert_window(struct conv *cv, uint64_t woff, uint64_t wlen)
{
	uint64_t ngrains = (wlen + cv->grain - 1) / cv->grain;
	bool any_copy;
	int r;

	r = mark_window(cv, woff, wlen, &any_copy);
	if (r < 0) {
		tool_err("error while reading block status at offset %" PRIu64
			 ": %s",
			 woff, disk_errmsg(&cv->src, r));
		return r;
	}
	if (any_copy) {
		r = disk_pread(&cv->src, cv->buf, (size_t)wlen, woff);
		if (r < 0) {
			tool_err("error while reading at byte %" PRIu64 ": %s",
				 woff, disk_errmsg(&cv->src, r));
			return r;
		}
		/* Data that turns out to be zeros needs no write, or a zero
		 * write where zeros must be stored. */
		for (uint64_t g = 0; g < ngrains && cv->sparse; g++) {
			uint64_t goff = g * cv->grain;
			uint64_t n = wlen - goff < cv->grain ? wlen - goff :
							       cv->grain;

			if (cv->marks[g] == MARK_COPY &&
			    tool_is_zero(cv->buf + goff, (size_t)n))
				cv->marks[g] = cv->zero_needed || cv->only_top ?
						       MARK_ZERO :
						       MARK_SKIP;
		}
	}
	for (uint64_t g = 0; g < ngrains;) {
		uint64_t h = g + 1;
		int mark = cv->marks[g];

		r = 0;
		while (h < ngrains && cv->marks[h] == mark)
			h++;
		if (mark == MARK_COPY) {
			r = write_grains(cv, woff, g, h, wlen);
		} else if (mark == MARK_ZERO) {
			uint64_t end = h * cv->grain < wlen ? h * cv->grain :
							      wlen;

			r = write_zeroes(cv, woff + g * cv->grain,
					 end - g * cv->grain);
		}
		if (r < 0) {
			tool_err("error while writing at byte %" PRIu64 ": %s",
				 woff + g * cv->grain,
				 disk_errmsg(&cv->dst, r));
			return r;
		}
		g = h;
	}
	return 0;
}

static int convert(struct conv *cv)
{
	uint64_t off = 0;
	int r;

	const uint64_t grain = cv->grain, window = cv->window;

	if (!grain || !window || window % grain)
		return -EINVAL; /* set up by the caller; cannot happen */
	conv_progress(cv, 0);
	while (off < cv->size) {
		struct qcow_map_run run;
		uint64_t wlen;

		/* Skip a stretch needing nothing in one step, down to the
		 * grain where something may start. */
		r = disk_status(&cv->src, off, &run);
		if (r < 0) {
			tool_err(
				"error while reading block status at offset %" PRIu64
				": %s",
				off, disk_errmsg(&cv->src, r));
			return r;
		}
		if (run_mark(cv, &run) == MARK_SKIP) {
			uint64_t end = off + run.length;

			if (end < cv->size)
				end -= end % grain;
			if (end > off) {
				off = end;
				conv_progress(cv, off);
				continue;
			}
		}
		wlen = cv->size - off < window ? cv->size - off : window;
		/* Windows stay aligned to the window size, so grains do too. */
		if (off % window && window - off % window < wlen)
			wlen = window - off % window;
		r = convert_window(cv, off, wlen);
		if (r < 0)
			return r;
		off += wlen;
		conv_progress(cv, off);
	}
	return 0;
}

/* cache=unsafe, qemu-img convert's default: the output is not flushed
 * to disk, neither along the way nor at the end. */
static int nosync_flush(void *opaque)
{
	(void)opaque;
	return 0;
}

static int open_qcow2_output(struct conv *cv, struct tool *t, const char *out,
			     unsigned flags)
{
	if (!cv->unsafe)
		return disk_open(&cv->dst, t, out, "qcow2", flags);
	cv->nosync_fds[0] = open(out, O_RDWR | O_CLOEXEC);
	cv->nosync_fds[1] = -1;
	if (cv->nosync_fds[0] < 0) {
		tool_err("Could not open '%s': %s", out, strerror(errno));
		return -1;
	}
	cv->nosync_ops = qcow_posix_io;
	cv->nosync_ops.flush = nosync_flush;
	return disk_open_qcow2_io(&cv->dst, t, out, flags, &cv->nosync_ops,
				  cv->nosync_fds);
}

static int open_raw_output(struct conv *cv, struct tool *t, const char *out,
			   bool create, unsigned flags)
{
	if (create) {
		int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
			      0644);

		if (fd < 0 || ftruncate(fd, (off_t)cv->size) < 0) {
			int e = errno;

			tool_err("%s: Could not create '%s': %s", out, out,
				 strerror(e));
			if (fd >= 0)
				close(fd);
			return -1;
		}
		close(fd);
	}
	return disk_open(&cv->dst, t, out, "raw", flags);
}

int cmd_convert(struct tool *t, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "force-share", no_argument, NULL, 'U' },
		{ NULL, 0, NULL, 0 },
	};
	struct conv cv = { .grain = 0 };
	struct create_spec spec = { .fmt = "raw" };
	const char *src_fmt = NULL, *backing = NULL, *bfmt = NULL;
	const char *in = NULL, *out = NULL;
	unsigned src_flags = 0, dst_flags = DISK_RW;
	bool no_create = false, help = false;
	int64_t sparse = 4096;
	int c, r, ret = 1;

	cv.src.fd = cv.dst.fd = -1;
	cv.nosync_fds[0] = cv.nosync_fds[1] = -1;
	cv.unsafe = true;
	while ((c = getopt_long(argc, argv, ":hf:O:B:CcF:o:l:S:pt:T:qnm:WrU",
				longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			tool_help(stdout);
			ret = 0;
			goto out;
		case 'f':
			src_fmt = optarg;
			break;
		case 'O':
			spec.fmt = optarg;
			break;
		case 'B':
			backing = optarg;
			break;
		case 'F':
			bfmt = optarg;
			break;
		case 'c':
			cv.compress = true;
			break;
		case 'C':
		case 'W':
			break; /* copy offloading, out-of-order writes: moot */
		case 'o':
			if (!strcmp(optarg, "help") || !strcmp(optarg, "?")) {
				help = true;
				break;
			}
			if (kvlist_parse(&spec.o, optarg) < 0) {
				tool_err("out of memory");
				goto out;
			}
			break;
		case 'l':
			tool_err("snapshot conversion (-l) is not supported");
			goto out;
		case 'S':
			sparse =
				cvtnum("buffer size for sparse output", optarg);
			if (sparse < 0)
				goto out;
			if (sparse % 512 || sparse > MAX_SPARSE) {
				tool_err(
					"Invalid buffer size for sparse output specified. Valid sizes are multiples of 512 up to 16777216. Select 0 to disable sparse detection (fully allocates output).");
				goto out;
			}
			break;
		case 'p':
			cv.progress = true;
			break;
		case 't':
		case 'T': {
			unsigned *fl = c == 't' ? &dst_flags : &src_flags;

			if (c == 't')
				cv.unsafe = !strcmp(optarg, "unsafe");
			if (!strcmp(optarg, "none") ||
			    !strcmp(optarg, "directsync")) {
				*fl |= DISK_DIRECT;
			} else if (strcmp(optarg, "writeback") != 0 &&
				   strcmp(optarg, "writethrough") != 0 &&
				   strcmp(optarg, "unsafe") != 0) {
				tool_err("Invalid %scache option: %s",
					 c == 't' ? "" : "source ", optarg);
				goto out;
			}
			break;
		}
		case 'q':
			cv.quiet = true;
			break;
		case 'n':
			no_create = true;
			break;
		case 'm': {
			unsigned long long n;

			if (parse_ulong(optarg, &n) < 0 || n < 1 || n > 16) {
				tool_err(
					"Invalid number of coroutines. Allowed number of coroutines is between 1 and 16");
				goto out;
			}
			break;
		}
		case 'r':
			break; /* rate limit: not needed */
		case 'U':
			src_flags |= DISK_SHARE;
			break;
		default:
			ret = tool_opt_err(c, argv);
			goto out;
		}
	}
	if (cv.quiet)
		cv.progress = false;
	if (help) {
		if (strcmp(spec.fmt, "qcow2") != 0 &&
		    strcmp(spec.fmt, "raw") != 0) {
			tool_err("Unknown file format '%s'", spec.fmt);
			goto out;
		}
		/* create -o help prints the same list. */
		char *hargv[] = { "create", "-f",   (char *)spec.fmt,
				  "-o",	    "help", NULL };

		optind = 0;
		ret = cmd_create(t, 5, hargv);
		goto out;
	}
	if (argc - optind < 2) {
		ret = tool_usage_err("Must specify image file name");
		goto out;
	}
	if (argc - optind > 2) {
		tool_err("only one source image is supported");
		goto out;
	}
	in = argv[optind];
	out = argv[optind + 1];
	if (strcmp(spec.fmt, "qcow2") != 0 && strcmp(spec.fmt, "raw") != 0) {
		tool_err("Unknown file format '%s'", spec.fmt);
		goto out;
	}
	if (cv.compress && strcmp(spec.fmt, "qcow2") != 0) {
		tool_err("Compression not supported for this file format");
		goto out;
	}
	if (bfmt && !backing) {
		tool_err("The -F option requires the -B option");
		goto out;
	}
	if (backing && !strcmp(spec.fmt, "raw")) {
		tool_err("Backing file not supported for file format 'raw'");
		goto out;
	}
	if (backing && !bfmt) {
		tool_err(
			"Use of backing file requires explicit backing format");
		goto out;
	}
	if (backing && no_create) {
		tool_err("-n and -B cannot be used together");
		goto out;
	}
	if (kvlist_get(&spec.o, "size")) {
		tool_err("%s: Invalid parameter 'size'", out);
		goto out;
	}
	if (create_spec_parse(&spec, out))
		goto out;
	if (kvlist_get(&spec.o, "backing_file") && !backing) {
		backing = kvlist_get(&spec.o, "backing_file");
		bfmt = kvlist_get(&spec.o, "backing_fmt");
		if (!bfmt) {
			tool_err(
				"Use of backing file requires explicit backing format");
			goto out;
		}
	}

	if (disk_open(&cv.src, t, in, src_fmt, src_flags) < 0)
		goto out;
	cv.size = cv.src.size;
	cv.only_top = backing != NULL;
	cv.zero_needed = no_create;

	if (!strcmp(spec.fmt, "qcow2")) {
		if (!no_create) {
			spec.have_size = true;
			spec.size = cv.size;
			spec.q.backing_file = backing;
			spec.q.backing_fmt = bfmt;
			if (create_spec_run(&spec, t, out))
				goto out;
		}
		if (open_qcow2_output(&cv, t, out, dst_flags) < 0)
			goto out;
		cv.grain = qcow_image_cluster_size(cv.dst.img);
	} else {
		if (!no_create && kvlist_get(&spec.o, "preallocation")) {
			spec.have_size = true;
			spec.size = cv.size;
			if (create_spec_run(&spec, t, out))
				goto out;
			no_create = true;
		}
		if (open_raw_output(&cv, t, out, !no_create, dst_flags) < 0)
			goto out;
		cv.grain = sparse ? (uint64_t)sparse : 4096;
	}
	if (cv.dst.size < cv.size) {
		tool_err("output file is smaller than input file");
		goto out;
	}
	cv.window = cv.grain > WINDOW ? cv.grain : WINDOW;
	cv.buf = xmalloc_aligned(cv.window);
	cv.marks = calloc(cv.window / 512 + 1, 1);
	if (!cv.buf || !cv.marks) {
		tool_err("out of memory");
		goto out;
	}
	cv.sparse = sparse != 0;
	r = convert(&cv);
	if (r < 0)
		r = -ECANCELED; /* reported already */
	else if (cv.dst.img)
		r = qcow_image_flush(cv.dst.img);
	else if (!cv.unsafe && fsync(cv.dst.fd) < 0)
		r = -errno;
	if (r < 0) {
		if (r != -ECANCELED)
			tool_err("%s: error while flushing: %s", out,
				 disk_errmsg(&cv.dst, r));
		goto out;
	}
	if (cv.progress)
		printf("\n");
	ret = 0;
out:
	if (cv.dst.img || cv.dst.fd >= 0) {
		r = disk_close(&cv.dst);
		if (r < 0 && ret == 0) {
			tool_err("%s: error while closing the image: %s", out,
				 errstr(r));
			ret = 1;
		}
	}
	if (cv.nosync_fds[0] >= 0)
		close(cv.nosync_fds[0]);
	if (cv.src.img || cv.src.fd >= 0)
		disk_close(&cv.src);
	free(cv.buf);
	free(cv.marks);
	kvlist_release(&spec.o);
	return ret;
}
