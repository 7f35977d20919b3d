#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The hyperkit part of `make demo`: a Linux VM boots on our hypervisor
# with a qcow2 disk from qcow-tool and vpnkit linked in (no daemon, no
# TAP, no root needed for the VM itself). Inside it, Debian's kernel and
# busybox do the rest: DHCP from vpnkit, a download from a web server on
# the host through host.docker.internal, ext4 made on the qcow2 disk, the
# download stored there and checked, then deleted and given back with
# fstrim. Back on the host, qemu-img checks the image and shows how little
# of it stays allocated.
#
# hyperkit needs a hardware KVM (the kvm_intel or kvm_amd module). Where
# there is none (this project's build machines have none, or a kvm-pvm
# that boots only PVM guests), the VM runs inside the nested rig:
# scripts/kvm-rig.sh boots a QEMU guest under software emulation whose
# kernel provides /dev/kvm, and hyperkit runs there on the host's files.
# UNIKIT_DEMO_RIG=1 forces the rig, =0 forbids it.
#
# Usage: demo-hyperkit.sh [FIRST_STEP_NUMBER]
set -euo pipefail

if [[ -n ${UNIKIT_BUILD:-} ]]; then
	PATH=$UNIKIT_BUILD/bin:$PATH
fi
for tool in hyperkit qcow-tool qemu-img python3; do
	if ! command -v "$tool" >/dev/null; then
		echo "demo: $tool not found (run 'make demo' from the repository root)" >&2
		exit 1
	fi
done

step=${1:-0}
scripts_dir=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib-demo.sh
source "$scripts_dir/lib-demo.sh"

