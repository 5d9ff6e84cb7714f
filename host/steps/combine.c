/* Frame combination (stacking) on the device, in bands of rows.
 *
 * One band engine, three sources: device images (clred_combine_dev; each
 * band copied on the device into a pooled, frame-major stack), host images
 * (clred_combine_images: borrowed as device images, so the same path; or,
 * on a device of its own memory that they would crowd, uploaded band by
 * band), and files read by rows (clred_combine_files, out of core). Results
 * go to device images (written in place when one band covers the frame) or
 * to host arrays band by band.
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
#include "stats.h"

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
    free(r->scale_errors);
    free(r->scale_stars);
    memset(r, 0, sizeof *r);
}

/* ------------------------------------------------------------ sources */

/* Where the frames come from: device images (copied band by band on the
 * device), host images (uploaded band by band: the out-of-core path when the
 * frames do not fit on a device that does not share host memory), or frames
 * of files read by rows. */
typedef struct {
    size_t nframes, width, height;
    const clred_dimage *const *dframes;
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

/* A device frame's median by the device statistics without clipping: the
 * same usable pixels and the same exact order statistic as plane_median,
 * without bringing the frame to the host (on a GPU a whole frame and its
 * mask would cross the bus for one number). */
static clred_status dframe_median(const clred_dimage *d, uint16_t ignore, double *median, size_t *count)
{
    clred_stats_opts o = clred_stats_defaults();
    o.max_iters = 0;
    o.ignore_bits = ignore;
    clred_stats st;
    CLRED_TRY(clred_stats_device(d->ctx, clred_dimage_sci(d), clred_dimage_mask(d), d->width, d->height, &o, &st));
    *count = st.npix;
    if (st.npix > 0)
        *median = st.median;
    return CLRED_OK;
}

static clred_status frame_median(const stack_source *s, size_t f, uint16_t ignore, double *median, size_t *count)
{
    size_t n = s->width * s->height;
    if (s->dframes)
        return dframe_median(s->dframes[f], ignore, median, count);
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

/* Frame f as a device image: the frame itself, a view of the host image, or
 * the file's frame read whole into *host (freed by the caller) and viewed. */
static clred_status frame_dimage(clred_ctx *ctx, const stack_source *s, size_t f, clred_image *host,
                                 clred_dimage **view, const clred_dimage **d)
{
    if (s->dframes) {
        *d = s->dframes[f];
        return CLRED_OK;
    }
    const clred_image *img = s->images ? &s->images[f] : host;
    if (!s->images) {
        CLRED_TRY(clred_image_alloc(host, s->width, s->height, 0, 0));
        CLRED_TRY(clred_rows_read(s->paths[f], s->frame_in_file[f], 0, s->height, host->sci));
    }
    CLRED_TRY(clred_dimage_borrow(ctx, img, view));
    *d = *view;
    return CLRED_OK;
}

/* Star flux scaling of frame f (f = 0 measures the reference's stars into *ref). */
static clred_status frame_star_scale(clred_ctx *ctx, const stack_source *s, size_t f, clred_star_ref **ref,
                                     double *scale, double *err, size_t *nused)
{
    char name[600];
    frame_name(s, f, name, sizeof name);
    clred_image host = {0};
    clred_dimage *view = NULL;
    const clred_dimage *d = NULL;
    clred_status st = frame_dimage(ctx, s, f, &host, &view, &d);
    if (st == CLRED_OK && f == 0)
        st = clred_star_ref_measure(ctx, d, name, ref);
    if (st == CLRED_OK && f == 0) {
        *scale = 1.0;
        *err = 0.0;
        *nused = 0; /* the reference: its factor is 1 by definition */
    } else if (st == CLRED_OK) {
        st = clred_star_scale(ctx, *ref, d, name, scale, err, nused);
    }
    clred_dimage_free(view); /* waits for the kernels that read the host planes */
    clred_image_free(&host);
    return st;
}

/* Per-frame factor (multiplicative, stars) or offset (additive) to the
 * first frame; star scaling also gives each factor's error and star count. */
static clred_status compute_scales(clred_ctx *ctx, const stack_source *s, const clred_combine_opts *o,
                                   double *scales, double *errors, size_t *nstars)
{
    if (o->scale == CLRED_SCALE_STARS) {
        clred_star_ref *ref = NULL;
        clred_status st = CLRED_OK;
        for (size_t f = 0; st == CLRED_OK && f < s->nframes; f++)
            st = frame_star_scale(ctx, s, f, &ref, &scales[f], &errors[f], &nstars[f]);
        clred_star_ref_free(ref);
        return st;
    }
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

/* Allocates the per-frame scale arrays the options ask for and fills them. */
static clred_status scale_frames(clred_ctx *ctx, const stack_source *s, const clred_combine_opts *o,
                                 double **scales, double **errors, size_t **nstars)
{
    if (o->scale == CLRED_SCALE_NONE)
        return CLRED_OK;
    *scales = malloc(s->nframes * sizeof **scales);
    if (o->scale == CLRED_SCALE_STARS) {
        *errors = malloc(s->nframes * sizeof **errors);
        *nstars = malloc(s->nframes * sizeof **nstars);
    }
    if (!*scales || (o->scale == CLRED_SCALE_STARS && (!*errors || !*nstars)))
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu scales", s->nframes);
    return compute_scales(ctx, s, o, *scales, *errors, *nstars);
}

/* ------------------------------------------------------------ options */

static clred_status check_opts(const clred_combine_opts *o, size_t nframes)
{
    if ((unsigned)o->method > CLRED_COMBINE_MAX)
        return clred_fail(CLRED_ERR_USAGE, "combine: unknown method %d", (int)o->method);
    if ((unsigned)o->reject > CLRED_REJECT_PERCENTILE)
        return clred_fail(CLRED_ERR_USAGE, "combine: unknown rejection %d", (int)o->reject);
    if ((unsigned)o->scale > CLRED_SCALE_STARS)
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
    static const char *names[] = {"none", "mult", "add", "stars"};
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

/* A buffer from the context's pool, with the size it goes back under. */
typedef struct {
    cl_mem buf;
    size_t bytes;
} pooled;

static clred_status take(clred_ctx *ctx, pooled *p, size_t bytes, const char *what)
{
    p->bytes = bytes;
    return clred_pool_take(ctx, bytes, what, &p->buf);
}

static void give(clred_ctx *ctx, pooled *p)
{
    clred_pool_give(ctx, &p->buf, p->bytes);
}

enum { OUT_SCI, OUT_VAR, OUT_MASK, OUT_NCONTRIB, OUT_NREJECT, OUT_COUNT };
static const size_t out_elem[OUT_COUNT] = {sizeof(float), sizeof(float), sizeof(uint16_t), sizeof(float),
                                           sizeof(float)};

/* Values of one 64-byte cache line of floats, and the odd number of lines
 * that stack_pitch puts between a band's end and the next frame. */
#define LINE_VALUES 16
#define PITCH_PAD_LINES 3
/* the most stack_pitch adds to a band */
#define PITCH_PAD_MAX (LINE_VALUES - 1 + PITCH_PAD_LINES * LINE_VALUES)

/* The values from one frame's plane to the next in a stack the library lays
 * out itself (the pooled SCI, VAR, MASK and sort-scratch stacks of a band):
 * the band rounded up to whole cache lines, plus an odd number of lines.
 * Every kernel reads all frames' values of a pixel together, so nframes
 * streams run this far apart. A band of a power-of-two frame (2048^2: 16 MB)
 * would put them a multiple of 4 KB apart, and a cache indexed by address
 * bits 6-11 (L1 on x86 cores, 8-way on Zen 4) then keeps them all in one set:
 * 20 streams in 8 ways evict each other's lines and the ones the processor
 * fetches ahead. An odd line count moves each frame's stream to a set of its
 * own (3 lines: up to 21 frames before the sets wrap around, odd so that none
 * share one up to 64). On a 2-core Zen 4 under POCL a 20 x 2048^2 stack so
 * padded took 24 % fewer kernel samples for the sigma clip, 15 % for the
 * mean (2026-12-07, the same bits). It costs a few KB a frame on any device
 * and nothing else where nothing aliases (on a GPU adjacent work-items read
 * adjacent pixels). A caller's contiguous cube used in place keeps its own
 * pitch (sci_in_place). */
static size_t stack_pitch(size_t band)
{
    return clred_round_up(band, LINE_VALUES) + PITCH_PAD_LINES * LINE_VALUES;
}

/* The stack of one band (frame-major: frame f's pixels at f * pitch), the
 * per-frame constants, and the kernel's band outputs when it cannot write
 * the result's own planes. */
typedef struct {
    pooled sci, var, mask, scratch, unfinished;
    pooled out[OUT_COUNT];
    cl_mem scales, factor, offset, weights, win_lo, win_hi, placeholder;
    int sci_in_place; /* sci is a view of the caller's contiguous cube, not pooled */
    size_t pitch;     /* values from a frame's plane to the next's, in every stack above */
} band_buffers;

static void release_buffers(clred_ctx *ctx, band_buffers *b)
{
    if (b->sci_in_place)
        clred_release(&b->sci.buf);
    pooled *all[] = {&b->sci, &b->var, &b->mask, &b->scratch, &b->unfinished};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        give(ctx, all[i]);
    for (int i = 0; i < OUT_COUNT; i++)
        give(ctx, &b->out[i]);
    cl_mem *small[] = {&b->scales, &b->factor, &b->offset, &b->weights, &b->win_lo, &b->win_hi, &b->placeholder};
    for (size_t i = 0; i < sizeof small / sizeof *small; i++)
        clred_release(small[i]);
}

/* Where a combine's results go: host arrays (downloaded band by band) or
 * device images (written in place when there is one band, else copied into
 * band by band on the device). */
typedef struct {
    clred_combine_result *host;
    clred_combine_dev_result *dev;
} combine_sink;

typedef struct {
    int general;
    int nmax;
    int fast;    /* combine_stack_fast runs first (kernels/combine.cl builds it for NMAX <= 32) */
    int vector;  /* the vector kernel (vector_width pixels per work-item) serves this combine */
    size_t rows; /* rows per band */
} combine_plan;

/* The vector kernel's pixels per work-item: the context's line width (a
 * cache line's floats on a CPU: 16 with AVX2 too, whose preferred width is
 * 8), so a work-item reads whole lines of its frames. At 8 two work-items
 * share each frame's line, and in a caller's cube stacked in place (frames
 * 16 MB apart for 2048^2, so a vector's 20 lines fall in one cache set of 8
 * or 16 ways) the line is often evicted before the second one reads it.
 * 20 x 2048^2 on a 2-core AVX2 EPYC (POCL haswell), kernel time on one core,
 * in place: sigma clipping -34 %, median -39 %, mean -52 %; padded stacks
 * (files) -4 %, the same, -8 %. Kept sets and medians are the same at either
 * width, means and variances within the float bounds of kernels/combine.cl
 * (which lanes share a vector decides which path sums them). */
static int combine_width(const clred_ctx *ctx) { return ctx->line_width; }

/* The vector kernel covers the common stacks: median or mean, no rejection or
 * sigma clipping with a std spread, no variance planes, no weights, at most
 * 32 frames, on a device that prefers float vectors (a CPU: a GPU's lanes
 * are its work-items, and 32 vectors a work-item would starve its registers).
 * CLRED_COMBINE_NOVEC=1 turns it off (tests compare both). */
static int vector_eligible(const clred_ctx *ctx, const stack_source *s, const clred_combine_opts *o,
                           const combine_plan *p)
{
    const char *e = getenv("CLRED_COMBINE_NOVEC");
    if ((e && *e && *e != '0') || ctx->vector_width < 2)
        return 0;
    return !p->general && p->nmax <= 32 && !s->have_var && !o->weights &&
           (o->method == CLRED_COMBINE_MEDIAN || o->method == CLRED_COMBINE_MEAN) &&
           (o->reject == CLRED_REJECT_NONE || (o->reject == CLRED_REJECT_SIGCLIP && !o->spread_mad));
}

/* Stacks of 16M values or more, where a kernel runs for tens of ms: there
 * a faster variant pays for a compile of its own. */
static int large_stack(const stack_source *s)
{
    return (double)s->nframes * (double)s->width * (double)s->height >= 16777216.0;
}

/* The environment variable name set to 1 or 0 forces a choice (tests);
 * unset, the choice is otherwise. */
static int forced_or(const char *name, int otherwise)
{
    const char *e = getenv(name);
    return e && *e ? *e != '0' : otherwise;
}

/* The vector kernel built for this very depth (-DNFIX) drops the padding
 * slots and their branches: a 20-frame 2048² median takes a third less time.
 * It costs one program build per depth (then cached on disk), so only large
 * stacks take it, and every stack of 17-32 frames: there the build for any
 * depth is cheaper than the one padded to 32 (cold CPU s on POCL, sigma
 * clip: 20 frames 3.9, 32 frames 5.5, padded 9.2), and runs faster (20 x
 * 1024x512, CPU s a combine: median 0.0125 -> 0.0104, sigma clip 0.019 ->
 * 0.016). Below 17 the padded build costs about what one depth's does (8
 * frames 2.0 both, 16 frames 3.7 against 2.2-2.9 a depth from 9 to 16), and
 * small stacks of several depths share it. CLRED_COMBINE_FIXED_DEPTH=1 or 0
 * forces the choice (tests). */
static int fixed_depth_pays(const stack_source *s)
{
    return forced_or("CLRED_COMBINE_FIXED_DEPTH", large_stack(s) || s->nframes > 16);
}

/* The loop-free kernel (combine_stack_fast) is the costliest compile of the
 * per-pixel program: on POCL its work-group function took 1-2 CPU s of a
 * cold clred demo's ~6, to save 10-20 ms (POCL kernel times, warm) on the
 * demo's 8-frame 512² stack over the looping kernel alone, which gives the
 * same bits (test_combine). So only large stacks take it;
 * CLRED_COMBINE_FAST=1 or 0 forces it on or off (tests). */
static int fast_kernel_pays(const stack_source *s) { return forced_or("CLRED_COMBINE_FAST", large_stack(s)); }

static int force_general(void) { return forced_or("CLRED_COMBINE_GENERAL", 0); }

/* Chooses the kernel variant and the rows per band from the device's memory. */
static clred_status make_plan(clred_ctx *ctx, const stack_source *s, combine_plan *p)
{
    size_t n = s->nframes;
    p->general = n > PRIVATE_MAX_FRAMES || force_general();
    p->nmax = 8;
    while (!p->general && (size_t)p->nmax < n)
        p->nmax *= 2;
    /* At 33-64 frames the loop-free kernel is slower than the looping one
     * (its three unrolled clipping rounds over 64 keys: 9-20 % more CPU per
     * 40- or 64-frame 768² combine, measured with both kernels warm) and its
     * compile took about half of the 42 CPU s of that program on POCL. */
    p->fast = !p->general && p->nmax <= 32 && fast_kernel_pays(s);
    size_t per_value = sizeof(float) + (s->have_var ? sizeof(float) : 0) + (s->have_mask ? sizeof(uint16_t) : 0) +
                       (p->general ? sizeof(cl_ulong) : 0);
    size_t per_pixel_out = 4 * sizeof(float) + sizeof(uint16_t) + 1;
    size_t row_bytes = s->width * (n * per_value + per_pixel_out);
    size_t fixed = (n + 1) * 2 * sizeof(cl_int) + n * 2 * sizeof(float) + n * per_value * PITCH_PAD_MAX + 4096;
    uint64_t budget = clred_ctx_budget(ctx);
    uint64_t max_alloc = clred_ctx_max_alloc(ctx);
    size_t largest_elem = p->general ? sizeof(cl_ulong) : sizeof(float);
    size_t rows = budget > fixed ? (size_t)((budget - fixed) / row_bytes) : 0;
    uint64_t frame_alloc = max_alloc / (n * largest_elem); /* values a frame's plane may take */
    size_t rows_alloc = frame_alloc > PITCH_PAD_MAX ? (size_t)((frame_alloc - PITCH_PAD_MAX) / s->width) : 0;
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

/* The kernel writes the device result's planes itself when one band covers
 * the frame. */
static int writes_in_place(const stack_source *s, const combine_plan *p, const combine_sink *k)
{
    return k->dev && p->rows == s->height;
}

/* Frame f's SCI plane in host memory: a host image's, or the array a device
 * image is a view of (borrowed or owned host planes); else NULL. */
static const float *sci_in_host(const stack_source *s, size_t f)
{
    if (s->images)
        return s->images[f].sci;
    if (!s->dframes)
        return NULL;
    const clred_dimage *d = s->dframes[f];
    clred_plane_kind kind = d->kind[CLRED_PLANE_SCI];
    return kind == CLRED_PLANE_BORROWED || kind == CLRED_PLANE_HOST ? d->host[CLRED_PLANE_SCI] : NULL;
}

/* Frames whose SCI planes lie one after another in one host block (a cube
 * read or built in one piece, a NumPy 3-D array) are already the kernel's
 * frame-major stack: on a device that shares host memory the stack is a view
 * of that block when one band covers the image, instead of a copy of every
 * frame (320 MB for 20 frames of 2048²). */
static int sci_in_place(clred_ctx *ctx, const stack_source *s, const combine_plan *p, band_buffers *b)
{
    if (!ctx->unified_memory || p->rows < s->height)
        return 0;
    const size_t npix = s->width * s->height;
    const float *first = sci_in_host(s, 0);
    for (size_t f = 0; first && f < s->nframes; f++)
        if (sci_in_host(s, f) != first + f * npix)
            return 0;
    if (!first)
        return 0;
    cl_int err;
    b->sci.buf = clCreateBuffer(ctx->context, CL_MEM_READ_ONLY | CL_MEM_USE_HOST_PTR,
                                s->nframes * npix * sizeof(float), (void *)first, &err);
    if (err != CL_SUCCESS) {
        b->sci.buf = NULL;
        return 0; /* the pooled copy serves */
    }
    b->sci_in_place = 1;
    return 1;
}

static clred_status create_buffers(clred_ctx *ctx, const stack_source *s, const combine_plan *p,
                                   const clred_combine_opts *o, const double *scales, const combine_sink *k,
                                   band_buffers *b)
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
            factor[f] = o->scale == CLRED_SCALE_MULTIPLICATIVE || o->scale == CLRED_SCALE_STARS ? fs[f] : 1.0f;
            offset[f] = o->scale == CLRED_SCALE_ADDITIVE ? fs[f] : 0.0f;
        }
        rank_windows(o, n, lo, hi);
    }
    const cl_mem_flags ro = CL_MEM_READ_ONLY;
    int in_place = st == CLRED_OK && sci_in_place(ctx, s, p, b);
    b->pitch = in_place ? band : stack_pitch(band); /* one pitch for all the stacks: the kernels take one */
    if (st == CLRED_OK && !in_place)
        st = take(ctx, &b->sci, n * b->pitch * sizeof(float), "combine input frames");
    if (st == CLRED_OK && s->have_var)
        st = take(ctx, &b->var, n * b->pitch * sizeof(float), "combine input variances");
    if (st == CLRED_OK && s->have_mask)
        st = take(ctx, &b->mask, n * b->pitch * sizeof(uint16_t), "combine input masks");
    if (st == CLRED_OK && p->general)
        st = take(ctx, &b->scratch, n * b->pitch * sizeof(cl_ulong), "combine sort scratch");
    if (st == CLRED_OK && (p->fast || p->vector))
        st = take(ctx, &b->unfinished, band, "combine work list");
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
    /* Band outputs, unless the kernel writes the result's planes; none for
     * the rejected counts nobody asked for (the kernels skip them). */
    int out_in_place = writes_in_place(s, p, k);
    for (int i = 0; i < OUT_COUNT && st == CLRED_OK; i++)
        if (!out_in_place && (i != OUT_NREJECT || o->want_rejected_map))
            st = take(ctx, &b->out[i], band * out_elem[i], "combine band output");
    /* A placeholder keeps the kernel's argument list fixed when a plane is absent. */
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_READ_ONLY, 8, NULL, &b->placeholder, "combine placeholder");
    free(fs);
    free(fw);
    free(factor);
    free(offset);
    free(lo);
    free(hi);
    return st;
}

static clred_status fill_zero_region(clred_ctx *ctx, cl_mem buf, size_t offset, size_t bytes)
{
    const cl_ushort zero = 0;
    cl_int err = clEnqueueFillBuffer(ctx->queue, buf, &zero, sizeof zero, offset, bytes, 0, NULL, NULL);
    return err == CL_SUCCESS ? CLRED_OK : clred_fail_cl(err, "clearing a combine mask band");
}

/* Rows [y0, y0 + rows) of device frames into the stack, on the device. */
static clred_status copy_band(clred_ctx *ctx, const stack_source *s, const band_buffers *b, size_t y0,
                              size_t rows)
{
    size_t band = rows * s->width, off = y0 * s->width;
    for (size_t f = 0; f < s->nframes; f++) {
        const clred_dimage *d = s->dframes[f];
        const size_t at = f * b->pitch;
        if (!b->sci_in_place)
            CLRED_TRY(clred_copy_region(ctx, clred_dimage_sci(d), off * sizeof(float), b->sci.buf,
                                        at * sizeof(float), band * sizeof(float)));
        if (s->have_var)
            CLRED_TRY(clred_copy_region(ctx, clred_dimage_var(d), off * sizeof(float), b->var.buf,
                                        at * sizeof(float), band * sizeof(float)));
        if (s->have_mask && clred_dimage_mask(d))
            CLRED_TRY(clred_copy_region(ctx, clred_dimage_mask(d), off * sizeof(uint16_t), b->mask.buf,
                                        at * sizeof(uint16_t), band * sizeof(uint16_t)));
        else if (s->have_mask)
            CLRED_TRY(fill_zero_region(ctx, b->mask.buf, at * sizeof(uint16_t), band * sizeof(uint16_t)));
    }
    return CLRED_OK;
}

/* Uploads rows [y0, y0 + rows) of host images or files; staging holds one
 * frame's band read from a file. */
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
        const size_t at = f * b->pitch;
        if (!b->sci_in_place)
            CLRED_TRY(clred_upload(ctx, b->sci.buf, at * sizeof(float), band * sizeof(float), sci));
        if (s->have_var)
            CLRED_TRY(clred_upload(ctx, b->var.buf, at * sizeof(float), band * sizeof(float),
                                   s->images[f].var + off));
        if (s->have_mask) {
            const uint16_t *m = s->images[f].mask ? s->images[f].mask + off : zero_mask;
            CLRED_TRY(clred_upload(ctx, b->mask.buf, at * sizeof(uint16_t), band * sizeof(uint16_t), m));
        }
    }
    return CLRED_OK;
}

