/* Region reservation and the per-slab bump pointer. */
#include "slab.h"

#include "hooks.h"
#include "os.h"

#include <errno.h>
#include <string.h>

/* Page granularity of the resident slabs' bitmaps (the smallest page
 * jemalloc uses on Linux x86-64 and the common aarch64 kernels). */
#define PAGE ((size_t)4096)

_Atomic uint32_t zk_slab_epoch;

/* Bytes of a resident slab's metadata: one bit per page, then one 32-bit
 * age per 64 pages; page aligned. */
static size_t meta_bytes(size_t slab_size)
{
	size_t n = slab_size / PAGE / 8 + slab_size / PAGE / 64 * 4;
	return (n + PAGE - 1) & ~(PAGE - 1);
}

/* zk_owns reads base and total on any thread without a lock: everything
 * else is written before total is stored with release, so a reader that
 * loads a non-zero total (acquire) sees the whole region, and one that
 * loads 0 looks no further. */
static void region_publish(zk_region_t *r, char *base, size_t slab_size,
			   unsigned nslabs, unsigned nshared, zk_slab_t *slabs,
			   size_t total)
{
	__atomic_store_n(&r->base, base, __ATOMIC_RELAXED);
	r->slab_size = slab_size;
	r->nslabs = nslabs;
	r->nshared = nshared;
	r->slabs = slabs;
	__atomic_store_n(&r->total, total, __ATOMIC_RELEASE);
}

int zk_region_init(zk_region_t *r, size_t slab_size, unsigned nslabs,
		   unsigned shared_units, bool thp_always, bool rewindable)
{
	region_publish(r, NULL, 0, 0, 0, NULL, 0);
	size_t units = (size_t)nslabs + shared_units;
	if (nslabs == 0 || slab_size == 0 || slab_size % ZK_SLAB_ALIGN != 0 ||
	    slab_size > SIZE_MAX / units || (shared_units && !rewindable))
		return EINVAL;
	unsigned nshared = shared_units ? 1 : 0;
	size_t total = slab_size * units;
	size_t table = sizeof(zk_slab_t) * (nslabs + nshared);
	/* Resident slabs: a page bitmap and a word-age array each (see
	 * slab.h: garbage, used_epoch), committed as the slab grows. */
	size_t bits = rewindable ? 0 : meta_bytes(slab_size);
	void *base, *slabs, *bitmaps = NULL;
	int err = zk_os_reserve(total, ZK_SLAB_ALIGN, &base);
	if (err != 0)
		return err;
	if (bits != 0 &&
	    (err = zk_os_reserve(bits * nslabs, PAGE, &bitmaps)) != 0) {
		zk_os_release(base, total);
		return err;
	}
	err = zk_os_reserve(table, zk_os_page_size(), &slabs);
	if (err == 0) {
		err = zk_os_commit(slabs, table);
		if (err != 0)
			zk_os_release(slabs, table);
	}
	if (err != 0) {
		zk_os_release(base, total);
		if (bitmaps != NULL)
			zk_os_release(bitmaps, bits * nslabs);
		return err;
	}
	/* Advice is a preference: a kernel without THP refuses it harmlessly.
	 */
	(void)zk_os_advise_thp(base, total, thp_always);
	for (unsigned i = 0; i < nslabs + nshared; i++) {
		zk_slab_t *s = &((zk_slab_t *)slabs)[i];
		zk_hooks_init(&s->hooks);
		s->base = (char *)base + (size_t)i * slab_size;
		s->size = i < nslabs ? slab_size : shared_units * slab_size;
		atomic_init(&s->bump, 0);
		atomic_init(&s->written_end, 0);
		atomic_init(&s->committed, 0);
		atomic_init(&s->mark, 0);
		atomic_init(&s->arena_state, ZK_ARENA_NONE);
		s->dirty_end = 0;
		s->rewindable = rewindable;
		s->garbage = bitmaps ? (_Atomic uint64_t *)((char *)bitmaps +
							    (size_t)i * bits)
				     : NULL;
		s->used_epoch = bitmaps
				    ? (_Atomic uint32_t *)((char *)s->garbage +
							   slab_size / PAGE / 8)
				    : NULL;
		pthread_mutex_init(&s->trim_lock, NULL);
	}
	region_publish(r, base, slab_size, nslabs, nshared, slabs, total);
	return 0;
}

