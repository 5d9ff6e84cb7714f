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
 * pixels per bin (key intervals: coarse top-16-bit bins, finer ones inside a
 * window the host places from a sample of rows, counted by the same
 * kernel); a second pass, told per bin by `table` what to do, sums the
 * pixels of the bins it need not see one by one into nested shells (one per
 * clipping iteration, the shell of a bin being the last iteration whose kept
 * range surely holds the bin) and copies out, value by value, the pixels of
 * the few bins that hold a median, a MAD or a clipping bound. The host then
 * replays every clipping iteration exactly from these. With one work-item
 * per group (a CPU) each group owns its slice of hist and its gather
 * cursors, so nothing is atomic, and walks its rows eight pixels at a time;
 * otherwise all groups share one copy through atomics. */

#define STATS_BIN_SHIFT 16u
#define STATS_MAX_SHELLS 16u
#define STATS_MAX_ENTRIES (2u * STATS_MAX_SHELLS) /* a shell's pixels below and above its centre */
#define STATS_SLOT0 STATS_MAX_ENTRIES

/* A key's bin: coarse bins of 2^16 keys (the top 16 bits) outside the
 * window [wlo, whi) of keys, bins of 2^ws keys inside it, numbered in value
 * order (wb0 = wlo >> 16, wb1 the first bin above the window). wlo = whi = 0
 * and wb1 = 0 give the plain top-16-bit bins. The host picks the window from
 * a sample, so that the bins that hold a median, MAD or clipping bound are
 * narrow next to the noise and hold few pixels. */
inline uint stats_bin_of(const uint key, const uint wlo, const uint whi, const uint ws, const uint wb0,
                         const uint wb1)
{
    const uint below = key >> STATS_BIN_SHIFT, inside = wb0 + ((key - wlo) >> ws),
               above = wb1 + ((key - whi) >> STATS_BIN_SHIFT);
    return key < wlo ? below : key < whi ? inside : above;
}

/* Eight pixels at a time: both passes are bound by instructions per pixel on
 * a CPU (one work-item per group walks whole rows), so keys and bins are
 * formed in vectors, branch-free. */
inline uint8 stats_key8(const float8 v)
{
    const uint8 u = as_uint8(v);
    return u ^ select((uint8)0x80000000u, (uint8)0xffffffffu, as_int8(u) < 0);
}

inline uint8 stats_bin_of8(const uint8 key, const uint wlo, const uint whi, const uint ws, const uint wb0,
                           const uint wb1)
{
    const uint8 below = key >> STATS_BIN_SHIFT, inside = (uint8)wb0 + ((key - (uint8)wlo) >> (uint8)ws),
                above = (uint8)wb1 + ((key - (uint8)whi) >> STATS_BIN_SHIFT);
    return select(select(above, inside, key < (uint8)whi), below, key < (uint8)wlo);
}

/* Lanes usable: finite and not masked (as clred_usable), -1 where so. */
inline int8 stats_usable8(const float8 v, global const ushort *mrow, const uint x, const ushort ignore)
{
    int8 use = isfinite(v);
    if (mrow)
        use &= convert_int8((vload8(0, mrow + x) & (ushort8)ignore) == (ushort8)0);
    return use;
}

#define STATS_LANES(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)

/* Counts per bin over rh rows of the region's rh_all: every row_step-th row
 * (rows y row_step + y % row_step, y < rh); each group owns nb + 1 counts on
 * a CPU, the last one taking the unusable pixels of the eight-lane loop (no
 * branch per lane). */
