# SPDX-License-Identifier: MIT
#
# Shared helpers for the end-to-end scripts (sourced, not run).
#
# Each script prints one line per test case, "ok NAME" or "not ok NAME"
# (a skip is "ok NAME # skip why"), with details of a failure as "# ..."
# comment lines below it, and exits non-zero if any case failed. The test
# runner puts $UNIKIT_BUILD/bin and $UNIKIT_BUILD/tests/bin on PATH; run by
# hand, the scripts find ./build from the repository root themselves.
# Scratch files live in a directory under /tmp removed on exit; set
# UNIKIT_E2E_KEEP=1 to keep it (its path is printed) for debugging.

E2E_FAILED=0
E2E_PASSED=0

e2e_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
: "${UNIKIT_BUILD:=$e2e_root/build}"
export UNIKIT_BUILD
PATH=$UNIKIT_BUILD/bin:$UNIKIT_BUILD/tests/bin:$PATH

# The Python interpreter itself, not a version manager's shim in front of
# it (a pyenv shim costs half a second per call, and some tests call the
# header patcher dozens of times).
PYTHON=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null)
[ -x "$PYTHON" ] || PYTHON=python3

# e2e_init NAME: make the scratch directory $T and arrange its removal.
e2e_init() {
	T=$(mktemp -d "${TMPDIR:-/tmp}/unikit-$1.XXXXXX")
	trap e2e_cleanup EXIT
	trap 'exit 130' INT TERM
}

e2e_cleanup() {
	local pid
	for pid in $(jobs -p); do
		kill "$pid" 2>/dev/null
	done
	wait 2>/dev/null
	if [ -n "${UNIKIT_E2E_KEEP:-}" ]; then
		echo "# scratch files kept in $T" >&2
	else
		rm -rf "$T"
	fi
}

ok() {
	echo "ok $1"
	E2E_PASSED=$((E2E_PASSED + 1))
}

skip() {
	echo "ok $1 # skip $2"
}

# not_ok NAME [DETAIL_FILE_OR_TEXT...]: report a failure; each further
# argument is a file whose first lines are shown, or a line of text.
not_ok() {
	local name=$1 arg
	shift
	echo "not ok $name"
	for arg in "$@"; do
		if [ -f "$arg" ]; then
			head -n "${E2E_DETAIL_LINES:-15}" "$arg" | sed 's/^/#   /'
		else
			printf '%s\n' "$arg" | sed 's/^/# /'
		fi
	done
	E2E_FAILED=$((E2E_FAILED + 1))
}

# check NAME COMMAND...: ok if the command succeeds, else not ok with its
# output.
check() {
	local name=$1
	shift
	local out=$T/.check.$BASHPID.out
	if "$@" >"$out" 2>&1; then
		ok "$name"
	else
		not_ok "$name" "command failed (exit $?): $*" "$out"
	fi
}

# Independent cases can run side by side: e2e_spawn ID COMMAND... runs
# COMMAND (which prints ok/not ok lines) in the background, at most
# E2E_JOBS at a time; e2e_collect waits for them and prints their output
# in the order they were queued, counting the verdicts.
E2E_JOBS=${E2E_JOBS:-$(nproc 2>/dev/null || echo 1)}
E2E_QUEUE=()
E2E_PIDS=()

