/* SPDX-License-Identifier: MIT */
/*
 * A test rig for libvpnkit's unit tests (test_core.c, test_tcp.c,
 * test_udp.c and others): one instance with one VM attached through a
 * capturing port, driven through the public API (vpnkit.h).
 *
 * The "VM" is the test: it builds frames with frames.h and hands them to
 * vpnkit_port_input; every frame the library sends to it is stored by the
 * port's send callback and checked (lengths and checksums) as it arrives,
 * so no test can take a frame with a bad checksum for a good one. The far
 * side is the host's real sockets on loopback: 192.168.65.2 is the host's
 * 127.0.0.1 (and prefix::2 its ::1).
 *
 * The send callback can refuse frames with -EAGAIN once a budget of
 * frames is spent (cap.budget), to test a full link and
 * vpnkit_port_resume. More VMs can attach with cap_ops and a struct
 * capture of their own (cap_next reads it). The gateway's MAC is learnt
 * the way a VM learns it: by ARP. What the instance logs can be kept for
 * a test to look for (rig_keep_log).
 *
 * Everything here is static inline (each test program takes what it
 * uses) and may end the current test case through the asserts.
 */
#ifndef VPNKIT_TESTS_RIG_H
#define VPNKIT_TESTS_RIG_H

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <base/test.h>
#include <vpnkit/vpnkit.h>

#include "frames.h"

/* ---------------------------------------------------------------- capture */

struct cap_frame {
	uint8_t *data;
	size_t len;
	bool has_off;
	struct vpnkit_offload off;
};

struct capture {
	struct cap_frame *f;
	size_t n, size; /* stored, allocated */
	size_t next; /* the next one rig_next returns */
	long budget; /* frames still taken before -EAGAIN; < 0: no limit */
	unsigned eagain; /* times -EAGAIN was returned */
	bool offload; /* the port was made with VPNKIT_PORT_OFFLOAD */
};

