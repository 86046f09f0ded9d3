/*
 * Example: a prover loop in C++. zk::phase_guard scopes a proof; its vectors
 * use zk::allocator so their buffers come from the pool; an exception thrown
 * inside the phase still ends it. zk::phase(f) runs f in a phase and returns
 * its result. A vector filled in the first proof and kept is valid for as
 * long as it lives, like any other.
 *
 * As a test it checks each of those, and that the guard does not end a
 * phase it did not begin.
 */
#include <zkalloc.hpp>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <stdexcept>
#include <vector>

#include "example_check.h"

template <class T> using zvec = std::vector<T, zk::allocator<T>>;

/* One proof; its vectors are freed when it returns. */
static std::uint64_t prove(std::size_t rows, bool fail)
{
	zvec<std::uint64_t> trace(rows);
	CHECK(zk_owns(trace.data()), "trace must be pool memory");
	std::iota(trace.begin(), trace.end(), std::uint64_t{1});
	zvec<std::uint64_t> folded;
	for (std::size_t i = 0; i + 1 < trace.size(); i += 2)
		folded.push_back(trace[i] * 3 + trace[i + 1]);
	CHECK(zk_owns(folded.data()), "grown vector must be pool memory");
	if (fail)
		throw std::runtime_error("constraint not satisfied");
	return std::accumulate(folded.begin(), folded.end(), std::uint64_t{0});
}

struct alignas(64) row64 {
	std::uint64_t v[8];
};

int main()
{
	const std::size_t rows = 1 << 18; /* 2 MiB of u64 */
	std::uint64_t expect = 0;
	zvec<std::uint64_t> table; /* filled in the first proof, kept */
	for (int i = 0; i < 3; i++) {
		zk::phase_guard guard;
		CHECK(guard.status() == 0 && guard.owns_phase(), "begin: %d",
		      guard.status());
		if (table.empty())
			table.assign(rows / 4, 42);
		std::uint64_t d = prove(rows, false);
		if (i == 0)
			expect = d;
		CHECK(d == expect, "proof %d: digest differs", i);
	}
	CHECK(!zk_phase_active(), "guard must end the phase");
	CHECK(zk_owns(table.data()) &&
		  std::accumulate(table.begin(), table.end(),
				  std::uint64_t{0}) == 42 * (rows / 4),
	      "the table kept from the first proof changed");

	/* An exception thrown inside the phase unwinds through the guard. */
	bool caught = false;
	try {
		zk::phase_guard guard;
		prove(rows, true);
		CHECK(false, "prove must throw");
	} catch (const std::runtime_error &) {
		caught = true;
		CHECK(!zk_phase_active(), "unwinding must end the phase");
	}
	CHECK(caught, "exception must reach the handler");

	/* zk::phase returns f's result; f may also throw. */
	std::uint64_t d = zk::phase([&] { return prove(rows, false); });
	CHECK(d == expect, "zk::phase result");
	CHECK(!zk_phase_active(), "zk::phase must end the phase");
	caught = false;
	try {
		zk::phase([&] { return prove(rows, true); });
	} catch (const std::runtime_error &) {
		caught = true;
	}
	CHECK(caught && !zk_phase_active(), "zk::phase with a throw");
	zk::phase([] {}); /* void result */

	/* A guard inside an active phase neither begins nor ends it. */
	{
		zk::phase_guard outer;
		{
			zk::phase_guard inner;
			CHECK(inner.status() == EBUSY && !inner.owns_phase(),
			      "nested guard: %d", inner.status());
		}
		CHECK(zk_phase_active(), "inner guard must not end the phase");

		/* Over-aligned types go through zk_aligned_alloc. */
		zvec<row64> rowsv(1 << 12);
		CHECK(reinterpret_cast<std::uintptr_t>(rowsv.data()) % 64 == 0,
		      "alignment of row64");
		CHECK(zk_owns(rowsv.data()), "256 KiB of rows: pool memory");
	}
	CHECK(!zk_phase_active(), "outer guard ends the phase");

	/* Outside a phase zk::allocator is plain jemalloc. */
	zvec<int> plain(1 << 20);
	CHECK(!zk_owns(plain.data()), "outside a phase: jemalloc's memory");

	/* Allocation-size overflow is reported the standard way. */
	bool too_long = false;
	try {
		zk::allocator<row64>().allocate(SIZE_MAX / 8);
	} catch (const std::bad_array_new_length &) {
		too_long = true;
	}
	CHECK(too_long, "allocate overflow must throw bad_array_new_length");

	std::printf("C++ guard example ok, digest %llu\n",
		    static_cast<unsigned long long>(expect));
	return failures ? 1 : 0;
}
