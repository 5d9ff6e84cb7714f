#!/usr/bin/env python3
"""The CUTE proxy-pixel match in plain NumPy, by the definition in clred.h
(clred_proxy_match_pixels), to check clred proxy's match.csv and to time it.

usage: proxy_numpy.py DARKS.fits SPECTRAL.fits OUT.csv [--method median|lsq]
                      [--window N] [--fill V] [--hot-sigma S] [--limit N]
                      [--tie-tolerance T]

--limit N matches only the first N usable spectral pixels (row-major) and
reports the time per pixel, for an extrapolation at sizes where the whole
search would take hours. Prints one JSON line: pixels, seconds, seconds per
pixel."""
import argparse
import json
import math
import sys
import time

import numpy as np
from astropy.io import fits


def unusable_map(darks, fill, hot_sigma):
    """2 missing in a dark, 1 hot in every dark, else 0 (as clred)."""
    t, h, w = darks.shape
    miss = ~np.isfinite(darks)
    if fill is not None:
        miss |= darks == np.float32(fill)
    hot_all = np.ones((h, w), bool)
    for f in range(t):
        d = darks[f]
        ok = d[~miss[f]]
        med = float(np.median(ok.astype(np.float64))) if ok.size else math.nan
        dev = np.abs(ok - np.float32(med)).astype(np.float64)
        mad = float(np.median(dev)) if ok.size else math.nan
        limit = med + hot_sigma * 1.482602218505602 * mad
        hot_all &= d.astype(np.float64) > limit
    out = np.zeros((h, w), np.uint8)
    out[hot_all] = 1
    out[miss.any(axis=0)] = 2
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("darks")
    ap.add_argument("spectral")
    ap.add_argument("out")
    ap.add_argument("--method", default="median", choices=["median", "lsq"])
    ap.add_argument("--window", type=int, default=0)
    ap.add_argument("--fill", type=float, default=None)
    ap.add_argument("--hot-sigma", type=float, default=10.0)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--tie-tolerance", type=float, default=0.0)
    a = ap.parse_args()

    darks = fits.getdata(a.darks).astype(np.float32)
    if darks.ndim == 2:
        darks = darks[None]
    spectral = fits.getdata(a.spectral) != 0
    t, h, w = darks.shape
    unusable = unusable_map(darks, a.fill, a.hot_sigma).ravel()
    flat = darks.reshape(t, -1).T.copy()  # pixel-major: (npix, T) float32
    spec = spectral.ravel()
    spix = np.flatnonzero(spec & (unusable == 0))
    cpix = np.flatnonzero(~spec & (unusable == 0))
    cand = flat[cpix]
    cx = cpix % w
    if a.limit:
        spix = spix[: a.limit]
    best = {}
    t0 = time.perf_counter()
    c0 = time.process_time()
    for p in spix:
        sel = slice(None)
        if a.window > 0:
            sel = np.flatnonzero(np.abs(cx - p % w) <= a.window)
            if sel.size == 0:
                continue
        c = cand[sel]
        r = flat[p][None, :] - c  # float32 residuals
        r64 = r.astype(np.float64)
        s1 = r64.sum(axis=1)
        s2 = (r64 * r64).sum(axis=1)
        msr = s2 / t
        m = s1 / t
        sd = np.sqrt(np.maximum(msr - m * m, 0.0))
        idx = cpix[sel]
        if a.method == "median":
            rs = np.sort(r, axis=1)
            med = 0.5 * (rs[:, (t - 1) // 2].astype(np.float64) + rs[:, t // 2].astype(np.float64))
            am = np.abs(med)
            if a.tie_tolerance > 0:  # |median| within the tolerance of the smallest: all ties
                am = np.where(am <= am.min() + a.tie_tolerance, 0.0, np.inf)
            k = np.lexsort((idx, sd, am))[0]
            best[p] = (idx[k], med[k], sd[k], msr[k])
        else:
            k = np.lexsort((idx, msr))[0]
            best[p] = (idx[k], math.nan, sd[k], msr[k])
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    with open(a.out, "w") as f:
        f.write("x,y,proxy_x,proxy_y,median,std,msr\n")
        for p in np.flatnonzero(spec):
            if a.limit and p not in best and p <= (spix[-1] if spix.size else -1):
                pass
            if p in best:
                q, med, sd, msr = best[p]
                f.write("%d,%d,%d,%d,%.17g,%.17g,%.17g\n" % (p % w, p // w, q % w, q // w, med, sd, msr))
            elif not a.limit:
                f.write("%d,%d,,,,,\n" % (p % w, p // w))
    print(json.dumps({"pixels": int(spix.size), "candidates": int(cpix.size), "ndarks": t, "method": a.method,
                      "seconds": seconds, "seconds_per_pixel": seconds / max(1, spix.size),
                      "cpu_seconds": cpu, "cpu_seconds_per_pixel": cpu / max(1, spix.size)}))


if __name__ == "__main__":
    sys.exit(main())
