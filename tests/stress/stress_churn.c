/*
 * Thread churn: 10,000 short-lived threads (CI size), a few per phase, each
 * allocating phase memory and exiting. The slab of an exited thread is
 * free for the next thread at once (with its arena, whose blocks stay
 * valid until the next begin): no allocation may overflow, arenas are
 * made once per slab, and neither the reserved region nor the process's
 * RSS may grow after the warm-up phases. Threads that allocate only small
 * blocks never take a phase slab.
 */
#include "stress_util.h"

#include <zkalloc.h>

#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#define PER_PHASE 4  /* = ZK_ALLOC_SLABS in meson.build */
#define WARMUP	  10 /* phases before the bounds are taken */
/* Allowed RSS growth after warm-up: thread stacks and jemalloc's per-thread
 * data are recycled, so this only absorbs allocator noise. */
#define RSS_SLACK ((size_t)32 << 20)

static _Atomic uint64_t not_phase, corrupt, nulls;
static uint64_t seed;

static void *short_lived(void *arg)
{
	uintptr_t idx = (uintptr_t)arg;
	uint64_t r = seed ^ (uint64_t)idx;
	/* Warm-up threads take the largest size, so the footprint measured
	 * after warm-up bounds every later phase, whatever the seed. */
	size_t var = idx < WARMUP * PER_PHASE ? 65535 : su_next(&r) % 65536;
	size_t sizes[3] = {128 << 10, (64 << 10) + var, 40 << 10};
	void *p[3];
	for (int i = 0; i < 3; i++) {
		p[i] = zk_malloc(sizes[i]);
		if (p[i] == NULL) {
			atomic_fetch_add(&nulls, 1);
			return NULL;
		}
		if (!zk_owns(p[i]))
			atomic_fetch_add(&not_phase, 1);
		tu_fill(p[i], sizes[i], r + (uint64_t)i);
	}
	for (int i = 0; i < 3; i++)
		if (tu_check(p[i], sizes[i], r + (uint64_t)i) != SIZE_MAX)
			atomic_fetch_add(&corrupt, 1);
	zk_free(p[1]); /* the others are dropped with the phase */
	return NULL;
}

START_TEST(ten_thousand_threads)
{
	seed = su_seed();
	unsigned total = su_scale(10000, 2000);
	unsigned phases = total / PER_PHASE;
	zk_stats_t warm = {0};
	size_t rss_warm = 0, rss_max = 0;
	for (unsigned ph = 0; ph < phases; ph++) {
		ck_assert_int_eq(zk_begin_phase(), 0);
		pthread_t th[PER_PHASE];
		for (uintptr_t i = 0; i < PER_PHASE; i++)
			ck_assert_int_eq(
			    pthread_create(&th[i], NULL, short_lived,
					   (void *)(ph * PER_PHASE + i)),
			    0);
		for (int i = 0; i < PER_PHASE; i++)
			pthread_join(th[i], NULL);
		zk_end_phase();
		if (ph + 1 == WARMUP) {
			warm = tu_stats();
			rss_warm = tu_rss_bytes();
		} else if (ph >= WARMUP) {
			size_t rss = tu_rss_bytes();
			rss_max = rss > rss_max ? rss : rss_max;
		}
	}
	zk_stats_t end = tu_stats();
	printf("churn: seed 0x%llx, %u threads over %u phases, %u slabs of "
	       "%zu MiB; resident slab bytes %zu after warm-up, %zu at end; "
	       "RSS %zu MiB after warm-up, max %zu MiB; %llu overflows\n",
	       (unsigned long long)seed, phases * PER_PHASE, phases, end.nslabs,
	       end.slab_size >> 20, warm.resident_bytes, end.resident_bytes,
	       rss_warm >> 20, rss_max >> 20,
	       (unsigned long long)end.overflow_count);
	ck_assert_msg(nulls == 0 && corrupt == 0,
		      "seed 0x%llx: %llu NULL, "
		      "%llu corrupt",
		      (unsigned long long)seed, (unsigned long long)nulls,
		      (unsigned long long)corrupt);
	/* No slab exhaustion: every large block was phase memory. */
	ck_assert_uint_eq(not_phase, 0);
	ck_assert_uint_eq(end.overflow_count, 0);
	ck_assert_uint_eq(end.nslabs, PER_PHASE);
	ck_assert(end.region_reserved);
	/* Reserved address space is fixed; RSS does not grow after the
	 * warm-up. Resident slab bytes stay bounded: a slab taken over in a
	 * phase holds its earlier threads' blocks too (valid until the next
	 * begin), so one slab may hold up to a whole phase's blocks. */
	ck_assert_uint_eq(end.slab_size, warm.slab_size);
	ck_assert_uint_le(end.resident_bytes,
			  PER_PHASE * warm.resident_bytes + ((size_t)4 << 20));
	ck_assert_uint_le(rss_max, rss_warm + RSS_SLACK);
	/* one phase arena and one resident arena per slab, ever */
	ck_assert_uint_le(end.arenas_created, 2 * PER_PHASE);
}
END_TEST

static _Atomic unsigned small_took_slab;

static void *small_only(void *arg)
{
	(void)arg;
	void *p[64];
	for (int i = 0; i < 64; i++)
		p[i] = zk_malloc(16 + (size_t)i * 64);
	zk_stats_t s = {.size = sizeof(s)};
	zk_stats_get(&s);
	if (s.slabs_in_use != 0)
		atomic_fetch_add(&small_took_slab, 1);
	for (int i = 0; i < 64; i++)
		zk_free(p[i]);
	return NULL;
}

/* More small-only threads in one phase than there are slabs. */
START_TEST(small_threads_take_no_slab)
{
	ck_assert_int_eq(zk_begin_phase(), 0);
	zk_stats_t before = tu_stats();
	unsigned n = su_scale(200, 50);
	for (unsigned i = 0; i < n; i++) {
		pthread_t th;
		ck_assert_int_eq(pthread_create(&th, NULL, small_only, NULL),
				 0);
		pthread_join(th, NULL);
	}
	zk_stats_t after = tu_stats();
	zk_end_phase();
	ck_assert_uint_eq(small_took_slab, 0);
	/* one after another: each takes over the last one's resident arena */
	ck_assert_uint_le(after.arenas_created, before.arenas_created + 1);
	ck_assert_uint_eq(after.overflow_count, before.overflow_count);
	/* A large block afterwards still finds a slab. */
	ck_assert_int_eq(zk_begin_phase(), 0);
	void *p = zk_malloc(1 << 20);
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
	tcase_add_test(tc, small_threads_take_no_slab);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
