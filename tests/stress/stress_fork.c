/*
 * fork() at every point where another thread may be half-way through
 * zkalloc's state, forced deterministically (issue 13 items 3, 4, 5): this
 * program defines mallctl, madvise and mmap itself (the core, linked in
 * statically, calls them; they pass through to jemalloc and the kernel)
 * and uses zk_pool_locked_hook (src/pool.h), so a test can stop a thread
 * inside the call and fork from another thread, or fork from inside it.
 * The forked child must go on with phases and allocations: no hang (each
 * grandchild has an alarm; every wait below has a timeout), data intact,
 * and pool memory where the pool can serve.
 *  - fork_inside_phase, fork_outside_phase: forks while a worker churns
 *    pool memory.
 *  - fork_during_arena_creation (item 3): another thread is inside
 *    arenas.create; 0.1's child spun forever on that arena.
 *  - fork_during_decay, fork_from_inside_decay (item 4): zk_begin_phase
 *    is giving pages back (madvise) in another thread, or in the forking
 *    thread itself; 0.1's child hung on a lock held by no thread.
 *  - fork_during_first_reservation, fork_before_first_reservation (item
 *    5): another thread is inside the first zk_begin_phase's reservation
 *    (mmap), or still in zkalloc's initialisation; 0.1's child never got
 *    pool memory.
 *  - fork_with_pool_lock_held: another thread holds the pool lock; the
 *    child's pool is degraded (zk.stats.pool_degraded) and stays correct.
 * Not in suite 'threads': ThreadSanitizer cannot judge a fork of a
 * multi-threaded process.
 */
#define _GNU_SOURCE
#include "pool.h" /* src/pool.h: zk_pool_locked_hook */
#include "stress_util.h"

#include <zkalloc.h>

#include <check.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char err[1 << 16];

/* ------------------------------------------------------ interposition */

enum { ARM_NONE = 0, ARM_CREATE, ARM_INIT, ARM_MADVISE, ARM_MMAP };

/* Which call stops (once) and what it does there: wait for the main
 * thread's fork (another thread forks), or fork itself. */
static _Atomic int armed, self_fork;
static _Atomic int inside, forked;
static pid_t grandchild = -1; /* self_fork: the child forked in the call */

typedef int (*mallctl_fn)(const char *, void *, size_t *, void *, size_t);
static mallctl_fn real_mallctl;

__attribute__((constructor)) static void find_real(void)
{
	real_mallctl = (mallctl_fn)dlsym(RTLD_NEXT, "mallctl");
}

static void sleep_ms(unsigned ms)
{
	struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000};
	nanosleep(&t, NULL);
}

/* Wait for flag, at most ms milliseconds. Returns whether it was set. */
static bool wait_flag(_Atomic int *flag, unsigned ms)
{
	for (unsigned i = 0; i < ms; i++) {
		if (atomic_load(flag))
			return true;
		sleep_ms(1);
	}
	return atomic_load(flag) != 0;
}

/* Inside a stopped call: tell main, then wait for its fork (timeout:
 * when the core serialises fork against this point, the fork waits for
 * us and the flag never comes while we wait), or fork here. */
static void stop_here(void)
{
	if (atomic_load(&self_fork)) {
		fflush(NULL);
		pid_t pid = fork();
		if (pid == 0) {
			alarm(30);
			return; /* the child goes on with the call */
		}
		grandchild = pid;
		return;
	}
	atomic_store(&inside, 1);
	wait_flag(&forked, 1500);
}

static bool stop_once(int what)
{
	int want = what;
	return atomic_compare_exchange_strong(&armed, &want, ARM_NONE);
}

int mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp,
	    size_t newlen)
{
	if (name != NULL &&
	    ((strcmp(name, "arenas.create") == 0 && stop_once(ARM_CREATE)) ||
	     (strcmp(name, "opt.narenas") == 0 && stop_once(ARM_INIT))))
		stop_here();
	return real_mallctl(name, oldp, oldlenp, newp, newlen);
}

