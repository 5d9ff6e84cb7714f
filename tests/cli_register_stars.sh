#!/bin/bash
# clred register --method stars end to end: a frame rotated by 3 degrees is
# recovered (table columns, CSV and JSON), a pure shift agrees with phase
# correlation, aligned frames carry HISTORY; a mirrored frame and a frame
# without stars fail with exit 1, one line naming the file and no output
# left behind; options of the other method are usage errors (exit 2).
set -u
BIN=${CLRED_BIN:?CLRED_BIN is not set}
TMP=${CLRED_TEST_TMP:-/tmp}/cli_register_stars
FIXTURES=$(dirname "$BIN")/tests/test_starmatch
rm -rf "$TMP"
mkdir -p "$TMP"
fails=0

. "$(dirname "${BASH_SOURCE[0]}")/lib_cli.sh" # check, near
col() { # file row column-name: the value of a CSV column by its header name
    awk -F, -v row="$2" -v name="$3" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) c = i }
        NR == row { print $c }' "$1"
}

"$FIXTURES" --write-fixtures "$TMP" || { echo "FAIL: cannot write fixtures"; exit 1; }
REF=$TMP/star_ref.fits ROT=$TMP/star_rot.fits SHIFT=$TMP/star_shift.fits
MIRROR=$TMP/star_mirror.fits BLANK=$TMP/star_blank.fits

"$BIN" register --method stars "$REF" "$ROT" "$SHIFT" --table "$TMP/t.csv" >"$TMP/out" 2>"$TMP/err"
check "table only exits 0" test $? -eq 0
check "CSV header" grep -q "^file,frame,nmatched,rms,scale,rotation,dx,dy,a,b,c,d,e,f$" "$TMP/t.csv"
check "CSV has three rows" test "$(wc -l <"$TMP/t.csv")" -eq 4
ROTN=$(col "$TMP/t.csv" 3 rotation)
# the transform maps the rotated frame back onto the reference: -3 degrees
check "rotation of the rotated frame = -3 deg (got $ROTN)" near "$ROTN" -3 0.02
check "scale = 1 (got $(col "$TMP/t.csv" 3 scale))" near "$(col "$TMP/t.csv" 3 scale)" 1 5e-4
check "most stars matched (got $(col "$TMP/t.csv" 3 nmatched))" test "$(col "$TMP/t.csv" 3 nmatched)" -ge 30
check "rms below 0.1 px (got $(col "$TMP/t.csv" 3 rms))" near "$(col "$TMP/t.csv" 3 rms)" 0 0.1
check "reference row is the identity" grep -q "star_ref.fits,0,[0-9]*,0.0000,1.0000000,0.00000,0.00000,0.00000,1,0,0" "$TMP/t.csv"
check "stdout names each frame" test "$(grep -c "rotation .* deg, scale" "$TMP/out")" -eq 3

# A pure shift: stars and phase correlation agree (c = -dx, f = -dy).
"$BIN" register "$REF" "$SHIFT" --table "$TMP/p.csv" 2>"$TMP/err"
check "phase correlation exits 0" test $? -eq 0
check "phasecorr table unchanged" grep -q "^file,frame,dx,dy,psr,a,b,c,d,e,f$" "$TMP/p.csv"
PC=$(col "$TMP/p.csv" 3 c) ST=$(col "$TMP/t.csv" 4 c)
check "shift: stars c $ST vs phasecorr c $PC" near "$ST" "$PC" 0.05
PC=$(col "$TMP/p.csv" 3 f) ST=$(col "$TMP/t.csv" 4 f)
check "shift: stars f $ST vs phasecorr f $PC" near "$ST" "$PC" 0.05
# One sign convention: the star table's dx, dy are phase correlation's dx, dy.
PC=$(col "$TMP/p.csv" 3 dx) ST=$(col "$TMP/t.csv" 4 dx)
check "shift: stars dx $ST vs phasecorr dx $PC (same sign)" near "$ST" "$PC" 0.05
PC=$(col "$TMP/p.csv" 3 dy) ST=$(col "$TMP/t.csv" 4 dy)
check "shift: stars dy $ST vs phasecorr dy $PC (same sign)" near "$ST" "$PC" 0.05

"$BIN" register --method stars --model affine --json "$REF" "$ROT" -o "$TMP/aligned" --table "$TMP/t.json" \
    >"$TMP/out.json" 2>"$TMP/err"
