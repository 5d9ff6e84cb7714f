/* The device's own copy bandwidth, measured with kernels/bench.cl in the same
 * run as the steps, so that "fraction of copy bandwidth" compares kernels on
 * one device under one load. */
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define COPY_MAX_BYTES (256ull << 20) /* enough to leave every cache behind */
#define COPY_REPEATS 5

static clred_status time_copy(clred_ctx *ctx, cl_kernel k, size_t words, double *best)
{
    size_t global = (words + 3) / 4;
    *best = 0.0;
    for (int rep = 0; rep <= COPY_REPEATS; rep++) { /* rep 0 warms up */
        clred_ctx_timing_reset(ctx);
        CLRED_TRY(clred_run(ctx, k, "copy_words", 1, &global, NULL));
        clred_timing t;
        clred_ctx_timing(ctx, &t);
        if (rep > 0 && (*best == 0.0 || t.kernel_s < *best))
            *best = t.kernel_s;
    }
    return CLRED_OK;
}

/* The copy must have happened: a kernel that did nothing would be fast. */
static clred_status verify_copy(clred_ctx *ctx, cl_mem dst, const uint32_t *src, size_t words)
{
    const size_t probe = words < 4096 ? words : 4096;
    uint32_t *got = malloc(probe * sizeof *got);
    if (!got)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory checking the copy");
    size_t offset = words - probe;
    clred_status st = clred_download(ctx, dst, offset * sizeof *got, probe * sizeof *got, got);
    if (st == CLRED_OK && memcmp(got, src + offset, probe * sizeof *got) != 0)
        st = clred_fail(CLRED_ERR_DEVICE, "copy_words: the destination does not match the source");
    free(got);
    return st;
}

clred_status bench_copy(bench_run *run, bench_results *out)
{
    clred_ctx *ctx = run->ctx;
    uint64_t bytes = COPY_MAX_BYTES;
    if (bytes > clred_ctx_max_alloc(ctx))
        bytes = clred_ctx_max_alloc(ctx);
    if (bytes > clred_ctx_budget(ctx) / 2)
        bytes = clred_ctx_budget(ctx) / 2;
    size_t words = (size_t)(bytes / 4) & ~(size_t)3;
    if (words < 4)
        return clred_fail(CLRED_ERR_DEVICE, "copy bandwidth: the memory budget leaves no room for a buffer");
    uint32_t *src = malloc(words * sizeof *src);
    if (!src)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for a %zu-word copy source", words);
    for (size_t i = 0; i < words; i++)
        src[i] = (uint32_t)(i * 2654435761u);
    cl_mem dsrc = NULL, ddst = NULL;
    cl_kernel k;
    double best = 0.0;
    cl_ulong n = words;
    clred_status st = clred_buffer(ctx, CL_MEM_READ_ONLY, words * 4, src, &dsrc, "copy source");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_READ_WRITE, words * 4, NULL, &ddst, "copy destination");
    if (st == CLRED_OK)
        st = clred_kernel(ctx, "bench", NULL, "copy_words", &k);
    if (st == CLRED_OK)
        st = clred_args(k, "copy_words", CLRED_ARG(dsrc), CLRED_ARG(ddst), CLRED_ARG(n), (size_t)0);
    if (st == CLRED_OK)
        st = time_copy(ctx, k, words, &best);
    if (st == CLRED_OK)
        st = verify_copy(ctx, ddst, src, words);
    clred_release(&dsrc);
    clred_release(&ddst);
    free(src);
    if (st != CLRED_OK)
        return st;
    bench_result *res = bench_results_add(out, "copy", "device");
    if (!res)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for results");
    res->kernel_s = best;
    res->wall_s = best;
    res->model_bytes = 2.0 * (double)words * 4.0; /* read once, written once */
    res->repeats = COPY_REPEATS;
    snprintf(res->note, sizeof res->note, "copy_words over %.0f MiB, best of %d", words * 4.0 / 1048576.0,
             COPY_REPEATS);
    run->copy_gbps = best > 0 ? res->model_bytes / best * 1e-9 : 0.0;
    return CLRED_OK;
}

/* The device's float FMA throughput (kernels/bench.cl fma_rate), the yardstick
 * of compute-bound kernels in the roofline: enough work-items to fill every
 * compute unit many times over, and enough rounds that one launch takes about
 * 50 ms (set from a first, shorter launch). */
#define FMA_ITEMS 65536
#define FMA_TARGET_S 0.05

static clred_status time_fma(clred_ctx *ctx, cl_kernel k, cl_mem out, cl_uint iters, double *seconds)
{
    size_t global = FMA_ITEMS;
    cl_float a = 0.999f, b = 0.001f;
    CLRED_TRY(clred_args(k, "fma_rate", CLRED_ARG(out), CLRED_ARG(iters), CLRED_ARG(a), CLRED_ARG(b), (size_t)0));
    clred_ctx_timing_reset(ctx);
    CLRED_TRY(clred_run(ctx, k, "fma_rate", 1, &global, NULL));
    clred_timing t;
    clred_ctx_timing(ctx, &t);
    *seconds = t.kernel_s;
    return CLRED_OK;
}

clred_status bench_fma(bench_run *run, bench_results *out)
{
    clred_ctx *ctx = run->ctx;
    cl_mem buf = NULL;
    cl_kernel k;
    CLRED_TRY(clred_kernel(ctx, "bench", NULL, "fma_rate", &k));
    CLRED_TRY(clred_buffer(ctx, CL_MEM_WRITE_ONLY, FMA_ITEMS * sizeof(cl_float), NULL, &buf, "fma results"));
    cl_uint iters = 64;
    double t = 0.0, best = 0.0;
    clred_status st = time_fma(ctx, k, buf, iters, &t); /* also the warm-up */
    if (st == CLRED_OK && t > 0) {
        double scale = FMA_TARGET_S / t;
        double want = iters * (scale > 1 ? scale : 1);
        iters = want > 1e6 ? 1000000u : (cl_uint)want;
    }
    for (int rep = 0; rep < COPY_REPEATS && st == CLRED_OK; rep++) {
        st = time_fma(ctx, k, buf, iters, &t);
        if (st == CLRED_OK && t > 0 && (best == 0.0 || t < best))
            best = t;
    }
    clred_release(&buf);
    if (st != CLRED_OK)
        return st;
    bench_result *res = bench_results_add(out, "fma", "device");
    if (!res)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for results");
    double flops = (double)FMA_ITEMS * iters * 8.0 * 4.0 * 2.0; /* 8 chains of float4, 2 flops per fma */
    res->kernel_s = best;
    res->wall_s = best;
    res->repeats = COPY_REPEATS;
    run->fma_gflops = best > 0 ? flops / best * 1e-9 : 0.0;
    snprintf(res->note, sizeof res->note, "fma_rate: %d work-items x %u rounds of 8 float4 fmas, %.1f GFLOP/s, best of %d",
             FMA_ITEMS, iters, run->fma_gflops, COPY_REPEATS);
    return CLRED_OK;
}
