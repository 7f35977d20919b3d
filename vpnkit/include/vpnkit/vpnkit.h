/* SPDX-License-Identifier: MIT */
/*
 * libvpnkit: a virtual Ethernet switch whose far side is the host's own
 * sockets. A VM's frames go in; each TCP, UDP or ICMP flow they carry
 * becomes an ordinary host socket, so the host's routes, VPNs and firewall
 * apply as to any program. Frames for the VM come out through a callback.
 *
 * An instance (struct vpnkit) is one switch with one subnet, a gateway
 * that answers ARP, DHCP, NDP/RA and DNS, and a flow table. VMs attach as
 * ports (struct vpnkit_port), each with its own MAC and IP; a UUID keeps
 * its MAC and IP across reconnects while the instance lives.
 *
 * The instance owns an epoll loop. Run it with vpnkit_run_once(), or poll
 * vpnkit_fd() from your own loop and call vpnkit_run_once(vk, 0) when it is
 * readable. Embedders add their own descriptors (transports) to the same
 * loop with vpnkit_watch().
 *
 * Errors: functions return 0 (or a count) on success and -errno on
 * failure. Nothing here exits, aborts or prints; messages go to the
 * config's logger. Threading: an instance and its ports belong to one
 * thread, the one that runs the loop (DNS host mode uses an internal
 * worker thread, invisible to callers).
 */
#ifndef VPNKIT_VPNKIT_H
#define VPNKIT_VPNKIT_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "base/log.h"

struct vpnkit;
struct vpnkit_port;

enum vpnkit_dns_mode {
	VPNKIT_DNS_FORWARD, /* relay raw messages to resolv.conf's servers */
	VPNKIT_DNS_HOST, /* answer A/AAAA through getaddrinfo() */
	VPNKIT_DNS_OFF, /* no DNS at the gateway */
};

/* A name the gateway's DNS answers itself. */
struct vpnkit_name {
	const char *name; /* e.g. "host.docker.internal" */
	struct in_addr ip4; /* INADDR_ANY: no A record */
	struct in6_addr ip6; /* all zero: no AAAA record */
};

#define VPNKIT_MAX_NAMES 32

struct vpnkit_config {
	/* IPv4 side; addresses in network byte order. */
	struct in_addr subnet; /* 192.168.65.0 */
	unsigned prefix_len; /* 24 */
	struct in_addr gateway; /* 192.168.65.1: ARP, DHCP, DNS */
	struct in_addr host_ip; /* 192.168.65.2 -> host 127.0.0.1; 0: off */
	struct in_addr pool_first; /* DHCP pool: .3 */
	struct in_addr pool_last; /* .254 */
	/* IPv6 side: a /64 announced by router advertisements (SLAAC). */
	bool ipv6; /* true */
	struct in6_addr prefix6; /* fd00:6e6b:7600:1::/64 (unique local) */
	/* prefix6::1 is the gateway and DNS; prefix6::2 maps to host ::1 */
	unsigned mtu; /* 1500; 576..65520 */
	/* DNS */
	enum vpnkit_dns_mode dns_mode; /* VPNKIT_DNS_FORWARD */
	const char *resolv_conf; /* "/etc/resolv.conf" */
	const char *domain; /* DHCP option 15; NULL: none */
	const char *search; /* space-separated list, DHCP option 119 */
	/* Extra names; host.docker.internal, host.containers.internal and
	 * gateway.docker.internal are always there (unless host_ip is 0). */
	struct vpnkit_name names[VPNKIT_MAX_NAMES];
	unsigned n_names;
	/* Limits */
	unsigned max_flows; /* TCP + UDP + ICMP flows at once: 8192 */
	unsigned max_fds; /* host sockets at once: 4096 */
	unsigned tcp_idle_s; /* established TCP with no traffic: 7200 */
	unsigned udp_idle_s; /* 60 */
	unsigned icmp_idle_s; /* 30 */
	unsigned lease_s; /* DHCP lease: 7200 */
	/* Diagnostics */
	const char *pcap_path; /* NULL: no capture */
	struct logger log;
};

/* Fill cfg with the defaults noted above. */
void vpnkit_config_init(struct vpnkit_config *cfg);

/*
 * Create an instance. cfg is copied (strings too). Returns 0 and sets *out,
 * or -errno (-EINVAL for an inconsistent config, with a logged reason).
 */
int vpnkit_new(const struct vpnkit_config *cfg, struct vpnkit **out);

/* Close every flow and port and free the instance. NULL is a no-op. */
void vpnkit_free(struct vpnkit *vk);

/* The loop's epoll descriptor: readable when vpnkit_run_once has work. */
int vpnkit_fd(const struct vpnkit *vk);

/*
 * Wait up to timeout_ms (-1: forever, 0: don't wait) for events, handle
 * them, run timers. Returns 0 or -errno (-EINTR when a signal arrived).
 */
int vpnkit_run_once(struct vpnkit *vk, int timeout_ms);

/*
 * Embedders' descriptors in the same loop. cb runs from vpnkit_run_once
 * with the epoll events (EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP). events
 * may be changed with vpnkit_watch_mod. The caller keeps the fd and must
 * vpnkit_unwatch it before closing it.
 */
typedef void vpnkit_watch_fn(void *opaque, uint32_t events);
int vpnkit_watch(struct vpnkit *vk, int fd, uint32_t events,
		 vpnkit_watch_fn *cb, void *opaque);
int vpnkit_watch_mod(struct vpnkit *vk, int fd, uint32_t events);
void vpnkit_unwatch(struct vpnkit *vk, int fd);

/* ---------------------------------------------------------------- ports */

