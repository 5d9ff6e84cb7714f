# cython: language_level=3, boundscheck=False, wraparound=False, embedsignature=True
"""Cython bindings of libclred (include/clred.h).

Every step runs through the library's device entry points (clred_X_dev):
numpy inputs become zero-copy device views (clred_dimage_borrow: on a device
sharing host memory the kernels read the arrays in place, elsewhere they are
uploaded once), results come down once into arrays that numpy then owns
without a further copy. The library guarantees that the host functions equal
"the device one between an upload and a download", so both routes give the
same pixels. Library calls run without the GIL; one thread at a time uses a
context (each Context holds a lock), contexts are independent.
"""
import threading
import weakref
from collections import namedtuple

import numpy as np
cimport numpy as cnp
from cpython.pycapsule cimport PyCapsule_New, PyCapsule_GetPointer
from libc.math cimport NAN
from libc.stdint cimport uint16_t, uint64_t, int32_t
from libc.stdlib cimport free, calloc
from libc.string cimport memset
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

from clred import _convert

cnp.import_array()

cdef extern from "clred.h" nogil:
    ctypedef enum clred_status:
        CLRED_OK
    const char *clred_last_error()
    const char *clred_status_name(clred_status s)

    ctypedef struct clred_header:
        pass
    clred_header *clred_header_new()
    void clred_header_free(clred_header *h)
    size_t clred_header_count(const clred_header *h)
    const char *clred_header_card(const clred_header *h, size_t i)

    ctypedef struct clred_image:
        size_t width, height
        float *sci
        float *var
        uint16_t *mask
        clred_header *header
    void clred_image_free(clred_image *img)
    clred_status clred_image_read(const char *path, size_t frame, clred_image *img)
    clred_status clred_image_write(const char *path, const clred_image *img, int overwrite)

    ctypedef struct clred_device_info:
        int index
        char platform[128]
        char name[128]
        char vendor[128]
        char version[128]
        char driver[128]
        int is_gpu, is_cpu
        uint64_t global_mem, max_alloc, local_mem
        size_t max_work_group
        unsigned compute_units, clock_mhz
        int has_double
    clred_status clred_devices_list(clred_device_info **list, size_t *count)

    ctypedef struct clred_ctx:
        pass
    clred_status clred_ctx_create(const char *spec, clred_ctx **ctx)
    void clred_ctx_destroy(clred_ctx *ctx)
    const clred_device_info *clred_ctx_device(const clred_ctx *ctx)
    void clred_ctx_set_memory_limit(clred_ctx *ctx, uint64_t bytes)
    ctypedef struct clred_timing:
        double kernel_s, upload_s, download_s
        uint64_t upload_bytes, download_bytes, uploads, downloads, kernels
    void clred_ctx_timing(clred_ctx *ctx, clred_timing *t)
    void clred_ctx_timing_reset(clred_ctx *ctx)

    ctypedef struct clred_dimage:
        pass
    clred_status clred_dimage_upload(clred_ctx *ctx, const clred_image *img, clred_dimage **out)
    clred_status clred_dimage_read(clred_ctx *ctx, const char *path, size_t frame, clred_dimage **out)
    clred_status clred_dimage_download(const clred_dimage *d, clred_image *out)
    clred_status clred_dimage_write(const clred_dimage *d, const char *path, int overwrite)
    clred_status clred_dimage_copy(const clred_dimage *d, clred_dimage **out)
    void clred_dimage_free(clred_dimage *d)
    size_t clred_dimage_width(const clred_dimage *d)
    size_t clred_dimage_height(const clred_dimage *d)
    int clred_dimage_has_var(const clred_dimage *d)
    int clred_dimage_has_mask(const clred_dimage *d)
    const clred_header *clred_dimage_header_const(const clred_dimage *d)

    ctypedef struct clred_section:
        size_t x0, x1, y0, y1
        int set
    clred_status clred_section_parse(const char *text, clred_section *s)

    ctypedef struct clred_stats_opts:
        double sigma_lower, sigma_upper
        int max_iters, spread_mad, centre_mean
        size_t x0, x1, y0, y1
        uint16_t ignore_bits
    ctypedef struct clred_stats:
        double mean, median, std, mad, min, max
        size_t npix, nrejected, ninvalid
        int iterations
    clred_stats_opts clred_stats_defaults()
    clred_status clred_image_stats(clred_ctx *ctx, const clred_image *img, const clred_stats_opts *opts,
                                   clred_stats *out)
    clred_status clred_combine_images(clred_ctx *ctx, const clred_image *frames, size_t nframes,
                                      const clred_combine_opts *opts, clred_combine_result *out)
    clred_status clred_stats_dev(clred_ctx *ctx, const clred_dimage *img, const clred_stats_opts *opts,
                                 clred_stats *out)

    ctypedef enum clred_combine_method:
        pass
    ctypedef enum clred_reject_method:
        pass
    ctypedef enum clred_scale_method:
        pass
    ctypedef struct clred_combine_opts:
        clred_combine_method method
        clred_reject_method reject
        double sigma_lower, sigma_upper
        int max_iters, centre_mean, spread_mad, nlow, nhigh
        double pct_low, pct_high
        clred_scale_method scale
        const double *weights
        uint16_t ignore_bits
        int want_rejected_map
    clred_combine_opts clred_combine_defaults()
    ctypedef struct clred_combine_result:
        clred_image image
        float *ncontrib
        float *nrejected
        double *scales
        size_t bands
    void clred_combine_result_free(clred_combine_result *r)
    ctypedef struct clred_combine_dev_result:
        clred_dimage *image
        clred_dimage *ncontrib
        clred_dimage *nrejected
        double *scales
        size_t bands
    void clred_combine_dev_result_free(clred_combine_dev_result *r)
    clred_status clred_combine_files(clred_ctx *ctx, const char *const *paths, size_t npaths,
                                     const clred_combine_opts *opts, clred_combine_result *out)
    clred_status clred_combine_dev(clred_ctx *ctx, const clred_dimage *const *frames, size_t nframes,
                                   const clred_combine_opts *opts, clred_combine_dev_result *out)

    ctypedef enum clred_overscan_mode:
        pass
    ctypedef struct clred_calib_opts:
        clred_overscan_mode overscan
        int overscan_order
        clred_section biassec, trimsec
        int use_header_sections
        double gain, readnoise, saturation
        int to_electrons, override_checks
        double exptime, flat_floor
        clred_section flat_region
    clred_calib_opts clred_calib_defaults()
    ctypedef struct clred_masters_dev:
        const clred_dimage *bias
        const clred_dimage *dark
        const clred_dimage *flat
        const clred_dimage *bad_pixels
        const char *bias_name
        const char *dark_name
        const char *flat_name
        const char *bad_pixels_name
    ctypedef struct clred_calibrator:
        pass
    clred_status clred_calibrator_create_dev(clred_ctx *ctx, const clred_masters_dev *masters,
                                             const clred_calib_opts *opts, clred_calibrator **cal)
    clred_status clred_calibrator_apply_dev(clred_calibrator *cal, const clred_dimage *raw, const char *name,
                                            clred_dimage **out)
    void clred_calibrator_free(clred_calibrator *cal)
    clred_status clred_master_bias_dev(clred_ctx *ctx, const clred_dimage *const *frames, const char *const *names,
                                       size_t n, const clred_calib_opts *opts, const clred_combine_opts *copts,
                                       clred_dimage **out)
    clred_status clred_master_dark_dev(clred_ctx *ctx, const clred_dimage *const *frames, const char *const *names,
                                       size_t n, const clred_dimage *bias, const clred_calib_opts *opts,
                                       const clred_combine_opts *copts, clred_dimage **out)
    clred_status clred_master_flat_dev(clred_ctx *ctx, const clred_dimage *const *frames, const char *const *names,
                                       size_t n, const clred_dimage *bias, const clred_dimage *dark,
                                       const clred_calib_opts *opts, const clred_combine_opts *copts,
                                       clred_dimage **out)

    ctypedef struct clred_bkg_opts:
        int box_w, box_h, filter_w, filter_h
        double clip_sigma
        int max_iters
        double min_good_frac
        uint16_t ignore_bits
        int mask_sources
        double source_sigma
        int source_grow
    ctypedef struct clred_bkg_info:
        double global_back, global_rms
        size_t mesh_w, mesh_h, nfilled, nmasked_sources
    clred_bkg_opts clred_bkg_defaults()
    clred_status clred_background_dev(clred_ctx *ctx, const clred_dimage *img, const clred_bkg_opts *opts,
                                      clred_dimage **bkg, clred_dimage **rms, clred_bkg_info *info)

    ctypedef struct clred_cosmic_opts:
        double sigclip, sigfrac, objlim
        int max_iters
        double gain, readnoise, satlevel
        int sepmed
        const float *bkg
        const float *var
        uint16_t ignore_bits
    ctypedef struct clred_cosmic_info:
        size_t ncosmic
        int iterations
    clred_cosmic_opts clred_cosmic_defaults()
    clred_status clred_cosmic_dev(clred_ctx *ctx, clred_dimage *img, const clred_dimage *sky,
                                  const clred_dimage *noise_var, const clred_cosmic_opts *opts,
                                  clred_cosmic_info *info)

    ctypedef struct clred_source:
        double x, y, flux, flux_err, peak, a, b, theta, fwhm, ellipticity
        size_t npix
        unsigned flags
    ctypedef struct clred_detect_opts:
        double thresh
        int minarea
        double fwhm, deblend_contrast, saturation
        uint16_t ignore_bits
        int32_t *segmentation
    clred_detect_opts clred_detect_defaults()
    clred_status clred_global_background(const clred_image *img, uint16_t ignore_bits, double *level, double *rms)
    clred_status clred_detect_sources_dev(clred_ctx *ctx, const clred_dimage *img, const clred_dimage *bkg,
                                          const clred_dimage *rms, double bkg_value, double rms_value,
                                          const clred_detect_opts *opts, clred_source **list, size_t *n)

    ctypedef struct clred_phot_opts:
        double radius, annulus_in, annulus_out, clip_sigma
        int max_iters
        double zeropoint
        uint16_t ignore_bits
    ctypedef struct clred_phot:
        double x, y, flux, flux_err, area, bkg, bkg_rms
        size_t nannulus
        double mag, mag_err
        unsigned flags
    clred_phot_opts clred_phot_defaults()
    clred_status clred_aperture_photometry_dev(clred_ctx *ctx, const clred_dimage *img, const double *x,
                                               const double *y, size_t n, const clred_phot_opts *opts,
                                               clred_phot *out)
    ctypedef struct clred_psf:
        size_t size
        float *data
        double fwhm, ellipticity
        size_t nstars
    void clred_psf_free(clred_psf *psf)
    clred_status clred_psf_from_array(const float *data, size_t w, size_t h, size_t max_size, clred_psf *psf)
    ctypedef struct clred_psf_phot_opts:
        double fit_radius
        int fit_sky, fit_position, max_iters
        double max_shift, min_snr_position, group_radius, zeropoint
        uint16_t ignore_bits
        double noise_rms
    ctypedef struct clred_psf_phot:
        double x, y, x_err, y_err, flux, flux_err, sky, chi2_dof
        size_t npix, nfit
        double mag, mag_err
        unsigned flags
    clred_psf_phot_opts clred_psf_phot_defaults()
    clred_status clred_psf_photometry_dev(clred_ctx *ctx, const clred_dimage *img, const clred_psf *psf,
                                          const double *x, const double *y, size_t n,
                                          const clred_psf_phot_opts *opts, clred_psf_phot *out)

    ctypedef enum clred_fft_backend:
        pass
    ctypedef enum clred_window:
        pass
    ctypedef struct clred_phasecorr_opts:
        clred_fft_backend backend
        clred_window window
        double tukey_alpha, precision
        int phase_only
        size_t x0, x1, y0, y1
        double box_x, box_y
        size_t box_size
        double max_shift
        uint16_t ignore_bits
    clred_phasecorr_opts clred_phasecorr_defaults()
    ctypedef struct clred_shift:
        double dx, dy, psr, peak
    clred_status clred_measure_shifts_dev(clred_ctx *ctx, const clred_dimage *const *frames, size_t nframes,
                                          long ref_index, const clred_phasecorr_opts *opts, clred_shift *shifts)

    ctypedef enum clred_interp:
        pass
    ctypedef struct clred_transform:
        double m[6]
    ctypedef struct clred_resample_opts:
        clred_interp interp
        size_t out_width, out_height
        int conserve_flux
        clred_fft_backend backend
        uint16_t ignore_bits
    clred_resample_opts clred_resample_defaults()
    clred_status clred_resample_dev(clred_ctx *ctx, const clred_dimage *img, const clred_transform *transform,
                                    const clred_resample_opts *opts, clred_dimage **out)

    ctypedef enum clred_grid:
        pass
    ctypedef struct clred_grid_geometry:
        size_t width, height
        double ox, oy
    ctypedef enum clred_match_model:
        pass
    ctypedef struct clred_match_opts:
        clred_match_model model
    ctypedef struct clred_match_result:
        clred_transform transform
        size_t nmatched
        double rms, scale, rotation_deg
    ctypedef enum clred_register_method:
        pass
    ctypedef struct clred_stack_opts:
        clred_register_method method
        long ref_index
        clred_grid grid
        clred_phasecorr_opts popts
        clred_detect_opts dopts
        clred_match_opts mopts
        clred_resample_opts ropts
        clred_combine_opts copts
    clred_stack_opts clred_stack_defaults()
    ctypedef struct clred_alignment:
        size_t n
        clred_transform *to_ref
        clred_shift *shifts
        clred_match_result *matches
        clred_grid_geometry geometry
        long failed
    void clred_alignment_free(clred_alignment *a)
    clred_status clred_stack_dev(clred_ctx *ctx, const clred_dimage *const *frames, size_t n,
                                 const clred_stack_opts *opts, clred_combine_dev_result *out,
                                 clred_alignment *alignment)
    clred_status clred_stack_files(clred_ctx *ctx, const char *const *paths, size_t npaths,
                                   const clred_stack_opts *opts, clred_combine_result *out,
                                   clred_alignment *alignment)

    ctypedef struct clred_sim_opts:
        uint64_t seed
        size_t width, height
        int nbias, ndark, nflat, nscience, nepoch2
        int nstars
        double dither
        const char *filters
    clred_sim_opts clred_sim_defaults()
    clred_status clred_simulate(const clred_sim_opts *opts, const char *outdir, int overwrite)

    ctypedef struct clred_night_opts:
        clred_calib_opts calib
        int cosmic
        int background
        int strict
        int overwrite
        size_t shard_index, shard_count
        int stream
    ctypedef struct clred_night_item:
        char *path
        char *what
        int written
        char *reason
    ctypedef struct clred_night_report:
        size_t ninputs, nbias, ndark, nflat, nscience
        size_t ngroups, ngroups_here
        clred_night_item *products
        size_t nproducts, nwritten, nskipped
        clred_night_item *left_out
        size_t nleft_out
        double wall_s
        char *manifest
    clred_night_opts clred_night_defaults()
    clred_status clred_night_run(clred_ctx *ctx, const char *const *inputs, size_t n, const char *outdir,
                                 const clred_night_opts *opts, clred_night_report *report)
    void clred_night_report_free(clred_night_report *r)

