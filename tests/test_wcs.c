/* World coordinates: wcslib's reading of TAN, TAN-SIP, TPV and PC/CDELT
 * headers against a plain double reference (tests/reference/wcs_ref.c), the
 * header rewrite for moved pixels (shift, rotation + scale, affine) keeping
 * every pixel's sky position, and clred_resample / clred_resample_onto_grid
 * writing that WCS into their outputs. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "wcs_ref.h"

/* Tolerances: wcslib and the reference both work in double; 1e-6 arcsec is
 * far below any astrometric use and far above double rounding at these
 * angles (1e-16 rad ~ 2e-11 arcsec) amplified by the polynomials. */
#define SKY_TOL_ARCSEC 1e-6

static clred_header *header_of(const ref_wcs *w, int use_pc)
{
    clred_header *h = clred_header_new();
    char key[16];
    const char *suffix = w->sip_order ? "-SIP" : w->tpv ? "" : "";
    char ct1[20], ct2[20];
    snprintf(ct1, sizeof ct1, "RA---%s%s", w->tpv ? "TPV" : "TAN", suffix);
    snprintf(ct2, sizeof ct2, "DEC--%s%s", w->tpv ? "TPV" : "TAN", suffix);
    clred_header_set_string(h, "OBJECT", "test field", NULL);
    clred_header_set_string(h, "CTYPE1", ct1, NULL);
    clred_header_set_string(h, "CTYPE2", ct2, NULL);
    clred_header_set_double(h, "CRVAL1", w->crval[0], NULL);
    clred_header_set_double(h, "CRVAL2", w->crval[1], NULL);
    clred_header_set_double(h, "CRPIX1", w->crpix[0], NULL);
    clred_header_set_double(h, "CRPIX2", w->crpix[1], NULL);
    clred_header_set_string(h, "RADESYS", "ICRS", NULL);
    if (use_pc) {
        /* CDELT = 1e-4 deg and PC = CD / CDELT: the NIRCam form */
        clred_header_set_double(h, "CDELT1", 1e-4, NULL);
        clred_header_set_double(h, "CDELT2", 1e-4, NULL);
        clred_header_set_double(h, "PC1_1", w->cd[0] / 1e-4, NULL);
        clred_header_set_double(h, "PC1_2", w->cd[1] / 1e-4, NULL);
        clred_header_set_double(h, "PC2_1", w->cd[2] / 1e-4, NULL);
        clred_header_set_double(h, "PC2_2", w->cd[3] / 1e-4, NULL);
    } else {
        clred_header_set_double(h, "CD1_1", w->cd[0], NULL);
        clred_header_set_double(h, "CD1_2", w->cd[1], NULL);
        clred_header_set_double(h, "CD2_1", w->cd[2], NULL);
        clred_header_set_double(h, "CD2_2", w->cd[3], NULL);
    }
    if (w->sip_order) {
        clred_header_set_double(h, "A_ORDER", w->sip_order, NULL);
        clred_header_set_double(h, "B_ORDER", w->sip_order, NULL);
        for (int p = 0; p <= w->sip_order; p++)
            for (int q = 0; p + q <= w->sip_order; q++) {
                if (w->a[p][q] != 0) {
                    snprintf(key, sizeof key, "A_%d_%d", p, q);
                    clred_header_set_double(h, key, w->a[p][q], NULL);
                }
                if (w->b[p][q] != 0) {
                    snprintf(key, sizeof key, "B_%d_%d", p, q);
                    clred_header_set_double(h, key, w->b[p][q], NULL);
                }
            }
    }
    if (w->tpv)
        for (int k = 0; k < 11; k++) {
            snprintf(key, sizeof key, "PV1_%d", k);
            clred_header_set_double(h, key, w->pv1[k], NULL);
            snprintf(key, sizeof key, "PV2_%d", k);
            clred_header_set_double(h, key, w->pv2[k], NULL);
        }
    return h;
}

static ref_wcs base_wcs(void)
{
    ref_wcs w;
    memset(&w, 0, sizeof w);
    w.crval[0] = 150.1;
    w.crval[1] = 2.2;
    w.crpix[0] = 60.5;
    w.crpix[1] = 40.25;
    double s = 0.4 / 3600, a = 17 * M_PI / 180;
    w.cd[0] = -s * cos(a);
    w.cd[1] = s * sin(a);
    w.cd[2] = s * sin(a);
    w.cd[3] = s * cos(a);
    return w;
}

