// SPDX-License-Identifier: MIT
/*
 * Unit tests for the daemon's stream framing and output buffer
 * (vpnkit/daemon/framing.c, included here: it is part of the program,
 * not of the library).
 *
 * framing_parse is fed as the daemon feeds it: whatever a read gave,
 * appended to what was left over, the consumed prefix then cut off. The
 * reassembly test splits a stream of frames of every size class at
 * random points (seeded) and checks that exactly the frames sent come
 * out, in order. Then the limits: lengths that break the stream, frames
 * that are only dropped. The output buffer is flushed into a socketpair
 * with a small send buffer, so partial writes and compaction happen.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <base/endian.h>
#include <base/test.h>

/* The program's source, not the library's: the test builds it in. */
#include "../daemon/framing.c" /* NOLINT(bugprone-suspicious-include) */

/* What the delivery callback saw. */
struct seen {
	uint8_t *data; /* frames back to back */
	size_t len;
	size_t frames;
	size_t lens[4096];
	int stop_after; /* return -ECANCELED after this many; 0: never */
};

static int collect(void *opaque, const uint8_t *frame, size_t len)
{
	struct seen *s = opaque;

	if (s->stop_after && (int)s->frames == s->stop_after)
		return -ECANCELED;
	ASSERT_LT_U64(s->frames, 4096);
	memcpy(s->data + s->len, frame, len);
	s->len += len;
	s->lens[s->frames++] = len;
	return 0;
}

static struct seen *seen_new(size_t cap)
{
	struct seen *s = calloc(1, sizeof(*s));

	ASSERT_NOT_NULL(s);
	s->data = malloc(cap);
	ASSERT_NOT_NULL(s->data);
	return s;
}

/* xorshift: the same "random" stream on every run. */
static uint32_t rnd_state = 4242;

static unsigned rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 17;
	rnd_state ^= rnd_state << 5;
	return rnd_state;
}

static size_t put_frame(enum framing_kind kind, uint8_t *out, size_t len,
			uint8_t fill)
{
	size_t h = kind == FRAMING_LE16 ? 2 : 4;

	if (kind == FRAMING_LE16)
		store_le16(out, (uint16_t)len);
	else
		store_be32(out, (uint32_t)len);
	for (size_t i = 0; i < len; i++)
		out[h + i] = (uint8_t)(fill + i);
	return h + len;
}

TEST(header_bytes)
{
	uint8_t h[4] = { 0 };

	ASSERT_EQ_U64(framing_hdr_put(FRAMING_LE16, h, 0x05dc), 2);
	ASSERT_EQ_U64(h[0], 0xdc);
	ASSERT_EQ_U64(h[1], 0x05);
	ASSERT_EQ_U64(framing_hdr_put(FRAMING_BE32, h, 0x05dc), 4);
	ASSERT_EQ_MEM(h, "\x00\x00\x05\xdc", 4);
	ASSERT_EQ_U64(framing_hdr_len(FRAMING_LE16), 2);
	ASSERT_EQ_U64(framing_hdr_len(FRAMING_BE32), 4);
}

/* Split a stream of frames at random points; every frame must come out
 * once, whole and in order. */
static void reassemble(enum framing_kind kind, uint32_t max_len)
{
	struct framing fr = { .kind = kind,
			      .max_len = max_len,
			      .max_frame = max_len };
	size_t cap = 8u << 20, total = 0, want_frames = 0, fed = 0;
	uint8_t *stream = malloc(cap), *rbuf = malloc(256 * 1024);
	uint8_t *expect = malloc(cap);
	size_t expect_len = 0, have = 0;
	struct seen *s = seen_new(cap);

	ASSERT_NOT_NULL(stream);
	ASSERT_NOT_NULL(rbuf);
	ASSERT_NOT_NULL(expect);
	while (want_frames < 600) {
		size_t len;

		switch (rnd() % 4) {
		case 0:
			len = 14 + (size_t)rnd() % 50;
			break;
		case 1:
			len = 60 + (size_t)rnd() % 1500;
			if (len > max_len)
				len = max_len;
			break;
		case 2:
			len = max_len - (size_t)rnd() % 100;
			break;
		default:
			len = 14 + (size_t)rnd() % (max_len - 13);
		}
		if (total + 4 + len > cap)
			break;
		total += put_frame(kind, stream + total, len,
				   (uint8_t)want_frames);
		memcpy(expect + expect_len, stream + total - len, len);
		expect_len += len;
		want_frames++;
	}
	/* Feed it like the daemon: read chunks of random size into the
	 * free space of a 256 KiB buffer, parse, keep the rest. */
	while (fed < total) {
		size_t space = 256 * 1024 - have;
		size_t n = 1 + (size_t)rnd() % (rnd() % 3 ? 3000 : 200000);
		ssize_t used;

		if (n > space)
			n = space;
		if (n > total - fed)
			n = total - fed;
		memcpy(rbuf + have, stream + fed, n);
		fed += n;
		have += n;
		used = framing_parse(&fr, rbuf, have, collect, s);
		ASSERT_GE_INT(used, 0);
		memmove(rbuf, rbuf + used, have - (size_t)used);
		have -= (size_t)used;
	}
	ASSERT_EQ_U64(have, 0);
	ASSERT_EQ_U64(s->frames, want_frames);
	ASSERT_EQ_U64(s->len, expect_len);
	ASSERT_EQ_MEM(s->data, expect, expect_len);
	ASSERT_EQ_U64(fr.dropped, 0);
	free(stream);
	free(rbuf);
	free(expect);
	free(s->data);
	free(s);
}

