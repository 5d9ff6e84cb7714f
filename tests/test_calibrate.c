/* The fused calibration kernel (kernels/calibrate.cl: calibrate_frame) and
 * clred_calibrate / the calibrator against the double reference
 * (tests/reference/calibrate_ref.c), in both accumulation precisions: NaN
 * in raw, saturation on raw values, zero/negative/NaN flats, masked master
 * pixels, bad-pixel maps, odd sizes, gain and electrons, the variance
 * formula by hand, the errors for bad inputs, and (in double only) a master
 * dark. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calibrate_ref.h"
#include "harness.h"

/* ------------------------------------------------------------- fixtures */

static void fill_master(clred_image *m, size_t w, size_t h, harness_rng *rng, double level, double noise,
                        double var_level, uint16_t bits)
{
    clred_image_alloc(m, w, h, var_level > 0, bits != 0);
    for (size_t i = 0; i < w * h; i++) {
        m->sci[i] = (float)(level + noise * harness_normal(rng));
        if (m->var)
            m->var[i] = (float)(var_level * (0.5 + harness_uniform(rng)));
        if (m->mask && harness_uniform(rng) < 0.05)
            m->mask[i] = (uint16_t)(bits & (1u << (unsigned)(harness_uniform(rng) * 8)));
    }
}

/* A raw frame: overscan columns near `bias_level` with a slope along the
 * rows, a sky with stars elsewhere, some NaN and some saturated pixels. */
static void fill_raw(clred_image *raw, size_t w, size_t h, harness_rng *rng, double bias_level)
{
    clred_image_alloc(raw, w, h, 0, 0);
    raw->header = clred_header_new();
    for (size_t y = 0; y < h; y++)
        for (size_t x = 0; x < w; x++) {
            double v = bias_level + 0.02 * (double)y + 3.0 * harness_normal(rng);
            if (x >= 10)
                v += 400.0 + 200.0 * harness_uniform(rng);
            float f = (float)floor(v);
            double u = harness_uniform(rng);
            if (u < 0.01)
                f = NAN;
            else if (u < 0.02)
                f = 65535.0f;
            raw->sci[y * w + x] = f;
        }
}

/* Sum of the magnitudes of the terms of the signal raw - overscan - bias -
 * dark * t (ADU, before the flat): what float rounding is relative to. */
static double signal_magnitude(const ref_calib *c, size_t i, size_t x, size_t y)
{
    size_t ry = c->y0 + y;
    double m = fabs((double)c->raw[ry * c->raw_width + c->x0 + x]);
    if (c->overscan)
        m += fabs(c->overscan[ry]);
    if (c->bias)
        m += fabs((double)c->bias[i]);
    if (c->dark)
        m += fabs((double)c->dark[i] * c->exptime);
    return m;
}

/* Compares an output with the reference. The device gets float-rounded
 * parameters (gain, read noise^2, t, scale: 6e-8 each) and stores float
 * (6e-8); with float accumulation each of the ~4 subtractions of the signal
 * rounds at 6e-8 of the operands' magnitude M. So the signal is good to
 * e = 1e-6 * M (ADU) and sci to 1e-6 * |sci| + e * scale / f. The variance
 * (~10 operations, all terms positive) is good to 2e-6 * |var| plus what e
 * does through the photon term (1/gain per ADU) and the flat term
 * (2 |signal| var_f / f^2), both / f^2 and * scale^2. Masks must be equal. */
