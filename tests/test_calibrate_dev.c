/* The calibration and the masters on device images against their host
 * versions, bit for bit: clred_calibrate vs a calibrator over masters on the
 * device (clred_calibrator_create_dev / _apply_dev), and each master (bias,
 * dark, flat) from files, from host images and from device images, also
 * under a memory limit that leaves the calibrated frames no room on the
 * device (the host-held path: it succeeds only if taken); with zero-copy
 * and with CLRED_NO_ZERO_COPY=1. Every path runs the same kernels on the
 * same values, so no tolerance applies; the values themselves are checked
 * against the double reference by test_calibrate. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define RW 48 /* raw width: 40 kept columns, then an 8-column overscan */
#define RH 30
#define TW 40
#define NF 4

static int same_bits(const void *a, const void *b, size_t bytes)
{
    return (!a && !b) || (a && b && memcmp(a, b, bytes) == 0);
}

static int same_header(const clred_header *a, const clred_header *b)
{
    if (clred_header_count(a) != clred_header_count(b))
        return 0;
    for (size_t i = 0; i < clred_header_count(a); i++)
        if (strcmp(clred_header_card(a, i), clred_header_card(b, i)) != 0)
            return 0;
    return 1;
}

static void check_same(const clred_image *a, const clred_image *b, const char *what)
{
    size_t n = a->width * a->height;
    CHECK_MSG(a->width == b->width && a->height == b->height, "%s: shapes differ", what);
    if (a->width != b->width || a->height != b->height)
        return;
    CHECK_MSG(same_bits(a->sci, b->sci, n * 4), "%s: SCI differs", what);
    CHECK_MSG(same_bits(a->var, b->var, n * 4), "%s: VAR differs", what);
    CHECK_MSG(same_bits(a->mask, b->mask, n * 2), "%s: MASK differs", what);
    CHECK_MSG(same_header(a->header, b->header), "%s: headers differ", what);
}

/* A raw frame of the given kind with an overscan, BIASSEC/TRIMSEC, and
 * some NaN and saturated pixels. */
static void make_raw(clred_image *raw, const char *type, double exptime, double level, uint64_t seed)
{
    harness_rng rng = {seed};
    clred_image_alloc(raw, RW, RH, 0, 0);
    raw->header = clred_header_new();
    clred_header_set_string(raw->header, "IMAGETYP", type, NULL);
    clred_header_set_double(raw->header, "EXPTIME", exptime, NULL);
    clred_header_set_string(raw->header, "BIASSEC", "[41:48,1:30]", NULL);
    clred_header_set_string(raw->header, "TRIMSEC", "[1:40,1:30]", NULL);
    clred_header_set_double(raw->header, "GAIN", 1.7, NULL);
    clred_header_set_double(raw->header, "RDNOISE", 4.5, NULL);
    clred_header_set_double(raw->header, "SATURATE", 60000, NULL);
    for (size_t y = 0; y < RH; y++)
        for (size_t x = 0; x < RW; x++) {
            double v = 300.0 + 0.1 * (double)y + 4.0 * harness_normal(&rng);
            if (x < TW)
                v += level * (1.0 + 0.002 * (double)x) + sqrt(level + 1.0) * harness_normal(&rng);
            double u = harness_uniform(&rng);
            float f = (float)floor(v);
            if (x < TW && u < 0.01)
                f = NAN;
            else if (x < TW && u < 0.02)
                f = 65000.0f;
            raw->sci[y * RW + x] = f;
        }
}

static void make_set(clred_image *raws, const char *type, double exptime, double level, uint64_t seed)
{
    for (size_t i = 0; i < NF; i++)
        make_raw(&raws[i], type, exptime, level, seed + i);
}

static void write_set(const clred_image *raws, const char *dir, const char *stem, char paths[][512],
                      const char **list)
{
    for (size_t i = 0; i < NF; i++) {
        snprintf(paths[i], 512, "%s/%s_%zu.fits", dir, stem, i);
        CHECK_OK(clred_image_write(paths[i], &raws[i], 1));
        list[i] = paths[i];
    }
}

