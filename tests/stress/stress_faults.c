/*
 * Faults: the region cannot be reserved (RLIMIT_AS too small), the region
 * shrinks to fit RLIMIT_AS, jemalloc refuses to create zkalloc's arenas,
 * the region fills up (also after an impossible request, which must not be
 * taken for a full region: issue 13 item 9), the kernel refuses to commit
 * more of the region (simulated with zk_os_commit_fault), and a thread
 * that exits while holding pool memory. In every case every allocation
 * succeeds, data stays intact, a refused pool request is counted as
 * overflow, and each fault kind prints exactly one warning. Each scenario
 * but the last runs in a forked child (tu_run_child) so that its limits,
 * environment and fault stay its own; a child returns a distinct code per
 * failed check. Fork itself: stress_fork.c.
 */
#define JEMALLOC_NO_DEMANGLE
#include "os.h" /* src/os.h: zk_os_commit_fault */
#include "stress_util.h"

#include <zkalloc.h>

#include <check.h>
#include <errno.h>
#include <jemalloc/jemalloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static char err[1 << 16];

static zk_stats_t stats(void)
{
	zk_stats_t s = {.size = sizeof(s)};
	zk_stats_get(&s);
	return s;
}

static void expect_child(int (*fn)(void *), const char *const *env)
{
	int rc = tu_run_child(fn, NULL, env, err, sizeof(err));
	ck_assert_msg(rc == 0, "child returned %d; stderr:\n%s", rc,
		      su_tail(err));
}

/* n large blocks per phase over phases phases: all must succeed as plain
 * jemalloc memory (not the pool's) and stay intact, a realloc too.
 * Returns 0 or a failure code. */
static int all_plain(unsigned phases, unsigned n)
{
	void *p[64];
	for (unsigned ph = 0; ph < phases; ph++) {
		if (zk_begin_phase() != 0)
			return 10;
		for (unsigned i = 0; i < n; i++) {
			p[i] = zk_malloc(MiB + i * 4096);
			if (p[i] == NULL)
				return 11;
			if (zk_owns(p[i]))
				return 12;
			tu_fill(p[i], MiB + i * 4096, ph * 100 + i);
		}
		p[0] = zk_realloc(p[0], 3 * MiB);
		if (p[0] == NULL || zk_owns(p[0]) ||
		    tu_check(p[0], MiB, ph * 100) != SIZE_MAX)
			return 13;
		for (unsigned i = 1; i < n; i++)
			if (tu_check(p[i], MiB + i * 4096, ph * 100 + i) !=
			    SIZE_MAX)
				return 14;
		if (zk_arena_flags() != 0)
			return 15;
		for (unsigned i = 0; i < n; i++)
			zk_free(p[i]);
		zk_end_phase();
	}
	return 0;
}

/* Leave headroom bytes of address space above what the process maps now
 * (sanitizer shadow included). */
static int limit_as(size_t headroom)
{
	unsigned long pages = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f == NULL || fscanf(f, "%lu", &pages) != 1)
		return 2;
	fclose(f);
	rlim_t lim = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + headroom;
	struct rlimit rl = {lim, lim};
	return setrlimit(RLIMIT_AS, &rl) != 0 ? 3 : 0;
}

/* ---------------------------------------------------------- RLIMIT_AS */

/* 100 MiB left: half of it cannot hold the smallest region (64 MiB). */
static int region_refused(void *arg)
{
	(void)arg;
	int rc = limit_as(100 * MiB);
	if (rc != 0)
		return rc;
	rc = all_plain(3, 20);
	if (rc != 0)
		return rc;
	zk_stats_t s = stats();
	if (s.region_reserved || s.max_block != 0 || s.reserved_bytes != 0)
		return 4;
	if (s.arenas_created != 0 || s.overflow_count != 0)
		return 5; /* no arena over no pool: jemalloc's own */
	return 0;
}

