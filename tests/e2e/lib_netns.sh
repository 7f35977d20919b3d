# SPDX-License-Identifier: MIT
#
# Helpers for rigs that put vpnkit's TAP into a network namespace (sourced
# after lib.sh, not run). Everything a rig makes is remembered and undone by
# netns_rig_cleanup, which the EXIT trap set by netns_rig_init runs before
# lib.sh's own cleanup: processes the rig started (by pid), the namespaces
# and their /etc/netns/NAME directories.
#
# Needs root (namespaces, TAP devices), iproute2, busybox (udhcpc) and
# python3 (tests/e2e/vpnkit/netpeer.py runs the servers and clients).

NETPEER=$e2e_root/tests/e2e/vpnkit/netpeer.py
NETNS_LIST=()
NETNS_PIDS=()

# netns_rig_init NAME: lib.sh's e2e_init plus the namespace cleanup.
netns_rig_init() {
	e2e_init "$1"
	trap netns_rig_cleanup EXIT
}

netns_rig_cleanup() {
	local pid ns
	for pid in "${NETNS_PIDS[@]}"; do
		kill "$pid" 2>/dev/null
	done
	for ns in "${NETNS_LIST[@]}"; do
		# Whatever still runs inside a namespace of ours is ours too.
		for pid in $(ip netns pids "$ns" 2>/dev/null); do
			kill "$pid" 2>/dev/null
		done
	done
	for pid in "${NETNS_PIDS[@]}"; do
		wait_gone "$pid" 3 || kill -KILL "$pid" 2>/dev/null
	done
	for ns in "${NETNS_LIST[@]}"; do
		ip netns delete "$ns" 2>/dev/null
		rm -rf "/etc/netns/$ns"
	done
	rmdir /etc/netns 2>/dev/null
	e2e_cleanup
}

# wait_for SECONDS COMMAND...: poll COMMAND every 0.1 s until it succeeds.
wait_for() {
	local n=$(($1 * 10)) i
	shift
	for ((i = 0; i < n; i++)); do
		"$@" && return 0
		sleep 0.1
	done
	return 1
}

# wait_gone PID SECONDS: wait for a process (not necessarily our child) to
# end.
wait_gone() {
	local pid=$1 n=$(($2 * 10)) i
	for ((i = 0; i < n; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	return 1
}

# netns_add NAME: a fresh namespace with loopback up and an empty
# /etc/netns/NAME/resolv.conf, which `ip netns exec` bind-mounts over
# /etc/resolv.conf for everything run inside.
netns_add() {
	ip netns add "$1" || return 1
	NETNS_LIST+=("$1")
	ip -n "$1" link set lo up || return 1
	mkdir -p "/etc/netns/$1" && : >"/etc/netns/$1/resolv.conf"
}

# in_ns NS COMMAND...: run COMMAND inside the namespace.
in_ns() {
	local ns=$1
	shift
	ip netns exec "$ns" "$@"
}

# peer_start PORTVAR READY_FILE [ns NS] NETPEER-ARGS...: start a netpeer.py
# server in the background (in the host's namespace, or in NS), wait up to
# 5 s for it to write its port to READY_FILE and set PORTVAR to it. Not in
# a $(...) subshell: the pid must reach NETNS_PIDS for the cleanup.
peer_start() {
	local var=$1 ready=$2 pid
	shift 2
	rm -f "$ready"
	if [ "$1" = ns ]; then
		local ns=$2
		shift 2
		ip netns exec "$ns" "$PYTHON" "$NETPEER" "$@" --ready "$ready" \
			>>"$ready.log" 2>&1 &
	else
		"$PYTHON" "$NETPEER" "$@" --ready "$ready" >>"$ready.log" 2>&1 &
	fi
	pid=$!
	NETNS_PIDS+=("$pid")
	if ! wait_for 5 test -s "$ready"; then
		echo "netpeer $* did not start:" >&2
		cat "$ready.log" >&2
		kill "$pid" 2>/dev/null
		return 1
	fi
	printf -v "$var" '%s' "$(cat "$ready")"
}

# netpeer ARGS...: run a netpeer.py client in the host's namespace.
netpeer() {
	"$PYTHON" "$NETPEER" "$@"
}

# vpnkit_start PIDVAR LOG ARGS...: start the daemon in the background with
# ARGS (which must include --pidfile FILE), wait up to 10 s for its pidfile
# and set PIDVAR to the pid in it. Fails if the daemon exits first.
vpnkit_start() {
	local var=$1 log=$2 pidfile="" prev="" a job
	shift 2
	for a in "$@"; do
		[ "$prev" = --pidfile ] && pidfile=$a
		prev=$a
	done
	rm -f "$pidfile"
	vpnkit "$@" >"$log" 2>&1 &
	job=$!
	NETNS_PIDS+=("$job")
	local i
	for ((i = 0; i < 100; i++)); do
		if [ -s "$pidfile" ]; then
			printf -v "$var" '%s' "$(cat "$pidfile")"
			# A daemon that forked: remember the real pid as well.
			[ "${!var}" != "$job" ] && NETNS_PIDS+=("${!var}")
			return 0
		fi
		kill -0 "$job" 2>/dev/null || break
		sleep 0.1
	done
	printf -v "$var" '%s' "$job"
	return 1
}

# udhcpc_script FILE: write the event script udhcpc runs. It configures
# the interface from the lease (address, default route, MTU), writes
# $RIG_RESOLV and records the lease's variables in $RIG_LEASE.
udhcpc_script() {
	cat >"$1" <<'EOF'
#!/bin/sh
# udhcpc event script of the vpnkit namespace rig.
case "$1" in
deconfig)
	ip -4 addr flush dev "$interface"
	ip link set dev "$interface" up
	;;
bound|renew)
	ip -4 addr flush dev "$interface"
	ip -4 addr add "$ip/${mask:-24}" ${broadcast:+broadcast "$broadcast"} \
		dev "$interface" || exit 1
	if [ -n "$mtu" ]; then
		ip link set dev "$interface" mtu "$mtu" || exit 1
	fi
	for r in $router; do
		ip route replace default via "$r" dev "$interface" || exit 1
		break
	done
	{
		[ -n "$domain" ] && echo "domain $domain"
		[ -n "$search" ] && echo "search $search"
		for d in $dns; do
			echo "nameserver $d"
		done
	} >"$RIG_RESOLV"
	env | grep -E '^(interface|ip|subnet|mask|router|dns|domain|search|mtu|lease|serverid|broadcast|opt[0-9]+)=' \
		| sort >"$RIG_LEASE"
	;;
esac
exit 0
EOF
	chmod +x "$1"
}

