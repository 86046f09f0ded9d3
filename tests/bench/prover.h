/*
 * What the prover-shaped benchmark's two workloads share: options, the
 * BabyBear field, the digest, the allocation wrappers (which also keep the
 * live-bytes yardstick), the thread pool, the NTT and Merkle trees, and the
 * kept output. prover.c holds the FFT/FRI workload (steady, rotate, spike)
 * and main; columns.c the per-worker "columns" workload.
 */
#ifndef ZKBENCH_PROVER_H
#define ZKBENCH_PROVER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MAX_THREADS 256
#define MAX_LAYERS  40
#define TASK_BYTES  (4u << 20) /* bytes of a matrix a task works on */

enum mode { MODE_MALLOC, MODE_IDEAL, MODE_ZK };
enum scenario { SC_STEADY, SC_ROTATE, SC_SPIKE, SC_COLUMNS };

struct opts {
	enum mode mode;
	const char *preset;
	const char *label;   /* allocator name written to the CSV */
	const char *csv;     /* append one row per proof here */
	const char *summary; /* append one summary row here */
	unsigned threads;
	unsigned proofs;
	unsigned log_n; /* rows of the trace before extension: N = 2^log_n */
	unsigned width; /* columns of 4-byte field elements */
	unsigned small; /* bookkeeping allocations per proof */
	bool vary;	/* proof sizes N, N/2, 2N, N, ... */
	bool grow;	/* trace and FRI input collected by push-doubling */
	bool quiet;
	enum scenario scenario;
	size_t keep_bytes;  /* the kept realloc-grown output */
	bool keep_damage;   /* self-test: damage it; the check must see it */
	size_t spike_bytes; /* small objects of the spike proof */
	unsigned spike_at;  /* 1-based proof that spikes */
	/* columns scenario (columns.c): log_n, width and small are per
	 * worker, and so are these */
	size_t vec_bytes; /* the vector grown by doubling */
	unsigned ncols;	  /* 1 MiB columns (half replaced) */
};

extern struct opts O;

/* ---------------------------------------------------- the BabyBear field */

/* p = 15 * 2^27 + 1; values are kept in Montgomery form (R = 2^32).
 * Branch-free reductions (an unsigned min picks the reduced value) so that
 * the compiler vectorizes the loops, as a prover's SIMD code would. */
#define FP	2013265921u
#define FP_NINV 0x77ffffffu /* -p^-1 mod 2^32 */

static inline uint32_t umin32(uint32_t a, uint32_t b)
{
	return a < b ? a : b;
}

static inline uint32_t f_add(uint32_t a, uint32_t b)
{
	uint32_t s = a + b;
	return umin32(s, s - FP);
}

static inline uint32_t f_sub(uint32_t a, uint32_t b)
{
	uint32_t d = a - b;
	return umin32(d, d + FP);
}

static inline uint32_t f_mul(uint32_t a, uint32_t b)
{
	uint64_t t = (uint64_t)a * b;
	uint32_t m = (uint32_t)t * FP_NINV;
	uint32_t u = (uint32_t)((t + (uint64_t)m * FP) >> 32);
	return umin32(u, u - FP);
}

static inline uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

/* A field element derived from (seed, a, b), already reduced. */
static inline uint32_t f_rand(uint64_t seed, uint64_t a, uint64_t b)
{
	return (uint32_t)(mix64(seed ^ mix64(a * 0x9e3779b97f4a7c15ull + b)) %
			  FP);
}

/* Not cryptographic: every input word changes the 8-word output. */
void digest(const uint32_t *x, size_t n, uint32_t out[8]);

/* A 64-bit hash of n words (digest folded). */
uint64_t hash_u32(const uint32_t *v, size_t n);

/* ------------------------------------------------------ allocation sites */

/* Every allocation names a site (slot). In malloc and zk modes the slot is
 * ignored; ideal mode serves big buffers of the FFT/FRI workload from
 * slots pre-faulted before the first proof, small ones from a rewound
 * pre-faulted pool, and everything of the columns workload (S_SHARD) from
 * a rewound pre-faulted pool per thread. */
