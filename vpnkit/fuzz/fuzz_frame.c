// SPDX-License-Identifier: MIT
/*
 * fuzz_frame: libFuzzer target feeding arbitrary Ethernet frames from two
 * VMs into a libvpnkit instance, interleaved with what the host side can
 * do (accept, write, close, reset, use a port forward), a link that fills
 * up and drains, and turns of the event loop. The input format is in
 * frame_input.h.
 *
 * Each input gets a fresh instance (DNS forwarding with no servers, IPv6
 * on, 64 flows) with port A (an offload port) and port B (a plain one),
 * learns the gateway's MAC by ARP, then runs its records. Frames may ask
 * to have their addresses, TCP sequence numbers and checksums fixed up,
 * so that mutations reach past the checks into DHCP, DNS, NDP, ICMP and
 * the TCP state machine instead of dying at a checksum; the same frames
 * without the flags test the checks themselves.
 *
 * What traps: a crash, a sanitizer report, a leak, a hang, a frame
 * shorter than an Ethernet header, and any IP frame the library writes
 * itself (from the gateway's MAC) that a VM's stack would refuse: wrong
 * lengths, a bad IPv4 header checksum, a bad transport checksum (partial
 * ones allowed on the offload port when the offload metadata says so).
 *
 * Regression seeds found by fuzzing are named crash-*; the others come
 * from make-corpus-frame.sh.
 *
 * Safety: flows become real host sockets. In LLVMFuzzerInitialize the
 * process moves into a network namespace of its own (unshare, with a user
 * namespace if need be) with only loopback up, where the harness listens
 * on 127.0.0.1 and ::1; nothing reaches another machine or a service of
 * the host. Where no namespace can be made, the host address is turned
 * off and frames to anything outside the VMs' subnet are not passed in,
 * so that nothing leaves the process but traffic to itself.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <base/endian.h>
#include <base/fuzz.h>
#include <vpnkit/vpnkit.h>

#include "../tests/frames.h"
#include "frame_input.h"

#define MAX_RECORDS 256
#define MAX_CONNS 16
#define FRAME_BUF 65600

/* Set once by LLVMFuzzerInitialize: a private network namespace. */
static bool sandboxed;

/* The last TCP segment the library sent to a port. */
struct last_seg {
	bool valid;
	int af;
	uint8_t src[16];
	uint16_t sport, dport;
	uint32_t seq, ack, seglen;
};

struct sink {
	const uint8_t *gw_mac; /* NULL until learnt */
	uint8_t arp_gw[6]; /* the gateway's MAC, from an ARP reply */
	bool arp_seen;
	bool full; /* the link says -EAGAIN */
	unsigned frames;
	struct last_seg last;
};

struct fz {
	struct vpnkit *vk;
	struct vpnkit_port *port[2];
	struct sink sink[2];
	uint8_t mac[2][6], ip[2][4], ip6[2][16];
	uint8_t gw_mac[6];
	int lfd4, lfd6, ufd;
	int conns[MAX_CONNS];
	unsigned n_conns;
	int ucli; /* UDP client of the forward */
	bool fwd_on;
};

/*
 * A frame the library sent to a port: trap if a receiving stack would
 * refuse it, and remember what the fix-ups need (the gateway's MAC from
 * the first ARP reply, the last TCP segment).
 */
static void check_frame(struct sink *s, const uint8_t *f, size_t len,
			const struct vpnkit_offload *off)
{
	struct fr_view v;
	bool partial = off && (off->flags & VPNKIT_OFFLOAD_NEEDS_CSUM);

	if (len < 14)
		__builtin_trap(); /* not even switched frames are this short */
	if (!s->arp_seen && len >= 42 && load_be16(f + 12) == FR_ETH_ARP &&
	    load_be16(f + 20) == 2) {
		memcpy(s->arp_gw, f + 22, 6);
		s->arp_seen = true;
	}
	if (!s->gw_mac || memcmp(f + 6, s->gw_mac, 6) != 0)
		return; /* switched from the other VM as it was sent */
	if (fr_parse(&v, f, len, partial))
		__builtin_trap();
	if (v.proto == IPPROTO_TCP && v.af) {
		s->last.valid = true;
		s->last.af = v.af;
		memcpy(s->last.src, v.src, 16);
		s->last.sport = v.sport;
		s->last.dport = v.dport;
		s->last.seq = v.seq;
		s->last.ack = v.ack;
		s->last.seglen = fr_seg_len(&v);
	}
}

