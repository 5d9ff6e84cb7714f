#!/usr/bin/env bash
# clred run end to end on a small simulated night (128x128): the products and
# what they must hold, one upload per raw frame and one download per product
# on the copying path, a stack read back from files under a small budget, a rerun that skips everything, a truncated frame in the
# middle named and left out (and fatal with --strict, leaving no product),
# SIGKILL / SIGINT mid-run leaving only complete files and a rerun finishing
# what is missing, two shards covering every group once, usage errors, and on
# CAFOS (when ../shared/data/cafos is there) masters and stacks equal to the
# README's step-by-step commands.
set -u
BIN=${CLRED_BIN:?CLRED_BIN must name the clred executable}
# cli_run.sh [night|signals|cafos]: one part (the suite runs each as a test of
# its own, so that ctest -j runs them side by side), or every part.
PART=${1:-}
case "$PART" in "" | night | signals | cafos) ;; *) echo "cli_run.sh: no part '$PART'" >&2; exit 2 ;; esac
want() { [ -z "$PART" ] || [ "$PART" = "$1" ]; }
TMP=${CLRED_TEST_TMP:-/tmp}/cli_run${PART:+_$PART}
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
has() { if grep -qF -- "$3" "$2"; then pass "$1"; else fail "$1: '$3' not in $(basename "$2"): $(head -c 400 "$2")"; fi; }
json_ok() { # json_ok NAME FILE PYTHON-EXPRESSION-ON-d
    if ! command -v python3 > /dev/null; then pass "$1 (python3 absent: not parsed)"; return; fi
    if python3 -c "import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if ($3) else 1)" "$2" 2> "$TMP/pyerr"
    then pass "$1"; else fail "$1: $(head -c 300 "$2") $(cat "$TMP/pyerr")"; fi
}
stat_near() { # stat_near NAME FILE FIELD VALUE TOL
    local got
    got=$("$BIN" stats --json "$2" | grep -o "\"$3\": [^,}]*" | head -1 | cut -d' ' -f2)
    if awk -v g="$got" -v v="$4" -v t="$5" 'BEGIN { d = g - v; if (d < 0) d = -d; exit !(g != "" && g != "null" && d <= t) }'
    then pass "$1: $3 = $got"; else fail "$1: $3 = '$got', expected $4 +- $5"; fi
}
all_complete() { # every FITS file under DIR opens and reads
    local f bad=0
    for f in $(find "$2" -name '*.fits'); do "$BIN" stats "$f" > /dev/null 2>&1 || { bad=1; fail "$1: $f does not read"; }; done
    [ $bad -eq 0 ] && pass "$1: every product under its final name reads"
}

if want night; then # ---- part night: usage, a night and its reruns, shards
NIGHT=$TMP/night
"$BIN" simulate -o "$NIGHT" --size 128x128 --seed 5 --nbias 3 --ndark 3 --nflat 3 --nscience 4 --nepoch2 2 \
    --nstars 30 > /dev/null || { echo "FAIL - simulate"; exit 1; }
rm -f "$NIGHT"/truth_*.fits # not raw frames

# ---- usage
run "help" 0 run --help
has "help documents the config keys" "$TMP/out" "[background] enabled"
run "no output" 2 run "$NIGHT"
run "bad shard" 2 run "$NIGHT" -o "$TMP/x" --shard 3/2
printf '[cosmic]\ncolour = red\n' > "$TMP/bad.ini"
run "unknown config key" 2 run --config "$TMP/bad.ini" "$NIGHT" -o "$TMP/x"
has "the message names the line" "$TMP/err" "bad.ini:2"
[ ! -e "$TMP/x" ] && pass "nothing written on usage errors" || fail "usage error wrote $TMP/x"

# ---- a whole night
OUT=$TMP/out1
CLRED_COMPILE_AHEAD=0 run "night" 0 run "$NIGHT" -o "$OUT" --json --trace "$TMP/trace.json"
cp "$TMP/out" "$TMP/first.json"
json_ok "summary: 15 frames classified" "$TMP/first.json" \
    "d['bias'] == 3 and d['dark'] == 3 and d['flat'] == 3 and d['science'] == 6 and d['left_out'] == []"
