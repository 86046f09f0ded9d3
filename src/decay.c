/*
 * Giving pages back (pool.h: zk_pool_begin) and checked mode's quarantine.
 *
 * The decay: at each begin, free pages of 64-page groups that none of the
 * last K phases allocated or freed go back to the kernel (MADV_DONTNEED),
 * the longest unused and the highest first, as long as the free pages left
 * resident cover the peak the next phases are expected to reach
 * (peak_to_keep, plus an eighth and 2 MiB). The runs are taken out of the
 * free lists under the lock in batches, given back outside it (they are
 * nobody else's meanwhile), and put back, clean.
 */
#include "pool_impl.h"

#include "os.h"

#include <string.h>

/* ---------------------------------------------------- the decay */

/* Whether none of the last k phases before e used group g. */
static inline bool group_old(uint64_t g, uint32_t e, unsigned k)
{
	return e - atomic_load_explicit(&zk_book.age[g], memory_order_relaxed) >
	       k;
}

/* The highest run of free node x's pages below page limit whose groups
 * none of the last k phases used and that holds a dirty page:
 * [*rs, *rs + *rn). Lock held. */
static bool old_run_below(const node_t *x, uint32_t e, unsigned k,
			  uint64_t limit, uint32_t *rs, uint32_t *rn)
{
	uint64_t lo = x->start, p = (uint64_t)x->start + x->len;
	if (p > limit)
		p = limit;
	while (p > lo) {
		uint64_t g = (p - 1) >> GROUP_SHIFT;
		if (!group_old(g, e, k)) {
			p = g << GROUP_SHIFT > lo ? g << GROUP_SHIFT : lo;
			continue;
		}
		uint64_t q = p; /* the run is [p, q) once p is lowered */
		while (p > lo && group_old((p - 1) >> GROUP_SHIFT, e, k)) {
			uint64_t gs = ((p - 1) >> GROUP_SHIFT) << GROUP_SHIFT;
			p = gs > lo ? gs : lo;
		}
		if (zk_bits_count(zk_book.dirty, (uint32_t)p,
				  (uint32_t)(q - p)) != 0) {
			*rs = (uint32_t)p;
			*rn = (uint32_t)(q - p);
			return true;
		}
	}
	return false;
}

/* Take out of the free table up to a batch of old dirty runs below page
 * *cursor, the highest first, holding at most *budget dirty pages in all:
 * a run cut short keeps its bottom, where large requests are placed, so
 * the pages left resident are the ones they meet first. Lowers *budget and
 * *cursor by what it takes and passes. Lock held. */
static void collect_batch(uint32_t e, unsigned k, uint64_t *budget,
			  uint32_t *cursor)
{
	zk_book.nbatch = 0;
	while (zk_book.nbatch < 64 && *budget > 0 && *cursor > 0) {
		uint32_t x = zk_free_below(*cursor), rs, rn, trail;
		if (x == NIL) {
			*cursor = 0;
			break;
		}
		if (!old_run_below(&zk_book.nodes[x], e, k, *cursor, &rs,
				   &rn)) {
			*cursor = zk_book.nodes[x].start;
			continue;
		}
		if (rn > *budget) { /* the top of the run only */
			rs += rn - (uint32_t)*budget;
			rn = (uint32_t)*budget;
		}
		uint64_t dirty = zk_bits_count(zk_book.dirty, rs, rn);
		if (!zk_carve(x, rs, rn, &trail)) {
			*cursor = 0; /* no room to split it: stop here */
			break;
		}
		zk_book.batch[zk_book.nbatch].start = rs;
		zk_book.batch[zk_book.nbatch].len = rn;
		zk_book.nbatch++;
		*budget -= dirty < *budget ? dirty : *budget;
		*cursor = rs;
	}
}

static void give_back_batch(void)
{
	for (unsigned b = 0; b < zk_book.nbatch; b++) {
		uint32_t s = zk_book.batch[b].start, n = zk_book.batch[b].len;
		uint64_t dirty = zk_bits_count(zk_book.dirty, s, n);
		if (zk_os_purge(addr_of(s), bytes_of(n)) != 0) {
			ADD(madvise_failures, 1);
			continue;
		}
		zk_bits_set(zk_book.dirty, s, n, false);
		ADD(trims, 1);
		ADD(trimmed_bytes, (uint64_t)dirty << zk_pool.shift);
	}
}

void zk_reinsert_batch(void)
{
	for (unsigned b = 0; b < zk_book.nbatch; b++)
		zk_insert_free(zk_book.batch[b].start, zk_book.batch[b].len);
	zk_book.nbatch = 0;
}

static void release_quarantine(uint32_t before);

/* How long ago (in phases before e, capped) group g was last used. */
#define AGES 128

