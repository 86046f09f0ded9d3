/* phase.c and arena.c: begin/end, the scope form, blocks kept across any
 * number of begins, thread binding, page reuse across threads, the decay,
 * a refused or shrunk reservation. */
#define _GNU_SOURCE
#include "arena.h"
#include "je.h"
#include "phase.h"
#include "testutil.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <zkalloc.h>

#define MiB ((size_t)1 << 20)

static void teardown(void)
{
	zk_end_phase();
}

START_TEST(begin_end_active_epoch)
{
	ck_assert(!zk_phase_active());
	uint64_t e = zk_phase_epoch();
	ck_assert_int_eq(zk_begin_phase(), 0);
	ck_assert(zk_phase_active());
	ck_assert_uint_eq(zk_phase_epoch(), e + 1);
	ck_assert_int_eq(zk_end_phase(), 0);
	ck_assert_int_eq(zk_end_phase(), 0); /* idempotent */
	ck_assert(!zk_phase_active());
	ck_assert_uint_eq(zk_phase_epoch(), e + 1);
}
END_TEST

START_TEST(nested_begin_is_ebusy_and_changes_nothing)
{
	ck_assert_int_eq(zk_begin_phase(), 0);
	char *p = zk_malloc(4 * MiB);
	ck_assert(zk_owns(p));
	tu_fill(p, 4 * MiB, 11);
	uint64_t e = zk_phase_epoch(), gen = zk_gen();
	zk_stats_t s0 = tu_stats();
	ck_assert_int_eq(zk_begin_phase(), EBUSY);
	ck_assert(zk_phase_active());
	ck_assert_uint_eq(zk_phase_epoch(), e);
	ck_assert_uint_eq(zk_gen(), gen); /* no thread re-syncs */
	zk_stats_t s1 = tu_stats();
	ck_assert_uint_eq(s1.trims, s0.trims);
	ck_assert_uint_eq(s1.live_bytes, s0.live_bytes);
	ck_assert_uint_eq(tu_check(p, 4 * MiB, 11), SIZE_MAX);
	/* the arena still serves: a new block does not overlap the old one */
	char *q = zk_malloc(4 * MiB);
	ck_assert(zk_owns(q));
	ck_assert(q >= p + 4 * MiB || q + 4 * MiB <= p);
	zk_free(q);
	zk_free(p);
}
END_TEST

START_TEST(memory_stays_valid_after_end)
{
	ck_assert_int_eq(zk_begin_phase(), 0);
	char *p = zk_malloc(2 * MiB);
	tu_fill(p, 2 * MiB, 3);
	zk_end_phase();
	ck_assert(zk_owns(p));
	ck_assert_uint_eq(tu_check(p, 2 * MiB, 3), SIZE_MAX);
	/* outside a phase, requests are jemalloc's own */
	void *o = zk_malloc(2 * MiB), *small = zk_malloc(64);
	ck_assert(!zk_owns(o) && !zk_owns(small));
	zk_free(o);
	zk_free(small);
	/* a pool block may grow and be freed after the end; if it moves, it
	 * moves where a new block goes now: jemalloc's own arenas */
	p = zk_realloc(p, 64 * MiB);
	ck_assert(!zk_owns(p));
	ck_assert_uint_eq(tu_check(p, 2 * MiB, 3), SIZE_MAX);
	zk_free(p);
}
END_TEST

/* The core promise: nothing is reclaimed at a begin. Blocks made in the
 * first phase (small and large, by this thread) are read and checked after
 * each of 30 later begins, while every phase writes 32 MiB of new memory
 * that would land on them if they were reused; they are counted as kept. */
