#!/bin/bash
# SPDX-License-Identifier: MIT
#
# vpnkit_bench.sh: vpnkit's TAP mode side by side with pasta, slirp4netns
# and a plain veth pair.
#
# Each network under test gives a fresh network namespace a way out to the
# host: a veth pair (the kernel alone, the ceiling no user-space stack can
# beat), pasta (`pasta --config-net`, Debian's passt package), slirp4netns
# and ours (`vpnkit --tap tap0 --netns NS`, the namespace leased by busybox
# udhcpc). From inside the namespace the script measures, against servers
# on the host:
#
#   tcp ns->host MTU     iperf3 TCP for BENCH_SECONDS, client in the namespace
#   tcp host->ns MTU     the same with iperf3 -R: the host sends
#   tcp conn/s           sequential short connections (connect, one byte
#                        each way, the server closes) for BENCH_SECONDS
#   udp rtt              UDP echo ping-pong, median round trip in µs
#
# at MTU 1500 and 65520 for the iperf3 rows, MTU 1500 for the others. The
# host side is 127.0.0.1, which the namespace reaches as the gateway 10.0.2.2
# (pasta, slirp4netns), 192.168.65.2 (ours); the veth pair uses 198.18.0.1
# (the benchmarking range of RFC 2544). Nothing leaves loopback and the
# namespaces the script makes; it removes them, and every process it
# started, on exit.
#
# It prints one table: each network's median over --reps runs, ours over
# the best peer (pasta or slirp4netns; a ratio above 1 is better, except
# for latency) and ours over veth. Targets: ours/best peer >= 1.5 on the
# four iperf3 rows, ours/veth >= 0.5 on the two MTU 65520 rows, ours/best
# peer >= 1.0 on conn/s; a row that misses one is marked. A network whose
# program is not installed shows n/a; a run that fails shows ERR. The exit
# status is 0 whatever the numbers (a measurement, not a test); 1 on a
# usage or setup error.
#
# Usage: bench/vpnkit_bench.sh [--quick] [--reps N] [--peers LIST]
#                              [--tsv FILE] [--verbose] [--keep]
# Needs root, iproute2, iperf3, python3 and a C compiler (the conn/s and
# UDP client and server are a small C program built in the scratch
# directory); busybox for ours; pasta (passt) and slirp4netns for theirs.
# Environment: BENCH_SECONDS (10), VPNKIT (default build/bin/vpnkit),
# PASTA, SLIRP4NETNS, CC.
# See bench/README.md.

set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
vpnkit=${VPNKIT:-$root/build/bin/vpnkit}
pasta=${PASTA:-pasta}
slirp=${SLIRP4NETNS:-slirp4netns}
secs=${BENCH_SECONDS:-10}

reps=1
peers_all="veth pasta slirp4netns ours"
peers=$peers_all
tsv=
verbose=0
keep=0
udp_count=2000

usage() {
	cat <<EOF
Usage: bench/vpnkit_bench.sh [--quick] [--reps N] [--peers LIST]
                             [--tsv FILE] [--verbose] [--keep]
  --quick       2-second runs and 300 UDP pings: a smoke test of a minute
  --reps N      runs per (row, network); the median is shown (default 1)
  --peers LIST  comma-separated subset of: ${peers_all// /,}
  --tsv FILE    also write the table as tab-separated values to FILE
  --verbose     print every run's result as it is measured
  --keep        keep the scratch directory (logs of every program)
Environment: BENCH_SECONDS (seconds per iperf3 and conn/s run, default 10),
VPNKIT (default build/bin/vpnkit), PASTA (pasta), SLIRP4NETNS (slirp4netns).
EOF
	exit "${1:-1}"
}

while [ $# -gt 0 ]; do
	case $1 in
	--quick) secs=2; udp_count=300 ;;
	--reps) reps=${2:?--reps needs a number}; shift ;;
	--peers) peers=${2:?--peers needs a list}; peers=${peers//,/ }; shift ;;
	--tsv) tsv=${2:?--tsv needs a file}; shift ;;
	--verbose) verbose=1 ;;
	--keep) keep=1 ;;
	-h|--help) usage 0 ;;
	*) echo "vpnkit_bench.sh: unknown argument $1" >&2; usage 1 ;;
	esac
	shift
done

die() {
	echo "vpnkit_bench.sh: $*" >&2
	exit 1
}

