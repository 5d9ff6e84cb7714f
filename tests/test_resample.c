/* Resampling: every interpolant against the double reference through an
 * affine map (values, variance, mask), NaN and masked inputs, pixels that map
 * off the input, flux of a well-sampled source, the exact Fourier shift
 * against a double DFT shift, transform helpers and bad arguments. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fft.h"
#include "harness.h"
#include "register_ref.h"

static const char *interp_name[] = {"nearest", "bilinear", "bicubic", "lanczos3", "fourier"};

/* A smooth random image (sum of a few broad bumps plus a gradient) with
 * variance, NaNs and masked pixels. */
static void make_input(clred_image *img, size_t w, size_t h, harness_rng *rng)
{
    clred_image_alloc(img, w, h, 1, 1);
    for (size_t y = 0; y < h; y++)
        for (size_t x = 0; x < w; x++) {
            size_t i = y * w + x;
            img->sci[i] = (float)(50.0 + 0.3 * (double)x - 0.2 * (double)y + 20.0 * harness_normal(rng));
            img->var[i] = (float)(1.0 + harness_uniform(rng) * 4.0);
        }
    img->sci[5 * w + 7] = NAN;
    img->mask[20 * w + 30] = CLRED_MASK_BAD;
    img->sci[20 * w + 30] = 1e6f; /* must be left out */
    img->mask[30 * w + 10] = CLRED_MASK_EDGE; /* not an unusable bit: used as is */
}

static void check_against_reference(clred_ctx *ctx, const clred_image *in, clred_interp kind, const clred_transform *t,
                                    size_t ow, size_t oh)
{
    clred_resample_opts o = clred_resample_defaults();
    o.interp = kind;
    o.out_width = ow;
    o.out_height = oh;
    clred_image out;
    CHECK_OK(clred_resample(ctx, in, t, &o, &out));
    if (!out.sci)
        return;
    clred_transform inv;
    clred_transform_invert(t, &inv);
    double det = fabs(inv.m[0] * inv.m[4] - inv.m[1] * inv.m[3]);
    size_t n = in->width * in->height;
    unsigned char *usable = malloc(n);
    for (size_t i = 0; i < n; i++)
        usable[i] = !(in->mask[i] & CLRED_MASK_UNUSABLE);
    int bad_val = 0, bad_var = 0, bad_mask = 0, interpolated = 0, nodata = 0;
    for (size_t y = 0; y < oh; y++)
        for (size_t x = 0; x < ow; x++) {
            size_t o_i = y * ow + x;
            double u = inv.m[0] * x + inv.m[1] * y + inv.m[2], v = inv.m[3] * x + inv.m[4] * y + inv.m[5];
            if (!(u >= -0.5 && u <= in->width - 0.5 && v >= -0.5 && v <= in->height - 0.5)) {
                nodata++;
                if (!(isnan(out.sci[o_i]) && out.mask[o_i] == CLRED_MASK_NO_DATA))
                    bad_mask++;
                continue;
            }
            double rv;
            int touched;
            double r = ref_interp_at(in->sci, in->var, usable, in->width, in->height, (int)kind, u, v, &rv, &touched);
            if (isnan(r)) { /* no usable tap at all */
                if (!(isnan(out.sci[o_i]) && out.mask[o_i] == CLRED_MASK_NO_DATA))
                    bad_mask++;
                interpolated++;
                continue;
            }
            r *= det;
            rv *= det * det;
            /* float32 output of sums of up to 36 taps of values ~100 with
             * weights accumulated in acc_t: 2e-5 relative plus 1e-4 absolute */
            if (!(fabs(out.sci[o_i] - r) <= 2e-5 * fabs(r) + 1e-4))
                bad_val++;
            if (!(fabs(out.var[o_i] - rv) <= 2e-5 * fabs(rv) + 1e-5))
                bad_var++;
            if (out.mask[o_i] != (touched ? CLRED_MASK_INTERPOLATED : 0))
                bad_mask++;
            interpolated += touched;
        }
    CHECK_MSG(bad_val == 0, "%s: %d values differ from the reference", interp_name[kind], bad_val);
    CHECK_MSG(bad_var == 0, "%s: %d variances differ from the reference", interp_name[kind], bad_var);
    CHECK_MSG(bad_mask == 0, "%s: %d mask values differ from the reference", interp_name[kind], bad_mask);
    CHECK_MSG(interpolated > 0, "%s: the NaN and BAD inputs flagged no output", interp_name[kind]);
    CHECK_MSG(nodata > 0, "%s: the map should send some output off the input", interp_name[kind]);
    free(usable);
    clred_image_free(&out);
}

