#!/usr/bin/env bash
# Alert packets from the command line: clred subtract --alerts and clred
# candidates --alerts write one Avro container file per candidate, named by
# candid (1, 2, ... for frames without a time), the same set from both; bad
# input exits 1 with one line and leaves no alert, catalog or temporary.
set -u
HERE=$(cd "$(dirname "$0")" && pwd) # before any cd: $0 may be relative
BIN=${CLRED_BIN:?CLRED_BIN is not set}
TMP=${CLRED_TEST_TMP:-/tmp}/cli_alerts
rm -rf "$TMP"
mkdir -p "$TMP"
cd "$TMP" || exit 1
fails=0
. "$HERE/lib_cli.sh" || exit 1
no_leftovers() { [ -z "$(find . -name '*.tmp')" ]; }
# the candids 1..N as file names, N the catalog's rows
named_1_to_n() { # dir catalog
    local n=$(($(wc -l <"$2") - 1)) want got
    want=$(seq 1 "$n" | sed 's/$/.avro/' | sort)
    got=$(ls "$1" | sort)
    [ "$n" -ge 3 ] && [ "$want" = "$got" ]
}
# an Avro object container file ("Obj" 1) whose header names ZTF's alert record
is_ztf_avro() {
    for f in "$1"/*.avro; do
        [ "$(head -c 4 "$f" | od -An -c | tr -d ' ')" = 'Obj001' ] || return 1
        grep -aq '"namespace":"ztf"' "$f" || grep -aq '"namespace": "ztf"' "$f" || return 1
        grep -aq 'cutoutDifference' "$f" || return 1
    done
}

expect_rc 0 "simulate-pair" "$BIN" simulate-pair -o pair --size 128x128 --ntransients 12 --seed 5
expect_rc 0 "subtract with alerts" "$BIN" subtract pair/new.fits pair/ref.fits -o diff.fits \
    --new-psf pair/new_psf.fits --ref-psf pair/ref_psf.fits --psf-out pd.fits --candidates cands.csv --alerts alerts
check "one alert per candidate, named by candid" named_1_to_n alerts cands.csv
check "ZTF Avro container files" is_ztf_avro alerts
# three stamps, each a gzip stream (magic 1f 8b, deflate 08)
check "the stamps are gzipped" sh -c "test \$(od -An -v -tx1 alerts/1.avro | tr -d '\n' | grep -o ' 1f 8b 08' | wc -l) -ge 3"

expect_rc 0 "candidates with alerts" "$BIN" candidates diff.fits --psf pd.fits --new pair/new.fits \
    --ref pair/ref.fits -o cands2.csv --alerts alerts2
check "the same alerts from clred candidates" sh -c "test \"\$(ls alerts | sort)\" = \"\$(ls alerts2 | sort)\""
expect_rc 0 "alerts alone (no catalog) from the difference only" "$BIN" candidates diff.fits --psf pd.fits \
    --alerts alerts3
check "same count" sh -c "test \$(ls alerts3 | wc -l) -eq \$(ls alerts | wc -l)"
check "help names --alerts" sh -c "\"$BIN\" candidates --help | grep -q -- '--alerts DIR'"

# bad input: exit 1, one line, nothing of the call left behind
expect_rc 1 "existing alerts need --overwrite" "$BIN" candidates diff.fits --psf pd.fits -o cands3.csv \
    --alerts alerts
check "one line naming the alert" sh -c "test \$(wc -l <err.txt) -eq 1 && grep -q 'alerts/1.avro' err.txt"
check "its catalog is not left behind" test ! -e cands3.csv
expect_rc 0 "--overwrite replaces them" "$BIN" candidates diff.fits --psf pd.fits --alerts alerts --overwrite
: >plain
expect_rc 1 "a file where the directory should be" "$BIN" subtract pair/new.fits pair/ref.fits -o diff2.fits \
    --new-psf pair/new_psf.fits --ref-psf pair/ref_psf.fits --alerts plain
check "one line" sh -c "test \$(wc -l <err.txt) -eq 1 && grep -q 'not a directory' err.txt"
check "no difference written" test ! -e diff2.fits
expect_rc 1 "a missing input" "$BIN" candidates none.fits --psf pd.fits --alerts alerts4
check "no alert directory made" test ! -e alerts4
check "no temporaries left" no_leftovers

[ "$fails" -eq 0 ] && echo "all passed" || echo "$fails failed"
exit $((fails > 0))
