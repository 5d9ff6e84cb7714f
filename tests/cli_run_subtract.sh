#!/usr/bin/env bash
# clred run with a reference ([subtract]): a small simulated night whose
# first-epoch frames make the reference stack, then its second epoch (with
# new and brightened sources, other seeing and dithers) reduced, its stack
# registered onto the reference, subtracted and its candidates written: every
# transient found positive at its place, no other strong unflagged candidate,
# the brightened ones on a reference source (REF_DIST) and the new ones away
# from any, RA/Dec from the WCS, the
# products in the manifest, a rerun skipping them, and configuration errors.
set -u
BIN=${CLRED_BIN:?CLRED_BIN must name the clred executable}
TMP=${CLRED_TEST_TMP:-/tmp}/cli_run_subtract
rm -rf "$TMP" && mkdir -p "$TMP" || exit 1
failures=0
pass() { echo "ok   - $1"; }
fail() { echo "FAIL - $1"; failures=$((failures + 1)); }
run() { # run NAME EXPECTED_RC ARGS...
    local name=$1 want=$2
    shift 2
    "$BIN" "$@" > "$TMP/out" 2> "$TMP/err"
    local rc=$?
    if [ "$rc" -eq "$want" ]; then pass "$name: exit $rc"; else fail "$name: exit $rc, expected $want ($(tail -c 600 "$TMP/err"))"; fi
}
command -v python3 > /dev/null || { echo "SKIP: python3 is needed to read the truth"; exit 77; }

N=$TMP/night
"$BIN" simulate -o "$N" --size 192x192 --seed 3 --nbias 2 --ndark 2 --nflat 2 --nscience 2 --nepoch2 2 \
    --nstars 60 --ntransients 4 > /dev/null || { echo "FAIL - simulate"; exit 1; }
CAL="$N/bias_001.fits $N/bias_002.fits $N/dark_001.fits $N/dark_002.fits $N/flat_001.fits $N/flat_002.fits"

# shellcheck disable=SC2086
run "reference night (first epoch)" 0 run $CAL "$N"/sci_*.fits -o "$TMP/ref"
REF=$TMP/ref/stacks/SIMFIELD_r.fits
[ -f "$REF" ] && pass "reference stack written" || fail "no reference stack"

# The stacks' noise is correlated by the resampling (S_corr's spread is about 1.7 with the VAR planes
# alone): renormalised, with a registration noise term, as for the NIRCam mosaics.
printf '[subtract]\nreference = %s\nthreshold = 5\nrenormalize = true\nastrom_sigma = 0.05\nalerts = true\n' "$REF" > "$TMP/sub.ini"
# shellcheck disable=SC2086
run "second epoch against the reference" 0 run --config "$TMP/sub.ini" $CAL "$N"/epoch2_*.fits -o "$TMP/new" --json
cp "$TMP/out" "$TMP/new.json"
D=$TMP/new/difference
for f in SIMFIELD_r_aligned.fits SIMFIELD_r.fits SIMFIELD_r_candidates.csv; do
    [ -s "$D/$f" ] && pass "$f written" || fail "$f missing"
done
python3 - "$N/truth.json" "$D/SIMFIELD_r_candidates.csv" "$TMP/new/manifest.json" "$TMP/new.json" <<'PY' > "$TMP/check" 2>&1
import csv, json, math, sys
truth = json.load(open(sys.argv[1]))
sci1 = [f for f in truth["frames"] if f["file"] == "sci_001.fits"][0]  # the reference stack's grid
cands = list(csv.DictReader(open(sys.argv[2])))
bad = []
for t in truth["transients"]:
    x, y = t["x"] + sci1["dx"], t["y"] + sci1["dy"]
    near = [c for c in cands if math.hypot(float(c["X"]) - x, float(c["Y"]) - y) <= 1.5]
    if not near:
        bad.append(f"{t['kind']} transient at ({x:.1f}, {y:.1f}) not found")
        continue
    c = max(near, key=lambda c: abs(float(c["SCORE"])))
    if c["ISDIFFPOS"] != "1":
        bad.append(f"transient at ({x:.1f}, {y:.1f}) negative")
    d = float(c["REF_DIST"])
    if t["kind"] == "brightened" and not d <= 1.5:
        bad.append(f"brightened star at ({x:.1f}, {y:.1f}): REF_DIST {d}")
    if t["kind"] == "new" and not d > 2.0:
        bad.append(f"new source at ({x:.1f}, {y:.1f}): REF_DIST {d}")
    if not (math.isfinite(float(c["RA"])) and math.isfinite(float(c["DEC"]))):
        bad.append(f"no RA/Dec at ({x:.1f}, {y:.1f})")
print(f"{len(truth['transients'])} transients, {len(cands)} candidates")
# beside the transients, no strong clean candidate: what else is found is flagged (dipole, edge, masked:
# residuals of bright stars) or faint
for c in cands:
    x, y = float(c["X"]), float(c["Y"])
    if c["FLAGS"] == "0" and abs(float(c["SCORE"])) >= 10 and not any(
            math.hypot(x - t["x"] - sci1["dx"], y - t["y"] - sci1["dy"]) <= 1.5 for t in truth["transients"]):
        bad.append(f"unflagged candidate at ({x:.1f}, {y:.1f}) score {c['SCORE']} is no transient")
