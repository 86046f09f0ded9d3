/*
 * Bad input:
 *  - every ZK_ALLOC_* variable of 0.2's table (src/options.c) with
 *    garbage, signs, spaces, zero, huge and overflowing values: each
 *    prints exactly one warning naming the variable and the value, keeps
 *    the default, and changes nothing else (a valid companion variable
 *    still takes effect);
 *  - each variable 0.2 retired (ZK_ALLOC_SLAB_GB, SLABS, SHARED_BYTES,
 *    PROMOTE_BYTES, SMALL): exactly one "no longer used" warning, nothing
 *    changed;
 *  - zk_mallctl over every name of 0.2's tables (src/ctl.c: actions,
 *    options, one per zk_stats_t field) with NULL and wrong-sized buffers,
 *    writes to read-only names, out-of-range values, and unknown names:
 *    each returns its documented error and changes no state and no byte
 *    of the caller's buffers; options are writable before the first
 *    phase only;
 *  - zk_free/zk_realloc of blocks jemalloc made directly.
 */
#define JEMALLOC_NO_DEMANGLE
#include "stress_util.h"

#include <zkalloc.h>

#include <check.h>
#include <errno.h>
#include <jemalloc/jemalloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char err[1 << 14];

/* ------------------------------------------------------ environment */

/* The child prints every option as zkalloc sees it, then uses a phase. */
static int print_options(void *arg)
{
	(void)arg;
	size_t region, minb, len;
	unsigned arenas, trim;
	const char *thp;
	bool check, verbose;
#define GET(name, var)                                                         \
	len = sizeof(var);                                                     \
	if (zk_mallctl(name, &var, &len, NULL, 0) != 0)                        \
		return 2;
	GET("zk.opt.region_size", region);
	GET("zk.opt.arenas", arenas);
	GET("zk.opt.min_bytes", minb);
	GET("zk.opt.thp", thp);
	GET("zk.opt.check", check);
	GET("zk.opt.verbose", verbose);
	GET("zk.opt.trim_phases", trim);
#undef GET
	if (zk_begin_phase() != 0)
		return 3;
	void *p = zk_malloc(4 << 20); /* >= every min_bytes used here */
	if (p == NULL || !zk_owns(p))
		return 4;
	zk_free(p);
	zk_end_phase();
	fprintf(stderr,
		"OPTS region=%zu arenas=%u min=%zu thp=%s check=%d verbose=%d "
		"trim=%u\n",
		region, arenas, minb, thp, check, verbose, trim);
	return 0;
}

static const char *const vars[] = {"ZK_ALLOC_REGION_GB",   "ZK_ALLOC_ARENAS",
				   "ZK_ALLOC_MIN_BYTES",   "ZK_ALLOC_THP",
				   "ZK_ALLOC_CHECK",	   "ZK_ALLOC_VERBOSE",
				   "ZK_ALLOC_TRIM_PHASES", NULL};

static const char *const retired[] = {
    "ZK_ALLOC_SLAB_GB",	      "ZK_ALLOC_SLABS", "ZK_ALLOC_SHARED_BYTES",
    "ZK_ALLOC_PROMOTE_BYTES", "ZK_ALLOC_SMALL", NULL};

/* Invalid for every variable. */
static const char *const bad_all[] = {"garbage",
				      "",
				      " ",
				      "-1",
				      "+1",
				      "-0",
				      "0x10",
				      "1e3",
				      "12abc",
				      "nan",
				      "inf",
				      "1.5.2",
				      "\t8",
				      "8 ",
				      " 8",
				      "18446744073709551616",
				      "99999999999999999999999999999999",
				      "-18446744073709551615",
				      "\xd9\xa3",
				      "8\n",
				      "1,5",
				      NULL};

