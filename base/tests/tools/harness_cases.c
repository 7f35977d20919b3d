// SPDX-License-Identifier: MIT
/*
 * Cases that pass, fail, skip, crash and hang on purpose: the harness's
 * own test (test_base.c: harness_reports_outcomes) runs this program and
 * checks that each outcome is reported as the protocol says. It is not a
 * test to run on its own.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <base/test.h>

TEST(passes)
{
	ASSERT_EQ_INT(2 + 2, 4);
}

TEST(fails_int)
{
	int answer = 41;

	ASSERT_EQ_INT(answer, 42);
}

TEST(fails_ok)
{
	ASSERT_OK(-ENOSPC);
}

TEST(skips)
{
	TEST_SKIP("no %s here", "widget");
}

TEST(crashes)
{
	raise(SIGSEGV);
}

TEST(hangs)
{
	for (;;)
		pause();
}

TEST(exits_nonzero)
{
	exit(3);
}

static const struct test_case tests[] = {
	TEST_CASE(passes), /* ok */
	TEST_CASE(fails_int), /* not ok, both sides shown */
	TEST_CASE(fails_ok), /* not ok, with the errno name */
	TEST_CASE(skips), /* ok # skip */
	TEST_CASE(crashes), /* not ok, killed by a signal */
	TEST_CASE_TIMEOUT(hangs, 1), /* not ok, timed out */
	TEST_CASE(exits_nonzero), /* not ok, exit status */
};

TEST_MAIN(tests);
