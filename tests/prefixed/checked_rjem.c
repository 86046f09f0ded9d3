/*
 * Checked mode (ZK_ALLOC_CHECK=1) through the prefixed entry points, as a
 * Rust prover with tikv-jemallocator reaches it (_rjem_mallocx,
 * _rjem_sdallocx, _rjem_free: je_* under JEMALLOC_NO_DEMANGLE, wrapped to
 * zkalloc). Run with ZK_ALLOC_CHECK=1 in the environment.
 *
 * As a test it checks: a correct prover loop runs clean, a 16 MiB table
 * made in the first phase and kept for good included; freed pool memory is
 * quarantined (zk.stats.quarantined_bytes); a child that writes to a block
 * it freed with _rjem_sdallocx, and a child that frees a block twice, are
 * each stopped by SIGABRT with zkalloc's report ("use after free", "double
 * free") on stderr.
 */
#define _GNU_SOURCE
#define JEMALLOC_NO_DEMANGLE
#include <jemalloc/jemalloc.h>
#include <zkalloc.h>

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../integration/example_check.h"

#define MiB ((size_t)1 << 20)
#define BIG (16 * MiB)

static int phase(const char *name)
{
	return je_mallctl(name, NULL, NULL, NULL, 0);
}

/* Child: a write after free, which must not return. */
static void use_after_free(void)
{
	phase("zk.phase.begin");
	char *p = je_mallocx(BIG, 0);
	memset(p, 1, BIG);
	je_sdallocx(p, BIG, 0);
	fprintf(stderr, "child: writing\n");
	((volatile char *)p)[4096] = 2;
	_exit(0);
}

/* Child: a double free, which must not return. */
static void double_free(void)
{
	phase("zk.phase.begin");
	void *p = je_mallocx(BIG, 0);
	je_sdallocx(p, BIG, 0);
	fprintf(stderr, "child: freeing again\n");
	je_free(p);
	_exit(0);
}

/* Runs fn in a child; checks it died of SIGABRT with `report` on stderr. */
static void expect_report(void (*fn)(void), const char *what,
			  const char *report)
{
	int err[2];
	if (pipe(err) != 0) {
		CHECK(0, "pipe");
		return;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(err[1], 2);
		fn();
	}
	close(err[1]);
	char out[4096] = "";
	size_t got = 0;
	ssize_t n;
	while (got < sizeof(out) - 1 &&
	       (n = read(err[0], out + got, sizeof(out) - 1 - got)) > 0)
		got += (size_t)n;
	out[got] = '\0';
	close(err[0]);
	int status = 0;
	waitpid(pid, &status, 0);
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
	      "%s must abort in checked mode (status %#x): %s", what, status,
	      out);
	CHECK(strstr(out, "zkalloc: ZK_ALLOC_CHECK: ") != NULL &&
		  strstr(out, report) != NULL,
	      "%s: no '%s' report on stderr: '%s'", what, report, out);
	printf("%s: child stopped: %.160s\n", what, out);
}

int main(void)
{
	const char *check = getenv("ZK_ALLOC_CHECK");
	if (check == NULL || strcmp(check, "1") != 0) {
		fprintf(stderr, "FAIL: run with ZK_ALLOC_CHECK=1\n");
		return 1;
	}
	/* A correct loop: a table made lazily in the first phase and kept,
	 * per-proof buffers freed every way the prefixed API allows. */
	uint64_t *table = NULL;
	for (int round = 0; round < 4; round++) {
		CHECK(phase("zk.phase.begin") == 0, "begin %d", round);
		if (table == NULL) {
			table = je_mallocx(BIG, 0);
			for (size_t i = 0; table && i < BIG / 8; i++)
				table[i] = i * 3;
		}
		void *a = je_mallocx(BIG, 0), *b = je_malloc(MiB),
		     *c = je_calloc(1, 64);
		CHECK(a && b && c && zk_owns(a) && zk_owns(b),
		      "round %d: pool memory", round);
		memset(a, round, BIG);
		memset(b, round, MiB);
		je_sdallocx(a, BIG, 0);
		je_free(b);
		je_dallocx(c, 0);
		CHECK(phase("zk.phase.end") == 0, "end %d", round);
	}
	CHECK(table != NULL && zk_owns(table), "the kept table");
	for (size_t i = 0; table && i < BIG / 8; i++)
		if (table[i] != i * 3) {
			CHECK(0, "the kept table changed at %zu", i);
			break;
		}
	size_t q = 0, len = sizeof(q);
	CHECK(je_mallctl("zk.stats.quarantined_bytes", &q, &len, NULL, 0) ==
		      0 &&
		  q > 0,
	      "nothing quarantined in checked mode (%zu)", q);

	expect_report(use_after_free, "a write after _rjem_sdallocx",
		      "use after free");
	expect_report(double_free, "a second free", "double free");
	return failures ? 1 : 0;
}
