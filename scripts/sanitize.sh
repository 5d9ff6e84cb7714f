#!/usr/bin/env bash
# One clang build with AddressSanitizer + UndefinedBehaviorSanitizer (and the
# libFuzzer targets), then:
#   - the tests under the sanitizers (LeakSanitizer on; tests/lsan.supp holds
#     the only suppressions: the OpenCL driver, LLVM, clFFT, cfitsio's decoder);
#     SANITIZE_TESTS selects them (a ctest -R regex; "all", the default, runs
#     the whole suite; "quick" the readers, writers, signals and program cache);
#   - each fuzz target for FUZZ_SECONDS (6 here; scripts/fuzz.sh), which keeps
#     CI (about 17 minutes on 2 cores) within its 20, with a fixed FUZZ_SEED
#     (1 here) so that CI's verdict is reproducible: the same inputs every run.
# The kernels are the same binaries whatever the host code is built with, so
# when the plain build (build/, which scripts/test.sh makes) has compiled them,
# the sanitizer build uses its program caches instead of compiling them all
# again: that is what makes the whole suite fit in CI (about 225 CPU-seconds
# with warm caches, against about 10 minutes of wall time with cold ones).
set -euo pipefail
cd "$(dirname "$0")/.."
B=build-san
QUICK_TESTS='test_hostile_files|test_fitsio|test_atomic_signals|test_program_cache|test_starmatch|test_resample|test_cube$|test_stats$|test_combine_files|test_alerts|cli_stats'
TESTS=${SANITIZE_TESTS:-all}
[ "$TESTS" = quick ] && TESTS=$QUICK_TESTS
CC=clang cmake -S . -B $B -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCLRED_SANITIZE=ON -DCLRED_FUZZ=ON -DCLRED_WERROR=ON \
    > /dev/null
cmake --build $B -j"$(nproc)" > /dev/null
for cache in kernel-cache pocl-cache; do
    if [ -d "build/$cache" ] && [ ! -e "$B/$cache" ]; then
        ln -s "../build/$cache" "$B/$cache"
    fi
done
if [ "$TESTS" = all ]; then
    ctest --test-dir $B --output-on-failure -j"$(nproc)"
else
    ctest --test-dir $B --output-on-failure -j"$(nproc)" -R "$TESTS"
fi
FUZZ_BUILD=$B FUZZ_SECONDS=${FUZZ_SECONDS:-6} FUZZ_SEED=${FUZZ_SEED:-1} bash scripts/fuzz.sh
