"""Conversions between Python objects and clred's image planes.

clred works in float32 SCI / VAR planes and a uint16 mask whose bits have
fixed meanings (clred.MASK_*). Arrays already in that form (C-contiguous,
native byte order) are used in place; anything else is converted here,
explicitly, and a conversion that would be wrong raises instead.
"""
import os

import numpy as np

MASK_BAD = 0x0001
MASK_UNUSABLE = 0x000F

# Structural keywords: clred's headers carry none (the writer makes them).
_STRUCTURAL = {"SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "NAXIS3", "EXTEND", "XTENSION", "PCOUNT",
               "GCOUNT", "BZERO", "BSCALE", "END"}


def _error(message):
    from clred._clred import Error
    return Error(message, "usage")


class Image:
    """A host image: data (float32), optional var (float32) and mask
    (uint16, clred.MASK_* bits), header (astropy.io.fits.Header when astropy
    is installed, else a list of 80-character cards). info holds a step's
    extra results (a combine's ncontrib, a cosmic-ray count, ...)."""

    def __init__(self, data, var=None, mask=None, header=None, info=None):
        self.data = data
        self.var = var
        self.mask = mask
        self.header = header
        self.info = info if info is not None else {}

    @property
    def shape(self):
        return np.shape(self.data)

    def __array__(self, dtype=None, copy=None):
        a = np.asarray(self.data)
        return a if dtype is None else a.astype(dtype)

    def __repr__(self):
        return (f"<clred.Image {self.shape[1]}x{self.shape[0]} var={self.var is not None} "
                f"mask={self.mask is not None}>")

    def to_ccddata(self, unit="adu"):
        """An astropy CCDData with VarianceUncertainty and the header. CCDData
        keeps a boolean mask (True where a pixel has an unusable bit: BAD,
        SATURATED, COSMIC_RAY, NO_DATA); the clred bits themselves go into
        its flags, which the steps read back."""
        from astropy.nddata import CCDData, VarianceUncertainty
        bits = self.mask
        return CCDData(self.data, unit=unit,
                       mask=(bits & MASK_UNUSABLE) != 0 if bits is not None else None,
                       flags=bits,
                       uncertainty=VarianceUncertainty(self.var) if self.var is not None else None,
                       meta=_fits_header(self.header))

    def to_nddata(self):
        from astropy.nddata import NDData, VarianceUncertainty
        return NDData(self.data, mask=self.mask, meta=_fits_header(self.header),
                      uncertainty=VarianceUncertainty(self.var) if self.var is not None else None)


def fspath(p):
    return os.fsencode(os.fspath(p))


def is_path(obj):
    return isinstance(obj, (str, bytes)) or hasattr(obj, "__fspath__")


def _plane(a, dtype, what):
    a = np.asarray(a)
    if a.ndim != 2:
        raise _error(f"{what}: a 2-D array is needed, got {a.ndim} dimensions")
    if a.dtype.kind not in "biuf":
        raise _error(f"{what}: {a.dtype} pixels cannot become {np.dtype(dtype).name}")
    if a.dtype == dtype and a.flags.c_contiguous and a.dtype.isnative and a.flags.aligned:
        return a  # used in place, no copy
    return np.ascontiguousarray(a, dtype=dtype)


def _mask_plane(m, shape):
    m = np.asarray(m)
    if m.shape != shape:
        raise _error(f"mask: shape {m.shape} differs from the image's {shape}")
    if m.dtype == np.bool_:
        # astropy's boolean mask: True = bad, clred's BAD bit.
        return np.ascontiguousarray(np.where(m, MASK_BAD, 0).astype(np.uint16))
    if m.dtype.kind not in "biu":
        raise _error(f"mask: integer bits are needed, got {m.dtype}")
    if m.size and (m.min() < 0 or m.max() > 0xFFFF):
        raise _error("mask: values outside 0..65535 are not clred mask bits")
    return _plane(m, np.uint16, "mask")


