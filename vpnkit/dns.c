// SPDX-License-Identifier: MIT
/*
 * DNS at the gateway: the VMs' resolver, on the gateway's addresses,
 * port 53, over UDP and TCP.
 *
 * Theory of operation. Every query is answered in one of three ways, in
 * this order:
 *
 *  1. Built-in names (host.docker.internal, host.containers.internal,
 *     gateway.docker.internal and the configured names) are answered at
 *     once, whatever the mode: A and AAAA from the table, and for any
 *     other type of a known name, or a family it lacks, an empty NOERROR
 *     answer (NODATA), never NXDOMAIN. Matching ignores case and a
 *     trailing dot.
 *  2. In host mode, A and AAAA questions of class IN go to getaddrinfo()
 *     on a worker thread, so the VM resolves as a program on the host
 *     does (/etc/hosts, split DNS, VPN domains). Up to DNS_WORKERS
 *     detached threads take jobs from a queue and post results back
 *     through an eventfd in the loop. One AF_UNSPEC lookup answers both
 *     types: a name with addresses of the other family only gets NODATA,
 *     EAI_NONAME gives NXDOMAIN, other failures SERVFAIL. Loopback
 *     addresses become the host's address as the VM sees it (host_ip,
 *     prefix6::2) and are left out when there is none; a name that reads
 *     as an address ("127.1") is NXDOMAIN. TTL 0: the host's resolver
 *     caches, the VM should not.
 *  3. Everything else is relayed untouched, any type, EDNS included, to
 *     the nameservers of resolv.conf. Over UDP, the query's ID is replaced
 *     by a random one of ours (the ID map finds the query again); an
 *     answer is taken only from a server we asked, with the same question,
 *     and gets the VM's ID back. A server gets 2 s before the next one is
 *     tried (SERVFAIL, REFUSED and NOTIMP move on at once), and after 5 s
 *     the VM gets SERVFAIL; with no nameserver at all, SERVFAIL at once.
 *     A query from a VM over TCP is relayed over TCP, one connection per
 *     query.
 *
 * TCP fallback. A truncated UDP answer (TC) is not passed on at once: the
 * relay asks the server that sent it the same query (our ID, the VM's
 * bytes) again over TCP, on a connection of its own, and the VM gets the
 * full answer over UDP, cut as any other (below) if it is longer than the
 * VM accepts or one frame carries, so a VM that cannot use the full answer
 * still gets TC and comes back over TCP itself. If that fails (no free
 * fallback, no descriptor, refused, reset, an answer that is not the
 * query's, no answer within 3 s), the VM gets the UDP answer it would
 * have had without the fallback: the truncated one, TC set. Not SERVFAIL:
 * a VM that can retry over TCP still may, and one that cannot (old musl)
 * keeps whatever records the truncated answer holds. The exchange over
 * TCP is the same code (struct dns_up) that serves the VMs' own TCP
 * queries. Fallbacks are counted in the log at debug level.
 *
 * Answers of our own (1 and 2) echo the query's question and, if it had
 * an OPT record, carry one (BADVERS for an EDNS version above 0). A query
 * with more than one question gets FORMERR; one whose question cannot be
 * read, a header-only FORMERR; a message with QR set, or shorter than a
 * header, is dropped as bad.
 *
 * resolv.conf is read at start and checked again (stat: inode, size,
 * times; through symlinks) at most once a second when a query needs it,
 * so a VPN coming up or a symlinked systemd-resolved file changing is
 * seen without inotify. A missing or empty file means no servers, and
 * SERVFAIL. A loopback server (127.0.0.53) is just a host address.
 * "nameserver 127.0.0.1:5353" is understood too (see dns_msg.h).
 *
 * UDP answers are cut to the header and question with TC set when longer
 * than the VM accepts (512 bytes, or its EDNS size) or than one frame on
 * its link can carry (we do not fragment). A UDP query longer than
 * DNS_QUERY_MAX gets such a TC answer too, so it comes back over TCP.
 *
 * Guest TCP: tcp.c connects a VM's connection to the gateway's port 53 to
 * a listener of ours on 127.0.0.1 (vk_dns_tcp_target). Each connection
 * carries length-prefixed messages (RFC 7766); they are answered one at a
 * time, in order. At most DNS_CONNS connections, idle ones closed after
 * 10 s.
 *
 * Bounds: DNS_PENDING queries in flight (UDP relays, TCP fallbacks and
 * host lookups); more are dropped and counted. Of these, DNS_FALLBACKS
 * at once may be falling back to TCP; a truncated answer beyond that is
 * passed on as it is. The table, the ID map and the buffers (those of
 * the fallbacks too, sized to the largest UDP answer a frame carries)
 * are allocated at start; a TCP connection's two 64 KiB buffers when it
 * is accepted. Host sockets of TCP connections and of fallbacks count
 * against the instance's descriptor budget.
 *
 * Exposure: the UDP relay uses one socket per family for its lifetime, so
 * an off-path attacker who learned the port must still guess a random
 * 16-bit ID and the question; the servers are normally local or reached
 * over the host's own network.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/endian.h"
#include "dns_msg.h"
#include "internal.h"

#define NS_PER_S 1000000000ull
#define DNS_PORT 53
#define DNS_PENDING 1024 /* queries in flight */
#define DNS_QUERY_MAX 1232 /* longest UDP query relayed (DNS flag day) */
#define DNS_MSG_MAX 65535
#define DNS_RETRY_NS (2 * NS_PER_S) /* per server, UDP */
#define DNS_GIVEUP_NS (5 * NS_PER_S) /* UDP relay */
#define DNS_HOST_GIVEUP_NS (10 * NS_PER_S) /* getaddrinfo */
#define DNS_TCP_TRY_NS (4 * NS_PER_S) /* per upstream server, TCP */
#define DNS_TCP_TRIES 3
#define DNS_FALLBACK_NS (3 * NS_PER_S) /* a truncated answer, over TCP */
#define DNS_FALLBACKS 16 /* of those at once */
#define DNS_TCP_IDLE_NS (10 * NS_PER_S)
#define DNS_RESOLV_CHECK_NS NS_PER_S
#define DNS_CONNS 32 /* guest TCP connections */
#define DNS_WORKERS 4 /* getaddrinfo threads */
#define DNS_ADDRS 16 /* addresses of one family in one answer */
#define DNS_SENT_MAX 4 /* servers remembered per query */
#define DNS_TTL_BUILTIN 60
#define DNS_TTL_HOST 0
#define DNS_LOCAL_MAX 2048 /* an answer we build ourselves */
#define DNS_BUILTIN_MAX (VPNKIT_MAX_NAMES + 3)
#define UDP_BATCH 64 /* answers read per wakeup */

/* ---------------------------------------------------------------- state */

/* A server address in a compact comparable form. */
struct dns_server {
	sa_family_t family;
	uint16_t port; /* network order */
	uint32_t scope;
	uint8_t addr[16];
};

/* Where an answer goes: a VM over UDP, or a guest TCP connection. */
struct dns_target {
	bool tcp;
	uint32_t port_id;
	struct in6_addr guest, gw; /* the VM's address, the one it asked */
	uint16_t guest_port;
	size_t udp_limit;
	uint32_t conn, conn_gen;
};

enum dns_slot_kind {
	SLOT_FREE,
	SLOT_RELAY, /* sent upstream over UDP */
	SLOT_FALLBACK, /* answered with TC, asked again over TCP */
	SLOT_HOST, /* waiting for getaddrinfo */
};

struct dns_slot {
	uint8_t kind;
	uint16_t qid; /* what upstream sees */
	uint32_t gen; /* matches host results to their query */
	uint32_t next_free;
	struct dns_target to;
	struct vk_dns_query q; /* the VM's query (its own ID) */
	uint64_t deadline, give_up;
	unsigned server; /* index of the next server to try */
	unsigned sends;
	unsigned fb; /* SLOT_FALLBACK: its struct dns_fallback */
	struct dns_server sent[DNS_SENT_MAX];
	size_t len;
	uint8_t *msg; /* DNS_QUERY_MAX bytes: relay: the query with qid;
		       * host: its header and question */
};

struct dns_udp {
	struct vk_handler h;
	int fd;
};

struct dns_state;

enum dns_up_state { UP_NONE, UP_CONNECTING, UP_SENDING, UP_RECEIVING };

