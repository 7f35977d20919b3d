// SPDX-License-Identifier: MIT
/*
 * The 9P relay of virtio-9p against a fake 9P server: the test holds the
 * other end of a socketpair, reads the T-messages the relay sends and
 * writes R-messages back (whole, split, out of order, too big, garbage).
 * Requests are chains over host buffers, as the device would pop them.
 * Also the `-s` option's parsing and its connection errors.
 */
#include <base/endian.h>
#include <base/test.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../virtio_9p.h"
#include "fake_platform.h"

#define NREQ 8
#define BUF 256

/* What the relay handed back. */
static struct {
	unsigned n_done;
	uint16_t head[64];
	uint32_t len[64];
	int closed_fd;
} seen;

static void on_done(void *opaque, uint16_t head, uint32_t len)
{
	(void)opaque;
	if (seen.n_done < 64) {
		seen.head[seen.n_done] = head;
		seen.len[seen.n_done] = len;
	}
	seen.n_done++;
}

static void on_closing(void *opaque, int fd)
{
	(void)opaque;
	seen.closed_fd = fd;
	close(fd);
}

static const struct hk_p9relay_ops ops = { on_done, on_closing };

/* Per request: its T-message and reply buffers (the reply split in two
 * iovecs of in1 and in2 bytes). */
static uint8_t tmsg[NREQ][BUF], rbuf[NREQ][BUF];
static struct hk_vq_chain chain;

static struct hk_p9relay *setup(int *server)
{
	struct hk_p9relay *r = NULL;
	int sv[2];

	memset(&seen, 0, sizeof(seen));
	seen.closed_fd = -1;
	ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
	ASSERT_OK(hk_p9relay_new(&r, 4, &ops, NULL, NULL));
	hk_p9relay_set_fd(r, sv[0]);
	*server = sv[1];
	return r;
}

/* Build a T-message of type with tag and body into tmsg[i]; returns its
 * size. */
static uint32_t tmake(unsigned i, uint8_t type, uint16_t tag, const void *body,
		      uint32_t blen)
{
	store_le32(tmsg[i], 7 + blen);
	tmsg[i][4] = type;
	store_le16(tmsg[i] + 5, tag);
	memcpy(tmsg[i] + 7, body, blen);
	return 7 + blen;
}

/* Submit request i (head i) with its message in one iovec (out bytes)
 * and room for in bytes of reply in two iovecs. */
static void submit(struct hk_p9relay *r, unsigned i, uint32_t out, size_t in)
{
	memset(&chain, 0, sizeof(chain));
	memset(rbuf[i], 0xee, BUF);
	chain.head = (uint16_t)i;
	chain.iov[0] = (struct iovec){ tmsg[i], out };
	chain.iov[1] = (struct iovec){ rbuf[i], in / 2 };
	chain.iov[2] = (struct iovec){ rbuf[i] + in / 2, in - in / 2 };
	chain.n_out = 1;
	chain.n_in = 2;
	chain.out_len = out;
	chain.in_len = in;
	hk_p9relay_submit(r, &chain);
}

/* The server reads one whole T-message and checks its header. */
static void server_expect(int s, uint8_t type, uint16_t tag, uint32_t size)
{
	uint8_t m[BUF];
	ssize_t n = recv(s, m, size, MSG_DONTWAIT);

	ASSERT_EQ_INT(n, size);
	ASSERT_EQ_U64(load_le32(m), size);
	ASSERT_EQ_U64(m[4], type);
	ASSERT_EQ_U64(load_le16(m + 5), tag);
}

static void server_nothing(int s)
{
	uint8_t m[BUF];

	ASSERT_EQ_INT(recv(s, m, sizeof(m), MSG_DONTWAIT), -1);
	ASSERT_EQ_INT(errno, EAGAIN);
}

/* The server sends an R-message (type, tag, body). */
static void server_reply(int s, uint8_t type, uint16_t tag, const void *body,
			 uint32_t blen)
{
	uint8_t m[BUF * 4];

	store_le32(m, 7 + blen);
	m[4] = type;
	store_le16(m + 5, tag);
	memcpy(m + 7, body, blen);
	ASSERT_EQ_INT(write(s, m, 7 + blen), 7 + blen);
}

