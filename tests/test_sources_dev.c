/* Detection and photometry on device images: clred_detect_sources_dev,
 * clred_detect_stars_dev and clred_aperture_photometry_dev give the host
 * functions' catalogs bit for bit, on the zero-copy path and with
 * CLRED_NO_ZERO_COPY=1, with the global background, scalar levels and
 * background / RMS maps. (The catalogs themselves are checked against the
 * double-precision references in test_sources and test_photometry.) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

enum { W = 96, H = 80, NSTARS = 14 };

/* Gaussian stars (two blended, one saturated) on a sloped sky with noise,
 * a variance plane and a mask with a bad column. */
static void make_image(clred_image *img, clred_image *bkg, clred_image *rms)
{
    harness_rng rng = {23};
    clred_image_alloc(img, W, H, 1, 1);
    clred_image_alloc(bkg, W, H, 0, 0);
    clred_image_alloc(rms, W, H, 0, 0);
    double sx[NSTARS], sy[NSTARS], amp[NSTARS];
    for (int s = 0; s < NSTARS; s++) {
        sx[s] = 6 + harness_uniform(&rng) * (W - 12);
        sy[s] = 6 + harness_uniform(&rng) * (H - 12);
        amp[s] = 60 + 900 * harness_uniform(&rng);
    }
    sx[1] = sx[0] + 3.5, sy[1] = sy[0] + 1.0, amp[1] = 0.6 * amp[0];
    amp[2] = 5000;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            size_t i = (size_t)y * W + x;
            double sky = 100.0 + 0.1 * x - 0.05 * y, v = sky;
            for (int s = 0; s < NSTARS; s++)
                v += amp[s] * exp(-0.5 * ((x - sx[s]) * (x - sx[s]) + (y - sy[s]) * (y - sy[s])) / (1.4 * 1.4));
            v += 3.0 * harness_normal(&rng);
            img->sci[i] = (float)(v > 3000 ? 3000 : v);
            img->var[i] = (float)(9.0 + 0.01 * v);
            bkg->sci[i] = (float)sky;
            rms->sci[i] = 3.0f + 0.001f * (float)x;
            if (x == 40)
                img->mask[i] = CLRED_MASK_BAD;
        }
    img->sci[10 * W + 10] = NAN;
}

/* Bit for bit, field by field (the structs' padding is not compared). */
#define SAME(f) (memcmp(&a->f, &b->f, sizeof a->f) == 0)

static int same_source(const clred_source *a, const clred_source *b)
{
    return SAME(x) && SAME(y) && SAME(flux) && SAME(flux_err) && SAME(peak) && SAME(a) && SAME(b) && SAME(theta) &&
           SAME(fwhm) && SAME(ellipticity) && SAME(npix) && SAME(flags);
}

static int same_phot(const clred_phot *a, const clred_phot *b)
{
    return SAME(x) && SAME(y) && SAME(flux) && SAME(flux_err) && SAME(area) && SAME(bkg) && SAME(bkg_rms) &&
           SAME(nannulus) && SAME(mag) && SAME(mag_err) && SAME(flags);
}

static int same_catalog(const clred_source *a, size_t na, const clred_source *b, size_t nb)
{
    if (na != nb)
        return 0;
    for (size_t i = 0; i < na; i++)
        if (!same_source(&a[i], &b[i]))
            return 0;
    return 1;
}

static int same_phots(const clred_phot *a, const clred_phot *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!same_phot(&a[i], &b[i]))
            return 0;
    return 1;
}

typedef struct {
    clred_source *list[3];
    size_t n[3];
    clred_source *stars;
    size_t nstars;
    clred_phot phot[2][NSTARS + 2];
} results;

