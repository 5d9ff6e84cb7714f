/* World coordinates through resampling and stacking on real frames: the sky
 * position of a star measured in the input (through the input's WCS) and of
 * the same star measured in the output (through the output's WCS) agree.
 * NIRCam F200W (a TAN header in PC/CDELT form) resampled with a rotation and
 * a shift; three CAFOS V frames (no celestial WCS: a TAN is made from their
 * RA/DEC keywords and the 0.53"/px scale) stacked onto the union grid with
 * star matching. Skips when the data is absent. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "wcs_ref.h"

/* Median sky distance (in pixels of the input's scale) between stars of
 * list a (header ha) and their counterparts in list b (header hb), found
 * within 1.5 px of where t sends them; *npairs the counterparts found. */
static double sky_agreement(const clred_header *ha, const clred_source *a, size_t na, const clred_header *hb,
                            const clred_source *b, size_t nb, const clred_transform *t, size_t *npairs)
{
    clred_wcs *wa = NULL, *wb = NULL;
    *npairs = 0;
    if (clred_wcs_from_header(ha, &wa) != CLRED_OK || clred_wcs_from_header(hb, &wb) != CLRED_OK) {
        clred_wcs_free(wa);
        return INFINITY;
    }
    double scale = clred_wcs_pixel_scale(wa);
    float *d = malloc((na ? na : 1) * sizeof *d);
    size_t m = 0;
    for (size_t i = 0; i < na; i++) {
        double qx = t->m[0] * a[i].x + t->m[1] * a[i].y + t->m[2], qy = t->m[3] * a[i].x + t->m[4] * a[i].y + t->m[5];
        long best = -1;
        double bd = 1.5 * 1.5;
        for (size_t j = 0; j < nb; j++) {
            double dd = (b[j].x - qx) * (b[j].x - qx) + (b[j].y - qy) * (b[j].y - qy);
            if (dd < bd)
                bd = dd, best = (long)j;
        }
        if (best < 0)
            continue;
        double ra1, dec1, ra2, dec2;
        clred_wcs_pix2sky(wa, 1, &a[i].x, &a[i].y, &ra1, &dec1);
        clred_wcs_pix2sky(wb, 1, &b[best].x, &b[best].y, &ra2, &dec2);
        d[m++] = (float)(ref_sky_distance(ra1, dec1, ra2, dec2) / scale);
    }
    /* median */
    for (size_t i = 1; i < m; i++)
        for (size_t k = i; k > 0 && d[k - 1] > d[k]; k--) {
            float tmp = d[k];
            d[k] = d[k - 1];
            d[k - 1] = tmp;
        }
    double med = m ? d[m / 2] : INFINITY;
    free(d);
    clred_wcs_free(wa);
    clred_wcs_free(wb);
    *npairs = m;
    return med;
}

/* WCS_out(t(p)) = WCS_in(p) exactly (double rounding), over the frame. */
static double exact_error(const clred_header *hin, const clred_header *hout, const clred_transform *t, size_t w,
                          size_t h)
{
    clred_wcs *a = NULL, *b = NULL;
    if (clred_wcs_from_header(hin, &a) != CLRED_OK || clred_wcs_from_header(hout, &b) != CLRED_OK) {
        clred_wcs_free(a);
        return INFINITY;
    }
    double worst = 0;
    for (int j = 0; j <= 4; j++)
        for (int i = 0; i <= 4; i++) {
            double x = (double)w * i / 4, y = (double)h * j / 4;
            double xo = t->m[0] * x + t->m[1] * y + t->m[2], yo = t->m[3] * x + t->m[4] * y + t->m[5];
            double r1, d1, r2, d2;
            clred_wcs_pix2sky(a, 1, &x, &y, &r1, &d1);
            clred_wcs_pix2sky(b, 1, &xo, &yo, &r2, &d2);
            worst = fmax(worst, ref_sky_distance(r1, d1, r2, d2));
        }
    clred_wcs_free(a);
    clred_wcs_free(b);
    return worst;
}

