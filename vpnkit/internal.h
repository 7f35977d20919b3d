/* SPDX-License-Identifier: MIT */
/*
 * libvpnkit's insides, shared by its files and by nothing else.
 *
 * A frame's path: vpnkit_port_input (core.c) checks the Ethernet header,
 * answers ARP (arp.c), parses the IP header into a struct vk_pkt (ip.c),
 * and hands the packet to the protocol: tcp.c, udp.c (which passes DHCP to
 * dhcp.c and gateway DNS to dns.c), icmp.c, ndp.c. Each flow is an entry
 * of one fixed table (flow.c) keyed by its addresses and ports, with the
 * host socket it drives; protocols keep their own state in the entry's
 * private area. Frames for a VM go out through vk_port_send (core.c),
 * which counts them, records them in the capture file and calls the
 * port's send callback.
 *
 * Addresses: both families are kept as struct in6_addr, IPv4 as
 * v4-mapped (::ffff:a.b.c.d), so that flows, keys and maps need one code
 * path. Everything here runs on the loop's thread.
 */
#ifndef VPNKIT_INTERNAL_H
#define VPNKIT_INTERNAL_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "base/log.h"
#include "vpnkit/vpnkit.h"

#define VK_ETH_HLEN 14
#define VK_ETH_ALEN 6
#define VK_ETHERTYPE_IP 0x0800
#define VK_ETHERTYPE_ARP 0x0806
#define VK_ETHERTYPE_IPV6 0x86dd
#define VK_FRAME_MAX 65550 /* largest frame in or out, with headers */
#define VK_MTU_MIN 576
#define VK_MTU_MAX 65520

struct vpnkit;
struct vk_port;
struct vk_flow;

/* ---------------------------------------------------------------- loop */

/* Whatever sits in the epoll set: data.ptr points at one of these. */
struct vk_handler {
	void (*fn)(struct vpnkit *vk, struct vk_handler *h, uint32_t events);
};

int vk_epoll_add(struct vpnkit *vk, int fd, uint32_t events,
		 struct vk_handler *h);
int vk_epoll_mod(struct vpnkit *vk, int fd, uint32_t events,
		 struct vk_handler *h);
void vk_epoll_del(struct vpnkit *vk, int fd);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t vk_now_ns(void);

/* Host descriptors are budgeted (config max_fds): take one before
 * creating a socket, give it back after closing. false: over budget. */
bool vk_fd_take(struct vpnkit *vk);
void vk_fd_give(struct vpnkit *vk);

/* ---------------------------------------------------------------- ports */

struct vk_port {
	struct vpnkit *vk;
	const struct vpnkit_port_ops *ops;
	void *opaque;
	unsigned flags; /* VPNKIT_PORT_* */
	uint32_t id; /* never reused while the instance lives */
	uint8_t mac[VK_ETH_ALEN]; /* the VM's: assigned, then as it sends */
	struct in_addr ip4; /* assigned by us (DHCP hands it out) */
	struct in6_addr ip6; /* global address seen from the VM, or zero */
	struct in6_addr ip6_ll; /* link-local address seen, or zero */
	char uuid[37];
	bool blocked; /* send said -EAGAIN: wait for resume */
	bool broken; /* send failed: drop everything */
	bool dirty; /* frames were sent since the last flush */
	struct vk_port *next; /* the instance's list */
};

/* The port with this id, or NULL if it has gone away since. */
struct vk_port *vk_port_by_id(struct vpnkit *vk, uint32_t id);
/* The port whose VM owns this address (v4-mapped or IPv6), or NULL. */
struct vk_port *vk_port_by_addr(struct vpnkit *vk, const struct in6_addr *a);

/*
 * Send one frame to a VM (iov holds the whole frame from the Ethernet
 * header). off may be NULL; for a port without VPNKIT_PORT_OFFLOAD,
 * offloads must not be asked for. Returns 0, -EAGAIN (the link is full:
 * the port is marked blocked and the protocols are told when it drains),
 * or another -errno.
 */
int vk_port_send(struct vk_port *port, const struct vpnkit_offload *off,
		 const struct iovec *iov, int iovcnt);