/* Invalid for one variable: zero, out of range, wrong names. */
static const char *const *bad_for(const char *var)
{
	static const char *const region[] = {
	    "0", "0.0", "0.001", "0.06", "8193", "1000000000.5",
	    ".", "0.",	"..5",	 "5..",	 "1.5G", NULL};
	static const char *const arenas[] = {
	    "0", "1025", "4294967296", "4294967297", "1.5", "8G", "1K", NULL};
	static const char *const min_bytes[] = {
	    "0x",  "4611686018427387905", "17179869184G", "5E", "8T",
	    "1KK", "16777216P",		  "1.5M",	  "M",	NULL};
	static const char *const thp[] = {"0",	 "1",	    "Always", "NEVER",
					  "yes", "madvise", "never ", NULL};
	static const char *const bool_[] = {"2",   "true", "01", "on",
					    "yes", "00",   "1 ", NULL};
	static const char *const trim[] = {"0",	  "65", "4294967297",
					   "1.5", "4K", NULL};
	if (!strcmp(var, "ZK_ALLOC_REGION_GB"))
		return region;
	if (!strcmp(var, "ZK_ALLOC_ARENAS"))
		return arenas;
	if (!strcmp(var, "ZK_ALLOC_MIN_BYTES"))
		return min_bytes;
	if (!strcmp(var, "ZK_ALLOC_THP"))
		return thp;
	if (!strcmp(var, "ZK_ALLOC_TRIM_PHASES"))
		return trim;
	return bool_;
}

static void opts_line(const char *text, char *out, size_t n)
{
	const char *l = strstr(text, "OPTS ");
	ck_assert_msg(l != NULL, "no OPTS line in:\n%s", text);
	size_t k = strcspn(l, "\n");
	snprintf(out, n, "%.*s", (int)k, l);
}

/* Every variable unset, so the parent's environment cannot interfere. */
static void clean_env(const char **env, size_t *n)
{
	for (int i = 0; vars[i]; i++)
		env[(*n)++] = vars[i];
	for (int i = 0; retired[i]; i++)
		env[(*n)++] = retired[i];
}

static unsigned env_cases;

/* One setting (or none), next to a valid companion variable that must
 * still take effect; expect the OPTS line and the warnings. */
static void run_opts(const char *set, const char *companion, char *got,
		     size_t len)
{
	const char *env[32];
	size_t n = 0;
	clean_env(env, &n);
	if (set != NULL)
		env[n++] = set;
	if (companion != NULL)
		env[n++] = companion;
	env[n] = NULL;
	int rc = tu_run_child(print_options, NULL, env, err, sizeof(err));
	ck_assert_msg(rc == 0, "%s: child status %d:\n%s", set ? set : "-", rc,
		      su_tail(err));
	opts_line(err, got, len);
}

static void one_bad_value(const char *var, const char *value,
			  const char *companion, const char *expect_opts)
{
	char set[512], got[512], quoted[160];
	snprintf(set, sizeof(set), "%s=%s", var, value);
	run_opts(set, companion, got, sizeof(got));
	ck_assert_msg(strcmp(got, expect_opts) == 0,
		      "%s=\"%s\" changed options:\n got  %s\n want %s", var,
		      value, got, expect_opts);
	ck_assert_msg(su_count(err, "zkalloc: warning") == 1,
		      "%s=\"%s\": want exactly one warning in:\n%s", var, value,
		      err);
	snprintf(quoted, sizeof(quoted), "%s=\"%.64s", var, value);
	ck_assert_msg(strstr(err, quoted) != NULL,
		      "warning does not name %s and its value:\n%s", quoted,
		      err);
	ck_assert_msg(strstr(err, "is not valid") != NULL &&
			  strstr(err, "using the default") != NULL,
		      "warning does not say it keeps the default:\n%s", err);
	env_cases++;
}

