/* pool.c, decay.c: the page pool on its own (no jemalloc arena involved). */
#define _GNU_SOURCE
#include "os.h"
#include "pool.h"
#include "testutil.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MiB ((size_t)1 << 20)
#define PG  ((size_t)4096)
#define ST(f) atomic_load(&zk_pool.stats.f)

/* Each test runs in its own forked child: a fresh 256 MiB pool. */
static void setup(void)
{
	ck_assert_int_eq(zk_pool_init(256 * MiB, false, false), 0);
	zk_pool_set_epoch(1);
}

static char *get(size_t size, size_t align, bool zero)
{
	zk_pool_fail_t why = ZK_POOL_NONE;
	bool z = zero;
	char *p = zk_pool_alloc(NULL, size, align, &z, &why);
	ck_assert_msg(p != NULL, "alloc %zu failed: %d", size, why);
	ck_assert_int_eq(why, ZK_POOL_OK);
	if (zero)
		ck_assert(z);
	return p;
}

static void put(void *p, size_t size)
{
	ck_assert(zk_pool_free(p, size));
}

START_TEST(ranges_are_disjoint_and_aligned)
{
	char *a = get(20 * PG, PG, false), *b = get(MiB, 2 * MiB, false);
	char *c = get(3 * PG, PG, false);
	ck_assert(zk_pool_owns(a) && zk_pool_owns(b) && zk_pool_owns(c));
	ck_assert_uint_eq((uintptr_t)b % (2 * MiB), 0);
	/* No overlap: write distinct patterns, read them back. */
	memset(a, 1, 20 * PG);
	memset(b, 2, MiB);
	memset(c, 3, 3 * PG);
	ck_assert(a[20 * PG - 1] == 1 && b[0] == 2 && b[MiB - 1] == 2 &&
		  c[0] == 3);
	ck_assert_uint_eq(ST(live_bytes), 20 * PG + MiB + 3 * PG);
	ck_assert_uint_eq(ST(live_extents), 3);
	ck_assert(!zk_pool_owns(a - zk_pool.total) && !zk_pool_owns(NULL));
}
END_TEST

/* A freed range is the first choice for the next request it fits: the
 * same (resident) pages, no fresh ones. */
START_TEST(freed_pages_are_reused_before_fresh_ones)
{
	char *a = get(64 * MiB, PG, false);
	memset(a, 7, 64 * MiB);
	size_t top = atomic_load(&zk_pool.top_bytes);
	put(a, 64 * MiB);
	ck_assert_uint_eq(ST(live_bytes), 0);
	long f0 = tu_minor_faults();
	char *b = get(64 * MiB, PG, false);
	ck_assert_ptr_eq(b, a);
	memset(b, 8, 64 * MiB); /* resident: no faults */
	ck_assert_int_lt(tu_minor_faults() - f0, 64);
	ck_assert_uint_eq(atomic_load(&zk_pool.top_bytes), top);
	put(b, 64 * MiB);
	/* Many smaller requests fit in the freed range too. */
	for (int i = 0; i < 16; i++)
		get(4 * MiB, PG, false);
	ck_assert_uint_eq(atomic_load(&zk_pool.top_bytes), top);
}
END_TEST

/* Freed neighbours coalesce: after freeing every piece, one request as
 * large as all of them fits where they were. */
START_TEST(neighbours_coalesce)
{
	char *p[8];
	for (int i = 0; i < 8; i++)
		p[i] = get(8 * MiB, PG, false);
	size_t top = atomic_load(&zk_pool.top_bytes);
	/* free in an order that needs merges on both sides */
	int order[8] = {1, 3, 5, 7, 0, 2, 6, 4};
	for (int i = 0; i < 8; i++)
		put(p[order[i]], 8 * MiB);
	ck_assert_uint_eq(atomic_load(&zk_pool.free_bytes), top);
	char *all = get(64 * MiB, PG, false);
	ck_assert_ptr_eq(all, p[0]);
	ck_assert_uint_eq(atomic_load(&zk_pool.top_bytes), top);
}
END_TEST

