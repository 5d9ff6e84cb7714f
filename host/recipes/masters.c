/* Master bias, dark and flat: each frame goes through the calibration kernel
 * (overscan, trim, and the masters made so far), flats are normalised on the
 * device, and the frames are stacked with clred_combine_images.
 *
 * Choices:
 * - each frame's VAR is the calibration's noise model (read noise, and the
 *   photon noise for darks and flats), so the combine propagates variances
 *   instead of estimating them from few frames; bias frames have no photon
 *   term. The bias (and dark) subtracted from darks and flats contribute no
 *   variance here: the science calibration adds the masters' variances once;
 * - the master dark is per second: each dark is divided by its EXPTIME;
 * - masters are in ADU (to_electrons is ignored): the science calibration
 *   converts once, at the end;
 * - each flat is divided by the sigma-clipped median (clred_stats_defaults)
 *   of its region (flat_region, else the whole trimmed frame), computed on
 *   the device; after combining, pixels below flat_floor or not finite become
 *   NaN with NO_DATA;
 * - IMAGETYP, when present, must name the kind (bias/zero, dark, flat), bias
 *   frames must have EXPTIME 0, darks one common positive EXPTIME, unless
 *   override_checks;
 * - every variant (files, host images, device images) works on the device:
 *   each raw frame goes there once (read onto it, borrowed, or already
 *   there), is calibrated there, and the calibrated frames are combined
 *   there (clred_combine_dev); only the master comes back. When the
 *   calibrated frames would not fit the context's memory budget, each is
 *   downloaded once calibrated and they are combined from host memory
 *   (clred_combine_images, in bands): the same kernels, the same bits. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calibrate.h"
#include "stats.h"

typedef enum { KIND_BIAS, KIND_DARK, KIND_FLAT } master_kind;

static const char *kind_name(master_kind k) { return k == KIND_BIAS ? "bias" : k == KIND_DARK ? "dark" : "flat"; }

static int contains_word(const char *text, const char *word)
{
    char low[80];
    size_t i = 0;
    for (; text[i] && i + 1 < sizeof low; i++)
        low[i] = (char)tolower((unsigned char)text[i]);
    low[i] = '\0';
    return strstr(low, word) != NULL;
}

/* IMAGETYP, when the header has one, must say what the frame is for. */
static clred_status check_frame_type(const clred_header *h, const char *path, master_kind kind, int override)
{
    char type[72];
    if (override || !clred_header_get_string(h, "IMAGETYP", type, sizeof type))
        return CLRED_OK;
    int ok = kind == KIND_BIAS ? contains_word(type, "bias") || contains_word(type, "zero")
             : kind == KIND_DARK ? contains_word(type, "dark")
                                 : contains_word(type, "flat");
    if (!ok)
        return clred_fail(CLRED_ERR_INPUT, "%s: IMAGETYP '%s' is not a %s frame (override to use it anyway)", path,
                          type, kind_name(kind));
    return CLRED_OK;
}

/* The exposure time a master needs from a frame: none for a bias (but it
 * must be 0 when given), positive and common to all darks, present for flats
 * only when a dark is subtracted (the calibrator checks that). */
static clred_status check_exptime(const clred_header *h, const char *path, master_kind kind,
                                  const clred_calib_opts *o, double *first_t, double *t)
{
    *t = NAN;
    int have = o->exptime >= 0 ? (*t = o->exptime, 1) : clred_header_get_double(h, "EXPTIME", t);
    if (kind == KIND_BIAS) {
        if (have && fabs(*t) > 1e-3 && !o->override_checks)
            return clred_fail(CLRED_ERR_INPUT, "%s: EXPTIME %g s: a bias frame has none (override to use it)", path,
                              *t);
        return CLRED_OK;
    }
    if (kind != KIND_DARK)
        return CLRED_OK;
    if (!have)
        return clred_fail(CLRED_ERR_INPUT, "%s: no EXPTIME in the header; a dark is scaled to one second by it", path);
    if (!(*t > 0))
        return clred_fail(CLRED_ERR_INPUT, "%s: EXPTIME %g s: a dark needs a positive exposure time", path, *t);
    if (isnan(*first_t))
        *first_t = *t;
    else if (fabs(*t - *first_t) > 1e-3 * *first_t && !o->override_checks)
        return clred_fail(CLRED_ERR_INPUT, "%s: EXPTIME %g s differs from the first dark's %g s (override to combine "
                          "them scaled to one second)", path, *t, *first_t);
    return CLRED_OK;
}

