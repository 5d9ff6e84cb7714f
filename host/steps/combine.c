/* Frame combination (stacking) on the device, in bands of rows.
 *
 * Choices documented here and in clred.h:
 * - scaling is relative to the FIRST frame's median (frame medians over its
 *   usable pixels; an even count takes the mean of the two middle values);
 * - SUM is the (weighted) mean of the kept values times the total weight of
 *   all frames (N for equal weights), as IRAF does, so a rejected cosmic ray
 *   or a masked value does not leave a hole in the sum;
 * - variance: propagated from the inputs' VAR planes when every frame has one
 *   (sum w^2 var / (sum w)^2; median: pi/2 * sum var / n^2; min/max: the
 *   chosen value's), else from the scatter s^2 (n - 1 denominator) of the kept
 *   values (mean: s^2 sum w^2 / (sum w)^2; median: pi/2 s^2 / n; min/max: s^2),
 *   NaN when fewer than two values are kept;
 * - a value is usable when finite, not flagged by ignore_bits and, with VAR
 *   planes, its variance is finite;
 * - clred_combine_files reads SCI only (no VAR/MASK from files).
 *
 * The environment variable CLRED_COMBINE_GENERAL=1 forces the general
 * (any-N) kernel for every N; the tests use it to check that both kernels give
 * the same bits. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define PRIVATE_MAX_FRAMES 64

clred_combine_opts clred_combine_defaults(void)
{
    clred_combine_opts o;
    memset(&o, 0, sizeof o);
    o.method = CLRED_COMBINE_MEAN;
    o.reject = CLRED_REJECT_NONE;
    o.sigma_lower = 3.0;
    o.sigma_upper = 3.0;
    o.max_iters = 10;
    o.nlow = 1;
    o.nhigh = 1;
    o.pct_low = 10.0;
    o.pct_high = 90.0;
    o.scale = CLRED_SCALE_NONE;
    o.ignore_bits = CLRED_MASK_UNUSABLE;
    return o;
}

void clred_combine_result_free(clred_combine_result *r)
{
    if (!r)
        return;
    clred_image_free(&r->image);
    free(r->ncontrib);
    free(r->nrejected);
    free(r->scales);
    memset(r, 0, sizeof *r);
}

/* ------------------------------------------------------------ sources */

/* Where the frames come from: host images, or frames of files read by rows. */
typedef struct {
    size_t nframes, width, height;
    const clred_image *images;
    const char *const *paths; /* per frame (a cube's path repeats) */
    size_t *frame_in_file;
    int have_var, have_mask;
} stack_source;

static const char *frame_name(const stack_source *s, size_t f, char *buf, size_t size)
{
    if (s->paths)
        snprintf(buf, size, "%s (frame %zu)", s->paths[f], s->frame_in_file[f]);
    else
        snprintf(buf, size, "frame %zu", f);
    return buf;
}

/* ------------------------------------------------------- frame medians */

/* Median of the usable values of a plane; 0 usable values -> *count = 0. */
static clred_status plane_median(const float *sci, const uint16_t *mask, size_t n, uint16_t ignore, double *median,
                                 size_t *count)
{
    float *v = malloc((n ? n : 1) * sizeof *v);
    if (!v)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory computing a frame median (%zu pixels)", n);
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(sci[i]) && !(mask && (mask[i] & ignore)))
            v[c++] = sci[i];
    *count = c;
    if (c > 0)
        *median = clred_median_inplace(v, c);
    free(v);
    return CLRED_OK;
}

static clred_status frame_median(const stack_source *s, size_t f, uint16_t ignore, double *median, size_t *count)
{
    size_t n = s->width * s->height;
    if (s->images)
        return plane_median(s->images[f].sci, s->images[f].mask, n, ignore, median, count);
    float *plane = malloc(n * sizeof *plane);
    if (!plane)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory reading %s", s->paths[f]);
    clred_status st = clred_rows_read(s->paths[f], s->frame_in_file[f], 0, s->height, plane);
    if (st == CLRED_OK)
        st = plane_median(plane, NULL, n, ignore, median, count);
    free(plane);
    return st;
}

