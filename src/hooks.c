/* jemalloc extent hooks over a bump slab. */
#include "hooks.h"

#include "slab.h"

#include <stddef.h>
#include <string.h>

zk_hook_counters_t zk_hook_counters;

#define COUNT(field)                                                           \
	atomic_fetch_add_explicit(&zk_hook_counters.field.n, 1,                \
				  memory_order_relaxed)

static inline zk_slab_t *slab_of(extent_hooks_t *h)
{
	return (zk_slab_t *)((char *)h - offsetof(zk_slab_t, hooks));
}

static void *hook_alloc(extent_hooks_t *h, void *new_addr, size_t size,
			size_t alignment, bool *zero, bool *commit,
			unsigned arena_ind)
{
	(void)arena_ind;
	COUNT(alloc);
	zk_slab_t *s = slab_of(h);
	size_t recycled;
	void *p = zk_slab_bump(s, new_addr, size, alignment, &recycled);
	if (p == NULL) {
		COUNT(alloc_failed);
		return NULL;
	}
	size_t end = (size_t)((char *)p - s->base) + size;
	zk_slab_note_alloc(s, end - size, size);
	if (!s->pregrowing) {
		zk_slab_mark_written(s, end);
		zk_slab_mark(s, p, size);
	}
	if (recycled == 0) {
		COUNT(alloc_fresh);
		*zero = true;
	} else if (*zero) {
		memset(p, 0, recycled);
		atomic_fetch_add_explicit(&zk_hook_counters.zeroed_bytes.n,
					  recycled, memory_order_relaxed);
	}
	*commit = true;
	return p;
}

static void hook_destroy_noop(extent_hooks_t *h, void *addr, size_t size,
			      bool committed, unsigned arena_ind)
{
	(void)h, (void)addr, (void)size, (void)committed, (void)arena_ind;
	COUNT(destroy);
}

static bool hook_commit(extent_hooks_t *h, void *addr, size_t size,
			size_t offset, size_t length, unsigned arena_ind)
{
	(void)arena_ind, (void)size;
	/* Success promises zeroed memory. */
	COUNT(commit);
	zk_slab_t *s = slab_of(h);
	char *p = (char *)addr + offset;
	size_t off = (size_t)(p - s->base);
	zk_slab_mark_written(s, off + length);
	if (s->garbage != NULL) {
		/* Resident slab: jemalloc reuses a range it decommitted;
		 * clear the pages that held data. */
		zk_slab_garbage_clear(s, off, length);
	} else if (off < s->dirty_end) {
		/* Phase slabs are never decommitted: only reached for
		 * committed memory; clear what may be recycled. */
		size_t n =
		    s->dirty_end - off < length ? s->dirty_end - off : length;
		memset(p, 0, n);
	}
	return false;
}

/* Resident slabs: a freed extent is "decommitted" without touching its
 * pages (they stay resident, a reuse costs no fault), and its pages are
 * recorded as free: the commit hook clears them on reuse, a trim may give
 * them back. Phase slabs refuse: pages stay as they are. */
static bool hook_decommit(extent_hooks_t *h, void *addr, size_t size,
			  size_t offset, size_t length, unsigned arena_ind)
{
	(void)size, (void)arena_ind;
	zk_slab_t *s = slab_of(h);
	if (s->garbage == NULL)
		return true;
	COUNT(decommit);
	zk_slab_garbage_set(s, (size_t)((char *)addr + offset - s->base),
			    length);
	return false;
}

/* "The range now reads as zero" (false) is said only while a new phase
 * arena is pregrown (slab.pregrowing), for a range nothing was ever
 * written to: its pages are kernel zero pages. */
static bool hook_purge_forced(extent_hooks_t *h, void *addr, size_t size,
			      size_t offset, size_t length, unsigned arena_ind)
{
	(void)size, (void)arena_ind, (void)length;
	zk_slab_t *s = slab_of(h);
	size_t off = (size_t)((char *)addr + offset - s->base);
	if (!s->pregrowing || off < s->dirty_end ||
	    off < atomic_load_explicit(&s->written_end, memory_order_relaxed))
		return true;
	COUNT(purge_zero);
	return false;
}

static bool hook_split(extent_hooks_t *h, void *addr, size_t size,
		       size_t size_a, size_t size_b, bool committed,
		       unsigned arena_ind)
{
	(void)size, (void)size_b, (void)committed, (void)arena_ind;
	COUNT(split);
	/* The lower piece is either an allocation or an alignment lead;
	 * either way the phase reached its end. */
	zk_slab_t *s = slab_of(h);
	zk_slab_mark(s, addr, size_a);
	return false;
}

static bool hook_merge(extent_hooks_t *h, void *addr_a, size_t size_a,
		       void *addr_b, size_t size_b, bool committed,
		       unsigned arena_ind)
{
	(void)h, (void)addr_a, (void)size_a, (void)addr_b, (void)size_b;
	(void)committed, (void)arena_ind;
	COUNT(merge);
	return false;
}

void zk_hooks_init(extent_hooks_t *h)
{
	*h = (extent_hooks_t){
	    .alloc = hook_alloc,
	    .dalloc = NULL,
	    .destroy = hook_destroy_noop,
	    .commit = hook_commit,
	    .decommit = hook_decommit,
	    .purge_lazy = NULL,
	    .purge_forced = hook_purge_forced,
	    .split = hook_split,
	    .merge = hook_merge,
	};
}