/* Fresh pages are reported zero and never cleared; recycled pages that
 * held data are cleared exactly when *zero is asked, and counted. */
START_TEST(only_dirty_pages_are_cleared)
{
	bool z = false;
	zk_pool_fail_t why;
	char *a = zk_pool_alloc(NULL, 16 * MiB, PG, &z, &why);
	ck_assert(z); /* fresh: known zero though not asked */
	ck_assert_uint_eq(ST(cleared_bytes), 0);
	memset(a + 3 * MiB, 0x5a, MiB); /* only 1 MiB holds data */
	put(a, 16 * MiB);
	/* Not asked for zero: reported as not zero (pages are dirty). */
	z = false;
	char *b = zk_pool_alloc(NULL, 16 * MiB, PG, &z, &why);
	ck_assert_ptr_eq(b, a);
	ck_assert(!z);
	ck_assert_uint_eq(ST(cleared_bytes), 0);
	ck_assert(b[3 * MiB] == 0x5a); /* untouched: nobody asked */
	put(b, 16 * MiB);
	/* Asked (issue 13.8): every page handed out since it was fresh may
	 * hold data, but only the resident ones are cleared with memset; the
	 * others are given back, which makes them zero without faulting them
	 * in: RSS does not grow by the 15 MiB nobody wrote. */
	size_t rss = tu_rss_bytes();
	z = true;
	char *c = zk_pool_alloc(NULL, 16 * MiB, PG, &z, &why);
	ck_assert(z);
	ck_assert_uint_lt(tu_rss_bytes(), rss + MiB);
	ck_assert_uint_eq(ST(cleared_bytes), 16 * MiB);
	ck_assert_uint_ge(ST(memset_bytes), MiB);
	ck_assert_uint_lt(ST(memset_bytes), 2 * MiB);
	ck_assert(tu_all_zero(c, 16 * MiB));
	/* Fresh memory asked for zero: nothing cleared, nothing faulted. */
	uint64_t cleared = ST(cleared_bytes);
	long f0 = tu_minor_faults();
	char *d = get(32 * MiB, PG, true);
	ck_assert(d != c);
	ck_assert_uint_eq(ST(cleared_bytes), cleared);
	ck_assert_int_lt(tu_minor_faults() - f0, 16);
}
END_TEST

/* Begins of phases from..to (K = 4) with nothing allocated in them. */
static void quiet_phases(uint32_t from, uint32_t to)
{
	for (uint32_t e = from; e <= to; e++) {
		zk_pool_begin(e, 4);
		zk_pool_set_epoch(e);
	}
}

/* What the decay keeps resident beyond the largest recent peak: an eighth
 * of it and 2 MiB (decay.c: keep_bytes). With quiet phases (peak 0) only
 * the 2 MiB. */
#define FLOOR (2 * MiB)

/* A range the decay gave back is zero again: asked for zero, only the
 * part kept resident is cleared, and it reads zero. */
START_TEST(given_back_pages_are_zero_again)
{
	char *a = get(16 * MiB, PG, false);
	memset(a, 1, 16 * MiB);
	put(a, 16 * MiB);
	size_t rss = tu_rss_bytes();
	/* Phase 1 used it; phases 2..5 were quiet: at the begin of phase 6
	 * (K = 4) all but the floor goes back, from the top down. */
	quiet_phases(2, 5);
	ck_assert_uint_eq(ST(trims), 0);
	zk_pool_begin(6, 4);
	ck_assert_uint_ge(ST(trims), 1);
	ck_assert_uint_eq(ST(trimmed_bytes), 16 * MiB - FLOOR);
	ck_assert_uint_lt(tu_rss_bytes() + 13 * MiB, rss);
	for (size_t i = 0; i < FLOOR; i += PG) /* the bottom stays */
		ck_assert(a[i] == 1);
	zk_pool_set_epoch(6);
	uint64_t cleared = ST(cleared_bytes);
	bool z = true;
	zk_pool_fail_t why;
	char *b = zk_pool_alloc(NULL, 16 * MiB, PG, &z, &why);
	ck_assert_ptr_eq(b, a);
	ck_assert(z);
	ck_assert_uint_eq(ST(cleared_bytes) - cleared, FLOOR);
	ck_assert(tu_all_zero(b, 16 * MiB));
}
END_TEST

