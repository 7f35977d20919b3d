// SPDX-License-Identifier: MIT
/*
 * The CMOS RTC (rtc.c) through its ports, on the fake platform and a
 * clock the test moves: the time in BCD and binary, 24- and 12-hour
 * form, UTC and local time; setting the time under SET and reading it
 * back as it advances; UIP as Linux's mc146818 code polls it (it always
 * clears); the update, alarm and periodic flags and IRQ 8; the RAM.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../rtc.h"
#include "base/test.h"
#include "fake_platform.h"

/* 2024-02-29 23:59:58 UTC, a Thursday. */
#define T0 1709251198

struct clock {
	struct timespec now;
	long step_ns; /* added after each reading (a guest's pace) */
};

static void test_clock(void *opaque, struct timespec *now)
{
	struct clock *c = opaque;

	*now = c->now;
	c->now.tv_nsec += c->step_ns;
	while (c->now.tv_nsec >= 1000000000) {
		c->now.tv_nsec -= 1000000000;
		c->now.tv_sec++;
	}
}

static void advance(struct clock *c, long ns)
{
	c->now.tv_nsec += ns;
	while (c->now.tv_nsec >= 1000000000) {
		c->now.tv_nsec -= 1000000000;
		c->now.tv_sec++;
	}
}

struct rig {
	struct hk_vm *vm;
	struct hk_rtc *rtc;
	struct clock clock;
};

static void rig_init(struct rig *r, bool utc, time_t t, long nsec)
{
	memset(r, 0, sizeof(*r));
	r->vm = fake_vm_new(4096);
	ASSERT_NOT_NULL(r->vm);
	r->clock.now.tv_sec = t;
	r->clock.now.tv_nsec = nsec;
	ASSERT_OK(hk_rtc_new(r->vm, utc, &r->rtc));
	hk_rtc_set_clock(r->rtc, test_clock, &r->clock);
}

static void rig_release(struct rig *r)
{
	hk_rtc_free(r->rtc);
	fake_vm_free(r->vm);
}

static uint8_t rd(struct rig *r, uint8_t idx)
{
	uint64_t v = idx;

	ASSERT_TRUE(fake_io_access(r->vm->pio, 0x70, 1, true, &v));
	v = 0;
	ASSERT_TRUE(fake_io_access(r->vm->pio, 0x71, 1, false, &v));
	return (uint8_t)v;
}

static void wr(struct rig *r, uint8_t idx, uint8_t val)
{
	uint64_t v = idx;

	ASSERT_TRUE(fake_io_access(r->vm->pio, 0x70, 1, true, &v));
	v = val;
	ASSERT_TRUE(fake_io_access(r->vm->pio, 0x71, 1, true, &v));
}

TEST(bcd_24h_by_default)
{
	struct rig r;

	rig_init(&r, true, T0, 0);
	ASSERT_EQ_U64(rd(&r, 0x0b), 0x02); /* 24 h, BCD */
	ASSERT_EQ_U64(rd(&r, 0x0a), 0x26);
	ASSERT_EQ_U64(rd(&r, 0x0d), 0x80); /* valid RAM and time */
	ASSERT_EQ_U64(rd(&r, 0x00), 0x58);
	ASSERT_EQ_U64(rd(&r, 0x02), 0x59);
	ASSERT_EQ_U64(rd(&r, 0x04), 0x23);
	ASSERT_EQ_U64(rd(&r, 0x06), 5); /* Thursday */
	ASSERT_EQ_U64(rd(&r, 0x07), 0x29);
	ASSERT_EQ_U64(rd(&r, 0x08), 0x02);
	ASSERT_EQ_U64(rd(&r, 0x09), 0x24);
	ASSERT_EQ_U64(rd(&r, 0x32), 0x20);
	/* Two seconds on: the next day, in March. */
	advance(&r.clock, 2000000000);
	ASSERT_EQ_U64(rd(&r, 0x00), 0x00);
	ASSERT_EQ_U64(rd(&r, 0x04), 0x00);
	ASSERT_EQ_U64(rd(&r, 0x07), 0x01);
	ASSERT_EQ_U64(rd(&r, 0x08), 0x03);
	ASSERT_EQ_U64(rd(&r, 0x06), 6);
	rig_release(&r);
}

