/* Photometric scaling of stacks from the stars the frames share
 * (CLRED_SCALE_STARS) against the simulation's truth.
 *
 * Frames of one star field seen through transparencies 0.70 .. 1.00 under
 * sky levels that change apart from the transparency (200 .. 1500 e-, with
 * gradients), at slightly different seeing: the star scales recover
 * t_0 / t_f and the stack's stars the reference frame's fluxes, where scaling
 * by the frame medians is biased by tens of percent (the sky dominates the
 * median). Also: the files path and the align-and-combine recipe give the
 * same scales, and a frame without stars is refused naming it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "internal.h"

enum { W = 128, H = 128, NF = 5, GRID = 5, NSTARS = GRID * GRID, MARGIN = 20 };

static const double transparency[NF] = {0.90, 0.70, 1.00, 0.78, 0.85};
static const double sky[NF] = {300.0, 1500.0, 200.0, 900.0, 450.0};
static const double gradient[NF] = {0.0, 4.0, -1.0, 2.5, 1.0}; /* e- per pixel along x */
static const double seeing_sigma[NF] = {1.30, 1.45, 1.20, 1.60, 1.35};

typedef struct {
    double x[NSTARS], y[NSTARS], flux[NSTARS]; /* flux above the atmosphere */
} field;

/* Stars on a jittered grid 22 px apart, 20 px from the edges: no star reaches another's aperture
 * or annulus, so the test's photometry of the stack measures each alone. */
static void make_field(field *fd)
{
    harness_rng r = {12345};
    double step = (W - 2.0 * MARGIN) / (GRID - 1);
    for (int k = 0; k < NSTARS; k++) {
        fd->x[k] = MARGIN + step * (k % GRID) + 4.0 * (harness_uniform(&r) - 0.5);
        fd->y[k] = MARGIN + step * (k / GRID) + 4.0 * (harness_uniform(&r) - 0.5);
        fd->flux[k] = 20000.0 * pow(10.0, harness_uniform(&r)); /* 2e4 .. 2e5 e- */
    }
}

/* Frame f, shifted by (dx, dy) px: Gaussian stars (normalised over their
 * stamp, so each holds exactly t * flux), sky with a gradient, Poisson-like
 * Gaussian noise (gain 1). */
static void make_frame(const field *fd, int f, double dx, double dy, clred_image *img)
{
    CHECK_OK(clred_image_alloc(img, W, H, 0, 0));
    double *model = calloc((size_t)W * H, sizeof *model);
    double s = seeing_sigma[f];
    for (int k = 0; k < NSTARS; k++) {
        double cx = fd->x[k] + dx, cy = fd->y[k] + dy, norm = 0.0;
        int x0 = (int)floor(cx) - 10, y0 = (int)floor(cy) - 10;
        for (int pass = 0; pass < 2; pass++)
            for (int y = y0; y <= y0 + 21; y++)
                for (int x = x0; x <= x0 + 21; x++) {
                    double g = exp(-((x - cx) * (x - cx) + (y - cy) * (y - cy)) / (2 * s * s));
                    if (pass == 0)
                        norm += g;
                    else if (x >= 0 && x < W && y >= 0 && y < H)
                        model[(size_t)y * W + x] += transparency[f] * fd->flux[k] * g / norm;
                }
    }
    harness_rng r = {1000 + (uint64_t)f};
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            double m = model[(size_t)y * W + x] + sky[f] + gradient[f] * (x - W / 2);
            img->sci[(size_t)y * W + x] = (float)(m + sqrt(m) * harness_normal(&r));
        }
    free(model);
}

/* Sum over stars of the stack's aperture flux, over the reference frame's
 * true total t_0 * sum(flux); also the worst |flux - truth| / flux_err. */
static double stack_flux_ratio(clred_ctx *ctx, const clred_image *stack, const field *fd, double *worst_chi)
{
    clred_phot ph[NSTARS];
    clred_phot_opts po = clred_phot_defaults();
    po.radius = 8.0; /* > 4.5 sigma of the widest seeing: the aperture holds all of each star */
    po.annulus_in = 11.0;
    po.annulus_out = 16.0;
    CHECK_OK(clred_aperture_photometry(ctx, stack, fd->x, fd->y, NSTARS, &po, ph));
    double sum = 0.0, truth = 0.0;
    *worst_chi = 0.0;
    for (int k = 0; k < NSTARS; k++) {
        sum += ph[k].flux;
        truth += transparency[0] * fd->flux[k];
        double chi = fabs(ph[k].flux - transparency[0] * fd->flux[k]) / ph[k].flux_err;
        if (chi > *worst_chi)
            *worst_chi = chi;
    }
    return sum / truth;
}

static void free_frames(clred_image *frames)
{
    for (int f = 0; f < NF; f++)
        clred_image_free(&frames[f]);
}

