/*
 * The OS layer: the only code in zkalloc that talks to the kernel about
 * memory. Every primitive returns 0 or an errno value and never aborts.
 */
#ifndef ZK_OS_H
#define ZK_OS_H

#include <stdbool.h>
#include <stddef.h>

/* Reserve size bytes of read/write private anonymous memory with
 * MAP_NORESERVE, aligned to align (a power of two). Pages are committed by
 * the kernel on first touch only. On success *out is set and 0 returned; on
 * failure *out is untouched and the mmap errno is returned. */
int zk_os_reserve(size_t size, size_t align, void **out);

/* Give back a reservation made by zk_os_reserve (tests and teardown only). */
int zk_os_release(void *addr, size_t size);

/* Make a page-aligned range of a reservation readable and writable
 * (access = true) or inaccessible (checked mode's stale phase memory). */
int zk_os_protect(void *addr, size_t size, bool access);

/* Count the bytes of a page-aligned range that are resident in memory now
 * (mincore). Does not allocate. Returns 0 or the mincore errno. */
int zk_os_resident(const void *addr, size_t size, size_t *out);

/* Ask for (huge = true) or against transparent huge pages on a range. */
int zk_os_advise_thp(void *addr, size_t size, bool huge);

/* The page size (cached). */
size_t zk_os_page_size(void);

/* CPUs this process may run on (sched_getaffinity), at least 1. */
unsigned zk_os_ncpus(void);

/* Write a whole message to stderr without allocating. */
void zk_os_warn(const char *msg, size_t len);

#endif
