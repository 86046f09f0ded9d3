/*
 * libFuzzer target: zk_mallctl over fuzzed names, buffer pointers, buffer
 * lengths and new values. Invariants checked on every input:
 *   - the result is one of the documented codes;
 *   - on error, no byte of the old buffer and not *oldlenp changes; on
 *     success *oldlenp is left as it was (zkalloc's sizes are exact);
 *   - a read writes at most *oldlenp bytes (buffers are exactly that size,
 *     so AddressSanitizer catches any overrun);
 *   - the phase state (active, epoch) changes only through a successful
 *     zk.phase.begin / zk.phase.end, and exactly as documented.
 * Names are kept under "zk.": every other name goes to je_mallctl unchanged,
 * and jemalloc's own namespace includes calls meant to change the process
 * (arena.<i>.destroy, thread.arena, ...), which is jemalloc's to fuzz.
 * Input layout: [flags][name index][oldlen][newlen][name bytes... \0][new];
 * flags bit 3: a name of the table, whose index is the name index byte
 * plus 256 times flags bits 4-7, modulo the table's size.
 */
#include <zkalloc.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every name of src/ctl.c's tables (actions, options, one per zk_stats_t
 * field), then prefixes and 0.1's retired option names (ENOENT). */
static const char *const names[] = {
    "zk.version",
    "zk.phase.begin",
    "zk.phase.end",
    "zk.phase.active",
    "zk.phase.epoch",
    "zk.thread.arena_flags",
    "zk.opt.region_size",
    "zk.opt.arenas",
    "zk.opt.min_bytes",
    "zk.opt.thp",
    "zk.opt.check",
    "zk.opt.verbose",
    "zk.opt.trim_phases",
    "zk.stats.version",
    "zk.stats.region_reserved",
    "zk.stats.phase_active",
    "zk.stats.epoch",
    "zk.stats.slab_size",
    "zk.stats.nslabs",
    "zk.stats.slabs_in_use",
    "zk.stats.resident_bytes",
    "zk.stats.max_slab_resident",
    "zk.stats.overflow_count",
    "zk.stats.overflow_bytes",
    "zk.stats.arenas_created",
    "zk.stats.arenas_destroyed",
    "zk.stats.hook_zeroed_bytes",
    "zk.stats.small_resident_bytes",
    "zk.stats.small_overflow_count",
    "zk.stats.shared_count",
    "zk.stats.arenas_reset",
    "zk.stats.trims",
    "zk.stats.trimmed_bytes",
    "zk.stats.begin_ns_last",
    "zk.stats.committed_bytes",
    "zk.stats.reserved_bytes",
    "zk.stats.max_block",
    "zk.stats.kept_blocks",
    "zk.stats.kept_bytes",
    "zk.stats.live_bytes",
    "zk.stats.metadata_bytes",
    "zk.stats.free_bytes",
    "zk.stats.top_bytes",
    "zk.stats.binds",
    "zk.stats.bind_failures",
    "zk.stats.madvise_failures",
    "zk.stats.mprotect_failures",
    "zk.stats.commit_failures",
    "zk.stats.quarantined_bytes",
    "zk.stats.pool_degraded",
    "zk.",
    "zk.phase",
    "zk.opt",
    "zk.stats",
    "zk.stats.size",
    "zk.opt.slab_size",
    "zk.opt.nslabs",
    "zk.opt.promote_bytes",
    "zk.opt.small",
    "zk.opt.shared_bytes",
};
#define NNAMES (sizeof(names) / sizeof(names[0]))

static void die(const char *what, const char *name, int rc)
{
	fprintf(stderr, "fuzz_mallctl: %s (name \"%s\", rc %d)\n", what, name,
		rc);
	abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 4)
		return 0;
	uint8_t flags = data[0];
	size_t oldlen = data[2] % 33, newlen = data[3] % 33;
	data += 4;
	size -= 4;
	char name[96];
	if (flags & 8) {
		snprintf(
		    name, sizeof(name), "%s",
		    names[(data[-3] | (size_t)(flags >> 4) << 8) % NNAMES]);
	} else {
		/* "zk." + fuzzed bytes up to the first NUL. */
		size_t n = 0;
		while (n < size && n < sizeof(name) - 4 && data[n] != 0)
			n++;
		memcpy(name, "zk.", 3);
		memcpy(name + 3, data, n);
		name[3 + n] = '\0';
		data += n < size ? n + 1 : n;
		size -= n < size ? n + 1 : n;
	}
	/* Exact-size heap buffers: any overrun is an ASan report. */
	unsigned char *old = malloc(oldlen ? oldlen : 1);
	unsigned char *nw = malloc(newlen ? newlen : 1);
	unsigned char *copy = malloc(oldlen ? oldlen : 1);
	memset(old, 0xA5, oldlen ? oldlen : 1);
	memcpy(copy, old, oldlen ? oldlen : 1);
	for (size_t i = 0; i < newlen; i++)
		nw[i] = i < size ? data[i] : 0;
	/* A string option's new value is a pointer (const char *): hand it a
	 * pointer to a fuzzed string, never fuzzed bytes as a pointer. */
	char text[33];
	if (strcmp(name, "zk.opt.thp") == 0 && newlen == sizeof(const char *)) {
		size_t k = size < 32 ? size : 32;
		memcpy(text, data, k);
		text[k] = '\0';
		const char *tp = text;
		memcpy(nw, &tp, sizeof(tp));
	}
	size_t len = oldlen;
	bool active = zk_phase_active();
	uint64_t epoch = zk_phase_epoch();

	int rc =
	    zk_mallctl(name, flags & 1 ? old : NULL, flags & 2 ? &len : NULL,
		       flags & 4 ? nw : NULL, newlen);

	if (rc != 0 && rc != ENOENT && rc != EINVAL && rc != EPERM &&
	    rc != EBUSY && rc != EFAULT)
		die("undocumented result", name, rc);
	bool begin = strcmp(name, "zk.phase.begin") == 0 && rc == 0;
	bool end = strcmp(name, "zk.phase.end") == 0 && rc == 0;
	if (rc != 0 && (memcmp(old, copy, oldlen) != 0 || len != oldlen))
		die("buffer or length written on error", name, rc);
	if (rc == 0 && len != oldlen)
		die("length changed on success", name, rc);
	/* EBUSY: zk.phase.begin during a phase, or an option written once
	 * the first phase has begun. */
	if (rc == EBUSY && !(strcmp(name, "zk.phase.begin") == 0 && active) &&
	    !(strncmp(name, "zk.opt.", 7) == 0 && epoch > 0))
		die("EBUSY outside zk.phase.begin during a phase", name, rc);
	if (zk_phase_epoch() != epoch + (begin ? 1 : 0))
		die("epoch changed", name, rc);
	if (zk_phase_active() != (begin ? true : end ? false : active))
		die("active flag changed", name, rc);
	/* Phase memory still works whatever state the calls left. */
	if (zk_phase_active()) {
		void *p = zk_malloc(1 << 16);
		if (p == NULL)
			die("allocation failed", name, rc);
		memset(p, 1, 1 << 16);
		zk_free(p);
	}
	free(old);
	free(nw);
	free(copy);
	return 0;
}
