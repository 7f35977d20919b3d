// SPDX-License-Identifier: MIT
/*
 * qcow-tool bench: qemu-img bench, with libqcow's request queue.
 *
 * COUNT requests of BUFFER_SIZE bytes are sent, DEPTH at a time, at
 * OFFSET, OFFSET+STEP, ... wrapping around at the image size, and the
 * time the run took is printed. Options, defaults (75000 reads of 4 KiB,
 * 64 in parallel, step = buffer size) and output are qemu-img bench's:
 *
 *   Sending 75000 read requests, 4096 bytes each, 64 in parallel
 *   (starting at offset 0, step size 4096)
 *   Run completed in 0.081 seconds.
 *
 * The loop is qemu's bench_cb: each completion either triggers a flush
 * (every --flush-interval requests in write mode; by default the queue is
 * drained first, --no-drain flushes alongside) or tops the queue up
 * again. qcow2 images go through qcow_queue (worker threads in libqcow);
 * raw files through a small thread pool here with the same interface.
 * -t none opens the image with O_DIRECT, so buffers are page-aligned.
 *
 * Unlike qemu-img, -d 0 is refused (qemu-img waits forever).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <base/alloc.h>

#include "tool.h"

enum {
	OPT_FLUSH_INTERVAL = 256,
	OPT_PATTERN,
	OPT_NO_DRAIN,
	OPT_IMAGE_OPTS,
};

#define QUEUE_MAX 1024 /* qcow_queue_new's limit */

/* A request queue on a raw file: worker threads doing pread/pwrite. */
struct rawq {
	int fd;
	pthread_mutex_t lock;
	pthread_cond_t work, done_cv;
	struct qcow_req **pending, **done; /* rings of cap entries */
	unsigned cap, np_head, np, nd_head, nd, inflight;
	pthread_t *threads;
	unsigned nthreads;
	bool stop;
};

static void rawq_run(int fd, struct qcow_req *r)
{
	ssize_t n = 0;
	size_t done = 0;

	switch (r->op) {
	case QCOW_OP_READ:
	case QCOW_OP_WRITE:
		while (done < r->len) {
			n = r->op == QCOW_OP_READ ?
				    pread(fd, (char *)r->buf + done,
					  r->len - done,
					  (off_t)(r->offset + done)) :
				    pwrite(fd, (char *)r->buf + done,
					   r->len - done,
					   (off_t)(r->offset + done));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			done += (size_t)n;
		}
		r->result = n < 0 ? -errno : (ssize_t)done;
		if (n == 0 && done < r->len && r->op == QCOW_OP_READ) {
			memset((char *)r->buf + done, 0, r->len - done);
			r->result = (ssize_t)r->len;
		}
		break;
	case QCOW_OP_FLUSH:
		r->result = fdatasync(fd) < 0 ? -errno : 0;
		break;
	default:
		r->result = -EINVAL;
	}
}

static void *rawq_worker(void *arg)
{
	struct rawq *q = arg;

	pthread_mutex_lock(&q->lock);
	for (;;) {
		struct qcow_req *r;

		while (!q->np && !q->stop)
			pthread_cond_wait(&q->work, &q->lock);
		if (!q->np)
			break;
		r = q->pending[q->np_head];
		q->np_head = (q->np_head + 1) % q->cap;
		q->np--;
		pthread_mutex_unlock(&q->lock);
		rawq_run(q->fd, r);
		pthread_mutex_lock(&q->lock);
		q->done[(q->nd_head + q->nd) % q->cap] = r;
		q->nd++;
		pthread_cond_broadcast(&q->done_cv);
	}
	pthread_mutex_unlock(&q->lock);
	return NULL;
}

static void rawq_free(struct rawq *q)
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

static int rawq_new(struct rawq **out, int fd, unsigned cap)
{
	unsigned nthreads = cap < 64 ? cap : 64;
	struct rawq *q = calloc(1, sizeof(*q));

	if (!q)
		return -ENOMEM;
	q->fd = fd;
	q->cap = cap;
	q->pending = calloc(cap, sizeof(struct qcow_req *));
	q->done = calloc(cap, sizeof(struct qcow_req *));
	q->threads = calloc(nthreads, sizeof(pthread_t));
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
	for (unsigned i = 0; i < nthreads; i++) {
		if (pthread_create(&q->threads[i], NULL, rawq_worker, q)) {
			rawq_free(q);
			return -EAGAIN;
		}
		q->nthreads++;
	}
	*out = q;
	return 0;
}

