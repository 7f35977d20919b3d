/* SPDX-License-Identifier: MIT */
/*
 * The unit test harness: libuv's model, in one header and base/test.c.
 *
 * A test file defines its cases with TEST(name) and ends with the table of
 * cases to run and TEST_MAIN, which supplies main():
 *
 *	#include <base/test.h>
 *
 *	TEST(cursor_reads_in_order)
 *	{
 *		ASSERT_EQ_INT(1 + 1, 2);
 *	}
 *
 *	TEST(image_survives_power_cut)
 *	{
 *		if (access("/dev/kvm", R_OK) != 0)
 *			TEST_SKIP("no /dev/kvm");
 *		...
 *	}
 *
 *	static const struct test_case tests[] = {
 *		TEST_CASE(cursor_reads_in_order),
 *		TEST_CASE_TIMEOUT(image_survives_power_cut, 300),
 *	};
 *
 *	TEST_MAIN(tests);
 *
 * The table is explicit: there are no constructors and no hidden
 * registration, and a TEST() left out of the table is a compile error
 * (-Wunused-function under -Werror). Cases run in table order.
 *
 * Each case runs in its own forked process, with its own empty temporary
 * directory (test_tmpdir(), removed afterwards) and a timeout (60 s unless
 * the table says otherwise). A crash, an assertion, a sanitizer report or a
 * timeout fails that case only. Output follows the project's test protocol,
 * one line per case on stdout:
 *
 *	ok NAME
 *	not ok NAME
 *	ok NAME # skip REASON
 *
 * then a closing "N passed, N failed" (", N skipped" when there are any);
 * the exit status is 1 if any case failed. Diagnostics go to stderr as
 * lines starting with "# ".
 *
 * A test program takes glob patterns of case names to run (default: all)
 * and --list. The environment can set TEST_CASE_TIMEOUT (seconds, replaces
 * the default), TEST_TIMEOUT_SCALE (multiplies every timeout; the sanitizer
 * build sets 3), TEST_NOFORK=1 (run cases in the harness process, for a
 * debugger; the first failure ends the program) and TEST_KEEP_TMP=1 (leave
 * the temporary directories behind).
 *
 * Asserts evaluate each argument exactly once and, on failure, print the
 * expression and both values, then end the case. They may be used in
 * helper functions called by a test, not only in its body.
 */
#ifndef BASE_TEST_H
#define BASE_TEST_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

struct test_case {
	const char *name;
	void (*fn)(void);
	unsigned timeout_s; /* 0: the default */
};

#define TEST(name) static void test_##name(void)

/* clang-format would take the # of #name for a directive. */
/* clang-format off */
#define TEST_CASE(name) { #name, test_##name, 0 }
#define TEST_CASE_TIMEOUT(name, seconds) { #name, test_##name, (seconds) }
/* clang-format on */

/* main() running the cases of the array table (the semicolon after
 * TEST_MAIN(table) completes a harmless declaration). */
#define TEST_MAIN(table)                                              \
	int main(int argc, char **argv)                               \
	{                                                             \
		return test_main(argc, argv, table,                   \
				 sizeof(table) / sizeof((table)[0])); \
	}                                                             \
	struct test__main_end

/* Run the cases as described above; returns the exit status for main. */
int test_main(int argc, char **argv, const struct test_case *cases,
	      size_t n_cases);

/* End the current case as skipped; the reason is printed after "# skip". */
#define TEST_SKIP(...) test__skip(__VA_ARGS__)

/* Print a "# " diagnostic line on stderr. */
void test_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The current case's private temporary directory (absolute path). */
const char *test_tmpdir(void);

/* The name of the current case. */
const char *test_name(void);