static inline unsigned age_of(uint64_t g, uint32_t e)
{
	uint32_t d = e - atomic_load_explicit(&zk_book.age[g],
					      memory_order_relaxed);
	return d < AGES ? d : AGES - 1;
}

/* Free pages that may hold data (resident, or swapped out): in all, and
 * by the age of their group (hist[d]: last used d phases before e).
 * Lock held. */
static uint64_t free_dirty_pages(uint32_t e, uint64_t hist[AGES])
{
	uint64_t n = 0;
	memset(hist, 0, AGES * sizeof(hist[0]));
	for (uint32_t i = zk_free_first(); i != NIL; i = zk_free_next(i)) {
		uint64_t p = zk_book.nodes[i].start,
			 end = p + zk_book.nodes[i].len;
		while (p < end) {
			uint64_t g = p >> GROUP_SHIFT;
			uint64_t q = (g + 1) << GROUP_SHIFT;
			if (q > end)
				q = end;
			uint64_t d = zk_bits_count(zk_book.dirty, (uint32_t)p,
						   (uint32_t)(q - p));
			hist[age_of(g, e)] += d;
			n += d;
			p = q;
		}
	}
	return n;
}

/* The peak live bytes of the last RING phases, for the decay's budget;
 * one more at each begin (begins are serialized). */
#define RING 256
static uint64_t peaks[RING];
static unsigned peak_pos, peak_count;

/* The peak the free pages must still cover: the largest of the last k
 * phases, and of the 16k before them (at most RING) the largest unless it
 * is a spike: more than twice the second largest (a level that came
 * back). A proof whose threads race to a higher peak now and then
 * (measured: 16 to 98 MiB over 40 phases of the same work on a loaded
 * machine, tests/stress/stress_rotate.c), or a bigger proof every few,
 * keeps its pages; a spike is let go after k phases, however high. */
static uint64_t peak_to_keep(unsigned k)
{
	unsigned w = 16 * k < RING ? 16 * k : RING;
	if (w > peak_count)
		w = peak_count;
	uint64_t recent = 0, first = 0, second = 0;
	for (unsigned j = 1; j <= w; j++) {
		uint64_t v = peaks[(peak_pos + RING - j) % RING];
		if (j <= k && v > recent)
			recent = v;
		if (v > first) {
			second = first;
			first = v;
		} else if (v > second) {
			second = v;
		}
	}
	uint64_t older = first <= 2 * second ? first : second;
	return recent > older ? recent : older;
}

/* Bytes of free pages to keep resident: the peak to keep beyond what is
 * live now, plus an eighth (free ranges are not all where a request fits)
 * and 2 MiB. Records the phase that ends. Lock held. */
static uint64_t keep_bytes(unsigned k)
{
	uint64_t live = atomic_load_explicit(&zk_pool.stats.live_bytes,
					     memory_order_relaxed);
	peaks[peak_pos] = atomic_exchange_explicit(
	    &zk_pool.stats.phase_peak, live, memory_order_relaxed);
	peak_pos = (peak_pos + 1) % RING;
	peak_count += peak_count < RING;
	uint64_t max = peak_to_keep(k);
	max += max / 8 + ((uint64_t)2 << 20);
	return max > live ? max - live : 0;
}

/* Give back old dirty runs (groups none of the last k phases used), the
 * highest first, until budget dirty pages are gone. */
static void trim(uint32_t epoch, unsigned k, uint64_t *budget)
{
	uint32_t cursor = UINT32_MAX; /* from the top of the table */
	while (*budget > 0 && cursor > 0) {
		zk_pool_lock();
		collect_batch(epoch, k, budget, &cursor);
		zk_pool_unlock();
		if (zk_book.nbatch == 0)
			return;
		give_back_batch(); /* outside the lock: the runs are ours */
		zk_pool_lock();
		zk_reinsert_batch();
		zk_pool_unlock();
	}
}

void zk_pool_begin(uint32_t epoch, unsigned k)
{
	if (__atomic_load_n(&zk_pool.total, __ATOMIC_ACQUIRE) == 0 ||
	    atomic_load_explicit(&zk_pool.degraded, memory_order_relaxed))
		return;
	if (zk_pool.quarantine && epoch >= 2)
		release_quarantine(epoch - 1);
	static uint64_t hist[AGES]; /* begins are serialized */
	zk_pool_lock();
	uint64_t keep = keep_bytes(k) >> zk_pool.shift;
	uint64_t dirty = free_dirty_pages(epoch, hist);
	zk_pool_unlock();
	if (epoch <= k || dirty <= keep)
		return; /* fewer than k phases so far, or nothing to spare */
	/* Oldest first: the pages the longest unused go, down to what the
	 * budget allows; only groups none of the last k phases used. */
	uint64_t budget = dirty - keep, sum = 0;
	unsigned oldest = AGES - 1;
	while (oldest > k && sum + hist[oldest] < budget)
		sum += hist[oldest--];
	if (oldest <= k)
		oldest = k;
	/* Pass 1 takes the groups older than the last bucket, pass 2 what
	 * the budget leaves of that bucket, from the top. */
	trim(epoch, oldest, &budget);
	if (oldest > k)
		trim(epoch, oldest - 1, &budget);
}

