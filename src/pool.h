/*
 * The page pool: one reserved region whose pages every zkalloc arena draws
 * its extents from, and to which every freed extent returns whole.
 *
 * jemalloc asks the hooks (hooks.c) for an extent; the pool hands out the
 * best-fitting free range it holds (pages freed by any arena, still
 * resident), else fresh pages from its bump pointer. A freed extent goes
 * back into the pool at once and coalesces with its free neighbours, so a
 * proof's freed pages serve the next proof whichever thread or arena asks,
 * and RSS follows the process's live peak. When every block is free, the
 * ranges coalesce back into one: the next proof bumps through the same
 * resident pages from the region's start.
 *
 * Bookkeeping, all outside the region (the region's free pages are never
 * written by the pool): a boundary map (page -> free range starting or
 * ending there), size-class lists of free ranges, and per page a "used"
 * bit (handed to jemalloc) and a "dirty" bit (may hold data: handed out
 * since it was fresh or given back). Per 64 pages the last phase that
 * allocated or freed any of them, for the decay (zk_pool_trim).
 *
 * Locking: one mutex, held only for the bookkeeping (no jemalloc call,
 * nothing that allocates, no memset); clearing, madvise and mprotect of
 * large ranges run outside it on ranges the caller owns.
 */
#ifndef ZK_POOL_H
#define ZK_POOL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Why zk_pool_alloc returned NULL. */
typedef enum zk_pool_fail {
	ZK_POOL_OK = 0,
	ZK_POOL_NONE,	  /* no region (not reserved, or reservation failed) */
	ZK_POOL_TOO_BIG,  /* size plus alignment exceed the whole region */
	ZK_POOL_FULL,	  /* no free range fits and the bump reached the end */
	ZK_POOL_COMMIT,	  /* the kernel refused to commit more (overcommit) */
	ZK_POOL_NOPLACE,  /* new_addr asked for and not free there */
	ZK_POOL_METADATA, /* the range table is full */
} zk_pool_fail_t;

/* Counters: relaxed atomics, each on its own cache line where hot. */
typedef struct zk_pool_stats {
	_Alignas(64) _Atomic uint64_t cleared_bytes; /* made zero for *zero */
	_Atomic uint64_t memset_bytes; /* of which by memset (resident) */
	_Atomic uint64_t fresh_allocs;	/* ranges with no page that held data */
	_Alignas(64) _Atomic uint64_t live_bytes;    /* handed to jemalloc */
	_Atomic uint64_t live_extents;
	/* jemalloc's arena metadata: mappings apart from the pool (hooks.c),
	 * not in live_bytes; never given back (zkalloc keeps its arenas). */
	_Alignas(64) _Atomic uint64_t meta_bytes;
	_Atomic uint64_t meta_extents;
	_Alignas(64) _Atomic uint64_t trims;	   /* ranges given back */
	_Atomic uint64_t trimmed_bytes;		   /* dirty bytes given back */
	_Atomic uint64_t madvise_failures;	   /* refused madvise calls */
	_Atomic uint64_t mprotect_failures;	   /* refused mprotect calls */
	_Atomic uint64_t commit_failures;	   /* refused commits */
	_Atomic uint64_t dalloc_refused; /* ranges left to their arena */
	_Atomic uint64_t phase_peak;	 /* most live_bytes since the begin */
	_Atomic uint64_t quarantined_bytes;	   /* checked mode, now */
} zk_pool_stats_t;

typedef struct zk_pool {
	/* Published by zk_pool_init with release on total: a reader that
	 * loads a non-zero total (acquire) sees the whole pool. */
	char *base;
	size_t total; /* bytes; 0 = no region */
	unsigned shift; /* log2 of the page size */
	uint32_t pages;
	bool quarantine; /* checked mode: freed ranges are protected first */
	zk_pool_stats_t stats;
	/* Everything below: written under lock (pool.c). */
	_Atomic size_t top_bytes;       /* the bump pointer, in bytes */
	_Atomic size_t floor_bytes;     /* the small requests' one */
	_Atomic size_t committed_bytes; /* region bytes made writable */
	_Atomic size_t free_bytes;      /* bytes in free ranges */
	_Atomic size_t meta_reserved;   /* bookkeeping address space */
	_Atomic bool degraded; /* a fork caught the lock held: fresh only */
} zk_pool_t;