static int sink_send(void *opaque, const struct vpnkit_offload *off,
		     const struct iovec *iov, int iovcnt)
{
	static uint8_t buf[FRAME_BUF];
	struct sink *s = opaque;
	size_t len = 0;
	int i;

	if (s->full)
		return -EAGAIN;
	for (i = 0; i < iovcnt; i++) {
		if (len + iov[i].iov_len > sizeof(buf))
			__builtin_trap(); /* larger than any frame may be */
		memcpy(buf + len, iov[i].iov_base, iov[i].iov_len);
		len += iov[i].iov_len;
	}
	s->frames++;
	check_frame(s, buf, len, off);
	return 0;
}

static const struct vpnkit_port_ops sink_ops = { .send = sink_send };

/* ---------------------------------------------------------------- setup */

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = write(fd, text, strlen(text));
	close(fd);
	return n == (ssize_t)strlen(text) ? 0 : -1;
}

static bool netns_enter(void)
{
	struct ifreq ifr;
	char map[64];
	uid_t uid = getuid();
	gid_t gid = getgid();
	int s;

	if (unshare(CLONE_NEWNET) < 0) {
		if (unshare(CLONE_NEWUSER | CLONE_NEWNET) < 0)
			return false;
		/* Keep our own ids, so files we create are ours. */
		snprintf(map, sizeof(map), "%u %u 1", (unsigned)uid,
			 (unsigned)uid);
		write_file("/proc/self/setgroups", "deny");
		write_file("/proc/self/uid_map", map);
		snprintf(map, sizeof(map), "%u %u 1", (unsigned)gid,
			 (unsigned)gid);
		write_file("/proc/self/gid_map", map);
	}
	s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return false;
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) {
		close(s);
		return false;
	}
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) {
		close(s);
		return false;
	}
	close(s);
	/* Ping sockets for every group, so ICMP echo flows exist here. */
	write_file("/proc/sys/net/ipv4/ping_group_range", "0 2147483647");
	return true;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	sandboxed = netns_enter();
	return 0;
}

/* A non-blocking socket bound to loopback:port (TCP: listening). */
static int host_listen(int type, bool v6, uint16_t port)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int one = 1, fd;

	memset(&ss, 0, sizeof(ss));
	if (v6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		s6->sin6_addr = in6addr_loopback;
		sl = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sl = sizeof(*s4);
	}
	fd = socket(v6 ? AF_INET6 : AF_INET,
		    type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0 ||
	    (type == SOCK_STREAM && listen(fd, 64) < 0)) {
		close(fd);
		return -1;
	}
	return fd;
}

static void forwards(struct fz *z, bool on)
{
	static const char *protos[] = { "tcp", "udp" };
	static const unsigned hports[] = { FI_FWD_TCP_PORT, FI_FWD_UDP_PORT };
	static const unsigned gports[] = { 80, 53 };
	char spec[96], ip[INET_ADDRSTRLEN];
	struct vpnkit_forward fw;
	int i;

	if (!sandboxed)
		return;
	inet_ntop(AF_INET, z->ip[0], ip, sizeof(ip));
	for (i = 0; i < 2; i++) {
		snprintf(spec, sizeof(spec), "%s:127.0.0.1:%u:%s:%u", protos[i],
			 hports[i], ip, gports[i]);
		if (vpnkit_forward_parse(spec, &fw))
			__builtin_trap();
		if (on)
			vpnkit_forward_add(z->vk, &fw);
		else
			vpnkit_forward_remove(z->vk, fw.proto,
					      (struct sockaddr *)&fw.host);
	}
	z->fwd_on = on;
}

