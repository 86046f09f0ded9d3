/*
 * The routing wrapper and the zk_* allocation entry points.
 *
 * The one routing decision: is this thread in step with the phase state
 * (zk_tls.gen == zk_g.gen)? Then jemalloc is called as is: in a phase the
 * thread is bound to its zkalloc arena, so the request lands in the pool
 * through jemalloc's own fast paths; outside one it is jemalloc's
 * automatic arenas, as without zkalloc. Out of step (a begin or an end
 * since its last call), route_slow brings it in step first; a thread that
 * cannot be bound (explicit routing, arena.h) stays out of step and is
 * routed here by size on every call of the phase.
 *
 * je_malloc/je_free are jemalloc's fastest entry points (5.3 gives only
 * them a fast path) but, with an unprefixed jemalloc, they are the
 * process's malloc/free, which a sanitizer, another preloaded allocator or
 * zkalloc's own drop-in library may have replaced. So they are used only
 * once a constructor has seen that they live in the same object as
 * je_mallocx; otherwise the *allocx entry points, which only jemalloc
 * defines. Both give and take jemalloc blocks.
 */
#define _GNU_SOURCE /* dladdr */
#include "arena.h"
#include "check.h"
#include "je.h"
#include "phase.h"
#include "pool.h"

#include <zkalloc.h>

#include <dlfcn.h>
#include <errno.h>

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* MALLOCX_* flag fields (jemalloc.h): lg_align 0-5, zero 6, tcache 8-19,
 * arena 20-31. */
#define FLAG_ARENA_MASK ((int)0xfff00000u)

static inline void *nomem(void *p);
static void checked_free(void *p, const char *op);

/* Where zk_malloc and zk_free go for a thread in step: jemalloc's malloc
 * and free once the constructor below has seen they are jemalloc's own;
 * until then, or if they are not, the *allocx entry points (always safe);
 * zk_free goes to checked_free in checked mode (zk_route_checked). One
 * indirect jump each: the choice costs nothing per call. */
static void *malloc_allocx(size_t size)
{
	return nomem(je_mallocx(size ? size : 1, 0));
}

static void free_allocx(void *p)
{
	if (likely(p != NULL))
		je_dallocx(p, 0);
}

static void free_checked(void *p)
{
	checked_free(p, "zk_free");
}

static void *(*malloc_entry)(size_t) = malloc_allocx;
static void (*free_entry)(void *) = free_allocx;
static bool je_malloc_is_jemalloc; /* zk_calloc's and zk_realloc's */

static inline bool je_own(void)
{
	return __atomic_load_n(&je_malloc_is_jemalloc, __ATOMIC_RELAXED);
}

static inline void *(*malloc_fn(void))(size_t)
{
	return __atomic_load_n(&malloc_entry, __ATOMIC_RELAXED);
}

__attribute__((constructor)) static void find_jemalloc_malloc(void)
{
	Dl_info m, x;
	bool own = dladdr((void *)&je_malloc, &m) != 0 &&
		   dladdr((void *)&je_mallocx, &x) != 0 &&
		   m.dli_fbase == x.dli_fbase;
	if (!own)
		return;
	__atomic_store_n(&je_malloc_is_jemalloc, true, __ATOMIC_RELAXED);
	__atomic_store_n(&malloc_entry, je_malloc, __ATOMIC_RELAXED);
	/* checked mode may have been chosen already (a constructor that
	 * ran first called zk_init) */
	if (!check_on())
		__atomic_store_n(&free_entry, je_free, __ATOMIC_RELAXED);
}

void zk_route_checked(void)
{
	__atomic_store_n(&free_entry, free_checked, __ATOMIC_RELAXED);
}

static inline bool in_step(void)
{
	return likely(zk_tls.gen == zk_gen());
}

static inline void *nomem(void *p)
{
	if (unlikely(p == NULL))
		errno = ENOMEM; /* mallocx does not set it */
	return p;
}

/* Explicit routing: the flags of this thread's arena. A size the thread
 * cache holds (ZK_ALLOC_MIN_BYTES lowered to arenas.tcache_max or below)
 * bypasses it: the cache would hand back a block of any arena. */
static int explicit_flags(size_t size)
{
	int af = zk_thread_arena_flags();
	if (af != 0 && size <= zk_g.tcache_max)
		af |= MALLOCX_TCACHE_NONE;
	return af;
}

/* size > 0. */
static void *alloc_slow(size_t size, int flags)
{
	zk_thread_sync();
	if (!in_step() && (flags & FLAG_ARENA_MASK) == 0 &&
	    size >= zk_g.explicit_min) {
		/* In a phase, not bound: explicit routing by size. */
		int af = explicit_flags(size);
		if (af != 0) {
			void *p = je_mallocx(size, flags | af);
			if (likely(p != NULL))
				return p;
		}
	}
	return nomem(je_mallocx(size, flags));
}