START_TEST(bad_environment_values)
{
	/* Baselines: defaults plus each companion alone, no warning. */
	char with_arenas[512], with_trim[512], dflt[512];
	const char *arenas3 = "ZK_ALLOC_ARENAS=3",
		   *trim7 = "ZK_ALLOC_TRIM_PHASES=7";
	run_opts(NULL, NULL, dflt, sizeof(dflt));
	ck_assert_ptr_null(strstr(err, "warning"));
	run_opts(NULL, arenas3, with_arenas, sizeof(with_arenas));
	ck_assert_ptr_null(strstr(err, "warning"));
	run_opts(NULL, trim7, with_trim, sizeof(with_trim));
	ck_assert_ptr_null(strstr(err, "warning"));
	ck_assert_ptr_nonnull(strstr(with_arenas, "arenas=3 "));
	ck_assert_ptr_nonnull(strstr(with_trim, "trim=7"));
	ck_assert_ptr_nonnull(strstr(dflt, "check=0 verbose=0 trim=4"));
	ck_assert_ptr_nonnull(strstr(dflt, "min=0 thp=never"));
	for (int v = 0; vars[v]; v++) {
		bool arenas = strcmp(vars[v], "ZK_ALLOC_ARENAS") == 0;
		const char *comp = arenas ? trim7 : arenas3;
		const char *want = arenas ? with_trim : with_arenas;
		for (int i = 0; bad_all[i]; i++)
			one_bad_value(vars[v], bad_all[i], comp, want);
		for (const char *const *b = bad_for(vars[v]); *b; b++)
			one_bad_value(vars[v], *b, comp, want);
		/* A value far longer than the warning quotes. */
		char longv[300];
		memset(longv, '9', sizeof(longv) - 1);
		longv[sizeof(longv) - 1] = '\0';
		one_bad_value(vars[v], longv, comp, want);
	}
	printf("badinput: %u bad environment values over 7 variables\n",
	       env_cases);
}
END_TEST

/* A few valid values are taken as they are (the bad ones above are not
 * refused for being unparsable in general). */
START_TEST(good_environment_values)
{
	static const struct {
		const char *set, *want;
	} good[] = {
	    {"ZK_ALLOC_REGION_GB=0.0625", "region=67108864 "},
	    {"ZK_ALLOC_REGION_GB=1.5", "region=1610612736 "},
	    {"ZK_ALLOC_ARENAS=1024", "arenas=1024 "},
	    {"ZK_ALLOC_MIN_BYTES=0", "min=0 "},
	    {"ZK_ALLOC_MIN_BYTES=4K", "min=4096 "},
	    {"ZK_ALLOC_MIN_BYTES=2m", "min=2097152 "},
	    {"ZK_ALLOC_THP=always", "thp=always "},
	    {"ZK_ALLOC_TRIM_PHASES=64", "trim=64"},
	    {"ZK_ALLOC_TRIM_PHASES=1", "trim=1"},
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		char got[512];
		run_opts(good[i].set, NULL, got, sizeof(got));
		ck_assert_msg(strstr(got, good[i].want) != NULL,
			      "%s: want \"%s\" in %s", good[i].set,
			      good[i].want, got);
		ck_assert_msg(strstr(err, "warning") == NULL, "%s warned:\n%s",
			      good[i].set, err);
	}
}
END_TEST

START_TEST(retired_variables)
{
	char dflt[512], got[512];
	run_opts(NULL, NULL, dflt, sizeof(dflt));
	static const char *const values[] = {"1", "0", "garbage", ""};
	for (int r = 0; retired[r]; r++)
		for (int v = 0; v < 4; v++) {
			char set[128], want[128];
			snprintf(set, sizeof(set), "%s=%s", retired[r],
				 values[v]);
			run_opts(set, NULL, got, sizeof(got));
			ck_assert_msg(strcmp(got, dflt) == 0,
				      "%s changed options:\n got  %s\n want %s",
				      set, got, dflt);
			snprintf(want, sizeof(want),
				 "zkalloc: warning: %s is no longer used",
				 retired[r]);
			ck_assert_msg(su_count(err, "zkalloc: warning") == 1 &&
					  su_count(err, want) == 1,
				      "%s: want exactly one \"%s\" in:\n%s",
				      set, want, err);
		}
	/* All five at once: one warning each. */
	const char *env[32];
	size_t n = 0;
	for (int i = 0; vars[i]; i++)
		env[n++] = vars[i];
	for (int r = 0; retired[r]; r++) {
		static char sets[5][64];
		snprintf(sets[r], sizeof(sets[r]), "%s=2", retired[r]);
		env[n++] = sets[r];
	}
	env[n] = NULL;
	ck_assert_int_eq(
	    tu_run_child(print_options, NULL, env, err, sizeof(err)), 0);
	ck_assert_uint_eq(su_count(err, "zkalloc: warning"), 5);
	ck_assert_uint_eq(su_count(err, "is no longer used"), 5);
	for (int r = 0; retired[r]; r++)
		ck_assert_uint_eq(su_count(err, retired[r]), 1);
	opts_line(err, got, sizeof(got));
	ck_assert_str_eq(got, dflt);
}
END_TEST

