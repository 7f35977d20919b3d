#!/bin/bash
# SPDX-License-Identifier: MIT
#
# hyperkit on a qcow2 disk: an ext4 file system made, filled, checked and
# trimmed by a Linux guest, the image checked by qemu-img after each boot.
#
# The host makes an empty 1 GiB image with `qcow-tool create`. Inside the
# nested KVM rig (scripts/kvm-rig.sh, one rig boot), the image is copied
# to the rig's tmpfs (which, unlike the 9P share, can punch holes), and
# hyperkit boots Debian's kernel twice with it as virtio-blk
# (file://PATH,format=qcow):
#
#   boot one: mke2fs -t ext4 on /dev/vda (Debian's mke2fs and its shared
#             libraries copied into the busybox initramfs), mount, a 64 MiB
#             file from /dev/urandom and a small one, their sha256 sums on
#             the disk, sync, unmount, power off;
#   boot two: mount, check the sums, delete the big file, `fstrim -v /mnt`
#             (busybox), unmount, power off.
#
# After each boot the rig copies the image (sparse) back to the host and
# records its allocated size in tmpfs (st_blocks). Cases:
#
#   boot1_mkfs_write     boot one: mkfs, mount, writes, unmount, exit 0
#   boot1_check          qemu-img check of the image after boot one: clean
#   boot1_allocated      ... at least the 64 MiB file is allocated in it
#   boot2_sums           boot two: both files read back with their sums
#   boot2_fstrim         fstrim trimmed at least 64 MiB, exit 0
#   boot2_check          qemu-img check after boot two: clean
#   trim_unmapped        qemu-img map: allocated data dropped by >= 48 MiB
#   trim_host_space      the image file's blocks (in tmpfs) dropped by
#                        >= 48 MiB: libqcow punched holes for the freed
#                        clusters
#
# Boot times (hyperkit start to exit, inside the rig) are printed as
# comments; under software emulation each boot takes a few minutes.
set -uo pipefail

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_hk.sh"

e2e_init hyperkit_qcow

for c in hyperkit qcow-tool qemu-img; do
	if ! have_cmd "$c"; then
		not_ok setup "$c not found (hyperkit, qcow-tool: make; qemu-img: qemu-utils)"
		e2e_finish
	fi
done
hk=$(command -v hyperkit)

hk_guest_kernel

# Debian's mke2fs with what it links against; busybox has no ext4 mkfs.
# The libraries go in under the names the loader looks for, as files.
files=(-f /usr/sbin/mke2fs:/rig/bin/mke2fs)
[[ -f /etc/mke2fs.conf ]] && files+=(-f /etc/mke2fs.conf)
while read -r lib; do
	files+=(-f "$(readlink -f "$lib"):$lib")
done < <(ldd /usr/sbin/mke2fs | grep -oE '/[^ ]+\.so[^ ]*')

cat >"$T/run.sh" <<'EOF2'
#!/bin/sh
# $1: one (make and fill the file system) or two (check, delete, trim).
mkdir -p /mnt
case $1 in
one)
	/rig/bin/mke2fs -F -q -t ext4 -E lazy_itable_init=0,lazy_journal_init=0 \
		/dev/vda || { echo "QC-FAIL mkfs"; exit 1; }
	mount -t ext4 /dev/vda /mnt || { echo "QC-FAIL mount"; exit 1; }
	dd if=/dev/urandom of=/mnt/big bs=1M count=64 iflag=fullblock 2>/dev/null ||
		{ echo "QC-FAIL write big"; exit 1; }
	echo "a small file written by boot one" >/mnt/small
	(cd /mnt && sha256sum big small >sums) || { echo "QC-FAIL sums"; exit 1; }
	sync
	echo "QC-SUMS $(tr '\n' ' ' </mnt/sums)"
	umount /mnt || { echo "QC-FAIL umount"; exit 1; }
	echo "QC-ONE-OK"
	;;
two)
	mount -t ext4 /dev/vda /mnt || { echo "QC-FAIL mount"; exit 1; }
	if (cd /mnt && sha256sum -c sums); then
		echo "QC-SUMS-OK"
	else
		echo "QC-FAIL sums"
	fi
	rm -f /mnt/big
	sync
	out=$(fstrim -v /mnt 2>&1)
	rc=$?
	echo "QC-FSTRIM rc=$rc $out"
	umount /mnt || { echo "QC-FAIL umount"; exit 1; }
	[ $rc = 0 ] || exit 1
	echo "QC-TWO-OK"
	;;
*)
	echo "QC-FAIL no phase"
	exit 1
	;;
esac
EOF2
if ! "$e2e_root/scripts/guest-initramfs.sh" -o "$T/initrd.gz" -r "$T/run.sh" \
	-m virtio_pci,virtio_blk,crc32c_generic,ext4 "${files[@]}" \
	>"$T/initramfs.log" 2>&1; then
	not_ok initramfs "$T/initramfs.log"
	e2e_finish
fi

if ! qcow-tool create -q -f qcow2 "$T/disk.qcow2" 1G >"$T/create.log" 2>&1; then
	not_ok setup "qcow-tool create failed" "$T/create.log"
	e2e_finish
fi

