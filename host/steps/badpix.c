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

/* 1.4826 * MAD of the finite residuals r[0..n) (reordered). */
static double robust_sigma(float *r, size_t n)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(r[i]))
            r[m++] = r[i];
    if (m == 0)
        return 0;
    double centre = clred_median_inplace(r, m);
    for (size_t i = 0; i < m; i++)
        r[i] = (float)fabs(r[i] - centre);
    return 1.4826 * clred_median_inplace(r, m);
}

static clred_status check_shape(size_t width, size_t height, const char *what)
{
    if (width == 0 || height == 0)
        return clred_fail(CLRED_ERR_USAGE, "%s: no image given", what);
    if (width > 1u << 30 || height > 1u << 30 || width * height > 0xffffffffu)
        return clred_fail(CLRED_ERR_USAGE, "%s: %zu x %zu image is too large", what, width, height);
    return CLRED_OK;
}

static clred_status check_image(const clred_image *img, const char *what)
{
    if (!img || !img->sci)
        return clred_fail(CLRED_ERR_USAGE, "%s: no image given", what);
    return check_shape(img->width, img->height, what);
}

static clred_status check_badpix_opts(const clred_badpix_opts *o)
{
    if (!(o->hot_sigma > 0) || !(o->cold_sigma > 0) || (o->window != 3 && o->window != 5 && o->window != 7) ||
        !(o->bleed_frac > 0 && o->bleed_frac <= 1))
        return clred_fail(CLRED_ERR_USAGE,
                          "bad pixels: hot_sigma (%g) and cold_sigma (%g) must be positive, window (%d) 3, 5 or 7, "
                          "bleed_frac (%g) in (0, 1]",
                          o->hot_sigma, o->cold_sigma, o->window, o->bleed_frac);
    return CLRED_OK;
}

/* The robust spread of the frame about its local median dmed. */
static clred_status residual_sigma(clred_ctx *ctx, cl_mem dimg, cl_mem dmed, size_t n, double *sigma)
{
    cl_mem dres = NULL;
    float *r = malloc(n * sizeof *r);
    clred_status st = r ? CLRED_OK : clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu residuals", n);
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_READ_WRITE, n * sizeof(float), NULL, &dres, "the residuals");
    cl_kernel k;
    cl_uint nn = (cl_uint)n;
    size_t global = n;
    if (st == CLRED_OK)
        st = clred_kernel(ctx, "badpix", NULL, "badpix_residual", &k);
    if (st == CLRED_OK)
        st = clred_args(k, "badpix_residual", CLRED_ARG(dimg), CLRED_ARG(dmed), CLRED_ARG(dres), CLRED_ARG(nn),
                        (size_t)0);
    if (st == CLRED_OK)
        st = clred_run_tiled(ctx, k, "badpix_residual", 1, &global);
    if (st == CLRED_OK)
        st = clred_download(ctx, dres, 0, n * sizeof(float), r);
    if (st == CLRED_OK)
        *sigma = robust_sigma(r, n);
    clred_release(&dres);
    free(r);
    return st;
}

clred_status clred_find_bad_pixels_dev(clred_ctx *ctx, const clred_dimage *frame, const clred_badpix_opts *opts,
                                       clred_dimage *target, clred_badpix_info *info)
{
    clred_badpix_opts o = opts ? *opts : clred_badpix_defaults();
    if (!ctx || !frame || !target)
        return clred_fail(CLRED_ERR_USAGE, "bad pixels: no device context, frame or target image");
    if (frame->ctx != ctx || target->ctx != ctx)
        return clred_fail(CLRED_ERR_USAGE, "bad pixels: a device image belongs to another context");
    CLRED_TRY(check_shape(frame->width, frame->height, "bad pixels"));
    if (target->width != frame->width || target->height != frame->height)
        return clred_fail(CLRED_ERR_USAGE, "bad pixels: the target is %zu x %zu, the frame %zu x %zu", target->width,
                          target->height, frame->width, frame->height);
    CLRED_TRY(check_badpix_opts(&o));
    CLRED_TRY(clred_dimage_add_mask(target));
    int w = (int)frame->width, h = (int)frame->height, r = o.window / 2;
    size_t n = frame->width * frame->height;
    cl_mem dimg = clred_dimage_sci(frame), dmask = clred_dimage_mask(target), dmed = NULL, dcount = NULL;
    cl_uint counts[4] = {0, 0, 0, 0};
    clred_status st = clred_buffer(ctx, CL_MEM_READ_WRITE, n * sizeof(float), NULL, &dmed, "the local median");
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
    double sigma = 0;
    if (st == CLRED_OK)
        st = residual_sigma(ctx, dimg, dmed, n, &sigma);
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
    if (st == CLRED_OK && info) {
        info->nhot = counts[0];
        info->ncold = counts[1];
        info->nsaturated = counts[2];
        info->nbleed = counts[3];
    }
    clred_release(&dmed);
    clred_release(&dcount);
    return st;
}