/* The buffers the kernel writes for this band. */
static void band_targets(const stack_source *s, const combine_plan *p, const combine_sink *k, const band_buffers *b,
                         cl_mem t[OUT_COUNT])
{
    for (int i = 0; i < OUT_COUNT; i++)
        t[i] = b->out[i].buf;
    if (!writes_in_place(s, p, k))
        return;
    const clred_combine_dev_result *r = k->dev;
    t[OUT_SCI] = clred_dimage_sci(r->image);
    t[OUT_VAR] = clred_dimage_var(r->image);
    t[OUT_MASK] = clred_dimage_mask(r->image);
    t[OUT_NCONTRIB] = clred_dimage_sci(r->ncontrib);
    if (r->nrejected)
        t[OUT_NREJECT] = clred_dimage_sci(r->nrejected);
}

static clred_status run_kernel(clred_ctx *ctx, cl_kernel k, const char *name, const stack_source *s,
                               const band_buffers *b, const cl_mem t[OUT_COUNT], cl_mem unfinished,
                               const clred_combine_opts *o, size_t rows, size_t global)
{
    cl_uint npix = (cl_uint)(rows * s->width), pitch = (cl_uint)b->pitch, nframes = (cl_uint)s->nframes;
    /* star scaling applies its factors as the multiplicative mode does */
    cl_int method = (cl_int)o->method, reject = (cl_int)o->reject,
           scale_mode = (cl_int)(o->scale == CLRED_SCALE_STARS ? CLRED_SCALE_MULTIPLICATIVE : o->scale);
    cl_uint flags = (s->have_var ? 1u : 0u) | (s->have_mask ? 2u : 0u) | (o->weights ? 4u : 0u) |
                    (o->want_rejected_map ? 0u : 8u); /* 4 bytes a pixel less to write */
    cl_float sl = (cl_float)o->sigma_lower, sh = (cl_float)o->sigma_upper;
    cl_int iters = o->max_iters, centre_mean = o->centre_mean != 0, spread_mad = o->spread_mad != 0;
    cl_uint ignore = o->ignore_bits;
    double wt = 0.0;
    for (size_t f = 0; f < s->nframes; f++)
        wt += o->weights ? o->weights[f] : 1.0;
    cl_float weight_total = (cl_float)wt;
    cl_mem var = b->var.buf ? b->var.buf : b->placeholder, mask = b->mask.buf ? b->mask.buf : b->placeholder;
    cl_mem scratch = b->scratch.buf ? b->scratch.buf : b->placeholder;
    CLRED_TRY(clred_args(k, name, CLRED_ARG(b->sci.buf), CLRED_ARG(var), CLRED_ARG(mask), CLRED_ARG(scratch),
                         CLRED_ARG(b->scales), CLRED_ARG(b->factor), CLRED_ARG(b->offset), CLRED_ARG(b->weights),
                         CLRED_ARG(b->win_lo), CLRED_ARG(b->win_hi), CLRED_ARG(t[OUT_SCI]), CLRED_ARG(t[OUT_VAR]),
                         CLRED_ARG(t[OUT_MASK]), CLRED_ARG(t[OUT_NCONTRIB]), CLRED_ARG(t[OUT_NREJECT]),
                         CLRED_ARG(unfinished), CLRED_ARG(npix), CLRED_ARG(pitch), CLRED_ARG(nframes),
                         CLRED_ARG(method), CLRED_ARG(reject), CLRED_ARG(scale_mode), CLRED_ARG(flags), CLRED_ARG(sl),
                         CLRED_ARG(sh), CLRED_ARG(iters), CLRED_ARG(centre_mean), CLRED_ARG(spread_mad),
                         CLRED_ARG(ignore), CLRED_ARG(weight_total), (size_t)0));
    return clred_run_tiled(ctx, k, name, 1, &global);
}