TEST(binary_mode_follows_dm)
{
	struct rig r;

	rig_init(&r, true, T0, 0);
	wr(&r, 0x0b, 0x06); /* binary, 24 h */
	ASSERT_EQ_U64(rd(&r, 0x00), 58);
	ASSERT_EQ_U64(rd(&r, 0x02), 59);
	ASSERT_EQ_U64(rd(&r, 0x04), 23);
	ASSERT_EQ_U64(rd(&r, 0x07), 29);
	ASSERT_EQ_U64(rd(&r, 0x09), 24);
	ASSERT_EQ_U64(rd(&r, 0x32), 20);
	wr(&r, 0x0b, 0x02);
	ASSERT_EQ_U64(rd(&r, 0x00), 0x58);
	rig_release(&r);
}

TEST(twelve_hour_mode)
{
	struct rig r;

	rig_init(&r, true, T0, 0);
	wr(&r, 0x0b, 0x00); /* BCD, 12 h */
	ASSERT_EQ_U64(rd(&r, 0x04), 0x80 | 0x11); /* 11 PM */
	wr(&r, 0x0b, 0x04); /* binary, 12 h */
	ASSERT_EQ_U64(rd(&r, 0x04), 0x80 | 11);
	advance(&r.clock, 2000000000); /* 00:00:00 */
	ASSERT_EQ_U64(rd(&r, 0x04), 12); /* 12 AM */
	advance(&r.clock, 12 * 3600 * 1000000000ll);
	ASSERT_EQ_U64(rd(&r, 0x04), 0x80 | 12); /* 12 PM */
	advance(&r.clock, 3600 * 1000000000ll);
	wr(&r, 0x0b, 0x00);
	ASSERT_EQ_U64(rd(&r, 0x04), 0x80 | 0x01); /* 1 PM */
	rig_release(&r);
}

TEST(local_time_without_utc)
{
	struct rig r;

	/* POSIX TZ: "XYZ-3" is three hours east of UTC. */
	ASSERT_OK(setenv("TZ", "XYZ-3", 1));
	tzset();
	rig_init(&r, false, T0, 0);
	ASSERT_EQ_U64(rd(&r, 0x04), 0x02);
	ASSERT_EQ_U64(rd(&r, 0x02), 0x59);
	ASSERT_EQ_U64(rd(&r, 0x07), 0x01);
	ASSERT_EQ_U64(rd(&r, 0x08), 0x03);
	rig_release(&r);
	rig_init(&r, true, T0, 0);
	ASSERT_EQ_U64(rd(&r, 0x04), 0x23);
	rig_release(&r);
}

TEST(set_time_then_read_it_advancing)
{
	struct rig r;

	rig_init(&r, true, T0, 300000000);
	/* Linux's mc146818_set_time: SET, the fields, SET off. */
	wr(&r, 0x0b, 0x82);
	wr(&r, 0x00, 0x59);
	wr(&r, 0x02, 0x59);
	wr(&r, 0x04, 0x23);
	wr(&r, 0x07, 0x31);
	wr(&r, 0x08, 0x12);
	wr(&r, 0x09, 0x31);
	wr(&r, 0x32, 0x20);
	/* Frozen while SET is up: what was written, however long. */
	advance(&r.clock, 5000000000ll);
	ASSERT_EQ_U64(rd(&r, 0x00), 0x59);
	ASSERT_EQ_U64(rd(&r, 0x09), 0x31);
	ASSERT_EQ_U64(rd(&r, 0x0a) & 0x80, 0); /* no UIP while SET */
	wr(&r, 0x0b, 0x02);
	ASSERT_EQ_U64(rd(&r, 0x00), 0x59);
	ASSERT_EQ_U64(rd(&r, 0x07), 0x31);
	advance(&r.clock, 1000000000);
	/* 2032-01-01 00:00:00, a Thursday. */
	ASSERT_EQ_U64(rd(&r, 0x00), 0x00);
	ASSERT_EQ_U64(rd(&r, 0x02), 0x00);
	ASSERT_EQ_U64(rd(&r, 0x04), 0x00);
	ASSERT_EQ_U64(rd(&r, 0x07), 0x01);
	ASSERT_EQ_U64(rd(&r, 0x08), 0x01);
	ASSERT_EQ_U64(rd(&r, 0x09), 0x32);
	ASSERT_EQ_U64(rd(&r, 0x32), 0x20);
	ASSERT_EQ_U64(rd(&r, 0x06), 5);
	advance(&r.clock, 61000000000ll);
	ASSERT_EQ_U64(rd(&r, 0x00), 0x01);
	ASSERT_EQ_U64(rd(&r, 0x02), 0x01);
	/* A field written while the clock runs changes the time at once;
	 * the others keep counting from there. */
	wr(&r, 0x02, 0x30);
	ASSERT_EQ_U64(rd(&r, 0x02), 0x30);
	ASSERT_EQ_U64(rd(&r, 0x00), 0x01);
	ASSERT_EQ_U64(rd(&r, 0x09), 0x32);
	/* In binary mode the same way. */
	wr(&r, 0x0b, 0x86);
	wr(&r, 0x09, 99);
	wr(&r, 0x32, 19);
	wr(&r, 0x0b, 0x06);
	ASSERT_EQ_U64(rd(&r, 0x09), 99);
	ASSERT_EQ_U64(rd(&r, 0x32), 19);
	rig_release(&r);
}

