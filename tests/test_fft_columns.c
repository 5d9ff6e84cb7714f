/* The VkFFT backend's own passes on CPU devices (kernels/fft_columns.cl,
 * host/rt/fft.c): the column kernel alone against a direct double-precision
 * DFT of each column (8-column work-items and the single-column tail, both
 * signs, the scale, batches, lengths 2 to 64), and plans whose column
 * lengths the kernels take (powers of two, or mixed radix: factors 2, 3, 5
 * and 7; the column pass, and where the half rows are such lengths too the
 * row pass, no VkFFT) against the 2-D DFT and through the round trip. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fft.h"
#include "harness.h"
#include "register_ref.h"

#define TWO_PI 6.283185307179586476925286766559

/* fft_columns on batch x n rows of ncols complex values (pitch 2 ncols + 2
 * floats: the padding must stay untouched) against the DFT of each column. */
static void check_kernel(clred_ctx *ctx, int ncols, int n, int batch, float sign, float scale)
{
    int log2n = 0;
    while ((1 << log2n) < n)
        log2n++;
    int pitch = 2 * ncols + 2, batch_floats = pitch * n;
    size_t nfloat = (size_t)batch_floats * (size_t)batch;
    float *buf = malloc(nfloat * sizeof *buf), *orig = malloc(nfloat * sizeof *orig), *tw = malloc((size_t)n * sizeof *tw);
    harness_rng rng = {(uint64_t)(ncols * 977 + n * 13 + batch)};
    for (size_t i = 0; i < nfloat; i++)
        buf[i] = (float)harness_normal(&rng);
    memcpy(orig, buf, nfloat * sizeof *buf);
    for (int k = 0; k < n / 2; k++) {
        tw[2 * k] = (float)cos(TWO_PI * k / n);
        tw[2 * k + 1] = (float)sin(TWO_PI * k / n);
    }
    cl_mem dbuf = NULL, dtw = NULL;
    CHECK_OK(clred_buffer(ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, nfloat * sizeof *buf, buf, &dbuf, "columns"));
    CHECK_OK(clred_buffer(ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, (size_t)n * sizeof *tw, tw, &dtw, "factors"));
    cl_kernel k;
    CHECK_OK(clred_kernel(ctx, "fft_columns", NULL, "fft_columns", &k));
    CHECK_OK(clred_args(k, "fft_columns", CLRED_ARG(dbuf), CLRED_ARG(ncols), CLRED_ARG(n), CLRED_ARG(log2n),
                        CLRED_ARG(pitch), CLRED_ARG(batch_floats), CLRED_ARG(dtw), CLRED_ARG(sign), CLRED_ARG(scale),
                        (size_t)0));
    size_t global[2] = {((size_t)ncols + 7) / 8, (size_t)batch}, local[2] = {1, 1};
    CHECK_OK(clred_run(ctx, k, "fft_columns", 2, global, local));
    CHECK_OK(clred_download(ctx, dbuf, 0, nfloat * sizeof *buf, buf));
    double worst = 0.0, tol = 0.0;
    int pad_kept = 1;
    for (int b = 0; b < batch; b++)
        for (int c = 0; c < ncols; c++) {
            const float *in = orig + (size_t)b * batch_floats + 2 * c, *out = buf + (size_t)b * batch_floats + 2 * c;
            double norm = 0.0;
            for (int y = 0; y < n; y++)
                norm += in[y * pitch] * in[y * pitch] + in[y * pitch + 1] * in[y * pitch + 1];
            /* float error ~ eps log2(n) ||x||; 1e-5 ||x|| has a margin of
             * ~10 at n = 64 and catches a wrong sign, bin or factor. */
            tol = fmax(tol, 1e-5 * sqrt(norm) * scale);
            for (int j = 0; j < n; j++) {
                double re = 0.0, im = 0.0;
                for (int y = 0; y < n; y++) {
                    double a = sign * TWO_PI * (double)((long)j * y % n) / n, xr = in[y * pitch], xi = in[y * pitch + 1];
                    re += xr * cos(a) - xi * sin(a);
                    im += xr * sin(a) + xi * cos(a);
                }
                worst = fmax(worst, fmax(fabs(out[j * pitch] - re * scale), fabs(out[j * pitch + 1] - im * scale)));
            }
        }
    for (int b = 0; b < batch; b++)
        for (int y = 0; y < n; y++)
            for (int i = 2 * ncols; i < pitch; i++) {
                size_t o = (size_t)b * batch_floats + (size_t)y * pitch + i;
                pad_kept &= buf[o] == orig[o];
            }
    CHECK_MSG(worst <= tol, "fft_columns %d columns x %d, batch %d, sign %g: differs from the DFT by %.3g (tolerance %.3g)",
              ncols, n, batch, sign, worst, tol);
    CHECK_MSG(pad_kept, "fft_columns %d columns x %d wrote into the row padding", ncols, n);
    clred_release(&dbuf);
    clred_release(&dtw);
    free(buf);
    free(orig);
    free(tw);
}

/* Lengths the kernels transform (as host/rt/fft.c decides): factors 2, 3, 5, 7. */
static int kernel_length(size_t n)
{
    static const size_t primes[] = {2, 3, 5, 7};
    for (size_t i = 0; i < 4 && n > 1; i++)
        while (n % primes[i] == 0)
            n /= primes[i];
    return n == 1;
}

