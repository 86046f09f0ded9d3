/*
 * The dynamic loader's own allocations under the drop-in library: dlopen
 * of many objects with TLS makes ld.so grow every thread's DTV (realloc)
 * and allocate dynamic TLS blocks (malloc), freed at thread exit and
 * dlclose (free). The main thread's first DTV comes from ld.so's startup
 * allocator, not malloc; glibc must never hand it to realloc/free (it
 * checks dl_initial_dtv in _dl_resize_dtv). Threads are started before the
 * objects are loaded, so their DTVs are resized too.
 *
 * Usage: tls_dlopen <path of tls_module.so>   (run with the override
 * preloaded; it copies the module NMOD times so each load is distinct)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NMOD	 40 /* glibc's DTV has room for 14 more modules at start */
#define NTHREADS 4

static int (*touch[NMOD])(void);
static pthread_barrier_t loaded;

static long touch_all(void)
{
	long sum = 0;
	for (int r = 0; r < 3; r++)
		for (int i = 0; i < NMOD; i++)
			sum += touch[i]();
	return sum;
}

static void *worker(void *arg)
{
	(void)arg;
	pthread_barrier_wait(&loaded); /* started before the loads */
	return (void *)touch_all();
}

static int copy_file(const char *from, const char *to)
{
	FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
	int ok = in && out;
	char buf[8192];
	size_t n;
	while (ok && (n = fread(buf, 1, sizeof(buf), in)) > 0)
		ok = fwrite(buf, 1, n, out) == n;
	if (in)
		fclose(in);
	if (out)
		ok = fclose(out) == 0 && ok;
	return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s tls_module.so\n", argv[0]);
		return 2;
	}
	if (dlsym(RTLD_DEFAULT, "zk_owns") == NULL) {
		fprintf(stderr, "FAIL: libzkalloc_override.so is not loaded\n");
		return 1;
	}
	char dir[] = "/tmp/zk-tls-XXXXXX";
	if (mkdtemp(dir) == NULL)
		return 1;
	pthread_barrier_init(&loaded, NULL, NTHREADS + 1);
	pthread_t t[NTHREADS];
	for (int k = 0; k < NTHREADS; k++)
		pthread_create(&t[k], NULL, worker, NULL);

	void *h[NMOD];
	char path[NMOD][64];
	int failed = 0;
	for (int i = 0; i < NMOD; i++) {
		snprintf(path[i], sizeof(path[i]), "%s/tls%d.so", dir, i);
		h[i] = copy_file(argv[1], path[i]) == 0
			   ? dlopen(path[i], RTLD_NOW | RTLD_LOCAL)
			   : NULL;
		touch[i] =
		    h[i] ? (int (*)(void))dlsym(h[i], "tls_touch") : NULL;
		if (touch[i] == NULL) {
			fprintf(stderr, "FAIL: load %s: %s\n", path[i],
				dlerror());
			failed = 1;
			break;
		}
	}
	if (failed) /* let the workers go without touching anything */
		_exit(1);
	pthread_barrier_wait(&loaded);

	/* Each call returns its thread's new count: 3 rounds of 1..3. */
	long want = 6L * NMOD;
	for (int k = 0; k < NTHREADS; k++) {
		void *r;
		pthread_join(t[k], &r);
		if ((long)r != want) {
			fprintf(stderr, "FAIL: thread %d sum %ld, want %ld\n",
				k, (long)r, want);
			failed = 1;
		}
	}
	if (touch_all() != want) {
		fprintf(stderr, "FAIL: main thread sum\n");
		failed = 1;
	}
	/* Threads that come and go after the loads, then unload. */
	for (int k = 0; k < 20; k++) {
		pthread_barrier_destroy(&loaded);
		pthread_barrier_init(&loaded, NULL, 1);
		pthread_t u;
		void *r;
		pthread_create(&u, NULL, worker, NULL);
		pthread_join(u, &r);
		failed |= (long)r != want;
	}
	for (int i = 0; i < NMOD; i++) {
		dlclose(h[i]);
		unlink(path[i]);
	}
	rmdir(dir);
	printf("%d TLS objects x %d threads: %s\n", NMOD, NTHREADS,
	       failed ? "FAILED" : "ok");
	return failed;
}