int main(void)
{
    clred_ctx *ctx = harness_ctx();
    field fd;
    make_field(&fd);
    clred_image frames[NF];
    for (int f = 0; f < NF; f++)
        make_frame(&fd, f, 0.0, 0.0, &frames[f]);

    /* Star scaling. Per star the ratio's error is 0.3 .. 2 % (aperture of
     * ~2 FWHM over skies of 200 .. 1500 e-); the clipped median of 25 stars
     * is good to ~0.3 %: 1 % is over 3 sigma. */
    clred_combine_opts o = clred_combine_defaults();
    o.scale = CLRED_SCALE_STARS;
    clred_combine_result stars = {0};
    CHECK_OK(clred_combine_images(ctx, frames, NF, &o, &stars));
    double scales_images[NF] = {0};
    CHECK(stars.scales && stars.scale_errors && stars.scale_stars);
    if (stars.scales && stars.scale_errors && stars.scale_stars) {
        CHECK_NEAR(stars.scales[0], 1.0, 0.0);
        CHECK(stars.scale_errors[0] == 0.0 && stars.scale_stars[0] == 0);
        for (int f = 1; f < NF; f++) {
            double truth = transparency[0] / transparency[f], err = stars.scale_errors[f];
            CHECK_NEAR(stars.scales[f], truth, 0.01 * truth);
            /* The reported error is the clipped median's (1.2533 s / sqrt(n)):
             * it must be a real, small error that covers the truth at 4 sigma. */
            CHECK_MSG(err > 0.0 && err < 0.01 * truth, "frame %d: scale error %g", f, err);
            CHECK_MSG(fabs(stars.scales[f] - truth) < 4.0 * err, "frame %d: scale %.5f is %.1f errors off %.5f", f,
                      stars.scales[f], fabs(stars.scales[f] - truth) / err, truth);
            CHECK_MSG(stars.scale_stars[f] >= 3, "frame %d: scale from %zu stars", f, stars.scale_stars[f]);
            scales_images[f] = stars.scales[f];
            printf("frame %d: star scale %.4f +- %.4f from %zu stars, truth t0/t = %.4f\n", f, stars.scales[f], err,
                   stars.scale_stars[f], truth);
        }
        scales_images[0] = stars.scales[0];
    }
    /* The stack's stars at the reference's flux: the stack's error per star is
     * its own noise (the scale's 0.3 % is below it for most stars); 4 sigma
     * over 25 stars. */
    double chi = 0.0, ratio = stack_flux_ratio(ctx, &stars.image, &fd, &chi);
    CHECK_NEAR(ratio, 1.0, 0.01);
    CHECK_MSG(chi < 4.0, "star scaling: a stacked star is %.1f sigma off its reference flux", chi);
    clred_combine_result_free(&stars);

    /* Median scaling on the same frames: the medians are mostly sky, whose
     * ratio is unrelated to the transparency's, so the stack's stars are
     * off (here by over 20 %). */
    o.scale = CLRED_SCALE_MULTIPLICATIVE;
    clred_combine_result med = {0};
    CHECK_OK(clred_combine_images(ctx, frames, NF, &o, &med));
    double chi_med = 0.0, ratio_med = stack_flux_ratio(ctx, &med.image, &fd, &chi_med);
    CHECK_MSG(fabs(ratio_med - 1.0) > 0.2, "median scaling gave a stack flux ratio of %.3f: expected a bias over 20 %%",
              ratio_med);
    printf("stack flux / reference flux: star scaling %.4f (worst star %.1f sigma), median scaling %.4f\n", ratio, chi,
           ratio_med);
    clred_combine_result_free(&med);

    /* From files: the same scales (the same pixels, detected and measured alike). */
    const char *dir = harness_tmpdir("test_star_scale");
    char paths[NF][512];
    const char *pp[NF];
    for (int f = 0; f < NF; f++) {
        snprintf(paths[f], sizeof paths[f], "%s/frame%d.fits", dir, f);
        CHECK_OK(clred_image_write(paths[f], &frames[f], 1));
        pp[f] = paths[f];
    }
    o.scale = CLRED_SCALE_STARS;
    clred_combine_result files = {0};
    CHECK_OK(clred_combine_files(ctx, pp, NF, &o, &files));
    for (int f = 0; files.scales && f < NF; f++)
        CHECK_NEAR(files.scales[f], scales_images[f], 1e-12);
    CHECK(files.scale_errors && files.scale_stars);
    clred_combine_result_free(&files);

    /* The align-and-combine recipe: frames drifting by whole pixels are
     * registered, resampled and then scaled by their stars. */
    free_frames(frames);
    for (int f = 0; f < NF; f++) {
        make_frame(&fd, f, 3.0 * f, -2.0 * f, &frames[f]);
        CHECK_OK(clred_image_write(paths[f], &frames[f], 1));
    }
    clred_stack_opts so = clred_stack_defaults();
    so.copts.scale = CLRED_SCALE_STARS;
    clred_combine_result st = {0};
    CHECK_OK(clred_stack_files(ctx, pp, NF, &so, &st, NULL));
    for (int f = 1; st.scales && f < NF; f++)
        CHECK_NEAR(st.scales[f], transparency[0] / transparency[f], 0.01 * transparency[0] / transparency[f]);
    CHECK(st.scales != NULL);
    clred_combine_result_free(&st);

    /* A frame without stars (thick cloud): refused, naming it. */
    free_frames(frames);
    for (int f = 0; f < NF; f++)
        make_frame(&fd, f, 0.0, 0.0, &frames[f]);
    harness_rng r = {77};
    for (size_t i = 0; i < (size_t)W * H; i++)
        frames[2].sci[i] = (float)(500.0 + 22.0 * harness_normal(&r));
    clred_combine_result none = {0};
    clred_status s = clred_combine_images(ctx, frames, NF, &o, &none);
    CHECK(s == CLRED_ERR_INPUT);
    CHECK_MSG(strstr(clred_last_error(), "frame 2") && strstr(clred_last_error(), "stars"),
              "message does not name frame 2 and stars: %s", clred_last_error());
    CHECK(none.scales == NULL && none.scale_errors == NULL && none.image.sci == NULL);
    free_frames(frames);
    clred_ctx_destroy(ctx);
    return harness_finish();
}
