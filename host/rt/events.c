/* Enqueued commands and their timing. Kernels and transfers are enqueued
 * without waiting; their profiling times are read later, when a blocking
 * transfer or clred_sync has the queue drained, so the host never stalls
 * just to time a kernel. With tracing on, every command and every host span
 * (file reads, writes) is kept for a Chrome trace-event file. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "json.h"

#define PENDING_MAX 1024

typedef struct {
    cl_event ev;
    clred_event_kind kind;
    char name[40];
    size_t bytes;
    double t_enqueue;
    int async; /* on the transfer queue: not ordered with the main queue */
} pending;

typedef struct {
    char lane[24];
    char name[48];
    double t0, t1; /* host clock, seconds */
    size_t bytes;  /* a transfer's size (0 for kernels and host spans) */
} span;

typedef struct clred_events {
    pending p[PENDING_MAX];
    size_t n;
    /* Device time per kernel name since the last timing reset, for the
     * benchmarks' roofline; names past the table's end go uncounted here
     * (they are still in ctx->timing). */
    clred_kernel_time profile[CLRED_PROFILE_MAX];
    size_t nprofile;
    /* The trace (when on), shared with reader threads: guarded by lock. */
    pthread_mutex_t lock;
    int tracing;
    double t_origin;
    span *spans;
    size_t nspans, cap;
} clred_events;

static clred_events *events_of(clred_ctx *ctx)
{
    if (!ctx->events) {
        ctx->events = calloc(1, sizeof *ctx->events);
        if (ctx->events)
            pthread_mutex_init(&ctx->events->lock, NULL);
    }
    return ctx->events;
}

static void add_span(clred_events *e, const char *lane, const char *name, double t0, double t1, size_t bytes)
{
    pthread_mutex_lock(&e->lock);
    if (e->tracing) {
        if (e->nspans == e->cap) {
            size_t cap = e->cap ? 2 * e->cap : 1024;
            span *s = realloc(e->spans, cap * sizeof *s);
            if (s) {
                e->spans = s;
                e->cap = cap;
            }
        }
        if (e->nspans < e->cap) {
            span *s = &e->spans[e->nspans++];
            snprintf(s->lane, sizeof s->lane, "%s", lane);
            snprintf(s->name, sizeof s->name, "%s", name);
            s->t0 = t0;
            s->t1 = t1;
            s->bytes = bytes;
        }
    }
    pthread_mutex_unlock(&e->lock);
}

static const char *lane_of(clred_event_kind k)
{
    switch (k) {
    case CLRED_EV_UPLOAD: return "device: uploads";
    case CLRED_EV_DOWNLOAD: return "device: downloads";
    case CLRED_EV_COPY: return "device: copies";
    default: return "device: kernels";
    }
}

static void profile_add(clred_events *e, const char *name, double run)
{
    size_t i = 0;
    while (i < e->nprofile && strcmp(e->profile[i].name, name) != 0)
        i++;
    if (i == e->nprofile) {
        if (i == CLRED_PROFILE_MAX)
            return;
        memset(&e->profile[i], 0, sizeof e->profile[i]);
        snprintf(e->profile[i].name, sizeof e->profile[i].name, "%s", name);
        e->nprofile++;
    }
    e->profile[i].seconds += run;
    e->profile[i].launches++;
}

size_t clred_kernel_profile(clred_ctx *ctx, clred_kernel_time *out, size_t max)
{
    clred_sync(ctx);
    clred_events *e = ctx->events;
    size_t n = e ? (e->nprofile < max ? e->nprofile : max) : 0;
    for (size_t i = 0; i < n; i++)
        out[i] = e->profile[i];
    return e ? e->nprofile : 0;
}

void clred_kernel_profile_reset(clred_ctx *ctx)
{
    if (ctx->events)
        ctx->events->nprofile = 0;
}

/* Reads one finished event's times into the timing and the trace. Device
 * timestamps are put on the host clock through the event's own queued time,
 * taken as the host time of its enqueue. */
static void account(clred_ctx *ctx, clred_events *e, const pending *p)
{
    cl_ulong tq = 0, t0 = 0, t1 = 0;
    int ok = clGetEventProfilingInfo(p->ev, CL_PROFILING_COMMAND_QUEUED, sizeof tq, &tq, NULL) == CL_SUCCESS &&
             clGetEventProfilingInfo(p->ev, CL_PROFILING_COMMAND_START, sizeof t0, &t0, NULL) == CL_SUCCESS &&
             clGetEventProfilingInfo(p->ev, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL) == CL_SUCCESS;
    double run = ok && t1 > t0 ? (double)(t1 - t0) * 1e-9 : 0.0;
    switch (p->kind) {
    case CLRED_EV_KERNEL:
        ctx->timing.kernel_s += run;
        profile_add(e, p->name, run);
        break;
    case CLRED_EV_UPLOAD: ctx->timing.upload_s += run; break;
    case CLRED_EV_DOWNLOAD: ctx->timing.download_s += run; break;
    case CLRED_EV_COPY:
        ctx->timing.kernel_s += run;
        profile_add(e, p->name, run);
        break;
    }
    if (ok && e->tracing && t0 >= tq) {
        double start = p->t_enqueue + (double)(t0 - tq) * 1e-9;
        add_span(e, lane_of(p->kind), p->name, start, start + run, p->kind == CLRED_EV_KERNEL ? 0 : p->bytes);
    }
}

