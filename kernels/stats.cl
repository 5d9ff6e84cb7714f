/* Image statistics: reductions and exact order statistics over the pixels of a
 * region that are usable (finite, not masked) and inside the kept range
 * lo <= x <= hi of a sigma-clipping iteration.
 *
 * Order statistics are found by radix selection on 64-bit keys whose unsigned
 * order is the order of the values: each pass histograms one digit of the keys
 * that share the prefix chosen so far, and the host picks the bucket. A float
 * value's key sits in the top 32 bits; a double deviation uses all 64. With
 * 16-bit digits a float takes two passes; the last one also sums the kept
 * pixels, so a sigma-clipping iteration reads the image twice.
 *
 * A work-group walks a contiguous band of rows (its work-items stride along
 * each row, coalesced on a GPU); a CPU runs one work-item per group, which then
 * owns its histogram and counts without atomics. The host sizes work-groups
 * from CL_KERNEL_WORK_GROUP_SIZE and local memory. */

#include "lib_sort.cl"

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

/* One selection pass over the kept pixels of the region (rw x rh at x0, y0):
 * - the histogram of the digit (key >> shift) & (nbins - 1) over the keys that
 *   match prefix under prefix_mask, added into hist (zeroed by the host);
 * - when want_above, the smallest key matching above_prefix under above_mask
 *   (the upper middle of an even count, once it has left the median's bucket),
 *   per work-group in pabove (ULONG_MAX if none);
 * - when want_sums, per work-group the count, the sum and sum of squares of
 *   (x - sum_shift) in acc_t, and min and max. The shift (a value next to the
 *   median) keeps the sum of squares from cancelling; sums are formed per row
 *   first so that float accumulation adds short chains;
 * - when want_edges, per work-group the number of kept keys matching edge_lo
 *   and edge_hi under edge_mask (the first-digit buckets of the range's ends,
 *   whose counts the host cannot derive from the previous histogram). */
kernel void stats_select(global const float *sci, global const ushort *mask, const ushort ignore, const uint width,
                         const uint x0, const uint y0, const uint rw, const uint rh, const float lo, const float hi,
                         const uint deviation, const acc_t centre, const ulong prefix, const ulong prefix_mask,
                         const uint shift, const uint nbins, global uint *hist, local uint *lhist,
                         const uint want_above, const ulong above_prefix, const ulong above_mask,
                         global ulong *pabove, local ulong *labove, const uint want_sums, const acc_t sum_shift,
                         global uint *pcount, global acc_t *psums, global float *pminmax, local uint *lcount,
                         local acc_t *lsums, local float *lminmax, const uint want_edges, const ulong edge_lo,
                         const ulong edge_hi, const ulong edge_mask, global uint *pedges, local uint *ledges)
{
    const uint lid = get_local_id(0), lsize = get_local_size(0);
    const uint g = get_group_id(0), groups = get_num_groups(0);
    const bool own_hist = lsize == 1; /* nobody else writes this group's histogram */
    for (uint b = lid; b < nbins; b += lsize)
        lhist[b] = 0;
    barrier(CLK_LOCAL_MEM_FENCE);

    const uint r0 = (uint)(((ulong)rh * g) / groups), r1 = (uint)(((ulong)rh * (g + 1)) / groups);
    const uint digit_mask = nbins - 1;
    uint count = 0, nlo = 0, nhi = 0;
    acc_t sum = 0, sumsq = 0;
    float vmin = INFINITY, vmax = -INFINITY;
    ulong best = ULONG_MAX;
    for (uint y = r0; y < r1; y++) {
        const size_t row = (size_t)(y0 + y) * width + x0;
        global const float *srow = sci + row;
        global const ushort *mrow = mask ? mask + row : 0;
        acc_t rsum = 0, rsumsq = 0;
        for (uint x = lid; x < rw; x += lsize) {
            const float v = srow[x];
            const ushort m = mrow ? mrow[x] : (ushort)0;
            if (!(clred_usable(v, m, ignore) && v >= lo && v <= hi))
                continue;
            const ulong key = stats_key(v, deviation, centre);
            if ((key & prefix_mask) == prefix) {
                const uint b = (uint)(key >> shift) & digit_mask;
                if (own_hist)
                    lhist[b]++;
                else
                    atomic_inc(&lhist[b]);
            }
            if (want_edges) {
                nlo += (key & edge_mask) == edge_lo;
                nhi += (key & edge_mask) == edge_hi;
            }
            if (want_above && (key & above_mask) == above_prefix)
                best = min(best, key);
            if (want_sums) {
                const acc_t d = (acc_t)v - sum_shift;
                count++;
                rsum += d;
                rsumsq += d * d;
                vmin = fmin(vmin, v);
                vmax = fmax(vmax, v);
            }
        }
        sum += rsum;
        sumsq += rsumsq;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint b = lid; b < nbins; b += lsize) {
        const uint c = lhist[b];
        if (c)
            atomic_add(&hist[b], c);
    }
    /* Every pass reduces, even one that wants no partials: a uniform early
     * return before this barrier lost one work-item's partial under POCL. */
    labove[lid] = best;
    lcount[lid] = count;
    lsums[2 * lid] = sum;
    lsums[2 * lid + 1] = sumsq;
    lminmax[2 * lid] = vmin;
    lminmax[2 * lid + 1] = vmax;
    ledges[2 * lid] = nlo;
    ledges[2 * lid + 1] = nhi;
    barrier(CLK_LOCAL_MEM_FENCE);
    if (lid == 0) {
        for (uint j = 1; j < lsize; j++) {
            best = min(best, labove[j]);
            count += lcount[j];
            sum += lsums[2 * j];
            sumsq += lsums[2 * j + 1];
            vmin = fmin(vmin, lminmax[2 * j]);
            vmax = fmax(vmax, lminmax[2 * j + 1]);
            nlo += ledges[2 * j];
            nhi += ledges[2 * j + 1];
        }
        if (want_above)
            pabove[g] = best;
        if (want_sums) {
            pcount[g] = count;
            psums[2 * g] = sum;
            psums[2 * g + 1] = sumsq;
            pminmax[2 * g] = vmin;
            pminmax[2 * g + 1] = vmax;
        }
        if (want_edges) {
            pedges[2 * g] = nlo;
            pedges[2 * g + 1] = nhi;
        }
    }
}

