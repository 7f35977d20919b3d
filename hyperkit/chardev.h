/* SPDX-License-Identifier: MIT */
/*
 * Character backends shared by the guest's consoles (uart.c,
 * virtio_console.c): what `stdio`, `autopty` or a path means on the host.
 *
 *   stdio    our stdin and stdout; stdin is put in raw mode when it is a
 *            terminal and restored by hk_chardev_close
 *   autopty  a new pseudo-terminal; its name is in path (a client such as
 *            screen opens it); the device keeps the slave open so the pty
 *            never hangs up while nobody is attached
 *   autopty=LINK  the same, and a symbolic link LINK to it (hyperkit's
 *            way of giving the pty a stable name), replaced if it is a
 *            stale link and removed by hk_chardev_close
 *   PATH     a tty or character device opened read-write, else a file
 *            created (truncated) that receives the output only
 *
 * in_fd is -1 when there is no input, out_fd -1 when there is no output.
 * The fds are the device's to poll and use; close them only through
 * hk_chardev_close. Errors are -errno with a message logged.
 */
#ifndef HYPERKIT_CHARDEV_H
#define HYPERKIT_CHARDEV_H

#include <stdbool.h>
#include <stddef.h>
#include <termios.h>

#include "base/log.h"

struct hk_chardev {
	int in_fd, out_fd; /* -1: none */
	bool own_in, own_out; /* closed by hk_chardev_close */
	int pty_slave; /* kept open so the pty never hangs up */
	bool restore_tty;
	struct termios saved_tty;
	char path[128]; /* "stdio", the pty's name or the path */
	char *link; /* autopty=LINK: the link we made, to remove */
};

/* Open backend (see above) into c. Returns 0 or -errno (logged). */
int hk_chardev_open(struct hk_chardev *c, const char *backend,
		    const struct logger *lg);

/* Restore the terminal and close what was opened. Safe on a zeroed or
 * failed c only after hk_chardev_open set its fds (it always does). */
void hk_chardev_close(struct hk_chardev *c);

/* Write all of buf to the output, retrying on EINTR and short writes;
 * bytes that would block (a pty nobody reads) are dropped. Returns 0 or
 * -errno of a real failure (the caller logs it, rate-limited). */
int hk_chardev_write(const struct hk_chardev *c, const void *buf, size_t len);

#endif