cdef extern from "internal.h" nogil:
    # Zero-copy device views of caller arrays, raw header cards, and the
    # device-side subtraction the background step's users need.
    clred_status clred_dimage_borrow(clred_ctx *ctx, const clred_image *img, clred_dimage **out)
    clred_status clred_header_append_card(clred_header *h, const char *card)
    clred_status clred_sync(clred_ctx *ctx)
    clred_status clred_dimage_subtract_sci(clred_dimage *img, const clred_dimage *model)

# ------------------------------------------------------------------ errors

class Error(Exception):
    """A failure reported by libclred; str(e) is the library's message and
    e.status its kind ("input", "usage", "device", "memory", "io")."""

    def __init__(self, message, status="usage"):
        super().__init__(message)
        self.status = status


cdef int _check(clred_status s) except -1:
    if s != CLRED_OK:
        raise Error(clred_last_error().decode("utf-8", "replace"), clred_status_name(s).decode())
    return 0


cdef str _choice(str what, value, tuple names):
    if value not in names:
        raise Error(f"{what} expects one of {', '.join(names)}, got {value!r}", "usage")
    return value


cdef int _index(str what, value, tuple names) except -1:
    return names.index(_choice(what, value, names))


MASK_BAD = 0x0001
MASK_SATURATED = 0x0002
MASK_COSMIC_RAY = 0x0004
MASK_NO_DATA = 0x0008
MASK_INTERPOLATED = 0x0010
MASK_EDGE = 0x0020
MASK_DETECTED = 0x0040
MASK_CLIPPED = 0x0080
MASK_NOFIT = 0x0100
MASK_UNUSABLE = 0x000F

# ------------------------------------------------------------- host arrays

cdef void _free_capsule(object cap) noexcept:
    free(PyCapsule_GetPointer(cap, NULL))


cdef object _own(void *ptr, size_t h, size_t w, int typenum):
    """A numpy array over a malloc'd plane, which numpy frees (no copy)."""
    if ptr == NULL:
        return None
    cdef cnp.npy_intp dims[2]
    dims[0] = <cnp.npy_intp>h
    dims[1] = <cnp.npy_intp>w
    arr = cnp.PyArray_SimpleNewFromData(2, dims, typenum, ptr)
    cnp.set_array_base(arr, PyCapsule_New(ptr, NULL, <void (*)(object) noexcept>_free_capsule))
    return arr


cdef object _cards(const clred_header *h):
    cdef size_t i
    if h == NULL:
        return []
    return [clred_header_card(h, i).decode("ascii", "replace") for i in range(clred_header_count(h))]


cdef object _take_image(clred_image *img):
    """An Image owning img's planes (img is left empty)."""
    out = _convert.Image(_own(img.sci, img.height, img.width, cnp.NPY_FLOAT32),
                         _own(img.var, img.height, img.width, cnp.NPY_FLOAT32),
                         _own(img.mask, img.height, img.width, cnp.NPY_UINT16),
                         _convert.header_from_cards(_cards(img.header)))
    img.sci = NULL
    img.var = NULL
    img.mask = NULL
    clred_image_free(img)
    return out


