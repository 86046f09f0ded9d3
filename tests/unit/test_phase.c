/* phase.c: begin/end, the scope form, the slab pool across threads, thread
 * exit, page reuse, thread caches, a refused reservation. */
#define _GNU_SOURCE
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
	uint64_t e = zk_phase_epoch();
	size_t used = zk_slab_used(zk_tls.slab);
	uint64_t destroyed = atomic_load(&zk_g.arenas_destroyed);
	ck_assert_int_eq(zk_begin_phase(), EBUSY);
	ck_assert(zk_phase_active());
	ck_assert_uint_eq(zk_phase_epoch(), e);
	ck_assert_uint_eq(zk_slab_used(zk_tls.slab), used);
	ck_assert_uint_eq(atomic_load(&zk_g.arenas_destroyed), destroyed);
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
	/* outside a phase, large requests are ordinary memory */
	void *o = zk_malloc(2 * MiB);
	ck_assert(!zk_owns(o));
	zk_free(o);
	/* a phase block may still grow and be freed after the end */
	p = zk_realloc(p, 3 * MiB);
	ck_assert(zk_owns(p));
	ck_assert_uint_eq(tu_check(p, 2 * MiB, 3), SIZE_MAX);
	zk_free(p);
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
	/* The second phase clears the arena's 2 MiB base block, which jemalloc
	 * asks for zeroed and had only partly touched (~500 faults, once);
	 * after that a phase should fault almost nothing. */
	for (int i = 0; i < 4; i++) {
		long again = phase_faults();
		ck_assert_msg(again * (i == 0 ? 20 : 100) < first,
			      "phase %d: %ld faults vs %ld in the first", i + 2,
			      again, first);
	}
}
END_TEST

/* A phase block freed through the thread cache (plain free()/je_free()) must
 * never come back from ordinary malloc once its arena is destroyed. */
START_TEST(cached_free_never_leaks_into_next_phase)
{
	size_t min = zk_g.min_bytes;
	ck_assert_int_eq(zk_begin_phase(), 0);
	min = zk_g.min_bytes;
	void *p[64];
	for (int i = 0; i < 64; i++) {
		p[i] = zk_malloc(min);
		ck_assert(zk_owns(p[i]));
	}
	for (int i = 0; i < 64; i++)
		je_dallocx(p[i], 0); /* thread cache allowed, as free() does */
	zk_end_phase();
	ck_assert_int_eq(zk_begin_phase(), 0);
	zk_end_phase();
	for (int i = 0; i < 4096; i++) {
		void *q = je_mallocx(min, 0);
		ck_assert_msg(!zk_owns(q), "a destroyed phase block came back");
		je_dallocx(q, 0);
	}
}
END_TEST

/* --- Issue 10: phase decay, rotation, safe growth ------------------------ */

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
 * on the pages the last one used, so resident memory stays at one buffer
 * (not one per thread) and warm proofs do not fault. */
START_TEST(rotating_thread_reuses_the_warm_slab)
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

/* A pool of live workers, all allocating mid-size phase blocks every proof,
 * one of them (a different one each proof) the big buffer: the big buffers
 * share one arena, so they land on the same pages (resident memory stays
 * at one big buffer plus the workers' small ones, warm proofs do not
 * fault). */
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

/* The same for ordinary memory made in phases (resident arenas): a
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
		size_t res = tu_stats().small_resident_bytes;
		if (ph == 1)
			steady = res;
		if (ph >= 3 && ph != 7) /* 7: the first after the trim */
			ck_assert_msg(f < 64, "phase %d: %ld faults", ph, f);
		if (ph >= 3 && ph <= 6)
			ck_assert_uint_gt(res, 4 * steady);
		if (ph >= 7)
			ck_assert_msg(
			    res * 10 <= steady * 12 + 10 * 2 * MiB,
			    "phase %d: %zu resident, steady %zu; %llu "
			    "trims, %llu bytes",
			    ph, res, steady,
			    (unsigned long long)tu_stats().trims,
			    (unsigned long long)tu_stats().trimmed_bytes);
	}
}
END_TEST

/* Issue 10.1: an ordinary block grown by realloc inside a phase stays
 * ordinary (valid after the phase, the contract of the defaults), and
 * its growth stops re-faulting from proof to proof. */
START_TEST(realloc_growth_is_ordinary_and_resident)
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
			ck_assert(!zk_owns(v));
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
	/* arenas live across phases: made once per slab, reset per phase */
	ck_assert_uint_le(s.arenas_created, 2 * NT);
	ck_assert_uint_ge(s.arenas_reset, NT * 39);
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
	zk_stats_t s = {.size = sizeof(s)};
	zk_stats_get(&s);
	if (s.region_reserved || s.overflow_count != 2 ||
	    s.overflow_bytes != 65 * MiB)
		return 95;
	return 0;
}

