/* Image statistics on the device against the double-precision, sort-based
 * reference (tests/reference/stats_ref.c), and FITS section parsing.
 *
 * Tolerances:
 * - median, MAD (double path), min, max, counts and iterations: exact. The
 *   median is a selected input value (or the mean of two, formed in double the
 *   same way as the reference); the MAD is a selected |x - median| computed in
 *   double by the same IEEE operations on the device and the host.
 * - mean and std (double accumulation): 1e-9 relative to the spread plus the
 *   level. Double partial sums over at most ~1e5 terms lose at most about
 *   n * 2^-53 ~ 1e-11 relative; 1e-9 leaves margin and still catches any
 *   float-precision step (~1e-7).
 * - float accumulation: see float_accum_path().
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "internal.h"
#include "stats_clip.h"
#include "stats_ref.h"

static int same_or_both_nan(double a, double b) { return (isnan(a) && isnan(b)) || a == b; }

/* Compares got with ref. mean_tol / std_tol / mad_tol are absolute; the median
 * is always compared exactly. */
static void compare_tol(const char *what, const clred_stats *got, const clred_stats *ref, double mean_tol,
                        double std_tol, double mad_tol)
{
    CHECK_MSG(got->npix == ref->npix, "%s: npix %zu, reference %zu", what, got->npix, ref->npix);
    CHECK_MSG(got->nrejected == ref->nrejected, "%s: nrejected %zu, reference %zu", what, got->nrejected,
              ref->nrejected);
    CHECK_MSG(got->ninvalid == ref->ninvalid, "%s: ninvalid %zu, reference %zu", what, got->ninvalid, ref->ninvalid);
    CHECK_MSG(got->iterations == ref->iterations, "%s: iterations %d, reference %d", what, got->iterations,
              ref->iterations);
    CHECK_MSG(same_or_both_nan(got->median, ref->median), "%s: median %.17g, reference %.17g", what, got->median,
              ref->median);
    CHECK_MSG(same_or_both_nan(got->min, ref->min), "%s: min %.17g, reference %.17g", what, got->min, ref->min);
    CHECK_MSG(same_or_both_nan(got->max, ref->max), "%s: max %.17g, reference %.17g", what, got->max, ref->max);
    CHECK_MSG(same_or_both_nan(got->mean, ref->mean) || fabs(got->mean - ref->mean) <= mean_tol,
              "%s: mean %.17g, reference %.17g (tolerance %.3g)", what, got->mean, ref->mean, mean_tol);
    CHECK_MSG(same_or_both_nan(got->std, ref->std) || fabs(got->std - ref->std) <= std_tol,
              "%s: std %.17g, reference %.17g (tolerance %.3g)", what, got->std, ref->std, std_tol);
    CHECK_MSG(same_or_both_nan(got->mad, ref->mad) || fabs(got->mad - ref->mad) <= mad_tol,
              "%s: mad %.17g, reference %.17g (tolerance %.3g)", what, got->mad, ref->mad, mad_tol);
}

static void compare(const char *what, const clred_stats *got, const clred_stats *ref)
{
    double scale = fabs(ref->mean) + ref->std + 1e-300;
    compare_tol(what, got, ref, 1e-9 * scale, 1e-9 * scale, 0.0);
}

/* Runs the device and the reference on the same image and options. */
static void check_case(clred_ctx *ctx, const char *what, const clred_image *img, const clred_stats_opts *o)
{
    clred_stats got, ref;
    CHECK_OK(clred_image_stats(ctx, img, o, &got));
    CHECK(stats_ref(img->sci, img->mask, img->width, img->height, o, &ref) == 0);
    compare(what, &got, &ref);
}

/* Normal data with gross outliers, NaNs, infinities and masked pixels. */
static void fill_noisy(clred_image *img, harness_rng *rng, double level, double sigma)
{
    size_t n = img->width * img->height;
    for (size_t i = 0; i < n; i++) {
        img->sci[i] = (float)(level + sigma * harness_normal(rng));
        double u = harness_uniform(rng);
        if (u < 0.02)
            img->sci[i] = (float)(level + sigma * (8 + 50 * harness_uniform(rng))); /* cosmic-ray-like */
        else if (u < 0.03)
            img->sci[i] = (float)(level - sigma * (6 + 10 * harness_uniform(rng)));
        else if (u < 0.035)
            img->sci[i] = NAN;
        else if (u < 0.036)
            img->sci[i] = u < 0.0355 ? INFINITY : -INFINITY;
        if (img->mask) {
            double m = harness_uniform(rng);
            img->mask[i] = m < 0.01 ? CLRED_MASK_BAD : m < 0.02 ? CLRED_MASK_SATURATED : m < 0.04 ? CLRED_MASK_DETECTED : 0;
        }
    }
}

