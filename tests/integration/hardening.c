/*
 * Issue 8 and 13 scenarios that need a process of their own (argv[1] picks
 * one):
 *
 *   keys      a process that made 40 pthread keys before zkalloc's own
 *             (CUDA, OpenMP, gRPC, logging all make keys) begins a phase
 *             through mallctl and prints from new threads. glibc callocs a
 *             second-level key block for key indices >= 32 inside
 *             pthread_setspecific, which re-enters the allocator from its
 *             slow path: this must finish (the meson timeout catches a
 *             hang). Run with the drop-in preloaded.
 *   conf      phases under whatever MALLOC_CONF the test sets: in-phase
 *             blocks are pool memory (small ones too, unless jemalloc's
 *             settings make zkalloc route by size), a block kept from the
 *             first phase stays intact, warm phases fault (almost) nothing,
 *             calloc reads zero, nothing overflows.
 *   oversize  (run with a 64 MiB region) requests no region could hold
 *             (SIZE_MAX / 2, an alignment of 1 TiB) fail or are served
 *             apart without "the phase region is full" and without using up
 *             that one-time warning: filling the region for real later
 *             prints it, once, and counts overflow (issue 13.9).
 *   check-small  under ZK_ALLOC_CHECK=1, two threads churn 64-byte blocks
 *             (pool memory in phases) while the main thread begins and ends
 *             thousands of phases: every block keeps its contents and
 *             nothing is reported (a report aborts).
 *   tls-dtor  threads whose TLS destructor allocates and frees in a phase
 *             after jemalloc's own thread cleanup ran: the memory is usable,
 *             nothing leaks, no arena beyond ZK_ALLOC_ARENAS is made.
 */
#define _GNU_SOURCE
#include <zkalloc.h>

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "example_check.h"

#define MiB ((size_t)1 << 20)

static long minor_faults(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_minflt;
}

static zk_stats_t stats(void)
{
	zk_stats_t s = {.size = sizeof(s)};
	zk_stats_get(&s);
	return s;
}

/* ------------------------------------------------------------- keys */

typedef int (*mallctl_fn)(const char *, void *, size_t *, void *, size_t);

static void *printer(void *arg)
{
	char *small = malloc(100); /* the first in-phase small request */
	CHECK(small != NULL, "malloc(100) failed");
	snprintf(small, 100, "thread %d", (int)(intptr_t)arg);
	printf("%s: %s\n", small, "printing from a new thread in a phase");
	fflush(stdout);
	void *big = malloc(2 * MiB);
	CHECK(big != NULL, "malloc(2 MiB) failed");
	memset(big, 1, 2 * MiB);
	free(big);
	free(small);
	return NULL;
}

static int run_keys(void)
{
	pthread_key_t keys[40];
	for (int i = 0; i < 40; i++)
		CHECK(pthread_key_create(&keys[i], NULL) == 0, "key %d", i);
	/* The drop-in's mallctl, as a prover that only speaks mallctl. */
	mallctl_fn ctl = (mallctl_fn)dlsym(RTLD_DEFAULT, "mallctl");
	CHECK(ctl != NULL, "no mallctl in the process");
	CHECK(ctl("zk.phase.begin", NULL, NULL, NULL, 0) == 0,
	      "zk.phase.begin failed: is the drop-in preloaded?");
	for (int round = 0; round < 4; round++) {
		pthread_t t[8];
		for (int i = 0; i < 8; i++)
			CHECK(pthread_create(
				  &t[i], NULL, printer,
				  (void *)(intptr_t)(round * 8 + i)) == 0,
			      "pthread_create");
		for (int i = 0; i < 8; i++)
			pthread_join(t[i], NULL);
	}
	CHECK(ctl("zk.phase.end", NULL, NULL, NULL, 0) == 0, "zk.phase.end");
	return 0;
}

/* ------------------------------------------------------------- conf */

/* Are small in-phase requests pool memory? Yes, unless zkalloc routes by
 * size: ZK_ALLOC_MIN_BYTES set, or percpu_arena (jemalloc then refuses to
 * bind a thread to an arena). */
static bool small_in_pool(void)
{
	size_t min = 0, len = sizeof(min);
	const char *percpu = "disabled";
	size_t plen = sizeof(percpu);
	if (zk_mallctl("zk.opt.min_bytes", &min, &len, NULL, 0) != 0 ||
	    zk_mallctl("opt.percpu_arena", &percpu, &plen, NULL, 0) != 0)
		return false;
	return min == 0 && strcmp(percpu, "disabled") == 0;
}