def _variance(unc, shape):
    """A VAR plane from an astropy uncertainty (or an array taken as variance)."""
    name = type(unc).__name__
    a = np.asarray(getattr(unc, "array", unc), dtype=np.float64)
    if name == "StdDevUncertainty":
        a = a * a
    elif name == "InverseVariance":
        with np.errstate(divide="ignore"):
            a = 1.0 / a
    elif name not in ("VarianceUncertainty", "ndarray"):
        raise _error(f"uncertainty: {name} is not a variance, standard deviation or inverse variance")
    if a.shape != shape:
        raise _error(f"uncertainty: shape {a.shape} differs from the image's {shape}")
    return _plane(a if name != "VarianceUncertainty" else unc.array, np.float32, "variance")


def planes(obj):
    """(sci, var, mask, cards) of an Image, CCDData/NDData or array."""
    if isinstance(obj, Image):
        sci = _plane(obj.data, np.float32, "data")
        var = _plane(obj.var, np.float32, "var") if obj.var is not None else None
        if var is not None and var.shape != sci.shape:
            raise _error(f"var: shape {var.shape} differs from the image's {sci.shape}")
        mask = _mask_plane(obj.mask, sci.shape) if obj.mask is not None else None
        return sci, var, mask, header_cards(obj.header)
    if hasattr(obj, "uncertainty") and hasattr(obj, "data") and hasattr(obj, "meta"):  # NDData, CCDData
        data = obj.data
        if np.ma.isMaskedArray(data):
            data = data.data
        sci = _plane(data, np.float32, "data")
        var = _variance(obj.uncertainty, sci.shape) if obj.uncertainty is not None else None
        mask = _mask_plane(obj.mask, sci.shape) if obj.mask is not None else None
        flags = getattr(obj, "flags", None)
        if flags is not None:
            # CCDData's flags carry clred's bits; its boolean mask adds BAD
            # where it flags a pixel the bits leave usable.
            bits = _mask_plane(flags, sci.shape)
            if mask is not None:
                bits = bits | np.where(((bits & MASK_UNUSABLE) == 0) & (mask != 0), MASK_BAD, 0).astype(np.uint16)
            mask = bits
        return sci, var, mask, header_cards(obj.meta)
    if np.ma.isMaskedArray(obj):
        sci = _plane(obj.data, np.float32, "data")
        return sci, None, _mask_plane(np.ma.getmaskarray(obj), sci.shape), None
    return _plane(obj, np.float32, "data"), None, None, None


def header_cards(header):
    """80-character cards of an astropy Header, a dict or a list of cards."""
    if header is None:
        return None
    if isinstance(header, (list, tuple)):
        cards = [str(c) for c in header]
    elif hasattr(header, "cards"):
        cards = [c.image for c in header.cards]
        cards = [c[i:i + 80] for c in cards for i in range(0, len(c), 80)]  # CONTINUE cards
    elif isinstance(header, dict):
        if not header:
            return None
        from astropy.io import fits
        return header_cards(fits.Header(list(header.items())))
    else:
        raise _error(f"header: {type(header).__name__} is not a FITS header")
    return [c.ljust(80)[:80] for c in cards if c[:8].strip() not in _STRUCTURAL
            and not c[:8].strip().startswith("NAXIS")]


def header_from_cards(cards):
    if not cards:
        cards = []
    try:
        from astropy.io import fits
    except ImportError:
        return list(cards)
    return fits.Header.fromstring("".join(cards))


def _fits_header(h):
    if h is None:
        return None
    if isinstance(h, list):
        from astropy.io import fits
        return fits.Header.fromstring("".join(h))
    return h


def like(img, template):
    """img as the kind of object template is: CCDData/NDData in, the same out."""
    if template is None or isinstance(template, (Image, np.ndarray)) or is_path(template):
        return img
    name = type(template).__name__
    if name == "CCDData":
        return img.to_ccddata(unit=template.unit or "adu")
    if hasattr(template, "uncertainty") and hasattr(template, "meta"):
        return img.to_nddata()
    return img
