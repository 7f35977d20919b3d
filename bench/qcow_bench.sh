#!/bin/bash
# SPDX-License-Identifier: MIT
#
# qcow_bench.sh: libqcow's I/O path side by side with qemu's.
#
# Runs `qemu-img bench` and `qcow-tool bench` with the same arguments on
# the same images in the same directory, plus `qemu-img bench -f raw` on a
# raw file as the ceiling, and prints one table: the median time of each
# (row, tool) pair and the ratios ours/qemu and ours/raw. Rows:
#
#   alloc-4k  4 KiB writes, one every MiB, into a fresh empty image: every
#             write allocates a cluster (and now and then an L2 table)
#   seq-1M    1 MiB sequential writes into a fresh empty image
#   read-4k   4 KiB reads spread over a fully allocated image
#
# each with cache none (O_DIRECT) and writeback, at queue depth 1 and 32.
# Runs of the three tools are interleaved, in an order rotated every
# repetition, so drift in the machine's speed hits all of them alike.
#
# Targets: ours/qemu <= 1.0 on every row, ours/raw <= 1.1 on read rows;
# a row that misses one is marked. The exit status is 0 whatever the
# numbers (this is a measurement, not a test); 1 on a usage or setup error.
#
# Usage: bench/qcow_bench.sh [--quick] [--reps N] [--dir DIR] [--cpus LIST]
#                            [--keep] [--verbose]
# Environment: QCOW_TOOL (default build/bin/qcow-tool), QEMU_IMG (qemu-img).
# See bench/README.md.

set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
qcow_tool=${QCOW_TOOL:-$root/build/bin/qcow-tool}
qemu_img=${QEMU_IMG:-qemu-img}

quick=0
reps=3
dir=
keep=0
verbose=0
cpus=

usage() {
	cat <<EOF
Usage: bench/qcow_bench.sh [--quick] [--reps N] [--dir DIR] [--cpus LIST]
                           [--keep] [--verbose]
  --quick      small counts and one run per row: a smoke test of a few seconds
  --reps N     runs per (row, tool), the median is shown (default 3)
  --dir DIR    where the images go (default /var/tmp; never tmpfs)
  --cpus LIST  run every benchmark under taskset -c LIST (less noise)
  --keep       keep the images and print where they are
  --verbose    print every run's time as it is measured
Environment: QCOW_TOOL (default build/bin/qcow-tool), QEMU_IMG (qemu-img).
EOF
	exit "${1:-1}"
}

while [ $# -gt 0 ]; do
	case $1 in
	--quick) quick=1 ;;
	--reps) reps=${2:?--reps needs a number}; shift ;;
	--dir) dir=${2:?--dir needs a directory}; shift ;;
	--cpus) cpus=${2:?--cpus needs a CPU list}; shift ;;
	--keep) keep=1 ;;
	--verbose) verbose=1 ;;
	-h|--help) usage 0 ;;
	*) echo "qcow_bench.sh: unknown argument $1" >&2; usage 1 ;;
	esac
	shift
done

# Request counts. The full run takes about three minutes on an idle
# 2-core VM (much longer on a loaded one); --quick takes a few seconds.
if [ "$quick" = 1 ]; then
	alloc_count=512	seq_count=32	read_count=2000	read_mib=64
	[ "$reps" = 3 ] && reps=1
else
	alloc_count=8192	seq_count=256	read_count=20000	read_mib=512
fi
alloc_step=$((1 << 20))			# one 4 KiB write per MiB
read_step=$(((1 << 20) + 4096))		# reads wrap around the image
# Writes carry a non-zero byte: with bench's default zero buffer, libqcow
# would store zero flags instead of data and the rows would not compare.
pattern=165

die() {
	echo "qcow_bench.sh: $*" >&2
	exit 1
}

if [ -n "$cpus" ]; then
	command -v taskset >/dev/null || die "--cpus needs taskset (util-linux)"
	taskset -c "$cpus" true || die "bad CPU list $cpus"
