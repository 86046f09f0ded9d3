/*
 * Threads x phases: more worker threads than zkalloc arenas (meson.build:
 * 12 threads, ZK_ALLOC_ARENAS=2) run hundreds of phases of random
 * allocations from 16 B to 1 MiB, frees, reallocs across size classes,
 * blocks handed to another thread to check and free, and work between
 * phases (frees, reallocs and new blocks outside any phase). Each worker
 * builds caches lazily (a first-use table, as a prover's twiddles) in the
 * phase that first needs them and reads them in every later phase, in and
 * out of phases, until the end: 0.2 keeps every block valid until it is
 * freed, so a cache made in phase 3 must read back intact in phase 300.
 * Live blocks also stay across phase boundaries. Every block carries a
 * canary pattern checked before every free, after every realloc and at
 * each phase end. Any wrong byte or NULL fails the test with the seed that
 * reproduces it (ZK_STRESS_SEED). Built twice: plain and ZK_ALLOC_CHECK=1
 * (phases-checked: a correct program must run clean in checked mode).
 */
#include "stress_util.h"

#include <zkalloc.h>

#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#define MAXLIVE 48 /* live blocks per thread */
#define MAILBOX 8  /* blocks handed to the next thread per phase */
#define NCACHE	3  /* lazily built caches per thread */

typedef struct blk {
	unsigned char *p;
	size_t n;
	uint64_t tag;
} blk_t;

typedef struct worker {
	pthread_t th;
	unsigned id;
	uint64_t rng;
	blk_t live[MAXLIVE];
	blk_t mail[MAILBOX]; /* written by the previous thread */
	unsigned nmail;
	blk_t cache[NCACHE]; /* built in the phase that first needs it */
} worker_t;

static worker_t *workers;
static unsigned nthreads, nphases, ops_per_round;
static pthread_barrier_t bar;
static _Atomic uint64_t corrupt, nulls, ops, pool_blocks, tag_seq, cache_checks;
static uint64_t seed;
static char first_error[256];
static _Atomic int have_error;

static void fail_once(const char *what, const blk_t *b, size_t at)
{
	atomic_fetch_add(&corrupt, 1);
	int zero = 0;
	if (atomic_compare_exchange_strong(&have_error, &zero, 1))
		snprintf(first_error, sizeof(first_error),
			 "%s: block %p size %zu tag %llu wrong at byte %zu",
			 what, (void *)b->p, b->n, (unsigned long long)b->tag,
			 at);
}

static void verify(const blk_t *b, const char *when)
{
	size_t at = tu_check(b->p, b->n, b->tag);
	if (at != SIZE_MAX)
		fail_once(when, b, at);
}

/* Sizes from 16 B to 1 MiB, log-uniform: small size classes (jemalloc
 * slabs in the pool), large ones, both sides of the thread cache's
 * 32 KiB limit. */
static size_t rand_size(uint64_t *r)
{
	unsigned lg = 4 + (unsigned)(su_next(r) % 16);
	size_t n = (size_t)1 << lg;
	return n + (size_t)(su_next(r) % n);
}

static void new_block(worker_t *w, blk_t *b, size_t n)
{
	b->n = n;
	unsigned kind = (unsigned)(su_next(&w->rng) % 4);
	if (kind == 0)
		b->p = zk_calloc(1, b->n);
	else if (kind == 1)
		b->p = zk_aligned_alloc(64, b->n);
	else
		b->p = zk_malloc(b->n);
	if (b->p == NULL) {
		atomic_fetch_add(&nulls, 1);
		b->n = 0;
		return;
	}
	if (kind == 0)
		for (size_t i = 0; i < b->n; i += 4093)
			if (b->p[i] != 0)
				fail_once("calloc not zero", b, i);
	if (zk_owns(b->p))
		atomic_fetch_add(&pool_blocks, 1);
	b->tag = atomic_fetch_add(&tag_seq, 1) * 1000003u + seed;
	tu_fill(b->p, b->n, b->tag);
}

static void drop(blk_t *b, const char *when)
{
	if (b->p == NULL)
		return;
	verify(b, when);
	zk_free(b->p);
	b->p = NULL;
}

static void grow_or_shrink(worker_t *w, blk_t *b)
{
	verify(b, "before realloc");
	size_t n = rand_size(&w->rng);
	unsigned char *q = zk_realloc(b->p, n);
	if (q == NULL) {
		atomic_fetch_add(&nulls, 1);
		return; /* b->p is untouched on failure */
	}
	blk_t moved = {q, b->n < n ? b->n : n, b->tag};
	verify(&moved, "after realloc");
	b->p = q;
	b->n = n;
	tu_fill(b->p, b->n, b->tag);
}

static void round_of_ops(worker_t *w, unsigned nops)
{
	for (unsigned k = 0; k < nops; k++) {
		blk_t *b = &w->live[su_next(&w->rng) % MAXLIVE];
		unsigned op = (unsigned)(su_next(&w->rng) % 8);
		if (b->p == NULL)
			new_block(w, b, rand_size(&w->rng));
		else if (op < 3)
			drop(b, "before free");
		else if (op < 6)
			grow_or_shrink(w, b);
		else
			verify(b, "spot check");
		atomic_fetch_add_explicit(&ops, 1, memory_order_relaxed);
	}
}

/* Cache c of worker w is first needed in phase 1 + (w + 3c) % 7 and kept
 * to the end: 200 B (a jemalloc slab shared with other blocks), 48 KiB
 * (large, past the thread cache) and 3 MiB. */
