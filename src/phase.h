/*
 * Phases: the process-wide epoch, the slab pool, per-thread phase arenas and
 * their lifecycle (lazy arenas.create, arena.<i>.destroy + rewind at the next
 * zk_begin_phase, slabs of exited threads back to the pool, fork).
 */
#ifndef ZK_PHASE_H
#define ZK_PHASE_H

#include "options.h"
#include "slab.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* Process-wide state. Written by zk_init (once), zk_begin_phase and the
 * per-thread slow paths; the slab tables' ownership fields under .lock,
 * which is never held across a call into jemalloc or anything that can
 * allocate. The fast path reads only the atomics and constants. */
typedef struct zk_global {
	_Atomic bool active;	/* a phase is active */
	_Atomic uint64_t epoch; /* phases begun; bumped by zk_begin_phase */
	uint64_t opt[ZK_OPT__COUNT]; /* options, read once by zk_init */
	/* Copies of options the fast path reads (constant after the first
	 * phase; zk_opt_write may change them before it). */
	size_t min_bytes;
	size_t shared_bytes; /* 0: no shared phase slab */
	size_t promote_bytes;
	bool small_resident;
	bool pregrow_ok;    /* jemalloc does not junk-fill (opt.junk) and
			       the commit charge is not strict */
	bool retain;	    /* jemalloc's opt.retain */
	zk_region_t region; /* phase slabs; base NULL if not reserved */
	zk_region_t small;  /* resident slabs (ordinary memory) */
	bool region_tried;  /* reservation attempted (warned on failure) */
	bool beginning;	    /* a zk_begin_phase is between its locks */
	pthread_mutex_t lock;
	pthread_key_t
	    exit_key; /* its destructor hands the thread's slabs back */
	_Alignas(64) _Atomic uint64_t overflow_count;
	_Atomic uint64_t overflow_bytes;
	_Atomic uint64_t small_overflow_count;
	_Atomic uint64_t shared_count; /* slab takes that had to share */
	_Atomic uint64_t arenas_created, arenas_destroyed, arenas_reset;
	_Atomic uint64_t trims, trimmed_bytes;
	_Atomic uint64_t begin_ns_last; /* duration of the last begin */
} zk_global_t;

extern zk_global_t zk_g;

/* Per-thread routing cache and ownership. */
typedef struct zk_tls {
	uint64_t epoch;	       /* phase epoch the flags below belong to */
	int flags;	       /* MALLOCX_ARENA|TCACHE_NONE of the phase arena,
				  or 0: no phase memory for this thread now */
	zk_slab_t *slab;       /* phase slab taken in phase .epoch, or NULL */
	zk_slab_t *last_slab;  /* phase slab of an earlier phase (preferred) */
	uint64_t small_epoch;  /* epoch the small flags were looked up in */
	int small_flags;       /* MALLOCX_ARENA of the resident arena, or 0 */
	zk_slab_t *small_slab; /* resident slab held, or NULL */
	uint64_t shared_epoch; /* epoch shared_flags belong to */
	int shared_flags;      /* MALLOCX_ARENA|TCACHE_NONE of the shared
				  phase arena, or 0 */
	bool busy;	       /* in a slow path: re-entrant calls use plain
				  jemalloc (pthread_setspecific may calloc) */
	bool key_set;	       /* the exit destructor is registered */
} zk_tls_t;

extern __thread zk_tls_t zk_tls __attribute__((tls_model("initial-exec")));

/* Read options and set up locks, the thread-exit key and fork handlers.
 * Idempotent and cheap after the first call. */
void zk_init(void);

/* Set option id to value (already parsed and range-checked with
 * zk_opt_parse) before the first zk_begin_phase. Returns 0, EBUSY once the
 * first phase has begun (the region is laid out by then), or EINVAL for an
 * option that cannot change after load (ZK_OPT_CHECK). */
int zk_opt_write(zk_opt_id_t id, uint64_t value);

/* Slow paths of the lookups below (may create an arena). */
int zk_phase_flags_slow(uint64_t epoch);
int zk_small_flags_slow(uint64_t epoch);
int zk_shared_flags_slow(uint64_t epoch);

/* Flags that put a je_mallocx call into this thread's phase arena, or 0. */
static inline int zk_phase_flags(void)
{
	uint64_t e = atomic_load_explicit(&zk_g.epoch, memory_order_acquire);
	if (__builtin_expect(zk_tls.epoch == e, 1))
		return zk_tls.flags;
	return zk_phase_flags_slow(e);
}

/* Flags that put a je_mallocx call into the phase arena all threads share
 * for requests of at least zk_g.shared_bytes, or 0. */
static inline int zk_shared_flags(void)
{
	uint64_t e = atomic_load_explicit(&zk_g.epoch, memory_order_acquire);
	if (__builtin_expect(zk_tls.shared_epoch == e, 1))
		return zk_tls.shared_flags;
	return zk_shared_flags_slow(e);
}

/* Flags for this thread's resident arena (ordinary memory that keeps its
 * pages across phases), or 0. */
static inline int zk_small_flags(void)
{
	uint64_t e = atomic_load_explicit(&zk_g.epoch, memory_order_acquire);
	if (__builtin_expect(zk_tls.small_epoch == e, 1))
		return zk_tls.small_flags;
	return zk_small_flags_slow(e);
}

/* Count a request that phase memory could not serve. */
static inline void zk_count_overflow(size_t size)
{
	atomic_fetch_add_explicit(&zk_g.overflow_count, 1,
				  memory_order_relaxed);
	atomic_fetch_add_explicit(&zk_g.overflow_bytes, size,
				  memory_order_relaxed);
}

/* A phase arena refused a request that fits a slab: its slab is full.
 * Warns once per process; the other overflow causes warn where found. */
void zk_warn_slab_full(size_t size);

/* Largest request a slab of slab_size bytes serves as one block. */
size_t zk_slab_max_block(size_t slab_size);

/* Largest request phase memory can serve as one block (0 before the
 * region is reserved): the shared slab's, or a thread slab's. */
size_t zk_phase_max_block(void);

/* Slabs used by threads in the current phase (no lock: a snapshot). */
unsigned zk_phase_slabs_in_use(void);

#endif
