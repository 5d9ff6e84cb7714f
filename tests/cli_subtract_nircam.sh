#!/usr/bin/env bash
# clred subtract on real data: the NIRCam pair (../shared/data/nircam: JWST
# F200W mosaics of Abell 2744, two epochs on one pixel grid, model PSFs and
# noise maps), by ZOGY and by Alard-Lupton with the given PSFs cut to 101 px,
# as bench/diff/run.py runs it. Skips when the data are absent.
set -u
BIN=${CLRED_BIN:?CLRED_BIN is not set}
HERE=$(cd "$(dirname "$0")" && pwd)
D=${CLRED_DATA:-$HERE/../../shared/data}/nircam
[ -f "$D/sci_jw02561_f200w.fits" ] || { echo "SKIP: no NIRCam pair in $D"; exit 77; }
TMP=${CLRED_TEST_TMP:-/tmp}/cli_subtract_nircam
rm -rf "$TMP"
mkdir -p "$TMP"
cd "$TMP" || exit 1
fails=0
. "$HERE/lib_cli.sh" || exit 1
json() { grep -o "\"$1\": [-0-9.e]*" out.txt | awk '{print $2}'; }
# no candidate within 3 px of the reference's NaN pixels (x 897-899, y 505-506, 0-based)
off_the_nans() {
    awk -F, 'NR > 1 { dx = $2 < 897 ? 897 - $2 : ($2 > 899 ? $2 - 899 : 0); dy = $3 < 505 ? 505 - $3 : ($3 > 506 ? $3 - 506 : 0)
                      if (dx * dx + dy * dy <= 9) bad++ } END { exit bad > 0 }' "$1"
}
inputs=("$D/sci_jw02561_f200w.fits" "$D/ref_jw01324_f200w.fits" --new-psf "$D/sci_psf.fits" --ref-psf "$D/ref_psf.fits"
    --psf-size 101 --new-noise "$D/sci_noise.fits" --ref-noise "$D/ref_noise.fits" --renormalize --json)

# (the mosaics' resampled noise is correlated, which their noise maps do not say: S_corr is renormalised)
expect_rc 0 "ZOGY with the given PSFs" "$BIN" subtract "${inputs[@]}" -o zogy.fits --astrom-sigma 0.06 --candidates zogy.csv
scorr_std=$(json scorr_std)
check "S_corr's spread over the noise maps' is above 1 (correlated noise): $scorr_std" \
    awk -v s="$scorr_std" 'BEGIN { exit !(s > 1 && s < 3) }'
check "SCORR, FLUX and FLUXVAR planes" sh -c "for e in SCORR FLUX FLUXVAR; do grep -aq \"EXTNAME = '\$e\" zogy.fits || exit 1; done"
check "ZOGY's candidates written" test -s zogy.csv
check "no ZOGY candidate from the reference's NaN pixels" off_the_nans zogy.csv

expect_rc 0 "Alard-Lupton with the given PSFs" "$BIN" subtract "${inputs[@]}" -o al.fits --method al --candidates al.csv
ksum=$(json ksum)
# both mosaics are in MJy/sr on one grid: a source reads the same in both, so
# the kernel sum is 1 within the two epochs' relative flux calibration (~1-2 %)
check "kernel sum 1 within 3 % (both in MJy/sr): $ksum" near "$ksum" 1 0.03
check "most stamps kept: $(json stamps_used) of $(json stamps)" \
    awk -v u="$(json stamps_used)" -v n="$(json stamps)" 'BEGIN { exit !(n >= 50 && u >= n / 2) }'
check "Alard-Lupton's candidates written" test -s al.csv
check "no Alard-Lupton candidate from the reference's NaN pixels" off_the_nans al.csv

if [ "$fails" -ne 0 ]; then
    echo "$fails check(s) failed"
    exit 1
fi
echo "all checks passed"
