// SPDX-License-Identifier: MIT
/*
 * Split virtqueues against a fake guest memory: chains, indirect tables,
 * loops, out-of-range addresses, oversize lengths, the used ring and
 * event-index interrupt suppression.
 */
#include <base/endian.h>
#include <base/test.h>
#include <string.h>

#include "../virtqueue.h"
#include "fake_platform.h"

#define MEM (1u << 20)
#define QSZ 8u
#define DESC_GPA 0x1000u
#define AVAIL_GPA 0x2000u
#define USED_GPA 0x3000u
#define BUF_GPA 0x10000u

struct rig {
	struct hk_vm *vm;
	struct hk_vq vq;
	struct hk_vq_chain *c;
	uint16_t avail_idx;
};

static void rig_init(struct rig *r, uint16_t size)
{
	r->vm = fake_vm_new(MEM);
	ASSERT_NOT_NULL(r->vm);
	r->c = calloc(1, sizeof(*r->c));
	ASSERT_NOT_NULL(r->c);
	hk_vq_init(&r->vq, r->vm, NULL, "test");
	r->vq.size = size;
	r->vq.desc_gpa = DESC_GPA;
	r->vq.avail_gpa = AVAIL_GPA;
	r->vq.used_gpa = USED_GPA;
	r->avail_idx = 0;
	ASSERT_OK(hk_vq_enable(&r->vq));
}

static void rig_free(struct rig *r)
{
	free(r->c);
	fake_vm_free(r->vm);
}

static void put_desc_at(struct rig *r, uint64_t table, unsigned i,
			uint64_t addr, uint32_t len, uint16_t flags,
			uint16_t next)
{
	uint8_t *d = r->vm->mem + table + 16 * i;

	store_le64(d, addr);
	store_le32(d + 8, len);
	store_le16(d + 12, flags);
	store_le16(d + 14, next);
}

static void put_desc(struct rig *r, unsigned i, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	put_desc_at(r, DESC_GPA, i, addr, len, flags, next);
}

static void publish(struct rig *r, uint16_t head)
{
	uint16_t size = r->vq.size;

	store_le16(r->vm->mem + AVAIL_GPA + 4 + 2 * (r->avail_idx % size),
		   head);
	r->avail_idx++;
	store_le16(r->vm->mem + AVAIL_GPA + 2, r->avail_idx);
}

static uint16_t used_idx(struct rig *r)
{
	return load_le16(r->vm->mem + USED_GPA + 2);
}

TEST(simple_chain_readable_then_writable)
{
	struct rig r;

	rig_init(&r, QSZ);
	put_desc(&r, 0, BUF_GPA, 16, HK_VQ_DESC_F_NEXT, 1);
	put_desc(&r, 1, BUF_GPA + 0x100, 512,
		 HK_VQ_DESC_F_NEXT | HK_VQ_DESC_F_WRITE, 2);
	put_desc(&r, 2, BUF_GPA + 0x400, 1, HK_VQ_DESC_F_WRITE, 0);
	ASSERT_EQ_INT(hk_vq_pop(&r.vq, r.c), 0);
	publish(&r, 0);
	ASSERT_EQ_INT(hk_vq_pop(&r.vq, r.c), 1);
	ASSERT_EQ_U64(r.c->head, 0);
	ASSERT_EQ_U64(r.c->n_out, 1);
	ASSERT_EQ_U64(r.c->n_in, 2);
	ASSERT_EQ_U64(r.c->out_len, 16);
	ASSERT_EQ_U64(r.c->in_len, 513);
	ASSERT_EQ_PTR(r.c->iov[0].iov_base, r.vm->mem + BUF_GPA);
	ASSERT_EQ_PTR(r.c->iov[2].iov_base, r.vm->mem + BUF_GPA + 0x400);
	ASSERT_EQ_INT(hk_vq_pop(&r.vq, r.c), 0);
	ASSERT_FALSE(r.vq.broken);
	rig_free(&r);
}

