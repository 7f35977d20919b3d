// SPDX-License-Identifier: MIT
/*
 * Unit tests for the daemon's stream sessions (vpnkit/daemon/session.c,
 * built in here with framing.c: they are part of the program, not of the
 * library): the bytes a peer of the stream listener sends, and the bytes
 * it is told back, on a real instance with no socket in between.
 *
 * The test plays both the peer and the transport: it puts bytes in the
 * session's input buffer as reads would, runs session_process, and reads
 * the output buffer as hyperkit or QEMU would, checking the handshake
 * replies byte by byte (vpnkit/vmnet.h decodes them) and the frames with
 * frames.h. The port's send callback queues with session_queue, as
 * stream.c's does, and notes whether the session held its output.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <base/endian.h>
#include <base/test.h>
#include <vpnkit/vmnet.h>
#include <vpnkit/vpnkit.h>

/* The program's sources, not the library's: the test builds them in. */
#include "../daemon/framing.c" /* NOLINT(bugprone-suspicious-include) */
#include "../daemon/session.c" /* NOLINT(bugprone-suspicious-include) */
#include "rig.h"

#define UUID_A "5b0f3c1e-2a4d-4e6f-8a9b-0c1d2e3f4a5b"

struct ts {
	struct daemon d;
	struct session s;
	unsigned sends, sends_held;
	/* a port of "another connection", and what reaping it answers */
	struct vpnkit_port *other;
	struct capture other_cap; /* what it got */
	bool other_hung_up;
	unsigned reaps;
	char peer_log[4096];
};

/* The transports' rate-limited log: kept for the asserts. */
void daemon_peer_log(struct daemon *d, enum log_level level, const char *fmt,
		     ...)
{
	struct ts *t = daemon_container_of(d, struct ts, d);
	size_t used = strlen(t->peer_log);
	va_list ap;

	(void)level;
	va_start(ap, fmt);
	vsnprintf(t->peer_log + used, sizeof(t->peer_log) - used, fmt, ap);
	va_end(ap);
	test_note("peer log: %s", t->peer_log + used);
}

static int ts_send(void *opaque, const struct vpnkit_offload *off,
		   const struct iovec *iov, int iovcnt)
{
	struct ts *t = opaque;

	ASSERT_NULL(off);
	t->sends++;
	if (t->s.hold)
		t->sends_held++;
	return session_queue(&t->s, iov, iovcnt) == -ENOBUFS ? -EAGAIN : 0;
}

static const struct vpnkit_port_ops ts_ops = { .send = ts_send };

static bool ts_reap(void *opaque, const char *uuid)
{
	struct ts *t = opaque;

	t->reaps++;
	if (!t->other || !t->other_hung_up ||
	    strcmp(vpnkit_port_uuid(t->other), uuid) != 0)
		return false;
	vpnkit_port_free(t->other);
	t->other = NULL;
	return true;
}

/* An instance with rig.h's configuration (IPv6 as asked) and a session. */
static void ts_start(struct ts *t, unsigned mtu, bool ipv6)
{
	struct vpnkit_config cfg;

	memset(t, 0, sizeof(*t));
	rig_config(&cfg);
	cfg.mtu = mtu;
	cfg.ipv6 = ipv6;
	t->d.log = cfg.log;
	t->d.mtu = mtu;
	ASSERT_OK(vpnkit_new(&cfg, &t->d.vk));
	t->s.d = &t->d;
	t->s.id = 7;
	t->s.ops = &ts_ops;
	t->s.opaque = t;
	t->s.reap_uuid = ts_reap;
	ASSERT_OK(session_init(&t->s));
	ASSERT_EQ_INT(t->s.state, SESSION_DETECT);
}

static void ts_stop(struct ts *t)
{
	session_release(&t->s);
	vpnkit_port_free(t->other);
	vpnkit_free(t->d.vk);
	cap_release(&t->other_cap);
}

static struct vpnkit_stats ts_stats(const struct ts *t)
{
	struct vpnkit_stats st;

