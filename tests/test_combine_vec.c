/* The vector combine kernel (the device's vector width in pixels per
 * work-item) against the per-pixel kernel: for every combine it serves
 * (median or mean; no rejection or sigma clipping with a std spread; masks,
 * NaNs, scaling), on widths that leave a tail of pixels past the last vector.
 * The per-pixel kernel is itself checked against the double-precision
 * reference in test_combine. Large stacks and every stack of 17-32 frames
 * take the kernel built for their depth (-DNFIX; forced here for the rest):
 * it is checked the same way. The kernel padded to 32 frames serves no
 * stack now, so no case builds it.
 *
 * What must agree exactly: the kept set of every pixel (NCONTRIB, NREJECT,
 * MASK), because the vector kernel decides each clipping in float only where
 * its error bound settles the decision and otherwise repeats the round in
 * double; and the median itself (formed in double from the two middle
 * values). The mean and the variance come from float sums about a median of
 * the window (kernels/combine.cl explains the bounds): for these stacks (level
 * ~1000, spread 30, 3 % outliers at +5000, at most 32 values) the mean is
 * within ~(m/2 + 2) 2^-24 sum|x - median| / m + 2^-23 |mean| < 3e-7 relative,
 * the variance (m + 4) 2^-24 x 2 < 5e-6 relative: checked to test_combine's
 * double tolerances, 1e-6 and 1e-5 relative. The plain mean sums about an
 * estimate of the mean instead (vec_mean_sums): sum|x - c| at most twice
 * sum|x - median| (plus 1e-5 m sigma), a mean within 6e-7 relative, and a
 * variance within the same bound. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static int same_float(float a, float b) { return (isnan(a) && isnan(b)) || a == b; }

static size_t count_diff(const clred_combine_result *x, const clred_combine_result *y, size_t n)
{
    size_t d = 0;
    for (size_t i = 0; i < n; i++)
        d += !same_float(x->image.sci[i], y->image.sci[i]) || !same_float(x->image.var[i], y->image.var[i]) ||
             x->image.mask[i] != y->image.mask[i] || x->ncontrib[i] != y->ncontrib[i] ||
             x->nrejected[i] != y->nrejected[i];
    return d;
}

static int near(float got, float want, double rel)
{
    if (isnan(got) || isnan(want))
        return isnan(got) && isnan(want);
    return fabs((double)got - (double)want) <= rel * fabs((double)want) + 1e-6;
}

/* The same kept sets (and medians) exactly, means and variances to the
 * bounds above; returns the pixels that differ. */
static size_t count_off(const clred_combine_result *x, const clred_combine_result *y, size_t n, int median)
{
    size_t d = 0;
    for (size_t i = 0; i < n; i++)
        d += x->image.mask[i] != y->image.mask[i] || x->ncontrib[i] != y->ncontrib[i] ||
             x->nrejected[i] != y->nrejected[i] ||
             !(median ? same_float(x->image.sci[i], y->image.sci[i]) : near(x->image.sci[i], y->image.sci[i], 1e-6)) ||
             !near(x->image.var[i], y->image.var[i], 1e-5);
    return d;
}

/* With float accumulation OpenCL lets division and sqrt differ by a few ulp
 * between scalar and vector code, so a rejection can flip at a threshold:
 * the tolerances of test_combine's float check (values 2e-5, variances 1e-3
 * relative, up to 1 % of pixels with other counts). */
static size_t count_far(const clred_combine_result *x, const clred_combine_result *y, size_t n, size_t *flipped)
{
    size_t d = 0;
    *flipped = 0;
    for (size_t i = 0; i < n; i++) {
        if (x->ncontrib[i] != y->ncontrib[i] || x->image.mask[i] != y->image.mask[i]) {
            (*flipped)++;
            continue;
        }
        float a = x->image.sci[i], b = y->image.sci[i], va = x->image.var[i], vb = y->image.var[i];
        d += !((isnan(a) && isnan(b)) || fabsf(a - b) <= 2e-5f * fabsf(b) + 1e-6f) ||
             !((isnan(va) && isnan(vb)) || fabsf(va - vb) <= 1e-3f * fabsf(vb) + 1e-6f);
    }
    return d;
}

