/* hooks.c: what jemalloc asks of a slab, observed by interception counters
 * and by the memory itself. */
#include "hooks.h"
#include "phase.h"
#include "testutil.h"

#include <check.h>
#include <stdio.h>
#include <string.h>
#include <zkalloc.h>

#define MiB  ((size_t)1 << 20)
#define C(f) atomic_load(&zk_hook_counters.f.n)
/* Large blocks start at a random cache-line offset in their first page
 * (jemalloc's cache-oblivious layout), so compare pages. */
#define PAGE_OF(p) ((uintptr_t)(p) & ~(uintptr_t)4095)

static void teardown(void)
{
	zk_end_phase();
}

START_TEST(arena_metadata_and_extents_come_from_the_slab)
{
	uint64_t a0 = C(alloc);
	ck_assert_int_eq(zk_begin_phase(), 0);
	/* the arena is made lazily: nothing asked of the hooks yet */
	ck_assert_uint_eq(C(alloc), a0);
	void *p = zk_malloc(MiB);
	ck_assert(zk_owns(p));
	ck_assert_ptr_nonnull(zk_tls.slab);
	/* base block (2 MiB aligned, at the slab start) + at least one extent
	 */
	ck_assert_uint_ge(C(alloc), a0 + 2);
	ck_assert_uint_ge(zk_slab_used(zk_tls.slab), 2 * MiB + MiB);
	ck_assert_ptr_eq(zk_region_slab_of(&zk_g.region, p), zk_tls.slab);
	ck_assert_uint_gt(C(split),
			  0); /* 1 MiB carved from a larger grow chunk */
	zk_free(p);
}
END_TEST

START_TEST(fresh_pages_are_not_cleared_recycled_ones_are)
{
	ck_assert_int_eq(zk_begin_phase(), 0);
	uint64_t z0 = C(zeroed_bytes), fresh0 = C(alloc_fresh);
	long f0 = tu_minor_faults();
	char *p = zk_calloc(1, 8 * MiB);
	/* Fresh pages are reported zeroed, so nobody writes them: a memset
	 * would have faulted in all 2048 pages. */
	ck_assert_int_lt(tu_minor_faults() - f0, 64);
	ck_assert(zk_owns(p));
	ck_assert_uint_gt(C(alloc_fresh), fresh0);
	ck_assert(tu_all_zero(p, 8 * MiB));
	ck_assert_uint_eq(C(zeroed_bytes), z0);
	memset(p, 0xff, 8 * MiB);
	zk_free(p);
	zk_end_phase();

	/* Next phase: the same pages, dirty; calloc must still see zeroes
	 * (cleared by the hook or by jemalloc, which knows they are not). */
	ck_assert_int_eq(zk_begin_phase(), 0);
	char *q = zk_calloc(1, 8 * MiB);
	ck_assert(zk_owns(q));
	ck_assert_uint_eq(PAGE_OF(q), PAGE_OF(p)); /* same layout every phase */
	ck_assert(tu_all_zero(q, 8 * MiB));
	memset(q, 0xee, 8 * MiB);
	zk_free(q);
	char *r = zk_calloc(8, MiB);
	ck_assert(
	    tu_all_zero(r, 8 * MiB)); /* freed in the phase, reused zeroed */
	zk_free(r);
}
END_TEST

/* A slab whose earlier phase touched only a little: the next phase's
 * arena gets one committed extent (so a larger proof can start on the
 * resident pages), and jemalloc clears what calloc takes from it. */
START_TEST(calloc_on_a_used_slab_is_zeroed)
{
	ck_assert_int_eq(zk_begin_phase(), 0);
	char *p = zk_malloc(8 * MiB); /* the slab of the 128 MiB block below */
	memset(p, 0x77, 8 * MiB);
	zk_free(p);
	zk_end_phase();
	ck_assert_int_eq(zk_begin_phase(), 0);
	char *q = zk_calloc(1, 128 * MiB);
	ck_assert(zk_owns(q));
	ck_assert_uint_eq(PAGE_OF(q), PAGE_OF(p)); /* starts on the old pages */
	ck_assert(tu_all_zero(q, 128 * MiB));
	memset(q, 0x55, 128 * MiB);
	zk_free(q);
	zk_end_phase();
	ck_assert_int_eq(zk_begin_phase(), 0);
	char *r = zk_calloc(1, 128 * MiB);
	ck_assert(tu_all_zero(r, 128 * MiB));
	zk_free(r);
}
END_TEST

START_TEST(purges_are_refused_pages_stay)
{
	ck_assert_int_eq(zk_begin_phase(), 0);
	char *p = zk_malloc(16 * MiB);
	ck_assert(zk_owns(p));
	tu_fill(p, 16 * MiB, 7);
	unsigned ind = zk_region_slab_of(&zk_g.region, p)->arena_ind;
	zk_free(p);
	char name[64];
	snprintf(name, sizeof(name), "arena.%u.purge", ind);
	ck_assert_int_eq(zk_mallctl(name, NULL, NULL, NULL, 0), 0);
	/* MADV_DONTNEED would have made these pages read as zero */
	ck_assert_uint_eq(tu_check(p, 16 * MiB, 7), SIZE_MAX);
	long f0 = tu_minor_faults();
	char *q = zk_malloc(16 * MiB);
	ck_assert_uint_eq(PAGE_OF(q), PAGE_OF(p)); /* reused in the phase */
	memset(q, 1, 16 * MiB);
	ck_assert_int_lt(tu_minor_faults() - f0, 16);
	zk_free(q);
}
END_TEST

