/* Stands in for a second, prefixed jemalloc (tikv-jemallocator's _rjem_
 * build) in link_check: the load-time check knows jemalloc instances by
 * their exported mallocx under any of its prefixes. */
#include <stddef.h>

__attribute__((visibility("default"))) void *_rjem_mallocx(size_t size,
							   int flags)
{
	(void)size;
	(void)flags;
	return NULL;
}