static void expect_refused(int (*child)(void *), const char *const *env)
{
	char err[4096];
	ck_assert_int_eq(tu_run_child(child, NULL, env, err, sizeof(err)), 0);
	ck_assert_msg(strstr(err, "cannot reserve the phase region"), "%s",
		      err);
	ck_assert_ptr_null(strstr(strstr(err, "zkalloc") + 1, "zkalloc"));
}

#if !defined(__SANITIZE_ADDRESS__)
/* Under RLIMIT_AS (ulimit -v) the regions take at most half of the address
 * space left, so that an ordinary allocation that fits the limit still
 * works after the first phase; phase memory still works. */
static int rlimit_child(void *unused)
{
	(void)unused;
	struct rlimit rl = {.rlim_cur = (rlim_t)24 << 30,
			    .rlim_max = (rlim_t)24 << 30};
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
	/* ordinary memory: 8 GiB of address space, as before the phase */
	char *big = zk_malloc((size_t)8 << 30);
	if (big == NULL || zk_owns(big))
		return 93;
	big[0] = 1;
	zk_free(big);
	zk_stats_t s = {.size = sizeof(s)};
	zk_stats_get(&s);
	if (!s.region_reserved || s.reserved_bytes > ((size_t)12 << 30))
		return 94;
	return 0;
}

START_TEST(reservation_fits_rlimit_as)
{
	const char *env[] = {"ZK_ALLOC_SLAB_GB=8", "ZK_ALLOC_SLABS=4", NULL};
	char err[4096];
	ck_assert_int_eq(
	    tu_run_child(rlimit_child, NULL, env, err, sizeof(err)), 0);
	ck_assert_msg(strstr(err, "RLIMIT_AS"), "%s", err);
}
END_TEST
#endif

/* 1024 slabs x 1024 GiB = 1 PiB: more than the address space, refused. */
START_TEST(refused_reservation_too_large)
{
	const char *env[] = {"ZK_ALLOC_SLAB_GB=1024", "ZK_ALLOC_SLABS=1024",
			     NULL};
	expect_refused(refused_child, env);
}
END_TEST

/* --- ZK_TEST_MODE=few_slabs (run with ZK_ALLOC_SLABS=2) ------------------ */

static void *take_and_fill(void *arg)
{
	char **out = arg;
	*out = zk_malloc(4 * MiB);
	tu_fill(*out, 4 * MiB, (uintptr_t)out);
	return NULL;
}

/* More threads than slabs: they share the slabs' arenas (thread-safe)
 * instead of falling back to plain jemalloc. */
START_TEST(more_threads_than_slabs_share)
{
	ck_assert_int_eq(zk_begin_phase(), 0);
	char *blk[6];
	pthread_t t[6];
	for (int i = 0; i < 6; i++)
		pthread_create(&t[i], NULL, take_and_fill, &blk[i]);
	for (int i = 0; i < 6; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < 6; i++) {
		ck_assert(zk_owns(blk[i]));
		ck_assert_uint_eq(tu_check(blk[i], 4 * MiB, (uintptr_t)&blk[i]),
				  SIZE_MAX);
	}
	zk_stats_t s = tu_stats();
	ck_assert_uint_eq(s.overflow_count, 0);
	/* the threads have exited: their slabs are free again at once */
	ck_assert_uint_eq(s.slabs_in_use, 0);
	for (int i = 0; i < 6; i++)
		zk_free(blk[i]);
}
END_TEST

static pthread_barrier_t hold;

static void *take_fill_hold(void *arg)
{
	take_and_fill(arg);
	pthread_barrier_wait(&hold);
	return NULL;
}

START_TEST(live_threads_beyond_slabs_share_arenas)
{
	ck_assert_int_eq(zk_begin_phase(), 0);
	enum { N = 8 };
	char *blk[N];
	pthread_t t[N];
	pthread_barrier_init(&hold, NULL, N + 1);
	for (int i = 0; i < N; i++)
		pthread_create(&t[i], NULL, take_fill_hold, &blk[i]);
	pthread_barrier_wait(&hold); /* all N alive, each holding a block */
	zk_stats_t s = tu_stats();
	ck_assert_uint_eq(s.overflow_count, 0);
	ck_assert_uint_ge(s.shared_count, N - 2);
	ck_assert_uint_eq(s.slabs_in_use, 2);
	for (int i = 0; i < N; i++) {
		pthread_join(t[i], NULL);
		ck_assert(zk_owns(blk[i]));
		ck_assert_uint_eq(tu_check(blk[i], 4 * MiB, (uintptr_t)&blk[i]),
				  SIZE_MAX);
		zk_free(blk[i]);
	}
}
END_TEST

/* A thread that exits hands its slab, with its live arena, to the next
 * thread at once; the exited thread's blocks stay valid until the next
 * begin. */
