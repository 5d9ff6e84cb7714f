#!/usr/bin/env bash
# clred calibrate (and master-bias/-dark/-flat) end to end on the exact raw
# night written by test_calibrate_fixtures (see that file for the model):
# products checked against their known values with clred stats, HISTORY,
# several frames into a directory or with a suffix, and the exit codes,
# one-line messages and absence of outputs for bad input (1) and usage (2).
set -u
BIN=${CLRED_BIN:?CLRED_BIN must name the clred executable}
TMP=${CLRED_TEST_TMP:-/tmp}/cli_calibrate
FIXTURES="$(dirname "$BIN")/tests/test_calibrate_fixtures"
rm -rf "$TMP" && mkdir -p "$TMP/in" "$TMP/out" || exit 1
failures=0
pass() { echo "ok   - $1"; }
fail() { echo "FAIL - $1"; failures=$((failures + 1)); }

"$FIXTURES" "$TMP/in" || { echo "FAIL - cannot write fixtures with $FIXTURES"; exit 1; }
IN=$TMP/in
OUT=$TMP/out
head -c 5000 "$IN/sci_2.fits" > "$IN/truncated.fits"
echo "this is not FITS" > "$IN/text.fits"

# run NAME EXPECTED_RC SUBCOMMAND ARGS...: keeps stdout/stderr, checks the exit code.
run() {
    local name=$1 want=$2
    shift 2
    "$BIN" "$@" > "$TMP/stdout" 2> "$TMP/stderr"
    local rc=$?
    if [ "$rc" -eq "$want" ]; then pass "$name: exit $rc"; else fail "$name: exit $rc, expected $want ($(cat "$TMP/stderr"))"; fi
}
has() { # has NAME FILE TEXT
    if grep -aqF -- "$3" "$2"; then pass "$1"; else fail "$1: '$3' not in $(basename "$2")"; fi
}
one_line_naming() { # stderr is one line naming TEXT
    if [ "$(wc -l < "$TMP/stderr")" -eq 1 ] && grep -qF -- "$2" "$TMP/stderr"; then pass "$1: one line naming $2"
    else fail "$1: stderr should be one line naming $2: $(cat "$TMP/stderr")"; fi
}
absent() { # absent NAME FILE...
    local name=$1 f
    shift
    for f in "$@"; do
        if [ -e "$f" ]; then fail "$name: $f was left behind"; return; fi
    done
    pass "$name: no output left"
}
# stat_near NAME FILE FIELD VALUE TOL: a field of 'clred stats --json $STATS_ARGS FILE' within TOL of VALUE
stat_near() {
    local got
    got=$("$BIN" stats --json ${STATS_ARGS:-} "$2" | grep -o "\"$3\": [^,}]*" | head -1 | cut -d' ' -f2)
    if awk -v g="$got" -v v="$4" -v t="$5" 'BEGIN { d = g - v; if (d < 0) d = -d; exit !(g != "" && g != "null" && d <= t) }'
    then pass "$1: $3 = $got"; else fail "$1: $3 = '$got', expected $4 +- $5"; fi
}

run "calibrate help" 0 calibrate --help
has "calibrate help has examples" "$TMP/stdout" "examples"
has "calibrate help names CAFOS" "$TMP/stdout" "uamA_0031.fits"

# ---- calibrate with the exact masters: 500 everywhere but the 12 vignetted pixels
M="--bias $IN/ref_mbias.fits --dark $IN/ref_mdark.fits --flat $IN/ref_mflat.fits"
run "calibrate one frame" 0 calibrate $M --json "$IN/sci_1.fits" -o "$OUT/sci_1.fits"
has "json: trimmed width" "$TMP/stdout" '"width": 40, "height": 32'
has "json: one saturated raw pixel" "$TMP/stdout" '"saturated": 1'
has "json: the vignetted corner has no data" "$TMP/stdout" '"no_data": 12'
stat_near "calibrated sci" "$OUT/sci_1.fits" median 500 1e-3
stat_near "calibrated sci spread" "$OUT/sci_1.fits" std 0 1e-3
stat_near "calibrated sci ignores NaN and saturated" "$OUT/sci_1.fits" invalid 13 0
has "HISTORY: overscan" "$OUT/sci_1.fits" "HISTORY clred calibrate: overscan row median of [2:7,1:32] (BIASSEC)"
has "HISTORY: trim" "$OUT/sci_1.fits" "trimmed to [9:48,1:32] (TRIMSEC)"
has "HISTORY: dark" "$OUT/sci_1.fits" "HISTORY clred calibrate: dark x 30 s subtracted"
has "VAR extension" "$OUT/sci_1.fits" "EXTNAME = 'VAR"
has "MASK extension" "$OUT/sci_1.fits" "EXTNAME = 'MASK"

