/*
 * Checked mode (ZK_ALLOC_CHECK=1): each phase-contract violation is caught
 * with a message naming the pointer, its size, the phase it was allocated
 * in and the current phase, and the process aborts. Each violation runs in
 * a forked child; the parent checks the signal and the exact message. A
 * correct program in checked mode runs clean, and with checking off the
 * same stale write goes unreported (the mode is really off by default).
 */
#include "check.h" /* src/check.h: zk_check_pause_hook */
#include "stress_util.h"

#include <zkalloc.h>

#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MiB	((size_t)1 << 20)
#define ABORTED (128 + SIGABRT)

static char err[1 << 16];
static const char *const checked[] = {"ZK_ALLOC_CHECK=1", NULL};

/* The child announces the pointer it is about to misuse. */
static void announce(const void *p)
{
	fprintf(stderr, "P=%p\n", p);
	fflush(stderr);
}

/* Expect an abort whose report has what and the expected fields for the
 * announced pointer. */
static void expect_report(int rc, const char *what, const char *fields)
{
	ck_assert_msg(rc == ABORTED,
		      "child status %d, expected SIGABRT; "
		      "stderr:\n%s",
		      rc, su_tail(err));
	const char *ann = strstr(err, "P=");
	ck_assert_ptr_nonnull(ann);
	void *p = NULL;
	ck_assert_int_eq(sscanf(ann, "P=%p", &p), 1);
	char want[256];
	snprintf(want, sizeof(want), "pointer %p, %s", p, fields);
	ck_assert_msg(
	    strstr(err, "zkalloc: ZK_ALLOC_CHECK: ") != NULL &&
		strstr(err, what) != NULL && strstr(err, want) != NULL,
	    "want \"%s\" and \"%s\" in:\n%s", what, want, su_tail(err));
}

static unsigned char *phase1_block(void)
{
	zk_begin_phase();
	unsigned char *p = zk_malloc(MiB);
	memset(p, 1, MiB);
	announce(p);
	zk_end_phase();
	return p;
}

static int write_after_begin(void *arg)
{
	(void)arg;
	unsigned char *p = phase1_block();
	zk_begin_phase();
	p[4096] = 2; /* must fault */
	return 0;
}

static int read_after_begin(void *arg)
{
	(void)arg;
	volatile unsigned char *p = phase1_block();
	zk_begin_phase();
	zk_begin_phase();  /* EBUSY: changes nothing */
	return p[MiB - 1]; /* must fault */
}

START_TEST(use_after_begin_is_caught)
{
	expect_report(
	    tu_run_child(write_after_begin, NULL, checked, err, sizeof(err)),
	    "use after zk_begin_phase",
	    "size 1048576, allocated in phase 1, current phase 2");
	expect_report(
	    tu_run_child(read_after_begin, NULL, checked, err, sizeof(err)),
	    "use after zk_begin_phase",
	    "size 1048576, allocated in phase 1, current phase 2");
}
END_TEST

static int free_after_begin(void *arg)
{
	(void)arg;
	unsigned char *p = phase1_block();
	zk_begin_phase();
	zk_begin_phase();
	zk_end_phase();
	zk_begin_phase(); /* phase 3 */
	zk_free(p);
	return 0;
}

static int realloc_after_begin(void *arg)
{
	(void)arg;
	unsigned char *p = phase1_block();
	zk_begin_phase();
	return zk_realloc(p, 2 * MiB) != NULL;
}

START_TEST(free_or_realloc_after_begin_is_caught)
{
	expect_report(
	    tu_run_child(free_after_begin, NULL, checked, err, sizeof(err)),
	    "zk_free after zk_begin_phase",
	    "size 1048576, allocated in phase 1, current phase 3");
	expect_report(
	    tu_run_child(realloc_after_begin, NULL, checked, err, sizeof(err)),
	    "zk_realloc after zk_begin_phase",
	    "size 1048576, allocated in phase 1, current phase 2");
}
END_TEST

static int double_free(void *arg)
{
	size_t n = (size_t)(uintptr_t)arg;
	zk_begin_phase();
	void *p = zk_malloc(n);
	announce(p);
	zk_free(p);
	zk_free(p);
	return 0;
}

static int double_free_after_realloc(void *arg)
{
	(void)arg;
	zk_begin_phase();
	void *p = zk_malloc(64 * 1024);
	void *wall = zk_malloc(64 * 1024); /* no room to grow in place */
	void *q = zk_realloc(p, 8 * MiB);  /* moves: p is freed */
	(void)wall;
	announce(p);
	if (q == p)
		return 3;
	zk_free(p);
	return 0;
}

START_TEST(double_free_is_caught)
{
	expect_report(tu_run_child(double_free, (void *)(uintptr_t)(3 * MiB),
				   checked, err, sizeof(err)),
		      "zk_free of a freed block (double free)",
		      "size 3145728, allocated in phase 1, current phase 1");
	expect_report(tu_run_child(double_free, (void *)(uintptr_t)40000,
				   checked, err, sizeof(err)),
		      "(double free)",
		      "size 40000, allocated in phase 1, current phase 1");
	expect_report(tu_run_child(double_free_after_realloc, NULL, checked,
				   err, sizeof(err)),
		      "(double free)",
		      "size 65536, allocated in phase 1, current phase 1");
}
END_TEST

static int free_interior(void *arg)
{
	(void)arg;
	zk_begin_phase();
	unsigned char *p = zk_malloc(MiB);
	announce(p + 4096);
	zk_free(p + 4096);
	return 0;
}

