/*
 * The prefixed-jemalloc entry points (-Djemalloc_prefix=P, e.g. _rjem_).
 *
 * A program that carries its own static, prefixed jemalloc (a Rust prover
 * with tikv-jemallocator) calls P-mallocx, P-sdallocx, P-mallctl, ... These
 * cannot be interposed by name: the archive that defines them is linked
 * into the same executable, so a second definition is a duplicate. GNU ld's
 * --wrap=SYM (part of this build's link flags) instead rewrites every
 * undefined reference to SYM into __wrap_SYM, and __real_SYM into SYM. The
 * functions below are those __wrap_ symbols, each the matching zk_* entry
 * point. The core reaches the real jemalloc through __real_ names: in this
 * build its je_* macros are defined on the command line (src/meson.build)
 * as __real_P-name for the wrapped functions, so core -> jemalloc calls never
 * come back here.
 *
 * zk_mallctl already sends every name outside "zk." to jemalloc's own
 * mallctl, so one function serves both.
 */
#include <zkalloc.h>

#include <stddef.h>

#ifndef ZK_JE_PREFIX
#error "wrap.c is built only with -DZK_JE_PREFIX=<jemalloc prefix>"
#endif

#define ZK_PASTE2(a, b) a##b
#define ZK_PASTE(a, b)	ZK_PASTE2(a, b)
/* WRAP(mallocx) is __wrap_<prefix>mallocx. */
#define WRAP(name) ZK_PASTE(ZK_PASTE(__wrap_, ZK_JE_PREFIX), name)

/* Declarations first: -Wmissing-prototypes, and the names are not in any
 * header (the program calls them under their unwrapped names). */
int WRAP(mallctl)(const char *name, void *oldp, size_t *oldlenp, void *newp,
		  size_t newlen);
void *WRAP(mallocx)(size_t size, int flags);
void *WRAP(rallocx)(void *p, size_t size, int flags);
size_t WRAP(xallocx)(void *p, size_t size, size_t extra, int flags);
size_t WRAP(sallocx)(const void *p, int flags);
void WRAP(dallocx)(void *p, int flags);
void WRAP(sdallocx)(void *p, size_t size, int flags);
size_t WRAP(nallocx)(size_t size, int flags);
void *WRAP(malloc)(size_t size);
void *WRAP(calloc)(size_t n, size_t size);
void *WRAP(realloc)(void *p, size_t size);
void WRAP(free)(void *p);
int WRAP(posix_memalign)(void **out, size_t alignment, size_t size);
void *WRAP(aligned_alloc)(size_t alignment, size_t size);
void *WRAP(memalign)(size_t alignment, size_t size);
size_t WRAP(malloc_usable_size)(const void *p);

int WRAP(mallctl)(const char *name, void *oldp, size_t *oldlenp, void *newp,
		  size_t newlen)
{
	return zk_mallctl(name, oldp, oldlenp, newp, newlen);
}

void *WRAP(mallocx)(size_t size, int flags)
{
	return zk_mallocx(size, flags);
}

void *WRAP(rallocx)(void *p, size_t size, int flags)
{
	return zk_rallocx(p, size, flags);
}

size_t WRAP(xallocx)(void *p, size_t size, size_t extra, int flags)
{
	return zk_xallocx(p, size, extra, flags);
}

size_t WRAP(sallocx)(const void *p, int flags)
{
	return zk_sallocx(p, flags);
}

void WRAP(dallocx)(void *p, int flags)
{
	zk_dallocx(p, flags);
}

void WRAP(sdallocx)(void *p, size_t size, int flags)
{
	zk_sdallocx(p, size, flags);
}

size_t WRAP(nallocx)(size_t size, int flags)
{
	return zk_nallocx(size, flags);
}

void *WRAP(malloc)(size_t size)
{
	return zk_malloc(size);
}

void *WRAP(calloc)(size_t n, size_t size)
{
	return zk_calloc(n, size);
}

void *WRAP(realloc)(void *p, size_t size)
{
	return zk_realloc(p, size);
}

void WRAP(free)(void *p)
{
	zk_free(p);
}

int WRAP(posix_memalign)(void **out, size_t alignment, size_t size)
{
	return zk_posix_memalign(out, alignment, size);
}

void *WRAP(aligned_alloc)(size_t alignment, size_t size)
{
	return zk_aligned_alloc(alignment, size);
}

/* memalign(3) has aligned_alloc's contract here (power-of-two alignment). */
void *WRAP(memalign)(size_t alignment, size_t size)
{
	return zk_aligned_alloc(alignment, size);
}

size_t WRAP(malloc_usable_size)(const void *p)
{
	return zk_malloc_usable_size(p);
}
