#!/usr/bin/env bash
# SIGINT / SIGTERM at chosen moments of a combine and of a multi-output
# calibrate: no temporary file survives a handled signal, the multi-output
# calibrate leaves all its outputs or none, and a rerun completes; after a
# SIGKILL the rerun of the same output removes the killed run's temporary.
set -u
BIN=${CLRED_BIN:?CLRED_BIN must name the clred executable}
TMP=${CLRED_TEST_TMP:-/tmp}/cli_interrupt
rm -rf "$TMP" && mkdir -p "$TMP" || exit 1
failures=0
pass() { echo "ok   - $1"; }
fail() { echo "FAIL - $1"; failures=$((failures + 1)); }

"$BIN" simulate -o "$TMP/sim" --size 600x500 --nbias 1 --ndark 1 --nflat 1 --nscience 8 --nepoch2 0 --nstars 20 \
    > /dev/null || { echo "FAIL - simulate"; exit 1; }
SCI=("$TMP"/sim/sci_*.fits)
N=${#SCI[@]}
[ "$N" -ge 2 ] || { echo "FAIL - simulate wrote $N science frames"; exit 1; }

no_temps() { # NAME DIR: no ".*.tmp" file in DIR
    local left
    left=$(find "$2" -name '.*.tmp' | head -3)
    if [ -z "$left" ]; then pass "$1: no temporary files"; else fail "$1: left $left"; fi
}

now() { date +%s.%N; }
# A background job of a script starts with SIGINT ignored (and clred keeps an
# ignored signal ignored); env gives it the default back where it can.
DEFAULT_SIGNALS=
if env --default-signal=INT true 2> /dev/null; then DEFAULT_SIGNALS="env --default-signal=INT"; fi
# The signal lands at fractions of an uninterrupted run's duration: while
# reading, computing and writing.
mkdir -p "$TMP/full"
t0=$(now)
"$BIN" calibrate -o "$TMP/full" "${SCI[@]}" > /dev/null 2>&1 || { echo "FAIL - uninterrupted calibrate"; exit 1; }
T_CAL=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { print b - a }')
t0=$(now)
"$BIN" combine --method median -o "$TMP/full.fits" "${SCI[@]}" > /dev/null 2>&1 || { echo "FAIL - uninterrupted combine"; exit 1; }
T_COMB=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { print b - a }')
echo "uninterrupted: calibrate ${T_CAL}s, combine ${T_COMB}s"

i=0
for frac in 0.05 0.2 0.35 0.5 0.65 0.8 0.95; do
    sig=$([ $((i % 2)) -eq 0 ] && echo INT || echo TERM)
    i=$((i + 1))
    delay=$(awk -v t="$T_CAL" -v f="$frac" 'BEGIN { print t * f }')
    out=$TMP/cal_$frac
    mkdir -p "$out"
    $DEFAULT_SIGNALS "$BIN" calibrate -o "$out" "${SCI[@]}" > /dev/null 2>&1 &
    pid=$!
    sleep "$delay"
    kill -s "$sig" "$pid" 2> /dev/null
    wait "$pid"
    what="calibrate SIG$sig at ${delay}s"
    no_temps "$what" "$out"
    n=$(find "$out" -name '*.fits' | wc -l)
    if [ "$n" -eq 0 ] || [ "$n" -eq "$N" ]; then pass "$what: $n of $N outputs (all or none)"
    else fail "$what: $n of $N outputs"; fi
    if [ "$n" -eq 0 ]; then
        if "$BIN" calibrate -o "$out" "${SCI[@]}" > /dev/null 2> "$TMP/err" && [ "$(find "$out" -name '*.fits' | wc -l)" -eq "$N" ]
        then pass "$what: rerun completes"
        else fail "$what: rerun: $(cat "$TMP/err")"; fi
    fi

    delay=$(awk -v t="$T_COMB" -v f="$frac" 'BEGIN { print t * f }')
    out=$TMP/comb_$frac
    mkdir -p "$out"
    $DEFAULT_SIGNALS "$BIN" combine --method median -o "$out/stack.fits" "${SCI[@]}" > /dev/null 2>&1 &
    pid=$!
    sleep "$delay"
    kill -s "$sig" "$pid" 2> /dev/null
    wait "$pid"
    what="combine SIG$sig at ${delay}s"
    no_temps "$what" "$out"
    if [ -e "$out/stack.fits" ] && ! cmp -s "$out/stack.fits" "$TMP/full.fits"; then
        fail "$what: stack.fits differs from an uninterrupted run's"
    fi
done

# SIGKILL cannot be handled: what it leaves (the killed run's ".stack.fits.PID.tmp",
# made here when the kill came before the write) goes at the next run of that output.
for frac in 0.5 0.9; do
    out=$TMP/kill_$frac
    mkdir -p "$out"
    delay=$(awk -v t="$T_COMB" -v f="$frac" 'BEGIN { print t * f }')
    "$BIN" combine --method median -o "$out/stack.fits" "${SCI[@]}" > /dev/null 2>&1 &
    pid=$!
    sleep "$delay"
    kill -s KILL "$pid" 2> /dev/null
    wait "$pid"
    [ -e "$out/.stack.fits.$pid.tmp" ] || [ -e "$out/stack.fits" ] || : > "$out/.stack.fits.$pid.tmp"
    what="combine SIGKILL at ${delay}s, then a rerun"
    if "$BIN" combine --method median --overwrite -o "$out/stack.fits" "${SCI[@]}" > /dev/null 2> "$TMP/err" &&
        cmp -s "$out/stack.fits" "$TMP/full.fits"; then pass "$what completes"
    else fail "$what: $(cat "$TMP/err")"; fi
    no_temps "$what" "$out"
done

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
