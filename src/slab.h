/*
 * The region and its slabs. One reservation is split into equal slabs; each
 * slab is a bump allocator that serves one jemalloc arena through the
 * extent_hooks_t embedded in it. Pages are never returned to the OS: a
 * rewound slab hands the same, already resident, pages out again.
 */
#ifndef ZK_SLAB_H
#define ZK_SLAB_H

#define JEMALLOC_NO_DEMANGLE
#include <jemalloc/jemalloc.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Slab sizes are multiples of this; jemalloc asks for base blocks aligned
 * to 2 MiB, so slab starts are aligned to it too. */
#define ZK_SLAB_ALIGN ((size_t)2 << 20)

typedef enum zk_slab_state {
	ZK_SLAB_FREE = 0, /* in the pool */
	ZK_SLAB_OWNED,    /* held by a live thread */
	ZK_SLAB_ORPHANED, /* its thread exited; back to the pool at the next
			     zk_begin_phase (its memory stays valid until then) */
	ZK_SLAB_LOST      /* its arena could not be destroyed: never reused */
} zk_slab_state_t;

typedef struct zk_slab {
	/* First member: every hook receives &hooks and recovers the slab by
	 * container_of. Identity must not depend on the arena index, which is
	 * unknown during arenas.create and recycled process-wide. */
	extent_hooks_t hooks;
	char *base;
	size_t size;
	/* Offset of the first byte not handed out since the last rewind.
	 * Advanced by hooks on any thread (CAS); reset only by rewind. */
	_Atomic size_t bump;
	/* Bytes below this offset may have been written in an earlier cycle
	 * and hold old data; above it the pages are still kernel zero pages.
	 * Written only by zk_slab_rewind, when no hook can run on the slab. */
	size_t dirty_end;
	/* Since the last rewind: the end of every range jemalloc may have
	 * written (handed out by the alloc hook for use, or committed from a
	 * decommitted extent). Raised by hooks on any thread (atomic max). */
	_Atomic size_t written_end;
	/* Whether zk_slab_rewind is allowed (phase slabs) or not (the
	 * ZK_ALLOC_SMALL=resident slabs, whose arenas live forever). */
	bool rewindable;
	/* Pregrow state, written by phase.c under its lock while it hands a
	 * new arena (no other thread knows it yet) its slab as a retained
	 * extent; see pregrow() there. While pregrowing, what the alloc hook
	 * hands out is not yet written, and the decommit hook accepts a range
	 * that was never written, recording it in decommitted_lo/hi. */
	bool pregrowing;
	size_t decommitted_lo, decommitted_hi;

	/* Phase bookkeeping: owned by phase.c, written under its lock. */
	zk_slab_state_t state;
	unsigned arena_ind;   /* valid when arena_epoch != 0 */
	uint64_t arena_epoch; /* phase epoch the arena was made in; 0 = none */
} zk_slab_t;

typedef struct zk_region {
	char *base;         /* NULL when not reserved */
	size_t slab_size;
	unsigned nslabs;
	size_t total;       /* slab_size * nslabs; 0 when not reserved */
	zk_slab_t *slabs;   /* nslabs entries, in their own mapping */
} zk_region_t;

/* Reserve nslabs * slab_size bytes (slab_size a multiple of ZK_SLAB_ALIGN)
 * and the slab table; set up every slab with the extent hooks. Returns 0, or
 * the errno of the refused reservation (then *r is left zeroed). */
int zk_region_init(zk_region_t *r, size_t slab_size, unsigned nslabs,
		   bool thp_always, bool rewindable);

/* The slab holding p, or NULL if p is outside the region. */
static inline zk_slab_t *zk_region_slab_of(const zk_region_t *r,
					   const void *p)
{
	/* Lock-free: pairs with zk_region_init's release of total. */
	size_t total = __atomic_load_n(&r->total, __ATOMIC_ACQUIRE);
	uintptr_t off = (uintptr_t)p -
			(uintptr_t)__atomic_load_n(&r->base, __ATOMIC_RELAXED);
	if (off >= total)
		return NULL;
	return &r->slabs[off / r->slab_size];
}

/* Hand out size bytes aligned to align (a power of two) at the bump
 * pointer, or exactly at want when want is not NULL. Returns NULL when the
 * slab cannot. *recycled is set to the length of the range's prefix that
 * may hold old data (0 = the whole range is fresh zero pages). */
void *zk_slab_bump(zk_slab_t *s, void *want, size_t size, size_t align,
		   size_t *recycled);

/* Note that jemalloc may write bytes below offset end of the slab. */
static inline void zk_slab_mark_written(zk_slab_t *s, size_t end)
{
	size_t cur = atomic_load_explicit(&s->written_end, memory_order_relaxed);
	while (cur < end && !atomic_compare_exchange_weak_explicit(
				&s->written_end, &cur, end, memory_order_relaxed,
				memory_order_relaxed))
		;
}

/* Rewind a rewindable slab to empty. Precondition: no jemalloc arena refers
 * to any of its memory (the arena was destroyed or never made). */
void zk_slab_rewind(zk_slab_t *s);

/* Highest offset jemalloc may ever have written (an upper bound of the
 * slab's resident bytes). */
size_t zk_slab_high_water(const zk_slab_t *s);

/* Bytes handed out since the last rewind. */
static inline size_t zk_slab_used(const zk_slab_t *s)
{
	return atomic_load_explicit(&s->bump, memory_order_relaxed);
}

#endif