fi
command -v "$qemu_img" >/dev/null || die "$qemu_img not found (apt-get install qemu-utils)"
have_ours=1
if [ ! -x "$qcow_tool" ]; then
	echo "qcow_bench.sh: $qcow_tool not built; measuring qemu and raw only" >&2
	have_ours=0
fi

# O_DIRECT needs a real file system: never tmpfs.
if [ -z "$dir" ]; then
	for d in /var/tmp "$root"; do
		if [ "$(stat -f -c %T "$d")" != tmpfs ]; then
			dir=$d
			break
		fi
	done
	[ -n "$dir" ] || die "no non-tmpfs directory found; pass --dir"
fi
[ "$(stat -f -c %T "$dir")" != tmpfs ] || die "$dir is tmpfs; O_DIRECT needs a real file system"
work=$(mktemp -d "$dir/qcow-bench.XXXXXX")
if [ "$keep" = 0 ]; then
	trap 'rm -rf "$work"' EXIT
	trap 'exit 130' INT TERM
fi

# --- one measurement ------------------------------------------------------

# bench_time TOOL ARGS...: run one bench and print its seconds, or ERR.
bench_time() {
	local out
	if out=$("$@" 2>&1) &&
	   out=$(printf '%s\n' "$out" | sed -n 's/^Run completed in \([0-9.]*\) seconds\.$/\1/p') &&
	   [ -n "$out" ]; then
		printf '%s\n' "$out"
	else
		printf '%s\n' "$*: ${out:-failed}" >>"$work/errors"
		echo ERR
	fi
}

# tool_cmd WHO: the bench command of WHO (qemu, ours, raw).
tool_cmd() {
	local pin=
	[ -n "$cpus" ] && pin="taskset -c $cpus "
	case $1 in
	qemu) echo "$pin$qemu_img bench -f qcow2" ;;
	ours) echo "$pin$qcow_tool bench -f qcow2" ;;
	raw)  echo "$pin$qemu_img bench -f raw" ;;
	esac
}

# Images. Write rows get a fresh empty image per run, made by qemu-img for
# every tool so all start from identical bytes; read rows share one
# allocated image and its raw twin.
fresh_image() {	# WHO SIZE -> path
	local f
	rm -f "$work"/fresh.*
	if [ "$1" = raw ]; then
		f=$work/fresh.raw
		"$qemu_img" create -q -f raw "$f" "$2"
	else
		f=$work/fresh.qcow2
		"$qemu_img" create -q -f qcow2 "$f" "$2"
	fi
	echo "$f"
}

prepare_read_images() {
	local raw=$work/full.raw
	# Random, so no cluster is all zeros and none compresses.
	head -c "$((read_mib << 20))" /dev/urandom >"$raw"
	"$qemu_img" convert -f raw -O qcow2 "$raw" "$work/full.qcow2"
	sync
}

# measure ROW WHO: one run of row ROW with tool WHO; prints seconds.
measure() {
	local row=$1 who=$2 kind cache depth img cmd
	read -r kind cache depth <<<"$row"
	cmd=$(tool_cmd "$who")
	case $kind in
	alloc-4k)
		img=$(fresh_image "$who" "$((alloc_count * alloc_step))")
		sync
		# shellcheck disable=SC2086
		bench_time $cmd -w --pattern="$pattern" -c "$alloc_count" -d "$depth" -s 4096 \
			-S "$alloc_step" -t "$cache" "$img"
		;;
	seq-1M)
		img=$(fresh_image "$who" "$((seq_count << 20))")
		sync
		# shellcheck disable=SC2086
		bench_time $cmd -w --pattern="$pattern" -c "$seq_count" -d "$depth" -s 1M \
			-t "$cache" "$img"
		;;
	read-4k)
		if [ "$who" = raw ]; then img=$work/full.raw; else img=$work/full.qcow2; fi
		# shellcheck disable=SC2086
		bench_time $cmd -c "$read_count" -d "$depth" -s 4096 \
			-S "$read_step" -t "$cache" "$img"
		;;
	esac
	rm -f "$work"/fresh.*
	sync
}