kernel void stats_bin_hist(global const float *sci, global const ushort *mask, const ushort ignore, const uint width,
                           const uint x0, const uint y0, const uint rw, const uint rh, global uint *hist,
                           const uint nb, const uint row_step, const uint wlo, const uint whi, const uint ws,
                           const uint wb0, const uint wb1, const uint rh_all)
{
    const uint lid = get_local_id(0), lsize = get_local_size(0);
    const uint g = get_group_id(0), groups = get_num_groups(0);
    const bool own = lsize == 1;
    global uint *h = own ? hist + (size_t)g * (nb + 1) : hist;
    const uint r0 = (uint)(((ulong)rh * g) / groups), r1 = (uint)(((ulong)rh * (g + 1)) / groups);
    for (uint y = r0; y < r1; y++) {
        /* staggered, so that a sample of every second row still sees both
         * parities (detectors often alternate rows) */
        const size_t row = (size_t)(y0 + min(y * row_step + y % row_step, rh_all - 1)) * width + x0;
        global const float *srow = sci + row;
        global const ushort *mrow = mask ? mask + row : 0;
        uint x = lid;
        if (own) {
            for (; x + 8 <= rw; x += 8) {
                const float8 v = vload8(0, srow + x);
                const int8 use = stats_usable8(v, mrow, x, ignore);
                const uint8 b = select((uint8)nb, stats_bin_of8(stats_key8(v), wlo, whi, ws, wb0, wb1), use);
#define STATS_COUNT_LANE(i) h[b.s##i]++;
                STATS_LANES(STATS_COUNT_LANE)
#undef STATS_COUNT_LANE
            }
        }
        for (; x < rw; x += lsize) {
            const float v = srow[x];
            const ushort m = mrow ? mrow[x] : (ushort)0;
            if (!clred_usable(v, m, ignore))
                continue;
            const uint b = stats_bin_of(clred_float_key(v), wlo, whi, ws, wb0, wb1);
            if (own)
                h[b]++;
            else
                atomic_inc(&h[b]);
        }
    }
}

/* Vector sums in halves of four lanes: eight doubles by value would leave
 * the AVX2 calling convention. */
#ifdef CLRED_USE_DOUBLE
typedef double4 acc4_t;
#define stats_convert_acc4 convert_double4
#define STATS_MASK4(m) convert_long4(m)
#else
typedef float4 acc4_t;
#define stats_convert_acc4 convert_float4
#define STATS_MASK4(m) (m)
#endif

inline acc_t stats_sum4x2(const acc4_t a, const acc4_t b)
{
    const acc4_t c = a + b;
    return (c.s0 + c.s1) + (c.s2 + c.s3);
}

inline float stats_min8(const float8 a)
{
    const float4 m = fmin(a.lo, a.hi);
    return fmin(fmin(m.s0, m.s1), fmin(m.s2, m.s3));
}

inline float stats_max8(const float8 a)
{
    const float4 m = fmax(a.lo, a.hi);
    return fmax(fmax(m.s0, m.s1), fmax(m.s2, m.s3));
}

/* Whether any lane is set: POCL compiles any() lane by lane. */
inline bool stats_any8(const int8 m)
{
    const int4 a = m.lo | m.hi;
    const int2 b = a.lo | a.hi;
    return (b.x | b.y) != 0;
}

/* Lanes whose key lies in the innermost shell's keys [hot_lo, hot_hi] and
 * in none of the four intervals that cover the gather slots inside it
 * (holes.s0: the first key, .s1: the last less the first; .s23, ...; an
 * unused one is (0, 0), key 0 being a NaN's): their table entry is surely
 * the innermost shell. Four fixed tests, no loop: a loop here made the
 * compiler spill the running sums every eight pixels. */
inline int8 stats_hot8(const uint8 key, const uint hot_lo, const uint hot_hi, const uint8 holes)
{
    int8 out = (key - (uint8)hot_lo) > (uint8)(hot_hi - hot_lo);
    out |= (key - (uint8)holes.s0) <= (uint8)holes.s1;
    out |= (key - (uint8)holes.s2) <= (uint8)holes.s3;
    out |= (key - (uint8)holes.s4) <= (uint8)holes.s5;
    out |= (key - (uint8)holes.s6) <= (uint8)holes.s7;
    return ~out;
}