static inline int cap_send(void *opaque, const struct vpnkit_offload *off,
			   const struct iovec *iov, int iovcnt)
{
	struct capture *c = opaque;
	struct cap_frame *cf;
	size_t len = 0;
	int i;

	if (c->budget == 0) {
		c->eagain++;
		return -EAGAIN;
	}
	if (c->budget > 0)
		c->budget--;
	if (c->n == c->size) {
		c->size = c->size ? c->size * 2 : 64;
		c->f = realloc(c->f, c->size * sizeof(*c->f));
		ASSERT_NOT_NULL(c->f);
	}
	for (i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	cf = &c->f[c->n];
	memset(cf, 0, sizeof(*cf));
	cf->data = malloc(len ? len : 1);
	ASSERT_NOT_NULL(cf->data);
	for (i = 0, len = 0; i < iovcnt; i++) {
		memcpy(cf->data + len, iov[i].iov_base, iov[i].iov_len);
		len += iov[i].iov_len;
	}
	cf->len = len;
	if (off) {
		ASSERT_TRUE(c->offload);
		cf->has_off = true;
		cf->off = *off;
	}
	c->n++;
	return 0;
}

static const struct vpnkit_port_ops cap_ops = { .send = cap_send };

/* Check one captured frame as a VM's stack would; offloaded frames must
 * carry a partial checksum where their metadata says. */
static inline void cap_check_frame(const struct cap_frame *cf)
{
	struct fr_view v;
	const char *why;

	why = fr_parse(&v, cf->data, cf->len,
		       cf->has_off &&
			       (cf->off.flags & VPNKIT_OFFLOAD_NEEDS_CSUM));
	if (why)
		TEST_FAIL("a frame from the library (%zu bytes) is bad: %s",
			  cf->len, why);
	if (!cf->has_off)
		return;
	if (cf->off.flags & VPNKIT_OFFLOAD_NEEDS_CSUM) {
		ASSERT_EQ_U64(cf->off.csum_start, (size_t)(v.l4 - cf->data));
		ASSERT_EQ_U64(cf->off.csum_offset,
			      (uint64_t)fr_csum_off(v.proto));
	}
}

/* The next frame c took, checked; NULL if there is none yet. */
static inline struct cap_frame *cap_next(struct capture *c)
{
	struct cap_frame *cf;

	if (c->next == c->n)
		return NULL;
	cf = &c->f[c->next++];
	cap_check_frame(cf);
	return cf;
}

static inline void cap_release(struct capture *c)
{
	size_t i;

	for (i = 0; i < c->n; i++)
		free(c->f[i].data);
	free(c->f);
	memset(c, 0, sizeof(*c));
}

/* ---------------------------------------------------------------- the rig */

struct rig {
	struct vpnkit_config cfg;
	struct vpnkit *vk;
	struct vpnkit_port *port;
	struct capture cap;
	uint8_t mac[6], gw_mac[6];
	uint8_t ip[4]; /* the VM's */
	uint8_t gw[4], host[4]; /* 192.168.65.1 and .2 */
	uint8_t ip6[16]; /* an address the VM uses in the prefix */
	uint8_t ll6[16]; /* the VM's link-local address (the same IID) */
	uint8_t gw6[16], host6[16]; /* prefix::1 and prefix::2 */
	uint8_t gw_ll6[16]; /* fe80::1 */
};

static inline void rig_log(void *opaque, enum log_level level, const char *msg)
{
	(void)opaque;
	test_note("vpnkit %s: %s", log_level_name(level), msg);
}

/* What an instance logged, kept for the tests that look for a line. */
struct rig_logbuf {
	char text[65536];
	size_t len;
};

/* A log_fn keeping every line in a struct rig_logbuf (opaque); those
 * rig_log would show are noted too. */
static inline void rig_log_keep(void *opaque, enum log_level level,
				const char *msg)
{
	struct rig_logbuf *lb = opaque;
	size_t room = sizeof(lb->text) - lb->len;
	int n;

	if (level <= LOG_LEVEL_WARN || getenv("RIG_DEBUG"))
		rig_log(NULL, level, msg);
	n = snprintf(lb->text + lb->len, room, "%s: %s\n",
		     log_level_name(level), msg);
	if (n > 0 && (size_t)n < room)
		lb->len += (size_t)n;
}

/* Keep cfg's instance's log, debug lines included, in lb (emptied). */
static inline void rig_keep_log(struct vpnkit_config *cfg,
				struct rig_logbuf *lb)
{
	lb->len = 0;
	lb->text[0] = '\0';
	cfg->log.fn = rig_log_keep;
	cfg->log.opaque = lb;
	cfg->log.level = getenv("RIG_DEBUG") ? LOG_LEVEL_TRACE :
					       LOG_LEVEL_DEBUG;
}

/* How many times text was logged. */
static inline unsigned rig_log_count(const struct rig_logbuf *lb,
				     const char *text)
{
	unsigned n = 0;
	const char *p;

	for (p = lb->text; (p = strstr(p, text)); p++)
		n++;
	return n;
}

/* text must have been logged. */
static inline void rig_log_expect(const struct rig_logbuf *lb, const char *text)
{
	if (!strstr(lb->text, text))
		TEST_FAIL("not in the log: \"%s\"; the log:\n%s", text,
			  lb->text);
}

/* Addresses from text, for the tests' own constants. */
static inline struct in_addr rig_addr4(const char *s)
{
	struct in_addr a;

	ASSERT_EQ_INT(inet_pton(AF_INET, s, &a), 1);
	return a;
}

static inline struct in6_addr rig_addr6(const char *s)
{
	struct in6_addr a;

	ASSERT_EQ_INT(inet_pton(AF_INET6, s, &a), 1);
	return a;
}

/* The configuration the tests start from: defaults, DNS off (no
 * dependence on the machine's resolv.conf), warnings logged. */
static inline void rig_config(struct vpnkit_config *cfg)
{
	vpnkit_config_init(cfg);
	cfg->dns_mode = VPNKIT_DNS_OFF;
	cfg->log.fn = rig_log;
	cfg->log.level = getenv("RIG_DEBUG") ? LOG_LEVEL_TRACE : LOG_LEVEL_WARN;
}

static inline struct vpnkit_stats rig_stats(const struct rig *r)
{
	struct vpnkit_stats s;

	vpnkit_stats_get(r->vk, &s);
	return s;
}

static inline void rig_input(struct rig *r, const void *f, size_t len)
{
	ASSERT_OK(vpnkit_port_input(r->port, NULL, f, len));
}

/*
 * Link-layer and network addresses of a packet from the VM (af 4 or 6)
 * from src to dst, sent to the gateway's MAC; IPv4 packets say DF.
 */
static inline struct fr_l3 rig_l3_from(const struct rig *r, int af,
				       const void *src, const void *dst)
{
	size_t alen = af == 4 ? 4 : 16;
	struct fr_l3 a;

	memset(&a, 0, sizeof(a));
	memcpy(a.src_mac, r->mac, 6);
	memcpy(a.dst_mac, r->gw_mac, 6);
	a.af = af;
	memcpy(a.src, src, alen);
	memcpy(a.dst, dst, alen);
	if (af == 4) {
		a.ip_id = 0x4242;
		a.frag = 0x4000; /* DF */
	}
	return a;
}

/* From the VM's IPv4 address to dst. */
static inline struct fr_l3 rig_l3(const struct rig *r, const uint8_t dst[4])
{
	return rig_l3_from(r, 4, r->ip, dst);
}

/* The same over IPv6, from r->ip6 to dst. */
static inline struct fr_l3 rig_l3_6(const struct rig *r, const uint8_t dst[16])
{
	return rig_l3_from(r, 6, r->ip6, dst);
}

/*
 * The next frame the library sent, running the loop for up to max_ms
 * until there is one; NULL if none came. Each frame is checked once.
 */
static inline struct cap_frame *rig_next(struct rig *r, int max_ms)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (r->cap.next == r->cap.n) {
		long ms;

		clock_gettime(CLOCK_MONOTONIC, &t);
		ms = (t.tv_sec - t0.tv_sec) * 1000 +
		     (t.tv_nsec - t0.tv_nsec) / 1000000;
		if (ms >= max_ms)
			return NULL;
		ASSERT_OK(vpnkit_run_once(
			r->vk, (int)(max_ms - ms < 10 ? max_ms - ms : 10)));
	}
	return cap_next(&r->cap);
}

