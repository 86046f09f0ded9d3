/* Internal access to the stats snapshot (zk_stats_get is the public one). */
#ifndef ZK_STATS_H
#define ZK_STATS_H

#include <zkalloc.h>

#include <stdbool.h>

/* Fill every field of *s (s->size is set to sizeof(*s)). The counters are
 * plain loads; with_scan also measures resident bytes (mincore over the
 * pool, no lock held). */
void zk_stats_read(zk_stats_t *s, bool with_scan);

#endif
