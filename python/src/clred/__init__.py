"""clred: astronomical image reduction on OpenCL devices, from Python.

    import clred
    ctx = clred.Context()                      # as clred --device: index or name
    bias = ctx.master_bias(bias_paths)
    flat = ctx.master_flat(flat_paths, bias=bias, saturation=65535)
    cal = ctx.calibrate(raw_paths, bias=bias, flat=flat, saturation=65535)
    stack = ctx.stack([ctx.subtract_background(c) for c in cal], method="median")

Steps take numpy arrays (float32 C-contiguous arrays are used in place; other
dtypes and layouts are converted explicitly), clred.Image, astropy
CCDData/NDData (VarianceUncertainty, mask) or file paths, and give back the
same kind; given device images (ctx.upload(array), ctx.read(path)) they give
device images back, so a pipeline keeps its frames on the device until
.download(). Keyword names are the CLI's (--sigma-low -> sigma_low).
Failures raise clred.Error with the library's message.
"""
from clred._clred import (MASK_BAD, MASK_CLIPPED, MASK_COSMIC_RAY, MASK_DETECTED, MASK_EDGE,  # noqa: F401
                          MASK_INTERPOLATED, MASK_NO_DATA, MASK_NOFIT, MASK_SATURATED, MASK_UNUSABLE,
                          PHOT_DTYPE, PSF_PHOT_DTYPE, SOURCE_DTYPE, Background, Context, DeviceImage, Error,
                          ShiftResult, devices, read, simulate, write)
from clred._convert import Image  # noqa: F401

__version__ = "0.1.0"
