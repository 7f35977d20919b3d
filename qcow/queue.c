/* SPDX-License-Identifier: MIT */
/*
 * Asynchronous I/O through a pool of worker threads: up to `depth`
 * requests run at once against one image, whose own locking lets data I/O
 * to allocated clusters proceed in parallel. Completions are collected by
 * the caller with qcow_queue_reap.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"

struct qcow_queue {
	struct qcow_image *img;
	pthread_mutex_t lock;
	pthread_cond_t work, done_cv;
	struct qcow_req **pending, **done;	/* rings of depth entries */
	unsigned depth, np_head, np, nd_head, nd, inflight;
	pthread_t *threads;
	unsigned nthreads;
	bool stop;
};

static void run_req(struct qcow_image *img, struct qcow_req *r)
{
	switch (r->op) {
	case QCOW_OP_READ:
		r->result = qcow_image_pread(img, r->buf, r->len, r->offset);
		break;
	case QCOW_OP_WRITE:
		r->result = qcow_image_pwrite(img, r->buf, r->len, r->offset);
		break;
	case QCOW_OP_FLUSH:
		r->result = qcow_image_flush(img);
		break;
	case QCOW_OP_DISCARD:
		r->result = qcow_image_discard(img, r->offset, r->len);
		break;
	case QCOW_OP_WRITE_ZEROES:
		r->result = qcow_image_write_zeroes(img, r->offset, r->len, QCOW_ZERO_MAY_UNMAP);
		break;
	default:
		r->result = -EINVAL;
	}
	if (r->result == 0 && (r->op == QCOW_OP_DISCARD || r->op == QCOW_OP_WRITE_ZEROES))
		r->result = (ssize_t)r->len;
}

static void *worker(void *arg)
{
	struct qcow_queue *q = arg;

	pthread_mutex_lock(&q->lock);
	for (;;) {
		while (!q->np && !q->stop)
			pthread_cond_wait(&q->work, &q->lock);
		if (!q->np && q->stop)
			break;
		struct qcow_req *r = q->pending[q->np_head];

		q->np_head = (q->np_head + 1) % q->depth;
		q->np--;
		pthread_mutex_unlock(&q->lock);
		run_req(q->img, r);
		pthread_mutex_lock(&q->lock);
		q->done[(q->nd_head + q->nd) % q->depth] = r;
		q->nd++;
		pthread_cond_broadcast(&q->done_cv);
	}
	pthread_mutex_unlock(&q->lock);
	return NULL;
}

int qcow_queue_new(struct qcow_queue **out, struct qcow_image *img, unsigned depth)
{
	struct qcow_queue *q;

	if (!depth || depth > 1024)
		return -EINVAL;
	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->img = img;
	q->depth = depth;
	q->pending = calloc(depth, sizeof(*q->pending));
	q->done = calloc(depth, sizeof(*q->done));
	/*
	 * More threads than the CPUs can run only fight over the image lock:
	 * four per CPU keep a device busy without that (measured: 32 workers
	 * on 2 CPUs read cached data at half the speed of 8).
	 */
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned want = cpus > 0 && cpus < 16 ? (unsigned)cpus * 4 : 64;

	q->nthreads = depth < want ? depth : want;
	q->threads = calloc(q->nthreads, sizeof(pthread_t));
	if (!q->pending || !q->done || !q->threads) {
		free(q->pending);
		free(q->done);
		free(q->threads);
		free(q);
		return -ENOMEM;
	}
	pthread_mutex_init(&q->lock, NULL);
	pthread_cond_init(&q->work, NULL);
	pthread_cond_init(&q->done_cv, NULL);
	for (unsigned i = 0; i < q->nthreads; i++) {
		if (pthread_create(&q->threads[i], NULL, worker, q)) {
			q->nthreads = i;
			qcow_queue_free(q);
			return -EAGAIN;
		}
	}
	*out = q;
	return 0;
}

void qcow_queue_free(struct qcow_queue *q)
{
	if (!q)
		return;
	pthread_mutex_lock(&q->lock);
	q->stop = true;
	pthread_cond_broadcast(&q->work);
	pthread_mutex_unlock(&q->lock);
	for (unsigned i = 0; i < q->nthreads; i++)
		pthread_join(q->threads[i], NULL);
	pthread_mutex_destroy(&q->lock);
	pthread_cond_destroy(&q->work);
	pthread_cond_destroy(&q->done_cv);
	free(q->pending);
	free(q->done);
	free(q->threads);
	free(q);
}

/* A read of zeros (unallocated, no backing) needs no worker thread. */
static bool complete_inline(struct qcow_queue *q, struct qcow_req *req)
{
	struct qcow_image *img = q->img;
	int r;

	if (req->op != QCOW_OP_READ || req->offset > img->h.size ||
	    req->len > img->h.size - req->offset)
		return false;
	pthread_mutex_lock(&img->lock);
	r = qc_read_without_io(img, req->buf, req->len, req->offset);
	pthread_mutex_unlock(&img->lock);
	if (r <= 0)
		return false;
	req->result = (ssize_t)req->len;
	return true;
}

int qcow_queue_submit(struct qcow_queue *q, struct qcow_req *req)
{
	pthread_mutex_lock(&q->lock);
	if (q->inflight >= q->depth) {
		pthread_mutex_unlock(&q->lock);
		return -EAGAIN;
	}
	q->inflight++;
	pthread_mutex_unlock(&q->lock);
	bool done = complete_inline(q, req);

	pthread_mutex_lock(&q->lock);
	if (done) {
		q->done[(q->nd_head + q->nd) % q->depth] = req;
		q->nd++;
		pthread_cond_broadcast(&q->done_cv);
	} else {
		q->pending[(q->np_head + q->np) % q->depth] = req;
		q->np++;
		pthread_cond_signal(&q->work);
	}
	pthread_mutex_unlock(&q->lock);
	return 0;
}

int qcow_queue_reap(struct qcow_queue *q, struct qcow_req **done, unsigned min,
		    unsigned max)
{
	unsigned got = 0;

	pthread_mutex_lock(&q->lock);
	if (min > q->inflight)
		min = q->inflight;
	while (q->nd < min)
		pthread_cond_wait(&q->done_cv, &q->lock);
	while (q->nd && got < max) {
		done[got++] = q->done[q->nd_head];
		q->nd_head = (q->nd_head + 1) % q->depth;
		q->nd--;
		q->inflight--;
	}
	pthread_mutex_unlock(&q->lock);
	return (int)got;
}