cdef class _HostView:
    """A clred_image over numpy arrays (kept alive here) and a header copy."""
    cdef clred_image img
    cdef object arrays

    def __cinit__(self):
        memset(&self.img, 0, sizeof(self.img))

    def __dealloc__(self):
        clred_header_free(self.img.header)

    cdef int set(self, obj) except -1:
        sci, var, mask, cards = _convert.planes(obj)
        self.arrays = (sci, var, mask)
        cdef float[:, ::1] s = sci
        cdef float[:, ::1] v
        cdef uint16_t[:, ::1] m
        self.img.height = sci.shape[0]
        self.img.width = sci.shape[1]
        self.img.sci = &s[0, 0]
        if var is not None:
            v = var
            self.img.var = &v[0, 0]
        if mask is not None:
            m = mask
            self.img.mask = &m[0, 0]
        if cards:
            self.img.header = clred_header_new()
            if self.img.header == NULL:
                raise MemoryError()
            for card in cards:
                _check(clred_header_append_card(self.img.header, card.encode("ascii", "replace")))
        return 0


def devices():
    """Every OpenCL device of every platform, as dicts (clred devices --json)."""
    cdef clred_status s = CLRED_OK
    cdef clred_device_info *lst = NULL
    cdef size_t n = 0, i
    with nogil:
        s = clred_devices_list(&lst, &n)
    _check(s)
    try:
        return [_device_dict(&lst[i]) for i in range(n)]
    finally:
        free(lst)


cdef dict _device_dict(const clred_device_info *d):
    return dict(index=d.index, platform=d.platform.decode(), name=d.name.decode(), vendor=d.vendor.decode(),
                version=d.version.decode(), driver=d.driver.decode(), is_gpu=bool(d.is_gpu), is_cpu=bool(d.is_cpu),
                global_mem=d.global_mem, max_alloc=d.max_alloc, local_mem=d.local_mem,
                max_work_group=d.max_work_group, compute_units=d.compute_units, clock_mhz=d.clock_mhz,
                has_double=bool(d.has_double))


def read(path, frame=0):
    """Reads one frame of a FITS (or .npy) file, with VAR/MASK of a clred MEF."""
    cdef clred_status s = CLRED_OK
    cdef clred_image img
    cdef bytes p = _convert.fspath(path)
    cdef const char *cp = p
    cdef size_t f = frame
    memset(&img, 0, sizeof(img))
    with nogil:
        s = clred_image_read(cp, f, &img)
    _check(s)
    return _take_image(&img)


def write(image, path, overwrite=False):
    """Writes an image as a clred MEF (SCI, VAR, MASK), atomically."""
    cdef clred_status s = CLRED_OK
    cdef _HostView v = _HostView()
    v.set(image)
    cdef bytes p = _convert.fspath(path)
    cdef const char *cp = p
    cdef int ow = bool(overwrite)
    with nogil:
        s = clred_image_write(cp, &v.img, ow)
    _check(s)


def simulate(outdir, *, seed=1, size=(512, 512), nbias=5, ndark=5, nflat=5, nscience=8, nepoch2=4, nstars=300,
             dither=4.0, filters=None, overwrite=False):
    """A raw simulated night in outdir (clred simulate); size is (width, height)."""
    cdef clred_status s = CLRED_OK
    cdef clred_sim_opts o = clred_sim_defaults()
    o.seed = seed
    o.width, o.height = size
    o.nbias, o.ndark, o.nflat, o.nscience, o.nepoch2, o.nstars = nbias, ndark, nflat, nscience, nepoch2, nstars
    o.dither = dither
    cdef bytes f = filters.encode() if filters else b""
    o.filters = f
    cdef bytes p = _convert.fspath(outdir)
    cdef const char *cp = p
    cdef int ow = bool(overwrite)
    with nogil:
        s = clred_simulate(&o, cp, ow)
    _check(s)

# ----------------------------------------------------------- device images

def _positions_xy(str what, x, y, positions):
    """(x, y) as contiguous float64 vectors, from x and y or from positions
    (a catalog with x and y fields, or an (n, 2) array)."""
    if positions is not None:
        if getattr(positions, "dtype", None) is not None and positions.dtype.names:
            x, y = positions["x"], positions["y"]
        else:
            p = np.asarray(positions, dtype=np.float64)
            x, y = p[:, 0], p[:, 1]
    if x is None or y is None:
        raise Error(f"{what}: no positions (x, y or positions)", "usage")
    xs = np.ascontiguousarray(x, dtype=np.float64).ravel()
    ys = np.ascontiguousarray(y, dtype=np.float64).ravel()
    if xs.shape[0] != ys.shape[0]:
        raise Error(f"{what}: x and y differ in length", "usage")
    return xs, ys


cdef class DeviceImage:
    """A frame resident on a context's device (SCI, optional VAR and MASK; the
    header on the host). Steps accept it wherever they accept an array and
    then give device images back; .download() brings it to numpy."""
    cdef clred_dimage *d
    cdef readonly Context context
    cdef public dict info
    cdef object __weakref__

    def __dealloc__(self):
        if self.d != NULL and self.context is not None and self.context.ctx != NULL:
            with self.context._lock:
                clred_dimage_free(self.d)
        self.d = NULL

    cdef clred_dimage *ptr(self) except NULL:
        if self.d == NULL:
            raise Error("the device image was freed", "usage")
        if self.context.ctx == NULL:
            raise Error("the device image's context is closed", "usage")
        return self.d

    @property
    def shape(self):
        p = self.ptr()
        return (clred_dimage_height(p), clred_dimage_width(p))

    @property
    def has_var(self):
        return bool(clred_dimage_has_var(self.ptr()))

    @property
    def has_mask(self):
        return bool(clred_dimage_has_mask(self.ptr()))

    @property
    def header(self):
        return _convert.header_from_cards(_cards(clred_dimage_header_const(self.ptr())))

    def download(self):
        """A host Image (data, var, mask, header) with the device planes."""
        cdef clred_status s = CLRED_OK
        cdef clred_image img
        cdef clred_dimage *p = self.ptr()
        memset(&img, 0, sizeof(img))
        with self.context._lock:
            with nogil:
                s = clred_dimage_download(p, &img)
            _check(s)
        out = _take_image(&img)
        out.info = dict(self.info) if self.info else {}
        return out

    def write(self, path, overwrite=False):
        """Downloads and writes as a clred MEF, atomically."""
        cdef clred_status s = CLRED_OK
        cdef bytes pth = _convert.fspath(path)
        cdef const char *cp = pth
        cdef clred_dimage *p = self.ptr()
        cdef int ow = bool(overwrite)
        with self.context._lock:
            with nogil:
                s = clred_dimage_write(p, cp, ow)
            _check(s)

    def copy(self):
        cdef clred_status s = CLRED_OK
        cdef clred_dimage *out = NULL
        cdef clred_dimage *p = self.ptr()
        with self.context._lock:
            with nogil:
                s = clred_dimage_copy(p, &out)
            _check(s)
        return _wrap(self.context, out)

    def free(self):
        """Gives the device memory back now (also done when collected)."""
        if self.d != NULL and self.context.ctx != NULL:
            with self.context._lock:
                clred_dimage_free(self.d)
        self.d = NULL

    def __repr__(self):
        if self.d == NULL:
            return "<clred.DeviceImage (freed)>"
        return f"<clred.DeviceImage {self.shape[1]}x{self.shape[0]} var={self.has_var} mask={self.has_mask}>"


cdef DeviceImage _wrap(Context ctx, clred_dimage *d):
    cdef DeviceImage out = DeviceImage.__new__(DeviceImage)
    out.d = d
    out.context = ctx
    out.info = {}
    ctx._images.add(out)
    return out


cdef class _Inputs:
    """The device images of one call: the caller's DeviceImages as they are,
    host inputs as borrowed views freed (after a sync) when the call ends."""
    cdef Context ctx
    cdef list views
    cdef list borrowed  # DeviceImage wrappers of borrowed views
    cdef public bint any_device

    def __cinit__(self, Context ctx):
        self.ctx = ctx
        self.views = []
        self.borrowed = []
        self.any_device = False

    cdef clred_dimage *get(self, obj) except NULL:
        cdef clred_status s = CLRED_OK
        cdef _HostView v
        cdef clred_dimage *d = NULL
        if isinstance(obj, DeviceImage):
            if (<DeviceImage>obj).context is not self.ctx:
                raise Error("a device image of another context", "usage")
            self.any_device = True
            return (<DeviceImage>obj).ptr()
        cdef bytes p
        cdef const char *cp
        if isinstance(obj, (str, bytes)) or hasattr(obj, "__fspath__"):
            p = _convert.fspath(obj)
            cp = p
            with nogil:
                s = clred_dimage_read(self.ctx.ctx, cp, 0, &d)
            _check(s)
            self.borrowed.append(_wrap(self.ctx, d))
            return d
        v = _HostView()
        v.set(obj)
        with nogil:
            s = clred_dimage_borrow(self.ctx.ctx, &v.img, &d)
        _check(s)
        self.views.append(v)
        self.borrowed.append(_wrap(self.ctx, d))
        return d

    cdef clred_dimage *opt(self, obj) except? NULL:
        if obj is None:
            return NULL
        return self.get(obj)

    cdef release(self):
        cdef clred_status s = CLRED_OK
        # Kernels enqueued on borrowed views may still read the caller's arrays.
        if self.borrowed:
            with nogil:
                clred_sync(self.ctx.ctx)
        for b in self.borrowed:
            clred_dimage_free((<DeviceImage>b).d)
            (<DeviceImage>b).d = NULL
        self.borrowed = []
        self.views = []


