/* Registration of pair_mov.fits on pair_ref.fits (clred_measure_shift: whole
 * frame, Tukey apodisation, upsampled-DFT refinement to 0.01 px), in memory,
 * once per FFT backend built in, and a forward + inverse transform of one
 * frame per backend, which is what chooses the default backend. The measured
 * shift (default backend) goes to OUT/clred_register.json for bench/peers.py
 * to compare with the truth (SHIFTX/SHIFTY) and with scikit-image's
 * phase_cross_correlation at upsample_factor 100 (0.01 px). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "fft.h"

static const clred_fft_backend backends[] = {CLRED_FFT_CLFFT, CLRED_FFT_VKFFT};

/* Frames in the "register-stack" row: what a night's alignment does, one
 * reference spectrum reused for each frame of a 20-frame stack. */
#define STACK_FRAMES 20

static clred_status register_memory(bench_run *run, const clred_image *ref, const clred_image *mov,
                                    clred_fft_backend backend, bench_result *res, clred_shift *shift)
{
    clred_phasecorr_opts opts = clred_phasecorr_defaults();
    opts.precision = 0.01;
    opts.backend = backend;
    clred_status st = CLRED_OK;
    for (int rep = 0; rep <= run->repeat && st == CLRED_OK; rep++) {
        clred_ctx_timing_reset(run->ctx);
        double t0 = clred_now();
        st = clred_measure_shift(run->ctx, ref, mov, &opts, shift);
        if (st == CLRED_OK && rep > 0)
            bench_keep_best(res, run->ctx, clred_now() - t0);
    }
    return st;
}

/* The per-frame time of measuring a stack of STACK_FRAMES frames (pair_mov
 * each time) against one reference whose spectrum is computed once, outside
 * the timing, as clred_measure_shifts does. CLRED_BENCH_TRACE=FILE writes a
 * Chrome trace of the last repetition (where the time goes). */
static clred_status register_stack(bench_run *run, const clred_image *ref, const clred_image *mov, bench_result *res,
                                   clred_shift *shift, double *cpu_s)
{
    clred_phasecorr_opts opts = clred_phasecorr_defaults();
    opts.precision = 0.01;
    clred_dimage *dref = NULL, *dmov = NULL;
    clred_phasecorr_ref *r = NULL;
    clred_status st = clred_dimage_borrow(run->ctx, ref, &dref);
    if (st == CLRED_OK)
        st = clred_phasecorr_ref_create(run->ctx, dref, &opts, &r);
    if (st == CLRED_OK)
        st = clred_dimage_borrow(run->ctx, mov, &dmov);
    const char *trace = getenv("CLRED_BENCH_TRACE");
    for (int rep = 0; rep <= run->repeat && st == CLRED_OK; rep++) {
        if (trace && rep == run->repeat)
            st = clred_ctx_trace_start(run->ctx);
        clred_ctx_timing_reset(run->ctx);
        double t0 = clred_now(), c0 = bench_cpu_s();
        for (int i = 0; i < STACK_FRAMES && st == CLRED_OK; i++)
            st = clred_phasecorr_ref_measure(r, dmov, shift);
        double cpu = (bench_cpu_s() - c0) / STACK_FRAMES;
        if (st == CLRED_OK && rep > 0 && (rep == 1 || cpu < *cpu_s))
            *cpu_s = cpu;
        if (st == CLRED_OK && rep > 0)
            bench_keep_best(res, run->ctx, (clred_now() - t0) / STACK_FRAMES);
    }
    if (st == CLRED_OK && trace)
        st = clred_ctx_trace_write(run->ctx, trace);
    /* Per frame, like the wall time. */
    res->kernel_s /= STACK_FRAMES;
    res->upload_s /= STACK_FRAMES;
    res->download_s /= STACK_FRAMES;
    res->upload_bytes /= STACK_FRAMES;
    res->download_bytes /= STACK_FRAMES;
    clred_phasecorr_ref_free(r);
    clred_dimage_free(dmov);
    clred_dimage_free(dref);
    return st;
}

/* One forward and one inverse transform of a frame already on the device:
 * the FFT rate alone, without the registration's other kernels. */
static clred_status fft_round_trip(bench_run *run, const clred_image *img, clred_fft_backend backend,
                                   bench_result *res)
{
    size_t nx = clred_fft_good_size(img->width), ny = clred_fft_good_size(img->height);
    clred_fft_plan *plan = NULL;
    CLRED_TRY(clred_fft_plan_cached(run->ctx, backend, nx, ny, 1, &plan));
    size_t pitch = clred_fft_pitch(nx);
    float *host = calloc(pitch * ny, sizeof *host);
    if (!host)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for a %zu x %zu FFT buffer", nx, ny);
    for (size_t y = 0; y < img->height; y++)
        memcpy(host + y * pitch, img->sci + y * img->width, img->width * sizeof *host);
    cl_mem dev = NULL;
    clred_status st = clred_buffer(run->ctx, CL_MEM_READ_WRITE, clred_fft_bytes(nx, ny, 1), host, &dev, "FFT bench");
    for (int rep = 0; rep <= run->repeat && st == CLRED_OK; rep++) {
        clred_ctx_timing_reset(run->ctx);
        double t0 = clred_now();
        st = clred_fft_forward(run->ctx, plan, dev);
        if (st == CLRED_OK)
            st = clred_fft_inverse(run->ctx, plan, dev);
        if (st == CLRED_OK && rep > 0)
            bench_keep_best(res, run->ctx, clred_now() - t0);
    }
    /* A real transform of N points costs about 2.5 N log2 N flops each way. */
    double n = (double)nx * (double)ny;
    /* On a CPU device the VkFFT backend runs its power-of-two passes in
     * kernels/fft_columns.cl (host/rt/fft.c); the note says which. */
    static const char *const passes[] = {"", ", columns by clred's kernel", ", rows and columns by clred's kernels"};
    if (st == CLRED_OK && res->wall_s > 0)
        snprintf(res->note, sizeof res->note, "%zu x %zu forward + inverse, %.1f GFLOP/s%s", nx, ny,
                 2.0 * 2.5 * n * log2(n) / res->wall_s * 1e-9, passes[clred_fft_plan_columns(plan)]);
    clred_release(&dev);
    free(host);
    return st;
}

