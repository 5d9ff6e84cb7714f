#!/usr/bin/env python3
"""Difference imaging side by side on one simulated pair: clred's ZOGY and
Alard-Lupton (decorrelated; score: the PSF-matched DETECT plane), and
where present ProperImage's ZOGY (PyPI, in bench/.venv) and HOTPANTS (built
from its public source outside the repository; give its binary with
--hotpants or $HOTPANTS). A peer that is absent is skipped with the reason.

    bench/.venv/bin/python bench/diff/run.py --clred build/clred --size 2048 --out /tmp/diffbench

Per method: wall time of the subtraction (candidates included for clred),
the residual RMS over the expected noise (robust std, 1.4826 MAD, of
D / sigma over unmasked pixels; 1 is ideal), the score's robust std there, completeness at
S/N >= 8 (a candidate within 2 px of an injected source, right sign) and
false positives (candidates matching nothing injected) against truth.csv.
Quality is computed here with the same code for every method, so a fast
wrong answer cannot win.
"""
import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
from astropy.io import fits


def truth(path):
    with open(path) as f:
        return [dict((k, float(v)) for k, v in row.items()) for row in csv.DictReader(f)]


def match(cands, tr, snr_min=8.0):
    """cands: list of (x, y, positive). Completeness and false positives."""
    used = [False] * len(cands)
    want = got = 0
    for t in tr:
        best = None
        for i, (x, y, pos) in enumerate(cands):
            if (x - t["x"]) ** 2 + (y - t["y"]) ** 2 <= 4.0:
                best = i
                used[i] = True
                if t["snr"] >= snr_min and pos == (t["flux"] > 0):
                    break
        if t["snr"] >= snr_min:
            want += 1
            got += best is not None and cands[best][2] == (t["flux"] > 0)
    return got, want, used.count(False)


def peaks(score, thresh=5.0, valid=None):
    """5 x 5 local extrema of |score| >= thresh (the same rule as clred's)."""
    a = np.abs(np.nan_to_num(score, nan=0.0))
    if valid is not None:
        a = np.where(valid, a, 0.0)
    h, w = a.shape
    out = []
    ys, xs = np.nonzero(a >= thresh)
    for y, x in zip(ys, xs):
        if y < 2 or x < 2 or y >= h - 2 or x >= w - 2:
            continue
        box = a[y - 2:y + 3, x - 2:x + 3]
        if a[y, x] >= box.max():
            out.append((float(x), float(y), bool(score[y, x] > 0)))
    return out


def robust_std(v):
    return float(1.4826 * np.median(np.abs(v - np.median(v))))


def quality(name, seconds, diff_sigma, score, valid, tr):
    ok = valid & np.isfinite(diff_sigma) & np.isfinite(score)
    cands = peaks(score, valid=valid)
    got, want, false_pos = match(cands, tr)
    return {"method": name, "seconds": round(seconds, 3), "resid_rms": robust_std(diff_sigma[ok]),
            "score_std": robust_std(score[ok]), "completeness": f"{got}/{want}", "false_positives": false_pos}


def run_clred(args, d):
    cmd = [args.clred, "subtract", f"{d}/new.fits", f"{d}/ref.fits", "-o", f"{d}/clred_diff.fits", "--new-psf",
           f"{d}/new_psf.fits", "--ref-psf", f"{d}/ref_psf.fits", "--candidates", f"{d}/clred.csv", "--overwrite",
           "--json"]
    subprocess.run(cmd, check=True, capture_output=True)  # warm-up: kernels and FFT plans compiled and cached
    t0 = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    with fits.open(f"{d}/clred_diff.fits") as h:
        sci, var, mask, scorr = (h[i].data.astype(float) for i in (0, 1, 2, 3))
    valid = mask == 0
    return quality("clred ZOGY", wall, sci / np.sqrt(var), scorr, valid, truth(f"{d}/truth.csv")), json.loads(out.stdout)


def run_clred_al(args, d):
    cmd = [args.clred, "subtract", f"{d}/new.fits", f"{d}/ref.fits", "-o", f"{d}/clred_al.fits", "--method", "al",
           "--decorrelate", "--new-psf", f"{d}/new_psf.fits", "--ref-psf", f"{d}/ref_psf.fits", "--candidates",
           f"{d}/clred_al.csv", "--overwrite", "--json"]
    subprocess.run(cmd, check=True, capture_output=True)  # warm-up, as for ZOGY
    t0 = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    with fits.open(f"{d}/clred_al.fits") as h:
        mask, det, dec, decvar = (h[e].data.astype(float) for e in ("MASK", "DETECT", "DECORR", "DECORRVAR"))
    valid = mask == 0
    return quality("clred AL", wall, dec / np.sqrt(decvar), det, valid, truth(f"{d}/truth.csv")), json.loads(out.stdout)


