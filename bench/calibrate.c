/* Calibration: (raw - bias - dark * t) / flat with variance and mask for the
 * first ncal raw frames, in memory (one calibrator applied to frames already read)
 * and files in to files out (masters and up to ten raw 16-bit frames read
 * onto the device, calibrated there, outputs written). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "io_floor.h"

typedef struct {
    clred_image bias, dark, flat;
    clred_masters m;
} masters;

static void masters_free(masters *ms)
{
    clred_image_free(&ms->bias);
    clred_image_free(&ms->dark);
    clred_image_free(&ms->flat);
}

static clred_status masters_read(const bench_run *run, masters *ms)
{
    memset(ms, 0, sizeof *ms);
    char path[BENCH_PATH];
    bench_dir_path(run->dir, "bias.fits", path, sizeof path);
    clred_status st = clred_image_read(path, 0, &ms->bias);
    bench_dir_path(run->dir, "dark.fits", path, sizeof path);
    if (st == CLRED_OK)
        st = clred_image_read(path, 0, &ms->dark);
    bench_dir_path(run->dir, "flat.fits", path, sizeof path);
    if (st == CLRED_OK)
        st = clred_image_read(path, 0, &ms->flat);
    if (st != CLRED_OK) {
        masters_free(ms);
        return st;
    }
    ms->m.bias = &ms->bias;
    ms->m.dark = &ms->dark;
    ms->m.flat = &ms->flat;
    return CLRED_OK;
}

static double plane_bytes(const clred_image *img)
{
    if (!img)
        return 0.0;
    return (double)img->width * (double)img->height * (4.0 + (img->var ? 4.0 : 0.0) + (img->mask ? 2.0 : 0.0));
}

/* The least the kernels must move for one frame: the raw frame and every
 * master plane read once, the output planes written once. */
static double calibrate_bytes(const clred_image *raw, const clred_masters *m, const clred_image *out)
{
    return plane_bytes(raw) + plane_bytes(m->bias) + plane_bytes(m->dark) + plane_bytes(m->flat) + plane_bytes(out);
}

static clred_status time_memory(bench_run *run, const masters *ms, const clred_calib_opts *opts, bench_result *res)
{
    clred_image *raws = calloc(run->ncal, sizeof *raws);
    if (!raws)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu raw frames", run->ncal);
    char path[BENCH_PATH];
    clred_status st = CLRED_OK;
    for (size_t i = 0; i < run->ncal && st == CLRED_OK; i++) {
        /* the 16-bit frames where there are (as the files mode reads) */
        if (i < BENCH_RAW16_FRAMES)
            bench_raw16_path(run, i, path, sizeof path);
        else
            bench_raw_path(run, i, path, sizeof path);
        st = clred_image_read(path, 0, &raws[i]);
    }
    /* masters checked and uploaded once, as a pipeline (and the numpy peer,
     * whose masters are arrays in memory) calibrates a night's frames */
    clred_calibrator *cal = NULL;
    if (st == CLRED_OK)
        st = clred_calibrator_create(run->ctx, &ms->m, opts, &cal);
    for (int rep = 0; rep <= run->repeat && st == CLRED_OK; rep++) {
        clred_ctx_timing_reset(run->ctx);
        double bytes = 0.0, t0 = clred_now();
        for (size_t i = 0; i < run->ncal && st == CLRED_OK; i++) {
            clred_image out;
            memset(&out, 0, sizeof out);
            st = clred_calibrator_apply(cal, &raws[i], NULL, &out);
            if (st == CLRED_OK)
                bytes += calibrate_bytes(&raws[i], &ms->m, &out);
            clred_image_free(&out);
        }
        double wall = clred_now() - t0;
        if (st == CLRED_OK && rep > 0) {
            bench_keep_best(res, run->ctx, wall);
            res->model_bytes = bytes;
        }
    }
    clred_calibrator_free(cal);
    for (size_t i = 0; i < run->ncal; i++)
        clred_image_free(&raws[i]);
    free(raws);
    return st;
}

/* Files in, files out, on the device: the masters read onto it once, then
 * the raw 16-bit frames streamed through clred_calibrate_files (read ahead
 * and written behind on threads) with the planes asked for: SCI alone (what
 * the peer's script writes) or SCI, VAR and MASK. The masters are read
 * inside the timing: a script reads them too. */
