/*
 * Faults: the phase region cannot be reserved (RLIMIT_AS), no phase arena
 * can be created (jemalloc's arena limit exhausted), a slab runs out in the
 * middle of a realloc, fork() inside and outside a phase, and a thread that
 * exits while another thread still uses its phase memory. In every case
 * every allocation must succeed, data must stay intact, overflow must be
 * counted, and at most one warning per fault kind may be printed.
 * Each scenario runs in a forked child (tu_run_child) so its environment and
 * its fault stay its own; a child returns a distinct code per failed check.
 */
#define JEMALLOC_NO_DEMANGLE
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
#include <sys/wait.h>
#include <unistd.h>

#define MiB ((size_t)1 << 20)

static char err[1 << 16];

static zk_stats_t stats(void)
{
	zk_stats_t s = {.size = sizeof(s)};
	zk_stats_get(&s);
	return s;
}

/* n large blocks per phase over phases phases: all must succeed as plain
 * jemalloc memory, intact, and be counted. Returns 0 or a failure code. */
static int all_overflow(unsigned phases, unsigned n)
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
		if (p[0] == NULL || tu_check(p[0], MiB, ph * 100) != SIZE_MAX)
			return 13;
		for (unsigned i = 1; i < n; i++)
			if (tu_check(p[i], MiB + i * 4096, ph * 100 + i) !=
			    SIZE_MAX)
				return 14;
		for (unsigned i = 0; i < n; i++)
			zk_free(p[i]);
		zk_end_phase();
	}
	zk_stats_t s = stats();
	/* n mallocs + 1 realloc that grew into a new large size per phase. */
	if (s.overflow_count < (uint64_t)phases * n)
		return 15;
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

/* 160 MiB left: half of it cannot hold one 64 MiB slab per region. */
static int region_refused(void *arg)
{
	(void)arg;
	int rc = limit_as(160 * MiB);
	if (rc != 0)
		return rc;
	rc = all_overflow(3, 20);
	if (rc != 0)
		return rc;
	zk_stats_t s = stats();
	return s.region_reserved ? 4 : 0;
}

/* 1 GiB left: the region shrinks to fit half of it (slabs of 64 MiB)
 * instead of starving the process; phase memory works, and an ordinary
 * allocation of a third of the limit still succeeds after the phase. */
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
	zk_free(big);
	zk_stats_t s = stats();
	if (!s.region_reserved || s.reserved_bytes > 512 * MiB ||
	    s.overflow_count != 0)
		return 24;
	return 0;
}

START_TEST(region_shrinks_under_rlimit_as)
{
	int rc = tu_run_child(region_shrunk, NULL, NULL, err, sizeof(err));
	ck_assert_msg(rc == 0, "child returned %d; stderr:\n%s", rc,
		      su_tail(err));
	ck_assert_uint_eq(su_count(err, "RLIMIT_AS: the regions are reserved"),
			  1);
	ck_assert_uint_eq(su_count(err, "zkalloc: warning"), 0);
}
END_TEST

START_TEST(region_reservation_refused)
{
	int rc = tu_run_child(region_refused, NULL, NULL, err, sizeof(err));
	ck_assert_msg(rc == 0, "child returned %d; stderr:\n%s", rc,
		      su_tail(err));
	ck_assert_uint_eq(su_count(err, "cannot reserve the phase region"), 1);
	ck_assert_uint_eq(su_count(err, "zkalloc: warning"), 1);
}
END_TEST

/* Large blocks in the phase main began: all plain jemalloc, intact. */
static void *overflow_thread(void *arg)
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

static unsigned arenas_made;

static int arena_limit(void *arg)
{
	(void)arg;
	/* Exhaust jemalloc's arena indices (MALLOCX_ARENA_LIMIT, 4095 in
	 * 5.3) before zkalloc makes its first phase arena. */
	unsigned ind;
	size_t len = sizeof(ind);
	while (je_mallctl("arenas.create", &ind, &len, NULL, 0) == 0)
		arenas_made++;
	if (arenas_made == 0)
		return 2;
	int rc = all_overflow(3, 20);
	if (rc != 0)
		return rc;
	/* Two more threads in another phase, concurrently. */
	if (zk_begin_phase() != 0)
		return 5;
	pthread_t th[2];
	void *res[2];
	for (uintptr_t i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, overflow_thread,
			       (void *)(i * 1000));
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], &res[i]);
		if (res[i] != NULL)
			return 7;
	}
	zk_end_phase();
	zk_stats_t s = stats();
	if (s.arenas_created != 0)
		return 6;
	printf("arena limit: %u arenas made before the first phase\n",
	       arenas_made);
	return 0;
}

