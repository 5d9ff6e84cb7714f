/* Device images: a frame's planes in device memory, its header on the host.
 * Planes come from the context's pool (reused across frames of a shape), or
 * on a device that shares host memory from host arrays used in place. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const size_t plane_elem[CLRED_NPLANES] = {sizeof(float), sizeof(float), sizeof(uint16_t)};
static const char *const plane_what[CLRED_NPLANES] = {"a device image's SCI plane", "a device image's VAR plane",
                                                      "a device image's MASK plane"};

static size_t plane_bytes(const clred_dimage *d, int p) { return clred_dimage_pixels(d) * plane_elem[p]; }

static void release_plane(clred_dimage *d, int p)
{
    if (!d->plane[p])
        return;
    size_t bytes = plane_bytes(d, p);
    switch (d->kind[p]) {
    case CLRED_PLANE_POOLED:
        clred_pool_give(d->ctx, &d->plane[p], bytes);
        break;
    case CLRED_PLANE_HOST:
        /* The device may still be reading the array: wait before freeing it. */
        clFinish(d->ctx->queue);
        clReleaseMemObject(d->plane[p]);
        free(d->host[p]);
        d->ctx->resident_bytes -= bytes;
        break;
    default:
        clReleaseMemObject(d->plane[p]);
        break;
    }
    d->plane[p] = NULL;
    d->host[p] = NULL;
    d->kind[p] = CLRED_PLANE_NONE;
}

void clred_dimage_free(clred_dimage *d)
{
    if (!d)
        return;
    int borrowed = 0;
    for (int p = 0; p < CLRED_NPLANES; p++)
        borrowed |= d->kind[p] == CLRED_PLANE_BORROWED;
    if (borrowed) /* the caller's arrays must not be in use when it gets them back */
        clFinish(d->ctx->queue);
    for (int p = 0; p < CLRED_NPLANES; p++)
        release_plane(d, p);
    clred_header_free(d->header);
    free(d);
}

static clred_status new_shell(clred_ctx *ctx, size_t width, size_t height, clred_dimage **out)
{
    *out = NULL;
    if (width == 0 || height == 0)
        return clred_fail(CLRED_ERR_USAGE, "device image of zero size (%zu x %zu)", width, height);
    clred_dimage *d = calloc(1, sizeof *d);
    if (!d || !(d->header = clred_header_new())) {
        free(d);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for a device image");
    }
    d->ctx = ctx;
    d->width = width;
    d->height = height;
    *out = d;
    return CLRED_OK;
}

/* A pooled plane, its contents undefined. */
static clred_status take_plane(clred_dimage *d, int p)
{
    CLRED_TRY(clred_pool_take(d->ctx, plane_bytes(d, p), plane_what[p], &d->plane[p]));
    d->kind[p] = CLRED_PLANE_POOLED;
    return CLRED_OK;
}

/* A plane over a host array: owned (HOST, counted) or the caller's (BORROWED). */
static clred_status host_plane(clred_dimage *d, int p, void *array, clred_plane_kind kind)
{
    cl_int err;
    size_t bytes = plane_bytes(d, p);
    if (kind == CLRED_PLANE_HOST) {
        uint64_t budget = clred_ctx_total_budget(d->ctx);
        if (d->ctx->resident_bytes + bytes > budget)
            clred_pool_drain(d->ctx);
        if (d->ctx->resident_bytes + bytes > budget)
            return clred_fail(CLRED_ERR_DEVICE,
                              "%s: %.1f MiB more would exceed clred's memory budget (%.1f MiB, %.1f MiB held by "
                              "device images); free device images or raise CLRED_MEMORY_LIMIT",
                              plane_what[p], bytes / 1048576.0, budget / 1048576.0,
                              d->ctx->resident_bytes / 1048576.0);
    }
    d->plane[p] = clCreateBuffer(d->ctx->context, CL_MEM_READ_WRITE | CL_MEM_USE_HOST_PTR, bytes, array, &err);
    if (err != CL_SUCCESS) {
        d->plane[p] = NULL;
        return clred_fail_cl(err, plane_what[p]);
    }
    d->kind[p] = kind;
    d->host[p] = array;
    if (kind == CLRED_PLANE_HOST)
        d->ctx->resident_bytes += bytes;
    return CLRED_OK;
}