TEST(reassembly_le16)
{
	reassemble(FRAMING_LE16, 1550);
}

TEST(reassembly_le16_max)
{
	reassemble(FRAMING_LE16, 65535);
}

TEST(reassembly_be32)
{
	reassemble(FRAMING_BE32, 65535);
}

TEST(partial_header_and_body_wait)
{
	struct framing fr = { .kind = FRAMING_BE32,
			      .max_len = 65535,
			      .max_frame = 1514 };
	struct seen *s = seen_new(1 << 16);
	uint8_t buf[128];
	size_t n = put_frame(FRAMING_BE32, buf, 60, 1);

	/* nothing, a partial prefix, a prefix and a partial body */
	ASSERT_EQ_INT(framing_parse(&fr, buf, 0, collect, s), 0);
	ASSERT_EQ_INT(framing_parse(&fr, buf, 3, collect, s), 0);
	ASSERT_EQ_INT(framing_parse(&fr, buf, 4, collect, s), 0);
	ASSERT_EQ_INT(framing_parse(&fr, buf, n - 1, collect, s), 0);
	ASSERT_EQ_U64(s->frames, 0);
	ASSERT_EQ_INT(framing_parse(&fr, buf, n, collect, s), (intmax_t)n);
	ASSERT_EQ_U64(s->frames, 1);
	ASSERT_EQ_U64(s->lens[0], 60);
	free(s->data);
	free(s);
}

TEST(bad_lengths_break_the_stream)
{
	struct framing le = { .kind = FRAMING_LE16,
			      .max_len = 1550,
			      .max_frame = 1514 };
	struct framing be = { .kind = FRAMING_BE32,
			      .max_len = 65535,
			      .max_frame = 1514 };
	struct seen *s = seen_new(1 << 17);
	uint8_t buf[8];

	/* shorter than an Ethernet header: even the prefix alone is enough
	 * to know, the body need not have arrived */
	store_le16(buf, 13);
	ASSERT_ERR(framing_parse(&le, buf, 2, collect, s), -EPROTO);
	store_le16(buf, 0);
	ASSERT_ERR(framing_parse(&le, buf, 2, collect, s), -EPROTO);
	/* longer than the announced maximum */
	store_le16(buf, 1551);
	ASSERT_ERR(framing_parse(&le, buf, 2, collect, s), -EPROTO);
	store_be32(buf, 13);
	ASSERT_ERR(framing_parse(&be, buf, 4, collect, s), -EPROTO);
	store_be32(buf, 65536);
	ASSERT_ERR(framing_parse(&be, buf, 4, collect, s), -EPROTO);
	store_be32(buf, 0x01000000);
	ASSERT_ERR(framing_parse(&be, buf, 4, collect, s), -EPROTO);
	ASSERT_EQ_U64(s->frames, 0);
	free(s->data);
	free(s);
}

TEST(over_mtu_frames_are_dropped_in_step)
{
	struct framing fr = { .kind = FRAMING_BE32,
			      .max_len = 65535,
			      .max_frame = 1514 };
	struct seen *s = seen_new(1 << 17);
	uint8_t *buf = malloc(70000);
	size_t n = 0;

	ASSERT_NOT_NULL(buf);
	n += put_frame(FRAMING_BE32, buf + n, 1514, 1); /* at the limit */
	n += put_frame(FRAMING_BE32, buf + n, 1515, 2); /* dropped */
	n += put_frame(FRAMING_BE32, buf + n, 65535, 3); /* dropped */
	n += put_frame(FRAMING_BE32, buf + n, 14, 4);
	ASSERT_EQ_INT(framing_parse(&fr, buf, n, collect, s), (intmax_t)n);
	ASSERT_EQ_U64(s->frames, 2);
	ASSERT_EQ_U64(s->lens[0], 1514);
	ASSERT_EQ_U64(s->lens[1], 14);
	ASSERT_EQ_U64(s->data[1514], 4); /* the fourth frame's first byte */
	ASSERT_EQ_U64(fr.dropped, 2);
	free(buf);
	free(s->data);
	free(s);
}

TEST(callback_error_stops)
{
	struct framing fr = { .kind = FRAMING_LE16,
			      .max_len = 1550,
			      .max_frame = 1514 };
	struct seen *s = seen_new(1 << 16);
	uint8_t buf[600];
	size_t n = 0;

	for (int i = 0; i < 5; i++)
		n += put_frame(FRAMING_LE16, buf + n, 100, (uint8_t)i);
	s->stop_after = 2;
	ASSERT_ERR(framing_parse(&fr, buf, n, collect, s), -ECANCELED);
	ASSERT_EQ_U64(s->frames, 2);
	free(s->data);
	free(s);
}