START_TEST(blocks_made_in_a_phase_outlive_every_later_begin)
{
	ck_assert_int_eq(zk_begin_phase(), 0);
	size_t sizes[4] = {48, 4000, 100000, 9 * MiB};
	char *kept[4];
	for (int i = 0; i < 4; i++) {
		kept[i] = zk_malloc(sizes[i]);
		ck_assert(zk_owns(kept[i]));
		tu_fill(kept[i], sizes[i], 100 + (uint64_t)i);
	}
	zk_end_phase();
	for (int ph = 0; ph < 30; ph++) {
		ck_assert_int_eq(zk_begin_phase(), 0);
		zk_stats_t s = tu_stats();
		ck_assert_uint_ge(s.kept_blocks, 3);
		ck_assert_uint_ge(s.kept_bytes, 9 * MiB + 100000);
		char *v[64];
		for (int j = 0; j < 64; j++) {
			v[j] = zk_malloc(j % 2 ? MiB : 512);
			memset(v[j], 0xee, j % 2 ? MiB : 512);
		}
		for (int i = 0; i < 4; i++)
			ck_assert_msg(tu_check(kept[i], sizes[i],
					       100 + (uint64_t)i) == SIZE_MAX,
				      "block %d overwritten in phase %d", i,
				      ph + 2);
		for (int j = 0; j < 64; j++)
			zk_free(v[j]);
		zk_end_phase();
	}
	for (int i = 0; i < 4; i++)
		zk_free(kept[i]);
}
END_TEST

/* In a phase the thread is bound to its zkalloc arena (thread.arena), so
 * jemalloc's own entry points reach the pool too; after the phase, at its
 * next zkalloc call, it is bound back to the arena it had. */
static unsigned thread_arena(void)
{
	unsigned a;
	size_t len = sizeof(a);
	ck_assert_int_eq(je_mallctl("thread.arena", &a, &len, NULL, 0), 0);
	return a;
}

START_TEST(threads_are_bound_in_phases_only)
{
	unsigned before = thread_arena();
	ck_assert_int_eq(zk_begin_phase(), 0);
	void *p = zk_malloc(64);
	ck_assert(zk_owns(p));
	ck_assert(zk_tls.bound);
	unsigned in = thread_arena();
	ck_assert_uint_ne(in, before);
	ck_assert_int_eq(zk_arena_index((unsigned)zk_tls.slot - 1), (int)in);
	/* jemalloc called directly, not through zkalloc: the pool too */
	void *q = je_mallocx(200 << 10, 0);
	ck_assert(zk_owns(q));
	je_dallocx(q, 0);
	zk_end_phase();
	void *r = zk_malloc(64); /* the next call unbinds */
	ck_assert(!zk_owns(r));
	ck_assert(!zk_tls.bound);
	ck_assert_uint_eq(thread_arena(), before);
	zk_free(p);
	zk_free(r);
	/* the same arena again in the next phase */
	ck_assert_int_eq(zk_begin_phase(), 0);
	zk_free(zk_malloc(64));
	ck_assert_uint_eq(thread_arena(), in);
	ck_assert_uint_eq(tu_stats().arenas_created, 1);
}
END_TEST

static int scope_ends_on_return(void)
{
	ZK_PHASE
	{
		if (!zk_phase_active())
			return -1;
		return zk_phase_rc;
	}
	return -2;
}

START_TEST(scope_form_ends_on_every_exit)
{
	uint64_t e = zk_phase_epoch();
	ZK_PHASE
	{
		ck_assert_int_eq(zk_phase_rc, 0);
		ck_assert(zk_phase_active());
	}
	ck_assert(!zk_phase_active());
	for (int i = 0; i < 3; i++) {
		ZK_PHASE
		{
			if (i == 1)
				break; /* leaves the phase block only */
			ck_assert(zk_phase_active());
		}
		ck_assert(!zk_phase_active());
	}
	ck_assert_int_eq(scope_ends_on_return(), 0);
	ck_assert(!zk_phase_active());
	ZK_PHASE
	{
		goto out;
	}
out:
	ck_assert(!zk_phase_active());
	ck_assert_uint_eq(zk_phase_epoch(), e + 6);
	/* nested: the inner block runs in the outer phase and leaves it on */
	ZK_PHASE
	{
		ZK_PHASE
		{
			ck_assert_int_eq(zk_phase_rc, EBUSY);
		}
		ck_assert(zk_phase_active());
	}
	ck_assert(!zk_phase_active());
}
END_TEST

