/* Checked mode: the live-block table, stale-range protection, reports. */
#define _GNU_SOURCE
#include "check.h"

#include "os.h"
#include "phase.h"

#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool zk_check_on;
void (*zk_check_pause_hook)(void);

enum { B_EMPTY = 0, B_LIVE, B_FREED };

typedef struct block {
	uintptr_t p;
	size_t size;	      /* requested bytes */
	uint64_t epoch;	      /* phase it was allocated in */
	uint64_t freed_epoch; /* phase it was freed in (B_FREED) */
	uint64_t gen;	      /* tells reuses of one address apart */
	uint32_t state;
} block_t;

/* Open addressing with linear probing and no deletion: the table is rebuilt
 * (dropping blocks of phases before the previous one) when 3/4 full. */
#define TABLE_MIN_BITS 16
#define TABLE_MAX_BITS 24
/* ZK_ALLOC_SLABS accepts at most this many slabs (options.c). */
#define MAX_SLABS 1024

/* The table is written under T.lock, retired_* by zk_check_retire under
 * zk_g.lock; the SIGSEGV reporter reads both without a lock, on its way to
 * abort(). */
static struct {
	pthread_mutex_t lock;
	block_t *slots;
	unsigned bits;
	size_t used; /* non-empty slots */
	uint64_t next_gen;
	bool lost; /* table at its maximum size: new blocks are not tracked */
	/* Per phase slab: offsets [0, retired_end) are protected memory of
	 * phases up to retired_epoch. */
	size_t retired_end[MAX_SLABS];
	uint64_t retired_epoch[MAX_SLABS];
} T = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* Threads inside a phase operation, for zk_begin_phase to see. A thread
 * that finds every slot taken is only counted. */
#define NINFLIGHT 64
typedef struct inflight {
	_Atomic int busy;
	const char *op;
	const void *p;
	size_t size;
	uint64_t alloc_epoch; /* phase p was allocated in */
	uint64_t epoch;	      /* phase when the operation started */
} inflight_t;
static inflight_t inflight[NINFLIGHT];
static _Atomic int inflight_unslotted;

static struct sigaction old_segv;

static void warn(const char *msg)
{
	zk_os_warn(msg, strlen(msg));
}

static uint64_t cur_epoch(void)
{
	return atomic_load_explicit(&zk_g.epoch, memory_order_acquire);
}

