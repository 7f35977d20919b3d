#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Damaged and hostile images. Each case patches a good image made by
# qemu-img (a small Python helper edits header fields, L1/L2 entries,
# refcount table entries and header extensions; layout as in
# docs/interop/qcow2.txt) and runs `qcow-tool info -f qcow2`, `qcow-tool
# check -f qcow2` and qcow-readraw on it, each under `timeout 20` and
# `ulimit -v 4000000` (ASan builds: an allocation limit instead). None may
# crash (exit >= 128), hang or run out of memory; a failure must exit 1
# (check: 1 or 2) with a message on stderr. Per case and tool the table
# below also says what must happen, calibrated against qemu-img 7.2:
#   e  must fail (qemu refuses to open such an image)
#   c  check must not pass: corruption found (exit 2, as qemu-img check
#      says) or the image refused with a message (exit 1)
#   a  any clean outcome; when qcow-readraw succeeds where qemu-img convert
#      also does, both must read the same bytes
# Then behaviour the spec requires of writers: an unknown autoclear bit is
# cleared by a read-write open; an unknown header extension (and the
# backing file name) survive a header rewrite (resize); an image marked
# corrupt is not written; a dirty lazy-refcounts image left by a crashed
# qemu is repaired when opened read-write.
# Setup runs in "(set -e; ...)" subshells whose status is read from $?
# afterwards: inside an if condition errexit would be off.
# shellcheck disable=SC2181
set -u
. "$(dirname "$0")/lib.sh"
e2e_init qcow-badinput

P=qcow-badinput
M=$((1024 * 1024))

cat >"$T/qcow2.py" <<'EOF'
"""Inspect and damage qcow2 images: qcow2.py IMAGE OP [ARGS] [OP ...]
  get FIELD | set FIELD VALUE | setbit FIELD BIT    header fields
  truncate LEN                                       cut the file
  l1 INDEX [VALUE] | l2 GUEST_OFFSET [VALUE] | reftable INDEX [VALUE]
  poke OFFSET HEXBYTES                               raw bytes
  exts                                               list header extensions
  addext TYPE HEXDATA                                add one at the end
Reads print decimal; values may be written 0x...
"""
import struct
import sys

FIELDS = {  # name: (offset, size), big-endian
    "magic": (0, 4), "version": (4, 4), "backing_file_offset": (8, 8),
    "backing_file_size": (16, 4), "cluster_bits": (20, 4), "size": (24, 8),
    "crypt_method": (32, 4), "l1_size": (36, 4), "l1_table_offset": (40, 8),
    "refcount_table_offset": (48, 8), "refcount_table_clusters": (56, 4),
    "nb_snapshots": (60, 4), "snapshots_offset": (64, 8),
    "incompatible_features": (72, 8), "compatible_features": (80, 8),
    "autoclear_features": (88, 8), "refcount_order": (96, 4),
    "header_length": (100, 4), "compression_type": (104, 1),
}
FMT = {1: ">B", 4: ">I", 8: ">Q"}


