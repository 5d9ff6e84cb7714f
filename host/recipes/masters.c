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
 * - the calibrated frames are held in host memory until combined. */
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
static clred_status check_frame_type(const clred_image *raw, const char *path, master_kind kind, int override)
{
    char type[72];
    if (override || !clred_header_get_string(raw->header, "IMAGETYP", type, sizeof type))
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
static clred_status check_exptime(const clred_image *raw, const char *path, master_kind kind,
                                  const clred_calib_opts *o, double *first_t, double *t)
{
    *t = NAN;
    int have = o->exptime >= 0 ? (*t = o->exptime, 1) : clred_header_get_double(raw->header, "EXPTIME", t);
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
    return clred_run(ctx, k, "scale_offset", 1, &n, NULL);
}

/* Divides a calibrated flat (on the device) by the clipped median of its
 * region; *level receives the median. */
static clred_status normalise_flat(clred_ctx *ctx, const cal_device_frame *f, const clred_calib_opts *o,
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
    CLRED_TRY(clred_stats_device(ctx, f->sci, f->mask, f->width, f->height, &so, &st));
    if (!(st.median > 0) || !isfinite(st.median))
        return clred_fail(CLRED_ERR_INPUT, "%s: the flat's clipped median is %g after bias/dark subtraction; it cannot "
                          "be normalised", path, st.median);
    size_t n = f->width * f->height;
    CLRED_TRY(scale_device(ctx, f->sci, n, 1.0 / st.median));
    CLRED_TRY(scale_device(ctx, f->var, n, 1.0 / (st.median * st.median)));
    *level = st.median;
    return CLRED_OK;
}

static void free_frames(clred_image *frames, size_t n)
{
    for (size_t i = 0; frames && i < n; i++)
        clred_image_free(&frames[i]);
    free(frames);
}

/* Reads, checks and calibrates every frame into host images. */
static clred_status calibrate_frames(clred_ctx *ctx, const char *const *paths, size_t n, master_kind kind,
                                     const clred_masters *masters, const clred_calib_opts *o, clred_image *frames,
                                     double *levels)
{
    clred_calibrator *cal;
    CLRED_TRY(clred_calibrator_create(ctx, masters, o, &cal));
    clred_status st = CLRED_OK;
    double first_t = NAN;
    for (size_t i = 0; i < n && st == CLRED_OK; i++) {
        clred_image raw;
        st = clred_image_read(paths[i], 0, &raw);
        if (st != CLRED_OK)
            break;
        double t = NAN;
        st = check_frame_type(&raw, paths[i], kind, o->override_checks);
        if (st == CLRED_OK)
            st = check_exptime(&raw, paths[i], kind, o, &first_t, &t);
        cal_frame_kind fk = {kind == KIND_BIAS, kind == KIND_DARK ? 1.0 / t : 0.0};
        cal_device_frame f;
        clred_header *h = NULL;
        if (st == CLRED_OK)
            st = cal_apply_device(cal, &raw, paths[i], &fk, &f, &h);
        clred_image_free(&raw);
        levels[i] = NAN;
        if (st == CLRED_OK && kind == KIND_FLAT)
            st = normalise_flat(ctx, &f, o, paths[i], &levels[i]);
        if (st == CLRED_OK && i > 0 && (f.width != frames[0].width || f.height != frames[0].height)) {
            st = clred_fail(CLRED_ERR_INPUT, "%s is %zu x %zu after trimming but %s is %zu x %zu", paths[i], f.width,
                            f.height, paths[0], frames[0].width, frames[0].height);
        }
        if (st == CLRED_OK)
            st = cal_download(ctx, &f, h, &frames[i]);
        else
            clred_header_free(h);
    }
    clred_calibrator_free(cal);
    return st;
}

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

static clred_status describe_master(clred_image *m, master_kind kind, const char *const *paths, size_t n,
                                    const double *levels, const clred_calib_opts *o, size_t floored)
{
    char text[400];
    snprintf(text, sizeof text, "clred master-%s: %zu frame%s, first %s", kind_name(kind), n, n == 1 ? "" : "s",
             paths[0]);
    CLRED_TRY(clred_header_add_history(m->header, text));
    if (kind == KIND_DARK) {
        CLRED_TRY(clred_header_add_history(m->header, "clred master-dark: each dark divided by its EXPTIME"));
        CLRED_TRY(clred_header_set_double(m->header, "EXPTIME", 1.0, "master dark: per second"));
        CLRED_TRY(clred_header_set_string(m->header, "BUNIT", "adu/s", "pixel unit"));
    }
    if (kind == KIND_FLAT) {
        /* the numbers first: HISTORY text is cut every 72 characters */
        for (size_t i = 0; i < n; i++) {
            snprintf(text, sizeof text, "clred master-flat: frame %zu divided by its clipped median %.6g", i + 1,
                     levels[i]);
            CLRED_TRY(clred_header_add_history(m->header, text));
            snprintf(text, sizeof text, "clred master-flat: frame %zu is %s", i + 1, paths[i]);
            CLRED_TRY(clred_header_add_history(m->header, text));
        }
        snprintf(text, sizeof text, "clred master-flat: %zu pixels below %g set NaN / NO_DATA", floored,
                 o->flat_floor);
        CLRED_TRY(clred_header_add_history(m->header, text));
        CLRED_TRY(clred_header_set_string(m->header, "BUNIT", "", "normalised flat (dimensionless)"));
    }
    CLRED_TRY(clred_header_set_string(m->header, "IMAGETYP", kind == KIND_BIAS ? "MASTER BIAS"
                                                             : kind == KIND_DARK ? "MASTER DARK" : "MASTER FLAT",
                                      "clred master"));
    return CLRED_OK;
}

static clred_status make_master(clred_ctx *ctx, const char *const *paths, size_t n, master_kind kind,
                                const clred_image *bias, const clred_image *dark, const clred_calib_opts *opts,
                                const clred_combine_opts *copts, clred_image *out)
{
    memset(out, 0, sizeof *out);
    if (!ctx || !paths || n == 0)
        return clred_fail(CLRED_ERR_USAGE, "master %s: no input frames", kind_name(kind));
    clred_calib_opts o = opts ? *opts : clred_calib_defaults();
    o.to_electrons = 0; /* masters stay in ADU: the science calibration converts once, at the end */
    if (kind == KIND_FLAT && !(o.flat_floor >= 0 && o.flat_floor < 1))
        return clred_fail(CLRED_ERR_USAGE, "flat floor %g: choose 0 <= floor < 1", o.flat_floor);
    /* the masters' variances enter once, in the science calibration */
    clred_image b = bias ? *bias : (clred_image){0}, d = dark ? *dark : (clred_image){0};
    b.var = NULL, d.var = NULL;
    clred_masters m = {bias ? &b : NULL, dark ? &d : NULL, NULL, NULL, "master bias", "master dark", NULL, NULL};
    clred_image *frames = calloc(n, sizeof *frames);
    double *levels = calloc(n, sizeof *levels);
    if (!frames || !levels) {
        free(frames), free(levels);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu %s frames", n, kind_name(kind));
    }
    clred_status st = calibrate_frames(ctx, paths, n, kind, &m, &o, frames, levels);
    clred_combine_result r;
    memset(&r, 0, sizeof r);
    clred_combine_opts co = copts ? *copts : clred_combine_defaults();
    if (st == CLRED_OK)
        st = clred_combine_images(ctx, frames, n, &co, &r);
    free_frames(frames, n);
    size_t floored = 0;
    if (st == CLRED_OK && kind == KIND_FLAT)
        floored = apply_floor(&r.image, o.flat_floor);
    if (st == CLRED_OK)
        st = describe_master(&r.image, kind, paths, n, levels, &o, floored);
    free(levels);
    if (st == CLRED_OK) {
        *out = r.image;
        memset(&r.image, 0, sizeof r.image);
    }
    clred_combine_result_free(&r);
    return st;
}

clred_status clred_master_bias(clred_ctx *ctx, const char *const *paths, size_t n, const clred_calib_opts *opts,
                               const clred_combine_opts *copts, clred_image *out)
{
    return make_master(ctx, paths, n, KIND_BIAS, NULL, NULL, opts, copts, out);
}

clred_status clred_master_dark(clred_ctx *ctx, const char *const *paths, size_t n, const clred_image *bias,
                               const clred_calib_opts *opts, const clred_combine_opts *copts, clred_image *out)
{
    return make_master(ctx, paths, n, KIND_DARK, bias, NULL, opts, copts, out);
}

clred_status clred_master_flat(clred_ctx *ctx, const char *const *paths, size_t n, const clred_image *bias,
                               const clred_image *dark, const clred_calib_opts *opts,
                               const clred_combine_opts *copts, clred_image *out)
{
    return make_master(ctx, paths, n, KIND_FLAT, bias, dark, opts, copts, out);
}
