#!/usr/bin/env bash
# The README's install steps, verbatim, on a machine where scripts/test already
# ran. Reads the lines between <!-- install:begin --> and <!-- install:end -->
# in README.md, runs them in a copy of the source tree whose build/ and
# build-install/ were configured for another prefix (the trap: `meson setup`
# on an existing directory keeps its old prefix), with PREFIX set to a
# temporary directory. Then checks the prefix was honoured (every file there,
# nothing under the old prefix, the consumer loads the installed library) and
# builds more consumers against the installed copy only, through pkg-config:
# the drop-in library linked in (zkalloc-override.pc), the C++ header (the
# guard example), and a jemalloc-only program with the installed override
# preloaded.
# Usage: install_test.sh <source root>
set -euo pipefail
src=$(cd "$1" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() {
	echo "FAIL: $*" >&2
	exit 1
}

# The block, without its code fence lines.
block=$(awk '/^<!-- install:begin -->$/ { on = 1; next }
	/^<!-- install:end -->$/ { on = 0 }
	on && !/^```/' "$src/README.md")
[ -n "$block" ] || fail "README.md has no <!-- install:begin/end --> block"
grep -q 'meson install' <<<"$block" || fail "the README's install block has no 'meson install'"

# A copy of the sources (no build directories, no git metadata), so the
# README's relative paths work and the real tree is left alone.
mkdir "$tmp/src"
tar -C "$src" --exclude='./build*' --exclude=./.git --exclude=./bench-results \
	--exclude=./rust/target -cf - . | tar -C "$tmp/src" -xf -
cd "$tmp/src"

# What scripts/test leaves behind, and an older install directory, both
# configured for a prefix the README's steps must not use.
stale=$tmp/stale-prefix
for d in build build-install; do
	meson setup "$d" --prefix "$stale" -Dtests=false >"$tmp/stale-$d.log" 2>&1 ||
		{ cat "$tmp/stale-$d.log" >&2; fail "meson setup $d (stale)"; }
done

prefix=$tmp/prefix
env -u PKG_CONFIG_PATH -u LD_LIBRARY_PATH -u LD_PRELOAD PREFIX="$prefix" \
	bash -euxo pipefail -c "$block" >"$tmp/block.log" 2>&1 || {
	cat "$tmp/block.log" >&2
	fail "the README's install block failed (output above)"
}
grep -q '^consumer api: zkalloc [0-9.]* ok$' "$tmp/block.log" ||
	{ cat "$tmp/block.log" >&2; fail "the api consumer did not report ok"; }
grep -q '^consumer dropin: zkalloc [0-9.]* ok$' "$tmp/block.log" ||
	{ cat "$tmp/block.log" >&2; fail "the preloaded consumer did not report ok"; }

# The prefix was honoured.
missing=0
for f in include/zkalloc.h include/zkalloc.hpp lib/libzkalloc.so \
	lib/libzkalloc_override.so lib/pkgconfig/zkalloc.pc \
	lib/pkgconfig/zkalloc-override.pc; do
	[ -e "$prefix/$f" ] || { echo "FAIL: not installed: $prefix/$f" >&2; missing=1; }
done
[ $missing = 0 ] || exit 1
[ ! -e "$stale" ] || fail "files were installed under the old prefix $stale"
# (grep reads a variable: with pipefail, `ldd | grep -q` fails whenever grep
# exits before ldd has written everything.)
deps=$(ldd build-install/consumer)
grep -q "=> $prefix/lib/libzkalloc.so.0 " <<<"$deps" || {
	ldd build-install/consumer >&2
	fail "the consumer does not load $prefix/lib/libzkalloc.so.0"
}

# Only the installed copy from here on: no -I or -L into a source or build
# tree.
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
libdir=$(pkg-config --variable=libdir zkalloc)
[ "$libdir" = "$prefix/lib" ] || fail "zkalloc.pc: libdir $libdir, not $prefix/lib"
rpath=-Wl,-rpath,$libdir
dir=$tmp/src/tests/integration
mkdir "$tmp/out"
cd "$tmp/out"

# shellcheck disable=SC2046
cc -Wall -o dropin "$dir/consumer.c" \
	$(pkg-config --cflags --libs zkalloc-override) "$rpath"
./dropin dropin
deps=$(ldd ./dropin)
grep -q "=> $prefix/lib/libzkalloc_override.so.0 " <<<"$deps" ||
	fail "dropin does not load the installed override"
# shellcheck disable=SC2046
c++ -Wall -o guard "$dir/guard.cpp" $(pkg-config --cflags --libs zkalloc) "$rpath"
./guard
# shellcheck disable=SC2046
cc -Wall -o driver "$dir/mallctl_driver.c" $(pkg-config --cflags --libs jemalloc) -ldl
./driver plain
LD_PRELOAD=$prefix/lib/libzkalloc_override.so ./driver zk
echo "install (README block) + pkg-config: ok"
