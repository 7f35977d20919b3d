#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Differential read matrix: images made by qemu-img and qemu-io with every
# option qemu offers (compat 0.10/1.1, cluster sizes 512 B..2 MiB, refcount
# widths 1..64, lazy refcounts, zlib/zstd compression, preallocation,
# zero clusters, backing chains of qcow2 and raw files, internal
# snapshots, persistent bitmaps, extended L2, external data files) are
# filled with seeded random qemu-io writes, zero writes and discards. For
# each image, libqcow's view (qcow-readraw) must equal qemu-img convert -O
# raw byte for byte (case NAME/read), and `qcow-tool map --output=json`
# must equal `qemu-img map --output=json` (case NAME/map). qemu is the
# oracle throughout; nothing here compares libqcow with itself.
set -u
. "$(dirname "$0")/lib.sh"
e2e_init qcow-matrix

P=qcow-matrix
M=$((1024 * 1024))
SIZE=$((16 * M))

make_patterns

# mkq NAME OPTIONS [SIZE]: qemu-img create -f qcow2 -o OPTIONS.
mkq() {
	if [ -n "$2" ]; then
		qemu-img create -q -f qcow2 -o "$2" "$1" "${3:-$SIZE}"
	else
		qemu-img create -q -f qcow2 "$1" "${3:-$SIZE}"
	fi
}

# A raw file with mixed content: incompressible, repetitive and zero runs.
mkraw_source() {
	qemu-img create -q -f raw "$1" "${2:-$SIZE}"
	fill "$1" "${3:-77}" 40 65536 raw
}

# matrix_case NAME BUILDER ARGS...: run the builder in a fresh directory
# (it leaves img.qcow2 there), then compare libqcow with qemu on it; the
# cases run side by side (e2e_spawn).
matrix_case() {
	e2e_spawn "$1" run_case "$@"
}

