/*
 * The page pool's bookkeeping, shared by pool.c (alloc, free, pages),
 * ranges.c (the free-range table) and decay.c (giving pages back; checked
 * mode's quarantine). Not part of the core's interface: everything else
 * uses pool.h.
 */
#ifndef ZK_POOL_IMPL_H
#define ZK_POOL_IMPL_H

#include "pool.h"

#include <pthread.h>

#define NIL	    UINT32_MAX
#define GROUP_SHIFT 6 /* ages are kept per 64 pages */
/* The region and its bookkeeping are committed in steps of this much
 * region (and the matching share of bookkeeping), so a growing pool makes
 * few mprotect calls. */
#define COMMIT_STEP ((size_t)64 << 20)
/* and the small requests' pages (zk_is_small), which grow slowly, in
 * steps of this much. */
#define COMMIT_STEP_SMALL ((size_t)8 << 20)
#define NODE_STEP   4096u
#define CLASSES	    384u /* free lists by length (ranges.c) */

enum { NODE_UNUSED = 0, NODE_FREE, NODE_QUARANTINE };

/* A free (or quarantined) range of pages. */
typedef struct node {
	uint32_t start, len;
	uint32_t left, right; /* free: the address-ordered treap (ranges.c) */
	uint32_t max;	      /* free: the largest len in its subtree */
	uint32_t prev, next;  /* free list, quarantine list or unused stack */
	uint32_t epoch;	      /* quarantine: the phase it was freed in */
	uint8_t state;
} node_t;

/* Bookkeeping, under zk_book.lock unless a comment says otherwise. */
typedef struct pool_book {
	pthread_mutex_t lock;
	uint32_t *map;		 /* page -> 1 + node whose range starts or ends
				    there (stale entries fail validation) */
	_Atomic uint64_t *dirty; /* atomic: range owners write outside lock */
	_Atomic uint64_t *used;	 /* handed to jemalloc */
	_Atomic uint64_t *first; /* first page of a handed-out extent */
	_Atomic uint32_t *age;
	node_t *nodes;
	uint32_t max_nodes, node_hw, node_committed, unused;
	uint32_t root; /* the treap of free ranges */
	/* Free ranges by area (0: below top, 1: from floor up) and length
	 * (ranges.c: class_of); a bit of nonempty
	 * per list. */
	uint32_t heads[2][CLASSES];
	uint64_t nonempty[2][CLASSES / 64];
	uint32_t q_head, q_tail; /* quarantine, oldest first */
	/* Fresh pages: large requests take them from the bump pointer top
	 * upward, small ones (zk_is_small) from floor downward, so the
	 * small blocks a proof keeps (thread caches, lazy tables) never sit
	 * above a free range that a large request would grow. Pages
	 * [top, floor) were never handed out. */
	uint32_t top, floor;
	uint32_t committed;	 /* pages [0, committed) made writable */
	uint32_t committed_hi;	 /* and [committed_hi, pages) */
	char *meta;		 /* the bookkeeping reservation */
	/* Ranges the decay took out and gives back outside the lock; a
	 * forked child puts them back (phase.c: fork). */
	struct {
		uint32_t start, len;
	} batch[64];
	unsigned nbatch;
} pool_book_t;

extern pool_book_t zk_book;

/* The phase age stamps use now (zk_pool_set_epoch). */
extern _Atomic uint32_t zk_pool_now;


#define ADD(field, v)                                                          \
	atomic_fetch_add_explicit(&zk_pool.stats.field, (v),                   \
				  memory_order_relaxed)
#define SUB(field, v)                                                          \
	atomic_fetch_sub_explicit(&zk_pool.stats.field, (v),                   \
				  memory_order_relaxed)

static inline size_t bytes_of(uint32_t pages)
{
	return (size_t)pages << zk_pool.shift;
}

static inline uint32_t page_of(const void *p)
{
	return (uint32_t)(((uintptr_t)p - (uintptr_t)zk_pool.base) >>
			  zk_pool.shift);
}

static inline char *addr_of(uint32_t page)
{
	return zk_pool.base + bytes_of(page);
}

/* Page p was handed out once (its bookkeeping is committed). Lock held. */
static inline bool zk_handed(uint64_t p)
{
	return p < zk_book.top || (p >= zk_book.floor && p < zk_pool.pages);
}

/* Requests below this many bytes are "small": jemalloc's slabs of small
 * blocks and its small large blocks, many of which live long (a slab one
 * block of which stays allocated). */
#define SMALL_BYTES ((size_t)1 << 20)

static inline bool zk_is_small(uint32_t n)
{
	return bytes_of(n) < SMALL_BYTES;
}

/* Page v rounded up (down) to an address aligned to a pages: alignment is
 * of the address, and the region's start is only 2 MiB aligned. The
 * result may lie past the region (callers check). */
static inline uint64_t base_page(void)
{
	return (uintptr_t)zk_pool.base >> zk_pool.shift;
}

static inline uint64_t align_up(uint32_t v, uint32_t a)
{
	uint64_t b = base_page();
	return ((b + v + a - 1) & ~((uint64_t)a - 1)) - b;
}

static inline uint64_t align_down(uint64_t v, uint32_t a)
{
	uint64_t b = base_page();
	return ((b + v) & ~((uint64_t)a - 1)) - b;
}

/* Page bits (zk_book.dirty, used, first): set or clear [s, s + n); count
 * the set bits. */
void zk_bits_set(_Atomic uint64_t *bits, uint32_t s, uint32_t n, bool on);
uint64_t zk_bits_count(_Atomic uint64_t *bits, uint32_t s, uint32_t n);

/* Stamp the 64-page groups of [s, s + n) with the current phase. */
void zk_pool_stamp(uint32_t s, uint32_t n);

/* zk_book.lock, with the test hook (pool.c). */
void zk_pool_lock(void);
void zk_pool_unlock(void);

/* Make [lo, hi) of a reservation writable, rounded out to OS pages;
 * counts a refusal (pool.c). */
int zk_pool_commit_bytes(char *lo, char *hi);

/* The range table (ranges.c), lock held: a node, given back; make a range
 * free (merged with free neighbours); take a range out of the free node
 * that holds it; the free node ending (starting) at a page, or the highest
 * starting below one; every free node (first, next); where a request goes
 * in a node; the node a request goes to. */
uint32_t zk_node_new(void);
void zk_node_release(uint32_t i);
bool zk_insert_free(uint32_t s, uint32_t n);
bool zk_carve(uint32_t i, uint32_t s, uint32_t n, uint32_t *trail_out);
uint32_t zk_free_ending_at(uint32_t e);
uint32_t zk_free_starting_at(uint32_t s);
uint32_t zk_free_below(uint32_t limit);
uint32_t zk_free_first(void);
uint32_t zk_free_next(uint32_t i);
uint32_t zk_place(const node_t *x, uint32_t n, uint32_t a);
uint32_t zk_find_fit(uint32_t n, uint32_t a, bool small_area);

/* decay.c, called by pool.c: checked mode's free, and a forked child's
 * return of the ranges the decay had taken out (lock held). */
void zk_quarantine(uint32_t s, uint32_t n);
void zk_reinsert_batch(void);

#endif
