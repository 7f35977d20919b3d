/* SPDX-License-Identifier: MIT */
/*
 * Logging through a caller's callback, and a rate limiter for messages a
 * guest or a peer can trigger.
 *
 * Components never print. Their context carries a `struct logger`, filled
 * in by whoever created it; a command points it at log_to_stderr (or at
 * syslog), a test at a buffer, a library user at its own sink. A logger
 * whose fn is NULL drops everything, so a zero-initialised logger is valid
 * and silent.
 *
 * Messages a guest or a peer can cause (a bad descriptor, a malformed
 * frame, a damaged table) go through a `struct ratelimit` owned by the
 * queue, flow or image concerned, so a hostile peer cannot flood the log.
 *
 * Threading: logger_printf may be called from any thread; fn must be
 * thread-safe if the logger is shared. A ratelimit is not locked: it
 * belongs to one thread, or to an object whose lock is held.
 */
#ifndef BASE_LOG_H
#define BASE_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

/* Levels, most severe first; a logger passes messages <= its level. */
enum log_level {
	LOG_LEVEL_ERR,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
	LOG_LEVEL_TRACE,
};

typedef void (*log_fn)(void *opaque, enum log_level level, const char *msg);

struct logger {
	log_fn fn; /* NULL: drop everything */
	void *opaque; /* passed to fn */
	enum log_level level; /* most verbose level passed on */
};

/* True if a message at level would reach fn: test it before costly work. */
static inline bool logger_enabled(const struct logger *lg, enum log_level level)
{
	return lg && lg->fn && level <= lg->level;
}

/*
 * Format a message and hand it to lg->fn if the level passes. Messages
 * longer than 1 KiB are cut short. lg may be NULL.
 */
void logger_printf(const struct logger *lg, enum log_level level,
		   const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void logger_vprintf(const struct logger *lg, enum log_level level,
		    const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

/* "error", "warning", "info", "debug" or "trace". */
const char *log_level_name(enum log_level level);

/* A log_fn for commands: writes "<prefix>: <level>: msg\n" to stderr;
 * opaque is the prefix (a const char *, may be NULL). */
void log_to_stderr(void *opaque, enum log_level level, const char *msg);

/*
 * At most burst messages per interval; the rest are counted and dropped.
 * Zero-initialise and set interval_ns and burst, or use RATELIMIT_INIT.
 */
struct ratelimit {
	uint64_t interval_ns;
	unsigned burst;
	uint64_t window_start; /* monotonic ns when the window opened */
	unsigned passed; /* messages let through in this window */
	unsigned missed; /* messages dropped since last reported */
};

#define RATELIMIT_INIT(interval_ms, burst_count)                   \
	{                                                          \
		.interval_ns = 1000000u * (uint64_t)(interval_ms), \
		.burst = (burst_count),                            \
	}

/* The kernel's default: 10 messages per 5 seconds. */
#define RATELIMIT_DEFAULT RATELIMIT_INIT(5000, 10)

/*
 * Decide whether a message at time now_ns (a monotonic clock in
 * nanoseconds) may be logged. When a new window opens, the number of
 * messages dropped in the previous ones is returned in *missed (if not
 * NULL) so the caller can say so; otherwise *missed is 0.
 */
bool ratelimit_allow_at(struct ratelimit *rl, uint64_t now_ns,
			unsigned *missed);

/* ratelimit_allow_at with the current CLOCK_MONOTONIC time. */
bool ratelimit_allow(struct ratelimit *rl, unsigned *missed);

/*
 * Log through a rate limiter: drops the message if rl says so, and
 * reports how many were dropped before the next one that passes.
 */
void logger_printf_limited(const struct logger *lg, struct ratelimit *rl,
			   enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
