#!/usr/bin/env bash
# clred proxy end to end on a small simulated CUTE-like set: the simulator's
# files, every product of the reduction, JSON, both methods, bad usage.
set -u
HERE=$(cd "$(dirname "$0")" && pwd) # before any cd: $0 may be relative
BIN=${CLRED_BIN:?CLRED_BIN is not set}
TMP=${CLRED_TEST_TMP:-/tmp}/cli_proxy
rm -rf "$TMP"
mkdir -p "$TMP"
cd "$TMP" || exit 1
fails=0
source "$HERE/lib_cli.sh" || exit 1
json_num() { grep -o "\"$2\": [-0-9.eE+]*" "$1" | head -1 | awk '{print $2}'; }

expect_rc 0 "simulate" "$BIN" proxy --simulate sim --size 100x20 --ndarks 8 --nscience 2 --seed 5
for f in darks science spectral truth_spectrum truth_background truth_group truth_hot; do
    check "sim/$f.fits written" test -s "sim/$f.fits"
done
check "truth.json written" grep -q '"ndarks": 8' sim/truth.json
expect_rc 0 "proxy (median)" "$BIN" proxy --darks sim/darks.fits --spectral sim/spectral.fits -o out sim/science.fits --json
cp out.txt run.json
spectral=$(json_num run.json spectral)
matched=$(json_num run.json matched)
check "6 spectral rows of 100 (rows within 3 of 10)" [ "$spectral" = "700" ]
check "nearly every spectral pixel matched" [ "$matched" -gt 650 ]
check "match.csv has a row per spectral pixel" [ "$(($(wc -l <out/match.csv) - 1))" = "$spectral" ]
for f in match.fits clean_001.fits clean_002.fits background_001.fits background_002.fits final_001.fits final_002.fits median_science.fits \
    median_final.fits median_final.png final_001.png; do
    check "out/$f written" test -s "out/$f"
done
# fits.csv: the median final frame and two final frames, 4 bins of 25 columns each
check "fits.csv has 12 rows" [ "$(($(wc -l <out/fits.csv) - 1))" = "12" ]
check "fits.csv names the median final frame" grep -q '^median_final,0,0,25,' out/fits.csv
check "infilled pixels reported" [ "$(json_num run.json infilled)" -gt 0 ]
expect_rc 0 "proxy (lsq, window)" "$BIN" proxy --darks sim/darks.fits --spectral sim/spectral.fits -o out2 \
    sim/science.fits --method lsq --window 20 --no-png --json
check "lsq reported" grep -q '"method": "lsq"' out.txt
check "no PNG with --no-png" test ! -e out2/median_final.png
expect_rc 1 "existing products without --overwrite" "$BIN" proxy --darks sim/darks.fits \
    --spectral sim/spectral.fits -o out sim/science.fits
# no mask: the region from the trace (200 x 40: trace sigma 1.2, split to
# 4.8; the simulator's band is rows 14..26, 13 of 40, and the found one is
# that widened by half the split: 13 to 17 rows per column)
expect_rc 0 "simulate 200 x 40" "$BIN" proxy --simulate sim2 --size 200x40 --ndarks 8 --nscience 3 --seed 2
expect_rc 0 "proxy without a mask" "$BIN" proxy --darks sim2/darks.fits -o out4 sim2/science.fits --no-png --json
cp out.txt region.json
check "spectral.fits written" test -s out4/spectral.fits
check "the region reported" grep -q '"region": {"k": 5, "order": 2' region.json
pix=$(grep -o '"pixels": [0-9]*' region.json | awk '{print $2}')
check "13 to 17 rows of 200 columns found spectral ($pix)" [ "${pix:-0}" -ge 2600 -a "${pix:-0}" -le 3400 ]
check "the found region's pixels are the spectral ones" [ "$(json_num region.json spectral)" = "$pix" ]
expect_rc 0 "proxy with a tie tolerance" "$BIN" proxy --darks sim/darks.fits --spectral sim/spectral.fits -o out6 \
    sim/science.fits --tie-tolerance 1 --no-png --json
check "tie tolerance: as many matched" [ "$(json_num out.txt matched)" = "$matched" ]
expect_rc 2 "a negative --tie-tolerance" "$BIN" proxy --darks sim/darks.fits --spectral sim/spectral.fits -o out7 \
    sim/science.fits --tie-tolerance -1
expect_rc 2 "a bad --region-order" "$BIN" proxy --darks sim2/darks.fits -o out5 sim2/science.fits --region-order 4
expect_rc 2 "no darks" "$BIN" proxy -o out3 sim/science.fits
expect_rc 2 "unknown method" "$BIN" proxy --darks sim/darks.fits --spectral sim/spectral.fits -o out3 \
    sim/science.fits --method mean
expect_rc 1 "a mask of another shape" "$BIN" proxy --darks sim/darks.fits --spectral 'sim/truth_spectrum.fits[1:10,1:10]' \
    -o out3 sim/science.fits
check "no temporary files left" test -z "$(find . -name '*.tmp')"

[ "$fails" -eq 0 ] || { echo "$fails failures"; exit 1; }
echo "all ok"
