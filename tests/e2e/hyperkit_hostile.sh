#!/bin/bash
# SPDX-License-Identifier: MIT
#
# A hostile guest: in one hyperkit boot inside the nested KVM rig, the
# guest takes virtio devices away from Linux and programs them itself with
# bad descriptors, bad rings, bad queue settings and garbage in the device
# registers and PCI config space (build/tests/bin/virtio_hostile, from
# hyperkit/tests/tools/virtio_hostile.c); hyperkit must survive and every
# other device must go on working.
#
#   hostile_rng       virtio_hostile against virtio-rnd (slot 3): every
#                     attack's outcome is one this table allows, the device
#                     came back after each reset, and never wrote guest
#                     memory it was not given
#   hostile_blk       ... against a second virtio-blk (slot 4, the victim)
#   good_disk         meanwhile, and after, the first virtio-blk (slot 2)
#                     reads its known content and writes a pattern that
#                     the host finds in the file afterwards
#   victim_disk       the victim's file holds its original bytes except
#                     the sector the driver's last check wrote (nothing
#                     past the end, no stray writes)
#   rebind            Linux's own drivers bind to both attacked devices
#                     again: /dev/hwrng gives random bytes, the victim's
#                     sector reads back through the kernel
#   poweroff          the guest powered off and hyperkit exited with 0
#   stderr            hyperkit printed nothing but warnings (no errors, no
#                     sanitizer reports under SANITIZE=1)
#
# The acceptable outcomes follow hyperkit's design (virtqueue.c,
# virtio_pci.c, virtio_blk.c): a bad chain or ring marks the queue broken
# and sets DEVICE_NEEDS_RESET without a used entry; a bad queue setting or
# feature set is refused; a bad virtio-blk request gets IOERR or UNSUPP;
# garbage in registers leaves the device working.
set -uo pipefail

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_hk.sh"

e2e_init hyperkit_hostile

if ! have_cmd hyperkit || ! have_cmd virtio_hostile; then
	not_ok build "hyperkit or virtio_hostile is not built in $UNIKIT_BUILD"
	e2e_finish
fi
# Copies in $T, which the rig shares (its /tmp is its own).
cp "$(command -v hyperkit)" "$T/hyperkit" || exit 1
hk=$T/hyperkit
hostile=$(command -v virtio_hostile)

hk_guest_kernel

# The disks: known random content. The good disk's first MiB is read by
# the guest, its second MiB written with good.pat.
head -c $((8 << 20)) /dev/urandom >"$T/disk.raw"
head -c $((1 << 20)) /dev/urandom >"$T/good.pat"
head -c $((4 << 20)) /dev/urandom >"$T/victim.raw"
cp "$T/victim.raw" "$T/victim.orig"
good_md5=$(head -c $((1 << 20)) "$T/disk.raw" | md5sum | cut -d' ' -f1)
pat_md5=$(md5sum <"$T/good.pat" | cut -d' ' -f1)

