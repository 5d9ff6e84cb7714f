/* Light curves on a drawn series of 30 dithered frames with a TAN WCS: a
 * constant star, a sinusoidal variable and a microlensing-like (Paczynski)
 * event, Gaussian stars on sky with Poisson-like noise and an exact VAR
 * plane. Forced photometry at sky positions (through each frame's WCS) on the
 * direct frames and on difference frames (the reference flux added back)
 * recovers the injected fluxes with chi^2/dof ~ 1, with apertures and with
 * forced PSF fits (the drawn Gaussian as the PSF); MJD from DATE-OBS plus
 * half the exposure, and MJD-OBS first; the CSV output. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "wcs_ref.h"

enum { W = 64, H = 64, NFRAMES = 30, NT = 3 };
static const double SIGMA = 1.2, SKY = 300, RN = 5, EXPTIME = 60;
static const double FX[NT] = {20.3, 43.7, 30.2}, FY[NT] = {20.6, 22.4, 44.9};

static double flux_at(int target, double t) /* t in days from the first frame */
{
    if (target == 0)
        return 20000;
    if (target == 1)
        return 15000 * (1 + 0.4 * sin(2 * M_PI * t / 0.37));
    double u0 = 0.3, t0 = 0.6, te = 0.25, tau = (t - t0) / te, u = sqrt(u0 * u0 + tau * tau);
    return 8000 * (u * u + 2) / (u * sqrt(u * u + 4));
}

static double ref_flux(int target) { return target == 0 ? 20000 : target == 1 ? 15000 : 8000; }

/* Pixel-integrated Gaussian star (5 x 5 subsamples). */
static void add_star(double *img, double x0, double y0, double f)
{
    for (int y = (int)y0 - 8; y <= (int)y0 + 8; y++)
        for (int x = (int)x0 - 8; x <= (int)x0 + 8; x++) {
            if (x < 0 || y < 0 || x >= W || y >= H)
                continue;
            double s = 0;
            for (int j = 0; j < 5; j++)
                for (int i = 0; i < 5; i++) {
                    double dx = x - 0.4 + 0.2 * i - x0, dy = y - 0.4 + 0.2 * j - y0;
                    s += exp(-0.5 * (dx * dx + dy * dy) / (SIGMA * SIGMA));
                }
            img[(size_t)y * W + x] += f * s / 25 / (2 * M_PI * SIGMA * SIGMA);
        }
}

static ref_wcs field_wcs(double dx, double dy)
{
    ref_wcs w;
    memset(&w, 0, sizeof w);
    w.crval[0] = 270.5, w.crval[1] = -29.0;
    w.crpix[0] = 32.5 + dx, w.crpix[1] = 32.5 + dy;
    double s = 0.3 / 3600;
    w.cd[0] = -s, w.cd[3] = s;
    return w;
}

static void set_wcs(clred_header *h, const ref_wcs *w)
{
    clred_header_set_string(h, "CTYPE1", "RA---TAN", NULL);
    clred_header_set_string(h, "CTYPE2", "DEC--TAN", NULL);
    clred_header_set_double(h, "CRVAL1", w->crval[0], NULL);
    clred_header_set_double(h, "CRVAL2", w->crval[1], NULL);
    clred_header_set_double(h, "CRPIX1", w->crpix[0], NULL);
    clred_header_set_double(h, "CRPIX2", w->crpix[1], NULL);
    clred_header_set_double(h, "CD1_1", w->cd[0], NULL);
    clred_header_set_double(h, "CD2_2", w->cd[3], NULL);
    clred_header_set_double(h, "CD1_2", 0, NULL);
    clred_header_set_double(h, "CD2_1", 0, NULL);
}

/* chi^2 / dof of the measured fluxes against the injected ones, per target. */
static void check_chi2(const char *what, const clred_lc_point *p, size_t n, const double *tdays)
{
    double chi2[NT] = {0};
    size_t m[NT] = {0};
    for (size_t i = 0; i < n; i++) {
        double truth = flux_at((int)p[i].target, tdays[p[i].image]);
        CHECK(p[i].flags == 0);
        double z = (p[i].flux - truth) / p[i].flux_err;
        chi2[p[i].target] += z * z;
        m[p[i].target]++;
    }
    double all = 0;
    for (int k = 0; k < NT; k++) {
        printf("%s: target %d chi2/dof %.3f over %zu points\n", what, k, chi2[k] / (double)m[k], m[k]);
        /* 30 points: chi2/dof has a standard deviation of 0.26 */
        CHECK_MSG(chi2[k] / (double)m[k] > 0.35 && chi2[k] / (double)m[k] < 1.9, "%s: target %d chi2/dof %.3f", what,
                  k, chi2[k] / (double)m[k]);
        all += chi2[k];
    }
    /* 90 points: 0.15 */
    CHECK_MSG(all / (NT * NFRAMES) > 0.6 && all / (NT * NFRAMES) < 1.45, "%s: chi2/dof %.3f", what,
              all / (NT * NFRAMES));
}

