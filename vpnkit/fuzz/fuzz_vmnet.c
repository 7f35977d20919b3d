// SPDX-License-Identifier: MIT
/*
 * fuzz_vmnet: libFuzzer target for what a peer of the daemon's stream
 * listener may send: hyperkit's VMN3T handshake then u16 LE frames, or
 * QEMU's u32 BE frames, or anything else, split into reads anywhere.
 *
 * The input is one selector byte and then the byte stream. The stream
 * goes two ways:
 *
 *   - straight to the VMN3T decoders (vpnkit/vmnet.h): its first 49
 *     bytes as an init message, the 41 after them as a command, its first
 *     258 as a response, and the whole of it with its own length (which
 *     must be refused unless it is the message's). What decodes must
 *     encode back to the same meaning;
 *   - through a daemon session (vpnkit/daemon/session.c, the code the
 *     stream transport runs, built in here) on an in-memory instance, as
 *     the reads of a connection: first-byte detection, the handshake,
 *     port creation, frame reassembly, and the frames into the instance.
 *
 * The selector picks the MTU (bits 0-1: 1500, 576, 65520, 9000), IPv6
 * (bit 2), whether the connection holding the UUID that some seeds use
 * has hung up (bit 3: the session may take the UUID over), and how the
 * stream is cut into reads (bits 4-7: 0 is one read of everything, any
 * other value seeds a generator of read sizes from 1 byte up).
 *
 * What traps: a crash, a sanitizer report, a leak, a hang; a decoded
 * message that does not survive an encode and decode; a session that
 * leaves a whole message unconsumed, or says -EPROTO without counting
 * the peer as bad; and any output a client would refuse: the bytes the
 * session writes are read back as hyperkit or QEMU would read them (our
 * init must decode as version 22, the response as a VIF with the
 * configured MTU and max_packet_size and a unicast MAC, or a disconnect
 * after which nothing follows), and every frame must be one a VM's stack
 * takes (tests/frames.h) no longer than the MTU allows.
 *
 * Safety: frames become flows and flows host sockets. In
 * LLVMFuzzerInitialize the process moves into a network namespace of its
 * own whose loopback stays down, so no socket reaches anything. Where no
 * namespace can be made, the session is fed only up to the point where
 * it starts taking frames.
 *
 * The seeds (corpus/vmnet/): handshakes with commands 1 (a UUID, and the
 * all-NUL one) and 8 (a preferred address in and out of range), each
 * followed by u16 LE frames (ARP for the gateway, a DHCP discover); the
 * legacy bind command; version 21; a malformed UUID; u32 BE frames;
 * lengths out of range both ways; a frame larger than the MTU; garbage.
 */
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <base/endian.h>
#include <base/fuzz.h>
#include <vpnkit/vmnet.h>
#include <vpnkit/vpnkit.h>

#include "../daemon/framing.c" /* NOLINT(bugprone-suspicious-include) */
#include "../daemon/session.c" /* NOLINT(bugprone-suspicious-include) */
#include "../tests/frames.h"

#define HELD_UUID "0b1c2d3e-4f50-4162-8374-8596a7b8c9da"

static bool sandboxed;

enum peer_step {
	PEER_INIT, /* hyperkit waits for our init */
	PEER_RESPONSE, /* then for the VIF or a disconnect */
	PEER_FRAMES,
	PEER_DONE, /* refused: nothing more may come */
};

struct fz {
	struct daemon d;
	struct session s;
	struct vpnkit_port *held; /* the UUID's other connection */
	bool held_hung_up;
	bool want_resume;
	/* the peer's side of the output */
	bool peer_vmn;
	enum peer_step step;
	struct framing peer_fr;
};

/* The stream transport's log lines, formatted and thrown away. */
void daemon_peer_log(struct daemon *d, enum log_level level, const char *fmt,
		     ...)
{
	char msg[512];
	va_list ap;

	(void)d;
	(void)level;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
}

/* Log lines of the session and the instance: formatted, then dropped. */
static void fz_log(void *opaque, enum log_level level, const char *msg)
{
	(void)opaque;
	(void)level;
	(void)msg;
}

/* ---------------------------------------------------------------- decoders */

