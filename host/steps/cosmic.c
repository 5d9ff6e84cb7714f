/* L.A.Cosmic cosmic-ray detection and repair (kernels/cosmic.cl), following
 * astroscrappy's detect_cosmics step by step, and the device median filters. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

clred_cosmic_opts clred_cosmic_defaults(void)
{
    clred_cosmic_opts o;
    memset(&o, 0, sizeof o);
    o.sigclip = 4.5;
    o.sigfrac = 0.3;
    o.objlim = 5.0;
    o.max_iters = 4;
    o.gain = 1.0;
    o.readnoise = 6.5;
    o.satlevel = 65536.0;
    o.sepmed = 0;
    o.ignore_bits = CLRED_MASK_UNUSABLE;
    return o;
}

/* ---- device median filters */

/* The filter name for a window: true medians 3/5/7, separable 5/7/9. */
static const char *median_name(int size, int separable)
{
    if (separable)
        return size == 5 ? "sepmedian_5" : size == 7 ? "sepmedian_7" : size == 9 ? "sepmedian_9" : NULL;
    return size == 3 ? "median_3x3" : size == 5 ? "median_5x5" : size == 7 ? "median_7x7" : NULL;
}

/* out = median filter of in; tmp (same size) is needed for separable filters. */
static clred_status median_on_device(clred_ctx *ctx, cl_mem in, cl_mem out, cl_mem tmp, int w, int h, int size,
                                     int separable)
{
    const char *base = median_name(size, separable);
    if (!base)
        return clred_fail(CLRED_ERR_USAGE, "median filter: size %d is not one of %s", size,
                          separable ? "5, 7, 9 (separable)" : "3, 5, 7");
    size_t global[2] = {clred_vector_groups(ctx, (size_t)w), (size_t)h};
    cl_kernel k;
    if (!separable) {
        CLRED_TRY(clred_kernel(ctx, "median", NULL, base, &k));
        CLRED_TRY(clred_args(k, base, CLRED_ARG(in), CLRED_ARG(out), CLRED_ARG(w), CLRED_ARG(h), (size_t)0));
        return clred_run_tiled(ctx, k, base, 2, global);
    }
    char name[64];
    snprintf(name, sizeof name, "%s_rows", base);
    CLRED_TRY(clred_kernel(ctx, "median", NULL, name, &k));
    CLRED_TRY(clred_args(k, name, CLRED_ARG(in), CLRED_ARG(tmp), CLRED_ARG(w), CLRED_ARG(h), (size_t)0));
    CLRED_TRY(clred_run_tiled(ctx, k, name, 2, global));
    snprintf(name, sizeof name, "%s_cols", base);
    CLRED_TRY(clred_kernel(ctx, "median", NULL, name, &k));
    CLRED_TRY(clred_args(k, name, CLRED_ARG(tmp), CLRED_ARG(in), CLRED_ARG(out), CLRED_ARG(w), CLRED_ARG(h),
                         (size_t)0));
    return clred_run_tiled(ctx, k, name, 2, global);
}

clred_status clred_median_filter(clred_ctx *ctx, const float *in, float *out, size_t width, size_t height,
                                 int size, int separable)
{
    if (!ctx || !in || !out || width == 0 || height == 0 || width > 1u << 30 || height > 1u << 30)
        return clred_fail(CLRED_ERR_USAGE, "median filter: invalid arguments (%zu x %zu image)", width, height);
    if (!median_name(size, separable))
        return clred_fail(CLRED_ERR_USAGE, "median filter: size %d is not one of %s", size,
                          separable ? "5, 7, 9 (separable)" : "3, 5, 7");
    size_t bytes = width * height * sizeof(float);
    cl_mem din = NULL, dout = NULL, dtmp = NULL;
    clred_status st = clred_buffer(ctx, CL_MEM_READ_ONLY, bytes, in, &din, "median filter input");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_READ_WRITE, bytes, NULL, &dout, "median filter output");
    if (st == CLRED_OK && separable)
        st = clred_buffer(ctx, CL_MEM_READ_WRITE, bytes, NULL, &dtmp, "median filter rows");
    if (st == CLRED_OK)
        st = median_on_device(ctx, din, dout, dtmp, (int)width, (int)height, size, separable);
    if (st == CLRED_OK)
        st = clred_download(ctx, dout, 0, bytes, out);
    clred_release(&din);
    clred_release(&dout);
    clred_release(&dtmp);
    return st;
}

