/* ZOGY subtraction and candidates.
 * 1. The device's D / F_D, its variance, S_corr, the flux map and its
 *    variance against a double-precision DFT reference (tests/reference/zogy_ref.c)
 *    on a small simulated pair with holes, cosmic rays, saturated stars, a
 *    sub-pixel shift, the astrometric term and the PSF models' errors (core
 *    and wings); the wing term's footprint against its closed form.
 * 2. On 256 x 256 simulated pairs with the true PSFs: S_corr and D / sigma
 *    in empty sky have standard deviation 1 +- 0.05; completeness at S/N >= 8
 *    is >= 95 %; false positives stay within 3x the Gaussian expectation;
 *    fading sources come out negative; PSF fluxes are unbiased within their
 *    errors; no candidate sits on a NaN hole of the template.
 * 3. Overlapping tiles agree with the whole image. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fft.h"
#include "harness.h"
#include "psf_internal.h"
#include "pair_truth.h"
#include "zogy_ref.h"

static void download(const clred_dimage *d, clred_image *img)
{
    memset(img, 0, sizeof *img);
    CHECK_OK(clred_dimage_download(d, img));
}

/* max |a - b| / (abs_tol + rel_tol |b|) over the pixels; NaN must match NaN. */
static double worst(const float *a, const double *b, size_t n, double abs_tol, double rel_tol, size_t *nan_mismatch)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) != isnan(b[i])) {
            (*nan_mismatch)++;
            continue;
        }
        if (isnan(b[i]))
            continue;
        double e = fabs(a[i] - b[i]) / (abs_tol + rel_tol * fabs(b[i]));
        m = e > m ? e : m;
    }
    return m;
}

/* The wing term's footprint (clred_zogy_point_area) where it is known in
 * closed form: a noiseless reference (s2r = 0) makes S_N's point response
 * P_n's autocorrelation, a Gaussian of variance 2 sigma_n^2, whose sum of
 * squares over its peak's is 2 pi sigma_n^2 whatever P_r; equal Gaussians
 * and noises give the same. A sampled Gaussian of sigma >= 1.5 sums to its
 * integral within 1e-8 and the 31-px PSFs are cut at 6 sigma or more: 1e-4
 * relative holds with room (a grid too small for the autocorrelation, or a
 * missing factor of the grid's size, is off by > 10 %). */
static void gaussian_psf(double sigma, size_t n, float *p)
{
    double s = 0;
    for (size_t i = 0; i < n * n; i++) {
        double dx = (double)(i % n) - (double)(n / 2), dy = (double)(i / n) - (double)(n / 2);
        p[i] = (float)exp(-0.5 * (dx * dx + dy * dy) / (sigma * sigma));
        s += p[i];
    }
    for (size_t i = 0; i < n * n; i++)
        p[i] = (float)(p[i] / s);
}

static void point_area(void)
{
    static float pn[31 * 31], pr[31 * 31];
    gaussian_psf(1.5, 31, pn);
    gaussian_psf(2.5, 31, pr);
    double a1 = clred_zogy_point_area(pn, 31, pr, 31, 4.0, 0.0, 1.0, 1.3);
    gaussian_psf(2.0, 31, pr);
    double a2 = clred_zogy_point_area(pr, 31, pr, 31, 9.0, 9.0, 1.0, 1.0);
    printf("point area: %.5f (2 pi 1.5^2 = %.5f), %.5f (2 pi 2^2 = %.5f)\n", a1, 2 * M_PI * 2.25, a2, 2 * M_PI * 4.0);
    CHECK_NEAR(a1, 2 * M_PI * 2.25, 1e-4 * 2 * M_PI * 2.25);
    CHECK_NEAR(a2, 2 * M_PI * 4.0, 1e-4 * 2 * M_PI * 4.0);
}

/* p as an order-1 model over a w x h image: basis_1 (u) a shift of p by
 * shift px, basis_2 (v) its discrete Laplacian times lap (a width change),
 * both less their means (the basis' sums are 1, 0, 0). */
static void tilted(const clred_psf *p, double shift, double lap, size_t w, size_t h, clred_psf *out)
{
    CHECK_OK(clred_psf_copy(p, out));
    size_t n = p->size, n2 = n * n;
    out->order = 1;
    out->nterms = 3;
    out->basis = malloc(3 * n2 * sizeof *out->basis);
    out->x0 = 0.5 * (double)(w - 1);
    out->y0 = 0.5 * (double)(h - 1);
    out->xscale = out->x0;
    out->yscale = out->y0;
    double m1 = 0, m2 = 0;
    for (size_t q = 0; q < n2; q++) {
        size_t x = q % n, y = q / n;
        double l = x > 0 ? p->data[q - 1] : 0, r = x + 1 < n ? p->data[q + 1] : 0;
        double d = y > 0 ? p->data[q - n] : 0, u = y + 1 < n ? p->data[q + n] : 0;
        out->basis[q] = p->data[q];
        out->basis[n2 + q] = (float)(shift * 0.5 * (l - r));
        out->basis[2 * n2 + q] = (float)(lap * (l + r + d + u - 4.0 * p->data[q]));
        m1 += out->basis[n2 + q];
        m2 += out->basis[2 * n2 + q];
    }
    for (size_t q = 0; q < n2; q++) {
        out->basis[n2 + q] -= (float)(m1 / (double)n2);
        out->basis[2 * n2 + q] -= (float)(m2 / (double)n2);
    }
}

