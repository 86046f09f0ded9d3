/*
 * The extent_hooks_t of every zkalloc arena: jemalloc's extents come from
 * the page pool (pool.h) and go back to it whole when freed.
 *
 * Conventions (jemalloc(3) "arena.<i>.extent_hooks"): alloc returns memory
 * or NULL; every other hook returns false on success and true to refuse.
 * zkalloc's choices, and why:
 *   alloc        refuses jemalloc's "exp-grow" requests (5.3 asks for them
 *                with *commit false, extent.c: extent_grow_retained): the
 *                arena then asks for the exact extent it needs, and spare
 *                pages stay in the pool, where every arena can use them,
 *                not in one arena's retained set. The exact request is
 *                served by the pool (best-fitting free range, else fresh
 *                pages); cleared only when jemalloc asks for zeroed memory
 *                and only the pages that held data. When the pool cannot
 *                serve it (region full, not reserved, a refused commit) it
 *                gets a mapping of its own outside the region (mmap):
 *                overflow, counted, warned about once, unmapped at dalloc.
 *   dalloc       gives the extent back to the pool (resident, reusable by
 *                any arena at once). With decay 0 every freed extent comes
 *                here straight away.
 *   destroy      like dalloc (arenas are never destroyed, but be correct).
 *   commit       in-region extents are always committed: succeed, clearing
 *                dirty pages as the contract asks.
 *   decommit, purge_lazy, purge_forced
 *                refused in the region (pages stay resident; jemalloc never
 *                asks, since dalloc succeeds), except in a forked child whose
 *                pool is degraded (pool.h): then purge_forced gives the
 *                pages back and succeeds.
 *   split, merge succeed (merge refuses to join the region with memory
 *                outside it).
 * Extents outside the region are overflow mappings: unmapped at dalloc,
 * given back by purge_forced. The hooks run on any thread, with no
 * jemalloc lock held except around split/merge (which take no zkalloc
 * lock).
 */
#ifndef ZK_HOOKS_H
#define ZK_HOOKS_H

#include "je.h"

#include <stdatomic.h>
#include <stdint.h>

/* The one hook table every zkalloc arena is created with. */
extern extent_hooks_t zk_hooks;

/* Calls intercepted by the hooks, process-wide; for stats and tests. Each
 * counter has its own cache line: hooks run on every thread at once. */
typedef struct zk_counter {
	_Alignas(64) _Atomic uint64_t n;
} zk_counter_t;

typedef struct zk_hook_counters {
	zk_counter_t alloc;	   /* exact requests */
	zk_counter_t grow_refused; /* exp-grow requests refused */
	zk_counter_t dalloc;
	zk_counter_t overflow;	     /* requests served by overflow mappings */
	zk_counter_t overflow_bytes;
	zk_counter_t split;
	zk_counter_t merge;
} zk_hook_counters_t;

extern zk_hook_counters_t zk_hook_counters;

#endif
