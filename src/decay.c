/*
 * Giving pages back (pool.h: zk_pool_begin) and checked mode's quarantine.
 *
 * The decay: at each begin, the free pages of every 64-page group that
 * none of the last K phases allocated or freed go back to the kernel
 * (MADV_DONTNEED). The runs are taken out of the free lists under the lock
 * in batches, given back outside it (they are nobody else's meanwhile),
 * and put back, clean.
 */
#include "pool_impl.h"

#include "os.h"

/* ---------------------------------------------------- the decay */

/* The next run of [x's pages] after page *from whose groups none of the
 * last k phases used and that holds a dirty page: [*rs, *rs + *rn).
 * Lock held. */
static bool old_run(const node_t *x, uint32_t e, unsigned k, uint32_t *rs,
		    uint32_t *rn)
{
	uint64_t p = x->start, end = (uint64_t)x->start + x->len;
	while (p < end) {
		uint64_t g = p >> GROUP_SHIFT;
		uint64_t gend = (g + 1) << GROUP_SHIFT;
		uint32_t used =
		    atomic_load_explicit(&zk_book.age[g], memory_order_relaxed);
		if (e - used <= k) { /* used by one of phases e-k .. e-1 */
			p = gend;
			continue;
		}
		uint64_t q = p;
		while (q < end &&
		       e - atomic_load_explicit(&zk_book.age[q >> GROUP_SHIFT],
						memory_order_relaxed) >
			   k)
			q = ((q >> GROUP_SHIFT) + 1) << GROUP_SHIFT;
		if (q > end)
			q = end;
		if (zk_bits_count(zk_book.dirty, (uint32_t)p, (uint32_t)(q - p)) != 0) {
			*rs = (uint32_t)p;
			*rn = (uint32_t)(q - p);
			return true;
		}
		p = q;
	}
	return false;
}

/* Take out of the free lists up to a batch of old dirty runs. Lock. */
static void collect_batch(uint32_t e, unsigned k)
{
	zk_book.nbatch = 0;
	uint32_t i = zk_book.free_head;
	while (i != NIL && zk_book.nbatch < 64) {
		uint32_t next = zk_book.nodes[i].next;
		/* Runs are found in address order: the piece before a carved
		 * run has none left, the piece after may. Pieces go to the
		 * list's head, behind this walk. */
		uint32_t rs, rn, x = i;
		while (x != NIL && zk_book.nbatch < 64 &&
		       old_run(&zk_book.nodes[x], e, k, &rs, &rn)) {
			uint32_t trail;
			if (!zk_carve(x, rs, rn, &trail))
				break;
			zk_book.batch[zk_book.nbatch].start = rs;
			zk_book.batch[zk_book.nbatch].len = rn;
			zk_book.nbatch++;
			x = trail;
		}
		i = next;
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

void zk_pool_begin(uint32_t epoch, unsigned k)
{
	if (__atomic_load_n(&zk_pool.total, __ATOMIC_ACQUIRE) == 0 ||
	    atomic_load_explicit(&zk_pool.degraded, memory_order_relaxed))
		return;
	if (zk_pool.quarantine && epoch >= 2)
		release_quarantine(epoch - 1);
	if (epoch <= k)
		return; /* fewer than k phases so far: nothing is old */
	for (;;) {
		zk_pool_lock();
		collect_batch(epoch, k);
		unsigned n = zk_book.nbatch;
		zk_pool_unlock();
		if (n == 0)
			return;
		give_back_batch(); /* outside the lock: the runs are ours */
		zk_pool_lock();
		zk_reinsert_batch();
		zk_pool_unlock();
		if (n < 64)
			return;
	}
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
	/* Above the bump pointer nothing was handed out, and the page bits
	 * there may not be committed yet. */
	if (!zk_pool_owns(p) ||
	    (size_t)((const char *)p - zk_pool.base) >=
		atomic_load_explicit(&zk_pool.top_bytes, memory_order_acquire))
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

