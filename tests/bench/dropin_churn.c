/*
 * Small-allocation churn under the drop-in against jemalloc itself (run by
 * `meson test --benchmark`): the same program, which links neither, runs
 * once with LD_PRELOAD of libzkalloc_override.so and once with LD_PRELOAD
 * of libjemalloc.so.2, alternating, and the parent compares the children's
 * CPU time (user + system, from wait4's rusage) and wall-clock throughput.
 *
 * The workload is what a prover does outside its proofs: per thread a table
 * of live blocks of 16 B - 4 KiB (most small), where each step replaces a
 * random block (long lives), makes and drops a temporary (short lives) or
 * reallocs a block. No phase is begun: this measures the drop-in's cost on
 * ordinary memory, which should be jemalloc's own.
 *
 *   dropin_churn <override.so> <libjemalloc.so> [ops per thread]
 *   dropin_churn child <threads> <ops per thread>     (what the parent runs)
 *   dropin_churn loop <pairs>    a tight malloc+free loop of 16-256 B, one
 *                                thread (callgrind.sh counts instructions)
 *
 * Prints one line per thread count: median CPU seconds of each allocator
 * and their ratio. Not a pass/fail test: exit 0 unless a child fails.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SLOTS	4096
#define REPEATS 5

static volatile uint64_t sink;

static uint64_t next(uint64_t *s)
{
	/* xorshift64*: deterministic per thread, no libc state. */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dull;
}

/* 75% 16-256 B, 20% 256 B-1 KiB, 5% 1-4 KiB. */
static size_t pick_size(uint64_t r)
{
	unsigned bucket = (unsigned)(r % 100);
	r >>= 8;
	if (bucket < 75)
		return 16 + r % 241;
	if (bucket < 95)
		return 256 + r % 769;
	return 1024 + r % 3073;
}

static void touch(char *p, size_t n)
{
	p[0] = (char)n;
	p[n - 1] = (char)n;
}

static void *churn(void *arg)
{
	uint64_t ops = *(const uint64_t *)arg;
	uint64_t seed = 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)&ops;
	char *slot[SLOTS];
	size_t len[SLOTS];
	for (int i = 0; i < SLOTS; i++) {
		len[i] = pick_size(next(&seed));
		slot[i] = malloc(len[i]);
		if (slot[i] == NULL)
			return (void *)1;
		touch(slot[i], len[i]);
	}
	uint64_t acc = 0;
	for (uint64_t i = 0; i < ops; i++) {
		uint64_t r = next(&seed);
		unsigned k = (unsigned)(r >> 40) % SLOTS;
		unsigned what = (unsigned)(r % 10);
		size_t n = pick_size(next(&seed));
		if (what < 6) { /* replace: a long-lived block */
			free(slot[k]);
			slot[k] = malloc(n);
		} else if (what < 9) { /* temporary */
			char *t = malloc(n);
			if (t == NULL)
				return (void *)1;
			touch(t, n);
			acc += (unsigned char)t[n / 2];
			free(t);
			continue;
		} else { /* resize */
			char *q = realloc(slot[k], n);
			if (q == NULL)
				return (void *)1;
			slot[k] = q;
		}
		if (slot[k] == NULL)
			return (void *)1;
		len[k] = n;
		touch(slot[k], n);
	}
	for (int i = 0; i < SLOTS; i++) {
		acc += (unsigned char)slot[i][len[i] - 1];
		free(slot[i]);
	}
	sink += acc;
	return NULL;
}

static int run_child(int threads, uint64_t ops)
{
	pthread_t t[64];
	if (threads < 1 || threads > 64)
		return 2;
	for (int i = 0; i < threads; i++)
		if (pthread_create(&t[i], NULL, churn, &ops) != 0)
			return 1;
	int bad = 0;
	for (int i = 0; i < threads; i++) {
		void *r;
		pthread_join(t[i], &r);
		bad |= r != NULL;
	}
	return bad;
}

typedef struct result {
	double cpu, wall;
} result_t;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Run this program as a child with lib preloaded; 0 on success. */
static int spawn(const char *self, const char *lib, int threads,
		 const char *ops, result_t *out)
{
	char nthreads[16], preload[4096];
	snprintf(nthreads, sizeof(nthreads), "%d", threads);
	snprintf(preload, sizeof(preload), "LD_PRELOAD=%s", lib);
	double t0 = now();
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		char *argv[] = {(char *)self, "child", nthreads, (char *)ops,
				NULL};
		char *envp[] = {preload, NULL};
		execve(self, argv, envp);
		_exit(127);
	}
	int st;
	struct rusage ru;
	if (wait4(pid, &st, 0, &ru) != pid || !WIFEXITED(st) ||
	    WEXITSTATUS(st) != 0) {
		fprintf(stderr, "dropin_churn: child with %s failed\n", lib);
		return -1;
	}
	out->wall = now() - t0;
	out->cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 +
		   (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
	return 0;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Every block escapes through it, so the compiler cannot pair a malloc with
 * its free and drop both. */
static void *volatile escape;

/* pairs malloc+free pairs, each block touched once: the fast paths alone. */
static int run_loop(uint64_t pairs)
{
	for (uint64_t i = 0; i < pairs; i++) {
		size_t n = 16 + (i * 37 % 16) * 16; /* 16..256 B */
		char *p = malloc(n);
		if (p == NULL)
			return 1;
		*(volatile char *)p = (char)i;
		escape = p;
		free(escape);
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "child") == 0)
		return run_child(atoi(argv[2]), strtoull(argv[3], NULL, 10));
	if (argc == 3 && strcmp(argv[1], "loop") == 0)
		return run_loop(strtoull(argv[2], NULL, 10));
	if (argc < 3) {
		fprintf(stderr,
			"usage: %s <override.so> <libjemalloc.so> "
			"[ops per thread]\n",
			argv[0]);
		return 2;
	}
	const char *ops = argc > 3 ? argv[3] : "10000000";
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return 1;
	self[n] = '\0';
	const int counts[] = {1, 4};
	for (int c = 0; c < 2; c++) {
		double cpu[2][REPEATS], tput[2][REPEATS];
		for (int r = 0; r < REPEATS; r++)
			for (int w = 0; w < 2; w++) {
				/* Alternate, and flip who goes first, so
				 * drift hits both alike. */
				int which = (r & 1) ? 1 - w : w;
				result_t res;
				if (spawn(self, argv[1 + which], counts[c], ops,
					  &res) != 0)
					return 1;
				cpu[which][r] = res.cpu;
				tput[which][r] = (double)counts[c] *
						 strtod(ops, NULL) / res.wall;
			}
		double zc = median(cpu[0], REPEATS),
		       jc = median(cpu[1], REPEATS);
		double zt = median(tput[0], REPEATS),
		       jt = median(tput[1], REPEATS);
		printf("dropin-churn threads=%d: cpu drop-in %.3f s, jemalloc "
		       "%.3f s, ratio %.3f; throughput drop-in %.2f Mops/s, "
		       "jemalloc %.2f Mops/s, ratio %.3f\n",
		       counts[c], zc, jc, zc / jc, zt / 1e6, jt / 1e6, zt / jt);
	}
	return 0;
}
