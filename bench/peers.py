#!/usr/bin/env python3
"""Times the peers on the frames that `clred-bench gen` wrote and that
`clred-bench run` has just reduced, and checks that each peer's output agrees
with clred's, so that a fast wrong answer cannot win.

    bench/.venv/bin/python bench/peers.py --clred-json DIR/clred.json --out DIR/peers.json

Peers (all single-threaded, as they ship):
  median    numpy.median (memory), ccdproc Combiner.median_combine (memory),
            a numpy/astropy script (files in, file out)
  sigclip   astropy sigma_clip + mean (memory), ccdproc Combiner.sigma_clipping
            + average_combine (memory), a numpy/astropy script (files)
  calibrate ccdproc.ccd_process and plain numpy (memory), a numpy/astropy
            script (files)
  register  skimage phase_cross_correlation on pair_ref / pair_mov
  cosmic    astroscrappy.detect_cosmics on single.fits
  background SEP Background and photutils Background2D on single.fits
  photometry photutils aperture_photometry + ApertureStats (clipped annulus
            median) at clred's 10,000 positions on pair_ref.fits
  copy      numpy.copyto of 256 MiB (host memory bandwidth)

A peer that would need more memory than is available, or that would take
far too long on this machine, is skipped with the reason recorded.
"""
import argparse
import json
import os
import sys
import time
import warnings

import numpy as np
from astropy.io import fits

warnings.filterwarnings("ignore")

# Bytes of memory each peer needs per stack value, measured roughly on numpy
# 2 / astropy 8 / ccdproc 2.5 (cube + temporaries); used to skip a peer that
# would push the machine into swap or the OOM killer.
BYTES_PER_VALUE = {"numpy": 12, "astropy": 24, "ccdproc": 40}
# Stack values above which a peer is skipped as too slow for one benchmark run
# (ccdproc's median of 20 x 2048^2 takes tens of seconds on one core).
MAX_VALUES = {"numpy": 5e8, "astropy": 5e8, "ccdproc": 1.0e8}


def mem_available():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


def best_time(fn, repeat):
    """Best wall time of fn() and its last result. A slow first call is the
    measurement (repeating it would cost minutes); a fast one is a warm-up."""
    t0 = time.perf_counter()
    result = fn()
    first = time.perf_counter() - t0
    if first > 20.0 or repeat <= 0:
        return first, result, 1
    times = []
    runs = repeat if first < 2.0 else 1
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    if first >= 2.0:
        times.append(first)
    return min(times), result, len(times)


def best_time_cpu(fn, repeat):
    """best_time, and the process CPU seconds (all threads) of the best run."""
    runs = []

    def timed():
        c0, t0 = time.process_time(), time.perf_counter()
        result = fn()
        runs.append((time.perf_counter() - t0, time.process_time() - c0))
        return result

    t, result, n = best_time(timed, repeat)
    return t, result, n, min(runs)[1]


def native(a):
    """FITS data are big-endian; a tuned script converts once to native float32."""
    return np.asarray(a, dtype=np.float32)


def read_sci(path):
    with fits.open(path, memmap=False) as h:
        return native(h[0].data)