static void nircam(clred_ctx *ctx)
{
    clred_image img, out;
    CHECK_OK(clred_image_read(harness_data("nircam/ref_jw01324_f200w.fits"), 0, &img));
    CHECK(clred_header_has_wcs(img.header));
    clred_transform t = clred_transform_similarity(1.0, 12.0, 450, 450, 7.3, -4.6);
    clred_resample_opts ro = clred_resample_defaults();
    CHECK_OK(clred_resample(ctx, &img, &t, &ro, &out));
    double exact = exact_error(img.header, out.header, &t, img.width, img.height);
    CHECK_MSG(exact < 1e-6, "NIRCam: the rewritten WCS moves the sky by %.3g arcsec", exact);
    clred_source *a = NULL, *b = NULL;
    size_t na = 0, nb = 0, np = 0;
    clred_detect_opts dopts = clred_detect_defaults();
    dopts.thresh = 10;
    CHECK_OK(clred_detect_stars(ctx, &img, &dopts, &a, &na));
    CHECK_OK(clred_detect_stars(ctx, &out, &dopts, &b, &nb));
    double med = sky_agreement(img.header, a, na, out.header, b, nb, &t, &np);
    printf("NIRCam: %zu stars in, %zu out, %zu pairs, median sky distance %.4f px\n", na, nb, np, med);
    /* Lanczos resampling moves a centroid by a few hundredths of a pixel;
     * a WCS that ignored the rotation would be off by tens of pixels. */
    CHECK(np >= 20);
    CHECK_MSG(med < 0.1, "NIRCam: stars' sky positions differ by %.3f px (median)", med);
    free(a);
    free(b);
    clred_image_free(&img);
    clred_image_free(&out);
}

static void cafos(clred_ctx *ctx)
{
    const char *names[3] = {"cafos/science/NGC2420/V/uamA_0031.fits", "cafos/science/NGC2420/V/uamA_0032.fits",
                            "cafos/science/NGC2420/V/uamA_0033.fits"};
    clred_dimage *d[3] = {0};
    clred_image first;
    memset(&first, 0, sizeof first);
    for (int i = 0; i < 3; i++) {
        clred_image img;
        CHECK_OK(clred_image_read(harness_data(names[i]), 0, &img));
        CHECK(!clred_header_has_wcs(img.header)); /* CTYPE 'PIXEL' only */
        double ra = 0, dec = 0;
        CHECK(clred_header_get_double(img.header, "RA", &ra) && clred_header_get_double(img.header, "DEC", &dec));
        CHECK_OK(clred_header_set_tan(img.header, ra, dec, 511.5, 511.5, 0.53, 0, 0));
        CHECK_OK(clred_dimage_upload(ctx, &img, &d[i]));
        if (i == 0)
            first = img;
        else
            clred_image_free(&img);
    }
    clred_stack_opts so = clred_stack_defaults();
    so.method = CLRED_REGISTER_STARS;
    so.grid = CLRED_GRID_UNION;
    clred_combine_dev_result r;
    clred_alignment al;
    memset(&r, 0, sizeof r);
    memset(&al, 0, sizeof al);
    CHECK_OK(clred_stack_dev(ctx, (const clred_dimage *const *)d, 3, &so, &r, &al));
    if (r.image) {
        clred_image stack;
        CHECK_OK(clred_dimage_download(r.image, &stack));
        printf("CAFOS: union grid %zu x %zu, offset (%g, %g)\n", al.geometry.width, al.geometry.height,
               al.geometry.ox, al.geometry.oy);
        clred_transform onto = al.to_ref[0];
        onto.m[2] += al.geometry.ox;
        onto.m[5] += al.geometry.oy;
        double exact = exact_error(first.header, stack.header, &onto, first.width, first.height);
        CHECK_MSG(exact < 1e-6, "CAFOS: the stack's WCS is off the reference's by %.3g arcsec", exact);
        clred_source *a = NULL, *b = NULL;
        size_t na = 0, nb = 0, np = 0;
        CHECK_OK(clred_detect_stars(ctx, &first, NULL, &a, &na));
        CHECK_OK(clred_detect_stars(ctx, &stack, NULL, &b, &nb));
        double med = sky_agreement(first.header, a, na, stack.header, b, nb, &onto, &np);
        printf("CAFOS: %zu stars in the reference, %zu in the stack, %zu pairs, median sky distance %.4f px\n", na,
               nb, np, med);
        CHECK(np >= 20);
        /* Three frames registered to ~0.05 px; seeing ~1.5" over 0.53" px. */
        CHECK_MSG(med < 0.15, "CAFOS: stars' sky positions differ by %.3f px (median)", med);
        free(a);
        free(b);
        clred_image_free(&stack);
    }
    clred_combine_dev_result_free(&r);
    clred_alignment_free(&al);
    for (int i = 0; i < 3; i++)
        clred_dimage_free(d[i]);
    clred_image_free(&first);
}

int main(void)
{
    harness_data("nircam/ref_jw01324_f200w.fits");
    harness_data("cafos/science/NGC2420/V/uamA_0031.fits");
    clred_ctx *ctx = harness_ctx();
    nircam(ctx);
    cafos(ctx);
    clred_ctx_destroy(ctx);
    return harness_finish();
}
