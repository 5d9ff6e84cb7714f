#!/bin/bash
# clred photometry --psf end to end on a simulated pair's new image (its
# true PSF, and one measured from it): PSF columns beside the aperture's,
# the injected point sources' PSF fluxes against the truth, usage errors
# and no output on failure. Accuracy against a reference fit and the pulls
# are tests/test_psfphot.c's; light curves and zero points in PSF mode are
# in cli_lightcurve.sh and cli_astrometry.sh.
set -u
BIN=${CLRED_BIN:?CLRED_BIN is not set}
TMP=${CLRED_TEST_TMP:-/tmp}/cli_psfphot
rm -rf "$TMP"
mkdir -p "$TMP"
fails=0
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/lib_cli.sh" # check, near

"$BIN" simulate-pair -o "$TMP/pair" --size 160x160 --ntransients 20 >/dev/null || { echo "FAIL: simulate-pair"; exit 1; }
cd "$TMP/pair" || exit 1
# the sources that appear in the new image, off galaxies
awk -F, 'NR == 1 { print "x,y,flux"; next } $3 > 0 && $5 == 0 { print $1 "," $2 "," $3 }' truth.csv >pos.csv
n=$(($(wc -l <pos.csv) - 1))
check "some point sources to measure ($n)" test "$n" -ge 5

"$BIN" photometry new.fits --psf new_psf.fits --csv p.csv -o p.fits --json >p.json 2>err
check "photometry --psf exits 0" test $? -eq 0
check "PSF columns after the aperture's" grep -q "^NUMBER,X,Y,FLUX,.*,FLAGS,PSF_X,PSF_Y,PSF_FLUX,PSF_FLUX_ERR,PSF_MAG,PSF_MAG_ERR,PSF_SKY,PSF_CHI2,PSF_FLAGS$" p.csv
check "FITS table written" test -s p.fits
check "JSON names the PSF's FWHM" grep -q '"psf_fwhm": 4.5' p.json
# detected sources paired with the injected ones (1.5 px): those fitted
# alone and unflagged within 4 sigma of the truth (the field's galaxies are
# no point sources: fits that include one are flagged BLENDED)
pulls() {
    awk -F, 'NR == FNR { if (FNR > 1) { tx[FNR] = $1; ty[FNR] = $2; tf[FNR] = $3; nt = FNR } next }
        FNR > 1 && $21 == 0 { for (k = 2; k <= nt; k++) if (($13 - tx[k]) ^ 2 + ($14 - ty[k]) ^ 2 < 2.25) {
            z = ($15 - tf[k]) / $16; n++; if (z > 4 || z < -4) bad++; printf "%.1f ", z } }
        END { exit !(n >= 1 && !bad) }' pos.csv p.csv
}
check "PSF fluxes agree with the truth (pulls $(pulls))" pulls
"$BIN" photometry new.fits --positions pos.csv --psf new_psf.fits --forced --csv pf.csv >/dev/null 2>&1
check "forced PSF photometry at given positions" sh -c "test \$(awk -F, 'NR > 1 && \$13 == \$2 && \$14 == \$3' pf.csv | wc -l) -eq $n"

"$BIN" photometry new.fits --psf measure --forced --fit-radius 7 --csv pm.csv --json >pm.json 2>err
check "photometry --psf measure --forced exits 0" test $? -eq 0
check "measured PSF from stars" grep -q '"psf_nstars": [1-9]' pm.json

# a varying model (order 1, or lower when the stars are too few) and the order's refusals
"$BIN" photometry new.fits --psf measure --psf-order 1 --forced --fit-radius 7 --csv po.csv --json >po.json 2>err
check "photometry --psf measure --psf-order 1 exits 0" test $? -eq 0
check "the PSF's order and corner FWHMs reported" grep -q '"psf_order": [01], "psf_ellipticity": [0-9.]*, "psf_fwhm_corners": \[[0-9]' po.json
"$BIN" photometry new.fits --psf measure --psf-order 3 --csv bad.csv >/dev/null 2>err
check "--psf-order 3: usage error" test $? -eq 2
"$BIN" photometry new.fits --psf new_psf.fits --psf-order 1 --csv bad.csv >/dev/null 2>err
check "--psf-order with a PSF file: usage error" test $? -eq 2

"$BIN" photometry new.fits --forced --csv x.csv >/dev/null 2>err
check "--forced without --psf: usage error" test $? -eq 2
"$BIN" photometry new.fits --psf missing.fits --csv bad.csv >/dev/null 2>err
check "a missing PSF file: exit 1" test $? -eq 1
check "no output after a failure" test ! -e bad.csv
"$BIN" photometry new.fits --psf new_psf.fits --psf-size 4 --csv bad.csv >/dev/null 2>err
check "an even PSF size: usage error" test $? -eq 2

echo "$fails failure(s)"
[ "$fails" -eq 0 ]