	vpnkit_stats_get(t->d.vk, &st);
	return st;
}

/* A read of n bytes from the peer; returns session_process's answer. */
static int ts_feed(struct ts *t, const void *p, size_t n)
{
	ASSERT_LE_U64(n, SESSION_IN_SIZE - t->s.in_len);
	memcpy(t->s.in + t->s.in_len, p, n);
	t->s.in_len += n;
	return session_process(&t->s);
}

/* The same bytes as reads of at most step bytes; each must succeed. */
static void ts_feed_split(struct ts *t, const void *p, size_t n, size_t step)
{
	const uint8_t *b = p;

	while (n) {
		size_t k = n < step ? n : step;

		ASSERT_OK(ts_feed(t, b, k));
		b += k;
		n -= k;
	}
}

/* The next n bytes the session wrote for the peer; NULL if fewer. */
static const uint8_t *ts_take(struct ts *t, size_t n)
{
	const uint8_t *p = t->s.out.buf + t->s.out.head;

	if (outbuf_len(&t->s.out) < n)
		return NULL;
	t->s.out.head += n;
	return p;
}

/* The next length-prefixed frame for the peer, taken apart. */
static void ts_take_frame(struct ts *t, enum framing_kind kind,
			  struct fr_view *v)
{
	size_t h = framing_hdr_len(kind), len;
	const uint8_t *p = ts_take(t, h);

	ASSERT_NOT_NULL(p);
	len = kind == FRAMING_LE16 ? load_le16(p) : load_be32(p);
	p = ts_take(t, len);
	ASSERT_NOT_NULL(p);
	ASSERT_NULL(fr_parse(v, p, len, false));
}

/* ---------------------------------------------------------------- peers */

static size_t vmn_init(uint8_t *out, uint32_t version)
{
	vpnkit_vmnet_init_encode(out, version, "0123456789abcdef");
	return VPNKIT_VMNET_INIT_SIZE;
}

static size_t vmn_command(uint8_t *out, uint8_t type, const char *uuid,
			  const char *ip)
{
	struct vpnkit_vmnet_command cmd = { .type = type };

	snprintf(cmd.uuid, sizeof(cmd.uuid), "%s", uuid ? uuid : "");
	if (ip)
		ASSERT_EQ_INT(inet_pton(AF_INET, ip, &cmd.ip), 1);
	ASSERT_OK(vpnkit_vmnet_command_encode(out, &cmd));
	return VPNKIT_VMNET_COMMAND_SIZE;
}

/* An ARP request for the gateway from mac, with its length prefix. */
static size_t arp_request(uint8_t *out, enum framing_kind kind,
			  const uint8_t mac[6])
{
	static const uint8_t everyone[6] = {
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff
	};
	static const uint8_t zero[6] = { 0 };
	static const uint8_t gw[4] = { 192, 168, 65, 1 };
	size_t h = framing_hdr_len(kind);
	size_t len = fr_arp(out + h, everyone, mac, 1, mac, zero, zero, gw);

	framing_hdr_put(kind, out, len);
	return h + len;
}

/* Our init (version 22), then a response: returns it decoded. */
static struct vpnkit_vmnet_response ts_take_handshake(struct ts *t)
{
	struct vpnkit_vmnet_init init;
	struct vpnkit_vmnet_response resp;
	const uint8_t *p = ts_take(t, VPNKIT_VMNET_INIT_SIZE);

	ASSERT_NOT_NULL(p);
	ASSERT_OK(vpnkit_vmnet_init_decode(p, VPNKIT_VMNET_INIT_SIZE, &init));
	p = ts_take(t, VPNKIT_VMNET_RESPONSE_SIZE);
	ASSERT_NOT_NULL(p);
	ASSERT_OK(vpnkit_vmnet_response_decode(p, VPNKIT_VMNET_RESPONSE_SIZE,
					       &resp));
	return resp;
}

