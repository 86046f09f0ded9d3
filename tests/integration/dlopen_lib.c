/*
 * libzkalloc.so loaded with dlopen() into a process that already runs on
 * jemalloc (this program links only jemalloc), as a plugin or a language
 * binding would load it, then dlclose()d while its state lives on.
 *
 * What is promised: the dlopen succeeds (the library's initial-exec TLS fits
 * glibc's static TLS reserve); zk_* work through dlsym; dlclose() leaves the
 * library mapped (it is linked -z nodelete), because jemalloc keeps
 * zkalloc's extent hooks in zkalloc's arenas for good. So pool blocks
 * freed with plain jemalloc after the dlclose (which calls those hooks),
 * by threads that used phases and exit afterwards, are safe, and so are
 * threads made later; a second dlopen gets the same instance back (same
 * epoch).
 *
 * Usage: dlopen_lib <path of libzkalloc.so>
 */
#define _GNU_SOURCE
#include <jemalloc/jemalloc.h>

#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "example_check.h"

#define NTHREADS 4
#define BIG	 ((size_t)16 << 20)

static struct {
	int (*begin)(void);
	int (*end)(void);
	void *(*malloc)(size_t);
	void (*free)(void *);
	bool (*owns)(const void *);
	uint64_t (*epoch)(void);
} zk;

static pthread_barrier_t used, closed;

static int load(void *h)
{
	struct {
		const char *name;
		void **slot;
	} syms[] = {
	    {"zk_begin_phase", (void **)&zk.begin},
	    {"zk_end_phase", (void **)&zk.end},
	    {"zk_malloc", (void **)&zk.malloc},
	    {"zk_free", (void **)&zk.free},
	    {"zk_owns", (void **)&zk.owns},
	    {"zk_phase_epoch", (void **)&zk.epoch},
	};
	for (size_t i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
		*syms[i].slot = dlsym(h, syms[i].name);
		if (*syms[i].slot == NULL) {
			CHECK(0, "dlsym %s: %s", syms[i].name, dlerror());
			return -1;
		}
	}
	return 0;
}

/* Makes a pool block in the phase (binding the thread to a zkalloc
 * arena) and keeps it until the library has been dlclose()d: then frees
 * it with jemalloc's own dallocx, which hands the extent to zkalloc's
 * hooks, and exits. */
static void *phase_user(void *arg)
{
	(void)arg;
	char *p = zk.malloc(BIG);
	bool owned = p != NULL && zk.owns(p);
	if (p != NULL)
		memset(p, 1, BIG);
	pthread_barrier_wait(&used);
	pthread_barrier_wait(&closed);
	owned = owned && p[BIG - 1] == 1;
	if (p != NULL)
		dallocx(p, 0);
	return owned ? (void *)1 : NULL;
}

/* A thread made after the dlclose: plain jemalloc, then exit. */
static void *later(void *arg)
{
	(void)arg;
	void *p = mallocx(BIG, 0);
	if (p != NULL)
		dallocx(p, 0);
	return p;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s libzkalloc.so\n", argv[0]);
		return 2;
	}
	/* jemalloc is loaded and initialised before zkalloc arrives. */
	void *warm = mallocx(BIG, 0);
	CHECK(warm != NULL, "jemalloc mallocx");
	dallocx(warm, 0);

	void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		fprintf(stderr, "FAIL: dlopen %s: %s\n", argv[1], dlerror());
		return 1;
	}
	if (load(h) != 0)
		return 1;

	CHECK(zk.begin() == 0, "zk_begin_phase");
	void *p = zk.malloc(BIG);
	CHECK(p != NULL && zk.owns(p), "a 16 MiB block in the phase must be "
				       "pool memory");
	zk.free(p);

	pthread_barrier_init(&used, NULL, NTHREADS + 1);
	pthread_barrier_init(&closed, NULL, NTHREADS + 1);
	pthread_t t[NTHREADS];
	for (int i = 0; i < NTHREADS; i++)
		pthread_create(&t[i], NULL, phase_user, NULL);
	pthread_barrier_wait(&used);
	CHECK(zk.end() == 0, "zk_end_phase");
	uint64_t epoch = zk.epoch();

	CHECK(dlclose(h) == 0, "dlclose: %s", dlerror());
	/* nodelete: still loaded, so RTLD_NOLOAD finds it. */
	void *again = dlopen(argv[1], RTLD_NOW | RTLD_NOLOAD);
	CHECK(again != NULL, "libzkalloc.so was unloaded by dlclose");

	/* The threads free their pool blocks through jemalloc and exit. */
	pthread_barrier_wait(&closed);
	for (int i = 0; i < NTHREADS; i++) {
		void *owned = NULL;
		pthread_join(t[i], &owned);
		CHECK(owned != NULL,
		      "thread %d: its block was not pool memory or changed", i);
	}
	for (int i = 0; i < NTHREADS; i++) {
		pthread_t l;
		void *r = NULL;
		pthread_create(&l, NULL, later, NULL);
		pthread_join(l, &r);
		CHECK(r != NULL, "a thread after dlclose could not allocate");
	}

	/* The same instance is still there, and it still works. */
	if (again != NULL) {
		CHECK(load(again) == 0, "dlsym after reopening");
		CHECK(
		    zk.epoch() == epoch, "epoch %llu after reopening, was %llu",
		    (unsigned long long)zk.epoch(), (unsigned long long)epoch);
		CHECK(zk.begin() == 0, "zk_begin_phase after reopening");
		p = zk.malloc(BIG);
		CHECK(p != NULL && zk.owns(p), "pool memory after reopening");
		zk.free(p);
		zk.end();
		dlclose(again);
	}
	printf("dlopen, %d phase threads, dlclose, %d threads after: epoch "
	       "%llu\n",
	       NTHREADS, NTHREADS, (unsigned long long)zk.epoch());
	return failures ? 1 : 0;
}
