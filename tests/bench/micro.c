/*
 * Microbenchmarks of zkalloc's own costs, each against jemalloc in the same
 * process (run by `meson test --benchmark`; none is in the default run):
 *   pair    a small malloc+free pair (16-512 B) in a phase, zk_malloc +
 *           zk_free, against jemalloc's own malloc + free outside zkalloc:
 *           CPU time of the thread, alternated, ratio (issue 14: <= 1.05);
 *           also one at a time and outside phases;
 *   large   allocate + touch + free of 64 KiB .. 256 MiB in a phase, against
 *           jemalloc's default arena and an arena without decay;
 *   phase   zk_begin_phase latency with 1, 8 and 64 threads that allocate in
 *           every phase (run with the default arenas and with
 *           ZK_ALLOC_ARENAS=64: as many arenas as threads);
 *   first   1, 8 and 64 threads released together right after
 *           zk_begin_phase: each one's first call of the phase (a small
 *           zk_malloc, which binds the thread to its arena), then its first
 *           large block (1 MiB) from the pool;
 *   free    batches of 8 pool blocks of 64 KiB .. 64 MiB allocated and freed
 *           in one phase, ns per zk_malloc and per zk_free, against
 *           jemalloc's default arena;
 *   calloc  zk_calloc of large blocks on fresh and on recycled pool pages
 *           (cleared only where they held data).
 * Each prints one line per case; nothing here is a pass/fail test (exit 0
 * unless something fails outright).
 */
#define _GNU_SOURCE
#define JEMALLOC_NO_DEMANGLE
#include <jemalloc/jemalloc.h>

#include <dlfcn.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "zkalloc.h"

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* CPU time of the calling thread: a latency that excludes the time the
 * thread waited for a CPU (64 threads on 2 CPUs wait a lot) */
