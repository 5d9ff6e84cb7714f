/* clred_cosmic_dev and clred_background_dev bring back only what the host
 * needs, never a plane: on the copying path (CLRED_NO_ZERO_COPY=1), where every
 * device-to-host byte is counted in clred_ctx_timing's download_bytes, each
 * call on an N x N frame downloads a fixed number of bytes that does not grow
 * with N, far below one 4 N^2-byte plane. The counts the steps return instead
 * of reading maps (cosmic rays repaired, source pixels masked) are checked
 * against the same counts made on the host from the downloaded results. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "internal.h"

enum { N = 256 };

/* Sky with a gradient and noise, a few stars and single-pixel spikes. */
static void make_frame(clred_image *img)
{
    CHECK_OK(clred_image_alloc(img, N, N, 0, 0));
    harness_rng rng = {29};
    for (int y = 0; y < N; y++)
        for (int x = 0; x < N; x++) {
            double v = 300.0 + 0.2 * x - 0.1 * y + 8.0 * harness_normal(&rng);
            for (int s = 0; s < 6; s++) {
                double dx = x - (30.0 + 37.0 * s), dy = y - (40.0 + 29.0 * s);
                v += 2000.0 * exp(-(dx * dx + dy * dy) / 6.0);
            }
            img->sci[y * N + x] = (float)v;
        }
    for (int i = 0; i < 60; i++)
        img->sci[(5 + (i * 97) % (N - 10)) * N + 5 + (i * 61) % (N - 10)] += 2500.0f + 50.0f * i;
}

static uint64_t downloaded(clred_ctx *ctx)
{
    clred_timing t;
    clred_ctx_timing(ctx, &t);
    return t.download_bytes;
}

/* Cosmic rays: the fill values come from 4 radix passes of 256 32-bit counts
 * for each of 2 planes (8 KiB); each iteration reads its 4-byte count and the
 * run ends reading the two 4-byte counters. */
static void cosmic_downloads(clred_ctx *ctx, const clred_image *img)
{
    clred_cosmic_opts o = clred_cosmic_defaults();
    clred_dimage *d;
    CHECK_OK(clred_dimage_upload(ctx, img, &d));
    clred_ctx_timing_reset(ctx);
    clred_cosmic_info info;
    CHECK_OK(clred_cosmic_dev(ctx, d, NULL, NULL, &o, &info));
    uint64_t bytes = downloaded(ctx);
    uint64_t bound = 2 * 4 * 256 * sizeof(cl_uint) + (uint64_t)o.max_iters * sizeof(cl_uint) + 2 * sizeof(cl_uint);
    CHECK_MSG(bytes <= bound && bound * 16 < (uint64_t)N * N * sizeof(float),
              "cosmic on %d x %d: %llu bytes downloaded, bound %llu", N, N, (unsigned long long)bytes,
              (unsigned long long)bound);

    /* the count returned is the number of pixels the step marked */
    clred_image out;
    CHECK_OK(clred_dimage_download(d, &out));
    size_t marked = 0;
    for (size_t i = 0; out.mask && i < (size_t)N * N; i++)
        marked += (out.mask[i] & CLRED_MASK_COSMIC_RAY) != 0;
    CHECK_MSG(info.ncosmic == marked && marked >= 40, "cosmic: %zu counted, %zu marked", info.ncosmic, marked);

    /* A second frame of the shape gives the same; once its planes are
     * taken, a further run finds all its work planes idle in the pool: it
     * holds no more device memory after the run than before. */
    clred_dimage *d2;
    CHECK_OK(clred_dimage_upload(ctx, img, &d2));
    clred_cosmic_info info2;
    CHECK_OK(clred_cosmic_dev(ctx, d2, NULL, NULL, &o, &info2));
    CHECK(info2.ncosmic == info.ncosmic && info2.iterations == info.iterations);
    clred_image out2;
    CHECK_OK(clred_dimage_download(d2, &out2));
    CHECK(memcmp(out.sci, out2.sci, (size_t)N * N * sizeof(float)) == 0);
    uint64_t idle = clred_pool_idle_bytes(ctx), resident = ctx->resident_bytes;
    CHECK(idle >= 10 * (uint64_t)N * N * sizeof(float));
    CHECK_OK(clred_cosmic_dev(ctx, d2, NULL, NULL, &o, NULL));
    CHECK(clred_pool_idle_bytes(ctx) == idle && ctx->resident_bytes == resident);
    clred_image_free(&out);
    clred_image_free(&out2);
    clred_dimage_free(d);
    clred_dimage_free(d2);
}

