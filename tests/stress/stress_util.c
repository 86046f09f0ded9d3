/* Helpers shared by the stress suites. */
#define _GNU_SOURCE
#include "stress_util.h"

#include <zkalloc.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

unsigned su_width(unsigned ci, unsigned reduced)
{
#ifdef ZK_STRESS_REDUCED
	(void)ci;
	return reduced;
#else
	(void)reduced;
	return ci;
#endif
}

unsigned su_scale(unsigned ci, unsigned reduced)
{
	unsigned n = su_width(ci, reduced);
	const char *s = getenv("ZK_STRESS_SCALE");
	if (s != NULL && atoi(s) > 0)
		n *= (unsigned)atoi(s);
	return n ? n : 1;
}

uint64_t su_seed(void)
{
	const char *s = getenv("ZK_STRESS_SEED");
	return s != NULL ? strtoull(s, NULL, 0) : 0x5eed2026ull;
}

const char *su_tail(const char *s)
{
	size_t n = strlen(s);
	return n > 1500 ? s + n - 1500 : s;
}

unsigned su_count(const char *h, const char *needle)
{
	unsigned n = 0;
	size_t len = strlen(needle);
	for (const char *p = h; (p = strstr(p, needle)) != NULL; p += len)
		n++;
	return n;
}

void su_purge_jemalloc(void)
{
	/* 4096 = MALLCTL_ARENAS_ALL */
	zk_mallctl("arena.4096.purge", NULL, NULL, NULL, 0);
}

void su_touch(void *p, size_t n, unsigned char v)
{
	volatile unsigned char *b = p;
	for (size_t i = 0; i < n; i += 4096)
		b[i] = v;
}

int su_fork_wait(int (*fn)(void *), void *arg, unsigned secs)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		alarm(secs); /* a hang is a failure, not a stuck CI */
		int rc = fn(arg);
		fflush(NULL);
		_exit(rc);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0)
		;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