static void caches(worker_t *w, unsigned ph)
{
	static const size_t size[NCACHE] = {200, 48 << 10, 3 << 20};
	for (unsigned c = 0; c < NCACHE; c++) {
		blk_t *b = &w->cache[c];
		if (b->p == NULL && ph >= 1 + (w->id + 3 * c) % 7)
			new_block(w, b, size[c]);
		else if (b->p != NULL) {
			verify(b, "cache kept across phases");
			atomic_fetch_add(&cache_checks, 1);
		}
	}
}

/* Hand some live blocks to the next thread, which checks and frees them. */
static void post_mail(worker_t *w)
{
	worker_t *to = &workers[(w->id + 1) % nthreads];
	to->nmail = 0;
	for (unsigned i = 0; i < MAXLIVE && to->nmail < MAILBOX; i += 5)
		if (w->live[i].p != NULL) {
			to->mail[to->nmail++] = w->live[i];
			w->live[i].p = NULL;
		}
}

static void *worker_main(void *arg)
{
	worker_t *w = arg;
	for (unsigned ph = 1; ph <= nphases; ph++) {
		pthread_barrier_wait(&bar); /* main began the phase */
		w->rng = seed ^ ((uint64_t)w->id << 32) ^ ph;
		caches(w, ph);
		round_of_ops(w, ops_per_round);
		post_mail(w);
		pthread_barrier_wait(&bar); /* mail posted */
		for (unsigned i = 0; i < w->nmail; i++)
			drop(&w->mail[i], "cross-thread free");
		round_of_ops(w, ops_per_round);
		/* Phase end: every block checked, a third freed, the rest
		 * kept into the gap and the next phase. */
		for (unsigned i = 0; i < MAXLIVE; i++) {
			blk_t *b = &w->live[i];
			if (b->p == NULL)
				continue;
			verify(b, "phase end");
			if (i % 3 == 0)
				drop(b, "phase end free");
		}
		pthread_barrier_wait(&bar); /* main ends the phase */
		pthread_barrier_wait(&bar); /* phase ended */
		/* Between phases: frees of phase blocks, reallocs, and new
		 * ordinary blocks, by threads that are no longer bound. */
		caches(w, ph);
		round_of_ops(w, ops_per_round / 4);
		pthread_barrier_wait(&bar); /* gap done */
	}
	for (unsigned i = 0; i < MAXLIVE; i++)
		drop(&w->live[i], "final free");
	for (unsigned c = 0; c < NCACHE; c++)
		drop(&w->cache[c], "final cache free");
	return NULL;
}

START_TEST(threads_by_phases)
{
	seed = su_seed();
	nthreads = su_width(12, 8);
	/* Checked mode protects and unmaps every freed extent: fewer
	 * phases keep the run short. */
	bool checked = false;
	size_t len = sizeof(checked);
	ck_assert_int_eq(zk_mallctl("zk.opt.check", &checked, &len, NULL, 0),
			 0);
	nphases = checked ? su_scale(50, 20) : su_scale(300, 60);
	ops_per_round = 60;
	workers = calloc(nthreads, sizeof(*workers));
	ck_assert_ptr_nonnull(workers);
	pthread_barrier_init(&bar, NULL, nthreads + 1);
	zk_stats_t before = tu_stats();
	for (unsigned i = 0; i < nthreads; i++) {
		workers[i].id = i;
		ck_assert_int_eq(pthread_create(&workers[i].th, NULL,
						worker_main, &workers[i]),
				 0);
	}
	uint64_t kept_max = 0;
	for (unsigned ph = 1; ph <= nphases; ph++) {
		ck_assert_int_eq(zk_begin_phase(), 0);
		zk_stats_t s = tu_stats();
		kept_max = s.kept_blocks > kept_max ? s.kept_blocks : kept_max;
		pthread_barrier_wait(&bar);
		pthread_barrier_wait(&bar);
		pthread_barrier_wait(&bar);
		zk_end_phase();
		pthread_barrier_wait(&bar);
		pthread_barrier_wait(&bar);
	}
	for (unsigned i = 0; i < nthreads; i++)
		pthread_join(workers[i].th, NULL);
	zk_stats_t st = tu_stats();
	printf("stress: seed 0x%llx, %u threads, %u arenas, %u phases, %llu "
	       "ops, %llu pool blocks, %llu cache checks, at most %llu kept "
	       "extents at a begin, %llu overflows, %llu corruptions\n",
	       (unsigned long long)seed, nthreads, st.nslabs, nphases,
	       (unsigned long long)ops, (unsigned long long)pool_blocks,
	       (unsigned long long)cache_checks, (unsigned long long)kept_max,
	       (unsigned long long)st.overflow_count,
	       (unsigned long long)corrupt);
	ck_assert_msg(corrupt == 0 && nulls == 0,
		      "seed 0x%llx: %llu corruptions, %llu NULLs; first: %s",
		      (unsigned long long)seed, (unsigned long long)corrupt,
		      (unsigned long long)nulls, first_error);
	ck_assert_uint_eq(st.epoch - before.epoch, nphases);
	/* The test must have exercised what it claims to: pool blocks, caches
	 * read in later phases, blocks still allocated at begins. */
	ck_assert_uint_gt(pool_blocks, 0);
	ck_assert_uint_ge(cache_checks, (uint64_t)nthreads * NCACHE);
	ck_assert_uint_gt(kept_max, 0);
	/* More threads than arenas share them; no arena beyond the option,
	 * and the pool never ran out. */
	ck_assert_uint_lt(st.nslabs, nthreads);
	ck_assert_uint_le(st.arenas_created, st.nslabs);
	ck_assert_uint_eq(st.overflow_count, before.overflow_count);
	free(workers);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("stress_phases");
	TCase *tc = tcase_create("threads_by_phases");
	tcase_set_timeout(tc, 0);
	tcase_add_test(tc, threads_by_phases);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
