/* The mesh background against the double reference (boxes, partial boxes,
 * NaN, masked boxes, tiny images, float accumulation), and its accuracy on a
 * synthetic gradient with noise and stars. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "background_ref.h"
#include "harness.h"

static double max_abs(const double *a, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(a[i]) > m)
            m = fabs(a[i]);
    return m;
}

/* Device maps against the reference. tol_frac is relative to the largest
 * reference value. */
static void compare(clred_ctx *ctx, const clred_image *img, const clred_bkg_opts *o, double tol_frac,
                    const char *what)
{
    size_t n = img->width * img->height;
    int w = (int)img->width, h = (int)img->height;
    double *rb = malloc(n * sizeof *rb), *rr = malloc(n * sizeof *rr), gb = 0, gr = 0;
    int ref_ok = bkg_ref_background(img->sci, img->mask, w, h, o, rb, rr, &gb, &gr) == 0;
    clred_image bkg, rms;
    clred_bkg_info info;
    clred_status st = clred_background(ctx, img, o, &bkg, &rms, &info);
    CHECK_MSG(st == CLRED_OK, "%s: %s", what, clred_last_error());
    CHECK(ref_ok);
    if (st != CLRED_OK || !ref_ok) {
        free(rb), free(rr);
        return;
    }
    double tb = tol_frac * (max_abs(rb, n) + 1e-30), tr = tol_frac * (max_abs(rr, n) + 1e-30);
    size_t bad_b = 0, bad_r = 0;
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(bkg.sci[i] - rb[i]);
        bad_b += !(d <= tb);
        bad_r += !(fabs(rms.sci[i] - rr[i]) <= tr);
        if (d > worst)
            worst = d;
    }
    CHECK_MSG(bad_b == 0, "%s: %zu of %zu background pixels differ (worst %.3g, tolerance %.3g)", what, bad_b, n,
              worst, tb);
    CHECK_MSG(bad_r == 0, "%s: %zu of %zu rms pixels differ", what, bad_r, n);
    CHECK_NEAR(info.global_back, gb, tol_frac * fabs(gb) + 1e-9);
    CHECK_NEAR(info.global_rms, gr, tol_frac * fabs(gr) + 1e-9);
    CHECK(info.mesh_w == (img->width + (size_t)o->box_w - 1) / (size_t)o->box_w);
    clred_image_free(&bkg);
    clred_image_free(&rms);
    free(rb), free(rr);
}

static void test_against_reference(clred_ctx *ctx, clred_ctx *fctx)
{
    harness_rng rng = {5};
    /* 200 x 150 in 32 x 24 boxes: partial boxes on the right and at the top */
    clred_image img;
    CHECK_OK(clred_image_alloc(&img, 200, 150, 0, 1));
    for (size_t y = 0; y < 150; y++)
        for (size_t x = 0; x < 200; x++) {
            size_t i = y * 200 + x;
            img.sci[i] = (float)(100 + 0.2 * x - 0.1 * y + 5 * harness_normal(&rng));
            if (harness_uniform(&rng) < 0.01)
                img.sci[i] += 500; /* outliers to clip */
            if (i % 211 == 7)
                img.sci[i] = NAN;
            if (x < 32 && y >= 48 && y < 72)
                img.mask[i] = CLRED_MASK_BAD; /* one box fully masked: filled from neighbours */
            if (x >= 96 && x < 128 && y < 24 && x % 3)
                img.mask[i] = CLRED_MASK_SATURATED; /* two thirds masked: below min_good_frac */
        }
    clred_bkg_opts o = clred_bkg_defaults();
    o.box_w = 32;
    o.box_h = 24;
    /* Double accumulation: box statistics agree to ~1e-12 and are stored as
     * float (6e-8 relative); the float spline adds ~20 roundings: 2e-6 of the
     * largest value. */
    compare(ctx, &img, &o, 2e-6, "200x150 in 32x24 boxes");
    clred_image_free(&img);

    /* N = 1 and 2 boxes per axis, odd and even box sizes, no mesh filter */
    const int shapes[][4] = {{20, 10, 64, 64}, {1, 1, 64, 64}, {2, 2, 1, 1}, {70, 33, 35, 17}, {129, 31, 64, 16}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        CHECK_OK(clred_image_alloc(&img, (size_t)shapes[s][0], (size_t)shapes[s][1], 0, 0));
        for (size_t i = 0; i < img.width * img.height; i++)
            img.sci[i] = (float)(50 + 3 * harness_normal(&rng) + 0.1 * (double)(i % img.width));
        o = clred_bkg_defaults();
        o.box_w = shapes[s][2];
        o.box_h = shapes[s][3];
        o.filter_w = o.filter_h = s % 2 ? 1 : 3;
        char what[64];
        snprintf(what, sizeof what, "%dx%d in %dx%d boxes", shapes[s][0], shapes[s][1], o.box_w, o.box_h);
        compare(ctx, &img, &o, 2e-6, what);
        clred_image_free(&img);
    }

    /* Float accumulation: sums of ~1000 values near 100 in float are good to
     * ~1e-5 relative; 1e-4 of the largest value is well below 0.01 sigma. */
    CHECK_OK(clred_image_alloc(&img, 160, 96, 0, 0));
    for (size_t i = 0; i < 160 * 96; i++)
        img.sci[i] = (float)(100 + 5 * harness_normal(&rng));
    o = clred_bkg_defaults();
    o.box_w = o.box_h = 32;
    compare(fctx, &img, &o, 1e-4, "float accumulation");
    clred_image_free(&img);

    /* everything masked is an input error; bad options are usage errors */
    CHECK_OK(clred_image_alloc(&img, 40, 30, 0, 1));
    for (size_t i = 0; i < 40 * 30; i++)
        img.mask[i] = CLRED_MASK_NO_DATA;
    clred_image bkg;
    CHECK(clred_background(ctx, &img, NULL, &bkg, NULL, NULL) == CLRED_ERR_INPUT);
    CHECK(strstr(clred_last_error(), "boxes") != NULL);
    o = clred_bkg_defaults();
    o.filter_w = 2;
    CHECK(clred_background(ctx, &img, &o, &bkg, NULL, NULL) == CLRED_ERR_USAGE);
    o = clred_bkg_defaults();
    o.box_w = 0;
    CHECK(clred_background(ctx, &img, &o, &bkg, NULL, NULL) == CLRED_ERR_USAGE);
    clred_image_free(&img);
}