note() {
	echo "vpnkit_bench.sh: $*" >&2
}

[[ $reps =~ ^[1-9][0-9]*$ ]] || die "--reps needs a positive number"
[[ $secs =~ ^[1-9][0-9]*$ ]] || die "BENCH_SECONDS needs a positive number"
for p in $peers; do
	[[ " $peers_all " == *" $p "* ]] || die "unknown network $p (known: $peers_all)"
done
[ "$(id -u)" = 0 ] || die "needs root (it makes network namespaces)"
cc=${CC:-cc}
for cmd in ip iperf3 python3 ss timeout "$cc"; do
	command -v "$cmd" >/dev/null || die "$cmd not found"
done
# The interpreter itself, not a version manager's shim in front of it.
python=$(python3 -c 'import sys; print(sys.executable)')

# have PEER: true if the program behind PEER is there.
have() {
	case $1 in
	veth) return 0 ;;
	pasta) command -v "$pasta" >/dev/null ;;
	slirp4netns) command -v "$slirp" >/dev/null ;;
	ours) [ -x "$vpnkit" ] && command -v busybox >/dev/null ;;
	esac
}

work=$(mktemp -d "${TMPDIR:-/tmp}/vpnkit-bench.XXXXXX")
tag=vkb$$			# prefix of every namespace and interface we make
namespaces=()			# namespaces to delete on exit
pids=()				# processes to stop on exit

cleanup() {
	local pid ns
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for ns in "${namespaces[@]}"; do
		# Whatever still runs inside a namespace of ours is ours too.
		for pid in $(ip netns pids "$ns" 2>/dev/null); do
			kill "$pid" 2>/dev/null || true
		done
		ip netns del "$ns" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	if [ "$keep" = 1 ]; then
		echo "vpnkit_bench.sh: logs kept in $work" >&2
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the client and server programs ---------------------------------------

# The conn/s and UDP rows' client and server, in C so that their own cost
# (a Python loop doubles the time of a connection on loopback) hides as
# little as possible of the networks' differences. The same program runs
# on every network.
cat >"$work/nettool.c" <<'EOF'
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void set_timeout(int fd, long ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = ms % 1000 * 1000 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Accept, read a byte, answer a byte, close first. */
static int conn_server(const struct sockaddr_in *a)
{
	int one = 1, ls = socket(AF_INET, SOCK_STREAM, 0);
	char c;

	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(ls, (const void *)a, sizeof(*a)) || listen(ls, 4096)) {
		perror("conn-server");
		return 1;
	}
	for (;;) {
		int fd = accept(ls, NULL, NULL);

		if (fd < 0)
			continue;
		set_timeout(fd, 2000);
		if (read(fd, &c, 1) == 1 && write(fd, "y", 1) != 1)
			perror("conn-server: write");
		close(fd);
	}
}

/* Connections one after another for SECONDS; prints "per-second failed". */
static int conn_client(const struct sockaddr_in *a, double secs)
{
	uint64_t start = now_ns(), end = start + (uint64_t)(secs * 1e9), t;
	unsigned long ok = 0, failed = 0;
	char c;

	while ((t = now_ns()) < end) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);

		set_timeout(fd, 2000);
		if (connect(fd, (const void *)a, sizeof(*a)) == 0 && write(fd, "x", 1) == 1 &&
		    read(fd, &c, 1) == 1 && c == 'y' && read(fd, &c, 1) == 0)
			ok++;
		else
			failed++;
		close(fd);
	}
	printf("%.0f %lu\n", ok / ((t - start) / 1e9), failed);
	return 0;
}

static int udp_server(const struct sockaddr_in *a)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in from;
	socklen_t len;
	char buf[2048];
	ssize_t n;

	if (bind(fd, (const void *)a, sizeof(*a))) {
		perror("udp-server");
		return 1;
	}
	for (;;) {
		len = sizeof(from);
		n = recvfrom(fd, buf, sizeof(buf), 0, (void *)&from, &len);
		if (n >= 0)
			sendto(fd, buf, (size_t)n, 0, (void *)&from, len);
	}
}

