/* Checked mode: the SIGSEGV reporter and pointer checks (check.h). */
#define _GNU_SOURCE
#include "check.h"

#include "os.h"
#include "phase.h"
#include "pool.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool zk_check_on;

static struct sigaction old_segv;

static void report(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
static void report(const char *fmt, ...)
{
	char buf[768];
	int n = snprintf(buf, sizeof(buf), "zkalloc: ZK_ALLOC_CHECK: ");
	va_list ap;
	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if ((size_t)n > sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	zk_os_warn(buf, (size_t)n);
	/* Proven corruption: the one case where the library aborts. */
	abort();
}

static unsigned long long cur(void)
{
	return (unsigned long long)atomic_load_explicit(&zk_g.epoch,
							memory_order_relaxed);
}

void zk_check_pointer(const void *p, const char *op)
{
	if (!zk_pool_owns(p) || zk_pool_page_used(p))
		return;
	void *start;
	size_t size;
	uint32_t freed;
	if (zk_pool_find_freed(p, &start, &size, &freed))
		report("%s of freed memory (double free?): pointer %p, in the "
		       "range %p of %zu bytes freed in phase %u, current phase "
		       "%llu",
		       op, p, start, size, freed, cur());
	report("%s of a pointer zkalloc never handed out (or freed more than "
	       "a phase ago): pointer %p, current phase %llu",
	       op, p, cur());
}

static void on_segv(int sig, siginfo_t *si, void *uc)
{
	void *start;
	size_t size;
	uint32_t freed;
	if (zk_pool_owns(si->si_addr) && !zk_pool_page_used(si->si_addr) &&
	    zk_pool_find_freed(si->si_addr, &start, &size, &freed))
		report("use after free (address %p): in the range %p of %zu "
		       "bytes freed in phase %u, current phase %llu",
		       si->si_addr, start, size, freed, cur());
	/* Not ours: hand it to the previous handler, and stay installed. */
	if ((old_segv.sa_flags & SA_SIGINFO) && old_segv.sa_sigaction != NULL) {
		old_segv.sa_sigaction(sig, si, uc);
	} else if (old_segv.sa_handler != SIG_DFL &&
		   old_segv.sa_handler != SIG_IGN) {
		old_segv.sa_handler(sig);
	} else {
		/* Default disposition: let the repeated fault kill the
		 * process, as it would without zkalloc. */
		struct sigaction dfl;
		memset(&dfl, 0, sizeof(dfl));
		dfl.sa_handler = SIG_DFL;
		sigaction(SIGSEGV, &dfl, NULL);
	}
}

void zk_check_init(void)
{
	if (zk_g.opt[ZK_OPT_CHECK] == 0)
		return;
	__atomic_store_n(&zk_check_on, true, __ATOMIC_RELAXED);
	zk_route_checked();
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_segv;
	/* SA_ONSTACK: a thread with an alternate signal stack (a stack
	 * overflow reporter, Rust's runtime) keeps using it. */
	sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &old_segv);
}
