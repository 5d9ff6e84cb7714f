#!/usr/bin/env python3
"""Point-by-point comparison of clred with SExtractor and astroscrappy on real
frames (bench only; the product needs no Python). Driven by bench/compare/run.

  compare.py --clred BIN --data DIR --work DIR --results DIR

1. clred calibrates the CAFOS NGC 2420 V 60 s frames (master bias, master flat);
   both tools then read the same float32 pixels of uamA_0031 (the SCI plane).
2. source-extractor with clred's defaults (64 px boxes, 3x3 filter, 1.5 x RMS,
   5 px, Gaussian filter of the seeing on clred's support, r = 5 px apertures)
   writes its catalog and BACKGROUND / BACKGROUND_RMS maps.
3. clred background, sources and photometry (at SExtractor's positions and at
   its own); catalogs matched within 1.5 px (SExtractor is 1-based, clred
   0-based: x_clred = X_IMAGE - 1).
4. astroscrappy.detect_cosmics against clred cosmic with the same parameters
   on GMOS (both sepmed settings) and on the calibrated CAFOS frame.
5. bench/results/compare-<device>-<date>.{md,json}.
"""
import argparse
import datetime
import importlib.metadata as md
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
from astropy.io import fits
from astropy.table import Table
from scipy.spatial import cKDTree

# CAFOS has no GAIN / RDNOISE keywords: the read noise comes from the two
# biases (std of their difference / sqrt 2) and the gain from the photon
# transfer of the two calibrated 60 s frames 0032 and 0033 (robust variance of
# their difference in 32 px boxes, less the read noise, against the sky level).
FWHM = 3.0          # matched-filter FWHM: replaced by the frame's seeing (measure_seeing)
THRESH = 1.5        # clred default, per-pixel RMS units (SExtractor's convention)
MINAREA = 5
RADIUS = 5.0        # clred photometry's default aperture radius
MATCH = 1.5         # px
SE_BIN = "source-extractor"


def log(msg):
    print(f"compare: {msg}", file=sys.stderr, flush=True)


def run(cmd, **kw):
    log(" ".join(str(c) for c in cmd))
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.stderr.write(r.stdout + r.stderr)
        raise SystemExit(f"compare: command failed ({r.returncode}): {' '.join(map(str, cmd))}")
    return r.stdout


def robust_std(x):
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan")
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def f(x, nd=4):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return f"{x:.{nd}g}"


def device_slug(clred):
    d = json.loads(run([clred, "devices", "--json"]))["devices"]
    dev = next((x for x in d if x.get("default")), d[0])
    if os.environ.get("CLRED_DEVICE"):
        want = os.environ["CLRED_DEVICE"]
        dev = next((x for x in d if str(x["index"]) == want or want in x["name"]), dev)
    name = re.sub(r"\((R|TM|C)\)", "", f"{dev['type']}-{dev['name']}", flags=re.I).lower()
    return re.sub(r"[^a-z0-9]+", "-", name).strip("-"), dev


# ---------------------------------------------------------------- calibration

def robust_var(x):
    x = x[np.isfinite(x)]
    return float((1.4826 * np.median(np.abs(x - np.median(x)))) ** 2)


def calibrate(clred, data, work):
    cafos = os.path.join(data, "cafos")
    bias = [os.path.join(cafos, "calib/bias", f"uamA_000{i}.fits") for i in (1, 2)]
    b1, b2 = (fits.getdata(p).astype(float) for p in bias)
    inner = (slice(100, 900), slice(100, 900))
    rn_adu = math.sqrt(robust_var((b1 - b2)[inner]) / 2)
    mbias, mflat = os.path.join(work, "mbias.fits"), os.path.join(work, "mflat_V.fits")
    run([clred, "master-bias", *bias, "-o", mbias, "--overwrite"])
    run([clred, "master-flat", "--bias", mbias, "--saturation", 65535,
         os.path.join(cafos, "calib/flat/V/uamA_0048.fits"), "-o", mflat, "--overwrite"])
    raws = [os.path.join(cafos, "science/NGC2420/V", f"uamA_00{i}.fits") for i in (31, 32, 33)]
    # First pass in ADU with unit gain, only to measure the gain.
    cal0 = os.path.join(work, "cal_gain1")
    os.makedirs(cal0, exist_ok=True)
    run([clred, "calibrate", "--bias", mbias, "--flat", mflat, "--saturation", 65535, "--gain", 1,
         "--readnoise", f"{rn_adu:.3f}", *raws[1:], "-o", cal0, "--overwrite"])
    a, b = (fits.getdata(os.path.join(cal0, f"uamA_00{i}.fits"), "SCI").astype(float)[inner] for i in (32, 33))
    # The sky changes between the frames (twilight: 6300 -> 6800 ADU, with a
    # gradient): difference 32 px boxes, each scaled to its own level, so the
    # gradient does not count as noise. Dividing by the same flat leaves the
    # flat's own noise (a fixed pattern) out of the difference as it should.
    var, skies = [], []
    for y in range(0, a.shape[0] - 31, 32):
        for x in range(0, a.shape[1] - 31, 32):
            pa, pb = a[y:y + 32, x:x + 32], b[y:y + 32, x:x + 32]
            var.append(robust_var(pa - pb * (np.median(pa) / np.median(pb))) / 2)
            skies.append(0.5 * (np.median(pa) + np.median(pb)))
    sky = float(np.median(skies))
    gain = round(sky / (float(np.median(var)) - rn_adu ** 2), 2)
    readnoise = rn_adu * gain
    cal = os.path.join(work, "cal")
    os.makedirs(cal, exist_ok=True)
    run([clred, "calibrate", "--bias", mbias, "--flat", mflat, "--saturation", 65535, "--gain", gain,
         "--readnoise", f"{readnoise:.3f}", *raws, "-o", cal, "--overwrite"])
    full = os.path.join(cal, "uamA_0031.fits")
    with fits.open(full) as h:
        sci = np.asarray(h["SCI"].data, dtype=np.float32)
        bad_rows = np.nonzero(~np.isfinite(sci).all(axis=1))[0]
        # SExtractor has no notion of NaN: both tools get the rows above the
        # last one holding a NO_DATA (NaN) pixel, where every pixel is valid.
        y0 = int(bad_rows.max()) + 1 if bad_rows.size and bad_rows.max() < sci.shape[0] // 4 else 0
        # clred's layout: SCI in the primary HDU, then VAR and MASK
        hdus = [fits.PrimaryHDU(np.asarray(h[0].data)[y0:], header=h[0].header)]
        for ext in ("VAR", "MASK"):
            hdus.append(fits.ImageHDU(np.asarray(h[ext].data)[y0:], header=h[ext].header, name=ext))
        calib = os.path.join(work, "ngc2420_V31_mef.fits")
        fits.HDUList(hdus).writeto(calib, overwrite=True)
        nan_full = int(np.sum(~np.isfinite(sci)))
        sci = sci[y0:]
        mask = np.asarray(h["MASK"].data)[y0:]
    if not np.isfinite(sci).all():
        raise SystemExit("compare: NaN pixels remain after cropping the CAFOS frame")
    # One plain float32 image that both tools read: identical pixels.
    plain = os.path.join(work, "ngc2420_V31.fits")
    fits.PrimaryHDU(sci).writeto(plain, overwrite=True)
    sat = sci[(mask & 0x0002) != 0]
    info = {"frame": "cafos/science/NGC2420/V/uamA_0031.fits (60 s, V)", "gain": gain, "sky_adu": sky,
            "readnoise_e": readnoise, "readnoise_adu": rn_adu, "nan_pixels_full_frame": nan_full,
            "rows_cropped": y0, "saturated_pixels": int(sat.size),
            "satur_level": float(sat.min()) if sat.size else None, "shape": list(sci.shape)}
    log(f"calibrated {full}: gain {gain} e-/ADU, read noise {readnoise:.2f} e-, {info['saturated_pixels']} "
        f"saturated pixels, rows 0..{y0 - 1} cropped ({nan_full} NaN pixels there)")
    return plain, calib, sci, mask, info