/* Pixels whose every usable value the vector kernel rejected, seen so far. */
static size_t all_rejected_seen;
/* every value is multiplied by this (values near 1e-22, like flux densities
 * in cgs units, square below FLT_MIN) */
static double value_scale = 1.0;

/* with_nan: 1 % of the values NaN; without, every lane of a vector is full
 * but those of pixel 3 (no usable value), which the fixed-depth median's
 * short network needs. */
static void run_case_nan(clred_ctx *ctx, size_t nframes, size_t w, size_t h, int with_mask, int with_nan,
                         clred_combine_opts o, harness_rng *rng, int exact)
{
    clred_image *frames = calloc(nframes, sizeof *frames);
    for (size_t f = 0; f < nframes; f++) {
        CHECK_OK(clred_image_alloc(&frames[f], w, h, 0, with_mask));
        for (size_t i = 0; i < w * h; i++) {
            double v = 1000.0 + 10.0 * f + 30.0 * harness_normal(rng);
            double u = harness_uniform(rng);
            if (u < 0.03)
                v += 5000.0; /* outliers for the clipping */
            else if (u < 0.04)
                v = with_nan ? NAN : v;
            else if (u < 0.05)
                v = 1000.0; /* ties */
            frames[f].sci[i] = (float)(v * value_scale);
            if (with_mask)
                frames[f].mask[i] = harness_uniform(rng) < 0.05 ? CLRED_MASK_BAD : 0;
        }
    }
    /* a pixel with no usable value at all */
    for (size_t f = 0; f < nframes; f++)
        frames[f].sci[3] = NAN;
    o.want_rejected_map = 1;
    clred_combine_result vec, plain;
    memset(&vec, 0, sizeof vec);
    memset(&plain, 0, sizeof plain);
    unsetenv("CLRED_COMBINE_NOVEC");
    CHECK_OK(clred_combine_images(ctx, frames, nframes, &o, &vec));
    setenv("CLRED_COMBINE_NOVEC", "1", 1);
    CHECK_OK(clred_combine_images(ctx, frames, nframes, &o, &plain));
    unsetenv("CLRED_COMBINE_NOVEC");
    if (vec.image.sci && plain.image.sci) {
        size_t flipped = 0;
        size_t d = exact ? count_off(&vec, &plain, w * h, o.method == CLRED_COMBINE_MEDIAN)
                         : count_far(&vec, &plain, w * h, &flipped);
        CHECK_MSG(flipped * 100 <= w * h, "%zu of %zu pixels kept another number of values", flipped, w * h);
        CHECK_MSG(d == 0, "N=%zu %zux%zu mask=%d method=%d reject=%d centre_mean=%d iters=%d: %zu pixels differ",
                  nframes, w, h, with_mask, (int)o.method, (int)o.reject, o.centre_mean, o.max_iters, d);
        CHECK(isnan(vec.image.sci[3]) && (vec.image.mask[3] & CLRED_MASK_NO_DATA));
        for (size_t i = 0; i < w * h; i++)
            all_rejected_seen += vec.ncontrib[i] == 0 && vec.nrejected[i] > 0 &&
                                 vec.image.mask[i] == (CLRED_MASK_NO_DATA | CLRED_MASK_CLIPPED);
    }
    clred_combine_result_free(&vec);
    clred_combine_result_free(&plain);
    for (size_t f = 0; f < nframes; f++)
        clred_image_free(&frames[f]);
    free(frames);
}

static void run_case(clred_ctx *ctx, size_t nframes, size_t w, size_t h, int with_mask, clred_combine_opts o,
                     harness_rng *rng, int exact)
{
    run_case_nan(ctx, nframes, w, h, with_mask, 1, o, rng, exact);
}

static int file_has(const char *path, const char *text)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return strstr(buf, text) != NULL;
}

