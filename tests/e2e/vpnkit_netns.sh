#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The namespace rig: the real Linux network stack and real tools in a
# network namespace, connected to our vpnkit through a TAP device that the
# daemon creates inside the namespace (--tap --netns). Host-side servers
# listen on the host's loopback only; the guest reaches them through
# 192.168.65.2 (the host's 127.0.0.1) and fd00:6e6b:7600:1::2 (its ::1).
#
# Cases, in order (each needs the ones before it only where it says):
#   dhcp-lease            busybox udhcpc gets a lease in 192.168.65.0/24,
#                         router and DNS .1
#   ping-gateway          ping 192.168.65.1
#   http-host-ip          busybox wget from a host HTTP server on 127.0.0.1
#                         through 192.168.65.2, sha256 compared
#   http-host-docker-internal   the same through host.docker.internal,
#                         resolved by libc through the gateway's DNS
#   dns-*                 a name given with --name (busybox nslookup, dig);
#                         the built-in names; forward mode to a fake
#                         upstream named in --resolv-conf: UDP, TCP from the
#                         guest, another record type with EDNS, NXDOMAIN, and
#                         the relay's own TCP fallback on a truncated answer
#   tcp-100m-download/upload   100 MiB each way with sha256 (wget, curl -T)
#   udp-echo              100 datagrams of 1..1400 bytes echoed intact;
#                         8000-byte ones (IP fragments) only reported
#   forward-*             a host-to-guest TCP forward added, listed and
#                         removed through the control socket (the host port
#                         is refused and free at once after removal), and a
#                         UDP one
#   conns-1000*           1,000 concurrent connections opened, echoed and
#                         closed; afterwards vpnkit holds no more
#                         descriptors and TCP flows than before
#   ipv6-*                a SLAAC address in fd00:6e6b:7600:1::/64, an HTTP
#                         transfer from the host's ::1 through prefix::2,
#                         ping of the gateway prefix::1
#   limits-*              a second instance with --max-flows 64 --max-fds
#                         64 in a second namespace: 500 connections at once
#                         never take it beyond 64 host descriptors over its
#                         idle count, and it serves again afterwards
#   alive, sigterm-exit   vpnkit survived everything; SIGTERM ends it with
#                         status 0, its pid file, control socket and TAP gone
#   pcap                  the second instance's --pcap file parses with
#                         tcpdump and shows DHCP
#
# Needs root. UNIKIT_E2E_TCPDUMP=1 also records each TAP from inside its
# namespace (tap1.pcap, tap2.pcap; keep them with UNIKIT_E2E_KEEP=1);
# UNIKIT_E2E_VPNKIT_VERBOSE=-vv raises the daemons' log level (logs are
# vk1.log and vk2.log, their ends shown under failures).
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_netns.sh"

P=vpnkit-netns
GW=192.168.65.1
HOST=192.168.65.2
PREFIX6=fd00:6e6b:7600:1:
GW6=fd00:6e6b:7600:1::1
HOST6=fd00:6e6b:7600:1::2
read -ra VERBOSE <<<"${UNIKIT_E2E_VPNKIT_VERBOSE:--v}"

if [ "$(id -u)" -ne 0 ]; then
	skip "$P" "needs root for network namespaces and TAP devices"
	exit 0
fi
if ! have_cmd vpnkit; then
	echo "not ok $P/daemon"
	echo "# vpnkit is not built (looked in $UNIKIT_BUILD/bin and PATH)"
	exit 1
fi
for prog in ip busybox dig curl tcpdump jq; do
	if ! have_cmd "$prog"; then
		echo "not ok $P/tools"
		echo "# $prog is missing (scripts/deps.sh installs it)"
		exit 1
	fi
done

netns_rig_init vpnkit-netns
cd "$T" || exit 1
# The host's echo server and the guest's client each hold 1,000 sockets.
ulimit -n "$(ulimit -Hn)" 2>/dev/null

NS=unikit-vk$$
NS2=unikit-vl$$
TAP=vk$$
TAP2=vl$$

