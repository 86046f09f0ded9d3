/*
 * A workload shaped like an FFT/FRI prover (Plonky3-like), to measure what an
 * allocator costs a prover. Per proof: a trace matrix allocated once and
 * filled, an in-place low-degree extension by strided butterfly passes, a
 * Merkle tree over its rows, quotient buffers and chunk LDEs, FRI rounds that
 * each allocate a fold buffer and its Merkle layers and free the previous
 * round's, and tens of thousands of small bookkeeping allocations (a hash map
 * per thread, a shared work queue).
 *
 * Every proof also grows an output vector by realloc and keeps it past its
 * phase: it is checked at the start of the next proof and freed then.
 * Scenarios: steady (every proof alike), rotate (each proof's trace, its
 * biggest buffer, is allocated by another thread: a new one or a pool worker)
 * and spike (one proof also allocates and frees ~256 MiB of small objects;
 * RSS after every proof shows how fast it comes back down).
 *
 * Every byte the proof writes is read back into a checksum, which is printed
 * and must be identical across allocator modes, thread counts and the steady
 * and rotate scenarios (the spike's objects add to it: spike runs agree among
 * themselves).
 *
 * Built twice from this file: without WITH_ZKALLOC (modes malloc and ideal;
 * malloc is whatever malloc the process has, e.g. an LD_PRELOADed one) and
 * with it (mode zk: the zkalloc API, one phase per proof).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "prover.h"

#ifdef WITH_ZKALLOC
#include "zkalloc.h"
#endif

#define MAX_PROOFS    1000
#define NCHUNKS	      4 /* quotient chunks */
#define FRI_FINAL_LOG 6 /* FRI stops at 64 elements */
#define FRI_QUERIES   32
#define QTASK_ROWS    2048u /* rows per quotient task (its temp buffer) */
#define NODE_BYTES    32u   /* one work-queue node */

struct opts O;

/* -------------------------------------------------------- BabyBear field */

static uint32_t f_pow_plain(uint64_t b, uint64_t e)
{
	uint64_t r = 1;
	b %= FP;
	while (e) {
		if (e & 1)
			r = r * b % FP;
		b = b * b % FP;
		e >>= 1;
	}
	return (uint32_t)r;
}

static inline uint32_t f_mont(uint32_t x)
{
	return (uint32_t)(((uint64_t)x << 32) % FP);
}

/* --------------------------------------------------------- the digest */

/* Not cryptographic: 8 lanes of multiply-rotate, enough that every input word
 * changes the output and the compiler must read all of them. */
static inline uint32_t rotl32(uint32_t x, unsigned r)
{
	return (x << r) | (x >> (32 - r));
}

void digest(const uint32_t *x, size_t n, uint32_t out[8])
{
	uint32_t h[8];
	for (unsigned l = 0; l < 8; l++)
		h[l] = 0x6a09e667u + l * 0x3c6ef372u + (uint32_t)n;
	size_t j = 0;
	for (; j + 8 <= n; j += 8)
		for (unsigned l = 0; l < 8; l++)
			h[l] = rotl32((h[l] ^ x[j + l]) * 0x9e3779b1u, 13);
	for (; j < n; j++)
		h[j & 7] = rotl32((h[j & 7] ^ x[j]) * 0x85ebca6bu, 11);
	for (unsigned r = 0; r < 2; r++)
		for (unsigned l = 0; l < 8; l++)
			h[l] = rotl32(h[l] ^ (h[(l + 1) & 7] * 0xc2b2ae35u), 7);
	memcpy(out, h, 32);
}

/* --------------------------------------------------- allocation modes */

/* Ideal mode: big buffers of the FFT/FRI workload come from slots
 * allocated and pre-faulted before the first proof (sized for the largest
 * proof), small ones from a pre-faulted bump pool rewound at each proof,
 * the columns workload's from a pre-faulted bump pool per thread. */
struct ideal_slot {
	void *p;
	size_t cap;
};
static struct ideal_slot slots[NSLOTS];
static unsigned char *pool;
static size_t pool_cap;
static _Atomic size_t pool_used;
static unsigned char *tpool[MAX_THREADS]; /* per thread (columns) */
static size_t tpool_cap, tpool_used[MAX_THREADS];
_Thread_local unsigned my_tid;

void die(const char *what)
{
	fprintf(stderr, "zkbench-prover: %s\n", what);
	exit(2);
}

static void *pool_alloc(size_t n)
{
	n = (n + 15) & ~(size_t)15;
	size_t off =
	    atomic_fetch_add_explicit(&pool_used, n, memory_order_relaxed);
	if (off + n > pool_cap)
		die("ideal: small pool exhausted (sizing bug)");
	return pool + off;
}

static void *tpool_alloc(size_t n)
{
	unsigned t = my_tid;
	size_t off = tpool_used[t];
	n = (n + 63) & ~(size_t)63;
	if (!tpool[t] || off + n > tpool_cap)
		die("ideal: thread pool exhausted (sizing bug)");
	tpool_used[t] = off + n;
	return tpool[t] + off;
}

void ideal_thread_pools(size_t bytes)
{
	tpool_cap = (bytes + 63) & ~(size_t)63;
	for (unsigned t = 0; t < O.threads; t++) {
		tpool[t] = malloc(tpool_cap);
		if (!tpool[t])
			die("ideal: cannot allocate the thread pools");
		memset(tpool[t], 0x5a, tpool_cap); /* pre-fault */
	}
}

/* Every proof starts from empty pools. */
static void ideal_rewind(void)
{
	atomic_store(&pool_used, 0);
	for (unsigned t = 0; t < O.threads; t++)
		tpool_used[t] = 0;
}

static void *slot_get(int s, size_t n)
{
	if (s == S_QTMP)
		s += my_tid;
	if (!slots[s].p || n > slots[s].cap) {
		fprintf(stderr, "ideal: slot %d holds %zu, asked %zu\n", s,
			slots[s].cap, n);
		die("ideal: slot too small (sizing bug)");
	}
	return slots[s].p;
}

static void *ideal_get(int s, size_t n)
{
	return s == S_SMALL   ? pool_alloc(n)
	       : s == S_SHARD ? tpool_alloc(n)
			      : slot_get(s, n);
}

/* The live-bytes yardstick. One counter for all threads (a relaxed atomic
 * add per allocation and per free: cheap next to the allocation itself);
 * the peak is raised with a compare-exchange only when it is exceeded. */
static _Atomic size_t live_bytes, live_max;

void live_add(size_t n)
{
	size_t v =
	    atomic_fetch_add_explicit(&live_bytes, n, memory_order_relaxed) + n;
	size_t m = atomic_load_explicit(&live_max, memory_order_relaxed);
	while (v > m && !atomic_compare_exchange_weak_explicit(
			    &live_max, &m, v, memory_order_relaxed,
			    memory_order_relaxed))
		;
}

void live_sub(size_t n)
{
	atomic_fetch_sub_explicit(&live_bytes, n, memory_order_relaxed);
}

size_t live_now(void)
{
	return atomic_load(&live_bytes);
}

size_t live_peak(void)
{
	return atomic_load(&live_max);
}

void live_reset_peak(void)
{
	atomic_store(&live_max, atomic_load(&live_bytes));
}

void *xalloc(int s, size_t n)
{
	void *p;
	switch (O.mode) {
	case MODE_IDEAL:
		p = ideal_get(s, n);
		break;
#ifdef WITH_ZKALLOC
	case MODE_ZK:
		p = zk_malloc(n);
		break;
#endif
	default:
		p = malloc(n);
	}
	if (!p && n)
		die("out of memory");
	live_add(n);
	return p;
}

void *xcalloc(int s, size_t n)
{
	void *p;
	switch (O.mode) {
	case MODE_IDEAL:
		p = ideal_get(s, n);
		memset(p, 0, n); /* ideal reuses dirty memory: must clear */
		break;
#ifdef WITH_ZKALLOC
	case MODE_ZK:
		p = zk_calloc(1, n);
		break;
#endif
	default:
		p = calloc(1, n);
	}
	if (!p && n)
		die("out of memory");
	live_add(n);
	return p;
}

void *xrealloc(int s, void *q, size_t old, size_t n)
{
	void *p;
	switch (O.mode) {
	case MODE_IDEAL:
		if (s != S_SMALL && s != S_SHARD) {
			p = slot_get(s, n); /* the slot holds the max */
			break;
		}
		p = ideal_get(s, n);
		if (q)
			memcpy(p, q, old < n ? old : n);
		break;
#ifdef WITH_ZKALLOC
	case MODE_ZK:
		p = zk_realloc(q, n);
		break;
#endif
	default:
		p = realloc(q, n);
	}
	if (!p && n)
		die("out of memory");
	live_add(n);
	live_sub(q ? old : 0);
	return p;
}

void xfree(int s, void *p, size_t n)
{
	(void)s;
	if (!p)
		return;
	live_sub(n);
	switch (O.mode) {
	case MODE_IDEAL:
		return;
#ifdef WITH_ZKALLOC
	case MODE_ZK:
		zk_free(p);
		return;
#endif
	default:
		free(p);
	}
}

/* ---------------------------------------------------- the thread pool */

