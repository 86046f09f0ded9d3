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

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Slab sizes are multiples of this; jemalloc asks for base blocks aligned
 * to 2 MiB, so slab starts are aligned to it too. */
#define ZK_SLAB_ALIGN ((size_t)2 << 20)

/* Phases of memory a slab's trim decision looks back on (ring size cap). */
#define ZK_TRIM_RING 64

/* The arena a slab serves. Created once, kept for the life of the process
 * (phase arenas are emptied with arena.<i>.reset at each zk_begin_phase);
 * only checked mode destroys and re-creates phase arenas. */
typedef enum zk_arena_state {
	ZK_ARENA_NONE = 0, /* not created yet */
	ZK_ARENA_CREATING, /* one thread is creating it, outside any lock */
	ZK_ARENA_READY,	   /* arena_ind is valid */
	ZK_ARENA_LOST	   /* could not be reset or destroyed: never reused */
} zk_arena_state_t;

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
	/* Bytes from base made readable and writable (the region is reserved
	 * PROT_NONE and committed on demand, so the commit charge follows
	 * use). Only grows. */
	_Atomic size_t committed;
	/* Bytes below this offset may have been written in an earlier cycle
	 * and hold old data; above it the pages are still kernel zero pages.
	 * Written only by zk_slab_rewind, when no hook can run on the slab. */
	size_t dirty_end;
	/* Since the last rewind: the end of every range jemalloc may have
	 * written. Raised by hooks on any thread (atomic max). */
	_Atomic size_t written_end;
	/* Whether zk_slab_rewind is allowed (phase slabs) or not (resident
	 * slabs, whose arenas hold ordinary memory). */
	bool rewindable;
	/* Set by phase.c while it pregrows a new arena, when no other thread
	 * can reach it: the purge_forced hook then accepts never-written
	 * ranges (they read as zero), so calloc need not clear them. */
	bool pregrowing;
	/* Resident slabs only: one bit per page, set while the page is free
	 * (jemalloc decommitted its extent: the decommit hook accepts without
	 * touching the pages) and may hold old data. The commit hook clears
	 * such pages when jemalloc reuses them; a trim gives them back to the
	 * kernel. trim_lock orders the two (never held across a jemalloc
	 * call). NULL for phase slabs. */
	_Atomic uint64_t *garbage;
	/* Resident slabs only: per 64 pages, the last phase (zk_slab_epoch)
	 * in which any of them was allocated, reused or freed: a trim gives
	 * back only the free pages of words none of the last K phases used. */
	_Atomic uint32_t *used_epoch;
	pthread_mutex_t trim_lock;
	/* The pregrown extent [pg_lo, pg_hi) (0, 0 if none). */
	size_t pg_lo, pg_hi;

	/* Phase decay of phase slabs (see phase.c: trim; resident slabs use
	 * used_epoch instead, and leave these at 0). mark: the highest offset
	 * that allocations made since the last zk_begin_phase ended at (atomic
	 * max, from the routing wrapper and the split/alloc hooks). marks[]:
	 * the last phases' marks. res_hi: offset below which pages may be
	 * resident; pages above it were never touched or were given back. */
	_Atomic size_t mark;
	size_t marks[ZK_TRIM_RING];
	unsigned mark_pos;
	_Atomic size_t
	    res_hi; /* relaxed: read by slab picks, written at begin */

	/* The slab's arena (see zk_arena_state_t). arena_state is atomic:
	 * the routing fast path never reads it, slow paths do without lock. */
	_Atomic int arena_state;
	unsigned arena_ind;
	/* Threads using the slab: phase slabs count the threads that took it
	 * in phase users_epoch; resident slabs the live threads holding it.
	 * Written under zk_g.lock. */
	unsigned users;
	uint64_t users_epoch;
} zk_slab_t;

typedef struct zk_region {
	char *base; /* NULL when not reserved */
	size_t slab_size;
	unsigned nslabs;  /* slabs of slab_size, one thread's each */
	unsigned nshared; /* 0, or 1: one more slab after them, of
			     shared_units * slab_size, for all threads */
	size_t total;	  /* every slab's bytes; 0 when not reserved */
	zk_slab_t *slabs; /* nslabs + nshared entries, in their own mapping */
} zk_region_t;

