// SPDX-License-Identifier: MIT
/*
 * Unit tests for vpnkit/icmp.c, driven through the public API on rig.h's
 * rig: frames built with frames.h go in through vpnkit_port_input, and
 * what the port's send callback receives is checked field by field, with
 * checksums recomputed by frames.h.
 * Echo requests to the gateway are answered at once; those to the host
 * address travel through real ping sockets to loopback, in a network
 * namespace of the test's own where ping_group_range is opened (or left
 * closed, to see the warning), so the machine's settings are not touched.
 */
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

#include "frames.h"
#include "rig.h"

#define PAYLOAD 56

/* ---------------------------------------------------------------- the rig */

/* What the instance logged (each case runs in a process of its own). */
static struct rig_logbuf icmp_log;

/* rig.h's rig, with the log kept and ICMP flows idle after icmp_idle_s
 * (0: the default). */
static void icmp_rig(struct rig *r, unsigned icmp_idle_s)
{
	struct vpnkit_config cfg;

	rig_config(&cfg);
	if (icmp_idle_s)
		cfg.icmp_idle_s = icmp_idle_s;
	rig_keep_log(&cfg, &icmp_log);
	rig_start(r, &cfg, 0);
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

/* ---------------------------------------------------------------- frames */

/* An ICMP message laid out as an echo (type, code, id, seq, len bytes of
 * payload) from the VM's IPv4 address to dst, in f. */
static size_t echo4(const struct rig *r, uint8_t *f, const char *dst,
		    uint8_t type, uint8_t code, uint16_t id, uint16_t seq,
		    size_t len)
{
	struct in_addr d = rig_addr4(dst);
	struct fr_l3 a = rig_l3(r, (const uint8_t *)&d);

	return fr_icmp_echo(f, &a, type, code, id, seq, len);
}

/* The same in ICMPv6, from src to dst with this hop limit. */
static size_t echo6(const struct rig *r, uint8_t *f, const void *src,
		    const void *dst, uint8_t hop, uint8_t type, uint8_t code,
		    uint16_t id, uint16_t seq, size_t len)
{
	struct fr_l3 a = rig_l3_from(r, 6, src, dst);

	fr_mac6(a.dst, r->gw_mac, a.dst_mac);
	a.ttl = hop;
	return fr_icmp_echo(f, &a, type, code, id, seq, len);
}

/* ---------------------------------------------------------------- checks */

/*
 * A frame (rig.h checked its lengths and checksums) is an ICMP (af 4) or
 * ICMPv6 message of this type and code from the gateway's MAC to the
 * VM's, from src to dst; v gets it taken apart.
 */
static void check_icmp(const struct rig *r, const struct cap_frame *cf, int af,
		       const void *src, const void *dst, uint8_t type,
		       uint8_t code, struct fr_view *v)
{
	size_t alen = af == 4 ? 4 : 16;

	ASSERT_NOT_NULL(cf);
	ASSERT_NULL(fr_parse(v, cf->data, cf->len, false));
	ASSERT_EQ_MEM(v->dst_mac, r->mac, 6);
	ASSERT_EQ_MEM(v->src_mac, r->gw_mac, 6);
	ASSERT_EQ_INT(v->af, af);
	ASSERT_EQ_U64(v->proto, af == 4 ? IPPROTO_ICMP : IPPROTO_ICMPV6);
	ASSERT_GT_U64(v->ttl, 0);
	ASSERT_EQ_MEM(v->src, src, alen);
	ASSERT_EQ_MEM(v->dst, dst, alen);
	ASSERT_GE_U64(v->l4_len, 8);
	ASSERT_EQ_U64(v->l4[0], type);
	ASSERT_EQ_U64(v->l4[1], code);
}

/*
 * The next frame, within max_ms, is an echo reply from src to dst with
 * this id and sequence and the payload fr_icmp_echo makes.
 */
static void expect_reply(struct rig *r, int max_ms, int af, const void *src,
			 const void *dst, uint16_t id, uint16_t seq,
			 size_t payload)
{
	struct fr_view v;

	check_icmp(r, rig_next(r, max_ms), af, src, dst, af == 4 ? 0 : 129, 0,
		   &v);
	ASSERT_EQ_U64(v.l4_len, 8 + payload);
	ASSERT_EQ_U64(load_be16(v.l4 + 4), id);
	ASSERT_EQ_U64(load_be16(v.l4 + 6), seq);
	for (size_t i = 0; i < payload; i++)
		ASSERT_EQ_U64(v.l4[8 + i], fr_echo_byte(i));
}

/* The VM pings dst (IPv4) and, unless max_ms is NO_REPLY, dst must
 * answer within max_ms. */
#define NO_REPLY (-1)

static void ping4(struct rig *r, const char *dst, uint16_t id, uint16_t seq,
		  size_t len, int max_ms)
{
	struct in_addr d = rig_addr4(dst);
	uint8_t f[256];

	rig_input(r, f, echo4(r, f, dst, 8, 0, id, seq, len));
	if (max_ms != NO_REPLY)
		expect_reply(r, max_ms, 4, &d, r->ip, id, seq, len);
}

/* The same over IPv6, from src to dst. */
static void ping6(struct rig *r, const void *src, const void *dst, uint16_t id,
		  uint16_t seq, size_t len, int max_ms)
{
	uint8_t f[256];

	rig_input(r, f, echo6(r, f, src, dst, 64, 128, 0, id, seq, len));
	if (max_ms != NO_REPLY)
		expect_reply(r, max_ms, 6, dst, src, id, seq, len);
}

/* The ICMP flows and the host sockets they hold. */
static void expect_flows(const struct rig *r, unsigned flows, unsigned fds)
{
	ASSERT_EQ_U64(rig_stats(r).icmp_flows, flows);
	ASSERT_EQ_U64(rig_stats(r).fds, fds);
}

/*
 * A frame is an ICMP error of this type and code from src to the VM
 * (its IPv4 address, or r->ip6), whose quote starts with the qlen bytes
 * at q; returns the quote.
 */
static const uint8_t *check_error(const struct rig *r,
				  const struct cap_frame *cf, int af,
				  const void *src, uint8_t type, uint8_t code,
				  const uint8_t *q, size_t qlen)
{
	struct fr_view v;

	check_icmp(r, cf, af, src, af == 4 ? r->ip : r->ip6, type, code, &v);
	ASSERT_GE_U64(v.l4_len, 8 + qlen);
	ASSERT_EQ_MEM(v.l4 + 8, q, qlen);
	return v.l4 + 8;
}

/* ---------------------------------------------------------------- IPv4 */

TEST(echo_to_gateway_answered)
{
	struct rig r;

	icmp_rig(&r, 0);
	ping4(&r, "192.168.65.1", 0x4242, 7, PAYLOAD, 0);

	/* An empty payload is fine too. */
	ping4(&r, "192.168.65.1", 0x4242, 8, 0, 0);
	rig_expect_none(&r, 0);
	ASSERT_EQ_U64(rig_stats(&r).bad, 0);
	expect_flows(&r, 0, 0); /* no socket for this */
	rig_stop(&r);
}

/* A message from the VM that must be dropped and counted as malformed. */
static void expect_bad(struct rig *r, const uint8_t *f, size_t len)
{
	struct vpnkit_stats before = rig_stats(r);

	rig_input(r, f, len);
	rig_expect_none(r, 0);
	ASSERT_EQ_U64(rig_stats(r).bad, before.bad + 1);
	ASSERT_EQ_U64(rig_stats(r).dropped, before.dropped + 1);
}

/* The start of an echo request, checksum filled in by fr_ip. */
static const uint8_t short_echo[6] = { 8, 0, 0, 0, 0, 1 };

TEST(echo_malformed_counted)
{
	struct rig r;
	struct fr_l3 a;
	uint8_t f[128];
	size_t len;

	icmp_rig(&r, 0);
	/* A flipped payload byte: the checksum no longer matches. */
	len = echo4(&r, f, "192.168.65.1", 8, 0, 1, 1, PAYLOAD);
	f[len - 1] ^= 0x40;
	expect_bad(&r, f, len);
	/* Shorter than an ICMP header. */
	a = rig_l3(&r, r.gw);
	expect_bad(&r, f, fr_ip(f, &a, IPPROTO_ICMP, short_echo, 4));
	/* An echo request with a code that does not exist. */
	expect_bad(&r, f, echo4(&r, f, "192.168.65.1", 8, 3, 1, 1, 8));
	rig_stop(&r);
}

TEST(other_icmp_types_dropped)
{
	struct rig r;
	uint8_t f[128];

	icmp_rig(&r, 0);
	/* A timestamp request and an echo reply: well formed, not carried. */
	rig_input(&r, f, echo4(&r, f, "192.168.65.1", 13, 0, 1, 1, 12));
	rig_input(&r, f, echo4(&r, f, "192.0.2.1", 0, 0, 1, 1, 8));
	rig_expect_none(&r, 0);
	ASSERT_EQ_U64(rig_stats(&r).dropped, 2);
	ASSERT_EQ_U64(rig_stats(&r).bad, 0);
	rig_stop(&r);
}

TEST(echo_to_subnet_not_carried)
{
	struct rig r;

	icmp_rig(&r, 0);
	/* Nobody has .200, and broadcast pings are not answered. */
	ping4(&r, "192.168.65.200", 9, 1, 8, NO_REPLY);
	ping4(&r, "192.168.65.255", 9, 1, 8, NO_REPLY);
	rig_expect_none(&r, 50);
	expect_flows(&r, 0, 0);
	ASSERT_EQ_U64(rig_stats(&r).dropped, 2);
	ASSERT_EQ_U64(rig_stats(&r).bad, 0);
	rig_stop(&r);
}

TEST(echo_to_host_through_ping_socket)
{
	struct rig r;

	private_netns(true);
	icmp_rig(&r, 0);
	/* From the address the VM pinged, with the VM's own id back. */
	ping4(&r, "192.168.65.2", 0x7777, 1, PAYLOAD, 2000);
	expect_flows(&r, 1, 1);

	/* The next request takes the same flow and socket. */
	ping4(&r, "192.168.65.2", 0x7777, 2, 20, 2000);
	expect_flows(&r, 1, 1);

	/* Another id is another flow. */
	ping4(&r, "192.168.65.2", 0x0001, 1, 8, 2000);
	expect_flows(&r, 2, 2);
	ASSERT_EQ_U64(rig_stats(&r).bad, 0);
	rig_stop(&r);
}

/* The request leaves the host with the VM's TTL (a raw socket in the
 * test's namespace sees it on loopback), so a VM's traceroute works. */
TEST(echo_keeps_the_vm_ttl)
{
	struct rig r;
	uint8_t f[160], seen[256];
	size_t len;
	int raw, ttl = 0;

	private_netns(true);
	raw = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
	if (raw < 0)
		TEST_SKIP("no raw socket: %s", strerror(errno));
	icmp_rig(&r, 0);
	len = echo4(&r, f, "192.168.65.2", 8, 0, 0x4444, 1, 8);
	f[14 + 8] = 5; /* TTL, then the header checksum again */
	fr_ip4_fix(f + 14);
	rig_input(&r, f, len);
	expect_reply(&r, 2000, 4, r.host, r.ip, 0x4444, 1, 8);
	for (int i = 0; i < 8 && ttl == 0; i++) {
		ssize_t n = recv(raw, seen, sizeof(seen), MSG_DONTWAIT);

		if (n >= 28 && seen[20] == 8)
			ttl = seen[8];
	}
	ASSERT_EQ_INT(ttl, 5);
	close(raw);
	rig_stop(&r);
}

TEST(echo_flows_expire_when_idle)
{
	struct rig r;

	private_netns(true);
	icmp_rig(&r, 1);
	ping4(&r, "192.168.65.2", 0x5151, 1, 8, 2000);
	expect_flows(&r, 1, 1);
	for (int waited = 0; rig_stats(&r).fds && waited < 5000; waited += 50)
		ASSERT_OK(vpnkit_run_once(r.vk, 50));
	expect_flows(&r, 0, 0);

	/* A new request opens a new flow. */
	ping4(&r, "192.168.65.2", 0x5151, 2, 8, 2000);
	rig_stop(&r);
}

TEST(ping_sockets_denied_warns_once)
{
	struct rig r;

	/* A new namespace starts with ping_group_range "1 0": nobody. */
	private_netns(false);
	icmp_rig(&r, 0);
	ping4(&r, "192.168.65.2", 3, 1, 8, NO_REPLY);
	ping4(&r, "192.168.65.2", 3, 2, 8, NO_REPLY);
	rig_expect_none(&r, 100);
	ASSERT_EQ_U64(rig_log_count(&icmp_log,
				    "ICMP echo to outside hosts disabled"),
		      1);
	rig_log_expect(&icmp_log, "ping_group_range");
	expect_flows(&r, 0, 0);
	ASSERT_EQ_U64(rig_stats(&r).bad, 0);

	/* The gateway still answers. */
	ping4(&r, "192.168.65.1", 3, 3, 8, 0);
	rig_stop(&r);
}

TEST(echo_without_route_unreachable)
{
	struct rig r;
	struct in6_addr far6 = rig_addr6("2001:db8::1");
	uint8_t f[160];
	size_t len;

	/* A namespace with loopback alone: no route anywhere else. */
	private_netns(true);
	icmp_rig(&r, 0);
	len = echo4(&r, f, "192.0.2.1", 8, 0, 0x2222, 4, PAYLOAD);
	rig_input(&r, f, len);
	/* Network unreachable from the gateway, quoting the whole request. */
	check_error(&r, rig_next(&r, 0), 4, r.gw, 3, 0, f + 14, len - 14);
	expect_flows(&r, 0, 0);

	len = echo6(&r, f, r.ip6, &far6, 64, 128, 0, 0x2222, 5, PAYLOAD);
	rig_input(&r, f, len);
	check_error(&r, rig_next(&r, 0), 6, r.gw6, 1, 0, f + 14, len - 14);
	ASSERT_EQ_U64(rig_stats(&r).bad, 0);
	rig_stop(&r);
}

/*
 * The host's own errors for a flow come back to the VM: a neighbour on a
 * veth link that never answers makes the host's stack report "host
 * unreachable" from its own address on that link after its three probes.
 */
TEST(echo_errors_relayed)
{
	struct rig r;
	uint8_t f4[160], f6[160];
	struct in6_addr here6 = rig_addr6("fd99::1"),
			there6 = rig_addr6("fd99::2");
	struct in_addr here = rig_addr4("10.9.0.1"),
		       there = rig_addr4("10.9.0.2");
	struct cap_frame *c4, *c6;
	const uint8_t *q;
	size_t len4, len6;

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
	icmp_rig(&r, 0);
	len4 = echo4(&r, f4, "10.9.0.2", 8, 0, 0x3333, 1, PAYLOAD);
	rig_input(&r, f4, len4);
	len6 = echo6(&r, f6, r.ip6, &there6, 64, 128, 0, 0x3333, 2, PAYLOAD);
	rig_input(&r, f6, len6);
	rig_expect_none(&r, 0);
	/* Both come, in either order. */
	c4 = rig_next(&r, 10000);
	ASSERT_NOT_NULL(c4);
	c6 = rig_next(&r, 10000);
	ASSERT_NOT_NULL(c6);
	if (load_be16(c4->data + 12) != FR_ETH_IP) {
		struct cap_frame *t = c4;

		c4 = c6;
		c6 = t;
	}

	/* Host unreachable from 10.9.0.1, quoting an IP header from the VM
	 * to 10.9.0.2 and the request with the VM's own id. */
	q = check_error(&r, c4, 4, &here, 3, 1, (const uint8_t *)"\x45", 1);
	ASSERT_EQ_U64(q[9], IPPROTO_ICMP);
	ASSERT_EQ_MEM(q + 12, r.ip, 4);
	ASSERT_EQ_MEM(q + 16, &there, 4);
	ASSERT_EQ_MEM(q + 20, f4 + 34, len4 - 34); /* checksum included */

	/* Address unreachable from fd99::1, the same way. */
	q = check_error(&r, c6, 6, &here6, 1, 3, (const uint8_t *)"\x60", 1);
	ASSERT_EQ_U64(q[6], IPPROTO_ICMPV6);
	ASSERT_EQ_MEM(q + 8, r.ip6, 16);
	ASSERT_EQ_MEM(q + 24, &there6, 16);
	ASSERT_EQ_MEM(q + 40, f6 + 54, len6 - 54);
	ASSERT_EQ_U64(rig_stats(&r).bad, 0);
	rig_stop(&r);
}

/* ---------------------------------------------------------------- IPv6 */

TEST(echo6_to_gateway_answered)
{
	struct rig r;

	icmp_rig(&r, 0);
	ping6(&r, r.ip6, r.gw6, 0xbeef, 1, PAYLOAD, 0);

	/* The link-local gateway, from the VM's link-local address. */
	ping6(&r, r.ll6, r.gw_ll6, 0xbeef, 2, 16, 0);
	ASSERT_EQ_U64(rig_stats(&r).bad, 0);
	rig_stop(&r);
}

TEST(echo6_to_all_nodes_answered_by_gateway)
{
	struct rig r;
	struct in6_addr all = rig_addr6("ff02::1");
	uint8_t f[160];

	icmp_rig(&r, 0);
	rig_input(&r, f, echo6(&r, f, r.ll6, &all, 1, 128, 0, 0x1111, 5, 8));
	expect_reply(&r, 0, 6, r.gw_ll6, r.ll6, 0x1111, 5, 8);
	rig_stop(&r);
}

TEST(echo6_malformed_counted)
{
	struct rig r;
	struct fr_l3 a;
	uint8_t f[160], m[sizeof(short_echo)];
	size_t len;

	icmp_rig(&r, 0);
	len = echo6(&r, f, r.ip6, r.gw6, 64, 128, 0, 1, 1, 16);
	f[len - 3] ^= 0x01;
	expect_bad(&r, f, len);
	/* Shorter than an ICMPv6 header. */
	a = rig_l3_6(&r, r.gw6);
	memcpy(m, short_echo, sizeof(m));
	m[0] = 128;
	expect_bad(&r, f, fr_ip(f, &a, IPPROTO_ICMPV6, m, sizeof(m)));
	expect_bad(&r, f, echo6(&r, f, r.ip6, r.gw6, 64, 128, 1, 1, 1, 16));
	rig_stop(&r);
}

TEST(icmp6_other_types_dropped)
{
	struct rig r;
	struct in6_addr mld = rig_addr6("ff02::16");
	uint8_t f[160];

	icmp_rig(&r, 0);
	/* A multicast listener report (type 143) and an echo reply. */
	rig_input(&r, f, echo6(&r, f, r.ll6, &mld, 1, 143, 0, 0, 0, 0));
	rig_input(&r, f, echo6(&r, f, r.ip6, r.gw6, 64, 129, 0, 1, 1, 8));
	rig_expect_none(&r, 0);
	ASSERT_EQ_U64(rig_stats(&r).dropped, 2);
	ASSERT_EQ_U64(rig_stats(&r).bad, 0);
	rig_stop(&r);
}

TEST(echo6_to_host_through_ping_socket)
{
	struct rig r;

	private_netns(true);
	icmp_rig(&r, 0);
	ping6(&r, r.ip6, r.host6, 0x6666, 9, PAYLOAD, 2000);
	expect_flows(&r, 1, 1);
	ASSERT_EQ_U64(rig_stats(&r).bad, 0);
	rig_stop(&r);
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