/* ZOGY against the double reference. varying: the PSFs are order-1 models
 * (tilted) with psf_variation on; the image is one tile, filtered with the
 * models at its centre (with fitted wings, as zogy.c's eval_psf), and the
 * reference adds the variation moments of clred_psf_pair_variation on the
 * same 5 x 5 nodes (tested in test_psf), so this checks the kernel's
 * interpolation and quadratic form. */
static void against_reference(clred_ctx *ctx, int varying)
{
    clred_pair_opts po = clred_pair_defaults();
    po.width = 80;
    po.height = 72;
    po.psf_kind = CLRED_PSF_GAUSSIAN;
    po.ref_fwhm = 2.2;
    po.new_fwhm = 3.0;
    po.nstars = 8;
    po.ngalaxies = 1;
    po.ntransients = 4;
    po.ncosmics = 3;
    po.nsaturated = 1;
    po.nholes = 2;
    po.shift_x = 0.3;
    po.shift_y = -0.2;
    clred_pair p;
    CHECK_OK(clred_simulate_pair(&po, &p));
    clred_zogy_opts zo = clred_zogy_defaults();
    zo.astrom_sigma_x = 0.1;
    zo.astrom_sigma_y = 0.05;
    /* The PSF-model errors from the PSFs (opts NaN), core and wings: large
     * enough to change S_corr by many tolerances near the bright stars (the
     * wings alone: up to ~0.4 sigma, 40 tolerances, out to ~10 px) */
    p.new_psf.model_err = 0.02;
    p.ref_psf.model_err = 0.01;
    double wing_n[CLRED_PSF_WING_RINGS] = {0}, wing_r[CLRED_PSF_WING_RINGS] = {0};
    for (int k = 2; k < CLRED_PSF_WING_RINGS; k++) {
        p.new_psf.wing_err[k] = wing_n[k] = 0.02 * exp(-(k - 2) / 3.0);
        p.ref_psf.wing_err[k] = wing_r[k] = 0.01 * exp(-(k - 2) / 4.0);
    }
    p.new_psf.wing_ring_px = 1.0;
    p.ref_psf.wing_ring_px = 1.5;
    zo.fr = 1.1;
    clred_psf vn = {0}, vr = {0}, cn = {0}, cr = {0};
    double vm[3 * 25], cx = 39.5, cy = 35.5;
    if (varying) {
        zo.psf_variation = 1;
        tilted(&p.new_psf, 0.3, 0.2, 80, 72, &vn);
        tilted(&p.ref_psf, -0.2, 0.3, 80, 72, &vr);
        /* without the wing term: its footprint A comes from basis_0 (zogy.c's
         * wing_kernels), not from the winged centre models the tile uses */
        vn.wing_ring_px = vr.wing_ring_px = 0;
        CHECK_OK(clred_psf_eval(&vn, cx, cy, &cn));
        CHECK_OK(clred_psf_eval(&vr, cx, cy, &cr));
        clred_psf_analytic_wings(&cn);
        clred_psf_analytic_wings(&cr);
        double xy[2 * 25];
        for (int k = 0; k < 25; k++) {
            xy[2 * k] = 79.0 / 4 * (k % 5);
            xy[2 * k + 1] = 71.0 / 4 * (k / 5);
        }
        CHECK(clred_psf_pair_variation(&vn, &vr, cx, cy, xy, 25, vm, vm + 25, vm + 50));
    }
    const clred_psf *un = varying ? &vn : &p.new_psf, *ur = varying ? &vr : &p.ref_psf;
    const clred_psf *en = varying ? &cn : &p.new_psf, *er = varying ? &cr : &p.ref_psf;
    clred_zogy_result z;
    CHECK_OK(clred_subtract_zogy(ctx, &p.new_img, &p.ref, un, ur, &zo, &z));

    zogy_ref_in in = {.w = 80, .h = 72, .n = p.new_img.sci, .r = p.ref.sci, .vn = p.new_img.var, .vr = p.ref.var,
                      .mn = p.new_img.mask, .mr = p.ref.mask, .ignore = zo.ignore_bits, .bkg_n = z.bkg_n,
                      .bkg_r = z.bkg_r, .s2n = z.sigma_n * z.sigma_n, .s2r = z.sigma_r * z.sigma_r, .fn = zo.fn,
                      .fr = zo.fr, .d_off = z.d_off, .sx2 = 0.01, .sy2 = 0.0025, .en2 = 4e-4, .er2 = 1e-4, .pn = en->data, .pr = er->data,
                      .sn = en->size, .sr = er->size, .wing_n = varying ? NULL : wing_n,
                      .wing_r = varying ? NULL : wing_r,
                      .nrings = CLRED_PSF_WING_RINGS, .ring_px_n = 1.0, .ring_px_r = 1.5,
                      .core_n = fmax(1.0, en->fwhm), .core_r = fmax(1.0, er->fwhm), .vnn = varying ? vm : NULL,
                      .vrr = vm + 25, .vnr = vm + 50, .vgrid_n = 5, .gdx = 79.0 / 4, .gdy = 71.0 / 4};
    in.nx = clred_fft_good_size(80 + in.sn + in.sr);
    in.ny = clred_fft_good_size(72 + in.sn + in.sr);
    zogy_ref_out ref;
    CHECK(zogy_ref(&in, &ref) == 0);
    CHECK_NEAR(z.f_d, ref.f_d, 1e-6 * ref.f_d);
    CHECK_NEAR(z.f_s, ref.f_s, 1e-5 * ref.f_s);
    CHECK(z.psf_err_n == 0.02 && z.psf_err_r == 0.01);
    CHECK(varying || (z.wing_err_n == 0.02 && z.wing_err_r == 0.01));

    clred_image diff, scorr, flux;
    download(z.diff, &diff);
    download(z.scorr, &scorr);
    download(z.flux, &flux);
    size_t n = 80 * 72, nanmis = 0;
    /* Float FFTs of images with a few 1e4 e- peaks: the rounding is ~1e-7 of
     * the largest spectral terms, which reaches about 1e-3 of the background
     * sigma per pixel after the inverse; S_corr is in sigma, so 0.01 sigma
     * (plus 1e-4 relative for the bright residuals) holds with room. */
    double sig_d = 1.0 / z.f_d;
    double e_diff = worst(diff.sci, ref.diff, n, 0.01 * sig_d, 1e-4, &nanmis);
    double e_dvar = worst(diff.var, ref.diff_var, n, 1e-3 * sig_d * sig_d, 1e-4, &nanmis);
    double e_sc = worst(scorr.sci, ref.scorr, n, 0.01, 1e-4, &nanmis);
    double e_fl = worst(flux.sci, ref.flux, n, 0.01 * sqrt(1.0 / z.f_s), 1e-4, &nanmis);
    double e_fv = worst(flux.var, ref.flux_var, n, 1e-3 / z.f_s, 1e-4, &nanmis);
    printf("reference: worst diff %.3f, diff var %.3f, S_corr %.3f, flux %.3f, flux var %.3f (1 = tolerance)\n", e_diff,
           e_dvar, e_sc, e_fl, e_fv);
    CHECK(nanmis == 0);
    CHECK(e_diff <= 1.0);
    CHECK(e_dvar <= 1.0);
    CHECK(e_sc <= 1.0);
    CHECK(e_fl <= 1.0);
    CHECK(e_fv <= 1.0);
    if (varying) {
        /* the term matters: without it the reference's S_corr is many tolerances off */
        zogy_ref_out ref0;
        in.vnn = NULL;
        CHECK(zogy_ref(&in, &ref0) == 0);
        double e0 = worst(scorr.sci, ref0.scorr, n, 0.01, 1e-4, &nanmis);
        printf("varying: S_corr without the variation term in the reference: %.1f tolerances off\n", e0);
        CHECK(e0 > 10);
        zogy_ref_free(&ref0);
    }
    /* The masks against a brute-force growth: both inputs' bits, NO_DATA where
     * the reference left NaN, unusable bits grown by a FWHM and the saturated
     * bit by half the larger PSF (square boxes), EDGE within that half. */
    {
        int w = 80, h = 72, big = (int)(p.new_psf.size > p.ref_psf.size ? p.new_psf.size : p.ref_psf.size);
        int grow = (int)ceil(fmax(p.new_psf.fwhm, p.ref_psf.fwhm)), grow_sat = big / 2 > grow ? big / 2 : grow;
        uint16_t unusable = zo.ignore_bits | CLRED_MASK_NO_DATA;
        uint16_t *b0 = malloc(n * sizeof *b0);
        for (size_t i = 0; i < n; i++)
            b0[i] = p.new_img.mask[i] | p.ref.mask[i] | (isnan(ref.diff[i]) ? CLRED_MASK_NO_DATA : 0);
        size_t mask_bad = 0, nsat = 0;
        for (size_t i = 0; i < n; i++)
            nsat += (b0[i] & CLRED_MASK_SATURATED) != 0;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                uint16_t m = b0[(size_t)y * w + x];
                for (int j = y - grow_sat; j <= y + grow_sat; j++)
                    for (int k = x - grow_sat; k <= x + grow_sat; k++) {
                        if (j < 0 || k < 0 || j >= h || k >= w)
                            continue;
                        uint16_t b = b0[(size_t)j * w + k];
                        if (abs(j - y) <= grow && abs(k - x) <= grow)
                            m |= b & unusable;
                        m |= b & CLRED_MASK_SATURATED;
                    }
                if (x < big / 2 || y < big / 2 || x >= w - big / 2 || y >= h - big / 2)
                    m |= CLRED_MASK_EDGE;
                mask_bad += diff.mask[(size_t)y * w + x] != m || scorr.mask[(size_t)y * w + x] != m;
            }
        printf("masks: %zu of %zu pixels differ from the brute-force growth (grow %d, saturated %d, %zu saturated "
               "pixels)\n",
               mask_bad, n, grow, grow_sat, nsat);
        CHECK(mask_bad == 0);
        CHECK(nsat > 0); /* the saturated growth is exercised */
        free(b0);
    }
    /* the holes are NaN in every product and NO_DATA in the masks */
    size_t hole = (size_t)lround(p.hole_xy[1]) * 80 + (size_t)lround(p.hole_xy[0]);
    CHECK(isnan(diff.sci[hole]) && isnan(scorr.sci[hole]));
    CHECK(diff.mask[hole] & CLRED_MASK_NO_DATA);
    clred_image_free(&diff);
    clred_image_free(&scorr);
    clred_image_free(&flux);
    zogy_ref_free(&ref);
    clred_zogy_result_free(&z);
    clred_psf_free(&vn);
    clred_psf_free(&vr);
    clred_psf_free(&cn);
    clred_psf_free(&cr);
    clred_pair_free(&p);
}