static long phase_faults(void)
{
	long f0 = tu_minor_faults();
	ck_assert_int_eq(zk_begin_phase(), 0);
	char *a[6];
	for (int i = 0; i < 6; i++) {
		a[i] = zk_malloc((size_t)(i + 1) * 4 * MiB);
		ck_assert(zk_owns(a[i]));
		memset(a[i], i, (size_t)(i + 1) * 4 * MiB);
	}
	for (int i = 0; i < 6; i += 2)
		zk_free(a[i]);
	char *b = zk_calloc(1, 20 * MiB);
	memset(b, 9, 20 * MiB);
	zk_free(b);
	for (int i = 1; i < 6; i += 2)
		zk_free(a[i]);
	zk_end_phase();
	return tu_minor_faults() - f0;
}

START_TEST(repeated_phase_reuses_resident_pages)
{
	long first = phase_faults();
	ck_assert_int_gt(first, 20000); /* ~100 MiB of fresh pages */
	/* The pool's free ranges settle in the first warm phases (jemalloc's
	 * small slabs land among the big blocks); after that a phase should
	 * fault almost nothing. */
	for (int i = 0; i < 4; i++) {
		long again = phase_faults();
		ck_assert_msg(again * (i == 0 ? 20 : 100) < first,
			      "phase %d: %ld faults vs %ld in the first", i + 2,
			      again, first);
	}
}
END_TEST

/* --- Pages across threads, the decay, growth ----------------------------- */

/* Index of the first byte of p[0, n) that is not b, or SIZE_MAX. */
static size_t tu_check_byte(const char *p, size_t n, int b)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != (char)b)
			return i;
	return SIZE_MAX;
}

static void *touch_256(void *arg)
{
	(void)arg;
	char *p = zk_malloc(256 * MiB);
	ck_assert(zk_owns(p));
	memset(p, 1, 256 * MiB);
	zk_free(p);
	return NULL;
}

/* A different, new thread allocates the big buffer each proof: it lands
 * on the pages the last one used (one pool, whatever the arena), so
 * resident memory stays at one buffer and warm proofs do not fault. */
START_TEST(rotating_thread_reuses_the_warm_pages)
{
	long warm_faults = 0;
	for (int ph = 0; ph < 8; ph++) {
		long f0 = tu_minor_faults();
		ck_assert_int_eq(zk_begin_phase(), 0);
		pthread_t t;
		pthread_create(&t, NULL, touch_256, NULL);
		pthread_join(t, NULL);
		zk_end_phase();
		if (ph > 0)
			warm_faults += tu_minor_faults() - f0;
	}
	zk_stats_t s = tu_stats();
	ck_assert_uint_le(s.resident_bytes, 300 * MiB);
	ck_assert_int_lt(warm_faults, 7 * 256); /* < 1% of 65,536 pages */
}
END_TEST

/* A pool of live workers, all allocating mid-size blocks every proof, one
 * of them (a different one each proof) the big buffer: whichever arena
 * asks, the freed pages serve it (resident memory stays at one big buffer
 * plus the workers' small ones, warm proofs do not fault). */
enum { POOL = 4 };
static pthread_barrier_t pool_go, pool_done;
static int pool_turn;

static void *pool_worker(void *arg)
{
	int id = (int)(intptr_t)arg;
	for (int ph = 0; ph < 8; ph++) {
		pthread_barrier_wait(&pool_go);
		char *mid = zk_malloc(2 * MiB);
		memset(mid, id, 2 * MiB);
		if (pool_turn % POOL == id) {
			char *big = zk_malloc(128 * MiB);
			ck_assert(zk_owns(big));
			memset(big, id, 128 * MiB);
			zk_free(big);
		}
		zk_free(mid);
		pthread_barrier_wait(&pool_done);
	}
	return NULL;
}

START_TEST(big_buffer_moving_between_live_threads)
{
	pthread_t t[POOL];
	pthread_barrier_init(&pool_go, NULL, POOL + 1);
	pthread_barrier_init(&pool_done, NULL, POOL + 1);
	for (intptr_t i = 0; i < POOL; i++)
		pthread_create(&t[i], NULL, pool_worker, (void *)i);
	long warm = 0;
	for (int ph = 0; ph < 8; ph++) {
		long f0 = tu_minor_faults();
		ck_assert_int_eq(zk_begin_phase(), 0);
		pool_turn = ph;
		pthread_barrier_wait(&pool_go);
		pthread_barrier_wait(&pool_done);
		zk_end_phase();
		if (ph >= POOL) /* every worker has had its turn */
			warm += tu_minor_faults() - f0;
	}
	for (int i = 0; i < POOL; i++)
		pthread_join(t[i], NULL);
	zk_stats_t s = tu_stats();
	ck_assert_msg(s.resident_bytes <= (128 + POOL * 4 + 16) * MiB,
		      "resident %zu MiB", s.resident_bytes >> 20);
	ck_assert_int_lt(warm, 4 * 32768 / 100); /* < 1% of the pages */
	ck_assert_uint_eq(s.overflow_count, 0);
}
END_TEST

