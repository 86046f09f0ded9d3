/* The page pool: free ranges, the bump pointer, page bits (pool.h). */
#include "pool_impl.h"

#include "os.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

zk_pool_t zk_pool;
pool_book_t zk_book = {.lock = PTHREAD_MUTEX_INITIALIZER};
void (*zk_pool_locked_hook)(void);

_Atomic uint32_t zk_pool_now;

/* ------------------------------------------------------- page bits */

static inline uint64_t mask(unsigned lo, unsigned n)
{
	return (n == 64 ? ~(uint64_t)0 : (((uint64_t)1 << n) - 1)) << lo;
}

/* Set (on) or clear the bits of pages [s, s + n). A word whose 64 pages
 * all lie in the range holds no other range's bits: a plain store; only
 * the words at the ends need an atomic read-modify-write (a 64 MiB block
 * is 256 words: 256 locked operations cost microseconds). */
void zk_bits_set(_Atomic uint64_t *bits, uint32_t s, uint32_t n, bool on)
{
	uint64_t p = s, end = (uint64_t)s + n;
	while (p < end) {
		unsigned b = (unsigned)(p % 64);
		unsigned k = end - p < 64 - b ? (unsigned)(end - p) : 64 - b;
		uint64_t m = mask(b, k);
		if (k == 64)
			atomic_store_explicit(&bits[p / 64],
					      on ? ~(uint64_t)0 : 0,
					      memory_order_relaxed);
		else if (on)
			atomic_fetch_or_explicit(&bits[p / 64], m,
						 memory_order_relaxed);
		else
			atomic_fetch_and_explicit(&bits[p / 64], ~m,
						  memory_order_relaxed);
		p += k;
	}
}

/* Number of set bits among pages [s, s + n). */
uint64_t zk_bits_count(_Atomic uint64_t *bits, uint32_t s, uint32_t n)
{
	uint64_t p = s, end = (uint64_t)s + n, c = 0;
	while (p < end) {
		unsigned b = (unsigned)(p % 64);
		unsigned k = end - p < 64 - b ? (unsigned)(end - p) : 64 - b;
		c += (uint64_t)__builtin_popcountll(
		    atomic_load_explicit(&bits[p / 64], memory_order_relaxed) &
		    mask(b, k));
		p += k;
	}
	return c;
}

/* Make pages [s, s + n) read as zero, touching only those that hold
 * data: resident pages are cleared with memset (they stay resident, no
 * fault later); the others (never written, or swapped out) are given back
 * (MADV_DONTNEED: zero on the next touch, nothing faulted in now).
 * Returns the bytes cleared by memset. */
static size_t zero_run(uint32_t s, uint32_t n)
{
	unsigned char vec[1024];
	size_t memset_bytes = 0;
	while (n > 0) {
		uint32_t k = n < sizeof(vec) ? n : (uint32_t)sizeof(vec);
		if (zk_os_residency(addr_of(s), k, vec) != 0)
			memset(vec, 1, k); /* cannot tell: clear all */
		uint32_t i = 0;
		while (i < k) {
			uint32_t j = i;
			bool res = vec[i] & 1;
			while (j < k && (bool)(vec[j] & 1) == res)
				j++;
			if (!res && zk_os_purge(addr_of(s + i),
						bytes_of(j - i)) != 0) {
				ADD(madvise_failures, 1);
				res = true;
			}
			if (res) {
				memset(addr_of(s + i), 0, bytes_of(j - i));
				memset_bytes += bytes_of(j - i);
			}
			i = j;
		}
		s += k;
		n -= k;
	}
	return memset_bytes;
}

/* Make the dirty pages among [s, s + n) read as zero (zero_run per run).
 * The caller owns the range. Returns the bytes made zero. */
