/* SPDX-License-Identifier: MIT */
/*
 * The instance: configuration, the epoll loop and its timers, the ports
 * (the switch), the identities that UUIDs keep across reconnects, the
 * descriptor budget and the counters.
 *
 * The switch does not flood. A frame from a VM goes to the gateway (us)
 * when its destination MAC is ours, broadcast or multicast; to another
 * port when it is that port's MAC (VMs reach each other as on a switch);
 * and is dropped otherwise. ARP for another VM's address is answered with
 * that VM's MAC, so VMs never need to hear each other's broadcasts.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "base/endian.h"
#include "internal.h"

const uint8_t vk_gateway_mac[VK_ETH_ALEN] = { 0x02, 0x50, 0x00,
					       0x00, 0x00, 0x01 };

/* A UUID's MAC and IP, kept while the instance lives. */
struct vk_identity {
	char uuid[37];
	uint8_t mac[VK_ETH_ALEN];
	struct in_addr ip4;
	bool attached;
};

struct vk_watch {
	struct vk_handler h;
	int fd;
	vpnkit_watch_fn *cb;
	void *opaque;
	struct vk_watch *next;
};

struct vpnkit {
	struct vpnkit_config cfg;
	char *strings[3]; /* copies of resolv_conf, domain, search */
	char *name_strings[VPNKIT_MAX_NAMES];
	char *pcap_path;
	struct logger log;
	struct ratelimit bad_rl;
	int epfd;
	struct vk_watch *watches;
	struct vk_port *ports;
	uint32_t next_port_id;
	struct vk_identity *ids;
	size_t n_ids, cap_ids;
	struct in6_addr gw6, gw6_ll;
	struct vpnkit_stats stats;
	unsigned fds;
	/* flow.c */
	struct vk_flow *flows;
	uint32_t *hash;
	uint32_t hash_mask;
	uint32_t free_head;
	/* module state */
	void *dns, *ndp, *icmp, *dhcp, *fwd, *pcap, *tcp, *udp;
	uint64_t next_tick;
	bool in_dispatch; /* inside vpnkit_run_once's event batch */
};

/* flow.c's part of the instance. */
int vk_flow_table_init(struct vpnkit *vk, struct vk_flow **flows,
		       uint32_t **hash, uint32_t *mask, uint32_t *free_head);

/* ---------------------------------------------------------------- config */

void vpnkit_config_init(struct vpnkit_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	inet_pton(AF_INET, "192.168.65.0", &cfg->subnet);
	cfg->prefix_len = 24;
	inet_pton(AF_INET, "192.168.65.1", &cfg->gateway);
	inet_pton(AF_INET, "192.168.65.2", &cfg->host_ip);
	inet_pton(AF_INET, "192.168.65.3", &cfg->pool_first);
	inet_pton(AF_INET, "192.168.65.254", &cfg->pool_last);
	cfg->ipv6 = true;
	inet_pton(AF_INET6, "fd00:6e6b:7600:1::", &cfg->prefix6);
	cfg->mtu = 1500;
	cfg->dns_mode = VPNKIT_DNS_FORWARD;
	cfg->resolv_conf = "/etc/resolv.conf";
	cfg->max_flows = 8192;
	cfg->max_fds = 4096;
	cfg->tcp_idle_s = 7200;
	cfg->udp_idle_s = 60;
	cfg->icmp_idle_s = 30;
	cfg->lease_s = 7200;
}

static uint32_t v4(struct in_addr a)
{
	return ntohl(a.s_addr);
}

static int config_check(const struct vpnkit_config *c, struct logger *lg)
{
	uint32_t mask, net;

	if (c->prefix_len < 8 || c->prefix_len > 30) {
		logger_printf(lg, LOG_LEVEL_ERR, "subnet prefix /%u: want 8..30",
			      c->prefix_len);
		return -EINVAL;
	}
	mask = ~0u << (32 - c->prefix_len);
	net = v4(c->subnet) & mask;
	if (net != v4(c->subnet)) {
		logger_printf(lg, LOG_LEVEL_ERR, "subnet has host bits set");
		return -EINVAL;
	}
	if ((v4(c->gateway) & mask) != net ||
	    (c->host_ip.s_addr && (v4(c->host_ip) & mask) != net) ||
	    (v4(c->pool_first) & mask) != net ||
	    (v4(c->pool_last) & mask) != net ||
	    v4(c->pool_first) > v4(c->pool_last)) {
		logger_printf(lg, LOG_LEVEL_ERR,
			      "gateway, host address and pool must be inside the subnet, pool first <= last");
		return -EINVAL;
	}
	if (c->mtu < VK_MTU_MIN || c->mtu > VK_MTU_MAX) {
		logger_printf(lg, LOG_LEVEL_ERR, "MTU %u: want %u..%u", c->mtu,
			      VK_MTU_MIN, VK_MTU_MAX);
		return -EINVAL;
	}
	if (c->max_flows < 1 || c->max_flows > (1u << 20) || c->max_fds < 1) {
		logger_printf(lg, LOG_LEVEL_ERR, "flow and fd limits must be >= 1 (flows <= 1M)");
		return -EINVAL;
	}
	if (c->n_names > VPNKIT_MAX_NAMES) {
		logger_printf(lg, LOG_LEVEL_ERR, "too many names");
		return -EINVAL;
	}
	return 0;
}

