/* zk_stats_get: a versioned snapshot of zkalloc's counters. */
#include "arena.h"
#include "hooks.h"
#include "phase.h"
#include "pool.h"
#include "stats.h"

#include <zkalloc.h>

#include <errno.h>
#include <string.h>

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

/* The counters: plain loads, no lock, no scan. */
static void counters(zk_stats_t *s)
{
	const zk_pool_stats_t *ps = &zk_pool.stats;
	size_t total = __atomic_load_n(&zk_pool.total, __ATOMIC_ACQUIRE);
	s->version = ZK_STATS_VERSION;
	s->region_reserved = total != 0;
	s->phase_active = LOAD(zk_g.active);
	s->epoch = LOAD(zk_g.epoch);
	s->nslabs = (unsigned)zk_g.opt[ZK_OPT_ARENAS];
	s->slabs_in_use = zk_arenas_created();
	s->overflow_count = LOAD(zk_hook_counters.overflow.n);
	s->overflow_bytes = LOAD(zk_hook_counters.overflow_bytes.n);
	s->arenas_created = zk_arenas_created();
	s->hook_zeroed_bytes = LOAD(ps->cleared_bytes);
	s->trims = LOAD(ps->trims);
	s->trimmed_bytes = LOAD(ps->trimmed_bytes);
	s->begin_ns_last = LOAD(zk_g.begin_ns_last);
	s->committed_bytes = LOAD(zk_pool.committed_bytes);
	s->reserved_bytes = total ? total + LOAD(zk_pool.meta_reserved) : 0;
	s->max_block = total;
	s->kept_blocks = LOAD(zk_g.kept_blocks);
	s->kept_bytes = LOAD(zk_g.kept_bytes);
	s->live_bytes = LOAD(ps->live_bytes);
	s->metadata_bytes = LOAD(ps->meta_bytes);
	s->free_bytes = LOAD(zk_pool.free_bytes);
	/* Both bump pointers' pages (none before the region exists). */
	s->top_bytes = total == 0 ? 0
				  : LOAD(zk_pool.top_bytes) +
					(total - LOAD(zk_pool.floor_bytes));
	s->binds = LOAD(zk_binds);
	s->bind_failures = LOAD(zk_bind_failures);
	s->madvise_failures = LOAD(ps->madvise_failures);
	s->mprotect_failures = LOAD(ps->mprotect_failures);
	s->commit_failures = LOAD(ps->commit_failures);
	s->quarantined_bytes = LOAD(ps->quarantined_bytes);
	s->pool_degraded = LOAD(zk_pool.degraded);
	s->zeroed_memset_bytes = LOAD(ps->memset_bytes);
	s->dalloc_refused = LOAD(ps->dalloc_refused);
}

void zk_stats_read(zk_stats_t *s, bool with_scan)
{
	zk_init();
	memset(s, 0, sizeof(*s));
	s->size = sizeof(*s);
	counters(s);
	if (with_scan)
		s->resident_bytes = zk_pool_resident();
}

int zk_stats_get(zk_stats_t *out)
{
	size_t want;
	if (out == NULL || (want = out->size) <
			       offsetof(zk_stats_t, version) + sizeof(uint32_t))
		return EINVAL;
	zk_stats_t s;
	/* Only a caller whose struct holds the resident field pays for the
	 * scan (mincore over the pool, no lock held). */
	zk_stats_read(&s, want > offsetof(zk_stats_t, resident_bytes));
	s.size = want < sizeof(s) ? want : sizeof(s);
	memcpy(out, &s, s.size);
	out->size = want; /* the caller's size stays as it was */
	return 0;
}
