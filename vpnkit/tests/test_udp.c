// SPDX-License-Identifier: MIT
/*
 * Unit tests for vpnkit/udp.c (and UDP forwards), through the public API
 * only. The test plays the VM with hand-made frames (frames.h, rig.h);
 * the far side is a real UDP socket of the test on 127.0.0.1, which the
 * VM reaches as 192.168.65.2 (or ::1 as prefix::2).
 *
 * Covered: a datagram and its reply, with addresses, ports and checksum
 * checked; one flow and one socket per pair of ends; batches larger than
 * one recvmmsg; idle expiry freeing the flow and its descriptor; a
 * datagram too large for the VM's MTU; IPv4 datagrams without a checksum;
 * malformed datagrams; the host's loopback out of reach when the host
 * address is off; IPv6; and a UDP forward from add to remove.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <base/endian.h>
#include <base/test.h>
#include <vpnkit/vpnkit.h>

#include "frames.h"
#include "rig.h"

/* The VM sends len pattern bytes from its sport to dst:dport. */
static void vm_udp(struct rig *r, const uint8_t *dst, bool v6, uint16_t sport,
		   uint16_t dport, size_t len, unsigned seed)
{
	static uint8_t f[2048], data[2048];
	struct fr_l3 a = v6 ? rig_l3_6(r, dst) : rig_l3(r, dst);

	fill_pattern(data, len, seed, 0);
	rig_input(r, f, fr_udp(f, &a, sport, dport, data, len));
}

/* A datagram on a host socket within max_ms: its length and sender. */
static ssize_t host_recv(struct rig *r, int fd, uint8_t *buf, size_t size,
			 struct sockaddr_storage *from, int max_ms)
{
	socklen_t sl = sizeof(*from);

	memset(from, 0, sizeof(*from));
	if (!rig_wait_fd(r, fd, POLLIN, max_ms))
		return -ETIMEDOUT;
	return recvfrom(fd, buf, size, MSG_DONTWAIT, (struct sockaddr *)from,
			&sl);
}

static uint16_t sa_port(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
	return ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

/* The next frame must be a UDP datagram src:sport -> the VM's dport
 * carrying len pattern bytes of seed. */
static void expect_udp(struct rig *r, const uint8_t *src, bool v6,
		       uint16_t sport, uint16_t dport, size_t len,
		       unsigned seed, int max_ms)
{
	struct fr_view v;
	uint8_t want[2048];

	rig_expect(r, max_ms, &v);
	ASSERT_EQ_INT(v.af, v6 ? 6 : 4);
	ASSERT_EQ_U64(v.proto, IPPROTO_UDP);
	ASSERT_EQ_MEM(v.dst_mac, r->mac, 6);
	ASSERT_EQ_MEM(v.src_mac, r->gw_mac, 6);
	ASSERT_EQ_MEM(v.src, src, v6 ? 16 : 4);
	ASSERT_EQ_MEM(v.dst, v6 ? r->ip6 : r->ip, v6 ? 16 : 4);
	ASSERT_EQ_U64(v.sport, sport);
	ASSERT_EQ_U64(v.dport, dport);
	ASSERT_EQ_U64(v.len, len);
	ASSERT_NE_U64(load_be16(v.l4 + 6), 0); /* we always checksum */
	fill_pattern(want, len, seed, 0);
	ASSERT_EQ_MEM(v.data, want, len);
}

/* Send len pattern bytes from a host socket to to. */
static void host_send(int fd, const struct sockaddr_storage *to, size_t len,
		      unsigned seed)
{
	uint8_t buf[4096];
	socklen_t sl = to->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) :
						   sizeof(struct sockaddr_in);

	fill_pattern(buf, len, seed, 0);
	ASSERT_EQ_INT(sendto(fd, buf, len, 0, (const struct sockaddr *)to, sl),
		      (ssize_t)len);
}

/* ---------------------------------------------------------------- flows */