/* A VMN3T peer attached: the VIF matches the port, frames go both ways. */
static void check_attached(struct ts *t, const struct vpnkit_vmnet_response *r)
{
	uint8_t mac[6], f[64];
	struct fr_view v;

	ASSERT_EQ_INT(t->s.state, SESSION_FRAMES);
	ASSERT_NOT_NULL(t->s.port);
	ASSERT_EQ_U64(r->type, VPNKIT_VMNET_VIF);
	ASSERT_EQ_U64(r->mtu, 1500);
	ASSERT_EQ_U64(r->max_packet_size, 1550);
	vpnkit_port_mac(t->s.port, mac);
	ASSERT_EQ_MEM(r->mac, mac, 6);
	ASSERT_OK(ts_feed(t, f, arp_request(f, FRAMING_LE16, mac)));
	ts_take_frame(t, FRAMING_LE16, &v);
	ASSERT_EQ_U64(v.type, FR_ETH_ARP);
	ASSERT_EQ_MEM(v.dst_mac, mac, 6);
	ASSERT_EQ_U64(outbuf_len(&t->s.out), 0);
}

/* ---------------------------------------------------------------- VMN3T */

TEST(vmn3t_handshake_and_frames_in_one_read)
{
	struct ts t;
	struct vpnkit_vmnet_response r;
	struct fr_view v;
	uint8_t in[256], mac[6] = { 0x02, 0x42, 0, 0, 0, 9 };
	size_t n = 0;

	ts_start(&t, 1500, false);
	n += vmn_init(in + n, VPNKIT_VMNET_VERSION);
	n += vmn_command(in + n, VPNKIT_VMNET_ETHERNET, UUID_A, NULL);
	n += arp_request(in + n, FRAMING_LE16, mac);
	ASSERT_OK(ts_feed(&t, in, n));
	ASSERT_EQ_U64(t.s.in_len, 0);
	r = ts_take_handshake(&t);
	ASSERT_EQ_U64(r.type, VPNKIT_VMNET_VIF);
	ASSERT_EQ_U64(r.mtu, 1500);
	ASSERT_EQ_U64(r.max_packet_size, 1550);
	ASSERT_EQ_INT(t.s.state, SESSION_FRAMES);
	ASSERT_EQ_STR(vpnkit_port_uuid(t.s.port), UUID_A);
	/* The frame behind the command was delivered, from the MAC the VM
	 * chose, and answered. */
	ts_take_frame(&t, FRAMING_LE16, &v);
	ASSERT_EQ_U64(v.type, FR_ETH_ARP);
	ASSERT_EQ_MEM(v.dst_mac, mac, 6);
	ASSERT_EQ_U64(outbuf_len(&t.s.out), 0);
	ASSERT_EQ_U64(t.d.peers_bad, 0);
	ts_stop(&t);
}

TEST(vmn3t_handshake_byte_by_byte)
{
	struct ts t;
	struct vpnkit_vmnet_response r;
	uint8_t in[VPNKIT_VMNET_INIT_SIZE + VPNKIT_VMNET_COMMAND_SIZE];

	/* IPv6 on: the new port's router advertisement is sent while the
	 * response is being built, and must come after it. */
	ts_start(&t, 1500, true);
	vmn_init(in, VPNKIT_VMNET_VERSION);
	vmn_command(in + VPNKIT_VMNET_INIT_SIZE, VPNKIT_VMNET_ETHERNET, NULL,
		    NULL);
	ASSERT_OK(ts_feed(&t, in, 1));
	ASSERT_EQ_INT(t.s.state, SESSION_VMN_INIT);
	ts_feed_split(&t, in + 1, VPNKIT_VMNET_INIT_SIZE - 2, 1);
	ASSERT_EQ_U64(outbuf_len(&t.s.out), 0);
	ASSERT_EQ_U64(t.s.in_len, VPNKIT_VMNET_INIT_SIZE - 1);
	ts_feed_split(&t, in + VPNKIT_VMNET_INIT_SIZE - 1, 1, 1);
	ASSERT_EQ_INT(t.s.state, SESSION_VMN_CMD);
	ASSERT_EQ_U64(outbuf_len(&t.s.out), VPNKIT_VMNET_INIT_SIZE);
	ASSERT_EQ_U64(t.s.in_len, 0);
	ts_feed_split(&t, in + VPNKIT_VMNET_INIT_SIZE,
		      VPNKIT_VMNET_COMMAND_SIZE, 1);
	ASSERT_FALSE(t.s.hold);
	ASSERT_EQ_U64(t.sends, 1);
	ASSERT_EQ_U64(t.sends_held, 1);
	r = ts_take_handshake(&t);
	{
		struct fr_view v;

		ts_take_frame(&t, FRAMING_LE16, &v);
		ASSERT_EQ_INT(v.af, 6);
		ASSERT_EQ_U64(v.l4[0], 134); /* router advertisement */
	}
	check_attached(&t, &r);
	ts_stop(&t);
}

