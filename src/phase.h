/*
 * The phase lifecycle: process-wide state, zk_init, zk_begin_phase /
 * zk_end_phase, the region's reservation, fork.
 *
 * A phase changes where requests go (arena.h: threads are bound to
 * zkalloc's arenas while it is active) and is the clock of the decay
 * (pool.h: zk_pool_begin). It reclaims nothing: memory stays valid until
 * it is freed, whichever phase made it.
 */
#ifndef ZK_PHASE_H
#define ZK_PHASE_H

#include "options.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { ZK_RESERVE_NONE = 0, ZK_RESERVE_DONE, ZK_RESERVE_FAILED };

/* Process-wide state. The atomics are read on the fast paths without a
 * lock; everything else is written by zk_init (once) or under .lock, which
 * is held only to change state: never across a call into jemalloc or
 * anything that allocates. */
typedef struct zk_global {
	_Atomic uint64_t gen;	/* changes at every begin and end: threads
				   compare it with zk_tls.gen on every call */
	_Atomic bool active;	/* a phase is active */
	_Atomic uint64_t epoch; /* phases begun */
	uint64_t opt[ZK_OPT__COUNT]; /* options, read once by zk_init */
	/* Derived from the options by zk_init (and zk_opt_write before the
	 * first phase); constant afterwards. */
	bool bind;	    /* threads are bound to their arena in phases */
	size_t explicit_min; /* explicit routing: the smallest phase request */
	size_t tcache_max;   /* jemalloc's arenas.tcache_max */
	int reserve;	    /* ZK_RESERVE_*, under .lock */
	bool beginning;	    /* a zk_begin_phase is between its locks */
	pthread_mutex_t lock;
	/* Counters. */
	_Atomic uint64_t kept_blocks, kept_bytes; /* at the last begin */
	_Atomic uint64_t begin_ns_last;
} zk_global_t;

extern zk_global_t zk_g __attribute__((visibility("hidden")));

/* Read options, jemalloc's settings and defaults, install fork handlers.
 * Idempotent and cheap after the first call. */
void zk_init(void);

/* Set option id to value (already parsed and range-checked with
 * zk_opt_parse) before the first zk_begin_phase. Returns 0, EBUSY once the
 * first phase has begun (the region is laid out by then), or EINVAL for an
 * option that cannot change after load (ZK_OPT_CHECK). */
int zk_opt_write(zk_opt_id_t id, uint64_t value);

/* The current generation (one relaxed load). */
static inline uint64_t zk_gen(void)
{
	return atomic_load_explicit(&zk_g.gen, memory_order_relaxed);
}

#endif