static void check_rlerror(unsigned i, uint16_t tag, unsigned k)
{
	ASSERT_EQ_U64(seen.head[k], i);
	ASSERT_EQ_U64(seen.len[k], 11);
	ASSERT_EQ_U64(load_le32(rbuf[i]), 11);
	ASSERT_EQ_U64(rbuf[i][4], HK_P9_RLERROR);
	ASSERT_EQ_U64(load_le16(rbuf[i] + 5), tag);
	ASSERT_EQ_U64(load_le32(rbuf[i] + 7), EIO);
}

static const uint8_t version_l[] = { 0,	  0,   2,   0,	 8,   0,   '9',
				     'P', '2', '0', '0', '0', '.', 'L' };

TEST(roundtrip)
{
	int s;
	struct hk_p9relay *r = setup(&s);

	submit(r, 0,
	       tmake(0, HK_P9_TVERSION, 0xffff, version_l, sizeof(version_l)),
	       BUF);
	ASSERT_TRUE(hk_p9relay_spoken(r));
	ASSERT_EQ_U64(hk_p9relay_events(r), EPOLLIN); /* all sent */
	server_expect(s, HK_P9_TVERSION, 0xffff, 7 + sizeof(version_l));
	ASSERT_EQ_U64(seen.n_done, 0);
	server_reply(s, HK_P9_RVERSION, 0xffff, version_l, sizeof(version_l));
	hk_p9relay_io(r, EPOLLIN);
	ASSERT_EQ_U64(seen.n_done, 1);
	ASSERT_EQ_U64(seen.head[0], 0);
	ASSERT_EQ_U64(seen.len[0], 7 + sizeof(version_l));
	/* The reply crossed both iovecs of the writable part. */
	ASSERT_EQ_U64(rbuf[0][4], HK_P9_RVERSION);
	ASSERT_EQ_MEM(rbuf[0] + 7, version_l, sizeof(version_l));
	ASSERT_EQ_U64(rbuf[0][7 + sizeof(version_l)], 0xee);
	ASSERT_TRUE(hk_p9relay_has_room(r));
	hk_p9relay_free(r);
	ASSERT_EQ_INT(seen.closed_fd >= 0, 1);
	close(s);
}

TEST(replies_out_of_order_and_split)
{
	int s;
	struct hk_p9relay *r = setup(&s);
	uint8_t body[40], m[64];

	for (unsigned i = 0; i < sizeof(body); i++)
		body[i] = (uint8_t)(i + 1);
	submit(r, 1, tmake(1, 110, 11, "a", 1), 64);
	submit(r, 2, tmake(2, 110, 22, "b", 1), 64);
	server_expect(s, 110, 11, 8);
	server_expect(s, 110, 22, 8);
	server_reply(s, 111, 22, body, 20);
	/* The other reply arrives a few bytes at a time. */
	store_le32(m, 7 + sizeof(body));
	m[4] = 111;
	store_le16(m + 5, 11);
	memcpy(m + 7, body, sizeof(body));
	hk_p9relay_io(r, EPOLLIN);
	ASSERT_EQ_U64(seen.n_done, 1);
	ASSERT_EQ_U64(seen.head[0], 2);
	ASSERT_EQ_U64(seen.len[0], 27);
	ASSERT_EQ_MEM(rbuf[2] + 7, body, 20);
	for (unsigned off = 0; off < 7 + sizeof(body); off += 3) {
		size_t n = 7 + sizeof(body) - off < 3 ? 7 + sizeof(body) - off :
							3;

		ASSERT_EQ_INT(write(s, m + off, n), n);
		ASSERT_EQ_U64(seen.n_done, 1);
		hk_p9relay_io(r, EPOLLIN);
	}
	ASSERT_EQ_U64(seen.n_done, 2);
	ASSERT_EQ_U64(seen.head[1], 1);
	ASSERT_EQ_U64(seen.len[1], 7 + sizeof(body));
	ASSERT_EQ_MEM(rbuf[1] + 7, body, sizeof(body));
	ASSERT_EQ_INT(seen.closed_fd, -1); /* still connected */
	hk_p9relay_free(r);
	close(s);
}