TEST(vmn3t_other_version_gets_our_init_then_close)
{
	struct ts t;
	struct vpnkit_vmnet_init init;
	uint8_t in[VPNKIT_VMNET_INIT_SIZE + VPNKIT_VMNET_COMMAND_SIZE];
	const uint8_t *p;

	ts_start(&t, 1500, false);
	vmn_init(in, 21);
	vmn_command(in + VPNKIT_VMNET_INIT_SIZE, 1, UUID_A, NULL);
	ASSERT_OK(ts_feed(&t, in, sizeof(in)));
	ASSERT_EQ_INT(t.s.state, SESSION_CLOSING);
	ASSERT_EQ_U64(t.s.in_len, 0); /* the command is ignored */
	p = ts_take(&t, VPNKIT_VMNET_INIT_SIZE);
	ASSERT_NOT_NULL(p);
	ASSERT_OK(vpnkit_vmnet_init_decode(p, VPNKIT_VMNET_INIT_SIZE, &init));
	ASSERT_EQ_U64(init.version, VPNKIT_VMNET_VERSION);
	ASSERT_EQ_U64(outbuf_len(&t.s.out), 0);
	ASSERT_NULL(t.s.port);
	ASSERT_TRUE(strstr(t.peer_log, "version 21") != NULL);
	/* Whatever comes next is ignored. */
	ASSERT_OK(ts_feed(&t, "junk", 4));
	ASSERT_EQ_U64(t.s.in_len, 0);
	ASSERT_EQ_U64(outbuf_len(&t.s.out), 0);
	ts_stop(&t);
}

TEST(vmn3t_bad_init_disconnects)
{
	struct ts t;
	uint8_t in[VPNKIT_VMNET_INIT_SIZE];

	ts_start(&t, 1500, false);
	vmn_init(in, VPNKIT_VMNET_VERSION);
	in[3] = '2'; /* "VMN2T" */
	ASSERT_ERR(ts_feed(&t, in, sizeof(in)), -EPROTO);
	ASSERT_EQ_U64(t.d.peers_bad, 1);
	ASSERT_EQ_U64(outbuf_len(&t.s.out), 0);
	ts_stop(&t);
}

