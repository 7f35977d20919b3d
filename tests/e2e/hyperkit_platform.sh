#!/bin/bash
# SPDX-License-Identifier: MIT
#
# hyperkit's platform devices, in one boot of the nested KVM rig
# (scripts/kvm-rig.sh) that runs three guest boots: the first two in one
# hyperkit process (-A -u -U UUID --reboot=restart -F PIDFILE, the RTC
# driver allowed to probe), the third in another (the default reboot flag,
# no -A, no -u, TZ five hours east, cmos_init blacklisted as the other
# tests do).
#
#   smbios_uuid          the guest's /sys/class/dmi/id/product_uuid is the
#                        -U we gave (given in upper case, read in lower)
#   smbios_strings       sys_vendor, product_name and bios_vendor are ours,
#                        and the kernel's "DMI:" line names them
#   rtc_probe            Linux's rtc_cmos driver probes our MC146818 (rtc0)
#   rtc_utc              with -u, rtc0's since_epoch is within 3 s of the
#                        host's clock when the line reaches the host
#   rtc_hwclock          busybox `hwclock -r -u` reads it (this year)
#   rtc_local_time       without -u, the CMOS hour and minute registers
#                        (read through /dev/port) are the host's local time
#                        (TZ=XYZ-5: UTC + 5 h)
#   reboot_restart       the guest bumps a counter byte on a raw virtio-blk
#                        disk and reboots (`reboot -f`) when it was 0;
#                        hyperkit boots it again, the second run powers off,
#                        hyperkit exits 0 and the byte is 2
#   reboot_pidfile       the -F pidfile names the same process in both runs
#                        and is gone after the exit
#   reboot_no_leak       the hyperkit process has as many descriptors and
#                        threads in the second run as in the first
#   reboot_exit_default  without --reboot, `reboot -f` ends hyperkit, exit 0
#                        (without -A: through the keyboard controller's
#                        reset command; the first run used ACPI's reset
#                        register)
#   rtc_probe_time       the kernel's initcall_debug line for cmos_init (the
#                        RTC driver's registration and probe): it returns 0
#                        in under 2 s (with no RTC at the ports it polled
#                        for 20 s, hence the blacklist in the other tests)
#
# It also reports the time from hyperkit's start to the guest's init with
# the RTC driver probing (first run) and blacklisted (third run); under
# nested emulation that varies by tens of seconds from boot to boot, so it
# is not a verdict.
set -uo pipefail

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_hk.sh"

e2e_init hyperkit_platform

if ! have_cmd hyperkit; then
	not_ok build "hyperkit is not built in $UNIKIT_BUILD"
	e2e_finish
fi
cp "$(command -v hyperkit)" "$T/hyperkit" || exit 1
hk=$T/hyperkit

hk_guest_kernel

uuid=5F6C3F0A-2D3E-4B7C-9A1B-0C2D3E4F5A6B
modules=virtio_pci,virtio_blk
# rtc_cmos is built into Debian's kernel; load it if it is not.
grep -q '/rtc-cmos\.ko' "$GUEST_MODULES/modules.builtin" 2>/dev/null ||
	modules=$modules,rtc_cmos

# The guest: HKMODE (from the kernel command line) says which boot this is.
cat >"$T/run.sh" <<'EOF2'
#!/bin/sh
if [ "$HKMODE" = exitflag ]; then
	# The CMOS registers straight from the ports: index to 0x70, data
	# from 0x71 (/dev/port's offsets 112 and 113).
	rd() {
		printf "\\$(printf %03o "$1")" | dd of=/dev/port bs=1 seek=112 count=1 2>/dev/null
		dd if=/dev/port bs=1 skip=113 count=1 2>/dev/null | od -An -tx1 | tr -d ' \n'
	}
	echo "HK-CMOS $(rd 4) $(rd 2) $(rd 11)"
	echo "HK-REBOOTING-DEFAULT"
	reboot -f
	sleep 30
	exit 1