/* The decay takes only free pages of groups none of the last K phases
 * used; live blocks are never touched, whatever their age. */
START_TEST(decay_keeps_live_and_recent_pages)
{
	char *live = get(4 * MiB, PG, false); /* phase 1, kept */
	memset(live, 0x33, 4 * MiB);
	char *old = get(4 * MiB, PG, false);
	memset(old, 0x44, 4 * MiB);
	put(old, 4 * MiB); /* freed in phase 1 */
	quiet_phases(2, 3);
	char *recent = get(4 * MiB, PG, false);
	memset(recent, 0x55, 4 * MiB);
	put(recent, 4 * MiB); /* phase 3 */
	ck_assert_ptr_eq(recent, old); /* reused, and used again in 3 */
	char *r2 = get(16 * MiB, PG, false);
	memset(r2, 1, 16 * MiB);
	put(r2, 16 * MiB); /* phase 3 too */
	/* Begin of phase 6, K = 4: phases 2..5 count; 3 used them. */
	quiet_phases(4, 6);
	ck_assert_uint_eq(ST(trims), 0);
	/* Once none of the last K phases used them and the peaks that
	 * needed them are 16K phases back, every free page but the floor
	 * goes (all of them held data), no live one. */
	size_t free = atomic_load(&zk_pool.free_bytes);
	ck_assert_uint_ge(free, 16 * MiB);
	quiet_phases(7, 80);
	ck_assert_uint_ge(ST(trims), 1);
	/* Quiet phases peak at the live 4 MiB: keep an eighth of it too. */
	ck_assert_uint_eq(ST(trimmed_bytes), free - FLOOR - MiB / 2);
	for (size_t i = 0; i < 4 * MiB; i += PG)
		ck_assert(live[i] == 0x33);
}
END_TEST

/* With fewer than K phases behind, nothing is old; a peak of the last K
 * phases keeps its pages. */
START_TEST(decay_waits_for_k_phases)
{
	char *a = get(8 * MiB, PG, false);
	memset(a, 1, 8 * MiB);
	put(a, 8 * MiB);
	quiet_phases(2, 5);
	ck_assert_uint_eq(ST(trims), 0);
	zk_pool_begin(6, 4);
	ck_assert_uint_eq(ST(trimmed_bytes), 8 * MiB - FLOOR);
}
END_TEST

/* Phase 1 peaks at 32 MiB, phases 2..12 at `typical` MiB each, on the
 * same pages, but phase `again` (if not 0) at 32 MiB too; the begin of
 * phase 13 (K = 4) decides. Returns the trims made before phase again
 * ended. */
static uint64_t peak_then_typical(size_t typical, uint32_t again)
{
	uint64_t before = 0;
	char *a = get(32 * MiB, PG, false);
	memset(a, 1, 32 * MiB);
	put(a, 32 * MiB);
	for (uint32_t e = 2; e <= 12; e++) {
		zk_pool_begin(e, 4);
		zk_pool_set_epoch(e);
		if (e == again)
			before = ST(trims);
		size_t n = e == again ? 32 : typical;
		char *b = get(n * MiB, PG, false);
		ck_assert_ptr_eq(b, a);
		memset(b, 2, n * MiB);
		put(b, n * MiB);
	}
	zk_pool_begin(13, 4);
	return before;
}