/* ---- L.A.Cosmic */

enum { F_CLEAN, F_BKG, F_VAR, F_NOISE, F_S, F_MED, F_FINE, F_SP, F_TMP, NFLOAT };
enum { B_BAD, B_SAT, B_CAND, B_GROW, B_CR, B_TMP, NBYTE };

/* Counts of one digit of the radix selection (cr_good_histogram). */
#define SELECT_BINS 256

/* One run: sci, var and mask are the image's planes (not owned; var NULL
 * when absent), f and b this run's work planes, count the two counters of
 * cr_grow and hist one selection histogram per plane; all from the pool, so
 * a night's frames reuse them. */
typedef struct {
    clred_ctx *ctx;
    int w, h;
    cl_uint n;
    cl_mem sci, var, mask;
    cl_mem f[NFLOAT];
    cl_mem b[NBYTE];
    cl_mem count;
    cl_mem hist[2];
} cr_state;

#define COUNT_BYTES (2 * sizeof(cl_uint))
#define HIST_BYTES (SELECT_BINS * sizeof(cl_uint))

static void cr_release(cr_state *s)
{
    for (int i = 0; i < NFLOAT; i++)
        clred_pool_give(s->ctx, &s->f[i], (size_t)s->n * sizeof(float));
    for (int i = 0; i < NBYTE; i++)
        clred_pool_give(s->ctx, &s->b[i], s->n);
    clred_pool_give(s->ctx, &s->count, COUNT_BYTES);
    for (int i = 0; i < 2; i++)
        clred_pool_give(s->ctx, &s->hist[i], HIST_BYTES);
}

static clred_status run1d(cr_state *s, const char *name, cl_kernel *k)
{
    size_t global = s->n;
    return clred_run_tiled(s->ctx, *k, name, 1, &global);
}

static clred_status run2d(cr_state *s, const char *name, cl_kernel *k)
{
    size_t global[2] = {(size_t)s->w, (size_t)s->h};
    return clred_run_tiled(s->ctx, *k, name, 2, global);
}

/* For the kernels that take vector_width pixels of a row per work-item. */
static clred_status run2d_groups(cr_state *s, const char *name, cl_kernel *k)
{
    size_t global[2] = {clred_vector_groups(s->ctx, (size_t)s->w), (size_t)s->h};
    return clred_run_tiled(s->ctx, *k, name, 2, global);
}

static clred_status dilate(cr_state *s, cl_mem in, cl_mem out, int radius)
{
    cl_kernel k;
    CLRED_TRY(clred_kernel(s->ctx, "cosmic", NULL, "dilate_map", &k));
    CLRED_TRY(clred_args(k, "dilate_map", CLRED_ARG(in), CLRED_ARG(out), CLRED_ARG(s->w), CLRED_ARG(s->h),
                         CLRED_ARG(radius), (size_t)0));
    return run2d_groups(s, "dilate_map", &k);
}

static clred_status map_or(cr_state *s, cl_mem a, cl_mem b)
{
    cl_kernel k;
    CLRED_TRY(clred_kernel(s->ctx, "cosmic", NULL, "map_or", &k));
    CLRED_TRY(clred_args(k, "map_or", CLRED_ARG(a), CLRED_ARG(b), CLRED_ARG(s->n), (size_t)0));
    return run1d(s, "map_or", &k);
}

/* Builds clean, bkg, var (electrons) and the bad map from the image and the
 * optional sky model and noise variance (SCI planes, NULL when absent). */
