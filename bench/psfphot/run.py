#!/usr/bin/env python3
"""clred's aperture and PSF photometry against photutils' on the same frames
and positions: agreement (median magnitude difference and robust scatter)
and the time of the photometry calls.

Frames: a simulated pair's new image (clred simulate-pair: Moffat PSF, sky,
true VAR; its true PSF given to both) and, when ../shared/data/nircam is
there, the NIRCam F200W science frame with its PSF (no VAR plane: clred
weights by the global background RMS, photutils gets no error map, so
both fits are unweighted). Positions: the sources `clred sources` detects,
given to both unchanged. Compared: sources unflagged by both, S/N >= 20 in
clred's aperture, and point-like (unflagged in clred sources, FWHM < 1.3 x
the PSF's, ellipticity < 0.3).

clred: `clred photometry FRAME --psf PSF --forced|fitted --json`: the
`aperture_s` and `psf_s` of its JSON are the library calls alone (a warm-up
run first compiles the kernels). photutils 3.0: aperture_photometry (exact
overlap) with the sigma-clipped (3 sigma, 5 iterations) median of the same
annulus; PSFPhotometry with ImagePSF(the same PSF stamp), fit_shape the
square around clred's fit disc, SourceGrouper at clred's group radius and a
LocalBackground (median of the same annulus) subtracted first; x, y, flux
fitted (clred fits x, y, flux and a constant sky in the disc).

usage: bench/.venv/bin/python bench/psfphot/run.py --clred build/clred [--size 1024] [--out DIR]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from astropy.io import fits
from astropy.stats import SigmaClip
from astropy.table import Table
from photutils.aperture import ApertureStats, CircularAnnulus, CircularAperture, aperture_photometry
from photutils.background import LocalBackground, MedianBackground
from photutils.psf import ImagePSF, PSFPhotometry, SourceGrouper


def run_clred(clred, frame, psf, out_csv, extra, env):
    cmd = [clred, "photometry", frame, "--psf", psf, "--csv", out_csv, "--json", "--overwrite"] + extra
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit("clred failed: %s\n%s" % (" ".join(cmd), r.stderr))
    return json.loads(r.stdout.strip().splitlines()[-1])


def read_frame(path, noise=None):
    with fits.open(path) as h:
        sci = None
        var = None
        for hdu in h:
            if hdu.data is None:
                continue
            name = hdu.name.upper()
            if sci is None and (name in ("SCI", "PRIMARY") or hdu.data.ndim == 2):
                sci = hdu.data.astype(np.float64)
            elif name == "VAR":
                var = hdu.data.astype(np.float64)
    if noise is not None:
        var = fits.getdata(noise).astype(np.float64) ** 2
    return sci, var


def robust(d):
    d = d[np.isfinite(d)]
    if len(d) == 0:
        return float("nan"), float("nan"), 0
    med = float(np.median(d))
    return med, float(1.4826 * np.median(np.abs(d - med))), len(d)


def against_truth(truth_csv, x, y, f_clred, f_phot, good):
    """Median and scatter of clred's and photutils' PSF magnitudes against the
    injected fluxes of the point sources (truth.csv), paired within 1 px."""
    t = Table.read(truth_csv, format="ascii.csv")
    keep = (np.asarray(t["flux"]) > 0) & (np.asarray(t["on_galaxy"]) == 0)
    tx, ty, tf = np.asarray(t["x"])[keep], np.asarray(t["y"])[keep], np.asarray(t["flux"])[keep]
    dc, dp = [], []
    for i in np.nonzero(good)[0]:
        d2 = (tx - x[i]) ** 2 + (ty - y[i]) ** 2
        k = int(np.argmin(d2)) if len(d2) else -1
        if k >= 0 and d2[k] < 1.0:
            dc.append(-2.5 * np.log10(f_clred[i] / tf[k]))
            dp.append(-2.5 * np.log10(f_phot[i] / tf[k]))
    return robust(np.array(dc)), robust(np.array(dp))


def compare(name, clred, frame, psf_path, noise, radius, annulus, fit_radius, env, reps, truth=None):
    tmp = tempfile.mkdtemp(prefix="psfphot_bench_")
    csv = os.path.join(tmp, "clred.csv")
    # positions and shapes from clred sources; the same positions to both
    src_csv, pos_csv = os.path.join(tmp, "sources.csv"), os.path.join(tmp, "positions.csv")
    subprocess.run([clred, "sources", frame, "--csv", src_csv, "--overwrite"], check=True, capture_output=True, env=env)
    src = Table.read(src_csv, format="ascii.csv")
    Table({"x": src["X"], "y": src["Y"]}).write(pos_csv, format="ascii.csv", overwrite=True)
    extra = ["--positions", pos_csv, "--radius", str(radius), "--annulus", "%g,%g" % annulus, "--fit-radius",
             str(fit_radius)]
    run_clred(clred, frame, psf_path, csv, extra, env)  # warm-up: kernels compiled and cached
    times = [run_clred(clred, frame, psf_path, csv, extra, env) for _ in range(reps)]
    js = times[-1]
    cat = Table.read(csv, format="ascii.csv")
    x, y = np.asarray(cat["X"], float), np.asarray(cat["Y"], float)
    sci, var = read_frame(frame, noise)
    err = np.sqrt(var) if var is not None else None
    mask = ~np.isfinite(sci)
    if var is not None:
        mask |= ~(np.isfinite(var) & (var > 0))
    psf = fits.getdata(psf_path).astype(np.float64)
    psf /= psf.sum()
    fwhm = float(js["psf_fwhm"])
    group_r = fit_radius + fwhm

    # photutils apertures
    pos = np.column_stack([x, y])
    t0 = time.perf_counter()
    ap = CircularAperture(pos, r=radius)
    ann = CircularAnnulus(pos, r_in=annulus[0], r_out=annulus[1])
    bkg = ApertureStats(sci, ann, mask=mask, sigma_clip=SigmaClip(sigma=3.0, maxiters=5)).median
    tab = aperture_photometry(sci, ap, error=err, mask=mask, method="exact")
    ap_area = ap.area_overlap(sci, mask=mask)
    f_ap = np.asarray(tab["aperture_sum"]) - bkg * ap_area
    t_ap = time.perf_counter() - t0

    # photutils PSF photometry
    side = 2 * int(np.ceil(fit_radius)) + 1
    model = ImagePSF(psf)
    phot = PSFPhotometry(model, (side, side), grouper=SourceGrouper(min_separation=group_r), aperture_radius=radius,
                         local_bkg_estimator=LocalBackground(annulus[0], annulus[1],
                                                             bkg_estimator=MedianBackground()))
    init = Table({"x": x, "y": y, "flux": np.where(f_ap > 0, f_ap, 1.0)})
    t0 = time.perf_counter()
    res = phot(np.where(mask, 0.0, sci), mask=mask, error=err, init_params=init)
    t_psf = time.perf_counter() - t0
    f_psf = np.asarray(res["flux_fit"], float)

    c_ap, c_aperr = np.asarray(cat["FLUX"], float), np.asarray(cat["FLUX_ERR"], float)
    c_psf, c_psferr = np.asarray(cat["PSF_FLUX"], float), np.asarray(cat["PSF_FLUX_ERR"], float)
    good = (np.asarray(cat["FLAGS"]) == 0) & (np.asarray(cat["PSF_FLAGS"]) & ~8 == 0) & (c_ap > 20 * c_aperr)
    good &= (np.asarray(res["flags"]) == 0) & (f_psf > 0) & (f_ap > 0)
    # point sources only (a PSF fit of a galaxy measures nothing comparable):
    # unflagged, round and as sharp as the PSF in clred sources
    good &= (np.asarray(src["FLAGS"]) == 0) & (np.asarray(src["FWHM"], float) < 1.3 * fwhm)
    good &= np.asarray(src["ELLIPTICITY"], float) < 0.3
    dap = robust(-2.5 * np.log10(c_ap[good] / f_ap[good]))
    dpsf = robust(-2.5 * np.log10(c_psf[good] / f_psf[good]))
    # the PSF magnitudes against the aperture's (each package with itself)
    spsf = robust(-2.5 * np.log10(c_psf[good] / c_ap[good]))
    ppsf = robust(-2.5 * np.log10(f_psf[good] / f_ap[good]))
    out = {
        "frame": name, "size": list(sci.shape[::-1]), "positions": len(x), "compared": int(good.sum()),
        "psf_fwhm": fwhm, "fit_radius": fit_radius, "group_radius": group_r,
        "aperture_dmag_median": dap[0], "aperture_dmag_scatter": dap[1],
        "psf_dmag_median": dpsf[0], "psf_dmag_scatter": dpsf[1],
        "clred_psf_minus_aperture": spsf[:2], "photutils_psf_minus_aperture": ppsf[:2],
        "clred_aperture_s": min(t["aperture_s"] for t in times), "clred_psf_s": min(t["psf_s"] for t in times),
        "photutils_aperture_s": t_ap, "photutils_psf_s": t_psf,
    }
    out["psf_speedup"] = t_psf / out["clred_psf_s"] if out["clred_psf_s"] > 0 else float("nan")
    if truth:
        tc, tp = against_truth(truth, x, y, c_psf, f_psf, good)
        out["truth_clred_psf_dmag"], out["truth_photutils_psf_dmag"] = tc, tp
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clred", default="build/clred")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--no-nircam", action="store_true")
    ap.add_argument("--ntransients", type=int, default=400)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data"))
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    a = ap.parse_args()
    env = dict(os.environ)
    work = tempfile.mkdtemp(prefix="psfphot_pair_")
    subprocess.run([a.clred, "simulate-pair", "-o", work, "--size", "%dx%d" % (a.size, a.size), "--ntransients",
                    str(a.ntransients), "--overwrite"], check=True, capture_output=True)
    rows = [compare("simulated %d^2" % a.size, a.clred, os.path.join(work, "new.fits"),
                    os.path.join(work, "new_psf.fits"), None, 5.0, (14.0, 22.0), 9.0, env, a.reps,
                    truth=os.path.join(work, "truth.csv"))]
    nc = os.path.join(a.data, "nircam")
    if not a.no_nircam and os.path.exists(os.path.join(nc, "sci_jw02561_f200w.fits")):
        rows.append(compare("NIRCam F200W", a.clred, os.path.join(nc, "sci_jw02561_f200w.fits"),
                            os.path.join(nc, "sci_psf.fits"), None, 4.0, (8.0, 12.0), 4.0,
                            env, a.reps))
    else:
        print("NIRCam frame not found under %s: skipped" % nc)
    print("| frame | positions | compared | aperture dmag median / scatter | PSF dmag median / scatter | "
          "clred aperture s | photutils aperture s | clred PSF s | photutils PSF s | PSF speed-up |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| %s | %d | %d | %+.4f / %.4f | %+.4f / %.4f | %.3f | %.3f | %.3f | %.2f | %.0fx |" % (
            r["frame"], r["positions"], r["compared"], r["aperture_dmag_median"], r["aperture_dmag_scatter"],
            r["psf_dmag_median"], r["psf_dmag_scatter"], r["clred_aperture_s"], r["photutils_aperture_s"],
            r["clred_psf_s"], r["photutils_psf_s"], r["psf_speedup"]))
    for r in rows:
        print("%s: PSF - aperture magnitudes: clred %+.4f (scatter %.4f), photutils %+.4f (scatter %.4f)" % (
            r["frame"], r["clred_psf_minus_aperture"][0], r["clred_psf_minus_aperture"][1],
            r["photutils_psf_minus_aperture"][0], r["photutils_psf_minus_aperture"][1]))
    for r in rows:
        if "truth_clred_psf_dmag" in r:
            c, p = r["truth_clred_psf_dmag"], r["truth_photutils_psf_dmag"]
            print("%s: PSF magnitudes - truth over %d injected point sources: clred %+.4f (scatter %.4f), "
                  "photutils %+.4f (scatter %.4f)" % (r["frame"], c[2], c[0], c[1], p[0], p[1]))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
