/*
 * Issue 14, through zkalloc's API (lazy_cache.h has the scenario):
 *
 *   lazy_cache api     zk_malloc / zk_realloc / zk_aligned_alloc / zk_free,
 *                      each proof inside ZK_PHASE;
 *   lazy_cache flags   jemalloc's mallocx / rallocx with zk_arena_flags(),
 *                      freed with dallocx.
 *
 * Run with the default settings and with ZK_ALLOC_MIN_BYTES=4096: a block
 * made in a proof and kept stays valid, in place, whatever its size and
 * whichever thread made it.
 */
#include <zkalloc.h>

#include <jemalloc/jemalloc.h>

#include <string.h>

#include "lazy_cache.h"

static size_t min_bytes;

static bool owns(const void *p)
{
	return zk_owns(p);
}

static uint64_t stat_u64(const char *name)
{
	uint64_t v = 0;
	size_t len = sizeof(v);
	CHECK(zk_mallctl(name, &v, &len, NULL, 0) == 0, "%s", name);
	return v;
}

/* api: every in-phase block is pool memory, or those of at least
 * ZK_ALLOC_MIN_BYTES. */
static int expect_api(size_t n)
{
	return n >= min_bytes;
}

static void *aligned64(size_t n)
{
	return zk_aligned_alloc(64, n);
}

/* flags: zk_arena_flags() names the thread's arena and skips the thread
 * cache (MALLOCX_TCACHE_NONE), so every size is the pool's. */
static int expect_flags(size_t n)
{
	(void)n;
	return 1;
}

static void *flags_make(size_t n)
{
	return mallocx(n, zk_arena_flags());
}

static void *flags_grow(void *p, size_t n)
{
	return rallocx(p, n, zk_arena_flags());
}

static void *flags_make_aligned(size_t n)
{
	return mallocx(n, zk_arena_flags() | MALLOCX_ALIGN(64));
}

static void flags_free(void *p)
{
	if (p != NULL)
		dallocx(p, 0);
}

int main(int argc, char **argv)
{
	static const lc_ops api = {
	    .make = zk_malloc,
	    .grow = zk_realloc,
	    .drop = zk_free,
	    .make_b = aligned64,
	    .drop_b = zk_free,
	    .owns = owns,
	    .expect = expect_api,
	    .stat = stat_u64,
	};
	static const lc_ops flags = {
	    .make = flags_make,
	    .grow = flags_grow,
	    .drop = flags_free,
	    .make_b = flags_make_aligned,
	    .drop_b = flags_free,
	    .owns = owns,
	    .expect = expect_flags,
	    .stat = stat_u64,
	};
	bool use_flags = argc > 1 && strcmp(argv[1], "flags") == 0;
	if (argc != 2 || (!use_flags && strcmp(argv[1], "api") != 0)) {
		fprintf(stderr, "usage: %s api|flags\n", argv[0]);
		return 2;
	}
	size_t len = sizeof(min_bytes);
	CHECK(zk_mallctl("zk.opt.min_bytes", &min_bytes, &len, NULL, 0) == 0,
	      "zk.opt.min_bytes");
	lc_start(use_flags ? &flags : &api);
	for (int proof = 0; proof < LC_PROOFS; proof++)
		ZK_PHASE
		{
			CHECK(zk_phase_rc == 0, "begin: %d", zk_phase_rc);
			lc_proof(proof);
		}
	return lc_finish(use_flags ? "lazy_cache flags" : "lazy_cache api");
}
