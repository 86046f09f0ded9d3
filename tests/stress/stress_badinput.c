/*
 * Bad input: every ZK_ALLOC_* variable with garbage, negative, zero, huge and
 * overflowing values; zk_mallctl with unknown names, NULL and wrong-sized
 * buffers and writes to read-only names; zk_free/zk_realloc of pointers
 * zkalloc did not return. Each bad variable must print one warning naming
 * the variable and the value, use the default, and change nothing else;
 * each bad zk_mallctl call must return its documented error and change no
 * state and no byte of the caller's buffers.
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
	size_t slab, minb, promote, len;
	unsigned nslabs;
	const char *thp, *small;
#define GET(name, var)                                                         \
	len = sizeof(var);                                                     \
	if (zk_mallctl(name, &var, &len, NULL, 0) != 0)                        \
		return 2;
	GET("zk.opt.slab_size", slab);
	GET("zk.opt.nslabs", nslabs);
	GET("zk.opt.min_bytes", minb);
	GET("zk.opt.promote_bytes", promote);
	GET("zk.opt.thp", thp);
	GET("zk.opt.small", small);
#undef GET
	if (zk_begin_phase() != 0)
		return 3;
	/* Checked mode is the one option with no ctl name: it shows as
	 * zk_arena_flags() == 0 inside a phase. */
	int checked = zk_arena_flags() == 0;
	void *p = zk_malloc(1 << 20);
	if (p == NULL || !zk_owns(p))
		return 4;
	zk_free(p);
	zk_end_phase();
	fprintf(stderr,
		"OPTS slab=%zu nslabs=%u min=%zu promote=%zu thp=%s "
		"small=%s checked=%d\n",
		slab, nslabs, minb, promote, thp, small, checked);
	return 0;
}

static const char *const vars[] = {
    "ZK_ALLOC_SLAB_GB",	  "ZK_ALLOC_SLABS",
    "ZK_ALLOC_MIN_BYTES", "ZK_ALLOC_PROMOTE_BYTES",
    "ZK_ALLOC_THP",	  "ZK_ALLOC_SMALL",
    "ZK_ALLOC_CHECK",	  NULL};

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

/* Invalid for one variable: zero, huge, out of range, wrong names. */
static const char *const *bad_for(const char *var)
{
	static const char *const slab_gb[] = {
	    "0", "0.0", "0.001", "1025", "1000000000.5", ".", "0.", NULL};
	static const char *const slabs[] = {
	    "0", "1025", "4294967296", "4294967297", "1.5", "8G", NULL};
	static const char *const bytes[] = {
	    "0x",	    "4611686018427387905",
	    "17179869184G", "5E",
	    "8T",	    "1KK",
	    "16777216P",    NULL};
	static const char *const min_bytes[] = {"0", NULL};
	static const char *const thp[] = {"0",	 "1",	    "Always",
					  "yes", "madvise", NULL};
	static const char *const small[] = {"0", "Resident", "both", NULL};
	static const char *const check_[] = {"2", "true", "01", "on", NULL};
	if (!strcmp(var, "ZK_ALLOC_SLAB_GB"))
		return slab_gb;
	if (!strcmp(var, "ZK_ALLOC_SLABS"))
		return slabs;
	if (!strcmp(var, "ZK_ALLOC_MIN_BYTES"))
		return min_bytes;
	if (!strcmp(var, "ZK_ALLOC_PROMOTE_BYTES"))
		return bytes;
	if (!strcmp(var, "ZK_ALLOC_THP"))
		return thp;
	if (!strcmp(var, "ZK_ALLOC_SMALL"))
		return small;
	return check_;
}

static void opts_line(const char *text, char *out, size_t n)
{
	const char *l = strstr(text, "OPTS ");
	ck_assert_msg(l != NULL, "no OPTS line in:\n%s", text);
	size_t k = strcspn(l, "\n");
	snprintf(out, n, "%.*s", (int)k, l);
}

static unsigned env_cases;

/* One bad value for var, next to a valid companion variable that must
 * still take effect. */
static void one_bad_value(const char *var, const char *value,
			  const char *companion, const char *expect_opts)
{
	char set[512];
	snprintf(set, sizeof(set), "%s=%s", var, value);
	const char *env[] = {set, companion, NULL};
	int rc = tu_run_child(print_options, NULL, env, err, sizeof(err));
	ck_assert_msg(rc == 0, "%s=\"%s\": child status %d:\n%s", var, value,
		      rc, su_tail(err));
	char got[512], quoted[160];
	opts_line(err, got, sizeof(got));
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
	env_cases++;
}

