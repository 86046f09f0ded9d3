/* The ZK_ALLOC_* table and its parser. */
#include "options.h"

#include "je.h"
#include "os.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GiB ((uint64_t)1 << 30)
#define MiB ((uint64_t)1 << 20)

static const char *const thp_choices[] = {"never", "always", NULL};
static const char *const bool_choices[] = {"0", "1", NULL};

/* The address space a prover can fill: its machine's memory. */
static uint64_t default_region(void)
{
	uint64_t ram = zk_os_phys_bytes();
	uint64_t r = (ram + GiB - 1) / GiB * GiB;
	return r < 4 * GiB ? 4 * GiB : r > 8192 * GiB ? 8192 * GiB : r;
}

/* As many arenas as jemalloc gives itself (opt.narenas: 4 per CPU by
 * default), so threads contend on them as they would on jemalloc's own. */
static uint64_t default_arenas(void)
{
	unsigned n = 0;
	size_t len = sizeof(n);
	if (je_mallctl("opt.narenas", &n, &len, NULL, 0) != 0 || n == 0)
		n = 4 * zk_os_ncpus();
	return n > 1024 ? 1024 : n;
}

const zk_opt_desc_t zk_opt_table[ZK_OPT__COUNT] = {
    [ZK_OPT_REGION] = {"ZK_ALLOC_REGION_GB", ZK_KIND_GIB, 0, default_region,
		       64 * MiB, 8192 * GiB, NULL,
		       "GiB of address space reserved for phase memory "
		       "(decimal, e.g. 0.5); default the machine's memory"},
    [ZK_OPT_ARENAS] = {"ZK_ALLOC_ARENAS", ZK_KIND_UINT, 0, default_arenas, 1,
		       1024, NULL,
		       "jemalloc arenas serving phases; threads take them in "
		       "turn; default jemalloc's own opt.narenas"},
    [ZK_OPT_MIN_BYTES] = {"ZK_ALLOC_MIN_BYTES", ZK_KIND_BYTES, 0, NULL, 0,
			  (uint64_t)1 << 62, NULL,
			  "0: every in-phase request is served from the pool; "
			  "N: only requests of at least N bytes are"},
    [ZK_OPT_THP] = {"ZK_ALLOC_THP", ZK_KIND_ENUM, ZK_THP_NEVER, NULL, 0, 1,
		    thp_choices,
		    "transparent huge pages on the region: never or always"},
    [ZK_OPT_CHECK] = {"ZK_ALLOC_CHECK", ZK_KIND_ENUM, 0, NULL, 0, 1,
		      bool_choices,
		      "1 = checked mode: use after free and double free of "
		      "pool memory are reported"},
    [ZK_OPT_VERBOSE] = {"ZK_ALLOC_VERBOSE", ZK_KIND_ENUM, 0, NULL, 0, 1,
			bool_choices,
			"1 = one banner line at start and a summary at exit"},
    [ZK_OPT_TRIM_PHASES] = {"ZK_ALLOC_TRIM_PHASES", ZK_KIND_UINT, 4, NULL, 1,
			    64, NULL,
			    "at each begin, free pages beyond the recent peak "
			    "that none of the last K phases used go back"},
};

const char *const zk_opt_retired[] = {
    "ZK_ALLOC_SLAB_GB",	      "ZK_ALLOC_SLABS", "ZK_ALLOC_SHARED_BYTES",
    "ZK_ALLOC_PROMOTE_BYTES", "ZK_ALLOC_SMALL", NULL};

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

const char *zk_opt_format(const zk_opt_desc_t *row, uint64_t v, char *buf,
			  unsigned len)
{
	switch (row->kind) {
	case ZK_KIND_ENUM:
		snprintf(buf, len, "%s", row->choices[v]);
		break;
	case ZK_KIND_GIB: {
		/* The shortest decimal of GiB, rounded up, that parses back to
		 * at least v: what the warning names must be accepted. */
		uint64_t whole = v / GiB, rem = v % GiB, got = 0;
		for (unsigned digits = 0; digits <= 12; digits++) {
			uint64_t scale = 1;
			for (unsigned d = 0; d < digits; d++)
				scale *= 10;
			/* ceil(rem * scale / GiB), without overflow. */
			unsigned __int128 f =
			    ((unsigned __int128)rem * scale + GiB - 1) / GiB;
			uint64_t w = whole, fr = (uint64_t)f;
			if (fr >= scale) { /* rounded up to the next whole */
				w++;
				fr = 0;
			}
			if (digits == 0)
				snprintf(buf, len, "%llu",
					 (unsigned long long)w);
			else
				snprintf(buf, len, "%llu.%0*llu",
					 (unsigned long long)w, (int)digits,
					 (unsigned long long)fr);
			if (zk_opt_parse(row, buf, &got) == 0 && got == v)
				break; /* exact; else 12 digits, rounded up */
		}
		break;
	}
	default:
		snprintf(buf, len, "%llu", (unsigned long long)v);
		break;
	}
	return buf;
}

static void warn_bad(const zk_opt_desc_t *row, const char *text, uint64_t dflt)
{
	char buf[512], expect[160], lo[48], hi[48], dtext[48];
	zk_opt_format(row, row->min, lo, sizeof(lo));
	zk_opt_format(row, row->max, hi, sizeof(hi));
	zk_opt_format(row, dflt, dtext, sizeof(dtext));
	switch (row->kind) {
	case ZK_KIND_ENUM: {
		size_t n = 0;
		expect[0] = '\0';
		for (size_t i = 0; row->choices[i] != NULL; i++)
			n += (size_t)snprintf(expect + n, sizeof(expect) - n,
					      "%s%s", i ? " or " : "one of ",
					      row->choices[i]);
		break;
	}
	case ZK_KIND_GIB:
		snprintf(expect, sizeof(expect),
			 "a decimal number of GiB from %s to %s", lo, hi);
		strcat(dtext, " GiB");
		break;
	default:
		snprintf(expect, sizeof(expect), "a whole number%s from %s to %s",
			 row->kind == ZK_KIND_BYTES
			     ? " of bytes (K/M/G suffix allowed)"
			     : "",
			 lo, hi);
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
	for (int i = 0; zk_opt_retired[i] != NULL; i++)
		if (getenv(zk_opt_retired[i]) != NULL)
			zk_os_warnf("zkalloc: warning: %s is no longer used "
				    "(since 0.2 phases are served from one page "
				    "pool; README.md, Options); ignored\n",
				    zk_opt_retired[i]);
}

const char *zk_opt_choice(zk_opt_id_t id, uint64_t value)
{
	return zk_opt_table[id].choices[value];
}
