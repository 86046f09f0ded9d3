/*
 * Issue 14's scenario, shared by lazy_cache.c (the C API, zk_arena_flags +
 * mallocx) and lazy_cache_dropin.cpp (the drop-in: malloc, realloc, new):
 * caches built lazily inside the first proof and read in every later one.
 *
 * Who makes them: the main thread, two pool workers that live across
 * proofs (a thread pool's), and a thread each proof starts and joins.
 * Sizes: on either side of each jemalloc threshold (a small size class,
 * 32 KiB = the largest the thread cache keeps, just above it, above the
 * 8 MiB oversize threshold), two ways each: made at half the size and grown
 * with realloc (a Vec's growth), and made at once by a second entry point
 * (new[], aligned_alloc, an aligned mallocx).
 *
 * Every proof also allocates and writes as much fresh memory of the same
 * sizes: a kept block handed out again would be overwritten. Every kept
 * byte is checked by its thread before and after that, and by the main
 * thread once all are done; the kept blocks must be counted
 * (zk.stats.kept_*) at the next begin, and each is pool memory where the
 * front-end says it must be (else the test would prove nothing).
 *
 * C and C++; the front-end runs lc_start, then per proof
 * begin, lc_proof, end, then lc_finish.
 */
#ifndef ZK_LAZY_CACHE_H
#define ZK_LAZY_CACHE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "example_check.h"

/* How the front-end allocates. make/grow/drop: the first way (grow is
 * realloc), make_b/drop_b: the second. expect(n): 1 if a block of n bytes
 * made in a phase must be pool memory, 0 if it must not, -1 if either. */
typedef struct lc_ops {
	void *(*make)(size_t n);
	void *(*grow)(void *p, size_t n);
	void (*drop)(void *p);
	void *(*make_b)(size_t n);
	void (*drop_b)(void *p);
	bool (*owns)(const void *p);
	int (*expect)(size_t n);
	uint64_t (*stat)(const char *name); /* "zk.stats.<name>" */
} lc_ops;

#define LC_PROOFS  4
#define LC_THREADS 4 /* main, two pool workers, one per proof */
#define LC_SIZES   4
#define LC_MiB	   ((size_t)1 << 20)

static const size_t lc_size[LC_SIZES] = {200, 32 << 10, 40 << 10, 9 * LC_MiB};
/* Fresh blocks per proof and thread, of each size. */
static const int lc_fresh[LC_SIZES] = {256, 8, 8, 2};

typedef struct lc_block {
	unsigned char *p;
	size_t n;
} lc_block;

static const lc_ops *lc;
static lc_block lc_cache[LC_THREADS][LC_SIZES][2];
static pthread_barrier_t lc_go, lc_done;
static pthread_t lc_pool[2];
static volatile bool lc_stop;
static int lc_proof_now;

/* A word per 8 bytes from tag and offset: any prefix of a filled block
 * checks as a block of that length, and blocks with different tags differ
 * in every word. */
static uint64_t lc_word(uint64_t tag, size_t i)
{
	return (tag + (i >> 3)) * 0x9E3779B97F4A7C15ull;
}

static unsigned char lc_byte(uint64_t tag, size_t i)
{
	return (unsigned char)(lc_word(tag, i) >> ((i & 7) * 8));
}

/* Fill bytes [from, n) of p (little-endian words, as lc_byte reads). */
static void lc_fill(unsigned char *p, size_t from, size_t n, uint64_t tag)
{
	size_t i = from;
	for (; i < n && (i & 7) != 0; i++)
		p[i] = lc_byte(tag, i);
	for (; i + 8 <= n; i += 8) {
		uint64_t w = lc_word(tag, i);
		memcpy(p + i, &w, 8);
	}
	for (; i < n; i++)
		p[i] = lc_byte(tag, i);
}

/* The index of the first wrong byte, or n. */
static size_t lc_check(const unsigned char *p, size_t n, uint64_t tag)
{
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t w;
		memcpy(&w, p + i, 8);
		if (w != lc_word(tag, i))
			break;
	}
	for (; i < n; i++)
		if (p[i] != lc_byte(tag, i))
			return i;
	return n;
}

