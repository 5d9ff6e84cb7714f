/* Bad-pixel maps from master darks and flats, and the infill of masked
 * pixels (kernels/badpix.cl). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

clred_badpix_opts clred_badpix_defaults(void)
{
    clred_badpix_opts o;
    memset(&o, 0, sizeof o);
    o.hot_sigma = 5.0;
    o.cold_sigma = 5.0;
    o.window = 5;
    o.saturation = 0.0;
    o.bleed_frac = 0.5;
    return o;
}

/* 1.4826 * MAD of the finite residuals img - med. */
static clred_status robust_sigma(const float *img, const float *med, size_t n, double *sigma)
{
    float *r = malloc(n * sizeof *r);
    if (!r)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu residuals", n);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        float d = img[i] - med[i];
        if (isfinite(d))
            r[m++] = d;
    }
    *sigma = 0;
    if (m > 0) {
        double centre = clred_median_inplace(r, m);
        for (size_t i = 0; i < m; i++)
            r[i] = (float)fabs(r[i] - centre);
        *sigma = 1.4826 * clred_median_inplace(r, m);
    }
    free(r);
    return CLRED_OK;
}

static clred_status check_image(const clred_image *img, const char *what)
{
    if (!img || !img->sci || img->width == 0 || img->height == 0)
        return clred_fail(CLRED_ERR_USAGE, "%s: no image given", what);
    if (img->width > 1u << 30 || img->height > 1u << 30 || img->width * img->height > 0xffffffffu)
        return clred_fail(CLRED_ERR_USAGE, "%s: %zu x %zu image is too large", what, img->width, img->height);
    return CLRED_OK;
}

clred_status clred_find_bad_pixels(clred_ctx *ctx, const clred_image *frame, const clred_badpix_opts *opts,
                                   uint16_t *mask_out, clred_badpix_info *info)
{
    clred_badpix_opts o = opts ? *opts : clred_badpix_defaults();
    CLRED_TRY(check_image(frame, "bad pixels"));
    if (!ctx || !mask_out)
        return clred_fail(CLRED_ERR_USAGE, "bad pixels: no device context or output mask");
    if (!(o.hot_sigma > 0) || !(o.cold_sigma > 0) || (o.window != 3 && o.window != 5 && o.window != 7) ||
        !(o.bleed_frac > 0 && o.bleed_frac <= 1))
        return clred_fail(CLRED_ERR_USAGE,
                          "bad pixels: hot_sigma (%g) and cold_sigma (%g) must be positive, window (%d) 3, 5 or 7, "
                          "bleed_frac (%g) in (0, 1]",
                          o.hot_sigma, o.cold_sigma, o.window, o.bleed_frac);
    int w = (int)frame->width, h = (int)frame->height, r = o.window / 2;
    size_t n = frame->width * frame->height;
    cl_mem dimg = NULL, dmed = NULL, dmask = NULL, dcount = NULL;
    float *med = malloc(n * sizeof *med);
    cl_uint counts[4] = {0, 0, 0, 0};
    clred_status st = med ? CLRED_OK : clred_fail(CLRED_ERR_MEMORY, "out of memory for a %zu-pixel plane", n);
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_READ_ONLY, n * sizeof(float), frame->sci, &dimg, "the frame");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_READ_WRITE, n * sizeof(float), NULL, &dmed, "the local median");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_READ_WRITE, n * sizeof(uint16_t), mask_out, &dmask, "the mask");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_READ_WRITE, sizeof counts, counts, &dcount, "counters");
    cl_kernel k;
    size_t global2[2] = {(size_t)w, (size_t)h};
    if (st == CLRED_OK)
        st = clred_kernel(ctx, "badpix", NULL, "badpix_local_median", &k);
    if (st == CLRED_OK)
        st = clred_args(k, "badpix_local_median", CLRED_ARG(dimg), CLRED_ARG(dmed), CLRED_ARG(w), CLRED_ARG(h),
                        CLRED_ARG(r), (size_t)0);
    if (st == CLRED_OK)
        st = clred_run_tiled(ctx, k, "badpix_local_median", 2, global2);
    if (st == CLRED_OK)
        st = clred_download(ctx, dmed, 0, n * sizeof(float), med);
    double sigma = 0;
    if (st == CLRED_OK)
        st = robust_sigma(frame->sci, med, n, &sigma);
    if (st == CLRED_OK && !(sigma > 0))
        st = clred_fail(CLRED_ERR_INPUT,
                        "bad pixels: the frame has no scatter about its local median (robust sigma %g): "
                        "nothing to judge hot or cold pixels by",
                        sigma);
    if (st == CLRED_OK) {
        float hot = (float)(o.hot_sigma * sigma), cold = (float)(o.cold_sigma * sigma), sat = (float)o.saturation;
        cl_uint nn = (cl_uint)n;
        size_t global = n;
        st = clred_kernel(ctx, "badpix", NULL, "badpix_classify", &k);
        if (st == CLRED_OK)
            st = clred_args(k, "badpix_classify", CLRED_ARG(dimg), CLRED_ARG(dmed), CLRED_ARG(dmask), CLRED_ARG(nn),
                            CLRED_ARG(hot), CLRED_ARG(cold), CLRED_ARG(sat), CLRED_ARG(dcount), (size_t)0);
        if (st == CLRED_OK)
            st = clred_run_tiled(ctx, k, "badpix_classify", 1, &global);
    }
    if (st == CLRED_OK && o.saturation > 0) {
        float level = (float)(o.bleed_frac * o.saturation);
        size_t global = (size_t)w;
        st = clred_kernel(ctx, "badpix", NULL, "badpix_bleed", &k);
        if (st == CLRED_OK)
            st = clred_args(k, "badpix_bleed", CLRED_ARG(dimg), CLRED_ARG(dmask), CLRED_ARG(w), CLRED_ARG(h),
                            CLRED_ARG(level), CLRED_ARG(dcount), (size_t)0);
        if (st == CLRED_OK)
            st = clred_run_tiled(ctx, k, "badpix_bleed", 1, &global);
    }
    if (st == CLRED_OK)
        st = clred_download(ctx, dcount, 0, sizeof counts, counts);
    if (st == CLRED_OK)
        st = clred_download(ctx, dmask, 0, n * sizeof(uint16_t), mask_out);
    if (st == CLRED_OK && info) {
        info->nhot = counts[0];
        info->ncold = counts[1];
        info->nsaturated = counts[2];
        info->nbleed = counts[3];
    }
    free(med);
    clred_release(&dimg);
    clred_release(&dmed);
    clred_release(&dmask);
    clred_release(&dcount);
    return st;
}

