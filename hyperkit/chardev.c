// SPDX-License-Identifier: MIT
/*
 * Character backends of the guest's consoles (see chardev.h): stdio in
 * raw mode, a new pseudo-terminal, or a path (a tty read-write, or a file
 * that receives the output).
 */
#include "chardev.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void set_raw(struct hk_chardev *c, int fd)
{
	struct termios t;

	if (!isatty(fd) || tcgetattr(fd, &c->saved_tty) < 0)
		return;
	t = c->saved_tty;
	cfmakeraw(&t);
	t.c_oflag |= OPOST | ONLCR; /* keep our own messages readable */
	if (tcsetattr(fd, TCSANOW, &t) == 0)
		c->restore_tty = true;
}

static int open_pty(struct hk_chardev *c, const struct logger *lg)
{
	int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC), err;
	const char *name;
	struct termios t;

	if (m < 0 || grantpt(m) < 0 || unlockpt(m) < 0 ||
	    !(name = ptsname(m))) {
		err = -errno;
		logger_printf(lg, LOG_LEVEL_ERR, "autopty: %s", strerror(-err));
		if (m >= 0)
			close(m);
		return err;
	}
	snprintf(c->path, sizeof(c->path), "%s", name);
	c->pty_slave = open(c->path, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (c->pty_slave >= 0 && tcgetattr(c->pty_slave, &t) == 0) {
		cfmakeraw(&t);
		tcsetattr(c->pty_slave, TCSANOW, &t);
	}
	fcntl(m, F_SETFL, O_NONBLOCK);
	c->in_fd = c->out_fd = m;
	c->own_in = true;
	return 0;
}

static int open_path(struct hk_chardev *c, const char *backend,
		     const struct logger *lg)
{
	struct stat st;
	int fd, err;

	if (stat(backend, &st) == 0 && S_ISCHR(st.st_mode)) {
		fd = open(backend, O_RDWR | O_NOCTTY | O_CLOEXEC);
		if (fd >= 0) {
			c->in_fd = c->out_fd = fd;
			c->own_in = true;
			set_raw(c, fd);
		}
	} else {
		fd = open(backend, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
			  0644);
		if (fd >= 0) {
			c->out_fd = fd;
			c->own_out = true;
		}
	}
	if (fd < 0) {
		err = -errno;
		logger_printf(lg, LOG_LEVEL_ERR, "console backend %s: %s",
			      backend, strerror(-err));
		return err;
	}
	snprintf(c->path, sizeof(c->path), "%s", backend);
	return 0;
}

/* autopty=LINK: a symbolic link to the pty, never over anything else. */
static int pty_link(struct hk_chardev *c, const char *link,
		    const struct logger *lg)
{
	struct stat st;
	int err;

	if (!*link) {
		logger_printf(lg, LOG_LEVEL_ERR, "autopty=: no link path");
		return -EINVAL;
	}
	if (lstat(link, &st) == 0) {
		if (!S_ISLNK(st.st_mode)) {
			logger_printf(lg, LOG_LEVEL_ERR,
				      "autopty=%s: exists and is not a link",
				      link);
			return -EEXIST;
		}
		unlink(link);
	}
	if (symlink(c->path, link) < 0) {
		err = -errno;
		logger_printf(lg, LOG_LEVEL_ERR, "autopty=%s: %s", link,
			      strerror(-err));
		return err;
	}
	c->link = strdup(link);
	if (!c->link) {
		unlink(link);
		return -ENOMEM;
	}
	return 0;
}

int hk_chardev_open(struct hk_chardev *c, const char *backend,
		    const struct logger *lg)
{
	memset(c, 0, sizeof(*c));
	c->in_fd = c->out_fd = c->pty_slave = -1;
	if (!backend || !*backend)
		return -EINVAL;
	if (strcmp(backend, "stdio") == 0) {
		c->in_fd = STDIN_FILENO;
		c->out_fd = STDOUT_FILENO;
		set_raw(c, STDIN_FILENO);
		snprintf(c->path, sizeof(c->path), "stdio");
		return 0;
	}
	if (strcmp(backend, "autopty") == 0)
		return open_pty(c, lg);
	if (strncmp(backend, "autopty=", 8) == 0) {
		int err = open_pty(c, lg);

		if (!err)
			err = pty_link(c, backend + 8, lg);
		if (err)
			hk_chardev_close(c);
		return err;
	}
	return open_path(c, backend, lg);
}

void hk_chardev_close(struct hk_chardev *c)
{
	if (c->restore_tty)
		tcsetattr(c->in_fd, TCSANOW, &c->saved_tty);
	c->restore_tty = false;
	if (c->own_in && c->in_fd >= 0)
		close(c->in_fd);
	if (c->own_out && c->out_fd >= 0)
		close(c->out_fd);
	if (c->pty_slave >= 0)
		close(c->pty_slave);
	if (c->link) {
		unlink(c->link);
		free(c->link);
		c->link = NULL;
	}
	c->in_fd = c->out_fd = c->pty_slave = -1;
	c->own_in = c->own_out = false;
}

int hk_chardev_write(const struct hk_chardev *c, const void *buf, size_t len)
{
	const char *p = buf;

	if (c->out_fd < 0)
		return 0;
	while (len) {
		ssize_t r = write(c->out_fd, p, len);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN)
			return 0; /* dropped: nobody reads */
		if (r < 0)
			return -errno;
		p += r;
		len -= (size_t)r;
	}
	return 0;
}