# netns_dhcp NS IFACE LEASE_FILE: bring IFACE up and get a lease with
# busybox udhcpc (within about 10 s); the lease's variables land in
# LEASE_FILE (ip=..., router=..., dns=..., mtu=...), resolv.conf in
# /etc/netns/NS/resolv.conf. udhcpc's output goes to LEASE_FILE.log.
netns_dhcp() {
	local ns=$1 ifc=$2 lease=$3
	local script=$T/udhcpc.script
	[ -x "$script" ] || udhcpc_script "$script"
	rm -f "$lease"
	ip -n "$ns" link set "$ifc" up || return 1
	RIG_RESOLV=/etc/netns/$ns/resolv.conf RIG_LEASE=$lease \
		timeout 20 ip netns exec "$ns" busybox udhcpc -f -q -n -i "$ifc" \
		-t 10 -T 1 -A 1 -O mtu -O search -s "$script" \
		>"$lease.log" 2>&1 && [ -s "$lease" ]
}

# lease_get LEASE_FILE VAR: one variable of a recorded lease.
lease_get() {
	sed -n "s/^$2=//p" "$1" | head -n 1
}

# vpnkit_ctl CTL REQUEST: one JSON request to the control socket; prints
# the reply line; fails unless the reply says "ok": true.
vpnkit_ctl() {
	netpeer ctl "$1" "$2"
}

# vpnkit_stat CTL FIELD: one counter from {"op":"stats"} (wherever in the
# reply object it is); empty if missing.
vpnkit_stat() {
	vpnkit_ctl "$1" '{"op":"stats"}' 2>/dev/null |
		jq -r --arg f "$2" '[.. | objects | .[$f]? | numbers] | first // empty' \
			2>/dev/null
}

# fd_count PID: descriptors the process holds now.
fd_count() {
	ls "/proc/$1/fd" 2>/dev/null | wc -l
}

# elapsed_ms START: milliseconds since START, a `date +%s%N` reading.
elapsed_ms() {
	echo $((($(date +%s%N) - $1) / 1000000))
}

# sha_of FILE: its SHA-256 in hex.
sha_of() {
	sha256sum "$1" | cut -d' ' -f1
}
