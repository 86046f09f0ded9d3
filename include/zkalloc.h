/*
 * zkalloc: resident phase memory for jemalloc-based zero-knowledge provers.
 *
 * A prover allocates gigabytes of large vectors per proof and frees them at
 * the end. jemalloc hands blocks >= 8 MiB back to the kernel, so every proof
 * pays its page faults again. zkalloc serves the large allocations made
 * during a "phase" (one proof) from jemalloc arenas whose extents come from
 * one reserved region; zk_begin_phase() empties those arenas wholesale, so
 * the next proof reuses the same resident pages.
 *
 * The path of an allocation:
 *   zk_malloc & co -> routing decision -> je_mallocx(MALLOCX_ARENA(phase))
 *   -> extent hook -> bump slab -> reserved region.
 *
 * Kinds of memory:
 *   phase memory   in a phase, requests of at least zk.opt.min_bytes (the
 *                  thread cache limit + 1 by default). Valid until the next
 *                  zk_begin_phase(). zk_owns() is true for it.
 *   ordinary       everything else: small requests, anything outside a
 *                  phase, realloc of an ordinary block. Valid until freed,
 *                  as with malloc. Made in a phase, it comes from the
 *                  thread's resident arena (ZK_ALLOC_SMALL=resident, the
 *                  default), whose pages stay resident across phases.
 *
 * Phase contract:
 *   1. Memory allocated in phase N (any pointer for which zk_owns() is true)
 *      must not be used, freed or reallocated after zk_begin_phase() starts
 *      phase N+1. zk_end_phase() does not invalidate it.
 *   2. zk_begin_phase() must not run while another thread allocates, frees or
 *      reallocates phase memory. Ordinary allocations may go on meanwhile.
 *   3. Only one phase is active at a time in a process (no nesting; a second
 *      zk_begin_phase() returns EBUSY and changes nothing).
 *
 * Threads: requests of at least zk.opt.shared_bytes (8 MiB) go to one phase
 * arena shared by all threads, so big buffers reuse the same pages whichever
 * thread makes them. For smaller ones a thread takes a slab (and its arena)
 * at its first such request of each phase: the one it had before if free, else the free slab with the
 * most resident pages, else it shares the least used slab's arena with other
 * threads (arenas are thread-safe). A thread that exits leaves its slab free
 * for the next thread at once; its blocks stay valid until the next begin.
 *
 * Resident memory: pages are never given back between proofs while recent
 * phases need them. At each zk_begin_phase(), pages that none of the last K
 * phases (ZK_ALLOC_TRIM_PHASES, default 4) needed are given back to the
 * kernel, for phase and resident arenas alike. Outside phases, and in a
 * program that never begins one, nothing changes.
 *
 * Everything is thread-safe unless a line says otherwise. Nothing here
 * aborts: when phase memory cannot serve a request (region not reserved, a
 * block larger than zk_stats_t.max_block, slab full, a refused commit) the
 * request is served by ordinary jemalloc and counted as overflow. The one
 * exception is checked mode (ZK_ALLOC_CHECK=1, off by default), which
 * reports a proven violation of the contract above (pointer, size, its
 * phase, the current phase) and aborts; README.md ("Guarantees") lists what
 * it catches.
 */
#ifndef ZKALLOC_H
#define ZKALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(ZK_BUILDING_LIBRARY)
#define ZK_API __attribute__((visibility("default")))
#else
#define ZK_API
#endif

#define ZK_VERSION_MAJOR 0
#define ZK_VERSION_MINOR 1
#define ZK_VERSION_PATCH 0

/* ---------------------------------------------------------------- phases */

/* Start a phase. Empties every phase arena used in the last phase
 * (arena.<i>.reset: pages stay resident), gives back the pages that none of
 * the last ZK_ALLOC_TRIM_PHASES phases needed, and advances the epoch.
 * Returns 0, or EBUSY if a phase is already active (then nothing changes).
 * Reserves the address space on the first call (PROT_NONE, committed as
 * slabs grow; under RLIMIT_AS at most half of what is left); if that fails
 * a single warning is printed and the phase still starts, served by plain
 * jemalloc. */
ZK_API int zk_begin_phase(void);

/* End the active phase. Idempotent; always returns 0. Phase memory stays
 * valid (and may be freed) until the next zk_begin_phase(). */
ZK_API int zk_end_phase(void);

/* True between zk_begin_phase() and zk_end_phase(). */
ZK_API bool zk_phase_active(void);

/* Number of phases begun so far in this process (0 before the first). */
ZK_API uint64_t zk_phase_epoch(void);

/* Scope form: ZK_PHASE { ... } begins a phase on entry and ends it on every
 * way out of the block (end, break, return, goto). Inside the block the int
 * zk_phase_rc holds zk_begin_phase()'s result; if it is not 0 (EBUSY: a phase
 * was already active) the block still runs, inside the phase already active,
 * and that phase is not ended on exit. `break` leaves the phase block. */
