# SPDX-License-Identifier: MIT
#
# The nested-KVM rig for the end-to-end scripts (sourced after lib.sh, not
# run). scripts/kvm-rig.sh boots a QEMU guest that has /dev/kvm and runs a
# command there; booting it costs seconds under software emulation, so a
# suite boots it once and runs all its KVM cases inside, as one script:
#
#   kvm_rig_setup || e2e_finish       qemu and the guest kernel, or not ok
#   kvm_rig_run NAME SCRIPT [ARGS...] run SCRIPT (bash) in one rig boot and
#                                     relay its ok / not ok lines
#
# SCRIPT is an ordinary e2e script (it sources lib.sh and prints ok / not ok
# lines) that runs in the guest as root, in the repository's root, with the
# host's / read-only, a fresh /tmp and $T (this script's scratch directory)
# shared read-write at the same path; KVM_RIG_SHARE names it. Prepare what
# it needs on the host first (initramfs images, disk images: building them
# under emulation is slow), in $T. The verdicts count as this script's own;
# a rig that does not boot, times out, or whose script dies without a
# verdict is "not ok NAME/rig" with the rig's messages.
#
# Inside the rig (sourcing lib.sh, lib_qemu.sh and this file), a guest of
# its own boots on the real /dev/kvm:
#
#   kvm_guest_boot LOG INITRD APPEND [QEMU-ARG...]
#   kvm_guest_start ...; kvm_guest_wait_for LOG TEXT [SECONDS]; qemu_rig_wait LOG
#
# with QEMU's microvm machine and Debian's kernel, as lib_qemu.sh's
# qemu_rig_boot does (its RIG-EXIT protocol, its exit statuses), plus kernel
# options that matter under nested emulation (see KVM_GUEST_APPEND).
#
# Settings (environment): KVM_RIG_MEM (default 1G: room for a guest of
# 256 MiB inside), KVM_RIG_CPUS (default 1), KVM_RIG_TIMEOUT (seconds per
# rig boot, default 900); kvm-rig.sh's own (KVM_RIG_ACCEL, UNIKIT_CACHE).

kvm_rig=$e2e_root/scripts/kvm-rig.sh

# Options for a Linux guest booted with KVM inside the rig, where every VM
# exit is emulated in software and costs a lot: no speculation mitigations,
# no RTC probe (without an RTC, rtc_cmos's polling takes 20 s), no crypto
# self-tests, the TSC trusted as it is.
KVM_GUEST_APPEND="mitigations=off initcall_blacklist=cmos_init cryptomgr.notests tsc=reliable no_timer_check"

# kvm_rig_setup: qemu-system-x86_64 and the guest kernel (RIG_KERNEL,
# RIG_MODULES_DIR as lib_qemu.sh's qemu_rig_kernel sets them), or not ok
# and a non-zero status.
kvm_rig_setup() {
	if ! have_cmd qemu-system-x86_64; then
		not_ok setup "qemu-system-x86_64 is missing (Debian package qemu-system-x86)"
		return 1
	fi
	if ! qemu_rig_kernel 2>"$T/.kvm-kernel.log"; then
		not_ok setup "the guest kernel could not be fetched" "$T/.kvm-kernel.log"
		return 1
	fi
}