/* A command refused: the init, then a disconnect with this reason. */
static void check_refused(uint8_t type, const char *uuid, const char *ip,
			  const char *reason, uint64_t bad)
{
	struct ts t;
	struct vpnkit_vmnet_response r;
	uint8_t in[VPNKIT_VMNET_INIT_SIZE + VPNKIT_VMNET_COMMAND_SIZE];

	ts_start(&t, 1500, false);
	vmn_init(in, VPNKIT_VMNET_VERSION);
	if (uuid && strlen(uuid) != VPNKIT_VMNET_UUID_LEN) {
		/* Not a UUID: written past the encoder, which refuses it. */
		memset(in + VPNKIT_VMNET_INIT_SIZE, 0,
		       VPNKIT_VMNET_COMMAND_SIZE);
		in[VPNKIT_VMNET_INIT_SIZE] = type;
		snprintf((char *)in + VPNKIT_VMNET_INIT_SIZE + 1,
			 VPNKIT_VMNET_UUID_LEN, "%s", uuid);
	} else {
		vmn_command(in + VPNKIT_VMNET_INIT_SIZE, type, uuid, ip);
	}
	ASSERT_OK(ts_feed(&t, in, sizeof(in)));
	ASSERT_EQ_INT(t.s.state, SESSION_CLOSING);
	ASSERT_FALSE(t.s.hold);
	ASSERT_NULL(t.s.port);
	r = ts_take_handshake(&t);
	ASSERT_EQ_U64(r.type, VPNKIT_VMNET_DISCONNECT);
	ASSERT_EQ_STR(r.reason, reason);
	ASSERT_EQ_U64(outbuf_len(&t.s.out), 0);
	ASSERT_EQ_U64(t.d.peers_bad, bad);
	ASSERT_EQ_U64(ts_stats(&t).ports, 0);
	ts_stop(&t);
}

TEST(vmn3t_refusals)
{
	check_refused(VPNKIT_VMNET_BIND_IPV4, UUID_A, NULL,
		      "Bind_ipv4 is not supported.", 0);
	check_refused(VPNKIT_VMNET_ETHERNET, "not-a-uuid", NULL,
		      "Malformed command.", 1);
	check_refused(9, UUID_A, NULL, "Malformed command.", 1);
	/* Refused after the response was reserved: written in its place. */
	check_refused(VPNKIT_VMNET_PREFERRED_IPV4, UUID_A, "10.1.2.3",
		      "Preferred IP address out of range.", 0);
}

TEST(vmn3t_preferred_ip)
{
	struct ts t;
	struct vpnkit_vmnet_response r;
	uint8_t in[VPNKIT_VMNET_INIT_SIZE + VPNKIT_VMNET_COMMAND_SIZE];
	struct in_addr ip;

	ts_start(&t, 1500, false);
	vmn_init(in, VPNKIT_VMNET_VERSION);
	vmn_command(in + VPNKIT_VMNET_INIT_SIZE, VPNKIT_VMNET_PREFERRED_IPV4,
		    UUID_A, "192.168.65.77");
	ASSERT_OK(ts_feed(&t, in, sizeof(in)));
	r = ts_take_handshake(&t);
	ip = vpnkit_port_ip(t.s.port);
	ASSERT_EQ_STR(inet_ntoa(ip), "192.168.65.77");
	check_attached(&t, &r);
	ts_stop(&t);
}

/* The UUID of a connected VM: refused, unless that VM's peer hung up. */
TEST(vmn3t_uuid_in_use)
{
	struct vpnkit_port_config pc = { .uuid = UUID_A };
	uint8_t in[VPNKIT_VMNET_INIT_SIZE + VPNKIT_VMNET_COMMAND_SIZE];
	struct vpnkit_vmnet_response r;
	struct ts t;

	vmn_init(in, VPNKIT_VMNET_VERSION);
	vmn_command(in + VPNKIT_VMNET_INIT_SIZE, 1, UUID_A, NULL);
	for (int hung_up = 0; hung_up < 2; hung_up++) {
		ts_start(&t, 1500, false);
		t.other_cap.budget = -1;
		ASSERT_OK(vpnkit_port_new(t.d.vk, &pc, &cap_ops, &t.other_cap,
					  &t.other));
		t.other_hung_up = hung_up;
		ASSERT_OK(ts_feed(&t, in, sizeof(in)));
		ASSERT_EQ_U64(t.reaps, 1);
		r = ts_take_handshake(&t);
		if (hung_up) {
			ASSERT_NULL(t.other);
			check_attached(&t, &r);
		} else {
			ASSERT_EQ_U64(r.type, VPNKIT_VMNET_DISCONNECT);
			ASSERT_EQ_STR(
				r.reason,
				"UUID is already in use by a connected VM.");
			ASSERT_EQ_INT(t.s.state, SESSION_CLOSING);
		}
		ts_stop(&t);
	}
}