static clred_status zero_plane(clred_dimage *d, int p)
{
    CLRED_TRY(take_plane(d, p));
    return clred_fill_zero(d->ctx, d->plane[p], plane_bytes(d, p));
}

static clred_status copy_header_in(clred_dimage *d, const clred_header *h);

/* Bits of zero_planes: which planes are cleared rather than left as the
 * pool gave them. */
#define ZERO_SCI_VAR 1u
#define ZERO_MASK 2u

/* A new image of the shape with SCI and the planes asked for, pooled. */
static clred_status with_planes(clred_ctx *ctx, size_t width, size_t height, int with_var, int with_mask,
                                unsigned zero_planes, clred_dimage **out)
{
    clred_dimage *d;
    CLRED_TRY(new_shell(ctx, width, height, &d));
    int zero_data = (zero_planes & ZERO_SCI_VAR) != 0;
    clred_status st = zero_data ? zero_plane(d, CLRED_PLANE_SCI) : take_plane(d, CLRED_PLANE_SCI);
    if (st == CLRED_OK && with_var)
        st = zero_data ? zero_plane(d, CLRED_PLANE_VAR) : take_plane(d, CLRED_PLANE_VAR);
    if (st == CLRED_OK && with_mask)
        st = (zero_planes & ZERO_MASK) ? zero_plane(d, CLRED_PLANE_MASK) : take_plane(d, CLRED_PLANE_MASK);
    if (st != CLRED_OK) {
        clred_dimage_free(d);
        return st;
    }
    *out = d;
    return CLRED_OK;
}

clred_status clred_dimage_create(clred_ctx *ctx, size_t width, size_t height, int with_var, int with_mask,
                                 clred_dimage **out)
{
    return with_planes(ctx, width, height, with_var, with_mask, ZERO_SCI_VAR | ZERO_MASK, out);
}

clred_status clred_dimage_new(clred_ctx *ctx, size_t width, size_t height, int with_var, int with_mask,
                              clred_dimage **out)
{
    return with_planes(ctx, width, height, with_var, with_mask, 0, out);
}

clred_status clred_dimage_like(const clred_dimage *d, int with_var, int with_mask, int copy_header,
                               clred_dimage **out)
{
    /* The mask is cleared: steps or their bits into it. */
    clred_dimage *n;
    CLRED_TRY(with_planes(d->ctx, d->width, d->height, with_var, with_mask, ZERO_MASK, &n));
    if (copy_header) {
        clred_status st = copy_header_in(n, d->header);
        if (st != CLRED_OK) {
            clred_dimage_free(n);
            return st;
        }
    }
    *out = n;
    return CLRED_OK;
}

static const void *host_array(const clred_image *img, int p)
{
    return p == CLRED_PLANE_SCI ? (const void *)img->sci
           : p == CLRED_PLANE_VAR ? (const void *)img->var
                                  : (const void *)img->mask;
}

static clred_status copy_header_in(clred_dimage *d, const clred_header *h)
{
    if (!h)
        return CLRED_OK;
    clred_header *c = clred_header_copy(h);
    if (!c)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory copying a header");
    clred_header_free(d->header);
    d->header = c;
    return CLRED_OK;
}

clred_status clred_dimage_upload(clred_ctx *ctx, const clred_image *img, clred_dimage **out)
{
    *out = NULL;
    if (!img || !img->sci)
        return clred_fail(CLRED_ERR_USAGE, "clred_dimage_upload: the image has no SCI plane");
    clred_dimage *d;
    CLRED_TRY(new_shell(ctx, img->width, img->height, &d));
    clred_status st = copy_header_in(d, img->header);
    for (int p = 0; p < CLRED_NPLANES && st == CLRED_OK; p++) {
        const void *a = host_array(img, p);
        if (!a)
            continue;
        st = take_plane(d, p);
        if (st == CLRED_OK)
            st = clred_upload(ctx, d->plane[p], 0, plane_bytes(d, p), a);
    }
    if (st != CLRED_OK) {
        clred_dimage_free(d);
        return st;
    }
    ctx->image_uploads++;
    *out = d;
    return CLRED_OK;
}

