#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Fetch Debian's Linux 6.1 kernel for the test guests (QEMU rigs), unpacked
# into a cache, and print where it is:
#
#   GUEST_KVERSION=6.1.0-56-amd64
#   GUEST_KERNEL=/var/tmp/unikit-cache/kernel-6.1.0-56-amd64/boot/vmlinuz-6.1.0-56-amd64
#   GUEST_VMLINUX=/var/tmp/unikit-cache/kernel-6.1.0-56-amd64/boot/vmlinux-6.1.0-56-amd64
#   GUEST_MODULES=/var/tmp/unikit-cache/kernel-6.1.0-56-amd64/lib/modules/6.1.0-56-amd64
#
# so that `eval "$(scripts/guest-kernel.sh)"` sets the four variables.
# GUEST_KERNEL is the package's bzImage; GUEST_VMLINUX is the same kernel
# uncompressed (an ELF file with a PVH entry point, which QEMU's -kernel
# boots without the bzImage's slow self-decompression), or empty if it
# could not be extracted.
#
# Usage: scripts/guest-kernel.sh [--refresh] [--package NAME]
#
# With a kernel already in the cache (${UNIKIT_CACHE:-/var/tmp/unikit-cache})
# it asks nothing of apt and returns at once, using the newest cached one;
# --refresh looks for a newer package first. Otherwise it picks the newest
# linux-image-6.1.0-N-amd64 that apt knows (--package names one instead),
# downloads it with `apt-get download` (no root needed; as root it runs
# `apt-get update` first when apt's lists are empty), unpacks it with
# `dpkg-deb -x` and runs `depmod -b` on it, since the package carries no
# modules.dep (its postinst would make one). Needs apt, dpkg, kmod and
# xz-utils.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib-guest.sh"

refresh=
package=
while (($#)); do
	case $1 in
	--refresh) refresh=1 ;;
	--package)
		(($# >= 2)) || guest_die "--package needs a name"
		package=$2
		shift
		;;
	-h | --help)
		sed -n '4,/^set -e/{/^set -e/d;s/^# \{0,1\}//;p}' "$0"
		exit 0
		;;
	*) guest_die "unknown argument: $1 (see --help)" ;;
	esac
	shift
done

# print_paths VERSION: the four lines, shell-quoted.
print_paths() {
	local v=$1 dir=$guest_cache/kernel-$1
	printf 'GUEST_KVERSION=%q\n' "$v"
	printf 'GUEST_KERNEL=%q\n' "$dir/boot/vmlinuz-$v"
	if [[ -f $dir/boot/vmlinux-$v ]]; then
		printf 'GUEST_VMLINUX=%q\n' "$dir/boot/vmlinux-$v"
	else
		printf 'GUEST_VMLINUX=\n'
	fi
	printf 'GUEST_MODULES=%q\n' "$dir/lib/modules/$v"
}

# newest_cached: the newest complete kernel in the cache, or nothing.
newest_cached() {
	local d
	for d in "$guest_cache"/kernel-*/; do
		if [[ -d $d ]]; then
			echo "${d%/}"
		fi
	done | sed 's|.*/kernel-||' | sort -V | tail -n 1
}

# newest_available: the newest linux-image-6.1.0-N-amd64 apt can install.
newest_available() {
	local p
	apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64$' \
		2>/dev/null | cut -d' ' -f1 | sort -rV |
		while read -r p; do
			if [[ -n $(guest_apt_candidate "$p") ]]; then
				echo "$p"
				break
			fi
		done
}

# prepare ROOT: modules.dep and vmlinux for the unpacked tree; the
# documentation goes.
prepare() {
	local root=$1 v
	v=$(basename "$root"/lib/modules/*)
	[[ -f $root/boot/vmlinuz-$v ]] || {
		echo "no boot/vmlinuz-$v in the package" >&2
		return 1
	}
	depmod -b "$root" "$v" || return 1
	extract_vmlinux "$root/boot/vmlinuz-$v" "$root/boot/config-$v" \
		"$root/boot/vmlinux-$v" || return 1
	rm -rf "${root:?}/usr/share"
}

# extract_vmlinux BZIMAGE CONFIG OUT: the uncompressed ELF kernel inside
# an xz-compressed bzImage. QEMU boots it directly through its PVH entry
# point, which saves the guest about 4 s of decompression under TCG. Does
# nothing if the kernel lacks PVH or is not compressed with xz.
extract_vmlinux() {
	local bz=$1 config=$2 out=$3 off
	grep -qx 'CONFIG_PVH=y' "$config" || return 0
	off=$(LC_ALL=C grep -abo -m 1 -P '\xfd7zXZ\x00' "$bz" | cut -d: -f1 | head -n 1)
	[[ -n $off ]] || return 0
	# xz stops at the end of its stream; tail may then die of SIGPIPE.
	{ tail -c +$((off + 1)) "$bz" || :; } |
		xz -dc --single-stream >"$out.tmp" || {
		rm -f "$out.tmp"
		return 1
	}
	if [[ $(head -c 4 "$out.tmp" | od -An -tx1 | tr -d ' ') != 7f454c46 ]]; then
		echo "the xz payload of $bz is not an ELF file" >&2
		rm -f "$out.tmp"
		return 1
	fi
	mv "$out.tmp" "$out"
}

if [[ -z $refresh && -z $package ]]; then
	v=$(newest_cached)
	if [[ -n $v ]]; then
		print_paths "$v"
		exit 0
	fi
fi

command -v depmod >/dev/null || PATH=$PATH:/sbin:/usr/sbin
if ! command -v depmod >/dev/null || ! command -v xz >/dev/null; then
	guest_die "depmod or xz not found (Debian packages kmod, xz-utils)"
fi

guest_lock
if [[ -z $package ]]; then
	package=$(newest_available)
	if [[ -z $package ]] && guest_apt_update_once; then
		package=$(newest_available)
	fi
	[[ -n $package ]] ||
		guest_die "apt knows no linux-image-6.1.0-N-amd64 (run apt-get update?)"
fi
[[ $package =~ ^linux-image-(.+)$ ]] || guest_die "not a kernel image package: $package"
v=${BASH_REMATCH[1]}
if [[ ! -d $guest_cache/kernel-$v ]]; then
	echo "${0##*/}: fetching $package" >&2
	FIXUP=prepare guest_deb_unpack "$package" "$guest_cache/kernel-$v"
fi
print_paths "$v"
