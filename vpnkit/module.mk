# SPDX-License-Identifier: MIT
#
# vpnkit: libvpnkit (a VM's Ethernet frames become host sockets) and the
# vpnkit daemon (transports: hyperkit's protocol, QEMU stream framing,
# datagram and seqpacket sockets, TAP). Unit tests vpnkit/tests/test_*.c,
# test programs vpnkit/tests/tools/*.c, fuzz targets vpnkit/fuzz/fuzz_*.c.

INCLUDES          += -Ivpnkit/include
vpnkit_SRCS       := $(wildcard vpnkit/*.c)
vpnkit_LIBS       := base
vpnkit_LDLIBS     :=
vpnkit_PROGRAMS   := vpnkit
vpnkit_MAIN_SRCS  := $(wildcard vpnkit/daemon/*.c)