TEST(reply_too_big_becomes_rlerror)
{
	int s;
	struct hk_p9relay *r = setup(&s);
	uint8_t big[200];

	memset(big, 0x55, sizeof(big));
	submit(r, 0, tmake(0, 116, 7, "x", 1), 16);
	server_expect(s, 116, 7, 8);
	server_reply(s, 117, 7, big, sizeof(big));
	hk_p9relay_io(r, EPOLLIN);
	ASSERT_EQ_U64(seen.n_done, 1);
	check_rlerror(0, 7, 0);
	/* Not a byte of the big reply reached past the buffer's end, and
	 * the connection still works. */
	ASSERT_EQ_U64(rbuf[0][16], 0xee);
	ASSERT_EQ_INT(seen.closed_fd, -1);
	submit(r, 1, tmake(1, 116, 8, "y", 1), 16);
	server_expect(s, 116, 8, 8);
	server_reply(s, 117, 8, "ok", 2);
	hk_p9relay_io(r, EPOLLIN);
	ASSERT_EQ_U64(seen.n_done, 2);
	ASSERT_EQ_U64(seen.len[1], 9);
	hk_p9relay_free(r);
	close(s);
}

/* Each kind of garbage disconnects and fails both pending requests. */
static void garbage(const uint8_t *hdr7)
{
	int s;
	struct hk_p9relay *r = setup(&s);

	submit(r, 0, tmake(0, 110, 1, "a", 1), 64);
	submit(r, 1, tmake(1, 110, 2, "b", 1), 64);
	ASSERT_EQ_INT(write(s, hdr7, 7), 7);
	hk_p9relay_io(r, EPOLLIN);
	ASSERT_EQ_U64(seen.n_done, 2);
	check_rlerror(0, 1, 0);
	check_rlerror(1, 2, 1);
	ASSERT_NE_INT(seen.closed_fd, -1);
	ASSERT_EQ_INT(hk_p9relay_fd(r), -1);
	ASSERT_EQ_U64(hk_p9relay_events(r), 0);
	/* While disconnected, a request is answered at once. */
	submit(r, 2, tmake(2, 110, 3, "c", 1), 64);
	ASSERT_EQ_U64(seen.n_done, 3);
	check_rlerror(2, 3, 2);
	hk_p9relay_free(r);
	close(s);
}

TEST(garbage_from_server)
{
	static const uint8_t small[7] = { 3, 0, 0, 0, 111, 1, 0 };
	static const uint8_t huge[7] = { 0, 0, 0, 0x7f, 111, 1, 0 };
	static const uint8_t tmsg_type[7] = { 7, 0, 0, 0, 110, 1, 0 };
	static const uint8_t stranger[7] = { 7, 0, 0, 0, 111, 9, 0 };

	garbage(small);
	garbage(huge);
	garbage(tmsg_type);
	garbage(stranger);
}

TEST(server_hangs_up)
{
	int s;
	struct hk_p9relay *r = setup(&s);

	submit(r, 0, tmake(0, 110, 1, "a", 1), 64);
	close(s);
	hk_p9relay_io(r, EPOLLIN | EPOLLHUP);
	ASSERT_EQ_U64(seen.n_done, 1);
	check_rlerror(0, 1, 0);
	ASSERT_EQ_INT(hk_p9relay_fd(r), -1);
	hk_p9relay_free(r);
}

TEST(malformed_requests_never_reach_the_server)
{
	int s;
	struct hk_p9relay *r = setup(&s);
	uint32_t n = tmake(0, 110, 5, "abc", 3);

	/* size larger than the readable part */
	submit(r, 0, n - 1, 64);
	check_rlerror(0, 5, 0);
	/* an R-message type from the guest */
	n = tmake(1, 111, 6, "abc", 3);
	submit(r, 1, n, 64);
	check_rlerror(1, 6, 1);
	/* size below the header */
	n = tmake(2, 110, 7, "", 0);
	store_le32(tmsg[2], 3);
	submit(r, 2, n, 64);
	check_rlerror(2, 7, 2);
	/* shorter than a header: no tag to answer, length 0 */
	submit(r, 3, 5, 64);
	ASSERT_EQ_U64(seen.len[3], 0);
	/* a tag already in flight */
	submit(r, 0, tmake(0, 110, 9, "a", 1), 64);
	submit(r, 1, tmake(1, 110, 9, "b", 1), 64);
	ASSERT_EQ_U64(seen.n_done, 5);
	check_rlerror(1, 9, 4);
	/* no room for even an error reply: length 0 */
	submit(r, 2, tmake(2, 111, 10, "", 0), 4);
	ASSERT_EQ_U64(seen.len[5], 0);
	server_expect(s, 110, 9, 8); /* only the good one */
	server_nothing(s);
	hk_p9relay_free(r);
	close(s);
}

