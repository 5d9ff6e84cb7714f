/* Registration on device images: clred_measure_shift(s)_dev, the
 * clred_phasecorr_ref API, clred_resample_dev and
 * clred_resample_onto_grid_dev give the host functions' results bit for bit,
 * on the zero-copy path and with CLRED_NO_ZERO_COPY=1; the integer peak and
 * the peak-to-sidelobe ratio reduced on the device agree with a
 * double-precision phase correlation (tests/reference/register_ref.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fft.h"
#include "harness.h"
#include "register_ref.h"

enum { W = 64, H = 48, NF = 4 };

static const double true_shift[NF][2] = {{0, 0}, {2.3, -1.6}, {-3.4, 0.7}, {1.2, 3.9}};

/* Gaussian stars on a sky, shifted by Fourier interpolation, with noise; frame
 * 2 has a NaN and a masked pixel, frame 3 a variance plane. */
static void make_frames(clred_image *fr)
{
    harness_rng rng = {11};
    double *scene = malloc(sizeof(double) * W * H), *moved = malloc(sizeof(double) * W * H);
    for (size_t i = 0; i < (size_t)W * H; i++)
        scene[i] = 50.0;
    for (int s = 0; s < 10; s++) {
        double cx = 14 + harness_uniform(&rng) * (W - 28), cy = 14 + harness_uniform(&rng) * (H - 28);
        double sig = 1.5 + harness_uniform(&rng), amp = 300.0 + 2000.0 * harness_uniform(&rng);
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                scene[y * W + x] += amp * exp(-0.5 * ((x - cx) * (x - cx) + (y - cy) * (y - cy)) / (sig * sig));
    }
    for (int f = 0; f < NF; f++) {
        ref_fourier_shift(scene, W, H, true_shift[f][0], true_shift[f][1], moved);
        clred_image_alloc(&fr[f], W, H, f == 3, f == 2);
        for (size_t i = 0; i < (size_t)W * H; i++) {
            fr[f].sci[i] = (float)(moved[i] + 2.0 * harness_normal(&rng));
            if (fr[f].var)
                fr[f].var[i] = 4.0f + 0.01f * (float)i;
        }
    }
    fr[2].sci[5 * W + 7] = NAN;
    fr[2].mask[20 * W + 30] = CLRED_MASK_BAD;
    free(scene);
    free(moved);
}

static int same_shift(const clred_shift *a, const clred_shift *b)
{
    return memcmp(&a->dx, &b->dx, sizeof a->dx) == 0 && memcmp(&a->dy, &b->dy, sizeof a->dy) == 0 &&
           memcmp(&a->peak, &b->peak, sizeof a->peak) == 0 && memcmp(&a->psr, &b->psr, sizeof a->psr) == 0;
}

static int same_image(const clred_image *a, const clred_image *b)
{
    size_t n = a->width * a->height;
    if (a->width != b->width || a->height != b->height || !a->var != !b->var || !a->mask != !b->mask)
        return 0;
    return memcmp(a->sci, b->sci, n * sizeof *a->sci) == 0 && (!a->var || memcmp(a->var, b->var, n * 4) == 0) &&
           (!a->mask || memcmp(a->mask, b->mask, n * 2) == 0);
}

/* Results of one context, kept to compare the two paths. */
typedef struct {
    clred_shift shifts[2][NF]; /* ref 0 and the median */
    clred_image resampled[4];
    clred_image grid[NF];
} results;

