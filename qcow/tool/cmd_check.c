// SPDX-License-Identifier: MIT
/*
 * qcow-tool check: qemu-img check over qcow_image_check.
 *
 * Exit status as qemu-img's: 0 clean, 1 the check could not complete,
 * 2 corruptions found, 3 only leaks found, 63 the format (raw) has
 * nothing to check. With -r the image is opened read-write and repaired;
 * as qemu-img does, a repair that fixed something is followed by a second
 * check whose findings are the ones reported (with the fixed counts of
 * the first). The library's per-cluster findings ("Leaked cluster 5
 * refcount=2 reference=1") go to stderr bare, as qemu prints them.
 */
#include <getopt.h>
#include <inttypes.h>
#include <string.h>

#include "tool.h"

enum { OPT_OUTPUT = 256, OPT_IMAGE_OPTS };

static void check_human(const struct qcow_check_result *c)
{
	if (!(c->corruptions || c->leaks || c->check_errors)) {
		printf("No errors were found on the image.\n");
	} else {
		if (c->corruptions)
			printf("\n%" PRIu64 " errors were found on the image.\n"
			       "Data may be corrupted, or further writes to the image may corrupt it.\n",
			       c->corruptions);
		if (c->leaks)
			printf("\n%" PRIu64
			       " leaked clusters were found on the image.\n"
			       "This means waste of disk space, but no harm to data.\n",
			       c->leaks);
		if (c->check_errors)
			printf("\n%" PRIu64
			       " internal errors have occurred during the check.\n",
			       c->check_errors);
	}
	if (c->total_clusters && c->allocated_clusters)
		printf("%" PRIu64 "/%" PRIu64
		       " = %0.2f%% allocated, %0.2f%% fragmented, %0.2f%% compressed clusters\n",
		       c->allocated_clusters, c->total_clusters,
		       (double)c->allocated_clusters * 100.0 /
			       (double)c->total_clusters,
		       (double)c->fragmented_clusters * 100.0 /
			       (double)c->allocated_clusters,
		       (double)c->compressed_clusters * 100.0 /
			       (double)c->allocated_clusters);
	if (c->image_end_offset)
		printf("Image end offset: %" PRIu64 "\n", c->image_end_offset);
}

static int check_json(const struct qcow_check_result *c, const char *filename)
{
	struct json *o = json_object();
	int r;

	/* QAPI's ImageCheck field order; the optional ones only if set. */
	json_add(o, "filename", json_str(filename));
	json_add(o, "format", json_str("qcow2"));
	json_add(o, "check-errors", json_uint(c->check_errors));
	if (c->image_end_offset)
		json_add(o, "image-end-offset", json_uint(c->image_end_offset));
	if (c->corruptions)
		json_add(o, "corruptions", json_uint(c->corruptions));
	if (c->leaks)
		json_add(o, "leaks", json_uint(c->leaks));
	if (c->corruptions_fixed)
		json_add(o, "corruptions-fixed",
			 json_uint(c->corruptions_fixed));
	if (c->leaks_fixed)
		json_add(o, "leaks-fixed", json_uint(c->leaks_fixed));
	if (c->total_clusters)
		json_add(o, "total-clusters", json_uint(c->total_clusters));
	if (c->allocated_clusters)
		json_add(o, "allocated-clusters",
			 json_uint(c->allocated_clusters));
	if (c->fragmented_clusters)
		json_add(o, "fragmented-clusters",
			 json_uint(c->fragmented_clusters));
	if (c->compressed_clusters)
		json_add(o, "compressed-clusters",
			 json_uint(c->compressed_clusters));
	r = json_print(stdout, o);
	json_free(o);
	if (r < 0) {
		tool_err("out of memory");
		return r;
	}
	printf("\n");
	return 0;
}

int cmd_check(struct tool *t, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "format", required_argument, NULL, 'f' },
		{ "repair", required_argument, NULL, 'r' },
		{ "output", required_argument, NULL, OPT_OUTPUT },
		{ "force-share", no_argument, NULL, 'U' },
		{ NULL, 0, NULL, 0 },
	};
	const char *fmt = NULL, *output = NULL, *path;
	enum qcow_check_repair fix = QCOW_CHECK_NONE;
	struct qcow_check_result res = { 0 }, again;
	bool quiet = false, json = false;
	unsigned flags = 0;
	struct disk d;
	int c, r, ret;

	while ((c = getopt_long(argc, argv, ":hf:r:T:qU", longopts, NULL)) !=
	       -1) {
		switch (c) {
		case 'h':
			tool_help(stdout);
			return 0;
		case 'f':
			fmt = optarg;
			break;
		case 'r':
			flags |= DISK_RW;
			if (!strcmp(optarg, "leaks")) {
				fix = QCOW_CHECK_REPAIR_LEAKS;
			} else if (!strcmp(optarg, "all")) {
				fix = QCOW_CHECK_REPAIR_ALL;
			} else {
				return tool_usage_err(
					"Unknown option value for -r (expecting 'leaks' or 'all'): %s",
					optarg);
			}
			break;
		case 'T':
			break; /* the source cache mode: nothing to choose */
		case 'q':
			quiet = true;
			break;
		case 'U':
			flags |= DISK_SHARE;
			break;
		case OPT_OUTPUT:
			output = optarg;
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
	if ((flags & DISK_RW) && (flags & DISK_SHARE)) {
		tool_err(
			"Could not open '%s': force-share=on can only be used with read-only images",
			path);
		return 1;
	}
	/* The backing chain plays no part in a check of this image. */
	if (disk_open(&d, t, path, fmt, flags | DISK_NO_BACKING) < 0)
		return 1;
	if (d.format != DISK_QCOW2) {
		disk_close(&d);
		tool_err("This image format does not support checks");
		return 63;
	}

	t->bare_warnings = true;
	fflush(stdout);
	r = qcow_image_check(d.img, &res, fix);
	if (r == 0 && (res.corruptions_fixed || res.leaks_fixed)) {
		if (!quiet && !json) {
			printf("The following inconsistencies were found and repaired:\n\n"
			       "    %" PRIu64 " leaked clusters\n"
			       "    %" PRIu64 " corruptions\n\n"
			       "Double checking the fixed image now...\n",
			       res.leaks_fixed, res.corruptions_fixed);
			fflush(stdout);
		}
		memset(&again, 0, sizeof(again));
		r = qcow_image_check(d.img, &again, QCOW_CHECK_NONE);
		again.leaks_fixed = res.leaks_fixed;
		again.corruptions_fixed = res.corruptions_fixed;
		res = again;
	}
	t->bare_warnings = false;

	if (r == 0 && !quiet) {
		if (json) {
			if (check_json(&res, path) < 0)
				r = -1;
		} else {
			check_human(&res);
		}
	}
	if (r < 0 || res.check_errors) {
		if (r < 0)
			tool_err("Check failed: %s", disk_errmsg(&d, r));
		else
			tool_err("Check failed");
		ret = 1;
	} else if (res.corruptions) {
		ret = 2;
	} else if (res.leaks) {
		ret = 3;
	} else {
		ret = 0;
	}
	r = disk_close(&d);
	if (r < 0 && ret == 0) {
		tool_err("%s: error while closing the image: %s", path,
			 errstr(r));
		ret = 1;
	}
	return ret;
}