/* Pages that none of the last K phases needed go back at a begin; the
 * pages the recent phases did need stay (no faults in steady phases). */
START_TEST(phase_decay_gives_back_what_recent_phases_did_not_need)
{
	ck_assert_int_eq(zk_begin_phase(), 0);
	unsigned k = (unsigned)zk_g.opt[ZK_OPT_TRIM_PHASES];
	ck_assert_uint_eq(k, 4);
	char *p = zk_malloc(256 * MiB);
	memset(p, 1, 256 * MiB);
	zk_free(p);
	zk_end_phase();
	size_t big = tu_stats().resident_bytes;
	ck_assert_uint_ge(big, 250 * MiB);
	for (unsigned ph = 1; ph <= k + 2; ph++) {
		long f0 = tu_minor_faults();
		ck_assert_int_eq(zk_begin_phase(), 0);
		char *q = zk_malloc(16 * MiB);
		memset(q, 2, 16 * MiB);
		zk_free(q);
		zk_end_phase();
		size_t res = tu_stats().resident_bytes;
		if (ph <= k) /* the big phase is one of the last k */
			ck_assert_uint_ge(res, 250 * MiB);
		else /* k later phases needed 16 MiB */
			ck_assert_uint_le(res, 24 * MiB);
		ck_assert_int_lt(tu_minor_faults() - f0, 64);
	}
	ck_assert_uint_ge(tu_stats().trims, 1);
}
END_TEST

/* The same for small objects (in a phase they come from the pool too): a
 * small-object spike is given back after K phases, steady phases keep
 * their pages and do not fault. */
START_TEST(small_spike_decays_after_k_phases)
{
	static void *v[200000];
	size_t steady = 0;
	for (int ph = 0; ph < 10; ph++) {
		int n = ph == 2 ? 200000 : 10000;
		long f0 = tu_minor_faults();
		ck_assert_int_eq(zk_begin_phase(), 0);
		for (int i = 0; i < n; i++) {
			size_t sz = 16 + (size_t)(i * 7919) % 2032;
			v[i] = zk_malloc(sz);
			memset(v[i], i, sz);
		}
		for (int i = 0; i < n; i++)
			zk_free(v[i]);
		zk_end_phase();
		long f = tu_minor_faults() - f0;
		zk_stats_t st = tu_stats();
		size_t res = st.resident_bytes;
		if (ph == 1)
			steady = res;
		/* 3: the first after the spike may write pages the spike
		 * was handed but never touched (under 1% of its 50k pages);
		 * 7: the first after the trim */
		if (ph == 3)
			ck_assert_msg(f < 500, "phase 3: %ld faults", f);
		if (ph >= 4 && ph != 7)
			ck_assert_msg(f < 64, "phase %d: %ld faults", ph, f);
		if (ph >= 3 && ph <= 6)
			ck_assert_uint_gt(res, 4 * steady);
		if (ph >= 7)
			ck_assert_msg(
			    res * 10 <= steady * 12 + 10 * 2 * MiB,
			    "phase %d: %zu resident, steady %zu; "
			    "%llu trims, %llu bytes",
			    ph, res, steady, (unsigned long long)st.trims,
			    (unsigned long long)st.trimmed_bytes);
	}
}
END_TEST

/* A vector grown by doubling inside each phase and kept past it (a
 * proof's output): it stays valid across the next begin, and its growth
 * stops re-faulting from proof to proof (its generations are pool
 * memory, given back to the pool as it grows). */
