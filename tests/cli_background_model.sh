#!/usr/bin/env bash
# clred background's products: the model beside the subtracted frame, restore,
# statistics and histogram (JSON, PNG), --pixel-stats over many backgrounds,
# clred quicklook; exit codes and no partial output on bad input.
set -u
HERE=$(cd "$(dirname "$0")" && pwd) # before any cd: $0 may be relative
BIN=${CLRED_BIN:?CLRED_BIN is not set}
TMP=${CLRED_TEST_TMP:-/tmp}/cli_background_model
rm -rf "$TMP"
mkdir -p "$TMP"
cd "$TMP" || exit 1
fails=0
source "$HERE/lib_cli.sh" || exit 1
is_png() { [ "$(head -c 4 "$1" | od -An -c | tr -d ' ')" = "211PNG" ]; }
json_num() { # file key: the first number after "key":
    grep -o "\"$2\": [-0-9.eE+]*" "$1" | head -1 | awk '{print $2}'
}
no_leftovers() { [ -z "$(ls -A | grep -E '\.tmp$')" ]; }

"$BIN" simulate -o sim --size 128x96 --nbias 1 --ndark 1 --nflat 1 --nscience 3 --nepoch2 0 --nstars 20 >/dev/null 2>&1 ||
    { echo "FAIL - cannot simulate"; exit 1; }

expect_rc 0 "background with model, stats and PNGs" "$BIN" background sim/sci_001.fits --box 32 --subtract sub.fits \
    --model model.fits --model-map --hist-png hist.png --png bkg.png --bins 20 --json
cp out.txt bkg.json
check "model product written" test -s model.fits
check "histogram PNG" is_png hist.png
check "quick-look PNG of the map" is_png bkg.png
check "JSON has the map statistics" grep -q '"stats": {"min": ' bkg.json
check "JSON has the NaN count" grep -q '"nan_count": 0' bkg.json
counts=$(grep -o '"counts": \[[0-9, ]*\]' bkg.json | grep -o '[0-9]\+' | awk '{s += $1} END {print s}')
check "histogram counts sum to the pixels (128 x 96)" [ "$counts" = "12288" ]
nbins=$(grep -o '"counts": \[[0-9, ]*\]' bkg.json | grep -o '[0-9]\+' | wc -l)
check "20 bins" [ "$nbins" = "20" ]
check "min <= median <= max" awk -v a="$(json_num bkg.json min)" -v m="$(json_num bkg.json median)" \
    -v b="$(json_num bkg.json max)" 'BEGIN { exit !(a <= m && m <= b) }'
check "subtracted frame names its model" grep -qa "background model (add it back to restore): model.fits" sub.fits

# restore gives back the frame: its statistics equal the original's
expect_rc 0 "restore" "$BIN" background sub.fits --restore model.fits -o restored.fits
"$BIN" stats --json --iters 0 sim/sci_001.fits >orig.json
"$BIN" stats --json --iters 0 restored.fits >rest.json
check "restored mean equals the original's" near "$(json_num rest.json mean)" "$(json_num orig.json mean)" 1e-3
check "restored max equals the original's" near "$(json_num rest.json max)" "$(json_num orig.json max)" 1e-2
check "restored min equals the original's" near "$(json_num rest.json min)" "$(json_num orig.json min)" 1e-2

# per-pixel mean and std over model products and a plain map
"$BIN" background sim/sci_002.fits --box 32 --model m2.fits >/dev/null 2>&1
"$BIN" background sim/sci_003.fits --box 32 -o map3.fits >/dev/null 2>&1
expect_rc 0 "pixel stats" "$BIN" background --pixel-stats model.fits m2.fits map3.fits --mean mean.fits --std std.fits
"$BIN" stats --json --iters 0 std.fits >std.json
check "per-pixel std is not negative" awk -v a="$(json_num std.json min)" 'BEGIN { exit !(a >= 0) }'
check "per-pixel std is positive somewhere" awk -v a="$(json_num std.json max)" 'BEGIN { exit !(a > 0) }'
"$BIN" simulate -o small --size 64x48 --nbias 1 --ndark 0 --nflat 0 --nscience 0 --nepoch2 0 >/dev/null 2>&1
expect_rc 1 "pixel stats of maps of two shapes" "$BIN" background --pixel-stats model.fits small/bias_001.fits \
    --std bad_std.fits
check "no output after the failure" test ! -e bad_std.fits

# combine: background matching and the stack's final background
expect_rc 0 "combine with --match-background and --final-background" "$BIN" combine --match-background \
    --match-box 32 --final-background fb.fits --final-box 64 sim/sci_00[123].fits -o stack_sub.fits --json
cp out.txt comb.json
check "JSON names the reference and 3 offsets" grep -q '"background_match": {"ref": [0-2], "offsets": \[[^],]*, [^],]*, [^],]*\]' comb.json
check "JSON has the final background" grep -q '"final_background": {"global": ' comb.json
check "final background product written" test -s fb.fits
expect_rc 0 "combine with matching only" "$BIN" combine --match-background --match-box 32 sim/sci_00[123].fits \
    -o stack.fits
expect_rc 0 "restore the final background" "$BIN" background stack_sub.fits --restore fb.fits -o stack_again.fits
"$BIN" stats --json --iters 0 stack.fits >s1.json
"$BIN" stats --json --iters 0 stack_again.fits >s2.json
check "stack after + final background = stack before" near "$(json_num s2.json mean)" "$(json_num s1.json mean)" 1e-3
expect_rc 2 "--match-order without --match-background" "$BIN" combine --match-order 2 sim/sci_001.fits -o x.fits
expect_rc 0 "--match-background with --align" "$BIN" combine --match-background --match-box 32 --align \
    sim/sci_00[123].fits -o aligned.fits
expect_rc 2 "--final-box without --final-background" "$BIN" combine --final-box 64 sim/sci_001.fits -o x.fits
check "no stack after the usage errors" test ! -e x.fits

# the night recipe matches the backgrounds of a stack's frames when configured
printf '[stack]\nmatch_background = true\nmatch_box = 32\n' >match.ini
expect_rc 0 "night with [stack] match_background" "$BIN" run --config match.ini sim/bias_001.fits sim/dark_001.fits \
    sim/flat_001.fits sim/sci_00[123].fits -o night
check "the night's stack" test -s night/stacks/SIMFIELD_r.fits
check "the manifest records the matching" grep -q 'match_background=1 (order 1 box 32' night/manifest.json
printf '[stack]\nmatch_order = 5\n' >bad.ini
expect_rc 2 "match_order out of range" "$BIN" run --config bad.ini sim/sci_001.fits -o night2

# quicklook
expect_rc 0 "quicklook zscale" "$BIN" quicklook sim/sci_001.fits -o z.png
check "zscale PNG" is_png z.png
expect_rc 0 "quicklook asinh" "$BIN" quicklook sub.fits -o a.png --stretch asinh
check "asinh PNG" is_png a.png

# bad input and usage
expect_rc 2 "unknown stretch" "$BIN" quicklook sub.fits -o b.png --stretch log
expect_rc 2 "--model-map without --model" "$BIN" background sub.fits -o x.fits --model-map
expect_rc 2 "--restore without -o" "$BIN" background sub.fits --restore model.fits
expect_rc 1 "restore from a file that is no model" "$BIN" background sub.fits --restore sub.fits -o bad.fits
check "no output after the failure" test ! -e bad.fits
expect_rc 1 "existing output" "$BIN" background sim/sci_001.fits --model model.fits
check "no temporary files left" no_leftovers

[ "$fails" -eq 0 ] || { echo "$fails failures"; exit 1; }
echo "all ok"
