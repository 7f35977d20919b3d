#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Run a command inside a QEMU guest that has /dev/kvm: the nested-KVM rig
# for the hypervisor's tests on a host without a usable /dev/kvm.
#
# Usage: scripts/kvm-rig.sh [--mem SIZE] [--cpus N] [--timeout S]
#            [--share DIR]... [--env NAME[=VALUE]]... [--verbose]
#            -- [NAME=VALUE]... COMMAND [ARGS...]
#
#   --mem SIZE     guest memory, as QEMU's -m takes it (default 512M)
#   --cpus N       guest CPUs (default 1: under emulation a second one
#                  costs more host CPU than it saves)
#   --timeout S    seconds before the guest is stopped (default 600)
#   --share DIR    the host directory DIR, read-write at the same path in
#                  the guest (for results and images); repeatable
#   --env NAME[=VALUE]  put NAME in COMMAND's environment, with VALUE or
#                  the host's value; NAME=VALUE words before COMMAND do the
#                  same (as with env(1))
#   --verbose      print the guest's console (kernel messages) on stderr
#                  after the run
#
# QEMU (with KVM if the host has a usable /dev/kvm, else software emulation
# with -cpu max, whose CPU has AMD's SVM) boots Debian's 6.1 kernel
# (scripts/guest-kernel.sh) from a busybox initramfs (scripts/
# guest-initramfs.sh, built once and cached by a hash of what goes in) that
# loads kvm-amd (or kvm-intel), virtio-pci, virtio-console and 9P. The
# guest mounts the host's / read-only over 9P, fresh tmpfs file systems on
# /tmp, /run and /dev/shm, /proc, /sys and /dev, the --share directories
# read-write, chroots into it and runs COMMAND in the current directory,
# with stdin from /dev/null and an environment of PATH, HOME, TERM, LANG,
# LC_ALL, every UNIKIT_* variable and those given. COMMAND's stdout and
# stderr come back on two virtio-serial ports, streamed to this script's
# stdout and stderr; the kernel's messages stay on the serial console
# (shown with --verbose, or when the rig fails). The guest then powers off.
#
# Exit status: COMMAND's, or 124 if the guest ran out of time, 125 if the
# rig failed (no guest, a failed mount, a working directory the guest does
# not have: under /tmp it needs --share).
#
# Settings (environment): KVM_RIG_ACCEL=auto|kvm|tcg (auto: KVM only if
# /dev/kvm opens, answers API version 12 and creates a VM, and the CPU
# shows vmx or svm), UNIKIT_CACHE (where the kernel and initramfs are
# cached, default /var/tmp/unikit-cache).
#
# Needs qemu-system-x86 (its 9P and virtio-serial devices), python3 (the
# KVM probe), and what guest-kernel.sh and guest-initramfs.sh need: apt,
# dpkg, kmod, xz-utils (busybox-static and the kernel are fetched with
# `apt-get download`).
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib-guest.sh"

prog=${0##*/}

die() {
	echo "$prog: $*" >&2
	exit 125
}

usage() {
	sed -n '4,/^set -u/{/^set -u/d;s/^# \{0,1\}//;p}' "$0"
	exit "${1:-0}"
}

mem=512M
cpus=1
timeout_s=600
verbose=
shares=()
envs=()

# need_arg OPTION COUNT: the option has its value.
need_arg() {
	(($2 >= 2)) || die "$1 needs a value (see --help)"
}

while (($#)); do
	case $1 in
	--mem) need_arg "$1" $# && mem=$2 && shift ;;
	--cpus) need_arg "$1" $# && cpus=$2 && shift ;;
	--timeout) need_arg "$1" $# && timeout_s=$2 && shift ;;
	--share) need_arg "$1" $# && shares+=("$2") && shift ;;
	--env) need_arg "$1" $# && envs+=("$2") && shift ;;
	--verbose) verbose=1 ;;
	-h | --help) usage 0 ;;
	--)
		shift
		break
		;;
	*) die "unknown argument: $1 (see --help)" ;;
	esac
	shift
