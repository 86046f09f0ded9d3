/* zkalloc's arenas and thread binding (arena.h). */
#include "arena.h"

#include "hooks.h"
#include "je.h"
#include "os.h"
#include "phase.h"
#include "pool.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

__thread zk_tls_t zk_tls __attribute__((tls_model("initial-exec")));
_Atomic uint64_t zk_binds, zk_bind_failures;

enum { A_NONE = 0, A_CREATING, A_READY, A_FAILED };

#define MAX_SLOTS 1024 /* ZK_ALLOC_ARENAS's upper bound (options.c) */

/* A slot's state is written by the thread that creates its arena, outside
 * any lock (arenas.create allocates); others read it without one. */
static struct {
	_Atomic int state;
	unsigned ind;	       /* valid once A_READY */
	uint64_t failed_epoch; /* A_FAILED: retried in a later phase */
} slots[MAX_SLOTS];

static _Atomic unsigned next_slot, created;

#define WARN_ONCE(...)                                                         \
	do {                                                                   \
		static _Atomic bool warned_;                                   \
		if (!atomic_exchange_explicit(&warned_, true,                  \
					      memory_order_relaxed))           \
			zk_os_warnf(__VA_ARGS__);                              \
	} while (0)

static int arena_ctl(unsigned ind, const char *what, void *newp, size_t len)
{
	char name[64];
	snprintf(name, sizeof(name), "arena.%u.%s", ind, what);
	return je_mallctl(name, NULL, NULL, newp, len);
}

/* A new jemalloc arena over the pool. Decay 0: a freed extent is purged
 * at once, i.e. handed to the dalloc hook and so back to the pool, where
 * every arena can reuse its (resident) pages. */
static int create(unsigned *out)
{
	extent_hooks_t *h = &zk_hooks;
	unsigned ind;
	size_t len = sizeof(ind);
	int err = je_mallctl("arenas.create", &ind, &len, &h, sizeof(h));
	if (err != 0)
		return err;
	ssize_t decay = 0;
	err = arena_ctl(ind, "dirty_decay_ms", &decay, sizeof(decay));
	if (err == 0)
		err = arena_ctl(ind, "muzzy_decay_ms", &decay, sizeof(decay));
	if (err != 0) {
		arena_ctl(ind, "destroy", NULL, 0);
		return err;
	}
	*out = ind;
	return 0;
}

/* The arena of slot s, created by this thread if it is the first. */
static bool slot_arena(unsigned s, unsigned *ind)
{
	int st = atomic_load_explicit(&slots[s].state, memory_order_acquire);
	if (st == A_READY) {
		*ind = slots[s].ind;
		return true;
	}
	/* Another thread is making it (outside any lock; it holds none of
	 * ours and none of jemalloc's that this thread holds): wait for it.
	 * A forked child resets the state (zk_arena_fork_child). */
	while (st == A_CREATING) {
		sched_yield();
		st = atomic_load_explicit(&slots[s].state,
					  memory_order_acquire);
	}
	if (st == A_READY) {
		*ind = slots[s].ind;
		return true;
	}
	uint64_t epoch = atomic_load_explicit(&zk_g.epoch, memory_order_relaxed);
	if (st == A_FAILED && slots[s].failed_epoch == epoch)
		return false; /* not in this phase: plain jemalloc */
	if (!atomic_compare_exchange_strong_explicit(
		&slots[s].state, &st, A_CREATING, memory_order_acq_rel,
		memory_order_acquire))
		return false;
	unsigned i;
	int err = create(&i);
	if (err != 0) {
		slots[s].failed_epoch = epoch;
		atomic_store_explicit(&slots[s].state, A_FAILED,
				      memory_order_release);
		WARN_ONCE("zkalloc: warning: cannot create a jemalloc arena "
			  "(error %d: %s); the threads of that arena use "
			  "plain jemalloc until the next phase\n",
			  err, strerror(err));
		return false;
	}
	slots[s].ind = i;
	atomic_store_explicit(&slots[s].state, A_READY, memory_order_release);
	atomic_fetch_add_explicit(&created, 1, memory_order_relaxed);
	*ind = i;
	return true;
}

