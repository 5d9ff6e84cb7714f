/* The FFT layer: real-to-complex 2-D transforms on the device, batched, with
 * clFFT or VkFFT behind one small interface. Internal to the library.
 *
 * Layout (the same for both backends, so callers never see which one runs):
 * a plan of nx x ny with batch b works in place on a buffer of
 * b * ny rows of (nx / 2 + 1) complex float pairs. Before the forward
 * transform the real image occupies the first nx floats of each row of
 * pitch = 2 * (nx / 2 + 1) floats; after it, row y holds the spectrum
 * F(kx, ky = y) for kx = 0 .. nx / 2. The inverse is normalised (1 / (nx ny)),
 * so inverse(forward(x)) == x. */
#ifndef CLRED_FFT_H
#define CLRED_FFT_H

#include "internal.h"

typedef struct clred_fft_plan clred_fft_plan;

/* The backend DEFAULT resolves to (CLRED_FFT env, else the built-in default). */
clred_fft_backend clred_fft_resolve(clred_fft_backend requested);
const char *clred_fft_backend_name(clred_fft_backend b);

/* The smallest even length >= n whose only prime factors are 2, 3, 5 and 7:
 * every backend transforms it directly (no Bluestein) and the R2C split is
 * exact. Callers pad their data to it. */
size_t clred_fft_good_size(size_t n);

/* Floats per row of the in-place layout, and the buffer size in bytes. */
static inline size_t clred_fft_pitch(size_t nx) { return 2 * (nx / 2 + 1); }
static inline size_t clred_fft_bytes(size_t nx, size_t ny, size_t batch)
{
    return clred_fft_pitch(nx) * ny * batch * sizeof(float);
}

/* A new plan (compiles device kernels: slow on POCL). nx and ny may have only
 * the prime factors 2, 3, 5, 7, 11 and 13 (clFFT's radices), odd or even. */
clred_status clred_fft_plan_create(clred_ctx *ctx, clred_fft_backend backend, size_t nx, size_t ny, size_t batch,
                                   clred_fft_plan **plan);
void clred_fft_plan_destroy(clred_fft_plan *plan);

/* A plan from the context's cache keyed by backend, size and batch, so
 * repeated calls at one size build it once. Owned by the cache: do not
 * destroy. Cached plans are released by clred_fft_release_context (which
 * clred_ctx_destroy calls). */
clred_status clred_fft_plan_cached(clred_ctx *ctx, clred_fft_backend backend, size_t nx, size_t ny, size_t batch,
                                   clred_fft_plan **plan);
/* Destroys the cached plans made for ctx's OpenCL context. */
void clred_fft_release_context(clred_ctx *ctx);

/* In-place transforms of the buffer (layout above); both wait for completion. */
clred_status clred_fft_forward(clred_ctx *ctx, clred_fft_plan *plan, cl_mem buffer);
clred_status clred_fft_inverse(clred_ctx *ctx, clred_fft_plan *plan, cl_mem buffer);

size_t clred_fft_plan_nx(const clred_fft_plan *plan);
size_t clred_fft_plan_ny(const clred_fft_plan *plan);
/* Which passes of the plan run in kernels/fft_columns.cl (VkFFT backend on a
 * CPU device): 0 none, 1 the columns (ny a power of two, or with the prime
 * factors 2, 3, 5, 7 only), 2 the rows too (nx / 2 such a length as well;
 * no VkFFT). For tests and bench/. */
int clred_fft_plan_columns(const clred_fft_plan *plan);


/* The padded size for a Fourier shift of n pixels by up to |d| pixels: the
 * content that the cyclic shift wraps lands in the padding, never on data.
 * |d| is rounded up to 16 px steps so a series of shifts shares few plans. */
static inline size_t clred_fft_shift_size(size_t n, double d)
{
    double a = d < 0 ? -d : d;
    size_t margin = ((size_t)(a + 1.0) + 15) / 16 * 16;
    return clred_fft_good_size(n + 2 * margin + 8);
}

#endif
