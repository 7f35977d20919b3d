/* SPDX-License-Identifier: MIT */
/*
 * The input format of fuzz_frame.c, shared with the tool that writes its
 * seed corpus (vpnkit/tests/tools/frame-seeds.c).
 *
 * An input is a sequence of records, each starting with an op byte whose
 * low three bits say what the record is:
 *
 *   FI_FRAME, FI_FRAME_RUN   [op] [offload: 10 bytes, if FI_OFFLOAD]
 *                            [length: 16 bits, big-endian] [frame]
 *       A frame from a VM (port A, or port B with FI_PORT_B), fixed up as
 *       the flags ask, then (FI_FRAME_RUN) a turn of the loop. A length
 *       past the end of the input is cut to what is left.
 *   FI_HOST                  [op] [arg]
 *       The host side acts, then a turn of the loop: arg & 3 is 0: write
 *       1 + (arg >> 2) * 64 bytes to each accepted connection; 1: close
 *       the oldest; 2: reset the oldest (SO_LINGER 0); 3: nothing extra.
 *   FI_FORWARD               [op] [arg]
 *       A host client uses a port forward: arg & 1 set, a TCP client
 *       connects; clear, a UDP client sends (arg >> 1) * 8 bytes.
 *   FI_LINK                  [op]
 *       Port A's link becomes full (sends fail with -EAGAIN), or drains
 *       again (then vpnkit_port_resume).
 *   FI_RUN                   [op]
 *       A turn of the loop.
 *   FI_FWD_TOGGLE            [op]
 *       Remove the forwards, or add them back.
 *
 * Flags of frame records, in the op's high bits, applied in this order:
 * FI_FIX_ADDR writes the Ethernet addresses (port MAC to the gateway) and
 * the IP source address the port owns; FI_FIX_SEQ makes a TCP segment
 * answer the last one the library sent to that port (addresses, ports,
 * sequence and acknowledgment numbers); FI_FIX_CSUM recomputes the IPv4
 * header checksum and the transport checksum.
 */
#ifndef VPNKIT_FUZZ_FRAME_INPUT_H
#define VPNKIT_FUZZ_FRAME_INPUT_H

#define FI_KIND_MASK 0x07
#define FI_FRAME 0
#define FI_FRAME_RUN 1
#define FI_HOST 2
#define FI_FORWARD 3
#define FI_LINK 4
#define FI_RUN 5
#define FI_FWD_TOGGLE 6
#define FI_FRAME_RUN2 7 /* the same as FI_FRAME_RUN */

#define FI_FIX_ADDR 0x08
#define FI_FIX_SEQ 0x10
#define FI_FIX_CSUM 0x20
#define FI_PORT_B 0x40
#define FI_OFFLOAD 0x80

#define FI_FIX_ALL (FI_FIX_ADDR | FI_FIX_SEQ | FI_FIX_CSUM)

/* Host side, in the fuzzer's network namespace. */
#define FI_TCP_PORT 80 /* listener on 127.0.0.1 and ::1 */
#define FI_UDP_PORT 7 /* echo on 127.0.0.1 */
#define FI_FWD_TCP_PORT 8080 /* forward -> port A's address, port 80 */
#define FI_FWD_UDP_PORT 8081 /* forward -> port A's address, port 53 */

/* The IPv6 interface identifier of port A (port B: last byte + 1). */
#define FI_IID6 0x0250aafffebbcc01ull

#endif