/* Device copies of host frames; the caller frees them. */
static void upload_set(clred_ctx *ctx, const clred_image *raws, clred_dimage **d)
{
    for (size_t i = 0; i < NF; i++)
        CHECK_OK(clred_dimage_upload(ctx, &raws[i], &d[i]));
}

static void free_dset(clred_dimage **d)
{
    for (size_t i = 0; i < NF; i++)
        clred_dimage_free(d[i]);
}

static void download_free(clred_dimage *d, clred_image *out)
{
    memset(out, 0, sizeof *out);
    if (d)
        CHECK_OK(clred_dimage_download(d, out));
    clred_dimage_free(d);
}

typedef struct {
    clred_image bias, dark, flat;
} masters_set;

/* Every master variant must give the first's bits; the path versions run
 * a second time under a memory limit that forces the host-held path. */
static void check_masters(clred_ctx *ctx, const char *label, const char *dir, masters_set *ref)
{
    char what[200], bpaths[NF][512], dpaths[NF][512], fpaths[NF][512];
    const char *blist[NF], *dlist[NF], *flist[NF];
    const char *names[NF] = {"b0", "b1", NULL, "b3"};
    clred_image braw[NF], draw[NF], fraw[NF];
    make_set(braw, "BIAS", 0.0, 0.0, 100);
    make_set(draw, "DARK", 30.0, 20.0, 200);
    make_set(fraw, "FLAT", 5.0, 20000.0, 300);
    write_set(braw, dir, "bias", bpaths, blist);
    write_set(draw, dir, "dark", dpaths, dlist);
    write_set(fraw, dir, "flat", fpaths, flist);
    clred_calib_opts o = clred_calib_defaults();
    clred_combine_opts co = clred_combine_defaults();
    co.method = CLRED_COMBINE_MEDIAN;
    co.reject = CLRED_REJECT_SIGCLIP;

    masters_set m;
    CHECK_OK(clred_master_bias(ctx, blist, NF, &o, &co, &m.bias));
    CHECK_OK(clred_master_dark(ctx, dlist, NF, &m.bias, &o, &co, &m.dark));
    CHECK_OK(clred_master_flat(ctx, flist, NF, &m.bias, &m.dark, &o, &co, &m.flat));
    CHECK(m.flat.mask != NULL);

    clred_image img;
    snprintf(what, sizeof what, "%s: master bias from host images", label);
    CHECK_OK(clred_master_bias_images(ctx, braw, NF, &o, &co, &img));
    /* the first HISTORY names the first frame: a path here, frame 1 there */
    CHECK_MSG(same_bits(img.sci, m.bias.sci, TW * RH * 4) && same_bits(img.var, m.bias.var, TW * RH * 4) &&
                  same_bits(img.mask, m.bias.mask, TW * RH * 2),
              "%s differs", what);
    clred_image_free(&img);
    snprintf(what, sizeof what, "%s: master dark from host images", label);
    CHECK_OK(clred_master_dark_images(ctx, draw, NF, &m.bias, &o, &co, &img));
    CHECK_MSG(same_bits(img.sci, m.dark.sci, TW * RH * 4) && same_bits(img.mask, m.dark.mask, TW * RH * 2), "%s differs",
              what);
    clred_image_free(&img);
    snprintf(what, sizeof what, "%s: master flat from host images", label);
    CHECK_OK(clred_master_flat_images(ctx, fraw, NF, &m.bias, &m.dark, &o, &co, &img));
    CHECK_MSG(same_bits(img.sci, m.flat.sci, TW * RH * 4) && same_bits(img.var, m.flat.var, TW * RH * 4) &&
                  same_bits(img.mask, m.flat.mask, TW * RH * 2),
              "%s differs", what);
    clred_image_free(&img);

    /* device frames and device masters */
    clred_dimage *bd[NF], *dd[NF], *fd[NF], *mb, *md, *out;
    upload_set(ctx, braw, bd);
    upload_set(ctx, draw, dd);
    upload_set(ctx, fraw, fd);
    CHECK_OK(clred_dimage_upload(ctx, &m.bias, &mb));
    CHECK_OK(clred_dimage_upload(ctx, &m.dark, &md));
    CHECK_OK(clred_master_bias_dev(ctx, (const clred_dimage *const *)bd, names, NF, &o, &co, &out));
    download_free(out, &img);
    snprintf(what, sizeof what, "%s: master bias from device images", label);
    CHECK_MSG(same_bits(img.sci, m.bias.sci, TW * RH * 4) && same_bits(img.var, m.bias.var, TW * RH * 4), "%s differs",
              what);
    clred_image_free(&img);
    CHECK_OK(clred_master_dark_dev(ctx, (const clred_dimage *const *)dd, NULL, NF, mb, &o, &co, &out));
    download_free(out, &img);
    snprintf(what, sizeof what, "%s: master dark from device images", label);
    CHECK_MSG(same_bits(img.sci, m.dark.sci, TW * RH * 4) && same_bits(img.var, m.dark.var, TW * RH * 4), "%s differs",
              what);
    clred_image_free(&img);
    CHECK_OK(clred_master_flat_dev(ctx, (const clred_dimage *const *)fd, NULL, NF, mb, md, &o, &co, &out));
    download_free(out, &img);
    snprintf(what, sizeof what, "%s: master flat from device images", label);
    CHECK_MSG(same_bits(img.sci, m.flat.sci, TW * RH * 4) && same_bits(img.var, m.flat.var, TW * RH * 4) &&
                  same_bits(img.mask, m.flat.mask, TW * RH * 2),
              "%s differs", what);
    clred_image_free(&img);
    free_dset(bd);
    free_dset(dd);
    free_dset(fd);
    clred_dimage_free(mb);
    clred_dimage_free(md);

    /* Under 48 KB the four calibrated frames (4 x 40 x 30 x 10 bytes = 48000
     * bytes) and a raw frame or the masters cannot all be held on the device:
     * only the host-held path succeeds. */
    clred_ctx_set_memory_limit(ctx, 48 * 1024);
    masters_set h;
    CHECK_OK(clred_master_bias(ctx, blist, NF, &o, &co, &h.bias));
    CHECK_OK(clred_master_dark(ctx, dlist, NF, &m.bias, &o, &co, &h.dark));
    CHECK_OK(clred_master_flat(ctx, flist, NF, &m.bias, &m.dark, &o, &co, &h.flat));
    clred_ctx_set_memory_limit(ctx, 0);
    snprintf(what, sizeof what, "%s: host-held master bias", label);
    check_same(&h.bias, &m.bias, what);
    snprintf(what, sizeof what, "%s: host-held master dark", label);
    check_same(&h.dark, &m.dark, what);
    snprintf(what, sizeof what, "%s: host-held master flat", label);
    check_same(&h.flat, &m.flat, what);
    clred_image_free(&h.bias);
    clred_image_free(&h.dark);
    clred_image_free(&h.flat);

    if (ref->bias.sci) {
        snprintf(what, sizeof what, "%s vs the first context: master bias", label);
        check_same(&ref->bias, &m.bias, what);
        snprintf(what, sizeof what, "%s vs the first context: master dark", label);
        check_same(&ref->dark, &m.dark, what);
        snprintf(what, sizeof what, "%s vs the first context: master flat", label);
        check_same(&ref->flat, &m.flat, what);
        clred_image_free(&m.bias);
        clred_image_free(&m.dark);
        clred_image_free(&m.flat);
    } else {
        *ref = m;
    }
    for (size_t i = 0; i < NF; i++) {
        clred_image_free(&braw[i]);
        clred_image_free(&draw[i]);
        clred_image_free(&fraw[i]);
    }
}