# fail NAME DETAIL...: not ok, with the end of vpnkit's log appended.
fail() {
	local name=$1
	shift
	tail -n "${E2E_LOG_LINES:-12}" "$T/vk1.log" 2>/dev/null |
		sed 's/^/vk1.log: /' >"$T/.logtail"
	not_ok "$name" "$@" "$T/.logtail"
}

# in_ns_t SECONDS COMMAND...: run COMMAND in the first namespace with a
# time limit.
in_ns_t() {
	local s=$1
	shift
	timeout "$s" ip netns exec "$NS" "$@"
}

# ---- host side: files and servers ------------------------------------------
mkdir -p www
head -c $((1024 * 1024 + 17)) /dev/urandom >www/small.bin
head -c $((100 * 1024 * 1024)) /dev/urandom >www/blob.bin
head -c $((8 * 1024 * 1024 + 5)) /dev/urandom >www/v6.bin
SMALL_SHA=$(sha_of www/small.bin)
BLOB_SHA=$(sha_of www/blob.bin)
V6_SHA=$(sha_of www/v6.bin)

setup_failed() {
	echo "not ok $P/setup"
	printf '# %s\n' "$@"
	exit 1
}

peer_start HTTP_PORT http4.port http --bind 127.0.0.1 --dir "$T/www" ||
	setup_failed "HTTP server on 127.0.0.1"
peer_start HTTP6_PORT http6.port http --bind ::1 --dir "$T/www" ||
	setup_failed "HTTP server on ::1 (is IPv6 on in the host's loopback?)"
peer_start ECHO_PORT echo.port tcp-echo --bind 127.0.0.1 ||
	setup_failed "TCP echo server"
peer_start UECHO_PORT uecho.port udp-echo --bind 127.0.0.1 ||
	setup_failed "UDP echo server"

# The fake upstream DNS server needs port 53 (resolv.conf has no port) on
# a loopback address nobody else uses.
DNS_ADDR=""
for _ in 1 2 3 4 5; do
	addr=127.$((RANDOM % 200 + 20)).$((RANDOM % 250 + 1)).53
	if peer_start DNS_PORT dns.port dns --bind "$addr" --port 53 \
		--log "$T/upstream.log" 2>/dev/null; then
		DNS_ADDR=$addr
		break
	fi
done
[ -n "$DNS_ADDR" ] || setup_failed "fake upstream DNS server on 127.x.y.53:53"
echo "nameserver $DNS_ADDR" >resolv.conf
: >upstream.log

# ---- the namespace and vpnkit ----------------------------------------------
netns_add "$NS" || setup_failed "ip netns add $NS"
if ! vpnkit_start VK1 vk1.log --tap "$TAP" --netns "/run/netns/$NS" \
	--pidfile "$T/vk1.pid" --control "$T/vk1.ctl" --dns forward \
	--resolv-conf "$T/resolv.conf" \
	--name test-name.unikit.internal=192.0.2.7 "${VERBOSE[@]}"; then
	echo "not ok $P/daemon-starts"
	echo "# vpnkit did not write its pidfile within 10 s; its log:"
	tail -n 20 vk1.log | sed 's/^/#   /'
	exit 1
fi
if ! wait_for 5 ip -n "$NS" link show "$TAP" >/dev/null 2>&1; then
	echo "not ok $P/daemon-starts"
	echo "# no $TAP in namespace $NS after the pidfile appeared"
	tail -n 20 vk1.log | sed 's/^/#   /'
	exit 1
fi
ok "$P/daemon-starts"
# SLAAC on the TAP (a fresh namespace has accept_ra=1, forwarding=0 already;
# say so anyway, before the link comes up and sends its router solicitation).
in_ns "$NS" sysctl -qw "net.ipv6.conf.$TAP.disable_ipv6=0" \
	"net.ipv6.conf.$TAP.accept_ra=1" "net.ipv6.conf.$TAP.autoconf=1" \
	>sysctl.out 2>&1 || sed 's/^/# sysctl: /' sysctl.out
