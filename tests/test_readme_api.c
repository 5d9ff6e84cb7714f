/* The README's C example, run as written (files made from a small simulated
 * night): masters, a calibrator, then one frame through calibration, cosmic
 * rays and background on the device and written once. Checks that the
 * device chain equals the same chain on host images, and that the frame
 * crossed the bus at most once each way on the copying path. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "internal.h"

static void chain(clred_ctx *ctx, const char *dir, const char *out_name, clred_image *out, uint64_t counts[2])
{
    char bias_paths[3][600], flat_paths[3][600], raw[600], outp[600];
    const char *bp[3], *fp[3];
    for (int i = 0; i < 3; i++) {
        snprintf(bias_paths[i], sizeof bias_paths[i], "%s/night/bias_%03d.fits", dir, i + 1);
        snprintf(flat_paths[i], sizeof flat_paths[i], "%s/night/flat_%03d.fits", dir, i + 1);
        bp[i] = bias_paths[i];
        fp[i] = flat_paths[i];
    }
    snprintf(raw, sizeof raw, "%s/night/sci_001.fits", dir);
    snprintf(outp, sizeof outp, "%s/%s", dir, out_name);

    clred_image mbias, mflat;
    CHECK_OK(clred_master_bias(ctx, bp, 3, NULL, NULL, &mbias));
    CHECK_OK(clred_master_flat(ctx, fp, 3, &mbias, NULL, NULL, NULL, &mflat));
    clred_masters masters = {.bias = &mbias, .flat = &mflat};

    clred_ctx_timing_reset(ctx);
    /* --- as in the README --- */
    clred_dimage *rawd = NULL, *cal = NULL, *bkg = NULL;
    clred_calibrator *calib = NULL;
    CHECK_OK(clred_calibrator_create(ctx, &masters, NULL, &calib));
    CHECK_OK(clred_dimage_read(ctx, raw, 0, &rawd));
    CHECK_OK(clred_calibrator_apply_dev(calib, rawd, raw, &cal));
    CHECK_OK(clred_cosmic_dev(ctx, cal, NULL, NULL, NULL, NULL));
    CHECK_OK(clred_background_dev(ctx, cal, NULL, &bkg, NULL, NULL));
    CHECK_OK(clred_dimage_write(cal, outp, 1));
    clred_dimage_free(rawd), clred_dimage_free(cal), clred_dimage_free(bkg);
    clred_calibrator_free(calib);
    /* --- */
    counts[0] = ctx->image_uploads;
    counts[1] = ctx->image_downloads;
    CHECK_OK(clred_image_read(outp, 0, out));

    /* the same chain on host images */
    clred_image rawh, calh, bkgh;
    CHECK_OK(clred_image_read(raw, 0, &rawh));
    CHECK_OK(clred_calibrate(ctx, &rawh, &masters, NULL, &calh));
    CHECK_OK(clred_cosmic(ctx, &calh, NULL, NULL));
    CHECK_OK(clred_background(ctx, &calh, NULL, &bkgh, NULL, NULL));
    size_t n = calh.width * calh.height;
    CHECK(out->width == calh.width && out->height == calh.height);
    CHECK(memcmp(out->sci, calh.sci, n * sizeof(float)) == 0);
    CHECK(out->mask && memcmp(out->mask, calh.mask, n * sizeof(uint16_t)) == 0);
    size_t ncr = 0;
    for (size_t i = 0; i < n; i++)
        ncr += (calh.mask[i] & CLRED_MASK_COSMIC_RAY) != 0;
    CHECK_MSG(ncr > 0, "the simulated frame has cosmic rays; none were found");
    clred_image_free(&rawh), clred_image_free(&calh), clred_image_free(&bkgh);
    clred_image_free(&mbias), clred_image_free(&mflat);
}

int main(void)
{
    const char *dir = harness_tmpdir("test_readme_api");
    char night[600];
    snprintf(night, sizeof night, "%s/night", dir);
    clred_sim_opts so = clred_sim_defaults();
    so.width = 96;
    so.height = 80;
    so.nbias = 3, so.ndark = 0, so.nflat = 3, so.nscience = 1, so.nepoch2 = 0;
    so.nstars = 30;
    so.cosmic_rate = 4e-5;
    CHECK_OK(clred_simulate(&so, night, 1));

    clred_ctx *ctx = harness_ctx();
    clred_image a;
    uint64_t counts[2];
    chain(ctx, dir, "cal_a.fits", &a, counts);
    clred_ctx_destroy(ctx);

    /* the copying path: the two masters and the raw frame go up once each,
     * the product comes down once */
    setenv("CLRED_NO_ZERO_COPY", "1", 1);
    ctx = harness_ctx();
    clred_image b;
    chain(ctx, dir, "cal_b.fits", &b, counts);
    CHECK_MSG(counts[0] == 3, "image uploads: %llu", (unsigned long long)counts[0]);
    CHECK_MSG(counts[1] == 1, "image downloads: %llu", (unsigned long long)counts[1]);
    size_t n = a.width * a.height;
    CHECK(memcmp(a.sci, b.sci, n * sizeof(float)) == 0);
    clred_image_free(&a), clred_image_free(&b);
    clred_ctx_destroy(ctx);
    return harness_finish();
}