/* ------------------------------------------------------- zk_mallctl */

typedef struct state {
	bool active;
	uint64_t epoch, overflow, arenas;
	size_t region;
	unsigned narenas, trim;
} state_t;

static state_t state(void)
{
	zk_stats_t s = {.size = sizeof(s)};
	zk_stats_get(&s);
	state_t st = {s.phase_active,
		      s.epoch,
		      s.overflow_count,
		      s.arenas_created,
		      0,
		      0,
		      0};
	size_t len = sizeof(st.region);
	zk_mallctl("zk.opt.region_size", &st.region, &len, NULL, 0);
	len = sizeof(unsigned);
	zk_mallctl("zk.opt.arenas", &st.narenas, &len, NULL, 0);
	len = sizeof(unsigned);
	zk_mallctl("zk.opt.trim_phases", &st.trim, &len, NULL, 0);
	return st;
}

static void same_state(state_t a, const char *what)
{
	state_t b = state();
	ck_assert_msg(a.active == b.active && a.epoch == b.epoch &&
			  a.overflow == b.overflow && a.arenas == b.arenas &&
			  a.region == b.region && a.narenas == b.narenas &&
			  a.trim == b.trim,
		      "%s changed the state", what);
}

static unsigned ctl_cases;

/* Call zk_mallctl with canary-filled buffers; expect rc; on failure no
 * byte of the buffers or of *oldlenp may change. */
static void call(const char *name, bool oldp, size_t oldlen, bool lenp,
		 bool newp, size_t newlen, int want)
{
	unsigned char old[64], nw[64], old0[64];
	memset(old, 0xA5, sizeof(old));
	memset(nw, 0x5A, sizeof(nw));
	memcpy(old0, old, sizeof(old));
	size_t len = oldlen;
	state_t before = state();
	int rc = zk_mallctl(name, oldp ? old : NULL, lenp ? &len : NULL,
			    newp ? nw : NULL, newlen);
	ck_assert_msg(rc == want,
		      "zk_mallctl(\"%s\", old=%d len=%zu lenp=%d "
		      "new=%d newlen=%zu) = %d, want %d",
		      name ? name : "(null)", oldp, oldlen, lenp, newp, newlen,
		      rc, want);
	/* Forwarded names follow jemalloc, which copies what fits of a read
	 * into a wrong-sized buffer before returning EINVAL (ctl.c READ). */
	bool ours = name != NULL && strncmp(name, "zk.", 3) == 0;
	if (rc != 0 && ours) {
		ck_assert_msg(memcmp(old, old0, sizeof(old)) == 0,
			      "\"%s\" wrote the buffer on error", name);
		ck_assert_uint_eq(len, oldlen);
		same_state(before, name ? name : "(null)");
	} else if (rc == 0 && oldp && lenp) {
		/* Exactly the value's bytes are written. */
		for (size_t i = oldlen; i < sizeof(old); i++)
			ck_assert_uint_eq(old[i], 0xA5);
	}
	ctl_cases++;
}

/* The read-only names outside the stats table. */
static const struct {
	const char *name;
	size_t size;
} ro[] = {{"zk.version", sizeof(const char *)},
	  {"zk.phase.active", sizeof(bool)},
	  {"zk.phase.epoch", sizeof(uint64_t)},
	  {"zk.thread.arena_flags", sizeof(int)},
	  {"zk.opt.check", sizeof(bool)}};
#define NRO (sizeof(ro) / sizeof(ro[0]))

/* src/ctl.c: row i of the zk.stats.* table (NULL past the end); for
 * tests. */