static bool same_command(const struct vpnkit_vmnet_command *a,
			 const struct vpnkit_vmnet_command *b)
{
	return a->type == b->type && strcmp(a->uuid, b->uuid) == 0 &&
	       a->ip.s_addr == b->ip.s_addr;
}

static bool same_response(const struct vpnkit_vmnet_response *a,
			  const struct vpnkit_vmnet_response *b)
{
	return a->type == b->type && a->mtu == b->mtu &&
	       a->max_packet_size == b->max_packet_size &&
	       memcmp(a->mac, b->mac, 6) == 0 &&
	       strcmp(a->reason, b->reason) == 0;
}

static void decode_direct(const uint8_t *p, size_t n)
{
	struct vpnkit_vmnet_init init, init2;
	struct vpnkit_vmnet_command cmd, cmd2;
	struct vpnkit_vmnet_response resp, resp2;
	uint8_t out[VPNKIT_VMNET_RESPONSE_SIZE];
	int r;

	if (n >= VPNKIT_VMNET_INIT_SIZE) {
		r = vpnkit_vmnet_init_decode(p, VPNKIT_VMNET_INIT_SIZE, &init);
		if (r == 0 || r == -EPROTONOSUPPORT) {
			vpnkit_vmnet_init_encode(out, init.version,
						 init.commit);
			if (vpnkit_vmnet_init_decode(
				    out, VPNKIT_VMNET_INIT_SIZE, &init2) != r ||
			    init2.version != init.version ||
			    strcmp(init2.commit, init.commit) != 0)
				__builtin_trap();
		}
	}
	if (n >= VPNKIT_VMNET_INIT_SIZE + VPNKIT_VMNET_COMMAND_SIZE) {
		const uint8_t *c = p + VPNKIT_VMNET_INIT_SIZE;

		if (vpnkit_vmnet_command_decode(c, VPNKIT_VMNET_COMMAND_SIZE,
						&cmd) == 0) {
			if (vpnkit_vmnet_command_encode(out, &cmd) != 0 ||
			    vpnkit_vmnet_command_decode(
				    out, VPNKIT_VMNET_COMMAND_SIZE, &cmd2) !=
				    0 ||
			    !same_command(&cmd, &cmd2))
				__builtin_trap();
		}
	}
	if (n >= VPNKIT_VMNET_RESPONSE_SIZE &&
	    vpnkit_vmnet_response_decode(p, VPNKIT_VMNET_RESPONSE_SIZE,
					 &resp) == 0) {
		if (resp.type == VPNKIT_VMNET_VIF)
			vpnkit_vmnet_vif_encode(out, resp.mtu,
						resp.max_packet_size, resp.mac);
		else
			vpnkit_vmnet_disconnect_encode(out, resp.reason);
		if (vpnkit_vmnet_response_decode(out, sizeof(out), &resp2) !=
			    0 ||
		    !same_response(&resp, &resp2))
			__builtin_trap();
	}
	/* The whole input as one message: only the exact size may pass. */
	if ((vpnkit_vmnet_init_decode(p, n, &init) != -EMSGSIZE) !=
		    (n == VPNKIT_VMNET_INIT_SIZE) ||
	    (vpnkit_vmnet_command_decode(p, n, &cmd) != -EMSGSIZE) !=
		    (n == VPNKIT_VMNET_COMMAND_SIZE) ||
	    (vpnkit_vmnet_response_decode(p, n, &resp) != -EMSGSIZE) !=
		    (n == VPNKIT_VMNET_RESPONSE_SIZE))
		__builtin_trap();
}

/* ---------------------------------------------------------------- the peer */

static int peer_frame(void *opaque, const uint8_t *frame, size_t len)
{
	const struct fz *z = opaque;
	struct fr_view v;

	if (len > FR_ETH_HLEN + (size_t)z->d.mtu ||
	    fr_parse(&v, frame, len, false))
		__builtin_trap();
	return 0;
}