/* Per-frame factor (multiplicative) or offset (additive) to the first frame's median. */
static clred_status compute_scales(const stack_source *s, const clred_combine_opts *o, double *scales)
{
    double ref = 0.0;
    char name[600];
    for (size_t f = 0; f < s->nframes; f++) {
        double med = 0.0;
        size_t count = 0;
        CLRED_TRY(frame_median(s, f, o->ignore_bits, &med, &count));
        if (count == 0)
            return clred_fail(CLRED_ERR_INPUT, "%s: no usable pixel to scale by", frame_name(s, f, name, sizeof name));
        if (o->scale == CLRED_SCALE_MULTIPLICATIVE && !(med != 0.0))
            return clred_fail(CLRED_ERR_INPUT, "%s: median is 0, cannot scale multiplicatively",
                              frame_name(s, f, name, sizeof name));
        if (f == 0)
            ref = med;
        scales[f] = o->scale == CLRED_SCALE_MULTIPLICATIVE ? ref / med : ref - med;
    }
    return CLRED_OK;
}

/* ------------------------------------------------------------ options */

static clred_status check_opts(const clred_combine_opts *o, size_t nframes)
{
    if ((unsigned)o->method > CLRED_COMBINE_MAX)
        return clred_fail(CLRED_ERR_USAGE, "combine: unknown method %d", (int)o->method);
    if ((unsigned)o->reject > CLRED_REJECT_PERCENTILE)
        return clred_fail(CLRED_ERR_USAGE, "combine: unknown rejection %d", (int)o->reject);
    if ((unsigned)o->scale > CLRED_SCALE_ADDITIVE)
        return clred_fail(CLRED_ERR_USAGE, "combine: unknown scaling %d", (int)o->scale);
    if (!(o->sigma_lower > 0.0) || !(o->sigma_upper > 0.0) || !isfinite(o->sigma_lower) ||
        !isfinite(o->sigma_upper))
        return clred_fail(CLRED_ERR_USAGE, "combine: sigma thresholds must be positive (got %g, %g)", o->sigma_lower,
                          o->sigma_upper);
    if (o->max_iters < 0)
        return clred_fail(CLRED_ERR_USAGE, "combine: max_iters must be >= 0 (got %d)", o->max_iters);
    if (o->nlow < 0 || o->nhigh < 0)
        return clred_fail(CLRED_ERR_USAGE, "combine: nlow and nhigh must be >= 0 (got %d, %d)", o->nlow, o->nhigh);
    if (!(o->pct_low >= 0.0 && o->pct_low < o->pct_high && o->pct_high <= 100.0))
        return clred_fail(CLRED_ERR_USAGE, "combine: percentiles must satisfy 0 <= low < high <= 100 (got %g, %g)",
                          o->pct_low, o->pct_high);
    if (o->weights)
        for (size_t f = 0; f < nframes; f++)
            if (!(o->weights[f] > 0.0) || !isfinite(o->weights[f]))
                return clred_fail(CLRED_ERR_USAGE, "combine: weight %zu is %g; weights must be positive and finite", f,
                                  o->weights[f]);
    if (nframes > 0x7fffffff)
        return clred_fail(CLRED_ERR_USAGE, "combine: %zu frames are too many", nframes);
    return CLRED_OK;
}

/* The kept rank window [lo[n], hi[n]) of n valid values for minmax and
 * percentile rejection; an empty window means every value is rejected. */
static void rank_windows(const clred_combine_opts *o, size_t nframes, cl_int *lo, cl_int *hi)
{
    for (size_t n = 0; n <= nframes; n++) {
        double l = 0, h = (double)n;
        if (o->reject == CLRED_REJECT_MINMAX) {
            l = o->nlow;
            h = (double)n - o->nhigh;
        } else if (o->reject == CLRED_REJECT_PERCENTILE) {
            l = floor((double)n * o->pct_low / 100.0);
            h = ceil((double)n * o->pct_high / 100.0);
        }
        if (l < 0)
            l = 0;
        if (l > (double)n)
            l = (double)n;
        if (h > (double)n)
            h = (double)n;
        if (h < l)
            h = l;
        lo[n] = (cl_int)l;
        hi[n] = (cl_int)h;
    }
}

static const char *method_name(clred_combine_method m)
{
    static const char *names[] = {"mean", "median", "sum", "min", "max"};
    return names[m];
}

static const char *reject_name(clred_reject_method r)
{
    static const char *names[] = {"none", "sigclip", "minmax", "winsorized", "percentile"};
    return names[r];
}

static const char *scale_name(clred_scale_method s)
{
    static const char *names[] = {"none", "mult", "add"};
    return names[s];
}

