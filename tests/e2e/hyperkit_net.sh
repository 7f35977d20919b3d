#!/bin/bash
# SPDX-License-Identifier: MIT
#
# hyperkit's virtio-net with vpnkit as the network: inside the nested KVM
# rig (scripts/kvm-rig.sh, one rig boot), an HTTP server listens on the
# rig's 127.0.0.1; hyperkit boots Debian's kernel with a busybox
# initramfs (virtio_pci, virtio_net) whose script takes a DHCP lease with
# udhcpc and fetches a 1 MiB file from 192.168.65.2 (vpnkit's address for
# the host's loopback) with wget, printing its sha256.
#
#   daemon_dhcp       -s 2,virtio-vpnkit,path=SOCK to a `vpnkit --listen
#                     SOCK` daemon: the guest gets a 192.168.65.x lease
#   daemon_wget       ... and the file arrives intact (same sha256)
#   daemon_poweroff   ... and the guest powers off, hyperkit exits 0
#   inprocess_dhcp    -s 2,virtio-vpnkit,inprocess (libvpnkit in-process,
#   inprocess_wget    with checksum and TSO offloads): the same
#   inprocess_tso     ... and the driver negotiated GUEST_TSO4/HOST_TSO4
#   inprocess_poweroff
#   stream_dhcp       -s 2,virtio-net,stream=SOCK: QEMU's stream framing
#   stream_wget       (BE32 lengths) to the same daemon, which tells the
#   stream_poweroff   two protocols apart by their first byte
#   tap_wget          -s 2,virtio-tap,hktap0: a TAP device whose far side
#   tap_poweroff      is the rig's kernel (10.77.0.1), a static address in
#                     the guest
#   bad_socket        path= to a socket nobody listens on: hyperkit fails
#                     with a message naming the path
#
# Times (hyperkit start to exit, inside the rig) are printed as comments.
set -uo pipefail

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_hk.sh"

e2e_init hyperkit_net

for c in hyperkit vpnkit; do
	if ! have_cmd "$c"; then
		not_ok build "$c is not built in $UNIKIT_BUILD"
		e2e_finish
	fi
done
hk=$(command -v hyperkit)
vk=$(command -v vpnkit)

hk_guest_kernel

mkdir -p "$T/www"
head -c 1048576 /dev/urandom >"$T/www/blob"
want_sha=$(sha256sum "$T/www/blob" | cut -d' ' -f1)
port=8080

cat >"$T/run.sh" <<EOF2
#!/bin/sh
# HKIP (an address/prefix) and HKSERVER come from the kernel command line
# for the TAP boot; the others take a lease from vpnkit.
echo "HK-NET-FEATURES \$(cat /sys/class/net/eth0/device/features 2>/dev/null)"
if [ -n "\${HKIP:-}" ]; then
	ip addr add "\$HKIP" dev eth0
	ip link set eth0 up
	server=\$HKSERVER
else
	udhcpc -i eth0 -n -q -t 10 -T 3 2>&1 | grep -a udhcpc-bound
	server=192.168.65.2
fi
if wget -q -O /tmp/blob http://\$server:$port/blob; then
	echo "HK-NET-SHA \$(sha256sum /tmp/blob | cut -d' ' -f1)"
else
	echo "HK-NET-WGET-FAILED"
fi
EOF2
if ! "$e2e_root/scripts/guest-initramfs.sh" -o "$T/initrd.gz" -r "$T/run.sh" \
	-m virtio_pci,virtio_net >"$T/initramfs.log" 2>&1; then
	not_ok initramfs "$T/initramfs.log"
	e2e_finish
fi

# The rig's side. Unix sockets go to the rig's own /tmp (a tmpfs), not to
# the 9P share.
cat >"$T/inner.sh" <<EOF2
#!/bin/sh
cd "$T" || exit 125
"$PYTHON" -m http.server --bind 0.0.0.0 --directory "$T/www" $port \\
	>http.log 2>&1 &
http_pid=\$!
"$vk" --listen /tmp/vpnkit.sock >vpnkit.log 2>&1 &
vk_pid=\$!
i=0
while [ ! -S /tmp/vpnkit.sock ] && [ \$i -lt 100 ]; do
	sleep 0.1
	i=\$((i + 1))
done
boot() {
	name=\$1
	shift
	start=\$(date +%s%N)
	timeout -k 10 600 "$hk" "\$@" >"\$name.console" 2>"\$name.err"
	echo \$? >"\$name.rc"
	end=\$(date +%s%N)
	echo \$(( (end - start) / 1000000 )) >"\$name.ms"
}
cmdline="console=ttyS0 panic=-1 quiet initcall_blacklist=cmos_init mitigations=off tsc=reliable no_timer_check cryptomgr.notests"
boot daemon -A -c 1 -m 256M -s 0:0,hostbridge \\
	-s 2,virtio-vpnkit,path=/tmp/vpnkit.sock -s 31,lpc -l com1,stdio \\
	-f "kexec,$GUEST_KERNEL,$T/initrd.gz,\$cmdline"
