#!/bin/bash
# SPDX-License-Identifier: MIT
#
# hyperkit boots Linux: inside the nested KVM rig (scripts/kvm-rig.sh),
# our hyperkit boots Debian's kernel (the bzImage from
# scripts/guest-kernel.sh) with a busybox initramfs whose script prints a
# marker with the number of CPUs it sees; the initramfs's init then powers
# off through ACPI.
#
#   boot_c1_marker     -c 1: the marker arrives on COM1 (-l com1,stdio)
#   boot_c1_poweroff   ... and the guest's power-off ends hyperkit with 0
#   boot_c2_cpus       -c 2: the guest sees 2 CPUs in /proc/cpuinfo
#   boot_c2_poweroff   ... and powers off with 0
#   kernel_unpacked_and_cached  c1 unpacks the bzImage's kernel into an
#                      empty --kernel-cache directory and enters it
#                      directly; c2 boots from the cached copy (the other
#                      e2e scripts, with no writable cache, leave the
#                      decompression to the guest)
#   bad_kernel         a file that is not a bzImage: exit 1, a clear error
#   bad_flag           an unknown option: exit 2 (on the host, no KVM)
#
# Boot times (hyperkit start to exit, inside the rig) are printed as
# comments. Under software emulation each boot takes one to two minutes.
set -uo pipefail

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_hk.sh"

e2e_init hyperkit_boot

if ! have_cmd hyperkit; then
	not_ok build "hyperkit is not built in $UNIKIT_BUILD"
	e2e_finish
fi
hk=$(command -v hyperkit)

# An unknown flag needs no KVM.
rc=0
hyperkit --no-such-flag >"$T/badflag.out" 2>&1 || rc=$?
if ((rc == 2)) && grep -q "Try 'hyperkit --help'" "$T/badflag.out"; then
	ok bad_flag
else
	not_ok bad_flag "exit $rc, want 2" "$T/badflag.out"
fi

hk_guest_kernel

cat >"$T/run.sh" <<'EOF2'
#!/bin/sh
echo "HK-MARKER cpus=$(grep -c ^processor /proc/cpuinfo)"
if [ -b /dev/vda ]; then
	# The disk's first sector holds a line the host wrote; the guest
	# writes one of its own at sector 8 for the host to find.
	echo "HK-DISK $(head -c 16 /dev/vda) sectors=$(cat /sys/block/vda/size)"
	echo "written-by-guest" | dd of=/dev/vda bs=512 seek=8 conv=fsync 2>/dev/null
fi
if [ -c /dev/hwrng ]; then
	echo "HK-RNG $(head -c 16 /dev/hwrng | od -An -tx1 | tr -d ' \n')"
fi
EOF2
if ! "$e2e_root/scripts/guest-initramfs.sh" -o "$T/initrd.gz" -r "$T/run.sh" \
	-m virtio_pci,virtio_blk,virtio_rng >"$T/initramfs.log" 2>&1; then
	not_ok initramfs "$T/initramfs.log"
	e2e_finish
fi

# The rig's side: each boot's console, stderr, status and time in $T.
cat >"$T/inner.sh" <<EOF2
#!/bin/sh
cd "$T" || exit 125
boot() {
	name=\$1
	shift
	start=\$(date +%s%N)
	timeout -k 10 600 "$hk" "\$@" >"\$name.console" 2>"\$name.err"
	echo \$? >"\$name.rc"
	end=\$(date +%s%N)
	echo \$(( (end - start) / 1000000 )) >"\$name.ms"
}
# No RTC: skip the CMOS probe (20 s of timeouts); the rest trims boot time
# under nested emulation.
cmdline="console=ttyS0 panic=-1 quiet initcall_blacklist=cmos_init mitigations=off tsc=reliable no_timer_check cryptomgr.notests"
# c1 unpacks the kernel into an empty cache, c2 boots from that copy.
boot c1 -vv --kernel-cache=/tmp/hkc -A -c 1 -m 256M -s 0:0,hostbridge \\
	-s 2,virtio-blk,$T/disk.raw \\
	-s 3,virtio-rnd -s 31,lpc -l com1,stdio \\
	-f "kexec,$GUEST_KERNEL,$T/initrd.gz,\$cmdline"