START_TEST(region_reservation_refused)
{
	expect_child(region_refused, NULL);
	ck_assert_uint_eq(su_count(err, "cannot reserve the phase region"), 1);
	ck_assert_uint_eq(su_count(err, "zkalloc: warning"), 1);
}
END_TEST

/* 1 GiB left: the region shrinks to fit half of it instead of starving
 * the process; phase memory works, and an ordinary allocation of a third
 * of the limit still succeeds after the phases. */
static int region_shrunk(void *arg)
{
	(void)arg;
	int rc = limit_as((size_t)1 << 30);
	if (rc != 0)
		return rc;
	for (int ph = 0; ph < 3; ph++) {
		if (zk_begin_phase() != 0)
			return 20;
		char *p = zk_malloc(16 * MiB);
		if (p == NULL || !zk_owns(p))
			return 21;
		tu_fill(p, 16 * MiB, (uint64_t)ph);
		if (tu_check(p, 16 * MiB, (uint64_t)ph) != SIZE_MAX)
			return 22;
		zk_free(p);
		zk_end_phase();
	}
	char *big = zk_malloc(320 * MiB);
	if (big == NULL)
		return 23;
	su_touch(big, 320 * MiB, 1);
	zk_free(big);
	zk_stats_t s = stats();
	if (!s.region_reserved || s.max_block > 512 * MiB ||
	    s.max_block < 256 * MiB || s.reserved_bytes > 520 * MiB ||
	    s.overflow_count != 0)
		return 24;
	return 0;
}

START_TEST(region_shrinks_under_rlimit_as)
{
	expect_child(region_shrunk, NULL);
	ck_assert_uint_eq(su_count(err, "RLIMIT_AS: the phase region is"), 1);
	ck_assert_uint_eq(su_count(err, "zkalloc: warning"), 0);
}
END_TEST

/* ------------------------------------------------------ arena limit */

/* Large blocks in the phase main began: all plain jemalloc, intact. */
static void *plain_thread(void *arg)
{
	uint64_t tag = (uint64_t)(uintptr_t)arg;
	void *p[16];
	for (int i = 0; i < 16; i++) {
		p[i] = zk_malloc(MiB);
		if (p[i] == NULL || zk_owns(p[i]))
			return (void *)1;
		tu_fill(p[i], MiB, tag + (uint64_t)i);
	}
	for (int i = 0; i < 16; i++) {
		if (tu_check(p[i], MiB, tag + (uint64_t)i) != SIZE_MAX)
			return (void *)2;
		zk_free(p[i]);
	}
	return NULL;
}

static int arena_limit(void *arg)
{
	(void)arg;
	/* Exhaust jemalloc's arena indices (MALLOCX_ARENA_LIMIT, 4095 in
	 * 5.3) before zkalloc makes its first arena. */
	unsigned ind, made = 0;
	size_t len = sizeof(ind);
	while (je_mallctl("arenas.create", &ind, &len, NULL, 0) == 0)
		made++;
	if (made == 0)
		return 2;
	int rc = all_plain(3, 20);
	if (rc != 0)
		return rc;
	/* Two more threads in another phase, concurrently. */
	if (zk_begin_phase() != 0)
		return 5;
	pthread_t th[2];
	void *res[2];
	for (uintptr_t i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, plain_thread, (void *)(i * 1000));
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], &res[i]);
		if (res[i] != NULL)
			return 7;
	}
	zk_end_phase();
	zk_stats_t s = stats();
	if (s.arenas_created != 0 || !s.region_reserved)
		return 6;
	printf("arena limit: %u arenas made before the first phase\n", made);
	return 0;
}

START_TEST(arena_creation_refused)
{
	expect_child(arena_limit, NULL);
	ck_assert_uint_eq(su_count(err, "cannot create a jemalloc arena"), 1);
	ck_assert_uint_eq(su_count(err, "zkalloc: warning"), 1);
}
END_TEST

/* ------------------------------------------------------- region full */

#define FULL_BLOCKS 8

