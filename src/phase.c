/*
 * Phase lifecycle: epochs, the slab pools, per-slab arenas, phase decay
 * (trim), thread exit, fork.
 *
 * Two pools of slabs, each slab serving one jemalloc arena that lives as
 * long as the process:
 *  - phase slabs: large in-phase requests. Threads take a slab at their
 *    first phase request of each phase (their previous slab if it is free,
 *    else the free slab with the most resident pages, else they share the
 *    least used one: arenas are thread-safe); zk_begin_phase empties every
 *    arena used in the phase with arena.<i>.reset, so the next phase
 *    reuses the same resident pages. Only checked mode destroys phase
 *    arenas (to protect their memory) and re-creates them.
 *  - resident slabs: ordinary memory made during a phase (small requests,
 *    realloc growth of ordinary blocks). Held by a thread until it exits,
 *    then taken over with its arena; shared when all are held. Never
 *    reset: their blocks are ordinary and live until freed.
 * Phase decay: every slab records the highest offset each phase used; at
 * zk_begin_phase, pages above the highest mark of the last K phases
 * (ZK_ALLOC_TRIM_PHASES) are given back to the kernel. Pages the recent
 * phases needed are never given back between proofs.
 *
 * Locking: zk_g.lock only guards the pools' ownership fields and the
 * begin/end state. Nothing that can allocate, and no jemalloc call, runs
 * under it: arenas are created, reset and trimmed outside it.
 */
#include "phase.h"

#include "check.h"
#include "hooks.h"
#include "os.h"

#include <zkalloc.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sched.h>
#include <time.h>

zk_global_t zk_g = {.lock = PTHREAD_MUTEX_INITIALIZER};
__thread zk_tls_t zk_tls __attribute__((tls_model("initial-exec")));

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static void options_apply(void);

/* Both kinds of arena "purge" at once: a freed extent goes straight to the
 * retained set, where it coalesces with its neighbours and can be split
 * for any later request (dirty extents are only split up to
 * 2^lg_extent_max_active_fit times the request, and jemalloc reuses freed
 * small slabs poorly from the dirty set). The hooks keep the pages
 * resident: phase slabs refuse every purge, resident slabs only record
 * the pages as free (hooks.c). Only the phase decay at zk_begin_phase
 * gives pages back. */
#define PHASE_DECAY_MS	  ((ssize_t)0)
#define RESIDENT_DECAY_MS ((ssize_t)0)
#define RETAIN_GROW_LIMIT ((size_t)64 << 20)
#define MiB		  ((size_t)1 << 20)

/* One warning per cause and process. */
#define WARN_ONCE(flag, ...)                                                   \
	do {                                                                   \
		static _Atomic bool flag;                                      \
		if (!atomic_exchange_explicit(&flag, true,                     \
					      memory_order_relaxed))           \
			zk_os_warnf(__VA_ARGS__);                              \
	} while (0)

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* ------------------------------------------------------- thread exit */

static void release_locked(void)
{
	zk_slab_t *s = zk_tls.slab;
	uint64_t e = atomic_load_explicit(&zk_g.epoch, memory_order_relaxed);
	/* A phase slab taken in the current phase is free for another thread
	 * at once: its arena, and the blocks in it, live on until the next
	 * zk_begin_phase, whoever allocates there next. A slab this thread
	 * took in an earlier phase is not its own any more. */
	if (s != NULL && zk_tls.epoch == e && s->users_epoch == e &&
	    s->users > 0)
		s->users--;
	s = zk_tls.small_slab;
	if (s != NULL && s->users > 0)
		s->users--;
}

static void on_thread_exit(void *unused)
{
	(void)unused;
	pthread_mutex_lock(&zk_g.lock);
	release_locked();
	pthread_mutex_unlock(&zk_g.lock);
	/* An allocation by a later TLS destructor takes a slab again and
	 * registers again; glibc then runs this destructor once more. */
	zk_tls = (zk_tls_t){0};
}

/* Register the exit destructor, outside every lock: for a key index >= 32
 * glibc callocs its second-level block here, which may re-enter zkalloc
 * (zk_tls.busy routes that call to plain jemalloc). */
static void register_exit(void)
{
	if (zk_tls.key_set)
		return;
	zk_tls.key_set = true;
	if (pthread_setspecific(zk_g.exit_key, &zk_tls) != 0)
		zk_tls.key_set = false;
}

