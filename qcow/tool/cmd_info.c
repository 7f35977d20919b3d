// SPDX-License-Identifier: MIT
/*
 * qcow-tool info: what qemu-img info says about an image, in the same
 * words (human) or the same JSON (--output=json), for qcow2 and raw.
 *
 * The fields are qemu's ImageInfo: virtual-size, filename, cluster-size,
 * format, actual-size, dirty-flag, the backing file's name as stored, as
 * resolved against the image's directory (full-backing-filename) and its
 * format, internal snapshots, and format-specific data for qcow2. The
 * image is opened without its backing chain, as qemu-img info does, so
 * an image whose backing file is missing can still be inspected;
 * --backing-chain then walks the chain by name.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "tool.h"

enum { OPT_OUTPUT = 256, OPT_BACKING_CHAIN, OPT_FORCE_SHARE };

struct image_info {
	struct qcow_info q;
	uint64_t virtual_size;
	int64_t actual_size;
	uint64_t cluster_size;
	const char *filename;
	const char *format;
	const char *backing; /* as stored */
	char *full_backing; /* resolved, malloc'd */
	const char *backing_fmt;
	struct qcow_snapshot_info *snaps;
	uint32_t nb_snapshots;
	bool has_actual_size;
	bool has_cluster_size;
	bool dirty;
	bool is_qcow2;
};

static void info_release(struct image_info *ii)
{
	free(ii->full_backing);
	free(ii->snaps);
}

static int info_collect(struct disk *d, struct image_info *ii)
{
	memset(ii, 0, sizeof(*ii));
	ii->filename = d->path;
	ii->format = disk_format_name(d);
	ii->virtual_size = d->size;

	if (d->format == DISK_RAW) {
		struct stat st;

		if (fstat(d->fd, &st) == 0) {
			ii->has_actual_size = true;
			ii->actual_size = (int64_t)st.st_blocks * 512;
		}
		return 0;
	}
	int r = qcow_image_info(d->img, &ii->q);

	if (r < 0) {
		tool_err("%s: cannot read image information: %s", d->path,
			 disk_errmsg(d, r));
		return r;
	}
	ii->is_qcow2 = true;
	ii->has_cluster_size = true;
	ii->cluster_size = ii->q.cluster_size;
	ii->dirty = ii->q.dirty;
	if (ii->q.actual_size >= 0) {
		ii->has_actual_size = true;
		ii->actual_size = ii->q.actual_size;
	}
	if (ii->q.backing_file) {
		ii->backing = ii->q.backing_file;
		ii->full_backing = path_combine(d->path, ii->backing);
		if (!ii->full_backing) {
			tool_err("out of memory");
			return -1;
		}
		ii->backing_fmt = ii->q.backing_fmt;
	}
	if (ii->q.nb_snapshots) {
		ii->snaps = calloc(ii->q.nb_snapshots, sizeof(*ii->snaps));
		if (!ii->snaps) {
			tool_err("out of memory");
			return -1;
		}
		for (uint32_t i = 0; i < ii->q.nb_snapshots; i++) {
			r = qcow_image_snapshot(d->img, i, &ii->snaps[i]);
			if (r < 0) {
				tool_err("%s: cannot read snapshot %u: %s",
					 d->path, i, disk_errmsg(d, r));
				return r;
			}
		}
		ii->nb_snapshots = ii->q.nb_snapshots;
	}
	return 0;
}

static const char *compression_name(enum qcow_compression c)
{
	return c == QCOW_COMPRESSION_ZSTD ? "zstd" : "zlib";
}

/* --- JSON --- */

static struct json *snapshot_json(const struct qcow_snapshot_info *s)
{
	struct json *o = json_object();

	/* QAPI's SnapshotInfo field order. */
	json_add(o, "id", json_str(s->id));
	json_add(o, "name", json_str(s->name));
	json_add(o, "vm-state-size", json_uint(s->vm_state_size));
	json_add(o, "date-sec", json_uint(s->date_sec));
	json_add(o, "date-nsec", json_uint(s->date_nsec));
	json_add(o, "vm-clock-sec",
		 json_uint(s->vm_clock_nsec / 1000000000ull));
	json_add(o, "vm-clock-nsec",
		 json_uint(s->vm_clock_nsec % 1000000000ull));
	if (s->icount != UINT64_MAX)
		json_add(o, "icount", json_uint(s->icount));
	return o;
}

