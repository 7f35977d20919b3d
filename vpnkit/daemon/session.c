// SPDX-License-Identifier: MIT
/*
 * The protocol of one stream connection, as bytes: what a VM on the
 * stream listener says, and what it is told back. There is no socket
 * here (stream.c reads and writes), so the fuzz target drives the very
 * same code with an in-memory instance.
 *
 * Theory of operation. A session starts in DETECT and its first byte
 * decides its framing: 'V' is the start of hyperkit's "VMN3T" init, a
 * zero byte the high byte of a QEMU (passt) big-endian length, which is
 * never above 65535. Anything else is garbage and the peer is dropped.
 *
 * hyperkit's handshake (vpnkit/vmnet.h) runs through VMN_INIT (read the
 * client's 49 bytes, answer with ours) and VMN_CMD (read the 41-byte
 * command, attach the port, answer with the 258-byte VIF or disconnect).
 * The port is created before the VIF can be written (the VIF carries the
 * port's MAC), and creating a port may already send frames to it (a
 * router advertisement): so the 258 bytes are reserved in the output
 * buffer first, with hold set so that the transport writes nothing, and
 * filled in afterwards. A refused command gets its disconnect reply and
 * the session enters CLOSING: input is ignored, and the transport closes
 * the connection once the reply is written.
 *
 * In FRAMES, framing_parse delivers the whole frames where they lie in
 * the input buffer and the partial one is moved to the front for the
 * next read.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "vpnkit/vmnet.h"

_Static_assert(SESSION_IN_SIZE > 4 + FRAME_MAX, "a whole frame fits");
_Static_assert(SESSION_OUT_SIZE > VPNKIT_VMNET_INIT_SIZE +
					  VPNKIT_VMNET_RESPONSE_SIZE + 4 +
					  FRAME_MAX,
	       "the handshake replies and a whole frame fit");

int session_init(struct session *s)
{
	s->state = SESSION_DETECT;
	s->hold = false;
	s->port = NULL;
	s->in_len = 0;
	s->in = malloc(SESSION_IN_SIZE);
	if (!s->in)
		return -ENOMEM;
	if (outbuf_init(&s->out, SESSION_OUT_SIZE) < 0) {
		free(s->in);
		s->in = NULL;
		return -ENOMEM;
	}
	return 0;
}

void session_release(struct session *s)
{
	if (s->port) {
		logger_printf(&s->d->log, LOG_LEVEL_DEBUG,
			      "stream %u: VM %s detached", s->id,
			      vpnkit_port_uuid(s->port));
		vpnkit_port_free(s->port);
		s->port = NULL;
	}
	s->d->frames_dropped += s->fr.dropped;
	s->fr.dropped = 0;
	outbuf_release(&s->out);
	free(s->in);
	s->in = NULL;
	s->in_len = 0;
}

int session_queue(struct session *s, const struct iovec *iov, int iovcnt)
{
	uint8_t hdr[4];
	size_t len = 0, hlen;

	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	if (len < FRAME_MIN || len > s->fr.max_len) {
		s->d->frames_dropped++;
		return -EMSGSIZE;
	}
	hlen = framing_hdr_put(s->fr.kind, hdr, len);
	return outbuf_append(&s->out, hdr, hlen, iov, iovcnt) ? 0 : -ENOBUFS;
}

/* The peer broke the protocol: count and log; the caller disconnects. */
static int session_bad(struct session *s, const char *why)
{
	s->d->peers_bad++;
	daemon_peer_log(s->d, LOG_LEVEL_WARN, "stream %u: %s: disconnected",
			s->id, why);
	return -EPROTO;
}

static void session_set_framing(struct session *s, enum framing_kind kind)
{
	unsigned mtu_frame = s->d->mtu + FRAME_MIN;

	s->fr.kind = kind;
	s->fr.max_len = kind == FRAMING_LE16 ?
				vpnkit_vmnet_max_packet_size(s->d->mtu) :
				FRAME_MAX;
	s->fr.max_frame = mtu_frame < s->fr.max_len ? mtu_frame : s->fr.max_len;
}