static void noisy_images(clred_ctx *ctx)
{
    harness_rng rng = {12345};
    clred_image img;
    CHECK_OK(clred_image_alloc(&img, 300, 200, 0, 1));
    fill_noisy(&img, &rng, 1000.0, 12.0);

    clred_stats_opts o = clred_stats_defaults();
    check_case(ctx, "noisy default", &img, &o);
    clred_stats got;
    CHECK_OK(clred_image_stats(ctx, &img, NULL, &got));
    CHECK(got.nrejected > 0 && got.ninvalid > 0 && got.iterations >= 2);
    /* DETECTED is not in the default ignore bits: those pixels are used. */
    CHECK(got.ninvalid < img.width * img.height / 20);

    o.spread_mad = 1;
    check_case(ctx, "noisy mad spread", &img, &o);
    o.spread_mad = 0;
    o.centre_mean = 1;
    check_case(ctx, "noisy mean centre", &img, &o);
    o.spread_mad = 1;
    check_case(ctx, "noisy mean centre mad spread", &img, &o);
    o = clred_stats_defaults();
    o.sigma_lower = 2.0;
    o.sigma_upper = 4.5;
    check_case(ctx, "noisy asymmetric sigmas", &img, &o);
    o.max_iters = 0;
    check_case(ctx, "noisy no clipping", &img, &o);
    o.max_iters = 1;
    check_case(ctx, "noisy one iteration", &img, &o);
    o.max_iters = 50;
    check_case(ctx, "noisy to convergence", &img, &o);
    o = clred_stats_defaults();
    o.ignore_bits = 0;
    check_case(ctx, "noisy mask ignored", &img, &o);
    o.ignore_bits = CLRED_MASK_UNUSABLE | CLRED_MASK_DETECTED;
    check_case(ctx, "noisy detected ignored", &img, &o);

    /* A region [x0, x1) x [y0, y1) with odd and even sizes. */
    o = clred_stats_defaults();
    o.x0 = 17, o.x1 = 250, o.y0 = 3, o.y1 = 120;
    check_case(ctx, "region", &img, &o);
    o.x0 = 299, o.x1 = 300, o.y0 = 199, o.y1 = 200;
    check_case(ctx, "region of the last pixel", &img, &o);
    o.x0 = 10, o.x1 = 12, o.y0 = 50, o.y1 = 51;
    check_case(ctx, "region of two pixels", &img, &o);

    /* Bad regions and options are usage errors naming the problem. */
    o.x0 = 10, o.x1 = 301, o.y0 = 0, o.y1 = 5;
    CHECK(clred_image_stats(ctx, &img, &o, &got) == CLRED_ERR_USAGE);
    CHECK(strstr(clred_last_error(), "300x200") != NULL);
    o.x0 = 10, o.x1 = 10, o.y0 = 0, o.y1 = 5;
    CHECK(clred_image_stats(ctx, &img, &o, &got) == CLRED_ERR_USAGE);
    o = clred_stats_defaults();
    o.sigma_lower = -1;
    CHECK(clred_image_stats(ctx, &img, &o, &got) == CLRED_ERR_USAGE);
    CHECK(strstr(clred_last_error(), "sigma") != NULL);
    o = clred_stats_defaults();
    o.max_iters = -2;
    CHECK(clred_image_stats(ctx, &img, &o, &got) == CLRED_ERR_USAGE);

    /* The internal entry point on data already on the device, without a mask. */
    cl_mem sci;
    CHECK_OK(clred_buffer(ctx, CL_MEM_READ_ONLY, img.width * img.height * sizeof(float), img.sci, &sci, "test"));
    clred_stats ref;
    o = clred_stats_defaults();
    CHECK_OK(clred_stats_device(ctx, sci, NULL, img.width, img.height, &o, &got));
    CHECK(stats_ref(img.sci, NULL, img.width, img.height, &o, &ref) == 0);
    compare("device entry, no mask", &got, &ref);
    clred_release(&sci);
    clred_image_free(&img);
}

/* Odd and even counts, sizes that are not multiples of any work-group size. */
static void shapes(clred_ctx *ctx)
{
    static const size_t dims[][2] = {{1, 1}, {2, 1}, {1, 2}, {3, 1}, {4, 1}, {5, 1}, {6, 1},
                                     {67, 45}, {1000, 3}, {3, 1000}, {257, 1}, {64, 48}};
    harness_rng rng = {99};
    for (size_t d = 0; d < sizeof dims / sizeof *dims; d++) {
        clred_image img;
        CHECK_OK(clred_image_alloc(&img, dims[d][0], dims[d][1], 0, 0));
        size_t n = img.width * img.height;
        for (size_t i = 0; i < n; i++)
            img.sci[i] = (float)(harness_normal(&rng) * 3.0 - 7.0);
        if (n > 10)
            img.sci[n / 3] = 500.0f;
        char what[64];
        snprintf(what, sizeof what, "%zux%zu", img.width, img.height);
        clred_stats_opts o = clred_stats_defaults();
        check_case(ctx, what, &img, &o);
        o.spread_mad = 1;
        check_case(ctx, what, &img, &o);
        clred_image_free(&img);
    }

    /* Known answers: 1 pixel, 2 pixels (median = mean of the two), 4 pixels. */
    clred_image img;
    CHECK_OK(clred_image_alloc(&img, 1, 1, 0, 0));
    img.sci[0] = 42.5f;
    clred_stats got;
    CHECK_OK(clred_image_stats(ctx, &img, NULL, &got));
    CHECK(got.npix == 1 && got.median == 42.5 && got.mean == 42.5 && got.std == 0 && got.mad == 0);
    clred_image_free(&img);
    CHECK_OK(clred_image_alloc(&img, 2, 1, 0, 0));
    img.sci[0] = 3.0f, img.sci[1] = -1.0f;
    CHECK_OK(clred_image_stats(ctx, &img, NULL, &got));
    CHECK(got.npix == 2 && got.median == 1.0 && got.mean == 1.0 && got.std == 2.0 && got.mad == 2.0);
    CHECK(got.min == -1.0 && got.max == 3.0);
    clred_image_free(&img);
    CHECK_OK(clred_image_alloc(&img, 2, 2, 0, 0));
    img.sci[0] = 4.0f, img.sci[1] = 1.0f, img.sci[2] = 3.0f, img.sci[3] = 10.0f;
    CHECK_OK(clred_image_stats(ctx, &img, NULL, &got));
    CHECK(got.median == 3.5 && got.mean == 4.5 && got.mad == 1.5);
    clred_image_free(&img);
}

