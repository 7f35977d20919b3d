#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Install the Debian 12 packages unikit needs to build and test, if any are
# missing. Quiet and quick when everything is present (one dpkg-query);
# otherwise, as root, one `apt-get update` and one `apt-get install`. Not as
# root, it lists what is missing and fails.
#
# Usage: scripts/deps.sh [--list]    (--list prints the package list)
set -euo pipefail

packages=(
	# compilers and build
	build-essential gcc make pkg-config
	# fuzzing and sanitizers: clang's libFuzzer and runtimes
	clang llvm libclang-rt-14-dev
	# static checks: make tidy, make format-check, make cppcheck
	clang-tidy clang-format cppcheck
	# libqcow: zlib and zstd compression, io_uring
	zlib1g-dev libzstd-dev liburing-dev
	# hyperkit: unpacking xz-compressed kernels
	liblzma-dev
	# tests: qemu-img/qemu-io as the reference peer, and the usual tools
	qemu-utils python3 util-linux coreutils
	# vpnkit tests: namespaces, the real Linux stack's tools, captures
	iproute2 busybox udhcpc iputils-ping wget curl tcpdump bind9-dnsutils
	procps jq
	# QEMU guest rigs: the emulator, and what unpacks a Debian kernel
	qemu-system-x86 kmod xz-utils
	# hyperkit tests: iasl disassembles the ACPI tables we generate
	acpica-tools dmidecode
	# hyperkit tests: a 9P server for the virtio-9p relay
	diod
	# benchmarks (bench/): the peers and the load generator
	iperf3 passt slirp4netns socat
)

if [[ ${1:-} == --list ]]; then
	printf '%s\n' "${packages[@]}"
	exit 0
fi

missing=()
# One query for all: prints "name status" for each known package.
declare -A installed=()
while read -r name status; do
	[[ $status == installed ]] && installed[$name]=1
done < <(dpkg-query -W -f='${Package} ${db:Status-Status}\n' \
	"${packages[@]}" 2>/dev/null || true)
for p in "${packages[@]}"; do
	[[ -n ${installed[$p]:-} ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
	exit 0
fi

echo "deps: missing packages: ${missing[*]}" >&2
if ((EUID != 0)); then
	echo "deps: run as root (sudo scripts/deps.sh) to install them" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt_opts=(-q -y -o Dpkg::Use-Pty=0 --no-install-recommends)
echo "deps: apt-get update" >&2
apt-get -q -o Dpkg::Use-Pty=0 update >/dev/null
echo "deps: apt-get install ${missing[*]}" >&2
apt-get "${apt_opts[@]}" install "${missing[@]}" >/dev/null
echo "deps: installed ${#missing[@]} package(s)" >&2
