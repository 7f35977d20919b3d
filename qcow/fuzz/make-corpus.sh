#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Generate the seed corpus of qcow/fuzz/fuzz_image.c: small, valid qcow2
# images written by qemu-img and qemu-io (7.2), one per feature the reader
# must handle (versions 2 and 3, cluster sizes 512 B to 64 KiB, refcount
# widths 1 to 64 bits, zlib and zstd compressed clusters, zero clusters,
# lazy refcounts and a dirty image, internal snapshots, persistent bitmaps,
# extended L2 entries with subclusters, a recorded backing file name and
# metadata preallocation). Every image except the deliberately dirty one
# must pass `qemu-img check`, so the seeds are real images, not guesses.
#
# The generated files are committed (about 1.4 MB in all; only the 64 KiB
# cluster seed is over 128 KiB); run this again only to change the set.
# The output is the same on every run except for the snapshot dates. It
# replaces the generated seeds in the output directory and leaves any
# other file there (crash-* regression seeds) alone.
#
# Usage: qcow/fuzz/make-corpus.sh [OUTDIR]   (default: qcow/fuzz/corpus/image)

set -eu

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/corpus/image}

for tool in qemu-img qemu-io; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "make-corpus.sh: $tool not found (apt-get install qemu-utils)" >&2
		exit 1
	fi
done

work=$(mktemp -d "${TMPDIR:-/var/tmp}/qcow-corpus.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

mkdir -p "$out"

# create NAME SIZE OPTIONS: a fresh image in the work directory.
create() {
	qemu-img create -q -f qcow2 -o "$3" "$work/$1" "$2"
}

# io NAME CMD...: run qemu-io commands on an image, quietly.
io() {
	name=$1
	shift
	n=$#
	for c; do
		set -- "$@" -c "$c"
	done
	shift "$n"
	qemu-io -f qcow2 "$@" "$work/$name" >/dev/null
}

# A pattern spread over the first 1 MiB: data, partial clusters, a gap.
fill() {
	io "$1" 'write -P 0x11 0 4k' 'write -P 0x22 6k 3k' \
		'write -P 0x33 64k 8k' 'write -P 0x44 300k 1k' \
		'write -P 0x55 1020k 4k'
}

# keep NAME: check the image and move it into the corpus.
keep() {
	if ! qemu-img check -q "$work/$1"; then
		echo "make-corpus.sh: $1 does not pass qemu-img check" >&2
		exit 1
	fi
	cp "$work/$1" "$out/$1"
}

# A raw file with compressible but varied content for convert -c.
raw="$work/src.raw"
rawgen() {
	qemu-img create -q -f raw "$raw" 1M
	qemu-io -f raw -c 'write -P 0x61 0 64k' -c 'write -P 0x62 128k 32k' \
		-c 'write -P 0x63 512k 4k' -c 'write -P 0x64 1000k 24k' \
		"$raw" >/dev/null
	# 4 KiB of incompressible bytes (a fixed Park-Miller sequence, so the
	# seeds come out the same every time), so one cluster stays plain data.
	LC_ALL=C awk 'BEGIN { x = 1; for (i = 0; i < 4096; i++) {
		x = (x * 16807) % 2147483647; printf "%c", x % 256 } }' |
		dd of="$raw" bs=4096 seek=200 conv=notrunc status=none
}
rawgen

# Version 2 (compat=0.10): refcount width fixed at 16 bits.
create v2-c512.qcow2 2M compat=0.10,cluster_size=512
fill v2-c512.qcow2
keep v2-c512.qcow2

create v2-c4k-snapshot.qcow2 1M compat=0.10,cluster_size=4k
fill v2-c4k-snapshot.qcow2
qemu-img snapshot -c snap1 "$work/v2-c4k-snapshot.qcow2"
io v2-c4k-snapshot.qcow2 'write -P 0x99 0 8k' 'write -z 64k 4k'
keep v2-c4k-snapshot.qcow2