/* The private key array read at the keys' ranks (-DINDEXED_KEYS) rather than
 * at constant indices that keep it in registers: on a CPU it lives in memory
 * either way. Same bits (test_combine); on POCL, cold and warm CPU s, 20
 * frames with VAR planes, 1024x512 sigma clip: compile 3.6 -> 1.6, a combine
 * 0.21 -> 0.15; 40 frames (NMAX=64) median: compile 10.6 -> 3.4, a combine
 * 0.44 -> 0.40; 20 x 1024^2 sigma clip (fast kernel first): compile 8.5 ->
 * 2.8, a combine 0.43 -> 0.31. A GPU keeps the registers (its private memory
 * is slow); CLRED_COMBINE_INDEXED_KEYS=0 forces them (tests). */
static int indexed_keys(const clred_ctx *ctx) { return forced_or("CLRED_COMBINE_INDEXED_KEYS", ctx->info.is_cpu); }

/* The per-pixel kernels' program: -DGENERAL or -DNMAX (no -DVW: the vector
 * kernel is a program of its own, see combine_bands). */
static void pixel_program_options(const clred_ctx *ctx, const combine_plan *p, char *options, size_t size)
{
    if (p->general)
        snprintf(options, size, "-DGENERAL");
    else
        snprintf(options, size, "-DNMAX=%d%s", p->nmax, indexed_keys(ctx) ? " -DINDEXED_KEYS" : "");
}

