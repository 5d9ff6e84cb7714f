#!/usr/bin/env bash
# clred subtract --method al end to end on a simulated pair: the difference
# MEF (SCI, VAR, MASK, DETECT, DECORR, DECORRVAR by default; CONV and SCORE
# with --planes) with KSUM, CONVOL and PHOTNORM in its header, the kernel solution file, candidates
# that match the injected truth with their signs, the HOTPANTS-like options,
# usage errors and nothing left behind on failure.
set -u
HERE=$(cd "$(dirname "$0")" && pwd) # before any cd: $0 may be relative
BIN=${CLRED_BIN:?CLRED_BIN is not set}
TMP=${CLRED_TEST_TMP:-/tmp}/cli_subtract_al
rm -rf "$TMP"
mkdir -p "$TMP"
cd "$TMP" || exit 1
fails=0
. "$HERE/lib_cli.sh" || exit 1
no_leftovers() { [ -z "$(ls -A | grep -E '\.tmp$')" ]; }

expect_rc 0 "simulate-pair" "$BIN" simulate-pair -o pair --size 192x192 --ntransients 20 --nholes 2 --seed 7
expect_rc 0 "subtract --method al" "$BIN" subtract pair/new.fits pair/ref.fits -o diff.fits --method al \
    --new-psf pair/new_psf.fits --ref-psf pair/ref_psf.fits --decorrelate --normalize i --candidates cands.csv \
    --kernel-out kernel.fits --psf-out pd.fits --json
check "JSON names the method" grep -q '"method": "al"' out.txt
check "the reference (sharper) was convolved" grep -q '"convolved": "reference"' out.txt
ksum=$(grep -o '"ksum": [-0-9.e]*' out.txt | awk '{print $2}')
check "kernel sum near 1 (same zero points): $ksum" near "$ksum" 1 0.03
check "difference planes" sh -c "for e in DETECT DECORR DECORRVAR; do grep -aq \"EXTNAME = '\$e\" diff.fits || exit 1; done"
check "no CONV or SCORE by default" sh -c "! grep -aq \"EXTNAME = 'CONV\" diff.fits && ! grep -aq \"EXTNAME = 'SCORE\" diff.fits"
check "KSUM, CONVOL, PHOTNORM in the header" sh -c "grep -aq 'KSUM    =' diff.fits && grep -aq \"CONVOL  = 'TEMPLATE\" diff.fits && grep -aq \"PHOTNORM= 'i\" diff.fits"
check "kernel file: images and the solution table" sh -c "grep -aq 'KGRID   =' kernel.fits && grep -aq \"EXTNAME = 'SOLUTION\" kernel.fits"
check "the difference's PSF" test -s pd.fits
# (the difference is NO_DATA within the kernel's half-width, 3 x 4.5 px, of the border)
found_all() {
    awk -F, 'NR == FNR { if (FNR > 1) { cx[FNR] = $2; cy[FNR] = $3; pos[FNR] = $6; n = FNR } next }
             FNR > 1 && $4 >= 10 && $1 >= 15 && $2 >= 15 && $1 <= 176 && $2 <= 176 { want++; for (i = 2; i <= n; i++) { dx = cx[i] - $1; dy = cy[i] - $2;
                 if (dx * dx + dy * dy <= 4 && pos[i] == ($3 > 0)) { got++; break } } }
             END { printf "truth S/N >= 10: %d, found with the right sign: %d\n", want, got; exit !(want >= 5 && got == want) }' \
        "${1:-cands.csv}" pair/truth.csv
}
check "bright injected sources found with their signs" found_all

# --fit-mask: the bottom half left out of the kernel's fit, not out of the difference
{
    printf '%-80s' "SIMPLE  =                    T" "BITPIX  =                    8" "NAXIS   =                    2" \
        "NAXIS1  =                  192" "NAXIS2  =                  192" "END"
    head -c $((2880 - 6 * 80)) /dev/zero | tr '\0' ' '
    head -c $((192 * 96)) /dev/zero | tr '\0' '\1'
    head -c $((192 * 96 + 576)) /dev/zero
} > fitmask.fits
al_args=(pair/new.fits pair/ref.fits --method al --new-psf pair/new_psf.fits --ref-psf pair/ref_psf.fits --json)
expect_rc 0 "without a fit mask" "$BIN" subtract "${al_args[@]}" -o diff_nofm.fits
stamps_all=$(grep -o '"stamps": [0-9]*' out.txt | awk '{print $2}')
expect_rc 0 "--fit-mask" "$BIN" subtract "${al_args[@]}" -o diff_fm.fits --fit-mask fitmask.fits --candidates cands_fm.csv
stamps_fm=$(grep -o '"stamps": [0-9]*' out.txt | awk '{print $2}')
ksum=$(grep -o '"ksum": [-0-9.e]*' out.txt | awk '{print $2}')
check "no stamp in the fit mask's half: ${stamps_fm:-?} stamps, ${stamps_all:-?} without it" \
    test "${stamps_fm:-0}" -gt 0 -a "${stamps_fm:-0}" -lt "${stamps_all:-0}"
