/* The FFT layer: each built-in backend against a direct double-precision DFT
 * on odd and even sizes, batched, the round trip, the plan cache, good sizes
 * and the Fourier-shift phase ramp against a double reference. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fft.h"
#include "harness.h"
#include "register_ref.h"

/* Forward of `batch` random nx x ny images against the direct DFT, and back. */
static void check_size(clred_ctx *ctx, clred_fft_backend backend, size_t nx, size_t ny, size_t batch)
{
    size_t pitch = clred_fft_pitch(nx), ncx = nx / 2 + 1;
    size_t nfloat = pitch * ny * batch;
    float *buf = calloc(nfloat, sizeof *buf), *orig = calloc(nfloat, sizeof *orig);
    double *x = malloc(nx * ny * sizeof *x), *re = malloc(ncx * ny * sizeof *re), *im = malloc(ncx * ny * sizeof *im);
    harness_rng rng = {nx * 131 + ny};
    for (size_t b = 0; b < batch; b++)
        for (size_t y = 0; y < ny; y++)
            for (size_t i = 0; i < nx; i++)
                buf[b * pitch * ny + y * pitch + i] = (float)(harness_normal(&rng) + (b == 1 ? 5.0 : 0.0));
    memcpy(orig, buf, nfloat * sizeof *buf);

    clred_fft_plan *plan = NULL;
    CHECK_OK(clred_fft_plan_cached(ctx, backend, nx, ny, batch, &plan));
    if (!plan)
        goto done;
    cl_mem dev;
    CHECK_OK(clred_buffer(ctx, CL_MEM_READ_WRITE, nfloat * sizeof *buf, buf, &dev, "fft test"));
    CHECK_OK(clred_fft_forward(ctx, plan, dev));
    CHECK_OK(clred_download(ctx, dev, 0, nfloat * sizeof *buf, buf));
    for (size_t b = 0; b < batch; b++) {
        double norm = 0.0;
        for (size_t y = 0; y < ny; y++)
            for (size_t i = 0; i < nx; i++) {
                x[y * nx + i] = orig[b * pitch * ny + y * pitch + i];
                norm += x[y * nx + i] * x[y * nx + i];
            }
        ref_dft2_r2c(x, nx, ny, re, im);
        /* A float32 FFT's error grows like eps * log2(N) * ||x||_2; 1e-5 ||x||
         * leaves a factor ~10 of margin at these sizes and catches any wrong bin. */
        double tol = 1e-5 * sqrt(norm), worst = 0.0;
        for (size_t k = 0; k < ncx * ny; k++) {
            const float *c = buf + b * pitch * ny + 2 * k;
            worst = fmax(worst, fmax(fabs(c[0] - re[k]), fabs(c[1] - im[k])));
        }
        CHECK_MSG(worst <= tol, "%s %zux%zu batch %zu/%zu: spectrum differs by %.3g (tolerance %.3g)",
                  clred_fft_backend_name(backend), nx, ny, b, batch, worst, tol);
    }
    CHECK_OK(clred_fft_inverse(ctx, plan, dev));
    CHECK_OK(clred_download(ctx, dev, 0, nfloat * sizeof *buf, buf));
    double worst = 0.0;
    for (size_t b = 0; b < batch; b++)
        for (size_t y = 0; y < ny; y++)
            for (size_t i = 0; i < nx; i++) {
                size_t k = b * pitch * ny + y * pitch + i;
                worst = fmax(worst, fabs(buf[k] - orig[k]));
            }
    /* values ~N(0,1)+5: the round trip keeps them to a few float ulps times log N */
    CHECK_MSG(worst < 2e-5 * 8, "%s %zux%zu: round trip differs by %.3g", clred_fft_backend_name(backend), nx, ny, worst);

    /* The cache hands back the same plan. */
    clred_fft_plan *again = NULL;
    CHECK_OK(clred_fft_plan_cached(ctx, backend, nx, ny, batch, &again));
    CHECK(again == plan);
    clred_release(&dev);
done:
    free(buf);
    free(orig);
    free(x);
    free(re);
    free(im);
}

/* The Fourier shift through forward, phase_ramp and inverse against the
 * double reference on nx x ny (an even axis has a Nyquist bin). */