static clred_status scale_device(clred_ctx *ctx, cl_mem buf, size_t n, double factor)
{
    cl_kernel k;
    CLRED_TRY(clred_kernel(ctx, "arith", NULL, "scale_offset", &k));
    float scale = (float)factor, offset = 0.0f;
    cl_uint count = (cl_uint)n;
    CLRED_TRY(clred_args(k, "scale_offset", CLRED_ARG(buf), CLRED_ARG(scale), CLRED_ARG(offset), CLRED_ARG(count),
                         (size_t)0));
    return clred_run_tiled(ctx, k, "scale_offset", 1, &n);
}

/* Divides a calibrated flat (on the device) by the clipped median of its
 * region; *level receives the median. */
static clred_status normalise_flat(clred_ctx *ctx, const clred_dimage *f, const clred_calib_opts *o,
                                   const char *path, double *level)
{
    clred_stats_opts so = clred_stats_defaults();
    const clred_section *r = &o->flat_region;
    if (r->set) {
        if (!(r->x1 > r->x0 && r->y1 > r->y0 && r->x1 <= f->width && r->y1 <= f->height))
            return clred_fail(CLRED_ERR_USAGE,
                              "%s: the flat region [%zu:%zu,%zu:%zu] lies outside the %zu x %zu trimmed frame", path,
                              r->x0 + 1, r->x1, r->y0 + 1, r->y1, f->width, f->height);
        so.x0 = r->x0, so.x1 = r->x1, so.y0 = r->y0, so.y1 = r->y1;
    }
    clred_stats st;
    CLRED_TRY(clred_stats_device(ctx, clred_dimage_sci(f), clred_dimage_mask(f), f->width, f->height, &so, &st));
    if (!(st.median > 0) || !isfinite(st.median))
        return clred_fail(CLRED_ERR_INPUT, "%s: the flat's clipped median is %g after bias/dark subtraction; it cannot "
                          "be normalised", path, st.median);
    size_t n = clred_dimage_pixels(f);
    CLRED_TRY(scale_device(ctx, clred_dimage_sci(f), n, 1.0 / st.median));
    CLRED_TRY(scale_device(ctx, clred_dimage_var(f), n, 1.0 / (st.median * st.median)));
    *level = st.median;
    return CLRED_OK;
}

/* ------------------------------------------------------------ raw frames */

/* Where the raw frames come from: device images, host images or files. */
typedef struct {
    const clred_dimage *const *dframes;
    const char *const *names; /* of dframes; NULL or NULL entries: "frame i" */
    const clred_image *images;
    const char *const *paths;
    size_t n;
} raw_source;

static const char *raw_name(const raw_source *s, size_t i, char *buf, size_t size)
{
    if (s->paths)
        return s->paths[i];
    if (s->names && s->names[i] && *s->names[i])
        return s->names[i];
    snprintf(buf, size, "frame %zu", i + 1);
    return buf;
}