static bool fz_setup(struct fz *z)
{
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	static const uint8_t zero[6] = { 0 };
	struct vpnkit_config cfg;
	struct vpnkit_port_config pc;
	struct in_addr a;
	uint8_t f[64], gw[4];
	int i;

	memset(z, 0, sizeof(*z));
	z->lfd4 = z->lfd6 = z->ufd = z->ucli = -1;
	vpnkit_config_init(&cfg);
	cfg.dns_mode = VPNKIT_DNS_FORWARD;
	cfg.resolv_conf = "/dev/null"; /* no servers: SERVFAIL at once */
	cfg.max_flows = 64;
	cfg.max_fds = 48;
	cfg.udp_idle_s = 1;
	if (!sandboxed)
		cfg.host_ip.s_addr = 0;
	if (vpnkit_new(&cfg, &z->vk))
		return false;
	memset(&pc, 0, sizeof(pc));
	for (i = 0; i < 2; i++) {
		pc.flags = i == 0 ? VPNKIT_PORT_OFFLOAD : 0;
		if (vpnkit_port_new(z->vk, &pc, &sink_ops, &z->sink[i],
				    &z->port[i]))
			return false;
		vpnkit_port_mac(z->port[i], z->mac[i]);
		a = vpnkit_port_ip(z->port[i]);
		memcpy(z->ip[i], &a, 4);
		memcpy(z->ip6[i], &cfg.prefix6, 8);
		store_be64(z->ip6[i] + 8, FI_IID6 + (uint64_t)i);
	}
	/* Learn the gateway's MAC as a VM would. */
	memcpy(gw, &cfg.gateway, 4);
	fr_arp(f, bcast, z->mac[0], 1, z->mac[0], z->ip[0], zero, gw);
	vpnkit_port_input(z->port[0], NULL, f, 42);
	if (!z->sink[0].arp_seen)
		return false;
	memcpy(z->gw_mac, z->sink[0].arp_gw, 6);
	z->sink[0].gw_mac = z->sink[1].gw_mac = z->gw_mac;
	if (sandboxed) {
		z->lfd4 = host_listen(SOCK_STREAM, false, FI_TCP_PORT);
		z->lfd6 = host_listen(SOCK_STREAM, true, FI_TCP_PORT);
		z->ufd = host_listen(SOCK_DGRAM, false, FI_UDP_PORT);
		forwards(z, true);
	}
	return true;
}

static void fz_release(struct fz *z)
{
	unsigned i;

	vpnkit_free(z->vk);
	for (i = 0; i < z->n_conns; i++)
		close(z->conns[i]);
	if (z->lfd4 >= 0)
		close(z->lfd4);
	if (z->lfd6 >= 0)
		close(z->lfd6);
	if (z->ufd >= 0)
		close(z->ufd);
	if (z->ucli >= 0)
		close(z->ucli);
}

/* ---------------------------------------------------------------- host */

static void conn_add(struct fz *z, int fd)
{
	if (fd < 0)
		return;
	if (z->n_conns == MAX_CONNS) {
		close(fd);
		return;
	}
	z->conns[z->n_conns++] = fd;
}

static void conn_drop_oldest(struct fz *z, bool reset)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	if (!z->n_conns)
		return;
	if (reset)
		setsockopt(z->conns[0], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(z->conns[0]);
	memmove(z->conns, z->conns + 1, --z->n_conns * sizeof(z->conns[0]));
}