static clred_status describe_in_header(clred_header *h, const clred_combine_opts *o, size_t nframes)
{
    char text[400];
    int len = snprintf(text, sizeof text, "clred combine: %zu frames, method=%s reject=%s", nframes,
                       method_name(o->method), reject_name(o->reject));
    if (o->reject == CLRED_REJECT_SIGCLIP || o->reject == CLRED_REJECT_WINSORIZED)
        len += snprintf(text + len, sizeof text - (size_t)len, " sigma=%g,%g iters=%d centre=%s spread=%s",
                        o->sigma_lower, o->sigma_upper, o->max_iters, o->centre_mean ? "mean" : "median",
                        o->spread_mad ? "mad" : "std");
    else if (o->reject == CLRED_REJECT_MINMAX)
        len += snprintf(text + len, sizeof text - (size_t)len, " nlow=%d nhigh=%d", o->nlow, o->nhigh);
    else if (o->reject == CLRED_REJECT_PERCENTILE)
        len += snprintf(text + len, sizeof text - (size_t)len, " pct=%g,%g", o->pct_low, o->pct_high);
    snprintf(text + len, sizeof text - (size_t)len, " scale=%s weights=%s ignore=0x%04x", scale_name(o->scale),
             o->weights ? "given" : "equal", (unsigned)o->ignore_bits);
    CLRED_TRY(clred_header_set_double(h, "NCOMBINE", (double)nframes, "frames combined"));
    return clred_header_add_history(h, text);
}

/* ------------------------------------------------------------ device */

typedef struct {
    cl_mem sci, var, mask, scratch, scales, factor, offset, weights, win_lo, win_hi;
    cl_mem out_sci, out_var, out_mask, out_ncontrib, out_nreject;
    cl_mem unfinished; /* pixels the fast kernel left to the complete one */
} band_buffers;

static void release_buffers(band_buffers *b)
{
    cl_mem *all[] = {&b->factor, &b->offset, &b->sci,     &b->var,    &b->mask,    &b->scratch,      &b->scales,
                     &b->weights, &b->win_lo, &b->win_hi,  &b->out_sci,      &b->out_var,
                     &b->out_mask, &b->out_ncontrib, &b->out_nreject, &b->unfinished};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        clred_release(all[i]);
}

typedef struct {
    int general;
    int nmax;
    int vector;  /* the 16-pixel vector kernel serves this combine */
    size_t rows; /* rows per band */
} combine_plan;

/* The vector kernel covers the common stacks: median or mean, no rejection or
 * sigma clipping with a std spread, no variance planes, no weights, at most
 * 32 frames. CLRED_COMBINE_NOVEC=1 turns it off (tests compare both). */
static int vector_eligible(const stack_source *s, const clred_combine_opts *o, const combine_plan *p)
{
    const char *e = getenv("CLRED_COMBINE_NOVEC");
    if (e && *e && *e != '0')
        return 0;
    return !p->general && p->nmax <= 32 && !s->have_var && !o->weights &&
           (o->method == CLRED_COMBINE_MEDIAN || o->method == CLRED_COMBINE_MEAN) &&
           (o->reject == CLRED_REJECT_NONE || (o->reject == CLRED_REJECT_SIGCLIP && !o->spread_mad));
}

static int force_general(void)
{
    const char *e = getenv("CLRED_COMBINE_GENERAL");
    return e && *e && *e != '0';
}

/* Chooses the kernel variant and the rows per band from the device's memory. */
static clred_status make_plan(clred_ctx *ctx, const stack_source *s, combine_plan *p)
{
    size_t n = s->nframes;
    p->general = n > PRIVATE_MAX_FRAMES || force_general();
    p->nmax = 8;
    while (!p->general && (size_t)p->nmax < n)
        p->nmax *= 2;
    size_t per_value = sizeof(float) + (s->have_var ? sizeof(float) : 0) + (s->have_mask ? sizeof(uint16_t) : 0) +
                       (p->general ? sizeof(cl_ulong) : 0);
    size_t per_pixel_out = 4 * sizeof(float) + sizeof(uint16_t) + 1;
    size_t row_bytes = s->width * (n * per_value + per_pixel_out);
    size_t fixed = (n + 1) * 2 * sizeof(cl_int) + n * 2 * sizeof(float) + 4096;
    uint64_t budget = clred_ctx_budget(ctx);
    uint64_t max_alloc = clred_ctx_max_alloc(ctx);
    size_t largest_elem = p->general ? sizeof(cl_ulong) : sizeof(float);
    size_t rows = budget > fixed ? (size_t)((budget - fixed) / row_bytes) : 0;
    size_t rows_alloc = (size_t)(max_alloc / (n * s->width * largest_elem));
    if (rows_alloc < rows)
        rows = rows_alloc;
    if (rows == 0)
        return clred_fail(CLRED_ERR_DEVICE,
                          "combine: one row of %zu frames x %zu columns needs %zu bytes on the device, more than the "
                          "memory limit (%llu bytes, largest buffer %llu)",
                          n, s->width, row_bytes + fixed, (unsigned long long)budget,
                          (unsigned long long)max_alloc);
    p->rows = rows < s->height ? rows : s->height;
    return CLRED_OK;
}

