#!/usr/bin/env bash
# clred sources and clred photometry end to end: catalogs written (FITS and
# CSV), JSON summaries, SEEING in the header, exit codes and messages for bad
# input, and nothing left behind when a command fails.
set -u
HERE=$(cd "$(dirname "$0")" && pwd) # before any cd: $0 may be relative
BIN=${CLRED_BIN:?CLRED_BIN is not set}
TMP=${CLRED_TEST_TMP:-/tmp}/cli_sources
rm -rf "$TMP"
mkdir -p "$TMP"
cd "$TMP" || exit 1
fails=0
. "$HERE/lib_cli.sh" || exit 1
no_leftovers() { [ -z "$(ls -A | grep -E '\.tmp$')" ]; }

# A 160 x 120 field with six round stars of FWHM 3, positions and a bad positions file.
FIXTURES="$(dirname "$BIN")/tests/test_sources_fixtures"
"$FIXTURES" "$TMP" || { echo "FAIL - cannot write fixtures with $FIXTURES"; exit 1; }

expect_rc 0 "sources --help" "$BIN" sources --help
check "help has an example" grep -q "example" out.txt

expect_rc 0 "sources writes FITS and CSV" "$BIN" sources field.fits -o cat.fits --csv cat.csv --json
check "JSON summary counts six sources" grep -q '"nsources": 6' out.txt
check "JSON has a seeing" grep -Eq '"seeing": [0-9]' out.txt
check "FITS catalog exists" test -s cat.fits
check "CSV has a header and six rows" test "$(wc -l <cat.csv)" -eq 7
check "CSV header names the columns" grep -q "^NUMBER,X,Y,FLUX,FLUX_ERR,PEAK,A,B,THETA,FWHM,ELLIPTICITY,NPIX,FLAGS$" cat.csv
check "FITS catalog has SEEING and a HISTORY card" sh -c "grep -aq 'SEEING  =' cat.fits && grep -aq 'HISTORY clred sources' cat.fits"
fwhm_ok() { # every FWHM (column 10) within 0.15 of 3
    awk -F, 'NR > 1 { n++; if ($10 < 2.85 || $10 > 3.15) bad++ } END { exit !(n == 6 && bad == 0) }' cat.csv
}
check "FWHM of the stars is about 3" fwhm_ok
check "no temporary files left" no_leftovers

expect_rc 1 "existing output without --overwrite" "$BIN" sources field.fits -o cat.fits
check "message says the output exists" grep -q "exists" err.txt
expect_rc 0 "--overwrite replaces it" "$BIN" sources field.fits -o cat.fits --overwrite --thresh 3 --minarea 8 --fwhm 2.5
expect_rc 2 "output named like the input" "$BIN" sources field.fits --csv field.fits
expect_rc 2 "no output" "$BIN" sources field.fits
expect_rc 2 "bad --thresh" "$BIN" sources field.fits -o x.fits --thresh abc
check "message names --thresh" grep -q -- "--thresh" err.txt
expect_rc 2 "--deblend-mincont above 1" "$BIN" sources field.fits -o x.fits --deblend-mincont 2
check "message names --deblend-mincont" grep -q -- "--deblend-mincont" err.txt
expect_rc 0 "SExtractor deblending and CLEAN options" "$BIN" sources field.fits --csv opts.csv --deblend-nthresh 16 --deblend-mincont 0.01 --clean-param 1.5
check "the options find the six stars" test "$(wc -l <opts.csv)" -eq 7
expect_rc 0 "--no-clean" "$BIN" sources field.fits --csv noclean.csv --no-clean
expect_rc 2 "negative --minarea" "$BIN" sources field.fits -o x.fits --minarea -2
expect_rc 1 "missing input" "$BIN" sources nothere.fits -o x.fits --csv x.csv
check "message names the file" grep -q "nothere.fits" err.txt
check "nothing written on failure" test ! -e x.fits -a ! -e x.csv
expect_rc 1 "background map of another shape" "$BIN" sources field.fits -o x.fits --bkg cat.fits
check "nothing written when the background is wrong" test ! -e x.fits

