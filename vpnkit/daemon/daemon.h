/* SPDX-License-Identifier: MIT */
/*
 * The vpnkit daemon's insides: one libvpnkit instance and the transports
 * that attach VMs to it as ports.
 *
 *   main.c     options, signals, the loop, the pid file
 *   listen.c   Unix listeners and the connections they accept: the
 *              accept loop, the connection limit, the bookkeeping
 *   stream.c   a Unix stream listener: a session per connection, its
 *              socket I/O, the handshake deadlines
 *   session.c  the bytes of one stream connection, without the socket:
 *              the framing recognised from the first byte (hyperkit's
 *              VMN3T handshake then u16 LE frames, or QEMU's u32 BE
 *              frames), the handshake, the port, frame reassembly; the
 *              unit tests and the vmnet fuzz target build it in
 *   msg.c      one frame per message: SOCK_DGRAM (vfkit: each sender
 *              address is a port) and SOCK_SEQPACKET (UML/BESS)
 *   tapdev.c   a TAP device with virtio-net headers (offloads)
 *   control.c  the JSON-lines control socket (forwards, stats)
 *   framing.c  length-prefixed frame reassembly and the output buffer,
 *              pure code that the unit tests include
 *   json.c     a strict reader of flat JSON objects, and string output
 *
 * Everything runs on the one thread that runs the instance's loop; each
 * transport puts its descriptors in that loop with vpnkit_watch (level
 * triggered) and frees its ports from its own watch callbacks, never from
 * inside a port's send or flush.
 *
 * Peers are untrusted: a peer that breaks its framing, or that takes too
 * long over a handshake, is disconnected, counted in peers_bad and logged
 * through a rate limiter; frames of a size the link may not carry are
 * dropped and counted in frames_dropped.
 */
#ifndef VPNKIT_DAEMON_H
#define VPNKIT_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "base/log.h"
#include "vpnkit/vpnkit.h"

#define DAEMON_NAME "vpnkit"

/* Ethernet header; a frame shorter than this is garbage. */
#define FRAME_MIN 14
/* The longest frame a length-prefixed or message link may carry. */
#define FRAME_MAX 65535u

struct stream_listener;
struct msg_dgram;
struct msg_listener;
struct tap_link;
struct control;

struct daemon {
	struct vpnkit *vk;
	struct logger log;
	struct ratelimit peer_rl; /* messages peers can cause */
	unsigned mtu;
	unsigned max_conns; /* stream + seqpacket connections at once */
	unsigned n_conns;
	unsigned handshake_timeout_s; /* a stream peer's time to attach */
	int signal_fd; /* SIGINT and SIGTERM */
	bool stop;
	/* counters of the transports, on top of struct vpnkit_stats */
	uint64_t peers_bad; /* disconnected: framing broken, too slow */
	uint64_t frames_dropped; /* dropped by a transport: size, link down */
	/* transports */
	struct stream_listener *streams;
	struct msg_dgram *dgrams;
	struct msg_listener *seqpackets;
	struct tap_link *taps;
	struct control *controls;
};

/* Log a message a peer caused, rate-limited. */
void daemon_peer_log(struct daemon *d, enum log_level level, const char *fmt,
		     ...) __attribute__((format(printf, 3, 4)));

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t daemon_now_ns(void);

/* ---------------------------------------------------------------- listeners */

/*
 * A listening Unix socket of the given type at path: a stale socket file
 * (nobody listening) is replaced; a live one is -EADDRINUSE. Returns a
 * non-blocking descriptor or -errno.
 */
int daemon_unix_listen(const char *path, int type);

struct daemon_listener;

/*
 * A descriptor of a transport in the loop, embedded in the transport's
 * own struct: for an accepted connection also its listener, its number
 * for log lines and its place in the listener's list.
 */
struct daemon_conn {
	struct daemon *d;
	struct daemon_listener *l; /* NULL: not accepted (a TAP device) */
	int fd;
	unsigned id;
	uint32_t events; /* EPOLLIN, and EPOLLOUT while output waits */
	struct daemon_conn *next, *prev;
};

/*
 * A listening socket in the loop, embedded in a transport's listener.
 * Each wakeup accepts up to 16 connections (non-blocking, close-on-exec);
 * one over the limit (*count >= max) is closed at once unless make_room
 * (may be NULL) closes another connection for it; any other is handed to
 * accept, which owns the descriptor from then on and adds it with
 * daemon_conn_add. destroy frees one connection of the list (it calls
 * daemon_conn_remove).
 */