static double thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static long minflt(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_minflt;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static volatile uint64_t sink;

static void fail(const char *what)
{
	fprintf(stderr, "zkbench-micro: %s\n", what);
	exit(1);
}

/* Ends the phase and brings the calling thread back to jemalloc's own
 * arenas: a thread bound to its zkalloc arena in a phase is unbound at its
 * next zkalloc call, so until then je_mallocx would still take pool memory
 * and the jemalloc reference would measure zkalloc. */
static void end_phase(void)
{
	zk_end_phase();
	zk_free(zk_malloc(1));
	void *p = je_mallocx(1 << 20, 0);
	if (!p || zk_owns(p))
		fail("the thread is still bound to its zkalloc arena");
	je_dallocx(p, 0);
}

/* -------------------------------------------------------------- pair */

#define BATCH	   32
#define PAIR_ITERS 400000 /* batches per repetition */
#define REPS	   9

enum pair_kind { P_JE, P_ZK };

static size_t pair_size(int it, int i)
{
	return 16 + (size_t)((it * 7 + i * 13) % 32) * 16; /* 16..512 B */
}

/* Thread CPU ns per malloc+free pair. batch: BATCH allocations, then their
 * frees; else each block freed right after it is made. */
static double pair_once(enum pair_kind k, bool batch)
{
	void *p[BATCH];
	uint64_t s = 0;
	double t0 = thread_cpu_ns();
	for (int it = 0; it < PAIR_ITERS; it++) {
		if (batch) {
			for (int i = 0; i < BATCH; i++) {
				size_t sz = pair_size(it, i);
				p[i] =
				    k == P_ZK ? zk_malloc(sz) : je_malloc(sz);
				*(volatile char *)p[i] = (char)i;
			}
			for (int i = 0; i < BATCH; i++) {
				s += *(volatile char *)p[i];
				if (k == P_ZK)
					zk_free(p[i]);
				else
					je_free(p[i]);
			}
			continue;
		}
		for (int i = 0; i < BATCH; i++) {
			size_t sz = pair_size(it, i);
			char *q = k == P_ZK ? zk_malloc(sz) : je_malloc(sz);
			*(volatile char *)q = (char)i;
			s += *(volatile char *)q;
			if (k == P_ZK)
				zk_free(q);
			else
				je_free(q);
		}
	}
	sink += s;
	return (thread_cpu_ns() - t0) / ((double)PAIR_ITERS * BATCH);
}

static void pair_case(bool batch)
{
	double je[REPS], in[REPS], out[REPS], rin[REPS], rout[REPS];
	pair_once(P_JE, batch); /* warm the thread cache */
	pair_once(P_ZK, batch);
	for (int r = 0; r < REPS; r++) { /* alternate to spread noise */
		je[r] = pair_once(P_JE, batch);
		if (zk_begin_phase() != 0)
			fail("zk_begin_phase failed");
		if (!zk_owns(zk_malloc(64))) /* binds; leaks 64 B */
			fail("a small zk_malloc in a phase is not pool memory");
		in[r] = pair_once(P_ZK, batch);
		end_phase();
		out[r] = pair_once(P_ZK, batch);
		rin[r] = in[r] / je[r];
		rout[r] = out[r] / je[r];
	}
	const char *how = batch ? "batches of 32" : "one at a time";
	double mj = median(je, REPS);
	printf("pair   %-13s jemalloc malloc+free outside zkalloc %6.2f "
	       "ns\n",
	       how, mj);
	printf("pair   %-13s zk_malloc+zk_free in a phase         %6.2f ns  "
	       "ratio %.3f (median of %d alternated runs; target <= 1.05)\n",
	       how, median(in, REPS), median(rin, REPS), REPS);
	printf("pair   %-13s zk_malloc+zk_free outside phases     %6.2f ns  "
	       "ratio %.3f\n",
	       how, median(out, REPS), median(rout, REPS));
}

static void bench_pair(void)
{
	Dl_info m; /* the reference must be jemalloc's own malloc */
	if (!dladdr((void *)&je_malloc, &m) || !m.dli_fname ||
	    !strstr(m.dli_fname, "jemalloc")) {
		printf(
		    "pair: NOT RUN: malloc is not jemalloc's (a sanitizer or "
		    "a preloaded allocator)\n");
		return;
	}
	printf("pair: malloc+free pairs of 16-512 B, CPU time of the thread "
	       "per pair\n");
	pair_case(true);
	pair_case(false);
}

/* ------------------------------------------------------------- large */

static void touch(char *p, size_t n)
{
	for (size_t i = 0; i < n; i += 4096)
		p[i] = (char)i;
	p[n - 1] = 1;
}

enum large_kind { L_ZK_PHASE, L_ZK_PHASE_EACH, L_JE, L_JE_NODECAY };

/* us per allocate + touch + free of `size`; *flt gets faults per iteration */
static double large_once(enum large_kind k, size_t size, int iters, double *flt)
{
	unsigned arena = 0;
	if (k ==
	    L_JE_NODECAY) { /* jemalloc keeping its pages: the bar to meet */
		size_t sz = sizeof arena;
		ssize_t never = -1;
		if (je_mallctl("arenas.create", &arena, &sz, NULL, 0) != 0)
			fail("arenas.create failed");
		char name[64];
		snprintf(name, sizeof name, "arena.%u.dirty_decay_ms", arena);
		je_mallctl(name, NULL, NULL, &never, sizeof never);
		snprintf(name, sizeof name, "arena.%u.muzzy_decay_ms", arena);
		je_mallctl(name, NULL, NULL, &never, sizeof never);
	}
	if (k == L_ZK_PHASE && zk_begin_phase() != 0)
		fail("zk_begin_phase failed");
	double total = 0;
	long f = 0;
	for (int it = -1; it < iters; it++) { /* iteration -1 warms up */
		if (k == L_ZK_PHASE_EACH && zk_begin_phase() != 0)
			fail("zk_begin_phase failed");
		long f0 = minflt();
		double t0 = now_ns();
		char *p;
		if (k == L_JE)
			p = je_mallocx(size, 0);
		else if (k == L_JE_NODECAY)
			p = je_mallocx(size, MALLOCX_ARENA(arena) |
						 MALLOCX_TCACHE_NONE);
		else
			p = zk_malloc(size);
		if (!p)
			fail("allocation failed");
		touch(p, size);
		if (k == L_JE)
			je_dallocx(p, 0);
		else if (k == L_JE_NODECAY)
			je_dallocx(p, MALLOCX_TCACHE_NONE);
		else
			zk_free(p);
		if (it >= 0) {
			total += now_ns() - t0;
			f += minflt() - f0;
		}
		if (k == L_ZK_PHASE_EACH)
			end_phase();
	}
	if (k == L_ZK_PHASE)
		end_phase();
	if (k == L_JE_NODECAY) {
		char name[64];
		snprintf(name, sizeof name, "arena.%u.destroy", arena);
		je_mallctl(name, NULL, NULL, NULL, 0);
	}
	*flt = (double)f / iters;
	return total / iters / 1e3;
}

static void bench_large(void)
{
	printf("large: allocate + touch every page + free, after one warm-up "
	       "(us per iteration, minor faults per iteration)\n");
	printf("%10s %18s %18s %18s %18s\n", "size", "zk (one phase)",
	       "zk (phase each)", "jemalloc", "je no-decay arena");
	for (size_t size = 64 << 10; size <= ((size_t)256 << 20); size *= 4) {
		int iters = (int)(((size_t)2 << 30) / size);
		if (iters > 2000)
			iters = 2000;
		if (iters < 8)
			iters = 8;
		double f[4], t[4];
		t[0] = large_once(L_ZK_PHASE, size, iters, &f[0]);
		t[1] = large_once(L_ZK_PHASE_EACH, size, iters, &f[1]);
		t[2] = large_once(L_JE, size, iters, &f[2]);
		t[3] = large_once(L_JE_NODECAY, size, iters, &f[3]);
		printf("%7zu KiB", size >> 10);
		for (int i = 0; i < 4; i++)
			printf(" %9.1f %7.0f f", t[i], f[i]);
		printf("\n");
	}
}

/* ------------------------------------------------------------- phase */

#define PHASE_ITERS 200

static struct {
	pthread_barrier_t go, done;
	int quit;
} ph;

static void *phase_worker(void *arg)
{
	(void)arg;
	for (;;) {
		pthread_barrier_wait(&ph.go);
		if (ph.quit)
			return NULL;
		/* a small and a large block: binds the thread to its arena
		 * (created at its first phase) and uses the pool */
		char *q = zk_malloc(48);
		char *p = zk_malloc(256 << 10);
		if (!p || !q)
			fail("zk_malloc failed");
		touch(p, 256 << 10);
		*(volatile char *)q = 1;
		zk_free(p);
		zk_free(q);
		pthread_barrier_wait(&ph.done);
	}
}

static void bench_phase(void)
{
	static const int counts[] = {1, 8, 64};
	unsigned arenas = 0;
	size_t len = sizeof arenas;
	zk_mallctl("zk.opt.arenas", &arenas, &len, NULL, 0);
	printf("phase: zk_begin_phase latency with N threads that allocate in "
	       "every phase (%u zkalloc arenas; %d phases each)\n",
	       arenas, PHASE_ITERS);
	for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
		int n = counts[c];
		pthread_t th[64];
		ph.quit = 0;
		pthread_barrier_init(&ph.go, NULL, (unsigned)n + 1);
		pthread_barrier_init(&ph.done, NULL, (unsigned)n + 1);
		for (int i = 0; i < n; i++)
			if (pthread_create(&th[i], NULL, phase_worker, NULL))
				fail("pthread_create failed");
		double lat[PHASE_ITERS];
		uint64_t made1 = 0;
		zk_stats_t st = {.size = sizeof st};
		for (int it = -2; it < PHASE_ITERS; it++) {
			double t0 = now_ns();
			if (zk_begin_phase() != 0)
				fail("zk_begin_phase failed");
			double t = now_ns() - t0;
			if (it >= 0)
				lat[it] = t / 1e3;
			pthread_barrier_wait(&ph.go);
			pthread_barrier_wait(&ph.done);
			end_phase();
		}
		if (zk_stats_get(&st) == 0)
			made1 = st.arenas_created;
		ph.quit = 1;
		pthread_barrier_wait(&ph.go);
		for (int i = 0; i < n; i++)
			pthread_join(th[i], NULL);
		pthread_barrier_destroy(&ph.go);
		pthread_barrier_destroy(&ph.done);
		double sorted[PHASE_ITERS];
		memcpy(sorted, lat, sizeof lat);
		double med = median(sorted, PHASE_ITERS);
		printf("phase  %2d threads: median %8.1f us  p90 %8.1f us  max "
		       "%8.1f us  (arenas created in all %" PRIu64 ")\n",
		       n, med, sorted[PHASE_ITERS * 9 / 10],
		       sorted[PHASE_ITERS - 1], made1);
	}
	/* the decay walks the pool at every begin: the same with a pool whose
	 * top is 4 GiB (blocks allocated and freed, mostly never touched) */
	if (zk_begin_phase() != 0)
		fail("zk_begin_phase failed");
	void *big[16];
	for (int i = 0; i < 16; i++) {
		big[i] = zk_malloc((size_t)256 << 20);
		if (!big[i])
			fail("zk_malloc failed");
		touch(big[i], (size_t)1 << 20); /* 1 MiB of each resident */
	}
	for (int i = 0; i < 16; i++)
		zk_free(big[i]);
	end_phase();
	double lat[PHASE_ITERS];
	for (int it = 0; it < PHASE_ITERS; it++) {
		double t0 = now_ns();
		if (zk_begin_phase() != 0)
			fail("zk_begin_phase failed");
		lat[it] = (now_ns() - t0) / 1e3;
		end_phase();
	}
	double med = median(lat, PHASE_ITERS);
	printf("phase  pool top 4 GiB (16 MiB resident, then given back by the "
	       "decay): median %8.1f us  p90 %8.1f us  max %8.1f us\n",
	       med, lat[PHASE_ITERS * 9 / 10], lat[PHASE_ITERS - 1]);
}