/* The next frame, which must come within max_ms, taken apart. */
static inline struct cap_frame *rig_expect(struct rig *r, int max_ms,
					   struct fr_view *v)
{
	struct cap_frame *cf = rig_next(r, max_ms);

	if (!cf)
		TEST_FAIL("no frame from the library within %d ms", max_ms);
	ASSERT_EQ_PTR(fr_parse(v, cf->data, cf->len,
			       cf->has_off && (cf->off.flags &
					       VPNKIT_OFFLOAD_NEEDS_CSUM)),
		      NULL);
	return cf;
}

/* Nothing more may come within ms. */
static inline void rig_expect_none(struct rig *r, int ms)
{
	struct cap_frame *cf = rig_next(r, ms);

	if (cf) {
		struct fr_view v;

		fr_parse(&v, cf->data, cf->len, true);
		TEST_FAIL("unexpected frame: %zu bytes, type %04x, proto %u, "
			  "flags %02x",
			  cf->len, v.type, v.proto, v.flags);
	}
}

/* Forget every frame sent so far. */
static inline void rig_drain(struct rig *r)
{
	r->cap.next = r->cap.n;
}

/* Ask the gateway for the MAC of ip (ARP); returns the reply's frame. */
static inline struct cap_frame *rig_arp(struct rig *r, const uint8_t ip[4])
{
	static const uint8_t everyone[6] = {
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff
	};
	static const uint8_t zero[6] = { 0 };
	uint8_t f[64];
	size_t len;

	len = fr_arp(f, everyone, r->mac, 1, r->mac, r->ip, zero, ip);
	rig_input(r, f, len);
	return rig_next(r, 0);
}

/*
 * Start an instance with cfg (NULL: rig_config's) and one port with
 * port_flags, learn the gateway's MAC, and forget the frames that came
 * so far (a router advertisement greets a new port).
 */
static inline void rig_start(struct rig *r, const struct vpnkit_config *cfg,
			     unsigned port_flags)
{
	struct vpnkit_port_config pc;
	struct in_addr a;
	struct cap_frame *cf;

	memset(r, 0, sizeof(*r));
	if (cfg)
		r->cfg = *cfg;
	else
		rig_config(&r->cfg);
	ASSERT_OK(vpnkit_new(&r->cfg, &r->vk));
	memset(&pc, 0, sizeof(pc));
	pc.flags = port_flags;
	r->cap.budget = -1;
	r->cap.offload = port_flags & VPNKIT_PORT_OFFLOAD;
	ASSERT_OK(vpnkit_port_new(r->vk, &pc, &cap_ops, &r->cap, &r->port));
	vpnkit_port_mac(r->port, r->mac);
	a = vpnkit_port_ip(r->port);
	memcpy(r->ip, &a, 4);
	memcpy(r->gw, &r->cfg.gateway, 4);
	memcpy(r->host, &r->cfg.host_ip, 4);
	memcpy(r->ip6, &r->cfg.prefix6, 16);
	store_be64(r->ip6 + 8, 0x0250aafffebbcc01ull);
	memcpy(r->ll6, r->ip6, 16);
	memset(r->ll6, 0, 8);
	r->ll6[0] = 0xfe;
	r->ll6[1] = 0x80;
	memcpy(r->gw6, &r->cfg.prefix6, 16);
	r->gw6[15] = 1;
	memcpy(r->host6, &r->cfg.prefix6, 16);
	r->host6[15] = 2;
	memset(r->gw_ll6, 0, 16);
	r->gw_ll6[0] = 0xfe;
	r->gw_ll6[1] = 0x80;
	r->gw_ll6[15] = 1;
	rig_drain(r);
	cf = rig_arp(r, r->gw);
	ASSERT_NOT_NULL(cf);
	ASSERT_EQ_U64(cf->len, 42);
	memcpy(r->gw_mac, cf->data + FR_ETH_HLEN + 8, 6);
	rig_drain(r);
}