static int compare(const clred_image *out, const ref_calib *c, const char *what)
{
    size_t n = c->width * c->height;
    double *sci = malloc(n * sizeof *sci), *var = malloc(n * sizeof *var);
    uint16_t *mask = malloc(n * sizeof *mask);
    ref_calibrate(c, sci, var, mask);
    int bad = 0;
    CHECK_MSG(out->width == c->width && out->height == c->height, "%s: shape %zu x %zu, expected %zu x %zu", what,
              out->width, out->height, c->width, c->height);
    if (out->width != c->width || out->height != c->height || !out->var || !out->mask) {
        CHECK_MSG(0, "%s: output lacks VAR or MASK, or has the wrong shape", what);
        free(sci), free(var), free(mask);
        return 1;
    }
    for (size_t y = 0; y < c->height; y++)
        for (size_t x = 0; x < c->width; x++) {
            size_t i = y * c->width + x;
            double f = c->flat ? fabs((double)c->flat[i]) : 1.0, k = fabs(c->out_scale);
            double e = 1e-6 * signal_magnitude(c, i, x, y);
            double signal = isfinite(sci[i]) ? fabs(sci[i]) / k * f : 0.0;
            double fv = c->flat_var ? fabs((double)c->flat_var[i]) : 0.0;
            double tol_s = 1e-6 * fabs(sci[i]) + e * k / f;
            double tol_v = 2e-6 * fabs(var[i]) + e * (1.0 / c->gain + 2.0 * signal * fv / (f * f)) / (f * f) * k * k;
            int ok_s = (isnan(sci[i]) && isnan(out->sci[i])) || fabs(out->sci[i] - sci[i]) <= tol_s;
            int ok_v = (isnan(var[i]) && isnan(out->var[i])) || fabs(out->var[i] - var[i]) <= tol_v;
            int ok_m = out->mask[i] == mask[i];
            if (!(ok_s && ok_v && ok_m)) {
                if (bad < 5)
                    fprintf(stderr, "%s: (%zu,%zu) sci %.9g vs %.9g, var %.9g vs %.9g, mask %u vs %u\n", what, x, y,
                            out->sci[i], sci[i], out->var[i], var[i], out->mask[i], mask[i]);
                bad++;
            }
        }
    CHECK_MSG(bad == 0, "%s: %d of %zu pixels differ from the reference", what, bad, n);
    free(sci), free(var), free(mask);
    return bad;
}

static int count_mask(const clred_image *img, uint16_t bit)
{
    int n = 0;
    for (size_t i = 0; i < img->width * img->height; i++)
        n += (img->mask[i] & bit) != 0;
    return n;
}

static int header_has(const clred_header *h, const char *text)
{
    for (size_t i = 0; i < clred_header_count(h); i++)
        if (strstr(clred_header_card(h, i), text))
            return 1;
    return 0;
}

/* ------------------------------------------------------------ the cases */

/* Every master with VAR and MASK, a bad-pixel map, overscan, trim, header
 * EXPTIME, zero/negative/NaN flat pixels (override), in ADU and electrons. */
static void test_full(clred_ctx *ctx)
{
    harness_rng rng = {7};
    const size_t rw = 77, rh = 53, x0 = 10, x1 = 75, y0 = 1, y1 = 52, w = x1 - x0, h = y1 - y0;
    clred_image raw, bias, dark, flat, bpm;
    fill_raw(&raw, rw, rh, &rng, 1000.0);
    clred_header_set_double(raw.header, "EXPTIME", 37.5, NULL);
    fill_master(&bias, w, h, &rng, 20.0, 2.0, 0.5, CLRED_MASK_BAD | CLRED_MASK_SATURATED);
    fill_master(&dark, w, h, &rng, 0.3, 0.1, 0.01, CLRED_MASK_BAD);
    fill_master(&flat, w, h, &rng, 1.0, 0.05, 1e-4, CLRED_MASK_BAD | CLRED_MASK_CLIPPED);
    clred_image_alloc(&bpm, w, h, 0, 1);
    for (size_t i = 0; i < w * h; i += 37)
        bpm.mask[i] = 1;
    flat.sci[5] = 0.0f;
    flat.sci[17] = -0.5f;
    flat.sci[w + 3] = NAN;
    flat.mask[w + 3] |= CLRED_MASK_NO_DATA;
    dark.sci[2 * w + 4] = NAN; /* a NaN master pixel, unflagged */

    clred_masters masters = {&bias, &dark, &flat, &bpm, "bias.fits", "dark.fits", "flat.fits", "bpm.fits"};
    clred_calib_opts o = clred_calib_defaults();
    o.overscan = CLRED_OVERSCAN_MEDIAN;
    o.biassec = (clred_section){2, 8, 0, rh, 1};
    o.trimsec = (clred_section){x0, x1, y0, y1, 1};
    o.gain = 1.7;
    o.readnoise = 4.5;
    o.saturation = 60000;

    /* a zero flat without override: a clear error naming the flat */
    clred_image out;
    CHECK(clred_calibrate(ctx, &raw, &masters, &o, &out) == CLRED_ERR_INPUT);
    CHECK(strstr(clred_last_error(), "flat.fits") && strstr(clred_last_error(), "zero or negative"));
    CHECK(out.sci == NULL);

    o.override_checks = 1;
    double *os = malloc(rh * sizeof *os);
    ref_overscan_row_median(raw.sci, rw, rh, 2, 8, 0, rh, os);
    ref_calib c = {raw.sci, rw, rh, os, x0, y0, w, h, bias.sci, bias.var, bias.mask, dark.sci, dark.var, dark.mask,
                   flat.sci, flat.var, flat.mask, bpm.mask, 1.7, 4.5, 37.5, 60000, 1.0, 1};
    for (int electrons = 0; electrons <= 1; electrons++) {
        o.to_electrons = electrons;
        c.out_scale = electrons ? 1.7 : 1.0;
        CHECK_OK(clred_calibrate(ctx, &raw, &masters, &o, &out));
        compare(&out, &c, electrons ? "full pipeline, electrons" : "full pipeline, ADU");
        /* the edge cases really occurred */
        CHECK(count_mask(&out, CLRED_MASK_SATURATED) > 0);
        CHECK(count_mask(&out, CLRED_MASK_NO_DATA) >= 4);
        CHECK(out.mask[5] & CLRED_MASK_NO_DATA);
        CHECK(out.mask[17] & CLRED_MASK_NO_DATA);
        CHECK(out.mask[0] & CLRED_MASK_BAD);
        CHECK(isnan(out.sci[5]) && isnan(out.var[17]));
        CHECK(header_has(out.header, "bias subtracted: bias.fits"));
        CHECK(header_has(out.header, "dark x 37.5 s subtracted: dark.fits"));
        CHECK(header_has(out.header, "flat.fits"));
        CHECK(!header_has(out.header, "BIASSEC"));
        char unit[32] = "";
        CHECK(clred_header_get_string(out.header, "BUNIT", unit, sizeof unit));
        CHECK(strcmp(unit, electrons ? "electron" : "adu") == 0);
        clred_image_free(&out);
    }
    free(os);
    clred_image_free(&raw);
    clred_image_free(&bias);
    clred_image_free(&dark);
    clred_image_free(&flat);
    clred_image_free(&bpm);
}

