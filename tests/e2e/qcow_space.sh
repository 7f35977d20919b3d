#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Space comes back: the Docker.qcow2 complaint (docker/for-mac#371).
#   1. A 256 MiB image made by libqcow (qcow-stress) is filled with random
#      data; then half of it is released through libqcow: a quarter by
#      discard, a quarter by write-zeroes with QCOW_ZERO_MAY_UNMAP. The
#      blocks the file occupies (stat %b) must drop by at least 40%.
#   2. `qcow-tool compact` must then shorten the file (to at most 60% of
#      its length, as half the data is gone) without occupying more blocks.
#   3. A second image gets zero-filled buffers written over half of its
#      data (plain writes, not write-zeroes); `qcow-tool discard` (or the
#      library's own zero detection) must release that space too.
# After each step the oracle checks the image: `qemu-img check` exit 0 with
# no leaks, `qemu-img compare` identical to qcow-stress's model. The
# compacted image must also take new random writes and stay consistent.
set -u
. "$(dirname "$0")/lib.sh"
e2e_init qcow-space

P=qcow-space
M=$((1024 * 1024))

for prog in qcow-stress qcow-tool; do
	if ! have_cmd "$prog"; then
		not_ok "$P/$prog" "$prog is not built"
		e2e_finish
	fi
done

# Can this file system punch holes? Otherwise nothing can come back.
if ! (cd "$T" && head -c $M /dev/urandom >probe && sync &&
      fallocate -p -o 0 -l $M probe 2>/dev/null); then
	skip "$P/all" "the file system under $T cannot punch holes"
	e2e_finish
fi

blocks() {
	echo $(($(stat -c '%b * %B' "$1")))
}
length() {
	stat -c %s "$1"
}

# verify NAME IMAGE MODEL: the oracle's verdict, as one test case.
verify() {
	local name=$1 img=$2 model=$3
	if ! oracle_check "$img" "$T/$name.check"; then
		not_ok "$P/$name" "$T/$name.check"
	elif ! oracle_compare "$img" "$model" "$T/$name.compare"; then
		not_ok "$P/$name" "$T/$name.compare"
	else
		ok "$P/$name"
	fi
}

# stress NAME ARGS...: qcow-stress, one test case.
stress() {
	local name=$1
	shift
	if qcow-stress "$@" >"$T/$name.log" 2>&1; then
		ok "$P/$name"
	else
		not_ok "$P/$name" "qcow-stress $* failed" "$T/$name.log"
		e2e_finish
	fi
}

cd "$T" || exit 1
stress fill --seed 1 --size 256M --cluster-size 64k --fill-range 0 256M \
	img.qcow2 model.raw
sync img.qcow2
full=$(blocks img.qcow2)
verify filled img.qcow2 model.raw

stress release --discard-range 0 64M --zero-unmap-range 64M 64M \
	img.qcow2 model.raw
sync img.qcow2
released=$(blocks img.qcow2)
if [ $((released * 10)) -le $((full * 6)) ]; then
	ok "$P/released-space-returns"
else
	not_ok "$P/released-space-returns" \
		"allocated $full bytes when full, $released after releasing half" \
		"(expected at most 60%)"
fi
verify released img.qcow2 model.raw

len_before=$(length img.qcow2)
if qcow-tool compact img.qcow2 >compact.log 2>&1; then
	ok "$P/compact-runs"
else
	not_ok "$P/compact-runs" "qcow-tool compact failed" compact.log
fi
sync img.qcow2
len_after=$(length img.qcow2)
compacted=$(blocks img.qcow2)
if [ $((len_after * 10)) -le $((len_before * 6)) ]; then
	ok "$P/compact-shortens"
else
	not_ok "$P/compact-shortens" \
		"file length $len_before before compact, $len_after after" \
		"(expected at most 60%: half the data is gone)"
fi
if [ "$compacted" -le "$released" ]; then
	ok "$P/compact-no-growth"
else
	not_ok "$P/compact-no-growth" \
		"allocated $released bytes before compact, $compacted after"
fi
verify compacted img.qcow2 model.raw

# The compacted image keeps working.
stress after-compact --seed 2 --ops 300 img.qcow2 model.raw
verify after-compact-consistent img.qcow2 model.raw

# Zero data written as ordinary writes, then `qcow-tool discard`.
stress zero-fill --seed 3 --size 64M --fill-range 0 64M \
	--fill-zero-range 0 32M zeros.qcow2 zeros.raw
sync zeros.qcow2
before=$(blocks zeros.qcow2)
if qcow-tool discard zeros.qcow2 >discard.log 2>&1; then
	ok "$P/discard-runs"
else
	not_ok "$P/discard-runs" "qcow-tool discard failed" discard.log
fi
sync zeros.qcow2
after=$(blocks zeros.qcow2)
# 32 MiB of the 64 MiB are zeros: at most ~60% of a full image may remain.
if [ "$after" -le $((64 * M * 6 / 10)) ]; then
	ok "$P/zero-data-space-returns"
else
	not_ok "$P/zero-data-space-returns" \
		"allocated $before bytes before qcow-tool discard, $after after," \
		"for 32 MiB of data left (expected at most 60% of 64 MiB)"
fi
verify zero-data zeros.qcow2 zeros.raw

e2e_finish
