/* Device buffers, transfers and kernel launches, with timing from profiling events. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include "internal.h"

clred_status clred_buffer(clred_ctx *ctx, cl_mem_flags flags, size_t bytes, const void *host, cl_mem *buf,
                          const char *what)
{
    cl_int err;
    if (bytes == 0)
        bytes = 4; /* zero-sized buffers are invalid; keep the call sites simple */
    if (bytes > ctx->info.max_alloc)
        return clred_fail(CLRED_ERR_DEVICE, "%s: %zu bytes exceed the device's largest buffer (%llu bytes)", what,
                          bytes, (unsigned long long)ctx->info.max_alloc);
    if (host)
        flags |= CL_MEM_COPY_HOST_PTR;
    *buf = clCreateBuffer(ctx->context, flags, bytes, (void *)host, &err);
    if (err != CL_SUCCESS) {
        char msg[160];
        snprintf(msg, sizeof msg, "allocating %zu bytes on the device for %s", bytes, what);
        *buf = NULL;
        return clred_fail_cl(err, msg);
    }
    if (host) {
        ctx->timing.upload_bytes += bytes;
        ctx->timing.uploads++;
    }
    return CLRED_OK;
}

clred_status clred_upload(clred_ctx *ctx, cl_mem buf, size_t offset, size_t bytes, const void *host)
{
    if (bytes == 0)
        return CLRED_OK;
    cl_event ev;
    double t = clred_now();
    cl_int err = clEnqueueWriteBuffer(ctx->queue, buf, CL_TRUE, offset, bytes, host, 0, NULL, &ev);
    if (err != CL_SUCCESS)
        return clred_fail_cl(err, "uploading to the device");
    ctx->timing.upload_bytes += bytes;
    ctx->timing.uploads++;
    clred_event_track(ctx, ev, CLRED_EV_UPLOAD, "upload", bytes, t);
    clred_events_collect(ctx, 1); /* blocking and in order: everything before it has finished */
    return CLRED_OK;
}

/* What an owned upload frees when it completes. */
typedef struct {
    void *host;
    void (*release)(void *);
} owned_host;

static void CL_CALLBACK release_owned(cl_event ev, cl_int status, void *user)
{
    (void)ev;
    (void)status;
    owned_host *o = user;
    o->release(o->host);
    free(o);
}

clred_status clred_upload_owned(clred_ctx *ctx, cl_mem buf, size_t bytes, void *host, void (*release)(void *),
                                cl_event after)
{
    owned_host *o = malloc(sizeof *o);
    if (!o) {
        release(host);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for an upload");
    }
    o->host = host;
    o->release = release;
    cl_int err = CL_SUCCESS;
    if (!ctx->xfer_queue)
        ctx->xfer_queue = clCreateCommandQueue(ctx->context, ctx->device, CL_QUEUE_PROFILING_ENABLE, &err);
    if (err != CL_SUCCESS) {
        ctx->xfer_queue = NULL;
        release(host);
        free(o);
        return clred_fail_cl(err, "creating the transfer queue");
    }
    cl_event ev;
    double t = clred_now();
    err = clEnqueueWriteBuffer(ctx->xfer_queue, buf, CL_FALSE, 0, bytes, host, after ? 1 : 0, after ? &after : NULL,
                               &ev);
    if (err == CL_SUCCESS)
        clFlush(ctx->xfer_queue);
    if (err != CL_SUCCESS) {
        release(host);
        free(o);
        return clred_fail_cl(err, "uploading to the device");
    }
    /* The main queue's next commands wait for the copy; the host memory goes
     * back as soon as it is done. */
    cl_int err2 = clEnqueueBarrierWithWaitList(ctx->queue, 1, &ev, NULL);
    cl_int err3 = clSetEventCallback(ev, CL_COMPLETE, release_owned, o);
    if (err3 != CL_SUCCESS) { /* no callback: wait here and release now */
        clWaitForEvents(1, &ev);
        release_owned(ev, CL_COMPLETE, o);
    }
    ctx->timing.upload_bytes += bytes;
    ctx->timing.uploads++;
    clred_event_track_async(ctx, ev, CLRED_EV_UPLOAD, "upload", bytes, t);
    return err2 == CL_SUCCESS ? CLRED_OK : clred_fail_cl(err2, "ordering an upload before the kernels");
}