/* The variance formula by hand for two pixels, independent of the reference:
 * raw 1500, bias 500 (var 4), dark 2 ADU/s (var 0.01) for 10 s,
 * flat 0.8 (var 1e-4), gain 2, read noise 6:
 *   signal = 1500 - 500 - 20 = 980, sci = 980 / 0.8 = 1225
 *   var_s  = (980 * 2 + 36) / 4 + 4 + 100 * 0.01 = 504
 *   var    = 504 / 0.64 + 1225^2 * 1e-4 / 0.64 = 787.5 + 234.47265625
 * and raw 400: signal 400 - 500 - 20 = -120 (sci -150) is clamped to 0 for
 * the photon noise:
 *   var = (36 / 4 + 4 + 1) / 0.64 + 150^2 * 1e-4 / 0.64 */
static void test_variance_by_hand(clred_ctx *ctx)
{
    clred_image raw, bias, dark, flat;
    clred_image_alloc(&raw, 2, 1, 0, 0);
    clred_image_alloc(&bias, 2, 1, 1, 0);
    clred_image_alloc(&dark, 2, 1, 1, 0);
    clred_image_alloc(&flat, 2, 1, 1, 0);
    raw.sci[0] = 1500, raw.sci[1] = 400;
    for (int i = 0; i < 2; i++) {
        bias.sci[i] = 500, bias.var[i] = 4;
        dark.sci[i] = 2, dark.var[i] = 0.01f;
        flat.sci[i] = 0.8f, flat.var[i] = 1e-4f;
    }
    clred_masters m = {&bias, &dark, &flat, NULL, NULL, NULL, NULL, NULL};
    clred_calib_opts o = clred_calib_defaults();
    o.gain = 2, o.readnoise = 6, o.exptime = 10;
    clred_image out;
    CHECK_OK(clred_calibrate(ctx, &raw, &m, &o, &out));
    /* float32 output of values ~1e3: 1e-7 relative, with float parameters 5e-7 */
    if (out.sci) {
        CHECK_NEAR(out.sci[0], 1225.0, 1225.0 * 5e-7);
        CHECK_NEAR(out.var[0], 787.5 + 234.47265625, 1022.0 * 5e-7);
        CHECK_NEAR(out.sci[1], -150.0, 150.0 * 5e-7);
        CHECK_NEAR(out.var[1], 14.0 / 0.64 + 22500.0 * 1e-4 / 0.64, 25.4 * 5e-7);
        CHECK(out.mask[0] == 0 && out.mask[1] == 0);
    }
    clred_image_free(&out);
    o.to_electrons = 1;
    CHECK_OK(clred_calibrate(ctx, &raw, &m, &o, &out));
    if (out.sci) {
        CHECK_NEAR(out.sci[0], 2450.0, 2450.0 * 5e-7);
        CHECK_NEAR(out.var[0], 4.0 * 1021.97265625, 4088.0 * 5e-7);
        double g = 0;
        CHECK(clred_header_get_double(out.header, "GAIN", &g) && g == 1.0);
    }
    clred_image_free(&out);
    clred_image_free(&raw);
    clred_image_free(&bias);
    clred_image_free(&dark);
    clred_image_free(&flat);
}

