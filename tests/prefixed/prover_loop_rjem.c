/*
 * A prover loop as a Rust prover with tikv-jemallocator runs it: every
 * allocation goes to the program's own static, prefixed jemalloc
 * (_rjem_mallocx, _rjem_sdallocx, ...: here spelled je_* under
 * JEMALLOC_NO_DEMANGLE, which the prefixed header maps to those names), and
 * phases are begun through that jemalloc's _rjem_mallctl("zk.phase.begin").
 * zkalloc is linked into the same executable (-Djemalloc_prefix=_rjem_
 * -Djemalloc_static=true); its link flags wrap those entry points.
 *
 * As a test it checks: one jemalloc in the process (no unprefixed one loaded,
 * pool blocks lie in arenas of the jemalloc the program calls); blocks from
 * mallocx/rallocx/malloc/calloc/posix_memalign inside a phase come from the
 * pool (zk_owns; a small one only when zk.opt.min_bytes allows), blocks made
 * outside a phase do not; from the second phase on, each phase hands out the
 * same pages again; warm phases take (almost) no minor page faults where the
 * first one faulted its whole working set in.
 */
#define _GNU_SOURCE
#define JEMALLOC_NO_DEMANGLE
#include <jemalloc/jemalloc.h>
#include <zkalloc.h>

#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "../integration/example_check.h"

#define MiB    ((size_t)1 << 20)
#define PHASES 5

static int phase(const char *name)
{
	return je_mallctl(name, NULL, NULL, NULL, 0);
}

static long minor_faults(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_minflt;
}

static void touch(void *p, size_t n, unsigned char v)
{
	memset(p, v, n);
}

/* Exactly one jemalloc: no unprefixed jemalloc (Debian's libjemalloc2, a
 * second instance) is loaded, and the jemalloc the program calls knows the
 * pool block p as one of its manual arenas (arenas.create puts those after
 * the opt.narenas automatic ones). */
static void check_one_jemalloc(void *p)
{
	CHECK(dlsym(RTLD_DEFAULT, "mallocx") == NULL,
	      "an unprefixed jemalloc is loaded too");

	unsigned arena = 0, automatic = 0, narenas = 0;
	size_t len = sizeof(arena);
	int err = je_mallctl("arenas.lookup", &arena, &len, &p, sizeof(p));
	CHECK(err == 0, "arenas.lookup of a pool block: %d", err);
	len = sizeof(automatic);
	CHECK(je_mallctl("opt.narenas", &automatic, &len, NULL, 0) == 0,
	      "opt.narenas unreadable");
	len = sizeof(narenas);
	CHECK(je_mallctl("arenas.narenas", &narenas, &len, NULL, 0) == 0,
	      "arenas.narenas unreadable");
	CHECK(arena >= automatic && arena < narenas,
	      "pool block in arena %u: not a manual arena of this jemalloc "
	      "(%u automatic, %u in all)",
	      arena, automatic, narenas);
}

/* zk.opt.min_bytes: in a phase, requests of at least this many bytes come
 * from the pool (0: all). */
static size_t min_bytes;