/* Integer-valued data like a bias frame: many equal values, where the middle
 * of an even count falls inside or at the end of a run of equal keys. Also
 * negative values and both zeros. */
static void ties(clred_ctx *ctx)
{
    harness_rng rng = {7};
    clred_image img;
    CHECK_OK(clred_image_alloc(&img, 96, 50, 0, 0));
    for (size_t i = 0; i < 96 * 50; i++)
        img.sci[i] = (float)floor(1000.0 + 2.5 * harness_normal(&rng));
    clred_stats_opts o = clred_stats_defaults();
    check_case(ctx, "integer ties", &img, &o);
    o.spread_mad = 1;
    check_case(ctx, "integer ties, mad", &img, &o);
    for (size_t i = 0; i < 96 * 50; i++)
        img.sci[i] = (float)floor(2.0 * harness_normal(&rng)) + (i % 7 == 0 ? -0.0f : 0.0f);
    o = clred_stats_defaults();
    check_case(ctx, "ties around zero", &img, &o);
    /* Two values, half each: the two middle values differ. */
    for (size_t i = 0; i < 96 * 50; i++)
        img.sci[i] = i % 2 ? 5.0f : -3.0f;
    check_case(ctx, "two values", &img, &o);
    clred_image_free(&img);
}

static void constant_and_empty(clred_ctx *ctx)
{
    clred_image img;
    CHECK_OK(clred_image_alloc(&img, 67, 45, 0, 1));
    for (size_t i = 0; i < 67 * 45; i++)
        img.sci[i] = 123.25f;
    clred_stats got;
    clred_stats_opts o = clred_stats_defaults();
    /* std 0: the bounds collapse onto the value and keep every pixel. */
    CHECK_OK(clred_image_stats(ctx, &img, &o, &got));
    CHECK(got.npix == 67 * 45 && got.nrejected == 0 && got.std == 0 && got.mad == 0 && got.mean == 123.25);
    CHECK(got.iterations == 1);
    o.spread_mad = 1;
    check_case(ctx, "constant, mad", &img, &o);

    /* More than half the pixels equal: the MAD is 0, so with a MAD spread only
     * the value itself survives. */
    for (size_t i = 0; i < 67 * 45; i += 3)
        img.sci[i] = (float)i;
    check_case(ctx, "majority constant, mad", &img, &o);

    /* sigma 0 on an even count with distinct middle values keeps nothing. */
    o = clred_stats_defaults();
    o.sigma_lower = o.sigma_upper = 0;
    clred_image two;
    CHECK_OK(clred_image_alloc(&two, 4, 1, 0, 0));
    two.sci[0] = 1, two.sci[1] = 2, two.sci[2] = 3, two.sci[3] = 4;
    CHECK_OK(clred_image_stats(ctx, &two, &o, &got));
    CHECK(got.npix == 0 && got.nrejected == 4 && isnan(got.median) && got.iterations == 1);
    check_case(ctx, "sigma 0, even", &two, &o);
    clred_image_free(&two);

    /* No usable pixel: OK with npix 0 and NaN statistics (documented in clred.h). */
    for (size_t i = 0; i < 67 * 45; i++) {
        img.sci[i] = (float)i;
        img.mask[i] = CLRED_MASK_BAD;
    }
    o = clred_stats_defaults();
    CHECK_OK(clred_image_stats(ctx, &img, &o, &got));
    CHECK(got.npix == 0 && got.ninvalid == 67 * 45 && got.nrejected == 0 && got.iterations == 0);
    CHECK(isnan(got.mean) && isnan(got.median) && isnan(got.std) && isnan(got.mad) && isnan(got.min) &&
          isnan(got.max));
    check_case(ctx, "fully masked", &img, &o);
    for (size_t i = 0; i < 67 * 45; i++) {
        img.sci[i] = NAN;
        img.mask[i] = 0;
    }
    check_case(ctx, "all NaN", &img, &o);
    clred_image_free(&img);
}

/* Runs check_case and checks that the bin method answered it (gave_up 0) or
 * gave it up to radix selection (gave_up 1). */
