#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The nested-KVM rig itself (scripts/kvm-rig.sh): one boot of the rig, and
# in it /dev/kvm must open and answer KVM_GET_API_VERSION with 12 and
# create a VM and a vCPU; the guest sees the CPUs it was given, the host's
# / read-only, a fresh /tmp and the shared directory read-write; and
# Debian's QEMU, run from the host's file system, boots Debian's kernel
# with -accel kvm -M microvm to a marker its init prints, then powers off.
# The host checks that the command's stdout and stderr came back apart and
# what it wrote to the share. Times are printed as "#" lines: the whole
# rig run and the inner guest's time to its marker (about 11-15 s when
# the host is not busy).
set -uo pipefail

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_qemu.sh"
. "$(dirname "$0")/lib_kvm.sh"

e2e_init kvm_rig

kvm_rig_setup || e2e_finish

# The inner guest's initramfs: built here, where it is quick.
printf '#!/bin/sh\necho KVM-RIG-INNER-MARKER\n' >"$T/inner-run"
if ! qemu_rig_initramfs "$T/inner.cpio.gz" "$T/inner-run" >"$T/initramfs.log" 2>&1; then
	not_ok setup "the inner guest's initramfs could not be built" "$T/initramfs.log"
	e2e_finish
fi

export KVM_RIG_CPUS=${KVM_RIG_CPUS:-1}

cat >"$T/inside.sh" <<'EOF'
# Runs in the rig, from the repository's root.
set -uo pipefail
. tests/e2e/lib.sh
. tests/e2e/lib_qemu.sh
. tests/e2e/lib_kvm.sh
e2e_init kvm_rig_inside
read -r up _ </proc/uptime
echo "# the rig's guest reached the script after $up s of uptime"
echo KVM-RIG-STDERR-PROBE >&2

# kvm_probe: KVM_GET_API_VERSION, then KVM_CREATE_VM and KVM_CREATE_VCPU.
kvm_probe() {
	python3 - <<'PY'
import fcntl, os
fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
print("api", fcntl.ioctl(fd, 0xAE00))           # KVM_GET_API_VERSION
vm = fcntl.ioctl(fd, 0xAE01, 0)                 # KVM_CREATE_VM
vcpu = fcntl.ioctl(vm, 0xAE41, 0)               # KVM_CREATE_VCPU
print("vm", vm >= 0, "vcpu", vcpu >= 0)
PY
}

if [ -c /dev/kvm ]; then
	ok kvm/dev-kvm
else
	not_ok kvm/dev-kvm "no /dev/kvm" "$(ls -l /dev/kvm 2>&1)" \
		"$(dmesg | grep -iE 'kvm|svm|vmx' | tail -n 5)"
fi
out=$(kvm_probe 2>&1)
if grep -qx 'api 12' <<<"$out"; then
	ok kvm/api-version
else
	not_ok kvm/api-version "KVM_GET_API_VERSION did not give 12:" "$out"
fi
if grep -qx 'vm True vcpu True' <<<"$out"; then
	ok kvm/create-vm
else
	not_ok kvm/create-vm "KVM_CREATE_VM or KVM_CREATE_VCPU failed:" "$out"
fi

n=$(grep -c '^processor' /proc/cpuinfo)
if [ "$n" = "$KVM_RIG_CPUS" ]; then
	ok rig/cpus
else
	not_ok rig/cpus "the guest has $n CPUs, $KVM_RIG_CPUS were asked for"
fi
if ! touch /kvm-rig-probe 2>/dev/null && [ "$(stat -f -c %T /tmp)" = tmpfs ] &&
    [ -z "$(ls -A /tmp | grep -vx -e "${T##*/}" -e "${KVM_RIG_SHARE##*/}" \
	-e "$(case $e2e_root in /tmp/*) r=${e2e_root#/tmp/}; echo "${r%%/*}" ;; esac)")" ] &&
    [ "$PWD" = "$e2e_root" ]; then
	ok rig/filesystems
else
	not_ok rig/filesystems "want / read-only, a fresh tmpfs on /tmp, the cwd $e2e_root" \
		"$(grep -E ' / | /tmp ' /proc/mounts)" "/tmp: $(ls -A /tmp)" "cwd: $PWD"
fi
if hostname >"$KVM_RIG_SHARE/from-guest"; then
	ok rig/share-writable
else
	not_ok rig/share-writable "cannot write to $KVM_RIG_SHARE"
fi

# A guest of its own, on /dev/kvm, with QEMU from the host's Debian.
RIG_TIMEOUT=600
if ! qemu_rig_kernel 2>"$T/kernel.log"; then
	not_ok inner/marker "no guest kernel in the rig" "$T/kernel.log"
else
	log=$T/inner.console
	kvm_guest_start "$log" "$KVM_RIG_SHARE/inner.cpio.gz" ""
	if kvm_guest_wait_for "$log" KVM-RIG-INNER-MARKER 500; then
		ok inner/marker
		echo "# inner QEMU microvm (-accel kvm) reached its marker in $KVM_GUEST_SECONDS s"
	else
		not_ok inner/marker "no marker on the inner guest's console" "$(qemu_rig_tail "$log")"
	fi
	rc=0
	qemu_rig_wait "$log" || rc=$?
	if [ "$rc" = 0 ]; then
		ok inner/poweroff
	else
		not_ok inner/poweroff "the inner guest's exit: $rc" "$(qemu_rig_tail "$log")"
	fi
fi
e2e_finish
EOF

kvm_rig_run rig "$T/inside.sh"
echo "# the whole rig run took $KVM_RIG_SECONDS s"

# What only the host can see: the streams apart, the share's content.
if grep -qx KVM-RIG-STDERR-PROBE "$T/rig.rig.err" &&
    ! grep -q KVM-RIG-STDERR-PROBE "$T/rig.rig.out"; then
	ok rig/stderr-apart
else
	not_ok rig/stderr-apart "the probe line is not (only) on stderr" \
		"stderr:" "$(head -n 5 "$T/rig.rig.err")"
fi
if [[ $(cat "$T/from-guest" 2>/dev/null) == kvm-rig ]]; then
	ok rig/share-content
else
	not_ok rig/share-content "the file the guest wrote to the share: '$(cat "$T/from-guest" 2>&1)'"
fi
e2e_finish
