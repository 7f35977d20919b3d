#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Build a small initramfs (cpio, gzip) for the test guests: Debian's static
# busybox, the kernel modules asked for (with their dependencies, from
# modules.dep), a DHCP client script, and an /init that runs one script of
# yours and powers the guest off.
#
# Usage: scripts/guest-initramfs.sh -o OUT.cpio.gz -r RUN_SCRIPT
#            [-m MODULE]... [-M MODULES_DIR] [-f SRC[:DST]]... [-b PROG]...
#
#   -o OUT        the image to write
#   -r SCRIPT     copied to /rig/run in the image; /init runs it
#   -m MODULE     a kernel module to load at boot, e.g. virtio_net (its
#                 dependencies come too; built-in ones are skipped); repeat
#                 or separate with commas
#   -M DIR        the kernel's modules directory (lib/modules/VERSION);
#                 default: the one scripts/guest-kernel.sh prints
#   -f SRC[:DST]  copy a file or directory into the image, at DST (default
#                 the same path as SRC); repeatable
#   -b PROG       a dynamically linked program (a path, or a name looked up
#                 in PATH) with the shared libraries and loader `ldd` lists
#                 for it, at their host paths; repeatable (socat, iperf3)
#
# The guest's /init mounts /proc, /sys, /dev (devtmpfs), /tmp and /run,
# loads the modules in dependency order and runs `/rig/run ARGS...` with
# the arguments after `--` on the kernel command line and, in its
# environment, the command line's NAME=VALUE words that the kernel does
# not know (a name with a dot in it is taken for a module option: avoid
# dots). It prints these lines on the console:
#
#   RIG-INIT                 /init started
#   RIG-INSMOD-FAILED=NAME   a module did not load (the run goes on)
#   RIG-RUN                  modules loaded, /rig/run starts
#   RIG-EXIT=N               /rig/run's exit status
#
# and then powers off (`poweroff -f`; QEMU exits). `udhcpc -i eth0` works
# as is: its default script sets the address, prefix, MTU, default route
# and /etc/resolv.conf, and prints "udhcpc-bound IP/PREFIX router R dns D
# mtu M".
#
# Busybox comes from Debian's busybox-static package, downloaded and
# unpacked into the same cache as the kernel; it also writes the cpio
# archive, so the host needs no cpio. Compressed modules (.ko.xz, .ko.zst)
# are decompressed here, as busybox's insmod takes plain ones only.
set -euo pipefail

here=$(dirname "${BASH_SOURCE[0]}")
. "$here/lib-guest.sh"

out=
run=
modules_dir=
modules=()
files=()
progs=()
while getopts 'o:r:m:M:f:b:h' opt; do
	case $opt in
	o) out=$OPTARG ;;
	r) run=$OPTARG ;;
	m) IFS=, read -ra m <<<"$OPTARG" && modules+=("${m[@]}") ;;
	M) modules_dir=$OPTARG ;;
	f) files+=("$OPTARG") ;;
	b) progs+=("$OPTARG") ;;
	h)
		sed -n '4,/^set -e/{/^set -e/d;s/^# \{0,1\}//;p}' "$0"
		exit 0
		;;
	*) guest_die "bad arguments (see -h)" ;;
	esac