static void check_bins(clred_ctx *ctx, const char *what, const clred_image *img, const clred_stats_opts *o,
                       int gave_up)
{
    unsigned long a0, g0, a1, g1;
    clred_stats_bins_counts(&a0, &g0);
    check_case(ctx, what, img, o);
    clred_stats_bins_counts(&a1, &g1);
    CHECK_MSG(a1 - a0 == (unsigned long)!gave_up && g1 - g0 == (unsigned long)gave_up,
              "%s: bin method answered %lu, gave up %lu", what, a1 - a0, g1 - g0);
}

/* The bin method on regions big enough (> 16384 usable pixels) that it
 * refines only the predicted bins: sums by shells, gathered bins counted or
 * sorted, and a prediction that misses (no bound bins refined). */
static void bin_method(clred_ctx *ctx, const char *shape)
{
    harness_rng rng = {4242};
    clred_image img;
    CHECK_OK(clred_image_alloc(&img, 200, 120, 0, 1));
    size_t n = img.width * img.height;
    char what[96];
    fill_noisy(&img, &rng, 1000.0, 12.0);
    clred_stats_opts o = clred_stats_defaults();
    snprintf(what, sizeof what, "%s: bins, noisy", shape);
    check_bins(ctx, what, &img, &o, 0);
    o.sigma_lower = 2.0, o.sigma_upper = 4.5, o.max_iters = 50;
    snprintf(what, sizeof what, "%s: bins, asymmetric to convergence", shape);
    check_bins(ctx, what, &img, &o, 0);
    o = clred_stats_defaults();
    o.centre_mean = 1;
    snprintf(what, sizeof what, "%s: bins, mean centre", shape);
    check_bins(ctx, what, &img, &o, 0);
    o = clred_stats_defaults();
    o.max_iters = 0;
    snprintf(what, sizeof what, "%s: bins, no clipping", shape);
    check_bins(ctx, what, &img, &o, 0);

    /* The prediction misses: radix selection answers, the same. */
    o = clred_stats_defaults();
    clred_stats_bins_windows(-1, -1);
    snprintf(what, sizeof what, "%s: bins give up", shape);
    check_bins(ctx, what, &img, &o, 1);
    clred_stats_bins_windows(2, 1);

    /* Integer data at a raw-frame level (bins 128 wide: each holds many
     * values, and the median's bin thousands of pixels), and a few values
     * at the ends of the float range. */
    for (size_t i = 0; i < n; i++) {
        img.sci[i] = (float)floor(30000.0 + 40.0 * harness_normal(&rng));
        img.mask[i] = 0;
    }
    img.sci[7] = FLT_MAX, img.sci[99] = -FLT_MAX, img.sci[500] = 1e-40f, img.sci[501] = -3e38f;
    snprintf(what, sizeof what, "%s: bins, integer ties and extremes", shape);
    check_bins(ctx, what, &img, &o, 0);
    /* Negative values and both zeros, in few distinct values. */
    for (size_t i = 0; i < n; i++)
        img.sci[i] = (float)floor(3.0 * harness_normal(&rng)) * (i % 5 == 0 ? -1.0f : 1.0f) + (i % 7 ? 0.0f : -0.0f);
    snprintf(what, sizeof what, "%s: bins, ties around zero", shape);
    check_bins(ctx, what, &img, &o, 0);
    /* Nearly all equal. */
    for (size_t i = 0; i < n; i++)
        img.sci[i] = i % 997 == 0 ? (float)(i % 3) - 1e6f : -17.5f;
    snprintf(what, sizeof what, "%s: bins, nearly constant", shape);
    check_bins(ctx, what, &img, &o, 0);
    clred_image_free(&img);
}

/* The window of fine bins (placed from a sample of rows; the region 203
 * wide so that the eight-lane loops leave tails): answered exactly with
 * NaN, Inf and masked pixels about; all pixels in one fine bin (counted by
 * key, more than a sort would take); ties inside fine bins; a sample that
 * misleads (even rows, sampled, at another level than odd ones); and the
 * coarse bins when the window is refused or turned off. */