/* COUNT pings of 64 bytes after 50 to warm up; prints "median-us lost". */
static int udp_client(const struct sockaddr_in *a, unsigned count)
{
	uint64_t *rtt = calloc(count, sizeof(*rtt)), seq, got;
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	unsigned n = 0, lost = 0;
	char msg[64] = { 0 }, buf[2048];

	if (!rtt || connect(fd, (const void *)a, sizeof(*a))) {
		perror("udp-client");
		return 1;
	}
	set_timeout(fd, 500);
	for (seq = 0; seq < count + 50u; seq++) {
		uint64_t t0 = now_ns();

		memcpy(msg, &seq, sizeof(seq));
		if (send(fd, msg, sizeof(msg), 0) != (ssize_t)sizeof(msg)) {
			lost++;
			continue;
		}
		got = UINT64_MAX;
		do {	/* skip late answers to pings given up on */
			if (recv(fd, buf, sizeof(buf), 0) < (ssize_t)sizeof(seq))
				break;
			memcpy(&got, buf, sizeof(got));
		} while (got != seq);
		if (got != seq)
			lost++;
		else if (seq >= 50)
			rtt[n++] = now_ns() - t0;
	}
	if (n < count / 2) {
		fprintf(stderr, "udp-client: %u of %u pings lost\n", lost, count + 50);
		return 1;
	}
	qsort(rtt, n, sizeof(*rtt), cmp_u64);
	printf("%.1f %u\n", (n % 2 ? rtt[n / 2] : (rtt[n / 2 - 1] + rtt[n / 2]) / 2) / 1e3, lost);
	return 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET };

	if (argc < 4 || inet_pton(AF_INET, argv[2], &a.sin_addr) != 1) {
		fprintf(stderr, "usage: nettool MODE ADDR PORT [SECONDS|COUNT]\n");
		return 2;
	}
	a.sin_port = htons((uint16_t)atoi(argv[3]));
	if (!strcmp(argv[1], "conn-server"))
		return conn_server(&a);
	if (!strcmp(argv[1], "udp-server"))
		return udp_server(&a);
	if (argc < 5)
		return 2;
	if (!strcmp(argv[1], "conn-client"))
		return conn_client(&a, atof(argv[4]));
	if (!strcmp(argv[1], "udp-client"))
		return udp_client(&a, (unsigned)atoi(argv[4]));
	return 2;
}
EOF
"$cc" -O2 -Wall -Wextra -o "$work/nettool" "$work/nettool.c" || die "cannot build the test client"

# iperf3's JSON report -> "Gbps retransmits", and free ports.
cat >"$work/helper.py" <<'EOF'
import json, socket, sys

def iperf_gbps():
    doc = json.load(sys.stdin)
    if "error" in doc:
        sys.exit(doc["error"])
    print("%.2f %d" % (doc["end"]["sum_received"]["bits_per_second"] / 1e9,
                       doc["end"]["sum_sent"].get("retransmits", 0)))

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])

{"iperf-gbps": iperf_gbps, "free-port": free_port}[sys.argv[1]](*sys.argv[2:])
EOF

cat >"$work/udhcpc.sh" <<'EOF'
#!/bin/sh
# busybox udhcpc's event script: apply the lease with iproute2.
case $1 in
deconfig)
	ip -4 addr flush dev "$interface"
	ip link set "$interface" up
	;;
bound|renew)
	ip -4 addr flush dev "$interface"
	ip addr add "$ip/${mask:-24}" dev "$interface"
	if [ -n "$router" ]; then
		ip route replace default via "${router%% *}" dev "$interface"
	fi
	;;
esac
exit 0
EOF
chmod +x "$work/udhcpc.sh"

# Ports for the host's servers: ephemeral ones nobody holds right now.
iperf_port=$("$python" "$work/helper.py" free-port)
conn_port=$("$python" "$work/helper.py" free-port)
udp_port=$("$python" "$work/helper.py" free-port)

# wait_for SECONDS COMMAND...: poll COMMAND every 0.1 s until it succeeds.
wait_for() {
	local tries=$(($1 * 10))
	shift
	while ! "$@" >/dev/null 2>&1; do
		tries=$((tries - 1))
		[ "$tries" -gt 0 ] || return 1
		sleep 0.1
	done
}

listening() {	# PROTO ADDR PORT
	[ -n "$(ss -Hln"${1:0:1}" "src $2:$3" 2>/dev/null)" ]
}

has_default_route() {	# NS
	[ -n "$(ip -n "$1" -4 route show default 2>/dev/null)" ]
}

# --- one network up and down ----------------------------------------------