/* Read what the session wrote, as the client would, and forget it. */
static void peer_read(struct fz *z)
{
	const uint8_t *p = z->s.out.buf + z->s.out.head;
	size_t n = outbuf_len(&z->s.out);
	struct vpnkit_vmnet_init init;
	struct vpnkit_vmnet_response resp;
	ssize_t used;

	if (z->s.hold || n == 0)
		return;
	if (z->step == PEER_INIT) {
		if (!z->peer_vmn || n < VPNKIT_VMNET_INIT_SIZE ||
		    vpnkit_vmnet_init_decode(p, VPNKIT_VMNET_INIT_SIZE,
					     &init) != 0)
			__builtin_trap();
		p += VPNKIT_VMNET_INIT_SIZE;
		n -= VPNKIT_VMNET_INIT_SIZE;
		z->step = z->s.state == SESSION_CLOSING && n == 0 ?
				  PEER_DONE :
				  PEER_RESPONSE;
	}
	if (z->step == PEER_RESPONSE && n > 0) {
		if (n < VPNKIT_VMNET_RESPONSE_SIZE ||
		    vpnkit_vmnet_response_decode(p, VPNKIT_VMNET_RESPONSE_SIZE,
						 &resp) != 0)
			__builtin_trap();
		p += VPNKIT_VMNET_RESPONSE_SIZE;
		n -= VPNKIT_VMNET_RESPONSE_SIZE;
		if (resp.type == VPNKIT_VMNET_VIF) {
			uint16_t max = vpnkit_vmnet_max_packet_size(z->d.mtu);

			if (resp.mtu != (z->d.mtu > 65535 ? 65535 : z->d.mtu) ||
			    resp.max_packet_size != max || (resp.mac[0] & 1) ||
			    !(resp.mac[0] & 2))
				__builtin_trap();
			z->peer_fr.kind = FRAMING_LE16;
			z->peer_fr.max_len = z->peer_fr.max_frame = max;
			z->step = PEER_FRAMES;
		} else {
			if (!resp.reason[0] || z->s.state != SESSION_CLOSING)
				__builtin_trap();
			z->step = PEER_DONE;
		}
	}
	if (n > 0 && z->step != PEER_FRAMES)
		__builtin_trap(); /* bytes after a refusal, or too early */
	used = framing_parse(&z->peer_fr, p, n, peer_frame, z);
	if (used != (ssize_t)n)
		__builtin_trap(); /* a bad length, or a partial frame */
	z->s.out.head = z->s.out.tail = 0;
}

/* ---------------------------------------------------------------- port ops */

static int fz_send(void *opaque, const struct vpnkit_offload *off,
		   const struct iovec *iov, int iovcnt)
{
	struct fz *z = opaque;
	int r;

	(void)off;
	if (z->s.state == SESSION_CLOSING)
		return -EPIPE;
	r = session_queue(&z->s, iov, iovcnt);
	if (r == -EMSGSIZE)
		__builtin_trap(); /* the library sent more than the MTU */
	if (r != -ENOBUFS)
		return 0;
	peer_read(z);
	if (z->s.hold || session_queue(&z->s, iov, iovcnt) != 0) {
		z->want_resume = true;
		return -EAGAIN;
	}
	return 0;
}

static void fz_flush(void *opaque)
{
	peer_read(opaque);
}

static const struct vpnkit_port_ops fz_ops = {
	.send = fz_send,
	.flush = fz_flush,
};

static int held_send(void *opaque, const struct vpnkit_offload *off,
		     const struct iovec *iov, int iovcnt)
{
	(void)opaque;
	(void)off;
	(void)iov;
	(void)iovcnt;
	return 0;
}

static const struct vpnkit_port_ops held_ops = { .send = held_send };

/* The stream transport frees a port whose peer hung up; so do we. */
static bool fz_reap_uuid(void *opaque, const char *uuid)
{
	struct fz *z = opaque;

	if (!z->held || !z->held_hung_up ||
	    strcmp(vpnkit_port_uuid(z->held), uuid) != 0)
		return false;
	vpnkit_port_free(z->held);
	z->held = NULL;
	return true;
}

/* ---------------------------------------------------------------- setup */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* A namespace of our own with loopback down: nothing to reach. */
	sandboxed = unshare(CLONE_NEWNET) == 0;
	return 0;
}

