/*
 * Microbenchmarks of zkalloc's own costs, each against plain jemalloc in the
 * same process (run by `meson test --benchmark`):
 *   route   zk_malloc + zk_free of 16-512 B, outside and inside a phase,
 *           against je_mallocx + je_dallocx;
 *   large   allocate + touch + free of 64 KiB .. 256 MiB in a phase, against
 *           jemalloc;
 *   phase   zk_begin_phase latency with 1, 2, 8 and 16 thread arenas alive;
 *   calloc  zk_calloc of large blocks on fresh and on recycled slab memory;
 *   first   1, 8 and 64 threads each make their first large allocation of a
 *           phase at once, right after zk_begin_phase: per-thread latency of
 *           that allocation, then zk_begin_phase latency with their arenas;
 *   free    the free path: batches of 8 phase blocks of 64 KiB .. 64 MiB
 *           allocated and freed in one phase, ns per zk_malloc and per
 *           zk_free, against jemalloc's default arena.
 * Each prints one line per case; nothing here is a pass/fail test (exit 0
 * unless something fails outright).
 */
#define _GNU_SOURCE
#define JEMALLOC_NO_DEMANGLE
#include <jemalloc/jemalloc.h>

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

/* ------------------------------------------------------------- route */

#define BATCH	    32
#define ROUTE_ITERS 200000 /* batches per repetition */
#define REPS	    7

enum route_kind { R_ZK, R_JE };

/* ns per malloc+free pair: BATCH allocations of 16..512 B, then their frees */
static double route_once(enum route_kind k)
{
	void *p[BATCH];
	uint64_t s = 0;
	double t0 = now_ns();
	for (int it = 0; it < ROUTE_ITERS; it++) {
		for (int i = 0; i < BATCH; i++) {
			size_t sz = 16 + (size_t)((it * 7 + i * 13) % 32) * 16;
			p[i] = k == R_ZK ? zk_malloc(sz) : je_mallocx(sz, 0);
			*(volatile char *)p[i] = (char)i;
		}
		for (int i = 0; i < BATCH; i++) {
			s += *(volatile char *)p[i];
			if (k == R_ZK)
				zk_free(p[i]);
			else
				je_dallocx(p[i], 0);
		}
	}
	sink += s;
	return (now_ns() - t0) / ((double)ROUTE_ITERS * BATCH);
}

static void bench_route(void)
{
	double out[REPS], in[REPS], je[REPS];
	route_once(R_ZK); /* warm the tcaches */
	route_once(R_JE);
	for (int r = 0; r < REPS; r++) { /* alternate to spread noise */
		out[r] = route_once(R_ZK);
		je[r] = route_once(R_JE);
		if (zk_begin_phase() != 0)
			fail("zk_begin_phase failed");
		in[r] = route_once(R_ZK);
		zk_end_phase();
	}
	double mo = median(out, REPS), mi = median(in, REPS),
	       mj = median(je, REPS);
	printf("route: malloc+free pair of 16-512 B (batches of %d), median of "
	       "%d runs\n",
	       BATCH, REPS);
	printf("route  je_mallocx+je_dallocx      %6.2f ns\n", mj);
	printf(
	    "route  zk_malloc+zk_free outside  %6.2f ns  (%.3f x jemalloc)\n",
	    mo, mo / mj);
	printf(
	    "route  zk_malloc+zk_free in phase %6.2f ns  (%.3f x jemalloc)\n",
	    mi, mi / mj);
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
			zk_end_phase();
	}
	if (k == L_ZK_PHASE)
		zk_end_phase();
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
		/* one large block: creates this thread's arena in the phase */
		char *p = zk_malloc(256 << 10);
		if (!p)
			fail("zk_malloc failed");
		touch(p, 256 << 10);
		zk_free(p);
		pthread_barrier_wait(&ph.done);
	}
}

