/* ctl.c and stats.c: every zk_mallctl name, its errors, forwarding, the
 * writable options, the zk.stats.* table against zk_stats_t, and the
 * versioned stats struct. verbose.c: the banner and summary. */
#include "phase.h"

#include <check.h>

#include "testutil.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
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
	ck_assert_int_eq(zk_mallctl("zk.opt.region_size", &sz, &len, NULL, 0),
			 0);
	ck_assert_uint_eq(sz, zk_g.opt[ZK_OPT_REGION]);
	ck_assert_uint_ge(sz, 4ull << 30);
	unsigned n, je_n;
	len = sizeof(n);
	ck_assert_int_eq(zk_mallctl("zk.opt.arenas", &n, &len, NULL, 0), 0);
	ck_assert_int_eq(zk_mallctl("opt.narenas", &je_n, &len, NULL, 0), 0);
	ck_assert_uint_eq(n, je_n);
	ck_assert_int_eq(zk_mallctl("zk.opt.trim_phases", &n, &len, NULL, 0),
			 0);
	ck_assert_uint_eq(n, 4);
	len = sizeof(sz);
	ck_assert_int_eq(zk_mallctl("zk.opt.min_bytes", &sz, &len, NULL, 0), 0);
	ck_assert_uint_eq(sz, 0);
	const char *str;
	len = sizeof(str);
	ck_assert_int_eq(zk_mallctl("zk.opt.thp", &str, &len, NULL, 0), 0);
	ck_assert_str_eq(str, "never");
	bool b = true;
	len = sizeof(b);
	ck_assert_int_eq(zk_mallctl("zk.opt.check", &b, &len, NULL, 0), 0);
	ck_assert(!b);
	b = true;
	ck_assert_int_eq(zk_mallctl("zk.opt.verbose", &b, &len, NULL, 0), 0);
	ck_assert(!b);
	/* 0.1's names are gone */
	ck_assert_int_eq(zk_mallctl("zk.opt.slab_size", &sz, &len, NULL, 0),
			 ENOENT);
	ck_assert_int_eq(zk_mallctl("zk.opt.small", &str, &len, NULL, 0),
			 ENOENT);
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
	/* Read every name right after the snapshot and compare afterwards:
	 * Check's assertions allocate, and in a phase this thread's
	 * allocations move the pool's counters. */
	static unsigned char got[64][16];
	static int rc[64][3];
	zk_stats_t s = {.size = sizeof(s)};
	int src = zk_stats_get(&s);
	size_t off, fsz, tsz, n = 0;
	const char *name;
	for (; (name = zk_ctl_stat_row(n, &off, &fsz, &tsz)) && n < 64; n++) {
		size_t len = fsz;
		memset(got[n], 0xa5, sizeof(got[n]));
		rc[n][0] = zk_mallctl(name, got[n], &len, NULL, 0);
		len = fsz + 1;
		rc[n][1] = zk_mallctl(name, got[n] + 8, &len, NULL, 0);
		rc[n][2] = zk_mallctl(name, NULL, NULL, got[n], fsz);
	}
	ck_assert_int_eq(src, 0);
	for (size_t i = 0; i < n; i++) {
		name = zk_ctl_stat_row(i, &off, &fsz, &tsz);
		const unsigned char *want = (const unsigned char *)&s + off;
		ck_assert_msg(rc[i][0] == 0 && rc[i][1] == EINVAL &&
				  rc[i][2] == EPERM,
			      "%s: %d %d %d", name, rc[i][0], rc[i][1],
			      rc[i][2]);
		if (off == offsetof(zk_stats_t, resident_bytes)) {
			/* a measurement (mincore), not a counter: the kernel
			 * may map or drop a page in between */
			size_t a, b;
			memcpy(&a, got[i], sizeof(a));
			memcpy(&b, want, sizeof(b));
			ck_assert_uint_lt(a > b ? a - b : b - a, MiB);
			ck_assert_uint_ge(a, 4 * MiB);
			continue;
		}
		ck_assert_msg(memcmp(got[i], want, fsz) == 0, "%s differs",
			      name);
	}
	zk_free(p);
}
END_TEST