static clred_status create_buffers(clred_ctx *ctx, const stack_source *s, const combine_plan *p,
                                   const clred_combine_opts *o, const double *scales, band_buffers *b)
{
    size_t n = s->nframes, band = p->rows * s->width;
    float *fs = malloc(n * sizeof *fs), *fw = malloc(n * sizeof *fw);
    float *factor = malloc(n * sizeof *factor), *offset = malloc(n * sizeof *offset);
    cl_int *lo = malloc((n + 1) * sizeof *lo), *hi = malloc((n + 1) * sizeof *hi);
    clred_status st = CLRED_OK;
    if (!fs || !fw || !lo || !hi || !factor || !offset)
        st = clred_fail(CLRED_ERR_MEMORY, "out of memory preparing a combine of %zu frames", n);
    if (st == CLRED_OK) {
        for (size_t f = 0; f < n; f++) {
            fs[f] = scales ? (float)scales[f] : 1.0f;
            fw[f] = o->weights ? (float)o->weights[f] : 1.0f;
            factor[f] = o->scale == CLRED_SCALE_MULTIPLICATIVE ? fs[f] : 1.0f;
            offset[f] = o->scale == CLRED_SCALE_ADDITIVE ? fs[f] : 0.0f;
        }
        rank_windows(o, n, lo, hi);
    }
    const cl_mem_flags ro = CL_MEM_READ_ONLY, wo = CL_MEM_WRITE_ONLY;
    if (st == CLRED_OK)
        st = clred_buffer(ctx, ro, n * band * sizeof(float), NULL, &b->sci, "combine input frames");
    if (st == CLRED_OK && s->have_var)
        st = clred_buffer(ctx, ro, n * band * sizeof(float), NULL, &b->var, "combine input variances");
    if (st == CLRED_OK && s->have_mask)
        st = clred_buffer(ctx, ro, n * band * sizeof(uint16_t), NULL, &b->mask, "combine input masks");
    if (st == CLRED_OK && p->general)
        st = clred_buffer(ctx, CL_MEM_READ_WRITE, n * band * sizeof(cl_ulong), NULL, &b->scratch,
                          "combine sort scratch");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, ro, n * sizeof(float), fs, &b->scales, "combine scales");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, ro, n * sizeof(float), factor, &b->factor, "combine scale factors");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, ro, n * sizeof(float), offset, &b->offset, "combine scale offsets");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, ro, n * sizeof(float), fw, &b->weights, "combine weights");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, ro, (n + 1) * sizeof(cl_int), lo, &b->win_lo, "combine rank windows");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, ro, (n + 1) * sizeof(cl_int), hi, &b->win_hi, "combine rank windows");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, wo, band * sizeof(float), NULL, &b->out_sci, "combined image");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, wo, band * sizeof(float), NULL, &b->out_var, "combined variance");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, wo, band * sizeof(uint16_t), NULL, &b->out_mask, "combined mask");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, wo, band * sizeof(float), NULL, &b->out_ncontrib, "contribution map");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, wo, band * sizeof(float), NULL, &b->out_nreject, "rejection map");
    if (st == CLRED_OK && !p->general)
        st = clred_buffer(ctx, CL_MEM_READ_WRITE, band, NULL, &b->unfinished, "combine work list");
    /* Placeholders keep the kernel's argument list fixed when a plane is absent. */
    if (st == CLRED_OK && !b->var)
        st = clred_buffer(ctx, ro, 4, NULL, &b->var, "combine placeholder");
    if (st == CLRED_OK && !b->mask)
        st = clred_buffer(ctx, ro, 4, NULL, &b->mask, "combine placeholder");
    if (st == CLRED_OK && !b->scratch)
        st = clred_buffer(ctx, ro, 8, NULL, &b->scratch, "combine placeholder");
    free(fs);
    free(fw);
    free(factor);
    free(offset);
    free(lo);
    free(hi);
    return st;
}