cdef object _out(Context ctx, clred_dimage *d, bint device, like=None):
    """A step's new device image given back as a DeviceImage, or downloaded."""
    cdef clred_status s = CLRED_OK
    if d == NULL:
        return None
    cdef DeviceImage w = _wrap(ctx, d)
    if device:
        return w
    cdef clred_image img
    memset(&img, 0, sizeof(img))
    with nogil:
        s = clred_dimage_download(d, &img)
    clred_dimage_free(d)
    w.d = NULL
    _check(s)
    return _convert.like(_take_image(&img), like)


ShiftResult = namedtuple("ShiftResult", "dx dy psr peak")
Background = namedtuple("Background", "background rms global_back global_rms mesh_w mesh_h nfilled")

SOURCE_DTYPE = np.dtype([("x", "f8"), ("y", "f8"), ("flux", "f8"), ("flux_err", "f8"), ("peak", "f8"),
                         ("a", "f8"), ("b", "f8"), ("theta", "f8"), ("fwhm", "f8"), ("ellipticity", "f8"),
                         ("npix", "u8"), ("flags", "u4")])
PHOT_DTYPE = np.dtype([("x", "f8"), ("y", "f8"), ("flux", "f8"), ("flux_err", "f8"), ("area", "f8"),
                       ("bkg", "f8"), ("bkg_rms", "f8"), ("nannulus", "u8"), ("mag", "f8"), ("mag_err", "f8"),
                       ("flags", "u4")])

PSF_PHOT_DTYPE = np.dtype([("x", "f8"), ("y", "f8"), ("x_err", "f8"), ("y_err", "f8"), ("flux", "f8"),
                           ("flux_err", "f8"), ("sky", "f8"), ("chi2_dof", "f8"), ("npix", "u8"), ("nfit", "u8"),
                           ("mag", "f8"), ("mag_err", "f8"), ("flags", "u4")])

_METHODS = ("mean", "median", "sum", "min", "max")
_REJECTS = ("none", "sigclip", "minmax", "winsorized", "percentile")
_SCALES = ("none", "mult", "add", "stars")
_OVERSCANS = ("none", "mean", "median", "fit", "auto")
_INTERPS = ("nearest", "bilinear", "bicubic", "lanczos3", "fourier")
_FFTS = ("default", "clfft", "vkfft")
_WINDOWS = ("none", "hann", "tukey")


cdef int _combine_kw(clred_combine_opts *o, dict kw) except -1:
    """The combine options, named as clred combine's (--sigma-low -> sigma_low)."""
    v = kw.pop("method", None)
    if v is not None:
        o.method = <clred_combine_method>_index("method", v, _METHODS)
    v = kw.pop("reject", None)
    if v is not None:
        o.reject = <clred_reject_method>_index("reject", v, _REJECTS)
    v = kw.pop("sigma", None)
    if v is not None:
        o.sigma_lower = o.sigma_upper = v
    v = kw.pop("sigma_low", None)
    if v is not None:
        o.sigma_lower = v
    v = kw.pop("sigma_high", None)
    if v is not None:
        o.sigma_upper = v
    v = kw.pop("iters", None)
    if v is not None:
        o.max_iters = v
    v = kw.pop("centre", None)
    if v is not None:
        o.centre_mean = _index("centre", v, ("median", "mean"))
    v = kw.pop("spread", None)
    if v is not None:
        o.spread_mad = _index("spread", v, ("std", "mad"))
    v = kw.pop("nlow", None)
    if v is not None:
        o.nlow = v
    v = kw.pop("nhigh", None)
    if v is not None:
        o.nhigh = v
    v = kw.pop("pct_low", None)
    if v is not None:
        o.pct_low = v
    v = kw.pop("pct_high", None)
    if v is not None:
        o.pct_high = v
    v = kw.pop("scale", None)
    if v is not None:
        o.scale = <clred_scale_method>_index("scale", v, _SCALES)
    if kw.pop("rejected_map", False):
        o.want_rejected_map = 1
    return 0


cdef int _section(clred_section *s, str what, value) except -1:
    if value is None:
        return 0
    if isinstance(value, str):
        if clred_section_parse(value.encode(), s) != CLRED_OK:
            raise Error(f"{what}: {clred_last_error().decode()}", "usage")
        return 0
    (x0, x1), (y0, y1) = value  # 0-based, half-open ((x0, x1), (y0, y1))
    s.x0, s.x1, s.y0, s.y1, s.set = x0, x1, y0, y1, 1
    return 0


cdef int _calib_kw(clred_calib_opts *o, dict kw) except -1:
    """The calibration options, named as clred calibrate's."""
    v = kw.pop("overscan", None)
    if v is not None:
        o.overscan = <clred_overscan_mode>_index("overscan", v, _OVERSCANS)
    v = kw.pop("overscan_order", None)
    if v is not None:
        o.overscan_order = v
    _section(&o.biassec, "biassec", kw.pop("biassec", None))
    _section(&o.trimsec, "trimsec", kw.pop("trimsec", None))
    if not kw.pop("header_sections", True):
        o.use_header_sections = 0
    for name in ("gain", "readnoise", "saturation", "exptime"):
        v = kw.pop(name, None)
        if v is None:
            continue
        if name == "gain":
            o.gain = v
        elif name == "readnoise":
            o.readnoise = v
        elif name == "saturation":
            o.saturation = v
        else:
            o.exptime = v
    if kw.pop("electrons", False):
        o.to_electrons = 1
    if kw.pop("override", False):
        o.override_checks = 1
    v = kw.pop("floor", None)
    if v is not None:
        o.flat_floor = v
    _section(&o.flat_region, "region", kw.pop("region", None))
    return 0


cdef int _phasecorr_kw(clred_phasecorr_opts *o, dict kw) except -1:
    v = kw.pop("precision", None)
    if v is not None:
        o.precision = v
    v = kw.pop("window", None)
    if v is not None:
        o.window = <clred_window>_index("window", v, _WINDOWS)
    if kw.pop("phase", False):
        o.phase_only = 1
    v = kw.pop("max_shift", None)
    if v is not None:
        o.max_shift = v
    v = kw.pop("fft", None)
    if v is not None:
        o.backend = <clred_fft_backend>_index("fft", v, _FFTS)
    return 0


cdef int _no_more(dict kw, str step) except -1:
    if kw:
        raise TypeError(f"{step}() got unexpected keyword arguments: {', '.join(sorted(kw))}")
    return 0


cdef long _ref(value) except? -2:
    if value == "median":
        return -1
    if int(value) < 0:
        raise Error(f"ref must be a frame index or 'median', got {value!r}", "usage")
    return int(value)

# ----------------------------------------------------------------- context

