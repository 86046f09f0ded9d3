/*
 * The "columns" workload: every worker proves its own shard, so what each
 * thread holds grows with the worker count (per worker, medium preset:
 * ~60 MiB live at the peak). Per proof and worker, in three stages that
 * every thread runs at once (run_each, a barrier between them):
 *
 *   A  a calloc'd trace of 2N x W words whose upper half the LDE relies on
 *      being zero; the LDE in place; a Merkle tree over its rows; a vector
 *      grown by doubling realloc to vec_bytes (32 MiB), one push at a time;
 *      `ncols` columns of 1 MiB made from it; bookkeeping records of
 *      16 B - 4 KiB;
 *   B  each worker takes its neighbour's shard (cross-thread frees): every
 *      other column is hashed, freed and replaced by a new 1 MiB column,
 *      every other record too;
 *   C  FRI over a combination of the columns and the trace leaves (a fold
 *      buffer half the size each round, a Merkle tree over each, the
 *      previous round's freed), openings, then everything is hashed and
 *      freed.
 *
 * Every byte written is read back into the shard's checksum; the proof's
 * checksum combines the shards in order, so it depends on the worker count
 * but never on the allocator.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prover.h"

#define COL_BYTES   ((size_t)1 << 20)
#define COL_WORDS   (COL_BYTES / 4)
#define MAX_COLS    256
#define FRI_FINAL   64 /* FRI stops at this many elements */
#define FRI_QUERIES 16

struct srec {
	uint32_t len; /* bytes of data[] */
	uint32_t seed;
	unsigned char data[];
};

struct shard {
	uint32_t *trace; /* 2N x W, calloc'd */
	uint32_t *tw;
	struct merkle tm;
	uint32_t *vec; /* grown by doubling */
	size_t vlen, vcap;
	uint32_t *col[MAX_COLS];
	struct srec **rec; /* O.small records */
	uint64_t ck;	   /* stages A and C, by the shard's own worker */
	uint64_t ck_b;	   /* stage B, by its neighbour */
};

static struct shard *sh; /* one per worker, made before the first proof */

static size_t rows_of(void)
{
	return (size_t)2 << O.log_n;
}

static size_t vec_words(void)
{
	return O.vec_bytes / 4;
}

void columns_setup(void)
{
	if (O.ncols > MAX_COLS)
		die("columns: at most 256 columns");
	sh = calloc(O.threads, sizeof *sh);
	if (!sh)
		die("out of memory");
}

/* ------------------------------------------------------------ records */

/* Record ids: shard w's first records are (w, i), their replacements
 * (w, O.small + i). */
static uint64_t rec_id(unsigned w, size_t i)
{
	return ((uint64_t)w << 32) | i;
}

static struct srec *rec_make(uint64_t id)
{
	size_t sz = rec_size(id); /* >= 16: the header fits */
	struct srec *r = xalloc(S_SHARD, sz);
	r->len = (uint32_t)(sz - sizeof *r);
	r->seed = (uint32_t)mix64(id ^ proof_seed);
	for (uint32_t j = 0; j < r->len; j++)
		r->data[j] = (unsigned char)((r->seed >> (8 * (j & 3))) + j);
	return r;
}

static uint64_t rec_drop(struct srec *r)
{
	uint64_t s = r->seed;
	for (uint32_t j = 0; j < r->len; j++)
		s = s * 31 + r->data[j];
	xfree(S_SHARD, r, sizeof *r + r->len);
	return mix64(s);
}

/* ---------------------------------------------------------- stage A */

