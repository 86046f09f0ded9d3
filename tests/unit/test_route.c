/* route.c: the routing decision, realloc stickiness, calloc, alignment,
 * usable size, explicit arenas, overflow, promotion, resident small. */
#include "phase.h"
#include "testutil.h"

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zkalloc.h>

#define MiB ((size_t)1 << 20)

/* Under AddressSanitizer every access also reads shadow memory, whose zero
 * pages fault on their own; the bound is looser there. */
#if defined(__SANITIZE_ADDRESS__)
#define FAULT_RATIO 4
#else
#define FAULT_RATIO 10
#endif

static void teardown(void)
{
	zk_end_phase();
}

static size_t min_bytes(void)
{
	size_t v, len = sizeof(v);
	ck_assert_int_eq(zk_mallctl("zk.opt.min_bytes", &v, &len, NULL, 0), 0);
	return v;
}

START_TEST(small_and_large_in_and_out_of_phase)
{
	size_t min = min_bytes();
	void *out_small = zk_malloc(64), *out_large = zk_malloc(8 * MiB);
	ck_assert(!zk_owns(out_small) && !zk_owns(out_large));
	ck_assert_int_eq(zk_begin_phase(), 0);
	void *in_small = zk_malloc(64);
	void *below = zk_malloc(min - 1);
	void *at = zk_malloc(min);
	void *in_large = zk_malloc(8 * MiB);
	ck_assert(!zk_owns(in_small));
	ck_assert(!zk_owns(below));
	ck_assert(zk_owns(at));
	ck_assert(zk_owns(in_large));
	ck_assert_int_eq(
	    zk_arena_flags(),
	    (int)(MALLOCX_ARENA(zk_tls.slab->arena_ind) | MALLOCX_TCACHE_NONE));
	zk_end_phase();
	ck_assert_int_eq(zk_arena_flags(), 0);
	void *after = zk_malloc(8 * MiB);
	ck_assert(!zk_owns(after));
	void *all[] = {out_small, out_large, in_small, below,
		       at,	  in_large,  after};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		zk_free(all[i]);
	zk_free(NULL);
	ck_assert_uint_eq(tu_stats().overflow_count, 0);
}
END_TEST

START_TEST(explicit_arena_is_honoured)
{
	unsigned ind;
	size_t len = sizeof(ind);
	ck_assert_int_eq(zk_mallctl("arenas.create", &ind, &len, NULL, 0), 0);
	ck_assert_int_eq(zk_begin_phase(), 0);
	void *p = zk_mallocx(8 * MiB, MALLOCX_ARENA(ind) | MALLOCX_TCACHE_NONE);
	ck_assert(!zk_owns(p));
	unsigned got;
	size_t glen = sizeof(got);
	ck_assert_int_eq(
	    zk_mallctl("arenas.lookup", &got, &glen, &p, sizeof(p)), 0);
	ck_assert_uint_eq(got, ind);
	zk_dallocx(p, MALLOCX_TCACHE_NONE);
	/* and the opt-in flags put a je_mallocx call in the phase arena */
	int f = zk_arena_flags();
	ck_assert_int_ne(f, 0);
	void *q = je_mallocx(8 * MiB, f);
	ck_assert(zk_owns(q));
	zk_free(q);
}
END_TEST

START_TEST(realloc_is_sticky_both_ways)
{
	void *ord = zk_malloc(100);
	ck_assert_int_eq(zk_begin_phase(), 0);
	/* an ordinary block never moves into the region */
	tu_fill(ord, 100, 1);
	ord = zk_realloc(ord, 64 * MiB);
	ck_assert(!zk_owns(ord));
	ck_assert_uint_eq(tu_check(ord, 100, 1), SIZE_MAX);
	/* a phase block grows, and shrinks, inside its own slab */
	char *ph = zk_malloc(1 * MiB);
	zk_slab_t *slab = zk_region_slab_of(&zk_g.region, ph);
	tu_fill(ph, MiB, 2);
	for (size_t sz = 2 * MiB; sz <= 128 * MiB; sz *= 2) {
		ph = zk_realloc(ph, sz);
		ck_assert_ptr_eq(zk_region_slab_of(&zk_g.region, ph), slab);
	}
	ck_assert_uint_eq(tu_check(ph, MiB, 2), SIZE_MAX);
	ph = zk_realloc(ph, 100);
	ck_assert(zk_owns(ph));
	ck_assert_uint_eq(tu_check(ph, 100, 2), SIZE_MAX);
	size_t usable = zk_malloc_usable_size(ph);
	ph = zk_rallocx(ph, 3 * MiB, MALLOCX_ZERO); /* zeroes past old usable */
	ck_assert(zk_owns(ph));
	ck_assert(tu_all_zero(ph + usable, 3 * MiB - usable));
	/* even after the phase ends */
	zk_end_phase();
	ph = zk_realloc(ph, 5 * MiB);
	ck_assert_ptr_eq(zk_region_slab_of(&zk_g.region, ph), slab);
	ck_assert_uint_eq(tu_check(ph, 100, 2), SIZE_MAX);
	/* realloc(p, 0) frees and returns NULL, as glibc's */
	ck_assert_ptr_null(zk_realloc(ph, 0));
	ck_assert_ptr_null(zk_realloc(ord, 0));
	void *fresh = zk_realloc(NULL, 10);
	ck_assert_ptr_nonnull(fresh);
	zk_free(fresh);
	ck_assert_uint_eq(tu_stats().overflow_count, 0);
}
END_TEST

