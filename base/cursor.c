// SPDX-License-Identifier: MIT
/*
 * The fail-closed read cursor (see base/cursor.h).
 *
 * Every read goes through cursor_take(), the one place that compares a
 * length with what is left. It never adds to pos before checking, so a
 * huge n cannot wrap around; once the cursor has failed it hands out
 * nothing, whatever is asked. buf is never NULL (an empty cursor points at
 * a static byte), so a successful take of zero bytes is still a valid,
 * non-NULL pointer.
 */
#include <string.h>

#include <base/cursor.h>
#include <base/endian.h>

/* Where an empty cursor points, so that buf is never NULL. */
static const uint8_t cursor_empty[1];

void cursor_init(struct cursor *c, const void *buf, size_t len)
{
	c->buf = buf ? buf : cursor_empty;
	c->len = buf ? len : 0;
	c->pos = 0;
	c->failed = false;
}

/* The next n bytes, or NULL with the cursor failed if fewer remain. */
static const uint8_t *cursor_take(struct cursor *c, size_t n)
{
	const uint8_t *p;

	if (c->failed || n > c->len - c->pos) {
		c->failed = true;
		return NULL;
	}
	p = c->buf + c->pos;
	c->pos += n;
	return p;
}

uint8_t cursor_u8(struct cursor *c)
{
	const uint8_t *p = cursor_take(c, 1);

	return p ? p[0] : 0;
}

uint16_t cursor_be16(struct cursor *c)
{
	const uint8_t *p = cursor_take(c, 2);

	return p ? load_be16(p) : 0;
}

uint32_t cursor_be32(struct cursor *c)
{
	const uint8_t *p = cursor_take(c, 4);

	return p ? load_be32(p) : 0;
}

uint64_t cursor_be64(struct cursor *c)
{
	const uint8_t *p = cursor_take(c, 8);

	return p ? load_be64(p) : 0;
}

uint16_t cursor_le16(struct cursor *c)
{
	const uint8_t *p = cursor_take(c, 2);

	return p ? load_le16(p) : 0;
}

uint32_t cursor_le32(struct cursor *c)
{
	const uint8_t *p = cursor_take(c, 4);

	return p ? load_le32(p) : 0;
}

uint64_t cursor_le64(struct cursor *c)
{
	const uint8_t *p = cursor_take(c, 8);

	return p ? load_le64(p) : 0;
}

const void *cursor_ptr(struct cursor *c, size_t n)
{
	return cursor_take(c, n);
}

void cursor_copy(struct cursor *c, void *dst, size_t n)
{
	const uint8_t *p = cursor_take(c, n);

	if (n == 0)
		return;
	if (p)
		memcpy(dst, p, n);
	else
		memset(dst, 0, n);
}

bool cursor_skip(struct cursor *c, size_t n)
{
	return cursor_take(c, n) != NULL;
}

bool cursor_seek(struct cursor *c, size_t pos)
{
	if (c->failed || pos > c->len) {
		c->failed = true;
		return false;
	}
	c->pos = pos;
	return true;
}

bool cursor_sub(struct cursor *c, size_t n, struct cursor *sub)
{
	const uint8_t *p = cursor_take(c, n);

	if (!p) {
		cursor_init(sub, NULL, 0);
		sub->failed = true;
		return false;
	}
	cursor_init(sub, p, n);
	return true;
}