/* Uploads rows [y0, y0 + rows) of every frame; staging holds one frame's band. */
static clred_status upload_band(clred_ctx *ctx, const stack_source *s, const band_buffers *b, size_t y0,
                                size_t rows, float *staging, const uint16_t *zero_mask)
{
    size_t band = rows * s->width, off = y0 * s->width;
    for (size_t f = 0; f < s->nframes; f++) {
        const float *sci;
        if (s->images) {
            sci = s->images[f].sci + off;
        } else {
            CLRED_TRY(clred_rows_read(s->paths[f], s->frame_in_file[f], y0, rows, staging));
            sci = staging;
        }
        CLRED_TRY(clred_upload(ctx, b->sci, f * band * sizeof(float), band * sizeof(float), sci));
        if (s->have_var)
            CLRED_TRY(clred_upload(ctx, b->var, f * band * sizeof(float), band * sizeof(float),
                                   s->images[f].var + off));
        if (s->have_mask) {
            const uint16_t *m = s->images[f].mask ? s->images[f].mask + off : zero_mask;
            CLRED_TRY(clred_upload(ctx, b->mask, f * band * sizeof(uint16_t), band * sizeof(uint16_t), m));
        }
    }
    return CLRED_OK;
}

static clred_status run_kernel(clred_ctx *ctx, cl_kernel k, const char *name, const stack_source *s,
                               const band_buffers *b, cl_mem unfinished, const clred_combine_opts *o, size_t rows,
                               size_t global)
{
    cl_uint npix = (cl_uint)(rows * s->width), nframes = (cl_uint)s->nframes;
    cl_int method = (cl_int)o->method, reject = (cl_int)o->reject, scale_mode = (cl_int)o->scale;
    cl_uint flags = (s->have_var ? 1u : 0u) | (s->have_mask ? 2u : 0u) | (o->weights ? 4u : 0u);
    cl_float sl = (cl_float)o->sigma_lower, sh = (cl_float)o->sigma_upper;
    cl_int iters = o->max_iters, centre_mean = o->centre_mean != 0, spread_mad = o->spread_mad != 0;
    cl_uint ignore = o->ignore_bits;
    double wt = 0.0;
    for (size_t f = 0; f < s->nframes; f++)
        wt += o->weights ? o->weights[f] : 1.0;
    cl_float weight_total = (cl_float)wt;
    CLRED_TRY(clred_args(k, name, CLRED_ARG(b->sci), CLRED_ARG(b->var), CLRED_ARG(b->mask),
                         CLRED_ARG(b->scratch), CLRED_ARG(b->scales), CLRED_ARG(b->factor), CLRED_ARG(b->offset),
                         CLRED_ARG(b->weights), CLRED_ARG(b->win_lo),
                         CLRED_ARG(b->win_hi), CLRED_ARG(b->out_sci), CLRED_ARG(b->out_var), CLRED_ARG(b->out_mask),
                         CLRED_ARG(b->out_ncontrib), CLRED_ARG(b->out_nreject), CLRED_ARG(unfinished),
                         CLRED_ARG(npix), CLRED_ARG(nframes),
                         CLRED_ARG(method), CLRED_ARG(reject), CLRED_ARG(scale_mode), CLRED_ARG(flags),
                         CLRED_ARG(sl), CLRED_ARG(sh), CLRED_ARG(iters), CLRED_ARG(centre_mean),
                         CLRED_ARG(spread_mad), CLRED_ARG(ignore), CLRED_ARG(weight_total), (size_t)0));
    return clred_run(ctx, k, name, 1, &global, NULL);
}

/* The general kernel alone; or the loop-free fast kernel, then the complete
 * one for the pixels whose clipping needed more rounds. */