if [ -n "${UNIKIT_E2E_TCPDUMP:-}" ]; then
	# tcpdump refuses a device that is down.
	ip -n "$NS" link set "$TAP" up
	in_ns "$NS" tcpdump -Z root -i "$TAP" -s 256 -U -w "$T/tap1.pcap" >tap1.log 2>&1 &
	NETNS_PIDS+=("$!")
	sleep 0.5
fi

# ---- 1. DHCP ----------------------------------------------------------------
LEASE_OK=0
if ! netns_dhcp "$NS" "$TAP" "$T/lease1"; then
	fail "$P/dhcp-lease" "busybox udhcpc got no lease on $TAP" "$T/lease1.log"
else
	ip=$(lease_get lease1 ip)
	router=$(lease_get lease1 router)
	dns=$(lease_get lease1 dns)
	mask=$(lease_get lease1 mask)
	GUEST_IP=$ip
	why=""
	[[ $ip =~ ^192\.168\.65\.([0-9]+)$ ]] &&
		((BASH_REMATCH[1] >= 3 && BASH_REMATCH[1] <= 254)) ||
		why+="address $ip is not a host of 192.168.65.0/24 past .2; "
	[ "$router" = "$GW" ] || why+="router '$router', want $GW; "
	[[ " $dns " == *" $GW "* ]] || why+="dns '$dns', want $GW; "
	[ "${mask:-}" = 24 ] || why+="prefix length '$mask', want 24; "
	ip -n "$NS" -4 addr show dev "$TAP" | grep -q "inet $ip/24" ||
		why+="$TAP does not carry $ip/24; "
	grep -q "^nameserver $GW" "/etc/netns/$NS/resolv.conf" ||
		why+="resolv.conf has no nameserver $GW; "
	if [ -z "$why" ]; then
		LEASE_OK=1
		ok "$P/dhcp-lease"
		echo "# lease: $(tr '\n' ' ' <lease1)"
	else
		fail "$P/dhcp-lease" "$why" lease1
	fi
fi

# need_lease NAME: fail NAME at once when there is no lease to test with.
need_lease() {
	[ "$LEASE_OK" = 1 ] && return 0
	not_ok "$1" "no DHCP lease, the namespace has no IPv4 configuration"
	return 1
}

# ---- 2. ping ----------------------------------------------------------------
if need_lease "$P/ping-gateway"; then
	if in_ns_t 10 ping -n -c 3 -i 0.2 -W 2 "$GW" >ping.out 2>&1; then
		ok "$P/ping-gateway"
	else
		fail "$P/ping-gateway" "ping -c 3 $GW from the namespace failed" \
			ping.out
	fi
fi

# ---- 3. HTTP from the host's loopback -----------------------------------------
# http_get NAME URL WANT_SHA TOOL...: download URL with TOOL in the
# namespace and compare its checksum.
http_get() {
	local name=$1 url=$2 want=$3 secs=$4 got
	shift 4
	rm -f got.bin
	if ! in_ns_t "$secs" "$@" "$url" >got.bin 2>http.err; then
		fail "$name" "$* $url failed (exit $?), got $(stat -c %s got.bin) bytes" \
			http.err
		return
	fi
	got=$(sha_of got.bin)
	if [ "$got" = "$want" ]; then
		ok "$name"
	else
		fail "$name" "$url: sha256 $got ($(stat -c %s got.bin) bytes), want $want"
	fi
}

if need_lease "$P/http-host-ip"; then
	http_get "$P/http-host-ip" "http://$HOST:$HTTP_PORT/small.bin" \
		"$SMALL_SHA" 20 busybox wget -q -O -
fi
if need_lease "$P/http-host-docker-internal"; then
	http_get "$P/http-host-docker-internal" \
		"http://host.docker.internal:$HTTP_PORT/small.bin" \
		"$SMALL_SHA" 20 busybox wget -q -O -
fi