static void bench_phase(void)
{
	static const int counts[] = {1, 2, 8, 16};
	printf("phase: zk_begin_phase latency with N thread arenas alive "
	       "(%d phases each)\n",
	       PHASE_ITERS);
	for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
		int n = counts[c];
		pthread_t th[16];
		ph.quit = 0;
		pthread_barrier_init(&ph.go, NULL, (unsigned)n + 1);
		pthread_barrier_init(&ph.done, NULL, (unsigned)n + 1);
		for (int i = 0; i < n; i++)
			if (pthread_create(&th[i], NULL, phase_worker, NULL))
				fail("pthread_create failed");
		double lat[PHASE_ITERS];
		uint64_t made0 = 0, made1 = 0;
		zk_stats_t st = {.size = sizeof st};
		for (int it = -2; it < PHASE_ITERS; it++) {
			if (it == 0 && zk_stats_get(&st) == 0)
				made0 = st.arenas_created;
			double t0 = now_ns();
			if (zk_begin_phase() != 0)
				fail("zk_begin_phase failed");
			double t = now_ns() - t0;
			if (it >= 0)
				lat[it] = t / 1e3;
			pthread_barrier_wait(&ph.go);
			pthread_barrier_wait(&ph.done);
			zk_end_phase();
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
		printf("phase  %2d arenas: median %8.1f us  p90 %8.1f us  max "
		       "%8.1f us  (arenas created per phase %.1f)\n",
		       n, med, sorted[PHASE_ITERS * 9 / 10],
		       sorted[PHASE_ITERS - 1],
		       (double)(made1 - made0) / PHASE_ITERS);
	}
	/* the arenas of the exited threads are destroyed here */
	zk_begin_phase();
	zk_end_phase();
}

/* ------------------------------------------------------------- first */

#define FIRST_PHASES 40
#define FIRST_BYTES  ((size_t)1 << 20)
#define FIRST_MAX    64

/* Every phase, each of n pool threads allocates one FIRST_BYTES block as soon
 * as the phase begins (all at once: the barrier releases them together), so
 * that allocation creates or finds the thread's arena for the phase. */
static struct {
	pthread_barrier_t go, done;
	int quit, phase;
	double lat[FIRST_PHASES][FIRST_MAX]; /* us, wall clock */
	double cpu[FIRST_PHASES][FIRST_MAX]; /* us, the thread's CPU time */
	bool phase_mem[FIRST_PHASES][FIRST_MAX];
} fs;

static void *first_worker(void *arg)
{
	int id = (int)(intptr_t)arg;
	for (;;) {
		pthread_barrier_wait(&fs.go);
		if (fs.quit)
			return NULL;
		double c0 = thread_cpu_ns(), t0 = now_ns();
		char *p = zk_malloc(FIRST_BYTES);
		double t = now_ns() - t0, c = thread_cpu_ns() - c0;
		if (!p)
			fail("zk_malloc failed");
		p[0] = 1;
		if (fs.phase >= 0) {
			fs.lat[fs.phase][id] = t / 1e3;
			fs.cpu[fs.phase][id] = c / 1e3;
			fs.phase_mem[fs.phase][id] = zk_owns(p);
		}
		zk_free(p);
		pthread_barrier_wait(&fs.done);
	}
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
	double begin[FIRST_PHASES];
	for (int ph = -2; ph < FIRST_PHASES; ph++) { /* 2 to warm up */
		fs.phase = ph;
		double t0 = now_ns();
		if (zk_begin_phase() != 0)
			fail("zk_begin_phase failed");
		double t = now_ns() - t0;
		if (ph >= 0)
			begin[ph] = t / 1e3;
		pthread_barrier_wait(&fs.go);
		pthread_barrier_wait(&fs.done);
		zk_end_phase();
	}
	fs.quit = 1;
	pthread_barrier_wait(&fs.go);
	for (int i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&fs.go);
	pthread_barrier_destroy(&fs.done);

	/* every thread's first allocation of every phase, and per phase the
	 * slowest thread */
	static double all[FIRST_PHASES * FIRST_MAX],
	    cpu[FIRST_PHASES * FIRST_MAX];
	double slowest[FIRST_PHASES];
	int k = 0, owned = 0;
	for (int ph = 0; ph < FIRST_PHASES; ph++) {
		slowest[ph] = 0;
		for (int i = 0; i < n; i++) {
			cpu[k] = fs.cpu[ph][i];
			all[k++] = fs.lat[ph][i];
			owned += fs.phase_mem[ph][i];
			if (fs.lat[ph][i] > slowest[ph])
				slowest[ph] = fs.lat[ph][i];
		}
	}
	double med = median(all, k), p90 = all[k * 9 / 10], mx = all[k - 1];
	double smed = median(slowest, FIRST_PHASES);
	double cmed = median(cpu, k), cp90 = cpu[k * 9 / 10], cmx = cpu[k - 1];
	double bmed = median(begin, FIRST_PHASES);
	printf("first  %2d threads: first %zu MiB zk_malloc of a phase, per "
	       "thread: median %7.1f us  p90 %7.1f us  max %8.1f us; slowest "
	       "thread per phase (median) %7.1f us; phase memory %.0f%%\n",
	       n, FIRST_BYTES >> 20, med, p90, mx, smed, 100.0 * owned / k);
	printf("first  %2d threads: the same, CPU time of the calling thread "
	       "(preemption excluded): median %7.1f us  p90 %7.1f us  max "
	       "%8.1f us\n",
	       n, cmed, cp90, cmx);
	printf("first  %2d threads: zk_begin_phase with their arenas: median "
	       "%8.1f us  p90 %8.1f us  max %8.1f us\n",
	       n, bmed, begin[FIRST_PHASES * 9 / 10], begin[FIRST_PHASES - 1]);
}