static char *dup_or_null(const char *s, int *err)
{
	char *d;

	if (!s)
		return NULL;
	d = strdup(s);
	if (!d)
		*err = -ENOMEM;
	return d;
}

int vpnkit_new(const struct vpnkit_config *cfg, struct vpnkit **out)
{
	struct vpnkit *vk;
	int err = 0;
	unsigned i;

	*out = NULL;
	err = config_check(cfg, (struct logger *)&cfg->log);
	if (err)
		return err;
	vk = calloc(1, sizeof(*vk));
	if (!vk)
		return -ENOMEM;
	vk->cfg = *cfg;
	vk->log = cfg->log;
	vk->cfg.log = vk->log;
	vk->bad_rl = (struct ratelimit)RATELIMIT_DEFAULT;
	vk->epfd = -1;
	vk->next_port_id = 1;
	vk->strings[0] = dup_or_null(cfg->resolv_conf, &err);
	vk->strings[1] = dup_or_null(cfg->domain, &err);
	vk->strings[2] = dup_or_null(cfg->search, &err);
	vk->cfg.resolv_conf = vk->strings[0];
	vk->cfg.domain = vk->strings[1];
	vk->cfg.search = vk->strings[2];
	for (i = 0; i < cfg->n_names; i++) {
		vk->name_strings[i] = dup_or_null(cfg->names[i].name, &err);
		vk->cfg.names[i].name = vk->name_strings[i];
	}
	vk->pcap_path = dup_or_null(cfg->pcap_path, &err);
	vk->cfg.pcap_path = vk->pcap_path;
	if (err)
		goto out_free;

	vk->gw6 = cfg->prefix6;
	vk->gw6.s6_addr[15] = 1;
	inet_pton(AF_INET6, "fe80::1", &vk->gw6_ll);

	vk->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (vk->epfd < 0) {
		err = -errno;
		goto out_free;
	}
	err = vk_flow_table_init(vk, &vk->flows, &vk->hash, &vk->hash_mask,
				 &vk->free_head);
	if (err)
		goto out_free;
	err = vk_tcp_init(vk);
	if (!err)
		err = vk_udp_init(vk);
	if (err)
		goto out_free;
	if (vk->cfg.pcap_path) {
		err = vk_pcap_open(vk, vk->cfg.pcap_path);
		if (err) {
			logger_printf(&vk->log, LOG_LEVEL_ERR,
				      "capture file %s: %s", vk->cfg.pcap_path,
				      strerror(-err));
			goto out_free;
		}
	}
	if (vk->cfg.dns_mode != VPNKIT_DNS_OFF) {
		err = vk_dns_init(vk);
		if (err) {
			logger_printf(&vk->log, LOG_LEVEL_ERR,
				      "DNS at the gateway: %s", strerror(-err));
			goto out_free;
		}
	}
	*out = vk;
	return 0;

out_free:
	vpnkit_free(vk);
	return err;
}

static void free_flow_cb(struct vpnkit *vk, struct vk_flow *f, void *arg)
{
	(void)arg;
	vk_flow_free(vk, f);
}

