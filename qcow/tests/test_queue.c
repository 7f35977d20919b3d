// SPDX-License-Identifier: MIT
/*
 * Unit tests for qcow/queue.c, the asynchronous request queue: limits,
 * -EAGAIN when depth requests are in flight, every request completed
 * exactly once with its result, data written through the queue read back
 * (through the queue and directly), requests still queued when the queue
 * is freed, and a randomised run at depths 1, 4 and 32 against a shadow
 * copy of the disk, with requests in flight at the same time sharing
 * clusters but never bytes.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <base/test.h>
#include <qcow/qcow.h>

#define CS 65536u
#define DISK (16u << 20)

static uint64_t rng_state;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static uint64_t rnd_below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

static struct qcow_image *new_image(uint32_t cs)
{
	char path[PATH_MAX];
	struct qcow_create_opts co = { .size = DISK, .cluster_size = cs };
	struct qcow_open_opts oo = { .read_write = true };
	struct qcow_error err = { 0 };
	struct qcow_image *img = NULL;

	snprintf(path, sizeof(path), "%s/q.qcow2", test_tmpdir());
	if (qcow_create(path, &co, &err) != 0)
		TEST_FAIL("qcow_create: %s", err.msg);
	if (qcow_image_open(&img, path, &oo, &err) != 0)
		TEST_FAIL("qcow_image_open: %s", err.msg);
	return img;
}

static struct qcow_queue *new_queue(struct qcow_image *img, unsigned depth)
{
	struct qcow_queue *q = NULL;

	ASSERT_OK(qcow_queue_new(&q, img, depth));
	ASSERT_NOT_NULL(q);
	return q;
}

static void fill(uint8_t *p, size_t n, uint8_t seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed + i * 7 + i / 251) | 1;
}

TEST(queue_limits)
{
	struct qcow_image *img = new_image(CS);
	struct qcow_queue *q = NULL;

	ASSERT_ERR(qcow_queue_new(&q, img, 0), -EINVAL);
	ASSERT_ERR(qcow_queue_new(&q, img, 1025), -EINVAL);
	q = new_queue(img, 1024);
	qcow_queue_free(q);
	qcow_queue_free(NULL);
	ASSERT_OK(qcow_image_close(img));
}

/* Reap exactly n completions, each of a distinct request from reqs. */
static void reap_all(struct qcow_queue *q, struct qcow_req *reqs, unsigned n)
{
	struct qcow_req **done = calloc(n ? n : 1, sizeof(*done));
	bool *seen = calloc(n ? n : 1, sizeof(*seen));
	unsigned got = 0;

	ASSERT_NOT_NULL(done);
	ASSERT_NOT_NULL(seen);
	while (got < n) {
		int k = qcow_queue_reap(q, done, 1, n - got);

		ASSERT_GE_INT(k, 1);
		ASSERT_LE_INT(k, n - got);
		for (int i = 0; i < k; i++) {
			ptrdiff_t idx = done[i] - reqs;

			ASSERT_TRUE(idx >= 0 && idx < (ptrdiff_t)n);
			ASSERT_FALSE(seen[idx]);
			seen[idx] = true;
			ASSERT_EQ_PTR(done[i]->user, &reqs[idx]);
		}
		got += (unsigned)k;
	}
	/* Nothing else is pending. */
	ASSERT_EQ_INT(qcow_queue_reap(q, done, 0, n), 0);
	free(done);
	free(seen);
}

/*
 * depth writes into one region cut at random points (so that neighbours
 * share clusters), -EAGAIN on one more, then the same as reads, then a
 * flush, a discard and a write-zeroes.
 */
