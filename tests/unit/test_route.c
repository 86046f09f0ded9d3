/* route.c: the routing decision in its three modes (bound by default;
 * explicit with ZK_ALLOC_MIN_BYTES or under percpu_arena), realloc,
 * calloc, alignment, usable size, explicit arenas, overflow, and checked
 * mode's pointer checks. ZK_TEST_MODE picks the mode (tests/unit/meson). */
#define _GNU_SOURCE
#include "arena.h"
#include "je.h"
#include "phase.h"
#include "testutil.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <zkalloc.h>

#define MiB ((size_t)1 << 20)

static const char *mode = "default";

static bool explicit_mode(void)
{
	return strcmp(mode, "explicit") == 0 || strcmp(mode, "percpu") == 0;
}

/* The smallest in-phase request the pool serves in this mode. */
static size_t threshold(void)
{
	size_t v, len = sizeof(v);
	if (strcmp(mode, "percpu") == 0) {
		ck_assert_int_eq(
		    zk_mallctl("arenas.tcache_max", &v, &len, NULL, 0), 0);
		return v + 1;
	}
	ck_assert_int_eq(zk_mallctl("zk.opt.min_bytes", &v, &len, NULL, 0), 0);
	return v;
}

static void teardown(void)
{
	zk_end_phase();
}

START_TEST(small_and_large_in_and_out_of_phase)
{
	size_t min = threshold();
	ck_assert(explicit_mode() ? min > 64 : min == 0);
	void *out_small = zk_malloc(64), *out_large = zk_malloc(8 * MiB);
	ck_assert(!zk_owns(out_small) && !zk_owns(out_large));
	ck_assert_int_eq(zk_begin_phase(), 0);
	void *in_small = zk_malloc(64);
	void *in_large = zk_malloc(8 * MiB);
	/* bound: everything from the pool; explicit: by size */
	ck_assert(zk_owns(in_small) == !explicit_mode());
	ck_assert(zk_owns(in_large));
	if (explicit_mode()) {
		void *below = zk_malloc(min - 1), *at = zk_malloc(min);
		ck_assert(!zk_owns(below) && zk_owns(at));
		ck_assert(!zk_tls.bound);
		zk_free(below);
		zk_free(at);
	} else {
		ck_assert(zk_tls.bound);
	}
	int f = zk_arena_flags();
	ck_assert_int_ne(f & (int)0xfff00000u, 0);
	ck_assert_int_eq(f & ~(int)0xfff00000u, MALLOCX_TCACHE_NONE);
	zk_end_phase();
	ck_assert_int_eq(zk_arena_flags(), 0);
	void *after = zk_malloc(8 * MiB), *after_small = zk_malloc(64);
	ck_assert(!zk_owns(after) && !zk_owns(after_small));
	void *all[] = {out_small, out_large, in_small,
		       in_large,  after,     after_small};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		zk_free(all[i]);
	zk_free(NULL);
	ck_assert_uint_eq(tu_stats().overflow_count, 0);
}
END_TEST

/* Every entry point routes the same way. */
START_TEST(every_entry_point_routes)
{
	ck_assert_int_eq(zk_begin_phase(), 0);
	void *p[6];
	p[0] = zk_malloc(MiB);
	p[1] = zk_calloc(1, MiB);
	p[2] = zk_mallocx(MiB, 0);
	p[3] = zk_aligned_alloc(4096, MiB);
	ck_assert_int_eq(zk_posix_memalign(&p[4], 64, MiB), 0);
	p[5] = zk_realloc(NULL, MiB);
	for (int i = 0; i < 6; i++) {
		ck_assert_msg(zk_owns(p[i]), "entry %d", i);
		zk_free(p[i]);
	}
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
	/* and the opt-in flags put a je_mallocx call in the pool */
	int f = zk_arena_flags();
	ck_assert_int_ne(f, 0);
	void *q = je_mallocx(8 * MiB, f);
	ck_assert(zk_owns(q));
	je_dallocx(q, 0); /* any free jemalloc accepts */
}
END_TEST

/* realloc: in place when jemalloc can, else moved where a new block of
 * the new size goes now; contents kept either way. */
