/* PSF-fit photometry (kernels/psfphot.cl):
 * - the device against a double-precision reference of the same fit
 *   (tests/reference/psfphot_ref.c) on a drawn 64 x 64 field with a close
 *   pair, a faint source, an edge source, masked and NaN pixels: forced and
 *   position-fitting modes, with and without a VAR plane;
 * - the close pair fitted together is unbiased, fitted alone it is not;
 * - on a simulated pair's new image (clred_simulate_pair: the truth's
 *   fluxes and positions are known), forced and fitted PSF fluxes of the
 *   point sources are unbiased and their pulls have unit spread;
 * - refusals. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "psfphot_ref.h"

enum { W = 64, H = 64, NS = 8, PS = 19 };
static const double SIGMA = 1.5, SKY = 200, RN = 5;
static const double SX[NS] = {20.3, 44.7, 30.2, 33.4, 50.4, 2.5, 14.2, 52.8};
static const double SY[NS] = {20.6, 22.2, 44.9, 46.1, 48.3, 60.1, 40.7, 8.4};
static const double SF[NS] = {20000, 8000, 12000, 6000, 150, 5000, 9000, 3000};

/* Pixel-integrated Gaussian (5 x 5 subsamples) at offset (dx, dy). */
static double gauss_pixel(double dx, double dy)
{
    double s = 0;
    for (int j = 0; j < 5; j++)
        for (int i = 0; i < 5; i++) {
            double u = dx - 0.4 + 0.2 * i, v = dy - 0.4 + 0.2 * j;
            s += exp(-0.5 * (u * u + v * v) / (SIGMA * SIGMA));
        }
    return s / 25 / (2 * M_PI * SIGMA * SIGMA);
}

static void draw_field(clred_image *img, harness_rng *r)
{
    CHECK_OK(clred_image_alloc(img, W, H, 1, 1));
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            double m = SKY;
            for (int k = 0; k < NS; k++)
                m += SF[k] * gauss_pixel(x - SX[k], y - SY[k]);
            size_t i = (size_t)y * W + x;
            img->var[i] = (float)(m + RN * RN);
            img->sci[i] = (float)(m + sqrt(m + RN * RN) * harness_normal(r));
        }
    /* a bad pixel next to source 6's core, a NaN in source 1's wing */
    img->mask[41 * W + 15] = CLRED_MASK_BAD;
    img->sci[24 * W + 47] = NAN;
}

static void compare(const char *what, const clred_psf_phot *d, const psfphot_ref_result *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        CHECK_MSG(d[i].flags == r[i].flags, "%s %zu: flags %#x, reference %#x", what, i, d[i].flags, r[i].flags);
        CHECK_MSG(d[i].npix == r[i].npix, "%s %zu: %zu pixels, reference %zu", what, i, d[i].npix, r[i].npix);
        if (r[i].flags & CLRED_SRC_PSF_FAILED)
            continue;
        /* The device accumulates in double (acc_t on POCL) on the same float
         * pixels; what differs is float storage of positions (~6e-8 px) and
         * results (~6e-8 relative), far below 1e-3 of a standard error. A
         * float-only device would lose ~1e-6 relative in the sums, still
         * well inside these bounds. */
        double fe = r[i].flux_err;
        CHECK_MSG(fabs(d[i].flux - r[i].flux) <= 1e-3 * fe + 1e-6 * fabs(r[i].flux), "%s %zu: flux %.6f, reference %.6f",
                  what, i, d[i].flux, r[i].flux);
        CHECK_MSG(fabs(d[i].flux_err - fe) <= 1e-4 * fe, "%s %zu: flux error %.6f, reference %.6f", what, i,
                  d[i].flux_err, fe);
        CHECK_MSG(fabs(d[i].sky - r[i].sky) <= 1e-3 * fe / 10 + 1e-5, "%s %zu: sky %.6f, reference %.6f", what, i,
                  d[i].sky, r[i].sky);
        CHECK_MSG(fabs(d[i].x - r[i].x) <= 1e-4 && fabs(d[i].y - r[i].y) <= 1e-4, "%s %zu: (%.6f, %.6f), reference "
                  "(%.6f, %.6f)", what, i, d[i].x, d[i].y, r[i].x, r[i].y);
        CHECK_NEAR(d[i].x_err, r[i].x_err, 1e-4 * (isfinite(r[i].x_err) ? r[i].x_err : 0));
        CHECK_NEAR(d[i].chi2_dof, r[i].chi2_dof, 1e-5 * (isfinite(r[i].chi2_dof) ? r[i].chi2_dof : 0));
    }
}