# Version 3, the refcount widths at the edges and the default.
create v3-c512-r1.qcow2 1M cluster_size=512,refcount_bits=1
fill v3-c512-r1.qcow2
keep v3-c512-r1.qcow2

create v3-c4k-r16.qcow2 4M cluster_size=4k,refcount_bits=16
fill v3-c4k-r16.qcow2
io v3-c4k-r16.qcow2 'write -P 0x66 3m 8k'
keep v3-c4k-r16.qcow2

create v3-c4k-r64.qcow2 1M cluster_size=4k,refcount_bits=64
fill v3-c4k-r64.qcow2
keep v3-c4k-r64.qcow2

create v3-c2k-r2.qcow2 1M cluster_size=2k,refcount_bits=2
fill v3-c2k-r2.qcow2
keep v3-c2k-r2.qcow2

create v3-c1k-r8.qcow2 1M cluster_size=1k,refcount_bits=8
fill v3-c1k-r8.qcow2
keep v3-c1k-r8.qcow2

create v3-c1k-r32.qcow2 1M cluster_size=1k,refcount_bits=32
fill v3-c1k-r32.qcow2
keep v3-c1k-r32.qcow2

# 512-byte clusters with 64-bit refcounts: the one-cluster refcount table
# covers only 2 MiB of file, so the fuzzer's bulk writes make it grow.
create v3-c512-r64.qcow2 4M cluster_size=512,refcount_bits=64
io v3-c512-r64.qcow2 'write -P 0x71 0 4k' 'write -P 0x72 3m 2k'
keep v3-c512-r64.qcow2

# The default 64 KiB cluster size: the largest seed (about 320 KiB), so
# only one data cluster and one zero cluster.
create v3-c64k.qcow2 1M cluster_size=64k
io v3-c64k.qcow2 'write -P 0x77 4k 4k' 'write -z 128k 64k'
keep v3-c64k.qcow2

# Compressed clusters, deflate and zstd, from convert -c.
qemu-img convert -q -c -f raw -O qcow2 -o cluster_size=4k,compression_type=zlib \
	"$raw" "$work/v3-c4k-zlib.qcow2"
keep v3-c4k-zlib.qcow2
qemu-img convert -q -c -f raw -O qcow2 -o cluster_size=4k,compression_type=zstd \
	"$raw" "$work/v3-c4k-zstd.qcow2"
keep v3-c4k-zstd.qcow2
qemu-img convert -q -c -f raw -O qcow2 -o cluster_size=512,compat=0.10 \
	"$raw" "$work/v2-c512-zlib.qcow2"
keep v2-c512-zlib.qcow2
# Compressed clusters later overwritten in part (a mix of both kinds).
cp "$work/v3-c4k-zstd.qcow2" "$work/v3-c4k-zstd-rewritten.qcow2"
io v3-c4k-zstd-rewritten.qcow2 'write -P 0x88 2k 4k' 'discard 128k 8k'
keep v3-c4k-zstd-rewritten.qcow2

# Zero clusters (v3 zero flag), with and without a preallocated offset,
# and discarded ranges.
create v3-c4k-zero.qcow2 1M cluster_size=4k
io v3-c4k-zero.qcow2 'write -P 0x12 0 16k' 'write -P 0x13 32k 32k' 'write -z 8k 8k' 'write -z -u 32k 8k' \
	'discard 48k 8k' 'write -z 256k 64k'
keep v3-c4k-zero.qcow2

# Lazy refcounts: one closed cleanly, one left dirty by a crash (qemu-io
# `abort`), which a read-write open must repair.
create v3-c4k-lazy.qcow2 1M cluster_size=4k,lazy_refcounts=on
fill v3-c4k-lazy.qcow2
keep v3-c4k-lazy.qcow2
create v3-c4k-lazy-dirty.qcow2 1M cluster_size=4k,lazy_refcounts=on
# A child shell, so the shell running this script does not report the abort.
sh -c 'ulimit -c 0
	qemu-io -f qcow2 -c "write -P 0x21 0 12k" -c "write -P 0x22 200k 4k" -c abort "$1"
	true' sh "$work/v3-c4k-lazy-dirty.qcow2" >/dev/null 2>&1