/* --------------------------------------------------------------- fork */

static void fork_prepare(void)
{
	pthread_mutex_lock(&zk_g.lock);
}

static void fork_parent(void)
{
	pthread_mutex_unlock(&zk_g.lock);
}

/* Only the forking thread lives on in the child: every other thread's
 * slab is released, as if those threads had exited. */
static void fork_child(void)
{
	zk_region_t *regions[2] = {&zk_g.region, &zk_g.small};
	for (int r = 0; r < 2; r++)
		for (unsigned i = 0; i < regions[r]->nslabs; i++) {
			zk_slab_t *s = &regions[r]->slabs[i];
			s->users = s == zk_tls.slab || s == zk_tls.small_slab;
		}
	zk_g.beginning = false;
	pthread_mutex_init(&zk_g.lock, NULL);
}

/* ------------------------------------------------------------ options */

static void init_once_fn(void)
{
	zk_options_load(zk_g.opt);
	options_apply();
	zk_check_init();
	const char *junk = "false";
	size_t jlen = sizeof(junk);
	bool no_junk = je_mallctl("opt.junk", &junk, &jlen, NULL, 0) != 0 ||
		       strcmp(junk, "false") == 0;
	bool retain = true;
	size_t blen = sizeof(retain);
	if (je_mallctl("opt.retain", &retain, &blen, NULL, 0) != 0)
		retain = true;
	zk_g.retain = retain;
	/* Pregrowing commits most of a slab at once: fine when commit is
	 * free (overcommit 0 or 1), not under a strict commit limit. */
	zk_g.pregrow_ok = no_junk && !zk_os_overcommit_strict();
	if (!no_junk)
		zk_os_warnf(
		    "zkalloc: note: jemalloc fills memory with junk "
		    "(opt.junk); phase arenas are not pregrown, so freed "
		    "phase blocks coalesce less\n");
	if (pthread_key_create(&zk_g.exit_key, on_thread_exit) != 0)
		zk_os_warnf(
		    "zkalloc: warning: pthread_key_create failed; slabs of "
		    "exited threads are reused only at the next phase\n");
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
	zk_g.shared_bytes = (size_t)zk_g.opt[ZK_OPT_SHARED_BYTES];
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

/* -------------------------------------------------------- reservation */

/*
 * Reserve both regions at the first zk_begin_phase. Address space only
 * (PROT_NONE): pages are committed as slabs grow. Under a finite RLIMIT_AS
 * the regions take at most half of the address space left, shrinking the
 * slab size (then the slab count), so that the rest of the program keeps
 * room for its own allocations.
 */
static void reserve_regions(void)
{
	size_t slab = (size_t)zk_g.opt[ZK_OPT_SLAB_SIZE];
	unsigned n = (unsigned)zk_g.opt[ZK_OPT_NSLABS];
	/* The shared slab is as large as all thread slabs together: the
	 * process's big buffers fit it whichever threads make them. */
	bool shared = zk_g.shared_bytes != 0;
	size_t units =
	    (size_t)n * ((shared ? 2 : 1) + (zk_g.small_resident ? 1 : 0));
	size_t budget = zk_os_as_headroom();
	if (budget != SIZE_MAX) {
		budget /= 2;
		size_t per = budget / units;
		per &= ~(ZK_SLAB_ALIGN - 1);
		if (per < 64 * MiB) {
			per = 64 * MiB;
			n = (unsigned)(budget / per / (units / n));
		}
		if (n == 0) {
			zk_os_warnf(
			    "zkalloc: warning: cannot reserve the phase "
			    "region (RLIMIT_AS leaves %zu bytes of "
			    "address space, too little for 64 MiB slabs "
			    "in half of it); large allocations are "
			    "served by plain jemalloc and counted as "
			    "overflow\n",
			    zk_os_as_headroom());
			return;
		}
		if (per < slab || n < (unsigned)zk_g.opt[ZK_OPT_NSLABS])
			zk_os_warnf(
			    "zkalloc: note: RLIMIT_AS: the regions are "
			    "reserved as %u slabs x %zu bytes (asked: %u "
			    "x %zu)\n",
			    n, per < slab ? per : slab,
			    (unsigned)zk_g.opt[ZK_OPT_NSLABS], slab);
		if (per < slab)
			slab = per;
	}
	bool thp = zk_g.opt[ZK_OPT_THP] == ZK_THP_ALWAYS;
	int err =
	    zk_region_init(&zk_g.region, slab, n, shared ? n : 0, thp, true);
	if (err != 0) {
		zk_os_warnf("zkalloc: warning: cannot reserve the phase region "
			    "(error %d: %s, %u slabs x %zu bytes); large "
			    "allocations are served by plain jemalloc and "
			    "counted as overflow\n",
			    err, strerror(err), n, slab);
		return;
	}
	if (!zk_g.small_resident)
		return;
	err = zk_region_init(&zk_g.small, slab, n, 0, thp, false);
	if (err != 0)
		zk_os_warnf("zkalloc: warning: cannot reserve the resident "
			    "region (error %d: %s, %u slabs x %zu bytes); "
			    "ordinary in-phase allocations use plain jemalloc "
			    "arenas\n",
			    err, strerror(err), n, slab);
}

/* ------------------------------------------------------------- arenas */

static int arena_ctl(unsigned ind, const char *what, void *newp, size_t len)
{
	char name[64];
	snprintf(name, sizeof(name), "arena.%u.%s", ind, what);
	return je_mallctl(name, NULL, NULL, newp, len);
}

/* What pregrow leaves of avail bytes for the arena's metadata. */
static size_t pregrow_keep(size_t avail)
{
	return avail / 32 > 8 * MiB ? avail / 32 : 8 * MiB;
}

/*
 * Give a new phase arena most of its slab as one retained extent. jemalloc
 * never merges extents that came from different alloc-hook calls, so an
 * arena that grows chunk by chunk can reuse a freed block only for
 * requests that fit inside its chunk. One extent split on demand lets
 * freed neighbours coalesce, and lets a proof larger than the ones before
 * start on their resident pages.
 *
 * The block is allocated, freed and purged (slab.pregrowing set):
 * jemalloc writes nothing into it, and on a slab never written to the
 * purge_forced hook reports it zero, so calloc does not clear it (the cold
 * proof). Pieces freed later are not known zero any more, and merge into
 * non-zero extents: calloc then clears what it takes. The rest of the
 * slab stays for the arena's metadata.
 */
static void pregrow(zk_slab_t *s, unsigned ind)
{
	/* With junk filling jemalloc would write, and fault in, the block;
	 * under a strict commit limit it would charge the whole slab.
	 * Checked mode bumps each phase above the last one's protected
	 * memory, which a slab-sized extent would leave no room for. */
	if (!zk_g.pregrow_ok || zk_check_on)
		return;
	size_t b0 = zk_slab_used(s);
	size_t avail = s->size - b0;
	size_t keep = pregrow_keep(avail);
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
		s->pg_lo = (size_t)((char *)p - s->base);
		s->pg_hi = zk_slab_used(s);
		je_dallocx(p, MALLOCX_TCACHE_NONE);
		arena_ctl(ind, "purge", NULL, 0);
	}
	s->pregrowing = false;
	/* jemalloc may carve and write any of it without calling a hook. */
	zk_slab_mark_written(s, zk_slab_used(s));
}