clred_status clred_infill(clred_ctx *ctx, clred_image *img, uint16_t bits, clred_infill_method method,
                          size_t *nfilled)
{
    CLRED_TRY(check_image(img, "infill"));
    if (!ctx)
        return clred_fail(CLRED_ERR_USAGE, "infill: no device context");
    if (method != CLRED_INFILL_MEDIAN && method != CLRED_INFILL_LINEAR_ROW && method != CLRED_INFILL_LINEAR_COL)
        return clred_fail(CLRED_ERR_USAGE, "infill: unknown method %d", (int)method);
    if (bits && !img->mask)
        return clred_fail(CLRED_ERR_USAGE, "infill: mask bits 0x%04x given but the image has no mask plane",
                          (unsigned)bits);
    CLRED_TRY(clred_image_add_mask(img));
    int w = (int)img->width, h = (int)img->height;
    size_t n = img->width * img->height;
    cl_mem dimg = NULL, dout = NULL, dmask = NULL, dmask_out = NULL, dcount = NULL;
    cl_uint count = 0;
    clred_status st = clred_buffer(ctx, CL_MEM_READ_ONLY, n * sizeof(float), img->sci, &dimg, "the image");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_READ_WRITE, n * sizeof(float), img->sci, &dout, "the repaired image");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_READ_ONLY, n * sizeof(uint16_t), img->mask, &dmask, "the mask");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_READ_WRITE, n * sizeof(uint16_t), img->mask, &dmask_out, "the new mask");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_READ_WRITE, sizeof count, &count, &dcount, "a counter");
    cl_kernel k;
    cl_ushort b = bits;
    size_t global[2] = {(size_t)w, (size_t)h};
    const char *name = method == CLRED_INFILL_MEDIAN ? "infill_median" : "infill_linear";
    if (st == CLRED_OK)
        st = clred_kernel(ctx, "badpix", NULL, name, &k);
    if (st == CLRED_OK && method == CLRED_INFILL_MEDIAN)
        st = clred_args(k, name, CLRED_ARG(dimg), CLRED_ARG(dmask), CLRED_ARG(dout), CLRED_ARG(dmask_out),
                        CLRED_ARG(w), CLRED_ARG(h), CLRED_ARG(b), CLRED_ARG(dcount), (size_t)0);
    if (st == CLRED_OK && method != CLRED_INFILL_MEDIAN) {
        int along_cols = method == CLRED_INFILL_LINEAR_COL;
        st = clred_args(k, name, CLRED_ARG(dimg), CLRED_ARG(dmask), CLRED_ARG(dout), CLRED_ARG(dmask_out),
                        CLRED_ARG(w), CLRED_ARG(h), CLRED_ARG(b), CLRED_ARG(along_cols), CLRED_ARG(dcount),
                        (size_t)0);
    }
    if (st == CLRED_OK)
        st = clred_run_tiled(ctx, k, name, 2, global);
    if (st == CLRED_OK)
        st = clred_download(ctx, dcount, 0, sizeof count, &count);
    if (st == CLRED_OK)
        st = clred_download(ctx, dout, 0, n * sizeof(float), img->sci);
    if (st == CLRED_OK)
        st = clred_download(ctx, dmask_out, 0, n * sizeof(uint16_t), img->mask);
    if (st == CLRED_OK && nfilled)
        *nfilled = count;
    clred_release(&dimg);
    clred_release(&dout);
    clred_release(&dmask);
    clred_release(&dmask_out);
    clred_release(&dcount);
    return st;
}