/* ----------------------------------------------- checked mode */

/* A freed range: given back and made inaccessible, so that a use faults,
 * and held out of reuse until a phase later. */
void zk_quarantine(uint32_t s, uint32_t n)
{
	zk_pool_lock();
	uint32_t i = zk_node_new();
	if (i == NIL) { /* no room to hold it: reuse it at once */
		zk_insert_free(s, n);
		zk_bits_set(zk_book.used, s, n, false);
	}
	zk_pool_unlock();
	SUB(live_bytes, bytes_of(n));
	SUB(live_extents, 1);
	if (i == NIL)
		return;
	/* Given back and protected while the range is still this thread's
	 * alone: once it is on the list, two begins may release it to
	 * another thread, whose block a late madvise would wipe. */
	if (zk_os_purge(addr_of(s), bytes_of(n)) == 0)
		zk_bits_set(zk_book.dirty, s, n, false);
	else
		ADD(madvise_failures, 1);
	if (zk_os_protect(addr_of(s), bytes_of(n), false) != 0)
		ADD(mprotect_failures, 1);
	ADD(quarantined_bytes, bytes_of(n));
	zk_pool_lock();
	node_t *x = &zk_book.nodes[i];
	x->start = s;
	x->len = n;
	x->state = NODE_QUARANTINE;
	x->epoch = atomic_load_explicit(&zk_pool_now, memory_order_relaxed);
	x->next = NIL;
	x->prev = zk_book.q_tail;
	if (zk_book.q_tail != NIL)
		zk_book.nodes[zk_book.q_tail].next = i;
	else
		zk_book.q_head = i;
	zk_book.q_tail = i;
	zk_bits_set(zk_book.used, s, n, false);
	zk_pool_unlock();
}

/* Ranges freed in a phase before `before`: accessible again, reusable. */
static void release_quarantine(uint32_t before)
{
	for (;;) {
		zk_pool_lock();
		uint32_t i = zk_book.q_head;
		if (i == NIL || zk_book.nodes[i].epoch >= before) {
			zk_pool_unlock();
			return;
		}
		zk_book.q_head = zk_book.nodes[i].next;
		if (zk_book.q_head == NIL)
			zk_book.q_tail = NIL;
		else
			zk_book.nodes[zk_book.q_head].prev = NIL;
		uint32_t s = zk_book.nodes[i].start, n = zk_book.nodes[i].len;
		zk_node_release(i);
		zk_pool_unlock();
		if (zk_os_protect(addr_of(s), bytes_of(n), true) != 0) {
			ADD(mprotect_failures, 1);
			continue; /* stays inaccessible: never reused */
		}
		SUB(quarantined_bytes, bytes_of(n));
		zk_pool_lock();
		zk_insert_free(s, n);
		zk_pool_unlock();
	}
}

bool zk_pool_page_used(const void *p)
{
	/* Between the bump pointers nothing was handed out, and the page
	 * bits there may not be committed yet. */
	if (!zk_pool_owns(p))
		return false;
	size_t off = (size_t)((const char *)p - zk_pool.base);
	if (off >= atomic_load_explicit(&zk_pool.top_bytes,
					memory_order_acquire) &&
	    off < atomic_load_explicit(&zk_pool.floor_bytes,
				       memory_order_acquire))
		return false;
	return zk_bits_count(zk_book.used, page_of(p), 1) != 0;
}

bool zk_pool_find_freed(const void *p, void **start, size_t *size,
			uint32_t *epoch)
{
	if (!zk_pool_owns(p))
		return false;
	uint32_t pg = page_of(p);
	bool found = false;
	/* A report is on its way to abort(): a trylock, as a thread stopped
	 * inside the lock must not hang it. */
	if (pthread_mutex_trylock(&zk_book.lock) != 0)
		return false;
	for (uint32_t i = zk_book.q_head; i != NIL; i = zk_book.nodes[i].next) {
		const node_t *x = &zk_book.nodes[i];
		if (pg >= x->start && pg < x->start + x->len) {
			*start = addr_of(x->start);
			*size = bytes_of(x->len);
			*epoch = x->epoch;
			found = true;
			break;
		}
	}
	pthread_mutex_unlock(&zk_book.lock);
	return found;
}

