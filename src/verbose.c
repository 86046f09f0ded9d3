/*
 * Load-time wiring check, ZK_ALLOC_VERBOSE banner and exit summary.
 *
 * zkalloc calls one jemalloc (the object that defines the je_mallocx it
 * was linked against, or for the drop-in the one override.c found). Two
 * ways to get a process where that is not the allocator in use, both
 * silent until something crashes or phases stay empty:
 *  - link order: with `-lzkalloc` but jemalloc not ahead of libc (or
 *    dropped by --as-needed), malloc() is glibc's: zk_free(malloc()) hands
 *    a glibc block to jemalloc, and nothing malloc() returns is jemalloc's;
 *  - a second jemalloc: a prefixed one (_rjem_mallocx, je_mallocx: Rust's
 *    tikv-jemallocator) or another unprefixed copy, whose allocations and
 *    mallctl calls never reach zkalloc.
 * The constructor below looks for both and warns once each, whatever
 * ZK_ALLOC_VERBOSE says. What it covers: objects the dynamic loader knows
 * (the executable and shared libraries loaded by then) and symbols they
 * export dynamically; a jemalloc linked statically into an executable
 * without -rdynamic (the usual Rust binary) exports nothing and is not
 * seen. A sanitizer or Valgrind replacing malloc on purpose is not
 * reported.
 */
#define _GNU_SOURCE
#include "verbose.h"

#include "je.h"

#include "os.h"
#include "phase.h"
#include "pool.h"

#include <zkalloc.h>

#include <dlfcn.h>
#include <link.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const void *zk_jemalloc_mallocx;

static const char *name_of(const Dl_info *info)
{
	return info->dli_fname != NULL && info->dli_fname[0] != '\0'
		   ? info->dli_fname
		   : "the executable";
}

static bool defined_in(const void *sym, const void *base)
{
	Dl_info info;
	return sym != NULL && dladdr(sym, &info) != 0 && info.dli_fbase == base;
}

/* The jemalloc zkalloc calls: the object of the mallocx its calls land in. */
static bool jemalloc_object(Dl_info *out)
{
	const void *m = zk_jemalloc_mallocx;
	if (m == NULL)
		m = (const void *)&je_mallocx;
	return dladdr(m, out) != 0;
}

/* ------------------------------------------------------ link order */

static bool sanitizer_or_valgrind(const Dl_info *m)
{
	static const char *const runtimes[] = {"__asan_init", "__tsan_init",
					       "__msan_init", "__lsan_init"};
	for (size_t i = 0; i < sizeof(runtimes) / sizeof(runtimes[0]); i++)
		if (dlsym(RTLD_DEFAULT, runtimes[i]) != NULL)
			return true;
	return m->dli_fname != NULL &&
	       strstr(m->dli_fname, "vgpreload") != NULL;
}

static void check_link_order(const Dl_info *self, const Dl_info *je)
{
	void *m = dlsym(RTLD_DEFAULT, "malloc");
	Dl_info mi;
	if (m == NULL || dladdr(m, &mi) == 0)
		return;
	/* Fine: jemalloc's malloc, or the drop-in's (this object). */
	if (mi.dli_fbase == je->dli_fbase || mi.dli_fbase == self->dli_fbase ||
	    sanitizer_or_valgrind(&mi))
		return;
	zk_os_warnf(
	    "zkalloc: warning: this process's malloc() is the one in %s, not "
	    "jemalloc's: zkalloc calls the jemalloc in %s. Memory from "
	    "malloc/calloc/realloc/strdup must not be passed to zk_free or "
	    "zk_realloc (jemalloc cannot free glibc's blocks), and it is never "
	    "phase memory. Fix: link jemalloc ahead of libc (-lzkalloc "
	    "-ljemalloc, with -Wl,--no-as-needed if the program calls no "
	    "jemalloc function itself), or use the drop-in "
	    "(libzkalloc_override.so: link it first or LD_PRELOAD it)\n",
	    name_of(&mi), name_of(je));
}

/* ---------------------------------------------- a second jemalloc */

#define MAX_OBJECTS 256

typedef struct object {
	const char *name;   /* the loader's; "" for the executable */
	const void *inside; /* an address in its first loaded segment */
} object_t;

typedef struct object_list {
	object_t o[MAX_OBJECTS];
	unsigned n;
} object_list_t;