START_TEST(arena_creation_fails)
{
	int rc = tu_run_child(arena_limit, NULL, NULL, err, sizeof(err));
	ck_assert_msg(rc == 0, "child returned %d; stderr:\n%s", rc,
		      su_tail(err));
	ck_assert_uint_eq(su_count(err, "cannot create a phase arena"), 1);
	ck_assert_uint_eq(su_count(err, "zkalloc: warning"), 1);
}
END_TEST

static int realloc_exhaustion(void *arg)
{
	(void)arg;
	if (zk_begin_phase() != 0)
		return 2;
	size_t n = MiB;
	unsigned char *p = zk_malloc(n);
	if (p == NULL || !zk_owns(p))
		return 3;
	tu_fill(p, n, 7);
	int moved = 0;
	/* Grow by doubling well past the 32 MiB slab. */
	while (n < 128 * MiB) {
		size_t m = n * 2;
		unsigned char *q = zk_realloc(p, m);
		if (q == NULL)
			return 4;
		if (tu_check(q, n, 7) != SIZE_MAX)
			return 5; /* data lost in the move */
		if (!zk_owns(q))
			moved = 1;
		else if (moved)
			return 6; /* ordinary memory must not go back */
		tu_fill(q, m, 7);
		p = q;
		n = m;
	}
	if (!moved)
		return 7;
	/* The slab is full now: a new large block is served plainly too. */
	zk_stats_t before = stats();
	void *r = zk_malloc(40 * MiB);
	if (r == NULL)
		return 8;
	memset(r, 1, 40 * MiB);
	zk_stats_t after = stats();
	if (after.overflow_count <= before.overflow_count ||
	    before.overflow_count == 0)
		return 9;
	zk_free(r);
	zk_free(p);
	zk_end_phase();
	/* The next phase has the whole slab again. */
	if (zk_begin_phase() != 0)
		return 10;
	p = zk_malloc(8 * MiB);
	if (p == NULL || !zk_owns(p))
		return 11;
	zk_free(p);
	zk_end_phase();
	return 0;
}

START_TEST(slab_exhausted_in_realloc)
{
	const char *env[] = {"ZK_ALLOC_SLAB_GB=0.03", NULL};
	int rc = tu_run_child(realloc_exhaustion, NULL, env, err, sizeof(err));
	ck_assert_msg(rc == 0, "child returned %d; stderr:\n%s", rc,
		      su_tail(err));
	ck_assert_uint_eq(su_count(err, "a phase slab is full"), 1);
	ck_assert_uint_eq(su_count(err, "zkalloc: warning"), 1);
}
END_TEST

/* ------------------------------------------------------------- fork */

static _Atomic int stop;
static _Atomic uint64_t worker_bad;

/* Keeps allocating, checking and freeing phase memory while main forks. */
static void *busy_worker(void *arg)
{
	uint64_t r = (uint64_t)(uintptr_t)arg;
	while (!atomic_load(&stop)) {
		size_t n = 64 * 1024 + su_next(&r) % MiB;
		void *p = zk_malloc(n);
		if (p == NULL) {
			atomic_fetch_add(&worker_bad, 1);
			continue;
		}
		tu_fill(p, n, r);
		if (tu_check(p, n, r) != SIZE_MAX)
			atomic_fetch_add(&worker_bad, 1);
		zk_free(p);
	}
	return NULL;
}

/* In the child: the parent's phase block is readable, and phases work. */
static int child_phases(unsigned char *parent_block, size_t n, bool in_phase)
{
	if (parent_block != NULL && tu_check(parent_block, n, 99) != SIZE_MAX)
		return 40;
	if (in_phase) {
		void *p = zk_malloc(2 * MiB);
		if (p == NULL || !zk_owns(p))
			return 41;
		memset(p, 3, 2 * MiB);
		zk_free(p);
		if (zk_begin_phase() != EBUSY)
			return 42;
		zk_end_phase();
	}
	for (int ph = 0; ph < 5; ph++) {
		if (zk_begin_phase() != 0)
			return 43;
		void *p = zk_malloc(4 * MiB);
		if (p == NULL || !zk_owns(p))
			return 44;
		tu_fill(p, 4 * MiB, (uint64_t)ph);
		if (tu_check(p, 4 * MiB, (uint64_t)ph) != SIZE_MAX)
			return 45;
		zk_end_phase();
	}
	return 0;
}

