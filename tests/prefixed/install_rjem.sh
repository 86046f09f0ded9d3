#!/usr/bin/env bash
# The prefixed, static build installed into a temporary prefix, and a
# program built from the installed files only, the way a build script
# (a Rust build.rs, a Makefile) would: `pkg-config --static --libs zkalloc`
# gives libzkalloc.a, the --wrap flags and the prefixed libjemalloc.a.
# Usage: install_rjem.sh <source root> <jemalloc pkg-config path, or '' for
#        $PKG_CONFIG_PATH> <jemalloc prefix> <example.c>...
set -euo pipefail
src=$1 jepc=$2 jeprefix=$3
shift 3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

run() { # quietly, the log on failure
	"$@" >"$tmp/log" 2>&1 || { cat "$tmp/log" >&2; echo "FAIL: $*" >&2; exit 1; }
}
jepc=${jepc:-${PKG_CONFIG_PATH:-}}
run meson setup "$tmp/build" "$src" --prefix "$prefix" --libdir lib \
	-Dtests=false --buildtype=release -Djemalloc_prefix="$jeprefix" \
	-Djemalloc_static=true -Dpkg_config_path="$jepc"
run meson compile -C "$tmp/build"
run meson install -C "$tmp/build" --quiet
for f in include/zkalloc.h lib/libzkalloc.a lib/pkgconfig/zkalloc.pc; do
	[ -e "$prefix/$f" ] || { echo "FAIL: not installed: $f" >&2; exit 1; }
done
for f in lib/libzkalloc.so lib/libzkalloc_override.so; do
	[ ! -e "$prefix/$f" ] || { echo "FAIL: installed, should not be: $f" >&2; exit 1; }
done

export PKG_CONFIG_PATH=$prefix/lib/pkgconfig:$jepc
flags=$(pkg-config --static --cflags --libs zkalloc)
grep -q -- "--wrap=${jeprefix}mallocx" <<<"$flags" ||
	{ echo "FAIL: zkalloc.pc has no --wrap flags: $flags" >&2; exit 1; }
cd "$tmp"
for c in "$@"; do
	exe=$(basename "$c" .c)
	# shellcheck disable=SC2086
	cc -Wall -o "$exe" "$c" $flags
	"./$exe" >/dev/null
	"$(dirname "$0")/one_jemalloc.sh" "./$exe" "$jeprefix" >/dev/null
done
echo "installed prefixed build + pkg-config --static: $# programs ok"
