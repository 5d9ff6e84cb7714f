"""Failures raise clred.Error with the library's message; nothing is misread."""
import numpy as np
import pytest

import clred


def test_library_errors_carry_its_message(ctx, tmp_path):
    a = np.zeros((20, 30), np.float32)
    with pytest.raises(clred.Error, match="frame 1 is 30 x 10") as e:
        ctx.combine([a, a[:10]])
    assert e.value.status
    missing = tmp_path / "nothing.fits"
    with pytest.raises(clred.Error, match="nothing.fits"):
        ctx.stats(str(missing))
    with pytest.raises(clred.Error, match="nothing.fits"):
        clred.read(missing)
    with pytest.raises(clred.Error):
        clred.Context(device="no such device anywhere")


def test_bad_arguments(ctx):
    a = np.zeros((20, 30), np.float32)
    with pytest.raises(clred.Error, match="method expects one of"):
        ctx.combine([a, a], method="avg")
    with pytest.raises(TypeError, match="colour"):
        ctx.combine([a, a], colour="red")
    with pytest.raises(clred.Error, match="2-D"):
        ctx.stats(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(clred.Error, match="complex"):
        ctx.stats(np.zeros((4, 4), np.complex64))
    with pytest.raises(clred.Error, match="mask"):
        ctx.upload(a, mask=np.full(a.shape, -1))
    with pytest.raises(clred.Error, match="ref"):
        ctx.register([a, a], ref=-3)


def test_device_images_of_a_closed_or_other_context(ctx):
    other = clred.Context()
    d = other.upload(np.ones((8, 8), np.float32))
    with pytest.raises(clred.Error, match="another context"):
        ctx.stats(d)
    d.free()
    with pytest.raises(clred.Error, match="freed"):
        d.download()
    e = other.upload(np.ones((8, 8), np.float32))
    other.close()  # frees e's device memory first
    with pytest.raises(clred.Error, match="closed|freed"):
        e.download()
    with pytest.raises(clred.Error, match="closed"):
        other.stats(np.ones((8, 8), np.float32))


def test_no_partial_output_on_failure(ctx, tmp_path):
    img = clred.Image(np.ones((8, 8), np.float32))
    clred.write(img, tmp_path / "a.fits")
    with pytest.raises(clred.Error, match="exists"):
        clred.write(img, tmp_path / "a.fits")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.fits"]
