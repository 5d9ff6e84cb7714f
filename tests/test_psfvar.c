/* The spatially varying PSF (host/steps/psf_vary.c, host/io/psf_fits.c and
 * its uses), on a simulated 448 x 448 frame whose FWHM changes by 20 %
 * across x and 10 % across y (clred_simulate_pair's fwhm_grad_x/_y):
 * - the order-2 model's FWHM at the four corners within 5 % of the truth
 *   there (the true profile, pixel-integrated, measured the same way), the
 *   order-1 model's within 8 % (see corners()); the constant model's
 *   corners are all its centre's;
 * - the FITS round trip of a cube, and a plain 2-D file read as order 0;
 * - the minimum-stars rule lowers the order when stars are few;
 * - forced PSF photometry of the frame's bright isolated point sources: the
 *   flux ratio to the truth has no trend across x with the order-2 model,
 *   while the constant model's (too narrow on the right, too broad on the
 *   left) does, so this test fails if the model stops varying;
 * - the device's PSF fit with the basis cube combined per source against the
 *   double-precision reference fed with the PSF evaluated at each source;
 * - ZOGY on a pair whose PSFs both vary: S_corr over the stars' pixels has a
 *   spread closer to 1 with the measured order-2 models (evaluated per
 *   tile) than with the measured constant ones (the spread of empty sky,
 *   noise-dominated, is not asserted: 1.47 against 1.41). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "psfphot_ref.h"

enum { W = 448, H = 448 };
static const double FWHM = 4.0, GX = 0.2, GY = 0.1;

static clred_pair_opts frame_opts(void)
{
    clred_pair_opts po = clred_pair_defaults();
    po.seed = 21;
    po.width = W;
    po.height = H;
    po.new_fwhm = FWHM;
    po.fwhm_grad_x = GX;
    po.fwhm_grad_y = GY;
    po.nstars = 300;
    po.ngalaxies = 0;
    po.ntransients = 60; /* the photometry's truth: bright, 10 px clear of everything */
    po.snr_min = 80;
    po.snr_max = 250;
    po.fading_fraction = 0;
    po.ncosmics = 0;
    po.nsaturated = 0;
    return po;
}

/* The FWHM the model's estimator gives for the true profile of FWHM f. */
static double true_fwhm(double f)
{
    clred_pair_opts po = clred_pair_defaults();
    po.width = po.height = 64;
    po.new_fwhm = f;
    po.nstars = po.ngalaxies = po.ntransients = po.ncosmics = po.nsaturated = 0;
    clred_pair p;
    CHECK_OK(clred_simulate_pair(&po, &p));
    clred_psf m;
    CHECK_OK(clred_psf_from_array(p.new_psf.data, p.new_psf.size, p.new_psf.size, 0, &m));
    double r = m.fwhm;
    clred_psf_free(&m);
    clred_pair_free(&p);
    return r;
}

static clred_psf_opts model_opts(int order)
{
    clred_psf_opts o = clred_psf_defaults();
    o.size = 31; /* wide enough that the flux outside differs by < 0.3 % over the field */
    o.isolation = 12;
    o.saturation = 60000;
    o.order = order;
    o.select_order = 0; /* the order's own fit: selection() tests the choice */
    return o;
}

