/* The device entry points of stats, background, cosmic rays, bad pixels and
 * infill give, bit for bit, what their host wrappers give; and both give the
 * same on the shared-memory path (host arrays borrowed in place) and on the
 * copying path (CLRED_NO_ZERO_COPY=1). The steps' accuracy against double
 * references is tested in test_stats, test_background, test_cosmic and
 * test_badpix; here every result is also checked to be non-trivial, so that
 * agreement cannot come from two paths doing nothing. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "internal.h"

enum { W = 72, H = 56 };

/* Sky with a gradient, noise, a few stars, single-pixel spikes (cosmic rays
 * and hot pixels), a cold column stretch, a saturated star with a bleed,
 * NaNs, and mask bits on some pixels. */
static void make_frame(clred_image *img, int with_var, int with_mask, uint64_t seed)
{
    CHECK_OK(clred_image_alloc(img, W, H, with_var, with_mask));
    harness_rng rng = {seed};
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            double v = 200.0 + 0.5 * x - 0.3 * y + 10.0 * harness_normal(&rng);
            double dx = x - 20.5, dy = y - 30.2;
            v += 800.0 * exp(-(dx * dx + dy * dy) / 4.5);
            img->sci[y * W + x] = (float)v;
            if (img->var)
                img->var[y * W + x] = (float)(100.0 + 0.1 * v);
        }
    for (int i = 0; i < 25; i++) /* spikes */
        img->sci[(3 + (i * 37) % (H - 6)) * W + 3 + (i * 53) % (W - 6)] += 3000.0f + 100.0f * i;
    for (int y = 40; y < 46; y++) /* cold stretch */
        img->sci[y * W + 60] -= 150.0f;
    for (int y = 8; y < 20; y++) /* saturated core and its bleed up the column */
        img->sci[y * W + 45] = y < 11 ? 60000.0f : 40000.0f;
    img->sci[5 * W + 7] = NAN;
    img->sci[50 * W + 66] = NAN;
    if (img->mask) {
        img->mask[10 * W + 10] = CLRED_MASK_BAD;
        img->mask[11 * W + 10] = CLRED_MASK_BAD;
        img->mask[33 * W + 50] = CLRED_MASK_NO_DATA;
        img->mask[2 * W + 2] = CLRED_MASK_EDGE;
    }
}

static void copy_image(const clred_image *src, clred_image *dst)
{
    CHECK_OK(clred_image_alloc(dst, src->width, src->height, src->var != NULL, src->mask != NULL));
    size_t n = src->width * src->height;
    memcpy(dst->sci, src->sci, n * sizeof(float));
    if (src->var)
        memcpy(dst->var, src->var, n * sizeof(float));
    if (src->mask)
        memcpy(dst->mask, src->mask, n * sizeof(uint16_t));
}

/* Bit for bit (NaNs of the same bits included). */
static int same_image(const clred_image *a, const clred_image *b)
{
    size_t n = a->width * a->height;
    if (a->width != b->width || a->height != b->height || !a->var != !b->var || !a->mask != !b->mask)
        return 0;
    return memcmp(a->sci, b->sci, n * sizeof(float)) == 0 &&
           (!a->var || memcmp(a->var, b->var, n * sizeof(float)) == 0) &&
           (!a->mask || memcmp(a->mask, b->mask, n * sizeof(uint16_t)) == 0);
}