/* Frames that are views of one cube (a NumPy 3-D array, a cube read whole)
 * are stacked in place where the device shares host memory: the same bits as
 * the same frames held apart, which are copied into a stack of clred's own
 * whose frames lie a padded pitch apart (stack_pitch: 192 + 48 values here,
 * against the cube's 185). */
static void cube_case(clred_ctx *ctx, harness_rng *rng)
{
    const size_t nframes = 7, w = 37, h = 5, npix = w * h;
    float *cube = aligned_alloc(4096, 4096 * ((nframes * npix * sizeof(float) + 4095) / 4096));
    clred_image apart[7], views[7];
    CHECK(cube != NULL);
    if (!cube)
        return;
    for (size_t f = 0; f < nframes; f++) {
        CHECK_OK(clred_image_alloc(&apart[f], w, h, 0, 0));
        for (size_t i = 0; i < npix; i++)
            apart[f].sci[i] = cube[f * npix + i] = (float)(100.0 + 10.0 * harness_normal(rng));
        views[f] = apart[f];
        views[f].sci = cube + f * npix;
    }
    cube[2] = NAN;
    apart[0].sci[2] = NAN;
    clred_combine_opts o = clred_combine_defaults();
    o.method = CLRED_COMBINE_MEDIAN;
    o.want_rejected_map = 1;
    for (int pass = 0; pass < 2; pass++) {
        clred_combine_result a, b;
        memset(&a, 0, sizeof a);
        memset(&b, 0, sizeof b);
        CHECK_OK(clred_combine_images(ctx, apart, nframes, &o, &a));
        CHECK_OK(clred_ctx_trace_start(ctx));
        CHECK_OK(clred_combine_images(ctx, views, nframes, &o, &b));
        char trace[512];
        snprintf(trace, sizeof trace, "%s/cube_trace.json", harness_tmpdir("test_combine_vec"));
        CHECK_OK(clred_ctx_trace_write(ctx, trace));
        /* in place: no frame is copied into a stack buffer on the device */
        if (clred_ctx_device(ctx)->is_cpu && !getenv("CLRED_NO_ZERO_COPY"))
            CHECK_MSG(!file_has(trace, "device: copies"), "a cube's frames were copied (%s)", trace);
        if (a.image.sci && b.image.sci)
            CHECK_MSG(count_diff(&a, &b, npix) == 0, "a cube's frames stacked in place differ (reject=%d)",
                      (int)o.reject);
        clred_combine_result_free(&a);
        clred_combine_result_free(&b);
        o.method = CLRED_COMBINE_MEAN;
        o.reject = CLRED_REJECT_SIGCLIP;
    }
    for (size_t f = 0; f < nframes; f++)
        clred_image_free(&apart[f]);
    free(cube);
}

/* Decisions the float error bound cannot settle: a level of 1e6 (float
 * spacing 1/16) and a spread of about one, so the float sums' error (~0.1)
 * covers several of the values' steps, and every pixel has values within it
 * of a 1.5-sigma threshold. The vector kernel must repeat those rounds in
 * double and keep exactly what the per-pixel kernel keeps (without the
 * repeat, its sure decisions alone clip too little here). Pixels of the
 * first row hold their values exactly on the 1-sigma thresholds instead
 * (half at level - s, half at level + s: x < level - s decides nothing). */