static size_t clear_dirty(uint32_t s, uint32_t n, size_t *memset_bytes)
{
	size_t zeroed = 0;
	uint64_t p = s, end = (uint64_t)s + n;
	while (p < end) {
		uint64_t w = atomic_load_explicit(&zk_book.dirty[p / 64],
						  memory_order_relaxed);
		unsigned b = (unsigned)(p % 64);
		unsigned k = end - p < 64 - b ? (unsigned)(end - p) : 64 - b;
		w &= mask(b, k);
		while (w != 0) {
			unsigned lo = (unsigned)__builtin_ctzll(w);
			uint64_t run = w >> lo;
			unsigned len = run == ~(uint64_t)0 >> lo
					   ? 64 - lo
					   : (unsigned)__builtin_ctzll(~run);
			*memset_bytes +=
			    zero_run((uint32_t)(p - b + lo), len);
			zeroed += bytes_of(len);
			w &= ~mask(lo, len);
		}
		p += k;
	}
	return zeroed;
}

/* Stamp the 64-page groups of [s, s + n) with the current phase. */
void zk_pool_stamp(uint32_t s, uint32_t n)
{
	uint32_t e = atomic_load_explicit(&zk_pool_now, memory_order_relaxed);
	for (uint64_t g = s >> GROUP_SHIFT;
	     g <= ((uint64_t)s + n - 1) >> GROUP_SHIFT; g++)
		if (atomic_load_explicit(&zk_book.age[g], memory_order_relaxed) != e)
			atomic_store_explicit(&zk_book.age[g], e,
					      memory_order_relaxed);
}

void zk_pool_set_epoch(uint32_t epoch)
{
	atomic_store_explicit(&zk_pool_now, epoch, memory_order_relaxed);
}

/* ------------------------------------------------------ commit */

/* Make [lo, hi) of a reservation writable, rounded out to OS pages. */
int zk_pool_commit_bytes(char *lo, char *hi)
{
	size_t pg = zk_os_page_size();
	uintptr_t a = (uintptr_t)lo & ~(uintptr_t)(pg - 1);
	uintptr_t b = ((uintptr_t)hi + pg - 1) & ~(uintptr_t)(pg - 1);
	if (b <= a)
		return 0;
	int err = zk_os_commit((void *)a, b - a);
	if (err != 0)
		ADD(commit_failures, 1);
	return err;
}

/* Commit pages [c0, c1) of the region and their bookkeeping. Lock. */
static int commit_pages(uint32_t c0, uint32_t c1)
{
	int err = zk_pool_commit_bytes(addr_of(c0), addr_of(c1));
	if (err == 0)
		err = zk_pool_commit_bytes((char *)(zk_book.map + c0), (char *)(zk_book.map + c1));
	if (err == 0)
		err = zk_pool_commit_bytes((char *)(zk_book.dirty + c0 / 64),
				   (char *)(zk_book.dirty + (c1 + 63) / 64));
	if (err == 0)
		err = zk_pool_commit_bytes((char *)(zk_book.used + c0 / 64),
				   (char *)(zk_book.used + (c1 + 63) / 64));
	if (err == 0)
		err = zk_pool_commit_bytes((char *)(zk_book.first + c0 / 64),
				   (char *)(zk_book.first + (c1 + 63) / 64));
	if (err == 0)
		err = zk_pool_commit_bytes((char *)(zk_book.age + (c0 >> GROUP_SHIFT)),
				   (char *)(zk_book.age + ((c1 + 63) >> GROUP_SHIFT)));
	return err;
}

static void note_committed(void)
{
	uint32_t lo = zk_book.committed, hi = zk_book.committed_hi;
	atomic_store_explicit(&zk_pool.committed_bytes,
			      lo >= hi ? bytes_of(zk_pool.pages)
				       : bytes_of(lo) +
					     bytes_of(zk_pool.pages - hi),
			      memory_order_relaxed);
}

/* Commit the region (and its page bookkeeping) up to page end, in steps.
 * Lock held. */