static int accept_nb(int lfd)
{
	if (lfd < 0)
		return -1;
	return accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

/* Accept what is waiting, drain what connections received, echo UDP. */
static void host_service(struct fz *z)
{
	static uint8_t buf[65536];
	struct sockaddr_storage peer;
	socklen_t pl;
	unsigned i;
	int k;

	for (k = 0; k < 8; k++) {
		conn_add(z, accept_nb(z->lfd4));
		conn_add(z, accept_nb(z->lfd6));
	}
	for (i = 0; i < z->n_conns; i++)
		while (recv(z->conns[i], buf, sizeof(buf), MSG_DONTWAIT) > 0)
			;
	for (k = 0; z->ufd >= 0 && k < 8; k++) {
		ssize_t n;

		pl = sizeof(peer);
		n = recvfrom(z->ufd, buf, sizeof(buf), MSG_DONTWAIT,
			     (struct sockaddr *)&peer, &pl);
		if (n < 0)
			break;
		sendto(z->ufd, buf, (size_t)n, MSG_DONTWAIT,
		       (struct sockaddr *)&peer, pl);
	}
	if (z->ucli >= 0)
		while (recv(z->ucli, buf, sizeof(buf), MSG_DONTWAIT) > 0)
			;
}

static void run(struct fz *z)
{
	host_service(z);
	vpnkit_run_once(z->vk, 0);
	vpnkit_run_once(z->vk, 0);
}

static void host_act(struct fz *z, uint8_t arg)
{
	static uint8_t data[1 + 63 * 64];
	unsigned i;

	switch (arg & 3) {
	case 0:
		for (i = 0; i < sizeof(data); i++)
			data[i] = (uint8_t)(i * 7);
		for (i = 0; i < z->n_conns; i++)
			send(z->conns[i], data, 1 + (size_t)(arg >> 2) * 64,
			     MSG_DONTWAIT | MSG_NOSIGNAL);
		break;
	case 1:
		conn_drop_oldest(z, false);
		break;
	case 2:
		conn_drop_oldest(z, true);
		break;
	default:
		break;
	}
}

static void forward_use(struct fz *z, uint8_t arg)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	uint8_t data[128 * 8];
	int fd;

	if (!sandboxed || !z->fwd_on)
		return;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (arg & 1) {
		fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
			    0);
		if (fd < 0)
			return;
		sin.sin_port = htons(FI_FWD_TCP_PORT);
		(void)connect(fd, (struct sockaddr *)&sin, sizeof(sin));
		conn_add(z, fd);
		return;
	}
	if (z->ucli < 0)
		z->ucli = socket(AF_INET,
				 SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (z->ucli < 0)
		return;
	memset(data, (int)arg, sizeof(data));
	sin.sin_port = htons(FI_FWD_UDP_PORT);
	sendto(z->ucli, data, (size_t)(arg >> 1) * 8, MSG_DONTWAIT,
	       (struct sockaddr *)&sin, sizeof(sin));
}

/* ---------------------------------------------------------------- frames */

/* Where a frame's IP header and transport message are, if it has them. */
struct ip_loc {
	int af;
	uint8_t *ip;
	size_t ihl; /* header length up to the transport */
	size_t l4_len;
	uint8_t proto;
};

static bool locate(uint8_t *f, size_t len, struct ip_loc *l)
{
	size_t avail, tot;

	if (len < 14)
		return false;
	l->ip = f + 14;
	avail = len - 14;
	if (load_be16(f + 12) == FR_ETH_IP) {
		if (avail < 20)
			return false;
		l->af = 4;
		l->ihl = (size_t)(l->ip[0] & 0xf) * 4;
		tot = load_be16(l->ip + 2);
		if (tot > avail || tot == 0)
			tot = avail;
		if (l->ihl < 20 || l->ihl > tot)
			return false;
		l->l4_len = tot - l->ihl;
		l->proto = l->ip[9];
		return true;
	}
	if (load_be16(f + 12) == FR_ETH_IPV6) {
		if (avail < 40)
			return false;
		l->af = 6;
		l->ihl = 40;
		tot = 40 + (size_t)load_be16(l->ip + 4);
		if (tot > avail || tot == 40)
			tot = avail;
		l->l4_len = tot - 40;
		l->proto = l->ip[6];
		return true;
	}
	return false;
}

/* Would this frame make the library talk to anything but the VMs' own
 * subnet? Only asked when there is no private namespace. */
static bool leaves_subnet(const uint8_t *f, size_t len)
{
	struct ip_loc l;
	uint8_t copy[64];

	memcpy(copy, f, len < sizeof(copy) ? len : sizeof(copy));
	if (!locate(copy, len < sizeof(copy) ? len : sizeof(copy), &l))
		return false; /* ARP, or not IP enough to go anywhere */
	if (l.af == 4) {
		const uint8_t *d = l.ip + 16;

		return !(d[0] == 192 && d[1] == 168 && d[2] == 65) &&
		       !(d[0] == 255 && d[1] == 255 && d[2] == 255 &&
			 d[3] == 255);
	}
	{
		const uint8_t *d = l.ip + 24;
		static const uint8_t prefix[8] = { 0xfd, 0x00, 0x6e, 0x6b,
						   0x76, 0x00, 0x00, 0x01 };

		return memcmp(d, prefix, 8) != 0 && d[0] != 0xff &&
		       !(d[0] == 0xfe && (d[1] & 0xc0) == 0x80);
	}
}

