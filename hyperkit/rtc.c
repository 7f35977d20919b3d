// SPDX-License-Identifier: MIT
/*
 * The CMOS real-time clock: a Motorola MC146818 as found in every PC, at
 * ports 0x70 (index; bit 7 is the chipset's NMI mask, ignored here) and
 * 0x71 (data), interrupting on IRQ 8, with its 114 bytes of RAM.
 *
 * Registers: 0 seconds, 1 seconds alarm, 2 minutes, 3 minutes alarm,
 * 4 hours, 5 hours alarm, 6 day of week (1 = Sunday), 7 day of month,
 * 8 month, 9 year (two digits), 0x32 century (the PC convention, which
 * Linux uses only if the FADT names it); A (UIP, divider, rate select),
 * B (SET, PIE, AIE, UIE, SQWE, DM, 24/12, DSE), C (IRQF, PF, AF, UF; read
 * clears), D (VRT: the battery is fine); 0x0e-0x7f RAM.
 *
 * Theory of operation. The time is not counted here: it is computed at
 * each read from the host's clock (UTC with -u, else the host's local
 * time, as hyperkit does) plus an offset in whole seconds that the guest
 * sets by writing the time. So the RTC's seconds change exactly on the
 * host's second boundaries, and UIP (update in progress) reads as set in
 * the last 244 us before one, as on the chip, where the update follows
 * UIP by that much: a guest polling UIP (Linux does before every read)
 * always sees it clear again within a fraction of a millisecond. The
 * fields come out in BCD or binary and 24- or 12-hour form as B's DM and
 * 24/12 bits say (default BCD, 24 hours). While B's SET bit is up the
 * clock's fields are frozen: the guest writes the new time into them and
 * clearing SET turns them into the new offset; a field written without
 * SET changes the time at once.
 *
 * Flags and interrupts: UF (each new second), AF (the time matches the
 * alarm registers, a value of 0xc0-0xff matching anything) and PF (each
 * period of A's rate select) are accounted lazily, on a read of C and
 * when the timer fires: the timer (a timerfd on the event loop) runs only
 * while B enables one of their interrupts, and IRQ 8 follows IRQF. The
 * divider bits are stored, not emulated: the time never stops. Daylight
 * saving is left to the host's clock (DSE is stored only).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "rtc.h"

#define REG_SEC 0x00
#define REG_SEC_ALARM 0x01
#define REG_MIN 0x02
#define REG_MIN_ALARM 0x03
#define REG_HOUR 0x04
#define REG_HOUR_ALARM 0x05
#define REG_WDAY 0x06
#define REG_MDAY 0x07
#define REG_MON 0x08
#define REG_YEAR 0x09
#define REG_A 0x0a
#define REG_B 0x0b
#define REG_C 0x0c
#define REG_D 0x0d
#define REG_CENTURY 0x32
#define N_TIME 10 /* registers 0-9 */

#define A_UIP 0x80
#define A_DV_MASK 0x70
#define A_DV_NORMAL 0x20 /* 32.768 kHz time base, running */
#define A_RS_MASK 0x0f
#define B_SET 0x80
#define B_PIE 0x40
#define B_AIE 0x20
#define B_UIE 0x10
#define B_DM_BINARY 0x04
#define B_24H 0x02
#define C_IRQF 0x80
#define C_PF 0x40
#define C_AF 0x20
#define C_UF 0x10
#define D_VRT 0x80
#define HOUR_PM 0x80
#define ALARM_ANY 0xc0

#define NSEC 1000000000ll
#define UIP_NS 244000ll /* UIP is up this long before the update */

struct hk_rtc {
	struct hk_vm *vm;
	pthread_mutex_t lock;
	bool utc;
	uint8_t index;
	uint8_t cmos[128]; /* A, B, alarms and RAM; time fields unused */
	uint8_t frozen[N_TIME]; /* the time fields while SET is up */
	uint8_t frozen_century;
	int64_t offset; /* guest seconds minus host seconds */
	uint8_t c; /* C's event flags (without IRQF) */
	int64_t flags_sec; /* last guest second accounted in C */
	int64_t pf_index; /* last periodic interval accounted in C */
	bool line;
	int tfd; /* the timer, -1 if none */
	bool in_loop;
	hk_rtc_clock_fn *clock;
	void *clock_opaque;
};

/* The guest's "now": whole seconds (UTC or local) and nanoseconds. */
struct rtc_now {
	int64_t sec; /* guest seconds since 1970 */
	long nsec;
	struct timespec host; /* the host's clock it came from */
};

