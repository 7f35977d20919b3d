/* SPDX-License-Identifier: MIT */
/*
 * Compressed clusters: raw deflate (no zlib header, 4 KiB window, as qemu
 * writes it) and zstd frames. Decompression must fill the whole cluster;
 * input may carry trailing bytes up to the end of its last 512-byte sector.
 */
#include <errno.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "internal.h"

int qcow_decompress(enum qcow_compression t, const uint8_t *in, size_t inlen,
		    uint8_t *out, size_t outlen)
{
	if (t == QCOW_COMPRESSION_ZLIB) {
		z_stream s;
		int r;

		memset(&s, 0, sizeof(s));
		if (inflateInit2(&s, -12) != Z_OK)
			return -ENOMEM;
		s.next_in = (Bytef *)in;
		s.avail_in = (uInt)inlen;
		s.next_out = out;
		s.avail_out = (uInt)outlen;
		r = inflate(&s, Z_FINISH);
		inflateEnd(&s);
		if ((r == Z_STREAM_END || r == Z_BUF_ERROR) && s.avail_out == 0)
			return 0;
		return -EIO;
	}
	if (t == QCOW_COMPRESSION_ZSTD) {
		ZSTD_DCtx *d = ZSTD_createDCtx();
		ZSTD_inBuffer ib = { in, inlen, 0 };
		ZSTD_outBuffer ob = { out, outlen, 0 };
		int ret = -EIO;

		if (!d)
			return -ENOMEM;
		for (;;) {
			size_t in0 = ib.pos, out0 = ob.pos;
			size_t r = ZSTD_decompressStream(d, &ob, &ib);

			if (ZSTD_isError(r) || ob.pos == ob.size || r == 0)
				break;
			if (ib.pos == in0 && ob.pos == out0)
				break;	/* no progress: input exhausted */
		}
		if (ob.pos == ob.size)
			ret = 0;
		ZSTD_freeDCtx(d);
		return ret;
	}
	return -ENOTSUP;
}

/* Compress into out; returns the compressed length, or -ENOSPC when it
 * would not fit (the caller then stores the cluster uncompressed). */
ssize_t qcow_compress(enum qcow_compression t, const uint8_t *in, size_t inlen,
		      uint8_t *out, size_t outlen)
{
	if (t == QCOW_COMPRESSION_ZLIB) {
		z_stream s;
		int r;

		memset(&s, 0, sizeof(s));
		if (deflateInit2(&s, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9,
				 Z_DEFAULT_STRATEGY) != Z_OK)
			return -ENOMEM;
		s.next_in = (Bytef *)in;
		s.avail_in = (uInt)inlen;
		s.next_out = out;
		s.avail_out = (uInt)outlen;
		r = deflate(&s, Z_FINISH);
		size_t n = outlen - s.avail_out;

		deflateEnd(&s);
		return r == Z_STREAM_END ? (ssize_t)n : -ENOSPC;
	}
	if (t == QCOW_COMPRESSION_ZSTD) {
		size_t r = ZSTD_compress(out, outlen, in, inlen, ZSTD_CLEVEL_DEFAULT);

		if (ZSTD_isError(r))
			return -ENOSPC;
		return (ssize_t)r;
	}
	return -ENOTSUP;
}