/*
 * One query over TCP to an upstream server: connect, send it with its
 * length prefix, read one length-prefixed answer. The owner (a VM's TCP
 * connection, or a fallback) lends the query and the answer buffer and
 * keeps the time; done hears the outcome once, after the socket is
 * closed: 0 with a checked answer in ans (QR set, the query's ID and
 * question), or -errno (-EBADMSG: not the query's answer; -EMSGSIZE:
 * longer than the buffer).
 */
struct dns_up {
	struct vk_handler h;
	int fd;
	enum dns_up_state state;
	const uint8_t *q; /* the query, without a length prefix */
	size_t qlen;
	uint8_t pfx[2]; /* its length prefix */
	uint8_t *ans; /* the answer, length prefixed */
	size_t cap; /* of ans */
	size_t off; /* bytes sent, then bytes received */
	void (*done)(struct dns_state *st, struct dns_up *up, int err);
};

/* A VM's DNS-over-TCP connection (through tcp.c and our listener). */
struct dns_conn {
	struct vk_handler h; /* the accepted socket */
	int fd;
	uint32_t index, gen;
	bool in_use, busy, eof;
	uint8_t *rbuf; /* queries as they arrive, length prefixed */
	size_t rlen;
	uint8_t *wbuf; /* the answer going out, length prefixed */
	size_t wlen, woff;
	size_t qlen; /* the query being answered: rbuf[0..qlen) */
	uint64_t deadline;
	struct dns_up up; /* its answer is read into wbuf */
	unsigned up_server, up_tries;
};

/* A UDP query whose answer came back truncated, asked again over TCP. */
struct dns_fallback {
	struct dns_up up; /* the query is its slot's msg */
	bool in_use;
	uint32_t slot;
	uint8_t *tc; /* the truncated answer, with the VM's ID */
	size_t tc_len;
};

struct dns_builtin {
	char name[VK_DNS_TEXT_MAX + 1];
	struct in_addr ip4; /* 0: none */
	struct in6_addr ip6; /* zero: none */
};

/* host mode: the job queue and results, shared with the workers. It
 * outlives the instance while a worker is still inside getaddrinfo. */
struct dns_job {
	uint32_t slot, gen;
	char name[VK_DNS_TEXT_MAX + 1];
};

struct dns_result {
	uint32_t slot, gen;
	int gai; /* getaddrinfo's return; 1: a numeric name */
	unsigned n4, n6;
	struct in_addr a4[DNS_ADDRS];
	struct in6_addr a6[DNS_ADDRS];
};

struct dns_pool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned refs; /* the instance, and each running worker */
	bool stop;
	unsigned threads, idle;
	int efd;
	unsigned jhead, jcount;
	unsigned rhead, rcount;
	struct dns_job jobs[DNS_PENDING];
	struct dns_result results[DNS_PENDING];
};

struct dns_state {
	struct vpnkit *vk;
	enum vpnkit_dns_mode mode;
	const char *resolv_path;
	/* resolv.conf as last read */
	struct vk_resolv rc;
	struct stat rc_st;
	bool rc_exists;
	int rc_err;
	uint64_t rc_checked;
	/* queries in flight */
	struct dns_slot *slots;
	uint8_t *arena;
	uint16_t *id_map; /* qid -> slot + 1 */
	uint32_t free_head, used;
	uint32_t gen;
	struct dns_udp udp4, udp6;
	uint8_t *buf; /* DNS_MSG_MAX: answers read from upstream */
	uint8_t rnd[256];
	size_t rnd_pos;
	/* names */
	struct dns_builtin names[DNS_BUILTIN_MAX];
	unsigned n_names;
	/* TCP */
	struct vk_handler lh;
	int lfd;
	struct sockaddr_in laddr;
	struct dns_conn conns[DNS_CONNS];
	/* TCP fallback of truncated UDP answers */
	struct dns_fallback fbs[DNS_FALLBACKS];
	uint8_t *fb_arena;
	size_t fb_max; /* the longest answer kept: what one frame carries */
	uint64_t fb_tried, fb_answered, fb_long, fb_failed;
	struct ratelimit fb_rl;
	/* host mode */
	struct dns_pool *pool;
	struct vk_handler eh;
};

static struct dns_state *dns_of(struct vpnkit *vk)
{
	return *vk_dns_state(vk);
}

#define container_of(p, type, member) \
	((type *)(void *)((char *)(p)-offsetof(type, member)))

/* ---------------------------------------------------------------- helpers */

static uint16_t dns_random16(struct dns_state *st)
{
	uint16_t v;

	if (st->rnd_pos + 2 > sizeof(st->rnd)) {
		ssize_t n = getrandom(st->rnd, sizeof(st->rnd), GRND_NONBLOCK);

		if (n != (ssize_t)sizeof(st->rnd)) {
			/* No entropy yet (early boot): still unpredictable
			 * enough to keep IDs apart. */
			uint64_t x = vk_now_ns() ^ (uintptr_t)st;

			for (size_t i = 0; i < sizeof(st->rnd); i++) {
				x ^= x << 13;
				x ^= x >> 7;
				x ^= x << 17;
				st->rnd[i] ^= (uint8_t)x;
			}
		}
		st->rnd_pos = 0;
	}
	v = load_le16(st->rnd + st->rnd_pos);
	st->rnd_pos += 2;
	return v;
}

static void server_of(struct dns_server *s, const struct sockaddr_storage *ss)
{
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;

	memset(s, 0, sizeof(*s));
	s->family = ss->ss_family;
	if (ss->ss_family == AF_INET) {
		memcpy(&sin, ss, sizeof(sin));
		s->port = sin.sin_port;
		memcpy(s->addr, &sin.sin_addr, 4);
	} else if (ss->ss_family == AF_INET6) {
		memcpy(&sin6, ss, sizeof(sin6));
		s->port = sin6.sin6_port;
		s->scope = sin6.sin6_scope_id;
		memcpy(s->addr, &sin6.sin6_addr, 16);
	}
}

static bool server_eq(const struct dns_server *a, const struct dns_server *b)
{
	return a->family == b->family && a->port == b->port &&
	       memcmp(a->addr, b->addr, 16) == 0 &&
	       (a->family == AF_INET || a->scope == 0 || b->scope == 0 ||
		a->scope == b->scope);
}

/* Re-read resolv.conf if it changed; at most once a second. */
static void dns_resolv_refresh(struct dns_state *st, uint64_t now, bool force)
{
	struct stat sb;
	bool exists;
	int err;

	if (!force && st->rc_checked &&
	    now - st->rc_checked < DNS_RESOLV_CHECK_NS)
		return;
	st->rc_checked = now ? now : 1;
	exists = stat(st->resolv_path, &sb) == 0;
	if (!force && exists == st->rc_exists &&
	    (!exists ||
	     (sb.st_dev == st->rc_st.st_dev && sb.st_ino == st->rc_st.st_ino &&
	      sb.st_size == st->rc_st.st_size &&
	      sb.st_mtim.tv_sec == st->rc_st.st_mtim.tv_sec &&
	      sb.st_mtim.tv_nsec == st->rc_st.st_mtim.tv_nsec &&
	      sb.st_ctim.tv_sec == st->rc_st.st_ctim.tv_sec &&
	      sb.st_ctim.tv_nsec == st->rc_st.st_ctim.tv_nsec)))
		return;
	st->rc_exists = exists;
	if (exists)
		st->rc_st = sb;
	err = vk_resolv_load(st->resolv_path, &st->rc);
	if (err != st->rc_err || force || err == 0) {
		if (err)
			logger_printf(vk_log(st->vk), LOG_LEVEL_WARN,
				      "dns: %s: %s; answering SERVFAIL",
				      st->resolv_path, strerror(-err));
		else
			logger_printf(vk_log(st->vk),
				      st->rc.n ? LOG_LEVEL_INFO :
						 LOG_LEVEL_WARN,
				      "dns: %s: %u nameserver(s)%s",
				      st->resolv_path, st->rc.n,
				      st->rc.n ? "" : "; answering SERVFAIL");
	}
	st->rc_err = err;
}

/* The longest UDP payload one frame to this VM can carry. */
static size_t dns_link_limit(struct dns_state *st, const struct in6_addr *gw)
{
	unsigned mtu = vk_config(st->vk)->mtu;
	size_t hdr = vk_addr_is_v4(gw) ? 28 : 48;

	return mtu > hdr ? mtu - hdr : 0;
}

/* The EDNS size we offer in answers we build. */
static uint16_t dns_our_udp_size(struct dns_state *st)
{
	unsigned mtu = vk_config(st->vk)->mtu;
	unsigned size = mtu > 48 ? mtu - 48 : VK_DNS_UDP_MIN;

	if (size > 4096)
		size = 4096;
	if (size < VK_DNS_UDP_MIN)
		size = VK_DNS_UDP_MIN;
	return (uint16_t)size;
}