# ---------------------------------------------------------------- SExtractor

SE_PARAMS = """NUMBER X_IMAGE Y_IMAGE XWIN_IMAGE YWIN_IMAGE FLUX_ISO FLUXERR_ISO FLUX_APER(1) FLUXERR_APER(1)
FLUX_AUTO FLUXERR_AUTO FLUX_MAX BACKGROUND ISOAREA_IMAGE A_IMAGE B_IMAGE AWIN_IMAGE BWIN_IMAGE
ISOAREAF_IMAGE FWHM_IMAGE FLUX_RADIUS ELLIPTICITY FLAGS""".split()


def gauss_conv(path, fwhm):
    """clred's matched filter: a separable Gaussian of half-width ceil(1.5 fwhm)
    (host/sources.c gaussian_factor), written as a SExtractor .conv file."""
    hw = int(math.ceil(1.5 * fwhm))
    s = fwhm / 2.354820045
    i = np.arange(-hw, hw + 1)
    g = np.exp(-0.5 * i * i / (s * s))
    k = np.outer(g, g)
    with open(path, "w") as fh:
        fh.write(f"CONV NORM\n# {2 * hw + 1}x{2 * hw + 1} Gaussian, FWHM {fwhm} px, as clred's matched filter\n")
        for row in k:
            fh.write(" ".join(f"{v:.6f}" for v in row) + "\n")


def sextractor(image, work, info):
    conv, par = os.path.join(work, "gauss.conv"), os.path.join(work, "se.param")
    gauss_conv(conv, FWHM)
    with open(par, "w") as fh:
        fh.write("\n".join(SE_PARAMS) + "\n")
    cat, bkg, rms = (os.path.join(work, n) for n in ("se.cat.fits", "se_bkg.fits", "se_rms.fits"))
    config = {
        "CATALOG_NAME": cat, "CATALOG_TYPE": "FITS_1.0", "PARAMETERS_NAME": par,
        "DETECT_TYPE": "CCD", "DETECT_MINAREA": MINAREA, "DETECT_THRESH": THRESH, "ANALYSIS_THRESH": THRESH,
        "THRESH_TYPE": "RELATIVE", "FILTER": "Y", "FILTER_NAME": conv,
        "DEBLEND_NTHRESH": 32, "DEBLEND_MINCONT": 0.005, "CLEAN": "Y", "CLEAN_PARAM": 1.0,
        # clred photometry does not replace neighbours' pixels in its apertures
        "MASK_TYPE": "NONE",
        "PHOT_APERTURES": 2 * RADIUS, "PHOT_AUTOPARAMS": "2.5,3.5", "PHOT_FLUXFRAC": 0.5,
        "SATUR_LEVEL": info["satur_level"] or 1e30, "MAG_ZEROPOINT": 25.0, "GAIN": info["gain"],
        "PIXEL_SCALE": 1.0, "SEEING_FWHM": FWHM,
        "BACK_TYPE": "AUTO", "BACK_SIZE": 64, "BACK_FILTERSIZE": 3, "BACKPHOTO_TYPE": "GLOBAL",
        "CHECKIMAGE_TYPE": "BACKGROUND,BACKGROUND_RMS", "CHECKIMAGE_NAME": f"{bkg},{rms}",
        "VERBOSE_TYPE": "QUIET", "WRITE_XML": "N", "NTHREADS": 1,
    }
    cmd = [SE_BIN, image, "-c", "/dev/null"]
    for k, v in config.items():
        cmd += [f"-{k}", str(v)]
    run(cmd, cwd=work)
    t = Table.read(cat, hdu=1)
    return t, fits.getdata(bkg).astype(float), fits.getdata(rms).astype(float), config


# ---------------------------------------------------------------- clred

def read_csv(path):
    t = Table.read(path, format="ascii.csv")
    for c in t.colnames:
        t.rename_column(c, c.lower())
    return t


def measure_seeing(clred, image, work):
    """The frame's seeing from a first clred pass with the default 3 px filter:
    both tools then filter with a Gaussian of that FWHM, as one would."""
    bkg, rms = os.path.join(work, "seeing_bkg.fits"), os.path.join(work, "seeing_rms.fits")
    run([clred, "background", image, "-o", bkg, "--rms", rms, "--overwrite"])
    out = json.loads(run([clred, "sources", image, "--bkg", bkg, "--rms", rms, "--csv",
                          os.path.join(work, "seeing_cat.csv"), "--overwrite", "--json"]))
    return round(float(out["seeing"]), 1), int(out["nseeing"])


def clred_side(clred, image, calib, se, se_bkg, work, satur_level):
    bkg, rms = os.path.join(work, "clred_bkg.fits"), os.path.join(work, "clred_rms.fits")
    run([clred, "background", image, "-o", bkg, "--rms", rms, "--box", 64, "--filter", 3, "--overwrite"])
    cat = os.path.join(work, "clred_cat.csv")
    run([clred, "sources", image, "--bkg", bkg, "--rms", rms, "--thresh", THRESH, "--minarea", MINAREA,
         "--fwhm", FWHM, "--csv", cat, "--overwrite"] +
        (["--saturation", satur_level] if satur_level else []))
    src = read_csv(cat)
    # SExtractor centres FLUX_APER on the isophotal barycentre X_IMAGE, Y_IMAGE
    # (1-based): photometry at those positions, 0-based.
    pos = os.path.join(work, "se_positions.csv")
    Table({"x": np.asarray(se["X_IMAGE"]) - 1.0, "y": np.asarray(se["Y_IMAGE"]) - 1.0}).write(
        pos, format="ascii.csv", overwrite=True)
    # (a) like for like: SExtractor's own background removed, no annulus, so
    #     only the aperture sums differ; (b) clred's defaults (annulus 8-12 px on
    #     the calibrated MEF with its VAR plane) at SExtractor's positions; (c) at
    #     clred's own detections.
    #     The MEF keeps the VAR plane, so the errors compare too. (d) A wider
    #     annulus, 15-25 px (3-5 FWHM here), away from the stars' wings.
    sub = os.path.join(work, "minus_se_bkg.fits")
    with fits.open(calib) as h:
        h[0].data = (np.asarray(h[0].data, np.float64) - se_bkg).astype(np.float32)
        h.writeto(sub, overwrite=True)
    phot = {}
    for key, img, extra in (("se_bkg_no_annulus", sub, ["--positions", pos, "--annulus", "0,0"]),
                            ("annulus_at_se", calib, ["--positions", pos]),
                            ("wide_annulus_at_se", calib, ["--positions", pos, "--annulus", "15,25"]),
                            ("annulus_own", calib, ["--detect"])):
        out = os.path.join(work, f"phot_{key}.csv")
        run([clred, "photometry", img, *extra, "--radius", RADIUS, "--csv", out, "--overwrite"])
        phot[key] = read_csv(out)
    return src, fits.getdata(bkg).astype(float), fits.getdata(rms).astype(float), phot


# ---------------------------------------------------------------- matching

