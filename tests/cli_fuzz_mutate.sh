#!/usr/bin/env bash
# A bounded run of the command-line mutational fuzz (tests/fuzz/mutate_cli.py):
# the kept regression inputs first, then damaged FITS, .fz and .npy files
# through stats, combine, sources, register and calibrate for FUZZ_CLI_SECONDS
# (default 10): no crash, no hang, every failure exit 1 naming the file.
set -u
BIN=${CLRED_BIN:?CLRED_BIN must name the clred executable}
command -v python3 > /dev/null || { echo "SKIP: no python3"; exit 77; }
TMP=${CLRED_TEST_TMP:-/tmp}/cli_fuzz_mutate
rm -rf "$TMP" && mkdir -p "$TMP" || exit 1
python3 "$(dirname "$0")/fuzz/mutate_cli.py" --bin "$BIN" --seconds "${FUZZ_CLI_SECONDS:-10}" \
    --seed "${FUZZ_CLI_SEED:-20261206}" --jobs 2 --timeout 120 --workdir "$TMP/work" --keep "$TMP/found"
rc=$?
[ $rc -eq 0 ] || echo "inputs that broke a rule: $TMP/found (fix, then commit them under tests/fuzz/regressions/cli/)"
exit $rc