static void real_clock(void *opaque, struct timespec *now)
{
	(void)opaque;
	clock_gettime(CLOCK_REALTIME, now);
}

static void rtc_now(const struct hk_rtc *r, struct rtc_now *n)
{
	struct tm tm;
	time_t t;

	r->clock(r->clock_opaque, &n->host);
	t = n->host.tv_sec;
	n->sec = (int64_t)n->host.tv_sec;
	if (!r->utc && localtime_r(&t, &tm))
		n->sec += tm.tm_gmtoff;
	n->sec += r->offset;
	n->nsec = n->host.tv_nsec;
}

/* ---------------------------------------------------------------- fields */

static uint8_t enc(uint8_t b, unsigned v)
{
	return b & B_DM_BINARY ? (uint8_t)v : (uint8_t)((v / 10) << 4 | v % 10);
}

static unsigned dec(uint8_t b, uint8_t x)
{
	return b & B_DM_BINARY ? x : (unsigned)(x >> 4) * 10 + (x & 0x0f);
}

static uint8_t enc_hour(uint8_t b, unsigned h)
{
	unsigned h12;

	if (b & B_24H)
		return enc(b, h);
	h12 = h % 12 ? h % 12 : 12;
	return (uint8_t)(enc(b, h12) | (h >= 12 ? HOUR_PM : 0));
}

static unsigned dec_hour(uint8_t b, uint8_t x)
{
	if (b & B_24H)
		return dec(b, x);
	return dec(b, x & (uint8_t)~HOUR_PM) % 12 + (x & HOUR_PM ? 12 : 0);
}

/* The fields (registers 0-9 and the century) of guest time sec. */
static void fields_of(uint8_t b, int64_t sec, uint8_t f[N_TIME],
		      uint8_t *century)
{
	time_t t = (time_t)sec;
	struct tm tm;
	unsigned year;

	memset(&tm, 0, sizeof(tm));
	gmtime_r(&t, &tm);
	year = (unsigned)tm.tm_year + 1900;
	f[REG_SEC] = enc(b, (unsigned)tm.tm_sec);
	f[REG_MIN] = enc(b, (unsigned)tm.tm_min);
	f[REG_HOUR] = enc_hour(b, (unsigned)tm.tm_hour);
	f[REG_WDAY] = enc(b, (unsigned)tm.tm_wday + 1);
	f[REG_MDAY] = enc(b, (unsigned)tm.tm_mday);
	f[REG_MON] = enc(b, (unsigned)tm.tm_mon + 1);
	f[REG_YEAR] = enc(b, year % 100);
	*century = enc(b, (year / 100) % 100);
}

/* Guest seconds from fields in format b (the day of week is ignored:
 * it follows from the date). */
static int64_t seconds_of(uint8_t b, const uint8_t f[N_TIME], uint8_t century)
{
	struct tm tm = { 0 };

	tm.tm_sec = (int)dec(b, f[REG_SEC]);
	tm.tm_min = (int)dec(b, f[REG_MIN]);
	tm.tm_hour = (int)dec_hour(b, f[REG_HOUR]);
	tm.tm_mday = (int)dec(b, f[REG_MDAY]);
	tm.tm_mon = (int)dec(b, f[REG_MON]) - 1;
	tm.tm_year = (int)(dec(b, century) * 100 + dec(b, f[REG_YEAR])) - 1900;
	return (int64_t)timegm(&tm);
}

/* Make guest time sec the current time (SET released, or a field
 * written while the clock runs). */
static void set_time(struct hk_rtc *r, const struct rtc_now *n, int64_t sec)
{
	r->offset += sec - n->sec;
	r->flags_sec = sec;
}

/* ---------------------------------------------------------------- events */

static unsigned periodic_rate(uint8_t a)
{
	unsigned rs = a & A_RS_MASK;

	if (rs == 0 || (a & A_DV_MASK) != A_DV_NORMAL)
		return 0;
	/* 1 and 2 alias 8 and 9 (256 and 128 Hz), as on the chip. */
	if (rs < 3)
		rs += 7;
	return 32768u >> (rs - 1);
}

static bool alarm_field(uint8_t b, uint8_t alarm, unsigned v, bool hour)
{
	if (alarm >= ALARM_ANY)
		return true;
	return (hour ? dec_hour(b, alarm) : dec(b, alarm)) == v;
}

static bool alarm_at(const struct hk_rtc *r, int64_t sec)
{
	uint8_t b = r->cmos[REG_B];
	int64_t tod = ((sec % 86400) + 86400) % 86400;

	return alarm_field(b, r->cmos[REG_SEC_ALARM], (unsigned)(tod % 60),
			   false) &&
	       alarm_field(b, r->cmos[REG_MIN_ALARM], (unsigned)(tod / 60 % 60),
			   false) &&
	       alarm_field(b, r->cmos[REG_HOUR_ALARM], (unsigned)(tod / 3600),
			   true);
}