/* ---------------------------------------------------------------- handshake */

static int session_vmn_init(struct session *s, const uint8_t *msg)
{
	struct vpnkit_vmnet_init init;
	uint8_t reply[VPNKIT_VMNET_INIT_SIZE];
	int r;

	r = vpnkit_vmnet_init_decode(msg, VPNKIT_VMNET_INIT_SIZE, &init);
	if (r < 0 && r != -EPROTONOSUPPORT)
		return session_bad(s, "bad VMN3T init message");
	vpnkit_vmnet_init_encode(reply, VPNKIT_VMNET_VERSION, NULL);
	outbuf_append(&s->out, reply, sizeof(reply), NULL, 0);
	if (r == -EPROTONOSUPPORT) {
		daemon_peer_log(s->d, LOG_LEVEL_WARN,
				"stream %u: VMN3T version %u, not %u: closing",
				s->id, init.version, VPNKIT_VMNET_VERSION);
		s->state = SESSION_CLOSING;
		return 0;
	}
	logger_printf(&s->d->log, LOG_LEVEL_DEBUG,
		      "stream %u: hyperkit protocol, peer commit %s", s->id,
		      init.commit);
	s->state = SESSION_VMN_CMD;
	return 0;
}

static const char *attach_error(int err)
{
	switch (err) {
	case -ERANGE:
		return "Preferred IP address out of range.";
	case -EADDRINUSE:
		return "Preferred IP address is taken, or the UUID is assigned to a different IP.";
	case -EBUSY:
		return "UUID is already in use by a connected VM.";
	case -ENOSPC:
		return "No free IP address left.";
	case -EINVAL:
		return "Invalid UUID or address.";
	default:
		return strerror(-err);
	}
}

/* Answer the command with a disconnect, then close. */
static int session_refuse(struct session *s, const char *reason)
{
	uint8_t reply[VPNKIT_VMNET_RESPONSE_SIZE];

	vpnkit_vmnet_disconnect_encode(reply, reason);
	outbuf_append(&s->out, reply, sizeof(reply), NULL, 0);
	s->state = SESSION_CLOSING;
	return 0;
}

/* Make the port; a UUID held by a peer that has hung up is freed first. */
static int session_attach(struct session *s, const char *uuid,
			  struct in_addr preferred_ip)
{
	struct vpnkit_port_config pc = { .uuid = uuid,
					 .preferred_ip = preferred_ip };
	int r;

	r = vpnkit_port_new(s->d->vk, &pc, s->ops, s->opaque, &s->port);
	if (r == -EBUSY && s->reap_uuid && uuid && uuid[0] &&
	    s->reap_uuid(s->opaque, uuid))
		r = vpnkit_port_new(s->d->vk, &pc, s->ops, s->opaque, &s->port);
	if (r < 0)
		s->port = NULL;
	return r;
}

static int session_vmn_command(struct session *s, const uint8_t *msg)
{
	static const uint8_t reserved[VPNKIT_VMNET_RESPONSE_SIZE];
	struct vpnkit_vmnet_command cmd;
	uint8_t mac[6];
	uint8_t *resp;
	size_t rel;
	int r;

	r = vpnkit_vmnet_command_decode(msg, VPNKIT_VMNET_COMMAND_SIZE, &cmd);
	if (r < 0) {
		s->d->peers_bad++;
		daemon_peer_log(s->d, LOG_LEVEL_WARN,
				"stream %u: bad VMN3T command (%s)", s->id,
				strerror(-r));
		return session_refuse(s, "Malformed command.");
	}
	if (cmd.type == VPNKIT_VMNET_BIND_IPV4) {
		logger_printf(&s->d->log, LOG_LEVEL_DEBUG,
			      "stream %u: legacy bind command refused", s->id);
		return session_refuse(s, "Bind_ipv4 is not supported.");
	}
	/* Reserve the response: port creation may queue frames behind it. */
	rel = outbuf_len(&s->out);
	outbuf_append(&s->out, reserved, sizeof(reserved), NULL, 0);
	session_set_framing(s, FRAMING_LE16);
	s->hold = true;
	r = session_attach(s, cmd.uuid, cmd.ip);
	s->hold = false;
	resp = s->out.buf + s->out.head + rel;
	if (r < 0) {
		vpnkit_vmnet_disconnect_encode(resp, attach_error(r));
		daemon_peer_log(s->d, LOG_LEVEL_WARN,
				"stream %u: VM %s refused: %s", s->id,
				cmd.uuid[0] ? cmd.uuid : "(no uuid)",
				attach_error(r));
		s->state = SESSION_CLOSING;
		return 0;
	}
	vpnkit_port_mac(s->port, mac);
	vpnkit_vmnet_vif_encode(resp, s->d->mtu, (uint16_t)s->fr.max_len, mac);
	logger_printf(&s->d->log, LOG_LEVEL_INFO,
		      "stream %u: VM %s attached (hyperkit protocol)", s->id,
		      vpnkit_port_uuid(s->port));
	s->state = SESSION_FRAMES;
	return 0;
}

