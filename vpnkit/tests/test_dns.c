// SPDX-License-Identifier: MIT
/*
 * Unit tests for vpnkit/dns.c (and dns_msg.c), through the public API:
 * DNS queries built here travel in UDP frames from the VM to the
 * gateway's port 53 (vpnkit_port_input), and the answers come back through
 * the port's send callback. Upstream servers are fakes run by the test on
 * 127.0.0.1, named in a resolv.conf in the case's temporary directory with
 * the "nameserver 127.0.0.1:PORT" form, and served from the same thread
 * between turns of the instance's loop. DNS over TCP is tested on the
 * loopback listener tcp.c hands guest connections to
 * (vk_dns_tcp_target). Host mode asks getaddrinfo for "localhost", which
 * every /etc/hosts has. The TCP fallback of truncated answers is tested
 * against the fake's TCP side on the same port, and its counts in the
 * debug log (kept with rig_keep_log).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <base/endian.h>
#include <base/test.h>
#include <vpnkit/vpnkit.h>

#include "../internal.h" /* vk_dns_tcp_target */
#include "frames.h"
#include "rig.h"

/* ---------------------------------------------------------------- the rig */

/* The case's resolv.conf, in its temporary directory. */
static const char *resolv_path(void)
{
	static char path[4096];

	snprintf(path, sizeof(path), "%s/resolv.conf", test_tmpdir());
	return path;
}

/* Replace the file at path with text (atomically, as resolvconf does). */
static void write_file(const char *path, const char *text)
{
	char tmp[4200];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	ASSERT_NOT_NULL(f);
	fputs(text, f);
	ASSERT_EQ_INT(fclose(f), 0);
	ASSERT_OK(rename(tmp, path));
}

/* rig.h's configuration with DNS in this mode and the case's
 * resolv.conf, written with text unless that is NULL. */
static void dns_config(struct vpnkit_config *cfg, enum vpnkit_dns_mode mode,
		       const char *resolv_text)
{
	if (resolv_text)
		write_file(resolv_path(), resolv_text);
	rig_config(cfg);
	cfg->dns_mode = mode;
	cfg->resolv_conf = resolv_path();
}

