/* hooks.c: jemalloc arenas over the pool, observed through the hooks'
 * counters, the pool's bookkeeping and the memory itself. No phase: the
 * arenas are made here with arenas.create and used with MALLOCX_ARENA. */
#include "hooks.h"
#include "je.h"
#include "pool.h"
#include "testutil.h"

#include <check.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

#define MiB	   ((size_t)1 << 20)
#define C(f)	   atomic_load(&zk_hook_counters.f.n)
#define ST(f)	   atomic_load(&zk_pool.stats.f)
#define TOP()	   atomic_load(&zk_pool.top_bytes)
#define FREE_BYTES atomic_load(&zk_pool.free_bytes)

static unsigned make_arena(void)
{
	extent_hooks_t *h = &zk_hooks;
	unsigned ind;
	size_t len = sizeof(ind);
	ck_assert_int_eq(je_mallctl("arenas.create", &ind, &len, &h, sizeof(h)),
			 0);
	char name[64];
	ssize_t decay = 0;
	snprintf(name, sizeof(name), "arena.%u.dirty_decay_ms", ind);
	ck_assert_int_eq(je_mallctl(name, NULL, NULL, &decay, sizeof(decay)),
			 0);
	snprintf(name, sizeof(name), "arena.%u.muzzy_decay_ms", ind);
	ck_assert_int_eq(je_mallctl(name, NULL, NULL, &decay, sizeof(decay)),
			 0);
	return ind;
}

static void *get(unsigned arena, size_t size, int flags)
{
	void *p = je_mallocx(size, flags | MALLOCX_ARENA(arena) |
				       MALLOCX_TCACHE_NONE);
	ck_assert_ptr_nonnull(p);
	return p;
}

static void put(void *p)
{
	je_dallocx(p, MALLOCX_TCACHE_NONE);
}

/* Each test in its own forked child: a fresh 256 MiB pool. */
static void setup(void)
{
	ck_assert_int_eq(zk_pool_init(256 * MiB, false, false), 0);
	zk_pool_set_epoch(1);
}

/* An arena's metadata is mapped apart from the pool (it lives as long as
 * the arena, and in the pool it would stand between free ranges); its
 * blocks, large and small, are the pool's. */
START_TEST(metadata_apart_extents_from_the_pool)
{
	uint64_t live0 = ST(live_bytes), top0 = TOP();
	unsigned a = make_arena();
	/* arenas.create asked the hooks for the arena's metadata */
	ck_assert_uint_ge(ST(meta_bytes), 2 * MiB);
	ck_assert_uint_eq(ST(live_bytes), live0);
	ck_assert_uint_eq(TOP(), top0);
	ck_assert_uint_ge(C(alloc), 1);
	uint64_t grow0 = C(grow_refused);
	void *p = get(a, MiB, 0);
	ck_assert(zk_pool_owns(p));
	/* jemalloc first asked for an exp-grow chunk, was refused, then
	 * asked for the exact extent */
	ck_assert_uint_gt(C(grow_refused), grow0);
	ck_assert_uint_eq(ST(live_bytes) - live0, MiB + 4096);
	void *s = get(a, 64, 0); /* small blocks: a slab from the pool */
	ck_assert(zk_pool_owns(s));
	put(s);
	put(p);
}
END_TEST

/* A freed extent goes back to the pool at once (decay 0, dalloc
 * accepted), and another arena gets the same, resident pages. */
START_TEST(freed_extents_serve_every_arena)
{
	unsigned a = make_arena(), b = make_arena();
	char *p = get(a, 64 * MiB, 0);
	memset(p, 1, 64 * MiB);
	uint64_t live = ST(live_bytes), freeb = FREE_BYTES;
	put(p);
	ck_assert_uint_eq(ST(live_bytes), live - (64 * MiB + 4096));
	ck_assert_uint_ge(FREE_BYTES, freeb + 64 * MiB);
	size_t top = atomic_load(&zk_pool.top_bytes);
	long f0 = tu_minor_faults();
	char *q = get(b, 64 * MiB, 0);
	memset(q, 2, 64 * MiB);
	ck_assert_int_lt(tu_minor_faults() - f0, 64);
	ck_assert_uint_eq(atomic_load(&zk_pool.top_bytes), top);
	ck_assert_uint_lt((uintptr_t)q - (uintptr_t)p + 4096, 2 * 4096 + 1);
	put(q);
}
END_TEST

/* calloc on recycled pages sees zeroes; only what held data is cleared
 * with memset, and the hook counts it. */
START_TEST(zeroed_requests_on_recycled_pages)
{
	unsigned a = make_arena();
	char *p = get(a, 32 * MiB, 0);
	memset(p, 0x77, 2 * MiB); /* 2 of 32 MiB hold data */
	put(p);
	/* ... unless jemalloc junk-fills (opt.junk, on in debug builds):
	 * then it wrote all 32 MiB itself. */
	const char *junk = "false";
	size_t jlen = sizeof(junk);
	je_mallctl("opt.junk", &junk, &jlen, NULL, 0);
	size_t held = strcmp(junk, "false") == 0 ? 2 * MiB : 32 * MiB;
	uint64_t z0 = ST(cleared_bytes), m0 = ST(memset_bytes);
	size_t rss = tu_rss_bytes();
	char *q = get(a, 32 * MiB, MALLOCX_ZERO);
	/* Measured before reading q: on some kernels a read of a page that
	 * was given back maps a fresh page rather than the zero page. */
	ck_assert_uint_lt(tu_rss_bytes(), rss + held);
	ck_assert_uint_ge(ST(cleared_bytes) - z0, 32 * MiB);
	ck_assert_uint_ge(ST(memset_bytes) - m0, held);
	ck_assert_uint_lt(ST(memset_bytes) - m0, held + MiB);
	ck_assert(tu_all_zero(q, 32 * MiB));
	/* Fresh pages asked for zero (q still held, so nothing recycled
	 * fits): counted as fresh, nothing cleared, nothing faulted in. */
	uint64_t fresh0 = ST(fresh_allocs), z1 = ST(cleared_bytes);
	long f0 = tu_minor_faults();
	char *r = get(a, 128 * MiB, MALLOCX_ZERO);
	ck_assert_int_lt(tu_minor_faults() - f0, 32);
	ck_assert_uint_gt(ST(fresh_allocs), fresh0);
	ck_assert_uint_eq(ST(cleared_bytes), z1);
	ck_assert(tu_all_zero(r, 128 * MiB));
	put(r);
	put(q);
}
END_TEST