static void bin_window(clred_ctx *ctx, const char *shape)
{
    harness_rng rng = {777};
    clred_image img;
    CHECK_OK(clred_image_alloc(&img, 203, 119, 0, 1));
    size_t n = img.width * img.height;
    char what[96];
    clred_stats_opts o = clred_stats_defaults();
    unsigned long z0 = clred_stats_bins_zoomed();
    fill_noisy(&img, &rng, 5000.0, 20.0);
    snprintf(what, sizeof what, "%s: window, noisy", shape);
    check_bins(ctx, what, &img, &o, 0);
    CHECK_MSG(clred_stats_bins_zoomed() == z0 + 1, "%s: no window placed", what);
    o.sigma_lower = 2.0, o.sigma_upper = 4.5, o.max_iters = 50;
    snprintf(what, sizeof what, "%s: window, asymmetric to convergence", shape);
    check_bins(ctx, what, &img, &o, 0);
    o = clred_stats_defaults();

    /* Bounds in unrefined fine bins: radix selection answers. */
    clred_stats_bins_windows(-1, -1);
    snprintf(what, sizeof what, "%s: window, gives up", shape);
    check_bins(ctx, what, &img, &o, 1);
    clred_stats_bins_windows(2, 1);
    /* The same image in coarse bins. */
    clred_stats_bins_zoom(0);
    z0 = clred_stats_bins_zoomed();
    snprintf(what, sizeof what, "%s: window off", shape);
    check_bins(ctx, what, &img, &o, 0);
    CHECK(clred_stats_bins_zoomed() == z0);
    clred_stats_bins_zoom(1);

    /* Four neighbouring floats and a few outliers: nearly every pixel in
     * one fine bin, ties of thousands of pixels per value. */
    for (size_t i = 0; i < n; i++) {
        img.sci[i] = nextafterf(nextafterf(1000.0f, 2000.0f), 2000.0f);
        for (size_t k = harness_uniform(&rng) < 0.5 ? 0 : (i % 3) + 1; k > 0; k--)
            img.sci[i] = nextafterf(img.sci[i], k % 2 ? 0.0f : 2000.0f);
        img.mask[i] = i % 101 == 3 ? CLRED_MASK_BAD : 0;
        if (i % 503 == 7)
            img.sci[i] = i % 2 ? 1500.0f : 500.0f;
    }
    img.sci[11] = NAN, img.sci[12] = INFINITY;
    snprintf(what, sizeof what, "%s: window, one fine bin", shape);
    check_bins(ctx, what, &img, &o, 0);
    /* Integers: many pixels per value in each fine bin. */
    for (size_t i = 0; i < n; i++)
        img.sci[i] = (float)floor(20000.0 + 15.0 * harness_normal(&rng) + (i % 211 == 0 ? 900.0 : 0.0));
    snprintf(what, sizeof what, "%s: window, integer ties", shape);
    check_bins(ctx, what, &img, &o, 0);
    clred_image_free(&img);

    /* A misleading sample: the rows the window's sample takes at this size
     * (4y + y % 4) sit 60 sigma below the others, so the window holds one
     * mode and the median, bounds and one MAD end fall in coarse bins. The
     * answer must be exact whichever method gives it. */
    CHECK_OK(clred_image_alloc(&img, 400, 400, 0, 0));
    for (size_t i = 0; i < 400 * 400; i++) {
        size_t row = i / 400;
        img.sci[i] = (float)((row % 4 != (row / 4) % 4 ? 1600.0 : 1000.0) + 10.0 * harness_normal(&rng));
    }
    z0 = clred_stats_bins_zoomed();
    snprintf(what, sizeof what, "%s: window, misleading sample", shape);
    check_case(ctx, what, &img, &o);
    CHECK(clred_stats_bins_zoomed() == z0 + 1);
    clred_image_free(&img);
}

/* Runs check_case and checks that the single pass answered it (hit 1) or
 * missed, so that the two passes or radix selection answered (hit 0). */
static void check_one_pass(clred_ctx *ctx, const char *what, const clred_image *img, const clred_stats_opts *o,
                           int hit)
{
    unsigned long h0, m0, h1, m1;
    clred_stats_bins_one_pass_counts(&h0, &m0);
    check_case(ctx, what, img, o);
    clred_stats_bins_one_pass_counts(&h1, &m1);
    CHECK_MSG(h1 - h0 == (unsigned long)hit && m1 - m0 == (unsigned long)!hit,
              "%s: single pass answered %lu, missed %lu", what, h1 - h0, m1 - m0);
}

/* The single pass (the sample's prediction decides what is gathered, with
 * capacities from the sample): it answers a noisy frame with NaN, Inf and
 * masked pixels and outliers exactly; a prediction skewed below or above
 * by 6 robust sigmas misses its median and MAD windows, and capacities
 * scaled to nothing overflow, and the two passes answer, exactly; all
 * pixels in one fine bin; a bimodal frame, whichever answers. 203 wide,
 * so that the eight-lane loops leave tails. */
