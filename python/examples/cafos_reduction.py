"""CAFOS NGC 2420 V, reduced as the GROWTH school's lesson does, with every
frame kept on the device: master bias, master flat, calibration, sky
subtraction, alignment and a median stack. Usage: cafos_reduction.py [DATA] [OUT]"""
import glob
import sys

import clred

data = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/cafos"
out = sys.argv[2] if len(sys.argv) > 2 else "NGC2420_V.fits"
files = lambda pattern: sorted(glob.glob(f"{data}/{pattern}"))  # noqa: E731

ctx = clred.Context()  # as clred --device: the first GPU, else the CPU
bias = ctx.master_bias([ctx.read(f) for f in files("calib/bias/*.fits")])
# These files carry no SATURATE keyword: the 16-bit ceiling is given.
flat = ctx.master_flat([ctx.read(f) for f in files("calib/flat/V/*.fits")], bias=bias, saturation=65535)
science = [ctx.read(f) for f in files("science/NGC2420/V/*.fits")]
calibrated = ctx.calibrate(science, bias=bias, flat=flat, saturation=65535)
sky_subtracted = [ctx.subtract_background(frame) for frame in calibrated]
stack = ctx.stack(sky_subtracted, method="median")  # phase correlation onto frame 0, Lanczos-3
stack.write(out, overwrite=True)
print(f"{out}: {len(science)} frames, shifts", [f"{s.dx:+.2f},{s.dy:+.2f}" for s in stack.info["shifts"]])