cdef class Context:
    """An OpenCL device opened for clred: Context(device=None) takes an index
    or a name substring as clred --device does (None: CLRED_DEVICE, else the
    first GPU, else the first CPU). One thread at a time works in a context
    (calls take its lock); open one per thread or worker to run in parallel."""
    cdef clred_ctx *ctx
    cdef readonly object _lock
    cdef object _images  # its live DeviceImages, freed before the context

    def __cinit__(self, device=None, memory_limit=None):
        cdef clred_status s = CLRED_OK
        self._lock = threading.RLock()
        self._images = weakref.WeakSet()
        cdef bytes spec = str(device).encode() if device is not None else b""
        cdef const char *cs = NULL
        if device is not None:
            cs = spec
        cdef clred_ctx *c = NULL
        with nogil:
            s = clred_ctx_create(cs, &c)
        _check(s)
        self.ctx = c
        if memory_limit:
            clred_ctx_set_memory_limit(c, memory_limit)

    def __dealloc__(self):
        if self.ctx != NULL:
            clred_ctx_destroy(self.ctx)
            self.ctx = NULL

    cdef clred_ctx *c(self) except NULL:
        if self.ctx == NULL:
            raise Error("the context is closed", "usage")
        return self.ctx

    def close(self):
        """Releases the device, freeing the context's device images first
        (they raise clred.Error if used afterwards)."""
        with self._lock:
            for img in list(self._images):
                (<DeviceImage>img).free()
            if self.ctx != NULL:
                clred_ctx_destroy(self.ctx)
                self.ctx = NULL

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def device(self):
        return _device_dict(clred_ctx_device(self.c()))

    def timing(self, reset=False):
        """Device work so far: kernel/upload/download seconds, bytes and counts."""
        cdef clred_status s = CLRED_OK
        cdef clred_timing t
        with self._lock:
            with nogil:
                clred_ctx_timing(self.ctx, &t)
            if reset:
                clred_ctx_timing_reset(self.ctx)
        return dict(kernel_s=t.kernel_s, upload_s=t.upload_s, download_s=t.download_s, upload_bytes=t.upload_bytes,
                    download_bytes=t.download_bytes, uploads=t.uploads, downloads=t.downloads, kernels=t.kernels)

    # ---- device images

    def upload(self, data, var=None, mask=None, header=None):
        """A copy of an array (or Image, CCDData, NDData) on the device."""
        cdef clred_status s = CLRED_OK
        cdef _HostView v = _HostView()
        v.set(data if var is None and mask is None and header is None else _convert.Image(data, var, mask, header))
        cdef clred_dimage *d = NULL
        cdef clred_ctx *c = self.c()
        with self._lock:
            with nogil:
                s = clred_dimage_upload(c, &v.img, &d)
            _check(s)
        return _wrap(self, d)

    def read(self, path, frame=0):
        """Reads one frame of a file straight onto the device."""
        cdef clred_status s = CLRED_OK
        cdef bytes p = _convert.fspath(path)
        cdef const char *cp = p
        cdef clred_dimage *d = NULL
        cdef clred_ctx *c = self.c()
        cdef size_t f = frame
        with self._lock:
            with nogil:
                s = clred_dimage_read(c, cp, f, &d)
            _check(s)
        return _wrap(self, d)

    # ---- steps

    def stats(self, image, *, section=None, region=None, sigma=None, sigma_low=None, sigma_high=None, iters=None,
              mad=False, mean_centre=False):
        """Sigma-clipped statistics (clred stats): a dict with mean, median,
        std, mad, min, max, npix, nrejected, ninvalid, iterations. section is a
        FITS section '[x1:x2,y1:y2]', region ((x0, x1), (y0, y1)) 0-based."""
        cdef clred_status s = CLRED_OK
        cdef _Inputs ins
        cdef clred_dimage *d = NULL
        cdef clred_stats_opts o = clred_stats_defaults()
        cdef clred_section sec
        memset(&sec, 0, sizeof(sec))
        _section(&sec, "section", section)
        _section(&sec, "region", region)
        if sec.set:
            o.x0, o.x1, o.y0, o.y1 = sec.x0, sec.x1, sec.y0, sec.y1
        if sigma is not None:
            o.sigma_lower = o.sigma_upper = sigma
        if sigma_low is not None:
            o.sigma_lower = sigma_low
        if sigma_high is not None:
            o.sigma_upper = sigma_high
        if iters is not None:
            o.max_iters = iters
        o.spread_mad = bool(mad)
        o.centre_mean = bool(mean_centre)
        cdef clred_stats r
        cdef clred_ctx *c = self.c()
        with self._lock:
            ins = _Inputs(self)
            try:
                d = ins.get(image)
                with nogil:
                    s = clred_stats_dev(c, d, &o, &r)
                _check(s)
            finally:
                ins.release()
        return dict(mean=r.mean, median=r.median, std=r.std, mad=r.mad, min=r.min, max=r.max, npix=r.npix,
                    nrejected=r.nrejected, ninvalid=r.ninvalid, iterations=r.iterations)

    def combine(self, frames, *, weights=None, **kw):
        """Combines frames (clred combine): method mean|median|sum|min|max,
        reject none|sigclip|minmax|winsorized|percentile, sigma, sigma_low,
        sigma_high, iters, centre, spread, nlow, nhigh, pct_low, pct_high,
        scale none|mult|add|stars, weights, rejected_map. Frames are file paths
        (read in bands, as the CLI does), arrays or device images. The result
        carries info['ncontrib'], info['nrejected'], info['scales']."""
        cdef clred_status s = CLRED_OK
        cdef _Inputs ins
        cdef clred_combine_opts o = clred_combine_defaults()
        _combine_kw(&o, kw)
        _no_more(kw, "combine")
        frames = list(frames)
        if not frames:
            raise Error("combine: no frames", "input")
        cdef size_t n = len(frames), i
        cdef cnp.ndarray w
        if weights is not None:
            w = np.ascontiguousarray(weights, dtype=np.float64)
            if w.shape[0] != n:
                raise Error(f"weights gives {w.shape[0]} weights for {n} frames", "usage")
            o.weights = <const double *>cnp.PyArray_DATA(w)
        cdef clred_ctx *c = self.c()
        if all(_convert.is_path(f) for f in frames):
            return self._combine_files(frames, &o)
        if not any(isinstance(f, DeviceImage) for f in frames):
            return _convert.like(self._combine_arrays(frames, &o), frames[0])
        cdef const clred_dimage **ds = <const clred_dimage **>calloc(n, sizeof(clred_dimage *))
        cdef clred_combine_dev_result r
        memset(&r, 0, sizeof(r))
        if ds == NULL:
            raise MemoryError()
        like = frames[0]
        try:
            with self._lock:
                ins = _Inputs(self)
                try:
                    for i in range(n):
                        ds[i] = ins.get(frames[i])
                    with nogil:
                        s = clred_combine_dev(c, ds, n, &o, &r)
                    _check(s)
                    dev = ins.any_device
                    img = _out(self, r.image, dev, like)
                    r.image = NULL
                    nc = _out(self, r.ncontrib, dev)
                    r.ncontrib = NULL
                    nr = _out(self, r.nrejected, dev)
                    r.nrejected = NULL
                finally:
                    ins.release()
            img.info = dict(ncontrib=_sci(nc), nrejected=_sci(nr), bands=r.bands,
                            scales=[r.scales[i] for i in range(n)] if r.scales != NULL else None)
            return img
        finally:
            clred_combine_dev_result_free(&r)
            free(ds)

    cdef _combine_arrays(self, list frames, clred_combine_opts *o):
        # Host frames in, host result out: clred_combine_images works in the
        # arrays (zero-copy views where the device shares memory) and writes
        # the result straight into planes that numpy then owns, no copy.
        cdef size_t n = len(frames), i
        cdef clred_status s = CLRED_OK
        views = [_HostView() for _ in range(n)]
        cdef clred_image *imgs = <clred_image *>calloc(n, sizeof(clred_image))
        cdef clred_combine_result r
        memset(&r, 0, sizeof(r))
        if imgs == NULL:
            raise MemoryError()
        try:
            for i in range(n):
                (<_HostView>views[i]).set(frames[i])
                imgs[i] = (<_HostView>views[i]).img
            with self._lock:
                with nogil:
                    s = clred_combine_images(self.ctx, imgs, n, o, &r)
                _check(s)
            return _host_result(&r, n)
        finally:
            clred_combine_result_free(&r)
            free(imgs)

    cdef _combine_files(self, list frames, clred_combine_opts *o):
        cdef clred_status s = CLRED_OK
        cdef size_t n = len(frames), i
        paths = [_convert.fspath(f) for f in frames]
        cdef const char **ps = <const char **>calloc(n, sizeof(char *))
        if ps == NULL:
            raise MemoryError()
        cdef clred_combine_result r
        memset(&r, 0, sizeof(r))
        try:
            for i in range(n):
                ps[i] = paths[i]
            with self._lock:
                with nogil:
                    s = clred_combine_files(self.ctx, ps, n, o, &r)
                _check(s)
            return _host_result(&r, n)
        finally:
            clred_combine_result_free(&r)
            free(ps)

    def _master(self, str kind, frames, bias, dark, dict kw):
        cdef clred_status s = CLRED_OK
        cdef _Inputs ins
        cdef clred_calib_opts o = clred_calib_defaults()
        cdef clred_combine_opts co = clred_combine_defaults()
        if kind == "bias":
            co.method, co.reject = <clred_combine_method>0, <clred_reject_method>1  # as clred master-bias
        else:
            co.method, co.reject = <clred_combine_method>1, <clred_reject_method>0  # median, no rejection
        _calib_kw(&o, kw)
        _combine_kw(&co, kw)
        _no_more(kw, "master_" + kind)
        frames = list(frames)
        cdef size_t n = len(frames), i
        if n == 0:
            raise Error(f"master {kind}: no frames", "input")
        names = [_convert.fspath(f) if _convert.is_path(f) else f"frame {i}".encode() for i, f in enumerate(frames)]
        cdef const clred_dimage **ds = <const clred_dimage **>calloc(n, sizeof(clred_dimage *))
        cdef const char **ns = <const char **>calloc(n, sizeof(char *))
        cdef clred_dimage *out = NULL
        cdef clred_dimage *b = NULL
        cdef clred_dimage *k = NULL
        cdef clred_ctx *c = self.c()
        cdef int which = ("bias", "dark", "flat").index(kind)
        if ds == NULL or ns == NULL:
            free(ds)
            free(ns)
            raise MemoryError()
        try:
            with self._lock:
                ins = _Inputs(self)
                try:
                    for i in range(n):
                        ds[i] = ins.get(frames[i])
                        ns[i] = names[i]
                    b = ins.opt(bias)
                    k = ins.opt(dark)
                    with nogil:
                        if which == 0:
                            s = clred_master_bias_dev(c, ds, ns, n, &o, &co, &out)
                        elif which == 1:
                            s = clred_master_dark_dev(c, ds, ns, n, b, &o, &co, &out)
                        else:
                            s = clred_master_flat_dev(c, ds, ns, n, b, k, &o, &co, &out)
                    _check(s)
                    return _out(self, out, ins.any_device, frames[0])
                finally:
                    ins.release()
        finally:
            free(ds)
            free(ns)

    def master_bias(self, frames, **kw):
        """A master bias (clred master-bias: mean with sigma clipping by
        default) from raw frames (paths, arrays, device images); calibration
        options as calibrate's, combine options as combine's."""
        return self._master("bias", frames, None, None, kw)

    def master_dark(self, frames, *, bias=None, **kw):
        """A per-second master dark (clred master-dark: median by default)."""
        return self._master("dark", frames, bias, None, kw)

    def master_flat(self, frames, *, bias=None, dark=None, **kw):
        """A normalised master flat (clred master-flat: median by default;
        floor=0.2, region='[x1:x2,y1:y2]' the normalisation region)."""
        return self._master("flat", frames, bias, dark, kw)

    def calibrate(self, raw, *, bias=None, dark=None, flat=None, bpm=None, **kw):
        """Calibrates a raw frame or a list of them (clred calibrate):
        saturation, overscan (overscan none|mean|median|fit|auto,
        overscan_order, biassec, trimsec, header_sections), bias, dark x
        exptime, flat, bpm, gain, readnoise, electrons, override. The masters
        go up once for a list."""
        cdef clred_status s = CLRED_OK
        cdef _Inputs ins
        cdef _Inputs rins
        cdef clred_calib_opts o = clred_calib_defaults()
        _calib_kw(&o, kw)
        _no_more(kw, "calibrate")
        single = not isinstance(raw, (list, tuple))
        raws = [raw] if single else list(raw)
        cdef clred_masters_dev m
        memset(&m, 0, sizeof(m))
        cdef clred_calibrator *cal = NULL
        cdef clred_dimage *out = NULL
        cdef clred_dimage *rd
        cdef clred_ctx *c = self.c()
        cdef bytes name
        cdef const char *nm
        results = []
        with self._lock:
            ins = _Inputs(self)
            try:
                m.bias = ins.opt(bias)
                m.dark = ins.opt(dark)
                m.flat = ins.opt(flat)
                m.bad_pixels = ins.opt(bpm)
                masters_dev = ins.any_device
                with nogil:
                    s = clred_calibrator_create_dev(c, &m, &o, &cal)
                _check(s)
                for i, r in enumerate(raws):
                    rins = _Inputs(self)
                    try:
                        rd = rins.get(r)
                        name = _convert.fspath(r) if _convert.is_path(r) else f"frame {i}".encode()
                        nm = name
                        with nogil:
                            s = clred_calibrator_apply_dev(cal, rd, nm, &out)
                        _check(s)
                        results.append(_out(self, out, masters_dev or rins.any_device, r))
                        out = NULL
                    finally:
                        rins.release()
            finally:
                clred_calibrator_free(cal)
                ins.release()
        return results[0] if single else results

    def background(self, image, *, box=None, filter=None, mask_sources=False, clip_sigma=None, iters=None,
                   min_good_frac=None):
        """Mesh background and RMS (clred background): a Background tuple
        (background, rms, global_back, global_rms, mesh_w, mesh_h, nfilled).
        box and filter are one size or (width, height)."""
        cdef clred_status s = CLRED_OK
        cdef _Inputs ins
        cdef clred_dimage *d = NULL
        cdef clred_bkg_opts o = clred_bkg_defaults()
        if box is not None:
            o.box_w, o.box_h = (box, box) if np.isscalar(box) else box
        if filter is not None:
            o.filter_w, o.filter_h = (filter, filter) if np.isscalar(filter) else filter
        o.mask_sources = bool(mask_sources)
        if clip_sigma is not None:
            o.clip_sigma = clip_sigma
        if iters is not None:
            o.max_iters = iters
        if min_good_frac is not None:
            o.min_good_frac = min_good_frac
        cdef clred_dimage *bk = NULL
        cdef clred_dimage *rm = NULL
        cdef clred_bkg_info info
        cdef clred_ctx *c = self.c()
        with self._lock:
            ins = _Inputs(self)
            try:
                d = ins.get(image)
                with nogil:
                    s = clred_background_dev(c, d, &o, &bk, &rm, &info)
                _check(s)
                dev = ins.any_device
                b = _out(self, bk, dev)
                r = _out(self, rm, dev)
            finally:
                ins.release()
        return Background(_sci(b), _sci(r), info.global_back, info.global_rms, info.mesh_w, info.mesh_h,
                          info.nfilled)

    def subtract_background(self, image, **kw):
        """The image minus its mesh background, VAR and MASK kept (clred
        background --subtract); options as background()'s."""
        cdef clred_status s = CLRED_OK
        cdef _Inputs ins
        cdef clred_dimage *d = NULL
        bkg = self.background(self.upload(image) if not isinstance(image, DeviceImage) else image, **kw)
        cdef DeviceImage b = bkg.background
        cdef clred_dimage *out = NULL
        cdef clred_ctx *c = self.c()
        with self._lock:
            ins = _Inputs(self)
            try:
                d = ins.get(image)
                with nogil:
                    s = clred_dimage_copy(d, &out)
                    if s == CLRED_OK:
                        s = clred_dimage_subtract_sci(out, b.d)
                if s != CLRED_OK and out != NULL:
                    clred_dimage_free(out)
                _check(s)
                res = _out(self, out, ins.any_device, image)
            finally:
                ins.release()
        res.info = dict(global_back=bkg.global_back, global_rms=bkg.global_rms)
        return res

    def cosmic(self, image, *, sigclip=None, sigfrac=None, objlim=None, niter=None, gain=None, readnoise=None,
               satlevel=None, sepmed=False, bkg=None, var=None):
        """L.A.Cosmic (clred cosmic) on a copy of image: the cleaned image,
        with COSMIC_RAY | INTERPOLATED mask bits and info['ncosmic']."""
        cdef clred_status s = CLRED_OK
        cdef _Inputs ins
        cdef clred_dimage *d = NULL
        cdef clred_cosmic_opts o = clred_cosmic_defaults()
        if sigclip is not None: o.sigclip = sigclip
        if sigfrac is not None: o.sigfrac = sigfrac
        if objlim is not None: o.objlim = objlim
        if niter is not None: o.max_iters = niter
        if gain is not None: o.gain = gain
        if readnoise is not None: o.readnoise = readnoise
        if satlevel is not None: o.satlevel = satlevel
        o.sepmed = bool(sepmed)
        cdef clred_dimage *out = NULL
        cdef clred_dimage *sky
        cdef clred_dimage *nv
        cdef clred_cosmic_info info
        cdef clred_ctx *c = self.c()
        with self._lock:
            ins = _Inputs(self)
            try:
                d = ins.get(image)
                sky = ins.opt(bkg)
                nv = ins.opt(var)
                with nogil:
                    s = clred_dimage_copy(d, &out)
                    if s == CLRED_OK:
                        s = clred_cosmic_dev(c, out, sky, nv, &o, &info)
                if s != CLRED_OK and out != NULL:
                    clred_dimage_free(out)
                _check(s)
                res = _out(self, out, ins.any_device, image)
            finally:
                ins.release()
        res.info = dict(ncosmic=info.ncosmic, iterations=info.iterations)
        return res

    def sources(self, image, *, thresh=None, minarea=None, fwhm=None, deblend=None, saturation=None, bkg=None,
                rms=None, bkg_value=None, rms_value=None, segmentation=False):
        """Detects and measures sources (clred sources): a structured array
        (x, y, flux, flux_err, peak, a, b, theta, fwhm, ellipticity, npix,
        flags), 0-based pixel centres. bkg/rms are maps or scalars (bkg_value,
        rms_value); none: the global clipped level. segmentation=True also
        returns the label map."""
        cdef clred_status s = CLRED_OK
        cdef _Inputs ins
        cdef clred_dimage *d = NULL
        cdef clred_detect_opts o = clred_detect_defaults()
        if thresh is not None: o.thresh = thresh
        if minarea is not None: o.minarea = minarea
        if fwhm is not None: o.fwhm = fwhm
        if deblend is not None: o.deblend_contrast = deblend
        if saturation is not None: o.saturation = saturation
        cdef double bv = NAN if bkg_value is None else bkg_value
        cdef double rv = 0.0 if rms_value is None else rms_value
        cdef clred_source *lst = NULL
        cdef size_t n = 0
        cdef clred_ctx *c = self.c()
        cdef cnp.ndarray seg = None
        cdef clred_dimage *bd
        cdef clred_dimage *rd
        cdef _HostView hv
        if bkg is None and rms is None and bkg_value is None and rms_value is None and \
                not isinstance(image, DeviceImage):
            # As clred sources: the global clipped level and noise of a host
            # frame, measured on the host.
            hv = _HostView()
            hv.set(read(image) if _convert.is_path(image) else image)
            with nogil:
                s = clred_global_background(&hv.img, o.ignore_bits, &bv, &rv)
            _check(s)
        with self._lock:
            ins = _Inputs(self)
            try:
                d = ins.get(image)
                bd = ins.opt(bkg)
                rd = ins.opt(rms)
                if segmentation:
                    seg = np.zeros((clred_dimage_height(d), clred_dimage_width(d)), dtype=np.int32)
                    o.segmentation = <int32_t *>cnp.PyArray_DATA(seg)
                with nogil:
                    s = clred_detect_sources_dev(c, d, bd, rd, bv, rv, &o, &lst, &n)
                _check(s)
            finally:
                ins.release()
        cat = np.zeros(n, dtype=SOURCE_DTYPE)
        if n:
            raw = np.frombuffer((<char *>lst)[:n * sizeof(clred_source)], dtype=_SOURCE_C)
            for name in SOURCE_DTYPE.names:
                cat[name] = raw[name]
        free(lst)
        return (cat, seg) if segmentation else cat

    detect = sources

    def photometry(self, image, x=None, y=None, *, positions=None, radius=None, annulus=None, zeropoint=None,
                   clip_sigma=None):
        """Aperture photometry (clred photometry) at x, y (0-based) or
        positions (an (n, 2) array or a source catalog); annulus (in, out)
        defaults to (8, 12) px. A structured array (x, y, flux, flux_err,
        area, bkg, bkg_rms, nannulus, mag, mag_err, flags)."""
        cdef clred_status s = CLRED_OK
        cdef _Inputs ins
        cdef clred_dimage *d = NULL
        xs_, ys_ = _positions_xy("photometry", x, y, positions)
        cdef cnp.ndarray xs = xs_
        cdef cnp.ndarray ys = ys_
        cdef clred_phot_opts o = clred_phot_defaults()
        if radius is not None: o.radius = radius
        if annulus is not None: o.annulus_in, o.annulus_out = annulus
        if zeropoint is not None: o.zeropoint = zeropoint
        if clip_sigma is not None: o.clip_sigma = clip_sigma
        cdef size_t n = xs.shape[0]
        out = np.zeros(n, dtype=_PHOT_C)
        cdef cnp.ndarray outa = out
        cdef clred_ctx *c = self.c()
        with self._lock:
            ins = _Inputs(self)
            try:
                d = ins.get(image)
                with nogil:
                    s = clred_aperture_photometry_dev(c, d, <double *>cnp.PyArray_DATA(xs), <double *>cnp.PyArray_DATA(ys),
                                                      n, &o, <clred_phot *>cnp.PyArray_DATA(outa))
                _check(s)
            finally:
                ins.release()
        res = np.zeros(n, dtype=PHOT_DTYPE)
        for name in PHOT_DTYPE.names:
            res[name] = out[name]
        return res

    def psf_photometry(self, image, psf, x=None, y=None, *, positions=None, fit_radius=None, forced=False,
                       fit_sky=True, group_radius=None, zeropoint=None, noise_rms=None):
        """PSF-fit photometry (clred photometry --psf) at x, y (0-based) or
        positions, with psf a 2-D array (recentred and scaled to unit sum):
        flux, a constant local sky (fit_sky) and, unless forced, the position
        of each source with its close neighbours (group_radius; -1 = alone),
        weighted by the VAR plane. A structured array (x, y, x_err, y_err,
        flux, flux_err, sky, chi2_dof, npix, nfit, mag, mag_err, flags)."""
        cdef clred_status s = CLRED_OK
        cdef _Inputs ins
        cdef clred_dimage *d = NULL
        cdef clred_psf model
        xs_, ys_ = _positions_xy("psf_photometry", x, y, positions)
        cdef cnp.ndarray xs = xs_
        cdef cnp.ndarray ys = ys_
        cdef cnp.ndarray pa = np.ascontiguousarray(psf, dtype=np.float32)
        if pa.ndim != 2:
            raise Error("psf_photometry: the PSF must be a 2-D array", "usage")
        cdef clred_psf_phot_opts o = clred_psf_phot_defaults()
        if fit_radius is not None: o.fit_radius = fit_radius
        if group_radius is not None: o.group_radius = group_radius
        if zeropoint is not None: o.zeropoint = zeropoint
        if noise_rms is not None: o.noise_rms = noise_rms
        o.fit_position = 0 if forced else 1
        o.fit_sky = 1 if fit_sky else 0
        cdef size_t n = xs.shape[0]
        out = np.zeros(n, dtype=_PSFPHOT_C)
        cdef cnp.ndarray outa = out
        cdef clred_ctx *c = self.c()
        memset(&model, 0, sizeof(model))
        _check(clred_psf_from_array(<float *>cnp.PyArray_DATA(pa), <size_t>pa.shape[1], <size_t>pa.shape[0], 0,
                                    &model))
        try:
            with self._lock:
                ins = _Inputs(self)
                try:
                    d = ins.get(image)
                    with nogil:
                        s = clred_psf_photometry_dev(c, d, &model, <double *>cnp.PyArray_DATA(xs),
                                                     <double *>cnp.PyArray_DATA(ys), n, &o,
                                                     <clred_psf_phot *>cnp.PyArray_DATA(outa))
                    _check(s)
                finally:
                    ins.release()
        finally:
            clred_psf_free(&model)
        res = np.zeros(n, dtype=PSF_PHOT_DTYPE)
        for name in PSF_PHOT_DTYPE.names:
            res[name] = out[name]
        return res

    def register(self, frames, *, ref=0, **kw):
        """Shifts of every frame against frames[ref] (or 'median'), by phase
        correlation (clred register): a structured array (dx, dy, psr, peak)
        with img(x, y) ~ ref(x - dx, y - dy). Options precision, window
        none|hann|tukey, phase, max_shift, fft."""
        cdef clred_status s = CLRED_OK
        cdef _Inputs ins
        cdef clred_phasecorr_opts o = clred_phasecorr_defaults()
        _phasecorr_kw(&o, kw)
        _no_more(kw, "register")
        frames = list(frames)
        cdef size_t n = len(frames), i
        cdef long r = _ref(ref)
        out = np.zeros(n, dtype=[("dx", "f8"), ("dy", "f8"), ("psr", "f8"), ("peak", "f8")])
        cdef cnp.ndarray outa = out
        cdef const clred_dimage **ds = <const clred_dimage **>calloc(n, sizeof(clred_dimage *))
        cdef clred_ctx *c = self.c()
        if ds == NULL:
            raise MemoryError()
        try:
            with self._lock:
                ins = _Inputs(self)
                try:
                    for i in range(n):
                        ds[i] = ins.get(frames[i])
                    with nogil:
                        s = clred_measure_shifts_dev(c, ds, n, r, &o, <clred_shift *>cnp.PyArray_DATA(outa))
                    _check(s)
                finally:
                    ins.release()
        finally:
            free(ds)
        return out

    def stack(self, frames, *, ref=0, align_by="phasecorr", model=None, grid=None, interp=None, **kw):
        """Registers, resamples and combines (clred combine --align): align_by
        phasecorr|stars, model similarity|affine, ref N or 'median', grid
        reference|union, interp, precision, and the combine options. Paths
        take clred_stack_files (the CLI's route), otherwise the frames stay on
        the device. info['shifts'] / info['transforms'] describe the alignment."""
        cdef clred_status s = CLRED_OK
        cdef _Inputs ins
        cdef clred_stack_opts o = clred_stack_defaults()
        o.ref_index = _ref(ref)
        o.method = <clred_register_method>_index("align_by", align_by, ("phasecorr", "stars"))
        if model is not None:
            o.mopts.model = <clred_match_model>_index("model", model, ("similarity", "affine"))
        if grid is not None:
            o.grid = <clred_grid>_index("grid", grid, ("reference", "union"))
        if interp is not None:
            o.ropts.interp = <clred_interp>_index("interp", interp, _INTERPS)
        _phasecorr_kw(&o.popts, kw)
        _combine_kw(&o.copts, kw)
        _no_more(kw, "stack")
        frames = list(frames)
        cdef size_t n = len(frames), i
        if n == 0:
            raise Error("stack: no frames", "input")
        cdef clred_alignment al
        memset(&al, 0, sizeof(al))
        cdef clred_combine_result hr
        cdef clred_combine_dev_result r
        memset(&hr, 0, sizeof(hr))
        memset(&r, 0, sizeof(r))
        cdef const clred_dimage **ds = <const clred_dimage **>calloc(n, sizeof(clred_dimage *))
        cdef const char **ps = <const char **>calloc(n, sizeof(char *))
        cdef clred_ctx *c = self.c()
        if ds == NULL or ps == NULL:
            free(ds)
            free(ps)
            raise MemoryError()
        try:
            with self._lock:
                if all(_convert.is_path(f) for f in frames):
                    paths = [_convert.fspath(f) for f in frames]
                    for i in range(n):
                        ps[i] = paths[i]
                    with nogil:
                        s = clred_stack_files(c, ps, n, &o, &hr, &al)
                    _check(s)
                    img = _host_result(&hr, n)
                else:
                    ins = _Inputs(self)
                    try:
                        for i in range(n):
                            ds[i] = ins.get(frames[i])
                        with nogil:
                            s = clred_stack_dev(c, ds, n, &o, &r, &al)
                        _check(s)
                        dev = ins.any_device
                        img = _out(self, r.image, dev, frames[0])
                        r.image = NULL
                        nc = _out(self, r.ncontrib, dev)
                        r.ncontrib = NULL
                        img.info = dict(ncontrib=_sci(nc), bands=r.bands)
                    finally:
                        ins.release()
            info = img.info
            if al.shifts != NULL:
                info["shifts"] = [ShiftResult(al.shifts[i].dx, al.shifts[i].dy, al.shifts[i].psr, al.shifts[i].peak)
                                  for i in range(al.n)]
            if al.to_ref != NULL:
                info["transforms"] = [tuple(al.to_ref[i].m[k] for k in range(6)) for i in range(al.n)]
            info["grid"] = (al.geometry.width, al.geometry.height, al.geometry.ox, al.geometry.oy)
            return img
        finally:
            clred_alignment_free(&al)
            clred_combine_result_free(&hr)
            clred_combine_dev_result_free(&r)
            free(ds)
            free(ps)

    def resample(self, image, transform=None, *, shift=None, interp=None, out_shape=None, conserve_flux=True):
        """Resamples through transform (6 coefficients: x' = m0 x + m1 y + m2,
        y' = m3 x + m4 y + m5, input -> output pixels) or shift=(dx, dy)."""
        cdef clred_status s = CLRED_OK
        cdef _Inputs ins
        cdef clred_dimage *d = NULL
        cdef clred_transform t
        if shift is not None:
            m = (1.0, 0.0, shift[0], 0.0, 1.0, shift[1])
        elif transform is not None:
            m = tuple(float(v) for v in np.asarray(transform, dtype=np.float64).ravel())
            if len(m) != 6:
                raise Error("resample: a transform has 6 coefficients", "usage")
        else:
            raise Error("resample: no transform or shift", "usage")
        for k in range(6):
            t.m[k] = m[k]
        cdef clred_resample_opts o = clred_resample_defaults()
        if interp is not None:
            o.interp = <clred_interp>_index("interp", interp, _INTERPS)
        if out_shape is not None:
            o.out_height, o.out_width = out_shape
        o.conserve_flux = bool(conserve_flux)
        cdef clred_dimage *out = NULL
        cdef clred_ctx *c = self.c()
        with self._lock:
            ins = _Inputs(self)
            try:
                d = ins.get(image)
                with nogil:
                    s = clred_resample_dev(c, d, &t, &o, &out)
                _check(s)
                return _out(self, out, ins.any_device, image)
            finally:
                ins.release()

    def night(self, inputs, outdir, *, shard=None, saturation=None, cosmic=True, background=True, strict=False,
              overwrite=False, stream=True):
        """A whole night (clred run): classification, masters, calibration,
        cosmic rays, background, per (object, filter) stacks, manifest.
        shard=(i, n) takes groups g % n == i (0-based i). A summary dict."""
        cdef clred_status s = CLRED_OK
        cdef clred_night_opts o = clred_night_defaults()
        if shard is not None:
            o.shard_index, o.shard_count = shard
        if saturation is not None:
            o.calib.saturation = saturation
        o.cosmic = bool(cosmic)
        o.background = bool(background)
        o.strict = bool(strict)
        o.overwrite = bool(overwrite)
        o.stream = bool(stream)
        paths = [_convert.fspath(p) for p in inputs]
        cdef size_t n = len(paths), i
        cdef const char **ps = <const char **>calloc(n + 1, sizeof(char *))
        cdef bytes od = _convert.fspath(outdir)
        cdef const char *odc = od
        cdef clred_night_report rep
        cdef clred_ctx *c = self.c()
        memset(&rep, 0, sizeof(rep))
        if ps == NULL:
            raise MemoryError()
        try:
            for i in range(n):
                ps[i] = paths[i]
            with self._lock:
                with nogil:
                    s = clred_night_run(c, ps, n, odc, &o, &rep)
                _check(s)
            return dict(ninputs=rep.ninputs, nbias=rep.nbias, ndark=rep.ndark, nflat=rep.nflat,
                        nscience=rep.nscience, ngroups=rep.ngroups, ngroups_here=rep.ngroups_here,
                        nwritten=rep.nwritten, nskipped=rep.nskipped, wall_s=rep.wall_s,
                        manifest=rep.manifest.decode() if rep.manifest != NULL else None,
                        products=[_item(&rep.products[i]) for i in range(rep.nproducts)],
                        left_out=[_item(&rep.left_out[i]) for i in range(rep.nleft_out)])
        finally:
            clred_night_report_free(&rep)
            free(ps)