boot c2 -vv --kernel-cache=/tmp/hkc -A -c 2 -m 256M -l com1,stdio \\
	-f "kexec,$GUEST_KERNEL,$T/initrd.gz,\$cmdline"
boot badkernel -c 1 -m 64M -f "kexec,$T/run.sh,,"
exit 0
EOF2
chmod +x "$T/inner.sh"
truncate -s 64M "$T/disk.raw"
printf 'HOST-WROTE-THIS.' | dd of="$T/disk.raw" conv=notrunc status=none

hk_rig --timeout 1500 -- "$T/inner.sh"

# check_boot NAME CPUS: the marker and the exit status of a boot.
check_boot() {
	local name=$1 cpus=$2 rc
	rc=$(cat "$T/$name.rc" 2>/dev/null)
	echo "# $name: hyperkit ran $(cat "$T/$name.ms" 2>/dev/null) ms, exit ${rc:-none}"
	if tr -d '\r' <"$T/$name.console" | grep -qx "HK-MARKER cpus=$cpus"; then
		ok "boot_${name}_$([[ $cpus == 1 ]] && echo marker || echo cpus)"
	else
		not_ok "boot_${name}_$([[ $cpus == 1 ]] && echo marker || echo cpus)" \
			"no 'HK-MARKER cpus=$cpus' on COM1; its end:" \
			"$(tail -n 15 "$T/$name.console" | tr -d '\r')" "$T/$name.err"
	fi
	if [[ $rc == 0 ]]; then
		ok "boot_${name}_poweroff"
	else
		not_ok "boot_${name}_poweroff" "exit ${rc:-none}, want 0" "$T/$name.err"
	fi
}
check_boot c1 1
check_boot c2 2

# virtio-blk and virtio-rnd through the PCI root bridge the ACPI tables
# describe (-A): the guest read the host's bytes, the host reads the
# guest's, and the guest got random bytes.
if tr -d '\r' <"$T/c1.console" | grep -qx "HK-DISK HOST-WROTE-THIS. sectors=131072"; then
	ok virtio_blk_read
else
	not_ok virtio_blk_read "no HK-DISK line with the host's bytes" \
		"$(grep -a HK- "$T/c1.console" | tr -d '\r')"
fi
if [[ $(dd if="$T/disk.raw" bs=512 skip=8 count=1 status=none | head -c 16) == written-by-guest ]]; then
	ok virtio_blk_write
else
	not_ok virtio_blk_write "sector 8 of the disk does not hold the guest's line"
fi
if tr -d '\r' <"$T/c1.console" | grep -Eq "^HK-RNG [0-9a-f]{32}$"; then
	ok virtio_rnd
else
	not_ok virtio_rnd "no HK-RNG line" "$(grep -a HK- "$T/c1.console" | tr -d '\r')"
fi

# The kernel inside the bzImage was unpacked by hyperkit, kept, reused.
if grep -q "kernel: unpacked [0-9]* bytes" "$T/c1.err" &&
	grep -q "kernel: unpacked copy from /tmp/hkc/vmlinux-" "$T/c2.err"; then
	ok kernel_unpacked_and_cached
else
	not_ok kernel_unpacked_and_cached "want 'unpacked N bytes' in c1's log," \
		"'unpacked copy from /tmp/hkc' in c2's" \
		"$(grep -h "kernel:" "$T/c1.err" "$T/c2.err")"
fi

rc=$(cat "$T/badkernel.rc" 2>/dev/null)
if [[ $rc == 1 ]] && grep -q "not a bzImage" "$T/badkernel.err"; then
	ok bad_kernel
else
	not_ok bad_kernel "exit ${rc:-none}, want 1 and 'not a bzImage'" "$T/badkernel.err"
fi

e2e_finish
