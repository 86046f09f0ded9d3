/*
 * Memory bounds: resident memory follows the live peak.
 *  - identical_phases: 1,000 proof-shaped phases (CI size) keep the pool's
 *    high water, its resident bytes and the process's RSS within a few MiB
 *    of their values after phase 5 (the blocks a phase leaves to be freed
 *    after its end move the layout for a few phases: measured +2 MiB from
 *    phase 2 to 5; with the debug jemalloc one more 2 MiB block at phase
 *    19), and the high water does not move in the second half of the run.
 *  - spike_given_back (issue 13 item 7): a phase that allocates, writes
 *    and frees a big block (256 MiB at CI size) between ordinary phases:
 *    its pages stay resident for the K phases after it
 *    (ZK_ALLOC_TRIM_PHASES, read back through zk.opt.trim_phases) and go
 *    back to the kernel at the begin after them: RSS drops by about the
 *    block. Run also with MALLOC_CONF=junk:true (meson: memory-junk; in
 *    0.1 such blocks were never given back) and with K = 2 (memory-k2).
 *  - reuse_keeps_rss, calloc_clears_written (issue 13 item 8): a 256 MiB
 *    block with 1 MiB written, freed and allocated again: RSS stays near
 *    1 MiB (0.1 cleared the whole block: 5 -> 260 MiB); a calloc of it
 *    clears only the pages that held data (zk.stats.zeroed_memset_bytes
 *    grows by about 1 MiB) and reads as zero.
 * Before each sample jemalloc's own arenas are purged (su_purge_jemalloc):
 * their freed small pages otherwise linger for dirty_decay_ms (10 s) and
 * measure jemalloc's clock, not zkalloc.
 */
#define JEMALLOC_NO_DEMANGLE
#include "stress_util.h"

#include <zkalloc.h>

#include <check.h>
#include <jemalloc/jemalloc.h> /* MALLOCX_ZERO */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RSS_SLACK (8 * MiB)
/* The pool's resident bytes may move by what the decay gives back and the
 * next phase touches again (measured: +-1.5 MiB), never grow with n. */
#define RES_SLACK (4 * MiB)
#define NSMALL	  2000
#define NMID	  64
#define WARM	  5 /* phases before the layout is judged */

/* One proof-shaped phase: a few big vectors (one grown by realloc),
 * mid-size blocks across the thread cache's limit, small bookkeeping;
 * everything checked, all freed, half of the mid blocks after the end. */
static unsigned proof(unsigned ph)
{
	unsigned bad = 0;
	ck_assert_int_eq(zk_begin_phase(), 0);
	size_t big[3] = {4 * MiB, MiB, 3 * MiB / 2};
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
	b[1] = zk_realloc(b[1], 2 * MiB);
	ck_assert_ptr_nonnull(b[1]);
	for (int i = 0; i < 3; i++)
		bad +=
		    tu_check(b[i], big[i], ph * 10u + (unsigned)i) != SIZE_MAX;
	for (int i = 0; i < NMID; i += 2)
		zk_free(mid[i]);
	for (int i = 0; i < NSMALL; i++)
		zk_free(small[i]);
	for (int i = 0; i < 3; i++)
		zk_free(b[i]);
	zk_end_phase();
	for (int i = 1; i < NMID; i += 2)
		zk_free(mid[i]); /* outside the phase */
	return bad;
}