# --- the run --------------------------------------------------------------

rows=()
for kind in alloc-4k seq-1M read-4k; do
	for cache in none writeback; do
		for depth in 1 32; do
			rows+=("$kind $cache $depth")
		done
	done
done

tools=(qemu raw)
[ "$have_ours" = 1 ] && tools=(qemu ours raw)

echo "qcow_bench.sh: ${#rows[@]} rows x ${#tools[@]} tools x $reps runs in $work" >&2
read -r load _ </proc/loadavg
if awk -v l="$load" 'BEGIN { exit !(l > 1.0) }'; then
	echo "qcow_bench.sh: load average $load: other work will add noise" >&2
fi
prepare_read_images
# Warm the page cache for the writeback read rows, for every tool alike.
cat "$work/full.raw" "$work/full.qcow2" >/dev/null

declare -A times	# "row|who" -> space-separated seconds
for ((rep = 0; rep < reps; rep++)); do
	for row in "${rows[@]}"; do
		for ((k = 0; k < ${#tools[@]}; k++)); do
			who=${tools[(k + rep) % ${#tools[@]}]}
			t=$(measure "$row" "$who")
			times["$row|$who"]+="$t "
			if [ "$verbose" = 1 ]; then
				printf '  %-24s %-4s %s\n' "$row" "$who" "$t" >&2
			fi
		done
	done
	echo "qcow_bench.sh: repetition $((rep + 1))/$reps done" >&2
done

# median "T1 T2 ...": the median of the numbers, or ERR if any failed.
median() {
	# shellcheck disable=SC2086
	printf '%s\n' $1 | sort -g | awk '
		/ERR/ { err = 1 } { v[NR] = $1 }
		END {
			if (err || NR == 0) { print "ERR"; exit }
			if (NR % 2) printf "%.3f\n", v[(NR + 1) / 2]
			else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2
		}'
}

# ratio A B: A/B to two decimals, or "-" when either is missing.
ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN {
		if (a !~ /^[0-9.]+$/ || b !~ /^[0-9.]+$/ || b + 0 == 0) print "-"
		else printf "%.2f\n", a / b }'
}

# over R LIMIT: true if ratio R exceeds LIMIT (a missing ratio is a miss).
over() {
	awk -v r="$1" -v l="$2" 'BEGIN { exit !(r == "-" || r + 0 > l + 0) }'
}

echo
printf '%-24s %9s %9s %9s %10s %9s  %s\n' row "qemu s" "ours s" "raw s" ours/qemu ours/raw target
misses=0
for row in "${rows[@]}"; do
	read -r kind cache depth <<<"$row"
	q=$(median "${times["$row|qemu"]}")
	r=$(median "${times["$row|raw"]}")
	if [ "$have_ours" = 1 ]; then
		o=$(median "${times["$row|ours"]}")
	else
		o=-
	fi
	oq=$(ratio "$o" "$q")
	orw=$(ratio "$o" "$r")
	missed=()
	if [ "$have_ours" = 1 ]; then
		if over "$oq" 1.0; then missed+=("ours/qemu>1.0"); fi
		if [ "$kind" = read-4k ] && over "$orw" 1.1; then
			missed+=("ours/raw>1.1")
		fi
	fi
	if [ "$have_ours" = 0 ]; then
		mark=-
	elif [ ${#missed[@]} -eq 0 ]; then
		mark=ok
	else
		mark="MISS ${missed[*]}"
		misses=$((misses + 1))
	fi
	printf '%-24s %9s %9s %9s %10s %9s  %s\n' \
		"$kind $cache qd$depth" "$q" "$o" "$r" "$oq" "$orw" "$mark"
done
echo
if [ "$have_ours" = 1 ]; then
	echo "$misses of ${#rows[@]} rows miss a target (median of $reps runs each)."
fi
if [ -s "$work/errors" ]; then
	echo "Failed runs (ERR):"
	sed 's/^/  /' "$work/errors"
fi
[ "$keep" = 1 ] && echo "Images kept in $work"
exit 0
