/*
 * zkalloc's jemalloc arenas and the per-thread arena index.
 *
 * ZK_ALLOC_ARENAS slots, each one jemalloc arena made with arenas.create
 * and zkalloc's hooks (hooks.h), created the first time a thread needs it
 * and kept for the life of the process. A thread takes a slot at its first
 * phase request (in turn: thread n gets slot n mod ZK_ALLOC_ARENAS) and
 * keeps it; threads beyond the slot count share arenas, as threads share
 * jemalloc's own. Which arena a thread uses decides nothing about pages:
 * every arena draws from the one pool.
 *
 * How a thread's requests reach its arena (the routing, route.c):
 *  - bound (the default): while a phase is active the thread is bound to
 *    its arena with jemalloc's thread.arena, so every request it makes
 *    goes there through jemalloc's own fast paths (thread cache, size
 *    classes); when the phase ends it is bound back to the arena it had.
 *    A thread notices a begin or an end at its next zkalloc call: each
 *    entry point compares zk_tls.gen with zk_g.gen (one load each).
 *  - explicit: with ZK_ALLOC_MIN_BYTES > 0, or when jemalloc refuses
 *    thread.arena (percpu_arena), in-phase requests of at least the
 *    threshold get MALLOCX_ARENA(its arena); smaller ones stay in jemalloc's
 *    automatic arenas.
 */
#ifndef ZK_ARENA_H
#define ZK_ARENA_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* Per thread. */
typedef struct zk_tls {
	uint64_t gen;  /* the zk_g.gen this thread is in step with */
	int slot;      /* 1 + its arena slot; 0: none taken yet */
	unsigned orig; /* the arena it was bound to before binding */
	bool bound;    /* bound to its slot's arena (thread.arena) */
	bool explicit_route; /* jemalloc refused to bind it */
	bool busy;     /* in zkalloc's slow path: a call re-entering from
			  there (the dynamic loader, jemalloc creating an
			  arena) is served by plain jemalloc */
} zk_tls_t;

extern __thread zk_tls_t zk_tls
    __attribute__((tls_model("initial-exec"), visibility("hidden")));

/* Bring this thread in step with the phase state (bind or unbind). After
 * it, zk_tls.gen == zk_g.gen unless the thread must route explicitly
 * (in a phase, not bound): its requests then take the slow path. */
void zk_thread_sync(void);

/* MALLOCX_ARENA(this thread's arena), creating the arena if need be, or
 * 0 if it cannot be had now (being created by another thread, creation
 * refused: see the warning). */
int zk_thread_arena_flags(void);

/* Arenas created so far. */
unsigned zk_arenas_created(void);

/* The index of the first created arena of slot s (tests), or -1. */
int zk_arena_index(unsigned slot);

/* The child of a fork: an arena another thread was creating is created
 * again on demand. */
void zk_arena_fork_child(void);

/* Counters. */
extern _Atomic uint64_t zk_binds, zk_bind_failures;

#endif
