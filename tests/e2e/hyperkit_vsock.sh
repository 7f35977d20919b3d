#!/bin/bash
# SPDX-License-Identifier: MIT
#
# hyperkit's virtio-sock against Linux's vsock driver and Debian's socat
# (VSOCK-CONNECT / VSOCK-LISTEN in the guest, Unix sockets on the host),
# in one boot inside the nested KVM rig (scripts/kvm-rig.sh), with
# `-s 4,virtio-sock,guest_cid=3,path=/tmp/vsock,guest_forwards=5000`:
#
#   guest_to_host     the guest sends a 3 MB file to host port 1234; a
#                     socat on the host listens on DIR/00000002.000004d2
#                     and the host compares the sha256
#   host_to_guest     a host client connects to DIR/connect, writes the
#                     18-byte "00000003.00001770\n", then 1 MB that the
#                     guest's socat (VSOCK-LISTEN:6000, EXEC:cat) echoes
#                     back; the host compares what came back
#   guest_forwards    a host client connects to DIR/guest.00001388 (the
#                     symlink to DIR/00000003.00001388) and sends 1 MB to
#                     the guest's VSOCK-LISTEN:5000 running sha256sum; the
#                     hash the guest sends back is the host's
#   refused           the guest's socat to host port 4321, where nothing
#                     listens, fails at once (connection reset)
#   poweroff          the guest powers off, hyperkit exits with 0
#   cleanup           DIR/connect, the forward socket and its symlink are
#                     gone after the VM
#
# The guest starts its listeners before it sends the file, and the host
# connects only once the whole file has arrived.
set -uo pipefail

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_hk.sh"

e2e_init hyperkit_vsock

if ! have_cmd hyperkit; then
	not_ok build "hyperkit is not built in $UNIKIT_BUILD"
	e2e_finish
fi
socat=$(command -v socat)
if [[ -z $socat ]]; then
	not_ok socat "socat is not installed (apt-get install socat)"
	e2e_finish
fi
cp "$(command -v hyperkit)" "$T/hyperkit" || exit 1
hk=$T/hyperkit

