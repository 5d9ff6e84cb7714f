#!/usr/bin/env python3
"""Difference imaging side by side, in one run on the same pairs: clred's ZOGY
and Alard-Lupton (decorrelated; score: its PSF-matched DETECT plane), HOTPANTS,
ProperImage's ZOGY and SFFT (NumPy backend). A peer that is absent is skipped
with the reason in the table.

    bench/.venv/bin/python bench/diff/run.py --clred build/clred RESULTS_DIR \
        [--size 2048] [--nircam ../shared/data/nircam] [--hotpants /work/peers/hotpants/hotpants]

Pairs: a simulated pair (`clred simulate-pair`, SIZE^2, Moffat PSFs 3.5 px
reference / 4.5 px new, the reference 9x deeper, truth.csv) and the NIRCam
pair (its PSFs and noise maps). Every method gets the same inputs (the true
PSFs where a method takes PSFs; noise maps where it takes them) and is
scored here by the same code, so a fast wrong answer cannot win:

  seconds       wall time of the subtraction (clred: the whole `clred subtract`
                command with candidates, after one warm-up run that compiles the
                kernels; peers: their call, reading inputs included)
  cpu_s         CPU time (user + system, every thread) of the same: the fairer
                figure when other jobs share the cores
  bkg_rms       robust std (1.4826 MAD) of D / sigma over unmasked pixels:
                the noise model's accuracy (1 is ideal)
  src_rms       RMS of D / sigma over the pixels of the reference's sources
                (reference > its level + 10 sigma, grown 2 px, no injected source
                within 8 px): how well the static sources subtract (1 is ideal)
  complete      injected sources at S/N >= 8 found within 2 px with the right
                sign (simulated pair)
  false_pos     5-sigma peaks matching no injected source (simulated pair);
                on the NIRCam pair, all 5-sigma peaks
sigma is the method's own noise map where it writes one (clred: VAR; HOTPANTS:
-oni), else the robust std of D over the sky (reference within 1 sigma of its
level). Detection is one rule for all: 5 x 5 local extrema of |score| >= 5 over
unmasked pixels, the score S_corr for ZOGY methods, and for the Alard-Lupton
ones the PSF-matched filter (D * P) / sqrt(V * P^2) with P the difference's
PSF (the new image's when the reference is convolved).
"""
import argparse
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import time

import numpy as np
from astropy.io import fits

try:
    from scipy.signal import fftconvolve
except ImportError:  # pragma: no cover - scipy is in bench/.venv
    fftconvolve = None


# ------------------------------------------------------------------ scoring

def truth(path):
    if not path or not os.path.exists(path):
        return None
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
                used[i] = True
                if best is None or (pos == (t["flux"] > 0)):
                    best = i
        if t["snr"] >= snr_min:
            want += 1
            got += best is not None and cands[best][2] == (t["flux"] > 0)
    return got, want, used.count(False)


def peaks(score, valid, thresh=5.0):
    """5 x 5 local extrema of |score| >= thresh (clred's rule: zogy_peaks)."""
    a = np.where(valid & np.isfinite(score), np.abs(np.nan_to_num(score, nan=0.0)), 0.0)
    h, w = a.shape
    out = []
    ys, xs = np.nonzero(a >= thresh)
    for y, x in zip(ys, xs):
        if y < 2 or x < 2 or y >= h - 2 or x >= w - 2:
            continue
        if a[y, x] >= a[y - 2:y + 3, x - 2:x + 3].max():
            out.append((float(x), float(y), bool(score[y, x] > 0)))
    return out


def robust_std(v):
    v = v[np.isfinite(v)]
    return float(1.4826 * np.median(np.abs(v - np.median(v)))) if v.size else float("nan")


def matched_score(diff, var, psf):
    """(D * P) / sqrt(V * P^2): the PSF-matched detection statistic of a difference."""
    d = np.nan_to_num(diff, nan=0.0)
    v = np.nan_to_num(var, nan=0.0)
    p = psf / psf.sum()
    num = fftconvolve(d, p[::-1, ::-1], mode="same")
    den = fftconvolve(v, (p * p)[::-1, ::-1], mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.sqrt(np.maximum(den, 1e-30)), np.nan)


