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

# check <name> <args...>: run every mode on one problem, compare checksums
check() {
	local name=$1; shift
	local ref="" out ck label
	local -a runs=(
		"malloc|$plain --mode malloc"
		"malloc-1thread|$plain --mode malloc --threads 1"
		"ideal|$plain --mode ideal"
		"zk|$zk --mode zk"
		"zk-promote|env ZK_ALLOC_PROMOTE_BYTES=1048576 $zk --mode zk"
		"zk-resident|env ZK_ALLOC_SMALL=resident ZK_ALLOC_THP=always $zk --mode zk"
	)
	for r in "${runs[@]}"; do
		label=${r%%|*}
		# shellcheck disable=SC2086 # the command line is split on purpose
		if ! out=$(${r#*|} --quiet "$@"); then
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

check small --preset small --proofs 2
check vary --preset vary --proofs 3 --log-n 11 --small 2000
check grow --preset grow --proofs 2 --log-n 11 --small 2000
exit $fail
