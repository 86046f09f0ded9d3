/* Helpers shared by the Check suites. */
#ifndef ZK_TESTUTIL_H
#define ZK_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

typedef struct Suite Suite;

/* Run a Check suite (forking per test unless CK_FORK=no) and return the
 * process exit code: 0 if every test passed, 1 otherwise. */
int tu_run_suite(Suite *s);

typedef struct zk_stats zk_stats_t;

/* zkalloc's stats now; fails the running Check test if they cannot be read. */
zk_stats_t tu_stats(void);

/* Minor page faults of this process so far (getrusage). */
long tu_minor_faults(void);

/* Resident set size of this process in bytes (/proc/self/statm). */
size_t tu_rss_bytes(void);

/* A "kB" field of /proc/self/status in bytes ("VmData", "VmSize", "VmRSS",
 * ...), or SIZE_MAX if it cannot be read. Does not allocate (safe to call
 * in a phase between two allocations whose placement a test checks).
 * VmData is what the kernel charges to the commit limit for private
 * writable mappings, resident or not. */
size_t tu_status_bytes(const char *field);

/* Run fn(arg) in a forked child with the environment changes applied first
 * ("NAME=value" sets, "NAME" alone unsets; NULL-terminated, may be NULL) and
 * its stderr captured into err (NUL-terminated, at most errlen - 1 bytes).
 * A child that hangs is killed after 120 s. Returns the child's exit status
 * (0..255), 128 + the signal number if a signal ended it, or -1 if it could
 * not be started. */
int tu_run_child(int (*fn)(void *), void *arg, const char *const *env,
		 char *err, size_t errlen);

/* Fill / check a block with the canary pattern of tag: a word per 8 bytes
 * derived from tag and the offset, so a block moved or overwritten by
 * another block's pattern is told apart, and any prefix of a filled block
 * checks as a block of that length (realloc shrinks). check returns the
 * index of the first wrong byte, or SIZE_MAX if all are right. */
void tu_fill(void *p, size_t n, uint64_t tag);
size_t tu_check(const void *p, size_t n, uint64_t tag);

/* True if every byte of p[0..n) is zero. */
int tu_all_zero(const void *p, size_t n);

#endif
