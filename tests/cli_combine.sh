#!/bin/bash
# clred combine end to end: outputs and their extensions, --json, exit codes
# and one-line messages for bad input and bad options, no output on failure.
set -u
BIN=${CLRED_BIN:?CLRED_BIN is not set}
TMP=${CLRED_TEST_TMP:-/tmp}/cli_combine
FIXTURES=$(dirname "$BIN")/tests/test_combine_files
rm -rf "$TMP"
mkdir -p "$TMP"
fails=0

. "$(dirname "${BASH_SOURCE[0]}")/lib_cli.sh" # check, near

"$FIXTURES" --write-fixtures "$TMP" || { echo "FAIL: cannot write fixtures"; exit 1; }
A=$TMP/frame_0.fits B=$TMP/frame_1.fits C=$TMP/frame_2.fits CUBE=$TMP/cube.fits

"$BIN" combine --method median --reject sigclip --sigma-low 4 --sigma-high 3 --rejected-map --json \
    "$A" "$B" "$C" "$CUBE" -o "$TMP/out.fits" >"$TMP/out.json" 2>"$TMP/err"
check "median sigclip exits 0" test $? -eq 0
check "output written" test -s "$TMP/out.fits"
check "json counts the cube's frames" grep -q '"frames": 5' "$TMP/out.json"
check "json names the method" grep -q '"method": "median"' "$TMP/out.json"
check "json has shape" grep -q '"width": 64, "height": 48' "$TMP/out.json"
check "NCONTRIB extension" grep -aq "NCONTRIB" "$TMP/out.fits"
check "NREJECT extension" grep -aq "NREJECT" "$TMP/out.fits"
check "NCOMBINE keyword" grep -aq "NCOMBINE=                    5" "$TMP/out.fits"
check "HISTORY describes the combine" grep -aq "HISTORY clred combine: 5 frames, method=median reject=sigclip" "$TMP/out.fits"

"$BIN" combine "$A" "$B" -o "$TMP/out.fits" 2>"$TMP/err"
check "existing output refused (exit 1)" test $? -eq 1
check "message says --overwrite" grep -q "overwrite" "$TMP/err"
"$BIN" combine --overwrite --method sum --weights 1,2 --scale add "$A" "$B" -o "$TMP/out.fits" 2>"$TMP/err"
check "--overwrite replaces (exit 0)" test $? -eq 0

"$BIN" combine "$A" "$TMP/odd_shape.fits" -o "$TMP/bad1.fits" 2>"$TMP/err"
check "shape mismatch exits 1" test $? -eq 1
check "message names the odd file" grep -q "odd_shape.fits" "$TMP/err"
check "one-line message" test "$(wc -l <"$TMP/err")" -eq 1
check "no output after shape mismatch" test ! -e "$TMP/bad1.fits"

"$BIN" combine "$A" "$TMP/missing.fits" -o "$TMP/bad2.fits" 2>"$TMP/err"
check "missing file exits 1" test $? -eq 1
check "message names the missing file" grep -q "missing.fits" "$TMP/err"
check "no output after missing file" test ! -e "$TMP/bad2.fits"

"$BIN" combine -o "$TMP/bad3.fits" 2>"$TMP/err"
check "empty input list is a usage error (exit 2, as in the other commands)" test $? -eq 2
check "no output after empty list" test ! -e "$TMP/bad3.fits"

"$BIN" combine --method mode "$A" "$B" -o "$TMP/bad4.fits" 2>"$TMP/err"
check "bad --method exits 2" test $? -eq 2
check "message names the option" grep -q -- "--method" "$TMP/err"
"$BIN" combine --sigma abc "$A" "$B" -o "$TMP/bad5.fits" 2>/dev/null
check "bad --sigma exits 2" test $? -eq 2
"$BIN" combine --weights 1,2,3 "$A" "$B" -o "$TMP/bad6.fits" 2>"$TMP/err"
check "wrong number of weights exits 2" test $? -eq 2
"$BIN" combine --pct-low 90 --pct-high 10 --reject percentile "$A" "$B" -o "$TMP/bad7.fits" 2>"$TMP/err"
check "inverted percentiles exit 2" test $? -eq 2
"$BIN" combine --no-such-option "$A" -o "$TMP/bad8.fits" 2>/dev/null
check "unknown option exits 2" test $? -eq 2
"$BIN" combine "$A" "$B" -o "$A" 2>"$TMP/err"
check "output equal to an input is refused" test $? -ne 0
check "input left intact" test -s "$A"
for i in 4 5 6 7 8; do
    check "no output bad$i" test ! -e "$TMP/bad$i.fits"
done
"$BIN" combine --help >"$TMP/help"
check "--help exits 0 with an example" grep -q "example" "$TMP/help"
check "no temporary files left" test -z "$(ls -A "$TMP" | grep '\.tmp$')"

if [ "$fails" -ne 0 ]; then
    echo "$fails checks failed"
    exit 1
fi
echo "all checks passed"