/* ------------------------------------------------------------- first */

#define FIRST_PHASES 40
#define FIRST_SMALL  64
#define FIRST_BYTES  ((size_t)1 << 20)
#define FIRST_MAX    64

/* Every phase, each of n pool threads makes its first call of the phase as
 * soon as the phase begins (all at once: the barrier releases them
 * together): a small zk_malloc, which binds the thread to its arena (made at
 * the thread's first phase), then a FIRST_BYTES block from the pool. */
static struct {
	pthread_barrier_t go, done;
	int quit, phase;
	double lat[2][FIRST_PHASES][FIRST_MAX]; /* us, wall: small, large */
	double cpu[2][FIRST_PHASES][FIRST_MAX]; /* us, the thread's CPU time */
	bool pool_mem[FIRST_PHASES][FIRST_MAX];
} fs;

static void *first_worker(void *arg)
{
	int id = (int)(intptr_t)arg;
	for (;;) {
		pthread_barrier_wait(&fs.go);
		if (fs.quit)
			return NULL;
		double c0 = thread_cpu_ns(), t0 = now_ns();
		char *q = zk_malloc(FIRST_SMALL);
		double c1 = thread_cpu_ns(), t1 = now_ns();
		char *p = zk_malloc(FIRST_BYTES);
		double c2 = thread_cpu_ns(), t2 = now_ns();
		if (!p || !q)
			fail("zk_malloc failed");
		p[0] = 1;
		*(volatile char *)q = 1;
		if (fs.phase >= 0) {
			int ph = fs.phase;
			fs.lat[0][ph][id] = (t1 - t0) / 1e3;
			fs.cpu[0][ph][id] = (c1 - c0) / 1e3;
			fs.lat[1][ph][id] = (t2 - t1) / 1e3;
			fs.cpu[1][ph][id] = (c2 - c1) / 1e3;
			fs.pool_mem[ph][id] = zk_owns(p) && zk_owns(q);
		}
		zk_free(p);
		zk_free(q);
		pthread_barrier_wait(&fs.done);
	}
}

