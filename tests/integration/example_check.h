/* The integration examples' one assertion: a failed CHECK prints where and
 * why and is counted (from any thread); each example's main returns
 * failures != 0. Plain programs, not Check suites: they are the README's
 * examples. */
#ifndef ZK_EXAMPLE_CHECK_H
#define ZK_EXAMPLE_CHECK_H

#include <stdio.h>

static int failures;
#define CHECK(cond, ...)                                                       \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);   \
			fprintf(stderr, __VA_ARGS__);                          \
			fputc('\n', stderr);                                   \
			__atomic_fetch_add(&failures, 1, __ATOMIC_RELAXED);    \
		}                                                              \
	} while (0)

#endif
