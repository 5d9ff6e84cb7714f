#!/bin/bash
# clred register end to end: the shift table (CSV and JSON), aligned frames
# with VAR/MASK and HISTORY, exit codes and one-line messages for bad input
# and bad options, no output left behind on failure.
set -u
BIN=${CLRED_BIN:?CLRED_BIN is not set}
TMP=${CLRED_TEST_TMP:-/tmp}/cli_register
FIXTURES=$(dirname "$BIN")/tests/test_phasecorr
rm -rf "$TMP"
mkdir -p "$TMP"
fails=0

. "$(dirname "${BASH_SOURCE[0]}")/lib_cli.sh" # check, near

"$FIXTURES" --write-fixtures "$TMP" || { echo "FAIL: cannot write fixtures"; exit 1; }
A=$TMP/star_0.fits B=$TMP/star_1.fits C=$TMP/star_2.fits

"$BIN" register "$A" "$B" "$C" --table "$TMP/shifts.csv" >"$TMP/out" 2>"$TMP/err"
check "table only exits 0" test $? -eq 0
check "CSV header" grep -q "^file,frame,dx,dy,psr,a,b,c,d,e,f$" "$TMP/shifts.csv"
check "CSV has three rows" test "$(wc -l <"$TMP/shifts.csv")" -eq 4
DX=$(awk -F, 'NR == 3 { print $3 }' "$TMP/shifts.csv")
DY=$(awk -F, 'NR == 3 { print $4 }' "$TMP/shifts.csv")
check "frame 1 dx = 2.25 (got $DX)" near "$DX" 2.25 0.03
check "frame 1 dy = -1.5 (got $DY)" near "$DY" -1.5 0.03
check "no aligned frames without -o" test ! -e "$TMP/star_1_reg.fits"

"$BIN" register --json --ref 1 --interp bicubic "$A" "$B" "$C" -o "$TMP/aligned" --table "$TMP/shifts.json" \
    >"$TMP/out.json" 2>"$TMP/err"
check "align exits 0" test $? -eq 0
check "aligned frames written" test -s "$TMP/aligned/star_0_reg.fits" -a -s "$TMP/aligned/star_2_reg.fits"
check "json summary names the reference" grep -q '"reference": "1"' "$TMP/out.json"
check "json table has transforms" grep -q '"transform": \[1, 0, ' "$TMP/shifts.json"
check "VAR-less input still gets a MASK extension" grep -aq "EXTNAME = 'MASK" "$TMP/aligned/star_0_reg.fits"
check "HISTORY describes the registration" grep -aq "HISTORY clred register: ref=1 interp=bicubic" "$TMP/aligned/star_0_reg.fits"
DX=$(grep -o '"dx": [-0-9.]*' "$TMP/out.json" | sed -n 3p | awk '{ print $2 }')
check "frame 2 against frame 1: dx = -5.65 (got $DX)" near "$DX" -5.65 0.03

"$BIN" register "$A" "$B" -o "$TMP/aligned" 2>"$TMP/err"
check "existing outputs refused (exit 1)" test $? -eq 1
check "message says --overwrite" grep -q "overwrite" "$TMP/err"
check "one-line message" test "$(wc -l <"$TMP/err")" -eq 1

"$BIN" register "$A" "$TMP/missing.fits" --table "$TMP/bad1.csv" 2>"$TMP/err"
check "missing file exits 1" test $? -eq 1
check "message names the missing file" grep -q "missing.fits" "$TMP/err"
check "no table after a missing file" test ! -e "$TMP/bad1.csv"

"$BIN" register "$A" "$B" 2>"$TMP/err"
check "no output named exits 2" test $? -eq 2
"$BIN" register --interp cubic "$A" "$B" --table "$TMP/bad2.csv" 2>"$TMP/err"
check "bad --interp exits 2" test $? -eq 2
check "message names the option" grep -q -- "--interp" "$TMP/err"
"$BIN" register --ref 7 "$A" "$B" --table "$TMP/bad3.csv" 2>"$TMP/err"
check "--ref beyond the frames exits 2" test $? -eq 2
"$BIN" register --region 1:300,1:20 "$A" "$B" --table "$TMP/bad4.csv" 2>"$TMP/err"
check "region outside the frame exits 2" test $? -eq 2
check "no table after a bad region" test ! -e "$TMP/bad4.csv"
"$BIN" register --interp fourier --box 40,40,3 "$A" "$B" --table "$TMP/bad5.csv" 2>"$TMP/err"
check "tiny --box exits 2" test $? -eq 2
"$BIN" register --help >"$TMP/help"
check "--help exits 0 with an example" grep -q "example" "$TMP/help"

[ $fails -eq 0 ] || { echo "$fails check(s) failed"; exit 1; }
echo "all checks passed"
