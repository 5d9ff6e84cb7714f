#!/usr/bin/env bash
# A bounded run of the command-line mutational fuzz (tests/fuzz/mutate_cli.py):
# the kept regression inputs first, then damaged FITS, .fz and .npy files
# through stats, combine, sources, register and calibrate: FUZZ_CLI_COUNT
# mutants (default 100, about 170 runs), the same ones on every machine for a
# given FUZZ_CLI_SEED, so a CI failure reproduces; FUZZ_CLI_SECONDS instead
# runs for that long. No crash, no hang, every failure exit 1 naming the file.
set -u
BIN=${CLRED_BIN:?CLRED_BIN must name the clred executable}
command -v python3 > /dev/null || { echo "SKIP: no python3"; exit 77; }
TMP=${CLRED_TEST_TMP:-/tmp}/cli_fuzz_mutate
rm -rf "$TMP" && mkdir -p "$TMP" || exit 1
if [ -n "${FUZZ_CLI_SECONDS:-}" ]; then budget=(--seconds "$FUZZ_CLI_SECONDS"); else budget=(--count "${FUZZ_CLI_COUNT:-100}"); fi
python3 "$(dirname "$0")/fuzz/mutate_cli.py" --bin "$BIN" "${budget[@]}" \
    --seed "${FUZZ_CLI_SEED:-20261206}" --jobs 2 --timeout 120 --workdir "$TMP/work" --keep "$TMP/found"
rc=$?
[ $rc -eq 0 ] || echo "inputs that broke a rule: $TMP/found (fix, then commit them under tests/fuzz/regressions/cli/)"
exit $rc
