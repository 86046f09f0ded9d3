#!/usr/bin/env bash
# Smoke test of the prover-shaped benchmark: runs zkbench-prover (modes malloc
# and ideal) and zkbench-prover-zk (mode zk, with and without the options a
# prover would set) on small problems, and fails unless every run of the same
# problem prints the same checksum and exits 0. Every run also checks the
# output each proof grew by realloc and kept past its phase (exit 3 if it
# changed; zk with the library's defaults grows it with zk_realloc); the rotate scenario must give the steady scenario's checksum; the
# spike scenario runs with a small spike. The last check proves the kept-output
# check can fail.
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
		# promotion makes a kept vector grown by zk_realloc phase memory
		# (invalid after the next begin): these grow it in an explicit
		# ordinary arena; plain zk grows it with zk_realloc
		zk-promote) cmd="env ZK_ALLOC_PROMOTE_BYTES=65536 $zk --mode zk --keep-via arena" ;;
		zk-all) cmd="env ZK_ALLOC_PROMOTE_BYTES=1048576 ZK_ALLOC_SMALL=resident ZK_ALLOC_THP=always $zk --mode zk --keep-via arena" ;;
		esac
		status=0
		# shellcheck disable=SC2086 # the command line is split on purpose
		out=$($cmd --quiet "$@") || status=$?
		if [ "$status" != 0 ]; then
			echo "FAIL $name/$label: exit status $status$([ "$status" = 3 ] && echo ' (a kept realloc output changed after its phase)')"
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

check small "" "malloc malloc-1thread ideal zk zk-all" --preset small --proofs 2
# rotate: the trace of proof 1 from a new thread, of proof 2 from worker 1, of
# proof 3 from another new thread; same problem as steady
check steady3 "" "malloc ideal zk" --preset small --log-n 12 --proofs 3 --threads 3
check rotate "$last" "malloc ideal zk zk-all" --preset small --log-n 12 --proofs 3 --threads 3 --scenario rotate
check spike "" "malloc ideal zk zk-all" --preset small --log-n 11 --small 2000 --proofs 5 --threads 3 --scenario spike --spike-mib 8
check vary "" "malloc ideal zk" --preset vary --proofs 3 --log-n 11 --small 2000
check grow "" "malloc ideal zk zk-promote" --preset grow --proofs 2 --log-n 11 --small 2000

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