TEST(used_ring_is_written_and_wraps)
{
	struct rig r;

	rig_init(&r, 4);
	put_desc(&r, 3, BUF_GPA, 8, HK_VQ_DESC_F_WRITE, 0);
	for (unsigned n = 0; n < 10; n++) {
		publish(&r, 3);
		ASSERT_EQ_INT(hk_vq_pop(&r.vq, r.c), 1);
		ASSERT_EQ_U64(r.c->head, 3);
		hk_vq_push(&r.vq, r.c->head, 5 + n);
		ASSERT_EQ_U64(used_idx(&r), n + 1);
		ASSERT_EQ_U64(load_le32(r.vm->mem + USED_GPA + 4 + 8 * (n % 4)),
			      3);
		ASSERT_EQ_U64(load_le32(r.vm->mem + USED_GPA + 8 + 8 * (n % 4)),
			      5 + n);
	}
	rig_free(&r);
}

TEST(indirect_table)
{
	struct rig r;
	const uint64_t table = 0x8000;

	rig_init(&r, QSZ);
	put_desc_at(&r, table, 0, BUF_GPA, 16, HK_VQ_DESC_F_NEXT, 1);
	put_desc_at(&r, table, 1, BUF_GPA + 0x200, 4096,
		    HK_VQ_DESC_F_NEXT | HK_VQ_DESC_F_WRITE, 2);
	put_desc_at(&r, table, 2, BUF_GPA + 0x2000, 1, HK_VQ_DESC_F_WRITE, 0);
	put_desc(&r, 5, table, 3 * 16, HK_VQ_DESC_F_INDIRECT, 0);
	publish(&r, 5);
	ASSERT_EQ_INT(hk_vq_pop(&r.vq, r.c), 1);
	ASSERT_EQ_U64(r.c->head, 5);
	ASSERT_EQ_U64(r.c->n_out, 1);
	ASSERT_EQ_U64(r.c->n_in, 2);
	ASSERT_EQ_U64(r.c->in_len, 4097);
	rig_free(&r);
}

static void expect_broken(struct rig *r)
{
	ASSERT_EQ_INT(hk_vq_pop(&r->vq, r->c), -EIO);
	ASSERT_TRUE(r->vq.broken);
	/* Stays broken, and pushes do nothing. */
	ASSERT_EQ_INT(hk_vq_pop(&r->vq, r->c), -EIO);
	hk_vq_push(&r->vq, 0, 0);
	ASSERT_EQ_U64(used_idx(r), 0);
	ASSERT_FALSE(hk_vq_rearm(&r->vq));
}

TEST(loop_in_chain_breaks_queue)
{
	struct rig r;

	rig_init(&r, QSZ);
	put_desc(&r, 0, BUF_GPA, 16, HK_VQ_DESC_F_NEXT, 1);
	put_desc(&r, 1, BUF_GPA, 16, HK_VQ_DESC_F_NEXT, 0);
	publish(&r, 0);
	expect_broken(&r);
	rig_free(&r);
}

TEST(self_loop_breaks_queue)
{
	struct rig r;

	rig_init(&r, QSZ);
	put_desc(&r, 2, BUF_GPA, 16, HK_VQ_DESC_F_NEXT, 2);
	publish(&r, 2);
	expect_broken(&r);
	rig_free(&r);
}

TEST(full_length_chain_is_fine)
{
	struct rig r;

	rig_init(&r, QSZ);
	for (unsigned i = 0; i < QSZ; i++)
		put_desc(&r, i, BUF_GPA + 16 * i, 16,
			 i + 1 < QSZ ? HK_VQ_DESC_F_NEXT : 0,
			 (uint16_t)(i + 1));
	publish(&r, 0);
	ASSERT_EQ_INT(hk_vq_pop(&r.vq, r.c), 1);
	ASSERT_EQ_U64(r.c->n_out, QSZ);
	rig_free(&r);
}

TEST(head_out_of_range)
{
	struct rig r;

	rig_init(&r, QSZ);
	publish(&r, QSZ);
	expect_broken(&r);
	rig_free(&r);
}

