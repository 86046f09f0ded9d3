/*
 * A consumer of an installed zkalloc, built by install_test.sh through
 * pkg-config. Usage: consumer api|dropin
 *   api     linked with `pkg-config --libs zkalloc`: zk_* calls only.
 *   dropin  linked with `pkg-config --libs zkalloc-override`: plain malloc
 *           inside a phase must be pool memory.
 */
#include <zkalloc.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	int dropin = argc > 1 && strcmp(argv[1], "dropin") == 0;
	if (zk_begin_phase() != 0)
		return 1;
	size_t n = (size_t)8 << 20;
	char *p = dropin ? malloc(n) : zk_malloc(n);
	if (p == NULL || !zk_owns(p)) {
		fprintf(stderr, "consumer: %p is not pool memory\n", (void *)p);
		return 1;
	}
	memset(p, 1, n);
	dropin ? free(p) : zk_free(p);
	zk_end_phase();
	printf("consumer %s: zkalloc %d.%d.%d ok\n", dropin ? "dropin" : "api",
	       ZK_VERSION_MAJOR, ZK_VERSION_MINOR, ZK_VERSION_PATCH);
	return 0;
}
