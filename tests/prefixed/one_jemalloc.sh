#!/usr/bin/env bash
# Symbol-level check that an executable holds exactly one jemalloc, the
# prefixed one, with its entry points wrapped by zkalloc.
# Usage: one_jemalloc.sh EXECUTABLE PREFIX
set -euo pipefail
exe=$1 prefix=$2
fail=0
bad() { echo "FAIL: $*" >&2; fail=1; }

if readelf -d "$exe" | grep -q 'NEEDED.*libjemalloc'; then
	bad "$exe needs a shared libjemalloc: $(readelf -d "$exe" | grep NEEDED | tr -s ' ')"
fi
syms=$(nm "$exe")
# Defined functions whose name ends in mallocx / mallctl: jemalloc's
# (prefixed), zkalloc's wrapper and zk_ entry point, nothing else.
for f in mallocx mallctl sdallocx; do
	got=$(awk -v f="$f" '$2 ~ /^[TtWw]$/ && $3 ~ ("(^|_)" f "$") { print $3 }' <<<"$syms" | sort | tr '\n' ' ')
	want=$(printf '%s\n' "__wrap_$prefix$f" "$prefix$f" "zk_$f" | sort | tr '\n' ' ')
	[ "$got" = "$want" ] || bad "functions named *$f: '$got', want '$want'"
done
# One copy of jemalloc's internals (a private-namespace function).
n=$(grep -c " [Tt] ${prefix}je_arena_new$" <<<"$syms" || true)
[ "$n" = 1 ] || bad "${prefix}je_arena_new defined $n times"
if grep -q ' U .*__real_' <<<"$syms"; then
	bad "unresolved __real_ references: $(grep ' U .*__real_' <<<"$syms" | tr -s ' ')"
fi
[ $fail = 0 ] && echo "one jemalloc ($prefix), entry points wrapped: $exe"
exit $fail
