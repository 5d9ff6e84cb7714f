/* Adaptive-optics cubes on a synthetic cube with known truth: tip-tilt
 * shifts (integer and sub-pixel), a known dark with hot and cold pixels, a
 * hot and a dead pixel only in the cube, one saturated frame; and the
 * temporal-statistics kernel against the double reference.
 * `test_cube --write-fixtures DIR` writes the cube and darks for cli_cube.sh. */
#include <fitsio.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cube_ref.h"
#include "harness.h"

enum { W = 64, H = 48, NF = 8 };
#define STAR_X 30.0
#define STAR_Y 22.0
#define STAR_SIGMA 1.2
#define STAR_AMP 3000.0
#define DARK_LEVEL 100.0
#define CEILING 4095.0
#define SAT_FRAME 5

/* Tip-tilt of each frame (the star at STAR + shift): integer and sub-pixel. */
static const double SHIFTS[NF][2] = {{0, 0},     {2, -1},      {-3, 2},     {1.5, 0.25},
                                     {-0.75, 1.25}, {0.4, -0.6}, {3, 3},      {-1.3, -2.7}};
/* Defects in the dark (and so in every raw frame): hot +500, cold -60. */
static const int DARK_HOT[][2] = {{5, 5}, {60, 40}, {33, 10}};
static const int DARK_COLD[][2] = {{12, 30}, {50, 20}};
/* Defects only in the cube: a hot pixel (+400) and a dead one (raw 0). */
static const int CUBE_HOT[2] = {10, 40};
static const int CUBE_DEAD[2] = {50, 8};
/* and a flickering one: +-60 ADU in alternate frames (temporal MAD 60 against ~2) */
static const int CUBE_NOISY[2] = {20, 10};

static double star(double x, double y, double cx, double cy, double amp)
{
    double dx = x - cx, dy = y - cy;
    return amp * exp(-0.5 * (dx * dx + dy * dy) / (STAR_SIGMA * STAR_SIGMA));
}

static double frame_amp(int f) { return f == SAT_FRAME ? 2.5 * STAR_AMP : STAR_AMP * (1.0 + 0.05 * f); }

/* The raw cube (integers, clipped at the ceiling) and the dark; gradient adds
 * a ramp of that many ADU per column to the frames (not the dark). truth_sat
 * receives, per frame, the raw pixels at the ceiling. */
static void make_cube(clred_image *frames, clred_image *dark, double gradient, size_t *truth_sat)
{
    harness_rng rng = {77};
    clred_image_alloc(dark, W, H, 0, 0);
    for (int i = 0; i < W * H; i++)
        dark->sci[i] = (float)(DARK_LEVEL + 2.0 * harness_normal(&rng));
    for (size_t k = 0; k < sizeof DARK_HOT / sizeof *DARK_HOT; k++)
        dark->sci[DARK_HOT[k][1] * W + DARK_HOT[k][0]] += 500;
    for (size_t k = 0; k < sizeof DARK_COLD / sizeof *DARK_COLD; k++)
        dark->sci[DARK_COLD[k][1] * W + DARK_COLD[k][0]] -= 60;
    for (int f = 0; f < NF; f++) {
        clred_image_alloc(&frames[f], W, H, 0, 0);
        truth_sat[f] = 0;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                int i = y * W + x;
                double v = dark->sci[i] + 20.0 + gradient * x + 3.0 * harness_normal(&rng) +
                           star(x, y, STAR_X + SHIFTS[f][0], STAR_Y + SHIFTS[f][1], frame_amp(f));
                if (x == CUBE_HOT[0] && y == CUBE_HOT[1])
                    v += 400;
                if (x == CUBE_DEAD[0] && y == CUBE_DEAD[1])
                    v = 0;
                if (x == CUBE_NOISY[0] && y == CUBE_NOISY[1])
                    v += (f & 1) ? 60 : -60;
                v = round(v);
                if (v >= CEILING) {
                    v = CEILING;
                    truth_sat[f]++;
                }
                frames[f].sci[i] = (float)(v < 0 ? 0 : v);
            }
    }
}

static void free_cube(clred_image *frames, clred_image *dark)
{
    for (int f = 0; f < NF; f++)
        clred_image_free(&frames[f]);
    clred_image_free(dark);
}

static double mean_of(const double *v, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += v[i];
    return s / n;
}

/* ------------------------------------------------------------------ kernel */

