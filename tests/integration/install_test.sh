#!/usr/bin/env bash
# `meson install` into a temporary prefix, then build consumers against the
# installed copy only, through pkg-config, and run them: the C API
# (zkalloc.pc), the drop-in library linked in (zkalloc-override.pc), the C++
# header (the guard example), and a jemalloc-only program with the installed
# override preloaded.
# Usage: install_test.sh <source root> <tests/integration/consumer.c>
set -euo pipefail
src=$1
dir=$(cd "$(dirname "$2")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

meson setup "$tmp/build" "$src" --prefix "$prefix" --libdir lib \
	-Dtests=false --buildtype=release > "$tmp/setup.log" ||
	{ cat "$tmp/setup.log" >&2; exit 1; }
meson compile -C "$tmp/build" > "$tmp/compile.log" ||
	{ cat "$tmp/compile.log" >&2; exit 1; }
meson install -C "$tmp/build" --quiet > "$tmp/install.log" ||
	{ cat "$tmp/install.log" >&2; exit 1; }

fail=0
for f in include/zkalloc.h include/zkalloc.hpp lib/libzkalloc.so \
	lib/libzkalloc_override.so lib/pkgconfig/zkalloc.pc \
	lib/pkgconfig/zkalloc-override.pc; do
	[ -e "$prefix/$f" ] || { echo "FAIL: not installed: $f" >&2; fail=1; }
done
[ $fail = 0 ] || exit 1

# Only the installed copy: no -I or -L into the source or build trees.
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
libdir=$(pkg-config --variable=libdir zkalloc)
[ "$libdir" = "$prefix/lib" ] || { echo "FAIL: libdir $libdir" >&2; exit 1; }
rpath=-Wl,-rpath,$libdir
cd "$tmp"

# shellcheck disable=SC2046
cc -Wall -o api "$dir/consumer.c" $(pkg-config --cflags --libs zkalloc) "$rpath"
./api api
# shellcheck disable=SC2046
cc -Wall -o dropin "$dir/consumer.c" \
	$(pkg-config --cflags --libs zkalloc-override) "$rpath"
./dropin dropin
ldd ./dropin | grep -q "$prefix/lib/libzkalloc_override.so" ||
	{ echo "FAIL: dropin does not load the installed override" >&2; exit 1; }
# shellcheck disable=SC2046
c++ -Wall -o guard "$dir/guard.cpp" $(pkg-config --cflags --libs zkalloc) "$rpath"
./guard
# shellcheck disable=SC2046
cc -Wall -o driver "$dir/mallctl_driver.c" $(pkg-config --cflags --libs jemalloc) -ldl
./driver plain
LD_PRELOAD=$prefix/lib/libzkalloc_override.so ./driver zk
echo "install + pkg-config: ok"
