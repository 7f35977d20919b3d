#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The vpnkit part of `make demo`: a network namespace (standing in for a
# VM) gets its network from vpnkit through a TAP device, and the Linux
# stack inside it, which we did not write, does the rest: busybox udhcpc
# takes a DHCP lease, ping reaches the gateway, wget downloads from a web
# server on the host's 127.0.0.1 through 192.168.65.2 and through the name
# host.docker.internal, which the gateway's DNS answers; then a port
# forward added at run time through the control socket lets the host reach
# a server inside the namespace. The daemon's counters close the show.
#
# Needs root (network namespaces, TAP devices). Usage: demo-vpnkit.sh
# [FIRST_STEP_NUMBER]. Everything it makes is removed at exit.
set -euo pipefail

if ((EUID != 0)); then
	echo "demo: vpnkit part skipped: network namespaces need root" >&2
	exit 0
fi
if [[ -n ${UNIKIT_BUILD:-} ]]; then
	PATH=$UNIKIT_BUILD/bin:$PATH
fi
for tool in vpnkit ip busybox python3 wget; do
	if ! command -v "$tool" >/dev/null; then
		echo "demo: $tool not found (run 'make demo' from the repository root)" >&2
		exit 1
	fi
done

step=${1:-0}
scripts_dir=$(cd "$(dirname "$0")" && pwd)
ns=unikit-demo-$$
tap=vkdemo0
work=$(mktemp -d /tmp/unikit-demo-vpnkit.XXXXXX)
pids=()
cleanup() {
	local pid
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	ip netns delete "$ns" 2>/dev/null || true
	rm -rf "/etc/netns/$ns" "$work"
	rmdir /etc/netns 2>/dev/null || true
}
trap cleanup EXIT

# shellcheck source=scripts/lib-demo.sh
source "$scripts_dir/lib-demo.sh"
in_ns() {
	ip netns exec "$ns" "$@"
}
control() {
	python3 - "$work/vk.ctl" "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
print(s.makefile().readline().strip())
PY
}

heading "vpnkit: a namespace on a TAP device, its traffic carried by host sockets"
ip netns add "$ns"
mkdir -p "/etc/netns/$ns"
: >"/etc/netns/$ns/resolv.conf"
in_ns ip link set lo up
echo "\$ vpnkit --tap $tap --netns /run/netns/$ns --control $work/vk.ctl &"
vpnkit --tap "$tap" --netns "/run/netns/$ns" --control "$work/vk.ctl" \
	--pidfile "$work/vk.pid" >/dev/null 2>"$work/vpnkit.log" &
pids+=($!)
for _ in $(seq 50); do
	[[ -s $work/vk.pid ]] && break
	sleep 0.1
done
[[ -s $work/vk.pid ]] || { cat "$work/vpnkit.log" >&2; exit 1; }
in_ns ip link set "$tap" up

heading "The namespace's own DHCP client (busybox udhcpc) asks for an address"
cat >"$work/udhcpc.sh" <<SH
#!/bin/sh
[ "\$1" = bound ] || exit 0
ip addr add "\$ip/\$mask" dev "\$interface"
ip route add default via "\$router"
echo "nameserver \$dns" > /etc/resolv.conf
echo "   lease: \$ip/\$mask router \$router dns \$dns mtu \$mtu"
SH
chmod +x "$work/udhcpc.sh"
run in_ns busybox udhcpc -i "$tap" -q -n -s "$work/udhcpc.sh" 2>/dev/null
run in_ns ip -br address show dev "$tap"

heading "ping the gateway"
run in_ns ping -c 2 -i 0.2 192.168.65.1 | tail -n 2

heading "A web server on the host's loopback, reached from inside the namespace"
mkdir -p "$work/www"
head -c 8M /dev/urandom >"$work/www/file"
python3 -m http.server 8765 --bind 127.0.0.1 --directory "$work/www" \
	>/dev/null 2>&1 &
pids+=($!)
sleep 0.5
run in_ns wget -q -O "$work/got1" http://192.168.65.2:8765/file
run in_ns wget -q -O "$work/got2" http://host.docker.internal:8765/file
sha256sum "$work/www/file" "$work/got1" "$work/got2" | sed "s|$work/||"

heading "A port forward added at run time: host port 8766 -> the namespace's port 80"
in_ns python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 80)); s.listen(4)
while True:
    c, a = s.accept()
    c.sendall(("hello from inside the namespace; you are %s:%d\n" % a).encode())
    c.close()
' >/dev/null 2>&1 &
pids+=($!)
sleep 0.3
run control '{"op":"add","forward":"tcp:127.0.0.1:8766:192.168.65.3:80"}'
run python3 -c 'import socket; s = socket.create_connection(("127.0.0.1", 8766)); print("  ", s.recv(100).decode().strip())'
run control '{"op":"remove","forward":"tcp:127.0.0.1:8766"}'

heading "What vpnkit counted"
run control '{"op":"stats"}'
echo
echo "demo: vpnkit done. The namespace reached the host through ordinary sockets."