void vpnkit_free(struct vpnkit *vk)
{
	struct vk_watch *w;
	unsigned i;

	if (!vk)
		return;
	while (vk->ports)
		vpnkit_port_free((struct vpnkit_port *)vk->ports);
	vk_fwd_release(vk);
	if (vk->flows)
		vk_flow_foreach(vk, free_flow_cb, NULL);
	vk_dns_release(vk);
	vk_tcp_release(vk);
	vk_udp_release(vk);
	vk_pcap_close(vk);
	while ((w = vk->watches)) {
		vk->watches = w->next;
		free(w);
	}
	if (vk->epfd >= 0)
		close(vk->epfd);
	free(vk->flows);
	free(vk->hash);
	free(vk->ids);
	free(vk->ndp);
	free(vk->icmp);
	free(vk->dhcp);
	for (i = 0; i < 3; i++)
		free(vk->strings[i]);
	for (i = 0; i < VPNKIT_MAX_NAMES; i++)
		free(vk->name_strings[i]);
	free(vk->pcap_path);
	free(vk);
}

/* ---------------------------------------------------------------- accessors */

const struct vpnkit_config *vk_config(const struct vpnkit *vk)
{
	return &vk->cfg;
}

struct logger *vk_log(struct vpnkit *vk)
{
	return &vk->log;
}

const struct in6_addr *vk_gateway6(const struct vpnkit *vk)
{
	return &vk->gw6;
}

const struct in6_addr *vk_gateway6_ll(const struct vpnkit *vk)
{
	return &vk->gw6_ll;
}

void **vk_dns_state(struct vpnkit *vk)
{
	return &vk->dns;
}

void **vk_ndp_state(struct vpnkit *vk)
{
	return &vk->ndp;
}

void **vk_icmp_state(struct vpnkit *vk)
{
	return &vk->icmp;
}

void **vk_dhcp_state(struct vpnkit *vk)
{
	return &vk->dhcp;
}

void **vk_fwd_state(struct vpnkit *vk)
{
	return &vk->fwd;
}

void **vk_udp_state(struct vpnkit *vk)
{
	return &vk->udp;
}

void **vk_tcp_state(struct vpnkit *vk)
{
	return &vk->tcp;
}

void **vk_pcap_state(struct vpnkit *vk)
{
	return &vk->pcap;
}

struct vpnkit_stats *vk_stats(struct vpnkit *vk)
{
	return &vk->stats;
}

void vk_drop_bad(struct vpnkit *vk, const char *why)
{
	vk->stats.dropped++;
	vk->stats.bad++;
	logger_printf_limited(&vk->log, &vk->bad_rl, LOG_LEVEL_DEBUG,
			      "dropped a malformed frame: %s", why);
}

void vk_drop(struct vpnkit *vk, const char *why)
{
	vk->stats.dropped++;
	if (logger_enabled(&vk->log, LOG_LEVEL_TRACE))
		logger_printf(&vk->log, LOG_LEVEL_TRACE, "dropped: %s", why);
}

void vpnkit_stats_get(const struct vpnkit *vk, struct vpnkit_stats *out)
{
	const struct vk_port *p;

	*out = vk->stats;
	out->ports = 0;
	for (p = vk->ports; p; p = p->next)
		out->ports++;
	out->fds = vk->fds;
}

bool vk_fd_take(struct vpnkit *vk)
{
	if (vk->fds >= vk->cfg.max_fds) {
		vk->stats.refused++;
		return false;
	}
	vk->fds++;
	return true;
}

void vk_fd_give(struct vpnkit *vk)
{
	if (vk->fds)
		vk->fds--;
}

/* ---------------------------------------------------------------- loop */

uint64_t vk_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int vk_epoll_add(struct vpnkit *vk, int fd, uint32_t events,
		 struct vk_handler *h)
{
	struct epoll_event ev = { .events = events, .data.ptr = h };