/* Fill an Ethernet header from the gateway to the port's VM. */
void vk_eth_header(const struct vk_port *port, uint16_t ethertype,
		   uint8_t hdr[VK_ETH_HLEN]);

extern const uint8_t vk_gateway_mac[VK_ETH_ALEN];

/* ---------------------------------------------------------------- packets */

/* One IP packet from a VM, parsed and bounds-checked by ip.c. */
struct vk_pkt {
	struct vk_port *port;
	const struct vpnkit_offload *off; /* NULL if none */
	const uint8_t *frame; /* from the Ethernet header */
	size_t frame_len;
	const uint8_t *l3; /* IP header */
	size_t l3_len; /* IP header + payload, trailing padding cut */
	const uint8_t *l4; /* transport header */
	size_t l4_len; /* transport header + payload */
	int af; /* AF_INET or AF_INET6 */
	uint8_t proto; /* IPPROTO_* of l4 */
	uint8_t ttl; /* TTL or hop limit */
	uint8_t tos; /* TOS or traffic class */
	bool csum_ok; /* l4's checksum verified, or vouched for by offload */
	struct in6_addr src, dst; /* v4-mapped for IPv4 */
};

/* Internet checksum helpers (RFC 1071), host-independent. */
uint32_t vk_csum_add(uint32_t sum, const void *buf, size_t len);
uint16_t vk_csum_fold(uint32_t sum);
/* Pseudo-header sum for TCP/UDP/ICMPv6 over src/dst (v4-mapped or v6). */
uint32_t vk_csum_pseudo(const struct in6_addr *src, const struct in6_addr *dst,
			uint8_t proto, uint32_t l4_len);

/* Address helpers. */
static inline bool vk_addr_is_v4(const struct in6_addr *a)
{
	return IN6_IS_ADDR_V4MAPPED(a);
}
static inline void vk_addr_from_v4(struct in6_addr *a, struct in_addr v4)
{
	memset(a, 0, 10);
	a->s6_addr[10] = 0xff;
	a->s6_addr[11] = 0xff;
	memcpy(&a->s6_addr[12], &v4, 4);
}
static inline struct in_addr vk_addr_v4(const struct in6_addr *a)
{
	struct in_addr v4;
	memcpy(&v4, &a->s6_addr[12], 4);
	return v4;
}

/*
 * Build and send one IP packet from src to dst (the VM's address on port)
 * with the given transport header and payload: the IP header (v4 or v6 by
 * the address family of src) and the transport checksum are filled in
 * here (for UDP, TCP, ICMP and ICMPv6, at l4 offsets 6, 16, 2 and 2).
 * l4 is the transport header with its checksum field zero; payload may be
 * empty. Returns as vk_port_send.
 */
int vk_ip_send(struct vk_port *port, uint8_t proto, const struct in6_addr *src,
	       const struct in6_addr *dst, const void *l4, size_t l4_len,
	       const struct iovec *payload, int payload_cnt);

/* UDP datagram to the VM: src:sport -> dst:dport. */
int vk_udp_send(struct vk_port *port, const struct in6_addr *src,
		uint16_t sport, const struct in6_addr *dst, uint16_t dport,
		const void *data, size_t len);

/* ---------------------------------------------------------------- addresses */

/* The gateway's own addresses (v4-mapped gateway; IPv6 prefix::1 and
 * fe80::1), and the one that stands for the host (host_ip, prefix::2). */
bool vk_addr_is_gateway(const struct vpnkit *vk, const struct in6_addr *a);
bool vk_addr_is_host(const struct vpnkit *vk, const struct in6_addr *a);
/* Inside the VMs' subnet (v4 subnet, v6 prefix or link-local). */
bool vk_addr_is_local(const struct vpnkit *vk, const struct in6_addr *a);

/*
 * Where a host socket for a VM's flow to dst:port should go: the host
 * address maps to loopback, an outside address to itself. Returns 0,
 * or -EHOSTUNREACH for addresses we do not carry (the gateway,
 * the subnet, multicast, broadcast, unspecified).
 */
int vk_addr_to_host(const struct vpnkit *vk, const struct in6_addr *dst,
		    uint16_t port, struct sockaddr_storage *sa,
		    socklen_t *sa_len);