/* A 64 MiB region (the child sets ZK_ALLOC_REGION_GB): first
 * two requests it can never serve (an alignment of 1 TiB, 100 MiB), which
 * are not a full region; then 24 MiB blocks until the region is full and
 * one moved by realloc: overflow, counted, every byte intact. arg != NULL:
 * then all freed, and the next phase's block must be the pool's. */
static int region_full(void *arg)
{
	if (zk_begin_phase() != 0)
		return 2;
	void *odd = zk_aligned_alloc((size_t)1 << 40, 4096);
	if (odd != NULL) {
		if (zk_owns(odd))
			return 3;
		zk_free(odd);
	}
	unsigned char *huge = zk_malloc(100 * MiB);
	if (huge == NULL || zk_owns(huge))
		return 4;
	su_touch(huge, 100 * MiB, 9);
	zk_free(huge);
	zk_stats_t s0 = stats();
	unsigned char *p[FULL_BLOCKS];
	size_t n = 24 * MiB;
	unsigned in_pool = 0, outside = 0;
	for (unsigned i = 0; i < FULL_BLOCKS; i++) {
		p[i] = zk_malloc(n);
		if (p[i] == NULL)
			return 5;
		if (zk_owns(p[i]))
			in_pool++;
		else
			outside++;
		tu_fill(p[i], n, 50 + i);
	}
	if (in_pool == 0 || outside == 0)
		return 6;
	/* The first block (in the pool) grows past what the region holds. */
	unsigned char *q = zk_realloc(p[0], 48 * MiB);
	if (q == NULL || zk_owns(q) || tu_check(q, n, 50) != SIZE_MAX)
		return 7;
	p[0] = q;
	for (unsigned i = 1; i < FULL_BLOCKS; i++)
		if (tu_check(p[i], n, 50 + i) != SIZE_MAX)
			return 8;
	zk_stats_t s1 = stats();
	fprintf(stderr,
		"region full: %u blocks in the pool, %u outside; "
		"overflow %llu -> %llu (%llu -> %llu bytes)\n",
		in_pool, outside, (unsigned long long)s0.overflow_count,
		(unsigned long long)s1.overflow_count,
		(unsigned long long)s0.overflow_bytes,
		(unsigned long long)s1.overflow_bytes);
	/* Counted per request the pool refused (an overflow extent jemalloc
	 * keeps and splits, as the 100 MiB one, serves more blocks). */
	if (s1.overflow_count <= s0.overflow_count ||
	    s1.overflow_bytes - s0.overflow_bytes < n)
		return 9;
	for (unsigned i = 0; i < FULL_BLOCKS; i++)
		zk_free(p[i]);
	zk_end_phase();
	if (arg == NULL)
		return 0;
	/* Freed: the pool serves the next phase again, from its start. */
	zk_stats_t s2 = stats();
	if (zk_begin_phase() != 0)
		return 10;
	void *r = zk_malloc(n);
	zk_stats_t s3 = stats();
	fprintf(stderr,
		"next phase: 24 MiB block %p, in the pool: %d; overflow "
		"%llu -> %llu\n",
		r, zk_owns(r), (unsigned long long)s2.overflow_count,
		(unsigned long long)s3.overflow_count);
	if (r == NULL || !zk_owns(r))
		return 11;
	zk_free(r);
	zk_end_phase();
	return 0;
}

static const char *const region_64m[] = {"ZK_ALLOC_REGION_GB=0.0625", NULL};

START_TEST(region_full_overflows)
{
	expect_child(region_full, region_64m);
	ck_assert_uint_eq(su_count(err, "the phase region is full"), 1);
	ck_assert_uint_eq(su_count(err, "zkalloc: warning"), 1);
}
END_TEST

/* Overflow is for as long as the pool cannot serve: once the blocks are
 * freed, the next phase's blocks come from the pool again (not from the
 * overflow mappings jemalloc would keep in zkalloc's arena). */
START_TEST(pool_serves_again_after_overflow)
{
	int rc =
	    tu_run_child(region_full, (void *)1, region_64m, err, sizeof(err));
	ck_assert_msg(rc == 0, "child returned %d; stderr:\n%s", rc,
		      su_tail(err));
}
END_TEST