int main(void)
{
    clred_image direct[NFRAMES], diff[NFRAMES];
    double tdays[NFRAMES];
    harness_rng r = {2024};
    clred_lc_targets tg = {NT, malloc(NT * sizeof(double)), malloc(NT * sizeof(double)), malloc(NT * sizeof(double))};
    ref_wcs w0 = field_wcs(0, 0);
    for (int k = 0; k < NT; k++) {
        ref_wcs_pix2sky(&w0, FX[k], FY[k], &tg.a[k], &tg.b[k]);
        tg.ref_flux[k] = ref_flux(k);
    }
    double *model = malloc(W * H * sizeof *model), *refm = malloc(W * H * sizeof *refm);
    for (int f = 0; f < NFRAMES; f++) {
        tdays[f] = f * 0.04 + 0.01 * harness_uniform(&r);
        double dx = 4 * harness_uniform(&r) - 2, dy = 4 * harness_uniform(&r) - 2;
        for (size_t i = 0; i < W * H; i++)
            model[i] = SKY, refm[i] = SKY;
        for (int k = 0; k < NT; k++) {
            add_star(model, FX[k] + dx, FY[k] + dy, flux_at(k, tdays[f]));
            add_star(refm, FX[k] + dx, FY[k] + dy, ref_flux(k));
        }
        CHECK_OK(clred_image_alloc(&direct[f], W, H, 1, 1));
        CHECK_OK(clred_image_alloc(&diff[f], W, H, 1, 1));
        for (size_t i = 0; i < W * H; i++) {
            double var = model[i] + RN * RN, v = model[i] + sqrt(var) * harness_normal(&r);
            direct[f].sci[i] = (float)v;
            direct[f].var[i] = (float)var;
            diff[f].sci[i] = (float)(v - refm[i]); /* a noiseless reference */
            diff[f].var[i] = (float)var;
        }
        ref_wcs wf = field_wcs(dx, dy);
        for (int k = 0; k < 2; k++) {
            clred_header *h = clred_header_new();
            set_wcs(h, &wf);
            /* 2026-03-01 is MJD 61100 */
            char date[40];
            double sec = tdays[f] * 86400;
            snprintf(date, sizeof date, "2026-03-%02dT%02d:%02d:%06.3f", 1 + (int)(sec / 86400),
                     (int)fmod(sec / 3600, 24), (int)fmod(sec / 60, 60), fmod(sec, 60));
            clred_header_set_string(h, "DATE-OBS", date, NULL);
            clred_header_set_double(h, "EXPTIME", EXPTIME, NULL);
            (k ? &diff[f] : &direct[f])->header = h;
        }
    }
    free(model);
    free(refm);

    clred_ctx *ctx = harness_ctx();
    clred_lightcurve_opts o = clred_lightcurve_defaults();
    o.sky = 1;
    o.phot.radius = 6;
    o.phot.annulus_in = 10;
    o.phot.annulus_out = 15;
    clred_lc_point *p = NULL;
    size_t n = 0;
    CHECK_OK(clred_lightcurve_images(ctx, direct, NFRAMES, &tg, &o, &p, &n));
    CHECK(n == NT * NFRAMES);
    if (n == NT * NFRAMES) {
        check_chi2("direct", p, n, tdays);
        /* The time: mid-exposure, to a millisecond. */
        for (int f = 0; f < NFRAMES; f++)
            CHECK_NEAR(p[f * NT].mjd, 61100 + tdays[f] + 0.5 * EXPTIME / 86400, 1.2e-8);
        CHECK(p[1].target == 1 && p[NT].image == 1);
        CHECK_NEAR(p[0].mag, -2.5 * log10(p[0].flux) + 25, 1e-9);
    }
    free(p);

    o.difference = 1;
    CHECK_OK(clred_lightcurve_images(ctx, diff, NFRAMES, &tg, &o, &p, &n));
    if (n == NT * NFRAMES)
        check_chi2("difference", p, n, tdays);

    /* Forced PSF photometry: the star's pixel-integrated Gaussian as the PSF. */
    enum { PS = 15 };
    float stamp[PS * PS];
    for (int j = 0; j < PS; j++)
        for (int i = 0; i < PS; i++) {
            double s = 0;
            for (int sj = 0; sj < 5; sj++)
                for (int si = 0; si < 5; si++) {
                    double dx = i - PS / 2 - 0.4 + 0.2 * si, dy = j - PS / 2 - 0.4 + 0.2 * sj;
                    s += exp(-0.5 * (dx * dx + dy * dy) / (SIGMA * SIGMA));
                }
            stamp[j * PS + i] = (float)s;
        }
    clred_psf psf;
    CHECK_OK(clred_psf_from_array(stamp, PS, PS, 0, &psf));
    clred_lightcurve_opts po = o;
    po.psf = &psf;
    for (int d = 0; d < 2; d++) {
        po.difference = d;
        clred_lc_point *pp = NULL;
        size_t npp = 0;
        CHECK_OK(clred_lightcurve_images(ctx, d ? diff : direct, NFRAMES, &tg, &po, &pp, &npp));
        CHECK(npp == NT * NFRAMES);
        if (npp == NT * NFRAMES) {
            check_chi2(d ? "PSF, difference" : "PSF, direct", pp, npp, tdays);
            /* a PSF fit beats the aperture's noise on the faintest target */
            CHECK(pp[2].flux_err < p[2].flux_err);
        }
        free(pp);
    }
    /* no PSF can be measured on a difference */
    po.psf = NULL;
    po.psf_measure = 1;
    clred_lc_point *pp = NULL;
    size_t npp = 0;
    CHECK(clred_lightcurve_images(ctx, diff, 1, &tg, &po, &pp, &npp) == CLRED_ERR_USAGE);
    clred_psf_free(&psf);

    /* MJD-OBS wins over DATE-OBS; MAGZP sets the magnitudes. */
    clred_header_set_double(diff[0].header, "MJD-OBS", 60000.25, NULL);
    clred_header_set_double(diff[0].header, "MAGZP", 27.0, NULL);
    clred_lc_point *q = NULL;
    size_t nq = 0;
    CHECK_OK(clred_lightcurve_images(ctx, diff, 1, &tg, &o, &q, &nq));
    if (nq == NT) {
        CHECK_NEAR(q[0].mjd, 60000.25 + 30.0 / 86400, 1e-9);
        CHECK_NEAR(q[0].mag, -2.5 * log10(q[0].flux) + 27, 1e-9);
    }
    free(q);

    /* Output. */
    const char *dir = harness_tmpdir("test_lightcurve");
    char csv[512];
    snprintf(csv, sizeof csv, "%s/lc.csv", dir);
    remove(csv);
    CHECK_OK(clred_lc_write(NULL, csv, p, n, 0));
    FILE *fp = fopen(csv, "r");
    char line[512];
    int lines = 0;
    while (fp && fgets(line, sizeof line, fp))
        lines++;
    if (fp)
        fclose(fp);
    CHECK(lines == NT * NFRAMES + 1);
    free(p);

    /* Refusals: no time; sky targets without a WCS. */
    clred_header *h = direct[1].header;
    direct[1].header = clred_header_new();
    CHECK(clred_lightcurve_images(ctx, direct, 2, &tg, &o, &p, &n) == CLRED_ERR_INPUT);
    CHECK(strstr(clred_last_error(), "DATE-OBS") != NULL);
    clred_header_set_string(direct[1].header, "DATE-OBS", "2026-03-01T01:00:00", NULL);
    CHECK(clred_lightcurve_images(ctx, direct, 2, &tg, &o, &p, &n) == CLRED_ERR_INPUT);
    CHECK(strstr(clred_last_error(), "WCS") != NULL);
    clred_header_free(direct[1].header);
    direct[1].header = h;

    for (int f = 0; f < NFRAMES; f++) {
        clred_image_free(&direct[f]);
        clred_image_free(&diff[f]);
    }
    clred_lc_targets_free(&tg);
    clred_ctx_destroy(ctx);
    return harness_finish();
}