fi
n=$(dd if=/dev/vda bs=1 count=1 2>/dev/null | od -An -tu1 | tr -d ' \n')
n=$((n + 1))
printf "\\$(printf %03o "$n")" | dd of=/dev/vda bs=1 count=1 conv=notrunc 2>/dev/null
sync
echo "HK-RUN $n"
# The host counts hyperkit's descriptors and threads now.
sleep 3
echo "HK-UUID $(cat /sys/class/dmi/id/product_uuid)"
echo "HK-VENDOR $(cat /sys/class/dmi/id/sys_vendor)"
echo "HK-PRODUCT $(cat /sys/class/dmi/id/product_name)"
echo "HK-BIOS $(cat /sys/class/dmi/id/bios_vendor)"
echo "HK-DMESG $(dmesg | grep -m1 'DMI:')"
echo "HK-INITCALL $(dmesg | grep -m1 'initcall cmos_init')"
if [ -e /sys/class/rtc/rtc0 ]; then
	echo "HK-RTC-NAME $(cat /sys/class/rtc/rtc0/name)"
	echo "HK-RTC $(cat /sys/class/rtc/rtc0/since_epoch)"
	hwclock -r -u >/tmp/hw 2>&1
	echo "HK-HWCLOCK rc=$? $(cat /tmp/hw)"
else
	echo "HK-NO-RTC"
	dmesg | grep -i rtc
fi
if [ "$n" = 1 ]; then
	echo "HK-REBOOTING"
	reboot -f
	sleep 30
fi
exit 0
EOF2
if ! "$e2e_root/scripts/guest-initramfs.sh" -o "$T/initrd.gz" -r "$T/run.sh" \
	-m "$modules" >"$T/initramfs.log" 2>&1; then
	not_ok initramfs "$T/initramfs.log"
	e2e_finish
fi
head -c 1048576 /dev/zero >"$T/disk.raw"