static ref_wcs sip_wcs(void)
{
    ref_wcs w = base_wcs();
    w.sip_order = 3;
    w.a[2][0] = 2e-5, w.a[1][1] = -1e-5, w.a[0][2] = 3e-6, w.a[3][0] = 4e-8, w.a[1][2] = -2e-8;
    w.b[2][0] = -1e-5, w.b[1][1] = 2.5e-5, w.b[0][2] = 1e-6, w.b[0][3] = 3e-8, w.b[2][1] = 1e-8;
    return w;
}

static ref_wcs tpv_wcs(void)
{
    ref_wcs w = base_wcs();
    w.tpv = 1;
    w.pv1[1] = w.pv2[1] = 1.0;
    w.pv1[0] = 1e-6, w.pv1[4] = 0.02, w.pv1[5] = -0.01, w.pv1[7] = 3.0, w.pv1[9] = -1.5;
    w.pv2[0] = -2e-6, w.pv2[4] = 0.015, w.pv2[6] = 0.01, w.pv2[7] = -2.0, w.pv2[8] = 1.0;
    return w;
}

/* wcslib against the reference at a grid of pixels, and the round trip. */
static void check_reading(const char *name, const ref_wcs *r, int use_pc)
{
    clred_header *h = header_of(r, use_pc);
    CHECK(clred_header_has_wcs(h));
    clred_wcs *w = NULL;
    CHECK_OK(clred_wcs_from_header(h, &w));
    if (!w) {
        clred_header_free(h);
        return;
    }
    double x[64], y[64], ra[64], dec[64], bx[64], by[64];
    int n = 0;
    for (int j = 0; j < 8; j++)
        for (int i = 0; i < 8; i++, n++) {
            x[n] = -3.7 + 17.3 * i;
            y[n] = -2.1 + 11.9 * j;
        }
    CHECK_OK(clred_wcs_pix2sky(w, (size_t)n, x, y, ra, dec));
    double worst = 0, worst_px = 0;
    for (int k = 0; k < n; k++) {
        double rra, rdec;
        ref_wcs_pix2sky(r, x[k], y[k], &rra, &rdec);
        worst = fmax(worst, ref_sky_distance(ra[k], dec[k], rra, rdec));
    }
    CHECK_OK(clred_wcs_sky2pix(w, (size_t)n, ra, dec, bx, by));
    for (int k = 0; k < n; k++)
        worst_px = fmax(worst_px, hypot(bx[k] - x[k], by[k] - y[k]));
    CHECK_MSG(worst < SKY_TOL_ARCSEC, "%s: wcslib and the reference differ by %.3g arcsec", name, worst);
    CHECK_MSG(worst_px < 1e-6, "%s: sky -> pixel round trip off by %.3g px", name, worst_px);
    CHECK_NEAR(clred_wcs_pixel_scale(w), 0.4, 1e-9);
    clred_wcs_free(w);
    clred_header_free(h);
}

/* After clred_header_wcs_transform(t), pixel t(p) has p's old sky position. */
static double moved_error(const clred_header *before, const clred_header *after, const clred_transform *t)
{
    clred_wcs *w0 = NULL, *w1 = NULL;
    if (clred_wcs_from_header(before, &w0) != CLRED_OK || clred_wcs_from_header(after, &w1) != CLRED_OK) {
        clred_wcs_free(w0);
        return INFINITY;
    }
    double worst = 0;
    for (int j = 0; j < 6; j++)
        for (int i = 0; i < 6; i++) {
            double x = -5 + 23.0 * i, y = -4 + 19.0 * j;
            double xo = t->m[0] * x + t->m[1] * y + t->m[2], yo = t->m[3] * x + t->m[4] * y + t->m[5];
            double ra0, dec0, ra1, dec1;
            clred_wcs_pix2sky(w0, 1, &x, &y, &ra0, &dec0);
            clred_wcs_pix2sky(w1, 1, &xo, &yo, &ra1, &dec1);
            worst = fmax(worst, ref_sky_distance(ra0, dec0, ra1, dec1));
        }
    clred_wcs_free(w0);
    clred_wcs_free(w1);
    return worst;
}

static void check_transform(const char *name, const ref_wcs *r, int use_pc)
{
    clred_transform ts[3] = {clred_transform_translation(12.25, -7.5),
                             clred_transform_similarity(1.3, 23.0, 50, 40, 4.5, -3.25),
                             {{0.9, 0.15, 3.0, -0.1, 1.1, -2.0}}};
    for (int k = 0; k < 3; k++) {
        clred_header *h = header_of(r, use_pc), *moved = clred_header_copy(h);
        CHECK_OK(clred_header_wcs_transform(moved, &ts[k]));
        double err = moved_error(h, moved, &ts[k]);
        /* SIP's inverse (sky -> pixel) is not written by the test header, so
         * only pixel -> sky is compared; 1e-6 arcsec as above. */
        CHECK_MSG(err < SKY_TOL_ARCSEC, "%s, transform %d: sky positions moved by %.3g arcsec", name, k, err);
        char v[80];
        CHECK_MSG(clred_header_get_string(moved, "OBJECT", v, sizeof v), "%s: other cards kept", name);
        clred_header_free(h);
        clred_header_free(moved);
    }
}