TEST(next_out_of_range)
{
	struct rig r;

	rig_init(&r, QSZ);
	put_desc(&r, 0, BUF_GPA, 16, HK_VQ_DESC_F_NEXT, 200);
	publish(&r, 0);
	expect_broken(&r);
	rig_free(&r);
}

TEST(buffer_outside_memory)
{
	struct rig r;

	rig_init(&r, QSZ);
	put_desc(&r, 0, MEM - 8, 16, 0, 0);
	publish(&r, 0);
	expect_broken(&r);
	rig_free(&r);
}

TEST(buffer_address_overflow)
{
	struct rig r;

	rig_init(&r, QSZ);
	put_desc(&r, 0, UINT64_MAX - 4, 16, 0, 0);
	publish(&r, 0);
	expect_broken(&r);
	rig_free(&r);
}

TEST(oversize_total_length)
{
	struct rig r;

	rig_init(&r, QSZ);
	/* 0xffffffff bytes each: the sum passes the cap before any
	 * address is looked at, and 64-bit sums cannot wrap. */
	put_desc(&r, 0, 0, 0xffffffffu, HK_VQ_DESC_F_NEXT, 1);
	put_desc(&r, 1, 0, 0xffffffffu, 0, 0);
	publish(&r, 0);
	expect_broken(&r);
	rig_free(&r);
}

TEST(readable_after_writable)
{
	struct rig r;

	rig_init(&r, QSZ);
	put_desc(&r, 0, BUF_GPA, 16, HK_VQ_DESC_F_NEXT | HK_VQ_DESC_F_WRITE, 1);
	put_desc(&r, 1, BUF_GPA, 16, 0, 0);
	publish(&r, 0);
	expect_broken(&r);
	rig_free(&r);
}

TEST(nested_indirect)
{
	struct rig r;

	rig_init(&r, QSZ);
	put_desc_at(&r, 0x8000, 0, 0x9000, 16, HK_VQ_DESC_F_INDIRECT, 0);
	put_desc(&r, 0, 0x8000, 16, HK_VQ_DESC_F_INDIRECT, 0);
	publish(&r, 0);
	expect_broken(&r);
	rig_free(&r);
}

TEST(indirect_bad_sizes_and_ranges)
{
	static const struct {
		uint64_t addr;
		uint32_t len;
		uint16_t flags;
	} bad[] = {
		{ 0x8000, 0, HK_VQ_DESC_F_INDIRECT }, /* empty */
		{ 0x8000, 24, HK_VQ_DESC_F_INDIRECT }, /* not whole */
		{ 0x8000, 16 * (HK_VQ_MAX_SIZE + 1), HK_VQ_DESC_F_INDIRECT },
		{ MEM - 16, 32, HK_VQ_DESC_F_INDIRECT }, /* off the end */
		{ 0x8000, 16, HK_VQ_DESC_F_INDIRECT | HK_VQ_DESC_F_NEXT },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct rig r;

		rig_init(&r, QSZ);
		put_desc_at(&r, 0x8000, 0, BUF_GPA, 16, 0, 0);
		put_desc_at(&r, 0x8000, 1, BUF_GPA, 16, 0, 0);
		put_desc(&r, 0, bad[i].addr, bad[i].len, bad[i].flags, 1);
		publish(&r, 0);
		expect_broken(&r);
		rig_free(&r);
	}
}

TEST(indirect_loop)
{
	struct rig r;

	rig_init(&r, QSZ);
	put_desc_at(&r, 0x8000, 0, BUF_GPA, 16, HK_VQ_DESC_F_NEXT, 1);
	put_desc_at(&r, 0x8000, 1, BUF_GPA, 16, HK_VQ_DESC_F_NEXT, 0);
	put_desc(&r, 0, 0x8000, 32, HK_VQ_DESC_F_INDIRECT, 0);
	publish(&r, 0);
	expect_broken(&r);
	rig_free(&r);
}

