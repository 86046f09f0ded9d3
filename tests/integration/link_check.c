/*
 * The load-time wiring check (src/verbose.c) and ZK_ALLOC_VERBOSE, seen
 * from outside: this program runs itself as a child, captures the child's
 * stderr and checks it against its arguments:
 *   expect:TEXT   TEXT appears exactly once
 *   absent:TEXT   TEXT does not appear
 * The child begins and ends one phase, with a pool allocation, and exits.
 * Built several ways by meson (see meson.build): linked with libzkalloc
 * but jemalloc behind libc (malloc is glibc's), with jemalloc ahead of libc,
 * and with a second, prefixed "jemalloc" linked in (fake_rjem.c).
 */
#define _GNU_SOURCE
#include <zkalloc.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef WITH_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif
#ifdef WITH_FAKE_RJEM
void *_rjem_mallocx(size_t size, int flags);
#endif

static int child(void)
{
#ifdef WITH_JEMALLOC
	/* A reference, so that --as-needed keeps libjemalloc where the link
	 * line put it. */
	const char *v;
	size_t len = sizeof(v);
	if (mallctl("version", &v, &len, NULL, 0) != 0)
		return 3;
#endif
#ifdef WITH_FAKE_RJEM
	if (_rjem_mallocx(1, 0) != NULL)
		return 4;
#endif
	if (zk_begin_phase() != 0)
		return 1;
	void *p = zk_malloc((size_t)4 << 20);
	if (p == NULL || !zk_owns(p))
		return 2;
	memset(p, 1, (size_t)4 << 20);
	zk_free(p);
	zk_end_phase();
	return 0;
}

static int occurrences(const char *hay, const char *needle)
{
	int n = 0;
	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "child") == 0)
		return child();
	int fd[2];
	if (pipe(fd) != 0)
		return 99;
	pid_t pid = fork();
	if (pid == 0) {
		dup2(fd[1], STDERR_FILENO);
		close(fd[0]);
		close(fd[1]);
		execl("/proc/self/exe", argv[0], "child", (char *)NULL);
		_exit(127);
	}
	close(fd[1]);
	static char err[1 << 16];
	size_t n = 0;
	ssize_t r;
	while (n < sizeof(err) - 1 &&
	       (r = read(fd[0], err + n, sizeof(err) - 1 - n)) > 0)
		n += (size_t)r;
	err[n] = '\0';
	int st = 0;
	waitpid(pid, &st, 0);
	int bad = 0;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "link_check: child failed (status %d)\n", st);
		bad = 1;
	}
	for (int i = 1; i < argc; i++) {
		const char *text = strchr(argv[i], ':');
		if (text == NULL)
			return 99;
		text++;
		int k = occurrences(err, text);
		bool expect = strncmp(argv[i], "expect:", 7) == 0;
		if ((expect && k != 1) || (!expect && k != 0)) {
			fprintf(stderr, "link_check: \"%s\" appears %d times\n",
				text, k);
			bad = 1;
		}
	}
	fprintf(stderr, "--- child's stderr:\n%s---\n", err);
	return bad;
}