/* One round trip through 192.168.65.2 (or prefix::2 when v6). */
static void round_trip(bool v6)
{
	struct rig r;
	struct sockaddr_storage from, first;
	uint8_t buf[2048], want[2048];
	uint16_t port;
	int fd, base;

	rig_start(&r, NULL, 0);
	if (v6) {
		fd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			TEST_SKIP("no IPv6");
		close(fd);
	}
	fd = host_socket(SOCK_DGRAM, v6, &port);
	base = count_fds();
	vm_udp(&r, v6 ? r.host6 : r.host, v6, 5000, port, 100, 1);
	ASSERT_EQ_INT(host_recv(&r, fd, buf, sizeof(buf), &from, 500), 100);
	fill_pattern(want, 100, 1, 0);
	ASSERT_EQ_MEM(buf, want, 100);
	ASSERT_EQ_U64(rig_stats(&r).udp_flows, 1);
	ASSERT_EQ_U64(rig_stats(&r).fds, 1);
	ASSERT_EQ_INT(count_fds(), base + 1);

	/* The reply reaches the VM from the address it wrote to. */
	host_send(fd, &from, 300, 2);
	expect_udp(&r, v6 ? r.host6 : r.host, v6, port, 5000, 300, 2, 500);

	/* The same ends: the same flow and host socket. */
	first = from;
	vm_udp(&r, v6 ? r.host6 : r.host, v6, 5000, port, 0, 3);
	ASSERT_EQ_INT(host_recv(&r, fd, buf, sizeof(buf), &from, 500), 0);
	ASSERT_EQ_U64(sa_port(&from), sa_port(&first));
	ASSERT_EQ_U64(rig_stats(&r).udp_flows, 1);

	/* Another source port of the VM: another flow. */
	vm_udp(&r, v6 ? r.host6 : r.host, v6, 5001, port, 10, 4);
	ASSERT_EQ_INT(host_recv(&r, fd, buf, sizeof(buf), &from, 500), 10);
	ASSERT_NE_U64(sa_port(&from), sa_port(&first));
	ASSERT_EQ_U64(rig_stats(&r).udp_flows, 2);
	ASSERT_EQ_U64(rig_stats(&r).fds, 2);
	host_send(fd, &from, 20, 5);
	expect_udp(&r, v6 ? r.host6 : r.host, v6, port, 5001, 20, 5, 500);
	rig_expect_none(&r, 20);
	close(fd);
	rig_stop(&r);
}

TEST(udp_round_trip)
{
	round_trip(false);
}

TEST(udp_round_trip_ipv6)
{
	round_trip(true);
}

/* More datagrams at once than one recvmmsg batch takes: all arrive, in
 * order. */
TEST(udp_burst_from_host)
{
	struct rig r;
	struct sockaddr_storage from;
	uint8_t buf[64];
	uint16_t port;
	int fd, i;

	rig_start(&r, NULL, 0);
	fd = host_socket(SOCK_DGRAM, false, &port);
	vm_udp(&r, r.host, false, 5002, port, 1, 0);
	ASSERT_EQ_INT(host_recv(&r, fd, buf, sizeof(buf), &from, 500), 1);
	for (i = 0; i < 100; i++)
		host_send(fd, &from, 10 + (size_t)i, (unsigned)i);
	for (i = 0; i < 100; i++)
		expect_udp(&r, r.host, false, port, 5002, 10 + (size_t)i,
			   (unsigned)i, 500);
	close(fd);
	rig_stop(&r);
}

/* A datagram from the host larger than one frame of the VM's MTU is
 * dropped; the largest that fits goes through. */
TEST(udp_larger_than_mtu)
{
	struct rig r;
	struct sockaddr_storage from;
	uint8_t buf[64];
	uint16_t port;
	int fd;

	rig_start(&r, NULL, 0);
	fd = host_socket(SOCK_DGRAM, false, &port);
	vm_udp(&r, r.host, false, 5003, port, 1, 0);
	ASSERT_EQ_INT(host_recv(&r, fd, buf, sizeof(buf), &from, 500), 1);
	host_send(fd, &from, 1473, 6);
	host_send(fd, &from, 1472, 7);
	expect_udp(&r, r.host, false, port, 5003, 1472, 7, 500);
	ASSERT_EQ_U64(r.cap.f[r.cap.next - 1].len, 1514);
	rig_expect_none(&r, 20);
	ASSERT_GE_U64(rig_stats(&r).dropped, 1);
	close(fd);
	rig_stop(&r);
}