static inline void zk__phase_scope_end(int *rc)
{
	if (*rc == 0)
		zk_end_phase();
}
#define ZK__CAT2(a, b) a##b
#define ZK__CAT(a, b) ZK__CAT2(a, b)
#define ZK_PHASE                                                               \
	for (int zk_phase_rc __attribute__((cleanup(zk__phase_scope_end))) =   \
		 zk_begin_phase(),                                             \
		 ZK__CAT(zk__once_, __LINE__) = 1;                             \
	     ZK__CAT(zk__once_, __LINE__); ZK__CAT(zk__once_, __LINE__) = 0)

/* ------------------------------------------------------------ allocation */

/* malloc(3) semantics; size 0 returns a unique pointer. In a phase, sizes >=
 * zk.opt.min_bytes come from this thread's phase arena (up to max_block;
 * larger ones are ordinary, counted as overflow if they succeed). NULL +
 * ENOMEM only when plain jemalloc fails too; a failed request is neither
 * overflow nor reported as a full slab. */
ZK_API void *zk_malloc(size_t size);

/* calloc(3): zeroed memory; n * size overflow returns NULL with ENOMEM. Fresh
 * slab pages are known zero and are not cleared again. */
ZK_API void *zk_calloc(size_t n, size_t size);

/* realloc(3), sticky: a phase pointer stays in its own slab's arena (unless
 * that slab is exhausted: then it moves to ordinary memory, counted as
 * overflow); any other pointer stays ordinary: in a phase, if it must move,
 * into this thread's resident arena (its growth stops re-faulting from
 * proof to proof, and it stays valid after the phase). Only with the unsafe
 * opt-in ZK_ALLOC_PROMOTE_BYTES does growing an ordinary block inside a
 * phase to at least that many bytes move it into phase memory. p == NULL is
 * zk_malloc(size); size == 0 frees p and returns NULL (glibc). On failure p
 * is untouched. */
ZK_API void *zk_realloc(void *p, size_t size);

/* free(3) of anything zk_* or jemalloc's *allocx API returned (and malloc's,
 * when jemalloc is the process's malloc). NULL is a no-op. Any other pointer
 * has undefined behaviour, as with free(3); with ZK_ALLOC_CHECK=1 a pointer
 * into the phase region that is not a live block is reported (abort). */
ZK_API void zk_free(void *p);

/* aligned_alloc(3): alignment must be a power of two (else NULL + EINVAL).
 * A phase block is phase memory while its size plus its alignment fit
 * zk_stats_t.max_block (7 GiB of the default 8 GiB slab: the largest
 * jemalloc size class that fits the slab less its metadata reserve);
 * beyond that it is ordinary memory, counted as overflow. */
ZK_API void *zk_aligned_alloc(size_t alignment, size_t size);

/* posix_memalign(3): EINVAL (and *out untouched) unless alignment is a power
 * of two multiple of sizeof(void *); ENOMEM on failure; 0 on success. */
ZK_API int zk_posix_memalign(void **out, size_t alignment, size_t size);

/* Usable size of a live block (0 for NULL). */
ZK_API size_t zk_malloc_usable_size(const void *p);

/* jemalloc-style entry points taking MALLOCX_* flags (alignment, zero,
 * tcache). An explicit MALLOCX_ARENA(i) in flags is honoured as is and
 * bypasses routing. Same routing as zk_malloc / zk_realloc / zk_free. */
ZK_API void *zk_mallocx(size_t size, int flags);
ZK_API void *zk_rallocx(void *p, size_t size, int flags);
ZK_API void zk_dallocx(void *p, int flags);

/* The rest of jemalloc's *allocx API, with the same routing:
 * zk_sdallocx is zk_dallocx with the size the block was asked with (or its
 * usable size); zk_xallocx resizes in place only (never moves; returns the
 * new usable size, as je_xallocx), phase blocks within their arena;
 * zk_sallocx is the usable size of a live block; zk_nallocx the usable
 * size mallocx(size, flags) would give (0 if it cannot). */
ZK_API void zk_sdallocx(void *p, size_t size, int flags);
ZK_API size_t zk_xallocx(void *p, size_t size, size_t extra, int flags);
ZK_API size_t zk_sallocx(const void *p, int flags);
ZK_API size_t zk_nallocx(size_t size, int flags);

/* True iff p lies in zkalloc's phase region (an address test, ~1 ns). A
 * phase pointer is only valid until the next zk_begin_phase(). */
ZK_API bool zk_owns(const void *p);

/* Opt-in for code that calls je_mallocx itself: the flags that put a
 * je_mallocx call into this thread's phase arena
 * (MALLOCX_ARENA(i) | MALLOCX_TCACHE_NONE), or 0 when no phase is active,
 * no slab/arena is available, or ZK_ALLOC_CHECK=1 (checked mode tracks every
 * phase block, so none may bypass zk_*). Creates the arena on first use.
 * Free such blocks with zk_free() or je_dallocx(p, MALLOCX_TCACHE_NONE).
 * A NULL from je_mallocx with these flags means the slab is exhausted: the
 * caller must fall back (e.g. to zk_mallocx). */
ZK_API int zk_arena_flags(void);

