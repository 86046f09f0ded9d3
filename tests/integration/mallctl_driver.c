/*
 * Example: a prover built against jemalloc only (no zkalloc header, no
 * zkalloc library) that drives phases through mallctl("zk.phase.*").
 * Run plainly, mallctl answers the zk.* names with jemalloc's own ENOENT and
 * the program works on plain jemalloc. Run with libzkalloc_override.so
 * preloaded, the same binary gets phases: in a phase its malloc & co are
 * served from zkalloc's pool, whose pages the next proof takes again.
 *
 * Usage: mallctl_driver zk|plain   (which of the two the test expects)
 *
 * As a test it checks, in both modes: the zk.* answers; that the proofs
 * agree; that jemalloc's own names (by name and by MIB) still work. With
 * zkalloc it also checks that every in-phase block of
 * malloc/calloc/realloc/posix_memalign is pool memory (through zk_owns,
 * looked up with dlsym so the program does not need zkalloc to link),
 * that a block outside a phase is not, and that the pool's high water and
 * resident bytes stay put from the second proof on.
 */
#define _GNU_SOURCE
#include <jemalloc/jemalloc.h>

#include <dlfcn.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "example_check.h"

static bool (*owns)(const void *); /* zk_owns, when zkalloc is loaded */

/* The whole integration: two calls around each proof. */
static int phase_begin(void)
{
	return mallctl("zk.phase.begin", NULL, NULL, NULL, 0);
}
static int phase_end(void)
{
	return mallctl("zk.phase.end", NULL, NULL, NULL, 0);
}

static size_t zk_stat(const char *name)
{
	size_t v = 0, len = sizeof(v);
	return mallctl(name, &v, &len, NULL, 0) == 0 ? v : 0;
}

static void expect_phase(void *p, bool want, const char *what)
{
	if (owns != NULL)
		CHECK(owns(p) == want, "%s: pool memory is %d, want %d", what,
		      !want, want);
}

static uint64_t prove(size_t n)
{
	uint64_t *trace = malloc(n * sizeof(*trace));
	uint64_t *lde = calloc(2 * n, sizeof(*lde));
	void *aligned = NULL;
	int rc = posix_memalign(&aligned, 1 << 12, n);
	char *small = malloc(64);
	if (!trace || !lde || rc != 0 || !small)
		return 0;
	expect_phase(trace, true, "malloc");
	expect_phase(lde, true, "calloc");
	expect_phase(aligned, true, "posix_memalign");
	expect_phase(small, true, "malloc(64)");
	for (size_t i = 0; i < n; i++)
		trace[i] = i * 0x9e3779b97f4a7c15ull;
	for (size_t i = 0; i < 2 * n; i++)
		lde[i] ^= trace[i / 2] + i;
	trace = realloc(trace, 2 * n * sizeof(*trace)); /* in the pool */
	if (trace == NULL)
		return 0;
	expect_phase(trace, true, "realloc");
	memcpy(trace + n, trace, n * sizeof(*trace));
	uint64_t h = 0;
	for (size_t i = 0; i < 2 * n; i++)
		h = (h ^ lde[i] ^ trace[i]) * 0xff51afd7ed558ccdull;
	free(small);
	free(aligned);
	free(lde);
	free(trace);
	return h;
}

int main(int argc, char **argv)
{
	if (argc != 2 || (strcmp(argv[1], "zk") && strcmp(argv[1], "plain"))) {
		fprintf(stderr, "usage: %s zk|plain\n", argv[0]);
		return 2;
	}
	bool zk = strcmp(argv[1], "zk") == 0;
	owns = (bool (*)(const void *))dlsym(RTLD_DEFAULT, "zk_owns");
	CHECK((owns != NULL) == zk, "zk_owns is %s",
	      owns ? "loaded" : "not loaded");

	uint64_t first = 0;
	size_t top2 = 0, resident2 = 0;
	for (int proof = 0; proof < 4; proof++) {
		int rc = phase_begin();
		CHECK(rc == (zk ? 0 : ENOENT), "zk.phase.begin: %d", rc);
		if (zk) {
			bool active = false;
			size_t len = sizeof(active);
			CHECK(mallctl("zk.phase.active", &active, &len, NULL,
				      0) == 0 &&
				  active,
			      "zk.phase.active");
			uint64_t epoch = 0;
			len = sizeof(epoch);
			CHECK(mallctl("zk.phase.epoch", &epoch, &len, NULL,
				      0) == 0 &&
				  epoch == (uint64_t)proof + 1,
			      "zk.phase.epoch %llu", (unsigned long long)epoch);
			CHECK(phase_begin() == EBUSY, "begin while active");
		}
		uint64_t h = prove(1 << 19); /* 4 MiB trace */
		CHECK(h != 0, "proof %d could not allocate", proof);
		if (proof == 0)
			first = h;
		CHECK(h == first, "proof %d digest differs", proof);
		rc = phase_end();
		CHECK(rc == (zk ? 0 : ENOENT), "zk.phase.end: %d", rc);
		/* Flat once warm: each proof takes the pages the last one
		 * freed (2 MiB of slack). */
		size_t top = zk_stat("zk.stats.top_bytes"),
		       resident = zk_stat("zk.stats.resident_bytes");
		if (zk && proof == 1) {
			top2 = top;
			resident2 = resident;
		}
		if (zk && proof > 1)
			CHECK(top <= top2 + (2 << 20) &&
				  resident <= resident2 + (2 << 20),
			      "proof %d: high water %zu, resident %zu; after "
			      "proof 2: %zu, %zu",
			      proof, top, resident, top2, resident2);
	}
	if (zk) {
		CHECK(resident2 >= (4u << 20), "resident %zu", resident2);
		void *p = malloc(4 << 20);
		expect_phase(p, false, "malloc outside a phase");
		free(p);
	}

	/* jemalloc's own names keep working, by name and by MIB; zk.* names
	 * have no MIB in either mode. */
	const char *version = NULL;
	size_t len = sizeof(version);
	CHECK(mallctl("version", &version, &len, NULL, 0) == 0 && version &&
		  strncmp(version, "5.", 2) == 0,
	      "version");
	unsigned narenas = 0;
	len = sizeof(narenas);
	CHECK(mallctl("arenas.narenas", &narenas, &len, NULL, 0) == 0 &&
		  narenas > 0,
	      "arenas.narenas");
	size_t mib[4], miblen = 4;
	CHECK(mallctlnametomib("arenas.narenas", mib, &miblen) == 0,
	      "mallctlnametomib");
	unsigned by_mib = 0;
	len = sizeof(by_mib);
	CHECK(mallctlbymib(mib, miblen, &by_mib, &len, NULL, 0) == 0 &&
		  by_mib == narenas,
	      "mallctlbymib %u vs %u", by_mib, narenas);
	miblen = 4;
	CHECK(mallctlnametomib("zk.phase.begin", mib, &miblen) == ENOENT,
	      "zk names have no MIB");
	CHECK(mallctl("zk.no.such.name", NULL, NULL, NULL, 0) == ENOENT,
	      "unknown zk name");
	CHECK(mallctl("thread.tcache.flush", NULL, NULL, NULL, 0) == 0,
	      "thread.tcache.flush");

	printf("mode %s: digest %016llx\n", zk ? "zkalloc" : "plain jemalloc",
	       (unsigned long long)first);
	return failures ? 1 : 0;
}
