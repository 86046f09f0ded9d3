/* ctl.c and stats.c: every zk_mallctl name, its errors, forwarding, the
 * writable options, the zk.stats.* table against zk_stats_t, and the
 * versioned stats struct. verbose.c: the banner and summary. */
#include "phase.h"

#include <check.h>

#include "testutil.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <zkalloc.h>

/* ctl.c's stats table, row i (NULL past the end); test-only hook. */
const char *zk_ctl_stat_row(size_t i, size_t *offset, size_t *field_size,
			    size_t *type_bytes);

/* In a forked child (tu_run_child): fail with the line number. */
#define REQUIRE(c)                                                             \
	do {                                                                   \
		if (!(c)) {                                                    \
			fprintf(stderr, "line %d: %s\n", __LINE__, #c);        \
			return 1;                                              \
		}                                                              \
	} while (0)

#define MiB ((size_t)1 << 20)

static void teardown(void)
{
	zk_end_phase();
}

START_TEST(phase_names)
{
	bool active = true;
	size_t len = sizeof(active);
	ck_assert_int_eq(zk_mallctl("zk.phase.active", &active, &len, NULL, 0),
			 0);
	ck_assert(!active);
	uint64_t e0, e1;
	len = sizeof(e0);
	ck_assert_int_eq(zk_mallctl("zk.phase.epoch", &e0, &len, NULL, 0), 0);
	ck_assert_int_eq(zk_mallctl("zk.phase.begin", NULL, NULL, NULL, 0), 0);
	ck_assert_int_eq(zk_mallctl("zk.phase.begin", NULL, NULL, NULL, 0),
			 EBUSY);
	len = sizeof(active);
	ck_assert_int_eq(zk_mallctl("zk.phase.active", &active, &len, NULL, 0),
			 0);
	ck_assert(active);
	len = sizeof(e1);
	ck_assert_int_eq(zk_mallctl("zk.phase.epoch", &e1, &len, NULL, 0), 0);
	ck_assert_uint_eq(e1, e0 + 1);
	int flags = 0;
	len = sizeof(flags);
	ck_assert_int_eq(
	    zk_mallctl("zk.thread.arena_flags", &flags, &len, NULL, 0), 0);
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
	ck_assert_int_eq(zk_mallctl("zk.opt.promote_bytes", &sz, &len, NULL, 0),
			 0);
	ck_assert_uint_eq(sz, 0);
	const char *str;
	len = sizeof(str);
	ck_assert_int_eq(zk_mallctl("zk.opt.thp", &str, &len, NULL, 0), 0);
	ck_assert_str_eq(str, "never");
	ck_assert_int_eq(zk_mallctl("zk.opt.small", &str, &len, NULL, 0), 0);
	ck_assert_str_eq(str, "resident");
	bool b = true;
	len = sizeof(b);
	ck_assert_int_eq(zk_mallctl("zk.opt.check", &b, &len, NULL, 0), 0);
	ck_assert(!b);
	b = true;
	ck_assert_int_eq(zk_mallctl("zk.opt.verbose", &b, &len, NULL, 0), 0);
	ck_assert(!b);
}
END_TEST

START_TEST(version_name)
{
	const char *v = NULL;
	size_t len = sizeof(v);
	ck_assert_int_eq(zk_mallctl("zk.version", &v, &len, NULL, 0), 0);
	char want[32];
	snprintf(want, sizeof(want), "%d.%d.%d", ZK_VERSION_MAJOR,
		 ZK_VERSION_MINOR, ZK_VERSION_PATCH);
	ck_assert_str_eq(v, want);
	ck_assert_int_eq(zk_mallctl("zk.version", NULL, NULL, &v, sizeof(v)),
			 EPERM);
}
END_TEST

/* Every zk_stats_t field after .size has exactly one row, of its size, in
 * struct order: a field appended without a row fails here. */
START_TEST(stats_table_covers_the_struct)
{
	size_t end = offsetof(zk_stats_t, version), off, fsz, tsz, i;
	const char *name;
	for (i = 0; (name = zk_ctl_stat_row(i, &off, &fsz, &tsz)) != NULL;
	     i++) {
		ck_assert_msg(fsz == tsz, "%s: field %zu bytes, type %zu", name,
			      fsz, tsz);
		ck_assert_msg(off >= end && off - end < fsz,
			      "%s at %zu: a field before it (from %zu) has no "
			      "row",
			      name, off, end);
		end = off + fsz;
	}
	ck_assert_uint_gt(i, 10);
	ck_assert_msg(sizeof(zk_stats_t) - end < 8,
		      "zk_stats_t has fields after byte %zu without a row",
		      end);
}
END_TEST

/* Each name reads the same figure as zk_stats_get (nothing changes in
 * between: no allocation, the phase held still). */
START_TEST(stats_names_read_the_struct)
{
	ck_assert_int_eq(zk_begin_phase(), 0);
	char *p = zk_malloc(4 * MiB);
	memset(p, 1, 4 * MiB);
	zk_stats_t s = {.size = sizeof(s)};
	ck_assert_int_eq(zk_stats_get(&s), 0);
	size_t off, fsz, tsz;
	const char *name;
	for (size_t i = 0; (name = zk_ctl_stat_row(i, &off, &fsz, &tsz)); i++) {
		unsigned char buf[16], *want = (unsigned char *)&s + off;
		size_t len = fsz;
		memset(buf, 0xa5, sizeof(buf));
		ck_assert_int_eq(zk_mallctl(name, buf, &len, NULL, 0), 0);
		ck_assert_msg(memcmp(buf, want, fsz) == 0, "%s differs", name);
		len = fsz + 1;
		ck_assert_int_eq(zk_mallctl(name, buf, &len, NULL, 0), EINVAL);
		ck_assert_int_eq(zk_mallctl(name, NULL, NULL, buf, fsz), EPERM);
	}
	size_t msr, len = sizeof(msr);
	ck_assert_int_eq(
	    zk_mallctl("zk.stats.max_slab_resident", &msr, &len, NULL, 0), 0);
	ck_assert_uint_ge(msr, 4 * MiB);
	zk_free(p);
}
END_TEST

/* --------------------------------------------- writable options */

static int write_every_option(void *unused)
{
	(void)unused;
	size_t slab = 64 * MiB, min = 1 * MiB, promote = 2 * MiB, sz;
	unsigned n = 3, u;
	const char *thp = "always", *small = "ordinary", *str;
	size_t len;
	/* old and new together: the old value comes back */
	len = sizeof(sz);
	REQUIRE(zk_mallctl("zk.opt.slab_size", &sz, &len, &slab,
			   sizeof(slab)) == 0);
	REQUIRE(sz == 8ull << 30);
	REQUIRE(zk_mallctl("zk.opt.min_bytes", NULL, NULL, &min, sizeof(min)) ==
		0);
	REQUIRE(zk_mallctl("zk.opt.promote_bytes", NULL, NULL, &promote,
			   sizeof(promote)) == 0);
	REQUIRE(zk_mallctl("zk.opt.nslabs", NULL, NULL, &n, sizeof(n)) == 0);
	REQUIRE(zk_mallctl("zk.opt.thp", NULL, NULL, &thp, sizeof(thp)) == 0);
	REQUIRE(zk_mallctl("zk.opt.small", NULL, NULL, &small, sizeof(small)) ==
		0);
	/* read back */
	len = sizeof(sz);
	REQUIRE(zk_mallctl("zk.opt.slab_size", &sz, &len, NULL, 0) == 0 &&
		sz == slab);
	REQUIRE(zk_mallctl("zk.opt.min_bytes", &sz, &len, NULL, 0) == 0 &&
		sz == min);
	REQUIRE(zk_mallctl("zk.opt.promote_bytes", &sz, &len, NULL, 0) == 0 &&
		sz == promote);
	len = sizeof(u);
	REQUIRE(zk_mallctl("zk.opt.nslabs", &u, &len, NULL, 0) == 0 && u == 3);
	len = sizeof(str);
	REQUIRE(zk_mallctl("zk.opt.thp", &str, &len, NULL, 0) == 0 &&
		strcmp(str, "always") == 0);
	REQUIRE(zk_mallctl("zk.opt.small", &str, &len, NULL, 0) == 0 &&
		strcmp(str, "ordinary") == 0);
	/* they are in force: the region is laid out from them, and 1 MiB is
	 * now phase memory while 512 KiB is not */
	REQUIRE(zk_begin_phase() == 0);
	zk_stats_t s = tu_stats();
	REQUIRE(s.region_reserved && s.slab_size == slab && s.nslabs == 3);
	/* small = ordinary: no resident region */
	REQUIRE(s.small_resident_bytes == 0 && zk_g.small.base == NULL);
	void *big = zk_malloc(min), *under = zk_malloc(min / 2);
	REQUIRE(zk_owns(big) && !zk_owns(under));
	zk_free(big);
	zk_free(under);
	/* after the first phase: EBUSY, nothing changes, no old value */
	size_t other = 128 * MiB;
	sz = 0;
	len = sizeof(sz);
	REQUIRE(zk_mallctl("zk.opt.slab_size", &sz, &len, &other,
			   sizeof(other)) == EBUSY);
	REQUIRE(sz == 0);
	REQUIRE(zk_mallctl("zk.opt.slab_size", &sz, &len, NULL, 0) == 0 &&
		sz == slab);
	zk_end_phase();
	bool on = true;
	REQUIRE(zk_mallctl("zk.opt.verbose", NULL, NULL, &on, sizeof(on)) ==
		EBUSY);
	return 0;
}

START_TEST(options_are_writable_before_the_first_phase)
{
	char err[2048] = "";
	const char *env[] = {"ZK_ALLOC_SLAB_GB", "ZK_ALLOC_MIN_BYTES",
			     "ZK_ALLOC_SLABS", NULL};
	int rc = tu_run_child(write_every_option, NULL, env, err, sizeof(err));
	ck_assert_msg(rc == 0, "child %d: %s", rc, err);
}
END_TEST

static int bad_writes_change_nothing(void *unused)
{
	(void)unused;
	size_t sz, len;
	/* out of each row's range */
	size_t tiny = 1 * MiB, huge = (size_t)2048 << 30, zero = 0;
	REQUIRE(zk_mallctl("zk.opt.slab_size", NULL, NULL, &tiny,
			   sizeof(tiny)) == EINVAL);
	REQUIRE(zk_mallctl("zk.opt.slab_size", NULL, NULL, &huge,
			   sizeof(huge)) == EINVAL);
	REQUIRE(zk_mallctl("zk.opt.min_bytes", NULL, NULL, &zero,
			   sizeof(zero)) == EINVAL);
	unsigned n0 = 0, n2000 = 2000;
	REQUIRE(zk_mallctl("zk.opt.nslabs", NULL, NULL, &n0, sizeof(n0)) ==
		EINVAL);
	REQUIRE(zk_mallctl("zk.opt.nslabs", NULL, NULL, &n2000,
			   sizeof(n2000)) == EINVAL);
	/* enums: unknown text, NULL */
	const char *bad = "sometimes", *null = NULL;
	REQUIRE(zk_mallctl("zk.opt.thp", NULL, NULL, &bad, sizeof(bad)) ==
		EINVAL);
	REQUIRE(zk_mallctl("zk.opt.small", NULL, NULL, &null, sizeof(null)) ==
		EINVAL);
	/* wrong length, missing buffer */
	uint32_t small = 64;
	REQUIRE(zk_mallctl("zk.opt.min_bytes", NULL, NULL, &small,
			   sizeof(small)) == EINVAL);
	REQUIRE(zk_mallctl("zk.opt.nslabs", NULL, NULL, NULL, 4) == EINVAL);
	/* a bad write with a read: no old value copied */
	sz = 7;
	len = sizeof(sz);
	REQUIRE(zk_mallctl("zk.opt.slab_size", &sz, &len, &tiny,
			   sizeof(tiny)) == EINVAL);
	REQUIRE(sz == 7);
	/* a bool holds 0 or 1 */
	unsigned char two = 2;
	REQUIRE(zk_mallctl("zk.opt.verbose", NULL, NULL, &two, 1) == EINVAL);
	/* checked mode is fixed at load */
	bool on = true;
	REQUIRE(zk_mallctl("zk.opt.check", NULL, NULL, &on, sizeof(on)) ==
		EPERM);
	/* all still the defaults */
	REQUIRE(zk_mallctl("zk.opt.slab_size", &sz, &len, NULL, 0) == 0 &&
		sz == 8ull << 30);
	REQUIRE(zk_mallctl("zk.opt.min_bytes", &sz, &len, NULL, 0) == 0 &&
		sz == zk_g.min_bytes && sz > 0);
	const char *str;
	len = sizeof(str);
	REQUIRE(zk_mallctl("zk.opt.thp", &str, &len, NULL, 0) == 0 &&
		strcmp(str, "never") == 0);
	REQUIRE(zk_mallctl("zk.opt.small", &str, &len, NULL, 0) == 0 &&
		strcmp(str, "resident") == 0);
	/* and the slab size still rounds like the variable: 100 MiB -> 2 MiB
	 * multiple (already one), 17 MiB + 1 -> 18 MiB */
	size_t odd = 17 * MiB + 1;
	REQUIRE(zk_mallctl("zk.opt.slab_size", NULL, NULL, &odd, sizeof(odd)) ==
		0);
	len = sizeof(sz);
	REQUIRE(zk_mallctl("zk.opt.slab_size", &sz, &len, NULL, 0) == 0 &&
		sz == 18 * MiB);
	return 0;
}

START_TEST(bad_option_writes)
{
	char err[2048] = "";
	const char *env[] = {"ZK_ALLOC_SLAB_GB", "ZK_ALLOC_MIN_BYTES",
			     "ZK_ALLOC_THP", "ZK_ALLOC_SMALL", NULL};
	int rc = tu_run_child(bad_writes_change_nothing, NULL, env, err,
			      sizeof(err));
	ck_assert_msg(rc == 0, "child %d: %s", rc, err);
}
END_TEST

/* ------------------------------------------------------------ verbose */

static int verbose_by_mallctl(void *unused)
{
	(void)unused;
	bool on = true;
	REQUIRE(zk_mallctl("zk.opt.verbose", NULL, NULL, &on, sizeof(on)) == 0);
	/* a second switch-on prints nothing more */
	REQUIRE(zk_mallctl("zk.opt.verbose", NULL, NULL, &on, sizeof(on)) == 0);
	REQUIRE(zk_begin_phase() == 0);
	void *p = zk_malloc(3 * MiB);
	memset(p, 1, 3 * MiB);
	zk_free(p);
	zk_end_phase();
	exit(0); /* the summary is printed at exit */
}

static int quiet(void *unused)
{
	(void)unused;
	REQUIRE(zk_begin_phase() == 0);
	zk_end_phase();
	exit(0);
}

static int count(const char *hay, const char *needle)
{
	int n = 0;
	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

START_TEST(verbose_banner_and_summary)
{
	char err[4096] = "";
	int rc = tu_run_child(verbose_by_mallctl, NULL, NULL, err, sizeof(err));
	ck_assert_msg(rc == 0, "child %d: %s", rc, err);
	ck_assert_msg(count(err, "zkalloc 0.1.0: active, library") == 1, "%s",
		      err);
	ck_assert_msg(strstr(err, "jemalloc 5.") != NULL, "%s", err);
	ck_assert_msg(strstr(err, "libjemalloc") != NULL, "%s", err);
	ck_assert_msg(strstr(err, "slab_size=8589934592 ") != NULL, "%s", err);
	ck_assert_msg(count(err, "zkalloc: exit: 1 phases;") == 1, "%s", err);
	ck_assert_msg(strstr(err, "arenas 1 created") != NULL, "%s", err);
	/* off: nothing at all */
	err[0] = '\0';
	rc = tu_run_child(quiet, NULL, NULL, err, sizeof(err));
	ck_assert_int_eq(rc, 0);
	ck_assert_msg(err[0] == '\0', "unexpected output: %s", err);
}
END_TEST

START_TEST(stats_names_follow_the_struct)
{
	uint64_t created = tu_stats().arenas_created;
	ck_assert_int_eq(zk_begin_phase(), 0);
	char *p = zk_malloc(4 * MiB);
	memset(p, 1, 4 * MiB);
	zk_stats_t s = {.size = sizeof(s)};
	ck_assert_int_eq(zk_stats_get(&s), 0);
	ck_assert_uint_eq(s.version, ZK_STATS_VERSION);
	ck_assert_uint_eq(s.size, sizeof(s));
	ck_assert(s.region_reserved && s.phase_active);
	ck_assert_uint_eq(s.slabs_in_use, 1);
	ck_assert_uint_ge(s.resident_bytes, 4 * MiB);
	ck_assert_uint_eq(s.max_slab_resident, s.resident_bytes);
	ck_assert_uint_eq(s.arenas_created, created + 1);
	size_t res, len = sizeof(res);
	ck_assert_int_eq(
	    zk_mallctl("zk.stats.resident_bytes", &res, &len, NULL, 0), 0);
	ck_assert_uint_ge(res, 4 * MiB);
	unsigned used;
	len = sizeof(used);
	ck_assert_int_eq(
	    zk_mallctl("zk.stats.slabs_in_use", &used, &len, NULL, 0), 0);
	ck_assert_uint_eq(used, 1);
	uint64_t oc = 99, ob = 99;
	len = sizeof(oc);
	ck_assert_int_eq(
	    zk_mallctl("zk.stats.overflow_count", &oc, &len, NULL, 0), 0);
	ck_assert_int_eq(
	    zk_mallctl("zk.stats.overflow_bytes", &ob, &len, NULL, 0), 0);
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
	ck_assert_int_eq(zk_mallctl("zk.phase.begin.x", NULL, NULL, NULL, 0),
			 ENOENT);
	ck_assert_int_eq(zk_mallctl("zk.", NULL, NULL, NULL, 0), ENOENT);
	/* void names take no arguments */
	bool b = false;
	size_t len = sizeof(b);
	ck_assert_int_eq(zk_mallctl("zk.phase.begin", &b, &len, NULL, 0),
			 EINVAL);
	ck_assert_int_eq(
	    zk_mallctl("zk.phase.begin", NULL, NULL, &b, sizeof(b)), EINVAL);
	ck_assert_int_eq(zk_mallctl("zk.phase.end", NULL, NULL, NULL, 1),
			 EINVAL);
	ck_assert(!zk_phase_active());
	ck_assert_uint_eq(zk_phase_epoch(), e0);
	/* read-only values refuse writes, even together with a read */
	uint64_t v = 7;
	ck_assert_int_eq(
	    zk_mallctl("zk.phase.epoch", NULL, NULL, &v, sizeof(v)), EPERM);
	len = sizeof(v);
	ck_assert_int_eq(zk_mallctl("zk.phase.epoch", &v, &len, &v, sizeof(v)),
			 EPERM);
	ck_assert_uint_eq(v, 7);
	ck_assert_int_eq(zk_mallctl("zk.opt.check", NULL, NULL, NULL, 4),
			 EPERM);
	ck_assert_int_eq(zk_mallctl("zk.stats.epoch", NULL, NULL, NULL, 4),
			 EPERM);
	/* wrong lengths and missing buffers: EINVAL, buffer untouched */
	uint32_t small = 0xdeadbeef;
	len = sizeof(small);
	ck_assert_int_eq(zk_mallctl("zk.phase.epoch", &small, &len, NULL, 0),
			 EINVAL);
	ck_assert_uint_eq(small, 0xdeadbeef);
	len = sizeof(uint64_t);
	ck_assert_int_eq(zk_mallctl("zk.phase.epoch", NULL, &len, NULL, 0),
			 EINVAL);
	ck_assert_int_eq(zk_mallctl("zk.phase.epoch", &v, NULL, NULL, 0),
			 EINVAL);
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
	ck_assert_int_eq(zk_mallctl("no.such.name", NULL, NULL, NULL, 0),
			 ENOENT);
	unsigned narenas;
	len = sizeof(narenas);
	ck_assert_int_eq(zk_mallctl("arenas.narenas", &narenas, &len, NULL, 0),
			 0);
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
	/* First, so that even with CK_FORK=no no phase has begun yet (each
	 * also runs in a child of its own). */
	TCase *opts = tcase_create("writable-options");
	tcase_add_test(opts, options_are_writable_before_the_first_phase);
	tcase_add_test(opts, bad_option_writes);
	tcase_add_test(opts, verbose_banner_and_summary);
	suite_add_tcase(s, opts);
	TCase *tc = tcase_create("names");
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_add_test(tc, phase_names);
	tcase_add_test(tc, option_names);
	tcase_add_test(tc, version_name);
	tcase_add_test(tc, stats_table_covers_the_struct);
	tcase_add_test(tc, stats_names_read_the_struct);
	tcase_add_test(tc, stats_names_follow_the_struct);
	tcase_add_test(tc, errors_change_nothing);
	tcase_add_test(tc, other_names_go_to_jemalloc);
	tcase_add_test(tc, stats_struct_is_versioned);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