/* One proof: 16 + 24 + 8 MiB of buffers, all written, all freed. */
static uint64_t prove(int round, uintptr_t *settled_page)
{
	size_t ntrace = 16 * MiB, nlde = 24 * MiB, ntree = 8 * MiB;
	unsigned char *trace = je_mallocx(ntrace, 0);
	unsigned char *lde =
	    je_mallocx(nlde, MALLOCX_ALIGN(4096) | MALLOCX_ZERO);
	unsigned char *tree = je_malloc(ntree / 2);
	void *aligned = NULL;
	char *small = je_mallocx(64, 0);
	if (!trace || !lde || !tree || !small ||
	    je_posix_memalign(&aligned, 64, 2 * MiB) != 0) {
		CHECK(0, "round %d: allocation failed", round);
		return 0;
	}
	tree = je_rallocx(tree, ntree, 0); /* grows inside the pool */
	CHECK(tree != NULL, "round %d: rallocx failed", round);
	if (tree == NULL)
		return 0;
	CHECK(zk_owns(trace) && zk_owns(lde) && zk_owns(tree) &&
		  zk_owns(aligned),
	      "round %d: large blocks must come from the pool (%d %d %d %d)",
	      round, zk_owns(trace), zk_owns(lde), zk_owns(tree),
	      zk_owns(aligned));
	CHECK(zk_owns(small) == (64 >= min_bytes),
	      "round %d: a 64-byte block: zk_owns %d, zk.opt.min_bytes %zu",
	      round, zk_owns(small), min_bytes);
	CHECK(((uintptr_t)lde & 4095) == 0, "MALLOCX_ALIGN(4096) ignored");
	CHECK(je_sallocx(trace, 0) >= ntrace && je_nallocx(ntrace, 0) >= ntrace,
	      "sallocx %zu / nallocx %zu below %zu", je_sallocx(trace, 0),
	      je_nallocx(ntrace, 0), ntrace);
	CHECK(je_malloc_usable_size(tree) >= ntree, "usable size %zu < %zu",
	      je_malloc_usable_size(tree), ntree);
	size_t zeros = 0;
	for (size_t i = 0; i < nlde; i += 4096)
		zeros += lde[i] == 0;
	CHECK(zeros == nlde / 4096, "round %d: MALLOCX_ZERO block not zero",
	      round);

	touch(trace, ntrace, (unsigned char)round);
	touch(lde, nlde, (unsigned char)(round + 1));
	touch(tree, ntree, (unsigned char)(round + 2));
	touch(aligned, 2 * MiB, 1);
	uint64_t h = 0;
	for (size_t i = 0; i < ntrace; i += 4096)
		h = h * 31 + trace[i] + lde[i] + tree[i % ntree];

	/* The pool takes the first proof's freed ranges in best fit: the
	 * layout settles after it (round 1 may place the trace elsewhere in
	 * the same resident pages), then stays. */
	uintptr_t page = (uintptr_t)trace & ~(uintptr_t)4095;
	if (round == 0)
		check_one_jemalloc(trace);
	else if (round == 1)
		*settled_page = page;
	else
		CHECK(page == *settled_page,
		      "round %d: trace at %p, not in round 1's page %#lx",
		      round, (void *)trace, (unsigned long)*settled_page);

	je_sdallocx(trace, ntrace, 0);
	je_dallocx(lde, MALLOCX_ALIGN(4096));
	je_sdallocx(tree, ntree, 0);
	je_free(aligned);
	je_dallocx(small, 0);
	return h;
}

int main(void)
{
	uintptr_t settled_page = 0;
	long first_faults = 0, worst_warm = 0;
	size_t len = sizeof(min_bytes);
	CHECK(je_mallctl("zk.opt.min_bytes", &min_bytes, &len, NULL, 0) == 0,
	      "zk.opt.min_bytes unreadable");

	void *before = je_mallocx(16 * MiB, 0);
	CHECK(before != NULL && !zk_owns(before),
	      "a block made outside a phase must come from jemalloc's own "
	      "arenas");
	je_dallocx(before, 0);

	for (int round = 0; round < PHASES; round++) {
		CHECK(phase("zk.phase.begin") == 0, "round %d: begin failed",
		      round);
		long f0 = minor_faults();
		uint64_t d = prove(round, &settled_page);
		long faults = minor_faults() - f0;
		CHECK(phase("zk.phase.end") == 0, "round %d: end failed",
		      round);
		CHECK(d != 0, "round %d: no digest", round);
		if (round == 0)
			first_faults = faults;
		else if (faults > worst_warm)
			worst_warm = faults;
		printf("phase %d: %ld minor faults\n", round, faults);
	}
	/* 50 MiB written: the first phase faults in at least its 12800 pages
	 * (about 20000 measured; fewer with transparent huge pages). A warm
	 * phase reuses them: 0 to 500 measured; without reuse it would take
	 * as many as the first. */
	CHECK(first_faults >= 1000, "first phase took only %ld faults",
	      first_faults);
	CHECK(worst_warm * 10 <= first_faults,
	      "a warm phase took %ld minor faults, the first %ld", worst_warm,
	      first_faults);

	void *after = je_mallocx(16 * MiB, 0);
	CHECK(after != NULL && !zk_owns(after),
	      "a block made after the phase must come from jemalloc's own "
	      "arenas");
	je_dallocx(after, 0);
	printf("first phase %ld faults, worst warm phase %ld\n", first_faults,
	       worst_warm);
	return failures ? 1 : 0;
}
