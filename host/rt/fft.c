/* The FFT layer: clFFT and VkFFT behind plan / forward / inverse / destroy,
 * with one in-place real-to-complex layout (see fft.h) and a per-process
 * plan cache, because both libraries compile device kernels per plan. */
#include "fft.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef CLRED_HAVE_CLFFT
#include <clFFT.h>
#endif
#ifdef CLRED_HAVE_VKFFT
#include <vkFFT.h>
#endif

struct clred_fft_plan {
    clred_fft_backend backend;
    size_t nx, ny, batch;
    cl_context context;
    cl_device_id device;
#ifdef CLRED_HAVE_CLFFT
    clfftPlanHandle fwd, inv;
#endif
#ifdef CLRED_HAVE_VKFFT
    VkFFTApplication *app;
    uint64_t buffer_bytes;
    cl_mem bound; /* VkFFT keeps pointers to these two: they live in the plan */
    cl_command_queue queue;
    cl_device_id vk_device;
    cl_context vk_context;
    /* Column (and row) passes by fft_columns.cl instead of VkFFT's (see
     * vkfft_columns, vkfft_rows); with rows, no VkFFT application (app NULL).
     * Factors e^{2 pi i k / n}: col_tw n = ny, row_tw n = nx / 2, row_twr n = nx.
     * Lengths that are not powers of two run the mixed-radix kernels: col_nf,
     * row_nf radices (0: power of two), their order tables in col_order,
     * row_order (see mixed_order). */
    int columns, rows, col_nf, row_nf;
    cl_mem col_tw, row_tw, row_twr, col_order, row_order;
#endif
};

int clred_fft_available(clred_fft_backend backend)
{
    switch (backend) {
    case CLRED_FFT_CLFFT:
#ifdef CLRED_HAVE_CLFFT
        return 1;
#else
        return 0;
#endif
    case CLRED_FFT_VKFFT:
#ifdef CLRED_HAVE_VKFFT
        return 1;
#else
        return 0;
#endif
    case CLRED_FFT_DEFAULT:
        return clred_fft_available(CLRED_FFT_CLFFT) || clred_fft_available(CLRED_FFT_VKFFT);
    }
    return 0;
}

clred_fft_backend clred_fft_resolve(clred_fft_backend requested)
{
    if (requested != CLRED_FFT_DEFAULT)
        return requested;
    const char *env = getenv("CLRED_FFT");
    if (env && strcmp(env, "vkfft") == 0)
        return CLRED_FFT_VKFFT;
    if (env && strcmp(env, "clfft") == 0)
        return CLRED_FFT_CLFFT;
    /* VkFFT: bench/ (steps fft-clFFT / fft-VkFFT) measures its 2048^2 round
     * trip at about half of clFFT's time on POCL; see the README's figures. */
    return clred_fft_available(CLRED_FFT_VKFFT) ? CLRED_FFT_VKFFT : CLRED_FFT_CLFFT;
}

const char *clred_fft_backend_name(clred_fft_backend b)
{
    switch (b) {
    case CLRED_FFT_CLFFT: return "clFFT";
    case CLRED_FFT_VKFFT: return "VkFFT";
    case CLRED_FFT_DEFAULT: return "default";
    }
    return "?";
}

static int only_factors(size_t n, const unsigned *primes, size_t nprimes)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < nprimes; i++)
        while (n % primes[i] == 0)
            n /= primes[i];
    return n == 1;
}

size_t clred_fft_good_size(size_t n)
{
    static const unsigned primes[] = {2, 3, 5, 7};
    if (n < 2)
        n = 2;
    /* Beyond any image clred reads (CLRED_MAX_AXIS); a caller must refuse 0,
     * rather than search for a smooth size until m wraps. */
    if (n > ((size_t)1 << 40))
        return 0;
    for (size_t m = n + (n & 1);; m += 2)
        if (only_factors(m, primes, 4))
            return m;
}

/* ---- clFFT */

#ifdef CLRED_HAVE_CLFFT
static pthread_once_t clfft_once = PTHREAD_ONCE_INIT;
static clfftStatus clfft_setup_status = CLFFT_SUCCESS;
static int clfft_ready;