static clred_status prepare(cr_state *s, cl_mem sky, cl_mem noise_var, const clred_cosmic_opts *o)
{
    size_t fb = (size_t)s->n * sizeof(float);
    /* Every work plane but the cosmic-ray map is written in full before it
     * is read, so what a pooled buffer held does not matter. */
    for (int i = 0; i < NFLOAT; i++)
        CLRED_TRY(clred_pool_take(s->ctx, fb, "a cosmic-ray work plane", &s->f[i]));
    for (int i = 0; i < NBYTE; i++)
        CLRED_TRY(clred_pool_take(s->ctx, s->n, "a cosmic-ray map", &s->b[i]));
    CLRED_TRY(clred_fill_zero(s->ctx, s->b[B_CR], s->n));
    CLRED_TRY(clred_pool_take(s->ctx, COUNT_BYTES, "cosmic-ray counters", &s->count));
    CLRED_TRY(clred_fill_zero(s->ctx, s->count, COUNT_BYTES));
    for (int i = 0; i < 2; i++)
        CLRED_TRY(clred_pool_take(s->ctx, HIST_BYTES, "a fill-value histogram", &s->hist[i]));

    /* Inputs that are absent are bound to a buffer of the right size that the
     * kernel does not read; the flags tell it so. */
    cl_kernel k;
    cl_mem bkg_arg = sky ? sky : s->sci, var_arg = noise_var ? noise_var : s->sci;
    float gain = (float)o->gain, rn = (float)o->readnoise;
    int have_bkg = sky != NULL, have_var = noise_var != NULL, have_mask = 1;
    cl_ushort ignore = o->ignore_bits;
    CLRED_TRY(clred_kernel(s->ctx, "cosmic", NULL, "cr_prepare", &k));
    CLRED_TRY(clred_args(k, "cr_prepare", CLRED_ARG(s->sci), CLRED_ARG(bkg_arg), CLRED_ARG(var_arg),
                         CLRED_ARG(s->mask), CLRED_ARG(s->f[F_CLEAN]), CLRED_ARG(s->f[F_BKG]),
                         CLRED_ARG(s->f[F_VAR]), CLRED_ARG(s->b[B_TMP]), CLRED_ARG(s->n), CLRED_ARG(gain),
                         CLRED_ARG(rn), CLRED_ARG(have_bkg), CLRED_ARG(have_var), CLRED_ARG(have_mask),
                         CLRED_ARG(ignore), (size_t)0));
    return run1d(s, "cr_prepare", &k);
}

/* astroscrappy's update_mask: bad = dilate3(input mask) | dilate5 twice of
 * the saturated-star cores; then the sky model is removed from clean. */
static clred_status mask_saturated(cr_state *s, const clred_cosmic_opts *o)
{
    CLRED_TRY(dilate(s, s->b[B_TMP], s->b[B_BAD], 1));
    if (o->satlevel > 0) {
        int size = o->sepmed ? 7 : 5;
        CLRED_TRY(median_on_device(s->ctx, s->f[F_CLEAN], s->f[F_MED], s->f[F_TMP], s->w, s->h, size, o->sepmed));
        cl_kernel k;
        float sat = (float)(o->satlevel * o->gain);
        CLRED_TRY(clred_kernel(s->ctx, "cosmic", NULL, "cr_saturated", &k));
        CLRED_TRY(clred_args(k, "cr_saturated", CLRED_ARG(s->f[F_CLEAN]), CLRED_ARG(s->f[F_MED]),
                             CLRED_ARG(s->b[B_SAT]), CLRED_ARG(s->n), CLRED_ARG(sat), (size_t)0));
        CLRED_TRY(run1d(s, "cr_saturated", &k));
        CLRED_TRY(dilate(s, s->b[B_SAT], s->b[B_TMP], 2));
        CLRED_TRY(dilate(s, s->b[B_TMP], s->b[B_SAT], 2));
        CLRED_TRY(map_or(s, s->b[B_BAD], s->b[B_SAT]));
    }
    cl_kernel k;
    CLRED_TRY(clred_kernel(s->ctx, "cosmic", NULL, "subtract_in_place", &k));
    CLRED_TRY(clred_args(k, "subtract_in_place", CLRED_ARG(s->f[F_CLEAN]), CLRED_ARG(s->f[F_BKG]),
                         CLRED_ARG(s->n), (size_t)0));
    return run1d(s, "subtract_in_place", &k);
}

/* Work-group size and count for cr_good_histogram: a power of two within the
 * kernel's limit (at most 256, one per bin), a few groups per compute unit. */
static clred_status histogram_launch(cr_state *s, cl_kernel k, size_t *local, size_t *global)
{
    size_t kwg = 0;
    cl_int err = clGetKernelWorkGroupInfo(k, s->ctx->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof kwg, &kwg, NULL);
    if (err != CL_SUCCESS)
        return clred_fail_cl(err, "cr_good_histogram");
    size_t l = 1;
    while (l * 2 <= kwg && l * 2 <= SELECT_BINS)
        l *= 2;
    size_t want = ((size_t)s->n + l - 1) / l;
    size_t cap = 4 * (size_t)(s->ctx->info.compute_units ? s->ctx->info.compute_units : 1);
    *local = l;
    *global = l * (want < cap ? want : cap);
    return CLRED_OK;
}

