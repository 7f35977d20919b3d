#!/bin/bash
# SPDX-License-Identifier: MIT
#
# hyperkit_bench.sh: our hyperkit against QEMU/KVM's microvm and q35
# machines: boot time, the VMM's own memory, and virtio-blk throughput.
#
# Everything runs in ONE boot of the nested KVM rig (scripts/kvm-rig.sh),
# where /dev/kvm exists. Each VMM boots the same kernel (Debian's bzImage,
# scripts/guest-kernel.sh), the same busybox initramfs (scripts/
# guest-initramfs.sh) and the same command line, with 256 MiB and 1 vCPU
# and nothing but a serial console:
#
#   ours      hyperkit --kernel-cache=DIR -A -c 1 -m 256M -l com1,stdio
#             -f kexec,... (the kernel unpacked by hyperkit, from its
#             cache; one more boot first, "ours-cold", fills the cache)
#   ours-guest  the same with --kernel-cache=guest: the guest's own
#             decompressor runs, as under QEMU
#   microvm   qemu-system-x86_64 -accel kvm -cpu host -M microvm,rtc=off
#   q35       qemu-system-x86_64 -accel kvm -cpu host -M q35
#
# and the script measures, for --reps boots of each (in an order that
# rotates every repetition):
#
#   boot        seconds from the VMM's start to the line "RIG-INIT" that
#               the initramfs's /init prints on the console (timed by a
#               bash loop that reads the console from a pipe, with
#               $EPOCHREALTIME: no polling delay, no process per line)
#   VmRSS       the VMM's resident memory at that moment (/proc/PID/status)
#   guest RAM   the resident part of its largest anonymous mapping (the
#               guest's RAM, from /proc/PID/smaps): what the guest touched
#   overhead    VmRSS minus guest RAM: the VMM's own memory
#
# The VMM is killed once its numbers are read. Then one more boot of ours
# with two virtio-blk disks in the rig's tmpfs, a 64 MiB-larger raw file
# and a fresh 1 GiB qcow2 image (qcow-tool create), where the guest times
# with /proc/uptime a sequential write of 64 MiB of random data (dd bs=1M
# oflag=direct conv=fsync) and a read back (iflag=direct) on each. Then
# iperf3 from the guest to a server on the rig's loopback, both ways, for
# ours with vpnkit in-process and on a vpnkit daemon, and for QEMU q35 on
# the same daemon and on libslirp (-netdev user); no target, ratios shown.
#
# It prints one table with the medians, ours/microvm and ours/q35, and the
# targets: boot ours/microvm <= 0.7, our overhead < 5 MiB, qcow2 within
# 1.2x of raw (raw MB/s / qcow2 MB/s <= 1.2) for both directions. Under
# software emulation (a host without KVM: the rig runs on TCG) every
# guest instruction that exits is emulated twice over and a boot takes
# tens of seconds: the ratios mean something, the absolute times do not.
# The exit status is 0 whatever the numbers; 1 on a usage or setup error.
#
# Usage: bench/hyperkit_bench.sh [--reps N] [--parts LIST] [--keep] [--verbose]
#   --reps N    boots per VMM (default 3; the median is shown)
#   --parts L   which parts to run, of boot,disk,net (default all three)
#   --keep      keep the scratch directory (consoles, raw results)
#   --verbose   print each measurement as it comes, and the rig's messages
# Needs qemu-system-x86 (the rig and the peers), what scripts/kvm-rig.sh
# needs, and a built hyperkit and qcow-tool (make). Environment: HYPERKIT
# (default build/bin/hyperkit), QCOW_TOOL (build/bin/qcow-tool),
# KVM_RIG_ACCEL (see scripts/kvm-rig.sh). See bench/README.md.

set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
hyperkit=${HYPERKIT:-$root/build/bin/hyperkit}
qcow_tool=${QCOW_TOOL:-$root/build/bin/qcow-tool}
vpnkit=${VPNKIT:-$root/build/bin/vpnkit}
reps=3
parts=boot,disk,net
keep=0
verbose=0

usage() {
	sed -n '4,/^set -e/{/^set -e/d;s/^# \{0,1\}//;p}' "$0"
	exit "${1:-1}"
}

die() {
	echo "hyperkit_bench.sh: $*" >&2
	exit 1
}

note() {
	echo "hyperkit_bench.sh: $*" >&2
}

while [ $# -gt 0 ]; do
	case $1 in
	--reps) reps=${2:?--reps needs a number}; shift ;;
	--parts) parts=${2:?--parts needs a list}; shift ;;
	--keep) keep=1 ;;
	--verbose) verbose=1 ;;
	-h|--help) usage 0 ;;
	*) echo "hyperkit_bench.sh: unknown argument $1" >&2; usage 1 ;;
	esac
	shift