/* Account the updates, alarms and periods since the last look; set the
 * interrupt line from the flags (lock held). */
static void events_update(struct hk_rtc *r, const struct rtc_now *n)
{
	uint8_t b = r->cmos[REG_B];
	unsigned rate = periodic_rate(r->cmos[REG_A]);
	bool irq;

	if (!(b & B_SET) && n->sec > r->flags_sec) {
		int64_t s = n->sec - r->flags_sec > 86400 ? n->sec - 86400 :
							    r->flags_sec;

		r->c |= C_UF;
		while (++s <= n->sec && !(r->c & C_AF))
			if (alarm_at(r, s))
				r->c |= C_AF;
		r->flags_sec = n->sec;
	} else if (n->sec < r->flags_sec) {
		r->flags_sec = n->sec; /* set back: wait for the next second */
	}
	if (rate) {
		int64_t idx = (int64_t)n->host.tv_sec * rate +
			      (int64_t)n->host.tv_nsec * rate / NSEC;

		if (idx != r->pf_index)
			r->c |= C_PF;
		r->pf_index = idx;
	}
	irq = (r->c & b & (C_PF | C_AF | C_UF)) != 0; /* same bit positions */
	if (irq != r->line) {
		r->line = irq;
		hk_irq_set(r->vm, HK_RTC_IRQ, irq);
	}
}

/* Arm the timer for the next event an enabled interrupt waits for, or
 * stop it (lock held). */
static void timer_arm(struct hk_rtc *r, const struct rtc_now *n)
{
	uint8_t b = r->cmos[REG_B];
	struct itimerspec its = { 0 };
	unsigned rate = periodic_rate(r->cmos[REG_A]);
	int64_t wait = 0;

	if (r->tfd < 0)
		return;
	if (!(b & B_SET) && (b & (B_UIE | B_AIE)))
		wait = NSEC - n->nsec;
	if (!(b & B_SET) && (b & B_PIE) && rate) {
		int64_t period = NSEC / rate;
		int64_t left = period - n->nsec % period;

		if (!wait || left < wait)
			wait = left;
	}
	if (wait) {
		wait += 1000; /* land just past the boundary */
		its.it_value.tv_sec = wait / NSEC;
		its.it_value.tv_nsec = wait % NSEC;
	}
	timerfd_settime(r->tfd, 0, &its, NULL);
}

void hk_rtc_tick(struct hk_rtc *r)
{
	struct rtc_now n;

	pthread_mutex_lock(&r->lock);
	rtc_now(r, &n);
	events_update(r, &n);
	timer_arm(r, &n);
	pthread_mutex_unlock(&r->lock);
}

static void timer_fired(void *opaque, uint32_t events)
{
	struct hk_rtc *r = opaque;
	uint64_t expirations;

	(void)events;
	if (read(r->tfd, &expirations, sizeof(expirations)) < 0) {
		/* EAGAIN: rearmed since it fired; nothing due. */
	}
	hk_rtc_tick(r);
}

/* ---------------------------------------------------------------- ports */

static uint8_t reg_read(struct hk_rtc *r, uint8_t idx)
{
	uint8_t b = r->cmos[REG_B], f[N_TIME], century, v;
	struct rtc_now n;

	idx &= 0x7f; /* the index port keeps 7 bits */
	if (idx >= N_TIME && idx != REG_CENTURY && idx != REG_A && idx != REG_C)
		/* cppcheck-suppress arrayIndexOutOfBoundsCond ; 7 bits */
		return idx == REG_D ? D_VRT : r->cmos[idx];
	rtc_now(r, &n);
	switch (idx) {
	case REG_A:
		v = r->cmos[REG_A];
		if ((v & A_DV_MASK) == A_DV_NORMAL && !(b & B_SET) &&
		    n.nsec >= NSEC - UIP_NS)
			v |= A_UIP;
		return v;
	case REG_C:
		events_update(r, &n);
		v = r->c;
		if (r->c & b & (C_PF | C_AF | C_UF))
			v |= C_IRQF;
		r->c = 0;
		events_update(r, &n); /* lowers the line */
		return v;
	case REG_SEC_ALARM:
	case REG_MIN_ALARM:
	case REG_HOUR_ALARM:
		return r->cmos[idx];
	}
	if (b & B_SET)
		return idx == REG_CENTURY ? r->frozen_century : r->frozen[idx];
	fields_of(b, n.sec, f, &century);
	return idx == REG_CENTURY ? century : f[idx];
}