class Image:
    def __init__(self, path):
        self.f = open(path, "r+b")

    def read(self, off, n):
        self.f.seek(off)
        return self.f.read(n)

    def write(self, off, data):
        self.f.seek(off)
        self.f.write(data)

    def get(self, name):
        off, n = FIELDS[name]
        return struct.unpack(FMT[n], self.read(off, n))[0]

    def set(self, name, value):
        off, n = FIELDS[name]
        self.write(off, struct.pack(FMT[n], value))

    def u64(self, off):
        return struct.unpack(">Q", self.read(off, 8))[0]

    def l2_entry_offset(self, guest):
        cs = 1 << self.get("cluster_bits")
        per_l2 = cs // 8
        cl = guest // cs
        l1e = self.u64(self.get("l1_table_offset") + 8 * (cl // per_l2))
        l2 = l1e & 0x00FFFFFFFFFFFE00
        if not l2:
            sys.exit("no L2 table for guest offset %d" % guest)
        return l2 + 8 * (cl % per_l2)

    def exts(self):
        off = self.get("header_length") if self.get("version") >= 3 else 72
        out = []
        while True:
            typ, n = struct.unpack(">II", self.read(off, 8))
            if typ == 0:
                return out, off
            out.append((typ, self.read(off + 8, n)))
            off += 8 + (n + 7) // 8 * 8


def main(argv):
    img, args = Image(argv[1]), argv[2:]
    num = lambda s: int(s, 0)
    while args:
        op = args.pop(0)
        if op == "get":
            print(img.get(args.pop(0)))
        elif op == "set":
            img.set(args.pop(0), num(args.pop(0)))
        elif op == "setbit":
            name = args.pop(0)
            img.set(name, img.get(name) | 1 << num(args.pop(0)))
        elif op == "truncate":
            img.f.truncate(num(args.pop(0)))
        elif op in ("l1", "l2", "reftable"):
            i = num(args.pop(0))
            if op == "l1":
                off = img.get("l1_table_offset") + 8 * i
            elif op == "l2":
                off = img.l2_entry_offset(i)
            else:
                off = img.get("refcount_table_offset") + 8 * i
            if args and args[0][:1].isdigit():
                img.write(off, struct.pack(">Q", num(args.pop(0))))
            else:
                print(img.u64(off))
        elif op == "poke":
            off = num(args.pop(0))
            img.write(off, bytes.fromhex(args.pop(0)))
        elif op == "exts":
            for typ, data in img.exts()[0]:
                print("%08x %d %s" % (typ, len(data), data.hex()))
        elif op == "addext":
            typ, data = num(args.pop(0)), bytes.fromhex(args.pop(0))
            _, end = img.exts()
            pad = b"\0" * ((len(data) + 7) // 8 * 8 - len(data))
            rec = struct.pack(">II", typ, len(data)) + data + pad
            bf = img.get("backing_file_offset")
            if bf and end + len(rec) + 8 > bf:
                # move the backing file name past the new extension
                name = img.read(bf, img.get("backing_file_size"))
                img.write(bf, b"\0" * len(name))
                bf = end + len(rec) + 8
                img.write(bf, name)
                img.set("backing_file_offset", bf)
            img.write(end, rec + b"\0" * 8)
        else:
            sys.exit("unknown operation " + op)


main(sys.argv)
EOF
qp() {
	"$PYTHON" "$T/qcow2.py" "$@"
}

# Memory limit: ulimit -v, except for ASan builds (their shadow memory
# needs terabytes of address space); they get ASan's allocation limit.
ASAN=0
if have_cmd qcow-readraw && ldd "$(command -v qcow-readraw)" 2>/dev/null |
    grep -q libasan; then
	ASAN=1
	export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}allocator_may_return_null=1:max_allocation_size_mb=4000"
fi

# limited OUTBASE CMD...: run CMD with the limits; stdout and stderr go to
# OUTBASE.out and OUTBASE.err; returns CMD's exit status (124: timeout).
limited() {
	local out=$1
	shift
	(
		[ "$ASAN" = 1 ] || ulimit -v 4000000
		exec timeout -k 5 20 "$@"
	) >"$out.out" 2>"$out.err"
}

# judge CASE TOOL EXPECT RC ERRFILE [ALLOWED-RCS]: one verdict line.
judge() {
	local name=$P/$1/$2 expect=$3 rc=$4 err=$5 allowed=${6:-0 1}
	if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
		not_ok "$name" "hung (killed by timeout 20)" "$err"
	elif [ "$rc" -ge 128 ]; then
		not_ok "$name" "crashed (exit $rc)" "$err"
	elif ! grep -qw -- "$rc" <<<"$allowed"; then
		not_ok "$name" "exit $rc, expected one of: $allowed" "$err"
	elif [ "$rc" -ne 0 ] && [ ! -s "$err" ]; then
		not_ok "$name" "exit $rc without a message on stderr"
	elif [ "$expect" = e ] && [ "$rc" -eq 0 ]; then
		not_ok "$name" "succeeded where qemu-img fails (qemu: invalid image)"
	elif [ "$expect" = c ] && [ "$rc" -ne 1 ] && [ "$rc" -ne 2 ]; then
		not_ok "$name" "check did not report the corruption (exit $rc;" \
			"qemu-img check exits 2)" "$err" "${err%.err}.out"
	else
		ok "$name"
	fi
}

# bad CASE BASE "INFO CHECK READ" PATCH-OPS...: patch a copy of BASE and
# judge the three tools on it.
bad() {
	local name=$1 base=$2 expect=$3 d=$T/$1 rc ie ce re
	shift 3
	read -r ie ce re <<<"$expect"
	mkdir -p "$d"
	cp "$T/$base" "$d/img.qcow2"
	if [ $# -gt 0 ] && ! qp "$d/img.qcow2" "$@" >"$d/patch.log" 2>&1; then
		not_ok "$P/$name/setup" "patching failed" "$d/patch.log"
		return
	fi
	tools_on "$name" "$d" "$ie" "$ce" "$re"
}

# tools_on CASE DIR INFO CHECK READ: run the three tools on DIR/img.qcow2.
tools_on() {
	local name=$1 d=$2 ie=$3 ce=$4 re=$5 rc qrc
	if ! have_cmd qcow-tool; then
		not_ok "$P/$name/info" "qcow-tool is not built"
		not_ok "$P/$name/check" "qcow-tool is not built"
	else
		limited "$d/info" qcow-tool info -f qcow2 "$d/img.qcow2"
		judge "$name" info "$ie" $? "$d/info.err"
		limited "$d/check" qcow-tool check -f qcow2 "$d/img.qcow2"
		rc=$?
		if [ "$ce" = c ]; then
			judge "$name" check c "$rc" "$d/check.err" "1 2"
		else
			judge "$name" check "$ce" "$rc" "$d/check.err" "0 1 2 3"
		fi
	fi
	if ! have_cmd qcow-readraw; then
		not_ok "$P/$name/read" "qcow-readraw is not built"
		return
	fi
	limited "$d/read" qcow-readraw "$d/img.qcow2" "$d/ours.raw"
	rc=$?
	if [ "$re" = a ] && [ "$rc" -eq 0 ]; then
		# Both read it: then both must read the same.
		timeout 20 qemu-img convert -U -f qcow2 -O raw "$d/img.qcow2" \
			"$d/qemu.raw" >/dev/null 2>&1
		qrc=$?
		if [ "$qrc" -eq 0 ] && ! cmp -s "$d/qemu.raw" "$d/ours.raw"; then
			not_ok "$P/$name/read" \
				"read without error, but not what qemu-img convert reads" \
				"$(cmp "$d/qemu.raw" "$d/ours.raw" 2>&1)"
			rm -f "$d"/*.raw
			return
		fi
	fi
	judge "$name" read "$re" "$rc" "$d/read.err"
	rm -f "$d"/*.raw
}

# ---- good images to damage ----------------------------------------------
(
	set -e
	cd "$T"
	# 64 KiB clusters: header 0, refcount table 0x10000, refcount
	# block 0x20000, L1 0x30000, L2 0x40000, data from 0x50000.
	qemu-img create -q -f qcow2 base.qcow2 16M
	qio base.qcow2 "write -P 1 0 1M" "write -P 2 8M 64k"
	qemu-img create -q -f raw src.raw 4M
	qemu-io -f raw -c "write -P 5 0 4M" src.raw >/dev/null
	qemu-img convert -c -O qcow2 src.raw zlib.qcow2
	qemu-img create -q -f qcow2 -o extended_l2=on extl2.qcow2 16M
	[ "$(qp base.qcow2 get l1_table_offset)" = $((0x30000)) ]
	# 0x8000000000040000 and 0x4000000000050000 (beyond bash arithmetic)
	[ "$(qp base.qcow2 l1 0)" = 9223372036855037952 ]
	[ "$(qp zlib.qcow2 l2 0)" = 4611686018427715584 ]
) >"$T/setup.log" 2>&1
if [ $? -ne 0 ]; then
	not_ok "$P/setup" "making the images with qemu failed, or their layout changed" \
		"$T/setup.log"
	e2e_finish
fi

# ---- the damage table ---------------------------------------------------
#   case                     base         info check read  patch
bad truncated-header         base.qcow2   "e e e"  truncate 50
bad truncated-in-l2          base.qcow2   "a c a"  truncate $((0x40000 + 100))
bad truncated-data           base.qcow2   "a c a"  truncate 500000
bad bad-magic                base.qcow2   "e e e"  set magic 0x51464900
bad version-1                base.qcow2   "e e e"  set version 1
bad version-4                base.qcow2   "e e e"  set version 4
bad header-length-90         base.qcow2   "e e e"  set header_length 90
bad header-length-1M         base.qcow2   "e e e"  set header_length $M
bad cluster-bits-8           base.qcow2   "e e e"  set cluster_bits 8
bad cluster-bits-22          base.qcow2   "e e e"  set cluster_bits 22
bad cluster-bits-31          base.qcow2   "e e e"  set cluster_bits 31
bad extl2-cluster-bits-12    extl2.qcow2  "e e e"  set cluster_bits 12
bad refcount-order-7         base.qcow2   "e e e"  set refcount_order 7
bad size-2^63                base.qcow2   "e e e"  set size 0x8000000000000000
bad size-2^63-512            base.qcow2   "e e e"  set size 0x7ffffffffffffe00
bad l1-size-huge             base.qcow2   "e e e"  set l1_size 0x7fffffff
bad l1-size-0                base.qcow2   "e e e"  set l1_size 0
bad l1-unaligned             base.qcow2   "e e e"  set l1_table_offset 0x30008
bad reftable-unaligned       base.qcow2   "e e e"  set refcount_table_offset 0x10008
bad reftable-clusters-huge   base.qcow2   "e e e"  set refcount_table_clusters 0x7fffffff
bad snapshots-huge           base.qcow2   "e e e"  set nb_snapshots 0x7fffffff \
	set snapshots_offset 0x70000
bad backing-name-5000        base.qcow2   "e e e"  set backing_file_offset 0x1000 \
	set backing_file_size 5000
bad backing-offset-beyond    base.qcow2   "e e e"  set backing_file_offset 0x10000000 \
	set backing_file_size 10
bad compression-type-9       base.qcow2   "e e e"  setbit incompatible_features 3 \
	set compression_type 9
bad compression-type-no-bit  base.qcow2   "e e e"  set compression_type 1
bad crypt-aes                base.qcow2   "a a e"  set crypt_method 1
bad corrupt-bit              base.qcow2   "a a a"  setbit incompatible_features 1
bad l1-beyond-eof            base.qcow2   "a c a"  set l1_table_offset 0x10000000000
bad reftable-beyond-eof      base.qcow2   "a c a"  set refcount_table_offset 0x10000000000
bad l1-into-header           base.qcow2   "a c a"  set l1_table_offset 0
bad l1-entry-beyond-eof      base.qcow2   "a c a"  l1 0 0x8000001000000000
bad l2-into-reftable         base.qcow2   "a c a"  l2 0 0x8000000000010000
bad l2-into-l1               base.qcow2   "a c a"  l2 0 0x8000000000030000
bad l2-into-itself           base.qcow2   "a c a"  l2 $M 0x8000000000040000
bad l2-unaligned             base.qcow2   "a c e"  l2 0 0x8000000000050200
bad l2-beyond-eof            base.qcow2   "a c a"  l2 0 0x8000001000000000
bad reftable-self            base.qcow2   "a c a"  reftable 0 0x10000
bad reftable-entry-0         base.qcow2   "a c a"  reftable 0 0
bad reftable-into-data       base.qcow2   "a c a"  reftable 0 0x50000
bad snapshot-table-beyond    base.qcow2   "a c a"  set nb_snapshots 1 \
	set snapshots_offset 0x10000000000
bad compressed-beyond-eof    zlib.qcow2   "a c e"  l2 0 0x4000001000000000
bad compressed-garbage       zlib.qcow2   "a a e"  poke 0x50000 \
	ffffffffffffffffffffffffffffffffffffffffffffffffffff

# An unknown incompatible feature bit: refused, and the message names it
# (as a bit number or as qemu's mask, 0x400).
bad unknown-incompat-bit     base.qcow2   "e e e"  setbit incompatible_features 10
if [ -s "$T/unknown-incompat-bit/read.err" ]; then
	if grep -qiE '\b10\b|0x0*400\b|\b400\b' "$T/unknown-incompat-bit/read.err"; then
		ok "$P/unknown-incompat-bit/message"
	else
		not_ok "$P/unknown-incompat-bit/message" \
			"the message does not name bit 10:" \
			"$T/unknown-incompat-bit/read.err"
	fi
fi

# Backing chains that never end, and one that ends nowhere.
(
	set -e
	cd "$T"
	mkdir -p loop self missing
	qemu-img create -q -f qcow2 loop/a.qcow2 16M
	qemu-img create -q -f qcow2 -b a.qcow2 -F qcow2 loop/b.qcow2
	qemu-img rebase -u -b b.qcow2 -F qcow2 loop/a.qcow2
	cp loop/a.qcow2 loop/img.qcow2
	qemu-img rebase -u -b a.qcow2 -F qcow2 loop/img.qcow2
	qemu-img create -q -f qcow2 self/img.qcow2 16M
	qemu-img rebase -u -b img.qcow2 -F qcow2 self/img.qcow2
	qemu-img create -q -u -f qcow2 -b nowhere.qcow2 -F qcow2 \
		missing/img.qcow2 16M
) >"$T/chains.log" 2>&1
if [ $? -ne 0 ]; then
	not_ok "$P/backing-chains/setup" "$T/chains.log"
else
	tools_on backing-loop "$T/loop" a a e
	tools_on backing-self "$T/self" a a e
	tools_on backing-missing "$T/missing" a a e
fi

# ---- what a writer must do ------------------------------------------------

# oracle_ok CASE IMAGE MODEL: qemu-img check clean and compare identical.
oracle_ok() {
	local name=$1 img=$2 model=$3
	if ! oracle_check "$img" "$T/$name.check"; then
		not_ok "$P/$name" "$T/$name.check"
	elif ! oracle_compare "$img" "$model" "$T/$name.compare"; then
		not_ok "$P/$name" "$T/$name.compare"
	else
		return 0
	fi
	return 1
}

# stress_on CASE IMAGE ARGS...: qcow-stress on an existing image, with its
# content from qemu-img convert as the model.
stress_on() {
	local name=$1 img=$2
	shift 2
	qemu-img convert -U -O raw "$img" "$img.model" &&
		limited "$T/$name.stress" qcow-stress "$@" "$img" "$img.model"
}

if ! have_cmd qcow-stress; then
	not_ok "$P/writers" "qcow-stress is not built"
	e2e_finish
fi

# Unknown autoclear bits are cleared by a read-write open (qemu iotest
# 196); known bit 0 goes too, since there are no bitmaps.
d=$T/autoclear
mkdir -p "$d"
cp "$T/base.qcow2" "$d/img.qcow2"
qp "$d/img.qcow2" setbit autoclear_features 5 setbit autoclear_features 63
if ! stress_on autoclear "$d/img.qcow2" --ops 30 --seed 7; then
	not_ok "$P/autoclear-cleared" "qcow-stress failed" "$T/autoclear.stress.err"
elif [ "$(qp "$d/img.qcow2" get autoclear_features)" != 0 ]; then
	not_ok "$P/autoclear-cleared" \
		"autoclear_features is $(qp "$d/img.qcow2" get autoclear_features) after a read-write open"
elif oracle_ok autoclear-cleared "$d/img.qcow2" "$d/img.qcow2.model"; then
	ok "$P/autoclear-cleared"
fi

# Unknown header extensions survive a header rewrite (qemu iotest 031),
# here a resize, and so does the backing file name moved behind them.
d=$T/extension
mkdir -p "$d"
(
	set -e
	cd "$d"
	cp "$T/base.qcow2" backing.qcow2
	qemu-img create -q -f qcow2 -b backing.qcow2 -F qcow2 img.qcow2
	qio img.qcow2 "write -P 9 4M 100k"
	qp img.qcow2 addext 0x12345678 0123456789abcdeffedcba98 \
		addext 0x7fff0001 55
	qp img.qcow2 exts | grep -v '^6803f857' >exts.before
	qemu-img convert -O raw backing.qcow2 backing.raw
) >"$d/setup.log" 2>&1
if [ $? -ne 0 ]; then
	not_ok "$P/extension-kept/setup" "$d/setup.log"
elif ! stress_on extension "$d/img.qcow2" --grow $((20 * M)) --ops 20 \
    --seed 8 --backing-raw "$d/backing.raw"; then
	not_ok "$P/extension-kept" "qcow-stress failed" "$T/extension.stress.err"
elif ! qp "$d/img.qcow2" exts | grep -v '^6803f857' >"$d/exts.after" ||
    ! cmp -s "$d/exts.before" "$d/exts.after"; then
	not_ok "$P/extension-kept" "header extensions changed:" \
		"$d/exts.before" "after:" "$d/exts.after"
elif [ "$(img_size "$d/img.qcow2")" -lt $((20 * M)) ]; then
	not_ok "$P/extension-kept" "the resize did not happen"
elif [ "$(qemu-img info -U --output=json "$d/img.qcow2" |
	  jq -r '."backing-filename"')" != backing.qcow2 ]; then
	not_ok "$P/extension-kept" "the backing file name changed:" \
		"$(qemu-img info -U "$d/img.qcow2" 2>&1)"
elif oracle_ok extension-kept "$d/img.qcow2" "$d/img.qcow2.model"; then
	ok "$P/extension-kept"
fi

# An image marked corrupt is never written (except by a repair).
d=$T/corrupt-rw
mkdir -p "$d"
cp "$T/base.qcow2" "$d/img.qcow2"
qp "$d/img.qcow2" setbit incompatible_features 1
cp "$d/img.qcow2" "$d/before.qcow2"
stress_on corrupt-rw "$d/img.qcow2" --fill-range 0 4096
rc=$?
if [ "$rc" -ne 1 ] || [ ! -s "$T/corrupt-rw.stress.err" ]; then
	not_ok "$P/corrupt-not-written" \
		"a write to an image marked corrupt: exit $rc, expected a clear error" \
		"$T/corrupt-rw.stress.err"
elif ! cmp -s "$d/img.qcow2" "$d/before.qcow2"; then
	not_ok "$P/corrupt-not-written" "the image file changed"
else
	ok "$P/corrupt-not-written"
fi

# A write that would land on metadata (L2 entry pointing at the refcount
# table, marked COPIED) must not overwrite it.
d=$T/overlap-rw
mkdir -p "$d"
cp "$T/base.qcow2" "$d/img.qcow2"
qp "$d/img.qcow2" l2 0 0x8000000000010000
reftable_before=$(qp "$d/img.qcow2" reftable 0 reftable 1)
stress_on overlap-rw "$d/img.qcow2" --fill-range 0 65536
rc=$?
if [ "$rc" -ge 128 ] || [ "$rc" -eq 124 ]; then
	not_ok "$P/overlap-not-written" "qcow-stress crashed or hung (exit $rc)" \
		"$T/overlap-rw.stress.err"
elif [ "$(qp "$d/img.qcow2" reftable 0 reftable 1)" != "$reftable_before" ]; then
	not_ok "$P/overlap-not-written" \
		"the refcount table was overwritten by guest data (exit $rc)" \
		"$T/overlap-rw.stress.err"
else
	ok "$P/overlap-not-written"
fi

# A lazy-refcounts image left dirty by a crashed qemu: a read-write open
# rebuilds its refcounts; then it must be clean and hold qemu's content.
d=$T/dirty
mkdir -p "$d"
(
	set -e
	cd "$d"
	qemu-img create -q -f qcow2 -o lazy_refcounts=on,cluster_size=4k \
		img.qcow2 16M
	qio img.qcow2 "write -P 3 0 3M"
	qemu-io -f qcow2 -c "write -P 4 5M 1M" -c "write -P 5 1M 8k" \
		-c "discard 2M 64k" -c abort img.qcow2 >qio.log 2>&1 || true
	[ "$(qp img.qcow2 get incompatible_features)" = 1 ]
) >"$d/setup.log" 2>&1
if [ $? -ne 0 ]; then
	not_ok "$P/lazy-dirty-repaired/setup" "$d/setup.log"
elif ! stress_on lazy-dirty "$d/img.qcow2" --ops 100 --seed 9; then
	not_ok "$P/lazy-dirty-repaired" "qcow-stress failed" "$T/lazy-dirty.stress.err"
elif oracle_ok lazy-dirty-repaired "$d/img.qcow2" "$d/img.qcow2.model"; then
	ok "$P/lazy-dirty-repaired"
fi

e2e_finish
