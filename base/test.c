// SPDX-License-Identifier: MIT
/*
 * The unit test harness (see base/test.h for how tests use it).
 *
 * Theory of operation: test_main() runs each selected case in a child
 * process of its own. Before the fork it creates the case's temporary
 * directory and clears a small shared page (an anonymous MAP_SHARED
 * mapping) through which the child tells the parent why it stopped: a
 * skip with its reason, or an assertion whose details it has already
 * printed. The child puts itself in its own process group, runs the case
 * and exits 0; exit() rather than _exit() so that LeakSanitizer checks the
 * case in the sanitizer build. The parent keeps SIGCHLD blocked and waits
 * for it with sigtimedwait() against the case's deadline; at the deadline
 * it kills the child's whole process group. It then reads the exit status
 * and the shared page, prints the protocol line and removes the directory.
 *
 * This file is test-only code, so the state of the case being run sits in
 * file-scope variables (the asserts reach it without a context argument);
 * each child has its own copy.
 */
#include <errno.h>
#include <fnmatch.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <base/test.h>

#define TEST_DEFAULT_TIMEOUT 60
#define TEST_EXIT_SKIP 77
#define TEST_EXIT_FAIL 1

enum test_outcome_kind {
	TEST_OUTCOME_NONE,
	TEST_OUTCOME_SKIP,
	TEST_OUTCOME_ASSERT,
};

/* What a child reports through the shared page. */
struct test_report {
	int kind; /* enum test_outcome_kind */
	char reason[256]; /* the skip reason */
};

static struct test_report *test_report;
static const char *test_current_name = "";
static char test_current_tmpdir[PATH_MAX];
static bool test_nofork;

const char *test_tmpdir(void)
{
	return test_current_tmpdir;
}

const char *test_name(void)
{
	return test_current_name;
}