/* Whether a key is in the innermost shell's fast set (as stats_hot8, one
 * lane): the scalar loops classify pixels the same way as the vector one, so
 * that every key is summed the same way whichever loop sees it. */
inline bool stats_hot1(const uint key, const uint hot_lo, const uint hot_hi, const uint8 holes)
{
    return key - hot_lo <= hot_hi - hot_lo && key - holes.s0 > holes.s1 && key - holes.s2 > holes.s3 &&
           key - holes.s4 > holes.s5 && key - holes.s6 > holes.s7;
}

/* One usable pixel v, not in the fast set, whose bin's table entry is e
 * (stats_bin_scan and stats_bin_one). */
#define STATS_SCAN_PIXEL(v, e)                                                                                        \
    if ((e) < STATS_SLOT0) {                                                                                          \
        const uint s = (e);                                                                                           \
        const acc_t d = (acc_t)(v) - shift;                                                                           \
        cnt[s]++;                                                                                                     \
        s1[s] += d;                                                                                                   \
        s2[s] += d * d;                                                                                               \
        mn[s] = fmin(mn[s], (v));                                                                                     \
        mx[s] = fmax(mx[s], (v));                                                                                     \
    } else {                                                                                                          \
        const uint slot = (e) - STATS_SLOT0;                                                                          \
        const uint pos = own ? cursor[slot]++ : atomic_inc(&cursor[slot]);                                            \
        if (pos < cend[slot])                                                                                         \
            gather[pos] = (v);                                                                                        \
    }

/* A row's pixels from from on, step apart, one by one: those of the
 * fast set (stats_hot1) into its scalar sums, the others through the table
 * (stats_bin_scan and stats_bin_one). */
#define STATS_SCAN_SCALAR(from, step)                                                                                 \
    for (uint px = (from); px < rw; px += (step)) {                                                                   \
        const float v = srow[px];                                                                                     \
        const ushort m = mrow ? mrow[px] : (ushort)0;                                                                 \
        if (!clred_usable(v, m, ignore))                                                                              \
            continue;                                                                                                 \
        const uint key = clred_float_key(v);                                                                          \
        if (stats_hot1(key, hot_lo, hot_hi, holes)) {                                                                 \
            const acc_t d = (acc_t)v - shift;                                                                         \
            hcnt++;                                                                                                   \
            gb[0] += key < holes.s0;                                                                                  \
            gb[1] += key < holes.s2;                                                                                  \
            gb[2] += key < holes.s4;                                                                                  \
            gb[3] += key < holes.s6;                                                                                  \
            hs1 += d;                                                                                                 \
            hs2 += d * d;                                                                                             \
            hmn = fmin(hmn, v);                                                                                       \
            hmx = fmax(hmx, v);                                                                                       \
            continue;                                                                                                 \
        }                                                                                                             \
        const uint e = table[stats_bin_of(key, wlo, whi, ws, wb0, wb1)];                                              \
        STATS_SCAN_PIXEL(v, e)                                                                                        \
    }

/* The lanes of an int8 counter added up. */
#define STATS_SUM8(a) ((uint)(((a).s0 + (a).s1) + ((a).s2 + (a).s3) + ((a).s4 + (a).s5) + ((a).s6 + (a).s7)))

/* A work-item's count, sums and extrema per table entry (plus the one past
 * the last), empty; stats_bin_scan and stats_bin_one fill them alike. */
#define STATS_ENTRY_ACCUMULATORS                                                                                    \
    uint cnt[STATS_MAX_ENTRIES + 1];                                                                               \
    acc_t s1[STATS_MAX_ENTRIES + 1], s2[STATS_MAX_ENTRIES + 1];                                                    \
    float mn[STATS_MAX_ENTRIES + 1], mx[STATS_MAX_ENTRIES + 1];                                                    \
    for (uint s = 0; s <= STATS_MAX_ENTRIES; s++) {                                                                \
        cnt[s] = 0;                                                                                                \
        s1[s] = s2[s] = 0;                                                                                         \
        mn[s] = INFINITY;                                                                                          \
        mx[s] = -INFINITY;                                                                                         \
    }