	if (epoll_ctl(vk->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	return 0;
}

int vk_epoll_mod(struct vpnkit *vk, int fd, uint32_t events,
		 struct vk_handler *h)
{
	struct epoll_event ev = { .events = events, .data.ptr = h };

	if (epoll_ctl(vk->epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
		return -errno;
	return 0;
}

void vk_epoll_del(struct vpnkit *vk, int fd)
{
	epoll_ctl(vk->epfd, EPOLL_CTL_DEL, fd, NULL);
}

int vpnkit_fd(const struct vpnkit *vk)
{
	return vk->epfd;
}

static void watch_event(struct vpnkit *vk, struct vk_handler *h,
			uint32_t events)
{
	struct vk_watch *w = (struct vk_watch *)h;

	(void)vk;
	w->cb(w->opaque, events);
}

int vpnkit_watch(struct vpnkit *vk, int fd, uint32_t events,
		 vpnkit_watch_fn *cb, void *opaque)
{
	struct vk_watch *w = calloc(1, sizeof(*w));
	int err;

	if (!w)
		return -ENOMEM;
	w->h.fn = watch_event;
	w->fd = fd;
	w->cb = cb;
	w->opaque = opaque;
	err = vk_epoll_add(vk, fd, events, &w->h);
	if (err) {
		free(w);
		return err;
	}
	w->next = vk->watches;
	vk->watches = w;
	return 0;
}

static struct vk_watch **watch_find(struct vpnkit *vk, int fd)
{
	struct vk_watch **pp;

	for (pp = &vk->watches; *pp; pp = &(*pp)->next)
		if ((*pp)->fd == fd)
			return pp;
	return NULL;
}

int vpnkit_watch_mod(struct vpnkit *vk, int fd, uint32_t events)
{
	struct vk_watch **pp = watch_find(vk, fd);

	if (!pp)
		return -ENOENT;
	return vk_epoll_mod(vk, fd, events, &(*pp)->h);
}

/*
 * A watch removed while its events are being dispatched must not be
 * freed under the dispatcher: removed watches are parked with a no-op
 * handler and freed after the batch.
 */
static void watch_dead(struct vpnkit *vk, struct vk_handler *h, uint32_t ev)
{
	(void)vk;
	(void)h;
	(void)ev;
}

void vpnkit_unwatch(struct vpnkit *vk, int fd)
{
	struct vk_watch **pp = watch_find(vk, fd);
	struct vk_watch *w;

	if (!pp)
		return;
	w = *pp;
	vk_epoll_del(vk, fd);
	w->fd = -1;
	w->h.fn = watch_dead;
	/* Keep it on the list under fd -1 until the next batch ends. */
}

static void watch_reap(struct vpnkit *vk)
{
	struct vk_watch **pp = &vk->watches, *w;

	while ((w = *pp)) {
		if (w->fd < 0) {
			*pp = w->next;
			free(w);
		} else {
			pp = &w->next;
		}
	}
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static uint64_t run_timers(struct vpnkit *vk, uint64_t now)
{
	uint64_t next = UINT64_MAX;

	next = min_u64(next, vk_tcp_tick(vk, now));
	next = min_u64(next, vk_udp_tick(vk, now));
	next = min_u64(next, vk_icmp_tick(vk, now));
	if (vk->cfg.dns_mode != VPNKIT_DNS_OFF)
		next = min_u64(next, vk_dns_tick(vk, now));
	if (vk->cfg.ipv6)
		next = min_u64(next, vk_ndp_tick(vk, now));
	return next;
}

static void flush_ports(struct vpnkit *vk);

/*
 * The end of a batch of input: the work protocols put off so that one
 * ACK or one sendmmsg serves many frames.
 */
static void batch_end(struct vpnkit *vk)
{
	vk_udp_flush(vk);
	vk_tcp_deferred(vk);
}

static void flush_ports(struct vpnkit *vk)
{
	struct vk_port *p;

	for (p = vk->ports; p; p = p->next) {
		if (p->dirty && p->ops->flush && !p->broken)
			p->ops->flush(p->opaque);
		p->dirty = false;
	}
}

int vpnkit_run_once(struct vpnkit *vk, int timeout_ms)
{
	struct epoll_event evs[64];
	uint64_t now = vk_now_ns();
	int n, i, wait_ms = timeout_ms;

	if (now >= vk->next_tick)
		vk->next_tick = run_timers(vk, now);
	flush_ports(vk);
	if (vk->next_tick != UINT64_MAX) {
		uint64_t left = vk->next_tick > now ? vk->next_tick - now : 0;
		int ms = (int)min_u64((left + 999999) / 1000000, 60000);

		if (wait_ms < 0 || ms < wait_ms)
			wait_ms = ms;
	}
	n = epoll_wait(vk->epfd, evs, 64, wait_ms);
	if (n < 0)
		return -errno;
	vk->in_dispatch = true;
	for (i = 0; i < n; i++) {
		struct vk_handler *h = evs[i].data.ptr;

		h->fn(vk, h, evs[i].events);
	}
	watch_reap(vk);
	vk->in_dispatch = false;
	batch_end(vk);
	now = vk_now_ns();
	if (now >= vk->next_tick)
		vk->next_tick = run_timers(vk, now);
	flush_ports(vk);
	return 0;
}

void vk_timer_soon(struct vpnkit *vk, uint64_t when)
{
	if (when < vk->next_tick)
		vk->next_tick = when;
}

/* ---------------------------------------------------------------- addresses */

bool vk_addr_is_gateway(const struct vpnkit *vk, const struct in6_addr *a)
{
	if (vk_addr_is_v4(a))
		return vk_addr_v4(a).s_addr == vk->cfg.gateway.s_addr;
	return vk->cfg.ipv6 && (IN6_ARE_ADDR_EQUAL(a, &vk->gw6) ||
				IN6_ARE_ADDR_EQUAL(a, &vk->gw6_ll));
}

bool vk_addr_is_host(const struct vpnkit *vk, const struct in6_addr *a)
{
	struct in6_addr h;

	if (vk_addr_is_v4(a))
		return vk->cfg.host_ip.s_addr &&
		       vk_addr_v4(a).s_addr == vk->cfg.host_ip.s_addr;
	if (!vk->cfg.ipv6 || !vk->cfg.host_ip.s_addr)
		return false;
	h = vk->cfg.prefix6;
	h.s6_addr[15] = 2;
	return IN6_ARE_ADDR_EQUAL(a, &h);
}

bool vk_addr_is_local(const struct vpnkit *vk, const struct in6_addr *a)
{
	if (vk_addr_is_v4(a)) {
		uint32_t mask = ~0u << (32 - vk->cfg.prefix_len);

		return (v4(vk_addr_v4(a)) & mask) == v4(vk->cfg.subnet);
	}
	if (IN6_IS_ADDR_LINKLOCAL(a))
		return true;
	return vk->cfg.ipv6 && memcmp(a, &vk->cfg.prefix6, 8) == 0;
}

int vk_addr_to_host(const struct vpnkit *vk, const struct in6_addr *dst,
		    uint16_t port, struct sockaddr_storage *sa,
		    socklen_t *sa_len)
{
	memset(sa, 0, sizeof(*sa));
	if (vk_addr_is_v4(dst)) {
		struct sockaddr_in *sin = (struct sockaddr_in *)sa;
		struct in_addr a = vk_addr_v4(dst);
		uint32_t h = v4(a);

		/* Only the host address reaches the host's loopback; 0/8,
		 * 127/8, multicast and reserved space are refused. */
		if (vk_addr_is_host(vk, dst)) {
			a.s_addr = htonl(INADDR_LOOPBACK);
		} else if (vk_addr_is_local(vk, dst) || (h >> 24) == 0 ||
			   (h >> 24) == 127 || (h >> 28) == 0xe ||
			   (h >> 28) == 0xf) {
			return -EHOSTUNREACH;
		}
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		sin->sin_addr = a;
		*sa_len = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)sa;
		struct in6_addr a = *dst;

		if (vk_addr_is_host(vk, dst))
			a = in6addr_loopback;
		else if (vk_addr_is_local(vk, dst) ||
			 IN6_IS_ADDR_MULTICAST(dst) ||
			 IN6_IS_ADDR_UNSPECIFIED(dst) ||
			 IN6_IS_ADDR_LOOPBACK(dst))
			return -EHOSTUNREACH;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		sin6->sin6_addr = a;
		*sa_len = sizeof(*sin6);
	}
	return 0;
}

void vk_addr_from_host(const struct vpnkit *vk, const struct sockaddr *sa,
		       struct in6_addr *a, uint16_t *port)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
		struct in_addr v = sin->sin_addr;

		if ((v4(v) >> 24) == 127 && vk->cfg.host_ip.s_addr)
			v = vk->cfg.host_ip;
		vk_addr_from_v4(a, v);
		*port = ntohs(sin->sin_port);
	} else {
		const struct sockaddr_in6 *sin6 =
			(const struct sockaddr_in6 *)sa;

		*a = sin6->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a)) {
			struct in_addr v = vk_addr_v4(a);

			if ((v4(v) >> 24) == 127 && vk->cfg.host_ip.s_addr)
				vk_addr_from_v4(a, vk->cfg.host_ip);
		} else if (IN6_IS_ADDR_LOOPBACK(a)) {
			*a = vk->cfg.prefix6;
			a->s6_addr[15] = 2;
		}
		*port = ntohs(sin6->sin6_port);
	}
}