/* The complete kernel alone; or the loop-free fast kernel, then the complete
 * one for the pixels whose clipping needed more rounds; or the vector kernel
 * (complete is then NULL, built only for a band under one vector). */
static clred_status run_band(clred_ctx *ctx, const combine_plan *p, cl_kernel complete, cl_kernel fast,
                             const stack_source *s, const band_buffers *b, const cl_mem t[OUT_COUNT],
                             const clred_combine_opts *o, size_t rows)
{
    const cl_mem none = NULL;
    const size_t npix = rows * s->width;
    cl_mem unfinished = b->unfinished.buf;
    if (p->vector) {
        /* one work-item per vector_width pixels, one more for the tail (the
         * last vector_width pixels again); a band of less than one vector goes
         * to combine_stack */
        const size_t vw = (size_t)combine_width(ctx);
        CLRED_TRY(run_kernel(ctx, fast, "combine_stack_vec", s, b, t, unfinished, o, rows, npix / vw + 1));
        if (npix < vw) {
            char options[64];
            pixel_program_options(ctx, p, options, sizeof options);
            CLRED_TRY(clred_kernel(ctx, "combine", options, "combine_stack", &complete));
            CLRED_TRY(run_kernel(ctx, complete, "combine_stack", s, b, t, unfinished, o, rows, npix));
        }
        return CLRED_OK;
    }
    if (!p->fast)
        return run_kernel(ctx, complete, "combine_stack", s, b, t, none, o, rows, npix);
    CLRED_TRY(run_kernel(ctx, fast, "combine_stack_fast", s, b, t, unfinished, o, rows, npix));
    if (o->reject == CLRED_REJECT_SIGCLIP || o->reject == CLRED_REJECT_WINSORIZED)
        CLRED_TRY(run_kernel(ctx, complete, "combine_stack", s, b, t, unfinished, o, rows, npix));
    return CLRED_OK;
}

