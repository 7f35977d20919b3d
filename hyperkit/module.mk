# SPDX-License-Identifier: MIT
#
# hyperkit: libhyperkit (a KVM VMM: memory, vCPUs, direct Linux boot, MP
# and ACPI tables, UARTs, the device model) and the hyperkit command with
# hyperkit's command line. Unit tests hyperkit/tests/test_*.c, test
# programs hyperkit/tests/tools/*.c, fuzz targets hyperkit/fuzz/fuzz_*.c.
# Nothing here needs /dev/kvm to build; the end-to-end tests boot guests
# inside the nested KVM rig (tests/e2e/hyperkit_*.sh).

INCLUDES            += -Ihyperkit/include
hyperkit_SRCS       := $(wildcard hyperkit/*.c)
hyperkit_LIBS       := vpnkit qcow base
hyperkit_LDLIBS     := -llzma -lz -lzstd
hyperkit_PROGRAMS   := hyperkit
hyperkit_MAIN_SRCS  := $(wildcard hyperkit/cmd/*.c)
