/*
 * Races that ThreadSanitizer judges (suite 'threads'), each a run where
 * zk_begin_phase / zk_end_phase run while other threads allocate,
 * reallocate and free (0.2 allows it):
 *  - first_begin_against_churn: the first begin (options read, region
 *    reserved, arenas made on demand) while threads churn blocks of every
 *    size, and an observer reads stats and ctl names;
 *  - decay_against_churn: with ZK_ALLOC_TRIM_PHASES=1 (meson), begins
 *    give back free pages (outside the pool lock) while threads allocate
 *    big blocks of changing sizes into those very ranges and free them;
 *    calloc'd blocks must read zero, every block its canary. Every 20th
 *    phase the main thread makes a 64 MiB spike, far above the usual peak
 *    (src/decay.c keeps the pages of peaks up to 8x the usual one): the
 *    begin two phases later gives it back.
 */
#include "stress_util.h"

#include <zkalloc.h>

#include <check.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static _Atomic int go, stop;
static _Atomic uint64_t bad, pool_blocks, ops;

/* Blocks from 16 B to 2 MiB, checked and freed; every fourth calloc'd. */
static void *churn(void *arg)
{
	uint64_t r = (uint64_t)(uintptr_t)arg;
	while (!atomic_load(&go))
		;
	while (!atomic_load(&stop)) {
		size_t n = (size_t)16 << (su_next(&r) % 17);
		n += su_next(&r) % n;
		bool zero = su_next(&r) % 4 == 0;
		unsigned char *p = zero ? zk_calloc(1, n) : zk_malloc(n);
		if (p == NULL) {
			atomic_fetch_add(&bad, 1);
			continue;
		}
		if (zero)
			for (size_t i = 0; i < n; i += 4096)
				if (p[i] != 0 || p[n - 1] != 0)
					atomic_fetch_add(&bad, 1);
		if (zk_owns(p))
			atomic_fetch_add(&pool_blocks, 1);
		tu_fill(p, n, r);
		unsigned char *q = zk_realloc(p, n + n / 2);
		if (q == NULL || tu_check(q, n, r) != SIZE_MAX)
			atomic_fetch_add(&bad, 1);
		zk_free(q != NULL ? q : p);
		atomic_fetch_add(&ops, 1);
	}
	return NULL;
}

static void *observer(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop)) {
		zk_stats_t s = {.size = sizeof(s)};
		zk_stats_get(&s);
		uint64_t e;
		size_t len = sizeof(e);
		zk_mallctl("zk.phase.epoch", &e, &len, NULL, 0);
		len = sizeof(e);
		zk_mallctl("zk.stats.trims", &e, &len, NULL, 0);
		(void)zk_phase_active();
	}
	return NULL;
}

enum { N = 3 };

static void run(unsigned phases, bool observe, bool spikes)
{
	pthread_t th[N + 1];
	atomic_store(&go, 0);
	atomic_store(&stop, 0);
	atomic_store(&pool_blocks, 0); /* CK_FORK=no: one process, both runs */
	for (uintptr_t i = 0; i < N; i++)
		pthread_create(&th[i], NULL, churn, (void *)(i + 1));
	if (observe)
		pthread_create(&th[N], NULL, observer, NULL);
	atomic_store(&go, 1);
	for (unsigned ph = 0; ph < phases; ph++) {
		/* Let the threads work in each phase and in each gap. */
		uint64_t o = atomic_load(&ops);
		while (atomic_load(&ops) < o + 2 * N)
			sched_yield();
		ck_assert_int_eq(zk_begin_phase(), 0);
		o = atomic_load(&ops);
		while (atomic_load(&ops) < o + 2 * N)
			sched_yield();
		size_t n = spikes && ph % 20 == 0 ? 64 * MiB : MiB;
		void *p = zk_malloc(n);
		ck_assert(zk_owns(p));
		memset(p, 2, n);
		zk_free(p);
		zk_end_phase();
		/* A gap: the threads' blocks are jemalloc's own now. */
		void *q = zk_malloc(MiB);
		ck_assert_ptr_nonnull(q);
		zk_free(q);
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < N + observe; i++)
		pthread_join(th[i], NULL);
	ck_assert_uint_eq(bad, 0);
	ck_assert_uint_gt(pool_blocks, 0);
}

START_TEST(first_begin_against_churn)
{
	run(su_scale(30, 15), true, false);
}
END_TEST

START_TEST(decay_against_churn)
{
	zk_stats_t s0 = tu_stats();
	run(su_scale(100, 30), false, true);
	zk_stats_t s1 = tu_stats();
	/* The decay did run while the threads worked. */
	ck_assert_uint_gt(s1.trims, s0.trims);
	ck_assert_uint_eq(s1.madvise_failures, 0);
	ck_assert_uint_eq(s1.overflow_count, s0.overflow_count);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("stress_race");
	TCase *tc = tcase_create("race");
	tcase_set_timeout(tc, 0);
	tcase_add_test(tc, first_begin_against_churn);
	tcase_add_test(tc, decay_against_churn);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
