/*
 * zk_mallctl: zkalloc's names under "zk.", every other name forwarded to
 * je_mallctl. Conventions follow mallctl(3): reads need *oldlenp equal to
 * the value's size; writes to read-only names are EPERM; "void" names take
 * neither an old nor a new value.
 */
#include "hooks.h"
#include "phase.h"

#include <zkalloc.h>

#include <errno.h>
#include <string.h>

typedef enum { T_VOID, T_BOOL, T_U64, T_SIZE, T_UNSIGNED, T_INT, T_STR } ctl_type_t;

typedef union ctl_value {
	bool b;
	uint64_t u64;
	size_t size;
	unsigned u;
	int i;
	const char *str;
} ctl_value_t;

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
static int get_slab_size(ctl_value_t *v)
{
	v->size = (size_t)zk_g.opt[ZK_OPT_SLAB_SIZE];
	return 0;
}
static int get_nslabs(ctl_value_t *v)
{
	v->u = (unsigned)zk_g.opt[ZK_OPT_NSLABS];
	return 0;
}
static int get_min_bytes(ctl_value_t *v)
{
	v->size = zk_g.min_bytes;
	return 0;
}
static int get_promote_bytes(ctl_value_t *v)
{
	v->size = zk_g.promote_bytes;
	return 0;
}
static int get_thp(ctl_value_t *v)
{
	v->str = zk_opt_choice(ZK_OPT_THP, zk_g.opt[ZK_OPT_THP]);
	return 0;
}
static int get_small(ctl_value_t *v)
{
	v->str = zk_opt_choice(ZK_OPT_SMALL, zk_g.opt[ZK_OPT_SMALL]);
	return 0;
}

static zk_stats_t snapshot(void)
{
	zk_stats_t s = {.size = sizeof(s)};
	zk_stats_get(&s);
	return s;
}
static int get_overflow_count(ctl_value_t *v)
{
	v->u64 = snapshot().overflow_count;
	return 0;
}
static int get_overflow_bytes(ctl_value_t *v)
{
	v->u64 = snapshot().overflow_bytes;
	return 0;
}
static int get_resident(ctl_value_t *v)
{
	v->size = snapshot().resident_bytes;
	return 0;
}
static int get_slabs_in_use(ctl_value_t *v)
{
	v->u = snapshot().slabs_in_use;
	return 0;
}

static const ctl_entry_t ctl_table[] = {
    {"zk.phase.begin", T_VOID, do_begin},
    {"zk.phase.end", T_VOID, do_end},
    {"zk.phase.active", T_BOOL, get_active},
    {"zk.phase.epoch", T_U64, get_epoch},
    {"zk.thread.arena_flags", T_INT, get_arena_flags},
    {"zk.opt.slab_size", T_SIZE, get_slab_size},
    {"zk.opt.nslabs", T_UNSIGNED, get_nslabs},
    {"zk.opt.min_bytes", T_SIZE, get_min_bytes},
    {"zk.opt.promote_bytes", T_SIZE, get_promote_bytes},
    {"zk.opt.thp", T_STR, get_thp},
    {"zk.opt.small", T_STR, get_small},
    {"zk.stats.overflow_count", T_U64, get_overflow_count},
    {"zk.stats.overflow_bytes", T_U64, get_overflow_bytes},
    {"zk.stats.resident_bytes", T_SIZE, get_resident},
    {"zk.stats.slabs_in_use", T_UNSIGNED, get_slabs_in_use},
};

static size_t type_size(ctl_type_t t)
{
	switch (t) {
	case T_BOOL: return sizeof(bool);
	case T_U64: return sizeof(uint64_t);
	case T_SIZE: return sizeof(size_t);
	case T_UNSIGNED: return sizeof(unsigned);
	case T_INT: return sizeof(int);
	case T_STR: return sizeof(const char *);
	case T_VOID: break;
	}
	return 0;
}

int zk_mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp,
	       size_t newlen)
{
	if (name == NULL)
		return EFAULT;
	if (strncmp(name, "zk.", 3) != 0)
		return je_mallctl(name, oldp, oldlenp, newp, newlen);
	zk_init();
	const ctl_entry_t *e = NULL;
	for (size_t i = 0; i < sizeof(ctl_table) / sizeof(ctl_table[0]); i++)
		if (strcmp(ctl_table[i].name, name) == 0) {
			e = &ctl_table[i];
			break;
		}
	if (e == NULL)
		return ENOENT;
	if (e->type == T_VOID) {
		if (oldp != NULL || oldlenp != NULL || newp != NULL || newlen != 0)
			return EINVAL;
		return e->fn(NULL);
	}
	if (newp != NULL || newlen != 0)
		return EPERM;
	if (oldp == NULL && oldlenp == NULL)
		return 0; /* nothing asked for */
	size_t sz = type_size(e->type);
	if (oldp == NULL || oldlenp == NULL || *oldlenp != sz)
		return EINVAL;
	ctl_value_t v;
	int err = e->fn(&v);
	if (err == 0)
		memcpy(oldp, &v, sz);
	return err;
}