# ---- 4. DNS -----------------------------------------------------------------
# dig_gw ARGS...: dig at the gateway from the namespace, answers only.
dig_gw() {
	in_ns_t 15 dig @"$GW" +time=2 +tries=2 +short "$@" 2>&1
}

if need_lease "$P/dns-name-flag"; then
	in_ns_t 15 busybox nslookup test-name.unikit.internal "$GW" \
		>nslookup.out 2>&1
	a=$(dig_gw test-name.unikit.internal A)
	if grep -q '192\.0\.2\.7' nslookup.out && [ "$a" = 192.0.2.7 ]; then
		ok "$P/dns-name-flag"
	else
		fail "$P/dns-name-flag" \
			"--name test-name.unikit.internal=192.0.2.7: dig says '$a'; busybox nslookup:" \
			nslookup.out
	fi
fi

if need_lease "$P/dns-builtin-names"; then
	why=""
	for pair in host.docker.internal=$HOST host.containers.internal=$HOST \
		gateway.docker.internal=$GW; do
		a=$(dig_gw "${pair%%=*}" A)
		[ "$a" = "${pair#*=}" ] || why+="${pair%%=*}: '$a', want ${pair#*=}; "
	done
	if [ -z "$why" ]; then
		ok "$P/dns-builtin-names"
	else
		fail "$P/dns-builtin-names" "$why"
	fi
fi

if need_lease "$P/dns-forward-udp"; then
	a=$(dig_gw +notcp fwd-test.unikit.example A)
	nx=$(in_ns_t 15 dig @"$GW" +time=2 +tries=2 +notcp \
		no-such-name.unikit.example A 2>&1 | grep -o 'status: [A-Z]*')
	if [ "$a" = 198.51.100.42 ] &&
		grep -q '^udp fwd-test.unikit.example 1 ' upstream.log &&
		[ "$nx" = "status: NXDOMAIN" ]; then
		ok "$P/dns-forward-udp"
	else
		fail "$P/dns-forward-udp" \
			"fwd-test.unikit.example: '$a', want 198.51.100.42 from the upstream at $DNS_ADDR; no-such-name: '$nx', want NXDOMAIN; upstream saw:" \
			upstream.log
	fi
fi

if need_lease "$P/dns-forward-tcp"; then
	a=$(dig_gw +tcp fwd-test.unikit.example A)
	if [ "$a" = 198.51.100.42 ]; then
		ok "$P/dns-forward-tcp"
	else
		fail "$P/dns-forward-tcp" \
			"dig +tcp fwd-test.unikit.example at $GW: '$a', want 198.51.100.42; upstream saw:" \
			upstream.log
	fi
fi

if need_lease "$P/dns-forward-txt-edns"; then
	a=$(dig_gw +notcp +edns=0 fwd-test.unikit.example TXT)
	if [ "$a" = '"unikit forward"' ] &&
		grep -q '^... fwd-test.unikit.example 16 edns' upstream.log; then
		ok "$P/dns-forward-txt-edns"
	else
		fail "$P/dns-forward-txt-edns" \
			"TXT fwd-test.unikit.example with EDNS: '$a', want \"unikit forward\" and the upstream seeing the OPT record; upstream saw:" \
			upstream.log
	fi
fi

if need_lease "$P/dns-forward-tcp-fallback"; then
	# +ignore: dig itself must not retry over TCP; the relay must.
	a=$(dig_gw +notcp +ignore tc-test.unikit.example A)
	if [ "$a" = 198.51.100.43 ]; then
		ok "$P/dns-forward-tcp-fallback"
	else
		fail "$P/dns-forward-tcp-fallback" \
			"tc-test.unikit.example (upstream truncates over UDP, answers 198.51.100.43 over TCP): '$a'; upstream saw:" \
			upstream.log
	fi
fi

