/*
 * C++ under the drop-in library: a program linked against jemalloc only
 * (as a jemalloc-based prover is) whose operator new must still reach
 * zkalloc. Debian's libjemalloc exports operator new/delete itself, so
 * without the override's own definitions this program's new would bind to
 * jemalloc's and bypass phases.
 *
 * Usage: dropin_new zk|plain   (whether libzkalloc_override.so is preloaded)
 *
 * Checks: new, new[], std::vector, aligned new and nothrow new give pool
 * memory in a phase with zkalloc, and new outside a phase does not; the
 * new_handler is called and std::bad_alloc thrown on failure, nothrow new
 * returns nullptr, in both modes.
 */
#include <jemalloc/jemalloc.h>

#include <dlfcn.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>
#include <vector>

#include "example_check.h"

static bool (*owns)(const void *);

static void expect_phase(const void *p, bool want, const char *what)
{
	if (owns != nullptr)
		CHECK(owns(p) == want, "%s: pool memory %d, want %d", what,
		      !want, want);
}

struct alignas(4096) page {
	unsigned char b[4096];
};

static int handler_calls;
static void handler()
{
	handler_calls++;
	std::set_new_handler(nullptr); /* next failure throws */
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		std::fprintf(stderr, "usage: %s zk|plain\n", argv[0]);
		return 2;
	}
	bool zk = std::strcmp(argv[1], "zk") == 0;
	owns = reinterpret_cast<bool (*)(const void *)>(
	    dlsym(RTLD_DEFAULT, "zk_owns"));
	CHECK((owns != nullptr) == zk, "zk_owns loaded: %d", owns != nullptr);

	int rc = mallctl("zk.phase.begin", nullptr, nullptr, nullptr, 0);
	CHECK(rc == (zk ? 0 : ENOENT), "zk.phase.begin: %d", rc);
	{
		auto *a = new std::uint64_t[1 << 17]; /* 1 MiB */
		expect_phase(a, true, "new[]");
		std::vector<double> v(1 << 18);
		expect_phase(v.data(), true, "std::vector");
		auto *pg = new page[64];
		CHECK(reinterpret_cast<std::uintptr_t>(pg) % 4096 == 0,
		      "aligned new");
		expect_phase(pg, true, "aligned new[]");
		auto *nt = new (std::nothrow) char[1 << 20];
		CHECK(nt != nullptr, "nothrow new");
		expect_phase(nt, true, "nothrow new[]");
		auto *s = new int(7);
		expect_phase(s, true, "new int");
		delete s;
		delete[] nt;
		delete[] pg;
		delete[] a;
	}
	mallctl("zk.phase.end", nullptr, nullptr, nullptr, 0);
	{
		auto *s = new int(7);
		expect_phase(s, false, "new int outside a phase");
		std::vector<double> v(1 << 18);
		expect_phase(v.data(), false, "std::vector outside a phase");
		delete s;
	}

	/* Failure: the handler runs once, then bad_alloc. */
	std::set_new_handler(handler);
	bool thrown = false;
	try {
		volatile std::size_t huge = SIZE_MAX / 4;
		char *p = new char[huge];
		delete[] p;
	} catch (const std::bad_alloc &) {
		thrown = true;
	}
	CHECK(thrown && handler_calls == 1, "bad_alloc %d, handler calls %d",
	      thrown, handler_calls);
	volatile std::size_t huge = SIZE_MAX / 4;
	CHECK(new (std::nothrow) char[huge] == nullptr, "nothrow new fails");

	std::printf("operator new under %s ok\n", zk ? "zkalloc" : "jemalloc");
	return failures ? 1 : 0;
}
