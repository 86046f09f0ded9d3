/*
 * The drop-in library, linked in (not preloaded): glibc/POSIX semantics of
 * every malloc-family export, the alignment of every path against glibc's,
 * jemalloc's *allocx API and malloc_stats_print, their routing (in a phase
 * every request is served from the pool, outside one none is), realloc
 * across the phase boundary, mallctl's split between zk.* and jemalloc,
 * threads and fork.
 */
#define _GNU_SOURCE
#include <zkalloc.h>

#include <check.h>
#include <jemalloc/jemalloc.h>

#include <errno.h>
#include <stdbool.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MiB ((size_t)1 << 20)
static void *const SENTINEL = (void *)(uintptr_t)0x5a5a5a5a;

/* The compiler knows malloc's contract and may fold calls away; these
 * volatile sizes keep every call real. */
static volatile size_t v_zero = 0, v_huge = SIZE_MAX;

START_TEST(malloc_zero_is_unique)
{
	void *a = malloc(v_zero), *b = malloc(v_zero);
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	ck_assert_ptr_ne(a, b);
	free(a);
	free(b);
	free(NULL); /* no-op */
}
END_TEST

START_TEST(malloc_failure_sets_enomem)
{
	errno = 0;
	ck_assert_ptr_null(malloc(v_huge));
	ck_assert_int_eq(errno, ENOMEM);
	errno = 0;
	ck_assert_ptr_null(malloc(v_huge / 2 + 1));
	ck_assert_int_eq(errno, ENOMEM);
}
END_TEST

START_TEST(calloc_overflow_and_zero)
{
	errno = 0;
	ck_assert_ptr_null(calloc(v_huge / 2 + 1, 2));
	ck_assert_int_eq(errno, ENOMEM);
	errno = 0;
	ck_assert_ptr_null(calloc(2, v_huge / 2 + 1));
	ck_assert_int_eq(errno, ENOMEM);
	void *a = calloc(v_zero, 16), *b = calloc(16, v_zero);
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	ck_assert_ptr_ne(a, b);
	free(a);
	free(b);
	unsigned char *c = calloc(1000, 10);
	ck_assert_ptr_nonnull(c);
	for (int i = 0; i < 10000; i++)
		ck_assert_int_eq(c[i], 0);
	free(c);
}
END_TEST

START_TEST(posix_memalign_einval_leaves_out)
{
	size_t bad[] = {0, 1, 3, 4, sizeof(void *) / 2, 24, 48, 4095};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		void *out = SENTINEL;
		errno = 0;
		ck_assert_int_eq(posix_memalign(&out, bad[i], 64), EINVAL);
		ck_assert_ptr_eq(out, SENTINEL);
		ck_assert_int_eq(errno, EINVAL);
	}
	void *out = SENTINEL;
	ck_assert_int_eq(posix_memalign(&out, 8, 64), 0);
	ck_assert_ptr_ne(out, SENTINEL);
	free(out);
	out = SENTINEL;
	ck_assert_int_eq(posix_memalign(&out, 4096, v_huge - 8192), ENOMEM);
	ck_assert_ptr_eq(out, SENTINEL);
	ck_assert_int_eq(errno, ENOMEM);
	ck_assert_int_eq(posix_memalign(&out, 256, v_zero), 0);
	ck_assert_ptr_ne(out, SENTINEL);
	ck_assert_uint_eq((uintptr_t)out % 256, 0);
	free(out);
}
END_TEST

START_TEST(realloc_glibc_semantics)
{
	/* realloc(NULL, 0) is malloc(0): a unique pointer. */
	void *z = realloc(NULL, v_zero);
	ck_assert_ptr_nonnull(z);
	/* realloc(p, 0) frees p and returns NULL (glibc). */
	ck_assert_ptr_null(realloc(z, v_zero));

	char *p = malloc(100);
	ck_assert_ptr_nonnull(p);
	memset(p, 'x', 100);
	errno = 0;
	ck_assert_ptr_null(realloc(p, v_huge));
	ck_assert_int_eq(errno, ENOMEM);
	for (int i = 0; i < 100; i++) /* p is untouched */
		ck_assert_int_eq(p[i], 'x');
	char *q = realloc(p, 100000);
	ck_assert_ptr_nonnull(q);
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(q[i], 'x');
	q = realloc(q, 10);
	ck_assert_int_eq(q[9], 'x');
	free(q);
}
END_TEST