/* The science calibration: host calibrate vs a device calibrator, with a
 * bad-pixel map given as pixels and as a mask plane. */
static void check_science(clred_ctx *ctx, const char *label, const masters_set *m)
{
    char what[200];
    clred_image raw, bpm_pix, bpm_mask;
    make_raw(&raw, "OBJECT", 12.0, 3000.0, 900);
    clred_image_alloc(&bpm_pix, TW, RH, 0, 0);
    clred_image_alloc(&bpm_mask, TW, RH, 0, 1);
    for (size_t i = 0; i < TW * RH; i += 37)
        bpm_pix.sci[i] = 1.0f;
    for (size_t i = 5; i < TW * RH; i += 41)
        bpm_mask.mask[i] = CLRED_MASK_BAD;
    const clred_image *bpms[2] = {&bpm_pix, &bpm_mask};
    for (int b = 0; b < 2; b++) {
        clred_calib_opts o = clred_calib_defaults();
        clred_masters hm = {&m->bias, &m->dark, &m->flat, bpms[b], "mbias.fits", "mdark.fits", "mflat.fits",
                            "bpm.fits"};
        clred_image host, via_cal;
        CHECK_OK(clred_calibrate(ctx, &raw, &hm, &o, &host));
        clred_calibrator *cal;
        CHECK_OK(clred_calibrator_create(ctx, &hm, &o, &cal));
        CHECK_OK(clred_calibrator_apply(cal, &raw, "sci.fits", &via_cal));
        clred_calibrator_free(cal);

        clred_dimage *db, *dk, *df, *dbpm, *draw, *dout;
        CHECK_OK(clred_dimage_upload(ctx, &m->bias, &db));
        CHECK_OK(clred_dimage_upload(ctx, &m->dark, &dk));
        CHECK_OK(clred_dimage_upload(ctx, &m->flat, &df));
        if (b == 0)
            CHECK_OK(clred_dimage_upload(ctx, &bpm_pix, &dbpm));
        else {
            CHECK_OK(clred_dimage_create(ctx, TW, RH, 0, 1, &dbpm));
            clred_image tmp;
            CHECK_OK(clred_dimage_download(dbpm, &tmp));
            memcpy(tmp.mask, bpm_mask.mask, TW * RH * 2);
            clred_dimage_free(dbpm);
            CHECK_OK(clred_dimage_upload(ctx, &tmp, &dbpm));
            clred_image_free(&tmp);
        }
        CHECK_OK(clred_dimage_upload(ctx, &raw, &draw));
        clred_masters_dev dm = {db, dk, df, dbpm, "mbias.fits", "mdark.fits", "mflat.fits", "bpm.fits"};
        CHECK_OK(clred_calibrator_create_dev(ctx, &dm, &o, &cal));
        CHECK_OK(clred_calibrator_apply_dev(cal, draw, NULL, &dout));
        clred_image dev;
        download_free(dout, &dev);
        /* a second frame through the same calibrator */
        CHECK_OK(clred_calibrator_apply_dev(cal, draw, NULL, &dout));
        clred_image dev2;
        download_free(dout, &dev2);
        clred_calibrator_free(cal);
        snprintf(what, sizeof what, "%s, bpm as %s: calibrator vs clred_calibrate", label, b ? "mask" : "pixels");
        check_same(&host, &via_cal, what);
        snprintf(what, sizeof what, "%s, bpm as %s: device calibrator vs clred_calibrate", label,
                 b ? "mask" : "pixels");
        check_same(&host, &dev, what);
        check_same(&host, &dev2, what);
        CHECK(dev.width == TW && dev.height == RH && dev.var && dev.mask);
        clred_image_free(&host);
        clred_image_free(&via_cal);
        clred_image_free(&dev);
        clred_image_free(&dev2);
        clred_dimage_free(draw);
        clred_dimage_free(db);
        clred_dimage_free(dk);
        clred_dimage_free(df);
        clred_dimage_free(dbpm);
    }
    clred_image_free(&raw);
    clred_image_free(&bpm_pix);
    clred_image_free(&bpm_mask);
}