enum slot {
	S_SMALL = 0, /* bookkeeping: ideal serves it from the pool */
	S_SHARD,     /* columns workload: ideal serves it per thread */
	S_TRACE,
	S_TW,					/* twiddles of the trace LDE */
	S_TW_CHUNK,				/* twiddles of the chunk LDEs */
	S_Q,					/* quotient */
	S_F0,					/* FRI input */
	S_FOLD,					/* 2: ping-pong fold buffers */
	S_QTMP = S_FOLD + 2,			/* per thread */
	S_CHUNK = S_QTMP + MAX_THREADS,		/* NCHUNKS (4) */
	S_TMERKLE = S_CHUNK + 4,		/* MAX_LAYERS */
	S_CMERKLE = S_TMERKLE + MAX_LAYERS,	/* NCHUNKS x MAX_LAYERS */
	S_FMERKLE = S_CMERKLE + 4 * MAX_LAYERS, /* 2 x MAX_LAYERS */
	S_GROW = S_FMERKLE + 2 * MAX_LAYERS,	/* per segment */
	S_KEEP = S_GROW + MAX_THREADS, /* 2: kept outputs of odd/even proofs */
	NSLOTS = S_KEEP + 2,
};

/* The allocation wrappers. Each adds its size to, or subtracts it from,
 * the bytes the workload holds live (all threads), whatever the mode:
 * n, old and the size given to xfree are the sizes asked for, so the live
 * peak is the same yardstick under every allocator. xrealloc's old is the
 * size the block was allocated with. */
void *xalloc(int s, size_t n);
void *xcalloc(int s, size_t n);
void *xrealloc(int s, void *q, size_t old, size_t n);
void xfree(int s, void *p, size_t n);

/* The live-bytes yardstick: the sum of the sizes of the workload's live
 * blocks now, and its highest value since live_reset_peak(). */
void live_add(size_t n);
void live_sub(size_t n);
size_t live_now(void);
size_t live_peak(void);
void live_reset_peak(void);

/* Ideal mode, columns workload: per-thread pools of `bytes` each,
 * pre-faulted, rewound by ideal_rewind() at every proof. */
void ideal_thread_pools(size_t bytes);

_Noreturn void die(const char *what);

/* ---------------------------------------------------------- thread pool */

extern _Thread_local unsigned my_tid; /* 0 = main */
extern uint64_t proof_seed;	      /* of the proof being made */

typedef void (*task_fn)(void *ctx, uint32_t task);

/* Runs fn(ctx, tid) once on every thread of the pool (main = 0) and waits
 * for all of them. While fn runs, its thread is "serial": ntt() and
 * merkle_build() run their tasks inline instead of queueing them. */
void run_each(task_fn fn, void *ctx);

/* ------------------------------------------------------- NTT and Merkle */

/* Twiddles for an NTT of `rows` points (rows/2 words, from site slot). */
uint32_t *twiddles(int slot, size_t rows);
size_t twiddles_bytes(size_t rows);

/* Forward NTT over the rows of a row-major matrix, in place. */
void ntt(uint32_t *m, size_t rows, size_t width, const uint32_t *tw);

struct merkle {
	uint32_t *layer[MAX_LAYERS]; /* layer[0]: leaf digests, 8 u32 each */
	size_t len[MAX_LAYERS];
	unsigned nlayers;
	int slot; /* first slot of its layers */
};

/* Leaf digests of `rows` rows of `width` words, then halving layers. */
void merkle_build(struct merkle *t, int slot, const uint32_t *m, size_t rows,
		  size_t width);
uint64_t merkle_root(const struct merkle *t);
void merkle_free(struct merkle *t);

/* A bookkeeping record's size for id (16 B - 4 KiB), from proof_seed. */
size_t rec_size(uint64_t id);

/* ----------------------------------------------------- the kept output */

/* Grows this proof's output by realloc and keeps it past the phase;
 * keep_check() (at the start of the next proof) hashes it again, reports a
 * change and frees it. Both return the hash, for the checksum. */
uint64_t keep_make(unsigned proof, const uint32_t *leaves, size_t nl);
uint64_t keep_check(void);

/* ------------------------------------------------------------- columns */

/* columns.c: set up the per-worker state (before the first proof), size
 * ideal mode's pools, make one proof. */
void columns_setup(void);
void columns_ideal_setup(void);
uint64_t columns_prove(unsigned idx, uint64_t seed);

#endif
