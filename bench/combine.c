/* Stacking: median and sigma-clipped mean of the raw frames, in memory
 * (clred_combine_images) and files in to file out (clred_combine_files, then
 * clred_image_write_with), plus the same median under a device memory limit. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

typedef struct {
    const char *step;
    clred_combine_opts opts;
} combine_case;

/* The settings the peers use too (bench/peers.py): the median, and the mean
 * after iterative 3-sigma clipping about the median with the standard
 * deviation, up to 10 iterations, as astropy's sigma_clip(cenfunc='median',
 * stdfunc='std', maxiters=10); and the plain mean (clred alone: the stacking
 * target of issue 14 names the mean as well as the clipped mean). */
#define COMBINE_CASES 3
static void make_cases(combine_case cases[COMBINE_CASES])
{
    cases[0].step = "median";
    cases[0].opts = clred_combine_defaults();
    cases[0].opts.method = CLRED_COMBINE_MEDIAN;
    cases[1].step = "sigclip";
    cases[1].opts = clred_combine_defaults();
    cases[1].opts.method = CLRED_COMBINE_MEAN;
    cases[1].opts.reject = CLRED_REJECT_SIGCLIP;
    cases[1].opts.sigma_lower = 3.0;
    cases[1].opts.sigma_upper = 3.0;
    cases[1].opts.max_iters = 10;
    cases[1].opts.centre_mean = 0;
    cases[1].opts.spread_mad = 0;
    cases[2].step = "mean";
    cases[2].opts = clred_combine_defaults();
    cases[2].opts.method = CLRED_COMBINE_MEAN;
    cases[2].opts.reject = CLRED_REJECT_NONE;
}

/* The least a combine's kernels must move: every input plane read once, every
 * output plane written once. */
static double combine_bytes(const clred_image *in, size_t nframes, const clred_combine_result *r)
{
    double npix = (double)r->image.width * (double)r->image.height;
    double per_input = 4.0 + (in->var ? 4.0 : 0.0) + (in->mask ? 2.0 : 0.0);
    double per_output = 4.0 + (r->image.var ? 4.0 : 0.0) + (r->image.mask ? 2.0 : 0.0) + (r->ncontrib ? 4.0 : 0.0) +
                        (r->nrejected ? 4.0 : 0.0);
    return npix * ((double)nframes * per_input + per_output);
}

/* The frames' SCI planes are views of one cube (frames[0].sci is its base). */
static void free_frames(clred_image *frames, size_t n)
{
    for (size_t i = 1; i < n; i++)
        frames[i].sci = NULL;
    for (size_t i = 0; i < n; i++)
        clred_image_free(&frames[i]);
    free(frames);
}

/* In memory, the frames are one cube (frame after frame), as the peers hold
 * them (numpy.stack before numpy.median) and as a NumPy user's 3-D array is:
 * on a CPU device clred stacks such a cube in place. */
static clred_status read_frames(const bench_run *run, clred_image **out)
{
    clred_image *frames = calloc(run->depth, sizeof *frames);
    if (!frames)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu frames", run->depth);
    char path[BENCH_PATH];
    float *cube = NULL;
    for (size_t i = 0; i < run->depth; i++) {
        bench_raw_path(run, i, path, sizeof path);
        clred_status st = clred_image_read(path, 0, &frames[i]);
        size_t npix = st == CLRED_OK ? frames[i].width * frames[i].height : 0;
        if (st == CLRED_OK && i == 0 && !(cube = aligned_alloc(4096, (run->depth * npix * sizeof *cube + 4095) / 4096 * 4096)))
            st = clred_fail(CLRED_ERR_MEMORY, "out of memory for a cube of %zu frames", run->depth);
        if (st == CLRED_OK && npix != frames[0].width * frames[0].height)
            st = clred_fail(CLRED_ERR_INPUT, "%s: not the size of the first frame", path);
        if (st == CLRED_OK) {
            memcpy(cube + i * npix, frames[i].sci, npix * sizeof *cube);
            free(frames[i].sci);
            frames[i].sci = cube + i * npix;
        }
        if (st != CLRED_OK) {
            if (i > 0 && frames[i].sci != cube + i * npix) { /* its own plane: not a view */
                free(frames[i].sci);
                frames[i].sci = NULL;
            }
            if (!cube || frames[0].sci != cube)
                free(cube);
            free_frames(frames, i + 1);
            return st;
        }
    }
    *out = frames;
    return CLRED_OK;
}

