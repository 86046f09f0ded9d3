/*
 * The reservation seen from outside (issue 13, "from the real provers"):
 * the region is address space only; what the kernel charges (VmData, the
 * commit charge under vm.overcommit_memory=2) follows what the pool hands
 * out, in 64 MiB steps; ZK_ALLOC_VERBOSE=1 prints the figures zkalloc really
 * reserved, also after it shrank the region to fit RLIMIT_AS.
 *
 * Usage: reservation             the Check suite
 *        reservation rlimit-child  (run by the suite, under a limit)
 */
#define _GNU_SOURCE
#include "testutil.h"

#include <check.h>
#include <zkalloc.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define MiB ((size_t)1 << 20)
/* The region is committed in steps as the pool grows: 64 MiB above the
 * large requests' bump pointer, 8 MiB below the small requests' one. */
#define COMMIT_STEP (64 * MiB + 8 * MiB)
/* zkalloc's per-page tables for what was committed (~5 bytes a page, in
 * whole pages per table, the range table in steps) and jemalloc's radix
 * tree for the new addresses (2 MiB leaves). */
#define BOOKKEEPING (8 * MiB)

static size_t vm_data(void)
{
	size_t v = tu_status_bytes("VmData");
	ck_assert_uint_ne(v, SIZE_MAX);
	return v;
}

/* Four 25 MiB buffers, written through; freed at the end. */
static void use_100_mib(char *b[4])
{
	for (int i = 0; i < 4; i++) {
		b[i] = zk_malloc(25 * MiB);
		ck_assert_ptr_nonnull(b[i]);
		ck_assert(zk_owns(b[i]));
		memset(b[i], i + 1, 25 * MiB);
	}
}

START_TEST(commit_charge_follows_use)
{
	size_t d0 = vm_data();
	ck_assert_int_eq(zk_begin_phase(), 0);
	zk_stats_t s0 = tu_stats();
	ck_assert(s0.region_reserved);
	/* Reserving alone charges (almost) nothing. */
	ck_assert_msg(vm_data() <= d0 + BOOKKEEPING,
		      "VmData %zu -> %zu after reserving %zu bytes", d0,
		      vm_data(), s0.reserved_bytes);
	char *b[4];
	use_100_mib(b);
	size_t d1 = vm_data();
	zk_stats_t s1 = tu_stats();
	size_t used = s1.top_bytes;
	printf("VmData +%.1f MiB for 100 MiB in use: %.1f MiB handed out, "
	       "%.1f MiB committed, %.1f MiB reserved\n",
	       (double)(d1 - d0) / MiB, (double)used / MiB,
	       (double)s1.committed_bytes / MiB,
	       (double)s1.reserved_bytes / MiB);
	ck_assert_uint_ge(used, 100 * MiB);
	ck_assert_msg(
	    d1 - d0 <= 100 * MiB + COMMIT_STEP + BOOKKEEPING,
	    "VmData grew by %zu MiB for 100 MiB in use (pool: %zu MiB "
	    "handed out, %zu MiB committed)",
	    (d1 - d0) >> 20, used >> 20, s1.committed_bytes >> 20);
	ck_assert_uint_ge(s1.committed_bytes, used);
	ck_assert_uint_le(s1.committed_bytes, used + COMMIT_STEP);
	for (int i = 0; i < 4; i++)
		zk_free(b[i]);
	ck_assert_int_eq(zk_end_phase(), 0);

	/* The next proof reuses those pages: nothing more is charged. */
	ck_assert_int_eq(zk_begin_phase(), 0);
	use_100_mib(b);
	ck_assert_msg(
	    vm_data() <= d1 + 2 * MiB,
	    "VmData %zu MiB after a second proof, %zu after the first",
	    vm_data() >> 20, d1 >> 20);
	ck_assert_uint_eq(tu_stats().committed_bytes, s1.committed_bytes);
	for (int i = 0; i < 4; i++)
		zk_free(b[i]);
	ck_assert_int_eq(zk_end_phase(), 0);
}
END_TEST

/* ------------------------------------------------ verbose under RLIMIT_AS */