const char *zk_ctl_stat_row(size_t i, size_t *offset, size_t *field_size,
			    size_t *type_bytes);

/* Read-only name i: the ones above, then every row of the stats table.
 * NULL past the end. */
static const char *ro_name(size_t i, size_t *size)
{
	if (i < NRO) {
		*size = ro[i].size;
		return ro[i].name;
	}
	size_t off, field, type;
	const char *n = zk_ctl_stat_row(i - NRO, &off, &field, &type);
	*size = type;
	return n;
}

/* The stats table has a row for every zk_stats_t field of version 3 (the
 * struct ends with dalloc_refused), each named zk.stats.<field>. */
START_TEST(stats_table_is_complete)
{
	size_t rows = 0, off, field, type, end = 0;
	const char *n;
	while ((n = zk_ctl_stat_row(rows, &off, &field, &type)) != NULL) {
		ck_assert_msg(strncmp(n, "zk.stats.", 9) == 0, "%s", n);
		ck_assert_uint_eq(field, type);
		ck_assert_uint_ge(off, end); /* in struct order */
		end = off + field;
		rows++;
	}
	ck_assert_uint_eq(rows, 39);
	ck_assert_uint_eq(end, sizeof(zk_stats_t));
}
END_TEST

/* Options, writable until the first phase. The canary bytes (0x5A...) are
 * out of every numeric row's range; a string option is never handed
 * canary bytes as a pointer (that would be the caller's crash, as in
 * jemalloc), only wrong lengths and pointers to bad strings. */
static const struct {
	const char *name;
	size_t size;
	bool str;
} wr[] = {{"zk.opt.region_size", sizeof(size_t), false},
	  {"zk.opt.arenas", sizeof(unsigned), false},
	  {"zk.opt.min_bytes", sizeof(size_t), false},
	  {"zk.opt.thp", sizeof(const char *), true},
	  {"zk.opt.verbose", sizeof(bool), false},
	  {"zk.opt.trim_phases", sizeof(unsigned), false}};

static void writable_names(void)
{
	for (size_t i = 0; i < sizeof(wr) / sizeof(wr[0]); i++) {
		const char *n = wr[i].name;
		size_t sz = wr[i].size;
		call(n, true, sz, true, false, 0, 0);
		call(n, false, 0, false, false, 0, 0);
		for (size_t bad = 0; bad <= 16; bad++)
			if (bad != sz) {
				call(n, true, bad, true, false, 0, EINVAL);
				call(n, false, 0, false, true, bad, EINVAL);
			}
		call(n, false, 0, false, false, sz, EINVAL); /* no newp */
		call(n, true, sz - 1, true, true, sz, EINVAL);
		call(n, false, sz, true, false, 0, EINVAL); /* no oldp */
		call(n, true, sz, false, false, 0, EINVAL); /* no oldlenp */
		if (!wr[i].str) {
			call(n, false, 0, false, true, sz, EINVAL);
			call(n, true, sz, true, true, sz, EINVAL);
			continue;
		}
		const char *bad_text[] = {"",	    "bogus", "NEVER",
					  "never ", "0",     NULL};
		for (int k = 0; k < 6; k++) {
			const char *t = bad_text[k];
			ck_assert_int_eq(
			    zk_mallctl(n, NULL, NULL, &t, sizeof(t)), EINVAL);
			ctl_cases++;
		}
	}
	/* Out-of-range numbers, each just past a bound. */
	size_t region_lo = (64 << 20) - 1, minb_hi = ((size_t)1 << 62) + 1;
	unsigned arenas_lo = 0, arenas_hi = 1025, trim_lo = 0, trim_hi = 65;
	bool two;
	memset(&two, 2, 1);
	struct {
		const char *n;
		void *v;
		size_t len;
	} range[] = {{"zk.opt.region_size", &region_lo, sizeof(size_t)},
		     {"zk.opt.min_bytes", &minb_hi, sizeof(size_t)},
		     {"zk.opt.arenas", &arenas_lo, sizeof(unsigned)},
		     {"zk.opt.arenas", &arenas_hi, sizeof(unsigned)},
		     {"zk.opt.trim_phases", &trim_lo, sizeof(unsigned)},
		     {"zk.opt.trim_phases", &trim_hi, sizeof(unsigned)},
		     {"zk.opt.verbose", &two, sizeof(bool)}};
	for (size_t i = 0; i < sizeof(range) / sizeof(range[0]); i++) {
		state_t before = state();
		ck_assert_msg(zk_mallctl(range[i].n, NULL, NULL, range[i].v,
					 range[i].len) == EINVAL,
			      "%s out of range accepted", range[i].n);
		same_state(before, range[i].n);
		ctl_cases++;
	}
}

