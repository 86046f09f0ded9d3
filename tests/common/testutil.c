#define _GNU_SOURCE
#include "testutil.h"

#include <check.h>
#include <zkalloc.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

long tu_minor_faults(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_minflt;
}

size_t tu_rss_bytes(void)
{
	long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f == NULL)
		return 0;
	if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
		rss = 0;
	fclose(f);
	return (size_t)rss * (size_t)sysconf(_SC_PAGESIZE);
}

size_t tu_status_bytes(const char *field)
{
	/* open/read, no stdio: it may run inside a phase without
	 * allocating. */
	static __thread char buf[4096];
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return SIZE_MAX;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return SIZE_MAX;
	buf[n] = '\0';
	size_t len = strlen(field);
	for (const char *l = buf; l != NULL && *l != '\0';
	     l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
		if (strncmp(l, field, len) == 0 && l[len] == ':') {
			const char *d = l + len + 1;
			while (*d == ' ' || *d == '\t')
				d++;
			size_t kb = 0;
			if (*d < '0' || *d > '9')
				return SIZE_MAX;
			for (; *d >= '0' && *d <= '9'; d++)
				kb = kb * 10 + (size_t)(*d - '0');
			return kb * 1024;
		}
	return SIZE_MAX;
}

int tu_run_child(int (*fn)(void *), void *arg, const char *const *env,
		 char *err, size_t errlen)
{
	int fd[2];
	if (pipe(fd) != 0)
		return -1;
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		close(fd[0]);
		dup2(fd[1], STDERR_FILENO);
		close(fd[1]);
		for (size_t i = 0; env != NULL && env[i] != NULL; i++) {
			const char *eq = strchr(env[i], '=');
			if (eq == NULL) {
				unsetenv(env[i]);
			} else {
				char name[128];
				snprintf(name, sizeof(name), "%.*s",
					 (int)(eq - env[i]), env[i]);
				setenv(name, eq + 1, 1);
			}
		}
		alarm(120); /* a hang is a failure, not a stuck CI */
		int rc = fn(arg);
		fflush(NULL);
		_exit(rc);
	}
	close(fd[1]);
	size_t n = 0;
	ssize_t r;
	char sink[4096];
	for (;;) {
		char *dst = n + 1 < errlen ? err + n : sink;
		size_t room = n + 1 < errlen ? errlen - 1 - n : sizeof(sink);
		r = read(fd[0], dst, room);
		if (r <= 0)
			break;
		if (dst != sink)
			n += (size_t)r;
	}
	if (errlen > 0)
		err[n] = '\0';
	close(fd[0]);
	int st;
	while (waitpid(pid, &st, 0) < 0)
		;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* A word per 8 bytes, derived from tag and the word's offset, so a block
 * moved or overwritten by another block's pattern is told apart. A tail
 * shorter than a word holds the word's first bytes: any prefix of a filled
 * block checks as a block of that length (realloc shrinks). */
static unsigned char tail_byte(size_t i, uint64_t tag)
{
	uint64_t w = (tag + (i & ~(size_t)7)) * 0x9E3779B97F4A7C15ull;
	unsigned char b[8];
	memcpy(b, &w, 8);
	return b[i & 7];
}

void tu_fill(void *p, size_t n, uint64_t tag)
{
	unsigned char *b = p;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t w = (tag + i) * 0x9E3779B97F4A7C15ull;
		memcpy(b + i, &w, 8);
	}
	for (; i < n; i++)
		b[i] = tail_byte(i, tag);
}

size_t tu_check(const void *p, size_t n, uint64_t tag)
{
	const unsigned char *b = p;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t w = (tag + i) * 0x9E3779B97F4A7C15ull, v;
		memcpy(&v, b + i, 8);
		if (v != w)
			return i;
	}
	for (; i < n; i++)
		if (b[i] != tail_byte(i, tag))
			return i;
	return SIZE_MAX;
}

int tu_all_zero(const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		if (b[i] != 0)
			return 0;
	return 1;
}

int tu_run_suite(Suite *s)
{
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}

zk_stats_t tu_stats(void)
{
	zk_stats_t s = {.size = sizeof(s)};
	ck_assert_int_eq(zk_stats_get(&s), 0);
	return s;
}
