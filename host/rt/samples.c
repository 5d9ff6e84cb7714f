/* Regular samples of a device image's region brought to the host: the few
 * hundred thousand values a host-side median or clipped level needs, instead
 * of the whole frame (kernels/sample.cl). */
#include <math.h>
#include <stdlib.h>

#include "internal.h"

clred_status clred_dimage_samples_at(const clred_dimage *d, size_t x0, size_t y0, size_t w, size_t h, size_t stride,
                                     uint16_t ignore, float **values, size_t *n)
{
    *values = NULL;
    *n = 0;
    if (w == 0 || h == 0 || stride == 0 || x0 + w > d->width || y0 + h > d->height)
        return clred_fail(CLRED_ERR_USAGE, "sampling a %zu x %zu region at (%zu, %zu) of a %zu x %zu image", w, h, x0,
                          y0, d->width, d->height);
    clred_ctx *ctx = d->ctx;
    size_t npix = w * h, count = (npix + stride - 1) / stride;
    float *v = malloc(count * sizeof *v);
    if (!v)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu samples of a %zu x %zu region", count, w, h);
    cl_mem out = NULL, mask = clred_dimage_mask(d) ? clred_dimage_mask(d) : clred_dimage_sci(d);
    cl_kernel k;
    clred_status st = clred_pool_take(ctx, count * sizeof(float), "image samples", &out);
    if (st == CLRED_OK)
        st = clred_kernel(ctx, "sample", NULL, "gather_samples", &k);
    cl_int has_mask = clred_dimage_mask(d) != NULL;
    cl_ushort ig = ignore;
    cl_ulong sw = d->width, ux0 = x0, uy0 = y0, uw = w, us = stride, uc = count;
    if (st == CLRED_OK)
        st = clred_args(k, "gather_samples", CLRED_ARG(d->plane[CLRED_PLANE_SCI]), CLRED_ARG(mask),
                        CLRED_ARG(has_mask), CLRED_ARG(ig), CLRED_ARG(sw), CLRED_ARG(ux0), CLRED_ARG(uy0),
                        CLRED_ARG(uw), CLRED_ARG(us), CLRED_ARG(uc), CLRED_ARG(out), (size_t)0);
    size_t global = clred_round_up(count, 64);
    if (st == CLRED_OK)
        st = clred_run_tiled(ctx, k, "gather_samples", 1, &global);
    if (st == CLRED_OK)
        st = clred_download(ctx, out, 0, count * sizeof(float), v);
    if (out)
        clred_pool_give(ctx, &out, count * sizeof(float));
    if (st != CLRED_OK) {
        free(v);
        return st;
    }
    *values = v;
    *n = count;
    return CLRED_OK;
}

clred_status clred_dimage_samples(const clred_dimage *d, size_t x0, size_t y0, size_t w, size_t h, size_t stride,
                                  uint16_t ignore, float **values, size_t *n)
{
    size_t count;
    CLRED_TRY(clred_dimage_samples_at(d, x0, y0, w, h, stride, ignore, values, &count));
    float *v = *values;
    size_t m = 0;
    for (size_t j = 0; j < count; j++)
        if (!isnan(v[j]))
            v[m++] = v[j];
    *n = m;
    return CLRED_OK;
}