/* Sizes that are not multiples of any work-group size, no masters, header
 * GAIN/RDNOISE/SATURATE; one calibrator reused across shapes (its buffers
 * grow and shrink in use). A row wider than a row launch's 256 work-items
 * cover at 16 pixels each (4100): the kernel's pixels per work-item and the
 * host's count of work-items must agree. */
static void test_sizes(clred_ctx *ctx)
{
    const size_t shapes[][2] = {{1, 1}, {1, 9}, {13, 1}, {257, 3}, {300, 200}, {64, 48}, {31, 7}, {4100, 2}};
    harness_rng rng = {99};
    clred_calib_opts o = clred_calib_defaults();
    clred_calibrator *cal;
    CHECK_OK(clred_calibrator_create(ctx, NULL, &o, &cal));
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        size_t w = shapes[s][0], h = shapes[s][1];
        clred_image raw;
        fill_raw(&raw, w, h, &rng, 500.0);
        clred_header_set_double(raw.header, "GAIN", 2.5, NULL);
        clred_header_set_double(raw.header, "RDNOISE", 3.0, NULL);
        clred_header_set_double(raw.header, "SATURATE", 30000, NULL);
        clred_image out;
        CHECK_OK(clred_calibrator_apply(cal, &raw, "sizes.fits", &out));
        ref_calib c = {raw.sci, w, h, NULL, 0, 0, w, h, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                       2.5, 3.0, 0.0, 30000, 1.0, 1};
        char what[64];
        snprintf(what, sizeof what, "no masters %zu x %zu", w, h);
        compare(&out, &c, what);
        clred_image_free(&out);
        clred_image_free(&raw);
    }
    clred_calibrator_free(cal);
}

/* A calibrator keeps its masters on the device: several frames through one
 * calibrator equal separate clred_calibrate calls and the reference. */
static void test_many_frames(clred_ctx *ctx)
{
    harness_rng rng = {3};
    const size_t w = 45, h = 29;
    clred_image bias, flat;
    fill_master(&bias, w, h, &rng, 1000.0, 3.0, 1.0, CLRED_MASK_BAD);
    fill_master(&flat, w, h, &rng, 1.0, 0.1, 0.0, 0);
    clred_masters m = {&bias, NULL, &flat, NULL, "b", NULL, "f", NULL};
    clred_calib_opts o = clred_calib_defaults();
    o.gain = 1.3, o.readnoise = 2.0;
    clred_calibrator *cal;
    CHECK_OK(clred_calibrator_create(ctx, &m, &o, &cal));
    for (int f = 0; f < 3; f++) {
        clred_image raw, out, once;
        fill_raw(&raw, w, h, &rng, 1000.0);
        CHECK_OK(clred_calibrator_apply(cal, &raw, "frame", &out));
        CHECK_OK(clred_calibrate(ctx, &raw, &m, &o, &once));
        ref_calib c = {raw.sci, w, h, NULL, 0, 0, w, h, bias.sci, bias.var, bias.mask, NULL, NULL, NULL, flat.sci,
                       NULL, NULL, NULL, 1.3, 2.0, 0.0, 0, 1.0, 1};
        compare(&out, &c, "calibrator frame");
        int same = out.sci && once.sci && memcmp(out.sci, once.sci, w * h * sizeof(float)) == 0 &&
                   memcmp(out.mask, once.mask, w * h * sizeof(uint16_t)) == 0;
        CHECK_MSG(same, "frame %d: the calibrator and clred_calibrate differ", f);
        clred_image_free(&raw);
        clred_image_free(&out);
        clred_image_free(&once);
    }
    clred_calibrator_free(cal);
    clred_image_free(&bias);
    clred_image_free(&flat);
}