static void phasecorr_paths(clred_ctx *ctx, const clred_image *fr, clred_dimage **d, results *r)
{
    clred_phasecorr_opts o = clred_phasecorr_defaults();
    for (int k = 0; k < 2; k++) {
        long ref = k == 0 ? 0 : -1;
        clred_shift dev[NF];
        CHECK_OK(clred_measure_shifts(ctx, fr, NF, ref, &o, r->shifts[k]));
        CHECK_OK(clred_measure_shifts_dev(ctx, (const clred_dimage *const *)d, NF, ref, &o, dev));
        for (int f = 0; f < NF; f++) {
            CHECK_MSG(same_shift(&r->shifts[k][f], &dev[f]), "ref %ld frame %d: host (%.17g, %.17g, psr %.17g) "
                      "differs from device (%.17g, %.17g, psr %.17g)", ref, f, r->shifts[k][f].dx,
                      r->shifts[k][f].dy, r->shifts[k][f].psr, dev[f].dx, dev[f].dy, dev[f].psr);
            /* the measurement itself is good: 0.05 px on these noisy, well-sampled stars */
            if (ref == 0) {
                CHECK_NEAR(dev[f].dx, true_shift[f][0] - true_shift[0][0], 0.05);
                CHECK_NEAR(dev[f].dy, true_shift[f][1] - true_shift[0][1], 0.05);
            }
        }
    }
    /* one reference, several measurements, equal to the one-shot calls */
    clred_phasecorr_ref *pr;
    CHECK_OK(clred_phasecorr_ref_create(ctx, d[1], &o, &pr));
    for (int f = NF - 1; f >= 0; f--) {
        clred_shift a, b;
        CHECK_OK(clred_phasecorr_ref_measure(pr, d[f], &a));
        CHECK_OK(clred_measure_shift_dev(ctx, d[1], d[f], &o, &b));
        CHECK(same_shift(&a, &b));
        clred_shift h;
        CHECK_OK(clred_measure_shift(ctx, &fr[1], &fr[f], &o, &h));
        CHECK(same_shift(&a, &h));
    }
    clred_phasecorr_ref_free(pr);
    /* a frame of another shape is refused */
    clred_dimage *small;
    CHECK_OK(clred_dimage_create(ctx, W / 2, H, 0, 0, &small));
    CHECK_OK(clred_phasecorr_ref_create(ctx, d[0], &o, &pr));
    clred_shift bad;
    CHECK(clred_phasecorr_ref_measure(pr, small, &bad) == CLRED_ERR_INPUT);
    clred_phasecorr_ref_free(pr);
    clred_dimage_free(small);
}

/* The device's integer peak and PSR against the double-precision surface. */
static void peak_against_reference(clred_ctx *ctx, const clred_image *fr, clred_dimage **d)
{
    size_t nx = clred_fft_good_size(W), ny = clred_fft_good_size(H);
    double *surface = malloc(nx * ny * sizeof *surface);
    unsigned char *usable = malloc((size_t)W * H);
    for (size_t i = 0; i < (size_t)W * H; i++)
        usable[i] = !(fr[2].mask[i] & CLRED_MASK_UNUSABLE);
    struct {
        int window, phase_only, frame;
        double max_shift;
    } cases[] = {{2, 0, 1, 0}, {1, 0, 2, 0}, {0, 1, 3, 0}, {2, 0, 3, 2.5}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        int f = cases[c].frame;
        clred_phasecorr_opts o = clred_phasecorr_defaults();
        o.precision = 1.0; /* the integer peak itself */
        o.window = (clred_window)cases[c].window;
        o.phase_only = cases[c].phase_only;
        o.max_shift = cases[c].max_shift;
        clred_shift s;
        CHECK_OK(clred_measure_shift_dev(ctx, d[0], d[f], &o, &s));
        ref_phasecorr_surface(fr[0].sci, NULL, fr[f].sci, f == 2 ? usable : NULL, W, H, nx, ny, cases[c].window,
                              o.tukey_alpha, o.phase_only, surface);
        long px, py;
        double psr;
        ref_surface_peak_psr(surface, nx, ny, o.max_shift, &px, &py, &psr);
        CHECK_MSG(s.dx == (double)px && s.dy == (double)py, "case %zu: device peak (%g, %g), reference (%ld, %ld)", c,
                  s.dx, s.dy, px, py);
        /* The device surface comes from float FFTs: each value carries an error
         * of about 1e-6 of the peak (float epsilon times log2 of the size),
         * while the sidelobes' spread is ~1/PSR of the peak, so the PSR is
         * good to ~1e-5 relative (3e-6 seen here, phase-only the worst); 1e-4
         * leaves a margin for other devices' FFTs. The reduction itself
         * (rows summed in double, less the box) adds ~1e-14. */
        CHECK_MSG(fabs(s.psr - psr) <= 1e-4 * psr, "case %zu: device PSR %.9g, reference %.9g (rel %.2g)", c, s.psr,
                  psr, fabs(s.psr - psr) / psr);
    }
    free(surface);
    free(usable);
}