clred_status clred_download(clred_ctx *ctx, cl_mem buf, size_t offset, size_t bytes, void *host)
{
    if (bytes == 0)
        return CLRED_OK;
    cl_event ev;
    double t = clred_now();
    cl_int err = clEnqueueReadBuffer(ctx->queue, buf, CL_TRUE, offset, bytes, host, 0, NULL, &ev);
    if (err != CL_SUCCESS)
        return clred_fail_cl(err, "downloading from the device");
    ctx->timing.download_bytes += bytes;
    ctx->timing.downloads++;
    clred_event_track(ctx, ev, CLRED_EV_DOWNLOAD, "download", bytes, t);
    clred_events_collect(ctx, 1);
    return CLRED_OK;
}

clred_status clred_fill_zero(clred_ctx *ctx, cl_mem buf, size_t bytes)
{
    const cl_uchar zero = 0;
    cl_int err = clEnqueueFillBuffer(ctx->queue, buf, &zero, 1, 0, bytes, 0, NULL, NULL);
    if (err != CL_SUCCESS)
        return clred_fail_cl(err, "clearing a device buffer");
    return CLRED_OK;
}

clred_status clred_copy(clred_ctx *ctx, cl_mem src, cl_mem dst, size_t bytes)
{
    return clred_copy_region(ctx, src, 0, dst, 0, bytes);
}

clred_status clred_copy_region(clred_ctx *ctx, cl_mem src, size_t src_offset, cl_mem dst, size_t dst_offset,
                               size_t bytes)
{
    if (bytes == 0)
        return CLRED_OK;
    cl_event ev;
    double t = clred_now();
    cl_int err = clEnqueueCopyBuffer(ctx->queue, src, dst, src_offset, dst_offset, bytes, 0, NULL, &ev);
    if (err != CL_SUCCESS)
        return clred_fail_cl(err, "copying a device buffer");
    clred_event_track(ctx, ev, CLRED_EV_COPY, "device copy", bytes, t);
    return CLRED_OK;
}

void clred_release(cl_mem *buf)
{
    if (*buf) {
        clReleaseMemObject(*buf);
        *buf = NULL;
    }
}

clred_status clred_args(cl_kernel k, const char *name, ...)
{
    va_list ap;
    va_start(ap, name);
    cl_uint index = 0;
    for (;;) {
        size_t size = va_arg(ap, size_t);
        if (size == 0)
            break;
        const void *value = va_arg(ap, const void *);
        cl_int err = clSetKernelArg(k, index, size, value);
        if (err != CL_SUCCESS) {
            va_end(ap);
            char msg[160];
            snprintf(msg, sizeof msg, "setting argument %u of kernel %s", index, name);
            return clred_fail_cl(err, msg);
        }
        index++;
    }
    va_end(ap);
    return CLRED_OK;
}

static void CL_CALLBACK release_lock(cl_event ev, cl_int status, void *fd)
{
    (void)ev;
    (void)status;
    close((int)(intptr_t)fd); /* releases the flock */
}

/* Keeps a first launch's lock (clred_first_launch_lock) until the launch,
 * and so its compile, completes; flushed so that it starts without this
 * thread, which may next wait for another process's lock. */
static void hold_until_complete(clred_ctx *ctx, cl_event ev, int lock)
{
    if (clSetEventCallback(ev, CL_COMPLETE, release_lock, (void *)(intptr_t)lock) != CL_SUCCESS) {
        clWaitForEvents(1, &ev);
        close(lock);
    }
    clFlush(ctx->queue);
}

