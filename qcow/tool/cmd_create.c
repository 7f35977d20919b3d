// SPDX-License-Identifier: MIT
/*
 * qcow-tool create: make an empty qcow2 image (or a sparse raw file).
 *
 * Options are qemu-img create's: -f, -b/-F (backing file and its
 * format), -u (do not open the backing file), -q, and -o with the qcow2
 * creation options libqcow supports. Like qemu-img it prints
 *
 *   Formatting 'FILE', fmt=qcow2 cluster_size=65536 extended_l2=off ...
 *
 * listing the options in qemu's order (values as the user spelled them,
 * sizes as numbers, defaults filled in), and it rejects bad option names
 * and syntax before that line but inconsistent combinations after it,
 * with qemu's messages. The option parsing is shared with convert -o.
 *
 * Unlike qemu-img, whose default format is raw, qcow-tool creates qcow2
 * unless -f raw is given.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tool.h"

/* qemu's qcow2 options, in the order "-o help" lists them. */
static const struct {
	const char *name, *type, *help;
	bool supported;
} qcow2_opts[] = {
	{ "backing_file", "str", "File name of a base image", true },
	{ "backing_fmt", "str", "Image format of the base image", true },
	{ "cluster_size", "size", "qcow2 cluster size", true },
	{ "compat", "str", "Compatibility level (v2 [0.10] or v3 [1.1])",
	  true },
	{ "compression_type", "str",
	  "Compression method used for image cluster compression", true },
	{ "data_file", "str", "File name of an external data file", false },
	{ "data_file_raw", "bool (on/off)",
	  "The external data file must stay valid as a raw image", false },
	{ "encryption", "bool (on/off)", "Encrypt the image (not supported)",
	  false },
	{ "extended_l2", "bool (on/off)", "Extended L2 tables (off only)",
	  true },
	{ "lazy_refcounts", "bool (on/off)", "Postpone refcount updates",
	  true },
	{ "preallocation", "str",
	  "Preallocation mode (allowed values: off, metadata, falloc, full)",
	  true },
	{ "refcount_bits", "num", "Width of a reference count entry in bits",
	  true },
	{ "size", "size", "Virtual disk size", true },
};

static void print_opts_help(const char *fmt)
{
	if (!strcmp(fmt, "raw")) {
		printf("Supported raw options:\n"
		       "  preallocation=<str>    - Preallocation mode (allowed values: off, falloc, full)\n"
		       "  size=<size>            - Virtual disk size\n");
		return;
	}
	printf("Supported qcow2 options:\n");
	for (size_t i = 0; i < sizeof(qcow2_opts) / sizeof(qcow2_opts[0]);
	     i++) {
		char left[64];

		if (!qcow2_opts[i].supported &&
		    strcmp(qcow2_opts[i].name, "extended_l2") != 0)
			continue;
		snprintf(left, sizeof(left), "%s=<%s>", qcow2_opts[i].name,
			 qcow2_opts[i].type);
		printf("  %-22s - %s\n", left, qcow2_opts[i].help);
	}
}

static bool known_key(const char *fmt, const char *key, bool *supported)
{
	if (!strcmp(fmt, "raw")) {
		*supported = true;
		return !strcmp(key, "size") || !strcmp(key, "preallocation");
	}
	for (size_t i = 0; i < sizeof(qcow2_opts) / sizeof(qcow2_opts[0]);
	     i++) {
		if (!strcmp(qcow2_opts[i].name, key)) {
			*supported = qcow2_opts[i].supported;
			return true;
		}
	}
	if (!strncmp(key, "encrypt.", 8)) {
		*supported = false;
		return true;
	}
	return false;
}

/* qemu's "Parameter 'x' expects ..." for size-typed options. */
static int opt_size(const char *path, const char *key, const char *val,
		    uint64_t *out)
{
	if (parse_size(val, out) < 0) {
		tool_err(
			"%s: Parameter '%s' expects a non-negative number below 2^64",
			path, key);
		fprintf(stderr,
			"Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
			"and exabytes, respectively.\n");
		return 1;
	}
	return 0;
}

