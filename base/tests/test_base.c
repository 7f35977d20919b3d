// SPDX-License-Identifier: MIT
/*
 * Unit tests for base/: the endian helpers, the fail-closed cursor, the
 * checked allocation helpers and the rate limiter.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <base/alloc.h>
#include <base/cursor.h>
#include <base/endian.h>
#include <base/log.h>
#include <base/test.h>

static const uint8_t sample[8] = { 0x01, 0x23, 0x45, 0x67,
				   0x89, 0xab, 0xcd, 0xef };

TEST(endian_loads)
{
	ASSERT_EQ_U64(load_be16(sample), 0x0123);
	ASSERT_EQ_U64(load_be32(sample), 0x01234567);
	ASSERT_EQ_U64(load_be64(sample), 0x0123456789abcdefULL);
	ASSERT_EQ_U64(load_le16(sample), 0x2301);
	ASSERT_EQ_U64(load_le32(sample), 0x67452301);
	ASSERT_EQ_U64(load_le64(sample), 0xefcdab8967452301ULL);
}

TEST(endian_loads_unaligned)
{
	uint8_t buf[16] = { 0 };

	memcpy(buf + 3, sample, sizeof(sample));
	ASSERT_EQ_U64(load_be64(buf + 3), 0x0123456789abcdefULL);
	ASSERT_EQ_U64(load_le32(buf + 3 + 4), 0xefcdab89);
}

TEST(endian_stores_round_trip)
{
	uint8_t buf[9];

	memset(buf, 0xee, sizeof(buf));
	store_be64(buf + 1, 0x0123456789abcdefULL);
	ASSERT_EQ_MEM(buf + 1, sample, 8);
	ASSERT_EQ_U64(buf[0], 0xee); /* no stray write before */

	memset(buf, 0xee, sizeof(buf));
	store_le64(buf, 0xefcdab8967452301ULL);
	ASSERT_EQ_MEM(buf, sample, 8);
	ASSERT_EQ_U64(buf[8], 0xee); /* nor after */

	store_be32(buf, 0xdeadbeef);
	ASSERT_EQ_U64(load_be32(buf), 0xdeadbeef);
	ASSERT_EQ_U64(load_le32(buf), 0xefbeadde);
	store_be16(buf, 0xbeef);
	ASSERT_EQ_U64(load_be16(buf), 0xbeef);
	store_le16(buf, 0xbeef);
	ASSERT_EQ_U64(load_le16(buf), 0xbeef);
	ASSERT_EQ_U64(buf[0], 0xef);
	store_le32(buf, 0x01020304);
	ASSERT_EQ_U64(buf[0], 0x04);
	ASSERT_EQ_U64(buf[3], 0x01);
}

TEST(cursor_reads_in_order)
{
	struct cursor c;
	uint8_t two[2];

	cursor_init(&c, sample, sizeof(sample));
	ASSERT_EQ_U64(cursor_u8(&c), 0x01);
	ASSERT_EQ_U64(cursor_be16(&c), 0x2345);
	ASSERT_EQ_U64(cursor_pos(&c), 3);
	ASSERT_EQ_U64(cursor_le16(&c), 0x8967);
	cursor_copy(&c, two, 2);
	ASSERT_EQ_U64(two[0], 0xab);
	ASSERT_EQ_U64(two[1], 0xcd);
	ASSERT_EQ_U64(cursor_remaining(&c), 1);
	ASSERT_FALSE(cursor_failed(&c));

	ASSERT_TRUE(cursor_seek(&c, 0));
	ASSERT_EQ_U64(cursor_be32(&c), 0x01234567);
	ASSERT_EQ_U64(cursor_le32(&c), 0xefcdab89);
	ASSERT_EQ_U64(cursor_remaining(&c), 0);

	ASSERT_TRUE(cursor_seek(&c, 0));
	ASSERT_EQ_U64(cursor_be64(&c), 0x0123456789abcdefULL);
	ASSERT_TRUE(cursor_seek(&c, 0));
	ASSERT_EQ_U64(cursor_le64(&c), 0xefcdab8967452301ULL);
	ASSERT_FALSE(cursor_failed(&c));
}