static void check_errors(clred_ctx *ctx, const masters_set *m)
{
    clred_dimage *flat, *small;
    clred_image bad = {0};
    clred_image_alloc(&bad, TW, RH, 0, 0);
    for (size_t i = 0; i < TW * RH; i++)
        bad.sci[i] = i == 7 ? -1.0f : 1.0f;
    CHECK_OK(clred_dimage_upload(ctx, &bad, &flat));
    CHECK_OK(clred_dimage_create(ctx, TW - 1, RH, 0, 0, &small));
    clred_calibrator *cal = (clred_calibrator *)1;
    clred_masters_dev dm = {NULL, NULL, flat, NULL, NULL, NULL, "neg_flat.fits", NULL};
    CHECK(clred_calibrator_create_dev(ctx, &dm, NULL, &cal) == CLRED_ERR_INPUT);
    CHECK(cal == NULL && strstr(clred_last_error(), "neg_flat.fits") && strstr(clred_last_error(), "x=7"));
    clred_masters_dev shapes = {small, NULL, flat, NULL, "mbias.fits", NULL, NULL, NULL};
    CHECK(clred_calibrator_create_dev(ctx, &shapes, NULL, &cal) == CLRED_ERR_INPUT);
    CHECK(strstr(clred_last_error(), "mbias.fits") != NULL);
    /* a raw frame whose trimmed shape is not the masters' */
    clred_dimage *db;
    CHECK_OK(clred_dimage_upload(ctx, &m->bias, &db));
    clred_masters_dev ok = {db, NULL, NULL, NULL, "mbias.fits", NULL, NULL, NULL};
    CHECK_OK(clred_calibrator_create_dev(ctx, &ok, NULL, &cal));
    clred_dimage *out = (clred_dimage *)1;
    CHECK(clred_calibrator_apply_dev(cal, small, "sci_9.fits", &out) == CLRED_ERR_INPUT);
    CHECK(out == NULL && strstr(clred_last_error(), "sci_9.fits") && strstr(clred_last_error(), "mbias.fits"));
    clred_calibrator_free(cal);
    /* a raw frame of the wrong kind for a master */
    clred_image raw;
    make_raw(&raw, "FLAT", 0.0, 10.0, 5);
    clred_dimage *dr;
    CHECK_OK(clred_dimage_upload(ctx, &raw, &dr));
    const clred_dimage *frames[1] = {dr};
    const char *names[1] = {"flat_as_bias.fits"};
    CHECK(clred_master_bias_dev(ctx, frames, names, 1, NULL, NULL, &out) == CLRED_ERR_INPUT);
    CHECK(out == NULL && strstr(clred_last_error(), "flat_as_bias.fits") != NULL);
    clred_image_free(&raw);
    clred_dimage_free(dr);
    clred_dimage_free(db);
    clred_dimage_free(flat);
    clred_dimage_free(small);
    clred_image_free(&bad);
}

int main(void)
{
    const char *dir = harness_tmpdir("test_calibrate_dev");
    masters_set ref;
    memset(&ref, 0, sizeof ref);
    clred_ctx *ctx = harness_ctx();
    check_masters(ctx, "zero-copy", dir, &ref);
    check_science(ctx, "zero-copy", &ref);
    check_errors(ctx, &ref);
    clred_ctx_destroy(ctx);
    setenv("CLRED_NO_ZERO_COPY", "1", 1);
    ctx = harness_ctx();
    check_masters(ctx, "no zero-copy", dir, &ref);
    check_science(ctx, "no zero-copy", &ref);
    clred_ctx_destroy(ctx);
    unsetenv("CLRED_NO_ZERO_COPY");
    clred_image_free(&ref.bias);
    clred_image_free(&ref.dark);
    clred_image_free(&ref.flat);
    return harness_finish();
}
