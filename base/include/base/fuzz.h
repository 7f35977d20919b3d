/* SPDX-License-Identifier: MIT */
/*
 * The libFuzzer entry points, declared once for every fuzz target.
 *
 * A target <comp>/fuzz/fuzz_<name>.c defines LLVMFuzzerTestOneInput (and,
 * if it needs one-time setup, LLVMFuzzerInitialize) and calls one parse
 * function with the input. The same target is linked two ways: with
 * libFuzzer by `make fuzz` (clang, ASan, UBSan), and with base/fuzz_replay.c
 * by `make` so that `make check` replays its corpus under gcc. A target
 * must not keep state from one input to the next, must not print, and must
 * free what it allocates (leaks are reported as failures).
 *
 * The Makefile force-includes this header when it compiles fuzz targets,
 * so -Wmissing-prototypes holds even if a target forgets to include it.
 */
#ifndef BASE_FUZZ_H
#define BASE_FUZZ_H

#include <stddef.h>
#include <stdint.h>

/* Run one input; return 0 (other values are reserved by libFuzzer). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Optional one-time setup, called before the first input. */
int LLVMFuzzerInitialize(int *argc, char ***argv);

#endif