/* Background with the source-masking pass: per pass, a level, an rms and a
 * count per box (12 bytes a box); between the passes the 4-byte source count. */
static void background_downloads(clred_ctx *ctx, const clred_image *img)
{
    clred_bkg_opts o = clred_bkg_defaults();
    o.mask_sources = 1;
    clred_dimage *d, *bkg = NULL, *rms = NULL;
    CHECK_OK(clred_dimage_upload(ctx, img, &d));
    clred_ctx_timing_reset(ctx);
    clred_bkg_info info;
    CHECK_OK(clred_background_dev(ctx, d, &o, &bkg, &rms, &info));
    uint64_t bytes = downloaded(ctx);
    uint64_t nbox = (uint64_t)((N + o.box_w - 1) / o.box_w) * ((N + o.box_h - 1) / o.box_h);
    uint64_t bound = 2 * nbox * (2 * sizeof(float) + sizeof(int)) + sizeof(cl_uint);
    CHECK_MSG(bytes <= bound && bound * 16 < (uint64_t)N * N * sizeof(float),
              "background on %d x %d: %llu bytes downloaded, bound %llu", N, N, (unsigned long long)bytes,
              (unsigned long long)bound);
    clred_dimage_free(bkg);
    clred_dimage_free(rms);

    /* The source count: pixels within source_grow of one above
     * source_sigma * rms over the first pass's maps (a run without the second
     * pass gives exactly those maps), counted on the host. */
    clred_bkg_opts first = o;
    first.mask_sources = 0;
    CHECK_OK(clred_background_dev(ctx, d, &first, &bkg, &rms, NULL));
    clred_image hb, hr;
    CHECK_OK(clred_dimage_download(bkg, &hb));
    CHECK_OK(clred_dimage_download(rms, &hr));
    float nsig = (float)o.source_sigma;
    size_t expect = 0;
    for (int y = 0; y < N; y++)
        for (int x = 0; x < N; x++) {
            int hit = 0;
            for (int dy = -o.source_grow; dy <= o.source_grow && !hit; dy++)
                for (int dx = -o.source_grow; dx <= o.source_grow && !hit; dx++) {
                    int xx = x + dx, yy = y + dy;
                    if (xx < 0 || yy < 0 || xx >= N || yy >= N)
                        continue;
                    size_t k = (size_t)yy * N + xx;
                    hit = img->sci[k] - hb.sci[k] > nsig * hr.sci[k];
                }
            expect += hit;
        }
    CHECK_MSG(info.nmasked_sources == expect && expect > 100, "background: %zu source pixels counted, %zu expected",
              info.nmasked_sources, expect);
    clred_image_free(&hb);
    clred_image_free(&hr);
    clred_dimage_free(bkg);
    clred_dimage_free(rms);
    clred_dimage_free(d);
}

int main(void)
{
    setenv("CLRED_NO_ZERO_COPY", "1", 1);
    clred_ctx *ctx = harness_ctx();
    CHECK(ctx->unified_memory == 0);
    clred_image img;
    make_frame(&img);
    cosmic_downloads(ctx, &img);
    background_downloads(ctx, &img);
    clred_image_free(&img);
    clred_ctx_destroy(ctx);
    return harness_finish();
}
