/*
 * Phase lifecycle: zk_init, zk_begin_phase / zk_end_phase, reservation of
 * the region, fork.
 */
#include "phase.h"

#include "arena.h"
#include "check.h"
#include "os.h"
#include "pool.h"
#include "verbose.h"

#include <zkalloc.h>

#include "je.h"

#include <errno.h>
#include <string.h>
#include <time.h>

zk_global_t zk_g = {.lock = PTHREAD_MUTEX_INITIALIZER};

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

#define MiB ((size_t)1 << 20)

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* --------------------------------------------------------------- fork */

/* The lock is never held across anything that waits for another lock, so
 * taking it before fork cannot deadlock. The pool's lock is not taken
 * (its holder may wait for nothing, but jemalloc's prefork handler runs
 * after this one and a hook may be waiting for the pool while holding
 * one of jemalloc's locks): the child checks it instead. */
static void fork_prepare(void)
{
	pthread_mutex_lock(&zk_g.lock);
}

static void fork_parent(void)
{
	pthread_mutex_unlock(&zk_g.lock);
}

/* Only the forking thread lives on in the child: what other threads had
 * half done (a begin, an arena's creation, a pool operation) is undone or
 * made safe. */
static void fork_child(void)
{
	pthread_mutex_init(&zk_g.lock, NULL);
	zk_g.beginning = false;
	zk_arena_fork_child();
	zk_pool_fork_child();
}

/* ------------------------------------------------------------ options */

/* Derived copies of options. Lock held, or init. */
static void options_apply(void)
{
	size_t tcache_max = 32 << 10, len = sizeof(tcache_max);
	if (je_mallctl("arenas.tcache_max", &tcache_max, &len, NULL, 0) != 0)
		tcache_max = 32 << 10;
	size_t min = (size_t)zk_g.opt[ZK_OPT_MIN_BYTES];
	/* percpu_arena moves threads between jemalloc's arenas by CPU and
	 * refuses thread.arena for them: route explicitly. */
	const char *percpu = "disabled";
	len = sizeof(percpu);
	if (je_mallctl("opt.percpu_arena", &percpu, &len, NULL, 0) != 0)
		percpu = "disabled";
	zk_g.bind = min == 0 && strcmp(percpu, "disabled") == 0;
	zk_g.explicit_min = min != 0 ? min : tcache_max + 1;
	zk_g.tcache_max = tcache_max;
}

static void init_once_fn(void)
{
	zk_options_load(zk_g.opt);
	options_apply();
	zk_check_init();
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}

void zk_init(void)
{
	pthread_once(&init_once, init_once_fn);
}

int zk_opt_write(zk_opt_id_t id, uint64_t value)
{
	if ((unsigned)id >= ZK_OPT__COUNT || id == ZK_OPT_CHECK)
		return EINVAL;
	zk_init();
	pthread_mutex_lock(&zk_g.lock);
	int err = EBUSY;
	if (zk_g.reserve == ZK_RESERVE_NONE && !zk_g.beginning &&
	    atomic_load_explicit(&zk_g.epoch, memory_order_relaxed) == 0) {
		zk_g.opt[id] = value;
		options_apply();
		err = 0;
	}
	pthread_mutex_unlock(&zk_g.lock);
	return err;
}

/* -------------------------------------------------------- reservation */

/*
 * Reserve the region at the first zk_begin_phase: ZK_ALLOC_REGION_GB of
 * address space (PROT_NONE, MAP_NORESERVE: no memory, no commit charge),
 * plus its bookkeeping (about 0.2% of it), both committed as the pool
 * grows. Under a finite RLIMIT_AS the region takes at most half of the
 * address space left, so the rest of the program keeps room. Lock held
 * (mmap does not allocate).
 */
static void reserve_region(void)
{
	size_t want = (size_t)zk_g.opt[ZK_OPT_REGION], size = want;
	size_t room = zk_os_as_headroom();
	if (room != SIZE_MAX) {
		/* Region and bookkeeping (and the 2 MiB the aligned mapping
		 * asks for on the way) in half of what is left. */
		size_t half = room / 2;
		while (size >= 64 * MiB &&
		       zk_pool_footprint(size) + 2 * MiB > half)
			size = (size - size / 16) & ~((size_t)(2 * MiB) - 1);
		if (size < 64 * MiB) {
			zk_os_warnf("zkalloc: warning: cannot reserve the phase "
				    "region: RLIMIT_AS leaves %zu bytes of "
				    "address space, too little for 64 MiB in "
				    "half of it; phases use plain jemalloc\n",
				    room);
			zk_g.reserve = ZK_RESERVE_FAILED;
			return;
		}
		if (size < want)
			zk_os_warnf("zkalloc: note: RLIMIT_AS: the phase region is "
				    "%zu MiB (asked: %zu MiB), %zu MiB with its "
				    "bookkeeping\n",
				    size / MiB, want / MiB,
				    zk_pool_footprint(size) / MiB);
	}
	int err = zk_pool_init(size, zk_g.opt[ZK_OPT_THP] == ZK_THP_ALWAYS,
			       check_on());
	if (err != 0) {
		zk_os_warnf("zkalloc: warning: cannot reserve the phase region "
			    "(error %d: %s, %zu MiB); phases use plain "
			    "jemalloc\n",
			    err, strerror(err), size / MiB);
		zk_g.reserve = ZK_RESERVE_FAILED;
		return;
	}
	zk_g.reserve = ZK_RESERVE_DONE;
	zk_verbose_reserved();
}

/* ---------------------------------------------------------- begin/end */

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
	if (zk_g.reserve == ZK_RESERVE_NONE)
		reserve_region();
	zk_g.beginning = true;
	uint64_t epoch =
	    atomic_load_explicit(&zk_g.epoch, memory_order_relaxed) + 1;
	pthread_mutex_unlock(&zk_g.lock);

	/* What the last phases left allocated: it stays, valid, in place. */
	zk_pool_stats_t *ps = &zk_pool.stats;
	atomic_store_explicit(
	    &zk_g.kept_blocks,
	    atomic_load_explicit(&ps->live_extents, memory_order_relaxed),
	    memory_order_relaxed);
	atomic_store_explicit(
	    &zk_g.kept_bytes,
	    atomic_load_explicit(&ps->live_bytes, memory_order_relaxed),
	    memory_order_relaxed);
	/* The decay: pages none of the last K phases used go back. */
	zk_pool_begin((uint32_t)epoch, (unsigned)zk_g.opt[ZK_OPT_TRIM_PHASES]);
	zk_pool_set_epoch((uint32_t)epoch);

	pthread_mutex_lock(&zk_g.lock);
	atomic_store_explicit(&zk_g.epoch, epoch, memory_order_relaxed);
	atomic_store_explicit(&zk_g.active, true, memory_order_relaxed);
	zk_g.beginning = false;
	/* Release: a thread that sees the new gen sees active too. */
	atomic_fetch_add_explicit(&zk_g.gen, 1, memory_order_release);
	pthread_mutex_unlock(&zk_g.lock);
	atomic_store_explicit(&zk_g.begin_ns_last, now_ns() - t0,
			      memory_order_relaxed);
	return 0;
}

int zk_end_phase(void)
{
	zk_init();
	pthread_mutex_lock(&zk_g.lock);
	if (atomic_load_explicit(&zk_g.active, memory_order_relaxed)) {
		atomic_store_explicit(&zk_g.active, false,
				      memory_order_relaxed);
		atomic_fetch_add_explicit(&zk_g.gen, 1, memory_order_release);
	}
	pthread_mutex_unlock(&zk_g.lock);
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
