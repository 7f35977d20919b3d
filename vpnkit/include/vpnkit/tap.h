/* SPDX-License-Identifier: MIT */
/*
 * Opening a Linux TAP device as a vpnkit port's link.
 *
 * The device is opened with a virtio-net header in front of every frame
 * (IFF_VNET_HDR, 10 bytes: the layout of struct vpnkit_offload, in host
 * byte order), so that partial checksums and TCP segments of up to 64 KiB
 * cross the link without being split or summed on the way. Frames read
 * from the descriptor start with that header; frames written to it must
 * too. The descriptor is non-blocking.
 *
 * The device may live in another network namespace than the caller: the
 * opening happens on a short-lived helper thread that enters the
 * namespace, so the calling thread (and every host socket it opens later)
 * stays where it was. Addresses and link state are left to whoever owns
 * the namespace (the "guest" side); only the MTU is set here.
 *
 * Errors are -errno. Needs CAP_NET_ADMIN over the device's namespace (and
 * CAP_SYS_ADMIN to enter another one). Thread-safe.
 */
#ifndef VPNKIT_TAP_H
#define VPNKIT_TAP_H

/* What vpnkit_tap_open's device hands us ready-made (TUNSETOFFLOAD). */
#define VPNKIT_TAP_CSUM 1u /* frames with a partial checksum */
#define VPNKIT_TAP_TSO 2u /* TCP segments larger than the MTU (v4 and v6) */

/* Bytes of virtio-net header in front of every frame on the descriptor. */
#define VPNKIT_TAP_VNET_HDR_LEN 10

/*
 * Open TAP device name (created if missing; an existing persistent device
 * of that name is attached to), in the namespace at netns_path (a
 * /run/netns/NAME or /proc/PID/ns/net file; NULL: the caller's), with the
 * virtio-net header and the given MTU (0: leave it as it is). Offloads
 * are asked for (checksum, TSO for IPv4 and IPv6); if the kernel refuses
 * them the device is used without.
 *
 * On success stores a non-blocking, close-on-exec descriptor in *fd_out
 * and returns the offloads in effect (VPNKIT_TAP_CSUM | VPNKIT_TAP_TSO,
 * or 0: plain frames, still with the header). Otherwise returns -errno:
 * -EINVAL for a bad name or MTU, or what open, setns or the ioctls said.
 */
int vpnkit_tap_open(const char *name, const char *netns_path, unsigned mtu,
		    int *fd_out);

#endif