TEST(cursor_fails_closed)
{
	struct cursor c;
	uint8_t out[4];

	cursor_init(&c, sample, 6);
	ASSERT_EQ_U64(cursor_be32(&c), 0x01234567);
	/* Two sample left: an 8-byte read fails and reads nothing. */
	ASSERT_EQ_U64(cursor_be64(&c), 0);
	ASSERT_TRUE(cursor_failed(&c));
	ASSERT_EQ_U64(cursor_remaining(&c), 0);
	/* Every later read returns zero, even ones that would have fit. */
	ASSERT_EQ_U64(cursor_u8(&c), 0);
	ASSERT_EQ_U64(cursor_be16(&c), 0);
	ASSERT_NULL(cursor_ptr(&c, 0));
	ASSERT_FALSE(cursor_skip(&c, 0));
	memset(out, 0xff, sizeof(out));
	cursor_copy(&c, out, sizeof(out));
	ASSERT_EQ_MEM(out, "\0\0\0\0", 4);
	/* Seeking back does not revive a failed cursor. */
	ASSERT_FALSE(cursor_seek(&c, 0));
	ASSERT_EQ_U64(cursor_u8(&c), 0);
	ASSERT_TRUE(cursor_failed(&c));
}

TEST(cursor_huge_lengths_do_not_wrap)
{
	struct cursor c;

	cursor_init(&c, sample, sizeof(sample));
	ASSERT_EQ_U64(cursor_u8(&c), 0x01);
	ASSERT_FALSE(cursor_skip(&c, SIZE_MAX));
	ASSERT_TRUE(cursor_failed(&c));

	cursor_init(&c, sample, sizeof(sample));
	ASSERT_TRUE(cursor_skip(&c, 4));
	ASSERT_NULL(cursor_ptr(&c, SIZE_MAX - 2));
	ASSERT_TRUE(cursor_failed(&c));

	cursor_init(&c, sample, sizeof(sample));
	ASSERT_FALSE(cursor_seek(&c, 9));
	ASSERT_TRUE(cursor_failed(&c));
}

TEST(cursor_exact_end)
{
	struct cursor c;
	const uint8_t *p;

	cursor_init(&c, sample, sizeof(sample));
	p = cursor_ptr(&c, sizeof(sample));
	ASSERT_EQ_PTR(p, sample);
	ASSERT_EQ_U64(cursor_remaining(&c), 0);
	ASSERT_FALSE(cursor_failed(&c));
	/* A zero-length read at the end is fine and still non-NULL. */
	ASSERT_NOT_NULL(cursor_ptr(&c, 0));
	ASSERT_TRUE(cursor_seek(&c, sizeof(sample)));
	ASSERT_FALSE(cursor_failed(&c));
	ASSERT_EQ_U64(cursor_u8(&c), 0);
	ASSERT_TRUE(cursor_failed(&c));
}

TEST(cursor_empty)
{
	struct cursor c;

	cursor_init(&c, NULL, 100);
	ASSERT_EQ_U64(cursor_remaining(&c), 0);
	ASSERT_NOT_NULL(cursor_ptr(&c, 0));
	ASSERT_TRUE(cursor_skip(&c, 0));
	ASSERT_FALSE(cursor_failed(&c));
	ASSERT_EQ_U64(cursor_be32(&c), 0);
	ASSERT_TRUE(cursor_failed(&c));
}

TEST(cursor_sub_stays_inside)
{
	struct cursor c, sub, bad;

	cursor_init(&c, sample, sizeof(sample));
	ASSERT_EQ_U64(cursor_u8(&c), 0x01);
	ASSERT_TRUE(cursor_sub(&c, 3, &sub));
	ASSERT_EQ_U64(cursor_pos(&c), 4);
	ASSERT_EQ_U64(cursor_be16(&sub), 0x2345);
	/* The sub-cursor ends at its own length, not at the buffer's. */
	ASSERT_EQ_U64(cursor_be16(&sub), 0);
	ASSERT_TRUE(cursor_failed(&sub));
	ASSERT_FALSE(cursor_failed(&c));
	ASSERT_EQ_U64(cursor_u8(&c), 0x89);

	ASSERT_FALSE(cursor_sub(&c, 4, &bad));
	ASSERT_TRUE(cursor_failed(&bad));
	ASSERT_EQ_U64(cursor_remaining(&bad), 0);
	ASSERT_TRUE(cursor_failed(&c));
}