/* --------------------------------------------- writable options */

static int write_every_option(void *unused)
{
	(void)unused;
	size_t region = 512 * MiB, min = 1 * MiB, sz;
	unsigned n = 3, k = 2, u;
	const char *thp = "always", *str;
	size_t len;
	/* old and new together: the old value comes back */
	len = sizeof(sz);
	REQUIRE(zk_mallctl("zk.opt.region_size", &sz, &len, &region,
			   sizeof(region)) == 0);
	REQUIRE(sz >= 4ull << 30);
	REQUIRE(zk_mallctl("zk.opt.min_bytes", NULL, NULL, &min, sizeof(min)) ==
		0);
	REQUIRE(zk_mallctl("zk.opt.arenas", NULL, NULL, &n, sizeof(n)) == 0);
	REQUIRE(zk_mallctl("zk.opt.trim_phases", NULL, NULL, &k, sizeof(k)) ==
		0);
	REQUIRE(zk_mallctl("zk.opt.thp", NULL, NULL, &thp, sizeof(thp)) == 0);
	/* read back */
	len = sizeof(sz);
	REQUIRE(zk_mallctl("zk.opt.region_size", &sz, &len, NULL, 0) == 0 &&
		sz == region);
	REQUIRE(zk_mallctl("zk.opt.min_bytes", &sz, &len, NULL, 0) == 0 &&
		sz == min);
	len = sizeof(u);
	REQUIRE(zk_mallctl("zk.opt.arenas", &u, &len, NULL, 0) == 0 && u == 3);
	REQUIRE(zk_mallctl("zk.opt.trim_phases", &u, &len, NULL, 0) == 0 &&
		u == 2);
	len = sizeof(str);
	REQUIRE(zk_mallctl("zk.opt.thp", &str, &len, NULL, 0) == 0 &&
		strcmp(str, "always") == 0);
	/* they are in force: the region is laid out from them, and in a
	 * phase 1 MiB is pool memory while 512 KiB is not (explicit routing) */
	REQUIRE(zk_begin_phase() == 0);
	zk_stats_t s = tu_stats();
	REQUIRE(s.region_reserved && s.max_block == region && s.nslabs == 3);
	void *big = zk_malloc(min), *under = zk_malloc(min / 2);
	REQUIRE(zk_owns(big) && !zk_owns(under));
	zk_free(big);
	zk_free(under);
	/* after the first phase: EBUSY, nothing changes, no old value */
	size_t other = 128 * MiB;
	sz = 0;
	len = sizeof(sz);
	REQUIRE(zk_mallctl("zk.opt.region_size", &sz, &len, &other,
			   sizeof(other)) == EBUSY);
	REQUIRE(sz == 0);
	REQUIRE(zk_mallctl("zk.opt.region_size", &sz, &len, NULL, 0) == 0 &&
		sz == region);
	zk_end_phase();
	bool on = true;
	REQUIRE(zk_mallctl("zk.opt.verbose", NULL, NULL, &on, sizeof(on)) ==
		EBUSY);
	return 0;
}

START_TEST(options_are_writable_before_the_first_phase)
{
	char err[2048] = "";
	const char *env[] = {"ZK_ALLOC_REGION_GB", "ZK_ALLOC_MIN_BYTES",
			     "ZK_ALLOC_ARENAS", NULL};
	int rc = tu_run_child(write_every_option, NULL, env, err, sizeof(err));
	ck_assert_msg(rc == 0, "child %d: %s", rc, err);
}
END_TEST