START_TEST(exited_thread_slab_taken_over_in_the_phase)
{
	ck_assert_int_eq(zk_begin_phase(), 0);
	char *a, *b;
	pthread_t t;
	pthread_create(&t, NULL, take_and_fill, &a);
	pthread_join(t, NULL);
	pthread_create(&t, NULL, take_and_fill, &b);
	pthread_join(t, NULL);
	ck_assert(zk_owns(a) && zk_owns(b));
	char *c = zk_malloc(4 * MiB);
	ck_assert(zk_owns(c));
	ck_assert_uint_eq(tu_check(a, 4 * MiB, (uintptr_t)&a), SIZE_MAX);
	ck_assert_uint_eq(tu_check(b, 4 * MiB, (uintptr_t)&b), SIZE_MAX);
	zk_free(a); /* another thread may free it */
	zk_free(c);
	zk_end_phase();
	ck_assert_uint_eq(tu_check(b, 4 * MiB, (uintptr_t)&b), SIZE_MAX);
	zk_stats_t s = tu_stats();
	ck_assert_uint_eq(s.overflow_count, 0);
}
END_TEST

/* A thread that took a slab in an earlier phase and exits in a later one
 * gives back nothing it no longer holds: the slab another thread took in
 * this phase stays that thread's. */
static pthread_barrier_t idle_go, idle_exit;

static void *take_then_idle(void *arg)
{
	take_and_fill(arg); /* phase 1: takes a slab */
	pthread_barrier_wait(&idle_go);
	pthread_barrier_wait(&idle_exit); /* exits in phase 2, idle */
	return NULL;
}

START_TEST(exit_after_an_idle_phase_releases_nothing)
{
	pthread_barrier_init(&idle_go, NULL, 2);
	pthread_barrier_init(&idle_exit, NULL, 2);
	ck_assert_int_eq(zk_begin_phase(), 0);
	char *a;
	pthread_t t;
	pthread_create(&t, NULL, take_then_idle, &a);
	pthread_barrier_wait(&idle_go);
	zk_end_phase();
	ck_assert_int_eq(zk_begin_phase(), 0);
	/* In phase 2 the idle thread's slab is free: a short thread takes
	 * one slab and exits, then main takes one (2 slabs in this suite),
	 * possibly the idle thread's. */
	char *b, *c;
	pthread_t u;
	pthread_create(&u, NULL, take_and_fill, &b);
	pthread_join(u, NULL); /* exits: its slab is free again */
	c = zk_malloc(4 * MiB);
	ck_assert(zk_owns(c));
	unsigned held = tu_stats().slabs_in_use;
	pthread_barrier_wait(&idle_exit);
	pthread_join(t, NULL);
	ck_assert_uint_eq(tu_stats().slabs_in_use, held);
	zk_free(b);
	zk_free(c);
}
END_TEST

/* Issue 8.6: workers created per step inside ONE phase never run out of
 * slabs (here 2 slabs): 10,000 threads one after another, then in batches
 * of 16, each allocating 1 MiB of phase memory. */
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
}
END_TEST

static Suite *default_suite(void)
{
	Suite *s = suite_create("phase");
	TCase *tc = tcase_create("lifecycle");
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_add_test(tc, begin_end_active_epoch);
	tcase_add_test(tc, nested_begin_is_ebusy_and_changes_nothing);
	tcase_add_test(tc, memory_stays_valid_after_end);
	tcase_add_test(tc, scope_form_ends_on_every_exit);
	tcase_add_test(tc, repeated_phase_reuses_resident_pages);
	tcase_add_test(tc, cached_free_never_leaks_into_next_phase);
#if !defined(__SANITIZE_ADDRESS__)
	tcase_add_test(tc, reservation_fits_rlimit_as);
#endif
	tcase_add_test(tc, refused_reservation_too_large);
	suite_add_tcase(s, tc);
	tc = tcase_create("threads");
	tcase_set_timeout(tc, 120);
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_add_test(tc, threads_over_phases_keep_data_intact);
	tcase_add_test(tc, rotating_thread_reuses_the_warm_slab);
	tcase_add_test(tc, big_buffer_moving_between_live_threads);
	tcase_add_test(tc,
		       phase_decay_gives_back_what_recent_phases_did_not_need);
	tcase_add_test(tc, small_spike_decays_after_k_phases);
	tcase_add_test(tc, realloc_growth_is_ordinary_and_resident);
	suite_add_tcase(s, tc);
	return s;
}

static Suite *few_slabs_suite(void)
{
	Suite *s = suite_create("phase-few-slabs");
	TCase *tc = tcase_create("pool");
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, more_threads_than_slabs_share);
	tcase_add_test(tc, live_threads_beyond_slabs_share_arenas);
	tcase_add_test(tc, exited_thread_slab_taken_over_in_the_phase);
	tcase_add_test(tc, exit_after_an_idle_phase_releases_nothing);
	tcase_add_test(tc, ten_thousand_short_threads_in_one_phase);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	const char *mode = getenv("ZK_TEST_MODE");
	Suite *s = mode && strcmp(mode, "few_slabs") == 0 ? few_slabs_suite()
							  : default_suite();
	return tu_run_suite(s);
}