int madvise(void *addr, size_t len, int advice)
{
	if (advice == MADV_DONTNEED && zk_owns(addr) && stop_once(ARM_MADVISE))
		stop_here();
	return (int)syscall(SYS_madvise, addr, len, advice);
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	if (prot == PROT_NONE && (flags & MAP_NORESERVE) && len >= 64 * MiB &&
	    stop_once(ARM_MMAP))
		stop_here();
	return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}

/* ------------------------------------------------------------- helpers */

#define ZN (12 * MiB)

/* What every child checks after the fork: phases begin and end, blocks
 * of every kind come from the pool, calloc'd memory is zero, the data of
 * kept blocks (kept, tag; may be NULL) stays intact. Returns 0 or a code
 * from base up. */
static int child_works(unsigned char *kept, size_t kept_n, uint64_t tag,
		       int base)
{
	if (kept != NULL && tu_check(kept, kept_n, tag) != SIZE_MAX)
		return base + 1;
	zk_end_phase(); /* whatever phase the parent had */
	for (unsigned ph = 0; ph < 3; ph++) {
		if (zk_begin_phase() != 0)
			return base + 2;
		unsigned char *p = zk_malloc(4 * MiB);
		unsigned char *z = zk_calloc(1, ZN);
		void *s[64];
		if (p == NULL || z == NULL)
			return base + 3;
		if (!zk_owns(p) || !zk_owns(z))
			return base + 4;
		for (size_t i = 0; i < ZN; i += 4096)
			if (z[i] != 0 || z[i + 4095] != 0)
				return base + 5;
		tu_fill(p, 4 * MiB, ph);
		tu_fill(z, ZN, ph + 100);
		for (int i = 0; i < 64; i++) {
			s[i] = zk_malloc(16 + (size_t)i * 100);
			if (s[i] == NULL)
				return base + 6;
			tu_fill(s[i], 16 + (size_t)i * 100, (uint64_t)i);
		}
		if (tu_check(p, 4 * MiB, ph) != SIZE_MAX ||
		    tu_check(z, ZN, ph + 100) != SIZE_MAX)
			return base + 7;
		for (int i = 0; i < 64; i++) {
			if (tu_check(s[i], 16 + (size_t)i * 100, (uint64_t)i) !=
			    SIZE_MAX)
				return base + 8;
			zk_free(s[i]);
		}
		zk_free(p);
		zk_free(z);
		zk_end_phase();
	}
	if (kept != NULL && tu_check(kept, kept_n, tag) != SIZE_MAX)
		return base + 9;
	return 0;
}

/* Wait for a child forked by this process; its status as tu_run_child
 * reports it. */
