#!/bin/bash
# SPDX-License-Identifier: MIT
#
# vpnkit against a real guest: QEMU boots Debian's kernel with a virtio-net
# card whose other end is the vpnkit daemon; busybox in the guest gets a
# DHCP lease and downloads a few MB of random bytes from an HTTP server on
# the host's 127.0.0.1, through 192.168.65.2; the checksums must agree.
#
#   qemu-stream   QEMU's -netdev stream (32-bit big-endian frame lengths)
#                 connects to vpnkit's socket itself.
#   hyperkit      the same through hyperkit's protocol (VMN3T handshake,
#                 16-bit little-endian lengths): QEMU listens, and
#                 vmnet-client (a test program) speaks hyperkit's protocol
#                 to vpnkit and relays frames to QEMU's stream socket.
#
# Each case boots the guest once (software emulation is fine: about 5 s).
# The guest kernel is fetched once by scripts/guest-kernel.sh.
set -uo pipefail

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_qemu.sh"

e2e_init vpnkit_qemu

# The guest's side of every case: lease, download, checksum.
cat >"$T/guest-run" <<'EOF'
#!/bin/sh
ip link set eth0 up
if ! udhcpc -i eth0 -n -q -t 10 -T 1; then
	echo "RIG-FAIL=no DHCP lease"
	exit 2
fi
ip -4 addr show dev eth0
ip -4 route
# (Debian 12's static busybox wget crashes with -T: timeout instead.)
if ! timeout 60 wget -q -O /tmp/blob "$RIG_URL"; then
	echo "RIG-FAIL=wget $RIG_URL"
	exit 3
fi
echo "RIG-SHA256=$(sha256sum /tmp/blob | cut -d' ' -f1)"
EOF

# wait_socket PATH PID: wait up to 5 s for PID to create the socket PATH.
wait_socket() {
	local i
	for ((i = 0; i < 100; i++)); do
		[[ -S $1 ]] && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}

# start_vpnkit DIR: vpnkit listening on DIR/vpnkit.sock (pid VPNKIT_PID).
start_vpnkit() {
	local dir=$1
	vpnkit --listen "$dir/vpnkit.sock" --pidfile "$dir/vpnkit.pid" -v \
		>"$dir/vpnkit.log" 2>&1 &
	VPNKIT_PID=$!
	wait_socket "$dir/vpnkit.sock" "$VPNKIT_PID"
}

# start_http DIR: an HTTP server for $T/www on the host's loopback only
# (pid HTTP_PID), and the URL the guest reaches it by (url).
start_http() {
	local dir=$1 i port=
	"$PYTHON" -u -m http.server --bind 127.0.0.1 --directory "$T/www" 0 \
		>"$dir/http.log" 2>&1 &
	HTTP_PID=$!
	for ((i = 0; i < 100; i++)); do
		port=$(sed -n 's/^Serving HTTP on .* port \([0-9]*\).*/\1/p' "$dir/http.log")
		[[ -z $port ]] || break
		sleep 0.05
	done
	url=http://192.168.65.2:$port/blob
	[[ -n $port ]]
}

# start_peers CASE DIR: vpnkit and the HTTP server, or not ok.
start_peers() {
	if ! start_vpnkit "$2"; then
		not_ok "$1/lease" "vpnkit did not create its socket" "$2/vpnkit.log"
		stop "$VPNKIT_PID"
		return 1
	fi
	if ! start_http "$2"; then
		not_ok "$1/lease" "the HTTP server did not start" "$2/http.log"
		stop "$VPNKIT_PID" "$HTTP_PID"
		return 1
	fi
}

# stop PID...: end the processes this script started.
stop() {
	local pid
	for pid in "$@"; do
		[[ -n $pid ]] || continue
		kill "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
}

