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
	ck_assert_uint_eq(parse_ok(ZK_OPT_NSLABS, "1"), 1);
	ck_assert_uint_eq(parse_ok(ZK_OPT_NSLABS, "64"), 64);
	ck_assert_uint_eq(parse_ok(ZK_OPT_NSLABS, "1024"), 1024);
	const char *bad[] = {
	    "",	    "0",  "-1",	 "+3",	 " 4",
	    "4 ",   "4x", "abc", "1025", "99999999999999999999999",
	    "0x10", "1.5"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		parse_bad(ZK_OPT_NSLABS, bad[i]);
}
END_TEST

START_TEST(byte_values)
{
	ck_assert_uint_eq(parse_ok(ZK_OPT_MIN_BYTES, "4096"), 4096);
	ck_assert_uint_eq(parse_ok(ZK_OPT_MIN_BYTES, "64k"), 65536);
	ck_assert_uint_eq(parse_ok(ZK_OPT_MIN_BYTES, "2M"), 2 << 20);
	ck_assert_uint_eq(parse_ok(ZK_OPT_MIN_BYTES, "1G"), 1ull << 30);
	ck_assert_uint_eq(parse_ok(ZK_OPT_PROMOTE_BYTES, "0"), 0);
	const char *bad[] = {"",
			     "0",
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
	parse_bad(ZK_OPT_PROMOTE_BYTES, "-1");
}
END_TEST

START_TEST(gib_values)
{
	ck_assert_uint_eq(parse_ok(ZK_OPT_SLAB_SIZE, "8"), 8ull << 30);
	ck_assert_uint_eq(parse_ok(ZK_OPT_SLAB_SIZE, "0.5"), 1ull << 29);
	ck_assert_uint_eq(parse_ok(ZK_OPT_SLAB_SIZE, "1024"), 1ull << 40);
	const char *bad[] = {"",      "0",
			     "0.0",   "-1",
			     "inf",   "nan",
			     "1e3",   "0x8",
			     ".",     "1..2",
			     "0.001", "1025",
			     "8GB",   "99999999999999999999999999999999999999"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		parse_bad(ZK_OPT_SLAB_SIZE, bad[i]);
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
	ck_assert_uint_eq(parse_ok(ZK_OPT_SLAB_SIZE, "0.5"), 1ull << 29);
	ck_assert_uint_eq(parse_ok(ZK_OPT_SLAB_SIZE, "0.25"), 1ull << 28);
	ck_assert_uint_eq(parse_ok(ZK_OPT_SLAB_SIZE, "1.5"), 3ull << 29);
	parse_bad(ZK_OPT_SLAB_SIZE, "0,5");
	setlocale(LC_NUMERIC, "C");
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(enum_values)
{
	ck_assert_uint_eq(parse_ok(ZK_OPT_THP, "never"), ZK_THP_NEVER);
	ck_assert_uint_eq(parse_ok(ZK_OPT_THP, "always"), ZK_THP_ALWAYS);
	ck_assert_uint_eq(parse_ok(ZK_OPT_SMALL, "resident"),
			  ZK_SMALL_RESIDENT);
	parse_bad(ZK_OPT_THP, "Always");
	parse_bad(ZK_OPT_THP, "");
	parse_bad(ZK_OPT_SMALL, "yes");
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

/* A child reads its environment at first use and reports nslabs/min_bytes. */
static int child_report(void *unused)
{
	(void)unused;
	size_t min_bytes, len = sizeof(min_bytes);
	unsigned nslabs;
	size_t nlen = sizeof(nslabs);
	if (zk_mallctl("zk.opt.min_bytes", &min_bytes, &len, NULL, 0) != 0 ||
	    zk_mallctl("zk.opt.nslabs", &nslabs, &nlen, NULL, 0) != 0)
		return 99;
	size_t tcache_max, tlen = sizeof(tcache_max);
	if (zk_mallctl("arenas.tcache_max", &tcache_max, &tlen, NULL, 0) != 0)
		return 98;
	/* exit code: 1 if both are at their defaults (tcache_max + 1, CPUs + 4)
	 */
	long cpus = 0;
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) == 0)
		cpus = CPU_COUNT(&set);
	return min_bytes == tcache_max + 1 && nslabs == (unsigned)cpus + 4;
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
	expect_warning("ZK_ALLOC_SLABS", "lots");
	expect_warning("ZK_ALLOC_SLABS", "-3");
	expect_warning("ZK_ALLOC_SLABS", "0");
	expect_warning("ZK_ALLOC_SLABS", "4294967296");
	expect_warning("ZK_ALLOC_MIN_BYTES", "0");
	expect_warning("ZK_ALLOC_MIN_BYTES", "12abc");
	expect_warning("ZK_ALLOC_MIN_BYTES", "99999999999999999999999999");
}
END_TEST

START_TEST(good_env_is_used_quietly)
{
	char err[4096];
	const char *env[] = {"ZK_ALLOC_SLABS=3", NULL};
	ck_assert_int_eq(
	    tu_run_child(child_report, NULL, env, err, sizeof(err)), 0);
	ck_assert_str_eq(err, "");
	const char *none[] = {"ZK_ALLOC_SLABS", "ZK_ALLOC_MIN_BYTES", NULL};
	ck_assert_int_eq(
	    tu_run_child(child_report, NULL, none, err, sizeof(err)), 1);
	ck_assert_str_eq(err, "");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("options");
	TCase *tc = tcase_create("parse");
	tcase_add_test(tc, uint_values);
	tcase_add_test(tc, byte_values);
	tcase_add_test(tc, gib_values);
	tcase_add_test(tc, gib_values_ignore_the_locale);
	tcase_add_test(tc, enum_values);
	tcase_add_test(tc, readme_lists_every_option);
	suite_add_tcase(s, tc);
	tc = tcase_create("environment");
	tcase_add_test(tc, bad_env_warns_and_keeps_default);
	tcase_add_test(tc, good_env_is_used_quietly);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