static struct json *info_json(const struct image_info *ii)
{
	struct json *o = json_object();

	/* QAPI's ImageInfo field order (it matters only for keys that
	 * share a hash bucket). */
	json_add(o, "filename", json_str(ii->filename));
	json_add(o, "format", json_str(ii->format));
	json_add(o, "dirty-flag", json_bool(ii->dirty));
	if (ii->has_actual_size)
		json_add(o, "actual-size", json_int(ii->actual_size));
	json_add(o, "virtual-size", json_uint(ii->virtual_size));
	if (ii->has_cluster_size)
		json_add(o, "cluster-size", json_uint(ii->cluster_size));
	if (ii->backing) {
		json_add(o, "backing-filename", json_str(ii->backing));
		json_add(o, "full-backing-filename",
			 json_str(ii->full_backing));
		if (ii->backing_fmt)
			json_add(o, "backing-filename-format",
				 json_str(ii->backing_fmt));
	}
	if (ii->nb_snapshots) {
		struct json *a = json_array();

		for (uint32_t i = 0; i < ii->nb_snapshots; i++)
			json_add(a, NULL, snapshot_json(&ii->snaps[i]));
		json_add(o, "snapshots", a);
	}
	if (ii->is_qcow2) {
		struct json *spec = json_object(), *data = json_object();
		const struct qcow_info *q = &ii->q;

		json_add(data, "compat",
			 json_str(q->version >= 3 ? "1.1" : "0.10"));
		if (q->data_file)
			json_add(data, "data-file", json_str(q->data_file));
		if (q->version >= 3) {
			if (q->data_file)
				json_add(data, "data-file-raw",
					 json_bool(q->data_file_raw));
			json_add(data, "extended-l2",
				 json_bool(q->extended_l2));
			json_add(data, "lazy-refcounts",
				 json_bool(q->lazy_refcounts));
			json_add(data, "corrupt", json_bool(q->corrupt));
		}
		json_add(data, "refcount-bits", json_uint(q->refcount_bits));
		json_add(data, "compression-type",
			 json_str(compression_name(q->compression)));
		json_add(spec, "type", json_str("qcow2"));
		json_add(spec, "data", data);
		json_add(o, "format-specific", spec);
	}
	return o;
}

/* --- human --- */

static void snapshot_line(const struct qcow_snapshot_info *s)
{
	char date[64] = "", clock[64], vmsize[32], icount[32] = "";
	time_t secs = (time_t)s->date_sec;
	struct tm tm;
	uint64_t vs = s->vm_clock_nsec / 1000000000ull;

	if (localtime_r(&secs, &tm))
		strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
	snprintf(clock, sizeof(clock), "%02d:%02d:%02d.%03d", (int)(vs / 3600),
		 (int)((vs / 60) % 60), (int)(vs % 60),
		 (int)((s->vm_clock_nsec / 1000000) % 1000));
	size_to_str(s->vm_state_size, vmsize, sizeof(vmsize));
	if (s->icount != UINT64_MAX)
		snprintf(icount, sizeof(icount), "%" PRIu64, s->icount);
	printf("%-9s %-16s %8s%20s%13s%11s\n", s->id, s->name, vmsize, date,
	       clock, icount);
}

