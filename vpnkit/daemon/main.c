// SPDX-License-Identifier: MIT
/*
 * vpnkit: the daemon that puts VMs and network namespaces on a libvpnkit
 * switch. It reads its options into a struct vpnkit_config, creates the
 * instance, opens the transports the options ask for (daemon.h lists
 * them), writes the pid file once everything listens, and runs the
 * instance's loop until SIGINT or SIGTERM, after which it closes every
 * port and socket, removes the socket files and the pid file, and exits
 * 0. Bad options exit 2 with a message; failures to set up exit 1.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"

#define MAX_LISTEN 8
#define MAX_FORWARDS 64
#define DEFAULT_MAX_CONNS 256
#define DEFAULT_HANDSHAKE_TIMEOUT_S 10

struct options {
	const char *listen[MAX_LISTEN];
	unsigned n_listen;
	const char *dgram[MAX_LISTEN];
	unsigned n_dgram;
	const char *seqpacket[MAX_LISTEN];
	unsigned n_seqpacket;
	const char *tap;
	const char *netns;
	const char *control;
	struct vpnkit_forward forwards[MAX_FORWARDS];
	unsigned n_forwards;
	const char *host_names[VPNKIT_MAX_NAMES];
	unsigned n_host_names;
	const char *pidfile;
	unsigned handshake_timeout_s;
	int verbosity; /* 0: info; -1: errors only */
	/* which addresses were given (others follow the subnet) */
	bool gateway_set, host_set, pool_set;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: vpnkit [options]\n"
		"A user-space Ethernet switch for VMs and network namespaces: each TCP,\n"
		"UDP or ICMP flow of theirs becomes an ordinary socket of this process.\n"
		"\n"
		"Links (any number of VMs may attach; each is a port with its own MAC and IP):\n"
		"  --listen PATH            Unix stream listener; the framing is recognised per\n"
		"                           connection from its first byte: 'V' (0x56) is\n"
		"                           hyperkit's VMN3T handshake then u16 LE frames, 0x00 is\n"
		"                           QEMU -netdev stream framing (u32 BE length per frame)\n"
		"  --listen-dgram PATH      Unix datagram socket, one frame per datagram (vfkit);\n"
		"                           each sender address is a VM of its own\n"
		"  --listen-seqpacket PATH  Unix seqpacket listener, one frame per message\n"
		"                           (UML/BESS)\n"
		"  --tap NAME [--netns PATH]  a TAP device (created if missing) with offloads,\n"
		"                           in the network namespace at PATH if given\n"
		"  --control PATH           JSON-lines control socket: add, remove and list port\n"
		"                           forwards, read stats\n"
		"  (the stream, seqpacket and control options may be repeated)\n"
		"\n"
		"Network (defaults as Docker Desktop's):\n"
		"  --subnet A.B.C.D/N       the VMs' subnet (192.168.65.0/24); the gateway,\n"
		"                           host and pool follow it unless given\n"
		"  --gateway-ip IP          the gateway: ARP, DHCP, DNS (.1)\n"
		"  --host-ip IP|none        the address that reaches the host's loopback (.2)\n"
		"  --pool FIRST-LAST        DHCP pool (.3-.254)\n"
		"  --no-ipv6                no IPv6 (router advertisements, SLAAC)\n"
		"  --ipv6-prefix P::        the /64 announced to the VMs (fd00:6e6b:7600:1::)\n"
		"  --mtu N                  576..65520 (1500); hyperkit links announce mtu+50,\n"
		"                           at most 65535, as their largest frame\n"
		"  --forward SPEC           a port forward from the host into a VM,\n"
		"                           tcp|udp:HOSTIP:PORT:GUESTIP:PORT (IPv6 in brackets);\n"
		"                           may be repeated\n"
		"\n"
		"DNS at the gateway:\n"
		"  --dns forward|host|off   relay to resolv.conf's servers (forward), answer\n"
		"                           through the host's resolver (host), or none\n"
		"  --resolv-conf PATH       (/etc/resolv.conf)\n"
		"  --domain D               DHCP domain name\n"
		"  --search \"a b\"           DHCP domain search list\n"
		"  --host-name NAME         a name for the host IP (may be repeated);\n"
		"                           host.docker.internal and friends are built in\n"
		"  --name NAME=IP           a name for an IPv4 or IPv6 address (may be repeated)\n"
		"\n"
		"Limits:\n"
		"  --max-flows N            TCP, UDP and ICMP flows at once (8192)\n"
		"  --max-fds N              host sockets at once (4096)\n"
		"  --tcp-idle S             seconds before an idle TCP flow is closed (7200)\n"
		"  --udp-idle S             the same for UDP (60)\n"
		"  --handshake-timeout S    seconds a --listen peer has to finish hyperkit's\n"
		"                           handshake once begun, or be disconnected; a peer\n"
		"                           silent that long (QEMU waits for its guest) gives\n"
		"                           up its slot to a newcomer when all are taken (10)\n"
		"  (at most 256 stream and seqpacket connections at once)\n"
		"\n"
		"Diagnostics:\n"
		"  --pcap FILE              record every frame to and from the VMs\n"
		"  --pidfile FILE           written once every socket listens\n"
		"  -v, --verbose            more messages (repeat for more)\n"
		"  -q, --quiet              errors only\n"
		"  -h, --help               this text\n"
		"\n"
		"SIGINT or SIGTERM stop the daemon: it closes its sockets, removes their\n"
		"files and the pid file, and exits 0. Bad options exit 2.\n");
}

