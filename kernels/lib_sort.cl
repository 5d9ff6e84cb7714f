/* Small sorts, medians and order-preserving keys used by several kernel
 * families; a family takes them with '#include "lib_sort.cl"' (resolved from
 * the embedded kernels by host/rt/programs.c). Arrays here are private. */

#ifndef CLRED_LIB_SORT
#define CLRED_LIB_SORT

/* Inserts x into the sorted v[0..n), so that v[0..n] is sorted; the caller
 * makes room. Collecting a window's values this way sorts them as they come. */
inline void clred_insert_sorted(float *v, const int n, const float x)
{
    int k = n;
    while (k > 0 && v[k - 1] > x) {
        v[k] = v[k - 1];
        k--;
    }
    v[k] = x;
}

/* Insertion sort of v[0..n). */
inline void clred_sort(float *v, const int n)
{
    for (int i = 1; i < n; i++)
        clred_insert_sorted(v, i, v[i]);
}

/* Median of the sorted v[0..n), n > 0: the mean of the two middle values
 * for an even count (in float, as the host references compute it). */
inline float clred_median_sorted(const float *v, const int n)
{
    return (n & 1) ? v[n / 2] : 0.5f * (v[n / 2 - 1] + v[n / 2]);
}

/* An unsigned key whose order is the float order: positive floats get the
 * sign bit set, negative ones have every bit flipped (-0 sorts just below +0). */
inline uint clred_float_key(const float v)
{
    const uint u = as_uint(v);
    return u ^ ((u >> 31) ? 0xffffffffu : 0x80000000u);
}

inline float clred_key_float(const uint k) { return as_float(k ^ ((k >> 31) ? 0x80000000u : 0xffffffffu)); }

#endif