/* The sub-pixel peak against the double-precision upsampled surface: no
 * point within 3 lattice steps of the device's result may be higher there,
 * and the device's peak value is the surface's value at that point. At
 * 0.01 px this is the fine grid's Taylor moments in y (host/steps/
 * phasecorr.c), at 0.003 px also the zoom that reuses them. */
static void subpixel_against_reference(clred_ctx *ctx, const clred_image *fr, clred_dimage **d)
{
    size_t nx = clred_fft_good_size(W), ny = clred_fft_good_size(H);
    unsigned char *usable = malloc((size_t)W * H);
    for (size_t i = 0; i < (size_t)W * H; i++)
        usable[i] = !(fr[2].mask[i] & CLRED_MASK_UNUSABLE);
    struct {
        int frame;
        double precision;
    } cases[] = {{1, 0.01}, {2, 0.01}, {3, 0.01}, {3, 0.003}};
    enum { R = 3, NP = (2 * R + 1) * (2 * R + 1) };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        int f = cases[c].frame;
        double step = cases[c].precision;
        clred_phasecorr_opts o = clred_phasecorr_defaults();
        o.precision = step;
        clred_shift s;
        CHECK_OK(clred_measure_shift_dev(ctx, d[0], d[f], &o, &s));
        double xs[NP], ys[NP], val[NP];
        for (int j = 0; j < 2 * R + 1; j++)
            for (int i = 0; i < 2 * R + 1; i++) {
                xs[j * (2 * R + 1) + i] = s.dx + (i - R) * step;
                ys[j * (2 * R + 1) + i] = s.dy + (j - R) * step;
            }
        ref_phasecorr_at(fr[0].sci, NULL, fr[f].sci, f == 2 ? usable : NULL, W, H, nx, ny, (int)o.window,
                         o.tukey_alpha, o.phase_only, xs, ys, NP, val);
        double centre = val[NP / 2], best = centre;
        for (int p = 0; p < NP; p++)
            best = fmax(best, val[p]);
        printf("case %zu: (%.3f, %.3f) reference centre %.12g, best near it %.12g (rel %.2g), device peak %.12g "
               "(rel %.2g)\n",
               c, s.dx, s.dy, centre, best, (best - centre) / best, s.peak, fabs(s.peak - centre) / centre);
        /* A point k lattice steps from the surface's highest lies about
         * (k step)^2 / (2 sigma^2) ~ 1e-5 k^2 below it at 0.01 px (sigma ~ 2.5
         * px for these stars), while float spectra put ~1e-6 of the peak on
         * each device value (see peak_against_reference): 2e-6 lets a
         * near-tie go either way and catches a result a step or more off at
         * 0.01 px; at 0.003 px, ten times finer, steps differ by ~1e-6 and
         * the bound checks only that the zoom stayed on the peak. */
        CHECK_MSG(centre >= best - 2e-6 * fabs(best), "case %zu: a point near (%g, %g) is higher by %.3g of the peak",
                  c, s.dx, s.dy, (best - centre) / best);
        CHECK_MSG(fabs(s.peak - centre) <= 1e-5 * fabs(centre), "case %zu: device peak %.9g, reference %.9g", c, s.peak,
                  centre);
    }
    free(usable);
}