START_TEST(realloc_growth_is_kept_and_resident)
{
	char *kept[4] = {0};
	long faults[4];
	for (int ph = 0; ph < 4; ph++) {
		long f0 = tu_minor_faults();
		ck_assert_int_eq(zk_begin_phase(), 0);
		size_t n = 64;
		char *v = zk_malloc(n);
		memset(v, ph + 1, n);
		while (n < 64 * MiB) {
			v = zk_realloc(v, 2 * n);
			ck_assert(zk_owns(v));
			memset(v + n, ph + 1, n);
			n *= 2;
		}
		kept[ph] = v;
		zk_end_phase();
		faults[ph] = tu_minor_faults() - f0;
		/* the output of the proof before survives this begin */
		if (ph > 0) {
			ck_assert_uint_eq(
			    tu_check_byte(kept[ph - 1], 64 * MiB, ph),
			    SIZE_MAX);
			zk_free(kept[ph - 1]);
		}
	}
	ck_assert_uint_eq(tu_check_byte(kept[3], 64 * MiB, 4), SIZE_MAX);
	zk_free(kept[3]);
	ck_assert_uint_eq(tu_stats().overflow_count, 0);
	/* ~32k pages touched per proof; warm proofs reuse them */
	ck_assert_msg(faults[3] * 10 < faults[0], "faults %ld then %ld",
		      faults[0], faults[3]);
}
END_TEST

/* Page-tracking canaries across threads and phases. */
#define NT 4
static pthread_barrier_t bar;
static _Atomic long corruptions;

static void *canary_worker(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	for (int ph = 0; ph < 40; ph++) {
		pthread_barrier_wait(&bar); /* phase begun */
		enum { N = 24 };
		char *blk[N] = {0};
		size_t len[N] = {0};
		for (int k = 0; k < 100; k++) {
			int j = rand_r(&seed) % N;
			if (blk[j] != NULL) {
				if (tu_check(blk[j], len[j],
					     (uintptr_t)blk[j]) != SIZE_MAX)
					corruptions++;
				zk_free(blk[j]);
			}
			/* sizes on both sides of the threshold */
			len[j] = rand_r(&seed) % 4 == 0
				     ? 16 + rand_r(&seed) % 8192
				     : 16384 + rand_r(&seed) % (192 << 10);
			blk[j] = zk_malloc(len[j]);
			tu_fill(blk[j], len[j], (uintptr_t)blk[j]);
		}
		for (int j = 0; j < N; j++)
			if (blk[j] != NULL) {
				if (tu_check(blk[j], len[j],
					     (uintptr_t)blk[j]) != SIZE_MAX)
					corruptions++;
				zk_free(blk[j]);
			}
		pthread_barrier_wait(&bar); /* done with the phase */
	}
	return NULL;
}

START_TEST(threads_over_phases_keep_data_intact)
{
	pthread_t t[NT];
	pthread_barrier_init(&bar, NULL, NT + 1);
	for (uintptr_t i = 0; i < NT; i++)
		pthread_create(&t[i], NULL, canary_worker, (void *)(i + 1));
	for (int ph = 0; ph < 40; ph++) {
		ck_assert_int_eq(zk_begin_phase(), 0);
		pthread_barrier_wait(&bar);
		pthread_barrier_wait(&bar);
		zk_end_phase();
	}
	for (int i = 0; i < NT; i++)
		pthread_join(t[i], NULL);
	ck_assert_int_eq(corruptions, 0);
	zk_stats_t s = tu_stats();
	ck_assert_uint_eq(s.overflow_count, 0);
	/* arenas live across phases: one per thread, made once */
	ck_assert_uint_le(s.arenas_created, NT + 1);
}
END_TEST

/* Region refused: everything still works through plain jemalloc. */
static int refused_child(void *unused)
{
	(void)unused;
	if (zk_begin_phase() != 0)
		return 91;
	char *p = zk_malloc(64 * MiB);
	if (p == NULL || zk_owns(p))
		return 92;
	tu_fill(p, 64 * MiB, 5);
	if (tu_check(p, 64 * MiB, 5) != SIZE_MAX)
		return 93;
	zk_free(p);
	zk_end_phase();
	if (zk_begin_phase() != 0 || zk_malloc(MiB) == NULL)
		return 94;
	/* No region: threads stay in jemalloc's arenas, nothing is made. */
	zk_stats_t s = {.size = sizeof(s)};
	zk_stats_get(&s);
	if (s.region_reserved || s.arenas_created != 0 || s.binds != 0 ||
	    zk_arena_flags() != 0)
		return 95;
	return 0;
}

