#!/usr/bin/env bash
# The Rust crate's tests (cargo test --offline), in every link mode:
#   1. pkg-config: against the meson build in <repo>/build (set up and
#      compiled here if needed; found through build/meson-uninstalled); the
#      build output must carry no warning from zkalloc's build script;
#   2. the same tests in checked mode (ZK_ALLOC_CHECK=1), but tests/reuse.rs
#      (checked mode gives freed pages back, so warm proofs fault again);
#   3. a binary of another package (tests/downstream) against a libzkalloc
#      installed into a private prefix (rust/target/private-prefix), run
#      without LD_LIBRARY_PATH (issue 13);
#   4. feature `bundled`: zkalloc's C core compiled into the crate against
#      the _rjem_-prefixed static jemalloc of tikv-jemallocator, from
#      <repo>/build-deps/jemalloc-rjem (made by scripts/jemalloc-rjem) or
#      $ZKALLOC_JEMALLOC_DIR;
#   5. bundled: build.rs's compile arguments against those of a meson build
#      configured with -Djemalloc_prefix=_rjem_ (setup only, in
#      rust/target/meson-rjem);
#   6. bundled: tests/downstream with and without the --wrap arguments
#      zkalloc hands on (DEP_ZKALLOC_LINK_ARGS).
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
not_run() { # name, reason
	echo "rust/test.sh: $1: NOT RUN ($2)"
	notrun=$((notrun + 1))
}
quiet() { # run quietly, show the output if it fails
	local out
	out=$("$@" 2>&1) || {
		echo "$out"
		echo "rust/test.sh: failed: $*" >&2
		return 1
	}
}

# rustup's default place, when the caller's PATH does not have it.
command -v cargo >/dev/null || [ ! -x "$HOME/.cargo/bin/cargo" ] ||
	PATH="$HOME/.cargo/bin:$PATH"
command -v cargo >/dev/null || {
	echo "rust/test.sh: cargo not found: NOT RUN (all modes)"
	echo "rust/test.sh: 0 passed, 0 failed, 7 not run"
	exit 1
}

# ---- 1, 2: pkg-config against a fresh meson build -----------------------
build_lib() {
	if [ ! -f "$root/build/build.ninja" ]; then
		meson setup "$root/build" >/dev/null || return 1
	fi
	meson compile -C "$root/build" >/dev/null
}
# No "warning: zkalloc@..." from build.rs for the default (unprefixed)
# library (issue 13); cargo repeats a path package's build-script warnings
# on every build, so a build that does not rerun the script shows them too.
build_without_warnings() {
	local out
	out=$(cargo build --offline --tests --examples 2>&1) || {
		echo "$out"
		return 1
	}
	if grep -i '^warning: zkalloc' <<<"$out"; then
		echo "rust/test.sh: build.rs warned about a default libzkalloc" >&2
		return 1
	fi
}
if build_lib; then
	export PKG_CONFIG_PATH="$root/build/meson-uninstalled${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
	step "pkg-config mode (libzkalloc.so from build/)" \
		eval 'build_without_warnings && cargo test --offline --quiet --no-fail-fast'
	step "pkg-config mode, checked (ZK_ALLOC_CHECK=1)" \
		env ZK_ALLOC_CHECK=1 cargo test --offline --quiet --no-fail-fast \
		--test phase --test overflow --test linkage --test checked \
		--test lazy_cache --test retired --test stats_layout --test rpath \
		--test link_plan
	unset PKG_CONFIG_PATH
else
	echo "rust/test.sh: meson build of the library failed" >&2
	failed=$((failed + 2))
fi

# ---- 3: another package's binary, libzkalloc in a private prefix ----------
private_prefix() {
	local b=$crate/target/private-build p=$crate/target/private-prefix
	if [ ! -f "$b/build.ninja" ]; then
		quiet meson setup "$b" "$root" --prefix "$p" --libdir lib -Dtests=false \
			--buildtype=release || return 1
	fi
	quiet meson install -C "$b" --quiet || return 1
	PKG_CONFIG_PATH=$p/lib/pkgconfig quiet cargo build --offline \
		--manifest-path tests/downstream/Cargo.toml --target-dir target/downstream || return 1
	local out
	out=$(env -u LD_LIBRARY_PATH target/downstream/debug/zkalloc-downstream 2>&1) || {
		echo "$out"
		return 1
	}
	echo "$out"
	grep -q "libzkalloc=$p/lib/libzkalloc.so" <<<"$out" || {
		echo "rust/test.sh: libzkalloc.so not loaded from $p/lib" >&2
		return 1
	}
}
step "another package's binary, libzkalloc installed in a private prefix, no LD_LIBRARY_PATH" \
	private_prefix

# ---- 4, 5, 6: bundled, against the _rjem_ jemalloc ----------------------
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
meson_flags() {
	local b=$crate/target/meson-rjem
	if [ ! -f "$b/compile_commands.json" ]; then
		quiet meson setup "$b" "$root" -Dtests=false -Djemalloc_prefix=_rjem_ \
			-Djemalloc_static=true -Dpkg_config_path="$jedir/lib/pkgconfig" || return 1
	else
		quiet meson setup --reconfigure "$b" "$root" || return 1
	fi
	ZKALLOC_MESON_RJEM_BUILD=$b ZKALLOC_JEMALLOC_DIR=$jedir cargo test --offline --quiet \
		--features bundled --target-dir "$crate/target/bundled" --test link_plan \
		-- --ignored compile_args_match_meson
}
downstream_bundled() { # with | without (the DEP_ZKALLOC_LINK_ARGS line)
	local want=true no_args=
	if [ "$1" = without ]; then
		want=false no_args=1
	fi
	DOWNSTREAM_NO_LINK_ARGS=$no_args ZKALLOC_JEMALLOC_DIR=$jedir quiet cargo build --offline \
		--features bundled --manifest-path tests/downstream/Cargo.toml \
		--target-dir target/downstream-bundled || return 1
	local out
	out=$(env -u LD_LIBRARY_PATH target/downstream-bundled/debug/zkalloc-downstream 2>&1) || {
		echo "$out"
		return 1
	}
	echo "$out"
	grep -q "libzkalloc=none rjem_wrapped=$want" <<<"$out"
}
if [ -n "$jedir" ]; then
	# Its own target dir: switching features would rebuild everything.
	step "bundled mode (C core + _rjem_ jemalloc from $jedir)" \
		env ZKALLOC_JEMALLOC_DIR="$jedir" \
		cargo test --offline --quiet --no-fail-fast --features bundled --target-dir "$crate/target/bundled"
	step "bundled: compile arguments = meson's -Djemalloc_prefix=_rjem_ build" meson_flags
	step "bundled: another package's binary, with --wrap (DEP_ZKALLOC_LINK_ARGS)" \
		downstream_bundled with
	step "bundled: another package's binary, without --wrap (__real_ fallbacks)" \
		downstream_bundled without
else
	for m in "bundled mode" "bundled: compile arguments" "bundled: downstream with --wrap" \
		"bundled: downstream without --wrap"; do
		not_run "$m" "no build-deps/jemalloc-rjem, no scripts/jemalloc-rjem, ZKALLOC_JEMALLOC_DIR unset"
	done
fi

echo "rust/test.sh: $passed passed, $failed failed, $notrun not run"
[ "$failed" -eq 0 ]