static void corners(const clred_pair_opts *po, clred_psf models[3])
{
    static const double cx[4] = {0, W - 1, 0, W - 1}, cy[4] = {0, 0, H - 1, H - 1};
    for (int ord = 0; ord < 3; ord++) {
        const clred_psf *m = &models[ord];
        printf("order %d (%zu stars): FWHM centre %.3f, corners", m->order, m->nstars, m->fwhm);
        for (int c = 0; c < 4; c++)
            printf(" %.3f (e %.3f)", m->corner_fwhm[c], m->corner_ellipticity[c]);
        printf("\n");
        CHECK(m->order == ord);
    }
    printf("truth: centre %.3f, corners", true_fwhm(FWHM));
    for (int c = 0; c < 4; c++) {
        double t = true_fwhm(clred_pair_fwhm_at(po, FWHM, cx[c], cy[c]));
        printf(" %.3f", t);
        /* order 2: measured 0.2-4.1 % off (noise: ~100 stars extrapolated to
         * the corners; the same fit of noiseless true stamps is within
         * 0.8 %); order 1 cannot follow the profile's curvature in the
         * position (a pixel's value goes as 1 / FWHM^2): 4-7 % */
        CHECK_MSG(fabs(models[2].corner_fwhm[c] / t - 1) < 0.05, "order 2, corner %d: FWHM %.3f, true %.3f", c,
                  models[2].corner_fwhm[c], t);
        CHECK_MSG(fabs(models[1].corner_fwhm[c] / t - 1) < 0.08, "order 1, corner %d: FWHM %.3f, true %.3f", c,
                  models[1].corner_fwhm[c], t);
        /* the constant model is 5-20 % off at three corners */
        CHECK(models[0].corner_fwhm[c] == models[0].fwhm);
        CHECK(models[2].corner_ellipticity[c] < 0.05);
    }
    printf("\n");
    /* the evaluation at the centre is the constant term */
    clred_psf e;
    CHECK_OK(clred_psf_eval(&models[2], models[2].x0, models[2].y0, &e));
    double worst = 0;
    for (size_t i = 0; e.data && i < e.size * e.size; i++)
        worst = fmax(worst, fabs(e.data[i] - models[2].data[i]));
    CHECK(worst < 1e-7 && e.order == 0 && e.basis == NULL);
    clred_psf_free(&e);
    /* the fit's term covariance (relative to the centre's) is kept, the
     * wing-error profile grows with it towards a corner, model_err stays,
     * and the constant model has none */
    for (int ord = 1; ord < 3; ord++) {
        const clred_psf *m = &models[ord];
        CHECK(m->term_cov[0] == 1.0);
        for (size_t k = 1; k < m->nterms; k++)
            CHECK(m->term_cov[k * m->nterms + k] > 0);
        int ring = -1;
        for (int k = 0; k < CLRED_PSF_WING_RINGS && ring < 0; k++)
            ring = m->wing_err[k] > 0 ? k : -1;
        CHECK(ring >= 0);
        if (ring < 0)
            continue;
        CHECK_OK(clred_psf_eval(m, 0, 0, &e));
        double g = e.wing_err[ring] / m->wing_err[ring];
        printf("order %d: wing error at (0, 0) %.2f x the centre's\n", ord, g);
        CHECK(g > 1.5 && e.model_err == m->model_err);
        clred_psf_free(&e);
    }
    CHECK(models[0].term_cov[0] == 0.0);
}

static void files(const clred_psf *m2, const clred_psf *m0)
{
    const char *dir = harness_tmpdir("test_psfvar");
    char path[4096], flat[4096];
    snprintf(path, sizeof path, "%s/psf2.fits", dir);
    snprintf(flat, sizeof flat, "%s/psf0.fits", dir);
    CHECK_OK(clred_psf_write(path, m2, 1));
    CHECK_OK(clred_psf_write(flat, m0, 1));
    clred_psf q;
    CHECK_OK(clred_psf_read(path, 0, &q));
    CHECK(q.order == 2 && q.nterms == 6 && q.size == m2->size && q.basis);
    CHECK(q.x0 == m2->x0 && q.y0 == m2->y0 && q.xscale == m2->xscale && q.yscale == m2->yscale);
    /* cfitsio writes a double key to 15 significant digits */
    CHECK_MSG(m2->model_err > 0 && fabs(q.model_err - m2->model_err) < 1e-14, "PSFERR round trip: %g -> %g", m2->model_err,
              q.model_err);
    CHECK_MSG(m2->wing_ring_px > 0 && q.wing_ring_px == m2->wing_ring_px, "wing rings of %g px read as %g",
              m2->wing_ring_px, q.wing_ring_px);
    double wing_worst = 0;
    for (int r = 0; r < CLRED_PSF_WING_RINGS; r++)
        wing_worst = fmax(wing_worst, fabs(q.wing_err[r] - m2->wing_err[r]));
    CHECK_MSG(wing_worst < 1e-14, "wing profile round trip: %g", wing_worst);
    double worst = 0;
    for (size_t i = 0; q.basis && i < 6 * q.size * q.size; i++)
        worst = fmax(worst, fabs(q.basis[i] - m2->basis[i]));
    CHECK_MSG(worst < 1e-7, "cube round trip: %g", worst);
    for (int c = 0; c < 4; c++)
        CHECK_NEAR(q.corner_fwhm[c], m2->corner_fwhm[c], 1e-4);
    clred_psf_free(&q);
    /* cut to 21 px: the centre planes, sums restored */
    CHECK_OK(clred_psf_read(path, 21, &q));
    CHECK(q.size == 21 && q.order == 2);
    double s = 0;
    for (size_t i = 0; q.data && i < 21 * 21; i++)
        s += q.data[i];
    CHECK_NEAR(s, 1.0, 1e-5);
    clred_psf_free(&q);
    CHECK_OK(clred_psf_read(flat, 0, &q));
    CHECK(q.order == 0 && q.basis == NULL && q.size + 2 >= m0->size); /* recentred, perhaps cut by 2 */
    clred_psf_free(&q);
}