START_TEST(realloc_follows_the_new_size)
{
	void *ord = zk_malloc(100);
	ck_assert(!zk_owns(ord));
	tu_fill(ord, 100, 1);
	ck_assert_int_eq(zk_begin_phase(), 0);
	/* an ordinary block grown in a phase moves into the pool */
	ord = zk_realloc(ord, 64 * MiB);
	ck_assert(zk_owns(ord));
	ck_assert_uint_eq(tu_check(ord, 100, 1), SIZE_MAX);
	char *p = zk_malloc(MiB);
	tu_fill(p, MiB, 2);
	for (size_t sz = 2 * MiB; sz <= 128 * MiB; sz *= 2) {
		p = zk_realloc(p, sz);
		ck_assert(zk_owns(p));
	}
	ck_assert_uint_eq(tu_check(p, MiB, 2), SIZE_MAX);
	/* shrunk to a small size class (it must move): where a new block
	 * of 100 bytes goes. Explicit routing: jemalloc's own. Bound: the
	 * pool, or a block of that size the thread cache holds (here the
	 * ordinary one moved away above, freed in the phase). */
	p = zk_realloc(p, 100);
	if (explicit_mode())
		ck_assert(!zk_owns(p));
	ck_assert_uint_eq(tu_check(p, 100, 2), SIZE_MAX);
	size_t usable = zk_malloc_usable_size(p);
	p = zk_rallocx(p, 3 * MiB, MALLOCX_ZERO); /* zeroes past old usable */
	ck_assert(zk_owns(p));
	ck_assert(tu_all_zero(p + usable, 3 * MiB - usable));
	/* after the phase: moves, if it must, to jemalloc's own arenas */
	zk_end_phase();
	p = zk_realloc(p, 256 * MiB);
	ck_assert(!zk_owns(p));
	ck_assert_uint_eq(tu_check(p, 100, 2), SIZE_MAX);
	/* realloc(p, 0) frees and returns NULL, as glibc's */
	ck_assert_ptr_null(zk_realloc(p, 0));
	ck_assert_ptr_null(zk_realloc(ord, 0));
	void *fresh = zk_realloc(NULL, 10);
	ck_assert_ptr_nonnull(fresh);
	zk_free(fresh);
	ck_assert_uint_eq(tu_stats().overflow_count, 0);
}
END_TEST

