/*
 * The drop-in library's exports: the malloc family, jemalloc's whole public
 * API (*allocx, malloc_usable_size, malloc_stats_print, mallctl*).
 *
 * libzkalloc_override.so is libzkalloc plus this file. Preloaded, or linked
 * before jemalloc, its exports take the place of glibc's and jemalloc's.
 * A thread in step with the phase state (zk_tls.gen == zk_g.gen: one load
 * and one compare) calls jemalloc's own function directly, in a phase and
 * out of one: in a phase it is bound to its zkalloc arena (arena.h), so
 * jemalloc serves it from the pool. Out of step, the zk_* entry points
 * bring it in step. Frees never route: jemalloc frees a block to its own
 * arena.
 *
 * Debian's jemalloc is unprefixed: its je_mallocx IS the symbol mallocx,
 * which this library exports too. So jemalloc's entry points are never
 * reached by name:
 *  - this file finds them by address inside the jemalloc object (resolve())
 *    and keeps them in `je`;
 *  - the core's calls (je_mallocx, je_malloc, je_mallctl, ...) are redirected
 *    at link time by ld --wrap (src/meson.build) to the __wrap_* functions
 *    below, which call through `je`. Without that, the core's je_mallocx
 *    would be this library's mallocx, which routes again.
 * Calls made before the constructor (the dynamic loader's, libstdc++'s
 * emergency pool) resolve on first use.
 */
#define _GNU_SOURCE
#include "je.h"

#include <zkalloc.h>

#include "arena.h"
#include "check.h"
#include "os.h"
#include "phase.h"
#include "verbose.h"

#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

#define HIDDEN	    __attribute__((visibility("hidden")))
#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* glibc's MALLOC_ALIGNMENT on x86-64 and aarch64: what glibc's malloc, and
 * so its memalign family, guarantees for every block. The aligned exports
 * below never give less, whatever alignment is asked for. */
#define LIBC_MALLOC_ALIGN 16

/* ------------------------------------------------------ jemalloc's own */

typedef int (*mallctl_fn)(const char *, void *, size_t *, void *, size_t);
typedef int (*nametomib_fn)(const char *, size_t *, size_t *);
typedef int (*bymib_fn)(const size_t *, size_t, void *, size_t *, void *,
			size_t);
typedef void (*write_cb_fn)(void *, const char *);

/* Until jemalloc's malloc & co. are found, the exports' fast path lands
 * here, in the zk_* path: no NULL test on the fast path. */
static void *boot_malloc(size_t size)
{
	return zk_malloc(size);
}
static void boot_free(void *p)
{
	zk_free(p);
}
static void *boot_calloc(size_t n, size_t size)
{
	return zk_calloc(n, size);
}
static void *boot_realloc(void *p, size_t size)
{
	return zk_realloc(p, size);
}

/* What free() calls: jemalloc's free, or zk_free in checked mode (set by
 * the constructor; boot_free, i.e. zk_free, until then). */
static void (*free_entry)(void *) = boot_free;

/* jemalloc's entry points, found by resolve(). Each pointer is written once
 * (a race writes the same value twice) and read with relaxed atomics: the
 * code it points to never changes. NULL (malloc & co.: boot_*) until
 * found. */
static struct {
	void *(*malloc)(size_t);
	void (*free)(void *);
	void *(*calloc)(size_t, size_t);
	void *(*realloc)(void *, size_t);
	void *(*mallocx)(size_t, int);
	void *(*rallocx)(void *, size_t, int);
	size_t (*xallocx)(void *, size_t, size_t, int);
	size_t (*sallocx)(const void *, int);
	void (*dallocx)(void *, int);
	void (*sdallocx)(void *, size_t, int);
	size_t (*nallocx)(size_t, int);
	mallctl_fn mallctl;
	nametomib_fn nametomib;
	bymib_fn bymib;
	void (*stats_print)(write_cb_fn, void *, const char *);
} je = {.malloc = boot_malloc,
	.free = boot_free,
	.calloc = boot_calloc,
	.realloc = boot_realloc};