static inline void rig_stop(struct rig *r)
{
	vpnkit_free(r->vk);
	r->vk = NULL;
	cap_release(&r->cap);
}

/* ---------------------------------------------------------------- the host */

/* Descriptors open in this process. */
static inline int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	ASSERT_NOT_NULL(d);
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own */
}

/* A socket of type (SOCK_STREAM: listening) on 127.0.0.1 (or ::1 when
 * v6), on a port the kernel picks; *port gets it. */
static inline int host_socket(int type, bool v6, uint16_t *port)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd;

	memset(&ss, 0, sizeof(ss));
	if (v6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_addr = in6addr_loopback;
		sl = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sl = sizeof(*s4);
	}
	fd = socket(v6 ? AF_INET6 : AF_INET, type | SOCK_CLOEXEC, 0);
	ASSERT_TRUE(fd >= 0);
	ASSERT_OK(bind(fd, (struct sockaddr *)&ss, sl));
	if (type == SOCK_STREAM)
		ASSERT_OK(listen(fd, 16));
	ASSERT_OK(getsockname(fd, (struct sockaddr *)&ss, &sl));
	*port = ntohs(v6 ? ((struct sockaddr_in6 *)&ss)->sin6_port :
			   ((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}

/* Wait up to max_ms for fd to be ready for events, running the loop. */
static inline bool rig_wait_fd(struct rig *r, int fd, short events, int max_ms)
{
	struct pollfd p = { .fd = fd, .events = events };
	int waited;

	for (waited = 0; waited <= max_ms; waited += 5) {
		ASSERT_OK(vpnkit_run_once(r->vk, 0));
		if (poll(&p, 1, 5) > 0)
			return true;
	}
	return false;
}

/* Accept a connection on a listening socket within max_ms; -1 if none. */
static inline int rig_accept(struct rig *r, int lfd, int max_ms)
{
	if (!rig_wait_fd(r, lfd, POLLIN, max_ms))
		return -1;
	return accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
}

/* Read exactly n bytes from a host socket, running the loop meanwhile. */
static inline void rig_host_read(struct rig *r, int fd, void *buf, size_t n,
				 int max_ms)
{
	size_t got = 0;

	while (got < n) {
		ssize_t k;

		if (!rig_wait_fd(r, fd, POLLIN, max_ms))
			TEST_FAIL("host socket: %zu of %zu bytes came", got, n);
		k = recv(fd, (uint8_t *)buf + got, n - got, MSG_DONTWAIT);
		if (k < 0 && errno == EAGAIN)
			continue;
		ASSERT_GT_INT(k, 0);
		got += (size_t)k;
	}
}

/* ---------------------------------------------------------------- forwards */

/* A forward from 127.0.0.1:hport to gip:gport. */
static inline struct vpnkit_forward
forward_spec(int proto, uint16_t hport, const uint8_t gip[4], uint16_t gport)
{
	struct vpnkit_forward fw;
	struct sockaddr_in h = { .sin_family = AF_INET,
				 .sin_port = htons(hport) };
	struct sockaddr_in g = { .sin_family = AF_INET,
				 .sin_port = htons(gport) };

	memset(&fw, 0, sizeof(fw));
	fw.proto = proto;
	h.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	memcpy(&g.sin_addr, gip, 4);
	memcpy(&fw.host, &h, sizeof(h));
	memcpy(&fw.guest, &g, sizeof(g));
	return fw;
}

/* A port nobody uses now for either protocol (bound and released). */
static inline uint16_t free_port(void)
{
	int tries;

	for (tries = 0; tries < 20; tries++) {
		uint16_t port;
		int fd = host_socket(SOCK_DGRAM, false, &port);
		int fd2 = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_in sin = { .sin_family = AF_INET,
					   .sin_port = htons(port) };
		int err;

		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		err = bind(fd2, (struct sockaddr *)&sin, sizeof(sin));
		close(fd2);
		close(fd);
		if (err == 0)
			return port;
	}
	TEST_FAIL("no free port");
}

static inline bool port_is_free(int type, uint16_t port)
{
	int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET,
				   .sin_port = htons(port) };
	bool ok;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
	close(fd);
	return ok;
}

/* A recognisable byte pattern: byte i of a stream seeded with seed. */
static inline uint8_t pattern(unsigned seed, size_t i)
{
	return (uint8_t)((i * 131 + seed * 7 + (i >> 8)) & 0xff);
}

static inline void fill_pattern(uint8_t *buf, size_t n, unsigned seed,
				size_t from)
{
	size_t i;

	for (i = 0; i < n; i++)
		buf[i] = pattern(seed, from + i);
}

#endif
