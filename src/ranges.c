/*
 * The pool's table of free ranges: a request takes the shortest free range
 * it fits in (best fit; see zk_find_fit). Ranges are kept in lists by
 * length (one per length below 256 pages, one per quarter power of two
 * above), so the best fit is a bit scan and a short walk; in a treap
 * ordered by address in which every node also knows the largest range of
 * its subtree (the decay walks ranges from the top, and the first fit by
 * address is the fallback); and in a boundary map (page -> range starting
 * or ending there) that finds a freed range's free neighbours to merge
 * with. Everything here runs with the pool lock held.
 *
 * Why best fit: a proof's requests come in a slightly different order
 * every time its threads race. Each request taking the hole that fits it
 * best keeps a buffer in the hole a buffer of its size left, whichever
 * came first, so the set of pages a proof touches stays the same from
 * proof to proof (a page touched once stays resident: warm proofs do not
 * fault) and big ranges stay whole for big buffers. (Best fit and
 * address-ordered first fit are the two policies with low fragmentation
 * on real programs: Johnstone and Wilson, "The Memory Fragmentation
 * Problem: Solved?", ISMM 1998.)
 */
#include "pool_impl.h"

#define N(i) (zk_book.nodes[i])

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

/* ------------------------------------------------- lists by length */

/* Short ranges (fewer than EXACT pages) have a list per length; longer
 * ones a list per quarter of a power of two: [4, 5, 6, 7] << (lg - 2). */
#define EXACT 256u

static inline unsigned class_of(uint64_t len)
{
	if (len < EXACT)
		return (unsigned)len;
	unsigned lg = 63u - (unsigned)__builtin_clzll(len); /* >= 8 */
	return EXACT + (lg - 8) * 4 + (unsigned)((len >> (lg - 2)) & 3);
}

/* The area of free node i: 1 if it lies from floor up (small requests'
 * fresh pages), else 0. A range never changes area while it is free:
 * floor only goes down, and every page below it is below top. */
static inline unsigned area_of(uint32_t i)
{
	return N(i).start >= zk_book.floor;
}

static void list_push(uint32_t i)
{
	unsigned c = class_of(N(i).len), ar = area_of(i);
	N(i).prev = NIL;
	N(i).next = zk_book.heads[ar][c];
	if (N(i).next != NIL)
		N(N(i).next).prev = i;
	zk_book.heads[ar][c] = i;
	zk_book.nonempty[ar][c / 64] |= (uint64_t)1 << (c % 64);
}

static void list_unlink(uint32_t i)
{
	unsigned c = class_of(N(i).len), ar = area_of(i);
	if (N(i).prev != NIL)
		N(N(i).prev).next = N(i).next;
	else
		zk_book.heads[ar][c] = N(i).next;
	if (N(i).next != NIL)
		N(N(i).next).prev = N(i).prev;
	if (zk_book.heads[ar][c] == NIL)
		zk_book.nonempty[ar][c / 64] &= ~((uint64_t)1 << (c % 64));
}

_Static_assert(EXACT + 24 * 4 <= CLASSES, "a class for every uint32 length");

/* The first nonempty list of area ar from class c up (CLASSES: none). */
static unsigned next_class(unsigned ar, unsigned c)
{
	for (unsigned w = c / 64; w < CLASSES / 64; w++) {
		uint64_t m = zk_book.nonempty[ar][w];
		if (w == c / 64)
			m &= ~(uint64_t)0 << (c % 64);
		if (m != 0)
			return w * 64 + (unsigned)__builtin_ctzll(m);
	}
	return CLASSES;
}

/* The first free node of area ar from class c up, else of the areas
 * after it. */
static uint32_t first_from(unsigned ar, unsigned c)
{
	for (; ar < 2; ar++, c = 0) {
		c = c < CLASSES ? next_class(ar, c) : CLASSES;
		if (c < CLASSES)
			return zk_book.heads[ar][c];
	}
	return NIL;
}

uint32_t zk_free_first(void)
{
	return first_from(0, 0);
}

uint32_t zk_free_next(uint32_t i)
{
	if (N(i).next != NIL)
		return N(i).next;
	return first_from(area_of(i), class_of(N(i).len) + 1);
}

