/* Idle device buffers kept for reuse. A night's frames share a few shapes, so
 * after the first frame every device image and temporary of that shape comes
 * from here instead of a fresh allocation (which on a GPU can synchronise the
 * device and on POCL page-faults a new mapping). Every buffer taken or idle
 * counts in ctx->resident_bytes, checked against the context's budget. */
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

#define POOL_MAX 32

typedef struct {
    cl_mem buf;
    size_t bytes;
    cl_event released; /* a marker on the main queue after the last command that used buf (may be NULL) */
} pool_entry;

typedef struct clred_pool clred_pool;

struct clred_pool {
    pool_entry idle[POOL_MAX];
    size_t n;
    uint64_t idle_bytes;
};

static clred_status ensure_pool(clred_ctx *ctx)
{
    if (!ctx->pool && !(ctx->pool = calloc(1, sizeof *ctx->pool)))
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for the device buffer pool");
    return CLRED_OK;
}

static void release_entry(clred_ctx *ctx, size_t i)
{
    clred_pool *p = ctx->pool;
    if (p->idle[i].released)
        clReleaseEvent(p->idle[i].released);
    clReleaseMemObject(p->idle[i].buf);
    p->idle_bytes -= p->idle[i].bytes;
    ctx->resident_bytes -= p->idle[i].bytes;
    p->idle[i] = p->idle[--p->n];
}

static double mib(uint64_t b) { return (double)b / (1024.0 * 1024.0); }

clred_status clred_pool_take(clred_ctx *ctx, size_t bytes, const char *what, cl_mem *buf)
{
    cl_event released = NULL;
    clred_status st = clred_pool_take_ordered(ctx, bytes, what, buf, &released);
    if (released)
        clReleaseEvent(released); /* main-queue users are ordered after it anyway */
    return st;
}

clred_status clred_pool_take_ordered(clred_ctx *ctx, size_t bytes, const char *what, cl_mem *buf,
                                     cl_event *released)
{
    *buf = NULL;
    *released = NULL;
    CLRED_TRY(ensure_pool(ctx));
    clred_pool *p = ctx->pool;
    if (bytes == 0)
        bytes = 4;
    for (size_t i = 0; i < p->n; i++)
        if (p->idle[i].bytes == bytes) {
            *buf = p->idle[i].buf;
            *released = p->idle[i].released;
            p->idle_bytes -= bytes;
            p->idle[i] = p->idle[--p->n];
            return CLRED_OK;
        }
    uint64_t budget = clred_ctx_total_budget(ctx);
    while (ctx->resident_bytes + bytes > budget && p->n > 0)
        release_entry(ctx, p->n - 1);
    if (ctx->resident_bytes + bytes > budget)
        return clred_fail(CLRED_ERR_DEVICE,
                          "%s: %.1f MiB more on the device would exceed clred's memory budget (%.1f MiB, %.1f MiB "
                          "held by device images); free device images or raise CLRED_MEMORY_LIMIT",
                          what, mib(bytes), mib(budget), mib(ctx->resident_bytes));
    CLRED_TRY(clred_buffer(ctx, CL_MEM_READ_WRITE, bytes, NULL, buf, what));
    ctx->resident_bytes += bytes;
    return CLRED_OK;
}

void clred_pool_give(clred_ctx *ctx, cl_mem *buf, size_t bytes)
{
    if (!*buf)
        return;
    if (bytes == 0)
        bytes = 4;
    clred_pool *p = ctx->pool;
    /* Idle buffers stay while they fit a quarter of the budget. */
    uint64_t cap = clred_ctx_total_budget(ctx) / 4;
    if (p && p->n == POOL_MAX)
        release_entry(ctx, 0);
    if (!p || p->idle_bytes + bytes > cap) {
        clReleaseMemObject(*buf);
        ctx->resident_bytes -= bytes;
    } else {
        /* Kernels that use the buffer may still be queued: a command on
         * another queue (the transfer queue) must wait for this marker. */
        cl_event marker = NULL;
        if (clEnqueueMarkerWithWaitList(ctx->queue, 0, NULL, &marker) != CL_SUCCESS)
            marker = NULL;
        p->idle[p->n].buf = *buf;
        p->idle[p->n].bytes = bytes;
        p->idle[p->n].released = marker;
        p->n++;
        p->idle_bytes += bytes;
    }
    *buf = NULL;
}

uint64_t clred_pool_idle_bytes(const clred_ctx *ctx) { return ctx->pool ? ctx->pool->idle_bytes : 0; }

void clred_pool_drain(clred_ctx *ctx)
{
    while (ctx->pool && ctx->pool->n > 0)
        release_entry(ctx, ctx->pool->n - 1);
}

void clred_pool_destroy(clred_ctx *ctx)
{
    clred_pool_drain(ctx);
    free(ctx->pool);
    ctx->pool = NULL;
}
