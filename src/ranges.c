/*
 * The pool's table of free ranges: size-class lists (newest first) and the
 * boundary map that finds a range's free neighbours, for the best fit and
 * for coalescing. Everything here runs with the pool lock held.
 */
#include "pool_impl.h"

static inline unsigned cls_of(uint32_t n)
{
	if (n < 4)
		return n - 1;
	unsigned lg = 31u - (unsigned)__builtin_clz(n);
	return 3 + (lg - 2) * 4 + ((n >> (lg - 2)) & 3);
}

uint32_t zk_node_new(void)
{
	uint32_t i = zk_book.unused;
	if (i != NIL) {
		zk_book.unused = zk_book.nodes[i].next;
		return i;
	}
	if (zk_book.node_hw == zk_book.max_nodes)
		return NIL;
	if (zk_book.node_hw == zk_book.node_committed) {
		uint32_t to = zk_book.node_committed + NODE_STEP;
		if (to > zk_book.max_nodes)
			to = zk_book.max_nodes;
		if (zk_pool_commit_bytes((char *)(zk_book.nodes + zk_book.node_committed),
				 (char *)(zk_book.nodes + to)) != 0)
			return NIL;
		zk_book.node_committed = to;
	}
	return zk_book.node_hw++;
}

void zk_node_release(uint32_t i)
{
	zk_book.nodes[i].state = NODE_UNUSED;
	zk_book.nodes[i].next = zk_book.unused;
	zk_book.unused = i;
}

/* Put free node i (start, len set) in its class list and the map. */
static void list_insert(uint32_t i, bool hot)
{
	node_t *x = &zk_book.nodes[i];
	unsigned c = cls_of(x->len);
	x->cls = (uint8_t)c;
	x->state = NODE_FREE;
	x->prev = x->next = NIL;
	if (zk_book.head[c] == NIL) {
		zk_book.head[c] = zk_book.tail[c] = i;
		zk_book.nonempty[c / 64] |= (uint64_t)1 << (c % 64);
	} else if (hot) {
		x->next = zk_book.head[c];
		zk_book.nodes[zk_book.head[c]].prev = i;
		zk_book.head[c] = i;
	} else {
		x->prev = zk_book.tail[c];
		zk_book.nodes[zk_book.tail[c]].next = i;
		zk_book.tail[c] = i;
	}
	zk_book.map[x->start] = i + 1;
	zk_book.map[x->start + x->len - 1] = i + 1;
	atomic_fetch_add_explicit(&zk_pool.free_bytes, bytes_of(x->len),
				  memory_order_relaxed);
}

static void list_remove(uint32_t i)
{
	node_t *x = &zk_book.nodes[i];
	unsigned c = x->cls;
	if (x->prev != NIL)
		zk_book.nodes[x->prev].next = x->next;
	else
		zk_book.head[c] = x->next;
	if (x->next != NIL)
		zk_book.nodes[x->next].prev = x->prev;
	else
		zk_book.tail[c] = x->prev;
	if (zk_book.head[c] == NIL)
		zk_book.nonempty[c / 64] &= ~((uint64_t)1 << (c % 64));
	if (zk_book.map[x->start] == i + 1)
		zk_book.map[x->start] = 0;
	if (zk_book.map[x->start + x->len - 1] == i + 1)
		zk_book.map[x->start + x->len - 1] = 0;
	x->state = NODE_UNUSED;
	atomic_fetch_sub_explicit(&zk_pool.free_bytes, bytes_of(x->len),
				  memory_order_relaxed);
}

/* The free node whose range ends at page e (or starts at page s). */
uint32_t zk_free_ending_at(uint32_t e)
{
	uint32_t i = zk_book.map[e];
	if (i == 0)
		return NIL;
	node_t *x = &zk_book.nodes[i - 1];
	return x->state == NODE_FREE && x->start + x->len - 1 == e ? i - 1
								    : NIL;
}