void clred_events_collect(clred_ctx *ctx, int all_finished)
{
    clred_events *e = ctx->events;
    if (!e)
        return;
    size_t kept = 0;
    for (size_t i = 0; i < e->n; i++) {
        cl_int status = CL_COMPLETE;
        if (!all_finished || e->p[i].async)
            clGetEventInfo(e->p[i].ev, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof status, &status, NULL);
        if (status == CL_COMPLETE || status < 0) {
            account(ctx, e, &e->p[i]);
            clReleaseEvent(e->p[i].ev);
        } else {
            e->p[kept++] = e->p[i];
        }
    }
    e->n = kept;
}

static void track(clred_ctx *ctx, cl_event ev, clred_event_kind kind, const char *name, size_t bytes,
                  double t_enqueue, int async)
{
    clred_events *e = events_of(ctx);
    if (!e) {
        clReleaseEvent(ev);
        return;
    }
    if (e->n == PENDING_MAX) {
        clred_sync(ctx);
    }
    pending *p = &e->p[e->n++];
    p->ev = ev;
    p->kind = kind;
    snprintf(p->name, sizeof p->name, "%s", name ? name : "");
    p->bytes = bytes;
    p->t_enqueue = t_enqueue;
    p->async = async;
}

void clred_event_track(clred_ctx *ctx, cl_event ev, clred_event_kind kind, const char *name, size_t bytes,
                       double t_enqueue)
{
    track(ctx, ev, kind, name, bytes, t_enqueue, 0);
}

void clred_event_track_async(clred_ctx *ctx, cl_event ev, clred_event_kind kind, const char *name, size_t bytes,
                             double t_enqueue)
{
    track(ctx, ev, kind, name, bytes, t_enqueue, 1);
}

clred_status clred_sync(clred_ctx *ctx)
{
    cl_int err = ctx->xfer_queue ? clFinish(ctx->xfer_queue) : CL_SUCCESS;
    if (err == CL_SUCCESS)
        err = clFinish(ctx->queue);
    clred_events_collect(ctx, 1);
    return err == CL_SUCCESS ? CLRED_OK : clred_fail_cl(err, "waiting for the device");
}

void clred_trace_host(clred_ctx *ctx, const char *lane, const char *name, double t0, double t1)
{
    clred_events *e = ctx->events;
    if (e && e->tracing)
        add_span(e, lane, name, t0, t1, 0);
}

void clred_events_release(clred_ctx *ctx)
{
    clred_events *e = ctx->events;
    if (!e)
        return;
    if (ctx->xfer_queue)
        clFinish(ctx->xfer_queue);
    clFinish(ctx->queue);
    for (size_t i = 0; i < e->n; i++)
        clReleaseEvent(e->p[i].ev);
    pthread_mutex_destroy(&e->lock);
    free(e->spans);
    free(e);
    ctx->events = NULL;
}

/* ---- public: the trace */

clred_status clred_ctx_trace_start(clred_ctx *ctx)
{
    clred_events *e = events_of(ctx);
    if (!e)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory starting a trace");
    CLRED_TRY(clred_sync(ctx));
    pthread_mutex_lock(&e->lock);
    e->tracing = 1;
    e->nspans = 0;
    e->t_origin = clred_now();
    pthread_mutex_unlock(&e->lock);
    return CLRED_OK;
}

/* Lanes become threads of one process in the viewer, numbered in order of
 * first appearance. */
static int lane_id(char lanes[][24], size_t *nlanes, const char *lane)
{
    for (size_t i = 0; i < *nlanes; i++)
        if (strcmp(lanes[i], lane) == 0)
            return (int)i + 1;
    if (*nlanes == 64)
        return 64;
    snprintf(lanes[*nlanes], 24, "%s", lane);
    return (int)++*nlanes;
}

clred_status clred_ctx_trace_write(clred_ctx *ctx, const char *path)
{
    clred_events *e = ctx->events;
    if (!e || !e->tracing)
        return clred_fail(CLRED_ERR_USAGE, "trace %s: no trace was started on this context", path);
    CLRED_TRY(clred_sync(ctx));
    FILE *f;
    char tmp[4096];
    CLRED_TRY(clred_atomic_open(path, 1, tmp, sizeof tmp, &f));
    char lanes[64][24];
    size_t nlanes = 0;
    pthread_mutex_lock(&e->lock);
    fprintf(f, "{\"displayTimeUnit\": \"ms\", \"traceEvents\": [\n");
    for (size_t i = 0; i < e->nspans; i++) {
        const span *s = &e->spans[i];
        int tid = lane_id(lanes, &nlanes, s->lane);
        fprintf(f, "{\"name\": ");
        clred_json_quote(f, s->name);
        fprintf(f, ", \"cat\": ");
        clred_json_quote(f, s->lane);
        fprintf(f, ", \"ph\": \"X\", \"pid\": 1, \"tid\": %d, \"ts\": %.3f, \"dur\": %.3f", tid,
                (s->t0 - e->t_origin) * 1e6, (s->t1 - s->t0) * 1e6);
        if (s->bytes)
            fprintf(f, ", \"args\": {\"bytes\": %zu}", s->bytes);
        fprintf(f, "},\n");
    }
    for (size_t i = 0; i < nlanes; i++)
        fprintf(f, "{\"name\": \"thread_name\", \"ph\": \"M\", \"pid\": 1, \"tid\": %zu, \"args\": {\"name\": \"%s\"}}%s\n",
                i + 1, lanes[i], i + 1 < nlanes ? "," : "");
    if (nlanes == 0)
        fprintf(f, "{\"name\": \"process_name\", \"ph\": \"M\", \"pid\": 1, \"args\": {\"name\": \"clred\"}}\n");
    fprintf(f, "]}\n");
    pthread_mutex_unlock(&e->lock);
    return clred_atomic_close(f, tmp, path);
}