/* One stage = ntasks tasks, run by all threads (main is thread 0). The main
 * thread allocates one queue node per task and the workers free them: small
 * cross-thread frees, like a thread pool's injector queue. */
struct node {
	struct node *next;
	uint32_t task;
	uint32_t pad[5];
};

static struct {
	pthread_t th[MAX_THREADS];
	pthread_barrier_t go, done;
	pthread_mutex_t lock;
	struct node *head;
	task_fn fn;
	void *ctx;
	void (*solo)(void *); /* run_on(): what worker solo_tid runs first */
	void *solo_ctx;
	unsigned solo_tid;
	task_fn each; /* run_each(): what every thread runs */
	void *each_ctx;
	bool quit;
} pool_;

/* Set while run_each's function runs on this thread: the stages it calls
 * (ntt, merkle_build) run their tasks inline instead of queueing them. */
static _Thread_local bool serial;

struct small_map;
static struct small_map *maps[MAX_THREADS];
static _Atomic uint64_t small_sum; /* checksum of bookkeeping bytes */
static _Atomic uint64_t rec_next;  /* next bookkeeping record id */
static uint64_t rec_limit;	   /* records per proof */
static uint32_t rec_per_task;
static _Atomic uint64_t ntasks_run; /* tasks in this proof */
uint64_t proof_seed;

static void bookkeeping(unsigned tid);

static void drain(unsigned tid)
{
	for (;;) {
		pthread_mutex_lock(&pool_.lock);
		struct node *n = pool_.head;
		if (n)
			pool_.head = n->next;
		pthread_mutex_unlock(&pool_.lock);
		if (!n)
			return;
		if (n->pad[0] != (uint32_t)mix64(n->task + 77))
			die("work queue node corrupted");
		pool_.fn(pool_.ctx, n->task);
		xfree(S_SMALL, n, sizeof *n);
		bookkeeping(tid);
		atomic_fetch_add_explicit(&ntasks_run, 1, memory_order_relaxed);
	}
}

static void *worker(void *arg)
{
	my_tid = (unsigned)(uintptr_t)arg;
	for (;;) {
		pthread_barrier_wait(&pool_.go);
		if (pool_.quit)
			return NULL;
		if (pool_.solo && pool_.solo_tid == my_tid)
			pool_.solo(pool_.solo_ctx);
		if (pool_.each) {
			serial = true;
			pool_.each(pool_.each_ctx, my_tid);
			serial = false;
		}
		drain(my_tid);
		pthread_barrier_wait(&pool_.done);
	}
}

static void run(task_fn fn, void *ctx, uint32_t ntasks)
{
	if (serial) { /* inside run_each: this thread does it all */
		for (uint32_t t = 0; t < ntasks; t++)
			fn(ctx, t);
		return;
	}
	struct node *head = NULL;
	for (uint32_t t = ntasks; t-- > 0;) {
		struct node *n = xalloc(S_SMALL, sizeof *n);
		n->next = head;
		n->task = t;
		n->pad[0] = (uint32_t)mix64(t + 77);
		head = n;
	}
	pool_.head = head;
	pool_.fn = fn;
	pool_.ctx = ctx;
	pthread_barrier_wait(&pool_.go);
	drain(0);
	pthread_barrier_wait(&pool_.done);
}

/* Runs fn(ctx) on pool thread tid (0 is the main thread) and waits for it:
 * the rotate scenario's way of having a given worker allocate. */
static void run_on(unsigned tid, void (*fn)(void *), void *ctx)
{
	if (tid == 0) {
		fn(ctx);
		return;
	}
	pool_.head = NULL;
	pool_.solo = fn;
	pool_.solo_ctx = ctx;
	pool_.solo_tid = tid;
	pthread_barrier_wait(&pool_.go);
	pthread_barrier_wait(&pool_.done);
	pool_.solo = NULL;
}

void run_each(task_fn fn, void *ctx)
{
	pool_.head = NULL;
	pool_.each = fn;
	pool_.each_ctx = ctx;
	pthread_barrier_wait(&pool_.go);
	serial = true;
	fn(ctx, 0);
	serial = false;
	pthread_barrier_wait(&pool_.done);
	pool_.each = NULL;
}

static void pool_start(void)
{
	pthread_mutex_init(&pool_.lock, NULL);
	pthread_barrier_init(&pool_.go, NULL, O.threads);
	pthread_barrier_init(&pool_.done, NULL, O.threads);
	for (unsigned t = 1; t < O.threads; t++)
		if (pthread_create(&pool_.th[t], NULL, worker,
				   (void *)(uintptr_t)t))
			die("pthread_create failed");
}

static void pool_stop(void)
{
	pool_.quit = true;
	pthread_barrier_wait(&pool_.go);
	for (unsigned t = 1; t < O.threads; t++)
		pthread_join(pool_.th[t], NULL);
}

static uint32_t ceil_div(uint64_t a, uint64_t b)
{
	return (uint32_t)((a + b - 1) / b);
}

/* ------------------------------------------- bookkeeping (small objects) */

/* Per-thread chained hash map of records of 16 B - 4 KiB (header included),
 * like a tracing registry: keys collide, so about half of the records are
 * replaced (freed) during the proof; the rest are freed at its end. */
struct rec {
	struct rec *next;
	uint32_t key;
	uint32_t len; /* bytes of data[] */
	unsigned char data[];
};

struct small_map {
	struct rec **b;
	size_t nb, n;
};

size_t rec_size(uint64_t id)
{
	uint64_t h = mix64(id ^ proof_seed ^ 0xabcdefull);
	unsigned k = (unsigned)(h % 9); /* 16 << 0..8: 16 B .. 4 KiB */
	size_t lo = (size_t)16 << k;
	size_t sz = lo + (size_t)((h >> 8) % lo);
	return sz > 4096 ? 4096 : sz;
}

static uint64_t rec_consume(struct rec *r)
{
	uint64_t s = r->key;
	for (uint32_t j = 0; j < r->len; j++)
		s = s * 31 + r->data[j];
	return mix64(s);
}

static void map_grow(struct small_map *m)
{
	size_t nb = m->nb ? m->nb * 2 : 16;
	struct rec **b =
	    xrealloc(S_SMALL, m->b, m->nb * sizeof *b, nb * sizeof *b);
	if (!m->nb)
		memset(b, 0, nb * sizeof *b);
	for (size_t i = 0; i < m->nb; i++) { /* split each old chain */
		struct rec *r = b[i], *lo = NULL, *hi = NULL;
		while (r) {
			struct rec *next = r->next;
			if (r->key & m->nb) {
				r->next = hi;
				hi = r;
			} else {
				r->next = lo;
				lo = r;
			}
			r = next;
		}
		b[i] = lo;
		b[i + m->nb] = hi;
	}
	m->b = b;
	m->nb = nb;
}

static void map_put(struct small_map *m, uint64_t id)
{
	size_t sz = rec_size(id);
	struct rec *r = xalloc(S_SMALL, sz);
	r->key = (uint32_t)mix64(id % (rec_limit / 2 + 1));
	r->len = (uint32_t)(sz - sizeof *r);
	uint64_t v = mix64(id);
	for (uint32_t j = 0; j < r->len; j++)
		r->data[j] =
		    (unsigned char)(v >> (8 * (j & 7))) + (unsigned char)j;
	if (m->n >= m->nb)
		map_grow(m);
	struct rec **pp = &m->b[r->key & (m->nb - 1)];
	for (; *pp; pp = &(*pp)->next)
		if ((*pp)->key == r->key) { /* replace */
			struct rec *old = *pp;
			r->next = old->next;
			*pp = r;
			atomic_fetch_add_explicit(&small_sum, rec_consume(old),
						  memory_order_relaxed);
			xfree(S_SMALL, old, sizeof *old + old->len);
			return;
		}
	r->next = NULL;
	*pp = r;
	m->n++;
}

static void map_clear(struct small_map *m)
{
	uint64_t s = 0;
	for (size_t i = 0; i < m->nb; i++)
		for (struct rec *r = m->b[i], *next; r; r = next) {
			next = r->next;
			s += rec_consume(r);
			xfree(S_SMALL, r, sizeof *r + r->len);
		}
	xfree(S_SMALL, m->b, m->nb * sizeof *m->b);
	m->b = NULL;
	m->nb = m->n = 0;
	atomic_fetch_add_explicit(&small_sum, s, memory_order_relaxed);
}

static void bookkeeping(unsigned tid)
{
	for (uint32_t i = 0; i < rec_per_task; i++) {
		uint64_t id = atomic_fetch_add_explicit(&rec_next, 1,
							memory_order_relaxed);
		if (id >= rec_limit)
			return;
		map_put(maps[tid], id);
	}
}

/* ---------------------------------------------------------- LDE (NTT) */

/* Forward DIF NTT over the rows of a row-major matrix (each butterfly acts
 * on two whole rows), in place. Levels are done g (<= 4) at a time: a unit is
 * 2^g rows that the g levels only mix among themselves, so each sweep reads
 * and writes the matrix once. */
struct ntt {
	uint32_t *m;
	size_t rows, width;
	const uint32_t *tw; /* tw[i] = w^i, w of order rows, i < rows/2 */
	unsigned level, g;  /* first level of this sweep (0: half = rows/2) */
	size_t units_per_task;
};