/* Reserve nslabs slabs of slab_size bytes (a multiple of ZK_SLAB_ALIGN),
 * followed, if shared_units != 0, by one shared slab of shared_units *
 * slab_size bytes, and the slab table; set up every slab with the extent
 * hooks. Returns 0, or the errno of the refused reservation (then *r is
 * left zeroed). */
int zk_region_init(zk_region_t *r, size_t slab_size, unsigned nslabs,
		   unsigned shared_units, bool thp_always, bool rewindable);

/* The shared slab of r, or NULL. */
static inline zk_slab_t *zk_region_shared(const zk_region_t *r)
{
	return r->nshared ? &r->slabs[r->nslabs] : NULL;
}

/* Commit the slab up to offset end (rounded up to the commit granule).
 * Returns 0 or the errno of the refused commit. Any thread. */
int zk_slab_commit(zk_slab_t *s, size_t end);

/* The slab holding p, or NULL if p is outside the region. */
static inline zk_slab_t *zk_region_slab_of(const zk_region_t *r, const void *p)
{
	/* Lock-free: pairs with zk_region_init's release of total. */
	size_t total = __atomic_load_n(&r->total, __ATOMIC_ACQUIRE);
	uintptr_t off = (uintptr_t)p -
			(uintptr_t)__atomic_load_n(&r->base, __ATOMIC_RELAXED);
	if (off >= total)
		return NULL;
	size_t i = off / r->slab_size;
	return &r->slabs[i < r->nslabs ? i : r->nslabs];
}

/* Hand out size bytes aligned to align (a power of two) at the bump
 * pointer, or exactly at want when want is not NULL, committing the range
 * first. Returns NULL when the slab cannot (full, or the commit was
 * refused). *recycled is set to the length of the range's prefix that
 * may hold old data (0 = the whole range is fresh zero pages). */
void *zk_slab_bump(zk_slab_t *s, void *want, size_t size, size_t align,
		   size_t *recycled);

/* Raise an atomic offset to at least v. */
static inline void zk_atomic_max(_Atomic size_t *a, size_t v)
{
	size_t cur = atomic_load_explicit(a, memory_order_relaxed);
	while (cur < v &&
	       !atomic_compare_exchange_weak_explicit(
		   a, &cur, v, memory_order_relaxed, memory_order_relaxed))
		;
}

/* An allocation at p of size bytes was made from slab s's arena in this
 * phase. A small one may come from the thread cache, which holds blocks
 * of any arena: a block outside the slab marks nothing. */
static inline void zk_slab_mark(zk_slab_t *s, const void *p, size_t size)
{
	size_t off = (size_t)((const char *)p - s->base);
	if (off >= s->size)
		return;
	size_t end = off + size;
	if (end > atomic_load_explicit(&s->mark, memory_order_relaxed))
		zk_atomic_max(&s->mark, end);
}

/* Note that jemalloc may write bytes below offset end of the slab. */
static inline void zk_slab_mark_written(zk_slab_t *s, size_t end)
{
	size_t cur =
	    atomic_load_explicit(&s->written_end, memory_order_relaxed);
	while (cur < end && !atomic_compare_exchange_weak_explicit(
				&s->written_end, &cur, end,
				memory_order_relaxed, memory_order_relaxed))
		;
}

/* The current phase, as the resident slabs' ages count it (phase.c
 * stores zk_g.epoch here at each begin). */
extern _Atomic uint32_t zk_slab_epoch;

/* Resident slabs: pages [off, off + len) were handed out in this phase. */
void zk_slab_note_alloc(zk_slab_t *s, size_t off, size_t len);

/* Resident slabs: pages [off, off + len) are free and may hold old data. */
void zk_slab_garbage_set(zk_slab_t *s, size_t off, size_t len);

/* Resident slabs: clear the old data in pages [off, off + len) that hold
 * any (jemalloc reuses them). Takes trim_lock. */
void zk_slab_garbage_clear(zk_slab_t *s, size_t off, size_t len);

/* Resident slabs: give back to the kernel the free pages that none of the
 * last k phases up to epoch used (per 64 pages). Returns the bytes given
 * back. Takes trim_lock. */
size_t zk_slab_garbage_trim(zk_slab_t *s, uint32_t epoch, unsigned k);

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
