/* SPDX-License-Identifier: MIT */
/*
 * The PC's CMOS real-time clock (a Motorola MC146818 at ports 0x70-0x71,
 * IRQ 8) and its battery-backed RAM; see rtc.c. It follows the host's
 * clock (UTC, or the host's local time as hyperkit does without -u) plus
 * an offset the guest sets by writing the time. Errors are -errno.
 * Threads: vCPU threads (the ports) and the event thread (its timer);
 * the RTC locks itself.
 */
#ifndef HYPERKIT_RTC_H
#define HYPERKIT_RTC_H

#include <stdbool.h>
#include <time.h>

#include "platform.h"

#define HK_RTC_PORT 0x70 /* index; data at 0x71 */
#define HK_RTC_IRQ 8

struct hk_rtc;

/* Make the RTC and register its ports and timer. utc: the clock keeps
 * UTC (-u), else the host's local time. */
int hk_rtc_new(struct hk_vm *vm, bool utc, struct hk_rtc **out);
/* Unregister and release; NULL does nothing. */
void hk_rtc_free(struct hk_rtc *r);

/* The host clock the RTC reads (default: CLOCK_REALTIME). For tests. */
typedef void hk_rtc_clock_fn(void *opaque, struct timespec *now);
void hk_rtc_set_clock(struct hk_rtc *r, hk_rtc_clock_fn *fn, void *opaque);

/* What the RTC's timer does when it fires: account the update, alarm and
 * periodic events up to now and set the interrupt line. For tests. */
void hk_rtc_tick(struct hk_rtc *r);

#endif
