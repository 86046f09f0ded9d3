/*
 * zkalloc: resident memory across proofs for jemalloc-based zero-knowledge
 * provers.
 *
 * A prover allocates gigabytes of vectors per proof and frees them at the
 * end. jemalloc hands blocks >= 8 MiB back to the kernel, so every proof
 * pays its page faults again. While a "phase" (one proof) is active,
 * zkalloc serves a thread's requests from jemalloc arenas whose extents
 * come from one reserved region, the pool; a freed extent goes back to the
 * pool with its pages still resident, and the next proof's requests take
 * those pages again, whichever thread makes them.
 *
 * The path of an allocation:
 *   zk_malloc & co -> in step with the phase? -> jemalloc (the thread is
 *   bound to its zkalloc arena while a phase is active)
 *   -> extent hooks -> the page pool -> the reserved region.
 *
 * Memory: every block, phase or not, is valid until it is freed, as with
 * malloc. zk_begin_phase() reclaims nothing: a block made in one proof and
 * kept (a twiddle cache, a table, a pool built lazily inside the first
 * proof) stays valid, in place, for as long as the program keeps it, and
 * its pages are never handed out twice. Blocks still allocated at a begin
 * are counted (zk_stats_t.kept_blocks, kept_bytes).
 *
 * Phase contract: only one phase is active at a time (no nesting; a second
 * zk_begin_phase() returns EBUSY and changes nothing). That is all.
 *
 * Routing: in a phase, every request of a thread that calls zkalloc (zk_*,
 * the drop-in's malloc & co, the Rust allocator) is served from the pool
 * (ZK_ALLOC_MIN_BYTES=N: only requests of at least N bytes); outside
 * phases, and in a program that never begins one, jemalloc serves
 * everything as it would without zkalloc.
 *
 * Resident memory: freed pages stay resident between proofs while recent
 * phases need them. At each zk_begin_phase(), free pages beyond what the
 * recent phases' peak needs, in groups none of the last K phases
 * (ZK_ALLOC_TRIM_PHASES, default 4) allocated or freed, are given back to
 * the kernel.
 *
 * Everything is thread-safe unless a line says otherwise. Nothing here
 * aborts: when the pool cannot serve a request (region full, a refused
 * commit) a mapping of its own serves it and it is counted as overflow;
 * without a region (its reservation refused) jemalloc serves everything
 * as it would without zkalloc. The one exception is checked mode (ZK_ALLOC_CHECK=1,
 * off by default), which reports a proven use after free or double free of
 * pool memory (pointer, range, the phase it was freed in, the current
 * phase) and aborts; README.md ("Guarantees") lists what it catches.
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
#define ZK_VERSION_MINOR 2
#define ZK_VERSION_PATCH 0

/* ---------------------------------------------------------------- phases */

/* Start a phase (one proof): from now on, a thread's requests are served
 * from the pool (see "Routing" above). Gives back to the kernel free pages
 * beyond the recent peak that none of the last ZK_ALLOC_TRIM_PHASES phases
 * used (see "Resident memory" above), and advances the epoch. Frees nothing and moves nothing: every block stays
 * valid until freed. Returns 0, or EBUSY if a phase is already active
 * (then nothing changes). Reserves the region on the first call
 * (ZK_ALLOC_REGION_GB of address space, PROT_NONE, committed as the pool
 * grows; under RLIMIT_AS at most half of what is left); if that fails a
 * single warning is printed and phases are served by plain jemalloc. May
 * run while other threads allocate and free. */
ZK_API int zk_begin_phase(void);

/* End the active phase: threads go back to jemalloc's own arenas (each at
 * its next zkalloc call). Idempotent; always returns 0. */
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

/* malloc(3) semantics; size 0 returns a unique pointer. Routed (see above):
 * in a phase, from the pool. NULL + ENOMEM only when jemalloc fails too. */
ZK_API void *zk_malloc(size_t size);