static int bad_writes_change_nothing(void *unused)
{
	(void)unused;
	size_t sz, dflt, len = sizeof(dflt);
	REQUIRE(zk_mallctl("zk.opt.region_size", &dflt, &len, NULL, 0) == 0);
	/* out of each row's range */
	size_t tiny = 1 * MiB, huge = (size_t)8193 << 30;
	REQUIRE(zk_mallctl("zk.opt.region_size", NULL, NULL, &tiny,
			   sizeof(tiny)) == EINVAL);
	REQUIRE(zk_mallctl("zk.opt.region_size", NULL, NULL, &huge,
			   sizeof(huge)) == EINVAL);
	unsigned n0 = 0, n2000 = 2000, k65 = 65;
	REQUIRE(zk_mallctl("zk.opt.arenas", NULL, NULL, &n0, sizeof(n0)) ==
		EINVAL);
	REQUIRE(zk_mallctl("zk.opt.arenas", NULL, NULL, &n2000,
			   sizeof(n2000)) == EINVAL);
	REQUIRE(zk_mallctl("zk.opt.trim_phases", NULL, NULL, &k65,
			   sizeof(k65)) == EINVAL);
	/* enums: unknown text, NULL */
	const char *bad = "sometimes", *null = NULL;
	REQUIRE(zk_mallctl("zk.opt.thp", NULL, NULL, &bad, sizeof(bad)) ==
		EINVAL);
	REQUIRE(zk_mallctl("zk.opt.thp", NULL, NULL, &null, sizeof(null)) ==
		EINVAL);
	/* wrong length, missing buffer */
	uint32_t small = 64;
	REQUIRE(zk_mallctl("zk.opt.min_bytes", NULL, NULL, &small,
			   sizeof(small)) == EINVAL);
	REQUIRE(zk_mallctl("zk.opt.arenas", NULL, NULL, NULL, 4) == EINVAL);
	/* a bad write with a read: no old value copied */
	sz = 7;
	len = sizeof(sz);
	REQUIRE(zk_mallctl("zk.opt.region_size", &sz, &len, &tiny,
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
	REQUIRE(zk_mallctl("zk.opt.region_size", &sz, &len, NULL, 0) == 0 &&
		sz == dflt);
	REQUIRE(zk_mallctl("zk.opt.min_bytes", &sz, &len, NULL, 0) == 0 &&
		sz == 0);
	const char *str;
	len = sizeof(str);
	REQUIRE(zk_mallctl("zk.opt.thp", &str, &len, NULL, 0) == 0 &&
		strcmp(str, "never") == 0);
	return 0;
}

START_TEST(bad_option_writes)
{
	char err[2048] = "";
	const char *env[] = {"ZK_ALLOC_REGION_GB", "ZK_ALLOC_MIN_BYTES",
			     "ZK_ALLOC_THP", "ZK_ALLOC_ARENAS", NULL};
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
	char banner[64];
	snprintf(banner, sizeof(banner), "zkalloc %d.%d.%d: active, library",
		 ZK_VERSION_MAJOR, ZK_VERSION_MINOR, ZK_VERSION_PATCH);
	ck_assert_msg(count(err, banner) == 1, "%s", err);
	ck_assert_msg(strstr(err, "jemalloc 5.") != NULL, "%s", err);
	ck_assert_msg(strstr(err, "libjemalloc") != NULL, "%s", err);
	ck_assert_msg(strstr(err, "region_size=") != NULL, "%s", err);
	/* the reservation, with its real figures, when it happens */
	ck_assert_msg(count(err, "zkalloc: pool reserved: ") == 1, "%s", err);
	ck_assert_msg(count(err, "zkalloc: exit: 1 phases;") == 1, "%s", err);
	ck_assert_msg(strstr(err, "; 1 arenas, 1 thread binds;") != NULL, "%s",
		      err);
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
	ck_assert_uint_eq(s.slabs_in_use, 1); /* arenas created */
	ck_assert_uint_ge(s.resident_bytes, 4 * MiB);
	ck_assert_uint_eq(s.max_slab_resident, 0); /* unused since v3 */
	ck_assert_uint_eq(s.arenas_created, created + 1);
	ck_assert_uint_ge(s.live_bytes, 4 * MiB);
	ck_assert_uint_ge(s.top_bytes, s.live_bytes);
	ck_assert_uint_ge(s.committed_bytes, s.top_bytes);
	ck_assert_uint_gt(s.reserved_bytes, s.max_block);
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