done
[[ $reps =~ ^[1-9][0-9]*$ ]] || die "--reps needs a positive number"
[ -x "$hyperkit" ] || die "no $hyperkit (run make)"
[ -x "$qcow_tool" ] || die "no $qcow_tool (run make)"
[ -x "$vpnkit" ] || die "no $vpnkit (run make)"
command -v iperf3 >/dev/null || die "iperf3 not found (Debian package iperf3)"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not found (qemu-system-x86)"
hyperkit=$(cd "$(dirname "$hyperkit")" && pwd)/$(basename "$hyperkit")
qcow_tool=$(cd "$(dirname "$qcow_tool")" && pwd)/$(basename "$qcow_tool")
vpnkit=$(cd "$(dirname "$vpnkit")" && pwd)/$(basename "$vpnkit")

work=$(mktemp -d "${TMPDIR:-/tmp}/hyperkit-bench.XXXXXX")
cleanup() {
	if [ "$keep" = 1 ]; then
		note "scratch files kept in $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

eval "$("$root/scripts/guest-kernel.sh")" || die "scripts/guest-kernel.sh failed"
kernel=$GUEST_KERNEL

# The guest: /init prints RIG-INIT (the marker) before anything else of
# ours; the script then waits to be killed, or with "-- dd" times the
# disks and ends.
cat >"$work/run.sh" <<'EOF'
#!/bin/sh
if [ "$1" = net ]; then
	udhcpc -i eth0 -n -q -t 10 -T 3 >/dev/null 2>&1 || { echo "HKB-NET-NOLEASE"; exit 1; }
	for dir in up down; do
		flag=
		[ $dir = down ] && flag=-R
		# The receiver's line: "[  5]   0.00-5.00   sec  X MBytes  Y Mbits/sec  receiver"
		r=$(iperf3 -c "$HKBSERVER" -t 5 -f m $flag 2>&1 | awk '/receiver/ { print $(NF - 2) }')
		echo "HKB-NET $dir ${r:-ERR}"
	done
	exit 0
fi
if [ "$1" != dd ]; then
	sleep 600
	exit 0
fi
dd if=/dev/urandom of=/tmp/src bs=1M count=64 iflag=fullblock 2>/dev/null || exit 1
for dev in vda vdb; do
	[ -b /dev/$dev ] || { echo "HKB-NODISK $dev"; exit 1; }
	t0=$(cut -d' ' -f1 /proc/uptime)
	dd if=/tmp/src of=/dev/$dev bs=1M oflag=direct conv=fsync 2>/dev/null || exit 1
	t1=$(cut -d' ' -f1 /proc/uptime)
	dd if=/dev/$dev of=/dev/null bs=1M count=64 iflag=direct 2>/dev/null || exit 1
	t2=$(cut -d' ' -f1 /proc/uptime)
	echo "HKB-DD $dev $t0 $t1 $t2"
done
EOF
"$root/scripts/guest-initramfs.sh" -o "$work/initrd.gz" -r "$work/run.sh" \
	-m virtio_pci,virtio_blk,virtio_net -b iperf3 >"$work/initramfs.log" 2>&1 ||
	die "scripts/guest-initramfs.sh failed: $(tail -n 3 "$work/initramfs.log")"

cmdline="console=ttyS0 panic=-1 quiet initcall_blacklist=cmos_init mitigations=off tsc=reliable no_timer_check cryptomgr.notests"

# The rig's side, in bash (for $EPOCHREALTIME and read -t). Results go to
# $work/results: "boot VMM REP SECONDS VMRSS_KB GUESTRSS_KB" lines.
cat >"$work/inner.sh" <<EOF
#!/bin/bash
W=$work
K=$kernel
I=$work/initrd.gz
C="$cmdline"
HK=$hyperkit
QT=$qcow_tool
VK=$vpnkit
REPS=$reps
PARTS=,$parts,
VERBOSE=$verbose
EOF
cat >>"$work/inner.sh" <<'EOF'
set -u
cd "$W" || exit 125
qemu=(qemu-system-x86_64 -accel kvm -cpu host -m 256M -smp 1 -nodefaults
	-no-user-config -display none -no-reboot -serial stdio
	-kernel "$K" -initrd "$I" -append "$C")

# vmm_cmd VMM: the command line of VMM, in the array cmd.
vmm_cmd() {
	case $1 in
	ours|ours-cold) cmd=("$HK" --kernel-cache=/tmp/hkb-kc -A -c 1 -m 256M
		-l com1,stdio -f "kexec,$K,$I,$C") ;;
	ours-guest) cmd=("$HK" --kernel-cache=guest -A -c 1 -m 256M
		-l com1,stdio -f "kexec,$K,$I,$C") ;;
	microvm) cmd=("${qemu[@]}" -M microvm,rtc=off) ;;
	q35) cmd=("${qemu[@]}" -M q35) ;;
	esac
}