static void report(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
static void report(const char *fmt, ...)
{
	char buf[768];
	int n = snprintf(buf, sizeof(buf), "zkalloc: ZK_ALLOC_CHECK: ");
	va_list ap;
	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if ((size_t)n > sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	zk_os_warn(buf, (size_t)n);
	/* Proven corruption: the one case where the library aborts. */
	abort();
}

static size_t hash(uintptr_t p, unsigned bits)
{
	return (size_t)(((uint64_t)(p >> 4) * 0x9E3779B97F4A7C15ull) >>
			(64 - bits));
}

/* The slot holding p, or the empty slot where p would go. */
static block_t *slot_of(block_t *slots, unsigned bits, uintptr_t p)
{
	size_t mask = ((size_t)1 << bits) - 1;
	size_t i = hash(p, bits);
	while (slots[i].state != B_EMPTY && slots[i].p != p)
		i = (i + 1) & mask;
	return &slots[i];
}

static block_t *table_alloc(unsigned bits)
{
	void *m;
	size_t len = sizeof(block_t) << bits;
	/* Fresh pages are zero, i.e. all slots B_EMPTY. */
	if (zk_os_reserve(len, zk_os_page_size(), &m) != 0)
		return NULL;
	if (zk_os_commit(m, len) != 0) {
		zk_os_release(m, len);
		return NULL;
	}
	return m;
}

static bool keep(const block_t *b, uint64_t oldest)
{
	return b->state != B_EMPTY && b->epoch >= oldest;
}

/* Make room for one more block. Lock held. */
static void rebuild_locked(void)
{
	uint64_t cur = cur_epoch();
	size_t cap = (size_t)1 << T.bits;
	uint64_t oldest = cur > 0 ? cur - 1 : 0;
	size_t n = 0;
	for (size_t i = 0; i < cap; i++)
		n += keep(&T.slots[i], oldest);
	if (n > cap / 2) {
		n = 0;
		oldest = cur;
		for (size_t i = 0; i < cap; i++)
			n += keep(&T.slots[i], oldest);
	}
	unsigned bits = T.bits;
	while (n > ((size_t)1 << bits) / 2 && bits < TABLE_MAX_BITS)
		bits++;
	block_t *fresh =
	    n <= ((size_t)1 << bits) / 2 ? table_alloc(bits) : NULL;
	if (fresh == NULL) {
		if (!T.lost)
			warn(
			    "zkalloc: warning: ZK_ALLOC_CHECK: too many live "
			    "phase blocks; new blocks are no longer tracked\n");
		T.lost = true;
		return;
	}
	for (size_t i = 0; i < cap; i++)
		if (keep(&T.slots[i], oldest))
			*slot_of(fresh, bits, T.slots[i].p) = T.slots[i];
	block_t *old = T.slots;
	T.slots = fresh;
	T.bits = bits;
	T.used = n;
	zk_os_release(old, sizeof(block_t) * cap);
}

static zk_slab_t *phase_slab(const void *p, unsigned *index)
{
	zk_slab_t *s = zk_region_slab_of(&zk_g.region, p);
	if (s != NULL)
		*index = (unsigned)(s - zk_g.region.slabs);
	return s != NULL && *index < MAX_SLABS ? s : NULL;
}

/* Report a fault in protected phase memory; return if it is not one. */
static void on_segv(int sig, siginfo_t *si, void *uc)
{
	(void)sig, (void)uc;
	uintptr_t a = (uintptr_t)si->si_addr;
	unsigned i;
	zk_slab_t *s = phase_slab(si->si_addr, &i);
	if (s != NULL && a - (uintptr_t)s->base < T.retired_end[i]) {
		const block_t *best = NULL;
		size_t cap = T.slots ? (size_t)1 << T.bits : 0;
		for (size_t k = 0; k < cap; k++) {
			const block_t *b = &T.slots[k];
			if (b->state != B_EMPTY && a >= b->p &&
			    a - b->p < (b->size ? b->size : 1) &&
			    (best == NULL || b->gen > best->gen))
				best = b;
		}
		if (best != NULL)
			report("use after zk_begin_phase (address %p): "
			       "pointer %p, size %zu, allocated in phase %llu, "
			       "current phase %llu",
			       si->si_addr, (void *)best->p, best->size,
			       (unsigned long long)best->epoch,
			       (unsigned long long)cur_epoch());
		report("use after zk_begin_phase of phase memory outside any "
		       "tracked block: pointer %p, size unknown, allocated in "
		       "phase <= %llu, current phase %llu",
		       si->si_addr, (unsigned long long)T.retired_epoch[i],
		       (unsigned long long)cur_epoch());
	}
	/* Not ours: hand it to the previous handler, and stay installed. */
	if ((old_segv.sa_flags & SA_SIGINFO) && old_segv.sa_sigaction != NULL) {
		old_segv.sa_sigaction(sig, si, uc);
	} else if (old_segv.sa_handler != SIG_DFL &&
		   old_segv.sa_handler != SIG_IGN) {
		old_segv.sa_handler(sig);
	} else {
		/* Default disposition: let the repeated fault kill the
		 * process, as it would without zkalloc. */
		struct sigaction dfl;
		memset(&dfl, 0, sizeof(dfl));
		dfl.sa_handler = SIG_DFL;
		sigaction(SIGSEGV, &dfl, NULL);
	}
}

static void fork_prepare(void)
{
	pthread_mutex_lock(&T.lock);
}

static void fork_parent(void)
{
	pthread_mutex_unlock(&T.lock);
}

/* The threads that were inside phase operations do not exist in the child. */
static void fork_child(void)
{
	for (int i = 0; i < NINFLIGHT; i++)
		atomic_store(&inflight[i].busy, 0);
	atomic_store(&inflight_unslotted, 0);
	pthread_mutex_init(&T.lock, NULL);
}

void zk_check_init(void)
{
	zk_check_on = zk_g.opt[ZK_OPT_CHECK] != 0;
	if (!zk_check_on)
		return;
	T.bits = TABLE_MIN_BITS;
	T.slots = table_alloc(T.bits);
	if (T.slots == NULL) {
		warn("zkalloc: warning: ZK_ALLOC_CHECK: cannot reserve the "
		     "block table; checked mode is off\n");
		zk_check_on = false;
		return;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_segv;
	/* SA_ONSTACK: a thread with an alternate signal stack (a stack
	 * overflow reporter, Rust's runtime) keeps using it. */
	sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &old_segv);
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}

int zk_check_enter(const char *op, const void *p, size_t size)
{
	int t = -1;
	for (int i = 0; i < NINFLIGHT; i++) {
		int zero = 0;
		if (atomic_compare_exchange_strong(&inflight[i].busy, &zero,
						   1)) {
			t = i;
			break;
		}
	}
	if (t < 0) {
		atomic_fetch_add(&inflight_unslotted, 1);
		return -1;
	}
	inflight_t *f = &inflight[t];
	f->op = op;
	f->p = p;
	f->size = size;
	/* Read after busy is set: a zk_begin_phase that misses this slot bumps
	 * the epoch after its scan, and zk_check_leave sees that. */
	f->epoch = f->alloc_epoch = cur_epoch();
	if (p != NULL) {
		pthread_mutex_lock(&T.lock);
		const block_t *b = slot_of(T.slots, T.bits, (uintptr_t)p);
		if (b->state != B_EMPTY) {
			f->size = b->size;
			f->alloc_epoch = b->epoch;
		}
		pthread_mutex_unlock(&T.lock);
	}
	if (zk_check_pause_hook != NULL)
		zk_check_pause_hook();
	return t;
}

void zk_check_leave(int t)
{
	if (t < 0) {
		atomic_fetch_sub(&inflight_unslotted, 1);
		return;
	}
	inflight_t *f = &inflight[t];
	uint64_t now = cur_epoch();
	if (f->epoch != now)
		report("zk_begin_phase ran while this thread was inside %s: "
		       "pointer %p, size %zu, allocated in phase %llu, current "
		       "phase %llu",
		       f->op, f->p, f->size, (unsigned long long)f->alloc_epoch,
		       (unsigned long long)now);
	atomic_store(&f->busy, 0);
}

void zk_check_begin(void)
{
	uint64_t cur = cur_epoch();
	for (int i = 0; i < NINFLIGHT; i++) {
		inflight_t *f = &inflight[i];
		if (atomic_load(&f->busy))
			report(
			    "zk_begin_phase (starting phase %llu) while "
			    "another thread is inside %s: pointer %p, size "
			    "%zu, allocated in phase %llu, current phase %llu",
			    (unsigned long long)cur + 1, f->op, f->p, f->size,
			    (unsigned long long)f->alloc_epoch,
			    (unsigned long long)cur);
	}
	if (atomic_load(&inflight_unslotted) > 0)
		report("zk_begin_phase (starting phase %llu) while other "
		       "threads are inside phase operations: pointer unknown, "
		       "size unknown, allocated in phase %llu, current phase "
		       "%llu",
		       (unsigned long long)cur + 1, (unsigned long long)cur,
		       (unsigned long long)cur);
}

uint64_t zk_check_verify(const void *p, const char *op)
{
	uint64_t cur = cur_epoch();
	pthread_mutex_lock(&T.lock);
	block_t *b = slot_of(T.slots, T.bits, (uintptr_t)p);
	if (b->state != B_EMPTY) {
		block_t c = *b;
		pthread_mutex_unlock(&T.lock);
		if (c.epoch != cur)
			report(
			    "%s after zk_begin_phase%s: pointer %p, size %zu, "
			    "allocated in phase %llu, current phase %llu",
			    op, c.state == B_FREED ? " (and freed before)" : "",
			    p, c.size, (unsigned long long)c.epoch,
			    (unsigned long long)cur);
		if (c.state == B_FREED)
			report(
			    "%s of a freed block (double free): pointer %p, "
			    "size %zu, allocated in phase %llu, current phase "
			    "%llu",
			    op, p, c.size, (unsigned long long)c.epoch,
			    (unsigned long long)cur);
		return c.gen;
	}
	bool lost = T.lost;
	pthread_mutex_unlock(&T.lock);
	unsigned i;
	zk_slab_t *s = phase_slab(p, &i);
	if (s != NULL && (uintptr_t)p - (uintptr_t)s->base < T.retired_end[i])
		report("%s after zk_begin_phase of memory outside any tracked "
		       "block: pointer %p, size unknown, allocated in phase <= "
		       "%llu, current phase %llu",
		       op, p, (unsigned long long)T.retired_epoch[i],
		       (unsigned long long)cur);
	/* Every phase block passes through the table (zk_arena_flags is 0
	 * in checked mode), so an untracked phase address was never handed
	 * out: an interior or made-up pointer. */
	if (!lost)
		report(
		    "%s of a pointer zkalloc never returned: pointer %p, "
		    "size unknown, allocated in no phase, current phase %llu",
		    op, p, (unsigned long long)cur);
	return 0;
}

void zk_check_track(const void *p, size_t size)
{
	uint64_t cur = cur_epoch();
	pthread_mutex_lock(&T.lock);
	block_t *b = slot_of(T.slots, T.bits, (uintptr_t)p);
	if (b->state == B_EMPTY) {
		if ((T.used + 1) * 4 > ((size_t)3 << T.bits)) {
			rebuild_locked();
			b = slot_of(T.slots, T.bits, (uintptr_t)p);
		}
		if (T.lost && (T.used + 1) * 4 > ((size_t)3 << T.bits)) {
			pthread_mutex_unlock(&T.lock);
			return;
		}
		T.used++;
	}
	*b = (block_t){.p = (uintptr_t)p,
		       .size = size,
		       .epoch = cur,
		       .gen = ++T.next_gen,
		       .state = B_LIVE};
	pthread_mutex_unlock(&T.lock);
}

void zk_check_untrack(const void *p, uint64_t gen)
{
	if (gen == 0)
		return;
	pthread_mutex_lock(&T.lock);
	block_t *b = slot_of(T.slots, T.bits, (uintptr_t)p);
	if (b->state == B_LIVE && b->gen == gen) {
		b->state = B_FREED;
		b->freed_epoch = cur_epoch();
	}
	pthread_mutex_unlock(&T.lock);
}

void zk_check_retire(zk_slab_t *s)
{
	unsigned i = (unsigned)(s - zk_g.region.slabs);
	size_t page = zk_os_page_size();
	size_t used = (zk_slab_used(s) + page - 1) & ~(page - 1);
	if (i >= MAX_SLABS || used > s->size / 2) {
		/* Room is running out: reuse the slab from its start, which
		 * must be accessible again; stale pointers into it are then
		 * caught by the table only. */
		if (i < MAX_SLABS && T.retired_end[i] != 0)
			zk_os_protect(s->base, T.retired_end[i], true);
		if (i < MAX_SLABS)
			T.retired_end[i] = 0;
		zk_slab_rewind(s);
		return;
	}
	if (used > T.retired_end[i]) {
		int err = zk_os_protect(s->base + T.retired_end[i],
					used - T.retired_end[i], false);
		if (err == 0) {
			T.retired_end[i] = used;
			T.retired_epoch[i] = cur_epoch();
		}
	}
}