static void dns_rig(struct rig *r, enum vpnkit_dns_mode mode,
		    const char *resolv_text)
{
	struct vpnkit_config cfg;

	dns_config(&cfg, mode, resolv_text);
	rig_start(r, &cfg, 0);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Run the loop for ms. */
static void pump_ms(struct rig *r, int ms)
{
	uint64_t end = now_ms() + (uint64_t)ms;

	while (now_ms() < end)
		ASSERT_OK(vpnkit_run_once(r->vk, 5));
}

/* A UDP datagram from the VM's IPv4 address, port sport, to the
 * gateway's port 53. */
static void send_udp4(struct rig *r, uint16_t sport, const void *msg,
		      size_t len)
{
	static uint8_t f[70000];
	struct fr_l3 a = rig_l3(r, r->gw);

	rig_input(r, f, fr_udp(f, &a, sport, 53, msg, len));
}

/*
 * The next frame, within max_ms, is a UDP datagram from the gateway's
 * port 53 (IPv4) to the VM at dport (rig.h checked its checksums).
 * Returns the DNS message and its length.
 */
static const uint8_t *answer4(struct rig *r, uint16_t dport, int max_ms,
			      size_t *len)
{
	static struct fr_view v;

	rig_expect(r, max_ms, &v);
	ASSERT_EQ_MEM(v.dst_mac, r->mac, 6);
	ASSERT_EQ_INT(v.af, 4);
	ASSERT_EQ_U64(v.proto, IPPROTO_UDP);
	ASSERT_EQ_MEM(v.src, r->gw, 4);
	ASSERT_EQ_MEM(v.dst, r->ip, 4);
	ASSERT_EQ_U64(v.sport, 53);
	ASSERT_EQ_U64(v.dport, dport);
	ASSERT_GE_U64(v.len, 12);
	*len = v.len;
	return v.data;
}

/* ---------------------------------------------------------------- messages */

/* "a.b" in wire form at out; returns its length. */
static size_t wire_name(uint8_t *out, const char *name)
{
	size_t pos = 0;

	while (*name) {
		size_t n = strcspn(name, ".");

		out[pos++] = (uint8_t)n;
		memcpy(out + pos, name, n);
		pos += n;
		name += n;
		if (*name == '.')
			name++;
	}
	out[pos++] = 0;
	return pos;
}

/* A query with RD set, one question, and an OPT record offering
 * edns_size if that is not 0. */
static size_t query(uint8_t *m, uint16_t id, const char *name, uint16_t type,
		    uint16_t edns_size)
{
	size_t p = 12;

	memset(m, 0, 12);
	store_be16(m, id);
	store_be16(m + 2, 0x0100);
	store_be16(m + 4, 1);
	p += wire_name(m + p, name);
	store_be16(m + p, type);
	store_be16(m + p + 2, 1);
	p += 4;
	if (edns_size) {
		store_be16(m + 10, 1);
		m[p++] = 0;
		store_be16(m + p, 41);
		store_be16(m + p + 2, edns_size);
		store_be32(m + p + 4, 0);
		store_be16(m + p + 8, 0);
		p += 10;
	}
	return p;
}

/* Question length (name + type + class) of a message with one question
 * written out in full. */
static size_t question_len(const uint8_t *m)
{
	size_t p = 12;

	while (m[p])
		p += 1 + (size_t)m[p];
	return p + 1 + 4 - 12;
}

struct parsed {
	uint16_t id, flags, qd, an, ns, ar;
	size_t n_rr;
	uint16_t type[8];
	uint32_t ttl[8];
	uint8_t data[8][16];
	uint16_t dlen[8];
	bool opt;
	uint16_t opt_size;
};

/* An answer built by the gateway: one question, records named by a
 * pointer to it, maybe an OPT record last. */
static void parse_answer(const uint8_t *m, size_t len, struct parsed *p)
{
	size_t pos;

	memset(p, 0, sizeof(*p));
	ASSERT_GE_U64(len, 12);
	p->id = load_be16(m);
	p->flags = load_be16(m + 2);
	p->qd = load_be16(m + 4);
	p->an = load_be16(m + 6);
	p->ns = load_be16(m + 8);
	p->ar = load_be16(m + 10);
	pos = 12 + (p->qd ? question_len(m) : 0);
	for (unsigned i = 0; i < (unsigned)p->an + p->ar; i++) {
		uint16_t type, rdlen;

		ASSERT_LE_U64(pos + 1, len);
		if (m[pos] == 0) {
			pos += 1;
		} else {
			ASSERT_EQ_U64(load_be16(m + pos), 0xc00c);
			pos += 2;
		}
		ASSERT_LE_U64(pos + 10, len);
		type = load_be16(m + pos);
		rdlen = load_be16(m + pos + 8);
		ASSERT_LE_U64(pos + 10 + rdlen, len);
		if (type == 41) {
			p->opt = true;
			p->opt_size = load_be16(m + pos + 2);
		} else {
			ASSERT_LT_U64(p->n_rr, 8);
			ASSERT_LE_U64(rdlen, 16);
			ASSERT_EQ_U64(load_be16(m + pos + 2), 1);
			p->type[p->n_rr] = type;
			p->ttl[p->n_rr] = load_be32(m + pos + 4);
			p->dlen[p->n_rr] = rdlen;
			memcpy(p->data[p->n_rr], m + pos + 10, rdlen);
			p->n_rr++;
		}
		pos += 10 + rdlen;
	}
	ASSERT_EQ_U64(pos, len);
}

#define RCODE(p) ((p)->flags & 0xf)
#define FLAG_QR 0x8000
#define FLAG_AA 0x0400
#define FLAG_TC 0x0200

/* Parse the one answer to query q that must come back to sport. */
static void expect_answer(struct rig *r, const uint8_t *q, uint16_t sport,
			  struct parsed *p)
{
	const uint8_t *a;
	size_t alen;

	a = answer4(r, sport, 2000, &alen);
	/* The question comes back exactly, case included. */
	ASSERT_GE_U64(alen, 12 + question_len(q));
	ASSERT_EQ_MEM(a + 12, q + 12, question_len(q));
	parse_answer(a, alen, p);
	ASSERT_EQ_U64(p->id, load_be16(q));
	ASSERT_TRUE(p->flags & FLAG_QR);
}

/* Ask over IPv4 UDP and parse the one answer that must come back. */
static void ask(struct rig *r, const uint8_t *q, size_t qlen, uint16_t sport,
		struct parsed *p)
{
	send_udp4(r, sport, q, qlen);
	expect_answer(r, q, sport, p);
}

/* ---------------------------------------------------------------- a fake upstream */

struct upstream {
	int udp, tcp;
	uint16_t port;
};

static void upstream_open(struct upstream *u)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	int one = 1;

	for (int tries = 0; tries < 50; tries++) {
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sa.sin_port = 0;
		u->udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		ASSERT_TRUE(u->udp >= 0);
		ASSERT_OK(bind(u->udp, (struct sockaddr *)&sa, sizeof(sa)));
		ASSERT_OK(getsockname(u->udp, (struct sockaddr *)&sa, &sl));
		u->port = ntohs(sa.sin_port);
		u->tcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		ASSERT_TRUE(u->tcp >= 0);
		setsockopt(u->tcp, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(u->tcp, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
		    listen(u->tcp, 8) == 0)
			return;
		close(u->udp);
		close(u->tcp);
	}
	TEST_FAIL("no port free for UDP and TCP at once");
}

static void upstream_close(struct upstream *u)
{
	close(u->udp);
	close(u->tcp);
}

/* Run the loop until the upstream gets a datagram (or max_ms pass). */
static ssize_t upstream_recv(struct rig *r, struct upstream *u, uint8_t *buf,
			     size_t cap, struct sockaddr_in *from, int max_ms)
{
	uint64_t end = now_ms() + (uint64_t)max_ms;

	do {
		socklen_t fl = sizeof(*from);
		ssize_t n = recvfrom(u->udp, buf, cap, MSG_DONTWAIT,
				     (struct sockaddr *)from, &fl);

		if (n >= 0)
			return n;
		ASSERT_TRUE(errno == EAGAIN || errno == EWOULDBLOCK);
		ASSERT_OK(vpnkit_run_once(r->vk, 5));
	} while (now_ms() < end);
	return -1;
}

static void upstream_reply(struct upstream *u, const void *msg, size_t len,
			   const struct sockaddr_in *to)
{
	ASSERT_EQ_INT(sendto(u->udp, msg, len, 0, (const struct sockaddr *)to,
			     sizeof(*to)),
		      (ssize_t)len);
}

/* An answer to query q (with the ID the upstream saw): header flags,
 * the question, then filler records of one TXT each to reach about
 * total bytes. */
static size_t fake_answer(uint8_t *a, const uint8_t *q, size_t total,
			  uint16_t flags)
{
	size_t p = 12 + question_len(q);
	uint16_t an = 0;

	memcpy(a, q, p);
	store_be16(a + 2, flags);
	while (p + 12 + 200 <= total) {
		store_be16(a + p, 0xc00c);
		store_be16(a + p + 2, 16); /* TXT */
		store_be16(a + p + 4, 1);
		store_be32(a + p + 6, 300);
		store_be16(a + p + 10, 200);
		a[p + 12] = 199;
		memset(a + p + 13, 'a' + an % 26, 199);
		p += 12 + 200;
		an++;
	}
	store_be16(a + 6, an);
	store_be16(a + 8, 0);
	store_be16(a + 10, 0);
	return p;
}

static const char *ns_line(const struct upstream *u, char *buf, size_t cap)
{
	snprintf(buf, cap, "nameserver 127.0.0.1:%u\n", u->port);
	return buf;
}

/* A fake upstream, and dns_rig in mode with it as the only server. */
static void upstream_rig(struct rig *r, struct upstream *u,
			 enum vpnkit_dns_mode mode)
{
	char line[64];

	upstream_open(u);
	dns_rig(r, mode, ns_line(u, line, sizeof(line)));
}

static void upstream_stop(struct rig *r, struct upstream *u)
{
	rig_stop(r);
	upstream_close(u);
}

/*
 * The VM asks q over UDP from sport: the upstream must receive it within
 * 2 s, into seen (512 bytes, the relay's ID in place of the VM's); from
 * is where it came from.
 */
static void ask_upstream(struct rig *r, struct upstream *u, const uint8_t *q,
			 size_t qlen, uint16_t sport, uint8_t seen[512],
			 struct sockaddr_in *from)
{
	send_udp4(r, sport, q, qlen);
	ASSERT_EQ_INT(upstream_recv(r, u, seen, 512, from, 2000),
		      (ssize_t)qlen);
}

/* The upstream answers seen with fake_answer's message, built in ans;
 * returns its length. */
static size_t upstream_answer(struct upstream *u, uint8_t *ans,
			      const uint8_t *seen, size_t total, uint16_t flags,
			      const struct sockaddr_in *to)
{
	size_t alen = fake_answer(ans, seen, total, flags);

	upstream_reply(u, ans, alen, to);
	return alen;
}

/* An answer to query q with one A record, addr, named by a pointer. */
static size_t a_answer(uint8_t *a, const uint8_t *q, const char *addr)
{
	size_t p = 12 + question_len(q);
	struct in_addr ip;

	ASSERT_EQ_INT(inet_pton(AF_INET, addr, &ip), 1);
	memcpy(a, q, p);
	store_be16(a + 2, 0x8180);
	store_be16(a + 6, 1);
	store_be16(a + 8, 0);
	store_be16(a + 10, 0);
	store_be16(a + p, 0xc00c);
	store_be16(a + p + 2, 1);
	store_be16(a + p + 4, 1);
	store_be32(a + p + 6, 300);
	store_be16(a + p + 10, 4);
	memcpy(a + p + 12, &ip, 4);
	return p + 16;
}

/* The upstream's TCP side: accept a connection within max_ms, running
 * the loop, and read one length-prefixed query from it into buf (without
 * its prefix). Returns the connection; *len is the query's length. */
static int upstream_tcp_query(struct rig *r, struct upstream *u, uint8_t *buf,
			      size_t cap, size_t *len, int max_ms)
{
	uint8_t pfx[2];
	int fd = rig_accept(r, u->tcp, max_ms);

	ASSERT_TRUE(fd >= 0);
	rig_host_read(r, fd, pfx, 2, 1000);
	*len = load_be16(pfx);
	ASSERT_LE_U64(*len, cap);
	rig_host_read(r, fd, buf, *len, 1000);
	return fd;
}

/* Answer over TCP, length prefix and message in one write. */
static void tcp_send_msg(int fd, const uint8_t *m, size_t len)
{
	static uint8_t b[2 + 65535];

	store_be16(b, (uint16_t)len);
	memcpy(b + 2, m, len);
	ASSERT_EQ_INT(send(fd, b, 2 + len, MSG_NOSIGNAL), (ssize_t)(2 + len));
}

/* A UDP query from the VM, and the upstream's truncated answer to it
 * over UDP: header and question, TC set. Returns the query as the
 * upstream saw it (our ID) in seen. */
static void ask_truncated(struct rig *r, struct upstream *u, const uint8_t *q,
			  size_t qlen, uint16_t sport, uint8_t seen[512],
			  struct sockaddr_in *from)
{
	uint8_t ans[512];

	ask_upstream(r, u, q, qlen, sport, seen, from);
	upstream_answer(u, ans, seen, 0, 0x8380, from);
}

/*
 * ask_truncated, then the relay's fallback: the upstream must accept its
 * TCP connection and read the same query (our ID) into tq. Returns the
 * connection.
 */
static int ask_fallback(struct rig *r, struct upstream *u, const uint8_t *q,
			size_t qlen, uint16_t sport, uint8_t seen[512],
			struct sockaddr_in *from, uint8_t tq[512])
{
	size_t tlen;
	int fd;

	ask_truncated(r, u, q, qlen, sport, seen, from);
	fd = upstream_tcp_query(r, u, tq, 512, &tlen, 2000);
	ASSERT_EQ_U64(tlen, qlen);
	ASSERT_EQ_MEM(tq, seen, qlen);
	return fd;
}

/* The upstream answers tq over TCP with fake_answer's message, built in
 * ans; returns its length. */
static size_t tcp_answer(int fd, uint8_t *ans, const uint8_t *tq, size_t total)
{
	size_t alen = fake_answer(ans, tq, total, 0x8180);

	tcp_send_msg(fd, ans, alen);
	return alen;
}

/* The next frame is msg (len bytes) relayed to the VM at dport as it
 * was, with the VM's own ID. */
static void expect_relayed(struct rig *r, uint16_t dport, uint16_t id,
			   const uint8_t *msg, size_t len)
{
	size_t glen;
	const uint8_t *got = answer4(r, dport, 2000, &glen);

	ASSERT_EQ_U64(glen, len);
	ASSERT_EQ_U64(load_be16(got), id);
	ASSERT_EQ_MEM(got + 2, msg + 2, len - 2);
}

/* What the instance logged, for the debug lines of the TCP fallback. */
static struct rig_logbuf dns_log;

/* A fake upstream, and an instance in forward mode with it as its only
 * server, debug lines kept in dns_log, max_fds host descriptors (0: the
 * default). */
static void fallback_rig(struct rig *r, struct upstream *u, unsigned max_fds)
{
	struct vpnkit_config cfg;
	char line[64];

	upstream_open(u);
	dns_config(&cfg, VPNKIT_DNS_FORWARD, ns_line(u, line, sizeof(line)));
	rig_keep_log(&cfg, &dns_log);
	if (max_fds)
		cfg.max_fds = max_fds;
	rig_start(r, &cfg, 0);
}

/* ---------------------------------------------------------------- built-in names */

TEST(builtin_names_are_answered_locally)
{
	/* Name (pointer to the question), A, IN, TTL 60, 192.168.65.2. */
	static const uint8_t a_record[16] = {
		0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 168, 65, 2,
	};
	struct rig r;
	struct parsed p;
	uint8_t q[512], a[512];
	size_t qlen, alen;
	const uint8_t *got;
	struct in6_addr host6;

	/* No nameserver at all: these must not need one. */
	dns_rig(&r, VPNKIT_DNS_FORWARD, "");
	qlen = query(q, 0xbeef, "host.docker.internal", 1, 0);
	send_udp4(&r, 40000, q, qlen);
	got = answer4(&r, 40000, 0, &alen); /* answered at once */
	/* Byte for byte: header, question, one A record by pointer. */
	memcpy(a, q, qlen);
	store_be16(a + 2, 0x8580); /* QR AA RD RA, NOERROR */
	store_be16(a + 6, 1);
	memcpy(a + qlen, a_record, sizeof(a_record));
	ASSERT_EQ_U64(alen, qlen + 16);
	ASSERT_EQ_MEM(got, a, alen);

	host6 = r.cfg.prefix6;
	host6.s6_addr[15] = 2;
	qlen = query(q, 2, "host.containers.internal", 28, 0);
	ask(&r, q, qlen, 40001, &p);
	ASSERT_EQ_U64(RCODE(&p), 0);
	ASSERT_EQ_U64(p.n_rr, 1);
	ASSERT_EQ_U64(p.type[0], 28);
	ASSERT_EQ_MEM(p.data[0], &host6, 16);

	qlen = query(q, 3, "gateway.docker.internal", 1, 0);
	ask(&r, q, qlen, 40002, &p);
	ASSERT_EQ_U64(p.n_rr, 1);
	ASSERT_EQ_MEM(p.data[0], "\xc0\xa8\x41\x01", 4);

	/* A type the name has no record of: NODATA, authoritative. */
	qlen = query(q, 4, "host.docker.internal", 15, 0);
	ask(&r, q, qlen, 40003, &p);
	ASSERT_EQ_U64(RCODE(&p), 0);
	ASSERT_TRUE(p.flags & FLAG_AA);
	ASSERT_EQ_U64(p.an, 0);
	ASSERT_EQ_U64(rig_stats(&r).bad, 0);
	rig_stop(&r);
}

TEST(builtin_names_ignore_case_and_trailing_dot)
{
	struct vpnkit_config cfg;
	struct rig r;
	struct parsed p;
	uint8_t q[512];
	size_t qlen;

	dns_config(&cfg, VPNKIT_DNS_FORWARD, "");
	cfg.names[0].name = "My.Service.";
	cfg.names[0].ip4 = rig_addr4("10.0.0.5");
	cfg.names[1].name = "v6only.test";
	cfg.names[1].ip6 = rig_addr6("fd00::55");
	/* A configured name overrides a built-in one. */
	cfg.names[2].name = "gateway.docker.internal";
	cfg.names[2].ip4 = rig_addr4("10.0.0.1");
	cfg.n_names = 3;
	rig_start(&r, &cfg, 0);

	qlen = query(q, 10, "mY.sERVICE", 1, 0);
	ask(&r, q, qlen, 41000, &p);
	ASSERT_EQ_U64(p.n_rr, 1);
	ASSERT_EQ_MEM(p.data[0], "\x0a\x00\x00\x05", 4);

	/* AAAA of a name with only an A record: NODATA, not NXDOMAIN. */
	qlen = query(q, 11, "my.service", 28, 0);
	ask(&r, q, qlen, 41001, &p);
	ASSERT_EQ_U64(RCODE(&p), 0);
	ASSERT_EQ_U64(p.an, 0);

	qlen = query(q, 12, "V6ONLY.test", 28, 1232);
	ask(&r, q, qlen, 41002, &p);
	ASSERT_EQ_U64(p.n_rr, 1);
	ASSERT_EQ_U64(p.type[0], 28);
	ASSERT_TRUE(p.opt); /* EDNS asked, EDNS answered */
	ASSERT_EQ_U64(p.ar, 1);

	qlen = query(q, 13, "gateway.docker.internal", 1, 0);
	ask(&r, q, qlen, 41003, &p);
	ASSERT_EQ_MEM(p.data[0], "\x0a\x00\x00\x01", 4);
	/* ... and only its A: its AAAA record is not the built-in one. */
	qlen = query(q, 14, "gateway.docker.internal", 28, 0);
	ask(&r, q, qlen, 41004, &p);
	ASSERT_EQ_U64(p.an, 0);
	rig_stop(&r);
}

TEST(builtin_names_over_ipv6)
{
	static uint8_t f[2048];
	struct rig r;
	struct fr_l3 a;
	struct fr_view v;
	struct parsed p;
	uint8_t q[512], gw[16];
	size_t qlen;

	dns_rig(&r, VPNKIT_DNS_FORWARD, "");
	memcpy(gw, &r.cfg.prefix6, 16);
	gw[15] = 1;
	a = rig_l3_6(&r, gw);
	qlen = query(q, 20, "gateway.docker.internal", 28, 0);
	rig_input(&r, f, fr_udp(f, &a, 42000, 53, q, qlen));
	rig_expect(&r, 0, &v);
	ASSERT_EQ_INT(v.af, 6);
	ASSERT_EQ_U64(v.proto, IPPROTO_UDP);
	ASSERT_EQ_MEM(v.src, gw, 16);
	ASSERT_EQ_MEM(v.dst, r.ip6, 16);
	ASSERT_EQ_U64(v.sport, 53);
	ASSERT_EQ_U64(v.dport, 42000);
	parse_answer(v.data, v.len, &p);
	ASSERT_EQ_U64(p.id, 20);
	ASSERT_EQ_U64(p.n_rr, 1);
	ASSERT_EQ_U64(p.type[0], 28);
	ASSERT_EQ_MEM(p.data[0], gw, 16);
	rig_stop(&r);
}

/* ---------------------------------------------------------------- errors */

TEST(no_nameserver_gives_servfail)
{
	struct rig r;
	struct parsed p;
	uint8_t q[512];
	size_t qlen;

	dns_rig(&r, VPNKIT_DNS_FORWARD, "# nothing here\nsearch x\n");
	qlen = query(q, 30, "example.com", 1, 0);
	ask(&r, q, qlen, 43000, &p);
	ASSERT_EQ_U64(RCODE(&p), 2);
	ASSERT_EQ_U64(p.an, 0);
	/* The file disappears: still SERVFAIL, no crash. */
	ASSERT_OK(unlink(resolv_path()));
	sleep(1);
	pump_ms(&r, 150);
	qlen = query(q, 31, "example.com", 28, 0);
	ask(&r, q, qlen, 43001, &p);
	ASSERT_EQ_U64(RCODE(&p), 2);
	rig_stop(&r);
}

TEST(malformed_queries)
{
	struct rig r;
	struct parsed p;
	uint8_t q[512];
	size_t qlen, alen;
	const uint8_t *a;
	uint64_t bad = 0;

	dns_rig(&r, VPNKIT_DNS_FORWARD, "");
	bad = rig_stats(&r).bad;
	/* Shorter than a header, or an answer: dropped, counted. */
	send_udp4(&r, 44000, "\x01\x02\x03", 3);
	qlen = query(q, 40, "host.docker.internal", 1, 0);
	q[2] |= 0x80;
	send_udp4(&r, 44001, q, qlen);
	rig_expect_none(&r, 20);
	ASSERT_EQ_U64(rig_stats(&r).bad, bad + 2);

	/* A label running past the end: FORMERR, header only. */
	query(q, 41, "host.docker.internal", 1, 0);
	q[12] = 60;
	send_udp4(&r, 44002, q, 20);
	a = answer4(&r, 44002, 0, &alen);
	ASSERT_EQ_U64(alen, 12);
	ASSERT_EQ_U64(load_be16(a), 41);
	ASSERT_EQ_U64(load_be16(a + 2) & 0x800f, 0x8001);

	/* A compression pointer in the question (nothing to point at). */
	qlen = query(q, 42, "a", 1, 0);
	q[12] = 0xc0;
	q[13] = 0x0c;
	send_udp4(&r, 44003, q, qlen);
	a = answer4(&r, 44003, 0, &alen);
	ASSERT_EQ_U64(load_be16(a + 2) & 0xf, 1);

	/* Two questions: FORMERR with the first. */
	qlen = query(q, 43, "host.docker.internal", 1, 0);
	store_be16(q + 4, 2);
	memcpy(q + qlen, q + 12, qlen - 12);
	send_udp4(&r, 44004, q, 2 * qlen - 12);
	a = answer4(&r, 44004, 0, &alen);
	parse_answer(a, alen, &p);
	ASSERT_EQ_U64(RCODE(&p), 1);

	/* EDNS version 1 for a local name: BADVERS (extended rcode 16). */
	qlen = query(q, 44, "host.docker.internal", 1, 1232);
	q[qlen - 5] = 1; /* the version byte of the OPT TTL */
	send_udp4(&r, 44005, q, qlen);
	a = answer4(&r, 44005, 0, &alen);
	parse_answer(a, alen, &p);
	ASSERT_EQ_U64(RCODE(&p), 0);
	ASSERT_TRUE(p.opt);
	ASSERT_EQ_U64(a[alen - 6], 1); /* extended rcode: 16 >> 4 */
	ASSERT_EQ_U64(p.an, 0);

	/* A query too long to relay over UDP: TC, so it comes over TCP. */
	qlen = query(q, 45, "example.com", 1, 0);
	{
		static const uint8_t pad_rr[9] = { 0, 0, 16, 0, 1, 0, 0, 0, 0 };
		static uint8_t big[1400];

		memcpy(big, q, qlen);
		store_be16(big + 10, 1); /* an additional record of padding */
		memcpy(big + qlen, pad_rr, sizeof(pad_rr));
		store_be16(big + qlen + 9, (uint16_t)(1300 - qlen - 11));
		send_udp4(&r, 44006, big, 1300);
	}
	a = answer4(&r, 44006, 0, &alen);
	ASSERT_EQ_U64(alen, qlen);
	ASSERT_EQ_U64(load_be16(a + 2) & (FLAG_QR | FLAG_TC),
		      FLAG_QR | FLAG_TC);
	rig_stop(&r);
}

/* ---------------------------------------------------------------- forwarding */

TEST(forward_relays_raw_messages)
{
	/* EDNS option 10 (COOKIE), 8 bytes of client cookie. */
	static const uint8_t cookie[12] = { 0,	 10,  0,   8,	'a', 'b',
					    'c', 'd', 'e', 'f', 'g', 'h' };
	struct upstream u;
	struct rig r;
	struct sockaddr_in from;
	uint8_t q[512], seen[512], ans[2048];
	size_t qlen, alen;

	upstream_rig(&r, &u, VPNKIT_DNS_FORWARD);
	/* TXT with EDNS and a cookie option: relayed as it is. */
	qlen = query(q, 0x4242, "Example.COM", 16, 1232);
	store_be16(q + qlen - 2, 12);
	memcpy(q + qlen, cookie, sizeof(cookie));
	qlen += 12;
	ask_upstream(&r, &u, q, qlen, 45000, seen, &from);
	ASSERT_EQ_MEM(seen + 2, q + 2, qlen - 2);
	ASSERT_EQ_U64(from.sin_addr.s_addr, htonl(INADDR_LOOPBACK));

	alen = upstream_answer(&u, ans, seen, 900, 0x8180, &from);
	expect_relayed(&r, 45000, 0x4242, ans, alen);

	/* A late duplicate of the same answer is not delivered twice. */
	upstream_reply(&u, ans, alen, &from);
	rig_expect_none(&r, 50);
	upstream_stop(&r, &u);
}

/*
 * Queries in flight at once, some answered while others are asked, each
 * answered in any order: every VM gets its own answer, once. (The table
 * of queries in flight recycles its entries.)
 */
TEST(forward_keeps_concurrent_queries_apart)
{
	struct upstream u;
	struct rig r;
	struct sockaddr_in from;
	char name[32];
	uint8_t q[512], seen[8][512], ans[2048];
	size_t qlen, len;
	bool answered[8] = { false };
	const uint8_t *a;

	upstream_rig(&r, &u, VPNKIT_DNS_FORWARD);
	for (unsigned round = 0; round < 2; round++) {
		/* Four queries out, answered last first. */
		for (unsigned i = 0; i < 4; i++) {
			unsigned k = round * 4 + i;

			snprintf(name, sizeof(name), "q%u.example", k);
			qlen = query(q, (uint16_t)(1000 + k), name, 1, 0);
			ask_upstream(&r, &u, q, qlen, (uint16_t)(53000 + k),
				     seen[k], &from);
		}
		for (unsigned i = 4; i-- > 0;)
			upstream_answer(&u, ans, seen[round * 4 + i], 0, 0x8180,
					&from);
		for (unsigned i = 0; i < 4; i++) {
			struct fr_view v;
			unsigned k;

			rig_expect(&r, 2000, &v);
			ASSERT_GE_U64(v.dport, 53000 + round * 4);
			ASSERT_LT_U64(v.dport, 53000 + round * 4 + 4);
			k = v.dport - 53000;
			ASSERT_FALSE(answered[k]);
			answered[k] = true;
			r.cap.next--; /* read it again through answer4 */
			a = answer4(&r, (uint16_t)(53000 + k), 0, &len);
			ASSERT_EQ_U64(load_be16(a), 1000 + k);
			snprintf(name, sizeof(name), "q%u.example", k);
			qlen = query(q, 0, name, 1, 0);
			ASSERT_EQ_MEM(a + 12, q + 12, qlen - 12);
		}
	}
	rig_expect_none(&r, 50);
	upstream_stop(&r, &u);
}

TEST(forward_truncates_what_does_not_fit)
{
	struct upstream u;
	struct rig r;
	struct sockaddr_in from;
	uint8_t q[512], seen[512], ans[4096];
	const uint8_t *got;
	size_t qlen, alen, glen;

	upstream_rig(&r, &u, VPNKIT_DNS_FORWARD);

	/* EDNS 4096 but a 1500-byte link: a 3000-byte answer cannot go in
	 * one frame, so the VM gets header + question with TC. */
	qlen = query(q, 51, "big.example", 16, 4096);
	ask_upstream(&r, &u, q, qlen, 46001, seen, &from);
	upstream_answer(&u, ans, seen, 3000, 0x8180, &from);
	got = answer4(&r, 46001, 2000, &glen);
	ASSERT_EQ_U64(glen, 12 + question_len(q));
	ASSERT_EQ_U64(load_be16(got), 51);
	ASSERT_EQ_U64(load_be16(got + 2), 0x8380);
	ASSERT_EQ_U64(load_be16(got + 4), 1);
	ASSERT_EQ_U64(load_be16(got + 6), 0);

	/* No EDNS: 512 bytes at most, even if the server sends more. */
	qlen = query(q, 52, "big.example", 16, 0);
	ask_upstream(&r, &u, q, qlen, 46002, seen, &from);
	alen = upstream_answer(&u, ans, seen, 700, 0x8180, &from);
	ASSERT_GT_U64(alen, 512);
	got = answer4(&r, 46002, 2000, &glen);
	ASSERT_EQ_U64(glen, 12 + question_len(q));
	ASSERT_TRUE(load_be16(got + 2) & FLAG_TC);
	upstream_stop(&r, &u);
}

TEST(forward_ignores_spoofed_answers)
{
	struct upstream u;
	struct rig r;
	struct sockaddr_in from;
	uint8_t q[512], seen[512], ans[2048];
	size_t qlen, alen;
	int other;

	upstream_rig(&r, &u, VPNKIT_DNS_FORWARD);
	qlen = query(q, 60, "victim.example", 1, 0);
	ask_upstream(&r, &u, q, qlen, 47000, seen, &from);
	alen = fake_answer(ans, seen, 0, 0x8180);

	/* The right ID from another port than the server's. */
	other = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ASSERT_TRUE(other >= 0);
	ASSERT_EQ_INT(sendto(other, ans, alen, 0, (struct sockaddr *)&from,
			     sizeof(from)),
		      (ssize_t)alen);
	close(other);
	/* The right ID and server, another question. */
	ans[13] ^= 0x20; /* case does not count ... */
	ans[14] ^= 1; /* ... a different letter does */
	upstream_reply(&u, ans, alen, &from);
	/* Not an answer at all (QR clear). */
	ans[14] ^= 1;
	store_be16(ans + 2, 0x0100);
	upstream_reply(&u, ans, alen, &from);
	rig_expect_none(&r, 100);

	/* The real one, with the name's case changed by the server. */
	store_be16(ans + 2, 0x8180);
	upstream_reply(&u, ans, alen, &from);
	answer4(&r, 47000, 2000, &alen);
	rig_expect_none(&r, 50);
	upstream_stop(&r, &u);
}

TEST(forward_moves_to_the_next_server)
{
	struct upstream silent, bad, good;
	struct rig r;
	struct sockaddr_in from;
	char text[256];
	uint8_t q[512], seen[512], ans[2048];
	size_t qlen;
	uint64_t t0;
	struct parsed p;

	upstream_open(&silent);
	upstream_open(&bad);
	upstream_open(&good);
	snprintf(text, sizeof(text),
		 "nameserver 127.0.0.1:%u\nnameserver 127.0.0.1:%u\n"
		 "nameserver 127.0.0.1:%u\n",
		 silent.port, bad.port, good.port);
	dns_rig(&r, VPNKIT_DNS_FORWARD, text);
	qlen = query(q, 70, "slow.example", 1, 0);
	t0 = now_ms();
	send_udp4(&r, 48000, q, qlen);
	ASSERT_EQ_INT(upstream_recv(&r, &silent, seen, sizeof(seen), &from,
				    1000),
		      (ssize_t)qlen);
	/* The first server says nothing: 2 s later the second is asked.
	 * It says SERVFAIL, so the third is asked at once. */
	ASSERT_EQ_INT(upstream_recv(&r, &bad, seen, sizeof(seen), &from, 3000),
		      (ssize_t)qlen);
	ASSERT_GE_U64(now_ms() - t0, 1900);
	upstream_answer(&bad, ans, seen, 0, 0x8182, &from);
	ASSERT_EQ_INT(upstream_recv(&r, &good, seen, sizeof(seen), &from, 500),
		      (ssize_t)qlen);
	rig_expect_none(&r, 0);
	upstream_answer(&good, ans, seen, 0, 0x8183, &from); /* NXDOMAIN */
	{
		const uint8_t *a;
		size_t len;

		a = answer4(&r, 48000, 1000, &len);
		parse_answer(a, len, &p);
		ASSERT_EQ_U64(p.id, 70);
		ASSERT_EQ_U64(RCODE(&p), 3);
	}
	upstream_stop(&r, &silent);
	upstream_close(&bad);
	upstream_close(&good);
}

TEST(forward_gives_up_with_servfail)
{
	struct upstream silent;
	struct rig r;
	struct sockaddr_in from;
	uint8_t q[512], seen[512];
	size_t qlen, alen;
	const uint8_t *a;
	unsigned copies = 0;
	uint64_t t0;
	struct parsed p;

	upstream_rig(&r, &silent, VPNKIT_DNS_FORWARD);
	qlen = query(q, 80, "gone.example", 1, 0);
	t0 = now_ms();
	send_udp4(&r, 49000, q, qlen);
	while (r.cap.n == r.cap.next && now_ms() - t0 < 7000)
		if (upstream_recv(&r, &silent, seen, sizeof(seen), &from, 50) >
		    0)
			copies++;
	ASSERT_GE_U64(now_ms() - t0, 4900);
	ASSERT_EQ_U64(copies, 3); /* at 0, 2 and 4 s */
	a = answer4(&r, 49000, 0, &alen);
	parse_answer(a, alen, &p);
	ASSERT_EQ_U64(p.id, 80);
	ASSERT_EQ_U64(RCODE(&p), 2);
	upstream_stop(&r, &silent);
}

TEST(resolv_conf_changes_are_seen)
{
	struct upstream u;
	struct rig r;
	struct vpnkit_config cfg;
	struct sockaddr_in from;
	char line[64], a_path[4200], b_path[4200], link_tmp[4200];
	uint8_t q[512], seen[512];
	size_t qlen;
	struct parsed p;

	upstream_open(&u);
	dns_config(&cfg, VPNKIT_DNS_FORWARD, NULL);
	/* resolv.conf is a symlink, as systemd-resolved makes it. */
	snprintf(a_path, sizeof(a_path), "%s/a.conf", test_tmpdir());
	snprintf(b_path, sizeof(b_path), "%s/b.conf", test_tmpdir());
	snprintf(link_tmp, sizeof(link_tmp), "%s/link.tmp", test_tmpdir());
	write_file(a_path, "");
	write_file(b_path, ns_line(&u, line, sizeof(line)));
	ASSERT_OK(symlink(a_path, resolv_path()));
	rig_start(&r, &cfg, 0);

	qlen = query(q, 90, "example.org", 1, 0);
	ask(&r, q, qlen, 50000, &p);
	ASSERT_EQ_U64(RCODE(&p), 2);

	/* Point the link at the other file: seen within a second. */
	ASSERT_OK(symlink(b_path, link_tmp));
	ASSERT_OK(rename(link_tmp, resolv_path()));
	pump_ms(&r, 1100);
	send_udp4(&r, 50001, q, qlen);
	ASSERT_EQ_INT(upstream_recv(&r, &u, seen, sizeof(seen), &from, 1000),
		      (ssize_t)qlen);
	rig_expect_none(&r, 0);

	/* And the file itself emptied in place. */
	write_file(b_path, "");
	pump_ms(&r, 1100);
	ask(&r, q, qlen, 50002, &p);
	ASSERT_EQ_U64(RCODE(&p), 2);
	upstream_stop(&r, &u);
}

TEST(queries_in_flight_are_bounded)
{
	struct upstream silent;
	struct rig r;
	struct sockaddr_in from;
	uint8_t q[512], seen[512];
	size_t qlen;
	unsigned got = 0;
	uint64_t dropped;

	upstream_rig(&r, &silent, VPNKIT_DNS_FORWARD);
	dropped = rig_stats(&r).dropped;
	qlen = query(q, 0, "flood.example", 1, 0);
	/* In batches, draining the fake server so its socket never fills. */
	for (unsigned i = 0; i < 1100; i++) {
		store_be16(q, (uint16_t)i);
		send_udp4(&r, (uint16_t)(10000 + i), q, qlen);
		if (i % 64 == 63)
			while (upstream_recv(&r, &silent, seen, sizeof(seen),
					     &from, 0) > 0)
				got++;
	}
	ASSERT_EQ_U64(rig_stats(&r).dropped, dropped + 1100 - 1024);
	while (upstream_recv(&r, &silent, seen, sizeof(seen), &from, 100) > 0)
		got++;
	ASSERT_EQ_U64(got, 1024);
	rig_expect_none(&r, 0);
	upstream_stop(&r, &silent);
}

TEST(answer_for_a_port_that_went_away)
{
	struct upstream u;
	struct rig r;
	struct sockaddr_in from;
	uint8_t q[512], seen[512], ans[2048];
	size_t qlen;

	upstream_rig(&r, &u, VPNKIT_DNS_FORWARD);
	qlen = query(q, 100, "late.example", 1, 0);
	ask_upstream(&r, &u, q, qlen, 51000, seen, &from);
	vpnkit_port_free(r.port);
	upstream_answer(&u, ans, seen, 0, 0x8180, &from);
	rig_expect_none(&r, 100);
	upstream_stop(&r, &u);
}

/* ---------------------------------------------------------------- host mode */

TEST(host_mode_asks_getaddrinfo)
{
	struct upstream u;
	struct rig r;
	struct sockaddr_in from;
	struct parsed p;
	uint8_t q[512], seen[512], ans[2048];
	size_t qlen, alen;
	struct in6_addr host6;

	upstream_rig(&r, &u, VPNKIT_DNS_HOST);
	/* localhost is 127.0.0.1 on the host: the VM reaches that as the
	 * host address. */
	qlen = query(q, 110, "LocalHost", 1, 0);
	ask(&r, q, qlen, 52000, &p);
	ASSERT_EQ_U64(RCODE(&p), 0);
	ASSERT_EQ_U64(p.n_rr, 1);
	ASSERT_EQ_U64(p.type[0], 1);
	ASSERT_EQ_U64(p.ttl[0], 0);
	ASSERT_EQ_MEM(p.data[0], "\xc0\xa8\x41\x02", 4);

	/* AAAA: ::1 (as prefix::2) if /etc/hosts has it, else NODATA. */
	host6 = r.cfg.prefix6;
	host6.s6_addr[15] = 2;
	qlen = query(q, 111, "localhost", 28, 1232);
	ask(&r, q, qlen, 52001, &p);
	ASSERT_EQ_U64(RCODE(&p), 0);
	ASSERT_TRUE(p.opt);
	for (size_t i = 0; i < p.n_rr; i++) {
		ASSERT_EQ_U64(p.type[i], 28);
		ASSERT_EQ_MEM(p.data[i], &host6, 16);
	}

	/* A name that reads as an address has no records. */
	qlen = query(q, 112, "127.1", 1, 0);
	ask(&r, q, qlen, 52002, &p);
	ASSERT_EQ_U64(RCODE(&p), 3);

	/* Other types go to the upstream as in forward mode. */
	qlen = query(q, 113, "localhost", 16, 0);
	ask_upstream(&r, &u, q, qlen, 52003, seen, &from);
	alen = upstream_answer(&u, ans, seen, 300, 0x8180, &from);
	answer4(&r, 52003, 2000, &alen);
	upstream_stop(&r, &u);
}

/* Many lookups at once share the worker threads; an instance freed with
 * lookups still running leaves them to finish on their own. */
TEST(host_mode_many_lookups_then_shutdown)
{
	struct rig r;
	uint8_t q[512];
	size_t qlen;
	unsigned got = 0;
	uint64_t end;

	dns_rig(&r, VPNKIT_DNS_HOST, "");
	for (unsigned i = 0; i < 100; i++) {
		qlen = query(q, (uint16_t)i, i % 2 ? "localhost" : "LOCALHOST",
			     i % 3 ? 1 : 28, 0);
		send_udp4(&r, (uint16_t)(54000 + i), q, qlen);
	}
	end = now_ms() + 10000;
	while (got < 100 && now_ms() < end) {
		struct fr_view v;

		if (!rig_next(&r, 10))
			continue;
		ASSERT_EQ_PTR(fr_parse(&v, r.cap.f[r.cap.next - 1].data,
				       r.cap.f[r.cap.next - 1].len, false),
			      NULL);
		ASSERT_EQ_U64(v.sport, 53);
		ASSERT_EQ_U64(load_be16(v.data), v.dport - 54000);
		ASSERT_EQ_U64(load_be16(v.data + 2) & 0xf, 0);
		got++;
	}
	ASSERT_EQ_U64(got, 100);
	for (unsigned i = 0; i < 50; i++) {
		qlen = query(q, (uint16_t)i, "localhost", 1, 0);
		send_udp4(&r, (uint16_t)(55000 + i), q, qlen);
	}
	rig_stop(&r);
}

/* ---------------------------------------------------------------- TCP */

static int tcp_client(struct rig *r)
{
	struct sockaddr_storage sa;
	socklen_t sl;
	int fd;

	ASSERT_OK(vk_dns_tcp_target(r->vk, &sa, &sl));
	fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ASSERT_TRUE(fd >= 0);
	ASSERT_OK(connect(fd, (struct sockaddr *)&sa, sl));
	return fd;
}

/* Read one length-prefixed message from fd, running the loop (and,
 * if up is not NULL, serve its TCP side with serve()). */
static size_t tcp_read_msg(struct rig *r, int fd, uint8_t *buf, size_t cap)
{
	size_t have = 0, want = 2;
	uint64_t end = now_ms() + 3000;

	while (have < want && now_ms() < end) {
		ssize_t n = recv(fd, buf + have, want - have, MSG_DONTWAIT);

		if (n > 0) {
			have += (size_t)n;
			if (have == 2) {
				want = 2 + (size_t)load_be16(buf);
				ASSERT_LE_U64(want, cap);
			}
			continue;
		}
		ASSERT_TRUE(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
		ASSERT_OK(vpnkit_run_once(r->vk, 5));
	}
	ASSERT_EQ_U64(have, want);
	return have - 2;
}

/* Read one answer from fd, running the loop, and parse it. */
static void tcp_expect_answer(struct rig *r, int fd, struct parsed *p)
{
	static uint8_t buf[65537];

	parse_answer(buf + 2, tcp_read_msg(r, fd, buf, sizeof(buf)), p);
}

static void tcp_write(int fd, const uint8_t *m, size_t len)
{
	uint8_t b[2];

	store_be16(b, (uint16_t)len);
	ASSERT_EQ_INT(send(fd, b, 2, MSG_NOSIGNAL), 2);
	ASSERT_EQ_INT(send(fd, m, len, MSG_NOSIGNAL), (ssize_t)len);
}

TEST(tcp_answers_pipelined_queries_in_order)
{
	struct rig r;
	struct parsed p;
	uint8_t q1[512], q2[512], both[1024];
	size_t l1, l2;
	int fd;

	dns_rig(&r, VPNKIT_DNS_FORWARD, "");
	fd = tcp_client(&r);
	l1 = query(q1, 120, "host.docker.internal", 1, 0);
	l2 = query(q2, 121, "nowhere.example", 1, 0);
	/* Both in one write, split oddly: length, query, length, query. */
	store_be16(both, (uint16_t)l1);
	memcpy(both + 2, q1, l1);
	store_be16(both + 2 + l1, (uint16_t)l2);
	memcpy(both + 4 + l1, q2, l2);
	ASSERT_EQ_INT(send(fd, both, 3, MSG_NOSIGNAL), 3);
	ASSERT_OK(vpnkit_run_once(r.vk, 5));
	ASSERT_EQ_INT(send(fd, both + 3, 4 + l1 + l2 - 3, MSG_NOSIGNAL),
		      (ssize_t)(4 + l1 + l2 - 3));

	tcp_expect_answer(&r, fd, &p);
	ASSERT_EQ_U64(p.id, 120);
	ASSERT_EQ_U64(p.n_rr, 1);
	tcp_expect_answer(&r, fd, &p);
	ASSERT_EQ_U64(p.id, 121);
	ASSERT_EQ_U64(RCODE(&p), 2); /* no nameserver */

	/* A half-closed client still gets its answer. */
	l1 = query(q1, 122, "gateway.docker.internal", 1, 0);
	tcp_write(fd, q1, l1);
	ASSERT_OK(shutdown(fd, SHUT_WR));
	tcp_expect_answer(&r, fd, &p);
	ASSERT_EQ_U64(p.id, 122);
	close(fd);
	rig_stop(&r);
}

TEST(tcp_relays_to_the_upstream_over_tcp)
{
	struct upstream u;
	struct rig r;
	uint8_t q[512], up[512], ans[8192], buf[8192];
	size_t qlen, ulen, alen, n;
	int fd, ufd;

	upstream_rig(&r, &u, VPNKIT_DNS_FORWARD);
	fd = tcp_client(&r);
	qlen = query(q, 130, "large.example", 16, 0);
	tcp_write(fd, q, qlen);

	ufd = upstream_tcp_query(&r, &u, up, sizeof(up), &ulen, 3000);
	ASSERT_EQ_U64(ulen, qlen);
	ASSERT_EQ_MEM(up, q, qlen); /* the VM's own ID, over TCP */

	/* A 5000-byte answer: more than UDP could carry here. */
	alen = fake_answer(ans, up, 5000, 0x8180);
	tcp_send_msg(ufd, ans, alen);
	n = tcp_read_msg(&r, fd, buf, sizeof(buf));
	ASSERT_EQ_U64(n, alen);
	ASSERT_EQ_MEM(buf + 2, ans, alen);
	close(ufd);
	close(fd);
	upstream_stop(&r, &u);
}

TEST(tcp_in_host_mode)
{
	struct rig r;
	struct parsed p;
	uint8_t q[512];
	size_t qlen;
	int fd;

	dns_rig(&r, VPNKIT_DNS_HOST, "");
	fd = tcp_client(&r);
	qlen = query(q, 140, "localhost", 1, 0);
	tcp_write(fd, q, qlen);
	tcp_expect_answer(&r, fd, &p);
	ASSERT_EQ_U64(p.id, 140);
	ASSERT_EQ_U64(p.n_rr, 1);
	ASSERT_EQ_MEM(p.data[0], "\xc0\xa8\x41\x02", 4);
	close(fd);
	rig_stop(&r);
}

TEST(tcp_connections_are_bounded)
{
	struct rig r;
	struct parsed p;
	uint8_t q[512], c;
	size_t qlen;
	int fds[40];
	unsigned closed = 0;

	dns_rig(&r, VPNKIT_DNS_FORWARD, "");
	for (int i = 0; i < 40; i++)
		fds[i] = tcp_client(&r);
	pump_ms(&r, 100);
	/* Beyond 32, connections are closed at once. */
	for (int i = 0; i < 40; i++) {
		ssize_t k = recv(fds[i], &c, 1, MSG_DONTWAIT);

		if (k == 0)
			closed++;
	}
	ASSERT_EQ_U64(closed, 8);
	/* The first ones still work. */
	qlen = query(q, 150, "host.docker.internal", 1, 0);
	tcp_write(fds[0], q, qlen);
	tcp_expect_answer(&r, fds[0], &p);
	ASSERT_EQ_U64(p.id, 150);
	for (int i = 0; i < 40; i++)
		close(fds[i]);
	rig_stop(&r);
}

/* ---------------------------------------------------------------- TCP fallback */

/*
 * The upstream truncates over UDP and answers in full over TCP: the VM,
 * which asked over UDP, gets the full answer over UDP, TC clear; the
 * relay asked the same server the same bytes over TCP.
 */
TEST(fallback_gets_the_full_answer_over_tcp)
{
	struct upstream u;
	struct rig r;
	struct sockaddr_in from;
	struct parsed p;
	uint8_t q[512], seen[512], tq[512], ans[512], c;
	size_t qlen, alen;
	unsigned fds;
	int ufd;

	fallback_rig(&r, &u, 0);
	fds = rig_stats(&r).fds;
	qlen = query(q, 60, "tc-test.unikit.example", 1, 0);
	ufd = ask_fallback(&r, &u, q, qlen, 46100, seen, &from, tq);
	ASSERT_EQ_U64(rig_stats(&r).fds, fds + 1);
	/* A second copy of the truncated answer meanwhile is ignored. */
	upstream_answer(&u, ans, seen, 0, 0x8380, &from);
	rig_expect_none(&r, 50);
	ASSERT_TRUE(poll(&(struct pollfd){ .fd = u.tcp, .events = POLLIN }, 1,
			 0) == 0);

	alen = a_answer(ans, tq, "198.51.100.43");
	tcp_send_msg(ufd, ans, alen);
	expect_answer(&r, q, 46100, &p);
	ASSERT_EQ_U64(p.flags & FLAG_TC, 0);
	ASSERT_EQ_U64(RCODE(&p), 0);
	ASSERT_EQ_U64(p.n_rr, 1);
	ASSERT_EQ_U64(p.type[0], 1);
	ASSERT_EQ_MEM(p.data[0], "\xc6\x33\x64\x2b", 4); /* 198.51.100.43 */
	/* The relay's connection is closed and its descriptor given back. */
	ASSERT_TRUE(rig_wait_fd(&r, ufd, POLLIN, 1000));
	ASSERT_EQ_INT(recv(ufd, &c, 1, MSG_DONTWAIT), 0);
	ASSERT_EQ_U64(rig_stats(&r).fds, fds);
	close(ufd);
	rig_expect_none(&r, 50);
	rig_log_expect(&dns_log,
		       "1 tried, 1 answered, 0 too long for UDP, 0 failed");
	upstream_stop(&r, &u);
}

/*
 * The full answer is longer than the VM takes over UDP: it gets TC (no
 * EDNS: 512 bytes; EDNS 4096: one 1500-byte frame), and when it comes
 * back over TCP, the answer.
 */
TEST(fallback_answer_too_long_for_the_vm_gives_tc)
{
	struct upstream u;
	struct rig r;
	struct sockaddr_in from;
	uint8_t q[512], seen[512], tq[512], ans[4096], buf[8192];
	const uint8_t *got;
	size_t qlen, tlen, alen, glen, n;
	int ufd, fd;

	fallback_rig(&r, &u, 0);

	/* No EDNS, a 700-byte answer over TCP. */
	qlen = query(q, 61, "big.example", 16, 0);
	ufd = ask_fallback(&r, &u, q, qlen, 46200, seen, &from, tq);
	alen = tcp_answer(ufd, ans, tq, 700);
	ASSERT_GT_U64(alen, 512);
	got = answer4(&r, 46200, 2000, &glen);
	ASSERT_EQ_U64(glen, qlen);
	ASSERT_EQ_U64(load_be16(got), 61);
	ASSERT_EQ_U64(load_be16(got + 2), 0x8380);
	ASSERT_EQ_MEM(got + 12, q + 12, qlen - 12);
	close(ufd);

	/* EDNS 4096, a 3000-byte answer: more than one frame carries. */
	qlen = query(q, 62, "bigger.example", 16, 4096);
	ufd = ask_fallback(&r, &u, q, qlen, 46201, seen, &from, tq);
	tcp_answer(ufd, ans, tq, 3000);
	got = answer4(&r, 46201, 2000, &glen);
	ASSERT_EQ_U64(load_be16(got), 62);
	ASSERT_TRUE(load_be16(got + 2) & FLAG_TC);
	ASSERT_EQ_U64(load_be16(got + 6), 0);
	close(ufd);
	rig_log_expect(&dns_log,
		       "2 tried, 1 answered, 1 too long for UDP, 0 failed");

	/* The VM retries over TCP, as it should, and gets it all. */
	fd = tcp_client(&r);
	tcp_write(fd, q, qlen);
	ufd = upstream_tcp_query(&r, &u, tq, sizeof(tq), &tlen, 2000);
	ASSERT_EQ_MEM(tq, q, qlen);
	alen = tcp_answer(ufd, ans, tq, 3000);
	n = tcp_read_msg(&r, fd, buf, sizeof(buf));
	ASSERT_EQ_U64(n, alen);
	ASSERT_EQ_MEM(buf + 2, ans, alen);
	close(ufd);
	close(fd);
	upstream_stop(&r, &u);
}

/*
 * When the fallback fails, the VM gets the truncated answer it had
 * before there was a fallback, not SERVFAIL: the upstream refuses TCP,
 * or answers over TCP with another ID.
 */
TEST(fallback_refused_passes_the_truncated_answer)
{
	struct upstream u;
	struct rig r;
	struct sockaddr_in from;
	uint8_t q[512], seen[512], tq[512], tc[2048], ans[512];
	size_t qlen, tlen, tclen, alen;
	uint64_t t0;
	unsigned fds;
	int ufd;

	fallback_rig(&r, &u, 0);
	fds = rig_stats(&r).fds;

	/* A wrong ID over TCP. The truncated answer here carries a record
	 * (some servers send what fits): the VM gets it as it was. */
	qlen = query(q, 63, "wrong-id.example", 16, 0);
	ask_upstream(&r, &u, q, qlen, 46300, seen, &from);
	tclen = upstream_answer(&u, tc, seen, 300, 0x8380, &from);
	ASSERT_EQ_U64(load_be16(tc + 6), 1);
	ufd = upstream_tcp_query(&r, &u, tq, sizeof(tq), &tlen, 2000);
	alen = a_answer(ans, tq, "198.51.100.43");
	store_be16(ans, (uint16_t)(load_be16(ans) + 1));
	tcp_send_msg(ufd, ans, alen);
	expect_relayed(&r, 46300, 63, tc, tclen);
	close(ufd);

	/* Nothing listens on the server's TCP port: at once. */
	close(u.tcp);
	u.tcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	qlen = query(q, 64, "refused.example", 1, 0);
	ask_upstream(&r, &u, q, qlen, 46301, seen, &from);
	tclen = upstream_answer(&u, tc, seen, 0, 0x8380, &from);
	t0 = now_ms();
	expect_relayed(&r, 46301, 64, tc, tclen);
	ASSERT_LT_U64(now_ms() - t0, 1000);
	rig_expect_none(&r, 50);
	ASSERT_EQ_U64(rig_stats(&r).fds, fds);
	rig_log_expect(&dns_log,
		       "2 tried, 0 answered, 0 too long for UDP, 2 failed");
	upstream_stop(&r, &u);
}

/* Each fallback holds a host descriptor while it runs; with none left,
 * the truncated answer is passed on at once. */
TEST(fallback_counts_against_the_descriptor_budget)
{
	struct upstream u;
	struct rig r;
	struct sockaddr_in from;
	uint8_t q[512], seen[512], tq[512], ans[512];
	const uint8_t *got;
	size_t qlen, alen, glen;
	uint64_t refused;
	struct parsed p;
	int ufd;

	fallback_rig(&r, &u, 1);
	refused = rig_stats(&r).refused;

	qlen = query(q, 65, "first.example", 1, 0);
	ufd = ask_fallback(&r, &u, q, qlen, 46400, seen, &from, tq);
	ASSERT_EQ_U64(rig_stats(&r).fds, 1);

	/* The budget (1) is spent: the second gets its TC answer now. */
	qlen = query(q, 66, "second.example", 1, 0);
	ask_truncated(&r, &u, q, qlen, 46401, seen, &from);
	got = answer4(&r, 46401, 500, &glen);
	ASSERT_EQ_U64(load_be16(got), 66);
	ASSERT_TRUE(load_be16(got + 2) & FLAG_TC);
	ASSERT_EQ_U64(rig_stats(&r).refused, refused + 1);

	/* The first still gets its answer, and gives the descriptor back. */
	alen = a_answer(ans, tq, "198.51.100.43");
	tcp_send_msg(ufd, ans, alen);
	query(q, 65, "first.example", 1, 0);
	expect_answer(&r, q, 46400, &p);
	ASSERT_EQ_U64(p.n_rr, 1);
	ASSERT_EQ_U64(p.flags & FLAG_TC, 0);
	close(ufd);
	ASSERT_EQ_U64(rig_stats(&r).fds, 0);
	rig_log_expect(&dns_log,
		       "2 tried, 1 answered, 0 too long for UDP, 1 failed");
	upstream_stop(&r, &u);
}

/*
 * At most 16 fallbacks at once; one more passes its truncated answer at
 * once. A server that accepts and never answers: after 3 s each VM gets
 * its truncated answer, and the connections are closed.
 */
TEST(fallbacks_are_bounded_and_time_out)
{
	struct upstream u;
	struct rig r;
	struct sockaddr_in from;
	uint8_t q[512], seen[512];
	size_t qlen, glen;
	const uint8_t *got;
	bool answered[16] = { false };
	uint64_t t0;
	unsigned fds;

	fallback_rig(&r, &u, 0);
	fds = rig_stats(&r).fds;
	t0 = now_ms();
	for (unsigned i = 0; i < 17; i++) {
		char name[32];

		snprintf(name, sizeof(name), "slow%u.example", i);
		qlen = query(q, (uint16_t)(200 + i), name, 1, 0);
		ask_truncated(&r, &u, q, qlen, (uint16_t)(46500 + i), seen,
			      &from);
	}
	got = answer4(&r, 46516, 500, &glen);
	ASSERT_EQ_U64(load_be16(got), 216);
	ASSERT_TRUE(load_be16(got + 2) & FLAG_TC);
	ASSERT_EQ_U64(rig_stats(&r).fds, fds + 16);
	ASSERT_LT_U64(now_ms() - t0, 2000);
	rig_expect_none(&r, 2500 - (int)(now_ms() - t0));
	for (unsigned i = 0; i < 16; i++) {
		struct fr_view v;
		unsigned k;

		rig_expect(&r, 1500, &v);
		ASSERT_GE_U64(v.dport, 46500);
		ASSERT_LT_U64(v.dport, 46516);
		k = v.dport - 46500;
		ASSERT_FALSE(answered[k]);
		answered[k] = true;
		ASSERT_EQ_U64(load_be16(v.data), 200 + k);
		ASSERT_TRUE(load_be16(v.data + 2) & FLAG_TC);
	}
	ASSERT_GE_U64(now_ms() - t0, 2900);
	ASSERT_EQ_U64(rig_stats(&r).fds, fds);
	upstream_stop(&r, &u);
}

static const struct test_case tests[] = {
	TEST_CASE(builtin_names_are_answered_locally),
	TEST_CASE(builtin_names_ignore_case_and_trailing_dot),
	TEST_CASE(builtin_names_over_ipv6),
	TEST_CASE(no_nameserver_gives_servfail),
	TEST_CASE(malformed_queries),
	TEST_CASE(forward_relays_raw_messages),
	TEST_CASE(forward_keeps_concurrent_queries_apart),
	TEST_CASE(forward_truncates_what_does_not_fit),
	TEST_CASE(fallback_gets_the_full_answer_over_tcp),
	TEST_CASE(fallback_answer_too_long_for_the_vm_gives_tc),
	TEST_CASE(fallback_refused_passes_the_truncated_answer),
	TEST_CASE(fallback_counts_against_the_descriptor_budget),
	TEST_CASE(fallbacks_are_bounded_and_time_out),
	TEST_CASE(forward_ignores_spoofed_answers),
	TEST_CASE(forward_moves_to_the_next_server),
	TEST_CASE(forward_gives_up_with_servfail),
	TEST_CASE(resolv_conf_changes_are_seen),
	TEST_CASE(queries_in_flight_are_bounded),
	TEST_CASE(answer_for_a_port_that_went_away),
	TEST_CASE(host_mode_asks_getaddrinfo),
	TEST_CASE(host_mode_many_lookups_then_shutdown),
	TEST_CASE(tcp_answers_pipelined_queries_in_order),
	TEST_CASE(tcp_relays_to_the_upstream_over_tcp),
	TEST_CASE(tcp_in_host_mode),
	TEST_CASE(tcp_connections_are_bounded),
};

TEST_MAIN(tests);