/* Standard deviation of the finite, unmasked values of a (times scale[i] when given). */
static double masked_std(const clred_image *img, const float *var)
{
    double s = 0, s2 = 0;
    size_t n = 0;
    for (size_t i = 0; i < img->width * img->height; i++) {
        if (!isfinite(img->sci[i]) || (img->mask && img->mask[i]))
            continue;
        double v = var ? img->sci[i] / sqrt(var[i]) : img->sci[i];
        s += v;
        s2 += v * v;
        n++;
    }
    double m = s / (double)n;
    return sqrt(s2 / (double)n - m * m);
}

static void empty_sky(clred_ctx *ctx)
{
    clred_pair_opts po = clred_pair_defaults();
    po.nstars = po.ngalaxies = po.ntransients = po.ncosmics = po.nsaturated = 0;
    po.seed = 5;
    clred_pair p;
    CHECK_OK(clred_simulate_pair(&po, &p));
    clred_zogy_result z;
    CHECK_OK(clred_subtract_zogy(ctx, &p.new_img, &p.ref, &p.new_psf, &p.ref_psf, NULL, &z));
    clred_image sc, d;
    download(z.scorr, &sc);
    download(z.diff, &d);
    double s1 = masked_std(&sc, NULL), s2 = masked_std(&d, d.var);
    printf("empty sky: std S_corr %.4f, std D/sigma %.4f\n", s1, s2);
    CHECK_NEAR(s1, 1.0, 0.05);
    CHECK_NEAR(s2, 1.0, 0.05);
    clred_image_free(&sc);
    clred_image_free(&d);
    clred_zogy_result_free(&z);
    clred_pair_free(&p);
}