# The rig's side: each boot's console, stderr, status and time in $T, a
# sparse copy of the image after each boot, and its blocks in tmpfs.
cat >"$T/inner.sh" <<EOF2
#!/bin/sh
cd "$T" || exit 125
img=/tmp/hkq/disk.qcow2
mkdir -p /tmp/hkq && cp --sparse=always disk.qcow2 "\$img" || exit 125
cmdline="console=ttyS0 panic=-1 quiet initcall_blacklist=cmos_init mitigations=off tsc=reliable no_timer_check cryptomgr.notests"
boot() {
	name=\$1
	start=\$(date +%s%N)
	timeout -k 10 400 "$hk" -A -c 1 -m 256M -s 0:0,hostbridge \\
		-s 2,virtio-blk,file://\$img,format=qcow -s 31,lpc -l com1,stdio \\
		-f "kexec,$GUEST_KERNEL,$T/initrd.gz,\$cmdline -- \$name" \\
		>"\$name.console" 2>"\$name.err"
	echo \$? >"\$name.rc"
	end=\$(date +%s%N)
	echo \$(( (end - start) / 1000000 )) >"\$name.ms"
	stat -c '%b %B' "\$img" >"\$name.blocks"
	cp --sparse=always "\$img" "after-\$name.qcow2"
}
boot one
boot two
exit 0
EOF2
chmod +x "$T/inner.sh"

hk_rig --mem 1G --timeout 840 -- "$T/inner.sh"

# console NAME: the boot's console without carriage returns.
console() {
	tr -d '\r' <"$T/$1.console" 2>/dev/null
}

# boot_ok NAME MARKER: hyperkit exited 0 and the guest printed MARKER and
# RIG-EXIT=0.
boot_ok() {
	[[ $(cat "$T/$1.rc" 2>/dev/null) == 0 ]] &&
		console "$1" | grep -qx "$2" && console "$1" | grep -qx "RIG-EXIT=0"
}

boot_detail() {
	echo "hyperkit exit $(cat "$T/$1.rc" 2>/dev/null); the console's end:"
	console "$1" | tail -n 15
}

# qcheck NAME: qemu-img check of the copy after boot NAME is clean.
qcheck() {
	local f=$T/after-$1.qcow2
	if qemu-img check "$f" >"$T/check-$1.out" 2>&1 &&
		grep -q "No errors were found on the image" "$T/check-$1.out"; then
		ok "boot$2_check"
	else
		not_ok "boot$2_check" "qemu-img check $f:" "$T/check-$1.out"
	fi
}

# data_bytes FILE: bytes qemu-img map reports as data in the image.
data_bytes() {
	qemu-img map --output=json "$1" | "$PYTHON" -c '
import json, sys
print(sum(e["length"] for e in json.load(sys.stdin) if e["data"]))'
}

# tmpfs_bytes NAME: the image's allocated bytes in the rig's tmpfs.
tmpfs_bytes() {
	local b u
	read -r b u <"$T/$1.blocks" || return 1
	echo $((b * u))
}

mib=$((1024 * 1024))
echo "# boot one: hyperkit ran $(cat "$T/one.ms" 2>/dev/null) ms;" \
	"boot two: $(cat "$T/two.ms" 2>/dev/null) ms"

if boot_ok one QC-ONE-OK; then
	ok boot1_mkfs_write
else
	not_ok boot1_mkfs_write "$(boot_detail one)" "$T/one.err"
fi
qcheck one 1
d1=$(data_bytes "$T/after-one.qcow2" 2>/dev/null)
b1=$(tmpfs_bytes one 2>/dev/null)
echo "# after boot one: qemu-img map data ${d1:-?} bytes, image blocks in tmpfs ${b1:-?} bytes"
if [[ -n $d1 ]] && ((d1 >= 64 * mib)); then
	ok boot1_allocated
else
	not_ok boot1_allocated "qemu-img map shows ${d1:-no} bytes of data, want >= 64 MiB"
fi

if boot_ok two QC-TWO-OK && console two | grep -qx QC-SUMS-OK; then
	ok boot2_sums
else
	not_ok boot2_sums "$(boot_detail two)" "$T/two.err"
fi
trim=$(console two | sed -n 's/^QC-FSTRIM rc=0 .*: \([0-9]*\) bytes.*/\1/p')
echo "# $(console two | grep '^QC-FSTRIM')"
if [[ -n $trim ]] && ((trim >= 64 * mib)); then
	ok boot2_fstrim
else
	not_ok boot2_fstrim "no 'QC-FSTRIM rc=0 ... N bytes trimmed' with N >= 64 MiB:" \
		"$(console two | grep -E '^QC-|fstrim')"
fi
qcheck two 2
d2=$(data_bytes "$T/after-two.qcow2" 2>/dev/null)
b2=$(tmpfs_bytes two 2>/dev/null)
echo "# after boot two: qemu-img map data ${d2:-?} bytes, image blocks in tmpfs ${b2:-?} bytes"

# Most of the deleted file's 64 MiB must come back: 48 MiB at least
# (ext4's own metadata and the journal's writes may take some).
if [[ -n $d1 && -n $d2 ]] && ((d1 - d2 >= 48 * mib)); then
	ok trim_unmapped
else
	not_ok trim_unmapped "qemu-img map data ${d1:-?} -> ${d2:-?} bytes, want a drop >= 48 MiB"
fi
if [[ -n $b1 && -n $b2 ]] && ((b1 - b2 >= 48 * mib)); then
	ok trim_host_space
else
	not_ok trim_host_space "the image's blocks ${b1:-?} -> ${b2:-?} bytes, want a drop >= 48 MiB"
fi

e2e_finish