/* ---------------------------------------------------------------- delivery */

static void conn_reply(struct dns_state *st, struct dns_conn *c,
		       const uint8_t *msg, size_t len);
static void conn_process(struct dns_state *st, struct dns_conn *c);

static void dns_send_udp(struct dns_state *st, const struct dns_target *to,
			 uint8_t *msg, size_t len)
{
	struct vk_port *port = vk_port_by_id(st->vk, to->port_id);
	size_t limit = to->udp_limit;
	size_t link = dns_link_limit(st, &to->gw);

	if (!port) {
		vk_drop(st->vk, "dns: the port went away");
		return;
	}
	if (link < limit)
		limit = link;
	if (len > limit) {
		len = vk_dns_truncate(msg, len);
		if (len == 0 || len > limit) {
			vk_drop(st->vk, "dns: answer does not fit");
			return;
		}
	}
	(void)vk_udp_send(port, &to->gw, DNS_PORT, &to->guest, to->guest_port,
			  msg, len);
}

/* Hand an answer (with the VM's ID already in it) to its requester. */
static void dns_deliver(struct dns_state *st, const struct dns_target *to,
			uint8_t *msg, size_t len)
{
	struct dns_conn *c;

	if (!to->tcp) {
		dns_send_udp(st, to, msg, len);
		return;
	}
	c = &st->conns[to->conn];
	if (!c->in_use || c->gen != to->conn_gen || !c->busy)
		return;
	conn_reply(st, c, msg, len);
}

/* After an answer given outside conn_process (a host lookup, a timeout),
 * take the connection's next query. */
static void conn_kick(struct dns_state *st, const struct dns_target *to)
{
	struct dns_conn *c;

	if (!to->tcp)
		return;
	c = &st->conns[to->conn];
	if (c->in_use && c->gen == to->conn_gen)
		conn_process(st, c);
}

/* Build and deliver an answer of ours (no records, or rr[]). */
static void dns_answer(struct dns_state *st, const struct dns_target *to,
		       const uint8_t *msg, const struct vk_dns_query *q,
		       unsigned rcode, bool aa, const struct vk_dns_rr *rr,
		       size_t n_rr)
{
	uint8_t out[DNS_LOCAL_MAX];
	ssize_t len;

	len = vk_dns_answer_build(out, sizeof(out), msg, q, rcode, aa, rr, n_rr,
				  dns_our_udp_size(st));
	if (len < 0) {
		/* Too many records for our buffer: say so with TC. */
		len = vk_dns_answer_build(out, sizeof(out), msg, q, rcode, aa,
					  NULL, 0, dns_our_udp_size(st));
		if (len < 0)
			return;
		store_be16(out + 2, (uint16_t)(load_be16(out + 2) | VK_DNS_TC));
	}
	dns_deliver(st, to, out, (size_t)len);
}

/* ---------------------------------------------------------------- upstream TCP */

static void up_event(struct vpnkit *vk, struct vk_handler *h, uint32_t events);

static void up_close(struct dns_state *st, struct dns_up *up)
{
	if (up->fd >= 0) {
		vk_epoll_del(st->vk, up->fd);
		close(up->fd);
		vk_fd_give(st->vk);
		up->fd = -1;
	}
	up->state = UP_NONE;
}

/* End the exchange and tell its owner (which may reuse up at once). */
static void up_finish(struct dns_state *st, struct dns_up *up, int err)
{
	up_close(st, up);
	up->done(st, up, err);
}

/*
 * Start sending up->q (set by the owner, as are ans and cap) to the
 * server at sa over a new connection. Returns 0, then done is called
 * later; or -errno, with nothing open and done not called (-EMFILE: the
 * descriptor budget is spent).
 */
static int up_open(struct dns_state *st, struct dns_up *up,
		   const struct sockaddr_storage *sa, socklen_t salen)
{
	int fd, err;

	if (!vk_fd_take(st->vk))
		return -EMFILE;
	fd = socket(sa->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    0);
	if (fd < 0) {
		err = -errno;
		vk_fd_give(st->vk);
		return err;
	}
	up->fd = fd;
	up->off = 0;
	up->state = UP_CONNECTING;
	store_be16(up->pfx, (uint16_t)up->qlen);
	err = vk_epoll_add(st->vk, fd, EPOLLOUT, &up->h);
	if (!err && connect(fd, (const struct sockaddr *)sa, salen) < 0 &&
	    errno != EINPROGRESS)
		err = -errno;
	if (err)
		up_close(st, up);
	return err;
}

/* The answer is complete in ans: is it the query's? */
static int up_check(const struct dns_up *up)
{
	size_t len = up->off - 2;
	const uint8_t *ans = up->ans + 2;

	if (len < VK_DNS_HDR_LEN || !(load_be16(ans + 2) & VK_DNS_QR) ||
	    load_be16(ans) != load_be16(up->q) ||
	    !vk_dns_question_match(up->q, up->qlen, ans, len))
		return -EBADMSG;
	return 0;
}