struct daemon_listener {
	struct daemon *d;
	int fd;
	char *path;
	const char *what; /* "stream", "seqpacket", "control" */
	unsigned *count; /* connections counted against max */
	unsigned max;
	unsigned next_id;
	struct daemon_conn *conns;
	void (*accept)(struct daemon_listener *l, int fd);
	void (*destroy)(struct daemon_conn *c);
	bool (*make_room)(struct daemon *d);
};

/*
 * Listen at path with a socket of type; the caller has set what, count,
 * max, accept and destroy. Returns 0 or -errno (nothing left open).
 */
int daemon_listener_open(struct daemon_listener *l, struct daemon *d,
			 const char *path, int type);

/* Destroy every connection, stop listening, unlink the path. */
void daemon_listener_close(struct daemon_listener *l);

/*
 * Watch fd (accepted by l) for EPOLLIN with cb and count it in l's list;
 * c->id is the next number. Returns 0 or -errno (c not added, the caller
 * keeps fd).
 */
int daemon_conn_add(struct daemon_listener *l, struct daemon_conn *c, int fd,
		    vpnkit_watch_fn *cb, void *opaque);

/* Out of the loop and the list; the descriptor is closed. */
void daemon_conn_remove(struct daemon_conn *c);

/* Watch for EPOLLOUT too (on), or EPOLLIN alone. */
void daemon_conn_watch_out(struct daemon_conn *c, bool on);

/* The transport struct that embeds a struct daemon_conn or listener. */
/* clang-format would take (ptr) for a cast. */
/* clang-format off */
#define daemon_container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))
/* clang-format on */

/* ---------------------------------------------------------------- framing */

enum framing_kind {
	FRAMING_LE16, /* hyperkit: u16 little-endian length */
	FRAMING_BE32, /* QEMU -netdev stream, passt: u32 big-endian length */
};

/*
 * Frame reassembly for a length-prefixed stream. A length outside
 * [FRAME_MIN, max_len] breaks the stream (the peer is garbage). A frame
 * longer than max_frame (the MTU plus the Ethernet header) but within
 * max_len is dropped and counted: the stream stays in step.
 */
struct framing {
	enum framing_kind kind;
	uint32_t max_len;
	uint32_t max_frame;
	uint64_t dropped;
};

/* Bytes of length prefix for a kind (2 or 4). */
size_t framing_hdr_len(enum framing_kind kind);

/* Write the prefix for a frame of len bytes; returns its size. */
size_t framing_hdr_put(enum framing_kind kind, uint8_t hdr[4], size_t len);

/* Called for each whole frame; a negative return stops the parse. */
typedef int framing_fn(void *opaque, const uint8_t *frame, size_t len);

/*
 * Hand every whole frame in buf[0..len) to fn, in order. Returns the
 * bytes consumed (whole frames only, prefixes included: the rest is a
 * partial frame to keep for the next read), -EPROTO if a length breaks
 * the framing, or fn's negative return.
 */
ssize_t framing_parse(struct framing *fr, const uint8_t *buf, size_t len,
		      framing_fn *fn, void *opaque);

/*
 * An output buffer: frames are appended, then written with one write()
 * per flush. When the socket takes only part, the rest stays for the
 * next flush (on EPOLLOUT).
 */
struct outbuf {
	uint8_t *buf;
	size_t size;
	size_t head; /* first unwritten byte */
	size_t tail; /* end of data */
};

int outbuf_init(struct outbuf *ob, size_t size);
void outbuf_release(struct outbuf *ob);

static inline size_t outbuf_len(const struct outbuf *ob)
{
	return ob->tail - ob->head;
}

/*
 * Append hdr (hdr_len bytes, may be 0) and the iovec's bytes as one
 * unit. Returns false, appending nothing, if they do not fit.
 */
bool outbuf_append(struct outbuf *ob, const void *hdr, size_t hdr_len,
		   const struct iovec *iov, int iovcnt);

/*
 * Write what is buffered to fd. Returns 0 when all is written, -EAGAIN if
 * some remains (the socket is full), or -errno.
 */
int outbuf_flush(struct outbuf *ob, int fd);

/* ---------------------------------------------------------------- sessions */

#define SESSION_IN_SIZE (256u * 1024)
#define SESSION_OUT_SIZE (512u * 1024)

enum session_state {
	SESSION_DETECT, /* nothing yet: the first byte tells the framing */
	SESSION_VMN_INIT, /* hyperkit: waiting for the 49-byte init */
	SESSION_VMN_CMD, /* hyperkit: waiting for the 41-byte command */
	SESSION_FRAMES, /* attached: frames both ways */
	SESSION_CLOSING, /* refused: input ignored, close once out is written */
};