static int collect(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	object_list_t *l = arg;
	if (l->n == MAX_OBJECTS)
		return 1;
	for (int i = 0; i < info->dlpi_phnum; i++)
		if (info->dlpi_phdr[i].p_type == PT_LOAD) {
			l->o[l->n].name = info->dlpi_name;
			l->o[l->n].inside =
			    (const void *)(info->dlpi_addr +
					   info->dlpi_phdr[i].p_vaddr);
			l->n++;
			break;
		}
	return 0;
}

/* One object: which jemalloc entry point it defines itself, or NULL. */
static const char *jemalloc_in(const object_t *o, const void *base)
{
	static const char *const names[] = {"mallocx", "je_mallocx",
					    "_rjem_mallocx"};
	bool main_program = o->name == NULL || o->name[0] == '\0';
	void *h = main_program ? dlopen(NULL, RTLD_LAZY)
			       : dlopen(o->name, RTLD_LAZY | RTLD_NOLOAD);
	if (h == NULL)
		return NULL; /* the vDSO, or gone */
	const char *found = NULL;
	/* Another zkalloc drop-in exports mallocx too, and forwards it. */
	if (!defined_in(dlsym(h, "zk_begin_phase"), base))
		for (size_t i = 0; i < 3 && found == NULL; i++)
			if (defined_in(dlsym(h, names[i]), base))
				found = names[i];
	dlclose(h);
	return found;
}

static void check_second_jemalloc(const Dl_info *self, const Dl_info *je)
{
	/* Static: too big for a constructor's stack budget, and used once. */
	static object_list_t list;
	list.n = 0;
	/* Collect first: dladdr/dlopen take the loader lock, which must not
	 * be taken inside dl_iterate_phdr's. */
	dl_iterate_phdr(collect, &list);
	unsigned warned = 0;
	for (unsigned i = 0; i < list.n && warned < 4; i++) {
		Dl_info oi;
		if (dladdr(list.o[i].inside, &oi) == 0 ||
		    oi.dli_fbase == je->dli_fbase ||
		    oi.dli_fbase == self->dli_fbase)
			continue;
		const char *sym = jemalloc_in(&list.o[i], oi.dli_fbase);
		if (sym == NULL)
			continue;
		zk_os_warnf(
		    "zkalloc: warning: a second jemalloc is loaded: %s defines "
		    "%s, but zkalloc calls the jemalloc in %s. Memory and "
		    "mallctl calls made through the other one never reach "
		    "zkalloc (no phase memory; zk.* names unknown to it). Fix: "
		    "build everything against one shared, unprefixed "
		    "jemalloc\n",
		    name_of(&oi), sym, name_of(je));
		warned++;
	}
}

/* ------------------------------------------------------- verbose */

static atomic_flag banner_done = ATOMIC_FLAG_INIT;
static _Atomic pid_t summary_pid; /* 0: no summary at exit */

static void banner(void)
{
	if (atomic_flag_test_and_set(&banner_done))
		return;
	Dl_info self, je;
	bool have_self = dladdr((void *)&banner, &self) != 0;
	bool have_je = jemalloc_object(&je);
	const char *version = "?";
	size_t len = sizeof(version);
	if (je_mallctl("version", &version, &len, NULL, 0) != 0)
		version = "?";
	const uint64_t *o = zk_g.opt;
	size_t room = zk_os_as_headroom();
	char limit[96] = "";
	if (room != SIZE_MAX)
		snprintf(limit, sizeof(limit),
			 " (RLIMIT_AS: at most %zu MiB, half of what is left)",
			 room / 2 >> 20);
	zk_os_warnf(
	    "zkalloc %d.%d.%d: active, %s %s; jemalloc %s in %s; pool: %llu MiB "
	    "of address space reserved at the first phase%s, committed as it "
	    "is used; %s; options: region_size=%llu arenas=%llu min_bytes=%llu "
	    "thp=%s trim_phases=%llu check=%llu verbose=1\n",
	    ZK_VERSION_MAJOR, ZK_VERSION_MINOR, ZK_VERSION_PATCH,
	    zk_jemalloc_mallocx != NULL ? "drop-in" : "library",
	    have_self ? name_of(&self) : "?", version,
	    have_je ? name_of(&je) : "?",
	    (unsigned long long)(o[ZK_OPT_REGION] >> 20), limit,
	    zk_g.bind ? "threads are bound to their arena in phases"
		      : "in phases, requests of at least min_bytes go to the "
			"pool explicitly",
	    (unsigned long long)o[ZK_OPT_REGION],
	    (unsigned long long)o[ZK_OPT_ARENAS],
	    (unsigned long long)o[ZK_OPT_MIN_BYTES],
	    zk_opt_choice(ZK_OPT_THP, o[ZK_OPT_THP]),
	    (unsigned long long)o[ZK_OPT_TRIM_PHASES],
	    (unsigned long long)o[ZK_OPT_CHECK]);
	atomic_store(&summary_pid, getpid());
}