def run_properimage(args, d):
    try:
        from properimage import operations
    except Exception as e:  # noqa: BLE001 - any import failure means the peer is absent
        return {"method": "ProperImage ZOGY", "skipped": f"properimage not importable ({e}); pip install properimage"}
    new = fits.getdata(f"{d}/new.fits").astype(float)
    ref = fits.getdata(f"{d}/ref.fits").astype(float)
    t0 = time.perf_counter()
    res = operations.subtract(ref=ref, new=new, smooth_psf=False, fitted_psf=True, iterative=False, beta=False,
                              shift=False)
    wall = time.perf_counter() - t0
    D, P, S_corr, mask = res[0], res[1], res[2], res[3]
    D = np.real(D)
    S_corr = np.real(S_corr)
    valid = ~np.asarray(mask, dtype=bool) if mask is not None else np.ones(D.shape, bool)
    d_sigma = D / np.nanstd(D[valid])
    return quality("ProperImage ZOGY", wall, d_sigma, S_corr, valid, truth(f"{d}/truth.csv"))


def run_hotpants(args, d):
    exe = args.hotpants or os.environ.get("HOTPANTS") or shutil.which("hotpants")
    if not exe or not os.access(exe, os.X_OK):
        return {"method": "HOTPANTS", "skipped": "no hotpants binary (build it from its public source, then "
                                                 "--hotpants PATH or $HOTPANTS)"}
    new = fits.getdata(f"{d}/new.fits")
    ref = fits.getdata(f"{d}/ref.fits")
    fits.writeto(f"{d}/hp_new.fits", new.astype(np.float32), overwrite=True)
    fits.writeto(f"{d}/hp_ref.fits", ref.astype(np.float32), overwrite=True)
    cmd = [exe, "-inim", f"{d}/hp_new.fits", "-tmplim", f"{d}/hp_ref.fits", "-outim", f"{d}/hp_diff.fits", "-n", "i",
           "-c", "t", "-tu", "1e9", "-iu", "1e9", "-tl", "-1e9", "-il", "-1e9", "-ng", "3", "6", "1.3", "4", "2.6",
           "2", "5.2", "-nsx", "8", "-nsy", "8", "-ko", "1", "-bgo", "1", "-okn", "-n", "i", "-oni",
           f"{d}/hp_noise.fits"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        return {"method": "HOTPANTS", "skipped": f"hotpants failed: {r.stderr[-300:]}"}
    diff = fits.getdata(f"{d}/hp_diff.fits").astype(float)
    noise = fits.getdata(f"{d}/hp_noise.fits").astype(float)
    ds = diff / noise
    valid = np.isfinite(ds)
    return quality("HOTPANTS (AL)", wall, ds, ds, valid, truth(f"{d}/truth.csv"))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clred", default="build/clred")
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--out", default="/tmp/clred-diffbench")
    p.add_argument("--hotpants", default=None)
    p.add_argument("--json", default=None, help="write the table as JSON here")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    d = f"{args.out}/pair{args.size}"
    ntr = max(20, args.size * args.size // 10000)
    subprocess.run([args.clred, "simulate-pair", "-o", d, "--size", f"{args.size}x{args.size}", "--ntransients",
                    str(ntr), "--overwrite"], check=True, capture_output=True)
    rows = []
    clred_row, clred_json = run_clred(args, d)
    rows.append(clred_row)
    al_row, al_json = run_clred_al(args, d)
    rows.append(al_row)
    rows.append(run_properimage(args, d))
    rows.append(run_hotpants(args, d))
    print(f"{args.size}x{args.size} simulated pair, {ntr} injected sources (S/N 3-50)")
    print(f"{'method':20s} {'seconds':>8s} {'resid/sigma':>11s} {'score std':>9s} {'complete':>9s} {'false':>6s}")
    for r in rows:
        if "skipped" in r:
            print(f"{r['method']:20s} skipped: {r['skipped']}")
        else:
            print(f"{r['method']:20s} {r['seconds']:8.2f} {r['resid_rms']:11.3f} {r['score_std']:9.3f} "
                  f"{r['completeness']:>9s} {r['false_positives']:6d}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"size": args.size, "clred": clred_json, "clred_al": al_json, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