/* Make the arena of slab s. Returns 0, or an errno. */
static int arena_create(zk_slab_t *s, bool phase)
{
	extent_hooks_t *h = &s->hooks;
	unsigned ind;
	size_t len = sizeof(ind);
	int err = je_mallctl("arenas.create", &ind, &len, &h, sizeof(h));
	if (err != 0)
		return err;
	ssize_t decay = phase ? PHASE_DECAY_MS : RESIDENT_DECAY_MS;
	size_t limit = RETAIN_GROW_LIMIT;
	err = arena_ctl(ind, "dirty_decay_ms", &decay, sizeof(decay));
	err =
	    err ? err : arena_ctl(ind, "muzzy_decay_ms", &decay, sizeof(decay));
	if (err == 0 && zk_g.retain)
		err =
		    arena_ctl(ind, "retain_grow_limit", &limit, sizeof(limit));
	if (err != 0) {
		/* An arena that purges by the clock breaks the promise. */
		arena_ctl(ind, "destroy", NULL, 0);
		return err;
	}
	if (phase)
		pregrow(s, ind);
	s->arena_ind = ind;
	atomic_fetch_add_explicit(&zk_g.arenas_created, 1,
				  memory_order_relaxed);
	return 0;
}

/* Make sure slab s has an arena, creating it (outside any lock) if this
 * thread is the first. Returns true when the arena is ready. */