check "kernel sum near 1 with the fit mask: $ksum" near "$ksum" 1 0.03
check "the fit mask's half is searched: bright injected sources found with their signs" found_all cands_fm.csv
expect_rc 0 "--fit-only: the same mask selects the pixels to fit" "$BIN" subtract "${al_args[@]}" -o diff_fo.fits \
    --fit-only fitmask.fits
stamps_fo=$(grep -o '"stamps": [0-9]*' out.txt | awk '{print $2}')
check "--fit-only leaves the other half's stamps: ${stamps_fo:-?} + ${stamps_fm:-?} of ${stamps_all:-?}" \
    test "${stamps_fo:-0}" -gt 0 -a "${stamps_fo:-0}" -lt "${stamps_all:-0}" -a "$((${stamps_fo:-0} + ${stamps_fm:-0}))" -le "${stamps_all:-0}"
expect_rc 2 "one fit mask at a time" "$BIN" subtract "${al_args[@]}" -o x.fits --fit-mask fitmask.fits --fit-only fitmask.fits
expect_rc 2 "--fit-mask needs --method al" "$BIN" subtract pair/new.fits pair/ref.fits -o x.fits --fit-mask fitmask.fits
check "the usage error says why" grep -q "fit-mask and --fit-only need --method al" err.txt
expect_rc 1 "a fit mask of another size" "$BIN" subtract "${al_args[@]}" -o x.fits --fit-mask pair/new_psf.fits
check "the message names the fit mask" grep -q "new_psf.fits: .* but the images are 192 x 192" err.txt
check "no output after a failure" test ! -e x.fits

expect_rc 0 "HOTPANTS-like options" "$BIN" subtract pair/new.fits pair/ref.fits -o diff2.fits --method al \
    --new-psf pair/new_psf.fits --ref-psf pair/ref_psf.fits --convolve i --ng "2 4 1.0 2 2.5" --hw 9 --rss 8 \
    --ko 0 --bgo 0 --tu 1e9 --iu 1e9 --max-stamps 40 --json
check "the new image convolved when asked" grep -q '"convolved": "new"' out.txt
check "--ko 0 gives a constant kernel" grep -q '"kernel_order": 0' out.txt
# (the order used depends on how many stamps this small pair has; test_al checks --ko-fixed's order)
expect_rc 0 "--ko 1 --ko-fixed" "$BIN" subtract pair/new.fits pair/ref.fits -o diff3.fits --method al \
    --new-psf pair/new_psf.fits --ref-psf pair/ref_psf.fits --ko 1 --ko-fixed --bg-stamps --json
ko_used=$(grep -o '"kernel_order": [0-9]*' out.txt | awk '{print $2}')
check "the order used ($ko_used) in the header" grep -aq "ALKORD  =                    ${ko_used:-x}" diff3.fits
check "the sky re-fitted by default, not with --bg-stamps" sh -c "grep -aq 'ALSKYFIT=' diff.fits && \
    ! grep -aq 'ALSKYFIT=                    0 ' diff.fits && grep -aq 'ALSKYFIT=                    0 ' diff3.fits"
check "no DECORR without --decorrelate" sh -c "! grep -aq \"EXTNAME = 'DECORR\" diff2.fits"
expect_rc 0 "--planes conv,score" "$BIN" subtract pair/new.fits pair/ref.fits -o diff_planes.fits --method al \
    --new-psf pair/new_psf.fits --ref-psf pair/ref_psf.fits --decorrelate --planes conv,score
check "--planes conv,score: CONV and SCORE, no DETECT or DECORR" sh -c "grep -aq \"EXTNAME = 'CONV\" diff_planes.fits && \
    grep -aq \"EXTNAME = 'SCORE\" diff_planes.fits && ! grep -aq \"EXTNAME = 'DETECT\" diff_planes.fits && \
    ! grep -aq \"EXTNAME = 'DECORR\" diff_planes.fits && grep -aq \"EXTNAME = 'MASK\" diff_planes.fits"

expect_rc 2 "--kernel-out needs --method al" "$BIN" subtract pair/new.fits pair/ref.fits -o x.fits --kernel-out k.fits
expect_rc 2 "--ko out of range" "$BIN" subtract pair/new.fits pair/ref.fits -o x.fits --method al --ko 4
expect_rc 2 "--ng malformed" "$BIN" subtract pair/new.fits pair/ref.fits -o x.fits --method al --ng "2 4 1.0"
expect_rc 2 "--planes unknown" "$BIN" subtract pair/new.fits pair/ref.fits -o x.fits --method al --planes conv,flux
expect_rc 2 "--planes needs --method al" "$BIN" subtract pair/new.fits pair/ref.fits -o x.fits --planes all
expect_rc 2 "--convolve unknown" "$BIN" subtract pair/new.fits pair/ref.fits -o x.fits --method al --convolve both
expect_rc 1 "a kernel too large for the image" "$BIN" subtract pair/new.fits pair/ref.fits -o x.fits --method al \
    --new-psf pair/new_psf.fits --ref-psf pair/ref_psf.fits --hw 60
check "nothing written on failure" sh -c "test ! -e x.fits && test ! -e k.fits"
check "no temporaries left" no_leftovers

[ "$fails" -eq 0 ] && echo "all passed" || echo "$fails failed"
exit $((fails > 0))