static void ntt_task(void *ctx, uint32_t task)
{
	const struct ntt *c = ctx;
	size_t h0 = c->rows >> (c->level + 1);
	size_t hl = h0 >> (c->g - 1); /* half-size of the last level */
	size_t nunits = c->rows >> c->g;
	size_t u0 = (size_t)task * c->units_per_task;
	size_t u1 = u0 + c->units_per_task;
	if (u1 > nunits)
		u1 = nunits;
	size_t W = c->width;
	unsigned nj = 1u << c->g;
	for (size_t u = u0; u < u1; u++) {
		size_t block = (u / hl) * 2 * h0, i = u % hl;
		uint32_t *row[16];
		for (unsigned j = 0; j < nj; j++)
			row[j] = c->m + (block + i + j * hl) * W;
		for (unsigned t = 0; t < c->g; t++) {
			unsigned hj = 1u << (c->g - 1 - t);
			size_t h = (size_t)hj * hl;
			size_t stride = c->rows / (2 * h);
			for (unsigned j = 0; j < nj; j++) {
				if (j & hj)
					continue;
				size_t pos =
				    i + (size_t)(j & (2 * hj - 1)) * hl;
				uint32_t w = c->tw[pos * stride];
				uint32_t *a = row[j], *b = row[j + hj];
				for (size_t k = 0; k < W; k++) {
					uint32_t x = a[k], y = b[k];
					a[k] = f_add(x, y);
					b[k] = f_mul(f_sub(x, y), w);
				}
			}
		}
	}
}

void ntt(uint32_t *m, size_t rows, size_t width, const uint32_t *tw)
{
	unsigned levels = (unsigned)__builtin_ctzll(rows);
	for (unsigned l = 0; l < levels;) {
		unsigned g = levels - l < 4 ? levels - l : 4;
		struct ntt c = {m, rows, width, tw, l, g, 0};
		size_t unit_bytes = ((size_t)1 << g) * width * 4;
		c.units_per_task =
		    TASK_BYTES / unit_bytes ? TASK_BYTES / unit_bytes : 1;
		run(ntt_task, &c, ceil_div(rows >> g, c.units_per_task));
		l += g;
	}
}

size_t twiddles_bytes(size_t rows)
{
	return (rows / 2 ? rows / 2 : 1) * 4;
}

/* Twiddles for an NTT of `rows` points: w^i for i < rows/2, Montgomery. */
uint32_t *twiddles(int slot, size_t rows)
{
	unsigned log = (unsigned)__builtin_ctzll(rows);
	uint32_t w = f_pow_plain(31, (uint64_t)(FP - 1) >> log);
	size_t n = twiddles_bytes(rows) / 4;
	uint32_t *tw = xalloc(slot, n * 4);
	uint64_t x = 1;
	for (size_t i = 0; i < n; i++) {
		tw[i] = f_mont((uint32_t)x);
		x = x * w % FP;
	}
	return tw;
}

/* ------------------------------------------------------------ Merkle */

struct leaf_ctx {
	const uint32_t *m; /* rows to hash, `width` u32 each */
	size_t rows, width;
	uint32_t *out;
	size_t per_task;
};

static void leaf_task(void *ctx, uint32_t task)
{
	const struct leaf_ctx *c = ctx;
	size_t r0 = (size_t)task * c->per_task, r1 = r0 + c->per_task;
	if (r1 > c->rows)
		r1 = c->rows;
	for (size_t r = r0; r < r1; r++)
		digest(c->m + r * c->width, c->width, c->out + r * 8);
}

static void hash_rows(const uint32_t *m, size_t rows, size_t width,
		      uint32_t *out)
{
	struct leaf_ctx c = {m, rows, width, out, 0};
	c.per_task = TASK_BYTES / (width * 4 + 32);
	if (!c.per_task)
		c.per_task = 1;
	if (rows <= c.per_task) { /* not worth waking the pool */
		c.per_task = rows;
		leaf_task(&c, 0);
		return;
	}
	run(leaf_task, &c, ceil_div(rows, c.per_task));
}

/* Layer k's site: one slot per layer, except the columns workload's. */
static int layer_slot(int slot, unsigned k)
{
	return slot == S_SHARD ? slot : slot + (int)k;
}

/* Leaf digests of `rows` rows of `width` u32, then halving layers to a root. */
void merkle_build(struct merkle *t, int slot, const uint32_t *m, size_t rows,
		  size_t width)
{
	t->slot = slot;
	t->nlayers = 0;
	size_t n = rows;
	t->layer[0] = xalloc(slot, n * 32);
	t->len[0] = n;
	hash_rows(m, n, width, t->layer[0]);
	t->nlayers = 1;
	while (n > 1) {
		unsigned k = t->nlayers;
		if (k >= MAX_LAYERS)
			die("too many Merkle layers");
		t->layer[k] = xalloc(layer_slot(slot, k), (n / 2) * 32);
		t->len[k] = n / 2;
		/* a parent hashes its two children: 16 u32 */
		hash_rows(t->layer[k - 1], n / 2, 16, t->layer[k]);
		n /= 2;
		t->nlayers++;
	}
}

uint64_t merkle_root(const struct merkle *t)
{
	const uint32_t *r = t->layer[t->nlayers - 1];
	uint64_t s = 0;
	for (unsigned l = 0; l < 8; l++)
		s = mix64(s ^ r[l]);
	return s;
}

void merkle_free(struct merkle *t)
{
	for (unsigned k = 0; k < t->nlayers; k++)
		xfree(layer_slot(t->slot, k), t->layer[k], t->len[k] * 32);
	t->nlayers = 0;
}

/* ----------------------------------------------------- proof stages */

struct fill_ctx {
	uint32_t *trace;
	size_t n, width, per_task; /* n = rows before extension */
};

static void fill_task(void *ctx, uint32_t task)
{
	const struct fill_ctx *c = ctx;
	size_t r0 = (size_t)task * c->per_task, r1 = r0 + c->per_task;
	if (r1 > c->n)
		r1 = c->n;
	for (size_t r = r0; r < r1; r++) {
		uint32_t *row = c->trace + r * c->width;
		for (size_t j = 0; j < c->width; j++)
			row[j] = f_rand(proof_seed, r, j);
		/* zero-padded extension: the second half of the rows */
		memset(c->trace + (r + c->n) * c->width, 0, c->width * 4);
	}
}

/* grow: the trace is collected segment by segment into vectors that grow by
 * doubling from 4 elements (Vec::push / par_iter().collect()), then copied
 * into the trace buffer. */
struct grow_ctx {
	uint32_t *dst;
	size_t n, width; /* rows, elements per row */
	uint32_t nseg;
	bool zero_ext; /* also zero rows n..2n of dst */
	int (*gen)(void *, size_t, uint32_t *); /* row r -> width elements */
	void *gen_ctx;
};

static void grow_task(void *ctx, uint32_t seg)
{
	const struct grow_ctx *c = ctx;
	size_t r0 = c->n * seg / c->nseg, r1 = c->n * (seg + 1) / c->nseg;
	size_t need = (r1 - r0) * c->width;
	size_t cap = 4, len = 0;
	uint32_t *v;
	if (O.mode == MODE_IDEAL) /* the limit: no growth at all */
		v = xalloc(S_GROW + (int)seg, need * 4), cap = need;
	else
		v = xalloc(S_GROW + (int)seg, cap * 4);
	for (size_t r = r0; r < r1; r++) {
		while (len + c->width > cap) {
			v = xrealloc(S_GROW + (int)seg, v, cap * 4, cap * 8);
			cap *= 2;
		}
		c->gen(c->gen_ctx, r, v + len);
		len += c->width;
	}
	memcpy(c->dst + r0 * c->width, v, len * 4);
	if (c->zero_ext)
		memset(c->dst + (c->n + r0) * c->width, 0, len * 4);
	xfree(S_GROW + (int)seg, v, cap * 4);
}

static int gen_trace_row(void *ctx, size_t r, uint32_t *out)
{
	size_t width = *(size_t *)ctx;
	for (size_t j = 0; j < width; j++)
		out[j] = f_rand(proof_seed, r, j);
	return 0;
}

struct quot_ctx {
	const uint32_t *trace;
	size_t rows, width;
	uint32_t *q; /* rows x 4 */
	uint32_t alpha[16], zeta[4];
};

static void quot_task(void *ctx, uint32_t task)
{
	const struct quot_ctx *c = ctx;
	size_t r0 = (size_t)task * QTASK_ROWS, r1 = r0 + QTASK_ROWS;
	if (r1 > c->rows)
		r1 = c->rows;
	/* per-row numerator and denominator, 32 B a row: a 64 KiB temporary
	 * per task, freed at its end (reused within the proof) */
	uint32_t *tmp = xalloc(S_QTMP, QTASK_ROWS * 32);
	for (size_t r = r0; r < r1; r++) {
		const uint32_t *x = c->trace + r * c->width;
		uint32_t acc[16] = {0};
		size_t j = 0;
		for (; j + 16 <= c->width; j += 16)
			for (unsigned l = 0; l < 16; l++)
				acc[l] =
				    f_add(f_mul(acc[l], c->alpha[l]), x[j + l]);
		for (; j < c->width; j++)
			acc[j & 15] = f_add(acc[j & 15], x[j]);
		uint32_t *t = tmp + (r - r0) * 8;
		for (unsigned l = 0; l < 4; l++) {
			t[l] = f_add(f_add(acc[l], acc[l + 4]),
				     f_add(acc[l + 8], acc[l + 12]));
			t[4 + l] = f_add(f_mul(t[l], c->zeta[l]), 1);
		}
	}
	for (size_t r = r0; r < r1; r++) {
		const uint32_t *t = tmp + (r - r0) * 8;
		for (unsigned l = 0; l < 4; l++)
			c->q[r * 4 + l] =
			    f_add(c->q[r * 4 + l], f_mul(t[l], t[4 + l]));
	}
	xfree(S_QTMP, tmp, QTASK_ROWS * 32);
}