def match(xa, ya, xb, yb, r=MATCH):
    """For each a, the index of the nearest b within r (else -1) and the distance."""
    if len(xb) == 0:
        return np.full(len(xa), -1), np.full(len(xa), np.inf)
    d, j = cKDTree(np.c_[xb, yb]).query(np.c_[xa, ya], distance_upper_bound=r)
    j = np.where(np.isfinite(d), j, -1)
    return j, d


def se_rms_at(rms, x, y):
    return rms[int(round(min(max(y, 0), rms.shape[0] - 1))), int(round(min(max(x, 0), rms.shape[1] - 1)))]


def either(m1, m2):
    """Matches by the first position, else by the second."""
    (j1, d1), (j2, d2) = m1, m2
    return np.where(j1 >= 0, j1, j2)


def se_flag_names(v):
    names = {1: "neighbours", 2: "blended", 4: "saturated", 8: "truncated", 16: "aper incomplete",
             32: "iso incomplete", 64: "mem overflow", 128: "extraction overflow"}
    return [n for b, n in names.items() if v & b]


def clred_flag_names(v):
    names = {1: "saturated", 2: "edge", 4: "masked", 8: "blended", 16: "moments failed", 32: "no background"}
    return [n for b, n in names.items() if v & b]


def reason(x, y, shape, se_flags, cl_flags, nn, mask, r=RADIUS, other=None, snr=None, area=None, typical=None):
    why = []
    if area is not None and typical and area > 4 * typical:
        why.append(f"large isophote ({int(area)} px, typically {typical:.0f}): a star on extended emission, "
                   "whose barycentre and windowed centroid part")
    if other is not None and other < 3.0:
        why.append(f"counterpart at {other:.2f} px: same object, centroids differ (close pair split differently)")
    h, w = shape
    if min(x, y, w - 1 - x, h - 1 - y) < r + 2:
        why.append("edge")
    why += [f"SE {n}" for n in se_flag_names(int(se_flags))] if se_flags is not None else []
    why += [f"clred {n}" for n in clred_flag_names(int(cl_flags))] if cl_flags is not None else []
    if nn is not None and nn < 2 * r:
        why.append(f"neighbour at {nn:.1f} px")
    x0, x1 = max(int(x - r), 0), min(int(x + r) + 2, w)
    y0, y1 = max(int(y - r), 0), min(int(y + r) + 2, h)
    if x1 > x0 and y1 > y0 and np.any(mask[y0:y1, x0:x1] & 0x0002):
        why.append("saturated pixels")
    if not why and snr is not None and snr < 15:
        why.append("faint: S/N near the cut, the other tool's isophote or threshold falls just short")
    return ", ".join(dict.fromkeys(why)) or "none found"