/* ---------------------------------------------------------------- QEMU */

TEST(qemu_first_byte_zero_attaches)
{
	struct ts t;
	struct fr_view v;
	uint8_t in[256], mac[6] = { 0x02, 0x42, 0, 0, 0, 1 };
	size_t n;

	ts_start(&t, 1500, false);
	n = arp_request(in, FRAMING_BE32, mac);
	n += arp_request(in + n, FRAMING_BE32, mac);
	/* A read of one byte is enough to attach. */
	ASSERT_OK(ts_feed(&t, in, 1));
	ASSERT_EQ_INT(t.s.state, SESSION_FRAMES);
	ASSERT_NOT_NULL(t.s.port);
	ASSERT_EQ_U64(t.s.fr.kind, FRAMING_BE32);
	ASSERT_EQ_U64(t.s.in_len, 1);
	/* The rest in odd pieces: both frames, answered. */
	ts_feed_split(&t, in + 1, n - 1, 7);
	ASSERT_EQ_U64(t.s.in_len, 0);
	for (int i = 0; i < 2; i++) {
		ts_take_frame(&t, FRAMING_BE32, &v);
		ASSERT_EQ_U64(v.type, FR_ETH_ARP);
		ASSERT_EQ_MEM(v.dst_mac, mac, 6);
	}
	ASSERT_EQ_U64(outbuf_len(&t.s.out), 0);
	ts_stop(&t);
}

TEST(unknown_first_byte_disconnects)
{
	struct ts t;

	ts_start(&t, 1500, false);
	ASSERT_ERR(ts_feed(&t, "GET / HTTP/1.0\r\n", 16), -EPROTO);
	ASSERT_EQ_U64(t.d.peers_bad, 1);
	ASSERT_NULL(t.s.port);
	ASSERT_TRUE(strstr(t.peer_log, "unknown framing") != NULL);
	ts_stop(&t);
}

/* ---------------------------------------------------------------- frames */

/* Attached with this framing (QEMU, or a VMN3T handshake). */
static void ts_attach(struct ts *t, enum framing_kind kind)
{
	uint8_t in[VPNKIT_VMNET_INIT_SIZE + VPNKIT_VMNET_COMMAND_SIZE];

	static const uint8_t mac[6] = { 0x02, 0x42, 0, 0, 0, 2 };
	struct fr_view v;

	if (kind == FRAMING_BE32) {
		ASSERT_OK(ts_feed(t, in, arp_request(in, kind, mac)));
		ts_take_frame(t, kind, &v);
	} else {
		vmn_init(in, VPNKIT_VMNET_VERSION);
		vmn_command(in + VPNKIT_VMNET_INIT_SIZE, 1, NULL, NULL);
		ASSERT_OK(ts_feed(t, in, sizeof(in)));
		ts_take_handshake(t);
	}
	ASSERT_EQ_INT(t->s.state, SESSION_FRAMES);
	ASSERT_EQ_U64(t->s.fr.kind, kind);
	/* All read: the buffer is empty, as after a whole write. */
	ASSERT_EQ_U64(outbuf_len(&t->s.out), 0);
	t->s.out.head = t->s.out.tail = 0;
}

/* A frame of len bytes (an unknown EtherType) with its prefix. */
static size_t junk_frame(uint8_t *out, enum framing_kind kind, uint32_t len)
{
	size_t h = framing_hdr_len(kind);

	memset(out + h, 0x5a, len);
	if (kind == FRAMING_LE16)
		store_le16(out, (uint16_t)len);
	else
		store_be32(out, len);
	return h + len;
}