/* ---------------------------------------------------- refused commit */

static int refuse(size_t size)
{
	(void)size;
	return ENOMEM;
}

/* The region's first 64 MiB step is committed by the first blocks; then
 * the kernel refuses every commit: blocks that need fresh pages beyond it
 * overflow, those that fit in freed pool pages still come from the pool;
 * allowed again, the pool grows as before. */
static int commit_refused(void *arg)
{
	(void)arg;
	if (zk_begin_phase() != 0)
		return 2;
	unsigned char *a = zk_malloc(8 * MiB), *b = zk_malloc(8 * MiB);
	unsigned char *g = zk_malloc(8 * MiB); /* b's range is not the top */
	if (a == NULL || b == NULL || g == NULL || !zk_owns(a) ||
	    !zk_owns(b) || !zk_owns(g))
		return 3;
	tu_fill(a, 8 * MiB, 1);
	zk_free(b); /* a free range to reuse below */
	zk_stats_t s0 = stats();
	zk_os_commit_fault = refuse;
	unsigned char *p[6];
	unsigned outside = 0;
	for (int i = 0; i < 6; i++) {
		p[i] = zk_malloc(16 * MiB);
		if (p[i] == NULL)
			return 4;
		outside += !zk_owns(p[i]);
		tu_fill(p[i], 16 * MiB, 10 + (uint64_t)i);
	}
	unsigned char *reused = zk_malloc(8 * MiB);
	if (reused == NULL || !zk_owns(reused))
		return 5; /* committed pool pages still serve */
	memset(reused, 3, 8 * MiB);
	zk_stats_t s1 = stats();
	if (outside == 0 || s1.commit_failures == s0.commit_failures ||
	    s1.overflow_count < s0.overflow_count + outside)
		return 6;
	for (int i = 0; i < 6; i++)
		if (tu_check(p[i], 16 * MiB, 10 + (uint64_t)i) != SIZE_MAX)
			return 7;
	if (tu_check(a, 8 * MiB, 1) != SIZE_MAX)
		return 8;
	zk_os_commit_fault = NULL;
	unsigned char *c = zk_malloc(96 * MiB);
	if (c == NULL || !zk_owns(c))
		return 9;
	su_touch(c, 96 * MiB, 4);
	for (int i = 0; i < 6; i++)
		zk_free(p[i]);
	zk_free(a);
	zk_free(c);
	zk_free(g);
	zk_free(reused);
	zk_end_phase();
	return 0;
}

START_TEST(commit_refused_overflows)
{
	expect_child(commit_refused, NULL);
	ck_assert_uint_eq(su_count(err, "refused to commit"), 1);
	ck_assert_uint_eq(su_count(err, "zkalloc: warning"), 1);
}
END_TEST

/* ------------------------------------------------------- thread exit */

typedef struct handoff {
	unsigned char *p[8];
	size_t n[8];
} handoff_t;

static void *alloc_and_exit(void *arg)
{
	handoff_t *h = arg;
	for (int i = 0; i < 8; i++) {
		h->n[i] = (size_t)(i + 1) * 256 * 1024;
		h->p[i] = zk_malloc(h->n[i]);
		if (h->p[i] != NULL)
			tu_fill(h->p[i], h->n[i], 500 + (uint64_t)i);
	}
	return NULL;
}

static void *fill_other(void *arg)
{
	(void)arg;
	unsigned char *p[16];
	for (int i = 0; i < 16; i++) {
		p[i] = zk_malloc(2 * MiB);
		if (p[i] != NULL)
			memset(p[i], 0xEE, 2 * MiB);
	}
	for (int i = 0; i < 16; i++)
		zk_free(p[i]);
	return NULL;
}

/* A thread exits holding pool blocks; more threads than arenas then take
 * arenas (the exited thread's among them), allocate, write and free.
 * The exited thread's blocks stay intact and usable by others, inside the
 * phase, in the next one and between phases, and freeing them gives their
 * pages back to the pool. */
