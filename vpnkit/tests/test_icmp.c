// SPDX-License-Identifier: MIT
/*
 * Unit tests for vpnkit/icmp.c, driven through the public API: frames
 * built by hand go in through vpnkit_port_input, and what the port's send
 * callback receives is checked byte by byte, checksums recomputed here.
 * Echo requests to the gateway are answered at once; those to the host
 * address travel through real ping sockets to loopback, in a network
 * namespace of the test's own where ping_group_range is opened (or left
 * closed, to see the warning), so the machine's settings are not touched.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <base/endian.h>
#include <base/test.h>
#include <vpnkit/vpnkit.h>

#include "../internal.h" /* vk_gateway_mac */

#define MAX_FRAMES 16
#define FRAME_CAP 2048
#define PAYLOAD 56

/* ---------------------------------------------------------------- the rig */

struct capture {
	uint8_t frame[MAX_FRAMES][FRAME_CAP];
	size_t len[MAX_FRAMES];
	unsigned n;
};

static int cap_send(void *opaque, const struct vpnkit_offload *off,
		    const struct iovec *iov, int iovcnt)
{
	struct capture *c = opaque;
	size_t len = 0;

	(void)off;
	ASSERT_LT_U64(c->n, MAX_FRAMES);
	for (int i = 0; i < iovcnt; i++) {
		ASSERT_LE_U64(len + iov[i].iov_len, FRAME_CAP);
		memcpy(c->frame[c->n] + len, iov[i].iov_base, iov[i].iov_len);
		len += iov[i].iov_len;
	}
	c->len[c->n++] = len;
	return 0;
}

static const struct vpnkit_port_ops cap_ops = { .send = cap_send };

struct logbuf {
	char text[8192];
	size_t len;
};

static void log_capture(void *opaque, enum log_level level, const char *msg)
{
	struct logbuf *lb = opaque;
	int n = snprintf(lb->text + lb->len, sizeof(lb->text) - lb->len,
			 "%s: %s\n", log_level_name(level), msg);

	if (n > 0 && (size_t)n < sizeof(lb->text) - lb->len)
		lb->len += (size_t)n;
}

struct rig {
	struct vpnkit *vk;
	struct vpnkit_port *port;
	struct capture cap;
	struct logbuf log;
	uint8_t mac[6];
	struct in_addr ip;
	struct in6_addr ip6; /* the VM's SLAAC address in the prefix */
	struct in6_addr ip6_ll; /* and its link-local one */
	struct in6_addr prefix;
};

static struct in6_addr addr6(const char *s)
{
	struct in6_addr a;

	ASSERT_EQ_INT(inet_pton(AF_INET6, s, &a), 1);
	return a;
}

static struct in_addr addr4(const char *s)
{
	struct in_addr a;

	ASSERT_EQ_INT(inet_pton(AF_INET, s, &a), 1);
	return a;
}

/* prefix + the low 64 bits */
static struct in6_addr in_prefix(const struct rig *r, uint64_t iid)
{
	struct in6_addr a = r->prefix;

	store_be64(&a.s6_addr[8], iid);
	return a;
}

static void rig_up(struct rig *r, unsigned icmp_idle_s)
{
	struct vpnkit_config cfg;

	memset(r, 0, sizeof(*r));
	vpnkit_config_init(&cfg);
	cfg.dns_mode = VPNKIT_DNS_OFF;
	if (icmp_idle_s)
		cfg.icmp_idle_s = icmp_idle_s;
	cfg.log.fn = log_capture;
	cfg.log.opaque = &r->log;
	cfg.log.level = LOG_LEVEL_DEBUG;
	ASSERT_OK(vpnkit_new(&cfg, &r->vk));
	ASSERT_OK(vpnkit_port_new(r->vk, NULL, &cap_ops, &r->cap, &r->port));
	vpnkit_port_mac(r->port, r->mac);
	r->ip = vpnkit_port_ip(r->port);
	r->prefix = cfg.prefix6;
	r->ip6 = in_prefix(r, 0x0250aafffebbcc01ull);
	r->ip6_ll = addr6("fe80::250:aaff:febb:cc01");
	r->cap.n = 0; /* forget the router advertisement greeting the port */
}

static void rig_down(struct rig *r)
{
	vpnkit_free(r->vk);
}

static struct vpnkit_stats stats(const struct rig *r)
{
	struct vpnkit_stats s;

	vpnkit_stats_get(r->vk, &s);
	return s;
}

static void inject(struct rig *r, const uint8_t *f, size_t len)
{
	ASSERT_OK(vpnkit_port_input(r->port, NULL, f, len));
}

