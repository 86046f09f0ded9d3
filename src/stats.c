/* zk_stats_get: a versioned snapshot of zkalloc's counters. */
#include "hooks.h"
#include "os.h"
#include "phase.h"
#include "stats.h"

#include <zkalloc.h>

#include <errno.h>
#include <string.h>

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

/* Resident bytes of the part of a slab ever handed to jemalloc. */
static size_t resident(const zk_slab_t *sl)
{
	size_t n = 0;
	return zk_os_resident(sl->base, zk_slab_high_water(sl), &n) == 0 ? n
									 : 0;
}

/* The counters: plain loads, no lock, no scan. */
static void counters(zk_stats_t *s)
{
	s->version = ZK_STATS_VERSION;
	s->region_reserved =
	    __atomic_load_n(&zk_g.region.total, __ATOMIC_ACQUIRE) != 0;
	s->phase_active = LOAD(zk_g.active);
	s->epoch = LOAD(zk_g.epoch);
	s->slab_size = s->region_reserved ? zk_g.region.slab_size
					  : (size_t)zk_g.opt[ZK_OPT_SLAB_SIZE];
	s->nslabs = s->region_reserved ? zk_g.region.nslabs
				       : (unsigned)zk_g.opt[ZK_OPT_NSLABS];
	s->slabs_in_use = zk_phase_slabs_in_use();
	s->overflow_count = LOAD(zk_g.overflow_count);
	s->overflow_bytes = LOAD(zk_g.overflow_bytes);
	s->arenas_created = LOAD(zk_g.arenas_created);
	s->arenas_destroyed = LOAD(zk_g.arenas_destroyed);
	s->hook_zeroed_bytes = LOAD(zk_hook_counters.zeroed_bytes.n);
	s->small_overflow_count = LOAD(zk_g.small_overflow_count);
	s->shared_count = LOAD(zk_g.shared_count);
	s->arenas_reset = LOAD(zk_g.arenas_reset);
	s->trims = LOAD(zk_g.trims);
	s->trimmed_bytes = LOAD(zk_g.trimmed_bytes);
	s->begin_ns_last = LOAD(zk_g.begin_ns_last);
	s->max_block = zk_phase_max_block();
	const zk_region_t *regions[2] = {&zk_g.region, &zk_g.small};
	for (int r = 0; r < 2; r++) {
		if (__atomic_load_n(&regions[r]->total, __ATOMIC_ACQUIRE) == 0)
			continue;
		s->reserved_bytes += regions[r]->total;
		for (unsigned i = 0;
		     i < regions[r]->nslabs + regions[r]->nshared; i++)
			s->committed_bytes +=
			    LOAD(regions[r]->slabs[i].committed);
	}
}

/* The resident scan (mincore over what each slab handed out): no lock is
 * held, so allocations go on meanwhile; the figures are a snapshot. */
static void scan(zk_stats_t *s)
{
	if (__atomic_load_n(&zk_g.region.total, __ATOMIC_ACQUIRE) != 0)
		for (unsigned i = 0;
		     i < zk_g.region.nslabs + zk_g.region.nshared; i++) {
			size_t res = resident(&zk_g.region.slabs[i]);
			s->resident_bytes += res;
			if (res > s->max_slab_resident)
				s->max_slab_resident = res;
		}
	if (__atomic_load_n(&zk_g.small.total, __ATOMIC_ACQUIRE) != 0)
		for (unsigned i = 0; i < zk_g.small.nslabs; i++)
			s->small_resident_bytes +=
			    resident(&zk_g.small.slabs[i]);
}

void zk_stats_read(zk_stats_t *s, bool with_scan)
{
	zk_init();
	memset(s, 0, sizeof(*s));
	s->size = sizeof(*s);
	counters(s);
	if (with_scan)
		scan(s);
}

int zk_stats_get(zk_stats_t *out)
{
	size_t want;
	if (out == NULL || (want = out->size) <
			       offsetof(zk_stats_t, version) + sizeof(uint32_t))
		return EINVAL;
	zk_init();
	zk_stats_t s;
	memset(&s, 0, sizeof(s));
	s.size = want < sizeof(s) ? want : sizeof(s);
	counters(&s);
	/* Only a caller whose struct holds the resident fields pays for the
	 * scan. */
	if (want > offsetof(zk_stats_t, resident_bytes))
		scan(&s);
	memcpy(out, &s, s.size);
	out->size = want; /* the caller's size stays as it was */
	return 0;
}
