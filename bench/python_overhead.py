#!/usr/bin/env python3
"""What the Python package adds to the C library's time, measured in one run.

1. A call's Python overhead: ctx.stats() on a small image, against the same
   library call timed in C inside the extension (clred._clred._c_time_stats),
   for a device image (clred_stats_dev) and a numpy array (clred_image_stats;
   the binding makes a zero-copy device view of the array, as the C function
   does internally). Overhead = Python's time per call - C's. Target < 50 us.
2. A 20 x 2048^2 median combine from numpy arrays through ctx.combine()
   against clred_combine_images on the same arrays, timed in C. Target:
   within 10 %.

Run with the package installed (pip install ./python):
    python bench/python_overhead.py [--device N] [--frames 20] [--size 2048] [--json out.json]
Timings are minima over interleaved Python and C runs (a busy machine only
adds time, so the minimum is the least disturbed figure). Prints a table and, with --json, writes the figures.
"""
import argparse
import json
import platform
import time

import numpy as np

import clred
from clred import _clred


def overhead(ctx, calls):
    """Single calls, Python and C interleaved; the minimum of each is its
    undisturbed cost (a busy machine only ever adds time), the medians are
    shown beside it."""
    rng = np.random.default_rng(1)
    small = rng.normal(100, 5, (32, 32)).astype(np.float32)
    dev = ctx.upload(small)
    ctx.stats(dev), ctx.stats(small)  # kernels built, buffers pooled
    rows = []
    for what, image in (("device image", dev), ("numpy array", small)):
        py, c = [], []
        for _ in range(calls):
            c.append(_clred._c_time_stats(ctx, image, 1))
            t0 = time.perf_counter()
            ctx.stats(image)
            py.append(time.perf_counter() - t0)
        rows.append(dict(call=f"ctx.stats({what}, 32x32)", python_us=min(py) * 1e6, c_us=min(c) * 1e6,
                         overhead_us=(min(py) - min(c)) * 1e6, python_median_us=float(np.median(py)) * 1e6,
                         c_median_us=float(np.median(c)) * 1e6))
    return rows


def combine(ctx, nframes, size, repeat):
    rng = np.random.default_rng(2)
    frames = [rng.normal(1000, 10, (size, size)).astype(np.float32) for _ in range(nframes)]
    ctx.combine(frames[:2], method="median")  # kernels built
    c = py = float("inf")
    for _ in range(repeat):  # interleaved: a busy spell hits both sides alike
        c = min(c, _clred._c_time_combine(ctx, frames, "median", 1))
        t0 = time.perf_counter()
        out = ctx.combine(frames, method="median")
        py = min(py, time.perf_counter() - t0)
        del out
    return dict(call=f"ctx.combine({nframes} x {size}^2 numpy, median)", python_s=py, c_s=c,
                ratio=py / c)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default=None)
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--calls", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    ctx = clred.Context(a.device)
    rows = overhead(ctx, a.calls)
    comb = combine(ctx, a.frames, a.size, a.repeat)
    print(f"device: {ctx.device['name']} ({platform.processor() or platform.machine()}), clred {clred.__version__}")
    print(f"{'call (best of single calls; medians)':42s} {'python':>12s} {'C':>12s} {'overhead':>12s}")
    for r in rows:
        print(f"{r['call']:42s} {r['python_us']:10.1f}us {r['c_us']:10.1f}us {r['overhead_us']:10.1f}us"
              f"   (medians {r['python_median_us']:.1f} / {r['c_median_us']:.1f} us)")
    print(f"{comb['call']:42s} {comb['python_s']:11.3f}s {comb['c_s']:11.3f}s {100 * (comb['ratio'] - 1):+10.1f}%")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(device=ctx.device["name"], overhead=rows, combine=comb,
                           date=time.strftime("%Y-%m-%d")), f, indent=1)


if __name__ == "__main__":
    main()