static int commit_to(uint32_t end)
{
	if (end <= zk_book.committed)
		return 0;
	uint64_t step = COMMIT_STEP >> zk_pool.shift;
	uint64_t to = ((uint64_t)end + step - 1) / step * step;
	if (to > zk_pool.pages)
		to = zk_pool.pages;
	int err = commit_pages(zk_book.committed, (uint32_t)to);
	if (err != 0)
		return err;
	zk_book.committed = (uint32_t)to;
	note_committed();
	return 0;
}

/* The same down to page start, for the small requests' fresh pages. */
static int commit_down(uint32_t start)
{
	if (start >= zk_book.committed_hi)
		return 0;
	uint64_t step = COMMIT_STEP_SMALL >> zk_pool.shift;
	uint32_t from = (uint32_t)((uint64_t)start / step * step);
	int err = commit_pages(from, zk_book.committed_hi);
	if (err != 0)
		return err;
	zk_book.committed_hi = from;
	note_committed();
	return 0;
}

/* ------------------------------------------------------- alloc/free */

/* Set while this thread holds zk_book.lock: a child forked from inside the
 * lock (only a test does that) finishes its own operation. */
static __thread bool holding __attribute__((tls_model("initial-exec")));

void zk_pool_lock(void)
{
	pthread_mutex_lock(&zk_book.lock);
	holding = true;
	void (*h)(void) = __atomic_load_n(&zk_pool_locked_hook,
					  __ATOMIC_RELAXED);
	if (h != NULL)
		h();
}

void zk_pool_unlock(void)
{
	holding = false;
	pthread_mutex_unlock(&zk_book.lock);
}

/* Fresh pages for a small request, below floor. Lock held. */
static zk_pool_fail_t take_fresh_small(uint32_t n, uint32_t a, uint32_t *out)
{
	if (zk_book.floor < zk_book.top + n)
		return ZK_POOL_FULL;
	uint64_t s = align_down(zk_book.floor - n, a);
	if (s < zk_book.top || s >= zk_book.floor)
		return ZK_POOL_FULL;
	if (commit_down((uint32_t)s) != 0)
		return ZK_POOL_COMMIT;
	uint32_t gap = zk_book.floor - (uint32_t)(s + n);
	zk_book.floor = (uint32_t)s;
	atomic_store_explicit(&zk_pool.floor_bytes, bytes_of(zk_book.floor),
			      memory_order_relaxed);
	if (gap != 0)
		zk_insert_free((uint32_t)(s + n), gap); /* never dirty */
	*out = (uint32_t)s;
	return ZK_POOL_OK;
}

/* Fresh pages from the bump pointer at want (or anywhere, aligned to a),
 * starting in the free range that ends at the bump pointer if there is one
 * (so the region's last pages are not left behind) unless degraded.
 * Lock held. */
static zk_pool_fail_t take_fresh(uint32_t want, uint32_t n, uint32_t a,
				 bool degraded, uint32_t *out)
{
	uint32_t last = want == NIL && zk_book.top > 0 && !degraded
			    ? zk_free_ending_at(zk_book.top - 1)
			    : NIL;
	if (last != NIL) {
		uint64_t s = align_up(zk_book.nodes[last].start, a);
		if (s + n <= zk_book.floor && s < zk_book.top) {
			if (commit_to(s + n) != 0)
				return ZK_POOL_COMMIT;
			uint32_t rest;
			zk_carve(last, (uint32_t)s, zk_book.top - (uint32_t)s,
				 &rest);
			zk_book.top = (uint32_t)(s + n);
			atomic_store_explicit(&zk_pool.top_bytes,
					      bytes_of(zk_book.top),
					      memory_order_relaxed);
			*out = (uint32_t)s;
			return ZK_POOL_OK;
		}
	}
	uint64_t s = want != NIL ? want : align_up(zk_book.top, a);
	if (s < zk_book.top || s + n > zk_book.floor)
		return want != NIL ? ZK_POOL_NOPLACE : ZK_POOL_FULL;
	if (commit_to(s + n) != 0)
		return ZK_POOL_COMMIT;
	uint32_t gap = s - zk_book.top, old = zk_book.top;
	zk_book.top = s + n;
	atomic_store_explicit(&zk_pool.top_bytes, bytes_of(zk_book.top),
			      memory_order_relaxed);
	if (gap != 0)
		zk_insert_free(old, gap); /* never dirty; lost if full */
	*out = s;
	return ZK_POOL_OK;
}