static void read_only_names(void)
{
	const char *n;
	size_t sz;
	for (size_t i = 0; (n = ro_name(i, &sz)) != NULL; i++) {
		call(n, true, sz, true, false, 0, 0);
		call(n, false, 0, false, false, 0, 0); /* nothing asked */
		for (size_t bad = 0; bad <= 16; bad++)
			if (bad != sz)
				call(n, true, bad, true, false, 0, EINVAL);
		call(n, false, sz, true, false, 0, EINVAL);
		call(n, true, sz, false, false, 0, EINVAL);
		call(n, true, sz, true, true, sz, EPERM);
		call(n, false, 0, false, true, sz, EPERM);
		call(n, false, 0, false, true, 0, EPERM);
		call(n, false, 0, false, false, sz, EPERM);
		call(n, true, sz - 1, true, true, 1, EPERM);
	}
}

/* A valid write before the first phase is taken; after it, EBUSY and
 * nothing changes (old value not copied either). */
static void option_writes(bool after_first_phase)
{
	unsigned trim = 9, old = 0;
	size_t len = sizeof(old);
	state_t before = state();
	int rc =
	    zk_mallctl("zk.opt.trim_phases", &old, &len, &trim, sizeof(trim));
	if (!after_first_phase) {
		ck_assert_int_eq(rc, 0);
		ck_assert_uint_eq(old, before.trim);
		ck_assert_uint_eq(state().trim, 9);
		trim = before.trim; /* put it back */
		ck_assert_int_eq(zk_mallctl("zk.opt.trim_phases", NULL, NULL,
					    &trim, sizeof(trim)),
				 0);
		const char *thp = "never";
		ck_assert_int_eq(
		    zk_mallctl("zk.opt.thp", NULL, NULL, &thp, sizeof(thp)), 0);
		bool off = false;
		ck_assert_int_eq(
		    zk_mallctl("zk.opt.verbose", NULL, NULL, &off, sizeof(off)),
		    0);
	} else {
		ck_assert_int_eq(rc, EBUSY);
		ck_assert_uint_eq(old, 0);
		same_state(before, "zk.opt.trim_phases after a phase");
		const char *thp = "always";
		ck_assert_int_eq(
		    zk_mallctl("zk.opt.thp", NULL, NULL, &thp, sizeof(thp)),
		    EBUSY);
	}
	bool on = true;
	ck_assert_int_eq(
	    zk_mallctl("zk.opt.check", NULL, NULL, &on, sizeof(on)), EPERM);
	ctl_cases += 3;
}