static void first_report(int n, int which)
{
	static double all[FIRST_PHASES * FIRST_MAX],
	    cpu[FIRST_PHASES * FIRST_MAX];
	int k = 0;
	for (int ph = 0; ph < FIRST_PHASES; ph++)
		for (int i = 0; i < n; i++) {
			cpu[k] = fs.cpu[which][ph][i];
			all[k++] = fs.lat[which][ph][i];
		}
	double med = median(all, k), cmed = median(cpu, k);
	printf("first  %2d threads: %s: wall median %7.1f us  p90 %7.1f  max "
	       "%8.1f | thread CPU median %7.1f us  p90 %7.1f  max %8.1f\n",
	       n,
	       which ? "then a 1 MiB zk_malloc      "
		     : "first call (64 B zk_malloc)",
	       med, all[k * 9 / 10], all[k - 1], cmed, cpu[k * 9 / 10],
	       cpu[k - 1]);
}

static void first_case(int n)
{
	pthread_t th[FIRST_MAX];
	fs.quit = 0;
	pthread_barrier_init(&fs.go, NULL, (unsigned)n + 1);
	pthread_barrier_init(&fs.done, NULL, (unsigned)n + 1);
	for (int i = 0; i < n; i++)
		if (pthread_create(&th[i], NULL, first_worker,
				   (void *)(intptr_t)i))
			fail("pthread_create failed");
	for (int ph = -2; ph < FIRST_PHASES; ph++) { /* 2 to warm up */
		fs.phase = ph;
		if (zk_begin_phase() != 0)
			fail("zk_begin_phase failed");
		pthread_barrier_wait(&fs.go);
		pthread_barrier_wait(&fs.done);
		end_phase();
	}
	fs.quit = 1;
	pthread_barrier_wait(&fs.go);
	for (int i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&fs.go);
	pthread_barrier_destroy(&fs.done);
	int owned = 0;
	for (int ph = 0; ph < FIRST_PHASES; ph++)
		for (int i = 0; i < n; i++)
			owned += fs.pool_mem[ph][i];
	first_report(n, 0);
	first_report(n, 1);
	printf("first  %2d threads: both blocks pool memory in %.0f%% of the "
	       "thread-phases\n",
	       n, 100.0 * owned / (n * FIRST_PHASES));
}