void test_note(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("# ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
}

/* End the child (or, without fork, the program) with status. */
static __attribute__((noreturn)) void test_end_case(int status)
{
	fflush(stdout);
	fflush(stderr);
	_exit(status);
}

void test__skip(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(test_report->reason, sizeof(test_report->reason), fmt, ap);
	va_end(ap);
	test_report->kind = TEST_OUTCOME_SKIP;
	if (test_nofork) {
		printf("ok %s # skip %s\n", test_current_name,
		       test_report->reason);
		test_report->kind = TEST_OUTCOME_NONE;
		/* Without a child to end, a skip ends the whole program. */
		test_end_case(0);
	}
	test_end_case(TEST_EXIT_SKIP);
}

/* Print the "# FAIL file:line: what" header of an assertion failure. */
static void test_fail_header(const char *file, int line, const char *fmt,
			     va_list ap) __attribute__((format(printf, 3, 0)));
static void test_fail_header(const char *file, int line, const char *fmt,
			     va_list ap)
{
	fflush(stdout);
	fprintf(stderr, "# FAIL %s: %s:%d: ", test_current_name, file, line);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

static __attribute__((noreturn)) void test_fail_end(void)
{
	test_report->kind = TEST_OUTCOME_ASSERT;
	if (test_nofork)
		printf("not ok %s\n", test_current_name);
	test_end_case(TEST_EXIT_FAIL);
}

static void test_fail_printf(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void test_fail_printf(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	test_fail_header(file, line, fmt, ap);
	va_end(ap);
}

void test__fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	test_fail_header(file, line, fmt, ap);
	va_end(ap);
	test_fail_end();
}

void test__fail_int(const char *file, int line, const char *op, const char *as,
		    const char *bs, intmax_t a, intmax_t b)
{
	test_fail_printf(file, line, "ASSERT_%s_INT(%s, %s)", op, as, bs);
	fprintf(stderr, "#   left:  %" PRIdMAX "\n#   right: %" PRIdMAX "\n", a,
		b);
	test_fail_end();
}

void test__fail_u64(const char *file, int line, const char *op, const char *as,
		    const char *bs, uint64_t a, uint64_t b)
{
	test_fail_printf(file, line, "ASSERT_%s_U64(%s, %s)", op, as, bs);
	fprintf(stderr,
		"#   left:  %" PRIu64 " (0x%" PRIx64 ")\n"
		"#   right: %" PRIu64 " (0x%" PRIx64 ")\n",
		a, a, b, b);
	test_fail_end();
}

void test__fail_ptr(const char *file, int line, const char *op, const char *as,
		    const char *bs, const void *a, const void *b)
{
	test_fail_printf(file, line, "ASSERT_%s_PTR(%s, %s)", op, as, bs);
	fprintf(stderr, "#   left:  %p\n#   right: %p\n", a, b);
	test_fail_end();
}

int test__str_eq(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

void test__fail_str(const char *file, int line, const char *as, const char *bs,
		    const char *a, const char *b)
{
	test_fail_printf(file, line, "ASSERT_EQ_STR(%s, %s)", as, bs);
	if (a)
		fprintf(stderr, "#   left:  \"%s\"\n", a);
	else
		fputs("#   left:  NULL\n", stderr);
	if (b)
		fprintf(stderr, "#   right: \"%s\"\n", b);
	else
		fputs("#   right: NULL\n", stderr);
	test_fail_end();
}

/* Print up to 16 bytes from p[from, to) as hex. */
static void test_hex_line(const char *label, const uint8_t *p, size_t from,
			  size_t to)
{
	fprintf(stderr, "#   %s @%zu:", label, from);
	for (size_t i = from; i < to; i++)
		fprintf(stderr, " %02x", p[i]);
	fputc('\n', stderr);
}

void test__mem_eq(const char *file, int line, const char *as, const char *bs,
		  const void *a, const void *b, size_t n)
{
	const uint8_t *pa = a, *pb = b;
	size_t first, from, to, diffs = 0;

	if (n == 0 || memcmp(a, b, n) == 0)
		return;
	for (first = 0; pa[first] == pb[first]; first++)
		;
	for (size_t i = first; i < n; i++)
		diffs += pa[i] != pb[i];
	from = first & ~(size_t)15;
	to = from + 16 < n ? from + 16 : n;
	test_fail_printf(file, line, "ASSERT_EQ_MEM(%s, %s, %zu)", as, bs, n);
	fprintf(stderr, "#   first difference at byte %zu, %zu bytes differ\n",
		first, diffs);
	test_hex_line("left ", pa, from, to);
	test_hex_line("right", pb, from, to);
	test_fail_end();
}

/* Describe a return value: "-22 (EINVAL: Invalid argument)". */
static void test_print_errno_value(const char *label, intmax_t r, int err)
{
	const char *name;

	if (r < -1 && r >= -4095) {
		name = strerrorname_np((int)-r);
		fprintf(stderr, "#   %s: %" PRIdMAX " (-%s: %s)\n", label, r,
			name ? name : "?", strerror((int)-r));
	} else if (r == -1 && err) {
		name = strerrorname_np(err);
		fprintf(stderr, "#   %s: -1 (errno %s: %s)\n", label,
			name ? name : "?", strerror(err));
	} else {
		fprintf(stderr, "#   %s: %" PRIdMAX "\n", label, r);
	}
}

void test__fail_ok(const char *file, int line, const char *expr, intmax_t r,
		   int err)
{
	test_fail_printf(file, line, "ASSERT_OK(%s)", expr);
	test_print_errno_value("returned", r, err);
	test_fail_end();
}

void test__fail_err(const char *file, int line, const char *expr, intmax_t r,
		    intmax_t expected)
{
	test_fail_printf(file, line, "ASSERT_ERR(%s)", expr);
	test_print_errno_value("returned", r, 0);
	test_print_errno_value("expected", expected, 0);
	test_fail_end();
}

static int test_rm_entry(const char *path, const struct stat *st, int flag,
			 struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void test_rm_tree(const char *dir)
{
	nftw(dir, test_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static unsigned test_env_uint(const char *name, unsigned dflt)
{
	const char *s = getenv(name);
	char *end;
	unsigned long v;

	if (!s || !*s)
		return dflt;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v == 0 || v > 1000000)
		return dflt;
	return (unsigned)v;
}

static bool test_env_flag(const char *name)
{
	const char *s = getenv(name);

	return s && *s && strcmp(s, "0") != 0;
}

/*
 * Wait up to timeout_s for child pid; on timeout kill its process group.
 * Returns its wait status, and sets *timed_out.
 */
static int test_wait(pid_t pid, unsigned timeout_s, bool *timed_out)
{
	struct timespec now, deadline, left;
	sigset_t chld;
	int status;

	*timed_out = false;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += timeout_s;
	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			return status;
		if (r < 0 && errno != EINTR)
			return -1;
		clock_gettime(CLOCK_MONOTONIC, &now);
		left.tv_sec = deadline.tv_sec - now.tv_sec;
		left.tv_nsec = deadline.tv_nsec - now.tv_nsec;
		if (left.tv_nsec < 0) {
			left.tv_nsec += 1000000000L;
			left.tv_sec--;
		}
		if (left.tv_sec < 0)
			break;
		if (sigtimedwait(&chld, NULL, &left) < 0 && errno == EAGAIN)
			break;
	}
	*timed_out = true;
	kill(-pid, SIGKILL);
	kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return status;
}

/* Run one case; returns 0 pass, 1 fail, 2 skip. */
static int test_run_case(const struct test_case *tc, unsigned timeout_s,
			 bool keep_tmp)
{
	const char *tmp = getenv("TMPDIR");
	sigset_t chld, old;
	bool timed_out;
	int status, result;
	pid_t pid;

	if (!tmp || !*tmp)
		tmp = "/tmp";
	snprintf(test_current_tmpdir, sizeof(test_current_tmpdir),
		 "%s/unikit-test-%s-XXXXXX", tmp, tc->name);
	if (!mkdtemp(test_current_tmpdir)) {
		fprintf(stderr,
			"# %s: cannot create a temporary directory: %s\n",
			tc->name, strerror(errno));
		printf("not ok %s\n", tc->name);
		return 1;
	}
	test_current_name = tc->name;
	memset(test_report, 0, sizeof(*test_report));

	if (test_nofork) {
		tc->fn();
		printf("ok %s\n", tc->name);
		if (!keep_tmp)
			test_rm_tree(test_current_tmpdir);
		return 0;
	}

	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, &old);
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "# %s: fork: %s\n", tc->name, strerror(errno));
		printf("not ok %s\n", tc->name);
		sigprocmask(SIG_SETMASK, &old, NULL);
		return 1;
	}
	if (pid == 0) {
		sigprocmask(SIG_SETMASK, &old, NULL);
		setpgid(0, 0);
		tc->fn();
		fflush(stdout);
		fflush(stderr);
		exit(0);
	}
	setpgid(pid, pid); /* as the child does: whoever runs first */
	status = test_wait(pid, timeout_s, &timed_out);
	sigprocmask(SIG_SETMASK, &old, NULL);

	if (timed_out) {
		fprintf(stderr, "# %s: timed out after %u s\n", tc->name,
			timeout_s);
		result = 1;
	} else if (status == -1) {
		fprintf(stderr, "# %s: waitpid: %s\n", tc->name,
			strerror(errno));
		result = 1;
	} else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		result = 0;
	} else if (WIFEXITED(status) && WEXITSTATUS(status) == TEST_EXIT_SKIP &&
		   test_report->kind == TEST_OUTCOME_SKIP) {
		result = 2;
	} else if (WIFEXITED(status)) {
		if (test_report->kind != TEST_OUTCOME_ASSERT)
			fprintf(stderr, "# %s: exited with status %d\n",
				tc->name, WEXITSTATUS(status));
		result = 1;
	} else {
		fprintf(stderr, "# %s: killed by signal %d (%s)\n", tc->name,
			WTERMSIG(status), strsignal(WTERMSIG(status)));
		result = 1;
	}

	if (result == 0)
		printf("ok %s\n", tc->name);
	else if (result == 2)
		printf("ok %s # skip %s\n", tc->name, test_report->reason);
	else
		printf("not ok %s\n", tc->name);
	fflush(stdout);

	if (keep_tmp)
		fprintf(stderr, "# %s: kept %s\n", tc->name,
			test_current_tmpdir);
	else
		test_rm_tree(test_current_tmpdir);
	return result;
}