# Only the spawned jobs are waited for, never daemons a script started in
# the background itself (a server that lives until the script ends).
e2e_spawn() {
	local id=${1//\//_} pid running
	shift
	for (( ; ; )); do
		running=0
		for pid in "${E2E_PIDS[@]}"; do
			kill -0 "$pid" 2>/dev/null && running=$((running + 1))
		done
		((running < E2E_JOBS)) && break
		sleep 0.05
	done
	E2E_QUEUE+=("$id")
	("$@") >"$T/.spawn.$id" 2>&1 &
	E2E_PIDS+=($!)
}

e2e_collect() {
	local id f pid
	for pid in "${E2E_PIDS[@]}"; do
		wait "$pid" 2>/dev/null
	done
	E2E_PIDS=()
	for id in "${E2E_QUEUE[@]}"; do
		f=$T/.spawn.$id
		cat "$f"
		E2E_PASSED=$((E2E_PASSED + $(grep -v '# skip' "$f" | grep -c '^ok ')))
		E2E_FAILED=$((E2E_FAILED + $(grep -c '^not ok ' "$f")))
	done
	E2E_QUEUE=()
}

e2e_finish() {
	if [ "$E2E_FAILED" -ne 0 ]; then
		echo "# $E2E_FAILED failed, $E2E_PASSED passed"
		exit 1
	fi
	echo "# $E2E_PASSED passed"
	exit 0
}

# have_cmd NAME: is the program on PATH?
have_cmd() {
	command -v "$1" >/dev/null 2>&1
}

# qio IMAGE QEMU-IO-COMMAND...: run qemu-io commands on a qcow2 image
# (cache=unsafe, every command in one process); fails if any command did.
qio() {
	local img=$1 out
	shift
	local args=()
	local c
	for c in "$@"; do
		args+=(-c "$c")
	done
	if ! out=$(qemu-io -t unsafe -f qcow2 "${args[@]}" "$img" 2>&1) ||
	    grep -qiE 'failed|error|invalid' <<<"$out"; then
		echo "qemu-io on $img failed: $out" >&2
		return 1
	fi
}

# img_size IMAGE: virtual size according to qemu-img.
img_size() {
	qemu-img info -U --output=json "$1" 2>/dev/null | jq -r '."virtual-size"'
}

# map_json_normal FILE: qemu-img map JSON in one canonical form.
map_json_normal() {
	jq -S -c '.[]' "$1"
}

# compare_maps IMAGE OUTFILE: does `qcow-tool map --output=json` agree
# with `qemu-img map --output=json`? Differences go to OUTFILE.
compare_maps() {
	local img=$1 out=$2
	if ! have_cmd qcow-tool; then
		echo "qcow-tool is not built" >"$out"
		return 1
	fi
	if ! qemu-img map -U --output=json "$img" >"$out.qemu" 2>"$out"; then
		echo "qemu-img map failed" >>"$out"
		return 1
	fi
	if ! qcow-tool map --output=json "$img" >"$out.ours" 2>>"$out"; then
		echo "qcow-tool map --output=json $img failed" >>"$out"
		return 1
	fi
	if ! map_json_normal "$out.ours" >"$out.ours.n" 2>>"$out"; then
		echo "qcow-tool map output is not JSON:" >>"$out"
		head -c 600 "$out.ours" >>"$out"
		return 1
	fi
	map_json_normal "$out.qemu" >"$out.qemu.n"
	if ! diff "$out.qemu.n" "$out.ours.n" >"$out.diff"; then
		{
			echo "map differs (< qemu-img, > qcow-tool):"
			head -n 12 "$out.diff"
		} >"$out"
		return 1
	fi
}

# oracle_check IMAGE OUTFILE: qemu-img check must exit 0 and report no
# leaks or corruptions.
oracle_check() {
	local img=$1 out=$2 rc=0
	qemu-img check -U -f qcow2 "$img" >"$out" 2>&1 || rc=$?
	if [ "$rc" -ne 0 ]; then
		sed -i "1i qemu-img check $img: exit $rc" "$out"
		return 1
	fi
}

# oracle_compare IMAGE RAW OUTFILE: same virtual size, same content.
oracle_compare() {
	local img=$1 raw=$2 out=$3 size rsize
	size=$(img_size "$img")
	rsize=$(stat -c %s "$raw")
	if [ "$size" != "$rsize" ]; then
		echo "virtual size $size, model has $rsize bytes" >"$out"
		return 1
	fi
	if ! qemu-img compare -U -f qcow2 -F raw "$img" "$raw" >"$out" 2>&1; then
		sed -i "1i qemu-img compare $img $raw:" "$out"
		return 1
	fi
}

# make_patterns: pattern files $T/pat0..3 for qemu-io `write -s`; seeded,
# so every run writes the same bytes; odd lengths, so neighbouring writes
# never line up.
make_patterns() {
	"$PYTHON" - "$T" <<'EOF'
import random, sys
random.seed(20240601)
for i, n in enumerate([997, 4093, 65521, 300007]):
    open(f"{sys.argv[1]}/pat{i}", "wb").write(random.randbytes(n))
EOF
}

# fill_cmds SEED COUNT SIZE GRAIN: print COUNT seeded qemu-io commands over
# [0, SIZE): writes of pattern-file data or -P bytes at unaligned, sector-
# or GRAIN-aligned offsets with lengths up to 512 KiB, write -z with and
# without -u, and discard.
fill_cmds() {
	local seed=$1 count=$2 size=$3 grain=$4 i off len data
	RANDOM=$seed
	for ((i = 0; i < count; i++)); do
		off=$(((RANDOM * 32768 + RANDOM) % size))
		case $((RANDOM % 4)) in
		0) off=$((off / grain * grain)) ;;
		1) off=$((off / 512 * 512)) ;;
		esac
		case $((RANDOM % 4)) in
		0) len=$((RANDOM % 4096 + 1)) ;;
		1) len=$(((RANDOM % 4 + 1) * grain)) ;;
		2) len=$((RANDOM % 70000 + 1)) ;;
		*) len=$(((RANDOM % 512 + 1) * 1024)) ;;
		esac
		((off + len > size)) && len=$((size - off))
		if ((RANDOM % 2)); then
			data="-s $T/pat$((RANDOM % 4))"
		else
			data="-P $((RANDOM % 255 + 1))"
		fi
		case $((RANDOM % 10)) in
		[0-5]) echo "write $data $off $len" ;;
		6) echo "write -z $off $len" ;;
		7) echo "write -z -u $off $len" ;;
		*) echo "discard $off $len" ;;
		esac
	done
}

# fill IMAGE SEED [COUNT [GRAIN [FMT]]]: run fill_cmds on an image.
fill() {
	local img=$1 seed=$2 count=${3:-40} grain=${4:-65536} fmt=${5:-qcow2}
	local size cmds=() c args=() out
	[ -f "$T/pat0" ] || make_patterns
	size=$(qemu-img info -U -f "$fmt" --output=json "$img" |
	       jq -r '."virtual-size"')
	mapfile -t cmds < <(fill_cmds "$seed" "$count" "$size" "$grain")
	for c in "${cmds[@]}"; do
		args+=(-c "$c")
	done
	if ! out=$(qemu-io -t unsafe -f "$fmt" "${args[@]}" "$img" 2>&1) ||
	    grep -qiE 'failed|error|invalid' <<<"$out"; then
		echo "qemu-io fill of $img failed: $out" >&2
		return 1
	fi
}
