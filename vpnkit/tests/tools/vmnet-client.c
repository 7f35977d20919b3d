// SPDX-License-Identifier: MIT
/*
 * vmnet-client: the client side of hyperkit's VMN3T protocol, for tests.
 *
 *   vmnet-client --socket PATH [--uuid U] [--preferred-ip IP] --print-vif
 *   vmnet-client --socket PATH [--uuid U] [--preferred-ip IP] --bridge-qemu QPATH
 *
 * Both connect to a vpnkit stream socket and do the handshake as
 * hyperkit's virtio-vpnkit device does (init, command, response).
 * --print-vif prints "mtu=N max_packet_size=N mac=xx:xx:xx:xx:xx:xx" and
 * exits 0, or prints "disconnect: REASON" and exits 1. --bridge-qemu also
 * connects to QEMU's "-netdev stream,server=on,addr.type=unix,
 * addr.path=QPATH" socket and relays frames both ways, u16 LE lengths on
 * vpnkit's side and u32 BE lengths on QEMU's, until either side closes
 * (exit 0) or breaks its framing (exit 1). So a QEMU guest reaches vpnkit
 * through hyperkit's protocol. Frames larger than the VIF's
 * max_packet_size are dropped, as hyperkit would refuse them.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <base/endian.h>

#include "vpnkit/vmnet.h"

#define PROG "vmnet-client"
#define BUF_SIZE (256 * 1024)

static void usage(FILE *f)
{
	fprintf(f, "usage: " PROG
		   " --socket PATH [--uuid UUID] [--preferred-ip IP] MODE\n"
		   "MODE is --print-vif or --bridge-qemu QEMU_SOCKET_PATH\n");
}

static int unix_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, PROG ": %s: path too long\n", path);
		return -1;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, PROG ": connect %s: %s\n", path,
			strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Read exactly len bytes; 0 on success, -1 on error or early EOF. */