static int run_conf(void)
{
	long cold = 0, warm_max = 0;
	bool small = small_in_pool();
	char *kept = NULL; /* made in the first phase, kept to the end */
	for (int ph = 0; ph < 6; ph++) {
		long f0 = minor_faults();
		CHECK(zk_begin_phase() == 0, "begin");
		if (kept == NULL) {
			kept = zk_malloc(MiB);
			CHECK(kept && zk_owns(kept), "kept block");
			if (kept)
				memset(kept, 0x6b, MiB);
		} else {
			CHECK(stats().kept_bytes >= MiB, "kept bytes %llu",
			      (unsigned long long)stats().kept_bytes);
		}
		char *a = zk_malloc(MiB);
		char *b = zk_calloc(1, 24 * MiB);
		char *c = zk_malloc(100);
		CHECK(a && b && c, "allocation failed");
		CHECK(zk_owns(a) && zk_owns(b), "large blocks must be pool "
						"memory");
		CHECK(zk_owns(c) == small, "a small block is pool memory: %d",
		      zk_owns(c));
		for (size_t i = 0; i < 24 * MiB; i += 4096)
			if (b[i] != 0) {
				CHECK(0, "calloc memory not zero at %zu", i);
				break;
			}
		memset(a, ph, MiB);
		memset(b, ph, 24 * MiB);
		b = zk_realloc(b, 40 * MiB);
		CHECK(b != NULL && zk_owns(b) && b[24 * MiB - 1] == ph,
		      "realloc in phase");
		memset(b, ph + 1, 40 * MiB);
		zk_free(a);
		zk_free(b);
		zk_free(c);
		for (size_t i = 0; kept && i < MiB; i++)
			if (kept[i] != 0x6b) {
				CHECK(0, "phase %d: kept byte %zu changed", ph,
				      i);
				break;
			}
		zk_end_phase();
		long f = minor_faults() - f0;
		if (ph == 0)
			cold = f;
		else if (f > warm_max)
			warm_max = f;
	}
	zk_free(kept);
	zk_stats_t s = stats();
	printf("conf %s: cold phase %ld faults, warm phases at most %ld; "
	       "overflow %llu\n",
	       getenv("MALLOC_CONF") ? getenv("MALLOC_CONF") : "(none)", cold,
	       warm_max, (unsigned long long)s.overflow_count);
	CHECK(s.overflow_count == 0, "overflow %llu",
	      (unsigned long long)s.overflow_count);
	/* 65 MiB touched per phase is ~16,600 pages: a warm phase that
	 * re-faults even a tenth of it has lost the pages. */
	CHECK(warm_max < 1700, "warm phase faulted %ld pages (cold %ld)",
	      warm_max, cold);
	return 0;
}

/* --------------------------------------------------------- oversize */

static int occurrences(const char *hay, const char *needle)
{
	int n = 0;
	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

static int run_oversize(void)
{
	static const char full[] = "the phase region is full";
	/* Catch zkalloc's stderr in a file. */
	FILE *cap = tmpfile();
	CHECK(cap != NULL, "tmpfile");
	if (cap == NULL)
		return 1;
	int saved = dup(2);
	dup2(fileno(cap), 2);
	CHECK(zk_begin_phase() == 0, "begin");
	zk_stats_t s0 = stats();
	CHECK(s0.max_block > 0 && s0.max_block <= 64 * MiB,
	      "region %zu: run with ZK_ALLOC_REGION_GB=0.0625", s0.max_block);

	/* Impossible sizes: ENOMEM, not overflow. */
	errno = 0;
	void *p = zk_malloc(SIZE_MAX / 2);
	CHECK(p == NULL && errno == ENOMEM, "malloc(SIZE_MAX / 2): %p, %d", p,
	      errno);
	p = zk_aligned_alloc(4096, SIZE_MAX / 4);
	CHECK(p == NULL, "aligned_alloc(SIZE_MAX / 4)");
	zk_stats_t s1 = stats();
	CHECK(s1.overflow_count == s0.overflow_count &&
		  s1.overflow_bytes == s0.overflow_bytes,
	      "a failed request counted as overflow");

	/* An alignment no region of this process can honour: served apart
	 * (or refused), but the region is not full. */
	char *tib = zk_aligned_alloc((size_t)1 << 40, 4096);
	printf("1 TiB alignment: %p\n", (void *)tib);
	if (tib != NULL) {
		CHECK(((uintptr_t)tib & (((uintptr_t)1 << 40) - 1)) == 0,
		      "1 TiB alignment: %p", (void *)tib);
		CHECK(!zk_owns(tib),
		      "a 1 TiB-aligned block in a 64 MiB region");
		memset(tib, 1, 4096);
		zk_free(tib);
	}
	fflush(stderr);
	long before_fill = ftell(cap);

	/* Now fill the region for real: 8 MiB blocks until one overflows. */
	void *blocks[16] = {0};
	int n = 0;
	while (n < 16 &&
	       stats().overflow_count == s1.overflow_count + (tib != NULL)) {
		blocks[n] = zk_malloc(8 * MiB);
		CHECK(blocks[n] != NULL, "block %d", n);
		if (blocks[n] == NULL)
			break;
		memset(blocks[n], n, 8 * MiB);
		n++;
	}
	zk_stats_t s2 = stats();
	CHECK(s2.overflow_count > s1.overflow_count + (tib != NULL),
	      "%d blocks of 8 MiB did not fill a 64 MiB region", n);
	CHECK(n > 0 && !zk_owns(blocks[n - 1]) && zk_owns(blocks[0]),
	      "the block past the region's end must be overflow");
	for (int i = 0; i < n; i++) {
		char *b = blocks[i];
		CHECK(b[0] == (char)i && b[8 * MiB - 1] == (char)i,
		      "block %d changed", i);
		zk_free(b);
	}
	zk_end_phase();
	fflush(stderr);
	dup2(saved, 2);
	static char text[1 << 14];
	rewind(cap);
	size_t len = fread(text, 1, sizeof(text) - 1, cap);
	text[len] = '\0';
	fputs(text, stderr);
	const char *at = strstr(text, full);
	CHECK(at == NULL || at - text >= before_fill,
	      "an impossible request was reported as a full region");
	CHECK(occurrences(text, full) == 1,
	      "the full region must be reported once, not %d times",
	      occurrences(text, full));
	return 0;
}

/* ------------------------------------------------------ check-small */

static _Atomic int churn_stop;
static _Atomic unsigned churned[2]; /* blocks each thread went through */

static void *churn64(void *arg)
{
	_Atomic unsigned *count = arg;
	unsigned char *ring[32] = {0};
	for (unsigned i = 0; !churn_stop; i++, (*count)++) {
		unsigned char *old = ring[i % 32];
		for (int k = 0; old && k < 64; k++)
			if (old[k] != old[0]) {
				CHECK(0, "a 64-byte block changed");
				churn_stop = 1;
				break;
			}
		zk_free(old);
		ring[i % 32] = zk_malloc(64);
		memset(ring[i % 32], (int)i, 64);
	}
	for (int i = 0; i < 32; i++)
		zk_free(ring[i]);
	return NULL;
}

static int run_check_small(void)
{
	/* Initialise before the threads start (ThreadSanitizer cannot see
	 * jemalloc's own synchronisation of its first arenas). */
	CHECK(zk_begin_phase() == 0, "first begin");
	zk_end_phase();
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, churn64, &churned[i]);
	/* Until each thread went through 20,000 blocks, across phases. */
	int ph = 0;
	for (; (ph < 10000 || churned[0] < 20000 || churned[1] < 20000) &&
	       ph < 10000000 && !churn_stop;
	     ph++) {
		CHECK(zk_begin_phase() == 0, "begin %d", ph);
		zk_end_phase();
	}
	printf("%d phases, %u and %u blocks churned\n", ph, churned[0],
	       churned[1]);
	churn_stop = 1;
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	/* A false report would have aborted the process. */
	return 0;
}

