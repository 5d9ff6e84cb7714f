/* Plain C references for kernels/bench.cl. */
#ifndef CLRED_BENCH_REF_H
#define CLRED_BENCH_REF_H

#include <stddef.h>
#include <stdint.h>

/* What copy_words must produce: dst[i] = src[i] for i < n, bit for bit. */
void bench_ref_copy_words(const uint32_t *src, uint32_t *dst, size_t n);

/* What fma_rate writes for work-item gid, in double: the sum over its 8 chains
 * (4 equal lanes each) of x <- a x + b applied iters times from gid * 1e-7 + c. */
double bench_ref_fma_rate(size_t gid, unsigned iters, double a, double b);

#endif
