/* clred-bench: times clred's steps on frames written by `clred-bench gen`,
 * in memory and files-in-to-file-out, with the kernel and transfer times from
 * the context's profiling events, and writes one JSON document per run that
 * bench/report.py turns into tables and plots. */
#ifndef CLRED_BENCH_H
#define CLRED_BENCH_H

#include <stdint.h>
#include <stdio.h>

#include "internal.h"

#define BENCH_DIR 2048  /* a folder given on the command line */
#define BENCH_PATH 4096 /* a file inside one: room for any name gcc can see */

/* Where a run's frames and outputs live and how it is timed. */
typedef struct {
    char dir[BENCH_DIR]; /* frames from `clred-bench gen` */
    char out[BENCH_DIR]; /* clred's outputs, compared with the peers' */
    size_t size, depth;   /* frames are size x size, depth of them */
    size_t ncal;          /* frames calibrated (the first ncal of the stack) */
    int repeat;           /* timed repetitions after one warm-up; the best is kept */
    clred_ctx *ctx;
    double copy_gbps;     /* measured by bench_copy, 0 until then */
    double fma_gflops;    /* measured by bench_fma, 0 until then */
} bench_run;

#define BENCH_KERNELS 8 /* kernels per step kept in the results */

/* One timed step: the best repetition's figures. */
typedef struct {
    char step[32];      /* "median", "sigclip", "calibrate", "copy", "memlimit" */
    char mode[24];      /* "memory" (host frames in, host image out), "files", "floor-rename", ... */
    double wall_s;      /* end to end as the caller sees it */
    double kernel_s;    /* from profiling events (clred_ctx_timing) */
    double upload_s, download_s;
    uint64_t upload_bytes, download_bytes;
    double model_bytes; /* the least the kernels must read and write (see README) */
    /* Clipping rounds per pixel the result shows at least (1 + the fraction
     * of pixels that rejected a value: such a pixel clipped in one round and
     * confirmed in another); 0 where no clipping ran. roofline.py counts the
     * rounds' operations with it instead of assuming a number. */
    double clip_rounds;
    int repeats;
    /* Device time per kernel name in the kept repetition, longest first (the
     * roofline report names where a step's time goes). */
    clred_kernel_time kernels[BENCH_KERNELS];
    size_t nkernels;
    char output[BENCH_PATH]; /* a file the peers compare with, or "" */
    char note[256];
} bench_result;

/* Results collected over a run, written as JSON at the end. */
typedef struct {
    bench_result *items;
    size_t n, cap;
} bench_results;

bench_result *bench_results_add(bench_results *r, const char *step, const char *mode);
void bench_results_free(bench_results *r);

/* Fills the timing fields of res from the context's counters since the last
 * clred_ctx_timing_reset, keeping the repetition with the smallest wall time. */
/* CPU seconds of this process, all its threads (POCL's included). */
double bench_cpu_s(void);
void bench_keep_best(bench_result *res, clred_ctx *ctx, double wall_s);

/* Steps. Each adds its results and returns CLRED_OK, or a status with
 * clred_last_error() set. */
clred_status bench_copy(bench_run *run, bench_results *out);
clred_status bench_fma(bench_run *run, bench_results *out);
clred_status bench_combine(bench_run *run, bench_results *out);
clred_status bench_calibrate(bench_run *run, bench_results *out);
clred_status bench_memlimit(bench_run *run, bench_results *out);
clred_status bench_stats(bench_run *run, bench_results *out);
clred_status bench_detect(bench_run *run, bench_results *out);
clred_status bench_background(bench_run *run, bench_results *out);
clred_status bench_cosmic(bench_run *run, bench_results *out);
clred_status bench_register(bench_run *run, bench_results *out);
clred_status bench_photometry(bench_run *run, bench_results *out);

/* Frame generation: writes the frames a run reads (see frames.c). */
typedef struct {
    size_t size, depth;
    uint64_t seed;
    double exptime; /* of the raw frames, seconds */
} bench_gen_opts;
clred_status bench_generate(const char *dir, const bench_gen_opts *opts);

/* File names inside a run's directories. */
void bench_raw_path(const bench_run *run, size_t i, char *path, size_t size);
/* The first BENCH_RAW16_FRAMES raw frames are also written as unsigned 16-bit
 * integers (rawu16_NNN.fits), as a CCD delivers them: the calibration's
 * files-in benchmark reads those. */
#define BENCH_RAW16_FRAMES 10
void bench_raw16_path(const bench_run *run, size_t i, char *path, size_t size);
void bench_dir_path(const char *dir, const char *name, char *path, size_t size);

/* JSON output. */
void bench_json_string(FILE *f, const char *s);
void bench_write_json(FILE *f, const bench_run *run, const bench_results *r);

/* Max |a - b| over n values, NaN matching NaN (a NaN against a number is +inf). */
double bench_max_abs_diff(const float *a, const float *b, size_t n);

#endif