void *zk_pool_alloc(void *new_addr, size_t size, size_t align, bool *zero,
		    zk_pool_fail_t *why)
{
	size_t total = __atomic_load_n(&zk_pool.total, __ATOMIC_ACQUIRE);
	if (total == 0) {
		*why = ZK_POOL_NONE;
		return NULL;
	}
	size_t pg = (size_t)1 << zk_pool.shift;
	if (align < pg)
		align = pg;
	if (size == 0 || size > total || align > total - size + pg ||
	    size % pg != 0) {
		*why = ZK_POOL_TOO_BIG;
		return NULL;
	}
	uint32_t n = (uint32_t)(size >> zk_pool.shift);
	uint32_t a = (uint32_t)(align >> zk_pool.shift);
	uint32_t want = NIL;
	if (new_addr != NULL) {
		if (!zk_pool_owns(new_addr) ||
		    ((uintptr_t)new_addr & (align - 1)) != 0) {
			*why = ZK_POOL_NOPLACE;
			return NULL;
		}
		want = page_of(new_addr);
	}
	uint32_t s = NIL;
	zk_pool_fail_t fail = ZK_POOL_OK;
	zk_pool_lock();
	bool degraded = atomic_load_explicit(&zk_pool.degraded,
					     memory_order_relaxed);
	uint32_t rest;
	if (want != NIL && zk_handed(want)) {
		uint32_t i = degraded ? NIL : zk_free_starting_at(want);
		if (i == NIL || zk_book.nodes[i].len < n)
			fail = ZK_POOL_NOPLACE;
		else if (!zk_carve(i, want, n, &rest))
			fail = ZK_POOL_METADATA;
		else
			s = want;
	} else {
		/* A small request: a free range among the small ones, else
		 * fresh pages below floor; if the region is full there, as
		 * any other request. */
		bool small = want == NIL && zk_is_small(n);
		uint32_t i = NIL;
		if (small && !degraded)
			i = zk_find_fit(n, a, true);
		if (small && i == NIL)
			fail = take_fresh_small(n, a, &s);
		if (s == NIL && i == NIL && !degraded && want == NIL)
			i = zk_find_fit(n, a, false);
		if (i != NIL) {
			uint32_t at = zk_place(&zk_book.nodes[i], n, a);
			if (zk_carve(i, at, n, &rest))
				s = at;
		}
		if (s == NIL)
			fail = take_fresh(want, n, a, degraded, &s);
	}
	if (s != NIL) {
		zk_bits_set(zk_book.used, s, n, true);
		zk_bits_set(zk_book.first, s, n, false);
		zk_bits_set(zk_book.first, s, 1, true);
		zk_pool_stamp(s, n);
	}
	zk_pool_unlock();
	if (s == NIL) {
		*why = fail;
		return NULL;
	}
	/* The range is the caller's now: its dirty bits with it. */
	bool fresh = zk_bits_count(zk_book.dirty, s, n) == 0;
	if (fresh) {
		ADD(fresh_allocs, 1);
	} else if (*zero) {
		size_t ms = 0;
		ADD(cleared_bytes, clear_dirty(s, n, &ms));
		ADD(memset_bytes, ms);
	}
	*zero = *zero || fresh;
	zk_bits_set(zk_book.dirty, s, n, true); /* jemalloc may write any of it */
	uint64_t live = ADD(live_bytes, size) + size;
	ADD(live_extents, 1);
	uint64_t peak = atomic_load_explicit(&zk_pool.stats.phase_peak,
					     memory_order_relaxed);
	while (live > peak && !atomic_compare_exchange_weak_explicit(
				  &zk_pool.stats.phase_peak, &peak, live,
				  memory_order_relaxed, memory_order_relaxed))
		;
	*why = ZK_POOL_OK;
	return addr_of(s);
}