int create_spec_parse(struct create_spec *spec, const char *path)
{
	const struct kvlist *o = &spec->o;
	const char *v;
	bool b, supported;

	if (strcmp(spec->fmt, "qcow2") != 0 && strcmp(spec->fmt, "raw") != 0) {
		tool_err("%s: Unknown file format '%s'", path, spec->fmt);
		return 1;
	}
	for (size_t i = 0; i < o->n; i++) {
		if (!known_key(spec->fmt, o->v[i].key, &supported)) {
			tool_err("%s: Invalid parameter '%s'", path,
				 o->v[i].key);
			return 1;
		}
		if (!supported) {
			tool_err("%s: Parameter '%s' is not supported by %s",
				 path, o->v[i].key, TOOL_NAME);
			return 1;
		}
	}
	/* Syntax first, as qemu checks it while parsing the options. */
	if ((v = kvlist_get(o, "size"))) {
		uint64_t sz;

		if (spec->have_size) {
			tool_err(
				"%s: The image size must be specified only once",
				path);
			return 1;
		}
		if (opt_size(path, "size", v, &sz))
			return 1;
		spec->have_size = true;
		spec->size = sz;
	}
	if ((v = kvlist_get(o, "cluster_size"))) {
		uint64_t cs;

		if (opt_size(path, "cluster_size", v, &cs))
			return 1;
		spec->cluster_size = cs;
	}
	if ((v = kvlist_get(o, "refcount_bits"))) {
		unsigned long long n;

		if (parse_ulong(v, &n) < 0) {
			tool_err(
				"%s: Parameter 'refcount_bits' expects a number",
				path);
			return 1;
		}
		spec->refcount_bits = n;
	}
	if ((v = kvlist_get(o, "lazy_refcounts"))) {
		if (parse_bool(v, &b) < 0) {
			tool_err(
				"%s: Parameter 'lazy_refcounts' expects 'on' or 'off'",
				path);
			return 1;
		}
		spec->q.lazy_refcounts = b;
	}
	if ((v = kvlist_get(o, "extended_l2"))) {
		if (parse_bool(v, &b) < 0) {
			tool_err(
				"%s: Parameter 'extended_l2' expects 'on' or 'off'",
				path);
			return 1;
		}
		if (b) {
			tool_err("%s: extended_l2=on is not supported by %s",
				 path, TOOL_NAME);
			return 1;
		}
	}
	if ((v = kvlist_get(o, "backing_file")))
		spec->q.backing_file = v;
	if ((v = kvlist_get(o, "backing_fmt")))
		spec->q.backing_fmt = v;
	return 0;
}

/* Append " key=value" for each option qemu would print, in its order. */
void create_spec_print(const struct create_spec *spec, const char *path)
{
	const struct kvlist *o = &spec->o;
	const char *v;

	printf("Formatting '%s', fmt=%s", path, spec->fmt);
	if (!strcmp(spec->fmt, "raw")) {
		printf(" size=%llu", (unsigned long long)spec->size);
		if ((v = kvlist_get(o, "preallocation")))
			printf(" preallocation=%s", v);
		printf("\n");
		return;
	}
	printf(" cluster_size=%llu",
	       spec->cluster_size ? (unsigned long long)spec->cluster_size :
				    65536ull);
	v = kvlist_get(o, "extended_l2");
	printf(" extended_l2=%s", v ? v : "off");
	if ((v = kvlist_get(o, "preallocation")))
		printf(" preallocation=%s", v);
	v = kvlist_get(o, "compression_type");
	printf(" compression_type=%s", v ? v : "zlib");
	printf(" size=%llu", (unsigned long long)spec->size);
	if (spec->q.backing_file)
		printf(" backing_file=%s", spec->q.backing_file);
	if (spec->q.backing_fmt)
		printf(" backing_fmt=%s", spec->q.backing_fmt);
	if ((v = kvlist_get(o, "compat")))
		printf(" compat=%s", v);
	v = kvlist_get(o, "lazy_refcounts");
	printf(" lazy_refcounts=%s", v ? v : "off");
	printf(" refcount_bits=%llu\n",
	       spec->refcount_bits ? (unsigned long long)spec->refcount_bits :
				     16ull);
	fflush(stdout);
}

static int parse_prealloc(const char *v, enum qcow_prealloc *out)
{
	static const char *const names[] = { "off", "metadata", "falloc",
					     "full" };

	for (int i = 0; i < 4; i++) {
		if (!strcmp(v, names[i])) {
			*out = (enum qcow_prealloc)i;
			return 0;
		}
	}
	return -EINVAL;
}