/* Raw frame i on the device; *owned (when not NULL) is freed by the caller. */
static clred_status raw_frame(clred_ctx *ctx, const raw_source *s, size_t i, clred_dimage **owned,
                              const clred_dimage **raw)
{
    *owned = NULL;
    if (s->dframes) {
        if (!s->dframes[i])
            return clred_fail(CLRED_ERR_USAGE, "master: raw frame %zu is missing", i + 1);
        *raw = s->dframes[i];
        return CLRED_OK;
    }
    if (s->images) {
        const clred_image *img = &s->images[i];
        if (!img->sci)
            return clred_fail(CLRED_ERR_USAGE, "frame %zu: no pixels to calibrate", i + 1);
        /* SCI and the header are all the calibration reads */
        clred_image sci_only = {img->width, img->height, img->sci, NULL, NULL, img->header};
        CLRED_TRY(clred_dimage_borrow(ctx, &sci_only, owned));
    } else {
        clred_file_info info;
        CLRED_TRY(clred_file_info_read(s->paths[i], &info));
        if (info.nframes > 1)
            return clred_fail(CLRED_ERR_INPUT, "%s: a cube of %zu frames where one 2-D raw frame is expected",
                              s->paths[i], info.nframes);
        CLRED_TRY(clred_dimage_read(ctx, s->paths[i], 0, owned));
    }
    *raw = *owned;
    return CLRED_OK;
}

/* Raw frame i checked, calibrated (and a flat normalised) into *out. */
static clred_status calibrate_one(clred_calibrator *cal, clred_ctx *ctx, const raw_source *s, size_t i,
                                  master_kind kind, const clred_calib_opts *o, double *first_t, double *level,
                                  clred_dimage **out)
{
    *out = NULL;
    *level = NAN;
    char buf[64];
    const char *name = raw_name(s, i, buf, sizeof buf);
    clred_dimage *owned;
    const clred_dimage *raw = NULL;
    CLRED_TRY(raw_frame(ctx, s, i, &owned, &raw));
    double t = NAN;
    clred_status st = check_frame_type(raw->header, name, kind, o->override_checks);
    if (st == CLRED_OK)
        st = check_exptime(raw->header, name, kind, o, first_t, &t);
    cal_frame_kind fk = {kind == KIND_BIAS, kind == KIND_DARK ? 1.0 / t : 0.0, 0};
    if (st == CLRED_OK)
        st = cal_apply_dev(cal, raw, name, &fk, out);
    clred_dimage_free(owned);
    if (st == CLRED_OK && kind == KIND_FLAT)
        st = normalise_flat(ctx, *out, o, name, level);
    if (st != CLRED_OK) {
        clred_dimage_free(*out);
        *out = NULL;
    }
    return st;
}

static clred_status check_same_shape(const clred_dimage *f, const clred_dimage *first, const raw_source *s,
                                     size_t i)
{
    if (f->width == first->width && f->height == first->height)
        return CLRED_OK;
    char b1[64], b0[64];
    return clred_fail(CLRED_ERR_INPUT, "%s is %zu x %zu after trimming but %s is %zu x %zu",
                      raw_name(s, i, b1, sizeof b1), f->width, f->height, raw_name(s, 0, b0, sizeof b0),
                      first->width, first->height);
}

/* The raw frames' pixels (the first frame's shape for all): the device path
 * holds every calibrated frame (SCI, VAR, MASK) at once. */
static clred_status raw_shape(const raw_source *s, size_t *width, size_t *height)
{
    if (s->dframes) {
        if (!s->dframes[0])
            return clred_fail(CLRED_ERR_USAGE, "master: raw frame 1 is missing");
        *width = s->dframes[0]->width, *height = s->dframes[0]->height;
    } else if (s->images) {
        *width = s->images[0].width, *height = s->images[0].height;
    } else {
        clred_file_info info;
        CLRED_TRY(clred_file_info_read(s->paths[0], &info));
        *width = info.width, *height = info.height;
    }
    return CLRED_OK;
}

/* -------------------------------------------------------------- masters */

/* Pixels of a master flat below the floor, or not finite, carry no data. */
static size_t apply_floor(clred_image *flat, double floor_value)
{
    size_t n = 0;
    for (size_t i = 0; i < flat->width * flat->height; i++) {
        if (!(flat->sci[i] >= floor_value) || (flat->mask[i] & CLRED_MASK_NO_DATA)) {
            flat->sci[i] = NAN;
            flat->var[i] = NAN;
            flat->mask[i] |= CLRED_MASK_NO_DATA;
            n++;
        }
    }
    return n;
}

