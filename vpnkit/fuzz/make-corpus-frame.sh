#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Generate the seed corpus of vpnkit/fuzz/fuzz_frame.c with the
# frame-seeds tool (vpnkit/tests/tools/frame-seeds.c): valid frames of
# every protocol a VM speaks, short conversations and malformed frames,
# in the record format of vpnkit/fuzz/frame_input.h. The output is the
# same on every run; the files are committed. Other files in the output
# directory (crash-* regression seeds) are left alone.
#
# Usage: vpnkit/fuzz/make-corpus-frame.sh [OUTDIR]   (default: vpnkit/fuzz/corpus/frame)

set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$here/corpus/frame}

make -C "$root" --no-print-directory build/tests/bin/frame-seeds
mkdir -p "$out"
"$root/build/tests/bin/frame-seeds" "$out"
