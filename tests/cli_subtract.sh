#!/usr/bin/env bash
# clred simulate-pair, clred subtract and clred candidates end to end: the
# difference MEF with SCORR/FLUX planes, candidates matching the injected truth,
# the catalog in CSV, JSON and FITS, cutouts, JSON summaries, exit codes for
# bad input and nothing left behind when a command fails.
set -u
HERE=$(cd "$(dirname "$0")" && pwd) # before any cd: $0 may be relative
BIN=${CLRED_BIN:?CLRED_BIN is not set}
TMP=${CLRED_TEST_TMP:-/tmp}/cli_subtract
rm -rf "$TMP"
mkdir -p "$TMP"
cd "$TMP" || exit 1
fails=0
. "$HERE/lib_cli.sh" || exit 1
no_leftovers() { [ -z "$(ls -A | grep -E '\.tmp$')" ]; }

expect_rc 0 "subtract --help" "$BIN" subtract --help
check "help has an example" grep -q "example" out.txt
expect_rc 0 "simulate-pair" "$BIN" simulate-pair -o pair --size 160x160 --ntransients 16 --nholes 2 --seed 3
check "pair files" test -s pair/new.fits -a -s pair/ref.fits -a -s pair/new_psf.fits -a -s pair/truth.csv
expect_rc 0 "simulate-pair is deterministic" "$BIN" simulate-pair -o pair2 --size 160x160 --ntransients 16 --nholes 2 --seed 3
check "same bytes" cmp -s pair/new.fits pair2/new.fits

expect_rc 0 "subtract with the true PSFs" "$BIN" subtract pair/new.fits pair/ref.fits -o diff.fits \
    --new-psf pair/new_psf.fits --ref-psf pair/ref_psf.fits --candidates cands.csv --cutouts cut.fits \
    --psf-out pd.fits --json
check "JSON names the method" grep -q '"method": "zogy"' out.txt
check "difference has SCORR, FLUX and FLUXVAR planes" sh -c "grep -aq \"EXTNAME = 'SCORR\" diff.fits && grep -aq \"EXTNAME = 'FLUXVAR\" diff.fits"
check "cutouts have NEW, REF and DIFF cubes" sh -c "grep -aq \"EXTNAME = 'NEW\" cut.fits && grep -aq \"EXTNAME = 'DIFF\" cut.fits"
check "catalog header" grep -q "^NUMBER,X,Y,X_ERR,Y_ERR,ISDIFFPOS,SCORE,FLUX" cands.csv
# every truth source with S/N >= 10 has a candidate within 2 px, of its sign
found_all() {
    awk -F, 'NR == FNR { if (FNR > 1) { cx[FNR] = $2; cy[FNR] = $3; pos[FNR] = $6; n = FNR } next }
             FNR > 1 && $4 >= 10 { want++; for (i = 2; i <= n; i++) { dx = cx[i] - $1; dy = cy[i] - $2;
                 if (dx * dx + dy * dy <= 4 && pos[i] == ($3 > 0)) { got++; break } } }
             END { printf "truth S/N >= 10: %d, found with the right sign: %d\n", want, got; exit !(want >= 5 && got == want) }' \
        cands.csv pair/truth.csv
}
check "bright injected sources found with their signs" found_all

expect_rc 0 "candidates on the written difference" "$BIN" candidates diff.fits --psf pd.fits -o cands.json --json
check "same count as subtract" sh -c "test \"\$(grep -o '\"candidates\": [0-9]*' out.txt | grep -o '[0-9]*')\" -eq \$((\$(wc -l <cands.csv) - 1))"
check "JSON catalog" grep -q '"isdiffpos"' cands.json
expect_rc 0 "candidates as a FITS table" "$BIN" candidates diff.fits --psf pd.fits -o cands.fits
check "FITS table" grep -aq "TTYPE1  = 'NUMBER" cands.fits

expect_rc 2 "one image is a usage error" "$BIN" subtract pair/new.fits -o x.fits
expect_rc 2 "no output" "$BIN" subtract pair/new.fits pair/ref.fits
expect_rc 2 "an unknown method" "$BIN" subtract pair/new.fits pair/ref.fits -o x.fits --method hotpants
expect_rc 1 "an existing output needs --overwrite" "$BIN" subtract pair/new.fits pair/ref.fits -o diff.fits \
    --new-psf pair/new_psf.fits --ref-psf pair/ref_psf.fits
expect_rc 1 "a missing input" "$BIN" subtract pair/none.fits pair/ref.fits -o y.fits
expect_rc 0 "zogy with PSFs measured as varying (order 1)" "$BIN" subtract pair/new.fits pair/ref.fits -o dv.fits \
    --psf-order 1
# a field whose seeing varies: the models vary, and --psf-variation counts it (PSFVARY)
expect_rc 0 "simulate-pair with an FWHM gradient" "$BIN" simulate-pair -o pairv --size 256x256 --ntransients 8 \
    --fwhm-gradient 0.3,0.15 --seed 1
expect_rc 0 "zogy with varying PSFs and their variation over a tile" "$BIN" subtract pairv/new.fits \
    pairv/ref.fits -o dw.fits --psf-order 2 --psf-variation
expect_rc 0 "the same without the variation term" "$BIN" subtract pairv/new.fits pairv/ref.fits -o dw0.fits \
    --psf-order 2
check "the variation term only when asked" sh -c "grep -aqE 'PSFVARY = +1(\.0*)?( |E)' dw.fits && grep -aqE 'PSFVARY = +0(\.0*)?( |E)' dw0.fits"
expect_rc 2 "--psf-order 3 is a usage error" "$BIN" subtract pair/new.fits pair/ref.fits -o z.fits --psf-order 3
# measured PSFs carry their estimated error into S_corr (PSFERRN/R > 0); given PSF files none (0, in diff.fits above)
check "measured PSFs' errors in the header" sh -c "grep -ao 'PSFERRN = *[0-9.E+-]*' dv.fits | grep -vq ' 0$\| 0.0*$'"
check "given PSFs' errors are 0" sh -c "grep -aqE 'PSFERRN = +0(\.0*)?( |E)' diff.fits"
expect_rc 0 "--psf-err sets both" "$BIN" subtract pair/new.fits pair/ref.fits -o de.fits --psf-err 0.02
check "--psf-err in the header" sh -c "grep -aqE 'PSFERRR = +0?\.02' de.fits"
# measured models' wing errors count in S_corr too (PSFWINGN > 0); a given --psf-err is a constant error, no wings
check "measured PSFs' wing errors in the header" sh -c "grep -ao 'PSFWINGN= *[0-9.E+-]*' dv.fits | grep -vq ' 0$\| 0.0*$'"
check "--psf-err leaves the wings out" sh -c "grep -aqE 'PSFWINGN= +0(\.0*)?( |E)' de.fits"
expect_rc 2 "--psf-err 1 is a usage error" "$BIN" subtract pair/new.fits pair/ref.fits -o z.fits --psf-err 1
expect_rc 2 "an FWHM gradient beyond 1 is a usage error" "$BIN" simulate-pair -o pairg --fwhm-gradient 2,0
check "nothing written on failure" sh -c "test ! -e y.fits && test ! -e x.fits"
check "no temporaries left" no_leftovers

[ "$fails" -eq 0 ] && echo "all passed" || echo "$fails failed"
exit $((fails > 0))