run "calibrate in electrons" 0 calibrate $M --electrons "$IN/sci_2.fits" -o "$OUT/sci_2_e.fits"
stat_near "electrons = ADU x GAIN 2" "$OUT/sci_2_e.fits" median 1000 2e-3

run "existing output" 1 calibrate $M "$IN/sci_1.fits" -o "$OUT/sci_1.fits"
one_line_naming "existing output" "exists"
run "overwrite" 0 calibrate $M --overwrite "$IN/sci_1.fits" -o "$OUT/sci_1.fits"
run "output onto an input" 2 calibrate $M "$IN/sci_1.fits" -o "$IN/sci_1.fits"

mkdir -p "$OUT/dir"
run "several frames into a directory" 0 calibrate $M "$IN/sci_1.fits" "$IN/sci_2.fits" -o "$OUT/dir"
if [ -f "$OUT/dir/sci_1.fits" ] && [ -f "$OUT/dir/sci_2.fits" ]; then pass "directory outputs keep the names"; else fail "directory outputs missing"; fi
stat_near "second frame" "$OUT/dir/sci_2.fits" median 500 1e-3
run "several frames with a suffix" 0 calibrate $M --suffix _cal "$OUT/dir/sci_1.fits" -o "$OUT/dir" --overscan none --no-header-sections --override
run "suffix beside the inputs" 0 calibrate --overscan none "$IN/bias_1.fits" "$IN/bias_2.fits" --suffix _os
if [ -f "$IN/bias_1_os.fits" ] && [ -f "$IN/bias_2_os.fits" ]; then pass "suffix outputs beside the inputs"; else fail "suffix outputs missing"; fi
rm -f "$IN"/bias_?_os.fits
run "several frames to one file" 2 calibrate $M "$IN/sci_1.fits" "$IN/sci_2.fits" -o "$OUT/both.fits"
absent "several frames to one file" "$OUT/both.fits"

# ---- bad input: exit 1, one line naming the file, nothing left
run "missing raw" 1 calibrate $M "$IN/nope.fits" -o "$OUT/x.fits"
one_line_naming "missing raw" "nope.fits"
absent "missing raw" "$OUT/x.fits"
run "text file named .fits" 1 calibrate $M "$IN/text.fits" -o "$OUT/x.fits"
one_line_naming "text file" "text.fits"
absent "text file" "$OUT/x.fits"
run "truncated FITS" 1 calibrate $M "$IN/truncated.fits" -o "$OUT/x.fits"
one_line_naming "truncated FITS" "truncated.fits"
absent "truncated FITS" "$OUT/x.fits"
run "missing master" 1 calibrate --bias "$IN/nobias.fits" "$IN/sci_1.fits" -o "$OUT/x.fits"
one_line_naming "missing master" "nobias.fits"
run "shape mismatch" 1 calibrate $M "$IN/narrow.fits" -o "$OUT/x.fits"
one_line_naming "shape mismatch" "narrow.fits"
has "shape mismatch names the master" "$TMP/stderr" "ref_mbias.fits"
absent "shape mismatch" "$OUT/x.fits"
run "zero flat" 1 calibrate --flat "$IN/zeroflat.fits" "$IN/sci_1.fits" -o "$OUT/x.fits"
one_line_naming "zero flat" "zeroflat.fits"
absent "zero flat" "$OUT/x.fits"
run "zero flat overridden" 0 calibrate --override --json --flat "$IN/zeroflat.fits" "$IN/sci_1.fits" -o "$OUT/x.fits"
has "overridden zero flat: its two zeros are NO_DATA" "$TMP/stdout" '"no_data": 2'
rm -f "$OUT/x.fits"
run "missing EXPTIME with a dark" 1 calibrate $M "$IN/no_exptime.fits" -o "$OUT/x.fits"
one_line_naming "missing EXPTIME" "no_exptime.fits"
has "missing EXPTIME says so" "$TMP/stderr" "EXPTIME"
absent "missing EXPTIME" "$OUT/x.fits"
run "EXPTIME by option" 0 calibrate $M --exptime 30 "$IN/no_exptime.fits" -o "$OUT/x.fits"
rm -f "$OUT/x.fits"
mkdir -p "$OUT/partial"
run "second of two frames fails" 1 calibrate $M "$IN/sci_1.fits" "$IN/narrow.fits" -o "$OUT/partial"
absent "second of two frames fails" "$OUT/partial/sci_1.fits" "$OUT/partial/narrow.fits"
run "a truncated frame in the middle" 1 calibrate $M "$IN/sci_1.fits" "$IN/truncated.fits" "$IN/sci_2.fits" -o "$OUT/partial"
one_line_naming "a truncated frame in the middle" "truncated.fits"
absent "a truncated frame in the middle" "$OUT/partial/sci_1.fits" "$OUT/partial/truncated.fits" "$OUT/partial/sci_2.fits"
if [ -z "$(find "$OUT/partial" -name '.*.tmp')" ]; then pass "a truncated frame in the middle: no temporaries"
else fail "a truncated frame in the middle: temporaries left"; fi

