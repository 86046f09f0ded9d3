/*
 * Example: a prover loop in C. Each proof runs inside ZK_PHASE; its buffers
 * (trace, LDE, Merkle layers) come from the pool, and the next proof takes
 * the same resident pages again. A table built lazily inside the first
 * proof and kept (twiddles) is an ordinary block: valid until freed.
 *
 * As a test it checks: every proof gives the same digest (so the kept
 * table was never overwritten); the buffers are pool memory (zk_owns); the
 * kept table is counted at the next begin; the pool hands the same pages
 * out again (its high water and resident bytes stay put once warm); the
 * phase is over after the block, also when it is left by break.
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

/* Built the first time a proof needs it, kept for every later proof. */
static uint64_t *twiddles;

static const uint64_t *get_twiddles(void)
{
	if (twiddles == NULL) {
		twiddles = zk_malloc(ROWS * sizeof(*twiddles)); /* 512 KiB */
		for (size_t i = 0; twiddles && i < ROWS; i++)
			twiddles[i] = mix(i, 3);
	}
	return twiddles;
}

/* One proof: its buffers are allocated and freed inside the phase. */
static uint64_t prove(uint64_t seed)
{
	size_t n = (size_t)ROWS * COLS;
	const uint64_t *tw = get_twiddles();
	uint32_t *trace = zk_malloc(n * sizeof(*trace)); /* 4 MiB */
	uint32_t *lde = zk_calloc(2 * n, sizeof(*lde));	 /* 8 MiB, zeroed */
	uint64_t *leaves = zk_malloc(2 * ROWS * sizeof(*leaves));
	if (!tw || !trace || !lde || !leaves)
		return 0;
	CHECK(zk_owns(trace) && zk_owns(lde) && zk_owns(leaves),
	      "the proof's buffers must be pool memory");

	for (size_t i = 0; i < n; i++)
		trace[i] = (uint32_t)mix(seed, i);
	for (size_t i = 0; i < 2 * n; i++) {
		CHECK(lde[i] == 0, "zk_calloc memory must read zero (i=%zu)",
		      i);
		if (lde[i] != 0)
			break;
		lde[i] = trace[i / 2] ^ (uint32_t)tw[i % ROWS];
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
	uint64_t root = leaves[0];

	zk_free(leaves);
	zk_free(lde);
	zk_free(trace);
	return root;
}

static zk_stats_t stats(void)
{
	zk_stats_t s = {.size = sizeof(s)};
	zk_stats_get(&s);
	return s;
}

int main(void)
{
	uint64_t first = 0;
	zk_stats_t warm = {0};

	for (int proof = 0; proof < PROOFS; proof++) {
		uint64_t root = 0;
		ZK_PHASE
		{
			CHECK(zk_phase_rc == 0, "zk_begin_phase: %d",
			      zk_phase_rc);
			CHECK(zk_phase_active(),
			      "phase must be active in block");
			if (proof > 0)
				CHECK(stats().kept_bytes >= ROWS * 8,
				      "the kept table is not counted");
			root = prove(7);
		}
		CHECK(!zk_phase_active(), "phase must end with the block");
		CHECK(root != 0, "proof %d failed to allocate", proof);
		if (proof == 0)
			first = root;
		CHECK(root == first, "proof %d digest %llx != %llx", proof,
		      (unsigned long long)root, (unsigned long long)first);
		/* Once warm, a proof takes pages the last one freed: the
		 * pool's high water and its resident bytes stay put (2 MiB
		 * of slack). */
		zk_stats_t s = stats();
		if (proof == 1)
			warm = s;
		if (proof > 1)
			CHECK(s.top_bytes <= warm.top_bytes + (2 << 20) &&
				  s.resident_bytes <=
				      warm.resident_bytes + (2 << 20),
			      "proof %d: high water %zu, resident %zu; warm: "
			      "%zu, %zu",
			      proof, s.top_bytes, s.resident_bytes,
			      warm.top_bytes, warm.resident_bytes);
	}
	CHECK(zk_owns(twiddles), "the table was made in a phase: pool memory");
	CHECK(warm.resident_bytes >= (size_t)ROWS * COLS * 4 * 3,
	      "resident pool memory %zu too small", warm.resident_bytes);
	zk_free(twiddles);

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
	       (unsigned long long)first, warm.resident_bytes);
	return failures ? 1 : 0;
}