/* Order-preserving key of a float back to the float (lib_sort.cl's clred_key_float). */
static float key_float(uint32_t k)
{
    uint32_t u = k ^ ((k >> 31) ? 0x80000000u : 0xffffffffu);
    float v;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* Medians (lower middle for an even count, as astroscrappy) of the two planes
 * over finite pixels not marked bad: the fill values for a cosmic ray with
 * no usable neighbour (astroscrappy's background_level); 0 where no pixel is
 * usable. Radix selection on the device, one byte of the key per pass: the
 * host reads 256 counts per plane and pass, never the planes. The value is
 * the one a sort puts at that rank; where zeros of both signs share the rank,
 * the key order gives -0, which compares equal to +0. */
static clred_status good_medians(cr_state *s, const cl_mem planes[2], float out[2])
{
    cl_kernel k;
    CLRED_TRY(clred_kernel(s->ctx, "cosmic", NULL, "cr_good_histogram", &k));
    size_t local, global;
    CLRED_TRY(histogram_launch(s, k, &local, &global));
    cl_uint prefix[2] = {0, 0}, prefix_mask = 0, rank[2] = {0, 0}, total[2] = {0, 0};
    cl_uint hist[SELECT_BINS];
    for (cl_uint shift = 32; shift > 0;) {
        shift -= 8;
        for (int p = 0; p < 2; p++) {
            CLRED_TRY(clred_fill_zero(s->ctx, s->hist[p], HIST_BYTES));
            CLRED_TRY(clred_args(k, "cr_good_histogram", CLRED_ARG(planes[p]), CLRED_ARG(s->b[B_BAD]),
                                 CLRED_ARG(s->n), CLRED_ARG(prefix[p]), CLRED_ARG(prefix_mask), CLRED_ARG(shift),
                                 CLRED_ARG(s->hist[p]), CLRED_LOCAL(HIST_BYTES), (size_t)0));
            CLRED_TRY(clred_run(s->ctx, k, "cr_good_histogram", 1, &global, &local));
        }
        for (int p = 0; p < 2; p++) {
            CLRED_TRY(clred_download(s->ctx, s->hist[p], 0, HIST_BYTES, hist));
            if (shift == 24) {
                for (int b = 0; b < SELECT_BINS; b++)
                    total[p] += hist[b];
                rank[p] = total[p] ? (total[p] - 1) / 2 : 0;
            }
            if (total[p] == 0)
                continue;
            cl_uint below = 0, b = 0;
            while (b < SELECT_BINS - 1 && below + hist[b] <= rank[p])
                below += hist[b++];
            if (below + hist[b] <= rank[p])
                return clred_fail(CLRED_ERR_DEVICE, "cosmic: a fill-value histogram of a %d x %d image lost pixels",
                                  s->w, s->h);
            rank[p] -= below;
            prefix[p] |= b << shift;
        }
        prefix_mask |= 0xffu << shift;
    }
    for (int p = 0; p < 2; p++)
        out[p] = total[p] ? key_float(prefix[p]) : 0.0f;
    return CLRED_OK;
}

/* One L.A.Cosmic iteration; *found receives the pixels flagged in it. */
static clred_status iterate(cr_state *s, const clred_cosmic_opts *o, cl_uint *found)
{
    clred_ctx *ctx = s->ctx;
    int sep = o->sepmed;
    cl_kernel k;
    /* noise from the median-filtered variance plus the sky */
    CLRED_TRY(median_on_device(ctx, s->f[F_VAR], s->f[F_MED], s->f[F_TMP], s->w, s->h, sep ? 7 : 5, sep));
    CLRED_TRY(clred_kernel(ctx, "cosmic", NULL, "cr_noise", &k));
    CLRED_TRY(clred_args(k, "cr_noise", CLRED_ARG(s->f[F_MED]), CLRED_ARG(s->f[F_BKG]), CLRED_ARG(s->f[F_NOISE]),
                         CLRED_ARG(s->n), (size_t)0));
    CLRED_TRY(run1d(s, "cr_noise", &k));
    /* S, its large-scale median, the fine structure and its median */
    CLRED_TRY(clred_kernel(ctx, "cosmic", NULL, "cr_laplacian", &k));
    CLRED_TRY(clred_args(k, "cr_laplacian", CLRED_ARG(s->f[F_CLEAN]), CLRED_ARG(s->f[F_NOISE]),
                         CLRED_ARG(s->f[F_S]), CLRED_ARG(s->w), CLRED_ARG(s->h), (size_t)0));
    CLRED_TRY(run2d(s, "cr_laplacian", &k));
    CLRED_TRY(median_on_device(ctx, s->f[F_S], s->f[F_MED], s->f[F_TMP], s->w, s->h, sep ? 7 : 5, sep));
    CLRED_TRY(median_on_device(ctx, s->f[F_CLEAN], s->f[F_FINE], s->f[F_TMP], s->w, s->h, sep ? 5 : 3, sep));
    /* the fine structure's own median (7x7, or separable 9) is taken inside
     * cr_candidates, only where a candidate needs it */
    float sigclip = (float)o->sigclip, objlim = (float)o->objlim;
    CLRED_TRY(clred_kernel(ctx, "cosmic", NULL, "cr_candidates", &k));
    CLRED_TRY(clred_args(k, "cr_candidates", CLRED_ARG(s->f[F_S]), CLRED_ARG(s->f[F_MED]),
                         CLRED_ARG(s->f[F_FINE]), CLRED_ARG(s->f[F_NOISE]), CLRED_ARG(s->b[B_BAD]),
                         CLRED_ARG(s->f[F_SP]), CLRED_ARG(s->b[B_CAND]), CLRED_ARG(s->w), CLRED_ARG(s->h),
                         CLRED_ARG(sigclip), CLRED_ARG(objlim), CLRED_ARG(sep), (size_t)0));
    CLRED_TRY(run2d(s, "cr_candidates", &k));
    /* grow to neighbours above sigclip, then to neighbours above sigfrac * sigclip */
    cl_uint zero = 0;
    CLRED_TRY(clred_upload(ctx, s->count, 0, sizeof zero, &zero));
    float limits[2] = {sigclip, (float)(o->sigfrac * o->sigclip)};
    cl_mem from[2] = {s->b[B_CAND], s->b[B_GROW]}, to[2] = {s->b[B_GROW], s->b[B_CAND]};
    CLRED_TRY(clred_kernel(ctx, "cosmic", NULL, "cr_grow", &k));
    for (int step = 0; step < 2; step++) {
        int final = step == 1;
        CLRED_TRY(clred_args(k, "cr_grow", CLRED_ARG(from[step]), CLRED_ARG(s->f[F_SP]), CLRED_ARG(s->b[B_BAD]),
                             CLRED_ARG(to[step]), CLRED_ARG(s->b[B_CR]), CLRED_ARG(s->count), CLRED_ARG(s->w),
                             CLRED_ARG(s->h), CLRED_ARG(limits[step]), CLRED_ARG(final), (size_t)0));
        CLRED_TRY(run2d_groups(s, "cr_grow", &k));
    }
    return clred_download(ctx, s->count, 0, sizeof *found, found);
}

static clred_status clean_plane(cr_state *s, cl_mem plane, float fill)
{
    cl_kernel k;
    CLRED_TRY(clred_kernel(s->ctx, "cosmic", NULL, "clean_medmask", &k));
    CLRED_TRY(clred_args(k, "clean_medmask", CLRED_ARG(plane), CLRED_ARG(s->b[B_CR]), CLRED_ARG(s->b[B_BAD]),
                         CLRED_ARG(s->w), CLRED_ARG(s->h), CLRED_ARG(fill), (size_t)0));
    return run2d(s, "clean_medmask", &k);
}

static clred_status check_opts(size_t width, size_t height, const clred_cosmic_opts *o)
{
    if (width == 0 || height == 0)
        return clred_fail(CLRED_ERR_USAGE, "cosmic: no image given");
    if (width > 1u << 30 || height > 1u << 30 || width * height > 0xffffffffu)
        return clred_fail(CLRED_ERR_USAGE, "cosmic: %zu x %zu image is too large", width, height);
    if (!(o->sigclip > 0) || !(o->sigfrac > 0) || !(o->objlim > 0))
        return clred_fail(CLRED_ERR_USAGE, "cosmic: sigclip (%g), sigfrac (%g) and objlim (%g) must be positive",
                          o->sigclip, o->sigfrac, o->objlim);
    if (o->max_iters < 1)
        return clred_fail(CLRED_ERR_USAGE, "cosmic: max_iters must be at least 1 (got %d)", o->max_iters);
    if (!(o->gain > 0) || !(o->readnoise >= 0) || !isfinite(o->gain) || !isfinite(o->readnoise))
        return clred_fail(CLRED_ERR_USAGE, "cosmic: gain (%g) must be positive and readnoise (%g) not negative",
                          o->gain, o->readnoise);
    return CLRED_OK;
}

/* Device memory a run needs, checked before anything is made. */
static clred_status check_budget(clred_ctx *ctx, size_t width, size_t height)
{
    size_t n = width * height;
    uint64_t need = (uint64_t)n * (NFLOAT * sizeof(float) + NBYTE + sizeof(uint16_t) + 2 * sizeof(float));
    if (need > clred_ctx_budget(ctx))
        return clred_fail(CLRED_ERR_DEVICE,
                          "cosmic: a %zu x %zu image needs %llu bytes of device memory, more than the %llu planned",
                          width, height, (unsigned long long)need, (unsigned long long)clred_ctx_budget(ctx));
    return CLRED_OK;
}

static clred_status check_input_plane(const clred_dimage *img, const clred_dimage *p, const char *what)
{
    if (!p)
        return CLRED_OK;
    if (p->ctx != img->ctx)
        return clred_fail(CLRED_ERR_USAGE, "cosmic: the %s belongs to another context", what);
    if (p->width != img->width || p->height != img->height)
        return clred_fail(CLRED_ERR_USAGE, "cosmic: the %s is %zu x %zu, the image %zu x %zu", what, p->width,
                          p->height, img->width, img->height);
    return CLRED_OK;
}

/* Detection and repair; sci, var and mask of img are changed only by the
 * last kernel, once everything before it has been enqueued. */
static clred_status cosmic_run(cr_state *s, const clred_cosmic_opts *o, cl_mem sky, cl_mem noise_var,
                               clred_cosmic_info *info)
{
    clred_ctx *ctx = s->ctx;
    clred_status st = prepare(s, sky, noise_var, o);
    if (st == CLRED_OK)
        st = mask_saturated(s, o);
    float fill[2] = {0.0f, 0.0f};
    const cl_mem fill_planes[2] = {s->f[F_CLEAN], s->f[F_VAR]};
    if (st == CLRED_OK)
        st = good_medians(s, fill_planes, fill);
    float fill_clean = fill[0], fill_var = fill[1];

    int iterations = 0;
    for (int it = 0; st == CLRED_OK && it < o->max_iters; it++) {
        cl_uint found = 0;
        st = iterate(s, o, &found);
        iterations++;
        if (st != CLRED_OK || found == 0)
            break;
        st = clean_plane(s, s->f[F_CLEAN], fill_clean);
        if (st == CLRED_OK)
            st = clean_plane(s, s->f[F_VAR], fill_var);
    }

    if (st == CLRED_OK) {
        cl_kernel k;
        float gain = (float)o->gain;
        cl_ushort bits = CLRED_MASK_COSMIC_RAY | CLRED_MASK_INTERPOLATED;
        int have_var = s->var != NULL;
        cl_mem var_arg = have_var ? s->var : s->sci; /* unread without a variance plane */
        st = clred_kernel(ctx, "cosmic", NULL, "cr_finish", &k);
        if (st == CLRED_OK)
            st = clred_args(k, "cr_finish", CLRED_ARG(s->f[F_CLEAN]), CLRED_ARG(s->f[F_BKG]), CLRED_ARG(s->f[F_VAR]),
                            CLRED_ARG(s->b[B_CR]), CLRED_ARG(s->sci), CLRED_ARG(var_arg), CLRED_ARG(s->mask),
                            CLRED_ARG(s->n), CLRED_ARG(gain), CLRED_ARG(bits), CLRED_ARG(have_var), (size_t)0);
        if (st == CLRED_OK)
            st = run1d(s, "cr_finish", &k);
    }
    /* the pixels in the cosmic-ray map: cr_grow's second counter */
    cl_uint counts[2] = {0, 0};
    if (st == CLRED_OK && info)
        st = clred_download(ctx, s->count, 0, COUNT_BYTES, counts);
    if (st == CLRED_OK && info) {
        info->ncosmic = counts[1];
        info->iterations = iterations;
    }
    return st;
}

clred_status clred_cosmic_dev(clred_ctx *ctx, clred_dimage *img, const clred_dimage *sky,
                              const clred_dimage *noise_var, const clred_cosmic_opts *opts, clred_cosmic_info *info)
{
    clred_cosmic_opts o = opts ? *opts : clred_cosmic_defaults();
    if (!ctx || !img)
        return clred_fail(CLRED_ERR_USAGE, "cosmic: no device context or image");
    if (img->ctx != ctx)
        return clred_fail(CLRED_ERR_USAGE, "cosmic: the device image belongs to another context");
    if (o.bkg || o.var)
        return clred_fail(CLRED_ERR_USAGE,
                          "cosmic: opts->bkg and opts->var are host arrays for clred_cosmic; on device images pass "
                          "the sky model and the noise variance as the sky and noise_var device images, and leave "
                          "opts->bkg and opts->var NULL");
    CLRED_TRY(check_opts(img->width, img->height, &o));
    CLRED_TRY(check_input_plane(img, sky, "sky model"));
    CLRED_TRY(check_input_plane(img, noise_var, "noise variance"));
    CLRED_TRY(check_budget(ctx, img->width, img->height));
    CLRED_TRY(clred_dimage_add_mask(img));
    /* L.A.Cosmic's two programs, compiled side by side on a cold cache */
    static const char *const families[] = {"median", "cosmic"};
    clred_programs_prefetch(ctx, families, sizeof families / sizeof *families);
    cr_state s;
    memset(&s, 0, sizeof s);
    s.ctx = ctx;
    s.w = (int)img->width;
    s.h = (int)img->height;
    s.n = (cl_uint)(img->width * img->height);
    s.sci = clred_dimage_sci(img);
    s.var = clred_dimage_var(img);
    s.mask = clred_dimage_mask(img);
    clred_status st = cosmic_run(&s, &o, sky ? clred_dimage_sci(sky) : NULL,
                                 noise_var ? clred_dimage_sci(noise_var) : NULL, info);
    cr_release(&s);
    return st;
}

/* A temporary device image over a caller's host plane (opts->bkg, opts->var). */
static clred_status borrow_plane(clred_ctx *ctx, const clred_image *like, const float *plane, clred_dimage **out)
{
    *out = NULL;
    if (!plane)
        return CLRED_OK;
    clred_image view = {like->width, like->height, (float *)plane, NULL, NULL, NULL};
    return clred_dimage_borrow(ctx, &view, out);
}

clred_status clred_cosmic(clred_ctx *ctx, clred_image *img, const clred_cosmic_opts *opts, clred_cosmic_info *info)
{
    clred_cosmic_opts o = opts ? *opts : clred_cosmic_defaults();
    if (!img || !img->sci)
        return clred_fail(CLRED_ERR_USAGE, "cosmic: no image given");
    CLRED_TRY(check_opts(img->width, img->height, &o));
    if (!ctx)
        return clred_fail(CLRED_ERR_USAGE, "cosmic: no device context");
    CLRED_TRY(check_budget(ctx, img->width, img->height));
    CLRED_TRY(clred_image_add_mask(img));
    clred_image view = *img;
    view.header = NULL; /* the step does not touch it */
    clred_dimage *d = NULL, *sky = NULL, *noise_var = NULL;
    clred_status st = clred_dimage_borrow(ctx, &view, &d);
    if (st == CLRED_OK)
        st = borrow_plane(ctx, img, o.bkg, &sky);
    if (st == CLRED_OK)
        st = borrow_plane(ctx, img, o.var, &noise_var);
    o.bkg = o.var = NULL;
    if (st == CLRED_OK)
        st = clred_cosmic_dev(ctx, d, sky, noise_var, &o, info);
    if (st == CLRED_OK)
        st = clred_dimage_download_into(d, img);
    clred_dimage_free(noise_var);
    clred_dimage_free(sky);
    clred_dimage_free(d);
    return st;
}
