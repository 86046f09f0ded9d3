/*
 * What a user sees to confirm zkalloc is active and wired right:
 * ZK_ALLOC_VERBOSE=1's banner and exit summary, and the load-time check
 * that the process allocates with the jemalloc zkalloc calls (link order,
 * a second or prefixed jemalloc), which warns once whatever the option.
 */
#ifndef ZK_VERBOSE_H
#define ZK_VERBOSE_H

/* jemalloc's own mallocx as the drop-in found it (override.c cannot name
 * it: it exports mallocx itself). NULL in libzkalloc, where &je_mallocx is
 * jemalloc's. Written by override.c's constructor, which runs first. */
extern const void *zk_jemalloc_mallocx;

/* Verbose mode was switched on after load (zk.opt.verbose): print the
 * banner now unless it was, and the summary at exit. */
void zk_verbose_start(void);

/* The region was just reserved: in verbose mode, print what it took. */
void zk_verbose_reserved(void);

#endif