/* Bad inputs: clear errors that name the file. */
static void test_errors(clred_ctx *ctx)
{
    harness_rng rng = {11};
    clred_image raw, bias, dark, small;
    fill_raw(&raw, 40, 30, &rng, 100.0);
    fill_master(&bias, 40, 30, &rng, 100.0, 1.0, 0.0, 0);
    fill_master(&dark, 40, 30, &rng, 1.0, 0.1, 0.0, 0);
    fill_master(&small, 39, 30, &rng, 1.0, 0.1, 0.0, 0);
    clred_calib_opts o = clred_calib_defaults();
    clred_image out;
    clred_calibrator *cal;

    /* no EXPTIME with a dark: names the raw frame */
    clred_masters m = {&bias, &dark, NULL, NULL, "mbias.fits", "mdark.fits", NULL, NULL};
    CHECK_OK(clred_calibrator_create(ctx, &m, &o, &cal));
    CHECK(clred_calibrator_apply(cal, &raw, "sci_007.fits", &out) == CLRED_ERR_INPUT);
    CHECK(strstr(clred_last_error(), "sci_007.fits") && strstr(clred_last_error(), "EXPTIME"));
    CHECK(out.sci == NULL);
    /* an EXPTIME in the header, or an option, is enough */
    clred_header_set_double(raw.header, "EXPTIME", 12.0, NULL);
    CHECK_OK(clred_calibrator_apply(cal, &raw, "sci_007.fits", &out));
    clred_image_free(&out);
    clred_calibrator_free(cal);

    /* a raw frame whose trimmed shape differs from the masters' */
    o.trimsec = (clred_section){1, 40, 0, 30, 1};
    CHECK_OK(clred_calibrator_create(ctx, &m, &o, &cal));
    CHECK(clred_calibrator_apply(cal, &raw, "sci_008.fits", &out) == CLRED_ERR_INPUT);
    CHECK(strstr(clred_last_error(), "sci_008.fits") && strstr(clred_last_error(), "mbias.fits") &&
          strstr(clred_last_error(), "39 x 30"));
    clred_calibrator_free(cal);
    o = clred_calib_defaults();

    /* masters of different shapes */
    clred_masters mm = {&bias, NULL, &small, NULL, "mbias.fits", NULL, "mflat.fits", NULL};
    CHECK(clred_calibrator_create(ctx, &mm, &o, &cal) == CLRED_ERR_INPUT);
    CHECK(strstr(clred_last_error(), "mflat.fits") && strstr(clred_last_error(), "mbias.fits"));
    CHECK(cal == NULL);

    /* a non-positive GAIN in the header */
    clred_header_set_double(raw.header, "GAIN", 0.0, NULL);
    CHECK(clred_calibrate(ctx, &raw, NULL, &o, &out) == CLRED_ERR_INPUT);
    CHECK(strstr(clred_last_error(), "GAIN") != NULL);

    clred_image_free(&raw);
    clred_image_free(&bias);
    clred_image_free(&dark);
    clred_image_free(&small);
}

/* A bad-pixel map given as plain pixels (no mask plane): nonzero = BAD. */
static void test_bpm_pixels(clred_ctx *ctx)
{
    harness_rng rng = {5};
    clred_image raw, bpm, out;
    fill_raw(&raw, 20, 10, &rng, 100.0);
    clred_image_alloc(&bpm, 20, 10, 0, 0);
    bpm.sci[3] = 1.0f;
    bpm.sci[150] = NAN;
    clred_masters m = {NULL, NULL, NULL, &bpm, NULL, NULL, NULL, "bpm.fits"};
    CHECK_OK(clred_calibrate(ctx, &raw, &m, NULL, &out));
    if (out.mask) {
        CHECK(out.mask[3] & CLRED_MASK_BAD);
        CHECK(out.mask[150] & CLRED_MASK_BAD);
        CHECK(!(out.mask[4] & CLRED_MASK_BAD));
    }
    clred_image_free(&out);
    clred_image_free(&raw);
    clred_image_free(&bpm);
}

/* clred_master_dark on noisy frames against the reference: per frame
 * (raw - bias) / t with variance ((max(s, 0) g + rn^2) / g^2) / t^2 (the bias's
 * own variance enters later, in the science calibration), then the mean of
 * the frames with a usable value and sum(var) / k^2. A NaN raw pixel leaves
 * its frame out of that pixel. Then the errors: mixed EXPTIME, wrong IMAGETYP. */