m = json.load(open(sys.argv[3]))
whats = {p["what"] for p in m["products"]}
for w in ("aligned stack", "difference", "candidates"):
    if w not in whats:
        bad.append(f"manifest lacks the {w}")
if "subtract" not in m["parameters"]:
    bad.append("manifest lacks the subtraction's parameters")
r = json.load(open(sys.argv[4]))
if "difference" not in r["seconds"]:
    bad.append("no difference stage time in the summary")
print("\n".join(bad) if bad else "all good")
sys.exit(1 if bad else 0)
PY
if [ $? -eq 0 ]; then pass "transients found at their places, REF_DIST and RA/Dec right ($(head -1 "$TMP/check"))"; else fail "candidates: $(cat "$TMP/check")"; fi

ncand=$(($(wc -l < "$D/SIMFIELD_r_candidates.csv") - 1))
nalert=$(ls "$D/SIMFIELD_r_alerts" 2>/dev/null | grep -c '^[0-9]*\.avro$')
[ "$ncand" -gt 0 ] && [ "$nalert" -eq "$ncand" ] && pass "alerts = true: one alert per candidate ($nalert)" \
    || fail "alerts: $nalert alert files for $ncand candidates"

# shellcheck disable=SC2086
run "rerun" 0 run --config "$TMP/sub.ini" $CAL "$N"/epoch2_*.fits -o "$TMP/new" --json
python3 -c "
import json, sys
r = json.load(open(sys.argv[1]))
sys.exit(0 if all(not p['written'] for p in r['products']) else 1)" "$TMP/out" \
    && pass "rerun skips every product" || fail "rerun rewrote: $(head -c 600 "$TMP/out")"

# a reference with no stars (the bias master): this stack's subtraction fails, the night does not
printf '[subtract]\nreference = %s\n' "$TMP/ref/masters/bias.fits" > "$TMP/nostars.ini"
# shellcheck disable=SC2086
run "reference without stars" 0 run --config "$TMP/nostars.ini" $CAL "$N"/epoch2_*.fits -o "$TMP/nostars" --json
python3 -c "
import json, sys
m = json.load(open(sys.argv[1]))
d = [p for p in m['products'] if p['what'] in ('aligned stack', 'difference', 'candidates')]
sys.exit(0 if len(d) == 3 and all(not p.get('done') and 'star matching' in (p.get('reason') or '') for p in d) else 1)" \
    "$TMP/nostars/manifest.json" && pass "its products are not written, the reason is in the manifest" \
    || fail "failed subtraction: $(grep -A3 difference/ "$TMP/nostars/manifest.json" | head -c 800)"
[ ! -e "$TMP/nostars/difference/SIMFIELD_r.fits" ] && pass "no partial difference" || fail "a partial difference was left"

# a fit mask reaches the night's subtraction: the reference itself as fit_mask leaves every pixel out of
# the kernel's fit, so Alard-Lupton finds no stamp and this stack's subtraction fails with that reason
printf '[subtract]\nreference = %s\nmethod = al\nfit_mask = %s\n' "$REF" "$REF" > "$TMP/nofit.ini"
# shellcheck disable=SC2086
run "fit mask over the whole field" 0 run --config "$TMP/nofit.ini" $CAL "$N"/epoch2_*.fits -o "$TMP/nofit" --json
python3 -c "
import json, sys
m = json.load(open(sys.argv[1]))
d = [p for p in m['products'] if p['what'] == 'difference']
ok = len(d) == 1 and not d[0].get('done') and 'no stamps' in (d[0].get('reason') or '')
sys.exit(0 if ok and 'fit_mask=' + sys.argv[2] + ',0' in m['parameters']['subtract'] else 1)" \
    "$TMP/nofit/manifest.json" "$REF" && pass "no stamp left: the difference not written, the reason in the manifest" \
    || fail "fit mask: $(grep -A3 difference/ "$TMP/nofit/manifest.json" | head -c 800)"
printf '[subtract]\nreference = %s\nfit_only = %s\n' "$REF" "$REF" > "$TMP/fitzogy.ini"
run "a fit mask without method = al" 2 run --config "$TMP/fitzogy.ini" "$N" -o "$TMP/x"
grep -q "fit_only need method = al" "$TMP/err" && pass "the message says why" || fail "message: $(cat "$TMP/err")"

printf '[subtract]\nreference = %s/nothing.fits\n' "$TMP" > "$TMP/missing.ini"
# shellcheck disable=SC2086
run "missing reference" 2 run --config "$TMP/missing.ini" $CAL "$N"/epoch2_*.fits -o "$TMP/x"
[ ! -e "$TMP/x" ] && pass "nothing written for a missing reference" || fail "a missing reference wrote $TMP/x"
printf '[subtract]\nreference = %s\nmethod = fourier\n' "$REF" > "$TMP/bad.ini"
run "bad method" 2 run --config "$TMP/bad.ini" "$N" -o "$TMP/x"
grep -q "bad.ini:3" "$TMP/err" && pass "the message names the line" || fail "message: $(cat "$TMP/err")"
run "help documents [subtract]" 0 run --help
grep -q "\[subtract\]   reference" "$TMP/out" && pass "help has the keys" || fail "help lacks [subtract]"

[ $failures -eq 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "all passed"