void zk_pool_note_split(void)
{
	ADD(live_extents, 1);
}

void zk_pool_note_merge(void)
{
	SUB(live_extents, 1);
}

/* May [s, s + n) come back to the pool? With opt.retain (the default),
 * jemalloc lets an extent that is not the first piece of a hook allocation
 * (not a "head") merge with the extent below it without checking that it
 * belongs to the same arena: it counts on the hooks never handing that
 * lower neighbour to anyone else (extent.h: extent_can_acquire_neighbor).
 * So a range whose next page starts such a piece, still jemalloc's, is
 * refused: jemalloc keeps it in its arena (and reuses it there) until the
 * piece above is gone too. Lock held. */
static bool safe_to_take(uint32_t s, uint32_t n)
{
	uint32_t e = s + n;
	if (!zk_handed(e) || zk_bits_count(zk_book.used, e, 1) == 0 ||
	    zk_bits_count(zk_book.first, e, 1) != 0)
		return true;
	ADD(dalloc_refused, 1);
	return false;
}

bool zk_pool_free(void *addr, size_t size)
{
	if (!zk_pool_owns(addr) || size == 0)
		return false;
	uint32_t s = page_of(addr), n = (uint32_t)(size >> zk_pool.shift);
	zk_pool_lock();
	bool ok = !atomic_load_explicit(&zk_pool.degraded,
					memory_order_relaxed) &&
		  safe_to_take(s, n);
	if (ok && zk_pool.quarantine) {
		zk_pool_unlock(); /* the range is still jemalloc's meanwhile */
		zk_quarantine(s, n);
		return true;
	}
	ok = ok && zk_insert_free(s, n);
	if (ok) {
		zk_bits_set(zk_book.used, s, n, false);
		zk_pool_stamp(s, n);
	}
	zk_pool_unlock();
	if (ok) {
		SUB(live_bytes, size);
		SUB(live_extents, 1);
	}
	return ok;
}

/* -------------------------------------------------- setup, stats */

/* The bookkeeping's layout for a region of pages pages. */
typedef struct layout {
	size_t map, dirty, used, first, age, nodes, total;
	uint32_t max_nodes;
} layout_t;

static layout_t layout_of(uint64_t pages)
{
	size_t pg = zk_os_page_size();
#define ROUND(x) (((x) + pg - 1) & ~(pg - 1))
	uint64_t words = (pages + 63) / 64;
	layout_t l;
	/* Free ranges are at most half the pages (a used page between two);
	 * past 4 M ranges the table is full and frees are refused (the
	 * arena keeps those extents). */
	l.max_nodes = pages / 2 + 2 < (1u << 22) ? (uint32_t)(pages / 2 + 2)
						 : (1u << 22);
	l.map = 0;
	l.dirty = l.map + ROUND(pages * 4);
	l.used = l.dirty + ROUND(words * 8);
	l.first = l.used + ROUND(words * 8);
	l.age = l.first + ROUND(words * 8);
	l.nodes = l.age + ROUND(words * 4);
	l.total = l.nodes + ROUND((size_t)l.max_nodes * sizeof(node_t));
#undef ROUND
	return l;
}

size_t zk_pool_footprint(size_t bytes)
{
	uint64_t pages = bytes / zk_os_page_size();
	return (size_t)(pages * zk_os_page_size()) + layout_of(pages).total;
}