/* Run the loop until n frames have come out, or max_ms have passed. */
static void run_until_frames(struct rig *r, unsigned n, int max_ms)
{
	for (int waited = 0; r->cap.n < n && waited < max_ms; waited += 10)
		ASSERT_OK(vpnkit_run_once(r->vk, 10));
}

/*
 * A network namespace of this test process's own, with loopback up and,
 * if allow_ping, ping sockets allowed for every group. Skips the test
 * where namespaces cannot be made (no CAP_SYS_ADMIN).
 */
static void private_netns(bool allow_ping)
{
	struct ifreq ifr;
	int s, fd;

	if (unshare(CLONE_NEWNET) < 0)
		TEST_SKIP("cannot make a network namespace: %s",
			  strerror(errno));
	s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ASSERT_TRUE(s >= 0);
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, "lo");
	ASSERT_OK(ioctl(s, SIOCGIFFLAGS, &ifr));
	ifr.ifr_flags |= IFF_UP;
	ASSERT_OK(ioctl(s, SIOCSIFFLAGS, &ifr));
	close(s);
	if (!allow_ping)
		return;
	fd = open("/proc/sys/net/ipv4/ping_group_range", O_WRONLY | O_CLOEXEC);
	ASSERT_TRUE(fd >= 0);
	ASSERT_EQ_INT(write(fd, "0 2147483647", 12), 12);
	close(fd);
}

/* Run a program (ip(8)) quietly; true if it exited with status 0. */
static bool run(char *const argv[])
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return false;
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY | O_CLOEXEC);

		if (null >= 0) {
			dup2(null, 1);
			dup2(null, 2);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) != pid)
		return false;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* ---------------------------------------------------------------- checksums */

/* RFC 1071, written independently of the library's. */
static uint32_t sum16(uint32_t s, const void *buf, size_t n)
{
	const uint8_t *p = buf;
	size_t i;

	for (i = 0; i + 1 < n; i += 2)
		s += (uint32_t)p[i] << 8 | p[i + 1];
	if (n & 1)
		s += (uint32_t)p[n - 1] << 8;
	return s;
}