static void test_master_dark(clred_ctx *ctx)
{
    const char *dir = harness_tmpdir("test_calibrate");
    const size_t w = 50, h = 40, n = w * h;
    const double t = 20.0, gain = 2.0, rn = 5.0;
    harness_rng rng = {77};
    clred_image bias;
    fill_master(&bias, w, h, &rng, 300.0, 2.0, 1.0, 0);
    char paths[4][4096];
    clred_image raws[3];
    for (int k = 0; k < 4; k++) {
        clred_image img;
        clred_image_alloc(&img, w, h, 0, 0);
        img.header = clred_header_new();
        for (size_t i = 0; i < n; i++)
            img.sci[i] = (float)(bias.sci[i] + 1.5 * t + 3.0 * harness_normal(&rng));
        if (k == 1)
            img.sci[77] = NAN;
        clred_header_set_double(img.header, "EXPTIME", k == 3 ? 2 * t : t, NULL);
        clred_header_set_string(img.header, "IMAGETYP", "DARK", NULL);
        snprintf(paths[k], sizeof paths[k], "%s/dark_%d.fits", dir, k);
        CHECK_OK(clred_image_write(paths[k], &img, 1));
        if (k < 3)
            raws[k] = img;
        else
            clred_image_free(&img);
    }
    clred_calib_opts o = clred_calib_defaults();
    o.gain = gain, o.readnoise = rn;
    clred_combine_opts co = clred_combine_defaults();
    const char *p3[3] = {paths[0], paths[1], paths[2]};
    clred_image dark;
    CHECK_OK(clred_master_dark(ctx, p3, 3, &bias, &o, &co, &dark));
    if (dark.sci && dark.var) {
        int bad = 0;
        for (size_t i = 0; i < n; i++) {
            double sum = 0, var = 0, k = 0, mag = 0;
            for (int f = 0; f < 3; f++) {
                double s = (double)raws[f].sci[i] - bias.sci[i];
                if (!isfinite(s))
                    continue;
                sum += s / t;
                var += (fmax(s, 0.0) * gain + rn * rn) / (gain * gain) / (t * t);
                mag += (fabs((double)raws[f].sci[i]) + fabs((double)bias.sci[i])) / t;
                k++;
            }
            /* float planes and float accumulation: 1e-6 of the magnitudes */
            double mean = sum / k, v = var / (k * k);
            if (!(fabs(dark.sci[i] - mean) <= 1e-6 * mag && fabs(dark.var[i] - v) <= 2e-6 * v))
                bad++;
        }
        CHECK_MSG(bad == 0, "master dark: %d of %zu pixels differ from the reference", bad, n);
        double e = 0;
        CHECK(clred_header_get_double(dark.header, "EXPTIME", &e) && e == 1.0);
    }
    clred_image_free(&dark);

    /* a dark of another exposure time: an error naming it, unless overridden */
    const char *mixed[2] = {paths[0], paths[3]};
    CHECK(clred_master_dark(ctx, mixed, 2, &bias, &o, &co, &dark) == CLRED_ERR_INPUT);
    CHECK(strstr(clred_last_error(), "dark_3.fits") && strstr(clred_last_error(), "EXPTIME"));
    o.override_checks = 1;
    CHECK_OK(clred_master_dark(ctx, mixed, 2, &bias, &o, &co, &dark));
    clred_image_free(&dark);
    o.override_checks = 0;
    /* darks are not flats */
    clred_image flat;
    CHECK(clred_master_flat(ctx, p3, 3, &bias, NULL, &o, &co, &flat) == CLRED_ERR_INPUT);
    CHECK(strstr(clred_last_error(), "dark_0.fits") && strstr(clred_last_error(), "IMAGETYP"));
    for (int k = 0; k < 3; k++)
        clred_image_free(&raws[k]);
    clred_image_free(&bias);
}

static void run_all(clred_ctx *ctx)
{
    test_full(ctx);
    test_variance_by_hand(ctx);
    test_sizes(ctx);
    test_many_frames(ctx);
    test_errors(ctx);
    test_bpm_pixels(ctx);
}

int main(void)
{
    clred_ctx *ctx = harness_ctx();
    run_all(ctx);
    /* Once, in double: in float its only new code would be the stack's float
     * accumulation, which test_combine and test_combine_vec check, and here
     * it cost a program variant of its own (the 8-frame combine in float). */
    test_master_dark(ctx);
    clred_ctx_destroy(ctx);
    /* A GPU-like context: the float-accumulation path of the calibration
     * kernels (devices without fp64) and one pixel a work-item (a GPU's
     * preferred width; the first pass ran the CPU's line width, 16 lanes), in
     * one program variant. */
    setenv("CLRED_FLOAT_ACCUM", "1", 1);
    setenv("CLRED_VECTOR_WIDTH", "1", 1);
    ctx = harness_ctx();
    run_all(ctx);
    clred_ctx_destroy(ctx);
    return harness_finish();
}
