"""Each binding against the clred CLI on the same simulated frames."""
import json

import numpy as np
import pytest

import clred
from conftest import assert_same, sorted_glob


def planes_equal(img, path):
    ref = clred.read(path)
    assert_same(img.data, ref.data)
    for p in ("var", "mask"):
        if getattr(ref, p) is not None:
            assert_same(getattr(img, p), getattr(ref, p))


def test_stats_matches_cli(ctx, cli, night):
    f = sorted_glob(night, "sci_*.fits")[0]
    got = ctx.stats(f, section="[11:80,5:70]", sigma=2.5, iters=7, mad=True)
    ref = json.loads(cli("stats", "--json", "--section", "[11:80,5:70]", "--sigma", "2.5", "--iters", "7", "--mad",
                         f).stdout)
    ref = ref["files"][0]
    for k in ("mean", "median", "std", "mad", "npix"):
        assert got[k] == pytest.approx(ref[k], rel=1e-6), k
    # the array route: the same numbers from the pixels in numpy
    arr = clred.read(f).data
    assert ctx.stats(arr, section="[11:80,5:70]", sigma=2.5, iters=7, mad=True) == got


@pytest.mark.parametrize("args", [dict(method="median"), dict(method="mean"),
                                  dict(method="mean", reject="sigclip", sigma_low=2.5, sigma_high=3, scale="mult")])
def test_combine_matches_cli(ctx, cli, night, tmp_path, args):
    files = sorted_glob(night, "flat_*.fits")
    flags = []
    for k, v in args.items():
        flags += ["--" + k.replace("_", "-"), str(v)]
    cli("combine", *flags, *files, "-o", tmp_path / "c.fits")
    ref = clred.read(tmp_path / "c.fits")
    by_path = ctx.combine(files, **args)
    assert_same(by_path.data, ref.data)
    assert_same(by_path.var, ref.var)
    # numpy arrays and device images: the device route, the same pixels
    arrays = [clred.read(f).data for f in files]
    assert_same(ctx.combine(arrays, **args).data, ref.data)
    dev = ctx.combine([ctx.upload(a) for a in arrays], **args)
    assert isinstance(dev, clred.DeviceImage)
    assert_same(dev.download().data, ref.data)
    assert dev.info["ncontrib"].download().data.max() == len(files)


def test_masters_and_calibrate_match_cli(ctx, cli, night, tmp_path):
    bias_f, dark_f, flat_f, sci_f = (sorted_glob(night, p + "_*.fits") for p in ("bias", "dark", "flat", "sci"))
    cli("master-bias", *bias_f, "-o", tmp_path / "b.fits")
    cli("master-dark", "--bias", tmp_path / "b.fits", *dark_f, "-o", tmp_path / "d.fits")
    cli("master-flat", "--bias", tmp_path / "b.fits", "--dark", tmp_path / "d.fits", *flat_f, "-o", tmp_path / "f.fits")
    cli("calibrate", "--bias", tmp_path / "b.fits", "--dark", tmp_path / "d.fits", "--flat", tmp_path / "f.fits",
        sci_f[0], "-o", tmp_path / "c.fits")
    bias = ctx.master_bias(bias_f)
    planes_equal(bias, tmp_path / "b.fits")
    dark = ctx.master_dark(dark_f, bias=bias)
    planes_equal(dark, tmp_path / "d.fits")
    flat = ctx.master_flat(flat_f, bias=bias, dark=dark)
    planes_equal(flat, tmp_path / "f.fits")
    cal = ctx.calibrate(sci_f[0], bias=bias, dark=dark, flat=flat)
    planes_equal(cal, tmp_path / "c.fits")
    # masters kept on the device: device images out, the same pixels
    db = ctx.master_bias([ctx.read(f) for f in bias_f])
    assert isinstance(db, clred.DeviceImage)
    cal_dev = ctx.calibrate([ctx.read(f) for f in sci_f], bias=db, dark=ctx.upload(dark), flat=ctx.upload(flat))
    planes_equal(cal_dev[0].download(), tmp_path / "c.fits")


@pytest.fixture(scope="module")
def calibrated(ctx, cli, night, tmp_path_factory):
    """The night's science frames calibrated by the CLI (bias and flat)."""
    t = tmp_path_factory.mktemp("cal")
    cli("master-bias", *sorted_glob(night, "bias_*.fits"), "-o", t / "b.fits")
    cli("master-flat", "--bias", t / "b.fits", *sorted_glob(night, "flat_*.fits"), "-o", t / "f.fits")
    (t / "cal").mkdir()
    cli("calibrate", "--bias", t / "b.fits", "--flat", t / "f.fits", *sorted_glob(night, "sci_*.fits"),
        "-o", t / "cal")
    return sorted_glob(t / "cal", "*.fits")