# ---- 5. 100 MiB each way ------------------------------------------------------
if need_lease "$P/tcp-100m-download"; then
	t0=$(date +%s%N)
	http_get "$P/tcp-100m-download" "http://$HOST:$HTTP_PORT/blob.bin" \
		"$BLOB_SHA" 60 busybox wget -q -O -
	echo "# download: 100 MiB in $(elapsed_ms "$t0") ms"
fi
if need_lease "$P/tcp-100m-upload"; then
	t0=$(date +%s%N)
	in_ns_t 60 curl -sS -H 'Expect:' -T www/blob.bin \
		"http://$HOST:$HTTP_PORT/upload" >upload.out 2>&1
	rc=$?
	if [ "$rc" -ne 0 ]; then
		fail "$P/tcp-100m-upload" \
			"curl -T blob.bin to $HOST:$HTTP_PORT failed (exit $rc; 124: timed out after 60 s)" \
			upload.out
	elif [ "$(cat upload.out)" = "$BLOB_SHA $((100 * 1024 * 1024))" ]; then
		ok "$P/tcp-100m-upload"
	else
		fail "$P/tcp-100m-upload" \
			"the host received: $(cat upload.out); want $BLOB_SHA $((100 * 1024 * 1024))"
	fi
	echo "# upload: 100 MiB in $(elapsed_ms "$t0") ms"
fi

# ---- 6. UDP echo --------------------------------------------------------------
if need_lease "$P/udp-echo"; then
	if in_ns_t 60 "$PYTHON" "$NETPEER" udp-client "$HOST" "$UECHO_PORT" \
		--big 8000 --big-count 5 >udp.out 2>&1; then
		ok "$P/udp-echo"
	else
		fail "$P/udp-echo" "datagrams of 1..1400 bytes to $HOST:$UECHO_PORT:" \
			udp.out
	fi
	# Fragmented datagrams may be reassembled or dropped: reported only.
	echo "# 8000-byte datagrams (IP fragments): $(jq -c \
		'{big_ok, big, big_errors}' udp.out 2>/dev/null)"
fi

# ---- 7. forwards through the control API ------------------------------------
GUEST_TCP=8081
GUEST_UDP=8082
CTL=$T/vk1.ctl
if need_lease "$P/forward-tcp-add"; then
	peer_start BANNER_PORT banner.port ns "$NS" banner --bind 0.0.0.0 \
		--port "$GUEST_TCP" --text "banner $$" ||
		setup_failed "banner server in the namespace"
	HP=$(netpeer freeport tcp)
	fwd="tcp:127.0.0.1:$HP:$GUEST_IP:$GUEST_TCP"
	if ! vpnkit_ctl "$CTL" "{\"op\":\"add\",\"forward\":\"$fwd\"}" \
		>ctl.out 2>&1; then
		fail "$P/forward-tcp-add" "control add $fwd:" ctl.out
	else
		got=$(netpeer probe 127.0.0.1 "$HP")
		if [ "$got" = "data banner $$" ]; then
			ok "$P/forward-tcp-add"
		else
			fail "$P/forward-tcp-add" \
				"through $fwd: '$got', want 'data banner $$'"
		fi
	fi

	if vpnkit_ctl "$CTL" '{"op":"list"}' >list.out 2>&1 &&
		grep -q "tcp:127.0.0.1:$HP" list.out; then
		ok "$P/forward-list"
	else
		fail "$P/forward-list" "list does not show tcp:127.0.0.1:$HP:" list.out
	fi

	if ! vpnkit_ctl "$CTL" \
		"{\"op\":\"remove\",\"forward\":\"tcp:127.0.0.1:$HP\"}" \
		>ctl.out 2>&1; then
		fail "$P/forward-tcp-remove" "control remove tcp:127.0.0.1:$HP:" ctl.out
	else
		got=$(netpeer probe --timeout 1 127.0.0.1 "$HP")
		if [ "$got" != refused ]; then
			fail "$P/forward-tcp-remove" \
				"127.0.0.1:$HP after remove: '$got', want refused at once"
		elif ! netpeer canbind tcp "$HP" >bind.out 2>&1; then
			fail "$P/forward-tcp-remove" "host port not freed:" bind.out
		elif vpnkit_ctl "$CTL" '{"op":"list"}' >list.out 2>&1 &&
			grep -q "tcp:127.0.0.1:$HP" list.out; then
			fail "$P/forward-tcp-remove" "list still shows it:" list.out
		else
			ok "$P/forward-tcp-remove"
		fi
	fi
