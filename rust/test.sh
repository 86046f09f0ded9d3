#!/usr/bin/env bash
# The Rust crate's tests (cargo test --offline), in every link mode:
#   1. pkg-config: against the meson build in <repo>/build (set up and
#      compiled here if needed; found through build/meson-uninstalled);
#   2. the same tests but the page-reuse one in checked mode (ZK_ALLOC_CHECK=1);
#   3. feature `bundled`: zkalloc's C core compiled into the crate against
#      the _rjem_-prefixed static jemalloc of tikv-jemallocator, from
#      <repo>/build-deps/jemalloc-rjem (made by scripts/jemalloc-rjem when
#      that script exists), or $ZKALLOC_JEMALLOC_DIR if set.
# A mode that cannot run prints a NOT RUN line and is never counted as
# passed. Ends with one line: "rust/test.sh: N passed, N failed, N not run".
# Exit status: 0 only if nothing failed.
# Usage: rust/test.sh
set -uo pipefail
cd "$(dirname "$0")"
crate=$PWD
root=$(cd .. && pwd)

passed=0 failed=0 notrun=0
step() { # name, command...
	local name=$1
	shift
	echo "== rust: $name"
	if "$@"; then
		passed=$((passed + 1))
	else
		echo "rust/test.sh: FAILED: $name" >&2
		failed=$((failed + 1))
	fi
}

# rustup's default place, when the caller's PATH does not have it.
command -v cargo >/dev/null || [ ! -x "$HOME/.cargo/bin/cargo" ] ||
	PATH="$HOME/.cargo/bin:$PATH"
command -v cargo >/dev/null || {
	echo "rust/test.sh: cargo not found: NOT RUN (all modes)"
	echo "rust/test.sh: 0 passed, 0 failed, 3 not run"
	exit 1
}

# ---- 1, 2: pkg-config against a fresh meson build -----------------------
build_lib() {
	if [ ! -f "$root/build/build.ninja" ]; then
		meson setup "$root/build" >/dev/null || return 1
	fi
	meson compile -C "$root/build" >/dev/null
}
if build_lib; then
	export PKG_CONFIG_PATH="$root/build/meson-uninstalled${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
	step "pkg-config mode (libzkalloc.so from build/)" \
		cargo test --offline --quiet --no-fail-fast
	# Not tests/reuse.rs: checked mode protects a finished phase's pages
	# instead of rewinding them (to catch stale uses), so they re-fault.
	step "pkg-config mode, checked (ZK_ALLOC_CHECK=1)" \
		env ZK_ALLOC_CHECK=1 cargo test --offline --quiet --no-fail-fast \
		--test phase --test overflow --test linkage --test checked --test promote
	unset PKG_CONFIG_PATH
else
	echo "rust/test.sh: meson build of the library failed" >&2
	failed=$((failed + 2))
fi

# ---- 3: bundled, against the _rjem_ jemalloc -----------------------------
jedir=${ZKALLOC_JEMALLOC_DIR:-}
if [ -z "$jedir" ]; then
	if [ ! -f "$root/build-deps/jemalloc-rjem/include/jemalloc/jemalloc.h" ] &&
		[ -x "$root/scripts/jemalloc-rjem" ]; then
		"$root/scripts/jemalloc-rjem" >/dev/null || echo "rust/test.sh: scripts/jemalloc-rjem failed" >&2
	fi
	if [ -f "$root/build-deps/jemalloc-rjem/include/jemalloc/jemalloc.h" ]; then
		jedir=$root/build-deps/jemalloc-rjem
	fi
fi
if [ -n "$jedir" ]; then
	# Its own target dir: switching features would rebuild everything.
	step "bundled mode (C core + _rjem_ jemalloc from $jedir)" \
		env ZKALLOC_JEMALLOC_DIR="$jedir" \
		cargo test --offline --quiet --no-fail-fast --features bundled --target-dir "$crate/target/bundled"
else
	echo "rust/test.sh: bundled mode: NOT RUN (no build-deps/jemalloc-rjem, no scripts/jemalloc-rjem, ZKALLOC_JEMALLOC_DIR unset)"
	notrun=$((notrun + 1))
fi

echo "rust/test.sh: $passed passed, $failed failed, $notrun not run"
[ "$failed" -eq 0 ]