/* Candidates against the truth on a pair (seed, seeing) with holes in the template. */
static void with_sources(clred_ctx *ctx, uint64_t seed, double ref_fwhm, double new_fwhm, clred_psf_kind kind)
{
    clred_pair_opts po = pair_sources_opts(seed, kind, ref_fwhm, new_fwhm);
    po.shift_x = 0.0;
    clred_pair p;
    CHECK_OK(clred_simulate_pair(&po, &p));
    clred_zogy_result z;
    CHECK_OK(clred_subtract_zogy(ctx, &p.new_img, &p.ref, &p.new_psf, &p.ref_psf, NULL, &z));
    clred_candidate *c = NULL;
    size_t nc = 0;
    CHECK_OK(clred_find_candidates_dev(ctx, z.scorr, z.diff, &z.pd, NULL, &c, &nc));
    clred_image sc;
    download(z.scorr, &sc);

    /* completeness over the area left usable: not on a saturated star's grown mask or a hole */
    pair_score r = pair_score_candidates(&p, c, nc, &sc, CLRED_MASK_UNUSABLE, "S_corr");
    /* DMTN-006: for sigma_g ~ 2 px about 0.02 false peaks here */
    double expect = pair_expected_false(sc.width, sc.height, z.pd.fwhm, 5.0);
    printf("seed %llu fwhm %.1f -> %.1f: %zu candidates, completeness %zu / %zu at S/N >= 8, fading %zu / %zu negative, "
           "%zu false (expected %.2g), flux pull %.2f +- %.2f over %zu\n",
           (unsigned long long)seed, ref_fwhm, new_fwhm, nc, r.found, r.bright, r.fading_neg, r.fading, r.false_pos,
           expect, r.pull_mean, r.pull_sd, r.used);
    CHECK(r.bright >= 20);
    CHECK((double)r.found >= 0.95 * (double)r.bright);
    CHECK(r.fading_neg == r.fading);
    CHECK((double)r.false_pos <= 3.0 * expect);
    CHECK(r.used >= 15);
    CHECK(fabs(r.pull_mean) <= 3.0 * r.pull_sd / sqrt((double)r.used) + 0.1);
    CHECK(r.pull_sd > 0.7 && r.pull_sd < 1.4);
    pair_check_sky(&p, z.diff, "ZOGY D");
    free(c);
    clred_image_free(&sc);
    clred_zogy_result_free(&z);
    clred_pair_free(&p);
}

/* sum |measured - true| over the measured model's pixels, the truth cut to
 * the model's size and renormalised (its wings beyond are not the model's
 * to find: both have unit sum over the model's area) */
static double psf_distance(const clred_psf *m, const clred_psf *truth)
{
    clred_psf t;
    CHECK_OK(clred_psf_from_array(truth->data, truth->size, truth->size, m->size, &t));
    double d = 0;
    int hm = (int)m->size / 2, ht = (int)t.size / 2;
    for (int y = -hm; y <= hm; y++)
        for (int x = -hm; x <= hm; x++) {
            double tv = abs(x) <= ht && abs(y) <= ht ? t.data[(y + ht) * (int)t.size + x + ht] : 0.0;
            d += fabs(m->data[(y + hm) * (int)m->size + x + hm] - tv);
        }
    clred_psf_free(&t);
    return d;
}

/* The relative error of the model's flux beyond r px of its centre (the
 * truth cut and renormalised as in psf_distance): its wings as a whole. */
static double wing_error(const clred_psf *m, const clred_psf *truth, double r)
{
    clred_psf t;
    CHECK_OK(clred_psf_from_array(truth->data, truth->size, truth->size, m->size, &t));
    double sm = 0, st = 0;
    int hm = (int)m->size / 2, ht = (int)t.size / 2;
    for (int y = -hm; y <= hm; y++)
        for (int x = -hm; x <= hm; x++)
            if (x * x + y * y >= r * r && abs(x) <= ht && abs(y) <= ht) {
                sm += m->data[(y + hm) * (int)m->size + x + hm];
                st += t.data[(y + ht) * (int)t.size + x + ht];
            }
    clred_psf_free(&t);
    return sm / st - 1;
}