# The guest's /tmp is a tmpfs: the program goes to /usr/bin (-f), its
# libraries (-b) where ldd finds them.
cat >"$T/run.sh" <<EOF2
#!/bin/sh
H=/usr/bin/virtio_hostile
good=0000:00:02.0 rng=0000:00:03.0 victim=0000:00:04.0
gdev=\$(ls /sys/bus/pci/devices/\$good/virtio*/block 2>/dev/null)
echo "HK-GOOD-DEV \$gdev"
# Reads of the good disk while the attacks run, once a second.
(
	n=0 bad=0
	while [ ! -e /tmp/stop ]; do
		echo 3 >/proc/sys/vm/drop_caches
		s=\$(dd if=/dev/\$gdev bs=65536 count=16 2>/dev/null | md5sum | cut -d' ' -f1)
		if [ "\$s" = "$good_md5" ]; then n=\$((n + 1)); else bad=\$((bad + 1)); fi
		sleep 1
	done
	echo "HK-GOOD-BG \$n \$bad"
) &
bg=\$!
\$H -t 3000 \$rng
echo "HK-HOSTILE-RC rng \$?"
\$H -t 3000 \$victim
echo "HK-HOSTILE-RC blk \$?"
touch /tmp/stop
wait \$bg
echo 3 >/proc/sys/vm/drop_caches
echo "HK-GOOD-READ \$(dd if=/dev/\$gdev bs=65536 count=16 2>/dev/null | md5sum | cut -d' ' -f1)"
dd if=/good.pat of=/dev/\$gdev bs=65536 seek=16 conv=fsync 2>/dev/null
echo "HK-GOOD-WRITE \$?"
echo 3 >/proc/sys/vm/drop_caches
echo "HK-GOOD-REREAD \$(dd if=/dev/\$gdev bs=65536 skip=16 count=16 2>/dev/null | md5sum | cut -d' ' -f1)"
# Linux's drivers take the attacked devices back.
echo \$rng >/sys/bus/pci/drivers/virtio-pci/bind
echo \$victim >/sys/bus/pci/drivers/virtio-pci/bind
sleep 1
echo "HK-RNG-CURRENT \$(cat /sys/class/misc/hw_random/rng_current 2>/dev/null)"
echo "HK-HWRNG \$(timeout 20 dd if=/dev/hwrng bs=256 count=1 2>/dev/null | od -An -tx1 | tr -d ' \n' | head -c 512)"
vdev=\$(ls /sys/bus/pci/devices/\$victim/virtio*/block 2>/dev/null)
echo "HK-VICTIM-SECTOR1 \$(dd if=/dev/\$vdev bs=512 skip=1 count=1 2>/dev/null | head -c 24)"
EOF2
if ! "$e2e_root/scripts/guest-initramfs.sh" -o "$T/initrd.gz" -r "$T/run.sh" \
	-m virtio_pci,virtio_blk,virtio_rng -b "$hostile" \
	-f "$hostile:/usr/bin/virtio_hostile" -f "$T/good.pat:/good.pat" \
	>"$T/initramfs.log" 2>&1; then
	not_ok initramfs "$T/initramfs.log"
	e2e_finish
fi

cat >"$T/inner.sh" <<EOF2
#!/bin/sh
cd "$T" || exit 125
cmdline="console=ttyS0 panic=-1 quiet initcall_blacklist=cmos_init mitigations=off tsc=reliable no_timer_check cryptomgr.notests"
start=\$(date +%s%N)
timeout -k 10 1200 "$hk" -A -c 1 -m 256M -s 0:0,hostbridge \\
	-s 2,virtio-blk,$T/disk.raw -s 3,virtio-rnd -s 4,virtio-blk,$T/victim.raw \\
	-s 31,lpc -l com1,stdio \\
	-f "kexec,$GUEST_KERNEL,$T/initrd.gz,\$cmdline" >boot.console 2>boot.err
echo \$? >boot.rc
end=\$(date +%s%N)
echo \$(( (end - start) / 1000000 )) >boot.ms
exit 0
EOF2
chmod +x "$T/inner.sh"

hk_rig --timeout 1500 -- "$T/inner.sh"
echo "# hyperkit ran $(cat "$T/boot.ms" 2>/dev/null) ms, exit $(cat "$T/boot.rc" 2>/dev/null)"

console() { tr -d '\r' <"$T/boot.console"; }
console >"$T/console.txt"
grep -a '^HOSTILE' "$T/console.txt" | sed 's/^/# /'