/* Commit the pages holding bytes [b0, b1) of a slab's metadata. */
static int commit_meta(char *b0, char *b1)
{
	uintptr_t lo = (uintptr_t)b0 & ~(uintptr_t)(PAGE - 1);
	uintptr_t hi = ((uintptr_t)b1 + PAGE - 1) & ~(uintptr_t)(PAGE - 1);
	return zk_os_commit((void *)lo, hi - lo);
}

/* Commit in steps of this much (or more), so a slab growing in small
 * extents makes few mprotect calls. */
#define COMMIT_GRANULE ((size_t)64 << 20)

int zk_slab_commit(zk_slab_t *s, size_t end)
{
	size_t cur = atomic_load_explicit(&s->committed, memory_order_acquire);
	while (cur < end) {
		size_t to =
		    end - cur < COMMIT_GRANULE ? cur + COMMIT_GRANULE : end;
		to = (to + ZK_SLAB_ALIGN - 1) & ~(ZK_SLAB_ALIGN - 1);
		if (to > s->size)
			to = s->size;
		/* Two threads may commit overlapping ranges: mprotect to the
		 * same protection is idempotent. */
		int err = zk_os_commit(s->base + cur, to - cur);
		if (err == 0 && s->garbage != NULL) {
			/* The bitmap and age words covering [cur, to). */
			err = commit_meta((char *)s->garbage + cur / PAGE / 8,
					  (char *)s->garbage +
					      (to / PAGE + 7) / 8);
			if (err == 0)
				err = commit_meta(
				    (char *)(s->used_epoch + cur / PAGE / 64),
				    (char *)(s->used_epoch +
					     (to / PAGE + 63) / 64));
		}
		if (err != 0)
			return err;
		if (atomic_compare_exchange_strong_explicit(
			&s->committed, &cur, to, memory_order_release,
			memory_order_acquire))
			cur = to;
	}
	return 0;
}

void *zk_slab_bump(zk_slab_t *s, void *want, size_t size, size_t align,
		   size_t *recycled)
{
	size_t cur = atomic_load_explicit(&s->bump, memory_order_relaxed);
	size_t start, end;
	do {
		if (want != NULL) {
			/* In-place extension: only the byte right at the bump
			 * pointer can be handed out. */
			if ((char *)want != s->base + cur)
				return NULL;
			start = cur;
		} else {
			uintptr_t a = ((uintptr_t)s->base + cur + align - 1) &
				      ~(uintptr_t)(align - 1);
			start = a - (uintptr_t)s->base;
		}
		if (start < cur || start > s->size || size > s->size - start)
			return NULL;
		end = start + size;
		if (zk_slab_commit(s, end) != 0)
			return NULL;
	} while (!atomic_compare_exchange_weak_explicit(
	    &s->bump, &cur, end, memory_order_relaxed, memory_order_relaxed));
	*recycled = start >= s->dirty_end ? 0
		    : end <= s->dirty_end ? size
					  : s->dirty_end - start;
	return s->base + start;
}

void zk_slab_rewind(zk_slab_t *s)
{
	size_t w = atomic_load_explicit(&s->written_end, memory_order_relaxed);
	if (w > s->dirty_end)
		s->dirty_end = w;
	atomic_store_explicit(&s->written_end, 0, memory_order_relaxed);
	atomic_store_explicit(&s->bump, 0, memory_order_relaxed);
}

size_t zk_slab_high_water(const zk_slab_t *s)
{
	size_t w = atomic_load_explicit(&s->written_end, memory_order_relaxed);
	return w > s->dirty_end ? w : s->dirty_end;
}

/* ------------------------------------------------ resident page bitmap */

/* n bits from bit lo (lo + n <= 64). */
static inline uint64_t bits_mask(unsigned lo, unsigned n)
{
	return (n == 64 ? ~(uint64_t)0 : (((uint64_t)1 << n) - 1)) << lo;
}

