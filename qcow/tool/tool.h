/* SPDX-License-Identifier: MIT */
/*
 * qcow-tool's internal declarations, shared by the files of qcow/tool/ only.
 *
 * qcow-tool is a command-line front end over libqcow (qcow/qcow.h). Where
 * qemu-img has the same command, the name, options, output text, JSON
 * field names and exit codes are qemu-img 7.2's, so scripts written for
 * one work with the other. Each command lives in cmd_<name>.c and is
 * called with its own argv (argv[0] is the command name); it returns the
 * process exit status.
 *
 * Images are opened through `struct disk` (disk.c), which hides whether a
 * file is qcow2 (through libqcow) or raw (plain file I/O): the commands
 * that qemu-img lets work on both (info, map, compare, convert, bench)
 * are written once. json.c prints JSON laid out exactly as qemu's QObject
 * pretty printer does, key order included.
 *
 * Errors go to stderr as "qcow-tool: <what>" and nothing is printed on
 * stdout for a failed command, except where qemu-img prints first (the
 * "Formatting ..." line of create).
 */
#ifndef QCOW_TOOL_H
#define QCOW_TOOL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <qcow/qcow.h>

#define TOOL_NAME "qcow-tool"

/* The context every command gets: no mutable globals. */
struct tool {
	/*
	 * How library warnings are shown: with the "qcow-tool: " prefix
	 * (the default), or bare, as qemu-img check prints its findings.
	 */
	bool bare_warnings;
	struct qcow_log log; /* routes to tool_log_fn with this tool */
};

/* qcow-tool.c */
void tool_log_fn(void *opaque, enum qcow_log_level level, const char *msg);
void tool_help(FILE *f);

/* util.c: messages */
void tool_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void tool_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print the message and a pointer to --help; returns 1 (the exit code). */
int tool_usage_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Report getopt's ':' (missing argument) or '?' (unknown option). */
int tool_opt_err(int c, char **argv);
/* --output=human|json: sets *json; prints qemu's error and returns -1 otherwise. */
int tool_output_json(const char *output, bool *json);

/* util.c: numbers and sizes, with qemu's syntax and messages */
/* Parse "1.5G", "512", "0x1000", "64k": 0, -EINVAL or -ERANGE. */
int parse_size(const char *s, uint64_t *out);
/* As qemu-img's cvtnum_full: prints the error; returns the value or -1. */
int64_t cvtnum_range(const char *name, const char *value, int64_t min,
		     int64_t max);
int64_t cvtnum(const char *name, const char *value);
/* An unsigned number in C syntax (base 0), fully consumed: 0 or -EINVAL. */
int parse_ulong(const char *s, unsigned long long *out);
/* on/off/yes/no/true/false (qemu's boolean syntax): 0 or -EINVAL. */
int parse_bool(const char *s, bool *out);
/* qemu's size_to_str: "1 GiB", "324 KiB", "1.28 MiB", "0 B". */
void size_to_str(uint64_t v, char *buf, size_t n);
/* qemu's path_combine: name relative to base's directory. malloc'd. */
char *path_combine(const char *base, const char *name);
/* A message for a negative errno value. */
const char *errstr(int neg_errno);

/*
 * Options in qemu's "-o key=value,key=value" syntax (",," is a literal
 * comma). Parsed into a list of key/value pairs, later ones override.
 */
struct kv {
	char *key;
	char *val;
};

struct kvlist {
	struct kv *v;
	size_t n;
};

int kvlist_parse(struct kvlist *l, const char *s);
const char *kvlist_get(const struct kvlist *l, const char *key);
void kvlist_release(struct kvlist *l);

/* util.c: allocation that cannot fail silently (prints, returns NULL) */
void *xmalloc_aligned(size_t size);

/* json.c: a JSON tree printed as qemu prints its QObjects */
struct json;

struct json *json_object(void);
struct json *json_array(void);
/* Add a member (objects) or an element (arrays, key NULL); the child is
 * owned by the parent from then on. A NULL child (out of memory) marks
 * the parent failed, which json_print reports. */
