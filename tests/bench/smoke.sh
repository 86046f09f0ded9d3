#!/usr/bin/env bash
# Smoke test of the prover-shaped benchmark: runs zkbench-prover (modes malloc
# and ideal) and zkbench-prover-zk (mode zk with the defaults, with explicit
# routing of large requests only, with THP and in checked mode) on small
# problems of every scenario, and fails unless every run of the same problem
# prints the same checksum and exits 0. Every run also checks the output each
# proof grew by realloc and kept past its phase (exit 3 if it changed: zkalloc
# 0.2 keeps every block valid until freed). The live-bytes yardstick must not
# depend on the allocator (single-threaded runs print the same live peak), and
# the last check proves the kept-output check can fail.
# Usage: smoke.sh <zkbench-prover> <zkbench-prover-zk>
set -euo pipefail
plain=$1
zk=$2
fail=0
last="" # checksum agreed by the last check()

# check <name> <expected checksum or ""> <runs> <args...>: run each of the
# modes in <runs> (labels below) on one problem and compare checksums
check() {
	local name=$1 ref=$2 which=$3; shift 3
	local out ck label cmd status
	for label in $which; do
		case $label in
		malloc) cmd="$plain --mode malloc" ;;
		malloc-1thread) cmd="$plain --mode malloc --threads 1" ;;
		ideal) cmd="$plain --mode ideal" ;;
		zk) cmd="$zk --mode zk" ;;
		zk-min) cmd="env ZK_ALLOC_MIN_BYTES=32769 $zk --mode zk" ;;
		zk-thp) cmd="env ZK_ALLOC_THP=always $zk --mode zk" ;;
		zk-check) cmd="env ZK_ALLOC_CHECK=1 $zk --mode zk" ;;
		esac
		status=0
		# shellcheck disable=SC2086 # the command line is split on purpose
		out=$($cmd --quiet "$@" 2>&1) || status=$?
		if [ "$status" != 0 ]; then
			echo "FAIL $name/$label: exit status $status$([ "$status" = 3 ] && echo ' (a kept realloc output changed after its phase)')"
			tail -n 3 <<<"$out"
			fail=1
			continue
		fi
		ck=$(sed -n 's/^checksum \([0-9a-f]*\)$/\1/p' <<<"$out")
		if [ -z "$ck" ]; then
			echo "FAIL $name/$label: no checksum printed"
			fail=1
		elif [ -z "$ref" ]; then
			ref=$ck
			echo "ok   $name/$label checksum $ck"
		elif [ "$ck" != "$ref" ]; then
			echo "FAIL $name/$label: checksum $ck, expected $ref"
			fail=1
		else
			echo "ok   $name/$label checksum $ck"
		fi
	done
	last=$ref
}

all="malloc ideal zk zk-min zk-check"
check small "" "malloc malloc-1thread $all zk-thp" --preset small --log-n 11 --small 5000 --proofs 2
# rotate: the trace of proof 1 from a new thread, of proof 2 from worker 1, of
# proof 3 from another new thread; same problem as steady
check steady3 "" "malloc ideal zk" --preset small --log-n 11 --small 5000 --proofs 3 --threads 3
check rotate "$last" "$all" --preset small --log-n 11 --small 5000 --proofs 3 --threads 3 --scenario rotate
check spike "" "$all" --preset small --log-n 11 --small 2000 --proofs 5 --threads 3 --scenario spike --spike-mib 8
check vary "" "malloc ideal zk" --preset vary --proofs 3 --log-n 11 --small 2000
check grow "" "malloc ideal zk zk-min" --preset grow --proofs 2 --log-n 11 --small 2000
check columns "" "$all zk-thp" --scenario columns --preset small --proofs 3 --threads 3
check columns-1thread "" "malloc ideal zk zk-min" --scenario columns --preset small --proofs 2 --threads 1

# the live-bytes yardstick counts the sizes the workload asks for: on one
# thread (no scheduling in it) it is the same number under every allocator
# that grows by realloc (ideal preallocates, so it is not compared)
for sc in steady columns; do
	args=(--scenario "$sc" --preset small --proofs 2 --threads 1 --quiet)
	[ "$sc" = steady ] && args+=(--log-n 11 --small 2000)
	a=$("$plain" --mode malloc "${args[@]}" | sed -n 's/^live_peak_bytes //p')
	b=$("$zk" --mode zk "${args[@]}" | sed -n 's/^live_peak_bytes //p')
	if [ -n "$a" ] && [ "$a" -gt 0 ] && [ "$a" = "$b" ]; then
		echo "ok   live-peak/$sc: $a bytes under malloc and zk"
	else
		echo "FAIL live-peak/$sc: '$a' bytes under malloc, '$b' under zk"
		fail=1
	fi
done

# the kept-output check must see a damaged output (exit 3)
status=0
"$plain" --mode malloc --preset small --log-n 11 --small 2000 --proofs 2 --quiet --keep-damage >/dev/null 2>&1 || status=$?
if [ "$status" = 3 ]; then
	echo "ok   keep-damage: a damaged kept output is reported (exit 3)"
else
	echo "FAIL keep-damage: exit status $status, expected 3"
	fail=1
fi
exit $fail
