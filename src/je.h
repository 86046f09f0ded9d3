/*
 * jemalloc's entry points, named once for the core: je_mallocx, je_mallctl,
 * ... are jemalloc's stable names, which <jemalloc/jemalloc.h> maps to the
 * linked build's prefix (none for Debian's, _rjem_ for tikv's) when
 * JEMALLOC_NO_DEMANGLE is defined. A prefixed build (-Djemalloc_prefix)
 * redefines them on the command line instead (src/meson.build).
 */
#ifndef ZK_JE_H
#define ZK_JE_H

#ifndef JEMALLOC_NO_DEMANGLE
#define JEMALLOC_NO_DEMANGLE
#endif
#include <jemalloc/jemalloc.h>

#endif
