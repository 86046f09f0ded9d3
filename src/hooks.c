/* jemalloc extent hooks over the page pool (hooks.h). */
#include "hooks.h"

#include "os.h"
#include "pool.h"

#include <string.h>

zk_hook_counters_t zk_hook_counters;

#define COUNT(field, v)                                                        \
	atomic_fetch_add_explicit(&zk_hook_counters.field.n, (v),              \
				  memory_order_relaxed)

/* One warning per cause and process. */
#define WARN_ONCE(...)                                                         \
	do {                                                                   \
		static _Atomic bool warned_;                                   \
		if (!atomic_exchange_explicit(&warned_, true,                  \
					      memory_order_relaxed))           \
			zk_os_warnf(__VA_ARGS__);                              \
	} while (0)

#define MiB ((size_t)1 << 20)

static void warn_overflow(zk_pool_fail_t why, size_t size)
{
	switch (why) {
	case ZK_POOL_FULL:
		WARN_ONCE("zkalloc: warning: the phase region is full (%zu "
			  "MiB reserved, %zu MiB free in pieces smaller than "
			  "a %zu-byte request); such requests get mappings "
			  "of their own outside the region, counted as "
			  "overflow (ZK_ALLOC_REGION_GB raises the region)\n",
			  zk_pool.total / MiB,
			  atomic_load_explicit(&zk_pool.free_bytes,
					       memory_order_relaxed) /
			      MiB,
			  size);
		break;
	case ZK_POOL_COMMIT:
		WARN_ONCE("zkalloc: warning: the kernel refused to commit more "
			  "of the phase region (vm.overcommit_memory=2 and the "
			  "commit limit reached?); requests that need more get "
			  "mappings of their own outside the region, counted "
			  "as overflow\n");
		break;
	case ZK_POOL_METADATA:
		WARN_ONCE("zkalloc: warning: the phase region's range table is "
			  "full; requests that need a new range get mappings "
			  "of their own outside the region, counted as "
			  "overflow\n");
		break;
	default:
		/* NONE was warned about at reservation; TOO_BIG is no sign
		 * of a full region: a request larger than it. */
		break;
	}
}

/* jemalloc 5.3's base allocator (arena metadata) asks for whole 2 MiB
 * blocks, 2 MiB aligned, zeroed and committed (base.c: base_map). Data
 * extents are asked for page aligned (opt.retain grows them that way);
 * only a zeroed, 2 MiB aligned data request of a 2 MiB multiple made
 * without opt.retain looks the same, and it is then served as metadata:
 * correct, only outside the pool. */
static bool looks_like_metadata(void *new_addr, size_t size, size_t align,
				bool zero)
{
	size_t huge = (size_t)2 << 20;
	return new_addr == NULL && align == huge && size % huge == 0 && zero;
}

/* Arena metadata lives as long as its arena, i.e. as long as the process:
 * a mapping of its own, apart from the pool, so it never sits between
 * free ranges (taken at the pool's high water it stopped the free range
 * below from growing in place, and a 128 MiB buffer moved to fresh pages:
 * tests/stress/stress_rotate.c under ThreadSanitizer). */
static void *metadata_map(size_t size, size_t align)
{
	void *p;
	if (zk_os_map(size, align, &p) != 0)
		return NULL;
	atomic_fetch_add_explicit(&zk_pool.stats.meta_bytes, size,
				  memory_order_relaxed);
	atomic_fetch_add_explicit(&zk_pool.stats.meta_extents, 1,
				  memory_order_relaxed);
	return p;
}

/* Overflow: a mapping of its own, outside the region (fresh zero pages),
 * unmapped when jemalloc frees it, as jemalloc's own default hooks do
 * without opt.retain. */
static void *overflow_map(size_t size, size_t align)
{
	void *p;
	return zk_os_map(size, align, &p) == 0 ? p : NULL;
}