cdef dict _item(clred_night_item *it):
    return dict(path=it.path.decode() if it.path != NULL else None, what=it.what.decode() if it.what != NULL else None,
                written=bool(it.written), reason=it.reason.decode() if it.reason != NULL else None)


cdef object _sci(obj):
    """A SCI-only product: its array (host) or the device image itself."""
    if obj is None or isinstance(obj, DeviceImage):
        return obj
    return obj.data


cdef object _host_result(clred_combine_result *r, size_t n):
    cdef size_t i
    cdef size_t w = r.image.width, h = r.image.height
    img = _take_image(&r.image)
    nc = _own(r.ncontrib, h, w, cnp.NPY_FLOAT32)
    r.ncontrib = NULL
    nr = _own(r.nrejected, h, w, cnp.NPY_FLOAT32)
    r.nrejected = NULL
    img.info = dict(ncontrib=nc, nrejected=nr, bands=r.bands,
                    scales=[r.scales[i] for i in range(n)] if r.scales != NULL else None)
    return img


# numpy views of the C structs (native alignment), for catalogs.
_SOURCE_C = np.dtype({"names": list(SOURCE_DTYPE.names),
                      "formats": ["f8"] * 10 + [np.uintp, np.uint32],
                      "offsets": [<size_t>&(<clred_source *>0).x, <size_t>&(<clred_source *>0).y,
                                  <size_t>&(<clred_source *>0).flux, <size_t>&(<clred_source *>0).flux_err,
                                  <size_t>&(<clred_source *>0).peak, <size_t>&(<clred_source *>0).a,
                                  <size_t>&(<clred_source *>0).b, <size_t>&(<clred_source *>0).theta,
                                  <size_t>&(<clred_source *>0).fwhm, <size_t>&(<clred_source *>0).ellipticity,
                                  <size_t>&(<clred_source *>0).npix, <size_t>&(<clred_source *>0).flags],
                      "itemsize": sizeof(clred_source)})
