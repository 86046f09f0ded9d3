/* options.c: the ZK_ALLOC_* parser and the warnings for bad values. */
#define _GNU_SOURCE
#include <sched.h>
#include "options.h"
#include "testutil.h"

#include <check.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zkalloc.h>

static uint64_t parse_ok(zk_opt_id_t id, const char *text)
{
	uint64_t v = 12345;
	ck_assert_msg(zk_opt_parse(&zk_opt_table[id], text, &v) == 0,
		      "%s=\"%s\" should parse", zk_opt_table[id].env, text);
	return v;
}

static void parse_bad(zk_opt_id_t id, const char *text)
{
	uint64_t v = 777;
	ck_assert_msg(zk_opt_parse(&zk_opt_table[id], text, &v) == -1,
		      "%s=\"%s\" should be refused", zk_opt_table[id].env,
		      text);
	ck_assert_uint_eq(v, 777); /* untouched */
}

START_TEST(uint_values)
{
	ck_assert_uint_eq(parse_ok(ZK_OPT_ARENAS, "1"), 1);
	ck_assert_uint_eq(parse_ok(ZK_OPT_ARENAS, "64"), 64);
	ck_assert_uint_eq(parse_ok(ZK_OPT_ARENAS, "1024"), 1024);
	ck_assert_uint_eq(parse_ok(ZK_OPT_TRIM_PHASES, "64"), 64);
	const char *bad[] = {
	    "",	    "0",  "-1",	 "+3",	 " 4",
	    "4 ",   "4x", "abc", "1025", "99999999999999999999999",
	    "0x10", "1.5"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		parse_bad(ZK_OPT_ARENAS, bad[i]);
	parse_bad(ZK_OPT_TRIM_PHASES, "0");
	parse_bad(ZK_OPT_TRIM_PHASES, "65");
}
END_TEST

START_TEST(byte_values)
{
	ck_assert_uint_eq(parse_ok(ZK_OPT_MIN_BYTES, "0"), 0);
	ck_assert_uint_eq(parse_ok(ZK_OPT_MIN_BYTES, "4096"), 4096);
	ck_assert_uint_eq(parse_ok(ZK_OPT_MIN_BYTES, "64k"), 65536);
	ck_assert_uint_eq(parse_ok(ZK_OPT_MIN_BYTES, "2M"), 2 << 20);
	ck_assert_uint_eq(parse_ok(ZK_OPT_MIN_BYTES, "1G"), 1ull << 30);
	const char *bad[] = {"",
			     "-4096",
			     "4096B",
			     "4 k",
			     "k",
			     "1T",
			     "18446744073709551615",
			     "17179869184G",
			     "99999999999999999999999"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		parse_bad(ZK_OPT_MIN_BYTES, bad[i]);
}
END_TEST

START_TEST(gib_values)
{
	ck_assert_uint_eq(parse_ok(ZK_OPT_REGION, "8"), 8ull << 30);
	ck_assert_uint_eq(parse_ok(ZK_OPT_REGION, "0.5"), 1ull << 29);
	ck_assert_uint_eq(parse_ok(ZK_OPT_REGION, "0.0625"), 1ull << 26);
	ck_assert_uint_eq(parse_ok(ZK_OPT_REGION, "8192"), 1ull << 43);
	const char *bad[] = {"",      "0",
			     "0.0",   "-1",
			     "inf",   "nan",
			     "1e3",   "0x8",
			     ".",     "1..2",
			     "0.06",  "8193",
			     "8GB",   "99999999999999999999999999999999999999"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		parse_bad(ZK_OPT_REGION, bad[i]);
}
END_TEST

/* Issue 13.10: the bounds a warning names are accepted. For every row,
 * the text of its minimum and maximum (as the warning prints them) parses
 * back to exactly that value; and a value just below the minimum's text
 * is refused, so the text is not merely "somewhere inside". */
START_TEST(printed_bounds_are_accepted)
{
	for (int i = 0; i < ZK_OPT__COUNT; i++) {
		const zk_opt_desc_t *row = &zk_opt_table[i];
		if (row->kind == ZK_KIND_ENUM)
			continue;
		char lo[48], hi[48];
		zk_opt_format(row, row->min, lo, sizeof(lo));
		zk_opt_format(row, row->max, hi, sizeof(hi));
		uint64_t v = 0;
		ck_assert_msg(zk_opt_parse(row, lo, &v) == 0 && v == row->min,
			      "%s: minimum printed as %s", row->env, lo);
		ck_assert_msg(zk_opt_parse(row, hi, &v) == 0 && v == row->max,
			      "%s: maximum printed as %s", row->env, hi);
	}
	/* The case of the report: 64 MiB is printed exactly. */
	char lo[48];
	zk_opt_format(&zk_opt_table[ZK_OPT_REGION], 64ull << 20, lo,
		      sizeof(lo));
	ck_assert_str_eq(lo, "0.0625");
	/* A value that is no short decimal is rounded up, never down. */
	uint64_t v = 0, odd = (1ull << 30) / 3 + 7;
	zk_opt_format(&zk_opt_table[ZK_OPT_REGION], odd, lo, sizeof(lo));
	ck_assert_int_eq(zk_opt_parse(&zk_opt_table[ZK_OPT_REGION], lo, &v),
			 0);
	ck_assert_uint_ge(v, odd);
	ck_assert_uint_lt(v - odd, 4096);
}
END_TEST

/* Issue 8.12: the decimal point is '.', whatever the locale says. The
 * de_DE locale (decimal comma) is compiled into a temporary directory
 * with localedef (Debian's locales package, installed by scripts/deps). */
START_TEST(gib_values_ignore_the_locale)
{
	char dir[] = "/tmp/zk-locale-XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(dir));
	char cmd[256];
	snprintf(cmd, sizeof(cmd),
		 "localedef -i de_DE -f UTF-8 %s/de_DE.UTF-8 2>/dev/null", dir);
	ck_assert_msg(system(cmd) == 0, "localedef failed: %s", cmd);
	setenv("LOCPATH", dir, 1);
	ck_assert_ptr_nonnull(setlocale(LC_NUMERIC, "de_DE.UTF-8"));
	ck_assert_double_eq(strtod("0,5", NULL), 0.5); /* the locale is on */
	ck_assert_uint_eq(parse_ok(ZK_OPT_REGION, "0.5"), 1ull << 29);
	ck_assert_uint_eq(parse_ok(ZK_OPT_REGION, "0.25"), 1ull << 28);
	ck_assert_uint_eq(parse_ok(ZK_OPT_REGION, "1.5"), 3ull << 29);
	parse_bad(ZK_OPT_REGION, "0,5");
	setlocale(LC_NUMERIC, "C");
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(enum_values)
{
	ck_assert_uint_eq(parse_ok(ZK_OPT_THP, "never"), ZK_THP_NEVER);
	ck_assert_uint_eq(parse_ok(ZK_OPT_THP, "always"), ZK_THP_ALWAYS);
	ck_assert_uint_eq(parse_ok(ZK_OPT_CHECK, "1"), 1);
	parse_bad(ZK_OPT_THP, "Always");
	parse_bad(ZK_OPT_THP, "");
	parse_bad(ZK_OPT_VERBOSE, "yes");
	parse_bad(ZK_OPT_CHECK, "2");
}
END_TEST

/* Every row is documented in the README's option table. */
START_TEST(readme_lists_every_option)
{
	const char *path = getenv("ZK_README");
	ck_assert_ptr_nonnull(path);
	FILE *f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	static char text[1 << 17];
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	text[n] = '\0';
	fclose(f);
	for (int i = 0; i < ZK_OPT__COUNT; i++) {
		char row[64];
		snprintf(row, sizeof(row), "| `%s`", zk_opt_table[i].env);
		ck_assert_msg(strstr(text, row) != NULL,
			      "README has no table row for %s",
			      zk_opt_table[i].env);
	}
}
END_TEST

/* A child reads its environment at first use and reports whether
 * arenas, min_bytes and region_size are at their defaults. */
static int child_report(void *unused)
{
	(void)unused;
	size_t min_bytes, region, len = sizeof(size_t);
	unsigned arenas, je_narenas;
	size_t ulen = sizeof(unsigned);
	if (zk_mallctl("zk.opt.min_bytes", &min_bytes, &len, NULL, 0) != 0 ||
	    zk_mallctl("zk.opt.region_size", &region, &len, NULL, 0) != 0 ||
	    zk_mallctl("zk.opt.arenas", &arenas, &ulen, NULL, 0) != 0 ||
	    zk_mallctl("opt.narenas", &je_narenas, &ulen, NULL, 0) != 0)
		return 99;
	/* The machine's memory, rounded up to GiB, at least 4 GiB. */
	uint64_t ram = (uint64_t)sysconf(_SC_PHYS_PAGES) *
		       (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t want = (ram + (1ull << 30) - 1) >> 30 << 30;
	if (want < 4ull << 30)
		want = 4ull << 30;
	/* exit code: 1 if all three are at their defaults */
	return min_bytes == 0 && arenas == je_narenas && region == want;
}

static void expect_warning(const char *var, const char *value)
{
	char setting[256], err[4096];
	snprintf(setting, sizeof(setting), "%s=%s", var, value);
	const char *env[] = {setting, NULL};
	int rc = tu_run_child(child_report, NULL, env, err, sizeof(err));
	ck_assert_msg(rc == 1, "%s: defaults not kept (rc %d)", setting, rc);
	ck_assert_msg(strstr(err, "zkalloc: warning") && strstr(err, var) &&
			  strstr(err, value) &&
			  strstr(err, "using the default"),
		      "%s: warning missing or unclear: %s", setting, err);
	/* one warning, not one per use */
	ck_assert_ptr_null(strstr(strstr(err, "zkalloc") + 1, "zkalloc"));
}

START_TEST(bad_env_warns_and_keeps_default)
{
	expect_warning("ZK_ALLOC_ARENAS", "lots");
	expect_warning("ZK_ALLOC_ARENAS", "-3");
	expect_warning("ZK_ALLOC_ARENAS", "0");
	expect_warning("ZK_ALLOC_ARENAS", "4294967296");
	expect_warning("ZK_ALLOC_MIN_BYTES", "-1");
	expect_warning("ZK_ALLOC_MIN_BYTES", "12abc");
	expect_warning("ZK_ALLOC_MIN_BYTES", "99999999999999999999999999");
	expect_warning("ZK_ALLOC_REGION_GB", "0.015625");
	expect_warning("ZK_ALLOC_REGION_GB", "lots");
}
END_TEST

START_TEST(good_env_is_used_quietly)
{
	char err[4096];
	const char *env[] = {"ZK_ALLOC_ARENAS=3", NULL};
	ck_assert_int_eq(
	    tu_run_child(child_report, NULL, env, err, sizeof(err)), 0);
	ck_assert_str_eq(err, "");
	const char *none[] = {"ZK_ALLOC_ARENAS", "ZK_ALLOC_MIN_BYTES",
			      "ZK_ALLOC_REGION_GB", NULL};
	ck_assert_int_eq(
	    tu_run_child(child_report, NULL, none, err, sizeof(err)), 1);
	ck_assert_str_eq(err, "");
}
END_TEST

/* The variables of 0.1 that 0.2 no longer reads: one warning each, naming
 * it, and nothing else changes. */
START_TEST(retired_env_warns_once)
{
	for (int i = 0; zk_opt_retired[i] != NULL; i++) {
		char setting[128], err[4096];
		snprintf(setting, sizeof(setting), "%s=1", zk_opt_retired[i]);
		const char *env[] = {setting, NULL};
		int rc =
		    tu_run_child(child_report, NULL, env, err, sizeof(err));
		ck_assert_msg(rc == 1, "%s changed a default", setting);
		ck_assert_msg(strstr(err, zk_opt_retired[i]) &&
				  strstr(err, "no longer used"),
			      "%s: no clear warning: %s", setting, err);
		ck_assert_ptr_null(
		    strstr(strstr(err, "zkalloc") + 1, "zkalloc"));
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("options");
	TCase *tc = tcase_create("parse");
	tcase_set_timeout(tc, 60); /* localedef takes seconds on a loaded box */
	tcase_add_test(tc, uint_values);
	tcase_add_test(tc, byte_values);
	tcase_add_test(tc, gib_values);
	tcase_add_test(tc, gib_values_ignore_the_locale);
	tcase_add_test(tc, printed_bounds_are_accepted);
	tcase_add_test(tc, enum_values);
	tcase_add_test(tc, readme_lists_every_option);
	suite_add_tcase(s, tc);
	tc = tcase_create("environment");
	tcase_add_test(tc, bad_env_warns_and_keeps_default);
	tcase_add_test(tc, good_env_is_used_quietly);
	tcase_add_test(tc, retired_env_warns_once);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