static void run_all(clred_ctx *ctx, const clred_image *img, const clred_image *bkg, const clred_image *rms,
                    results *r)
{
    clred_dimage *d, *db, *dr;
    CHECK_OK(clred_dimage_upload(ctx, img, &d));
    CHECK_OK(clred_dimage_upload(ctx, bkg, &db));
    CHECK_OK(clred_dimage_upload(ctx, rms, &dr));
    clred_detect_opts o = clred_detect_defaults();
    o.saturation = 2900;
    int32_t *seg_h = calloc((size_t)W * H, sizeof *seg_h), *seg_d = calloc((size_t)W * H, sizeof *seg_d);
    /* 0: global background and RMS; 1: scalar levels; 2: maps */
    for (int c = 0; c < 3; c++) {
        clred_source *dl = NULL;
        size_t dn = 0;
        double bv = c == 1 ? 100.0 : NAN, rv = c == 1 ? 3.0 : 0.0;
        o.segmentation = seg_h;
        CHECK_OK(clred_detect_sources(ctx, img, c == 2 ? bkg : NULL, c == 2 ? rms : NULL, bv, rv, &o, &r->list[c],
                                      &r->n[c]));
        o.segmentation = seg_d;
        CHECK_OK(clred_detect_sources_dev(ctx, d, c == 2 ? db : NULL, c == 2 ? dr : NULL, bv, rv, &o, &dl, &dn));
        CHECK_MSG(same_catalog(r->list[c], r->n[c], dl, dn), "case %d: host (%zu sources) and device (%zu) differ", c,
                  r->n[c], dn);
        CHECK(memcmp(seg_h, seg_d, (size_t)W * H * sizeof *seg_h) == 0);
        /* some stars overlap or sit on the bad column: a sanity bound only */
        CHECK_MSG(r->n[c] >= NSTARS / 2 && r->n[c] <= NSTARS + 3, "case %d: %zu sources for %d stars", c, r->n[c],
                  NSTARS);
        free(dl);
    }
    o.segmentation = NULL;
    clred_source *ds = NULL;
    size_t dns = 0;
    CHECK_OK(clred_detect_stars(ctx, img, NULL, &r->stars, &r->nstars));
    CHECK_OK(clred_detect_stars_dev(ctx, d, NULL, &ds, &dns));
    CHECK(same_catalog(r->stars, r->nstars, ds, dns));
    CHECK(r->nstars > 3 && r->nstars < r->n[0]); /* the saturated and edge/masked ones are left out */
    free(ds);

    /* photometry at the detected positions, plus one off the image and one NaN */
    size_t np = r->n[0] < NSTARS ? r->n[0] : NSTARS;
    double x[NSTARS + 2], y[NSTARS + 2];
    for (size_t i = 0; i < np; i++)
        x[i] = r->list[0][i].x, y[i] = r->list[0][i].y;
    x[np] = -30, y[np] = 5;
    x[np + 1] = NAN, y[np + 1] = 3;
    np += 2;
    clred_phot_opts po = clred_phot_defaults();
    po.radius = 3.5;
    po.annulus_in = 6;
    po.annulus_out = 9;
    clred_phot dev[NSTARS + 2];
    for (int k = 0; k < 2; k++) {
        clred_dimage *pd = d;
        clred_image plain = *img;
        if (k == 1) { /* without variance and mask */
            plain.var = NULL;
            plain.mask = NULL;
            CHECK_OK(clred_dimage_upload(ctx, &plain, &pd));
        }
        CHECK_OK(clred_aperture_photometry(ctx, &plain, x, y, np, &po, r->phot[k]));
        CHECK_OK(clred_aperture_photometry_dev(ctx, pd, x, y, np, &po, dev));
        CHECK_MSG(same_phots(r->phot[k], dev, np), "photometry %d: host and device differ", k);
        CHECK(r->phot[k][0].flux > 0 && (r->phot[k][np - 2].flags & CLRED_SRC_EDGE));
        if (pd != d)
            clred_dimage_free(pd);
    }
    free(seg_h);
    free(seg_d);
    clred_dimage_free(d);
    clred_dimage_free(db);
    clred_dimage_free(dr);
}

static void free_results(results *r)
{
    for (int c = 0; c < 3; c++)
        free(r->list[c]);
    free(r->stars);
}

int main(void)
{
    clred_image img, bkg, rms;
    make_image(&img, &bkg, &rms);
    results a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    clred_ctx *ctx = harness_ctx();
    run_all(ctx, &img, &bkg, &rms, &a);
    clred_ctx_destroy(ctx);
    setenv("CLRED_NO_ZERO_COPY", "1", 1);
    ctx = harness_ctx();
    run_all(ctx, &img, &bkg, &rms, &b);
    clred_ctx_destroy(ctx);
    for (int c = 0; c < 3; c++)
        CHECK_MSG(same_catalog(a.list[c], a.n[c], b.list[c], b.n[c]), "case %d differs between the paths", c);
    CHECK(same_catalog(a.stars, a.nstars, b.stars, b.nstars));
    CHECK(same_phots(a.phot[0], b.phot[0], NSTARS + 2) && same_phots(a.phot[1], b.phot[1], NSTARS + 2));
    free_results(&a);
    free_results(&b);
    clred_image_free(&img);
    clred_image_free(&bkg);
    clred_image_free(&rms);
    return harness_finish();
}
