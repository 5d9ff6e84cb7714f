#!/usr/bin/env bash
# clred proxy against the plain NumPy version of the same method
# (proxy_numpy.py): exact agreement on a small set, then the speed of the
# search at CUTE size (2048 x 100, 30 darks; NumPy on --limit spectral pixels,
# extrapolated to all of them, since its full search takes hours).
#   bench/proxy/run.sh BUILD_DIR [WORK_DIR]     (needs bench/.venv: bench/setup_peers.sh)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="$(cd "${1:?usage: run.sh BUILD_DIR [WORK_DIR]}" && pwd)"
work="${2:-/tmp/clred-bench-proxy}"
py="${PYTHON:-$here/../.venv/bin/python}"
clred="$build/clred"
rm -rf "$work" && mkdir -p "$work" && cd "$work"

echo "== agreement on a 160 x 30 set, 12 darks"
"$clred" proxy --simulate small --size 160x30 --ndarks 12 --nscience 2 --seed 3 >/dev/null
for m in median lsq; do
  "$clred" proxy --darks small/darks.fits --spectral small/spectral.fits -o "c_$m" small/science.fits \
    --method "$m" --no-png >/dev/null
  "$py" "$here/proxy_numpy.py" small/darks.fits small/spectral.fits "n_$m.csv" --method "$m" >/dev/null
  if cmp -s "c_$m/match.csv" "n_$m.csv"; then echo "$m: identical match.csv (same proxies, same scores)"
  else echo "$m: DIFFERENT"; exit 1; fi
done

echo "== speed at CUTE size: 2048 x 100, 30 darks"
"$clred" proxy --simulate cute >/dev/null
for m in median lsq; do
  "$clred" proxy --darks cute/darks.fits --spectral cute/spectral.fits -o "cute_$m" cute/science.fits \
    --method "$m" --no-png --json | tee "clred_$m.json"
  "$py" "$here/proxy_numpy.py" cute/darks.fits cute/spectral.fits "np_$m.csv" --method "$m" --limit "${LIMIT:-100}" \
    | tee "numpy_$m.json"
  "$py" - "$m" <<'PY'
import json, sys
m = sys.argv[1]
c = json.load(open(f"clred_{m}.json")); n = json.load(open(f"numpy_{m}.json"))
numpy_all = n["seconds_per_pixel"] * c["spectral"]
numpy_cpu = n["cpu_seconds_per_pixel"] * c["spectral"]
# CPU time as well as wall time: on a machine others load, the CPU seconds
# each process was given are the fair comparison (clred's include POCL's
# worker threads; NumPy runs on one core)
print(f"{m}: clred search {c['match_seconds']:.1f} s wall / {c['match_cpu_seconds']:.1f} s CPU for "
      f"{c['spectral']} spectral pixels x {c['candidates']} candidates; NumPy {n['seconds_per_pixel'] * 1e3:.1f} ms "
      f"wall / {n['cpu_seconds_per_pixel'] * 1e3:.1f} ms CPU per pixel -> {numpy_all:.0f} s wall / {numpy_cpu:.0f} s "
      f"CPU for all: {numpy_all / c['match_seconds']:.1f}x by wall clock, {numpy_cpu / c['match_cpu_seconds']:.1f}x "
      f"by CPU time")
PY
done
