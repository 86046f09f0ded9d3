#!/usr/bin/env bash
# The drop-in outside phases against jemalloc, in instructions (valgrind's
# callgrind): the same glibc-linked program, preloaded with zkalloc's
# drop-in and then with libjemalloc.so.2, runs a tight malloc+free loop of
# 16-256 B and dropin_churn's small-allocation churn (one thread). Each is
# counted at N and at N/2 operations and the difference divided by N/2, so
# start-up and exit cancel out. Prints instructions per malloc+free pair (per
# churn operation) under each library and their ratio (issue 14: the drop-in
# at most 1.05 x jemalloc's). A benchmark: exit 0 unless a run fails.
# Usage: callgrind.sh <zkbench-dropin-churn> <libzkalloc_override.so> <libjemalloc.so.2>
#        [loop pairs] [churn ops]
set -euo pipefail
prog=$1 override=$2 jemalloc=$3
loop_n=${4:-2000000}
churn_n=${5:-400000}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# instructions <library> <args...>: Ir of the whole run under callgrind
instructions() {
	local lib=$1; shift
	local log=$tmp/log
	if ! LD_PRELOAD=$lib valgrind --tool=callgrind \
		--callgrind-out-file="$tmp/out.%p" "$prog" "$@" 2>"$log"; then
		echo "callgrind.sh: $prog $* under $lib failed:" >&2
		tail -n 20 "$log" >&2
		exit 1
	fi
	sed -n 's/^==[0-9]*== Collected : \([0-9]*\)$/\1/p' "$log"
}

# per_op <library> <n> <args before n...>: (Ir(n) - Ir(n/2)) / (n/2)
per_op() {
	local lib=$1 n=$2; shift 2
	local full half
	full=$(instructions "$lib" "$@" "$n")
	half=$(instructions "$lib" "$@" $((n / 2)))
	[ -n "$full" ] && [ -n "$half" ] || { echo "callgrind.sh: no instruction count" >&2; exit 1; }
	awk -v a="$full" -v b="$half" -v n=$((n / 2)) 'BEGIN { printf "%.2f", (a - b) / n }'
}

for w in loop churn; do
	if [ $w = loop ]; then
		n=$loop_n what="tight malloc+free loop, 16-256 B, per pair"
		z=$(per_op "$override" "$n" loop)
		j=$(per_op "$jemalloc" "$n" loop)
	else
		n=$churn_n what="dropin_churn (1 thread), per operation"
		z=$(per_op "$override" "$n" child 1)
		j=$(per_op "$jemalloc" "$n" child 1)
	fi
	awk -v w="$what" -v z="$z" -v j="$j" 'BEGIN {
		printf "dropin-callgrind %s: drop-in %.2f instructions, jemalloc %.2f, ratio %.3f (%+.2f per operation; target <= 1.05)\n",
			w, z, j, z / j, z - j }'
done