void zk_verbose_reserved(void)
{
	if (!zk_g.opt[ZK_OPT_VERBOSE])
		return;
	zk_stats_t s = {.size = sizeof(s)};
	if (zk_stats_get(&s) != 0 || !s.region_reserved)
		return;
	zk_os_warnf("zkalloc: pool reserved: %zu MiB of address space (region "
		    "%zu MiB at %p, bookkeeping %zu MiB), PROT_NONE and "
		    "MAP_NORESERVE: no memory and no commit charge until "
		    "used\n",
		    s.reserved_bytes >> 20, s.max_block >> 20,
		    (void *)zk_pool.base, (s.reserved_bytes - s.max_block) >> 20);
}

void zk_verbose_start(void)
{
	zk_init();
	banner();
}

#define MiB(x) ((double)(x) / (double)(1 << 20))

/* At exit (or dlclose), in the process that printed the banner only: a
 * forked child's exit would repeat the parent's figures. */
__attribute__((destructor)) static void summary(void)
{
	pid_t pid = atomic_load(&summary_pid);
	if (pid == 0 || pid != getpid())
		return;
	zk_stats_t s = {.size = sizeof(s)};
	if (zk_stats_get(&s) != 0)
		return;
	zk_os_warnf(
	    "zkalloc: exit: %llu phases; pool: %.1f MiB reserved, %.1f MiB "
	    "committed, %.1f MiB high water, %.1f MiB resident, %.1f MiB "
	    "allocated (%.1f MiB arena metadata), %.1f MiB free; kept across "
	    "the last begin: %llu blocks, %.1f MiB (made in a phase and still "
	    "in use: valid, in place); %llu arenas, %llu thread binds; "
	    "overflow %llu requests, %.1f MiB; cleared %.1f MiB for calloc; "
	    "decay gave back %.1f MiB in %llu ranges; failed madvise %llu, "
	    "mprotect %llu, commit %llu%s%s\n",
	    (unsigned long long)s.epoch, MiB(s.reserved_bytes),
	    MiB(s.committed_bytes), MiB(s.top_bytes), MiB(s.resident_bytes),
	    MiB(s.live_bytes), MiB(s.metadata_bytes), MiB(s.free_bytes),
	    (unsigned long long)s.kept_blocks, MiB(s.kept_bytes),
	    (unsigned long long)s.arenas_created, (unsigned long long)s.binds,
	    (unsigned long long)s.overflow_count, MiB(s.overflow_bytes),
	    MiB(s.hook_zeroed_bytes), MiB(s.trimmed_bytes),
	    (unsigned long long)s.trims, (unsigned long long)s.madvise_failures,
	    (unsigned long long)s.mprotect_failures,
	    (unsigned long long)s.commit_failures,
	    s.region_reserved || s.epoch == 0 ? ""
					      : "; the region was NOT reserved",
	    s.pool_degraded ? "; pool degraded by a fork (fresh pages only)"
			    : "");
}

/* ----------------------------------------------------- at load */

/* Is this copy of zkalloc the one the process calls? A program linked
 * with libzkalloc and run with the drop-in preloaded maps both; only the
 * drop-in's zk_* are called, and only it speaks. */
static bool this_copy_is_used(const Dl_info *self)
{
	void *z = dlsym(RTLD_DEFAULT, "zk_begin_phase");
	return z == NULL || defined_in(z, self->dli_fbase);
}

static bool verbose_requested(void)
{
	const char *v = getenv(zk_opt_table[ZK_OPT_VERBOSE].env);
	uint64_t on = 0;
	return v != NULL &&
	       zk_opt_parse(&zk_opt_table[ZK_OPT_VERBOSE], v, &on) == 0 && on;
}

__attribute__((constructor)) static void at_load(void)
{
	Dl_info self, je;
	if (dladdr((void *)&at_load, &self) == 0 || !this_copy_is_used(&self))
		return;
	/* jemalloc not found (the drop-in warned), or not told apart. */
	if (jemalloc_object(&je) && je.dli_fbase != self.dli_fbase) {
		check_link_order(&self, &je);
		check_second_jemalloc(&self, &je);
	}
	/* Options are read at load only when verbose asks for the banner:
	 * otherwise zk_init stays lazy, as the environment may change before
	 * the first call. */
	if (verbose_requested()) {
		zk_init();
		if (zk_g.opt[ZK_OPT_VERBOSE])
			banner();
	}
}
