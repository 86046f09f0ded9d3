/*
 * zk_mallctl: zkalloc's names under "zk.", every other name forwarded to
 * je_mallctl. Conventions follow mallctl(3): reads need *oldlenp equal to
 * the value's size; writes need newlen equal to it; writes to read-only
 * names are EPERM; "void" names take neither an old nor a new value. A
 * call that fails changes nothing (no old value is copied either).
 *
 * Three tables: actions and computed values, options (zk.opt.*, writable
 * until the first phase), and statistics (zk.stats.*, one row per
 * zk_stats_t field, by offset: a new field needs one row here).
 */
#include "je.h"
#include "phase.h"
#include "stats.h"
#include "verbose.h"

#include <zkalloc.h>

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

typedef enum {
	T_VOID,
	T_BOOL,
	T_U32,
	T_U64,
	T_SIZE,
	T_UNSIGNED,
	T_INT,
	T_STR
} ctl_type_t;

typedef union ctl_value {
	bool b;
	uint32_t u32;
	uint64_t u64;
	size_t size;
	unsigned u;
	int i;
	const char *str;
} ctl_value_t;

static size_t type_size(ctl_type_t t)
{
	switch (t) {
	case T_BOOL:
		return sizeof(bool);
	case T_U32:
		return sizeof(uint32_t);
	case T_U64:
		return sizeof(uint64_t);
	case T_SIZE:
		return sizeof(size_t);
	case T_UNSIGNED:
		return sizeof(unsigned);
	case T_INT:
		return sizeof(int);
	case T_STR:
		return sizeof(const char *);
	case T_VOID:
		break;
	}
	return 0;
}

/* ------------------------------------------------ actions and values */

typedef struct ctl_entry {
	const char *name;
	ctl_type_t type;
	/* T_VOID: performs the action and returns 0 or an errno.
	 * Others: fills *v (read-only values). */
	int (*fn)(ctl_value_t *v);
} ctl_entry_t;

static int do_begin(ctl_value_t *v)
{
	(void)v;
	return zk_begin_phase();
}
static int do_end(ctl_value_t *v)
{
	(void)v;
	return zk_end_phase();
}
static int get_active(ctl_value_t *v)
{
	v->b = zk_phase_active();
	return 0;
}
static int get_epoch(ctl_value_t *v)
{
	v->u64 = zk_phase_epoch();
	return 0;
}
static int get_arena_flags(ctl_value_t *v)
{
	v->i = zk_arena_flags();
	return 0;
}

#define STR2(x) #x
#define STR(x)	STR2(x)
static int get_version(ctl_value_t *v)
{
	v->str = STR(ZK_VERSION_MAJOR) "." STR(ZK_VERSION_MINOR) "." STR(
	    ZK_VERSION_PATCH);
	return 0;
}

static const ctl_entry_t ctl_table[] = {
    {"zk.version", T_STR, get_version},
    {"zk.phase.begin", T_VOID, do_begin},
    {"zk.phase.end", T_VOID, do_end},
    {"zk.phase.active", T_BOOL, get_active},
    {"zk.phase.epoch", T_U64, get_epoch},
    {"zk.thread.arena_flags", T_INT, get_arena_flags},
};

/* ---------------------------------------------------------- options */

/* The C type of each option (see zk_mallctl in zkalloc.h): bytes size_t,
 * counts unsigned, enums their text, switches bool. */
typedef struct opt_entry {
	const char *name;
	zk_opt_id_t id;
	ctl_type_t type;
	bool writable;
} opt_entry_t;

static const opt_entry_t opt_table[] = {
    {"zk.opt.region_size", ZK_OPT_REGION, T_SIZE, true},
    {"zk.opt.arenas", ZK_OPT_ARENAS, T_UNSIGNED, true},
    {"zk.opt.min_bytes", ZK_OPT_MIN_BYTES, T_SIZE, true},
    {"zk.opt.thp", ZK_OPT_THP, T_STR, true},
    /* Checked mode is chosen at load: it decides how every extent freed
     * since is handled. */
    {"zk.opt.check", ZK_OPT_CHECK, T_BOOL, false},
    {"zk.opt.verbose", ZK_OPT_VERBOSE, T_BOOL, true},
    {"zk.opt.trim_phases", ZK_OPT_TRIM_PHASES, T_UNSIGNED, true},
};