struct chunk_ctx {
	const uint32_t *q;
	uint32_t *chunk[NCHUNKS];
	size_t crows; /* rows per chunk LDE */
};

static void chunk_fill_task(void *ctx, uint32_t c_)
{
	const struct chunk_ctx *c = ctx;
	/* chunk c holds q's rows [c*crows, c*crows + crows/2), zero-padded */
	size_t half = c->crows / 2;
	memcpy(c->chunk[c_], c->q + (size_t)c_ * c->crows * 4, half * 16);
	memset(c->chunk[c_] + half * 4, 0, half * 16);
}

struct f0_ctx {
	uint32_t *const *chunk;
	size_t crows;
	uint32_t gamma[4];
};

static int gen_f0_row(void *ctx, size_t i, uint32_t *out)
{
	const struct f0_ctx *c = ctx;
	const uint32_t *src = c->chunk[i % NCHUNKS] + (i / NCHUNKS) * 4;
	for (unsigned l = 0; l < 4; l++)
		out[l] = f_mul(src[l], c->gamma[l]);
	return 0;
}

struct f0_fill_ctx {
	struct f0_ctx *f;
	uint32_t *out;
	size_t rows, per_task;
};

static void f0_task(void *ctx, uint32_t task)
{
	const struct f0_fill_ctx *c = ctx;
	size_t r0 = (size_t)task * c->per_task, r1 = r0 + c->per_task;
	if (r1 > c->rows)
		r1 = c->rows;
	for (size_t r = r0; r < r1; r++)
		gen_f0_row(c->f, r, c->out + r * 4);
}

struct fold_ctx {
	const uint32_t *src;
	uint32_t *dst;
	size_t len, per_task; /* len = elements of dst */
	uint32_t beta[4];
};

static void fold_task(void *ctx, uint32_t task)
{
	const struct fold_ctx *c = ctx;
	size_t i0 = (size_t)task * c->per_task, i1 = i0 + c->per_task;
	if (i1 > c->len)
		i1 = c->len;
	for (size_t i = i0; i < i1; i++)
		for (unsigned l = 0; l < 4; l++)
			c->dst[i * 4 + l] = f_add(
			    c->src[2 * i * 4 + l],
			    f_mul(c->src[(2 * i + 1) * 4 + l], c->beta[l]));
}

/* ------------------------------------------------------ the kept output */

/* Each proof grows one vector by realloc (zk_realloc in zk mode), from 16 B
 * to keep_bytes, pushing one element at a time (a proof's output built by
 * push), and keeps it past its phase: the next proof checks it after
 * zk_begin_phase() and frees it. zkalloc 0.2 guarantees that a block
 * outlives any later begin, wherever it was made: a changed hash is a
 * library bug (exit 3). */
static struct {
	uint32_t *v;
	size_t n, cap;	/* elements, of which allocated */
	uint64_t sum;	/* its hash when it was made */
	unsigned proof; /* 1-based proof that made it */
} kept;
static bool keep_ok = true; /* every kept output was intact when checked */

uint64_t hash_u32(const uint32_t *v, size_t n)
{
	uint32_t d[8];
	digest(v, n, d);
	uint64_t s = n;
	for (unsigned l = 0; l < 8; l++)
		s = mix64(s ^ d[l]);
	return s;
}

/* Builds this proof's output from the trace commitment's leaves. */
uint64_t keep_make(unsigned proof, const uint32_t *leaves, size_t nl)
{
	size_t need = O.keep_bytes / 4, cap = 4, len = 0;
	if (!need) /* --keep-mib 0 */
		return 0;
	if (O.mode == MODE_IDEAL)
		cap = need;
	int slot = S_KEEP + (int)(proof & 1); /* ideal: odd/even alternate */
	uint32_t *v = xalloc(slot, cap * 4);
	for (size_t i = 0; i < need; i++) {
		if (len == cap) {
			v = xrealloc(slot, v, cap * 4, cap * 8);
			cap *= 2;
		}
		v[len++] = f_add(f_rand(proof_seed, 9, i), leaves[i % nl]);
	}
	kept.v = v;
	kept.n = len;
	kept.cap = cap;
	kept.proof = proof;
	kept.sum = hash_u32(v, len);
	if (O.keep_damage) /* smoke.sh proves that keep_check can fail */
		v[len / 2] ^= 1;
	return kept.sum;
}

/* Checks the output kept from the previous proof (a phase later) and frees
 * it. Returns its hash now, which enters the checksum. */
uint64_t keep_check(void)
{
	if (!kept.v)
		return 0;
	uint64_t s = hash_u32(kept.v, kept.n);
	if (s != kept.sum) {
		fprintf(stderr,
			"zkbench-prover: the output kept from proof %u changed "
			"after the next phase began (hash %016" PRIx64
			", made as %016" PRIx64 ")\n",
			kept.proof, s, kept.sum);
		keep_ok = false;
	}
	xfree(S_KEEP, kept.v, kept.cap * 4);
	kept.v = NULL;
	return s;
}

/* ------------------------------------------------------------ rotate */

struct big_req {
	size_t n;
	void *p;
};

static void big_alloc(void *arg)
{
	struct big_req *r = arg;
	r->p = xalloc(S_TRACE, r->n);
}

static void *big_thread(void *arg)
{
	big_alloc(arg);
	return NULL; /* exits holding the block; main frees it */
}

/* The trace, the proof's biggest buffer. In the rotate scenario another
 * thread allocates it each proof: a new thread that exits right after (even
 * proofs, counting from 0) or the next pool worker in turn (odd proofs). */
static void *alloc_trace(size_t n, unsigned idx)
{
	struct big_req r = {n, NULL};
	pthread_t t;
	if (O.scenario != SC_ROTATE)
		big_alloc(&r);
	else if (idx % 2 == 1 && O.threads > 1)
		run_on(1 + (idx / 2) % (O.threads - 1), big_alloc, &r);
	else if (pthread_create(&t, NULL, big_thread, &r) ||
		 pthread_join(t, NULL))
		die("pthread_create failed (rotate)");
	return r.p;
}

/* ------------------------------------------------------------- spike */

/* One proof allocates spike_bytes of small objects (16 B - 4 KiB, the
 * bookkeeping sizes) on every thread, holds them through the LDE and frees
 * them (any thread may free any task's list): the RSS of the proofs after it
 * shows what the allocator gives back, and when. */
#define SPIKE_TASKS 64

struct spike_obj {
	struct spike_obj *next;
	uint32_t len; /* bytes of data[] */
	uint32_t seed;
	unsigned char data[];
};

struct spike_ctx {
	struct spike_obj *head[SPIKE_TASKS];
	size_t per_task;
};

static _Atomic uint64_t spike_sum;

static void spike_alloc_task(void *ctx, uint32_t t)
{
	struct spike_ctx *c = ctx;
	struct spike_obj *head = NULL;
	uint64_t id = (uint64_t)t << 32;
	for (size_t used = 0; used < c->per_task;) {
		size_t sz = rec_size(id++); /* >= 16 = the header */
		struct spike_obj *o = xalloc(S_SMALL, sz);
		o->len = (uint32_t)(sz - sizeof *o);
		o->seed = (uint32_t)id;
		memset(o->data, (int)(id & 0xff), o->len);
		o->next = head;
		head = o;
		used += sz;
	}
	c->head[t] = head;
}

static void spike_free_task(void *ctx, uint32_t t)
{
	struct spike_ctx *c = ctx;
	uint64_t s = 0;
	for (struct spike_obj *o = c->head[t], *next; o; o = next) {
		next = o->next;
		uint32_t b = 0;
		for (uint32_t j = 0; j < o->len; j++)
			b += o->data[j];
		s = mix64(s ^ o->seed ^ ((uint64_t)b << 32));
		xfree(S_SMALL, o, sizeof *o + o->len);
	}
	atomic_fetch_add_explicit(&spike_sum, s, memory_order_relaxed);
}

/* One proof of 2^log_n rows (2^(log_n+1) after extension); idx counts
 * proofs from 0. Returns its checksum. Everything it allocates is freed
 * before it returns, except its kept output (freed by the next proof). */