/* ---------------------------------------------------------------- ports */

static bool uuid_valid(const char *u)
{
	size_t i;

	if (strlen(u) != 36)
		return false;
	for (i = 0; i < 36; i++) {
		char c = u[i];

		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return false;
		} else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
			     (c >= 'A' && c <= 'F'))) {
			return false;
		}
	}
	return true;
}

static void uuid_random(char out[37])
{
	uint8_t b[16];
	size_t i, o = 0;

	if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
		uint64_t t = vk_now_ns();

		for (i = 0; i < 16; i++)
			b[i] = (uint8_t)(t >> ((i % 8) * 8)) ^ (uint8_t)i;
	}
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	for (i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		o += (size_t)snprintf(out + o, 3, "%02x", b[i]);
	}
	out[36] = 0;
}

/* A MAC derived from the UUID: locally administered, unicast, stable. */
static void mac_from_uuid(const char *uuid, uint8_t mac[6])
{
	uint64_t h = 1469598103934665603ull;
	const char *p;

	for (p = uuid; *p; p++) {
		char c = *p;

		if (c >= 'A' && c <= 'F')
			c = (char)(c - 'A' + 'a');
		h = (h ^ (uint8_t)c) * 1099511628211ull;
	}
	mac[0] = 0x02;
	mac[1] = 0x50;
	mac[2] = (uint8_t)(h >> 24);
	mac[3] = (uint8_t)(h >> 16);
	mac[4] = (uint8_t)(h >> 8);
	mac[5] = (uint8_t)h;
	if (mac[2] == 0 && mac[3] == 0 && mac[4] == 0)
		mac[4] = 1; /* never the gateway's 02:50:00:00:00:01 */
}

