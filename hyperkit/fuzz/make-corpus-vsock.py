#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
#
# Write the seed corpus of fuzz_virtio_sock: command programs (the format
# is described at the top of fuzz_virtio_sock.c) for a guest connection
# with data both ways and a shutdown, host clients through DIR/connect and
# a guest_forwards socket, a credit-limited transfer, a guest ignoring our
# credit, a device reset with open connections, and hostile chains.
# The corpus also keeps inputs the fuzzer found (response_before_request:
# the guest answers a host connection before its REQUEST arrived;
# request_on_broken_queue: packets after the transmit queue broke); this
# script does not write those. Usage: make-corpus-vsock.py OUTDIR
import os
import struct
import sys

# Guest packet kinds; the high nibble of the opcode is the pair (table in
# the target: 0-2 go to host port 1, 3-4 to port 2, 5 to a port without a
# listener, 8-15 are learned from the device's REQUESTs).
REQUEST, RESPONSE, RST, SHUTDOWN, RW, CREDIT_UPDATE, CREDIT_REQUEST = range(7)
RAW, SHAPE, RX_POST, POLL, ACCEPT, CONNECT, HWRITE, HMISC, DRIVER = range(7, 16)
SHUT_RCV, SHUT_SEND = 1, 2


def cfg(forwards=False, rx_steps=4, event_idx=False, indirect=False):
    return bytes([int(forwards) | rx_steps << 1 | int(event_idx) << 4 |
                  int(indirect) << 5])


def op(kind, a=0, *args):
    return bytes([kind | a << 4]) + bytes(args)


def rw(pair, n):
    return op(RW, pair) + struct.pack("<H", n)


def hwrite(slot, n):
    return op(HWRITE, slot) + struct.pack("<H", n)


def hread(slot):
    return op(HMISC, slot, 0)


def hclose(slot):
    return op(HMISC, slot, 3)


def raw(src_cid, dst_cid, sp, dp, ln, typ, o, flags=0, buf=256 << 10, fwd=0):
    return op(RAW) + struct.pack("<QQIIIHHIII", src_cid, dst_cid, sp, dp,
                                 ln, typ, o, flags, buf, fwd)


POLL_ = op(POLL)

SEEDS = {
    # The guest connects to host port 1, data both ways, the guest stops
    # sending, the host answers and closes: SHUTDOWN then RST.
    "guest_connect_data_shutdown": cfg() + op(REQUEST, 0) + op(ACCEPT, 0) +
    rw(0, 100) + hread(0) + hwrite(0, 200) + POLL_ +
    op(SHUTDOWN, 0, SHUT_SEND) + hread(0) + hwrite(0, 50) + POLL_ +
    hclose(0) + POLL_ + op(RX_POST, 3) + POLL_,
    # A host client writes the 18-byte preamble for guest port 7; the
    # guest accepts the REQUEST (pair 8 learns it), bytes both ways,
    # credit messages, a full shutdown.
    "host_connect_preamble": cfg() + op(CONNECT, 0, 0) + POLL_ + POLL_ +
    op(RESPONSE, 8) + hwrite(0, 300) + POLL_ + rw(8, 20) + hread(0) +
    op(CREDIT_UPDATE, 8, 0) + op(CREDIT_REQUEST, 8) + POLL_ +
    op(SHUTDOWN, 8, SHUT_RCV | SHUT_SEND) + POLL_ + hread(0),
    # Broken preambles: a short one then EOF, a wrong cid, a bad digit.
    "host_connect_bad_preamble": cfg() + op(CONNECT, 0, 0x85) + POLL_ + POLL_ +
    op(HMISC, 0, 1) + POLL_ + op(CONNECT, 0, 0xe0) + POLL_ +
    op(CONNECT, 0, 0xc3) + POLL_ + hread(1) + hread(2),
    # guest_forwards: a client of the forward socket of port 8 reaches
    # the guest at once; the guest refuses with RST, a second one is
    # accepted.
    "host_connect_forward": cfg(forwards=True) + op(CONNECT, 3) + POLL_ + POLL_ +
    op(RST, 8) + POLL_ + op(CONNECT, 1) + POLL_ + POLL_ + op(RESPONSE, 9) +
    hwrite(1, 1000) + POLL_ + hclose(1) + POLL_,
    # The guest grants 1024 bytes, the host has 8000: the device stops at
    # the credit until the guest reports what it consumed.
    "credit_limited": cfg() + op(REQUEST, 0) + op(ACCEPT, 0) +
    op(CREDIT_UPDATE, 0, 1, 64) + hwrite(0, 8000) + POLL_ + POLL_ +
    op(CREDIT_UPDATE, 0, 0) + POLL_ + op(CREDIT_UPDATE, 0, 1, 0) +
    hwrite(0, 8000) + POLL_ + op(CREDIT_UPDATE, 0, 0) + POLL_ + POLL_,
    # The guest sends more than our buf_alloc while the host reads
    # nothing: the connection is reset.
    "guest_ignores_credit": cfg() + op(REQUEST, 1) + op(ACCEPT, 0) +
    rw(1, 0xffff) * 10 + POLL_ + hread(0) + POLL_,
    # A device reset with a guest connection and a host client open, then
    # the driver sets up again and connects once more.
    "device_reset": cfg() + op(REQUEST, 3) + op(ACCEPT, 1) +
    op(CONNECT, 0, 2) + POLL_ + POLL_ + op(DRIVER, 0) + hread(0) + hread(1) +
    op(RX_POST, 7) + op(REQUEST, 3) + op(ACCEPT, 1) + rw(3, 10) + POLL_ +
    op(DRIVER, 1) + POLL_ + hwrite(2, 10) + POLL_,
    # Hostile chains: a split header, a short header, a len field that
    # lies, an indirect table with a writable tail, an address past
    # memory; headers with wrong cids, type and op; a connect to nowhere;
    # receive buffers of odd shapes.
    "hostile_chains": cfg(indirect=True, event_idx=True) + op(REQUEST, 0) +
    op(ACCEPT, 0) + op(SHAPE, 0, 0x0a) + rw(0, 300) + hread(0) +
    op(SHAPE, 0, 0x0f) + rw(0, 10) + op(SHAPE, 0, 0x80) + rw(0, 5) +
    op(REQUEST, 1) + op(SHAPE, 0, 0x52) + rw(1, 40) + op(REQUEST, 5) +
    raw(4, 2, 1, 1, 0, 1, 1) + raw(3, 3, 1, 1, 0, 1, 1) +
    raw(3, 2, 1002, 1, 0, 2, 1) + raw(3, 2, 1002, 1, 0, 1, 9) +
    raw(3, 2, 1002, 1, 0x10001, 1, 5) + op(RX_POST, 8, 0x01) +
    op(RX_POST, 8, 0x07) + op(RX_POST, 8, 0x0e) + op(RX_POST, 8, 0x08) +
    op(RX_POST, 8, 0x03) + POLL_ + op(SHAPE, 0, 0x20) + rw(0, 1),
}


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make-corpus-vsock.py OUTDIR")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, data in sorted(SEEDS.items()):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