int zk_pool_init(size_t bytes, bool thp, bool quarantine_on)
{
	unsigned shift = (unsigned)__builtin_ctzll(zk_os_page_size());
	uint64_t pages = bytes >> shift;
	if (pages > UINT32_MAX - 1)
		pages = UINT32_MAX - 1;
	if (pages < 64)
		return EINVAL;
	layout_t l = layout_of(pages);
	size_t pg = zk_os_page_size(), meta_len = l.total;
	void *region, *meta;
	size_t len = (size_t)pages << shift;
	int err = zk_os_reserve(len, (size_t)2 << 20, &region);
	if (err != 0)
		return err;
	if ((err = zk_os_reserve(meta_len, pg, &meta)) != 0) {
		zk_os_release(region, len);
		return err;
	}
	/* A preference: a kernel without THP refuses it (counted). */
	if (zk_os_advise_thp(region, len, thp) != 0)
		ADD(madvise_failures, 1);
	zk_book.meta = meta;
	zk_book.map = (uint32_t *)((char *)meta + l.map);
	zk_book.dirty = (_Atomic uint64_t *)((char *)meta + l.dirty);
	zk_book.used = (_Atomic uint64_t *)((char *)meta + l.used);
	zk_book.first = (_Atomic uint64_t *)((char *)meta + l.first);
	zk_book.age = (_Atomic uint32_t *)((char *)meta + l.age);
	zk_book.nodes = (node_t *)((char *)meta + l.nodes);
	zk_book.max_nodes = l.max_nodes;
	zk_book.unused = zk_book.q_head = zk_book.q_tail = NIL;
	zk_book.root = NIL;
	for (unsigned c = 0; c < CLASSES; c++)
		zk_book.heads[0][c] = zk_book.heads[1][c] = NIL;
	memset(zk_book.nonempty, 0, sizeof(zk_book.nonempty));
	zk_pool.shift = shift;
	zk_pool.pages = (uint32_t)pages;
	zk_book.floor = zk_book.committed_hi = (uint32_t)pages;
	atomic_store_explicit(&zk_pool.floor_bytes, len, memory_order_relaxed);
	zk_pool.quarantine = quarantine_on;
	atomic_store_explicit(&zk_pool.meta_reserved, meta_len,
			      memory_order_relaxed);
	__atomic_store_n(&zk_pool.base, (char *)region, __ATOMIC_RELAXED);
	__atomic_store_n(&zk_pool.total, len, __ATOMIC_RELEASE);
	return 0;
}

size_t zk_pool_resident(void)
{
	if (__atomic_load_n(&zk_pool.total, __ATOMIC_ACQUIRE) == 0)
		return 0;
	size_t lo = 0, hi = 0,
	       top = atomic_load_explicit(&zk_pool.top_bytes,
					  memory_order_relaxed),
	       floor = atomic_load_explicit(&zk_pool.floor_bytes,
					    memory_order_relaxed);
	if (zk_os_resident(zk_pool.base, top, &lo) != 0 ||
	    zk_os_resident(zk_pool.base + floor, zk_pool.total - floor, &hi) !=
		0)
		return 0;
	return lo + hi;
}

/* The child of a fork: if another thread (gone here) held the lock, the
 * bookkeeping may be half changed. Then the pool serves fresh pages only
 * and refuses frees (jemalloc keeps those extents): correct, without page
 * reuse. Otherwise ranges the decay had taken out go back. */
void zk_pool_fork_child(void)
{
	if (holding)
		return; /* this thread's own operation goes on */
	bool held = pthread_mutex_trylock(&zk_book.lock) != 0;
	pthread_mutex_init(&zk_book.lock, NULL);
	if (held) {
		atomic_store_explicit(&zk_pool.degraded, true,
				      memory_order_relaxed);
		return;
	}
	if (__atomic_load_n(&zk_pool.total, __ATOMIC_ACQUIRE) != 0)
		zk_reinsert_batch();
}