#define REAL(f) __atomic_load_n(&je.f, __ATOMIC_RELAXED)
/* jemalloc's f, resolving first if need be; NULL if it cannot be found. */
#define GET(f) (likely(REAL(f) != NULL) || resolve() ? REAL(f) : NULL)
#define SET(f, v)                                                              \
	__atomic_store_n(&je.f, (__typeof__(je.f))(v), __ATOMIC_RELAXED)

/* This library names no jemalloc function itself (the core's calls go to
 * __wrap_*), so without one reference ld --as-needed would drop
 * libjemalloc from its dependencies. */
__attribute__((used)) static void (**const keep_jemalloc)(
    void *, const char *) = &je_malloc_message;

/* 1 once every required entry point is known; -1 once the constructor gave
 * up (warned once). */
static _Atomic int resolved;

/* Set while this thread resolves: dlopen/dlsym may allocate. */
static __thread bool resolving __attribute__((tls_model("initial-exec")));

static bool in_object(const void *sym, const void *base)
{
	Dl_info info;
	return sym != NULL && dladdr(sym, &info) != 0 && info.dli_fbase == base;
}

/* name as defined by the object at base, and only there: through a handle
 * to that object (which searches it first), or the process's lookup order
 * before or after this library, whichever lands in it. */
static void *sym_in(void *handle, const void *base, const char *name)
{
	void *s;
	if (handle != NULL && in_object(s = dlsym(handle, name), base))
		return s;
	if (in_object(s = dlsym(RTLD_DEFAULT, name), base))
		return s;
	if (in_object(s = dlsym(RTLD_NEXT, name), base))
		return s;
	return NULL;
}

static bool resolve_now(void)
{
	Dl_info self, jinfo;
	if (dladdr((void *)&resolve_now, &self) == 0)
		return false;
	/* jemalloc is the first mallocx in the lookup order that is not ours:
	 * before us (jemalloc linked first, or static in the executable: then
	 * ours is never called) or after us (preloaded, or linked first). */
	void *anchor = dlsym(RTLD_DEFAULT, "mallocx");
	if (anchor == NULL || in_object(anchor, self.dli_fbase))
		anchor = dlsym(RTLD_NEXT, "mallocx");
	if (anchor == NULL || dladdr(anchor, &jinfo) == 0 ||
	    jinfo.dli_fbase == self.dli_fbase)
		return false;
	const void *b = jinfo.dli_fbase;
	/* First the names only jemalloc defines, which the lookup order finds
	 * without a handle, published at once: dlopen below allocates, and its
	 * allocations come back here through __wrap_mallocx. */
	SET(mallocx, anchor);
	SET(rallocx, sym_in(NULL, b, "rallocx"));
	SET(xallocx, sym_in(NULL, b, "xallocx"));
	SET(sallocx, sym_in(NULL, b, "sallocx"));
	SET(dallocx, sym_in(NULL, b, "dallocx"));
	SET(sdallocx, sym_in(NULL, b, "sdallocx"));
	SET(nallocx, sym_in(NULL, b, "nallocx"));
	SET(mallctl, sym_in(NULL, b, "mallctl"));
	SET(nametomib, sym_in(NULL, b, "mallctlnametomib"));
	SET(bymib, sym_in(NULL, b, "mallctlbymib"));
	SET(stats_print, sym_in(NULL, b, "malloc_stats_print"));
	/* malloc & co. are glibc's too, and may come first in the lookup
	 * order: only a handle to jemalloc's object finds jemalloc's.
	 * RTLD_NOLOAD: the copy already mapped; the handle is kept for good
	 * (jemalloc stays loaded as long as we do). */
	void *h = jinfo.dli_fname != NULL
		      ? dlopen(jinfo.dli_fname, RTLD_LAZY | RTLD_NOLOAD)
		      : NULL;
	void *s;
	if ((s = sym_in(h, b, "malloc")) != NULL)
		SET(malloc, s);
	if ((s = sym_in(h, b, "free")) != NULL)
		SET(free, s);
	if ((s = sym_in(h, b, "calloc")) != NULL)
		SET(calloc, s);
	if ((s = sym_in(h, b, "realloc")) != NULL)
		SET(realloc, s);
	zk_jemalloc_mallocx = anchor;
	return REAL(rallocx) && REAL(xallocx) && REAL(sallocx) &&
	       REAL(dallocx) && REAL(sdallocx) && REAL(nallocx) &&
	       REAL(mallctl) && REAL(nametomib) && REAL(bymib);
}