static void bench_first(void)
{
	printf("first: N threads released together right after zk_begin_phase "
	       "(%d phases): each one's first call of the phase (binds it to "
	       "its arena), then a %zu MiB block (the calls only)\n",
	       FIRST_PHASES, FIRST_BYTES >> 20);
	static const int counts[] = {1, 8, 64};
	for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++)
		first_case(counts[c]);
}

/* -------------------------------------------------------------- free */

#define FREE_BATCH 8

enum free_kind { F_ZK, F_JE };

/* ns per allocation and per free: batches of FREE_BATCH blocks of `size`,
 * each written once (first byte), freed in allocation order */
static void free_once(enum free_kind k, size_t size, int batches,
		      double *ns_alloc, double *ns_free)
{
	void *p[FREE_BATCH];
	double ta = 0, tf = 0;
	for (int b = -1; b < batches; b++) { /* batch -1 warms up */
		for (int i = 0; i < FREE_BATCH; i++) {
			double t0 = now_ns();
			p[i] =
			    k == F_ZK ? zk_malloc(size) : je_mallocx(size, 0);
			double t1 = now_ns();
			if (!p[i])
				fail("allocation failed");
			*(volatile char *)p[i] = (char)i;
			if (b >= 0)
				ta += t1 - t0;
		}
		for (int i = 0; i < FREE_BATCH; i++) {
			double t0 = now_ns();
			if (k == F_ZK)
				zk_free(p[i]);
			else
				je_dallocx(p[i], 0);
			if (b >= 0)
				tf += now_ns() - t0;
		}
	}
	*ns_alloc = ta / ((double)batches * FREE_BATCH);
	*ns_free = tf / ((double)batches * FREE_BATCH);
}