_PHOT_C = np.dtype({"names": list(PHOT_DTYPE.names),
                    "formats": ["f8"] * 7 + [np.uintp, "f8", "f8", np.uint32],
                    "offsets": [<size_t>&(<clred_phot *>0).x, <size_t>&(<clred_phot *>0).y,
                                <size_t>&(<clred_phot *>0).flux, <size_t>&(<clred_phot *>0).flux_err,
                                <size_t>&(<clred_phot *>0).area, <size_t>&(<clred_phot *>0).bkg,
                                <size_t>&(<clred_phot *>0).bkg_rms, <size_t>&(<clred_phot *>0).nannulus,
                                <size_t>&(<clred_phot *>0).mag, <size_t>&(<clred_phot *>0).mag_err,
                                <size_t>&(<clred_phot *>0).flags],
                    "itemsize": sizeof(clred_phot)})

_PSFPHOT_C = np.dtype({"names": list(PSF_PHOT_DTYPE.names),
                       "formats": ["f8"] * 8 + [np.uintp, np.uintp, "f8", "f8", np.uint32],
                       "offsets": [<size_t>&(<clred_psf_phot *>0).x, <size_t>&(<clred_psf_phot *>0).y,
                                   <size_t>&(<clred_psf_phot *>0).x_err, <size_t>&(<clred_psf_phot *>0).y_err,
                                   <size_t>&(<clred_psf_phot *>0).flux, <size_t>&(<clred_psf_phot *>0).flux_err,
                                   <size_t>&(<clred_psf_phot *>0).sky, <size_t>&(<clred_psf_phot *>0).chi2_dof,
                                   <size_t>&(<clred_psf_phot *>0).npix, <size_t>&(<clred_psf_phot *>0).nfit,
                                   <size_t>&(<clred_psf_phot *>0).mag, <size_t>&(<clred_psf_phot *>0).mag_err,
                                   <size_t>&(<clred_psf_phot *>0).flags],
                       "itemsize": sizeof(clred_psf_phot)})