def sources_comparison(se, src, phot, se_bkg, se_rms, cl_bkg, cl_rms, mask, shape, image_minus_bkg):
    sx, sy = np.asarray(se["XWIN_IMAGE"]) - 1.0, np.asarray(se["YWIN_IMAGE"]) - 1.0
    ax, ay = np.asarray(se["X_IMAGE"]) - 1.0, np.asarray(se["Y_IMAGE"]) - 1.0
    cx, cy = np.asarray(src["x"], float), np.asarray(src["y"], float)
    se_snr = np.asarray(se["FLUX_ISO"]) / np.asarray(se["FLUXERR_ISO"])
    cl_snr = np.asarray(src["flux"]) / np.asarray(src["flux_err"])
    # SExtractor's windowed centroid of a blended source is pulled towards its
    # neighbour (its window does not leave the neighbour's pixels out; clred's
    # does), so a source matches when clred's position is within MATCH of
    # either XWIN or the isophotal barycentre X_IMAGE.
    j_se = either(match(sx, sy, cx, cy), match(ax, ay, cx, cy))   # each SE source -> clred
    j_cl = either(match(cx, cy, sx, sy), match(cx, cy, ax, ay))   # each clred source -> SE
    nn_se = cKDTree(np.c_[sx, sy]).query(np.c_[sx, sy], k=2)[0][:, 1]
    res = {"n_se": len(se), "n_clred": len(src)}
    for label, sel_se, sel_cl in (("all", np.ones(len(se), bool), np.ones(len(src), bool)),
                                  ("S/N >= 10", se_snr >= 10, cl_snr >= 10)):
        res[label] = {"se_found_by_clred": float(np.mean(j_se[sel_se] >= 0)), "n_se": int(sel_se.sum()),
                      "clred_found_by_se": float(np.mean(j_cl[sel_cl] >= 0)), "n_clred": int(sel_cl.sum())}

    m = j_se >= 0
    good = m & (se_snr >= 10)
    mi, mj = np.nonzero(good)[0], j_se[good]
    res["matched_snr10"] = int(good.sum())
    iso_blend = ((np.asarray(se["FLAGS"])[mi] & 2) != 0) | ((np.asarray(src["flags"])[mj] & 8) != 0)
    res["position"] = {}
    for label, (px, py) in (("XWIN", (sx, sy)), ("X_IMAGE", (ax, ay))):
        # pairs within MATCH of this position (the others matched by the other one)
        near = np.hypot(cx[mj] - px[mi], cy[mj] - py[mi]) < MATCH
        for sub, keep in (("all", near), ("not blended", near & ~iso_blend)):
            ddx, ddy = cx[mj][keep] - px[mi][keep], cy[mj][keep] - py[mi][keep]
            res["position"][f"{label}, {sub}"] = {
                "n": int(keep.sum()), "median_dx": float(np.median(ddx)), "median_dy": float(np.median(ddy)),
                "rms_dr": float(np.sqrt(np.mean(ddx ** 2 + ddy ** 2))), "robust_dx": robust_std(ddx),
                "robust_dy": robust_std(ddy)}

    # Shapes: clred's a, b are adaptive Gaussian moments; SExtractor's A/B_IMAGE
    # isophotal, FWHM_IMAGE from the isophotal area; 2 FLUX_RADIUS is the FWHM
    # of a Gaussian profile, the like-for-like figure.
    unflag = good & (np.asarray(se["FLAGS"]) == 0)
    ui, uj = np.nonzero(unflag)[0], j_se[unflag]
    uj_ok = np.asarray(src["flags"])[uj] == 0
    ui, uj = ui[uj_ok], uj[uj_ok]
    cf = np.asarray(src["fwhm"], float)[uj]
    awin, bwin = np.asarray(se["AWIN_IMAGE"])[ui], np.asarray(se["BWIN_IMAGE"])[ui]
    res["shape_n"] = int(len(ui))
    res["fwhm"] = {
        "clred / FWHM_IMAGE": float(np.median(cf / np.asarray(se["FWHM_IMAGE"])[ui])),
        "clred / 2 FLUX_RADIUS": float(np.median(cf / (2 * np.asarray(se["FLUX_RADIUS"])[ui]))),
        "clred / 2.3548 sqrt((AWIN^2+BWIN^2)/2)": float(np.median(cf / (2.35482 * np.sqrt(0.5 * (awin ** 2 + bwin ** 2))))),
        "robust scatter of clred / 2 FLUX_RADIUS": robust_std(cf / (2 * np.asarray(se["FLUX_RADIUS"])[ui])),
        "clred median FWHM": float(np.median(cf)), "SE median FWHM_IMAGE": float(np.median(se["FWHM_IMAGE"][ui])),
        "SE median 2 FLUX_RADIUS": float(np.median(2 * se["FLUX_RADIUS"][ui]))}
    # Bright stars (S/N >= 100): an elliptical Gaussian fit as the arbiter.
    bright = se_snr[ui] >= 100
    fit = gaussian_fits(image_minus_bkg, cx[uj][bright], cy[uj][bright])
    okf = np.isfinite(fit[:, 0])
    bi, bj = ui[bright][okf], uj[bright][okf]
    res["gauss_fit"] = {
        "n": int(okf.sum()),
        "fit ellipticity": float(np.median(fit[okf, 0])),
        "clred ellipticity": float(np.median(np.asarray(src["ellipticity"], float)[bj])),
        "SE ELLIPTICITY": float(np.median(np.asarray(se["ELLIPTICITY"])[bi])),
        "SE 1 - BWIN/AWIN": float(np.median(1 - np.asarray(se["BWIN_IMAGE"])[bi] / np.asarray(se["AWIN_IMAGE"])[bi])),
        "fit FWHM": float(np.median(fit[okf, 1])),
        "clred FWHM": float(np.median(np.asarray(src["fwhm"], float)[bj])),
        "SE FWHM_IMAGE": float(np.median(np.asarray(se["FWHM_IMAGE"])[bi])),
        "SE 2 FLUX_RADIUS": float(np.median(2 * np.asarray(se["FLUX_RADIUS"])[bi]))}
    ce = np.asarray(src["ellipticity"], float)[uj]
    res["ellipticity"] = {
        "median clred - ELLIPTICITY": float(np.median(ce - np.asarray(se["ELLIPTICITY"])[ui])),
        "robust scatter": robust_std(ce - np.asarray(se["ELLIPTICITY"])[ui]),
        "median clred - (1 - BWIN/AWIN)": float(np.median(ce - (1 - bwin / awin))),
        "robust scatter (WIN)": robust_std(ce - (1 - bwin / awin)),
        "clred median": float(np.median(ce)), "SE median": float(np.median(se["ELLIPTICITY"][ui]))}

    fiso = np.asarray(src["flux"], float)[mj] / np.asarray(se["FLUX_ISO"])[mi]
    iso_ok = (np.asarray(se["FLAGS"])[mi] == 0) & (np.asarray(src["flags"])[mj] == 0)
    npix = np.asarray(src["npix"], float)[mj]
    res["iso_flux"] = {"median ratio": float(np.median(fiso[iso_ok])), "robust scatter": robust_std(fiso[iso_ok]),
                       "median npix ratio": float(np.median((npix / np.asarray(se["ISOAREA_IMAGE"])[mi])[iso_ok])),
                       "median npix / ISOAREAF ratio": float(np.median((npix / np.asarray(se["ISOAREAF_IMAGE"])[mi])[iso_ok])),
                       "robust scatter npix / ISOAREAF": robust_std((npix / np.asarray(se["ISOAREAF_IMAGE"])[mi])[iso_ok]),
                       "n": int(iso_ok.sum())}

    # Aperture fluxes at SExtractor's positions (same order as se).
    fse, ese = np.asarray(se["FLUX_APER"], float), np.asarray(se["FLUXERR_APER"], float)
    sel = (se_snr >= 10) & (fse > 0) & (np.asarray(se["FLAGS"]) & ~np.int64(3) == 0)
    interior = (ax > RADIUS + 1) & (ay > RADIUS + 1) & (ax < shape[1] - RADIUS - 2) & (ay < shape[0] - RADIUS - 2)
    sel &= interior
    res["aperture"] = {}
    worst = {}
    for key in ("se_bkg_no_annulus", "annulus_at_se", "wide_annulus_at_se"):
        p = phot[key]
        fc = np.asarray(p["flux"], float)
        ok = sel & np.isfinite(fc) & (np.asarray(p["flags"]) & 0x20 == 0)
        ratio = fc[ok] / fse[ok]
        z = (fc[ok] - fse[ok]) / ese[ok]
        res["aperture"][key] = {"n": int(ok.sum()), "median ratio": float(np.median(ratio)),
                                "robust scatter of ratio": robust_std(ratio),
                                "median (clred - SE) / FLUXERR_APER": float(np.median(z)),
                                "robust scatter of (clred - SE) / FLUXERR_APER": robust_std(z),
                                "median FLUXERR_APER / FLUX_APER": float(np.median(ese[ok] / fse[ok])),
                                "median clred err / SE err": float(np.median(np.asarray(p["flux_err"], float)[ok] / ese[ok]))}
        idx = np.nonzero(ok)[0]
        order = np.argsort(-np.abs(z - np.median(z)))[:8]
        worst[key] = [{"x": float(ax[i]), "y": float(ay[i]), "flux_se": float(fse[i]), "flux_clred": float(fc[i]),
                       "ratio": float(fc[i] / fse[i]), "dz": float(z[o]),
                       "reason": reason(ax[i], ay[i], shape, se["FLAGS"][i], None, nn_se[i], mask) +
                       (f"; clred annulus level {float(p['bkg'][i]):.1f} vs SE map {float(se['BACKGROUND'][i]):.1f} "
                        f"({(float(p['bkg'][i]) - float(se['BACKGROUND'][i])) / float(se_rms_at(se_rms, ax[i], ay[i])):+.2f} RMS: "
                        "the annulus holds star wings or neighbours)"
                        if key != "se_bkg_no_annulus" else "")}
                      for o, i in ((o, idx[o]) for o in order)]
    # At clred's own positions, matched to SExtractor.
    p = phot["annulus_own"]
    px, py = np.asarray(p["x"], float), np.asarray(p["y"], float)
    jj = either(match(px, py, sx, sy), match(px, py, ax, ay))
    ok = (jj >= 0)
    ok[ok] &= sel[jj[ok]]
    fc = np.asarray(p["flux"], float)[ok]
    res["aperture"]["annulus_own"] = {"n": int(ok.sum()), "median ratio": float(np.median(fc / fse[jj[ok]])),
                                      "robust scatter of ratio": robust_std(fc / fse[jj[ok]]),
                                      "median (clred - SE) / FLUXERR_APER": float(np.median((fc - fse[jj[ok]]) / ese[jj[ok]])),
                                      "robust scatter of (clred - SE) / FLUXERR_APER": robust_std((fc - fse[jj[ok]]) / ese[jj[ok]])}

    # Detections one side missed, brightest first.
    miss_se = np.nonzero((j_se < 0) & (se_snr >= 10))[0]
    miss_se = miss_se[np.argsort(-se_snr[miss_se])][:10]
    tree_cl = cKDTree(np.c_[cx, cy])
    near_cl = np.minimum(tree_cl.query(np.c_[sx, sy])[0], tree_cl.query(np.c_[ax, ay])[0])
    res["missed_by_clred"] = [{"x": float(sx[i]), "y": float(sy[i]), "snr_se": float(se_snr[i]),
                               "nearest_clred_px": float(near_cl[i]),
                               "reason": reason(sx[i], sy[i], shape, se["FLAGS"][i], None, nn_se[i], mask,
                                                other=near_cl[i], snr=se_snr[i],
                                                area=se["ISOAREAF_IMAGE"][i], typical=float(np.median(se["ISOAREAF_IMAGE"])))}
                              for i in miss_se]
    miss_cl = np.nonzero((j_cl < 0) & (cl_snr >= 10))[0]
    miss_cl = miss_cl[np.argsort(-cl_snr[miss_cl])][:10]
    near_se = np.minimum(cKDTree(np.c_[sx, sy]).query(np.c_[cx, cy])[0], cKDTree(np.c_[ax, ay]).query(np.c_[cx, cy])[0])
    nn_cl = cKDTree(np.c_[cx, cy]).query(np.c_[cx, cy], k=2)[0][:, 1]
    res["missed_by_se"] = [{"x": float(cx[i]), "y": float(cy[i]), "snr_clred": float(cl_snr[i]),
                            "nearest_se_px": float(near_se[i]),
                            "reason": reason(cx[i], cy[i], shape, None, src["flags"][i], nn_cl[i], mask,
                                             other=near_se[i], snr=cl_snr[i],
                                             area=src["npix"][i], typical=float(np.median(src["npix"])))}
                           for i in miss_cl]
    res["worst_aperture"] = worst

    # Flags of the matched pairs: the same meaning on both sides.
    mi_all, mj_all = np.nonzero(j_se >= 0)[0], j_se[j_se >= 0]
    sef, clf = np.asarray(se["FLAGS"])[mi_all], np.asarray(src["flags"])[mj_all]
    res["flags"] = {}
    for name, sb, cb in (("saturated", 4, 1), ("blended", 2, 8), ("truncated / edge", 8, 2)):
        a_, b_ = (sef & sb) != 0, (clf & cb) != 0
        res["flags"][name] = {"se_bit": sb, "clred_bit": cb, "both": int((a_ & b_).sum()),
                              "se_only": int((a_ & ~b_).sum()), "clred_only": int((b_ & ~a_).sum())}

    # clred falls back to isophotal moments (flag 16) when the adaptive window
    # does not converge: how often, by S/N.
    mf = (np.asarray(src["flags"]) & 16) != 0
    res["moments_failed"] = []
    for lo, hi in ((0, 10), (10, 20), (20, 50), (50, np.inf)):
        m = (cl_snr >= lo) & (cl_snr < hi)
        res["moments_failed"].append({"snr": f"{lo}-{hi:g}", "n": int(m.sum()), "failed": int((m & mf).sum())})

    # Background and RMS maps, in units of SExtractor's RMS.
    db = (cl_bkg - se_bkg) / se_rms
    dr = (cl_rms - se_rms) / se_rms
    res["maps"] = {"background (clred - SE) / SE_RMS": pct(db), "RMS (clred - SE) / SE_RMS": pct(dr),
                   "SE global background": float(np.median(se_bkg)), "clred global background": float(np.median(cl_bkg)),
                   "SE median RMS": float(np.median(se_rms)), "clred median RMS": float(np.median(cl_rms))}
    return res