START_TEST(calloc_and_overflowing_counts)
{
	ck_assert_int_eq(zk_begin_phase(), 0);
	char *p = zk_malloc(16 * MiB);
	memset(p, 0xcd, 16 * MiB);
	zk_free(p);
	char *q = zk_calloc(4, 4 * MiB); /* reuses the dirty block */
	ck_assert(zk_owns(q));
	ck_assert(tu_all_zero(q, 16 * MiB));
	zk_free(q);
	errno = 0;
	ck_assert_ptr_null(zk_calloc(SIZE_MAX / 2, 3));
	ck_assert_int_eq(errno, ENOMEM);
	void *z = zk_calloc(0, 5);
	ck_assert_ptr_nonnull(z);
	zk_free(z);
}
END_TEST

START_TEST(alignment_and_usable_size)
{
	void *out = (void *)0x1;
	ck_assert_int_eq(zk_posix_memalign(&out, 3, 64), EINVAL);
	ck_assert_int_eq(zk_posix_memalign(&out, 4, 64), EINVAL); /* < void* */
	ck_assert_ptr_eq(out, (void *)0x1);
	errno = 0;
	ck_assert_ptr_null(zk_aligned_alloc(48, 64));
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(zk_begin_phase(), 0);
	for (size_t al = 8; al <= 4 * MiB; al <<= 1) {
		void *p;
		ck_assert_int_eq(zk_posix_memalign(&p, al, 100 * 1024), 0);
		ck_assert_uint_eq((uintptr_t)p % al, 0);
		ck_assert(zk_owns(p));
		ck_assert_uint_ge(zk_malloc_usable_size(p), 100 * 1024);
		memset(p, 1, zk_malloc_usable_size(p));
		zk_free(p);
	}
	ck_assert_uint_eq(zk_malloc_usable_size(NULL), 0);
	void *s = zk_malloc(0); /* unique, freeable */
	void *t = zk_malloc(0);
	ck_assert_ptr_nonnull(s);
	ck_assert_ptr_ne(s, t);
	zk_free(s);
	zk_free(t);
}
END_TEST

/* --- ZK_TEST_MODE=tiny_slab (ZK_ALLOC_SLAB_GB=0.0625 = 64 MiB) ------------ */

START_TEST(overflow_keeps_data_and_counts)
{
	ck_assert_int_eq(zk_begin_phase(), 0);
	char *a = zk_malloc(24 * MiB), *b = zk_malloc(24 * MiB);
	ck_assert(zk_owns(a) && zk_owns(b));
	tu_fill(a, 24 * MiB, 1);
	tu_fill(b, 24 * MiB, 2);
	zk_stats_t s0 = tu_stats();
	char *c = zk_malloc(40 * MiB); /* does not fit in the slab */
	ck_assert_ptr_nonnull(c);
	ck_assert(!zk_owns(c));
	tu_fill(c, 40 * MiB, 3);
	zk_stats_t s1 = tu_stats();
	ck_assert_uint_eq(s1.overflow_count, s0.overflow_count + 1);
	ck_assert_uint_eq(s1.overflow_bytes, s0.overflow_bytes + 40 * MiB);
	/* a phase block that cannot grow in its slab moves out, intact */
	b = zk_realloc(b, 48 * MiB);
	ck_assert_ptr_nonnull(b);
	ck_assert(!zk_owns(b));
	ck_assert_uint_eq(tu_check(b, 24 * MiB, 2), SIZE_MAX);
	ck_assert_uint_eq(tu_stats().overflow_count, s0.overflow_count + 2);
	ck_assert_uint_eq(tu_check(a, 24 * MiB, 1), SIZE_MAX);
	ck_assert_uint_eq(tu_check(c, 40 * MiB, 3), SIZE_MAX);
	zk_free(a);
	zk_free(b);
	zk_free(c);
	/* freed in the phase, reused in the phase: this fits again */
	char *d = zk_malloc(40 * MiB);
	ck_assert(zk_owns(d));
	zk_free(d);
	zk_stats_t st = tu_stats();
	ck_assert_uint_le(st.max_slab_resident, 64 * MiB);
	ck_assert_uint_ge(st.max_slab_resident, 40 * MiB);
}
END_TEST