static uint16_t sum_final(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

static uint32_t pseudo6(const struct in6_addr *src, const struct in6_addr *dst,
			size_t len)
{
	uint8_t tail[8] = { 0 };

	store_be32(tail, (uint32_t)len);
	tail[7] = IPPROTO_ICMPV6;
	return sum16(sum16(sum16(0, src, 16), dst, 16), tail, 8);
}

/* ---------------------------------------------------------------- frames */

/* An echo message: header and a recognisable payload of len bytes. */
static size_t echo_msg(uint8_t *m, uint8_t type, uint8_t code, uint16_t id,
		       uint16_t seq, size_t len)
{
	m[0] = type;
	m[1] = code;
	m[2] = 0;
	m[3] = 0;
	store_be16(m + 4, id);
	store_be16(m + 6, seq);
	for (size_t i = 0; i < len; i++)
		m[8 + i] = (uint8_t)(i * 7 + 3);
	return 8 + len;
}

/* The VM's IPv4 frame to dst carrying msg; the ICMP checksum is filled in
 * (a test breaks it afterwards if it wants it wrong). */
static size_t ip4_frame(const struct rig *r, uint8_t *f, struct in_addr dst,
			const uint8_t *msg, size_t len)
{
	uint8_t *ip = f + 14;

	memcpy(f, vk_gateway_mac, 6);
	memcpy(f + 6, r->mac, 6);
	store_be16(f + 12, 0x0800);
	memset(ip, 0, 20);
	ip[0] = 0x45;
	store_be16(ip + 2, (uint16_t)(20 + len));
	store_be16(ip + 4, 0x1234);
	store_be16(ip + 6, 0x4000);
	ip[8] = 64;
	ip[9] = IPPROTO_ICMP;
	memcpy(ip + 12, &r->ip, 4);
	memcpy(ip + 16, &dst, 4);
	store_be16(ip + 10, sum_final(sum16(0, ip, 20)));
	memcpy(ip + 20, msg, len);
	if (len >= 4) {
		ip[22] = 0;
		ip[23] = 0;
		store_be16(ip + 22, sum_final(sum16(0, ip + 20, len)));
	}
	return 34 + len;
}

/* The VM's IPv6 frame from src to dst (Ethernet dst dmac), ICMPv6
 * checksum filled in. */
static size_t ip6_frame(const struct rig *r, uint8_t *f, const uint8_t *dmac,
			const struct in6_addr *src, const struct in6_addr *dst,
			uint8_t hop, const uint8_t *msg, size_t len)
{
	uint8_t *ip = f + 14;

	memcpy(f, dmac, 6);
	memcpy(f + 6, r->mac, 6);
	store_be16(f + 12, 0x86dd);
	memset(ip, 0, 40);
	ip[0] = 0x60;
	store_be16(ip + 4, (uint16_t)len);
	ip[6] = IPPROTO_ICMPV6;
	ip[7] = hop;
	memcpy(ip + 8, src, 16);
	memcpy(ip + 24, dst, 16);
	memcpy(ip + 40, msg, len);
	if (len >= 4) {
		ip[42] = 0;
		ip[43] = 0;
		store_be16(ip + 42, sum_final(sum16(pseudo6(src, dst, len),
						    ip + 40, len)));
	}
	return 54 + len;
}

/* ---------------------------------------------------------------- checks */

/*
 * Frame i is an echo reply from src to the VM's IPv4 address with this id
 * and sequence and the payload echo_msg makes; every checksum is right.
 */
static void check_reply4(const struct rig *r, unsigned i, struct in_addr src,
			 uint16_t id, uint16_t seq, size_t payload)
{
	const uint8_t *f = r->cap.frame[i];
	const uint8_t *ip = f + 14, *m = f + 34;
	uint8_t want[8 + PAYLOAD];

	ASSERT_LT_U64(i, r->cap.n);
	ASSERT_EQ_U64(r->cap.len[i], 34 + 8 + payload);
	ASSERT_EQ_MEM(f, r->mac, 6);
	ASSERT_EQ_MEM(f + 6, vk_gateway_mac, 6);
	ASSERT_EQ_U64(load_be16(f + 12), 0x0800);
	ASSERT_EQ_U64(ip[0], 0x45);
	ASSERT_EQ_U64(load_be16(ip + 2), 20 + 8 + payload);
	ASSERT_EQ_U64(ip[9], IPPROTO_ICMP);
	ASSERT_GT_U64(ip[8], 0);
	ASSERT_EQ_U64(sum_final(sum16(0, ip, 20)), 0);
	ASSERT_EQ_MEM(ip + 12, &src, 4);
	ASSERT_EQ_MEM(ip + 16, &r->ip, 4);
	ASSERT_EQ_U64(sum_final(sum16(0, m, 8 + payload)), 0);
	ASSERT_LE_U64(payload, PAYLOAD);
	echo_msg(want, 0, 0, id, seq, payload);
	ASSERT_EQ_U64(m[0], 0); /* echo reply */
	ASSERT_EQ_U64(m[1], 0);
	ASSERT_EQ_U64(load_be16(m + 4), id);
	ASSERT_EQ_U64(load_be16(m + 6), seq);
	ASSERT_EQ_MEM(m + 8, want + 8, payload);
}

/* The same for IPv6, from src to dst. */
static void check_reply6(const struct rig *r, unsigned i,
			 const struct in6_addr *src, const struct in6_addr *dst,
			 uint16_t id, uint16_t seq, size_t payload)
{
	const uint8_t *f = r->cap.frame[i];
	const uint8_t *ip = f + 14, *m = f + 54;
	uint8_t want[8 + PAYLOAD];

	ASSERT_LT_U64(i, r->cap.n);
	ASSERT_EQ_U64(r->cap.len[i], 54 + 8 + payload);
	ASSERT_EQ_MEM(f, r->mac, 6);
	ASSERT_EQ_MEM(f + 6, vk_gateway_mac, 6);
	ASSERT_EQ_U64(load_be16(f + 12), 0x86dd);
	ASSERT_EQ_U64(ip[0] >> 4, 6);
	ASSERT_EQ_U64(load_be16(ip + 4), 8 + payload);
	ASSERT_EQ_U64(ip[6], IPPROTO_ICMPV6);
	ASSERT_GT_U64(ip[7], 0);
	ASSERT_EQ_MEM(ip + 8, src, 16);
	ASSERT_EQ_MEM(ip + 24, dst, 16);
	ASSERT_EQ_U64(sum_final(sum16(pseudo6(src, dst, 8 + payload), m,
				      8 + payload)),
		      0);
	ASSERT_LE_U64(payload, PAYLOAD);
	echo_msg(want, 129, 0, id, seq, payload);
	ASSERT_EQ_U64(m[0], 129); /* echo reply */
	ASSERT_EQ_U64(m[1], 0);
	ASSERT_EQ_U64(load_be16(m + 4), id);
	ASSERT_EQ_U64(load_be16(m + 6), seq);
	ASSERT_EQ_MEM(m + 8, want + 8, payload);
}

/*
 * Frame i is an ICMP error of this type and code from src to the VM,
 * whose quote starts with the qlen bytes at q; returns the quote.
 */
static const uint8_t *check_error4(const struct rig *r, unsigned i,
				   struct in_addr src, uint8_t type,
				   uint8_t code, const uint8_t *q, size_t qlen)
{
	const uint8_t *f = r->cap.frame[i];
	const uint8_t *ip = f + 14, *m = f + 34;
	size_t len;

	ASSERT_LT_U64(i, r->cap.n);
	ASSERT_GE_U64(r->cap.len[i], 34 + 8 + qlen);
	len = r->cap.len[i] - 34;
	ASSERT_EQ_MEM(f, r->mac, 6);
	ASSERT_EQ_U64(load_be16(f + 12), 0x0800);
	ASSERT_EQ_U64(load_be16(ip + 2), 20 + len);
	ASSERT_EQ_U64(ip[9], IPPROTO_ICMP);
	ASSERT_EQ_U64(sum_final(sum16(0, ip, 20)), 0);
	ASSERT_EQ_MEM(ip + 12, &src, 4);
	ASSERT_EQ_MEM(ip + 16, &r->ip, 4);
	ASSERT_EQ_U64(sum_final(sum16(0, m, len)), 0);
	ASSERT_EQ_U64(m[0], type);
	ASSERT_EQ_U64(m[1], code);
	ASSERT_EQ_MEM(m + 8, q, qlen);
	return m + 8;
}

static const uint8_t *check_error6(const struct rig *r, unsigned i,
				   const struct in6_addr *src,
				   const struct in6_addr *dst, uint8_t type,
				   uint8_t code, const uint8_t *q, size_t qlen)
{
	const uint8_t *f = r->cap.frame[i];
	const uint8_t *ip = f + 14, *m = f + 54;
	size_t len;

	ASSERT_LT_U64(i, r->cap.n);
	ASSERT_GE_U64(r->cap.len[i], 54 + 8 + qlen);
	len = r->cap.len[i] - 54;
	ASSERT_EQ_MEM(f, r->mac, 6);
	ASSERT_EQ_U64(load_be16(f + 12), 0x86dd);
	ASSERT_EQ_U64(load_be16(ip + 4), len);
	ASSERT_EQ_U64(ip[6], IPPROTO_ICMPV6);
	ASSERT_EQ_MEM(ip + 8, src, 16);
	ASSERT_EQ_MEM(ip + 24, dst, 16);
	ASSERT_EQ_U64(sum_final(sum16(pseudo6(src, dst, len), m, len)), 0);
	ASSERT_EQ_U64(m[0], type);
	ASSERT_EQ_U64(m[1], code);
	ASSERT_EQ_MEM(m + 8, q, qlen);
	return m + 8;
}

static bool log_has(const struct rig *r, const char *s)
{
	return strstr(r->log.text, s) != NULL;
}

static unsigned log_count(const struct rig *r, const char *s)
{
	unsigned n = 0;

	for (const char *p = r->log.text; (p = strstr(p, s)); p++)
		n++;
	return n;
}

/* ---------------------------------------------------------------- IPv4 */

TEST(echo_to_gateway_answered)
{
	struct rig r;
	uint8_t m[64], f[128];
	struct in_addr gw = addr4("192.168.65.1");
	size_t len;

	rig_up(&r, 0);
	len = echo_msg(m, 8, 0, 0x4242, 7, PAYLOAD);
	inject(&r, f, ip4_frame(&r, f, gw, m, len));
	ASSERT_EQ_U64(r.cap.n, 1);
	check_reply4(&r, 0, gw, 0x4242, 7, PAYLOAD);

	/* An empty payload is fine too. */
	len = echo_msg(m, 8, 0, 0x4242, 8, 0);
	inject(&r, f, ip4_frame(&r, f, gw, m, len));
	ASSERT_EQ_U64(r.cap.n, 2);
	check_reply4(&r, 1, gw, 0x4242, 8, 0);
	ASSERT_EQ_U64(stats(&r).bad, 0);
	ASSERT_EQ_U64(stats(&r).icmp_flows, 0); /* no socket for this */
	ASSERT_EQ_U64(stats(&r).fds, 0);
	rig_down(&r);
}

TEST(echo_malformed_counted)
{
	struct rig r;
	uint8_t m[64], f[128];
	struct in_addr gw = addr4("192.168.65.1");
	size_t len, flen;

	rig_up(&r, 0);
	/* A flipped payload byte: the checksum no longer matches. */
	len = echo_msg(m, 8, 0, 1, 1, PAYLOAD);
	flen = ip4_frame(&r, f, gw, m, len);
	f[flen - 1] ^= 0x40;
	inject(&r, f, flen);
	ASSERT_EQ_U64(stats(&r).bad, 1);

	/* Shorter than an ICMP header. */
	inject(&r, f, ip4_frame(&r, f, gw, m, 4));
	ASSERT_EQ_U64(stats(&r).bad, 2);

	/* An echo request with a code that does not exist. */
	len = echo_msg(m, 8, 3, 1, 1, 8);
	inject(&r, f, ip4_frame(&r, f, gw, m, len));
	ASSERT_EQ_U64(stats(&r).bad, 3);

	ASSERT_EQ_U64(r.cap.n, 0);
	ASSERT_EQ_U64(stats(&r).dropped, 3);
	rig_down(&r);
}

TEST(other_icmp_types_dropped)
{
	struct rig r;
	uint8_t m[64], f[128];
	struct in_addr gw = addr4("192.168.65.1");
	size_t len;

	rig_up(&r, 0);
	/* A timestamp request and an echo reply: well formed, not carried. */
	len = echo_msg(m, 13, 0, 1, 1, 12);
	inject(&r, f, ip4_frame(&r, f, gw, m, len));
	len = echo_msg(m, 0, 0, 1, 1, 8);
	inject(&r, f, ip4_frame(&r, f, addr4("192.0.2.1"), m, len));
	ASSERT_EQ_U64(r.cap.n, 0);
	ASSERT_EQ_U64(stats(&r).dropped, 2);
	ASSERT_EQ_U64(stats(&r).bad, 0);
	rig_down(&r);
}

TEST(echo_to_subnet_not_carried)
{
	struct rig r;
	uint8_t m[64], f[128];
	size_t len;

	rig_up(&r, 0);
	/* Nobody has .200, and broadcast pings are not answered. */
	len = echo_msg(m, 8, 0, 9, 1, 8);
	inject(&r, f, ip4_frame(&r, f, addr4("192.168.65.200"), m, len));
	inject(&r, f, ip4_frame(&r, f, addr4("192.168.65.255"), m, len));
	run_until_frames(&r, 1, 50);
	ASSERT_EQ_U64(r.cap.n, 0);
	ASSERT_EQ_U64(stats(&r).fds, 0);
	ASSERT_EQ_U64(stats(&r).dropped, 2);
	ASSERT_EQ_U64(stats(&r).bad, 0);
	rig_down(&r);
}

TEST(echo_to_host_through_ping_socket)
{
	struct rig r;
	uint8_t m[64], f[128];
	struct in_addr host = addr4("192.168.65.2");
	size_t len;

	private_netns(true);
	rig_up(&r, 0);
	len = echo_msg(m, 8, 0, 0x7777, 1, PAYLOAD);
	inject(&r, f, ip4_frame(&r, f, host, m, len));
	ASSERT_EQ_U64(stats(&r).icmp_flows, 1);
	ASSERT_EQ_U64(stats(&r).fds, 1);
	run_until_frames(&r, 1, 2000);
	ASSERT_EQ_U64(r.cap.n, 1);
	/* From the address the VM pinged, with the VM's own id back. */
	check_reply4(&r, 0, host, 0x7777, 1, PAYLOAD);

	/* The next request takes the same flow and socket. */
	len = echo_msg(m, 8, 0, 0x7777, 2, 20);
	inject(&r, f, ip4_frame(&r, f, host, m, len));
	run_until_frames(&r, 2, 2000);
	check_reply4(&r, 1, host, 0x7777, 2, 20);
	ASSERT_EQ_U64(stats(&r).icmp_flows, 1);
	ASSERT_EQ_U64(stats(&r).fds, 1);

	/* Another id is another flow. */
	len = echo_msg(m, 8, 0, 0x0001, 1, 8);
	inject(&r, f, ip4_frame(&r, f, host, m, len));
	run_until_frames(&r, 3, 2000);
	check_reply4(&r, 2, host, 0x0001, 1, 8);
	ASSERT_EQ_U64(stats(&r).fds, 2);
	ASSERT_EQ_U64(stats(&r).bad, 0);
	rig_down(&r);
}

/* The request leaves the host with the VM's TTL (a raw socket in the
 * test's namespace sees it on loopback), so a VM's traceroute works. */
TEST(echo_keeps_the_vm_ttl)
{
	struct rig r;
	uint8_t m[64], f[160], seen[256];
	struct in_addr host = addr4("192.168.65.2");
	size_t len, flen;
	int raw, ttl = 0;

	private_netns(true);
	raw = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
	if (raw < 0)
		TEST_SKIP("no raw socket: %s", strerror(errno));
	rig_up(&r, 0);
	len = echo_msg(m, 8, 0, 0x4444, 1, 8);
	flen = ip4_frame(&r, f, host, m, len);
	f[14 + 8] = 5; /* TTL, then the header checksum again */
	f[14 + 10] = 0;
	f[14 + 11] = 0;
	store_be16(f + 14 + 10, sum_final(sum16(0, f + 14, 20)));
	inject(&r, f, flen);
	run_until_frames(&r, 1, 2000);
	check_reply4(&r, 0, host, 0x4444, 1, 8);
	for (int i = 0; i < 8 && ttl == 0; i++) {
		ssize_t n = recv(raw, seen, sizeof(seen), MSG_DONTWAIT);

		if (n >= 28 && seen[20] == 8)
			ttl = seen[8];
	}
	ASSERT_EQ_INT(ttl, 5);
	close(raw);
	rig_down(&r);
}

TEST(echo_flows_expire_when_idle)
{
	struct rig r;
	uint8_t m[64], f[128];
	struct in_addr host = addr4("192.168.65.2");
	size_t len;

	private_netns(true);
	rig_up(&r, 1);
	len = echo_msg(m, 8, 0, 0x5151, 1, 8);
	inject(&r, f, ip4_frame(&r, f, host, m, len));
	run_until_frames(&r, 1, 2000);
	check_reply4(&r, 0, host, 0x5151, 1, 8);
	ASSERT_EQ_U64(stats(&r).fds, 1);
	for (int waited = 0; stats(&r).fds && waited < 5000; waited += 50)
		ASSERT_OK(vpnkit_run_once(r.vk, 50));
	ASSERT_EQ_U64(stats(&r).fds, 0);
	ASSERT_EQ_U64(stats(&r).icmp_flows, 0);

	/* A new request opens a new flow. */
	len = echo_msg(m, 8, 0, 0x5151, 2, 8);
	inject(&r, f, ip4_frame(&r, f, host, m, len));
	run_until_frames(&r, 2, 2000);
	check_reply4(&r, 1, host, 0x5151, 2, 8);
	rig_down(&r);
}

TEST(ping_sockets_denied_warns_once)
{
	struct rig r;
	uint8_t m[64], f[128];
	struct in_addr host = addr4("192.168.65.2");
	size_t len;

	/* A new namespace starts with ping_group_range "1 0": nobody. */
	private_netns(false);
	rig_up(&r, 0);
	len = echo_msg(m, 8, 0, 3, 1, 8);
	inject(&r, f, ip4_frame(&r, f, host, m, len));
	len = echo_msg(m, 8, 0, 3, 2, 8);
	inject(&r, f, ip4_frame(&r, f, host, m, len));
	run_until_frames(&r, 1, 100);
	ASSERT_EQ_U64(r.cap.n, 0);
	ASSERT_EQ_U64(log_count(&r, "ICMP echo to outside hosts disabled"), 1);
	ASSERT_TRUE(log_has(&r, "ping_group_range"));
	ASSERT_EQ_U64(stats(&r).fds, 0);
	ASSERT_EQ_U64(stats(&r).icmp_flows, 0);
	ASSERT_EQ_U64(stats(&r).bad, 0);

	/* The gateway still answers. */
	len = echo_msg(m, 8, 0, 3, 3, 8);
	inject(&r, f, ip4_frame(&r, f, addr4("192.168.65.1"), m, len));
	ASSERT_EQ_U64(r.cap.n, 1);
	check_reply4(&r, 0, addr4("192.168.65.1"), 3, 3, 8);
	rig_down(&r);
}

TEST(echo_without_route_unreachable)
{
	struct rig r;
	uint8_t m[64], f[160];
	struct in6_addr far6 = addr6("2001:db8::1"), gw6;
	size_t len, flen;

	/* A namespace with loopback alone: no route anywhere else. */
	private_netns(true);
	rig_up(&r, 0);
	len = echo_msg(m, 8, 0, 0x2222, 4, PAYLOAD);
	flen = ip4_frame(&r, f, addr4("192.0.2.1"), m, len);
	inject(&r, f, flen);
	ASSERT_EQ_U64(r.cap.n, 1);
	/* Network unreachable from the gateway, quoting the whole request. */
	check_error4(&r, 0, addr4("192.168.65.1"), 3, 0, f + 14, flen - 14);
	ASSERT_EQ_U64(stats(&r).fds, 0);

	gw6 = in_prefix(&r, 1);
	len = echo_msg(m, 128, 0, 0x2222, 5, PAYLOAD);
	flen = ip6_frame(&r, f, vk_gateway_mac, &r.ip6, &far6, 64, m, len);
	inject(&r, f, flen);
	ASSERT_EQ_U64(r.cap.n, 2);
	check_error6(&r, 1, &gw6, &r.ip6, 1, 0, f + 14, flen - 14);
	ASSERT_EQ_U64(stats(&r).bad, 0);
	rig_down(&r);
}

/*
 * The host's own errors for a flow come back to the VM: a neighbour on a
 * veth link that never answers makes the host's stack report "host
 * unreachable" from its own address on that link after its three probes.
 */
TEST(echo_errors_relayed)
{
	struct rig r;
	uint8_t m4[64], m6[64], f4[160], f6[160];
	struct in6_addr here6 = addr6("fd99::1"), there6 = addr6("fd99::2");
	struct in_addr here = addr4("10.9.0.1"), there = addr4("10.9.0.2");
	const uint8_t *q;
	size_t len4, len6;
	unsigned i4, i6;

	private_netns(true);
	if (!run((char *[]){ "ip", "link", "add", "vkt0", "type", "veth",
			     "peer", "name", "vkt1", NULL }) ||
	    !run((char *[]){ "ip", "addr", "add", "10.9.0.1/24", "dev", "vkt0",
			     NULL }) ||
	    !run((char *[]){ "ip", "-6", "addr", "add", "fd99::1/64", "dev",
			     "vkt0", "nodad", NULL }) ||
	    !run((char *[]){ "ip", "link", "set", "vkt0", "up", NULL }) ||
	    !run((char *[]){ "ip", "link", "set", "vkt1", "up", NULL }))
		TEST_SKIP("cannot make a veth pair with ip(8)");
	rig_up(&r, 0);
	len4 = echo_msg(m4, 8, 0, 0x3333, 1, PAYLOAD);
	inject(&r, f4, ip4_frame(&r, f4, there, m4, len4));
	len6 = echo_msg(m6, 128, 0, 0x3333, 2, PAYLOAD);
	inject(&r, f6,
	       ip6_frame(&r, f6, vk_gateway_mac, &r.ip6, &there6, 64, m6,
			 len6));
	ASSERT_EQ_U64(r.cap.n, 0);
	run_until_frames(&r, 2, 10000);
	ASSERT_EQ_U64(r.cap.n, 2);
	i4 = load_be16(r.cap.frame[0] + 12) == 0x0800 ? 0 : 1;
	i6 = 1 - i4;

	/* Host unreachable from 10.9.0.1, quoting an IP header from the VM
	 * to 10.9.0.2 and the request with the VM's own id. */
	q = check_error4(&r, i4, here, 3, 1, (const uint8_t *)"\x45", 1);
	ASSERT_EQ_U64(q[9], IPPROTO_ICMP);
	ASSERT_EQ_MEM(q + 12, &r.ip, 4);
	ASSERT_EQ_MEM(q + 16, &there, 4);
	ASSERT_EQ_MEM(q + 20, f4 + 34, len4); /* checksum included */

	/* Address unreachable from fd99::1, the same way. */
	q = check_error6(&r, i6, &here6, &r.ip6, 1, 3, (const uint8_t *)"\x60",
			 1);
	ASSERT_EQ_U64(q[6], IPPROTO_ICMPV6);
	ASSERT_EQ_MEM(q + 8, &r.ip6, 16);
	ASSERT_EQ_MEM(q + 24, &there6, 16);
	ASSERT_EQ_MEM(q + 40, f6 + 54, len6);
	ASSERT_EQ_U64(stats(&r).bad, 0);
	rig_down(&r);
}

/* ---------------------------------------------------------------- IPv6 */

TEST(echo6_to_gateway_answered)
{
	struct rig r;
	uint8_t m[64], f[160];
	struct in6_addr gw, gw_ll = addr6("fe80::1");
	size_t len;

	rig_up(&r, 0);
	gw = in_prefix(&r, 1);
	len = echo_msg(m, 128, 0, 0xbeef, 1, PAYLOAD);
	inject(&r, f,
	       ip6_frame(&r, f, vk_gateway_mac, &r.ip6, &gw, 64, m, len));
	ASSERT_EQ_U64(r.cap.n, 1);
	check_reply6(&r, 0, &gw, &r.ip6, 0xbeef, 1, PAYLOAD);

	/* The link-local gateway, from the VM's link-local address. */
	len = echo_msg(m, 128, 0, 0xbeef, 2, 16);
	inject(&r, f,
	       ip6_frame(&r, f, vk_gateway_mac, &r.ip6_ll, &gw_ll, 64, m, len));
	ASSERT_EQ_U64(r.cap.n, 2);
	check_reply6(&r, 1, &gw_ll, &r.ip6_ll, 0xbeef, 2, 16);
	ASSERT_EQ_U64(stats(&r).bad, 0);
	rig_down(&r);
}

TEST(echo6_to_all_nodes_answered_by_gateway)
{
	struct rig r;
	uint8_t m[64], f[160];
	const uint8_t mcast_mac[6] = { 0x33, 0x33, 0, 0, 0, 1 };
	struct in6_addr all = addr6("ff02::1"), gw_ll = addr6("fe80::1");
	size_t len;

	rig_up(&r, 0);
	len = echo_msg(m, 128, 0, 0x1111, 5, 8);
	inject(&r, f, ip6_frame(&r, f, mcast_mac, &r.ip6_ll, &all, 1, m, len));
	ASSERT_EQ_U64(r.cap.n, 1);
	check_reply6(&r, 0, &gw_ll, &r.ip6_ll, 0x1111, 5, 8);
	rig_down(&r);
}

TEST(echo6_malformed_counted)
{
	struct rig r;
	uint8_t m[64], f[160];
	struct in6_addr gw;
	size_t len, flen;

	rig_up(&r, 0);
	gw = in_prefix(&r, 1);
	len = echo_msg(m, 128, 0, 1, 1, 16);
	flen = ip6_frame(&r, f, vk_gateway_mac, &r.ip6, &gw, 64, m, len);
	f[flen - 3] ^= 0x01;
	inject(&r, f, flen);
	ASSERT_EQ_U64(stats(&r).bad, 1);

	inject(&r, f, ip6_frame(&r, f, vk_gateway_mac, &r.ip6, &gw, 64, m, 6));
	ASSERT_EQ_U64(stats(&r).bad, 2);

	len = echo_msg(m, 128, 1, 1, 1, 16);
	inject(&r, f,
	       ip6_frame(&r, f, vk_gateway_mac, &r.ip6, &gw, 64, m, len));
	ASSERT_EQ_U64(stats(&r).bad, 3);
	ASSERT_EQ_U64(r.cap.n, 0);
	rig_down(&r);
}

TEST(icmp6_other_types_dropped)
{
	struct rig r;
	uint8_t m[64], f[160];
	const uint8_t mld_mac[6] = { 0x33, 0x33, 0, 0, 0, 0x16 };
	struct in6_addr mld = addr6("ff02::16"), gw;
	size_t len;

	rig_up(&r, 0);
	gw = in_prefix(&r, 1);
	/* A multicast listener report (type 143) and an echo reply. */
	memset(m, 0, sizeof(m));
	m[0] = 143;
	inject(&r, f, ip6_frame(&r, f, mld_mac, &r.ip6_ll, &mld, 1, m, 8));
	len = echo_msg(m, 129, 0, 1, 1, 8);
	inject(&r, f,
	       ip6_frame(&r, f, vk_gateway_mac, &r.ip6, &gw, 64, m, len));
	ASSERT_EQ_U64(r.cap.n, 0);
	ASSERT_EQ_U64(stats(&r).dropped, 2);
	ASSERT_EQ_U64(stats(&r).bad, 0);
	rig_down(&r);
}

TEST(echo6_to_host_through_ping_socket)
{
	struct rig r;
	uint8_t m[64], f[160];
	struct in6_addr host;
	size_t len;

	private_netns(true);
	rig_up(&r, 0);
	host = in_prefix(&r, 2);
	len = echo_msg(m, 128, 0, 0x6666, 9, PAYLOAD);
	inject(&r, f,
	       ip6_frame(&r, f, vk_gateway_mac, &r.ip6, &host, 64, m, len));
	ASSERT_EQ_U64(stats(&r).icmp_flows, 1);
	run_until_frames(&r, 1, 2000);
	ASSERT_EQ_U64(r.cap.n, 1);
	check_reply6(&r, 0, &host, &r.ip6, 0x6666, 9, PAYLOAD);
	ASSERT_EQ_U64(stats(&r).bad, 0);
	rig_down(&r);
}

static const struct test_case tests[] = {
	TEST_CASE(echo_to_gateway_answered),
	TEST_CASE(echo_malformed_counted),
	TEST_CASE(other_icmp_types_dropped),
	TEST_CASE(echo_to_subnet_not_carried),
	TEST_CASE(echo_to_host_through_ping_socket),
	TEST_CASE(echo_keeps_the_vm_ttl),
	TEST_CASE(echo_flows_expire_when_idle),
	TEST_CASE(ping_sockets_denied_warns_once),
	TEST_CASE(echo_without_route_unreachable),
	TEST_CASE(echo_errors_relayed),
	TEST_CASE(echo6_to_gateway_answered),
	TEST_CASE(echo6_to_all_nodes_answered_by_gateway),
	TEST_CASE(echo6_malformed_counted),
	TEST_CASE(icmp6_other_types_dropped),
	TEST_CASE(echo6_to_host_through_ping_socket),
};

TEST_MAIN(tests);
