/* kernels/bench.cl: copy_words must copy every bit pattern exactly, for
 * lengths that are not multiples of its four-word vectors nor of any
 * work-group size, and must not write past the end. The benchmarks divide
 * bytes by its time, so a copy that skipped or duplicated words would make
 * every bandwidth figure wrong. fma_rate must do the recurrence it is credited
 * with (a kernel that skipped rounds would report a false FLOP rate). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_ref.h"
#include "harness.h"
#include "internal.h"

#define GUARD 8u /* words after the end that must stay untouched */
static const uint32_t sentinel = 0xDEADBEEFu;

static uint32_t float_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* Random words with the patterns a float copy could alter mixed in. */
static void fill_source(uint32_t *src, size_t n, harness_rng *rng)
{
    const uint32_t special[] = {
        0x7FC00000u,             /* quiet NaN */
        0x7FA00001u,             /* signalling NaN with a payload */
        0xFFC12345u,             /* negative NaN with a payload */
        0x80000000u,             /* -0 */
        0x00000001u,             /* smallest denormal */
        0x7F800000u,             /* +inf */
        float_bits(-1234.5f),
    };
    for (size_t i = 0; i < n; i++) {
        src[i] = (uint32_t)(harness_uniform(rng) * 4294967296.0);
        if (i % 11 == 5)
            src[i] = special[(i / 11) % (sizeof special / sizeof *special)];
    }
}

static void check_copy(clred_ctx *ctx, size_t n, harness_rng *rng)
{
    uint32_t *src = malloc((n ? n : 1) * sizeof *src);
    uint32_t *want = malloc((n + GUARD) * sizeof *want);
    uint32_t *got = malloc((n + GUARD) * sizeof *got);
    fill_source(src, n, rng);
    for (size_t i = 0; i < n + GUARD; i++)
        want[i] = got[i] = sentinel;
    bench_ref_copy_words(src, want, n);

    cl_mem dsrc = NULL, ddst = NULL;
    CHECK_OK(clred_buffer(ctx, CL_MEM_READ_ONLY, (n ? n : 1) * sizeof *src, src, &dsrc, "copy source"));
    CHECK_OK(clred_buffer(ctx, CL_MEM_READ_WRITE, (n + GUARD) * sizeof *got, got, &ddst, "copy destination"));
    cl_kernel k;
    CHECK_OK(clred_kernel(ctx, "bench", NULL, "copy_words", &k));
    cl_ulong count = n;
    CHECK_OK(clred_args(k, "copy_words", CLRED_ARG(dsrc), CLRED_ARG(ddst), CLRED_ARG(count), (size_t)0));
    size_t global = (n + 3) / 4;
    CHECK_OK(clred_run(ctx, k, "copy_words", 1, &global, NULL));
    CHECK_OK(clred_download(ctx, ddst, 0, (n + GUARD) * sizeof *got, got));

    size_t wrong = 0, first_wrong = 0;
    for (size_t i = 0; i < n + GUARD; i++)
        if (got[i] != want[i] && wrong++ == 0)
            first_wrong = i;
    CHECK_MSG(wrong == 0, "n=%zu: %zu of %zu words differ (first at %zu: 0x%08X, expected 0x%08X)", n, wrong,
              (size_t)(n + GUARD), first_wrong, got[first_wrong], want[first_wrong]);
    clred_release(&dsrc);
    clred_release(&ddst);
    free(src);
    free(want);
    free(got);
}

/* fma_rate against the double recurrence. With a = 0.5, b = 1 every chain
 * contracts towards 2, so each float rounding (2^-24 relative, |x| <= 8) is
 * halved at every later round: a chain's error stays below 2 * 8 * 2^-24 ~
 * 1e-6, and the sum of 32 lanes (~64) adds 32 * 64 * 2^-24 ~ 1.2e-4; 1e-3
 * absolute. A round skipped or repeated at iters = 3 moves the sum by about 6
 * (chain c is 2 + (c - 2) / 2^iters); iters = 0 checks the start values. */
static void check_fma(clred_ctx *ctx)
{
    const size_t n = 1000;
    cl_mem out = NULL;
    cl_kernel k;
    float *got = malloc(n * sizeof *got);
    CHECK_OK(clred_buffer(ctx, CL_MEM_WRITE_ONLY, n * sizeof *got, NULL, &out, "fma results"));
    CHECK_OK(clred_kernel(ctx, "bench", NULL, "fma_rate", &k));
    const cl_uint iters_list[] = {0, 1, 3, 40};
    for (size_t t = 0; t < sizeof iters_list / sizeof *iters_list; t++) {
        cl_uint iters = iters_list[t];
        cl_float a = 0.5f, b = 1.0f;
        CHECK_OK(clred_args(k, "fma_rate", CLRED_ARG(out), CLRED_ARG(iters), CLRED_ARG(a), CLRED_ARG(b), (size_t)0));
        CHECK_OK(clred_run(ctx, k, "fma_rate", 1, &n, NULL));
        CHECK_OK(clred_download(ctx, out, 0, n * sizeof *got, got));
        size_t bad = 0;
        for (size_t i = 0; i < n; i++) {
            double want = bench_ref_fma_rate(i, iters, 0.5, 1.0);
            if (!(fabs(got[i] - want) <= 1e-3) && bad++ == 0)
                CHECK_MSG(0, "fma_rate iters %u, item %zu: %.9g, reference %.9g", iters, i, got[i], want);
        }
        CHECK_MSG(bad == 0, "fma_rate iters %u: %zu of %zu items wrong", iters, bad, n);
    }
    clred_release(&out);
    free(got);
}

int main(void)
{
    clred_ctx *ctx = harness_ctx();
    harness_rng rng = {7};
    /* 0 launches nothing; 1..5 exercise the word-by-word tail; the rest are
     * not multiples of 4 or of any power-of-two work-group size, and one
     * spans many work-groups. */
    const size_t sizes[] = {0, 1, 2, 3, 4, 5, 7, 8, 1023, 1025, 65537, 262147};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
        check_copy(ctx, sizes[s], &rng);
    check_fma(ctx);

    /* The kernel's time is what the benchmarks read: it must be recorded. */
    clred_timing t;
    clred_ctx_timing(ctx, &t);
    CHECK(t.kernel_s > 0.0);
    clred_ctx_destroy(ctx);
    return harness_finish();
}
