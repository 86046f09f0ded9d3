/*
 * The routing wrapper and the zk_* allocation entry points. Every
 * allocation goes through route_alloc(); every phase free through
 * free_phase(). Outside a phase the cost over jemalloc is one relaxed load.
 *
 * jemalloc's *allocx API always reaches jemalloc. je_malloc/je_free are
 * faster (jemalloc 5.3 gives only them a fast path) but, with an
 * unprefixed jemalloc, they are the process's malloc/free, which a
 * sanitizer, another preloaded allocator or zkalloc's own drop-in library
 * may have replaced. So they are used only once a constructor has seen that
 * they live in the same object as je_mallocx. Both paths give and take
 * jemalloc blocks, so a block from either may be freed by the other.
 */
#define _GNU_SOURCE /* dladdr */
#include "check.h"
#include "phase.h"

#include <zkalloc.h>

#include <dlfcn.h>
#include <errno.h>
#include <string.h>

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* MALLOCX_* flag fields (jemalloc.h): lg_align 0-5, zero 6, tcache 8-19,
 * arena 20-31. */
#define FLAG_ARENA_MASK	 ((int)0xfff00000u)
#define FLAG_TCACHE_MASK ((int)0x000fff00)

/* Flags for a call into a phase arena: the caller's alignment and zeroing,
 * never a thread cache (caches outlive arena destruction). */
static inline int phase_call_flags(int caller, int arena_flags)
{
	return (caller & ~(FLAG_ARENA_MASK | FLAG_TCACHE_MASK)) | arena_flags;
}

/* Ordinary memory in a phase: this thread's resident arena (pages kept
 * across phases), or plain jemalloc. flags has no arena. */
static void *alloc_ordinary_in_phase(size_t size, int flags)
{
	if (zk_g.small_resident) {
		int sf = zk_small_flags();
		if (sf != 0) {
			void *p = je_mallocx(size, flags | sf);
			if (likely(p != NULL))
				return p;
		}
		if (!zk_tls.busy)
			atomic_fetch_add_explicit(&zk_g.small_overflow_count, 1,
						  memory_order_relaxed);
	}
	return je_mallocx(size, flags);
}

static void *alloc_in_phase(size_t size, int flags)
{
	if (size < zk_g.min_bytes)
		return alloc_ordinary_in_phase(size, flags);
	/* Big blocks go to the arena all threads share (the process's big
	 * buffers land on the same pages whichever thread makes them), the
	 * others to this thread's. */
	bool shared = zk_g.shared_bytes != 0 && size >= zk_g.shared_bytes;
	int af = shared ? zk_shared_flags() : zk_phase_flags();
	zk_slab_t *s = af == 0	? NULL
		       : shared ? zk_region_shared(&zk_g.region)
				: zk_tls.slab;
	/* Larger than the slab: no phase arena can hold it, and it is no
	 * sign of a full slab. Plain jemalloc serves it or fails. */
	if (s != NULL && unlikely(size > s->size)) {
		void *p = je_mallocx(size, flags);
		if (p != NULL)
			zk_count_overflow(size);
		return p;
	}
	if (s != NULL) {
		void *p = je_mallocx(size, phase_call_flags(flags, af));
		if (likely(p != NULL)) {
			zk_slab_mark(s, p, size);
			return p;
		}
		zk_warn_slab_full(size);
	}
	void *p = je_mallocx(size, flags);
	/* A call re-entering from a slow path is not an overflow. */
	if (p != NULL && !zk_tls.busy)
		zk_count_overflow(size);
	return p;
}

/* Checked mode (check.h): the same, visible to zk_begin_phase, and the
 * block tracked. */
static void *checked_alloc_in_phase(size_t size, int flags)
{
	int t = zk_check_enter("an allocation", NULL, size);
	void *p = alloc_in_phase(size, flags);
	if (p != NULL && zk_owns(p))
		zk_check_track(p, size);
	zk_check_leave(t);
	return p;
}

/* The one routing decision. size > 0. */
static inline void *route_alloc(size_t size, int flags)
{
	void *p;
	if (likely(!atomic_load_explicit(&zk_g.active, memory_order_acquire)) ||
	    (flags & FLAG_ARENA_MASK) != 0)
		p = je_mallocx(size, flags);
	else if (likely(!zk_check_on) || size < zk_g.min_bytes)
		p = alloc_in_phase(size, flags); /* only phase requests are
						    checked */
	else
		p = checked_alloc_in_phase(size, flags);
	if (unlikely(p == NULL))
		errno = ENOMEM; /* mallocx does not set it */
	return p;
}

