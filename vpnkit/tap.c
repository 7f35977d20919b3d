// SPDX-License-Identifier: MIT
/*
 * TAP devices with virtio-net headers (see vpnkit/tap.h).
 *
 * Network namespaces are per thread in Linux: setns(CLONE_NEWNET) moves
 * only the calling thread. A TAP device belongs to the namespace of the
 * thread that opened /dev/net/tun, and an MTU ioctl acts in the namespace
 * of the socket it is made on. So the whole opening runs on a helper
 * thread that enters the target namespace first and then simply ends;
 * the descriptor it made stays valid in the caller's process while the
 * caller never leaves its own namespace. Without a namespace the same
 * function runs on the caller's thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/if_tun.h>

#include "vpnkit/tap.h"
#include "vpnkit/vpnkit.h"

_Static_assert(sizeof(struct vpnkit_offload) == VPNKIT_TAP_VNET_HDR_LEN,
	       "struct vpnkit_offload is struct virtio_net_hdr");

struct tap_request {
	const char *name;
	const char *netns_path;
	unsigned mtu;
	int fd; /* result */
	int ret; /* offloads, or -errno */
};

static int tap_set_mtu(const char *name, unsigned mtu)
{
	struct ifreq ifr;
	int s, ret = 0;

	s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	memset(&ifr, 0, sizeof(ifr));
	memcpy(ifr.ifr_name, name, strlen(name));
	ifr.ifr_mtu = (int)mtu;
	if (ioctl(s, SIOCSIFMTU, &ifr) < 0)
		ret = -errno;
	close(s);
	return ret;
}

/* Open the device in the current thread's namespace. */
static void tap_open_here(struct tap_request *req)
{
	struct ifreq ifr;
	int fd, hdr_len = VPNKIT_TAP_VNET_HDR_LEN, ret;
	unsigned offloads;

	req->fd = -1;
	fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		req->ret = -errno;
		return;
	}
	memset(&ifr, 0, sizeof(ifr));
	memcpy(ifr.ifr_name, req->name, strlen(req->name));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if (ioctl(fd, TUNSETIFF, &ifr) < 0)
		goto fail;
	if (ioctl(fd, TUNSETVNETHDRSZ, &hdr_len) < 0)
		goto fail;
	offloads = VPNKIT_TAP_CSUM | VPNKIT_TAP_TSO;
	if (ioctl(fd, TUNSETOFFLOAD,
		  (unsigned long)(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)) < 0) {
		offloads = VPNKIT_TAP_CSUM;
		if (ioctl(fd, TUNSETOFFLOAD, (unsigned long)TUN_F_CSUM) < 0) {
			offloads = 0;
			if (ioctl(fd, TUNSETOFFLOAD, 0UL) < 0)
				goto fail;
		}
	}
	if (req->mtu != 0) {
		ret = tap_set_mtu(ifr.ifr_name, req->mtu);
		if (ret < 0) {
			close(fd);
			req->ret = ret;
			return;
		}
	}
	req->fd = fd;
	req->ret = (int)offloads;
	return;
fail:
	req->ret = -errno;
	close(fd);
}

static void *tap_open_thread(void *arg)
{
	struct tap_request *req = arg;
	int ns;

	ns = open(req->netns_path, O_RDONLY | O_CLOEXEC);
	if (ns < 0) {
		req->ret = -errno;
		return NULL;
	}
	if (setns(ns, CLONE_NEWNET) < 0) {
		req->ret = -errno;
		close(ns);
		return NULL;
	}
	close(ns);
	tap_open_here(req);
	return NULL;
}

int vpnkit_tap_open(const char *name, const char *netns_path, unsigned mtu,
		    int *fd_out)
{
	struct tap_request req = {
		.name = name,
		.netns_path = netns_path,
		.mtu = mtu,
		.fd = -1,
		.ret = -EINVAL,
	};
	pthread_t th;
	int ret;

	*fd_out = -1;
	if (!name || name[0] == '\0' || strlen(name) >= IFNAMSIZ ||
	    strchr(name, '/') || mtu > 65535 || (mtu != 0 && mtu < 68))
		return -EINVAL;
	if (!netns_path) {
		tap_open_here(&req);
	} else {
		ret = pthread_create(&th, NULL, tap_open_thread, &req);
		if (ret != 0)
			return -ret;
		pthread_join(th, NULL);
	}
	if (req.ret < 0)
		return req.ret;
	*fd_out = req.fd;
	return req.ret;
}