def gaussian_fits(img, xs, ys, r=10):
    """An arbiter independent of both tools: an elliptical Gaussian plus a
    constant fitted by least squares to a (2r+1)^2 box around each star.
    For a Gaussian star it gives the covariance that adaptive moments
    converge to, so its ellipticity and FWHM are the like-for-like reference."""
    from scipy.optimize import least_squares
    out = []
    for x0, y0 in zip(xs, ys):
        xi, yi = int(round(x0)), int(round(y0))
        if xi < r or yi < r or xi >= img.shape[1] - r or yi >= img.shape[0] - r:
            out.append((np.nan, np.nan))
            continue
        Y, X = np.mgrid[yi - r:yi + r + 1, xi - r:xi + r + 1]
        D = img[yi - r:yi + r + 1, xi - r:xi + r + 1]

        def resid(p):
            A, cx, cy, sxx, syy, sxy, B = p
            det = sxx * syy - sxy * sxy
            dx, dy = X - cx, Y - cy
            return (A * np.exp(-0.5 * (syy * dx * dx - 2 * sxy * dx * dy + sxx * dy * dy) / det) + B - D).ravel()

        f = least_squares(resid, [D.max(), x0, y0, 4.0, 4.0, 0.0, 0.0])
        _, _, _, sxx, syy, sxy, _ = f.x
        mean, diff = 0.5 * (sxx + syy), math.sqrt(0.25 * (sxx - syy) ** 2 + sxy ** 2)
        out.append((1 - math.sqrt((mean - diff) / (mean + diff)), 2.3548200 * math.sqrt(mean)))
    return np.array(out).reshape(-1, 2)


def pct(a):
    a = a[np.isfinite(a)]
    return {"median": float(np.median(a)), "p1": float(np.percentile(a, 1)), "p99": float(np.percentile(a, 99)),
            "max_abs": float(np.max(np.abs(a)))}


# ---------------------------------------------------------------- cosmic rays

def cosmic_case(clred, work, name, sci, gain, readnoise, satlevel, sepmed, bkg=None, var=None, files=None):
    import astroscrappy
    # astroscrappy compares satlevel with the data times the gain (electrons),
    # clred takes it in ADU and does the same product: the same cut needs
    # astroscrappy's satlevel = clred's * gain.
    kw = dict(sigclip=4.5, sigfrac=0.3, objlim=5.0, niter=4, gain=gain, readnoise=readnoise, satlevel=satlevel * gain,
              sepmed=sepmed, cleantype="medmask", fsmode="median")
    if bkg is not None:
        kw["inbkg"] = bkg
    if var is not None:
        kw["invar"] = var
    crmask, clean = astroscrappy.detect_cosmics(sci, **kw)
    crmask = crmask.astype(bool)
    out = os.path.join(work, f"cosmic_{name}_{'sepmed' if sepmed else 'median'}.fits")
    cmd = [clred, "cosmic", files["sci"], "--sigclip", 4.5, "--sigfrac", 0.3, "--objlim", 5, "--niter", 4,
           "--gain", gain, "--readnoise", readnoise, "--satlevel", satlevel, "-o", out, "--overwrite", "--json"]
    if files.get("bkg"):
        cmd += ["--bkg", files["bkg"]]
    if files.get("var"):
        cmd += ["--var", files["var"]]
    if sepmed:
        cmd.append("--sepmed")
    run(cmd)
    with fits.open(out) as h:
        csci = np.asarray(h["SCI"].data if "SCI" in h else h[0].data, dtype=np.float64)
        cmask = (np.asarray(h["MASK"].data) & 0x0004) != 0
    both = crmask & cmask
    r = {"case": name, "sepmed": sepmed, "gain": gain, "readnoise": readnoise, "satlevel": satlevel,
         "astroscrappy": int(crmask.sum()), "clred": int(cmask.sum()), "both": int(both.sum()),
         "only_astroscrappy": int((crmask & ~cmask).sum()), "only_clred": int((cmask & ~crmask).sum()),
         "max_abs_clean_diff": float(np.nanmax(np.abs(csci - clean.astype(np.float64)))),
         "max_abs_clean_diff_at_flagged": float(np.nanmax(np.abs(csci - clean)[crmask | cmask])) if (crmask | cmask).any() else 0.0}
    if name == "gmos":
        boxes = [(slice(41, 72), slice(142, 161)), (slice(117, 147), slice(35, 43))]
        inbox = np.zeros_like(crmask)
        for b in boxes:
            inbox[b] = True
        for tool, mk in (("astroscrappy", crmask), ("clred", cmask)):
            r[f"{tool}_both_known_hit"] = bool(all(mk[b].any() for b in boxes))
            r[f"{tool}_outside_known"] = int((mk & ~inbox).sum())
            r[f"{tool}_exactly_two"] = r[f"{tool}_both_known_hit"] and r[f"{tool}_outside_known"] == 0
    return r


def satlevel_units_case(plain, info, clred_out):
    """astroscrappy given clred's satlevel number unscaled (electrons read as ADU)."""
    import astroscrappy
    sci = fits.getdata(plain).astype(np.float32)
    crmask, _ = astroscrappy.detect_cosmics(sci, sigclip=4.5, sigfrac=0.3, objlim=5.0, niter=4, gain=info["gain"],
                                            readnoise=round(info["readnoise_e"], 3), satlevel=65535.0, sepmed=True,
                                            cleantype="medmask", fsmode="median")
    with fits.open(clred_out) as h:
        cmask = (np.asarray(h["MASK"].data) & 0x0004) != 0
    crmask = crmask.astype(bool)
    return {"astroscrappy": int(crmask.sum()), "clred": int(cmask.sum()),
            "only_astroscrappy": int((crmask & ~cmask).sum()), "only_clred": int((cmask & ~crmask).sum())}


