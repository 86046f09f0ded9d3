/*
 * The drop-in library's C++ operator new/delete.
 *
 * libstdc++'s own operator new calls malloc, so it would reach zkalloc
 * without this file. But Debian's libjemalloc.so.2 exports operator
 * new/delete too (nm -D: _Znwm, _ZdlPv, ...), and a C++ program linked with
 * -ljemalloc binds to those before libstdc++'s: its new/delete would bypass
 * the override. Exporting them here puts them in front of both, whether the
 * library is preloaded or linked first.
 *
 * Semantics are the standard's ([new.delete]): on failure the throwing forms
 * call the installed new_handler and retry, and throw std::bad_alloc when
 * there is none; the nothrow forms return nullptr instead of throwing.
 */
#include <zkalloc.h>

#include <cstddef>
#include <new>

#define EXPORT __attribute__((visibility("default")))

namespace
{

void *new_or_throw(std::size_t size, std::size_t align)
{
	for (;;) {
		void *p =
		    align ? zk_aligned_alloc(align, size) : zk_malloc(size);
		if (p != nullptr)
			return p;
		std::new_handler h = std::get_new_handler();
		if (h == nullptr)
			throw std::bad_alloc();
		h();
	}
}

void *new_nothrow(std::size_t size, std::size_t align) noexcept
{
	try {
		return new_or_throw(size, align);
	} catch (...) {
		return nullptr;
	}
}

/* std::align_val_t is a power of two; anything below glibc's malloc
 * alignment (16, also __STDCPP_DEFAULT_NEW_ALIGNMENT__ on x86-64 and
 * aarch64) is served as that, like the memalign family in override.c. */
std::size_t aligned(std::align_val_t a)
{
	std::size_t v = static_cast<std::size_t>(a);
	return v < 16 ? 16 : v;
}

} // namespace

EXPORT void *operator new(std::size_t n)
{
	return new_or_throw(n, 0);
}
EXPORT void *operator new[](std::size_t n)
{
	return new_or_throw(n, 0);
}
EXPORT void *operator new(std::size_t n, const std::nothrow_t &) noexcept
{
	return new_nothrow(n, 0);
}
EXPORT void *operator new[](std::size_t n, const std::nothrow_t &) noexcept
{
	return new_nothrow(n, 0);
}
EXPORT void *operator new(std::size_t n, std::align_val_t a)
{
	return new_or_throw(n, aligned(a));
}
EXPORT void *operator new[](std::size_t n, std::align_val_t a)
{
	return new_or_throw(n, aligned(a));
}
EXPORT void *operator new(std::size_t n, std::align_val_t a,
			  const std::nothrow_t &) noexcept
{
	return new_nothrow(n, aligned(a));
}
EXPORT void *operator new[](std::size_t n, std::align_val_t a,
			    const std::nothrow_t &) noexcept
{
	return new_nothrow(n, aligned(a));
}

/* Every delete is zk_free: it finds phase blocks by address, so size and
 * alignment hints are not needed. */
EXPORT void operator delete(void *p) noexcept
{
	zk_free(p);
}
EXPORT void operator delete[](void *p) noexcept
{
	zk_free(p);
}
EXPORT void operator delete(void *p, std::size_t) noexcept
{
	zk_free(p);
}
EXPORT void operator delete[](void *p, std::size_t) noexcept
{
	zk_free(p);
}
EXPORT void operator delete(void *p, const std::nothrow_t &) noexcept
{
	zk_free(p);
}
EXPORT void operator delete[](void *p, const std::nothrow_t &) noexcept
{
	zk_free(p);
}
EXPORT void operator delete(void *p, std::align_val_t) noexcept
{
	zk_free(p);
}
EXPORT void operator delete[](void *p, std::align_val_t) noexcept
{
	zk_free(p);
}
EXPORT void operator delete(void *p, std::size_t, std::align_val_t) noexcept
{
	zk_free(p);
}
EXPORT void operator delete[](void *p, std::size_t, std::align_val_t) noexcept
{
	zk_free(p);
}
EXPORT void operator delete(void *p, std::align_val_t,
			    const std::nothrow_t &) noexcept
{
	zk_free(p);
}
EXPORT void operator delete[](void *p, std::align_val_t,
			      const std::nothrow_t &) noexcept
{
	zk_free(p);
}
