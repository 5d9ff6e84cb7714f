#!/bin/bash
# clred cube end to end on the synthetic cube of test_cube (8 frames of 64x48
# with known tip-tilt, a dark with hot and cold pixels, one saturated frame):
# outputs (master, plain, CSV table), the JSON summary, exit codes and
# one-line messages for bad input and bad options, nothing left behind on failure.
set -u
BIN=${CLRED_BIN:?CLRED_BIN is not set}
TMP=${CLRED_TEST_TMP:-/tmp}/cli_cube
FIXTURES=$(dirname "$BIN")/tests/test_cube
rm -rf "$TMP"
mkdir -p "$TMP"
fails=0

. "$(dirname "${BASH_SOURCE[0]}")/lib_cli.sh" # check, near
json_num() { # key file: the first number after "key":
    grep -o "\"$1\": [-0-9.e+]*" "$2" | head -1 | awk '{ print $2 }'
}

"$FIXTURES" --write-fixtures "$TMP" >"$TMP/fixtures.out" || { echo "FAIL: cannot write fixtures"; exit 1; }
NSAT=$(awk '/^saturated/ { print $2 }' "$TMP/fixtures.out")
C=$TMP/cube.fits D=$TMP/dark.fits

"$BIN" cube "$C" --dark "$D" --saturation 4095 --margin 0 --align centroid -o "$TMP/master.fits" \
    --plain "$TMP/plain.fits" --table "$TMP/frames.csv" --json >"$TMP/out.json" 2>"$TMP/err"
check "reduce exits 0" test $? -eq 0
check "master and plain written" test -s "$TMP/master.fits" -a -s "$TMP/plain.fits"
check "CSV header" grep -q "^frame,dx,dy,x,y,peak,raw_max,nsaturated,background,noise$" "$TMP/frames.csv"
check "CSV has 8 frames" test "$(wc -l <"$TMP/frames.csv")" -eq 9
DX=$(awk -F, 'NR == 5 { print $2 }' "$TMP/frames.csv")
DY=$(awk -F, 'NR == 5 { print $3 }' "$TMP/frames.csv")
check "frame 3 dx = 1.5 (got $DX)" near "$DX" 1.5 0.08
check "frame 3 dy = 0.25 (got $DY)" near "$DY" 0.25 0.08
S5=$(awk -F, 'NR == 7 { print $8 }' "$TMP/frames.csv")
check "frame 5 has the $NSAT saturated pixels (got $S5)" test "$S5" = "$NSAT"
check "other frames have none" test "$(awk -F, 'NR > 1 && NR != 7 { s += $8 } END { print s + 0 }' "$TMP/frames.csv")" -eq 0
check "json: saturation reported" grep -q "\"values\": $NSAT" "$TMP/out.json"
check "json: ceiling from the option" grep -q '"source": "option"' "$TMP/out.json"
check "json: flat background" grep -q '"flat": true' "$TMP/out.json"
GAIN=$(json_num peak_gain "$TMP/out.json")
RATIO=$(json_num fwhm_ratio "$TMP/out.json")
check "json: SAA peak above the plain sum (x$GAIN)" awk -v g="$GAIN" 'BEGIN { exit !(g > 1.3) }'
check "json: SAA FWHM below the plain sum (x$RATIO)" awk -v g="$RATIO" 'BEGIN { exit !(g < 0.8) }'
check "json: tip-tilt rms" grep -q '"tiptilt_rms": {"x": ' "$TMP/out.json"

"$BIN" cube "$C" --dark "$D" --compare >"$TMP/out.txt" 2>"$TMP/err"
check "text summary exits 0" test $? -eq 0
check "text: plain and SAA side by side" grep -q "^plain sum" "$TMP/out.txt"
check "text: ceiling inferred from the ADC depth" grep -q "ceiling 4095 (ADC depth)" "$TMP/out.txt"

"$BIN" cube "$C" --dark "$D" -o "$TMP/master.fits" >/dev/null 2>"$TMP/err"
check "existing output refused (exit 1)" test $? -eq 1
check "message names the output" grep -q "master.fits" "$TMP/err"

# bad input: no partial output
run_fail() { # expected-exit description pattern args...
    local code=$1 what=$2 pat=$3
    shift 3
    rm -f "$TMP/bad.fits" "$TMP/bad.csv"
    "$BIN" cube "$@" -o "$TMP/bad.fits" --table "$TMP/bad.csv" >/dev/null 2>"$TMP/err"
    local rc=$?
    check "$what: exit $code (got $rc)" test $rc -eq "$code"
    check "$what: one line naming '$pat'" test "$(wc -l <"$TMP/err")" -eq 1 -a -n "$(grep -F -e "$pat" "$TMP/err")"
    check "$what: no output left" test ! -e "$TMP/bad.fits" -a ! -e "$TMP/bad.csv"
}
run_fail 1 "dark of another shape" "dark_small.fits" "$C" --dark "$TMP/dark_small.fits"
run_fail 1 "2-D input" "image.fits" "$TMP/image.fits" --dark "$D"
run_fail 1 "ceiling below the median" "median" "$C" --dark "$D" --saturation 50
run_fail 1 "missing cube" "nothere.fits" "$TMP/nothere.fits" --dark "$D"
run_fail 2 "unknown alignment" "--align" "$C" --align wobble
run_fail 2 "negative margin" "--margin" "$C" --margin -3
run_fail 2 "two inputs" "one input cube" "$C" "$D"

"$BIN" cube --help >"$TMP/help" 2>&1
check "--help exits 0 with an example" grep -q "example" "$TMP/help"

echo "$fails failed"
[ "$fails" -eq 0 ] || exit 1