static void single_pass(clred_ctx *ctx, const char *shape)
{
    harness_rng rng = {31337};
    clred_image img;
    CHECK_OK(clred_image_alloc(&img, 203, 119, 0, 1));
    size_t n = img.width * img.height;
    char what[96];
    clred_stats_opts o = clred_stats_defaults();
    fill_noisy(&img, &rng, 3000.0, 15.0);
    snprintf(what, sizeof what, "%s: single pass, noisy", shape);
    check_one_pass(ctx, what, &img, &o, 1);
    o.sigma_lower = 2.5, o.sigma_upper = 4.0, o.max_iters = 20;
    snprintf(what, sizeof what, "%s: single pass, asymmetric to convergence", shape);
    check_one_pass(ctx, what, &img, &o, 1);
    o = clred_stats_defaults();
    o.centre_mean = 1;
    snprintf(what, sizeof what, "%s: single pass, mean centre", shape);
    check_one_pass(ctx, what, &img, &o, 1);
    o = clred_stats_defaults();
    static const double skews[] = {-6.0, 6.0};
    for (int k = 0; k < 2; k++) {
        clred_stats_bins_one_pass(1, skews[k], 1.0);
        snprintf(what, sizeof what, "%s: single pass misses %s", shape, k ? "above" : "below");
        check_one_pass(ctx, what, &img, &o, 0);
        check_bins(ctx, what, &img, &o, 0); /* the two passes answered */
    }
    clred_stats_bins_one_pass(1, 0.0, 0.0);
    snprintf(what, sizeof what, "%s: single pass overflows", shape);
    check_one_pass(ctx, what, &img, &o, 0);
    clred_stats_bins_one_pass(1, 0.0, 1.0);

    /* Nearly all pixels on four neighbouring floats. */
    for (size_t i = 0; i < n; i++) {
        img.sci[i] = nextafterf(700.0f, (float)(i % 4));
        for (size_t k = i % 3; k > 0; k--)
            img.sci[i] = nextafterf(img.sci[i], 1000.0f);
        img.mask[i] = i % 89 == 5 ? CLRED_MASK_BAD : 0;
        if (i % 401 == 3)
            img.sci[i] = i % 2 ? 900.0f : -INFINITY;
    }
    snprintf(what, sizeof what, "%s: single pass, one fine bin", shape);
    check_one_pass(ctx, what, &img, &o, 1);
    /* Two modes 8 sigma apart, 60/40: clipping keeps both; the median
     * lies in the higher mode. */
    for (size_t i = 0; i < n; i++)
        img.sci[i] = (float)((harness_uniform(&rng) < 0.6 ? 1200.0 : 1080.0) + 15.0 * harness_normal(&rng));
    snprintf(what, sizeof what, "%s: single pass, bimodal", shape);
    check_case(ctx, what, &img, &o);
    o.max_iters = 30;
    snprintf(what, sizeof what, "%s: single pass, bimodal to convergence", shape);
    check_case(ctx, what, &img, &o);
    clred_image_free(&img);

    /* Every pixel gathered (a region of <= 16384 pixels, two passes) with
     * FLT_MAX and -FLT_MAX among them: sums over the gathered values must
     * not cancel against the extremes' squares (~1e77). */
    CHECK_OK(clred_image_alloc(&img, 100, 90, 0, 0));
    for (size_t i = 0; i < 100 * 90; i++)
        img.sci[i] = (float)floor(30000.0 + 40.0 * harness_normal(&rng));
    img.sci[5] = FLT_MAX, img.sci[77] = -FLT_MAX, img.sci[300] = 3e38f;
    snprintf(what, sizeof what, "%s: all gathered, extremes", shape);
    check_bins(ctx, what, &img, &o, 0);
    clred_image_free(&img);

    /* A sample that misleads: 512 x 512 samples rows 2y + y % 2, and these
     * sit 60 sigma below the others, so the sample sees one mode; the
     * single pass misses and the answer is exact. */
    o = clred_stats_defaults();
    CHECK_OK(clred_image_alloc(&img, 512, 512, 0, 0));
    for (size_t i = 0; i < 512 * 512; i++) {
        size_t row = i / 512;
        img.sci[i] = (float)((row % 2 != (row / 2) % 2 ? 1600.0 : 1000.0) + 10.0 * harness_normal(&rng));
    }
    snprintf(what, sizeof what, "%s: single pass, misleading sample", shape);
    check_one_pass(ctx, what, &img, &o, 0);
    clred_image_free(&img);
}

/* Runs check_one_pass and checks which kernel the single pass ran: the
 * vector one (stats_bin_one, vector 1) or the key one (stats_bin_scan). */
static void check_one_read(clred_ctx *ctx, const char *what, const clred_image *img, const clred_stats_opts *o,
                           int hit, int vector)
{
    unsigned long v0, k0, v1, k1;
    clred_stats_bins_one_read_counts(&v0, &k0);
    check_one_pass(ctx, what, img, o, hit);
    clred_stats_bins_one_read_counts(&v1, &k1);
    CHECK_MSG(v1 - v0 == (unsigned long)vector && k1 - k0 == (unsigned long)!vector,
              "%s: single pass ran the vector kernel %lu times, the key kernel %lu", what, v1 - v0, k1 - k0);
}

/* The single pass's vector kernel (a CPU; float compares for the key
 * partition), each case against the double reference: a noisy frame with
 * NaN, Inf, masked pixels and outliers, with and without the mask plane
 * (203 wide: a chunk's tail of eight-lane vectors and a scalar tail), and
 * with asymmetric sigmas; noise around zero with both zeros among the
 * pixels; uniform data (clipping keeps everything: the set's extremes lie
 * next to the fast set); and the key kernel where the core's bounds are
 * not finite (no clipping: the core is every bin). */
