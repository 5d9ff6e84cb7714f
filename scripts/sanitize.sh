#!/usr/bin/env bash
# One clang build with AddressSanitizer + UndefinedBehaviorSanitizer (and the
# libFuzzer targets), then:
#   - the tests under the sanitizers (LeakSanitizer on; tests/lsan.supp holds
#     the only suppressions: the OpenCL driver, LLVM, clFFT, cfitsio's ffopen);
#     SANITIZE_TESTS selects them (a ctest -R regex; "all" runs the whole
#     suite, about 10 minutes on 2 cores);
#   - each fuzz target for FUZZ_SECONDS (scripts/fuzz.sh).
# CI runs the default subset (the readers, writers, signals, program cache and
# the steps they feed) to stay within a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
B=build-san
DEFAULT_TESTS='test_hostile_files|test_fitsio|test_atomic_signals|test_program_cache|test_starmatch|test_resample|test_cube$|test_stats$|test_combine_files|test_alerts|cli_stats'
TESTS=${SANITIZE_TESTS:-$DEFAULT_TESTS}
CC=clang cmake -S . -B $B -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCLRED_SANITIZE=ON -DCLRED_FUZZ=ON -DCLRED_WERROR=ON \
    > /dev/null
cmake --build $B -j"$(nproc)" > /dev/null
if [ "$TESTS" = all ]; then
    ctest --test-dir $B --output-on-failure -j"$(nproc)"
else
    ctest --test-dir $B --output-on-failure -j"$(nproc)" -R "$TESTS"
fi
FUZZ_BUILD=$B FUZZ_SECONDS=${FUZZ_SECONDS:-10} bash scripts/fuzz.sh