# net_up PEER MTU: make namespace $ns, connect it through PEER with MTU,
# and start the host's servers on $bind. Sets ns, target (the host as the
# namespace sees it), bind. Returns non-zero, with a reason in $work/why,
# if the network does not come up.
net_up() {
	local peer=$1 mtu=$2 log=$work/$1-$2.log
	ns=$tag-$peer
	ip netns add "$ns"
	namespaces+=("$ns")
	ip -n "$ns" link set lo up
	# Short connections from the namespace must not run out of ports.
	ip netns exec "$ns" sysctl -qw net.ipv4.ip_local_port_range="1024 65000"
	bind=127.0.0.1
	case $peer in
	veth)
		if [ -n "$(ip -4 route show 198.18.0.0/24)" ]; then
			echo "198.18.0.0/24 is in use on this host" >"$work/why"
			return 1
		fi
		ip link add "$tag" mtu "$mtu" type veth peer name tap0 mtu "$mtu" netns "$ns"
		ip addr add 198.18.0.1/24 dev "$tag"
		ip link set "$tag" up
		ip -n "$ns" addr add 198.18.0.2/24 dev tap0
		ip -n "$ns" link set tap0 up
		ip -n "$ns" route add default via 198.18.0.1
		target=198.18.0.1 bind=198.18.0.1
		;;
	pasta)
		# As root pasta would switch to nobody, which may not enter a
		# namespace root made: --runas 0. No automatic port forwards,
		# so nothing takes its splice bypass.
		"$pasta" --config-net --netns "$ns" -I tap0 -m "$mtu" \
			-a 10.0.2.100 -n 24 -g 10.0.2.2 -t none -u none -T none -U none \
			--runas 0 -q -P "$work/pasta.pid" -l "$log" >"$log.out" 2>&1 ||
			{ echo "pasta failed to start" >"$work/why"; return 1; }
		pids+=("$(cat "$work/pasta.pid")")
		target=10.0.2.2
		;;
	slirp4netns)
		"$slirp" --configure --mtu="$mtu" --netns-type=path \
			"/run/netns/$ns" tap0 >"$log" 2>&1 &
		pids+=($!)
		target=10.0.2.2
		;;
	ours)
		rm -f "$work/vpnkit.pid"
		"$vpnkit" --tap tap0 --netns "/run/netns/$ns" --mtu "$mtu" \
			--pidfile "$work/vpnkit.pid" >"$log" 2>&1 &
		pids+=($!)
		# The daemon writes its pid file once its TAP is up.
		if ! wait_for 10 test -s "$work/vpnkit.pid" ||
		   ! ip -n "$ns" link show tap0 >/dev/null; then
			echo "vpnkit did not start: $(tail -n 3 "$log")" >"$work/why"
			return 1
		fi
		ip -n "$ns" link set tap0 mtu "$mtu" up
		if ! timeout 20 ip netns exec "$ns" busybox udhcpc -i tap0 -q -n -f \
			-t 5 -T 1 -s "$work/udhcpc.sh" >>"$work/udhcpc.log" 2>&1; then
			note "ours: no DHCP lease at MTU $mtu; configuring 192.168.65.3 statically"
			ip -n "$ns" addr add 192.168.65.3/24 dev tap0
			ip -n "$ns" route add default via 192.168.65.1
		fi
		target=192.168.65.2
		;;
	esac
	if ! wait_for 10 has_default_route "$ns"; then
		echo "$peer: no default route in the namespace" >"$work/why"
		return 1
	fi
	iperf3 -s -B "$bind" -p "$iperf_port" >>"$work/iperf3-server.log" 2>&1 &
	pids+=($!)
	"$work/nettool" conn-server "$bind" "$conn_port" >>"$work/servers.log" 2>&1 &
	pids+=($!)
	"$work/nettool" udp-server "$bind" "$udp_port" >>"$work/servers.log" 2>&1 &
	pids+=($!)
	wait_for 5 listening tcp "$bind" "$iperf_port" &&
		wait_for 5 listening tcp "$bind" "$conn_port" &&
		wait_for 5 listening udp "$bind" "$udp_port" ||
		{ echo "servers did not start" >"$work/why"; return 1; }
}

# net_down: stop every process and remove the namespace of net_up.
net_down() {
	local pid
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	pids=()
	ip link del "$tag" 2>/dev/null || true
	ip netns del "$ns" 2>/dev/null || true
	namespaces=()
	# Let the stopped programs' sockets go before the next network.
	sleep 0.5
}

