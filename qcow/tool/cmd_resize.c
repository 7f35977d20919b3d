// SPDX-License-Identifier: MIT
/*
 * qcow-tool resize: change an image's virtual size, as qemu-img resize.
 *
 * The size is the last argument, taken before option parsing (as qemu-img
 * does) so that "-1G" is a size, not an option. Shrinking needs --shrink;
 * libqcow refuses to cut off allocated clusters, so with --shrink the
 * clusters past the new end are discarded first, which is what the user
 * asked for and what qemu does.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tool.h"

enum { OPT_SHRINK = 256, OPT_PREALLOC };

static int resize_qcow2(struct disk *d, uint64_t size)
{
	int r = qcow_image_resize(d->img, size);

	if (r == -EBUSY && size < d->size) {
		r = qcow_image_discard(d->img, size, d->size - size);
		if (r == 0)
			r = qcow_image_resize(d->img, size);
	}
	if (r == 0)
		r = qcow_image_flush(d->img);
	return r;
}

static int resize_raw(struct disk *d, uint64_t size, const char *prealloc)
{
	if (ftruncate(d->fd, (off_t)size) < 0)
		return -errno;
	if (size > d->size && prealloc && !strcmp(prealloc, "falloc")) {
		int e = posix_fallocate(d->fd, (off_t)d->size,
					(off_t)(size - d->size));

		if (e)
			return -e;
	} else if (size > d->size && prealloc && !strcmp(prealloc, "full")) {
		static const char zeros[65536];
		uint64_t off = d->size;

		while (off < size) {
			size_t n = size - off < sizeof(zeros) ?
					   (size_t)(size - off) :
					   sizeof(zeros);
			ssize_t w = pwrite(d->fd, zeros, n, (off_t)off);

			if (w < 0)
				return -errno;
			off += (uint64_t)w;
		}
	}
	return fsync(d->fd) < 0 ? -errno : 0;
}

int cmd_resize(struct tool *t, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "format", required_argument, NULL, 'f' },
		{ "shrink", no_argument, NULL, OPT_SHRINK },
		{ "preallocation", required_argument, NULL, OPT_PREALLOC },
		{ NULL, 0, NULL, 0 },
	};
	const char *fmt = NULL, *prealloc = NULL, *sizearg, *path;
	bool quiet = false, shrink = false;
	int relative = 0, c, r, ret = 1;
	uint64_t n, total;
	struct disk d;

	/* "resize -h" asks for help, not for a size of "-h". */
	if (argc == 2 &&
	    (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		tool_help(stdout);
		return 0;
	}
	if (argc < 3)
		return tool_usage_err("Not enough arguments");
	sizearg = argv[--argc];

	while ((c = getopt_long(argc, argv, ":f:hq", longopts, NULL)) != -1) {
		switch (c) {
		case 'f':
			fmt = optarg;
			break;
		case 'h':
			tool_help(stdout);
			return 0;
		case 'q':
			quiet = true;
			break;
		case OPT_SHRINK:
			shrink = true;
			break;
		case OPT_PREALLOC:
			if (strcmp(optarg, "off") != 0 &&
			    strcmp(optarg, "metadata") != 0 &&
			    strcmp(optarg, "falloc") != 0 &&
			    strcmp(optarg, "full") != 0) {
				tool_err("Invalid preallocation mode '%s'",
					 optarg);
				return 1;
			}
			prealloc = optarg;
			break;
		default:
			return tool_opt_err(c, argv);
		}
	}
	if (optind != argc - 1)
		return tool_usage_err("Expecting image file name and size");
	path = argv[optind];

	if (sizearg[0] == '+') {
		relative = 1;
		sizearg++;
	} else if (sizearg[0] == '-') {
		relative = -1;
		sizearg++;
	}
	r = parse_size(sizearg, &n);
	if (r == -ERANGE) {
		tool_err("Value '%s' is out of range for parameter 'size'",
			 sizearg);
		return 1;
	}
	if (r < 0) {
		tool_err(
			"Parameter 'size' expects a non-negative number below 2^64");
		fprintf(stderr,
			"Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
			"and exabytes, respectively.\n");
		return 1;
	}

	if (disk_open(&d, t, path, fmt, DISK_RW) < 0)
		return 1;
	if (relative > 0) {
		if (__builtin_add_overflow(d.size, n, &total) ||
		    total > INT64_MAX) {
			tool_err("Image size too large");
			goto out;
		}
	} else if (relative < 0) {
		if (n >= d.size) {
			tool_err("New image size must be positive");
			goto out;
		}
		total = d.size - n;
	} else {
		total = n;
	}
	if (total == 0 || total > INT64_MAX) {
		tool_err(total ? "Image size too large" :
				 "New image size must be positive");
		goto out;
	}
	if (total <= d.size && prealloc && strcmp(prealloc, "off") != 0) {
		tool_err("Preallocation can only be used for growing images");
		goto out;
	}
	if (total < d.size && !shrink) {
		tool_err(
			"Use the --shrink option to perform a shrink operation.");
		tool_warn(
			"Shrinking an image will delete all data beyond the shrunken image's end. Before performing such an operation, make sure there is no important data there.");
		goto out;
	}
	if (d.format == DISK_QCOW2) {
		/* qcow_image_resize has no preallocation mode, and writing
		 * zeros allocates nothing (libqcow stores them as holes). */
		if (prealloc && strcmp(prealloc, "off") != 0) {
			tool_err(
				"Preallocation mode '%s' is not supported when resizing qcow2 images",
				prealloc);
			goto out;
		}
		r = resize_qcow2(&d, total);
	} else {
		if (prealloc && !strcmp(prealloc, "metadata")) {
			tool_err("Unsupported preallocation mode: metadata");
			goto out;
		}
		r = resize_raw(&d, total, prealloc);
	}
	if (r < 0) {
		tool_err("%s: cannot resize the image: %s", path,
			 disk_errmsg(&d, r));
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
	if (ret == 0 && !quiet)
		printf("Image resized.\n");
	return ret;
}