static void basic(unsigned depth)
{
	struct qcow_image *img = new_image(CS);
	struct qcow_queue *q = new_queue(img, depth);
	struct qcow_req *reqs = calloc(depth, sizeof(*reqs));
	struct qcow_req extra = { .op = QCOW_OP_FLUSH };
	const size_t region = (size_t)depth * 20000 + 7;
	const uint64_t base = 3 * CS - 1234;
	uint8_t *data = malloc(region), *back = calloc(1, region);
	size_t *cut = calloc(depth + 1, sizeof(*cut));

	ASSERT_NOT_NULL(reqs);
	ASSERT_NOT_NULL(data);
	ASSERT_NOT_NULL(back);
	ASSERT_NOT_NULL(cut);
	rng_state = 0x1234567 + depth;
	fill(data, region, (uint8_t)depth);
	cut[0] = 0;
	cut[depth] = region;
	for (unsigned i = 1; i < depth; i++)
		cut[i] = (size_t)i * 20000 + rnd_below(15000);

	for (unsigned i = 0; i < depth; i++) {
		reqs[i] = (struct qcow_req){ .op = QCOW_OP_WRITE,
					     .buf = data + cut[i],
					     .len = cut[i + 1] - cut[i],
					     .offset = base + cut[i],
					     .result = -12345,
					     .user = &reqs[i] };
		ASSERT_OK(qcow_queue_submit(q, &reqs[i]));
	}
	/* Full until something is reaped, however fast the workers are. */
	ASSERT_ERR(qcow_queue_submit(q, &extra), -EAGAIN);
	reap_all(q, reqs, depth);
	for (unsigned i = 0; i < depth; i++)
		ASSERT_EQ_INT(reqs[i].result, (intmax_t)reqs[i].len);

	for (unsigned i = 0; i < depth; i++) {
		reqs[i].op = QCOW_OP_READ;
		reqs[i].buf = back + cut[i];
		reqs[i].result = -12345;
		ASSERT_OK(qcow_queue_submit(q, &reqs[i]));
	}
	ASSERT_ERR(qcow_queue_submit(q, &extra), -EAGAIN);
	reap_all(q, reqs, depth);
	for (unsigned i = 0; i < depth; i++)
		ASSERT_EQ_INT(reqs[i].result, (intmax_t)reqs[i].len);
	ASSERT_EQ_MEM(back, data, region);

	/* Flush, then discard the middle cluster and zero some bytes. */
	reqs[0] = (struct qcow_req){ .op = QCOW_OP_FLUSH,
				     .result = -1,
				     .user = &reqs[0] };
	ASSERT_OK(qcow_queue_submit(q, &reqs[0]));
	reap_all(q, reqs, 1);
	ASSERT_EQ_INT(reqs[0].result, 0);
	if (depth >= 2) {
		uint64_t disc = 4 * CS, zoff = base + 10, zlen = 100;

		reqs[0] = (struct qcow_req){ .op = QCOW_OP_DISCARD,
					     .len = CS,
					     .offset = disc,
					     .result = -1,
					     .user = &reqs[0] };
		reqs[1] = (struct qcow_req){ .op = QCOW_OP_WRITE_ZEROES,
					     .len = zlen,
					     .offset = zoff,
					     .result = -1,
					     .user = &reqs[1] };
		ASSERT_OK(qcow_queue_submit(q, &reqs[0]));
		ASSERT_OK(qcow_queue_submit(q, &reqs[1]));
		reap_all(q, reqs, 2);
		ASSERT_EQ_INT(reqs[0].result, CS);
		ASSERT_EQ_INT(reqs[1].result, zlen);
		if (disc + CS > base && disc < base + region)
			memset(data + (disc - base), 0,
			       disc + CS <= base + region ?
				       CS :
				       (size_t)(base + region - disc));
		memset(data + (zoff - base), 0, zlen);
	}
	/* Errors come back as results, not as submit failures. */
	reqs[0] = (struct qcow_req){ .op = QCOW_OP_READ,
				     .buf = back,
				     .len = 2,
				     .offset = DISK - 1,
				     .result = 0,
				     .user = &reqs[0] };
	ASSERT_OK(qcow_queue_submit(q, &reqs[0]));
	reap_all(q, reqs, 1);
	ASSERT_EQ_INT(reqs[0].result, -EINVAL);

	qcow_queue_free(q);
	/* Directly, after the queue is gone. */
	ASSERT_EQ_INT(qcow_image_pread(img, back, region, base),
		      (intmax_t)region);
	ASSERT_EQ_MEM(back, data, region);
	ASSERT_OK(qcow_image_close(img));
	free(reqs);
	free(data);
	free(back);
	free(cut);
}

TEST(depth_1)
{
	basic(1);
}

TEST(depth_4)
{
	basic(4);
}

TEST(depth_32)
{
	basic(32);
}

/* Requests still queued when the queue is freed are carried out. */
TEST(free_drains_requests)
{
	struct qcow_image *img = new_image(CS);
	struct qcow_queue *q = new_queue(img, 8);
	struct qcow_req reqs[8];
	static uint8_t data[8][5000], back[5000];

	for (int i = 0; i < 8; i++) {
		fill(data[i], sizeof(data[i]), (uint8_t)(i * 13));
		reqs[i] = (struct qcow_req){ .op = QCOW_OP_WRITE,
					     .buf = data[i],
					     .len = sizeof(data[i]),
					     .offset = (uint64_t)i * 70000,
					     .result = -12345 };
		ASSERT_OK(qcow_queue_submit(q, &reqs[i]));
	}
	qcow_queue_free(q);
	for (int i = 0; i < 8; i++) {
		ASSERT_EQ_INT(reqs[i].result, (intmax_t)sizeof(data[i]));
		ASSERT_EQ_INT(qcow_image_pread(img, back, sizeof(back),
					       (uint64_t)i * 70000),
			      (intmax_t)sizeof(back));
		ASSERT_EQ_MEM(back, data[i], sizeof(back));
	}
	ASSERT_OK(qcow_image_close(img));
}