else
	not_ok "$P/forward-list" "no lease"
	not_ok "$P/forward-tcp-remove" "no lease"
fi

if need_lease "$P/forward-udp"; then
	peer_start GUECHO_PORT guecho.port ns "$NS" udp-echo --bind 0.0.0.0 \
		--port "$GUEST_UDP" ||
		setup_failed "UDP echo server in the namespace"
	HPU=$(netpeer freeport udp)
	fwd="udp:127.0.0.1:$HPU:$GUEST_IP:$GUEST_UDP"
	if ! vpnkit_ctl "$CTL" "{\"op\":\"add\",\"forward\":\"$fwd\"}" \
		>ctl.out 2>&1; then
		fail "$P/forward-udp" "control add $fwd:" ctl.out
	else
		got=$(netpeer udp-probe 127.0.0.1 "$HPU" "ping $$")
		vpnkit_ctl "$CTL" \
			"{\"op\":\"remove\",\"forward\":\"udp:127.0.0.1:$HPU\"}" \
			>ctl.out 2>&1
		rc=$?
		if [ "$got" != "data ping $$" ]; then
			fail "$P/forward-udp" "through $fwd: '$got', want 'data ping $$'"
		elif [ "$rc" -ne 0 ]; then
			fail "$P/forward-udp" "control remove udp:127.0.0.1:$HPU:" ctl.out
		elif ! netpeer canbind udp "$HPU" >bind.out 2>&1; then
			fail "$P/forward-udp" "UDP host port not freed after remove:" \
				bind.out
		else
			ok "$P/forward-udp"
		fi
	fi
fi

# ---- 8. 1,000 concurrent connections, then no leaks ---------------------------
if need_lease "$P/conns-1000"; then
	fds0=$(fd_count "$VK1")
	flows0=$(vpnkit_stat "$CTL" tcp_flows)
	# The peak shows that the count is real: each of the 1,000 flows open
	# at once has a host socket.
	rm -f fdwatch1.stop
	netpeer fdwatch "$VK1" --stop "$T/fdwatch1.stop" >fdwatch1.out 2>&1 &
	watcher=$!
	in_ns_t 90 "$PYTHON" "$NETPEER" conns "$HOST" "$ECHO_PORT" -n 1000 \
		--timeout 30 >conns.out 2>&1
	rc=$?
	touch fdwatch1.stop
	wait "$watcher"
	peak=$(sed -n 's/^max \([0-9]*\).*/\1/p' fdwatch1.out)
	if [ "$rc" -ne 0 ]; then
		fail "$P/conns-1000" "1000 connections to $HOST:$ECHO_PORT:" conns.out
	elif [ -z "$peak" ] || ((peak < fds0 + 1000)); then
		fail "$P/conns-1000" \
			"vpnkit (pid $VK1) peaked at ${peak:-?} descriptors with 1000 connections open, $fds0 before: is it the process that carries them?" \
			fdwatch1.out
	else
		ok "$P/conns-1000"
	fi
	echo "# $(cat conns.out); vpnkit fds peak $peak"
	# The FIN handshakes and vpnkit's closing take a moment.
	# shellcheck disable=SC2317 # called through wait_for
	settled() {
		fds1=$(fd_count "$VK1")
		flows1=$(vpnkit_stat "$CTL" tcp_flows)
		[ -n "$flows0" ] && [ -n "$flows1" ] && ((fds1 <= fds0)) &&
			((flows1 <= flows0))
	}
	if [ "$fds0" -eq 0 ]; then
		fail "$P/conns-1000-no-leak" "no descriptors to count in /proc/$VK1/fd"
	elif wait_for 15 settled; then
		ok "$P/conns-1000-no-leak"
	else
		fail "$P/conns-1000-no-leak" \
			"vpnkit fds $fds0 before, $fds1 15 s after; tcp_flows '$flows0' before, '$flows1' after" \
			"stats: $(vpnkit_ctl "$CTL" '{"op":"stats"}' 2>&1)"
	fi
	echo "# vpnkit fds $fds0 -> $fds1, tcp_flows $flows0 -> $flows1"
