"""astropy CCDData / NDData in and out: variance, mask bits and header kept."""
import numpy as np
import pytest

import clred
from conftest import assert_same

astropy = pytest.importorskip("astropy")
from astropy.io import fits  # noqa: E402
from astropy.nddata import CCDData, NDData, StdDevUncertainty, VarianceUncertainty  # noqa: E402


def frame(seed=0, shape=(40, 56)):
    rng = np.random.default_rng(seed)
    data = rng.normal(500, 10, shape).astype(np.float32)
    var = np.full(shape, 100, dtype=np.float32)
    mask = np.zeros(shape, dtype=np.uint16)
    mask[5, 7] = clred.MASK_BAD
    mask[9, 9] = clred.MASK_SATURATED
    hdr = fits.Header()
    hdr["OBJECT"] = "NGC 2420"
    hdr["EXPTIME"] = 30.0
    hdr["HISTORY"] = "made by a test"
    return data, var, mask, hdr


def test_ccddata_round_trip_through_the_device(ctx):
    data, var, mask, hdr = frame()
    ccd = CCDData(data, unit="adu", uncertainty=VarianceUncertainty(var), mask=mask != 0, flags=mask, meta=hdr)
    back = ctx.upload(ccd).download().to_ccddata()
    assert isinstance(back, CCDData)
    assert_same(back.data, data)
    assert isinstance(back.uncertainty, VarianceUncertainty)
    assert_same(back.uncertainty.array, var)
    assert_same(back.flags, mask)  # clred's bits
    assert_same(back.mask, mask != 0)  # astropy's boolean: both bits are unusable ones
    assert back.header["OBJECT"] == "NGC 2420" and back.header["EXPTIME"] == 30.0
    assert "made by a test" in str(back.header["HISTORY"])


def test_a_step_gives_back_what_it_was_given(ctx):
    data, var, mask, hdr = frame()
    # a plain boolean mask (no flags): True becomes BAD
    frames = [CCDData(data + i, unit="adu", uncertainty=VarianceUncertainty(var), mask=mask != 0, meta=hdr)
              for i in range(3)]
    out = ctx.combine(frames, method="mean")
    assert isinstance(out, CCDData) and out.unit == "adu"
    # the masked pixel is left out of every frame: NO_DATA in the result
    assert out.flags[5, 7] & clred.MASK_NO_DATA and out.mask[5, 7]
    good = np.ones(data.shape, bool)
    good[5, 7] = good[9, 9] = False
    assert_same(out.data[good], (data + 1)[good])
    np.testing.assert_allclose(out.uncertainty.array[good], 100 / 3, rtol=1e-6)
    assert out.header["NCOMBINE"] == 3
    nd = ctx.cosmic(NDData(data, mask=mask, uncertainty=VarianceUncertainty(var), meta=hdr), readnoise=10)
    assert type(nd) is NDData and nd.data.shape == data.shape


def test_other_uncertainties_and_boolean_masks_are_converted(ctx):
    data, var, mask, _ = frame()
    boolmask = mask != 0
    img = ctx.upload(NDData(data, uncertainty=StdDevUncertainty(np.sqrt(var)), mask=boolmask)).download()
    np.testing.assert_allclose(img.var, var, rtol=1e-6)
    assert_same(img.mask, np.where(boolmask, clred.MASK_BAD, 0).astype(np.uint16))
    # float64 and Fortran-ordered arrays are converted, not misread
    f64 = np.asfortranarray(data.astype(np.float64))
    assert_same(ctx.upload(f64).download().data, data)
    assert ctx.stats(f64) == ctx.stats(data)


def test_headers_round_trip_through_files(tmp_path):
    data, var, mask, hdr = frame()
    clred.write(clred.Image(data, var, mask, hdr), tmp_path / "x.fits")
    img = clred.read(tmp_path / "x.fits")
    assert isinstance(img.header, fits.Header) and img.header["OBJECT"] == "NGC 2420"
    with fits.open(tmp_path / "x.fits") as hdul:
        assert_same(hdul[0].data, data)
        assert [h.name for h in hdul][:3] == ["SCI", "VAR", "MASK"]