START_TEST(exited_thread_memory_stays_valid)
{
	ck_assert_int_eq(zk_begin_phase(), 0);
	zk_stats_t s0 = tu_stats();
	handoff_t h;
	pthread_t th;
	pthread_create(&th, NULL, alloc_and_exit, &h);
	pthread_join(th, NULL);
	for (int i = 0; i < 8; i++) {
		ck_assert_ptr_nonnull(h.p[i]);
		ck_assert(zk_owns(h.p[i]));
	}
	zk_stats_t s = tu_stats();
	for (unsigned i = 0; i < s.nslabs + 2; i++) {
		pthread_create(&th, NULL, fill_other, NULL);
		pthread_join(th, NULL);
	}
	for (int i = 0; i < 8; i++)
		ck_assert_uint_eq(tu_check(h.p[i], h.n[i], 500 + (uint64_t)i),
				  SIZE_MAX);
	h.p[0] = zk_realloc(h.p[0], 4 * MiB);
	ck_assert_ptr_nonnull(h.p[0]);
	ck_assert_uint_eq(tu_check(h.p[0], h.n[0], 500), SIZE_MAX);
	zk_free(h.p[1]);
	zk_end_phase();
	/* Kept into the next phase: counted, intact, freed there. */
	ck_assert_int_eq(zk_begin_phase(), 0);
	s = tu_stats();
	ck_assert_uint_ge(s.kept_bytes - s0.kept_bytes, 6 * 256 * 1024);
	for (int i = 2; i < 5; i++) {
		ck_assert_uint_eq(tu_check(h.p[i], h.n[i], 500 + (uint64_t)i),
				  SIZE_MAX);
		zk_free(h.p[i]);
	}
	zk_end_phase();
	/* And between phases. */
	for (int i = 5; i < 8; i++) {
		ck_assert_uint_eq(tu_check(h.p[i], h.n[i], 500 + (uint64_t)i),
				  SIZE_MAX);
		zk_free(h.p[i]);
	}
	zk_free(h.p[0]);
	/* Pool data (arena metadata created meanwhile is mapped apart). */
	s = tu_stats();
	ck_assert_uint_le(s.live_bytes, s0.live_bytes + 2 * MiB);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("stress_faults");
	TCase *tc = tcase_create("faults");
	tcase_set_timeout(tc, 0);
	tcase_add_test(tc, region_reservation_refused);
	tcase_add_test(tc, region_shrinks_under_rlimit_as);
	tcase_add_test(tc, region_full_overflows);
	tcase_add_test(tc, pool_serves_again_after_overflow);
	tcase_add_test(tc, commit_refused_overflows);
	suite_add_tcase(s, tc);
	/* Its own case (meson: faults-arena-limit): a jemalloc built with
	 * --enable-debug crashes in its own assertion when arenas.create
	 * reaches the arena limit (ctl.c:1013, arenas_i_impl with index 4095:
	 * nothing of zkalloc's is called yet), so under one this case is
	 * reported as skipped, never as a pass. */
	TCase *ta = tcase_create("arena_limit");
	tcase_set_timeout(ta, 0);
	tcase_add_test(ta, arena_creation_refused);
	suite_add_tcase(s, ta);
	const char *only = getenv("CK_RUN_CASE");
	bool debug = false;
	size_t len = sizeof(debug);
	if (only != NULL && strcmp(only, "arena_limit") == 0 &&
	    je_mallctl("config.debug", &debug, &len, NULL, 0) == 0 && debug) {
		printf("faults-arena-limit: NOT RUN: jemalloc is a debug build, "
		       "which crashes at its own arena limit\n");
		return 77; /* meson: skipped */
	}
	/* No fork: the one fault case ThreadSanitizer can judge (meson:
	 * faults-thread-exit, suite 'threads'). */
	TCase *te = tcase_create("thread_exit");
	tcase_set_timeout(te, 0);
	tcase_add_test(te, exited_thread_memory_stays_valid);
	suite_add_tcase(s, te);
	return tu_run_suite(s);
}