static void one_read(clred_ctx *ctx)
{
    harness_rng rng = {4242};
    clred_stats_bins_one_read_min(0); /* these frames are below the vector kernel's default size */
    clred_image img;
    CHECK_OK(clred_image_alloc(&img, 203, 131, 0, 1));
    size_t n = img.width * img.height;
    clred_stats_opts o = clred_stats_defaults();
    fill_noisy(&img, &rng, 2500.0, 11.0);
    check_one_read(ctx, "one read, noisy, masked", &img, &o, 1, 1);
    o.sigma_lower = 2.0, o.sigma_upper = 4.0, o.max_iters = 20;
    check_one_read(ctx, "one read, asymmetric to convergence", &img, &o, 1, 1);
    o = clred_stats_defaults();
    ushort *mask = img.mask;
    img.mask = NULL;
    check_one_read(ctx, "one read, no mask plane", &img, &o, 1, 1);
    img.mask = mask;

    o.max_iters = 0;
    check_one_read(ctx, "one read, no clipping", &img, &o, 1, 0);
    o = clred_stats_defaults();

    for (size_t i = 0; i < n; i++) {
        img.sci[i] = i % 5 ? (float)(3.0 * harness_normal(&rng)) : i % 2 ? 0.0f : -0.0f;
        img.mask[i] = 0;
    }
    check_one_read(ctx, "one read, noise around zero", &img, &o, 1, 1);

    for (size_t i = 0; i < n; i++)
        img.sci[i] = (float)(100.0 + 10.0 * harness_uniform(&rng));
    check_one_read(ctx, "one read, uniform", &img, &o, 1, 1);
    clred_stats_bins_one_read_min((size_t)1 << 20);
    fill_noisy(&img, &rng, 2500.0, 11.0);
    check_one_read(ctx, "one read, below the vector kernel's size", &img, &o, 1, 0);
    clred_image_free(&img);

    /* rows of two chunks, a whole one and a short one (2048 + 200 pixels
     * in vectors, 3 in the scalar tail): the short chunk's notes must not
     * keep the whole one's bits past its end */
    clred_stats_bins_one_read_min(0);
    CHECK_OK(clred_image_alloc(&img, 2251, 11, 0, 1));
    fill_noisy(&img, &rng, 2500.0, 11.0);
    check_one_read(ctx, "one read, two chunks a row", &img, &o, 1, 1);
    clred_stats_bins_one_read_min((size_t)1 << 20);
    clred_image_free(&img);
}

/* CLRED_FLOAT_ACCUM=1: sums in float and the MAD selected among float
 * deviations. Uniform data on [990, 1010] with gross outliers, so that no kept
 * value lies near a clipping bound and the kept set is the reference's.
 * - median, min, max, counts: exact (selection and comparisons do not
 *   accumulate).
 * - mean: the sums are of d = x - median, |d| <= 10; a work-item adds about
 *   n / (groups * local) + local + groups <= ~500 terms in a chain, so the
 *   error is below 500 * 2^-24 * 10 ~ 3e-4 on the sum / n scale; 1e-3 absolute.
 * - std: the same bound on sum(d^2) (|d^2| <= 100) gives ~3e-3 on the
 *   variance (~33), i.e. ~3e-4 on the std; 1e-3 absolute.
 * - MAD: |x - median| rounded once in float (values ~1000, ulp 6.1e-5) from a
 *   median rounded to float: at most 2 ulp, 1.3e-4.
 * - without clipping the outliers (|d| ~ 5000, 1%) raise mean |d| to ~55 and
 *   mean d^2 to ~2.5e5: 500 * 2^-24 * 55 ~ 2e-3 on the mean and 7.5 on the
 *   variance, ~8e-3 on a std of ~500; 0.02 absolute for both. */
static void float_accum_path(void)
{
    setenv("CLRED_FLOAT_ACCUM", "1", 1);
    clred_ctx *fctx = harness_ctx();
    unsetenv("CLRED_FLOAT_ACCUM");
    CHECK(fctx->use_double == 0);
    harness_rng rng = {2024};
    clred_image img;
    CHECK_OK(clred_image_alloc(&img, 211, 157, 0, 0));
    for (size_t i = 0; i < 211 * 157; i++) {
        img.sci[i] = (float)(990.0 + 20.0 * harness_uniform(&rng));
        if (i % 101 == 5)
            img.sci[i] = (float)(5000.0 + 1000.0 * harness_uniform(&rng));
        if (i % 211 == 7)
            img.sci[i] = NAN;
    }
    clred_stats_opts o = clred_stats_defaults();
    for (int pass = 0; pass < 3; pass++) {
        o.spread_mad = pass == 1;
        o.max_iters = pass == 2 ? 0 : 5;
        clred_stats got, ref;
        CHECK_OK(clred_image_stats(fctx, &img, &o, &got));
        CHECK(stats_ref(img.sci, NULL, img.width, img.height, &o, &ref) == 0);
        compare_tol(pass == 0 ? "float accumulation" : pass == 1 ? "float accumulation, mad" : "float, no clipping",
                    &got, &ref, pass == 2 ? 0.02 : 1e-3, pass == 2 ? 0.02 : 1e-3, 1.3e-4);
    }
    /* The float path must still catch a difference the test could miss: the
     * clipped mean differs from the unclipped one by far more than 1e-3. */
    clred_stats clipped, raw;
    o = clred_stats_defaults();
    CHECK_OK(clred_image_stats(fctx, &img, &o, &clipped));
    o.max_iters = 0;
    CHECK_OK(clred_image_stats(fctx, &img, &o, &raw));
    CHECK(clipped.npix < raw.npix && fabs(clipped.mean - raw.mean) > 1.0);
    clred_image_free(&img);
    clred_ctx_destroy(fctx);
}

/* A device with little local memory (4 KiB, as on some embedded GPUs): the
 * histogram falls back to narrower digits (9 bits here: 4 passes per 32-bit
 * key, the last of 5 bits; 8 per 64-bit). Same tolerances as above. */
