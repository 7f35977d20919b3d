#!/bin/bash
# SPDX-License-Identifier: MIT
#
# qcow-tool's command line against qemu-img 7.2 as the oracle.
#
# Where qemu-img has the same command, qcow-tool must print the same text
# and JSON and exit with the same code for the same image, so most cases
# run both tools on one file and diff the outputs byte for byte:
#   create   images made with each -o option: qemu-img info agrees with
#            the options (and with qemu-img create's own image), qemu-img
#            check is clean, the "Formatting ..." line is qemu-img's;
#   info     human and JSON output (and --backing-chain) on qemu-made
#            images: plain, v2, zstd/lazy/4k, backing chains, snapshots,
#            dirty, compressed, raw;
#   check    exit codes 0 / 3 / 2 / 63 on clean, leaking (a refcount bumped
#            by hand), corrupt (a data cluster's refcount zeroed) and raw
#            images; the same text and JSON; -r leaks repairs;
#   map      --output=json and human on images filled by qemu-io;
#   compare  exit codes 0/1/2, the same messages, a 1 TiB sparse pair;
#   convert  raw -> qcow2 -> raw round trips (cmp), -c read back by
#            qemu-img, -B, -o, sparse output;
#   resize, bench, discard (du drops, contents kept), compact (the file
#   shrinks, qemu-img check stays clean), and bad invocations, which must
#   fail with a message and exit 1, never with a signal.
# A case whose failure is a known libqcow bug reports "ok NAME # skip"
# with the reason, and turns into a plain "ok" once the library is fixed.
set -u
. "$(dirname "$0")/lib.sh"
e2e_init qcow-tool-cli

P=qcow-tool
M=$((1024 * 1024))

if ! have_cmd qemu-img || ! have_cmd qemu-io; then
	skip "$P" "qemu-img/qemu-io not installed"
	e2e_finish
fi
if ! have_cmd qcow-tool; then
	not_ok "$P/built" "qcow-tool is not on PATH ($UNIKIT_BUILD/bin)"
	e2e_finish
fi
cd "$T" || exit 1
mkdir -p "$T/o"

# same_output NAME OUTDIR -- ARGS...: run "qcow-tool ARGS" and "qemu-img
# ARGS" in the current directory; ok if stdout and the exit code agree.
same_output() {
	local name=$1 out=$T/$2 rq ri
	shift 3
	mkdir -p "$out"
	qcow-tool "$@" >"$out/ours" 2>"$out/ours.err"
	rq=$?
	qemu-img "$@" >"$out/qemu" 2>"$out/qemu.err"
	ri=$?
	if [ "$rq" -ne "$ri" ]; then
		not_ok "$name" "exit $rq, qemu-img exits $ri: $*" "$out/ours.err"
	elif ! diff "$out/qemu" "$out/ours" >"$out/diff"; then
		local why
		if why=$(known_deviation "$out" "$@"); then
			skip "$name" "$why"
		else
			not_ok "$name" "output differs from qemu-img's (< qemu-img, > qcow-tool): $*" \
				"$out/diff"
		fi
	else
		ok "$name"
	fi
}

# known_deviation OUTDIR ARGS...: is the difference one a known libqcow
# bug explains? Prints the reason. Such cases pass once the bug is fixed.
known_deviation() {
	local out=$1 img=${*: -1}
	shift
	case "$1" in
	check)
		# qemu counts every compressed cluster as fragmented.
		if grep -q '"fragmented-clusters"\|fragmented' "$out/qemu" &&
		    qemu-img check --output=json "$img" 2>/dev/null |
		    grep -q '"compressed-clusters"' &&
		    diff <(grep -v fragmented "$out/qemu" | sed 's/,$//') \
			 <(grep -v fragmented "$out/ours" | sed 's/,$//') >/dev/null; then
			echo "libqcow bug: compressed clusters are not counted as fragmented"
			return 0
		fi ;;
	map)
		# qemu looks at host-file holes inside data clusters when it
		# guesses an image was preallocated ("zero": true, "data": true).
		if qemu-img map --output=json "$img" 2>/dev/null |
		    grep -q '"zero": true, "data": true'; then
			echo "libqcow map ignores host-file holes qemu reports as zero data"
			return 0
		fi ;;
	esac
	return 1
}