static struct vk_identity *id_find_uuid(struct vpnkit *vk, const char *uuid)
{
	size_t i;

	for (i = 0; i < vk->n_ids; i++)
		if (strcasecmp(vk->ids[i].uuid, uuid) == 0)
			return &vk->ids[i];
	return NULL;
}

static struct vk_identity *id_find_ip(struct vpnkit *vk, struct in_addr ip)
{
	size_t i;

	for (i = 0; i < vk->n_ids; i++)
		if (vk->ids[i].ip4.s_addr == ip.s_addr)
			return &vk->ids[i];
	return NULL;
}

static bool ip_reserved(const struct vpnkit *vk, struct in_addr ip)
{
	return ip.s_addr == vk->cfg.gateway.s_addr ||
	       ip.s_addr == vk->cfg.host_ip.s_addr;
}

static int id_pick_ip(struct vpnkit *vk, struct in_addr pref,
		      struct in_addr *out)
{
	uint32_t a;

	if (pref.s_addr) {
		if (v4(pref) < v4(vk->cfg.pool_first) ||
		    v4(pref) > v4(vk->cfg.pool_last) || ip_reserved(vk, pref))
			return -ERANGE;
		if (id_find_ip(vk, pref))
			return -EADDRINUSE;
		*out = pref;
		return 0;
	}
	for (a = v4(vk->cfg.pool_first); a <= v4(vk->cfg.pool_last); a++) {
		struct in_addr ip = { .s_addr = htonl(a) };

		if (ip_reserved(vk, ip) || id_find_ip(vk, ip))
			continue;
		*out = ip;
		return 0;
	}
	/* The pool is full of identities: reuse one nobody has attached. */
	for (size_t i = 0; i < vk->n_ids; i++) {
		if (!vk->ids[i].attached) {
			*out = vk->ids[i].ip4;
			vk->ids[i] = vk->ids[--vk->n_ids];
			return 0;
		}
	}
	return -ENOSPC;
}

int vpnkit_port_new(struct vpnkit *vk, const struct vpnkit_port_config *cfg,
		    const struct vpnkit_port_ops *ops, void *opaque,
		    struct vpnkit_port **out)
{
	struct vk_identity *id = NULL;
	struct vk_port *p;
	char uuid[37];
	int err;