START_TEST(free_of_pointer_never_returned_is_caught)
{
	expect_report(
	    tu_run_child(free_interior, NULL, checked, err, sizeof(err)),
	    "zk_free of a pointer zkalloc never returned",
	    "size unknown, allocated in no phase, current phase 1");
}
END_TEST

/* Hold one thread inside a phase operation while main begins a phase. */
static _Atomic int inside;
static _Atomic bool pause_armed;

static void pause_inside(void)
{
	if (!atomic_exchange(&pause_armed, false))
		return;
	atomic_store(&inside, 1);
	for (;;)
		pause(); /* until the report aborts the process */
}

static void *alloc_then_pause(void *arg)
{
	(void)arg;
	atomic_store(&pause_armed, true);
	zk_malloc(2 * MiB);
	return NULL;
}

static void *free_then_pause(void *arg)
{
	void *p = zk_malloc(5 * MiB);
	*(void **)arg = p;
	announce(p);
	atomic_store(&pause_armed, true);
	zk_free(p);
	return NULL;
}

static int begin_while_inside(void *arg)
{
	void *slot = NULL;
	zk_check_pause_hook = pause_inside;
	zk_begin_phase();
	if (arg == NULL)
		announce(NULL);
	pthread_t th;
	pthread_create(&th, NULL, arg ? free_then_pause : alloc_then_pause,
		       &slot);
	while (!atomic_load(&inside))
		usleep(1000);
	zk_end_phase();
	zk_begin_phase(); /* must be reported */
	return 0;
}

START_TEST(begin_during_phase_operation_is_caught)
{
	expect_report(
	    tu_run_child(begin_while_inside, NULL, checked, err, sizeof(err)),
	    "zk_begin_phase (starting phase 2) while another thread "
	    "is inside an allocation",
	    "size 2097152, allocated in phase 1, current phase 1");
	expect_report(tu_run_child(begin_while_inside, (void *)1, checked, err,
				   sizeof(err)),
		      "while another thread is inside zk_free",
		      "size 5242880, allocated in phase 1, current phase 1");
}
END_TEST

/* A correct program: nothing reported, and the mode really is on. */
static void *exiting_owner(void *arg)
{
	unsigned char **out = arg;
	*out = zk_malloc(3 * MiB);
	tu_fill(*out, 3 * MiB, 42);
	return NULL;
}

static int correct_program(void *arg)
{
	(void)arg;
	void *keep = NULL;
	for (unsigned ph = 0; ph < su_scale(200, 50); ph++) {
		if (zk_begin_phase() != 0)
			return 2;
		if (zk_arena_flags() != 0)
			return 3; /* checked mode routes all through zk_* */
		void *a = zk_malloc(MiB), *b = zk_calloc(4, 65536);
		void *c = zk_aligned_alloc(4096, 200000);
		if (!a || !b || !c || !zk_owns(a) || !zk_owns(b))
			return 4;
		memset(a, 1, MiB);
		a = zk_realloc(a, 3 * MiB);
		a = zk_realloc(a, 100);
		b = zk_realloc(b, 4 * MiB);
		zk_free(c);
		keep = zk_malloc(100); /* ordinary memory across phases */
		unsigned char *orphan;
		pthread_t th;
		pthread_create(&th, NULL, exiting_owner, &orphan);
		pthread_join(th, NULL);
		zk_end_phase();
		/* Phase memory stays valid, and may be freed, until the next
		 * begin, also memory of a thread that exited. */
		if (tu_check(orphan, 3 * MiB, 42) != SIZE_MAX)
			return 5;
		zk_free(orphan);
		zk_free(a);
		zk_free(keep);
		(void)b; /* dropped with the phase */
	}
	return 0;
}

START_TEST(correct_program_runs_clean)
{
	int rc = tu_run_child(correct_program, NULL, checked, err, sizeof(err));
	ck_assert_msg(rc == 0, "status %d; stderr:\n%s", rc, su_tail(err));
	ck_assert_ptr_null(strstr(err, "ZK_ALLOC_CHECK"));
}
END_TEST

static int stale_write_unchecked(void *arg)
{
	(void)arg;
	unsigned char *p = phase1_block();
	zk_begin_phase();
	if (zk_arena_flags() == 0)
		return 2; /* off: the opt-in flags are available */
	p[4096] = 2; /* a contract violation that nothing reports when off */
	return 0;
}

START_TEST(off_by_default)
{
	const char *const off[] = {"ZK_ALLOC_CHECK", NULL};
	int rc =
	    tu_run_child(stale_write_unchecked, NULL, off, err, sizeof(err));
	ck_assert_msg(rc == 0, "status %d; stderr:\n%s", rc, su_tail(err));
	ck_assert_ptr_null(strstr(err, "ZK_ALLOC_CHECK"));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("stress_check");
	TCase *tc = tcase_create("checked_mode");
	tcase_set_timeout(tc, 0);
	tcase_add_test(tc, use_after_begin_is_caught);
	tcase_add_test(tc, free_or_realloc_after_begin_is_caught);
	tcase_add_test(tc, double_free_is_caught);
	tcase_add_test(tc, free_of_pointer_never_returned_is_caught);
	tcase_add_test(tc, begin_during_phase_operation_is_caught);
	tcase_add_test(tc, correct_program_runs_clean);
	tcase_add_test(tc, off_by_default);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