/* ZOGY of p with the PSFs pn and pr, its candidates scored against p's
 * truth; *expect: the clean false candidates expected from noise alone. */
static pair_score zogy_scored(clred_ctx *ctx, const clred_pair *p, const clred_psf *pn, const clred_psf *pr,
                              double *expect)
{
    clred_zogy_result z;
    CHECK_OK(clred_subtract_zogy(ctx, &p->new_img, &p->ref, pn, pr, NULL, &z));
    clred_candidate *c = NULL;
    size_t nc = 0;
    CHECK_OK(clred_find_candidates_dev(ctx, z.scorr, z.diff, &z.pd, NULL, &c, &nc));
    clred_image sc;
    download(z.scorr, &sc);
    pair_score r = pair_score_candidates(p, c, nc, &sc, CLRED_MASK_UNUSABLE | CLRED_MASK_EDGE, "S_corr");
    *expect = pair_expected_false(sc.width, sc.height, z.pd.fwhm, 5.0);
    free(c);
    clred_image_free(&sc);
    clred_zogy_result_free(&z);
    return r;
}

/* ZOGY with PSFs measured on each image (constant models, as clred
 * subtract measures them without --new-psf / --ref-psf) on a pair whose
 * PSF is the same over the field (issue 10), seeds 1-8.
 *
 * The models against the truth: on seeds 1-10 (tests/sweep_zogy_psf.c,
 * ZP_ORDER=0) the pixel-wise median of the stamps was 0.027-0.064 from the
 * truth in sum |difference| for the reference (0.045 on average; its
 * wings raised by neighbours, its noise that of its faintest stars), the
 * clipped S/N^2-weighted mean with neighbours masked 0.011-0.037 (0.018);
 * with the fitted Moffat wings 0.0075-0.031 on seeds 1-8 (the new image's
 * and the reference's). 0.035 fails the median on both images (0.042-0.048).
 *
 * The wings: the models' flux beyond 2.5 FWHM against the truth's. The
 * stacked stamps' wings were 2-59 % high (their mean |error| over the 16
 * models of seeds 1-8: 0.29), with the Moffat fitted from 1 to 2 FWHM
 * -4 to +26 % (0.08); 0.15 fails the stacked wings.
 *
 * ZOGY leaves a bright star's PSF error times its flux in D: with the
 * truth's PSFs these pairs give 0 false candidates in seeds 1-8 (DMTN-006:
 * 0.02 a seed), with the measured ones 60 (stacked wings; the median gave
 * 285) and 33 (fitted wings) while S_corr had no term for the models'
 * error; with each model's estimated error (model_err, 0-0.021 here, 0-7x
 * what the truth gives, 1.2x on average) in V(S): 1, at a completeness of
 * 303 / 308 (305 without; the misses are transients on galaxies, whose S_N
 * the term counts too); seeds 9-16: 7 (30 without). Those left were
 * negatives 6-9 px from bright stars, the models' wing errors beyond the
 * core; with each model's wing-error profile (wing_err) in V(S) too: 0 at
 * 303 / 308 here, seeds 9-16: 2 at 302 / 306 (7 at 303 without the
 * wings). The bound on the total (6) catches the core term's loss (33);
 * the wing term's shows in the varying models' below and in seeds 9-16. */
typedef struct {
    size_t false_clean; /* over the seeds */
    size_t found, bright; /* transients at S/N >= 8 found, and all of them */
    double wing_abs;    /* sum of |wing_error| over the models */
    size_t models;
} measured_tally;

static void measured_psfs(clred_ctx *ctx, const clred_pair_opts *po, const clred_pair *p, measured_tally *tally)
{
    uint64_t seed = po->seed;
    clred_psf_opts pso = clred_psf_defaults();
    pso.saturation = po->saturation;
    clred_psf pn, pr;
    CHECK_OK(clred_psf_model_measure(ctx, &p->new_img, &pso, &pn));
    CHECK_OK(clred_psf_model_measure(ctx, &p->ref, &pso, &pr));
    double dn = psf_distance(&pn, &p->new_psf), dr = psf_distance(&pr, &p->ref_psf);
    double wn = wing_error(&pn, &p->new_psf, 2.5 * pn.fwhm), wr = wing_error(&pr, &p->ref_psf, 2.5 * pr.fwhm);
    double expect;
    pair_score r = zogy_scored(ctx, p, &pn, &pr, &expect);
    printf("measured PSFs, seed %llu: |new - true| %.4f (%zu stars, wings %+.3f), |ref - true| %.4f (%zu stars, wings "
           "%+.3f); completeness %zu / %zu, fading %zu / %zu negative, %zu clean false (expected %.2g)\n",
           (unsigned long long)seed, dn, pn.nstars, wn, dr, pr.nstars, wr, r.found, r.bright, r.fading_neg, r.fading,
           r.false_clean, expect);
    CHECK(dn < 0.035 && dr < 0.035);
    CHECK(r.bright >= 20);
    /* 95 % holds over the 8 seeds (main); a seed's ~37 transients put a
     * second miss at 94.6 %: the PSF-error term costs a transient on a
     * galaxy where a model's error is overestimated (seed 2: 0.023 against
     * 0.0055 measured from the truth), so a seed is held to 90 % */
    CHECK((double)r.found >= 0.90 * (double)r.bright);
    /* the sign: every fading transient found is negative. A missed one is
     * the completeness checks' to count (seed 6 misses one on a galaxy,
     * S_corr -4.3, where the reference model's error is overestimated:
     * 0.008 against the truth's 0.001) */
    CHECK(r.fading_neg == r.fading_found);
    tally->found += r.found;
    tally->bright += r.bright;
    tally->false_clean += r.false_clean;
    tally->wing_abs += fabs(wn) + fabs(wr);
    tally->models += 2;
    clred_psf_free(&pn);
    clred_psf_free(&pr);
}