static uint64_t prove(unsigned idx, unsigned log_n, uint64_t seed)
{
	size_t n = (size_t)1 << log_n, rows = 2 * n, W = O.width;
	uint64_t ck = seed;
	ck = mix64(ck ^ keep_check()); /* a phase after it was made */
	proof_seed = mix64(seed + 0x1234);
	atomic_store(&rec_next, 0);

	/* trace: allocated once at its extended size, first half filled */
	uint32_t *trace = alloc_trace(rows * W * 4, idx);
	if (O.grow) {
		size_t width = W;
		struct grow_ctx g = {trace,	    n,	   W, O.threads, true,
				     gen_trace_row, &width};
		run(grow_task, &g, g.nseg);
	} else {
		struct fill_ctx f = {trace, n, W, 0};
		f.per_task = TASK_BYTES / (W * 8) ? TASK_BYTES / (W * 8) : 1;
		run(fill_task, &f, ceil_div(n, f.per_task));
	}

	static struct spike_ctx sc;
	bool spike = O.scenario == SC_SPIKE && idx + 1 == O.spike_at;
	if (spike) {
		sc.per_task = O.spike_bytes / SPIKE_TASKS;
		run(spike_alloc_task, &sc, SPIKE_TASKS);
	}

	/* LDE in place */
	uint32_t *tw = twiddles(S_TW, rows);
	ntt(trace, rows, W, tw);

	/* commit: Merkle tree over the rows */
	struct merkle tm;
	merkle_build(&tm, S_TMERKLE, trace, rows, W);
	ck = mix64(ck ^ merkle_root(&tm));
	if (spike) {
		run(spike_free_task, &sc, SPIKE_TASKS);
		ck = mix64(ck ^ atomic_exchange(&spike_sum, 0));
	}
	ck = mix64(ck ^ keep_make(idx + 1, tm.layer[0], tm.len[0] * 8));

	/* quotient */
	struct quot_ctx qc = {.trace = trace, .rows = rows, .width = W};
	for (unsigned l = 0; l < 16; l++)
		qc.alpha[l] = f_rand(proof_seed, 1, l);
	for (unsigned l = 0; l < 4; l++)
		qc.zeta[l] = f_rand(proof_seed, 2, l);
	qc.q = xcalloc(S_Q, rows * 16);
	run(quot_task, &qc, ceil_div(rows, QTASK_ROWS));

	/* quotient chunks, each extended and committed */
	struct chunk_ctx cc = {.q = qc.q, .crows = rows / NCHUNKS};
	for (unsigned c = 0; c < NCHUNKS; c++)
		cc.chunk[c] = xalloc(S_CHUNK + (int)c, cc.crows * 16);
	run(chunk_fill_task, &cc, NCHUNKS);
	xfree(S_Q, qc.q, rows * 16);
	uint32_t *tw2 = twiddles(S_TW_CHUNK, cc.crows);
	for (unsigned c = 0; c < NCHUNKS; c++)
		ntt(cc.chunk[c], cc.crows, 4, tw2);
	xfree(S_TW_CHUNK, tw2, twiddles_bytes(cc.crows));
	struct merkle cm[NCHUNKS]; /* kept for the openings */
	for (unsigned c = 0; c < NCHUNKS; c++) {
		merkle_build(&cm[c], S_CMERKLE + (int)c * MAX_LAYERS,
			     cc.chunk[c], cc.crows, 4);
		ck = mix64(ck ^ merkle_root(&cm[c]));
	}

	/* FRI input: the chunks interleaved and combined */
	struct f0_ctx fc = {cc.chunk, cc.crows, {0}};
	for (unsigned l = 0; l < 4; l++)
		fc.gamma[l] = f_rand(proof_seed, 3, l);
	uint32_t *f = xalloc(S_F0, rows * 16);
	if (O.grow) {
		struct grow_ctx g = {f,	    rows,	4,  O.threads,
				     false, gen_f0_row, &fc};
		run(grow_task, &g, g.nseg);
	} else {
		struct f0_fill_ctx fx = {&fc, f, rows, TASK_BYTES / 16};
		run(f0_task, &fx, ceil_div(rows, fx.per_task));
	}
	int fslot = S_F0;

	/* FRI rounds: fold, commit, sample queries from the previous round,
	 * then free it */
	struct merkle fm = {.nlayers = 0};
	size_t len = rows;
	for (unsigned r = 1; len > ((size_t)1 << FRI_FINAL_LOG); r++) {
		struct fold_ctx fo = {
		    .src = f, .len = len / 2, .per_task = TASK_BYTES / 16};
		for (unsigned l = 0; l < 4; l++)
			fo.beta[l] = f_rand(proof_seed, 100 + r, l);
		int nslot = S_FOLD + (int)(r & 1);
		fo.dst = xalloc(nslot, fo.len * 16);
		if (fo.len <= fo.per_task)
			fold_task(&fo, 0);
		else
			run(fold_task, &fo, ceil_div(fo.len, fo.per_task));
		struct merkle nm;
		/* leaves hash pairs of elements: 8 u32 */
		merkle_build(&nm, S_FMERKLE + (int)(r & 1) * MAX_LAYERS, fo.dst,
			     fo.len / 2, 8);
		ck = mix64(ck ^ merkle_root(&nm));
		for (unsigned qi = 0; qi < FRI_QUERIES; qi++) {
			size_t at = mix64(proof_seed ^ (r * 1000 + qi)) % len;
			ck = mix64(ck ^ f[at * 4] ^
				   ((uint64_t)f[at * 4 + 3] << 32));
			if (fm.nlayers)
				ck = mix64(
				    ck ^ fm.layer[0][(at / 2 % fm.len[0]) * 8]);
		}
		merkle_free(&fm);
		xfree(fslot, f, len * 16);
		fm = nm;
		f = fo.dst;
		fslot = nslot;
		len = fo.len;
	}
	for (size_t i = 0; i < len * 4; i++) /* final polynomial */
		ck = mix64(ck ^ f[i]);
	merkle_free(&fm);
	xfree(fslot, f, len * 16);

	/* openings: a few trace rows, then release the commitments */
	for (unsigned qi = 0; qi < FRI_QUERIES; qi++) {
		size_t at = mix64(proof_seed ^ (7000 + qi)) % rows;
		uint32_t d[8];
		digest(trace + at * W, W, d);
		ck = mix64(ck ^ d[0] ^ tm.layer[0][at * 8]);
		size_t ca = at % cc.crows;
		ck = mix64(ck ^ cm[at % NCHUNKS].layer[0][ca * 8]);
	}
	for (unsigned c = 0; c < NCHUNKS; c++)
		merkle_free(&cm[c]);
	for (unsigned c = 0; c < NCHUNKS; c++)
		xfree(S_CHUNK + (int)c, cc.chunk[c], cc.crows * 16);
	merkle_free(&tm);
	xfree(S_TW, tw, twiddles_bytes(rows));
	xfree(S_TRACE, trace, rows * W * 4);

	/* records the tasks did not get to (the count is exact per proof) */
	while (atomic_load(&rec_next) < rec_limit)
		bookkeeping(0);
	/* bookkeeping maps die with the proof */
	for (unsigned t = 0; t < O.threads; t++)
		map_clear(maps[t]);
	ck = mix64(ck ^ atomic_load(&small_sum));
	atomic_store(&small_sum, 0);
	return ck;
}

/* ------------------------------------------------- ideal mode sizing */

static void slot_need(int s, size_t n)
{
	if (n > slots[s].cap)
		slots[s].cap = n;
}

static void merkle_need(int slot, size_t leaves)
{
	for (unsigned k = 0; leaves >= 1 && k < MAX_LAYERS; k++) {
		slot_need(slot + (int)k, leaves * 32);
		if (leaves == 1)
			break;
		leaves /= 2;
	}
}

/* Mirrors prove(): the largest size every slot will be asked for. */
static void ideal_plan(unsigned log_n)
{
	size_t n = (size_t)1 << log_n, rows = 2 * n, W = O.width;
	slot_need(S_TRACE, rows * W * 4);
	slot_need(S_TW, rows / 2 * 4);
	merkle_need(S_TMERKLE, rows);
	slot_need(S_Q, rows * 16);
	for (unsigned t = 0; t < O.threads; t++)
		slot_need(S_QTMP + (int)t, QTASK_ROWS * 32);
	size_t crows = rows / NCHUNKS;
	for (unsigned c = 0; c < NCHUNKS; c++)
		slot_need(S_CHUNK + (int)c, crows * 16);
	slot_need(S_TW_CHUNK, (crows / 2 ? crows / 2 : 1) * 4);
	for (unsigned c = 0; c < NCHUNKS; c++)
		merkle_need(S_CMERKLE + (int)c * MAX_LAYERS, crows);
	slot_need(S_F0, rows * 16);
	slot_need(S_FOLD + 1, rows / 2 * 16); /* odd rounds */
	slot_need(S_FOLD + 0, rows / 4 * 16);
	merkle_need(S_FMERKLE + MAX_LAYERS, rows / 4);
	merkle_need(S_FMERKLE, rows / 8);
	slot_need(S_KEEP, O.keep_bytes / 4 * 4);
	slot_need(S_KEEP + 1, O.keep_bytes / 4 * 4);
	if (O.grow)
		for (unsigned s = 0; s < O.threads; s++) {
			size_t a =
			    n * W * (s + 1) / O.threads - n * W * s / O.threads;
			size_t b = rows * 4 * (s + 1) / O.threads -
				   rows * 4 * s / O.threads;
			slot_need(S_GROW + (int)s, (a > b ? a : b) * 4 + 64);
		}
}