clred_status clred_find_bad_pixels(clred_ctx *ctx, const clred_image *frame, const clred_badpix_opts *opts,
                                   uint16_t *mask_out, clred_badpix_info *info)
{
    CLRED_TRY(check_image(frame, "bad pixels"));
    if (!ctx || !mask_out)
        return clred_fail(CLRED_ERR_USAGE, "bad pixels: no device context or output mask");
    /* The frame's pixels with mask_out as its mask: the bits go straight
     * into the caller's array where the device shares host memory. */
    clred_image view = {frame->width, frame->height, frame->sci, NULL, mask_out, NULL};
    clred_dimage *d;
    CLRED_TRY(clred_dimage_borrow(ctx, &view, &d));
    clred_status st = clred_find_bad_pixels_dev(ctx, d, opts, d, info);
    if (st == CLRED_OK && d->kind[CLRED_PLANE_MASK] == CLRED_PLANE_BORROWED)
        st = clred_dimage_sync_borrowed(d);
    else if (st == CLRED_OK)
        st = clred_download(ctx, clred_dimage_mask(d), 0, frame->width * frame->height * sizeof(uint16_t), mask_out);
    clred_dimage_free(d);
    return st;
}

clred_status clred_infill_dev(clred_ctx *ctx, clred_dimage *img, uint16_t bits, clred_infill_method method,
                              size_t *nfilled)
{
    if (!ctx || !img)
        return clred_fail(CLRED_ERR_USAGE, "infill: no device context or image");
    if (img->ctx != ctx)
        return clred_fail(CLRED_ERR_USAGE, "infill: the device image belongs to another context");
    CLRED_TRY(check_shape(img->width, img->height, "infill"));
    if (method != CLRED_INFILL_MEDIAN && method != CLRED_INFILL_LINEAR_ROW && method != CLRED_INFILL_LINEAR_COL)
        return clred_fail(CLRED_ERR_USAGE, "infill: unknown method %d", (int)method);
    if (bits && !clred_dimage_mask(img))
        return clred_fail(CLRED_ERR_USAGE, "infill: mask bits 0x%04x given but the image has no mask plane",
                          (unsigned)bits);
    CLRED_TRY(clred_dimage_add_mask(img));
    int w = (int)img->width, h = (int)img->height;
    size_t n = img->width * img->height;
    /* The kernels read a copy and write only the repaired pixels in place,
     * so every pixel is judged on the original values. */
    cl_mem sci = clred_dimage_sci(img), mask = clred_dimage_mask(img), dimg = NULL, dmask = NULL, dcount = NULL;
    cl_uint count = 0;
    clred_status st = clred_pool_take(ctx, n * sizeof(float), "infill: a copy of the image", &dimg);
    if (st == CLRED_OK)
        st = clred_pool_take(ctx, n * sizeof(uint16_t), "infill: a copy of the mask", &dmask);
    if (st == CLRED_OK)
        st = clred_copy(ctx, sci, dimg, n * sizeof(float));
    if (st == CLRED_OK)
        st = clred_copy(ctx, mask, dmask, n * sizeof(uint16_t));
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_READ_WRITE, sizeof count, &count, &dcount, "a counter");
    cl_kernel k;
    cl_ushort b = bits;
    size_t global[2] = {(size_t)w, (size_t)h};
    const char *name = method == CLRED_INFILL_MEDIAN ? "infill_median" : "infill_linear";
    if (st == CLRED_OK)
        st = clred_kernel(ctx, "badpix", NULL, name, &k);
    if (st == CLRED_OK && method == CLRED_INFILL_MEDIAN)
        st = clred_args(k, name, CLRED_ARG(dimg), CLRED_ARG(dmask), CLRED_ARG(sci), CLRED_ARG(mask), CLRED_ARG(w),
                        CLRED_ARG(h), CLRED_ARG(b), CLRED_ARG(dcount), (size_t)0);
    if (st == CLRED_OK && method != CLRED_INFILL_MEDIAN) {
        int along_cols = method == CLRED_INFILL_LINEAR_COL;
        st = clred_args(k, name, CLRED_ARG(dimg), CLRED_ARG(dmask), CLRED_ARG(sci), CLRED_ARG(mask), CLRED_ARG(w),
                        CLRED_ARG(h), CLRED_ARG(b), CLRED_ARG(along_cols), CLRED_ARG(dcount), (size_t)0);
    }
    if (st == CLRED_OK)
        st = clred_run_tiled(ctx, k, name, 2, global);
    if (st == CLRED_OK)
        st = clred_download(ctx, dcount, 0, sizeof count, &count);
    if (st == CLRED_OK && nfilled)
        *nfilled = count;
    clred_pool_give(ctx, &dimg, n * sizeof(float));
    clred_pool_give(ctx, &dmask, n * sizeof(uint16_t));
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
    clred_image view = *img;
    view.var = NULL; /* untouched: not carried */
    view.header = NULL;
    clred_dimage *d;
    CLRED_TRY(clred_dimage_borrow(ctx, &view, &d));
    clred_status st = clred_infill_dev(ctx, d, bits, method, nfilled);
    if (st == CLRED_OK)
        st = clred_dimage_download_into(d, &view);
    clred_dimage_free(d);
    return st;
}
