/* zk_stats_get: a versioned snapshot of zkalloc's counters. */
#include "hooks.h"
#include "os.h"
#include "phase.h"

#include <zkalloc.h>

#include <errno.h>
#include <string.h>

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

/* Resident bytes of the part of a slab ever handed to jemalloc. */
static size_t resident(const zk_slab_t *sl)
{
	size_t n = 0;
	return zk_os_resident(sl->base, zk_slab_high_water(sl), &n) == 0 ? n : 0;
}

int zk_stats_get(zk_stats_t *out)
{
	size_t want;
	if (out == NULL ||
	    (want = out->size) < offsetof(zk_stats_t, version) + sizeof(uint32_t))
		return EINVAL;
	zk_init();
	zk_stats_t s;
	memset(&s, 0, sizeof(s));
	s.size = want < sizeof(s) ? want : sizeof(s);
	s.version = ZK_STATS_VERSION;
	pthread_mutex_lock(&zk_g.lock);
	s.region_reserved = zk_g.region.base != NULL;
	s.phase_active = LOAD(zk_g.active);
	s.epoch = LOAD(zk_g.epoch);
	s.slab_size = (size_t)zk_g.opt[ZK_OPT_SLAB_SIZE];
	s.nslabs = (unsigned)zk_g.opt[ZK_OPT_NSLABS];
	for (unsigned i = 0; i < zk_g.region.nslabs; i++) {
		const zk_slab_t *sl = &zk_g.region.slabs[i];
		size_t res = resident(sl);
		s.slabs_in_use += sl->state == ZK_SLAB_OWNED;
		s.resident_bytes += res;
		if (res > s.max_slab_resident)
			s.max_slab_resident = res;
	}
	for (unsigned i = 0; i < zk_g.small.nslabs; i++)
		s.small_resident_bytes += resident(&zk_g.small.slabs[i]);
	pthread_mutex_unlock(&zk_g.lock);
	s.overflow_count = LOAD(zk_g.overflow_count);
	s.overflow_bytes = LOAD(zk_g.overflow_bytes);
	s.arenas_created = LOAD(zk_g.arenas_created);
	s.arenas_destroyed = LOAD(zk_g.arenas_destroyed);
	s.hook_zeroed_bytes = LOAD(zk_hook_counters.zeroed_bytes);
	s.small_overflow_count = LOAD(zk_g.small_overflow_count);
	memcpy(out, &s, s.size);
	out->size = want; /* the caller's size stays as it was */
	return 0;
}