START_TEST(reallocarray_overflow)
{
	int *p = reallocarray(NULL, 10, sizeof(int));
	ck_assert_ptr_nonnull(p);
	for (int i = 0; i < 10; i++)
		p[i] = i;
	errno = 0;
	ck_assert_ptr_null(reallocarray(p, v_huge / 2, sizeof(int)));
	ck_assert_int_eq(errno, ENOMEM);
	ck_assert_int_eq(p[9], 9);
	p = reallocarray(p, 1000, sizeof(int));
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(p[9], 9);
	free(p);
}
END_TEST

START_TEST(aligned_family)
{
	void *a = aligned_alloc(64, 100);
	ck_assert_ptr_nonnull(a);
	ck_assert_uint_eq((uintptr_t)a % 64, 0);
	free(a);
	size_t bad[] = {0, 3, 24, 1000};
	for (size_t i = 0; i < 4; i++) {
		errno = 0;
		ck_assert_ptr_null(aligned_alloc(bad[i], 64));
		ck_assert_int_eq(errno, EINVAL);
	}

	/* memalign: glibc rounds a non-power-of-two alignment up. */
	void *m = memalign(24, 10);
	ck_assert_ptr_nonnull(m);
	ck_assert_uint_eq((uintptr_t)m % 32, 0);
	free(m);
	m = memalign(3, 10);
	ck_assert_ptr_nonnull(m);
	free(m);
	m = memalign(4096, 1);
	ck_assert_uint_eq((uintptr_t)m % 4096, 0);
	free(m);
	errno = 0;
	ck_assert_ptr_null(memalign(v_huge, 1));
	ck_assert_int_eq(errno, EINVAL);

	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	void *v = valloc(1);
	ck_assert_uint_eq((uintptr_t)v % page, 0);
	free(v);
	void *pv = pvalloc(1);
	ck_assert_uint_eq((uintptr_t)pv % page, 0);
	ck_assert_uint_ge(malloc_usable_size(pv), page);
	free(pv);
	pv = pvalloc(0);
	ck_assert_ptr_nonnull(pv);
	free(pv);
	errno = 0;
	ck_assert_ptr_null(pvalloc(v_huge));
	ck_assert_int_eq(errno, ENOMEM);
}
END_TEST

START_TEST(usable_size)
{
	ck_assert_uint_eq(malloc_usable_size(NULL), 0);
	for (size_t n = 1; n < (8 * MiB); n = n * 3 + 1) {
		void *p = malloc(n);
		ck_assert_uint_ge(malloc_usable_size(p), n);
		free(p);
	}
}
END_TEST

static bool aligned_to(const void *p, size_t a)
{
	return ((uintptr_t)p & (a - 1)) == 0;
}

/* The alignment C asks of malloc for an object of n bytes: the largest
 * fundamental alignment such an object can need (16 = alignof(max_align_t)
 * on x86-64 and aarch64). jemalloc gives 8 for n <= 8 and 16 above; glibc
 * gives 16 always. */
static size_t c_alignment(size_t n)
{
	size_t a = 1;
	while (a < n && a < 16)
		a *= 2;
	return a;
}