/* ---------------------------------------------------------------- bins
 * The few-pass method (host/steps/stats_bins.c): one pass counts the usable
 * pixels per bin of the top 16 bits of their float keys; a second pass, told
 * per bin by `table` what to do, sums the pixels of the bins it need not see
 * one by one into nested shells (one per clipping iteration, the shell of a
 * bin being the last iteration whose kept range surely holds the whole bin)
 * and copies out, value by value, the pixels of the few bins that hold a
 * median, a MAD or a clipping bound. The host then replays every clipping
 * iteration exactly from these. With one work-item per group (a CPU) each
 * group owns its slice of hist and its gather cursors, so nothing is atomic;
 * otherwise all groups share one copy through atomics. */

#define STATS_BIN_SHIFT 16u
#define STATS_MAX_SHELLS 16u

kernel void stats_bin_hist(global const float *sci, global const ushort *mask, const ushort ignore, const uint width,
                           const uint x0, const uint y0, const uint rw, const uint rh, global uint *hist)
{
    const uint lid = get_local_id(0), lsize = get_local_size(0);
    const uint g = get_group_id(0), groups = get_num_groups(0);
    const bool own = lsize == 1;
    global uint *h = own ? hist + ((size_t)g << STATS_BIN_SHIFT) : hist;
    const uint r0 = (uint)(((ulong)rh * g) / groups), r1 = (uint)(((ulong)rh * (g + 1)) / groups);
    for (uint y = r0; y < r1; y++) {
        const size_t row = (size_t)(y0 + y) * width + x0;
        global const float *srow = sci + row;
        global const ushort *mrow = mask ? mask + row : 0;
        for (uint x = lid; x < rw; x += lsize) {
            const float v = srow[x];
            const ushort m = mrow ? mrow[x] : (ushort)0;
            if (!clred_usable(v, m, ignore))
                continue;
            const uint b = clred_float_key(v) >> STATS_BIN_SHIFT;
            if (own)
                h[b]++;
            else
                atomic_inc(&h[b]);
        }
    }
}