static int rawq_submit(struct rawq *q, struct qcow_req *r)
{
	pthread_mutex_lock(&q->lock);
	if (q->inflight >= q->cap) {
		pthread_mutex_unlock(&q->lock);
		return -EAGAIN;
	}
	q->pending[(q->np_head + q->np) % q->cap] = r;
	q->np++;
	q->inflight++;
	pthread_cond_signal(&q->work);
	pthread_mutex_unlock(&q->lock);
	return 0;
}

static int rawq_reap(struct rawq *q, struct qcow_req **done, unsigned min,
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
		q->nd_head = (q->nd_head + 1) % q->cap;
		q->nd--;
		q->inflight--;
	}
	pthread_mutex_unlock(&q->lock);
	return (int)got;
}

/* The state of a run, as qemu's BenchData. */
struct bench {
	struct disk d;
	struct qcow_queue *q;
	struct rawq *rq;
	unsigned cap; /* queue slots */
	uint64_t image_size;
	uint64_t bufsize, step, offset;
	unsigned depth;
	int n; /* requests not yet completed */
	int in_flight;
	bool write, drain, in_flush, unsafe, writethrough;
	int flush_interval;
	uint8_t *buf;
	struct qcow_req *reqs; /* depth data requests */
	struct qcow_req *flushes; /* flush requests */
	unsigned *free_req, nfree; /* free data request slots */
	unsigned *free_flush, nfree_flush;
	int queued; /* submitted to the queue, not reaped */
};

static int engine_submit(struct bench *b, struct qcow_req *r)
{
	int ret = b->q ? qcow_queue_submit(b->q, r) : rawq_submit(b->rq, r);

	if (ret == 0)
		b->queued++;
	return ret;
}

static int engine_reap(struct bench *b, struct qcow_req **done, unsigned max)
{
	int n = b->q ? qcow_queue_reap(b->q, done, 1, max) :
		       rawq_reap(b->rq, done, 1, max);

	if (n > 0)
		b->queued -= n;
	return n;
}

static int fail_request(int err)
{
	tool_err("Failed request: %s", errstr(err));
	return -1;
}

/* Issue a flush (qemu: blk_aio_flush). */
static int issue_flush(struct bench *b)
{
	struct qcow_req *r;

	if (!b->nfree_flush)
		return 0; /* enough flushes in flight already */
	r = &b->flushes[b->free_flush[--b->nfree_flush]];
	memset(r, 0, sizeof(*r));
	r->op = QCOW_OP_FLUSH;
	r->user = b->flushes; /* tells flushes from data requests */
	if (b->unsafe) {
		/* cache=unsafe ignores flushes: complete it at once. */
		b->free_flush[b->nfree_flush++] = (unsigned)(r - b->flushes);
		b->in_flush = false;
		return 1;
	}
	if (engine_submit(b, r) < 0) {
		b->free_flush[b->nfree_flush++] = (unsigned)(r - b->flushes);
		if (!b->drain)
			return 1; /* the queue is full of flushes already */
		tool_err("Failed to issue flush request");
		return -1;
	}
	return 0;
}

/* Top the queue up (the loop at the end of qemu's bench_cb). */
static int submit_more(struct bench *b)
{
	while (b->n > b->in_flight && b->in_flight < (int)b->depth &&
	       b->nfree) {
		unsigned slot = b->free_req[b->nfree - 1];
		struct qcow_req *r = &b->reqs[slot];
		uint64_t offset = b->offset;

		if (offset > b->image_size ||
		    b->bufsize > b->image_size - offset)
			return fail_request(-EIO);
		memset(r, 0, sizeof(*r));
		r->op = b->write ? QCOW_OP_WRITE : QCOW_OP_READ;
		r->buf = b->buf + (size_t)slot * b->bufsize;
		r->len = b->bufsize;
		r->offset = offset;
		if (engine_submit(b, r) == -EAGAIN)
			break; /* the queue is full: wait for completions */
		b->nfree--;
		b->in_flight++;
		b->offset += b->step;
		if (b->image_size == 0)
			b->offset = 0;
		else
			b->offset %= b->image_size;
	}
	return 0;
}

static int complete(struct bench *b, struct qcow_req *r)
{
	if (r->result < 0)
		return fail_request((int)r->result);
	if (r->user == b->flushes) {
		b->free_flush[b->nfree_flush++] = (unsigned)(r - b->flushes);
		if (!b->drain)
			return 0; /* qemu's bench_undrained_flush_cb */
		b->in_flush = false;
		return submit_more(b);
	}
	if (b->write && b->writethrough && !b->unsafe) {
		int e = b->d.img ? qcow_image_flush(b->d.img) :
				   (fdatasync(b->d.fd) < 0 ? -errno : 0);

		if (e < 0)
			return fail_request(e);
	}
	b->free_req[b->nfree++] = (unsigned)(r - b->reqs);
	if (b->in_flight > 0) {
		int remaining = b->n - b->in_flight;

		b->n--;
		b->in_flight--;
		if (b->flush_interval && remaining % b->flush_interval == 0) {
			if (!b->in_flight || !b->drain) {
				int f;

				if (b->drain)
					b->in_flush = true;
				f = issue_flush(b);
				if (f < 0)
					return f;
				if (f == 0 && b->drain)
					return 0;
			} else if (b->drain) {
				return 0;
			}
		}
	}
	return b->in_flush ? 0 : submit_more(b);
}

