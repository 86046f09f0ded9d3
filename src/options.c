/* The ZK_ALLOC_* table and its parser. */
#define JEMALLOC_NO_DEMANGLE
#include "options.h"

#include "os.h"

#include <errno.h>
#include <jemalloc/jemalloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GiB ((uint64_t)1 << 30)
#define MiB ((uint64_t)1 << 20)

static const char *const thp_choices[] = {"never", "always", NULL};
static const char *const small_choices[] = {"ordinary", "resident", NULL};
static const char *const check_choices[] = {"0", "1", NULL};

static uint64_t default_nslabs(void)
{
	return (uint64_t)zk_os_ncpus() + 4;
}

/* Above arenas.tcache_max: thread caches outlive arena.<i>.destroy, so a
 * phase block small enough to be cached must never be made by default. */
static uint64_t default_min_bytes(void)
{
	size_t tcache_max = 0, len = sizeof(tcache_max);
	if (je_mallctl("arenas.tcache_max", &tcache_max, &len, NULL, 0) != 0)
		tcache_max = 32 * 1024;
	return (uint64_t)tcache_max + 1;
}

const zk_opt_desc_t zk_opt_table[ZK_OPT__COUNT] = {
    [ZK_OPT_SLAB_SIZE] = {"ZK_ALLOC_SLAB_GB", ZK_KIND_GIB, 8 * GiB, NULL,
			  16 * MiB, 1024 * GiB, NULL,
			  "GiB of address space per thread slab (decimal, "
			  "e.g. 0.5); rounded up to 2 MiB"},
    [ZK_OPT_NSLABS] = {"ZK_ALLOC_SLABS", ZK_KIND_UINT, 0, default_nslabs, 1,
		       1024, NULL,
		       "slabs in the region (threads that can hold phase "
		       "memory at once); default CPUs + 4"},
    [ZK_OPT_MIN_BYTES] = {"ZK_ALLOC_MIN_BYTES", ZK_KIND_BYTES, 0,
			  default_min_bytes, 1, (uint64_t)1 << 62, NULL,
			  "in-phase requests of at least this size use phase "
			  "memory; default arenas.tcache_max + 1"},
    [ZK_OPT_PROMOTE_BYTES] = {"ZK_ALLOC_PROMOTE_BYTES", ZK_KIND_BYTES, 0, NULL,
			      0, (uint64_t)1 << 62, NULL,
			      "in a phase, realloc of an ordinary block to "
			      "at least this size moves it into phase memory; "
			      "0 = off"},
    [ZK_OPT_THP] = {"ZK_ALLOC_THP", ZK_KIND_ENUM, ZK_THP_NEVER, NULL, 0, 1,
		    thp_choices,
		    "transparent huge pages on the region: never or always"},
    [ZK_OPT_SMALL] = {"ZK_ALLOC_SMALL", ZK_KIND_ENUM, ZK_SMALL_RESIDENT, NULL,
		      0, 1, small_choices,
		      "in-phase small requests: ordinary jemalloc arenas, or "
		      "resident per-thread arenas that never purge"},
    [ZK_OPT_CHECK] = {"ZK_ALLOC_CHECK", ZK_KIND_ENUM, 0, NULL, 0, 1,
		      check_choices,
		      "1 = checked mode: report phase-contract violations"},
    [ZK_OPT_VERBOSE] = {"ZK_ALLOC_VERBOSE", ZK_KIND_ENUM, 0, NULL, 0, 1,
			check_choices,
			"1 = one banner line at start and a summary at exit"},
    [ZK_OPT_TRIM_PHASES] = {"ZK_ALLOC_TRIM_PHASES", ZK_KIND_UINT, 4, NULL, 1,
			    64, NULL,
			    "at each begin, resident pages that none of the "
			    "last K phases needed are given back"},
    [ZK_OPT_SHARED_BYTES] =
	{"ZK_ALLOC_SHARED_BYTES", ZK_KIND_BYTES, 8 * MiB, NULL, 0,
	 (uint64_t)1 << 62, NULL,
	 "in-phase requests of at least this size go to one "
	 "phase arena shared by all threads; 0 = off"},
};

static int parse_whole(const char *s, const char **end, uint64_t *out)
{
	if (*s < '0' || *s > '9')
		return -1; /* no sign, no space, no empty string */
	errno = 0;
	char *e;
	unsigned long long v = strtoull(s, &e, 10);
	if (errno == ERANGE)
		return -1;
	*end = e;
	*out = v;
	return 0;
}

