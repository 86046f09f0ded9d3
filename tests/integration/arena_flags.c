/*
 * Example: code that calls jemalloc's mallocx itself opts in to the pool
 * with zk_arena_flags(). Outside a phase the flags are 0 and mallocx works
 * as before; inside one they name this thread's zkalloc arena. Blocks made
 * with them are ordinary jemalloc blocks: rallocx, dallocx, free or zk_free
 * them, in a phase or after it, and keep them as long as you like.
 *
 * As a test it checks: flags are 0 outside a phase and the same non-zero
 * value in every phase (a thread keeps its arena); blocks made with them
 * are pool memory and honour alignment and zeroing; rallocx with the flags
 * keeps a block in the pool; a block made in the first phase and kept is
 * intact in the later ones; zk_free, dallocx and sdallocx all free them.
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
	return mallocx(size, zk_arena_flags() | extra_flags);
}

int main(void)
{
	CHECK(zk_arena_flags() == 0, "no phase: flags must be 0");
	void *outside = buffer_alloc(1 << 20, 0);
	CHECK(outside && !zk_owns(outside), "outside a phase: plain jemalloc");

	int flags_first = 0;
	uint8_t *kept = NULL; /* made in the first phase, read in the others */
	for (int proof = 0; proof < 3; proof++) {
		CHECK(zk_begin_phase() == 0, "begin");
		int f = zk_arena_flags();
		CHECK(f != 0, "in a phase: flags must be set");
		if (proof == 0)
			flags_first = f;
		CHECK(f == flags_first, "flags 0x%x, 0x%x in the first phase",
		      (unsigned)f, (unsigned)flags_first);
		if (kept == NULL) {
			kept = buffer_alloc(1 << 20, 0);
			if (kept != NULL)
				memset(kept, 0x5a, 1 << 20);
		}

		size_t n = 3u << 20;
		uint8_t *a = buffer_alloc(n, MALLOCX_ZERO);
		CHECK(a && zk_owns(a), "mallocx with the flags: pool memory");
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
		CHECK(b && zk_owns(b), "rallocx with the flags stays in pool");
		/* Small sizes go through the thread cache, which jemalloc
		 * shares between arenas: pool memory or not, it is a block. */
		void *c = buffer_alloc(100, 0);
		CHECK(c != NULL, "a small block with the flags");

		zk_free(a);
		dallocx(b, 0);
		sdallocx(c, 100, 0);
		zk_end_phase();
		CHECK(zk_arena_flags() == 0, "after the phase: flags are 0");
	}
	int intact = kept != NULL && zk_owns(kept);
	for (size_t i = 0; intact && i < (1 << 20); i++)
		intact = kept[i] == 0x5a;
	CHECK(intact, "the block kept from the first phase changed");
	dallocx(kept, 0);

	zk_free(outside);
	printf("arena flags example ok (flags 0x%x)\n", (unsigned)flags_first);
	return failures ? 1 : 0;
}