/* clfftSetup must run once per process; fft_at_exit tears it down. */
static void clfft_setup(void)
{
    /* What clfftInitSetupData does: clFFT.h defines it __inline with no
     * external definition, so an unoptimised (Debug) build cannot link a call. */
    clfftSetupData data;
    memset(&data, 0, sizeof data);
    data.major = clfftVersionMajor;
    data.minor = clfftVersionMinor;
    data.patch = clfftVersionPatch;
    data.debugFlags = 0;
    clfft_setup_status = clfftSetup(&data);
    clfft_ready = clfft_setup_status == CLFFT_SUCCESS;
}

static clred_status clfft_check(clfftStatus s, const char *what, const clred_fft_plan *p)
{
    if (s == CLFFT_SUCCESS)
        return CLRED_OK;
    return clred_fail(CLRED_ERR_DEVICE, "clFFT %s for %zu x %zu (batch %zu) failed with status %d", what, p->nx, p->ny,
                      p->batch, (int)s);
}

static clred_status clfft_make(clred_ctx *ctx, clred_fft_plan *p, int inverse, clfftPlanHandle *handle)
{
    size_t lengths[2] = {p->nx, p->ny};
    size_t real_strides[2] = {1, clred_fft_pitch(p->nx)};
    size_t cplx_strides[2] = {1, p->nx / 2 + 1};
    size_t real_dist = clred_fft_pitch(p->nx) * p->ny, cplx_dist = (p->nx / 2 + 1) * p->ny;
    CLRED_TRY(clfft_check(clfftCreateDefaultPlan(handle, ctx->context, CLFFT_2D, lengths), "plan creation", p));
    clfftStatus s = clfftSetPlanPrecision(*handle, CLFFT_SINGLE);
    if (s == CLFFT_SUCCESS)
        s = clfftSetResultLocation(*handle, CLFFT_INPLACE);
    if (s == CLFFT_SUCCESS)
        s = clfftSetPlanBatchSize(*handle, p->batch);
    if (!inverse) {
        if (s == CLFFT_SUCCESS)
            s = clfftSetLayout(*handle, CLFFT_REAL, CLFFT_HERMITIAN_INTERLEAVED);
        if (s == CLFFT_SUCCESS)
            s = clfftSetPlanInStride(*handle, CLFFT_2D, real_strides);
        if (s == CLFFT_SUCCESS)
            s = clfftSetPlanOutStride(*handle, CLFFT_2D, cplx_strides);
        if (s == CLFFT_SUCCESS)
            s = clfftSetPlanDistance(*handle, real_dist, cplx_dist);
    } else {
        if (s == CLFFT_SUCCESS)
            s = clfftSetLayout(*handle, CLFFT_HERMITIAN_INTERLEAVED, CLFFT_REAL);
        if (s == CLFFT_SUCCESS)
            s = clfftSetPlanInStride(*handle, CLFFT_2D, cplx_strides);
        if (s == CLFFT_SUCCESS)
            s = clfftSetPlanOutStride(*handle, CLFFT_2D, real_strides);
        if (s == CLFFT_SUCCESS)
            s = clfftSetPlanDistance(*handle, cplx_dist, real_dist);
        if (s == CLFFT_SUCCESS)
            s = clfftSetPlanScale(*handle, CLFFT_BACKWARD, (cl_float)(1.0 / ((double)p->nx * (double)p->ny)));
    }
    if (s == CLFFT_SUCCESS)
        s = clfftBakePlan(*handle, 1, &ctx->queue, NULL, NULL);
    return clfft_check(s, inverse ? "inverse plan" : "forward plan", p);
}

static clred_status clfft_create(clred_ctx *ctx, clred_fft_plan *p)
{
    pthread_once(&clfft_once, clfft_setup);
    if (clfft_setup_status != CLFFT_SUCCESS)
        return clred_fail(CLRED_ERR_DEVICE, "clfftSetup failed with status %d", (int)clfft_setup_status);
    CLRED_TRY(clfft_make(ctx, p, 0, &p->fwd));
    return clfft_make(ctx, p, 1, &p->inv);
}

static clred_status clfft_run(clred_ctx *ctx, clred_fft_plan *p, int inverse, cl_mem buffer)
{
    cl_event ev;
    clfftStatus s = clfftEnqueueTransform(inverse ? p->inv : p->fwd, inverse ? CLFFT_BACKWARD : CLFFT_FORWARD, 1,
                                          &ctx->queue, 0, NULL, &ev, &buffer, NULL, NULL);
    CLRED_TRY(clfft_check(s, inverse ? "inverse transform" : "forward transform", p));
    cl_int err = clWaitForEvents(1, &ev);
    clReleaseEvent(ev);
    return err == CL_SUCCESS ? CLRED_OK : clred_fail_cl(err, "waiting for a clFFT transform");
}
#endif

