#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Random workloads through libqcow, judged by qemu-img. For each
# configuration (v2/v3, cluster sizes 512 B..2 MiB, refcount widths 1..64,
# lazy refcounts, qcow2/raw/chained backing files made by qemu, an overlay
# smaller than its backing file), qcow-stress creates an image with
# qcow_create, runs a seeded random sequence of writes, zero writes,
# discards, compressed writes, flushes, resizes, compactions and reopens,
# checking every read against its own raw model, and writes the model out.
# Images made by qemu with features our qcow_create lacks (extended L2,
# compressed clusters, preallocation, internal snapshots, which must stay
# intact, persistent bitmaps, external data files) get the same treatment.
# Then the oracle speaks:
#   NAME/stress   qcow-stress itself found no mismatch or error;
#   NAME/check    `qemu-img check` exits 0: no corruption, no leak;
#   NAME/compare  `qemu-img compare` finds the image identical to the model,
#                 and the virtual sizes are equal;
#   NAME/map      `qcow-tool map --output=json` equals `qemu-img map`.
# Setup runs in "(set -e; ...)" subshells whose status is read from $?
# afterwards: inside an if condition errexit would be off.
# shellcheck disable=SC2181
set -u
. "$(dirname "$0")/lib.sh"
e2e_init qcow-workload

P=qcow-workload
M=$((1024 * 1024))
SIZE=$((32 * M))
OPS=${QCOW_WORKLOAD_OPS:-400}

# workload NAME QCOW-STRESS-ARGS...: run and judge one configuration, in
# the background (e2e_spawn). The image is $T/DIR/img.qcow2, DIR being
# NAME up to its first slash; an existing one is opened again (with its
# model).
workload() {
	e2e_spawn "$1" run_workload "$@"
}