else
	not_ok "$P/conns-1000-no-leak" "no lease"
fi

# ---- 9. IPv6 ------------------------------------------------------------------
slaac_addr() {
	ip -n "$NS" -6 addr show dev "$TAP" scope global -tentative 2>/dev/null |
		grep -o "inet6 ${PREFIX6}[0-9a-f:]*/64" | head -n 1
}
if wait_for 15 test -n "$(slaac_addr)"; then
	ok "$P/ipv6-slaac"
	echo "# $(slaac_addr)"
	V6_OK=1
else
	fail "$P/ipv6-slaac" "no address in ${PREFIX6}:/64 on $TAP within 15 s:" \
		"$(ip -n "$NS" -6 addr show dev "$TAP" 2>&1)" \
		"$(ip -n "$NS" -6 route 2>&1)"
	V6_OK=0
fi
if [ "$V6_OK" = 1 ]; then
	http_get "$P/ipv6-http" "http://[$HOST6]:$HTTP6_PORT/v6.bin" "$V6_SHA" 30 \
		curl -sS -g -o -
	if in_ns_t 10 ping -6 -n -c 3 -i 0.2 -W 2 "$GW6" >ping6.out 2>&1; then
		ok "$P/ipv6-ping-gateway"
	else
		fail "$P/ipv6-ping-gateway" "ping -6 -c 3 $GW6 failed" ping6.out
	fi
else
	not_ok "$P/ipv6-http" "no SLAAC address"
	not_ok "$P/ipv6-ping-gateway" "no SLAAC address"
fi

# ---- 10. resource limits, in a second namespace and instance --------------------
limits_case() {
	netns_add "$NS2" || {
		not_ok "$P/limits-fds-bounded" "ip netns add $NS2 failed"
		return
	}
	if ! vpnkit_start VK2 vk2.log --tap "$TAP2" --netns "/run/netns/$NS2" \
		--pidfile "$T/vk2.pid" --control "$T/vk2.ctl" --max-flows 64 \
		--max-fds 64 --pcap "$T/vk2.pcap" "${VERBOSE[@]}" ||
		! wait_for 5 ip -n "$NS2" link show "$TAP2" >/dev/null 2>&1; then
		not_ok "$P/limits-fds-bounded" \
			"vpnkit --max-flows 64 --max-fds 64 --pcap did not start" vk2.log
		return
	fi
	if [ -n "${UNIKIT_E2E_TCPDUMP:-}" ]; then
		ip -n "$NS2" link set "$TAP2" up
		ip netns exec "$NS2" tcpdump -Z root -i "$TAP2" -s 256 -U \
			-w "$T/tap2.pcap" >tap2.log 2>&1 &
		NETNS_PIDS+=("$!")
		sleep 0.5
	fi
	if ! netns_dhcp "$NS2" "$TAP2" "$T/lease2"; then
		not_ok "$P/limits-fds-bounded" "no DHCP lease in $NS2" lease2.log
		return
	fi
	local base peak
	base=$(fd_count "$VK2")
	rm -f fdwatch.stop
	netpeer fdwatch "$VK2" --stop "$T/fdwatch.stop" >fdwatch.out 2>&1 &
	local watcher=$!
	timeout 90 ip netns exec "$NS2" "$PYTHON" "$NETPEER" conns "$HOST" \
		"$ECHO_PORT" -n 500 --timeout 5 --hold 1 --min 1 \
		>conns2.out 2>&1
	local rc=$?
	touch fdwatch.stop
	wait "$watcher"
	peak=$(sed -n 's/^max \([0-9]*\).*/\1/p' fdwatch.out)
	echo "# 500 connections at --max-fds 64: $(cat conns2.out)"
	echo "# vpnkit fds: $base idle, peak $peak ($(cat fdwatch.out))"
	if [ -z "$peak" ] || ((peak > base + 64)); then
		not_ok "$P/limits-fds-bounded" \
			"peak of ${peak:-?} descriptors, idle $base, limit 64 above idle" \
			fdwatch.out
	elif [ "$rc" -ne 0 ]; then
		not_ok "$P/limits-fds-bounded" \
			"not one of 500 connections got through (exit $rc)" conns2.out
	elif ! kill -0 "$VK2" 2>/dev/null; then
		not_ok "$P/limits-fds-bounded" "vpnkit died" vk2.log
	else
		ok "$P/limits-fds-bounded"
	fi
	# After the burst the instance must serve again.
	# shellcheck disable=SC2317 # called through wait_for
	serves() {
		timeout 20 ip netns exec "$NS2" "$PYTHON" "$NETPEER" conns \
			"$HOST" "$ECHO_PORT" -n 20 --timeout 3 >conns3.out 2>&1
	}
	if kill -0 "$VK2" 2>/dev/null && wait_for 10 serves; then
		ok "$P/limits-serves-after"
	else
		tail -n 12 vk2.log >vk2.tail 2>/dev/null
		not_ok "$P/limits-serves-after" \
			"20 connections after the burst did not all echo" conns3.out \
			"stats: $(vpnkit_ctl "$T/vk2.ctl" '{"op":"stats"}' 2>&1)" \
			vk2.tail
	fi
}
if need_lease "$P/limits-fds-bounded"; then
	limits_case