# Its refcounts are stale, so qemu-img check reports errors; what must
# hold is that qemu left the dirty bit set (and so repairs it on open).
if ! qemu-img info --output=json "$work/v3-c4k-lazy-dirty.qcow2" |
	grep -q '"dirty-flag": true'; then
	echo "make-corpus.sh: v3-c4k-lazy-dirty.qcow2 is not dirty" >&2
	exit 1
fi
cp "$work/v3-c4k-lazy-dirty.qcow2" "$out/"

# Internal snapshots, one taken over data that later changes, one over a
# compressed image.
create v3-c4k-snapshots.qcow2 1M cluster_size=4k
fill v3-c4k-snapshots.qcow2
qemu-img snapshot -c first "$work/v3-c4k-snapshots.qcow2"
io v3-c4k-snapshots.qcow2 'write -P 0xaa 0 8k' 'discard 64k 64k'
qemu-img snapshot -c second "$work/v3-c4k-snapshots.qcow2"
io v3-c4k-snapshots.qcow2 'write -P 0xbb 4k 4k'
keep v3-c4k-snapshots.qcow2

# Persistent dirty bitmaps: one enabled while data is written, one disabled.
create v3-c512-bitmaps.qcow2 2M cluster_size=512
qemu-img bitmap --add "$work/v3-c512-bitmaps.qcow2" live
qemu-img bitmap --add -g 64k "$work/v3-c512-bitmaps.qcow2" frozen
qemu-img bitmap --disable "$work/v3-c512-bitmaps.qcow2" frozen
fill v3-c512-bitmaps.qcow2
keep v3-c512-bitmaps.qcow2

# Extended L2 entries: subcluster writes, zeroes and discards.
create v3-c16k-extl2.qcow2 1M cluster_size=16k,extended_l2=on
io v3-c16k-extl2.qcow2 'write -P 0x31 0 512' 'write -P 0x32 2k 1k' \
	'write -P 0x33 32k 16k' 'write -z 33k 1k' 'write -z 64k 16k' \
	'write -P 0x34 100k 3k' 'discard 32k 16k'
keep v3-c16k-extl2.qcow2
qemu-img convert -q -c -f raw -O qcow2 -o cluster_size=16k,extended_l2=on \
	"$raw" "$work/v3-c16k-extl2-zlib.qcow2"
keep v3-c16k-extl2-zlib.qcow2

# A backing file name and format recorded in the header (the fuzzer opens
# with no_backing, so the name only has to parse).
create base.qcow2 1M cluster_size=4k
fill base.qcow2
create v3-c4k-backing.qcow2 1M cluster_size=4k,backing_file=base.qcow2,backing_fmt=qcow2
io v3-c4k-backing.qcow2 'write -P 0x41 4k 4k' 'write -z 8k 4k' 'discard 64k 4k'
keep v3-c4k-backing.qcow2
create v2-c4k-backing.qcow2 1M compat=0.10,cluster_size=4k,backing_file=base.qcow2,backing_fmt=qcow2
io v2-c4k-backing.qcow2 'write -P 0x42 4k 4k'
keep v2-c4k-backing.qcow2

# Metadata preallocation: every L2 entry set, the data sparse.
create v3-c512-prealloc.qcow2 32k cluster_size=512,preallocation=metadata
io v3-c512-prealloc.qcow2 'write -P 0x51 8k 1k'
keep v3-c512-prealloc.qcow2

# An image whose virtual size is not a multiple of the cluster size.
create v3-c4k-odd-size.qcow2 1000000 cluster_size=4k
io v3-c4k-odd-size.qcow2 'write -P 0x61 999000 1000' 'write -P 0x62 0 512'
keep v3-c4k-odd-size.qcow2

total=$(cat "$out"/*.qcow2 | wc -c)
echo "make-corpus.sh: $(ls "$out"/*.qcow2 | wc -l) images, $total bytes in $out"
