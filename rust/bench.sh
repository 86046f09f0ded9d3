#!/usr/bin/env bash
# The Rust example prover (examples/common/workload.rs: FFT/Merkle-shaped,
# a persistent thread pool, one phase per proof) under each allocator, in one
# run, alternating the order each round to spread machine noise:
#   system           Rust's System allocator (glibc malloc)
#   bump             the seed algorithm, re-implemented in examples/common/bump.rs
#                    (bump slabs, no-op free, reset per phase)
#   zkalloc          ZkAllocator, libzkalloc.so from <repo>/build (pkg-config)
#   zkalloc-bundled  ZkAllocator, feature `bundled`: C core + the _rjem_ static
#                    jemalloc (only if <repo>/build-deps/jemalloc-rjem exists or
#                    ZKALLOC_JEMALLOC_DIR is set)
# Prints a table (per warm proof: CPU seconds of the whole process, wall
# seconds, minor faults; peak RSS; the checksum, which must be identical for
# every run, else the script fails) and writes table.txt, results.csv and
# logs/ under the output directory.
#
# Usage: rust/bench.sh [--proofs K] [--rounds R] [--threads T] [--log-n L]
#                      [--width W] [--out DIR]
# Defaults: --proofs 6 --rounds 2 --threads $(nproc) --log-n 16 --width 256,
# --out rust/target/bench-results/<timestamp>. Takes about 1.5 minutes on
# 2 cores.
set -euo pipefail
cd "$(dirname "$0")"
crate=$PWD
root=$(cd .. && pwd)

proofs=6 rounds=2 threads=$(nproc) log_n=16 width=256 out=""
usage() {
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit "${1:-2}"
}
while [ $# -gt 0 ]; do
	case $1 in
	--proofs) proofs=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	--threads) threads=$2; shift 2 ;;
	--log-n) log_n=$2; shift 2 ;;
	--width) width=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	-h | --help) usage 0 ;;
	*) echo "rust/bench.sh: unknown argument '$1'" >&2; usage ;;
	esac
done
for v in "$proofs" "$rounds" "$threads" "$log_n" "$width"; do
	[[ $v =~ ^[0-9]+$ ]] || { echo "rust/bench.sh: '$v' is not a whole number" >&2; exit 2; }
done
[ "$proofs" -ge 2 ] || { echo "rust/bench.sh: --proofs must be >= 2 (proof 1 is cold)" >&2; exit 2; }
[ "$rounds" -ge 1 ] || { echo "rust/bench.sh: --rounds must be >= 1" >&2; exit 2; }
out=${out:-$crate/target/bench-results/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out/logs"

echo "rust/bench.sh: building (release)" >&2
if [ ! -f "$root/build/build.ninja" ]; then
	meson setup "$root/build" >/dev/null
fi
meson compile -C "$root/build" >/dev/null
PKG_CONFIG_PATH="$root/build/meson-uninstalled${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}" \
	cargo build --offline --release --quiet --examples
ex=$crate/target/release/examples
configs=("system|$ex/prover_system" "bump|$ex/prover_bump" "zkalloc|$ex/prover_zk")

jedir=${ZKALLOC_JEMALLOC_DIR:-}
if [ -z "$jedir" ] && [ -f "$root/build-deps/jemalloc-rjem/include/jemalloc/jemalloc.h" ]; then
	jedir=$root/build-deps/jemalloc-rjem
fi
if [ -n "$jedir" ]; then
	ZKALLOC_JEMALLOC_DIR=$jedir cargo build --offline --release --quiet --features bundled \
		--target-dir "$crate/target/bundled" --example prover_zk
	configs+=("zkalloc-bundled|$crate/target/bundled/release/examples/prover_zk")
else
	echo "rust/bench.sh: zkalloc-bundled NOT RUN (no build-deps/jemalloc-rjem; run scripts/jemalloc-rjem)" >&2
fi

args=(--proofs "$proofs" --threads "$threads" --log-n "$log_n" --width "$width")
results=$out/runs.txt
: >"$results"
n=${#configs[@]}
for ((r = 0; r < rounds; r++)); do
	for ((i = 0; i < n; i++)); do
		# Even rounds forward, odd rounds backward.
		j=$(((r % 2) ? n - 1 - i : i))
		label=${configs[j]%%|*} bin=${configs[j]#*|}
		log=$out/logs/$label-$r.txt
		echo "rust/bench.sh: round $((r + 1))/$rounds: $label" >&2
		if ! "$bin" "${args[@]}" >"$log" 2>&1; then
			echo "rust/bench.sh: $label failed, see $log" >&2
			tail -5 "$log" >&2
			exit 1
		fi
		line=$(grep '^RESULT ' "$log") || { echo "rust/bench.sh: no RESULT line in $log" >&2; exit 1; }
		echo "config=$label ${line#RESULT }" >>"$results"
	done
done

# One row per configuration: means over rounds (peak RSS: the largest).
awk -v out="$out" '
function field(name,   i, kv) {
	for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] == name) return kv[2] }
	return ""
}
{
	c = field("config")
	if (!(c in runs)) order[++nc] = c
	runs[c]++
	cpu[c] += field("warm_cpu_s"); wall[c] += field("warm_wall_s")
	flt[c] += field("warm_faults"); ccpu[c] += field("cold_cpu_s")
	rss = field("peak_rss_mib") + 0; if (rss > peak[c]) peak[c] = rss
	ov[c] = field("overflow_count"); mal[c] = field("malloc")
	ck = field("checksum"); if (first == "") first = ck
	if (ck != first) bad = bad " " c "(" ck ")"
	sums[c] = ck
}
END {
	hdr = sprintf("%-16s %-17s %9s %9s %10s %9s %9s %9s  %s", "allocator", "malloc", "warm cpu", "warm wall", "warm flt", "cold cpu", "peak RSS", "overflow", "checksum")
	print hdr > (out "/table.txt")
	print "allocator,malloc,rounds,warm_cpu_s,warm_wall_s,warm_faults,cold_cpu_s,peak_rss_mib,overflow_count,checksum" > (out "/results.csv")
	for (i = 1; i <= nc; i++) {
		c = order[i]; k = runs[c]
		printf "%-16s %-17s %8.3fs %8.3fs %10.0f %8.3fs %6.0f MiB %9s  %s\n", c, mal[c], cpu[c] / k, wall[c] / k, flt[c] / k, ccpu[c] / k, peak[c], (ov[c] == "" ? "-" : ov[c]), sums[c] > (out "/table.txt")
		printf "%s,%s,%d,%.4f,%.4f,%.0f,%.4f,%.1f,%s,%s\n", c, mal[c], k, cpu[c] / k, wall[c] / k, flt[c] / k, ccpu[c] / k, peak[c], ov[c], sums[c] > (out "/results.csv")
	}
	if (bad != "") { print "CHECKSUM MISMATCH (first " first "):" bad > (out "/table.txt"); exit 1 }
}' "$results" || status=$?
echo "Rust example prover: 2^$log_n rows x $width columns, $threads threads, $proofs proofs x $rounds rounds (per warm proof: means; CPU = all threads)"
cat "$out/table.txt"
echo "rust/bench.sh: results in $out"
exit "${status:-0}"