static bool fz_setup(struct fz *z, uint8_t sel)
{
	static const unsigned mtus[] = { 1500, 576, 65520, 9000 };
	struct vpnkit_config cfg;
	struct vpnkit_port_config pc = { .uuid = HELD_UUID };

	memset(z, 0, sizeof(*z));
	vpnkit_config_init(&cfg);
	cfg.mtu = mtus[sel & 3];
	cfg.ipv6 = sel & 4;
	cfg.dns_mode = VPNKIT_DNS_OFF;
	cfg.max_flows = 16;
	cfg.max_fds = 16;
	z->held_hung_up = sel & 8;
	cfg.log.fn = fz_log;
	cfg.log.level = LOG_LEVEL_DEBUG;
	z->d.mtu = cfg.mtu;
	z->d.log = cfg.log;
	if (vpnkit_new(&cfg, &z->d.vk) < 0)
		return false;
	if (vpnkit_port_new(z->d.vk, &pc, &held_ops, NULL, &z->held) < 0)
		z->held = NULL;
	z->s.d = &z->d;
	z->s.ops = &fz_ops;
	z->s.opaque = z;
	z->s.reap_uuid = fz_reap_uuid;
	if (session_init(&z->s) < 0) {
		vpnkit_free(z->d.vk);
		return false;
	}
	return true;
}

static void fz_release(struct fz *z)
{
	session_release(&z->s);
	vpnkit_port_free(z->held);
	vpnkit_free(z->d.vk);
}

/* The size of the next read: everything, or 1.. bytes from a generator. */
static size_t next_read(uint32_t *state, size_t left)
{
	size_t n;

	if (*state == 0)
		return left;
	*state ^= *state << 13;
	*state ^= *state >> 17;
	*state ^= *state << 5;
	/* Mostly short reads, now and then a long one. */
	n = (*state & 7) == 0 ? (*state >> 3) % 70000 : (*state >> 3) % 64;
	n += 1;
	return n < left ? n : left;
}

/* After a step, a whole message must not be left unconsumed. */
static void check_leftover(const struct fz *z)
{
	size_t left = z->s.in_len, whole;

	switch (z->s.state) {
	case SESSION_DETECT:
	case SESSION_CLOSING:
		whole = 1;
		break;
	case SESSION_VMN_INIT:
		whole = VPNKIT_VMNET_INIT_SIZE;
		break;
	case SESSION_VMN_CMD:
		whole = VPNKIT_VMNET_COMMAND_SIZE;
		break;
	default:
		whole = framing_hdr_len(z->s.fr.kind);
		if (left >= whole)
			whole += z->s.fr.kind == FRAMING_LE16 ?
					 load_le16(z->s.in) :
					 load_be32(z->s.in);
		break;
	}
	if (left >= whole)
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz z;
	uint32_t reads;
	uint64_t bad;
	int r = 0;

	if (size < 1)
		return 0;
	decode_direct(data + 1, size - 1);
	if (!fz_setup(&z, data[0]))
		return 0;
	reads = data[0] >> 4;
	z.peer_vmn = size > 1 && data[1] == 'V';
	z.step = z.peer_vmn ? PEER_INIT : PEER_FRAMES;
	z.peer_fr.kind = FRAMING_BE32;
	z.peer_fr.max_len = z.peer_fr.max_frame = FRAME_MAX;
	data++;
	size--;
	while (size > 0) {
		size_t n = next_read(&reads, size);

		/* Without a sandbox, frames stop here (one byte at a time
		 * until the session takes frames). */
		if (!sandboxed) {
			if (z.s.state == SESSION_FRAMES)
				break;
			n = 1;
		}
		if (n > SESSION_IN_SIZE - z.s.in_len)
			n = SESSION_IN_SIZE - z.s.in_len;
		memcpy(z.s.in + z.s.in_len, data, n);
		z.s.in_len += n;
		data += n;
		size -= n;
		bad = z.d.peers_bad;
		r = session_process(&z.s);
		if (r == -EPROTO && z.d.peers_bad != bad + 1)
			__builtin_trap();
		if (r < 0)
			break;
		check_leftover(&z);
		peer_read(&z);
		if (z.want_resume) {
			z.want_resume = false;
			vpnkit_port_resume(z.s.port);
			peer_read(&z);
		}
		if (z.s.state == SESSION_CLOSING && z.step == PEER_DONE)
			break;
		(void)vpnkit_run_once(z.d.vk, 0);
	}
	if (r == 0)
		peer_read(&z);
	fz_release(&z);
	return 0;
}