/* The lowest run of set bits of x (x != 0): its first bit and length. */
static inline void lowest_run(uint64_t x, unsigned *lo, unsigned *n)
{
	*lo = (unsigned)__builtin_ctzll(x);
	uint64_t run = x >> *lo;
	*n = run == ~(uint64_t)0 >> *lo ? 64 - *lo
					: (unsigned)__builtin_ctzll(~run);
}

/* Record that pages [off, off + len) were used (allocated, reused or
 * freed) in the current phase. */
static void note_used(zk_slab_t *s, size_t off, size_t len)
{
	uint32_t e = atomic_load_explicit(&zk_slab_epoch, memory_order_relaxed);
	size_t w0 = off / PAGE / 64, w1 = (off + len + PAGE - 1) / PAGE / 64;
	for (size_t w = w0; w <= w1 && w * 64 * PAGE < s->size; w++)
		if (atomic_load_explicit(&s->used_epoch[w],
					 memory_order_relaxed) != e)
			atomic_store_explicit(&s->used_epoch[w], e,
					      memory_order_relaxed);
}

void zk_slab_note_alloc(zk_slab_t *s, size_t off, size_t len)
{
	if (s->used_epoch != NULL)
		note_used(s, off, len);
}

void zk_slab_garbage_set(zk_slab_t *s, size_t off, size_t len)
{
	note_used(s, off, len); /* live until now: needed in this phase */
	size_t p = off / PAGE, end = (off + len) / PAGE;
	while (p < end) {
		size_t w = p / 64, b = p % 64;
		size_t n = end - p < 64 - b ? end - p : 64 - b;
		atomic_fetch_or_explicit(&s->garbage[w],
					 bits_mask((unsigned)b, (unsigned)n),
					 memory_order_relaxed);
		p += n;
	}
}

void zk_slab_garbage_clear(zk_slab_t *s, size_t off, size_t len)
{
	size_t p = off / PAGE, end = (off + len + PAGE - 1) / PAGE;
	pthread_mutex_lock(&s->trim_lock);
	note_used(s, off, len);
	while (p < end) {
		size_t w = p / 64, b = p % 64;
		size_t n = end - p < 64 - b ? end - p : 64 - b;
		uint64_t m = bits_mask((unsigned)b, (unsigned)n);
		uint64_t old = atomic_fetch_and_explicit(&s->garbage[w], ~m,
							 memory_order_relaxed) &
			       m;
		while (old != 0) {
			/* Clear each run of set bits with one memset. */
			unsigned lo, k;
			lowest_run(old, &lo, &k);
			memset(s->base + (w * 64 + lo) * PAGE, 0,
			       (size_t)k * PAGE);
			old &= ~bits_mask(lo, k);
		}
		p += n;
	}
	pthread_mutex_unlock(&s->trim_lock);
}

size_t zk_slab_garbage_trim(zk_slab_t *s, uint32_t epoch, unsigned k)
{
	size_t given = 0;
	size_t words =
	    atomic_load_explicit(&s->committed, memory_order_acquire) / PAGE /
	    64;
	pthread_mutex_lock(&s->trim_lock);
	for (size_t w = 0; w < words; w++) {
		uint64_t g =
		    atomic_load_explicit(&s->garbage[w], memory_order_relaxed);
		uint32_t used = atomic_load_explicit(&s->used_epoch[w],
						     memory_order_relaxed);
		/* Free pages of a word that none of the last k phases
		 * (epoch - k + 1 .. epoch) used. */
		if (g == 0 || epoch - used < k)
			continue;
		while (g != 0) {
			unsigned lo, n;
			lowest_run(g, &lo, &n);
			uint64_t m = bits_mask(lo, n);
			if (zk_os_purge(s->base + (w * 64 + lo) * PAGE,
					(size_t)n * PAGE) == 0) {
				/* Given back: the pages read as zero now. */
				atomic_fetch_and_explicit(&s->garbage[w], ~m,
							  memory_order_relaxed);
				given += (size_t)n * PAGE;
			}
			g &= ~m;
		}
	}
	pthread_mutex_unlock(&s->trim_lock);
	return given;
}