/* ---- VkFFT */

#ifdef CLRED_HAVE_VKFFT
static clred_status vkfft_check(VkFFTResult r, const char *what, const clred_fft_plan *p)
{
    if (r == VKFFT_SUCCESS)
        return CLRED_OK;
    return clred_fail(CLRED_ERR_DEVICE, "VkFFT %s for %zu x %zu (batch %zu) failed with VkFFTResult %d", what, p->nx,
                      p->ny, p->batch, (int)r);
}

/* kernels/fft_columns.cl's local buffers: columns of up to FFT_COLUMNS_MAX
 * values, rows of up to 2 FFT_ROWS_MAX. */
#define FFT_COLUMNS_MAX 4096
#define FFT_ROWS_MAX 4096

static int pow2_in(size_t n, size_t lo, size_t hi)
{
    return n >= lo && n <= hi && (n & (n - 1)) == 0;
}

/* The lengths the kernels transform: powers of two, or (mixed radix) with
 * the prime factors 2, 3, 5 and 7 only, as clred_fft_good_size pads to. */
static int kernel_length(size_t n, size_t lo, size_t hi)
{
    static const unsigned primes[] = {2, 3, 5, 7};
    return n >= lo && n <= hi && only_factors(n, primes, 4);
}

/* The radices of a mixed-radix length, first stage first: fours, a two,
 * then threes, fives and sevens. Returns their count. */
static int mixed_radices(size_t n, int radix[32])
{
    static const int order[] = {4, 2, 3, 5, 7};
    int nf = 0;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        while (n % (size_t)order[i] == 0) {
            radix[nf++] = order[i];
            n /= (size_t)order[i];
        }
    return nf;
}

/* fft_columns.cl's order table for a mixed-radix length n: the slot where
 * its decimation in frequency leaves bin k (k = p + r k' with p < r, the
 * first stage's radix r, goes to block p of span n / r, recursively), for
 * each k < n, then the radices. */
static clred_status mixed_order(clred_ctx *ctx, size_t n, int *nf_out, cl_mem *out)
{
    int radix[32], nf = mixed_radices(n, radix);
    cl_int *tab = malloc((n + (size_t)nf) * sizeof *tab);
    if (!tab)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for the FFT order of length %zu", n);
    for (size_t k = 0; k < n; k++) {
        size_t rest = k, span = n, slot = 0;
        for (int s = 0; s < nf; s++) {
            span /= (size_t)radix[s];
            slot += (rest % (size_t)radix[s]) * span;
            rest /= (size_t)radix[s];
        }
        tab[k] = (cl_int)slot;
    }
    for (int s = 0; s < nf; s++)
        tab[n + (size_t)s] = radix[s];
    *nf_out = nf;
    clred_status st = clred_buffer(ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, (n + (size_t)nf) * sizeof *tab, tab,
                                   out, "FFT order");
    free(tab);
    return st;
}

static unsigned log2_of(size_t n)
{
    unsigned l = 0;
    while (((size_t)1 << l) < n)
        l++;
    return l;
}

static int env_off(const char *name)
{
    const char *env = getenv(name);
    return env && strcmp(env, "0") == 0;
}

/* Whether the column pass runs in fft_columns.cl: on CPU devices, where
 * VkFFT's kernels (large work-groups exchanging through local memory at
 * barriers, run by the CPU runtime as loops over the work-items with their
 * values spilled at each barrier) cost several times the arithmetic, for
 * column lengths of the kernels' radices (2, 3, 5, 7) that fit their local
 * buffer. CLRED_FFT_COLUMNS=0 keeps VkFFT's own (comparisons in bench/);
 * CLRED_FFT_MIXED=0 keeps VkFFT's for lengths other than powers of two. */
static int vkfft_columns(const clred_ctx *ctx, size_t ny)
{
    int length = pow2_in(ny, 2, FFT_COLUMNS_MAX) || (!env_off("CLRED_FFT_MIXED") && kernel_length(ny, 2, FFT_COLUMNS_MAX));
    return !env_off("CLRED_FFT_COLUMNS") && ctx->info.is_cpu && length &&
           ctx->info.local_mem >= FFT_COLUMNS_MAX * 16 * sizeof(cl_float);
}