/*
 * A random mix of requests at the given depth against a shadow copy.
 * Requests in flight together never share a byte (reads may overlap
 * reads), so each one's outcome is determined; they often share a
 * cluster. The shadow changes when a write is reaped; a read is checked
 * when it is reaped.
 */
struct slot {
	struct qcow_req req;
	uint8_t *buf;
	bool busy;
};

static bool overlaps(const struct slot *s, unsigned n, uint64_t off,
		     uint64_t len, bool is_read)
{
	for (unsigned i = 0; i < n; i++) {
		const struct qcow_req *r = &s[i].req;

		if (!s[i].busy || r->op == QCOW_OP_FLUSH)
			continue;
		if (is_read && r->op == QCOW_OP_READ)
			continue;
		if (off < r->offset + r->len && r->offset < off + len)
			return true;
	}
	return false;
}

static void complete(struct slot *s, uint8_t *shadow)
{
	struct qcow_req *r = &s->req;

	switch (r->op) {
	case QCOW_OP_READ:
		ASSERT_EQ_INT(r->result, (intmax_t)r->len);
		for (size_t i = 0; i < r->len; i++)
			if (s->buf[i] != shadow[r->offset + i])
				TEST_FAIL(
					"read at %llu: byte %llu is 0x%02x, want 0x%02x",
					(unsigned long long)r->offset,
					(unsigned long long)(r->offset + i),
					s->buf[i], shadow[r->offset + i]);
		break;
	case QCOW_OP_WRITE:
		ASSERT_EQ_INT(r->result, (intmax_t)r->len);
		memcpy(shadow + r->offset, s->buf, r->len);
		break;
	case QCOW_OP_WRITE_ZEROES:
		ASSERT_EQ_INT(r->result, (intmax_t)r->len);
		memset(shadow + r->offset, 0, r->len);
		break;
	case QCOW_OP_DISCARD: {
		/* Whole clusters inside the range read as zeros. */
		uint64_t a = (r->offset + CS - 1) / CS * CS;
		uint64_t b = (r->offset + r->len) / CS * CS;

		ASSERT_EQ_INT(r->result, (intmax_t)r->len);
		if (a < b)
			memset(shadow + a, 0, b - a);
		break;
	}
	case QCOW_OP_FLUSH:
		ASSERT_EQ_INT(r->result, 0);
		break;
	}
	s->busy = false;
}

static void random_run(unsigned depth, unsigned steps, uint64_t seed)
{
	struct qcow_image *img = new_image(CS);
	struct qcow_queue *q = new_queue(img, depth);
	struct slot *s = calloc(depth, sizeof(*s));
	struct qcow_req **done = calloc(depth, sizeof(*done));
	uint8_t *shadow = calloc(1, DISK);
	/* Keep the activity in the first 2 MiB, so requests collide. */
	const uint64_t span = 2u << 20;
	const size_t maxlen = 3 * CS;
	unsigned inflight = 0;

	ASSERT_NOT_NULL(s);
	ASSERT_NOT_NULL(done);
	ASSERT_NOT_NULL(shadow);
	rng_state = seed;
	for (unsigned i = 0; i < depth; i++) {
		s[i].buf = malloc(maxlen);
		ASSERT_NOT_NULL(s[i].buf);
	}
	for (unsigned step = 0; step < steps; step++) {
		/* Submit while there is room, then reap a few. */
		unsigned want = 1 + (unsigned)rnd_below(depth);

		while (inflight < want) {
			unsigned k = 0;

			while (s[k].busy)
				k++;
			struct slot *sl = &s[k];
			unsigned op = (unsigned)rnd_below(100);
			uint64_t len =
				1 + rnd_below(rnd_below(4) ? 4096 : maxlen);
			uint64_t off = rnd_below(span - len);
			bool is_read = op < 40;

			if (overlaps(s, depth, off, len, is_read))
				break; /* reap first */
			sl->req = (struct qcow_req){ .buf = sl->buf,
						     .len = len,
						     .offset = off,
						     .result = -12345,
						     .user = sl };
			if (is_read) {
				sl->req.op = QCOW_OP_READ;
				memset(sl->buf, 0xee, len);
			} else if (op < 85) {
				sl->req.op = QCOW_OP_WRITE;
				for (size_t i = 0; i < len; i++)
					sl->buf[i] = (uint8_t)rnd();
			} else if (op < 92) {
				sl->req.op = QCOW_OP_WRITE_ZEROES;
			} else if (op < 97) {
				sl->req.op = QCOW_OP_DISCARD;
			} else {
				sl->req.op = QCOW_OP_FLUSH;
				sl->req.len = 0;
			}
			ASSERT_OK(qcow_queue_submit(q, &sl->req));
			sl->busy = true;
			inflight++;
		}
		if (inflight == depth) {
			struct qcow_req extra = { .op = QCOW_OP_FLUSH };

			ASSERT_ERR(qcow_queue_submit(q, &extra), -EAGAIN);
		}
		unsigned min = 1 + (unsigned)rnd_below(inflight);
		int got = qcow_queue_reap(q, done, min, depth);

		ASSERT_GE_INT(got, min);
		ASSERT_LE_INT(got, inflight);
		for (int i = 0; i < got; i++) {
			struct slot *sl = done[i]->user;

			ASSERT_TRUE(sl >= s && sl < s + depth);
			ASSERT_TRUE(sl->busy);
			complete(sl, shadow);
		}
		inflight -= (unsigned)got;
	}
	while (inflight) {
		int got = qcow_queue_reap(q, done, 1, depth);

		ASSERT_GE_INT(got, 1);
		for (int i = 0; i < got; i++)
			complete(done[i]->user, shadow);
		inflight -= (unsigned)got;
	}
	qcow_queue_free(q);

	/* The whole disk, directly. */
	uint8_t *back = malloc(span);
	struct qcow_check_result res;

	ASSERT_NOT_NULL(back);
	ASSERT_EQ_INT(qcow_image_pread(img, back, span, 0), (intmax_t)span);
	for (uint64_t i = 0; i < span; i++)
		if (back[i] != shadow[i])
			TEST_FAIL(
				"after the run: byte %llu is 0x%02x, want 0x%02x",
				(unsigned long long)i, back[i], shadow[i]);
	ASSERT_OK(qcow_image_check(img, &res, QCOW_CHECK_NONE));
	ASSERT_EQ_U64(res.corruptions, 0);
	ASSERT_EQ_U64(res.leaks, 0);
	ASSERT_OK(qcow_image_close(img));
	for (unsigned i = 0; i < depth; i++)
		free(s[i].buf);
	free(s);
	free(done);
	free(shadow);
	free(back);
}