START_TEST(alignment_of_every_path)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t sizes[] = {1,  2,  3,  7,   8,	 9,    15,    16,
			  17, 24, 33, 100, 4095, 4097, 40000, 3 * MiB};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t n = sizes[i];
		void *m = malloc(n), *c = calloc(1, n), *r = realloc(NULL, n);
		ck_assert_msg(aligned_to(m, c_alignment(n)), "malloc(%zu) %p",
			      n, m);
		ck_assert_msg(aligned_to(c, c_alignment(n)), "calloc(%zu) %p",
			      n, c);
		ck_assert_msg(aligned_to(r, c_alignment(n)), "realloc(%zu) %p",
			      n, r);
		r = realloc(r, n * 2);
		ck_assert_msg(aligned_to(r, c_alignment(n * 2)),
			      "realloc grow(%zu) %p", n * 2, r);
		free(m);
		free(c);
		free(r);
		/* The aligned family: never below glibc's 16, whatever is
		 * asked; always at least what is asked. */
		for (size_t a = 1; a <= 4096; a *= 2) {
			void *x = memalign(a, n);
			ck_assert_msg(x && aligned_to(x, a < 16 ? 16 : a),
				      "memalign(%zu, %zu) %p", a, n, x);
			free(x);
			x = aligned_alloc(a, n);
			ck_assert_msg(x && aligned_to(x, a < 16 ? 16 : a),
				      "aligned_alloc(%zu, %zu) %p", a, n, x);
			free(x);
			if (a >= sizeof(void *)) {
				x = NULL;
				ck_assert_int_eq(posix_memalign(&x, a, n), 0);
				ck_assert_msg(aligned_to(x, a < 16 ? 16 : a),
					      "posix_memalign(%zu, %zu) %p", a,
					      n, x);
				free(x);
			}
		}
		void *v = valloc(n), *pv = pvalloc(n);
		ck_assert(aligned_to(v, page) && aligned_to(pv, page));
		free(v);
		free(pv);
		/* mallocx without MALLOCX_ALIGN is malloc's; with it, as
		 * asked */
		void *x = mallocx(n, 0);
		ck_assert_msg(aligned_to(x, c_alignment(n)), "mallocx(%zu)", n);
		dallocx(x, 0);
		x = mallocx(n, MALLOCX_ALIGN(64));
		ck_assert(aligned_to(x, 64));
		sdallocx(x, n, MALLOCX_ALIGN(64));
	}
	/* memalign(16, n <= 8): jemalloc's 8-byte class must not leak
	 * through (the case), several times over so that a lucky
	 * 16-aligned block cannot hide it */
	for (int i = 0; i < 64; i++) {
		void *x = memalign(16, 8), *y = memalign(8, 1);
		ck_assert(aligned_to(x, 16) && aligned_to(y, 16));
		free(x);
		free(y);
	}
}
END_TEST

/* jemalloc's API outside a phase: jemalloc's own semantics, and the cases
 * jemalloc leaves undefined (size 0, NULL) defined as zk_* defines them. */
START_TEST(allocx_outside_phase)
{
	char *p = mallocx(100, 0);
	ck_assert_ptr_nonnull(p);
	ck_assert(!zk_owns(p));
	memset(p, 'a', 100);
	ck_assert_uint_ge(sallocx(p, 0), 100);
	ck_assert_uint_eq(sallocx(p, 0), malloc_usable_size(p));
	ck_assert_uint_eq(nallocx(100, 0), sallocx(p, 0));
	size_t usable = xallocx(p, 100, 0, 0);
	ck_assert_uint_ge(usable, 100);
	p = rallocx(p, 5000, 0);
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(p[99], 'a');
	sdallocx(p, 5000, 0);
	unsigned char *z = mallocx(3000, MALLOCX_ZERO);
	for (int i = 0; i < 3000; i++)
		ck_assert_int_eq(z[i], 0);
	dallocx(z, 0);
	void *a = mallocx(v_zero, 0), *b = mallocx(v_zero, 0);
	ck_assert(a != NULL && b != NULL && a != b);
	dallocx(a, 0);
	dallocx(b, 0);
	/* malloc's blocks and mallocx's are the same allocator's */
	p = malloc(200);
	p = rallocx(p, 300, 0);
	dallocx(p, 0);
	p = mallocx(200, 0);
	p = realloc(p, 400);
	free(p);
}
END_TEST

