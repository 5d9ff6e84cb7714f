"""clred's aperture and PSF photometry against photutils' on the same drawn
frame and positions: a field of Gaussian stars with known fluxes, sky and an
exact variance plane. Apertures: the same exact-overlap aperture and clipped
annulus median, so the fluxes agree to float precision. PSF fits: clred fits
flux, position and a constant sky in a disc; photutils (PSFPhotometry with
the same pixel PSF as an ImagePSF) fits flux and position after a local
annulus background: both unbiased against the truth, and their magnitudes
agree to a small fraction of the errors (median difference and scatter
printed)."""
import math

import numpy as np
import pytest

import clred

photutils = pytest.importorskip("photutils")
from astropy.stats import SigmaClip  # noqa: E402
from photutils.aperture import ApertureStats, CircularAnnulus, CircularAperture, aperture_photometry  # noqa: E402
from photutils.background import LocalBackground, MedianBackground  # noqa: E402
from photutils.psf import ImagePSF, PSFPhotometry  # noqa: E402

SIGMA, SKY, RN, SIZE = 1.6, 100.0, 5.0, 192


def _pixel_gauss(dx, dy):
    """A unit Gaussian integrated over pixels at offsets dx, dy (arrays)."""
    s = SIGMA * math.sqrt(2.0)
    erf = np.vectorize(math.erf)
    gx = 0.5 * (erf((dx + 0.5) / s) - erf((dx - 0.5) / s))
    gy = 0.5 * (erf((dy + 0.5) / s) - erf((dy - 0.5) / s))
    return gx * gy


@pytest.fixture(scope="module")
def field():
    rng = np.random.default_rng(15)
    xs, ys = [], []
    while len(xs) < 45:  # 14 px apart, 16 px from the edges
        x, y = rng.uniform(16, SIZE - 17, 2)
        if all((x - a) ** 2 + (y - b) ** 2 > 14 ** 2 for a, b in zip(xs, ys)):
            xs.append(x), ys.append(y)
    x, y = np.array(xs), np.array(ys)
    flux = 10 ** rng.uniform(3.3, 4.7, len(x))
    model = np.full((SIZE, SIZE), SKY)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    for xi, yi, fi in zip(x, y, flux):
        cx, cy = int(round(xi)), int(round(yi))
        sl = (slice(cy - 10, cy + 11), slice(cx - 10, cx + 11))
        model[sl] += fi * _pixel_gauss(xx[sl] - xi, yy[sl] - yi)
    var = model + RN ** 2
    sci = model + np.sqrt(var) * rng.standard_normal(model.shape)
    half = 10
    g = np.arange(-half, half + 1, dtype=float)
    psf = _pixel_gauss(g[None, :], g[:, None])
    return sci.astype(np.float32), var.astype(np.float32), x, y, flux, psf / psf.sum()


def _robust(d):
    med = float(np.median(d))
    return med, float(1.4826 * np.median(np.abs(d - med)))


def test_aperture_matches_photutils(ctx, field):
    sci, var, x, y, flux, _ = field
    ours = ctx.photometry(clred.Image(sci, var=var), x, y, radius=5, annulus=(10, 15))
    pos = np.column_stack([x, y])
    ap, ann = CircularAperture(pos, r=5), CircularAnnulus(pos, r_in=10, r_out=15)
    bkg = ApertureStats(sci, ann, sigma_clip=SigmaClip(sigma=3.0, maxiters=5)).median
    theirs = aperture_photometry(sci, ap, error=np.sqrt(var), method="exact")
    f = np.asarray(theirs["aperture_sum"]) - bkg * ap.area
    d = -2.5 * np.log10(ours["flux"] / f)
    med, scatter = _robust(d)
    print(f"aperture: clred - photutils median {med:+.6f} mag, scatter {scatter:.6f} mag over {len(d)}")
    # float32 sums against photutils' double: far below the errors
    assert np.all(np.abs(ours["flux"] - f) <= 1e-3 * ours["flux_err"])
    # clred's error adds the annulus median's (area^2 pi/2 rms^2 / n) to the sum's
    theirs_err = np.asarray(theirs["aperture_sum_err"])
    assert np.all((ours["flux_err"] >= theirs_err * 0.999) & (ours["flux_err"] < 1.2 * theirs_err))


def test_psf_matches_photutils_and_truth(ctx, field):
    sci, var, x, y, flux, psf = field
    ours = ctx.psf_photometry(clred.Image(sci, var=var), psf, x, y, fit_radius=5)
    assert np.all(ours["flags"] == 0)
    phot = PSFPhotometry(ImagePSF(psf), (11, 11), aperture_radius=5,
                         local_bkg_estimator=LocalBackground(10, 15, bkg_estimator=MedianBackground()))
    from astropy.table import Table
    res = phot(sci, error=np.sqrt(var), init_params=Table({"x": x, "y": y, "flux": flux}))
    theirs = np.asarray(res["flux_fit"], float)
    d = -2.5 * np.log10(ours["flux"] / theirs)
    med, scatter = _robust(d)
    zc = (ours["flux"] - flux) / ours["flux_err"]
    zp = (theirs - flux) / np.asarray(res["flux_err"], float)
    print(f"\nPSF: clred - photutils median {med:+.5f} mag, scatter {scatter:.5f} mag over {len(d)}; pulls against "
          f"the truth: clred {zc.mean():+.2f} +- {zc.std():.2f}, photutils {zp.mean():+.2f} +- {zp.std():.2f}")
    # both unbiased against the truth (45 stars: the pulls' mean has a
    # standard error of 0.15), with errors that describe their scatter
    assert abs(zc.mean()) < 0.5 and 0.7 < zc.std() < 1.35
    assert abs(zp.mean()) < 0.5
    # the two fits of the same pixels differ by much less than their errors
    sig = 1.0857 * ours["flux_err"] / ours["flux"]
    assert abs(med) < 0.5 * np.median(sig)
    assert scatter < 0.6 * np.median(sig)
    # positions: clred's fitted positions within their errors of the truth
    r = np.hypot((ours["x"] - x) / ours["x_err"], (ours["y"] - y) / ours["y_err"])
    assert np.mean(r ** 2) / 2 < 1.6