check "affine align exits 0" test $? -eq 0
check "aligned frames written" test -s "$TMP/aligned/star_ref_reg.fits" -a -s "$TMP/aligned/star_rot_reg.fits"
check "json summary names method and model" grep -q '"method": "stars", "model": "affine"' "$TMP/out.json"
check "json table has the transform" grep -q '"transform": \[' "$TMP/t.json"
check "json table has nmatched and rms" grep -q '"nmatched": [0-9]*, "rms": ' "$TMP/t.json"
check "HISTORY gives the method" grep -aq "HISTORY clred register: method=stars ref=0 interp=lanczos3 model=affine" \
    "$TMP/aligned/star_rot_reg.fits"
check "HISTORY gives the transform" grep -aq "HISTORY clred register: transform \[" "$TMP/aligned/star_rot_reg.fits"
check "aligned frame has a MASK extension" grep -aq "EXTNAME = 'MASK" "$TMP/aligned/star_rot_reg.fits"
# Registered back, the rotated frame matches the reference with no rotation left.
"$BIN" register --method stars "$REF" "$TMP/aligned/star_rot_reg.fits" --table "$TMP/again.csv" 2>"$TMP/err"
check "aligned frame registers again" test $? -eq 0
check "no rotation left (got $(col "$TMP/again.csv" 3 rotation))" near "$(col "$TMP/again.csv" 3 rotation)" 0 0.02
check "no shift left at the origin (c $(col "$TMP/again.csv" 3 c))" near "$(col "$TMP/again.csv" 3 c)" 0 0.1

# Failures: nothing written, one line naming the frame.
"$BIN" register --method stars "$REF" "$MIRROR" -o "$TMP/bad" --table "$TMP/bad.csv" 2>"$TMP/err"
check "mirrored frame exits 1" test $? -eq 1
check "message names the frame and the mirror" grep -q "star_mirror.fits\[0\]: .*mirror" "$TMP/err"
check "one-line message" test "$(wc -l <"$TMP/err")" -eq 1
check "no table after a failure" test ! -e "$TMP/bad.csv"
check "no aligned frames after a failure" test ! -e "$TMP/bad/star_ref_reg.fits"
"$BIN" register --method stars --mirror "$REF" "$MIRROR" --table "$TMP/mirror.csv" >"$TMP/out" 2>"$TMP/err"
check "--mirror accepts it" test $? -eq 0
check "stdout says mirrored" grep -q "mirrored" "$TMP/out"
"$BIN" register --method stars "$REF" "$BLANK" --table "$TMP/bad2.csv" 2>"$TMP/err"
check "frame without stars exits 1" test $? -eq 1
check "message names the blank frame" grep -q "star_blank.fits" "$TMP/err"
check "no table after no stars" test ! -e "$TMP/bad2.csv"

# Usage errors.
"$BIN" register --method stars --ref median "$REF" "$ROT" --table "$TMP/u1.csv" 2>"$TMP/err"
check "--ref median with stars exits 2" test $? -eq 2
"$BIN" register --method wcs "$REF" "$ROT" --table "$TMP/u2.csv" 2>"$TMP/err"
check "unknown --method exits 2" test $? -eq 2
check "message names the option" grep -q -- "--method" "$TMP/err"
"$BIN" register --model affine "$REF" "$ROT" --table "$TMP/u3.csv" 2>"$TMP/err"
check "--model without --method stars exits 2" test $? -eq 2
"$BIN" register --method stars --region 1:100,1:100 "$REF" "$ROT" --table "$TMP/u4.csv" 2>"$TMP/err"
check "--region with stars exits 2" test $? -eq 2
"$BIN" register --method stars --interp fourier "$REF" "$ROT" --table "$TMP/u5.csv" 2>"$TMP/err"
check "--interp fourier with stars exits 2" test $? -eq 2
"$BIN" register --method stars --max-stars 2 "$REF" "$ROT" --table "$TMP/u6.csv" 2>"$TMP/err"
check "--max-stars 2 exits 2" test $? -eq 2
check "no table after usage errors" test ! -e "$TMP/u1.csv" -a ! -e "$TMP/u4.csv" -a ! -e "$TMP/u6.csv"
"$BIN" register --help >"$TMP/help"
check "--help shows the stars example" grep -q "method stars" "$TMP/help"

[ $fails -eq 0 ] || { echo "$fails check(s) failed"; exit 1; }
echo "all checks passed"