/* A peak that came back within 16K phases keeps its pages from then on,
 * however far above the typical one: a proof whose threads race to a
 * higher peak now and then, or a bigger proof every few, does not fault
 * again. (Its first return finds them given back: nothing told that the
 * first was not a spike.) */
START_TEST(decay_keeps_a_recurring_peak)
{
	uint64_t before = peak_then_typical(3, 6);
	ck_assert_uint_eq(before, 1);
	ck_assert_uint_eq(ST(trims), before);
}
END_TEST

/* A lone spike (more than twice every other peak) is let go after K
 * phases, down to the typical peak plus an eighth and the floor; a lone
 * peak within twice the others is kept (threads racing to a higher peak
 * now and then). */
START_TEST(decay_lets_a_spike_go)
{
	peak_then_typical(3, 0);
	ck_assert_uint_eq(ST(trimmed_bytes),
			  32 * MiB - (3 * MiB + 3 * MiB / 8 + FLOOR));
}
END_TEST

START_TEST(decay_lets_a_small_spike_go)
{
	peak_then_typical(12, 0);
	ck_assert_uint_eq(ST(trimmed_bytes),
			  32 * MiB - (12 * MiB + 12 * MiB / 8 + FLOOR));
}
END_TEST

START_TEST(decay_keeps_a_lone_race_peak)
{
	peak_then_typical(20, 0);
	ck_assert_uint_eq(ST(trims), 0);
}
END_TEST

/* The whole region can be used, then the pool says it is full; a request
 * larger than the region is not "full" but "too big". */
START_TEST(full_and_too_big)
{
	size_t total = zk_pool.total;
	char *a = get(total - MiB, PG, false);
	zk_pool_fail_t why;
	bool z = false;
	ck_assert_ptr_null(zk_pool_alloc(NULL, 2 * MiB, PG, &z, &why));
	ck_assert_int_eq(why, ZK_POOL_FULL);
	ck_assert_ptr_null(
	    zk_pool_alloc(NULL, total + PG, PG, &z, &why));
	ck_assert_int_eq(why, ZK_POOL_TOO_BIG);
	/* size fits, alignment cannot */
	ck_assert_ptr_null(
	    zk_pool_alloc(NULL, PG, (size_t)1 << 40, &z, &why));
	ck_assert_int_eq(why, ZK_POOL_TOO_BIG);
	put(a, total - MiB);
	ck_assert_ptr_nonnull(zk_pool_alloc(NULL, total, PG, &z, &why));
}
END_TEST

/* The region is committed in 64 MiB steps as the bump pointer grows: the
 * commit charge follows use. A refused commit fails the request (ENOMEM
 * from the kernel), counted, and the pool stays usable. */
static int refuse_all(size_t size)
{
	(void)size;
	return ENOMEM;
}

START_TEST(commit_follows_use)
{
	ck_assert_uint_eq(atomic_load(&zk_pool.committed_bytes), 0);
	get(MiB, PG, false);
	ck_assert_uint_eq(atomic_load(&zk_pool.committed_bytes), 64 * MiB);
	get(64 * MiB, PG, false);
	ck_assert_uint_eq(atomic_load(&zk_pool.committed_bytes), 128 * MiB);
	zk_os_commit_fault = refuse_all;
	zk_pool_fail_t why;
	bool z = false;
	ck_assert_ptr_null(
	    zk_pool_alloc(NULL, 100 * MiB, PG, &z, &why));
	ck_assert_int_eq(why, ZK_POOL_COMMIT);
	ck_assert_uint_ge(ST(commit_failures), 1);
	/* What is committed still serves. */
	ck_assert_ptr_nonnull(zk_pool_alloc(NULL, MiB, PG, &z, &why));
	zk_os_commit_fault = NULL;
	ck_assert_ptr_nonnull(
	    zk_pool_alloc(NULL, 100 * MiB, PG, &z, &why));
}
END_TEST