/* The same pairs with varying (order 2) models, ZOGY evaluating them at
 * its tile's centre: their wings beyond the core are the stamps' weighted
 * mean, as high as the constant model's stacked wings were, and gave 277
 * clean false candidates in seeds 1-8 (tests/sweep_zogy_psf, ZP_ORDER=2),
 * 289 / 308 found (93.8 %); with the Moffat wings fitted to each
 * evaluated PSF: 62, 301 / 308. The rest of the 62 was the models' wing
 * error beyond the core: with each model's wing-error profile (wing_err)
 * in V(S), 3 at 302 / 308 (the errors estimated on the models with those
 * fitted wings, as ZOGY uses them; on the models without: 2 at 294 / 308).
 * Those figures are for order 2 as given (select_order 0); with the order
 * chosen by held-out prediction (the default, used here): 1 at 303 / 308,
 * 36 at 304 / 308 without the wing term. The bounds (12 false candidates,
 * 95 % found) fail without the wing term (61 as given, 36 chosen) and
 * without the fit (277, 93.8 %, as given). */
static void measured_varying(clred_ctx *ctx, const clred_pair_opts *po, const clred_pair *p, measured_tally *tally)
{
    uint64_t seed = po->seed;
    clred_psf_opts pso = clred_psf_defaults();
    pso.saturation = po->saturation;
    pso.order = 2;
    clred_psf pn, pr;
    CHECK_OK(clred_psf_model_measure(ctx, &p->new_img, &pso, &pn));
    CHECK_OK(clred_psf_model_measure(ctx, &p->ref, &pso, &pr));
    double expect;
    pair_score r = zogy_scored(ctx, p, &pn, &pr, &expect);
    printf("varying PSFs (orders %d, %d), seed %llu: completeness %zu / %zu, %zu clean false (expected %.2g)\n",
           pn.order, pr.order, (unsigned long long)seed, r.found, r.bright, r.false_clean, expect);
    tally->found += r.found;
    tally->bright += r.bright;
    tally->false_clean += r.false_clean;
    clred_psf_free(&pn);
    clred_psf_free(&pr);
}

/* Tiles: 96 px cores with 40 px borders against the whole image at once. The
 * tiles' kernels are sampled on a smaller FFT grid and the differential
 * background is the mean of the tiles' levels of D rather than the level of
 * the whole D (they differ by a few 0.001 sigma of D, which S_corr sees
 * multiplied by about sqrt(4 pi) sigma_PSF), so S_corr agrees to 0.1 sigma
 * away from the edges and flagged pixels; the masks agree exactly. */
static void tiles(clred_ctx *ctx)
{
    clred_pair_opts po = clred_pair_defaults();
    po.seed = 11;
    po.nholes = 3;
    clred_pair p;
    CHECK_OK(clred_simulate_pair(&po, &p));
    clred_zogy_opts o = clred_zogy_defaults();
    clred_zogy_result whole, tiled;
    CHECK_OK(clred_subtract_zogy(ctx, &p.new_img, &p.ref, &p.new_psf, &p.ref_psf, &o, &whole));
    o.tile_size = 96;
    o.tile_border = 40;
    CHECK_OK(clred_subtract_zogy(ctx, &p.new_img, &p.ref, &p.new_psf, &p.ref_psf, &o, &tiled));
    CHECK(whole.ntiles == 1 && tiled.ntiles == 9);
    clred_image a, b, fa, fb;
    download(whole.scorr, &a);
    download(tiled.scorr, &b);
    download(whole.flux, &fa);
    download(tiled.flux, &fb);
    double worst = 0, worst_flux = 0;
    size_t mask_diff = 0, nan_diff = 0;
    for (size_t i = 0; i < 256 * 256; i++) {
        mask_diff += a.mask[i] != b.mask[i];
        if (isnan(a.sci[i]) != isnan(b.sci[i])) {
            nan_diff++;
            continue;
        }
        if (isnan(a.sci[i]) || (a.mask[i] & (CLRED_MASK_EDGE | CLRED_MASK_UNUSABLE)))
            continue;
        worst = fmax(worst, fabs(a.sci[i] - b.sci[i]));
        worst_flux = fmax(worst_flux, fabs(fa.sci[i] - fb.sci[i]) / sqrt(fa.var[i]));
    }
    printf("tiles: worst S_corr difference %.4f sigma, flux %.4f sigma, %zu mask / %zu NaN differences\n", worst,
           worst_flux, mask_diff, nan_diff);
    CHECK(worst < 0.1);
    CHECK(worst_flux < 0.1);
    CHECK(mask_diff == 0 && nan_diff == 0);
    clred_image_free(&a);
    clred_image_free(&b);
    clred_image_free(&fa);
    clred_image_free(&fb);
    clred_zogy_result_free(&whole);
    clred_zogy_result_free(&tiled);
    clred_pair_free(&p);
}

