/*
 * Where requests go, seen through the public API: in a phase every request
 * of a thread is served from the pool, or with routing by size
 * (ZK_ALLOC_MIN_BYTES=N, or MALLOC_CONF=percpu_arena, which makes zkalloc
 * route by size from arenas.tcache_max + 1) those of at least the
 * threshold; outside phases none is, whatever the phase before freed. Run
 * under each of those settings: the expectations follow zk.opt.min_bytes,
 * opt.percpu_arena and arenas.tcache_max.
 */
#define _GNU_SOURCE
#include "testutil.h"

#include <check.h>
#include <zkalloc.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

static const size_t sizes[] = {64, 8 * KiB, 40 * KiB, MiB};
enum { NSIZES = sizeof(sizes) / sizeof(sizes[0]), ROUNDS = 200 };

/* The smallest in-phase request served from the pool. */
static size_t threshold(void)
{
	size_t min = 0, tcache_max = 0, len = sizeof(min);
	const char *percpu = NULL;
	size_t plen = sizeof(percpu);
	ck_assert_int_eq(zk_mallctl("zk.opt.min_bytes", &min, &len, NULL, 0),
			 0);
	ck_assert_int_eq(
	    zk_mallctl("opt.percpu_arena", &percpu, &plen, NULL, 0), 0);
	ck_assert_int_eq(
	    zk_mallctl("arenas.tcache_max", &tcache_max, &len, NULL, 0), 0);
	if (min != 0)
		return min;
	return strcmp(percpu, "disabled") == 0 ? 0 : tcache_max + 1;
}

/* ROUNDS blocks of each size, made and freed by turns; every one must be
 * pool memory exactly when want says. */
static void expect_routing(bool in_phase, size_t from)
{
	for (int s = 0; s < NSIZES; s++) {
		bool want = in_phase && sizes[s] >= from;
		void *keep[ROUNDS];
		for (int i = 0; i < ROUNDS; i++) {
			keep[i] = zk_malloc(sizes[s]);
			ck_assert_ptr_nonnull(keep[i]);
			ck_assert_msg(zk_owns(keep[i]) == want,
				      "%s, block %d of %zu bytes: pool %d, "
				      "want %d",
				      in_phase ? "in a phase" : "outside", i,
				      sizes[s], zk_owns(keep[i]), want);
			if (i % 3 == 2) { /* free some as we go */
				zk_free(keep[i - 1]);
				keep[i - 1] = NULL;
			}
		}
		for (int i = 0; i < ROUNDS; i++)
			zk_free(keep[i]);
	}
}

/* Blocks of every size made and freed before the phase (they fill the
 * thread's cache), then in it, then after it. */
START_TEST(phase_and_outside)
{
	size_t from = threshold();
	expect_routing(false, from);
	ck_assert_int_eq(zk_begin_phase(), 0);
	expect_routing(true, from);
	ck_assert_int_eq(zk_end_phase(), 0);
	expect_routing(false, from);
	ck_assert_int_eq(zk_begin_phase(), 0);
	expect_routing(true, from);
	ck_assert_int_eq(zk_end_phase(), 0);
}
END_TEST

static void *thread_routing(void *arg)
{
	expect_routing(true, *(size_t *)arg);
	return NULL;
}

/* A thread started in the phase, and one started before it. */
START_TEST(threads_in_a_phase)
{
	size_t from = threshold();
	ck_assert_int_eq(zk_begin_phase(), 0);
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, thread_routing, &from), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(zk_end_phase(), 0);
}
END_TEST

/* realloc moves a block that must move to where a new block of the new
 * size would go now; growth in place keeps it where it is. */
START_TEST(realloc_goes_where_a_new_block_would)
{
	size_t from = threshold();
	char *outside = zk_malloc(64);
	tu_fill(outside, 64, 1);
	ck_assert_int_eq(zk_begin_phase(), 0);
	char *in = zk_realloc(outside, MiB); /* small to large: moves */
	ck_assert(zk_owns(in));
	ck_assert_uint_eq(tu_check(in, 64, 1), SIZE_MAX);
	/* Large to small: moves. (Not to 64 bytes: the block `outside` just
	 * freed would be handed out again from the thread's cache, pool
	 * memory or not.) */
	char *small = zk_realloc(zk_malloc(MiB), 100);
	ck_assert(zk_owns(small) == (100 >= from));
	ck_assert_int_eq(zk_end_phase(), 0);
	tu_fill(in, MiB, 2);
	char *shrunk = zk_realloc(in, 100);
	ck_assert(!zk_owns(shrunk));
	ck_assert_uint_eq(tu_check(shrunk, 100, 2), SIZE_MAX);
	zk_free(shrunk);
	zk_free(small);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("routing");
	TCase *t = tcase_create("routing");
	tcase_add_test(t, phase_and_outside);
	tcase_add_test(t, threads_in_a_phase);
	tcase_add_test(t, realloc_goes_where_a_new_block_would);
	suite_add_tcase(s, t);
	return tu_run_suite(s);
}