TEST(outbuf_append_limits)
{
	struct outbuf ob;
	uint8_t data[1000];
	struct iovec iov[2] = {
		{ .iov_base = data, .iov_len = 600 },
		{ .iov_base = data + 600, .iov_len = 300 },
	};

	memset(data, 7, sizeof(data));
	ASSERT_OK(outbuf_init(&ob, 2000));
	ASSERT_TRUE(outbuf_append(&ob, "\x01\x02", 2, iov, 2));
	ASSERT_EQ_U64(outbuf_len(&ob), 902);
	ASSERT_TRUE(outbuf_append(&ob, "\x01\x02", 2, iov, 2));
	ASSERT_EQ_U64(outbuf_len(&ob), 1804);
	/* 902 more do not fit in 196: nothing is appended */
	ASSERT_FALSE(outbuf_append(&ob, "\x01\x02", 2, iov, 2));
	ASSERT_EQ_U64(outbuf_len(&ob), 1804);
	ASSERT_TRUE(outbuf_append(&ob, NULL, 0, iov, 0));
	ASSERT_EQ_U64(ob.buf[0], 1);
	ASSERT_EQ_U64(ob.buf[2], 7);
	ASSERT_EQ_U64(ob.buf[902], 1);
	outbuf_release(&ob);
}

static size_t drain(int fd, uint8_t *out, size_t cap)
{
	size_t got = 0;
	ssize_t n;

	while (got < cap &&
	       (n = recv(fd, out + got, cap - got, MSG_DONTWAIT)) > 0)
		got += (size_t)n;
	return got;
}

TEST(outbuf_partial_writes_keep_order)
{
	struct outbuf ob;
	int sv[2], small = 4096;
	size_t sent = 0, got = 0, total = 3u << 20;
	uint8_t *want = malloc(total), *recvd = malloc(total);
	uint8_t frame[1500], hdr[2];
	unsigned seq = 0;
	bool saw_eagain = false;

	ASSERT_NOT_NULL(want);
	ASSERT_NOT_NULL(recvd);
	ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv));
	ASSERT_OK(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small,
			     sizeof(small)));
	ASSERT_OK(outbuf_init(&ob, 64 * 1024));
	while (sent < total - 2000) {
		struct iovec iov = { .iov_base = frame };
		int r;

		iov.iov_len = 14 + seq * 7919 % 1400;
		for (size_t i = 0; i < iov.iov_len; i++)
			frame[i] = (uint8_t)(seq + i);
		store_le16(hdr, (uint16_t)iov.iov_len);
		if (!outbuf_append(&ob, hdr, 2, &iov, 1)) {
			/* full: flush, let the reader take some, retry */
			r = outbuf_flush(&ob, sv[0]);
			if (r == -EAGAIN)
				saw_eagain = true;
			else
				ASSERT_OK(r);
			got += drain(sv[1], recvd + got, total - got);
			continue;
		}
		memcpy(want + sent, hdr, 2);
		memcpy(want + sent + 2, frame, iov.iov_len);
		sent += 2 + iov.iov_len;
		seq++;
	}
	while (outbuf_flush(&ob, sv[0]) == -EAGAIN)
		got += drain(sv[1], recvd + got, total - got);
	got += drain(sv[1], recvd + got, total - got);
	ASSERT_TRUE(saw_eagain);
	ASSERT_EQ_U64(outbuf_len(&ob), 0);
	ASSERT_EQ_U64(got, sent);
	ASSERT_EQ_MEM(recvd, want, sent);
	outbuf_release(&ob);
	close(sv[0]);
	close(sv[1]);
	free(want);
	free(recvd);
}

TEST(outbuf_flush_reports_errors)
{
	struct outbuf ob;
	int sv[2];
	struct iovec iov = { .iov_base = "0123456789abcdef", .iov_len = 16 };

	signal(SIGPIPE, SIG_IGN); /* as the daemon does */
	ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv));
	ASSERT_OK(outbuf_init(&ob, 4096));
	ASSERT_OK(outbuf_flush(&ob, sv[0])); /* empty */
	ASSERT_TRUE(outbuf_append(&ob, NULL, 0, &iov, 1));
	close(sv[1]);
	ASSERT_ERR(outbuf_flush(&ob, sv[0]), -EPIPE);
	outbuf_release(&ob);
	close(sv[0]);
}

static const struct test_case tests[] = {
	TEST_CASE(header_bytes),
	TEST_CASE(reassembly_le16),
	TEST_CASE(reassembly_le16_max),
	TEST_CASE(reassembly_be32),
	TEST_CASE(partial_header_and_body_wait),
	TEST_CASE(bad_lengths_break_the_stream),
	TEST_CASE(over_mtu_frames_are_dropped_in_step),
	TEST_CASE(callback_error_stops),
	TEST_CASE(outbuf_append_limits),
	TEST_CASE(outbuf_partial_writes_keep_order),
	TEST_CASE(outbuf_flush_reports_errors),
};

TEST_MAIN(tests);