static bool resolve(void)
{
	int r = atomic_load_explicit(&resolved, memory_order_acquire);
	if (likely(r != 0))
		return r > 0;
	if (resolving)
		return false;
	resolving = true;
	bool ok = resolve_now();
	resolving = false;
	if (ok)
		atomic_store_explicit(&resolved, 1, memory_order_release);
	return ok;
}

/* Resolve before main() (priority 101: before verbose.c's check, which
 * reads zk_jemalloc_mallocx), so that no malloc slow path has to enter the
 * dynamic loader. */
static bool check_requested(void)
{
	const char *v = getenv(zk_opt_table[ZK_OPT_CHECK].env);
	uint64_t on = 0;
	return v != NULL &&
	       zk_opt_parse(&zk_opt_table[ZK_OPT_CHECK], v, &on) == 0 && on;
}

__attribute__((constructor(101))) static void override_init(void)
{
	/* Checked mode is chosen at load (zk.opt.check is read-only): free()
	 * goes to jemalloc directly, or through zk_free's checks. */
	bool checked = check_requested();
	/* An early resolution may have missed malloc & co. (dlopen failing
	 * inside the dynamic loader): they only make ordinary memory faster,
	 * so look again now. */
	if (resolve()) {
		if (REAL(malloc) == boot_malloc && !resolving) {
			resolving = true;
			resolve_now();
			resolving = false;
		}
		if (!checked && REAL(free) != boot_free)
			__atomic_store_n(&free_entry, REAL(free),
					 __ATOMIC_RELAXED);
		return;
	}
	atomic_store_explicit(&resolved, -1, memory_order_release);
	static const char msg[] =
	    "zkalloc: warning: the drop-in cannot find jemalloc's own "
	    "mallocx/rallocx/.../mallctl in this process; allocations fail "
	    "and mallctl returns EAGAIN\n";
	zk_os_warn(msg, sizeof(msg) - 1);
}

/* ---------------------------------------- the core's calls to jemalloc */

/* What the core's je_* calls become (ld --wrap). Each has a fallback for
 * the moment before resolution: allocation fails (NULL + ENOMEM), which
 * only a recursive call from inside the dynamic loader can see. */

HIDDEN void *__wrap_mallocx(size_t size, int flags)
{
	void *(*f)(size_t, int) = GET(mallocx);
	if (unlikely(f == NULL)) {
		errno = ENOMEM;
		return NULL;
	}
	return f(size, flags);
}

HIDDEN void *__wrap_malloc(size_t size)
{
	void *(*f)(size_t) = REAL(malloc);
	if (likely(f != boot_malloc))
		return f(size);
	void *p = __wrap_mallocx(size ? size : 1, 0);
	if (p == NULL)
		errno = ENOMEM;
	return p;
}

HIDDEN void *__wrap_calloc(size_t n, size_t size)
{
	void *(*f)(size_t, size_t) = REAL(calloc);
	if (likely(f != boot_calloc))
		return f(n, size);
	size_t total;
	if (__builtin_mul_overflow(n, size, &total)) {
		errno = ENOMEM;
		return NULL;
	}
	return __wrap_mallocx(total ? total : 1, MALLOCX_ZERO);
}

HIDDEN void *__wrap_rallocx(void *p, size_t size, int flags)
{
	void *(*f)(void *, size_t, int) = GET(rallocx);
	return f != NULL ? f(p, size, flags) : NULL;
}

/* Unresolved, p cannot be a block of ours: none was made yet. */
HIDDEN size_t __wrap_xallocx(void *p, size_t size, size_t extra, int flags)
{
	size_t (*f)(void *, size_t, size_t, int) = GET(xallocx);
	return f != NULL ? f(p, size, extra, flags) : 0;
}