# ------------------------------------------------- the C library's own time

cdef double _now() noexcept nogil:
    cdef timespec t
    clock_gettime(CLOCK_MONOTONIC, &t)
    return t.tv_sec + 1e-9 * t.tv_nsec


def _c_time_stats(Context ctx, image, int repeat):
    """Seconds per clred_image_stats (host array) or clred_stats_dev (device
    image) call, timed in C: bench/python_overhead.py's baseline."""
    cdef clred_stats_opts o = clred_stats_defaults()
    cdef clred_stats r
    cdef clred_status s = CLRED_OK
    cdef _HostView v
    cdef clred_dimage *d = NULL
    cdef int i
    cdef double t0, t1
    if isinstance(image, DeviceImage):
        d = (<DeviceImage>image).ptr()
    else:
        v = _HostView()
        v.set(image)
    with ctx._lock:
        with nogil:
            t0 = _now()
            for i in range(repeat):
                if d != NULL:
                    s = clred_stats_dev(ctx.ctx, d, &o, &r)
                else:
                    s = clred_image_stats(ctx.ctx, &v.img, &o, &r)
                if s != CLRED_OK:
                    break
            t1 = _now()
        _check(s)
    return (t1 - t0) / repeat


def _c_time_combine(Context ctx, frames, str method, int repeat):
    """Seconds per clred_combine_images call on the arrays, timed in C."""
    cdef clred_combine_opts o = clred_combine_defaults()
    o.method = <clred_combine_method>_index("method", method, _METHODS)
    cdef size_t n = len(frames), i
    views = [_HostView() for _ in range(n)]
    cdef clred_image *imgs = <clred_image *>calloc(n, sizeof(clred_image))
    cdef clred_combine_result r
    cdef clred_status s = CLRED_OK
    cdef double t0, t1, best = 1e300
    cdef int k
    if imgs == NULL:
        raise MemoryError()
    try:
        for i in range(n):
            (<_HostView>views[i]).set(frames[i])
            imgs[i] = (<_HostView>views[i]).img
        with ctx._lock:
            for k in range(repeat):
                memset(&r, 0, sizeof(r))
                with nogil:
                    t0 = _now()
                    s = clred_combine_images(ctx.ctx, imgs, n, &o, &r)
                    t1 = _now()
                    clred_combine_result_free(&r)
                _check(s)
                best = min(best, t1 - t0)
        return best
    finally:
        free(imgs)