def cosmic_comparison(clred, data, work, plain_cafos, cafos_info):
    g = os.path.join(data, "gmos/gmos.fits")
    with fits.open(g) as h:
        sci = np.asarray(h["SCI"].data, dtype=np.float32)
        sky = np.asarray(h["SKYFIT"].data, dtype=np.float32)
        var = np.asarray(h["VAR"].data, dtype=np.float32)
    rows = []
    files = {"sci": f"{g}[SCI]", "bkg": f"{g}[SKYFIT]", "var": f"{g}[VAR]"}
    for sepmed in (True, False):
        rows.append(cosmic_case(clred, work, "gmos", sci, 1.933, 4.24, 65536.0, sepmed, sky, var, files))
    csci = fits.getdata(plain_cafos).astype(np.float32)
    for sepmed in (True, False):
        rows.append(cosmic_case(clred, work, "cafos", csci, cafos_info["gain"], round(cafos_info["readnoise_e"], 3),
                                65535.0, sepmed, files={"sci": plain_cafos}))
    return rows


# ---------------------------------------------------------------- report

def markdown(R):
    L = []
    a = L.append
    v = R["versions"]
    a(f"# clred against SExtractor and astroscrappy on real frames — {R['device']['name']}, {R['date']}\n")
    a(f"clred {v['clred']}, **SExtractor {v['sextractor']}** (Debian package `source-extractor` "
      f"{v['sextractor_deb']}), **astroscrappy {v['astroscrappy']}**, numpy {v['numpy']}, astropy {v['astropy']}. "
      f"Made by `bench/compare/run` in {R['seconds']:.0f} s.\n")
    c = R["cafos"]
    s = R["sources"]
    a("## Summary\n")
    pw, ap, mp = s["position"]["XWIN, not blended"], s["aperture"]["se_bkg_no_annulus"], s["maps"]
    cos = R["cosmic"]
    a(f"- Detection: clred finds {100 * s['S/N >= 10']['se_found_by_clred']:.1f} % of SExtractor's "
      f"{s['S/N >= 10']['n_se']} sources with S/N ≥ 10 ({100 * s['all']['se_found_by_clred']:.1f} % of all "
      f"{s['n_se']}); SExtractor finds {100 * s['S/N >= 10']['clred_found_by_se']:.1f} % of clred's "
      f"{s['S/N >= 10']['n_clred']} ({100 * s['all']['clred_found_by_se']:.1f} % of all {s['n_clred']}). "
      "The rest are blends split differently, a star on extended emission, the frame edge and sources at the S/N cut.")
    a(f"- Windowed centroids (unblended, S/N ≥ 10, n = {pw['n']}): median offset ({pw['median_dx']:+.4f}, "
      f"{pw['median_dy']:+.4f}) px after the 1-pixel origin shift, robust scatter {pw['robust_dx']:.4f} / "
      f"{pw['robust_dy']:.4f} px.")
    a(f"- Aperture sums (r = {RADIUS:g} px, same positions and background): median ratio {ap['median ratio']:.5f}, "
      f"robust scatter {ap['robust scatter of ratio']:.5f} = {ap['robust scatter of (clred - SE) / FLUXERR_APER']:.3f} σ; "
      f"errors agree to {abs(1 - ap['median clred err / SE err']) * 100:.1f} %. Isophotal fluxes: median ratio "
      f"{s['iso_flux']['median ratio']:.4f}.")
    g = s["gauss_fit"]
    a(f"- Shapes of the {g['n']} brightest unflagged stars: ellipticity clred {g['clred ellipticity']:.4f}, an elliptical "
      f"Gaussian fit {g['fit ellipticity']:.4f}, SExtractor {g['SE ELLIPTICITY']:.4f} (isophotal) / {g['SE 1 - BWIN/AWIN']:.4f} "
      f"(windowed, diluted by its circular window); FWHM clred {g['clred FWHM']:.2f} px, fit {g['fit FWHM']:.2f}, "
      f"FWHM_IMAGE {g['SE FWHM_IMAGE']:.2f}.")
    a(f"- Background map within {mp['background (clred - SE) / SE_RMS']['max_abs']:.3f} RMS of SExtractor's everywhere "
      f"(99 % within {max(abs(mp['background (clred - SE) / SE_RMS']['p1']), abs(mp['background (clred - SE) / SE_RMS']['p99'])):.3f}); "
      f"RMS map within {100 * mp['RMS (clred - SE) / SE_RMS']['max_abs']:.2f} %.")
    a(f"- clred's default photometry annulus (8–12 px) sits in the wings of this frame's stars (FWHM "
      f"{s['fwhm']['clred median FWHM']:.1f} px): fluxes {100 * (1 - s['aperture']['annulus_at_se']['median ratio']):.1f} % "
      f"below FLUX_APER (median), against {100 * (1 - s['aperture']['wide_annulus_at_se']['median ratio']):.1f} % with a 15–25 px annulus.")
    a("- Cosmic rays: " + "; ".join(
        f"{r['case']} sepmed={r['sepmed']}: {r['clred']} vs {r['astroscrappy']} pixels, {r['only_clred'] + r['only_astroscrappy']} differ"
        for r in cos) + ". Largest difference of a repaired value: " +
      f"{max(r['max_abs_clean_diff_at_flagged'] for r in cos):.3g}. GMOS with separable medians: exactly the two known "
      "cosmic rays flagged by " + ", ".join(t for t in ("astroscrappy", "clred")
                                            if all(r[f"{t}_exactly_two"] for r in cos if r["case"] == "gmos" and r["sepmed"]))
      + ".\n")
    a("## Frame\n")
    a(f"{c['frame']}, calibrated by clred (master bias of the two biases, V dome flat uamA_0048, "
      f"`--saturation 65535`). Gain {c['gain']} e-/ADU from the photon transfer of the 60 s frames 0032/0033 in 32 px boxes "
      f"(sky {c['sky_adu']:.0f} ADU), read noise {c['readnoise_adu']:.2f} ADU = {c['readnoise_e']:.2f} e- from "
      "the two biases (the files carry neither). "
      f"The bottom {c['rows_cropped']} rows hold the frame's {c['nan_pixels_full_frame']} NO_DATA (NaN) pixels, "
      "where the flat is below its floor; SExtractor has no notion of NaN, so both tools read the "
      f"{c['shape'][1]}×{c['shape'][0]} float32 SCI pixels above them (identical files); positions below are "
      f"0-based in that cut (add {c['rows_cropped']} to y for the full frame). "
      f"{c['saturated_pixels']} saturated pixels remain.\n")
    a("Settings shared: 64 px boxes, 3×3 mesh filter, threshold 1.5 × per-pixel RMS on the filtered image, "
      f"5 px minimum area, Gaussian filter of FWHM {FWHM} px (the seeing clred measures on this frame with its default "
      f"3 px filter, from {c['seeing_stars']} stars) on clred's {2 * math.ceil(1.5 * FWHM) + 1}² support, "
      f"aperture radius {RADIUS} px (SExtractor `PHOT_APERTURES {2 * RADIUS:g}`, a diameter). Not alike by design: "
      "SExtractor deblends with 32 thresholds and MINCONT 0.005 (flux fraction) and cleans; clred splits peaks whose "
      "drop to the saddle exceeds 0.2 of their height. `MASK_TYPE NONE` (clred does not replace neighbours' pixels). "
      "Positions: SExtractor is 1-based, clred 0-based (pixel centres on integers): x_clred = X_IMAGE − 1.\n")
    a("## Detection\n")
    a(f"SExtractor {s['n_se']} sources, clred {s['n_clred']} (matched: the nearest clred source within {MATCH} px of SExtractor's XWIN_IMAGE, else of its X_IMAGE; "
      "the windowed centroid of a SExtractor blend is pulled towards its neighbour).\n")
    a("| sample | SExtractor sources | found by clred | clred sources | found by SExtractor |")
    a("|---|---|---|---|---|")
    for k in ("all", "S/N >= 10"):
        d = s[k]
        a(f"| {k} (isophotal S/N) | {d['n_se']} | {100 * d['se_found_by_clred']:.1f} % | {d['n_clred']} | "
          f"{100 * d['clred_found_by_se']:.1f} % |")
    a("")
    a(f"## Positions ({s['matched_snr10']} matched sources with S/N ≥ 10; clred's windowed centroid)\n")
    a("| against SExtractor's (− 1), sources | n | median Δx | median Δy | robust σ Δx | robust σ Δy | rms Δr |")
    a("|---|---|---|---|---|---|---|")
    for k, d in s["position"].items():
        a(f"| {k} | {d['n']} | {d['median_dx']:+.4f} | {d['median_dy']:+.4f} | {d['robust_dx']:.4f} | {d['robust_dy']:.4f} | {d['rms_dr']:.4f} |")
    a("\nEach row takes the pairs within 1.5 px of that position. 'Not blended': neither SExtractor (FLAGS 2) nor clred (flag 8) split the source. XWIN_IMAGE is the like-for-like "
      "position (both windowed); X_IMAGE is the isophotal barycentre.")
    a("")
    a(f"## Shapes ({s['shape_n']} matched, S/N ≥ 10, unflagged on both sides)\n")
    a("clred's FWHM is 2.3548 √((a²+b²)/2) from adaptive Gaussian-windowed moments (the Gaussian-equivalent width); "
      "SExtractor's FWHM_IMAGE comes from the isophotal area, A/B_IMAGE and ELLIPTICITY from isophotal moments, "
      "AWIN/BWIN from moments inside a fixed Gaussian window (not corrected for it). For a Gaussian profile "
      "2 × FLUX_RADIUS (half-light radius) equals the FWHM: that is the like-for-like width.\n")
    a("| quantity | value |")
    a("|---|---|")
    for k, val in s["fwhm"].items():
        a(f"| FWHM: {k} | {f(val)} |")
    for k, val in s["ellipticity"].items():
        a(f"| ellipticity: {k} | {f(val)} |")
    a("")
    g = s["gauss_fit"]
    a(f"The arbiter, on the {g['n']} of them with S/N ≥ 100: an elliptical Gaussian fitted by least squares (scipy) to "
      "a 21×21 box, whose covariance is what adaptive moments converge to for a Gaussian star.\n")
    a("| median of | Gaussian fit | clred | SExtractor isophotal | SExtractor windowed |")
    a("|---|---|---|---|---|")
    a(f"| ellipticity | {g['fit ellipticity']:.4f} | {g['clred ellipticity']:.4f} | {g['SE ELLIPTICITY']:.4f} (ELLIPTICITY) | "
      f"{g['SE 1 - BWIN/AWIN']:.4f} (1 − BWIN/AWIN) |")
    a(f"| FWHM (px) | {g['fit FWHM']:.3f} | {g['clred FWHM']:.3f} | {g['SE FWHM_IMAGE']:.3f} (FWHM_IMAGE) | "
      f"{g['SE 2 FLUX_RADIUS']:.3f} (2 FLUX_RADIUS) |")
    a("\nSExtractor's windowed ellipticity is diluted by its circular window (about halved when the window matches "
      "the star, as here) and its windowed axes shrink by about √2 (the AWIN row above); its isophotal ellipticity "
      "is weighted towards the rounder wings. clred's adaptive moments "
      + ("match the fit" if abs(g['clred ellipticity'] - g['fit ellipticity']) < 0.005
         and abs(g['clred FWHM'] / g['fit FWHM'] - 1) < 0.03 else "DIFFER from the fit")
      + f" (ellipticity {g['clred ellipticity'] - g['fit ellipticity']:+.4f}, FWHM ×{g['clred FWHM'] / g['fit FWHM']:.3f}; "
      "the Gaussian misses the wings of the real profile).\n")
    a("## Fluxes\n")
    d = s["iso_flux"]
    a(f"Isophotal flux, clred flux / FLUX_ISO, {d['n']} matched unflagged sources with S/N ≥ 10: median "
      f"{d['median ratio']:.4f}, robust scatter {d['robust scatter']:.4f}; isophote area ratio (npix / ISOAREA_IMAGE) "
      f"median {d['median npix ratio']:.3f}, against the filtered-image area ISOAREAF_IMAGE (the pixel set both "
      f"tools sum) {d['median npix / ISOAREAF ratio']:.4f} (robust scatter {d['robust scatter npix / ISOAREAF']:.4f}); "
      "ISOAREA_IMAGE counts only the pixels above the threshold in the unfiltered image. The isophotes differ in background (each tool's own map) and "
      "deblending.\n")
    a(f"Aperture flux, r = {RADIUS} px, against FLUX_APER (SExtractor's global background map subtracted), "
      "sources with S/N ≥ 10, SExtractor FLAGS ≤ 3, aperture inside the frame:\n")
    a("| clred photometry | n | median ratio | robust σ of ratio | median Δ/σ_SE | robust σ of Δ/σ_SE | clred err / SE err |")
    a("|---|---|---|---|---|---|---|")
    names = {"se_bkg_no_annulus": "at SE positions, SE background removed, no annulus (aperture sums only)",
             "annulus_at_se": "at SE positions, clred's default 8–12 px annulus",
             "wide_annulus_at_se": "at SE positions, 15–25 px annulus",
             "annulus_own": "at clred's own detections, default annulus"}
    for k, d in s["aperture"].items():
        a(f"| {names[k]} | {d['n']} | {d['median ratio']:.5f} | {d['robust scatter of ratio']:.5f} | "
          f"{d['median (clred - SE) / FLUXERR_APER']:+.4f} | {d['robust scatter of (clred - SE) / FLUXERR_APER']:.4f} | "
          f"{f(d.get('median clred err / SE err'))} |")
    a("")
    a("Δ/σ_SE is (clred − SExtractor) / FLUXERR_APER: both tools sum the same pixels, so the scatter should be far "
      "below 1 when the backgrounds agree; the annulus rows measure how much a local annulus background moves "
      "fluxes relative to the mesh map.\n")
    m = s["maps"]
    a("## Background and RMS maps (every pixel, in units of SExtractor's BACKGROUND_RMS)\n")
    a("| map | median | 1 % | 99 % | max abs |")
    a("|---|---|---|---|---|")
    for k in ("background (clred - SE) / SE_RMS", "RMS (clred - SE) / SE_RMS"):
        d = m[k]
        a(f"| {k} | {d['median']:+.4f} | {d['p1']:+.4f} | {d['p99']:+.4f} | {d['max_abs']:.4f} |")
    a(f"\nMedian background: SExtractor {m['SE global background']:.2f}, clred {m['clred global background']:.2f} ADU; "
      f"median RMS: SExtractor {m['SE median RMS']:.3f}, clred {m['clred median RMS']:.3f} ADU.\n")
    a("## Flags of the matched sources\n")
    a("| flag | SExtractor bit | clred bit | both | SExtractor only | clred only |")
    a("|---|---|---|---|---|---|")
    for k, d in s["flags"].items():
        a(f"| {k} | {d['se_bit']} | {d['clred_bit']} | {d['both']} | {d['se_only']} | {d['clred_only']} |")
    a("\nSaturation: both at the lowest calibrated value of a SATURATED pixel (`SATUR_LEVEL`, `--saturation`). "
      "Edge: SExtractor's 8 is an isophote touching the frame border, clred's 2 likewise. Blending differs by "
      "design (multi-threshold with a flux-fraction contrast against a saddle drop of 0.2 of the peak).\n")
    a("## clred's adaptive moments\n")
    a("clred sources whose adaptive moments did not converge (flag 16: isophotal centroid and shape reported), by "
      "clred's isophotal S/N: " + ", ".join(f"S/N {d['snr']}: {d['failed']} of {d['n']}" for d in s["moments_failed"]) +
      ". They are faint sources whose window keeps growing (noise-dominated), single sharp pixels (cosmic "
      "rays: the window collapses) and a few that converge only after the 60-iteration cap; SExtractor's fixed "
      "window has no such failure.\n")
    a("## Outliers\n")
    a("SExtractor sources with S/N ≥ 10 that clred did not find within 1.5 px (brightest first):\n")
    a("| x | y | S/N | nearest clred (px) | why |")
    a("|---|---|---|---|---|")
    for o in s["missed_by_clred"]:
        a(f"| {o['x']:.1f} | {o['y']:.1f} | {o['snr_se']:.0f} | {o['nearest_clred_px']:.2f} | {o['reason']} |")
    a("\nclred sources with S/N ≥ 10 that SExtractor did not find:\n")
    a("| x | y | S/N | nearest SE (px) | why |")
    a("|---|---|---|---|---|")
    for o in s["missed_by_se"]:
        a(f"| {o['x']:.1f} | {o['y']:.1f} | {o['snr_clred']:.0f} | {o['nearest_se_px']:.2f} | {o['reason']} |")
    for k, rows in s["worst_aperture"].items():
        a(f"\nLargest aperture-flux differences ({names[k]}); x, y 0-based:\n")
        a("| x | y | FLUX_APER | clred | ratio | Δ/σ_SE | why |")
        a("|---|---|---|---|---|---|---|")
        for o in rows:
            a(f"| {o['x']:.1f} | {o['y']:.1f} | {o['flux_se']:.1f} | {o['flux_clred']:.1f} | {o['ratio']:.4f} | "
              f"{o['dz']:+.2f} | {o['reason']} |")
    a("\n## Cosmic rays: clred cosmic against astroscrappy.detect_cosmics\n")
    a("Same parameters on both: sigclip 4.5, sigfrac 0.3, objlim 5, niter 4, cleantype medmask, fsmode median. "
      "satlevel in ADU for clred, satlevel × gain (electrons) for astroscrappy, the same cut. "
      "GMOS: SCI with inbkg = SKYFIT, invar = VAR, gain 1.933, read noise 4.24, satlevel 65536 ADU. CAFOS: the calibrated "
      f"uamA_0031 SCI (ADU), gain {c['gain']}, read noise {c['readnoise_e']:.3f} e-, satlevel 65535 ADU, noise from the data.\n")
    a("| frame | sepmed | astroscrappy | clred | both | only astroscrappy | only clred | max abs Δ clean (flagged) | max abs Δ clean (all) | both known CRs, nothing else |")
    a("|---|---|---|---|---|---|---|---|---|---|")
    for r in R["cosmic"]:
        known = (f"astroscrappy {'yes' if r['astroscrappy_exactly_two'] else 'no'} ({r['astroscrappy_outside_known']} px outside), "
                 f"clred {'yes' if r['clred_exactly_two'] else 'no'} ({r['clred_outside_known']} px outside)"
                 if r["case"] == "gmos" else "–")
        a(f"| {r['case']} | {r['sepmed']} | {r['astroscrappy']} | {r['clred']} | {r['both']} | {r['only_astroscrappy']} | "
          f"{r['only_clred']} | {r['max_abs_clean_diff_at_flagged']:.3g} | {r['max_abs_clean_diff']:.3g} | {known} |")
    a("")
    a("'Max abs Δ clean (all)' is astroscrappy's float32 round trip (it multiplies by the gain and divides back, "
      "also for pixels it leaves alone); clred leaves them untouched. With astroscrappy's satlevel given the same "
      f"number as clred's (electrons read as ADU), astroscrappy flags {R['cosmic_satlevel_units']['astroscrappy']} "
      f"pixels on CAFOS (sepmed) against clred's {R['cosmic_satlevel_units']['clred']} "
      f"({R['cosmic_satlevel_units']['only_astroscrappy']} only by astroscrappy). At this gain (> 1) that cut is "
      "lower and masks more; with a gain below 1 it rises above the saturated star cores, which astroscrappy then "
      "flags as cosmic rays: mind the units when comparing.\n")
    if R.get("notes"):
        a("## Notes\n")
        for n in R["notes"]:
            a(f"- {n}")
        a("")
    return "\n".join(L) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clred", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--notes", default="", help="file of extra notes (one a line) for the report")
    a = ap.parse_args()
    t0 = datetime.datetime.now()
    os.makedirs(a.work, exist_ok=True)
    os.makedirs(a.results, exist_ok=True)
    slug, dev = device_slug(a.clred)
    se_version = run([SE_BIN, "-v"]).strip()
    deb = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "source-extractor"], capture_output=True, text=True)
    versions = {"clred": run([a.clred, "--version"]).split()[-1], "sextractor": se_version.split("version")[-1].strip(),
                "sextractor_deb": deb.stdout.strip() or "?", "astroscrappy": md.version("astroscrappy"),
                "numpy": np.__version__, "astropy": md.version("astropy"), "scipy": md.version("scipy")}
    plain, calib, sci, mask, info = calibrate(a.clred, a.data, a.work)
    global FWHM
    FWHM, info["seeing_stars"] = measure_seeing(a.clred, plain, a.work)
    info["filter_fwhm"] = FWHM
    log(f"seeing {FWHM} px: the matched filter of both tools")
    se, se_bkg, se_rms, config = sextractor(plain, a.work, info)
    src, cl_bkg, cl_rms, phot = clred_side(a.clred, plain, calib, se, se_bkg, a.work, info["satur_level"])
    sources = sources_comparison(se, src, phot, se_bkg, se_rms, cl_bkg, cl_rms, mask, sci.shape,
                                 sci.astype(np.float64) - cl_bkg)
    cosmic = cosmic_comparison(a.clred, a.data, a.work, plain, info)
    units = satlevel_units_case(plain, info, os.path.join(a.work, "cosmic_cafos_sepmed.fits"))
    date = datetime.date.today().isoformat()
    # file names only: the work directory is a temporary one
    config = {k: (",".join(os.path.basename(x) for x in v.split(",")) if isinstance(v, str) and "/" in v else v)
              for k, v in config.items()}
    R = {"date": date, "device": dev, "versions": versions, "cafos": info, "sextractor_config": config,
         "sources": sources, "cosmic": cosmic, "cosmic_satlevel_units": units, "seconds": (datetime.datetime.now() - t0).total_seconds(),
         "notes": [l.strip() for l in open(a.notes)] if a.notes and os.path.exists(a.notes) else []}
    base = os.path.join(a.results, f"compare-{slug}-{date}")
    with open(base + ".json", "w") as fh:
        json.dump(R, fh, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o))
    with open(base + ".md", "w") as fh:
        fh.write(markdown(R))
    print(base + ".md")


if __name__ == "__main__":
    main()