	*out = NULL;
	if (!ops || !ops->send)
		return -EINVAL;
	if (cfg && cfg->uuid && cfg->uuid[0]) {
		if (!uuid_valid(cfg->uuid))
			return -EINVAL;
		memcpy(uuid, cfg->uuid, 37);
		id = id_find_uuid(vk, uuid);
	} else {
		uuid_random(uuid);
	}
	if (id) {
		if (id->attached)
			return -EBUSY;
		if (cfg && cfg->preferred_ip.s_addr &&
		    cfg->preferred_ip.s_addr != id->ip4.s_addr)
			return -EADDRINUSE;
	} else {
		struct in_addr ip;
		struct vk_identity *ids;

		err = id_pick_ip(vk, cfg ? cfg->preferred_ip :
					   (struct in_addr){ 0 },
				 &ip);
		if (err)
			return err;
		if (vk->n_ids == vk->cap_ids) {
			size_t cap = vk->cap_ids ? vk->cap_ids * 2 : 16;

			ids = realloc(vk->ids, cap * sizeof(*ids));
			if (!ids)
				return -ENOMEM;
			vk->ids = ids;
			vk->cap_ids = cap;
		}
		id = &vk->ids[vk->n_ids++];
		memset(id, 0, sizeof(*id));
		memcpy(id->uuid, uuid, 37);
		mac_from_uuid(uuid, id->mac);
		id->ip4 = ip;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	id->attached = true;
	p->vk = vk;
	p->ops = ops;
	p->opaque = opaque;
	p->flags = cfg ? cfg->flags : 0;
	p->id = vk->next_port_id++;
	memcpy(p->mac, id->mac, 6);
	p->ip4 = id->ip4;
	memcpy(p->uuid, id->uuid, 37);
	p->next = vk->ports;
	vk->ports = p;
	if (vk->cfg.ipv6)
		vk_ndp_port_up(vk, p);
	logger_printf(&vk->log, LOG_LEVEL_INFO,
		      "port %" PRIu32 " up: uuid %s mac %02x:%02x:%02x:%02x:%02x:%02x ip %s",
		      p->id, p->uuid, p->mac[0], p->mac[1], p->mac[2],
		      p->mac[3], p->mac[4], p->mac[5], inet_ntoa(p->ip4));
	*out = (struct vpnkit_port *)p;
	return 0;
}

static void free_port_flow(struct vpnkit *vk, struct vk_flow *f, void *arg)
{
	if (f->port == arg)
		vk_flow_free(vk, f);
}

void vpnkit_port_free(struct vpnkit_port *vp)
{
	struct vk_port *port = (struct vk_port *)vp, **pp;
	struct vk_identity *id;
	struct vpnkit *vk;

	if (!port)
		return;
	vk = port->vk;
	vk_flow_foreach(vk, free_port_flow, port);
	for (pp = &vk->ports; *pp; pp = &(*pp)->next) {
		if (*pp == port) {
			*pp = port->next;
			break;
		}
	}
	id = id_find_uuid(vk, port->uuid);
	if (id)
		id->attached = false;
	logger_printf(&vk->log, LOG_LEVEL_INFO, "port %" PRIu32 " down",
		      port->id);
	free(port);
}

void vpnkit_port_mac(const struct vpnkit_port *vp, uint8_t mac[6])
{
	const struct vk_port *port = (const struct vk_port *)vp;

	memcpy(mac, port->mac, 6);
}

struct in_addr vpnkit_port_ip(const struct vpnkit_port *vp)
{
	return ((const struct vk_port *)vp)->ip4;
}

const char *vpnkit_port_uuid(const struct vpnkit_port *vp)
{
	return ((const struct vk_port *)vp)->uuid;
}

struct vk_port *vk_port_by_id(struct vpnkit *vk, uint32_t id)
{
	struct vk_port *p;

	for (p = vk->ports; p; p = p->next)
		if (p->id == id)
			return p;
	return NULL;
}

struct vk_port *vk_port_by_addr(struct vpnkit *vk, const struct in6_addr *a)
{
	struct vk_port *p;

	for (p = vk->ports; p; p = p->next) {
		if (vk_addr_is_v4(a)) {
			if (vk_addr_v4(a).s_addr == p->ip4.s_addr)
				return p;
		} else if (IN6_ARE_ADDR_EQUAL(a, &p->ip6) ||
			   IN6_ARE_ADDR_EQUAL(a, &p->ip6_ll)) {
			if (!IN6_IS_ADDR_UNSPECIFIED(a))
				return p;
		}
	}
	return NULL;
}

static struct vk_port *port_by_mac(struct vpnkit *vk, const uint8_t *mac)
{
	struct vk_port *p;

