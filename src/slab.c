/* Region reservation and the per-slab bump pointer. */
#include "slab.h"

#include "hooks.h"
#include "os.h"

#include <errno.h>
#include <string.h>

/* zk_owns reads base and total on any thread without a lock: everything
 * else is written before total is stored with release, so a reader that
 * loads a non-zero total (acquire) sees the whole region, and one that
 * loads 0 looks no further. */
static void region_publish(zk_region_t *r, char *base, size_t slab_size,
			   unsigned nslabs, zk_slab_t *slabs, size_t total)
{
	__atomic_store_n(&r->base, base, __ATOMIC_RELAXED);
	r->slab_size = slab_size;
	r->nslabs = nslabs;
	r->slabs = slabs;
	__atomic_store_n(&r->total, total, __ATOMIC_RELEASE);
}

int zk_region_init(zk_region_t *r, size_t slab_size, unsigned nslabs,
		   bool thp_always, bool rewindable)
{
	region_publish(r, NULL, 0, 0, NULL, 0);
	if (nslabs == 0 || slab_size == 0 || slab_size % ZK_SLAB_ALIGN != 0 ||
	    slab_size > SIZE_MAX / nslabs)
		return EINVAL;
	size_t total = slab_size * nslabs;
	size_t table = sizeof(zk_slab_t) * nslabs;
	void *base, *slabs;
	int err = zk_os_reserve(total, ZK_SLAB_ALIGN, &base);
	if (err != 0)
		return err;
	err = zk_os_reserve(table, zk_os_page_size(), &slabs);
	if (err != 0) {
		zk_os_release(base, total);
		return err;
	}
	/* Advice is a preference: a kernel without THP refuses it harmlessly. */
	(void)zk_os_advise_thp(base, total, thp_always);
	for (unsigned i = 0; i < nslabs; i++) {
		zk_slab_t *s = &((zk_slab_t *)slabs)[i];
		zk_hooks_init(&s->hooks);
		s->base = (char *)base + (size_t)i * slab_size;
		s->size = slab_size;
		atomic_init(&s->bump, 0);
		atomic_init(&s->written_end, 0);
		s->dirty_end = 0;
		s->rewindable = rewindable;
		s->state = ZK_SLAB_FREE;
	}
	region_publish(r, base, slab_size, nslabs, slabs, total);
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