static bool thread_arena(unsigned *ind)
{
	if (zk_tls.slot == 0) {
		unsigned n = (unsigned)zk_g.opt[ZK_OPT_ARENAS];
		zk_tls.slot = (int)(atomic_fetch_add_explicit(
					&next_slot, 1, memory_order_relaxed) %
				    n) +
			      1;
	}
	return slot_arena((unsigned)zk_tls.slot - 1, ind);
}

int zk_thread_arena_flags(void)
{
	unsigned ind;
	if (zk_tls.busy)
		return 0;
	zk_tls.busy = true;
	bool ok = thread_arena(&ind);
	zk_tls.busy = false;
	return ok ? MALLOCX_ARENA(ind) : 0;
}

static bool bind(void)
{
	unsigned ind, old = 0;
	if (!thread_arena(&ind))
		return false;
	size_t len = sizeof(old);
	int err = je_mallctl("thread.arena", &old, &len, &ind, sizeof(ind));
	if (err != 0) {
		atomic_fetch_add_explicit(&zk_bind_failures, 1,
					  memory_order_relaxed);
		WARN_ONCE("zkalloc: warning: jemalloc refused to bind a thread "
			  "to its arena (thread.arena: error %d: %s); such "
			  "threads send requests of at least %zu bytes to "
			  "phase memory explicitly\n",
			  err, strerror(err), zk_g.explicit_min);
		zk_tls.explicit_route = true;
		return false;
	}
	zk_tls.orig = old;
	zk_tls.bound = true;
	atomic_fetch_add_explicit(&zk_binds, 1, memory_order_relaxed);
	/* Blocks the thread cache holds stay in their arenas: without a
	 * flush, small requests would be served from them for a while. */
	je_mallctl("thread.tcache.flush", NULL, NULL, NULL, 0);
	return true;
}

static void unbind(void)
{
	unsigned old = zk_tls.orig;
	if (je_mallctl("thread.arena", NULL, NULL, &old, sizeof(old)) != 0)
		WARN_ONCE("zkalloc: warning: jemalloc refused to bind a thread "
			  "back to arena %u after a phase; it keeps allocating "
			  "from zkalloc's pool (correct, but pages are given "
			  "back only at phase begins)\n",
			  old);
	zk_tls.bound = false;
	je_mallctl("thread.tcache.flush", NULL, NULL, NULL, 0);
}

void zk_thread_sync(void)
{
	if (zk_tls.busy)
		return;
	zk_tls.busy = true;
	uint64_t gen = atomic_load_explicit(&zk_g.gen, memory_order_acquire);
	bool active = atomic_load_explicit(&zk_g.active, memory_order_acquire);
	/* Without a region zkalloc's arenas would only forward to
	 * overflow mappings: stay in jemalloc's arenas. */
	bool pool = __atomic_load_n(&zk_pool.total, __ATOMIC_ACQUIRE) != 0;
	if (!active || !pool) {
		if (zk_tls.bound)
			unbind();
		zk_tls.gen = gen;
	} else if (zk_g.bind && !zk_tls.explicit_route &&
		   (zk_tls.bound || bind())) {
		zk_tls.gen = gen;
	}
	zk_tls.busy = false;
}

unsigned zk_arenas_created(void)
{
	return atomic_load_explicit(&created, memory_order_relaxed);
}

int zk_arena_index(unsigned slot)
{
	if (slot >= MAX_SLOTS || atomic_load_explicit(&slots[slot].state,
						      memory_order_acquire) !=
				     A_READY)
		return -1;
	return (int)slots[slot].ind;
}

void zk_arena_fork_child(void)
{
	for (unsigned s = 0; s < MAX_SLOTS; s++)
		if (atomic_load_explicit(&slots[s].state,
					 memory_order_relaxed) == A_CREATING)
			atomic_store_explicit(&slots[s].state, A_NONE,
					      memory_order_relaxed);
}
