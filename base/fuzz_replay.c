// SPDX-License-Identifier: MIT
/*
 * Replay a fuzz target's corpus without libFuzzer (SQLite's fuzzcheck).
 *
 * `make` links each <comp>/fuzz/fuzz_<name>.c with this main() instead of
 * libFuzzer, using the project's normal compiler and flags (and sanitizers
 * under SANITIZE=1), and `make check` runs it over the target's seed
 * corpus, so every seed and every regression input is exercised on every
 * check, not only in fuzzing runs.
 *
 * Usage: fuzz_<name> [-t SECONDS] FILE|DIR...
 * Each file named, and each regular file in each directory named (not
 * recursively, in name order), is fed to LLVMFuzzerTestOneInput once, in a
 * child process of its own with a timeout (10 s by default, as in the
 * fuzzing runs), so that a crash, a sanitizer report, a leak or a hang is
 * pinned to its input and the other inputs still run. Output follows the
 * project's test protocol: one "ok replay-<name>" or "not ok replay-<name>"
 * line for the whole corpus, the failing inputs as "# " lines before it,
 * and a closing "N passed, N failed".
 *
 * This is a test program, not library code: it prints and exits.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <base/fuzz.h>

/* libFuzzer makes LLVMFuzzerInitialize optional; so do we. */
#pragma weak LLVMFuzzerInitialize

struct replay {
	const char *target; /* "replay-<name>" */
	unsigned timeout_s;
	unsigned inputs, failures;
};

static int replay_read_file(const char *path, uint8_t **data, size_t *size)
{
	struct stat st;
	uint8_t *buf;
	size_t done = 0;
	int fd, err;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		err = -errno;
		goto out_close;
	}
	/* One spare byte so a zero-length input still has an address. */
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		err = -ENOMEM;
		goto out_close;
	}
	while (done < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + done, (size_t)st.st_size - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			err = n < 0 ? -errno : -EIO;
			goto out_free;
		}
		done += (size_t)n;
	}
	close(fd);
	*data = buf;
	*size = done;
	return 0;

out_free:
	free(buf);
out_close:
	close(fd);
	return err;
}

/* Feed one file to the target in a child process. */
static void replay_one(struct replay *r, const char *path)
{
	uint8_t *data = NULL;
	size_t size = 0;
	int status, err;
	pid_t pid;

	r->inputs++;
	err = replay_read_file(path, &data, &size);
	if (err) {
		fprintf(stderr, "# %s: cannot read: %s\n", path,
			strerror(-err));
		r->failures++;
		return;
	}
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "# %s: fork: %s\n", path, strerror(errno));
		r->failures++;
		free(data);
		return;
	}
	if (pid == 0) {
		alarm(r->timeout_s);
		LLVMFuzzerTestOneInput(data, size);
		free(data);
		/* exit(), not _exit(): LeakSanitizer runs at exit. */
		exit(0);
	}
	free(data);
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			fprintf(stderr, "# %s: waitpid: %s\n", path,
				strerror(errno));
			r->failures++;
			return;
		}
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return;
	r->failures++;
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
		fprintf(stderr, "# %s: timed out after %u s\n", path,
			r->timeout_s);
	else if (WIFSIGNALED(status))
		fprintf(stderr, "# %s: killed by signal %d (%s)\n", path,
			WTERMSIG(status), strsignal(WTERMSIG(status)));
	else
		fprintf(stderr, "# %s: exited with status %d\n", path,
			WEXITSTATUS(status));
}

static int replay_name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Replay every regular file in dir, in name order. Returns 0 or -errno. */
static int replay_dir(struct replay *r, const char *dir)
{
	struct dirent *de;
	char **names = NULL, path[4096];
	size_t n = 0, cap = 0;
	int err = 0;
	DIR *d;

	d = opendir(dir);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		struct stat st;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (n == cap) {
			size_t ncap = cap ? 2 * cap : 64;
			char **nn = realloc(names, ncap * sizeof(*names));

			if (!nn) {
				err = -ENOMEM;
				goto out_free_names;
			}
			names = nn;
			cap = ncap;
		}
		names[n] = strdup(de->d_name);
		if (!names[n]) {
			err = -ENOMEM;
			goto out_free_names;
		}
		n++;
	}
	if (n)
		qsort(names, n, sizeof(*names), replay_name_cmp);
	for (size_t i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		replay_one(r, path);
	}

out_free_names:
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	closedir(d);
	return err;
}

int main(int argc, char **argv)
{
	char target[256];
	struct replay r = { .target = target, .timeout_s = 10 };
	const char *base = strrchr(argv[0], '/');
	int i = 1;

	base = base ? base + 1 : argv[0];
	if (strncmp(base, "fuzz_", 5) == 0)
		base += 5;
	snprintf(target, sizeof(target), "replay-%s", base);

	if (argc > 2 && strcmp(argv[1], "-t") == 0) {
		r.timeout_s = (unsigned)strtoul(argv[2], NULL, 10);
		if (r.timeout_s == 0)
			r.timeout_s = 10;
		i = 3;
	}
	if (LLVMFuzzerInitialize)
		LLVMFuzzerInitialize(&argc, &argv);
	setvbuf(stdout, NULL, _IOLBF, 0);

	for (; i < argc; i++) {
		struct stat st;
		int err;

		if (stat(argv[i], &st) < 0) {
			fprintf(stderr, "# %s: %s\n", argv[i], strerror(errno));
			r.failures++;
			continue;
		}
		if (!S_ISDIR(st.st_mode)) {
			replay_one(&r, argv[i]);
			continue;
		}
		err = replay_dir(&r, argv[i]);
		if (err) {
			fprintf(stderr, "# %s: %s\n", argv[i], strerror(-err));
			r.failures++;
		}
	}

	if (r.failures) {
		fprintf(stderr, "# %u of %u inputs failed\n", r.failures,
			r.inputs);
		printf("not ok %s\n0 passed, 1 failed\n", r.target);
		return 1;
	}
	if (r.inputs == 0) {
		printf("ok %s # skip no corpus inputs\n", r.target);
		printf("0 passed, 0 failed, 1 skipped\n");
		return 0;
	}
	fprintf(stderr, "# %u inputs replayed\n", r.inputs);
	printf("ok %s\n1 passed, 0 failed\n", r.target);
	return 0;
}