/* --- ZK_TEST_MODE=promote (ZK_ALLOC_PROMOTE_BYTES=1M) --------------------- */

START_TEST(promotion_moves_growing_vectors)
{
	char *v = zk_malloc(16);
	tu_fill(v, 16, 4);
	v = zk_realloc(v, 2 * MiB); /* outside a phase: never promoted */
	ck_assert(!zk_owns(v));
	ck_assert_int_eq(zk_begin_phase(), 0);
	size_t n = 16;
	char *w = zk_malloc(n);
	tu_fill(w, n, 5);
	while (n < 64 * MiB) {
		n *= 2;
		w = zk_realloc(w, n);
		ck_assert_uint_eq(tu_check(w, 16, 5), SIZE_MAX);
		ck_assert_int_eq(zk_owns(w), n >= MiB);
	}
	/* shrinking an ordinary block never promotes it */
	v = zk_realloc(v, MiB + 4096);
	ck_assert(!zk_owns(v));
	zk_free(v);
	zk_free(w);
	ck_assert_uint_eq(tu_stats().overflow_count, 0);
}
END_TEST

/* --- ZK_TEST_MODE=resident (ZK_ALLOC_SMALL=resident) ---------------------- */

START_TEST(resident_small_arenas_keep_their_pages)
{
	long first = 0;
	for (int ph = 0; ph < 6; ph++) {
		long f0 = tu_minor_faults();
		ck_assert_int_eq(zk_begin_phase(), 0);
		enum { N = 20000 };
		static void *p[N];
		for (int i = 0; i < N; i++) {
			size_t sz = 16 + (size_t)(i * 7919) % 2032;
			p[i] = zk_malloc(sz);
			ck_assert(!zk_owns(p[i]));
			memset(p[i], i, sz);
		}
		for (int i = 0; i < N; i++)
			zk_free(p[i]);
		zk_end_phase();
		long f = tu_minor_faults() - f0;
		if (ph == 0)
			first = f;
		else
			ck_assert_msg(f * FAULT_RATIO < first,
				      "phase %d: %ld faults, first %ld", ph, f,
				      first);
	}
	zk_stats_t s = tu_stats();
	ck_assert_uint_gt(s.small_resident_bytes, 0);
	ck_assert_uint_eq(s.small_overflow_count, 0);
	/* small blocks outlive phases: never destroyed */
	ck_assert_int_eq(zk_begin_phase(), 0);
	char *keep = zk_malloc(100);
	tu_fill(keep, 100, 9);
	zk_end_phase();
	ck_assert_int_eq(zk_begin_phase(), 0);
	zk_end_phase();
	ck_assert_uint_eq(tu_check(keep, 100, 9), SIZE_MAX);
	zk_free(keep);
}
END_TEST

int main(void)
{
	const char *mode = getenv("ZK_TEST_MODE");
	mode = mode ? mode : "default";
	Suite *s = suite_create("route");
	TCase *tc = tcase_create(mode);
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_set_timeout(tc, 60);
	if (strcmp(mode, "tiny_slab") == 0) {
		tcase_add_test(tc, overflow_keeps_data_and_counts);
	} else if (strcmp(mode, "promote") == 0) {
		tcase_add_test(tc, promotion_moves_growing_vectors);
	} else if (strcmp(mode, "resident") == 0) {
		tcase_add_test(tc, resident_small_arenas_keep_their_pages);
	} else {
		tcase_add_test(tc, small_and_large_in_and_out_of_phase);
		tcase_add_test(tc, explicit_arena_is_honoured);
		tcase_add_test(tc, realloc_is_sticky_both_ways);
		tcase_add_test(tc, calloc_and_overflowing_counts);
		tcase_add_test(tc, alignment_and_usable_size);
	}
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
