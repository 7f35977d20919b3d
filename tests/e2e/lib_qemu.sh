# SPDX-License-Identifier: MIT
#
# The QEMU guest rig for the end-to-end scripts (sourced after lib.sh, not
# run): Debian's kernel (scripts/guest-kernel.sh) and a busybox initramfs
# (scripts/guest-initramfs.sh) booted by qemu-system-x86_64, whose /init
# runs one script and prints "RIG-EXIT=N" before it powers off.
#
#   qemu_rig_kernel || ...            sets RIG_KERNEL and RIG_MODULES_DIR
#   qemu_rig_initramfs OUT RUN [-m MOD]... [-f SRC:DST]...
#   qemu_rig_boot LOG APPEND [QEMU-ARG...]        boot, wait, give RIG-EXIT
#   qemu_rig_start LOG APPEND [QEMU-ARG...]; ...; qemu_rig_wait LOG
#   qemu_rig_exit LOG                 print N of the console's RIG-EXIT=N
#   qemu_rig_tail LOG [N]             the console's last N lines, as "#" lines
#
# APPEND is added to the kernel command line: NAME=VALUE words there reach
# the guest's script as environment variables, words after "--" as its
# arguments. QEMU's own messages go to LOG.qemu.
#
# Settings (environment): RIG_ACCEL=auto|kvm|tcg (auto: KVM when /dev/kvm
# is usable and the CPU shows vmx or svm, else TCG with -cpu max),
# RIG_MEM (MiB, 256), RIG_SMP (1), RIG_TIMEOUT (seconds per boot, 90).

rig_scripts=$e2e_root/scripts

# qemu_rig_kernel: fetch (once, then cached) and locate the guest kernel.
# Prefers the uncompressed vmlinux: QEMU boots it through PVH, without the
# bzImage's self-decompression that costs seconds under TCG.
qemu_rig_kernel() {
	local out
	if ! out=$("$rig_scripts/guest-kernel.sh" 2>&1); then
		echo "$out" >&2
		return 1
	fi
	eval "$(grep '^GUEST_[A-Z]*=' <<<"$out")"
	RIG_KERNEL=${GUEST_VMLINUX:-$GUEST_KERNEL}
	RIG_MODULES_DIR=$GUEST_MODULES
	[[ -f $RIG_KERNEL && -d $RIG_MODULES_DIR ]]
}

# qemu_rig_initramfs OUT RUN [ARGS...]: build an image whose /init runs
# the script RUN; ARGS go to guest-initramfs.sh (-m MODULE, -f SRC:DST).
qemu_rig_initramfs() {
	local out=$1 run=$2
	shift 2
	"$rig_scripts/guest-initramfs.sh" -o "$out" -r "$run" \
		-M "$RIG_MODULES_DIR" "$@"
}

# qemu_rig_accel: set RIG_ACCEL_ARGS from RIG_ACCEL.
qemu_rig_accel() {
	local accel=${RIG_ACCEL:-auto}
	if [[ $accel == auto ]]; then
		accel=tcg
		if [[ -r /dev/kvm && -w /dev/kvm ]] &&
		    grep -qwE 'vmx|svm' /proc/cpuinfo; then
			accel=kvm
		fi
	fi
	case $accel in
	kvm) RIG_ACCEL_ARGS=(-accel kvm -cpu host) ;;
	*) RIG_ACCEL_ARGS=(-accel tcg -cpu max) ;;
	esac
}

# qemu_rig_start LOG APPEND [QEMU-ARG...]: start the guest in the
# background (RIG_PID), its console going to LOG. The initramfs is
# $RIG_INITRD.
qemu_rig_start() {
	local log=$1 append=$2
	shift 2
	qemu_rig_accel
	: >"$log"
	timeout -k 5 "${RIG_TIMEOUT:-90}" qemu-system-x86_64 \
		"${RIG_ACCEL_ARGS[@]}" -m "${RIG_MEM:-256}" -smp "${RIG_SMP:-1}" \
		-nodefaults -no-user-config -display none -no-reboot \
		-serial "file:$log" \
		-kernel "$RIG_KERNEL" -initrd "$RIG_INITRD" \
		-append "console=ttyS0 panic=-1 quiet cryptomgr.notests $append" \
		"$@" </dev/null >"$log.qemu" 2>&1 &
	RIG_PID=$!
}

# qemu_rig_wait LOG: wait for the guest started by qemu_rig_start; return
# the guest script's exit status, 124 if QEMU ran out of time, 125 if the
# guest ended without a RIG-EXIT line (a panic, or QEMU failed: see
# LOG.qemu).
qemu_rig_wait() {
	local log=$1 rc=0 n
	wait "$RIG_PID" || rc=$?
	RIG_PID=
	if ((rc == 124 || rc == 137)); then
		echo "QEMU timed out after ${RIG_TIMEOUT:-90} s" >>"$log.qemu"
		return 124
	fi
	n=$(qemu_rig_exit "$log")
	if [[ -z $n ]]; then
		echo "QEMU exited with status $rc, no RIG-EXIT line" >>"$log.qemu"
		return 125
	fi
	return "$n"
}

# qemu_rig_boot LOG APPEND [QEMU-ARG...]: start and wait.
qemu_rig_boot() {
	qemu_rig_start "$@"
	qemu_rig_wait "$1"
}

qemu_rig_exit() {
	grep -a -o 'RIG-EXIT=[0-9]*' "$1" 2>/dev/null | tail -n 1 | cut -d= -f2
}

qemu_rig_tail() {
	local log=$1 n=${2:-25}
	echo "guest console (last $n lines of $log):"
	tail -n "$n" "$log" | tr -d '\r'
	if [[ -s $log.qemu ]]; then
		echo "qemu:"
		tail -n 5 "$log.qemu"
	fi
}
