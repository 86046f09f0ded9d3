/*
 * The drop-in library's exports: the malloc family and mallctl.
 *
 * libzkalloc_override.so is libzkalloc plus this file. Preloaded or linked
 * in, its malloc/free/... take the place of glibc's, and every call goes
 * through the zk_* routing wrapper: large in-phase requests get phase
 * memory, everything else plain jemalloc.
 *
 * Two recursion traps shape this file, both because Debian's jemalloc is
 * unprefixed (its je_malloc IS the symbol malloc, its je_mallctl IS mallctl):
 *  - Nothing here may call je_malloc/je_free/je_calloc...: in this library
 *    those names are the functions below. Every export goes through zk_*,
 *    which only calls je_mallocx/je_rallocx/je_dallocx/je_sallocx (names
 *    this library does not export).
 *  - The core calls je_mallctl("arenas.create", ...) etc., which resolves to
 *    the mallctl exported here. So mallctl sends "zk." names to zk_mallctl
 *    and every other name to jemalloc's own mallctl, found by address (see
 *    resolve()), never back into zk_mallctl.
 */
#define _GNU_SOURCE
#define JEMALLOC_NO_DEMANGLE
#include <jemalloc/jemalloc.h>

#include <zkalloc.h>

#include "os.h"

#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

/* glibc's MALLOC_ALIGNMENT on x86-64 and aarch64: memalign() with an
 * alignment up to this is plain malloc() (glibc malloc.c:_mid_memalign). */
#define LIBC_MALLOC_ALIGN 16

/* ------------------------------------------------------------- malloc */

EXPORT void *malloc(size_t size)
{
	return zk_malloc(size);
}

EXPORT void free(void *p)
{
	zk_free(p);
}

EXPORT void *calloc(size_t n, size_t size)
{
	return zk_calloc(n, size);
}

/* glibc: realloc(NULL, n) is malloc(n); realloc(p, 0) frees p and returns
 * NULL; on failure p is untouched and errno is ENOMEM. zk_realloc does all
 * three. */
EXPORT void *realloc(void *p, size_t size)
{
	return zk_realloc(p, size);
}

EXPORT void *reallocarray(void *p, size_t n, size_t size)
{
	size_t total;
	if (__builtin_mul_overflow(n, size, &total)) {
		errno = ENOMEM;
		return NULL;
	}
	return zk_realloc(p, total);
}

/* C17 / glibc >= 2.38: a non-power-of-two alignment (0 included) is EINVAL.
 * glibc 2.36 still rounded it up like memalign; rejecting it is the
 * contract zk_aligned_alloc already has, and what newer glibc does. */
EXPORT void *aligned_alloc(size_t alignment, size_t size)
{
	return zk_aligned_alloc(alignment, size);
}

/* posix_memalign reports through its result; errno is set as well so that
 * every failure of this library sets it. *out is untouched on failure. */
EXPORT int posix_memalign(void **out, size_t alignment, size_t size)
{
	int err = zk_posix_memalign(out, alignment, size);
	if (err != 0)
		errno = err;
	return err;
}

/* glibc's historic semantics: small alignments are malloc, a
 * non-power-of-two alignment is rounded up to the next power of two, and
 * only one beyond SIZE_MAX / 2 + 1 is EINVAL. */
EXPORT void *memalign(size_t alignment, size_t size)
{
	if (alignment <= LIBC_MALLOC_ALIGN)
		return zk_malloc(size);
	if (alignment > SIZE_MAX / 2 + 1) {
		errno = EINVAL;
		return NULL;
	}
	if ((alignment & (alignment - 1)) != 0)
		alignment = (size_t)1 << (64 - __builtin_clzll(alignment));
	return zk_aligned_alloc(alignment, size);
}

EXPORT void *valloc(size_t size)
{
	return zk_aligned_alloc(zk_os_page_size(), size);
}

/* Page aligned, size rounded up to whole pages (0 gives one page). */
EXPORT void *pvalloc(size_t size)
{
	size_t page = zk_os_page_size(), rounded;
	if (__builtin_add_overflow(size, page - 1, &rounded)) {
		errno = ENOMEM;
		return NULL;
	}
	rounded &= ~(page - 1);
	return zk_aligned_alloc(page, rounded ? rounded : page);
}

EXPORT size_t malloc_usable_size(void *p)
{
	return zk_malloc_usable_size(p);
}

/* ------------------------------------------------------------ mallctl */

typedef int (*mallctl_fn)(const char *, void *, size_t *, void *, size_t);
typedef int (*nametomib_fn)(const char *, size_t *, size_t *);
typedef int (*bymib_fn)(const size_t *, size_t, void *, size_t *, void *,
			size_t);