static void __attribute__((noreturn, format(printf, 1, 2)))
bad_usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, DAEMON_NAME ": ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see " DAEMON_NAME " --help)\n");
	exit(2);
}

static unsigned parse_uint(const char *opt, const char *s, unsigned min,
			   unsigned max)
{
	unsigned long v;
	char *end;

	errno = 0;
	if (*s < '0' || *s > '9')
		bad_usage("%s: '%s' is not a number", opt, s);
	v = strtoul(s, &end, 10);
	if (errno || *end != '\0' || v < min || v > max)
		bad_usage("%s: '%s' is not a number from %u to %u", opt, s, min,
			  max);
	return (unsigned)v;
}

static struct in_addr parse_ip4(const char *opt, const char *s)
{
	struct in_addr a;

	if (inet_pton(AF_INET, s, &a) != 1)
		bad_usage("%s: '%s' is not an IPv4 address", opt, s);
	return a;
}

static void parse_subnet(struct vpnkit_config *cfg, const char *s)
{
	char buf[INET_ADDRSTRLEN + 4];
	char *slash;
	uint32_t mask;

	if (strlen(s) >= sizeof(buf))
		bad_usage("--subnet: '%s' is not A.B.C.D/N", s);
	snprintf(buf, sizeof(buf), "%s", s);
	slash = strchr(buf, '/');
	if (!slash)
		bad_usage("--subnet: '%s' is not A.B.C.D/N", s);
	*slash = '\0';
	cfg->subnet = parse_ip4("--subnet", buf);
	cfg->prefix_len = parse_uint("--subnet prefix", slash + 1, 8, 30);
	mask = ~0u << (32 - cfg->prefix_len);
	if (ntohl(cfg->subnet.s_addr) & ~mask)
		bad_usage("--subnet: '%s' has host bits set", s);
}

static void parse_pool(struct vpnkit_config *cfg, const char *s)
{
	char buf[2 * INET_ADDRSTRLEN + 2];
	char *dash;

	if (strlen(s) >= sizeof(buf) || !(dash = strchr(s, '-')))
		bad_usage("--pool: '%s' is not FIRST-LAST", s);
	snprintf(buf, sizeof(buf), "%s", s);
	dash = buf + (dash - s);
	*dash = '\0';
	cfg->pool_first = parse_ip4("--pool", buf);
	cfg->pool_last = parse_ip4("--pool", dash + 1);
	if (ntohl(cfg->pool_first.s_addr) > ntohl(cfg->pool_last.s_addr))
		bad_usage("--pool: '%s' ends before it starts", s);
}

static void parse_prefix6(struct vpnkit_config *cfg, const char *s)
{
	char buf[INET6_ADDRSTRLEN + 4];
	char *slash;

	if (strlen(s) >= sizeof(buf))
		bad_usage("--ipv6-prefix: '%s' is not an IPv6 /64 prefix", s);
	snprintf(buf, sizeof(buf), "%s", s);
	slash = strchr(buf, '/');
	if (slash) {
		if (strcmp(slash, "/64") != 0)
			bad_usage("--ipv6-prefix: only /64 prefixes (SLAAC)");
		*slash = '\0';
	}
	if (inet_pton(AF_INET6, buf, &cfg->prefix6) != 1)
		bad_usage("--ipv6-prefix: '%s' is not an IPv6 address", s);
	for (int i = 8; i < 16; i++) {
		if (cfg->prefix6.s6_addr[i])
			bad_usage("--ipv6-prefix: '%s' has bits past /64", s);
	}
}