static int create_raw(const struct create_spec *spec, const char *path)
{
	int fd, r = 0;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		r = -errno;
		tool_err("%s: Could not create '%s': %s", path, path,
			 errstr(r));
		return 1;
	}
	if (ftruncate(fd, (off_t)spec->size) < 0) {
		r = -errno;
		goto out;
	}
	if (spec->prealloc == QCOW_PREALLOC_FALLOC && spec->size) {
		r = -posix_fallocate(fd, 0, (off_t)spec->size);
	} else if (spec->prealloc == QCOW_PREALLOC_FULL) {
		static const char zeros[65536];
		uint64_t off = 0;

		while (off < spec->size && r == 0) {
			size_t n = spec->size - off < sizeof(zeros) ?
					   (size_t)(spec->size - off) :
					   sizeof(zeros);
			ssize_t w = pwrite(fd, zeros, n, (off_t)off);

			if (w < 0)
				r = -errno;
			else
				off += (uint64_t)w;
		}
	} else if (spec->size) {
		/*
		 * As qemu does, allocate the first block, so that tools
		 * probing the O_DIRECT alignment of the file find one.
		 */
		static const char zeros[4096];
		size_t n = spec->size < sizeof(zeros) ? (size_t)spec->size :
							sizeof(zeros);

		if (pwrite(fd, zeros, n, 0) < 0)
			r = -errno;
	}
out:
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r < 0) {
		tool_err("%s: Could not create '%s': %s", path, path,
			 errstr(r));
		return 1;
	}
	return 0;
}

int create_spec_run(struct create_spec *spec, struct tool *t, const char *path)
{
	const struct kvlist *o = &spec->o;
	struct qcow_create_opts *q = &spec->q;
	struct qcow_error err = { 0 };
	const char *v;
	int r;

	spec->prealloc = QCOW_PREALLOC_OFF;
	if ((v = kvlist_get(o, "preallocation")) &&
	    parse_prealloc(v, &spec->prealloc) < 0) {
		tool_err(
			"%s: Parameter 'preallocation' does not accept value '%s'",
			path, v);
		return 1;
	}
	if (!strcmp(spec->fmt, "raw")) {
		if (spec->prealloc == QCOW_PREALLOC_METADATA) {
			tool_err("%s: Unsupported preallocation mode: metadata",
				 path);
			return 1;
		}
		return create_raw(spec, path);
	}

	q->size = spec->size;
	q->prealloc = spec->prealloc;
	q->log = t->log;
	if ((v = kvlist_get(o, "compat"))) {
		if (!strcmp(v, "0.10") || !strcmp(v, "v2")) {
			q->version = 2;
		} else if (!strcmp(v, "1.1") || !strcmp(v, "v3")) {
			q->version = 3;
		} else {
			tool_err(
				"%s: Parameter 'version' does not accept value '%s'",
				path, v);
			return 1;
		}
	}
	if ((v = kvlist_get(o, "compression_type"))) {
		if (!strcmp(v, "zlib")) {
			q->compression = QCOW_COMPRESSION_ZLIB;
		} else if (!strcmp(v, "zstd")) {
			q->compression = QCOW_COMPRESSION_ZSTD;
		} else {
			tool_err(
				"%s: Parameter 'compression-type' does not accept value '%s'",
				path, v);
			return 1;
		}
	}
	if (kvlist_get(o, "cluster_size")) {
		uint64_t cs = spec->cluster_size;

		if (cs < 512 || cs > (2u << 20) || (cs & (cs - 1))) {
			tool_err(
				"%s: Cluster size must be a power of two between 512 and 2048k",
				path);
			return 1;
		}
		q->cluster_size = (uint32_t)cs;
	}
	if (kvlist_get(o, "refcount_bits")) {
		uint64_t rb = spec->refcount_bits;

		if (rb == 0 || rb > 64 || (rb & (rb - 1))) {
			tool_err(
				"%s: Refcount width must be a power of two and may not exceed 64 bits",
				path);
			return 1;
		}
		q->refcount_bits = (unsigned)rb;
	}
	if (q->version == 2) {
		if (q->refcount_bits && q->refcount_bits != 16) {
			tool_err(
				"%s: Different refcount widths than 16 bits require compatibility level 1.1 or above (use version=v3 or greater)",
				path);
			return 1;
		}
		if (q->lazy_refcounts) {
			tool_err(
				"%s: Lazy refcounts only supported with compatibility level 1.1 and above (use version=v3 or greater)",
				path);
			return 1;
		}
		if (q->compression != QCOW_COMPRESSION_ZLIB) {
			tool_err(
				"%s: Non-zlib compression type is only supported with compatibility level 1.1 and above (use version=v3 or greater)",
				path);
			return 1;
		}
	}
	if (q->backing_file && q->prealloc != QCOW_PREALLOC_OFF) {
		tool_err(
			"%s: Backing file and preallocation can only be used at the same time if extended_l2 is on",
			path);
		return 1;
	}
	if (q->size % 512) {
		/* qemu rounds qcow2 sizes up to whole sectors. */
		q->size += 512 - q->size % 512;
	}
	r = qcow_create(path, q, &err);
	if (r < 0) {
		tool_err("%s: %s", path, err.msg[0] ? err.msg : errstr(r));
		return 1;
	}
	return 0;
}