static clred_status calibrate_files_once(bench_run *run, const clred_calib_opts *opts, size_t nfiles,
                                         unsigned planes, double *bytes)
{
    static const char *const names[3] = {"bias.fits", "dark.fits", "flat.fits"};
    clred_dimage *m[3] = {NULL, NULL, NULL};
    char path[BENCH_PATH];
    char raws[BENCH_RAW16_FRAMES][BENCH_PATH], outputs[BENCH_RAW16_FRAMES][BENCH_PATH];
    const char *rp[BENCH_RAW16_FRAMES], *op[BENCH_RAW16_FRAMES];
    const char *tag = planes == CLRED_WRITE_SCI ? "sci" : "cal";
    for (size_t i = 0; i < nfiles; i++) {
        bench_raw16_path(run, i, raws[i], sizeof raws[i]);
        snprintf(outputs[i], sizeof outputs[i], "%s/clred_%s_%03zu.fits", run->out, tag, i);
        rp[i] = raws[i], op[i] = outputs[i];
    }
    clred_status st = CLRED_OK;
    for (int i = 0; i < 3 && st == CLRED_OK; i++) {
        bench_dir_path(run->dir, names[i], path, sizeof path);
        st = clred_dimage_read(run->ctx, path, 0, &m[i]);
    }
    clred_calibrator *cal = NULL;
    clred_masters_dev md = {m[0], m[1], m[2], NULL, names[0], names[1], names[2], NULL};
    if (st == CLRED_OK)
        st = clred_calibrator_create_dev(run->ctx, &md, opts, &cal);
    clred_calib_files_opts fo = clred_calib_files_defaults();
    fo.planes = planes;
    fo.overwrite = 1;
    if (st == CLRED_OK)
        st = clred_calibrate_files(cal, rp, op, nfiles, &fo);
    /* the least the kernel must move: the raw frame and the three masters'
     * SCI read, the planes asked for written (SCI only: 20 bytes a pixel) */
    double npix = (double)clred_dimage_width(m[0]) * (double)clred_dimage_height(m[0]);
    *bytes = (double)nfiles * npix *
             (4.0 + 3 * 4.0 + 4.0 + ((planes & CLRED_WRITE_VAR) ? 4.0 : 0.0) + ((planes & CLRED_WRITE_MASK) ? 2.0 : 0.0));
    clred_calibrator_free(cal);
    for (int i = 0; i < 3; i++)
        clred_dimage_free(m[i]);
    return st;
}

/* One files row: the best of run->repeat runs after a warm-up, its CPU
 * seconds (all threads; the fairer figure on a shared machine) in the note. */
static clred_status time_files(bench_run *run, const clred_calib_opts *opts, size_t nfiles, unsigned planes,
                               bench_result *rf)
{
    const char *what = planes == CLRED_WRITE_SCI ? "SCI only, as the script" : "SCI+VAR+MASK";
    snprintf(rf->output, sizeof rf->output, "%s/clred_%s_000.fits", run->out,
             planes == CLRED_WRITE_SCI ? "sci" : "cal");
    clred_status st = CLRED_OK;
    double best_cpu = 0;
    for (int rep = 0; rep <= run->repeat && st == CLRED_OK; rep++) {
        double bytes = 0.0;
        clred_ctx_timing_reset(run->ctx);
        double t0 = clred_now(), c0 = bench_cpu_s();
        st = calibrate_files_once(run, opts, nfiles, planes, &bytes);
        double wall = clred_now() - t0, cpu = bench_cpu_s() - c0;
        if (st == CLRED_OK && rep > 0) {
            if (rf->repeats == 0 || wall < rf->wall_s)
                best_cpu = cpu;
            bench_keep_best(rf, run->ctx, wall);
            rf->model_bytes = bytes;
        }
    }
    snprintf(rf->note, sizeof rf->note, "%zu 16-bit frames, %s written; %.3f CPU s", nfiles, what, best_cpu);
    return st;
}

/* The I/O floor of the files rows, in the same run on the same files: the
 * masters and the raw frames read once as bytes, and clred's SCI outputs
 * (read beforehand, untimed) written once by each io_floor scheme under
 * names of their own, replacing what the warm-up wrote there as clred's and
 * the script's repetitions replace their outputs. One row per scheme; its
 * note splits read and write and gives clred's files row over the floor. */