clred_status clred_dimage_borrow(clred_ctx *ctx, const clred_image *img, clred_dimage **out)
{
    if (!ctx->unified_memory) {
        /* A copy; it remembers the arrays it came from so that
         * clred_dimage_sync_borrowed can bring a step's writes back. */
        CLRED_TRY(clred_dimage_upload(ctx, img, out));
        for (int p = 0; p < CLRED_NPLANES; p++)
            if ((*out)->plane[p])
                (*out)->host[p] = (void *)host_array(img, p);
        return CLRED_OK;
    }
    *out = NULL;
    if (!img || !img->sci)
        return clred_fail(CLRED_ERR_USAGE, "a host image without a SCI plane");
    clred_dimage *d;
    CLRED_TRY(new_shell(ctx, img->width, img->height, &d));
    clred_status st = copy_header_in(d, img->header);
    for (int p = 0; p < CLRED_NPLANES && st == CLRED_OK; p++)
        if (host_array(img, p))
            st = host_plane(d, p, (void *)host_array(img, p), CLRED_PLANE_BORROWED);
    if (st != CLRED_OK) {
        clred_dimage_free(d);
        return st;
    }
    *out = d;
    return CLRED_OK;
}

/* Makes a host-backed plane's array current: a blocking map and unmap. */
static clred_status map_sync(clred_dimage *d, int p)
{
    cl_int err;
    void *m = clEnqueueMapBuffer(d->ctx->queue, d->plane[p], CL_TRUE, CL_MAP_READ, 0, plane_bytes(d, p), 0, NULL,
                                 NULL, &err);
    if (err != CL_SUCCESS)
        return clred_fail_cl(err, "mapping a device image");
    err = clEnqueueUnmapMemObject(d->ctx->queue, d->plane[p], m, 0, NULL, NULL);
    if (err == CL_SUCCESS)
        err = clFinish(d->ctx->queue);
    clred_events_collect(d->ctx, 1);
    return err == CL_SUCCESS ? CLRED_OK : clred_fail_cl(err, "unmapping a device image");
}

clred_status clred_dimage_sync_borrowed(clred_dimage *d)
{
    int copied = 0;
    for (int p = 0; p < CLRED_NPLANES; p++) {
        if (d->kind[p] == CLRED_PLANE_BORROWED || d->kind[p] == CLRED_PLANE_HOST) {
            CLRED_TRY(map_sync(d, p));
        } else if (d->kind[p] == CLRED_PLANE_POOLED && d->host[p]) { /* a copying borrow */
            CLRED_TRY(clred_download(d->ctx, d->plane[p], 0, plane_bytes(d, p), d->host[p]));
            copied = 1;
        }
    }
    d->ctx->image_downloads += copied;
    return CLRED_OK;
}

/* A shell of img's shape that takes img's header over; on failure img is freed. */
static clred_status shell_taking_header(clred_ctx *ctx, clred_image *img, clred_dimage **out)
{
    clred_status st = new_shell(ctx, img->width, img->height, out);
    if (st != CLRED_OK) {
        clred_image_free(img);
        return st;
    }
    clred_header_free((*out)->header);
    (*out)->header = img->header ? img->header : clred_header_new();
    img->header = NULL;
    return CLRED_OK;
}

/* A copying device: each plane is uploaded on the transfer queue without
 * waiting (the image owns its arrays, which are freed once copied), so the
 * copy overlaps the kernels already queued; later commands wait for it. */