json_ok "summary: 4 groups, 16 products written" "$TMP/first.json" "d['groups'] == 4 and d['written'] == 16 and d['skipped'] == 0"
for f in masters/bias.fits masters/dark_300s.fits masters/flat_r.fits calibrated/sci_002.fits background/sci_002.fits \
         calibrated/epoch2_001.fits stacks/SIMFIELD_r.fits manifest.json; do
    [ -s "$OUT/$f" ] && pass "wrote $f" || fail "missing $f"
done
json_ok "manifest: complete, inputs with sizes, parameters, timings" "$OUT/manifest.json" \
    "d['complete'] and len(d['inputs']) == 15 and all(i['size'] > 0 for i in d['inputs']) and 'stack' in d['parameters'] and d['timings_s']['wall'] > 0 and d['software'].startswith('clred ')"
json_ok "trace: Chrome trace events with read and write lanes" "$TMP/trace.json" \
    "len(d['traceEvents']) > 10 and {'read','write'} <= {e['args']['name'] for e in d['traceEvents'] if e.get('ph') == 'M'}"
# What the products hold (simulation defaults: bias 1000 ADU, 0.05 e-/s dark at gain 1.5).
stat_near "master bias level" "$OUT/masters/bias.fits" median 1000 1
stat_near "master dark per second" "$OUT/masters/dark_300s.fits" median 0.0333 0.01
stat_near "master flat normalised" "$OUT/masters/flat_r.fits" median 1 0.01
stat_near "background subtracted from the calibrated frame" "$OUT/calibrated/sci_002.fits" median 0 3
stat_near "stack's sky is zero" "$OUT/stacks/SIMFIELD_r.fits" median 0 2
has "stack HISTORY" "$OUT/stacks/SIMFIELD_r.fits" "clred run: stack of 6 frames"

# ---- the compile-ahead helper (compile_ahead.c) changes no product
# An empty clred cache has no helper marker, so the run starts the helper
# where it pays (POCL on a CPU with more than one core; the POCL cache stays
# the suite's, so nothing is compiled again); every FITS product must be the
# same bytes as the first night's, run without it. (Whether the helper got to
# its end depends on the load: the night stops it when done, so its marker is
# not checked.)
mkdir -p "$TMP/ahead_cache"
CLRED_CACHE_DIR=$TMP/ahead_cache CLRED_COMPILE_AHEAD=1 run "night with the compile-ahead helper" 0 run "$NIGHT" -o "$TMP/out_ahead"
same=1
for f in $(cd "$OUT" && find . -name '*.fits'); do
    cmp -s "$OUT/$f" "$TMP/out_ahead/$f" || { same=0; fail "compile-ahead helper: $f differs"; }
done
[ $same -eq 1 ] && pass "compile-ahead helper: every product the same bytes"

# ---- frame quality: each science frame's in the manifest; limits leave frames out of the stack
json_ok "manifest: each science frame's quality" "$OUT/manifest.json" \
    "all(i['quality']['fwhm'] > 1 and i['quality']['nstars'] >= 3 and i['quality']['in_stack'] and i['quality']['sky_noise'] > 0 for i in d['inputs'] if i['kind'] == 'science') and all('quality' not in i for i in d['inputs'] if i['kind'] != 'science')"
if command -v python3 > /dev/null; then
    # a limit between the frames' third and fourth seeing: three of the six go
    LIM=$(python3 -c "import json,sys; f=sorted(i['quality']['fwhm'] for i in json.load(open(sys.argv[1]))['inputs'] if i['kind'] == 'science'); print((f[2] + f[3]) / 2)" "$OUT/manifest.json")
    printf '[quality]\nmax_fwhm = %s\n' "$LIM" > "$TMP/quality.ini"
    run "night with a seeing limit" 0 run --config "$TMP/quality.ini" "$NIGHT" -o "$TMP/out_q"
    json_ok "manifest: three frames above the limit left out of the stack, saying why" "$TMP/out_q/manifest.json" \
        "sum(1 for i in d['inputs'] if i['kind'] == 'science' and not i['quality']['in_stack'] and i['quality']['below_limits'].startswith('FWHM')) == 3"
    has "stack of the three frames within the limit" "$TMP/out_q/stacks/SIMFIELD_r.fits" "clred run: stack of 3 frames"
    [ -s "$TMP/out_q/calibrated/sci_001.fits" ] && pass "calibrated frames still written" || fail "calibrated frame missing"