static clred_status write_shift(const char *path, const clred_shift *s, double true_dx, double true_dy,
                                const char *backend)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return clred_fail(CLRED_ERR_IO, "%s: cannot write", path);
    fprintf(f, "{\"dx\": %.6f, \"dy\": %.6f, \"psr\": %.3f, \"true_dx\": %.6f, \"true_dy\": %.6f, \"backend\": \"%s\"}\n",
            s->dx, s->dy, s->psr, true_dx, true_dy, backend);
    return fclose(f) == 0 ? CLRED_OK : clred_fail(CLRED_ERR_IO, "%s: write failed", path);
}

static clred_status register_steps(bench_run *run, const clred_image *ref, const clred_image *mov,
                                   bench_results *out)
{
    double true_dx = NAN, true_dy = NAN;
    clred_header_get_double(mov->header, "SHIFTX", &true_dx);
    clred_header_get_double(mov->header, "SHIFTY", &true_dy);
    double bytes = 2.0 * (double)ref->width * (double)ref->height * 4.0;
    clred_fft_backend def = clred_fft_resolve(CLRED_FFT_DEFAULT);
    bench_result *rs = bench_results_add(out, "register-stack", "memory");
    if (!rs)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for results");
    rs->model_bytes = (double)ref->width * (double)ref->height * 4.0;
    clred_shift ss;
    double cpu_s = NAN;
    CLRED_TRY(register_stack(run, ref, mov, rs, &ss, &cpu_s));
    snprintf(rs->note, sizeof rs->note,
             "per frame of %d, reference spectrum reused, %.4f CPU s: shift (%.3f, %.3f), error %.4f px", STACK_FRAMES,
             cpu_s, ss.dx, ss.dy, hypot(ss.dx - true_dx, ss.dy - true_dy));
    snprintf(rs->output, sizeof rs->output, "%s/clred_register_stack.json", run->out);
    CLRED_TRY(write_shift(rs->output, &ss, true_dx, true_dy, clred_fft_backend_name(def)));
    for (size_t b = 0; b < sizeof backends / sizeof *backends; b++) {
        if (!clred_fft_available(backends[b]))
            continue;
        const char *name = clred_fft_backend_name(backends[b]);
        char step[32];
        snprintf(step, sizeof step, "fft-%s", name);
        bench_result *rf = bench_results_add(out, step, "memory");
        if (!rf)
            return clred_fail(CLRED_ERR_MEMORY, "out of memory for results");
        rf->model_bytes = 4.0 * clred_fft_bytes(clred_fft_good_size(ref->width), clred_fft_good_size(ref->height), 1);
        CLRED_TRY(fft_round_trip(run, ref, backends[b], rf));

        /* The default backend's run is the "register" row the peers compare with. */
        if (backends[b] == def)
            snprintf(step, sizeof step, "register");
        else
            snprintf(step, sizeof step, "register-%s", name);
        bench_result *rr = bench_results_add(out, step, "memory");
        if (!rr)
            return clred_fail(CLRED_ERR_MEMORY, "out of memory for results");
        rr->model_bytes = bytes;
        clred_shift s;
        CLRED_TRY(register_memory(run, ref, mov, backends[b], rr, &s));
        snprintf(rr->note, sizeof rr->note, "%s: shift (%.3f, %.3f), error %.4f px, PSR %.0f", name, s.dx, s.dy,
                 hypot(s.dx - true_dx, s.dy - true_dy), s.psr);
        if (backends[b] == def) {
            snprintf(rr->output, sizeof rr->output, "%s/clred_register.json", run->out);
            CLRED_TRY(write_shift(rr->output, &s, true_dx, true_dy, name));
        }
    }
    return CLRED_OK;
}

clred_status bench_register(bench_run *run, bench_results *out)
{
    char path[BENCH_PATH];
    clred_image ref, mov;
    memset(&ref, 0, sizeof ref);
    memset(&mov, 0, sizeof mov);
    bench_dir_path(run->dir, "pair_ref.fits", path, sizeof path);
    clred_status st = clred_image_read(path, 0, &ref);
    bench_dir_path(run->dir, "pair_mov.fits", path, sizeof path);
    if (st == CLRED_OK)
        st = clred_image_read(path, 0, &mov);
    if (st == CLRED_OK)
        st = register_steps(run, &ref, &mov, out);
    clred_image_free(&ref);
    clred_image_free(&mov);
    return st;
}