class Pair:
    def __init__(self, name, new, ref, new_psf, ref_psf, new_noise=None, ref_noise=None, truth_csv=None, clred_extra=()):
        self.name, self.new, self.ref, self.new_psf, self.ref_psf = name, new, ref, new_psf, ref_psf
        self.new_noise, self.ref_noise = new_noise, ref_noise
        self.truth = truth(truth_csv)
        self.clred_extra = list(clred_extra)
        r = fits.getdata(ref).astype(float)
        lev = np.nanmedian(r)
        sig = robust_std(r[np.isfinite(r)][:: max(1, r.size // 500000)] - lev)
        if ref_noise:
            sig = float(np.nanmedian(fits.getdata(ref_noise)))
        src = np.nan_to_num(r - lev, nan=0.0) > 10 * sig
        # grown by 2 px (a 5 x 5 maximum filter)
        g = src.copy()
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                g |= np.roll(np.roll(src, dy, 0), dx, 1)
        if self.truth:
            yy, xx = np.mgrid[0:r.shape[0], 0:r.shape[1]]
            for t in self.truth:  # leave the injected sources out of the static ones
                x0, y0 = int(round(t["x"])), int(round(t["y"]))
                sl = (slice(max(0, y0 - 8), y0 + 9), slice(max(0, x0 - 8), x0 + 9))
                g[sl] = False
        self.src = g
        self.sky = np.abs(np.nan_to_num(r - lev, nan=1e30)) < sig


def quality(pair, name, seconds, diff, sigma, score, valid, extra=None):
    ok = valid & np.isfinite(diff) & np.isfinite(sigma) & (sigma > 0)
    ds = np.where(ok, diff / np.where(sigma > 0, sigma, 1.0), np.nan)
    srcpix = ds[ok & pair.src]
    cands = peaks(score, valid)
    row = {"pair": pair.name, "method": name, "seconds": round(seconds, 3), "bkg_rms": round(robust_std(ds[ok]), 4),
           "src_rms": round(float(np.sqrt(np.mean(srcpix ** 2))), 3) if srcpix.size else None,
           "n_src_pix": int(srcpix.size), "peaks": len(cands)}
    if pair.truth is not None:
        got, want, fp = match(cands, pair.truth)
        row.update({"complete": f"{got}/{want}", "completeness": round(got / want, 4) if want else None,
                    "false_pos": fp})
    else:
        row.update({"complete": "n/a", "completeness": None, "false_pos": len(cands)})
    if extra:
        row.update(extra)
    return row


def sky_sigma(pair, diff):
    v = diff[pair.sky & np.isfinite(diff)]
    return robust_std(v)


class Clock:
    """Wall and CPU time of a block: CPU of this process (its threads: numba, FFTW) plus its finished children
    (clred, hotpants). Under load (other jobs on the cores) CPU time is the fairer figure."""

    def __enter__(self):
        self.w, self.c = time.perf_counter(), self.cpu()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu_s = time.perf_counter() - self.w, self.cpu() - self.c

    @staticmethod
    def cpu():
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def skipped(pair, name, why):
    return {"pair": pair.name, "method": name, "skipped": why}


# ------------------------------------------------------------------ methods

def clred_cmd(args, pair, work, method):
    tag = "clred_" + method
    cmd = [args.clred, "subtract", pair.new, pair.ref, "-o", f"{work}/{tag}.fits", "--new-psf", pair.new_psf,
           "--ref-psf", pair.ref_psf, "--candidates", f"{work}/{tag}.csv", "--overwrite", "--json"]
    if method != "zogy":
        cmd += ["--method", method, "--decorrelate"]
    if pair.new_noise:
        cmd += ["--new-noise", pair.new_noise, "--ref-noise", pair.ref_noise]
    return cmd + pair.clred_extra, f"{work}/{tag}.fits"


def run_clred(args, pair, work, method):
    name = "clred ZOGY" if method == "zogy" else "clred AL"
    cmd, out = clred_cmd(args, pair, work, method)
    warm = subprocess.run(cmd, capture_output=True, text=True)  # kernels and FFT plans compiled and cached
    if warm.returncode != 0:
        return skipped(pair, name, f"`clred subtract --method {method}` failed: {warm.stderr.strip()[-200:]}")
    with Clock() as clk:
        r = subprocess.run(cmd, capture_output=True, text=True)
    wall = clk.wall
    if r.returncode != 0:
        return skipped(pair, name, f"failed: {r.stderr.strip()[-200:]}")
    with fits.open(out) as h:
        sci = h["SCI"].data.astype(float)
        var = h["VAR"].data.astype(float)
        mask = h["MASK"].data
        names = [x.name for x in h]
        # ZOGY's score, or Alard-Lupton's own PSF-matched (decorrelated) D / sigma
        score = next((h[e].data.astype(float) for e in ("SCORR", "DETECT") if e in names), None)
    valid = mask == 0
    if score is None:  # no score plane: the PSF-matched filter (its PSF is the new image's)
        score = matched_score(sci, var, fits.getdata(pair.new_psf).astype(float))
    info = json.loads(r.stdout) if r.stdout.strip().startswith("{") else {}
    return quality(pair, name, wall, sci, np.sqrt(var), score, valid,
                   {"cpu_s": round(clk.cpu_s, 3), "library_seconds": info.get("seconds"),
                    "candidates": info.get("candidates")})


def run_hotpants(args, pair, work):
    exe = args.hotpants or os.environ.get("HOTPANTS") or shutil.which("hotpants")
    if not exe or not os.access(exe, os.X_OK):
        return skipped(pair, "HOTPANTS (AL)", "no hotpants binary: build it with bench/diff/setup_hotpants.sh SRC, "
                                             "then --hotpants PATH or $HOTPANTS")
    # NaN (template holes) below the valid range; noise from the noise maps or the VAR planes, masks from MASK
    for tag, path, noise in (("new", pair.new, pair.new_noise), ("ref", pair.ref, pair.ref_noise)):
        img = fits.getdata(path).astype(np.float32)
        fits.writeto(f"{work}/hp_{tag}.fits", np.nan_to_num(img, nan=-1e10), overwrite=True)
        with fits.open(path) as h:
            names = [x.name for x in h]
            var = h["VAR"].data if "VAR" in names else None
            mask = h["MASK"].data if "MASK" in names else None
        sig = fits.getdata(noise).astype(np.float32) if noise else (np.sqrt(np.maximum(var, 0)) if var is not None else None)
        if sig is not None:
            fits.writeto(f"{work}/hp_{tag}_noise.fits", np.nan_to_num(sig, nan=0.0).astype(np.float32), overwrite=True)
        bad = ~np.isfinite(img) | ((mask != 0) if mask is not None else False)
        fits.writeto(f"{work}/hp_{tag}_mask.fits", bad.astype(np.int16), overwrite=True)
    fn = fits.getdata(pair.new_psf)
    fr = fits.getdata(pair.ref_psf)
    fwhm_n, fwhm_r = fwhm_of(fn), fwhm_of(fr)
    conv = "t" if fwhm_r <= fwhm_n else "i"
    s = max(np.sqrt(abs(fwhm_n ** 2 - fwhm_r ** 2)) / 2.3548, 0.5)
    rk = int(np.ceil(2.5 * max(fwhm_n, fwhm_r)))
    # its default basis (3 Gaussians, degrees 6/4/2) scaled to the matching sigma, as its docs advise
    cmd = [exe, "-inim", f"{work}/hp_new.fits", "-tmplim", f"{work}/hp_ref.fits", "-outim", f"{work}/hp_diff.fits",
           "-c", conv, "-n", "i", "-tu", "1e30", "-iu", "1e30", "-tl", "-1e9", "-il", "-1e9",
           "-imi", f"{work}/hp_new_mask.fits", "-tmi", f"{work}/hp_ref_mask.fits",
           "-ng", "3", "6", f"{0.5 * s:.3f}", "4", f"{s:.3f}", "2", f"{2 * s:.3f}",
           "-r", str(rk), "-rss", str(int(rk * 1.5)), "-nsx", "8", "-nsy", "8", "-ko", "2", "-bgo", "1",
           "-oni", f"{work}/hp_noise.fits", "-v", "0"]
    for flag, tag in (("-ini", "new"), ("-tni", "ref")):
        if os.path.exists(f"{work}/hp_{tag}_noise.fits"):
            cmd += [flag, f"{work}/hp_{tag}_noise.fits"]
    with Clock() as clk:
        r = subprocess.run(cmd, capture_output=True, text=True)
    wall = clk.wall
    if r.returncode != 0 or not os.path.exists(f"{work}/hp_diff.fits"):
        return skipped(pair, "HOTPANTS (AL)", f"hotpants failed: {(r.stderr or r.stdout).strip()[-300:]}")
    diff = fits.getdata(f"{work}/hp_diff.fits").astype(float)
    noise = fits.getdata(f"{work}/hp_noise.fits").astype(float)
    valid = np.isfinite(diff) & np.isfinite(noise) & (noise > 0) & (diff != 1e-30)
    psf = (fn if conv == "t" else fr).astype(float)
    score = matched_score(np.where(valid, diff, 0), np.where(valid, noise ** 2, 0), psf)
    return quality(pair, "HOTPANTS (AL)", wall, diff, noise, score, valid, {"convolved": "ref" if conv == "t" else "new",
                                                                        "cpu_s": round(clk.cpu_s, 3)})


def fwhm_of(psf):
    p = psf / psf.max()
    return float(2 * np.sqrt((p >= 0.5).sum() / np.pi))


def run_properimage(args, pair, work):
    name = "ProperImage ZOGY"
    try:
        from properimage import operations, single_image  # noqa: F401
    except Exception as e:  # noqa: BLE001 - any import failure means the peer is absent
        return skipped(pair, name, f"properimage not importable ({e})")
    new = fits.getdata(pair.new).astype(float)
    ref = fits.getdata(pair.ref).astype(float)
    clk = Clock().__enter__()
    try:
        # its own PSF estimation (fitted Gaussians on its detected stars): ProperImage takes no PSF file
        res = operations.subtract(ref=ref, new=new, smooth_psf=False, fitted_psf=True, iterative=False, beta=False,
                                  shift=False)
    except Exception as e:  # noqa: BLE001
        return skipped(pair, name, f"properimage failed: {type(e).__name__}: {str(e)[:200]}")
    clk.__exit__()
    wall = clk.wall
    D, _, S_corr, mask = res[0], res[1], res[2], res[3]
    D = np.real(np.asarray(D, dtype=complex)).astype(float)
    S_corr = np.real(np.asarray(S_corr, dtype=complex)).astype(float)
    valid = np.broadcast_to(~np.asarray(mask, dtype=bool), D.shape) if mask is not None else np.ones(D.shape, bool)
    sig = sky_sigma(pair, np.where(valid, D, np.nan))
    # its S_corr is not in units of sigma (about 1e-4 here): scaled by its robust std, as a user must
    scale = robust_std(S_corr[valid])
    return quality(pair, name, wall, D, np.full(D.shape, sig), S_corr / scale, valid,
                   {"score_scale": scale, "cpu_s": round(clk.cpu_s, 3)})


def run_sfft(args, pair, work):
    name = "SFFT (NumPy)"
    try:
        from sfft.CustomizedPacket import Customized_Packet
    except Exception as e:  # noqa: BLE001
        return skipped(pair, name, f"sfft not importable ({e})")
    new = fits.getdata(pair.new).astype(float)
    ref = fits.getdata(pair.ref).astype(float)
    fn = fits.getdata(pair.new_psf)
    fr = fits.getdata(pair.ref_psf)
    fwhm_n, fwhm_r = fwhm_of(fn), fwhm_of(fr)
    force = "REF" if fwhm_r <= fwhm_n else "SCI"
    # SFFT's customised mode fits the kernel on the pixels the masked images keep: the sources of
    # both (above 5 sigma, grown by the kernel's half-width), everything else 0 (its sparse-field recipe)
    hw = int(np.ceil(2.5 * max(fwhm_n, fwhm_r)))
    paths = {}
    keep = np.zeros(new.shape, bool)
    for tag, img in (("sci", new), ("ref", ref)):
        lev = np.nanmedian(img)
        sig = robust_std(img[np.isfinite(img)][:: max(1, img.size // 500000)] - lev)
        keep |= np.nan_to_num(img - lev, nan=0.0) > 5 * sig
    grown = keep.copy()
    for d in range(1, hw + 1):
        grown[d:] |= keep[:-d]
        grown[:-d] |= keep[d:]
    keep = grown.copy()
    for d in range(1, hw + 1):
        grown[:, d:] |= keep[:, :-d]
        grown[:, :-d] |= keep[:, d:]
    for tag, img in (("sci", new), ("ref", ref)):
        lev = np.nanmedian(img)
        full = np.nan_to_num(img - lev, nan=0.0)
        fits.writeto(f"{work}/sfft_{tag}.fits", full, overwrite=True)
        fits.writeto(f"{work}/sfft_m{tag}.fits", np.where(grown, full, 0.0), overwrite=True)
        paths[tag] = f"{work}/sfft_{tag}.fits"
    out = f"{work}/sfft_diff.fits"
    clk = Clock().__enter__()
    try:
        Customized_Packet.CP(FITS_REF=paths["ref"], FITS_SCI=paths["sci"], FITS_mREF=f"{work}/sfft_mref.fits",
                             FITS_mSCI=f"{work}/sfft_msci.fits", ForceConv=force, GKerHW=hw, FITS_DIFF=out,
                             KerPolyOrder=2, BGPolyOrder=1, ConstPhotRatio=True, BACKEND_4SUBTRACT="Numpy",
                             NUM_CPU_THREADS_4SUBTRACT=args.threads, VERBOSE_LEVEL=0)
    except Exception as e:  # noqa: BLE001
        return skipped(pair, name, f"sfft failed: {type(e).__name__}: {str(e)[:200]}")
    clk.__exit__()
    wall = clk.wall
    D = fits.getdata(out).astype(float)
    valid = np.isfinite(D)
    valid[:hw] = valid[-hw:] = False
    valid[:, :hw] = valid[:, -hw:] = False
    sig = sky_sigma(pair, np.where(valid, D, np.nan))
    psf = (fn if force == "REF" else fr).astype(float)
    score = matched_score(np.where(valid, D, 0), np.full(D.shape, sig * sig), psf)
    return quality(pair, name, wall, D, np.full(D.shape, sig), score, valid,
                   {"convolved": force.lower(), "cpu_s": round(clk.cpu_s, 3)})


# ------------------------------------------------------------------ table

COLS = [("method", "method"), ("seconds", "s"), ("cpu_s", "CPU s"), ("bkg_rms", "bkg D/σ"), ("src_rms", "src D/σ"),
        ("complete", "complete"), ("false_pos", "false +"), ("peaks", "5σ peaks")]


def markdown(rows, header):
    lines = [header, "", "| pair | " + " | ".join(c[1] for c in COLS) + " |",
             "|---|" + "---|" * len(COLS)]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['pair']} | {r['method']} | skipped: {r['skipped']} |" + " |" * (len(COLS) - 2))
        else:
            lines.append(f"| {r['pair']} | " + " | ".join(str(r.get(k, "")) for k, _ in COLS) + " |")
    lines.append("")
    speed = []
    by = {(r["pair"], r["method"]): r for r in rows if "skipped" not in r}
    for pair in sorted({r["pair"] for r in rows}):
        for mine, peer in (("clred AL", "HOTPANTS (AL)"), ("clred ZOGY", "ProperImage ZOGY"),
                           ("clred ZOGY", "SFFT (NumPy)"), ("clred AL", "SFFT (NumPy)")):
            a, b = by.get((pair, mine)), by.get((pair, peer))
            if a and b and a["seconds"] > 0:
                cpu = (f"; CPU {b['cpu_s'] / a['cpu_s']:.1f}x ({a['cpu_s']:.2f} s vs {b['cpu_s']:.2f} s)"
                       if a.get("cpu_s") and b.get("cpu_s") else "")
                speed.append(f"- {pair}: {mine} is {b['seconds'] / a['seconds']:.1f}x faster than {peer} in wall time "
                             f"({a['seconds']:.2f} s vs {b['seconds']:.2f} s){cpu}")
    return "\n".join(lines + (["Speed (wall time, same run):", ""] + speed if speed else [])) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("results", help="directory for diff_bench.md and diff_bench.json")
    p.add_argument("--clred", default="build/clred")
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--work", default="/tmp/clred-diffbench", help="scratch directory for the pairs and outputs")
    p.add_argument("--nircam", default=None, help="the NIRCam pair's directory (default ../shared/data/nircam if present)")
    p.add_argument("--hotpants", default=None)
    p.add_argument("--threads", type=int, default=2, help="CPU threads for SFFT's NumPy backend")
    p.add_argument("--methods", default="clred-zogy,clred-al,hotpants,properimage,sfft")
    p.add_argument("--pairs", default="sim,nircam", help="which pairs: sim, nircam")
    p.add_argument("--seed", type=int, default=None, help="the simulated pair's seed (default: simulate-pair's)")
    p.add_argument("--fwhm-gradient", default=None, metavar="GX,GY",
                   help="the simulated pair's PSF varies over the field (simulate-pair --fwhm-gradient)")
    args = p.parse_args()
    os.makedirs(args.results, exist_ok=True)
    os.makedirs(args.work, exist_ok=True)
    pairs = []
    d = f"{args.work}/pair{args.size}"
    ntr = max(20, args.size * args.size // 10000)
    want = args.pairs.split(",")
    if "sim" in want:
        make_sim(args, d, ntr, pairs)
    nc = args.nircam or ("../shared/data/nircam" if os.path.isdir("../shared/data/nircam") else None)
    if "nircam" in want and nc and os.path.isdir(nc):
        add_nircam(args, nc, pairs)
    elif "nircam" in want:
        print("NIRCam pair skipped: no ../shared/data/nircam (give --nircam DIR)", file=sys.stderr)
    return run_all(args, pairs, ntr)


def make_sim(args, d, ntr, pairs):
    extra = (["--seed", str(args.seed)] if args.seed is not None else []) + \
        (["--fwhm-gradient", args.fwhm_gradient] if args.fwhm_gradient else [])
    subprocess.run([args.clred, "simulate-pair", "-o", d, "--size", f"{args.size}x{args.size}", "--ntransients",
                    str(ntr), "--overwrite"] + extra, check=True, capture_output=True)
    pairs.append(Pair(f"sim {args.size}²", f"{d}/new.fits", f"{d}/ref.fits", f"{d}/new_psf.fits", f"{d}/ref_psf.fits",
                      truth_csv=f"{d}/truth.csv"))


def add_nircam(args, nc, pairs):
    # PSFs cut to 101 px (as in the clred report); S_corr renormalised for the mosaics' correlated noise
    ncw = f"{args.work}/nircam"
    os.makedirs(ncw, exist_ok=True)
    for f in ("sci_psf", "ref_psf"):
        a = fits.getdata(f"{nc}/{f}.fits").astype(np.float32)
        c = [s // 2 for s in a.shape]
        a = a[max(0, c[0] - 50):c[0] + 51, max(0, c[1] - 50):c[1] + 51]
        fits.writeto(f"{ncw}/{f}.fits", a / a.sum(), overwrite=True)
    pairs.append(Pair("NIRCam", f"{nc}/sci_jw02561_f200w.fits", f"{nc}/ref_jw01324_f200w.fits",
                      f"{ncw}/sci_psf.fits", f"{ncw}/ref_psf.fits", f"{nc}/sci_noise.fits", f"{nc}/ref_noise.fits",
                      clred_extra=["--renormalize", "--astrom-sigma", "0.06"]))


def run_all(args, pairs, ntr):
    methods = args.methods.split(",")
    rows = []
    for pair in pairs:
        work = f"{args.work}/{pair.name.split()[0].lower()}_out"
        os.makedirs(work, exist_ok=True)
        for m in methods:
            if m == "clred-zogy":
                rows.append(run_clred(args, pair, work, "zogy"))
            elif m == "clred-al":
                rows.append(run_clred(args, pair, work, "al"))
            elif m == "hotpants":
                rows.append(run_hotpants(args, pair, work))
            elif m == "properimage":
                rows.append(run_properimage(args, pair, work))
            elif m == "sfft":
                rows.append(run_sfft(args, pair, work))
            print(json.dumps(rows[-1]), flush=True)
    names = [p.name for p in pairs]
    header = ("Difference imaging, one run: " + ", ".join(names)
              + (f" ({ntr} injected sources, S/N 3-50)" if any(n.startswith("sim") for n in names) else "")
              + f"; {os.cpu_count()} CPUs visible")
    md = markdown(rows, header)
    with open(f"{args.results}/diff_bench.md", "w") as f:
        f.write(md)
    with open(f"{args.results}/diff_bench.json", "w") as f:
        json.dump({"size": args.size, "ntransients": ntr, "rows": rows}, f, indent=1)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