static struct vpnkit_name *name_slot(struct vpnkit_config *cfg,
				     const char *name)
{
	for (unsigned i = 0; i < cfg->n_names; i++) {
		if (strcasecmp(cfg->names[i].name, name) == 0)
			return &cfg->names[i];
	}
	if (cfg->n_names == VPNKIT_MAX_NAMES)
		bad_usage("at most %d names", VPNKIT_MAX_NAMES);
	cfg->names[cfg->n_names].name = name;
	return &cfg->names[cfg->n_names++];
}

static bool name_valid(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = name[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' ||
		      ch == '_'))
			return false;
	}
	return true;
}

/* --name NAME=IP: NAME gets an A or AAAA record. arg is kept. */
static void parse_name(struct vpnkit_config *cfg, char *arg)
{
	char *eq = strchr(arg, '=');
	struct vpnkit_name *n;
	struct in_addr a4;
	struct in6_addr a6;

	if (!eq)
		bad_usage("--name: '%s' is not NAME=IP", arg);
	*eq = '\0';
	if (!name_valid(arg))
		bad_usage("--name: '%s' is not a host name", arg);
	n = name_slot(cfg, arg);
	if (inet_pton(AF_INET, eq + 1, &a4) == 1)
		n->ip4 = a4;
	else if (inet_pton(AF_INET6, eq + 1, &a6) == 1)
		n->ip6 = a6;
	else
		bad_usage("--name: '%s' is not an IPv4 or IPv6 address",
			  eq + 1);
}

/* The addresses not given on the command line follow the subnet. */
static void derive_addresses(struct vpnkit_config *cfg, const struct options *o)
{
	uint32_t net = ntohl(cfg->subnet.s_addr);
	uint32_t bcast = net | ~(~0u << (32 - cfg->prefix_len));

	if (!o->gateway_set)
		cfg->gateway.s_addr = htonl(net + 1);
	if (!o->host_set)
		cfg->host_ip.s_addr = htonl(net + 2);
	if (!o->pool_set) {
		cfg->pool_first.s_addr = htonl(net + 3);
		cfg->pool_last.s_addr = htonl(bcast - 1);
	}
}

/* --host-name NAMEs resolve to the host IP (and prefix::2 with IPv6). */
static void add_host_names(struct vpnkit_config *cfg, const struct options *o)
{
	for (unsigned i = 0; i < o->n_host_names; i++) {
		struct vpnkit_name *n;

		if (!cfg->host_ip.s_addr)
			bad_usage(
				"--host-name %s needs a host IP (not --host-ip none)",
				o->host_names[i]);
		n = name_slot(cfg, o->host_names[i]);
		n->ip4 = cfg->host_ip;
		if (cfg->ipv6) {
			n->ip6 = cfg->prefix6;
			n->ip6.s6_addr[15] = 2;
		}
	}
}

enum {
	OPT_LISTEN = 256,
	OPT_DGRAM,
	OPT_SEQPACKET,
	OPT_TAP,
	OPT_NETNS,
	OPT_CONTROL,
	OPT_FORWARD,
	OPT_SUBNET,
	OPT_GATEWAY,
	OPT_HOST_IP,
	OPT_POOL,
	OPT_NO_IPV6,
	OPT_PREFIX6,
	OPT_MTU,
	OPT_DNS,
	OPT_RESOLV,
	OPT_DOMAIN,
	OPT_SEARCH,
	OPT_HOST_NAME,
	OPT_NAME,
	OPT_MAX_FLOWS,
	OPT_MAX_FDS,
	OPT_TCP_IDLE,
	OPT_UDP_IDLE,
	OPT_HANDSHAKE_TIMEOUT,
	OPT_PCAP,
	OPT_PIDFILE,
};