TEST(flush_returns_the_flushed_chain)
{
	int s;
	struct hk_p9relay *r = setup(&s);
	uint8_t old[2];

	submit(r, 0, tmake(0, 116, 5, "x", 1), 64);
	store_le16(old, 5);
	submit(r, 1, tmake(1, HK_P9_TFLUSH, 6, old, 2), 64);
	server_expect(s, 116, 5, 8);
	server_expect(s, HK_P9_TFLUSH, 6, 9);
	server_reply(s, HK_P9_RFLUSH, 6, "", 0);
	hk_p9relay_io(r, EPOLLIN);
	ASSERT_EQ_U64(seen.n_done, 2);
	ASSERT_EQ_U64(seen.head[0], 0); /* the flushed one: no reply */
	ASSERT_EQ_U64(seen.len[0], 0);
	ASSERT_EQ_U64(seen.head[1], 1);
	ASSERT_EQ_U64(seen.len[1], 7);
	hk_p9relay_free(r);
	close(s);
}

TEST(dialect_of_error_replies)
{
	static const uint8_t version_u[] = {
		0, 0, 2, 0, 8, 0, '9', 'P', '2', '0', '0', '0', '.', 'u'
	};
	int s;
	struct hk_p9relay *r = setup(&s);

	submit(r, 0,
	       tmake(0, HK_P9_TVERSION, 0xffff, version_u, sizeof(version_u)),
	       BUF);
	server_reply(s, HK_P9_RVERSION, 0xffff, version_u, sizeof(version_u));
	hk_p9relay_io(r, EPOLLIN);
	ASSERT_EQ_U64(seen.n_done, 1);
	/* Rerror: ename[s] "I/O error" and errno[4]. */
	submit(r, 1, tmake(1, 111, 3, "", 0), 64);
	ASSERT_EQ_U64(seen.n_done, 2);
	ASSERT_EQ_U64(seen.len[1], 7 + 2 + 9 + 4);
	ASSERT_EQ_U64(rbuf[1][4], HK_P9_RERROR);
	ASSERT_EQ_U64(load_le16(rbuf[1] + 7), 9);
	ASSERT_EQ_MEM(rbuf[1] + 9, "I/O error", 9);
	ASSERT_EQ_U64(load_le32(rbuf[1] + 18), EIO);
	hk_p9relay_free(r);
	close(s);
}

TEST(bad_conf)
{
	struct hk_vm *vm = fake_vm_new(1 << 20);
	char conf[200];

	ASSERT_NOT_NULL(vm);
	ASSERT_ERR(hk_virtio_9p_create(vm, 4, 0, NULL), -EINVAL);
	ASSERT_ERR(hk_virtio_9p_create(vm, 4, 0, "tag=share"), -EINVAL);
	ASSERT_ERR(hk_virtio_9p_create(vm, 4, 0, "port=1234"), -EINVAL);
	ASSERT_ERR(hk_virtio_9p_create(vm, 4, 0, "port=0,tag=x"), -EINVAL);
	ASSERT_ERR(hk_virtio_9p_create(vm, 4, 0, "port=70000,tag=x"), -EINVAL);
	ASSERT_ERR(hk_virtio_9p_create(vm, 4, 0, "port=1,tag=x,cache=1"),
		   -EINVAL);
	snprintf(conf, sizeof(conf), "port=1,tag=%0*d", HK_P9_TAG_MAX + 1, 0);
	ASSERT_ERR(hk_virtio_9p_create(vm, 4, 0, conf), -EINVAL);
	/* Well formed, but nobody listens there. */
	snprintf(conf, sizeof(conf), "path=%s/none.sock,tag=x", test_tmpdir());
	ASSERT_ERR(hk_virtio_9p_create(vm, 4, 0, conf), -ENOENT);
	fake_vm_free(vm);
}

static const struct test_case tests[] = {
	TEST_CASE(roundtrip),
	TEST_CASE(replies_out_of_order_and_split),
	TEST_CASE(reply_too_big_becomes_rlerror),
	TEST_CASE(garbage_from_server),
	TEST_CASE(server_hangs_up),
	TEST_CASE(malformed_requests_never_reach_the_server),
	TEST_CASE(flush_returns_the_flushed_chain),
	TEST_CASE(dialect_of_error_replies),
	TEST_CASE(bad_conf),
};

TEST_MAIN(tests);