static int run(struct bench *b)
{
	struct qcow_req **done = calloc(b->cap, sizeof(struct qcow_req *));
	int ret = 0;

	if (!done) {
		tool_err("out of memory");
		return -1;
	}
	if (submit_more(b) < 0)
		ret = -1;
	while (ret == 0 && b->n > 0) {
		int got = engine_reap(b, done, b->cap);

		if (got <= 0) {
			tool_err("no request completed");
			ret = -1;
			break;
		}
		for (int i = 0; i < got && ret == 0; i++)
			ret = complete(b, done[i]);
	}
	/* Let what is still in flight (flushes, or requests after a
	 * failure) finish before the buffers go away. */
	while (b->queued > 0 && engine_reap(b, done, b->cap) > 0)
		;
	free(done);
	return ret;
}

static int parse_cache(const char *mode, unsigned *flags, bool *writethrough,
		       bool *unsafe)
{
	*writethrough = *unsafe = false;
	*flags &= ~DISK_DIRECT;
	if (!strcmp(mode, "none") || !strcmp(mode, "off")) {
		*flags |= DISK_DIRECT;
	} else if (!strcmp(mode, "directsync")) {
		*flags |= DISK_DIRECT;
		*writethrough = true;
	} else if (!strcmp(mode, "writethrough")) {
		*writethrough = true;
	} else if (!strcmp(mode, "unsafe")) {
		*unsafe = true;
	} else if (strcmp(mode, "writeback") != 0) {
		return -EINVAL;
	}
	return 0;
}

/* qemu_strtoul-style: the whole string, at most max. */
static int parse_uint_max(const char *s, unsigned long long max,
			  unsigned long long *out)
{
	return parse_ulong(s, out) < 0 || *out > max ? -EINVAL : 0;
}