# boot VMM REP: start VMM, read its console from a FIFO until RIG-INIT,
# take the time and its memory, kill it.
boot() {
	# The FIFO lives in the rig's tmpfs: the 9P share cannot hold one.
	local vmm=$1 rep=$2 fifo=/run/hkb-console.fifo log=$W/$1-$2.console
	local t0 t1 pid fd line found=0 rss= guest= k v
	vmm_cmd "$vmm"
	rm -f "$fifo"
	mkfifo "$fifo"
	t0=$EPOCHREALTIME
	"${cmd[@]}" <"/dev/null" >"$fifo" 2>"$W/$vmm-$rep.err" &
	pid=$!
	exec {fd}<"$fifo"
	: >"$log"
	while IFS= read -r -t 300 -u "$fd" line; do
		printf '%s\n' "$line" >>"$log"
		if [[ $line == *RIG-INIT* ]]; then
			t1=$EPOCHREALTIME
			found=1
			break
		fi
	done
	if ((found)); then
		while read -r k v _; do
			[[ $k == VmRSS: ]] && rss=$v
		done <"/proc/$pid/status"
		# The guest's RAM: the largest mapping with no file behind it.
		guest=$(awk '
			/^[0-9a-f]+-[0-9a-f]+ / { anon = (NF < 6 || $6 ~ /^\[/) }
			/^Size:/ { size = $2 }
			/^Rss:/ { if (anon && size > best) { best = size; rss = $2 } }
			END { print rss + 0 }' "/proc/$pid/smaps")
	fi
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	exec {fd}<&-
	if ((found)); then
		local secs
		secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
		echo "boot $vmm $rep $secs $rss $guest" >>"$W/results"
		((VERBOSE)) && echo "  $vmm run $rep: ${secs}s VmRSS ${rss}kB guest ${guest}kB" >&2
	else
		echo "boot $vmm $rep ERR" >>"$W/results"
		echo "$vmm run $rep: no RIG-INIT on the console (see $log, $W/$vmm-$rep.err)" >>"$W/errors"
	fi
	return 0
}

vmms=(ours ours-guest microvm q35)
[[ $PARTS == *,boot,* ]] || REPS=0
# The first boot of ours unpacks the kernel into an empty cache.
((REPS == 0)) || boot ours-cold 0
for ((rep = 0; rep < REPS; rep++)); do
	for ((k = 0; k < 4; k++)); do
		boot "${vmms[(k + rep) % 4]}" "$rep"
	done
	echo "hyperkit_bench.sh: repetition $((rep + 1))/$REPS done" >&2
done

# Throughput: a raw file and a fresh qcow2 image in the rig's tmpfs.
disk() {
mkdir -p /tmp/hkb
truncate -s 1G /tmp/hkb/disk.raw
"$QT" create -q -f qcow2 /tmp/hkb/disk.qcow2 1G || echo "qcow-tool create failed" >>"$W/errors"
timeout -k 10 600 "$HK" -A -c 1 -m 256M -s 0:0,hostbridge \
	-s 2,virtio-blk,/tmp/hkb/disk.raw \
	-s 3,virtio-blk,file:///tmp/hkb/disk.qcow2,format=qcow \
	-s 31,lpc -l com1,stdio -f "kexec,$K,$I,$C -- dd" \
	</dev/null >"$W/dd.console" 2>"$W/dd.err"
echo "dd exit $?" >>"$W/results"
tr -d '\r' <"$W/dd.console" | grep '^HKB-DD ' >>"$W/results"
}
[[ $PARTS != *,disk,* ]] || disk

# Network: iperf3 from the guest to a server on the rig's loopback (5 s
# each way), through vpnkit linked in, through a vpnkit daemon, and for
# QEMU (q35, virtio-net-pci) through the same daemon (its stream netdev)
# and through its own user networking (libslirp), the usual rootless one.
[[ $PARTS == *,net,* ]] || exit 0
iperf3 -s -D -I /run/hkb-iperf3.pid >/dev/null 2>&1
"$VK" --listen /run/hkb-vpnkit.sock >"$W/vpnkit.log" 2>&1 &
vk=$!
for _ in $(seq 50); do [ -S /run/hkb-vpnkit.sock ] && break; sleep 0.1; done
net() {	# NAME SERVER COMMAND...
	local name=$1 server=$2
	shift 2
	timeout -k 10 300 "$@" -append "$C HKBSERVER=$server -- net" \
		</dev/null >"$W/net-$name.console" 2>"$W/net-$name.err"
	echo "net-$name exit $?" >>"$W/results"
	tr -d '\r' <"$W/net-$name.console" | sed -n "s/^HKB-NET /net $name /p" >>"$W/results"
}
# hyperkit's -f takes the command line: -append is turned into it.
hk_net() {
	local name=$1 server=$2 dev=$3
	timeout -k 10 300 "$HK" -A -c 1 -m 256M -s 0:0,hostbridge -s 2,$dev \
		-s 31,lpc -l com1,stdio -f "kexec,$K,$I,$C HKBSERVER=$server -- net" \
		</dev/null >"$W/net-$name.console" 2>"$W/net-$name.err"
	echo "net-$name exit $?" >>"$W/results"
	tr -d '\r' <"$W/net-$name.console" | sed -n "s/^HKB-NET /net $name /p" >>"$W/results"
}
hk_net ours-inproc 192.168.65.2 virtio-vpnkit,inprocess
hk_net ours-daemon 192.168.65.2 virtio-vpnkit,path=/run/hkb-vpnkit.sock
q=(qemu-system-x86_64 -accel kvm -cpu host -m 256M -smp 1 -nodefaults
	-no-user-config -display none -no-reboot -serial stdio -M q35
	-kernel "$K" -initrd "$I")
net q35-vpnkit 192.168.65.2 "${q[@]}" \
	-netdev stream,id=n0,server=off,addr.type=unix,addr.path=/run/hkb-vpnkit.sock \
	-device virtio-net-pci,netdev=n0
net q35-slirp 10.0.2.2 "${q[@]}" -netdev user,id=n0 -device virtio-net-pci,netdev=n0
kill "$vk" "$(cat /run/hkb-iperf3.pid 2>/dev/null)" 2>/dev/null
exit 0
EOF
chmod +x "$work/inner.sh"

read -r load _ </proc/loadavg
if awk -v l="$load" 'BEGIN { exit !(l > 0.5) }'; then
	note "load average $load: other work will add noise"
fi
note "parts $parts ($reps boots of each VMM for boot), in one rig boot (scratch $work)"
rig_rc=0
rig_err=$work/rig.err
(cd "$root" && "$root/scripts/kvm-rig.sh" --mem 1G --timeout 1800 --share "$work" \
	-- "$work/inner.sh") 2>"$rig_err" || rig_rc=$?
[ "$verbose" = 1 ] && cat "$rig_err" >&2
if [ "$rig_rc" != 0 ]; then
	tail -n 20 "$rig_err" >&2
	die "kvm-rig.sh exit $rig_rc"
fi
[ -s "$work/results" ] || die "no results from the rig"

# --- the table ------------------------------------------------------------

# values VMM FIELD: one boot field (4 seconds, 5 VmRSS, 6 guest RAM,
# 7 overhead, in MiB for the memory ones) of every run of VMM.
values() {
	awk -v v="$1" -v f="$2" '
		$1 == "boot" && $2 == v {
			if ($4 == "ERR") { print "ERR"; next }
			if (f == 4) print $4
			else if (f == 7) print ($5 - $6) / 1024
			else print $f / 1024
		}' "$work/results"
}

median() {
	sort -g | awk '
		/ERR/ { err = 1; next } NF { v[++n] = $1 }
		END {
			if (n == 0) { print (err ? "ERR" : "n/a"); exit }
			if (n % 2) m = v[(n + 1) / 2]; else m = (v[n / 2] + v[n / 2 + 1]) / 2
			printf "%.2f\n", m
		}'
}

num() { [[ $1 =~ ^[0-9.]+$ ]]; }

ratio() {
	if num "$1" && num "$2"; then
		awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.2f\n", a / b }'
	else
		echo -
	fi
}

# mark VALUE OP LIMIT: "ok" or "MISS" for VALUE OP LIMIT (le, lt).
mark() {
	if ! num "$1"; then
		echo "MISS (no value)"
	elif awk -v a="$1" -v b="$3" -v op="$2" 'BEGIN { exit !(op == "le" ? a <= b : a < b) }'; then
		echo ok
	else
		echo MISS
	fi
}

if [[ ,$parts, == *,boot,* ]]; then
	fmt='%-24s %-5s %8s %9s %10s %8s %8s %12s %9s  %s\n'
	echo
	printf "$fmt" row unit ours ours-cold ours-guest microvm q35 ours/microvm ours/q35 target
	for row in boot rss guest overhead; do
		case $row in
		boot) f=4 unit=s name="boot to init marker" ;;
		rss) f=5 unit=MiB name="VMM VmRSS at marker" ;;
		guest) f=6 unit=MiB name="guest RAM resident" ;;
		overhead) f=7 unit=MiB name="VMM overhead (RSS-RAM)" ;;
		esac
		declare -A m=()
		for v in ours ours-cold ours-guest microvm q35; do
			m[$v]=$(values "$v" "$f" | median)
		done
		target=-
		case $row in
		boot) target="ours/microvm <= 0.7: $(mark "$(ratio "${m[ours]}" "${m[microvm]}")" le 0.7)"
			target+="; ours-guest/microvm $(ratio "${m[ours-guest]}" "${m[microvm]}")" ;;
		overhead) target="ours < 5 MiB: $(mark "${m[ours]}" lt 5)" ;;
		esac
		printf "$fmt" "$name" "$unit" "${m[ours]}" "${m[ours-cold]}" \
			"${m[ours-guest]}" "${m[microvm]}" "${m[q35]}" \
			"$(ratio "${m[ours]}" "${m[microvm]}")" "$(ratio "${m[ours]}" "${m[q35]}")" "$target"
		unset m
	done