/* new_addr: only exactly there, and only if free there. */
START_TEST(in_place_growth)
{
	char *a = get(MiB, PG, false), *b = get(MiB, PG, false);
	ck_assert_ptr_eq(b, a + MiB);
	zk_pool_fail_t why;
	bool z = false;
	/* b is in use: a cannot grow into it */
	ck_assert_ptr_null(zk_pool_alloc(a + MiB, MiB, PG, &z, &why));
	ck_assert_int_eq(why, ZK_POOL_NOPLACE);
	put(b, MiB);
	ck_assert_ptr_eq(zk_pool_alloc(a + MiB, MiB, PG, &z, &why),
			 a + MiB);
	/* at the bump pointer: fresh pages there */
	char *top = zk_pool.base + atomic_load(&zk_pool.top_bytes);
	ck_assert_ptr_eq(zk_pool_alloc(top, MiB, PG, &z, &why), top);
	/* outside the region */
	ck_assert_ptr_null(zk_pool_alloc((char *)&why, PG, PG, &z,
					 &why));
}
END_TEST

/* jemalloc (with retain, its default) merges an extent that is not the
 * first piece of a hook allocation with the one below it without checking
 * the arena: the pool must not take back a range whose next page starts
 * such a piece while jemalloc still holds it. */
START_TEST(prefix_of_a_held_piece_is_refused)
{
	char *a = get(4 * MiB, PG, false);
	/* jemalloc split it: [a, a+1M) and [a+1M, a+4M), the second not a
	 * head; the first comes back first. */
	ck_assert(!zk_pool_free(a, MiB));
	ck_assert_uint_eq(ST(dalloc_refused), 1);
	ck_assert_uint_eq(atomic_load(&zk_pool.free_bytes), 0);
	/* The upper piece comes back: its next page is no piece. */
	ck_assert(zk_pool_free(a + MiB, 3 * MiB));
	/* Now the lower one may come back too. */
	ck_assert(zk_pool_free(a, MiB));
	ck_assert_uint_eq(ST(live_bytes), 0);
	/* A range followed by another hook allocation's first page: fine. */
	char *b = get(MiB, PG, false), *c = get(MiB, PG, false);
	char *lo = b < c ? b : c, *hi = b < c ? c : b;
	ck_assert_ptr_eq(hi, lo + MiB);
	ck_assert(zk_pool_free(lo, MiB));
	ck_assert_uint_eq(ST(dalloc_refused), 1);
}
END_TEST

/* Small requests (under 1 MiB) take fresh pages of their own, from the
 * region's end down, and free ranges only there: a small block that stays
 * allocated (a thread cache's slab, a lazy table) never lands in the hole
 * a large block left, nor above the range that large blocks grow, so the
 * large block comes back to the same pages and the high water does not
 * move. */
START_TEST(small_blocks_keep_out_of_large_ranges)
{
	char *big = get(16 * MiB, PG, false);
	char *s1 = get(64 << 10, PG, false);
	ck_assert(s1 >= big + 16 * MiB);
	put(big, 16 * MiB);
	char *s2 = get(64 << 10, PG, false); /* kept, like a cached slab */
	ck_assert(s2 < big || s2 >= big + 16 * MiB);
	char *again = get(16 * MiB, PG, false);
	ck_assert_ptr_eq(again, big);
	/* A larger one grows the large range in place: no hole is left. */
	put(again, 16 * MiB);
	char *bigger = get(20 * MiB, PG, false);
	ck_assert_ptr_eq(bigger, big);
	ck_assert_uint_eq(atomic_load(&zk_pool.top_bytes),
			  (size_t)(bigger + 20 * MiB - zk_pool.base));
	put(bigger, 20 * MiB);
	put(s1, 64 << 10);
	put(s2, 64 << 10);
}
END_TEST

/* The two bump pointers meet: the region (256 MiB) filled from both ends,
 * every page once, and the commit charge never above the region. */
