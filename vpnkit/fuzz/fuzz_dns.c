// SPDX-License-Identifier: MIT
/*
 * fuzz_dns: libFuzzer target for the gateway's DNS: queries from a VM and
 * answers from an upstream server, both untrusted.
 *
 * The first byte picks the path; the rest is the message:
 *
 *   0  a query over UDP from the VM's IPv4 address to the gateway;
 *   1  the same over IPv6, to prefix::1;
 *   2  bytes on a DNS-over-TCP connection to the gateway (the loopback
 *      listener tcp.c hands guest connections to), length prefixes and
 *      all, as a VM could send them;
 *   3  an upstream server's answer: the VM asks a fixed question, a fake
 *      server on 127.0.0.1 (named in a resolv.conf of this run's own)
 *      receives it and answers with the input, its first two bytes
 *      replaced by the ID it saw, so the answer reaches the checks of the
 *      question and the truncation to the VM's limits. If that answer
 *      says TC, the relay asks again over TCP (its fallback), and the
 *      server answers there with the input once more, TC clear.
 *
 * The instance runs in forward mode with a configured name and no
 * network but loopback: on paths 0-2 its resolv.conf names no server, so
 * every query not answered locally gets SERVFAIL; host mode is not fuzzed
 * (getaddrinfo would ask the machine's real resolver). Whatever the path,
 * the message also goes straight through the parse and build functions of
 * dns_msg.h, and as text through the resolv.conf parser. Frames to the VM
 * must fit the MTU and pass the checks a VM's stack makes (lengths and
 * checksums, tests/frames.h); anything else traps.
 *
 * The seeds (corpus/dns/) are queries for built-in and other names, with
 * and without EDNS, over each path, and upstream answers with records,
 * TC and errors.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <base/endian.h>
#include <base/fuzz.h>
#include <vpnkit/vpnkit.h>

#include "../dns_msg.h"
#include "../internal.h"
#include "../tests/frames.h"

#define MSG_MAX 65535
#define FRAME_BUF 65600
#define MTU 1500

/* Every frame out must fit the MTU and be one a VM's stack takes. */
static int sink_send(void *opaque, const struct vpnkit_offload *off,
		     const struct iovec *iov, int iovcnt)
{
	static uint8_t buf[FRAME_BUF];
	struct fr_view v;
	size_t len = 0;

	(void)opaque;
	(void)off;
	for (int i = 0; i < iovcnt; i++) {
		if (len + iov[i].iov_len > sizeof(buf))
			__builtin_trap();
		memcpy(buf + len, iov[i].iov_base, iov[i].iov_len);
		len += iov[i].iov_len;
	}
	if (len > FR_ETH_HLEN + MTU || fr_parse(&v, buf, len, false))
		__builtin_trap();
	return 0;
}

static const struct vpnkit_port_ops sink_ops = { .send = sink_send };

/* A UDP frame from the VM to the gateway's port 53 carrying msg. */
static void send_query(struct vpnkit_port *port, bool v6,
		       const struct in6_addr *prefix, const uint8_t *msg,
		       size_t len)
{
	uint8_t *f = malloc(FR_ETH_HLEN + 48 + len);
	struct fr_l3 a;

	if (!f)
		return;
	memset(&a, 0, sizeof(a));
	vpnkit_port_mac(port, a.src_mac);
	memcpy(a.dst_mac, vk_gateway_mac, 6);
	if (v6) {
		a.af = 6;
		memcpy(a.src, prefix, 16);
		a.src[15] = 0x42;
		memcpy(a.dst, prefix, 16);
		a.dst[15] = 1;
	} else {
		struct in_addr src = vpnkit_port_ip(port);

		a.af = 4;
		memcpy(a.src, &src, 4);
		inet_pton(AF_INET, "192.168.65.1", a.dst);
	}
	(void)vpnkit_port_input(port, NULL, f,
				fr_udp(f, &a, 5353, 53, msg, len));
	free(f);
}