/* table[bin]: an accumulator (below STATS_SLOT0: the host's shell and side
 * of the bin), or STATS_SLOT0 + the gather slot of a bin gathered value by
 * value (a slot: consecutive such bins). Keys in the innermost shell's fast
 * set (stats_hot1/8) skip the table and go to one more accumulator, nent,
 * kept in registers, and are also counted below each hole's first key
 * (pgap: 4 per group), which splits them between the holes for the host.
 * Per group and accumulator: count, sum and sum of squares of (x - shift)
 * in acc_t, min and max. gcursor holds each slot's next position in gather
 * (per group when own); a pixel is written only below its slot's gend, and
 * the cursor counts on, so the host sees an overflow (the single pass's
 * capacities are predicted from a sample). */
kernel void stats_bin_scan(global const float *sci, global const ushort *mask, const ushort ignore,
                           const uint width, const uint x0, const uint y0, const uint rw, const uint rh,
                           global const uchar *table, const uint nent, const acc_t shift, global uint *pcount,
                           global acc_t *psums, global float *pminmax, local uint *lcount, local acc_t *lsums,
                           local float *lminmax, global float *gather, global uint *gcursor,
                           global const uint *gend, const uint ngather, const uint wlo, const uint whi,
                           const uint ws, const uint wb0, const uint wb1, const uint hot_lo, const uint hot_hi,
                           const uint8 holes, global uint *pgap)
{
    const uint lid = get_local_id(0), lsize = get_local_size(0);
    const uint g = get_group_id(0), groups = get_num_groups(0);
    const bool own = lsize == 1;
    global uint *cursor = own ? gcursor + (size_t)g * ngather : gcursor;
    global const uint *cend = own ? gend + (size_t)g * ngather : gend;
    STATS_ENTRY_ACCUMULATORS;
    uint hcnt = 0, gb[4] = {0, 0, 0, 0};
    acc_t hs1 = 0, hs2 = 0;
    float hmn = INFINITY, hmx = -INFINITY;
    acc4_t hs1a = (acc4_t)0, hs1b = (acc4_t)0, hs2a = (acc4_t)0, hs2b = (acc4_t)0;
    float8 hmnv = (float8)INFINITY, hmxv = (float8)-INFINITY;
    int8 hcntv = (int8)0, gb0 = (int8)0, gb1 = (int8)0, gb2 = (int8)0, gb3 = (int8)0;
    const int hk0 = as_int(holes.s0 ^ 0x80000000u), hk1 = as_int(holes.s2 ^ 0x80000000u),
              hk2 = as_int(holes.s4 ^ 0x80000000u), hk3 = as_int(holes.s6 ^ 0x80000000u);
    const uint r0 = (uint)(((ulong)rh * g) / groups), r1 = (uint)(((ulong)rh * (g + 1)) / groups);
    for (uint y = r0; y < r1; y++) {
        const size_t row = (size_t)(y0 + y) * width + x0;
        global const float *srow = sci + row;
        global const ushort *mrow = mask ? mask + row : 0;
        uint x = lid;
        if (own) {
            /* Eight at a time: the lanes in the fast set (nearly all) are
             * summed as vectors (lane sums added at the end: the same error
             * model as per-row partials), the others one by one through the
             * table. */
            for (; x + 8 <= rw; x += 8) {
                const float8 v = vload8(0, srow + x);
                const int8 use = stats_usable8(v, mrow, x, ignore);
                const uint8 key = stats_key8(v);
                const int8 inner = use & stats_hot8(key, hot_lo, hot_hi, holes);
                const acc4_t da = select((acc4_t)0, stats_convert_acc4(v.lo) - (acc4_t)shift, STATS_MASK4(inner.lo)),
                             db = select((acc4_t)0, stats_convert_acc4(v.hi) - (acc4_t)shift, STATS_MASK4(inner.hi));
                hcntv -= inner; /* inner lanes are -1 */
                /* signed keys: one compare per hole; other lanes never count */
                const int8 kin = select((int8)INT_MAX, as_int8(key ^ (uint8)0x80000000u), inner);
                gb0 -= kin < (int8)hk0;
                gb1 -= kin < (int8)hk1;
                gb2 -= kin < (int8)hk2;
                gb3 -= kin < (int8)hk3;
                hs1a += da;
                hs1b += db;
                hs2a += da * da;
                hs2b += db * db;
                /* inner lanes are finite: plain compares, no NaN handling */
                hmnv = select(hmnv, v, inner & (v < hmnv));
                hmxv = select(hmxv, v, inner & (v > hmxv));
                const int8 rest = use & ~inner;
                if (stats_any8(rest)) {
                    const uint8 b = stats_bin_of8(key, wlo, whi, ws, wb0, wb1);
#define STATS_SCAN_LANE(i)                                                                                            \
    if (rest.s##i) {                                                                                                  \
        const float vi = v.s##i;                                                                                      \
        const uint ei = table[b.s##i];                                                                                \
        STATS_SCAN_PIXEL(vi, ei)                                                                                      \
    }
                    STATS_LANES(STATS_SCAN_LANE)
#undef STATS_SCAN_LANE
                }
            }
        }
        STATS_SCAN_SCALAR(x, lsize)
    }
    const int4 c4 = hcntv.lo + hcntv.hi;
    hcnt += (uint)((c4.s0 + c4.s1) + (c4.s2 + c4.s3));
    gb[0] += STATS_SUM8(gb0);
    gb[1] += STATS_SUM8(gb1);
    gb[2] += STATS_SUM8(gb2);
    gb[3] += STATS_SUM8(gb3);
    hs1 += stats_sum4x2(hs1a, hs1b);
    hs2 += stats_sum4x2(hs2a, hs2b);
    hmn = fmin(hmn, stats_min8(hmnv));
    hmx = fmax(hmx, stats_max8(hmxv));
    cnt[nent] = hcnt;
    s1[nent] = hs1;
    s2[nent] = hs2;
    mn[nent] = hmn;
    mx[nent] = hmx;
    /* The group's accumulators, one at a time through local memory. */
    for (uint s = 0; s <= nent + 4; s++) {
        lcount[lid] = s <= nent ? cnt[s] : gb[s - nent - 1];
        lsums[2 * lid] = s <= nent ? s1[s] : 0;
        lsums[2 * lid + 1] = s <= nent ? s2[s] : 0;
        lminmax[2 * lid] = s <= nent ? mn[s] : 0;
        lminmax[2 * lid + 1] = s <= nent ? mx[s] : 0;
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
            if (s > nent) {
                pgap[(size_t)g * 4 + (s - nent - 1)] = c;
            } else {
                const size_t o = (size_t)g * (nent + 1) + s;
                pcount[o] = c;
                psums[2 * o] = a;
                psums[2 * o + 1] = b;
                pminmax[2 * o] = lo;
                pminmax[2 * o + 1] = hi;
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
}

/* ---------------------------------------------------------------- one read
 * stats_bin_one: stats_bin_scan's single pass for one work-item per group (a
 * CPU), with the same outputs, classified by float compares instead of keys.
 * The host sends it only where that is the same partition (thr's values
 * finite and nonzero: away from 0, float order is key order), with at most
 * three unmerged holes (each exactly one gather slot) inside the core:
 * thr = (core lo, core hi, hole 0 first, last, hole 1 ..., hole 2 ...), an
 * unused hole NaN (no compare holds).
 *
 * Per eight pixels the fast set (in the core, in no hole) is summed as
 * vectors with no branch; the other lanes (a few per cent: the wings, the
 * holes, unusable pixels) are only noted, as one byte of bits per eight
 * pixels of a chunk of the row (one store, no branch), and taken one by one
 * through the table after the chunk, 64 pixels' bits a word. A branch per
 * eight pixels on "any other lane" (stats_bin_scan's) is taken about a
 * quarter of the time on a sky frame and mispredicted: it cost more than the
 * vector work; per-lane lists of pixel offsets (one store per lane, eight
 * per vector, whatever its lanes) cost a third of the loop's instructions. */
#define STATS_ONE_CHUNK 2048u
#define STATS_ONE_WORDS (STATS_ONE_CHUNK / 64u)

/* The vector loop over [c0, c1) of a row: the fast lanes summed, the other
 * lanes' bits stored in the chunk's byte for these eight. MASKED: masked lanes
 * as NaN (no compare holds); the loop is written out with and without the
 * mask plane, so that no branch on it stays inside. */
#define STATS_ONE_VECTORS(MASKED)                                                                                     \
    for (uint x = c0; x < c1; x += 8) {                                                                               \
        float8 v = vload8(0, p);                                                                                      \
        if (MASKED)                                                                                                   \
            v = select(v, (float8)NAN, convert_int8((vload8(0, mrow + x) & (ushort8)ignore) != (ushort8)0));          \
        p += 8;                                                                                                       \
        const int8 core = (v >= thr.s0) & (v <= thr.s1);                                                              \
        const int8 b0 = v < thr.s2, b1 = v < thr.s4, b2 = v < thr.s6;                                                 \
        const int8 hole = (~b0 & (v <= thr.s3)) | (~b1 & (v <= thr.s5)) | (~b2 & (v <= thr.s7));                      \
        const int8 fast = core & ~hole;                                                                               \
        gaps += fast & ((b0 & (int8)1) | (b1 & (int8)(1 << 10)) | (b2 & (int8)(1 << 20)));                           \
        const float8 vf = select((float8)shf, v, fast);                                                               \
        const acc4_t da = stats_convert_acc4(vf.lo) - (acc4_t)shift, db = stats_convert_acc4(vf.hi) - (acc4_t)shift;  \
        hs1a += da;                                                                                                   \
        hs1b += db;                                                                                                   \
        hs2a += da * da;                                                                                              \
        hs2b += db * db;                                                                                              \
        hmnv = select(hmnv, v, fast & (v < hmnv));                                                                    \
        hmxv = select(hmxv, v, fast & (v > hmxv));                                                                    \
        const int8 lb = ~fast & (int8)(1, 2, 4, 8, 16, 32, 64, 128);                                                  \
        const int4 l4 = lb.lo | lb.hi;                                                                                \
        const int2 l2 = l4.lo | l4.hi;                                                                                \
        notes[(x - c0) >> 3] = (uchar)(l2.x | l2.y);                                                                  \
    }

kernel void stats_bin_one(global const float *sci, global const ushort *mask, const ushort ignore,
                          const uint width, const uint x0, const uint y0, const uint rw, const uint rh,
                          global const uchar *table, const uint nent, const acc_t shift, global uint *pcount,
                          global acc_t *psums, global float *pminmax, global float *gather, global uint *gcursor,
                          global const uint *gend, const uint ngather, const uint wlo, const uint whi,
                          const uint ws, const uint wb0, const uint wb1, const uint hot_lo, const uint hot_hi,
                          const uint8 holes, const float8 thr, global uint *pgap)
{
    const uint g = get_group_id(0), groups = get_num_groups(0);
    global uint *cursor = gcursor + (size_t)g * ngather;
    global const uint *cend = gend + (size_t)g * ngather;
    STATS_ENTRY_ACCUMULATORS;
    const bool own = true;
    uint hcnt = 0, gb[4] = {0, 0, 0, 0};
    acc_t hs1 = 0, hs2 = 0;
    float hmn = INFINITY, hmx = -INFINITY;
    float8 hmnv = (float8)INFINITY, hmxv = (float8)-INFINITY;
    acc4_t hs1a = (acc4_t)0, hs1b = (acc4_t)0, hs2a = (acc4_t)0, hs2b = (acc4_t)0;
    /* the fast lanes below each hole's first value, per lane and chunk (at
     * most 256 each): three 10-bit fields of one counter, one register for
     * three in a loop that spilled; the fast lanes themselves are counted
     * from the notes (the lanes without a bit) */
    int8 gaps;
    /* fast lanes leave 0 in the sums: the host sends a shift that is a float */
    const float shf = (float)shift;
    ulong words[STATS_ONE_WORDS];
    uchar *notes = (uchar *)words; /* byte k: the eight pixels from 8 k, bit i: pixel 8 k + i */
    const uint r0 = (uint)(((ulong)rh * g) / groups), r1 = (uint)(((ulong)rh * (g + 1)) / groups);
    for (uint y = r0; y < r1; y++) {
        const size_t row = (size_t)(y0 + y) * width + x0;
        global const float *srow = sci + row;
        global const ushort *mrow = mask ? mask + row : 0;
        const uint vend = rw & ~7u;
        for (uint c0 = 0; c0 < vend; c0 += STATS_ONE_CHUNK) {
            const uint c1 = min(vend, c0 + STATS_ONE_CHUNK), nw = (c1 - c0 + 63) >> 6;
            words[nw - 1] = 0; /* a short chunk's last word: its bytes past c1 stay clear */
            global const float *p = srow + c0; /* indexing srow + x split the vector load in four */
            gaps = (int8)0;
            if (mrow)
                STATS_ONE_VECTORS(1)
            else
                STATS_ONE_VECTORS(0)
            gb[0] += STATS_SUM8(gaps & (int8)1023);
            gb[1] += STATS_SUM8((gaps >> 10) & (int8)1023);
            gb[2] += STATS_SUM8(gaps >> 20);
            hcnt += c1 - c0;
            for (uint k = 0; k < nw; k++) {
                hcnt -= (uint)popcount(words[k]);
                for (ulong bits = words[k]; bits; bits &= bits - 1) {
                    const uint b = (uint)popcount((bits & (0 - bits)) - 1); /* the lowest set bit */
#ifdef __ENDIAN_LITTLE__
                    const uint xi = c0 + 64 * k + b;
#else
                    const uint xi = c0 + 64 * k + ((7u - (b >> 3)) << 3) + (b & 7u); /* byte j is the word's 7 - j */
#endif
                    const float vi = srow[xi];
                    if (clred_usable(vi, mrow ? mrow[xi] : (ushort)0, ignore)) {
                        const uint ei = table[stats_bin_of(clred_float_key(vi), wlo, whi, ws, wb0, wb1)];
                        STATS_SCAN_PIXEL(vi, ei)
                    }
                }
            }
        }
        STATS_SCAN_SCALAR(vend, 1)
    }
    hs1 += stats_sum4x2(hs1a, hs1b);
    hs2 += stats_sum4x2(hs2a, hs2b);
    cnt[nent] = hcnt;
    s1[nent] = hs1;
    s2[nent] = hs2;
    mn[nent] = fmin(hmn, stats_min8(hmnv));
    mx[nent] = fmax(hmx, stats_max8(hmxv));
    for (uint s = 0; s <= nent; s++) {
        const size_t o = (size_t)g * (nent + 1) + s;
        pcount[o] = cnt[s];
        psums[2 * o] = s1[s];
        psums[2 * o + 1] = s2[s];
        pminmax[2 * o] = mn[s];
        pminmax[2 * o + 1] = mx[s];
    }
    for (uint h = 0; h < 4; h++)
        pgap[(size_t)g * 4 + h] = gb[h];
}