static void near_threshold_case(clred_ctx *ctx, harness_rng *rng)
{
    const size_t nframes = 20, w = 37, h = 5, npix = w * h;
    clred_image frames[20];
    for (size_t f = 0; f < nframes; f++) {
        CHECK_OK(clred_image_alloc(&frames[f], w, h, 0, 0));
        for (size_t i = 0; i < npix; i++) {
            float level = (float)(1000000 + 64 * i);
            if (i < w)
                frames[f].sci[i] = f % 2 ? level + (float)(1 + i % 3) : level - (float)(1 + i % 3);
            else
                frames[f].sci[i] = level + 0.0625f * (float)((int)(harness_uniform(rng) * 41.0) - 20);
        }
    }
    clred_combine_opts o = clred_combine_defaults();
    o.method = CLRED_COMBINE_MEAN;
    o.reject = CLRED_REJECT_SIGCLIP;
    o.want_rejected_map = 1;
    for (int pass = 0; pass < 2; pass++) {
        o.sigma_lower = o.sigma_upper = pass ? 1.0 : 1.5;
        clred_combine_result vec, plain;
        memset(&vec, 0, sizeof vec);
        memset(&plain, 0, sizeof plain);
        CHECK_OK(clred_combine_images(ctx, frames, nframes, &o, &vec));
        setenv("CLRED_COMBINE_NOVEC", "1", 1);
        CHECK_OK(clred_combine_images(ctx, frames, nframes, &o, &plain));
        unsetenv("CLRED_COMBINE_NOVEC");
        if (vec.image.sci && plain.image.sci) {
            size_t clipped = 0, ties_kept = 0;
            for (size_t i = 0; i < npix; i++) {
                clipped += vec.ncontrib[i] < 20.0f;
                ties_kept += i < w && vec.ncontrib[i] == 20.0f;
            }
            CHECK_MSG(clipped > npix / 2, "only %zu of %zu pixels clipped", clipped, npix);
            CHECK_MSG(pass == 0 || ties_kept == w, "%zu of %zu pixels kept their values on the thresholds", ties_kept, w);
            CHECK_MSG(count_off(&vec, &plain, npix, 0) == 0, "near the thresholds (%.1f sigma): vector and per-pixel differ",
                      o.sigma_lower);
        }
        clred_combine_result_free(&vec);
        clred_combine_result_free(&plain);
    }
    for (size_t f = 0; f < nframes; f++)
        clred_image_free(&frames[f]);
}

/* The edge windows' own exact fallback (fixed depth, full lanes): 19 values
 * within half a unit of a level (1e6: float spacing 1/16) and a 20th, the
 * greatest, at the float nearest to the 3-sigma upper threshold it makes
 * itself (median + 3 std of all 20, solved in double). Only that value is
 * near a threshold, so the round stays an edge window, and its float error
 * bound (~0.05) cannot settle the decision: the vector kernel must repeat
 * the round in double and keep what the per-pixel kernel keeps (about half
 * of these pixels clip their greatest value). */
static double thi_of(const double *v, size_t n, int centre_mean)
{
    double s[32], mean = 0.0, q = 0.0;
    memcpy(s, v, n * sizeof *v);
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && s[j - 1] > s[j]; j--) {
            double t = s[j];
            s[j] = s[j - 1];
            s[j - 1] = t;
        }
    for (size_t i = 0; i < n; i++)
        mean += v[i] / (double)n;
    for (size_t i = 0; i < n; i++)
        q += (v[i] - mean) * (v[i] - mean);
    return (centre_mean ? mean : 0.5 * (s[(n - 1) / 2] + s[n / 2])) + 3.0 * sqrt(q / (double)n);
}

/* The stack with the vector kernel and with the per-pixel one. */
static void stack_both(clred_ctx *ctx, const clred_image *frames, size_t nframes, const clred_combine_opts *o,
                       clred_combine_result *vec, clred_combine_result *plain)
{
    memset(vec, 0, sizeof *vec);
    memset(plain, 0, sizeof *plain);
    CHECK_OK(clred_combine_images(ctx, frames, nframes, o, vec));
    setenv("CLRED_COMBINE_NOVEC", "1", 1);
    CHECK_OK(clred_combine_images(ctx, frames, nframes, o, plain));
    unsetenv("CLRED_COMBINE_NOVEC");
}

/* base, spacing: pixel i's level is base + spacing * i. At a level of 1e6
 * the thresholds' error is dominated by the centre's size; at a level of 0
 * by the spread's (the fast margin's sigma terms then decide which rounds
 * are settled in float, and a margin too small to cover them fails here). */