static int read_all(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int handshake(int fd, const char *uuid, const char *preferred_ip,
		     struct vpnkit_vmnet_response *resp)
{
	uint8_t init[VPNKIT_VMNET_INIT_SIZE];
	uint8_t cmd_buf[VPNKIT_VMNET_COMMAND_SIZE];
	uint8_t rbuf[VPNKIT_VMNET_RESPONSE_SIZE];
	struct vpnkit_vmnet_init peer;
	struct vpnkit_vmnet_command cmd = { .type = VPNKIT_VMNET_ETHERNET };
	int r;

	if (uuid) {
		if (strlen(uuid) != VPNKIT_VMNET_UUID_LEN) {
			fprintf(stderr, PROG ": --uuid: '%s' is not a UUID\n",
				uuid);
			return -1;
		}
		memcpy(cmd.uuid, uuid, VPNKIT_VMNET_UUID_LEN + 1);
	}
	if (preferred_ip) {
		cmd.type = VPNKIT_VMNET_PREFERRED_IPV4;
		if (inet_pton(AF_INET, preferred_ip, &cmd.ip) != 1) {
			fprintf(stderr,
				PROG ": --preferred-ip: '%s' is not IPv4\n",
				preferred_ip);
			return -1;
		}
	}
	if (vpnkit_vmnet_command_encode(cmd_buf, &cmd) < 0) {
		fprintf(stderr, PROG ": --uuid: '%s' is not a UUID\n", uuid);
		return -1;
	}
	vpnkit_vmnet_init_encode(init, VPNKIT_VMNET_VERSION, NULL);
	if (write_all(fd, init, sizeof(init)) < 0 ||
	    read_all(fd, init, sizeof(init)) < 0) {
		fprintf(stderr, PROG ": init exchange failed\n");
		return -1;
	}
	r = vpnkit_vmnet_init_decode(init, sizeof(init), &peer);
	if (r == -EPROTONOSUPPORT) {
		fprintf(stderr, PROG ": warning: server speaks version %u\n",
			peer.version);
	} else if (r < 0) {
		fprintf(stderr, PROG ": bad init from the server\n");
		return -1;
	}
	if (write_all(fd, cmd_buf, sizeof(cmd_buf)) < 0 ||
	    read_all(fd, rbuf, sizeof(rbuf)) < 0) {
		fprintf(stderr, PROG ": command exchange failed\n");
		return -1;
	}
	r = vpnkit_vmnet_response_decode(rbuf, sizeof(rbuf), resp);
	if (r < 0) {
		fprintf(stderr, PROG ": bad response from the server: %s\n",
			strerror(-r));
		return -1;
	}
	return 0;
}

/*
 * One direction of the bridge: read what fd has into *len bytes of buf,
 * then move every whole frame to out with the other framing. Returns 0,
 * 1 at EOF, -1 on error.
 */
static int relay(int in, int out, uint8_t *buf, size_t *len, bool from_le16,
		 unsigned max_frame)
{
	size_t hlen = from_le16 ? 2 : 4, pos = 0;
	ssize_t n;

	n = read(in, buf + *len, BUF_SIZE - *len);
	if (n < 0)
		return errno == EINTR || errno == EAGAIN ? 0 : -1;
	if (n == 0)
		return 1;
	*len += (size_t)n;
	while (*len - pos >= hlen) {
		uint32_t flen = from_le16 ? load_le16(buf + pos) :
					    load_be32(buf + pos);
		uint8_t hdr[4];
		size_t out_hlen;

		if (flen > 65535) {
			fprintf(stderr, PROG ": frame length %u\n", flen);
			return -1;
		}
		if (*len - pos - hlen < flen)
			break;
		if (flen <= max_frame) {
			if (from_le16) {
				store_be32(hdr, flen);
				out_hlen = 4;
			} else {
				store_le16(hdr, (uint16_t)flen);
				out_hlen = 2;
			}
			if (write_all(out, hdr, out_hlen) < 0 ||
			    write_all(out, buf + pos + hlen, flen) < 0)
				return -1;
		}
		pos += hlen + flen;
	}
	memmove(buf, buf + pos, *len - pos);
	*len -= pos;
	return 0;
}

static int bridge(int vfd, const char *qemu_path, unsigned max_frame)
{
	uint8_t *vbuf = malloc(BUF_SIZE), *qbuf = malloc(BUF_SIZE);
	size_t vlen = 0, qlen = 0;
	int qfd = -1, r = -1;

	if (!vbuf || !qbuf)
		goto out;
	qfd = unix_connect(qemu_path);
	if (qfd < 0)
		goto out;
	for (;;) {
		struct pollfd p[2] = {
			{ .fd = vfd, .events = POLLIN },
			{ .fd = qfd, .events = POLLIN },
		};

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			r = -1;
			break;
		}
		if (p[0].revents) {
			r = relay(vfd, qfd, vbuf, &vlen, true, 65535);
			if (r)
				break;
		}
		if (p[1].revents) {
			r = relay(qfd, vfd, qbuf, &qlen, false, max_frame);
			if (r)
				break;
		}
	}
out:
	if (qfd >= 0)
		close(qfd);
	free(vbuf);
	free(qbuf);
	return r < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "uuid", required_argument, NULL, 'u' },
		{ "preferred-ip", required_argument, NULL, 'i' },
		{ "print-vif", no_argument, NULL, 'p' },
		{ "bridge-qemu", required_argument, NULL, 'b' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *sock = NULL, *uuid = NULL, *ip = NULL, *qemu = NULL;
	struct vpnkit_vmnet_response resp;
	bool print = false;
	int c, fd, status;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			sock = optarg;
			break;
		case 'u':
			uuid = optarg;
			break;
		case 'i':
			ip = optarg;
			break;
		case 'p':
			print = true;
			break;
		case 'b':
			qemu = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!sock || optind != argc || print == !!qemu) {
		usage(stderr);
		return 2;
	}
	fd = unix_connect(sock);
	if (fd < 0)
		return 1;
	if (handshake(fd, uuid, ip, &resp) < 0) {
		close(fd);
		return 1;
	}
	if (resp.type == VPNKIT_VMNET_DISCONNECT) {
		printf("disconnect: %s\n", resp.reason);
		close(fd);
		return 1;
	}
	if (print) {
		printf("mtu=%u max_packet_size=%u mac=%02x:%02x:%02x:%02x:%02x:%02x\n",
		       resp.mtu, resp.max_packet_size, resp.mac[0], resp.mac[1],
		       resp.mac[2], resp.mac[3], resp.mac[4], resp.mac[5]);
		close(fd);
		return 0;
	}
	status = bridge(fd, qemu, resp.max_packet_size);
	close(fd);
	return status;
}
