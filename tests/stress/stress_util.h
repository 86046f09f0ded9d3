/* Helpers shared by the stress, fault, bad-input and checked-mode suites. */
#ifndef ZK_STRESS_UTIL_H
#define ZK_STRESS_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "testutil.h" /* tu_fill, tu_check, tu_rss_bytes, tu_run_child */

/* A workload length (phases, threads over time, inputs): ci at CI size,
 * reduced when meson builds with a sanitizer (ZK_STRESS_REDUCED), times
 * ZK_STRESS_SCALE when set (scripts/soak). */
unsigned su_scale(unsigned ci, unsigned reduced);

/* A width (threads at once): ci or reduced, never scaled. */
unsigned su_width(unsigned ci, unsigned reduced);

/* The base seed: ZK_STRESS_SEED, else a fixed default. Printed on failure. */
uint64_t su_seed(void);

/* splitmix64: a small deterministic generator. */
static inline uint64_t su_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* The last 1,500 bytes of s: Check truncates long failure messages. */
const char *su_tail(const char *s);

/* Occurrences of needle in haystack. */
unsigned su_count(const char *haystack, const char *needle);

#endif