static void check_temporal(clred_ctx *ctx, size_t w, size_t h, size_t n, int with_nan)
{
    harness_rng rng = {100 + n};
    clred_image *fr = calloc(n, sizeof *fr);
    const float **ptr = malloc(n * sizeof *ptr);
    size_t np = w * h;
    for (size_t f = 0; f < n; f++) {
        clred_image_alloc(&fr[f], w, h, 0, 0);
        for (size_t i = 0; i < np; i++)
            fr[f].sci[i] = (float)(1000.0 * harness_normal(&rng) + (i % 7 == 0 ? 1e5 : 0));
        if (with_nan) {
            fr[f].sci[0] = NAN; /* pixel 0: no finite value at all */
            if (f % 2)
                fr[f].sci[np - 1] = INFINITY; /* last pixel: half the values missing */
            fr[f].sci[np / 2] = 42.0f;      /* all equal: MAD 0 */
        }
    }
    float *med = malloc(np * sizeof *med), *mad = malloc(np * sizeof *mad);
    double *rmed = malloc(np * sizeof *rmed), *rmad = malloc(np * sizeof *rmad);
    CHECK_OK(clred_temporal_stats(ctx, fr, n, med, mad));
    /* beyond 127 frames the kernel sees 127 evenly spaced ones; so does the reference here */
    size_t nuse = n < 127 ? n : 127;
    for (size_t j = 0; j < nuse; j++)
        ptr[j] = fr[nuse == n ? j : j * (n - 1) / (nuse - 1)].sci;
    cube_ref_temporal(ptr, nuse, np, rmed, rmad);
    /* The median is one input value or the float mean of two, the MAD one
     * float difference or the mean of two: a few float roundings of values
     * up to ~1e5, so 2e-7 relative plus 1e-3 absolute covers them. */
    int bad = 0;
    for (size_t i = 0; i < np; i++) {
        double tm = 2e-7 * fabs(rmed[i]) + 1e-3, ta = 2e-7 * (fabs(rmed[i]) + fabs(rmad[i])) + 1e-3;
        int ok = (isnan(rmed[i]) ? isnan(med[i]) : fabs(med[i] - rmed[i]) <= tm) &&
                 (isnan(rmad[i]) ? isnan(mad[i]) : fabs(mad[i] - rmad[i]) <= ta);
        if (!ok && bad++ < 3)
            printf("  pixel %zu: %.9g %.9g vs reference %.9g %.9g\n", i, med[i], mad[i], rmed[i], rmad[i]);
    }
    CHECK_MSG(bad == 0, "temporal stats %zu x %zu x %zu%s: %d pixels differ from the reference", w, h, n,
              with_nan ? " with NaN" : "", bad);
    if (with_nan) {
        CHECK(isnan(med[0]) && isnan(mad[0]));
        CHECK_NEAR(med[np / 2], 42.0, 0);
        CHECK_NEAR(mad[np / 2], 0.0, 0);
    }
    for (size_t f = 0; f < n; f++)
        clred_image_free(&fr[f]);
    free(fr);
    free(ptr);
    free(med);
    free(mad);
    free(rmed);
    free(rmad);
}

static void test_temporal_kernel(clred_ctx *ctx)
{
    check_temporal(ctx, 37, 23, 1, 0);
    check_temporal(ctx, 37, 23, 2, 1);
    check_temporal(ctx, 37, 23, 5, 1);
    check_temporal(ctx, 37, 23, 8, 1);
    check_temporal(ctx, 13, 11, 130, 0); /* more frames than the kernel holds */
}

/* ---------------------------------------------------------------- measures */