static void stage_a(void *ctx, uint32_t w)
{
	(void)ctx;
	struct shard *s = &sh[w];
	size_t n = (size_t)1 << O.log_n, rows = 2 * n, W = O.width;
	uint64_t seed = mix64(proof_seed ^ (w + 1));
	s->ck = seed;
	s->ck_b = 0;

	s->rec = xalloc(S_SHARD, O.small * sizeof *s->rec);
	for (size_t i = 0; i < O.small / 2; i++)
		s->rec[i] = rec_make(rec_id(w, i));

	/* calloc: the LDE's upper half must read as zero */
	s->trace = xcalloc(S_SHARD, rows * W * 4);
	for (size_t r = 0; r < n; r++)
		for (size_t j = 0; j < W; j++)
			s->trace[r * W + j] = f_rand(seed, r, j);
	s->tw = twiddles(S_SHARD, rows);
	ntt(s->trace, rows, W, s->tw);
	merkle_build(&s->tm, S_SHARD, s->trace, rows, W);
	s->ck = mix64(s->ck ^ merkle_root(&s->tm));

	for (size_t i = O.small / 2; i < O.small; i++)
		s->rec[i] = rec_make(rec_id(w, i));

	/* the vector: ideal makes it at its final size (no growth) */
	size_t need = vec_words(), cells = rows * W;
	s->vcap = O.mode == MODE_IDEAL ? need : 4;
	s->vlen = 0;
	s->vec = xalloc(S_SHARD, s->vcap * 4);
	for (size_t i = 0; i < need; i++) {
		if (s->vlen == s->vcap) {
			s->vec =
			    xrealloc(S_SHARD, s->vec, s->vcap * 4, s->vcap * 8);
			s->vcap *= 2;
		}
		s->vec[s->vlen++] = f_add(s->trace[i % cells], (uint32_t)i);
	}

	for (unsigned c = 0; c < O.ncols; c++) {
		uint32_t *col = xalloc(S_SHARD, COL_BYTES);
		uint32_t beta = f_rand(seed, 7, c);
		size_t off = (size_t)c * COL_WORDS;
		for (size_t i = 0; i < COL_WORDS; i++)
			col[i] = f_mul(s->vec[(off + i) % s->vlen], beta);
		s->col[c] = col;
	}
}

/* ---------------------------------------------------------- stage B */

/* Worker w replaces half of its neighbour's columns and records. */
static void stage_b(void *ctx, uint32_t w)
{
	(void)ctx;
	unsigned v = (w + 1) % O.threads;
	struct shard *s = &sh[v];
	uint64_t ck = 0;
	uint32_t gamma = f_rand(proof_seed, 11, v);
	for (unsigned c = 1; c < O.ncols; c += 2) {
		ck = mix64(ck ^ hash_u32(s->col[c], COL_WORDS));
		xfree(S_SHARD, s->col[c], COL_BYTES);
		uint32_t *col = xalloc(S_SHARD, COL_BYTES);
		const uint32_t *prev = s->col[c - 1];
		for (size_t i = 0; i < COL_WORDS; i++)
			col[i] = f_add(prev[i], f_mul(gamma, (uint32_t)i));
		s->col[c] = col;
	}
	for (size_t i = 0; i < O.small; i += 2) {
		ck = mix64(ck ^ rec_drop(s->rec[i]));
		s->rec[i] = rec_make(rec_id(v, O.small + i));
	}
	s->ck_b = ck;
}

/* ---------------------------------------------------------- stage C */

/* f has len elements of 4 words; dst gets len / 2. */
static void fold(const uint32_t *f, uint32_t *dst, size_t len,
		 const uint32_t beta[4])
{
	for (size_t i = 0; i < len / 2; i++)
		for (unsigned l = 0; l < 4; l++)
			dst[i * 4 + l] =
			    f_add(f[2 * i * 4 + l],
				  f_mul(f[(2 * i + 1) * 4 + l], beta[l]));
}