static size_t tasks_estimate(unsigned log_n);

static void ideal_setup(const unsigned *sizes, unsigned k)
{
	size_t total = 0, small = 0;
	if (O.scenario == SC_COLUMNS) { /* only the kept output is a slot */
		slot_need(S_KEEP, O.keep_bytes / 4 * 4);
		slot_need(S_KEEP + 1, O.keep_bytes / 4 * 4);
		small = (size_t)1 << 20;
		columns_ideal_setup();
		k = 0;
	}
	for (unsigned i = 0; i < k; i++) {
		ideal_plan(sizes[i]);
		/* small pool: records + queue nodes + map bucket arrays (their
		 * doubling sums to < 2x the final array) */
		size_t s = 0;
		proof_seed = mix64((uint64_t)(i + 1) * 0x51ed27 + 0x1234);
		for (uint64_t id = 0; id < rec_limit; id++)
			s += (rec_size(id) + 15) & ~(size_t)15;
		s += tasks_estimate(sizes[i]) * 2 * NODE_BYTES;
		size_t nb = 16;
		while (nb < rec_limit)
			nb *= 2;
		s += O.threads * nb * 8 * 2 + ((size_t)1 << 20);
		if (O.scenario == SC_SPIKE) /* + 16 B rounding per object */
			s += O.spike_bytes + O.spike_bytes / 8 +
			     SPIKE_TASKS * 4096;
		if (s > small)
			small = s;
	}
	for (int s = 1; s < NSLOTS; s++) {
		if (!slots[s].cap)
			continue;
		slots[s].p = malloc(slots[s].cap);
		if (!slots[s].p)
			die("ideal: cannot allocate slots");
		memset(slots[s].p, 0x5a, slots[s].cap); /* pre-fault */
		total += slots[s].cap;
	}
	pool_cap = small;
	pool = malloc(pool_cap);
	if (!pool)
		die("ideal: cannot allocate the small pool");
	memset(pool, 0x5a, pool_cap);
	if (!O.quiet)
		printf("# ideal: %.1f MiB of slots + %.1f MiB small pool, "
		       "pre-faulted\n",
		       total / 1048576.0, small / 1048576.0);
}

/* Tasks of one proof (queue nodes); an over-estimate is harmless. */
static size_t tasks_estimate(unsigned log_n)
{
	size_t rows = (size_t)2 << log_n, W = O.width;
	unsigned levels = log_n + 1;
	size_t t = O.threads * 2 + NCHUNKS + 64;
	t += rows / 2 / (TASK_BYTES / (W * 8) ? TASK_BYTES / (W * 8) : 1) + 1;
	t += (levels / 4 + 1) * (rows * W * 4 / TASK_BYTES + 2);
	t += 2 * (rows * W * 4 / TASK_BYTES + 2); /* leaves, layers */
	t += rows / QTASK_ROWS + 1;
	t +=
	    (NCHUNKS + 1) * (levels / 4 + 1) * (rows * 16 / TASK_BYTES + 4) * 2;
	t += 4 * (rows * 16 / TASK_BYTES + 4) * 2; /* f0, folds, merkles */
	t += 64 * levels;
	return t;
}

/* ------------------------------------------------------- measurement */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static long minflt(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_minflt;
}

/* user + system CPU seconds of the process: less sensitive than wall time to
 * other work on the machine */
static double cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
	       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

/* VmHWM / VmRSS in KiB, from /proc/self/status */
static long status_kib(const char *key)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;
	size_t kl = strlen(key);
	if (!f)
		return -1;
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, key, kl) && line[kl] == ':') {
			v = strtol(line + kl + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

/* Reset VmHWM to the current RSS (Linux >= 4.0), so each proof's peak is its
 * own. Returns false if the kernel refused. */
static bool reset_hwm(void)
{
	FILE *f = fopen("/proc/self/clear_refs", "w");
	if (!f)
		return false;
	bool ok = fputs("5", f) >= 0;
	return fclose(f) == 0 && ok;
}

/* Machine load during the run, so that wall times taken on a busy machine
 * can be flagged. Every 0.5 s a thread counts the runnable tasks of the
 * machine (procs_running) and those of this process (threads in state R),
 * itself excluded from both. The run's load is the mean of
 * min(own, CPUs) + others: oversubscribing our own workers (64 threads on 2
 * CPUs) is not load, other processes' work is. */
static struct {
	pthread_t th;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stop;
	double sum_load, sum_other;
	long n;
} ld = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};
static long ncpu;

static int procs_running(void)
{
	FILE *f = fopen("/proc/stat", "r");
	char line[256];
	int v = -1;
	if (!f)
		return -1;
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, "procs_running ", 14)) {
			v = atoi(line + 14);
			break;
		}
	fclose(f);
	return v;
}

static int own_running(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;
	if (!d)
		return -1;
	while ((e = readdir(d))) {
		char path[300], buf[512];
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "/proc/self/task/%s/stat",
			 e->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue; /* the thread just exited */
		size_t k = fread(buf, 1, sizeof buf - 1, f);
		fclose(f);
		buf[k] = 0;
		const char *p = strrchr(buf, ')'); /* "pid (comm) S ..." */
		if (p && p[1] == ' ' && p[2] == 'R')
			n++;
	}
	closedir(d);
	return n;
}

static void *load_sampler(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&ld.lock);
	while (!ld.stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 500000000;
		if (ts.tv_nsec >= 1000000000)
			ts.tv_sec++, ts.tv_nsec -= 1000000000;
		pthread_cond_timedwait(&ld.wake, &ld.lock, &ts);
		if (ld.stop)
			break;
		int all = procs_running(), own = own_running();
		if (all < 1 || own < 1)
			continue;
		double o = own - 1, other = all - own; /* minus the sampler */
		if (other < 0)
			other = 0;
		ld.sum_load += (o < ncpu ? o : ncpu) + other;
		ld.sum_other += other;
		ld.n++;
	}
	pthread_mutex_unlock(&ld.lock);
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;
	return x < y ? -1 : x > y;
}

/* --------------------------------------------------------------- main */

/* why, what: the reason, and the argument it is about (or NULL) */
static void usage(const char *why, const char *what)
{
	if (why)
		fprintf(stderr, "zkbench-prover: %s%s%s%s\n", why,
			what ? " '" : "", what ? what : "", what ? "'" : "");
	fprintf(
	    stderr,
	    "usage: zkbench-prover [--mode malloc|ideal|zk] "
	    "[--preset small|medium|default|large|vary|grow]\n"
	    "       [--scenario steady|rotate|spike|columns] [--threads T] "
	    "[--proofs K]\n"
	    "       [--log-n L] [--width W] [--small S] [--keep-mib M] "
	    "[--keep-damage]\n"
	    "       [--vec-mib M] [--columns C] (columns: per worker)\n"
	    "       [--spike-mib M] [--spike-at P] [--label NAME] [--csv FILE] "
	    "[--summary FILE]\n"
	    "       [--quiet]\n"
	    "Runs K proofs of an FFT/FRI-shaped workload and prints per-proof "
	    "wall time,\nminor faults and RSS, then the warm median and the "
	    "checksum.\n");
	exit(2);
}

static const char *mode_name(enum mode m)
{
	return m == MODE_ZK ? "zk" : m == MODE_IDEAL ? "ideal" : "malloc";
}

static const char *scenario_name(enum scenario s)
{
	return s == SC_ROTATE	 ? "rotate"
	       : s == SC_SPIKE	 ? "spike"
	       : s == SC_COLUMNS ? "columns"
				 : "steady";
}

/* how the kept output is allocated */
static const char *keep_via_name(void)
{
	if (!O.keep_bytes)
		return "none";
	if (O.mode == MODE_IDEAL)
		return "preallocated";
	if (O.mode == MODE_MALLOC)
		return "realloc";
	return "zk_realloc";
}