/* apply_floor on the device: the float threshold is the smallest float not
 * below the floor, so that the kernel's float comparison decides as the
 * double one above. */
static clred_status apply_floor_dev(clred_ctx *ctx, clred_dimage *flat, double floor_value, size_t *floored)
{
    float f = (float)floor_value;
    if ((double)f < floor_value)
        f = nextafterf(f, INFINITY);
    cl_kernel k;
    CLRED_TRY(clred_kernel(ctx, "calibrate", NULL, "flat_floor", &k));
    cl_uint zero = 0, count = 0, n = (cl_uint)clred_dimage_pixels(flat);
    cl_mem counter;
    CLRED_TRY(clred_buffer(ctx, CL_MEM_READ_WRITE, sizeof zero, &zero, &counter, "flat floor count"));
    cl_mem sci = clred_dimage_sci(flat), var = clred_dimage_var(flat), mask = clred_dimage_mask(flat);
    size_t global = n;
    clred_status st = clred_args(k, "flat_floor", CLRED_ARG(sci), CLRED_ARG(var), CLRED_ARG(mask), CLRED_ARG(f),
                                 CLRED_ARG(n), CLRED_ARG(counter), (size_t)0);
    if (st == CLRED_OK)
        st = clred_run_tiled(ctx, k, "flat_floor", 1, &global);
    if (st == CLRED_OK)
        st = clred_download(ctx, counter, 0, sizeof count, &count);
    clred_release(&counter);
    *floored = count;
    return st;
}

static clred_status describe_master(clred_header *h, master_kind kind, const raw_source *s, const double *levels,
                                    const clred_calib_opts *o, size_t floored)
{
    char text[400], buf[64];
    size_t n = s->n;
    snprintf(text, sizeof text, "clred master-%s: %zu frame%s, first %s", kind_name(kind), n, n == 1 ? "" : "s",
             raw_name(s, 0, buf, sizeof buf));
    CLRED_TRY(clred_header_add_history(h, text));
    if (kind == KIND_DARK) {
        CLRED_TRY(clred_header_add_history(h, "clred master-dark: each dark divided by its EXPTIME"));
        CLRED_TRY(clred_header_set_double(h, "EXPTIME", 1.0, "master dark: per second"));
        CLRED_TRY(clred_header_set_string(h, "BUNIT", "adu/s", "pixel unit"));
    }
    if (kind == KIND_FLAT) {
        /* the numbers first: HISTORY text is cut every 72 characters */
        for (size_t i = 0; i < n; i++) {
            snprintf(text, sizeof text, "clred master-flat: frame %zu divided by its clipped median %.6g", i + 1,
                     levels[i]);
            CLRED_TRY(clred_header_add_history(h, text));
            snprintf(text, sizeof text, "clred master-flat: frame %zu is %s", i + 1, raw_name(s, i, buf, sizeof buf));
            CLRED_TRY(clred_header_add_history(h, text));
        }
        snprintf(text, sizeof text, "clred master-flat: %zu pixels below %g set NaN / NO_DATA", floored,
                 o->flat_floor);
        CLRED_TRY(clred_header_add_history(h, text));
        CLRED_TRY(clred_header_set_string(h, "BUNIT", "", "normalised flat (dimensionless)"));
    }
    return clred_header_set_string(h, "IMAGETYP", kind == KIND_BIAS ? "MASTER BIAS"
                                                  : kind == KIND_DARK ? "MASTER DARK" : "MASTER FLAT",
                                   "clred master");
}

/* A master as it comes out: on the device, or in host memory (the host-held
 * path); exactly one is set. */
typedef struct {
    clred_dimage *dev;
    clred_image host;
} master_out;

static void free_dframes(clred_dimage **frames, size_t n)
{
    for (size_t i = 0; frames && i < n; i++)
        clred_dimage_free(frames[i]);
    free(frames);
}