/* Forced PSF fluxes over the truth, against x: the mean ratio and its
 * trend per unit u = x / (W - 1) - 0.5 (least squares, weighted by the errors). */
static void flux_trend(const clred_pair *p, const clred_psf_phot *d, double *mean, double *slope, double *slope_err,
                       size_t *used)
{
    double sw = 0, su = 0, suu = 0, sr = 0, sur = 0;
    *used = 0;
    for (size_t i = 0; i < p->ntransients; i++) {
        if (d[i].flags & (CLRED_SRC_EDGE | CLRED_SRC_MASKED | CLRED_SRC_PSF_FAILED))
            continue;
        double r = d[i].flux / p->transients[i].flux, e = d[i].flux_err / p->transients[i].flux;
        double u = p->transients[i].x / (W - 1) - 0.5, w = 1 / (e * e);
        sw += w, su += w * u, suu += w * u * u, sr += w * r, sur += w * u * r;
        (*used)++;
    }
    double det = sw * suu - su * su;
    *slope = (sw * sur - su * sr) / det;
    *slope_err = sqrt(sw / det);
    *mean = (sr - *slope * su) / sw; /* at u = 0 */
}

static void photometry(clred_ctx *ctx, const clred_pair *p, const clred_psf *m0, const clred_psf *m2)
{
    size_t n = p->ntransients;
    double *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    clred_psf_phot *d0 = malloc(n * sizeof *d0), *d2 = malloc(n * sizeof *d2);
    for (size_t i = 0; i < n; i++) {
        x[i] = p->transients[i].x;
        y[i] = p->transients[i].y;
    }
    clred_psf_phot_opts o = clred_psf_phot_defaults();
    o.fit_position = 0;
    o.fit_radius = 8;
    CHECK_OK(clred_psf_photometry(ctx, &p->new_img, m0, x, y, n, &o, d0));
    CHECK_OK(clred_psf_photometry(ctx, &p->new_img, m2, x, y, n, &o, d2));
    double mean0, slope0, se0, mean2, slope2, se2;
    size_t u0, u2;
    flux_trend(p, d0, &mean0, &slope0, &se0, &u0);
    flux_trend(p, d2, &mean2, &slope2, &se2, &u2);
    printf("flux / truth over %zu sources: constant model %.4f, trend %+.4f +- %.4f per unit x; order 2 %.4f, trend "
           "%+.4f +- %.4f\n", u0, mean0, slope0, se0, mean2, slope2, se2);
    CHECK(u2 >= 20);
    /* the truth's FWHM changes 20 % across: a fixed PSF's flux does by several % */
    CHECK_MSG(fabs(slope0) > 10 * se0 && fabs(slope0) > 0.03, "constant model: trend %.4f +- %.4f", slope0, se0);
    CHECK_MSG(fabs(slope2) < 3 * se2 + 0.005, "order-2 model: trend %.4f +- %.4f", slope2, se2);
    /* the overall level: the sources sit among 300 stars whose wings no
     * local sky takes off, where even the true PSF's fits come out ~2 %
     * low (0.979 on a frame like this one without the gradient) */
    CHECK_MSG(fabs(mean2 - 1) < 0.025, "order-2 model: flux ratio %.4f at the centre", mean2);

    /* the device's combination of the basis against the double reference
     * given each source's evaluated PSF: fitted positions, alone */
    o.fit_position = 1;
    o.group_radius = -1;
    size_t k = n < 16 ? n : 16;
    for (size_t i = 0; i < k; i++) { /* starts 0.3 px off */
        x[i] += 0.3 * ((i & 1) ? 1 : -1);
        y[i] += 0.2 * ((i & 2) ? 1 : -1);
    }
    CHECK_OK(clred_psf_photometry(ctx, &p->new_img, m2, x, y, k, &o, d2));
    double worst = 0;
    for (size_t i = 0; i < k; i++) {
        clred_psf e;
        CHECK_OK(clred_psf_eval(m2, x[i], y[i], &e));
        psfphot_ref_result r;
        psfphot_ref(&p->new_img, &e, &x[i], &y[i], 1, o.fit_radius, 0, m2->fwhm, o.fit_sky, o.fit_position,
                    o.max_iters, o.max_shift, o.min_snr_position, o.ignore_bits, &r);
        clred_psf_free(&e);
        CHECK_MSG(d2[i].flags == r.flags && d2[i].npix == r.npix, "source %zu: flags %#x / %#x, pixels %zu / %zu", i,
                  d2[i].flags, r.flags, d2[i].npix, r.npix);
        /* the same fit on the same float pixels: what differs is the PSF's
         * combination (float basis, terms in the device's accumulator)
         * against the evaluated float PSF renormalised, ~1e-7 relative, and
         * float storage of the results; as test_psfphot's bounds */
        double fe = r.flux_err;
        worst = fmax(worst, fabs(d2[i].flux - r.flux) / fe);
        CHECK_MSG(fabs(d2[i].flux - r.flux) <= 1e-3 * fe + 1e-6 * fabs(r.flux), "source %zu: flux %.6f, reference %.6f",
                  i, d2[i].flux, r.flux);
        CHECK_MSG(fabs(d2[i].flux_err - fe) <= 1e-4 * fe, "source %zu: error %.6f, reference %.6f", i, d2[i].flux_err,
                  fe);
        CHECK_MSG(fabs(d2[i].x - r.x) <= 1e-4 && fabs(d2[i].y - r.y) <= 1e-4, "source %zu: (%.6f, %.6f), reference "
                  "(%.6f, %.6f)", i, d2[i].x, d2[i].y, r.x, r.y);
    }
    printf("device against the reference: largest flux difference %.2g of its error over %zu sources\n", worst, k);
    free(x);
    free(y);
    free(d0);
    free(d2);
}