else
	not_ok "$P/limits-serves-after" "no lease"
fi

# ---- the end: still alive, and the capture parses -------------------------------
if kill -0 "$VK1" 2>/dev/null; then
	ok "$P/alive"
else
	fail "$P/alive" "vpnkit (pid $VK1) is gone"
fi

# SIGTERM: exit 0 within 5 s, the pid file, control socket and TAP gone.
kill -TERM "$VK1" 2>/dev/null
if ! wait_gone "$VK1" 5; then
	fail "$P/sigterm-exit" "vpnkit (pid $VK1) still runs 5 s after SIGTERM"
else
	wait "$VK1" 2>/dev/null
	rc=$?
	why=""
	[ "$rc" -eq 0 ] || why+="exit status $rc, want 0; "
	[ -e vk1.pid ] && why+="vk1.pid is still there; "
	[ -e vk1.ctl ] && why+="the control socket vk1.ctl is still there; "
	ip -n "$NS" link show "$TAP" >/dev/null 2>&1 &&
		why+="$TAP is still in $NS; "
	if [ -z "$why" ]; then
		ok "$P/sigterm-exit"
	else
		fail "$P/sigterm-exit" "$why"
	fi
fi

if [ -n "${VK2:-}" ] && kill -0 "$VK2" 2>/dev/null; then
	kill -TERM "$VK2"
	wait_gone "$VK2" 5 || echo "# vpnkit (second instance) ignored SIGTERM"
fi
magic=$(od -An -tx1 -N4 vk2.pcap 2>/dev/null | tr -d ' ')
case $magic in
d4c3b2a1 | a1b2c3d4 | 4d3cb2a1 | a1b23c4d)
	if tcpdump -n -r vk2.pcap 'udp port 67 or udp port 68' >pcap.out \
		2>pcap.err && grep -qiE 'bootp|dhcp' pcap.out; then
		ok "$P/pcap"
	else
		not_ok "$P/pcap" "tcpdump -r vk2.pcap shows no DHCP:" pcap.err \
			pcap.out
	fi
	;;
*)
	not_ok "$P/pcap" "vk2.pcap: magic '$magic' is not a pcap file's"
	;;
esac

e2e_finish
