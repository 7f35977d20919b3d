// SPDX-License-Identifier: MIT
/*
 * Length-prefixed frames on a byte stream, and the output buffer that
 * batches them into one write.
 *
 * Reading: the transport reads large chunks and hands whatever it has to
 * framing_parse, which delivers each whole frame where it lies in the
 * read buffer (no copy) and says how many bytes it used; the transport
 * keeps the partial frame at the end for the next read. Each length is
 * checked before anything depends on it: a length that no honest peer
 * sends (shorter than an Ethernet header, or longer than the link's
 * limit) means the stream is garbage and the connection must go, as in
 * passt's tap.c; a frame merely longer than the MTU allows is skipped.
 *
 * Writing: send() appends a prefix and the frame to a linear buffer and
 * flush() writes it with one write(). A partial write leaves the rest
 * between head and tail; appending compacts the buffer when the tail end
 * has no room, which happens only after a partial write.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <base/endian.h>

#include "daemon.h"

size_t framing_hdr_len(enum framing_kind kind)
{
	return kind == FRAMING_LE16 ? 2 : 4;
}

size_t framing_hdr_put(enum framing_kind kind, uint8_t hdr[4], size_t len)
{
	if (kind == FRAMING_LE16) {
		store_le16(hdr, (uint16_t)len);
		return 2;
	}
	store_be32(hdr, (uint32_t)len);
	return 4;
}

ssize_t framing_parse(struct framing *fr, const uint8_t *buf, size_t len,
		      framing_fn *fn, void *opaque)
{
	size_t hlen = framing_hdr_len(fr->kind), pos = 0;
	uint32_t flen;
	int ret;

	while (len - pos >= hlen) {
		flen = fr->kind == FRAMING_LE16 ? load_le16(buf + pos) :
						  load_be32(buf + pos);
		if (flen < FRAME_MIN || flen > fr->max_len)
			return -EPROTO;
		if (len - pos - hlen < flen)
			break;
		if (flen > fr->max_frame) {
			fr->dropped++;
		} else {
			ret = fn(opaque, buf + pos + hlen, flen);
			if (ret < 0)
				return ret;
		}
		pos += hlen + flen;
	}
	return (ssize_t)pos;
}

int outbuf_init(struct outbuf *ob, size_t size)
{
	ob->buf = malloc(size);
	if (!ob->buf)
		return -ENOMEM;
	ob->size = size;
	ob->head = ob->tail = 0;
	return 0;
}

void outbuf_release(struct outbuf *ob)
{
	free(ob->buf);
	ob->buf = NULL;
	ob->size = ob->head = ob->tail = 0;
}

bool outbuf_append(struct outbuf *ob, const void *hdr, size_t hdr_len,
		   const struct iovec *iov, int iovcnt)
{
	size_t need = hdr_len;
	uint8_t *p;

	for (int i = 0; i < iovcnt; i++) {
		if (__builtin_add_overflow(need, iov[i].iov_len, &need))
			return false;
	}
	if (need > ob->size - outbuf_len(ob))
		return false;
	if (need > ob->size - ob->tail) {
		memmove(ob->buf, ob->buf + ob->head, outbuf_len(ob));
		ob->tail -= ob->head;
		ob->head = 0;
	}
	p = ob->buf + ob->tail;
	if (hdr_len) {
		memcpy(p, hdr, hdr_len);
		p += hdr_len;
	}
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len) {
			memcpy(p, iov[i].iov_base, iov[i].iov_len);
			p += iov[i].iov_len;
		}
	}
	ob->tail += need;
	return true;
}

int outbuf_flush(struct outbuf *ob, int fd)
{
	ssize_t n;

	while (ob->head < ob->tail) {
		n = write(fd, ob->buf + ob->head, ob->tail - ob->head);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EWOULDBLOCK ? -EAGAIN : -errno;
		}
		ob->head += (size_t)n;
	}
	ob->head = ob->tail = 0;
	return 0;
}
