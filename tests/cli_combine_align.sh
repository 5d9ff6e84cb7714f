#!/bin/bash
# clred combine --align on a simulated dithered night: the measured shifts
# against the simulator's SIMDX/SIMDY, the reference and union grids, the
# stack's stars at the reference's positions, exit codes and no output on
# failure.
set -u
BIN=${CLRED_BIN:?CLRED_BIN is not set}
TMP=${CLRED_TEST_TMP:-/tmp}/cli_combine_align
rm -rf "$TMP"
mkdir -p "$TMP"
fails=0

. "$(dirname "${BASH_SOURCE[0]}")/lib_cli.sh" # check, near

# the value of a numeric header keyword of a FITS file's primary header
keyword() {
    head -c 28800 "$1" | fold -w 80 | awk -v k="$2" 'substr($0, 1, 8) == sprintf("%-8s", k) { split($0, a, "= *"); split(a[2], b, " "); print b[1]; exit }'
}

"$BIN" simulate -o "$TMP/sim" --size 200x160 --nbias 1 --ndark 1 --nflat 1 --nscience 4 --nepoch2 0 \
    --nstars 80 --dither 6 >/dev/null || { echo "FAIL: simulate"; exit 1; }
S=("$TMP"/sim/sci_00[1-4].fits)

"$BIN" combine --align --method median --json "${S[@]}" -o "$TMP/ref.fits" >"$TMP/ref.json" 2>"$TMP/err"
check "aligned median exits 0" test $? -eq 0
check "reference grid keeps the frame's shape" grep -q '"width": 200, "height": 160' "$TMP/ref.json"
check "HISTORY lists each frame's shift" test "$(grep -ao 'HISTORY clred align: [^ ]*sci_00[1-4].fits' "$TMP/ref.fits" | wc -l)" -eq 4

# Each measured shift equals the simulator's dither relative to frame 1 within
# 0.05 px: S/N ~60 peaks measure to ~0.02 px (tests/test_phasecorr.c), and
# the dithers are drawn continuously, so an integer-only or sign-flipped
# answer misses by far more.
dx0=$(keyword "${S[0]}" SIMDX) dy0=$(keyword "${S[0]}" SIMDY)
i=0
for f in "${S[@]}"; do
    tdx=$(awk -v a="$(keyword "$f" SIMDX)" -v b="$dx0" 'BEGIN { print a - b }')
    tdy=$(awk -v a="$(keyword "$f" SIMDY)" -v b="$dy0" 'BEGIN { print a - b }')
    got=$(grep -o '"shifts": \[.*\]' "$TMP/ref.json" | grep -o '{"dx": [-0-9.]*, "dy": [-0-9.]*' | sed -n "$((i + 1))p")
    mdx=$(echo "$got" | sed 's/.*"dx": \([-0-9.]*\).*/\1/') mdy=$(echo "$got" | sed 's/.*"dy": \([-0-9.]*\).*/\1/')
    check "frame $i shift ($mdx, $mdy) matches the dither ($tdx, $tdy)" \
        awk -v a="$mdx" -v b="$tdx" -v c="$mdy" -v d="$tdy" 'BEGIN { exit !((a-b)^2 < 0.0025 && (c-d)^2 < 0.0025) }'
    i=$((i + 1))
done

