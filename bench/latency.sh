#!/usr/bin/env bash
# First-call latency of the main commands: each command run once with empty
# kernel caches (clred's CLRED_CACHE_DIR and POCL's POCL_CACHE_DIR: "cold",
# what a first run pays) and once more with the caches it left ("warm"), on
# a small simulated night (256 x 256), so the times are start-up and kernel
# compilation, not work. Also counts the programs each cold run compiled and
# their front-end seconds (CLRED_BUILD_LOG; POCL compiles each launched kernel
# at its first launch, in its own threads, which only the process's wall and
# CPU columns see), and the lines the cold run wrote on stderr (a successful
# command says nothing there: compiler noise shows up in this column).
#
#   bench/latency.sh [--bin PATH] [--work DIR] [--size WxH] [COMMAND...]
#
# COMMAND: stats combine calibrate cosmic sources register subtract demo
# (default all).
# Prints a Markdown table. Timings taken while other jobs run are noisy: the
# CPU column (user + system seconds of the command and its threads) is the
# steadier figure on a shared machine.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/build/clred" work="${TMPDIR:-/tmp}/clred-latency.$$" size=256x256
usage() { awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; }
cmds=()
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin="$2"; shift ;;
    --work) work="$2"; shift ;;
    --size) size="$2"; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "bench/latency.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    *) cmds+=("$1") ;;
  esac
  shift
done
[ "${#cmds[@]}" -gt 0 ] || cmds=(stats combine calibrate cosmic sources register subtract demo)
[ -x "$bin" ] || { echo "bench/latency.sh: no clred executable at $bin (--bin PATH)" >&2; exit 2; }
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
night="$work/night"
CLRED_CACHE_DIR="$work/seed-cache" POCL_CACHE_DIR="$work/seed-pocl" "$bin" simulate -o "$night" --size "$size" >/dev/null

# The arguments of each command; outputs go to $out.
args() {
  local out=$1
  case "$2" in
    stats) echo "$night/sci_001.fits" ;;
    combine) echo "$night/sci_001.fits $night/sci_002.fits $night/sci_003.fits $night/sci_004.fits $night/sci_005.fits -o $out/combined.fits" ;;
    calibrate) echo "$night/sci_001.fits --bias $night/bias_001.fits --flat $night/flat_001.fits -o $out/cal" ;;
    cosmic) echo "$night/sci_001.fits -o $out/cosmic.fits" ;;
    sources) echo "$night/sci_001.fits -o $out/sources.fits" ;;
    register) echo "$night/sci_001.fits $night/sci_002.fits $night/sci_003.fits --table $out/shifts.csv" ;;
    subtract) echo "$night/sci_002.fits $night/sci_001.fits -o $out/diff.fits" ;;
    demo) echo "--size $size --dir $out/demo" ;;
    *) echo "bench/latency.sh: unknown command '$2'" >&2; return 1 ;;
  esac
}

# run CMD CACHE_DIR POCL_DIR LOG: wall and CPU seconds of one run and its
# lines on stderr, "wall cpu lines".
run() {
  local cmd=$1 out="$work/out.$RANDOM"
  mkdir -p "$out"
  local a
  a="$(args "$out" "$cmd")"
  local t0 t1
  t0="$(date +%s.%N)"
  # shellcheck disable=SC2086
  CLRED_CACHE_DIR="$2" POCL_CACHE_DIR="$3" CLRED_BUILD_LOG="$4" \
    /usr/bin/env time -f "%U %S" -o "$out/time" "$bin" "$cmd" $a >"$out/stdout" 2>"$out/stderr" ||
    { echo "bench/latency.sh: clred $cmd failed: $(head -c 300 "$out/stderr")" >&2; return 1; }
  t1="$(date +%s.%N)"
  awk -v a="$t0" -v b="$t1" -v e="$(wc -l <"$out/stderr")" '{printf "%.2f %.2f %d\n", b - a, $1 + $2, e}' "$out/time"
  rm -rf "$out"
}

echo "Load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| command | cold wall s | cold CPU s | warm wall s | warm CPU s | programs compiled cold | their build s | their build CPU s | FFT plans | cold stderr lines |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for c in "${cmds[@]}"; do
  cache="$work/cache-$c" pocl="$work/pocl-$c" log="$work/log-$c"
  rm -rf "$cache" "$pocl" "$log"
  mkdir -p "$cache" "$pocl"
  read -r cw cc ce <<<"$(run "$c" "$cache" "$pocl" "$log")"
  n="$(awk -F'\t' '$3 == "compiled"' "$log" 2>/dev/null | wc -l)"
  bs="$(awk -F'\t' '$3 == "compiled" {s += $4} END {printf "%.2f", s}' "$log" 2>/dev/null)"
  bc="$(awk -F'\t' '$3 == "compiled" {s += $6} END {printf "%.2f", s}' "$log" 2>/dev/null)"
  np="$(awk -F'\t' '$3 == "plan"' "$log" 2>/dev/null | wc -l)"
  read -r ww wc _ <<<"$(run "$c" "$cache" "$pocl" "$work/warm-log")"
  echo "| $c | $cw | $cc | $ww | $wc | $n | $bs | $bc | $np | $ce |"
done
echo
echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
