/*
 * Checked mode (ZK_ALLOC_CHECK=1): catches violations of the phase contract
 * and reports them instead of letting them corrupt memory silently.
 *
 * Caught: a phase block used (SIGSEGV on memory protected at the next
 * zk_begin_phase), freed or reallocated after the next zk_begin_phase; a
 * double free; zk_begin_phase while another thread is inside a phase
 * allocation, free or realloc. Every report names the pointer, its size, the
 * phase it was allocated in and the current phase, then aborts: each is
 * proven memory corruption.
 *
 * How: every phase block made through the zk_* entry points is kept in a
 * table (address -> size, epoch, live/freed); at zk_begin_phase the memory
 * of the destroyed arenas is mprotect()ed instead of rewound, so the next
 * phase bumps above it, until a slab is half used (then it is rewound and
 * unprotected). zk_arena_flags() returns 0 in checked mode, so every phase
 * block passes through the table.
 *
 * Cost when off: route.c and phase.c test zk_check_on (constant after
 * zk_init) once on the in-phase and begin paths only.
 */
#ifndef ZK_CHECK_H
#define ZK_CHECK_H

#include "slab.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ZK_ALLOC_CHECK=1. Written once by zk_check_init (inside zk_init's
 * pthread_once), read-only afterwards. */
extern bool zk_check_on;

/* Set zk_check_on from the options; when on, reserve the table and install
 * the SIGSEGV reporter and fork handlers. Called once by zk_init. */
void zk_check_init(void);

/* A phase allocation, free or realloc starts on this thread (op names it;
 * p and size as far as known). Returns a ticket for zk_check_leave. */
int zk_check_enter(const char *op, const void *p, size_t size);

/* The operation of ticket t ended; reports if a zk_begin_phase ran since
 * zk_check_enter. */
void zk_check_leave(int t);

/* Report and abort unless p may be freed or reallocated now: not a freed
 * block (double free), not a block or range of an earlier phase. Returns
 * the block's generation for zk_check_untrack (0 if p is untracked). */
uint64_t zk_check_verify(const void *p, const char *op);

/* p is a new live phase block of size bytes in the current phase. */
void zk_check_track(const void *p, size_t size);

/* p (generation gen, from zk_check_verify) was freed; a no-op if the
 * address has been handed out again since. */
void zk_check_untrack(const void *p, uint64_t gen);

/* Called by zk_begin_phase with the lock held, before any arena goes:
 * reports if another thread is inside a phase operation. */
void zk_check_begin(void);

/* Replaces zk_slab_rewind in checked mode: protect what the slab's
 * destroyed arena used and keep bumping above it, or rewind (and
 * unprotect) once the slab is half used. Lock held, arena destroyed. */
void zk_check_retire(zk_slab_t *s);

/* Tests only: when set, called by zk_check_enter after the operation is
 * registered, so a test can hold a thread inside a phase operation. */
extern void (*zk_check_pause_hook)(void);

#endif