TEST(frame_lengths)
{
	static uint8_t in[2 * 70000];
	enum framing_kind kinds[2] = { FRAMING_LE16, FRAMING_BE32 };

	for (int k = 0; k < 2; k++) {
		uint32_t max = kinds[k] == FRAMING_LE16 ? 626 : 65535;
		uint64_t frames;
		struct ts t;
		size_t n;

		ts_start(&t, 576, false);
		ts_attach(&t, kinds[k]);
		frames = ts_stats(&t).frames_in;
		/* 14 bytes and the MTU's 590 are frames; up to the link's
		 * limit, a frame is dropped and the stream stays in step. */
		n = junk_frame(in, kinds[k], 14);
		n += junk_frame(in + n, kinds[k], 590);
		n += junk_frame(in + n, kinds[k], 591);
		n += junk_frame(in + n, kinds[k], max);
		ASSERT_OK(ts_feed(&t, in, n));
		ASSERT_EQ_U64(ts_stats(&t).frames_in, frames + 2);
		ASSERT_EQ_U64(t.s.fr.dropped, 2);
		/* A partial frame stays for the next read. */
		n = junk_frame(in, kinds[k], 100);
		ASSERT_OK(ts_feed(&t, in, n - 1));
		ASSERT_EQ_U64(t.s.in_len, n - 1);
		ASSERT_OK(ts_feed(&t, in + n - 1, 1));
		ASSERT_EQ_U64(t.s.in_len, 0);
		ASSERT_EQ_U64(ts_stats(&t).frames_in, frames + 3);
		/* Past the limit, or shorter than a header: garbage. */
		junk_frame(in, kinds[k], max + 1);
		ASSERT_ERR(ts_feed(&t, in, framing_hdr_len(kinds[k])), -EPROTO);
		ASSERT_EQ_U64(t.d.peers_bad, 1);
		session_release(&t.s);
		ASSERT_EQ_U64(t.d.frames_dropped, 2);
		ASSERT_OK(session_init(&t.s));
		ts_attach(&t, kinds[k]);
		junk_frame(in, kinds[k], 13);
		ASSERT_ERR(ts_feed(&t, in, framing_hdr_len(kinds[k])), -EPROTO);
		ASSERT_EQ_U64(t.d.peers_bad, 2);
		ts_stop(&t);
	}
}

TEST(queue_limits)
{
	struct ts t;
	static uint8_t frame[1551];
	struct iovec iov = { .iov_base = frame };
	unsigned queued = 0;

	memset(frame, 0x5a, sizeof(frame));
	ts_start(&t, 1500, false);
	ts_attach(&t, FRAMING_LE16);
	iov.iov_len = 13;
	ASSERT_ERR(session_queue(&t.s, &iov, 1), -EMSGSIZE);
	iov.iov_len = 1551;
	ASSERT_ERR(session_queue(&t.s, &iov, 1), -EMSGSIZE);
	ASSERT_EQ_U64(t.d.frames_dropped, 2);
	iov.iov_len = 1550;
	while (session_queue(&t.s, &iov, 1) == 0)
		queued++;
	ASSERT_EQ_U64(queued, SESSION_OUT_SIZE / 1552);
	ASSERT_ERR(session_queue(&t.s, &iov, 1), -ENOBUFS);
	ASSERT_EQ_U64(load_le16(t.s.out.buf), 1550);
	ts_stop(&t);
}

static const struct test_case tests[] = {
	TEST_CASE(vmn3t_handshake_and_frames_in_one_read),
	TEST_CASE(vmn3t_handshake_byte_by_byte),
	TEST_CASE(vmn3t_other_version_gets_our_init_then_close),
	TEST_CASE(vmn3t_bad_init_disconnects),
	TEST_CASE(vmn3t_refusals),
	TEST_CASE(vmn3t_preferred_ip),
	TEST_CASE(vmn3t_uuid_in_use),
	TEST_CASE(qemu_first_byte_zero_attaches),
	TEST_CASE(unknown_first_byte_disconnects),
	TEST_CASE(frame_lengths),
	TEST_CASE(queue_limits),
};

TEST_MAIN(tests);