fi

# The disk rows: MB/s (MiB/s) from the guest's /proc/uptime stamps.
mbps() {	# DEV write|read
	awk -v d="$1" -v w="$2" '
		$1 == "HKB-DD" && $2 == d {
			t = (w == "write") ? $4 - $3 : $5 - $4
			if (t > 0) printf "%.1f\n", 64 / t
			else print "ERR"
		}' "$work/results"
}
if [[ ,$parts, == *,disk,* ]]; then
	echo
	fmt2='%-24s %-5s %9s %9s %11s  %s\n'
	printf "$fmt2" "virtio-blk (ours)" unit raw qcow2 raw/qcow2 target
	for dir in write read; do
		r=$(mbps vda "$dir")
		q=$(mbps vdb "$dir")
		rq=$(ratio "${r:-}" "${q:-}")
		printf "$fmt2" "dd 64 MiB $dir direct" MiB/s "${r:-ERR}" "${q:-ERR}" "$rq" \
			"raw/qcow2 <= 1.2: $(mark "$rq" le 1.2)"
	done
fi
if [[ ,$parts, == *,net,* ]]; then
	echo
	fmt3='%-24s %-6s %11s %11s %11s %11s %9s %9s\n'
	printf "$fmt3" "iperf3 guest<->rig host" unit ours-inproc ours-daemon q35-vpnkit q35-slirp "ours/slirp" "ours/q35vk"
	for dir in up down; do
		declare -A n=()
		for v in ours-inproc ours-daemon q35-vpnkit q35-slirp; do
			n[$v]=$(awk -v v="$v" -v d="$dir" '$1 == "net" && $2 == v && $3 == d { print $4 }' "$work/results")
			n[$v]=${n[$v]:-ERR}
		done
		label="guest->host"
		[ "$dir" = down ] && label="host->guest"
		printf "$fmt3" "$label 5 s" Mbit/s "${n[ours-inproc]}" "${n[ours-daemon]}" \
			"${n[q35-vpnkit]}" "${n[q35-slirp]}" "$(ratio "${n[ours-inproc]}" "${n[q35-slirp]}")" \
			"$(ratio "${n[ours-inproc]}" "${n[q35-vpnkit]}")"
		unset n
	done
fi
echo
echo "All in one boot of the nested KVM rig (QEMU TCG, load average $load at the start)."
[[ ,$parts, != *,boot,* ]] ||
	echo "Boot rows: median of $reps boot(s) per VMM, 256 MiB, 1 vCPU. ours: the kernel"
	echo "unpacked by hyperkit and read from its cache (--kernel-cache); ours-cold: the one"
	echo "boot that unpacked it into the empty cache; ours-guest: the guest decompresses"
	echo "it, as under QEMU (--kernel-cache=guest)."
[[ ,$parts, != *,disk,* ]] ||
	echo "Disk rows: one boot of ours, bs=1M, random data; $(grep '^dd exit' "$work/results")."
[[ ,$parts, != *,net,* ]] || {
	echo "Network rows: one boot each, 256 MiB, 1 vCPU; ours = hyperkit with vpnkit linked in"
	echo "(inproc) or a vpnkit daemon; QEMU q35 with virtio-net-pci on the same daemon or on slirp."
}
if [ -s "$work/errors" ]; then
	echo "Problems:"
	sed 's/^/  /' "$work/errors"
fi
exit 0