TEST(alloc_overflow_checks)
{
	size_t s;
	uint64_t u;

	ASSERT_TRUE(size_mul_ok(1u << 20, 1u << 10, &s));
	ASSERT_EQ_U64(s, 1u << 30);
	ASSERT_FALSE(size_mul_ok(SIZE_MAX / 2 + 1, 2, &s));
	ASSERT_TRUE(size_add_ok(SIZE_MAX - 1, 1, &s));
	ASSERT_EQ_U64(s, SIZE_MAX);
	ASSERT_FALSE(size_add_ok(SIZE_MAX, 1, &s));
	ASSERT_TRUE(u64_mul_ok(1ULL << 32, 1ULL << 31, &u));
	ASSERT_FALSE(u64_mul_ok(1ULL << 32, 1ULL << 32, &u));
	ASSERT_FALSE(u64_add_ok(UINT64_MAX, 1, &u));
}

TEST(alloc_arrays)
{
	uint32_t *a, *b;

	errno = 0;
	ASSERT_NULL(array_alloc(SIZE_MAX / 4 + 1, 8));
	ASSERT_EQ_INT(errno, ENOMEM);
	ASSERT_NULL(array_zalloc(SIZE_MAX / 2, 3));

	a = array_zalloc(16, sizeof(*a));
	ASSERT_NOT_NULL(a);
	for (int i = 0; i < 16; i++)
		ASSERT_EQ_U64(a[i], 0);
	a[15] = 7;
	ASSERT_NULL(array_realloc(a, SIZE_MAX, sizeof(*a)));
	ASSERT_EQ_U64(a[15], 7); /* untouched on failure */
	b = array_realloc(a, 32, sizeof(*a));
	ASSERT_NOT_NULL(b);
	ASSERT_EQ_U64(b[15], 7);
	free(b);

	/* Zero-sized arrays are real, distinct allocations. */
	a = array_alloc(0, 8);
	b = array_zalloc(8, 0);
	ASSERT_NOT_NULL(a);
	ASSERT_NOT_NULL(b);
	free(a);
	free(b);
}

TEST(ratelimit_bursts_then_counts)
{
	struct ratelimit rl = RATELIMIT_INIT(1000, 3);
	const uint64_t ms = 1000000;
	unsigned missed = 99;
	int passed = 0;

	for (int i = 0; i < 10; i++)
		passed +=
			ratelimit_allow_at(&rl, 5 * ms + (uint64_t)i, &missed);
	ASSERT_EQ_INT(passed, 3);
	ASSERT_EQ_U64(missed, 0);
	/* Still in the window. */
	ASSERT_FALSE(ratelimit_allow_at(&rl, 900 * ms, &missed));
	/* The next window opens and reports the 8 dropped. */
	ASSERT_TRUE(ratelimit_allow_at(&rl, 1006 * ms, &missed));
	ASSERT_EQ_U64(missed, 8);
	ASSERT_TRUE(ratelimit_allow_at(&rl, 1007 * ms, &missed));
	ASSERT_EQ_U64(missed, 0);
}

struct log_capture {
	int calls;
	enum log_level level;
	char msg[64];
};

static void capture_log(void *opaque, enum log_level level, const char *msg)
{
	struct log_capture *cap = opaque;

	cap->calls++;
	cap->level = level;
	snprintf(cap->msg, sizeof(cap->msg), "%s", msg);
}

TEST(logger_filters_by_level)
{
	struct log_capture cap = { 0 };
	struct logger lg = { capture_log, &cap, LOG_LEVEL_INFO };
	struct logger silent = { 0 };

	logger_printf(&lg, LOG_LEVEL_WARN, "cluster %d is %s", 7, "bad");
	ASSERT_EQ_INT(cap.calls, 1);
	ASSERT_EQ_INT(cap.level, LOG_LEVEL_WARN);
	ASSERT_EQ_STR(cap.msg, "cluster 7 is bad");
	logger_printf(&lg, LOG_LEVEL_DEBUG, "dropped");
	ASSERT_EQ_INT(cap.calls, 1);
	logger_printf(&silent, LOG_LEVEL_ERR, "nowhere");
	logger_printf(NULL, LOG_LEVEL_ERR, "nowhere");
	ASSERT_EQ_STR(log_level_name(LOG_LEVEL_ERR), "error");
}

