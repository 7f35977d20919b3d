// SPDX-License-Identifier: MIT
/*
 * qcow-tool map: the allocation map, as qemu-img map prints it.
 *
 * The runs come from qcow_image_map (or SEEK_DATA/SEEK_HOLE for raw),
 * which already merges them as qemu-img map --output=json does. The loop
 * below is qemu-img's own (img_map): it merges again and, in the human
 * format, folds zero and unallocated runs together before merging, so
 * that only runs of data are listed:
 *
 *   [{ "start": 0, "length": 65536, "depth": 0, "present": true, ...},
 *   { "start": 65536, ...}]
 *
 *   Offset          Length          Mapped to       File
 *   0               0x10000         0x50000         a.qcow2
 *
 * The human format names the file holding each run; for runs in backing
 * files those names are found by walking the chain of backing file names.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

enum { OPT_OUTPUT = 256, OPT_START_OFFSET, OPT_MAX_LENGTH };

#define MAX_CHAIN 64

struct map_ctx {
	bool json;
	const char *path;
	unsigned flags;
	char *names[MAX_CHAIN]; /* file name of each depth */
	int nnames;
};

/* The file name of the image at depth (0: the top), as qemu resolves it. */
static const char *layer_name(struct map_ctx *m, int depth)
{
	if (depth < 0 || depth >= MAX_CHAIN)
		return "";
	if (!m->nnames) {
		m->names[0] = strdup(m->path);
		if (!m->names[0])
			return "";
		m->nnames = 1;
	}
	while (m->nnames <= depth) {
		const char *prev = m->names[m->nnames - 1];
		struct qcow_image *img;
		struct qcow_open_opts o = { .force_share = true,
					    .no_backing = true };
		struct qcow_error err;
		struct qcow_info info;
		char *next = NULL;

		if (probe_is_qcow2(prev) != 1)
			return "";
		if (qcow_image_open(&img, prev, &o, &err) < 0)
			return "";
		if (qcow_image_info(img, &info) == 0 && info.backing_file)
			next = path_combine(prev, info.backing_file);
		qcow_image_close(img);
		if (!next)
			return "";
		m->names[m->nnames++] = next;
	}
	return m->names[depth];
}

static bool mergeable(const struct qcow_map_run *a,
		      const struct qcow_map_run *b)
{
	if (!a->length)
		return false;
	if (a->zero != b->zero || a->data != b->data || a->depth != b->depth ||
	    a->present != b->present || a->has_offset != b->has_offset)
		return false;
	return !a->has_offset || a->offset + a->length == b->offset;
}

/* qemu-img's dump_map_entry. -1 if the human format cannot show e. */
static int dump(struct map_ctx *m, const struct qcow_map_run *e,
		struct qcow_map_run *next)
{
	if (m->json) {
		printf("{ \"start\": %" PRIu64 ", \"length\": %" PRIu64
		       ", \"depth\": %d, \"present\": %s, \"zero\": %s, \"data\": %s",
		       e->start, e->length, e->depth,
		       e->present ? "true" : "false",
		       e->zero ? "true" : "false", e->data ? "true" : "false");
		if (e->has_offset)
			printf(", \"offset\": %" PRIu64, e->offset);
		putchar('}');
		if (next)
			puts(",");
		return 0;
	}
	if (e->data && !e->has_offset) {
		fflush(stdout);
		tool_err(
			"File contains external, encrypted or compressed clusters.");
		return -1;
	}
	if (e->data && !e->zero)
		printf("%#-16" PRIx64 "%#-16" PRIx64 "%#-16" PRIx64 "%s\n",
		       e->start, e->length, e->has_offset ? e->offset : 0,
		       e->has_offset ? layer_name(m, e->depth) : "");
	/* The human format does not tell zero from unallocated: fold them
	 * so that they merge. */
	if (next && (!next->data || next->zero)) {
		next->data = false;
		next->zero = true;
	}
	return 0;
}

int cmd_map(struct tool *t, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "format", required_argument, NULL, 'f' },
		{ "output", required_argument, NULL, OPT_OUTPUT },
		{ "start-offset", required_argument, NULL, OPT_START_OFFSET },
		{ "max-length", required_argument, NULL, OPT_MAX_LENGTH },
		{ "force-share", no_argument, NULL, 'U' },
		{ NULL, 0, NULL, 0 },
	};
	struct map_ctx m = { .json = false };
	const char *fmt = NULL, *output = NULL;
	int64_t start = 0, max_length = -1;
	struct qcow_map_run curr, next;
	uint64_t length;
	struct disk d;
	int c, r, ret = 1;

	while ((c = getopt_long(argc, argv, ":f:hU", longopts, NULL)) != -1) {
		switch (c) {
		case 'f':
			fmt = optarg;
			break;
		case 'h':
			tool_help(stdout);
			return 0;
		case 'U':
			m.flags |= DISK_SHARE;
			break;
		case OPT_OUTPUT:
			output = optarg;
			break;
		case OPT_START_OFFSET:
			start = cvtnum("start offset", optarg);
			if (start < 0)
				return 1;
			break;
		case OPT_MAX_LENGTH:
			max_length = cvtnum("max length", optarg);
			if (max_length < 0)
				return 1;
			break;
		default:
			return tool_opt_err(c, argv);
		}
	}
	if (optind != argc - 1)
		return tool_usage_err("Expecting one image file name");
	m.path = argv[optind];
	if (tool_output_json(output, &m.json) < 0)
		return 1;
	if (disk_open(&d, t, m.path, fmt, m.flags) < 0)
		return 1;

	length = d.size;
	if (max_length >= 0 && (uint64_t)start + (uint64_t)max_length < length)
		length = (uint64_t)start + (uint64_t)max_length;
	if (m.json)
		putchar('[');
	else
		printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to",
		       "File");

	memset(&curr, 0, sizeof(curr));
	curr.start = (uint64_t)start;
	while (curr.start + curr.length < length) {
		uint64_t off = curr.start + curr.length;

		r = disk_status(&d, off, &next);
		if (r < 0) {
			fflush(stdout);
			tool_err("Could not read file metadata: %s",
				 disk_errmsg(&d, r));
			goto out;
		}
		if (next.length > length - off)
			next.length = length - off;
		if (mergeable(&curr, &next)) {
			curr.length += next.length;
			continue;
		}
		if (curr.length > 0 && dump(&m, &curr, &next) < 0)
			goto out;
		curr = next;
	}
	if (dump(&m, &curr, NULL) < 0)
		goto out;
	if (m.json)
		puts("]");
	ret = 0;
out:
	fflush(stdout);
	disk_close(&d);
	for (int i = 0; i < m.nnames; i++)
		free(m.names[i]);
	return ret;
}
