/* Background matching before coaddition (exact planes, the check on
 * simulated frames with different sky gradients, the mesh mode, bad input)
 * and the coadd's final background identity. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static double plane(double a, double b, double c, size_t x, size_t y, size_t w, size_t h)
{
    double u = 2.0 * (double)x / (double)(w - 1) - 1, v = 2.0 * (double)y / (double)(h - 1) - 1;
    return a + b * u + c * v;
}

/* Noise-free frames that differ from the reference by planes: the box modes
 * of a plane are its values at the boxes' centres, so the fit and the
 * correction (diff kernel, host fit, bkg_add_poly) give the reference back
 * up to float32 arithmetic: terms of size <= 40 summed in float, 1e-4. */
static void test_exact_planes(clred_ctx *ctx)
{
    const size_t w = 200, h = 150, n = 3;
    const double pa[3][3] = {{0, 0, 0}, {-12.5, 30, -7}, {40, -3, 22}};
    clred_image f[3];
    for (size_t k = 0; k < n; k++) {
        CHECK_OK(clred_image_alloc(&f[k], w, h, 0, 1));
        for (size_t y = 0; y < h; y++)
            for (size_t x = 0; x < w; x++)
                f[k].sci[y * w + x] = (float)(100 + 0.01 * (double)x - plane(pa[k][0], pa[k][1], pa[k][2], x, y, w, h));
    }
    /* unusable pixels in pairs symmetric about the first box's centre
     * (15.5, 15.5), so that its values stay symmetric and its mode is still
     * the plane's value at the centre */
    f[1].sci[10 * w + 10] = f[1].sci[21 * w + 21] = NAN;
    f[2].mask[20 * w + 30] = f[2].mask[11 * w + 1] = CLRED_MASK_BAD;
    f[2].sci[20 * w + 30] = f[2].sci[11 * w + 1] = 1e9f; /* masked: must not count */
    clred_bkgmatch_opts o = clred_bkgmatch_defaults();
    o.ref_index = 0;
    o.box = 32;
    clred_bkgmatch_result r;
    CHECK_OK(clred_match_backgrounds(ctx, f, n, &o, &r));
    CHECK(r.ref_index == 0 && r.nterms == 3);
    for (size_t k = 1; k < n && r.coeffs; k++) {
        for (int t = 0; t < 3; t++)
            CHECK_NEAR(r.coeffs[k * 3 + t], pa[k][t], 1e-4);
        CHECK_NEAR(r.offset[k], pa[k][0], 1e-4);
        CHECK(r.fit_rms[k] < 1e-4);
        size_t bad = 0;
        for (size_t i = 0; i < w * h; i++) {
            if (i == 10 * w + 10 || i == 21 * w + 21 || i == 20 * w + 30 || i == 11 * w + 1)
                continue;
            bad += !(fabs(f[k].sci[i] - f[0].sci[i]) <= 1e-4);
        }
        CHECK_MSG(bad == 0, "frame %zu: %zu pixels not matched to the reference", k, bad);
    }
    clred_bkgmatch_result_free(&r);
    /* too many terms for a 2 x 2 mesh */
    o.order = 3;
    o.box = 128;
    CHECK(clred_match_backgrounds(ctx, f, n, &o, NULL) == CLRED_ERR_INPUT);
    o.order = 4;
    CHECK(clred_match_backgrounds(ctx, f, n, &o, NULL) == CLRED_ERR_USAGE);
    o = clred_bkgmatch_defaults();
    f[2].width--;
    CHECK(clred_match_backgrounds(ctx, f, n, &o, NULL) == CLRED_ERR_INPUT);
    f[2].width++;
    for (size_t k = 0; k < n; k++)
        clred_image_free(&f[k]);
}

/* The plane fitted to (stack - truth) over pixels away from stars: its
 * largest absolute value over the frame (at a corner). */
static double residual_gradient(const double *stack, const double *truth, const unsigned char *star, size_t w,
                                size_t h)
{
    double ata[9] = {0}, atb[3] = {0};
    for (size_t y = 0; y < h; y++)
        for (size_t x = 0; x < w; x++) {
            if (star[y * w + x])
                continue;
            double t[3] = {1, 2.0 * (double)x / (double)(w - 1) - 1, 2.0 * (double)y / (double)(h - 1) - 1};
            double z = stack[y * w + x] - truth[y * w + x];
            for (int a = 0; a < 3; a++) {
                atb[a] += t[a] * z;
                for (int b = 0; b < 3; b++)
                    ata[a * 3 + b] += t[a] * t[b];
            }
        }
    /* the terms are orthogonal over the full grid, nearly so with stars cut:
     * Cramer's rule on the 3 x 3 */
    double det = ata[0] * (ata[4] * ata[8] - ata[5] * ata[7]) - ata[1] * (ata[3] * ata[8] - ata[5] * ata[6]) +
                 ata[2] * (ata[3] * ata[7] - ata[4] * ata[6]);
    double c[3];
    for (int k = 0; k < 3; k++) {
        double m[9];
        memcpy(m, ata, sizeof m);
        for (int r = 0; r < 3; r++)
            m[r * 3 + k] = atb[r];
        c[k] = (m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) +
                m[2] * (m[3] * m[7] - m[4] * m[6])) /
               det;
    }
    return fabs(c[0]) + fabs(c[1]) + fabs(c[2]);
}

