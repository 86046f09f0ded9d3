/* The OS layer for Linux: mmap, madvise, CPU count, stderr. */
#define _GNU_SOURCE
#include "os.h"

#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

int zk_os_reserve(size_t size, size_t align, void **out)
{
	/* Over-reserve by align and trim both ends, so the start is aligned
	 * and nothing outside [start, start + size) stays mapped. */
	size_t total = size + align;
	if (total < size)
		return ENOMEM;
	void *p = mmap(NULL, total, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return errno;
	uintptr_t raw = (uintptr_t)p;
	uintptr_t start = (raw + align - 1) & ~(uintptr_t)(align - 1);
	size_t head = start - raw;
	size_t tail = total - head - size;
	if (head != 0)
		munmap(p, head);
	if (tail != 0)
		munmap((void *)(start + size), tail);
	*out = (void *)start;
	return 0;
}

int (*zk_os_commit_fault)(size_t size);

int zk_os_commit(void *addr, size_t size)
{
	int (*fault)(size_t) =
	    __atomic_load_n(&zk_os_commit_fault, __ATOMIC_RELAXED);
	if (fault != NULL) {
		int err = fault(size);
		if (err != 0)
			return err;
	}
	return mprotect(addr, size, PROT_READ | PROT_WRITE) == 0 ? 0 : errno;
}

int zk_os_map(size_t size, size_t align, void **out)
{
	void *p;
	int err = zk_os_reserve(size, align, &p);
	if (err != 0)
		return err;
	if (mprotect(p, size, PROT_READ | PROT_WRITE) != 0) {
		err = errno;
		munmap(p, size);
		return err;
	}
	*out = p;
	return 0;
}

int zk_os_purge(void *addr, size_t size)
{
	return madvise(addr, size, MADV_DONTNEED) == 0 ? 0 : errno;
}

size_t zk_os_as_headroom(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_AS, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
		return SIZE_MAX;
	/* VmSize from /proc/self/statm (pages), read without stdio. */
	size_t used = 0;
	int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		char buf[64];
		ssize_t n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		for (ssize_t i = 0; i < n && buf[i] >= '0' && buf[i] <= '9';
		     i++)
			used = used * 10 + (size_t)(buf[i] - '0');
		used *= zk_os_page_size();
	}
	return rl.rlim_cur > used ? (size_t)(rl.rlim_cur - used) : 0;
}

bool zk_os_overcommit_strict(void)
{
	int fd = open("/proc/sys/vm/overcommit_memory", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	char c = 0;
	ssize_t n = read(fd, &c, 1);
	close(fd);
	return n == 1 && c == '2';
}

int zk_os_release(void *addr, size_t size)
{
	return munmap(addr, size) == 0 ? 0 : errno;
}

int zk_os_protect(void *addr, size_t size, bool access)
{
	int prot = access ? PROT_READ | PROT_WRITE : PROT_NONE;
	return mprotect(addr, size, prot) == 0 ? 0 : errno;
}

int zk_os_resident(const void *addr, size_t size, size_t *out)
{
	/* A small vector on the stack, walked in chunks: callers may run
	 * inside malloc, so nothing is allocated; no thread-local buffer, so
	 * the library's static TLS stays small enough for dlopen. */
	unsigned char vec[256];
	size_t page = zk_os_page_size(), pages = 0;
	const char *p = addr;
	while (size > 0) {
		size_t n =
		    size / page < sizeof(vec) ? size / page : sizeof(vec);
		if (n == 0)
			break;
		if (mincore((void *)p, n * page, vec) != 0)
			return errno;
		for (size_t i = 0; i < n; i++)
			pages += vec[i] & 1;
		p += n * page;
		size -= n * page;
	}
	*out = pages * page;
	return 0;
}

int zk_os_residency(const void *addr, size_t npages, unsigned char *vec)
{
	return mincore((void *)addr, npages * zk_os_page_size(), vec) == 0
		   ? 0
		   : errno;
}

int zk_os_advise_thp(void *addr, size_t size, bool huge)
{
	return madvise(addr, size, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) == 0
		   ? 0
		   : errno;
}

size_t zk_os_page_size(void)
{
	static size_t page;
	if (page == 0)
		page = (size_t)sysconf(_SC_PAGESIZE);
	return page;
}

size_t zk_os_phys_bytes(void)
{
	long pages = sysconf(_SC_PHYS_PAGES);
	return pages > 0 ? (size_t)pages * zk_os_page_size()
			 : zk_os_page_size();
}

unsigned zk_os_ncpus(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) == 0) {
		int n = CPU_COUNT(&set);
		if (n > 0)
			return (unsigned)n;
	}
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

void zk_os_warn(const char *msg, size_t len)
{
	while (len > 0) {
		ssize_t w = write(STDERR_FILENO, msg, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		msg += w;
		len -= (size_t)w;
	}
}

void zk_os_warnf(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > 0)
		zk_os_warn(buf, (size_t)n < sizeof(buf) ? (size_t)n
							: sizeof(buf) - 1);
}