static void few_stars(clred_ctx *ctx)
{
    clred_pair_opts po = frame_opts();
    po.width = po.height = 160;
    po.nstars = 25;
    po.ntransients = 0;
    clred_pair p;
    CHECK_OK(clred_simulate_pair(&po, &p));
    clred_psf_opts o = model_opts(2);
    clred_psf m;
    CHECK_OK(clred_psf_model_measure(ctx, &p.new_img, &o, &m));
    printf("few stars: order 2 asked, order %d from %zu stars\n", m.order, m.nstars);
    CHECK(m.order < 2);
    CHECK(m.order == 0 || m.nstars >= 3 * CLRED_PSF_STARS_PER_TERM);
    clred_psf_free(&m);
    o.order = 3;
    CHECK(clred_psf_model_measure(ctx, &p.new_img, &o, &m) == CLRED_ERR_USAGE);
    clred_pair_free(&p);
}

/* The order chosen by held-out prediction (select_order) with order 2 the
 * most allowed: a varying model on the frame whose FWHM changes by 20 %
 * (order 1: the profile's curvature in the position that order 2 adds is
 * below what its extra terms' noise costs the stars, measured +2e-5 to
 * +4e-5 of e^2 in the median, against -2e-4 to -5e-4 for order 1 over the
 * constant model), the constant model on the same frame without the
 * gradient, where order 2, as given, is fitted from the same stars. */
static void selection(clred_ctx *ctx, const clred_pair *grad)
{
    clred_psf_opts o = model_opts(2);
    o.select_order = 1;
    clred_psf m;
    CHECK_OK(clred_psf_model_measure(ctx, &grad->new_img, &o, &m));
    printf("selection: FWHM gradient, order %d (%zu stars)\n", m.order, m.nstars);
    CHECK(m.order >= 1);
    clred_psf_free(&m);
    clred_pair_opts po = frame_opts();
    po.fwhm_grad_x = po.fwhm_grad_y = 0;
    clred_pair p;
    CHECK_OK(clred_simulate_pair(&po, &p));
    CHECK_OK(clred_psf_model_measure(ctx, &p.new_img, &o, &m));
    printf("selection: constant PSF, order %d (%zu stars)", m.order, m.nstars);
    CHECK(m.order == 0);
    clred_psf_free(&m);
    o.select_order = 0;
    CHECK_OK(clred_psf_model_measure(ctx, &p.new_img, &o, &m));
    printf("; as given, order %d (%zu stars)\n", m.order, m.nstars);
    CHECK(m.order == 2);
    clred_psf_free(&m);
    clred_pair_free(&p);
}

/* The RMS of S_corr over the pixels within 2 FWHM of the stars' peaks
 * (where the new image is 20 sigma above its sky), masked ones left out. */
