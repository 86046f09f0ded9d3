/* Helpers shared by the stress suites. */
#define _GNU_SOURCE
#include "stress_util.h"

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