static void resample_paths(clred_ctx *ctx, const clred_image *fr, clred_dimage **d, results *r)
{
    const clred_interp kinds[4] = {CLRED_INTERP_NEAREST, CLRED_INTERP_BILINEAR, CLRED_INTERP_LANCZOS3,
                                   CLRED_INTERP_FOURIER};
    const int frame[4] = {3, 2, 1, 2};
    for (int k = 0; k < 4; k++) {
        clred_resample_opts o = clred_resample_defaults();
        o.interp = kinds[k];
        clred_transform t = kinds[k] == CLRED_INTERP_FOURIER ? clred_transform_translation(1.3, -0.6)
                                                             : clred_transform_similarity(1.05, 7.0, 30, 20, 1.3, -0.6);
        clred_dimage *out = NULL;
        clred_image dev;
        CHECK_OK(clred_resample(ctx, &fr[frame[k]], &t, &o, &r->resampled[k]));
        CHECK_OK(clred_resample_dev(ctx, d[frame[k]], &t, &o, &out));
        CHECK_OK(clred_dimage_download(out, &dev));
        CHECK_MSG(same_image(&r->resampled[k], &dev), "interpolant %d: host and device resampling differ", k);
        CHECK(clred_dimage_has_var(out) == (fr[frame[k]].var != NULL) && clred_dimage_has_mask(out));
        clred_image_free(&dev);
        clred_dimage_free(out);
    }
    /* onto the union grid */
    clred_transform to_ref[NF];
    for (int f = 0; f < NF; f++)
        to_ref[f] = clred_transform_translation(-true_shift[f][0], -true_shift[f][1]);
    clred_resample_opts o = clred_resample_defaults();
    clred_grid_geometry gh, gd;
    clred_dimage *aligned[NF];
    CHECK_OK(clred_resample_onto_grid(ctx, fr, NF, to_ref, CLRED_GRID_UNION, &o, r->grid, &gh));
    CHECK_OK(clred_resample_onto_grid_dev(ctx, (const clred_dimage *const *)d, NF, to_ref, CLRED_GRID_UNION, &o,
                                          aligned, &gd));
    CHECK(memcmp(&gh, &gd, sizeof gh) == 0 && gh.width > W && gh.height > H);
    for (int f = 0; f < NF; f++) {
        clred_image dev;
        CHECK_OK(clred_dimage_download(aligned[f], &dev));
        CHECK_MSG(same_image(&r->grid[f], &dev), "frame %d on the union grid: host and device differ", f);
        clred_image_free(&dev);
        clred_dimage_free(aligned[f]);
    }
    /* Fourier onto a union grid is refused, and nothing is left allocated */
    o.interp = CLRED_INTERP_FOURIER;
    CHECK(clred_resample_onto_grid_dev(ctx, (const clred_dimage *const *)d, NF, to_ref, CLRED_GRID_UNION, &o,
                                       aligned, NULL) == CLRED_ERR_USAGE);
}

static void run_all(clred_ctx *ctx, const clred_image *fr, results *r, int with_subpixel)
{
    clred_dimage *d[NF];
    for (int f = 0; f < NF; f++)
        CHECK_OK(clred_dimage_upload(ctx, &fr[f], &d[f]));
    phasecorr_paths(ctx, fr, d, r);
    peak_against_reference(ctx, fr, d);
    if (with_subpixel)
        subpixel_against_reference(ctx, fr, d);
    resample_paths(ctx, fr, d, r);
    for (int f = 0; f < NF; f++)
        clred_dimage_free(d[f]);
}

static void free_results(results *r)
{
    for (int k = 0; k < 4; k++)
        clred_image_free(&r->resampled[k]);
    for (int f = 0; f < NF; f++)
        clred_image_free(&r->grid[f]);
}

int main(void)
{
    clred_image fr[NF];
    make_frames(fr);
    results a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    clred_ctx *ctx = harness_ctx();
    run_all(ctx, fr, &a, 1);
    clred_ctx_destroy(ctx);
    /* the other path: copies instead of host arrays used in place */
    setenv("CLRED_NO_ZERO_COPY", "1", 1);
    ctx = harness_ctx();
    run_all(ctx, fr, &b, 0);
    clred_ctx_destroy(ctx);
    for (int k = 0; k < 2; k++)
        for (int f = 0; f < NF; f++)
            CHECK_MSG(same_shift(&a.shifts[k][f], &b.shifts[k][f]), "shift %d/%d differs between the paths", k, f);
    for (int k = 0; k < 4; k++)
        CHECK_MSG(same_image(&a.resampled[k], &b.resampled[k]), "resampling %d differs between the paths", k);
    for (int f = 0; f < NF; f++)
        CHECK(same_image(&a.grid[f], &b.grid[f]));
    free_results(&a);
    free_results(&b);
    for (int f = 0; f < NF; f++)
        clred_image_free(&fr[f]);
    return harness_finish();
}