# What each attack may end in (virtio_hostile.c names the outcomes).
# Anything else, a missing attack, "+dirty" (the device wrote memory it
# was not given) or UNRECOVERED (a reset did not bring it back) fails.
declare -A allowed=(
	[buf-addr-high]=needs-reset
	[buf-addr-lapic]=needs-reset
	[buf-addr-ram-end]=needs-reset
	[buf-addr-wrap]=needs-reset
	[buf-len-4g]=needs-reset
	[blk-write-from-high]=needs-reset
	[blk-write-from-ram-end]=needs-reset
	[chain-loop]=needs-reset
	[chain-self-loop]=needs-reset
	[chain-next-eq-size]=needs-reset
	[chain-next-ffff]=needs-reset
	[chain-read-after-write]=needs-reset
	[chain-longer-than-queue]=needs-reset
	[avail-head-out-of-range]=needs-reset
	[avail-idx-jump]=needs-reset
	[indirect-outside-ram]=needs-reset
	[indirect-len-not-16n]=needs-reset
	[indirect-len-zero]=needs-reset
	[indirect-nested]=needs-reset
	[indirect-with-next]=needs-reset
	[indirect-loop]=needs-reset
	[indirect-next-out-of-range]=needs-reset
	[indirect-2000-entries]=needs-reset
	# A long but well-formed indirect chain may be served (within its
	# buffers) or refused; virtio-blk skips it.
	[indirect-longer-than-queue]='served|needs-reset|skip'
	[qsize-not-pow2]=refused
	[qsize-above-max]='refused|clamped'
	[qsize-0x8001]='refused|clamped'
	[qsize-zero]=refused
	[ring-desc-lapic]='refused|needs-reset'
	[ring-used-ram-end]='refused|needs-reset'
	[ring-avail-wrap]='refused|needs-reset'
	[ring-desc-misaligned]='refused|needs-reset'
	[ring-move-while-live]=survived
	[features-unoffered]=refused
	[features-no-version1]=refused
	[common-cfg-garbage]=survived
	[device-cfg-garbage]='survived|skip'
	[notify-bad-queues]=survived
	[pci-bar-sizing]=survived
	[pci-command-flips]=survived
	[pci-bar-into-ram]=survived
	[pci-decode-off-notify]=survived
	[pci-bar-overlap]=survived
	[blk-sector-past-end]=ioerr
	[blk-sector-overflow]=ioerr
	[blk-write-straddles-end]=ioerr
	[blk-bad-type]=unsupp
	[blk-short-header]='ioerr|needs-reset'
	[blk-len-not-sector]=ioerr
	[blk-discard-17-segments]='unsupp|ioerr'
	# No writable byte: the chain comes back untouched, or breaks.
	[blk-no-status]='status=0xee|needs-reset'
)
common_attacks="buf-addr-high buf-addr-lapic buf-addr-ram-end buf-addr-wrap
	buf-len-4g chain-loop chain-self-loop chain-next-eq-size chain-next-ffff
	chain-read-after-write chain-longer-than-queue avail-head-out-of-range
	avail-idx-jump indirect-outside-ram indirect-len-not-16n indirect-len-zero
	indirect-nested indirect-with-next indirect-loop indirect-next-out-of-range
	indirect-2000-entries indirect-longer-than-queue qsize-not-pow2
	qsize-above-max qsize-0x8001 qsize-zero ring-desc-lapic ring-used-ram-end
	ring-avail-wrap ring-desc-misaligned ring-move-while-live
	features-unoffered features-no-version1 common-cfg-garbage
	device-cfg-garbage notify-bad-queues pci-bar-sizing pci-command-flips
	pci-bar-into-ram pci-decode-off-notify pci-bar-overlap"
blk_attacks="blk-write-from-high blk-write-from-ram-end blk-sector-past-end
	blk-sector-overflow blk-write-straddles-end blk-bad-type blk-short-header
	blk-len-not-sector blk-discard-17-segments blk-no-status"

