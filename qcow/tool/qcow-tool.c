// SPDX-License-Identifier: MIT
/*
 * qcow-tool: create, inspect, check, convert and shrink qcow2 images.
 *
 * The commands qemu-img also has (create, info, check, map, compare,
 * convert, resize, bench) take qemu-img 7.2's options and print its text,
 * JSON and exit codes, so either tool can stand in for the other in a
 * script. Two more come from mirage/ocaml-qcow's qcow-tool, the one Docker
 * for Mac shipped: discard (release all-zero clusters) and compact (move
 * clusters down and shorten the file).
 *
 * This file dispatches to the commands (cmd_*.c), prints the help and
 * routes libqcow's log messages to stderr.
 */
#include <stdio.h>
#include <string.h>

#include "tool.h"

#define TOOL_VERSION "0.1"

struct command {
	const char *name;
	int (*fn)(struct tool *t, int argc, char **argv);
	const char *syntax;
};

static const struct command commands[] = {
	{ "bench", cmd_bench,
	  "bench [-c count] [-d depth] [-f fmt] [--flush-interval=flush_interval] "
	  "[-i aio] [-n] [--no-drain] [-o offset] [--pattern=pattern] [-q] "
	  "[-s buffer_size] [-S step_size] [-t cache] [-w] [-U] filename" },
	{ "check", cmd_check,
	  "check [-q] [-f fmt] [--output=ofmt] [-r [leaks | all]] [-T src_cache] "
	  "[-U] filename" },
	{ "compact", cmd_compact, "compact [-q] filename" },
	{ "compare", cmd_compare,
	  "compare [-f fmt] [-F fmt] [-T src_cache] [-p] [-q] [-s] [-U] "
	  "filename1 filename2" },
	{ "convert", cmd_convert,
	  "convert [-U] [-c] [-p] [-q] [-n] [-f fmt] [-t cache] [-T src_cache] "
	  "[-O output_fmt] [-B backing_file [-F backing_fmt]] [-o options] "
	  "[-S sparse_size] [-m num_coroutines] [-W] filename output_filename" },
	{ "create", cmd_create,
	  "create [-q] [-f fmt] [-b backing_file [-F backing_fmt]] [-u] "
	  "[-o options] filename [size]" },
	{ "discard", cmd_discard, "discard [-q] filename" },
	{ "info", cmd_info,
	  "info [-f fmt] [--output=ofmt] [--backing-chain] [-U] filename" },
	{ "map", cmd_map,
	  "map [-f fmt] [--start-offset=offset] [--max-length=len] "
	  "[--output=ofmt] [-U] filename" },
	{ "resize", cmd_resize,
	  "resize [-f fmt] [--preallocation=prealloc] [-q] [--shrink] "
	  "filename [+ | -]size" },
};

void tool_help(FILE *f)
{
	fprintf(f,
		"%s version " TOOL_VERSION "\n"
		"usage: %s [-h | --help | -V | --version] command [command options]\n"
		"Create, inspect, check, convert and shrink qcow2 disk images.\n"
		"Commands that qemu-img also has take its options and print its output.\n"
		"\n"
		"Command syntax:\n",
		TOOL_NAME, TOOL_NAME);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %s\n", commands[i].syntax);
	fprintf(f,
		"  help\n"
		"\n"
		"Command parameters:\n"
		"  'filename' is a disk image filename\n"
		"  'fmt' is the disk image format, 'qcow2' or 'raw'; it is guessed\n"
		"    from the file's contents when not given. create makes qcow2\n"
		"    images unless told otherwise, convert writes raw unless -O qcow2\n"
		"  'cache' is the cache mode: 'none' (O_DIRECT), 'writeback' (the\n"
		"    default), 'writethrough', 'directsync' or 'unsafe'\n"
		"  'size' is the disk image size in bytes. Optional suffixes 'k' or 'K'\n"
		"    (kilobyte, 1024), 'M' (megabyte, 1024k), 'G' (gigabyte, 1024M),\n"
		"    'T' (terabyte, 1024G), 'P' (petabyte, 1024T) and 'E' (exabyte,\n"
		"    1024P) are supported. 'b' is ignored.\n"
		"  'options' is a comma separated list of name=value options; '-o help'\n"
		"    lists those of create and convert\n"
		"  'output_fmt' is the destination format, 'qcow2' or 'raw'\n"
		"  '-c' writes compressed clusters (convert to qcow2 only)\n"
		"  '-u' creates an image without opening its backing file\n"
		"  '-p' shows progress; '-q' prints nothing but errors\n"
		"  '-U' opens images without taking locks (read-only use)\n"
		"  '--output' is 'human' (the default) or 'json'\n"
		"\n"
		"  check -r leaks repairs leaked clusters only, -r all every error;\n"
		"    exit status 0 clean, 1 check failed, 2 corruptions, 3 leaks only,\n"
		"    63 the format cannot be checked\n"
		"  compare exits 0 if identical, 1 if the images differ, 2 on an open\n"
		"    error, 3 on a status error, 4 on a read error; -s is strict: sizes\n"
		"    and allocation must match too\n"
		"  discard releases every allocated cluster that holds only zeros\n"
		"  compact moves clusters towards the start of the file and shortens it\n");
}

void tool_log_fn(void *opaque, enum qcow_log_level level, const char *msg)
{
	const struct tool *t = opaque;

	/* Info and debug messages are for programs that want them. */
	if (level > QCOW_LOG_WARN)
		return;
	if (t->bare_warnings && level == QCOW_LOG_WARN)
		fprintf(stderr, "%s\n", msg);
	else
		fprintf(stderr, "%s: %s%s\n", TOOL_NAME,
			level == QCOW_LOG_WARN ? "warning: " : "", msg);
}

int main(int argc, char **argv)
{
	struct tool t = { 0 };
	const char *cmd;

	t.log.fn = tool_log_fn;
	t.log.opaque = &t;

	if (argc < 2)
		return tool_usage_err("Not enough arguments");
	cmd = argv[1];
	if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") ||
	    !strcmp(cmd, "help")) {
		tool_help(stdout);
		return 0;
	}
	if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version")) {
		printf("%s version " TOOL_VERSION "\n", TOOL_NAME);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (!strcmp(cmd, commands[i].name))
			return commands[i].fn(&t, argc - 1, argv + 1);
	}
	return tool_usage_err("Command not found: %s", cmd);
}
