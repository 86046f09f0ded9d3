#!/usr/bin/env bash
# The prefixed-jemalloc test (issue 9): build jemalloc 5.3.0 the way
# tikv-jemalloc-sys does (scripts/jemalloc-rjem, cached in build-deps/), build
# zkalloc against it in build-rjem/ (static, prefix _rjem_), and run that
# build's meson tests (suite "prefixed"). Its testlog is build-rjem's.
# Usage: tests/prefixed/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
rjem=$(scripts/jemalloc-rjem)
dir=build-rjem
quiet() { # run quietly, show the output if it fails
	local out
	out=$("$@" 2>&1) || {
		echo "$out"
		echo "tests/prefixed/run.sh: failed: $*" >&2
		return 1
	}
}
if [ ! -f "$dir/build.ninja" ]; then
	quiet meson setup "$dir" -Djemalloc_prefix=_rjem_ -Djemalloc_static=true \
		-Dpkg_config_path="$rjem/lib/pkgconfig"
fi
quiet meson compile -C "$dir"
meson test -C "$dir" --print-errorlogs --num-processes 2