/* The band's outputs to where the sink wants them. */
static clred_status deliver_band(clred_ctx *ctx, const stack_source *s, const combine_plan *p,
                                 const combine_sink *k, const cl_mem t[OUT_COUNT], size_t y0, size_t rows)
{
    if (writes_in_place(s, p, k))
        return CLRED_OK;
    size_t band = rows * s->width, off = y0 * s->width;
    if (k->dev) {
        const clred_combine_dev_result *r = k->dev;
        cl_mem dst[OUT_COUNT] = {clred_dimage_sci(r->image), clred_dimage_var(r->image), clred_dimage_mask(r->image),
                                 clred_dimage_sci(r->ncontrib), r->nrejected ? clred_dimage_sci(r->nrejected) : NULL};
        for (int i = 0; i < OUT_COUNT; i++)
            if (dst[i])
                CLRED_TRY(clred_copy_region(ctx, t[i], 0, dst[i], off * out_elem[i], band * out_elem[i]));
        return CLRED_OK;
    }
    clred_combine_result *out = k->host;
    void *dst[OUT_COUNT] = {out->image.sci + off, out->image.var + off, out->image.mask + off, out->ncontrib + off,
                            out->nrejected ? out->nrejected + off : NULL};
    for (int i = 0; i < OUT_COUNT; i++)
        if (dst[i])
            CLRED_TRY(clred_download(ctx, t[i], 0, band * out_elem[i], dst[i]));
    return CLRED_OK;
}