START_TEST(identical_phases)
{
	unsigned n = su_scale(1000, 200), bad = 0;
	zk_stats_t ref = {0}, st = {0};
	size_t rss_ref = 0, rss_max = 0, res_max = 0, top_max = 0, top_half = 0;
	for (unsigned ph = 1; ph <= n; ph++) {
		bad += proof(ph);
		su_purge_jemalloc();
		if (ph == WARM) {
			ref = tu_stats();
			rss_ref = tu_rss_bytes();
		} else if (ph > WARM) {
			st = tu_stats();
			size_t rss = tu_rss_bytes();
			rss_max = rss > rss_max ? rss : rss_max;
			res_max = st.resident_bytes > res_max
				      ? st.resident_bytes
				      : res_max;
			top_max =
			    st.top_bytes > top_max ? st.top_bytes : top_max;
			if (ph == n / 2)
				top_half = st.top_bytes;
			if (getenv("ZK_STRESS_VERBOSE") && ph % 50 == 0)
				printf("phase %u: pool resident %zu KiB, "
				       "RSS %zu KiB\n",
				       ph, st.resident_bytes >> 10, rss >> 10);
		}
	}
	printf("memory: %u phases; pool resident %zu KiB after phase %u, max "
	       "%zu KiB later; pool high water %zu KiB, max %zu KiB; RSS %zu "
	       "KiB after phase %u, max %zu KiB later; %llu overflows\n",
	       n, ref.resident_bytes >> 10, WARM, res_max >> 10,
	       ref.top_bytes >> 10, top_max >> 10, rss_ref >> 10, WARM,
	       rss_max >> 10, (unsigned long long)st.overflow_count);
	ck_assert_uint_eq(bad, 0);
	ck_assert_uint_eq(st.overflow_count, 0);
	ck_assert_uint_gt(ref.resident_bytes, 4 * MiB); /* the pool served */
	ck_assert_uint_le(top_max, ref.top_bytes + RES_SLACK);
	ck_assert_uint_eq(top_max, top_half); /* no growth with n */
	ck_assert_uint_le(res_max, ref.resident_bytes + RES_SLACK);
	ck_assert_uint_le(rss_max, rss_ref + RSS_SLACK);
}
END_TEST

/* A phase of the ordinary workload, measured at its begin: RSS and the
 * pool's resident bytes right after zk_begin_phase. */
typedef struct sample {
	size_t rss, pool;
} sample_t;

static sample_t proof_sampled(unsigned ph, size_t spike)
{
	ck_assert_int_eq(zk_begin_phase(), 0);
	su_purge_jemalloc();
	zk_stats_t s = tu_stats();
	sample_t m = {tu_rss_bytes(), s.resident_bytes};
	void *v = zk_malloc(4 * MiB);
	ck_assert_ptr_nonnull(v);
	tu_fill(v, 4 * MiB, ph);
	if (spike != 0) {
		unsigned char *p = zk_malloc(spike);
		ck_assert_ptr_nonnull(p);
		ck_assert(zk_owns(p));
		su_touch(p, spike, 7);
		ck_assert_uint_eq(p[spike - 4096], 7);
		zk_free(p);
	}
	ck_assert_uint_eq(tu_check(v, 4 * MiB, ph), SIZE_MAX);
	zk_free(v);
	zk_end_phase();
	return m;
}

START_TEST(spike_given_back)
{
	const size_t spike = su_width(256, 64) * MiB;
	unsigned k = 0;
	size_t len = sizeof(k);
	ck_assert_int_eq(zk_mallctl("zk.opt.trim_phases", &k, &len, NULL, 0),
			 0);
	const unsigned at = 3;		  /* the spike's phase */
	const unsigned last = at + k + 1; /* the first begin that may trim */
	sample_t m[72];
	ck_assert_uint_lt(last, 72);
	for (unsigned ph = 1; ph < last; ph++)
		m[ph] = proof_sampled(ph, ph == at ? spike : 0);
	zk_stats_t s0 = tu_stats();
	m[last] = proof_sampled(last, 0);
	zk_stats_t s1 = tu_stats();
	for (unsigned ph = 1; ph <= last; ph++)
		printf("memory: K=%u, spike %zu MiB in phase %u: at begin %u "
		       "RSS %zu MiB, pool %zu MiB\n",
		       k, spike / MiB, at, ph, m[ph].rss / MiB,
		       m[ph].pool / MiB);
	fflush(stdout);
	/* Resident at the begins of the K phases after the spike... */
	for (unsigned ph = at + 1; ph < last; ph++) {
		ck_assert_uint_ge(m[ph].pool, spike);
		ck_assert_uint_ge(m[ph].rss + 16 * MiB, m[at + 1].rss);
	}
	/* ...and given back at the begin after them: about the block. */
	size_t drop = m[last - 1].rss - m[last].rss;
	ck_assert_msg(
	    m[last - 1].rss > m[last].rss && drop >= spike - spike / 8,
	    "RSS %zu -> %zu MiB at begin %u: want a drop of about "
	    "%zu MiB",
	    m[last - 1].rss / MiB, m[last].rss / MiB, last, spike / MiB);
	ck_assert_uint_le(m[last].pool, m[at].pool + 16 * MiB);
	ck_assert_uint_gt(s1.trims, s0.trims);
	ck_assert_uint_ge(s1.trimmed_bytes - s0.trimmed_bytes,
			  spike - spike / 8);
	ck_assert_uint_eq(s1.madvise_failures, 0);
}
END_TEST