/* A VkFFT plan of nx x ny (ny a kernel length) against the 2-D DFT, and back. */
static void check_plan(clred_ctx *ctx, size_t nx, size_t ny, size_t batch)
{
    size_t pitch = clred_fft_pitch(nx), ncx = nx / 2 + 1, nfloat = pitch * ny * batch;
    float *buf = calloc(nfloat, sizeof *buf), *orig = calloc(nfloat, sizeof *orig);
    double *x = malloc(nx * ny * sizeof *x), *re = malloc(ncx * ny * sizeof *re), *im = malloc(ncx * ny * sizeof *im);
    harness_rng rng = {nx * 71 + ny};
    for (size_t b = 0; b < batch; b++)
        for (size_t y = 0; y < ny; y++)
            for (size_t i = 0; i < nx; i++)
                buf[b * pitch * ny + y * pitch + i] = (float)(harness_normal(&rng) + 3.0 * (double)b);
    memcpy(orig, buf, nfloat * sizeof *buf);
    clred_fft_plan *plan = NULL;
    cl_mem dev = NULL;
    CHECK_OK(clred_fft_plan_cached(ctx, CLRED_FFT_VKFFT, nx, ny, batch, &plan));
    if (!plan)
        goto done;
    /* On a CPU with room for the kernels' local buffers (main checks), these
     * sizes take the column pass, and the row pass where nx / 2 is a kernel length. */
    CHECK(clred_fft_plan_columns(plan) == 1 + (nx % 2 == 0 && nx >= 4 && kernel_length(nx / 2)));
    CHECK_OK(clred_buffer(ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, nfloat * sizeof *buf, buf, &dev, "fft test"));
    CHECK_OK(clred_fft_forward(ctx, plan, dev));
    CHECK_OK(clred_download(ctx, dev, 0, nfloat * sizeof *buf, buf));
    for (size_t b = 0; b < batch; b++) {
        double norm = 0.0, worst = 0.0;
        for (size_t y = 0; y < ny; y++)
            for (size_t i = 0; i < nx; i++) {
                x[y * nx + i] = orig[b * pitch * ny + y * pitch + i];
                norm += x[y * nx + i] * x[y * nx + i];
            }
        ref_dft2_r2c(x, nx, ny, re, im);
        for (size_t k = 0; k < ncx * ny; k++) {
            const float *c = buf + b * pitch * ny + 2 * k;
            worst = fmax(worst, fmax(fabs(c[0] - re[k]), fabs(c[1] - im[k])));
        }
        CHECK_MSG(worst <= 1e-5 * sqrt(norm), "VkFFT %zux%zu batch %zu/%zu: spectrum differs by %.3g (tolerance %.3g)",
                  nx, ny, b, batch, worst, 1e-5 * sqrt(norm));
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
    /* values ~N(3b, 1): a few float ulps times log N, as test_fft */
    CHECK_MSG(worst < 2e-5 * 8, "VkFFT %zux%zu: round trip differs by %.3g", nx, ny, worst);
    clred_release(&dev);
done:
    free(buf);
    free(orig);
    free(x);
    free(re);
    free(im);
}

int main(void)
{
    if (!clred_fft_available(CLRED_FFT_VKFFT)) {
        printf("VkFFT not built in: skipped\n");
        return 77;
    }
    clred_ctx *ctx = harness_ctx();
    if (!ctx->info.is_cpu || ctx->info.local_mem < 4097 * 64) {
        /* The plans below then run VkFFT's own column pass (test_fft). */
        printf("not a CPU device with 256 KiB of local memory: the column kernel is not used; skipped\n");
        clred_ctx_destroy(ctx);
        return 77;
    }
    check_kernel(ctx, 11, 32, 2, -1.0f, 1.0f);        /* one 8-column work-item and a tail of 3 */
    check_kernel(ctx, 11, 32, 1, 1.0f, 1.0f / 32.0f); /* the inverse, scaled */
    check_kernel(ctx, 8, 64, 1, -1.0f, 1.0f);         /* no tail */
    check_kernel(ctx, 3, 2, 1, -1.0f, 1.0f);          /* tail only, the shortest column */
    check_plan(ctx, 16, 32, 2); /* rows and columns here, batched */
    check_plan(ctx, 64, 16, 1);
    check_plan(ctx, 8, 4, 1);   /* 4 rows: one partly filled row work-item */
    check_plan(ctx, 22, 8, 1);  /* VkFFT's rows (11), the column kernel */
    /* mixed radix, rows and columns: every radix (4, 2, 3, 5, 7), odd
     * lengths, a batch, partly filled 8-column blocks, columns of 9 (tail only) */
    check_plan(ctx, 24, 30, 2); /* rows 12 = 4 3, columns 30 = 2 3 5, 13 columns */
    check_plan(ctx, 70, 21, 1); /* rows 35 = 5 7, columns 21 = 3 7 */
    check_plan(ctx, 12, 56, 1); /* rows 6 = 2 3, columns 56 = 4 2 7 */
    check_plan(ctx, 6, 9, 1);   /* rows 3, columns 9 = 3 3, 4 columns */
    clred_ctx_destroy(ctx);
    return harness_finish();
}
