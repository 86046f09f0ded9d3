/*
 * The extent_hooks_t that serve a jemalloc arena from a zk_slab_t.
 *
 * Conventions (jemalloc(3) "arena.<i>.extent_hooks"): alloc returns memory or
 * NULL; every other hook returns false on success and true to refuse. A NULL
 * hook always refuses. zkalloc's choices, and why:
 *   alloc        bump the slab with the requested alignment; fresh pages are
 *                reported zeroed, recycled ones are cleared only when
 *                jemalloc asks for zeroed memory. "Recycled" means below the
 *                highest byte jemalloc may have written in an earlier cycle
 *                (slab.dirty_end), which alloc and commit keep track of.
 *   dalloc       NULL: refused, so jemalloc keeps the extent as retained and
 *                reuses it; the pages stay resident.
 *   destroy      succeeds and does nothing: the slab is rewound wholesale.
 *   commit       succeeds: slab memory is always mapped; the range counts as
 *                written from now on, and recycled bytes in it are cleared
 *                first, since success promises zeroed memory.
 *   decommit     refused, so pages stay resident (even under
 *                arena.<i>.purge) -- except while phase.c pregrows a new
 *                arena (slab.pregrowing) on a slab whose range was never
 *                written:
 *                those pages are still kernel zero pages, so "decommitted,
 *                reads as zero" is true, and jemalloc keeps the block as
 *                zeroed instead of clearing it for calloc.
 *   purge_lazy, purge_forced   NULL: refused, pages stay resident.
 *   split, merge succeed: the slab is one contiguous range.
 * The hooks run on any thread; the shared state they change is the slab's
 * atomic bump pointer and written mark, and the counters below (the
 * pregrow fields only change while no other thread can reach the arena).
 */
#ifndef ZK_HOOKS_H
#define ZK_HOOKS_H

#define JEMALLOC_NO_DEMANGLE
#include <jemalloc/jemalloc.h>

#include <stdatomic.h>
#include <stdint.h>

/* Calls intercepted by the hooks, process-wide; for stats and tests. */
typedef struct zk_hook_counters {
	_Atomic uint64_t alloc;        /* alloc calls */
	_Atomic uint64_t alloc_failed; /* alloc calls the slab could not serve */
	_Atomic uint64_t alloc_fresh;  /* alloc calls served all from fresh pages */
	_Atomic uint64_t zeroed_bytes; /* recycled bytes cleared on request */
	_Atomic uint64_t commit;
	_Atomic uint64_t decommit;     /* decommits accepted (pregrow only) */
	_Atomic uint64_t destroy;
	_Atomic uint64_t split;
	_Atomic uint64_t merge;
} zk_hook_counters_t;

extern zk_hook_counters_t zk_hook_counters;

/* Fill *h with zkalloc's hook table. */
void zk_hooks_init(extent_hooks_t *h);

#endif
