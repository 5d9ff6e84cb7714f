/* Zero point on a simulated field (in electrons, flat and dark removed) with
 * its true WCS and a catalog of the true magnitudes: MAGZP equals the truth
 * (25 + 2.5 log10(exptime) plus the aperture's share of the Moffat PSF,
 * computed in double here) within its error; a colour term is recovered;
 * the limiting magnitude follows from the frame's true sky noise; with PSF
 * magnitudes (the true Moffat as the PSF) MAGZP equals the truth less the
 * PSF stamp's missing wings; refusals. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "simulate.h"
#include "wcs_ref.h"

/* The fraction of a Moffat (beta 3) star's flux an aperture of radius r
 * measures after subtracting the median of the annulus [rin, rout], which
 * holds the wings at about the radius halving the annulus' area. */
static double measured_fraction(double fwhm, double r, double rin, double rout)
{
    const double beta = CLRED_SIM_MOFFAT_BETA;
    double alpha = fwhm / (2 * sqrt(pow(2, 1 / beta) - 1));
    double ee = 1 - pow(1 + r * r / (alpha * alpha), 1 - beta);
    double rmed = sqrt(0.5 * (rin * rin + rout * rout));
    double wing = (beta - 1) / (M_PI * alpha * alpha) * pow(1 + rmed * rmed / (alpha * alpha), -beta);
    return ee - M_PI * r * r * wing;
}