static clred_status time_floor(bench_run *run, size_t nfiles, double files_wall, bench_results *out)
{
    static const char *const names[3] = {"bias.fits", "dark.fits", "flat.fits"};
    char inputs[3 + BENCH_RAW16_FRAMES][BENCH_PATH], path[BENCH_PATH];
    size_t nin = 0;
    for (int i = 0; i < 3; i++)
        bench_dir_path(run->dir, names[i], inputs[nin++], sizeof inputs[0]);
    for (size_t i = 0; i < nfiles; i++)
        bench_raw16_path(run, i, inputs[nin++], sizeof inputs[0]);
    char *bytes[BENCH_RAW16_FRAMES] = {NULL};
    size_t len[BENCH_RAW16_FRAMES] = {0};
    clred_status st = CLRED_OK;
    for (size_t i = 0; i < nfiles && st == CLRED_OK; i++) {
        snprintf(path, sizeof path, "%s/clred_sci_%03zu.fits", run->out, i);
        if (io_floor_read(path, &bytes[i], &len[i]) != 0)
            st = clred_fail(CLRED_ERR_IO, "%s: cannot read clred's output for the floor (%s)", path, strerror(errno));
    }
    for (int s = 0; s < IO_FLOOR_SCHEMES && st == CLRED_OK; s++) {
        char mode[24];
        snprintf(mode, sizeof mode, "floor-%s", io_floor_scheme_name((io_floor_scheme)s));
        bench_result *r = bench_results_add(out, "calibrate", mode);
        if (!r) {
            st = clred_fail(CLRED_ERR_MEMORY, "out of memory for results");
            break;
        }
        double best_read = 0, best_write = 0;
        for (int rep = 0; rep <= run->repeat && st == CLRED_OK; rep++) {
            double t0 = clred_now();
            for (size_t i = 0; i < nin && st == CLRED_OK; i++) {
                char *b;
                size_t n;
                if (io_floor_read(inputs[i], &b, &n) != 0)
                    st = clred_fail(CLRED_ERR_IO, "%s: cannot read (%s)", inputs[i], strerror(errno));
                free(b);
            }
            double t1 = clred_now();
            for (size_t i = 0; i < nfiles && st == CLRED_OK; i++) {
                snprintf(path, sizeof path, "%s/floor_%s_%03zu.fits", run->out, io_floor_scheme_name((io_floor_scheme)s), i);
                if (io_floor_write(path, bytes[i], len[i], (io_floor_scheme)s) != 0)
                    st = clred_fail(CLRED_ERR_IO, "%s: cannot write (%s)", path, strerror(errno));
            }
            double t2 = clred_now();
            if (st == CLRED_OK && rep > 0) {
                if (r->repeats == 0 || t2 - t0 < r->wall_s)
                    best_read = t1 - t0, best_write = t2 - t1;
                clred_ctx_timing_reset(run->ctx);
                bench_keep_best(r, run->ctx, t2 - t0);
            }
        }
        if (st != CLRED_OK) {
            out->n--;
            break;
        }
        snprintf(r->note, sizeof r->note, "%zu inputs read %.3f s + %zu outputs written %.3f s; clred files %.2fx this", nin,
                 best_read, nfiles, best_write, files_wall / r->wall_s);
    }
    for (size_t i = 0; i < nfiles; i++) {
        free(bytes[i]);
        for (int s = 0; s < IO_FLOOR_SCHEMES; s++) {
            snprintf(path, sizeof path, "%s/floor_%s_%03zu.fits", run->out, io_floor_scheme_name((io_floor_scheme)s), i);
            unlink(path);
        }
    }
    return st;
}

clred_status bench_calibrate(bench_run *run, bench_results *out)
{
    clred_calib_opts opts = clred_calib_defaults();
    masters ms;
    CLRED_TRY(masters_read(run, &ms));
    bench_result *rm = bench_results_add(out, "calibrate", "memory");
    clred_status st = rm ? time_memory(run, &ms, &opts, rm) : clred_fail(CLRED_ERR_MEMORY, "out of memory");
    masters_free(&ms);
    if (st != CLRED_OK) {
        if (rm)
            out->n--;
        return st;
    }
    snprintf(rm->note, sizeof rm->note, "%zu frames", run->ncal);
    size_t nfiles = run->ncal < BENCH_RAW16_FRAMES ? run->ncal : BENCH_RAW16_FRAMES;
    /* "files" writes what the peer's script writes (SCI); "files-all" the whole product */
    static const struct {
        const char *mode;
        unsigned planes;
    } rows[] = {{"files", CLRED_WRITE_SCI}, {"files-all", CLRED_WRITE_ALL}};
    for (size_t k = 0; k < 2 && st == CLRED_OK; k++) {
        bench_result *rf = bench_results_add(out, "calibrate", rows[k].mode);
        if (!rf)
            return clred_fail(CLRED_ERR_MEMORY, "out of memory for results");
        st = time_files(run, &opts, nfiles, rows[k].planes, rf);
        if (st != CLRED_OK)
            out->n--;
        else if (k == 0)
            st = time_floor(run, nfiles, rf->wall_s, out); /* rf moves as rows are added */
    }
    return st;
}
