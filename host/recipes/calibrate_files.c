/* Calibrating files to files (clred_calibrate_files): the frames stream
 * through the device. The reader thread reads and decodes frame i+1 while
 * the device calibrates frame i and the writer thread writes frame i-1
 * (io/stream.c, the night's reader and writer). Each raw frame goes to the
 * device once (borrowed in place where the device shares host memory) and
 * each product comes down once, with only the planes that are written.
 * The outputs are one batch: they appear together, or none of them. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "calibrate.h"
#include "internal.h"
#include "stream.h"

clred_calib_files_opts clred_calib_files_defaults(void)
{
    clred_calib_files_opts o;
    memset(&o, 0, sizeof o);
    o.planes = CLRED_WRITE_ALL;
    o.stream = 1;
    o.read_ahead = 2;
    return o;
}

/* Frames written behind the device at most: each holds its calibrated
 * planes (device memory) until written. */
#define WRITE_BEHIND 2

/* A calibrated frame on its way to the writer. Where the device shares host
 * memory its planes are mapped and written in place (no copy, no fresh
 * pages), and given back once written; elsewhere it is downloaded once. */
typedef struct {
    clred_dimage *d;
    void *map[CLRED_NPLANES];
    clred_image view;  /* the mapped planes that are written, d's header */
    clred_image host;  /* or the download, which the writer takes */
    atomic_int written;
} frame_out;

typedef struct {
    frame_out *f;
    atomic_int failed; /* the first failed write's status and message */
    clred_status st;
    char message[1024];
} files_run;

static void written(void *user, size_t index, clred_status st, const char *message)
{
    files_run *r = user;
    if (st != CLRED_OK && !atomic_load(&r->failed)) {
        r->st = st;
        snprintf(r->message, sizeof r->message, "%s", message ? message : "write failed");
        atomic_store(&r->failed, 1);
    }
    atomic_store(&r->f[index].written, 1);
}

/* The calibrated frame in host memory with the planes that are written. */
static clred_status download(const clred_dimage *d, unsigned planes, clred_image *out)
{
    int with_var = (planes & CLRED_WRITE_VAR) != 0, with_mask = (planes & CLRED_WRITE_MASK) != 0;
    if (with_var && with_mask)
        return clred_dimage_download(d, out);
    memset(out, 0, sizeof *out);
    CLRED_TRY(clred_image_alloc_unset(out, d->width, d->height));
    clred_status st = clred_download(d->ctx, clred_dimage_sci(d), 0, clred_dimage_pixels(d) * sizeof(float), out->sci);
    if (st == CLRED_OK && (with_var || with_mask)) {
        st = clred_image_add_planes_unset(out, with_var, with_mask);
        if (st == CLRED_OK && with_var)
            st = clred_download(d->ctx, clred_dimage_var(d), 0, clred_dimage_pixels(d) * sizeof(float), out->var);
        if (st == CLRED_OK && with_mask)
            st = clred_download(d->ctx, clred_dimage_mask(d), 0, clred_dimage_pixels(d) * sizeof(uint16_t),
                                out->mask);
    }
    if (st == CLRED_OK && !(out->header = clred_header_copy(d->header)))
        st = clred_fail(CLRED_ERR_MEMORY, "out of memory copying a header");
    if (st == CLRED_OK)
        d->ctx->image_downloads++;
    else
        clred_image_free(out);
    return st;
}

/* One raw frame calibrated on the device and made ready for the writer. */
static clred_status calibrate_one(clred_calibrator *cal, clred_ctx *ctx, clred_image *raw, const char *name,
                                  unsigned planes, frame_out *f)
{
    /* SCI and the header are all the calibration reads */
    clred_image sci_only = {raw->width, raw->height, raw->sci, NULL, NULL, raw->header};
    clred_dimage *view = NULL, *d = NULL;
    clred_status st = clred_dimage_borrow(ctx, &sci_only, &view);
    /* SCI alone written: the kernel neither writes VAR and MASK nor keeps them */
    cal_frame_kind kind = {0, 0.0, planes == CLRED_WRITE_SCI};
    if (st == CLRED_OK)
        st = cal_apply_dev(cal, view, name, &kind, &d);
    if (st == CLRED_OK && ctx->unified_memory) {
        /* the blocking map waits for the kernels that read raw */
        st = clred_dimage_map_read(d, f->map);
        if (st == CLRED_OK) {
            f->d = d, d = NULL;
            clred_image v = {f->d->width, f->d->height, f->map[CLRED_PLANE_SCI],
                             (planes & CLRED_WRITE_VAR) ? f->map[CLRED_PLANE_VAR] : NULL,
                             (planes & CLRED_WRITE_MASK) ? f->map[CLRED_PLANE_MASK] : NULL, f->d->header};
            f->view = v;
        }
    } else if (st == CLRED_OK) {
        st = download(d, planes, &f->host);
    }
    clred_dimage_free(d);
    clred_dimage_free(view);
    return st;
}