done
while (($#)) && [[ $1 =~ ^[A-Za-z_][A-Za-z0-9_]*= ]]; do
	envs+=("$1")
	shift
done
(($#)) || die "no command (see --help)"
[[ $cpus =~ ^[1-9][0-9]*$ ]] || die "--cpus wants a number: $cpus"
[[ $timeout_s =~ ^[1-9][0-9]*$ ]] || die "--timeout wants seconds: $timeout_s"
[[ $mem =~ ^[1-9][0-9]*[KMGkmg]?$ ]] || die "--mem wants a size like 512M: $mem"
command -v qemu-system-x86_64 >/dev/null ||
	die "qemu-system-x86_64 not found (Debian package qemu-system-x86)"

# kvm_usable: can QEMU use the host's /dev/kvm? The device can exist and
# open without hardware virtualisation behind it (a sandbox's own KVM):
# ask it for its API version and a VM, and ask the CPU for vmx or svm.
kvm_usable() {
	[[ -c /dev/kvm && -r /dev/kvm && -w /dev/kvm ]] || return 1
	grep -qwE 'vmx|svm' /proc/cpuinfo || return 1
	python3 - <<'EOF' 2>/dev/null
import fcntl, os, sys
fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
if fcntl.ioctl(fd, 0xAE00) != 12:      # KVM_GET_API_VERSION
    sys.exit(1)
os.close(fcntl.ioctl(fd, 0xAE01, 0))   # KVM_CREATE_VM
EOF
}

case ${KVM_RIG_ACCEL:-auto} in
auto) if kvm_usable; then accel=kvm; else accel=tcg; fi ;;
kvm | tcg) accel=$KVM_RIG_ACCEL ;;
*) die "KVM_RIG_ACCEL must be auto, kvm or tcg" ;;
esac
if [[ $accel == kvm ]]; then
	accel_args=(-accel kvm -cpu host)
	# The guest's CPU is the host's: its vendor decides the KVM module.
	if grep -qw vmx /proc/cpuinfo; then kvm_mod=kvm_intel; else kvm_mod=kvm_amd; fi
else
	# TCG's "max" CPU is AMD-flavoured: it has SVM, not VMX.
	accel_args=(-accel tcg -cpu max)
	kvm_mod=kvm_amd
fi

# The working directory, the shares and the environment, checked here so
# that the guest never sees a path it cannot mount.
cwd=$(pwd -P) || die "no working directory"
share_paths=()
for s in "${shares[@]}"; do
	[[ -d $s ]] || die "--share: not a directory: $s"
	p=$(cd "$s" && pwd -P) || die "--share: cannot enter $s"
	[[ $p != / ]] || die "--share: / is shared read-only already"
	[[ $p != *$'\n'* && $p != *,* ]] || die "--share: unusable path (comma or newline): $p"
	share_paths+=("$p")
done
# The guest mounts fresh file systems on /tmp, /run and /dev/shm, which
# would hide a checkout or a build there (CI may clone under /tmp): share
# the repository, the build directory and the working directory when they
# live there and no share covers them yet.
rig_root=$(cd "$(dirname "$0")/.." && pwd -P)
for p in "$rig_root" ${UNIKIT_BUILD:+"$UNIKIT_BUILD"} "$cwd"; do
	[[ -d $p ]] || continue
	p=$(cd "$p" && pwd -P) || continue
	case $p in
	/tmp/* | /run/* | /dev/shm/*) ;;
	*) continue ;;
	esac
	covered=0
	for q in "${share_paths[@]}"; do
		[[ $p == "$q" || $p == "$q"/* ]] && covered=1
	done
	((covered)) || share_paths+=("$p")
done

# Environment for COMMAND: the defaults, then --env and NAME=VALUE words.
declare -A env_val=()
env_order=()
set_env() {
	[[ -n ${env_val[$1]+x} ]] || env_order+=("$1")
	env_val[$1]=$2
}
for n in PATH HOME TERM LANG LC_ALL; do
	[[ -z ${!n+x} ]] || set_env "$n" "${!n}"
done
while IFS= read -r n; do
	set_env "$n" "${!n}"
done < <(compgen -e | grep '^UNIKIT_' || :)
for e in "${envs[@]}"; do
	n=${e%%=*}
	[[ $n =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "--env: bad name: $n"
	if [[ $e == *=* ]]; then
		set_env "$n" "${e#*=}"
	elif [[ -n ${!n+x} ]]; then
		set_env "$n" "${!n}"
	fi
done

# squote WORD: WORD quoted for any POSIX shell.
squote() {
	printf "'%s'" "${1//\'/\'\\\'\'}"
}

# --- The guest ---------------------------------------------------------

eval "$("$here/guest-kernel.sh")" || die "no guest kernel (scripts/guest-kernel.sh failed)"
kernel=${GUEST_VMLINUX:-$GUEST_KERNEL}
[[ -f $kernel && -d $GUEST_MODULES ]] || die "the guest kernel is incomplete: $kernel"

# The guest side, copied into the initramfs as /rig/run. The job's
# directory (RIG_JOB, on the kernel command line) holds what changes from
# run to run: "cmd", the script COMMAND runs in, and "shares", lines of
# "TAG PATH"; the guest reads it through the host's / before /tmp is
# covered by a fresh tmpfs.
read -r -d '' guest_run <<'EOF'
#!/bin/sh
# kvm-rig's guest side: mount the host's / and the shares, chroot, run.
fail() {
	echo "RIG-SETUP-FAILED=$*"
	exit 125
}
# t STAGE: when it was reached, for --verbose.
t() {
	read -r up _ </proc/uptime
	echo "RIG-T=$up $1"
}
t run
r=/host
o=trans=virtio,version=9p2000.L,msize=512000
hostname kvm-rig
mkdir -p $r /rig/job
# The host's files do not change under a rig's run: let the guest cache
# them (cache=loose), which makes programs start much faster.
mount -t 9p -o $o,ro,cache=loose host $r || fail "mount the host's /"
t mounted
cp "$r$RIG_JOB/cmd" "$r$RIG_JOB/shares" /rig/job/ || fail "read the job in $RIG_JOB"
mount -t tmpfs -o mode=1777 tmp $r/tmp || fail "mount /tmp"
mount -t tmpfs -o mode=755 run $r/run || fail "mount /run"
mount -t proc proc $r/proc || fail "mount /proc"
mount -t sysfs sys $r/sys || fail "mount /sys"
mount -t devtmpfs dev $r/dev || fail "mount /dev"
mkdir -p $r/dev/pts $r/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts $r/dev/pts || fail "mount /dev/pts"
mount -t tmpfs -o mode=1777 shm $r/dev/shm || fail "mount /dev/shm"
[ -e $r/dev/fd ] || ln -s /proc/self/fd $r/dev/fd
ln -sf /proc/self/fd/0 $r/dev/stdin
ln -sf /proc/self/fd/1 $r/dev/stdout
ln -sf /proc/self/fd/2 $r/dev/stderr
while read -r tag path; do
	mkdir -p "$r$path" 2>/dev/null
	mount -t 9p -o $o "$tag" "$r$path" || fail "mount the share $path"
done </rig/job/shares
# COMMAND's output: the virtio-serial ports named "out" and "err".
out=
err=
for p in /sys/class/virtio-ports/*; do
	case $(cat "$p/name" 2>/dev/null) in
	out) out=/dev/${p##*/} ;;
	err) err=/dev/${p##*/} ;;
	esac
done
[ -c "$out" ] && [ -c "$err" ] || fail "no virtio-serial ports for the output"
mkdir -p $r/run/kvm-rig
cp /rig/job/cmd $r/run/kvm-rig/cmd
t command
echo RIG-COMMAND
chroot $r /bin/sh /run/kvm-rig/cmd </dev/null >"$out" 2>"$err"
EOF

# The initramfs, cached under a hash of everything that goes into it.
modules=("$kvm_mod" virtio_pci virtio_console 9pnet_virtio 9p)
key=$({
	cat "$here/guest-initramfs.sh"
	printf '%s\n' "$guest_run" "$GUEST_MODULES" "${modules[*]}"
	ls -d "$guest_cache"/busybox-static-*/ 2>/dev/null
} | sha256sum | cut -c1-16)
initrd=$guest_cache/kvm-rig-$key.cpio.gz
if [[ ! -f $initrd ]]; then
	mkdir -p "$guest_cache" || die "cannot create $guest_cache"
	tmp_run=$(mktemp "${TMPDIR:-/tmp}/kvm-rig-run.XXXXXX") || die "mktemp failed"
	printf '%s\n' "$guest_run" >"$tmp_run"
	tmp_initrd=$(mktemp "$guest_cache/.kvm-rig.XXXXXX") || die "mktemp failed"
	if ! "$here/guest-initramfs.sh" -o "$tmp_initrd" -r "$tmp_run" \
		-M "$GUEST_MODULES" -m "$(
			IFS=,
			echo "${modules[*]}"
		)" >&2; then
		rm -f "$tmp_run" "$tmp_initrd"
		die "building the initramfs failed"
	fi
	rm -f "$tmp_run"
	chmod 644 "$tmp_initrd"
	mv "$tmp_initrd" "$initrd"
	# Images of older versions of this script: gone after a day.
	find "$guest_cache" -maxdepth 1 -name 'kvm-rig-*.cpio.gz' -mtime +1 \
		! -name "${initrd##*/}" -delete 2>/dev/null
