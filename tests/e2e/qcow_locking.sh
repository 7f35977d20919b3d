#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Locking interoperability with qemu: libqcow must take the same fcntl
# byte-range locks as qemu's file driver, so that qemu and our tools
# exclude each other from an image in use.
#   our writer holding an image (qcow-stress --hold): qemu-io must fail to
#     get the "write" lock; qemu-img info must fail without -U and work
#     with -U; a second writer of ours must fail too;
#   qemu-io holding an image for writing: our read-write opens (qcow-stress,
#     qcow-tool resize) must fail with a message about the lock, our
#     read-only open without -U (qcow-tool info) must fail like qemu-img
#     info, and qcow-tool info -U must work;
#   after either writer exits, the other side can write again.
set -u
. "$(dirname "$0")/lib.sh"
e2e_init qcow-locking

P=qcow-locking

# wait_for CONDITION-COMMAND...: poll for up to 10 s.
wait_for() {
	local i
	for i in $(seq 100); do
		"$@" && return 0
		sleep 0.1
	done
	return 1
}

# expect_fail NAME PATTERN COMMAND...: COMMAND must exit 1..127 with
# PATTERN (extended regexp, case-insensitive) in its output.
expect_fail() {
	local name=$1 pattern=$2 rc=0
	shift 2
	timeout 20 "$@" >"$T/out" 2>&1 || rc=$?
	if [ "$rc" -eq 0 ]; then
		not_ok "$P/$name" "succeeded, expected a lock error: $*" "$T/out"
	elif [ "$rc" -ge 124 ]; then
		not_ok "$P/$name" "hung or crashed (exit $rc): $*" "$T/out"
	elif ! grep -qiE "$pattern" "$T/out"; then
		not_ok "$P/$name" "failed (exit $rc) without naming the lock: $*" \
			"$T/out"
	else
		ok "$P/$name"
	fi
}

for prog in qcow-stress qcow-tool; do
	if ! have_cmd "$prog"; then
		not_ok "$P/$prog" "$prog is not built"
		e2e_finish
	fi
done

# ---- libqcow holds the image ----------------------------------------------
cd "$T" || exit 1
qcow-stress --size 16M --fill-range 0 1M --hold 60 ours.qcow2 ours.raw \
	>holder.out 2>&1 &
holder=$!
if ! wait_for grep -q '^ready' holder.out; then
	not_ok "$P/ours-holds" "qcow-stress --hold did not get ready" holder.out
	kill "$holder" 2>/dev/null
	e2e_finish
fi

expect_fail qemu-io-write-refused 'Failed to get "write" lock' \
	qemu-io -f qcow2 -c 'write 0 4k' ours.qcow2
expect_fail qemu-img-info-refused 'lock' qemu-img info ours.qcow2
check "$P/qemu-img-info-U-works" qemu-img info -U ours.qcow2
expect_fail ours-second-writer-refused 'lock' \
	qcow-stress --ops 1 ours.qcow2 ours.raw
check "$P/qcow-tool-info-U-works-beside-ours" qcow-tool info -U ours.qcow2

# SIGTERM ends the hold; qcow-stress then closes the image cleanly.
kill -TERM "$holder"
if wait "$holder"; then
	ok "$P/ours-closes"
else
	not_ok "$P/ours-closes" "qcow-stress --hold failed" holder.out
fi
check "$P/qemu-io-writes-after-ours-exit" \
	qemu-io -f qcow2 -c 'write -P 7 0 4k' ours.qcow2
check "$P/qemu-img-check-after-ours" qemu-img check ours.qcow2

# ---- qemu holds the image -------------------------------------------------
qemu-img create -q -f qcow2 theirs.qcow2 16M
mkfifo cmds
qemu-io -f qcow2 theirs.qcow2 <cmds >qemu-io.out 2>&1 &
qemu_pid=$!
exec 3>cmds
echo "write -P 5 0 64k" >&3
if ! wait_for bash -c '! qemu-img info theirs.qcow2 >/dev/null 2>&1'; then
	not_ok "$P/qemu-holds" "qemu-io did not take its locks" qemu-io.out
else
	qemu-img convert -U -O raw theirs.qcow2 theirs.raw
	expect_fail ours-writer-refused 'lock' \
		qcow-stress --ops 1 theirs.qcow2 theirs.raw
	expect_fail qcow-tool-resize-refused 'lock' \
		qcow-tool resize theirs.qcow2 +1M
	expect_fail qcow-tool-info-refused 'lock' qcow-tool info theirs.qcow2
	check "$P/qcow-tool-info-U-works" qcow-tool info -U theirs.qcow2
	check "$P/qcow-tool-check-U-works" qcow-tool check -U theirs.qcow2
	check "$P/qemu-img-info-U-works-beside-qemu" qemu-img info -U theirs.qcow2
fi
echo quit >&3
exec 3>&-
wait "$qemu_pid"

# qemu-io quit: its locks are gone, we can write.
qemu-img convert -U -O raw theirs.qcow2 theirs.raw
check "$P/ours-writes-after-qemu-exit" \
	qcow-stress --ops 50 --seed 3 theirs.qcow2 theirs.raw

e2e_finish
