/*
 * The mallctl example against the program's own prefixed jemalloc: every
 * call is _rjem_mallctl (je_mallctl under JEMALLOC_NO_DEMANGLE), the only
 * control a Rust prover with tikv-jemalloc-sys has. zk.* names reach
 * zkalloc; jemalloc's own names reach jemalloc.
 *
 * As a test it checks the zk.phase.* answers (begin, EBUSY on a second
 * begin, active, epoch, end), the tikv ctl crate's void write (non-NULL
 * newp, newlen 0: EINVAL), an unknown zk name (ENOENT), that jemalloc's own
 * "version" and "arenas.narenas" are answered by jemalloc, and that a
 * large _rjem_mallocx inside the phase comes from the pool, that zk.version is
 * 0.2's and that 0.1's option names are gone (ENOENT).
 */
#define JEMALLOC_NO_DEMANGLE
#include <jemalloc/jemalloc.h>
#include <zkalloc.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../integration/example_check.h"

static bool active(void)
{
	bool v = false;
	size_t len = sizeof(v);
	int err = je_mallctl("zk.phase.active", &v, &len, NULL, 0);
	CHECK(err == 0, "zk.phase.active: %d", err);
	return v;
}

static uint64_t epoch(void)
{
	uint64_t v = 0;
	size_t len = sizeof(v);
	int err = je_mallctl("zk.phase.epoch", &v, &len, NULL, 0);
	CHECK(err == 0, "zk.phase.epoch: %d", err);
	return v;
}

int main(void)
{
	const char *version = NULL;
	size_t len = sizeof(version);
	CHECK(je_mallctl("version", &version, &len, NULL, 0) == 0 &&
		  version != NULL && strncmp(version, "5.3.0", 5) == 0,
	      "jemalloc's version: %s", version ? version : "(none)");
	unsigned narenas = 0;
	len = sizeof(narenas);
	CHECK(je_mallctl("arenas.narenas", &narenas, &len, NULL, 0) == 0 &&
		  narenas > 0,
	      "arenas.narenas: %u", narenas);

	const char *zk_version = NULL;
	len = sizeof(zk_version);
	CHECK(je_mallctl("zk.version", &zk_version, &len, NULL, 0) == 0 &&
		  zk_version != NULL && strncmp(zk_version, "0.2.", 4) == 0,
	      "zk.version: %s", zk_version ? zk_version : "(none)");
	size_t old = 0;
	len = sizeof(old);
	CHECK(je_mallctl("zk.opt.slab_size", &old, &len, NULL, 0) == ENOENT,
	      "0.1's zk.opt.slab_size must be gone");

	uint64_t e0 = epoch();
	CHECK(!active(), "no phase before the first begin");
	CHECK(je_mallctl("zk.phase.begin", NULL, NULL, NULL, 0) == 0,
	      "zk.phase.begin");
	CHECK(active(), "zk.phase.active after begin");
	CHECK(epoch() == e0 + 1, "epoch %llu after begin, was %llu",
	      (unsigned long long)epoch(), (unsigned long long)e0);
	CHECK(je_mallctl("zk.phase.begin", NULL, NULL, NULL, 0) == EBUSY,
	      "a second begin must be EBUSY");

	void *p = je_mallocx(32u << 20, 0);
	CHECK(p != NULL && zk_owns(p),
	      "a 32 MiB mallocx in the phase must come from the pool");
	je_dallocx(p, 0);

	/* tikv-jemalloc-ctl's raw::write(name, ()) */
	char unit = 0;
	CHECK(je_mallctl("zk.phase.end", NULL, NULL, &unit, 0) == EINVAL,
	      "a void action with newp != NULL must be EINVAL");
	CHECK(active(), "the refused end must not end the phase");
	CHECK(je_mallctl("zk.phase.end", NULL, NULL, NULL, 0) == 0,
	      "zk.phase.end");
	CHECK(!active(), "no phase after end");
	CHECK(je_mallctl("zk.no.such.name", NULL, NULL, NULL, 0) == ENOENT,
	      "an unknown zk name must be ENOENT");
	CHECK(je_mallctl("no.such.name", NULL, NULL, NULL, 0) == ENOENT,
	      "an unknown jemalloc name must be jemalloc's ENOENT");

	printf("jemalloc %s, %u arenas, epoch %llu\n", version ? version : "?",
	       narenas, (unsigned long long)epoch());
	return failures ? 1 : 0;
}