/* The check: 8 frames of one field with different sky levels and
 * gradients (up to 60 sigma across the frame), noise sigma 10, shared
 * stars. After matching, the mean stack's background is the reference's:
 * the plane fitted to stack - reference sky is below 0.1 sigma of the
 * stack noise (sigma / sqrt(8)) everywhere on the frame. Unmatched, it is
 * far above (so the check can fail). */
static void test_gradients_removed(clred_ctx *ctx, int order)
{
    const size_t w = 256, h = 256, n = 8, np = w * h;
    const double sigma = 10;
    harness_rng rng = {31};
    double *sky = malloc(n * np * sizeof *sky), *stack = calloc(np, sizeof *stack);
    unsigned char *star = calloc(np, 1);
    float *stars = calloc(np, sizeof *stars);
    for (int s = 0; s < 60; s++) {
        double cx = harness_uniform(&rng) * w, cy = harness_uniform(&rng) * h, peak = 100 + 3000 * harness_uniform(&rng);
        for (long y = (long)cy - 10; y <= (long)cy + 10; y++)
            for (long x = (long)cx - 10; x <= (long)cx + 10; x++) {
                if (x < 0 || y < 0 || x >= (long)w || y >= (long)h)
                    continue;
                double r2 = (x - cx) * (x - cx) + (y - cy) * (y - cy);
                stars[y * w + x] += (float)(peak * exp(-0.5 * r2 / 2.25));
                if (r2 < 64)
                    star[y * w + x] = 1;
            }
    }
    clred_image f[8];
    for (size_t k = 0; k < n; k++) {
        double a = 1000 + 200 * harness_uniform(&rng), b = 300 * (harness_uniform(&rng) - 0.5),
               c = 300 * (harness_uniform(&rng) - 0.5);
        CHECK_OK(clred_image_alloc(&f[k], w, h, 0, 0));
        for (size_t y = 0; y < h; y++)
            for (size_t x = 0; x < w; x++) {
                double s = plane(a, b, c, x, y, w, h);
                sky[k * np + y * w + x] = s;
                f[k].sci[y * w + x] = (float)(s + stars[y * w + x] + sigma * harness_normal(&rng));
            }
    }
    double sn = sigma / sqrt((double)n);
    if (order == 1) {
        for (size_t k = 0; k < n; k++)
            for (size_t i = 0; i < np; i++)
                stack[i] += f[k].sci[i] / (double)n;
    }
    clred_bkgmatch_opts o = clred_bkgmatch_defaults();
    o.order = order;
    o.box = 32;
    clred_bkgmatch_result r;
    CHECK_OK(clred_match_backgrounds(ctx, f, n, &o, &r));
    long ref = r.ref_index;
    CHECK(ref >= 0 && ref < (long)n);
    if (ref < 0 || ref >= (long)n) {
        for (size_t k = 0; k < n; k++)
            clred_image_free(&f[k]);
        free(sky), free(stack), free(star), free(stars);
        return;
    }
    double *truth = malloc(np * sizeof *truth);
    for (size_t i = 0; i < np; i++)
        truth[i] = sky[(size_t)ref * np + i] + stars[i];
    if (order == 1) {
        double before = residual_gradient(stack, truth, star, w, h);
        fprintf(stderr, "unmatched stack: residual plane up to %.2f stack sigma\n", before / sn);
        CHECK_MSG(before > 1.0 * sn, "the unmatched stack is already flat (%.3f sigma): the test cannot fail",
                  before / sn);
    }
    memset(stack, 0, np * sizeof *stack);
    for (size_t k = 0; k < n; k++)
        for (size_t i = 0; i < np; i++)
            stack[i] += f[k].sci[i] / (double)n;
    double after = residual_gradient(stack, truth, star, w, h);
    fprintf(stderr, "matched stack (order %d, box %d): residual plane up to %.3f stack sigma\n", order, o.box,
            after / sn);
    CHECK_MSG(after < 0.1 * sn, "matched stack keeps a gradient of %.3f stack sigma (limit 0.1)", after / sn);
    clred_bkgmatch_result_free(&r);
    for (size_t k = 0; k < n; k++)
        clred_image_free(&f[k]);
    free(sky), free(stack), free(star), free(stars), free(truth);
}