/* In a phase: requests without an explicit arena are pool memory; sized
 * frees, xallocx, sallocx and rallocx on pool blocks are correct;
 * MALLOCX_ARENA is honoured as is. */
START_TEST(allocx_routes_into_phase)
{
	ck_assert_int_eq(zk_begin_phase(), 0);
	char *p = mallocx(MiB, 0);
	ck_assert(zk_owns(p));
	memset(p, 'p', MiB);
	ck_assert_uint_ge(sallocx(p, 0), MiB);
	ck_assert_uint_eq(sallocx(p, 0), nallocx(MiB, 0));
	/* xallocx: in place only, stays a pool block */
	size_t before = sallocx(p, 0);
	size_t after = xallocx(p, 2 * MiB, 0, 0);
	ck_assert(after == before || after >= 2 * MiB);
	ck_assert_uint_eq(sallocx(p, 0), after);
	ck_assert_uint_eq(xallocx(p, MiB / 2 + 1, 0, 0), sallocx(p, 0));
	ck_assert(zk_owns(p));
	ck_assert_int_eq(p[MiB / 2], 'p');
	/* rallocx in a phase: the pool */
	p = rallocx(p, 8 * MiB, 0);
	ck_assert(zk_owns(p));
	ck_assert_int_eq(p[MiB / 2], 'p');
	/* sized free of a pool block: the memory is reused in the phase */
	sdallocx(p, 8 * MiB, 0);
	void *q = mallocx(8 * MiB, 0);
	ck_assert(zk_owns(q));
	dallocx(q, 0);
	/* alignment and zeroing flags on pool memory */
	unsigned char *z =
	    mallocx(4 * MiB, MALLOCX_ALIGN(2 * MiB) | MALLOCX_ZERO);
	ck_assert(zk_owns(z) && aligned_to(z, 2 * MiB));
	for (size_t i = 0; i < 4 * MiB; i += 4093)
		ck_assert_int_eq(z[i], 0);
	sdallocx(z, 4 * MiB, MALLOCX_ALIGN(2 * MiB));
	/* an explicit arena bypasses routing; small requests are pool
	 * memory too */
	void *a0 = mallocx(MiB, MALLOCX_ARENA(0));
	ck_assert(!zk_owns(a0));
	dallocx(a0, 0);
	void *s = mallocx(64, 0);
	ck_assert(zk_owns(s));
	sdallocx(s, 64, 0);
	/* pool blocks freed after the phase ended, through every free */
	char *b1 = mallocx(MiB, 0), *b2 = malloc(MiB), *b3 = mallocx(MiB, 0);
	ck_assert(zk_owns(b1) && zk_owns(b2) && zk_owns(b3));
	ck_assert_int_eq(zk_end_phase(), 0);
	free(b1);
	sdallocx(b2, MiB, 0);
	dallocx(b3, 0);
	/* outside the phase the same calls are jemalloc's own memory */
	p = mallocx(MiB, 0);
	ck_assert(!zk_owns(p));
	dallocx(p, 0);
	s = mallocx(64, 0);
	ck_assert(!zk_owns(s));
	dallocx(s, 0);
}
END_TEST

/* realloc moves a block that cannot stay where it is to where a new block
 * of the new size would go now: into the pool in a phase, out of it after
 * (no stickiness); grown in place, it stays. Contents are kept. */
START_TEST(realloc_across_the_boundary)
{
	char *small = malloc(100); /* before the phase: jemalloc's */
	memset(small, 's', 100);
	ck_assert(!zk_owns(small));
	ck_assert_int_eq(zk_begin_phase(), 0);
	char *grown = realloc(small, MiB); /* small to large: moves */
	ck_assert(zk_owns(grown));
	ck_assert_int_eq(grown[99], 's');
	char *big = malloc(MiB);
	ck_assert(zk_owns(big));
	memset(big, 'b', MiB);
	ck_assert_int_eq(zk_end_phase(), 0);

	/* After the phase: large to small moves, out of the pool. */
	char *shrunk = realloc(big, 64);
	ck_assert(!zk_owns(shrunk));
	ck_assert_int_eq(shrunk[63], 'b');
	/* Growing: in place (same address, still the pool's) or moved out. */
	char *old = grown;
	memset(grown, 'g', MiB);
	grown = realloc(grown, 4 * MiB);
	ck_assert_ptr_nonnull(grown);
	ck_assert(grown == old ? zk_owns(grown) : !zk_owns(grown));
	ck_assert_int_eq(grown[MiB - 1], 'g');
	free(shrunk);
	free(grown);
}
END_TEST