/* jemalloc's own entry points. Written once by resolve() (a race writes the
 * same values twice), read by the three exports below. */
static _Atomic(mallctl_fn) real_mallctl;
static _Atomic(nametomib_fn) real_nametomib;
static _Atomic(bymib_fn) real_bymib;

/* This library's own definitions, by hidden aliases: &mallctl would be the
 * process's mallctl, which is jemalloc's when the link order put jemalloc
 * first. */
extern __typeof__(mallctl) self_mallctl
    __attribute__((alias("mallctl"), visibility("hidden"), nothrow));
extern __typeof__(mallctlnametomib) self_nametomib
    __attribute__((alias("mallctlnametomib"), visibility("hidden"), nothrow));
extern __typeof__(mallctlbymib) self_bymib
    __attribute__((alias("mallctlbymib"), visibility("hidden"), nothrow));

/* Look name up in the object that defines je_mallocx (which this library
 * does not export, so its address is jemalloc's), and only there: a
 * dlsym(RTLD_NEXT) would miss jemalloc when the program's link order put
 * it before this library. Falls back to RTLD_NEXT. */
static void *jemalloc_sym(const char *name, void *self)
{
	Dl_info info;
	void *sym = NULL;
	if (dladdr((void *)&je_mallocx, &info) != 0 && info.dli_fname != NULL) {
		/* RTLD_NOLOAD: only a handle to the copy already mapped. The
		 * handle is kept: jemalloc stays loaded as long as we do. */
		void *h = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
		if (h != NULL)
			sym = dlsym(h, name);
	}
	if (sym == NULL || sym == self)
		sym = dlsym(RTLD_NEXT, name);
	return sym == self ? NULL : sym;
}

/* Set while this thread resolves: the dynamic loader may call malloc, and
 * a phase allocation's slow path calls mallctl. */
static __thread bool resolving __attribute__((tls_model("initial-exec")));

static bool resolve(void)
{
	if (atomic_load_explicit(&real_bymib, memory_order_acquire) != NULL)
		return true;
	if (resolving)
		return false;
	resolving = true;
	mallctl_fn m =
	    (mallctl_fn)jemalloc_sym("mallctl", (void *)&self_mallctl);
	nametomib_fn n = (nametomib_fn)jemalloc_sym("mallctlnametomib",
						    (void *)&self_nametomib);
	bymib_fn b =
	    (bymib_fn)jemalloc_sym("mallctlbymib", (void *)&self_bymib);
	resolving = false;
	if (m == NULL || n == NULL || b == NULL) {
		static const char msg[] =
		    "zkalloc: warning: cannot find jemalloc's mallctl; "
		    "mallctl calls other than zk.* fail with EAGAIN\n";
		static atomic_flag warned = ATOMIC_FLAG_INIT;
		if (!atomic_flag_test_and_set(&warned))
			zk_os_warn(msg, sizeof(msg) - 1);
		return false;
	}
	atomic_store_explicit(&real_mallctl, m, memory_order_relaxed);
	atomic_store_explicit(&real_nametomib, n, memory_order_relaxed);
	atomic_store_explicit(&real_bymib, b, memory_order_release);
	return true;
}

/* Resolve before main(), so no mallctl call from a malloc slow path ever
 * has to enter the dynamic loader. */
__attribute__((constructor)) static void override_init(void)
{
	resolve();
}

EXPORT int mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp,
		   size_t newlen)
{
	if (name == NULL || strncmp(name, "zk.", 3) == 0)
		return zk_mallctl(name, oldp, oldlenp, newp, newlen);
	if (!resolve())
		return EAGAIN;
	return atomic_load_explicit(&real_mallctl, memory_order_relaxed)(
	    name, oldp, oldlenp, newp, newlen);
}

/* zk.* names have no MIB: jemalloc's own ENOENT answers them, exactly as in
 * a process without zkalloc. */
EXPORT int mallctlnametomib(const char *name, size_t *mibp, size_t *miblenp)
{
	if (!resolve())
		return EAGAIN;
	return atomic_load_explicit(&real_nametomib,
				    memory_order_relaxed)(name, mibp, miblenp);
}

EXPORT int mallctlbymib(const size_t *mib, size_t miblen, void *oldp,
			size_t *oldlenp, void *newp, size_t newlen)
{
	if (!resolve())
		return EAGAIN;
	return atomic_load_explicit(&real_bymib, memory_order_relaxed)(
	    mib, miblen, oldp, oldlenp, newp, newlen);
}