/* Convert a host socket address (v4 or v6) to a v4-mapped/v6 address
 * as the VM should see it (loopback becomes the host address). */
void vk_addr_from_host(const struct vpnkit *vk, const struct sockaddr *sa,
		       struct in6_addr *a, uint16_t *port);

/* ---------------------------------------------------------------- flows */

struct vk_flow_key {
	uint8_t proto; /* IPPROTO_TCP, _UDP, _ICMP, _ICMPV6 */
	uint8_t pad;
	uint16_t gport; /* the VM's port (ICMP: echo id) */
	uint16_t rport; /* the remote port (ICMP: 0) */
	uint16_t pad2;
	struct in6_addr gaddr; /* the VM's address */
	struct in6_addr raddr; /* the remote address, as the VM sees it */
};

#define VK_FLOW_PRIV 256

struct vk_flow {
	struct vk_handler h; /* the socket's events; set by the protocol */
	struct vk_flow_key key;
	struct vk_port *port; /* the VM; flows die with their port */
	int fd; /* host socket, or -1 */
	uint64_t active_ns; /* last traffic, for idle expiry */
	uint32_t index; /* in the table */
	uint32_t next_free; /* free list */
	bool in_use;
	bool hashed;
	/* The protocol's state (struct vk_tcp_conn, ...). */
	_Alignas(8) uint8_t priv[VK_FLOW_PRIV];
};

/* The flow with exactly this key, or NULL. */
struct vk_flow *vk_flow_lookup(struct vpnkit *vk, const struct vk_flow_key *k);

/*
 * A new flow for this key on this port, zeroed, fd -1, hashed. NULL when
 * the table is full (counted as refused). The caller sets h.fn.
 */
struct vk_flow *vk_flow_new(struct vpnkit *vk, const struct vk_flow_key *k,
			    struct vk_port *port);

/* Unhash and free: closes f->fd (and gives its budget back) if open. */
void vk_flow_free(struct vpnkit *vk, struct vk_flow *f);

/* The entry at this index (which may be free or reused: check). */
struct vk_flow *vk_flow_at(struct vpnkit *vk, uint32_t index);

/* Visit every flow in use (fn may free the flow it is given). */
void vk_flow_foreach(struct vpnkit *vk,
		     void (*fn)(struct vpnkit *vk, struct vk_flow *f, void *arg),
		     void *arg);

/* ---------------------------------------------------------------- protocols */

void vk_arp_input(struct vk_port *port, const uint8_t *frame, size_t len);
void vk_ip_input(struct vk_port *port, const struct vpnkit_offload *off,
		 const uint8_t *frame, size_t len);

void vk_tcp_input(struct vpnkit *vk, const struct vk_pkt *pkt);
void vk_udp_input(struct vpnkit *vk, const struct vk_pkt *pkt);
void vk_icmp_input(struct vpnkit *vk, const struct vk_pkt *pkt); /* v4 */
void vk_icmp6_input(struct vpnkit *vk, const struct vk_pkt *pkt); /* + NDP */

/* DHCPv4 server (dhcp.c): a datagram from the VM to port 67. */
void vk_dhcp_input(struct vpnkit *vk, const struct vk_pkt *pkt,
		   const uint8_t *data, size_t len);

/* DNS at the gateway (dns.c). */
int vk_dns_init(struct vpnkit *vk);
void vk_dns_release(struct vpnkit *vk);
/* A UDP query from the VM to the gateway's port 53; the answer is sent
 * later with vk_udp_send (the port may be gone by then: look it up by
 * id). */
void vk_dns_udp_input(struct vpnkit *vk, const struct vk_pkt *pkt,
		      uint16_t sport, const uint8_t *data, size_t len);
/* Where a VM's TCP connection to the gateway's port 53 is connected on
 * the host (a loopback listener of dns.c, or the upstream server).
 * Returns 0 or -errno (no DNS). */
int vk_dns_tcp_target(struct vpnkit *vk, struct sockaddr_storage *sa,
		      socklen_t *sa_len);
/* Timers: run what is due at now, return the next deadline (ns, or
 * UINT64_MAX for none). */
uint64_t vk_dns_tick(struct vpnkit *vk, uint64_t now);