static clred_status time_memory(bench_run *run, const clred_image *frames, const combine_case *c,
                                bench_result *res, clred_combine_result *keep)
{
    for (int rep = 0; rep <= run->repeat; rep++) { /* rep 0 warms up (kernel builds) */
        clred_combine_result r;
        memset(&r, 0, sizeof r);
        clred_ctx_timing_reset(run->ctx);
        double t0 = clred_now();
        CLRED_TRY(clred_combine_images(run->ctx, frames, run->depth, &c->opts, &r));
        double wall = clred_now() - t0;
        if (rep > 0)
            bench_keep_best(res, run->ctx, wall);
        res->model_bytes = combine_bytes(&frames[0], run->depth, &r);
        clred_combine_result_free(keep);
        *keep = r;
    }
    return CLRED_OK;
}

static clred_status combine_to_file(bench_run *run, const char *const *paths, const clred_combine_opts *opts,
                                    const char *output, clred_combine_result *r)
{
    memset(r, 0, sizeof *r);
    CLRED_TRY(clred_combine_files(run->ctx, paths, run->depth, opts, r));
    clred_extra_plane extra[2];
    size_t nextra = 0;
    if (r->ncontrib)
        extra[nextra++] = (clred_extra_plane){"NCONTRIB", r->ncontrib};
    if (r->nrejected)
        extra[nextra++] = (clred_extra_plane){"NREJECT", r->nrejected};
    return clred_image_write_with(output, &r->image, extra, nextra, 1);
}

static clred_status time_files(bench_run *run, const char *const *paths, const combine_case *c, bench_result *res,
                               clred_combine_result *keep)
{
    snprintf(res->output, sizeof res->output, "%s/clred_%s.fits", run->out, c->step);
    for (int rep = 0; rep <= run->repeat; rep++) {
        clred_combine_result r;
        clred_ctx_timing_reset(run->ctx);
        double t0 = clred_now();
        clred_status st = combine_to_file(run, paths, &c->opts, res->output, &r);
        double wall = clred_now() - t0;
        if (st != CLRED_OK) {
            clred_combine_result_free(&r);
            return st;
        }
        if (rep > 0)
            bench_keep_best(res, run->ctx, wall);
        clred_image dummy = {0};
        res->model_bytes = combine_bytes(&dummy, run->depth, &r);
        clred_combine_result_free(keep);
        *keep = r;
    }
    return CLRED_OK;
}

static char **raw_paths(const bench_run *run)
{
    char **paths = calloc(run->depth, sizeof *paths);
    for (size_t i = 0; paths && i < run->depth; i++) {
        paths[i] = malloc(BENCH_PATH);
        if (!paths[i]) {
            for (size_t k = 0; k < i; k++)
                free(paths[k]);
            free(paths);
            return NULL;
        }
        bench_raw_path(run, i, paths[i], BENCH_PATH);
    }
    return paths;
}

static void free_paths(char **paths, size_t n)
{
    for (size_t i = 0; paths && i < n; i++)
        free(paths[i]);
    free(paths);
}

/* At least how many clipping rounds a pixel took, on average: one, and one
 * more where the pixel kept fewer values than it had usable (it clipped in a
 * round, then a round confirmed that nothing more goes). */
static double clip_rounds(const clred_image *frames, size_t nframes, const clred_combine_result *r)
{
    size_t npix = r->image.width * r->image.height, clipped = 0;
    for (size_t p = 0; p < npix; p++) {
        size_t usable = 0;
        for (size_t f = 0; f < nframes; f++)
            usable += isfinite(frames[f].sci[p]) && !(frames[f].mask && frames[f].mask[p]);
        clipped += r->ncontrib[p] < (float)usable;
    }
    return npix ? 1.0 + (double)clipped / (double)npix : 0.0;
}

/* The in-memory and the file result must be the same image; say so. */
static void compare_modes(bench_result *res, const clred_combine_result *mem, const clred_combine_result *file)
{
    size_t n = mem->image.width * mem->image.height;
    double d = bench_max_abs_diff(mem->image.sci, file->image.sci, n);
    snprintf(res->note, sizeof res->note, "max |memory - files| = %.3g; %zu band(s)", d, file->bands);
}