/* Checked mode: verify (double free, earlier phase) and untrack before
 * the address can be handed out again. */
static void checked_free_phase(void *p)
{
	int t = zk_check_enter("zk_free", p, 0);
	zk_check_untrack(p, zk_check_verify(p, "zk_free"));
	je_dallocx(p, MALLOCX_TCACHE_NONE);
	zk_check_leave(t);
}

static inline void free_phase(void *p)
{
	if (unlikely(zk_check_on)) {
		checked_free_phase(p);
		return;
	}
	/* Really free, bypassing the thread cache: the block is reused within
	 * the phase, and no cache holds it when its arena is destroyed. */
	je_dallocx(p, MALLOCX_TCACHE_NONE);
}

bool zk_owns(const void *p)
{
	return zk_region_slab_of(&zk_g.region, p) != NULL;
}

/* Written once by the constructor below, before main; false until then,
 * which is always safe. */
static bool je_malloc_is_jemalloc;

__attribute__((constructor)) static void find_jemalloc_malloc(void)
{
	Dl_info m, x;
	je_malloc_is_jemalloc = dladdr((void *)&je_malloc, &m) != 0 &&
				dladdr((void *)&je_mallocx, &x) != 0 &&
				m.dli_fbase == x.dli_fbase;
}

void *zk_malloc(size_t size)
{
	/* Ordinary memory (outside a phase, or small with ordinary small
	 * routing): straight to jemalloc's fast path, which sets errno and
	 * returns a unique block for 0. */
	if (likely(je_malloc_is_jemalloc) &&
	    (likely(
		 !atomic_load_explicit(&zk_g.active, memory_order_acquire)) ||
	     (size < zk_g.min_bytes && !zk_g.small_resident)))
		return je_malloc(size);
	return route_alloc(size ? size : 1, 0);
}

void *zk_mallocx(size_t size, int flags)
{
	return route_alloc(size ? size : 1, flags);
}

void *zk_calloc(size_t n, size_t size)
{
	if (likely(je_malloc_is_jemalloc) &&
	    likely(!atomic_load_explicit(&zk_g.active, memory_order_acquire)))
		return je_calloc(n, size); /* checks n * size, sets errno */
	size_t total;
	if (unlikely(__builtin_mul_overflow(n, size, &total))) {
		errno = ENOMEM;
		return NULL;
	}
	return route_alloc(total ? total : 1, MALLOCX_ZERO);
}

void zk_dallocx(void *p, int flags)
{
	if (unlikely(zk_owns(p)))
		free_phase(p);
	else if (likely(p != NULL))
		je_dallocx(p, flags);
}

void zk_sdallocx(void *p, size_t size, int flags)
{
	if (unlikely(zk_owns(p)))
		free_phase(p);
	else if (likely(p != NULL))
		je_sdallocx(p, size, flags);
}

size_t zk_xallocx(void *p, size_t size, size_t extra, int flags)
{
	/* In place only: the arena field does not matter, the thread cache
	 * must stay out of phase blocks. */
	if (unlikely(zk_owns(p)))
		flags = (flags & ~(FLAG_ARENA_MASK | FLAG_TCACHE_MASK)) |
			MALLOCX_TCACHE_NONE;
	return je_xallocx(p, size ? size : 1, extra, flags);
}

size_t zk_sallocx(const void *p, int flags)
{
	return je_sallocx(p, flags);
}

size_t zk_nallocx(size_t size, int flags)
{
	return je_nallocx(size ? size : 1, flags);
}