# The rig's side. Console lines get the host's time as they arrive
# ($EPOCHREALTIME: no process per line); when a run announces itself, the
# hyperkit process's descriptors and threads are counted.
cat >"$T/inner.sh" <<EOF2
#!/bin/bash
cd "$T" || exit 125
stamp() {
	local line fds tasks pid
	while IFS= read -r line; do
		line=\${line%\$'\r'}
		printf '%s %s\n' "\$EPOCHREALTIME" "\$line"
		case \$line in
		HK-RUN*)
			pid=\$(<hk.pid)
			fds=(/proc/\$pid/fd/*)
			tasks=(/proc/\$pid/task/*)
			echo "\${line#HK-RUN } \$pid \${#fds[@]} \${#tasks[@]}" >>samples
			;;
		esac
	done
}
base="console=ttyS0 panic=-1 quiet mitigations=off tsc=reliable no_timer_check cryptomgr.notests initcall_debug"
echo "\$EPOCHREALTIME" >a.start
timeout -k 10 900 "$hk" -A -u -U $uuid --reboot=restart -F "$T/hk.pid" \\
	-c 1 -m 256M -s 0:0,hostbridge -s 2,virtio-blk,$T/disk.raw -s 31,lpc \\
	-l com1,stdio -f "kexec,$GUEST_KERNEL,$T/initrd.gz,\$base HKMODE=restart" \\
	2>a.err | stamp >a.console
echo "\${PIPESTATUS[0]}" >a.rc
[ -e hk.pid ] && echo present >a.pidfile_after
echo "\$EPOCHREALTIME" >b.start
TZ=XYZ-5 timeout -k 10 600 "$hk" -c 1 -m 256M -s 0:0,hostbridge \\
	-s 2,virtio-blk,$T/disk.raw -s 31,lpc -l com1,stdio \\
	-f "kexec,$GUEST_KERNEL,$T/initrd.gz,\$base initcall_blacklist=cmos_init HKMODE=exitflag" \\
	2>b.err | stamp >b.console
echo "\${PIPESTATUS[0]}" >b.rc
exit 0
EOF2
chmod +x "$T/inner.sh"

hk_rig --timeout 1800 -- bash "$T/inner.sh"

a_rc=$(cat "$T/a.rc" 2>/dev/null)
b_rc=$(cat "$T/b.rc" 2>/dev/null)
echo "# restart run: exit ${a_rc:-none}; default-flag run: exit ${b_rc:-none}"

# field FILE TAG: the text after "TAG " on the first console line with it.
field() {
	awk -v tag="$2" '$2 == tag { $1 = ""; $2 = ""; sub(/^  /, ""); print; exit }' \
		"$T/$1" 2>/dev/null
}
# stamp_of FILE TAG: the host time of that line.
stamp_of() {
	awk -v tag="$2" '$2 == tag { print $1; exit }' "$T/$1" 2>/dev/null
}
# grep_console FILE TEXT: the console (without stamps) has a line TEXT.
grep_console() {
	cut -d' ' -f2- "$T/$1" 2>/dev/null | grep -qx -- "$2"
}
details_a() {
	echo "$T/a.err"
	cut -d' ' -f2- "$T/a.console" 2>/dev/null | grep -a -e HK- -e RIG- | head -n 30
}

want_uuid=${uuid,,}
got_uuid=$(field a.console HK-UUID)
if [[ $got_uuid == "$want_uuid" ]]; then
	ok smbios_uuid
else
	not_ok smbios_uuid "product_uuid '${got_uuid}', want '$want_uuid'" "$(details_a)"
fi

vendor=$(field a.console HK-VENDOR)
product=$(field a.console HK-PRODUCT)
bios=$(field a.console HK-BIOS)
dmesg_dmi=$(field a.console HK-DMESG)
if [[ $vendor == unikit && $product == hyperkit && $bios == unikit &&
	$dmesg_dmi == *"DMI: unikit hyperkit"* ]]; then
	ok smbios_strings
else
	not_ok smbios_strings "sys_vendor '$vendor' product_name '$product'" \
		"bios_vendor '$bios' dmesg '$dmesg_dmi'"
fi

if [[ $(field a.console HK-RTC-NAME) == rtc_cmos* ]]; then
	ok rtc_probe
else
	not_ok rtc_probe "no rtc_cmos as rtc0" \
		"$(cut -d' ' -f2- "$T/a.console" 2>/dev/null | grep -a -i -e rtc -e HK-NO)"
fi

since=$(field a.console HK-RTC)
at=$(stamp_of a.console HK-RTC)
if [[ $since =~ ^[0-9]+$ && -n $at ]] &&
	awk -v s="$since" -v h="$at" 'BEGIN { d = h - s; exit !(d > -3 && d < 3) }'; then
	ok rtc_utc
	echo "# rtc0 since_epoch $since, host $at"
else
	not_ok rtc_utc "since_epoch '$since', host time at the line '$at'"
fi

hw=$(field a.console HK-HWCLOCK)
if [[ $hw == "rc=0 "*"$(date -u +%Y)"* ]]; then
	ok rtc_hwclock
	echo "# hwclock: ${hw#rc=0 }"
else
	not_ok rtc_hwclock "hwclock -r -u: '$hw'"
fi

# The local-time run: BCD hour and minute, vs the host's UTC + 5 h.
cmos=$(field b.console HK-CMOS)
at=$(stamp_of b.console HK-CMOS)
if [[ $cmos =~ ^([0-9]{2})\ ([0-9]{2})\ ([0-9a-f]{2})$ && -n $at ]]; then
	h=$((10#${BASH_REMATCH[1]}))
	m=$((10#${BASH_REMATCH[2]}))
	want=$(((${at%.*} / 60 + 300) % 1440))
	diff=$(((h * 60 + m - want + 1440) % 1440))
	if ((diff <= 2 || diff >= 1438)); then
		ok rtc_local_time
		echo "# CMOS $h:$m (register B ${BASH_REMATCH[3]}) with TZ=XYZ-5"
	else
		not_ok rtc_local_time "CMOS $h:$m, want $((want / 60)):$((want % 60))"
	fi
else
	not_ok rtc_local_time "no CMOS registers from the guest: '$cmos'" "$T/b.err" \
		"$(cut -d' ' -f2- "$T/b.console" 2>/dev/null | grep -a -e HK- -e RIG- | head)"
fi

byte=$(od -An -tu1 -N1 "$T/disk.raw" | tr -d ' ')
if grep_console a.console "HK-RUN 1" && grep_console a.console "HK-REBOOTING" &&
	grep_console a.console "HK-RUN 2" && ! grep_console a.console "HK-RUN 3" &&
	[[ $a_rc == 0 && $byte == 2 ]]; then
	ok reboot_restart
else
	not_ok reboot_restart "exit ${a_rc:-none}, counter byte ${byte:-none} (want 0 and 2)" \
		"$(details_a)"
fi

mapfile -t samples <"$T/samples" 2>/dev/null
read -r s1_run s1_pid s1_fds s1_tasks <<<"${samples[0]:-}"
read -r s2_run s2_pid s2_fds s2_tasks <<<"${samples[1]:-}"
echo "# samples (run pid fds threads): ${samples[*]:-none}"
if [[ ${#samples[@]} == 2 && $s1_run == 1 && $s2_run == 2 && -n $s1_pid &&
	$s1_pid == "$s2_pid" && ! -e $T/a.pidfile_after ]]; then
	ok reboot_pidfile
else
	not_ok reboot_pidfile "pids '${s1_pid:-}' and '${s2_pid:-}'," \
		"pidfile after exit: $(cat "$T/a.pidfile_after" 2>/dev/null || echo gone)"
fi
if [[ -n ${s1_fds:-} && $s1_fds == "${s2_fds:-}" && $s1_tasks == "${s2_tasks:-}" ]]; then
	ok reboot_no_leak
else
	not_ok reboot_no_leak "run 1: ${s1_fds:-?} fds ${s1_tasks:-?} threads;" \
		"run 2: ${s2_fds:-?} fds ${s2_tasks:-?} threads"
fi

if grep_console b.console "HK-REBOOTING-DEFAULT" && [[ $b_rc == 0 ]] &&
	[[ $(cut -d' ' -f2- "$T/b.console" | grep -c -x RIG-INIT) == 1 ]]; then
	ok reboot_exit_default
else
	not_ok reboot_exit_default "exit ${b_rc:-none}, want 0 after one boot" "$T/b.err" \
		"$(cut -d' ' -f2- "$T/b.console" 2>/dev/null | grep -a -e HK- -e RIG-)"
fi

# The RTC driver's initcall, timed by the guest kernel (initcall_debug).
initcall=$(field a.console HK-INITCALL)
if [[ $initcall =~ returned\ 0\ after\ ([0-9]+)\ usecs ]] &&
	((BASH_REMATCH[1] < 2000000)); then
	ok rtc_probe_time
	echo "# cmos_init: ${BASH_REMATCH[1]} us"
else
	not_ok rtc_probe_time "cmos_init: '$initcall'"
fi

# Boot time to init: the RTC probing (run 1) vs cmos_init blacklisted
# (run 3), reported only (see above).
a0=$(cat "$T/a.start" 2>/dev/null)
b0=$(cat "$T/b.start" 2>/dev/null)
a1=$(stamp_of a.console RIG-INIT)
b1=$(stamp_of b.console RIG-INIT)
if [[ -n $a0 && -n $a1 && -n $b0 && -n $b1 ]]; then
	ta=$(awk -v s="$a0" -v e="$a1" 'BEGIN { printf "%.2f", e - s }')
	tb=$(awk -v s="$b0" -v e="$b1" 'BEGIN { printf "%.2f", e - s }')
	echo "# boot to init: ${ta} s with rtc_cmos probing, ${tb} s with cmos_init blacklisted"
fi

e2e_finish