static bool arena_ensure(zk_slab_t *s, bool phase)
{
	int st = atomic_load_explicit(&s->arena_state, memory_order_acquire);
	/* A thread sharing a slab whose arena another thread is creating
	 * waits for it (no lock is held by either). */
	while (st == ZK_ARENA_CREATING) {
		sched_yield();
		st =
		    atomic_load_explicit(&s->arena_state, memory_order_acquire);
	}
	if (st == ZK_ARENA_READY)
		return true;
	if (st != ZK_ARENA_NONE ||
	    !atomic_compare_exchange_strong_explicit(
		&s->arena_state, &st, ZK_ARENA_CREATING, memory_order_acq_rel,
		memory_order_acquire))
		return false; /* another thread is creating it, or lost */
	int err = arena_create(s, phase);
	if (err != 0) {
		atomic_store_explicit(&s->arena_state, ZK_ARENA_NONE,
				      memory_order_release);
		WARN_ONCE(warned_arena,
			  "zkalloc: warning: cannot create a %s arena (error "
			  "%d: %s); those allocations use plain jemalloc\n",
			  phase ? "phase" : "resident", err, strerror(err));
		return false;
	}
	atomic_store_explicit(&s->arena_state, ZK_ARENA_READY,
			      memory_order_release);
	return true;
}

static bool arena_ready(const zk_slab_t *s)
{
	return atomic_load_explicit(&s->arena_state, memory_order_acquire) ==
	       ZK_ARENA_READY;
}

/* --------------------------------------------------------- slab pools */

/* Threads using slab s now: phase slabs count per phase. Lock held. */
static unsigned users_locked(const zk_slab_t *s, uint64_t epoch, bool phase)
{
	return !phase || s->users_epoch == epoch ? s->users : 0;
}

/* Whether slab s may be taken by a thread as its own. Lock held. */
static bool free_locked(const zk_slab_t *s, uint64_t epoch, bool phase)
{
	int st = atomic_load_explicit(&s->arena_state, memory_order_relaxed);
	return st != ZK_ARENA_LOST && st != ZK_ARENA_CREATING &&
	       users_locked(s, epoch, phase) == 0;
}

/* The slab a thread takes from a pool: prefer if it is free; else the
 * free slab with an arena and the most pages resident (a new thread that
 * does the big allocation of this proof lands on the pages the last
 * proof's one used); else share the ready slab with the fewest users.
 * Lock held. */
static zk_slab_t *pick_locked(zk_region_t *r, zk_slab_t *prefer, uint64_t epoch,
			      bool phase, bool *shared)
{
	*shared = false;
	if (prefer != NULL && free_locked(prefer, epoch, phase))
		return prefer;
	zk_slab_t *best = NULL, *least = NULL;
	unsigned least_users = ~0u;
	for (unsigned i = 0; i < r->nslabs; i++) {
		zk_slab_t *s = &r->slabs[i];
		bool ready = arena_ready(s);
		if (free_locked(s, epoch, phase)) {
			if (best == NULL || (ready && !arena_ready(best)) ||
			    (ready == arena_ready(best) &&
			     atomic_load_explicit(&s->res_hi,
						  memory_order_relaxed) >
				 atomic_load_explicit(&best->res_hi,
						      memory_order_relaxed)))
				best = s;
		} else if ((ready ||
			    atomic_load_explicit(&s->arena_state,
						 memory_order_relaxed) ==
				ZK_ARENA_CREATING) &&
			   users_locked(s, epoch, phase) < least_users) {
			least = s;
			least_users = users_locked(s, epoch, phase);
		}
	}
	if (best != NULL)
		return best;
	*shared = least != NULL;
	return least;
}

static void take_locked(zk_slab_t *s, uint64_t epoch, bool phase)
{
	if (phase && s->users_epoch != epoch) {
		s->users_epoch = epoch;
		s->users = 0;
	}
	s->users++;
}