/* A 256 MiB block with its first MiB written, freed, and asked for again
 * (mallocx flags: 0 or MALLOCX_ZERO) in the same phase. */
static void reuse(int flags, size_t *rss_growth, uint64_t *cleared)
{
	const size_t big = 256 * MiB, written = MiB;
	ck_assert_int_eq(zk_begin_phase(), 0);
	su_purge_jemalloc();
	zk_stats_t s0 = tu_stats();
	size_t rss0 = tu_rss_bytes();
	unsigned char *p = zk_malloc(big);
	ck_assert_ptr_nonnull(p);
	ck_assert(zk_owns(p));
	memset(p, 0xEE, written);
	zk_free(p);
	zk_stats_t s1 = tu_stats();
	unsigned char *q = zk_mallocx(big, flags);
	ck_assert_ptr_nonnull(q);
	ck_assert(zk_owns(q));
	zk_stats_t s2 = tu_stats();
	*rss_growth = tu_rss_bytes() - rss0;
	/* Cleared with memset: the pages that held data. The rest of the
	 * block (never written, or not resident) is made zero by giving it
	 * back, which hook_zeroed_bytes counts too. */
	*cleared = s2.zeroed_memset_bytes - s1.zeroed_memset_bytes;
	printf("memory: 256 MiB block, 1 MiB written, freed, %s again: RSS "
	       "+%zu KiB, cleared %llu KiB with memset (%llu KiB made zero "
	       "in all), pool resident %zu -> %zu KiB\n",
	       flags ? "calloc'd" : "malloc'd", *rss_growth >> 10,
	       (unsigned long long)(*cleared >> 10),
	       (unsigned long long)(s2.hook_zeroed_bytes -
				    s1.hook_zeroed_bytes) >> 10,
	       s0.resident_bytes >> 10, s2.resident_bytes >> 10);
	fflush(stdout);
	if (flags & MALLOCX_ZERO) {
		ck_assert(tu_all_zero(q, written + 4096));
		for (size_t i = written; i < big; i += 4096)
			ck_assert_uint_eq(q[i], 0);
	}
	zk_free(q);
	zk_end_phase();
}

START_TEST(reuse_keeps_rss)
{
	size_t growth;
	uint64_t cleared;
	reuse(0, &growth, &cleared);
	ck_assert_uint_le(growth, 9 * MiB); /* 1 MiB + overhead */
	ck_assert_uint_eq(cleared, 0);	    /* nobody asked for zeroes */
}
END_TEST

START_TEST(calloc_clears_written)
{
	size_t growth;
	uint64_t cleared;
	reuse(MALLOCX_ZERO, &growth, &cleared);
	ck_assert_uint_ge(cleared, MiB);
	ck_assert_uint_le(cleared, 2 * MiB);
	ck_assert_uint_le(growth, 9 * MiB);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("stress_memory");
	TCase *tc = tcase_create("identical");
	tcase_set_timeout(tc, 0);
	tcase_add_test(tc, identical_phases);
	suite_add_tcase(s, tc);
	TCase *sp = tcase_create("spike");
	tcase_set_timeout(sp, 0);
	tcase_add_test(sp, spike_given_back);
	suite_add_tcase(s, sp);
	TCase *re = tcase_create("reuse");
	tcase_set_timeout(re, 0);
	tcase_add_test(re, reuse_keeps_rss);
	tcase_add_test(re, calloc_clears_written);
	suite_add_tcase(s, re);
	return tu_run_suite(s);
}