/* Whether the row pass runs there too (then VkFFT is not used at all):
 * even row lengths from 4 whose halves the kernels transform, where the
 * column pass runs. CLRED_FFT_ROWS=0 keeps VkFFT's rows. */
static int vkfft_rows(const clred_ctx *ctx, size_t nx, int columns)
{
    int length = pow2_in(nx, 4, 2 * FFT_ROWS_MAX) ||
                 (!env_off("CLRED_FFT_MIXED") && nx % 2 == 0 && kernel_length(nx / 2, 2, FFT_ROWS_MAX));
    return columns && !env_off("CLRED_FFT_ROWS") && length &&
           ctx->info.local_mem >= (FFT_ROWS_MAX + 1) * 16 * sizeof(cl_float);
}

/* e^{2 pi i k / n} for k < count, from double, into a new buffer. */
static clred_status unit_factors(clred_ctx *ctx, size_t n, size_t count, cl_mem *out)
{
    float *tw = malloc(2 * count * sizeof *tw);
    if (!tw)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for FFT factors of length %zu", n);
    for (size_t k = 0; k < count; k++) {
        double a = 6.283185307179586476925286766559 * (double)k / (double)n;
        tw[2 * k] = (float)cos(a);
        tw[2 * k + 1] = (float)sin(a);
    }
    clred_status st =
        clred_buffer(ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, 2 * count * sizeof *tw, tw, out, "FFT factors");
    free(tw);
    return st;
}

/* The column FFTs of every batch in place: sign -1 forward, +1 inverse. */
static clred_status vkfft_column_pass(clred_ctx *ctx, clred_fft_plan *p, cl_mem buffer, float sign, float scale)
{
    cl_kernel k;
    if (p->col_nf > 0) {
        CLRED_TRY(clred_kernel(ctx, "fft_columns", NULL, "fft_columns_mixed", &k));
        cl_int ncols = (cl_int)(p->nx / 2 + 1), n = (cl_int)p->ny, nf = (cl_int)p->col_nf;
        cl_int pitch = (cl_int)clred_fft_pitch(p->nx), batch_floats = (cl_int)(clred_fft_pitch(p->nx) * p->ny);
        CLRED_TRY(clred_args(k, "fft_columns_mixed", CLRED_ARG(buffer), CLRED_ARG(ncols), CLRED_ARG(n),
                             CLRED_ARG(pitch), CLRED_ARG(batch_floats), CLRED_ARG(p->col_tw), CLRED_ARG(p->col_order),
                             CLRED_ARG(nf), CLRED_ARG(sign), CLRED_ARG(scale), (size_t)0));
        size_t global[2] = {((size_t)ncols + 7) / 8, p->batch}, local[2] = {1, 1};
        return clred_run(ctx, k, "fft_columns_mixed", 2, global, local);
    }
    CLRED_TRY(clred_kernel(ctx, "fft_columns", NULL, "fft_columns", &k));
    cl_int ncols = (cl_int)(p->nx / 2 + 1), n = (cl_int)p->ny, log2n = (cl_int)log2_of(p->ny);
    cl_int pitch = (cl_int)clred_fft_pitch(p->nx), batch_floats = (cl_int)(clred_fft_pitch(p->nx) * p->ny);
    CLRED_TRY(clred_args(k, "fft_columns", CLRED_ARG(buffer), CLRED_ARG(ncols), CLRED_ARG(n), CLRED_ARG(log2n),
                         CLRED_ARG(pitch), CLRED_ARG(batch_floats), CLRED_ARG(p->col_tw), CLRED_ARG(sign),
                         CLRED_ARG(scale), (size_t)0));
    /* One work-item per 8 columns, each its own work-group, so that the
     * runtime spreads them evenly over the cores. */
    size_t global[2] = {((size_t)ncols + 7) / 8, p->batch}, local[2] = {1, 1};
    return clred_run(ctx, k, "fft_columns", 2, global, local);
}

/* The row transforms of every batch in place: real to half spectrum
 * (forward) or back, normalised by 1 / nx (the exact inverse). */
