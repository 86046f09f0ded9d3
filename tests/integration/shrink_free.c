/*
 * Issue 13.2: a pool block shrunk with zk_realloc to 64 bytes and freed
 * with plain free() on a worker thread lands in that thread's cache; the
 * worker's next malloc(64), in the next phase, may return it, while that
 * phase writes lots of new memory of the same size. A block must never be
 * handed out twice: every block keeps its contents and no two live blocks
 * overlap. Run with the default routing, ZK_ALLOC_MIN_BYTES=4096 and in
 * checked mode.
 */
#define _GNU_SOURCE
#include "testutil.h"

#include <check.h>
#include <zkalloc.h>

#include <jemalloc/jemalloc.h>

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The worker's plain malloc/free: jemalloc's (the program links it ahead
 * of libc). Under Address- or ThreadSanitizer, malloc/free are the
 * sanitizer's: jemalloc's mallocx/dallocx take the same thread-cache path
 * there. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define plain_malloc(n) mallocx((n), 0)
#define plain_free(p)	dallocx((p), 0)
#else
#define plain_malloc(n) malloc(n)
#define plain_free(p)	free(p)
#endif

#define MiB    ((size_t)1 << 20)
#define ROUNDS 6
#define MINE   4096  /* the worker's fresh 64-byte blocks per phase */
#define THEIRS 20000 /* the main thread's, while the worker holds its own */

/* The worker does what the main thread hands it, one step at a time. */
enum step { IDLE, FREE_IT, ALLOC, CHECK_ALL, FREE_ALL, QUIT };

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum step step;
	char *shrunk;	  /* FREE_IT: verify, then free() it */
	char *mine[MINE]; /* ALLOC: malloc(64) each, filled */
	size_t bad;	  /* CHECK_ALL: first wrong byte found, or 0 */
	uint64_t tag;
} w = {.lock = PTHREAD_MUTEX_INITIALIZER,
       .cond = PTHREAD_COND_INITIALIZER,
       .step = IDLE};

/* Hand the worker step s and wait until it is done (QUIT: until it is
 * taken; join the thread then). */
static void run(enum step s)
{
	pthread_mutex_lock(&w.lock);
	w.step = s;
	pthread_cond_broadcast(&w.cond);
	while (s != QUIT && w.step != IDLE)
		pthread_cond_wait(&w.cond, &w.lock);
	pthread_mutex_unlock(&w.lock);
}

static void *worker(void *arg)
{
	(void)arg;
	for (;;) {
		pthread_mutex_lock(&w.lock);
		while (w.step == IDLE)
			pthread_cond_wait(&w.cond, &w.lock);
		enum step s = w.step;
		pthread_mutex_unlock(&w.lock);
		if (s == QUIT)
			return NULL;
		switch (s) {
		case FREE_IT:
			if (tu_check(w.shrunk, 64, w.tag) != SIZE_MAX)
				w.bad = 1;
			plain_free(w.shrunk); /* into this thread's cache */
			break;
		case ALLOC:
			for (int i = 0; i < MINE; i++) {
				w.mine[i] = plain_malloc(64);
				tu_fill(w.mine[i], 64, w.tag + (uint64_t)i);
			}
			break;
		case CHECK_ALL:
			for (int i = 0; i < MINE && w.bad == 0; i++)
				if (tu_check(w.mine[i], 64,
					     w.tag + (uint64_t)i) != SIZE_MAX)
					w.bad = 1 + (size_t)i;
			break;
		case FREE_ALL:
			for (int i = 0; i < MINE; i++)
				plain_free(w.mine[i]);
			break;
		default:
			break;
		}
		pthread_mutex_lock(&w.lock);
		w.step = IDLE;
		pthread_cond_broadcast(&w.cond);
		pthread_mutex_unlock(&w.lock);
	}
}

static int cmp_ptr(const void *a, const void *b)
{
	uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
	return x < y ? -1 : x > y;
}

START_TEST(shrunk_block_is_never_handed_out_twice)
{
	static char *theirs[THEIRS];
	static uintptr_t all[THEIRS + MINE];
	int reused = 0; /* rounds whose worker got the shrunk block back */
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, worker, NULL), 0);
	for (int round = 0; round < ROUNDS; round++) {
		uint64_t tag = (uint64_t)(round + 1) << 32;
		/* Phase r: a big block shrunk to 64 bytes, freed by the
		 * worker with plain free(). */
		ck_assert_int_eq(zk_begin_phase(), 0);
		char *p = zk_malloc(MiB);
		tu_fill(p, MiB, tag);
		char *q = zk_realloc(p, 64);
		ck_assert_ptr_nonnull(q);
		ck_assert_uint_eq(tu_check(q, 64, tag), SIZE_MAX);
		w.shrunk = q;
		w.tag = tag;
		w.bad = 0;
		run(FREE_IT);
		ck_assert_msg(w.bad == 0, "the shrunk block changed");
		ck_assert_int_eq(zk_end_phase(), 0);

		/* Phase r + 1 (the next round's phase starts the same way):
		 * the worker's malloc(64)s, then lots of new memory here. */
		ck_assert_int_eq(zk_begin_phase(), 0);
		w.tag = tag | 0x40000000u;
		run(ALLOC);
		for (int i = 0; i < THEIRS; i++) {
			theirs[i] = zk_malloc(64);
			ck_assert_ptr_nonnull(theirs[i]);
			tu_fill(theirs[i], 64, tag | 0x80000000u | (uint64_t)i);
		}
		char *big = zk_malloc(32 * MiB);
		ck_assert_ptr_nonnull(big);
		memset(big, 0xa5, 32 * MiB);
		run(CHECK_ALL);
		ck_assert_msg(w.bad == 0,
			      "round %d: the worker's block %zu "
			      "changed",
			      round, w.bad - 1);
		int changed = 0;
		while (changed < THEIRS &&
		       tu_check(theirs[changed], 64,
				tag | 0x80000000u | (uint64_t)changed) ==
			   SIZE_MAX)
			changed++;
		ck_assert_msg(changed == THEIRS, "round %d: block %d changed",
			      round, changed);
		/* No two live 64-byte blocks overlap. */
		for (int i = 0; i < THEIRS; i++)
			all[i] = (uintptr_t)theirs[i];
		for (int i = 0; i < MINE; i++)
			all[THEIRS + i] = (uintptr_t)w.mine[i];
		qsort(all, THEIRS + MINE, sizeof(all[0]), cmp_ptr);
		int i = 1;
		while (i < THEIRS + MINE && all[i] - all[i - 1] >= 64)
			i++;
		ck_assert_msg(i == THEIRS + MINE,
			      "round %d: blocks %#lx and %#lx overlap", round,
			      (unsigned long)all[i - 1], (unsigned long)all[i]);
		for (int k = 0; k < MINE; k++)
			reused += w.mine[k] == q;
		for (int i = 0; i < THEIRS; i++)
			zk_free(theirs[i]);
		zk_free(big);
		run(FREE_ALL);
		ck_assert_int_eq(zk_end_phase(), 0);
	}
	run(QUIT);
	pthread_join(t, NULL);
	printf("the worker's malloc(64) returned the shrunk block in %d of "
	       "%d rounds\n",
	       reused, ROUNDS);
	ck_assert_msg(reused > 0, "the scenario did not happen: the worker "
				  "never got the shrunk block back");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("shrink-free");
	TCase *t = tcase_create("issue-13.2");
	tcase_set_timeout(t, 120);
	tcase_add_test(t, shrunk_block_is_never_handed_out_twice);
	suite_add_tcase(s, t);
	return tu_run_suite(s);
}
