/* SPDX-License-Identifier: MIT */
/*
 * Overflow-checked size arithmetic and array allocation.
 *
 * Every count that came from outside (an L1 table size, a 9P message
 * count, a frame length) is multiplied and added through these helpers, so
 * an overflow is an error the caller sees instead of a short buffer.
 *
 * The *_ok functions store the result in *out and return true, or return
 * false on overflow (leaving *out unspecified). The allocators return NULL
 * on overflow with errno set to ENOMEM, exactly as on an allocation
 * failure, so one check covers both. Nothing here aborts.
 */
#ifndef BASE_ALLOC_H
#define BASE_ALLOC_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

static inline bool size_mul_ok(size_t a, size_t b, size_t *out)
{
	return !__builtin_mul_overflow(a, b, out);
}

static inline bool size_add_ok(size_t a, size_t b, size_t *out)
{
	return !__builtin_add_overflow(a, b, out);
}

/* The same for 64-bit file offsets and lengths, which are not size_t. */
static inline bool u64_mul_ok(uint64_t a, uint64_t b, uint64_t *out)
{
	return !__builtin_mul_overflow(a, b, out);
}

static inline bool u64_add_ok(uint64_t a, uint64_t b, uint64_t *out)
{
	return !__builtin_add_overflow(a, b, out);
}

/* malloc(n * size), uninitialised; NULL (errno ENOMEM) on overflow. */
static inline void *array_alloc(size_t n, size_t size)
{
	size_t bytes;

	if (!size_mul_ok(n, size, &bytes)) {
		errno = ENOMEM;
		return NULL;
	}
	return malloc(bytes ? bytes : 1);
}

/* calloc(n, size): zeroed; NULL (errno ENOMEM) on overflow. */
static inline void *array_zalloc(size_t n, size_t size)
{
	size_t bytes;

	if (!size_mul_ok(n, size, &bytes)) {
		errno = ENOMEM;
		return NULL;
	}
	return calloc(bytes ? n : 1, bytes ? size : 1);
}

/*
 * realloc(p, n * size). On failure (overflow or no memory) returns NULL
 * and leaves p allocated and unchanged, as realloc does.
 */
static inline void *array_realloc(void *p, size_t n, size_t size)
{
	size_t bytes;

	if (!size_mul_ok(n, size, &bytes)) {
		errno = ENOMEM;
		return NULL;
	}
	return realloc(p, bytes ? bytes : 1);
}

#endif