/* Every calibrated frame held on the device, combined there. */
static clred_status master_on_device(clred_ctx *ctx, clred_calibrator *cal, const raw_source *s, master_kind kind,
                                     const clred_calib_opts *o, const clred_combine_opts *co, double *levels,
                                     master_out *out)
{
    clred_dimage **frames = calloc(s->n, sizeof *frames);
    if (!frames)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu %s frames", s->n, kind_name(kind));
    clred_status st = CLRED_OK;
    double first_t = NAN;
    for (size_t i = 0; i < s->n && st == CLRED_OK; i++) {
        st = calibrate_one(cal, ctx, s, i, kind, o, &first_t, &levels[i], &frames[i]);
        if (st == CLRED_OK && i > 0)
            st = check_same_shape(frames[i], frames[0], s, i);
    }
    clred_combine_dev_result r;
    memset(&r, 0, sizeof r);
    if (st == CLRED_OK)
        st = clred_combine_dev(ctx, (const clred_dimage *const *)frames, s->n, co, &r);
    free_dframes(frames, s->n);
    size_t floored = 0;
    if (st == CLRED_OK && kind == KIND_FLAT)
        st = apply_floor_dev(ctx, r.image, o->flat_floor, &floored);
    if (st == CLRED_OK)
        st = describe_master(r.image->header, kind, s, levels, o, floored);
    if (st == CLRED_OK) {
        out->dev = r.image;
        r.image = NULL;
    }
    clred_combine_dev_result_free(&r);
    return st;
}

/* Each calibrated frame downloaded once, combined from host memory. */
static clred_status master_host_held(clred_ctx *ctx, clred_calibrator *cal, const raw_source *s, master_kind kind,
                                     const clred_calib_opts *o, const clred_combine_opts *co, double *levels,
                                     master_out *out)
{
    clred_image *frames = calloc(s->n, sizeof *frames);
    if (!frames)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu %s frames", s->n, kind_name(kind));
    clred_status st = CLRED_OK;
    double first_t = NAN;
    clred_dimage *first = NULL;
    for (size_t i = 0; i < s->n && st == CLRED_OK; i++) {
        clred_dimage *f = NULL;
        st = calibrate_one(cal, ctx, s, i, kind, o, &first_t, &levels[i], &f);
        if (st == CLRED_OK && i > 0)
            st = check_same_shape(f, first, s, i);
        if (st == CLRED_OK)
            st = clred_dimage_download(f, &frames[i]);
        if (i == 0)
            first = f; /* kept for the shape check: one frame */
        else
            clred_dimage_free(f);
    }
    clred_dimage_free(first);
    clred_combine_result r;
    memset(&r, 0, sizeof r);
    if (st == CLRED_OK)
        st = clred_combine_images(ctx, frames, s->n, co, &r);
    for (size_t i = 0; i < s->n; i++)
        clred_image_free(&frames[i]);
    free(frames);
    size_t floored = 0;
    if (st == CLRED_OK && kind == KIND_FLAT)
        floored = apply_floor(&r.image, o->flat_floor);
    if (st == CLRED_OK)
        st = describe_master(r.image.header, kind, s, levels, o, floored);
    if (st == CLRED_OK) {
        out->host = r.image;
        memset(&r.image, 0, sizeof r.image);
    }
    clred_combine_result_free(&r);
    return st;
}

/* Whether n calibrated frames (SCI, VAR, MASK) fit half of what the budget
 * leaves, the other half being for the raw frame and the combine's bands. */
static int fits_on_device(clred_ctx *ctx, const raw_source *s)
{
    size_t width = 0, height = 0;
    if (raw_shape(s, &width, &height) != CLRED_OK) {
        clred_clear_error(); /* the first frame's own read says what is wrong */
        return 1;
    }
    uint64_t bytes = (uint64_t)s->n * width * height * (2 * sizeof(float) + sizeof(uint16_t));
    return bytes <= clred_ctx_budget(ctx) / 2;
}

/* bias and dark: on the device, their variances left out (the science
 * calibration adds them once). */
