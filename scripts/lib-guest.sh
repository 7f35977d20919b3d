# SPDX-License-Identifier: MIT
#
# Shared by scripts/guest-kernel.sh and scripts/guest-initramfs.sh (sourced,
# not run): a cache of Debian packages unpacked with `dpkg-deb -x`, so the
# test guests run Debian's own kernel and busybox without installing them
# on the host.
#
# The cache is ${UNIKIT_CACHE:-/var/tmp/unikit-cache}. Each unpacked
# package is a directory that appears under its final name only once it is
# complete (unpacked under a temporary name, then renamed), so an
# interrupted run leaves nothing half-made behind. One lock file serialises
# the scripts that fill the cache, so tests running side by side download a
# package once.

guest_cache=${UNIKIT_CACHE:-/var/tmp/unikit-cache}

guest_die() {
	echo "${0##*/}: $*" >&2
	exit 1
}

# guest_lock: take the cache's lock for the rest of the process (fd 9).
guest_lock() {
	mkdir -p "$guest_cache" || guest_die "cannot create $guest_cache"
	exec 9>>"$guest_cache/.lock"
	flock -w 900 9 || guest_die "timed out waiting for $guest_cache/.lock"
}

# guest_apt_candidate PACKAGE: print the version apt would install, or
# nothing if apt does not know the package.
guest_apt_candidate() {
	apt-cache policy "$1" 2>/dev/null |
		awk '$1 == "Candidate:" && $2 != "(none)" { print $2 }'
}

# guest_apt_update_once: on a fresh machine apt's package lists may be
# empty; refresh them once (root only).
guest_apt_updated=
guest_apt_update_once() {
	[[ -z $guest_apt_updated ]] || return 1
	guest_apt_updated=1
	((EUID == 0)) || return 1
	echo "${0##*/}: apt-get update" >&2
	apt-get -q -o Dpkg::Use-Pty=0 update >/dev/null
}

# guest_deb_unpack PACKAGE DIR: download PACKAGE's current candidate with
# `apt-get download` and unpack it into DIR (which must not exist yet).
# FIXUP, if set, names a function run on the unpacked tree (its argument)
# before it is moved into place.
guest_deb_unpack() {
	local pkg=$1 dir=$2 tmp log
	tmp=$(mktemp -d "$guest_cache/.unpack.XXXXXX") ||
		guest_die "cannot make a directory in $guest_cache"
	log=$tmp/apt.log
	# apt's sandbox user must be able to write the download directory.
	chmod 755 "$tmp"
	if ! (cd "$tmp" && apt-get -q download "$pkg") >"$log" 2>&1; then
		cat "$log" >&2
		rm -rf "$tmp"
		guest_die "apt-get download $pkg failed"
	fi
	if ! dpkg-deb -x "$tmp"/*.deb "$tmp/root"; then
		rm -rf "$tmp"
		guest_die "dpkg-deb -x failed for $pkg"
	fi
	if [[ -n ${FIXUP:-} ]] && ! "$FIXUP" "$tmp/root"; then
		rm -rf "$tmp"
		guest_die "preparing the unpacked $pkg failed"
	fi
	mv "$tmp/root" "$dir"
	rm -rf "$tmp"
}