boot inprocess -A -c 1 -m 256M -s 0:0,hostbridge \\
	-s 2,virtio-vpnkit,inprocess -s 31,lpc -l com1,stdio \\
	-f "kexec,$GUEST_KERNEL,$T/initrd.gz,\$cmdline"
boot stream -A -c 1 -m 256M -s 0:0,hostbridge \\
	-s 2,virtio-net,stream=/tmp/vpnkit.sock -s 31,lpc -l com1,stdio \\
	-f "kexec,$GUEST_KERNEL,$T/initrd.gz,\$cmdline"
# A TAP device with the rig's kernel on the far side (the rig's initramfs
# has no tun module: load the guest kernel's).
[ -e /dev/net/tun ] || insmod "$GUEST_MODULES/kernel/drivers/net/tun.ko"
if ip tuntap add dev hktap0 mode tap vnet_hdr &&
	ip addr add 10.77.0.1/24 dev hktap0 && ip link set hktap0 up; then
	boot tap -A -c 1 -m 256M -s 0:0,hostbridge -s 2,virtio-tap,hktap0 \\
		-s 31,lpc -l com1,stdio \\
		-f "kexec,$GUEST_KERNEL,$T/initrd.gz,\$cmdline HKIP=10.77.0.2/24 HKSERVER=10.77.0.1"
else
	echo "no tap device" >tap.err
fi
boot badsock -A -c 1 -m 256M -s 2,virtio-vpnkit,path=/tmp/nobody.sock \\
	-f "kexec,$GUEST_KERNEL,$T/initrd.gz,\$cmdline"
kill \$vk_pid \$http_pid 2>/dev/null
wait
exit 0
EOF2
chmod +x "$T/inner.sh"

hk_rig --mem 1024M --timeout 1500 -- "$T/inner.sh"

# check_net NAME: lease, file and exit status of a boot.
check_net() {
	local name=$1 rc console
	rc=$(cat "$T/$name.rc" 2>/dev/null)
	console=$(tr -d '\r' <"$T/$name.console" 2>/dev/null)
	echo "# $name: hyperkit ran $(cat "$T/$name.ms" 2>/dev/null) ms, exit ${rc:-none}"
	if [[ $name == tap ]]; then
		: # a static address: no DHCP on the TAP side
	elif grep -Eq "^udhcpc-bound 192\.168\.65\.[0-9]+/" <<<"$console"; then
		ok "${name}_dhcp"
	else
		not_ok "${name}_dhcp" "no udhcpc-bound line; the console's end:" \
			"$(tail -n 15 <<<"$console")" "$T/$name.err"
	fi
	if grep -qx "HK-NET-SHA $want_sha" <<<"$console"; then
		ok "${name}_wget"
	else
		not_ok "${name}_wget" "want HK-NET-SHA $want_sha" \
			"$(grep -a HK-NET <<<"$console")" "$T/$name.err"
	fi
	if [[ $rc == 0 ]]; then
		ok "${name}_poweroff"
	else
		not_ok "${name}_poweroff" "exit ${rc:-none}, want 0" "$T/$name.err"
	fi
}
check_net daemon
check_net inprocess
check_net stream
if [[ -e $T/tap.rc ]]; then
	check_net tap
else
	not_ok tap "the rig could not make a TAP device" "$T/tap.err"
fi

rc=$(cat "$T/badsock.rc" 2>/dev/null)
if [[ -n $rc && $rc != 0 ]] && grep -q "nobody.sock" "$T/badsock.err"; then
	ok bad_socket
else
	not_ok bad_socket "exit ${rc:-none}, want non-zero and the path named" \
		"$T/badsock.err"
fi

# The guest's view of the in-process device's features: a string of bits,
# bit 0 first. GUEST_TSO4 is bit 7, HOST_TSO4 bit 11, CSUM bit 0.
feat=$(tr -d '\r' <"$T/inprocess.console" | sed -n 's/^HK-NET-FEATURES //p')
echo "# inprocess features: $feat"
if [[ ${feat:0:1} == 1 && ${feat:7:1} == 1 && ${feat:11:1} == 1 ]]; then
	ok inprocess_tso
else
	not_ok inprocess_tso "features '$feat': want bits 0, 7 and 11"
fi

e2e_finish