static int fork_scenario(void *arg)
{
	bool in_phase = arg != NULL;
	unsigned forks = su_scale(20, 8);
	pthread_t th;
	if (in_phase && zk_begin_phase() != 0)
		return 2;
	size_t n = 3 * MiB;
	unsigned char *blk = zk_malloc(n);
	if (blk == NULL || zk_owns(blk) != in_phase)
		return 3;
	tu_fill(blk, n, 99);
	if (in_phase)
		pthread_create(&th, NULL, busy_worker, (void *)(uintptr_t)5);
	for (unsigned i = 0; i < forks; i++) {
		pid_t pid = fork();
		if (pid < 0)
			return 4;
		if (pid == 0) {
			alarm(60);
			_exit(child_phases(blk, n, in_phase));
		}
		int st;
		if (waitpid(pid, &st, 0) != pid)
			return 5;
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 6;
		if (tu_check(blk, n, 99) != SIZE_MAX)
			return 7; /* the parent's data changed */
	}
	if (in_phase) {
		atomic_store(&stop, 1);
		pthread_join(th, NULL);
		if (worker_bad != 0)
			return 8;
		zk_end_phase();
	}
	zk_free(blk);
	/* The parent goes on with phases as before. */
	return child_phases(NULL, 0, false);
}

START_TEST(fork_inside_phase)
{
	int rc = tu_run_child(fork_scenario, (void *)1, NULL, err, sizeof(err));
	ck_assert_msg(rc == 0, "child returned %d; stderr:\n%s", rc,
		      su_tail(err));
}
END_TEST

START_TEST(fork_outside_phase)
{
	int rc = tu_run_child(fork_scenario, NULL, NULL, err, sizeof(err));
	ck_assert_msg(rc == 0, "child returned %d; stderr:\n%s", rc,
		      su_tail(err));
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
	for (int i = 0; i < 16; i++) {
		unsigned char *p = zk_malloc(2 * MiB);
		if (p != NULL)
			memset(p, 0xEE, 2 * MiB);
	}
	return NULL;
}

START_TEST(exited_thread_memory_stays_valid)
{
	ck_assert_int_eq(zk_begin_phase(), 0);
	handoff_t h;
	pthread_t th;
	pthread_create(&th, NULL, alloc_and_exit, &h);
	pthread_join(th, NULL); /* its slab is orphaned, not reused */
	for (int i = 0; i < 8; i++) {
		ck_assert_ptr_nonnull(h.p[i]);
		ck_assert(zk_owns(h.p[i]));
	}
	/* More threads than the exited one take slabs and fill them. */
	zk_stats_t s = stats();
	for (unsigned i = 0; i < s.nslabs + 2; i++) {
		pthread_create(&th, NULL, fill_other, NULL);
		pthread_join(th, NULL);
	}
	for (int i = 0; i < 8; i++) {
		ck_assert_uint_eq(tu_check(h.p[i], h.n[i], 500 + (uint64_t)i),
				  SIZE_MAX);
		/* Still usable: written, reallocated and freed by another
		 * thread. */
		memset(h.p[i], 0x11, h.n[i]);
	}
	h.p[0] = zk_realloc(h.p[0], 4 * MiB);
	ck_assert_ptr_nonnull(h.p[0]);
	for (int i = 0; i < 8; i++)
		zk_free(h.p[i]);
	zk_end_phase();
	/* The next phase gives the orphaned slab back to the pool. */
	ck_assert_int_eq(zk_begin_phase(), 0);
	ck_assert_uint_eq(stats().slabs_in_use, 0);
	zk_end_phase();
}
END_TEST

int main(void)
{
	Suite *s = suite_create("stress_faults");
	TCase *tc = tcase_create("faults");
	tcase_set_timeout(tc, 0);
	tcase_add_test(tc, region_reservation_refused);
	tcase_add_test(tc, region_shrinks_under_rlimit_as);
	tcase_add_test(tc, arena_creation_fails);
	tcase_add_test(tc, slab_exhausted_in_realloc);
	tcase_add_test(tc, fork_inside_phase);
	tcase_add_test(tc, fork_outside_phase);
	suite_add_tcase(s, tc);
	/* No fork: the one fault case ThreadSanitizer can judge (jemalloc's
	 * fork handlers re-initialise mutexes TSan saw locked). */
	TCase *te = tcase_create("thread_exit");
	tcase_set_timeout(te, 0);
	tcase_add_test(te, exited_thread_memory_stays_valid);
	suite_add_tcase(s, te);
	return tu_run_suite(s);
}