# --- measurements: each prints a number and a remark, or ERR --------------

# in_ns COMMAND...: run COMMAND in the namespace, bounded in time.
in_ns() {
	timeout -k 5 $((secs + 30)) ip netns exec "$ns" "$@"
}

tcp_gbps() {	# -R or nothing
	local out res
	if out=$(in_ns iperf3 -c "$target" -p "$iperf_port" -t "$secs" -J "$@" 2>&1) &&
	   res=$(printf '%s\n' "$out" | "$python" "$work/helper.py" iperf-gbps 2>&1); then
		read -r gbps retr <<<"$res"
		echo "$gbps $retr retransmits"
	else
		printf '%s: iperf3 %s: %s\n' "$peer" "$*" "$(printf '%s\n' "${res:-$out}" | tail -n 3)" \
			>>"$work/errors"
		echo ERR
	fi
}

conn_rate() {
	local res
	if res=$(in_ns "$work/nettool" conn-client "$target" "$conn_port" "$secs" 2>&1); then
		read -r rate failed <<<"$res"
		[ "$failed" = 0 ] || echo "$peer: $failed short connections failed" >>"$work/errors"
		echo "$rate $failed failed"
	else
		echo "$peer: conn-client: $res" >>"$work/errors"
		echo ERR
	fi
}

udp_rtt() {
	local res
	if res=$(in_ns "$work/nettool" udp-client "$target" "$udp_port" "$udp_count" 2>&1); then
		read -r rtt lost <<<"$res"
		echo "$rtt $lost lost"
	else
		echo "$peer: udp-client: $res" >>"$work/errors"
		echo ERR
	fi
}

# --- the run --------------------------------------------------------------

rows=("tcp ns->host 1500" "tcp host->ns 1500" "tcp ns->host 65520" "tcp host->ns 65520"
	"tcp conn/s 1500" "udp rtt-us 1500")

declare -A vals		# "row|peer" -> space-separated results

# measure ROW: one run of ROW on the network that is up.
measure() {
	case $1 in
	"tcp ns->host "*) tcp_gbps ;;
	"tcp host->ns "*) tcp_gbps -R ;;
	"tcp conn/s "*) conn_rate ;;
	"udp rtt-us "*) udp_rtt ;;
	esac
}

read -r load _ </proc/loadavg
if awk -v l="$load" 'BEGIN { exit !(l > 0.5) }'; then
	note "load average $load: other work will add noise"
