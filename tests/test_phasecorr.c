/* Phase correlation: known sub-pixel shifts of a Fourier-shifted synthetic
 * star field with noise (RMS error < 0.02 px), a box around one star, NaN and
 * masked pixels, the median-of-stack reference, integer precision, the
 * confidence measure and bad arguments. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fft.h"
#include "harness.h"
#include "register_ref.h"

enum { W = 128, H = 96 };

/* Gaussian stars (sigma 1.6 .. 2.6 px: well sampled, so the Fourier shift of
 * the pixels is the shift of the scene) on a flat sky. They keep 26 px from
 * the edges: the Fourier shift is cyclic and shifts here reach 8 px, and the
 * Tukey taper (16 px) would otherwise weigh a star differently in the two
 * frames, which biases any windowed correlation. */
static void star_field(double *img, harness_rng *rng)
{
    for (size_t i = 0; i < (size_t)W * H; i++)
        img[i] = 100.0;
    for (int s = 0; s < 25; s++) {
        double cx = 26 + harness_uniform(rng) * (W - 52), cy = 26 + harness_uniform(rng) * (H - 52);
        double sig = 1.6 + harness_uniform(rng), amp = 200.0 + 3000.0 * harness_uniform(rng);
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                double r2 = (x - cx) * (x - cx) + (y - cy) * (y - cy);
                img[y * W + x] += amp * exp(-0.5 * r2 / (sig * sig));
            }
    }
}

static void to_image(const double *src, harness_rng *rng, double noise, clred_image *img)
{
    clred_image_alloc(img, W, H, 0, 0);
    for (size_t i = 0; i < (size_t)W * H; i++)
        img->sci[i] = (float)(src[i] + noise * harness_normal(rng));
}