static void info_human(const struct image_info *ii)
{
	char vsize[32], dsize[32];

	size_to_str(ii->virtual_size, vsize, sizeof(vsize));
	if (ii->has_actual_size)
		size_to_str((uint64_t)ii->actual_size, dsize, sizeof(dsize));
	else
		snprintf(dsize, sizeof(dsize), "unavailable");
	printf("image: %s\n"
	       "file format: %s\n"
	       "virtual size: %s (%" PRIu64 " bytes)\n"
	       "disk size: %s\n",
	       ii->filename, ii->format, vsize, ii->virtual_size, dsize);
	if (ii->has_cluster_size)
		printf("cluster_size: %" PRIu64 "\n", ii->cluster_size);
	if (ii->dirty)
		printf("cleanly shut down: no\n");
	if (ii->backing) {
		printf("backing file: %s", ii->backing);
		if (strcmp(ii->backing, ii->full_backing) != 0)
			printf(" (actual path: %s)", ii->full_backing);
		printf("\n");
		if (ii->backing_fmt)
			printf("backing file format: %s\n", ii->backing_fmt);
	}
	if (ii->nb_snapshots) {
		printf("Snapshot list:\n");
		printf("%-10s%-17s%8s%20s%13s%11s\n", "ID", "TAG", "VM SIZE",
		       "DATE", "VM CLOCK", "ICOUNT");
		for (uint32_t i = 0; i < ii->nb_snapshots; i++)
			snapshot_line(&ii->snaps[i]);
	}
	if (ii->is_qcow2) {
		const struct qcow_info *q = &ii->q;

		/* qemu prints these in its hash order, as in the JSON. */
		printf("Format specific information:\n");
		printf("    compat: %s\n", q->version >= 3 ? "1.1" : "0.10");
		printf("    compression type: %s\n",
		       compression_name(q->compression));
		if (q->version >= 3)
			printf("    lazy refcounts: %s\n",
			       q->lazy_refcounts ? "true" : "false");
		printf("    refcount bits: %u\n", q->refcount_bits);
		if (q->data_file) {
			printf("    data file: %s\n", q->data_file);
			printf("    data file raw: %s\n",
			       q->data_file_raw ? "true" : "false");
		}
		if (q->version >= 3) {
			printf("    corrupt: %s\n",
			       q->corrupt ? "true" : "false");
			printf("    extended l2: %s\n",
			       q->extended_l2 ? "true" : "false");
		}
	}
}

int cmd_info(struct tool *t, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "format", required_argument, NULL, 'f' },
		{ "output", required_argument, NULL, OPT_OUTPUT },
		{ "backing-chain", no_argument, NULL, OPT_BACKING_CHAIN },
		{ "force-share", no_argument, NULL, 'U' },
		{ NULL, 0, NULL, 0 },
	};
	const char *fmt = NULL, *output = NULL, *path;
	bool chain = false, json = false;
	unsigned flags = DISK_NO_BACKING;
	struct json *arr = NULL;
	char *next = NULL, *next_fmt = NULL;
	int c, ret = 1, depth = 0;

	while ((c = getopt_long(argc, argv, ":f:hU", longopts, NULL)) != -1) {
		switch (c) {
		case 'f':
			fmt = optarg;
			break;
		case 'h':
			tool_help(stdout);
			return 0;
		case 'U':
			flags |= DISK_SHARE;
			break;
		case OPT_OUTPUT:
			output = optarg;
			break;
		case OPT_BACKING_CHAIN:
			chain = true;
			break;
		default:
			return tool_opt_err(c, argv);
		}
	}
	if (optind != argc - 1)
		return tool_usage_err("Expecting one image file name");
	path = argv[optind];
	if (tool_output_json(output, &json) < 0)
		return 1;
	if (json && chain && !(arr = json_array())) {
		tool_err("out of memory");
		return 1;
	}

	for (;;) {
		struct disk d;
		struct image_info ii;
		int r;

		if (++depth > 256) {
			tool_err("backing chain of '%s' is too long",
				 argv[optind]);
			goto out;
		}
		if (disk_open(&d, t, path, fmt, flags) < 0)
			goto out;
		r = info_collect(&d, &ii);
		if (r == 0 && json) {
			struct json *o = info_json(&ii);

			if (arr) {
				json_add(arr, NULL, o);
			} else {
				r = json_print(stdout, o);
				json_free(o);
				if (r == 0)
					printf("\n");
			}
		} else if (r == 0) {
			if (depth > 1)
				printf("\n");
			info_human(&ii);
		}
		free(next);
		free(next_fmt);
		next = next_fmt = NULL;
		if (r == 0 && chain && ii.backing) {
			next = strdup(ii.full_backing);
			next_fmt = ii.backing_fmt ? strdup(ii.backing_fmt) :
						    NULL;
			if (!next || (ii.backing_fmt && !next_fmt)) {
				tool_err("out of memory");
				r = -1;
			}
		}
		info_release(&ii);
		disk_close(&d);
		if (r < 0)
			goto out;
		if (!next)
			break;
		path = next;
		fmt = next_fmt;
	}
	if (arr) {
		if (json_print(stdout, arr) < 0) {
			tool_err("out of memory");
			goto out;
		}
		printf("\n");
	}
	ret = 0;
out:
	free(next);
	free(next_fmt);
	json_free(arr);
	return ret;
}