static void small_local_memory(void)
{
    clred_ctx *sctx = harness_ctx();
    sctx->info.local_mem = 4096;
    harness_rng rng = {555};
    clred_image img;
    CHECK_OK(clred_image_alloc(&img, 67, 45, 0, 1));
    fill_noisy(&img, &rng, -250.0, 4.0);
    clred_stats_opts o = clred_stats_defaults();
    if (sctx->use_double) {
        check_case(sctx, "4 KiB local memory", &img, &o);
        o.spread_mad = 1;
        check_case(sctx, "4 KiB local memory, mad", &img, &o);
    }
    /* Too little local memory for any work-group is a device error, not a crash. */
    sctx->info.local_mem = 16;
    clred_stats got;
    CHECK(clred_image_stats(sctx, &img, &o, &got) == CLRED_ERR_DEVICE);
    CHECK(strstr(clred_last_error(), "local memory") != NULL);
    clred_image_free(&img);
    clred_ctx_destroy(sctx);
}

/* The GPU's launch shape on this device: work-groups of many work-items that
 * share one local histogram through atomics, and 13- to 16-bit digits. The
 * CPU path (one work-item per group) is what the other cases run here. */
static void work_group_path(void)
{
    clred_ctx *gctx = harness_ctx();
    gctx->info.is_cpu = 0;
    harness_rng rng = {99};
    clred_image img;
    CHECK_OK(clred_image_alloc(&img, 131, 37, 0, 1));
    fill_noisy(&img, &rng, 1500.0, 12.0);
    clred_stats_opts o = clred_stats_defaults();
    if (gctx->use_double) {
        check_case(gctx, "work-groups", &img, &o);
        o.spread_mad = 1;
        check_case(gctx, "work-groups, mad", &img, &o);
        for (size_t i = 0; i < 131 * 37; i++)
            img.sci[i] = i % 2 ? 5.0f : -3.0f;
        check_case(gctx, "work-groups, two values", &img, &o);
        bin_method(gctx, "work-group shape");
        bin_window(gctx, "work-group shape");
        single_pass(gctx, "work-group shape");
    }
    clred_image_free(&img);
    clred_ctx_destroy(gctx);
}

static void sections(void)
{
    clred_section s;
    CHECK_OK(clred_section_parse("[1:10,1:20]", &s));
    CHECK(s.set && s.x0 == 0 && s.x1 == 10 && s.y0 == 0 && s.y1 == 20);
    CHECK_OK(clred_section_parse(" [1025:1056, 3:1024] ", &s));
    CHECK(s.x0 == 1024 && s.x1 == 1056 && s.y0 == 2 && s.y1 == 1024);
    CHECK_OK(clred_section_parse("[5:5,7:7]", &s));
    CHECK(s.x0 == 4 && s.x1 == 5 && s.y0 == 6 && s.y1 == 7);
    static const char *bad[] = {"1:10,1:20", "[0:10,1:20]", "[10:5,1:20]", "[a:b,1:2]", "[1:10]",
                                "[*,1:5]",   "[1:10,1:20",  "[1:10,1:20]x", "",         "[1:10;1:20]",
                                "[-1:10,1:20]", "[1:99999999999999999999999,1:2]"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK_MSG(clred_section_parse(bad[i], &s) == CLRED_ERR_USAGE, "section \"%s\" accepted", bad[i]);
        CHECK_MSG(strstr(clred_last_error(), "section") != NULL && !s.set, "section \"%s\": %s", bad[i],
                  clred_last_error());
    }
    CHECK(clred_section_parse("[0:10,1:20]", &s) == CLRED_ERR_USAGE && strstr(clred_last_error(), "start at 1"));
    CHECK(clred_section_parse("[10:5,1:20]", &s) == CLRED_ERR_USAGE && strstr(clred_last_error(), "reversed"));
}

int main(void)
{
    double t0 = clred_now();
    sections();
    clred_ctx *ctx = harness_ctx();
    fprintf(stderr, "device: %s, accumulation in %s\n", ctx->info.name, ctx->use_double ? "double" : "float");
    /* The exact-MAD and 1e-9 comparisons hold for double accumulation; a device
     * without fp64 runs only the float path below, with its own tolerances. */
    if (ctx->use_double) {
        noisy_images(ctx);
        shapes(ctx);
        ties(ctx);
        constant_and_empty(ctx);
        bin_method(ctx, "cpu shape");
        bin_window(ctx, "cpu shape");
        single_pass(ctx, "cpu shape");
        one_read(ctx);
    } else {
        fprintf(stderr, "no fp64 on this device: double-path comparisons skipped\n");
    }
    clred_ctx_destroy(ctx);
    unsigned long answered = 0, gave_up = 0;
    clred_stats_bins_counts(&answered, &gave_up);
    fprintf(stderr, "bin method: %lu answered, %lu gave up to radix selection\n", answered, gave_up);
    unsigned long hit = 0, missed = 0;
    clred_stats_bins_one_pass_counts(&hit, &missed);
    fprintf(stderr, "single pass: %lu answered, %lu missed\n", hit, missed);
    small_local_memory();
    work_group_path();
    float_accum_path();
    fprintf(stderr, "test_stats: %.2f s\n", clred_now() - t0);
    return harness_finish();
}