/* Blocks made in one phase and kept are intact in the next ones, while
 * those phases allocate and write the same sizes; they are counted as kept
 * at each begin. */
START_TEST(blocks_outlive_their_phase)
{
	size_t sizes[] = {64, 5000, 40000, MiB, 9 * MiB};
	enum { N = sizeof(sizes) / sizeof(sizes[0]) };
	unsigned char *kept[N];
	ck_assert_int_eq(zk_begin_phase(), 0);
	for (int i = 0; i < N; i++) {
		kept[i] = malloc(sizes[i]);
		ck_assert(zk_owns(kept[i]));
		memset(kept[i], 0x40 + i, sizes[i]);
	}
	zk_end_phase();
	for (int phase = 0; phase < 3; phase++) {
		ck_assert_int_eq(zk_begin_phase(), 0);
		uint64_t blocks = 0, bytes = 0;
		size_t len = sizeof(blocks);
		ck_assert_int_eq(
		    mallctl("zk.stats.kept_blocks", &blocks, &len, NULL, 0), 0);
		ck_assert_int_eq(
		    mallctl("zk.stats.kept_bytes", &bytes, &len, NULL, 0), 0);
		ck_assert_uint_ge(blocks, 3); /* 40000, 1 MiB, 9 MiB */
		ck_assert_uint_ge(bytes, 10 * MiB + 40000);
		void *fresh[N][8];
		for (int i = 0; i < N; i++)
			for (int k = 0; k < 8; k++) {
				fresh[i][k] = malloc(sizes[i]);
				ck_assert(zk_owns(fresh[i][k]));
				memset(fresh[i][k], 0xee, sizes[i]);
			}
		for (int i = 0; i < N; i++) {
			size_t b = 0;
			while (b < sizes[i] && kept[i][b] == 0x40 + i)
				b++;
			ck_assert_msg(b == sizes[i], "block %d byte %zu", i, b);
		}
		for (int i = 0; i < N; i++)
			for (int k = 0; k < 8; k++)
				free(fresh[i][k]);
		zk_end_phase();
	}
	for (int i = 0; i < N; i++)
		free(kept[i]);
}
END_TEST

static void collect_stats(void *opaque, const char *text)
{
	size_t *n = opaque;
	if (strstr(text, "jemalloc") != NULL)
		n[0]++;
	n[1] += strlen(text);
}

START_TEST(stats_print_is_jemalloc_s)
{
	size_t seen[2] = {0, 0};
	malloc_stats_print(collect_stats, seen, NULL);
	ck_assert_uint_gt(seen[0], 0);
	ck_assert_uint_gt(seen[1], 100);
}
END_TEST

/* glibc functions that allocate internally must pair with our free. */
START_TEST(libc_internal_allocations)
{
	char *s = strdup("zkalloc");
	ck_assert_str_eq(s, "zkalloc");
	free(s);
	char *a = NULL;
	ck_assert_int_gt(asprintf(&a, "%d-%s", 42, "x"), 0);
	ck_assert_str_eq(a, "42-x");
	free(a);
	FILE *f = tmpfile();
	ck_assert_ptr_nonnull(f);
	fputs("line one\nline two\n", f);
	rewind(f);
	char *line = NULL;
	size_t cap = 0;
	ck_assert_int_eq(getline(&line, &cap, f), 9);
	free(line);
	fclose(f);
}
END_TEST

