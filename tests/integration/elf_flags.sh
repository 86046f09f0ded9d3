#!/usr/bin/env bash
# ELF facts of the shared libraries that dlopen/dlclose rely on: marked
# NODELETE (dlclose leaves them mapped), and their initial-exec TLS small
# enough for glibc's static TLS reserve (the surplus a dlopen'ed object may
# use: at least 512 bytes on glibc 2.36 x86-64; 256 here leaves room for others).
# Usage: elf_flags.sh LIB...
set -euo pipefail
fail=0
for lib in "$@"; do
	# grep reads a variable: with pipefail, `readelf | grep -q` fails
	# whenever grep exits before readelf has written everything.
	dyn=$(readelf -dW "$lib")
	grep -q 'FLAGS_1.*NODELETE' <<<"$dyn" ||
		{ echo "FAIL: $lib is not NODELETE" >&2; fail=1; }
	tls=0
	if grep -q 'FLAGS.*STATIC_TLS' <<<"$dyn"; then
		memsz=$(readelf -lW "$lib" | awk '$1 == "TLS" { print $6 }')
		tls=$((${memsz:-0}))
		[ "$tls" -le 256 ] ||
			{ echo "FAIL: $lib has $tls bytes of initial-exec TLS" >&2; fail=1; }
	fi
	echo "$lib: initial-exec TLS $tls bytes"
done
exit $fail