HIDDEN size_t __wrap_sallocx(const void *p, int flags)
{
	size_t (*f)(const void *, int) = GET(sallocx);
	return f != NULL ? f(p, flags) : 0;
}

HIDDEN size_t __wrap_nallocx(size_t size, int flags)
{
	size_t (*f)(size_t, int) = GET(nallocx);
	return f != NULL ? f(size, flags) : 0;
}

HIDDEN void __wrap_dallocx(void *p, int flags)
{
	void (*f)(void *, int) = GET(dallocx);
	if (f != NULL)
		f(p, flags);
}

HIDDEN void __wrap_sdallocx(void *p, size_t size, int flags)
{
	void (*f)(void *, size_t, int) = GET(sdallocx);
	if (f != NULL)
		f(p, size, flags);
}

HIDDEN void __wrap_free(void *p)
{
	void (*f)(void *) = REAL(free);
	if (likely(f != boot_free))
		f(p);
	else if (p != NULL)
		__wrap_dallocx(p, 0);
}

HIDDEN int __wrap_mallctl(const char *name, void *oldp, size_t *oldlenp,
			  void *newp, size_t newlen)
{
	mallctl_fn f = GET(mallctl);
	return f != NULL ? f(name, oldp, oldlenp, newp, newlen) : EAGAIN;
}

/* ------------------------------------------------------- the exports */

static inline bool in_step(void)
{
	return likely(zk_tls.gen == zk_gen());
}

/* jemalloc's malloc/calloc/realloc return 8-aligned blocks for requests of
 * at most 8 bytes (its 8-byte class) and 16-aligned ones otherwise: enough
 * for any object of the requested size (C11 7.22.3), which is all C asks.
 * glibc gives 16 always; these keep jemalloc's classes, as jemalloc does. */
EXPORT void *malloc(size_t size)
{
	if (in_step())
		return REAL(malloc)(size);
	return zk_malloc(size);
}

EXPORT void free(void *p)
{
	__atomic_load_n(&free_entry, __ATOMIC_RELAXED)(p);
}

EXPORT void *calloc(size_t n, size_t size)
{
	if (in_step())
		return REAL(calloc)(n, size); /* checks n * size, sets errno */
	return zk_calloc(n, size);
}

/* glibc: realloc(NULL, n) is malloc(n); realloc(p, 0) frees p and returns
 * NULL; on failure p is untouched and errno is ENOMEM. zk_realloc does all
 * three; jemalloc's realloc is taken only where it agrees (size > 0). */
static inline void *realloc_impl(void *p, size_t size)
{
	if (in_step() && likely(size != 0) && likely(!check_on())) {
		void *q = REAL(realloc)(p, size);
		if (unlikely(q == NULL))
			errno = ENOMEM; /* jemalloc's realloc leaves it */
		return q;
	}
	return zk_realloc(p, size);
}

EXPORT void *realloc(void *p, size_t size)
{
	return realloc_impl(p, size);
}

EXPORT void *reallocarray(void *p, size_t n, size_t size)
{
	size_t total;
	if (__builtin_mul_overflow(n, size, &total)) {
		errno = ENOMEM;
		return NULL;
	}
	return realloc_impl(p, total);
}

static inline size_t at_least_libc(size_t alignment)
{
	return alignment < LIBC_MALLOC_ALIGN ? LIBC_MALLOC_ALIGN : alignment;
}

/* C17 / glibc >= 2.38: a non-power-of-two alignment (0 included) is EINVAL.
 * glibc 2.36 still rounded it up like memalign; rejecting it is the
 * contract zk_aligned_alloc already has, and what newer glibc does. */
EXPORT void *aligned_alloc(size_t alignment, size_t size)
{
	if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
		errno = EINVAL;
		return NULL;
	}
	return zk_aligned_alloc(at_least_libc(alignment), size);
}

/* posix_memalign reports through its result; errno is set as well so that
 * every failure of this library sets it. *out is untouched on failure. */