static clred_status adopt_by_upload(clred_ctx *ctx, clred_image *img, clred_dimage **out)
{
    clred_dimage *d;
    clred_status st = shell_taking_header(ctx, img, &d);
    if (st != CLRED_OK)
        return st;
    void **arrays[CLRED_NPLANES] = {(void **)&img->sci, (void **)&img->var, (void **)&img->mask};
    for (int p = 0; p < CLRED_NPLANES && st == CLRED_OK; p++) {
        if (!*arrays[p])
            continue;
        /* A reused plane may still be in use by queued kernels of an earlier
         * frame: the copy on the transfer queue waits for the pool's marker. */
        cl_event released = NULL;
        st = clred_pool_take_ordered(ctx, plane_bytes(d, p), plane_what[p], &d->plane[p], &released);
        if (st == CLRED_OK) {
            d->kind[p] = CLRED_PLANE_POOLED;
            st = clred_upload_owned(ctx, d->plane[p], plane_bytes(d, p), *arrays[p], free, released);
            *arrays[p] = NULL; /* released by the upload, also when it failed */
        } else {
            free(*arrays[p]);
            *arrays[p] = NULL;
        }
        if (released)
            clReleaseEvent(released);
    }
    clred_image_free(img);
    if (st == CLRED_OK && !d->header)
        st = clred_fail(CLRED_ERR_MEMORY, "out of memory for a header");
    if (st != CLRED_OK) {
        clred_dimage_free(d);
        return st;
    }
    ctx->image_uploads++;
    *out = d;
    return CLRED_OK;
}

clred_status clred_dimage_adopt(clred_ctx *ctx, clred_image *img, clred_dimage **out)
{
    *out = NULL;
    if (!img->sci) {
        clred_image_free(img);
        return clred_fail(CLRED_ERR_USAGE, "a host image without a SCI plane");
    }
    if (!ctx->unified_memory)
        return adopt_by_upload(ctx, img, out);
    /* Shared memory: the device image takes the arrays over, no copy. */
    clred_dimage *d;
    clred_status st = shell_taking_header(ctx, img, &d);
    if (st != CLRED_OK)
        return st;
    void **arrays[CLRED_NPLANES] = {(void **)&img->sci, (void **)&img->var, (void **)&img->mask};
    for (int p = 0; p < CLRED_NPLANES && st == CLRED_OK; p++) {
        if (!*arrays[p])
            continue;
        st = host_plane(d, p, *arrays[p], CLRED_PLANE_HOST);
        if (st == CLRED_OK)
            *arrays[p] = NULL; /* the device image owns it now */
    }
    clred_image_free(img);
    if (st == CLRED_OK && !d->header)
        st = clred_fail(CLRED_ERR_MEMORY, "out of memory for a header");
    if (st != CLRED_OK) {
        clred_dimage_free(d);
        return st;
    }
    *out = d;
    return CLRED_OK;
}

clred_status clred_dimage_read(clred_ctx *ctx, const char *path, size_t frame, clred_dimage **out)
{
    *out = NULL;
    clred_image img;
    CLRED_TRY(clred_image_read(path, frame, &img));
    return clred_dimage_adopt(ctx, &img, out);
}

clred_status clred_dimage_download_into(const clred_dimage *d, clred_image *img)
{
    if (img->width != d->width || img->height != d->height)
        return clred_fail(CLRED_ERR_USAGE, "downloading a %zu x %zu device image into a %zu x %zu host image",
                          d->width, d->height, img->width, img->height);
    CLRED_TRY(clred_image_add_planes_unset(img, d->plane[CLRED_PLANE_VAR] != NULL, d->plane[CLRED_PLANE_MASK] != NULL));
    void *arrays[CLRED_NPLANES] = {img->sci, img->var, img->mask};
    int copied = 0;
    for (int p = 0; p < CLRED_NPLANES; p++) {
        if (!d->plane[p])
            continue;
        if (d->host[p] == arrays[p] && (d->kind[p] == CLRED_PLANE_BORROWED || d->kind[p] == CLRED_PLANE_HOST)) {
            CLRED_TRY(map_sync((clred_dimage *)d, p)); /* a view of this very image's arrays */
            continue;
        }
        CLRED_TRY(clred_download(d->ctx, d->plane[p], 0, plane_bytes(d, p), arrays[p]));
        copied = 1;
    }
    d->ctx->image_downloads += copied;
    return CLRED_OK;
}