/* Open the backing file as qemu-img create does: for its size, and to
 * make sure it is there. 0 or 1 (error printed). */
static int backing_size(struct tool *t, const char *path, const char *backing,
			const char *bfmt, uint64_t *size)
{
	char *full = path_combine(path, backing);
	struct disk d;
	int r;

	if (!full) {
		tool_err("out of memory");
		return 1;
	}
	if (strcmp(bfmt, "raw") != 0 && strcmp(bfmt, "qcow2") != 0) {
		tool_err("%s: Unknown driver '%s'", path, bfmt);
		fprintf(stderr, "Could not open backing image.\n");
		free(full);
		return 1;
	}
	r = probe_is_qcow2(full);
	if (r < 0) {
		tool_err("%s: Could not open '%s': %s", path, full, errstr(r));
		fprintf(stderr, "Could not open backing image.\n");
		free(full);
		return 1;
	}
	r = disk_open(&d, t, full, bfmt, DISK_SHARE | DISK_NO_BACKING);
	free(full);
	if (r < 0) {
		fprintf(stderr, "Could not open backing image.\n");
		return 1;
	}
	*size = d.size;
	disk_close(&d);
	return 0;
}

int cmd_create(struct tool *t, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct create_spec spec = { .fmt = "qcow2" };
	const char *backing = NULL, *bfmt = NULL, *path;
	bool quiet = false, unsafe = false, help = false;
	int c, ret = 1;

	while ((c = getopt_long(argc, argv, ":F:b:f:ho:qu", longopts, NULL)) !=
	       -1) {
		switch (c) {
		case 'F':
			bfmt = optarg;
			break;
		case 'b':
			backing = optarg;
			break;
		case 'f':
			spec.fmt = optarg;
			break;
		case 'h':
			tool_help(stdout);
			ret = 0;
			goto out;
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
		case 'q':
			quiet = true;
			break;
		case 'u':
			unsafe = true;
			break;
		default:
			ret = tool_opt_err(c, argv);
			goto out;
		}
	}
	if (help) {
		if (strcmp(spec.fmt, "qcow2") != 0 &&
		    strcmp(spec.fmt, "raw") != 0) {
			tool_err("Unknown file format '%s'", spec.fmt);
			goto out;
		}
		print_opts_help(spec.fmt);
		ret = 0;
		goto out;
	}
	if (optind >= argc) {
		ret = tool_usage_err("Expecting image file name");
		goto out;
	}
	path = argv[optind++];
	if (optind < argc) {
		int64_t sz = cvtnum("image size", argv[optind++]);

		if (sz < 0)
			goto out;
		spec.have_size = true;
		spec.size = (uint64_t)sz;
	}
	if (optind != argc) {
		ret = tool_usage_err("Unexpected argument: %s", argv[optind]);
		goto out;
	}
	if (create_spec_parse(&spec, path))
		goto out;
	if (backing)
		spec.q.backing_file = backing;
	if (bfmt)
		spec.q.backing_fmt = bfmt;
	if (!strcmp(spec.fmt, "raw") &&
	    (spec.q.backing_file || spec.q.backing_fmt)) {
		tool_err("%s: Invalid parameter 'backing_file'", path);
		goto out;
	}
	if (spec.q.backing_fmt && !spec.q.backing_file) {
		tool_err(
			"%s: Backing format cannot be used without backing file",
			path);
		goto out;
	}
	if (spec.q.backing_file && !spec.q.backing_fmt) {
		char *full = path_combine(path, spec.q.backing_file);
		int q = full ? probe_is_qcow2(full) : -ENOMEM;

		free(full);
		tool_err("%s: Backing file specified without backing format",
			 path);
		if (q >= 0)
			fprintf(stderr, "Detected format of %s.\n",
				q ? "qcow2" : "raw");
		goto out;
	}
	if (spec.q.backing_file && !unsafe) {
		uint64_t bsize;

		if (backing_size(t, path, spec.q.backing_file,
				 spec.q.backing_fmt, &bsize))
			goto out;
		if (!spec.have_size) {
			spec.size = bsize;
			spec.have_size = true;
		}
	}
	if (!spec.have_size) {
		tool_err("%s: Image creation needs a size parameter", path);
		goto out;
	}
	if (!quiet)
		create_spec_print(&spec, path);
	ret = create_spec_run(&spec, t, path);
out:
	kvlist_release(&spec.o);
	return ret;
}