EXPORT int posix_memalign(void **out, size_t alignment, size_t size)
{
	/* Validate the caller's alignment, then raise it. */
	bool valid = alignment != 0 && (alignment & (alignment - 1)) == 0 &&
		     alignment % sizeof(void *) == 0;
	int err = zk_posix_memalign(
	    out, valid ? at_least_libc(alignment) : alignment, size);
	if (err != 0)
		errno = err;
	return err;
}

/* glibc's historic semantics: a non-power-of-two alignment is rounded up
 * to the next power of two, and only one beyond SIZE_MAX / 2 + 1 is
 * EINVAL. Small alignments give glibc's 16, not jemalloc's 8. */
EXPORT void *memalign(size_t alignment, size_t size)
{
	if (alignment > SIZE_MAX / 2 + 1) {
		errno = EINVAL;
		return NULL;
	}
	if ((alignment & (alignment - 1)) != 0)
		alignment = (size_t)1 << (64 - __builtin_clzll(alignment));
	return zk_aligned_alloc(at_least_libc(alignment), size);
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

/* ------------------------------------------------ jemalloc's *allocx */

/* Routed like malloc. Outside what jemalloc leaves undefined (size 0,
 * NULL), which zk_* defines, jemalloc's own when in step. */
EXPORT void *mallocx(size_t size, int flags)
{
	void *(*f)(size_t, int) = REAL(mallocx);
	if (likely(f != NULL) && in_step() && likely(size != 0))
		return f(size, flags);
	return zk_mallocx(size, flags);
}

EXPORT void *rallocx(void *p, size_t size, int flags)
{
	void *(*f)(void *, size_t, int) = REAL(rallocx);
	if (likely(f != NULL) && in_step() && likely(p != NULL && size != 0) &&
	    likely(!check_on()))
		return f(p, size, flags);
	return zk_rallocx(p, size, flags);
}

EXPORT size_t xallocx(void *p, size_t size, size_t extra, int flags)
{
	return zk_xallocx(p, size, extra, flags);
}

EXPORT size_t sallocx(const void *p, int flags)
{
	return zk_sallocx(p, flags);
}

EXPORT size_t nallocx(size_t size, int flags)
{
	return zk_nallocx(size, flags);
}

EXPORT void dallocx(void *p, int flags)
{
	void (*f)(void *, int) = REAL(dallocx);
	if (likely(f != NULL) && likely(p != NULL) && likely(!check_on())) {
		f(p, flags);
		return;
	}
	zk_dallocx(p, flags);
}

EXPORT void sdallocx(void *p, size_t size, int flags)
{
	void (*f)(void *, size_t, int) = REAL(sdallocx);
	if (likely(f != NULL) && likely(p != NULL) && likely(!check_on())) {
		f(p, size, flags);
		return;
	}
	zk_sdallocx(p, size, flags);
}

/* jemalloc's report (zkalloc's figures are the zk.stats.* mallctl names,
 * and ZK_ALLOC_VERBOSE=1 prints them at exit). */
EXPORT void malloc_stats_print(write_cb_fn write_cb, void *cbopaque,
			       const char *opts)
{
	if (resolve() && REAL(stats_print) != NULL)
		REAL(stats_print)(write_cb, cbopaque, opts);
}

/* ------------------------------------------------------------ mallctl */

/* "zk." names go to zk_mallctl; every other name to jemalloc's own. */
EXPORT int mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp,
		   size_t newlen)
{
	if (name == NULL || strncmp(name, "zk.", 3) == 0)
		return zk_mallctl(name, oldp, oldlenp, newp, newlen);
	return __wrap_mallctl(name, oldp, oldlenp, newp, newlen);
}

/* zk.* names have no MIB: jemalloc's own ENOENT answers them, exactly as in
 * a process without zkalloc. */
EXPORT int mallctlnametomib(const char *name, size_t *mibp, size_t *miblenp)
{
	if (!resolve())
		return EAGAIN;
	return REAL(nametomib)(name, mibp, miblenp);
}

EXPORT int mallctlbymib(const size_t *mib, size_t miblen, void *oldp,
			size_t *oldlenp, void *newp, size_t newlen)
{
	if (!resolve())
		return EAGAIN;
	return REAL(bymib)(mib, miblen, oldp, oldlenp, newp, newlen);
}