# verdict CASE DIR RC: the lease and download lines of one boot.
verdict() {
	local name=$1 dir=$2 rc=$3 log=$2/console sum
	local details=("$(qemu_rig_tail "$log")")
	[[ ! -s $dir/vpnkit.log ]] ||
		details+=("vpnkit log (last lines):" "$(tail -n 10 "$dir/vpnkit.log")")
	[[ ! -s $dir/client.log ]] ||
		details+=("vmnet-client log (last lines):" "$(tail -n 10 "$dir/client.log")")
	if grep -aq '^udhcpc-bound 192\.168\.65\.[0-9]*/24 router 192\.168\.65\.1 ' "$log"; then
		ok "$name/lease"
	else
		not_ok "$name/lease" "no lease in 192.168.65.0/24 with router 192.168.65.1 (guest exit $rc)" \
			"${details[@]}"
		not_ok "$name/download" "no lease, no download"
		return
	fi
	sum=$(grep -a -o 'RIG-SHA256=[0-9a-f]*' "$log" | cut -d= -f2)
	if ((rc == 0)) && [[ $sum == "$want" ]]; then
		ok "$name/download"
	else
		not_ok "$name/download" "guest exit $rc; sha256 in the guest '${sum}', on the host $want" \
			"${details[@]}"
	fi
}

case_qemu_stream() {
	local dir=$T/qemu-stream rc=0
	mkdir -p "$dir"
	start_peers qemu-stream "$dir" || return
	qemu_rig_boot "$dir/console" "RIG_URL=$url" \
		-netdev "stream,id=n0,server=off,addr.type=unix,addr.path=$dir/vpnkit.sock" \
		-device virtio-net-pci,netdev=n0 || rc=$?
	stop "$VPNKIT_PID" "$HTTP_PID"
	verdict qemu-stream "$dir" "$rc"
}

case_hyperkit() {
	local dir=$T/hyperkit rc=0 client_pid=
	mkdir -p "$dir"
	if ! have_cmd vmnet-client; then
		not_ok hyperkit/lease "vmnet-client is not built"
		return
	fi
	start_peers hyperkit "$dir" || return
	qemu_rig_start "$dir/console" "RIG_URL=$url" \
		-netdev "stream,id=n0,server=on,addr.type=unix,addr.path=$dir/qemu.sock" \
		-device virtio-net-pci,netdev=n0
	if wait_socket "$dir/qemu.sock" "$RIG_PID"; then
		vmnet-client --socket "$dir/vpnkit.sock" --bridge-qemu "$dir/qemu.sock" \
			>"$dir/client.log" 2>&1 &
		client_pid=$!
	fi
	qemu_rig_wait "$dir/console" || rc=$?
	stop "$client_pid" "$VPNKIT_PID" "$HTTP_PID"
	verdict hyperkit "$dir" "$rc"
}

if ! have_cmd qemu-system-x86_64; then
	not_ok setup "qemu-system-x86_64 is missing (Debian package qemu-system-x86)"
	e2e_finish
fi
if ! have_cmd vpnkit; then
	not_ok setup "vpnkit is not built"
	e2e_finish
fi
if ! qemu_rig_kernel 2>"$T/kernel.log"; then
	not_ok setup "the guest kernel could not be fetched" "$T/kernel.log"
	e2e_finish
fi
RIG_INITRD=$T/initrd.gz
if ! qemu_rig_initramfs "$RIG_INITRD" "$T/guest-run" -m virtio_pci,virtio_net \
	>"$T/initramfs.log" 2>&1; then
	not_ok setup "the initramfs could not be built" "$T/initramfs.log"
	e2e_finish
fi

# The file to download.
mkdir -p "$T/www"
head -c $((4 << 20)) /dev/urandom >"$T/www/blob"
want=$(sha256sum "$T/www/blob" | cut -d' ' -f1)

# Each case runs in a subshell of its own, with its own daemons, all ended
# before it returns (e2e_collect waits for every child of this shell).
e2e_spawn qemu-stream case_qemu_stream
e2e_spawn hyperkit case_hyperkit
e2e_collect
e2e_finish