work=$(mktemp -d /tmp/unikit-demo-hyperkit.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"

use_rig=${UNIKIT_DEMO_RIG:-}
if [[ -z $use_rig ]]; then
	use_rig=1
	if [[ -r /dev/kvm && -w /dev/kvm ]] &&
		[[ -d /sys/module/kvm_intel || -d /sys/module/kvm_amd ]]; then
		use_rig=0
	fi
fi

heading "hyperkit: a 4 GiB qcow2 disk for the VM, made by qcow-tool"
run qcow-tool create -f qcow2 disk.qcow2 4G
echo "   allocated on the host: $(du -k disk.qcow2 | cut -f1) KiB"

heading "hyperkit: the guest (Debian's kernel, a busybox initramfs)"
eval "$("$scripts_dir/guest-kernel.sh")"
echo "   kernel $GUEST_KERNEL"
cat >run.sh <<'EOF'
#!/bin/sh
# Runs in the VM as its /rig/run: network, disk, trim.
say() { echo "guest> $*"; }
say "CPUs: $(grep -c ^processor /proc/cpuinfo), memory: $(sed -n 's/MemTotal: *//p' /proc/meminfo)"
say "network: DHCP from vpnkit"
udhcpc -i eth0 -n -q -t 10 -T 3 2>&1 | grep -a udhcpc-bound | sed 's/^/guest> /'
say "download from the host through host.docker.internal:$DEMOPORT"
wget -q -O /tmp/blob "http://host.docker.internal:$DEMOPORT/blob" || { say "FAIL wget"; exit 1; }
say "sha256 $(sha256sum /tmp/blob | cut -d' ' -f1)"
say "disk: ext4 on /dev/vda (qcow2 through libqcow)"
/usr/sbin/mke2fs -F -q -t ext4 -E lazy_itable_init=0,lazy_journal_init=0 /dev/vda || { say "FAIL mkfs"; exit 1; }
mkdir -p /mnt && mount -t ext4 /dev/vda /mnt || { say "FAIL mount"; exit 1; }
for i in 1 2 3 4; do cp /tmp/blob /mnt/copy$i; done
sync
say "stored 4 copies: $(df -k /mnt | awk 'NR==2 { print $3 }') KiB used"
echo 3 >/proc/sys/vm/drop_caches
say "copy 4 read back: sha256 $(sha256sum /mnt/copy4 | cut -d' ' -f1)"
rm -f /mnt/copy*
sync
say "deleted them; $(fstrim -v /mnt)"
umount /mnt
say "powering off"
EOF
run "$scripts_dir/guest-initramfs.sh" -o initrd.gz -r run.sh \
	-m virtio_pci,virtio_blk,virtio_net,crc32c_generic,ext4 \
	-b /usr/sbin/mke2fs -f /etc/mke2fs.conf

head -c $((8 << 20)) /dev/urandom >blob
want=$(sha256sum blob | cut -d' ' -f1)
echo "   the host's file: 8 MiB, sha256 $want"

# Where hyperkit runs: a web server on that machine's loopback, then the
# VM. The image is used from that machine's /tmp: in the rig a tmpfs,
# which (unlike the 9P share of this directory) punches the holes the
# guest's trim makes; it comes back here as a sparse copy.
port=8088
cat >vm.sh <<EOF
#!/bin/bash
cd "$work" || exit 1
img=\$(mktemp -d /tmp/hkdemo.XXXXXX)/disk.qcow2
cp --sparse=always disk.qcow2 "\$img" || exit 1
python3 -m http.server --bind 127.0.0.1 --directory "$work" $port \\
	>http.log 2>&1 &
http=\$!
for _ in \$(seq 50); do
	python3 - <<'PY' 2>/dev/null && break
import socket; socket.create_connection(("127.0.0.1", $port), 1)
PY
	sleep 0.1
done
set -x
hyperkit -A -c 2 -m 512M -s 0:0,hostbridge -s 31,lpc -l com1,stdio \\
	-s 2,virtio-blk,file://\$img,format=qcow \\
	-s 3,virtio-vpnkit,inprocess -s 4,virtio-rnd \\
	-f "kexec,$GUEST_KERNEL,$work/initrd.gz,console=ttyS0 quiet panic=-1 \\
mitigations=off tsc=reliable no_timer_check cryptomgr.notests \\
initcall_blacklist=cmos_init DEMOPORT=$port"
rc=\$?
set +x
kill \$http
cp --sparse=always "\$img" "$work/disk.qcow2" && du -k "\$img" | cut -f1 >alloc
exit \$rc
EOF
chmod +x vm.sh

if ((use_rig)); then
	heading "hyperkit: boot the VM (inside the nested KVM rig: no hardware KVM here)"
	echo "   scripts/kvm-rig.sh boots QEMU (TCG) with a kernel that has /dev/kvm;"
	echo "   hyperkit runs there on this machine's files; everything is emulated,"
	echo "   so the boot takes tens of seconds instead of a fraction of one."
	vm=("$scripts_dir/kvm-rig.sh" --mem 1536M --cpus 2 --timeout 900
		--share "$work" -- "$work/vm.sh")
else
	heading "hyperkit: boot the VM on this machine's KVM"
	vm=("$work/vm.sh")
fi
# The guest's lines as they come, the kernel's own messages left out.
start=$(date +%s)
"${vm[@]}" >vm.log 2>&1 &
vm_pid=$!
tail --pid=$vm_pid -n +1 -f vm.log | tr -d '\r' | grep -a --line-buffered \
	-e '^guest>' -e '^+ hyperkit' -e 'hyperkit:' -e '^ *-[sfl] ' -e '^ *initcall' || true
vm_rc=0
wait $vm_pid || vm_rc=$?
echo "   the VM ran for $(($(date +%s) - start)) s"

heading "hyperkit: the image afterwards, seen by qemu-img"
run qemu-img check disk.qcow2
run qemu-img info disk.qcow2 | grep -e 'virtual size' -e 'disk size'
alloc=$(cat alloc 2>/dev/null || echo 999999)
echo "   allocated where the VM ran, after the trim: $alloc KiB (the guest wrote 32 MiB of copies)"

echo
got=$(tr -d '\r' <vm.log | grep -ac "sha256 $want" || true)
if ((vm_rc == 0 && got == 2 && alloc < 16 * 1024)); then
	echo "demo: hyperkit done. The VM booted, got its network from vpnkit,"
	echo "      stored and trimmed its data on qcow2, and powered off."
else
	echo "demo: hyperkit did not finish as expected: exit $vm_rc," \
		"$got of 2 sha256 matches, $alloc KiB allocated; the log's end:" >&2
	tail -n 30 vm.log >&2
	exit 1
fi
