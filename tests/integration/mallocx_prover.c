/*
 * A prover written against jemalloc's own API only (mallocx, rallocx,
 * xallocx, sallocx, sdallocx, dallocx, nallocx, mallctl): it links
 * jemalloc, knows nothing of zkalloc but the zk.phase.* mallctl names, and
 * counts the page faults of each proof.
 *
 *   mallocx_prover zk     run with the drop-in preloaded: from the third
 *                         proof on, each must fault almost nothing (at most
 *                         1% of the pages it touches, plus 64); the second
 *                         at most 10% (room for the pool's layout of
 *                         aligned and grown blocks to settle once; measured:
 *                         0 faults of 14336 pages, with the pool's
 *                         address-ordered first fit);
 *   mallocx_prover plain  plain jemalloc, the control: zk.phase.begin is
 *                         ENOENT, and blocks above jemalloc's
 *                         opt.oversize_threshold are returned to the
 *                         kernel, so each proof faults at least half of its
 *                         pages again: the count is sensitive.
 */
#include <jemalloc/jemalloc.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define MiB    ((size_t)1 << 20)
#define BLOCK  (16 * MiB)
#define PROOFS 5

static long minflt(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_minflt;
}

static int fail(const char *what)
{
	fprintf(stderr, "mallocx_prover: %s\n", what);
	return 1;
}

/* One proof's allocations; returns the bytes touched, 0 on error. */
static size_t proof(unsigned seed)
{
	size_t touched = 0;
	char *v[4];
	v[0] = mallocx(BLOCK, 0);
	v[1] = mallocx(BLOCK, MALLOCX_ZERO);
	v[2] = mallocx(BLOCK, MALLOCX_ALIGN(2 * MiB));
	v[3] = mallocx(BLOCK / 4, 0);
	for (int i = 0; i < 4; i++)
		if (v[i] == NULL)
			return 0;
	/* grow one in place if it can, else move it */
	if (xallocx(v[3], BLOCK / 2, 0, 0) < BLOCK / 2)
		v[3] = rallocx(v[3], BLOCK, 0);
	if (v[3] == NULL || sallocx(v[3], 0) < BLOCK / 2 ||
	    nallocx(BLOCK, 0) < BLOCK)
		return 0;
	for (size_t i = 0; i < BLOCK; i += 4096)
		if (v[1][i] != 0)
			return 0; /* MALLOCX_ZERO on recycled pages */
	for (int i = 0; i < 3; i++) {
		memset(v[i], (int)(seed + (unsigned)i), BLOCK);
		touched += BLOCK;
	}
	memset(v[3], 1, BLOCK / 2);
	touched += BLOCK / 2;
	sdallocx(v[0], BLOCK, 0);
	sdallocx(v[2], BLOCK, MALLOCX_ALIGN(2 * MiB));
	dallocx(v[1], 0);
	dallocx(v[3], 0);
	return touched;
}

int main(int argc, char **argv)
{
	if (argc != 2 || (strcmp(argv[1], "zk") && strcmp(argv[1], "plain")))
		return fail("usage: mallocx_prover zk|plain");
	bool zk = strcmp(argv[1], "zk") == 0;
	size_t oversize = 0, len = sizeof(oversize);
	if (mallctl("opt.oversize_threshold", &oversize, &len, NULL, 0) != 0)
		oversize = 0;
	long worst = 0;
	size_t pages = 0;
	for (int i = 0; i < PROOFS; i++) {
		int rc = mallctl("zk.phase.begin", NULL, NULL, NULL, 0);
		if (zk && rc != 0)
			return fail("zk.phase.begin failed: is the drop-in "
				    "preloaded?");
		if (!zk && rc != ENOENT)
			return fail("plain jemalloc answered zk.phase.begin");
		long f0 = minflt();
		size_t touched = proof((unsigned)i);
		long faults = minflt() - f0;
		if (touched == 0)
			return fail("an allocation or a check failed");
		if (zk)
			mallctl("zk.phase.end", NULL, NULL, NULL, 0);
		pages = touched / 4096;
		printf("proof %d: %ld faults for %zu pages touched\n", i,
		       faults, pages);
		if (zk && i == 1 && faults > (long)pages / 10)
			return fail(
			    "the first warm proof faulted more than 10% "
			    "of its pages");
		if (i > 1 && faults > worst)
			worst = faults;
		if (i > 0 && !zk && oversize != 0 && BLOCK > oversize &&
		    faults < (long)pages / 2)
			return fail("plain jemalloc kept the pages: the fault "
				    "count cannot tell");
	}
	if (zk && worst > (long)pages / 100 + 64) {
		fprintf(stderr,
			"mallocx_prover: a steady proof faulted %ld times "
			"(%zu pages touched)\n",
			worst, pages);
		return 1;
	}
	return 0;
}
