/* Quick-look PNGs: zscale limits on cases whose answer is known, the asinh
 * stretch and the orientation against a double computation, read back with
 * libpng. */
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* The grey PNG at path (8-bit): *w x *h bytes, top row first (malloc'd). */
static unsigned char *read_png(const char *path, size_t *w, size_t *h)
{
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&im, path))
        return NULL;
    im.format = PNG_FORMAT_GRAY;
    unsigned char *buf = malloc(PNG_IMAGE_SIZE(im));
    if (!buf || !png_image_finish_read(&im, NULL, buf, 0, NULL)) {
        free(buf);
        return NULL;
    }
    *w = im.width;
    *h = im.height;
    return buf;
}

static void test_zscale(void)
{
    /* a ramp: the samples lie on a line, nothing is rejected and the limits
     * (median -+ half the range / contrast) clip to the samples' range:
     * every 4th pixel (4000 values, 1000 samples), so the last is 3996 */
    const size_t n = 4000;
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = (float)(10 + 0.5 * (double)i);
    double z1, z2;
    CHECK_OK(clred_zscale(v, n, &z1, &z2));
    CHECK_NEAR(z1, 10, 0);
    CHECK_NEAR(z2, 10 + 0.5 * 3996, 0);
    /* a flat field with a few huge outliers: the slope of the kept samples is
     * zero, so both limits are the level */
    for (size_t i = 0; i < n; i++)
        v[i] = i % 500 == 7 ? 1e6f : 100.0f;
    CHECK_OK(clred_zscale(v, n, &z1, &z2));
    CHECK_NEAR(z1, 100, 0);
    CHECK_NEAR(z2, 100, 0);
    /* Gaussian noise: the rejected line through the sorted samples has slope
     * ~ sigma * sqrt(2 pi) / n at the centre, so the limits are about
     * -+ 0.5 * sqrt(2 pi) / 0.25 = -+ 5 sigma, cut at the extreme samples */
    harness_rng rng = {4};
    for (size_t i = 0; i < n; i++)
        v[i] = (float)(harness_normal(&rng) * 2.0);
    v[17] = NAN;
    CHECK_OK(clred_zscale(v, n, &z1, &z2));
    CHECK_MSG(z1 < -3 && z1 > -10 && z2 > 3 && z2 < 10, "zscale of N(0, 2): %g .. %g", z1, z2);
    free(v);
}

static void test_asinh_png(void)
{
    const size_t w = 50, h = 40, n = w * h;
    float *img = malloc(n * sizeof *img);
    for (size_t i = 0; i < n; i++)
        img[i] = (float)i;
    img[3 * w + 4] = NAN;
    char path[512];
    snprintf(path, sizeof path, "%s/ramp.png", harness_tmpdir("test_png"));
    CHECK_OK(clred_png_write(path, img, w, h, CLRED_STRETCH_ASINH, 1));
    size_t pw = 0, ph = 0;
    unsigned char *px = read_png(path, &pw, &ph);
    CHECK(px && pw == w && ph == h);
    if (px) {
        /* the finite values are 0..1999 less 154: percentiles by linear
         * interpolation between ranks, as the writer defines them */
        double *s = malloc(n * sizeof *s);
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (isfinite(img[i]))
                s[k++] = img[i];
        double r1 = 0.0025 * (double)(k - 1), r2 = 0.9975 * (double)(k - 1);
        double lo = s[(size_t)r1] + (r1 - floor(r1)) * (s[(size_t)r1 + 1] - s[(size_t)r1]);
        double hi = s[(size_t)r2] + (r2 - floor(r2)) * (s[(size_t)r2 + 1] - s[(size_t)r2]);
        size_t bad = 0;
        for (size_t y = 0; y < h; y++)
            for (size_t x = 0; x < w; x++) {
                double v = img[y * w + x], t = fmin(fmax((v - lo) / (hi - lo), 0), 1);
                int expect = isnan(v) ? 0 : (int)lround(255 * asinh(10 * t) / asinh(10));
                /* row 0 of the image is the bottom row of the PNG */
                int got = px[(h - 1 - y) * w + x];
                bad += abs(got - expect) > 0;
            }
        CHECK_MSG(bad == 0, "%zu PNG pixels differ from the asinh stretch", bad);
        free(s);
    }
    free(px);
    CHECK(clred_png_write(path, img, w, h, CLRED_STRETCH_ASINH, 0) == CLRED_ERR_IO); /* exists */
    CHECK(clred_png_write(path, img, w, h, (clred_stretch)7, 1) == CLRED_ERR_USAGE);
    free(img);
}

static void test_histogram_png(void)
{
    size_t counts[4] = {1, 4, 2, 0};
    clred_map_stats s;
    memset(&s, 0, sizeof s);
    s.nbins = 4;
    s.counts = counts;
    char path[512];
    snprintf(path, sizeof path, "%s/hist.png", harness_tmpdir("test_png"));
    CHECK_OK(clred_histogram_png(path, &s, 40, 21, 1));
    size_t pw = 0, ph = 0;
    unsigned char *px = read_png(path, &pw, &ph);
    CHECK(px && pw == 40 && ph == 21);
    if (px) {
        /* bar heights: counts / 4 of the 20 rows above the bottom row */
        for (size_t b = 0; b < 4; b++) {
            size_t x = b * 10 + 5, height = 0;
            for (size_t y = 0; y < ph; y++)
                height += px[y * pw + x] != 255;
            CHECK_MSG(height == counts[b] * 20 / 4, "bar %zu is %zu px high", b, height);
        }
    }
    free(px);
}

int main(void)
{
    test_zscale();
    test_asinh_png();
    test_histogram_png();
    return harness_finish();
}