static void test_psf_measure(void)
{
    const double sigmas[] = {1.0, 1.5, 2.5};
    const double centres[][2] = {{20.0, 15.0}, {20.3, 15.6}};
    for (size_t s = 0; s < 3; s++)
        for (size_t c = 0; c < 2; c++) {
            clred_image img;
            clred_image_alloc(&img, 41, 31, 0, 0);
            for (int y = 0; y < 31; y++)
                for (int x = 0; x < 41; x++) {
                    double dx = x - centres[c][0], dy = y - centres[c][1];
                    double r2 = (dx * dx + dy * dy) / (sigmas[s] * sigmas[s]);
                    img.sci[y * 41 + x] = (float)(10.0 + 500.0 * exp(-0.5 * r2));
                }
            double x, y, peak, fwhm, truth = 2.3548200450309493 * sigmas[s];
            CHECK_OK(clred_psf_measure(&img, 10.0, &x, &y, &peak, &fwhm));
            CHECK_NEAR(x, round(centres[c][0]), 0);
            CHECK_NEAR(y, round(centres[c][1]), 0);
            /* half-maximum crossings interpolated linearly between samples, at
             * half the highest pixel: the coarser the sampling and the further
             * the centre from a pixel centre, the lower that pixel and the wider
             * the width (6.4% at sigma 1 px, centre 0.3/0.6 px off; 1% at 2.5 px) */
            double tol = (sigmas[s] < 1.2 ? 0.08 : 0.04) * truth;
            printf("psf sigma %.1f centre %zu: FWHM %.4f truth %.4f\n", sigmas[s], c, fwhm, truth);
            CHECK_MSG(fabs(fwhm - truth) < tol, "sigma %.1f centre %zu: FWHM %.4f, truth %.4f", sigmas[s], c,
                      fwhm, truth);
            CHECK(peak <= 500.0 && peak > 300.0);
            clred_image_free(&img);
        }
    clred_image none;
    clred_image_alloc(&none, 4, 3, 0, 0);
    for (int i = 0; i < 12; i++)
        none.sci[i] = NAN;
    double x, y, p, fw;
    CHECK(clred_psf_measure(&none, 0, &x, &y, &p, &fw) == CLRED_ERR_INPUT);
    clred_image_free(&none);
}

/* --------------------------------------------------------- the whole cube */

static void check_shifts(const clred_cube_result *r, double tol, const char *what)
{
    double worst = 0;
    for (int f = 0; f < NF; f++) {
        double ex = r->frames[f].dx - SHIFTS[f][0], ey = r->frames[f].dy - SHIFTS[f][1];
        worst = fmax(worst, fmax(fabs(ex), fabs(ey)));
    }
    for (int f = 0; f < NF && worst > tol; f++)
        printf("  frame %d: %.3f %.3f truth %.3f %.3f\n", f, r->frames[f].dx, r->frames[f].dy, SHIFTS[f][0],
               SHIFTS[f][1]);
    printf("%s: worst shift error %.3f px, tip-tilt rms %.3f px\n", what, worst, r->tiptilt_rms);
    CHECK_MSG(worst <= tol, "%s: worst shift error %.3f px (limit %.2f)", what, worst, tol);
    double sx[NF], sy[NF], vx = 0, vy = 0;
    for (int f = 0; f < NF; f++)
        sx[f] = SHIFTS[f][0], sy[f] = SHIFTS[f][1];
    double mx = mean_of(sx, NF), my = mean_of(sy, NF);
    for (int f = 0; f < NF; f++)
        vx += (sx[f] - mx) * (sx[f] - mx), vy += (sy[f] - my) * (sy[f] - my);
    CHECK_NEAR(r->tiptilt_rms, sqrt((vx + vy) / NF), 2 * tol);
}