static void fix_frame(struct fz *z, int p, uint8_t op, uint8_t *f, size_t len)
{
	struct ip_loc l;
	const struct last_seg *ls = &z->sink[p].last;

	if ((op & FI_FIX_ADDR) && len >= 14) {
		memcpy(f, z->gw_mac, 6);
		memcpy(f + 6, z->mac[p], 6);
	}
	if (!locate(f, len, &l))
		return;
	if (op & FI_FIX_ADDR) {
		if (l.af == 4)
			memcpy(l.ip + 12, z->ip[p], 4);
		else
			memcpy(l.ip + 8, z->ip6[p], 16);
	}
	if ((op & FI_FIX_SEQ) && l.proto == IPPROTO_TCP && l.l4_len >= 20 &&
	    ls->valid && ls->af == l.af) {
		uint8_t *t = l.ip + l.ihl;

		memcpy(l.af == 4 ? l.ip + 16 : l.ip + 24, ls->src,
		       l.af == 4 ? 4 : 16);
		store_be16(t, ls->dport);
		store_be16(t + 2, ls->sport);
		store_be32(t + 4, ls->ack);
		store_be32(t + 8, ls->seq + ls->seglen);
	}
	if (op & FI_FIX_CSUM) {
		if (l.af == 4)
			fr_ip4_fix(l.ip);
		fr_l4_fix(l.af == 4 ? 4 : 6, l.af == 4 ? l.ip + 12 : l.ip + 8,
			  l.af == 4 ? l.ip + 16 : l.ip + 24, l.proto,
			  l.ip + l.ihl, l.l4_len);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t frame[FRAME_BUF];
	struct fz z;
	size_t pos = 0;
	unsigned records = 0;

	if (!fz_setup(&z)) {
		fz_release(&z);
		return 0;
	}
	while (pos < size && records++ < MAX_RECORDS) {
		uint8_t op = data[pos++];
		struct vpnkit_offload off, *offp = NULL;
		size_t len;
		int p;

		switch (op & FI_KIND_MASK) {
		case FI_HOST:
			if (pos < size)
				host_act(&z, data[pos++]);
			run(&z);
			continue;
		case FI_FORWARD:
			if (pos < size)
				forward_use(&z, data[pos++]);
			run(&z);
			continue;
		case FI_LINK:
			z.sink[0].full = !z.sink[0].full;
			if (!z.sink[0].full)
				vpnkit_port_resume(z.port[0]);
			continue;
		case FI_RUN:
			run(&z);
			continue;
		case FI_FWD_TOGGLE:
			forwards(&z, !z.fwd_on);
			continue;
		default:
			break;
		}
		if (op & FI_OFFLOAD) {
			if (size - pos < 10)
				break;
			off.flags = data[pos];
			off.gso_type = data[pos + 1];
			off.hdr_len = load_be16(data + pos + 2);
			off.gso_size = load_be16(data + pos + 4);
			off.csum_start = load_be16(data + pos + 6);
			off.csum_offset = load_be16(data + pos + 8);
			offp = &off;
			pos += 10;
		}
		if (size - pos < 2)
			break;
		len = load_be16(data + pos);
		pos += 2;
		if (len > size - pos)
			len = size - pos;
		memcpy(frame, data + pos, len);
		pos += len;
		p = (op & FI_PORT_B) ? 1 : 0;
		fix_frame(&z, p, op, frame, len);
		if (!sandboxed && leaves_subnet(frame, len))
			continue;
		vpnkit_port_input(z.port[p], offp, frame, len);
		if ((op & FI_KIND_MASK) != FI_FRAME)
			run(&z);
	}
	fz_release(&z);
	return 0;
}