/* A QEMU stream peer: no handshake, a port right away. */
static int session_attach_qemu(struct session *s)
{
	int r;

	session_set_framing(s, FRAMING_BE32);
	s->state = SESSION_FRAMES;
	r = session_attach(s, NULL, (struct in_addr){ 0 });
	if (r < 0) {
		daemon_peer_log(s->d, LOG_LEVEL_WARN,
				"stream %u: cannot attach a VM: %s", s->id,
				attach_error(r));
		return r;
	}
	logger_printf(&s->d->log, LOG_LEVEL_INFO,
		      "stream %u: VM %s attached (QEMU stream framing)", s->id,
		      vpnkit_port_uuid(s->port));
	return 0;
}

/* ---------------------------------------------------------------- input */

static int session_deliver(void *opaque, const uint8_t *frame, size_t len)
{
	struct session *s = opaque;
	int r = vpnkit_port_input(s->port, NULL, frame, len);

	return r < 0 ? r : 0;
}

/*
 * One step of the state machine on in[pos..in_len): the bytes it used,
 * 0 if it needs more, or -errno.
 */
static ssize_t session_step(struct session *s, const uint8_t *p, size_t avail)
{
	ssize_t n;
	int r;

	switch (s->state) {
	case SESSION_DETECT:
		if (avail == 0)
			return 0;
		if (p[0] == 'V') {
			s->state = SESSION_VMN_INIT;
			return 0;
		}
		if (p[0] == 0)
			return session_attach_qemu(s);
		return session_bad(s, "unknown framing");
	case SESSION_VMN_INIT:
		if (avail < VPNKIT_VMNET_INIT_SIZE)
			return 0;
		r = session_vmn_init(s, p);
		return r < 0 ? r : VPNKIT_VMNET_INIT_SIZE;
	case SESSION_VMN_CMD:
		if (avail < VPNKIT_VMNET_COMMAND_SIZE)
			return 0;
		r = session_vmn_command(s, p);
		return r < 0 ? r : VPNKIT_VMNET_COMMAND_SIZE;
	case SESSION_FRAMES:
		n = framing_parse(&s->fr, p, avail, session_deliver, s);
		if (n == -EPROTO)
			return session_bad(s,
					   s->fr.kind == FRAMING_LE16 ?
						   "bad frame length (u16 LE)" :
						   "bad frame length (u32 BE)");
		return n;
	case SESSION_CLOSING:
		return (ssize_t)avail;
	}
	return -EINVAL;
}

int session_process(struct session *s)
{
	size_t pos = 0;

	for (;;) {
		enum session_state before = s->state;
		ssize_t n = session_step(s, s->in + pos, s->in_len - pos);

		if (n < 0)
			return (int)n;
		pos += (size_t)n;
		/* Go on while the state machine moves; frames are parsed
		 * until only a partial one is left. */
		if (s->state == before &&
		    (n == 0 || s->state == SESSION_FRAMES ||
		     s->state == SESSION_CLOSING))
			break;
	}
	if (pos > 0) {
		memmove(s->in, s->in + pos, s->in_len - pos);
		s->in_len -= pos;
	}
	return 0;
}