/* --------------------------------------------------------- tls-dtor */

static pthread_key_t late_key;
static _Atomic int late_ok;

static void late_dtor(void *v)
{
	(void)v;
	/* Runs after jemalloc's own thread cleanup (its key is older):
	 * jemalloc sets the thread up again, zkalloc binds it again. */
	char *p = zk_malloc(MiB);
	if (p != NULL) {
		memset(p, 3, MiB);
		if (p[MiB - 1] == 3)
			late_ok++;
	}
	zk_free(p);
}

static void *late_thread(void *arg)
{
	(void)arg;
	pthread_setspecific(late_key, (void *)1);
	void *p = zk_malloc(MiB); /* binds the thread to its arena */
	zk_free(p);
	return NULL;
}

static int run_tls_dtor(void)
{
	CHECK(zk_begin_phase() == 0, "begin");
	zk_end_phase();
	CHECK(pthread_key_create(&late_key, late_dtor) == 0, "key");
	CHECK(zk_begin_phase() == 0, "begin");
	zk_stats_t s0 = stats();
	for (int i = 0; i < 50; i++) {
		pthread_t t;
		pthread_create(&t, NULL, late_thread, NULL);
		pthread_join(t, NULL);
	}
	zk_stats_t s = stats();
	CHECK(late_ok == 50, "%d of 50 late destructors got usable memory",
	      late_ok);
	CHECK(s.arenas_created <= s.nslabs, "%llu arenas made, %u allowed",
	      (unsigned long long)s.arenas_created, s.nslabs);
	/* 50 MiB went through exiting threads: at most jemalloc's caches of
	 * a few of them may stay. */
	CHECK(s.live_bytes <= s0.live_bytes + 8 * MiB,
	      "pool bytes allocated %llu after 50 threads, %llu before",
	      (unsigned long long)s.live_bytes,
	      (unsigned long long)s0.live_bytes);
	CHECK(s.overflow_count == 0, "overflow %llu",
	      (unsigned long long)s.overflow_count);
	zk_end_phase();
	return 0;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	int rc = strcmp(mode, "keys") == 0	 ? run_keys()
		 : strcmp(mode, "conf") == 0	 ? run_conf()
		 : strcmp(mode, "oversize") == 0 ? run_oversize()
		 : strcmp(mode, "tls-dtor") == 0 ? run_tls_dtor()
		 : strcmp(mode, "check-small") == 0
		     ? run_check_small()
		     : (fprintf(stderr, "usage: hardening "
					"keys|conf|oversize|"
					"check-small|tls-dtor\n"),
			2);
	return rc != 0 ? rc : failures != 0;
}
