/*
 * Issue 14 through the prefixed entry points, as a Rust prover with
 * tikv-jemallocator makes its allocations (_rjem_mallocx, _rjem_malloc,
 * _rjem_calloc, _rjem_rallocx; here spelled je_* under
 * JEMALLOC_NO_DEMANGLE), all wrapped to zkalloc: caches built lazily inside
 * the first phase, by the main thread and by threads started in it, at
 * 64 B, 48 KiB (above jemalloc's 32 KiB tcache limit) and 12 MiB (above its
 * 8 MiB oversize threshold), plus a table grown by rallocx from 64 B to
 * 9 MiB, are read back in phases 2..5. Each later phase first allocates
 * buffers of the same sizes on every thread and writes a pattern over them
 * (where the caches' pages were handed out again, this overwrites them).
 *
 * As a test it checks: every cache at or above zk.opt.min_bytes lies in
 * the pool (so it cannot pass by keeping them out of it), every cache is
 * intact in every later phase, and zk.stats.kept_blocks / kept_bytes at
 * the second begin count them. meson runs it with default settings, with
 * ZK_ALLOC_MIN_BYTES=4096 and with ZK_ALLOC_CHECK=1 (a correct program:
 * no report).
 */
#define JEMALLOC_NO_DEMANGLE
#include <jemalloc/jemalloc.h>
#include <zkalloc.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../integration/example_check.h"

#define KiB	((size_t)1 << 10)
#define MiB	((size_t)1 << 20)
#define NSIZES	3
#define WORKERS 3
#define OWNERS	(1 + WORKERS) /* owner 0: the main thread */
#define PHASES	5
#define GROWN	(9 * MiB)

static const size_t sizes[NSIZES] = {64, 48 * KiB, 12 * MiB};

/* caches[owner][size]: built in phase 1, never freed. */
static uint32_t *caches[OWNERS][NSIZES];
static uint32_t *grown; /* the main thread's, grown by rallocx */

static int phase(const char *name)
{
	return je_mallctl(name, NULL, NULL, NULL, 0);
}

static uint64_t stat_u64(const char *name)
{
	uint64_t v = 0;
	size_t len = sizeof(v);
	CHECK(je_mallctl(name, &v, &len, NULL, 0) == 0, "%s unreadable", name);
	return v;
}

/* Element i of owner o's table of size index k: no two tables agree. */
static uint32_t value(unsigned o, unsigned k, size_t i)
{
	uint64_t x = ((uint64_t)o << 40) ^ ((uint64_t)k << 32) ^ i;
	x *= 0x9e3779b97f4a7c15ull;
	return (uint32_t)(x >> 32);
}

/* The lazy build: one allocation path per size, as a prover's library
 * would (Vec::with_capacity, vec![0; n] (calloc), Box::new). */
static void build(unsigned o)
{
	for (unsigned k = 0; k < NSIZES; k++) {
		size_t n = sizes[k] / 4;
		uint32_t *t = k == 0 ? je_malloc(sizes[k])
			      : k == 1
				  ? je_calloc(n, 4)
				  : je_mallocx(sizes[k], MALLOCX_ALIGN(64));
		CHECK(t != NULL, "owner %u: cache %zu B not allocated", o,
		      sizes[k]);
		if (t == NULL)
			continue;
		for (size_t i = 0; i < n; i++)
			t[i] = value(o, k, i);
		caches[o][k] = t;
	}
}

static void *build_worker(void *arg)
{
	build((unsigned)(uintptr_t)arg);
	return NULL;
}

static void build_grown(void)
{
	size_t cap = 64;
	uint32_t *g = je_mallocx(cap, 0);
	for (size_t i = 0; g != NULL && i < GROWN / 4; i++) {
		if ((i + 1) * 4 > cap) {
			cap *= 2;
			g = je_rallocx(g, cap, 0);
			if (g == NULL)
				break;
		}
		g[i] = value(9, 9, i);
	}
	CHECK(g != NULL, "the grown table could not grow");
	grown = g;
}