static void opt_read(const opt_entry_t *e, ctl_value_t *v)
{
	pthread_mutex_lock(&zk_g.lock);
	uint64_t raw = zk_g.opt[e->id];
	pthread_mutex_unlock(&zk_g.lock);
	switch (e->type) {
	case T_SIZE:
		v->size = (size_t)raw;
		break;
	case T_UNSIGNED:
		v->u = (unsigned)raw;
		break;
	case T_STR:
		v->str = zk_opt_choice(e->id, raw);
		break;
	default:
		v->b = raw != 0;
		break;
	}
}

/* The written value, in the option's stored units, checked against its
 * row exactly as the environment variable is. Returns 0 or EINVAL. */
static int opt_parse(const opt_entry_t *e, const void *newp, uint64_t *out)
{
	const zk_opt_desc_t *row = &zk_opt_table[e->id];
	char text[32];
	const char *t = text;
	uint64_t n = 0;
	switch (e->type) {
	case T_SIZE: {
		size_t s;
		memcpy(&s, newp, sizeof(s));
		n = s;
		break;
	}
	case T_UNSIGNED: {
		unsigned u;
		memcpy(&u, newp, sizeof(u));
		n = u;
		break;
	}
	case T_BOOL: {
		/* As a byte: a bool object holding anything but 0 or 1 is not
		 * a bool, and loading it as one is undefined. */
		unsigned char c;
		memcpy(&c, newp, 1);
		if (c > 1)
			return EINVAL;
		n = c;
		break;
	}
	default:
		memcpy(&t, newp, sizeof(t));
		if (t == NULL)
			return EINVAL;
		break;
	}
	if (e->type != T_STR) {
		/* A GiB row's text is GiB, but the written value is bytes:
		 * the parser's range check is all that applies. */
		if (row->kind == ZK_KIND_GIB) {
			if (n < row->min || n > row->max)
				return EINVAL;
			*out = n;
			return 0;
		}
		snprintf(text, sizeof(text), "%" PRIu64, n);
	}
	return zk_opt_parse(row, t, out) == 0 ? 0 : EINVAL;
}

static int opt_ctl(const opt_entry_t *e, void *oldp, size_t *oldlenp,
		   void *newp, size_t newlen)
{
	size_t sz = type_size(e->type);
	bool write = newp != NULL || newlen != 0;
	bool read = oldp != NULL || oldlenp != NULL;
	if (write && !e->writable)
		return EPERM;
	if (write && (newp == NULL || newlen != sz))
		return EINVAL;
	if (read && (oldp == NULL || oldlenp == NULL || *oldlenp != sz))
		return EINVAL;
	uint64_t v = 0;
	int err;
	if (write && (err = opt_parse(e, newp, &v)) != 0)
		return err;
	ctl_value_t old;
	opt_read(e, &old);
	if (write) {
		if ((err = zk_opt_write(e->id, v)) != 0)
			return err;
		if (e->id == ZK_OPT_VERBOSE && v != 0)
			zk_verbose_start();
	}
	if (read)
		memcpy(oldp, &old, sz);
	return 0;
}

/* ------------------------------------------------------- statistics */

typedef struct stat_entry {
	const char *name;
	ctl_type_t type;
	size_t offset; /* of the field in zk_stats_t */
	size_t size;   /* of the field: the unit test checks it is type's */
} stat_entry_t;

#define STAT(field, type)                                                      \
	{                                                                      \
		"zk.stats." #field, type, offsetof(zk_stats_t, field),         \
		    sizeof(((zk_stats_t *)0)->field)                           \
	}

