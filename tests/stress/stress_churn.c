/*
 * Thread churn: 10,000 short-lived threads (CI size), PER_PHASE created in
 * each phase, each taking an arena slot in turn (ZK_ALLOC_ARENAS=4 in
 * meson.build), allocating pool memory and exiting while still holding
 * some of it: those blocks are handed to the main thread, which checks and
 * frees them one phase later, half inside the next phase and half between
 * phases. No allocation may overflow or lose data, no arena may be made
 * beyond the option, and neither the pool (its high water) nor the
 * process's RSS may grow after the warm-up phases: the pages of exited
 * threads' blocks serve the next threads. A second case: threads that
 * make and free only small blocks (kept in their thread cache) and exit
 * leave no pool memory allocated.
 */
#include "stress_util.h"

#include <zkalloc.h>

#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#define PER_PHASE 4  /* threads created in each phase */
#define WARMUP	  10 /* phases before the bounds are taken */
#define NSMALL	  24
/* Allowed growth after warm-up: thread stacks and jemalloc's per-thread
 * data are recycled, so this only absorbs allocator noise. */
#define RSS_SLACK (32 * MiB)
#define TOP_SLACK (8 * MiB)

typedef struct handed {
	unsigned char *p[2];
	size_t n[2];
	uint64_t tag;
} handed_t;

static _Atomic uint64_t not_pool, corrupt, nulls;
static uint64_t seed;
static handed_t *slots; /* PER_PHASE per phase, two phases deep */

static void *short_lived(void *arg)
{
	uintptr_t idx = (uintptr_t)arg;
	uint64_t r = seed ^ (uint64_t)idx;
	/* Warm-up threads take the largest size, so the footprint measured
	 * after warm-up bounds every later phase, whatever the seed. */
	size_t var = idx < WARMUP * PER_PHASE ? 65535 : su_next(&r) % 65536;
	size_t sizes[3] = {128 << 10, (64 << 10) + var, 40 << 10};
	unsigned char *p[3], *small[NSMALL];
	for (int i = 0; i < 3; i++) {
		p[i] = zk_malloc(sizes[i]);
		if (p[i] == NULL) {
			atomic_fetch_add(&nulls, 1);
			return NULL;
		}
		/* Past the thread cache's 32 KiB: from the pool. */
		if (!zk_owns(p[i]))
			atomic_fetch_add(&not_pool, 1);
		tu_fill(p[i], sizes[i], r + (uint64_t)i);
	}
	for (int i = 0; i < NSMALL; i++) {
		small[i] = zk_malloc(16 + (size_t)i * 20);
		if (small[i] == NULL) {
			atomic_fetch_add(&nulls, 1);
			return NULL;
		}
		tu_fill(small[i], 16 + (size_t)i * 20, r + 100 + (uint64_t)i);
	}
	for (int i = 0; i < 3; i++)
		if (tu_check(p[i], sizes[i], r + (uint64_t)i) != SIZE_MAX)
			atomic_fetch_add(&corrupt, 1);
	for (int i = 0; i < NSMALL; i++) {
		if (tu_check(small[i], 16 + (size_t)i * 20,
			     r + 100 + (uint64_t)i) != SIZE_MAX)
			atomic_fetch_add(&corrupt, 1);
		zk_free(small[i]);
	}
	zk_free(p[1]);
	/* Exit holding two pool blocks: main frees them later. */
	handed_t *h = &slots[idx % (2 * PER_PHASE)];
	*h = (handed_t){{p[0], p[2]}, {sizes[0], sizes[2]}, r};
	return NULL;
}

/* Check and free what the threads of a phase handed over: block 0 now,
 * block 1 at free_gap (between phases). */
static void free_handed(handed_t *h, int which)
{
	for (int i = 0; i < PER_PHASE; i++) {
		int b = which;
		if (h[i].p[b] == NULL)
			continue;
		uint64_t tag = h[i].tag + (b ? 2 : 0);
		if (tu_check(h[i].p[b], h[i].n[b], tag) != SIZE_MAX)
			atomic_fetch_add(&corrupt, 1);
		zk_free(h[i].p[b]);
		h[i].p[b] = NULL;
	}
}

