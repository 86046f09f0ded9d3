/*
 * ZK_ALLOC_* options: one table, read once from the environment. A bad value
 * prints one warning naming the variable and the value, and the default is
 * used instead. A variable of an earlier version that no longer exists
 * prints one warning too (zk_options_load).
 */
#ifndef ZK_OPTIONS_H
#define ZK_OPTIONS_H

#include <stdint.h>

typedef enum zk_opt_id {
	ZK_OPT_REGION,	    /* ZK_ALLOC_REGION_GB, stored in bytes */
	ZK_OPT_ARENAS,	    /* ZK_ALLOC_ARENAS */
	ZK_OPT_MIN_BYTES,   /* ZK_ALLOC_MIN_BYTES, 0 = every request */
	ZK_OPT_THP,	    /* ZK_ALLOC_THP: index into {never, always} */
	ZK_OPT_CHECK,	    /* ZK_ALLOC_CHECK: 0 or 1 */
	ZK_OPT_VERBOSE,	    /* ZK_ALLOC_VERBOSE: 0 or 1 */
	ZK_OPT_TRIM_PHASES, /* ZK_ALLOC_TRIM_PHASES: K of the phase decay */
	ZK_OPT__COUNT
} zk_opt_id_t;

enum { ZK_THP_NEVER = 0, ZK_THP_ALWAYS = 1 };

typedef enum zk_opt_kind {
	ZK_KIND_GIB,   /* decimal number of GiB ("8", "0.25"), stored in bytes */
	ZK_KIND_BYTES, /* whole bytes with optional K/M/G suffix (binary) */
	ZK_KIND_UINT,  /* whole number */
	ZK_KIND_ENUM   /* one of the row's choices, stored as its index */
} zk_opt_kind_t;

typedef struct zk_opt_desc {
	const char *env;     /* environment variable */
	zk_opt_kind_t kind;
	uint64_t dflt;       /* default, unless dflt_fn is set */
	uint64_t (*dflt_fn)(void); /* default computed at load time */
	uint64_t min, max;   /* accepted range (inclusive, stored units) */
	const char *const *choices; /* ZK_KIND_ENUM: NULL-terminated names */
	const char *help;    /* one line for the README table */
} zk_opt_desc_t;

/* The table, indexed by zk_opt_id_t. */
extern const zk_opt_desc_t zk_opt_table[ZK_OPT__COUNT];

/* Variables of zkalloc 0.1 that 0.2 no longer reads (NULL-terminated). */
extern const char *const zk_opt_retired[];

/* Parse one value of a row. Returns 0 and sets *out, or -1 if text is not a
 * valid value for the row (then *out is untouched). Pure: no warnings. */
int zk_opt_parse(const zk_opt_desc_t *row, const char *text, uint64_t *out);

/* The text of a row's value as the warning prints it (a GiB row: the
 * shortest decimal that parses back to at least v). Returns buf. */
const char *zk_opt_format(const zk_opt_desc_t *row, uint64_t v, char *buf,
			  unsigned len);

/* Read every variable from the environment into out[], warning about (and
 * replacing by the default) each bad one, and about each retired one. */
void zk_options_load(uint64_t out[ZK_OPT__COUNT]);

/* The text of an enum option's current value. */
const char *zk_opt_choice(zk_opt_id_t id, uint64_t value);

#endif