static const struct option long_options[] = {
	{ "listen", required_argument, NULL, OPT_LISTEN },
	{ "listen-dgram", required_argument, NULL, OPT_DGRAM },
	{ "listen-seqpacket", required_argument, NULL, OPT_SEQPACKET },
	{ "tap", required_argument, NULL, OPT_TAP },
	{ "netns", required_argument, NULL, OPT_NETNS },
	{ "control", required_argument, NULL, OPT_CONTROL },
	{ "forward", required_argument, NULL, OPT_FORWARD },
	{ "subnet", required_argument, NULL, OPT_SUBNET },
	{ "gateway-ip", required_argument, NULL, OPT_GATEWAY },
	{ "host-ip", required_argument, NULL, OPT_HOST_IP },
	{ "pool", required_argument, NULL, OPT_POOL },
	{ "no-ipv6", no_argument, NULL, OPT_NO_IPV6 },
	{ "ipv6-prefix", required_argument, NULL, OPT_PREFIX6 },
	{ "mtu", required_argument, NULL, OPT_MTU },
	{ "dns", required_argument, NULL, OPT_DNS },
	{ "resolv-conf", required_argument, NULL, OPT_RESOLV },
	{ "domain", required_argument, NULL, OPT_DOMAIN },
	{ "search", required_argument, NULL, OPT_SEARCH },
	{ "host-name", required_argument, NULL, OPT_HOST_NAME },
	{ "name", required_argument, NULL, OPT_NAME },
	{ "max-flows", required_argument, NULL, OPT_MAX_FLOWS },
	{ "max-fds", required_argument, NULL, OPT_MAX_FDS },
	{ "tcp-idle", required_argument, NULL, OPT_TCP_IDLE },
	{ "udp-idle", required_argument, NULL, OPT_UDP_IDLE },
	{ "handshake-timeout", required_argument, NULL, OPT_HANDSHAKE_TIMEOUT },
	{ "pcap", required_argument, NULL, OPT_PCAP },
	{ "pidfile", required_argument, NULL, OPT_PIDFILE },
	{ "verbose", no_argument, NULL, 'v' },
	{ "quiet", no_argument, NULL, 'q' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static void add_path(const char **list, unsigned *n, const char *opt,
		     const char *path)
{
	if (*n == MAX_LISTEN)
		bad_usage("%s: at most %d", opt, MAX_LISTEN);
	if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path) ||
	    path[0] == '\0')
		bad_usage("%s: '%s' is empty or too long for a socket path",
			  opt, path);
	list[(*n)++] = path;
}

