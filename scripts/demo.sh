#!/bin/bash
# SPDX-License-Identifier: MIT
#
# A demonstration of unikit, one part after another: qcow-tool, a qcow2
# disk that gives space back, then vpnkit, a network namespace whose
# traffic becomes host sockets (scripts/demo-vpnkit.sh).
#
# It builds a 1 GiB disk holding 64 MiB of data, converts it to qcow2 with
# qcow-tool, lets "the guest" overwrite half the data with zeros (through
# qemu-io, as a guest write through QEMU would), then has qcow-tool find the
# all-zero clusters and release them (the file's allocated size drops) and
# compact the image (the file's length drops). qemu-img, which we did not
# write, checks the image and compares its contents with the expected raw
# disk at every step.
#
# Run by `make demo`, which builds first and puts build/bin on PATH.
# Everything happens in a temporary directory under /tmp, removed at exit.
set -euo pipefail

if [[ -n ${UNIKIT_BUILD:-} ]]; then
	PATH=$UNIKIT_BUILD/bin:$PATH
fi
for tool in qcow-tool qemu-img qemu-io; do
	if ! command -v "$tool" >/dev/null; then
		echo "demo: $tool not found (run 'make demo' from the repository root)" >&2
		exit 1
	fi
done

work=$(mktemp -d /tmp/unikit-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
scripts_dir=$(cd "$(dirname "$0")" && pwd)
cd "$work"

step=0
# shellcheck source=scripts/lib-demo.sh
source "$scripts_dir/lib-demo.sh"

# Length of a file and what it occupies on disk.
sizes() {
	local f len alloc
	for f in "$@"; do
		len=$(stat -c %s "$f")
		alloc=$(($(stat -c %b "$f") * $(stat -c %B "$f")))
		printf '   %-12s length %7s   allocated on disk %7s\n' "$f" \
			"$(numfmt --to=iec "$len")" "$(numfmt --to=iec "$alloc")"
	done
}

allocated() {
	echo $(($(stat -c %b "$1") * $(stat -c %B "$1")))
}

heading "An empty 1 GiB qcow2 image"
run qcow-tool create -f qcow2 empty.qcow2 1G
run qcow-tool info empty.qcow2
sizes empty.qcow2

heading "A raw 1 GiB disk: 64 MiB random data, 64 MiB written zeros, then a hole"
truncate -s 1G disk.raw
dd if=/dev/urandom of=disk.raw bs=1M count=64 conv=notrunc status=none
dd if=/dev/zero of=disk.raw bs=1M seek=64 count=64 conv=notrunc status=none
sizes disk.raw

heading "Convert it to qcow2 with qcow-tool"
run qcow-tool convert -O qcow2 disk.raw img.qcow2
run qcow-tool info img.qcow2
sizes disk.raw img.qcow2

heading "qemu-img checks the image and compares it with the raw disk"
run qemu-img check img.qcow2
run qemu-img compare -f raw -F qcow2 disk.raw img.qcow2

heading "The guest overwrites the first 32 MiB with zeros (qemu-io)"
run qemu-io -f qcow2 -c 'write -P 0 0 32M' img.qcow2
dd if=/dev/zero of=disk.raw bs=1M count=32 conv=notrunc status=none
echo "   (the same zeros written to disk.raw, the expected contents)"
sizes img.qcow2
echo "   The zeros are stored as data: nothing has been given back yet."
before_discard=$(allocated img.qcow2)

heading "qcow-tool discard: find all-zero clusters and release them"
run qcow-tool discard img.qcow2
sizes img.qcow2
after_discard=$(allocated img.qcow2)
echo "   allocated on disk: $(numfmt --to=iec "$before_discard")" \
	"-> $(numfmt --to=iec "$after_discard")"
length_before=$(stat -c %s img.qcow2)

heading "qcow-tool compact: move clusters towards the start, truncate the file"
run qcow-tool compact img.qcow2
sizes img.qcow2
echo "   file length: $(numfmt --to=iec "$length_before")" \
	"-> $(numfmt --to=iec "$(stat -c %s img.qcow2)")"

heading "qemu-img still finds the image clean and identical to the raw disk"
run qemu-img check img.qcow2
run qemu-img compare -f raw -F qcow2 disk.raw img.qcow2
run qcow-tool info img.qcow2

echo
if ((after_discard < before_discard)) &&
	(($(stat -c %s img.qcow2) < length_before)); then
	echo "demo: qcow done. The image gave back the space its zeros had taken."
else
	echo "demo: qcow done, but the image did not shrink as expected" >&2
	exit 1
fi

cd /
export DEMO_STEP_FILE=$work/step
echo "$step" >"$DEMO_STEP_FILE"
bash "$scripts_dir/demo-vpnkit.sh" "$(cat "$DEMO_STEP_FILE")"
bash "$scripts_dir/demo-hyperkit.sh" "$(cat "$DEMO_STEP_FILE")"