/* jemalloc's purges (which some libraries call) cannot take the pool's
 * pages: live data survives, free pages stay resident. */
START_TEST(purges_keep_pages)
{
	unsigned a = make_arena();
	char *live = get(a, 8 * MiB, 0), *gone = get(a, 8 * MiB, 0);
	memset(live, 0x42, 8 * MiB);
	memset(gone, 0x43, 8 * MiB);
	put(gone);
	size_t rss = tu_rss_bytes();
	char name[64];
	snprintf(name, sizeof(name), "arena.%u.purge", a);
	ck_assert_int_eq(je_mallctl(name, NULL, NULL, NULL, 0), 0);
	ck_assert_int_eq(je_mallctl("arena.4096.purge", NULL, NULL, NULL, 0),
			 0);
	ck_assert_uint_gt(tu_rss_bytes() + MiB, rss);
	for (size_t i = 0; i < 8 * MiB; i += 4096)
		ck_assert(live[i] == 0x42);
	put(live);
}
END_TEST

/* A request the pool cannot hold gets a mapping of its own outside the
 * region: counted, unmapped when freed (jemalloc does not keep it), so the
 * arena's next request comes from the pool again. */
START_TEST(overflow_gets_a_mapping_of_its_own)
{
	unsigned a = make_arena();
	uint64_t o0 = C(overflow);
	char *big = get(a, 320 * MiB, 0); /* the region is 256 MiB */
	ck_assert(!zk_pool_owns(big));
	ck_assert_uint_eq(C(overflow), o0 + 1);
	ck_assert_uint_ge(C(overflow_bytes), 320 * MiB);
	memset(big, 1, MiB);
	memset(big + 320 * MiB - MiB, 1, MiB);
	put(big);
	char *fits = get(a, 64 * MiB, 0);
	ck_assert(zk_pool_owns(fits));
	put(fits);
}
END_TEST

/* Blocks shrunk in place are split extents; their pieces come back in
 * any order and the pool's extent count ends where it began. */
START_TEST(split_pieces_come_back)
{
	unsigned a = make_arena();
	uint64_t ext0 = ST(live_extents), bytes0 = ST(live_bytes);
	char *p = get(a, 16 * MiB, 0);
	memset(p, 5, 16 * MiB);
	char *q = je_rallocx(p, 4 * MiB, MALLOCX_ARENA(a) |
					     MALLOCX_TCACHE_NONE);
	ck_assert_ptr_eq(q, p); /* shrunk in place: split */
	ck_assert_uint_gt(C(split), 0);
	for (size_t i = 0; i < 4 * MiB; i += 4096)
		ck_assert(q[i] == 5);
	put(q);
	ck_assert_uint_eq(ST(live_bytes), bytes0);
	ck_assert_uint_eq(ST(live_extents), ext0);
}
END_TEST

/* Alignments jemalloc may ask for, up to 64 MiB. */
START_TEST(alignments)
{
	unsigned a = make_arena();
	for (unsigned lg = 12; lg <= 26; lg += 2) {
		char *p = get(a, 3 * MiB, MALLOCX_LG_ALIGN(lg));
		ck_assert(zk_pool_owns(p));
		ck_assert_uint_eq((uintptr_t)p & (((uintptr_t)1 << lg) - 1),
				  0);
		memset(p, 1, 3 * MiB);
		put(p);
	}
}
END_TEST

/* A pool degraded by a fork cannot take extents back: jemalloc keeps
 * them, and the purge hook gives their pages back to the kernel. */
START_TEST(degraded_pool_refuses_and_purges)
{
	unsigned a = make_arena();
	char *p = get(a, 32 * MiB, 0);
	memset(p, 1, 32 * MiB);
	atomic_store(&zk_pool.degraded, true);
	size_t rss = tu_rss_bytes();
	uint64_t live = ST(live_bytes);
	put(p);
	ck_assert_uint_eq(ST(live_bytes), live); /* still jemalloc's */
	ck_assert_uint_lt(tu_rss_bytes() + 16 * MiB, rss);
	/* jemalloc reuses it itself */
	char *q = get(a, 32 * MiB, 0);
	ck_assert(zk_pool_owns(q));
	memset(q, 2, 32 * MiB);
	put(q);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("hooks");
	TCase *tc = tcase_create("pool");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, metadata_apart_extents_from_the_pool);
	tcase_add_test(tc, freed_extents_serve_every_arena);
	tcase_add_test(tc, zeroed_requests_on_recycled_pages);
	tcase_add_test(tc, purges_keep_pages);
	tcase_add_test(tc, overflow_gets_a_mapping_of_its_own);
	tcase_add_test(tc, split_pieces_come_back);
	tcase_add_test(tc, alignments);
	tcase_add_test(tc, degraded_pool_refuses_and_purges);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