clred_status clred_dimage_download(const clred_dimage *d, clred_image *out)
{
    if (!d)
        return clred_fail(CLRED_ERR_USAGE, "no device image (NULL)");
    CLRED_TRY(clred_image_alloc_unset(out, d->width, d->height));
    clred_status st = clred_dimage_download_into(d, out);
    if (st == CLRED_OK && !(out->header = clred_header_copy(d->header)))
        st = clred_fail(CLRED_ERR_MEMORY, "out of memory copying a header");
    if (st != CLRED_OK)
        clred_image_free(out);
    return st;
}

clred_status clred_dimage_map_read(const clred_dimage *d, void *map[CLRED_NPLANES])
{
    clred_status st = CLRED_OK;
    for (int p = 0; p < CLRED_NPLANES; p++) {
        map[p] = NULL;
        if (!d->plane[p] || st != CLRED_OK)
            continue;
        cl_int err;
        map[p] = clEnqueueMapBuffer(d->ctx->queue, d->plane[p], CL_TRUE, CL_MAP_READ, 0, plane_bytes(d, p), 0, NULL,
                                    NULL, &err);
        if (err != CL_SUCCESS) {
            map[p] = NULL;
            st = clred_fail_cl(err, "mapping a device image to write it");
        }
    }
    if (st != CLRED_OK)
        clred_dimage_unmap(d, map);
    return st;
}

void clred_dimage_unmap(const clred_dimage *d, void *map[CLRED_NPLANES])
{
    for (int p = 0; p < CLRED_NPLANES; p++)
        if (map[p]) {
            clEnqueueUnmapMemObject(d->ctx->queue, d->plane[p], map[p], 0, NULL, NULL);
            map[p] = NULL;
        }
    clred_events_collect(d->ctx, 0);
}

/* Where the device works in host memory: the planes are mapped for reading
 * and written from there, with no staging copy. */
static clred_status write_mapped(const clred_dimage *d, const char *path, int overwrite)
{
    void *m[CLRED_NPLANES];
    CLRED_TRY(clred_dimage_map_read(d, m));
    clred_image img = {d->width, d->height, m[CLRED_PLANE_SCI], m[CLRED_PLANE_VAR], m[CLRED_PLANE_MASK], d->header};
    clred_status st = clred_image_write(path, &img, overwrite);
    clred_dimage_unmap(d, m);
    return st;
}

clred_status clred_dimage_write(const clred_dimage *d, const char *path, int overwrite)
{
    if (!d)
        return clred_fail(CLRED_ERR_USAGE, "no device image (NULL)");
    CLRED_TRY(clred_output_check(path, NULL, 0, overwrite));
    if (d->ctx->unified_memory)
        return write_mapped(d, path, overwrite);
    clred_image img;
    CLRED_TRY(clred_dimage_download(d, &img));
    clred_status st = clred_image_write(path, &img, overwrite);
    clred_image_free(&img);
    return st;
}

clred_status clred_dimage_copy(const clred_dimage *d, clred_dimage **out)
{
    if (!d)
        return clred_fail(CLRED_ERR_USAGE, "no device image (NULL)");
    clred_dimage *n;
    CLRED_TRY(clred_dimage_like(d, d->plane[CLRED_PLANE_VAR] != NULL, 0, 1, &n));
    clred_status st = CLRED_OK;
    if (d->plane[CLRED_PLANE_MASK])
        st = take_plane(n, CLRED_PLANE_MASK);
    for (int p = 0; p < CLRED_NPLANES && st == CLRED_OK; p++)
        if (d->plane[p])
            st = clred_copy(d->ctx, d->plane[p], n->plane[p], plane_bytes(d, p));
    if (st != CLRED_OK) {
        clred_dimage_free(n);
        return st;
    }
    *out = n;
    return CLRED_OK;
}