/* Total flux of a Gaussian (sigma 2.5 px: well sampled) after the map. */
static double flux_after(clred_ctx *ctx, const clred_image *in, clred_interp kind, const clred_transform *t)
{
    clred_resample_opts o = clred_resample_defaults();
    o.interp = kind;
    clred_image out;
    CHECK_OK(clred_resample(ctx, in, t, &o, &out));
    double s = 0.0;
    for (size_t i = 0; out.sci && i < out.width * out.height; i++)
        if (isfinite(out.sci[i]))
            s += out.sci[i];
    clred_image_free(&out);
    return s;
}

/* The union grid: two copies of a star frame, one at (+5.25, -3.5) from the
 * reference, land in a grid 6 px wider and 4 px taller with the reference at
 * offset (0, 4); each star sits where its transform puts it, and pixels no
 * frame covers are NO_DATA. */
static void check_union_grid(clred_ctx *ctx, const clred_image *star)
{
    clred_transform t[2] = {clred_transform_identity(), clred_transform_translation(5.25, -3.5)};
    clred_grid_geometry g;
    CHECK_OK(clred_grid_for(t, 2, 64, 64, CLRED_GRID_REFERENCE, &g));
    CHECK(g.width == 64 && g.height == 64 && g.ox == 0 && g.oy == 0);
    CHECK_OK(clred_grid_for(t, 2, 64, 64, CLRED_GRID_UNION, &g));
    /* x: [-0.5, 68.75) -> 70 columns, y: [-4, 63.5) -> offset 4, 68 rows */
    CHECK_MSG(g.width == 70 && g.height == 68 && g.ox == 0 && g.oy == 4, "union grid %zu x %zu offset (%g, %g)", g.width,
              g.height, g.ox, g.oy);
    clred_image frames[2] = {*star, *star}, out[2];
    clred_resample_opts o = clred_resample_defaults();
    o.interp = CLRED_INTERP_BICUBIC;
    CHECK_OK(clred_resample_onto_grid(ctx, frames, 2, t, CLRED_GRID_UNION, &o, out, &g));
    /* The star's centre (31.3, 32.6) lands at (31.3, 36.6) and (36.55, 33.1). */
    double cx[2] = {31.3, 36.55}, cy[2] = {36.6, 33.1};
    for (int f = 0; f < 2; f++) {
        CHECK(out[f].width == 70 && out[f].height == 68);
        double sx = 0, sy = 0, sw = 0;
        for (size_t y = 0; y < out[f].height; y++)
            for (size_t x = 0; x < out[f].width; x++) {
                float v = out[f].sci[y * out[f].width + x];
                if (isfinite(v)) {
                    sx += v * (double)x, sy += v * (double)y, sw += v;
                }
            }
        CHECK_MSG(fabs(sx / sw - cx[f]) < 0.01 && fabs(sy / sw - cy[f]) < 0.01, "frame %d centroid (%.3f, %.3f)", f,
                  sx / sw, sy / sw);
    }
    /* the reference covers rows 4..67, columns 0..63 only */
    CHECK(out[0].mask[0] & CLRED_MASK_NO_DATA);
    CHECK(out[0].mask[69 + 10 * 70] & CLRED_MASK_NO_DATA);
    CHECK(!(out[0].mask[10 + 10 * 70] & CLRED_MASK_NO_DATA));
    o.interp = CLRED_INTERP_FOURIER;
    clred_image spare[2];
    CHECK(clred_resample_onto_grid(ctx, frames, 2, t, CLRED_GRID_UNION, &o, spare, NULL) == CLRED_ERR_USAGE);
    clred_image_free(&out[0]);
    clred_image_free(&out[1]);
}