int zk_phase_flags_slow(uint64_t epoch)
{
	/* A call re-entering from this thread's slow path (the dynamic
	 * loader, glibc's TLS blocks) gets plain jemalloc, uncached. */
	if (zk_tls.busy)
		return 0;
	zk_init();
	int flags = 0;
	zk_tls.busy = true;
	zk_slab_t *s = NULL;
	bool shared = false;
	pthread_mutex_lock(&zk_g.lock);
	bool ok =
	    atomic_load_explicit(&zk_g.active, memory_order_relaxed) &&
	    zk_g.region.base != NULL && !zk_g.beginning &&
	    atomic_load_explicit(&zk_g.epoch, memory_order_relaxed) == epoch;
	if (ok) {
		s = pick_locked(&zk_g.region, zk_tls.last_slab, epoch, true,
				&shared);
		if (s != NULL)
			take_locked(s, epoch, true);
	}
	pthread_mutex_unlock(&zk_g.lock);
	if (!ok) {
		zk_tls.busy = false;
		return 0;
	}
	if (s == NULL) {
		WARN_ONCE(warned_slabs,
			  "zkalloc: warning: no phase slab is usable (%u "
			  "slabs, none with an arena to share); large "
			  "allocations use plain jemalloc\n",
			  zk_g.region.nslabs);
	} else if (arena_ensure(s, true)) {
		if (shared)
			atomic_fetch_add_explicit(&zk_g.shared_count, 1,
						  memory_order_relaxed);
		flags = MALLOCX_ARENA(s->arena_ind) | MALLOCX_TCACHE_NONE;
		zk_tls.last_slab = s;
	}
	zk_tls.slab = s;
	zk_tls.epoch = epoch;
	zk_tls.flags = flags;
	register_exit();
	zk_tls.busy = false;
	return flags;
}

int zk_small_flags_slow(uint64_t epoch)
{
	if (zk_tls.busy)
		return 0;
	zk_init();
	zk_tls.busy = true;
	if (zk_tls.small_slab == NULL && zk_g.small.base != NULL) {
		bool shared;
		pthread_mutex_lock(&zk_g.lock);
		zk_slab_t *s =
		    pick_locked(&zk_g.small, NULL, epoch, false, &shared);
		if (s != NULL)
			take_locked(s, epoch, false);
		pthread_mutex_unlock(&zk_g.lock);
		if (s != NULL && !arena_ensure(s, false)) {
			pthread_mutex_lock(&zk_g.lock);
			s->users--;
			pthread_mutex_unlock(&zk_g.lock);
			s = NULL;
		}
		if (s != NULL && shared)
			atomic_fetch_add_explicit(&zk_g.shared_count, 1,
						  memory_order_relaxed);
		zk_tls.small_slab = s;
		if (s != NULL)
			register_exit();
	}
	zk_tls.small_epoch = epoch;
	/* Resident blocks keep the thread cache: their arena is never reset
	 * or destroyed, so a cached block can never outlive it. */
	zk_tls.small_flags =
	    zk_tls.small_slab ? MALLOCX_ARENA(zk_tls.small_slab->arena_ind) : 0;
	zk_tls.busy = false;
	return zk_tls.small_flags;
}

int zk_shared_flags_slow(uint64_t epoch)
{
	if (zk_tls.busy)
		return 0;
	zk_init();
	zk_slab_t *s = __atomic_load_n(&zk_g.region.total, __ATOMIC_ACQUIRE)
			   ? zk_region_shared(&zk_g.region)
			   : NULL;
	if (s == NULL)
		return 0; /* not reserved (yet): the caller overflows */
	zk_tls.busy = true;
	pthread_mutex_lock(&zk_g.lock);
	bool ok =
	    atomic_load_explicit(&zk_g.active, memory_order_relaxed) &&
	    !zk_g.beginning &&
	    atomic_load_explicit(&zk_g.epoch, memory_order_relaxed) == epoch;
	if (ok)
		s->users_epoch = epoch; /* used in this phase: reset at begin */
	pthread_mutex_unlock(&zk_g.lock);
	int flags = 0;
	if (ok && arena_ensure(s, true))
		flags = MALLOCX_ARENA(s->arena_ind) | MALLOCX_TCACHE_NONE;
	if (ok) {
		zk_tls.shared_epoch = epoch;
		zk_tls.shared_flags = flags;
	}
	zk_tls.busy = false;
	return flags;
}