static void check_phase_ramp(clred_ctx *ctx, clred_fft_backend backend, size_t nx, size_t ny)
{
    const size_t pitch = clred_fft_pitch(nx);
    const double dx = 1.37, dy = -2.61;
    float *buf = calloc(pitch * ny, sizeof *buf);
    double *in = malloc(nx * ny * sizeof *in), *ref = malloc(nx * ny * sizeof *ref);
    harness_rng rng = {7};
    for (size_t y = 0; y < ny; y++)
        for (size_t x = 0; x < nx; x++) {
            in[y * nx + x] = harness_normal(&rng) * 10.0;
            buf[y * pitch + x] = (float)in[y * nx + x];
        }
    ref_fourier_shift(in, nx, ny, dx, dy, ref);
    clred_fft_plan *plan = NULL;
    CHECK_OK(clred_fft_plan_cached(ctx, backend, nx, ny, 1, &plan));
    cl_mem dev;
    CHECK_OK(clred_buffer(ctx, CL_MEM_READ_WRITE, pitch * ny * sizeof *buf, buf, &dev, "phase ramp test"));
    cl_kernel k;
    CHECK_OK(clred_kernel(ctx, "fft_util", NULL, "phase_ramp", &k));
    int inx = (int)nx, iny = (int)ny;
    float fdx = (float)dx, fdy = (float)dy;
    CHECK_OK(clred_fft_forward(ctx, plan, dev));
    CHECK_OK(clred_args(k, "phase_ramp", CLRED_ARG(dev), CLRED_ARG(inx), CLRED_ARG(iny), CLRED_ARG(fdx),
                        CLRED_ARG(fdy), (size_t)0));
    size_t global[2] = {nx / 2 + 1, ny};
    CHECK_OK(clred_run(ctx, k, "phase_ramp", 2, global, NULL));
    CHECK_OK(clred_fft_inverse(ctx, plan, dev));
    CHECK_OK(clred_download(ctx, dev, 0, pitch * ny * sizeof *buf, buf));
    double worst = 0.0;
    for (size_t y = 0; y < ny; y++)
        for (size_t x = 0; x < nx; x++)
            worst = fmax(worst, fabs(buf[y * pitch + x] - ref[y * nx + x]));
    /* values of ~10 through two float FFTs and a float phase factor: 1e-4 is ~10 ulps of 10 */
    CHECK_MSG(worst < 1e-4 * 10, "%s phase ramp differs from the reference by %.3g", clred_fft_backend_name(backend),
              worst);
    clred_release(&dev);
    free(buf);
    free(in);
    free(ref);
}

/* The upsampled DFT's first stage (kernel upsample_columns) against a
 * double-precision sum on random data: 40 rows cross the kernel's 32-row
 * float blocks, 8 output rows are two work-items deep, and 9 columns are
 * one full 8-column work-item and one with a single column. */
static void check_upsample_columns(clred_ctx *ctx)
{
    const int ncx = 9, ny = 40, nrows = 8;
    float spec[2 * 9 * 40], tw[2 * 40 * 8];
    harness_rng rng = {99};
    for (size_t i = 0; i < sizeof spec / sizeof *spec; i++)
        spec[i] = (float)(harness_normal(&rng) * 100.0);
    for (size_t i = 0; i < sizeof tw / sizeof *tw; i++)
        tw[i] = (float)harness_normal(&rng);
    cl_mem dspec, dtw, dcols;
    size_t acc = ctx->use_double ? sizeof(double) : sizeof(float);
    CHECK_OK(clred_buffer(ctx, CL_MEM_READ_ONLY, sizeof spec, spec, &dspec, "spectrum"));
    CHECK_OK(clred_buffer(ctx, CL_MEM_READ_ONLY, sizeof tw, tw, &dtw, "twiddles"));
    CHECK_OK(clred_buffer(ctx, CL_MEM_WRITE_ONLY, 2 * (size_t)nrows * ncx * acc, NULL, &dcols, "columns"));
    cl_kernel k;
    CHECK_OK(clred_kernel(ctx, "fft_util", NULL, "upsample_columns", &k));
    CHECK_OK(clred_args(k, "upsample_columns", CLRED_ARG(dspec), CLRED_ARG(ncx), CLRED_ARG(ny), CLRED_ARG(dtw),
                        CLRED_ARG(nrows), CLRED_ARG(dcols), (size_t)0));
    size_t global[2] = {((size_t)ncx + 7) / 8, (size_t)nrows / 4};
    CHECK_OK(clred_run_tiled(ctx, k, "upsample_columns", 2, global));
    double cols[2 * 8 * 9];
    float colsf[2 * 8 * 9];
    CHECK_OK(clred_download(ctx, dcols, 0, 2 * (size_t)nrows * ncx * acc, acc == sizeof(double) ? (void *)cols : (void *)colsf));
    double worst = 0.0;
    for (int j = 0; j < nrows; j++)
        for (int kx = 0; kx < ncx; kx++) {
            double re = 0.0, im = 0.0, mag = 0.0;
            for (int ky = 0; ky < ny; ky++) {
                double rr = spec[2 * (ky * ncx + kx)], ri = spec[2 * (ky * ncx + kx) + 1];
                double tr = tw[2 * (ky * nrows + j)], ti = tw[2 * (ky * nrows + j) + 1];
                re += rr * tr - ri * ti;
                im += rr * ti + ri * tr;
                mag += hypot(rr, ri) * hypot(tr, ti);
            }
            size_t o = 2 * ((size_t)j * ncx + kx);
            double gr = acc == sizeof(double) ? cols[o] : colsf[o], gi = acc == sizeof(double) ? cols[o + 1] : colsf[o + 1];
            /* float products and 32-term float sums: a few eps of the summed magnitudes */
            worst = fmax(worst, fmax(fabs(gr - re), fabs(gi - im)) / mag);
        }
    CHECK_MSG(worst < 1e-5, "upsample_columns differs from the double sum by %.3g of the magnitudes", worst);
    clred_release(&dspec);
    clred_release(&dtw);
    clred_release(&dcols);
}