/* ----------------------------------------------------- phase routing */

START_TEST(family_routes_into_phase)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	ck_assert_int_eq(zk_begin_phase(), 0);
	void *blocks[8];
	blocks[0] = malloc(MiB);
	blocks[1] = calloc(MiB, 2);
	blocks[2] = aligned_alloc(4096, MiB);
	blocks[3] = memalign(1 << 16, MiB);
	blocks[4] = valloc(MiB);
	blocks[5] = pvalloc(MiB + 1);
	ck_assert_int_eq(posix_memalign(&blocks[6], 2 * MiB, 4 * MiB), 0);
	blocks[7] = reallocarray(NULL, MiB, 3);
	for (int i = 0; i < 8; i++) {
		ck_assert_msg(blocks[i] && zk_owns(blocks[i]),
			      "block %d %p is not pool memory", i, blocks[i]);
		ck_assert_uint_ge(malloc_usable_size(blocks[i]), MiB);
	}
	ck_assert_uint_eq((uintptr_t)blocks[3] % (1 << 16), 0);
	ck_assert_uint_eq((uintptr_t)blocks[5] % page, 0);
	ck_assert_uint_eq((uintptr_t)blocks[6] % (2 * MiB), 0);
	void *small = malloc(100);
	ck_assert(zk_owns(small));
	free(small);

	/* realloc in the phase: the pool. */
	memset(blocks[0], 7, MiB);
	blocks[0] = realloc(blocks[0], 16 * MiB);
	ck_assert(zk_owns(blocks[0]));
	ck_assert_int_eq(((char *)blocks[0])[MiB - 1], 7);
	/* realloc(p, 0) frees it. */
	ck_assert_ptr_null(realloc(blocks[0], v_zero));
	for (int i = 1; i < 8; i++)
		free(blocks[i]);
	ck_assert_int_eq(zk_end_phase(), 0);

	void *outside = malloc(MiB), *small_outside = malloc(100);
	ck_assert(!zk_owns(outside) && !zk_owns(small_outside));
	free(outside);
	free(small_outside);
}
END_TEST

/* calloc on recycled pool pages still reads zero. */
START_TEST(calloc_after_reuse_is_zero)
{
	for (int phase = 0; phase < 3; phase++) {
		ck_assert_int_eq(zk_begin_phase(), 0);
		unsigned char *p = calloc(4, MiB);
		ck_assert(zk_owns(p));
		for (size_t i = 0; i < 4 * MiB; i += 511)
			ck_assert_msg(p[i] == 0, "phase %d byte %zu", phase, i);
		memset(p, 0xff, 4 * MiB);
		free(p);
		zk_end_phase();
	}
}
END_TEST

START_TEST(mallctl_split)
{
	ck_assert_int_eq(mallctl("zk.phase.begin", NULL, NULL, NULL, 0), 0);
	ck_assert_int_eq(mallctl("zk.phase.begin", NULL, NULL, NULL, 0), EBUSY);
	bool active = false;
	size_t len = sizeof(active);
	ck_assert_int_eq(mallctl("zk.phase.active", &active, &len, NULL, 0), 0);
	ck_assert(active);
	void *p = malloc(2 * MiB); /* the arena is created through mallctl */
	ck_assert(zk_owns(p));
	free(p);
	ck_assert_int_eq(mallctl("zk.phase.end", NULL, NULL, NULL, 0), 0);
	ck_assert_int_eq(mallctl("zk.nope", NULL, NULL, NULL, 0), ENOENT);
	ck_assert_int_eq(mallctl(NULL, NULL, NULL, NULL, 0), EFAULT);

	size_t tcache_max = 0;
	len = sizeof(tcache_max);
	ck_assert_int_eq(
	    mallctl("arenas.tcache_max", &tcache_max, &len, NULL, 0), 0);
	ck_assert_uint_gt(tcache_max, 0);
	ck_assert_int_eq(mallctl("no.such.name", NULL, NULL, NULL, 0), ENOENT);
	size_t mib[4], miblen = 4;
	ck_assert_int_eq(mallctlnametomib("arenas.tcache_max", mib, &miblen),
			 0);
	size_t by_mib = 0;
	len = sizeof(by_mib);
	ck_assert_int_eq(mallctlbymib(mib, miblen, &by_mib, &len, NULL, 0), 0);
	ck_assert_uint_eq(by_mib, tcache_max);
	miblen = 4;
	ck_assert_int_eq(mallctlnametomib("zk.phase.begin", mib, &miblen),
			 ENOENT);
}
END_TEST