void json_add(struct json *parent, const char *key, struct json *child);
struct json *json_int(int64_t v);
struct json *json_uint(uint64_t v);
struct json *json_bool(bool v);
struct json *json_str(const char *s);
/* Print with qemu's pretty layout (no final newline). 0 or -ENOMEM. */
int json_print(FILE *f, const struct json *j);
void json_free(struct json *j);

/* disk.c: one image, qcow2 or raw */
enum disk_format {
	DISK_RAW,
	DISK_QCOW2,
};

#define DISK_RW 1u /* open for writing */
#define DISK_SHARE 2u /* -U: take no locks */
#define DISK_DIRECT 4u /* O_DIRECT (cache=none) */
#define DISK_NO_BACKING 8u /* do not open the backing chain */

#define DISK_RUN_CACHE 512

struct disk {
	const char *path;
	enum disk_format format;
	struct qcow_image *img; /* qcow2 */
	int fd; /* raw */
	uint64_t size; /* virtual size */
	/* Runs of qcow_image_map, read ahead in batches. */
	struct qcow_map_run runs[DISK_RUN_CACHE];
	unsigned nruns, cur;
};

/* "raw", "qcow2" or NULL (probe by magic). Prints the error, returns
 * 0 or -errno. */
int disk_open(struct disk *d, struct tool *t, const char *path, const char *fmt,
	      unsigned flags);
/* A qcow2 image whose top file goes through a caller's I/O backend. */
int disk_open_qcow2_io(struct disk *d, struct tool *t, const char *path,
		       unsigned flags, const struct qcow_io_ops *io,
		       void *io_opaque);
int disk_close(struct disk *d);
const char *disk_format_name(const struct disk *d);
/* Does the file start with the qcow2 magic? -errno if it cannot be read. */
int probe_is_qcow2(const char *path);
/* Check a -f/-F argument: NULL, "raw" or "qcow2"; prints the error. */
int check_format_name(const char *fmt, const char *path);

/* Read exactly len bytes (zeros past a raw file's end): 0 or -errno. */
int disk_pread(struct disk *d, void *buf, size_t len, uint64_t off);
int disk_pwrite(struct disk *d, const void *buf, size_t len, uint64_t off);
/* The run of equal allocation status starting at off (< size), in
 * qemu-img map's terms; run->length reaches to where the status changes
 * (or the end). 0 or -errno. */
int disk_status(struct disk *d, uint64_t off, struct qcow_map_run *run);
/* The last library message about d, or strerror. */
const char *disk_errmsg(const struct disk *d, int r);

/* buffer helpers */
bool tool_is_zero(const void *buf, size_t len);

/* cmd_create.c: qcow2/raw creation options, shared with convert */
struct create_spec {
	const char *fmt; /* "qcow2" or "raw" */
	struct kvlist o; /* -o options */
	struct qcow_create_opts q;
	enum qcow_prealloc prealloc;
	bool have_size;
	uint64_t size;
	uint64_t cluster_size; /* as asked for, 0 if not */
	uint64_t refcount_bits; /* as asked for, 0 if not */
};

/* Parse spec->o into spec->q; prints the error and returns 1 on bad
 * input, before anything is printed on stdout. */
int create_spec_parse(struct create_spec *spec, const char *path);
/* Print qemu-img's "Formatting ..." line. */
void create_spec_print(const struct create_spec *spec, const char *path);
/* Check the combination, as qemu does after printing; then create. */
int create_spec_run(struct create_spec *spec, struct tool *t, const char *path);

/* The commands. */
int cmd_create(struct tool *t, int argc, char **argv);
int cmd_info(struct tool *t, int argc, char **argv);
int cmd_check(struct tool *t, int argc, char **argv);
int cmd_map(struct tool *t, int argc, char **argv);
int cmd_compare(struct tool *t, int argc, char **argv);
int cmd_convert(struct tool *t, int argc, char **argv);
int cmd_resize(struct tool *t, int argc, char **argv);
int cmd_bench(struct tool *t, int argc, char **argv);
int cmd_discard(struct tool *t, int argc, char **argv);
int cmd_compact(struct tool *t, int argc, char **argv);

#endif
