#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Run unikit's tests against one build directory and count the results.
#
#   scripts/run-tests.sh BUILD_DIR [PATTERN]          (make check)
#   scripts/run-tests.sh --fuzz BUILD_DIR [PATTERN]   (make fuzz)
#
# Programs run, one after another, from the repository root:
#   - every unit test program BUILD_DIR/tests/test_*;
#   - every fuzz target's corpus replay, BUILD_DIR/fuzz/<comp>/fuzz_<x>
#     over <comp>/fuzz/corpus/<x>/ (named replay-<x>);
#   - every end-to-end script tests/e2e/*.sh (named e2e/<script>), run with
#     bash, UNIKIT_BUILD set to the absolute build directory and PATH
#     starting with BUILD_DIR/bin:BUILD_DIR/tests/bin. Scripts named lib*.sh
#     or _*.sh are helpers sourced by the others, not run.
# With --fuzz, instead: each libFuzzer target in BUILD_DIR/fuzz/<comp>/ for
# FUZZ_SECONDS (default 60) over a fresh copy of its corpus (named fuzz-<x>).
#
# PATTERN (or $TESTS) is an extended regular expression: only programs
# whose name matches it run. The Makefile passes the programs it built in
# $UNIT_TESTS and $FUZZ_TARGETS (space-separated paths), so that stale
# binaries of deleted sources do not run; without them the build directory
# is searched.
#
# The protocol: a program prints one line per test case on stdout,
# "ok NAME", "not ok NAME" or "ok NAME # skip REASON", and exits non-zero if
# any failed. Each program's output goes to BUILD_DIR/test-logs/<name>.log;
# this script counts the lines. A program that exits non-zero (or is killed)
# without printing "not ok" counts as one failure named after it, so does a
# program that printed no result at all, and so does one that runs past its
# timeout ($TEST_TIMEOUT seconds, default 900). Each program gets a summary
# line, a failing one also its "not ok" and "#" lines and sanitizer reports
# (and, if it crashed or timed out, the end of its output); the last line is
# "N passed, N failed" (", N skipped" when there are any), and the exit
# status is 1 if anything failed.
#
# Everything is in functions and the last line calls main, so bash has read
# the whole file before anything runs: editing it during a run is safe.
set -uo pipefail

usage() {
	echo "usage: $0 [--fuzz] BUILD_DIR [PATTERN]" >&2
	exit 2
}

# fuzz_one NAME BIN CORPUS ARTIFACTS: one libFuzzer run, in the protocol.
fuzz_one() {
	local name=$1 bin=$2 corpus=$3 artifacts=$4 rc found f

	rm -rf "$artifacts"
	mkdir -p "$artifacts"
	"$bin" -max_total_time="${FUZZ_SECONDS:-60}" -rss_limit_mb=2048 \
		-timeout=10 -print_final_stats=1 \
		-artifact_prefix="$artifacts/" "$corpus" </dev/null
	rc=$?
	found=$(find "$artifacts" -type f | sort)
	if ((rc == 0)) && [[ -z $found ]]; then
		echo "ok $name"
		return 0
	fi
	echo "# libFuzzer exited with status $rc"
	for f in $found; do
		echo "# found: $f (once fixed, add it to the corpus as a regression seed)"
	done
	echo "not ok $name"
	return 1
}