/* Gives back the device images of the frames written, in order. */
static void reap(frame_out *f, size_t *reaped, size_t upto, int all)
{
    for (; *reaped < upto && (all || atomic_load(&f[*reaped].written)); ++*reaped)
        if (f[*reaped].d) {
            clred_dimage_unmap(f[*reaped].d, f[*reaped].map);
            clred_dimage_free(f[*reaped].d);
            f[*reaped].d = NULL;
        }
}

clred_status clred_calibrate_files(clred_calibrator *cal, const char *const *raws, const char *const *outputs,
                                   size_t n, const clred_calib_files_opts *opts)
{
    clred_calib_files_opts o = opts ? *opts : clred_calib_files_defaults();
    if (!cal)
        return clred_fail(CLRED_ERR_USAGE, "calibrate: no calibrator");
    if (!(o.planes & CLRED_WRITE_SCI) || (o.planes & ~(unsigned)CLRED_WRITE_ALL))
        return clred_fail(CLRED_ERR_USAGE, "calibrate: the planes written must include SCI (got %#x)", o.planes);
    for (size_t i = 0; i < n; i++) {
        if (!raws[i] || !outputs[i])
            return clred_fail(CLRED_ERR_USAGE, "calibrate: frame %zu has no %s path", i, raws[i] ? "output" : "input");
        CLRED_TRY(clred_output_check(outputs[i], raws, n, o.overwrite));
    }
    clred_ctx *ctx = cal_ctx(cal);
    files_run run;
    memset(&run, 0, sizeof run);
    if (!(run.f = calloc(n ? n : 1, sizeof *run.f)))
        return clred_fail(CLRED_ERR_MEMORY, "calibrate: out of memory for %zu frames", n);
    clred_stream_reader *r = NULL;
    clred_stream_writer *w = NULL;
    clred_status st = clred_stream_reader_start(ctx, raws, n, o.read_ahead, o.stream, 1, &r);
    if (st == CLRED_OK)
        st = clred_stream_writer_start(ctx, o.stream, 1, written, &run, &w);
    size_t reaped = 0;
    for (size_t i = 0; i < n && st == CLRED_OK; i++) {
        frame_out *f = &run.f[i];
        clred_image raw;
        st = clred_stream_reader_next(r, &raw);
        if (st == CLRED_OK) {
            st = calibrate_one(cal, ctx, &raw, raws[i], o.planes, f);
            if (st != CLRED_OK)
                clred_sync(ctx); /* a failed step may have left commands that read raw */
            clred_stream_reader_recycle(r, &raw); /* the device is done with it */
        }
        clred_image *img = f->d ? &f->view : &f->host;
        if (st == CLRED_OK && o.on_frame)
            o.on_frame(o.user, i, img);
        if (st == CLRED_OK)
            st = clred_stream_writer_put(w, outputs[i], img, f->d == NULL, i);
        clred_image_free(&f->host); /* emptied when the writer took it */
        if (st == CLRED_OK && i + 1 - reaped > WRITE_BEHIND) {
            clred_stream_writer_wait(w, WRITE_BEHIND);
        }
        reap(run.f, &reaped, i + 1, 0);
        if (st == CLRED_OK && atomic_load(&run.failed))
            st = clred_fail(run.st, "%s", run.message);
    }
    clred_stream_reader_finish(r, NULL);
    if (w) {
        clred_stream_writer_drain(w);
        if (st == CLRED_OK && atomic_load(&run.failed))
            st = clred_fail(run.st, "%s", run.message);
        char message[1024];
        snprintf(message, sizeof message, "%s", clred_last_error());
        clred_status fin = clred_stream_writer_finish(w, st == CLRED_OK, NULL);
        if (st == CLRED_OK)
            st = fin;
        else
            clred_fail(st, "%s", message); /* the first failure's message stays */
    }
    reap(run.f, &reaped, n, 1); /* every queued write is done */
    free(run.f);
    return st;
}