/*
 * The protocol of one stream connection, bytes in and bytes out, with no
 * socket: the transport reads into in[in_len..SESSION_IN_SIZE), calls
 * session_process, and writes out to the peer unless hold is set. Used
 * by stream.c and by the vmnet fuzz target.
 */
struct session {
	struct daemon *d;
	unsigned id; /* "stream N" in log lines */
	enum session_state state;
	bool hold; /* a VMN3T response is reserved in out, not written yet */
	struct framing fr; /* once the framing is known */
	struct vpnkit_port *port; /* once attached */
	uint8_t *in; /* SESSION_IN_SIZE bytes */
	size_t in_len;
	struct outbuf out; /* SESSION_OUT_SIZE bytes */
	/* The transport's: the port is made with ops and opaque. */
	const struct vpnkit_port_ops *ops;
	void *opaque;
	/*
	 * May be NULL. Another connection's port holds uuid: if that peer
	 * has hung up, free the port and return true.
	 */
	bool (*reap_uuid)(void *opaque, const char *uuid);
};

/* Allocate the buffers; the caller has set d, id, ops, opaque and
 * reap_uuid. Returns 0 or -ENOMEM. */
int session_init(struct session *s);

/* Free the port (if any) and the buffers; counts the dropped frames. */
void session_release(struct session *s);

/*
 * Consume in[0..in_len) as far as the protocol goes, keeping a partial
 * message at the front. Returns 0, or -errno when the connection must
 * close: -EPROTO if the peer broke the protocol (counted in peers_bad,
 * logged), another if the port failed. A refused peer's reply is queued
 * and the state is SESSION_CLOSING.
 */
int session_process(struct session *s);

/*
 * Queue a frame for the peer with its length prefix. Returns 0, or
 * -EMSGSIZE (a size the link may not carry: dropped and counted), or
 * -ENOBUFS (no room in out: nothing queued).
 */
int session_queue(struct session *s, const struct iovec *iov, int iovcnt);

/* ---------------------------------------------------------------- json */

enum json_kind {
	JSON_STRING,
	JSON_NUMBER,
	JSON_TRUE,
	JSON_FALSE,
	JSON_NULL,
};

#define JSON_MAX_MEMBERS 16
#define JSON_MAX_TEXT 4096

struct json_member {
	const char *key; /* decoded, NUL-terminated, in store */
	enum json_kind kind;
	const char *value; /* string (decoded) or number text, in store */
};

/* One flat JSON object: members whose values are not objects or arrays. */
struct json_flat {
	struct json_member m[JSON_MAX_MEMBERS];
	unsigned n;
	char store[2 * JSON_MAX_TEXT];
	size_t used;
};

/*
 * Parse exactly one object (surrounding white space allowed) of at most
 * JSON_MAX_TEXT bytes. Strings must be valid UTF-8, escapes are decoded
 * (a \u0000 is refused, since keys and values are C strings), duplicate
 * keys are refused. Returns 0, or -EINVAL with a static reason in *why.
 */
int json_flat_parse(const char *text, size_t len, struct json_flat *out,
		    const char **why);

/* The member named key, or NULL. */
const struct json_member *json_flat_get(const struct json_flat *obj,
					const char *key);

/* A growing string for replies; failed once an allocation failed. */
struct strbuf {
	char *s;
	size_t len, cap;
	bool failed;
};

void strbuf_release(struct strbuf *sb);
void strbuf_add(struct strbuf *sb, const char *s, size_t n);
void strbuf_addf(struct strbuf *sb, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* s as a JSON string, quotes included. */
void strbuf_add_json(struct strbuf *sb, const char *s);

/* ---------------------------------------------------------------- transports */

int stream_listen(struct daemon *d, const char *path);
int msg_dgram_open(struct daemon *d, const char *path);
int msg_seqpacket_listen(struct daemon *d, const char *path);
int tap_link_open(struct daemon *d, const char *name, const char *netns);
int control_listen(struct daemon *d, const char *path);

/*
 * The connection slots are all taken: close the stream connection that
 * has been silent for longest, if one has been for the handshake
 * timeout. Returns true if it did.
 */
bool stream_make_room(struct daemon *d);

/* Close everything a transport made (ports, sockets); unlink the paths. */
void stream_close_all(struct daemon *d);
void msg_close_all(struct daemon *d);
void tap_close_all(struct daemon *d);
void control_close_all(struct daemon *d);

#endif