static void parse(int argc, char **argv)
{
	long nthreads = sysconf(_SC_NPROCESSORS_ONLN);
	O.mode = MODE_MALLOC;
	O.preset = "default";
	O.threads = nthreads > 0 ? (unsigned)nthreads : 1;
	O.proofs = 6;
	unsigned log_n = 0, width = 0, small = 0;
	int vec_mib = -1, ncols = -1; /* -1: the preset's */
	int keep_mib = -1;	      /* -1: 1/32 of the trace */
	O.spike_bytes = (size_t)256 << 20;
	O.spike_at = 4;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--quiet")) {
			O.quiet = true;
			continue;
		}
		if (!strcmp(a, "--keep-damage")) {
			O.keep_damage = true;
			continue;
		}
		if (!strcmp(a, "--help") || !v)
			usage(strcmp(a, "--help") ? "no value after" : NULL, a);
		i++;
		if (!strcmp(a, "--mode")) {
			if (!strcmp(v, "malloc"))
				O.mode = MODE_MALLOC;
			else if (!strcmp(v, "ideal"))
				O.mode = MODE_IDEAL;
			else if (!strcmp(v, "zk"))
				O.mode = MODE_ZK;
			else
				usage("unknown --mode", v);
		} else if (!strcmp(a, "--scenario")) {
			if (!strcmp(v, "steady"))
				O.scenario = SC_STEADY;
			else if (!strcmp(v, "rotate"))
				O.scenario = SC_ROTATE;
			else if (!strcmp(v, "spike"))
				O.scenario = SC_SPIKE;
			else if (!strcmp(v, "columns"))
				O.scenario = SC_COLUMNS;
			else if (!strcmp(v, "columns"))
				O.scenario = SC_COLUMNS;
			else
				usage("unknown --scenario", v);
		} else if (!strcmp(a, "--keep-mib"))
			keep_mib = atoi(v);
		else if (!strcmp(a, "--spike-mib"))
			O.spike_bytes = (size_t)atoi(v) << 20;
		else if (!strcmp(a, "--spike-at"))
			O.spike_at = (unsigned)atoi(v);
		else if (!strcmp(a, "--preset"))
			O.preset = v;
		else if (!strcmp(a, "--threads"))
			O.threads = (unsigned)atoi(v);
		else if (!strcmp(a, "--proofs"))
			O.proofs = (unsigned)atoi(v);
		else if (!strcmp(a, "--log-n"))
			log_n = (unsigned)atoi(v);
		else if (!strcmp(a, "--width"))
			width = (unsigned)atoi(v);
		else if (!strcmp(a, "--small"))
			small = (unsigned)atoi(v);
		else if (!strcmp(a, "--vec-mib"))
			vec_mib = atoi(v);
		else if (!strcmp(a, "--columns"))
			ncols = atoi(v);
		else if (!strcmp(a, "--label"))
			O.label = v;
		else if (!strcmp(a, "--csv"))
			O.csv = v;
		else if (!strcmp(a, "--summary"))
			O.summary = v;
		else
			usage("unknown option", a);
	}
#ifndef WITH_ZKALLOC
	if (O.mode == MODE_ZK)
		die("this binary has no zkalloc: use zkbench-prover-zk");
#endif
	/* presets: rows before extension (2^log_n), columns, small allocs;
	 * for the columns scenario the same per worker, its vector (MiB) and
	 * its 1 MiB columns */
	O.width = 1300;
	if (O.scenario == SC_COLUMNS) {
		O.vec_bytes = (size_t)32 << 20;
		if (!strcmp(O.preset, "small"))
			O.log_n = 10, O.width = 16, O.small = 300,
			O.vec_bytes = (size_t)4 << 20, O.ncols = 4;
		else if (!strcmp(O.preset, "medium"))
			O.log_n = 13, O.width = 64, O.small = 2000,
			O.ncols = 16;
		else if (!strcmp(O.preset, "default"))
			O.log_n = 14, O.width = 64, O.small = 4000,
			O.ncols = 32;
		else if (!strcmp(O.preset, "large"))
			O.log_n = 15, O.width = 64, O.small = 8000,
			O.ncols = 64;
		else
			usage("the columns scenario takes --preset small, "
			      "medium, default or large, not",
			      O.preset);
	} else if (!strcmp(O.preset, "small"))
		O.log_n = 14, O.small = 20000;
	else if (!strcmp(O.preset, "medium"))
		O.log_n = 16, O.small = 50000;
	else if (!strcmp(O.preset, "default"))
		O.log_n = 18, O.small = 50000;
	else if (!strcmp(O.preset, "large"))
		O.log_n = 20, O.small = 100000;
	else if (!strcmp(O.preset, "vary"))
		O.log_n = 17, O.small = 50000, O.vary = true;
	else if (!strcmp(O.preset, "grow"))
		O.log_n = 17, O.small = 50000, O.grow = true;
	else
		usage("unknown --preset", O.preset);
	if (log_n)
		O.log_n = log_n;
	if (width)
		O.width = width;
	if (small)
		O.small = small;
	if (vec_mib >= 0)
		O.vec_bytes = (size_t)vec_mib << 20;
	if (ncols >= 0)
		O.ncols = (unsigned)ncols;
	if (O.threads < 1 || O.threads > MAX_THREADS || O.proofs < 1 ||
	    O.proofs > MAX_PROOFS || O.log_n < 8 || O.log_n > 26 ||
	    O.width < 1 || O.width > 100000 || O.small < 16 || keep_mib < -1 ||
	    keep_mib > 4096 || O.spike_bytes < ((size_t)1 << 20) ||
	    O.spike_bytes > ((size_t)64 << 30) ||
	    (O.scenario == SC_SPIKE &&
	     (O.spike_at < 2 || O.spike_at > O.proofs)) ||
	    (O.scenario == SC_COLUMNS &&
	     (O.vec_bytes < ((size_t)1 << 20) ||
	      O.vec_bytes > ((size_t)4 << 30) || O.ncols < 1 || O.ncols > 256)))
		usage("a value is out of range (threads 1-256, proofs 1-1000, "
		      "log-n 8-26, width 1-100000, small >= 16, keep-mib <= "
		      "4096, spike-mib 1-65536, spike-at 2..proofs, vec-mib "
		      "1-4096, columns 1-256)",
		      NULL);
	/* the kept output: 1/32 of the trace, 2-64 MiB, unless given */
	size_t trace_bytes = ((size_t)2 << O.log_n) * O.width * 4;
	O.keep_bytes =
	    keep_mib >= 0 ? (size_t)keep_mib << 20 : trace_bytes / 32;
	if (keep_mib < 0 && O.keep_bytes < ((size_t)2 << 20))
		O.keep_bytes = (size_t)2 << 20;
	if (keep_mib < 0 && O.keep_bytes > ((size_t)64 << 20))
		O.keep_bytes = (size_t)64 << 20;
	if (!O.label)
		O.label = mode_name(O.mode);
}