# run_program NAME TIMEOUT COMMAND...: run one program, count, summarise.
run_program() {
	local name=$1 limit=$2
	shift 2
	local log=$logs/${name//\//_}.log
	local start end ms rc pass fail skip extra="" status t
	local -a not_ok

	if [[ -n $pattern && ! $name =~ $pattern ]]; then
		return 0
	fi
	programs=$((programs + 1))
	start=$(date +%s%N)
	timeout -k 10 "$limit" "$@" </dev/null >"$log" 2>&1
	rc=$?
	end=$(date +%s%N)

	pass=$(grep -E '^ok ' "$log" | grep -Eivc '^ok [^#]*#[[:space:]]*skip')
	skip=$(grep -Eic '^ok [^#]*#[[:space:]]*skip' "$log")
	mapfile -t not_ok < <(grep -E '^not ok ' "$log" | sed 's/^not ok //')
	fail=${#not_ok[@]}

	if ((rc == 124)); then
		extra="timed out after $limit s"
		not_ok+=("$name ($extra)")
	elif ((rc != 0 && fail == 0)); then
		if ((rc > 128)); then
			extra="killed by signal $((rc - 128))"
		else
			extra="exit status $rc"
		fi
		not_ok+=("$name ($extra)")
	elif ((rc == 0 && pass + skip + fail == 0)); then
		extra="printed no results"
		not_ok+=("$name ($extra)")
	fi
	fail=${#not_ok[@]}

	total_pass=$((total_pass + pass))
	total_skip=$((total_skip + skip))
	total_fail=$((total_fail + fail))
	status=PASS
	((fail == 0)) || status=FAIL
	printf '%-4s %-36s %4d ok' "$status" "$name" "$pass"
	((fail == 0)) || printf ', %d not ok' "$fail"
	((skip == 0)) || printf ', %d skipped' "$skip"
	[[ -z $extra ]] || printf ' (%s)' "$extra"
	ms=$(((end - start) / 1000000))
	printf '  %d.%01ds\n' $((ms / 1000)) $((ms % 1000 / 100))

	if ((fail > 0)); then
		for t in "${not_ok[@]}"; do
			failed_names+=("$name: $t")
		done
		# The failures with their "#" diagnostics and any sanitizer
		# report; for a crash or a timeout, also the end of the output.
		echo "---- $log"
		grep -E '^(not ok |#)|runtime error|Sanitizer|^SUMMARY' "$log" |
			head -n 100 | sed 's/^/    /'
		if [[ -n $extra ]]; then
			echo "    ... last lines:"
			tail -n 40 "$log" | sed 's/^/    /'
		fi
		echo "----"
	fi
}

run_fuzzers() {
	local -a targets
	local bin comp short copy

	if [[ -v FUZZ_TARGETS ]]; then
		read -r -a targets <<<"$FUZZ_TARGETS"
	else
		targets=("$build_abs"/fuzz/*/fuzz_*)
	fi
	if ((${#targets[@]} == 0)); then
		echo "run-tests: no fuzz targets: nothing to fuzz"
		return
	fi
	echo "run-tests: fuzzing each target for ${FUZZ_SECONDS:-60} s"
	for bin in "${targets[@]}"; do
		[[ -x $bin ]] || continue
		comp=$(basename "$(dirname "$bin")")
		short=$(basename "$bin")
		short=${short#fuzz_}
		copy=$build_abs/corpus/$comp/$short
		rm -rf "$copy"
		mkdir -p "$copy"
		if [[ -d $comp/fuzz/corpus/$short ]]; then
			cp -r "$comp/fuzz/corpus/$short/." "$copy/"
		fi
		run_program "fuzz-$short" "$((${FUZZ_SECONDS:-60} + 300))" \
			bash "$self" --fuzz-one "fuzz-$short" "$bin" "$copy" \
			"$build_abs/fuzz-artifacts/$comp/$short"
	done
}

run_checks() {
	local -a tests targets corpus
	local bin comp short script

	if [[ -v UNIT_TESTS ]]; then
		read -r -a tests <<<"$UNIT_TESTS"
	else
		tests=("$build_abs"/tests/test_*)
	fi
	if [[ -v FUZZ_TARGETS ]]; then
		read -r -a targets <<<"$FUZZ_TARGETS"
	else
		targets=("$build_abs"/fuzz/*/fuzz_*)
	fi
	for bin in "${tests[@]}"; do
		[[ -x $bin ]] || continue
		run_program "$(basename "$bin")" "$timeout_s" "$bin"
	done
	for bin in "${targets[@]}"; do
		[[ -x $bin ]] || continue
		comp=$(basename "$(dirname "$bin")")
		short=$(basename "$bin")
		short=${short#fuzz_}
		corpus=()
		[[ -d $comp/fuzz/corpus/$short ]] &&
			corpus=("$comp/fuzz/corpus/$short")
		run_program "replay-$short" "$timeout_s" "$bin" "${corpus[@]}"
	done
	for script in tests/e2e/*.sh; do
		case $(basename "$script") in
		lib*.sh | _*.sh) continue ;;
		esac
		run_program "e2e/$(basename "$script")" "$timeout_s" \
			bash "$script"
	done
}

main() {
	local fuzz_mode=0

	if [[ ${1:-} == --fuzz-one ]]; then
		shift
		fuzz_one "$@"
		return
	fi
	if [[ ${1:-} == --fuzz ]]; then
		fuzz_mode=1
		shift
	fi
	[[ $# -ge 1 && $# -le 2 ]] || usage
	build=$1
	pattern=${2:-${TESTS:-}}
	if [[ ! -d $build ]]; then
		echo "run-tests: no build directory $build (run make first)" >&2
		return 2
	fi

	root=$(cd "$(dirname "$0")/.." && pwd)
	self=$root/scripts/run-tests.sh
	build_abs=$(cd "$build" && pwd)
	cd "$root" || return 2
	logs=$build_abs/test-logs
	rm -rf "$logs"
	mkdir -p "$logs"
	timeout_s=${TEST_TIMEOUT:-900}

	export UNIKIT_BUILD=$build_abs
	export UNIKIT_SRC=$root
	export PATH=$build_abs/bin:$build_abs/tests/bin:$PATH
	# Sanitizer builds: show where undefined behaviour happened.
	export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

	total_pass=0 total_fail=0 total_skip=0 programs=0
	failed_names=()
	shopt -s nullglob

	if ((fuzz_mode)); then
		run_fuzzers
	else
		run_checks
		if ((programs == 0)); then
			echo "run-tests: no test program matched${pattern:+ '$pattern'}"
		fi
	fi

	echo
	if ((${#failed_names[@]} > 0)); then
		echo "Failed:"
		printf '  %s\n' "${failed_names[@]}"
	fi
	if ((total_skip > 0)); then
		echo "$total_pass passed, $total_fail failed, $total_skip skipped"
	else
		echo "$total_pass passed, $total_fail failed"
	fi
	((total_fail == 0))
}

main "$@"
exit