static void test_reduce(clred_ctx *ctx)
{
    clred_image frames[NF], dark;
    size_t truth_sat[NF];
    make_cube(frames, &dark, 0.0, truth_sat);
    CHECK(truth_sat[SAT_FRAME] > 0);
    clred_cube_opts o = clred_cube_defaults();
    o.saturation = CEILING;
    o.saturation_margin = 0;
    clred_cube_result r;

    const clred_align_mode modes[] = {CLRED_ALIGN_PEAK, CLRED_ALIGN_CENTROID, CLRED_ALIGN_PHASECORR};
    /* the parabola on the 3x3-smoothed peak is biased towards the pixel centre by up to ~0.15 px
     * for this 1.2 px sigma; the centroid and phase correlation are within a few hundredths */
    const double tols[] = {0.2, 0.08, 0.08};
    const char *names[] = {"peak", "centroid", "phasecorr"};
    for (int m = 0; m < 3; m++) {
        o.align = modes[m];
        CHECK_OK(clred_cube_reduce(ctx, frames, NF, &dark, &o, &r));
        if (harness_failures)
            return;
        check_shifts(&r, tols[m], names[m]);
        printf("%s: plain peak %.1f FWHM %.3f, shift-and-add peak %.1f FWHM %.3f\n", names[m], r.plain_peak,
               r.plain_fwhm, r.master_peak, r.master_fwhm);
        CHECK_MSG(r.master_peak > 1.3 * r.plain_peak, "%s: SAA peak %.1f vs plain %.1f", names[m], r.master_peak,
                  r.plain_peak);
        CHECK_MSG(r.master_fwhm < 0.8 * r.plain_fwhm, "%s: SAA FWHM %.3f vs plain %.3f", names[m], r.master_fwhm,
                  r.plain_fwhm);
        /* the aligned master keeps the star's width (resampling widens it a little) */
        CHECK_MSG(fabs(r.master_fwhm - 2.3548 * STAR_SIGMA) < 0.2 * 2.3548 * STAR_SIGMA, "%s: master FWHM %.3f",
                  names[m], r.master_fwhm);
        CHECK_NEAR(r.master_x, STAR_X, 1);
        CHECK_NEAR(r.master_y, STAR_Y, 1);
        if (m == 0) {
            /* saturation: every clipped raw pixel counted in its frame and none elsewhere */
            for (int f = 0; f < NF; f++)
                CHECK_MSG(r.frames[f].nsaturated == truth_sat[f], "frame %d: %zu saturated, truth %zu", f,
                          r.frames[f].nsaturated, truth_sat[f]);
            CHECK(r.nsaturated == truth_sat[SAT_FRAME]);
            CHECK(r.nsaturated_pixels == truth_sat[SAT_FRAME]);
            CHECK(r.nsaturated_bad == 0);
            CHECK_NEAR(r.frames[SAT_FRAME].raw_max, CEILING, 0);
            /* the saturated core is flagged in both stacks, not hidden */
            size_t c = (size_t)STAR_Y * W + (size_t)STAR_X;
            CHECK(r.master.mask[c] & CLRED_MASK_SATURATED);
            CHECK(r.ceiling_source == CLRED_CEILING_OPTION && r.threshold == CEILING);
            /* bad pixels: the planted ones from the dark, and the cube's own hot and dead pixel */
            CHECK(r.nhot_dark == sizeof DARK_HOT / sizeof *DARK_HOT);
            CHECK(r.ncold_dark == sizeof DARK_COLD / sizeof *DARK_COLD);
            CHECK(r.nhot_temporal >= 1 && r.ncold_temporal >= 1 && r.nnoisy_temporal >= 1);
            CHECK_MSG(r.nhot_temporal + r.ncold_temporal + r.nnoisy_temporal <= 5,
                      "temporal: %zu hot %zu cold %zu noisy (3 planted)", r.nhot_temporal, r.ncold_temporal,
                      r.nnoisy_temporal);
            /* repaired: the plain stack there is background (sum of 8 frames of ~20 ADU, noise 3 each) */
            double bkg = 8 * 20.0;
            CHECK_NEAR(r.plain.sci[CUBE_HOT[1] * W + CUBE_HOT[0]], bkg, 60);
            CHECK_NEAR(r.plain.sci[CUBE_DEAD[1] * W + CUBE_DEAD[0]], bkg, 60);
            CHECK_NEAR(r.plain.sci[DARK_COLD[0][1] * W + DARK_COLD[0][0]], bkg, 60);
            for (int f = 0; f < NF; f++) {
                CHECK_NEAR(r.frames[f].background, 20.0, 1.0);
                CHECK_NEAR(r.frames[f].noise, 3.0, 0.6);
            }
            /* a flat background */
            CHECK_MSG(r.flatness.flat, "flat field judged not flat: corners %.3g sigma, mesh %.3g sigma",
                      r.flatness.corner_departure, r.flatness.mesh_departure);
            CHECK(r.nframes == NF && r.width == W && r.height == H);
        }
        clred_cube_result_free(&r);
    }

    /* integer shifts: the integer-shift frames exactly, the rest rounded */
    o.align = CLRED_ALIGN_CENTROID;
    o.integer_shifts = 1;
    CHECK_OK(clred_cube_reduce(ctx, frames, NF, &dark, &o, &r));
    for (int f = 0; f < NF && !harness_failures; f++) {
        CHECK_NEAR(r.frames[f].dx, round(r.frames[f].dx), 0);
        CHECK_NEAR(r.frames[f].dx, SHIFTS[f][0], 0.76);
        CHECK_NEAR(r.frames[f].dy, SHIFTS[f][1], 0.76);
    }
    CHECK(r.master_peak > r.plain_peak);
    clred_cube_result_free(&r);

    /* none: the plain sum twice, no shifts */
    o.integer_shifts = 0;
    o.align = CLRED_ALIGN_NONE;
    CHECK_OK(clred_cube_reduce(ctx, frames, NF, &dark, &o, &r));
    CHECK_NEAR(r.master_peak, r.plain_peak, 1e-6 * r.plain_peak);
    CHECK_NEAR(r.tiptilt_rms, 0, 0);
    clred_cube_result_free(&r);

    /* the ceiling from the ADC depth: the clipped 4095 gives 12 bits, margin 1% */
    o = clred_cube_defaults();
    CHECK_OK(clred_cube_reduce(ctx, frames, NF, &dark, &o, &r));
    CHECK(r.ceiling_source == CLRED_CEILING_ADC);
    CHECK_NEAR(r.ceiling, 4095, 0);
    CHECK_NEAR(r.threshold, 4095 - 41, 0);
    CHECK(r.frames[SAT_FRAME].nsaturated >= truth_sat[SAT_FRAME]);
    clred_cube_result_free(&r);

    /* errors: a ceiling below the median, a dark of another shape, one frame */
    o.saturation = 50;
    CHECK(clred_cube_reduce(ctx, frames, NF, &dark, &o, &r) == CLRED_ERR_INPUT);
    CHECK(strstr(clred_last_error(), "median") != NULL);
    o.saturation = 0;
    clred_image small;
    clred_image_alloc(&small, W - 1, H, 0, 0);
    o.dark_name = "dark.fits";
    CHECK(clred_cube_reduce(ctx, frames, NF, &small, &o, &r) == CLRED_ERR_INPUT);
    CHECK(strstr(clred_last_error(), "dark.fits") != NULL);
    clred_image_free(&small);
    CHECK(clred_cube_reduce(ctx, frames, 1, &dark, &o, &r) == CLRED_ERR_INPUT);
    free_cube(frames, &dark);

    /* a ramp across the frames is not flat */
    make_cube(frames, &dark, 0.5, truth_sat);
    o = clred_cube_defaults();
    CHECK_OK(clred_cube_reduce(ctx, frames, NF, &dark, &o, &r));
    printf("ramp: corners %.3g sigma, mesh %.3g sigma\n", r.flatness.corner_departure, r.flatness.mesh_departure);
    CHECK(!r.flatness.flat);
    CHECK(r.flatness.corner_departure > 5);
    clred_cube_result_free(&r);
    free_cube(frames, &dark);
}