/* The resampled image's header describes its own grid. */
static void check_resample(clred_ctx *ctx)
{
    ref_wcs r = sip_wcs();
    clred_image img;
    CHECK_OK(clred_image_alloc(&img, 40, 32, 0, 0));
    img.header = header_of(&r, 0);
    clred_transform t = clred_transform_similarity(1.0, 30.0, 20, 16, 2.0, 1.0);
    clred_resample_opts o = clred_resample_defaults();
    o.interp = CLRED_INTERP_BILINEAR;
    clred_image out;
    CHECK_OK(clred_resample(ctx, &img, &t, &o, &out));
    CHECK(moved_error(img.header, out.header, &t) < SKY_TOL_ARCSEC);

    /* Onto the union grid: each aligned frame's header maps its pixels to
     * the same sky as the frame's own. */
    clred_image frames[2] = {img, img};
    clred_transform to_ref[2] = {clred_transform_identity(), clred_transform_translation(-9.5, 6.0)};
    clred_image aligned[2];
    clred_grid_geometry g;
    CHECK_OK(clred_resample_onto_grid(ctx, frames, 2, to_ref, CLRED_GRID_UNION, &o, aligned, &g));
    CHECK(g.ox > 0);
    for (int k = 0; k < 2; k++) {
        clred_transform onto = to_ref[k];
        onto.m[2] += g.ox;
        onto.m[5] += g.oy;
        CHECK_MSG(moved_error(img.header, aligned[k].header, &onto) < SKY_TOL_ARCSEC, "union grid frame %d", k);
        clred_image_free(&aligned[k]);
    }
    clred_image_free(&out);
    clred_image_free(&img);
}

int main(void)
{
    ref_wcs tan = base_wcs(), sip = sip_wcs(), tpv = tpv_wcs();
    check_reading("TAN (CD)", &tan, 0);
    check_reading("TAN (PC, CDELT)", &tan, 1);
    check_reading("TAN-SIP", &sip, 0);
    check_reading("TPV", &tpv, 0);
    check_transform("TAN (PC, CDELT)", &tan, 1);
    check_transform("TAN-SIP", &sip, 0);
    check_transform("TPV", &tpv, 0);

    /* A header without a celestial WCS: no WCS, and a transform leaves it alone. */
    clred_header *plain = clred_header_new();
    clred_header_set_string(plain, "CTYPE1", "PIXEL", NULL);
    clred_header_set_double(plain, "CRPIX1", 1.0, NULL);
    clred_wcs *none = NULL;
    CHECK(!clred_header_has_wcs(plain));
    CHECK(clred_wcs_from_header(plain, &none) == CLRED_ERR_INPUT && none == NULL);
    clred_transform shift = clred_transform_translation(3, 4);
    CHECK_OK(clred_header_wcs_transform(plain, &shift));
    double crpix1 = 0;
    CHECK(clred_header_get_double(plain, "CRPIX1", &crpix1) && crpix1 == 1.0);
    clred_header_free(plain);

    /* A centre and a pixel scale make a TAN WCS. */
    clred_header *h = clred_header_new();
    CHECK_OK(clred_header_set_tan(h, 114.9, 21.5, 511.5, 511.5, 0.53, 0, 0));
    clred_wcs *w = NULL;
    CHECK_OK(clred_wcs_from_header(h, &w));
    if (w) {
        double x = 511.5, y = 511.5, ra, dec, x1 = 511.5, y1 = 611.5, ra1, dec1;
        clred_wcs_pix2sky(w, 1, &x, &y, &ra, &dec);
        clred_wcs_pix2sky(w, 1, &x1, &y1, &ra1, &dec1);
        CHECK_NEAR(ra, 114.9, 1e-12);
        CHECK_NEAR(dec, 21.5, 1e-12);
        CHECK_NEAR(ref_sky_distance(ra, dec, ra1, dec1), 53.0, 1e-5); /* the projection shortens 53" by ~1e-6" */
        CHECK(dec1 > dec); /* north up */
        CHECK_NEAR(clred_wcs_pixel_scale(w), 0.53, 1e-12);
    }
    clred_wcs_free(w);
    clred_header_free(h);

    clred_ctx *ctx = harness_ctx();
    check_resample(ctx);
    clred_ctx_destroy(ctx);
    return harness_finish();
}
