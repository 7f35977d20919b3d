# SPDX-License-Identifier: MIT
#
# What the demo scripts share (sourced, not run): numbered headings and a
# command runner that shows each command before running it. The caller
# sets step (the number of the last heading shown); with DEMO_STEP_FILE
# set, each heading also writes its number there, so that the next part
# of the demo goes on counting.

bold='' plain=''
if [[ -t 1 ]]; then
	bold=$'\033[1m' plain=$'\033[0m'
fi

heading() {
	step=$((step + 1))
	[[ -z ${DEMO_STEP_FILE:-} ]] || echo "$step" >"$DEMO_STEP_FILE"
	printf '\n%s== %d. %s%s\n' "$bold" "$step" "$*" "$plain"
}

# Run a command, showing it first (arguments with spaces in quotes).
run() {
	local arg line='$'
	for arg in "$@"; do
		[[ $arg == *' '* ]] && arg="'$arg'"
		line+=" $arg"
	done
	printf '%s\n' "$line"
	"$@"
}