static void up_event(struct vpnkit *vk, struct vk_handler *h, uint32_t events)
{
	struct dns_state *st = dns_of(vk);
	struct dns_up *up = container_of(h, struct dns_up, h);
	int err = 0;
	socklen_t elen = sizeof(err);

	(void)events;
	if (up->state == UP_CONNECTING) {
		if (getsockopt(up->fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
			err = errno;
		if (err) {
			up_finish(st, up, -err);
			return;
		}
		up->state = UP_SENDING;
	}
	if (up->state == UP_SENDING) {
		while (up->off < 2 + up->qlen) {
			struct iovec iov[2];
			struct msghdr mh = { .msg_iov = iov };
			ssize_t n;

			if (up->off < 2) {
				iov[0].iov_base = up->pfx + up->off;
				iov[0].iov_len = 2 - up->off;
				iov[1].iov_base = (void *)up->q;
				iov[1].iov_len = up->qlen;
				mh.msg_iovlen = 2;
			} else {
				iov[0].iov_base = (void *)(up->q + up->off - 2);
				iov[0].iov_len = up->qlen - (up->off - 2);
				mh.msg_iovlen = 1;
			}
			n = sendmsg(up->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				return;
			if (n <= 0) {
				up_finish(st, up, n < 0 ? -errno : -EPIPE);
				return;
			}
			up->off += (size_t)n;
		}
		up->state = UP_RECEIVING;
		up->off = 0;
		vk_epoll_mod(vk, up->fd, EPOLLIN, &up->h);
		return;
	}
	if (up->state != UP_RECEIVING)
		return;
	for (;;) {
		size_t want = up->off < 2 ? 2 : 2 + (size_t)load_be16(up->ans);
		ssize_t n;

		if (want > up->cap) {
			up_finish(st, up, -EMSGSIZE);
			return;
		}
		if (up->off >= 2 && up->off == want) {
			up_finish(st, up, up_check(up));
			return;
		}
		n = recv(up->fd, up->ans + up->off, want - up->off,
			 MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			up_finish(st, up, n < 0 ? -errno : -ECONNRESET);
			return;
		}
		up->off += (size_t)n;
	}
}

/* ---------------------------------------------------------------- slots */

static struct dns_slot *slot_alloc(struct dns_state *st)
{
	struct dns_slot *s;

	if (st->free_head == UINT32_MAX)
		return NULL;
	s = &st->slots[st->free_head];
	st->free_head = s->next_free;
	st->used++;
	s->gen = ++st->gen;
	s->sends = 0;
	s->server = 0;
	return s;
}

static void slot_free(struct dns_state *st, struct dns_slot *s)
{
	if (s->kind == SLOT_RELAY)
		st->id_map[s->qid] = 0;
	if (s->kind == SLOT_FALLBACK) {
		up_close(st, &st->fbs[s->fb].up);
		st->fbs[s->fb].in_use = false;
	}
	s->kind = SLOT_FREE;
	s->next_free = st->free_head;
	st->free_head = (uint32_t)(s - st->slots);
	st->used--;
}

/* Answer a query in flight with an error of ours and forget it. */
static void slot_fail(struct dns_state *st, struct dns_slot *s, unsigned rcode)
{
	struct dns_target to = s->to;

	dns_answer(st, &to, s->msg, &s->q, rcode, false, NULL, 0);
	slot_free(st, s);
}

/* ---------------------------------------------------------------- UDP relay */

static void udp_event(struct vpnkit *vk, struct vk_handler *h, uint32_t events);

static int udp_socket(struct dns_state *st, struct dns_udp *u, int family)
{
	int fd, one = 1, err;

	if (u->fd >= 0)
		return 0;
	fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	u->h.fn = udp_event;
	err = vk_epoll_add(st->vk, fd, EPOLLIN, &u->h);
	if (err) {
		close(fd);
		return err;
	}
	u->fd = fd;
	return 0;
}

/* Send the slot's query to its next server. Returns 0, or -errno when
 * no server took it. */
static int relay_send(struct dns_state *st, struct dns_slot *s)
{
	int err = -ENETUNREACH;

	for (unsigned tries = 0; tries < st->rc.n; tries++) {
		unsigned i = s->server++ % st->rc.n;
		const struct sockaddr_storage *ss = &st->rc.ns[i];
		struct dns_udp *u = ss->ss_family == AF_INET ? &st->udp4 :
							       &st->udp6;

		err = udp_socket(st, u, ss->ss_family);
		if (err)
			continue;
		if (sendto(u->fd, s->msg, s->len, MSG_NOSIGNAL,
			   (const struct sockaddr *)ss, st->rc.ns_len[i]) < 0) {
			err = -errno;
			continue;
		}
		server_of(&s->sent[s->sends % DNS_SENT_MAX], ss);
		s->sends++;
		return 0;
	}
	return err;
}

static void relay_start(struct dns_state *st, const struct dns_target *to,
			const uint8_t *msg, size_t len,
			const struct vk_dns_query *q, uint64_t now)
{
	struct dns_slot *s;
	uint16_t qid = 0;
	int i;

	s = slot_alloc(st);
	if (!s) {
		vk_drop(st->vk, "dns: too many queries in flight");
		return;
	}
	for (i = 0; i < 16; i++) {
		qid = dns_random16(st);
		if (!st->id_map[qid])
			break;
	}
	if (i == 16) {
		slot_free(st, s);
		vk_drop(st->vk, "dns: no free query ID");
		return;
	}
	s->kind = SLOT_RELAY;
	s->qid = qid;
	s->to = *to;
	s->q = *q;
	s->len = len;
	memcpy(s->msg, msg, len);
	store_be16(s->msg, qid);
	st->id_map[qid] = (uint16_t)(s - st->slots + 1);
	s->give_up = now + DNS_GIVEUP_NS;
	s->deadline = now + DNS_RETRY_NS;
	if (relay_send(st, s) < 0) {
		slot_fail(st, s, VK_DNS_SERVFAIL);
		return;
	}
	vk_timer_soon(st->vk, s->deadline);
}

/* "192.0.2.1:53" or "[2001:db8::1]:53", for the log. */
static const char *server_text(const struct sockaddr_storage *ss, char *buf,
			       size_t cap)
{
	const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
	char a[INET6_ADDRSTRLEN] = "?";

	if (ss->ss_family == AF_INET) {
		inet_ntop(AF_INET, &sin->sin_addr, a, sizeof(a));
		snprintf(buf, cap, "%s:%u", a, ntohs(sin->sin_port));
	} else {
		inet_ntop(AF_INET6, &sin6->sin6_addr, a, sizeof(a));
		snprintf(buf, cap, "[%s]:%u", a, ntohs(sin6->sin6_port));
	}
	return buf;
}

static void fallback_log(struct dns_state *st, enum log_level level,
			 const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* A line on a fallback, with the counts so far: its outcome at debug
 * level, its start at trace level. Rate-limited: a VM decides how often
 * this happens, and each line that passes has the counts. */
static void fallback_log(struct dns_state *st, enum log_level level,
			 const char *fmt, ...)
{
	char what[384];
	va_list ap;

	if (!logger_enabled(vk_log(st->vk), level))
		return;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	logger_printf_limited(vk_log(st->vk), &st->fb_rl, level,
			      "dns: TCP fallback: %s (fallbacks: %llu tried, "
			      "%llu answered, %llu too long for UDP, %llu "
			      "failed)",
			      what, (unsigned long long)st->fb_tried,
			      (unsigned long long)st->fb_answered,
			      (unsigned long long)st->fb_long,
			      (unsigned long long)st->fb_failed);
}

/* Why a fallback did not bring an answer, for the log. */
static const char *fallback_why(int err)
{
	switch (err) {
	case -EMSGSIZE:
		return "the answer is longer than one frame carries";
	case -EBADMSG:
		return "not an answer to the query";
	case -EMFILE:
		return "descriptor limit reached";
	default:
		return strerror(-err);
	}
}

/* The fallback's exchange is over: the VM gets the full answer, or the
 * truncated one it would have had without us; the query is done. */
static void fallback_done(struct dns_state *st, struct dns_up *up, int err)
{
	struct dns_fallback *fb = container_of(up, struct dns_fallback, up);
	struct dns_slot *s = &st->slots[fb->slot];

	if (err == 0) {
		size_t len = up->off - 2;
		uint8_t *ans = up->ans + 2;

		st->fb_answered++;
		fallback_log(st, LOG_LEVEL_DEBUG, "%s: %zu-byte answer",
			     s->q.name_ok ? s->q.name : "?", len);
		store_be16(ans, s->q.id);
		dns_deliver(st, &s->to, ans, len);
	} else {
		if (err == -EMSGSIZE)
			st->fb_long++;
		else
			st->fb_failed++;
		fallback_log(st, LOG_LEVEL_DEBUG,
			     "%s: %s; passing the truncated answer",
			     s->q.name_ok ? s->q.name : "?", fallback_why(err));
		dns_deliver(st, &s->to, fb->tc, fb->tc_len);
	}
	slot_free(st, s);
}

/*
 * A truncated answer (msg, len; checked, the VM's ID not yet in it) from
 * the server at from to the relayed query s: ask that server again over
 * TCP. Returns true if the query is now waiting for that; false if the
 * caller should pass the truncated answer on as before.
 */
static bool fallback_start(struct dns_state *st, struct dns_slot *s,
			   const uint8_t *msg, size_t len,
			   const struct sockaddr_storage *from, uint64_t now)
{
	struct dns_fallback *fb = NULL;
	socklen_t salen = from->ss_family == AF_INET ?
				  sizeof(struct sockaddr_in) :
				  sizeof(struct sockaddr_in6);
	char where[INET6_ADDRSTRLEN + 8];
	size_t keep;
	int err;

	if (s->to.tcp ||
	    (from->ss_family != AF_INET && from->ss_family != AF_INET6))
		return false;
	for (unsigned i = 0; i < DNS_FALLBACKS && !fb; i++)
		if (!st->fbs[i].in_use)
			fb = &st->fbs[i];
	st->fb_tried++;
	if (!fb) {
		st->fb_failed++;
		fallback_log(st, LOG_LEVEL_DEBUG,
			     "%u already running; passing the truncated answer",
			     DNS_FALLBACKS);
		return false;
	}
	/* Keep what the VM gets if this fails. One longer than a frame
	 * carries would be cut to header and question anyway: those fit
	 * (fb_max is more than 512). */
	if (len > st->fb_max) {
		memcpy(fb->tc, msg, st->fb_max);
		keep = vk_dns_truncate(fb->tc, st->fb_max);
	} else {
		memcpy(fb->tc, msg, len);
		keep = len;
	}
	fb->up.q = s->msg;
	fb->up.qlen = s->len;
	err = keep ? up_open(st, &fb->up, from, salen) : -EBADMSG;
	if (err) {
		st->fb_failed++;
		fallback_log(st, LOG_LEVEL_DEBUG,
			     "%s from %s: %s; passing the truncated answer",
			     s->q.name_ok ? s->q.name : "?",
			     server_text(from, where, sizeof(where)),
			     fallback_why(err));
		return false;
	}
	store_be16(fb->tc, s->q.id);
	fb->tc_len = keep;
	fb->in_use = true;
	fb->slot = (uint32_t)(s - st->slots);
	/* The query leaves the ID map: a late UDP copy of the truncated
	 * answer finds nothing. */
	st->id_map[s->qid] = 0;
	s->kind = SLOT_FALLBACK;
	s->fb = (unsigned)(fb - st->fbs);
	s->give_up = s->deadline = now + DNS_FALLBACK_NS;
	vk_timer_soon(st->vk, s->deadline);
	fallback_log(st, LOG_LEVEL_TRACE,
		     "truncated answer for %s from %s, asking over TCP",
		     s->q.name_ok ? s->q.name : "?",
		     server_text(from, where, sizeof(where)));
	return true;
}

/* One datagram from an upstream server. */
static void relay_answer(struct dns_state *st, uint8_t *msg, size_t len,
			 const struct sockaddr_storage *from)
{
	struct dns_server src;
	struct dns_slot *s;
	uint16_t idx, flags;
	unsigned rcode;
	bool known = false;

	if (len < VK_DNS_HDR_LEN)
		return;
	flags = load_be16(msg + 2);
	idx = st->id_map[load_be16(msg)];
	if (!(flags & VK_DNS_QR) || idx == 0)
		return;
	s = &st->slots[idx - 1];
	server_of(&src, from);
	for (unsigned i = 0; i < s->sends && i < DNS_SENT_MAX; i++)
		known = known || server_eq(&src, &s->sent[i]);
	if (!known || !vk_dns_question_match(s->msg, s->len, msg, len))
		return;
	rcode = VK_DNS_RCODE(flags);
	if ((rcode == VK_DNS_SERVFAIL || rcode == VK_DNS_REFUSED ||
	     rcode == VK_DNS_NOTIMP) &&
	    s->sends < st->rc.n && relay_send(st, s) == 0)
		return; /* another server may know better */
	if ((flags & VK_DNS_TC) &&
	    fallback_start(st, s, msg, len, from, vk_now_ns()))
		return;
	store_be16(msg, s->q.id);
	dns_deliver(st, &s->to, msg, len);
	slot_free(st, s);
}

static void udp_event(struct vpnkit *vk, struct vk_handler *h, uint32_t events)
{
	struct dns_state *st = dns_of(vk);
	struct dns_udp *u = container_of(h, struct dns_udp, h);

	(void)events;
	for (int i = 0; i < UDP_BATCH; i++) {
		struct sockaddr_storage from = { 0 };
		socklen_t flen = sizeof(from);
		ssize_t n = recvfrom(u->fd, st->buf, DNS_MSG_MAX, MSG_DONTWAIT,
				     (struct sockaddr *)&from, &flen);

		if (n < 0) {
			/* EAGAIN, or an ICMP error for an earlier send
			 * (ECONNREFUSED): the query's timer handles it. */
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			continue;
		}
		relay_answer(st, st->buf, (size_t)n, &from);
	}
}

/* ---------------------------------------------------------------- host mode */

static void *worker_main(void *arg);

static void pool_put(struct dns_pool *p)
{
	bool last;

	pthread_mutex_lock(&p->lock);
	last = --p->refs == 0;
	pthread_mutex_unlock(&p->lock);
	if (!last)
		return;
	close(p->efd);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

/* Start one more worker (the pool lock is held). */
static int pool_spawn(struct dns_pool *p)
{
	pthread_attr_t attr;
	pthread_t tid;
	sigset_t all, old;
	int err;

	if (pthread_attr_init(&attr))
		return -ENOMEM;
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	/* Workers take no signals: those are the embedder's business. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&tid, &attr, worker_main, p);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (err)
		return -err;
	p->threads++;
	p->refs++;
	return 0;
}

/* Map a host address to what the VM should use; false: leave it out. */
static bool host_addr4(struct dns_state *st, struct in_addr *a)
{
	const struct vpnkit_config *cfg = vk_config(st->vk);

	if ((ntohl(a->s_addr) >> 24) != 127)
		return true;
	if (!cfg->host_ip.s_addr)
		return false;
	*a = cfg->host_ip;
	return true;
}

static bool host_addr6(struct dns_state *st, struct in6_addr *a)
{
	const struct vpnkit_config *cfg = vk_config(st->vk);

	if (!IN6_IS_ADDR_LOOPBACK(a))
		return true;
	if (!cfg->ipv6 || !cfg->host_ip.s_addr)
		return false;
	*a = cfg->prefix6;
	a->s6_addr[15] = 2;
	return true;
}

static void worker_lookup(struct dns_job *job, struct dns_result *res)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC,
				  .ai_socktype = SOCK_DGRAM,
				  .ai_flags = AI_NUMERICHOST };
	struct addrinfo *ai, *p;

	memset(res, 0, sizeof(*res));
	res->slot = job->slot;
	res->gen = job->gen;
	/* A DNS name that reads as an address ("127.1") has no records;
	 * getaddrinfo would echo it back. */
	if (getaddrinfo(job->name, NULL, &hints, &ai) == 0) {
		freeaddrinfo(ai);
		res->gai = 1;
		return;
	}
	hints.ai_flags = 0;
	res->gai = getaddrinfo(job->name, NULL, &hints, &ai);
	if (res->gai)
		return;
	for (p = ai; p; p = p->ai_next) {
		if (p->ai_family == AF_INET && res->n4 < DNS_ADDRS &&
		    p->ai_addrlen >= sizeof(struct sockaddr_in))
			res->a4[res->n4++] =
				((struct sockaddr_in *)p->ai_addr)->sin_addr;
		else if (p->ai_family == AF_INET6 && res->n6 < DNS_ADDRS &&
			 p->ai_addrlen >= sizeof(struct sockaddr_in6))
			res->a6[res->n6++] =
				((struct sockaddr_in6 *)p->ai_addr)->sin6_addr;
	}
	freeaddrinfo(ai);
}

static void *worker_main(void *arg)
{
	struct dns_pool *p = arg;
	struct dns_job job;
	struct dns_result res;
	uint64_t one = 1;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->stop && p->jcount == 0) {
			p->idle++;
			pthread_cond_wait(&p->cond, &p->lock);
			p->idle--;
		}
		if (p->stop)
			break;
		job = p->jobs[p->jhead];
		p->jhead = (p->jhead + 1) % DNS_PENDING;
		p->jcount--;
		pthread_mutex_unlock(&p->lock);

		worker_lookup(&job, &res);

		pthread_mutex_lock(&p->lock);
		if (p->stop)
			break;
		/* A full ring drops the result: the query times out. */
		if (p->rcount < DNS_PENDING) {
			p->results[(p->rhead + p->rcount) % DNS_PENDING] = res;
			p->rcount++;
			if (write(p->efd, &one, sizeof(one)) < 0) {
				/* The counter cannot overflow in practice;
				 * the loop reads it on every wakeup. */
			}
		}
	}
	p->threads--;
	pthread_mutex_unlock(&p->lock);
	pool_put(p);
	return NULL;
}

static void host_result(struct dns_state *st, const struct dns_result *res)
{
	struct dns_slot *s;
	struct vk_dns_rr rr[DNS_ADDRS];
	size_t n = 0;
	unsigned rcode = VK_DNS_NOERROR;

	if (res->slot >= DNS_PENDING)
		return;
	s = &st->slots[res->slot];
	if (s->kind != SLOT_HOST || s->gen != res->gen)
		return; /* given up on already */
	if (res->gai == 1 || res->gai == EAI_NONAME) {
		rcode = VK_DNS_NXDOMAIN;
	} else if (res->gai == 0) {
		for (unsigned i = 0; s->q.qtype == VK_DNS_TYPE_A && i < res->n4;
		     i++) {
			struct in_addr a = res->a4[i];

			if (!host_addr4(st, &a))
				continue;
			rr[n].type = VK_DNS_TYPE_A;
			rr[n].ttl = DNS_TTL_HOST;
			memcpy(rr[n].addr, &a, 4);
			n++;
		}
		for (unsigned i = 0;
		     s->q.qtype == VK_DNS_TYPE_AAAA && i < res->n6; i++) {
			struct in6_addr a = res->a6[i];

			if (!host_addr6(st, &a))
				continue;
			rr[n].type = VK_DNS_TYPE_AAAA;
			rr[n].ttl = DNS_TTL_HOST;
			memcpy(rr[n].addr, &a, 16);
			n++;
		}
	} else if (res->gai == EAI_NODATA) {
		rcode = VK_DNS_NOERROR; /* the name exists, no address */
	} else {
		rcode = VK_DNS_SERVFAIL;
	}
	{
		struct dns_target to = s->to;

		dns_answer(st, &to, s->msg, &s->q, rcode, false, rr, n);
		slot_free(st, s);
		conn_kick(st, &to);
	}
}

static void pool_event(struct vpnkit *vk, struct vk_handler *h, uint32_t events)
{
	struct dns_state *st = dns_of(vk);
	struct dns_pool *p = st->pool;
	struct dns_result res;
	uint64_t count;

	(void)h;
	(void)events;
	if (read(p->efd, &count, sizeof(count)) < 0 && errno != EAGAIN)
		return;
	for (;;) {
		pthread_mutex_lock(&p->lock);
		if (p->rcount == 0) {
			pthread_mutex_unlock(&p->lock);
			break;
		}
		res = p->results[p->rhead];
		p->rhead = (p->rhead + 1) % DNS_PENDING;
		p->rcount--;
		pthread_mutex_unlock(&p->lock);
		host_result(st, &res);
	}
}

static int pool_create(struct dns_state *st)
{
	struct dns_pool *p = calloc(1, sizeof(*p));
	int err;

	if (!p)
		return -ENOMEM;
	p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (p->efd < 0) {
		err = -errno;
		free(p);
		return err;
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	p->refs = 1;
	st->eh.fn = pool_event;
	err = vk_epoll_add(st->vk, p->efd, EPOLLIN, &st->eh);
	if (err) {
		pool_put(p);
		return err;
	}
	st->pool = p;
	return 0;
}

static void pool_release(struct dns_state *st)
{
	struct dns_pool *p = st->pool;

	if (!p)
		return;
	vk_epoll_del(st->vk, p->efd);
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	pool_put(p);
	st->pool = NULL;
}

static void host_start(struct dns_state *st, const struct dns_target *to,
		       const uint8_t *msg, const struct vk_dns_query *q,
		       uint64_t now)
{
	struct dns_pool *p = st->pool;
	struct dns_slot *s;
	struct dns_job *job;

	s = slot_alloc(st);
	if (!s) {
		vk_drop(st->vk, "dns: too many queries in flight");
		return;
	}
	s->kind = SLOT_HOST;
	s->to = *to;
	s->q = *q;
	s->len = VK_DNS_HDR_LEN + q->question_len;
	memcpy(s->msg, msg, s->len);
	s->give_up = s->deadline = now + DNS_HOST_GIVEUP_NS;

	pthread_mutex_lock(&p->lock);
	if (p->jcount == DNS_PENDING) {
		pthread_mutex_unlock(&p->lock);
		slot_fail(st, s, VK_DNS_SERVFAIL);
		return;
	}
	job = &p->jobs[(p->jhead + p->jcount) % DNS_PENDING];
	job->slot = (uint32_t)(s - st->slots);
	job->gen = s->gen;
	memcpy(job->name, q->name, sizeof(job->name));
	p->jcount++;
	if (p->jcount > p->idle && p->threads < DNS_WORKERS &&
	    pool_spawn(p) < 0 && p->threads == 0) {
		p->jcount--;
		pthread_mutex_unlock(&p->lock);
		logger_printf(vk_log(st->vk), LOG_LEVEL_ERR,
			      "dns: cannot start a resolver thread");
		slot_fail(st, s, VK_DNS_SERVFAIL);
		return;
	}
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	vk_timer_soon(st->vk, s->deadline);
}

/* ---------------------------------------------------------------- dispatch */

static const struct dns_builtin *builtin_find(struct dns_state *st,
					      const char *name)
{
	for (unsigned i = 0; i < st->n_names; i++)
		if (strcmp(st->names[i].name, name) == 0)
			return &st->names[i];
	return NULL;
}

static void builtin_answer(struct dns_state *st, const struct dns_target *to,
			   const uint8_t *msg, const struct vk_dns_query *q,
			   const struct dns_builtin *b)
{
	static const struct in6_addr zero6;
	struct vk_dns_rr rr[2];
	size_t n = 0;
	bool any = q->qtype == VK_DNS_TYPE_ANY;

	if ((q->qtype == VK_DNS_TYPE_A || any) && b->ip4.s_addr) {
		rr[n].type = VK_DNS_TYPE_A;
		rr[n].ttl = DNS_TTL_BUILTIN;
		memcpy(rr[n].addr, &b->ip4, 4);
		n++;
	}
	if ((q->qtype == VK_DNS_TYPE_AAAA || any) &&
	    memcmp(&b->ip6, &zero6, sizeof(zero6)) != 0) {
		rr[n].type = VK_DNS_TYPE_AAAA;
		rr[n].ttl = DNS_TTL_BUILTIN;
		memcpy(rr[n].addr, &b->ip6, 16);
		n++;
	}
	dns_answer(st, to, msg, q, VK_DNS_NOERROR, true, rr, n);
}

/*
 * One query from a VM, over UDP or TCP. msg holds it with the VM's ID.
 * Returns true if it went to the upstream relay path that the caller
 * must run (over TCP the caller relays itself).
 */
static bool dns_query(struct dns_state *st, struct dns_target *to,
		      const uint8_t *msg, size_t len, uint64_t now,
		      struct vk_dns_query *q)
{
	const struct dns_builtin *b;
	uint8_t hdr[VK_DNS_HDR_LEN];
	bool query_op, in_class;

	if (vk_dns_query_parse(msg, len, q) < 0) {
		to->udp_limit = VK_DNS_UDP_MIN;
		dns_deliver(st, to, hdr,
			    vk_dns_header_answer(hdr, msg, VK_DNS_FORMERR));
		return false;
	}
	to->udp_limit = vk_dns_udp_limit(q);
	if (q->qdcount > 1) {
		dns_answer(st, to, msg, q, VK_DNS_FORMERR, false, NULL, 0);
		return false;
	}
	query_op = VK_DNS_OPCODE(q->flags) == 0 && q->has_question;
	in_class = q->qclass == VK_DNS_CLASS_IN ||
		   q->qclass == VK_DNS_CLASS_ANY;
	if (query_op && in_class && q->name_ok &&
	    (b = builtin_find(st, q->name))) {
		if (q->has_opt && q->edns_version > 0)
			dns_answer(st, to, msg, q, VK_DNS_BADVERS, false, NULL,
				   0);
		else
			builtin_answer(st, to, msg, q, b);
		return false;
	}
	if (st->mode == VPNKIT_DNS_HOST && query_op &&
	    q->qclass == VK_DNS_CLASS_IN && q->name_ok && q->name[0] &&
	    (q->qtype == VK_DNS_TYPE_A || q->qtype == VK_DNS_TYPE_AAAA)) {
		if (q->has_opt && q->edns_version > 0)
			dns_answer(st, to, msg, q, VK_DNS_BADVERS, false, NULL,
				   0);
		else
			host_start(st, to, msg, q, now);
		return false;
	}
	dns_resolv_refresh(st, now, false);
	if (st->rc.n == 0) {
		dns_answer(st, to, msg, q, VK_DNS_SERVFAIL, false, NULL, 0);
		return false;
	}
	return true;
}

void vk_dns_udp_input(struct vpnkit *vk, const struct vk_pkt *pkt,
		      uint16_t sport, const uint8_t *data, size_t len)
{
	struct dns_state *st = dns_of(vk);
	struct dns_target to = { 0 };
	struct vk_dns_query q;
	uint64_t now = vk_now_ns();

	if (!st) {
		vk_drop(vk, "dns: off");
		return;
	}
	if (len < VK_DNS_HDR_LEN || (load_be16(data + 2) & VK_DNS_QR)) {
		vk_drop_bad(vk, "dns: not a query");
		return;
	}
	to.port_id = pkt->port->id;
	to.guest = pkt->src;
	to.gw = pkt->dst;
	to.guest_port = sport;
	to.udp_limit = VK_DNS_UDP_MIN;
	if (len > DNS_QUERY_MAX) {
		/* Longer than we relay over UDP: ask for TCP. */
		uint8_t out[VK_DNS_HDR_LEN + VK_DNS_NAME_MAX + 4];
		size_t n = len < sizeof(out) ? len : sizeof(out);
		size_t tlen;

		memcpy(out, data, n);
		tlen = vk_dns_truncate(out, n);
		if (tlen == 0) {
			tlen = vk_dns_header_answer(out, data, VK_DNS_FORMERR);
		} else {
			store_be16(out + 2,
				   (uint16_t)((load_be16(out + 2) & ~0x000fu) |
					      VK_DNS_QR | VK_DNS_RA |
					      VK_DNS_TC));
		}
		dns_send_udp(st, &to, out, tlen);
		return;
	}
	if (dns_query(st, &to, data, len, now, &q))
		relay_start(st, &to, data, len, &q, now);
}

/* ---------------------------------------------------------------- TCP */

static void conn_close(struct dns_state *st, struct dns_conn *c);

static void conn_events(struct dns_state *st, struct dns_conn *c)
{
	uint32_t ev = 0;

	if (c->wlen > c->woff)
		ev |= EPOLLOUT;
	else if (!c->busy && !c->eof)
		ev |= EPOLLIN;
	vk_epoll_mod(st->vk, c->fd, ev, &c->h);
}

static void conn_close(struct dns_state *st, struct dns_conn *c)
{
	up_close(st, &c->up);
	if (c->fd >= 0) {
		vk_epoll_del(st->vk, c->fd);
		close(c->fd);
		vk_fd_give(st->vk);
		c->fd = -1;
	}
	free(c->rbuf);
	free(c->wbuf);
	c->rbuf = c->wbuf = NULL;
	c->in_use = false;
}

/* Write what is queued; once the answer is out, its query is done (the
 * caller then runs conn_process for the next one, if it is not that). */
static void conn_flush(struct dns_state *st, struct dns_conn *c)
{
	while (c->woff < c->wlen) {
		ssize_t n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			conn_events(st, c);
			return;
		}
		if (n <= 0) {
			conn_close(st, c);
			return;
		}
		c->woff += (size_t)n;
	}
	c->wlen = c->woff = 0;
	if (c->busy) {
		c->busy = false;
		memmove(c->rbuf, c->rbuf + c->qlen, c->rlen - c->qlen);
		c->rlen -= c->qlen;
		c->qlen = 0;
	}
	c->deadline = vk_now_ns() + DNS_TCP_IDLE_NS;
	conn_events(st, c);
}

static void conn_reply(struct dns_state *st, struct dns_conn *c,
		       const uint8_t *msg, size_t len)
{
	if (len > DNS_MSG_MAX)
		return;
	store_be16(c->wbuf, (uint16_t)len);
	memmove(c->wbuf + 2, msg, len);
	c->wlen = len + 2;
	c->woff = 0;
	conn_flush(st, c);
}

/*
 * Send the query in rbuf to the next server over TCP, trying the servers
 * in turn; when none is left, answer SERVFAIL. The caller runs
 * conn_process afterwards when called from an event.
 */
static void conn_up_start(struct dns_state *st, struct dns_conn *c)
{
	c->up.q = c->rbuf + 2;
	c->up.qlen = c->qlen - 2;
	while (c->up_tries < DNS_TCP_TRIES && c->up_tries < st->rc.n) {
		unsigned i = c->up_server++ % st->rc.n;
		int err;

		c->up_tries++;
		err = up_open(st, &c->up, &st->rc.ns[i], st->rc.ns_len[i]);
		if (err == -EMFILE)
			break;
		if (err)
			continue;
		c->deadline = vk_now_ns() + DNS_TCP_TRY_NS;
		vk_timer_soon(st->vk, c->deadline);
		return;
	}
	{
		struct vk_dns_query q;
		struct dns_target to = { .tcp = true,
					 .conn = c->index,
					 .conn_gen = c->gen };

		vk_dns_query_parse(c->rbuf + 2, c->qlen - 2, &q);
		dns_answer(st, &to, c->rbuf + 2, &q, VK_DNS_SERVFAIL, false,
			   NULL, 0);
	}
}

/* The exchange with a server is over: send its answer on, or try the
 * next server; then the next query. */
static void conn_up_done(struct dns_state *st, struct dns_up *up, int err)
{
	struct dns_conn *c = container_of(up, struct dns_conn, up);

	if (err) {
		conn_up_start(st, c);
	} else {
		c->wlen = up->off;
		c->woff = 0;
		conn_flush(st, c);
	}
	conn_process(st, c);
}

/*
 * Answer the complete queries in rbuf, one at a time, until one has to
 * wait (upstream, getaddrinfo, a full socket). An answer given at once
 * is written by dns_deliver and clears busy, and the loop goes on to the
 * next query; nothing on that path calls back here, so a VM packing many
 * queries into one buffer costs iterations, not stack.
 */
static void conn_process(struct dns_state *st, struct dns_conn *c)
{
	uint32_t gen = c->gen;

	while (c->in_use && c->gen == gen && !c->busy) {
		struct dns_target to = { .tcp = true,
					 .conn = c->index,
					 .conn_gen = c->gen };
		struct vk_dns_query q;
		size_t mlen;

		if (c->rlen < 2 || c->rlen < 2 + (size_t)load_be16(c->rbuf)) {
			if (c->eof)
				conn_close(st, c);
			else
				conn_events(st, c);
			break;
		}
		mlen = load_be16(c->rbuf);
		if (mlen < VK_DNS_HDR_LEN ||
		    (load_be16(c->rbuf + 4) & VK_DNS_QR)) {
			conn_close(st, c);
			break;
		}
		c->busy = true;
		c->qlen = 2 + mlen;
		conn_events(st, c);
		if (dns_query(st, &to, c->rbuf + 2, mlen, vk_now_ns(), &q) &&
		    c->in_use && c->gen == gen) {
			c->up_tries = 0;
			c->up_server = 0;
			conn_up_start(st, c);
		}
	}
}

static void conn_event(struct vpnkit *vk, struct vk_handler *h, uint32_t events)
{
	struct dns_state *st = dns_of(vk);
	struct dns_conn *c = container_of(h, struct dns_conn, h);

	if (events & (EPOLLERR | EPOLLHUP)) {
		conn_close(st, c);
		return;
	}
	if (events & EPOLLOUT) {
		conn_flush(st, c);
		conn_process(st, c);
		return;
	}
	while (!c->busy && !c->eof && c->rlen < 2 + DNS_MSG_MAX) {
		ssize_t n = recv(c->fd, c->rbuf + c->rlen,
				 2 + DNS_MSG_MAX - c->rlen, MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n < 0) {
			conn_close(st, c);
			return;
		}
		if (n == 0)
			c->eof = true;
		c->rlen += (size_t)n;
		c->deadline = vk_now_ns() + DNS_TCP_IDLE_NS;
		if (c->rlen >= 2 && c->rlen >= 2 + (size_t)load_be16(c->rbuf))
			break;
	}
	conn_process(st, c);
}

static void listen_event(struct vpnkit *vk, struct vk_handler *h,
			 uint32_t events)
{
	struct dns_state *st = dns_of(vk);
	uint64_t now = vk_now_ns();

	(void)h;
	(void)events;
	for (int i = 0; i < 16; i++) {
		struct dns_conn *c = NULL;
		int fd = accept4(st->lfd, NULL, NULL,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
			return;
		for (unsigned k = 0; k < DNS_CONNS && !c; k++)
			if (!st->conns[k].in_use)
				c = &st->conns[k];
		if (!c || !vk_fd_take(vk)) {
			close(fd);
			vk_drop(vk, "dns: too many TCP connections");
			continue;
		}
		c->rbuf = malloc(2 + DNS_MSG_MAX);
		c->wbuf = malloc(2 + DNS_MSG_MAX);
		if (!c->rbuf || !c->wbuf ||
		    vk_epoll_add(vk, fd, EPOLLIN, &c->h) < 0) {
			free(c->rbuf);
			free(c->wbuf);
			c->rbuf = c->wbuf = NULL;
			close(fd);
			vk_fd_give(vk);
			continue;
		}
		c->fd = fd;
		c->up.ans = c->wbuf;
		c->in_use = true;
		c->busy = c->eof = false;
		c->gen++;
		c->rlen = c->wlen = c->woff = c->qlen = 0;
		c->deadline = now + DNS_TCP_IDLE_NS;
		vk_timer_soon(vk, c->deadline);
	}
}

static int listener_open(struct dns_state *st)
{
	socklen_t len = sizeof(st->laddr);
	int fd, err;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	memset(&st->laddr, 0, sizeof(st->laddr));
	st->laddr.sin_family = AF_INET;
	st->laddr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&st->laddr, sizeof(st->laddr)) < 0 ||
	    listen(fd, 64) < 0 ||
	    getsockname(fd, (struct sockaddr *)&st->laddr, &len) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	st->lh.fn = listen_event;
	err = vk_epoll_add(st->vk, fd, EPOLLIN, &st->lh);
	if (err) {
		close(fd);
		return err;
	}
	st->lfd = fd;
	return 0;
}

int vk_dns_tcp_target(struct vpnkit *vk, struct sockaddr_storage *sa,
		      socklen_t *sa_len)
{
	struct dns_state *st = dns_of(vk);

	if (!st || st->lfd < 0)
		return -ECONNREFUSED;
	memset(sa, 0, sizeof(*sa));
	memcpy(sa, &st->laddr, sizeof(st->laddr));
	*sa_len = sizeof(st->laddr);
	return 0;
}

/* ---------------------------------------------------------------- timers */

uint64_t vk_dns_tick(struct vpnkit *vk, uint64_t now)
{
	struct dns_state *st = dns_of(vk);
	uint64_t next = UINT64_MAX;

	if (!st)
		return next;
	for (uint32_t i = 0; i < DNS_PENDING && st->used; i++) {
		struct dns_slot *s = &st->slots[i];

		if (s->kind == SLOT_FREE)
			continue;
		if (now >= s->give_up && s->kind == SLOT_FALLBACK) {
			/* The server took too long over TCP. */
			up_finish(st, &st->fbs[s->fb].up, -ETIMEDOUT);
			continue;
		}
		if (now >= s->give_up) {
			struct dns_target to = s->to;

			slot_fail(st, s, VK_DNS_SERVFAIL);
			conn_kick(st, &to);
			continue;
		}
		if (now >= s->deadline && s->kind == SLOT_RELAY) {
			/* The server is slow or gone: try the next. */
			s->deadline = now + DNS_RETRY_NS;
			if (s->deadline > s->give_up)
				s->deadline = s->give_up;
			dns_resolv_refresh(st, now, false);
			if (st->rc.n == 0 || relay_send(st, s) < 0) {
				slot_fail(st, s, VK_DNS_SERVFAIL);
				continue;
			}
		}
		if (s->deadline < next)
			next = s->deadline;
	}
	for (unsigned i = 0; i < DNS_CONNS; i++) {
		struct dns_conn *c = &st->conns[i];

		if (!c->in_use)
			continue;
		if (now >= c->deadline) {
			if (c->up.state != UP_NONE)
				up_finish(st, &c->up, -ETIMEDOUT);
			else if (!c->busy)
				conn_close(st, c);
			else
				/* Waiting for getaddrinfo, whose slot
				 * has its own deadline. */
				c->deadline = now + DNS_TCP_IDLE_NS;
		}
		if (c->in_use && c->deadline < next)
			next = c->deadline;
	}
	return next;
}

/* ---------------------------------------------------------------- setup */

static void builtin_add(struct dns_state *st, const char *name,
			struct in_addr ip4, const struct in6_addr *ip6)
{
	struct dns_builtin *b;
	size_t n;

	if (!name || st->n_names >= DNS_BUILTIN_MAX)
		return;
	n = strlen(name);
	if (n > 0 && name[n - 1] == '.')
		n--;
	if (n == 0 || n > VK_DNS_TEXT_MAX)
		return;
	b = &st->names[st->n_names];
	for (size_t i = 0; i < n; i++)
		b->name[i] = (char)tolower((unsigned char)name[i]);
	b->name[n] = '\0';
	/* The first of two entries for a name wins. */
	for (unsigned i = 0; i < st->n_names; i++)
		if (strcmp(st->names[i].name, b->name) == 0)
			return;
	b->ip4 = ip4;
	if (ip6)
		b->ip6 = *ip6;
	else
		memset(&b->ip6, 0, sizeof(b->ip6));
	st->n_names++;
}

static void builtin_init(struct dns_state *st)
{
	const struct vpnkit_config *cfg = vk_config(st->vk);
	struct in6_addr host6 = cfg->prefix6, gw6 = cfg->prefix6;

	host6.s6_addr[15] = 2;
	gw6.s6_addr[15] = 1;
	/* Configured names first, so they may override ours. */
	for (unsigned i = 0; i < cfg->n_names && i < VPNKIT_MAX_NAMES; i++)
		builtin_add(st, cfg->names[i].name, cfg->names[i].ip4,
			    &cfg->names[i].ip6);
	if (cfg->host_ip.s_addr) {
		builtin_add(st, "host.docker.internal", cfg->host_ip,
			    cfg->ipv6 ? &host6 : NULL);
		builtin_add(st, "host.containers.internal", cfg->host_ip,
			    cfg->ipv6 ? &host6 : NULL);
	}
	builtin_add(st, "gateway.docker.internal", cfg->gateway,
		    cfg->ipv6 ? &gw6 : NULL);
}

int vk_dns_init(struct vpnkit *vk)
{
	const struct vpnkit_config *cfg = vk_config(vk);
	struct dns_state *st;
	int err;

	if (cfg->dns_mode == VPNKIT_DNS_OFF)
		return 0;
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	st->vk = vk;
	st->mode = cfg->dns_mode;
	st->resolv_path = cfg->resolv_conf && cfg->resolv_conf[0] ?
				  cfg->resolv_conf :
				  "/etc/resolv.conf";
	st->udp4.fd = st->udp6.fd = -1;
	st->lfd = -1;
	st->rnd_pos = sizeof(st->rnd);
	st->slots = calloc(DNS_PENDING, sizeof(*st->slots));
	st->arena = calloc(DNS_PENDING, DNS_QUERY_MAX);
	st->id_map = calloc(65536, sizeof(*st->id_map));
	st->buf = malloc(DNS_MSG_MAX);
	/* A fallback's answer and the truncated one: each as long as the
	 * longest UDP payload one frame carries. */
	st->fb_max = cfg->mtu > 28 ? cfg->mtu - 28 : 0;
	if (st->fb_max > DNS_MSG_MAX)
		st->fb_max = DNS_MSG_MAX;
	st->fb_arena = malloc(DNS_FALLBACKS * (2 + 2 * st->fb_max));
	if (!st->slots || !st->arena || !st->id_map || !st->buf ||
	    !st->fb_arena) {
		err = -ENOMEM;
		goto out_free;
	}
	for (uint32_t i = 0; i < DNS_PENDING; i++) {
		st->slots[i].msg = st->arena + (size_t)i * DNS_QUERY_MAX;
		st->slots[i].next_free = i + 1 < DNS_PENDING ? i + 1 :
							       UINT32_MAX;
	}
	st->free_head = 0;
	for (unsigned i = 0; i < DNS_CONNS; i++) {
		struct dns_conn *c = &st->conns[i];

		c->index = i;
		c->fd = -1;
		c->h.fn = conn_event;
		c->up.fd = -1;
		c->up.h.fn = up_event;
		c->up.done = conn_up_done;
		c->up.cap = 2 + DNS_MSG_MAX;
	}
	for (unsigned i = 0; i < DNS_FALLBACKS; i++) {
		struct dns_fallback *fb = &st->fbs[i];
		uint8_t *mem = st->fb_arena + i * (2 + 2 * st->fb_max);

		fb->up.fd = -1;
		fb->up.h.fn = up_event;
		fb->up.done = fallback_done;
		fb->up.ans = mem;
		fb->up.cap = 2 + st->fb_max;
		fb->tc = mem + 2 + st->fb_max;
	}
	st->fb_rl = (struct ratelimit)RATELIMIT_DEFAULT;
	builtin_init(st);
	*vk_dns_state(vk) = st;
	dns_resolv_refresh(st, vk_now_ns(), true);
	err = listener_open(st);
	if (err) {
		logger_printf(vk_log(vk), LOG_LEVEL_ERR,
			      "dns: TCP listener on 127.0.0.1: %s",
			      strerror(-err));
		goto out_release;
	}
	if (st->mode == VPNKIT_DNS_HOST) {
		err = pool_create(st);
		if (err)
			goto out_release;
	}
	return 0;

out_release:
	vk_dns_release(vk);
	return err;
out_free:
	free(st->slots);
	free(st->arena);
	free(st->id_map);
	free(st->buf);
	free(st->fb_arena);
	free(st);
	return err;
}

void vk_dns_release(struct vpnkit *vk)
{
	struct dns_state *st = dns_of(vk);

	if (!st)
		return;
	pool_release(st);
	for (unsigned i = 0; i < DNS_CONNS; i++)
		if (st->conns[i].in_use)
			conn_close(st, &st->conns[i]);
	for (unsigned i = 0; i < DNS_FALLBACKS; i++)
		up_close(st, &st->fbs[i].up);
	if (st->lfd >= 0) {
		vk_epoll_del(vk, st->lfd);
		close(st->lfd);
	}
	if (st->udp4.fd >= 0) {
		vk_epoll_del(vk, st->udp4.fd);
		close(st->udp4.fd);
	}
	if (st->udp6.fd >= 0) {
		vk_epoll_del(vk, st->udp6.fd);
		close(st->udp6.fd);
	}
	free(st->slots);
	free(st->arena);
	free(st->id_map);
	free(st->buf);
	free(st->fb_arena);
	free(st);
	*vk_dns_state(vk) = NULL;
}
