/*
 * Issue 8 scenarios that need a process of their own (argv[1] picks one):
 *
 *   keys      a process that made 40 pthread keys before zkalloc's own
 *             (CUDA, OpenMP, gRPC, logging all make keys) begins a phase
 *             through mallctl and prints from new threads. glibc callocs a
 *             second-level key block for key indices >= 32 inside
 *             pthread_setspecific, which re-enters the allocator from its
 *             slow path: this must finish (the meson timeout catches a
 *             hang). Run with the drop-in preloaded.
 *   conf      phases under whatever MALLOC_CONF the test sets: large blocks
 *             are phase memory, warm phases fault (almost) nothing, calloc
 *             reads zero, nothing overflows.
 *   oversize  an in-phase request larger than any slab (SIZE_MAX / 2) fails
 *             with ENOMEM and is neither "slab full" nor overflow.
 *   check-small  under ZK_ALLOC_CHECK=1, two threads churn 64-byte blocks
 *             while the main thread begins and ends 10,000 phases: small
 *             requests are not phase calls, so nothing is reported.
 *   tls-dtor  a thread whose TLS destructor allocates phase memory after
 *             zkalloc's own destructor ran does not keep a slab forever.
 */
#define _GNU_SOURCE
#include <zkalloc.h>

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
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

static int run_conf(void)
{
	long cold = 0, warm_max = 0;
	for (int ph = 0; ph < 6; ph++) {
		long f0 = minor_faults();
		CHECK(zk_begin_phase() == 0, "begin");
		char *a = zk_malloc(MiB);
		char *b = zk_calloc(1, 24 * MiB);
		char *c = zk_malloc(100);
		CHECK(a && b && c, "allocation failed");
		CHECK(zk_owns(a) && zk_owns(b), "large blocks must be phase "
						"memory");
		CHECK(!zk_owns(c), "small blocks must be ordinary");
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
		zk_end_phase();
		long f = minor_faults() - f0;
		if (ph == 0)
			cold = f;
		else if (f > warm_max)
			warm_max = f;
	}
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

static int run_oversize(void)
{
	/* Catch zkalloc's stderr in a file. */
	FILE *cap = tmpfile();
	CHECK(cap != NULL, "tmpfile");
	int saved = dup(2);
	dup2(fileno(cap), 2);
	CHECK(zk_begin_phase() == 0, "begin");
	zk_stats_t s0 = stats();
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
	/* A full slab must still be reported after that. */
	void *big = zk_malloc(stats().slab_size - 4096);
	zk_free(big);
	zk_end_phase();
	fflush(stderr);
	dup2(saved, 2);
	char text[4096] = {0};
	rewind(cap);
	size_t n = fread(text, 1, sizeof(text) - 1, cap);
	fputs(text, stderr);
	(void)n;
	CHECK(strstr(text, "slab is full (a request of 9223") == NULL,
	      "an impossible request was reported as a full slab");
	CHECK(strstr(text, "slab is full") != NULL,
	      "a request just below the slab size was not reported");
	return 0;
}

/* ------------------------------------------------------ check-small */

static _Atomic int churn_stop;

static void *churn64(void *arg)
{
	(void)arg;
	void *ring[32] = {0};
	for (unsigned i = 0; !churn_stop; i++) {
		zk_free(ring[i % 32]);
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
		pthread_create(&t[i], NULL, churn64, NULL);
	for (int ph = 0; ph < 10000; ph++) {
		CHECK(zk_begin_phase() == 0, "begin %d", ph);
		zk_end_phase();
	}
	churn_stop = 1;
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	return 0; /* a false report would have aborted the process */
}

/* --------------------------------------------------------- tls-dtor */

static pthread_key_t late_key;

static void late_dtor(void *v)
{
	(void)v;
	/* Runs after zkalloc's destructor on the first pass (keys made
	 * after zkalloc's run later): phase memory again. */
	void *p = zk_malloc(MiB);
	if (p != NULL)
		memset(p, 3, MiB);
	zk_free(p);
}

static void *late_thread(void *arg)
{
	(void)arg;
	pthread_setspecific(late_key, (void *)1);
	void *p = zk_malloc(MiB); /* takes a slab, registers zkalloc's key */
	zk_free(p);
	return NULL;
}

static int run_tls_dtor(void)
{
	CHECK(zk_begin_phase() == 0, "begin");
	zk_end_phase();
	/* zkalloc's key exists now: this one is made later, so its
	 * destructor runs after zkalloc's. */
	CHECK(pthread_key_create(&late_key, late_dtor) == 0, "key");
	CHECK(zk_begin_phase() == 0, "begin");
	for (int i = 0; i < 50; i++) {
		pthread_t t;
		pthread_create(&t, NULL, late_thread, NULL);
		pthread_join(t, NULL);
	}
	zk_stats_t s = stats();
	CHECK(s.slabs_in_use == 0, "%u slabs still held by exited threads",
	      s.slabs_in_use);
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
					"keys|conf|"
					"oversize|tls-dtor\n"),
			2);
	return rc != 0 ? rc : failures != 0;
}
