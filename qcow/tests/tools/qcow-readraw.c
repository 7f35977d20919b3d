/* SPDX-License-Identifier: MIT */
/*
 * qcow-readraw: copy the whole virtual disk of a qcow2 image, read through
 * libqcow (backing chain included), to a raw file.
 *
 * The end-to-end tests compare its output byte for byte with what
 * `qemu-img convert -O raw` makes of the same image: qemu is the oracle for
 * every image qemu-img and qemu-io wrote. All-zero chunks are skipped with
 * lseek, so the output is sparse but reads back identically.
 *
 * Usage: qcow-readraw [--no-backing] IMAGE OUT.raw
 * Exit status: 0 on success, 1 with the library's message on stderr on any
 * failure, 2 on bad usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <qcow/qcow.h>

#define CHUNK (1u << 20)

static const char *prog = "qcow-readraw";

static void log_to_stderr(void *opaque, enum qcow_log_level level,
			  const char *msg)
{
	static const char *const names[] = { "error", "warning", "info",
					     "debug" };

	(void)opaque;
	if (level <= QCOW_LOG_WARN)
		fprintf(stderr, "%s: %s: %s\n", prog, names[level], msg);
}

static bool all_zero(const unsigned char *p, size_t n)
{
	return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

static int write_all(int fd, const unsigned char *p, size_t n, uint64_t off)
{
	while (n > 0) {
		ssize_t w = pwrite(fd, p, n, (off_t)off);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
		off += (uint64_t)w;
	}
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: %s [--no-backing] IMAGE OUT.raw\n", prog);
	exit(2);
}

int main(int argc, char **argv)
{
	struct qcow_open_opts opts = { 0 };
	struct qcow_error err = { 0 };
	struct qcow_image *img;
	unsigned char *buf;
	const char *image, *out;
	uint64_t size, off;
	int argi = 1, fd, ret, status = 1;

	if (argi < argc && strcmp(argv[argi], "--no-backing") == 0) {
		opts.no_backing = true;
		argi++;
	}
	if (argc - argi != 2)
		usage();
	image = argv[argi];
	out = argv[argi + 1];

	opts.log.fn = log_to_stderr;
	ret = qcow_image_open(&img, image, &opts, &err);
	if (ret < 0) {
		fprintf(stderr, "%s: %s: %s\n", prog, image,
			err.msg[0] ? err.msg : strerror(-ret));
		return 1;
	}

	buf = malloc(CHUNK);
	if (!buf) {
		fprintf(stderr, "%s: out of memory\n", prog);
		goto out_close_image;
	}
	fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) {
		fprintf(stderr, "%s: %s: %s\n", prog, out, strerror(errno));
		goto out_free_buf;
	}

	size = qcow_image_size(img);
	for (off = 0; off < size; off += CHUNK) {
		size_t n = size - off < CHUNK ? (size_t)(size - off) : CHUNK;
		ssize_t r = qcow_image_pread(img, buf, n, off);

		if (r < 0) {
			const char *msg = qcow_image_errmsg(img);

			fprintf(stderr, "%s: %s: read at %llu: %s\n", prog,
				image, (unsigned long long)off,
				msg[0] ? msg : strerror((int)-r));
			goto out_close_fd;
		}
		if ((size_t)r != n) {
			fprintf(stderr,
				"%s: %s: short read at %llu: %zd of %zu\n",
				prog, image, (unsigned long long)off, r, n);
			goto out_close_fd;
		}
		if (all_zero(buf, n))
			continue;
		ret = write_all(fd, buf, n, off);
		if (ret < 0) {
			fprintf(stderr, "%s: %s: %s\n", prog, out,
				strerror(-ret));
			goto out_close_fd;
		}
	}
	if (ftruncate(fd, (off_t)size) < 0) {
		fprintf(stderr, "%s: %s: %s\n", prog, out, strerror(errno));
		goto out_close_fd;
	}
	status = 0;

out_close_fd:
	if (close(fd) < 0 && status == 0) {
		fprintf(stderr, "%s: %s: %s\n", prog, out, strerror(errno));
		status = 1;
	}
out_free_buf:
	free(buf);
out_close_image:
	ret = qcow_image_close(img);
	if (ret < 0 && status == 0) {
		fprintf(stderr, "%s: %s: close: %s\n", prog, image,
			strerror(-ret));
		status = 1;
	}
	return status;
}
