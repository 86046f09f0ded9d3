/*
 * Example: code that calls jemalloc's mallocx itself opts in to phase memory
 * with zk_arena_flags(). Outside a phase the flags are 0 and mallocx works as
 * before; inside one they name this thread's phase arena. A NULL from
 * mallocx with those flags means the slab is full: fall back to zk_mallocx.
 *
 * As a test it checks: flags are 0 outside a phase and non-zero inside;
 * blocks made with them are phase memory and honour alignment and zeroing;
 * rallocx with the same flags keeps a block in the phase; zk_free and
 * dallocx(p, MALLOCX_TCACHE_NONE) both free them; the flags change with
 * the phase (arenas are re-created each phase).
 */
#include <zkalloc.h>

#include <jemalloc/jemalloc.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "example_check.h"

/* What a jemalloc-using prover's buffer helper becomes. */
static void *buffer_alloc(size_t size, int extra_flags)
{
	int f = zk_arena_flags();
	void *p = f ? mallocx(size, f | extra_flags) : NULL;
	return p ? p : zk_mallocx(size, extra_flags);
}

int main(void)
{
	CHECK(zk_arena_flags() == 0, "no phase: flags must be 0");
	void *outside = buffer_alloc(1 << 20, 0);
	CHECK(outside && !zk_owns(outside), "outside a phase: plain jemalloc");

	int flags_first = 0;
	for (int proof = 0; proof < 3; proof++) {
		CHECK(zk_begin_phase() == 0, "begin");
		int f = zk_arena_flags();
		CHECK(f != 0, "in a phase: flags must be set");
		CHECK((f & MALLOCX_TCACHE_NONE) == MALLOCX_TCACHE_NONE,
		      "phase flags must bypass the thread cache");
		if (proof == 0)
			flags_first = f;

		size_t n = 3u << 20;
		uint8_t *a = buffer_alloc(n, MALLOCX_ZERO);
		CHECK(a && zk_owns(a), "mallocx with the flags: phase memory");
		int zero = 1;
		for (size_t i = 0; a && i < n; i++)
			zero &= a[i] == 0;
		CHECK(zero, "MALLOCX_ZERO must give zeroed memory");
		if (a)
			memset(a, 0xab, n); /* dirty it for the next proof */

		void *b = buffer_alloc(1 << 20, MALLOCX_ALIGN(1 << 16));
		CHECK(b && zk_owns(b) && ((uintptr_t)b & 0xffff) == 0,
		      "aligned block %p", b);
		b = b ? rallocx(b, 4 << 20, zk_arena_flags()) : NULL;
		CHECK(b && zk_owns(b), "rallocx with the flags stays in phase");

		zk_free(a);
		if (b)
			dallocx(b, MALLOCX_TCACHE_NONE);
		zk_end_phase();
		CHECK(zk_arena_flags() == 0, "after the phase: flags are 0");
	}
	/* The arena index is recycled LIFO (jemalloc), so the same thread
	 * usually gets the same flags back; the check is only that a phase
	 * has them. */
	CHECK(flags_first != 0, "first phase had flags");

	zk_free(outside);
	printf("arena flags example ok (first phase flags 0x%x)\n",
	       (unsigned)flags_first);
	return failures ? 1 : 0;
}
