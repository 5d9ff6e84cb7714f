#!/usr/bin/env bash
# Files whose headers lie about their size (an axis of 2^61+1, a billion frames
# in a 66 KB file, 200000 x 200000, a negative or zero axis, a missing HDU, a
# directory), given to each command that reads frames: every one must exit 1
# promptly with a one-line message naming the file, and write nothing.
set -u
BIN=${CLRED_BIN:?CLRED_BIN must name the clred executable}
TMP=${CLRED_TEST_TMP:-/tmp}/cli_hostile
GEN="$(dirname "$BIN")/tests/test_hostile_files"
rm -rf "$TMP" && mkdir -p "$TMP/files" || exit 1
failures=0
pass() { echo "ok   - $1"; }
fail() { echo "FAIL - $1"; failures=$((failures + 1)); }

"$GEN" "$TMP/files" || { echo "FAIL - cannot write the files with $GEN"; exit 1; }
F=$TMP/files
GOOD=$F/good_small.fits

# expect NAME FILE ARGS...: clred ARGS exits 1 within 60 s, one line on stderr naming FILE, no output file.
expect() {
    local name=$1 file=$2
    shift 2
    rm -rf "$TMP/out" && mkdir -p "$TMP/out"
    timeout 60 "$BIN" "$@" > /dev/null 2> "$TMP/err"
    local rc=$?
    if [ "$rc" -ne 1 ]; then fail "$name: exit $rc, expected 1 ($(head -c 300 "$TMP/err"))"; return; fi
    if [ "$(wc -l < "$TMP/err")" -eq 1 ] && grep -qF -- "$file" "$TMP/err"; then pass "$name: exit 1 naming $(basename "$file")"
    else fail "$name: stderr should be one line naming $file: $(cat "$TMP/err")"; fi
    if [ -z "$(ls -A "$TMP/out")" ]; then pass "$name: no output"; else fail "$name: left $(ls -A "$TMP/out")"; fi
}

for bad in huge_axis.fits billion_frames.fits big_square.fits short_data.fits huge_axis.npy billion_frames.npy \
           big_square.npy negative.npy zero.npy billion_frames.fits.fz huge_axis.fits.fz directory.fits; do
    expect "stats $bad" "$F/$bad" stats "$F/$bad"
    expect "combine $bad" "$F/$bad" combine -o "$TMP/out/c.fits" "$GOOD" "$F/$bad" "$GOOD"
    expect "register $bad" "$F/$bad" register --table "$TMP/out/t.csv" "$GOOD" "$F/$bad"
    expect "sources $bad" "$F/$bad" sources -o "$TMP/out/s.fits" "$F/$bad"
    expect "calibrate --bias $bad" "$F/$bad" calibrate --bias "$F/$bad" -o "$TMP/out/k.fits" "$GOOD"
    expect "calibrate raw $bad" "$F/$bad" calibrate -o "$TMP/out/k.fits" "$F/$bad"
done
expect "stats missing HDU" "good_small.fits[5]" stats "$F/good_small.fits[5]"
if grep -q "no such HDU" "$TMP/err"; then pass "missing HDU: says no such HDU"; else fail "missing HDU: $(cat "$TMP/err")"; fi
expect "stats directory" "directory.fits" stats "$F/directory.fits"
if grep -q "directory" "$TMP/err"; then pass "directory: says directory"; else fail "directory: $(cat "$TMP/err")"; fi

# A cube where one 2-D image is expected, an all-NaN flat, a negative variance or RMS.
C=$F/cube.fits
ONES=$F/ones.fits
expect "calibrate raw cube" "cube.fits" calibrate -o "$TMP/out/k.fits" "$C"
expect "calibrate --bias cube" "cube.fits" calibrate --bias "$C" -o "$TMP/out/k.fits" "$ONES"
expect "calibrate --flat cube" "cube.fits" calibrate --flat "$C" -o "$TMP/out/k.fits" "$ONES"
expect "master-flat cube" "cube.fits" master-flat -o "$TMP/out/f.fits" "$C" "$ONES"
expect "stats cube" "cube.fits" stats "$C"
expect "cosmic cube" "cube.fits" cosmic "$C" -o "$TMP/out/c.fits"
expect "sources cube" "cube.fits" sources "$C" -o "$TMP/out/s.fits"
expect "sources --rms cube" "cube.fits" sources "$ONES" --rms "$C" -o "$TMP/out/s.fits"
if grep -q "cube of 3 frames" "$TMP/err"; then pass "cube: says so"; else fail "cube: $(cat "$TMP/err")"; fi
expect "calibrate --flat all NaN" "nan_flat.fits" calibrate --flat "$F/nan_flat.fits" -o "$TMP/out/k.fits" "$ONES"
expect "cosmic --var negative" "negative.fits" cosmic "$ONES" --var "$F/negative.fits" -o "$TMP/out/c.fits"
expect "sources --rms negative" "negative.fits" sources "$ONES" --rms "$F/negative.fits" -o "$TMP/out/s.fits"
expect "register shapes differ" "wide.fits" register --table "$TMP/out/t.csv" "$ONES" "$F/wide.fits"
expect "combine --align shapes differ" "wide.fits" combine --align -o "$TMP/out/c.fits" "$ONES" "$F/wide.fits"

# Usage errors exit 2 alike: no inputs.
timeout 60 "$BIN" combine -o "$TMP/out/c.fits" > /dev/null 2>&1
rc=$?
if [ "$rc" -eq 2 ]; then pass "combine with no inputs: exit 2"; else fail "combine with no inputs: exit $rc"; fi

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
