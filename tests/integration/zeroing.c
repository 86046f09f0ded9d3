/*
 * What zkalloc clears, and that every byte of it is counted (issue 13, "from
 * the real provers"; issue 14: memory is cleared only for calloc /
 * MALLOCX_ZERO): zk.stats.hook_zeroed_bytes grows by exactly the bytes of
 * recycled pool pages a zeroed request gets (all of them: the pool cannot
 * tell which bytes a block's owner wrote), by nothing for fresh pages, and
 * zeroed_memset_bytes by the part that was resident (the rest is given
 * back to the kernel instead, so RSS does not grow for it).
 */
#define _GNU_SOURCE
#include "testutil.h"

#include <check.h>
#include <zkalloc.h>

#include <jemalloc/jemalloc.h>

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#define MiB  ((size_t)1 << 20)
#define PAGE ((size_t)4096)
#define SIZE (8 * MiB)

/* RSS, read without allocating (stdio would put a block in the pool
 * between the two allocations this file compares). Pages of jemalloc's
 * and zkalloc's bookkeeping may be touched meanwhile: 1 MiB allowed. */
static size_t rss(void)
{
	size_t v = tu_status_bytes("VmRSS");
	ck_assert_uint_ne(v, SIZE_MAX);
	return v;
}
#define RSS_SLACK MiB

static bool same_page(const void *a, const void *b)
{
	return ((uintptr_t)a & ~(PAGE - 1)) == ((uintptr_t)b & ~(PAGE - 1));
}

/* jemalloc writes every block at alloc and free when opt.junk is on (the
 * debug build): then a fresh block is faulted in by jemalloc itself. */
static bool junk(void)
{
	const char *j = "false";
	size_t len = sizeof(j);
	ck_assert_int_eq(zk_mallctl("opt.junk", &j, &len, NULL, 0), 0);
	return strcmp(j, "false") != 0;
}

/* A zeroed request of SIZE bytes by calloc or MALLOCX_ZERO. */
static void *zeroed(int how)
{
	return how == 0 ? zk_calloc(1, SIZE) : zk_mallocx(SIZE, MALLOCX_ZERO);
}

/* Bytes of [start, start + len) resident now (mincore; no allocation). */
static size_t resident(const void *start, size_t len)
{
	static unsigned char vec[(SIZE + 64 * PAGE) / PAGE];
	ck_assert_uint_le(len / PAGE, sizeof(vec));
	ck_assert_int_eq(mincore((void *)start, len, vec), 0);
	size_t n = 0;
	for (size_t i = 0; i < len / PAGE; i++)
		n += vec[i] & 1;
	return n * PAGE;
}

static void *page_of(const void *p)
{
	return (void *)((uintptr_t)p & ~(PAGE - 1));
}

/* Fresh pages (the pool's first use in this process) read zero already. */
START_TEST(fresh_pages_are_not_cleared)
{
	ck_assert_int_eq(zk_begin_phase(), 0);
	zk_stats_t s0 = tu_stats();
	size_t rss0 = rss();
	unsigned char *p = zeroed(_i);
	ck_assert_ptr_nonnull(p);
	ck_assert(zk_owns(p));
	zk_stats_t s1 = tu_stats();
	size_t rss1 = rss(); /* before reading: a read maps pages */
	ck_assert_uint_eq(s1.hook_zeroed_bytes, s0.hook_zeroed_bytes);
	ck_assert_uint_eq(s1.zeroed_memset_bytes, s0.zeroed_memset_bytes);
	if (!junk())
		ck_assert_uint_le(rss1, rss0 + RSS_SLACK);
	ck_assert(tu_all_zero(p, SIZE));
	/* Not freed: under CK_FORK=no the next case's pages must be fresh
	 * too. */
	zk_end_phase();
}
END_TEST

/* Recycled pages: all of the extent was handed out, so all of it is
 * cleared and counted; its resident pages by memset, the others are given
 * back (RSS does not grow). Once with 1 MiB of the block written, once with
 * all of it. */
START_TEST(recycled_pages_are_cleared_and_counted)
{
	for (int written_mib = 1; written_mib <= 8; written_mib += 7) {
		ck_assert_int_eq(zk_begin_phase(), 0);
		char *p = zk_malloc(SIZE);
		ck_assert(p != NULL && zk_owns(p));
		memset(p, 0xee, (size_t)written_mib * MiB);
		size_t live = tu_stats().live_bytes;
		zk_free(p);
		/* The extent: from the block's first page (jemalloc puts
		 * the block at an offset inside it), as long as what the
		 * free gave back. */
		size_t extent = live - tu_stats().live_bytes;
		ck_assert_uint_ge(extent, SIZE);
		size_t was_resident = resident(page_of(p), extent);
		ck_assert_uint_ge(was_resident, (size_t)written_mib * MiB);

		zk_stats_t s0 = tu_stats();
		size_t rss0 = rss();
		unsigned char *q = zeroed(_i);
		zk_stats_t s1 = tu_stats();
		size_t rss1 = rss();
		ck_assert_msg(same_page(q, p), "%p, freed %p", (void *)q,
			      (void *)p);
		ck_assert_uint_eq(s1.hook_zeroed_bytes - s0.hook_zeroed_bytes,
				  extent);
		ck_assert_uint_eq(s1.zeroed_memset_bytes -
				      s0.zeroed_memset_bytes,
				  was_resident);
		ck_assert_uint_le(rss1, rss0 + RSS_SLACK);
		ck_assert(tu_all_zero(q, SIZE));
		memset(q, 0x11, SIZE); /* dirty for the next round */
		zk_free(q);
		zk_end_phase();
	}
}
END_TEST

/* A block that is not zeroed clears nothing. */
START_TEST(plain_requests_clear_nothing)
{
	ck_assert_int_eq(zk_begin_phase(), 0);
	char *p = zk_malloc(SIZE);
	ck_assert(p != NULL && zk_owns(p));
	memset(p, 0xee, SIZE);
	zk_free(p);
	zk_stats_t s0 = tu_stats();
	char *q = zk_malloc(SIZE);
	ck_assert_msg(same_page(q, p), "%p, freed %p", (void *)q, (void *)p);
	ck_assert_uint_eq(tu_stats().hook_zeroed_bytes, s0.hook_zeroed_bytes);
	zk_free(q);
	zk_end_phase();
}
END_TEST

int main(void)
{
	Suite *s = suite_create("zeroing");
	TCase *t = tcase_create("zeroing");
	/* _i: 0 = calloc, 1 = MALLOCX_ZERO */
	tcase_add_loop_test(t, fresh_pages_are_not_cleared, 0, 2);
	tcase_add_loop_test(t, recycled_pages_are_cleared_and_counted, 0, 2);
	tcase_add_test(t, plain_requests_clear_nothing);
	suite_add_tcase(s, t);
	return tu_run_suite(s);
}
