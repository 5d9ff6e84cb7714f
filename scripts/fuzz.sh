#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs each for
# FUZZ_SECONDS (default 10) on its committed seed corpus, after replaying every
# input kept in tests/fuzz/regressions/<target>/ (crashers found before).
# A new crash, leak or hang fails the run; its input is left in
# build-fuzz/artifacts/ -- fix the bug, then commit the input as a regression.
#   FUZZ_SECONDS=60 scripts/fuzz.sh            # longer
#   scripts/fuzz.sh fuzz_npy fuzz_fz          # some targets only
#   FUZZ_SEED=1 scripts/fuzz.sh                # reproducible (CI's choice)
# FUZZ_SEED (default 0: a new random seed each run) fixes libFuzzer's
# mutation sequence: in the same checkout, a run with a seed is a prefix of a
# longer run with that seed (the scratch input's name is fixed too, since the
# readers' string comparisons steer the mutations), so a red CI is a change's
# doing, not the luck of the draw, and a long run vouches for shorter ones.
# Exploring (a random seed, many minutes) is for a developer's machine; what
# it finds is fixed and kept in tests/fuzz/regressions/, replayed first.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${FUZZ_SECONDS:-10}
SEED=${FUZZ_SEED:-0}
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(fuzz_fits fuzz_fz fuzz_npy fuzz_catalog fuzz_config fuzz_filter fuzz_json)
# FUZZ_BUILD names an existing build with -DCLRED_FUZZ=ON to reuse (scripts/sanitize.sh's).
B=${FUZZ_BUILD:-build-fuzz}
if [ -z "${FUZZ_BUILD:-}" ]; then
    CC=${FUZZ_CC:-clang} cmake -S . -B $B -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCLRED_FUZZ=ON -DBUILD_TESTING=OFF \
        -DCLRED_WERROR=ON > /dev/null
fi
cmake --build $B -j"$(nproc)" --target "${TARGETS[@]}" > /dev/null
mkdir -p $B/artifacts $B/tmp
export TMPDIR=$PWD/$B/tmp
# A request for petabytes (a damaged header read by cfitsio) fails as malloc
# would outside the sanitizer, instead of aborting.
export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1:intercept_tls_get_addr=0
export LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp:print_suppressions=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
status=0
for t in "${TARGETS[@]}"; do
    seeds=tests/fuzz/corpus/${t#fuzz_}
    regress=tests/fuzz/regressions/${t#fuzz_}
    if [ -d "$regress" ] && [ -n "$(ls -A "$regress")" ]; then
        "$B/tests/fuzz/$t" -timeout=10 -rss_limit_mb=2048 "$regress"/* > $B/$t.regress.log 2>&1 \
            || { echo "fuzz: $t fails on a kept regression input (see $B/$t.regress.log)"; status=1; continue; }
    fi
    # New inputs go to a scratch corpus; the committed seeds stay as they are.
    rm -rf "$B/corpus/$t" && mkdir -p "$B/corpus/$t"
    if "$B/tests/fuzz/$t" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=4096 -max_len=65536 \
        -seed="$SEED" -artifact_prefix="$B/artifacts/$t-" "$B/corpus/$t" "$seeds" > $B/$t.log 2>&1; then
        echo "fuzz: $t: $(grep -o 'Done [0-9]* runs' $B/$t.log || echo 'done') in ${SECONDS_EACH}s, no crash"
    else
        echo "fuzz: $t found a problem:"
        grep -E "ERROR|SUMMARY|runtime error" $B/$t.log | head -5
        ls $B/artifacts/$t-* 2> /dev/null | head -3
        status=1
    fi
done
exit $status