static uint64_t lc_tag(int t, int s, int way)
{
	return ((uint64_t)t << 40) | ((uint64_t)s << 32) | (uint64_t)way << 28;
}

static void lc_expect_owned(const void *p, size_t n, const char *what)
{
	int want = lc->expect(n);
	if (want >= 0)
		CHECK(lc->owns(p) == (want == 1),
		      "%s of %zu bytes: pool memory %d, must be %d", what, n,
		      lc->owns(p), want);
}

/* The cache of thread t, built the first time it is needed. */
static void lc_build(int t)
{
	for (int s = 0; s < LC_SIZES; s++) {
		size_t n = lc_size[s];
		lc_block *a = &lc_cache[t][s][0], *b = &lc_cache[t][s][1];
		if (a->p == NULL) {
			unsigned char *p = (unsigned char *)lc->make(n / 2);
			CHECK(p != NULL, "make(%zu)", n / 2);
			if (p == NULL)
				continue;
			lc_fill(p, 0, n / 2, lc_tag(t, s, 0));
			p = (unsigned char *)lc->grow(p, n);
			CHECK(p != NULL, "grow to %zu", n);
			if (p == NULL)
				continue;
			CHECK(lc_check(p, n / 2, lc_tag(t, s, 0)) == n / 2,
			      "grow to %zu lost the contents", n);
			lc_fill(p, n / 2, n, lc_tag(t, s, 0));
			lc_expect_owned(p, n, "a grown cache block");
			a->p = p;
			a->n = n;
		}
		if (b->p == NULL) {
			unsigned char *p = (unsigned char *)lc->make_b(n);
			CHECK(p != NULL, "make_b(%zu)", n);
			if (p == NULL)
				continue;
			lc_fill(p, 0, n, lc_tag(t, s, 1));
			lc_expect_owned(p, n, "a cache block");
			b->p = p;
			b->n = n;
		}
	}
}

static void lc_verify(int t, const char *when)
{
	for (int s = 0; s < LC_SIZES; s++)
		for (int way = 0; way < 2; way++) {
			lc_block *c = &lc_cache[t][s][way];
			if (c->p == NULL)
				continue;
			size_t bad = lc_check(c->p, c->n, lc_tag(t, s, way));
			CHECK(bad == c->n,
			      "proof %d, %s: thread %d's kept block of %zu "
			      "bytes (way %d) changed at byte %zu",
			      lc_proof_now + 1, when, t, c->n, way, bad);
		}
}

/* Does [p, p + n) overlap a kept block of thread t? */
static bool lc_overlaps(int t, const unsigned char *p, size_t n)
{
	for (int s = 0; s < LC_SIZES; s++)
		for (int way = 0; way < 2; way++) {
			const lc_block *c = &lc_cache[t][s][way];
			if (c->p != NULL && p < c->p + c->n && c->p < p + n)
				return true;
		}
	return false;
}

/* One thread's proof: build (the first time), check, write as much fresh
 * memory of the same sizes, check again, free the fresh memory. */
static void lc_work(int t)
{
	enum { MAXF = 256 };
	static __thread lc_block fresh[LC_SIZES][MAXF];
	lc_build(t);
	lc_verify(t, "before the fresh memory");
	uint64_t base = (uint64_t)(lc_proof_now + 1) << 48;
	for (int s = 0; s < LC_SIZES; s++)
		for (int i = 0; i < lc_fresh[s]; i++) {
			size_t n = lc_size[s];
			unsigned char *p =
			    (unsigned char *)(i & 1 ? lc->make_b(n)
						    : lc->make(n));
			CHECK(p != NULL, "fresh block of %zu", n);
			if (p != NULL) {
				CHECK(!lc_overlaps(t, p, n),
				      "a fresh block of %zu bytes overlaps a "
				      "kept one",
				      n);
				lc_fill(p, 0, n, base | lc_tag(t, s, 2) | i);
			}
			fresh[s][i].p = p;
			fresh[s][i].n = n;
		}
	lc_verify(t, "after the fresh memory");
	for (int s = 0; s < LC_SIZES; s++)
		for (int i = 0; i < lc_fresh[s]; i++) {
			unsigned char *p = fresh[s][i].p;
			if (p == NULL)
				continue;
			uint64_t tag = base | lc_tag(t, s, 2) | i;
			CHECK(lc_check(p, fresh[s][i].n, tag) == fresh[s][i].n,
			      "a fresh block of %zu bytes changed",
			      fresh[s][i].n);
			if (i & 1)
				lc->drop_b(p);
			else
				lc->drop(p);
		}
}

