#!/bin/bash
# clred astrometry and world coordinates end to end on a simulated field with
# a TAN-SIP WCS (2 px of distortion at the corners): the fit from a centre and
# a scale, the catalogs' RA/DEC against the simulator's stars.csv, the WCS of a
# stack on the union grid, refusals (another field, no start) with no output.
set -u
BIN=${CLRED_BIN:?CLRED_BIN is not set}
TMP=${CLRED_TEST_TMP:-/tmp}/cli_astrometry
rm -rf "$TMP"
mkdir -p "$TMP"
fails=0
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/lib_cli.sh" # check, near

"$BIN" simulate -o "$TMP/sim" --size 240x200 --nbias 1 --ndark 1 --nflat 1 --nscience 3 --nepoch2 0 \
    --nstars 500 --dither 10 --sip 2 >/dev/null || { echo "FAIL: simulate"; exit 1; }
cd "$TMP/sim" || exit 1
check "the simulator writes stars.csv" grep -q "^id,ra,dec,mag,x,y,flux$" stars.csv
check "science frames carry a TAN-SIP WCS" grep -aq "RA---TAN-SIP" sci_001.fits

# sources within 0.1 arcsec of a catalog star and their RMS: "total within rms"
sky() { awk -v ref=stars.csv -f "$HERE/skymatch.awk" stars.csv "$1"; }
good_sky() { # catalog: at least 80 % of the clean sources within 0.1", RMS of those <= 0.04" (0.1 px)
    sky "$1" | awk '{ ok = $1 >= 15 && $2 >= 0.8 * $1 && $3 >= 0 && $3 <= 0.04 } END { exit !ok }'
}

"$BIN" astrometry sci_001.fits --ref stars.csv --centre 150.002,2.199 --scale 0.41 -o fit.fits --json >fit.json 2>err
check "astrometry from a centre and a scale exits 0" test $? -eq 0
check "JSON reports the stars and the RMS" grep -Eq '"nused": [0-9]+, "rms_arcsec": 0\.0[0-3]' fit.json
check "fitted scale is 0.4 arcsec/px" near "$(grep -o '"pixel_scale": [0-9.]*' fit.json | cut -d' ' -f2)" 0.4 0.002
check "fitted header has SIP and ASTRRMS" sh -c "grep -aq 'A_ORDER =                    3' fit.fits && grep -aq 'ASTRRMS' fit.fits"

"$BIN" sources fit.fits --csv fit.csv --thresh 3 >/dev/null 2>&1
check "catalog of a frame with a WCS has RA and DEC" grep -q "^NUMBER,X,Y,RA,DEC,FLUX" fit.csv
check "fitted frame's sky positions agree with the catalog ($(sky fit.csv))" good_sky fit.csv

"$BIN" combine --align --grid union sci_00[1-3].fits -o stack.fits >/dev/null 2>&1
check "union stack exits 0" test $? -eq 0
"$BIN" sources stack.fits --csv stack.csv --thresh 3 >/dev/null 2>&1
check "union stack's sky positions agree with the catalog ($(sky stack.csv))" good_sky stack.csv

"$BIN" photometry stack.fits --csv phot.csv >/dev/null 2>&1
check "photometry catalog has RA and DEC" grep -q "^NUMBER,X,Y,RA,DEC,FLUX" phot.csv

# The zero point of the raw frame (ADU): 25 + 2.5 log10(120 s / gain 1.5) less
# the ~9 % of a Moffat star outside 5 px: 29.66; vignetting and the bias in
# the raw frame widen the scatter, so 0.15 mag.
"$BIN" zeropoint fit.fits --ref stars.csv -o zp.fits --json >zp.json 2>err
check "zeropoint exits 0" test $? -eq 0
check "MAGZP of the raw frame is about 29.66 ($(grep -o '"magzp": [0-9.]*' zp.json))" \
    near "$(grep -o '"magzp": [0-9.]*' zp.json | cut -d' ' -f2)" 29.66 0.15
check "MAGZP, MAGZPERR and MAGLIM in the header" sh -c "grep -aq 'MAGZP   =' zp.fits && grep -aq 'MAGZPERR=' zp.fits && grep -aq 'MAGLIM  =' zp.fits"
# PSF magnitudes with a PSF measured on the frame: the PSF's stamp (25 px)
# holds ~0.5 % more of a Moffat star than the 5 px aperture's 91 %: 29.75
"$BIN" zeropoint fit.fits --ref stars.csv --psf measure --json >zpp.json 2>err
check "zeropoint --psf measure exits 0" test $? -eq 0
check "PSF magnitudes ($(grep -o '"magzp": [0-9.]*' zpp.json))" sh -c "grep -q '\"magnitudes\": \"psf\"' zpp.json && \
    awk -v z=\"\$(grep -o '\"magzp\": [0-9.]*' zpp.json | cut -d' ' -f2)\" 'BEGIN { exit !(z > 29.6 && z < 29.95) }'"
"$BIN" zeropoint bias_001.fits --ref stars.csv >/dev/null 2>err
check "zeropoint without a WCS is refused (exit 1)" test $? -eq 1

# Refusals leave no output.
awk -F, 'NR == 1 { print; next } { OFS = ","; $2 = $2 + 0.05 * (NR % 7) - 0.15; print }' stars.csv >other.csv
"$BIN" astrometry sci_001.fits --ref other.csv -o bad.fits >/dev/null 2>err
check "another field's catalog is refused (exit 1)" test $? -eq 1
check "the message says what to check" grep -q "check the catalog" err
check "no output after a refusal" test ! -e bad.fits
"$BIN" astrometry bias_001.fits --ref stars.csv -o bad.fits >/dev/null 2>err
check "no WCS and no centre: usage error (exit 2)" test $? -eq 2
"$BIN" astrometry sci_001.fits -o bad.fits >/dev/null 2>err
check "no --ref: usage error" test $? -eq 2
check "no output after usage errors" test ! -e bad.fits

echo "$fails failure(s)"
[ "$fails" -eq 0 ]