/* The dns_msg.h functions on the raw input. */
static void parse_direct(const uint8_t *data, size_t size)
{
	struct vk_dns_query q;
	struct vk_resolv rc;
	static const struct vk_dns_rr rr[2] = {
		{ .type = VK_DNS_TYPE_A, .ttl = 1, .addr = { 10, 0, 0, 1 } },
		{ .type = VK_DNS_TYPE_AAAA, .ttl = 1, .addr = { 0xfd } },
	};
	uint8_t *copy, out[1024];
	ssize_t n;

	if (vk_dns_query_parse(data, size, &q) == 0) {
		if (q.name_ok && strlen(q.name) > VK_DNS_TEXT_MAX)
			__builtin_trap();
		n = vk_dns_answer_build(out, sizeof(out), data, &q, 3, true, rr,
					2, 1232);
		if (n > (ssize_t)sizeof(out))
			__builtin_trap();
		(void)vk_dns_udp_limit(&q);
		if (q.name_ok) {
			n = vk_dns_name_encode(q.name, strlen(q.name), out,
					       sizeof(out));
			if (n > VK_DNS_NAME_MAX)
				__builtin_trap();
		}
	}
	(void)vk_dns_question_match(data, size / 2, data + size / 2,
				    size - size / 2);
	if (size >= VK_DNS_HDR_LEN &&
	    vk_dns_header_answer(out, data, 1) != VK_DNS_HDR_LEN)
		__builtin_trap();
	copy = malloc(size ? size : 1);
	if (copy) {
		memcpy(copy, data, size);
		if (vk_dns_truncate(copy, size) > size)
			__builtin_trap();
		free(copy);
	}
	n = vk_dns_name_encode((const char *)data, size, out, sizeof(out));
	if (n > VK_DNS_NAME_MAX)
		__builtin_trap();
	vk_resolv_parse((const char *)data, size, &rc);
	if (rc.n > VK_RESOLV_MAX)
		__builtin_trap();
}

static void run_loop(struct vpnkit *vk, int turns)
{
	for (int i = 0; i < turns; i++)
		(void)vpnkit_run_once(vk, 0);
}

/* Wait up to ms for fd to be readable, running the instance. */
static bool wait_readable(struct vpnkit *vk, int fd, int ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	for (int i = 0; i < ms; i++) {
		(void)vpnkit_run_once(vk, 0);
		if (poll(&pfd, 1, 1) == 1)
			return true;
	}
	return false;
}

/* The fake server's TCP side (path 3): take the relay's connection, if
 * it made one (on loopback it is queued at once), read its query, answer
 * with the input (its ID, TC clear). */
static void serve_tcp(struct vpnkit *vk, int tfd, const uint8_t *data,
		      size_t size)
{
	uint8_t q[2 + 2048], *ans;
	size_t have = 0;
	int cfd;

	cfd = accept4(tfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (cfd < 0)
		return;
	while (have < 2 || have < 2 + (size_t)load_be16(q)) {
		ssize_t n;

		if (!wait_readable(vk, cfd, 50))
			goto out_close;
		n = recv(cfd, q + have, sizeof(q) - have, MSG_DONTWAIT);
		if (n <= 0)
			goto out_close;
		have += (size_t)n;
	}
	ans = malloc(2 + size);
	if (!ans)
		goto out_close;
	store_be16(ans, (uint16_t)size);
	memcpy(ans + 2, data, size);
	if (size >= 2)
		memcpy(ans + 2, q + 2, 2);
	if (size >= 3)
		ans[4] = (uint8_t)(ans[4] & ~(VK_DNS_TC >> 8));
	(void)send(cfd, ans, 2 + size, MSG_NOSIGNAL);
	free(ans);
	run_loop(vk, 4);
out_close:
	close(cfd);
	run_loop(vk, 2);
}

/* Path 2: the input on a TCP connection to the gateway's DNS. */
static void path_tcp(struct vpnkit *vk, const uint8_t *data, size_t size)
{
	struct sockaddr_storage sa;
	socklen_t sl;
	uint8_t buf[4096];
	int fd;
	size_t off = 0;

	if (vk_dns_tcp_target(vk, &sa, &sl) < 0)
		return;
	fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
		    0);
	if (fd < 0)
		return;
	if (connect(fd, (struct sockaddr *)&sa, sl) < 0 && errno != EINPROGRESS)
		goto out_close;
	run_loop(vk, 2);
	for (int turns = 0; turns < 64; turns++) {
		if (off < size) {
			ssize_t n =
				send(fd, data + off, size - off, MSG_NOSIGNAL);

			if (n > 0)
				off += (size_t)n;
		}
		run_loop(vk, 1);
		while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0) {
		}
		if (off == size && turns > 8)
			break;
	}
	(void)shutdown(fd, SHUT_WR);
	run_loop(vk, 4);
out_close:
	close(fd);
	run_loop(vk, 2);
}