static void versus_reference(clred_ctx *ctx, const clred_image *img, const clred_psf *psf)
{
    double x[NS], y[NS];
    harness_rng r = {77};
    for (int k = 0; k < NS; k++) { /* starts up to 0.4 px off */
        x[k] = SX[k] + 0.8 * harness_uniform(&r) - 0.4;
        y[k] = SY[k] + 0.8 * harness_uniform(&r) - 0.4;
    }
    clred_psf_phot_opts o = clred_psf_phot_defaults();
    o.fit_radius = 6;
    o.group_radius = 10;
    clred_psf_phot d[NS];
    psfphot_ref_result ref[NS];
    clred_image novar = *img;
    novar.var = NULL;
    for (int mode = 0; mode < 4; mode++) {
        const clred_image *im = mode < 2 ? img : &novar;
        o.fit_position = mode % 2;
        const char *what[] = {"forced", "fitted", "forced, no VAR", "fitted, no VAR"};
        CHECK_OK(clred_psf_photometry(ctx, im, psf, x, y, NS, &o, d));
        psfphot_ref(im, psf, x, y, NS, o.fit_radius, o.group_radius, psf->fwhm, o.fit_sky, o.fit_position,
                    o.max_iters, o.max_shift, o.min_snr_position, o.ignore_bits, ref);
        compare(what[mode], d, ref, NS);
        if (mode == 1) {
            printf("fitted: ");
            for (int k = 0; k < NS; k++)
                printf("%d: %.1f +- %.1f (%.3f, %.3f) chi2 %.2f flags %#x; ", k, d[k].flux, d[k].flux_err, d[k].x - SX[k],
                       d[k].y - SY[k], d[k].chi2_dof, d[k].flags);
            printf("\n");
            /* what the flags say */
            CHECK(d[5].flags & CLRED_SRC_EDGE);
            CHECK(d[6].flags & CLRED_SRC_MASKED);
            CHECK((d[2].flags & CLRED_SRC_BLENDED) && (d[3].flags & CLRED_SRC_BLENDED) && d[2].nfit == 2);
            CHECK(d[4].flags & CLRED_SRC_PSF_FIXED); /* 150 e- on 200 e- of sky: S/N ~ 1.5 */
            CHECK(!(d[0].flags & ~(unsigned)CLRED_SRC_BLENDED) && !(d[7].flags));
            for (int k = 0; k < NS; k++)
                if (!(d[k].flags & (CLRED_SRC_EDGE | CLRED_SRC_PSF_FIXED))) {
                    CHECK_MSG(fabs(d[k].flux - SF[k]) < 4 * d[k].flux_err, "source %d: flux %.1f +- %.1f, true %.0f",
                              k, d[k].flux, d[k].flux_err, SF[k]);
                    CHECK_MSG(hypot(d[k].x - SX[k], d[k].y - SY[k]) < 5 * hypot(d[k].x_err, d[k].y_err),
                              "source %d: position off by (%.3f, %.3f)", k, d[k].x - SX[k], d[k].y - SY[k]);
                }
        }
        if (mode == 3)
            CHECK(isnan(d[0].chi2_dof) && isfinite(d[0].flux_err));
    }
    /* The close pair (3.5 px apart, FWHM 3.5) fitted alone: each takes the
     * other's light. */
    o.fit_position = 0;
    o.group_radius = -1;
    double tx[NS], ty[NS];
    memcpy(tx, SX, sizeof tx);
    memcpy(ty, SY, sizeof ty);
    CHECK_OK(clred_psf_photometry(ctx, img, psf, tx, ty, NS, &o, d));
    printf("alone: pair %.1f +- %.1f and %.1f +- %.1f (true %.0f, %.0f)\n", d[2].flux, d[2].flux_err, d[3].flux,
           d[3].flux_err, SF[2], SF[3]);
    CHECK((d[2].flux - SF[2]) / d[2].flux_err > 5 && (d[3].flux - SF[3]) / d[3].flux_err > 5);
    CHECK(!(d[2].flags & CLRED_SRC_BLENDED) && d[2].nfit == 1);
    o.group_radius = 0;
    CHECK_OK(clred_psf_photometry(ctx, img, psf, tx, ty, NS, &o, d));
    CHECK(fabs(d[2].flux - SF[2]) < 4 * d[2].flux_err && fabs(d[3].flux - SF[3]) < 4 * d[3].flux_err);
}