START_TEST(ten_thousand_threads)
{
	seed = su_seed();
	unsigned total = su_scale(10000, 2000);
	unsigned phases = total / PER_PHASE;
	slots = calloc(2 * PER_PHASE, sizeof(*slots));
	ck_assert_ptr_nonnull(slots);
	zk_stats_t start = tu_stats(), warm = {0};
	size_t rss_warm = 0, rss_max = 0;
	for (unsigned ph = 0; ph < phases; ph++) {
		handed_t *prev = &slots[((ph + 1) % 2) * PER_PHASE];
		ck_assert_int_eq(zk_begin_phase(), 0);
		free_handed(prev, 0); /* in the next phase */
		pthread_t th[PER_PHASE];
		for (uintptr_t i = 0; i < PER_PHASE; i++)
			ck_assert_int_eq(
			    pthread_create(&th[i], NULL, short_lived,
					   (void *)(ph * PER_PHASE + i)),
			    0);
		for (int i = 0; i < PER_PHASE; i++)
			pthread_join(th[i], NULL);
		zk_end_phase();
		free_handed(prev, 1); /* between phases */
		if (ph + 1 == WARMUP) {
			su_purge_jemalloc();
			warm = tu_stats();
			rss_warm = tu_rss_bytes();
		} else if (ph >= WARMUP && ph % 16 == 0) {
			su_purge_jemalloc();
			size_t rss = tu_rss_bytes();
			rss_max = rss > rss_max ? rss : rss_max;
		}
	}
	for (int k = 0; k < 2; k++) {
		free_handed(slots, k);
		free_handed(slots + PER_PHASE, k);
	}
	zk_stats_t end = tu_stats();
	printf("churn: seed 0x%llx, %u threads over %u phases, %u arenas "
	       "(%u created); pool high water %zu KiB after warm-up, %zu KiB "
	       "at end; RSS %zu MiB after warm-up, max %zu MiB; %llu "
	       "overflows\n",
	       (unsigned long long)seed, phases * PER_PHASE, phases, end.nslabs,
	       end.slabs_in_use, warm.top_bytes >> 10, end.top_bytes >> 10,
	       rss_warm >> 20, rss_max >> 20,
	       (unsigned long long)end.overflow_count);
	ck_assert_msg(nulls == 0 && corrupt == 0,
		      "seed 0x%llx: %llu NULL, %llu corrupt",
		      (unsigned long long)seed, (unsigned long long)nulls,
		      (unsigned long long)corrupt);
	ck_assert_uint_eq(not_pool, 0);
	ck_assert_uint_eq(end.overflow_count, start.overflow_count);
	ck_assert(end.region_reserved);
	/* Threads take the option's arenas in turn; none is made twice. */
	ck_assert_uint_eq(end.nslabs, 4);
	ck_assert_uint_le(end.arenas_created, end.nslabs);
	/* Exited threads' pages are reused: the pool stops growing once
	 * warm, and so does RSS. */
	ck_assert_uint_le(end.top_bytes, warm.top_bytes + TOP_SLACK);
	ck_assert_uint_le(rss_max, rss_warm + RSS_SLACK);
	free(slots);
}
END_TEST

static void *small_only(void *arg)
{
	uintptr_t k = (uintptr_t)arg;
	void *p[64];
	for (int i = 0; i < 64; i++) {
		size_t n = 16 + (size_t)((i * 37 + k) % 1000);
		p[i] = zk_malloc(n);
		if (p[i] == NULL) {
			atomic_fetch_add(&nulls, 1);
			return NULL;
		}
		tu_fill(p[i], n, k * 64 + (uint64_t)i);
	}
	for (int i = 0; i < 64; i++) {
		size_t n = 16 + (size_t)((i * 37 + k) % 1000);
		if (tu_check(p[i], n, k * 64 + (uint64_t)i) != SIZE_MAX)
			atomic_fetch_add(&corrupt, 1);
		zk_free(p[i]); /* into this thread's cache */
	}
	return NULL;
}

/* Threads one after another in one phase, each bound to an arena, its
 * freed small blocks in its thread cache when it exits: the cache is
 * flushed at exit, so what the pool holds allocated does not grow with
 * the number of threads. */
START_TEST(small_threads_leave_nothing)
{
	ck_assert_int_eq(zk_begin_phase(), 0);
	pthread_t th;
	for (uintptr_t i = 0; i < 8; i++) { /* warm: slabs of every class */
		ck_assert_int_eq(
		    pthread_create(&th, NULL, small_only, (void *)i), 0);
		pthread_join(th, NULL);
	}
	zk_stats_t before = tu_stats();
	unsigned n = su_scale(400, 100);
	for (unsigned i = 0; i < n; i++) {
		ck_assert_int_eq(pthread_create(&th, NULL, small_only,
						(void *)(uintptr_t)(8 + i)),
				 0);
		pthread_join(th, NULL);
	}
	zk_stats_t after = tu_stats();
	zk_end_phase();
	printf("churn: %u small-only threads: pool live bytes %llu -> %llu\n",
	       n, (unsigned long long)before.live_bytes,
	       (unsigned long long)after.live_bytes);
	ck_assert_uint_eq(nulls, 0);
	ck_assert_uint_eq(corrupt, 0);
	ck_assert_uint_gt(before.top_bytes, 0); /* they did use the pool */
	ck_assert_uint_le(after.arenas_created, after.nslabs);
	ck_assert_uint_eq(after.overflow_count, before.overflow_count);
	ck_assert_uint_le(after.live_bytes, before.live_bytes + 2 * MiB);
	/* A large block afterwards still comes from the pool. */
	ck_assert_int_eq(zk_begin_phase(), 0);
	void *p = zk_malloc(MiB);
	ck_assert(zk_owns(p));
	zk_free(p);
	zk_end_phase();
}
END_TEST

int main(void)
{
	Suite *s = suite_create("stress_churn");
	TCase *tc = tcase_create("churn");
	tcase_set_timeout(tc, 0);
	tcase_add_test(tc, ten_thousand_threads);
	tcase_add_test(tc, small_threads_leave_nothing);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