def compare(ref, got, rtol, atol, max_fraction=0.0):
    """How far got (the peer) is from ref (clred): max |d|, max |d|/|ref|, and
    the number of pixels beyond atol + rtol*|ref|. They agree when at most
    max_fraction of the pixels are beyond it and NaNs match."""
    ref = np.asarray(ref, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    if ref.shape != got.shape:
        return {"agree": False, "reason": f"shape {got.shape} vs clred {ref.shape}"}
    nan_mismatch = np.isnan(ref) != np.isnan(got)
    both = np.isfinite(ref) & np.isfinite(got)
    d = np.abs(ref - got)
    d[~both] = 0.0
    rel = d / np.maximum(np.abs(ref), 1e-30)
    beyond = (d > atol + rtol * np.abs(ref)) | nan_mismatch
    n_beyond = int(beyond.sum())
    return {
        "max_abs": float(d.max()),
        "max_rel": float(rel[both].max()) if both.any() else 0.0,
        "n_beyond": n_beyond,
        "fraction_beyond": n_beyond / ref.size,
        "nan_mismatch": int(nan_mismatch.sum()),
        "rtol": rtol,
        "atol": atol,
        "agree": n_beyond <= max_fraction * ref.size,
    }


class Peers:
    def __init__(self, args):
        with open(args.clred_json) as f:
            self.clred = json.load(f)
        self.dir = self.clred["dir"]
        self.out = args.work or self.clred["out"]
        os.makedirs(self.out, exist_ok=True)
        self.size = self.clred["size"]
        self.depth = self.clred["depth"]
        self.ncal = self.clred["ncal"]
        self.repeat = args.repeat
        self.values = self.size * self.size * self.depth
        self.results = []
        self.outputs = {(r["step"], r["mode"]): r.get("output", "") for r in self.clred["results"]}
        self.raw = [os.path.join(self.dir, f"raw_{i:03d}.fits") for i in range(self.depth)]
        # the first ten raw frames as 16-bit integers too: the calibration's files-in input
        self.raw16 = [os.path.join(self.dir, f"rawu16_{i:03d}.fits") for i in range(min(self.depth, 10))]

    # -- bookkeeping

    def record(self, step, mode, tool, wall=None, runs=0, agreement=None, note="", skipped=None):
        entry = {"step": step, "mode": mode, "tool": tool, "wall_s": wall, "runs": runs, "note": note}
        if agreement is not None:
            entry["agreement"] = agreement
        if skipped:
            entry["skipped"] = skipped
        self.results.append(entry)
        status = f"skipped: {skipped}" if skipped else f"{wall:9.4f} s"
        if agreement is not None:
            verdict = agreement.get("agree")
            status += {True: "  agrees", False: "  DISAGREES", None: "  not judged"}[verdict]
            if "max_abs" in agreement:
                status += f" (max abs {agreement['max_abs']:.3g}, {agreement['n_beyond']} beyond tolerance)"
            elif agreement.get("reason"):
                status += f" ({agreement['reason']})"
        if note:
            status += f"  [{note}]"
        print(f"  {step:10s} {mode:7s} {tool:34s} {status}", file=sys.stderr)

    def skip_reason(self, family, values=None):
        values = self.values if values is None else values
        need = values * BYTES_PER_VALUE[family]
        if need > 0.7 * mem_available():
            return f"needs ~{need / 2**30:.1f} GiB, {mem_available() / 2**30:.1f} GiB available"
        if values > MAX_VALUES[family]:
            return f"{values:.2g} stack values: too slow for this machine (limit {MAX_VALUES[family]:.2g})"
        return None

    def clred_sci(self, step, mode="files"):
        path = self.outputs.get((step, mode), "")
        if not path or not os.path.exists(path):
            return None
        return read_sci(path)

    def agreement(self, step, got, rtol, atol, max_fraction=0.0, note=None):
        ref = self.clred_sci(step)
        if ref is None:
            return {"agree": None, "reason": f"clred produced no {step} output in this run"}
        a = compare(ref, got, rtol, atol, max_fraction)
        if note:
            a["note"] = note
        return a

    # -- stacks

    def load_cube(self):
        return np.stack([read_sci(p) for p in self.raw])

    def stacks(self):
        skip_np, skip_ap, skip_cp = self.skip_reason("numpy"), self.skip_reason("astropy"), self.skip_reason("ccdproc")
        if skip_np and skip_ap and skip_cp:
            for step, tool in (("median", "numpy.median"), ("sigclip", "astropy sigma_clip")):
                self.record(step, "memory", tool, skipped=skip_np)
            return
        cube = self.load_cube()
        scale = float(np.nanmedian(cube[0]))
        # Median: the same float32 values, or the mean of two of them: within
        # a few float32 ulps (2^-23 relative) of each other.
        med_tol = dict(rtol=4 * 2.0**-23, atol=1e-6 * scale)
        # Sigma-clipped mean: float32 sums vs clred's double accumulation
        # differ by ~1e-6 relative; a value sitting exactly on a clipping
        # threshold may fall either side with a float vs double std, so up to
        # 1e-4 of the pixels may differ by one value's share of the mean.
        clip_tol = dict(rtol=1e-5, atol=1e-5 * scale, max_fraction=1e-4)
        if skip_np:
            self.record("median", "memory", "numpy.median", skipped=skip_np)
        else:
            t, med, n = best_time(lambda: np.median(cube, axis=0), self.repeat)
            self.record("median", "memory", "numpy.median", t, n, self.agreement("median", med, **med_tol))
            del med
        if skip_ap:
            self.record("sigclip", "memory", "astropy sigma_clip", skipped=skip_ap)
        else:
            from astropy.stats import sigma_clip

            def clip():
                c = sigma_clip(cube, sigma_lower=3, sigma_upper=3, maxiters=10, cenfunc="median", stdfunc="std",
                               axis=0, masked=True)
                return c.mean(axis=0).filled(np.nan)

            t, mean, n = best_time(clip, self.repeat)
            self.record("sigclip", "memory", "astropy sigma_clip", t, n, self.agreement("sigclip", mean, **clip_tol))
            del mean
        if skip_cp:
            self.record("median", "memory", "ccdproc median_combine", skipped=skip_cp)
            self.record("sigclip", "memory", "ccdproc sigma_clipping", skipped=skip_cp)
        else:
            self.ccdproc_stacks(cube, med_tol)
        del cube

    def ccdproc_stacks(self, cube, med_tol):
        import ccdproc
        from astropy.nddata import CCDData

        ccds = [CCDData(frame, unit="adu") for frame in cube]

        def median():
            return np.asarray(ccdproc.Combiner(ccds).median_combine().data)

        t, med, n = best_time(median, self.repeat)
        self.record("median", "memory", "ccdproc median_combine", t, n, self.agreement("median", med, **med_tol))

        def clipped():
            c = ccdproc.Combiner(ccds)
            c.sigma_clipping(low_thresh=3, high_thresh=3, func="median", dev_func="std")
            return np.asarray(c.average_combine().data)

        t, mean, n = best_time(clipped, self.repeat)
        # ccdproc clips once: its sigma_clipping passes maxiters to astropy
        # twice when given, so it cannot iterate; its result differs from a
        # clipping to convergence wherever a second pass would reject more.
        a = self.agreement("sigclip", mean, rtol=1e-5, atol=1e-5 * float(np.nanmedian(cube[0])), max_fraction=1.0,
                           note="ccdproc clips once; clred to convergence: differences expected, not judged")
        a["agree"] = None
        self.record("sigclip", "memory", "ccdproc sigma_clipping", t, n, a, note="one clipping pass")

    def stack_script(self, step):
        """The script a person would write: read every file, combine, write."""
        out = os.path.join(self.out, f"numpy_{step}.fits")

        def run():
            cube = np.stack([native(fits.getdata(p)) for p in self.raw])
            if step == "median":
                result = np.median(cube, axis=0)
            else:
                from astropy.stats import sigma_clip

                result = sigma_clip(cube, sigma=3, maxiters=10, cenfunc="median", stdfunc="std", axis=0,
                                    masked=True).mean(axis=0).filled(np.nan).astype(np.float32)
            fits.writeto(out, result, overwrite=True)
            return result

        return run

    def stack_files(self):
        family = {"median": "numpy", "sigclip": "astropy"}
        for step in ("median", "sigclip"):
            tool = "numpy/astropy script"
            reason = self.skip_reason(family[step])
            if reason:
                self.record(step, "files", tool, skipped=reason)
                continue
            t, result, n = best_time(self.stack_script(step), self.repeat)
            scale = float(np.nanmedian(result))
            tol = dict(rtol=4 * 2.0**-23, atol=1e-6 * scale) if step == "median" else \
                dict(rtol=1e-5, atol=1e-5 * scale, max_fraction=1e-4)
            self.record(step, "files", tool, t, n, self.agreement(step, result, **tol))

    # -- calibration

    def masters(self):
        return [read_sci(os.path.join(self.dir, f"{m}.fits")) for m in ("bias", "dark", "flat")]

    def calibrate(self):
        reason = self.skip_reason("numpy", self.size * self.size * self.ncal)
        if reason:
            for mode, tool in (("memory", "numpy"), ("memory", "ccdproc ccd_process"), ("files", "numpy/astropy script")):
                self.record("calibrate", mode, tool, skipped=reason)
            return
        # the 16-bit raw frames, as clred-bench reads them (the float ones beyond ten)
        raw_paths = (self.raw16 + self.raw[len(self.raw16):])[: self.ncal]
        exptime = float(fits.getheader(raw_paths[0])["EXPTIME"])
        bias, dark, flat = self.masters()
        raws = [read_sci(p) for p in raw_paths]
        # float32 arithmetic on values of up to ~6e4 ADU vs clred's: a few
        # float32 ulps of the raw values, 1e-5 of the sky level is ample.
        scale = float(np.median(raws[0]))
        tol = dict(rtol=1e-5, atol=1e-5 * scale)

        def numpy_cal():
            return [(r - bias - dark * np.float32(exptime)) / flat for r in raws]

        t, out, n = best_time(numpy_cal, self.repeat)
        self.record("calibrate", "memory", "numpy", t, n, self.agreement("calibrate", out[0], **tol),
                     note=f"{self.ncal} frames")
        reason = self.skip_reason("ccdproc", self.size * self.size * self.ncal)
        if reason:
            self.record("calibrate", "memory", "ccdproc ccd_process", skipped=reason)
        else:
            import astropy.units as u
            import ccdproc
            from astropy.nddata import CCDData

            cb, cd, cf = (CCDData(a, unit="adu") for a in (bias, dark, flat))
            ccds = [CCDData(r, unit="adu") for r in raws]

            def ccdproc_cal():
                return [ccdproc.ccd_process(c, master_bias=cb, dark_frame=cd, master_flat=cf,
                                            dark_exposure=1 * u.s, data_exposure=exptime * u.s, dark_scale=True)
                        for c in ccds]

            t, out, n = best_time(ccdproc_cal, self.repeat)
            self.record("calibrate", "memory", "ccdproc ccd_process", t, n,
                        self.agreement("calibrate", np.asarray(out[0].data), **tol), note=f"{self.ncal} frames")
        del out

        def script():
            b, d, f = (native(fits.getdata(os.path.join(self.dir, f"{m}.fits"))) for m in ("bias", "dark", "flat"))
            first = None
            for i, path in enumerate(self.raw16[: self.ncal]):
                with fits.open(path) as h:
                    t_exp = float(h[0].header["EXPTIME"])
                    cal = (native(h[0].data) - b - d * np.float32(t_exp)) / f
                fits.writeto(os.path.join(self.out, f"numpy_cal_{i:03d}.fits"), cal, overwrite=True)
                if first is None:
                    first = cal
            return first

        t, first, n, cpu = best_time_cpu(script, self.repeat)
        self.record("calibrate", "files", "numpy/astropy script", t, n, self.agreement("calibrate", first, **tol),
                     note=f"{len(self.raw16[: self.ncal])} 16-bit frames; {cpu:.3f} CPU s")

    # -- single-frame steps (clred's own versions plug in when they land)

    def single_frames(self):
        ref = read_sci(os.path.join(self.dir, "pair_ref.fits"))
        mov_path = os.path.join(self.dir, "pair_mov.fits")
        mov = read_sci(mov_path)
        hdr = fits.getheader(mov_path)
        from skimage.registration import phase_cross_correlation

        t, res, n = best_time(lambda: phase_cross_correlation(ref, mov, upsample_factor=100), self.repeat)
        shift = res[0]  # (dy, dx) that registers mov onto ref: minus the true offset
        err = float(np.hypot(shift[0] + hdr["SHIFTY"], shift[1] + hdr["SHIFTX"]))
        self.record("register", "memory", "skimage phase_cross_correlation", t, n,
                    self.register_agreement(shift, err), note=f"upsample 100 (0.01 px); error vs the true shift {err:.4f} px")
        self.register_stack(ref, mov, hdr)

        single_path = os.path.join(self.dir, "single.fits")
        single = read_sci(single_path)
        self.stats(single, single_path)
        self.cosmic(single, single_path)
        self.background(single, single_path)
        self.detect(os.path.join(self.dir, "pair_ref.fits"))
        self.photometry()

    def register_stack(self, ref, mov, hdr, frames=20):
        """Per-frame time over a stack of `frames` (pair_mov each time, as
        clred-bench's register-stack row), the reference's spectrum reused as
        clred reuses its own: scikit-image takes spectra with space='fourier',
        so each frame costs its forward FFT and the correlation."""
        import scipy.fft
        from skimage.registration import phase_cross_correlation

        ref_f = scipy.fft.fftn(ref)

        def stack():
            for _ in range(frames):
                r = phase_cross_correlation(ref_f, scipy.fft.fftn(mov), upsample_factor=100, space="fourier")
            return r

        t, res, n = best_time(stack, self.repeat)
        shift = res[0]
        err = float(np.hypot(shift[0] + hdr["SHIFTY"], shift[1] + hdr["SHIFTX"]))
        self.record("register-stack", "memory", "skimage phase_cross_correlation", t / frames, n,
                    self.register_agreement(shift, err, "register-stack"),
                    note=f"per frame of {frames}, reference spectrum reused (space='fourier'); upsample 100; "
                         f"error vs the true shift {err:.4f} px")

    def register_agreement(self, skimage_shift, skimage_err, step="register"):
        """Both must find the true shift to 0.02 px (the issue's accuracy) and
        agree with each other to 0.02 px; "to 0.02" includes 0.02 itself
        (scikit-image's 0.01 px grid often lands two steps off)."""
        path = self.outputs.get((step, "memory"), "")
        if not path or not os.path.exists(path):
            return {"agree": None, "reason": "clred produced no register output in this run"}
        with open(path) as f:
            c = json.load(f)
        clred_err = float(np.hypot(c["dx"] - c["true_dx"], c["dy"] - c["true_dy"]))
        between = float(np.hypot(c["dx"] + skimage_shift[1], c["dy"] + skimage_shift[0]))
        tol = 0.02 + 1e-6
        return {"agree": bool(clred_err <= tol and skimage_err <= tol and between <= tol),
                "clred_error_px": clred_err, "peer_error_px": skimage_err, "difference_px": between}

    def cosmic(self, single, path):
        """astroscrappy with the settings clred_cosmic reproduces (true
        medians, cleantype 'medmask'): the flagged pixels must match."""
        import astroscrappy

        kw = dict(gain=1.0, readnoise=5.0, sigclip=4.5, sigfrac=0.3, objlim=5.0, niter=4, sepmed=False,
                  cleantype="medmask")
        t, res, n = best_time(lambda: astroscrappy.detect_cosmics(single, **kw), self.repeat)
        self.record("cosmic", "memory", "astroscrappy detect_cosmics", t, n, self.cosmic_agreement(res),
                    note=f"{int(res[0].sum())} pixels flagged; sepmed=False, medmask")
        out = os.path.join(self.out, "astroscrappy.fits")

        def files():
            r = astroscrappy.detect_cosmics(native(fits.getdata(path)), **kw)
            fits.HDUList([fits.PrimaryHDU(r[1]), fits.ImageHDU(r[0].astype(np.uint8), name="CRMASK")]).writeto(
                out, overwrite=True)
            return r

        t, res, n = best_time(files, self.repeat)
        self.record("cosmic", "files", "astroscrappy detect_cosmics", t, n, self.cosmic_agreement(res),
                    note=f"{int(res[0].sum())} pixels flagged")

        # astroscrappy's default: separable medians
        kw["sepmed"] = True
        t, res, n = best_time(lambda: astroscrappy.detect_cosmics(single, **kw), self.repeat)
        self.record("cosmic-sepmed", "memory", "astroscrappy detect_cosmics", t, n,
                    self.cosmic_agreement(res, ("cosmic-sepmed", "memory")),
                    note=f"{int(res[0].sum())} pixels flagged; sepmed=True (its default), medmask")

    def cosmic_agreement(self, res, key=("cosmic", "files")):
        """The same pixels flagged (at most 0.1% of them may differ, for
        float rounding on a threshold), and the repaired values within 1e-5."""
        path = self.outputs.get(key, "")
        if not path or not os.path.exists(path):
            return {"agree": None, "reason": "clred produced no cosmic-ray output in this run"}
        with fits.open(path) as h:
            sci = native(h[0].data)
            mask = np.asarray(h["MASK"].data) & 0x0004 != 0
        flagged = res[0].astype(bool)
        differ = int(np.sum(mask != flagged))
        a = compare(sci, res[1], rtol=1e-5, atol=1e-5 * float(np.median(np.abs(sci))),
                    max_fraction=max(1, 0.001 * flagged.sum()) / sci.size)
        a.update({"clred_flagged": int(mask.sum()), "peer_flagged": int(flagged.sum()), "mask_differ": differ})
        a["agree"] = bool(a["agree"] and differ <= max(1, 0.001 * flagged.sum()))
        return a

    def cosmic_only(self):
        path = os.path.join(self.dir, "single.fits")
        self.cosmic(read_sci(path), path)

    def background_only(self):
        path = os.path.join(self.dir, "single.fits")
        self.background(read_sci(path), path)

    def background(self, single, path):
        """SEP's mesh background (64 px boxes, 3x3 filter), as clred_background."""
        import sep

        def sep_bkg(d):
            b = sep.Background(d, bw=64, bh=64, fw=3, fh=3)
            return b.back(), b.rms(), b.globalrms

        t, res, n = best_time(lambda: sep_bkg(single), self.repeat)
        self.record("background", "memory", "SEP Background", t, n, self.background_agreement(res),
                    note="mesh 64, filter 3")
        out = os.path.join(self.out, "sep_background.fits")

        def files():
            r = sep_bkg(native(fits.getdata(path)))
            fits.HDUList([fits.PrimaryHDU(r[0]), fits.ImageHDU(r[1], name="RMS")]).writeto(out, overwrite=True)
            return r

        t, res, n = best_time(files, self.repeat)
        self.record("background", "files", "SEP Background", t, n, self.background_agreement(res),
                    note="mesh 64, filter 3")
        from photutils.background import Background2D, MedianBackground

        t, res, n = best_time(lambda: Background2D(single, (64, 64), filter_size=(3, 3),
                                                   bkg_estimator=MedianBackground()), self.repeat)
        self.record("background", "memory", "photutils Background2D", t, n,
                    {"agree": None, "reason": "a median estimator and another interpolation: not compared"},
                    note="mesh 64, filter 3, MedianBackground")

    def background_agreement(self, res):
        """SEP uses the same estimator and spline, but a box whose clipping
        or mode-versus-median choice (|mean - median| / std < 0.3) falls the
        other way on rounding moves the spline around it: 99% of the pixels
        must agree to 1% of the global RMS, and all to 5% (far below any
        effect on photometry)."""
        path = self.outputs.get(("background", "files"), "")
        if not path or not os.path.exists(path):
            return {"agree": None, "reason": "clred produced no background in this run"}
        with fits.open(path) as h:
            bkg = native(h[0].data)
            rms = native(h["RMS"].data)
        a = compare(bkg, res[0], rtol=0.0, atol=0.01 * res[2], max_fraction=0.01)
        r = compare(rms, res[1], rtol=0.0, atol=0.01 * res[2], max_fraction=0.01)
        a["rms_max_abs"] = r["max_abs"]
        a["global_rms"] = float(res[2])
        a["agree"] = bool(a["agree"] and r["agree"] and max(a["max_abs"], r["max_abs"]) <= 0.05 * res[2])
        return a

    def photometry(self):
        """photutils on clred's 10,000 positions (stars + random, all with
        their annulus inside the frame): CircularAperture r = 5 summed with
        method='exact', CircularAnnulus 8..12 through ApertureStats with a
        3-sigma clipped median (5 iterations, population std: clred's
        clipping), flux = sum - median * area, as clred_aperture_photometry."""
        from photutils.aperture import ApertureStats, CircularAnnulus, CircularAperture, aperture_photometry
        from astropy.stats import SigmaClip

        frame = os.path.join(self.dir, "pair_ref.fits")
        positions = os.path.join(self.out, "phot_positions.csv")
        if not os.path.exists(positions):
            self.record("photometry", "memory", "photutils", skipped="clred wrote no positions in this run")
            return
        data = read_sci(frame)
        xy = np.loadtxt(positions, delimiter=",", skiprows=1)
        clip = SigmaClip(sigma=3.0, maxiters=5, cenfunc="median", stdfunc="std")

        def phot(d):
            aper = CircularAperture(xy, r=5.0)
            ann = CircularAnnulus(xy, r_in=8.0, r_out=12.0)
            total = aperture_photometry(d, aper, method="exact")["aperture_sum"]
            bkg = ApertureStats(d, ann, sigma_clip=clip).median
            return np.asarray(total) - np.asarray(bkg) * aper.area, np.asarray(bkg)

        t, res, n = best_time(lambda: phot(data), self.repeat)
        note = f"{len(xy)} positions, r 5, annulus 8-12, exact"
        self.record("photometry", "memory", "photutils aperture + ApertureStats", t, n,
                    self.photometry_agreement(res), note=note)
        out = os.path.join(self.out, "photutils_photometry.csv")

        def files():
            d = native(fits.getdata(frame))
            flux, bkg = phot(d)
            np.savetxt(out, np.column_stack([xy, flux, bkg]), delimiter=",", header="x,y,flux,bkg", comments="")
            return flux, bkg

        t, res, n = best_time(files, self.repeat)
        self.record("photometry", "files", "photutils aperture + ApertureStats", t, n,
                    self.photometry_agreement(res), note=note)

    def photometry_agreement(self, res):
        """Fluxes per position: |photutils - clred| below 1e-4 of the flux or
        1e-3 of clred's error. The same pixels and the same clipping give the
        same median; the exact overlaps agree to ~1e-12; clred's float32
        output rounds the flux to ~6e-8 relative."""
        path = self.outputs.get(("photometry", "files"), "")
        if not path or not os.path.exists(path):
            return {"agree": None, "reason": "clred produced no photometry in this run"}
        cat = np.atleast_1d(np.genfromtxt(path, delimiter=",", names=True))
        flux, bkg = res
        if len(cat) != len(flux):
            return {"agree": False, "reason": f"{len(flux)} photutils fluxes, {len(cat)} clred rows"}
        d = np.abs(flux - cat["FLUX"])
        ok = (d <= 1e-4 * np.abs(cat["FLUX"])) | (d <= 1e-3 * cat["FLUX_ERR"])
        n_beyond = int(np.sum(~ok))
        return {"max_abs": float(np.max(d)), "max_rel": float(np.max(d / np.maximum(np.abs(cat["FLUX"]), 1e-30))),
                "max_in_errors": float(np.max(d / cat["FLUX_ERR"])), "n_beyond": n_beyond,
                "bkg_max_abs": float(np.max(np.abs(bkg - cat["BKG"]))), "rtol": 1e-4, "atol": 0.0,
                "agree": n_beyond == 0}

    def detect(self, path):
        """SEP's background and extraction at clred's defaults (1.5 x RMS, 5
        pixels), in memory and file in to catalog out."""
        import sep

        data = read_sci(path)

        def extract(d):
            bkg = sep.Background(d)
            return sep.extract(d - bkg, 1.5, err=bkg.globalrms, minarea=5), bkg.globalrms

        t, (objects, rms), n = best_time(lambda: extract(data), self.repeat)
        agreement = self.detect_agreement(objects, rms)
        agreement.update(self.winpos_agreement(data))
        self.record("detect", "memory", "SEP Background + extract", t, n, agreement,
                    note=f"{len(objects)} sources")
        out = os.path.join(self.out, "sep_sources.csv")

        def files():
            objs, _ = extract(native(fits.getdata(path)))
            np.savetxt(out, np.column_stack([objs["x"], objs["y"], objs["flux"]]), delimiter=",",
                       header="x,y,flux", comments="")
            return objs

        t, objects, n = best_time(files, self.repeat)
        self.record("detect", "files", "SEP Background + extract", t, n, self.detect_agreement(objects, rms),
                    note=f"{len(objects)} sources")

    def detect_agreement(self, objects, rms):
        """Different detectors split and merge faint sources differently, so
        only the clear ones are judged: every SEP source peaking above 20x the
        RMS must have a clred source within 1 px (both 0-based, pixel centres
        on integers); at least 95% of them must."""
        path = self.outputs.get(("detect", "files"), "")
        if not path or not os.path.exists(path):
            return {"agree": None, "reason": "clred produced no catalog in this run"}
        cat = np.genfromtxt(path, delimiter=",", names=True)
        cat = np.atleast_1d(cat)
        bright = objects[objects["peak"] > 20 * rms]
        if len(bright) == 0 or len(cat) == 0:
            return {"agree": len(bright) == 0, "clred_sources": int(len(cat)), "sep_sources": int(len(objects))}
        d = np.hypot(bright["x"][:, None] - cat["X"][None, :], bright["y"][:, None] - cat["Y"][None, :]).min(axis=1)
        matched = float(np.mean(d <= 1.0))
        return {"agree": matched >= 0.95, "clred_sources": int(len(cat)), "sep_sources": int(len(objects)),
                "sep_bright": int(len(bright)), "bright_matched_fraction": matched,
                "median_offset_px": float(np.median(d)), "max_abs": float(np.median(d)), "n_beyond": int(np.sum(d > 1.0)),
                "note": "max_abs here: the median distance of matched bright sources, px"}

    def winpos_agreement(self, data):
        """clred's positions are SExtractor's windowed centroids (XWIN) with
        the window sigma FWHM / 2.3548: sep.winpos from clred's position with
        the same sigma, on SEP's background-subtracted frame, for clred's
        unflagged sources with S/N >= 100. The two differ in the background
        (SEP's mesh vs clred's global level) and in the pixels of neighbours
        (clred leaves them out of the window)."""
        import sep

        path = self.outputs.get(("detect", "files"), "")
        if not path or not os.path.exists(path):
            return {}
        cat = np.atleast_1d(np.genfromtxt(path, delimiter=",", names=True))
        good = cat[(cat["FLAGS"] == 0) & (cat["FLUX"] >= 100 * cat["FLUX_ERR"])]
        if len(good) == 0:
            return {"winpos_n": 0}
        bkg = sep.Background(data)
        xw, yw, _ = sep.winpos(data - bkg, good["X"], good["Y"], good["FWHM"] / 2.3548200450309493)
        d = np.hypot(xw - good["X"], yw - good["Y"])
        return {"winpos_n": int(len(good)), "winpos_median_px": float(np.median(d)),
                "winpos_p90_px": float(np.percentile(d, 90)),
                "winpos_rms_axis_px": float(np.sqrt(np.mean(d ** 2) / 2))}

    def stats(self, single, single_path):
        from astropy.stats import sigma_clipped_stats

        kw = dict(sigma=3, maxiters=5, cenfunc="median", stdfunc="std")
        t, res, n = best_time(lambda: sigma_clipped_stats(single, **kw), self.repeat)
        self.record("stats", "memory", "astropy sigma_clipped_stats", t, n, self.stats_agreement(res))
        t, res, n = best_time(lambda: sigma_clipped_stats(native(fits.getdata(single_path)), **kw), self.repeat)
        self.record("stats", "files", "astropy sigma_clipped_stats", t, n, self.stats_agreement(res))

    def stats_agreement(self, res):
        """mean, median, std against clred's: the same pixels kept give the
        same median exactly and mean/std to float32 summation (~1e-6)."""
        path = self.outputs.get(("stats", "files"), "")
        if not path or not os.path.exists(path):
            return {"agree": None, "reason": "clred produced no stats output in this run"}
        with open(path) as f:
            ref = json.load(f)
        got = dict(zip(("mean", "median", "std"), (float(v) for v in res)))
        rel = {k: abs(got[k] - ref[k]) / max(abs(ref[k]), 1e-30) for k in got}
        return {"max_abs": max(abs(got[k] - ref[k]) for k in got), "max_rel": max(rel.values()),
                "n_beyond": sum(r > 1e-5 for r in rel.values()), "rtol": 1e-5, "atol": 0.0,
                "agree": all(r <= 1e-5 for r in rel.values()), "peer": got, "clred": ref}

    def host_copy(self):
        src = np.ones(64 << 20, dtype=np.float32)
        dst = np.empty_like(src)
        t, _, n = best_time(lambda: np.copyto(dst, src), max(self.repeat, 3))
        self.record("copy", "host", "numpy.copyto", t, n, note=f"{2 * src.nbytes / t / 1e9:.1f} GB/s (256 MiB)")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clred-json", required=True, help="the JSON clred-bench run wrote")
    p.add_argument("--out", required=True, help="JSON to write")
    p.add_argument("--work", help="where the peers write their files (default: clred's output folder)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--steps", default="copy,stacks,stackfiles,calibrate,single",
                   help="comma-separated: copy, stacks, stackfiles, calibrate, single (register, stats, "
                        "cosmic, background, detect, photometry), background, detect, photometry, cosmic")
    args = p.parse_args()
    peers = Peers(args)
    print(f"peers: {peers.depth} x {peers.size}^2 ({peers.values:.3g} values)", file=sys.stderr)
    steps = {"copy": peers.host_copy, "stacks": peers.stacks, "stackfiles": peers.stack_files,
             "calibrate": peers.calibrate, "single": peers.single_frames,
             "background": peers.background_only,
             "detect": lambda: peers.detect(os.path.join(peers.dir, "pair_ref.fits")), "photometry": peers.photometry, "cosmic": peers.cosmic_only}
    for name in args.steps.split(","):
        if name not in steps:
            p.error(f"unknown step {name}")
        steps[name]()
    import importlib.metadata as md

    versions = {}
    for name in ("numpy", "astropy", "ccdproc", "astroscrappy", "sep", "photutils", "scikit-image"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    doc = {"tool": "peers.py", "size": peers.size, "depth": peers.depth, "ncal": peers.ncal,
           "python": sys.version.split()[0], "versions": versions, "results": peers.results}
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1)


if __name__ == "__main__":
    main()