# SExtractor filter files: a good one is used (the six stars), a malformed one
# is refused before anything is read, with one line naming it.
printf '# 3x3 all-ground\nCONV NORM\n1 2 1\n2 4 2\n1 2 1\n' >good.conv
printf 'CONV NORM\n1 2 1\n2 4\n1 2 1\n' >ragged.conv
expect_rc 0 "sources with a filter file" "$BIN" sources field.fits --csv conv.csv --filter good.conv
check "the filter file finds the six stars" test "$(wc -l <conv.csv)" -eq 7
expect_rc 1 "malformed filter file" "$BIN" sources field.fits --csv bad_conv.csv --filter ragged.conv
check "one-line message naming the filter file and line" sh -c 'test "$(wc -l <err.txt)" -eq 1 && grep -q "ragged.conv: line 3" err.txt'
check "nothing written for a bad filter" test ! -e bad_conv.csv
expect_rc 1 "missing filter file" "$BIN" sources field.fits --csv bad_conv.csv --filter nothere.conv
check "message names the missing filter" grep -q "nothere.conv" err.txt

expect_rc 0 "photometry at positions" "$BIN" photometry field.fits --positions pos.csv -o phot.fits --csv phot.csv --json
check "one row per position" test "$(wc -l <phot.csv)" -eq 8
check "JSON counts seven positions" grep -q '"n": 7' out.txt
check "SEEING in the photometry header" grep -aq "SEEING  =" phot.fits
phot_ok() { # the corner row flagged EDGE (2), the six stars unflagged with flux 8000 within 5 sigma
    awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
             { r++; f = $col["FLAGS"]; flux = $col["FLUX"]; err = $col["FLUX_ERR"]
               if (r == 7) { if (int(f / 2) % 2 != 1) bad++ }
               else { d = flux - 8000; if (d < 0) d = -d; if (f != 0 || d > 5 * err) bad++ } }
             END { exit !(r == 7 && bad == 0) }' phot.csv
}
check "the corner position is flagged EDGE and the stars measure 8000" phot_ok
expect_rc 0 "photometry at detected sources" "$BIN" photometry field.fits --detect --radius 4 --annulus 7,11 --csv det.csv
check "six detected positions measured" test "$(wc -l <det.csv)" -eq 7
# Without --annulus the annulus follows the seeing (3 and 5 FWHM, at least 8 and 12 px).
"$BIN" photometry field.fits --detect --csv seeing.csv --json >seeing.json 2>err.txt
check "default annulus is 3 and 5 x the measured seeing" awk '
    { match($0, /"annulus": \[[0-9.]*, [0-9.]*\]/); split(substr($0, RSTART + 12, RLENGTH - 13), a, ", ")
      match($0, /"seeing": [0-9.]*/); s = substr($0, RSTART + 10, RLENGTH - 10) + 0 }
    END { in_ok = a[1] - (3 * s > 8 ? 3 * s : 8); out_ok = a[2] - (5 * s > 12 ? 5 * s : 12)
          exit !(s > 0 && in_ok * in_ok < 1e-6 && out_ok * out_ok < 1e-6) }' seeing.json
# No annulus and no VAR plane: errors from the global background RMS, not NaN.
expect_rc 0 "photometry without an annulus" "$BIN" photometry field.fits --detect --annulus 0,0 --csv noann.csv
check "errors without an annulus or VAR are finite and positive" awk -F, '
    NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    { r++; e = $col["FLUX_ERR"]; if (e == "nan" || !(e + 0 > 0)) bad++ }
    END { exit !(r > 0 && bad == 0) }' noann.csv
expect_rc 1 "malformed positions file" "$BIN" photometry field.fits --positions bad.csv -o bad.fits
check "message names the line" grep -q "line 3" err.txt
check "nothing written for bad positions" test ! -e bad.fits
expect_rc 2 "bad --annulus" "$BIN" photometry field.fits --annulus 8 -o y.fits
expect_rc 2 "annulus inside out" "$BIN" photometry field.fits --annulus 12,8 -o y.fits
expect_rc 2 "--positions with --detect" "$BIN" photometry field.fits --positions pos.csv --detect -o y.fits
check "no temporary files left" no_leftovers

if [ "$fails" -ne 0 ]; then
    echo "$fails checks failed"
    exit 1
fi
echo "all checks passed"
