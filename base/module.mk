# SPDX-License-Identifier: MIT
#
# base: what two or more components share. libbase.a holds the byte cursor,
# the logger and rate limiter, and the unit test harness (linked only into
# tests, since nothing else references it); alloc.h and endian.h are
# header-only. base/fuzz_replay.c is not in the library: it is the main()
# that fuzz targets are linked with for corpus replay (see the Makefile).
# Unit tests: base/tests/test_*.c; test programs: base/tests/tools/*.c.

INCLUDES     += -Ibase/include
base_SRCS    := $(filter-out base/fuzz_replay.c,$(wildcard base/*.c))
base_LIBS    :=
base_LDLIBS  :=
base_PROGRAMS :=