static int same_double(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

static int same_stats(const clred_stats *a, const clred_stats *b)
{
    return same_double(a->mean, b->mean) && same_double(a->median, b->median) && same_double(a->std, b->std) &&
           same_double(a->mad, b->mad) && same_double(a->min, b->min) && same_double(a->max, b->max) &&
           a->npix == b->npix && a->nrejected == b->nrejected && a->ninvalid == b->ninvalid &&
           a->iterations == b->iterations;
}

/* What one path produced, kept to compare the two paths. */
typedef struct {
    clred_stats stats[2];
    clred_image bkg, rms, cosmic, infill[3];
    uint16_t badpix[W * H];
    clred_bkg_info bkg_info;
    clred_cosmic_info cosmic_info;
    clred_badpix_info badpix_info;
    size_t nfilled[3];
} results;

static void stats_both(clred_ctx *ctx, results *res)
{
    clred_image img;
    make_frame(&img, 0, 1, 11);
    clred_stats_opts opts[2] = {clred_stats_defaults(), clred_stats_defaults()};
    opts[1].x0 = 5, opts[1].x1 = 60, opts[1].y0 = 7, opts[1].y1 = 41; /* a region: the host sends its rows only */
    opts[1].spread_mad = 1;
    clred_dimage *d;
    CHECK_OK(clred_dimage_upload(ctx, &img, &d));
    for (int i = 0; i < 2; i++) {
        clred_stats host, dev;
        CHECK_OK(clred_image_stats(ctx, &img, &opts[i], &host));
        CHECK_OK(clred_stats_dev(ctx, d, &opts[i], &dev));
        CHECK_MSG(same_stats(&host, &dev), "stats %d: host and device differ (median %.9g vs %.9g, std %.9g vs %.9g)",
                  i, host.median, dev.median, host.std, dev.std);
        CHECK(host.npix > 100 && host.nrejected > 0 && host.ninvalid > 0);
        res->stats[i] = host;
    }
    clred_dimage_free(d);
    clred_image_free(&img);
}

static void background_both(clred_ctx *ctx, results *res)
{
    clred_image img, bkg, rms, dbkg_h, drms_h;
    make_frame(&img, 0, 1, 12);
    clred_bkg_opts o = clred_bkg_defaults();
    o.box_w = 16, o.box_h = 12, o.mask_sources = 1;
    clred_bkg_info hinfo, dinfo;
    CHECK_OK(clred_background(ctx, &img, &o, &bkg, &rms, &hinfo));
    clred_dimage *d, *dbkg = NULL, *drms = NULL;
    CHECK_OK(clred_dimage_upload(ctx, &img, &d));
    CHECK_OK(clred_background_dev(ctx, d, &o, &dbkg, &drms, &dinfo));
    CHECK(dbkg && drms && !clred_dimage_has_var(dbkg) && !clred_dimage_has_mask(dbkg));
    CHECK_OK(clred_dimage_download(dbkg, &dbkg_h));
    CHECK_OK(clred_dimage_download(drms, &drms_h));
    CHECK_MSG(same_image(&bkg, &dbkg_h), "background map: host and device differ");
    CHECK_MSG(same_image(&rms, &drms_h), "rms map: host and device differ");
    CHECK(memcmp(&hinfo, &dinfo, sizeof hinfo) == 0);
    CHECK(hinfo.nmasked_sources > 0 && hinfo.mesh_w == 5 && hinfo.mesh_h == 5);
    CHECK(bkg.sci[(H / 2) * W + W / 2] > 180.0f && bkg.sci[(H / 2) * W + W / 2] < 260.0f);
    CHECK(rms.sci[0] > 5.0f && rms.sci[0] < 20.0f);
    /* one map asked for: the same values */
    clred_dimage_free(drms);
    drms = NULL;
    clred_dimage *dbkg1 = NULL;
    CHECK_OK(clred_background_dev(ctx, d, &o, &dbkg1, NULL, NULL));
    clred_image one;
    CHECK_OK(clred_dimage_download(dbkg1, &one));
    CHECK(same_image(&one, &bkg));
    clred_image_free(&one);
    clred_dimage_free(dbkg1);
    /* without a mask plane */
    clred_image nomask = img;
    nomask.mask = NULL;
    clred_image bkg2;
    CHECK_OK(clred_background(ctx, &nomask, &o, &bkg2, NULL, NULL));
    clred_dimage *dn, *dbkg2;
    CHECK_OK(clred_dimage_upload(ctx, &nomask, &dn));
    CHECK_OK(clred_background_dev(ctx, dn, &o, &dbkg2, NULL, NULL));
    CHECK_OK(clred_dimage_download(dbkg2, &one));
    CHECK(same_image(&one, &bkg2));
    clred_image_free(&one);
    clred_image_free(&bkg2);
    clred_dimage_free(dn);
    clred_dimage_free(dbkg2);

    res->bkg = bkg;
    res->rms = rms;
    res->bkg_info = hinfo;
    clred_image_free(&dbkg_h);
    clred_image_free(&drms_h);
    clred_dimage_free(dbkg);
    clred_dimage_free(d);
    clred_image_free(&img);
}

static void cosmic_both(clred_ctx *ctx, results *res)
{
    clred_image img, host, dres;
    make_frame(&img, 1, 1, 13);
    float *sky = malloc(W * H * sizeof *sky), *var = malloc(W * H * sizeof *var);
    for (int i = 0; i < W * H; i++) {
        sky[i] = 200.0f + 0.5f * (float)(i % W) - 0.3f * (float)(i / W);
        var[i] = 100.0f + 0.1f * sky[i];
    }
    clred_cosmic_opts o = clred_cosmic_defaults();
    o.bkg = sky;
    o.var = var;
    clred_cosmic_info hinfo, dinfo;
    copy_image(&img, &host);
    CHECK_OK(clred_cosmic(ctx, &host, &o, &hinfo));

    clred_image skyimg = {W, H, sky, NULL, NULL, NULL}, varimg = {W, H, var, NULL, NULL, NULL};
    clred_dimage *d, *dsky, *dvar;
    CHECK_OK(clred_dimage_upload(ctx, &img, &d));
    CHECK_OK(clred_dimage_upload(ctx, &skyimg, &dsky));
    CHECK_OK(clred_dimage_upload(ctx, &varimg, &dvar));
    /* host arrays in the options of the device call are a usage error */
    CHECK(clred_cosmic_dev(ctx, d, dsky, dvar, &o, &dinfo) == CLRED_ERR_USAGE);
    CHECK(strstr(clred_last_error(), "opts->bkg") != NULL);
    o.bkg = o.var = NULL;
    CHECK_OK(clred_cosmic_dev(ctx, d, dsky, dvar, &o, &dinfo));
    CHECK_OK(clred_dimage_download(d, &dres));
    CHECK_MSG(same_image(&host, &dres), "cosmic: host and device differ");
    CHECK(hinfo.ncosmic == dinfo.ncosmic && hinfo.iterations == dinfo.iterations);
    CHECK(hinfo.ncosmic >= 20 && !same_image(&host, &img));

    /* without sky, variance or mask: the mask plane is added on both */
    clred_image bare, bare_host;
    copy_image(&img, &bare);
    free(bare.var), bare.var = NULL;
    free(bare.mask), bare.mask = NULL;
    copy_image(&bare, &bare_host);
    clred_cosmic_info i1, i2;
    CHECK_OK(clred_cosmic(ctx, &bare_host, NULL, &i1));
    clred_dimage *db;
    CHECK_OK(clred_dimage_upload(ctx, &bare, &db));
    CHECK_OK(clred_cosmic_dev(ctx, db, NULL, NULL, NULL, &i2));
    clred_image bare_dev;
    CHECK_OK(clred_dimage_download(db, &bare_dev));
    CHECK(bare_host.mask && same_image(&bare_host, &bare_dev) && i1.ncosmic == i2.ncosmic && i1.ncosmic > 0);
    clred_image_free(&bare);
    clred_image_free(&bare_host);
    clred_image_free(&bare_dev);
    clred_dimage_free(db);

    res->cosmic = host;
    res->cosmic_info = hinfo;
    clred_image_free(&dres);
    clred_dimage_free(d);
    clred_dimage_free(dsky);
    clred_dimage_free(dvar);
    clred_image_free(&img);
    free(sky);
    free(var);
}

static void badpix_both(clred_ctx *ctx, results *res)
{
    clred_image img;
    make_frame(&img, 0, 1, 14);
    clred_badpix_opts o = clred_badpix_defaults();
    o.saturation = 50000.0;
    /* the host or-s into the caller's array: start from the frame's mask */
    memcpy(res->badpix, img.mask, sizeof res->badpix);
    clred_badpix_info hinfo, dinfo;
    CHECK_OK(clred_find_bad_pixels(ctx, &img, &o, res->badpix, &hinfo));
    res->badpix_info = hinfo;
    CHECK(hinfo.nhot >= 20 && hinfo.ncold > 0 && hinfo.nsaturated > 0 && hinfo.nbleed > 0);
    CHECK(res->badpix[2 * W + 2] == CLRED_MASK_EDGE); /* or-ed, not overwritten */
    /* target = the frame itself, mask or-ed in place */
    clred_dimage *d;
    CHECK_OK(clred_dimage_upload(ctx, &img, &d));
    CHECK_OK(clred_find_bad_pixels_dev(ctx, d, &o, d, &dinfo));
    clred_image out;
    CHECK_OK(clred_dimage_download(d, &out));
    CHECK_MSG(memcmp(out.mask, res->badpix, sizeof res->badpix) == 0, "bad pixels: host and device masks differ");
    CHECK(memcmp(out.sci, img.sci, W * H * sizeof(float)) == 0);
    CHECK(memcmp(&hinfo, &dinfo, sizeof hinfo) == 0);
    clred_image_free(&out);
    /* a separate target without a mask: the plane is added */
    clred_dimage *t;
    CHECK_OK(clred_dimage_create(ctx, W, H, 0, 0, &t));
    CHECK_OK(clred_find_bad_pixels_dev(ctx, d, &o, t, NULL));
    CHECK(clred_dimage_has_mask(t));
    uint16_t *fresh = calloc(W * H, sizeof *fresh);
    CHECK_OK(clred_find_bad_pixels(ctx, &img, &o, fresh, NULL));
    CHECK_OK(clred_dimage_download(t, &out));
    CHECK(memcmp(out.mask, fresh, W * H * sizeof *fresh) == 0);
    clred_image_free(&out);
    free(fresh);
    clred_dimage_free(t);
    clred_dimage_free(d);
    clred_image_free(&img);
}

static void infill_both(clred_ctx *ctx, results *res)
{
    clred_image img;
    make_frame(&img, 1, 1, 15);
    static const clred_infill_method methods[3] = {CLRED_INFILL_MEDIAN, CLRED_INFILL_LINEAR_ROW,
                                                   CLRED_INFILL_LINEAR_COL};
    uint16_t bits = CLRED_MASK_BAD | CLRED_MASK_NO_DATA;
    for (int m = 0; m < 3; m++) {
        clred_image host, dres;
        copy_image(&img, &host);
        size_t hn = 0, dn = 0;
        CHECK_OK(clred_infill(ctx, &host, bits, methods[m], &hn));
        clred_dimage *d;
        CHECK_OK(clred_dimage_upload(ctx, &img, &d));
        CHECK_OK(clred_infill_dev(ctx, d, bits, methods[m], &dn));
        CHECK_OK(clred_dimage_download(d, &dres));
        CHECK_MSG(same_image(&host, &dres), "infill method %d: host and device differ", m);
        CHECK(hn == dn && hn == 5); /* two NaNs, two BAD, one NO_DATA */
        CHECK(isfinite(host.sci[5 * W + 7]) && (host.mask[10 * W + 10] & CLRED_MASK_INTERPOLATED));
        res->infill[m] = host;
        res->nfilled[m] = hn;
        clred_image_free(&dres);
        clred_dimage_free(d);
    }
    /* bits without a mask plane: a usage error on both */
    clred_dimage *d;
    clred_image nomask = img;
    nomask.mask = NULL;
    CHECK_OK(clred_dimage_upload(ctx, &nomask, &d));
    CHECK(clred_infill_dev(ctx, d, bits, CLRED_INFILL_MEDIAN, NULL) == CLRED_ERR_USAGE);
    CHECK(clred_infill(ctx, &nomask, bits, CLRED_INFILL_MEDIAN, NULL) == CLRED_ERR_USAGE);
    clred_dimage_free(d);
    clred_image_free(&img);
}

static void run_all(clred_ctx *ctx, results *res)
{
    stats_both(ctx, res);
    background_both(ctx, res);
    cosmic_both(ctx, res);
    badpix_both(ctx, res);
    infill_both(ctx, res);
}

static void free_results(results *r)
{
    clred_image_free(&r->bkg);
    clred_image_free(&r->rms);
    clred_image_free(&r->cosmic);
    for (int m = 0; m < 3; m++)
        clred_image_free(&r->infill[m]);
}

int main(void)
{
    static results a, b;
    clred_ctx *ctx = harness_ctx();
    int shared_memory = ctx->unified_memory;
    run_all(ctx, &a);
    clred_ctx_destroy(ctx);
    /* the other path: copies where the first borrowed host arrays, or the reverse */
    setenv("CLRED_NO_ZERO_COPY", shared_memory ? "1" : "0", 1);
    ctx = harness_ctx();
    CHECK(ctx->unified_memory == 0 || !shared_memory);
    run_all(ctx, &b);
    clred_ctx_destroy(ctx);

    for (int i = 0; i < 2; i++)
        CHECK_MSG(same_stats(&a.stats[i], &b.stats[i]), "stats %d: the two paths differ", i);
    CHECK_MSG(same_image(&a.bkg, &b.bkg) && same_image(&a.rms, &b.rms), "background: the two paths differ");
    CHECK(memcmp(&a.bkg_info, &b.bkg_info, sizeof a.bkg_info) == 0);
    CHECK_MSG(same_image(&a.cosmic, &b.cosmic), "cosmic: the two paths differ");
    CHECK(a.cosmic_info.ncosmic == b.cosmic_info.ncosmic);
    CHECK_MSG(memcmp(a.badpix, b.badpix, sizeof a.badpix) == 0, "bad pixels: the two paths differ");
    CHECK(memcmp(&a.badpix_info, &b.badpix_info, sizeof a.badpix_info) == 0);
    for (int m = 0; m < 3; m++)
        CHECK_MSG(same_image(&a.infill[m], &b.infill[m]) && a.nfilled[m] == b.nfilled[m],
                  "infill %d: the two paths differ", m);
    free_results(&a);
    free_results(&b);
    return harness_finish();
}
