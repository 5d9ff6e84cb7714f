/* Frame quality on a drawn field: elliptical Gaussian stars of known FWHM
 * and ellipticity on a flat sky with Gaussian noise; the measured seeing,
 * ellipticity, sky and noise against the drawn values, the header-derived
 * zero point, limiting magnitude (double formula here) and astrometric RMS,
 * and the limits that keep a frame out of a stack. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

enum { W = 256, H = 256, NSTARS = 40 };

/* Pixel-integrated (5 x 5 subsamples) elliptical Gaussian of total flux f. */
static void add_star(float *img, double x0, double y0, double f, double sa, double sb, double theta)
{
    double c = cos(theta), s = sin(theta);
    for (int y = (int)y0 - 12; y <= (int)y0 + 12; y++)
        for (int x = (int)x0 - 12; x <= (int)x0 + 12; x++) {
            if (x < 0 || y < 0 || x >= W || y >= H)
                continue;
            double sum = 0;
            for (int j = 0; j < 5; j++)
                for (int i = 0; i < 5; i++) {
                    double dx = x - 0.4 + 0.2 * i - x0, dy = y - 0.4 + 0.2 * j - y0;
                    double u = c * dx + s * dy, v = -s * dx + c * dy;
                    sum += exp(-0.5 * (u * u / (sa * sa) + v * v / (sb * sb)));
                }
            img[(size_t)y * W + x] += (float)(f * sum / 25 / (2 * M_PI * sa * sb));
        }
}

int main(void)
{
    clred_image img;
    CHECK_OK(clred_image_alloc(&img, W, H, 0, 0));
    harness_rng r = {11};
    const double sky = 500, noise = 10, sa = 1.5, sb = 1.2, theta = 0.4;
    for (size_t i = 0; i < (size_t)W * H; i++)
        img.sci[i] = (float)(sky + noise * harness_normal(&r));
    for (int k = 0; k < NSTARS; k++) {
        double x = 14 + (W - 28) * harness_uniform(&r), y = 14 + (H - 28) * harness_uniform(&r);
        add_star(img.sci, x, y, 20000 + 30000 * harness_uniform(&r), sa, sb, theta);
    }
    img.header = clred_header_new();
    clred_ctx *ctx = harness_ctx();
    clred_frame_quality q;
    CHECK_OK(clred_measure_quality(ctx, &img, &q));
    double fwhm = 2.3548 * sqrt(0.5 * (sa * sa + sb * sb)), ell = 1 - sb / sa;
    printf("fwhm %.3f (drawn %.3f), ellipticity %.3f (%.3f), sky %.2f, noise %.3f, %zu stars\n", q.fwhm, fwhm,
           q.ellipticity, ell, q.sky, q.sky_noise, q.nstars);
    /* Windowed moments of S/N > 100 stars: a few percent (test_sources). */
    CHECK_NEAR(q.fwhm, fwhm, 0.05 * fwhm);
    CHECK_NEAR(q.ellipticity, ell, 0.03);
    CHECK_NEAR(q.sky, sky, 0.5);
    CHECK_NEAR(q.sky_noise, noise, 0.05 * noise);
    CHECK(q.nstars >= NSTARS - 4 && q.nstars <= NSTARS);
    CHECK(isnan(q.zeropoint) && isnan(q.limit_mag) && isnan(q.astrom_rms) && isnan(q.fwhm_arcsec));

    /* With MAGZP, ASTRRMS and a WCS in the header. */
    clred_header_set_double(img.header, "MAGZP", 27.5, NULL);
    clred_header_set_double(img.header, "ASTRRMS", 0.08, NULL);
    CHECK_OK(clred_header_set_tan(img.header, 10.0, 20.0, 128, 128, 0.5, 0, 0));
    CHECK_OK(clred_measure_quality(ctx, &img, &q));
    CHECK_NEAR(q.zeropoint, 27.5, 1e-12);
    CHECK_NEAR(q.astrom_rms, 0.08, 1e-12);
    CHECK_NEAR(q.fwhm_arcsec, 0.5 * q.fwhm, 1e-9);
    CHECK_NEAR(q.limit_mag, 27.5 - 2.5 * log10(5 * q.sky_noise * sqrt(M_PI * q.fwhm * q.fwhm)), 1e-9);

    /* Limits. */
    clred_quality_limits l = clred_quality_no_limits();
    char why[160];
    CHECK(clred_quality_passes(&q, &l, why, sizeof why));
    l.max_fwhm = fwhm + 0.5;
    l.min_stars = 10;
    l.max_astrom_rms = 0.1;
    CHECK(clred_quality_passes(&q, &l, why, sizeof why));
    l.max_fwhm = fwhm - 0.5;
    CHECK(!clred_quality_passes(&q, &l, why, sizeof why));
    CHECK(strstr(why, "FWHM") != NULL);
    l = clred_quality_no_limits();
    l.max_ellipticity = 0.1;
    CHECK(!clred_quality_passes(&q, &l, why, sizeof why) && strstr(why, "ellipticity"));
    l = clred_quality_no_limits();
    l.min_limit_mag = q.limit_mag + 0.1;
    CHECK(!clred_quality_passes(&q, &l, why, sizeof why) && strstr(why, "limiting"));
    l = clred_quality_no_limits();
    l.min_stars = 100;
    CHECK(!clred_quality_passes(&q, &l, why, sizeof why) && strstr(why, "stars"));
    /* An unmeasured quantity fails the limit set on it. */
    clred_frame_quality none = q;
    none.astrom_rms = NAN;
    l = clred_quality_no_limits();
    l.max_astrom_rms = 1;
    CHECK(!clred_quality_passes(&none, &l, why, sizeof why));

    clred_image_free(&img);
    clred_ctx_destroy(ctx);
    return harness_finish();
}