static void edge_threshold_case(clred_ctx *ctx, harness_rng *rng, double base, double spacing, int centre_mean)
{
    const size_t nframes = 20, w = 37, h = 5, npix = w * h;
    clred_image frames[20];
    /* on the float grid of 1e6 (1/16) there; at 0, of full precision (so
     * that the float sums round) and symmetric about 0 with three zeros in
     * the middle: the median is 0, and only the margin's sigma terms cover
     * the float thresholds' error */
    const int grid = base != 0.0;
    for (size_t f = 0; f < nframes; f++)
        CHECK_OK(clred_image_alloc(&frames[f], w, h, 0, 0));
    for (size_t i = 0; i < npix; i++) {
        double level = base + spacing * (double)i, v[20];
        for (size_t f = 0; f + 1 < nframes; f++)
            v[f] = grid ? level + 0.0625 * (double)((int)(harness_uniform(rng) * 17.0) - 8)
                 : f < 8    ? (double)(float)(0.5 * harness_uniform(rng))
                 : f < 16   ? -v[f - 8]
                            : 0.0;
        double lo = level + 0.5, hi = level + 50.0;
        for (int it = 0; it < 100; it++) {
            v[19] = 0.5 * (lo + hi);
            if (v[19] > thi_of(v, nframes, centre_mean))
                hi = v[19];
            else
                lo = v[19];
        }
        v[19] = (double)(float)v[19];
        for (size_t f = 0; f < nframes; f++) /* the greatest in another frame per pixel */
            frames[(f + i) % nframes].sci[i] = (float)v[f];
    }
    clred_combine_opts o = clred_combine_defaults();
    o.method = CLRED_COMBINE_MEAN;
    o.reject = CLRED_REJECT_SIGCLIP;
    o.sigma_lower = o.sigma_upper = 3.0;
    o.centre_mean = centre_mean;
    o.want_rejected_map = 1;
    clred_combine_result vec, plain;
    stack_both(ctx, frames, nframes, &o, &vec, &plain);
    if (vec.image.sci && plain.image.sci) {
        size_t clipped = 0;
        for (size_t i = 0; i < npix; i++)
            clipped += plain.ncontrib[i] < 20.0f;
        CHECK_MSG(clipped > npix / 5 && clipped < npix - npix / 5, "%zu of %zu pixels clipped at the threshold",
                  clipped, npix);
        CHECK_MSG(count_off(&vec, &plain, npix, 0) == 0,
                  "edge windows at the threshold (level %g, centre_mean %d): vector and per-pixel differ", base,
                  centre_mean);
    }
    clred_combine_result_free(&vec);
    clred_combine_result_free(&plain);
    for (size_t f = 0; f < nframes; f++)
        clred_image_free(&frames[f]);
}

/* Full lanes whose second round clips again: one outlier per pixel (high
 * or low) inflates the first round's spread so that a value 5 sigma out on
 * the other side is kept until the second round. The vector kernel takes
 * the edge windows' first two rounds together where max_iters allows two:
 * with max_iters 1 it must stop after the first, as the loop does.
 * both_sides: the other value is an outlier too, so the first round clips
 * one value from each side; the kernel's second round has no thresholds
 * formed for that window (it leaves the lanes to the loop), and had it used
 * those of a window with one of the outliers, its sums would keep it. */