static void bench_free(void)
{
	printf("free: batches of %d blocks allocated then freed, one phase; ns "
	       "per call, median of %d runs (alternated with jemalloc)\n",
	       FREE_BATCH, REPS);
	printf("%10s %14s %14s %14s %14s %8s\n", "size", "zk_malloc", "zk_free",
	       "je_mallocx", "je_dallocx", "pool");
	for (size_t size = 64 << 10; size <= ((size_t)64 << 20); size *= 4) {
		int batches = (int)(((size_t)4 << 30) / (size * FREE_BATCH));
		if (batches > 4000)
			batches = 4000;
		if (batches < 16)
			batches = 16;
		double za[REPS], zf[REPS], ja[REPS], jf[REPS];
		bool owned = false;
		for (int r = 0; r < REPS; r++) {
			if (zk_begin_phase() != 0)
				fail("zk_begin_phase failed");
			void *probe = zk_malloc(size);
			owned = probe && zk_owns(probe);
			zk_free(probe);
			free_once(F_ZK, size, batches, &za[r], &zf[r]);
			end_phase();
			free_once(F_JE, size, batches, &ja[r], &jf[r]);
		}
		printf("%7zu KiB %11.0f ns %11.0f ns %11.0f ns %11.0f ns %8s\n",
		       size >> 10, median(za, REPS), median(zf, REPS),
		       median(ja, REPS), median(jf, REPS),
		       owned ? "yes" : "NO");
	}
}

/* ------------------------------------------------------------ calloc */

/* Each size runs on its own thread, in two phases. The first takes pool
 * pages no block has used yet (fresh: known zero, not cleared); the block is
 * then written all over and freed, so in the second phase the same range is
 * recycled and must be cleared (hook_zeroed_bytes says how much was). */
struct calloc_job {
	size_t size;
	pthread_barrier_t *go, *done, *bye;
	double t_fresh, t_fresh_touch, t_rec, t_rec_touch;
	long f_fresh, f_rec;
	double z_fresh, z_rec; /* MiB zkalloc cleared in the call */
	bool phase_mem;
};

static uint64_t zeroed(void)
{
	uint64_t v = 0;
	size_t len = sizeof v;
	if (zk_mallctl("zk.stats.hook_zeroed_bytes", &v, &len, NULL, 0) != 0)
		fail("zk.stats.hook_zeroed_bytes unreadable");
	return v;
}

static double read_all(const char *p, size_t n)
{
	uint64_t s = 0;
	for (size_t i = 0; i < n; i += 64)
		s += (unsigned char)p[i];
	sink += s;
	return (double)s;
}

static void *calloc_worker(void *arg)
{
	struct calloc_job *j = arg;
	for (int round = 0; round < 2; round++) {
		pthread_barrier_wait(j->go);
		long f0 = minflt();
		uint64_t z0 = zeroed();
		double t0 = now_ns();
		char *p = zk_calloc(1, j->size);
		double t1 = now_ns();
		double z = (zeroed() - z0) / 1048576.0;
		if (!p)
			fail("zk_calloc failed");
		if (read_all(p, j->size) != 0)
			fail("zk_calloc returned memory that is not zero");
		double t2 = now_ns();
		j->phase_mem = zk_owns(p);
		memset(p, 0xa5,
		       j->size); /* leave it dirty for the next phase */
		zk_free(p);
		if (round == 0) {
			j->t_fresh = (t1 - t0) / 1e3;
			j->t_fresh_touch = (t2 - t0) / 1e3;
			j->f_fresh = minflt() - f0;
			j->z_fresh = z;
		} else {
			j->t_rec = (t1 - t0) / 1e3;
			j->t_rec_touch = (t2 - t0) / 1e3;
			j->f_rec = minflt() - f0;
			j->z_rec = z;
		}
		pthread_barrier_wait(j->done);
	}
	pthread_barrier_wait(j->bye);
	return NULL;
}

