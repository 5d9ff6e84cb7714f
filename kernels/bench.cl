/* Kernels of the benchmarks: the device's own copy bandwidth, the yardstick
 * that the bytes per second of every other kernel are compared with. */

/* dst[i] = src[i] for i < n, as 32-bit words so that every bit pattern (NaN
 * payloads, denormals, -0) survives. Each work-item moves four words with one
 * vector load and store, which is what lets a GPU reach its peak bandwidth;
 * the last work-item finishes a length that is not a multiple of four word by
 * word. Launch with ceil(n / 4) work-items. On x86 with clang (POCL) the
 * stores are non-temporal, as the calibration's and the stack's large outputs
 * are (lib_store.cl): a copy whose every destination line is first read into
 * the cache moves a third more bytes than it must, and a yardstick below what
 * the kernels themselves reach (135 % of it for calibration) measures nothing.
 * Buffers from clCreateBuffer are aligned far beyond 16 bytes. */
kernel void copy_words(global const uint *src, global uint *dst, const ulong n)
{
    ulong i = (ulong)get_global_id(0);
    ulong first = i * 4;
    if (first + 4 <= n) {
#if defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
        __builtin_nontemporal_store(vload4(i, src), (global uint4 *)dst + i);
#else
        vstore4(vload4(i, src), i, dst);
#endif
    } else {
        for (ulong j = first; j < n; j++)
            dst[j] = src[j];
    }
}

/* The device's float FMA throughput, the yardstick of compute-bound kernels:
 * each work-item runs 8 independent chains of float4 fused multiply-adds
 * (enough in flight to hide the FMA latency on a CPU's SIMD units and a GPU's
 * warps), `iters` rounds of them, 2 flops per lane per fma. The result is
 * written so that nothing can be optimised away; a = 0.999 keeps it finite. */
kernel void fma_rate(global float *out, const uint iters, const float a, const float b)
{
    const float s = (float)get_global_id(0) * 1e-7f;
    float4 x0 = s, x1 = s + 1, x2 = s + 2, x3 = s + 3, x4 = s + 4, x5 = s + 5, x6 = s + 6, x7 = s + 7;
    for (uint i = 0; i < iters; i++) {
        x0 = fma(x0, a, b);
        x1 = fma(x1, a, b);
        x2 = fma(x2, a, b);
        x3 = fma(x3, a, b);
        x4 = fma(x4, a, b);
        x5 = fma(x5, a, b);
        x6 = fma(x6, a, b);
        x7 = fma(x7, a, b);
    }
    float4 t = ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7));
    out[get_global_id(0)] = (t.x + t.y) + (t.z + t.w);
}