static clred_status combine_bands(clred_ctx *ctx, const stack_source *s, const clred_combine_opts *o,
                                  combine_plan *p, const double *scales, const combine_sink *k, size_t *bands)
{
    p->vector = vector_eligible(ctx, s, o, p);
    /* Two programs, each built only when a combine launches its kernels: POCL
     * compiles every kernel of a program when clred's cache asks for the
     * binary. The 32-frame program with all three kernels took 22 CPU s cold;
     * the vector kernel's program alone takes 10, the per-pixel one 15, and a
     * command's stack takes one of them (a fixed-depth build, -DNFIX, 3.5
     * instead of 17). */
    char options[64];
    cl_kernel complete = NULL, fast = NULL;
    if (p->vector) {
        if (fixed_depth_pays(s))
            snprintf(options, sizeof options, "-DNMAX=%d -DVW=%d -DNFIX=%zu", p->nmax, combine_width(ctx),
                     s->nframes);
        else
            snprintf(options, sizeof options, "-DNMAX=%d -DVW=%d", p->nmax, combine_width(ctx));
        CLRED_TRY(clred_kernel(ctx, "combine", options, "combine_stack_vec", &fast));
    } else {
        pixel_program_options(ctx, p, options, sizeof options);
        CLRED_TRY(clred_kernel(ctx, "combine", options, "combine_stack", &complete));
        if (p->fast)
            CLRED_TRY(clred_kernel(ctx, "combine", options, "combine_stack_fast", &fast));
    }
    band_buffers b;
    memset(&b, 0, sizeof b);
    size_t band = p->rows * s->width;
    int from_files = !s->dframes && !s->images;
    float *staging = from_files ? malloc(band * sizeof *staging) : NULL;
    uint16_t *zero_mask = s->images && s->have_mask ? calloc(band, sizeof *zero_mask) : NULL;
    clred_status st = CLRED_OK;
    if ((from_files && !staging) || (s->images && s->have_mask && !zero_mask))
        st = clred_fail(CLRED_ERR_MEMORY, "out of memory staging a band of %zu pixels", band);
    if (st == CLRED_OK)
        st = create_buffers(ctx, s, p, o, scales, k, &b);
    cl_mem t[OUT_COUNT];
    band_targets(s, p, k, &b, t);
    for (size_t y0 = 0; st == CLRED_OK && y0 < s->height; y0 += p->rows) {
        size_t rows = s->height - y0 < p->rows ? s->height - y0 : p->rows;
        st = s->dframes ? copy_band(ctx, s, &b, y0, rows) : upload_band(ctx, s, &b, y0, rows, staging, zero_mask);
        if (st == CLRED_OK)
            st = run_band(ctx, p, complete, fast, s, &b, t, o, rows);
        if (st == CLRED_OK)
            st = deliver_band(ctx, s, p, k, t, y0, rows);
        (*bands)++;
    }
    /* The queue is in order: whoever takes a pooled buffer next uses it
     * after these kernels, so they go back without waiting. */
    release_buffers(ctx, &b);
    free(staging);
    free(zero_mask);
    return st;
}

