/* slab.c: region layout, the bump pointer, the recycled/fresh bookkeeping. */
#include "os.h"
#include "slab.h"

#include <check.h>

#include "testutil.h"
#include <errno.h>
#include <stdint.h>
#include <string.h>

#define MiB ((size_t)1 << 20)

static zk_region_t r;

static void setup(void)
{
	ck_assert_int_eq(zk_region_init(&r, 4 * MiB, 3, 0, false, true), 0);
}

START_TEST(layout)
{
	ck_assert_ptr_nonnull(r.base);
	ck_assert_uint_eq((uintptr_t)r.base % ZK_SLAB_ALIGN, 0);
	ck_assert_uint_eq(r.total, 12 * MiB);
	for (unsigned i = 0; i < 3; i++) {
		ck_assert_ptr_eq(r.slabs[i].base, r.base + i * 4 * MiB);
		ck_assert_int_eq(r.slabs[i].arena_state, ZK_ARENA_NONE);
		ck_assert_ptr_eq(zk_region_slab_of(&r, r.slabs[i].base),
				 &r.slabs[i]);
		ck_assert_ptr_eq(
		    zk_region_slab_of(&r, r.slabs[i].base + 4 * MiB - 1),
		    &r.slabs[i]);
	}
	ck_assert_ptr_null(zk_region_slab_of(&r, r.base - 1));
	ck_assert_ptr_null(zk_region_slab_of(&r, r.base + 12 * MiB));
	ck_assert_ptr_null(zk_region_slab_of(&r, NULL));
	/* reserved only: nothing committed until a slab grows */
	for (unsigned i = 0; i < 3; i++)
		ck_assert_uint_eq(r.slabs[i].committed, 0);
	/* a committed slab is writable */
	for (unsigned i = 0; i < 3; i++) {
		ck_assert_int_eq(zk_slab_commit(&r.slabs[i], 4 * MiB), 0);
		ck_assert_uint_eq(r.slabs[i].committed, 4 * MiB);
	}
	memset(r.base, 0xab, 12 * MiB);
}
END_TEST

static int refuse_commit(size_t size)
{
	(void)size;
	return ENOMEM;
}

/* A refused commit (commit limit reached) fails the bump and changes
 * nothing: the next bump, once commits work again, gets the same range. */
START_TEST(refused_commit_fails_the_bump)
{
	zk_slab_t *s = &r.slabs[0];
	size_t rec;
	zk_os_commit_fault = refuse_commit;
	ck_assert_ptr_null(zk_slab_bump(s, NULL, MiB, 4096, &rec));
	zk_os_commit_fault = NULL;
	ck_assert_uint_eq(zk_slab_used(s), 0);
	ck_assert_uint_eq(s->committed, 0);
	char *p = zk_slab_bump(s, NULL, MiB, 4096, &rec);
	ck_assert_ptr_eq(p, s->base);
	ck_assert_uint_ge(s->committed, MiB);
	memset(p, 1, MiB);
}
END_TEST

START_TEST(bad_geometry_is_refused)
{
	zk_region_t x;
	ck_assert_int_eq(zk_region_init(&x, 3 * MiB, 2, 0, false, true), EINVAL);
	ck_assert_ptr_null(x.base);
	ck_assert_int_eq(zk_region_init(&x, 4 * MiB, 0, 0, false, true), EINVAL);
	ck_assert_int_eq(
	    zk_region_init(&x, SIZE_MAX - ZK_SLAB_ALIGN + 1, 4, 0, false, true),
	    EINVAL);
	ck_assert_uint_eq(x.total, 0);
	ck_assert_ptr_null(zk_region_slab_of(&x, &x));
}
END_TEST

START_TEST(bump_alignment_and_exhaustion)
{
	zk_slab_t *s = &r.slabs[1];
	size_t rec;
	char *a = zk_slab_bump(s, NULL, 4096, 4096, &rec);
	ck_assert_ptr_eq(a, s->base);
	ck_assert_uint_eq(rec, 0);
	char *b = zk_slab_bump(s, NULL, 8192, 2 * MiB, &rec);
	ck_assert_ptr_eq(b, s->base + 2 * MiB);
	ck_assert_uint_eq(zk_slab_used(s), 2 * MiB + 8192);
	/* does not fit: nothing changes */
	ck_assert_ptr_null(zk_slab_bump(s, NULL, 2 * MiB, 4096, &rec));
	ck_assert_uint_eq(zk_slab_used(s), 2 * MiB + 8192);
	/* in-place extension only exactly at the bump pointer */
	ck_assert_ptr_null(zk_slab_bump(s, b, 4096, 4096, &rec));
	char *c = zk_slab_bump(s, b + 8192, 4096, 4096, &rec);
	ck_assert_ptr_eq(c, b + 8192);
	/* fills up to the last byte exactly */
	size_t left = s->size - zk_slab_used(s);
	ck_assert_ptr_nonnull(zk_slab_bump(s, NULL, left, 4096, &rec));
	ck_assert_ptr_null(zk_slab_bump(s, NULL, 4096, 4096, &rec));
	/* neighbours untouched */
	ck_assert_uint_eq(zk_slab_used(&r.slabs[0]), 0);
	ck_assert_uint_eq(zk_slab_used(&r.slabs[2]), 0);
}
END_TEST

START_TEST(rewind_marks_recycled_bytes)
{
	zk_slab_t *s = &r.slabs[0];
	size_t rec;
	ck_assert_ptr_nonnull(zk_slab_bump(s, NULL, 3 * MiB, 4096, &rec));
	ck_assert_uint_eq(rec, 0);
	/* only what jemalloc may have written counts as recycled */
	zk_slab_mark_written(s, 3 * MiB);
	zk_slab_mark_written(s, 1 * MiB); /* a max, never lowered */
	ck_assert_uint_eq(zk_slab_high_water(s), 3 * MiB);
	zk_slab_rewind(s);
	ck_assert_uint_eq(zk_slab_used(s), 0);
	ck_assert_uint_eq(zk_slab_high_water(s), 3 * MiB);
	/* wholly below the old high-water mark */
	ck_assert_ptr_nonnull(zk_slab_bump(s, NULL, 1 * MiB, 4096, &rec));
	ck_assert_uint_eq(rec, 1 * MiB);
	/* straddling it: only the part below is recycled */
	ck_assert_ptr_nonnull(zk_slab_bump(s, NULL, 3 * MiB, 4096, &rec));
	ck_assert_uint_eq(rec, 2 * MiB);
	/* handed out but never written: stays fresh for the next cycle */
	ck_assert_uint_eq(zk_slab_high_water(s), 3 * MiB);
	zk_slab_rewind(s);
	ck_assert_uint_eq(zk_slab_high_water(s), 3 * MiB);
	ck_assert_ptr_nonnull(zk_slab_bump(s, NULL, 4 * MiB, 4096, &rec));
	ck_assert_uint_eq(rec, 3 * MiB);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("slab");
	TCase *tc = tcase_create("bump");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, refused_commit_fails_the_bump);
	tcase_add_test(tc, layout);
	tcase_add_test(tc, bad_geometry_is_refused);
	tcase_add_test(tc, bump_alignment_and_exhaustion);
	tcase_add_test(tc, rewind_marks_recycled_bytes);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