def test_background_matches_cli(ctx, cli, calibrated, tmp_path):
    f = calibrated[0]
    cli("background", f, "--box", "16", "-o", tmp_path / "bkg.fits", "--rms", tmp_path / "rms.fits",
        "--subtract", tmp_path / "sub.fits")
    bk = ctx.background(f, box=16)
    assert_same(bk.background, clred.read(tmp_path / "bkg.fits").data)
    assert_same(bk.rms, clred.read(tmp_path / "rms.fits").data)
    sub = ctx.subtract_background(clred.read(f), box=16)
    planes_equal(sub, tmp_path / "sub.fits")


def test_cosmic_matches_cli(ctx, cli, calibrated, tmp_path):
    f = calibrated[1]
    cli("cosmic", f, "--sigclip", "5", "--niter", "2", "--gain", "1.5", "--readnoise", "6", "-o", tmp_path / "cr.fits")
    img = clred.read(f)
    before = img.data.copy()
    got = ctx.cosmic(img, sigclip=5, niter=2, gain=1.5, readnoise=6)
    planes_equal(got, tmp_path / "cr.fits")
    assert_same(img.data, before)  # the input is left alone
    assert got.info["ncosmic"] == int(np.count_nonzero(got.mask & clred.MASK_COSMIC_RAY))


def test_sources_and_photometry_match_cli(ctx, cli, calibrated, tmp_path):
    f = calibrated[0]
    cli("sources", f, "--thresh", "3", "-o", tmp_path / "s.fits", "--csv", tmp_path / "s.csv")
    ref = np.genfromtxt(tmp_path / "s.csv", delimiter=",", names=True)
    cat = ctx.sources(f, thresh=3)
    assert len(cat) == len(ref) > 5
    for k in ("x", "y", "flux", "fwhm"):
        np.testing.assert_allclose(cat[k], ref[k.upper()], rtol=1e-8)
    np.savetxt(tmp_path / "pos.csv", np.c_[cat["x"], cat["y"]], delimiter=",", header="x,y", comments="")
    cli("photometry", f, "--positions", tmp_path / "pos.csv", "--radius", "4", "--annulus", "7,11",
        "-o", tmp_path / "p.fits", "--csv", tmp_path / "p.csv")
    pref = np.genfromtxt(tmp_path / "p.csv", delimiter=",", names=True)
    phot = ctx.photometry(f, positions=cat, radius=4, annulus=(7, 11))
    for k in ("flux", "flux_err", "bkg", "mag"):
        np.testing.assert_allclose(phot[k], pref[k.upper()], rtol=1e-8)


def test_register_and_stack_match_cli(ctx, cli, calibrated, tmp_path):
    cli("register", *calibrated, "--table", tmp_path / "t.csv")
    t = np.genfromtxt(tmp_path / "t.csv", delimiter=",", names=True, dtype=None, encoding="utf-8")
    sh = ctx.register(calibrated)
    np.testing.assert_allclose(sh["dx"], t["dx"], atol=1e-5)
    np.testing.assert_allclose(sh["dy"], t["dy"], atol=1e-5)
    cli("combine", "--align", "--method", "median", *calibrated, "-o", tmp_path / "st.fits")
    ref = clred.read(tmp_path / "st.fits")
    st = ctx.stack(calibrated, method="median")
    assert_same(st.data, ref.data)
    # device frames: the same stack without leaving the device
    dst = ctx.stack([ctx.read(f) for f in calibrated], method="median")
    assert_same(dst.download().data, ref.data, rtol=1e-6)
    assert len(st.info["shifts"]) == len(calibrated)


def test_resample_integer_shift_is_exact(ctx):
    a = np.arange(48 * 40, dtype=np.float32).reshape(40, 48)
    out = ctx.resample(a, shift=(3, 2), interp="nearest")
    assert_same(out.data[2:, 3:], a[:-2, :-3])
    assert np.all(out.mask[:2, :] & clred.MASK_NO_DATA)
    # a Lanczos shift there and back on the device keeps a smooth image
    y, x = np.mgrid[0:40, 0:48]
    smooth = (100 + 10 * np.sin(x / 7.0) * np.cos(y / 9.0)).astype(np.float32)
    d = ctx.resample(ctx.resample(ctx.upload(smooth), shift=(0.4, -0.3)), shift=(-0.4, 0.3))
    np.testing.assert_allclose(d.download().data[8:-8, 8:-8], smooth[8:-8, 8:-8], rtol=2e-3)