/* Path 3: the input as an upstream server's answer. */
static void path_upstream(struct vpnkit *vk, struct vpnkit_port *port, int ufd,
			  int tfd, const struct in6_addr *prefix,
			  const uint8_t *data, size_t size)
{
	/* example.com A, RD, with EDNS offering 4096 bytes. */
	static const uint8_t q[] = { 0x12, 0x34, 0x01, 0x00, 0, 1,   0,	  0,
				     0,	   0,	 0,    1,    7, 'e', 'x', 'a',
				     'm',  'p',	 'l',  'e',  3, 'c', 'o', 'm',
				     0,	   0,	 1,    0,    1, 0,   0,	  0x29,
				     0x10, 0,	 0,    0,    0, 0,   0,	  0 };
	uint8_t seen[512], *ans;
	struct sockaddr_storage from;
	socklen_t fl = sizeof(from);
	struct pollfd pfd = { .fd = ufd, .events = POLLIN };
	ssize_t n = -1;

	send_query(port, false, prefix, q, sizeof(q));
	for (int i = 0; i < 50 && n < 0; i++) {
		if (poll(&pfd, 1, 10) == 1)
			n = recvfrom(ufd, seen, sizeof(seen), MSG_DONTWAIT,
				     (struct sockaddr *)&from, &fl);
	}
	if (n < 2)
		return;
	ans = malloc(size ? size : 1);
	if (!ans)
		return;
	memcpy(ans, data, size);
	if (size >= 2)
		memcpy(ans, seen, 2);
	(void)sendto(ufd, ans, size, 0, (struct sockaddr *)&from, fl);
	free(ans);
	for (int i = 0; i < 20; i++) {
		(void)vpnkit_run_once(vk, 1);
		pfd.fd = vpnkit_fd(vk);
		if (poll(&pfd, 1, 0) == 0 && i > 2)
			break;
	}
	if (tfd >= 0)
		serve_tcp(vk, tfd, data, size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vpnkit_config cfg;
	struct vpnkit *vk = NULL;
	struct vpnkit_port *port = NULL;
	char dir[] = "/tmp/fuzz_dns.XXXXXX", path[64], text[64];
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	int ufd = -1, tfd = -1, fd;
	uint8_t sel;

	if (size < 1 || size - 1 > MSG_MAX)
		return 0;
	sel = data[0] & 3;
	data++;
	size--;
	parse_direct(data, size);

	if (!mkdtemp(dir))
		return 0;
	snprintf(path, sizeof(path), "%s/resolv.conf", dir);
	text[0] = '\0';
	if (sel == 3) {
		ufd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (ufd < 0 || bind(ufd, (struct sockaddr *)&sa, sizeof(sa)) ||
		    getsockname(ufd, (struct sockaddr *)&sa, &sl))
			goto out_rmdir;
		snprintf(text, sizeof(text), "nameserver 127.0.0.1:%u\n",
			 ntohs(sa.sin_port));
		/* The same port over TCP, if free; if not, the fallback is
		 * refused, a case too. */
		tfd = socket(AF_INET,
			     SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (tfd >= 0 &&
		    (bind(tfd, (struct sockaddr *)&sa, sizeof(sa)) ||
		     listen(tfd, 1))) {
			close(tfd);
			tfd = -1;
		}
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		goto out_rmdir;
	if (write(fd, text, strlen(text)) < 0) {
		/* an empty resolv.conf is a case too */
	}
	close(fd);

	vpnkit_config_init(&cfg);
	cfg.max_flows = 16;
	cfg.dns_mode = VPNKIT_DNS_FORWARD;
	cfg.resolv_conf = path;
	cfg.names[0].name = "fuzz.example.";
	inet_pton(AF_INET, "10.1.2.3", &cfg.names[0].ip4);
	cfg.n_names = 1;
	if (vpnkit_new(&cfg, &vk) < 0)
		goto out_unlink;
	if (vpnkit_port_new(vk, NULL, &sink_ops, NULL, &port) < 0)
		goto out_free;
	run_loop(vk, 1);
	switch (sel) {
	case 0:
	case 1:
		if (size <= MSG_MAX - 48) {
			send_query(port, sel == 1, &cfg.prefix6, data, size);
			run_loop(vk, 2);
		}
		break;
	case 2:
		path_tcp(vk, data, size);
		break;
	default:
		if (size <= 4096)
			path_upstream(vk, port, ufd, tfd, &cfg.prefix6, data,
				      size);
		break;
	}
out_free:
	vpnkit_free(vk);
out_unlink:
	unlink(path);
out_rmdir:
	if (ufd >= 0)
		close(ufd);
	if (tfd >= 0)
		close(tfd);
	rmdir(dir);
	return 0;
}