TEST(avail_index_runs_too_far_ahead)
{
	struct rig r;

	rig_init(&r, QSZ);
	store_le16(r.vm->mem + AVAIL_GPA + 2, QSZ + 1);
	expect_broken(&r);
	rig_free(&r);
}

TEST(reset_clears_broken)
{
	struct rig r;

	rig_init(&r, QSZ);
	publish(&r, QSZ);
	expect_broken(&r);
	hk_vq_reset(&r.vq);
	ASSERT_FALSE(r.vq.broken);
	ASSERT_EQ_INT(hk_vq_pop(&r.vq, r.c), 0); /* disabled after reset */
	rig_free(&r);
}

TEST(enable_rejects_bad_rings)
{
	struct rig r;

	rig_init(&r, QSZ);
	hk_vq_reset(&r.vq);
	r.vq.desc_gpa = DESC_GPA;
	r.vq.avail_gpa = AVAIL_GPA;
	r.vq.used_gpa = USED_GPA;
	r.vq.size = 3;
	ASSERT_ERR(hk_vq_enable(&r.vq), -EINVAL);
	r.vq.size = 2048;
	ASSERT_ERR(hk_vq_enable(&r.vq), -EINVAL);
	r.vq.size = 0;
	ASSERT_ERR(hk_vq_enable(&r.vq), -EINVAL);
	r.vq.size = QSZ;
	r.vq.desc_gpa = DESC_GPA + 8;
	ASSERT_ERR(hk_vq_enable(&r.vq), -EINVAL);
	r.vq.desc_gpa = MEM - 16;
	ASSERT_ERR(hk_vq_enable(&r.vq), -EINVAL);
	r.vq.desc_gpa = DESC_GPA;
	r.vq.used_gpa = MEM - 8;
	ASSERT_ERR(hk_vq_enable(&r.vq), -EINVAL);
	r.vq.used_gpa = USED_GPA;
	ASSERT_OK(hk_vq_enable(&r.vq));
	rig_free(&r);
}

TEST(interrupt_flag_without_event_idx)
{
	struct rig r;

	rig_init(&r, QSZ);
	put_desc(&r, 0, BUF_GPA, 1, HK_VQ_DESC_F_WRITE, 0);
	publish(&r, 0);
	ASSERT_EQ_INT(hk_vq_pop(&r.vq, r.c), 1);
	hk_vq_push(&r.vq, 0, 1);
	ASSERT_TRUE(hk_vq_should_interrupt(&r.vq));
	store_le16(r.vm->mem + AVAIL_GPA, HK_VQ_AVAIL_F_NO_INTERRUPT);
	ASSERT_FALSE(hk_vq_should_interrupt(&r.vq));
	rig_free(&r);
}

TEST(event_idx_suppresses_interrupts)
{
	struct rig r;
	uint8_t *used_event;

	rig_init(&r, QSZ);
	r.vq.event_idx = true;
	used_event = r.vm->mem + AVAIL_GPA + 4 + 2 * QSZ;
	put_desc(&r, 0, BUF_GPA, 1, HK_VQ_DESC_F_WRITE, 0);

	/* The driver wants an interrupt once used idx passes 2. */
	store_le16(used_event, 2);
	for (unsigned n = 1; n <= 4; n++) {
		bool want;

		publish(&r, 0);
		ASSERT_EQ_INT(hk_vq_pop(&r.vq, r.c), 1);
		/* avail_event follows our progress. */
		ASSERT_EQ_U64(load_le16(r.vm->mem + USED_GPA + 4 + 8 * QSZ), n);
		hk_vq_push(&r.vq, 0, 1);
		want = hk_vq_should_interrupt(&r.vq);
		/* The first push always signals (nothing signalled yet);
		 * then only the push making used idx 3 = used_event + 1. */
		if (n == 1 || n == 3)
			ASSERT_TRUE(want);
		else
			ASSERT_FALSE(want);
	}
	rig_free(&r);
}