done
shift $((OPTIND - 1))
(($# == 0)) || guest_die "unexpected argument: $1 (see -h)"
[[ -n $out && -n $run ]] || guest_die "-o OUT and -r SCRIPT are required (see -h)"
[[ -f $run ]] || guest_die "no such file: $run"

# busybox_path: the static busybox, from the cache or fetched into it.
busybox_path() {
	local d v
	for d in "$guest_cache"/busybox-static-*/; do
		if [[ -x $d/bin/busybox ]]; then
			echo "$d/bin/busybox"
			return 0
		fi
	done
	guest_lock
	v=$(guest_apt_candidate busybox-static)
	if [[ -z $v ]] && guest_apt_update_once; then
		v=$(guest_apt_candidate busybox-static)
	fi
	[[ -n $v ]] || guest_die "apt knows no busybox-static package"
	d=$guest_cache/busybox-static-${v//:/_}
	if [[ ! -d $d ]]; then
		echo "${0##*/}: fetching busybox-static $v" >&2
		guest_deb_unpack busybox-static "$d"
	fi
	echo "$d/bin/busybox"
}

# Module resolution from modules.dep ("kernel/x/y.ko: dep.ko dep.ko").
declare -A mod_path=() mod_deps=() builtin=() loaded=()
load_order=()

read_modules_dep() {
	local dir=$1 path deps name
	[[ -f $dir/modules.dep ]] || guest_die "no modules.dep in $dir (run depmod)"
	while IFS=: read -r path deps; do
		name=${path##*/}
		name=${name%%.ko*}
		name=${name//-/_}
		mod_path[$name]=$path
		mod_deps[$path]=$deps
	done <"$dir/modules.dep"
	if [[ -f $dir/modules.builtin ]]; then
		while read -r path; do
			name=${path##*/}
			name=${name%%.ko*}
			builtin[${name//-/_}]=1
		done <"$dir/modules.builtin"
	fi
}

# add_module PATH: PATH's dependencies, then PATH, into load_order once.
add_module() {
	local path=$1 dep
	[[ -z ${loaded[$path]:-} ]] || return 0
	loaded[$path]=1
	for dep in ${mod_deps[$path]:-}; do
		add_module "$dep"
	done
	load_order+=("$path")
}

if ((${#modules[@]})) && [[ -z $modules_dir ]]; then
	eval "$("$here/guest-kernel.sh")"
	modules_dir=$GUEST_MODULES
fi
if ((${#modules[@]})); then
	read_modules_dep "$modules_dir"
	for m in "${modules[@]}"; do
		m=${m//-/_}
		if [[ -n ${mod_path[$m]:-} ]]; then
			add_module "${mod_path[$m]}"
		elif [[ -z ${builtin[$m]:-} ]]; then
			guest_die "no module $m in $modules_dir"
		fi
	done
fi

busybox=$(busybox_path)
stage=$(mktemp -d "${TMPDIR:-/tmp}/guest-initramfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT

mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,etc,rig} \
	"$stage/etc/udhcpc"
cp "$busybox" "$stage/bin/busybox"
for a in $("$busybox" --list-full); do
	[[ $a == bin/busybox ]] || ln -sf /bin/busybox "$stage/$a"
done

# Modules: under their own paths, listed in load order in /rig/modules.
kv=
[[ -z $modules_dir ]] || kv=$(basename "$modules_dir")
: >"$stage/rig/modules"
for path in "${load_order[@]}"; do
	dst=$stage/lib/modules/$kv/${path%.ko*}.ko
	mkdir -p "$(dirname "$dst")"
	case $path in
	*.ko) cp "$modules_dir/$path" "$dst" ;;
	*.ko.xz) xz -dc "$modules_dir/$path" >"$dst" ;;
	*.ko.zst) zstd -qdc "$modules_dir/$path" >"$dst" ;;
	*.ko.gz) gzip -dc "$modules_dir/$path" >"$dst" ;;
	*) guest_die "unknown module format: $path" ;;
	esac
	echo "/lib/modules/$kv/${path%.ko*}.ko" >>"$stage/rig/modules"
done

cp "$run" "$stage/rig/run"
chmod 755 "$stage/rig/run"

for f in "${files[@]}"; do
	src=${f%%:*}
	dst=${f#*:}
	[[ $f == *:* ]] || dst=$src
	[[ -e $src ]] || guest_die "no such file: $src"
	mkdir -p "$stage/$(dirname "$dst")"
	# DST may be one of busybox's links (/sbin/fstrim -> /bin/busybox,
	# an absolute link): remove it first so the copy never writes
	# through it to the host's file.
	rm -f "$stage/$dst"
	cp -a "$src" "$stage/$dst"
done

# Programs with their libraries: ldd's "name => /path (addr)" and
# "/lib64/ld-linux-x86-64.so.2 (addr)" lines, copied through symlinks.
for p in "${progs[@]}"; do
	[[ $p == */* ]] || p=$(command -v "$p") || guest_die "no program ${p##*/} in PATH"
	[[ -x $p ]] || guest_die "not a program: $p"
	libs=$(ldd "$p" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 }
		$1 ~ /^\// { print $1 }') || true
	for f in "$p" $libs; do
		mkdir -p "$stage/$(dirname "$f")"
		rm -f "$stage/$f"
		cp -L "$f" "$stage/$f"
	done
done

cat >"$stage/init" <<'EOF'
#!/bin/sh
# The rig's init: mount, load modules, run /rig/run, report, power off.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t devtmpfs dev /dev
# The kernel found no /dev/console in the archive: open it now.
exec </dev/console >/dev/console 2>&1
echo
echo RIG-INIT
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
ln -sf /proc/self/fd /dev/fd
ip link set lo up 2>/dev/null
while read -r m; do
	insmod "$m" || echo "RIG-INSMOD-FAILED=${m##*/}"
done </rig/modules
echo RIG-RUN
/rig/run "$@"
rc=$?
echo
echo "RIG-EXIT=$rc"
sync
poweroff -f
# Not reached unless the power-off failed; a panic ends QEMU with
# -no-reboot and panic=-1.
echo o >/proc/sysrq-trigger
EOF
chmod 755 "$stage/init"

cat >"$stage/etc/udhcpc/default.script" <<'EOF'
#!/bin/sh
# busybox udhcpc's hook: configure the interface from the lease.
case $1 in
deconfig)
	ip -4 addr flush dev "$interface"
	ip link set "$interface" up
	;;
bound | renew)
	[ -z "$mtu" ] || ip link set "$interface" mtu "$mtu"
	ip -4 addr flush dev "$interface"
	ip addr add "$ip/${mask:-24}" dev "$interface"
	set -- $router
	[ -z "$1" ] || ip route replace default via "$1" dev "$interface"
	: >/etc/resolv.conf
	[ -z "$domain" ] || echo "domain $domain" >>/etc/resolv.conf
	[ -z "$search" ] || echo "search $search" >>/etc/resolv.conf
	for d in $dns; do
		echo "nameserver $d" >>/etc/resolv.conf
	done
	echo "udhcpc-bound $ip/${mask:-24} router $1 dns $dns mtu ${mtu:-none}"
	;;
esac
exit 0
EOF
chmod 755 "$stage/etc/udhcpc/default.script"

(cd "$stage" && find . | LC_ALL=C sort |
	"$busybox" cpio -o -H newc -R 0:0 2>/dev/null) | gzip -1 >"$out.tmp"
mv "$out.tmp" "$out"
