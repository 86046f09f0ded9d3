/*
 * The extent_hooks_t that serve a jemalloc arena from a zk_slab_t.
 *
 * Conventions (jemalloc(3) "arena.<i>.extent_hooks"): alloc returns memory or
 * NULL; every other hook returns false on success and true to refuse. A NULL
 * hook always refuses. zkalloc's choices, and why:
 *   alloc        bump the slab (committing the range on demand) with the
 *                requested alignment; fresh pages are reported zeroed,
 *                recycled ones are cleared only when jemalloc asks for
 *                zeroed memory. "Recycled" means below the highest byte
 *                jemalloc may have written before the last rewind
 *                (slab.dirty_end), which alloc and commit keep track of.
 *   dalloc       NULL: refused, so jemalloc keeps the extent as retained and
 *                reuses it; the pages stay resident.
 *   destroy      succeeds and does nothing: slabs are reused wholesale.
 *   commit       succeeds, promising zeroed memory: on a resident slab the
 *                pages recorded as free (decommitted) are cleared; on a
 *                phase slab (never decommitted) recycled bytes are.
 *   decommit     resident slabs: succeeds without touching the pages
 *                (they stay resident) and records them as free, so a
 *                trim can give back exactly the free pages above the
 *                recent phases' need. Phase slabs: refused.
 *   purge_lazy   NULL: refused, pages stay resident (even under
 *                arena.<i>.purge, which some libraries call).
 *   purge_forced refused, except while a new phase arena is pregrown on
 *                never-written memory (the range is zero).
 *   split, merge succeed: the slab is one contiguous range. split and
 *                alloc also raise the slab's phase mark (phase.c: trim).
 * The hooks run on any thread; the shared state they change is the slab's
 * atomic bump pointer, commit and written marks, and the counters below.
 */
#ifndef ZK_HOOKS_H
#define ZK_HOOKS_H

#define JEMALLOC_NO_DEMANGLE
#include <jemalloc/jemalloc.h>

#include <stdatomic.h>
#include <stdint.h>

/* Calls intercepted by the hooks, process-wide; for stats and tests. Each
 * counter has its own cache line: hooks run on every thread at once. */
typedef struct zk_counter {
	_Alignas(64) _Atomic uint64_t n;
} zk_counter_t;

typedef struct zk_hook_counters {
	zk_counter_t alloc;	   /* alloc calls */
	zk_counter_t alloc_failed; /* alloc calls the slab could not serve */
	zk_counter_t alloc_fresh;  /* alloc calls served all from fresh pages */
	zk_counter_t zeroed_bytes; /* recycled bytes cleared on request */
	zk_counter_t commit;
	zk_counter_t purge_zero; /* never-written ranges reported zero */
	zk_counter_t decommit;	 /* resident extents recorded as free */
	zk_counter_t destroy;
	zk_counter_t split;
	zk_counter_t merge;
} zk_hook_counters_t;

extern zk_hook_counters_t zk_hook_counters;

/* Fill *h with zkalloc's hook table. */
void zk_hooks_init(extent_hooks_t *h);

#endif