static clred_status combine_case_run(bench_run *run, const clred_image *frames, char **paths, const combine_case *c,
                                     bench_results *out)
{
    clred_combine_result mem, file;
    memset(&mem, 0, sizeof mem);
    memset(&file, 0, sizeof file);
    bench_result *rm = bench_results_add(out, c->step, "memory");
    if (!rm)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for results");
    clred_status st = time_memory(run, frames, c, rm, &mem);
    bench_result *rf = st == CLRED_OK ? bench_results_add(out, c->step, "files") : NULL;
    if (st == CLRED_OK && !rf)
        st = clred_fail(CLRED_ERR_MEMORY, "out of memory for results");
    if (st == CLRED_OK)
        st = time_files(run, (const char *const *)paths, c, rf, &file);
    if (st == CLRED_OK)
        compare_modes(rf, &mem, &file);
    if (st == CLRED_OK && c->opts.reject == CLRED_REJECT_SIGCLIP && mem.ncontrib)
        rm->clip_rounds = rf->clip_rounds = clip_rounds(frames, run->depth, &mem);
    if (st != CLRED_OK)
        out->n -= rf ? 2 : 1; /* the caller records the failure instead */
    clred_combine_result_free(&mem);
    clred_combine_result_free(&file);
    return st;
}

clred_status bench_combine(bench_run *run, bench_results *out)
{
    combine_case cases[COMBINE_CASES];
    make_cases(cases);
    clred_image *frames = NULL;
    CLRED_TRY(read_frames(run, &frames));
    char **paths = raw_paths(run);
    clred_status st = paths ? CLRED_OK : clred_fail(CLRED_ERR_MEMORY, "out of memory for paths");
    for (size_t i = 0; i < COMBINE_CASES && st == CLRED_OK; i++)
        st = combine_case_run(run, frames, paths, &cases[i], out);
    free_paths(paths, run->depth);
    free_frames(frames, run->depth);
    return st;
}

/* The median of the whole stack with the device memory capped at an eighth of
 * the stack (at least 4 MiB), so that it must be done in bands; its result
 * must equal the unlimited one. */
clred_status bench_memlimit(bench_run *run, bench_results *out)
{
    combine_case cases[COMBINE_CASES];
    make_cases(cases);
    char **paths = raw_paths(run);
    if (!paths)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for paths");
    double stack_bytes = (double)run->depth * (double)run->size * (double)run->size * 4.0;
    uint64_t limit = (uint64_t)(stack_bytes / 8.0);
    if (limit < (4ull << 20))
        limit = 4ull << 20;
    clred_combine_result full, capped;
    memset(&full, 0, sizeof full);
    memset(&capped, 0, sizeof capped);
    clred_ctx_set_memory_limit(run->ctx, 0);
    clred_status st = clred_combine_files(run->ctx, (const char *const *)paths, run->depth, &cases[0].opts, &full);
    bench_result *res = NULL;
    if (st == CLRED_OK) {
        res = bench_results_add(out, "memlimit", "files");
        if (!res)
            st = clred_fail(CLRED_ERR_MEMORY, "out of memory for results");
    }
    clred_ctx_set_memory_limit(run->ctx, limit);
    /* A warm-up (smaller bands may build other kernel variants), then one timed run. */
    for (int rep = 0; rep < 2 && st == CLRED_OK; rep++) {
        clred_combine_result_free(&capped);
        clred_ctx_timing_reset(run->ctx);
        double t0 = clred_now();
        st = clred_combine_files(run->ctx, (const char *const *)paths, run->depth, &cases[0].opts, &capped);
        if (st == CLRED_OK && rep > 0) {
            bench_keep_best(res, run->ctx, clred_now() - t0);
            clred_image dummy = {0};
            res->model_bytes = combine_bytes(&dummy, run->depth, &capped);
        }
    }
    clred_ctx_set_memory_limit(run->ctx, 0);
    if (st == CLRED_OK) {
        size_t n = full.image.width * full.image.height;
        double d = bench_max_abs_diff(full.image.sci, capped.image.sci, n);
        snprintf(res->note, sizeof res->note,
                 "limit %.1f MiB, stack %.1f MiB (%.1fx the limit), %zu bands (%zu without the limit); max "
                 "|limited - unlimited| = %.3g",
                 (double)limit / 1048576.0, stack_bytes / 1048576.0, stack_bytes / (double)limit, capped.bands,
                 full.bands, d);
        if (d != 0.0)
            st = clred_fail(CLRED_ERR_DEVICE, "memlimit: the median under a %.1f MiB limit differs by %.3g",
                            (double)limit / 1048576.0, d);
    } else if (res) {
        out->n--;
    }
    clred_combine_result_free(&full);
    clred_combine_result_free(&capped);
    free_paths(paths, run->depth);
    return st;
}
