// SPDX-License-Identifier: MIT
/*
 * Logging through a callback, and the rate limiter (see base/log.h).
 *
 * The rate limiter is the kernel's ___ratelimit(): a window of
 * interval_ns opens at the first message; up to burst messages pass in it,
 * and the rest are counted. The first message after the window closes
 * opens a new one and carries the count of those dropped.
 */
#include <stdio.h>
#include <time.h>

#include <base/log.h>

void logger_vprintf(const struct logger *lg, enum log_level level,
		    const char *fmt, va_list ap)
{
	char msg[1024];

	if (!logger_enabled(lg, level))
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	lg->fn(lg->opaque, level, msg);
}

void logger_printf(const struct logger *lg, enum log_level level,
		   const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	logger_vprintf(lg, level, fmt, ap);
	va_end(ap);
}

const char *log_level_name(enum log_level level)
{
	switch (level) {
	case LOG_LEVEL_ERR:
		return "error";
	case LOG_LEVEL_WARN:
		return "warning";
	case LOG_LEVEL_INFO:
		return "info";
	case LOG_LEVEL_DEBUG:
		return "debug";
	case LOG_LEVEL_TRACE:
		return "trace";
	}
	return "unknown";
}

void log_to_stderr(void *opaque, enum log_level level, const char *msg)
{
	const char *prefix = opaque;

	if (prefix)
		fprintf(stderr, "%s: %s: %s\n", prefix, log_level_name(level),
			msg);
	else
		fprintf(stderr, "%s: %s\n", log_level_name(level), msg);
}

bool ratelimit_allow_at(struct ratelimit *rl, uint64_t now_ns, unsigned *missed)
{
	if (missed)
		*missed = 0;
	if (rl->interval_ns == 0)
		return true;
	if (rl->passed == 0 && rl->missed == 0)
		rl->window_start = now_ns;
	if (now_ns - rl->window_start >= rl->interval_ns) {
		if (missed)
			*missed = rl->missed;
		rl->window_start = now_ns;
		rl->passed = 0;
		rl->missed = 0;
	}
	if (rl->passed < rl->burst) {
		rl->passed++;
		return true;
	}
	rl->missed++;
	return false;
}

bool ratelimit_allow(struct ratelimit *rl, unsigned *missed)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ratelimit_allow_at(
		rl, (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec,
		missed);
}

void logger_printf_limited(const struct logger *lg, struct ratelimit *rl,
			   enum log_level level, const char *fmt, ...)
{
	unsigned missed;
	va_list ap;

	if (!logger_enabled(lg, level))
		return;
	if (!ratelimit_allow(rl, &missed))
		return;
	if (missed)
		logger_printf(lg, level, "%u similar messages suppressed",
			      missed);
	va_start(ap, fmt);
	logger_vprintf(lg, level, fmt, ap);
	va_end(ap);
}