static void stage_c(void *ctx, uint32_t w)
{
	(void)ctx;
	struct shard *s = &sh[w];
	size_t rows = rows_of(), W = O.width;
	uint64_t ck = s->ck;

	/* FRI input: the columns combined with the trace commitment */
	size_t len = rows;
	uint32_t *f = xalloc(S_SHARD, len * 16);
	const uint32_t *leaves = s->tm.layer[0];
	for (size_t i = 0; i < len; i++)
		for (unsigned l = 0; l < 4; l++) {
			size_t k = i * 4 + l;
			f[k] = f_add(s->col[k % O.ncols][k % COL_WORDS],
				     leaves[i * 8 + l] % FP);
		}
	struct merkle fm = {.nlayers = 0};
	for (unsigned r = 1; len > FRI_FINAL; r++) {
		uint32_t beta[4];
		for (unsigned l = 0; l < 4; l++)
			beta[l] = f_rand(proof_seed, 100 + r, w * 4 + l);
		uint32_t *dst = xalloc(S_SHARD, len / 2 * 16);
		fold(f, dst, len, beta);
		struct merkle nm;
		merkle_build(&nm, S_SHARD, dst, len / 4, 8);
		ck = mix64(ck ^ merkle_root(&nm));
		for (unsigned q = 0; q < FRI_QUERIES; q++) {
			size_t at =
			    mix64(proof_seed ^ (r * 1000 + q + w)) % len;
			ck = mix64(ck ^ f[at * 4] ^
				   ((uint64_t)f[at * 4 + 3] << 32));
			if (fm.nlayers)
				ck = mix64(
				    ck ^ fm.layer[0][(at / 2 % fm.len[0]) * 8]);
		}
		merkle_free(&fm);
		xfree(S_SHARD, f, len * 16);
		fm = nm;
		f = dst;
		len /= 2;
	}
	ck = mix64(ck ^ hash_u32(f, len * 4));
	merkle_free(&fm);
	xfree(S_SHARD, f, len * 16);

	/* openings, then every buffer is hashed whole and freed */
	for (unsigned q = 0; q < FRI_QUERIES; q++) {
		size_t at = mix64(proof_seed ^ (7000 + q + w)) % rows;
		uint32_t d[8];
		digest(s->trace + at * W, W, d);
		ck = mix64(ck ^ d[0] ^ s->tm.layer[0][at * 8]);
	}
	ck = mix64(ck ^ hash_u32(s->vec, s->vlen));
	xfree(S_SHARD, s->vec, s->vcap * 4);
	for (unsigned c = 0; c < O.ncols; c++) {
		ck = mix64(ck ^ hash_u32(s->col[c], COL_WORDS));
		xfree(S_SHARD, s->col[c], COL_BYTES);
	}
	merkle_free(&s->tm);
	xfree(S_SHARD, s->tw, twiddles_bytes(rows));
	xfree(S_SHARD, s->trace, rows * W * 4);
	for (size_t i = 0; i < O.small; i++)
		ck = mix64(ck ^ rec_drop(s->rec[i]));
	xfree(S_SHARD, s->rec, O.small * sizeof *s->rec);
	s->ck = ck;
}

/* ------------------------------------------------------------ a proof */

uint64_t columns_prove(unsigned idx, uint64_t seed)
{
	uint64_t ck =
	    mix64(seed ^ keep_check()); /* a phase after it was made */
	proof_seed = mix64(seed + 0x1234);
	run_each(stage_a, NULL);
	/* the kept output, from worker 0's trace commitment */
	ck = mix64(ck ^
		   keep_make(idx + 1, sh[0].tm.layer[0], sh[0].tm.len[0] * 8));
	run_each(stage_b, NULL);
	run_each(stage_c, NULL);
	for (unsigned w = 0; w < O.threads; w++)
		ck = mix64(ck ^ sh[w].ck ^ mix64(sh[w].ck_b + w));
	return ck;
}

/* ------------------------------------------------- ideal mode sizing */

/* What one thread allocates in a proof, each block rounded as the ideal
 * pools round it (64 B): its shard's stages A and C, and the replacements
 * it makes in stage B for its neighbour v. */
static size_t up64(size_t n)
{
	return (n + 63) & ~(size_t)63;
}

static size_t merkle_bytes(size_t leaves)
{
	size_t b = 0;
	for (;; leaves /= 2) {
		b += up64(leaves * 32);
		if (leaves <= 1)
			return b;
	}
}

static size_t thread_bytes(unsigned w, unsigned v)
{
	size_t rows = rows_of(), b = 0;
	b += up64(O.small * sizeof(void *));
	for (size_t i = 0; i < O.small; i++) {
		b += up64(rec_size(rec_id(w, i)));
		if (i % 2 == 0) /* stage B, for the neighbour */
			b += up64(rec_size(rec_id(v, O.small + i)));
	}
	b += up64(rows * O.width * 4) + up64(twiddles_bytes(rows));
	b += merkle_bytes(rows) + up64(vec_words() * 4);
	b += (O.ncols + O.ncols / 2) * COL_BYTES;
	for (size_t len = rows; len > FRI_FINAL; len /= 2)
		b += up64(len * 16) + merkle_bytes(len / 4);
	return b + up64(FRI_FINAL * 16);
}

void columns_ideal_setup(void)
{
	size_t most = 0;
	for (unsigned i = 0; i < O.proofs; i++) {
		proof_seed = mix64((uint64_t)(i + 1) * 0x51ed27 + 0x1234);
		for (unsigned w = 0; w < O.threads; w++) {
			size_t b = thread_bytes(w, (w + 1) % O.threads);
			if (b > most)
				most = b;
		}
	}
	ideal_thread_pools(most);
	if (!O.quiet)
		printf("# ideal: %.1f MiB per thread, pre-faulted\n",
		       most / 1048576.0);
}