static void parse_options(int argc, char **argv, struct options *o,
			  struct vpnkit_config *cfg)
{
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":vqh", long_options, NULL)) !=
	       -1) {
		switch (c) {
		case OPT_LISTEN:
			add_path(o->listen, &o->n_listen, "--listen", optarg);
			break;
		case OPT_DGRAM:
			add_path(o->dgram, &o->n_dgram, "--listen-dgram",
				 optarg);
			break;
		case OPT_SEQPACKET:
			add_path(o->seqpacket, &o->n_seqpacket,
				 "--listen-seqpacket", optarg);
			break;
		case OPT_TAP:
			if (o->tap)
				bad_usage("--tap: one TAP device per daemon");
			o->tap = optarg;
			break;
		case OPT_NETNS:
			o->netns = optarg;
			break;
		case OPT_CONTROL:
			if (o->control)
				bad_usage("--control: one control socket");
			o->control = optarg;
			break;
		case OPT_FORWARD:
			if (o->n_forwards == MAX_FORWARDS)
				bad_usage("--forward: at most %d",
					  MAX_FORWARDS);
			if (vpnkit_forward_parse(
				    optarg, &o->forwards[o->n_forwards]) < 0)
				bad_usage(
					"--forward: '%s' is not tcp|udp:HOSTIP:PORT:GUESTIP:PORT",
					optarg);
			o->n_forwards++;
			break;
		case OPT_SUBNET:
			parse_subnet(cfg, optarg);
			break;
		case OPT_GATEWAY:
			cfg->gateway = parse_ip4("--gateway-ip", optarg);
			o->gateway_set = true;
			break;
		case OPT_HOST_IP:
			if (strcmp(optarg, "none") == 0)
				cfg->host_ip.s_addr = 0;
			else
				cfg->host_ip = parse_ip4("--host-ip", optarg);
			o->host_set = true;
			break;
		case OPT_POOL:
			parse_pool(cfg, optarg);
			o->pool_set = true;
			break;
		case OPT_NO_IPV6:
			cfg->ipv6 = false;
			break;
		case OPT_PREFIX6:
			parse_prefix6(cfg, optarg);
			break;
		case OPT_MTU:
			cfg->mtu = parse_uint("--mtu", optarg, 576, 65520);
			break;
		case OPT_DNS:
			if (strcmp(optarg, "forward") == 0)
				cfg->dns_mode = VPNKIT_DNS_FORWARD;
			else if (strcmp(optarg, "host") == 0)
				cfg->dns_mode = VPNKIT_DNS_HOST;
			else if (strcmp(optarg, "off") == 0)
				cfg->dns_mode = VPNKIT_DNS_OFF;
			else
				bad_usage(
					"--dns: '%s' is not forward, host or off",
					optarg);
			break;
		case OPT_RESOLV:
			cfg->resolv_conf = optarg;
			break;
		case OPT_DOMAIN:
			if (!name_valid(optarg))
				bad_usage("--domain: '%s' is not a domain name",
					  optarg);
			cfg->domain = optarg;
			break;
		case OPT_SEARCH:
			cfg->search = optarg;
			break;
		case OPT_HOST_NAME:
			if (!name_valid(optarg))
				bad_usage(
					"--host-name: '%s' is not a host name",
					optarg);
			if (o->n_host_names == VPNKIT_MAX_NAMES)
				bad_usage("--host-name: at most %d",
					  VPNKIT_MAX_NAMES);
			o->host_names[o->n_host_names++] = optarg;
			break;
		case OPT_NAME:
			parse_name(cfg, optarg);
			break;
		case OPT_MAX_FLOWS:
			cfg->max_flows =
				parse_uint("--max-flows", optarg, 1, 1u << 20);
			break;
		case OPT_MAX_FDS:
			cfg->max_fds =
				parse_uint("--max-fds", optarg, 1, 1u << 20);
			break;
		case OPT_TCP_IDLE:
			cfg->tcp_idle_s = parse_uint("--tcp-idle", optarg, 1,
						     UINT_MAX / 1000);
			break;
		case OPT_UDP_IDLE:
			cfg->udp_idle_s = parse_uint("--udp-idle", optarg, 1,
						     UINT_MAX / 1000);
			break;
		case OPT_HANDSHAKE_TIMEOUT:
			o->handshake_timeout_s = parse_uint(
				"--handshake-timeout", optarg, 1, 3600);
			break;
		case OPT_PCAP:
			cfg->pcap_path = optarg;
			break;
		case OPT_PIDFILE:
			o->pidfile = optarg;
			break;
		case 'v':
			o->verbosity++;
			break;
		case 'q':
			o->verbosity = -1;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case ':':
			bad_usage("option '%s' needs a value",
				  argv[optind - 1]);
		default:
			if (optopt)
				bad_usage("unknown option '-%c'", optopt);
			bad_usage("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		bad_usage("unexpected argument '%s'", argv[optind]);
	if (o->netns && !o->tap)
		bad_usage("--netns goes with --tap");
	if (!o->n_listen && !o->n_dgram && !o->n_seqpacket && !o->tap &&
	    !o->control)
		bad_usage(
			"nothing to do: give --listen, --listen-dgram, --listen-seqpacket, --tap or --control");
}

/* ---------------------------------------------------------------- helpers */

void daemon_peer_log(struct daemon *d, enum log_level level, const char *fmt,
		     ...)
{
	char msg[512];
	unsigned missed;
	va_list ap;

	if (!logger_enabled(&d->log, level))
		return;
	if (!ratelimit_allow(&d->peer_rl, &missed))
		return;
	if (missed)
		logger_printf(&d->log, LOG_LEVEL_WARN,
			      "%u messages about peers suppressed", missed);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	logger_printf(&d->log, level, "%s", msg);
}

uint64_t daemon_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int write_pidfile(const char *path)
{
	char tmp[PATH_MAX];
	FILE *f;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	f = fopen(tmp, "we");
	if (!f)
		return -errno;
	fprintf(f, "%ld\n", (long)getpid());
	if (fclose(f) != 0 || rename(tmp, path) < 0) {
		int r = -errno;

		unlink(tmp);
		return r;
	}
	return 0;
}

static void signal_event(void *opaque, uint32_t events)
{
	struct daemon *d = opaque;
	struct signalfd_siginfo si;

	(void)events;
	while (read(d->signal_fd, &si, sizeof(si)) == sizeof(si)) {
		logger_printf(&d->log, LOG_LEVEL_INFO, "%s: stopping",
			      strsignal((int)si.ssi_signo));
		d->stop = true;
	}
}

static void close_all(struct daemon *d)
{
	control_close_all(d);
	stream_close_all(d);
	msg_close_all(d);
	tap_close_all(d);
}

static int open_transports(struct daemon *d, const struct options *o)
{
	const char *what = NULL, *where = NULL;
	int r = 0;

	for (unsigned i = 0; i < o->n_listen && r == 0; i++) {
		what = "--listen";
		where = o->listen[i];
		r = stream_listen(d, where);
	}
	for (unsigned i = 0; i < o->n_dgram && r == 0; i++) {
		what = "--listen-dgram";
		where = o->dgram[i];
		r = msg_dgram_open(d, where);
	}
	for (unsigned i = 0; i < o->n_seqpacket && r == 0; i++) {
		what = "--listen-seqpacket";
		where = o->seqpacket[i];
		r = msg_seqpacket_listen(d, where);
	}
	if (o->tap && r == 0) {
		what = "--tap";
		where = o->tap;
		r = tap_link_open(d, o->tap, o->netns);
	}
	if (o->control && r == 0) {
		what = "--control";
		where = o->control;
		r = control_listen(d, where);
	}
	if (r < 0)
		logger_printf(&d->log, LOG_LEVEL_ERR, "%s %s: %s", what, where,
			      strerror(-r));
	return r;
}

int main(int argc, char **argv)
{
	struct options o = { .handshake_timeout_s =
				     DEFAULT_HANDSHAKE_TIMEOUT_S };
	struct vpnkit_config cfg;
	struct daemon d = { 0 };
	sigset_t mask;
	bool pid_written = false;
	int r, status = 1;

	vpnkit_config_init(&cfg);
	parse_options(argc, argv, &o, &cfg);
	derive_addresses(&cfg, &o);
	add_host_names(&cfg, &o);

	d.log.fn = log_to_stderr;
	d.log.opaque = (void *)DAEMON_NAME;
	d.log.level = o.verbosity < 0  ? LOG_LEVEL_ERR :
		      o.verbosity == 0 ? LOG_LEVEL_INFO :
		      o.verbosity == 1 ? LOG_LEVEL_DEBUG :
					 LOG_LEVEL_TRACE;
	d.peer_rl = (struct ratelimit)RATELIMIT_DEFAULT;
	d.mtu = cfg.mtu;
	d.max_conns = DEFAULT_MAX_CONNS;
	d.handshake_timeout_s = o.handshake_timeout_s;
	cfg.log = d.log;

	/* Block the stop signals before any thread starts, so that only
	 * the signalfd sees them; a vanished peer must not kill us. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);

	r = vpnkit_new(&cfg, &d.vk);
	if (r == -EINVAL) {
		fprintf(stderr, DAEMON_NAME
			": the network options do not fit together (see the message above)\n");
		return 2;
	}
	if (r < 0) {
		fprintf(stderr, DAEMON_NAME ": cannot start: %s\n",
			strerror(-r));
		return 1;
	}
	d.signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (d.signal_fd < 0 ||
	    vpnkit_watch(d.vk, d.signal_fd, EPOLLIN, signal_event, &d) < 0) {
		logger_printf(&d.log, LOG_LEVEL_ERR, "signalfd: %s",
			      strerror(errno));
		goto out;
	}
	for (unsigned i = 0; i < o.n_forwards; i++) {
		char text[128];

		vpnkit_forward_format(&o.forwards[i], text, sizeof(text));
		r = vpnkit_forward_add(d.vk, &o.forwards[i]);
		if (r < 0) {
			logger_printf(&d.log, LOG_LEVEL_ERR, "--forward %s: %s",
				      text, strerror(-r));
			goto out;
		}
	}
	if (open_transports(&d, &o) < 0)
		goto out;
	if (o.pidfile) {
		r = write_pidfile(o.pidfile);
		if (r < 0) {
			logger_printf(&d.log, LOG_LEVEL_ERR, "--pidfile %s: %s",
				      o.pidfile, strerror(-r));
			goto out;
		}
		pid_written = true;
	}
	while (!d.stop) {
		r = vpnkit_run_once(d.vk, -1);
		if (r < 0 && r != -EINTR) {
			logger_printf(&d.log, LOG_LEVEL_ERR, "loop: %s",
				      strerror(-r));
			goto out;
		}
	}
	status = 0;
out:
	close_all(&d);
	if (d.signal_fd >= 0) {
		vpnkit_unwatch(d.vk, d.signal_fd);
		close(d.signal_fd);
	}
	vpnkit_free(d.vk);
	if (pid_written)
		unlink(o.pidfile);
	return status;
}
