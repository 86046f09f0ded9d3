/* Helpers shared by the stress, fault, fork, bad-input and checked-mode
 * suites. */
#ifndef ZK_STRESS_UTIL_H
#define ZK_STRESS_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "testutil.h" /* tu_fill, tu_check, tu_rss_bytes, tu_run_child */

#define MiB ((size_t)1 << 20)

/* Under ThreadSanitizer every new thread faults in the runtime's own
 * per-thread state (hundreds of pages) and its shadow memory grows with
 * every page the process touches, so the page-fault and RSS bounds of
 * tests that create threads measure the sanitizer, not zkalloc: those are
 * printed but asserted only in the plain and ASan builds (the pool's own
 * numbers are asserted in all). */
#if defined(__SANITIZE_THREAD__)
#define SU_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SU_TSAN 1
#endif
#endif
#ifndef SU_TSAN
#define SU_TSAN 0
#endif

/* A workload length (phases, threads over time, inputs): ci at CI size,
 * reduced when meson builds with a sanitizer (ZK_STRESS_REDUCED), times
 * ZK_STRESS_SCALE when set (scripts/soak). */
unsigned su_scale(unsigned ci, unsigned reduced);

/* A width (threads at once, bytes of one buffer): ci or reduced, never
 * scaled. */
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

/* Give jemalloc's own (automatic) arenas' free pages back to the kernel
 * (arena.<all>.purge), so that RSS measures zkalloc's pool, not
 * jemalloc's decay clock (dirty_decay_ms, 10 s). zkalloc's arenas refuse
 * the purge: their pages stay in the pool. */
void su_purge_jemalloc(void);

/* Touch one byte per page of [p, p + n): make it resident cheaply. */
void su_touch(void *p, size_t n, unsigned char v);

/* Run fn(arg) in a forked child (no environment change, stderr kept) that
 * is killed by SIGALRM after secs seconds. Returns its exit status, 128 +
 * the signal that ended it, or -1 if fork failed. */
int su_fork_wait(int (*fn)(void *), void *arg, unsigned secs);

#endif