int zk_opt_parse(const zk_opt_desc_t *row, const char *text, uint64_t *out)
{
	uint64_t v = 0;
	const char *end;
	switch (row->kind) {
	case ZK_KIND_UINT:
		if (parse_whole(text, &end, &v) != 0 || *end != '\0')
			return -1;
		break;
	case ZK_KIND_BYTES: {
		if (parse_whole(text, &end, &v) != 0)
			return -1;
		unsigned shift = 0;
		switch (*end) {
		case '\0':
			break;
		case 'k':
		case 'K':
			shift = 10;
			end++;
			break;
		case 'm':
		case 'M':
			shift = 20;
			end++;
			break;
		case 'g':
		case 'G':
			shift = 30;
			end++;
			break;
		default:
			return -1;
		}
		if (*end != '\0' || (shift != 0 && v > (UINT64_MAX >> shift)))
			return -1;
		v <<= shift;
		break;
	}
	case ZK_KIND_GIB: {
		/* Digits with at most one '.', nothing else, parsed here:
		 * strtod would take "inf", hex, signs and exponents, and reads
		 * the decimal point of the locale ("0,5" under de_DE). Value =
		 * whole + frac / 10^ndec GiB, rounded up to a byte. */
		uint64_t whole = 0, frac = 0, scale = 1;
		int dots = 0, digits = 0;
		for (const char *c = text; *c; c++) {
			if (*c == '.') {
				dots++;
			} else if (*c >= '0' && *c <= '9') {
				digits++;
				if (dots == 0)
					whole =
					    whole * 10 + (uint64_t)(*c - '0');
				else if (scale < 1000000000000ull) {
					frac = frac * 10 + (uint64_t)(*c - '0');
					scale *= 10;
				}
			} else {
				return -1;
			}
			if (whole > (uint64_t)1e9)
				return -1;
		}
		if (digits == 0 || dots > 1 || strlen(text) > 32)
			return -1;
		/* frac / scale of a GiB, in bytes, rounded up: split GiB to
		 * stay within 64 bits (scale <= 10^12, GiB = 2^30). */
		uint64_t part =
		    frac * (GiB >> 20) / scale * ((uint64_t)1 << 20);
		uint64_t rest = frac * (GiB >> 20) % scale;
		part += (rest * ((uint64_t)1 << 20) + scale - 1) / scale;
		v = whole * GiB + part;
		if (v == 0)
			return -1;
		break;
	}
	case ZK_KIND_ENUM: {
		uint64_t i = 0;
		for (; row->choices[i] != NULL; i++)
			if (strcmp(row->choices[i], text) == 0)
				break;
		if (row->choices[i] == NULL)
			return -1;
		v = i;
		break;
	}
	}
	if (v < row->min || v > row->max)
		return -1;
	*out = v;
	return 0;
}

static void warn_bad(const zk_opt_desc_t *row, const char *text, uint64_t dflt)
{
	char buf[512], expect[160], dtext[48];
	switch (row->kind) {
	case ZK_KIND_ENUM: {
		size_t n = 0;
		expect[0] = '\0';
		for (size_t i = 0; row->choices[i] != NULL; i++)
			n += (size_t)snprintf(expect + n, sizeof(expect) - n,
					      "%s%s", i ? " or " : "one of ",
					      row->choices[i]);
		snprintf(dtext, sizeof(dtext), "%s", row->choices[dflt]);
		break;
	}
	case ZK_KIND_GIB:
		snprintf(expect, sizeof(expect),
			 "a decimal number of GiB from %.4f to %llu",
			 (double)row->min / (double)GiB,
			 (unsigned long long)(row->max / GiB));
		snprintf(dtext, sizeof(dtext), "%.4g GiB",
			 (double)dflt / (double)GiB);
		break;
	default:
		snprintf(expect, sizeof(expect),
			 "a whole number%s from %llu to %llu",
			 row->kind == ZK_KIND_BYTES
			     ? " of bytes (K/M/G suffix allowed)"
			     : "",
			 (unsigned long long)row->min,
			 (unsigned long long)row->max);
		snprintf(dtext, sizeof(dtext), "%llu",
			 (unsigned long long)dflt);
		break;
	}
	int n = snprintf(
	    buf, sizeof(buf),
	    "zkalloc: warning: %s=\"%.64s%s\" is not valid (expected "
	    "%s); using the default %s\n",
	    row->env, text, strlen(text) > 64 ? "..." : "", expect, dtext);
	if (n > 0)
		zk_os_warn(buf, (size_t)n < sizeof(buf) ? (size_t)n
							: sizeof(buf) - 1);
}

void zk_options_load(uint64_t out[ZK_OPT__COUNT])
{
	for (int i = 0; i < ZK_OPT__COUNT; i++) {
		const zk_opt_desc_t *row = &zk_opt_table[i];
		uint64_t dflt = row->dflt_fn ? row->dflt_fn() : row->dflt;
		const char *text = getenv(row->env);
		out[i] = dflt;
		if (text != NULL && zk_opt_parse(row, text, &out[i]) != 0)
			warn_bad(row, text, dflt);
	}
}

const char *zk_opt_choice(zk_opt_id_t id, uint64_t value)
{
	return zk_opt_table[id].choices[value];
}