int cmd_bench(struct tool *t, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "flush-interval", required_argument, NULL,
		  OPT_FLUSH_INTERVAL },
		{ "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
		{ "pattern", required_argument, NULL, OPT_PATTERN },
		{ "no-drain", no_argument, NULL, OPT_NO_DRAIN },
		{ "force-share", no_argument, NULL, 'U' },
		{ NULL, 0, NULL, 0 },
	};
	struct bench b = { .drain = true };
	const char *fmt = NULL, *path;
	unsigned long long v;
	int count = 75000, depth = 64, pattern = 0, c, ret = 1;
	int64_t sval;
	unsigned flags = 0;
	bool native = false;
	struct timeval t1, t2;
	size_t bufbytes;

	b.d.fd = -1;
	b.bufsize = 4096;
	while ((c = getopt_long(argc, argv, ":hc:d:f:ni:o:qs:S:t:wU", longopts,
				NULL)) != -1) {
		switch (c) {
		case 'h':
			tool_help(stdout);
			return 0;
		case 'c':
			if (parse_uint_max(optarg, INT_MAX, &v) < 0) {
				tool_err("Invalid request count specified");
				return 1;
			}
			count = (int)v;
			break;
		case 'd':
			if (parse_uint_max(optarg, INT_MAX, &v) < 0 || v == 0) {
				tool_err("Invalid queue depth specified");
				return 1;
			}
			depth = (int)v;
			break;
		case 'f':
			fmt = optarg;
			break;
		case 'n':
			native = true;
			break;
		case 'i':
			if (!strcmp(optarg, "native")) {
				native = true;
			} else if (!strcmp(optarg, "threads") ||
				   !strcmp(optarg, "io_uring")) {
				native = false;
			} else {
				tool_err("Invalid aio option: %s", optarg);
				return 1;
			}
			break;
		case 'o':
			sval = cvtnum("offset", optarg);
			if (sval < 0)
				return 1;
			b.offset = (uint64_t)sval;
			break;
		case 'q':
			break; /* qemu-img bench prints its lines anyway */
		case 's':
			sval = cvtnum_range("buffer size", optarg, 0, INT_MAX);
			if (sval < 0)
				return 1;
			b.bufsize = (uint64_t)sval;
			break;
		case 'S':
			sval = cvtnum_range("step_size", optarg, 0, INT_MAX);
			if (sval < 0)
				return 1;
			b.step = (uint64_t)sval;
			break;
		case 't':
			if (parse_cache(optarg, &flags, &b.writethrough,
					&b.unsafe) < 0) {
				tool_err("Invalid cache mode");
				return 1;
			}
			break;
		case 'w':
			flags |= DISK_RW;
			b.write = true;
			break;
		case 'U':
			flags |= DISK_SHARE;
			break;
		case OPT_PATTERN:
			if (parse_uint_max(optarg, 0xff, &v) < 0) {
				tool_err("Invalid pattern byte specified");
				return 1;
			}
			pattern = (int)v;
			break;
		case OPT_FLUSH_INTERVAL:
			if (parse_uint_max(optarg, INT_MAX, &v) < 0) {
				tool_err("Invalid flush interval specified");
				return 1;
			}
			b.flush_interval = (int)v;
			break;
		case OPT_NO_DRAIN:
			b.drain = false;
			break;
		case OPT_IMAGE_OPTS:
			tool_err("--image-opts is not supported");
			return 1;
		default:
			return tool_opt_err(c, argv);
		}
	}
	if (optind != argc - 1)
		return tool_usage_err("Expecting one image file name");
	path = argv[argc - 1];
	if (!b.write && b.flush_interval) {
		tool_err("--flush-interval is only available in write tests");
		return 1;
	}
	if (b.flush_interval && b.flush_interval < depth) {
		tool_err("Flush interval can't be smaller than depth");
		return 1;
	}
	if (native && !(flags & DISK_DIRECT)) {
		tool_err(
			"Could not open '%s': aio=native was specified, but it requires cache.direct=on, which was not specified.",
			path);
		return 1;
	}
	if ((flags & DISK_RW) && (flags & DISK_SHARE)) {
		tool_err(
			"Could not open '%s': force-share=on can only be used with read-only images",
			path);
		return 1;
	}
	if (disk_open(&b.d, t, path, fmt, flags) < 0)
		return 1;

	b.image_size = b.d.size;
	b.depth = (unsigned)depth;
	b.n = count;
	if (!b.step)
		b.step = b.bufsize;
	printf("Sending %d %s requests, %d bytes each, %d in parallel (starting at offset %" PRIu64
	       ", step size %d)\n",
	       b.n, b.write ? "write" : "read", (int)b.bufsize, depth, b.offset,
	       (int)b.step);
	if (b.flush_interval)
		printf("Sending flush every %d requests\n", b.flush_interval);
	fflush(stdout);

	if (b.bufsize > SIZE_MAX ||
	    !size_mul_ok(b.depth, (size_t)b.bufsize, &bufbytes)) {
		tool_err("out of memory");
		goto out;
	}
	b.buf = xmalloc_aligned(bufbytes);
	b.reqs = calloc(b.depth, sizeof(*b.reqs));
	b.flushes = calloc(b.depth + 1, sizeof(*b.flushes));
	b.free_req = calloc(b.depth, sizeof(*b.free_req));
	b.free_flush = calloc(b.depth + 1, sizeof(*b.free_flush));
	if (!b.buf || !b.reqs || !b.flushes || !b.free_req || !b.free_flush) {
		tool_err("out of memory");
		goto out;
	}
	memset(b.buf, pattern, bufbytes);
	for (unsigned i = 0; i < b.depth; i++)
		b.free_req[b.nfree++] = b.depth - 1 - i;
	for (unsigned i = 0; i <= b.depth; i++)
		b.free_flush[b.nfree_flush++] = i;

	/* Room for every data request and a flush per interval. */
	b.cap = b.depth + 1 + (b.drain ? 0 : b.depth);
	if (b.cap > QUEUE_MAX)
		b.cap = QUEUE_MAX;
	{
		int r = b.d.img ? qcow_queue_new(&b.q, b.d.img, b.cap) :
				  rawq_new(&b.rq, b.d.fd, b.cap);

		if (r < 0) {
			tool_err("cannot start the request queue: %s",
				 errstr(r));
			goto out;
		}
	}

	gettimeofday(&t1, NULL);
	if (run(&b) < 0)
		goto out;
	gettimeofday(&t2, NULL);
	printf("Run completed in %3.3f seconds.\n",
	       (double)(t2.tv_sec - t1.tv_sec) +
		       (double)(t2.tv_usec - t1.tv_usec) / 1000000.0);
	ret = 0;
out:
	qcow_queue_free(b.q);
	rawq_free(b.rq);
	if (disk_close(&b.d) < 0 && ret == 0) {
		tool_err("%s: error while closing the image", path);
		ret = 1;
	}
	free(b.buf);
	free(b.reqs);
	free(b.flushes);
	free(b.free_req);
	free(b.free_flush);
	return ret;
}