size_t zk_phase_max_block(void)
{
	if (__atomic_load_n(&zk_g.region.total, __ATOMIC_ACQUIRE) == 0)
		return 0;
	zk_slab_t *sh = zk_region_shared(&zk_g.region);
	return zk_slab_max_block(sh ? sh->size : zk_g.region.slab_size);
}

size_t zk_slab_max_block(size_t slab)
{
	/* The pregrown extent (the slab less its metadata reserve and the
	 * arena's first base block), then the largest jemalloc size class
	 * (four per power of two) that fits in it with a page to spare (the
	 * cache-oblivious offset of large blocks). */
	size_t keep = pregrow_keep(slab);
	if (slab < 4 * keep)
		return 0;
	size_t ext = slab - keep - 4 * MiB - 4096;
	size_t b = (size_t)1 << (63 - __builtin_clzll(ext));
	size_t best = b;
	for (size_t j = 1; j < 4; j++)
		if (b + j * (b / 4) <= ext)
			best = b + j * (b / 4);
	return best;
}

void zk_warn_slab_full(size_t size)
{
	WARN_ONCE(warned_full,
		  "zkalloc: warning: a phase slab is full (a request of %zu "
		  "bytes did not fit; slabs are %zu bytes, one block can be "
		  "up to about %zu); requests that do not fit are served by "
		  "plain jemalloc and counted as overflow (ZK_ALLOC_SLAB_GB "
		  "raises the slab size)\n",
		  size, zk_g.region.slab_size, zk_phase_max_block());
}

/* ------------------------------------------------------ phase decay */

/* Push this phase's mark into s's ring; return the highest mark of the
 * last K phases, rounded up to the slab alignment. */
static size_t mark_rotate(zk_slab_t *s)
{
	unsigned k = (unsigned)zk_g.opt[ZK_OPT_TRIM_PHASES];
	size_t m = atomic_exchange_explicit(&s->mark, 0, memory_order_relaxed);
	s->marks[s->mark_pos] = m;
	s->mark_pos = (s->mark_pos + 1) % ZK_TRIM_RING;
	zk_atomic_max(&s->res_hi, m);
	size_t keep = 0;
	for (unsigned i = 1; i <= k && i <= ZK_TRIM_RING; i++) {
		size_t v =
		    s->marks[(s->mark_pos + ZK_TRIM_RING - i) % ZK_TRIM_RING];
		if (v > keep)
			keep = v;
	}
	return (keep + ZK_SLAB_ALIGN - 1) & ~(ZK_SLAB_ALIGN - 1);
}

static void count_trim(size_t bytes)
{
	atomic_fetch_add_explicit(&zk_g.trims, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&zk_g.trimmed_bytes, bytes,
				  memory_order_relaxed);
}

/* A phase slab whose arena was just reset: everything in the pregrown
 * extent is free, so pages above keep are given back directly. */
static void trim_phase_slab(zk_slab_t *s, size_t keep)
{
	size_t lo = keep > s->pg_lo ? keep : s->pg_lo;
	size_t res = atomic_load_explicit(&s->res_hi, memory_order_relaxed);
	size_t hi = res < s->pg_hi ? res : s->pg_hi;
	if (hi > lo && zk_os_purge(s->base + lo, hi - lo) == 0) {
		count_trim(hi - lo);
		atomic_store_explicit(&s->res_hi, lo, memory_order_relaxed);
	}
}

/* A resident arena holds live ordinary blocks; the slab's page bitmap
 * says which pages are free, its word ages which ones the recent phases
 * used (see hooks.c: decommit). Free pages none of the last K phases used
 * are given back. */
static void trim_resident_slab(zk_slab_t *s, uint32_t epoch)
{
	size_t given = zk_slab_garbage_trim(
	    s, epoch, (unsigned)zk_g.opt[ZK_OPT_TRIM_PHASES]);
	if (given != 0)
		count_trim(given);
}

/* ---------------------------------------------------------- begin/end */

