# SPDX-License-Identifier: MIT
#
# qcow: libqcow (qcow2 images, interchangeable with qemu-img) and qcow-tool.
# The root Makefile turns these variables into rules. Found by their paths,
# with nothing to list here: unit tests qcow/tests/test_*.c, test programs
# qcow/tests/tools/*.c, fuzz targets qcow/fuzz/fuzz_*.c (seed corpus in
# qcow/fuzz/corpus/<name without fuzz_>/).

INCLUDES       += -Iqcow/include
qcow_SRCS      := $(wildcard qcow/*.c)
qcow_LIBS      := base
qcow_LDLIBS    := -lz -lzstd
qcow_PROGRAMS  := qcow-tool
qcow-tool_MAIN_SRCS := $(wildcard qcow/tool/*.c)
