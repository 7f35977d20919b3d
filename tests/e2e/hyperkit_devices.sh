#!/bin/bash
# SPDX-License-Identifier: MIT
#
# hyperkit's console and file-sharing devices, in one boot inside the
# nested KVM rig (scripts/kvm-rig.sh):
#
#   hvc_marker      the guest writes a line to /dev/hvc0 (virtio-console);
#                   the host finds it in the console's file backend
#   hvc_console     with console=hvc0 on the command line, the kernel's own
#                   messages (one the guest logs at level 2) reach it too
#   p9_mount        Debian's diod serves a directory on a loopback TCP
#                   port; virtio-9p relays the guest's 9P2000.L to it and
#                   the guest mounts the share by its tag
#   p9_read         the guest reads a file the host wrote there
#   p9_write        the guest writes a file there, which the host reads
#   p9_big_read     the guest reads 3 MB of random bytes (md5 as the host's)
#   p9_big_write    ... and copies them back (the host compares the copy)
#   poweroff        the guest powers off and hyperkit exits with 0
#
# Needs diod (Debian package diod), which runs as root inside the rig,
# without authentication (-n), on 127.0.0.1.
set -uo pipefail

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_hk.sh"

e2e_init hyperkit_devices

if ! have_cmd hyperkit; then
	not_ok build "hyperkit is not built in $UNIKIT_BUILD"
	e2e_finish
fi
# A copy in $T, which the rig shares (its /tmp is its own).
cp "$(command -v hyperkit)" "$T/hyperkit" || exit 1
hk=$T/hyperkit
diod=$(command -v diod || ls /usr/sbin/diod 2>/dev/null)
if [[ -z $diod ]]; then
	not_ok diod "diod is not installed (apt-get install diod)"
	e2e_finish
fi

hk_guest_kernel

# diod serves the export the client names as aname; the guest attaches as
# root (access=0), since diod's "nobody" cannot enter the 0700 test
# directory.
cat >"$T/run.sh" <<EOF2
#!/bin/sh
echo "HK-HVC-MARKER from the guest" >/dev/hvc0 || echo "HK-NO-HVC"
# A kernel message at level 2 reaches every console (console=hvc0 too).
echo "<2>HK-KMSG through printk" >/dev/kmsg
mkdir -p /mnt
if mount -t 9p -o trans=virtio,version=9p2000.L,aname=$T/share,access=0,uname=root share /mnt; then
	echo "HK-9P \$(cat /mnt/hello.txt)"
	echo "written-by-guest" >/mnt/from-guest.txt
	echo "HK-9P-BIG \$(md5sum </mnt/big.bin | cut -d' ' -f1)"
	cp /mnt/big.bin /mnt/big.copy
	sync
	umount /mnt
else
	echo "HK-9P-MOUNT-FAILED"
	dmesg | tail -n 20
fi
EOF2
if ! "$e2e_root/scripts/guest-initramfs.sh" -o "$T/initrd.gz" -r "$T/run.sh" \
	-m virtio_pci,virtio_console,9pnet_virtio,9p >"$T/initramfs.log" 2>&1; then
	not_ok initramfs "$T/initramfs.log"
	e2e_finish
fi

mkdir -p "$T/share"
echo "hello-from-the-host" >"$T/share/hello.txt"
head -c 3000000 /dev/urandom >"$T/share/big.bin"
big_md5=$(md5sum <"$T/share/big.bin" | cut -d' ' -f1)
port=5640

# The rig's side: diod on loopback, then one boot.
cat >"$T/inner.sh" <<EOF2
#!/bin/sh
cd "$T" || exit 125
"$diod" -f -n -d 1 -e "$T/share" -l 127.0.0.1:$port >diod.log 2>&1 &
diod_pid=\$!
# Wait until diod listens (0A: LISTEN in /proc/net/tcp).
i=0
while [ \$i -lt 100 ] && ! grep -q ":$(printf %04X $port) 00000000:0000 0A" /proc/net/tcp; do
	sleep 0.2
	i=\$((i + 1))
done
cmdline="console=hvc0 console=ttyS0 panic=-1 quiet initcall_blacklist=cmos_init mitigations=off tsc=reliable no_timer_check cryptomgr.notests"
start=\$(date +%s%N)
timeout -k 10 600 "$hk" -A -c 1 -m 256M -s 0:0,hostbridge \\
	-s 3,virtio-console,$T/hvc.out -s 4,virtio-9p,port=$port,tag=share \\
	-s 31,lpc -l com1,stdio \\
	-f "kexec,$GUEST_KERNEL,$T/initrd.gz,\$cmdline" >boot.console 2>boot.err
echo \$? >boot.rc
end=\$(date +%s%N)
echo \$(( (end - start) / 1000000 )) >boot.ms
kill \$diod_pid 2>/dev/null
wait \$diod_pid 2>/dev/null
exit 0
EOF2
chmod +x "$T/inner.sh"

hk_rig --timeout 1500 -- "$T/inner.sh"
echo "# hyperkit ran $(cat "$T/boot.ms" 2>/dev/null) ms, exit $(cat "$T/boot.rc" 2>/dev/null)"

console() { tr -d '\r' <"$T/boot.console"; }

# The guest's tty turns "\n" into "\r\n".
if tr -d '\r' <"$T/hvc.out" 2>/dev/null | grep -qx "HK-HVC-MARKER from the guest"; then
	ok hvc_marker
else
	not_ok hvc_marker "no marker in the virtio-console's file" \
		"$(console | grep -a HK- )" "$T/boot.err"
fi
if grep -q "HK-KMSG through printk" "$T/hvc.out" 2>/dev/null; then
	ok hvc_console
else
	not_ok hvc_console "no kernel message on hvc0" "$T/hvc.out"
fi
if console | grep -qx "HK-9P hello-from-the-host"; then
	ok p9_mount
	ok p9_read
else
	not_ok p9_mount "no HK-9P line with the host's file" \
		"$(console | grep -a -e HK- -e 9p -e 9P)" "$T/diod.log" "$T/boot.err"
	not_ok p9_read "see p9_mount"
fi
if [[ $(cat "$T/share/from-guest.txt" 2>/dev/null) == written-by-guest ]]; then
	ok p9_write
else
	not_ok p9_write "the guest's file is not in the shared directory" \
		"$T/diod.log"
fi
# Large transfers take Linux's zero-copy path: payloads in guest pages.
if console | grep -qx "HK-9P-BIG $big_md5"; then
	ok p9_big_read
else
	not_ok p9_big_read "the guest's md5 of big.bin differs or is missing" \
		"$(console | grep -a HK-9P)"
fi
if cmp -s "$T/share/big.bin" "$T/share/big.copy"; then
	ok p9_big_write
else
	not_ok p9_big_write "the guest's copy of big.bin differs" \
		"$(cmp "$T/share/big.bin" "$T/share/big.copy" 2>&1)"
fi
rc=$(cat "$T/boot.rc" 2>/dev/null)
if [[ $rc == 0 ]]; then
	ok poweroff
else
	not_ok poweroff "exit ${rc:-none}, want 0" "$T/boot.err" \
		"$(console | tail -n 20)"
fi

e2e_finish