fi

# --- The job -----------------------------------------------------------

job=$(mktemp -d "${TMPDIR:-/tmp}/kvm-rig.XXXXXX") || die "mktemp failed"
job=$(cd "$job" && pwd -P)
[[ $job != *[[:space:]]* ]] || die "the job directory's path has spaces: $job"
qemu_pid=
relay_pids=()
cleanup() {
	[[ -z $qemu_pid ]] || kill "$qemu_pid" 2>/dev/null
	for pid in "${relay_pids[@]}"; do
		kill "$pid" 2>/dev/null
	done
	rm -rf "$job"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

share_args=()
: >"$job/shares"
i=0
for p in "${share_paths[@]}"; do
	share_args+=(-virtfs "local,path=$p,mount_tag=share$i,security_model=none,multidevs=remap")
	echo "share$i $p" >>"$job/shares"
	i=$((i + 1))
done
# Deeper paths are mounted after the ones that contain them.
sort -k2 -o "$job/shares" "$job/shares"

{
	echo "cd $(squote "$cwd") 2>/dev/null || {"
	echo "	echo $(squote "$prog: the guest has no $cwd (a directory under /tmp needs --share)") >&2"
	echo "	exit 125"
	echo "}"
	printf 'exec env -i'
	for n in "${env_order[@]}"; do
		printf ' %s' "$(squote "$n=${env_val[$n]}")"
	done
	# "--" would end env's options, but busybox's env does not take it;
	# a COMMAND that looks like an option gets "./" instead.
	c=$1
	[[ $c != -* ]] || c=./$c
	shift
	printf ' %s' "$(squote "$c")"
	for a in "$@"; do
		printf ' %s' "$(squote "$a")"
	done
	echo
} >"$job/cmd"

# COMMAND's output arrives through FIFOs that QEMU writes to and two
# relays copy to our stdout and stderr as it comes.
mkfifo "$job/out" "$job/err" || die "mkfifo failed"
cat "$job/out" &
relay_pids+=($!)
cat "$job/err" >&2 &
relay_pids+=($!)

start=$(date +%s.%N)
timeout -k 5 "$timeout_s" qemu-system-x86_64 \
	"${accel_args[@]}" -m "$mem" -smp "$cpus" \
	-nodefaults -no-user-config -display none -no-reboot \
	-serial "file:$job/console" \
	-kernel "$kernel" -initrd "$initrd" \
	-append "console=ttyS0 panic=-1 ${KVM_RIG_APPEND:-quiet} cryptomgr.notests mitigations=off tsc=reliable no_timer_check RIG_JOB=$job" \
	-virtfs "local,path=/,mount_tag=host,readonly=on,security_model=none,multidevs=remap" \
	"${share_args[@]}" \
	-device virtio-serial-pci \
	-chardev "file,id=out,path=$job/out" -device virtserialport,chardev=out,name=out \
	-chardev "file,id=err,path=$job/err" -device virtserialport,chardev=err,name=err \
	</dev/null >"$job/qemu.log" 2>&1 &
qemu_pid=$!
wait "$qemu_pid"
qrc=$?
qemu_pid=
end=$(date +%s.%N)

# If QEMU died before it opened a FIFO, its relay still waits in open():
# a writer that comes and goes releases it with an end of file.
for f in out err; do
	exec {fd}<>"$job/$f"
	exec {fd}>&-
done
for pid in "${relay_pids[@]}"; do
	wait "$pid" 2>/dev/null
done
relay_pids=()

# show_console: the guest's console and QEMU's messages, on stderr.
show_console() {
	{
		echo "$prog: guest console:"
		tr -d '\r' <"$job/console" 2>/dev/null | sed 's/^/  /'
		if [[ -s $job/qemu.log ]]; then
			echo "$prog: qemu:"
			sed 's/^/  /' "$job/qemu.log"
		fi
	} >&2
}

rc=$(grep -a -o 'RIG-EXIT=[0-9]*' "$job/console" 2>/dev/null | tail -n 1 | cut -d= -f2)
boot=$(grep -a -o 'RIG-COMMAND' "$job/console" 2>/dev/null | head -n 1)
if ((qrc == 124 || qrc == 137)); then
	echo "$prog: the guest ran out of time (${timeout_s} s)" >&2
	show_console
	exit 124
fi
if [[ -z $rc ]]; then
	echo "$prog: the guest stopped without an exit status (QEMU exit $qrc)" >&2
	show_console
	exit 125
fi
if [[ -z $boot ]]; then
	echo "$prog: the rig failed to set up: $(grep -a -o 'RIG-SETUP-FAILED=.*' "$job/console" | tr -d '\r' | cut -d= -f2-)" >&2
	show_console
	exit 125
fi
if [[ -n $verbose ]]; then
	show_console
	awk -v s="$start" -v e="$end" 'BEGIN { printf "%s: guest ran %.1f s\n", "'"$prog"'", e - s }' >&2
fi
exit "$rc"