/* calloc(3): zeroed memory; n * size overflow returns NULL with ENOMEM.
 * Pool pages never written since they were fresh or given back are known
 * zero and are not cleared again; the others are cleared (and counted in
 * zk_stats_t.hook_zeroed_bytes). */
ZK_API void *zk_calloc(size_t n, size_t size);

/* realloc(3). Grown in place if jemalloc can; else moved where a new block
 * of the new size would go now (in a phase: the pool; outside: jemalloc's
 * own arenas), its contents copied. p == NULL is zk_malloc(size); size == 0
 * frees p and returns NULL (glibc). On failure p is untouched. */
ZK_API void *zk_realloc(void *p, size_t size);

/* free(3) of anything zk_* or jemalloc's *allocx API returned (and malloc's,
 * when jemalloc is the process's malloc), phase or not, in a phase or not.
 * NULL is a no-op. Any other pointer has undefined behaviour, as with
 * free(3); with ZK_ALLOC_CHECK=1 a pointer into the pool that is not a live
 * block is reported (abort). */
ZK_API void zk_free(void *p);

/* aligned_alloc(3): alignment must be a power of two (else NULL + EINVAL). */
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

/* The rest of jemalloc's *allocx API: zk_sdallocx is zk_dallocx with the
 * size the block was asked with (or its usable size); zk_xallocx resizes in
 * place only (never moves; returns the new usable size, as je_xallocx);
 * zk_sallocx is the usable size of a live block; zk_nallocx the usable size
 * mallocx(size, flags) would give (0 if it cannot). */
ZK_API void zk_sdallocx(void *p, size_t size, int flags);
ZK_API size_t zk_xallocx(void *p, size_t size, size_t extra, int flags);
ZK_API size_t zk_sallocx(const void *p, int flags);
ZK_API size_t zk_nallocx(size_t size, int flags);

/* True iff p lies in zkalloc's pool region (an address test, ~1 ns). Says
 * where a block's pages come from, nothing about its lifetime. */
ZK_API bool zk_owns(const void *p);

/* Opt-in for code that calls je_mallocx itself: MALLOCX_ARENA(i) of this
 * thread's zkalloc arena | MALLOCX_TCACHE_NONE (a thread cache would hand
 * back blocks of any arena), or 0 when no phase is active or the pool is
 * not reserved. Creates the arena on first use. Blocks made with it are
 * ordinary jemalloc blocks: free them any way jemalloc accepts. */
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
 *   zk.version                         const char *    read-only ("0.2.0")
 *   zk.phase.begin, zk.phase.end       void: no old, no new
 *   zk.phase.active                    bool            read-only
 *   zk.phase.epoch                     uint64_t        read-only
 *   zk.thread.arena_flags              int             read-only (zk_arena_flags)
 * Options: read any time; written (old and new together is fine) only
 * before the first zk_begin_phase, then EBUSY. A written value is checked
 * like its ZK_ALLOC_* variable (same range, same enum names) and is in the
 * stored unit: bytes, not GiB, for region_size.
 *   zk.opt.region_size                 size_t          bytes
 *   zk.opt.arenas                      unsigned
 *   zk.opt.min_bytes                   size_t          0 = every request
 *   zk.opt.thp                         const char *    "never" / "always"
 *   zk.opt.trim_phases                 unsigned
 *   zk.opt.check                       bool            read-only (set at load)
 *   zk.opt.verbose                     bool            true prints the banner now
 * Statistics: one read-only name per zk_stats_t field, same type, e.g.
 *   zk.stats.kept_blocks, zk.stats.resident_bytes, zk.stats.trims */
ZK_API int zk_mallctl(const char *name, void *oldp, size_t *oldlenp,
		      void *newp, size_t newlen);

#define ZK_STATS_VERSION 3

/* A snapshot of zkalloc's counters. Set .size = sizeof(zk_stats_t) before
 * calling zk_stats_get(); fields are only ever appended, so an older caller's
 * smaller struct is filled up to its size. Fields of version 1 and 2 that
 * 0.2's one pool no longer has read 0 (marked "unused"). */