START_TEST(both_ends_meet)
{
	size_t total = zk_pool.total;
	char *big = get(total - 4 * MiB, PG, false);
	size_t n = 0;
	for (;;) {
		zk_pool_fail_t why;
		bool z = false;
		char *s = zk_pool_alloc(NULL, 512 << 10, PG, &z, &why);
		if (s == NULL) {
			ck_assert_int_eq(why, ZK_POOL_FULL);
			break;
		}
		ck_assert(s >= big + (total - 4 * MiB));
		ck_assert(s + (512 << 10) <= zk_pool.base + total);
		n++;
	}
	ck_assert_uint_eq(n, 8);
	ck_assert_uint_eq(atomic_load(&zk_pool.committed_bytes), total);
	put(big, total - 4 * MiB);
	/* a small request now fits in the large requests' free range */
	zk_pool_fail_t why;
	bool z = false;
	ck_assert_ptr_nonnull(zk_pool_alloc(NULL, 512 << 10, PG, &z, &why));
}
END_TEST

/* Checked mode: a freed range is unmapped from use (PROT_NONE, pages
 * given back) and reused only after the begin after next. */
static void setup_checked(void)
{
	ck_assert_int_eq(zk_pool_init(256 * MiB, false, true), 0);
	zk_pool_set_epoch(1);
}

static int touch_freed(void *arg)
{
	volatile char *p = arg;
	p[100] = 1; /* must fault */
	return 0;
}

START_TEST(quarantine_protects_then_releases)
{
	char *a = get(8 * MiB, PG, false);
	memset(a, 1, 8 * MiB);
	size_t rss = tu_rss_bytes();
	put(a, 8 * MiB);
	ck_assert_uint_eq(ST(quarantined_bytes), 8 * MiB);
	ck_assert_uint_lt(tu_rss_bytes() + 7 * MiB, rss);
	ck_assert(!zk_pool_page_used(a + 100));
	void *start;
	size_t size;
	uint32_t epoch;
	ck_assert(zk_pool_find_freed(a + 100, &start, &size, &epoch));
	ck_assert_ptr_eq(start, a);
	ck_assert_uint_eq(size, 8 * MiB);
	ck_assert_uint_eq(epoch, 1);
	char err[4096];
	int rc = tu_run_child(touch_freed, a, NULL, err, sizeof(err));
#if defined(__SANITIZE_ADDRESS__)
	/* AddressSanitizer catches the SIGSEGV, reports it and aborts. */
	ck_assert_int_eq(rc, 128 + SIGABRT);
	ck_assert(strstr(err, "SEGV") != NULL);
#else
	ck_assert_int_eq(rc, 128 + SIGSEGV);
#endif
	/* Not reused while quarantined. */
	char *b = get(8 * MiB, PG, false);
	ck_assert(b != a);
	zk_pool_begin(2, 4);
	ck_assert_uint_eq(ST(quarantined_bytes), 8 * MiB);
	zk_pool_begin(3, 4); /* freed in phase 1 < 3 - 1: released */
	ck_assert_uint_eq(ST(quarantined_bytes), 0);
	zk_pool_set_epoch(3);
	char *c = get(8 * MiB, PG, true);
	ck_assert_ptr_eq(c, a);
	ck_assert(tu_all_zero(c, 8 * MiB));
}
END_TEST

/* A fork while another thread holds the pool lock: the child cannot trust
 * the bookkeeping, so it serves fresh pages only and refuses frees; it
 * never hangs. */
static int child_after_fork(void *arg)
{
	(void)arg;
	zk_pool_fork_child();
	if (!atomic_load(&zk_pool.degraded))
		return 2;
	zk_pool_fail_t why;
	bool z = false;
	size_t top = atomic_load(&zk_pool.top_bytes);
	char *p = zk_pool_alloc(NULL, MiB, PG, &z, &why);
	if (p == NULL || (size_t)(p - zk_pool.base) < top)
		return 3; /* must be fresh */
	memset(p, 1, MiB);
	if (zk_pool_free(p, MiB))
		return 4; /* refused: jemalloc keeps it */
	return 0;
}