static void two_round_case(clred_ctx *ctx, harness_rng *rng, int max_iters, int both_sides)
{
    const size_t nframes = 20, w = 37, h = 5, npix = w * h;
    clred_image frames[20];
    for (size_t f = 0; f < nframes; f++)
        CHECK_OK(clred_image_alloc(&frames[f], w, h, 0, 0));
    for (size_t i = 0; i < npix; i++) {
        double side = i % 2 ? 1.0 : -1.0;
        for (size_t f = 0; f < nframes; f++) {
            double v = f == 0   ? 5000.0 * side
                       : f == 1 ? (both_sides ? -5000.0 : -150.0) * side
                                : 30.0 * harness_normal(rng);
            frames[(f + i) % nframes].sci[i] = (float)(1000.0 + v);
        }
    }
    clred_combine_opts o = clred_combine_defaults();
    o.method = CLRED_COMBINE_MEAN;
    o.reject = CLRED_REJECT_SIGCLIP;
    o.sigma_lower = o.sigma_upper = 3.0;
    o.max_iters = max_iters;
    o.want_rejected_map = 1;
    clred_combine_result vec, plain;
    stack_both(ctx, frames, nframes, &o, &vec, &plain);
    if (vec.image.sci && plain.image.sci) {
        size_t second = 0; /* pixels whose second round clipped (or would have) */
        for (size_t i = 0; i < npix; i++)
            second += plain.nrejected[i] >= 2.0f;
        if (max_iters != 1)
            CHECK_MSG(second > npix / 2, "%zu of %zu pixels clipped in a second round", second, npix);
        CHECK_MSG(count_off(&vec, &plain, npix, 0) == 0,
                  "two rounds (max_iters %d, both sides %d): vector and per-pixel differ", max_iters, both_sides);
    }
    clred_combine_result_free(&vec);
    clred_combine_result_free(&plain);
    for (size_t f = 0; f < nframes; f++)
        clred_image_free(&frames[f]);
}

