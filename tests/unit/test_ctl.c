/* ctl.c and stats.c: every zk_mallctl name, its errors, forwarding, and
 * the versioned stats struct. */
#include "phase.h"

#include <check.h>

#include "testutil.h"
#include <errno.h>
#include <string.h>
#include <zkalloc.h>

#define MiB ((size_t)1 << 20)

static void teardown(void)
{
	zk_end_phase();
}

START_TEST(phase_names)
{
	bool active = true;
	size_t len = sizeof(active);
	ck_assert_int_eq(zk_mallctl("zk.phase.active", &active, &len, NULL, 0), 0);
	ck_assert(!active);
	uint64_t e0, e1;
	len = sizeof(e0);
	ck_assert_int_eq(zk_mallctl("zk.phase.epoch", &e0, &len, NULL, 0), 0);
	ck_assert_int_eq(zk_mallctl("zk.phase.begin", NULL, NULL, NULL, 0), 0);
	ck_assert_int_eq(zk_mallctl("zk.phase.begin", NULL, NULL, NULL, 0), EBUSY);
	len = sizeof(active);
	ck_assert_int_eq(zk_mallctl("zk.phase.active", &active, &len, NULL, 0), 0);
	ck_assert(active);
	len = sizeof(e1);
	ck_assert_int_eq(zk_mallctl("zk.phase.epoch", &e1, &len, NULL, 0), 0);
	ck_assert_uint_eq(e1, e0 + 1);
	int flags = 0;
	len = sizeof(flags);
	ck_assert_int_eq(zk_mallctl("zk.thread.arena_flags", &flags, &len, NULL, 0), 0);
	ck_assert_int_eq(flags, zk_arena_flags());
	ck_assert_int_ne(flags, 0);
	ck_assert_int_eq(zk_mallctl("zk.phase.end", NULL, NULL, NULL, 0), 0);
	ck_assert_int_eq(zk_mallctl("zk.phase.end", NULL, NULL, NULL, 0), 0);
	ck_assert(!zk_phase_active());
}
END_TEST

START_TEST(option_names)
{
	size_t sz, len = sizeof(sz);
	ck_assert_int_eq(zk_mallctl("zk.opt.slab_size", &sz, &len, NULL, 0), 0);
	ck_assert_uint_eq(sz, 8ull << 30);
	unsigned n;
	len = sizeof(n);
	ck_assert_int_eq(zk_mallctl("zk.opt.nslabs", &n, &len, NULL, 0), 0);
	ck_assert_uint_ge(n, 5);
	len = sizeof(sz);
	ck_assert_int_eq(zk_mallctl("zk.opt.min_bytes", &sz, &len, NULL, 0), 0);
	ck_assert_uint_eq(sz, zk_g.min_bytes);
	ck_assert_int_eq(zk_mallctl("zk.opt.promote_bytes", &sz, &len, NULL, 0), 0);
	ck_assert_uint_eq(sz, 0);
	const char *str;
	len = sizeof(str);
	ck_assert_int_eq(zk_mallctl("zk.opt.thp", &str, &len, NULL, 0), 0);
	ck_assert_str_eq(str, "never");
	ck_assert_int_eq(zk_mallctl("zk.opt.small", &str, &len, NULL, 0), 0);
	ck_assert_str_eq(str, "resident");
}
END_TEST

START_TEST(stats_names_follow_the_struct)
{
	ck_assert_int_eq(zk_begin_phase(), 0);
	char *p = zk_malloc(8 * MiB);
	memset(p, 1, 8 * MiB);
	zk_stats_t s = {.size = sizeof(s)};
	ck_assert_int_eq(zk_stats_get(&s), 0);
	ck_assert_uint_eq(s.version, ZK_STATS_VERSION);
	ck_assert_uint_eq(s.size, sizeof(s));
	ck_assert(s.region_reserved && s.phase_active);
	ck_assert_uint_eq(s.slabs_in_use, 1);
	ck_assert_uint_ge(s.resident_bytes, 8 * MiB);
	ck_assert_uint_eq(s.max_slab_resident, s.resident_bytes);
	ck_assert_uint_eq(s.arenas_created, 1);
	size_t res, len = sizeof(res);
	ck_assert_int_eq(zk_mallctl("zk.stats.resident_bytes", &res, &len, NULL, 0), 0);
	ck_assert_uint_ge(res, 8 * MiB);
	unsigned used;
	len = sizeof(used);
	ck_assert_int_eq(zk_mallctl("zk.stats.slabs_in_use", &used, &len, NULL, 0), 0);
	ck_assert_uint_eq(used, 1);
	uint64_t oc = 99, ob = 99;
	len = sizeof(oc);
	ck_assert_int_eq(zk_mallctl("zk.stats.overflow_count", &oc, &len, NULL, 0), 0);
	ck_assert_int_eq(zk_mallctl("zk.stats.overflow_bytes", &ob, &len, NULL, 0), 0);
	ck_assert_uint_eq(oc, 0);
	ck_assert_uint_eq(ob, 0);
	zk_free(p);
}
END_TEST