static void bad_arguments(clred_ctx *ctx)
{
    clred_pair_opts po = clred_pair_defaults();
    po.width = po.height = 64;
    clred_pair p;
    CHECK_OK(clred_simulate_pair(&po, &p));
    clred_zogy_result z;
    clred_image small;
    CHECK_OK(clred_image_alloc(&small, 70, 64, 0, 0));
    CHECK(clred_subtract_zogy(ctx, &small, &p.ref, &p.new_psf, &p.ref_psf, NULL, &z) == CLRED_ERR_INPUT);
    CHECK(clred_subtract_zogy(ctx, &p.new_img, &p.ref, NULL, &p.ref_psf, NULL, &z) == CLRED_ERR_USAGE);
    clred_zogy_opts o = clred_zogy_defaults();
    o.fn = 0;
    CHECK(clred_subtract_zogy(ctx, &p.new_img, &p.ref, &p.new_psf, &p.ref_psf, &o, &z) == CLRED_ERR_USAGE);
    clred_image_free(&small);
    clred_pair_free(&p);
}

/* RA/Dec and the nearest reference source (clred_candidates_context), host
 * only: the sky positions against the gnomonic projection written here from
 * its definition (Calabretta & Greisen 2002, TAN with a CD matrix), the
 * nearest source against a brute-force search over every source. */
static void candidate_context(void)
{
    const double ra0 = 210.5, dec0 = 54.25, crpix[2] = {100.0, 80.0}, scale = 0.4, rot = 30.0;
    clred_header *h = clred_header_new();
    CHECK(h != NULL);
    CHECK_OK(clred_header_set_tan(h, ra0, dec0, crpix[0], crpix[1], scale, rot, 0));
    enum { NC = 40, NS = 700 };
    clred_candidate c[NC];
    clred_source s[NS];
    memset(c, 0, sizeof c);
    memset(s, 0, sizeof s);
    uint64_t r = 12345;
#define RND() ((double)((r = r * 6364136223846793005ULL + 1442695040888963407ULL) >> 11) / 9007199254740992.0)
    for (int i = 0; i < NS; i++) {
        s[i].x = 600 * RND() - 50;
        s[i].y = 600 * RND() - 50;
        s[i].flux = 1000 * RND();
    }
    for (int i = 0; i < NC; i++) {
        c[i].x = 500 * RND();
        c[i].y = 500 * RND();
    }
    c[0].x = crpix[0]; /* the reference pixel itself */
    c[0].y = crpix[1];
    CHECK_OK(clred_candidates_context(h, s, NS, c, NC));
    double worst_arcsec = 0, d = scale / 3600.0, cr = cos(rot * M_PI / 180), sr = sin(rot * M_PI / 180);
    size_t dist_bad = 0;
    for (int i = 0; i < NC; i++) {
        /* clred_header_set_tan's pixel is 0-based, as the candidates' are */
        double px = c[i].x - crpix[0], py = c[i].y - crpix[1];
        double xi = (-d * cr * px + d * sr * py) * M_PI / 180, eta = (d * sr * px + d * cr * py) * M_PI / 180;
        double a0 = ra0 * M_PI / 180, d0 = dec0 * M_PI / 180;
        double den = cos(d0) - eta * sin(d0);
        double ra = a0 + atan2(xi, den), dec = atan2(sin(d0) + eta * cos(d0), hypot(xi, den));
        double dra = fmod(ra * 180 / M_PI - c[i].ra + 540.0, 360.0) - 180.0;
        double sep = hypot(dra * cos(dec), dec * 180 / M_PI - c[i].dec) * 3600.0;
        worst_arcsec = sep > worst_arcsec ? sep : worst_arcsec;
        double best = INFINITY, flux = NAN;
        for (int k = 0; k < NS; k++) {
            double e = hypot(s[k].x - c[i].x, s[k].y - c[i].y);
            if (e < best)
                best = e, flux = s[k].flux;
        }
        dist_bad += !(fabs(c[i].ref_dist - best) <= 1e-12 && c[i].ref_flux == flux);
    }
    printf("candidate context: RA/Dec within %.2g arcsec of the TAN projection, %zu of %d nearest sources wrong\n",
           worst_arcsec, dist_bad, NC);
    CHECK(worst_arcsec < 1e-6);
    CHECK(dist_bad == 0);
    /* no WCS, no sources: NaN */
    clred_header *empty = clred_header_new();
    for (int i = 0; i < NC; i++)
        c[i].ra = c[i].dec = c[i].ref_dist = c[i].ref_flux = NAN;
    CHECK_OK(clred_candidates_context(empty, NULL, 0, c, NC));
    CHECK(isnan(c[3].ra) && isnan(c[3].dec) && isnan(c[3].ref_dist) && isnan(c[3].ref_flux));
    CHECK(clred_candidates_context(NULL, NULL, 5, c, NC) == CLRED_ERR_USAGE);
    clred_header_free(empty);
    clred_header_free(h);
#undef RND
}

/* Tiles of varying models take each model's wing-error profile where they
 * evaluate it (clred_psf_eval): grown by the model's noise gain,
 * sqrt(T^T term_cov T), away from the polynomials' centre. On 3 x 3
 * tiles of 32 px the centre tile's S_corr (gain 1) is the same with and
 * without a term_cov, every other tile's is no larger in size and is
 * smaller near the bright stars (more variance). */
