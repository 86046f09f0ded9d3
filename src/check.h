/*
 * Checked mode (ZK_ALLOC_CHECK=1): use after free and double free of pool
 * memory become a report naming the block, instead of silent corruption.
 *
 * How: a freed extent does not go back to the pool at once. Its pages are
 * given back to the kernel and made inaccessible (pool.c: quarantine), and
 * it is reused only a full phase later (the begin after next). So:
 *  - a read or write of it faults; the SIGSEGV handler finds the range and
 *    reports it (address, the freed range, the phase it was freed in, the
 *    current phase) and aborts;
 *  - a free, realloc or size query of a pointer into the region whose page
 *    is not handed out (double free, a pointer zkalloc never returned) is
 *    reported before jemalloc sees it;
 *  - frees skip jemalloc's thread cache, so even blocks the cache would
 *    hold (up to arenas.tcache_max) reach the pool at once.
 * RSS follows live memory: quarantined pages are given back at once.
 * Limits: small blocks share pages (a jemalloc slab) with live ones, so
 * only a slab that empties is protected; each protected range is a kernel
 * mapping (vm.max_map_count): past the limit mprotect fails (counted in
 * zk.stats.mprotect_failures) and such ranges are only unmapped.
 *
 * Cost when off: one predictable branch on zk_check_on (constant after
 * zk_init) in zk_free and the other entry points that take a pointer.
 */
#ifndef ZK_CHECK_H
#define ZK_CHECK_H

#include <stdbool.h>

/* ZK_ALLOC_CHECK=1. Set once by zk_check_init (inside zk_init's
 * pthread_once) when checked mode is on, never cleared. A thread that
 * frees before zk_init has run reads it without synchronizing with that
 * write: read it with check_on() (a relaxed atomic load, the same single
 * load instruction). */
extern bool zk_check_on __attribute__((visibility("hidden")));

static inline bool check_on(void)
{
	return __atomic_load_n(&zk_check_on, __ATOMIC_RELAXED);
}

/* Set zk_check_on from the options; when on, install the SIGSEGV reporter
 * and send zk_free to the checked path. Called once by zk_init. */
void zk_check_init(void);

/* route.c: zk_free verifies every pointer from now on. */
void zk_route_checked(void);

/* Report and abort unless p (not NULL) may be freed, reallocated or sized
 * now: a pointer into the region must lie on a page handed to jemalloc.
 * op names the call for the report. */
void zk_check_pointer(const void *p, const char *op);

#endif