/* Host-held frames (host images or files), results in host memory, band by
 * band; out is cleared on failure. */
static clred_status combine_source(clred_ctx *ctx, const stack_source *s, const clred_combine_opts *opts,
                                   const clred_header *header, clred_combine_result *out)
{
    clred_combine_opts o = opts ? *opts : clred_combine_defaults();
    CLRED_TRY(check_opts(&o, s->nframes));
    size_t npix = s->width * s->height;
    combine_plan plan = {0};
    CLRED_TRY(make_plan(ctx, s, &plan));
    /* every band's outputs are downloaded into these planes */
    clred_status st = clred_image_alloc_unset(&out->image, s->width, s->height);
    if (st == CLRED_OK)
        st = clred_image_add_planes_unset(&out->image, 1, 1);
    if (st != CLRED_OK) {
        clred_image_free(&out->image);
        return st;
    }
    out->ncontrib = malloc(npix * sizeof(float));
    out->nrejected = o.want_rejected_map ? malloc(npix * sizeof(float)) : NULL;
    out->image.header = header ? clred_header_copy(header) : clred_header_new();
    if (!out->ncontrib || (o.want_rejected_map && !out->nrejected) || !out->image.header)
        st = clred_fail(CLRED_ERR_MEMORY, "out of memory allocating a %zu x %zu combine result", s->width,
                        s->height);
    if (st == CLRED_OK)
        st = scale_frames(ctx, s, &o, &out->scales, &out->scale_errors, &out->scale_stars);
    combine_sink sink = {out, NULL};
    if (st == CLRED_OK)
        st = combine_bands(ctx, s, &o, &plan, out->scales, &sink, &out->bands);
    if (st == CLRED_OK)
        st = describe_in_header(out->image.header, &o, s->nframes);
    if (st != CLRED_OK)
        clred_combine_result_free(out);
    return st;
}

/* Replaces *dst with a copy of src. */
static clred_status copy_header(const clred_header *src, clred_header **dst)
{
    clred_header *h = clred_header_copy(src);
    if (!h)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory copying a header");
    clred_header_free(*dst);
    *dst = h;
    return CLRED_OK;
}

void clred_combine_dev_result_free(clred_combine_dev_result *r)
{
    if (!r)
        return;
    clred_dimage_free(r->image);
    clred_dimage_free(r->ncontrib);
    clred_dimage_free(r->nrejected);
    free(r->scales);
    free(r->scale_errors);
    free(r->scale_stars);
    memset(r, 0, sizeof *r);
}

/* Checks device frames and describes them as a band source. */
static clred_status device_source(clred_ctx *ctx, const clred_dimage *const *frames, size_t nframes,
                                  stack_source *s)
{
    memset(s, 0, sizeof *s);
    if (!ctx || !frames || nframes == 0)
        return clred_fail(CLRED_ERR_INPUT, "combine: no frames given");
    s->nframes = nframes;
    s->dframes = frames;
    s->have_var = 1;
    for (size_t f = 0; f < nframes; f++) {
        const clred_dimage *d = frames[f];
        if (!d || d->ctx != ctx)
            return clred_fail(CLRED_ERR_USAGE, "combine: frame %zu is %s", f,
                              d ? "a device image of another context" : "missing");
        if (f == 0) {
            s->width = d->width;
            s->height = d->height;
        } else if (d->width != s->width || d->height != s->height) {
            return clred_fail(CLRED_ERR_INPUT, "combine: frame %zu is %zu x %zu, frame 0 is %zu x %zu", f, d->width,
                              d->height, s->width, s->height);
        }
        s->have_var = s->have_var && clred_dimage_var(d);
        s->have_mask = s->have_mask || clred_dimage_mask(d);
    }
    return CLRED_OK;
}

/* Combines into out's images, which exist already (image with VAR and MASK,
 * ncontrib, and nrejected when asked for); sets scales and bands. */
static clred_status combine_dev_into(clred_ctx *ctx, const stack_source *s, const clred_combine_opts *o,
                                     clred_combine_dev_result *out)
{
    combine_plan plan = {0};
    CLRED_TRY(make_plan(ctx, s, &plan));
    CLRED_TRY(scale_frames(ctx, s, o, &out->scales, &out->scale_errors, &out->scale_stars));
    combine_sink sink = {NULL, out};
    CLRED_TRY(combine_bands(ctx, s, o, &plan, out->scales, &sink, &out->bands));
    CLRED_TRY(copy_header(s->dframes[0]->header, &out->image->header));
    return describe_in_header(out->image->header, o, s->nframes);
}