static clred_status vkfft_row_pass(clred_ctx *ctx, clred_fft_plan *p, cl_mem buffer, int inverse)
{
    const char *name = inverse ? "fft_rows_c2r" : "fft_rows_r2c";
    cl_kernel k;
    CLRED_TRY(clred_kernel(ctx, "fft_columns", NULL, name, &k));
    cl_int nrows = (cl_int)(p->ny * p->batch), m = (cl_int)(p->nx / 2), log2m = (cl_int)log2_of(p->nx / 2);
    cl_int pitch = (cl_int)clred_fft_pitch(p->nx);
    cl_float scale = (cl_float)(2.0 / (double)p->nx);
    /* powers of two: no order table, the factors stand in (not read) */
    cl_mem order = p->row_nf > 0 ? p->row_order : p->row_tw;
    cl_int nf = (cl_int)p->row_nf;
    if (inverse)
        CLRED_TRY(clred_args(k, name, CLRED_ARG(buffer), CLRED_ARG(nrows), CLRED_ARG(m), CLRED_ARG(log2m),
                             CLRED_ARG(pitch), CLRED_ARG(p->row_tw), CLRED_ARG(p->row_twr), CLRED_ARG(scale),
                             CLRED_ARG(order), CLRED_ARG(nf), (size_t)0));
    else
        CLRED_TRY(clred_args(k, name, CLRED_ARG(buffer), CLRED_ARG(nrows), CLRED_ARG(m), CLRED_ARG(log2m),
                             CLRED_ARG(pitch), CLRED_ARG(p->row_tw), CLRED_ARG(p->row_twr), CLRED_ARG(order),
                             CLRED_ARG(nf), (size_t)0));
    size_t global = ((size_t)nrows + 7) / 8, local = 1; /* 8 rows per work-item, as the columns */
    return clred_run(ctx, k, name, 1, &global, &local);
}

static clred_status vkfft_create(clred_ctx *ctx, clred_fft_plan *p)
{
    p->columns = vkfft_columns(ctx, p->ny);
    p->rows = vkfft_rows(ctx, p->nx, p->columns);
    /* the mixed-radix kernels read factors of every k < n, the radix-2 ones k < n / 2 */
    if (p->columns) {
        int pow2 = pow2_in(p->ny, 2, FFT_COLUMNS_MAX);
        CLRED_TRY(unit_factors(ctx, p->ny, pow2 ? p->ny / 2 : p->ny, &p->col_tw));
        if (!pow2)
            CLRED_TRY(mixed_order(ctx, p->ny, &p->col_nf, &p->col_order));
    }
    if (p->rows) { /* no VkFFT application: none of its kernels compiled */
        size_t m = p->nx / 2;
        int pow2 = pow2_in(m, 2, FFT_ROWS_MAX);
        CLRED_TRY(unit_factors(ctx, m, pow2 ? m / 2 : m, &p->row_tw));
        if (!pow2)
            CLRED_TRY(mixed_order(ctx, m, &p->row_nf, &p->row_order));
        return unit_factors(ctx, p->nx, p->nx / 4 + 1, &p->row_twr);
    }
    p->app = calloc(1, sizeof *p->app);
    if (!p->app)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for a VkFFT plan");
    p->buffer_bytes = clred_fft_bytes(p->nx, p->ny, p->batch);
    p->queue = ctx->queue;
    p->vk_device = ctx->device;
    p->vk_context = ctx->context;
    VkFFTConfiguration c;
    memset(&c, 0, sizeof c);
    c.FFTdim = 2;
    c.size[0] = p->nx;
    c.size[1] = p->ny;
    c.numberBatches = p->batch;
    c.performR2C = 1; /* in place: rows padded to 2 * (nx / 2 + 1) floats, as fft.h lays out */
    c.normalize = 1;
    c.device = &p->vk_device;
    c.context = &p->vk_context;
    c.commandQueue = &p->queue;
    c.bufferSize = &p->buffer_bytes;
    if (p->columns)
        c.omitDimension[1] = 1; /* rows only; normalises by 1 / nx */
    VkFFTResult r = initializeVkFFT(p->app, c);
    if (r != VKFFT_SUCCESS) {
        free(p->app);
        p->app = NULL;
    }
    return vkfft_check(r, "plan creation", p);
}

