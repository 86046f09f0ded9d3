/*
 * Checked mode (ZK_ALLOC_CHECK=1) through the prefixed entry points: a Rust
 * prover's _rjem_sdallocx of a block from an earlier phase is caught like
 * zk_free's. Run with ZK_ALLOC_CHECK=1 in the environment.
 *
 * As a test it checks: ordinary phases run clean in checked mode (blocks
 * are phase memory, freed in their phase); a child that frees a phase-1
 * block with _rjem_sdallocx after phase 2 began is stopped by SIGABRT with
 * zkalloc's report on stderr.
 */
#define _GNU_SOURCE
#define JEMALLOC_NO_DEMANGLE
#include <jemalloc/jemalloc.h>
#include <zkalloc.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../integration/example_check.h"

#define BIG ((size_t)16 << 20)

static int phase(const char *name)
{
	return je_mallctl(name, NULL, NULL, NULL, 0);
}

/* The child: a stale free, which must not return. */
static void stale_free(void)
{
	phase("zk.phase.begin");
	void *p = je_mallocx(BIG, 0);
	phase("zk.phase.end");
	phase("zk.phase.begin");
	je_sdallocx(p, BIG, 0);
	_exit(0);
}

int main(void)
{
	const char *check = getenv("ZK_ALLOC_CHECK");
	if (check == NULL || strcmp(check, "1") != 0) {
		fprintf(stderr, "FAIL: run with ZK_ALLOC_CHECK=1\n");
		return 1;
	}
	for (int round = 0; round < 3; round++) {
		CHECK(phase("zk.phase.begin") == 0, "begin %d", round);
		void *p = je_mallocx(BIG, 0);
		CHECK(p != NULL && zk_owns(p), "round %d: phase memory", round);
		je_sdallocx(p, BIG, 0);
		CHECK(phase("zk.phase.end") == 0, "end %d", round);
	}

	int err[2];
	if (pipe(err) != 0)
		return 1;
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(err[1], 2);
		stale_free();
	}
	close(err[1]);
	char report[4096] = "";
	size_t got = 0;
	ssize_t n;
	while (got < sizeof(report) - 1 &&
	       (n = read(err[0], report + got, sizeof(report) - 1 - got)) > 0)
		got += (size_t)n;
	report[got] = '\0';
	int status = 0;
	waitpid(pid, &status, 0);
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
	      "a stale _rjem_sdallocx must abort in checked mode (status %#x)",
	      status);
	CHECK(strstr(report, "zkalloc") != NULL,
	      "no zkalloc report on stderr: '%s'", report);
	printf("child stopped: %.200s\n", report);
	return failures ? 1 : 0;
}