static clred_status run_band(clred_ctx *ctx, const combine_plan *p, cl_kernel complete, cl_kernel fast,
                             const stack_source *s, const band_buffers *b, const clred_combine_opts *o, size_t rows)
{
    const cl_mem none = NULL;
    const size_t npix = rows * s->width;
    if (p->general)
        return run_kernel(ctx, complete, "combine_stack", s, b, none, o, rows, npix);
    if (p->vector) {
        /* one work-item per 16 pixels, one more to mark the tail for combine_stack */
        CLRED_TRY(run_kernel(ctx, fast, "combine_stack_vec", s, b, b->unfinished, o, rows, npix / 16 + 1));
        if (npix % 16)
            CLRED_TRY(run_kernel(ctx, complete, "combine_stack", s, b, b->unfinished, o, rows, npix));
        return CLRED_OK;
    }
    CLRED_TRY(run_kernel(ctx, fast, "combine_stack_fast", s, b, b->unfinished, o, rows, npix));
    if (o->reject == CLRED_REJECT_SIGCLIP || o->reject == CLRED_REJECT_WINSORIZED)
        CLRED_TRY(run_kernel(ctx, complete, "combine_stack", s, b, b->unfinished, o, rows, npix));
    return CLRED_OK;
}

static clred_status download_band(clred_ctx *ctx, const stack_source *s, const band_buffers *b, size_t y0,
                                  size_t rows, clred_combine_result *out)
{
    size_t band = rows * s->width, off = y0 * s->width;
    CLRED_TRY(clred_download(ctx, b->out_sci, 0, band * sizeof(float), out->image.sci + off));
    CLRED_TRY(clred_download(ctx, b->out_var, 0, band * sizeof(float), out->image.var + off));
    CLRED_TRY(clred_download(ctx, b->out_mask, 0, band * sizeof(uint16_t), out->image.mask + off));
    CLRED_TRY(clred_download(ctx, b->out_ncontrib, 0, band * sizeof(float), out->ncontrib + off));
    if (out->nrejected)
        CLRED_TRY(clred_download(ctx, b->out_nreject, 0, band * sizeof(float), out->nrejected + off));
    return CLRED_OK;
}

static clred_status combine_bands(clred_ctx *ctx, const stack_source *s, const clred_combine_opts *o,
                                  combine_plan *p, clred_combine_result *out)
{
    p->vector = vector_eligible(s, o, p);
    char options[64];
    if (p->general)
        snprintf(options, sizeof options, "-DGENERAL");
    else
        snprintf(options, sizeof options, "-DNMAX=%d", p->nmax);
    cl_kernel complete, fast = NULL;
    CLRED_TRY(clred_kernel(ctx, "combine", options, "combine_stack", &complete));
    if (!p->general)
        CLRED_TRY(clred_kernel(ctx, "combine", options, p->vector ? "combine_stack_vec" : "combine_stack_fast",
                               &fast));
    band_buffers b;
    memset(&b, 0, sizeof b);
    size_t band = p->rows * s->width;
    float *staging = s->images ? NULL : malloc(band * sizeof *staging);
    uint16_t *zero_mask = s->have_mask ? calloc(band, sizeof *zero_mask) : NULL;
    clred_status st = CLRED_OK;
    if ((!s->images && !staging) || (s->have_mask && !zero_mask))
        st = clred_fail(CLRED_ERR_MEMORY, "out of memory staging a band of %zu pixels", band);
    if (st == CLRED_OK)
        st = create_buffers(ctx, s, p, o, out->scales, &b);
    for (size_t y0 = 0; st == CLRED_OK && y0 < s->height; y0 += p->rows) {
        size_t rows = s->height - y0 < p->rows ? s->height - y0 : p->rows;
        st = upload_band(ctx, s, &b, y0, rows, staging, zero_mask);
        if (st == CLRED_OK)
            st = run_band(ctx, p, complete, fast, s, &b, o, rows);
        if (st == CLRED_OK)
            st = download_band(ctx, s, &b, y0, rows, out);
        out->bands++;
    }
    release_buffers(&b);
    free(staging);
    free(zero_mask);
    return st;
}