/* Empty one phase slab's arena for the next phase. */
static void recycle_phase_slab(zk_slab_t *s, bool used)
{
	if (!arena_ready(s))
		return;
	if (__builtin_expect(zk_check_on, 0)) {
		/* Checked mode: destroy, protect the memory, re-create. */
		if (!used)
			return;
		if (arena_ctl(s->arena_ind, "destroy", NULL, 0) != 0) {
			atomic_store(&s->arena_state, ZK_ARENA_LOST);
			WARN_ONCE(warned_destroy,
				  "zkalloc: warning: cannot destroy arena %u; "
				  "its slab is retired\n",
				  s->arena_ind);
			return;
		}
		atomic_fetch_add_explicit(&zk_g.arenas_destroyed, 1,
					  memory_order_relaxed);
		atomic_store(&s->arena_state, ZK_ARENA_NONE);
		s->pg_lo = s->pg_hi = 0;
		zk_check_retire(s);
		return;
	}
	size_t keep = mark_rotate(s);
	if (used) {
		int err = arena_ctl(s->arena_ind, "reset", NULL, 0);
		if (err != 0) {
			/* Its memory is still jemalloc's: never reuse. */
			atomic_store(&s->arena_state, ZK_ARENA_LOST);
			WARN_ONCE(warned_reset,
				  "zkalloc: warning: cannot reset arena %u "
				  "(error %d: %s); its slab is retired\n",
				  s->arena_ind, err, strerror(err));
			return;
		}
		/* Whatever the decay settings, the reset blocks go to the
		 * retained set now (our hooks refuse to purge them). */
		arena_ctl(s->arena_ind, "purge", NULL, 0);
		atomic_fetch_add_explicit(&zk_g.arenas_reset, 1,
					  memory_order_relaxed);
	}
	trim_phase_slab(s, keep);
}

int zk_begin_phase(void)
{
	zk_init();
	uint64_t t0 = now_ns();
	pthread_mutex_lock(&zk_g.lock);
	if (atomic_load_explicit(&zk_g.active, memory_order_relaxed) ||
	    zk_g.beginning) {
		pthread_mutex_unlock(&zk_g.lock);
		return EBUSY;
	}
	zk_g.beginning = true;
	if (__builtin_expect(zk_check_on, 0))
		zk_check_begin();
	bool first = !zk_g.region_tried;
	zk_g.region_tried = true;
	uint64_t epoch =
	    atomic_load_explicit(&zk_g.epoch, memory_order_relaxed);
	pthread_mutex_unlock(&zk_g.lock);

	if (first)
		reserve_regions();
	/* A phase block freed by plain free() may sit in this thread's cache
	 * (only possible with a lowered ZK_ALLOC_MIN_BYTES); flush it before
	 * its arena is emptied. Other threads' caches cannot be reached. */
	je_mallctl("thread.tcache.flush", NULL, NULL, NULL, 0);
	for (unsigned i = 0; i < zk_g.region.nslabs + zk_g.region.nshared;
	     i++) {
		zk_slab_t *s = &zk_g.region.slabs[i];
		bool used = s->users_epoch == epoch && epoch != 0;
		recycle_phase_slab(s, used);
	}
	if (!zk_check_on)
		for (unsigned i = 0; i < zk_g.small.nslabs; i++) {
			zk_slab_t *s = &zk_g.small.slabs[i];
			if (arena_ready(s))
				trim_resident_slab(s, (uint32_t)epoch);
		}

	pthread_mutex_lock(&zk_g.lock);
	atomic_store_explicit(&zk_slab_epoch, (uint32_t)(epoch + 1),
			      memory_order_relaxed);
	atomic_store_explicit(&zk_g.epoch, epoch + 1, memory_order_release);
	zk_g.beginning = false;
	atomic_store_explicit(&zk_g.active, true, memory_order_release);
	pthread_mutex_unlock(&zk_g.lock);
	atomic_store_explicit(&zk_g.begin_ns_last, now_ns() - t0,
			      memory_order_relaxed);
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
	/* A count over the slab table under the lock: no syscall, nothing
	 * that allocates; the table exists once total is published. */
	if (__atomic_load_n(&zk_g.region.total, __ATOMIC_ACQUIRE) == 0)
		return 0;
	unsigned n = 0;
	pthread_mutex_lock(&zk_g.lock);
	uint64_t e = atomic_load_explicit(&zk_g.epoch, memory_order_relaxed);
	for (unsigned i = 0; i < zk_g.region.nslabs; i++) {
		const zk_slab_t *s = &zk_g.region.slabs[i];
		n += s->users_epoch == e && s->users > 0;
	}
	pthread_mutex_unlock(&zk_g.lock);
	return n;
}