/* Idle flows expire after udp_idle_s, and their sockets close. */
TEST(udp_idle_expiry)
{
	struct vpnkit_config cfg;
	struct rig r;
	struct sockaddr_storage from;
	struct timespec t0, t1;
	uint8_t buf[64];
	uint16_t port;
	int fd, base;
	long ms;

	rig_config(&cfg);
	cfg.udp_idle_s = 1;
	rig_start(&r, &cfg, 0);
	fd = host_socket(SOCK_DGRAM, false, &port);
	base = count_fds();
	vm_udp(&r, r.host, false, 5004, port, 8, 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ASSERT_EQ_INT(host_recv(&r, fd, buf, sizeof(buf), &from, 500), 8);
	ASSERT_EQ_INT(count_fds(), base + 1);
	while (rig_stats(&r).udp_flows) {
		ASSERT_OK(vpnkit_run_once(r.vk, 50));
		clock_gettime(CLOCK_MONOTONIC, &t1);
		ms = (t1.tv_sec - t0.tv_sec) * 1000 +
		     (t1.tv_nsec - t0.tv_nsec) / 1000000;
		ASSERT_LT_INT(ms, 1700);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 +
	     (t1.tv_nsec - t0.tv_nsec) / 1000000;
	ASSERT_GE_INT(ms, 900);
	ASSERT_EQ_U64(rig_stats(&r).fds, 0);
	ASSERT_EQ_INT(count_fds(), base);
	/* A late reply finds nobody; the VM sees nothing. */
	host_send(fd, &from, 8, 1);
	rig_expect_none(&r, 50);
	close(fd);
	rig_stop(&r);
}

/* ---------------------------------------------------------------- input */

/* IPv4 UDP may go without a checksum (0); trailing Ethernet padding is
 * not payload. */
TEST(udp_no_checksum_and_padding)
{
	struct rig r;
	struct sockaddr_storage from;
	struct fr_l3 a;
	uint8_t f[128], buf[64];
	uint16_t port;
	size_t len;
	int fd;

	rig_start(&r, NULL, 0);
	fd = host_socket(SOCK_DGRAM, false, &port);
	a = rig_l3(&r, r.host);
	len = fr_udp(f, &a, 5005, port, "abc", 3);
	store_be16(f + 14 + 20 + 6, 0);
	memset(f + len, 0xee, 60 - len);
	rig_input(&r, f, 60);
	ASSERT_EQ_INT(host_recv(&r, fd, buf, sizeof(buf), &from, 500), 3);
	ASSERT_EQ_MEM(buf, "abc", 3);
	ASSERT_EQ_U64(rig_stats(&r).bad, 0);
	close(fd);
	rig_stop(&r);
}

/* Malformed datagrams are dropped and counted; none reaches the host. */
TEST(udp_malformed)
{
	static const uint8_t zero4[4] = { 0 };
	struct rig r;
	struct fr_l3 a;
	uint8_t f[128], ok[128];
	uint16_t port;
	size_t len, i;
	int fd;
	uint64_t bad;

	rig_start(&r, NULL, 0);
	fd = host_socket(SOCK_DGRAM, false, &port);
	a = rig_l3(&r, r.host);
	len = fr_udp(ok, &a, 5006, port, "payload!", 8);

	/* Truncated anywhere. */
	for (i = 0; i < len; i++) {
		bad = rig_stats(&r).bad;
		rig_input(&r, ok, i);
		ASSERT_EQ_U64(rig_stats(&r).bad, bad + 1);
	}
	/* A wrong checksum. */
	memcpy(f, ok, len);
	f[len - 1] ^= 1;
	bad = rig_stats(&r).bad;
	rig_input(&r, f, len);
	ASSERT_EQ_U64(rig_stats(&r).bad, bad + 1);
	/* UDP length longer than the IP payload, and shorter than 8. */
	{
		static const uint16_t lens[] = { 17, 100, 7, 0 };

		for (i = 0; i < 4; i++) {
			memcpy(f, ok, len);
			store_be16(f + 34 + 4, lens[i]);
			fr_l4_fix(4, a.src, a.dst, IPPROTO_UDP, f + 34,
				  len - 34);
			bad = rig_stats(&r).bad;
			rig_input(&r, f, len);
			ASSERT_EQ_U64(rig_stats(&r).bad, bad + 1);
		}
	}
	/* Port 0 on either side. */
	bad = rig_stats(&r).bad;
	rig_input(&r, f, fr_udp(f, &a, 0, port, "x", 1));
	rig_input(&r, f, fr_udp(f, &a, 5006, 0, "x", 1));
	ASSERT_EQ_U64(rig_stats(&r).bad, bad + 2);
	/* From 0.0.0.0, which only DHCP may use. */
	{
		struct fr_l3 z = a;

		memcpy(z.src, zero4, 4);
		bad = rig_stats(&r).bad;
		rig_input(&r, f, fr_udp(f, &z, 5006, port, "x", 1));
		ASSERT_EQ_U64(rig_stats(&r).bad, bad + 1);
	}
	/* To the gateway's ports other than 53 and 67: dropped, no reply. */
	{
		struct fr_l3 g = rig_l3(&r, r.gw);

		rig_input(&r, f, fr_udp(f, &g, 5006, 9, "x", 1));
	}
	ASSERT_FALSE(rig_wait_fd(&r, fd, POLLIN, 30));
	ASSERT_EQ_U64(rig_stats(&r).udp_flows, 0);
	ASSERT_EQ_U64(rig_stats(&r).fds, 0);
	rig_expect_none(&r, 0);
	/* The untouched datagram goes through. */
	rig_input(&r, ok, len);
	ASSERT_TRUE(rig_wait_fd(&r, fd, POLLIN, 500));
	close(fd);
	rig_stop(&r);
}

/* With the host address off, the host's loopback is out of reach, even
 * when the VM names 127.0.0.1 itself. */
TEST(udp_no_host_loopback_when_host_ip_off)
{
	static const uint8_t lo[4] = { 127, 0, 0, 1 };
	static const uint8_t dot2[4] = { 192, 168, 65, 2 };
	struct vpnkit_config cfg;
	struct rig r;
	uint16_t port;
	int fd;

	rig_config(&cfg);
	cfg.host_ip.s_addr = 0;
	rig_start(&r, &cfg, 0);
	fd = host_socket(SOCK_DGRAM, false, &port);
	vm_udp(&r, dot2, false, 5007, port, 4, 0);
	vm_udp(&r, lo, false, 5008, port, 4, 0);
	ASSERT_FALSE(rig_wait_fd(&r, fd, POLLIN, 50));
	ASSERT_EQ_U64(rig_stats(&r).udp_flows, 0);
	close(fd);
	rig_stop(&r);
}

/* ---------------------------------------------------------------- forwards */

TEST(udp_forward)
{
	static const uint8_t vm_ip[4] = { 192, 168, 65, 3 };
	struct rig r;
	struct vpnkit_forward fw;
	struct sockaddr_storage to, from;
	uint8_t buf[2048];
	uint16_t hport, cport;
	int cfd, base;

	rig_start(&r, NULL, 0);
	ASSERT_EQ_MEM(r.ip, vm_ip, 4);
	hport = free_port();
	fw = forward_spec(IPPROTO_UDP, hport, vm_ip, 5353);
	ASSERT_OK(vpnkit_forward_add(r.vk, &fw));
	ASSERT_ERR(vpnkit_forward_add(r.vk, &fw), -EEXIST);
	ASSERT_FALSE(port_is_free(SOCK_DGRAM, hport));
	/* A TCP forward on the same number is another forward. */
	{
		struct vpnkit_forward tf =
			forward_spec(IPPROTO_TCP, hport, vm_ip, 5353);

		ASSERT_OK(vpnkit_forward_add(r.vk, &tf));
		ASSERT_EQ_U64(vpnkit_forward_list(r.vk, NULL, 0), 2);
		ASSERT_OK(vpnkit_forward_remove(r.vk, IPPROTO_TCP,
						(struct sockaddr *)&tf.host));
	}
	base = count_fds();

	/* A host client's datagram reaches the VM from the host. */
	cfd = host_socket(SOCK_DGRAM, false, &cport);
	memcpy(&to, &fw.host, sizeof(to));
	host_send(cfd, &to, 200, 8);
	expect_udp(&r, r.host, false, cport, 5353, 200, 8, 500);
	ASSERT_EQ_U64(rig_stats(&r).udp_flows, 1);

	/* The VM's reply reaches the client from the forward's address. */
	vm_udp(&r, r.host, false, 5353, cport, 150, 9);
	ASSERT_EQ_INT(host_recv(&r, cfd, buf, sizeof(buf), &from, 500), 150);
	ASSERT_EQ_U64(sa_port(&from), hport);
	{
		uint8_t want[150];

		fill_pattern(want, 150, 9, 0);
		ASSERT_EQ_MEM(buf, want, 150);
	}
	/* No socket of its own for the flow: the forward's carries it. */
	ASSERT_EQ_INT(count_fds(), base + 1);

	/* Removed: the port is free at once and the flow gone. */
	ASSERT_OK(vpnkit_forward_remove(r.vk, IPPROTO_UDP,
					(struct sockaddr *)&fw.host));
	ASSERT_TRUE(port_is_free(SOCK_DGRAM, hport));
	ASSERT_EQ_U64(rig_stats(&r).udp_flows, 0);
	ASSERT_EQ_INT(count_fds(), base);
	close(cfd);
	rig_stop(&r);
}

static const struct test_case tests[] = {
	TEST_CASE(udp_round_trip),
	TEST_CASE(udp_round_trip_ipv6),
	TEST_CASE(udp_burst_from_host),
	TEST_CASE(udp_larger_than_mtu),
	TEST_CASE(udp_idle_expiry), /* about a second */
	TEST_CASE(udp_no_checksum_and_padding),
	TEST_CASE(udp_malformed),
	TEST_CASE(udp_no_host_loopback_when_host_ip_off),
	TEST_CASE(udp_forward),
};

TEST_MAIN(tests);
