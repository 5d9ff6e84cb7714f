#!/bin/bash
# clred lightcurve end to end on a small simulated night (TAN WCS on every
# dithered frame): targets at sky positions from the simulator's stars.csv and
# at pixel positions, FITS and CSV tables, the MJD of each frame, usage
# errors and no output on failure. Accuracy (chi^2 of injected light curves)
# is tests/test_lightcurve.c's.
set -u
BIN=${CLRED_BIN:?CLRED_BIN is not set}
TMP=${CLRED_TEST_TMP:-/tmp}/cli_lightcurve
rm -rf "$TMP"
mkdir -p "$TMP"
fails=0
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/lib_cli.sh" # check, near

"$BIN" simulate -o "$TMP/sim" --size 160x128 --nbias 1 --ndark 1 --nflat 1 --nscience 3 --nepoch2 0 \
    --nstars 60 --dither 5 >/dev/null || { echo "FAIL: simulate"; exit 1; }
cd "$TMP/sim" || exit 1

# three bright stars well inside the frame, by sky position
awk -F, 'NR == 1 { print "ra,dec"; next } $5 > 20 && $5 < 140 && $6 > 20 && $6 < 108 && $4 > 17 && $4 < 19.5 && n < 3 { print $2 "," $3; n++ }' \
    stars.csv >sky.csv
check "three sky targets" test "$(wc -l <sky.csv)" -eq 4
"$BIN" lightcurve sci_00[1-3].fits --targets sky.csv -o lc.fits --csv lc.csv --json >lc.json 2>err
check "lightcurve exits 0" test $? -eq 0
check "JSON counts 9 points" grep -q '"points": 9, "flagged": 0, "sky": true' lc.json
check "CSV names the columns" grep -q "^TARGET,IMAGE,MJD,X,Y,FLUX,FLUX_ERR,MAG,MAG_ERR,FLAGS$" lc.csv
check "FITS table written" test -s lc.fits
# the simulator's frames start 2026-... with EXPTIME 120: MJD grows frame by frame
check "MJD increases from frame to frame" awk -F, 'NR > 1 && $1 == 0 { if (n++ && $3 <= last) bad = 1; last = $3 } END { exit bad || n != 3 }' lc.csv
# a constant star on raw frames of different seeing: its fluxes in a 5 px
# aperture within 20 % of each other (the accuracy test is test_lightcurve)
steady() { awk -F, 'NR > 1 && $1 == 0 { f[n++] = $6 } END { for (i = 1; i < n; i++) if (!(f[i] > 0.8 * f[0] && f[i] < 1.25 * f[0])) exit 1; exit n != 3 }' lc.csv; }
check "a constant star's fluxes agree" steady

# forced PSF photometry with a PSF file: a simulated pair's Moffat of the
# seeing of frames 1 and 3 (3.7 and 3.8 px; frame 2 has 2.7): each star's
# flux ratio between the two raw frames (vignetting, dither) within 5 % of
# the aperture's
"$BIN" simulate-pair -o psfsrc --size 64x64 --ntransients 0 --new-fwhm 3.75 >/dev/null 2>&1
"$BIN" lightcurve sci_001.fits sci_003.fits --targets sky.csv --psf psfsrc/new_psf.fits --csv lcp.csv >/dev/null 2>err
check "lightcurve --psf exits 0" test $? -eq 0
check "PSF: the stars' flux ratios agree with the aperture's" awk -F, 'FNR == 1 { file++; next }
    file == 1 && $2 != 1 { a[$1, $2 ? 1 : 0] = $6 } file == 2 { p[$1, $2] = $6; if ($2 == 1) n++ }
    END { for (t = 0; t < n; t++) { r = (p[t, 1] / p[t, 0]) / (a[t, 1] / a[t, 0]); if (r < 0.95 || r > 1.05) bad++ }
          exit !(n == 3 && !bad) }' lc.csv lcp.csv
"$BIN" lightcurve sci_001.fits --targets sky.csv --difference --psf measure --csv bad.csv >/dev/null 2>err
check "--psf measure on differences: usage error" test $? -eq 2
check "no output after it" test ! -e bad.csv

printf 'x,y\n80,64\n' >pix.csv
"$BIN" lightcurve sci_001.fits --targets pix.csv --csv pix_lc.csv >/dev/null 2>&1
check "pixel targets" test "$(wc -l <pix_lc.csv)" -eq 2

"$BIN" lightcurve sci_001.fits --targets sky.csv >/dev/null 2>err
check "no output: usage error" test $? -eq 2
"$BIN" lightcurve sci_001.fits --csv x.csv >/dev/null 2>err
check "no targets: usage error" test $? -eq 2
"$BIN" lightcurve bias_001.fits --targets sky.csv --csv bad.csv >/dev/null 2>err
check "sky targets on a frame without a WCS: exit 1" test $? -eq 1
check "no output after a failure" test ! -e bad.csv

echo "$fails failure(s)"
[ "$fails" -eq 0 ]