static void tile_error_gain(clred_ctx *ctx)
{
    clred_pair_opts po = clred_pair_defaults();
    po.width = po.height = 96;
    po.psf_kind = CLRED_PSF_GAUSSIAN;
    po.ref_fwhm = 2.5;
    po.new_fwhm = 3.0;
    po.nstars = 20;
    po.ngalaxies = po.ncosmics = po.nsaturated = po.nholes = 0;
    po.ntransients = 3;
    clred_pair p;
    CHECK_OK(clred_simulate_pair(&po, &p));
    clred_psf vn = {0}, vr = {0};
    p.new_psf.model_err = 0.02;
    p.ref_psf.model_err = 0.01;
    for (int k = 2; k < 12; k++)
        p.new_psf.wing_err[k] = p.ref_psf.wing_err[k] = 0.01;
    p.new_psf.wing_ring_px = p.ref_psf.wing_ring_px = 1.0;
    tilted(&p.new_psf, 0.1, 0.05, 96, 96, &vn);
    tilted(&p.ref_psf, -0.1, 0.05, 96, 96, &vr);
    clred_zogy_opts zo = clred_zogy_defaults();
    zo.tile_size = 32;
    clred_zogy_result z0, z1;
    CHECK_OK(clred_subtract_zogy(ctx, &p.new_img, &p.ref, &vn, &vr, &zo, &z0));
    /* the terms' noise 4x the constant's: gain sqrt(1 + 4 u^2 + 4 v^2) */
    vn.term_cov[0] = vr.term_cov[0] = 1.0;
    vn.term_cov[4] = vn.term_cov[8] = vr.term_cov[4] = vr.term_cov[8] = 4.0;
    clred_psf e;
    CHECK_OK(clred_psf_eval(&vn, 95.0, 47.5, &e));
    CHECK_NEAR(e.model_err, 0.02, 1e-12);
    CHECK_NEAR(e.wing_err[5], 0.01 * sqrt(5.0), 1e-9);
    clred_psf_free(&e);
    CHECK_OK(clred_subtract_zogy(ctx, &p.new_img, &p.ref, &vn, &vr, &zo, &z1));
    clred_image a, b;
    download(z0.scorr, &a);
    download(z1.scorr, &b);
    double centre = 0, grown = 0, drop = 0;
    for (size_t y = 0; y < 96; y++)
        for (size_t x = 0; x < 96; x++) {
            size_t i = y * 96 + x;
            if (isnan(a.sci[i]) || isnan(b.sci[i]))
                continue;
            double d = fabs(a.sci[i]) - fabs(b.sci[i]);
            if (x >= 32 && x < 64 && y >= 32 && y < 64)
                centre = fmax(centre, fabs(d));
            else {
                grown = fmax(grown, -d);
                drop = fmax(drop, d);
            }
        }
    printf("tile error gain: centre tile S_corr change %.2g, others |S_corr| up by at most %.2g, down by up to %.2f\n",
           centre, grown, drop);
    CHECK(centre < 1e-5);
    CHECK(grown < 1e-3);
    CHECK(drop > 0.5);
    clred_image_free(&a);
    clred_image_free(&b);
    clred_zogy_result_free(&z0);
    clred_zogy_result_free(&z1);
    clred_psf_free(&vn);
    clred_psf_free(&vr);
    clred_pair_free(&p);
}

int main(void)
{
    candidate_context();
    clred_ctx *ctx = harness_ctx();
    if (!clred_fft_available(CLRED_FFT_DEFAULT)) {
        printf("SKIP: no FFT backend built in\n");
        clred_ctx_destroy(ctx);
        return 77;
    }
    point_area();
    against_reference(ctx, 0);
    against_reference(ctx, 1);
    empty_sky(ctx);
    with_sources(ctx, 3, 3.5, 4.5, CLRED_PSF_MOFFAT); /* new image worse than the reference */
    with_sources(ctx, 4, 4.0, 3.0, CLRED_PSF_GAUSSIAN); /* better */
    /* each seed's pair is simulated once for both kinds of model (the
     * simulation was most of this test's time) */
    measured_tally mt = {0, 0, 0, 0, 0}, vt = {0, 0, 0, 0, 0};
    for (uint64_t sd = 1; sd <= 8; sd++) {
        clred_pair_opts po = pair_sources_opts(sd, CLRED_PSF_MOFFAT, 3.5, 4.5);
        clred_pair p;
        CHECK_OK(clred_simulate_pair(&po, &p));
        measured_psfs(ctx, &po, &p, &mt);
        measured_varying(ctx, &po, &p, &vt);
        clred_pair_free(&p);
    }
    printf("measured PSFs, seeds 1-8: %zu clean false, completeness %zu / %zu, mean |wing error| %.3f\n",
           mt.false_clean, mt.found, mt.bright, mt.wing_abs / (double)mt.models);
    CHECK((double)mt.found >= 0.95 * (double)mt.bright);
    CHECK(mt.false_clean <= 6);
    CHECK(mt.wing_abs / (double)mt.models < 0.15);
    printf("varying PSFs, seeds 1-8: %zu clean false, completeness %zu / %zu\n", vt.false_clean, vt.found, vt.bright);
    CHECK(vt.false_clean <= 12);
    CHECK((double)vt.found >= 0.95 * (double)vt.bright);
    tiles(ctx);
    tile_error_gain(ctx);
    bad_arguments(ctx);
    clred_ctx_destroy(ctx);
    return harness_finish();
}