static double scorr_on_stars(clred_ctx *ctx, const clred_pair *p, const clred_psf *pn, const clred_psf *pr,
                             size_t *npix)
{
    clred_zogy_opts zo = clred_zogy_defaults();
    zo.tile_size = 80;
    clred_zogy_result z;
    CHECK_OK(clred_subtract_zogy(ctx, &p->new_img, &p->ref, pn, pr, &zo, &z));
    clred_image s;
    CHECK_OK(clred_dimage_download(z.scorr, &s));
    const clred_image *im = &p->new_img;
    double ss = 0;
    *npix = 0;
    for (size_t j = 0; j < H; j++)
        for (size_t i = 0; i < W; i++) {
            size_t q = j * W + i;
            if (s.mask[q] || !isfinite(s.sci[q]) || !(im->sci[q] - 300 > 20 * sqrt(im->var[q])))
                continue;
            ss += (double)s.sci[q] * s.sci[q];
            (*npix)++;
        }
    printf("ZOGY: %zu tiles, S_corr robust std %.3f, RMS over %zu star pixels %.3f\n", z.ntiles, z.scorr_scale, *npix,
           sqrt(ss / (double)(*npix ? *npix : 1)));
    clred_image_free(&s);
    clred_zogy_result_free(&z);
    return sqrt(ss / (double)(*npix ? *npix : 1));
}

static void zogy(clred_ctx *ctx)
{
    clred_pair_opts po = frame_opts();
    po.width = po.height = W;
    po.ntransients = 0;
    po.ref_fwhm = 3.2;
    clred_pair p;
    CHECK_OK(clred_simulate_pair(&po, &p));
    clred_psf n0, r0, n2, r2;
    clred_psf_opts o = model_opts(0);
    CHECK_OK(clred_psf_model_measure(ctx, &p.new_img, &o, &n0));
    CHECK_OK(clred_psf_model_measure(ctx, &p.ref, &o, &r0));
    o.order = 2;
    CHECK_OK(clred_psf_model_measure(ctx, &p.new_img, &o, &n2));
    CHECK_OK(clred_psf_model_measure(ctx, &p.ref, &o, &r2));
    CHECK(n2.order == 2 && r2.order == 2);
    const clred_psf *ms[4] = {&n0, &r0, &n2, &r2};
    for (int q = 0; q < 4; q++)
        printf("ZOGY PSF %d: order %d, %zu stars, FWHM %.3f, corners %.3f %.3f %.3f %.3f\n", q, ms[q]->order,
               ms[q]->nstars, ms[q]->fwhm, ms[q]->corner_fwhm[0], ms[q]->corner_fwhm[1], ms[q]->corner_fwhm[2],
               ms[q]->corner_fwhm[3]);
    size_t np0, np2;
    double s0 = scorr_on_stars(ctx, &p, &n0, &r0, &np0);
    double s2 = scorr_on_stars(ctx, &p, &n2, &r2, &np2);
    CHECK(np0 == np2 && np0 > 200);
    CHECK_MSG(fabs(s2 - 1) < fabs(s0 - 1), "S_corr RMS on the stars: %.3f with varying PSFs, %.3f with constant ones",
              s2, s0);
    clred_psf_free(&n0);
    clred_psf_free(&r0);
    clred_psf_free(&n2);
    clred_psf_free(&r2);
    clred_pair_free(&p);
}

int main(void)
{
    clred_ctx *ctx = harness_ctx();
    clred_pair_opts po = frame_opts();
    clred_pair p;
    CHECK_OK(clred_simulate_pair(&po, &p));
    printf("frame: %zu bright point sources for photometry\n", p.ntransients);
    clred_psf models[3];
    for (int ord = 0; ord < 3; ord++) {
        clred_psf_opts o = model_opts(ord);
        CHECK_OK(clred_psf_model_measure(ctx, &p.new_img, &o, &models[ord]));
    }
    corners(&po, models);
    files(&models[2], &models[0]);
    photometry(ctx, &p, &models[0], &models[2]);
    few_stars(ctx);
    selection(ctx, &p);
    if (clred_fft_available(CLRED_FFT_DEFAULT))
        zogy(ctx);
    else
        printf("SKIP ZOGY: no FFT backend built in\n");
    for (int ord = 0; ord < 3; ord++)
        clred_psf_free(&models[ord]);
    clred_pair_free(&p);
    clred_ctx_destroy(ctx);
    return harness_finish();
}