#define ASSERT_TRUE(cond)                                                 \
	do {                                                              \
		if (!(cond))                                              \
			test__fail(__FILE__, __LINE__, "ASSERT_TRUE(%s)", \
				   #cond);                                \
	} while (0)

#define ASSERT_FALSE(cond)                                                 \
	do {                                                               \
		if (cond)                                                  \
			test__fail(__FILE__, __LINE__, "ASSERT_FALSE(%s)", \
				   #cond);                                 \
	} while (0)

#define TEST__CMP(type, fail, op, opname, a, b)                           \
	do {                                                              \
		type test__a = (a);                                       \
		type test__b = (b);                                       \
		if (!(test__a op test__b))                                \
			fail(__FILE__, __LINE__, opname, #a, #b, test__a, \
			     test__b);                                    \
	} while (0)

/* Signed integers (any width up to intmax_t). */
#define ASSERT_EQ_INT(a, b) TEST__CMP(intmax_t, test__fail_int, ==, "EQ", a, b)
#define ASSERT_NE_INT(a, b) TEST__CMP(intmax_t, test__fail_int, !=, "NE", a, b)
#define ASSERT_LT_INT(a, b) TEST__CMP(intmax_t, test__fail_int, <, "LT", a, b)
#define ASSERT_LE_INT(a, b) TEST__CMP(intmax_t, test__fail_int, <=, "LE", a, b)
#define ASSERT_GT_INT(a, b) TEST__CMP(intmax_t, test__fail_int, >, "GT", a, b)
#define ASSERT_GE_INT(a, b) TEST__CMP(intmax_t, test__fail_int, >=, "GE", a, b)

/* Unsigned integers: sizes, offsets, flags (printed in decimal and hex). */
#define ASSERT_EQ_U64(a, b) TEST__CMP(uint64_t, test__fail_u64, ==, "EQ", a, b)
#define ASSERT_NE_U64(a, b) TEST__CMP(uint64_t, test__fail_u64, !=, "NE", a, b)
#define ASSERT_LT_U64(a, b) TEST__CMP(uint64_t, test__fail_u64, <, "LT", a, b)
#define ASSERT_LE_U64(a, b) TEST__CMP(uint64_t, test__fail_u64, <=, "LE", a, b)
#define ASSERT_GT_U64(a, b) TEST__CMP(uint64_t, test__fail_u64, >, "GT", a, b)
#define ASSERT_GE_U64(a, b) TEST__CMP(uint64_t, test__fail_u64, >=, "GE", a, b)

#define ASSERT_EQ_PTR(a, b) \
	TEST__CMP(const void *, test__fail_ptr, ==, "EQ", a, b)
#define ASSERT_NULL(p) ASSERT_EQ_PTR(p, NULL)
#define ASSERT_NOT_NULL(p)                                                    \
	do {                                                                  \
		if ((p) == NULL)                                              \
			test__fail(__FILE__, __LINE__, "ASSERT_NOT_NULL(%s)", \
				   #p);                                       \
	} while (0)

/* NUL-terminated strings; NULL compares equal only to NULL. */
#define ASSERT_EQ_STR(a, b)                                                 \
	do {                                                                \
		const char *test__a = (a);                                  \
		const char *test__b = (b);                                  \
		if (!test__str_eq(test__a, test__b))                        \
			test__fail_str(__FILE__, __LINE__, #a, #b, test__a, \
				       test__b);                            \
	} while (0)

/* n bytes at a and b; a failure shows the first difference in hex. */
#define ASSERT_EQ_MEM(a, b, n)                                             \
	do {                                                               \
		const void *test__a = (a);                                 \
		const void *test__b = (b);                                 \
		size_t test__n = (n);                                      \
		test__mem_eq(__FILE__, __LINE__, #a, #b, test__a, test__b, \
			     test__n);                                     \
	} while (0)

/*
 * expr must return 0. Otherwise the value is printed with its meaning: a
 * negative errno value (-EINVAL) as its text, -1 as the text of errno.
 */
#define ASSERT_OK(expr)                                                   \
	do {                                                              \
		errno = 0;                                                \
		intmax_t test__r = (expr);                                \
		int test__errno = errno;                                  \
		if (test__r != 0)                                         \
			test__fail_ok(__FILE__, __LINE__, #expr, test__r, \
				      test__errno);                       \
	} while (0)

/* expr must return exactly the negative errno value err (e.g. -ENOENT). */
#define ASSERT_ERR(expr, err)                                              \
	do {                                                               \
		intmax_t test__r = (expr);                                 \
		intmax_t test__e = (err);                                  \
		if (test__r != test__e)                                    \
			test__fail_err(__FILE__, __LINE__, #expr, test__r, \
				       test__e);                           \
	} while (0)

/* Fail the current case with a message. */
#define TEST_FAIL(...) test__fail(__FILE__, __LINE__, __VA_ARGS__)

/* The harness's side of the macros above; not for direct use. */
void test__skip(const char *fmt, ...)
	__attribute__((noreturn, format(printf, 1, 2)));
void test__fail(const char *file, int line, const char *fmt, ...)
	__attribute__((noreturn, format(printf, 3, 4)));
void test__fail_int(const char *file, int line, const char *op, const char *as,
		    const char *bs, intmax_t a, intmax_t b)
	__attribute__((noreturn));
void test__fail_u64(const char *file, int line, const char *op, const char *as,
		    const char *bs, uint64_t a, uint64_t b)
	__attribute__((noreturn));
void test__fail_ptr(const char *file, int line, const char *op, const char *as,
		    const char *bs, const void *a, const void *b)
	__attribute__((noreturn));
void test__fail_str(const char *file, int line, const char *as, const char *bs,
		    const char *a, const char *b) __attribute__((noreturn));
void test__fail_ok(const char *file, int line, const char *expr, intmax_t r,
		   int err) __attribute__((noreturn));
void test__fail_err(const char *file, int line, const char *expr, intmax_t r,
		    intmax_t expected) __attribute__((noreturn));
int test__str_eq(const char *a, const char *b);
void test__mem_eq(const char *file, int line, const char *as, const char *bs,
		  const void *a, const void *b, size_t n);

#endif
