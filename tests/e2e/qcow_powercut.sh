#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Power-cut test: qcow-powercut records every write, hole punch, truncate
# and flush libqcow makes to the image file during a seeded random
# workload, then rebuilds the file as a power cut after many points of
# that log would leave it (unflushed writes dropped or reordered, torn
# into sectors in some configurations). Each state must pass `qemu-img
# check` (leaks allowed, and repaired by `-r leaks`; a dirty lazy-refcounts
# image must be repaired clean by `-r all`) and libqcow must read back
# every guest write that was flushed before the cut. One case per
# configuration; a failure shows the first failing cut in detail, and the
# file of that cut stays in the scratch directory with UNIKIT_E2E_KEEP=1.
# Setup runs in "(set -e; ...)" subshells whose status is read from $?
# afterwards: inside an if condition errexit would be off.
# shellcheck disable=SC2181
set -u
. "$(dirname "$0")/lib.sh"
e2e_init qcow-powercut

P=qcow-powercut
OPS=${QCOW_POWERCUT_OPS:-120}
CUTS=${QCOW_POWERCUT_CUTS:-100}
E2E_DETAIL_LINES=80

# powercut NAME QCOW-POWERCUT-ARGS...
powercut() {
	local name=$1 d=$T/$1
	shift
	mkdir -p "$d"
	if ! have_cmd qcow-powercut; then
		not_ok "$P/$name" "qcow-powercut is not built"
		return
	fi
	if timeout 600 qcow-powercut --ops "$OPS" --cuts "$CUTS" --variants 2 \
	    "$@" "$d" >"$d/log" 2>&1; then
		ok "$P/$name"
		sed 's/^/# /' "$d/log" | tail -n 1
	else
		not_ok "$P/$name" \
			"qcow-powercut --ops $OPS --cuts $CUTS --variants 2 $* DIR" \
			"$d/log"
	fi
}

(set -e; cd "$T"
 qemu-img create -q -f qcow2 -o cluster_size=4k base.qcow2 8M
 fill base.qcow2 201 30 4096
 qemu-img convert -O raw base.qcow2 base.qcow2.raw) >"$T/setup.log" 2>&1
if [ $? -ne 0 ]; then
	not_ok "$P/setup" "making the backing file with qemu failed" \
		"$T/setup.log"
	e2e_finish
fi

# The harness must be able to fail: with a quarter of the flushed writes
# thrown away, some cut has to be reported.
if have_cmd qcow-powercut; then
	mkdir -p "$T/sabotage"
	if qcow-powercut --ops 40 --cuts 20 --sabotage "$T/sabotage" \
	    >"$T/sabotage/log" 2>&1; then
		not_ok "$P/harness-detects-lost-writes" \
			"qcow-powercut --sabotage passed: the checks see nothing" \
			"$T/sabotage/log"
	elif grep -q 'FAIL at cut' "$T/sabotage/log"; then
		ok "$P/harness-detects-lost-writes"
	else
		not_ok "$P/harness-detects-lost-writes" \
			"qcow-powercut --sabotage failed without a cut report" \
			"$T/sabotage/log"
	fi
fi

powercut v3-c64k --seed 1
powercut v3-c4k-r1-torn --seed 2 --cluster-size 4096 --refcount-bits 1 \
	--torn --variants 3
powercut v3-c64k-lazy --seed 3 --lazy
powercut v3-c4k-lazy-torn --seed 4 --lazy --cluster-size 4096 \
	--torn --variants 3
powercut v2-c4k-backing --seed 5 --version 2 --cluster-size 4096 \
	--backing "$T/base.qcow2" --backing-fmt qcow2 \
	--backing-raw "$T/base.qcow2.raw"
powercut v3-c512-r64 --seed 6 --cluster-size 512 --refcount-bits 64 \
	--size 2M

e2e_finish
