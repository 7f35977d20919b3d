# SPDX-License-Identifier: MIT
#
# What the hyperkit end-to-end scripts share (sourced after lib.sh, not
# run). Each prepares a guest and an inner script on the host, in $T, then
# runs that script once inside the nested KVM rig and checks what it left:
#
#   hk_guest_kernel             GUEST_KERNEL, GUEST_MODULES (scripts/
#                               guest-kernel.sh), or not ok and finish
#   hk_rig [OPTION...] -- CMD   run CMD in one boot of scripts/kvm-rig.sh,
#                               with $T shared (its output in $T/rig.out);
#                               a rig that fails is "not ok rig" and the
#                               script finishes

hk_guest_kernel() {
	if ! eval "$("$e2e_root/scripts/guest-kernel.sh")"; then
		not_ok guest_kernel "scripts/guest-kernel.sh failed"
		e2e_finish
	fi
}

hk_rig() {
	local rc=0

	"$e2e_root/scripts/kvm-rig.sh" --share "$T" "$@" >"$T/rig.out" 2>&1 ||
		rc=$?
	if ((rc != 0)); then
		not_ok rig "kvm-rig.sh exit $rc" "$T/rig.out"
		e2e_finish
	fi
}