static void *thread_work(void *arg)
{
	uintptr_t id = (uintptr_t)arg;
	for (int i = 0; i < 50; i++) {
		size_t n = MiB + (size_t)(id * 4096 + (unsigned)i * 64);
		unsigned char *p = malloc(n);
		if (p == NULL || !zk_owns(p))
			return (void *)1;
		memset(p, (int)id, n);
		char *s = malloc(48);
		if (s == NULL || !zk_owns(s))
			return (void *)1;
		p = realloc(p, 2 * n);
		if (p == NULL || p[n - 1] != (unsigned char)id)
			return (void *)1;
		free(s);
		free(p);
	}
	return NULL;
}

START_TEST(threads_in_phase)
{
	ck_assert_int_eq(zk_begin_phase(), 0);
	pthread_t t[4];
	for (uintptr_t i = 0; i < 4; i++)
		ck_assert_int_eq(
		    pthread_create(&t[i], NULL, thread_work, (void *)(i + 1)),
		    0);
	for (int i = 0; i < 4; i++) {
		void *r = SENTINEL;
		pthread_join(t[i], &r);
		ck_assert_msg(r == NULL, "thread %d failed", i);
	}
	zk_end_phase();
}
END_TEST

START_TEST(fork_in_phase)
{
	ck_assert_int_eq(zk_begin_phase(), 0);
	char *p = malloc(MiB);
	memset(p, 3, MiB);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* The child keeps the parent's pool memory and gets its
		 * own. */
		char *q = malloc(2 * MiB);
		int ok = q && zk_owns(q) && p[MiB - 1] == 3;
		free(q);
		free(p);
		char *s = strdup("child");
		ok = ok && s && strcmp(s, "child") == 0;
		free(s);
		_exit(ok ? 0 : 1);
	}
	int st = 0;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	free(p);
	zk_end_phase();
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("override");
	TCase *t = tcase_create("libc-semantics");
	tcase_add_test(t, malloc_zero_is_unique);
	tcase_add_test(t, malloc_failure_sets_enomem);
	tcase_add_test(t, calloc_overflow_and_zero);
	tcase_add_test(t, posix_memalign_einval_leaves_out);
	tcase_add_test(t, realloc_glibc_semantics);
	tcase_add_test(t, reallocarray_overflow);
	tcase_add_test(t, aligned_family);
	tcase_add_test(t, usable_size);
	tcase_add_test(t, libc_internal_allocations);
	tcase_add_test(t, alignment_of_every_path);
	tcase_add_test(t, allocx_outside_phase);
	tcase_add_test(t, stats_print_is_jemalloc_s);
	suite_add_tcase(s, t);
	t = tcase_create("phases");
	tcase_set_timeout(t, 60);
	tcase_add_test(t, family_routes_into_phase);
	tcase_add_test(t, allocx_routes_into_phase);
	tcase_add_test(t, realloc_across_the_boundary);
	tcase_add_test(t, blocks_outlive_their_phase);
	tcase_add_test(t, calloc_after_reuse_is_zero);
	tcase_add_test(t, mallctl_split);
	tcase_add_test(t, threads_in_phase);
	tcase_add_test(t, fork_in_phase);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	SRunner *r = srunner_create(suite());
	srunner_run_all(r, CK_NORMAL);
	int failed = srunner_ntests_failed(r);
	srunner_free(r);
	return failed ? 1 : 0;
}