static clred_status vkfft_run(clred_ctx *ctx, clred_fft_plan *p, int inverse, cl_mem buffer)
{
    VkFFTLaunchParams lp;
    memset(&lp, 0, sizeof lp);
    p->queue = ctx->queue;
    p->bound = buffer;
    lp.commandQueue = &p->queue;
    lp.buffer = &p->bound;
    if (p->columns && inverse)
        CLRED_TRY(vkfft_column_pass(ctx, p, buffer, 1.0f, (float)(1.0 / (double)p->ny)));
    if (p->rows)
        CLRED_TRY(vkfft_row_pass(ctx, p, buffer, inverse));
    else
        CLRED_TRY(vkfft_check(VkFFTAppend(p->app, inverse ? 1 : -1, &lp),
                              inverse ? "inverse transform" : "forward transform", p));
    if (p->columns && !inverse)
        CLRED_TRY(vkfft_column_pass(ctx, p, buffer, -1.0f, 1.0f));
    cl_int err = clFinish(ctx->queue);
    return err == CL_SUCCESS ? CLRED_OK : clred_fail_cl(err, "waiting for a VkFFT transform");
}
#endif

/* ---- the interface */

static pthread_once_t exit_once;
static void register_exit(void);

clred_status clred_fft_plan_create(clred_ctx *ctx, clred_fft_backend backend, size_t nx, size_t ny, size_t batch,
                                   clred_fft_plan **plan)
{
    static const unsigned radices[] = {2, 3, 5, 7, 11, 13};
    *plan = NULL;
#ifdef CLRED_HAVE_CLFFT
    /* clFFT registers its own exit-time check inside clfftSetup; our teardown
     * must be registered after it so that it runs first. */
    pthread_once(&clfft_once, clfft_setup);
#endif
    pthread_once(&exit_once, register_exit);
    backend = clred_fft_resolve(backend);
    if (!clred_fft_available(backend))
        return clred_fail(CLRED_ERR_USAGE, "FFT backend %s was not built into clred", clred_fft_backend_name(backend));
    if (nx < 2 || ny < 2 || batch < 1 || !only_factors(nx, radices, 6) || !only_factors(ny, radices, 6))
        return clred_fail(CLRED_ERR_USAGE,
                          "FFT size %zu x %zu (batch %zu): lengths must be >= 2 with prime factors 2..13 only", nx, ny,
                          batch);
    if (clred_fft_bytes(nx, ny, batch) > ctx->info.max_alloc)
        return clred_fail(CLRED_ERR_DEVICE, "FFT of %zu x %zu (batch %zu) needs %zu bytes, over the device's largest buffer",
                          nx, ny, batch, clred_fft_bytes(nx, ny, batch));
    clred_fft_plan *p = calloc(1, sizeof *p);
    if (!p)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for an FFT plan");
    p->backend = backend;
    p->nx = nx;
    p->ny = ny;
    p->batch = batch;
    p->context = ctx->context;
    p->device = ctx->device;
    clred_status st = CLRED_ERR_USAGE;
    /* The libraries compile their kernels here, outside clred's program
     * cache; the driver may cache them (POCL does, keyed by source), but it
     * does not stop two processes (parallel tests, a batch of commands) from
     * compiling the same plan side by side: a lock per plan makes the second
     * wait and find it in the driver's cache. */
    const char *family = backend == CLRED_FFT_VKFFT ? "fft-VkFFT" : "fft-clFFT";
    char what[128];
    snprintf(what, sizeof what, "%s %zux%zu batch %zu", family, nx, ny, batch);
    int lock = clred_cache_lock(ctx, what);
    double t0 = clred_now(), c0 = clred_thread_cpu();
#ifdef CLRED_HAVE_CLFFT
    if (backend == CLRED_FFT_CLFFT)
        st = clfft_create(ctx, p);
#endif
#ifdef CLRED_HAVE_VKFFT
    if (backend == CLRED_FFT_VKFFT)
        st = vkfft_create(ctx, p);
#endif
    clred_cache_unlock(lock);
    clred_log_build(family, what + strlen(family) + 1, "plan", clred_now() - t0, clred_thread_cpu() - c0);
    if (st != CLRED_OK) {
        clred_fft_plan_destroy(p);
        return st;
    }
    *plan = p;
    return CLRED_OK;
}