/* coadd before - coadd after == the model's map: after is before - map in
 * float32 (bit for bit), so before - after (in double, exact) differs from
 * the map by the one rounding of that subtraction, at most eps |after| / 2.
 * A negative background is kept negative. */
static void test_coadd_background(clred_ctx *ctx)
{
    const size_t w = 300, h = 220, np = w * h;
    harness_rng rng = {9};
    clred_image c;
    CHECK_OK(clred_image_alloc(&c, w, h, 0, 1));
    for (size_t y = 0; y < h; y++)
        for (size_t x = 0; x < w; x++)
            c.sci[y * w + x] = (float)(-6 + 0.01 * (double)x - 0.02 * (double)y + 2 * harness_normal(&rng));
    for (int s = 0; s < 30; s++) {
        size_t cx = (size_t)(harness_uniform(&rng) * (double)w), cy = (size_t)(harness_uniform(&rng) * (double)h);
        c.sci[cy * w + cx] += 500;
    }
    c.mask[5 * w + 5] = CLRED_MASK_NO_DATA;
    c.sci[5 * w + 5] = NAN;
    float *before = malloc(np * sizeof *before), *map = malloc(np * sizeof *map);
    memcpy(before, c.sci, np * sizeof *before);
    clred_bkg_opts o = clred_coadd_bkg_defaults();
    CHECK(o.box_w == 256 && o.mask_sources);
    o.box_w = o.box_h = 100;
    clred_bkg_model m;
    clred_bkg_info info;
    CHECK_OK(clred_coadd_background(ctx, &c, &o, &m, &info));
    CHECK_MSG(m.global_back < -3, "the coadd's negative background came out as %g", m.global_back);
    CHECK_OK(clred_bkg_model_eval(ctx, &m, 0, h, map, NULL));
    size_t bad = 0, inexact = 0;
    for (size_t i = 0; i < np; i++) {
        if (isnan(before[i])) {
            bad += !isnan(c.sci[i]);
            continue;
        }
        float expect = before[i] - map[i];
        bad += memcmp(&expect, &c.sci[i], sizeof expect) != 0;
        double d = (double)before[i] - (double)c.sci[i];
        inexact += !(fabs(d - map[i]) <= 0.5 * FLT_EPSILON * fabs(c.sci[i]));
    }
    CHECK_MSG(bad == 0, "%zu coadd pixels are not before - background", bad);
    CHECK_MSG(inexact == 0, "%zu pixels: before - after differs from the background by more than rounding", inexact);
    clred_bkg_model_free(&m);
    free(before), free(map);
    clred_image_free(&c);
}

/* The device entry point gives the host one's frames bit for bit. */
static void test_dev_equals_host(clred_ctx *ctx)
{
    const size_t w = 96, h = 80, n = 3;
    harness_rng rng = {5};
    clred_image f[3];
    clred_dimage *d[3];
    for (size_t k = 0; k < n; k++) {
        CHECK_OK(clred_image_alloc(&f[k], w, h, 0, 1));
        for (size_t i = 0; i < w * h; i++)
            f[k].sci[i] = (float)(50 * (double)k + 0.1 * (double)(i % w) * (double)k + 3 * harness_normal(&rng));
        CHECK_OK(clred_dimage_upload(ctx, &f[k], &d[k]));
    }
    clred_bkgmatch_opts o = clred_bkgmatch_defaults();
    o.box = 16;
    o.order = 2;
    clred_bkgmatch_result rh, rd;
    CHECK_OK(clred_match_backgrounds(ctx, f, n, &o, &rh));
    CHECK_OK(clred_match_backgrounds_dev(ctx, d, n, &o, &rd));
    CHECK(rh.ref_index == rd.ref_index);
    for (size_t k = 0; k < n; k++) {
        clred_image back;
        CHECK_OK(clred_dimage_download(d[k], &back));
        CHECK_MSG(back.sci && memcmp(back.sci, f[k].sci, w * h * sizeof *back.sci) == 0,
                  "frame %zu: device and host matching differ", k);
        clred_image_free(&back);
        clred_dimage_free(d[k]);
        clred_image_free(&f[k]);
    }
    clred_bkgmatch_result_free(&rh);
    clred_bkgmatch_result_free(&rd);
}

int main(void)
{
    clred_ctx *ctx = harness_ctx();
    test_exact_planes(ctx);
    test_gradients_removed(ctx, 1);
    test_gradients_removed(ctx, -1);
    test_coadd_background(ctx);
    test_dev_equals_host(ctx);
    clred_ctx_destroy(ctx);
    return harness_finish();
}
