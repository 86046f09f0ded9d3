/*
 * Example: a prover loop in C. Each proof runs inside ZK_PHASE; its large
 * buffers (trace, LDE, Merkle layers) come from phase memory, and the next
 * proof reuses the same resident pages. Only the digest leaves the phase,
 * by value.
 *
 * As a test it checks: every proof gives the same digest; large buffers are
 * phase memory (zk_owns) and small ones are not; resident phase memory is
 * flat once warm; the pages of an earlier phase are handed out again;
 * the phase is over after the block, also when it is left by break.
 */
#include <zkalloc.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define ROWS   (1u << 16)
#define COLS   16u
#define PROOFS 4

#include "example_check.h"

static uint64_t mix(uint64_t a, uint64_t b)
{
	a ^= b + 0x9e3779b97f4a7c15ull + (a << 6) + (a >> 2);
	return a * 0xff51afd7ed558ccdull;
}

/* One proof: all its memory is allocated and freed inside the phase. */
static uint64_t prove(uint64_t seed, void **trace_out)
{
	size_t n = (size_t)ROWS * COLS;
	uint32_t *trace = zk_malloc(n * sizeof(*trace)); /* 4 MiB */
	uint32_t *lde = zk_calloc(2 * n, sizeof(*lde));	 /* 8 MiB, zeroed */
	uint64_t *leaves = zk_malloc(2 * ROWS * sizeof(*leaves));
	char *label = zk_malloc(32); /* bookkeeping */
	if (!trace || !lde || !leaves || !label)
		return 0;
	CHECK(zk_owns(trace) && zk_owns(lde) && zk_owns(leaves),
	      "large buffers must be phase memory");
	CHECK(!zk_owns(label), "a 32-byte block must be ordinary memory");
	snprintf(label, 32, "proof-%llu", (unsigned long long)seed);

	for (size_t i = 0; i < n; i++)
		trace[i] = (uint32_t)mix(seed, i);
	for (size_t i = 0; i < 2 * n; i++) {
		CHECK(lde[i] == 0, "zk_calloc memory must read zero (i=%zu)",
		      i);
		if (lde[i] != 0)
			break;
		lde[i] = trace[i / 2] ^ (uint32_t)i;
	}
	for (size_t r = 0; r < 2 * ROWS; r++) {
		uint64_t h = 0;
		for (size_t c = 0; c < COLS; c++)
			h = mix(h, lde[r * COLS + c]);
		leaves[r] = h;
	}
	/* Halving layers, folded in place: the root ends in leaves[0]. */
	for (size_t w = 2 * ROWS; w > 1; w /= 2)
		for (size_t i = 0; i < w / 2; i++)
			leaves[i] = mix(leaves[2 * i], leaves[2 * i + 1]);
	uint64_t root = mix(leaves[0], label[6]);

	*trace_out = trace; /* only its address is looked at, never the data */
	zk_free(label);
	zk_free(leaves);
	zk_free(lde);
	zk_free(trace);
	return root;
}

static size_t resident(void)
{
	zk_stats_t s = {.size = sizeof(s)};
	return zk_stats_get(&s) == 0 ? s.resident_bytes : 0;
}

int main(void)
{
	uint64_t first = 0;
	size_t resident_warm = 0;
	uintptr_t first_page = 0;

	for (int proof = 0; proof < PROOFS; proof++) {
		uint64_t root = 0;
		void *trace = NULL;
		ZK_PHASE
		{
			CHECK(zk_phase_rc == 0, "zk_begin_phase: %d",
			      zk_phase_rc);
			CHECK(zk_phase_active(),
			      "phase must be active in block");
			root = prove(7, &trace);
		}
		CHECK(!zk_phase_active(), "phase must end with the block");
		CHECK(root != 0, "proof %d failed to allocate", proof);
		/* The same first request of the same proof lands in the same
		 * page as last time: the rewound slab hands the same pages out
		 * (jemalloc varies the offset inside the first page). */
		uintptr_t page = (uintptr_t)trace & ~(uintptr_t)4095;
		if (proof == 0) {
			first = root;
			first_page = page;
		}
		CHECK(root == first, "proof %d digest %llx != %llx", proof,
		      (unsigned long long)root, (unsigned long long)first);
		CHECK(page == first_page, "trace in page %#lx, first in %#lx",
		      (unsigned long)page, (unsigned long)first_page);
		/* Resident phase memory is flat once warm: the arenas live on,
		 * so jemalloc's metadata may take a page or two more while
		 * its free lists settle (64 KiB allowed), never a buffer. */
		if (proof == 1)
			resident_warm = resident();
		if (proof > 1)
			CHECK(resident() <= resident_warm + 64 * 1024,
			      "resident %zu after proof %d, %zu when warm",
			      resident(), proof, resident_warm);
	}
	CHECK(resident_warm >= (size_t)ROWS * COLS * 4 * 3,
	      "resident phase memory %zu too small", resident_warm);

	/* A phase left by break ends too; a nested ZK_PHASE runs inside the
	 * outer phase and does not end it. */
	ZK_PHASE
	{
		ZK_PHASE
		{
			CHECK(zk_phase_rc == EBUSY, "nested begin: %d",
			      zk_phase_rc);
		}
		CHECK(zk_phase_active(), "inner block must not end the phase");
		break;
	}
	CHECK(!zk_phase_active(), "break must end the phase");

	printf("%d proofs, digest %016llx, resident %zu bytes\n", PROOFS,
	       (unsigned long long)first, resident_warm);
	return failures ? 1 : 0;
}
