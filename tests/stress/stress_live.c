/*
 * Big live sets with default settings (issue 13 item 1). 0.1 crashed
 * (SIGSEGV in its extent alloc hook) when a thread's resident slab grew to
 * a multiple of 256 MiB: reached by ~1.9 GiB of live 1-1000 byte blocks in
 * one phase, and by vectors made before a phase and grown in it by
 * realloc to 10, 28, 32, 40, 48, 56 MiB. The same shapes here, sized for
 * CI (1 GiB of small blocks; 192 MiB under sanitizers): the pool's high
 * water must cross several 256 MiB boundaries, no allocation may fail or
 * overflow, and every block reads back intact in the phase, in the next
 * phase (kept blocks) and after it.
 *  - small_blocks: one thread, blocks of 1-1000 bytes kept live, a tenth
 *    freed and made again on the way;
 *  - small_blocks_threads: the same set made by 4 threads at once (also
 *    in suite 'threads');
 *  - vectors_grown_in_phase: vectors made outside any phase, grown inside
 *    one through 10, 28, 32, 40, 48 and 56 MiB next to a live set of
 *    small blocks, checked after every realloc.
 */
#include "stress_util.h"

#include <zkalloc.h>

#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct small {
	unsigned char *p;
	uint32_t n;
} small_t;

typedef struct set {
	small_t *b;
	size_t count, bytes;
	uint64_t seed;
	uint64_t bad, nulls;
} set_t;

/* Blocks of 1-1000 bytes until `bytes` are live; every tenth block made
 * frees a random earlier one first and takes its slot. */
static void build(set_t *s, size_t bytes)
{
	uint64_t r = s->seed;
	size_t cap = bytes / 256 + 1024;
	s->b = malloc(cap * sizeof(*s->b));
	ck_assert_ptr_nonnull(s->b);
	s->count = s->bytes = 0;
	for (size_t made = 0; s->bytes < bytes && s->count < cap; made++) {
		size_t slot = s->count;
		if (s->count > 16 && made % 10 == 9) {
			slot = su_next(&r) % s->count;
			small_t *o = &s->b[slot];
			if (tu_check(o->p, o->n, s->seed + slot) != SIZE_MAX)
				s->bad++;
			zk_free(o->p);
			s->bytes -= o->n;
		} else {
			s->count++;
		}
		uint32_t n = 1 + (uint32_t)(su_next(&r) % 1000);
		unsigned char *p = zk_malloc(n);
		if (p == NULL) {
			s->nulls++;
			n = 0;
		} else {
			tu_fill(p, n, s->seed + slot);
		}
		s->b[slot] = (small_t){p, n};
		s->bytes += n;
	}
}

static void verify(set_t *s)
{
	for (size_t i = 0; i < s->count; i++)
		if (s->b[i].p != NULL &&
		    tu_check(s->b[i].p, s->b[i].n, s->seed + i) != SIZE_MAX)
			s->bad++;
}

static void release(set_t *s)
{
	verify(s);
	for (size_t i = 0; i < s->count; i++)
		zk_free(s->b[i].p);
	free(s->b);
	s->b = NULL;
}

static size_t live_target(void)
{
	return (size_t)su_width(1024, 192) * MiB;
}

static void report(const char *what, const set_t *s, size_t n)
{
	zk_stats_t st = tu_stats();
	size_t count = 0, bytes = 0;
	uint64_t bad = 0, nulls = 0;
	for (size_t i = 0; i < n; i++) {
		count += s[i].count;
		bytes += s[i].bytes;
		bad += s[i].bad;
		nulls += s[i].nulls;
	}
	printf("live: %s: %zu blocks, %zu MiB live; pool high water %zu MiB, "
	       "%llu overflows; %llu bad, %llu NULL\n",
	       what, count, bytes / MiB, st.top_bytes / MiB,
	       (unsigned long long)st.overflow_count, (unsigned long long)bad,
	       (unsigned long long)nulls);
	ck_assert_uint_eq(bad, 0);
	ck_assert_uint_eq(nulls, 0);
	ck_assert_uint_eq(st.overflow_count, 0);
	/* The pool grew across 256 MiB boundaries (CI size). */
	ck_assert_uint_ge(st.top_bytes, bytes);
}

