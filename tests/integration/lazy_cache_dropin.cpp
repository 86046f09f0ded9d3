/*
 * Issue 14, through the drop-in library (lazy_cache.h has the scenario): a
 * C++ program linked against jemalloc only, run with libzkalloc_override.so
 * preloaded, phases through mallctl("zk.phase.*"), caches made with plain
 * malloc + realloc and with new[]. Run with the default settings and with
 * ZK_ALLOC_MIN_BYTES=4096.
 */
#include <jemalloc/jemalloc.h>

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>

#include "lazy_cache.h"

static bool (*zk_owns_fn)(const void *); /* the drop-in's, via dlsym */
static size_t min_bytes;

static bool owns(const void *p)
{
	return zk_owns_fn(p);
}

static uint64_t stat_u64(const char *name)
{
	uint64_t v = 0;
	size_t len = sizeof(v);
	CHECK(mallctl(name, &v, &len, nullptr, 0) == 0, "%s", name);
	return v;
}

static int expect(size_t n)
{
	return n >= min_bytes;
}

static void *new_block(size_t n)
{
	return new unsigned char[n];
}

static void delete_block(void *p)
{
	delete[] static_cast<unsigned char *>(p);
}

int main()
{
	zk_owns_fn = reinterpret_cast<bool (*)(const void *)>(
	    dlsym(RTLD_DEFAULT, "zk_owns"));
	size_t len = sizeof(min_bytes);
	if (zk_owns_fn == nullptr ||
	    mallctl("zk.opt.min_bytes", &min_bytes, &len, nullptr, 0) != 0) {
		std::fprintf(stderr, "FAIL: the drop-in is not preloaded\n");
		return 1;
	}
	static const lc_ops ops = {std::malloc, std::realloc, std::free,
				   new_block,	delete_block, owns,
				   expect,	stat_u64};
	lc_start(&ops);
	for (int proof = 0; proof < LC_PROOFS; proof++) {
		CHECK(mallctl("zk.phase.begin", nullptr, nullptr, nullptr, 0) ==
			  0,
		      "zk.phase.begin");
		lc_proof(proof);
		CHECK(mallctl("zk.phase.end", nullptr, nullptr, nullptr, 0) ==
			  0,
		      "zk.phase.end");
	}
	return lc_finish("lazy_cache_dropin");
}