TEST(uip_is_set_just_before_the_update_only)
{
	struct rig r;

	rig_init(&r, true, T0, 0);
	ASSERT_EQ_U64(rd(&r, 0x0a), 0x26);
	r.clock.now.tv_nsec = 999000000;
	ASSERT_EQ_U64(rd(&r, 0x0a), 0x26);
	r.clock.now.tv_nsec = 999900000; /* 100 us before the update */
	ASSERT_EQ_U64(rd(&r, 0x0a), 0xa6);
	ASSERT_EQ_U64(rd(&r, 0x00), 0x58);
	advance(&r.clock, 200000);
	ASSERT_EQ_U64(rd(&r, 0x0a), 0x26);
	ASSERT_EQ_U64(rd(&r, 0x00), 0x59);
	/* UIP is read-only; a stopped divider never shows it. */
	wr(&r, 0x0a, 0xa6);
	r.clock.now.tv_nsec = 0;
	ASSERT_EQ_U64(rd(&r, 0x0a), 0x26);
	wr(&r, 0x0a, 0x76);
	r.clock.now.tv_nsec = 999900000;
	ASSERT_EQ_U64(rd(&r, 0x0a), 0x76);
	rig_release(&r);
}

/* Linux's mc146818_avoid_UIP and get_time: seconds, UIP, seconds again,
 * the fields, UIP again, seconds again; retry on any change. */
static int linux_read(struct rig *r, uint8_t f[10])
{
	for (int i = 0; i < 100; i++) {
		uint8_t sec = rd(r, 0x00);

		if (rd(r, 0x0a) & 0x80)
			continue;
		if (sec != rd(r, 0x00))
			continue;
		for (uint8_t j = 0; j < 10; j++)
			f[j] = rd(r, j);
		if (rd(r, 0x0a) & 0x80)
			continue;
		if (sec != rd(r, 0x00))
			continue;
		return i;
	}
	return -1;
}

TEST(uip_never_stuck_for_a_polling_guest)
{
	struct rig r;
	uint8_t f[10];
	int tries;

	rig_init(&r, true, T0, 999700000);
	/* Every port access takes 20 us of the guest's time: from 300 us
	 * before the update, the read goes through within a few tries and
	 * gives a consistent time, before or after the update. */
	r.clock.step_ns = 20000;
	for (long start = 999500000; start < 1000000000; start += 37000) {
		r.clock.now.tv_sec = T0;
		r.clock.now.tv_nsec = start;
		tries = linux_read(&r, f);
		ASSERT_GE_INT(tries, 0);
		ASSERT_LE_INT(tries, 20);
		ASSERT_TRUE(f[0] == 0x58 || f[0] == 0x59);
		ASSERT_EQ_U64(f[4], 0x23);
	}
	/* A slow guest (1 ms an access) still gets through. */
	r.clock.step_ns = 1000000;
	ASSERT_GE_INT(linux_read(&r, f), 0);
	rig_release(&r);
}