static bool test_selected(const char *name, int argc, char **argv, int first)
{
	if (first >= argc)
		return true;
	for (int i = first; i < argc; i++)
		if (fnmatch(argv[i], name, 0) == 0)
			return true;
	return false;
}

static void test_usage(const char *prog)
{
	fprintf(stderr,
		"usage: %s [--list] [PATTERN...]\n"
		"Runs the test cases whose names match a glob PATTERN (all by default).\n"
		"Environment: TEST_CASE_TIMEOUT=SECONDS TEST_TIMEOUT_SCALE=N\n"
		"             TEST_NOFORK=1 TEST_KEEP_TMP=1\n",
		prog);
}

int test_main(int argc, char **argv, const struct test_case *cases,
	      size_t n_cases)
{
	unsigned dflt_timeout, scale, passed = 0, failed = 0, skipped = 0;
	bool keep_tmp;
	int first = 1;

	if (argc > 1 && strcmp(argv[1], "--list") == 0) {
		for (size_t i = 0; i < n_cases; i++)
			printf("%s\n", cases[i].name);
		return 0;
	}
	if (argc > 1 &&
	    (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
		test_usage(argv[0]);
		return 0;
	}
	if (argc > 1 && strcmp(argv[1], "--") == 0)
		first = 2;

	dflt_timeout = test_env_uint("TEST_CASE_TIMEOUT", TEST_DEFAULT_TIMEOUT);
	scale = test_env_uint("TEST_TIMEOUT_SCALE", 1);
	keep_tmp = test_env_flag("TEST_KEEP_TMP");
	test_nofork = test_env_flag("TEST_NOFORK");

	test_report = mmap(NULL, sizeof(*test_report), PROT_READ | PROT_WRITE,
			   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (test_report == MAP_FAILED) {
		fprintf(stderr, "# mmap: %s\n", strerror(errno));
		return 1;
	}
	/* A SIGCHLD ignored by our parent would make children vanish. */
	signal(SIGCHLD, SIG_DFL);
	setvbuf(stdout, NULL, _IOLBF, 0);

	for (size_t i = 0; i < n_cases; i++) {
		unsigned timeout_s;

		if (!test_selected(cases[i].name, argc, argv, first))
			continue;
		timeout_s = cases[i].timeout_s ? cases[i].timeout_s :
						 dflt_timeout;
		switch (test_run_case(&cases[i], timeout_s * scale, keep_tmp)) {
		case 0:
			passed++;
			break;
		case 2:
			skipped++;
			break;
		default:
			failed++;
			break;
		}
	}

	if (skipped)
		printf("%u passed, %u failed, %u skipped\n", passed, failed,
		       skipped);
	else
		printf("%u passed, %u failed\n", passed, failed);
	fflush(stdout);
	munmap(test_report, sizeof(*test_report));
	return failed ? 1 : 0;
}
