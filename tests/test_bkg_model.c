/* Background models as products: the model's evaluation is the map
 * clred_background gives (whole grid and any rows), the FITS product round
 * trip, subtract + restore to float32 rounding, map statistics and the
 * per-pixel mean and std of many maps against double references. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static void make_sky(clred_image *img, size_t w, size_t h, harness_rng *rng, double level, double gx, double gy)
{
    CHECK_OK(clred_image_alloc(img, w, h, 0, 0));
    for (size_t y = 0; y < h; y++)
        for (size_t x = 0; x < w; x++)
            img->sci[y * w + x] = (float)(level + gx * (double)x + gy * (double)y + 1e-3 * (double)((x - 40) * (x - 40)) +
                                          4 * harness_normal(rng));
}

static size_t count_unequal(const float *a, const float *b, size_t n)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += memcmp(&a[i], &b[i], sizeof *a) != 0;
    return bad;
}

static void test_model_round_trip(clred_ctx *ctx)
{
    const size_t w = 150, h = 101; /* partial boxes on both edges */
    harness_rng rng = {3};
    clred_image img;
    make_sky(&img, w, h, &rng, 300, 0.2, -0.15);
    img.sci[5 * w + 7] = NAN;
    clred_bkg_opts o = clred_bkg_defaults();
    o.box_w = 32;
    o.box_h = 24;
    clred_image bkg, rms;
    clred_bkg_model m;
    clred_bkg_info info;
    CHECK_OK(clred_background(ctx, &img, &o, &bkg, &rms, NULL));
    CHECK_OK(clred_background_model(ctx, &img, &o, &m, &info));
    CHECK(m.mesh_w == 5 && m.mesh_h == 5 && m.width == w && m.height == h);
    CHECK_NEAR(m.global_back, info.global_back, 0);

    /* the model evaluates to the maps, bit for bit, on the grid and on rows */
    float *eb = malloc(w * h * sizeof *eb), *er = malloc(w * h * sizeof *er);
    CHECK_OK(clred_bkg_model_eval(ctx, &m, 0, h, eb, er));
    CHECK_MSG(count_unequal(eb, bkg.sci, w * h) == 0, "model evaluation differs from the background map");
    CHECK_MSG(count_unequal(er, rms.sci, w * h) == 0, "model evaluation differs from the rms map");
    size_t y0 = 37, nrows = 29;
    float *rows = malloc(nrows * w * sizeof *rows);
    CHECK_OK(clred_bkg_model_eval(ctx, &m, y0, nrows, rows, NULL));
    CHECK_MSG(count_unequal(rows, bkg.sci + y0 * w, nrows * w) == 0, "rows %zu..%zu differ from the map", y0,
              y0 + nrows);
    CHECK(clred_bkg_model_eval(ctx, &m, 90, 20, rows, NULL) == CLRED_ERR_USAGE);

    /* the product: written, read back, the same model and maps */
    char path[512];
    snprintf(path, sizeof path, "%s/model.fits", harness_tmpdir("test_bkg_model"));
    CHECK_OK(clred_bkg_model_write(path, &m, bkg.sci, NULL, 1));
    CHECK(clred_bkg_model_is_product(path));
    clred_bkg_model r;
    CHECK_OK(clred_bkg_model_read(path, &r));
    CHECK(r.width == w && r.height == h && r.box_w == 32 && r.box_h == 24 && r.filter_w == 3 && r.mesh_w == 5);
    CHECK(r.back && memcmp(r.back, m.back, m.mesh_w * m.mesh_h * sizeof *m.back) == 0);
    CHECK(r.rms && memcmp(r.rms, m.rms, m.mesh_w * m.mesh_h * sizeof *m.rms) == 0);
    CHECK_NEAR(r.global_rms, m.global_rms, 1e-12 * m.global_rms); /* a header card holds 15 digits */
    CHECK_OK(clred_bkg_model_eval(ctx, &r, 0, h, eb, NULL));
    CHECK_MSG(count_unequal(eb, bkg.sci, w * h) == 0, "the model read back evaluates differently");
    clred_image full;
    char sel[600];
    snprintf(sel, sizeof sel, "%s[BKGMAP]", path);
    CHECK_OK(clred_image_read(sel, 0, &full));
    CHECK(full.sci && count_unequal(full.sci, bkg.sci, w * h) == 0);
    clred_image_free(&full);

    /* subtract, then restore: the frame comes back to float32 rounding. Each
     * of the two operations rounds once (half an ulp of its result), so
     * |restored - x| <= ulp(x - b) / 2 + ulp(x) / 2 <= eps (|x| + |b|). */
    clred_image work;
    CHECK_OK(clred_image_alloc(&work, w, h, 0, 0));
    memcpy(work.sci, img.sci, w * h * sizeof *work.sci);
    CHECK_OK(clred_bkg_model_subtract(ctx, &r, &work));
    size_t bad_sub = 0, bad = 0;
    for (size_t i = 0; i < w * h; i++) {
        float expect = img.sci[i] - bkg.sci[i];
        bad_sub += !(expect == work.sci[i] || (isnan(expect) && isnan(work.sci[i])));
    }
    CHECK_MSG(bad_sub == 0, "%zu pixels of the subtraction differ from x - map", bad_sub);
    CHECK_OK(clred_bkg_model_restore(ctx, &r, &work));
    for (size_t i = 0; i < w * h; i++) {
        double x = img.sci[i], tol = FLT_EPSILON * (fabs(x) + fabs(bkg.sci[i]));
        bad += isnan(x) ? !isnan(work.sci[i]) : !(fabs(work.sci[i] - x) <= tol);
    }
    CHECK_MSG(bad == 0, "%zu pixels not restored to float32 rounding", bad);
    clred_image small;
    CHECK_OK(clred_image_alloc(&small, w - 1, h, 0, 0));
    CHECK(clred_bkg_model_restore(ctx, &r, &small) == CLRED_ERR_INPUT);
    clred_bkg_model_free(&r);
    CHECK(clred_bkg_model_read(sel, &r) == CLRED_ERR_INPUT); /* a map, not a model */
    clred_image_free(&small);
    clred_image_free(&work);
    clred_bkg_model_free(&r);
    clred_bkg_model_free(&m);
    clred_image_free(&bkg);
    clred_image_free(&rms);
    clred_image_free(&img);
    free(eb), free(er), free(rows);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void test_map_stats(clred_ctx *ctx)
{
    const size_t w = 61, h = 47, n = w * h, nbins = 17;
    harness_rng rng = {21};
    float *map = malloc(n * sizeof *map);
    double *v = malloc(n * sizeof *v), sum = 0, lo = INFINITY, hi = -INFINITY;
    size_t nv = 0, nnan = 0;
    for (size_t i = 0; i < n; i++) {
        map[i] = (float)(1000 + 30 * harness_normal(&rng) - 0.5 * (double)(i % w));
        if (i % 97 == 3) {
            map[i] = NAN;
            nnan++;
            continue;
        }
        v[nv++] = map[i];
        sum += map[i];
        lo = fmin(lo, map[i]);
        hi = fmax(hi, map[i]);
    }
    double mean = sum / (double)nv, ss = 0;
    for (size_t i = 0; i < nv; i++)
        ss += (v[i] - mean) * (v[i] - mean);
    size_t *counts = calloc(nbins, sizeof *counts);
    for (size_t i = 0; i < nv; i++) {
        size_t b = (size_t)((v[i] - lo) / (hi - lo) * (double)nbins);
        counts[b < nbins ? b : nbins - 1]++;
    }
    qsort(v, nv, sizeof *v, cmp_d);
    double median = (nv & 1) ? v[nv / 2] : 0.5 * (v[nv / 2 - 1] + v[nv / 2]);
    clred_map_stats s;
    CHECK_OK(clred_map_stats_compute(ctx, map, w, h, nbins, &s));
    /* min, max and the median are pixel values (exact); mean and std are
     * accumulated on the device, in float on some: 1e-6 relative covers
     * float pairwise sums of 3000 values */
    CHECK_NEAR(s.min, lo, 0);
    CHECK_NEAR(s.max, hi, 0);
    CHECK_NEAR(s.median, median, 0);
    CHECK_NEAR(s.mean, mean, 1e-6 * fabs(mean));
    CHECK_NEAR(s.std, sqrt(ss / (double)nv), 1e-5 * sqrt(ss / (double)nv));
    CHECK(s.npix == nv && s.nnan == nnan && s.nbins == nbins);
    size_t total = 0, bad = 0;
    for (size_t b = 0; s.counts && b < nbins; b++) {
        total += s.counts[b];
        bad += s.counts[b] != counts[b];
    }
    CHECK_MSG(bad == 0 && total == nv, "histogram differs in %zu bins (total %zu of %zu)", bad, total, nv);
    clred_map_stats_free(&s);
    free(counts), free(map), free(v);
}