int main(void)
{
    clred_ctx *ctx = harness_ctx();
    harness_rng rng = {2026};
    const size_t depths[] = {1, 2, 3, 5, 8, 9, 20, 32};
    for (size_t d = 0; d < sizeof depths / sizeof *depths; d++) {
        clred_combine_opts o = clred_combine_defaults();
        o.method = CLRED_COMBINE_MEDIAN;
        run_case(ctx, depths[d], 37, 5, d % 2, o, &rng, 1); /* 185 pixels: 11 vectors and a tail of 9 */
        /* the plain mean (no network: two float passes, vec_mean_sums):
         * lanes with unusable values, then full lanes (all but pixel 3's) */
        o.method = CLRED_COMBINE_MEAN;
        run_case(ctx, depths[d], 37, 5, d % 2 == 0, o, &rng, 1);
        run_case_nan(ctx, depths[d], 37, 5, 0, 0, o, &rng, 1);
        o.reject = CLRED_REJECT_SIGCLIP;
        run_case(ctx, depths[d], 32, 4, d % 2 == 0, o, &rng, 1); /* no tail */
    }
    clred_combine_opts o = clred_combine_defaults();
    o.reject = CLRED_REJECT_SIGCLIP;
    o.sigma_lower = 2.0;
    o.sigma_upper = 2.5;
    o.centre_mean = 1;
    run_case(ctx, 20, 41, 3, 1, o, &rng, 1);
    o.centre_mean = 0;
    o.max_iters = 1;
    run_case(ctx, 20, 41, 3, 0, o, &rng, 1);
    o.max_iters = 0; /* until nothing changes */
    o.method = CLRED_COMBINE_MEDIAN;
    o.scale = CLRED_SCALE_MULTIPLICATIVE;
    run_case(ctx, 12, 50, 3, 1, o, &rng, 1);
    o.scale = CLRED_SCALE_ADDITIVE;
    run_case(ctx, 12, 50, 3, 0, o, &rng, 1);
    o.method = CLRED_COMBINE_MEAN;
    o.reject = CLRED_REJECT_NONE;
    run_case(ctx, 12, 50, 3, 1, o, &rng, 1);

    cube_case(ctx, &rng);
    near_threshold_case(ctx, &rng);

    /* the kernel built for its stack's depth (large stacks and 17-32
     * frames take it) */
    setenv("CLRED_COMBINE_FIXED_DEPTH", "1", 1);
    o = clred_combine_defaults();
    o.method = CLRED_COMBINE_MEDIAN;
    run_case(ctx, 20, 37, 5, 1, o, &rng, 1);
    run_case(ctx, 20, 37, 5, 0, o, &rng, 1);
    run_case_nan(ctx, 20, 37, 5, 0, 0, o, &rng, 1); /* full lanes: the median network of 20 */
    /* the plain mean: the median network only places its shift; lanes with
     * unusable values take the sorted copy */
    o.method = CLRED_COMBINE_MEAN;
    run_case(ctx, 20, 37, 5, 1, o, &rng, 1);
    run_case_nan(ctx, 20, 37, 5, 0, 0, o, &rng, 1);
    o.reject = CLRED_REJECT_SIGCLIP;
    run_case(ctx, 20, 37, 5, 1, o, &rng, 1);
    /* full lanes: the edge windows (one value clipped from a side, from the
     * clipping network's ranks alone), and lanes that clip two or more from
     * a side (3 % outliers: counted over every value); about the mean too */
    o.sigma_lower = o.sigma_upper = 3.0;
    run_case_nan(ctx, 20, 37, 5, 0, 0, o, &rng, 1);
    o.sigma_lower = 2.0;
    o.sigma_upper = 2.5;
    o.centre_mean = 1;
    run_case_nan(ctx, 20, 37, 5, 0, 0, o, &rng, 1);
    o.centre_mean = 0;
    /* thresholds so tight that some pixels keep no value at all */
    o.sigma_lower = o.sigma_upper = 0.05;
    all_rejected_seen = 0;
    run_case(ctx, 20, 37, 5, 0, o, &rng, 1);
    run_case_nan(ctx, 20, 37, 5, 0, 0, o, &rng, 1);
    CHECK_MSG(all_rejected_seen > 0, "no pixel had all its values rejected");
    near_threshold_case(ctx, &rng);
    /* tiny values: squares below FLT_MIN (the float rounds' margins must
     * send them to acc_t) and just above it; the general windows and the
     * edge windows, about the median and the mean */
    const double scales[] = {1e-25, 1e-21, 1e-19};
    for (size_t k = 0; k < sizeof scales / sizeof *scales; k++) {
        value_scale = scales[k];
        o = clred_combine_defaults();
        o.method = CLRED_COMBINE_MEAN;
        o.reject = CLRED_REJECT_SIGCLIP;
        run_case(ctx, 20, 37, 5, 1, o, &rng, 1);
        run_case_nan(ctx, 20, 37, 5, 0, 0, o, &rng, 1);
        o.centre_mean = 1;
        run_case_nan(ctx, 20, 37, 5, 0, 0, o, &rng, 1);
    }
    value_scale = 1.0;
    edge_threshold_case(ctx, &rng, 1000000.0, 64.0, 0);
    edge_threshold_case(ctx, &rng, 0.0, 0.0, 0);
    edge_threshold_case(ctx, &rng, 0.0, 0.0, 1);
    for (int iters = 0; iters <= 3; iters++)
        for (int both_sides = 0; both_sides <= 1; both_sides++)
            two_round_case(ctx, &rng, iters, both_sides);
    /* an odd depth between 17 and 24: one middle rank, its own networks */
    o = clred_combine_defaults();
    o.method = CLRED_COMBINE_MEDIAN;
    run_case_nan(ctx, 23, 37, 5, 0, 0, o, &rng, 1);
    run_case(ctx, 23, 37, 5, 1, o, &rng, 1);
    o.method = CLRED_COMBINE_MEAN;
    o.reject = CLRED_REJECT_SIGCLIP;
    run_case_nan(ctx, 23, 37, 5, 1, 0, o, &rng, 1);
    run_case_nan(ctx, 23, 37, 5, 0, 0, o, &rng, 1); /* full lanes: edge windows of an odd depth */
    unsetenv("CLRED_COMBINE_FIXED_DEPTH");

    /* the float-accumulation path, at test_combine's float depth (8: the
     * same programs) */
    setenv("CLRED_FLOAT_ACCUM", "1", 1);
    clred_ctx *fctx = harness_ctx();
    o = clred_combine_defaults();
    o.reject = CLRED_REJECT_SIGCLIP;
    run_case(fctx, 8, 37, 4, 1, o, &rng, 0);
    clred_ctx_destroy(fctx);
    clred_ctx_destroy(ctx);
    return harness_finish();
}