# kvm_rig_run NAME SCRIPT [ARGS...]: boot the rig once, run `bash SCRIPT
# ARGS` in it and relay its output; count its verdicts. Returns the rig's
# exit status (kvm-rig.sh's: the script's, 124, 125). Its stdout is kept
# in $T/NAME.rig.out, its stderr in $T/NAME.rig.err. KVM_RIG_SECONDS is
# the wall time of the whole rig run.
kvm_rig_run() {
	local name=$1 script=$2 rc=0 out err start path
	shift 2
	out=$T/$name.rig.out
	err=$T/$name.rig.err
	# Version managers' shims (pyenv's python3 is a bash script that runs
	# a dozen more) cost seconds per call under emulation: the rig's
	# PATH goes without them.
	path=$(tr ':' '\n' <<<"$PATH" | grep -v '/shims$' | paste -sd:)
	start=$(date +%s.%N)
	(cd "$e2e_root" && PATH=$path &&
		"$kvm_rig" --mem "${KVM_RIG_MEM:-1G}" --cpus "${KVM_RIG_CPUS:-1}" \
			--timeout "${KVM_RIG_TIMEOUT:-900}" --share "$T" \
			--env "KVM_RIG_SHARE=$T" --env "KVM_RIG_CPUS=${KVM_RIG_CPUS:-1}" \
			-- bash "$script" "$@") \
		>"$out" 2>"$err" || rc=$?
	KVM_RIG_SECONDS=$(awk -v s="$start" -v e="$(date +%s.%N)" \
		'BEGIN { printf "%.1f", e - s }')
	cat "$out"
	local passed failed
	passed=$(grep -v '# skip' "$out" | grep -c '^ok ')
	failed=$(grep -c '^not ok ' "$out")
	E2E_PASSED=$((E2E_PASSED + passed))
	E2E_FAILED=$((E2E_FAILED + failed))
	if ((rc == 124 || rc == 125)); then
		not_ok "$name/rig" "kvm-rig.sh exit $rc" "$(tail -n 40 "$err")"
	elif ((rc != 0 && failed == 0)); then
		not_ok "$name/rig" "the script in the rig exited $rc without a not ok line" \
			"$(tail -n 20 "$err")"
	elif ((rc == 0 && failed != 0)); then
		not_ok "$name/rig" "the rig exited 0 although its script reported failures"
	fi
	return "$rc"
}

# kvm_guest_start LOG INITRD APPEND [QEMU-ARG...]: start a microvm guest on
# /dev/kvm in the background (RIG_PID), as qemu_rig_start does; RIG_MEM
# (MiB, default 256) and RIG_SMP apply. KVM_GUEST_T0 is when it started.
kvm_guest_start() {
	local log=$1 append=$3
	RIG_INITRD=$2
	shift 3
	KVM_GUEST_T0=$(date +%s.%N)
	RIG_ACCEL=kvm qemu_rig_start "$log" "$KVM_GUEST_APPEND $append" \
		-M microvm,rtc=off "$@"
}

# kvm_guest_wait_for LOG TEXT [SECONDS]: wait until the console LOG shows
# TEXT (default timeout 120 s) or the guest ended; set KVM_GUEST_SECONDS
# to the time from kvm_guest_start to the sight of TEXT. Fails if TEXT
# never came. It looks twice a second with shell builtins only: under
# emulation every fork and exec of a poller costs the guest a lot.
kvm_guest_wait_for() {
	local log=$1 text=$2 limit=$((${3:-120} * 2)) i content= tick fd
	tick=$T/.kvm-tick.$BASHPID
	rm -f "$tick"
	mkfifo "$tick" || return 1
	# A FIFO held open for reading and writing: `read -t` on it is a
	# sleep without a process.
	exec {fd}<>"$tick"
	for ((i = 0; i < limit; i++)); do
		content=
		IFS= read -r -d '' content <"$log" 2>/dev/null
		[[ $content == *"$text"* ]] && break
		kill -0 "$RIG_PID" 2>/dev/null || i=$limit
		read -r -t 0.5 -u "$fd"
	done
	exec {fd}>&-
	rm -f "$tick"
	if [[ $content != *"$text"* ]]; then
		content=
		IFS= read -r -d '' content <"$log" 2>/dev/null
		[[ $content == *"$text"* ]] || return 1
	fi
	KVM_GUEST_SECONDS=$(awk -v s="$KVM_GUEST_T0" -v e="$(date +%s.%N)" \
		'BEGIN { printf "%.1f", e - s }')
}

# kvm_guest_boot LOG INITRD APPEND [QEMU-ARG...]: start and wait; the
# guest script's exit status (qemu_rig_wait's convention).
kvm_guest_boot() {
	kvm_guest_start "$@"
	qemu_rig_wait "$1"
}