static void *hook_alloc(extent_hooks_t *h, void *new_addr, size_t size,
			size_t alignment, bool *zero, bool *commit,
			unsigned arena_ind)
{
	(void)h, (void)arena_ind;
	if (!*commit && new_addr == NULL) {
		COUNT(grow_refused, 1);
		return NULL;
	}
	COUNT(alloc, 1);
	void *p;
	if (looks_like_metadata(new_addr, size, alignment, *zero)) {
		p = metadata_map(size, alignment);
		if (p != NULL)
			*commit = true; /* fresh zero pages: *zero stays */
		return p;
	}
	zk_pool_fail_t why;
	bool z = *zero;
	p = zk_pool_alloc(new_addr, size, alignment, &z, &why);
	if (p != NULL) {
		*zero = z;
		*commit = true;
		return p;
	}
	if (new_addr != NULL || why == ZK_POOL_NOPLACE)
		return NULL; /* in-place growth only: jemalloc moves it */
	p = overflow_map(size, alignment);
	if (p != NULL) {
		COUNT(overflow, 1);
		COUNT(overflow_bytes, size);
		warn_overflow(why, size);
		*zero = true; /* fresh pages */
		*commit = true;
	}
	return p;
}

static bool hook_dalloc(extent_hooks_t *h, void *addr, size_t size,
			bool committed, unsigned arena_ind)
{
	(void)h, (void)committed, (void)arena_ind;
	if (!zk_pool_owns(addr))
		return zk_os_release(addr, size) != 0;
	COUNT(dalloc, 1);
	return !zk_pool_free(addr, size);
}

static void hook_destroy(extent_hooks_t *h, void *addr, size_t size,
			 bool committed, unsigned arena_ind)
{
	(void)h, (void)committed, (void)arena_ind;
	if (!zk_pool_owns(addr))
		zk_os_release(addr, size);
	else
		zk_pool_free(addr, size);
}

static bool hook_commit(extent_hooks_t *h, void *addr, size_t size,
			size_t offset, size_t length, unsigned arena_ind)
{
	(void)h, (void)size, (void)arena_ind;
	/* Never decommitted (decommit is refused), so never reached; were it,
	 * success promises zeroed memory. */
	memset((char *)addr + offset, 0, length);
	return false;
}

static bool hook_decommit(extent_hooks_t *h, void *addr, size_t size,
			  size_t offset, size_t length, unsigned arena_ind)
{
	(void)h, (void)addr, (void)size, (void)offset, (void)length;
	(void)arena_ind;
	return true;
}

static bool hook_purge_lazy(extent_hooks_t *h, void *addr, size_t size,
			    size_t offset, size_t length, unsigned arena_ind)
{
	(void)h, (void)addr, (void)size, (void)offset, (void)length;
	(void)arena_ind;
	return true;
}

static bool hook_purge_forced(extent_hooks_t *h, void *addr, size_t size,
			      size_t offset, size_t length, unsigned arena_ind)
{
	(void)h, (void)size, (void)arena_ind;
	/* A degraded pool (forked child) cannot take extents back: jemalloc
	 * keeps them, and their pages go back to the kernel here. Overflow
	 * mappings are unmapped at dalloc and never reach this. */
	if (zk_pool_owns(addr) &&
	    !atomic_load_explicit(&zk_pool.degraded, memory_order_relaxed))
		return true;
	return zk_os_purge((char *)addr + offset, length) != 0;
}

static bool hook_split(extent_hooks_t *h, void *addr, size_t size,
		       size_t size_a, size_t size_b, bool committed,
		       unsigned arena_ind)
{
	(void)h, (void)size, (void)size_a, (void)size_b, (void)committed;
	(void)arena_ind;
	COUNT(split, 1);
	if (zk_pool_owns(addr))
		zk_pool_note_split();
	return false;
}

static bool hook_merge(extent_hooks_t *h, void *addr_a, size_t size_a,
		       void *addr_b, size_t size_b, bool committed,
		       unsigned arena_ind)
{
	(void)h;
	(void)size_a, (void)size_b, (void)committed, (void)arena_ind;
	bool in_a = zk_pool_owns(addr_a), in_b = zk_pool_owns(addr_b);
	if (in_a != in_b)
		return true; /* the region's edge */
	COUNT(merge, 1);
	if (in_a)
		zk_pool_note_merge();
	return false;
}

extent_hooks_t zk_hooks = {
    .alloc = hook_alloc,
    .dalloc = hook_dalloc,
    .destroy = hook_destroy,
    .commit = hook_commit,
    .decommit = hook_decommit,
    .purge_lazy = hook_purge_lazy,
    .purge_forced = hook_purge_forced,
    .split = hook_split,
    .merge = hook_merge,
};
