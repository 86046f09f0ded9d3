/*
 * The pool's table of free ranges, for an address-ordered first fit: a
 * request takes the lowest free range it fits in. Ranges are kept in a
 * treap ordered by address in which every node also knows the largest
 * range of its subtree, so the first fit is one walk from the root; a
 * boundary map (page -> range starting or ending there) finds a freed
 * range's free neighbours to merge with. Everything here runs with the
 * pool lock held.
 *
 * Why first fit by address: a proof's requests come in a slightly
 * different order every time its threads race; packing them at the bottom
 * of the region keeps the set of pages a proof touches the same from proof
 * to proof (a page touched once stays resident, so warm proofs do not
 * fault), and leaves the free space in a few large ranges at the top, which
 * is also what makes big requests fit (jemalloc's extent allocator picks by
 * address for the same reasons).
 */
#include "pool_impl.h"

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
		if (zk_pool_commit_bytes(
			(char *)(zk_book.nodes + zk_book.node_committed),
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

/* ------------------------------------------------------------ treap */

#define N(i) (zk_book.nodes[i])

/* A fixed pseudo-random priority per node index: the treap's shape. */
static inline uint32_t prio(uint32_t i)
{
	uint32_t h = i * 0x9e3779b1u;
	return h ^ (h >> 15);
}

static inline uint32_t maxlen(uint32_t t)
{
	return t == NIL ? 0 : N(t).max;
}

static inline void pull(uint32_t t)
{
	uint32_t m = N(t).len, l = maxlen(N(t).left), r = maxlen(N(t).right);
	N(t).max = m > l ? (m > r ? m : r) : (l > r ? l : r);
}

/* Split t into the ranges starting below key (*lo) and the others (*hi). */
static void split(uint32_t t, uint32_t key, uint32_t *lo, uint32_t *hi)
{
	if (t == NIL) {
		*lo = *hi = NIL;
	} else if (N(t).start < key) {
		split(N(t).right, key, &N(t).right, hi);
		pull(t);
		*lo = t;
	} else {
		split(N(t).left, key, lo, &N(t).left);
		pull(t);
		*hi = t;
	}
}

/* Join two treaps, every range of a below every range of b. */
static uint32_t merge(uint32_t a, uint32_t b)
{
	if (a == NIL)
		return b;
	if (b == NIL)
		return a;
	if (prio(a) > prio(b)) {
		N(a).right = merge(N(a).right, b);
		pull(a);
		return a;
	}
	N(b).left = merge(a, N(b).left);
	pull(b);
	return b;
}

/* Put free node i (start, len set) in the treap, the list and the map. */
static void range_insert(uint32_t i)
{
	node_t *x = &N(i);
	x->state = NODE_FREE;
	x->left = x->right = NIL;
	x->max = x->len;
	uint32_t lo, hi;
	split(zk_book.root, x->start, &lo, &hi);
	zk_book.root = merge(merge(lo, i), hi);
	/* the list of free nodes (any order), for the decay's walk */
	x->prev = NIL;
	x->next = zk_book.free_head;
	if (x->next != NIL)
		N(x->next).prev = i;
	zk_book.free_head = i;
	zk_book.map[x->start] = i + 1;
	zk_book.map[x->start + x->len - 1] = i + 1;
	atomic_fetch_add_explicit(&zk_pool.free_bytes, bytes_of(x->len),
				  memory_order_relaxed);
}

static void range_remove(uint32_t i)
{
	node_t *x = &N(i);
	uint32_t lo, mid, hi;
	split(zk_book.root, x->start, &lo, &mid);
	split(mid, x->start + 1, &mid, &hi);
	zk_book.root = merge(lo, hi); /* mid is i alone */
	if (x->prev != NIL)
		N(x->prev).next = x->next;
	else
		zk_book.free_head = x->next;
	if (x->next != NIL)
		N(x->next).prev = x->prev;
	if (zk_book.map[x->start] == i + 1)
		zk_book.map[x->start] = 0;
	if (zk_book.map[x->start + x->len - 1] == i + 1)
		zk_book.map[x->start + x->len - 1] = 0;
	x->state = NODE_UNUSED;
	atomic_fetch_sub_explicit(&zk_pool.free_bytes, bytes_of(x->len),
				  memory_order_relaxed);
}

/* ---------------------------------------------------- the operations */

/* The free node whose range ends at page e (or starts at page s). */
uint32_t zk_free_ending_at(uint32_t e)
{
	uint32_t i = zk_book.map[e];
	if (i == 0)
		return NIL;
	node_t *x = &N(i - 1);
	return x->state == NODE_FREE && x->start + x->len - 1 == e ? i - 1
								    : NIL;
}

uint32_t zk_free_starting_at(uint32_t s)
{
	uint32_t i = zk_book.map[s];
	if (i == 0)
		return NIL;
	node_t *x = &N(i - 1);
	return x->state == NODE_FREE && x->start == s ? i - 1 : NIL;
}

/* Make [s, s + n) free, merged with its free neighbours. Returns false if
 * the range table is full. */
bool zk_insert_free(uint32_t s, uint32_t n)
{
	uint32_t keep = NIL;
	uint32_t l = s > 0 ? zk_free_ending_at(s - 1) : NIL;
	if (l != NIL) {
		range_remove(l);
		s = N(l).start;
		n += N(l).len;
		keep = l;
	}
	uint32_t r = s + n < zk_book.top ? zk_free_starting_at(s + n) : NIL;
	if (r != NIL) {
		range_remove(r);
		n += N(r).len;
		if (keep == NIL)
			keep = r;
		else
			zk_node_release(r);
	}
	if (keep == NIL && (keep = zk_node_new()) == NIL)
		return false;
	N(keep).start = s;
	N(keep).len = n;
	range_insert(keep);
	return true;
}

/* Take [s, s + n) out of free node i, which holds it; the pieces before
 * and after stay free. *trail_out: the node of the piece after, or NIL.
 * Returns false (nothing changed) if a piece needs a node and the table is
 * full. */
bool zk_carve(uint32_t i, uint32_t s, uint32_t n, uint32_t *trail_out)
{
	node_t *x = &N(i);
	uint32_t ns = x->start, ne = x->start + x->len;
	bool lead = s > ns, trail = s + n < ne;
	uint32_t j = NIL;
	if (lead && trail && (j = zk_node_new()) == NIL)
		return false;
	range_remove(i);
	*trail_out = NIL;
	if (lead) {
		x->start = ns;
		x->len = s - ns;
		range_insert(i);
	}
	if (trail) {
		uint32_t t = lead ? j : i;
		N(t).start = s + n;
		N(t).len = ne - (s + n);
		range_insert(t);
		*trail_out = t;
	}
	if (!lead && !trail)
		zk_node_release(i);
	return true;
}

/* Where in free node x a request of n pages aligned to a goes: its start
 * (rounded up to the alignment; the node fits). */
uint32_t zk_place(const node_t *x, uint32_t n, uint32_t a)
{
	(void)n;
	return (uint32_t)align_up(x->start, a);
}

/* The lowest free node that holds n pages aligned to a, or NIL. An aligned
 * request asks for room for any start (n + a - 1 pages). */
uint32_t zk_find_fit(uint32_t n, uint32_t a)
{
	uint64_t need = a > 1 ? (uint64_t)n + a - 1 : n;
	uint32_t t = zk_book.root;
	while (t != NIL && N(t).max >= need) {
		if (maxlen(N(t).left) >= need)
			t = N(t).left;
		else if (N(t).len >= need)
			return t;
		else
			t = N(t).right;
	}
	return NIL;
}