START_TEST(mallctl_bad_calls)
{
	call(NULL, true, 8, true, false, 0, EFAULT);
	call(NULL, false, 0, false, false, 0, EFAULT);
	static const char *const unknown[] = {
	    "zk.", "zk.nope", "zk.phase", "zk.phase.begin.x", "zk.phase.begi",
	    "zk.opt.region_size ", "zk.stats.overflow_count\x01", "zk..phase",
	    "zk.phase.active.", "zk.opt.*", "zk.stats", "zk.stats.",
	    "zk.stats.size", "ZK.phase.active",
	    /* 0.1 names, retired */
	    "zk.opt.slab_size", "zk.opt.nslabs", "zk.opt.promote_bytes",
	    "zk.opt.small", "zk.opt.shared_bytes", "nonexistent.name", "",
	    "arenas.nope.x", NULL};
	for (int i = 0; unknown[i]; i++)
		call(unknown[i], true, 8, true, false, 0, ENOENT);
	char longname[4096];
	memset(longname, 'x', sizeof(longname) - 1);
	memcpy(longname, "zk.", 3);
	longname[sizeof(longname) - 1] = '\0';
	call(longname, true, 8, true, false, 0, ENOENT);

	option_writes(false);
	for (int in_phase = 0; in_phase < 2; in_phase++) {
		if (in_phase)
			ck_assert_int_eq(zk_begin_phase(), 0);
		read_only_names();
		writable_names();
		/* void names take nothing */
		const char *voids[] = {"zk.phase.begin", "zk.phase.end"};
		for (int v = 0; v < 2; v++) {
			call(voids[v], true, 8, true, false, 0, EINVAL);
			call(voids[v], false, 0, true, false, 0, EINVAL);
			call(voids[v], true, 0, false, false, 0, EINVAL);
			call(voids[v], false, 0, false, true, 8, EINVAL);
			call(voids[v], false, 0, false, false, 1, EINVAL);
		}
		if (in_phase) {
			call("zk.phase.begin", false, 0, false, false, 0,
			     EBUSY);
			call("zk.phase.end", false, 0, false, false, 0, 0);
			ck_assert(!zk_phase_active());
			option_writes(true);
		}
	}
	/* Forwarded names keep jemalloc's conventions. */
	call("version", true, sizeof(char *), true, false, 0, 0);
	call("version", true, 4, true, false, 0, EINVAL);
	call("arenas.narenas", true, sizeof(unsigned), true, true,
	     sizeof(unsigned), EPERM);
	printf("badinput: %u zk_mallctl calls with bad arguments or names\n",
	       ctl_cases);
}
END_TEST

/* ------------------------------------------- pointers from elsewhere */

START_TEST(blocks_jemalloc_made)
{
	zk_free(NULL);
	ck_assert_uint_eq(zk_malloc_usable_size(NULL), 0);
	for (int in_phase = 0; in_phase < 2; in_phase++) {
		if (in_phase)
			ck_assert_int_eq(zk_begin_phase(), 0);
		/* From jemalloc's arena 0 itself (documented as accepted):
		 * resized and freed through zkalloc, in and out of phases. */
		unsigned char *p = je_mallocx(100000, MALLOCX_ARENA(0));
		ck_assert_ptr_nonnull(p);
		ck_assert(!zk_owns(p));
		tu_fill(p, 100000, 3);
		unsigned char *q = zk_realloc(p, 3 << 20);
		ck_assert_ptr_nonnull(q);
		ck_assert_uint_eq(tu_check(q, 100000, 3), SIZE_MAX);
		q = zk_realloc(q, 5000);
		ck_assert_ptr_nonnull(q);
		ck_assert_uint_eq(tu_check(q, 5000, 3), SIZE_MAX);
		zk_free(q);
		p = je_mallocx(64, 0);
		ck_assert_ptr_null(zk_realloc(p, 0)); /* frees, glibc-style */
		p = zk_realloc(NULL, 1 << 20);
		ck_assert_ptr_nonnull(p);
		ck_assert(zk_owns(p) == (bool)in_phase);
		zk_free(p);
		je_dallocx(je_mallocx(1 << 20, 0), 0);
		p = je_mallocx(1 << 16, 0);
		zk_dallocx(p, 0);
		p = je_mallocx(1 << 16, MALLOCX_ARENA(0));
		zk_sdallocx(p, 1 << 16, 0);
	}
	zk_end_phase();
}
END_TEST

int main(void)
{
	Suite *s = suite_create("stress_badinput");
	TCase *tc = tcase_create("badinput");
	tcase_set_timeout(tc, 0);
	tcase_add_test(tc, bad_environment_values);
	tcase_add_test(tc, good_environment_values);
	tcase_add_test(tc, retired_variables);
	tcase_add_test(tc, stats_table_is_complete);
	tcase_add_test(tc, mallctl_bad_calls);
	tcase_add_test(tc, blocks_jemalloc_made);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