clred_status clred_run(clred_ctx *ctx, cl_kernel k, const char *name, cl_uint dims, const size_t *global,
                       const size_t *local)
{
    for (cl_uint d = 0; d < dims; d++)
        if (global[d] == 0)
            return CLRED_OK;
    cl_event ev;
    double t = clred_now();
    int lock = clred_first_launch_lock(ctx, k, dims, global, local);
    cl_int err = clEnqueueNDRangeKernel(ctx->queue, k, dims, NULL, global, local, 0, NULL, &ev);
    if (err != CL_SUCCESS) {
        if (lock >= 0)
            close(lock);
        char msg[160];
        snprintf(msg, sizeof msg, "running kernel %s", name);
        return clred_fail_cl(err, msg);
    }
    if (lock >= 0)
        hold_until_complete(ctx, ev, lock);
    ctx->timing.kernels++;
    clred_event_track(ctx, ev, CLRED_EV_KERNEL, name, 0, t);
    return CLRED_OK;
}

/* A fixed work-group shape (64, or 16 x 8) capped by the kernel's
 * CL_KERNEL_WORK_GROUP_SIZE, the global size rounded up to it: the kernels
 * check their bounds. POCL compiles a kernel once per work-group shape, so a
 * NULL local size would cost a fresh compile for every image size. */
clred_status clred_run_tiled(clred_ctx *ctx, cl_kernel k, const char *name, cl_uint dims, const size_t *global)
{
    for (cl_uint d = 0; d < dims; d++)
        if (global[d] == 0)
            return CLRED_OK;
    size_t wg = 0;
    if (clGetKernelWorkGroupInfo(k, ctx->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof wg, &wg, NULL) != CL_SUCCESS ||
        wg == 0)
        wg = 1;
    size_t local[2] = {dims == 1 ? 64 : 16, dims == 1 ? 1 : 8};
    while (local[0] * local[1] > wg && local[1] > 1)
        local[1] /= 2;
    while (local[0] * local[1] > wg && local[0] > 1)
        local[0] /= 2;
    size_t rounded[2] = {clred_round_up(global[0], local[0]), dims == 2 ? clred_round_up(global[1], local[1]) : 1};
    return clred_run(ctx, k, name, dims, rounded, local);
}

clred_status clred_run_rows(clred_ctx *ctx, cl_kernel k, const char *name, const size_t *global)
{
    if (global[0] == 0 || global[1] == 0)
        return CLRED_OK;
    size_t wg = 0;
    if (clGetKernelWorkGroupInfo(k, ctx->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof wg, &wg, NULL) != CL_SUCCESS ||
        wg == 0)
        wg = 1;
    /* one shape whatever the width: POCL compiles a kernel once per shape */
    size_t local[2] = {256, 1};
    while (local[0] > wg)
        local[0] /= 2;
    size_t rounded[2] = {clred_round_up(global[0], local[0]), global[1]};
    return clred_run(ctx, k, name, 2, rounded, local);
}

clred_status clred_run_items(clred_ctx *ctx, cl_kernel k, const char *name, size_t n)
{
    if (n == 0)
        return CLRED_OK;
    size_t multiple = 0, wg = 0;
    if (ctx->info.is_cpu || clGetKernelWorkGroupInfo(k, ctx->device, CL_KERNEL_PREFERRED_WORK_GROUP_SIZE_MULTIPLE,
                                                     sizeof multiple, &multiple, NULL) != CL_SUCCESS ||
        multiple == 0)
        multiple = 1;
    if (clGetKernelWorkGroupInfo(k, ctx->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof wg, &wg, NULL) == CL_SUCCESS &&
        wg > 0 && multiple > wg)
        multiple = wg;
    size_t global = clred_round_up(n, multiple);
    return clred_run(ctx, k, name, 1, &global, &multiple);
}