TEST(random_depth_1)
{
	random_run(1, 400, 11);
}

TEST(random_depth_4)
{
	random_run(4, 600, 12);
}

TEST(random_depth_32)
{
	random_run(32, 600, 13);
}

/*
 * 32 writes at once into the same unallocated cluster, each to its own
 * bytes: the first allocates, the others must wait for it or write in
 * place, and none may be lost. Repeated over fresh clusters.
 */
TEST(same_cluster_writes)
{
	struct qcow_image *img = new_image(CS);
	struct qcow_queue *q = new_queue(img, 32);
	struct qcow_req reqs[32];
	struct qcow_req *done[32];
	static uint8_t data[32][CS / 32], back[CS];

	for (int round = 0; round < 64; round++) {
		uint64_t cl = (uint64_t)round * CS + (round % 2 ? 0 : 7 * CS);

		for (int i = 0; i < 32; i++) {
			fill(data[i], sizeof(data[i]), (uint8_t)(round + i));
			reqs[i] = (struct qcow_req){
				.op = QCOW_OP_WRITE,
				.buf = data[i],
				.len = sizeof(data[i]),
				/* Interleaved order: neighbours differ. */
				.offset = cl + (uint64_t)((i * 13) % 32) *
						       sizeof(data[i]),
				.result = -1,
			};
			ASSERT_OK(qcow_queue_submit(q, &reqs[i]));
		}
		int got = 0;

		while (got < 32) {
			int k = qcow_queue_reap(q, done, 1, 32);

			ASSERT_GE_INT(k, 1);
			got += k;
		}
		for (int i = 0; i < 32; i++)
			ASSERT_EQ_INT(reqs[i].result,
				      (intmax_t)sizeof(data[i]));
		ASSERT_EQ_INT(qcow_image_pread(img, back, CS, cl), CS);
		for (int i = 0; i < 32; i++)
			ASSERT_EQ_MEM(back + ((i * 13) % 32) * sizeof(data[i]),
				      data[i], sizeof(data[i]));
	}
	qcow_queue_free(q);
	struct qcow_check_result res;

	ASSERT_OK(qcow_image_check(img, &res, QCOW_CHECK_NONE));
	ASSERT_EQ_U64(res.corruptions, 0);
	ASSERT_EQ_U64(res.leaks, 0);
	ASSERT_OK(qcow_image_close(img));
}

static const struct test_case tests[] = {
	TEST_CASE(queue_limits),
	TEST_CASE(depth_1),
	TEST_CASE(depth_4),
	TEST_CASE(depth_32),
	TEST_CASE(free_drains_requests),
	TEST_CASE(random_depth_1),
	TEST_CASE(random_depth_4),
	TEST_CASE(random_depth_32),
	TEST_CASE(same_cluster_writes),
};

TEST_MAIN(tests);