uint32_t zk_free_starting_at(uint32_t s)
{
	uint32_t i = zk_book.map[s];
	if (i == 0)
		return NIL;
	node_t *x = &zk_book.nodes[i - 1];
	return x->state == NODE_FREE && x->start == s ? i - 1 : NIL;
}

/* Make [s, s + n) free, merged with its free neighbours. hot: at the head
 * of its class list (just freed, resident), else the tail. Returns false
 * if the range table is full. Lock held. */
bool zk_insert_free(uint32_t s, uint32_t n, bool hot)
{
	uint32_t keep = NIL;
	uint32_t l = s > 0 ? zk_free_ending_at(s - 1) : NIL;
	if (l != NIL) {
		list_remove(l);
		s = zk_book.nodes[l].start;
		n += zk_book.nodes[l].len;
		keep = l;
	}
	uint32_t r = s + n < zk_book.top ? zk_free_starting_at(s + n) : NIL;
	if (r != NIL) {
		list_remove(r);
		n += zk_book.nodes[r].len;
		if (keep == NIL)
			keep = r;
		else
			zk_node_release(r);
	}
	if (keep == NIL && (keep = zk_node_new()) == NIL)
		return false;
	zk_book.nodes[keep].start = s;
	zk_book.nodes[keep].len = n;
	list_insert(keep, hot);
	return true;
}

/* Take [s, s + n) out of free node i, which holds it; the pieces before
 * and after stay free, at the head of their class lists (hot: they are
 * as resident as the range was). *trail_out: the node of the piece after,
 * or NIL. Returns false (nothing changed) if a piece needs a node and the
 * table is full. Lock held. */
bool zk_carve(uint32_t i, uint32_t s, uint32_t n, uint32_t *trail_out)
{
	node_t *x = &zk_book.nodes[i];
	uint32_t ns = x->start, ne = x->start + x->len;
	bool lead = s > ns, trail = s + n < ne;
	uint32_t j = NIL;
	if (lead && trail && (j = zk_node_new()) == NIL)
		return false;
	list_remove(i);
	*trail_out = NIL;
	if (lead) {
		x->start = ns;
		x->len = s - ns;
		list_insert(i, true);
	}
	if (trail) {
		uint32_t t = lead ? j : i;
		zk_book.nodes[t].start = s + n;
		zk_book.nodes[t].len = ne - (s + n);
		list_insert(t, true);
		*trail_out = t;
	}
	if (!lead && !trail)
		zk_node_release(i);
	return true;
}

static inline bool fits(const node_t *x, uint32_t n, uint32_t a)
{
	return align_up(x->start, a) + n <= (uint64_t)x->start + x->len;
}

/* Where in free node x a request of n pages aligned to a goes: at its
 * start, unless x is far larger (a range the request's own size classes
 * could not supply): then at its end, so that what stays free is one
 * range at the same start, whole for the large request that freed it. */
uint32_t zk_place(const node_t *x, uint32_t n, uint32_t a)
{
	if (cls_of(x->len) > cls_of(n) + 4) {
		uint64_t at = align_down((uint64_t)x->start + x->len - n, a);
		if (at >= x->start && at <= (uint64_t)x->start + x->len - n)
			return (uint32_t)at;
	}
	return (uint32_t)align_up(x->start, a); /* fits: inside x */
}

/* A free node that can hold n pages aligned to a: a few of the smallest
 * class that may fit (newest first), then the first class above it. */
uint32_t zk_find_fit(uint32_t n, uint32_t a)
{
	for (unsigned c = cls_of(n); c < NCLASS; c++) {
		uint64_t w = zk_book.nonempty[c / 64] >> (c % 64);
		if (w == 0) {
			c = (c / 64 + 1) * 64 - 1; /* next word */
			continue;
		}
		c += (unsigned)__builtin_ctzll(w);
		unsigned scanned = 0;
		for (uint32_t i = zk_book.head[c]; i != NIL && scanned < SCAN_LIMIT;
		     i = zk_book.nodes[i].next, scanned++)
			if (fits(&zk_book.nodes[i], n, a))
				return i;
	}
	return NIL;
}