static void bench_first(void)
{
	printf("first: N threads allocate one %zu MiB block each, all at once "
	       "right after zk_begin_phase (%d phases; the call only, "
	       "not touching the block)\n",
	       FIRST_BYTES >> 20, FIRST_PHASES);
	static const int counts[] = {1, 8, 64};
	for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++)
		first_case(counts[c]);
	/* the arenas of the exited threads are destroyed here */
	zk_begin_phase();
	zk_end_phase();
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
	       "je_mallocx", "je_dallocx", "phase");
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
			zk_end_phase();
			free_once(F_JE, size, batches, &ja[r], &jf[r]);
		}
		printf("%7zu KiB %11.0f ns %11.0f ns %11.0f ns %11.0f ns %8s\n",
		       size >> 10, median(za, REPS), median(zf, REPS),
		       median(ja, REPS), median(jf, REPS),
		       owned ? "yes" : "NO");
	}
}

/* ------------------------------------------------------------ calloc */

/* Each size runs on its own thread, which stays alive until every size is
 * done: so its first phase gets a slab no thread has used (fresh pages); in
 * the second phase the same slab range is recycled and must be cleared. */
struct calloc_job {
	size_t size;
	pthread_barrier_t *go, *done, *bye;
	double t_fresh, t_fresh_touch, t_rec, t_rec_touch;
	long f_fresh, f_rec;
	bool phase_mem;
};

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
		double t0 = now_ns();
		char *p = zk_calloc(1, j->size);
		double t1 = now_ns();
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
		} else {
			j->t_rec = (t1 - t0) / 1e3;
			j->t_rec_touch = (t2 - t0) / 1e3;
			j->f_rec = minflt() - f0;
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
	    "and on recycled slab memory, us\n");
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
			zk_end_phase();
		}
		double jf, jr;
		je_calloc_case(sizes[i], &jf, &jr);
		printf("calloc %4zu MiB%s: fresh %9.1f (%9.1f, %6ld faults)  "
		       "recycled %9.1f (%9.1f, %6ld faults)  | jemalloc "
		       "calloc+read first %9.1f, again %9.1f\n",
		       sizes[i] >> 20,
		       j->phase_mem ? "" : " (NOT phase memory)", j->t_fresh,
		       j->t_fresh_touch, j->f_fresh, j->t_rec, j->t_rec_touch,
		       j->f_rec, jf, jr);
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
	if (all || !strcmp(what, "route"))
		bench_route(), any = true;
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
			"usage: zkbench-micro [route|large|phase|calloc|first|"
			"free|all]\n");
		return 2;
	}
	zk_stats_t st = {.size = sizeof st};
	if (zk_stats_get(&st) == 0)
		printf("# zkalloc: slab %.1f GiB x %u, overflow %" PRIu64
		       ", arenas created %" PRIu64 ", hook zeroed %.1f MiB\n",
		       st.slab_size / 1073741824.0, st.nslabs,
		       st.overflow_count, st.arenas_created,
		       st.hook_zeroed_bytes / 1048576.0);
	return 0;
}