/* ---------------------------------------------------------------- fixtures */

static int write_cube(const char *path, const clred_image *frames, int n, int bitpix)
{
    fitsfile *f;
    int status = 0;
    long naxes[3] = {(long)frames[0].width, (long)frames[0].height, n};
    remove(path);
    fits_create_file(&f, path, &status);
    fits_create_img(f, bitpix, n > 1 ? 3 : 2, naxes, &status);
    for (int i = 0; i < n && !status; i++) {
        long first = 1 + (long)i * naxes[0] * naxes[1];
        fits_write_img(f, TFLOAT, first, naxes[0] * naxes[1], frames[i].sci, &status);
    }
    fits_close_file(f, &status);
    if (status)
        fprintf(stderr, "cannot write %s (cfitsio status %d)\n", path, status);
    return status;
}

static int write_fixtures(const char *dir)
{
    clred_image frames[NF], dark, small;
    size_t truth_sat[NF];
    make_cube(frames, &dark, 0.0, truth_sat);
    char p[1024];
    int s = 0;
    snprintf(p, sizeof p, "%s/cube.fits", dir);
    s |= write_cube(p, frames, NF, USHORT_IMG);
    snprintf(p, sizeof p, "%s/dark.fits", dir);
    s |= write_cube(p, &dark, 1, FLOAT_IMG);
    snprintf(p, sizeof p, "%s/image.fits", dir);
    s |= write_cube(p, frames, 1, USHORT_IMG);
    clred_image_alloc(&small, W / 2, H, 0, 0);
    snprintf(p, sizeof p, "%s/dark_small.fits", dir);
    s |= write_cube(p, &small, 1, FLOAT_IMG);
    clred_image_free(&small);
    printf("saturated %zu\n", truth_sat[SAT_FRAME]);
    free_cube(frames, &dark);
    return s ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--write-fixtures"))
        return write_fixtures(argv[2]);
    clred_ctx *ctx = harness_ctx();
    test_psf_measure();
    test_temporal_kernel(ctx);
    test_reduce(ctx);
    clred_ctx_destroy(ctx);
    return harness_finish();
}