/* Put free node i (start, len set) in the treap, its list and the map. */
static void range_insert(uint32_t i)
{
	node_t *x = &N(i);
	x->state = NODE_FREE;
	x->left = x->right = NIL;
	x->max = x->len;
	uint32_t lo, hi;
	split(zk_book.root, x->start, &lo, &hi);
	zk_book.root = merge(merge(lo, i), hi);
	list_push(i);
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
	list_unlink(i);
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

/* The free node with the highest start below page limit, or NIL. */
uint32_t zk_free_below(uint32_t limit)
{
	uint32_t t = zk_book.root, best = NIL;
	while (t != NIL) {
		if (N(t).start < limit) {
			best = t;
			t = N(t).right;
		} else {
			t = N(t).left;
		}
	}
	return best;
}

/* Make [s, s + n) free, merged with its free neighbours. Returns false if
 * the range table is full. */
bool zk_insert_free(uint32_t s, uint32_t n)
{
	uint32_t keep = NIL;
	uint32_t l = s > 0 && zk_handed(s - 1) ? zk_free_ending_at(s - 1) : NIL;
	if (l != NIL) {
		range_remove(l);
		s = N(l).start;
		n += N(l).len;
		keep = l;
	}
	uint32_t r = zk_handed((uint64_t)s + n) ? zk_free_starting_at(s + n) : NIL;
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

/* Every request goes to the shortest free range that holds it (best fit);
 * a large one at the range's start, a small one (zk_is_small) at its end.
 * So a buffer, small or large, takes the hole that a buffer of its size
 * left rather than the edge of a longer range another buffer will want
 * back (with first fit by address, 4 MiB blocks made before a rotating
 * 128 MiB buffer took the bottom of its range, and it moved to fresh
 * pages: tests/stress/stress_rotate.c), and small blocks fill the holes of
 * small blocks. */

/* Where in free node x a request of n pages aligned to a goes: a large one
 * at its start, a small one at its end (the node fits). */
uint32_t zk_place(const node_t *x, uint32_t n, uint32_t a)
{
	if (zk_is_small(n)) {
		uint64_t at = align_down((uint64_t)x->start + x->len - n, a);
		if (at >= x->start)
			return (uint32_t)at;
	}
	return (uint32_t)align_up(x->start, a);
}

/* The lowest node of the treap that holds need pages, or NIL. */
static uint32_t first_fit(uint64_t need)
{
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

/* Entries of one long-range list looked at per request. */
#define LOOKS 64

/* The shortest free node that holds need pages, or NIL: the first
 * nonempty list of short ranges from need up (every entry fits exactly
 * that well), else, from need's class of long ranges up, the shortest
 * fitting entry among the first LOOKS of the first list that has one
 * (lowest address among equals). If a long list is longer than that, the
 * lowest fitting node (the treap's first fit) is the answer. */
static uint32_t best_fit(unsigned ar, uint64_t need)
{
	for (unsigned c = next_class(ar, class_of(need)); c < CLASSES;
	     c = c + 1 < CLASSES ? next_class(ar, c + 1) : CLASSES) {
		if (c < EXACT)
			return zk_book.heads[ar][c];
		uint32_t best = NIL;
		unsigned looked = 0;
		for (uint32_t i = zk_book.heads[ar][c]; i != NIL && looked < LOOKS;
		     i = N(i).next, looked++)
			if (N(i).len >= need &&
			    (best == NIL || N(i).len < N(best).len ||
			     (N(i).len == N(best).len &&
			      N(i).start < N(best).start)))
				best = i;
		if (best != NIL)
			return best;
	}
	return NIL;
}

/* The free node a request of n pages aligned to a goes to, or NIL. An
 * aligned request asks for room for any start (n + a - 1 pages).
 * small_area: a small request, which looks in the small requests' area
 * only (the caller takes fresh pages below floor next), so the small
 * blocks a proof keeps never split the ranges large blocks come back to.
 * Otherwise the best fit below top, else the lowest range that holds it
 * (below top if one does). */
uint32_t zk_find_fit(uint32_t n, uint32_t a, bool small_area)
{
	uint64_t need = a > 1 ? (uint64_t)n + a - 1 : n;
	if (need > UINT32_MAX)
		return NIL;
	if (small_area)
		return best_fit(1, need);
	uint32_t i = best_fit(0, need);
	return i != NIL ? i : first_fit(need);
}