START_TEST(bad_environment_values)
{
	const char *clean[8];
	for (int i = 0; vars[i]; i++)
		clean[i] = vars[i]; /* "NAME" alone unsets */
	clean[7] = NULL;
	/* Baselines: defaults plus each companion alone. */
	char with_slabs[512], with_promote[512];
	const char *e1[] = {"ZK_ALLOC_SLABS=3", NULL};
	const char *e2[] = {"ZK_ALLOC_PROMOTE_BYTES=2M", NULL};
	ck_assert_int_eq(
	    tu_run_child(print_options, NULL, e1, err, sizeof(err)), 0);
	opts_line(err, with_slabs, sizeof(with_slabs));
	ck_assert_ptr_null(strstr(err, "warning"));
	ck_assert_int_eq(
	    tu_run_child(print_options, NULL, e2, err, sizeof(err)), 0);
	opts_line(err, with_promote, sizeof(with_promote));
	ck_assert_ptr_null(strstr(err, "warning"));
	ck_assert_ptr_nonnull(strstr(with_slabs, "nslabs=3 "));
	ck_assert_ptr_nonnull(strstr(with_promote, "promote=2097152 "));
	for (int v = 0; vars[v]; v++) {
		bool slabs = strcmp(vars[v], "ZK_ALLOC_SLABS") == 0;
		const char *comp = slabs ? e2[0] : e1[0];
		const char *want = slabs ? with_promote : with_slabs;
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
	(void)clean;
}
END_TEST

/* ------------------------------------------------------- zk_mallctl */

typedef struct state {
	bool active;
	uint64_t epoch, overflow, arenas;
} state_t;

static state_t state(void)
{
	zk_stats_t s = {.size = sizeof(s)};
	zk_stats_get(&s);
	return (state_t){s.phase_active, s.epoch, s.overflow_count,
			 s.arenas_created};
}

static void same_state(state_t a, const char *what)
{
	state_t b = state();
	ck_assert_msg(a.active == b.active && a.epoch == b.epoch &&
			  a.overflow == b.overflow && a.arenas == b.arenas,
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

static const struct {
	const char *name;
	size_t size;
} ro[] = {{"zk.version", sizeof(const char *)},
	  {"zk.phase.active", sizeof(bool)},
	  {"zk.phase.epoch", sizeof(uint64_t)},
	  {"zk.thread.arena_flags", sizeof(int)},
	  {"zk.opt.check", sizeof(bool)},
	  {"zk.stats.version", sizeof(uint32_t)},
	  {"zk.stats.region_reserved", sizeof(bool)},
	  {"zk.stats.epoch", sizeof(uint64_t)},
	  {"zk.stats.slab_size", sizeof(size_t)},
	  {"zk.stats.nslabs", sizeof(unsigned)},
	  {"zk.stats.max_slab_resident", sizeof(size_t)},
	  {"zk.stats.overflow_count", sizeof(uint64_t)},
	  {"zk.stats.overflow_bytes", sizeof(uint64_t)},
	  {"zk.stats.resident_bytes", sizeof(size_t)},
	  {"zk.stats.slabs_in_use", sizeof(unsigned)}};

/* Options, writable until the first phase. The canary bytes (0x5A...) are
 * out of every numeric row's range; a string option is never handed
 * canary bytes as a pointer (that would be the caller's crash, as in
 * jemalloc), only wrong lengths and pointers to bad strings. */
static const struct {
	const char *name;
	size_t size;
	bool str;
} wr[] = {{"zk.opt.slab_size", sizeof(size_t), false},
	  {"zk.opt.nslabs", sizeof(unsigned), false},
	  {"zk.opt.min_bytes", sizeof(size_t), false},
	  {"zk.opt.promote_bytes", sizeof(size_t), false},
	  {"zk.opt.thp", sizeof(const char *), true},
	  {"zk.opt.small", sizeof(const char *), true},
	  {"zk.opt.verbose", sizeof(bool), false}};

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
		if (!wr[i].str) {
			call(n, false, 0, false, true, sz, EINVAL);
			call(n, true, sz, true, true, sz, EINVAL);
			continue;
		}
		const char *bad_text[] = {"", "bogus", "NEVER", "never ", NULL};
		for (int k = 0; k < 5; k++) {
			const char *t = bad_text[k];
			ck_assert_int_eq(
			    zk_mallctl(n, NULL, NULL, &t, sizeof(t)), EINVAL);
			ctl_cases++;
		}
	}
}

static void read_only_names(void)
{
	for (size_t i = 0; i < sizeof(ro) / sizeof(ro[0]); i++) {
		const char *n = ro[i].name;
		size_t sz = ro[i].size;
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

START_TEST(mallctl_bad_calls)
{
	call(NULL, true, 8, true, false, 0, EFAULT);
	call(NULL, false, 0, false, false, 0, EFAULT);
	static const char *const unknown[] = {"zk.",
					      "zk.nope",
					      "zk.phase",
					      "zk.phase.begin.x",
					      "zk.phase.begi",
					      "zk.opt.slab_size ",
					      "zk.stats.overflow_count\x01",
					      "zk..phase",
					      "zk.phase.active.",
					      "zk.opt.*",
					      "zk.stats",
					      "ZK.phase.active",
					      "nonexistent.name",
					      "",
					      "arenas.nope.x",
					      NULL};
	for (int i = 0; unknown[i]; i++)
		call(unknown[i], true, 8, true, false, 0, ENOENT);
	char longname[4096];
	memset(longname, 'x', sizeof(longname) - 1);
	memcpy(longname, "zk.", 3);
	longname[sizeof(longname) - 1] = '\0';
	call(longname, true, 8, true, false, 0, ENOENT);

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

START_TEST(pointers_zkalloc_did_not_return)
{
	zk_free(NULL);
	ck_assert_uint_eq(zk_malloc_usable_size(NULL), 0);
	for (int in_phase = 0; in_phase < 2; in_phase++) {
		if (in_phase)
			ck_assert_int_eq(zk_begin_phase(), 0);
		/* Blocks from jemalloc itself (documented as accepted). */
		unsigned char *p = je_mallocx(100000, 0);
		ck_assert_ptr_nonnull(p);
		ck_assert(!zk_owns(p));
		tu_fill(p, 100000, 3);
		unsigned char *q = zk_realloc(p, 3 << 20);
		ck_assert_ptr_nonnull(q);
		ck_assert(!zk_owns(q)); /* sticky: stays ordinary */
		ck_assert_uint_eq(tu_check(q, 100000, 3), SIZE_MAX);
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
	tcase_add_test(tc, mallctl_bad_calls);
	tcase_add_test(tc, pointers_zkalloc_did_not_return);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
