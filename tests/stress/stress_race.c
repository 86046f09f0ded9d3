/*
 * Races ThreadSanitizer should judge (suite 'threads'): the first
 * zk_begin_phase, which reserves the region and reads the options, while
 * other threads allocate, reallocate and free ordinary blocks (each asks
 * zk_owns, which reads the region without the lock, and reads the options
 * once it sees a phase active), and a thread reads stats and ctl names.
 */
#include "stress_util.h"

#include <zkalloc.h>

#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static _Atomic int go, stop;
static _Atomic uint64_t bad;

static void *ordinary_churn(void *arg)
{
	uint64_t r = (uint64_t)(uintptr_t)arg;
	while (!atomic_load(&go))
		;
	while (!atomic_load(&stop)) {
		/* Below the phase threshold: ordinary memory in and out of
		 * phases, so main's zk_begin_phase keeps the contract. */
		size_t n = 16 + su_next(&r) % 8000;
		unsigned char *p = zk_malloc(n);
		if (p == NULL) {
			atomic_fetch_add(&bad, 1);
			continue;
		}
		p[0] = 1;
		p = zk_realloc(p, n * 2);
		if (p == NULL || p[0] != 1)
			atomic_fetch_add(&bad, 1);
		zk_free(p);
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
		(void)zk_phase_active();
	}
	return NULL;
}

START_TEST(first_begin_against_frees)
{
	enum { N = 3 };
	pthread_t th[N + 1];
	for (uintptr_t i = 0; i < N; i++)
		pthread_create(&th[i], NULL, ordinary_churn, (void *)(i + 1));
	pthread_create(&th[N], NULL, observer, NULL);
	atomic_store(&go, 1);
	ck_assert_int_eq(zk_begin_phase(), 0); /* reserves the region now */
	for (int ph = 0; ph < 50; ph++) {
		void *p = zk_malloc(1 << 20);
		ck_assert(zk_owns(p));
		memset(p, 2, 1 << 20);
		zk_end_phase();
		ck_assert_int_eq(zk_begin_phase(), 0);
	}
	zk_end_phase();
	atomic_store(&stop, 1);
	for (int i = 0; i < N + 1; i++)
		pthread_join(th[i], NULL);
	ck_assert_uint_eq(bad, 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("stress_race");
	TCase *tc = tcase_create("race");
	tcase_set_timeout(tc, 0);
	tcase_add_test(tc, first_begin_against_frees);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