/* Every cache intact; returns the number of damaged tables. */
static int verify(const char *who, unsigned round)
{
	int bad = 0;
	for (unsigned o = 0; o < OWNERS; o++)
		for (unsigned k = 0; k < NSIZES; k++) {
			const uint32_t *t = caches[o][k];
			for (size_t i = 0; t != NULL && i < sizes[k] / 4; i++)
				if (t[i] != value(o, k, i)) {
					CHECK(
					    0,
					    "%s, phase %u: owner %u's %zu-byte "
					    "cache overwritten at element %zu",
					    who, round, o, sizes[k], i);
					bad++;
					break;
				}
		}
	for (size_t i = 0; grown != NULL && i < GROWN / 4; i++)
		if (grown[i] != value(9, 9, i)) {
			CHECK(0, "%s, phase %u: grown table overwritten at %zu",
			      who, round, i);
			bad++;
			break;
		}
	return bad;
}

/* A later proof on one thread: buffers of every cache size (and larger),
 * written over, the caches read back, the buffers freed. */
static void later_proof(const char *who, unsigned round)
{
	const size_t extra[] = {sizes[0], sizes[1], sizes[2], GROWN,
				2 * sizes[2]};
	void *buf[5];
	for (int i = 0; i < 5; i++) {
		buf[i] = je_mallocx(extra[i], 0);
		CHECK(buf[i] != NULL, "%s: scribble buffer", who);
		if (buf[i])
			memset(buf[i], 0xa0 | (int)round, extra[i]);
	}
	verify(who, round);
	for (int i = 0; i < 5; i++)
		if (buf[i])
			je_sdallocx(buf[i], extra[i], 0);
}

static void *later_worker(void *arg)
{
	char who[32];
	unsigned round = (unsigned)(uintptr_t)arg;
	snprintf(who, sizeof(who), "worker in phase %u", round);
	later_proof(who, round);
	return NULL;
}

static void run_workers(void *(*fn)(void *), uintptr_t arg0, int per_worker)
{
	pthread_t th[WORKERS];
	for (int t = 0; t < WORKERS; t++)
		CHECK(pthread_create(
			  &th[t], NULL, fn,
			  (void *)(arg0 +
				   (uintptr_t)(per_worker ? t + 1 : 0))) == 0,
		      "pthread_create");
	for (int t = 0; t < WORKERS; t++)
		pthread_join(th[t], NULL);
}

int main(void)
{
	size_t min = 0, len = sizeof(min);
	CHECK(je_mallctl("zk.opt.min_bytes", &min, &len, NULL, 0) == 0,
	      "zk.opt.min_bytes unreadable");

	/* Phase 1: the first proof builds the caches lazily. */
	CHECK(phase("zk.phase.begin") == 0, "begin 1");
	build(0);
	build_grown();
	run_workers(build_worker, 0, 1);
	CHECK(phase("zk.phase.end") == 0, "end 1");

	size_t pooled_bytes = 0;
	for (unsigned o = 0; o < OWNERS; o++)
		for (unsigned k = 0; k < NSIZES; k++) {
			bool want = sizes[k] >= min;
			CHECK(zk_owns(caches[o][k]) == want,
			      "owner %u's %zu-byte cache: zk_owns %d, expected "
			      "%d (zk.opt.min_bytes %zu)",
			      o, sizes[k], zk_owns(caches[o][k]), want, min);
			if (want && sizes[k] >= 4096)
				pooled_bytes += sizes[k];
		}
	CHECK(zk_owns(grown), "the grown table is not in the pool");
	pooled_bytes += GROWN;

	for (unsigned round = 2; round <= PHASES; round++) {
		CHECK(phase("zk.phase.begin") == 0, "begin %u", round);
		if (round == 2) {
			uint64_t blocks = stat_u64("zk.stats.kept_blocks");
			uint64_t bytes = stat_u64("zk.stats.kept_bytes");
			printf(
			    "at begin 2: kept_blocks %llu, kept_bytes %llu\n",
			    (unsigned long long)blocks,
			    (unsigned long long)bytes);
			CHECK(blocks >= 2 * OWNERS + 1,
			      "kept_blocks %llu at the begin after the caches "
			      "were made",
			      (unsigned long long)blocks);
			CHECK(bytes >= pooled_bytes, "kept_bytes %llu < %zu",
			      (unsigned long long)bytes, pooled_bytes);
		}
		later_proof("main", round);
		run_workers(later_worker, round, 0);
		CHECK(phase("zk.phase.end") == 0, "end %u", round);
	}
	int bad = verify("after the last phase", PHASES);
	printf("%d phases, zk.opt.min_bytes %zu: %s\n", PHASES, min,
	       bad || failures ? "CACHES DAMAGED" : "caches intact");
	return failures ? 1 : 0;
}
