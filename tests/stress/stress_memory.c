/*
 * Memory bound: 1,000 identical phases (CI size) must keep resident slab
 * memory and the process's RSS flat after the first phases. Bounds: resident
 * phase slab bytes (zk_stats resident_bytes) may not grow at all after
 * phase 2, and RSS may not exceed its value after phase 2 by more than
 * RSS_SLACK. Before each sample the ordinary jemalloc arenas are purged
 * (arena.<all>.purge through zk_mallctl): their freed small pages otherwise
 * linger for dirty_decay_ms (10 s) and measure jemalloc's clock, not
 * zkalloc. The purge must not touch phase pages (their purge hooks refuse),
 * which the flat resident_bytes also proves.
 */
#include "stress_util.h"

#include <zkalloc.h>

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RSS_SLACK ((size_t)8 << 20)
#define NSMALL	  2000
#define NMID	  64

/* One proof-shaped phase: a few big vectors, mid-size blocks across the
 * threshold, small bookkeeping; half freed in the phase, the rest dropped. */
static unsigned one_phase(unsigned ph)
{
	unsigned bad = 0;
	ck_assert_int_eq(zk_begin_phase(), 0);
	size_t big[3] = {(size_t)4 << 20, (size_t)1 << 20, (size_t)3 << 19};
	void *b[3], *mid[NMID], *small[NSMALL];
	for (int i = 0; i < 3; i++) {
		b[i] = zk_malloc(big[i]);
		ck_assert_ptr_nonnull(b[i]);
		tu_fill(b[i], big[i], ph * 10u + (unsigned)i);
	}
	for (int i = 0; i < NMID; i++) {
		mid[i] = zk_calloc(1, (size_t)(24 + i) << 10);
		ck_assert_ptr_nonnull(mid[i]);
		memset(mid[i], i, (size_t)(24 + i) << 10);
	}
	for (int i = 0; i < NSMALL; i++) {
		small[i] = zk_malloc(16 + (size_t)(i * 37) % 2048);
		ck_assert_ptr_nonnull(small[i]);
		memset(small[i], 1, 16);
	}
	b[1] = zk_realloc(b[1], (size_t)2 << 20);
	ck_assert_ptr_nonnull(b[1]);
	for (int i = 0; i < 3; i++)
		bad += tu_check(b[i], i == 1 ? big[1] : big[i],
				ph * 10u + (unsigned)i) != SIZE_MAX;
	for (int i = 0; i < NMID; i += 2)
		zk_free(mid[i]);
	for (int i = 0; i < NSMALL; i++)
		zk_free(small[i]); /* ordinary memory: always freed */
	for (int i = 1; i < NMID; i += 2)
		if (!zk_owns(mid[i]))
			zk_free(mid[i]);
	for (int i = 0; i < 3; i++)
		if (!zk_owns(b[i]))
			zk_free(b[i]); /* phase blocks are dropped unfreed */
	zk_end_phase();
	return bad;
}

START_TEST(thousand_identical_phases)
{
	unsigned n = su_scale(1000, 200), bad = 0;
	zk_stats_t ref = {.size = sizeof(ref)}, st = {.size = sizeof(st)};
	size_t rss_ref = 0, rss_max = 0, res_max = 0;
	for (unsigned ph = 1; ph <= n; ph++) {
		bad += one_phase(ph);
		ck_assert_int_eq(
		    zk_mallctl("arena.4096.purge", NULL, NULL, NULL, 0), 0);
		if (ph == 2) {
			zk_stats_get(&ref);
			rss_ref = tu_rss_bytes();
		} else if (ph > 2) {
			zk_stats_get(&st);
			if (getenv("ZK_STRESS_VERBOSE") && ph % 50 == 0)
				printf("phase %u: resident %zu RSS %zu KiB\n",
				       ph, st.resident_bytes,
				       tu_rss_bytes() >> 10);
			size_t rss = tu_rss_bytes();
			rss_max = rss > rss_max ? rss : rss_max;
			res_max = st.resident_bytes > res_max
				      ? st.resident_bytes
				      : res_max;
		}
	}
	printf("memory: %u phases; resident slab bytes %zu after phase 2, "
	       "max %zu later; RSS %zu KiB after phase 2, max %zu KiB later; "
	       "%llu overflows\n",
	       n, ref.resident_bytes, res_max, rss_ref >> 10, rss_max >> 10,
	       (unsigned long long)st.overflow_count);
	fflush(stdout);
	ck_assert_uint_eq(bad, 0);
	ck_assert_uint_eq(st.overflow_count, 0);
	ck_assert_uint_gt(ref.resident_bytes, 0);
	ck_assert_uint_le(res_max, ref.resident_bytes);
	ck_assert_uint_le(rss_max, rss_ref + RSS_SLACK);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("stress_memory");
	TCase *tc = tcase_create("memory");
	tcase_set_timeout(tc, 0);
	tcase_add_test(tc, thousand_identical_phases);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