hk_guest_kernel
mods=virtio_pci,vsock,vmw_vsock_virtio_transport_common,vmw_vsock_virtio_transport
for m in ${mods//,/ }; do
	if ! grep -q "/$m.ko" "$GUEST_MODULES/modules.dep"; then
		not_ok modules "no $m in $GUEST_MODULES/modules.dep"
		e2e_finish
	fi
done

head -c 3000000 /dev/urandom >"$T/up.bin"
head -c 1000000 /dev/urandom >"$T/echo.bin"
head -c 1000000 /dev/urandom >"$T/fwd.bin"
up_sha=$(sha256sum <"$T/up.bin" | cut -d' ' -f1)
fwd_sha=$(sha256sum <"$T/fwd.bin" | cut -d' ' -f1)

cat >"$T/run.sh" <<'EOF2'
#!/bin/sh
# One connection each: an echo on 6000 (through DIR/connect) and a
# sha256sum on 5000 (through guest_forwards).
socat VSOCK-LISTEN:6000 EXEC:cat 2>/tmp/l6000.err &
p6000=$!
socat VSOCK-LISTEN:5000 EXEC:sha256sum 2>/tmp/l5000.err &
p5000=$!
sleep 1
if socat -u OPEN:/up.bin VSOCK-CONNECT:2:1234 2>/tmp/up.err; then
	echo "HK-VSOCK-SENT"
else
	echo "HK-VSOCK-SEND-FAILED $(cat /tmp/up.err)"
fi
t0=$(date +%s)
if socat -u OPEN:/dev/null VSOCK-CONNECT:2:4321 2>/tmp/refused.err; then
	echo "HK-VSOCK-REFUSED-NOT"
else
	echo "HK-VSOCK-REFUSED $(($(date +%s) - t0)) $(tail -n 1 /tmp/refused.err)"
fi
# The host connects once the file is in; give up after a while.
(sleep 240; kill $p6000 $p5000 2>/dev/null) &
wd=$!
wait $p6000
echo "HK-VSOCK-L6000 $?"
wait $p5000
echo "HK-VSOCK-L5000 $?"
kill $wd 2>/dev/null
cat /tmp/l6000.err /tmp/l5000.err
EOF2
if ! "$e2e_root/scripts/guest-initramfs.sh" -o "$T/initrd.gz" -r "$T/run.sh" \
	-m "$mods" -b socat -f "$T/up.bin:/up.bin" >"$T/initramfs.log" 2>&1; then
	not_ok initramfs "$T/initramfs.log"
	e2e_finish
fi

# The rig's side: the receiver for the guest's file, hyperkit in the
# background, then the two host clients once the file is in. The socket
# directory is in the rig's own /tmp: $T reaches the rig over 9p, where
# Unix sockets cannot be bound.
cat >"$T/inner.sh" <<EOF2
#!/bin/sh
cd "$T" || exit 125
V=/tmp/vsock
mkdir -p \$V || exit 125
"$socat" -u UNIX-LISTEN:\$V/00000002.000004d2 CREATE:up.recv 2>recv.err &
recv_pid=\$!
cmdline="console=ttyS0 panic=-1 quiet initcall_blacklist=cmos_init mitigations=off tsc=reliable no_timer_check cryptomgr.notests"
start=\$(date +%s%N)
(timeout -k 10 900 "$hk" -A -c 1 -m 256M -s 0:0,hostbridge \\
	-s 4,virtio-sock,guest_cid=3,path=\$V,guest_forwards=5000 \\
	-s 31,lpc -l com1,stdio \\
	-f "kexec,$GUEST_KERNEL,$T/initrd.gz,\$cmdline" >boot.console 2>boot.err
 echo \$? >boot.rc) &
hk_pid=\$!
# Wait for the guest's file (the receiver exits at its EOF).
i=0
while [ \$i -lt 600 ] && kill -0 \$recv_pid 2>/dev/null; do
	sleep 1
	i=\$((i + 1))
done
kill \$recv_pid 2>/dev/null
ls -l \$V >vsock.during
# Host to guest through DIR/connect: the preamble, then bytes to echo.
(printf '00000003.00001770\\n'; cat echo.bin) |
	timeout 300 "$socat" -t 120 - UNIX-CONNECT:\$V/connect >echo.recv 2>echo.err
echo \$? >echo.rc
# Through the forward's symlink, no preamble: the guest answers a hash.
timeout 300 "$socat" -t 120 - UNIX-CONNECT:\$V/guest.00001388 <fwd.bin >fwd.recv 2>fwd.err
echo \$? >fwd.rc
wait \$hk_pid
end=\$(date +%s%N)
echo \$(( (end - start) / 1000000 )) >boot.ms
ls -l \$V >vsock.after
for f in connect 00000003.00001388 guest.00001388; do
	if [ -e \$V/\$f ] || [ -L \$V/\$f ]; then echo \$f; fi
done >vsock.left
exit 0
EOF2
chmod +x "$T/inner.sh"

hk_rig --timeout 1500 -- "$T/inner.sh"
echo "# hyperkit ran $(cat "$T/boot.ms" 2>/dev/null) ms, exit $(cat "$T/boot.rc" 2>/dev/null)"

console() { tr -d '\r' <"$T/boot.console"; }
console | grep -a '^HK-VSOCK' | sed 's/^/# guest: /'

got=$(sha256sum <"$T/up.recv" 2>/dev/null | cut -d' ' -f1)
if console | grep -qx "HK-VSOCK-SENT" && [[ $got == "$up_sha" ]]; then
	ok guest_to_host
else
	not_ok guest_to_host "sha256 $got, want $up_sha" \
		"$(console | grep -a -e HK- -e vsock)" "$T/recv.err" "$T/boot.err"
fi
if cmp -s "$T/echo.bin" "$T/echo.recv"; then
	ok host_to_guest
else
	not_ok host_to_guest "the echo differs: $(cmp "$T/echo.bin" "$T/echo.recv" 2>&1)" \
		"socat exit $(cat "$T/echo.rc" 2>/dev/null)" "$T/echo.err" \
		"$(console | grep -a HK-VSOCK-L6000)"
fi
if [[ $(cut -d' ' -f1 "$T/fwd.recv" 2>/dev/null) == "$fwd_sha" ]]; then
	ok guest_forwards
else
	not_ok guest_forwards "the guest's hash: $(cat "$T/fwd.recv" 2>/dev/null), want $fwd_sha" \
		"socat exit $(cat "$T/fwd.rc" 2>/dev/null)" "$T/fwd.err" "$T/vsock.during"
fi
# "HK-VSOCK-REFUSED SECONDS socat's error": fast, and a reset.
refused=$(console | grep -a '^HK-VSOCK-REFUSED ' | head -n 1)
secs=$(awk '{print $2}' <<<"$refused")
if [[ -n $secs ]] && ((secs <= 5)) &&
	grep -qi -e "reset by peer" -e "refused" <<<"$refused"; then
	ok refused
else
	not_ok refused "want a quick reset, got: ${refused:-nothing}" \
		"$(console | grep -a HK-VSOCK-REFUSED)"
fi
rc=$(cat "$T/boot.rc" 2>/dev/null)
if [[ $rc == 0 ]]; then
	ok poweroff
else
	not_ok poweroff "exit ${rc:-none}, want 0" "$T/boot.err" \
		"$(console | tail -n 20)"
fi
if [[ ! -f $T/vsock.left || -s $T/vsock.left ]]; then
	not_ok cleanup "the device's sockets are still there" "$T/vsock.after"
elif ! grep -q "connect" "$T/vsock.during" 2>/dev/null ||
	! grep -q "guest.00001388 -> 00000003.00001388" "$T/vsock.during"; then
	not_ok cleanup "the device's sockets were not there while it ran" \
		"$T/vsock.during"
else
	ok cleanup
fi

e2e_finish