extern zk_pool_t zk_pool __attribute__((visibility("hidden")));

/* Reserve a region of bytes (rounded down to whole pages) plus its
 * bookkeeping, PROT_NONE, committed as it is used. thp: MADV_HUGEPAGE
 * instead of MADV_NOHUGEPAGE. quarantine: checked mode (zk_pool_free
 * protects freed ranges). Returns 0 or the refused mmap's errno (then
 * nothing is reserved). Call once, before any other zk_pool_* call. */
int zk_pool_init(size_t bytes, bool thp, bool quarantine);

/* Address space a region of bytes takes with its bookkeeping. */
size_t zk_pool_footprint(size_t bytes);

/* True iff p lies in the region (lock-free; ~1 ns). */
static inline bool zk_pool_owns(const void *p)
{
	size_t total = __atomic_load_n(&zk_pool.total, __ATOMIC_ACQUIRE);
	return (uintptr_t)p - (uintptr_t)__atomic_load_n(&zk_pool.base,
							 __ATOMIC_RELAXED) <
	       total;
}

/* A range of size bytes (a multiple of the page) aligned to align (a power
 * of two, at least a page) at new_addr (exactly there) or anywhere. *zero
 * in: the caller needs zeroed memory (then the range's dirty pages are
 * made zero and counted: resident ones cleared, the others given back);
 * out: the range reads as zero. NULL with *why set when the pool cannot. */
void *zk_pool_alloc(void *new_addr, size_t size, size_t align, bool *zero,
		    zk_pool_fail_t *why);

/* Give back a range zk_pool_alloc handed out (or part of one). Returns
 * false if the pool cannot take it (out of the region, degraded after a
 * fork, no room in the range table): the caller keeps it. In checked mode
 * the range is protected and held out of reuse for a phase first. */
bool zk_pool_free(void *addr, size_t size);

/* jemalloc split one extent in two (extents += 1) or merged two into one
 * (extents -= 1); bytes are unchanged. */
void zk_pool_note_split(void);
void zk_pool_note_merge(void);

/* The decay, run by zk_begin_phase for phase `epoch`: give back to the
 * kernel (MADV_DONTNEED) free pages of 64-page groups that none of the k
 * phases before it allocated or freed, as long as the free pages left
 * resident still cover the largest peak of those phases (plus an eighth):
 * a phase whose threads happen to race to a higher peak than the last one
 * does not fault again. In checked mode, also return to reuse the ranges
 * freed before phase epoch - 1. */
void zk_pool_begin(uint32_t epoch, unsigned k);

/* The phase the age stamps use from now on (set by zk_begin_phase). */
void zk_pool_set_epoch(uint32_t epoch);

/* Checked mode: is the page holding p handed to jemalloc now? And, for a
 * report, the quarantined (freed) range holding p: start, bytes and the
 * phase it was freed in (false if none). */
bool zk_pool_page_used(const void *p);
bool zk_pool_find_freed(const void *p, void **start, size_t *size,
			uint32_t *epoch);

/* Bytes of the region resident now (mincore over what was ever handed
 * out; no lock held). */
size_t zk_pool_resident(void);

/* Fork handlers (phase.c calls them): the child finds out whether the
 * lock was held by a thread that does not exist there. */
void zk_pool_fork_child(void);

/* Tests only: called with the pool lock held in every zk_pool_alloc and
 * zk_pool_free, so a test can fork or pause there. */
extern void (*zk_pool_locked_hook)(void);

#endif
