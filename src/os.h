/*
 * The OS layer: the only code in zkalloc that talks to the kernel about
 * memory. Every primitive returns 0 or an errno value and never aborts.
 */
#ifndef ZK_OS_H
#define ZK_OS_H

#include <stdbool.h>
#include <stddef.h>

/* Reserve size bytes of address space (private anonymous, PROT_NONE,
 * MAP_NORESERVE), aligned to align (a power of two). Nothing is charged
 * to the commit limit until zk_os_commit. On success *out is set and 0
 * returned; on failure *out is untouched and the mmap errno is returned. */
int zk_os_reserve(size_t size, size_t align, void **out);

/* Make a page-aligned range of a reservation readable and writable; the
 * kernel charges it to the commit limit (vm.overcommit_memory=2) and backs
 * pages on first touch. Returns 0 or the mprotect errno (ENOMEM when the
 * commit limit is reached). */
int zk_os_commit(void *addr, size_t size);

/* Tests only: when set, zk_os_commit fails with its result (a commit
 * limit simulation for the region, which is committed in 64 MiB steps). */
extern int (*zk_os_commit_fault)(size_t size);

/* A mapping of its own, readable and writable, of size bytes aligned to
 * align (the pool's overflow; zk_os_release gives it back). Charged to the
 * commit limit at once; zk_os_commit_fault does not apply. Returns 0 or
 * the mmap/mprotect errno. */
int zk_os_map(size_t size, size_t align, void **out);

/* Give the pages of a committed range back to the kernel; the range stays
 * committed and reads as zero afterwards (MADV_DONTNEED). */
int zk_os_purge(void *addr, size_t size);

/* Bytes of address space this process may still map under RLIMIT_AS
 * (SIZE_MAX when unlimited). */
size_t zk_os_as_headroom(void);

/* True when the kernel charges every writable private mapping to the
 * commit limit (vm.overcommit_memory = 2). */
bool zk_os_overcommit_strict(void);

/* Give back a reservation made by zk_os_reserve (tests and teardown only). */
int zk_os_release(void *addr, size_t size);

/* Make a page-aligned range of a reservation readable and writable
 * (access = true) or inaccessible (checked mode's freed extents). */
int zk_os_protect(void *addr, size_t size, bool access);

/* Count the bytes of a page-aligned range that are resident in memory now
 * (mincore). Does not allocate. Returns 0 or the mincore errno. */
int zk_os_resident(const void *addr, size_t size, size_t *out);

/* Which pages of a page-aligned range of npages pages are resident now:
 * vec[i] & 1 for page i (mincore). Returns 0 or the mincore errno. */
int zk_os_residency(const void *addr, size_t npages, unsigned char *vec);

/* Ask for (huge = true) or against transparent huge pages on a range. */
int zk_os_advise_thp(void *addr, size_t size, bool huge);

/* The page size (cached). */
size_t zk_os_page_size(void);

/* Bytes of physical memory (sysconf), at least one page. */
size_t zk_os_phys_bytes(void);

/* CPUs this process may run on (sched_getaffinity), at least 1. */
unsigned zk_os_ncpus(void);

/* Write a whole message to stderr without allocating. */
void zk_os_warn(const char *msg, size_t len);

/* printf-style zk_os_warn: formatted into a 1 KiB stack buffer (cut there),
 * so it may run inside an allocator's callers, a constructor or at exit. */
void zk_os_warnf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
