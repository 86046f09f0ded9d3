/* Helpers shared by the Check suites. */
#ifndef ZK_TESTUTIL_H
#define ZK_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Minor page faults of this process so far (getrusage). */
long tu_minor_faults(void);

/* Resident set size of this process in bytes (/proc/self/statm). */
size_t tu_rss_bytes(void);

/* Run fn() in a forked child with the given environment changes applied
 * ("NAME=value" sets, "NAME" alone unsets; NULL-terminated) and its stderr
 * captured into err (NUL-terminated, at most errlen - 1 bytes). Returns the
 * child's exit status (0..255), or -1 if it died by a signal. */
int tu_run_child(int (*fn)(void), const char *const *env, char *err,
		 size_t errlen);

/* Fill / check a block with a pattern derived from seed. check returns the
 * index of the first wrong byte, or SIZE_MAX if all are right. */
void tu_fill(void *p, size_t n, uint64_t seed);
size_t tu_check(const void *p, size_t n, uint64_t seed);

/* True if every byte of p[0..n) is zero. */
int tu_all_zero(const void *p, size_t n);

#endif