typedef struct zk_stats {
	size_t size;       /* in: sizeof the caller's struct */
	uint32_t version;  /* out: ZK_STATS_VERSION of the library */
	bool region_reserved; /* the pool's region could be reserved */
	bool phase_active;
	uint64_t epoch;    /* phases begun */
	size_t slab_size;  /* unused (0) */
	unsigned nslabs;   /* zkalloc arenas threads take in turn
			      (ZK_ALLOC_ARENAS) */
	unsigned slabs_in_use; /* of which created so far */
	size_t resident_bytes; /* pool bytes resident now (mincore) */
	size_t max_slab_resident; /* unused (0) */
	uint64_t overflow_count; /* requests of zkalloc's arenas the pool
				    could not serve: mappings of their own
				    served them (region full, a refused
				    commit) */
	uint64_t overflow_bytes;
	uint64_t arenas_created;   /* zkalloc arenas created */
	uint64_t arenas_destroyed; /* unused (0): arenas live for good */
	uint64_t hook_zeroed_bytes; /* every byte zkalloc made zero because
				       jemalloc asked for zeroed memory
				       (calloc, MALLOCX_ZERO) on pages that
				       may hold data; see zeroed_memset_bytes */
	size_t small_resident_bytes;   /* unused (0) */
	uint64_t small_overflow_count; /* unused (0) */
	/* Version 2. */
	uint64_t shared_count;   /* unused (0) */
	uint64_t arenas_reset;   /* unused (0): nothing is reset */
	uint64_t trims;          /* ranges the decay gave back */
	uint64_t trimmed_bytes;  /* resident bytes the decay gave back */
	uint64_t begin_ns_last;  /* how long the last zk_begin_phase took */
	size_t committed_bytes;  /* region bytes made writable (they count
				    in VmData and, under
				    vm.overcommit_memory=2, the commit
				    charge; resident only where touched) */
	size_t reserved_bytes;   /* address space: region + bookkeeping */
	size_t max_block;        /* the largest block the pool can hold (the
				    region's size); 0 before it is reserved */
	/* Version 3. */
	uint64_t kept_blocks; /* at the last begin: extents still allocated
				 from the pool (a large block, or a slab
				 of small ones), made in earlier phases and
				 kept; they stay valid and in place */
	uint64_t kept_bytes;
	uint64_t live_bytes;	/* pool bytes allocated now */
	uint64_t metadata_bytes; /* jemalloc's metadata for zkalloc's arenas:
				    mapped apart from the pool (not in
				    live_bytes), kept for the process */
	size_t free_bytes;	 /* pool bytes free now (resident or not) */
	size_t top_bytes;	 /* pool bytes ever handed out (high water) */
	uint64_t binds;		 /* threads bound to an arena at a begin */
	uint64_t bind_failures;	 /* threads jemalloc refused to bind */
	uint64_t madvise_failures;  /* refused madvise calls */
	uint64_t mprotect_failures; /* refused mprotect calls */
	uint64_t commit_failures;   /* refused commits of region pages */
	size_t quarantined_bytes; /* checked mode: freed, held out of reuse */
	bool pool_degraded;	  /* a fork caught the pool mid-update in
				     another thread: this process gets fresh
				     pages only (no reuse) */
	uint64_t zeroed_memset_bytes; /* of hook_zeroed_bytes, cleared with
					 memset: the resident pages (the
					 others were given back instead) */
	uint64_t dalloc_refused; /* freed ranges jemalloc had to keep (a
				    piece above them was still in use) */
} zk_stats_t;

/* Fill *out (up to out->size bytes). Returns 0, or EINVAL if out is NULL or
 * out->size is smaller than the size and version fields. */
ZK_API int zk_stats_get(zk_stats_t *out);

#ifdef __cplusplus
}
#endif

#endif /* ZKALLOC_H */
