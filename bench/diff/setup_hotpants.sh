#!/bin/sh
# Builds HOTPANTS (Becker's Alard-Lupton implementation, github.com/acbecker/hotpants) for the difference-
# imaging bench, OUTSIDE this repository, with its own Makefile against the system's cfitsio
# (Debian: libcfitsio-dev). HOTPANTS is GPL and is never vendored here: the bench only runs the binary.
#
#   bench/diff/setup_hotpants.sh SOURCE_DIR [BUILD_DIR]
#
# SOURCE_DIR: a checkout of acbecker/hotpants (or a `git archive` of one). BUILD_DIR (default
# /work/peers/hotpants) receives a copy of the sources and the binary BUILD_DIR/hotpants; pass it to
# bench/diff/run.py as --hotpants BUILD_DIR/hotpants (or $HOTPANTS).
set -eu
src=${1:?usage: setup_hotpants.sh SOURCE_DIR [BUILD_DIR]}
dst=${2:-/work/peers/hotpants}
[ -f "$src/alard.c" ] && [ -f "$src/Makefile" ] || { echo "setup_hotpants.sh: $src is not a HOTPANTS source tree (no alard.c/Makefile)" >&2; exit 2; }
inc=$(pkg-config --cflags-only-I cfitsio 2>/dev/null | sed 's/^-I//; s/ .*//')
[ -n "$inc" ] || inc=/usr/include
[ -f "$inc/fitsio.h" ] || { echo "setup_hotpants.sh: fitsio.h not found (install libcfitsio-dev)" >&2; exit 2; }
lib=$(pkg-config --libs-only-L cfitsio 2>/dev/null | sed 's/^-L//; s/ .*//')
[ -n "$lib" ] || lib=/usr/lib/$(gcc -print-multiarch 2>/dev/null || echo .)
mkdir -p "$dst"
cp "$src"/*.c "$src"/*.h "$src"/Makefile "$dst"/
# The Makefile's CFITSIO paths point at a sibling source build; the system library is used instead.
# -fcommon: its headers define globals without `extern` (GCC >= 10 defaults to -fno-common).
make -C "$dst" hotpants CFITSIOINCDIR="$inc" LIBDIR="$lib" \
    COPTS="-funroll-loops -O3 -std=c99 -Wall -fcommon -I$inc -D_GNU_SOURCE" >"$dst/build.log" 2>&1 \
    || { tail -20 "$dst/build.log" >&2; echo "setup_hotpants.sh: build failed (log: $dst/build.log)" >&2; exit 1; }
echo "$dst/hotpants"
