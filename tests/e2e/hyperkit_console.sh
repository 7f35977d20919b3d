#!/bin/bash
# SPDX-License-Identifier: MIT
#
# hyperkit's consoles are interactive: what the host types reaches the
# guest's shell, through the 8250 (COM1) and through virtio-console (hvc0),
# each on stdio and on a pseudo-terminal (autopty=LINK, hyperkit's way of
# naming it). Two hyperkit boots in one rig boot (scripts/kvm-rig.sh):
#
#   boot one: COM1 on stdio (a FIFO), hvc0 on autopty=LINK
#   boot two: COM1 on autopty=LINK, hvc0 on stdio
#
# In each, the guest prints a READY line on a console and reads one line
# from it; the host answers with a shell command (echo HK-EVAL-$((6*7)))
# that the guest evaluates, so HK-EVAL-42 proves the line went through the
# guest's tty and shell (the typed line itself, echoed, has no 42 in it).
#
#   com1_stdio  com1_autopty  hvc_stdio  hvc_autopty   the answers came back
#   pty_link                  the link named the pty and was removed at exit
#   poweroff                  both boots exited 0
set -uo pipefail

. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_hk.sh"

e2e_init hyperkit_console

if ! have_cmd hyperkit; then
	not_ok build "hyperkit is not built in $UNIKIT_BUILD"
	e2e_finish
fi
cp "$(command -v hyperkit)" "$T/hyperkit" || exit 1
hk=$T/hyperkit

hk_guest_kernel

# The guest: ask on COM1 (its /dev/console), then on hvc0.
cat >"$T/run.sh" <<'EOF2'
#!/bin/sh
echo "HK-READY-COM1"
if read -t 200 -r line; then
	eval "$line"
else
	echo "HK-NOTHING-ON-COM1"
fi
echo "HK-READY-HVC" >/dev/hvc0
if read -t 200 -r line </dev/hvc0; then
	eval "$line" >/dev/hvc0 2>&1
	echo "HK-HVC-ANSWERED"
else
	echo "HK-NOTHING-ON-HVC"
fi
EOF2
if ! "$e2e_root/scripts/guest-initramfs.sh" -o "$T/initrd.gz" -r "$T/run.sh" \
	-m virtio_pci,virtio_console >"$T/initramfs.log" 2>&1; then
	not_ok initramfs "$T/initramfs.log"
	e2e_finish
fi

# Inside the rig. wait_for FILE TEXT: until FILE holds TEXT (up to 300 s).
# A pty is read by a cat into a file, and written by echo.
cat >"$T/inner.sh" <<EOF2
#!/bin/bash
cd "$T" || exit 125
C="console=ttyS0 panic=-1 quiet initcall_blacklist=cmos_init mitigations=off tsc=reliable no_timer_check cryptomgr.notests"
K="kexec,$GUEST_KERNEL,$T/initrd.gz,\$C"
answer='echo HK-EVAL-\$((6*7))'
wait_for() {
	for _ in \$(seq 1500); do
		tr -d '\r' <"\$1" 2>/dev/null | grep -aq "\$2" && return 0
		sleep 0.2
	done
	return 1
}
wait_link() {
	for _ in \$(seq 300); do
		[ -L "\$1" ] && return 0
		sleep 0.1
	done
	return 1
}
one() {	# COM1 on stdio, hvc0 on a pty
	rm -f /run/in.fifo && mkfifo /run/in.fifo
	"$hk" -A -c 1 -m 256M -s 0:0,hostbridge -s 31,lpc -l com1,stdio \\
		-s 3,virtio-console,autopty=/run/hvc.link -f "\$K" \\
		</run/in.fifo >one.console 2>one.err &
	local pid=\$!
	exec 7>/run/in.fifo
	wait_link /run/hvc.link && readlink /run/hvc.link >one.link
	cat /run/hvc.link >one.hvc 2>/dev/null &
	local cat=\$!
	wait_for one.console HK-READY-COM1 && echo "\$answer" >&7
	wait_for one.hvc HK-READY-HVC && echo "\$answer" >/run/hvc.link
	wait \$pid
	echo \$? >one.rc
	[ -e /run/hvc.link ] && echo left >one.link-left
	exec 7>&-
	kill \$cat 2>/dev/null
}
two() {	# COM1 on a pty, hvc0 on stdio
	rm -f /run/in.fifo && mkfifo /run/in.fifo
	"$hk" -A -c 1 -m 256M -s 0:0,hostbridge -s 31,lpc \\
		-l com1,autopty=/run/com1.link -s 3,virtio-console \\
		-f "\$K" </run/in.fifo >two.hvc 2>two.err &
	local pid=\$!
	exec 7>/run/in.fifo
	wait_link /run/com1.link && readlink /run/com1.link >two.link
	cat /run/com1.link >two.console 2>/dev/null &
	local cat=\$!
	wait_for two.console HK-READY-COM1 && echo "\$answer" >/run/com1.link
	wait_for two.hvc HK-READY-HVC && echo "\$answer" >&7
	wait \$pid
	echo \$? >two.rc
	[ -e /run/com1.link ] && echo left >two.link-left
	exec 7>&-
	kill \$cat 2>/dev/null
}
one
two
exit 0
EOF2
chmod +x "$T/inner.sh"

hk_rig --timeout 1500 -- "$T/inner.sh"

# check NAME FILE: the guest evaluated the answer on that console.
check() {
	if tr -d '\r' <"$T/$2" 2>/dev/null | grep -aq '^HK-EVAL-42'; then
		ok "$1"
	else
		not_ok "$1" "no HK-EVAL-42 in $2" \
			"$(tr -d '\r' <"$T/$2" 2>/dev/null | grep -a HK- | tail -n 5)" \
			"$T/${2%%.*}.err"
	fi
}
check com1_stdio one.console
check hvc_autopty one.hvc
check com1_autopty two.console
check hvc_stdio two.hvc

if [[ $(cat "$T/one.link" 2>/dev/null) == /dev/pts/* &&
	$(cat "$T/two.link" 2>/dev/null) == /dev/pts/* &&
	! -e $T/one.link-left && ! -e $T/two.link-left ]]; then
	ok pty_link
else
	not_ok pty_link "want links to /dev/pts/N, removed at exit" \
		"one: $(cat "$T/one.link" 2>/dev/null) $(cat "$T/one.link-left" 2>/dev/null)" \
		"two: $(cat "$T/two.link" 2>/dev/null) $(cat "$T/two.link-left" 2>/dev/null)"
fi
if [[ $(cat "$T/one.rc" 2>/dev/null) == 0 && $(cat "$T/two.rc" 2>/dev/null) == 0 ]]; then
	ok poweroff
else
	not_ok poweroff "exits $(cat "$T/one.rc" 2>/dev/null) and" \
		"$(cat "$T/two.rc" 2>/dev/null), want 0 and 0" "$T/one.err" "$T/two.err"
fi

e2e_finish