/* The per-pixel mean and std of 20 backgrounds (as NumPy's mean and std,
 * ddof 0) against double. Welford in float32 relative to the first map:
 * each update rounds the running mean and m2 by half an ulp of values of the
 * order of the spread s (the shift keeps the level out), so over n maps the
 * mean is off by at most ~n eps s and the std by ~n eps s as well; 4 n eps
 * (s + 1 ulp of the level) is the tolerance; without the shift each update
 * would round by eps * level (6e-4 here, 100 times the tolerance). */
static void test_pixel_mean_std(clred_ctx *ctx)
{
    const size_t w = 40, h = 33, n = w * h, nmaps = 20;
    harness_rng rng = {8};
    clred_image *imgs = calloc(nmaps, sizeof *imgs);
    float **maps = malloc(nmaps * sizeof *maps);
    for (size_t k = 0; k < nmaps; k++) {
        CHECK_OK(clred_image_alloc(&imgs[k], w, h, 0, 0));
        maps[k] = imgs[k].sci;
        for (size_t i = 0; i < n; i++)
            maps[k][i] = (float)(5000 + 0.01 * (double)i + (0.5 + 0.001 * (double)i) * harness_normal(&rng));
    }
    maps[7][11] = NAN;
    float *mean = malloc(n * sizeof *mean), *std = malloc(n * sizeof *std);
    CHECK_OK(clred_pixel_mean_std(ctx, imgs, nmaps, mean, std));
    size_t bad_m = 0, bad_s = 0;
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double s = 0, q = 0;
        for (size_t k = 0; k < nmaps; k++)
            s += maps[k][i];
        double m = s / (double)nmaps;
        for (size_t k = 0; k < nmaps; k++)
            q += (maps[k][i] - m) * (maps[k][i] - m);
        double sd = sqrt(q / (double)nmaps);
        if (isnan(m)) {
            bad_m += !isnan(mean[i]);
            bad_s += !isnan(std[i]);
            continue;
        }
        double tol = 4.0 * (double)nmaps * FLT_EPSILON * (sd + FLT_EPSILON * fabs(m));
        double tm = tol + FLT_EPSILON * fabs(m); /* plus the final shift + mean rounding */
        bad_m += !(fabs(mean[i] - m) <= tm);
        bad_s += !(fabs(std[i] - sd) <= tol);
        worst = fmax(worst, fabs(std[i] - sd) / (sd * FLT_EPSILON));
    }
    fprintf(stderr, "pixel std: worst error %.2f eps of the std\n", worst);
    CHECK_MSG(bad_m == 0, "%zu per-pixel means off", bad_m);
    CHECK_MSG(bad_s == 0, "%zu per-pixel stds off", bad_s);
    CHECK(clred_pixel_mean_std(ctx, imgs, 0, mean, std) == CLRED_ERR_USAGE);
    imgs[3].width--; /* a map of another shape */
    CHECK(clred_pixel_mean_std(ctx, imgs, nmaps, mean, std) == CLRED_ERR_INPUT);
    imgs[3].width++;
    for (size_t k = 0; k < nmaps; k++)
        clred_image_free(&imgs[k]);
    free(imgs), free(maps), free(mean), free(std);
}

int main(void)
{
    clred_ctx *ctx = harness_ctx();
    test_model_round_trip(ctx);
    test_map_stats(ctx);
    test_pixel_mean_std(ctx);
    clred_ctx_destroy(ctx);
    return harness_finish();
}