# ---- --planes: SCI alone (the values as with every plane, checked bit for bit by test_calibrate_files)
run "calibrate --planes sci" 0 calibrate $M --planes sci --json "$IN/sci_1.fits" -o "$OUT/sci_1_sci.fits"
has "--planes sci: no mask, no counts" "$TMP/stdout" '"saturated": null'
stat_near "--planes sci: calibrated sci" "$OUT/sci_1_sci.fits" median 500 1e-3
if grep -aqF "EXTNAME = 'VAR" "$OUT/sci_1_sci.fits" || grep -aqF "EXTNAME = 'MASK" "$OUT/sci_1_sci.fits"
then fail "--planes sci wrote VAR or MASK"; else pass "--planes sci: SCI alone"; fi
run "calibrate --planes sci,mask" 0 calibrate $M --planes sci,mask "$IN/sci_1.fits" -o "$OUT/sci_1_sm.fits"
has "--planes sci,mask: MASK" "$OUT/sci_1_sm.fits" "EXTNAME = 'MASK"
run "--planes without sci" 2 calibrate $M --planes var "$IN/sci_1.fits" -o "$OUT/x.fits"
run "--planes unknown" 2 calibrate $M --planes sci,wcs "$IN/sci_1.fits" -o "$OUT/x.fits"
absent "--planes usage errors" "$OUT/x.fits"

# ---- usage: exit 2
run "unknown overscan mode" 2 calibrate --overscan wobble "$IN/sci_1.fits" -o "$OUT/x.fits"
run "malformed section" 2 calibrate --biassec "[3:1,1:2]" "$IN/sci_1.fits" -o "$OUT/x.fits"
run "section outside the frame" 2 calibrate --biassec "[1:4,1:99]" "$IN/sci_1.fits" -o "$OUT/x.fits"
one_line_naming "section outside the frame" "sci_1.fits"
run "no output" 2 calibrate "$IN/sci_1.fits"
run "negative gain" 2 calibrate --gain -2 "$IN/sci_1.fits" -o "$OUT/x.fits"
absent "usage errors" "$OUT/x.fits"

# ---- masters from the raw frames: B (5..9, mean 7), D (2, hot pixel 50), F (median 1)
run "master-bias help" 0 master-bias --help
has "master-bias help has an example" "$TMP/stdout" "example"
run "master-bias" 0 master-bias --json --gain 2 --readnoise 4 "$IN"/bias_?.fits -o "$OUT/mbias.fits"
has "master-bias json" "$TMP/stdout" '"width": 40, "height": 32, "median": 7, "mean": 7'
stat_near "master bias min" "$OUT/mbias.fits" min 5 1e-4
stat_near "master bias max" "$OUT/mbias.fits" max 9 1e-4
# read noise only, 4 e- at 2 e-/ADU: 4 ADU^2 per frame, the mean of 3: 4/3
stat_near "master bias VAR propagated" "$OUT/mbias.fits[VAR]" median 1.333333 1e-5
has "master bias HISTORY" "$OUT/mbias.fits" "clred master-bias: 3 frames"
run "master-dark" 0 master-dark --bias "$OUT/mbias.fits" "$IN"/dark_?.fits -o "$OUT/mdark.fits"
stat_near "master dark per second" "$OUT/mdark.fits" median 2 1e-4
STATS_ARGS="--iters 0" stat_near "master dark hot pixel" "$OUT/mdark.fits" max 50 1e-3
has "master dark BUNIT" "$OUT/mdark.fits" "adu/s"
run "master-flat" 0 master-flat --json --bias "$OUT/mbias.fits" --dark "$OUT/mdark.fits" "$IN"/flat_?.fits -o "$OUT/mflat.fits"
has "master-flat: the vignetted corner is NO_DATA" "$TMP/stdout" '"no_data": 12'
stat_near "master flat normalised" "$OUT/mflat.fits" median 1 1e-6
has "master flat HISTORY: normalisation" "$OUT/mflat.fits" "frame 2 divided by its clipped median 1100"
run "master-flat low floor" 0 master-flat --json --floor 0.05 --bias "$OUT/mbias.fits" --dark "$OUT/mdark.fits" "$IN"/flat_?.fits -o "$OUT/mflat_floor.fits"
has "a floor of 0.05 keeps the corner" "$TMP/stdout" '"no_data": 0'
run "master-flat region" 0 master-flat --region "[5:40,4:32]" --bias "$OUT/mbias.fits" --dark "$OUT/mdark.fits" "$IN"/flat_1.fits -o "$OUT/mflat_region.fits"
has "region in HISTORY" "$OUT/mflat_region.fits" "divided by its clipped median"
run "calibrate with the built masters" 0 calibrate --bias "$OUT/mbias.fits" --dark "$OUT/mdark.fits" --flat "$OUT/mflat.fits" "$IN/sci_2.fits" -o "$OUT/sci_2_masters.fits"
stat_near "calibrated with built masters" "$OUT/sci_2_masters.fits" median 500 1e-3
stat_near "calibrated with built masters: flat" "$OUT/sci_2_masters.fits" std 0 1e-3

