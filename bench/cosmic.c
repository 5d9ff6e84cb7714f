/* Cosmic rays on single.fits (clred_cosmic with astroscrappy's settings:
 * sigclip 4.5, sigfrac 0.3, objlim 5, 4 iterations, true medians), in memory
 * and file in to file out. The cleaned frame and its mask go to
 * OUT/clred_cosmic.fits for bench/peers.py to compare with
 * astroscrappy.detect_cosmics (sepmed=False, cleantype='medmask'). */
#include <stdlib.h>
#include <string.h>

#include "bench.h"

/* single.fits is in electrons, made with a read noise of 5 e-. sepmed 0:
 * true medians; 1: separable medians, astroscrappy's default. */
static clred_cosmic_opts cosmic_opts(int sepmed)
{
    clred_cosmic_opts o = clred_cosmic_defaults();
    o.sigclip = 4.5;
    o.sigfrac = 0.3;
    o.objlim = 5.0;
    o.max_iters = 4;
    o.gain = 1.0;
    o.readnoise = 5.0;
    o.sepmed = sepmed;
    return o;
}

/* clred_cosmic repairs in place and adds a mask: every repetition starts
 * from the frame as read. */
static void restore(clred_image *img, const float *original)
{
    memcpy(img->sci, original, img->width * img->height * sizeof *img->sci);
    free(img->mask);
    img->mask = NULL;
}

static clred_status cosmic_memory(bench_run *run, clred_image *img, int sepmed, bench_result *res, size_t *found)
{
    size_t n = img->width * img->height;
    float *original = malloc(n * sizeof *original);
    if (!original)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for a %zu-pixel frame", n);
    memcpy(original, img->sci, n * sizeof *original);
    clred_cosmic_opts opts = cosmic_opts(sepmed);
    clred_status st = CLRED_OK;
    for (int rep = 0; rep <= run->repeat && st == CLRED_OK; rep++) {
        restore(img, original);
        clred_cosmic_info info;
        clred_ctx_timing_reset(run->ctx);
        double t0 = clred_now();
        st = clred_cosmic(run->ctx, img, &opts, &info);
        if (st == CLRED_OK && rep > 0) {
            bench_keep_best(res, run->ctx, clred_now() - t0);
            *found = info.ncosmic;
        }
    }
    /* The last repetition's result, for the peers to compare with. */
    if (st == CLRED_OK && res->output[0])
        st = clred_image_write(res->output, img, 1);
    restore(img, original);
    free(original);
    return st;
}

static clred_status cosmic_files(bench_run *run, const char *path, bench_result *res, size_t *found)
{
    clred_cosmic_opts opts = cosmic_opts(0);
    clred_status st = CLRED_OK;
    for (int rep = 0; rep <= run->repeat && st == CLRED_OK; rep++) {
        clred_image img;
        memset(&img, 0, sizeof img);
        clred_cosmic_info info;
        clred_ctx_timing_reset(run->ctx);
        double t0 = clred_now();
        st = clred_image_read(path, 0, &img);
        if (st == CLRED_OK)
            st = clred_cosmic(run->ctx, &img, &opts, &info);
        if (st == CLRED_OK)
            st = clred_image_write(res->output, &img, 1);
        clred_image_free(&img);
        if (st == CLRED_OK && rep > 0) {
            bench_keep_best(res, run->ctx, clred_now() - t0);
            *found = info.ncosmic;
        }
    }
    return st;
}

clred_status bench_cosmic(bench_run *run, bench_results *out)
{
    char path[BENCH_PATH];
    bench_dir_path(run->dir, "single.fits", path, sizeof path);
    clred_image img;
    memset(&img, 0, sizeof img);
    CLRED_TRY(clred_image_read(path, 0, &img));
    /* The least it moves: the frame read, the cleaned frame and mask written. */
    double bytes = (double)img.width * (double)img.height * 10.0;
    size_t found = 0;
    bench_result *rm = bench_results_add(out, "cosmic", "memory");
    clred_status st = rm ? cosmic_memory(run, &img, 0, rm, &found) : clred_fail(CLRED_ERR_MEMORY, "out of memory");
    if (st != CLRED_OK) {
        if (rm)
            out->n--;
        clred_image_free(&img);
        return st;
    }
    rm->model_bytes = bytes;
    snprintf(rm->note, sizeof rm->note, "%zu pixels flagged", found);
    bench_result *rs = bench_results_add(out, "cosmic-sepmed", "memory");
    if (rs) {
        snprintf(rs->output, sizeof rs->output, "%s/clred_cosmic_sepmed.fits", run->out);
        st = cosmic_memory(run, &img, 1, rs, &found);
    } else {
        st = clred_fail(CLRED_ERR_MEMORY, "out of memory for results");
    }
    clred_image_free(&img);
    if (st != CLRED_OK) {
        if (rs)
            out->n--;
        return st;
    }
    rs->model_bytes = bytes;
    snprintf(rs->note, sizeof rs->note, "%zu pixels flagged; separable medians", found);
    bench_result *rf = bench_results_add(out, "cosmic", "files");
    if (!rf)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for results");
    rf->model_bytes = bytes;
    snprintf(rf->output, sizeof rf->output, "%s/clred_cosmic.fits", run->out);
    st = cosmic_files(run, path, rf, &found);
    if (st != CLRED_OK) {
        out->n--;
        return st;
    }
    snprintf(rf->note, sizeof rf->note, "%zu pixels flagged", found);
    return CLRED_OK;
}