/* table[bin]: bits 0-7 the shell, bit 8 set for a bin gathered value by
 * value, bits 10-31 its gather slot. Per group and shell: count,
 * sum and sum of squares of (x - shift) in acc_t, min and max. gcursor holds
 * each slot's next position in gather (per group when own). */
kernel void stats_bin_scan(global const float *sci, global const ushort *mask, const ushort ignore,
                           const uint width, const uint x0, const uint y0, const uint rw, const uint rh,
                           global const uint *table, const uint nshells, const acc_t shift, global uint *pcount,
                           global acc_t *psums, global float *pminmax, local uint *lcount, local acc_t *lsums,
                           local float *lminmax, global float *gather, global uint *gcursor, const uint ngather)
{
    const uint lid = get_local_id(0), lsize = get_local_size(0);
    const uint g = get_group_id(0), groups = get_num_groups(0);
    const bool own = lsize == 1;
    global uint *cursor = own ? gcursor + (size_t)g * ngather : gcursor;
    uint cnt[STATS_MAX_SHELLS];
    acc_t s1[STATS_MAX_SHELLS], s2[STATS_MAX_SHELLS];
    float mn[STATS_MAX_SHELLS], mx[STATS_MAX_SHELLS];
    for (uint s = 0; s < STATS_MAX_SHELLS; s++) {
        cnt[s] = 0;
        s1[s] = s2[s] = 0;
        mn[s] = INFINITY;
        mx[s] = -INFINITY;
    }
    const uint hot = nshells - 1;
    uint hcnt = 0;
    acc_t hs1 = 0, hs2 = 0;
    float hmn = INFINITY, hmx = -INFINITY;
    const uint r0 = (uint)(((ulong)rh * g) / groups), r1 = (uint)(((ulong)rh * (g + 1)) / groups);
    for (uint y = r0; y < r1; y++) {
        const size_t row = (size_t)(y0 + y) * width + x0;
        global const float *srow = sci + row;
        global const ushort *mrow = mask ? mask + row : 0;
        for (uint x = lid; x < rw; x += lsize) {
            const float v = srow[x];
            const ushort m = mrow ? mrow[x] : (ushort)0;
            if (!clred_usable(v, m, ignore))
                continue;
            const uint key = clred_float_key(v);
            const uint e = table[key >> STATS_BIN_SHIFT];
            const uint kind = (e >> 8) & 1u, slot = e >> 10;
            if (e == hot) { /* most pixels: the innermost shell, in registers */
                const acc_t d = (acc_t)v - shift;
                hcnt++;
                hs1 += d;
                hs2 += d * d;
                hmn = fmin(hmn, v);
                hmx = fmax(hmx, v);
            } else if (kind == 0) {
                const uint s = e & 255u;
                const acc_t d = (acc_t)v - shift;
                cnt[s]++;
                s1[s] += d;
                s2[s] += d * d;
                mn[s] = fmin(mn[s], v);
                mx[s] = fmax(mx[s], v);
            } else {
                const uint pos = own ? cursor[slot]++ : atomic_inc(&cursor[slot]);
                gather[pos] = v;
            }
        }
    }
    cnt[hot] += hcnt;
    s1[hot] += hs1;
    s2[hot] += hs2;
    mn[hot] = fmin(mn[hot], hmn);
    mx[hot] = fmax(mx[hot], hmx);
    /* The group's shells, one at a time through local memory. */
    for (uint s = 0; s < nshells; s++) {
        lcount[lid] = cnt[s];
        lsums[2 * lid] = s1[s];
        lsums[2 * lid + 1] = s2[s];
        lminmax[2 * lid] = mn[s];
        lminmax[2 * lid + 1] = mx[s];
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid == 0) {
            uint c = 0;
            acc_t a = 0, b = 0;
            float lo = INFINITY, hi = -INFINITY;
            for (uint j = 0; j < lsize; j++) {
                c += lcount[j];
                a += lsums[2 * j];
                b += lsums[2 * j + 1];
                lo = fmin(lo, lminmax[2 * j]);
                hi = fmax(hi, lminmax[2 * j + 1]);
            }
            const size_t o = (size_t)g * nshells + s;
            pcount[o] = c;
            psums[2 * o] = a;
            psums[2 * o + 1] = b;
            pminmax[2 * o] = lo;
            pminmax[2 * o + 1] = hi;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
}