/*
 * Offload metadata carried with a frame, laid out and numbered exactly as
 * struct virtio_net_hdr (host byte order): a TAP device with IFF_VNET_HDR
 * and a virtio-net device pass it straight through.
 */
struct vpnkit_offload {
	uint8_t flags; /* VPNKIT_OFFLOAD_* */
	uint8_t gso_type; /* VPNKIT_GSO_* */
	uint16_t hdr_len; /* bytes of headers before the payload */
	uint16_t gso_size; /* payload bytes per segment */
	uint16_t csum_start; /* checksum covers frame[csum_start..] */
	uint16_t csum_offset; /* and is stored at csum_start + csum_offset */
};

#define VPNKIT_OFFLOAD_NEEDS_CSUM 1 /* checksum is partial: finish it */
#define VPNKIT_OFFLOAD_DATA_VALID 2 /* checksum already verified */
#define VPNKIT_GSO_NONE 0
#define VPNKIT_GSO_TCPV4 1
#define VPNKIT_GSO_UDP 3
#define VPNKIT_GSO_TCPV6 4
#define VPNKIT_GSO_ECN 0x80

/* Port flags */
#define VPNKIT_PORT_OFFLOAD 1u /* the link takes and gives offload info:
				* partial checksums and TCP segments up to
				* 64 KiB, segmented by the receiver */

struct vpnkit_port_ops {
	/*
	 * Hand one Ethernet frame (no FCS) to the VM. off is NULL unless the
	 * port was made with VPNKIT_PORT_OFFLOAD. Return 0 once the frame is
	 * taken (copied or written), -EAGAIN if the link is full (the frame
	 * is not taken; call vpnkit_port_resume() when it drains), or another
	 * -errno if the link is broken.
	 */
	int (*send)(void *opaque, const struct vpnkit_offload *off,
		    const struct iovec *iov, int iovcnt);
	/* End of a batch of send calls: write out what is queued. May be
	 * NULL. */
	void (*flush)(void *opaque);
};

struct vpnkit_port_config {
	const char *uuid; /* NULL or "": a fresh identity */
	struct in_addr preferred_ip; /* 0: any address from the pool */
	unsigned flags; /* VPNKIT_PORT_* */
};

/*
 * Attach a VM. The port gets the MAC and IP its UUID had before, or new
 * ones. Returns 0, -EADDRINUSE if preferred_ip belongs to another UUID or
 * an attached port, -ERANGE if it is outside the pool, -ENOSPC if the pool
 * is exhausted. A UUID already attached is -EBUSY.
 */
int vpnkit_port_new(struct vpnkit *vk, const struct vpnkit_port_config *cfg,
		    const struct vpnkit_port_ops *ops, void *opaque,
		    struct vpnkit_port **out);

/* Detach: closes the port's flows at once (host sockets included). */
void vpnkit_port_free(struct vpnkit_port *port);

/* The MAC the VM should use, and its IPv4 address (network order). */
void vpnkit_port_mac(const struct vpnkit_port *port, uint8_t mac[6]);
struct in_addr vpnkit_port_ip(const struct vpnkit_port *port);
const char *vpnkit_port_uuid(const struct vpnkit_port *port);

/*
 * A frame from the VM. off may be NULL (a plain frame). The frame is only
 * read during the call. Malformed frames are dropped and counted; the
 * return value is 0 unless the port is broken.
 */
int vpnkit_port_input(struct vpnkit_port *port,
		      const struct vpnkit_offload *off, const void *frame,
		      size_t len);

/* The link drained after send returned -EAGAIN: carry on sending. */
void vpnkit_port_resume(struct vpnkit_port *port);

/* ---------------------------------------------------------------- forwards */

/* A port forward from the host into a VM. */
struct vpnkit_forward {
	int proto; /* IPPROTO_TCP or IPPROTO_UDP */
	struct sockaddr_storage host; /* listening address on the host */
	struct sockaddr_storage guest; /* the VM's address and port */
};

/*
 * Parse "tcp:HOSTIP:HOSTPORT:GUESTIP:GUESTPORT" (or udp:), with IPv6
 * addresses in brackets: "tcp:[::1]:8080:[fd00::3]:80". Returns 0 or
 * -EINVAL.
 */
int vpnkit_forward_parse(const char *spec, struct vpnkit_forward *out);

/* The same form back; returns the length, or -ENOSPC. */
int vpnkit_forward_format(const struct vpnkit_forward *fwd, char *buf,
			  size_t size);

/*
 * Listen on the host address and carry connections (or datagrams) to the
 * guest address. Returns 0, -EEXIST if a forward on that host address and
 * protocol exists, or the bind error (-EADDRINUSE, -EACCES).
 */
int vpnkit_forward_add(struct vpnkit *vk, const struct vpnkit_forward *fwd);

/*
 * Stop a forward: its host port is closed before this returns, and the
 * connections it made are reset. Returns 0 or -ENOENT.
 */
int vpnkit_forward_remove(struct vpnkit *vk, int proto,
			  const struct sockaddr *host);

/* Copy up to max forwards to out; returns how many there are in all. */
size_t vpnkit_forward_list(const struct vpnkit *vk,
			   struct vpnkit_forward *out, size_t max);

/* ---------------------------------------------------------------- stats */

struct vpnkit_stats {
	uint64_t frames_in, frames_out; /* from and to VMs */
	uint64_t bytes_in, bytes_out;
	uint64_t dropped; /* frames dropped for any reason */
	uint64_t bad; /* of which malformed (lengths, checksums, options) */
	uint64_t refused; /* flows refused by a limit */
	unsigned ports;
	unsigned tcp_flows, udp_flows, icmp_flows;
	unsigned fds; /* host descriptors the flows hold */
};

void vpnkit_stats_get(const struct vpnkit *vk, struct vpnkit_stats *out);

#endif