#if !defined(__SANITIZE_ADDRESS__)
/* Under RLIMIT_AS (ulimit -v) the region takes at most half of the address
 * space left, so that an ordinary allocation that fits the limit still
 * works after the first phase; pool memory still works. */
static size_t mapped_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long pages = 0;
	if (f != NULL) {
		if (fscanf(f, "%lu", &pages) != 1)
			pages = 0;
		fclose(f);
	}
	return (size_t)pages * 4096;
}

static int rlimit_child(void *unused)
{
	(void)unused;
	/* 4 GiB of address space left: the region takes at most 2 GiB */
	size_t limit = mapped_bytes() + ((size_t)4 << 30);
	struct rlimit rl = {.rlim_cur = limit, .rlim_max = limit};
	if (setrlimit(RLIMIT_AS, &rl) != 0)
		return 90;
	if (zk_begin_phase() != 0)
		return 91;
	char *p = zk_malloc(64 * MiB);
	if (p == NULL || !zk_owns(p))
		return 92;
	tu_fill(p, 64 * MiB, 5);
	zk_free(p);
	zk_end_phase();
	/* ordinary memory: 1 GiB of address space still fits */
	char *big = zk_malloc((size_t)1 << 30);
	if (big == NULL || zk_owns(big))
		return 93;
	big[0] = 1;
	zk_free(big);
	zk_stats_t s = {.size = sizeof(s)};
	zk_stats_get(&s);
	if (!s.region_reserved || s.reserved_bytes > ((size_t)2 << 30))
		return 94;
	return 0;
}

START_TEST(reservation_fits_rlimit_as)
{
	const char *env[] = {"ZK_ALLOC_REGION_GB=64", NULL};
	char err[4096];
	ck_assert_int_eq(
	    tu_run_child(rlimit_child, NULL, env, err, sizeof(err)), 0);
	ck_assert_msg(strstr(err, "note: RLIMIT_AS"), "%s", err);
}
END_TEST
#endif

/* 8 TiB (the largest the option takes) plus its bookkeeping, under a
 * 4 TiB RLIMIT_AS: half of what is left cannot hold it, so it is
 * shrunk; under a limit so low that not even 64 MiB fit, refused. */
static int tiny_rlimit_child(void *arg)
{
	struct rlimit rl = {.rlim_cur = (rlim_t)(uintptr_t)arg,
			    .rlim_max = (rlim_t)(uintptr_t)arg};
	/* the limit counts what is mapped already */
	rl.rlim_cur = rl.rlim_max = mapped_bytes() + rl.rlim_cur;
	if (setrlimit(RLIMIT_AS, &rl) != 0)
		return 90;
	return refused_child(NULL);
}

START_TEST(refused_reservation_too_large)
{
	char err[4096];
	const char *env[] = {"ZK_ALLOC_REGION_GB=8192", NULL};
	ck_assert_int_eq(tu_run_child(tiny_rlimit_child,
				      (void *)(uintptr_t)(100 * MiB), env, err,
				      sizeof(err)),
			 0);
	ck_assert_msg(strstr(err, "cannot reserve the phase region"), "%s",
		      err);
	ck_assert_ptr_null(strstr(strstr(err, "zkalloc") + 1, "zkalloc"));
}
END_TEST

/* --- More threads than arenas (ZK_TEST_MODE=few_arenas, ZK_ALLOC_ARENAS=2) */

static pthread_barrier_t hold;

static void *fill_hold_free(void *arg)
{
	char *p = zk_malloc(4 * MiB);
	tu_fill(p, 4 * MiB, (uintptr_t)arg);
	pthread_barrier_wait(&hold);
	if (tu_check(p, 4 * MiB, (uintptr_t)arg) != SIZE_MAX)
		corruptions++;
	*(bool *)arg = zk_owns(p);
	zk_free(p);
	return NULL;
}

/* 8 live threads on 2 arenas share them (jemalloc arenas are
 * thread-safe): all pool memory, no overflow, 2 arenas made. */