START_TEST(small_blocks)
{
	set_t s = {.seed = su_seed()};
	ck_assert_int_eq(zk_begin_phase(), 0);
	build(&s, live_target());
	verify(&s);
	zk_end_phase();
	report("one thread", &s, 1);
	/* Kept into the next phase, freed there. */
	ck_assert_int_eq(zk_begin_phase(), 0);
	zk_stats_t st = tu_stats();
	ck_assert_uint_ge(st.kept_bytes, s.bytes);
	release(&s);
	zk_end_phase();
	ck_assert_uint_eq(s.bad, 0);
}
END_TEST

static void *build_thread(void *arg)
{
	set_t *s = arg;
	build(s, live_target() / 4);
	verify(s);
	return NULL;
}

START_TEST(small_blocks_threads)
{
	set_t s[4];
	pthread_t th[4];
	ck_assert_int_eq(zk_begin_phase(), 0);
	for (int i = 0; i < 4; i++) {
		s[i] = (set_t){.seed = su_seed() + (uint64_t)i * 100000000};
		ck_assert_int_eq(
		    pthread_create(&th[i], NULL, build_thread, &s[i]), 0);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	zk_end_phase();
	report("four threads", s, 4);
	/* Freed by the main thread, half in the next phase, half after. */
	ck_assert_int_eq(zk_begin_phase(), 0);
	release(&s[0]);
	release(&s[1]);
	zk_end_phase();
	release(&s[2]);
	release(&s[3]);
	for (int i = 0; i < 4; i++)
		ck_assert_uint_eq(s[i].bad, 0);
}
END_TEST

START_TEST(vectors_grown_in_phase)
{
	static const size_t mib[] = {10, 28, 32, 40, 48, 56};
	enum { NV = 6 };
	unsigned char *v[NV];
	size_t n[NV];
	for (int i = 0; i < NV; i++) { /* outside any phase */
		n[i] = (size_t)(i + 1) << 16;
		v[i] = zk_malloc(n[i]);
		ck_assert_ptr_nonnull(v[i]);
		ck_assert(!zk_owns(v[i]));
		tu_fill(v[i], n[i], 900 + (uint64_t)i);
	}
	set_t s = {.seed = su_seed() ^ 0xabcdef};
	ck_assert_int_eq(zk_begin_phase(), 0);
	build(&s, live_target() / 4);
	unsigned moved_in = 0;
	for (size_t step = 0; step < sizeof(mib) / sizeof(mib[0]); step++)
		for (int i = 0; i < NV; i++) {
			size_t m = mib[step] * MiB + (size_t)i * 4096;
			unsigned char *q = zk_realloc(v[i], m);
			ck_assert_ptr_nonnull(q);
			ck_assert_msg(tu_check(q, n[i], 900 + (uint64_t)i) ==
					  SIZE_MAX,
				      "vector %d grown to %zu MiB lost data", i,
				      mib[step]);
			moved_in += zk_owns(q) && !zk_owns(v[i]);
			v[i] = q;
			n[i] = m;
			tu_fill(v[i], n[i], 900 + (uint64_t)i);
		}
	verify(&s);
	zk_end_phase();
	/* Grown past their jemalloc extents, they moved into the pool. */
	ck_assert_uint_eq(moved_in, NV);
	report("vectors and small blocks", &s, 1);
	for (int i = 0; i < NV; i++) {
		ck_assert_uint_eq(tu_check(v[i], n[i], 900 + (uint64_t)i),
				  SIZE_MAX);
		zk_free(v[i]);
	}
	release(&s);
	ck_assert_uint_eq(s.bad, 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("stress_live");
	TCase *tc = tcase_create("live");
	tcase_set_timeout(tc, 0);
	tcase_add_test(tc, small_blocks);
	tcase_add_test(tc, vectors_grown_in_phase);
	suite_add_tcase(s, tc);
	TCase *tt = tcase_create("threads");
	tcase_set_timeout(tt, 0);
	tcase_add_test(tt, small_blocks_threads);
	suite_add_tcase(s, tt);
	return tu_run_suite(s);
}