/* ------------------------------------------------------- control, stats */

/* mallctl(3)-style control. Names under "zk." are zkalloc's; every other name
 * is passed to je_mallctl, so all of a prover's mallctl calls may go through
 * here. Returns 0, ENOENT (unknown name), EINVAL (bad buffer or length, or
 * a written value out of range), EPERM (write to a read-only name), EBUSY
 * (zk.phase.begin during a phase; an option written after the first phase
 * began), EFAULT (NULL name). Reads copy into *oldp when *oldlenp equals the
 * value's size exactly (else EINVAL, nothing written); writes need newlen
 * equal to it. A failed call changes nothing. Names:
 *   zk.version                         const char *    read-only ("0.1.0")
 *   zk.phase.begin, zk.phase.end       void: no old, no new
 *   zk.phase.active                    bool            read-only
 *   zk.phase.epoch                     uint64_t        read-only
 *   zk.thread.arena_flags              int             read-only (zk_arena_flags)
 * Options: read any time; written (old and new together is fine) only
 * before the first zk_begin_phase, then EBUSY. A written value is checked
 * like its ZK_ALLOC_* variable (same range, same enum names) and is in the
 * stored unit: bytes, not GiB, for slab_size (rounded up to 2 MiB).
 *   zk.opt.slab_size                   size_t          bytes per slab
 *   zk.opt.nslabs                      unsigned
 *   zk.opt.min_bytes                   size_t
 *   zk.opt.promote_bytes               size_t          0 = off
 *   zk.opt.thp                         const char *    "never" / "always"
 *   zk.opt.small                       const char *    "ordinary" / "resident"
 *   zk.opt.check                       bool            read-only (set at load)
 *   zk.opt.verbose                     bool            true prints the banner now
 * Statistics: one read-only name per zk_stats_t field, same type, e.g.
 *   zk.stats.version                   uint32_t
 *   zk.stats.region_reserved, zk.stats.phase_active        bool
 *   zk.stats.epoch, zk.stats.overflow_count, zk.stats.overflow_bytes,
 *   zk.stats.arenas_created, zk.stats.arenas_destroyed,
 *   zk.stats.hook_zeroed_bytes, zk.stats.small_overflow_count  uint64_t
 *   zk.stats.slab_size, zk.stats.resident_bytes, zk.stats.max_slab_resident,
 *   zk.stats.small_resident_bytes                          size_t
 *   zk.stats.nslabs, zk.stats.slabs_in_use                 unsigned */
ZK_API int zk_mallctl(const char *name, void *oldp, size_t *oldlenp,
		      void *newp, size_t newlen);

#define ZK_STATS_VERSION 2

/* A snapshot of zkalloc's counters. Set .size = sizeof(zk_stats_t) before
 * calling zk_stats_get(); fields are only ever appended, so an older caller's
 * smaller struct is filled up to its size. */
typedef struct zk_stats {
	size_t size;       /* in: sizeof the caller's struct */
	uint32_t version;  /* out: ZK_STATS_VERSION of the library */
	bool region_reserved; /* the phase region could be reserved */
	bool phase_active;
	uint64_t epoch;    /* phases begun */
	size_t slab_size;  /* bytes per slab */
	unsigned nslabs;   /* slabs in the region */
	unsigned slabs_in_use; /* slabs held by live threads */
	size_t resident_bytes; /* phase slab bytes resident now (mincore):
				  touched pages, never returned to the OS */
	size_t max_slab_resident; /* the most resident bytes of one slab: what
				     one thread's phase really touched; keep
				     slab_size well above it */
	uint64_t overflow_count; /* in-phase large requests plain jemalloc
				    served instead */
	uint64_t overflow_bytes;
	uint64_t arenas_created;   /* phase arenas created, all phases */
	uint64_t arenas_destroyed; /* phase arenas destroyed (checked mode) */
	uint64_t hook_zeroed_bytes; /* recycled bytes the hooks cleared */
	size_t small_resident_bytes; /* resident arenas: bytes resident */
	uint64_t small_overflow_count; /* ordinary in-phase requests the
					  resident arenas refused */
	/* Version 2. */
	uint64_t shared_count;   /* times a thread found no free slab and
				    shared another thread's arena */
	uint64_t arenas_reset;   /* phase arenas emptied by begin_phase */
	uint64_t trims;          /* phase-decay trims (slabs given back to) */
	uint64_t trimmed_bytes;  /* bytes those trims gave back */
	uint64_t begin_ns_last;  /* how long the last zk_begin_phase took */
	size_t committed_bytes;  /* bytes of both regions made writable */
	size_t reserved_bytes;   /* address space of both regions */
	size_t max_block;        /* the largest single phase block (size plus
				    alignment) a slab can hold; 0 before the
				    first phase */
} zk_stats_t;

/* Fill *out (up to out->size bytes). Returns 0, or EINVAL if out is NULL or
 * out->size is smaller than the size and version fields. */
ZK_API int zk_stats_get(zk_stats_t *out);

#ifdef __cplusplus
}
#endif

#endif /* ZKALLOC_H */