int main(void)
{
    clred_ctx *ctx = harness_ctx();
    harness_rng rng = {99};

    /* Transform helpers. */
    clred_transform t = clred_transform_similarity(1.03, 7.0, 30.0, 23.0, 2.3, -1.7), inv, back;
    CHECK_OK(clred_transform_invert(&t, &inv));
    CHECK_OK(clred_transform_invert(&inv, &back));
    for (int i = 0; i < 6; i++)
        CHECK_NEAR(back.m[i], t.m[i], 1e-12);
    /* the centre maps to itself plus the translation */
    CHECK_NEAR(t.m[0] * 30 + t.m[1] * 23 + t.m[2], 32.3, 1e-12);
    CHECK_NEAR(t.m[3] * 30 + t.m[4] * 23 + t.m[5], 21.3, 1e-12);
    clred_transform sing = {{1, 2, 0, 2, 4, 0}};
    CHECK(clred_transform_invert(&sing, &inv) == CLRED_ERR_USAGE);

    /* Each interpolant through a rotation + scale + shift to an odd output size. */
    clred_image in;
    make_input(&in, 61, 47, &rng);
    for (int k = CLRED_INTERP_NEAREST; k <= CLRED_INTERP_LANCZOS3; k++)
        check_against_reference(ctx, &in, (clred_interp)k, &t, 55, 50);
    /* and a pure sub-pixel translation at the input's shape */
    clred_transform sh = clred_transform_translation(-1.37, 2.61);
    for (int k = CLRED_INTERP_NEAREST; k <= CLRED_INTERP_LANCZOS3; k++)
        check_against_reference(ctx, &in, (clred_interp)k, &sh, 61, 47);

    /* Flux of a well-sampled source is conserved (1e-4) through a shift, and
     * through a rotation with a scale change (the Jacobian is applied). */
    clred_image star;
    clred_image_alloc(&star, 64, 64, 0, 0);
    for (int y = 0; y < 64; y++)
        for (int x = 0; x < 64; x++)
            star.sci[y * 64 + x] = (float)(1000.0 * exp(-0.5 * ((x - 31.3) * (x - 31.3) + (y - 32.6) * (y - 32.6)) / 6.25));
    double total = 0.0;
    for (int i = 0; i < 64 * 64; i++)
        total += star.sci[i];
    clred_transform rot = clred_transform_similarity(1.1, 12.0, 32, 32, 0.4, -0.3);
    for (int k = CLRED_INTERP_NEAREST; k <= CLRED_INTERP_FOURIER; k++) {
        double f = flux_after(ctx, &star, (clred_interp)k, &sh);
        CHECK_MSG(fabs(f / total - 1.0) < 1e-4, "%s shift: flux ratio %.7f", interp_name[k], f / total);
        if (k == CLRED_INTERP_NEAREST || k == CLRED_INTERP_FOURIER)
            continue; /* nearest drops/duplicates pixels under rotation; Fourier shifts only */
        f = flux_after(ctx, &star, (clred_interp)k, &rot);
        CHECK_MSG(fabs(f / total - 1.0) < 1e-4, "%s rotation: flux ratio %.7f", interp_name[k], f / total);
    }

    /* The Fourier shift against the double DFT shift of the same padded frame. */
    {
        const size_t w = 30, h = 21;
        const double dx = 2.37, dy = -1.58;
        clred_image img;
        clred_image_alloc(&img, w, h, 1, 0);
        for (size_t y = 0; y < h; y++)
            for (size_t x = 0; x < w; x++) {
                img.sci[y * w + x] = (float)(10.0 + 40.0 * exp(-0.5 * (((double)x - 14.2) * ((double)x - 14.2) +
                                                                      ((double)y - 9.7) * ((double)y - 9.7)) / 4.0) +
                                             harness_normal(&rng));
                img.var[y * w + x] = 1.0f;
            }
        clred_transform ft = clred_transform_translation(dx, dy);
        clred_resample_opts o = clred_resample_defaults();
        o.interp = CLRED_INTERP_FOURIER;
        clred_image out;
        CHECK_OK(clred_resample(ctx, &img, &ft, &o, &out));
        size_t nx = clred_fft_shift_size(w, dx), ny = clred_fft_shift_size(h, dy);
        /* the reference pads with the median like the implementation */
        float *sorted = malloc(w * h * sizeof *sorted);
        memcpy(sorted, img.sci, w * h * sizeof *sorted);
        for (size_t i = 1; i < w * h; i++)
            for (size_t j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
                float tmp = sorted[j];
                sorted[j] = sorted[j - 1];
                sorted[j - 1] = tmp;
            }
        double med = (w * h) % 2 ? sorted[w * h / 2] : 0.5 * ((double)sorted[w * h / 2 - 1] + sorted[w * h / 2]);
        double *pad = calloc(nx * ny, sizeof *pad), *shifted = malloc(nx * ny * sizeof *shifted);
        for (size_t y = 0; y < h; y++)
            for (size_t x = 0; x < w; x++)
                pad[y * nx + x] = (double)img.sci[y * w + x] - (double)(float)med;
        ref_fourier_shift(pad, nx, ny, dx, dy, shifted);
        int bad = 0, nodata = 0;
        for (size_t y = 0; out.sci && y < h; y++)
            for (size_t x = 0; x < w; x++) {
                size_t i = y * w + x;
                if (out.mask[i] & CLRED_MASK_NO_DATA) {
                    nodata++;
                    continue;
                }
                /* values ~50 through two float FFTs: 1e-3 absolute is ~10 float ulps */
                if (!(fabs(out.sci[i] - (shifted[y * nx + x] + (double)(float)med)) < 1e-3))
                    bad++;
            }
        CHECK_MSG(bad == 0, "Fourier shift: %d pixels differ from the double DFT shift", bad);
        /* the first two columns (x - 2.37 < -0.5) and the last two rows
         * (y + 1.58 > h - 0.5) come from off the input */
        CHECK(nodata == 2 * (int)h + 2 * (int)w - 4);
        CHECK(out.var != NULL && out.var[10 * w + 15] > 0.2f && out.var[10 * w + 15] < 1.5f);
        clred_image_free(&out); /* before out is reused below (it was leaked) */
        clred_transform rt = clred_transform_similarity(1.0, 5.0, 0, 0, 0, 0);
        CHECK(clred_resample(ctx, &img, &rt, &o, &out) == CLRED_ERR_USAGE);
        CHECK(strstr(clred_last_error(), "Fourier") != NULL);
        clred_image_free(&out);
        clred_image_free(&img);
        free(sorted);
        free(pad);
        free(shifted);
    }

    check_union_grid(ctx, &star);

    /* Bad arguments. */
    clred_image out;
    clred_transform nan_t = {{1, 0, NAN, 0, 1, 0}};
    CHECK(clred_resample(ctx, &in, &nan_t, NULL, &out) == CLRED_ERR_USAGE);
    CHECK(clred_resample(ctx, &in, &sing, NULL, &out) == CLRED_ERR_USAGE);
    clred_image empty;
    memset(&empty, 0, sizeof empty);
    CHECK(clred_resample(ctx, &empty, &t, NULL, &out) == CLRED_ERR_USAGE);

    clred_image_free(&in);
    clred_image_free(&star);
    clred_ctx_destroy(ctx);
    return harness_finish();
}