static void *lc_worker(void *arg)
{
	int t = (int)(intptr_t)arg;
	for (;;) {
		pthread_barrier_wait(&lc_go);
		if (lc_stop)
			return NULL;
		lc_work(t);
		pthread_barrier_wait(&lc_done);
	}
}

static void *lc_proof_thread(void *arg)
{
	lc_work((int)(intptr_t)arg);
	return NULL;
}

/* Start the pool workers (before the first phase). */
static void lc_start(const lc_ops *ops)
{
	lc = ops;
	pthread_barrier_init(&lc_go, NULL, 3);
	pthread_barrier_init(&lc_done, NULL, 3);
	for (int i = 0; i < 2; i++)
		CHECK(pthread_create(&lc_pool[i], NULL, lc_worker,
				     (void *)(intptr_t)(i + 1)) == 0,
		      "pthread_create");
}

/* One proof; the caller has begun the phase. */
static void lc_proof(int proof)
{
	lc_proof_now = proof;
	if (proof > 0) {
		/* Everything the first proof built is still allocated. */
		uint64_t want_blocks = 0, want_bytes = 0;
		for (int t = 0; t < LC_THREADS; t++)
			for (int s = 0; s < LC_SIZES; s++)
				for (int way = 0; way < 2; way++) {
					lc_block *c = &lc_cache[t][s][way];
					if (c->p == NULL || !lc->owns(c->p))
						continue;
					want_blocks += c->n >= (16 << 10);
					want_bytes += c->n;
				}
		uint64_t blocks = lc->stat("zk.stats.kept_blocks");
		uint64_t bytes = lc->stat("zk.stats.kept_bytes");
		CHECK(blocks > 0 && blocks >= want_blocks,
		      "proof %d: kept_blocks %llu, at least %llu expected",
		      proof + 1, (unsigned long long)blocks,
		      (unsigned long long)want_blocks);
		CHECK(bytes > 0 && bytes >= want_bytes,
		      "proof %d: kept_bytes %llu, at least %llu expected",
		      proof + 1, (unsigned long long)bytes,
		      (unsigned long long)want_bytes);
	}
	pthread_barrier_wait(&lc_go);
	pthread_t own;
	bool started = pthread_create(&own, NULL, lc_proof_thread,
				      (void *)(intptr_t)3) == 0;
	CHECK(started, "pthread_create");
	lc_work(0);
	if (started)
		pthread_join(own, NULL);
	pthread_barrier_wait(&lc_done);
	for (int t = 0; t < LC_THREADS; t++)
		lc_verify(t, "at the end of the proof");
}

/* Stop the workers and free the caches; returns the exit code. */
static int lc_finish(const char *name)
{
	lc_stop = true;
	pthread_barrier_wait(&lc_go);
	for (int i = 0; i < 2; i++)
		pthread_join(lc_pool[i], NULL);
	for (int t = 0; t < LC_THREADS; t++)
		for (int s = 0; s < LC_SIZES; s++) {
			lc->drop(lc_cache[t][s][0].p);
			lc->drop_b(lc_cache[t][s][1].p);
		}
	printf("%s: %d proofs, caches of %d threads kept and intact: %s\n",
	       name, LC_PROOFS, LC_THREADS, failures ? "NO" : "yes");
	return failures ? 1 : 0;
}

#endif