/* Every field after .size, in struct order. */
static const stat_entry_t stat_table[] = {
    STAT(version, T_U32),
    STAT(region_reserved, T_BOOL),
    STAT(phase_active, T_BOOL),
    STAT(epoch, T_U64),
    STAT(slab_size, T_SIZE),
    STAT(nslabs, T_UNSIGNED),
    STAT(slabs_in_use, T_UNSIGNED),
    STAT(resident_bytes, T_SIZE),
    STAT(max_slab_resident, T_SIZE),
    STAT(overflow_count, T_U64),
    STAT(overflow_bytes, T_U64),
    STAT(arenas_created, T_U64),
    STAT(arenas_destroyed, T_U64),
    STAT(hook_zeroed_bytes, T_U64),
    STAT(small_resident_bytes, T_SIZE),
    STAT(small_overflow_count, T_U64),
    STAT(shared_count, T_U64),
    STAT(arenas_reset, T_U64),
    STAT(trims, T_U64),
    STAT(trimmed_bytes, T_U64),
    STAT(begin_ns_last, T_U64),
    STAT(committed_bytes, T_SIZE),
    STAT(reserved_bytes, T_SIZE),
    STAT(max_block, T_SIZE),
    STAT(kept_blocks, T_U64),
    STAT(kept_bytes, T_U64),
    STAT(live_bytes, T_U64),
    STAT(metadata_bytes, T_U64),
    STAT(free_bytes, T_SIZE),
    STAT(top_bytes, T_SIZE),
    STAT(binds, T_U64),
    STAT(bind_failures, T_U64),
    STAT(madvise_failures, T_U64),
    STAT(mprotect_failures, T_U64),
    STAT(commit_failures, T_U64),
    STAT(quarantined_bytes, T_SIZE),
    STAT(pool_degraded, T_BOOL),
    STAT(zeroed_memset_bytes, T_U64),
    STAT(dalloc_refused, T_U64),
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* For the unit test only (declared there): row i of the stats table. */
const char *zk_ctl_stat_row(size_t i, size_t *offset, size_t *field_size,
			    size_t *type_bytes);
const char *zk_ctl_stat_row(size_t i, size_t *offset, size_t *field_size,
			    size_t *type_bytes)
{
	if (i >= COUNT(stat_table))
		return NULL;
	*offset = stat_table[i].offset;
	*field_size = stat_table[i].size;
	*type_bytes = type_size(stat_table[i].type);
	return stat_table[i].name;
}

/* A counter name reads the counters (no lock, no scan); only
 * resident_bytes pays for the mincore scan of the pool. */
static int read_stat(const stat_entry_t *e, ctl_value_t *v)
{
	zk_stats_t s;
	bool scan = e->offset == offsetof(zk_stats_t, resident_bytes);
	zk_stats_read(&s, scan);
	memcpy(v, (const char *)&s + e->offset, e->size);
	return 0;
}

/* ------------------------------------------------------------ entry */

/* Read-only value: copy it out; refuse writes. */
static int read_only(ctl_type_t type, int (*get)(ctl_value_t *),
		     const stat_entry_t *stat, void *oldp, size_t *oldlenp,
		     void *newp, size_t newlen)
{
	if (newp != NULL || newlen != 0)
		return EPERM;
	if (oldp == NULL && oldlenp == NULL)
		return 0; /* nothing asked for */
	size_t sz = type_size(type);
	if (oldp == NULL || oldlenp == NULL || *oldlenp != sz)
		return EINVAL;
	ctl_value_t v;
	int err = stat != NULL ? read_stat(stat, &v) : get(&v);
	if (err == 0)
		memcpy(oldp, &v, sz);
	return err;
}

int zk_mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp,
	       size_t newlen)
{
	if (name == NULL)
		return EFAULT;
	if (strncmp(name, "zk.", 3) != 0)
		return je_mallctl(name, oldp, oldlenp, newp, newlen);
	zk_init();
	for (size_t i = 0; i < COUNT(ctl_table); i++) {
		const ctl_entry_t *e = &ctl_table[i];
		if (strcmp(e->name, name) != 0)
			continue;
		if (e->type != T_VOID)
			return read_only(e->type, e->fn, NULL, oldp, oldlenp,
					 newp, newlen);
		if (oldp != NULL || oldlenp != NULL || newp != NULL ||
		    newlen != 0)
			return EINVAL;
		return e->fn(NULL);
	}
	for (size_t i = 0; i < COUNT(opt_table); i++)
		if (strcmp(opt_table[i].name, name) == 0)
			return opt_ctl(&opt_table[i], oldp, oldlenp, newp,
				       newlen);
	for (size_t i = 0; i < COUNT(stat_table); i++)
		if (strcmp(stat_table[i].name, name) == 0)
			return read_only(stat_table[i].type, NULL,
					 &stat_table[i], oldp, oldlenp, newp,
					 newlen);
	return ENOENT;
}