run_workload() {
	local name=$1 d=$T/${1%%/*} rc
	STRESS_RAN=0
	shift
	mkdir -p "$d"
	if ! have_cmd qcow-stress; then
		not_ok "$P/$name/stress" "qcow-stress is not built"
		return
	fi
	timeout 300 qcow-stress --ops "$OPS" "$@" "$d/img.qcow2" \
		"$d/model.raw" >"$d/stress.log" 2>&1
	rc=$?
	if [ "$rc" -eq 3 ]; then
		skip "$P/$name/stress" "libqcow refuses to write it: $(tail -n 1 \
			"$d/stress.log" | sed "s/^.*open: //; s/^'[^']*' //")"
		return
	elif [ "$rc" -ne 0 ]; then
		qemu-img check -U "$d/img.qcow2" >"$d/check.log" 2>&1
		not_ok "$P/$name/stress" "qcow-stress failed:" "$d/stress.log" \
			"qemu-img check of the image as left:" "$d/check.log" \
			"reproduce: qcow-stress -v --ops $OPS $* IMG MODEL"
		return
	fi
	ok "$P/$name/stress"
	STRESS_RAN=1
	if oracle_check "$d/img.qcow2" "$d/check.log"; then
		ok "$P/$name/check"
	else
		not_ok "$P/$name/check" "$d/check.log" \
			"reproduce: qcow-stress --ops $OPS $* IMG MODEL; qemu-img check IMG"
	fi
	if oracle_compare "$d/img.qcow2" "$d/model.raw" "$d/compare.log"; then
		ok "$P/$name/compare"
	else
		not_ok "$P/$name/compare" "$d/compare.log" \
			"reproduce: qcow-stress --ops $OPS $* IMG MODEL; qemu-img compare IMG MODEL"
	fi
	if compare_maps "$d/img.qcow2" "$d/map.log"; then
		ok "$P/$name/map"
	else
		not_ok "$P/$name/map" "$d/map.log"
	fi
}

# Backing files, all made and filled by qemu; their content as raw comes
# from qemu-img convert (the oracle), never from libqcow.
setup_backing() {
	set -e
	cd "$T"
	qemu-img create -q -f qcow2 -o cluster_size=64k base.qcow2 "$SIZE"
	fill base.qcow2 101 40
	qemu-img convert -O raw base.qcow2 base.qcow2.raw

	qemu-img create -q -f raw base.img "$SIZE"
	fill base.img 102 40 4096 raw

	qemu-img create -q -f qcow2 -o cluster_size=4k,compat=0.10 \
		-b base.img -F raw mid.qcow2
	fill mid.qcow2 103 30 4096
	qemu-img convert -O raw mid.qcow2 mid.qcow2.raw
}
(setup_backing) >"$T/setup.log" 2>&1
if [ $? -ne 0 ]; then
	not_ok "$P/setup" "making backing files with qemu failed" "$T/setup.log"
	e2e_finish
fi

Q2=(--backing "$T/base.qcow2" --backing-fmt qcow2 --backing-raw "$T/base.qcow2.raw")
RAW=(--backing "$T/base.img" --backing-fmt raw)
CHAIN=(--backing "$T/mid.qcow2" --backing-fmt qcow2 --backing-raw "$T/mid.qcow2.raw")

workload v3-c64k --seed 1 --size "$SIZE"
workload v2-c64k --version 2 --seed 3 --size "$SIZE"
workload v2-c512 --version 2 --cluster-size 512 --seed 4 --size "$SIZE"
workload v3-c512-r1 --cluster-size 512 --refcount-bits 1 --seed 5 --size "$SIZE"
workload v3-c4k-r64 --cluster-size 4096 --refcount-bits 64 --seed 6 --size "$SIZE"
workload v3-c4k-r2 --cluster-size 4096 --refcount-bits 2 --seed 7 --size "$SIZE"
workload v3-c2M-r8 --cluster-size 2M --refcount-bits 8 --seed 8 --size "$SIZE"
workload v3-c64k-lazy --lazy --seed 9 --size "$SIZE"
workload v3-c4k-r1-lazy --lazy --cluster-size 4096 --refcount-bits 1 --seed 10 --size "$SIZE"

workload v3-qcow2-backing "${Q2[@]}" --seed 11
workload v2-qcow2-backing --version 2 "${Q2[@]}" --seed 12
workload v3-c4k-raw-backing --cluster-size 4096 "${RAW[@]}" --seed 13
workload v2-c4k-raw-backing --version 2 --cluster-size 4096 "${RAW[@]}" --seed 14
workload v3-c512-lazy-backing --cluster-size 512 --lazy "${Q2[@]}" --seed 15
workload v3-chain3 --cluster-size 16384 "${CHAIN[@]}" --seed 16
workload v2-chain3 --version 2 "${CHAIN[@]}" --seed 17
# An overlay smaller than its backing file: growing it must expose zeros.
workload v3-short-overlay "${Q2[@]}" --size $((SIZE / 2 + 512)) --seed 18
workload v2-short-overlay --version 2 "${RAW[@]}" --size $((SIZE / 4)) --seed 19

# Images qemu made, with features qcow_create does not offer, written by
# libqcow: qemu_made NAME SEED "CREATE-OPTIONS" [QCOW-STRESS-ARGS...]. The
# model starts as qemu-img convert's view of the image.
qemu_made() {
	e2e_spawn "$1" run_qemu_made "$@"
}

run_qemu_made() {
	local name=$1 seed=$2 opts=$3 d=$T/$1
	shift 3
	mkdir -p "$d"
	(
		set -e
		cd "$d"
		case $opts in
		convert-c:*)
			qemu-img create -q -f raw src.raw "$SIZE"
			fill src.raw "$seed" 40 65536 raw
			qemu-img convert -q -t unsafe -c -O qcow2 \
				-o "${opts#convert-c:}" src.raw img.qcow2
			rm src.raw
			;;
		*)
			qemu-img create -q -f qcow2 -o "${opts//@D/$d}" img.qcow2 "$SIZE"
			fill img.qcow2 "$seed" 40 4096
			;;
		esac
		case $name in
		*snapshot*)
			qemu-img snapshot -c s1 img.qcow2
			qemu-img convert -l snapshot.name=s1 -O raw img.qcow2 s1.raw
			fill img.qcow2 $((seed + 1)) 20 4096
			;;
		*bitmap*)
			qemu-img bitmap --add img.qcow2 b0
			qemu-img bitmap --add --granularity 4k img.qcow2 b1
			;;
		esac
		qemu-img convert -O raw img.qcow2 model.raw
	) >"$d/setup.log" 2>&1
	if [ $? -ne 0 ]; then
		not_ok "$P/$name/setup" "qemu could not make the image" "$d/setup.log"
		return
	fi
	run_workload "$name" --seed "$seed" "$@"
	if [ -f "$d/s1.raw" ] && [ "$STRESS_RAN" = 1 ]; then
		# Our writes must have copied, not overwritten, shared clusters.
		# (convert -l reads at the image's current size, which our
		# resizes may have grown: compare the snapshot's own size.)
		if qemu-img convert -U -l snapshot.name=s1 -O raw "$d/img.qcow2" \
		    "$d/s1.after.raw" >"$d/s1.log" 2>&1 &&
		    cmp -n "$(stat -c %s "$d/s1.raw")" "$d/s1.raw" \
			"$d/s1.after.raw" >>"$d/s1.log" 2>&1; then
			ok "$P/$name/snapshot-intact"
		else
			not_ok "$P/$name/snapshot-intact" \
				"snapshot s1 changed under libqcow's writes" "$d/s1.log"
		fi
	fi
}

qemu_made qemu-extl2 31 extended_l2=on,cluster_size=64k
qemu_made qemu-extl2-c16k-backing 32 \
	"extended_l2=on,cluster_size=16k,backing_file=$T/base.qcow2,backing_fmt=qcow2" \
	--backing-raw "$T/base.qcow2.raw"
qemu_made qemu-zstd-compressed 33 convert-c:compression_type=zstd
qemu_made qemu-zlib-c4k-compressed 34 convert-c:cluster_size=4k
qemu_made qemu-prealloc-metadata 35 preallocation=metadata
qemu_made qemu-v2-prealloc-falloc 36 compat=0.10,preallocation=falloc
qemu_made qemu-lazy-r1-c4k 37 lazy_refcounts=on,refcount_bits=1,cluster_size=4k
qemu_made qemu-snapshot 38 cluster_size=4k
qemu_made qemu-v2-snapshot 39 compat=0.10
qemu_made qemu-bitmaps 40 cluster_size=64k
qemu_made qemu-datafile 41 "data_file=@D/img.data"
qemu_made qemu-datafile-raw 42 "data_file=@D/img.data,data_file_raw=on"

e2e_collect

# Opening existing images again, in a new process, with new operations.
workload v3-c64k/again --seed 101
workload v3-c512-r1/again --seed 102
workload v2-qcow2-backing/again "${Q2[@]}" --seed 103

e2e_collect
e2e_finish
