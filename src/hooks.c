/* jemalloc extent hooks over a bump slab. */
#include "hooks.h"

#include "slab.h"

#include <stddef.h>
#include <string.h>

zk_hook_counters_t zk_hook_counters;

#define COUNT(field) \
	atomic_fetch_add_explicit(&zk_hook_counters.field, 1, memory_order_relaxed)

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
	size_t recycled;
	void *p = zk_slab_bump(slab_of(h), new_addr, size, alignment, &recycled);
	if (p == NULL) {
		COUNT(alloc_failed);
		return NULL;
	}
	zk_slab_t *s = slab_of(h);
	if (!s->pregrowing)
		zk_slab_mark_written(s, (size_t)((char *)p - s->base) + size);
	if (recycled == 0) {
		COUNT(alloc_fresh);
		*zero = true;
	} else if (*zero) {
		memset(p, 0, recycled);
		atomic_fetch_add_explicit(&zk_hook_counters.zeroed_bytes,
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
	/* Never decommitted, so this is only reached for memory that is
	 * committed already; success promises zeroes, so clear what may be
	 * recycled. */
	COUNT(commit);
	zk_slab_t *s = slab_of(h);
	char *p = (char *)addr + offset;
	size_t off = (size_t)(p - s->base);
	zk_slab_mark_written(s, off + length);
	if (off < s->dirty_end) {
		size_t n = s->dirty_end - off < length ? s->dirty_end - off
						       : length;
		memset(p, 0, n);
	}
	return false;
}

static bool hook_decommit(extent_hooks_t *h, void *addr, size_t size,
			  size_t offset, size_t length, unsigned arena_ind)
{
	(void)size, (void)length, (void)arena_ind;
	zk_slab_t *s = slab_of(h);
	size_t off = (size_t)((char *)addr + offset - s->base);
	if (!s->pregrowing || off < s->dirty_end ||
	    off < atomic_load_explicit(&s->written_end, memory_order_relaxed))
		return true;
	COUNT(decommit);
	if (s->decommitted_hi == 0) {
		s->decommitted_lo = off;
		s->decommitted_hi = off + length;
	}
	return false;
}

static bool hook_split(extent_hooks_t *h, void *addr, size_t size,
		       size_t size_a, size_t size_b, bool committed,
		       unsigned arena_ind)
{
	(void)h, (void)addr, (void)size, (void)size_a, (void)size_b;
	(void)committed, (void)arena_ind;
	COUNT(split);
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
	    .purge_forced = NULL,
	    .split = hook_split,
	    .merge = hook_merge,
	};
}