# qcow2 header surgery for the check cases: set the refcount of a host
# cluster (16-bit refcounts), or set a header field.
set_refcount() {
	python3 - "$1" "$2" "$3" <<'EOF'
import struct, sys
img, cluster, value = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(img, "r+b") as f:
    h = f.read(104)
    cs = 1 << struct.unpack(">I", h[20:24])[0]
    rt = struct.unpack(">Q", h[48:56])[0]
    per = cs // 2
    f.seek(rt + 8 * (cluster // per))
    rb = struct.unpack(">Q", f.read(8))[0]
    f.seek(rb + 2 * (cluster % per))
    f.write(struct.pack(">H", value))
EOF
}

set_dirty_bit() {
	python3 - "$1" <<'EOF'
import struct, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(72)
    v = struct.unpack(">Q", f.read(8))[0] | 1
    f.seek(72)
    f.write(struct.pack(">Q", v))
EOF
}

# json_fields FILE KEY...: print the value of each (dotted) key.
json_fields() {
	python3 - "$@" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
for k in sys.argv[2:]:
    v = d
    for part in k.split("."):
        v = v.get(part) if isinstance(v, dict) else None
    print(k, json.dumps(v))
EOF
}

# ---------------------------------------------------------------- create

# create_case NAME OPTIONS [SIZE]: qcow-tool create -o OPTIONS must print
# qemu-img's line, and both images must look the same to qemu-img info
# (all but the disk usage) and be clean.
create_case() {
	local name=$P/create/$1 opts=$2 size=${3:-64M} d=$T/create/$1 args=()
	mkdir -p "$d/ours" "$d/qemu"
	[ -n "$opts" ] && args=(-o "$opts")
	if ! (cd "$d/ours" && qcow-tool create -f qcow2 "${args[@]}" img.qcow2 \
	    "$size") >"$d/ours.out" 2>&1; then
		not_ok "$name" "qcow-tool create failed" "$d/ours.out"
		return
	fi
	(cd "$d/qemu" && qemu-img create -f qcow2 "${args[@]}" img.qcow2 "$size") \
		>"$d/qemu.out" 2>&1
	if ! diff "$d/qemu.out" "$d/ours.out" >"$d/diff"; then
		not_ok "$name" "create printed something else than qemu-img:" "$d/diff"
		return
	fi
	if ! oracle_check "$d/ours/img.qcow2" "$d/check.out"; then
		if grep -q 'exceeding the end of the file' "$d/check.out"; then
			skip "$name" "libqcow bug: preallocated clusters lie past the end of the file"
		else
			not_ok "$name" "$d/check.out"
		fi
		return
	fi
	(cd "$d/ours" && qemu-img info --output=json img.qcow2) >"$d/ours.json"
	(cd "$d/qemu" && qemu-img info --output=json img.qcow2) >"$d/qemu.json"
	local keys=(virtual-size cluster-size format dirty-flag backing-filename
		    backing-filename-format format-specific.data.compat
		    format-specific.data.compression-type
		    format-specific.data.lazy-refcounts
		    format-specific.data.refcount-bits
		    format-specific.data.corrupt format-specific.data.extended-l2)
	json_fields "$d/ours.json" "${keys[@]}" >"$d/ours.fields"
	json_fields "$d/qemu.json" "${keys[@]}" >"$d/qemu.fields"
	if ! diff "$d/qemu.fields" "$d/ours.fields" >"$d/diff"; then
		not_ok "$name" "qemu-img info differs (< qemu's image, > ours):" "$d/diff"
		return
	fi
	# Usable by qemu: write, read back, still clean.
	if ! qio "$d/ours/img.qcow2" "write -P 0x5a 0 100k" \
	    "read -P 0x5a 0 100k" 2>"$d/io.out" ||
	    ! oracle_check "$d/ours/img.qcow2" "$d/check.out"; then
		not_ok "$name" "qemu-io on the new image failed" "$d/io.out" \
			"$d/check.out"
		return
	fi
	ok "$name"
}

create_case default ""
create_case v2 "compat=0.10"
create_case v3 "compat=1.1"
create_case v3-alias "compat=v3"
create_case c512 "cluster_size=512" 4M
create_case c4k "cluster_size=4k"
create_case c2m "cluster_size=2M"
create_case rc1 "refcount_bits=1"
create_case rc8 "refcount_bits=8"
create_case rc64 "refcount_bits=64"
create_case lazy "lazy_refcounts=on"
create_case zstd "compression_type=zstd"
create_case prealloc-metadata "preallocation=metadata" 16M
create_case prealloc-falloc "preallocation=falloc" 16M
create_case prealloc-full "preallocation=full" 16M
create_case mixed "cluster_size=16k,refcount_bits=4,lazy_refcounts=on,compression_type=zstd"
create_case v2-c4k "compat=0.10,cluster_size=4k"
create_case odd-size "" 1000000

# With a backing file, the size comes from it.
mkdir -p "$T/cb/ours" "$T/cb/qemu"
for d in ours qemu; do
	qemu-img create -q -f qcow2 "$T/cb/$d/base.qcow2" 96M
done
(cd "$T/cb/ours" && qcow-tool create -f qcow2 -b base.qcow2 -F qcow2 top.qcow2) \
	>"$T/cb/ours.out" 2>&1
(cd "$T/cb/qemu" && qemu-img create -f qcow2 -b base.qcow2 -F qcow2 top.qcow2) \
	>"$T/cb/qemu.out" 2>&1
if ! diff "$T/cb/qemu.out" "$T/cb/ours.out" >"$T/cb/diff"; then
	not_ok "$P/create/backing" "$T/cb/diff"
elif ! (cd "$T/cb/ours" && qemu-img info --output=json top.qcow2) >"$T/cb/o.json" ||
    ! (cd "$T/cb/qemu" && qemu-img info --output=json top.qcow2) >"$T/cb/q.json" ||
    ! diff <(grep -v actual-size "$T/cb/q.json") \
	<(grep -v actual-size "$T/cb/o.json") >"$T/cb/diff2"; then
	not_ok "$P/create/backing" "qemu-img info differs" "$T/cb/diff2"
elif ! oracle_check "$T/cb/ours/top.qcow2" "$T/cb/check"; then
	not_ok "$P/create/backing" "$T/cb/check"
else
	ok "$P/create/backing"
fi

# A sparse raw file.
if qcow-tool create -q -f raw "$T/r.raw" 1G &&
    [ "$(stat -c %s "$T/r.raw")" -eq $((1024 * M)) ] &&
    [ "$(du -B1 "$T/r.raw" | cut -f1)" -le 65536 ] &&
    [ "$(qemu-img info --output=json "$T/r.raw" | jq -r .format)" = raw ]; then
	ok "$P/create/raw"
else
	not_ok "$P/create/raw" "$(ls -ls "$T/r.raw" 2>&1)"
fi

# -q prints nothing; sizes with suffixes; -o size=.
out=$(qcow-tool create -q -f qcow2 "$T/q.qcow2" 1.5G 2>&1)
if [ -z "$out" ] && [ "$(img_size "$T/q.qcow2")" -eq $((1536 * M)) ] &&
    qcow-tool create -q -f qcow2 -o size=2T "$T/q2.qcow2" &&
    [ "$(img_size "$T/q2.qcow2")" -eq $((2 * 1024 * 1024 * M)) ]; then
	ok "$P/create/sizes"
else
	not_ok "$P/create/sizes" "output: $out"
fi

# ---------------------------------------------------------------- images

# A set of qemu-made images for info, map, check and compare.
mkdir -p "$T/img/sub"
cd "$T/img" || exit 1
make_patterns
if ! {
	qemu-img create -q -f qcow2 plain.qcow2 1G &&
	qio plain.qcow2 "write -P 0xab 0 64k" "write -z 1M 64k" &&
	qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 256M &&
	qio v2.qcow2 "write -P 1 4M 1M" &&
	qemu-img create -q -f qcow2 \
		-o cluster_size=4k,lazy_refcounts=on,compression_type=zstd,refcount_bits=8 \
		small.qcow2 64M &&
	fill small.qcow2 11 40 4096 &&
	qemu-img create -q -f qcow2 filled.qcow2 64M &&
	fill filled.qcow2 12 60 65536 &&
	qemu-img create -q -f qcow2 -b plain.qcow2 -F qcow2 overlay.qcow2 &&
	qio overlay.qcow2 "write -P 2 128k 64k" "write -P 3 2M 4k" \
		"write -z 64k 64k" "write -z 0 64k" &&
	qemu-img create -q -f qcow2 -b ../overlay.qcow2 -F qcow2 sub/top.qcow2 &&
	qio sub/top.qcow2 "write -P 4 3M 100k" &&
	qemu-img create -q -f raw base.raw 32M &&
	qemu-io -f raw -c "write -P 9 1M 1M" base.raw >/dev/null &&
	qemu-img create -q -f qcow2 -b base.raw -F raw onraw.qcow2 &&
	qio onraw.qcow2 "write -P 5 0 64k" &&
	cp filled.qcow2 snap.qcow2 &&
	qemu-img snapshot -c first snap.qcow2 &&
	qio snap.qcow2 "write -P 6 0 1M" &&
	qemu-img snapshot -c second-with-a-longer-name snap.qcow2 &&
	qemu-img convert -c -O qcow2 overlay.qcow2 compressed.qcow2 &&
	qemu-img create -q -f qcow2 -o lazy_refcounts=on dirty.qcow2 16M &&
	set_dirty_bit dirty.qcow2 &&
	qemu-img convert -O raw filled.qcow2 filled.raw
} >"$T/img.log" 2>&1; then
	not_ok "$P/images" "building the test images with qemu failed" "$T/img.log"
	e2e_finish
fi
IMAGES="plain.qcow2 v2.qcow2 small.qcow2 filled.qcow2 overlay.qcow2
	sub/top.qcow2 onraw.qcow2 snap.qcow2 compressed.qcow2 dirty.qcow2
	filled.raw base.raw"

# ---------------------------------------------------------------- info

for img in $IMAGES; do
	n=${img//\//_}
	same_output "$P/info/$n/human" "o/info-$n-h" -- info "$img"
	same_output "$P/info/$n/json" "o/info-$n-j" -- info --output=json "$img"
done
same_output "$P/info/chain/human" o/chain-h -- info --backing-chain sub/top.qcow2
same_output "$P/info/chain/json" o/chain-j -- info --backing-chain --output=json \
	sub/top.qcow2
same_output "$P/info/absolute-path" o/abs -- info --output=json "$T/img/overlay.qcow2"
same_output "$P/info/force-share" o/U -- info -U -f qcow2 plain.qcow2

# ---------------------------------------------------------------- check

cp plain.qcow2 clean.qcow2
same_output "$P/check/clean" o/chk-clean -- check clean.qcow2
same_output "$P/check/clean-json" o/chk-clean-j -- check --output=json clean.qcow2
same_output "$P/check/v2" o/chk-v2 -- check v2.qcow2
same_output "$P/check/compressed" o/chk-comp -- check --output=json compressed.qcow2
same_output "$P/check/raw-unsupported" o/chk-raw -- check filled.raw

qemu-img create -q -f qcow2 leak.qcow2 1G
set_refcount leak.qcow2 1 2		# the refcount table's cluster: 2, used once
same_output "$P/check/leak" o/chk-leak -- check leak.qcow2
same_output "$P/check/leak-json" o/chk-leak-j -- check --output=json leak.qcow2
rc=0
qcow-tool check -q leak.qcow2 >"$T/o/q.out" 2>/dev/null || rc=$?
if [ "$rc" -eq 3 ] && [ ! -s "$T/o/q.out" ]; then
	ok "$P/check/leak-exit-3"
else
	not_ok "$P/check/leak-exit-3" "exit $rc (want 3), -q output:" "$T/o/q.out"
fi
cp leak.qcow2 leak-fix.qcow2
cp leak.qcow2 leak-fix-qemu.qcow2
qcow-tool check -r leaks leak-fix.qcow2 >"$T/o/fix.ours" 2>"$T/o/fix.err"
rc=$?
qemu-img check -r leaks leak-fix-qemu.qcow2 >"$T/o/fix.qemu" 2>/dev/null
if [ "$rc" -ne 0 ]; then
	not_ok "$P/check/repair-leaks" "exit $rc" "$T/o/fix.err"
elif ! diff "$T/o/fix.qemu" "$T/o/fix.ours" >"$T/o/fix.diff"; then
	not_ok "$P/check/repair-leaks" "$T/o/fix.diff"
elif ! oracle_check leak-fix.qcow2 "$T/o/fix.check"; then
	not_ok "$P/check/repair-leaks" "$T/o/fix.check"
else
	ok "$P/check/repair-leaks"
fi

qemu-img create -q -f qcow2 corrupt.qcow2 1G
qio corrupt.qcow2 "write -P 1 0 64k"
set_refcount corrupt.qcow2 5 0		# the data cluster: used, refcount 0
same_output "$P/check/corrupt" o/chk-cor -- check corrupt.qcow2
same_output "$P/check/corrupt-json" o/chk-cor-j -- check --output=json corrupt.qcow2
rc=0
qcow-tool check corrupt.qcow2 >/dev/null 2>&1 || rc=$?
if [ "$rc" -eq 2 ]; then
	ok "$P/check/corrupt-exit-2"
else
	not_ok "$P/check/corrupt-exit-2" "exit $rc, want 2"
fi
cp corrupt.qcow2 corrupt-fix.qcow2
qcow-tool check -r all corrupt-fix.qcow2 >"$T/o/cfix.out" 2>&1
rc=$?
if [ "$rc" -eq 0 ] && oracle_check corrupt-fix.qcow2 "$T/o/cfix.check"; then
	ok "$P/check/repair-all"
elif grep -q 'OFLAG_COPIED' "$T/o/cfix.check" 2>/dev/null; then
	# libqcow clears the copied flag before it fixes the refcount.
	skip "$P/check/repair-all" "libqcow bug: -r all leaves OFLAG_COPIED wrong"
else
	not_ok "$P/check/repair-all" "exit $rc" "$T/o/cfix.out" "$T/o/cfix.check"
fi

# ---------------------------------------------------------------- map

for img in plain.qcow2 v2.qcow2 small.qcow2 filled.qcow2 overlay.qcow2 \
    sub/top.qcow2 onraw.qcow2 snap.qcow2 compressed.qcow2 filled.raw base.raw; do
	n=${img//\//_}
	same_output "$P/map/$n/json" "o/map-$n-j" -- map --output=json "$img"
	same_output "$P/map/$n/human" "o/map-$n-h" -- map "$img"
done
same_output "$P/map/range" o/map-range -- map --output=json \
	--start-offset=100000 --max-length=3M overlay.qcow2
# qemu counts a preallocated cluster whose host blocks are a hole as
# zero data; libqcow's map does not look at the host file.
qemu-img create -q -f qcow2 -o preallocation=metadata,cluster_size=4k pm.qcow2 8M
mkdir -p "$T/o/map-pm"
qemu-img map --output=json pm.qcow2 >"$T/o/map-pm/qemu"
qcow-tool map --output=json pm.qcow2 >"$T/o/map-pm/ours" 2>&1
if cmp -s "$T/o/map-pm/qemu" "$T/o/map-pm/ours"; then
	ok "$P/map/prealloc-metadata"
else
	skip "$P/map/prealloc-metadata" "libqcow map ignores host-file holes of preallocated clusters"
fi

# ---------------------------------------------------------------- compare

cp filled.qcow2 filled2.qcow2
qio filled2.qcow2 "write -P 0x77 5000000 1"
qemu-img create -q -f qcow2 bigger.qcow2 128M
qemu-img convert -n -O qcow2 filled.qcow2 bigger.qcow2
qemu-img create -q -f qcow2 biggerdirty.qcow2 128M
qemu-img convert -n -O qcow2 filled.qcow2 biggerdirty.qcow2
qio biggerdirty.qcow2 "write -P 1 100M 512"
for c in "filled.qcow2 filled.raw" "filled.raw filled.qcow2" \
    "filled.qcow2 filled2.qcow2" "-q filled.qcow2 filled2.qcow2" \
    "plain.qcow2 overlay.qcow2" "overlay.qcow2 compressed.qcow2" \
    "filled.qcow2 bigger.qcow2" "bigger.qcow2 filled.qcow2" \
    "filled.qcow2 biggerdirty.qcow2" "-s filled.qcow2 bigger.qcow2" \
    "-s filled.qcow2 filled.qcow2" "-f qcow2 -F raw filled.qcow2 filled.raw" \
    "filled.qcow2 missing.qcow2"; do
	n=$(echo "$c" | tr ' /' '__')
	# shellcheck disable=SC2086
	same_output "$P/compare/$n" "o/cmp-$n" -- compare $c
done
qemu-img create -q -f qcow2 tb1.qcow2 1T
qemu-img create -q -f qcow2 tb2.qcow2 1T
qio tb1.qcow2 "write -P 3 700G 64k"
truncate -s 1T tb.raw
qemu-io -f raw -c "write -P 3 700G 64k" tb.raw >/dev/null
start=$(date +%s%N)
out1=$(timeout 60 qcow-tool compare tb1.qcow2 tb.raw 2>&1)
rc1=$?
out2=$(timeout 60 qcow-tool compare tb1.qcow2 tb2.qcow2 2>&1)
rc2=$?
ms=$((($(date +%s%N) - start) / 1000000))
if [ "$rc1" -eq 0 ] && [ "$out1" = "Images are identical." ] &&
    [ "$rc2" -eq 1 ] && [ "$out2" = "Content mismatch at offset 751619276800!" ] &&
    [ "$ms" -lt 10000 ]; then
	ok "$P/compare/1TiB-sparse"
else
	not_ok "$P/compare/1TiB-sparse" "exit $rc1: $out1" "exit $rc2: $out2" "took $ms ms"
fi
rm -f tb.raw

# ---------------------------------------------------------------- convert

# Source: a raw disk with random data, repetitive data, zeros and holes.
python3 - <<'EOF'
import os, random
random.seed(7)
with open("src.raw", "wb") as f:
    f.truncate(48 << 20)
    f.seek(0); f.write(os.urandom(3 << 20))
    f.seek(5 << 20); f.write(b"\0" * (2 << 20))         # written zeros
    f.seek(9 << 20); f.write(bytes([0x41]) * (1 << 20))  # compressible
    f.seek((20 << 20) + 12345); f.write(os.urandom(70000))  # unaligned
    f.seek((48 << 20) - 4096); f.write(os.urandom(4096))    # the last block
EOF
rm -f rt.qcow2 rt.raw
if ! qcow-tool convert -O qcow2 src.raw rt.qcow2 >"$T/o/conv1" 2>&1 ||
    ! qcow-tool convert -O raw rt.qcow2 rt.raw >>"$T/o/conv1" 2>&1; then
	not_ok "$P/convert/round-trip" "$T/o/conv1"
elif ! cmp src.raw rt.raw >"$T/o/conv1.cmp" 2>&1; then
	not_ok "$P/convert/round-trip" "$T/o/conv1.cmp"
elif ! oracle_check rt.qcow2 "$T/o/conv1.check"; then
	not_ok "$P/convert/round-trip" "$T/o/conv1.check"
elif ! qemu-img compare -q src.raw rt.qcow2; then
	not_ok "$P/convert/round-trip" "qemu-img compare finds a difference"
else
	ok "$P/convert/round-trip"
fi
# Sparse: zeros are not stored, in qcow2 or in raw.
alloc_q=$(qemu-img check --output=json rt.qcow2 | jq '."allocated-clusters"')
if [ "$alloc_q" -le 80 ] && [ "$(du -B1 rt.raw | cut -f1)" -le $((6 * M)) ]; then
	ok "$P/convert/sparse"
else
	not_ok "$P/convert/sparse" "qcow2 allocated clusters: $alloc_q (<= 80)" \
		"raw output uses $(du -B1 rt.raw | cut -f1) bytes"
fi
rm -f rtc.qcow2 rtc.raw
if ! qcow-tool convert -c -O qcow2 src.raw rtc.qcow2 >"$T/o/conv2" 2>&1; then
	not_ok "$P/convert/compressed" "$T/o/conv2"
elif ! qemu-img convert -O raw rtc.qcow2 rtc.raw 2>"$T/o/conv2" ||
    ! cmp src.raw rtc.raw >"$T/o/conv2" 2>&1; then
	not_ok "$P/convert/compressed" "qemu-img reads something else" "$T/o/conv2"
elif ! oracle_check rtc.qcow2 "$T/o/conv2.check"; then
	not_ok "$P/convert/compressed" "$T/o/conv2.check"
elif [ "$(qemu-img check --output=json rtc.qcow2 | jq '."compressed-clusters" // 0')" -lt 1 ]; then
	not_ok "$P/convert/compressed" "no compressed clusters in the output"
else
	ok "$P/convert/compressed"
fi
# qcow2 chains in, options out; -p prints progress.
rm -f flat.qcow2 flat.raw
if qcow-tool convert -p -O qcow2 -o cluster_size=4k,compat=0.10,refcount_bits=16 \
	sub/top.qcow2 flat.qcow2 >"$T/o/conv3" 2>&1 &&
    grep -q '100.00/100%' "$T/o/conv3" &&
    qemu-img compare -q sub/top.qcow2 flat.qcow2 &&
    oracle_check flat.qcow2 "$T/o/conv3.check" &&
    [ "$(qemu-img info --output=json flat.qcow2 | jq -r '."format-specific".data.compat')" = 0.10 ] &&
    [ -z "$(qemu-img info --output=json flat.qcow2 | jq -r '."backing-filename" // empty')" ]; then
	ok "$P/convert/chain-with-options"
else
	not_ok "$P/convert/chain-with-options" "$T/o/conv3" "$T/o/conv3.check"
fi
rm -f withb.qcow2
if qcow-tool convert -O qcow2 -B plain.qcow2 -F qcow2 overlay.qcow2 withb.qcow2 \
	>"$T/o/conv4" 2>&1 &&
    qemu-img compare -q overlay.qcow2 withb.qcow2 &&
    oracle_check withb.qcow2 "$T/o/conv4.check" &&
    [ "$(qemu-img info --output=json withb.qcow2 | jq -r '."backing-filename"')" = plain.qcow2 ] &&
    [ "$(qemu-img check --output=json withb.qcow2 | jq '."allocated-clusters"')" -le 3 ]; then
	ok "$P/convert/backing"
else
	not_ok "$P/convert/backing" "$T/o/conv4" "$T/o/conv4.check"
fi
rm -f fromq.raw
if qcow-tool convert -f qcow2 -O raw compressed.qcow2 fromq.raw 2>"$T/o/conv5" &&
    qemu-img convert -O raw overlay.qcow2 overlay.raw &&
    cmp overlay.raw fromq.raw >>"$T/o/conv5" 2>&1; then
	ok "$P/convert/from-compressed"
else
	not_ok "$P/convert/from-compressed" "$T/o/conv5"
fi

# ---------------------------------------------------------------- resize

qemu-img create -q -f qcow2 rs.qcow2 1G
qio rs.qcow2 "write -P 7 900M 1M"
if qcow-tool resize rs.qcow2 +1G >"$T/o/rs" 2>&1 &&
    grep -qx 'Image resized.' "$T/o/rs" &&
    [ "$(img_size rs.qcow2)" -eq $((2048 * M)) ] &&
    qemu-io -f qcow2 -c "read -P 7 900M 1M" rs.qcow2 >/dev/null &&
    oracle_check rs.qcow2 "$T/o/rs.check"; then
	ok "$P/resize/grow"
else
	not_ok "$P/resize/grow" "$T/o/rs" "size $(img_size rs.qcow2)"
fi
rc=0
qcow-tool resize rs.qcow2 -- -1G >"$T/o/rs2" 2>&1 || rc=$?
if [ "$rc" -eq 1 ] && [ "$(img_size rs.qcow2)" -eq $((2048 * M)) ] &&
    grep -q -- '--shrink' "$T/o/rs2"; then
	ok "$P/resize/shrink-needs-flag"
else
	not_ok "$P/resize/shrink-needs-flag" "exit $rc" "$T/o/rs2"
fi
if qcow-tool resize -q --shrink rs.qcow2 950M >"$T/o/rs3" 2>&1 &&
    [ ! -s "$T/o/rs3" ] && [ "$(img_size rs.qcow2)" -eq $((950 * M)) ] &&
    qemu-io -f qcow2 -c "read -P 7 900M 1M" rs.qcow2 >/dev/null &&
    oracle_check rs.qcow2 "$T/o/rs3.check"; then
	ok "$P/resize/shrink"
else
	not_ok "$P/resize/shrink" "$T/o/rs3" "$T/o/rs3.check"
fi
truncate -s 10M rs.raw
if qcow-tool resize -f raw rs.raw 20M >/dev/null 2>&1 &&
    [ "$(stat -c %s rs.raw)" -eq $((20 * M)) ]; then
	ok "$P/resize/raw"
else
	not_ok "$P/resize/raw" "length $(stat -c %s rs.raw)"
fi

# ---------------------------------------------------------------- bench

qemu-img create -q -f qcow2 bench.qcow2 64M
# "Sending 75000 read requests, ..." without the count.
sending_rest() {
	local x=${1#Sending }
	echo "${x#*[0-9] }"
}
bench_case() {
	local name=$P/bench/$1 out=$T/o/bench-$1 first ours
	shift
	mkdir -p "$out"
	qcow-tool bench "$@" >"$out/ours" 2>&1
	local rc=$?
	first=$(qemu-img bench "$@" -c 1 2>/dev/null | head -n 1)
	ours=$(head -n 1 "$out/ours")
	if [ "$rc" -ne 0 ]; then
		not_ok "$name" "exit $rc" "$out/ours"
	elif ! grep -q '^Run completed in [0-9]*\.[0-9][0-9][0-9] seconds\.$' "$out/ours"; then
		not_ok "$name" "no 'Run completed in' line" "$out/ours"
	elif [ "$(sending_rest "$ours")" != "$(sending_rest "$first")" ]; then
		not_ok "$name" "first line differs from qemu-img's: $first" "$out/ours"
	elif ! oracle_check bench.qcow2 "$out/check"; then
		not_ok "$name" "$out/check"
	else
		ok "$name"
	fi
}
bench_case read -c 20000 bench.qcow2
bench_case write -w -c 2000 -d 8 -s 64k -S 128k -o 1M --pattern=0x5a bench.qcow2
if qemu-io -f qcow2 -c "read -P 0x5a 1M 64k" -c "read -P 0x5a 63M 64k" \
    bench.qcow2 >"$T/o/bench-pat" 2>&1 && ! grep -q 'Pattern verification failed' \
    "$T/o/bench-pat"; then
	ok "$P/bench/pattern-written"
else
	not_ok "$P/bench/pattern-written" "bench -w --pattern=0x5a did not write 0x5a" \
		"$T/o/bench-pat"
fi
bench_case flush -w -c 2000 -d 4 --flush-interval=100 bench.qcow2
bench_case no-drain -w -c 2000 -d 4 --flush-interval=100 --no-drain bench.qcow2
bench_case direct -t none -c 2000 bench.qcow2
bench_case direct-write -t none -w -c 2000 -d 16 bench.qcow2
bench_case raw -c 2000 -f raw filled.raw
rc=0
qcow-tool bench -c 10 -o 100M bench.qcow2 >"$T/o/bench-eof" 2>&1 || rc=$?
if [ "$rc" -eq 1 ] && grep -q 'Failed request: Input/output error' "$T/o/bench-eof"; then
	ok "$P/bench/past-the-end"
else
	not_ok "$P/bench/past-the-end" "exit $rc" "$T/o/bench-eof"
fi

# ---------------------------------------------------------------- discard, compact

# As the demo: data, then the guest overwrites part of it with zeros.
rm -f dz.qcow2
qemu-img create -q -f raw dz.raw 256M
qemu-io -f raw -c "write -s $T/pat3 0 300007" -c "write -P 0x33 1M 31M" \
	-c "write -P 0x44 40M 8M" dz.raw >/dev/null
qcow-tool convert -O qcow2 dz.raw dz.qcow2
qio dz.qcow2 "write -P 0 1M 24M" "write -z 40M 1M"
qemu-io -f raw -c "write -P 0 1M 24M" -c "write -z 40M 1M" dz.raw >/dev/null
before=$(du -B1 dz.qcow2 | cut -f1)
qcow-tool discard dz.qcow2 >"$T/o/discard" 2>&1
rc=$?
after=$(du -B1 dz.qcow2 | cut -f1)
if [ "$rc" -ne 0 ]; then
	not_ok "$P/discard" "exit $rc" "$T/o/discard"
elif [ "$after" -gt $((before - 20 * M)) ]; then
	not_ok "$P/discard" "du -B1: $before -> $after bytes" "$T/o/discard"
elif ! released=$(sed -n 's/^Released \([0-9]*\) bytes.*/\1/p' "$T/o/discard") ||
    [ -z "$released" ] || [ "$released" -lt $((24 * M)) ] ||
    [ "$released" -gt $((25 * M)) ]; then
	# 24 MiB of zeros written as data, 1 MiB of zero clusters that keep
	# their host clusters (qemu-io write -z without -u).
	not_ok "$P/discard" "released ${released:-?} bytes, want 24..25 MiB" \
		"$T/o/discard"
elif ! oracle_check dz.qcow2 "$T/o/discard.check" ||
    ! oracle_compare dz.qcow2 dz.raw "$T/o/discard.cmp"; then
	not_ok "$P/discard" "$T/o/discard.check" "$T/o/discard.cmp"
else
	ok "$P/discard"
fi
len_before=$(stat -c %s dz.qcow2)
qcow-tool compact dz.qcow2 >"$T/o/compact" 2>&1
rc=$?
len_after=$(stat -c %s dz.qcow2)
if [ "$rc" -ne 0 ]; then
	not_ok "$P/compact" "exit $rc" "$T/o/compact"
elif [ "$len_after" -ge "$len_before" ]; then
	not_ok "$P/compact" "length $len_before -> $len_after" "$T/o/compact"
elif ! grep -q "^File length: $len_before -> $len_after bytes.$" "$T/o/compact"; then
	not_ok "$P/compact" "wrong report" "$T/o/compact"
elif ! oracle_check dz.qcow2 "$T/o/compact.check" ||
    ! oracle_compare dz.qcow2 dz.raw "$T/o/compact.cmp"; then
	not_ok "$P/compact" "$T/o/compact.check" "$T/o/compact.cmp"
else
	ok "$P/compact"
fi
# With a backing file, released clusters must keep reading zeros.
rm -f dzb.qcow2
qemu-img create -q -f qcow2 dzbase.qcow2 16M
qio dzbase.qcow2 "write -P 0x11 0 8M"
qemu-img create -q -f qcow2 -b dzbase.qcow2 -F qcow2 dzb.qcow2
qio dzb.qcow2 "write -P 0 0 4M" "write -P 0x22 4M 1M"
qemu-img convert -O raw dzb.qcow2 dzb.raw
before=$(du -B1 dzb.qcow2 | cut -f1)
if qcow-tool discard -q dzb.qcow2 >"$T/o/discardb" 2>&1 &&
    [ "$(du -B1 dzb.qcow2 | cut -f1)" -lt $((before - 3 * M)) ] &&
    oracle_check dzb.qcow2 "$T/o/discardb.check" &&
    oracle_compare dzb.qcow2 dzb.raw "$T/o/discardb.cmp"; then
	ok "$P/discard/backing"
else
	not_ok "$P/discard/backing" "$T/o/discardb" "$T/o/discardb.check" \
		"$T/o/discardb.cmp"
fi

# ---------------------------------------------------------------- bad arguments

printf 'not an image' >junk.bin
bad=(
	""
	"nonsense"
	"info"
	"info -f"
	"info --output"
	"info --output=xml plain.qcow2"
	"info --bogus plain.qcow2"
	"info missing.qcow2"
	"info plain.qcow2 v2.qcow2"
	"info -f vmdk plain.qcow2"
	"info -f qcow2 junk.bin"
	"create"
	"create -f qcow2 new.qcow2"
	"create -f qcow2 new.qcow2 abc"
	"create -f qcow2 new.qcow2 12Q"
	"create -f qcow2 new.qcow2 99999999999999999999"
	"create -f qcow2 new.qcow2 1M extra"
	"create -f qcow2 -o foo=bar new.qcow2 1M"
	"create -f qcow2 -o cluster_size=3000 new.qcow2 1M"
	"create -f qcow2 -o cluster_size=4M new.qcow2 1M"
	"create -f qcow2 -o cluster_size=abc new.qcow2 1M"
	"create -f qcow2 -o refcount_bits=3 new.qcow2 1M"
	"create -f qcow2 -o refcount_bits=128 new.qcow2 1M"
	"create -f qcow2 -o compat=2 new.qcow2 1M"
	"create -f qcow2 -o compat=0.10,lazy_refcounts=on new.qcow2 1M"
	"create -f qcow2 -o compat=0.10,compression_type=zstd new.qcow2 1M"
	"create -f qcow2 -o lazy_refcounts=maybe new.qcow2 1M"
	"create -f qcow2 -o compression_type=lz4 new.qcow2 1M"
	"create -f qcow2 -o preallocation=lots new.qcow2 1M"
	"create -f qcow2 -o = new.qcow2 1M"
	"create -f qcow2 -o size=1M new.qcow2 1M"
	"create -f vmdk new.img 1M"
	"create -f qcow2 -b missing.qcow2 -F qcow2 new.qcow2"
	"create -f qcow2 -b plain.qcow2 new.qcow2"
	"create -f qcow2 -F qcow2 new.qcow2 1M"
	"create -f qcow2 /nonexistent/dir/new.qcow2 1M"
	"create -f qcow2 new.qcow2 1E"
	"check"
	"check -r sometimes plain.qcow2"
	"check --output=yaml plain.qcow2"
	"check missing.qcow2"
	"check -f qcow2 junk.bin"
	"map"
	"map --output=x plain.qcow2"
	"map --start-offset=abc plain.qcow2"
	"map missing.qcow2"
	"compare plain.qcow2"
	"compare plain.qcow2 v2.qcow2 small.qcow2"
	"compare -x plain.qcow2 v2.qcow2"
	"convert"
	"convert plain.qcow2"
	"convert -O vmdk plain.qcow2 new.img"
	"convert -c -O raw plain.qcow2 new.raw"
	"convert -O qcow2 -o bogus=1 plain.qcow2 new.qcow2"
	"convert -O qcow2 missing.qcow2 new.qcow2"
	"convert -S 100 plain.qcow2 new.raw"
	"convert -B plain.qcow2 -O qcow2 overlay.qcow2 new.qcow2"
	"convert -O qcow2 plain.qcow2 /nonexistent/dir/new.qcow2"
	"resize"
	"resize plain.qcow2"
	"resize plain.qcow2 abc"
	"resize plain.qcow2 99999E"
	"resize missing.qcow2 1G"
	"resize --shrink plain.qcow2 0"
	"resize --preallocation=lots plain.qcow2 2G"
	"bench"
	"bench -c abc plain.qcow2"
	"bench -d 0 plain.qcow2"
	"bench -s -1 plain.qcow2"
	"bench -t sometimes plain.qcow2"
	"bench -i sometimes plain.qcow2"
	"bench --pattern=256 plain.qcow2"
	"bench --flush-interval=10 plain.qcow2"
	"bench -w --flush-interval=1 plain.qcow2"
	"bench -n plain.qcow2"
	"bench -c 1 -s 2147483647 -d 2147483647 plain.qcow2"
	"bench missing.qcow2"
	"discard"
	"discard missing.qcow2"
	"discard junk.bin"
	"compact"
	"compact missing.qcow2"
	"compact -z plain.qcow2"
	"compact snap.qcow2"
)
for args in "${bad[@]}"; do
	rc=0
	# shellcheck disable=SC2086
	qcow-tool $args >"$T/o/bad.out" 2>"$T/o/bad.err" || rc=$?
	name="$P/bad-args/${args:-no-arguments}"
	name=${name// /_}
	if [ "$rc" -ge 128 ]; then
		not_ok "$name" "killed by signal $((rc - 128)): qcow-tool $args" "$T/o/bad.err"
	elif [ "$rc" -ne 1 ]; then
		not_ok "$name" "exit $rc, want 1: qcow-tool $args" "$T/o/bad.err"
	elif [ ! -s "$T/o/bad.err" ]; then
		not_ok "$name" "no message on stderr: qcow-tool $args"
	else
		ok "$name"
	fi
done
if qcow-tool --help >"$T/o/help" 2>&1 && qcow-tool help >/dev/null 2>&1 &&
    qcow-tool info -h >/dev/null 2>&1; then
	missing=
	for c in bench check compact compare convert create discard info map resize; do
		grep -q "^  $c " "$T/o/help" || missing="$missing $c"
	done
	if [ -z "$missing" ]; then
		ok "$P/help"
	else
		not_ok "$P/help" "commands missing from --help:$missing"
	fi
else
	not_ok "$P/help" "$T/o/help"
fi

e2e_finish