static pthread_mutex_t hold = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t held_cv = PTHREAD_COND_INITIALIZER;
static int held_state;

static void hook_wait(void)
{
	pthread_mutex_lock(&hold);
	held_state = 1;
	pthread_cond_broadcast(&held_cv);
	while (held_state != 2)
		pthread_cond_wait(&held_cv, &hold);
	pthread_mutex_unlock(&hold);
}

static void *holder(void *arg)
{
	(void)arg;
	zk_pool_fail_t why;
	bool z = false;
	zk_pool_alloc(NULL, MiB, PG, &z, &why);
	return NULL;
}

START_TEST(fork_inside_another_threads_pool_operation)
{
	char *a = get(MiB, PG, false);
	put(a, MiB);
	zk_pool_locked_hook = hook_wait;
	pthread_t t;
	pthread_create(&t, NULL, holder, NULL);
	pthread_mutex_lock(&hold);
	while (held_state != 1)
		pthread_cond_wait(&held_cv, &hold);
	pthread_mutex_unlock(&hold);
	zk_pool_locked_hook = NULL;
	/* The other thread is inside the lock now. */
	pid_t pid = fork();
	if (pid == 0)
		_exit(child_after_fork(NULL));
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	pthread_mutex_lock(&hold);
	held_state = 2;
	pthread_cond_broadcast(&held_cv);
	pthread_mutex_unlock(&hold);
	pthread_join(t, NULL);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "child status %d", status);
	/* The parent is unaffected. */
	ck_assert(!atomic_load(&zk_pool.degraded));
	char *b = get(MiB, PG, false);
	ck_assert(zk_pool_free(b, MiB));
}
END_TEST

/* Without a region the pool serves nothing and says why. */
START_TEST(no_region)
{
	zk_pool_fail_t why;
	bool z = false;
	ck_assert_ptr_null(zk_pool_alloc(NULL, PG, PG, &z, &why));
	ck_assert_int_eq(why, ZK_POOL_NONE);
	ck_assert(!zk_pool_free(&why, PG));
	ck_assert(!zk_pool_owns(&why));
	zk_pool_begin(9, 1); /* a no-op */
}
END_TEST

int main(void)
{
	Suite *s = suite_create("pool");
	TCase *tc = tcase_create("ranges");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, ranges_are_disjoint_and_aligned);
	tcase_add_test(tc, freed_pages_are_reused_before_fresh_ones);
	tcase_add_test(tc, neighbours_coalesce);
	tcase_add_test(tc, only_dirty_pages_are_cleared);
	tcase_add_test(tc, full_and_too_big);
	tcase_add_test(tc, commit_follows_use);
	tcase_add_test(tc, in_place_growth);
	tcase_add_test(tc, small_blocks_keep_out_of_large_ranges);
	tcase_add_test(tc, both_ends_meet);
	tcase_add_test(tc, prefix_of_a_held_piece_is_refused);
	tcase_add_test(tc, fork_inside_another_threads_pool_operation);
	suite_add_tcase(s, tc);
	tc = tcase_create("decay");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, given_back_pages_are_zero_again);
	tcase_add_test(tc, decay_keeps_live_and_recent_pages);
	tcase_add_test(tc, decay_waits_for_k_phases);
	tcase_add_test(tc, decay_keeps_a_recurring_peak);
	tcase_add_test(tc, decay_lets_a_spike_go);
	tcase_add_test(tc, decay_lets_a_small_spike_go);
	tcase_add_test(tc, decay_keeps_a_lone_race_peak);
	suite_add_tcase(s, tc);
	tc = tcase_create("checked");
	tcase_add_checked_fixture(tc, setup_checked, NULL);
	tcase_add_test(tc, quarantine_protects_then_releases);
	suite_add_tcase(s, tc);
	tc = tcase_create("none");
	tcase_add_test(tc, no_region);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