START_TEST(begin_resets_and_reuses)
{
	ck_assert_int_eq(zk_begin_phase(), 0);
	void *p = zk_malloc(32 * MiB);
	zk_slab_t *s = zk_region_slab_of(&zk_g.region, p);
	size_t used = zk_slab_used(s);
	ck_assert_uint_gt(used, 32 * MiB);
	uint64_t c0 = atomic_load(&zk_g.arenas_created);
	uint64_t r0 = atomic_load(&zk_g.arenas_reset);
	unsigned ind = s->arena_ind;
	zk_end_phase();
	ck_assert_int_eq(zk_begin_phase(), 0);
	/* the arena is emptied, not re-made; the slab keeps its layout */
	ck_assert_uint_eq(atomic_load(&zk_g.arenas_reset), r0 + 1);
	ck_assert_uint_eq(atomic_load(&zk_g.arenas_created), c0);
	ck_assert_uint_eq(zk_slab_used(s), used);
	void *q = zk_malloc(32 * MiB);
	ck_assert_uint_eq(PAGE_OF(q), PAGE_OF(p));
	/* the same slab again (the thread's own, or the shared one) */
	ck_assert_ptr_eq(zk_region_slab_of(&zk_g.region, q), s);
	ck_assert_uint_eq(s->arena_ind, ind);
	zk_free(q);
}
END_TEST

/* Issue 8.5: a freed block is reused for much smaller requests (jemalloc
 * splits a dirty extent only up to 64x the request; phase arenas purge at
 * once into the retained set, which has no such limit). */
START_TEST(freed_block_serves_many_smaller_ones)
{
	ck_assert_int_eq(zk_begin_phase(), 0);
	uint64_t o0 = atomic_load(&zk_g.overflow_count);
	size_t big = (size_t)6 << 30;
	void *p = zk_malloc(big);
	ck_assert(zk_owns(p));
	zk_free(p);
	void *v[64];
	for (int i = 0; i < 64; i++) {
		v[i] = zk_malloc(64 * MiB);
		ck_assert_msg(zk_owns(v[i]), "block %d overflowed", i);
	}
	ck_assert_uint_eq(atomic_load(&zk_g.overflow_count), o0);
	for (int i = 0; i < 64; i++)
		zk_free(v[i]);
	/* and the whole can be had again as one block */
	p = zk_malloc(big);
	ck_assert(zk_owns(p));
	zk_free(p);
}
END_TEST

START_TEST(alignments_up_to_64_mib)
{
	ck_assert_int_eq(zk_begin_phase(), 0);
	for (size_t al = 4096; al <= 64 * MiB; al <<= 1) {
		char *p = zk_aligned_alloc(al, 3 * MiB + 5);
		ck_assert_ptr_nonnull(p);
		ck_assert_msg(zk_owns(p), "alignment %zu not in phase", al);
		ck_assert_uint_eq((uintptr_t)p % al, 0);
		memset(p, 0x5a, 3 * MiB + 5);
		ck_assert_uint_ge(zk_malloc_usable_size(p), 3 * MiB + 5);
		zk_free(p);
	}
}
END_TEST

/* Issue 8.14: the contract's single-block capacity is what the code does:
 * a block of max_block (size plus alignment) is phase memory, the next
 * size class is not, and alignments of up to a quarter of it too. */
START_TEST(max_block_is_what_a_slab_holds)
{
	ck_assert_int_eq(zk_begin_phase(), 0);
	size_t max = tu_stats().max_block;
	size_t slab = tu_stats().slab_size;
	ck_assert_uint_ge(max, slab / 8 * 7);
	void *p = zk_malloc(max);
	ck_assert(zk_owns(p));
	zk_free(p);
	p = zk_malloc(max + max / 7 + 1); /* the next size class */
	ck_assert(!zk_owns(p));
	zk_free(p);
	size_t al = (size_t)1 << (63 - __builtin_clzll(max / 4));
	p = zk_aligned_alloc(al, max / 2);
	ck_assert(zk_owns(p));
	ck_assert_uint_eq((uintptr_t)p % al, 0);
	zk_free(p);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("hooks");
	TCase *tc = tcase_create("interception");
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_add_test(tc, arena_metadata_and_extents_come_from_the_slab);
	tcase_add_test(tc, fresh_pages_are_not_cleared_recycled_ones_are);
	tcase_add_test(tc, calloc_on_a_used_slab_is_zeroed);
	tcase_add_test(tc, purges_are_refused_pages_stay);
	tcase_add_test(tc, begin_resets_and_reuses);
	tcase_add_test(tc, freed_block_serves_many_smaller_ones);
	tcase_add_test(tc, alignments_up_to_64_mib);
	tcase_add_test(tc, max_block_is_what_a_slab_holds);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