/* The box sort works on the floats' bit patterns: values of both signs,
 * signed zeros, subnormals and magnitudes far apart must sort as numbers.
 * Outliers of +-1e30 are clipped away, so the maps stay near zero and are
 * compared to 2e-6 of their largest value as above. */
static void test_signs_and_ranges(clred_ctx *ctx)
{
    harness_rng rng = {11};
    clred_image img;
    CHECK_OK(clred_image_alloc(&img, 150, 100, 0, 0));
    for (size_t i = 0; i < 150 * 100; i++) {
        double u = harness_uniform(&rng);
        float v = (float)(3.0 * harness_normal(&rng) + 0.01 * (double)(i % 150));
        if (u < 0.01)
            v = u < 0.005 ? 1e30f : -1e30f;
        else if (u < 0.02)
            v = u < 0.015 ? 0.0f : -0.0f;
        else if (u < 0.025)
            v = u < 0.0225 ? 1e-40f : -1e-40f; /* subnormal */
        else if (u < 0.03)
            v = (float)(1e5 * (u - 0.0275));   /* far out on either side */
        img.sci[i] = v;
    }
    clred_bkg_opts o = clred_bkg_defaults();
    o.box_w = 30;
    o.box_h = 20;
    compare(ctx, &img, &o, 2e-6, "signs and ranges");
    clred_image_free(&img);
}

/* With a small memory limit the boxes are sorted a few at a time (the
 * scratch holds two words per box pixel): the maps must be the same. The
 * limit leaves room for the device images (on the copying path the frame
 * and both maps, 351 KiB, count against it), not for all the scratch. */
static void test_chunked(void)
{
    setenv("CLRED_MEMORY_LIMIT", "512K", 1);
    clred_ctx *small = harness_ctx();
    unsetenv("CLRED_MEMORY_LIMIT");
    harness_rng rng = {12};
    clred_image img;
    CHECK_OK(clred_image_alloc(&img, 200, 150, 0, 0));
    for (size_t i = 0; i < 200 * 150; i++)
        img.sci[i] = (float)(80 + 4 * harness_normal(&rng) + 0.05 * (double)(i / 200));
    clred_bkg_opts o = clred_bkg_defaults();
    o.box_w = 32;
    o.box_h = 24; /* 7 x 7 boxes of 6 KiB scratch each; a quarter of what is left per launch: 6 to 21 boxes */
    compare(small, &img, &o, 2e-6, "boxes in chunks");
    clred_image_free(&img);
    clred_ctx_destroy(small);
}

/* A smooth gradient (a plane and a gentle curvature; the image a whole
 * number of boxes, since SEP's mesh puts a partial box's value at the
 * nominal centre) with noise and stars: away from the stars, the recovered
 * background must be within 0.1 sigma of the truth everywhere. */
