/*
 * zkalloc for C++: a scope guard for phases, zk::phase(f), and a standard
 * allocator. Header only; link libzkalloc (pkg-config zkalloc) as for C.
 *
 * As in zkalloc.h, every block stays valid until it is freed: a container
 * filled inside one phase may be kept and used in every later one.
 */
#ifndef ZKALLOC_HPP
#define ZKALLOC_HPP

#include "zkalloc.h"

#include <cstddef>
#include <limits>
#include <new>
#include <type_traits>
#include <utility>

namespace zk
{

/* Begins a phase when constructed, ends it when destroyed (also while an
 * exception unwinds). Like ZK_PHASE: if a phase was already active, the
 * guard lives inside that phase and does not end it. Not copyable, not
 * movable: exactly one guard ends a phase. */
class phase_guard
{
      public:
	phase_guard() noexcept : rc_(zk_begin_phase())
	{
	}
	~phase_guard()
	{
		if (rc_ == 0)
			zk_end_phase();
	}
	phase_guard(const phase_guard &) = delete;
	phase_guard &operator=(const phase_guard &) = delete;

	/* zk_begin_phase()'s result: 0, or EBUSY (a phase was already active
	 * and this guard will not end it). */
	int status() const noexcept
	{
		return rc_;
	}

	/* True if this guard began the phase it will end. */
	bool owns_phase() const noexcept
	{
		return rc_ == 0;
	}

      private:
	int rc_;
};

/* Run f() inside a phase and return its result; the phase ends when f
 * returns or throws. */
template <class F> auto phase(F &&f) -> decltype(std::forward<F>(f)())
{
	phase_guard guard;
	return std::forward<F>(f)();
}

/* A standard allocator over zk_malloc/zk_aligned_alloc/zk_free: routed like
 * zk_malloc (in a phase, from the pool). Stateless: every instance can
 * free what another allocated. Throws std::bad_alloc (or
 * std::bad_array_new_length on size overflow) like std::allocator. */
template <class T> struct allocator {
	using value_type = T;
	using size_type = std::size_t;
	using difference_type = std::ptrdiff_t;
	using propagate_on_container_move_assignment = std::true_type;
	using is_always_equal = std::true_type;

	allocator() noexcept = default;
	template <class U> allocator(const allocator<U> &) noexcept
	{
	}

	T *allocate(std::size_t n)
	{
		if (n > std::numeric_limits<std::size_t>::max() / sizeof(T))
			throw std::bad_array_new_length();
		void *p;
		if (alignof(T) > alignof(std::max_align_t))
			p = zk_aligned_alloc(alignof(T), n * sizeof(T));
		else
			p = zk_malloc(n * sizeof(T));
		if (p == nullptr)
			throw std::bad_alloc();
		return static_cast<T *>(p);
	}

	void deallocate(T *p, std::size_t) noexcept
	{
		zk_free(p);
	}
};

template <class T, class U>
bool operator==(const allocator<T> &, const allocator<U> &) noexcept
{
	return true;
}
template <class T, class U>
bool operator!=(const allocator<T> &, const allocator<U> &) noexcept
{
	return false;
}

} // namespace zk

#endif /* ZKALLOC_HPP */