	for (p = vk->ports; p; p = p->next)
		if (memcmp(p->mac, mac, 6) == 0)
			return p;
	return NULL;
}

void vk_eth_header(const struct vk_port *port, uint16_t ethertype,
		   uint8_t hdr[VK_ETH_HLEN])
{
	memcpy(hdr, port->mac, 6);
	memcpy(hdr + 6, vk_gateway_mac, 6);
	store_be16(hdr + 12, ethertype);
}

int vk_port_send(struct vk_port *port, const struct vpnkit_offload *off,
		 const struct iovec *iov, int iovcnt)
{
	struct vpnkit *vk = port->vk;
	size_t len = 0;
	int i, err;

	if (port->broken)
		return -EPIPE;
	if (port->blocked)
		return -EAGAIN;
	if (!(port->flags & VPNKIT_PORT_OFFLOAD))
		off = NULL;
	for (i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	err = port->ops->send(port->opaque, off, iov, iovcnt);
	if (err == -EAGAIN) {
		port->blocked = true;
		return err;
	}
	if (err) {
		port->broken = true;
		logger_printf(&vk->log, LOG_LEVEL_WARN,
			      "port %" PRIu32 ": link failed: %s", port->id,
			      strerror(-err));
		return err;
	}
	port->dirty = true;
	vk->stats.frames_out++;
	vk->stats.bytes_out += len;
	if (vk->pcap)
		vk_pcap_frame(vk, iov, iovcnt);
	return 0;
}

void vpnkit_port_resume(struct vpnkit_port *vp)
{
	struct vk_port *port = (struct vk_port *)vp;

	if (!port->blocked)
		return;
	port->blocked = false;
	vk_tcp_port_resume(port->vk, port);
}

/* Deliver a frame to the port that owns its destination MAC. */
static void switch_frame(struct vk_port *to, const struct vpnkit_offload *off,
			 const uint8_t *frame, size_t len)
{
	struct iovec iov = { .iov_base = (void *)frame, .iov_len = len };

	if (off && !(to->flags & VPNKIT_PORT_OFFLOAD) &&
	    (off->gso_type != VPNKIT_GSO_NONE ||
	     (off->flags & VPNKIT_OFFLOAD_NEEDS_CSUM))) {
		/* Segmenting for a link without offloads is not done. */
		vk_drop(to->vk, "offloaded frame for a port without offloads");
		return;
	}
	if (vk_port_send(to, off, &iov, 1))
		vk_drop(to->vk, "peer link full");
}

int vpnkit_port_input(struct vpnkit_port *vp, const struct vpnkit_offload *off,
		      const void *data, size_t len)
{
	struct vk_port *port = (struct vk_port *)vp, *to;
	struct vpnkit *vk = port->vk;
	const uint8_t *frame = data;
	uint16_t type;

	if (port->broken)
		return -EPIPE;
	vk->stats.frames_in++;
	vk->stats.bytes_in += len;
	if (vk->pcap) {
		struct iovec iov = { .iov_base = (void *)data, .iov_len = len };

		vk_pcap_frame(vk, &iov, 1);
	}
	if (len < VK_ETH_HLEN || len > VK_FRAME_MAX) {
		vk_drop_bad(vk, "frame length");
		return 0;
	}
	if (frame[6] & 1) {
		vk_drop_bad(vk, "multicast source MAC");
		return 0;
	}
	/* Learn the VM's MAC (a TAP's side has its own). */
	if (memcmp(frame + 6, port->mac, 6) != 0) {
		if (memcmp(frame + 6, vk_gateway_mac, 6) == 0 ||
		    port_by_mac(vk, frame + 6)) {
			vk_drop_bad(vk, "spoofed source MAC");
			return 0;
		}
		memcpy(port->mac, frame + 6, 6);
	}
	if (!(frame[0] & 1) && memcmp(frame, vk_gateway_mac, 6) != 0) {
		to = port_by_mac(vk, frame);
		if (to && to != port)
			switch_frame(to, off, frame, len);
		else
			vk_drop(vk, "unknown destination MAC");
		return 0;
	}
	type = load_be16(frame + 12);
	switch (type) {
	case VK_ETHERTYPE_ARP:
		vk_arp_input(port, frame, len);
		break;
	case VK_ETHERTYPE_IP:
	case VK_ETHERTYPE_IPV6:
		vk_ip_input(port, off, frame, len);
		break;
	default:
		vk_drop(vk, "ethertype");
		break;
	}
	/* Called from the embedder's own loop rather than from one of our
	 * events: this frame is a batch of its own. */
	if (!vk->in_dispatch) {
		batch_end(vk);
		flush_ports(vk);
	}
	return 0;
}

void vk_flow_table(struct vpnkit *vk, struct vk_flow **flows, uint32_t **hash,
		   uint32_t *mask, uint32_t **free_head);
void vk_flow_table(struct vpnkit *vk, struct vk_flow **flows, uint32_t **hash,
		   uint32_t *mask, uint32_t **free_head)
{
	*flows = vk->flows;
	*hash = vk->hash;
	*mask = vk->hash_mask;
	*free_head = &vk->free_head;
}