fi

# ---- transfers: a frame goes up once, a product comes down once
# image_uploads / image_downloads count whole images copied between host and
# device (dimage.c); small results (statistics, counts, samples) are not images.
# On the copying path every raw frame is one upload, every product one download.
# The 6 background products are models (a mesh each, brought down as small
# results), not images: products_out counts the other 10.
json_ok "zero-copy run: at most one image upload per frame read, one download per product" "$TMP/first.json" \
    "(lambda v: v['frames_in'] == 15 and v['image_uploads'] <= v['frames_in'] and v['products_out'] == d['written'] - 6 and v['image_downloads'] <= v['products_out'])(d['device'])"
CLRED_NO_ZERO_COPY=1 run "night on the copying path" 0 run "$NIGHT" -o "$TMP/out_copy" --json
cp "$TMP/out" "$TMP/copy.json"
json_ok "copying path: one upload per raw frame, one download per product" "$TMP/copy.json" \
    "(lambda v: v['frames_in'] == 15 and v['image_uploads'] == 15 and v['products_out'] == 10 and v['image_downloads'] == 10)(d['device'])"
# Where the zero-copy path was taken (no image uploads), the copying path's extra
# upload bytes are image traffic: the 15 raw frames' pixels (128 x 128 float32).
# The steps' small uploads (counters, a few words each) vary by some tens of
# bytes from run to run, so 4 KiB is allowed on top: any further image (64 KiB
# each) is still caught.
json_ok "copying path: extra upload bytes are at most the raw frames' pixels" "$TMP/copy.json" \
    "(lambda z: z['image_uploads'] > 0 or d['device']['upload_bytes'] - z['upload_bytes'] <= 15 * 128 * 128 * 4 + 4096)(json.load(open('$TMP/first.json'))['device'])"
json_ok "manifest: per-frame transfer counts" "$TMP/out_copy/manifest.json" \
    "d['transfers']['image_uploads_per_frame'] == 1 and d['transfers']['image_downloads_per_product'] == 1"
stat_near "copying path: the same stack" "$TMP/out_copy/stacks/SIMFIELD_r.fits" median \
    "$("$BIN" stats --json "$OUT/stacks/SIMFIELD_r.fits" | grep -o '"median": [^,}]*' | cut -d' ' -f2)" 1e-6
# A budget too small to hold the 6 calibrated frames and their resampled copies
# (6 x 2 x 160 KiB against half of 2 MiB): they are written, read back, stacked.
CLRED_MEMORY_LIMIT=2M run "night with a small device budget" 0 run "$NIGHT" -o "$TMP/out_small" --json
json_ok "small budget: the stack is made from the files" "$TMP/out" \
    "d['device']['stacks_read_back'] == 1 and d['written'] == 16"
stat_near "small budget: the same stack" "$TMP/out_small/stacks/SIMFIELD_r.fits" median \
    "$("$BIN" stats --json "$OUT/stacks/SIMFIELD_r.fits" | grep -o '"median": [^,}]*' | cut -d' ' -f2)" 1e-6

# ---- rerun: nothing to do
run "rerun" 0 run "$NIGHT" -o "$OUT" --json
json_ok "rerun skips every product" "$TMP/out" "d['written'] == 0 and d['skipped'] == 16"
json_ok "manifest says why" "$OUT/manifest.json" \
    "all(p['skipped'] and 'unchanged' in p['reason'] for p in d['products'])"