void clred_fft_plan_destroy(clred_fft_plan *p)
{
    if (!p)
        return;
#ifdef CLRED_HAVE_CLFFT
    if (p->backend == CLRED_FFT_CLFFT) {
        if (p->fwd)
            clfftDestroyPlan(&p->fwd);
        if (p->inv)
            clfftDestroyPlan(&p->inv);
    }
#endif
#ifdef CLRED_HAVE_VKFFT
    if (p->app) {
        deleteVkFFT(p->app);
        free(p->app);
    }
    if (p->col_tw)
        clReleaseMemObject(p->col_tw);
    if (p->row_tw)
        clReleaseMemObject(p->row_tw);
    if (p->row_twr)
        clReleaseMemObject(p->row_twr);
    if (p->col_order)
        clReleaseMemObject(p->col_order);
    if (p->row_order)
        clReleaseMemObject(p->row_order);
#endif
    free(p);
}

static clred_status fft_run(clred_ctx *ctx, clred_fft_plan *p, int inverse, cl_mem buffer)
{
    if (p->context != ctx->context)
        return clred_fail(CLRED_ERR_USAGE, "FFT plan used with a context other than the one it was made for");
    double t0 = clred_now();
    clred_status st = CLRED_ERR_USAGE;
#ifdef CLRED_HAVE_CLFFT
    if (p->backend == CLRED_FFT_CLFFT)
        st = clfft_run(ctx, p, inverse, buffer);
#endif
#ifdef CLRED_HAVE_VKFFT
    if (p->backend == CLRED_FFT_VKFFT)
        st = vkfft_run(ctx, p, inverse, buffer);
#endif
    /* The libraries enqueue several kernels each; wall time stands in for their events. */
    ctx->timing.kernel_s += clred_now() - t0;
    return st;
}

clred_status clred_fft_forward(clred_ctx *ctx, clred_fft_plan *plan, cl_mem buffer)
{
    return fft_run(ctx, plan, 0, buffer);
}

clred_status clred_fft_inverse(clred_ctx *ctx, clred_fft_plan *plan, cl_mem buffer)
{
    return fft_run(ctx, plan, 1, buffer);
}

size_t clred_fft_plan_nx(const clred_fft_plan *plan) { return plan->nx; }
size_t clred_fft_plan_ny(const clred_fft_plan *plan) { return plan->ny; }

int clred_fft_plan_columns(const clred_fft_plan *plan)
{
#ifdef CLRED_HAVE_VKFFT
    return plan->columns + plan->rows;
#else
    (void)plan;
    return 0;
#endif
}

/* ---- the plan cache: per context (ctx->fft), so contexts on other threads
 * never share or lock one another's plans */

typedef struct cache_entry {
    clred_fft_plan *plan;
    struct cache_entry *next;
} cache_entry;

struct clred_fft_cache {
    cache_entry *head;
};

/* At exit: clFFT's own state (the contexts have released their plans). */
static void fft_at_exit(void)
{
#ifdef CLRED_HAVE_CLFFT
    if (clfft_ready)
        clfftTeardown();
#endif
}

static pthread_once_t exit_once = PTHREAD_ONCE_INIT;
static void register_exit(void) { atexit(fft_at_exit); }

void clred_fft_release_context(clred_ctx *ctx)
{
    if (!ctx->fft)
        return;
    while (ctx->fft->head) {
        cache_entry *e = ctx->fft->head;
        ctx->fft->head = e->next;
        clred_fft_plan_destroy(e->plan);
        free(e);
    }
    free(ctx->fft);
    ctx->fft = NULL;
}

clred_status clred_fft_plan_cached(clred_ctx *ctx, clred_fft_backend backend, size_t nx, size_t ny, size_t batch,
                                   clred_fft_plan **plan)
{
    backend = clred_fft_resolve(backend);
    if (!ctx->fft && !(ctx->fft = calloc(1, sizeof *ctx->fft)))
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for the FFT plan cache");
    for (cache_entry *e = ctx->fft->head; e; e = e->next) {
        clred_fft_plan *p = e->plan;
        if (p->backend == backend && p->nx == nx && p->ny == ny && p->batch == batch) {
            *plan = p;
            return CLRED_OK;
        }
    }
    CLRED_TRY(clred_fft_plan_create(ctx, backend, nx, ny, batch, plan));
    cache_entry *e = calloc(1, sizeof *e);
    if (!e) {
        clred_fft_plan_destroy(*plan);
        *plan = NULL;
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for the FFT plan cache");
    }
    e->plan = *plan;
    e->next = ctx->fft->head;
    ctx->fft->head = e;
    return CLRED_OK;
}