clred_status clred_combine_dev(clred_ctx *ctx, const clred_dimage *const *frames, size_t nframes,
                               const clred_combine_opts *opts, clred_combine_dev_result *out)
{
    memset(out, 0, sizeof *out);
    stack_source s;
    CLRED_TRY(device_source(ctx, frames, nframes, &s));
    clred_combine_opts o = opts ? *opts : clred_combine_defaults();
    CLRED_TRY(check_opts(&o, nframes));
    /* the outputs first, so that the plan counts them as held; the kernels
     * write every pixel of them */
    clred_status st = clred_dimage_new(ctx, s.width, s.height, 1, 1, &out->image);
    if (st == CLRED_OK)
        st = clred_dimage_new(ctx, s.width, s.height, 0, 0, &out->ncontrib);
    if (st == CLRED_OK && o.want_rejected_map)
        st = clred_dimage_new(ctx, s.width, s.height, 0, 0, &out->nrejected);
    if (st == CLRED_OK)
        st = combine_dev_into(ctx, &s, &o, out);
    if (st != CLRED_OK)
        clred_combine_dev_result_free(out);
    return st;
}

/* A one-plane host image over an array (for a borrowed view of it). */
static clred_image plane_image(size_t width, size_t height, float *array)
{
    clred_image img = {width, height, array, NULL, NULL, NULL};
    return img;
}

/* The device images a host result is written through: views of its own
 * arrays where the device shares host memory (the kernels write them, no
 * copy), else new device images downloaded at the end. */
static clred_status result_views(clred_ctx *ctx, clred_combine_result *out, clred_combine_dev_result *r)
{
    size_t w = out->image.width, h = out->image.height;
    if (!ctx->unified_memory) {
        CLRED_TRY(clred_dimage_new(ctx, w, h, 1, 1, &r->image));
        CLRED_TRY(clred_dimage_new(ctx, w, h, 0, 0, &r->ncontrib));
        if (out->nrejected)
            CLRED_TRY(clred_dimage_new(ctx, w, h, 0, 0, &r->nrejected));
        return CLRED_OK;
    }
    clred_image nc = plane_image(w, h, out->ncontrib), nr = plane_image(w, h, out->nrejected);
    CLRED_TRY(clred_dimage_borrow(ctx, &out->image, &r->image));
    CLRED_TRY(clred_dimage_borrow(ctx, &nc, &r->ncontrib));
    if (out->nrejected)
        CLRED_TRY(clred_dimage_borrow(ctx, &nr, &r->nrejected));
    return CLRED_OK;
}

/* Makes the host result current (a map where its arrays are the device's,
 * else a download) and takes the header. */
static clred_status collect_result(clred_combine_dev_result *r, clred_combine_result *out)
{
    size_t w = out->image.width, h = out->image.height;
    clred_image nc = plane_image(w, h, out->ncontrib), nr = plane_image(w, h, out->nrejected);
    CLRED_TRY(clred_dimage_download_into(r->image, &out->image));
    CLRED_TRY(clred_dimage_download_into(r->ncontrib, &nc));
    if (r->nrejected)
        CLRED_TRY(clred_dimage_download_into(r->nrejected, &nr));
    CLRED_TRY(copy_header(r->image->header, &out->image.header));
    out->scales = r->scales;
    out->scale_errors = r->scale_errors;
    out->scale_stars = r->scale_stars;
    r->scales = NULL;
    r->scale_errors = NULL;
    r->scale_stars = NULL;
    out->bands = r->bands;
    return CLRED_OK;
}

/* Whether host frames go to the device whole (borrowed: no copy where the
 * device shares host memory) or band by band from host memory (a device of
 * its own memory that they would crowd). */
static int borrow_frames(clred_ctx *ctx, const clred_image *frames, size_t nframes)
{
    if (ctx->unified_memory)
        return 1;
    uint64_t bytes = 0;
    for (size_t f = 0; f < nframes; f++)
        bytes += (uint64_t)frames[f].width * frames[f].height *
                 (sizeof(float) + (frames[f].var ? sizeof(float) : 0) + (frames[f].mask ? sizeof(uint16_t) : 0));
    return bytes <= clred_ctx_budget(ctx) / 2;
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
    if (!borrow_frames(ctx, frames, nframes))
        return combine_source(ctx, &s, opts, frames[0].header, out);

    clred_combine_opts o = opts ? *opts : clred_combine_defaults();
    CLRED_TRY(check_opts(&o, nframes));
    size_t npix = s.width * s.height;
    /* the kernels write every pixel of the result's planes */
    CLRED_TRY(clred_image_alloc_unset(&out->image, s.width, s.height));
    clred_status st = clred_image_add_planes_unset(&out->image, 1, 1);
    out->ncontrib = malloc(npix * sizeof(float));
    out->nrejected = o.want_rejected_map ? malloc(npix * sizeof(float)) : NULL;
    if (st == CLRED_OK && (!out->ncontrib || (o.want_rejected_map && !out->nrejected)))
        st = clred_fail(CLRED_ERR_MEMORY, "out of memory allocating a %zu x %zu combine result", s.width, s.height);
    clred_dimage **views = calloc(nframes, sizeof *views);
    if (st == CLRED_OK && !views)
        st = clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu frame views", nframes);
    for (size_t f = 0; f < nframes && st == CLRED_OK; f++)
        st = clred_dimage_borrow(ctx, &frames[f], &views[f]);
    clred_combine_dev_result r;
    memset(&r, 0, sizeof r);
    stack_source ds;
    if (st == CLRED_OK)
        st = device_source(ctx, (const clred_dimage *const *)views, nframes, &ds);
    if (st == CLRED_OK)
        st = result_views(ctx, out, &r);
    if (st == CLRED_OK)
        st = combine_dev_into(ctx, &ds, &o, &r);
    if (st == CLRED_OK)
        st = collect_result(&r, out);
    clred_combine_dev_result_free(&r);
    for (size_t f = 0; views && f < nframes; f++)
        clred_dimage_free(views[f]);
    free(views);
    if (st != CLRED_OK)
        clred_combine_result_free(out);
    return st;
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