touch -d '2020-01-01' "$NIGHT/sci_003.fits"
run "rerun after one frame changed" 0 run "$NIGHT" -o "$OUT" --json
json_ok "only that frame (calibrated, background) and its stack are redone" "$TMP/out" "d['written'] == 3 and d['skipped'] == 13"

# ---- a corrupted frame in the middle
BAD=$TMP/bad_night
cp -r "$NIGHT" "$BAD"
head -c 9000 "$NIGHT/sci_002.fits" > "$BAD/sci_002.fits"
run "corrupted frame: the night goes on" 0 run "$BAD" -o "$TMP/out_bad" --json
has "the frame is named on stderr" "$TMP/err" "sci_002.fits"
json_ok "and left out in the summary" "$TMP/out" "len(d['left_out']) == 1 and d['left_out'][0]['path'].endswith('sci_002.fits')"
json_ok "manifest lists it as left out" "$TMP/out_bad/manifest.json" \
    "[l['path'].endswith('sci_002.fits') for l in d['left_out']] == [True] and d['complete']"
[ ! -e "$TMP/out_bad/calibrated/sci_002.fits" ] && pass "no product for it" || fail "sci_002 was calibrated"
has "the stack has the other 5 frames" "$TMP/out_bad/stacks/SIMFIELD_r.fits" "stack of 5 frames"
run "--strict: the corrupted frame is fatal" 1 run "$BAD" -o "$TMP/out_strict" --strict
has "strict names it" "$TMP/err" "sci_002.fits"
[ -z "$(find "$TMP/out_strict" -name '*.fits' 2> /dev/null)" ] && pass "strict wrote no product" || fail "strict left products"

# ---- shards
OS=$TMP/out_shards
run "shard 1/2" 0 run "$NIGHT" -o "$OS" --shard 1/2 --json
run "shard 2/2" 0 run "$NIGHT" -o "$OS" --shard 2/2 --json
json_ok "two shards cover every group exactly once" "$OS/manifest.shard-1-of-2.json" \
    "(lambda a, b: sorted([g['name'] for g in a['groups'] if g['here']] + [g['name'] for g in b['groups'] if g['here']]) == sorted(g['name'] for g in a['groups']))(d, json.load(open('$OS/manifest.shard-2-of-2.json')))"
a=$(cd "$OUT" && find . -name '*.fits' | sort); b=$(cd "$OS" && find . -name '*.fits' | sort)
[ "$a" = "$b" ] && pass "the shards wrote the products of a whole run" || fail "shard products differ: $b"
fi # part night

if want signals; then # ---- part signals
# ---- interrupted runs: no partial product, the rerun finishes what is missing
# (a night with more science frames, so that the kill lands mid-run)
LONG=$TMP/long_night
"$BIN" simulate -o "$LONG" --size 128x128 --seed 6 --nbias 3 --ndark 3 --nflat 3 --nscience 16 --nepoch2 0 \
    --nstars 30 > /dev/null && rm -f "$LONG"/truth_*.fits
set -m # job control: a background job keeps SIGINT (otherwise bash starts it ignored)
for sig in KILL INT; do
    OI=$TMP/out_$sig
    "$BIN" run "$LONG" -o "$OI" > /dev/null 2>&1 &
    pid=$!
    # until the manifest records a finished product: a product renamed into
    # place but not yet in the manifest is rightly written again by the rerun
    for _ in $(seq 1 1000); do
        grep -q '"done": true' "$OI/manifest.json" 2> /dev/null && break
        sleep 0.01
    done
    kill -$sig $pid 2> /dev/null
    wait $pid 2> /dev/null
    if python3 -c "import json,sys; sys.exit(0 if json.load(open('$OI/manifest.json'))['complete'] else 1)" 2> /dev/null; then
        echo "SKIP - the run finished before SIG$sig reached it"
        continue
    fi
    all_complete "SIG$sig" "$OI"
    run "rerun after SIG$sig" 0 run "$LONG" -o "$OI" --json
    json_ok "after SIG$sig the rerun skipped what was finished and wrote the rest" "$TMP/out" \
        "d['skipped'] >= 1 and d['written'] >= 1 and d['written'] + d['skipped'] == 36"
    json_ok "after SIG$sig the manifest is complete" "$OI/manifest.json" "d['complete'] and all(p['done'] for p in d['products'])"
    [ -z "$(find "$OI" -name '.*.tmp')" ] && pass "no temporary left after the rerun" || fail "temporaries left: $(find "$OI" -name '.*.tmp')"