int main(void)
{
    CHECK(clred_fft_good_size(1) == 2);
    CHECK(clred_fft_good_size(15) == 16);
    CHECK(clred_fft_good_size(97) == 98);
    CHECK(clred_fft_good_size(121) == 126);
    CHECK(clred_fft_good_size(2048) == 2048);
    CHECK(clred_fft_pitch(15) == 16 && clred_fft_pitch(20) == 22);

    clred_ctx *ctx = harness_ctx();
    clred_fft_plan *bad = NULL;
    CHECK(clred_fft_plan_create(ctx, CLRED_FFT_DEFAULT, 17, 8, 1, &bad) == CLRED_ERR_USAGE);
    CHECK(strstr(clred_last_error(), "17") != NULL);
    CHECK(bad == NULL);

    /* Each backend's batched size (nx, ny) and its phase ramp's. VkFFT, the
     * default, also takes odd x odd, an odd row length with the radix 11 and
     * an odd column length. clFFT (CLRED_FFT=clfft, register --fft clfft)
     * gets one length pair: each clFFT size costs POCL 5-7 CPU s of compiling
     * on a cold cache, and the library asks only for even, 7-smooth sizes
     * (clred_fft_good_size), which 20 x 14 is: clFFT's even-length real
     * rows, a radix-7 column pass, both Nyquist bins in the phase ramp, and
     * batches (the batch-2 and batch-1 plans of one size add little more). */
    const struct {
        clred_fft_backend backend;
        size_t nx, ny, ramp_nx, ramp_ny;
    } backends[] = {{CLRED_FFT_CLFFT, 20, 14, 20, 14}, {CLRED_FFT_VKFFT, 33, 20, 20, 15}};
    int ran = 0;
    for (size_t b = 0; b < 2; b++) {
        if (!clred_fft_available(backends[b].backend)) {
            printf("%s not built in: skipped\n", clred_fft_backend_name(backends[b].backend));
            continue;
        }
        ran++;
        if (backends[b].backend == CLRED_FFT_VKFFT)
            check_size(ctx, backends[b].backend, 15, 9, 1);
        check_size(ctx, backends[b].backend, backends[b].nx, backends[b].ny, 2);
        check_phase_ramp(ctx, backends[b].backend, backends[b].ramp_nx, backends[b].ramp_ny);
    }
    CHECK(ran >= 1);
    check_upsample_columns(ctx);
    clred_ctx_destroy(ctx);

    /* Destroying the context released its cached plans: a new context (which
     * may get the old one's address) builds and uses fresh plans. */
    ctx = harness_ctx();
    for (size_t b = 0; b < 2; b++)
        if (clred_fft_available(backends[b].backend))
            check_size(ctx, backends[b].backend, backends[b].nx, backends[b].ny, 2);
    clred_ctx_destroy(ctx);
    return harness_finish();
}
