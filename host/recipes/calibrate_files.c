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

/* The first failed write, reported by the writer's thread. */
typedef struct {
    atomic_int failed;
    clred_status st;
    char message[1024];
} write_errors;

static void written(void *user, size_t index, clred_status st, const char *message)
{
    (void)index;
    write_errors *e = user;
    if (st == CLRED_OK || atomic_load(&e->failed))
        return;
    e->st = st;
    snprintf(e->message, sizeof e->message, "%s", message ? message : "write failed");
    atomic_store(&e->failed, 1);
}

/* The calibrated frame in host memory with the planes that are needed. */
static clred_status download(const clred_dimage *d, int with_var, int with_mask, clred_image *out)
{
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

/* One raw frame read, calibrated on the device and brought down. */
static clred_status calibrate_one(clred_calibrator *cal, clred_ctx *ctx, clred_image *raw, const char *name,
                                  const clred_calib_files_opts *o, clred_image *out)
{
    /* SCI and the header are all the calibration reads */
    clred_image sci_only = {raw->width, raw->height, raw->sci, NULL, NULL, raw->header};
    clred_dimage *view = NULL, *d = NULL;
    clred_status st = clred_dimage_borrow(ctx, &sci_only, &view);
    if (st == CLRED_OK)
        st = clred_calibrator_apply_dev(cal, view, name, &d);
    if (st == CLRED_OK)
        st = download(d, (o->planes & CLRED_WRITE_VAR) != 0, (o->planes & CLRED_WRITE_MASK) != 0, out);
    clred_dimage_free(d);
    clred_dimage_free(view); /* the download waited for the kernels that read raw */
    return st;
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
    write_errors errors;
    memset(&errors, 0, sizeof errors);
    clred_stream_reader *r = NULL;
    clred_stream_writer *w = NULL;
    clred_status st = clred_stream_reader_start(ctx, raws, n, o.read_ahead, o.stream, 1, &r);
    if (st == CLRED_OK)
        st = clred_stream_writer_start(ctx, o.stream, 1, written, &errors, &w);
    for (size_t i = 0; i < n && st == CLRED_OK; i++) {
        clred_image raw, out;
        memset(&out, 0, sizeof out);
        st = clred_stream_reader_next(r, &raw);
        if (st == CLRED_OK) {
            st = calibrate_one(cal, ctx, &raw, raws[i], &o, &out);
            clred_image_free(&raw);
        }
        if (st == CLRED_OK && o.on_frame)
            o.on_frame(o.user, i, &out);
        if (st == CLRED_OK)
            st = clred_stream_writer_put(w, outputs[i], &out, 1, i);
        clred_image_free(&out);
        if (st == CLRED_OK && atomic_load(&errors.failed))
            st = clred_fail(errors.st, "%s", errors.message);
    }
    clred_stream_reader_finish(r, NULL);
    if (w) {
        clred_stream_writer_drain(w);
        if (st == CLRED_OK && atomic_load(&errors.failed))
            st = clred_fail(errors.st, "%s", errors.message);
        char message[1024];
        snprintf(message, sizeof message, "%s", clred_last_error());
        clred_status fin = clred_stream_writer_finish(w, st == CLRED_OK, NULL);
        if (st == CLRED_OK)
            st = fin;
        else
            clred_fail(st, "%s", message); /* the first failure's message stays */
    }
    return st;
}