done
set +m
fi # part signals

if want cafos; then # ---- part cafos
# ---- CAFOS: the masters and per-filter stacks of the README's commands
D=${CLRED_DATA:-$(dirname "$0")/../../shared/data}/cafos
if [ -d "$D" ]; then
    C=$TMP/cafos
    mkdir -p "$C/cal"
    printf '[calibrate]\nsaturation = 65535\n[cosmic]\nenabled = false\n[background]\nenabled = false\n[stack]\nmethod = median\nreject = none\nscale = none\n' > "$C/night.ini"
    run "CAFOS night" 0 run --config "$C/night.ini" "$D"/calib/bias/*.fits "$D"/calib/flat/*/*.fits \
        "$D"/science/NGC2420/*/*.fits -o "$C/night" --json
    json_ok "CAFOS: 2 filters, no darks" "$TMP/out" "d['bias'] == 2 and d['dark'] == 0 and d['flat'] == 2"
    "$BIN" master-bias "$D"/calib/bias/*.fits -o "$C/mbias.fits" --saturation 65535 > /dev/null 2>&1 ||
        "$BIN" master-bias "$D"/calib/bias/*.fits -o "$C/mbias.fits" > /dev/null
    for F in B V; do
        "$BIN" master-flat --bias "$C/mbias.fits" --saturation 65535 "$D"/calib/flat/$F/*.fits -o "$C/mflat_$F.fits" > /dev/null
        mkdir -p "$C/cal_$F"
        "$BIN" calibrate --bias "$C/mbias.fits" --flat "$C/mflat_$F.fits" --saturation 65535 \
            "$D"/science/NGC2420/$F/*.fits -o "$C/cal_$F" > /dev/null
        "$BIN" combine --align --method median "$C"/cal_$F/*.fits -o "$C/stack_$F.fits" > /dev/null
    done
    # The same kernels on the same inputs in the same order: equal to float rounding
    # (the stats below differ only if a pixel does).
    for pair in "masters/bias.fits mbias.fits" "masters/flat_johnsonb.fits mflat_B.fits" "masters/flat_johnsonv.fits mflat_V.fits"; do
        set -- $pair
        cmp_stats() { "$BIN" stats --json "$1" | grep -o '"\(mean\|median\|std\)": [^,}]*' | tr '\n' ' '; }
        [ "$(cmp_stats "$C/night/$1")" = "$(cmp_stats "$C/$2")" ] && pass "CAFOS $1 = $2" || fail "CAFOS $1 differs from $2"
    done
    for F in B V; do
        s=$(ls "$C"/night/stacks/*_johnson$(echo $F | tr BV bv).fits 2> /dev/null | head -1)
        [ -n "$s" ] || { fail "CAFOS: no $F stack"; continue; }
        m1=$("$BIN" stats --json "$s" | grep -o '"median": [^,}]*' | cut -d' ' -f2)
        m2=$("$BIN" stats --json "$C/stack_$F.fits" | grep -o '"median": [^,}]*' | cut -d' ' -f2)
        # Same frames, same shifts, same interpolant and combine: within 1e-4 relative.
        awk -v a="$m1" -v b="$m2" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-4 * (b < 0 ? -b : b) + 1e-6) }' &&
            pass "CAFOS $F stack median $m1 = step-by-step $m2" || fail "CAFOS $F stack median $m1 != $m2"
    done
else
    echo "SKIP - CAFOS data absent ($D)"
    [ "$PART" = cafos ] && exit 77
fi
fi # part cafos

echo "$failures failed"
[ $failures -eq 0 ] || exit 1