static clred_status make_master(clred_ctx *ctx, const raw_source *s, master_kind kind, const clred_dimage *bias,
                                const clred_dimage *dark, const clred_calib_opts *opts,
                                const clred_combine_opts *copts, master_out *out)
{
    memset(out, 0, sizeof *out);
    if (!ctx || s->n == 0 || !(s->dframes || s->images || s->paths))
        return clred_fail(CLRED_ERR_USAGE, "master %s: no input frames", kind_name(kind));
    clred_calib_opts o = opts ? *opts : clred_calib_defaults();
    o.to_electrons = 0; /* masters stay in ADU: the science calibration converts once, at the end */
    if (kind == KIND_FLAT && !(o.flat_floor >= 0 && o.flat_floor < 1))
        return clred_fail(CLRED_ERR_USAGE, "flat floor %g: choose 0 <= floor < 1", o.flat_floor);
    /* views of the masters without VAR: used in place, never freed */
    clred_dimage b = bias ? *bias : (clred_dimage){0}, d = dark ? *dark : (clred_dimage){0};
    b.plane[CLRED_PLANE_VAR] = NULL, d.plane[CLRED_PLANE_VAR] = NULL;
    clred_masters_dev m = {bias ? &b : NULL, dark ? &d : NULL, NULL, NULL, "master bias", "master dark", NULL, NULL};
    clred_calibrator *cal;
    CLRED_TRY(clred_calibrator_create_dev(ctx, &m, &o, &cal));
    double *levels = calloc(s->n, sizeof *levels);
    clred_status st = levels ? CLRED_OK : clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu levels", s->n);
    clred_combine_opts co = copts ? *copts : clred_combine_defaults();
    if (st == CLRED_OK)
        st = fits_on_device(ctx, s) ? master_on_device(ctx, cal, s, kind, &o, &co, levels, out)
                                    : master_host_held(ctx, cal, s, kind, &o, &co, levels, out);
    free(levels);
    clred_calibrator_free(cal);
    return st;
}

/* A host master (bias or dark) seen on the device: borrowed, SCI and MASK. */
static clred_status borrow_master(clred_ctx *ctx, const clred_image *m, const char *what, clred_dimage **out)
{
    *out = NULL;
    if (!m)
        return CLRED_OK;
    if (!m->sci)
        return clred_fail(CLRED_ERR_INPUT, "%s: the image has no SCI plane", what);
    clred_image planes = {m->width, m->height, m->sci, NULL, m->mask, NULL};
    return clred_dimage_borrow(ctx, &planes, out);
}

/* A host-memory master from a source, whatever path made it. */
static clred_status master_to_host(clred_ctx *ctx, const raw_source *s, master_kind kind, const clred_image *bias,
                                   const clred_image *dark, const clred_calib_opts *opts,
                                   const clred_combine_opts *copts, clred_image *out)
{
    memset(out, 0, sizeof *out);
    if (!ctx)
        return clred_fail(CLRED_ERR_USAGE, "master %s: no device context", kind_name(kind));
    clred_dimage *b = NULL, *d = NULL;
    master_out m;
    memset(&m, 0, sizeof m);
    clred_status st = borrow_master(ctx, bias, "master bias", &b);
    if (st == CLRED_OK)
        st = borrow_master(ctx, dark, "master dark", &d);
    if (st == CLRED_OK)
        st = make_master(ctx, s, kind, b, d, opts, copts, &m);
    if (st == CLRED_OK && m.dev)
        st = clred_dimage_download(m.dev, out);
    else if (st == CLRED_OK)
        *out = m.host;
    clred_dimage_free(m.dev);
    clred_dimage_free(b);
    clred_dimage_free(d);
    return st;
}

static clred_status master_to_dev(clred_ctx *ctx, const raw_source *s, master_kind kind, const clred_dimage *bias,
                                  const clred_dimage *dark, const clred_calib_opts *opts,
                                  const clred_combine_opts *copts, clred_dimage **out)
{
    *out = NULL;
    master_out m;
    CLRED_TRY(make_master(ctx, s, kind, bias, dark, opts, copts, &m));
    if (m.dev) {
        *out = m.dev;
        return CLRED_OK;
    }
    clred_status st = clred_dimage_upload(ctx, &m.host, out);
    clred_image_free(&m.host);
    return st;
}