START_TEST(errors_change_nothing)
{
	uint64_t e0 = zk_phase_epoch();
	ck_assert_int_eq(zk_mallctl(NULL, NULL, NULL, NULL, 0), EFAULT);
	ck_assert_int_eq(zk_mallctl("zk.nope", NULL, NULL, NULL, 0), ENOENT);
	ck_assert_int_eq(zk_mallctl("zk.phase", NULL, NULL, NULL, 0), ENOENT);
	ck_assert_int_eq(zk_mallctl("zk.phase.begin.x", NULL, NULL, NULL, 0), ENOENT);
	ck_assert_int_eq(zk_mallctl("zk.", NULL, NULL, NULL, 0), ENOENT);
	/* void names take no arguments */
	bool b = false;
	size_t len = sizeof(b);
	ck_assert_int_eq(zk_mallctl("zk.phase.begin", &b, &len, NULL, 0), EINVAL);
	ck_assert_int_eq(zk_mallctl("zk.phase.begin", NULL, NULL, &b, sizeof(b)), EINVAL);
	ck_assert_int_eq(zk_mallctl("zk.phase.end", NULL, NULL, NULL, 1), EINVAL);
	ck_assert(!zk_phase_active());
	ck_assert_uint_eq(zk_phase_epoch(), e0);
	/* read-only values refuse writes, even together with a read */
	uint64_t v = 7;
	ck_assert_int_eq(zk_mallctl("zk.phase.epoch", NULL, NULL, &v, sizeof(v)), EPERM);
	len = sizeof(v);
	ck_assert_int_eq(zk_mallctl("zk.phase.epoch", &v, &len, &v, sizeof(v)), EPERM);
	ck_assert_uint_eq(v, 7);
	ck_assert_int_eq(zk_mallctl("zk.opt.nslabs", NULL, NULL, NULL, 4), EPERM);
	/* wrong lengths and missing buffers: EINVAL, buffer untouched */
	uint32_t small = 0xdeadbeef;
	len = sizeof(small);
	ck_assert_int_eq(zk_mallctl("zk.phase.epoch", &small, &len, NULL, 0), EINVAL);
	ck_assert_uint_eq(small, 0xdeadbeef);
	len = sizeof(uint64_t);
	ck_assert_int_eq(zk_mallctl("zk.phase.epoch", NULL, &len, NULL, 0), EINVAL);
	ck_assert_int_eq(zk_mallctl("zk.phase.epoch", &v, NULL, NULL, 0), EINVAL);
	/* asking for nothing is fine */
	ck_assert_int_eq(zk_mallctl("zk.phase.epoch", NULL, NULL, NULL, 0), 0);
	ck_assert_uint_eq(zk_phase_epoch(), e0);
}
END_TEST

START_TEST(other_names_go_to_jemalloc)
{
	const char *version;
	size_t len = sizeof(version);
	ck_assert_int_eq(zk_mallctl("version", &version, &len, NULL, 0), 0);
	ck_assert_int_eq(strncmp(version, "5.", 2), 0);
	ck_assert_int_eq(zk_mallctl("no.such.name", NULL, NULL, NULL, 0), ENOENT);
	unsigned narenas;
	len = sizeof(narenas);
	ck_assert_int_eq(zk_mallctl("arenas.narenas", &narenas, &len, NULL, 0), 0);
	ck_assert_uint_ge(narenas, 1);
}
END_TEST

/* A caller built against an older, smaller zk_stats_t. */
START_TEST(stats_struct_is_versioned)
{
	struct {
		size_t size;
		uint32_t version;
		bool region_reserved;
	} old = {.size = sizeof(old), .version = 0};
	ck_assert_int_eq(zk_stats_get((zk_stats_t *)&old), 0);
	ck_assert_uint_eq(old.size, sizeof(old));
	ck_assert_uint_eq(old.version, ZK_STATS_VERSION);
	/* bigger than ours (a newer caller): filled to our size, rest kept */
	struct {
		zk_stats_t s;
		uint64_t future;
	} big = {.s = {.size = sizeof(big)}, .future = 42};
	ck_assert_int_eq(zk_stats_get(&big.s), 0);
	ck_assert_uint_eq(big.future, 42);
	ck_assert_uint_eq(big.s.size, sizeof(big));
	zk_stats_t tiny = {.size = 4};
	ck_assert_int_eq(zk_stats_get(&tiny), EINVAL);
	ck_assert_int_eq(zk_stats_get(NULL), EINVAL);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("ctl");
	TCase *tc = tcase_create("names");
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_add_test(tc, phase_names);
	tcase_add_test(tc, option_names);
	tcase_add_test(tc, stats_names_follow_the_struct);
	tcase_add_test(tc, errors_change_nothing);
	tcase_add_test(tc, other_names_go_to_jemalloc);
	tcase_add_test(tc, stats_struct_is_versioned);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
