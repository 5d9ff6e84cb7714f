#!/usr/bin/env bash
# The test suite run cold, as CI runs it (ctest's slots, empty program
# caches), with what each test cost: every test runs as its own
# `ctest -R ^NAME$` (JOBS at a time, in ctest's declared order, as
# `ctest -j JOBS` starts them on a fresh clone without cost data) under
# /usr/bin/time, with its own CLRED_BUILD_LOG. Empties BUILD/kernel-cache and
# BUILD/pocl-cache first (the caches the tests use).
#
#   scripts/cold_suite.sh [--build DIR] [--jobs N] [--out DIR] [--warm] [REGEX]
#
# Writes OUT/tests.tsv (name, rc, wall s, user s, sys s), OUT/log/NAME.log
# (the test's CLRED_BUILD_LOG) and OUT/summary.md: the sum of the tests' CPU
# seconds, the wall time of the whole run, the load average before and after,
# every program variant compiled (by which test, at what CPU cost, and the
# tests that loaded it from the cache or waited on its lock), the FFT plans,
# and POCL's work-group objects. On POCL most of a cold test's CPU is its
# kernels' compiles at their first launch, which the variants table does not
# count: POCL_DEBUG=timing,llvm on one test shows each (llvm_codegen). CPU seconds are the figure to compare on a
# loaded machine; the wall time measures the load as much as the suite.
# Unlike one `ctest -j`, the separate runs ignore RESOURCE_LOCK and COST, and
# each test keeps its TIMEOUT (600 s), which the costliest compiles can pass
# on a loaded machine.
# --warm keeps the caches. REGEX selects tests (ctest -R).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$root/build" jobs="$(nproc)" out="" warm=0 regex=""
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build="$(cd "$2" && pwd)"; shift ;;
    --jobs) jobs="$2"; shift ;;
    --out) out="$2"; shift ;;
    --warm) warm=1 ;;
    -h|--help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 0 ;;
    -*) echo "scripts/cold_suite.sh: unknown option '$1'" >&2; exit 2 ;;
    *) regex="$1" ;;
  esac
  shift
done
# ctest runs the tree named in DartConfiguration.tcl, whatever --test-dir says:
# a copied build tree would run (and empty the caches of) its original.
dart="$(sed -n 's/^BuildDirectory: //p' "$build/DartConfiguration.tcl" 2>/dev/null)"
if [ "$(cd "${dart:-/nonexistent}" 2>/dev/null && pwd)" != "$build" ]; then
  echo "scripts/cold_suite.sh: $build is not a configured build tree (its DartConfiguration.tcl names '${dart}')" >&2
  exit 2
fi
out="${out:-${TMPDIR:-/tmp}/clred-cold-suite.$$}"
mkdir -p "$out/log"
out="$(cd "$out" && pwd)"
: >"$out/tests.tsv"
if [ "$warm" = 0 ]; then
  rm -rf "$build/kernel-cache" "$build/pocl-cache"
fi
mkdir -p "$build/kernel-cache" "$build/pocl-cache"

mapfile -t tests < <(ctest --test-dir "$build" -N ${regex:+-R "$regex"} | sed -n 's/^ *Test *#[0-9]*: *//p')
[ "${#tests[@]}" -gt 0 ] || { echo "scripts/cold_suite.sh: no tests in $build" >&2; exit 2; }

one() {
  local name=$1 t
  t="$(mktemp)"
  local rc=0
  CLRED_BUILD_LOG="$out/log/$name.log" /usr/bin/env time -f "%e %U %S" -o "$t" \
    ctest --test-dir "$build" -R "^$name\$" --output-on-failure >"$out/log/$name.out" 2>&1 || rc=$?
  # time(1) puts "Command exited with non-zero status N" first for a failure
  printf '%s\t%s\t%s\n' "$name" "$rc" "$(tail -n 1 "$t" | tr ' ' '\t')" >>"$out/tests.tsv"
  rm -f "$t"
}
export -f one
export build out

load0="$(cut -d' ' -f1-3 /proc/loadavg)"
t0="$(date +%s.%N)"
printf '%s\n' "${tests[@]}" | xargs -P "$jobs" -I{} bash -c 'one "$@"' _ {}
t1="$(date +%s.%N)"
load1="$(cut -d' ' -f1-3 /proc/loadavg)"

{
  echo "# Cold suite: $build ($(git -C "$root" rev-parse --short HEAD)), $jobs at a time"
  echo
  awk -F'\t' -v w0="$t0" -v w1="$t1" -v l0="$load0" -v l1="$load1" '
    {n++; cpu += $4 + $5; if ($2 != 0) bad = bad " " $1 "(" $2 ")"}
    END {printf "- %d tests, failed:%s\n- sum of the tests'"'"' CPU: %.1f s (user + sys)\n- wall: %.1f s (load average %s before, %s after)\n",
         n, bad ? bad : " none", cpu, w1 - w0, l0, l1}' "$out/tests.tsv"
  echo "- POCL work-group objects: $(find "$build/pocl-cache" -name '*.so' | wc -l)"
  echo
  echo "## Tests by CPU seconds"
  echo
  echo "| test | rc | wall s | CPU s | programs compiled | their CPU s | loaded | waited s |"
  echo "|---|---|---|---|---|---|---|---|"
  sort -t$'\t' -k4,4gr "$out/tests.tsv" | while IFS=$'\t' read -r name rc wall user sys; do
    log="$out/log/$name.log"
    read -r nc cc nl ws <<<"$(awk -F'\t' '$3 == "compiled" {n++; c += $6} $3 == "cache" {l++; if ($4 > 1) w += $4}
        END {printf "%d %.1f %d %.0f\n", n, c, l, w}' "$log" 2>/dev/null || echo "0 0 0 0")"
    printf '| %s | %s | %s | %.1f | %s | %s | %s | %s |\n' "$name" "$rc" "$wall" "$(echo "$user + $sys" | bc)" "$nc" "$cc" "$nl" "$ws"
  done
  echo
  # On POCL a program's build is its front end only: each kernel's work-group
  # function compiles at the kernel's first launch (host/rt/programs.c), in
  # the CPU seconds of the test that launches it first, not in this table.
  echo "## Program variants (compiled by, CPU s of the build: the front end, and on a driver other than POCL the kernels; loaded by)"
  echo
  echo "| family | options | compiled by | CPU s | loaded by (tests) | waits > 1 s |"
  echo "|---|---|---|---|---|---|"
  for f in "$out"/log/*.log; do
    [ -s "$f" ] || continue
    awk -F'\t' -v t="$(basename "$f" .log)" '{print $1 "\t" $2 "\t" $3 "\t" $4 "\t" $6 "\t" t}' "$f"
  done | awk -F'\t' '
    {k = $1 "\t" $2}
    $3 == "compiled" {by[k] = by[k] " " $6; cpu[k] += $5; keys[k] = 1}
    $3 == "cache" {ld[k]++; keys[k] = 1; if ($4 > 1) wt[k] = wt[k] " " $6 "(" int($4) ")"}
    $3 == "plan" {plan[k] = plan[k] " " $6; pcpu[k] += $5}
    END {
      for (k in keys) {split(k, a, "\t"); printf "| %s | %s | %s | %.2f | %d | %s |\n", a[1], a[2], by[k], cpu[k], ld[k], wt[k]}
      for (k in plan) {split(k, a, "\t"); printf "| %s | %s (plan) | %s | %.2f | | |\n", a[1], a[2], plan[k], pcpu[k]}
    }' | sort -t'|' -k5,5gr
} >"$out/summary.md"
cat "$out/summary.md"
