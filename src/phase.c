/* Phase lifecycle: epochs, slab pool, per-thread arenas, thread exit, fork. */
#include "phase.h"

#include "check.h"
#include "os.h"

#include <zkalloc.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/types.h>
#include <string.h>

zk_global_t zk_g = {.lock = PTHREAD_MUTEX_INITIALIZER};
__thread zk_tls_t zk_tls __attribute__((tls_model("initial-exec")));

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static void options_apply(void);

/* Phase arenas keep every freed page (decay off) for reuse in the phase;
 * the exp-grow series is capped so a few large requests do not make the
 * arena ask its slab for ever larger chunks. */
#define PHASE_DECAY_MS ((ssize_t)-1)
#define SMALL_DECAY_MS ((ssize_t)0)
#define RETAIN_GROW_LIMIT ((size_t)64 << 20)

static void warnf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void warnf(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > 0)
		zk_os_warn(buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

static void release_slab_locked(zk_slab_t *s, bool keep_arena)
{
	if (s == NULL || s->state != ZK_SLAB_OWNED)
		return;
	/* A phase slab's memory stays valid until the next begin_phase, which
	 * rewinds it; a small slab's arena lives forever, so the next thread
	 * may take it over at once. */
	s->state = keep_arena ? ZK_SLAB_FREE : ZK_SLAB_ORPHANED;
}

static void on_thread_exit(void *unused)
{
	(void)unused;
	pthread_mutex_lock(&zk_g.lock);
	release_slab_locked(zk_tls.slab, false);
	release_slab_locked(zk_tls.small_slab, true);
	zk_tls.slab = zk_tls.small_slab = NULL;
	zk_tls.epoch = zk_tls.small_epoch = 0;
	pthread_mutex_unlock(&zk_g.lock);
}

static void fork_prepare(void)
{
	pthread_mutex_lock(&zk_g.lock);
}

static void fork_parent(void)
{
	pthread_mutex_unlock(&zk_g.lock);
}

/* Only the forking thread lives on in the child: every other thread's slab
 * is orphaned, as if those threads had exited. */
static void fork_child(void)
{
	zk_region_t *regions[2] = {&zk_g.region, &zk_g.small};
	for (int r = 0; r < 2; r++)
		for (unsigned i = 0; i < regions[r]->nslabs; i++) {
			zk_slab_t *s = &regions[r]->slabs[i];
			if (s != zk_tls.slab && s != zk_tls.small_slab)
				release_slab_locked(s, r == 1);
		}
	pthread_mutex_init(&zk_g.lock, NULL);
}

static void init_once_fn(void)
{
	zk_options_load(zk_g.opt);
	options_apply();
	zk_check_init();
	const char *junk = "false";
	size_t jlen = sizeof(junk);
	zk_g.pregrow_ok = je_mallctl("opt.junk", &junk, &jlen, NULL, 0) != 0 ||
			  strcmp(junk, "false") == 0;
	if (pthread_key_create(&zk_g.exit_key, on_thread_exit) != 0)
		warnf("zkalloc: warning: pthread_key_create failed; slabs of "
		      "exited threads will not be reused\n");
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}

void zk_init(void)
{
	pthread_once(&init_once, init_once_fn);
}

/* Derived copies of options that the fast path reads. Lock held or init. */
static void options_apply(void)
{
	zk_g.min_bytes = (size_t)zk_g.opt[ZK_OPT_MIN_BYTES];
	zk_g.promote_bytes = (size_t)zk_g.opt[ZK_OPT_PROMOTE_BYTES];
	zk_g.small_resident = zk_g.opt[ZK_OPT_SMALL] == ZK_SMALL_RESIDENT;
	/* Round the slab size up to the slab alignment. */
	uint64_t s = zk_g.opt[ZK_OPT_SLAB_SIZE];
	zk_g.opt[ZK_OPT_SLAB_SIZE] =
	    (s + ZK_SLAB_ALIGN - 1) & ~(uint64_t)(ZK_SLAB_ALIGN - 1);
}

int zk_opt_write(zk_opt_id_t id, uint64_t value)
{
	if ((unsigned)id >= ZK_OPT__COUNT || id == ZK_OPT_CHECK)
		return EINVAL;
	zk_init();
	pthread_mutex_lock(&zk_g.lock);
	int err = EBUSY;
	if (!zk_g.region_tried) {
		zk_g.opt[id] = value;
		options_apply();
		err = 0;
	}
	pthread_mutex_unlock(&zk_g.lock);
	return err;
}

static void reserve_regions_locked(void)
{
	zk_g.region_tried = true;
	size_t slab = (size_t)zk_g.opt[ZK_OPT_SLAB_SIZE];
	unsigned n = (unsigned)zk_g.opt[ZK_OPT_NSLABS];
	bool thp = zk_g.opt[ZK_OPT_THP] == ZK_THP_ALWAYS;
	int err = zk_region_init(&zk_g.region, slab, n, thp, true);
	if (err != 0) {
		warnf("zkalloc: warning: cannot reserve the phase region "
		      "(error %d: %s, %u slabs x %zu bytes); large allocations "
		      "are served by plain jemalloc and counted as overflow\n",
		      err, strerror(err), n, slab);
		return;
	}
	if (!zk_g.small_resident)
		return;
	size_t small = (slab / 4 + ZK_SLAB_ALIGN - 1) & ~(ZK_SLAB_ALIGN - 1);
	err = zk_region_init(&zk_g.small, small, n, thp, false);
	if (err != 0)
		warnf("zkalloc: warning: cannot reserve the resident small region "
		      "(error %d: %s, %u slabs x %zu bytes); small allocations "
		      "use ordinary jemalloc arenas\n",
		      err, strerror(err), n, small);
}

/* Make an arena served by slab s. Returns 0 and sets *ind, or an errno. */
static int arena_create(zk_slab_t *s, ssize_t decay, unsigned *ind)
{
	extent_hooks_t *h = &s->hooks;
	size_t len = sizeof(*ind);
	int err = je_mallctl("arenas.create", ind, &len, &h, sizeof(h));
	if (err != 0)
		return err;
	char name[64];
	size_t limit = RETAIN_GROW_LIMIT;
	snprintf(name, sizeof(name), "arena.%u.dirty_decay_ms", *ind);
	err = je_mallctl(name, NULL, NULL, &decay, sizeof(decay));
	snprintf(name, sizeof(name), "arena.%u.muzzy_decay_ms", *ind);
	err = err ? err : je_mallctl(name, NULL, NULL, &decay, sizeof(decay));
	snprintf(name, sizeof(name), "arena.%u.retain_grow_limit", *ind);
	err = err ? err : je_mallctl(name, NULL, NULL, &limit, sizeof(limit));
	if (err != 0) {
		/* An arena that would purge breaks the residency promise. */
		snprintf(name, sizeof(name), "arena.%u.destroy", *ind);
		je_mallctl(name, NULL, NULL, NULL, 0);
		return err;
	}
	atomic_fetch_add_explicit(&zk_g.arenas_created, 1, memory_order_relaxed);
	return 0;
}

/*
 * Give a new phase arena most of its slab as one retained extent. jemalloc
 * (opt.retain) never merges extents that came from different alloc-hook
 * calls, so an arena that grows chunk by chunk can reuse a freed block only
 * for requests that fit inside its chunk: a phase would need more than its
 * live peak. One extent split on demand lets freed neighbours coalesce, and
 * lets a proof larger than the ones before start on their resident pages.
 *
 * The block is allocated, freed and purged (slab.pregrowing set): jemalloc
 * writes nothing into it, the purge hooks refuse, so it stays as retained,
 * nothing faulted. On a slab nothing was ever written to, the decommit hook
 * accepts it: jemalloc then knows it is zero and calloc does not clear it
 * (the cold proof); its pieces come back through the commit hook, which
 * records them as written. Otherwise the block stays committed and counts
 * as written: jemalloc clears what calloc returns from it. Splitting it at
 * the old high-water mark would keep the zero knowledge for the pages above,
 * but then a proof larger than the last ones cannot use the resident pages
 * below for its biggest buffers, and resident memory grows by the old mark.
 * The rest of the slab stays for the arena's metadata.
 */
static void pregrow(zk_slab_t *s, unsigned ind)
{
	/* With junk filling jemalloc would write, and fault in, the block.
	 * Checked mode bumps each phase above the last one's protected
	 * memory, which a slab-sized extent would leave no room for. */
	if (!zk_g.pregrow_ok || zk_check_on)
		return;
	size_t b0 = zk_slab_used(s);
	size_t avail = s->size - b0;
	size_t keep = avail / 32 > ((size_t)8 << 20) ? avail / 32 : (size_t)8 << 20;
	if (avail < 4 * keep)
		return;
	int flags = MALLOCX_ARENA(ind) | MALLOCX_TCACHE_NONE;
	void *p = NULL;
	s->pregrowing = true;
	/* jemalloc rounds sizes up to its classes: a try that does not fit
	 * fails in the alloc hook at no cost, and a smaller one follows. */
	for (size_t want = avail - keep; p == NULL && want >= avail / 2;
	     want -= want / 16)
		p = je_mallocx(want, flags);
	if (p != NULL) {
		s->decommitted_lo = s->decommitted_hi = 0;
		je_dallocx(p, MALLOCX_TCACHE_NONE);
		char name[64];
		snprintf(name, sizeof(name), "arena.%u.purge", ind);
		je_mallctl(name, NULL, NULL, NULL, 0);
	}
	s->pregrowing = false;
	/* What was handed out but not accepted as decommitted stays committed,
	 * and jemalloc may carve and write it without calling any hook. */
	size_t b1 = zk_slab_used(s);
	if (b1 > b0 && (s->decommitted_lo != b0 || s->decommitted_hi != b1))
		zk_slab_mark_written(s, b1);
}

/* Destroy a phase arena so its slab can be rewound. */
static int arena_destroy(unsigned ind)
{
	char name[64];
	snprintf(name, sizeof(name), "arena.%u.destroy", ind);
	int err = je_mallctl(name, NULL, NULL, NULL, 0);
	if (err == 0)
		atomic_fetch_add_explicit(&zk_g.arenas_destroyed, 1,
					  memory_order_relaxed);
	return err;
}

static zk_slab_t *take_free_slab_locked(zk_region_t *r)
{
	for (unsigned i = 0; i < r->nslabs; i++)
		if (r->slabs[i].state == ZK_SLAB_FREE) {
			r->slabs[i].state = ZK_SLAB_OWNED;
			return &r->slabs[i];
		}
	return NULL;
}

static void register_exit_locked(void)
{
	/* Any non-NULL value makes the destructor run at thread exit. */
	pthread_setspecific(zk_g.exit_key, &zk_tls);
}

static bool warned_slabs, warned_arena;

int zk_phase_flags_slow(uint64_t epoch)
{
	int flags = 0;
	pthread_mutex_lock(&zk_g.lock);
	if (!atomic_load_explicit(&zk_g.active, memory_order_relaxed) ||
	    zk_g.region.base == NULL)
		goto out;
	if (zk_tls.slab != NULL && zk_tls.slab->state == ZK_SLAB_LOST)
		zk_tls.slab = NULL;
	if (zk_tls.slab == NULL) {
		zk_tls.slab = take_free_slab_locked(&zk_g.region);
		if (zk_tls.slab == NULL) {
			if (!warned_slabs)
				warnf("zkalloc: warning: all %u slabs are held "
				      "by other threads; this thread's large "
				      "allocations use plain jemalloc "
				      "(ZK_ALLOC_SLABS raises the count)\n",
				      zk_g.region.nslabs);
			warned_slabs = true;
			goto out;
		}
		register_exit_locked();
	}
	zk_slab_t *s = zk_tls.slab;
	if (s->arena_epoch != epoch) {
		unsigned ind;
		int err = arena_create(s, PHASE_DECAY_MS, &ind);
		if (err != 0) {
			if (!warned_arena)
				warnf("zkalloc: warning: cannot create a phase "
				      "arena (error %d: %s); large allocations "
				      "use plain jemalloc\n",
				      err, strerror(err));
			warned_arena = true;
			goto out;
		}
		s->arena_ind = ind;
		s->arena_epoch = epoch;
		pregrow(s, ind);
	}
	flags = MALLOCX_ARENA(s->arena_ind) | MALLOCX_TCACHE_NONE;
out:
	/* Cache the answer, success or not, for the rest of this phase. */
	zk_tls.epoch = epoch;
	zk_tls.flags = flags;
	pthread_mutex_unlock(&zk_g.lock);
	return flags;
}

int zk_small_flags_slow(uint64_t epoch)
{
	pthread_mutex_lock(&zk_g.lock);
	if (zk_tls.small_slab == NULL && zk_g.small.base != NULL) {
		zk_slab_t *s = take_free_slab_locked(&zk_g.small);
		if (s != NULL && s->arena_epoch == 0) {
			unsigned ind;
			if (arena_create(s, SMALL_DECAY_MS, &ind) == 0) {
				s->arena_ind = ind;
				s->arena_epoch = epoch; /* never destroyed */
			} else {
				s->state = ZK_SLAB_FREE;
				s = NULL;
			}
		}
		if (s != NULL) {
			zk_tls.small_slab = s;
			register_exit_locked();
		}
	}
	zk_tls.small_epoch = epoch;
	/* Small blocks keep the thread cache: their arena is never destroyed,
	 * so a cached block can never outlive it. */
	zk_tls.small_flags =
	    zk_tls.small_slab ? MALLOCX_ARENA(zk_tls.small_slab->arena_ind) : 0;
	pthread_mutex_unlock(&zk_g.lock);
	return zk_tls.small_flags;
}

static bool warned_destroy;
static _Atomic bool warned_full;

void zk_warn_slab_full(size_t size)
{
	if (atomic_load_explicit(&warned_full, memory_order_relaxed) ||
	    atomic_exchange_explicit(&warned_full, true, memory_order_relaxed))
		return;
	warnf("zkalloc: warning: a phase slab is full (a request of %zu bytes "
	      "did not fit; slabs are %zu bytes); requests that do not fit are "
	      "served by plain jemalloc and counted as overflow "
	      "(ZK_ALLOC_SLAB_GB raises the slab size)\n",
	      size, (size_t)zk_g.opt[ZK_OPT_SLAB_SIZE]);
}

int zk_begin_phase(void)
{
	zk_init();
	pthread_mutex_lock(&zk_g.lock);
	if (atomic_load_explicit(&zk_g.active, memory_order_relaxed)) {
		pthread_mutex_unlock(&zk_g.lock);
		return EBUSY;
	}
	if (__builtin_expect(zk_check_on, 0))
		zk_check_begin();
	if (!zk_g.region_tried)
		reserve_regions_locked();
	/* A phase block freed by plain free() may sit in this thread's cache
	 * (only possible with a lowered ZK_ALLOC_MIN_BYTES); flush it before
	 * its arena goes. Other threads' caches cannot be reached. */
	je_mallctl("thread.tcache.flush", NULL, NULL, NULL, 0);
	for (unsigned i = 0; i < zk_g.region.nslabs; i++) {
		zk_slab_t *s = &zk_g.region.slabs[i];
		if (s->state == ZK_SLAB_LOST)
			continue;
		if (s->arena_epoch != 0) {
			int err = arena_destroy(s->arena_ind);
			if (err != 0) {
				/* Its memory is still jemalloc's: never reuse. */
				if (!warned_destroy)
					warnf("zkalloc: warning: cannot destroy "
					      "arena %u (error %d: %s); its slab "
					      "is retired\n",
					      s->arena_ind, err, strerror(err));
				warned_destroy = true;
				s->state = ZK_SLAB_LOST;
				continue;
			}
			s->arena_epoch = 0;
		}
		if (__builtin_expect(zk_check_on, 0))
			zk_check_retire(s); /* protect instead of reuse */
		else
			zk_slab_rewind(s);
		if (s->state == ZK_SLAB_ORPHANED)
			s->state = ZK_SLAB_FREE;
	}
	atomic_store_explicit(&zk_g.epoch,
			      atomic_load_explicit(&zk_g.epoch,
						   memory_order_relaxed) + 1,
			      memory_order_release);
	atomic_store_explicit(&zk_g.active, true, memory_order_release);
	pthread_mutex_unlock(&zk_g.lock);
	return 0;
}

int zk_end_phase(void)
{
	atomic_store_explicit(&zk_g.active, false, memory_order_release);
	return 0;
}

bool zk_phase_active(void)
{
	return atomic_load_explicit(&zk_g.active, memory_order_acquire);
}

uint64_t zk_phase_epoch(void)
{
	return atomic_load_explicit(&zk_g.epoch, memory_order_acquire);
}

unsigned zk_phase_slabs_in_use(void)
{
	unsigned n = 0;
	pthread_mutex_lock(&zk_g.lock);
	for (unsigned i = 0; i < zk_g.region.nslabs; i++)
		n += zk_g.region.slabs[i].state == ZK_SLAB_OWNED;
	pthread_mutex_unlock(&zk_g.lock);
	return n;
}
