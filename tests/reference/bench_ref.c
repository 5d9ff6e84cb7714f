#include "bench_ref.h"

void bench_ref_copy_words(const uint32_t *src, uint32_t *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = src[i];
}

double bench_ref_fma_rate(size_t gid, unsigned iters, double a, double b)
{
    double s = (double)(float)((float)gid * 1e-7f), total = 0.0;
    for (int c = 0; c < 8; c++) {
        double x = s + c;
        for (unsigned i = 0; i < iters; i++)
            x = x * a + b;
        total += 4.0 * x; /* the four lanes of a chain are equal */
    }
    return total;
}