START_TEST(live_threads_beyond_arenas_share_them)
{
	ck_assert_int_eq(zk_begin_phase(), 0);
	pthread_t t[8];
	bool owned[8];
	pthread_barrier_init(&hold, NULL, 9);
	for (int i = 0; i < 8; i++)
		pthread_create(&t[i], NULL, fill_hold_free, &owned[i]);
	pthread_barrier_wait(&hold);
	for (int i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		ck_assert(owned[i]);
	}
	ck_assert_int_eq(corruptions, 0);
	zk_stats_t s = tu_stats();
	ck_assert_uint_eq(s.arenas_created, 2);
	ck_assert_uint_eq(s.overflow_count, 0);
}
END_TEST

/* Workers created per step inside ONE phase (10,000 threads one after
 * another, then in batches of 16, each allocating 1 MiB) all get pool
 * memory on 2 arenas, and the pool does not grow with them: each thread's
 * freed MiB serves the next. */
static void *one_mib(void *arg)
{
	char *p = zk_malloc(MiB);
	*(char **)arg = p;
	if (p != NULL)
		p[MiB - 1] = 1;
	return NULL;
}

START_TEST(ten_thousand_short_threads_in_one_phase)
{
	ck_assert_int_eq(zk_begin_phase(), 0);
	int owned = 0;
	for (int i = 0; i < 5000; i++) {
		pthread_t t;
		char *p = NULL;
		ck_assert_int_eq(pthread_create(&t, NULL, one_mib, &p), 0);
		pthread_join(t, NULL);
		owned += zk_owns(p);
		zk_free(p);
	}
	for (int i = 0; i < 5000 / 16; i++) {
		pthread_t t[16];
		char *p[16];
		for (int j = 0; j < 16; j++)
			ck_assert_int_eq(
			    pthread_create(&t[j], NULL, one_mib, &p[j]), 0);
		for (int j = 0; j < 16; j++) {
			pthread_join(t[j], NULL);
			owned += zk_owns(p[j]);
			zk_free(p[j]);
		}
	}
	ck_assert_int_eq(owned, 5000 + 5000 / 16 * 16);
	zk_stats_t s = tu_stats();
	ck_assert_uint_eq(s.overflow_count, 0);
	ck_assert_uint_le(s.top_bytes, 64 * MiB);
}
END_TEST

static Suite *default_suite(void)
{
	Suite *s = suite_create("phase");
	TCase *tc = tcase_create("lifecycle");
	tcase_set_timeout(tc, 60); /* a debug jemalloc junk-fills big blocks */
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_add_test(tc, begin_end_active_epoch);
	tcase_add_test(tc, nested_begin_is_ebusy_and_changes_nothing);
	tcase_add_test(tc, memory_stays_valid_after_end);
	tcase_add_test(tc, scope_form_ends_on_every_exit);
	tcase_add_test(tc, blocks_made_in_a_phase_outlive_every_later_begin);
	tcase_add_test(tc, threads_are_bound_in_phases_only);
	tcase_add_test(tc, repeated_phase_reuses_resident_pages);
#if !defined(__SANITIZE_ADDRESS__)
	tcase_add_test(tc, reservation_fits_rlimit_as);
	tcase_add_test(tc, refused_reservation_too_large);
#endif
	suite_add_tcase(s, tc);
	tc = tcase_create("threads");
	tcase_set_timeout(tc, 120);
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_add_test(tc, threads_over_phases_keep_data_intact);
	tcase_add_test(tc, rotating_thread_reuses_the_warm_pages);
	tcase_add_test(tc, big_buffer_moving_between_live_threads);
	tcase_add_test(tc,
		       phase_decay_gives_back_what_recent_phases_did_not_need);
	tcase_add_test(tc, small_spike_decays_after_k_phases);
	tcase_add_test(tc, realloc_growth_is_kept_and_resident);
	suite_add_tcase(s, tc);
	return s;
}

static Suite *few_arenas_suite(void)
{
	Suite *s = suite_create("phase-few-arenas");
	TCase *tc = tcase_create("sharing");
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, live_threads_beyond_arenas_share_them);
	tcase_add_test(tc, ten_thousand_short_threads_in_one_phase);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	const char *mode = getenv("ZK_TEST_MODE");
	Suite *s = mode && strcmp(mode, "few_arenas") == 0
		       ? few_arenas_suite()
		       : default_suite();
	return tu_run_suite(s);
}