int main(void)
{
    clred_sim_opts so = clred_sim_defaults();
    so.width = so.height = 320;
    so.nstars = 300;
    so.nbias = so.ndark = so.nflat = 0;
    so.nscience = 1;
    so.nepoch2 = so.ntransients = 0;
    so.cosmic_rate = 0;
    clred_sim_truth t;
    CHECK_OK(clred_sim_truth_build(&so, &t));
    size_t f = 0;
    while (t.frames[f].kind != CLRED_SIM_SCIENCE)
        f++;
    const clred_sim_frame *fr = &t.frames[f];
    size_t n = so.width * so.height;
    double *e = malloc(n * sizeof *e);
    clred_sim_expected(&t, f, e);
    const double *flat = clred_sim_flat_of(&t, fr);
    clred_image img;
    CHECK_OK(clred_image_alloc(&img, so.width, so.height, 0, 0));
    harness_rng rng = {7};
    double sky_mean = 0;
    for (size_t i = 0; i < n; i++) {
        double v = (e[i] - t.dark[i] * fr->exptime) / flat[i];
        img.sci[i] = (float)(v + sqrt(v + so.readnoise * so.readnoise) * harness_normal(&rng));
    }
    sky_mean = fr->sky * fr->exptime;
    free(e);
    img.header = clred_header_new();
    CHECK_OK(clred_sim_frame_wcs(&t, fr, img.header));

    clred_tan_sip fw;
    clred_sim_field_wcs(&t, 0, 0, &fw);
    ref_wcs rw;
    memset(&rw, 0, sizeof rw);
    memcpy(rw.crval, fw.crval, sizeof rw.crval);
    rw.crpix[0] = fw.crpix[0] + 1, rw.crpix[1] = fw.crpix[1] + 1;
    memcpy(rw.cd, fw.cd, sizeof rw.cd);
    clred_refcat cat = {t.nstars, malloc(t.nstars * sizeof(double)), malloc(t.nstars * sizeof(double)),
                        malloc(t.nstars * sizeof(double)), malloc(t.nstars * sizeof(double))};
    for (size_t i = 0; i < t.nstars; i++) {
        ref_wcs_pix2sky(&rw, t.stars[i].x, t.stars[i].y, &cat.ra[i], &cat.dec[i]);
        cat.mag[i] = -2.5 * log10(t.stars[i].flux / so.science_exptime) + 25.0;
        cat.colour[i] = NAN;
    }

    clred_ctx *ctx = harness_ctx();
    clred_zeropoint_opts o = clred_zeropoint_defaults();
    o.phot.radius = 6;
    o.phot.annulus_in = 10;
    o.phot.annulus_out = 15;
    o.min_snr = 30;
    clred_zeropoint_result r;
    CHECK_OK(clred_zeropoint(ctx, &img, &cat, &o, &r));
    double truth = 25 + 2.5 * log10(so.science_exptime) + 2.5 * log10(measured_fraction(fr->fwhm, 6, 10, 15));
    printf("MAGZP %.4f +- %.4f (truth %.4f) from %zu of %zu stars, rms %.4f; sky rms %.2f (truth %.2f); limit %.3f; fwhm %.2f (truth %.2f)\n",
           r.zp, r.zp_err, truth, r.nused, r.nmatched, r.rms, r.sky_rms, sqrt(sky_mean + 36), r.limit_mag, r.fwhm,
           fr->fwhm);
    /* Within 3 sigma of its error, plus 0.002 mag for the model of the
     * annulus median and the simulator's truncated wings (< 0.1 %). */
    CHECK_MSG(fabs(r.zp - truth) <= 3 * r.zp_err + 0.002, "MAGZP %.4f, truth %.4f, error %.4f", r.zp, truth, r.zp_err);
    CHECK(r.zp_err > 0 && r.zp_err < 0.01);
    CHECK(r.nused >= 30);
    CHECK_NEAR(r.sky_rms, sqrt(sky_mean + 36), 0.05 * sqrt(sky_mean + 36));
    CHECK_NEAR(r.limit_mag, r.zp - 2.5 * log10(5 * r.sky_rms * sqrt(M_PI * 36)), 1e-9);
    double v;
    CHECK(clred_header_get_double(img.header, "MAGZP", &v) && fabs(v - r.zp) < 1e-9);
    CHECK(clred_header_get_double(img.header, "MAGZPERR", &v) && fabs(v - r.zp_err) < 1e-9);
    CHECK(clred_header_get_double(img.header, "MAGLIM", &v));

    /* PSF magnitudes: the simulator's Moffat, pixel-integrated (7 x 7), as
     * the PSF; the fit's flux is the share of the flux inside the stamp. */
    enum { PS = 41 };
    float *stamp = malloc(PS * PS * sizeof *stamp);
    double inside = 0;
    for (int j = 0; j < PS; j++)
        for (int i = 0; i < PS; i++) {
            double sum = 0;
            for (int sj = 0; sj < 7; sj++)
                for (int si = 0; si < 7; si++)
                    sum += clred_sim_moffat(hypot(i - PS / 2 + (si + 0.5) / 7 - 0.5, j - PS / 2 + (sj + 0.5) / 7 - 0.5),
                                            fr->fwhm);
            stamp[j * PS + i] = (float)(sum / 49);
            inside += sum / 49;
        }
    clred_psf psf;
    CHECK_OK(clred_psf_from_array(stamp, PS, PS, 0, &psf));
    free(stamp);
    clred_zeropoint_opts po = o;
    po.psf = &psf;
    clred_zeropoint_result rp;
    double aperture_zp = r.zp;
    CHECK_OK(clred_zeropoint(ctx, &img, &cat, &po, &rp));
    double ptruth = 25 + 2.5 * log10(so.science_exptime) + 2.5 * log10(inside);
    printf("PSF: MAGZP %.4f +- %.4f (truth %.4f) from %zu of %zu stars, rms %.4f (aperture %.4f); limit %.3f\n", rp.zp,
           rp.zp_err, ptruth, rp.nused, rp.nmatched, rp.rms, r.rms, rp.limit_mag);
    /* 0.003 mag for the simulator's wings, cut where they fall below 0.2 e- */
    CHECK_MSG(fabs(rp.zp - ptruth) <= 3 * rp.zp_err + 0.003, "PSF MAGZP %.4f, truth %.4f, error %.4f", rp.zp, ptruth,
              rp.zp_err);
    CHECK(rp.psf == 1 && rp.nused >= 30 && fabs(rp.zp - aperture_zp) > 0.01);
    double p2 = 0;
    for (size_t i = 0; i < psf.size * psf.size; i++)
        p2 += (double)psf.data[i] * psf.data[i];
    CHECK_NEAR(rp.limit_mag, rp.zp - 2.5 * log10(5 * rp.sky_rms / sqrt(p2)), 1e-9);
    /* a PSF fit goes deeper than the aperture */
    CHECK(rp.limit_mag > r.limit_mag);
    clred_psf_free(&psf);

    /* A colour term: catalog magnitudes with 0.15 (colour - 0.8) added. */
    harness_rng cr = {3};
    for (size_t i = 0; i < t.nstars; i++) {
        cat.colour[i] = 2 * harness_uniform(&cr);
        cat.mag[i] += 0.15 * (cat.colour[i] - 0.8);
    }
    o.colour_term = 1;
    CHECK_OK(clred_zeropoint(ctx, &img, &cat, &o, &r));
    printf("colour term %.4f +- %.4f, MAGZP %.4f +- %.4f\n", r.colour, r.colour_err, r.zp, r.zp_err);
    CHECK_MSG(fabs(r.colour - 0.15) <= 3 * r.colour_err + 0.002, "colour %.4f +- %.4f", r.colour, r.colour_err);
    CHECK_MSG(fabs(r.zp - (truth - 0.12)) <= 3 * r.zp_err + 0.002, "with colour: MAGZP %.4f", r.zp);
    CHECK(clred_header_get_double(img.header, "MAGCOLOR", &v) && fabs(v - r.colour) < 1e-9);

    /* Refusals: no WCS; a catalog elsewhere (no pairs). */
    clred_header *keep = img.header;
    img.header = clred_header_new();
    CHECK(clred_zeropoint(ctx, &img, &cat, &o, &r) == CLRED_ERR_INPUT);
    clred_header_free(img.header);
    img.header = keep;
    for (size_t i = 0; i < t.nstars; i++)
        cat.dec[i] += 0.05;
    CHECK(clred_zeropoint(ctx, &img, &cat, &o, &r) == CLRED_ERR_INPUT);
    CHECK(strstr(clred_last_error(), "zeropoint") != NULL);

    clred_refcat_free(&cat);
    clred_image_free(&img);
    clred_sim_truth_free(&t);
    clred_ctx_destroy(ctx);
    return harness_finish();
}