/* Pulls of the PSF fluxes of a simulated pair's point sources. */
static void simulated_truth(clred_ctx *ctx)
{
    clred_pair_opts po = clred_pair_defaults();
    po.seed = getenv("PSFPHOT_SEED") ? strtoull(getenv("PSFPHOT_SEED"), NULL, 10) : 11;
    po.ngalaxies = 0;
    po.nstars = 0; /* their truth is not listed: their wings would bias the fits */
    po.ntransients = 60;
    po.fading_fraction = 0;
    po.ncosmics = 0;
    po.nsaturated = 0;
    clred_pair p;
    CHECK_OK(clred_simulate_pair(&po, &p));
    size_t n = p.ntransients;
    double *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    clred_psf_phot *d = malloc(n * sizeof *d);
    harness_rng r = {5};
    for (int mode = 0; mode < 2; mode++) {
        for (size_t i = 0; i < n; i++) { /* fitted: starts 0.3 px off */
            x[i] = p.transients[i].x + (mode ? 0.6 * harness_uniform(&r) - 0.3 : 0);
            y[i] = p.transients[i].y + (mode ? 0.6 * harness_uniform(&r) - 0.3 : 0);
        }
        clred_psf_phot_opts o = clred_psf_phot_defaults();
        o.fit_position = mode;
        CHECK_OK(clred_psf_photometry(ctx, &p.new_img, &p.new_psf, x, y, n, &o, d));
        double s = 0, s2 = 0, c2 = 0, dpos = 0;
        size_t m = 0, nfit = 0;
        for (size_t i = 0; i < n; i++) {
            if (d[i].flags & (CLRED_SRC_EDGE | CLRED_SRC_MASKED | CLRED_SRC_PSF_FAILED))
                continue;
            double z = (d[i].flux - p.transients[i].flux) / d[i].flux_err;
            if (getenv("PSFPHOT_VERBOSE"))
                printf("  %zu (%.2f, %.2f) true %.1f fit %.1f +- %.1f chi2 %.2f sky %.2f flags %#x nfit %zu\n", i,
                       p.transients[i].x, p.transients[i].y, p.transients[i].flux, d[i].flux, d[i].flux_err,
                       d[i].chi2_dof, d[i].sky, d[i].flags, d[i].nfit);
            s += z, s2 += z * z, c2 += d[i].chi2_dof, m++;
            if (mode && !(d[i].flags & CLRED_SRC_PSF_FIXED)) {
                double ex = (d[i].x - p.transients[i].x) / d[i].x_err, ey = (d[i].y - p.transients[i].y) / d[i].y_err;
                dpos += ex * ex + ey * ey;
                nfit++;
            }
        }
        double mean = s / (double)m, sd = sqrt(s2 / (double)m - mean * mean);
        printf("simulated, %s: %zu sources, pull mean %.3f std %.3f, mean chi2/dof %.3f", mode ? "fitted" : "forced",
               m, mean, sd, c2 / (double)m);
        if (mode)
            printf(", position chi2/dof %.3f over %zu", dpos / (2.0 * (double)nfit), nfit);
        printf("\n");
        CHECK(m >= 40);
        /* m ~ 50: the mean of the pulls has a standard error 0.14 and their
         * std 0.1 */
        CHECK_MSG(fabs(mean) < 0.45, "pull mean %.3f", mean);
        CHECK_MSG(sd > 0.75 && sd < 1.3, "pull std %.3f", sd);
        CHECK_MSG(fabs(c2 / (double)m - 1) < 0.1, "chi2/dof %.3f", c2 / (double)m);
        if (mode) {
            CHECK(nfit >= 30);
            CHECK_MSG(dpos / (2.0 * (double)nfit) > 0.6 && dpos / (2.0 * (double)nfit) < 1.5, "position chi2/dof %.3f",
                      dpos / (2.0 * (double)nfit));
        }
    }
    free(x), free(y), free(d);
    clred_pair_free(&p);
}

int main(void)
{
    clred_ctx *ctx = harness_ctx();
    harness_rng r = {2026};
    clred_image img;
    draw_field(&img, &r);
    float stamp[PS * PS];
    for (int j = 0; j < PS; j++)
        for (int i = 0; i < PS; i++)
            stamp[j * PS + i] = (float)gauss_pixel(i - PS / 2, j - PS / 2);
    clred_psf psf;
    CHECK_OK(clred_psf_from_array(stamp, PS, PS, 0, &psf));
    versus_reference(ctx, &img, &psf);
    simulated_truth(ctx);

    /* Refusals. */
    double x = 10, y = 10;
    clred_psf_phot out;
    clred_psf bad = psf;
    bad.size = 4;
    CHECK(clred_psf_photometry(ctx, &img, &bad, &x, &y, 1, NULL, &out) == CLRED_ERR_USAGE);
    clred_psf_phot_opts o = clred_psf_phot_defaults();
    o.max_shift = 0;
    CHECK(clred_psf_photometry(ctx, &img, &psf, &x, &y, 1, &o, &out) == CLRED_ERR_USAGE);
    /* a position off the image: flagged, no fit */
    x = -100;
    CHECK_OK(clred_psf_photometry(ctx, &img, &psf, &x, &y, 1, NULL, &out));
    CHECK((out.flags & CLRED_SRC_PSF_FAILED) && isnan(out.flux));

    clred_psf_free(&psf);
    clred_image_free(&img);
    clred_ctx_destroy(ctx);
    return harness_finish();
}