# judge KIND ATTACKS...: the HOSTILE lines of one run (between its
# HOSTILE-DEVICE line and the HK-HOSTILE-RC line) against the table.
judge() {
	local kind=$1 run name line outcome rec bad=()
	shift
	run=$(awk -v k="$kind" '
		/^HOSTILE-DEVICE / { on = ($3 == "virtio-" k) }
		on { print }
		$0 ~ "^HK-HOSTILE-RC " k { on = 0 }' "$T/console.txt")
	for name in "$@"; do
		line=$(grep -a "^HOSTILE $name " <<<"$run" | head -n 1)
		if [[ -z $line ]]; then
			bad+=("$name: no line")
			continue
		fi
		read -r _ _ outcome rec _ <<<"$line"
		if [[ $rec != recovered ]]; then
			bad+=("$line")
		elif ! [[ $outcome =~ ^(${allowed[$name]})$ ]]; then
			bad+=("$line (want ${allowed[$name]})")
		fi
	done
	if ! grep -aqx 'HOSTILE-RECOVERED ok' <<<"$run"; then
		bad+=("$(grep -a '^HOSTILE-RECOVERED\|^HOSTILE-SETUP' <<<"$run" || echo 'no HOSTILE-RECOVERED line')")
	fi
	if ! grep -aqx "HK-HOSTILE-RC $kind 0" "$T/console.txt"; then
		bad+=("$(grep -a "^HK-HOSTILE-RC $kind" "$T/console.txt" || echo "virtio_hostile $kind did not finish")")
	fi
	if ((${#bad[@]})); then
		not_ok "hostile_$kind" "${bad[@]}"
	else
		ok "hostile_$kind"
	fi
}
# shellcheck disable=SC2086
judge rng $common_attacks
# shellcheck disable=SC2086
judge blk $common_attacks $blk_attacks

# The good disk: read during and after the attacks, then written.
bg=$(grep -a '^HK-GOOD-BG ' "$T/console.txt")
good_ok=1
grep -aqx "HK-GOOD-READ $good_md5" "$T/console.txt" || good_ok=0
grep -aqx "HK-GOOD-REREAD $pat_md5" "$T/console.txt" || good_ok=0
[[ $bg =~ ^HK-GOOD-BG\ [1-9][0-9]*\ 0$ ]] || good_ok=0
[[ $(head -c $((1 << 20)) "$T/disk.raw" | md5sum | cut -d' ' -f1) == "$good_md5" ]] || good_ok=0
cmp -s <(tail -c +$(((1 << 20) + 1)) "$T/disk.raw" | head -c $((1 << 20))) "$T/good.pat" || good_ok=0
if ((good_ok)); then
	ok good_disk
else
	not_ok good_disk "want HK-GOOD-READ $good_md5, HK-GOOD-REREAD $pat_md5, no bad background read, the pattern at 1 MiB in disk.raw" \
		"$(console | grep -a '^HK-GOOD')"
fi

# The victim's file: the original, except sector 1 (the driver's final
# write: its pattern, zero-padded).
"$PYTHON" - "$T/victim.orig" "$T/victim.want" <<'EOF'
import sys
d = bytearray(open(sys.argv[1], "rb").read())
p = b"HOSTILE-RECOVERED-SECTOR"
d[512:1024] = p + bytes(512 - len(p))
open(sys.argv[2], "wb").write(d)
EOF
if cmp -s "$T/victim.raw" "$T/victim.want"; then
	ok victim_disk
else
	not_ok victim_disk "victim.raw differs from its original with sector 1 rewritten" \
		"$(cmp -l "$T/victim.raw" "$T/victim.want" 2>&1 | head -n 5)" \
		"size $(stat -c %s "$T/victim.raw"), want $(stat -c %s "$T/victim.want")"
fi

# Linux's drivers on the attacked devices.
hw=$(console | sed -n 's/^HK-HWRNG //p')
if grep -aqx 'HK-RNG-CURRENT virtio_rng.*' "$T/console.txt" && ((${#hw} == 512)) &&
    [[ $hw =~ [1-9a-f] ]] &&
    grep -aqx 'HK-VICTIM-SECTOR1 HOSTILE-RECOVERED-SECTOR' "$T/console.txt"; then
	ok rebind
else
	not_ok rebind "want virtio_rng current, 256 random bytes from /dev/hwrng, the victim's sector 1" \
		"$(console | grep -a -e '^HK-RNG' -e '^HK-HWRNG' -e '^HK-VICTIM')"
fi

rc=$(cat "$T/boot.rc" 2>/dev/null)
if [[ $rc == 0 ]] && grep -aq '^RIG-EXIT=' "$T/console.txt"; then
	ok poweroff
else
	not_ok poweroff "exit ${rc:-none}, want 0 after RIG-EXIT" "$T/boot.err" \
		"$(console | tail -n 20)"
fi

# Warnings are expected (broken queues are logged); nothing else is.
if grep -avE '^hyperkit: (warning|info|debug|trace): ' "$T/boot.err" >"$T/err.other" &&
    [[ -s $T/err.other ]]; then
	not_ok stderr "hyperkit printed more than warnings" "$T/err.other"
else
	ok stderr
fi
echo "# $(grep -c . "$T/boot.err" 2>/dev/null) warning lines from hyperkit"

e2e_finish
