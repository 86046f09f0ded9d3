#!/usr/bin/env bash
# Smoke test of the prover-shaped benchmark: runs zkbench-prover (modes malloc
# and ideal) and zkbench-prover-zk (mode zk, with and without the options a
# prover would set) on small problems, and fails unless every run of the same
# problem prints the same checksum.
# Usage: smoke.sh <zkbench-prover> <zkbench-prover-zk>
set -euo pipefail
plain=$1
zk=$2
fail=0

# check <name> <runs> <args...>: run each of the modes in <runs> (labels
# below) on one problem and compare checksums
check() {
	local name=$1 which=$2; shift 2
	local ref="" out ck label cmd
	for label in $which; do
		case $label in
		malloc) cmd="$plain --mode malloc" ;;
		malloc-1thread) cmd="$plain --mode malloc --threads 1" ;;
		ideal) cmd="$plain --mode ideal" ;;
		zk) cmd="$zk --mode zk" ;;
		zk-promote) cmd="env ZK_ALLOC_PROMOTE_BYTES=65536 $zk --mode zk" ;;
		zk-all) cmd="env ZK_ALLOC_PROMOTE_BYTES=1048576 ZK_ALLOC_SMALL=resident ZK_ALLOC_THP=always $zk --mode zk" ;;
		esac
		# shellcheck disable=SC2086 # the command line is split on purpose
		if ! out=$($cmd --quiet "$@"); then
			echo "FAIL $name/$label: exit status $?"
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
}

check small "malloc malloc-1thread ideal zk zk-all" --preset small --proofs 2
check vary "malloc ideal zk" --preset vary --proofs 3 --log-n 11 --small 2000
check grow "malloc ideal zk zk-promote" --preset grow --proofs 2 --log-n 11 --small 2000
exit $fail