run "a flat as a bias" 1 master-bias "$IN/bias_1.fits" "$IN/flat_1.fits" -o "$OUT/bad.fits"
one_line_naming "a flat as a bias" "flat_1.fits"
absent "a flat as a bias" "$OUT/bad.fits"
run "a dark as a flat" 1 master-flat "$IN/flat_1.fits" "$IN/darkflat.fits" -o "$OUT/bad.fits"
one_line_naming "a dark as a flat" "darkflat.fits"
run "darks of different EXPTIME" 1 master-dark "$IN/dark_1.fits" "$IN/dark_5s.fits" -o "$OUT/bad.fits"
one_line_naming "darks of different EXPTIME" "dark_5s.fits"
absent "darks of different EXPTIME" "$OUT/bad.fits"
run "darks of different EXPTIME, overridden" 0 master-dark --override --bias "$OUT/mbias.fits" "$IN/dark_1.fits" "$IN/dark_5s.fits" -o "$OUT/mdark2.fits"
stat_near "overridden darks scaled to one second" "$OUT/mdark2.fits" median 2 1e-4
run "a dark without EXPTIME" 1 master-dark --override "$IN/dark_1.fits" "$IN/no_exptime.fits" -o "$OUT/bad.fits"
one_line_naming "a dark without EXPTIME" "no_exptime.fits"
run "master of a text file" 1 master-bias "$IN/bias_1.fits" "$IN/text.fits" -o "$OUT/bad.fits"
one_line_naming "master of a text file" "text.fits"
run "master of a truncated file" 1 master-flat "$IN/flat_1.fits" "$IN/truncated.fits" -o "$OUT/bad.fits"
one_line_naming "master of a truncated file" "truncated.fits"
run "master of a missing file" 1 master-bias "$IN/bias_1.fits" "$IN/none.fits" -o "$OUT/bad.fits"
one_line_naming "master of a missing file" "none.fits"
run "flat of another shape" 1 master-flat --override --bias "$OUT/mbias.fits" "$IN/narrow.fits" -o "$OUT/bad.fits"
one_line_naming "flat of another shape" "narrow.fits"
run "bias frames of two shapes" 1 master-bias --override "$IN/bias_1.fits" "$IN/narrow.fits" -o "$OUT/bad.fits"
one_line_naming "bias frames of two shapes" "narrow.fits"
run "flat region outside the frame" 2 master-flat --region "[1:100,1:10]" "$IN/flat_1.fits" -o "$OUT/bad.fits"
one_line_naming "flat region outside the frame" "flat_1.fits"
absent "bad masters" "$OUT/bad.fits"
run "master-bias --dark" 2 master-bias --dark "$OUT/mdark.fits" "$IN/bias_1.fits" -o "$OUT/bad.fits"
run "master-flat --floor 2" 2 master-flat --floor 2 "$IN/flat_1.fits" -o "$OUT/bad.fits"
run "master without -o" 2 master-dark "$IN/dark_1.fits"
run "master-bias unknown method" 2 master-bias --method mode "$IN/bias_1.fits" -o "$OUT/bad.fits"
absent "master usage errors" "$OUT/bad.fits"

# ---- real data, when present: SAAO overscan and trim from the header
SAAO=${CLRED_DATA:-../shared/data}/saao/a8280271.fits
if [ -f "$SAAO" ]; then
    run "SAAO header sections" 0 calibrate --json "$SAAO" -o "$OUT/saao.fits"
    has "SAAO trimmed to 512 x 520" "$TMP/stdout" '"width": 512, "height": 520'
    has "SAAO HISTORY: BIASSEC" "$OUT/saao.fits" "overscan row median of [4:13,1:520] (BIASSEC)"
else
    echo "skip - SAAO data absent ($SAAO)"
fi

echo "$failures failure(s)"
[ "$failures" -eq 0 ] || exit 1