static void *nothing(void *arg)
{
	return arg;
}

/* Run by the suite in a child under RLIMIT_AS, with ZK_ALLOC_VERBOSE=1 and
 * a 64 GiB region asked for: one phase, then what it got, on stdout. */
static int rlimit_child(void)
{
	struct rlimit rl;
	size_t vm = tu_status_bytes("VmSize");
	if (getrlimit(RLIMIT_AS, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
	    vm == SIZE_MAX)
		return 3;
	size_t room = (size_t)rl.rlim_cur - vm;
	if (zk_begin_phase() != 0)
		return 4;
	char *p = zk_malloc(8 * MiB);
	if (p == NULL || !zk_owns(p))
		return 5;
	memset(p, 1, 8 * MiB);
	zk_free(p);
	/* The rest of the program still has room (a thread's stack). */
	pthread_t t;
	if (pthread_create(&t, NULL, nothing, NULL) != 0 ||
	    pthread_join(t, NULL) != 0)
		return 6;
	zk_end_phase();
	zk_stats_t s = {.size = sizeof(s)};
	if (zk_stats_get(&s) != 0)
		return 7;
	printf("child: room %zu region %zu reserved %zu\n", room, s.max_block,
	       s.reserved_bytes);
	return 0;
}

static char self[4096];

static int exec_child(void *arg)
{
	(void)arg;
	size_t vm = tu_status_bytes("VmSize");
	struct rlimit rl = {vm + ((size_t)4 << 30), vm + ((size_t)4 << 30)};
	if (setrlimit(RLIMIT_AS, &rl) != 0)
		return 90;
	dup2(STDERR_FILENO, STDOUT_FILENO); /* one captured stream */
	execl(self, self, "rlimit-child", (char *)NULL);
	return 91;
}

START_TEST(verbose_prints_the_real_reservation)
{
	static char out[1 << 16];
	static const char *const env[] = {"ZK_ALLOC_VERBOSE=1",
					  "ZK_ALLOC_REGION_GB=64", NULL};
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	ck_assert_int_gt(n, 0);
	self[n] = '\0';
	int rc = tu_run_child(exec_child, NULL, env, out, sizeof(out));
	ck_assert_msg(rc == 0, "child exited with %d:\n%s", rc, out);

	size_t room = 0, region = 0, reserved = 0;
	const char *line = strstr(out, "child: room ");
	ck_assert_msg(line != NULL &&
			  sscanf(line,
				 "child: room %zu region %zu reserved %zu",
				 &room, &region, &reserved) == 3,
		      "%s", out);
	/* Shrunk: at most half of the room left, far below 64 GiB. */
	ck_assert_msg(region > 0 && reserved >= region && reserved <= room / 2,
		      "region %zu, reserved %zu, room %zu", region, reserved,
		      room);
	char want[160];
	snprintf(want, sizeof(want),
		 "zkalloc: note: RLIMIT_AS: the phase region is %zu MiB "
		 "(asked: 65536 MiB)",
		 region / MiB);
	ck_assert_msg(strstr(out, want) != NULL, "no \"%s\" in:\n%s", want,
		      out);
	snprintf(want, sizeof(want),
		 "zkalloc: pool reserved: %zu MiB of address space (region "
		 "%zu MiB at ",
		 reserved / MiB, region / MiB);
	ck_assert_msg(strstr(out, want) != NULL, "no \"%s\" in:\n%s", want,
		      out);
	snprintf(want, sizeof(want),
		 "zkalloc: exit: 1 phases; pool: %.1f MiB "
		 "reserved",
		 (double)reserved / (double)MiB);
	ck_assert_msg(strstr(out, want) != NULL, "no \"%s\" in:\n%s", want,
		      out);
}
END_TEST

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "rlimit-child") == 0)
		return rlimit_child();
	Suite *s = suite_create("reservation");
	TCase *t = tcase_create("reservation");
	tcase_set_timeout(t, 60);
	tcase_add_test(t, commit_charge_follows_use);
	tcase_add_test(t, verbose_prints_the_real_reservation);
	suite_add_tcase(s, t);
	return tu_run_suite(s);
}
