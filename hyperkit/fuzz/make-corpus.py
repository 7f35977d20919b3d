#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
#
# Write the seed corpus of fuzz_virtqueue: guest memories holding a queue
# of 8 at desc 0x1000, avail 0x2000, used 0x3000, with virtio-blk requests
# (read, write, flush, get-id, discard, write-zeroes, an indirect chain)
# and a few broken rings. Usage: make-corpus.py OUTDIR
import os
import struct
import sys

DESC, AVAIL, USED, BUF = 0x1000, 0x2000, 0x3000, 0x4000
F_NEXT, F_WRITE, F_INDIRECT = 1, 2, 4


def seed(chains, event_idx=0, mem_size=0x8000, extra=None):
    mem = bytearray(mem_size)
    heads = []
    slot = 0
    for descs in chains:
        heads.append(slot)
        for i, (addr, ln, flags) in enumerate(descs):
            nxt = slot + 1 if i + 1 < len(descs) else 0
            if i + 1 < len(descs):
                flags |= F_NEXT
            struct.pack_into("<QIHH", mem, DESC + 16 * slot, addr, ln, flags, nxt)
            slot += 1
    for i, h in enumerate(heads):
        struct.pack_into("<H", mem, AVAIL + 4 + 2 * i, h)
    struct.pack_into("<H", mem, AVAIL + 2, len(heads))
    if extra:
        extra(mem)
    hdr = struct.pack("<BHHHHBBH", 3, DESC // 16, AVAIL // 2, USED // 4, 0,
                      event_idx, len(heads) + 2, 0)
    hdr += bytes(16 - len(hdr))
    return hdr + bytes(mem)


def req(mem_writer, off, rtype, sector, payload=b""):
    def w(mem):
        struct.pack_into("<IIQ", mem, off, rtype, 0, sector)
        mem[off + 16:off + 16 + len(payload)] = payload
    return w


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    seeds = {}
    # IN: header, 1024 bytes of data, status.
    seeds["read"] = seed([[(BUF, 16, 0), (BUF + 0x100, 1024, F_WRITE),
                           (BUF + 0x600, 1, F_WRITE)]],
                         extra=req(None, BUF, 0, 2))
    seeds["write"] = seed([[(BUF, 16, 0), (BUF + 0x100, 512, 0),
                            (BUF + 0x600, 1, F_WRITE)]],
                          extra=req(None, BUF, 1, 7))
    seeds["flush_getid"] = seed([[(BUF, 16, 0), (BUF + 0x600, 1, F_WRITE)],
                                 [(BUF + 0x40, 16, 0),
                                  (BUF + 0x700, 21, F_WRITE)]],
                                event_idx=1,
                                extra=lambda m: (req(None, BUF, 4, 0)(m),
                                                 req(None, BUF + 0x40, 8, 0)(m)))
    seg = struct.pack("<QII", 4, 8, 0)
    seeds["discard"] = seed([[(BUF, 32, 0), (BUF + 0x600, 1, F_WRITE)]],
                            extra=req(None, BUF, 11, 0, seg))
    segz = struct.pack("<QII", 0, 16, 1)
    seeds["write_zeroes"] = seed([[(BUF, 32, 0), (BUF + 0x600, 1, F_WRITE)]],
                                 extra=req(None, BUF, 13, 0, segz))

    def indirect(mem):
        req(None, BUF, 0, 0)(mem)
        t = 0x5000
        struct.pack_into("<QIHH", mem, t, BUF, 16, F_NEXT, 1)
        struct.pack_into("<QIHH", mem, t + 16, BUF + 0x100, 512,
                         F_NEXT | F_WRITE, 2)
        struct.pack_into("<QIHH", mem, t + 32, BUF + 0x600, 1, F_WRITE, 0)
    seeds["indirect"] = seed([[(0x5000, 48, F_INDIRECT)]], extra=indirect)

    def loop(mem):
        struct.pack_into("<QIHH", mem, DESC, BUF, 16, F_NEXT, 1)
        struct.pack_into("<QIHH", mem, DESC + 16, BUF, 16, F_NEXT, 0)
    seeds["loop"] = seed([[(BUF, 16, 0)]], extra=loop)
    seeds["out_of_range"] = seed([[(0xfff0, 0x100, 0),
                                   (BUF + 0x600, 1, F_WRITE)]])
    seeds["bad_type"] = seed([[(BUF, 16, 0), (BUF + 0x600, 1, F_WRITE)]],
                             extra=req(None, BUF, 99, 0))
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