static void je_calloc_case(size_t size, double *fresh, double *rec)
{
	for (int round = 0; round < 2; round++) {
		double t0 = now_ns();
		char *p = je_mallocx(size, MALLOCX_ZERO);
		if (!p)
			fail("je_mallocx failed");
		if (read_all(p, size) != 0)
			fail("jemalloc returned memory that is not zero");
		double t = (now_ns() - t0) / 1e3;
		memset(p, 0xa5, size);
		je_dallocx(p, 0);
		*(round ? rec : fresh) = t;
	}
}

static void bench_calloc(void)
{
	enum { NSIZES = 4 };
	static const size_t sizes[NSIZES] = {(size_t)1 << 20, (size_t)16 << 20,
					     (size_t)128 << 20,
					     (size_t)512 << 20};
	printf(
	    "calloc: zk_calloc (call; call + read every cache line) on fresh "
	    "and on recycled pool pages, us\n");
	pthread_barrier_t go, done, bye;
	pthread_t th[NSIZES];
	struct calloc_job job[NSIZES];
	pthread_barrier_init(&go, NULL, 2);
	pthread_barrier_init(&done, NULL, 2);
	pthread_barrier_init(&bye, NULL, NSIZES + 1);
	for (int i = 0; i < NSIZES; i++) {
		struct calloc_job *j = &job[i];
		*j = (struct calloc_job){
		    .size = sizes[i], .go = &go, .done = &done, .bye = &bye};
		if (pthread_create(&th[i], NULL, calloc_worker, j))
			fail("pthread_create failed");
		for (int round = 0; round < 2; round++) {
			if (zk_begin_phase() != 0)
				fail("zk_begin_phase failed");
			pthread_barrier_wait(&go);
			pthread_barrier_wait(&done);
			end_phase();
		}
		double jf, jr;
		je_calloc_case(sizes[i], &jf, &jr);
		printf("calloc %4zu MiB%s: fresh %9.1f (%9.1f, %6ld faults, "
		       "%.0f MiB cleared)  recycled %9.1f (%9.1f, %6ld faults, "
		       "%.0f MiB cleared)  | jemalloc calloc+read first %9.1f, "
		       "again %9.1f\n",
		       sizes[i] >> 20, j->phase_mem ? "" : " (NOT pool memory)",
		       j->t_fresh, j->t_fresh_touch, j->f_fresh, j->z_fresh,
		       j->t_rec, j->t_rec_touch, j->f_rec, j->z_rec, jf, jr);
	}
	pthread_barrier_wait(&bye);
	for (int i = 0; i < NSIZES; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&go);
	pthread_barrier_destroy(&done);
	pthread_barrier_destroy(&bye);
}

int main(int argc, char **argv)
{
	const char *what = argc > 1 ? argv[1] : "all";
	bool all = !strcmp(what, "all"), any = false;
	if (all || !strcmp(what, "pair"))
		bench_pair(), any = true;
	if (all || !strcmp(what, "large"))
		bench_large(), any = true;
	if (all || !strcmp(what, "phase"))
		bench_phase(), any = true;
	if (all || !strcmp(what, "calloc"))
		bench_calloc(), any = true;
	if (all || !strcmp(what, "first"))
		bench_first(), any = true;
	if (all || !strcmp(what, "free"))
		bench_free(), any = true;
	if (!any) {
		fprintf(stderr,
			"usage: zkbench-micro [pair|large|phase|calloc|first|"
			"free|all]\n");
		return 2;
	}
	zk_stats_t st = {.size = sizeof st};
	if (zk_stats_get(&st) == 0)
		printf("# zkalloc: resident %.1f MiB, top (high water) %.1f "
		       "MiB, kept %" PRIu64
		       " blocks (%.1f MiB), overflow %" PRIu64
		       ", arenas %" PRIu64
		       ", hook zeroed %.1f MiB, trims %" PRIu64 "\n",
		       st.resident_bytes / 1048576.0, st.top_bytes / 1048576.0,
		       st.kept_blocks, st.kept_bytes / 1048576.0,
		       st.overflow_count, st.arenas_created,
		       st.hook_zeroed_bytes / 1048576.0, st.trims);
	return 0;
}