static void reg_write(struct hk_rtc *r, uint8_t idx, uint8_t v)
{
	uint8_t old = r->cmos[REG_B], f[N_TIME], century;
	struct rtc_now n;
	bool time_field;

	idx &= 0x7f; /* the index port keeps 7 bits */
	time_field = idx < N_TIME || idx == REG_CENTURY;
	if (idx == REG_SEC_ALARM || idx == REG_MIN_ALARM ||
	    idx == REG_HOUR_ALARM) {
		r->cmos[idx] = v;
		return;
	}
	if (idx == REG_C || idx == REG_D)
		return; /* read-only */
	if (!time_field && idx != REG_A && idx != REG_B) {
		r->cmos[idx] = v; /* RAM */
		return;
	}
	rtc_now(r, &n);
	if (idx == REG_A) {
		r->cmos[REG_A] = v & (uint8_t)~A_UIP;
	} else if (idx == REG_B) {
		if (v & B_SET)
			v &= (uint8_t)~B_UIE; /* as the chip does */
		if (!(old & B_SET) && (v & B_SET)) {
			events_update(r, &n);
			fields_of(v, n.sec, r->frozen, &r->frozen_century);
		} else if ((old & B_SET) && !(v & B_SET)) {
			set_time(r, &n,
				 seconds_of(old, r->frozen, r->frozen_century));
		}
		r->cmos[REG_B] = v;
	} else if (old & B_SET) {
		if (idx == REG_CENTURY)
			r->frozen_century = v;
		else
			r->frozen[idx] = v;
	} else {
		fields_of(old, n.sec, f, &century);
		if (idx == REG_CENTURY)
			century = v;
		else
			f[idx] = v;
		set_time(r, &n, seconds_of(old, f, century));
	}
	rtc_now(r, &n);
	events_update(r, &n);
	timer_arm(r, &n);
}

static void rtc_io(void *opaque, uint64_t off, unsigned size, bool write,
		   uint64_t *val)
{
	struct hk_rtc *r = opaque;

	(void)size; /* the chip is byte-wide: the low byte counts */
	pthread_mutex_lock(&r->lock);
	if (off == 0) {
		if (write)
			r->index = (uint8_t)(*val & 0x7f); /* bit 7: NMI mask */
		else
			*val = r->index;
	} else if (write) {
		reg_write(r, r->index, (uint8_t)*val);
	} else {
		*val = reg_read(r, r->index);
	}
	pthread_mutex_unlock(&r->lock);
}

/* ---------------------------------------------------------------- lifecycle */

void hk_rtc_set_clock(struct hk_rtc *r, hk_rtc_clock_fn *fn, void *opaque)
{
	struct rtc_now n;

	pthread_mutex_lock(&r->lock);
	r->clock = fn ? fn : real_clock;
	r->clock_opaque = opaque;
	rtc_now(r, &n);
	r->flags_sec = n.sec;
	pthread_mutex_unlock(&r->lock);
}

int hk_rtc_new(struct hk_vm *vm, bool utc, struct hk_rtc **out)
{
	struct hk_rtc *r = calloc(1, sizeof(*r));
	struct rtc_now n;
	int err;

	if (!r)
		return -ENOMEM;
	r->vm = vm;
	r->utc = utc;
	r->clock = real_clock;
	pthread_mutex_init(&r->lock, NULL);
	r->cmos[REG_A] = A_DV_NORMAL | 0x06; /* 1024 Hz */
	r->cmos[REG_B] = B_24H; /* BCD, 24 hours */
	rtc_now(r, &n);
	r->flags_sec = n.sec;
	r->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (r->tfd < 0) {
		err = -errno;
		goto out_free;
	}
	err = hk_loop_add(vm, r->tfd, EPOLLIN, timer_fired, r);
	if (err)
		goto out_free;
	r->in_loop = true;
	err = hk_pio_register(vm, HK_RTC_PORT, 2, rtc_io, r);
	if (err)
		goto out_free;
	*out = r;
	return 0;
out_free:
	logger_printf(hk_vm_log(vm), LOG_LEVEL_ERR, "RTC: %s", strerror(-err));
	hk_rtc_free(r);
	return err;
}

void hk_rtc_free(struct hk_rtc *r)
{
	if (!r)
		return;
	if (r->in_loop)
		hk_loop_del(r->vm, r->tfd);
	if (r->tfd >= 0)
		close(r->tfd);
	pthread_mutex_destroy(&r->lock);
	free(r);
}