/* Router advertisements (ndp.c) are also sent unsolicited. */
uint64_t vk_ndp_tick(struct vpnkit *vk, uint64_t now);
/* A new port appeared: greet it (unsolicited RA). */
void vk_ndp_port_up(struct vpnkit *vk, struct vk_port *port);

uint64_t vk_tcp_tick(struct vpnkit *vk, uint64_t now);
uint64_t vk_udp_tick(struct vpnkit *vk, uint64_t now);
uint64_t vk_icmp_tick(struct vpnkit *vk, uint64_t now);

/* A port's link drained after -EAGAIN: protocols resume sending. */
void vk_tcp_port_resume(struct vpnkit *vk, struct vk_port *port);
/* TCP's instance state, and its end-of-batch work (delayed ACKs), run by
 * the loop after each batch of events. */
int vk_tcp_init(struct vpnkit *vk);
void vk_tcp_release(struct vpnkit *vk);
void vk_tcp_deferred(struct vpnkit *vk);
void **vk_tcp_state(struct vpnkit *vk);
void **vk_fwd_state(struct vpnkit *vk);
void **vk_pcap_state(struct vpnkit *vk);
/* Bring the next timer run forward to when (ns). */
void vk_timer_soon(struct vpnkit *vk, uint64_t when);
/* Write an IPv4 or IPv6 header (by src's family) for l4_total bytes of
 * transport header and payload; returns the header's length (20 or 40). */
size_t vk_ip_header(uint8_t *h, uint8_t proto, const struct in6_addr *src,
		    const struct in6_addr *dst, size_t l4_total, uint8_t ttl);

/* Port forwards (fwd.c): inbound connections and datagrams. */
void vk_fwd_release(struct vpnkit *vk);
/* An accepted host connection for a forward: make a flow and open it to
 * the VM. Takes fd. */
void vk_tcp_inbound(struct vpnkit *vk, int fd, const struct sockaddr *peer,
		    const struct in6_addr *gaddr, uint16_t gport);
/* A datagram from a host client to a UDP forward's socket lfd: pass it
 * to the VM (replies go back through lfd to peer). */
void vk_udp_inbound(struct vpnkit *vk, int lfd, const struct sockaddr *peer,
		    socklen_t peer_len, const struct in6_addr *gaddr,
		    uint16_t gport, const uint8_t *data, size_t len);
void vk_udp_forward_gone(struct vpnkit *vk, int lfd);
/* Send the datagrams VMs gave in this batch (sendmmsg). */
void vk_udp_flush(struct vpnkit *vk);
int vk_udp_init(struct vpnkit *vk);
void vk_udp_release(struct vpnkit *vk);
void **vk_udp_state(struct vpnkit *vk);
/* A forward went away: reset the flows it made. */
void vk_tcp_forward_gone(struct vpnkit *vk, const struct in6_addr *gaddr,
			 uint16_t gport);

/* Capture file (pcap.c). */
int vk_pcap_open(struct vpnkit *vk, const char *path);
void vk_pcap_close(struct vpnkit *vk);
void vk_pcap_frame(struct vpnkit *vk, const struct iovec *iov, int iovcnt);

/* ---------------------------------------------------------------- instance */

/* The parts of the instance other files read. */
const struct vpnkit_config *vk_config(const struct vpnkit *vk);
struct logger *vk_log(struct vpnkit *vk);
/* The gateway's IPv6 addresses: prefix::1 and fe80::1. */
const struct in6_addr *vk_gateway6(const struct vpnkit *vk);
const struct in6_addr *vk_gateway6_ll(const struct vpnkit *vk);
/* Each module's private state hangs off the instance. */
void **vk_dns_state(struct vpnkit *vk);
void **vk_ndp_state(struct vpnkit *vk);
void **vk_icmp_state(struct vpnkit *vk);
void **vk_dhcp_state(struct vpnkit *vk);

/* Counters (struct vpnkit_stats) that modules bump. */
struct vpnkit_stats *vk_stats(struct vpnkit *vk);
/* A malformed frame: count it and log it (rate-limited). */
void vk_drop_bad(struct vpnkit *vk, const char *why);
/* Dropped for another reason (no route, no flow, link full). */
void vk_drop(struct vpnkit *vk, const char *why);

#endif