START_TEST(calloc_zeroes)
{
	ck_assert_int_eq(zk_begin_phase(), 0);
	char *p = zk_malloc(16 * MiB);
	memset(p, 0xcd, 16 * MiB);
	zk_free(p);
	char *q = zk_calloc(4, 4 * MiB); /* reuses the dirty block */
	ck_assert(zk_owns(q));
	ck_assert(tu_all_zero(q, 16 * MiB));
	zk_free(q);
	for (int i = 0; i < 100; i++) { /* small ones too */
		char *s = zk_malloc(200);
		memset(s, 0xab, 200);
		zk_free(s);
		char *z = zk_calloc(1, 200);
		ck_assert(tu_all_zero(z, 200));
		zk_free(z);
	}
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
	for (size_t al = 8; al <= 64 * MiB; al <<= 1) {
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
	/* impossible requests fail with ENOMEM and are not overflow */
	errno = 0;
	ck_assert_ptr_null(zk_malloc(SIZE_MAX / 2));
	ck_assert_int_eq(errno, ENOMEM);
	ck_assert_uint_eq(tu_stats().overflow_count, 0);
	/* an alignment larger than the region: not the pool's, but served
	 * (address space is plentiful); counted as overflow when it was a
	 * pool request (not below the explicit threshold) */
	char *far = zk_aligned_alloc((size_t)1 << 40, 4096);
	ck_assert_ptr_nonnull(far);
	ck_assert(!zk_owns(far));
	ck_assert_uint_eq((uintptr_t)far % ((size_t)1 << 40), 0);
	far[4095] = 1;
	zk_free(far);
	ck_assert_uint_eq(tu_stats().overflow_count, threshold() <= 4096);
}
END_TEST

/* Blocks of every kind may be freed by any thread, in a phase or not, and
 * by jemalloc's own free. */
static void *free_them(void *arg)
{
	void **v = arg;
	for (int i = 0; i < 64; i++)
		zk_free(v[i]);
	return NULL;
}

START_TEST(frees_from_anywhere)
{
	void *v[64];
	ck_assert_int_eq(zk_begin_phase(), 0);
	for (int i = 0; i < 64; i++)
		v[i] = zk_malloc(i % 2 ? 64 : 256 << 10);
	pthread_t t;
	pthread_create(&t, NULL, free_them, v); /* another thread, in phase */
	pthread_join(t, NULL);
	for (int i = 0; i < 64; i++)
		v[i] = zk_malloc(i % 2 ? 64 : 256 << 10);
	zk_end_phase();
	for (int i = 0; i < 32; i++)
		zk_free(v[i]); /* after the phase */
	for (int i = 32; i < 64; i++)
		je_dallocx(v[i], 0); /* jemalloc's own (free may be a
					sanitizer's) */
	ck_assert_uint_eq(tu_stats().overflow_count, 0);
}
END_TEST

/* --- ZK_TEST_MODE=checked (ZK_ALLOC_CHECK=1) ------------------------------ */

static int double_free_child(void *unused)
{
	(void)unused;
	zk_begin_phase();
	void *p = zk_malloc(4 * MiB);
	zk_free(p);
	zk_free(p);
	return 0; /* not reached */
}

static int use_after_free_child(void *unused)
{
	(void)unused;
	zk_begin_phase();
	char *p = zk_malloc(4 * MiB);
	memset(p, 1, 4 * MiB);
	zk_free(p);
	zk_end_phase();
	zk_begin_phase(); /* still caught a phase later */
	((volatile char *)p)[12345] = 2;
	return 0; /* not reached */
}

static int wild_free_child(void *unused)
{
	(void)unused;
	zk_begin_phase();
	char *p = zk_malloc(4 * MiB);
	/* a pool address that was never handed out */
	zk_free(p + 64 * MiB);
	return 0;
}

static void expect_report(int (*child)(void *), const char *what)
{
	char err[4096];
	int rc = tu_run_child(child, NULL, NULL, err, sizeof(err));
	ck_assert_msg(rc == 128 + SIGABRT, "rc %d: %s", rc, err);
	ck_assert_msg(strstr(err, "zkalloc: ZK_ALLOC_CHECK: ") &&
			  strstr(err, what),
		      "no '%s' report: %s", what, err);
}

START_TEST(checked_reports)
{
	expect_report(double_free_child, "zk_free of freed memory");
	expect_report(use_after_free_child, "use after free");
	expect_report(wild_free_child, "never handed out");
}
END_TEST

/* A correct program runs clean in checked mode, and RSS follows live
 * memory: freed ranges are given back, not kept. */
START_TEST(checked_mode_runs_correct_programs)
{
	for (int ph = 0; ph < 20; ph++) {
		ck_assert_int_eq(zk_begin_phase(), 0);
		char *v[16];
		for (int i = 0; i < 16; i++) {
			v[i] = zk_malloc(4 * MiB);
			tu_fill(v[i], 4 * MiB, (uint64_t)i);
		}
		for (int i = 0; i < 16; i++) {
			ck_assert_uint_eq(tu_check(v[i], 4 * MiB, (uint64_t)i),
					  SIZE_MAX);
			v[i] = zk_realloc(v[i], 5 * MiB);
			zk_free(v[i]);
		}
		zk_end_phase();
	}
	zk_stats_t s = tu_stats();
	ck_assert_uint_lt(s.resident_bytes, 32 * MiB);
	ck_assert_uint_le(s.quarantined_bytes, 2 * 16 * 10 * MiB);
}
END_TEST

int main(void)
{
	const char *m = getenv("ZK_TEST_MODE");
	mode = m ? m : "default";
	Suite *s = suite_create("route");
	TCase *tc = tcase_create(mode);
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_set_timeout(tc, 60);
	if (strcmp(mode, "checked") == 0) {
		tcase_add_test(tc, checked_reports);
		tcase_add_test(tc, checked_mode_runs_correct_programs);
	} else {
		tcase_add_test(tc, small_and_large_in_and_out_of_phase);
		tcase_add_test(tc, every_entry_point_routes);
		tcase_add_test(tc, explicit_arena_is_honoured);
		tcase_add_test(tc, realloc_follows_the_new_size);
		tcase_add_test(tc, calloc_zeroes);
		tcase_add_test(tc, alignment_and_usable_size);
		tcase_add_test(tc, frees_from_anywhere);
	}
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