void *zk_malloc(size_t size)
{
	if (likely(in_step()))
		return malloc_fn()(size); /* sets errno, unique for 0 */
	return alloc_slow(size ? size : 1, 0);
}

void *zk_mallocx(size_t size, int flags)
{
	if (likely(in_step()) || (flags & FLAG_ARENA_MASK) != 0)
		return nomem(je_mallocx(size ? size : 1, flags));
	return alloc_slow(size ? size : 1, flags);
}

void *zk_calloc(size_t n, size_t size)
{
	if (likely(in_step()) && likely(je_own()))
		return je_calloc(n, size); /* checks n * size, sets errno */
	size_t total;
	if (unlikely(__builtin_mul_overflow(n, size, &total))) {
		errno = ENOMEM;
		return NULL;
	}
	return zk_mallocx(total, MALLOCX_ZERO);
}

/* Checked mode: verify, and free past the thread cache so the extent
 * reaches the pool's quarantine at once. */
static void checked_free(void *p, const char *op)
{
	if (p == NULL)
		return;
	zk_check_pointer(p, op);
	je_dallocx(p, MALLOCX_TCACHE_NONE);
}

void zk_free(void *p)
{
	__atomic_load_n(&free_entry, __ATOMIC_RELAXED)(p);
}

void zk_dallocx(void *p, int flags)
{
	if (unlikely(check_on()))
		checked_free(p, "zk_dallocx");
	else if (likely(p != NULL))
		je_dallocx(p, flags);
}

void zk_sdallocx(void *p, size_t size, int flags)
{
	if (unlikely(check_on()))
		checked_free(p, "zk_sdallocx");
	else if (likely(p != NULL))
		je_sdallocx(p, size, flags);
}

void *zk_rallocx(void *p, size_t size, int flags)
{
	if (p == NULL)
		return zk_mallocx(size, flags);
	if (size == 0)
		size = 1;
	if (unlikely(check_on())) {
		zk_check_pointer(p, "zk_realloc");
		flags |= MALLOCX_TCACHE_NONE;
	}
	if (likely(in_step()) || (flags & FLAG_ARENA_MASK) != 0)
		return nomem(je_rallocx(p, size, flags));
	zk_thread_sync();
	if (!in_step() && size >= zk_g.explicit_min) {
		/* Explicit routing: where the block goes if it must move is
		 * decided by its new size, as for a new block. */
		int af = explicit_flags(size);
		if (af != 0) {
			void *q = je_rallocx(p, size, flags | af);
			if (likely(q != NULL))
				return q;
		}
	}
	return nomem(je_rallocx(p, size, flags));
}

void *zk_realloc(void *p, size_t size)
{
	if (p != NULL && size == 0) {
		zk_free(p); /* glibc: free and return NULL */
		return NULL;
	}
	return zk_rallocx(p, size, 0);
}

size_t zk_xallocx(void *p, size_t size, size_t extra, int flags)
{
	if (unlikely(check_on()))
		zk_check_pointer(p, "zk_xallocx");
	return je_xallocx(p, size ? size : 1, extra, flags);
}

size_t zk_sallocx(const void *p, int flags)
{
	if (unlikely(check_on()))
		zk_check_pointer(p, "zk_sallocx");
	return je_sallocx(p, flags);
}

size_t zk_nallocx(size_t size, int flags)
{
	return je_nallocx(size ? size : 1, flags);
}

size_t zk_malloc_usable_size(const void *p)
{
	return p == NULL ? 0 : zk_sallocx(p, 0);
}

static inline bool is_pow2(size_t a)
{
	return a != 0 && (a & (a - 1)) == 0;
}

void *zk_aligned_alloc(size_t alignment, size_t size)
{
	if (!is_pow2(alignment)) {
		errno = EINVAL;
		return NULL;
	}
	return zk_mallocx(size, MALLOCX_LG_ALIGN(__builtin_ctzll(alignment)));
}

int zk_posix_memalign(void **out, size_t alignment, size_t size)
{
	if (!is_pow2(alignment) || alignment % sizeof(void *) != 0)
		return EINVAL;
	int saved = errno;
	void *p = zk_aligned_alloc(alignment, size);
	if (p == NULL)
		return ENOMEM;
	errno = saved;
	*out = p;
	return 0;
}

bool zk_owns(const void *p)
{
	return zk_pool_owns(p);
}

int zk_arena_flags(void)
{
	if (!atomic_load_explicit(&zk_g.active, memory_order_acquire) ||
	    __atomic_load_n(&zk_pool.total, __ATOMIC_ACQUIRE) == 0)
		return 0;
	/* Past the thread cache: for the sizes it holds, it would hand back
	 * a block of any arena. */
	int f = zk_thread_arena_flags();
	return f != 0 ? f | MALLOCX_TCACHE_NONE : 0;
}