void zk_free(void *p)
{
	if (unlikely(zk_owns(p)))
		free_phase(p);
	else if (likely(je_malloc_is_jemalloc))
		je_free(p);
	else if (likely(p != NULL))
		je_dallocx(p, 0);
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
	return route_alloc(size ? size : 1,
			   MALLOCX_LG_ALIGN(__builtin_ctzll(alignment)));
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

size_t zk_malloc_usable_size(const void *p)
{
	return p == NULL ? 0 : je_sallocx(p, 0);
}

/* A phase block stays in its own slab's arena; only if that slab is full
 * does it move to ordinary memory (counted as overflow). */
static void *realloc_phase(zk_slab_t *s, void *p, size_t size, int flags)
{
	int af = MALLOCX_ARENA(s->arena_ind) | MALLOCX_TCACHE_NONE;
	void *q = je_rallocx(p, size, phase_call_flags(flags, af));
	if (likely(q != NULL)) {
		zk_slab_mark(s, q, size);
		return q;
	}
	if (size <= s->size)
		zk_warn_slab_full(size);
	size_t old = je_sallocx(p, 0);
	q = je_mallocx(size, flags & ~(FLAG_ARENA_MASK | FLAG_TCACHE_MASK));
	if (q == NULL) {
		errno = ENOMEM;
		return NULL;
	}
	memcpy(q, p, old < size ? old : size);
	free_phase(p);
	zk_count_overflow(size);
	return q;
}

/* ZK_ALLOC_PROMOTE_BYTES: move a growing ordinary block into the phase.
 * Returns NULL when promotion does not apply or phase memory is full. */
static void *promote(void *p, size_t size, int flags)
{
	size_t old = je_sallocx(p, 0);
	if (size <= old)
		return NULL;
	int af = zk_phase_flags();
	void *q = af ? je_mallocx(size, phase_call_flags(flags, af)) : NULL;
	if (q == NULL) {
		if (af != 0)
			zk_warn_slab_full(size);
		zk_count_overflow(size);
		return NULL;
	}
	memcpy(q, p, old);
	je_dallocx(p, 0);
	if (unlikely(zk_check_on))
		zk_check_track(q, size);
	return q;
}

/* An ordinary block reallocated in a phase stays ordinary (valid after the
 * phase) but moves, if it must move, into this thread's resident arena,
 * whose pages stay resident across phases: a vector grown by doubling in
 * every proof stops re-faulting its 8-32 MiB generations, which plain
 * jemalloc sends to its eagerly purged huge arena. NULL: not applicable or
 * failed (p untouched); the caller then uses plain jemalloc. */
static void *grow_ordinary_in_phase(void *p, size_t size, int flags)
{
	if (!zk_g.small_resident)
		return NULL;
	int sf = zk_small_flags();
	if (sf == 0)
		return NULL;
	return je_rallocx(p, size, flags | sf);
}

static void *checked_realloc_phase(zk_slab_t *s, void *p, size_t size,
				   int flags)
{
	int t = zk_check_enter("zk_realloc", p, 0);
	uint64_t gen = zk_check_verify(p, "zk_realloc");
	void *q = realloc_phase(s, p, size, flags);
	if (q != NULL) {
		if (q != p)
			zk_check_untrack(p, gen); /* no-op if reused since */
		if (zk_owns(q))
			zk_check_track(q, size);
	}
	zk_check_leave(t);
	return q;
}

static inline bool wants_promotion(size_t size, int flags)
{
	/* active first: its acquire makes zk_init's option writes visible. */
	return atomic_load_explicit(&zk_g.active, memory_order_acquire) &&
	       unlikely(zk_g.promote_bytes != 0) &&
	       size >= zk_g.promote_bytes && size >= zk_g.min_bytes &&
	       (flags & FLAG_ARENA_MASK) == 0;
}

void *zk_rallocx(void *p, size_t size, int flags)
{
	if (p == NULL)
		return zk_mallocx(size, flags);
	if (size == 0)
		size = 1;
	zk_slab_t *s = zk_region_slab_of(&zk_g.region, p);
	if (unlikely(s != NULL))
		return likely(!zk_check_on)
			   ? realloc_phase(s, p, size, flags)
			   : checked_realloc_phase(s, p, size, flags);
	if (wants_promotion(size, flags)) {
		void *q = promote(p, size, flags);
		if (q != NULL)
			return q;
	}
	if (atomic_load_explicit(&zk_g.active, memory_order_acquire) &&
	    (flags & FLAG_ARENA_MASK) == 0) {
		void *q = grow_ordinary_in_phase(p, size, flags);
		if (q != NULL)
			return q;
	}
	void *q = je_rallocx(p, size, flags);
	if (q == NULL)
		errno = ENOMEM;
	return q;
}

void *zk_realloc(void *p, size_t size)
{
	if (p != NULL && size == 0) {
		zk_free(p); /* glibc: free and return NULL */
		return NULL;
	}
	return zk_rallocx(p, size, 0);
}

int zk_arena_flags(void)
{
	/* Checked mode tracks every phase block, so none may bypass zk_*. */
	if (!atomic_load_explicit(&zk_g.active, memory_order_acquire) ||
	    unlikely(zk_check_on))
		return 0;
	return zk_phase_flags();
}