fi
read -ra plist <<<"$peers"
note "${#plist[@]} networks x 2 MTUs x $reps runs, ${secs}s per run, in $work"
for ((rep = 0; rep < reps; rep++)); do
	for mtu in 1500 65520; do
		for ((k = 0; k < ${#plist[@]}; k++)); do
			# Rotate the order every repetition, so drift in the
			# machine's speed hits every network alike.
			peer=${plist[(k + rep) % ${#plist[@]}]}
			have "$peer" || continue
			rm -f "$work/why"
			up=1
			net_up "$peer" "$mtu" >>"$work/setup.log" 2>&1 || up=0
			for row in "${rows[@]}"; do
				[ "${row##* }" = "$mtu" ] || continue
				res=ERR
				[ "$up" = 1 ] && res=$(measure "$row")
				read -r v detail <<<"$res"
				vals["$row|$peer"]+="$v "
				if [ "$verbose" = 1 ]; then
					printf '  %-20s %-12s %10s  %s\n' "$row" "$peer" "$v" "$detail" >&2
				fi
			done
			if [ "$up" = 0 ]; then
				echo "$peer at MTU $mtu: $(cat "$work/why" 2>/dev/null || echo "setup failed, see $work/setup.log")" \
					>>"$work/errors"
			fi
			net_down
		done
	done
	note "repetition $((rep + 1))/$reps done"
done

# --- the table ------------------------------------------------------------

# median "V1 V2 ...": their median; ERR if any failed, n/a if none.
median() {
	# shellcheck disable=SC2086
	printf '%s\n' $1 | sort -g | awk '
		/ERR/ { err = 1 } NF { v[++n] = $1 }
		END {
			if (n == 0) { print "n/a"; exit }
			if (err) { print "ERR"; exit }
			if (n % 2) m = v[(n + 1) / 2]; else m = (v[n / 2] + v[n / 2 + 1]) / 2
			if (m >= 100) printf "%.0f\n", m; else printf "%.2f\n", m
		}'
}

num() { [[ $1 =~ ^[0-9.]+$ ]]; }

# ratio A B: A/B to two decimals, or "-" when either is missing.
ratio() {
	if num "$1" && num "$2"; then
		awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.2f\n", a / b }'
	else
		echo -
	fi
}

# check NAME REF RATIO LIMIT: one target of a row. It applies only where
# the reference (REF: the best peer or veth) was measured; it is missed if
# ours is missing (ERR) or RATIO is below LIMIT.
check() {
	num "$2" || return 0
	applies=1
	if ! num "$3" || awk -v r="$3" -v l="$4" 'BEGIN { exit !(r + 0 < l + 0) }'; then
		missed+=("$1")
	fi
}

units() {
	case $1 in
	"tcp conn/s "*) echo "conn/s" ;;
	"udp rtt-us "*) echo "us" ;;
	*) echo "Gbps" ;;
	esac
}

have_ours=0
[[ " $peers " == *" ours "* ]] && have ours && have_ours=1
[ "$have_ours" = 1 ] || note "no $vpnkit (or no busybox): measuring the others only"

echo
fmt='%-20s %-6s %9s %9s %11s %9s %9s %9s  %s\n'
printf "$fmt" row unit veth pasta slirp4netns ours ours/best ours/veth target
[ -n "$tsv" ] && printf 'row\tunit\tveth\tpasta\tslirp4netns\tours\tours_best_peer\tours_veth\ttarget\n' >"$tsv"
misses=0 checked=0
for row in "${rows[@]}"; do
	declare -A m=()
	for p in $peers_all; do
		m[$p]=$(median "${vals["$row|$p"]:-}")
	done
	# The best peer: the faster of pasta and slirp4netns, or for
	# latency the lower.
	best=-
	for p in pasta slirp4netns; do
		num "${m[$p]}" || continue
		if [ "$best" = - ]; then
			best=${m[$p]}
		elif [ "${row%% *}" = udp ]; then
			best=$(awk -v a="$best" -v b="${m[$p]}" 'BEGIN { print (b < a) ? b : a }')
		else
			best=$(awk -v a="$best" -v b="${m[$p]}" 'BEGIN { print (b > a) ? b : a }')
		fi
	done
	ob=$(ratio "${m[ours]}" "$best")
	ov=$(ratio "${m[ours]}" "${m[veth]}")
	missed=() applies=0
	case $row in
	"tcp ns->host "*|"tcp host->ns "*)
		check "best*1.5" "$best" "$ob" 1.5
		[ "${row##* }" = 65520 ] && check "veth/2" "${m[veth]}" "$ov" 0.5
		;;
	"tcp conn/s "*)
		check best "$best" "$ob" 1.0
		;;
	esac
	if [ "${row%% *}" = udp ]; then
		mark="(lower is better)"
	elif [ "$have_ours" = 0 ] || [ "$applies" = 0 ]; then
		mark=-
	else
		checked=$((checked + 1))
		if [ ${#missed[@]} -eq 0 ]; then
			mark=ok
		else
			mark="MISS ${missed[*]}"
			misses=$((misses + 1))
		fi
	fi
	printf "$fmt" "$row" "$(units "$row")" "${m[veth]}" "${m[pasta]}" \
		"${m[slirp4netns]}" "${m[ours]}" "$ob" "$ov" "$mark"
	if [ -n "$tsv" ]; then
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$row" "$(units "$row")" "${m[veth]}" \
			"${m[pasta]}" "${m[slirp4netns]}" "${m[ours]}" "$ob" "$ov" "$mark" >>"$tsv"
	fi
	unset m
done
echo
echo "Rows end in the MTU; median of $reps run(s) of ${secs}s; best = the better of pasta and slirp4netns."
if [ "$have_ours" = 1 ]; then
	echo "Targets (tcp: ours >= 1.5x best both ways at both MTUs, >= 0.5x veth at 65520;" \
		"conn/s: ours >= best): $((checked - misses)) of $checked rows met."
fi
if [ -s "$work/errors" ]; then
	echo "Problems:"
	sed 's/^/  /' "$work/errors"
fi
exit 0
