/* Image statistics: reductions and exact order statistics over the pixels of a
 * region that are usable (finite, not masked) and inside the kept range
 * lo <= x <= hi of a sigma-clipping iteration.
 *
 * Order statistics are found by radix selection on 64-bit keys whose unsigned
 * order is the order of the values: each pass histograms one digit of the keys
 * that share the prefix chosen so far, and the host picks the bucket. A float
 * value's key sits in the top 32 bits; a double deviation uses all 64.
 *
 * Every kernel walks the region with a grid-stride loop (no barrier inside it);
 * the host sizes work-groups from CL_KERNEL_WORK_GROUP_SIZE and local memory. */

#include "lib_sort.cl"

/* Pixel i of a region rw pixels wide starting at (x0, y0), in an image of the given width. */
inline size_t stats_pixel(uint i, uint rw, uint x0, uint y0, uint width)
{
    uint ry = i / rw;
    uint rx = i - ry * rw;
    return (size_t)(y0 + ry) * width + (x0 + rx);
}

/* The pixel's value when it takes part (usable and within [lo, hi]), else NaN. */
inline float stats_kept(global const float *sci, global const ushort *mask, ushort ignore, size_t idx, float lo,
                        float hi)
{
    float v = sci[idx];
    ushort m = mask ? mask[idx] : (ushort)0;
    return (clred_usable(v, m, ignore) && v >= lo && v <= hi) ? v : NAN;
}

/* Order-preserving key of a float, in the top 32 bits. -0 sorts just below +0,
 * which only decides which of two equal values is picked. */
inline ulong stats_float_key(float v) { return (ulong)clred_float_key(v) << 32; }

/* Key of |v - centre|, computed in acc_t exactly as the host reference does, so
 * the selected deviation is bit-identical to it where acc_t is double. */
inline ulong stats_deviation_key(float v, acc_t centre)
{
#ifdef CLRED_USE_DOUBLE
    double d = fabs((double)v - centre);
    return as_ulong(d) | 0x8000000000000000UL; /* d >= 0: setting the sign bit keeps the order */
#else
    return stats_float_key(fabs(v - centre));
#endif
}

inline ulong stats_key(float v, uint deviation, acc_t centre)
{
    return deviation ? stats_deviation_key(v, centre) : stats_float_key(v);
}

/* Histogram of the digit (key >> shift) & (nbins - 1) over the kept pixels whose
 * key matches prefix under prefix_mask, accumulated into hist (zeroed by the host). */
kernel void stats_histogram(global const float *sci, global const ushort *mask, const ushort ignore,
                            const uint width, const uint x0, const uint y0, const uint rw, const uint n,
                            const float lo, const float hi, const uint deviation, const acc_t centre,
                            const ulong prefix, const ulong prefix_mask, const uint shift, const uint nbins,
                            global uint *hist, local uint *lhist)
{
    const uint lid = get_local_id(0), lsize = get_local_size(0);
    for (uint b = lid; b < nbins; b += lsize)
        lhist[b] = 0;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint i = get_global_id(0); i < n; i += get_global_size(0)) {
        float v = stats_kept(sci, mask, ignore, stats_pixel(i, rw, x0, y0, width), lo, hi);
        if (isnan(v))
            continue;
        ulong key = stats_key(v, deviation, centre);
        if ((key & prefix_mask) == prefix)
            atomic_inc(&lhist[(uint)(key >> shift) & (nbins - 1)]);
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint b = lid; b < nbins; b += lsize) {
        uint c = lhist[b];
        if (c)
            atomic_add(&hist[b], c);
    }
}

/* Per work-group: the smallest key strictly above `above` among kept pixels
 * (ULONG_MAX if none). Finds the upper middle value of an even count. */
kernel void stats_min_key_above(global const float *sci, global const ushort *mask, const ushort ignore,
                                const uint width, const uint x0, const uint y0, const uint rw, const uint n,
                                const float lo, const float hi, const uint deviation, const acc_t centre,
                                const ulong above, global ulong *partial, local ulong *lmin)
{
    const uint lid = get_local_id(0), lsize = get_local_size(0);
    ulong best = ULONG_MAX;
    for (uint i = get_global_id(0); i < n; i += get_global_size(0)) {
        float v = stats_kept(sci, mask, ignore, stats_pixel(i, rw, x0, y0, width), lo, hi);
        if (isnan(v))
            continue;
        ulong key = stats_key(v, deviation, centre);
        if (key > above && key < best)
            best = key;
    }
    lmin[lid] = best;
    barrier(CLK_LOCAL_MEM_FENCE);
    if (lid == 0) {
        for (uint j = 1; j < lsize; j++)
            best = min(best, lmin[j]);
        partial[get_group_id(0)] = best;
    }
}

/* Per work-group: count, sum and sum of squares of (x - shift) in acc_t, min and
 * max, over the kept pixels. The shift (the current median) keeps the sum of
 * squares from cancelling when the spread is small against the level. */
kernel void stats_reduce(global const float *sci, global const ushort *mask, const ushort ignore,
                         const uint width, const uint x0, const uint y0, const uint rw, const uint n,
                         const float lo, const float hi, const acc_t shift, global uint *pcount,
                         global acc_t *psums, global float *pminmax, local uint *lcount, local acc_t *lsums,
                         local float *lminmax)
{
    const uint lid = get_local_id(0), lsize = get_local_size(0);
    uint count = 0;
    acc_t sum = 0, sumsq = 0;
    float vmin = INFINITY, vmax = -INFINITY;
    for (uint i = get_global_id(0); i < n; i += get_global_size(0)) {
        float v = stats_kept(sci, mask, ignore, stats_pixel(i, rw, x0, y0, width), lo, hi);
        if (isnan(v))
            continue;
        acc_t d = (acc_t)v - shift;
        count++;
        sum += d;
        sumsq += d * d;
        vmin = fmin(vmin, v);
        vmax = fmax(vmax, v);
    }
    lcount[lid] = count;
    lsums[2 * lid] = sum;
    lsums[2 * lid + 1] = sumsq;
    lminmax[2 * lid] = vmin;
    lminmax[2 * lid + 1] = vmax;
    barrier(CLK_LOCAL_MEM_FENCE);
    if (lid == 0) {
        for (uint j = 1; j < lsize; j++) {
            count += lcount[j];
            sum += lsums[2 * j];
            sumsq += lsums[2 * j + 1];
            vmin = fmin(vmin, lminmax[2 * j]);
            vmax = fmax(vmax, lminmax[2 * j + 1]);
        }
        const uint g = get_group_id(0);
        pcount[g] = count;
        psums[2 * g] = sum;
        psums[2 * g + 1] = sumsq;
        pminmax[2 * g] = vmin;
        pminmax[2 * g + 1] = vmax;
    }
}