clred_status clred_master_bias(clred_ctx *ctx, const char *const *paths, size_t n, const clred_calib_opts *opts,
                               const clred_combine_opts *copts, clred_image *out)
{
    raw_source s = {.paths = paths, .n = paths ? n : 0};
    return master_to_host(ctx, &s, KIND_BIAS, NULL, NULL, opts, copts, out);
}

clred_status clred_master_dark(clred_ctx *ctx, const char *const *paths, size_t n, const clred_image *bias,
                               const clred_calib_opts *opts, const clred_combine_opts *copts, clred_image *out)
{
    raw_source s = {.paths = paths, .n = paths ? n : 0};
    return master_to_host(ctx, &s, KIND_DARK, bias, NULL, opts, copts, out);
}

clred_status clred_master_flat(clred_ctx *ctx, const char *const *paths, size_t n, const clred_image *bias,
                               const clred_image *dark, const clred_calib_opts *opts,
                               const clred_combine_opts *copts, clred_image *out)
{
    raw_source s = {.paths = paths, .n = paths ? n : 0};
    return master_to_host(ctx, &s, KIND_FLAT, bias, dark, opts, copts, out);
}

clred_status clred_master_bias_images(clred_ctx *ctx, const clred_image *frames, size_t n,
                                      const clred_calib_opts *opts, const clred_combine_opts *copts, clred_image *out)
{
    raw_source s = {.images = frames, .n = frames ? n : 0};
    return master_to_host(ctx, &s, KIND_BIAS, NULL, NULL, opts, copts, out);
}

clred_status clred_master_dark_images(clred_ctx *ctx, const clred_image *frames, size_t n, const clred_image *bias,
                                      const clred_calib_opts *opts, const clred_combine_opts *copts, clred_image *out)
{
    raw_source s = {.images = frames, .n = frames ? n : 0};
    return master_to_host(ctx, &s, KIND_DARK, bias, NULL, opts, copts, out);
}

clred_status clred_master_flat_images(clred_ctx *ctx, const clred_image *frames, size_t n, const clred_image *bias,
                                      const clred_image *dark, const clred_calib_opts *opts,
                                      const clred_combine_opts *copts, clred_image *out)
{
    raw_source s = {.images = frames, .n = frames ? n : 0};
    return master_to_host(ctx, &s, KIND_FLAT, bias, dark, opts, copts, out);
}

clred_status clred_master_bias_dev(clred_ctx *ctx, const clred_dimage *const *frames, const char *const *names,
                                   size_t n, const clred_calib_opts *opts, const clred_combine_opts *copts,
                                   clred_dimage **out)
{
    raw_source s = {.dframes = frames, .names = names, .n = frames ? n : 0};
    return master_to_dev(ctx, &s, KIND_BIAS, NULL, NULL, opts, copts, out);
}

clred_status clred_master_dark_dev(clred_ctx *ctx, const clred_dimage *const *frames, const char *const *names,
                                   size_t n, const clred_dimage *bias, const clred_calib_opts *opts,
                                   const clred_combine_opts *copts, clred_dimage **out)
{
    raw_source s = {.dframes = frames, .names = names, .n = frames ? n : 0};
    return master_to_dev(ctx, &s, KIND_DARK, bias, NULL, opts, copts, out);
}

clred_status clred_master_flat_dev(clred_ctx *ctx, const clred_dimage *const *frames, const char *const *names,
                                   size_t n, const clred_dimage *bias, const clred_dimage *dark,
                                   const clred_calib_opts *opts, const clred_combine_opts *copts, clred_dimage **out)
{
    raw_source s = {.dframes = frames, .names = names, .n = frames ? n : 0};
    return master_to_dev(ctx, &s, KIND_FLAT, bias, dark, opts, copts, out);
}
