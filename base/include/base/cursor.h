/* SPDX-License-Identifier: MIT */
/*
 * A bounds-checked read cursor over a byte buffer that fails closed.
 *
 * Parsers of untrusted input (qcow2 headers and tables, frames, 9P
 * messages) read every field through a cursor. A read that would run past
 * the end of the buffer reads nothing, returns zero (or NULL for a
 * pointer), and marks the cursor failed; once failed, every later read
 * also returns zero without looking at the buffer. A parser can therefore
 * read a whole structure and check cursor_failed() once at the end, and
 * a missing check can never turn into an out-of-bounds read. This is
 * passt's packet_get() model.
 *
 * Multi-byte reads name their byte order (cursor_be32, cursor_le16). The
 * cursor borrows the buffer; it allocates nothing and has no release.
 * Threading: a cursor belongs to one thread; several cursors may read the
 * same buffer at once.
 */
#ifndef BASE_CURSOR_H
#define BASE_CURSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cursor {
	const uint8_t *buf; /* borrowed */
	size_t len; /* bytes in buf */
	size_t pos; /* next byte to read, always <= len */
	bool failed; /* a read went out of bounds */
};

/* Start reading len bytes at buf; a NULL buf gives an empty cursor. */
void cursor_init(struct cursor *c, const void *buf, size_t len);

/* True once any read has gone out of bounds. */
static inline bool cursor_failed(const struct cursor *c)
{
	return c->failed;
}

/* Bytes left to read (0 once failed). */
static inline size_t cursor_remaining(const struct cursor *c)
{
	return c->failed ? 0 : c->len - c->pos;
}

/* Offset of the next read from the start of the buffer. */
static inline size_t cursor_pos(const struct cursor *c)
{
	return c->pos;
}

uint8_t cursor_u8(struct cursor *c);
uint16_t cursor_be16(struct cursor *c);
uint32_t cursor_be32(struct cursor *c);
uint64_t cursor_be64(struct cursor *c);
uint16_t cursor_le16(struct cursor *c);
uint32_t cursor_le32(struct cursor *c);
uint64_t cursor_le64(struct cursor *c);

/*
 * Return a pointer to the next n bytes and step over them, or NULL (and
 * fail the cursor) if fewer than n remain. The pointer is into the
 * caller's buffer. n == 0 returns a valid pointer to the current position
 * without moving.
 */
const void *cursor_ptr(struct cursor *c, size_t n);

/* Copy the next n bytes to dst; on failure dst is zero-filled. */
void cursor_copy(struct cursor *c, void *dst, size_t n);

/* Step over n bytes. Returns false (and fails the cursor) if too few. */
bool cursor_skip(struct cursor *c, size_t n);

/*
 * Move to absolute offset pos (pos == len is allowed: nothing left).
 * Returns false (and fails the cursor) if pos is beyond the buffer.
 */
bool cursor_seek(struct cursor *c, size_t pos);

/*
 * Carve the next n bytes off as their own cursor in *sub and step over
 * them in c, so a nested structure can be parsed without reading past its
 * stated length. On failure *sub is an empty, failed cursor.
 */
bool cursor_sub(struct cursor *c, size_t n, struct cursor *sub);

#endif