/* Checks, allocates the outputs, scales, plans and runs; out is cleared on failure. */
static clred_status combine_source(clred_ctx *ctx, const stack_source *s, const clred_combine_opts *opts,
                                   const clred_header *header, clred_combine_result *out)
{
    clred_combine_opts o = opts ? *opts : clred_combine_defaults();
    CLRED_TRY(check_opts(&o, s->nframes));
    size_t npix = s->width * s->height;
    combine_plan plan = {0};
    CLRED_TRY(make_plan(ctx, s, &plan));
    clred_status st = clred_image_alloc(&out->image, s->width, s->height, 1, 1);
    if (st != CLRED_OK)
        return st;
    out->ncontrib = malloc(npix * sizeof(float));
    out->nrejected = o.want_rejected_map ? malloc(npix * sizeof(float)) : NULL;
    out->scales = o.scale != CLRED_SCALE_NONE ? malloc(s->nframes * sizeof(double)) : NULL;
    out->image.header = header ? clred_header_copy(header) : clred_header_new();
    if (!out->ncontrib || (o.want_rejected_map && !out->nrejected) || (o.scale && !out->scales) ||
        !out->image.header)
        st = clred_fail(CLRED_ERR_MEMORY, "out of memory allocating a %zu x %zu combine result", s->width,
                        s->height);
    if (st == CLRED_OK && out->scales)
        st = compute_scales(s, &o, out->scales);
    if (st == CLRED_OK)
        st = combine_bands(ctx, s, &o, &plan, out);
    if (st == CLRED_OK)
        st = describe_in_header(out->image.header, &o, s->nframes);
    if (st != CLRED_OK)
        clred_combine_result_free(out);
    return st;
}

clred_status clred_combine_images(clred_ctx *ctx, const clred_image *frames, size_t nframes,
                                  const clred_combine_opts *opts, clred_combine_result *out)
{
    memset(out, 0, sizeof *out);
    if (!ctx || !frames || nframes == 0)
        return clred_fail(CLRED_ERR_INPUT, "combine: no frames given");
    stack_source s;
    memset(&s, 0, sizeof s);
    s.nframes = nframes;
    s.width = frames[0].width;
    s.height = frames[0].height;
    s.images = frames;
    s.have_var = 1;
    for (size_t f = 0; f < nframes; f++) {
        if (!frames[f].sci || frames[f].width != s.width || frames[f].height != s.height)
            return clred_fail(CLRED_ERR_INPUT, "combine: frame %zu is %zu x %zu, frame 0 is %zu x %zu", f,
                              frames[f].width, frames[f].height, s.width, s.height);
        s.have_var = s.have_var && frames[f].var;
        s.have_mask = s.have_mask || frames[f].mask;
    }
    if (s.width == 0 || s.height == 0)
        return clred_fail(CLRED_ERR_INPUT, "combine: frames of zero size");
    return combine_source(ctx, &s, opts, frames[0].header, out);
}

/* Expands the paths into frames (a cube gives all its frames) and checks shapes. */
static clred_status list_file_frames(const char *const *paths, size_t npaths, stack_source *s)
{
    clred_file_info first;
    memset(&first, 0, sizeof first);
    size_t total = 0;
    for (size_t i = 0; i < npaths; i++) {
        clred_file_info info;
        CLRED_TRY(clred_file_info_read(paths[i], &info));
        if (i == 0)
            first = info;
        else if (info.width != first.width || info.height != first.height)
            return clred_fail(CLRED_ERR_INPUT, "%s: %zu x %zu does not match %s (%zu x %zu)", paths[i], info.width,
                              info.height, paths[0], first.width, first.height);
        total += info.nframes;
    }
    s->width = first.width;
    s->height = first.height;
    s->nframes = total;
    const char **list = malloc(total * sizeof *list);
    s->paths = list;
    s->frame_in_file = malloc(total * sizeof *s->frame_in_file);
    if (!list || !s->frame_in_file)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory listing %zu frames", total);
    size_t f = 0;
    for (size_t i = 0; i < npaths; i++) {
        clred_file_info info;
        CLRED_TRY(clred_file_info_read(paths[i], &info));
        for (size_t j = 0; j < info.nframes && f < total; j++, f++) {
            list[f] = paths[i];
            s->frame_in_file[f] = j;
        }
    }
    return CLRED_OK;
}

clred_status clred_combine_files(clred_ctx *ctx, const char *const *paths, size_t npaths,
                                 const clred_combine_opts *opts, clred_combine_result *out)
{
    memset(out, 0, sizeof *out);
    if (!ctx || !paths || npaths == 0)
        return clred_fail(CLRED_ERR_INPUT, "combine: no input files given");
    stack_source s;
    memset(&s, 0, sizeof s);
    clred_status st = list_file_frames(paths, npaths, &s);
    clred_image first;
    memset(&first, 0, sizeof first);
    /* The output's header comes from the first input. */
    if (st == CLRED_OK)
        st = clred_image_read(paths[0], 0, &first);
    if (st == CLRED_OK)
        st = combine_source(ctx, &s, opts, first.header, out);
    clred_image_free(&first);
    free((void *)s.paths);
    free(s.frame_in_file);
    return st;
}