TEST(update_alarm_and_periodic_flags_raise_irq8)
{
	struct rig r;
	unsigned raised;

	rig_init(&r, true, T0, 100000000);
	/* Flags count without interrupts enabled; reading C clears them. */
	ASSERT_EQ_U64(rd(&r, 0x0c) & 0x70, 0x40); /* PF: 1024 Hz runs */
	advance(&r.clock, 1000000000);
	ASSERT_EQ_U64(rd(&r, 0x0c) & 0x10, 0x10); /* UF */
	ASSERT_EQ_U64(rd(&r, 0x0c) & 0x10, 0);
	ASSERT_EQ_U64(r.vm->irq_raised, 0);

	/* UIE: the timer's tick after the update raises IRQ 8. */
	wr(&r, 0x0b, 0x12);
	advance(&r.clock, 1000000000);
	hk_rtc_tick(r.rtc);
	ASSERT_EQ_U64(r.vm->irq_raised, 1);
	/* IRQF, UF (and AF: the alarm registers' 00:00:00 came too). */
	ASSERT_EQ_U64(rd(&r, 0x0c) & 0xb0, 0xb0);
	ASSERT_EQ_U64(rd(&r, 0x0c) & 0x90, 0);
	raised = r.vm->irq_raised;

	/* AIE: an alarm two seconds ahead (now 00:00:00 -> 00:00:02). */
	wr(&r, 0x0b, 0x22);
	wr(&r, 0x01, 0x02);
	wr(&r, 0x03, 0x00);
	wr(&r, 0x05, 0x00);
	ASSERT_EQ_U64(rd(&r, 0x00), 0x00);
	rd(&r, 0x0c);
	advance(&r.clock, 1000000000);
	hk_rtc_tick(r.rtc);
	ASSERT_EQ_U64(rd(&r, 0x0c) & 0xa0, 0);
	advance(&r.clock, 1000000000);
	hk_rtc_tick(r.rtc);
	ASSERT_EQ_U64(r.vm->irq_raised, raised + 1);
	ASSERT_EQ_U64(rd(&r, 0x0c) & 0xa0, 0xa0);
	/* "Don't care" in every field: each second. */
	wr(&r, 0x01, 0xff);
	wr(&r, 0x03, 0xc0);
	wr(&r, 0x05, 0xff);
	advance(&r.clock, 1000000000);
	ASSERT_EQ_U64(rd(&r, 0x0c) & 0xa0, 0xa0);

	/* PIE at 1024 Hz: a millisecond later, PF and IRQF. */
	wr(&r, 0x0b, 0x42);
	rd(&r, 0x0c);
	advance(&r.clock, 1000000);
	hk_rtc_tick(r.rtc);
	ASSERT_EQ_U64(rd(&r, 0x0c) & 0xc0, 0xc0);
	/* Rate select 0: no periodic flag. */
	wr(&r, 0x0a, 0x20);
	rd(&r, 0x0c);
	advance(&r.clock, 1000000);
	ASSERT_EQ_U64(rd(&r, 0x0c) & 0x40, 0);
	rig_release(&r);
}

TEST(cmos_ram_and_index_port)
{
	struct rig r;
	uint64_t v = 0;

	rig_init(&r, true, T0, 0);
	for (unsigned i = 0x0e; i < 0x80; i++)
		if (i != 0x32)
			wr(&r, (uint8_t)i, (uint8_t)(i * 7 + 1));
	for (unsigned i = 0x0e; i < 0x80; i++)
		if (i != 0x32)
			ASSERT_EQ_U64(rd(&r, (uint8_t)i), (uint8_t)(i * 7 + 1));
	/* Bit 7 of the index is the NMI mask, not part of the index. */
	v = 0x80 | 0x20;
	ASSERT_TRUE(fake_io_access(r.vm->pio, 0x70, 1, true, &v));
	ASSERT_TRUE(fake_io_access(r.vm->pio, 0x71, 1, false, &v));
	ASSERT_EQ_U64(v, (uint8_t)(0x20 * 7 + 1));
	ASSERT_TRUE(fake_io_access(r.vm->pio, 0x70, 1, false, &v));
	ASSERT_EQ_U64(v, 0x20);
	/* D and C are read-only; the time fields are not RAM. */
	wr(&r, 0x0d, 0x00);
	ASSERT_EQ_U64(rd(&r, 0x0d), 0x80);
	ASSERT_EQ_U64(rd(&r, 0x00), 0x58);
	rig_release(&r);
}

static const struct test_case tests[] = {
	TEST_CASE(bcd_24h_by_default),
	TEST_CASE(binary_mode_follows_dm),
	TEST_CASE(twelve_hour_mode),
	TEST_CASE(local_time_without_utc),
	TEST_CASE(set_time_then_read_it_advancing),
	TEST_CASE(uip_is_set_just_before_the_update_only),
	TEST_CASE(uip_never_stuck_for_a_polling_guest),
	TEST_CASE(update_alarm_and_periodic_flags_raise_irq8),
	TEST_CASE(cmos_ram_and_index_port),
};

TEST_MAIN(tests);