run_case() {
	local name=$1 d=$T/$1 rc at
	shift
	mkdir -p "$d"
	# Not "|| rc=$?": errexit would be off inside the subshell.
	(set -e; cd "$d"; "$@") >"$d/setup.log" 2>&1
	rc=$?
	if [ "$rc" -ne 0 ]; then
		not_ok "$P/$name/setup" "building the image with qemu failed:" \
			"$d/setup.log"
		return
	fi

	if ! qemu-img convert -U -O raw "$d/img.qcow2" "$d/qemu.raw" \
	    >"$d/oracle.log" 2>&1; then
		not_ok "$P/$name/read" "qemu-img convert failed" "$d/oracle.log"
	elif ! have_cmd qcow-readraw; then
		not_ok "$P/$name/read" "qcow-readraw is not built"
	elif ! timeout 60 qcow-readraw "$d/img.qcow2" "$d/ours.raw" \
	    >"$d/read.log" 2>&1; then
		not_ok "$P/$name/read" "qcow-readraw $d/img.qcow2 failed:" \
			"$d/read.log"
	elif ! cmp "$d/qemu.raw" "$d/ours.raw" >"$d/cmp.log" 2>&1; then
		at=$(sed -n 's/.*differ: byte \([0-9]*\),.*/\1/p' "$d/cmp.log")
		not_ok "$P/$name/read" "libqcow and qemu-img convert differ" \
			"$d/cmp.log" \
			"first difference at guest offset $((${at:-1} - 1))" \
			"reproduce: UNIKIT_E2E_KEEP=1 $0; qcow-readraw $d/img.qcow2 x.raw; cmp x.raw <(qemu-img convert -O raw $d/img.qcow2 /dev/stdout)"
	else
		ok "$P/$name/read"
	fi

	if compare_maps "$d/img.qcow2" "$d/map.log"; then
		ok "$P/$name/map"
	else
		not_ok "$P/$name/map" "$d/map.log"
	fi
	rm -f "$d"/*.raw.n "$d/qemu.raw" "$d/ours.raw"
}

# ---- builders (run inside the case directory, errexit on) --------------

# plain OPTIONS SEED [GRAIN]: create, then random qemu-io traffic.
plain() {
	mkq img.qcow2 "$1"
	fill img.qcow2 "$2" 40 "${3:-65536}"
}

# compressed_convert OPTIONS: qemu-img convert -c from a mixed raw file,
# then (if a seed is given) overwrite parts of the compressed clusters.
compressed_convert() {
	mkraw_source src.raw
	qemu-img convert -q -t unsafe -c -O qcow2 -o "$1" src.raw img.qcow2
	rm -f src.raw
	if [ -n "${2:-}" ]; then
		fill img.qcow2 "$2" 25
	fi
}

# compressed_qemu_io OPTIONS CLUSTER: qemu-io write -c of fresh clusters.
compressed_qemu_io() {
	local cs=$2 i cmds=()
	mkq img.qcow2 "$1"
	for i in 0 1 2 5 9 17 33 60; do
		cmds+=("write -c -s $T/pat$((i % 4)) $((i * cs)) $cs")
		cmds+=("write -c -P $((i + 1)) $(((i + 100) * cs)) $cs")
	done
	qio img.qcow2 "${cmds[@]}"
	fill img.qcow2 11 15
}

# prealloc_zero OPTIONS: preallocated image, data, then zero writes that
# keep the allocation (write -z without -u) and ones that may unmap.
prealloc_zero() {
	mkq img.qcow2 "$1"
	fill img.qcow2 21 20
	qio img.qcow2 "write -P 0x61 1M 3M" "write -z 1M 1M" \
		"write -z $((2 * M + 4096)) 100000" "write -z -u 3M 512k" "write -z 10M 2M"
}

# lazy_dirty CLUSTER: a lazy-refcounts image whose writer crashed (qemu-io
# `abort`): dirty bit set, refcounts stale, L2 updates possibly lost.
lazy_dirty() {
	mkq img.qcow2 "compat=1.1,lazy_refcounts=on,cluster_size=$1"
	fill img.qcow2 31 20
	qemu-io -f qcow2 -c "write -s $T/pat1 1M 300k" -c "write -P 0x7e 9M 64k" \
		-c "write -z 1M 64k" -c "write -P 0x7f $((12 * M + 1000)) 5000" \
		-c abort img.qcow2 >qio.log 2>&1 || true
	"$PYTHON" -c '
import struct, sys
h = open("img.qcow2", "rb").read(80)
sys.exit(0 if struct.unpack(">Q", h[72:80])[0] & 1 else 1)'
}

# chain SPEC...: a backing chain, bottom first. Each SPEC is
# "qcow2:OPTIONS[:SIZE]" or "raw[:SIZE]". The top is img.qcow2.
chain() {
	local n=$# i=0 spec fmt opts size prev="" prevfmt="" name seed=40
	for spec in "$@"; do
		i=$((i + 1))
		IFS=: read -r fmt opts size <<<"$spec"
		if [ "$fmt" = raw ]; then
			size=${opts:-$SIZE}
			name=layer$i.raw
			qemu-img create -q -f raw "$name" "$size"
			fill "$name" $((seed + i)) 25 65536 raw
		else
			name=layer$i.qcow2
			[ "$i" -eq "$n" ] && name=img.qcow2
			if [ -n "$prev" ]; then
				opts="$opts,backing_file=$prev,backing_fmt=$prevfmt"
			fi
			mkq "$name" "${opts#,}" "${size:-$SIZE}"
			fill "$name" $((seed + i)) 25
		fi
		prev=$name
		prevfmt=$fmt
	done
}

# chain_abs: an overlay naming its backing file by absolute path.
chain_abs() {
	mkq base.qcow2 cluster_size=64k
	fill base.qcow2 51 20
	mkq img.qcow2 "backing_file=$PWD/base.qcow2,backing_fmt=qcow2"
	fill img.qcow2 52 20
}

# overlay_hides OPTIONS: an overlay that zeroes and discards over backing
# data (v3: zero clusters; v2: discards fall through to the backing file).
overlay_hides() {
	mkq base.qcow2 cluster_size=64k
	qio base.qcow2 "write -s $T/pat2 0 16M"
	mkq img.qcow2 "$1,backing_file=base.qcow2,backing_fmt=qcow2"
	qio img.qcow2 "write -P 0x31 1M 2M" "write -z $((M + M / 2)) 512k" \
		"discard 2M 512k" "write -z 5M 1M" "write -z $((7 * M + 1000)) 3000" \
		"discard 9M 2M" "write -z -u 12M 1M"
}

# snapshots OPTIONS: internal snapshots interleaved with writes.
snapshots() {
	mkq img.qcow2 "$1"
	fill img.qcow2 61 20
	qemu-img snapshot -c first img.qcow2
	fill img.qcow2 62 20
	qemu-img snapshot -c second img.qcow2
	fill img.qcow2 63 20
	qemu-img snapshot -c third img.qcow2
	qemu-img snapshot -d second img.qcow2
	fill img.qcow2 64 10
}

# bitmaps OPTIONS: persistent dirty bitmaps, one disabled, then writes
# (which update the enabled bitmap).
bitmaps() {
	mkq img.qcow2 "$1"
	fill img.qcow2 71 15
	qemu-img bitmap --add img.qcow2 b0
	qemu-img bitmap --add --granularity 128k img.qcow2 b1
	qemu-img bitmap --add img.qcow2 b2
	qemu-img bitmap --disable img.qcow2 b2
	fill img.qcow2 72 20
}

# data_file OPTIONS: guest data in an external file.
data_file() {
	mkq img.qcow2 "data_file=$PWD/img.data,$1"
	fill img.qcow2 81 30
}

# ---- the matrix ----------------------------------------------------------

for compat in 0.10 1.1; do
	v=3; [ "$compat" = 0.10 ] && v=2
	for cs in 512 1k 4k 64k 2M; do
		matrix_case "v$v-c$cs" plain "compat=$compat,cluster_size=$cs" \
			$((1000 + ${#cs}))
	done
done

for rb in 1 2 4 8 16 32 64; do
	matrix_case "v3-c4k-r$rb" plain "cluster_size=4k,refcount_bits=$rb" \
		$((2000 + rb)) 4096
done
matrix_case v3-c512-r1 plain cluster_size=512,refcount_bits=1 2101 512
matrix_case v3-c512-r64 plain cluster_size=512,refcount_bits=64 2102 512
matrix_case v3-c64k-r1 plain cluster_size=64k,refcount_bits=1 2103
matrix_case v3-c64k-r64 plain cluster_size=64k,refcount_bits=64 2104
matrix_case v3-c2M-r2 plain cluster_size=2M,refcount_bits=2 2105

matrix_case v3-c64k-lazy plain lazy_refcounts=on 3001
matrix_case v3-c4k-lazy plain lazy_refcounts=on,cluster_size=4k 3002 4096
matrix_case v3-c512-lazy-r8 plain \
	lazy_refcounts=on,cluster_size=512,refcount_bits=8 3003 512
matrix_case v3-c64k-lazy-dirty lazy_dirty 64k
matrix_case v3-c4k-lazy-dirty lazy_dirty 4k

for ct in zlib zstd; do
	for cs in 512 4k 64k 2M; do
		matrix_case "v3-c$cs-$ct-convert" compressed_convert \
			"compression_type=$ct,cluster_size=$cs"
	done
	matrix_case "v3-c64k-$ct-overwritten" compressed_convert \
		"compression_type=$ct" 4001
	matrix_case "v3-c1k-$ct-qemu-io" compressed_qemu_io \
		"compression_type=$ct,cluster_size=1k" 1024
	matrix_case "v3-c64k-$ct-extl2" compressed_convert \
		"compression_type=$ct,extended_l2=on"
done
matrix_case v2-c64k-zlib-convert compressed_convert compat=0.10
matrix_case v2-c4k-zlib-qemu-io compressed_qemu_io compat=0.10,cluster_size=4k 4096
matrix_case v3-c64k-zstd-r1-convert compressed_convert \
	compression_type=zstd,refcount_bits=1

for pa in metadata falloc full; do
	for compat in 0.10 1.1; do
		v=3; [ "$compat" = 0.10 ] && v=2
		matrix_case "v$v-c64k-prealloc-$pa" plain \
			"compat=$compat,preallocation=$pa" $((5000 + ${#pa}))
	done
done
matrix_case v3-c4k-prealloc-metadata-r1 plain \
	preallocation=metadata,cluster_size=4k,refcount_bits=1 5100 4096

matrix_case v3-c64k-prealloc-zero prealloc_zero preallocation=metadata
matrix_case v3-c4k-prealloc-zero prealloc_zero preallocation=metadata,cluster_size=4k
matrix_case v3-c64k-full-zero prealloc_zero preallocation=full
matrix_case v3-c64k-data-zero prealloc_zero cluster_size=64k
matrix_case v3-c512-data-zero prealloc_zero cluster_size=512
matrix_case v2-c64k-data-zero prealloc_zero compat=0.10
matrix_case v3-c64k-extl2-prealloc-zero prealloc_zero \
	preallocation=metadata,extended_l2=on

matrix_case chain2-qcow2 chain qcow2:cluster_size=64k qcow2:cluster_size=64k
matrix_case chain2-raw chain raw qcow2:cluster_size=64k
matrix_case chain3-qcow2 chain qcow2:cluster_size=4k qcow2:compat=0.10 \
	qcow2:cluster_size=64k
matrix_case chain3-raw chain raw qcow2:cluster_size=512 qcow2:cluster_size=2M
matrix_case chain2-short-qcow2 chain qcow2:cluster_size=64k:8M \
	qcow2:cluster_size=64k
matrix_case chain2-short-raw chain raw:$((5 * 1024 * 1024 + 1536)) \
	qcow2:cluster_size=4k
matrix_case chain3-short chain raw:3M qcow2::9M qcow2:cluster_size=16k
matrix_case chain2-v2-over-v3 chain qcow2:cluster_size=4k qcow2:compat=0.10
matrix_case chain2-extl2 chain qcow2:cluster_size=64k \
	qcow2:extended_l2=on,cluster_size=128k
matrix_case chain2-lazy-r64 chain qcow2:refcount_bits=64 \
	qcow2:lazy_refcounts=on,refcount_bits=1
matrix_case chain2-abs chain_abs
matrix_case v3-overlay-hides overlay_hides compat=1.1
matrix_case v2-overlay-hides overlay_hides compat=0.10
matrix_case extl2-overlay-hides overlay_hides extended_l2=on

matrix_case v2-c64k-snapshots snapshots compat=0.10
matrix_case v3-c64k-snapshots snapshots compat=1.1
matrix_case v3-c4k-snapshots snapshots cluster_size=4k
matrix_case v3-c512-snapshots-r64 snapshots cluster_size=512,refcount_bits=64
matrix_case v3-c64k-snapshots-lazy snapshots lazy_refcounts=on

matrix_case v3-c64k-bitmaps bitmaps cluster_size=64k
matrix_case v3-c4k-bitmaps bitmaps cluster_size=4k
matrix_case v3-c512-bitmaps-r1 bitmaps cluster_size=512,refcount_bits=1

for cs in 16k 32k 64k 512k 2M; do
	sub=$(($(numfmt --from=iec "${cs^^}") / 32))
	matrix_case "v3-c$cs-extl2" plain "extended_l2=on,cluster_size=$cs" \
		$((6000 + ${#cs})) "$sub"
done
matrix_case v3-c64k-extl2-prealloc plain \
	extended_l2=on,preallocation=metadata 6100 2048

matrix_case v3-c64k-datafile data_file cluster_size=64k
matrix_case v3-c4k-datafile data_file cluster_size=4k
matrix_case v3-c64k-datafile-raw data_file data_file_raw=on
matrix_case v3-c64k-datafile-prealloc data_file preallocation=metadata
matrix_case v3-c64k-datafile-extl2 data_file extended_l2=on

# sized OPTIONS SIZE: a virtual size that is not a multiple of the cluster.
sized() {
	mkq img.qcow2 "$1" "$2"
	fill img.qcow2 7002 30 512
}
matrix_case v3-c64k-size-odd sized cluster_size=64k $((SIZE + 1536))
matrix_case v3-c2M-size-1M512 sized cluster_size=2M $((1024 * 1024 + 512))
matrix_case v2-c4k-size-odd sized compat=0.10,cluster_size=4k $((SIZE - 512))

e2e_collect
# Images built (each has a read verdict; a failed build has a setup one).
echo "# matrix: $(cat "$T"/.spawn.* | grep -c '/read$') images"
e2e_finish