static void test_gradient(clred_ctx *ctx)
{
    const int w = 256, h = 192;
    const double sigma = 10.0;
    harness_rng rng = {77};
    clred_image img;
    CHECK_OK(clred_image_alloc(&img, (size_t)w, (size_t)h, 0, 0));
    double *truth = malloc((size_t)w * h * sizeof *truth);
    uint8_t *near = calloc((size_t)w * h, 1);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            truth[y * w + x] = 500 + 0.04 * x + 0.03 * y + 1e-4 * (x - 100) * (x - 100) - 5e-5 * (y - 60) * (y - 60);
            img.sci[y * w + x] = (float)(truth[y * w + x] + sigma * harness_normal(&rng));
        }
    for (int s = 0; s < 40; s++) {
        double cx = harness_uniform(&rng) * w, cy = harness_uniform(&rng) * h, peak = 50 + 2000 * harness_uniform(&rng);
        for (int y = (int)cy - 12; y <= (int)cy + 12; y++)
            for (int x = (int)cx - 12; x <= (int)cx + 12; x++) {
                if (x < 0 || y < 0 || x >= w || y >= h)
                    continue;
                double r2 = (x - cx) * (x - cx) + (y - cy) * (y - cy);
                img.sci[y * w + x] += (float)(peak * exp(-0.5 * r2 / 2.0));
                if (r2 < 10 * 10)
                    near[y * w + x] = 1;
            }
    }
    for (int pass = 0; pass < 3; pass++) {
        clred_bkg_opts o = clred_bkg_defaults();
        o.box_w = o.box_h = pass == 2 ? 32 : 64;
        o.mask_sources = pass > 0;
        clred_image bkg, rms;
        clred_bkg_info info;
        CHECK_OK(clred_background(ctx, &img, &o, &bkg, &rms, &info));
        double worst = 0, worst_rms = 0, sum2 = 0;
        size_t count = 0, within = 0;
        for (int i = 0; i < w * h; i++) {
            if (near[i])
                continue;
            double d = fabs(bkg.sci[i] - truth[i]);
            sum2 += d * d;
            count++;
            within += d < 0.1 * sigma;
            if (d > worst)
                worst = d;
            double dr = fabs(rms.sci[i] - sigma);
            if (dr > worst_rms)
                worst_rms = dr;
        }
        double rms_err = sqrt(sum2 / (double)count);
        fprintf(stderr,
                "gradient, %d px boxes, mask_sources=%d: |bkg - truth| rms %.3f sigma, worst %.3f sigma; "
                "%.1f %% within 0.1 sigma; worst |rms - sigma| %.3f sigma; %zu pixels masked as sources\n",
                o.box_w, o.mask_sources, rms_err / sigma, worst / sigma, 100.0 * (double)within / (double)count, worst_rms / sigma, info.nmasked_sources);
        /* SExtractor's mode (2.5 median - 1.5 mean) of a box of n pixels
         * scatters by ~2.1 sigma / sqrt(n) (0.033 sigma for 64x64 boxes,
         * 0.066 for 32x32) before the mesh filter: the map must be within
         * 0.1 sigma of the truth in rms and at 95 % of the pixels. The corner
         * boxes, unfiltered and extrapolated half a box, may reach 3 times
         * their scatter. */
        CHECK_MSG(rms_err < 0.1 * sigma, "background off by %.3f sigma (rms) away from sources", rms_err / sigma);
        CHECK_MSG(within >= 0.95 * (double)count, "only %zu of %zu pixels within 0.1 sigma", within, count);
        CHECK_MSG(worst < 0.3 * sigma, "background off by %.3f sigma (worst) away from sources", worst / sigma);
        /* the clipped std of a Gaussian at 3 sigma is 0.986 sigma; stars add
         * a little where they are not masked */
        CHECK_MSG(worst_rms < 0.1 * sigma, "rms off by %.3f sigma", worst_rms / sigma);
        CHECK(pass == 0 || info.nmasked_sources > 0);
        clred_image_free(&bkg);
        clred_image_free(&rms);
    }
    free(truth);
    free(near);
    clred_image_free(&img);
}

int main(void)
{
    clred_ctx *ctx = harness_ctx();
    setenv("CLRED_FLOAT_ACCUM", "1", 1);
    clred_ctx *fctx = harness_ctx();
    unsetenv("CLRED_FLOAT_ACCUM");
    test_against_reference(ctx, fctx);
    test_signs_and_ranges(ctx);
    test_chunked();
    test_gradient(ctx);
    clred_ctx_destroy(fctx);
    clred_ctx_destroy(ctx);
    return harness_finish();
}