clred_status clred_dimage_subtract_sci(clred_dimage *img, const clred_dimage *model)
{
    if (img->width != model->width || img->height != model->height)
        return clred_fail(CLRED_ERR_USAGE, "subtracting a %zu x %zu model from a %zu x %zu image", model->width,
                          model->height, img->width, img->height);
    size_t n = clred_dimage_pixels(img);
    if (n > UINT32_MAX)
        return clred_fail(CLRED_ERR_USAGE, "subtracting a model: %zu pixels exceed the kernel's 32-bit count", n);
    cl_kernel k;
    CLRED_TRY(clred_kernel(img->ctx, "arith", NULL, "subtract", &k));
    cl_mem a = img->plane[CLRED_PLANE_SCI], b = model->plane[CLRED_PLANE_SCI];
    cl_uint count = (cl_uint)n;
    CLRED_TRY(clred_args(k, "subtract", CLRED_ARG(a), CLRED_ARG(b), CLRED_ARG(count), (size_t)0));
    size_t global = n;
    return clred_run_tiled(img->ctx, k, "subtract", 1, &global);
}

size_t clred_dimage_width(const clred_dimage *d) { return d->width; }
size_t clred_dimage_height(const clred_dimage *d) { return d->height; }
int clred_dimage_has_var(const clred_dimage *d) { return d->plane[CLRED_PLANE_VAR] != NULL; }
int clred_dimage_has_mask(const clred_dimage *d) { return d->plane[CLRED_PLANE_MASK] != NULL; }
clred_header *clred_dimage_header(clred_dimage *d) { return d->header; }
const clred_header *clred_dimage_header_const(const clred_dimage *d) { return d->header; }

clred_status clred_dimage_add_var(clred_dimage *d)
{
    return d->plane[CLRED_PLANE_VAR] ? CLRED_OK : zero_plane(d, CLRED_PLANE_VAR);
}

clred_status clred_dimage_add_mask(clred_dimage *d)
{
    return d->plane[CLRED_PLANE_MASK] ? CLRED_OK : zero_plane(d, CLRED_PLANE_MASK);
}

/* ---- interop (clred_cl.h) */

clred_status clred_dimage_wrap_cl(clred_ctx *ctx, cl_mem sci, cl_mem var, cl_mem mask, size_t width, size_t height,
                                  clred_dimage **out)
{
    *out = NULL;
    if (!sci)
        return clred_fail(CLRED_ERR_USAGE, "clred_dimage_wrap_cl: a SCI buffer is needed");
    cl_mem given[CLRED_NPLANES] = {sci, var, mask};
    clred_dimage *d;
    CLRED_TRY(new_shell(ctx, width, height, &d));
    for (int p = 0; p < CLRED_NPLANES; p++) {
        if (!given[p])
            continue;
        size_t size = 0;
        cl_context c = NULL;
        if (clGetMemObjectInfo(given[p], CL_MEM_SIZE, sizeof size, &size, NULL) != CL_SUCCESS ||
            clGetMemObjectInfo(given[p], CL_MEM_CONTEXT, sizeof c, &c, NULL) != CL_SUCCESS) {
            clred_dimage_free(d);
            return clred_fail(CLRED_ERR_USAGE, "clred_dimage_wrap_cl: %s is not a valid buffer", plane_what[p]);
        }
        if (c != ctx->context || size < plane_bytes(d, p)) {
            clred_status st = clred_fail(CLRED_ERR_USAGE,
                                         "clred_dimage_wrap_cl: %s: %s (%zu bytes, %zu x %zu needs %zu)",
                                         plane_what[p], c != ctx->context ? "another OpenCL context's buffer"
                                                                          : "buffer too small",
                                         size, width, height, plane_bytes(d, p));
            clred_dimage_free(d);
            return st;
        }
        clRetainMemObject(given[p]);
        d->plane[p] = given[p];
        d->kind[p] = CLRED_PLANE_WRAPPED;
    }
    *out = d;
    return CLRED_OK;
}

cl_mem clred_dimage_cl_sci(const clred_dimage *d) { return d->plane[CLRED_PLANE_SCI]; }
cl_mem clred_dimage_cl_var(const clred_dimage *d) { return d->plane[CLRED_PLANE_VAR]; }
cl_mem clred_dimage_cl_mask(const clred_dimage *d) { return d->plane[CLRED_PLANE_MASK]; }

clred_status clred_image_header_from(clred_image *img, const clred_dimage *d)
{
    clred_header *h = clred_header_copy(d->header);
    if (!h)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory copying a header");
    clred_header_free(img->header);
    img->header = h;
    return CLRED_OK;
}