TEST(rearm_sees_late_buffers)
{
	struct rig r;

	rig_init(&r, QSZ);
	r.vq.event_idx = true;
	put_desc(&r, 0, BUF_GPA, 1, HK_VQ_DESC_F_WRITE, 0);
	ASSERT_FALSE(hk_vq_rearm(&r.vq));
	publish(&r, 0);
	ASSERT_TRUE(hk_vq_rearm(&r.vq));
	ASSERT_EQ_INT(hk_vq_pop(&r.vq, r.c), 1);
	ASSERT_FALSE(hk_vq_rearm(&r.vq));
	ASSERT_EQ_U64(load_le16(r.vm->mem + USED_GPA + 4 + 8 * QSZ), 1);
	rig_free(&r);
}

TEST(zero_length_descriptors_are_skipped)
{
	struct rig r;

	rig_init(&r, QSZ);
	put_desc(&r, 0, 0xdeadbeef00ull, 0, HK_VQ_DESC_F_NEXT, 1);
	put_desc(&r, 1, BUF_GPA, 4, 0, 0);
	publish(&r, 0);
	ASSERT_EQ_INT(hk_vq_pop(&r.vq, r.c), 1);
	ASSERT_EQ_U64(r.c->n_out, 1);
	ASSERT_EQ_U64(r.c->out_len, 4);
	rig_free(&r);
}

TEST(iov_helpers)
{
	uint8_t a[3] = { 1, 2, 3 }, b[5] = { 4, 5, 6, 7, 8 }, out[8];
	struct iovec iov[2] = { { a, 3 }, { b, 5 } }, sl[2];
	int n;

	ASSERT_EQ_U64(hk_iov_to_buf(iov, 2, 2, out, 4), 4);
	ASSERT_EQ_MEM(out, ((uint8_t[]){ 3, 4, 5, 6 }), 4);
	ASSERT_EQ_U64(hk_iov_to_buf(iov, 2, 6, out, 8), 2);
	ASSERT_EQ_U64(hk_iov_from_buf(iov, 2, 3, "xy", 2), 2);
	ASSERT_EQ_U64(b[0], 'x');
	n = hk_iov_slice(iov, 2, 1, 6, sl, 2);
	ASSERT_EQ_INT(n, 2);
	ASSERT_EQ_PTR(sl[0].iov_base, a + 1);
	ASSERT_EQ_U64(sl[0].iov_len, 2);
	ASSERT_EQ_U64(sl[1].iov_len, 4);
	ASSERT_ERR(hk_iov_slice(iov, 2, 1, 8, sl, 2), -ERANGE);
	ASSERT_ERR(hk_iov_slice(iov, 2, 1, 6, sl, 1), -ERANGE);
}

static const struct test_case tests[] = {
	TEST_CASE(simple_chain_readable_then_writable),
	TEST_CASE(used_ring_is_written_and_wraps),
	TEST_CASE(indirect_table),
	TEST_CASE(loop_in_chain_breaks_queue),
	TEST_CASE(self_loop_breaks_queue),
	TEST_CASE(full_length_chain_is_fine),
	TEST_CASE(head_out_of_range),
	TEST_CASE(next_out_of_range),
	TEST_CASE(buffer_outside_memory),
	TEST_CASE(buffer_address_overflow),
	TEST_CASE(oversize_total_length),
	TEST_CASE(readable_after_writable),
	TEST_CASE(nested_indirect),
	TEST_CASE(indirect_bad_sizes_and_ranges),
	TEST_CASE(indirect_loop),
	TEST_CASE(avail_index_runs_too_far_ahead),
	TEST_CASE(reset_clears_broken),
	TEST_CASE(enable_rejects_bad_rings),
	TEST_CASE(interrupt_flag_without_event_idx),
	TEST_CASE(event_idx_suppresses_interrupts),
	TEST_CASE(rearm_sees_late_buffers),
	TEST_CASE(zero_length_descriptors_are_skipped),
	TEST_CASE(iov_helpers),
};

TEST_MAIN(tests);