/* For tests/cli_register.sh: frames shifted by (0,0), (2.25,-1.5), (-3.4,0.8). */
static int write_fixtures(const char *dir)
{
    harness_rng rng = {77};
    double *scene = malloc(sizeof(double) * W * H), *moved = malloc(sizeof(double) * W * H);
    star_field(scene, &rng);
    const double sh[3][2] = {{0, 0}, {2.25, -1.5}, {-3.4, 0.8}};
    for (int i = 0; i < 3; i++) {
        ref_fourier_shift(scene, W, H, sh[i][0], sh[i][1], moved);
        clred_image img;
        to_image(moved, &rng, 3.0, &img);
        char path[4096];
        snprintf(path, sizeof path, "%s/star_%d.fits", dir, i);
        if (clred_image_write(path, &img, 1) != CLRED_OK) {
            fprintf(stderr, "%s\n", clred_last_error());
            return 1;
        }
        clred_image_free(&img);
    }
    free(scene);
    free(moved);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--write-fixtures"))
        return write_fixtures(argv[2]);
    clred_ctx *ctx = harness_ctx();
    harness_rng rng = {2024};
    double *scene = malloc(sizeof(double) * W * H), *moved = malloc(sizeof(double) * W * H);
    star_field(scene, &rng);
    clred_image ref;
    to_image(scene, &rng, 3.0, &ref);

    const double shifts[][2] = {{3.27, -1.61}, {-7.83, 4.45}, {0.5, 0.5}, {0.013, -0.021},
                                {-0.77, -6.38}, {7.91, 0.0}, {-2.5, 2.49}, {6.04, -5.96}};
    const size_t nshift = sizeof shifts / sizeof *shifts;
    clred_phasecorr_opts o = clred_phasecorr_defaults();
    double sq = 0.0;
    clred_image frames[9];
    frames[0] = ref;
    for (size_t i = 0; i < nshift; i++) {
        ref_fourier_shift(scene, W, H, shifts[i][0], shifts[i][1], moved);
        to_image(moved, &rng, 3.0, &frames[i + 1]);
        clred_shift sh;
        CHECK_OK(clred_measure_shift(ctx, &ref, &frames[i + 1], &o, &sh));
        double ex = sh.dx - shifts[i][0], ey = sh.dy - shifts[i][1];
        sq += ex * ex + ey * ey;
        CHECK_MSG(sh.psr > 10.0, "shift %zu: PSR %.2f of a true match should be high", i, sh.psr);
    }
    double rms = sqrt(sq / (double)nshift);
    printf("whole-frame RMS error %.4f px over %zu shifts\n", rms, nshift);
    CHECK_MSG(rms < 0.02, "whole-frame RMS error %.4f px (limit 0.02)", rms);

    /* The same against the other backend, on one shift. */
    clred_phasecorr_opts ov = o;
    ov.backend = clred_fft_available(CLRED_FFT_VKFFT) ? CLRED_FFT_VKFFT : CLRED_FFT_CLFFT;
    clred_shift shv;
    CHECK_OK(clred_measure_shift(ctx, &ref, &frames[1], &ov, &shv));
    CHECK_NEAR(shv.dx, shifts[0][0], 0.03);
    CHECK_NEAR(shv.dy, shifts[0][1], 0.03);

    /* Pure phase correlation with a Hann window finds it too, with the
     * sub-pixel bias of whitened noise (see clred.h): 0.15 px. */
    clred_phasecorr_opts oc = o;
    oc.phase_only = 1;
    oc.window = CLRED_WINDOW_HANN;
    clred_shift shc;
    CHECK_OK(clred_measure_shift(ctx, &ref, &frames[2], &oc, &shc));
    CHECK_NEAR(shc.dx, shifts[1][0], 0.15);
    CHECK_NEAR(shc.dy, shifts[1][1], 0.15);
    CHECK(shc.psr > 20.0);

    /* Integer precision returns whole pixels. */
    clred_phasecorr_opts oi = o;
    oi.precision = 1.0;
    clred_shift shi;
    CHECK_OK(clred_measure_shift(ctx, &ref, &frames[2], &oi, &shi));
    CHECK(shi.dx == -8.0 && shi.dy == 4.0);

    /* A 40 px box around the brightest star of frame 0 (an odd-free size: padded). */
    size_t bi = 0;
    for (size_t i = 1; i < (size_t)W * H; i++)
        if (scene[i] > scene[bi])
            bi = i;
    clred_phasecorr_opts ob = o;
    ob.box_x = (double)(bi % W);
    ob.box_y = (double)(bi / W);
    ob.box_size = 37;
    clred_shift shb;
    CHECK_OK(clred_measure_shift(ctx, &ref, &frames[1], &ob, &shb));
    CHECK_NEAR(shb.dx, shifts[0][0], 0.05);
    CHECK_NEAR(shb.dy, shifts[0][1], 0.05);

    /* NaNs and masked pixels (values absurd underneath) do not pull the peak;
     * the hole hides part of the stars of one frame only, hence 0.1 px. */
    clred_image holed;
    clred_image_alloc(&holed, W, H, 0, 1);
    memcpy(holed.sci, frames[4].sci, sizeof(float) * W * H);
    for (int y = 30; y < 50; y++)
        for (int x = 20; x < 45; x++) {
            holed.sci[y * W + x] = (x % 3) ? NAN : 1e9f;
            holed.mask[y * W + x] = (x % 3) ? 0 : CLRED_MASK_BAD;
        }
    clred_shift shn;
    CHECK_OK(clred_measure_shift(ctx, &ref, &holed, &o, &shn));
    CHECK_NEAR(shn.dx, shifts[3][0], 0.1);
    CHECK_NEAR(shn.dy, shifts[3][1], 0.1);

    /* Against the median of a jittered stack (tip-tilt within a pixel: the
     * median is then a sharp reference): differences of shifts are kept. */
    const double jitter[5][2] = {{0.21, -0.34}, {-0.45, 0.12}, {0.05, 0.48}, {0.6, 0.3}, {-0.2, -0.55}};
    clred_image jit[5];
    for (size_t i = 0; i < 5; i++) {
        ref_fourier_shift(scene, W, H, jitter[i][0], jitter[i][1], moved);
        to_image(moved, &rng, 3.0, &jit[i]);
    }
    clred_shift stack[9];
    CHECK_OK(clred_measure_shifts(ctx, jit, 5, -1, &o, stack));
    for (size_t i = 1; i < 5; i++) {
        CHECK_NEAR(stack[i].dx - stack[0].dx, jitter[i][0] - jitter[0][0], 0.03);
        CHECK_NEAR(stack[i].dy - stack[0].dy, jitter[i][1] - jitter[0][1], 0.03);
    }
    for (size_t i = 0; i < 5; i++)
        clred_image_free(&jit[i]);
    /* Against the median of a drifting stack (up to 8 px between frames, as
     * over a night): the median is made of the frames aligned to frame 0, so
     * the shifts agree with those measured against frame 0 (a median of the
     * unaligned frames smears every star along the drift and biases them). */
    const double drift[5][2] = {{0.0, 0.0}, {2.13, -1.71}, {4.38, -3.52}, {6.27, -5.09}, {7.96, -6.83}};
    clred_image dr[5];
    for (size_t i = 0; i < 5; i++) {
        ref_fourier_shift(scene, W, H, drift[i][0], drift[i][1], moved);
        to_image(moved, &rng, 3.0, &dr[i]);
    }
    clred_shift by_median[5], by_first[5];
    CHECK_OK(clred_measure_shifts(ctx, dr, 5, -1, &o, by_median));
    CHECK_OK(clred_measure_shifts(ctx, dr, 5, 0, &o, by_first));
    double worst = 0;
    for (size_t i = 0; i < 5; i++) {
        worst = fmax(worst, fmax(fabs(by_median[i].dx - by_first[i].dx), fabs(by_median[i].dy - by_first[i].dy)));
        CHECK_NEAR(by_median[i].dx, drift[i][0], 0.05);
        CHECK_NEAR(by_median[i].dy, drift[i][1], 0.05);
        CHECK_MSG(by_median[i].psr >= 0.9 * by_first[i].psr, "frame %zu: PSR %.1f against the median, %.1f against "
                  "frame 0", i, by_median[i].psr, by_first[i].psr);
    }
    for (size_t i = 0; i < 5; i++)
        printf("drift %zu: median ref %+.4f %+.4f (PSR %.1f), frame-0 ref %+.4f %+.4f (PSR %.1f)\n", i, by_median[i].dx,
               by_median[i].dy, by_median[i].psr, by_first[i].dx, by_first[i].dy, by_first[i].psr);
    printf("drifting stack: median vs frame-0 reference differ by at most %.4f px\n", worst);
    CHECK_MSG(worst <= 0.05, "median and frame-0 references differ by %.4f px (limit 0.05)", worst);
    for (size_t i = 0; i < 5; i++)
        clred_image_free(&dr[i]);

    /* And against frame 0 as the reference: frame 0 itself is at zero. */
    CHECK_OK(clred_measure_shifts(ctx, frames, 3, 0, &o, stack));
    CHECK_NEAR(stack[0].dx, 0.0, 1e-9);
    CHECK_NEAR(stack[0].dy, 0.0, 1e-9);
    CHECK_NEAR(stack[2].dx, shifts[1][0], 0.03);

    /* An unrelated noise frame gives a low confidence. */
    clred_image noise;
    clred_image_alloc(&noise, W, H, 0, 0);
    for (size_t i = 0; i < (size_t)W * H; i++)
        noise.sci[i] = (float)(100.0 + 3.0 * harness_normal(&rng));
    clred_shift shz;
    CHECK_OK(clred_measure_shift(ctx, &ref, &noise, &o, &shz));
    CHECK_MSG(shz.psr < 8.0, "PSR %.2f of noise against stars should be low", shz.psr);

    /* Bad arguments. */
    clred_phasecorr_opts bad = o;
    bad.x0 = 120;
    bad.x1 = 200;
    bad.y1 = 50;
    clred_shift shx;
    CHECK(clred_measure_shift(ctx, &ref, &frames[1], &bad, &shx) == CLRED_ERR_USAGE);
    CHECK(strstr(clred_last_error(), "region") != NULL);
    clred_image small;
    clred_image_alloc(&small, 64, 64, 0, 0);
    CHECK(clred_measure_shift(ctx, &ref, &small, &o, &shx) == CLRED_ERR_INPUT);
    for (size_t i = 0; i < (size_t)W * H; i++)
        noise.sci[i] = NAN;
    CHECK(clred_measure_shift(ctx, &ref, &noise, &o, &shx) == CLRED_ERR_INPUT);
    CHECK(strstr(clred_last_error(), "NaN") != NULL);

    for (size_t i = 0; i < 9; i++)
        clred_image_free(&frames[i]);
    clred_image_free(&holed);
    clred_image_free(&noise);
    clred_image_free(&small);
    free(scene);
    free(moved);
    clred_ctx_destroy(ctx);
    return harness_finish();
}