static int reap(pid_t pid)
{
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Main (of the test's child) forks once the stopped thread is inside:
 * the grandchild runs fn. Returns the grandchild's status, or 90 if the
 * thread never got there. */
static int fork_when_inside(int (*fn)(void *), void *arg)
{
	if (!wait_flag(&inside, 10000))
		return 90;
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		alarm(30);
		_exit(fn(arg));
	}
	atomic_store(&forked, 1);
	return pid < 0 ? 91 : reap(pid);
}

static void expect_child(int (*fn)(void *), const char *const *env)
{
	int rc = tu_run_child(fn, NULL, env, err, sizeof(err));
	ck_assert_msg(rc == 0, "child returned %d; stderr:\n%s", rc,
		      su_tail(err));
	ck_assert_ptr_null(strstr(err, "zkalloc: warning"));
}

/* -------------------------------------------- forks while a worker runs */

static _Atomic int stop;
static _Atomic uint64_t worker_bad;

/* Keeps allocating, checking and freeing pool memory while main forks. */
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

typedef struct kept {
	unsigned char *p;
	size_t n;
	bool in_phase;
} kept_t;

static int after_busy_fork(void *arg)
{
	kept_t *k = arg;
	if (k->in_phase) {
		/* Still in the parent's phase: pool memory, one phase. */
		void *p = zk_malloc(2 * MiB);
		if (p == NULL || !zk_owns(p))
			return 41;
		memset(p, 3, 2 * MiB);
		zk_free(p);
		if (zk_begin_phase() != EBUSY)
			return 42;
	}
	return child_works(k->p, k->n, 99, 50);
}

static int fork_scenario(void *arg)
{
	bool in_phase = arg != NULL;
	unsigned forks = su_scale(20, 8);
	pthread_t th;
	if (zk_begin_phase() != 0) /* the region exists in both cases */
		return 2;
	if (!in_phase)
		zk_end_phase();
	kept_t k = {zk_malloc(3 * MiB), 3 * MiB, in_phase};
	if (k.p == NULL || zk_owns(k.p) != in_phase)
		return 3;
	tu_fill(k.p, k.n, 99);
	pthread_create(&th, NULL, busy_worker, (void *)(uintptr_t)5);
	for (unsigned i = 0; i < forks; i++) {
		int rc = su_fork_wait(after_busy_fork, &k, 30);
		if (rc != 0)
			return rc;
		if (tu_check(k.p, k.n, 99) != SIZE_MAX)
			return 7; /* the parent's data changed */
	}
	atomic_store(&stop, 1);
	pthread_join(th, NULL);
	if (worker_bad != 0)
		return 8;
	zk_end_phase();
	/* The parent goes on with phases as before. */
	int rc = child_works(k.p, k.n, 99, 60);
	zk_free(k.p);
	return rc;
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

/* ------------------------------------------- item 3: arena creation */

static void *alloc_8m(void *arg)
{
	unsigned char *p = zk_malloc(8 * MiB);
	if (p != NULL)
		tu_fill(p, 8 * MiB, 8);
	*(unsigned char **)arg = p;
	return NULL;
}

/* In the grandchild: the only arena (ZK_ALLOC_ARENAS=1) was half made by
 * a thread that does not exist here. It must be made again on demand. */
static int after_create_fork(void *arg)
{
	(void)arg;
	unsigned char *p = zk_malloc(8 * MiB); /* the phase is active */
	if (p == NULL)
		return 20;
	if (!zk_owns(p))
		return 21; /* 0.1: spun forever before this */
	tu_fill(p, 8 * MiB, 3);
	zk_stats_t s = tu_stats();
	if (s.arenas_created != 1)
		return 22;
	if (tu_check(p, 8 * MiB, 3) != SIZE_MAX)
		return 23;
	zk_free(p);
	return child_works(NULL, 0, 0, 30);
}

static int create_window(void *arg)
{
	(void)arg;
	if (zk_begin_phase() != 0)
		return 2;
	atomic_store(&armed, ARM_CREATE);
	unsigned char *q = NULL;
	pthread_t th;
	pthread_create(&th, NULL, alloc_8m, &q);
	int rc = fork_when_inside(after_create_fork, NULL);
	pthread_join(th, NULL);
	if (rc != 0)
		return rc;
	if (q == NULL || !zk_owns(q) || tu_check(q, 8 * MiB, 8) != SIZE_MAX)
		return 3;
	zk_free(q);
	zk_end_phase();
	return 0;
}

START_TEST(fork_during_arena_creation)
{
	const char *const env[] = {"ZK_ALLOC_ARENAS=1", NULL};
	expect_child(create_window, env);
}
END_TEST

/* ---------------------------------------------------- item 4: decay */

static unsigned char *kept_blk;
#define KEPT_N (2 * MiB)

/* ZK_ALLOC_TRIM_PHASES=1: a 64 MiB block used in phase 1 and freed, idle
 * in phase 2, is given back at the begin of phase 3. A 2 MiB block made
 * in phase 1 is kept throughout. */
static int decay_setup(void)
{
	if (zk_begin_phase() != 0)
		return 2;
	kept_blk = zk_malloc(KEPT_N);
	unsigned char *x = zk_malloc(64 * MiB);
	if (kept_blk == NULL || x == NULL || !zk_owns(x))
		return 3;
	tu_fill(kept_blk, KEPT_N, 77);
	su_touch(x, 64 * MiB, 1);
	zk_free(x);
	zk_end_phase();
	if (zk_begin_phase() != 0)
		return 4;
	zk_end_phase();
	return 0;
}

static int after_decay_fork(void *arg)
{
	(void)arg;
	/* The begin was half done in a thread that is gone: no phase is
	 * active, and the next begin must neither hang nor say EBUSY. */
	if (zk_phase_active())
		return 20;
	/* The ranges the decay had taken out of the free lists are back
	 * (free again, not lost), and read as zero when calloc'd. */
	if (zk_begin_phase() != 0)
		return 21;
	zk_stats_t s = tu_stats();
	if (s.free_bytes < 60 * MiB)
		return 22;
	unsigned char *x = zk_calloc(1, 60 * MiB);
	if (x == NULL || !zk_owns(x))
		return 23;
	for (size_t i = 0; i < 60 * MiB; i += 4096)
		if (x[i] != 0)
			return 24;
	zk_free(x);
	zk_end_phase();
	return child_works(kept_blk, KEPT_N, 77, 30);
}

static void *begin_thread(void *arg)
{
	(void)arg;
	return (void *)(intptr_t)zk_begin_phase();
}

static int decay_window(void *arg)
{
	(void)arg;
	int rc = decay_setup();
	if (rc != 0)
		return rc;
	atomic_store(&armed, ARM_MADVISE);
	pthread_t th;
	pthread_create(&th, NULL, begin_thread, NULL);
	rc = fork_when_inside(after_decay_fork, NULL);
	void *res;
	pthread_join(th, &res);
	if (rc != 0)
		return rc;
	if (res != NULL || !zk_phase_active())
		return 5;
	zk_stats_t s = tu_stats();
	if (s.trims == 0)
		return 6;
	zk_end_phase();
	return child_works(kept_blk, KEPT_N, 77, 60);
}

START_TEST(fork_during_decay)
{
	const char *const env[] = {"ZK_ALLOC_TRIM_PHASES=1", NULL};
	expect_child(decay_window, env);
}
END_TEST

/* The thread that gives pages back forks from inside madvise: in the
 * child it is that thread that goes on, finishes the begin, and then
 * runs the checks. */
static int self_decay_window(void *arg)
{
	(void)arg;
	int rc = decay_setup();
	if (rc != 0)
		return rc;
	pid_t me = getpid();
	atomic_store(&self_fork, 1);
	atomic_store(&armed, ARM_MADVISE);
	rc = zk_begin_phase();
	if (getpid() != me) {
		/* The grandchild, back from its own begin. */
		if (rc != 0 || !zk_phase_active())
			_exit(20);
		_exit(child_works(kept_blk, KEPT_N, 77, 30));
	}
	if (rc != 0 || grandchild < 0)
		return 5;
	rc = reap(grandchild);
	if (rc != 0)
		return rc;
	zk_end_phase();
	return child_works(kept_blk, KEPT_N, 77, 60);
}

START_TEST(fork_from_inside_decay)
{
	const char *const env[] = {"ZK_ALLOC_TRIM_PHASES=1", NULL};
	expect_child(self_decay_window, env);
}
END_TEST

/* ------------------------------------- item 5: the first reservation */

static int after_first_begin_fork(void *arg)
{
	(void)arg;
	/* Whether the fork came before, during or after the other thread's
	 * first begin, this process must get pool memory: from the
	 * reservation it inherited, or from its own first begin. */
	int rc = zk_begin_phase();
	if (rc != 0 && rc != EBUSY)
		return 20;
	unsigned char *p = zk_malloc(8 * MiB);
	if (p == NULL || !zk_owns(p))
		return 21; /* 0.1: every large block was overflow */
	tu_fill(p, 8 * MiB, 5);
	if (tu_check(p, 8 * MiB, 5) != SIZE_MAX)
		return 22;
	zk_free(p);
	zk_stats_t s = tu_stats();
	if (!s.region_reserved)
		return 23;
	return child_works(NULL, 0, 0, 30);
}

static int first_begin_window(void *arg)
{
	atomic_store(&armed, (int)(intptr_t)arg);
	pthread_t th;
	pthread_create(&th, NULL, begin_thread, NULL);
	int rc = fork_when_inside(after_first_begin_fork, NULL);
	void *res;
	pthread_join(th, &res);
	if (rc != 0)
		return rc;
	if (res != NULL)
		return 5;
	unsigned char *p = zk_malloc(8 * MiB);
	if (p == NULL || !zk_owns(p))
		return 6;
	zk_free(p);
	zk_end_phase();
	return 0;
}

/* Another thread is inside the region's mmap (under the phase lock). */
START_TEST(fork_during_first_reservation)
{
	int rc = tu_run_child(first_begin_window, (void *)(intptr_t)ARM_MMAP,
			      NULL, err, sizeof(err));
	ck_assert_msg(rc == 0, "child returned %d; stderr:\n%s", rc,
		      su_tail(err));
	ck_assert_ptr_null(strstr(err, "zkalloc: warning"));
}
END_TEST

/* Another thread is still reading the options (zk_init, inside its
 * pthread_once): the child has no region and must reserve its own. */
START_TEST(fork_before_first_reservation)
{
	int rc = tu_run_child(first_begin_window, (void *)(intptr_t)ARM_INIT,
			      NULL, err, sizeof(err));
	ck_assert_msg(rc == 0, "child returned %d; stderr:\n%s", rc,
		      su_tail(err));
	ck_assert_ptr_null(strstr(err, "zkalloc: warning"));
}
END_TEST

/* ---------------------------------------------- the pool lock held */

static __thread bool pause_in_pool;

static void pool_locked(void)
{
	if (pause_in_pool) {
		pause_in_pool = false;
		atomic_store(&inside, 1);
		wait_flag(&forked, 3000);
	}
}

static void *alloc_paused(void *arg)
{
	pause_in_pool = true; /* on the alloc path: no jemalloc lock held */
	unsigned char *p = zk_malloc(4 * MiB);
	pause_in_pool = false;
	if (p != NULL)
		tu_fill(p, 4 * MiB, 4);
	*(unsigned char **)arg = p;
	return NULL;
}

static int after_lock_fork(void *arg)
{
	(void)arg;
	zk_stats_t s = tu_stats();
	if (!s.pool_degraded)
		return 20;
	/* Degraded: fresh pages only, frees left to jemalloc; correct
	 * still, over several phases, and it does not hang. */
	int rc = child_works(kept_blk, KEPT_N, 77, 30);
	if (rc != 0)
		return rc;
	s = tu_stats();
	return s.pool_degraded ? 0 : 21;
}

static int lock_window(void *arg)
{
	(void)arg;
	if (zk_begin_phase() != 0)
		return 2;
	kept_blk = zk_malloc(KEPT_N);
	if (kept_blk == NULL)
		return 3;
	tu_fill(kept_blk, KEPT_N, 77);
	zk_pool_locked_hook = pool_locked;
	unsigned char *q = NULL;
	pthread_t th;
	pthread_create(&th, NULL, alloc_paused, &q);
	int rc = fork_when_inside(after_lock_fork, NULL);
	pthread_join(th, NULL);
	zk_pool_locked_hook = NULL;
	if (rc != 0)
		return rc;
	if (q == NULL || !zk_owns(q) || tu_check(q, 4 * MiB, 4) != SIZE_MAX)
		return 4;
	zk_free(q);
	zk_stats_t s = tu_stats();
	if (s.pool_degraded)
		return 5; /* the parent's pool is whole */
	zk_end_phase();
	return child_works(kept_blk, KEPT_N, 77, 60);
}

START_TEST(fork_with_pool_lock_held)
{
	/* One arena, made by main before the pause: the paused thread holds
	 * no jemalloc lock (arenas.create would hold ctl's). */
	const char *const env[] = {"ZK_ALLOC_ARENAS=1", NULL};
	expect_child(lock_window, env);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("stress_fork");
	TCase *tc = tcase_create("fork");
	/* A hang fails the test instead of stalling the run. */
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, fork_inside_phase);
	tcase_add_test(tc, fork_outside_phase);
	tcase_add_test(tc, fork_during_arena_creation);
	tcase_add_test(tc, fork_during_decay);
	tcase_add_test(tc, fork_from_inside_decay);
	tcase_add_test(tc, fork_during_first_reservation);
	tcase_add_test(tc, fork_before_first_reservation);
	tcase_add_test(tc, fork_with_pool_lock_held);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