TEST(harness_tmpdir_is_private)
{
	char path[4200];
	FILE *f;

	ASSERT_TRUE(strstr(test_tmpdir(), "harness_tmpdir_is_private") != NULL);
	ASSERT_OK(access(test_tmpdir(), W_OK));
	snprintf(path, sizeof(path), "%s/file", test_tmpdir());
	f = fopen(path, "w");
	ASSERT_NOT_NULL(f);
	fclose(f);
	ASSERT_ERR(access("/nonexistent/unikit", F_OK) ? -errno : 0, -ENOENT);
	ASSERT_EQ_STR(test_name(), "harness_tmpdir_is_private");
}

/* Read all of a command's stdout into buf (NUL-terminated). */
static void run_capture(const char *cmd, char *buf, size_t size)
{
	/* The command is our own test program. */
	FILE *p = popen(cmd, "r"); // NOLINT(cert-env33-c)
	size_t n;

	ASSERT_NOT_NULL(p);
	n = fread(buf, 1, size - 1, p);
	buf[n] = '\0';
	ASSERT_TRUE(pclose(p) != -1);
}

/* The harness itself: run tests/bin/harness_cases and read its verdicts. */
TEST(harness_reports_outcomes)
{
	char exe[4096], cmd[4300], out[4096];
	ssize_t n;
	char *slash;

	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	ASSERT_GT_INT(n, 0);
	exe[n] = '\0';
	slash = strrchr(exe, '/');
	ASSERT_NOT_NULL(slash);
	*slash = '\0';
	snprintf(cmd, sizeof(cmd), "%s/bin/harness_cases", exe);
	if (access(cmd, X_OK) != 0)
		TEST_SKIP("%s not built", cmd);
	snprintf(cmd, sizeof(cmd),
		 "%s/bin/harness_cases 2>/dev/null; echo \"exit $?\"", exe);
	run_capture(cmd, out, sizeof(out));
	ASSERT_EQ_STR(out, "ok passes\n"
			   "not ok fails_int\n"
			   "not ok fails_ok\n"
			   "ok skips # skip no widget here\n"
			   "not ok crashes\n"
			   "not ok hangs\n"
			   "not ok exits_nonzero\n"
			   "1 passed, 5 failed, 1 skipped\n"
			   "exit 1\n");

	/* Diagnostics show both sides and the errno name. */
	snprintf(cmd, sizeof(cmd), "%s/bin/harness_cases 'fails_*' 2>&1", exe);
	run_capture(cmd, out, sizeof(out));
	ASSERT_TRUE(strstr(out, "#   left:  41\n#   right: 42\n") != NULL);
	ASSERT_TRUE(strstr(out, "-28 (-ENOSPC: No space left on device)") !=
		    NULL);
	ASSERT_TRUE(strstr(out, "0 passed, 2 failed\n") != NULL);

	snprintf(cmd, sizeof(cmd), "%s/bin/harness_cases --list", exe);
	run_capture(cmd, out, sizeof(out));
	ASSERT_TRUE(strncmp(out, "passes\nfails_int\n", 17) == 0);
}

static const struct test_case tests[] = {
	TEST_CASE(endian_loads),
	TEST_CASE(endian_loads_unaligned),
	TEST_CASE(endian_stores_round_trip),
	TEST_CASE(cursor_reads_in_order),
	TEST_CASE(cursor_fails_closed),
	TEST_CASE(cursor_huge_lengths_do_not_wrap),
	TEST_CASE(cursor_exact_end),
	TEST_CASE(cursor_empty),
	TEST_CASE(cursor_sub_stays_inside),
	TEST_CASE(alloc_overflow_checks),
	TEST_CASE(alloc_arrays),
	TEST_CASE(ratelimit_bursts_then_counts),
	TEST_CASE(logger_filters_by_level),
	TEST_CASE(harness_tmpdir_is_private),
	TEST_CASE(harness_reports_outcomes),
};

TEST_MAIN(tests);