int main(int argc, char **argv)
{
	parse(argc, argv);
	unsigned sizes[MAX_PROOFS];
	static const int vary_step[3] = {0, -1, 1}; /* N, N/2, 2N, N, ... */
	for (unsigned i = 0; i < O.proofs; i++)
		sizes[i] = O.vary ? (unsigned)((int)O.log_n + vary_step[i % 3])
				  : O.log_n;
	rec_limit = O.small;
	rec_per_task = (uint32_t)(rec_limit / tasks_estimate(O.log_n) * 2 + 1);
	for (unsigned t = 0; t < O.threads; t++) {
		maps[t] = calloc(1, sizeof *maps[t]);
		if (!maps[t])
			die("out of memory");
	}
	if (O.scenario == SC_COLUMNS)
		columns_setup();
	if (O.mode == MODE_IDEAL)
		ideal_setup(sizes, O.proofs);
	pool_start();
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	if (ncpu < 1)
		ncpu = 1;
	if (pthread_create(&ld.th, NULL, load_sampler, NULL))
		die("pthread_create failed (load sampler)");

	FILE *csv = NULL, *sum = NULL;
	if (O.csv) {
		csv = fopen(O.csv, "a");
		if (!csv)
			die("cannot open the --csv file");
		if (ftell(csv) == 0)
			fprintf(csv,
				"label,mode,preset,threads,proof,log_n,width,"
				"wall_s,minflt,rss_end_mib,proof_peak_mib,"
				"checksum,cpu_s,scenario,live_peak_mib\n");
	}
	if (O.summary) {
		sum = fopen(O.summary, "a");
		if (!sum)
			die("cannot open the --summary file");
		if (ftell(sum) == 0)
			fprintf(sum,
				"label,mode,preset,threads,proofs,log_n,width,"
				"warm_median_s,cold_s,warm_minflt,"
				"peak_rss_mib,rss_growth_mib,checksum,"
				"warm_cpu_s,scenario,keep_ok,keep_mib,load,"
				"load_other,cpus,steady_rss_mib,"
				"spike_rss_mib,spike_peak_mib,recover_phases,"
				"final_rss_mib,keep_via,live_peak_mib\n");
	}
	if (!O.quiet) {
		printf("# zkbench-prover mode=%s label=%s preset=%s "
		       "scenario=%s threads=%u proofs=%u log_n=%u width=%u "
		       "small=%u keep=%.1f MiB (%s)\n",
		       mode_name(O.mode), O.label, O.preset,
		       scenario_name(O.scenario), O.threads, O.proofs, O.log_n,
		       O.width, O.small, O.keep_bytes / 1048576.0,
		       keep_via_name());
		if (O.scenario == SC_SPIKE)
			printf("# spike: %.0f MiB of small objects in proof "
			       "%u\n",
			       O.spike_bytes / 1048576.0, O.spike_at);
		if (O.scenario == SC_COLUMNS)
			printf("# columns, per worker: trace 2^%u x %u, vector "
			       "%.0f MiB, %u columns of 1 MiB, %u records\n",
			       O.log_n + 1, O.width, O.vec_bytes / 1048576.0,
			       O.ncols, O.small);
		printf("%-6s %-6s %9s %10s %9s %9s %9s %10s  %s\n", "proof",
		       "log_n", "wall_s", "minflt", "rss_MiB", "peak_MiB",
		       "live_MiB", "", "checksum");
	}
	double wall[MAX_PROOFS], cpu[MAX_PROOFS];
	long flt[MAX_PROOFS], rss[MAX_PROOFS], peak[MAX_PROOFS];
	size_t livepk[MAX_PROOFS]; /* bytes: the workload's own live peak */
	uint64_t total = 0;
	bool hwm_ok = true;
	for (unsigned i = 0; i < O.proofs; i++) {
		hwm_ok = reset_hwm() && hwm_ok;
		long f0 = minflt();
		double c0 = cpu_s();
		double t0 = now_s();
		atomic_store(&ntasks_run, 0);
		if (O.mode == MODE_IDEAL)
			ideal_rewind();
		live_reset_peak();
#ifdef WITH_ZKALLOC
		if (O.mode == MODE_ZK && zk_begin_phase() != 0)
			die("zk_begin_phase failed");
#endif
		uint64_t seed = (uint64_t)(i + 1) * 0x51ed27;
		uint64_t ck = O.scenario == SC_COLUMNS
				  ? columns_prove(i, seed)
				  : prove(i, sizes[i], seed);
#ifdef WITH_ZKALLOC
		if (O.mode == MODE_ZK)
			zk_end_phase();
#endif
		wall[i] = now_s() - t0;
		cpu[i] = cpu_s() - c0;
		flt[i] = minflt() - f0;
		rss[i] = status_kib("VmRSS");
		peak[i] = status_kib("VmHWM");
		livepk[i] = live_peak();
		total = mix64(total ^ ck);
		if (!O.quiet) {
			printf("%-6u %-6u %9.3f %10ld %9.1f %9.1f %9.1f %10s  "
			       "%016" PRIx64 "\n",
			       i + 1, sizes[i], wall[i], flt[i],
			       rss[i] / 1024.0, peak[i] / 1024.0,
			       livepk[i] / 1048576.0,
			       i == 0 ? "(cold)"
			       : O.scenario == SC_SPIKE && i + 1 == O.spike_at
				   ? "(spike)"
				   : "",
			       ck);
			fflush(stdout);
		}
		if (csv) {
			fprintf(csv,
				"%s,%s,%s,%u,%u,%u,%u,%.4f,%ld,%.1f,%.1f,"
				"%016" PRIx64 ",%.4f,%s,%.1f\n",
				O.label, mode_name(O.mode), O.preset, O.threads,
				i + 1, sizes[i], O.width, wall[i], flt[i],
				rss[i] / 1024.0, peak[i] / 1024.0, ck, cpu[i],
				scenario_name(O.scenario),
				livepk[i] / 1048576.0);
			fflush(csv);
		}
	}
	/* the last proof's output, checked a phase later like the others */
#ifdef WITH_ZKALLOC
	if (O.mode == MODE_ZK && zk_begin_phase() != 0)
		die("zk_begin_phase failed");
#endif
	total = mix64(total ^ keep_check());
#ifdef WITH_ZKALLOC
	if (O.mode == MODE_ZK)
		zk_end_phase();
#endif
	pthread_mutex_lock(&ld.lock);
	ld.stop = true;
	pthread_cond_signal(&ld.wake);
	pthread_mutex_unlock(&ld.lock);
	pthread_join(ld.th, NULL);
	double load = ld.n ? ld.sum_load / ld.n : -1;
	double load_other = ld.n ? ld.sum_other / ld.n : -1;
	/* spike: RSS at the end of the proof before the spike (steady state),
	 * of the spike proof, and the first proof after it back within 1.2 x
	 * the steady state (0: never within this run) */
	double steady_rss = 0, spike_rss = 0, spike_peak = 0, final_rss = 0;
	int recover = 0;
	if (O.scenario == SC_SPIKE) {
		unsigned s = O.spike_at - 1; /* index of the spike proof */
		steady_rss = rss[s - 1] / 1024.0;
		spike_rss = rss[s] / 1024.0;
		spike_peak = peak[s] / 1024.0;
		for (unsigned j = s + 1; j < O.proofs && !recover; j++)
			if (rss[j] / 1024.0 <= 1.2 * steady_rss)
				recover = (int)(j - s);
		final_rss = rss[O.proofs - 1] / 1024.0;
	}

	/* warm: proofs 2..K (proof 1 is cold) */
	unsigned nw = O.proofs > 1 ? O.proofs - 1 : 1;
	double ws[MAX_PROOFS], wc[MAX_PROOFS];
	long wf[MAX_PROOFS];
	for (unsigned i = 0; i < nw; i++) {
		ws[i] = wall[O.proofs > 1 ? i + 1 : 0];
		wc[i] = cpu[O.proofs > 1 ? i + 1 : 0];
		wf[i] = flt[O.proofs > 1 ? i + 1 : 0];
	}
	qsort(ws, nw, sizeof ws[0], cmp_double);
	qsort(wc, nw, sizeof wc[0], cmp_double);
	qsort(wf, nw, sizeof wf[0], cmp_long);
	double wmed = nw % 2 ? ws[nw / 2] : (ws[nw / 2 - 1] + ws[nw / 2]) / 2;
	long fmed = nw % 2 ? wf[nw / 2] : (wf[nw / 2 - 1] + wf[nw / 2]) / 2;
	double cmed = nw % 2 ? wc[nw / 2] : (wc[nw / 2 - 1] + wc[nw / 2]) / 2;
	long hwm = status_kib("VmHWM");
	long maxpeak = 0;
	for (unsigned i = 0; i < O.proofs; i++)
		if (peak[i] > maxpeak)
			maxpeak = peak[i];
	if (!hwm_ok || hwm > maxpeak)
		maxpeak = hwm; /* clear_refs unavailable: process peak */
	size_t maxlive_b = 0;
	for (unsigned i = 0; i < O.proofs; i++)
		if (livepk[i] > maxlive_b)
			maxlive_b = livepk[i];
	double maxlive = maxlive_b / 1048576.0;
	/* RSS growth: the last proof's end-of-proof RSS against the first warm
	 * proof of the same size */
	double growth = 0;
	for (unsigned i = 1; i + 1 < O.proofs; i++)
		if (sizes[i] == sizes[O.proofs - 1]) {
			growth = (rss[O.proofs - 1] - rss[i]) / 1024.0;
			break;
		}
	if (!O.quiet) {
		printf(
		    "# warm median %.3f s (CPU %.3f s), cold %.3f s, warm "
		    "faults (median) %ld, peak RSS %.1f MiB (%.2f x the live "
		    "peak %.1f MiB), RSS growth %.1f MiB\n",
		    wmed, cmed, wall[0], fmed, maxpeak / 1024.0,
		    maxlive > 0 ? maxpeak / 1024.0 / maxlive : 0.0, maxlive,
		    growth);
		printf("# kept realloc outputs: %s; machine load %.2f (others "
		       "%.2f) on %ld CPUs\n",
		       keep_ok ? "intact" : "CORRUPTED", load, load_other,
		       ncpu);
		if (O.scenario == SC_SPIKE)
			printf("# spike: RSS %.1f MiB before, %.1f MiB after "
			       "(peak %.1f), back within 1.2 x after %d "
			       "phase(s)%s, last %.1f MiB\n",
			       steady_rss, spike_rss, spike_peak, recover,
			       recover ? "" : " (never)", final_rss);
#ifdef WITH_ZKALLOC
		if (O.mode == MODE_ZK) {
			zk_stats_t st = {.size = sizeof st};
			if (zk_stats_get(&st) == 0)
				printf(
				    "# zkalloc: region %s, resident %.1f MiB, "
				    "top (high water) %.1f MiB, live %.1f MiB, "
				    "kept %" PRIu64 " blocks (%.1f MiB), "
				    "overflow %" PRIu64 " (%.1f MiB), hook "
				    "zeroed %.1f MiB, trims %" PRIu64
				    " (%.1f MiB), arenas %" PRIu64 "\n",
				    st.region_reserved ? "reserved" : "FAILED",
				    st.resident_bytes / 1048576.0,
				    st.top_bytes / 1048576.0,
				    st.live_bytes / 1048576.0, st.kept_blocks,
				    st.kept_bytes / 1048576.0,
				    st.overflow_count,
				    st.overflow_bytes / 1048576.0,
				    st.hook_zeroed_bytes / 1048576.0, st.trims,
				    st.trimmed_bytes / 1048576.0,
				    st.arenas_created);
		}
#endif
	}
	if (csv)
		fclose(csv);
	if (sum) {
		fprintf(sum,
			"%s,%s,%s,%u,%u,%u,%u,%.4f,%.4f,%ld,%.1f,%.1f,"
			"%016" PRIx64 ",%.4f,%s,%d,%.1f,%.2f,%.2f,%ld,%.1f,"
			"%.1f,%.1f,%d,%.1f,%s,%.1f\n",
			O.label, mode_name(O.mode), O.preset, O.threads,
			O.proofs, O.log_n, O.width, wmed, wall[0], fmed,
			maxpeak / 1024.0, growth, total, cmed,
			scenario_name(O.scenario), keep_ok,
			O.keep_bytes / 1048576.0, load, load_other, ncpu,
			steady_rss, spike_rss, spike_peak, recover, final_rss,
			keep_via_name(), maxlive);
		fclose(sum);
	}
	printf("live_peak_bytes %zu\n", maxlive_b);
	printf("checksum %016" PRIx64 "\n", total);
	pool_stop();
	return keep_ok ? 0 : 3;
}