# Star matching: each frame's transform, evaluated at the frame's centre,
# moves it by minus its dither within 0.15 px (7-14 matched stars with
# centroid residuals of ~0.1 px: their mean is good to ~0.04 px).
"$BIN" combine --align --align-by stars --json "${S[@]}" -o "$TMP/stars.fits" >"$TMP/stars.json" 2>"$TMP/err"
check "aligned by stars exits 0" test $? -eq 0
check "json lists four star matches" test "$(grep -o '"nmatched": [0-9]*' "$TMP/stars.json" | wc -l)" -eq 4
transforms=$(grep -o '"transforms": \[\[.*\]\]' "$TMP/stars.json" | sed 's/"transforms": \[\[//; s/\]\]//; s/\], \[/\n/g')
i=0
for f in "${S[@]}"; do
    tdx=$(awk -v a="$(keyword "$f" SIMDX)" -v b="$dx0" 'BEGIN { print a - b }')
    tdy=$(awk -v a="$(keyword "$f" SIMDY)" -v b="$dy0" 'BEGIN { print a - b }')
    row=$(echo "$transforms" | sed -n "$((i + 1))p")
    check "frame $i star transform at the centre undoes the dither ($tdx, $tdy)" awk -v r="$row" -v tx="$tdx" -v ty="$tdy" \
        'BEGIN { split(r, m, ", "); x = m[1] * 100 + m[2] * 80 + m[3]; y = m[4] * 100 + m[5] * 80 + m[6]
                 exit !((x - (100 - tx))^2 < 0.0225 && (y - (80 - ty))^2 < 0.0225) }'
    i=$((i + 1))
done
"$BIN" combine --align --align-by stars --ref median "${S[@]}" -o "$TMP/bad0.fits" 2>"$TMP/err"
check "stars with a median reference exits 2" test $? -eq 2

"$BIN" combine --align --grid union --ref median --interp bicubic --reject sigclip --json "${S[@]}" \
    -o "$TMP/union.fits" >"$TMP/union.json" 2>"$TMP/err"
check "union grid exits 0" test $? -eq 0
# the frames span their dithers' range: wider and taller than one frame
w=$(grep -o '"width": [0-9]*' "$TMP/union.json" | grep -o '[0-9]*$')
h=$(grep -o '"height": [0-9]*' "$TMP/union.json" | grep -o '[0-9]*$')
check "union grid ($w x $h) is larger than a frame" test "$w" -gt 200 -a "$h" -gt 160
check "union grid has uncovered corners (NO_DATA)" grep -q '"no_data_pixels": [1-9]' "$TMP/union.json"

"$BIN" combine --align --ref 7 "${S[@]}" -o "$TMP/bad1.fits" 2>"$TMP/err"
check "--ref beyond the frames exits 2" test $? -eq 2
check "one-line message names the frame count" grep -q "there are 4 frames" "$TMP/err"
check "no output after a failure" test ! -e "$TMP/bad1.fits"
"$BIN" combine --grid union "${S[@]}" -o "$TMP/bad4.fits" 2>"$TMP/err"
check "--grid without --align exits 2" test $? -eq 2
check "message says it needs --align" grep -q "applies only with --align" "$TMP/err"
"$BIN" combine --align --interp cubic "${S[@]}" -o "$TMP/bad2.fits" 2>"$TMP/err"
check "unknown interpolant exits 2" test $? -eq 2
"$BIN" combine --align --grid union --interp fourier "${S[@]}" -o "$TMP/bad3.fits" 2>"$TMP/err"
check "Fourier on the union grid exits 2" test $? -eq 2
check "message says reference grid only" grep -q "reference grid only" "$TMP/err"
check "no output after a failure" test ! -e "$TMP/bad3.fits"

# A frame phase correlation cannot register (all zeros: no peak) is named by
# its file, not by its index in the stack.
{
    printf '%-80s' "SIMPLE  =                    T" "BITPIX  =                  -32" "NAXIS   =                    2" \
        "NAXIS1  =                  200" "NAXIS2  =                  160" "END"
    head -c $((2880 - 6 * 80)) /dev/zero | tr '\0' ' '
    head -c $((200 * 160 * 4 + 1600)) /dev/zero
} >"$TMP/flat.fits"
"$BIN" combine --align "${S[0]}" "$TMP/flat.fits" "${S[1]}" -o "$TMP/bad5.fits" 2>"$TMP/err"
check "an unregistrable frame exits 1" test $? -eq 1
check "the message names its file" grep -q "flat.fits\[0\]: .*no peak" "$TMP/err"
check "no output after a failure" test ! -e "$TMP/bad5.fits"

if [ "$fails" -ne 0 ]; then
    echo "$fails check(s) failed"
    exit 1
fi
echo "all checks passed"
