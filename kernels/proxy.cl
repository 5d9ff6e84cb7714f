/* Proxy pixels (CUTE): every spectral pixel against every candidate over the
 * dark frames (the background and final frames from the match: proxy_apply
 * in arith.cl).
 * Built with -D NT=<the number of darks>, -D TP=<NT rounded up to VW> (the
 * series' stride: pads are 0 in both series, so their residual 0 counts
 * neither above a bound nor into a sum of squares), -D NP=<power of two >=
 * NT> (the sorting network's size) and -D TILE=<candidates per local tile>.
 * Scores are in double (see clred.h for the definitions). */
#include "lib_vec.cl"
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
/* no fused multiply-adds: the scores must be the plain operations that a
 * reference (and NumPy) computes, bit for bit */
#pragma OPENCL FP_CONTRACT OFF

#ifndef NT
#define NT 30
#endif
#ifndef TP
#define TP NT
#endif
#ifndef NP
#define NP 32
#endif
#ifndef TILE
#define TILE 32
#endif
/* vectors per series */
#define NV (TP / VW)

/* Is (k1, k2, idx) better than (b1, b2, bidx)? Lexicographic; NaN never
 * occurs (unusable pixels are not in the lists). */
inline bool better(const double k1, const double k2, const int idx, const double b1, const double b2, const int bidx)
{
    return k1 < b1 || (k1 == b1 && (k2 < b2 || (k2 == b2 && idx < bidx)));
}

/* Ascending bitonic sort of v[0..NP) (a fixed network: every index a
 * constant once the loops are unrolled). */
inline void sort_np(float *v)
{
#pragma unroll
    for (int k = 2; k <= NP; k <<= 1)
#pragma unroll
        for (int j = k >> 1; j > 0; j >>= 1)
#pragma unroll
            for (int i = 0; i < NP; i++) {
                const int l = i ^ j;
                if (l > i) {
                    const float a = v[i], b = v[l];
                    const bool up = (i & k) == 0;
                    v[i] = up ? fmin(a, b) : fmax(a, b);
                    v[l] = up ? fmax(a, b) : fmin(a, b);
                }
            }
}

/* The lanes' sum (any order: the callers' bounds allow for it). */
inline int hsum_i(const veci v)
{
    int a[VW];
    VEC_STORE(v, a);
    int s = 0;
    for (int i = 0; i < VW; i++)
        s += a[i];
    return s;
}

inline float hsum_f(const vecf v)
{
    float a[VW];
    VEC_STORE(v, a);
    float s = 0;
    for (int i = 0; i < VW; i++)
        s += a[i];
    return s;
}

/* One work-item per (spectral pixel s, slice of the candidates): the best
 * candidate of its slice. spec and cand hold each pixel's NT dark values
 * (pixel-major, stride TP); spec_x / cand_x their columns, cand_idx their
 * pixel indices (ascending, so the lowest index wins ties within a slice).
 * method 0: keys (|median|, std); 1: (msr, 0). Outputs per (slice, s).
 * With use_limit (the median method's tie tolerance, a second pass) only
 * candidates with |median| <= limit[s] count, all as ties (key 0, std).
 *
 * Each candidate first meets an exact bound in float vectors (VW lanes):
 * most candidates end there, after NV vector subtractions; only the few
 * that may win get the double scores and the sort. */
kernel void proxy_match(global const float *spec, global const int *spec_x, const int S, global const float *cand,
                        global const int *cand_x, global const int *cand_idx, const int C, const int method,
                        const int window, const int slice_len, const int use_limit, global const double *limit,
                        global double *out_k1, global double *out_k2, global int *out_idx, global double *out_med,
                        global double *out_std, global double *out_msr, local float *tile)
{
    const int s = get_global_id(0), slice = get_global_id(1), lid = get_local_id(0), lsz = get_local_size(0);
    const bool active = s < S;
    vecf mine[NV];
    for (int v = 0; v < NV; v++)
        mine[v] = active ? VEC_LOAD(spec + (size_t)s * TP + v * VW) : (vecf)0.0f;
    const int sx = active ? spec_x[s] : 0;
    const int c0 = slice * slice_len, c1 = min(c0 + slice_len, C);
    double b1 = INFINITY, b2 = INFINITY, bmed = NAN, bstd = NAN, bmsr = NAN;
    int bidx = INT_MAX;
    /* hi: the largest float <= b1, so that for a float d, d > hi exactly
     * when (double)d > b1 (and d < -hi when (double)d < -b1) */
    const double lim = use_limit && active ? limit[s] : INFINITY;
    float hi = use_limit ? convert_float_rtn(lim) : INFINITY;
    /* least squares: s2f, the float sum of squares, is within (NT + 1) u of
     * the double one (u = 2^-24, non-negative terms); keep_f = 1 - 2 (NT + 2) u
     * leaves a margin, so s2f * keep_f > b1 * NT proves msr > b1 */
    const double keep_f = 1.0 - 2.0 * (NT + 2) * 0x1p-24;
    double lsq_bound = INFINITY;
    for (int base = c0; base < c1; base += TILE) {
        const int n = min(TILE, c1 - base);
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int k = lid; k < n * NV; k += lsz)
            VEC_STORE(VEC_LOAD(cand + (size_t)base * TP + (size_t)k * VW), tile + k * VW);
        barrier(CLK_LOCAL_MEM_FENCE);
        if (!active)
            continue;
        for (int c = 0; c < n; c++) {
            if (window > 0 && abs(cand_x[base + c] - sx) > window)
                continue;
            const local float *cv = tile + c * TP;
            if (method == 0) {
                /* exact pruning: when more than half of the residuals lie
                 * above b1 (or below -b1), both middle values do, so
                 * |median| > b1 and the candidate cannot win (ties are not
                 * pruned) */
                veci above = 0, below = 0;
                const vecf h = (vecf)hi;
                for (int v = 0; v < NV; v++) {
                    const vecf d = mine[v] - VEC_LOAD(cv + v * VW);
                    above += TO_VECI(d > h);
                    below += TO_VECI(d < -h);
                }
                if (-hsum_i(above) > NT / 2 || -hsum_i(below) > NT / 2)
                    continue;
            } else {
                vecf q = 0.0f;
                for (int v = 0; v < NV; v++) {
                    const vecf d = mine[v] - VEC_LOAD(cv + v * VW);
                    q += d * d;
                }
                if ((double)hsum_f(q) * keep_f > lsq_bound)
                    continue;
            }
            /* the exact scores: residuals in float, sums in double in
             * order, as the reference */
            float r[NP];
            for (int t = 0; t < NP; t++)
                r[t] = t < NT ? spec[(size_t)s * TP + t] - cv[t] : INFINITY;
            double s1 = 0, s2 = 0;
            for (int t = 0; t < NT; t++) {
                s1 += (double)r[t];
                s2 += (double)r[t] * (double)r[t];
            }
            const double msr = s2 / NT, m = s1 / NT, sd = sqrt(fmax(msr - m * m, 0.0));
            double k1, k2, med = NAN;
            if (method == 0) {
                sort_np(r);
                med = 0.5 * ((double)r[(NT - 1) / 2] + (double)r[NT / 2]);
                k1 = fabs(med);
                k2 = sd;
                if (use_limit) {
                    if (k1 > lim)
                        continue;
                    k1 = 0.0;
                }
            } else {
                k1 = msr;
                k2 = 0.0;
            }
            const int idx = cand_idx[base + c];
            if (better(k1, k2, idx, b1, b2, bidx)) {
                b1 = k1, b2 = k2, bidx = idx;
                bmed = med, bstd = sd, bmsr = msr;
                if (!use_limit)
                    hi = convert_float_rtn(b1);
                lsq_bound = b1 * NT;
            }
        }
    }
    if (!active)
        return;
    const size_t o = (size_t)slice * S + s;
    out_k1[o] = b1;
    out_k2[o] = b2;
    out_idx[o] = bidx;
    out_med[o] = bmed;
    out_std[o] = bstd;
    out_msr[o] = bmsr;
}

/* The best over the slices, into slice 0's entries. */
kernel void proxy_reduce(const int S, const int nslices, global double *k1, global double *k2, global int *idx,
                         global double *med, global double *sd, global double *msr)
{
    const int s = get_global_id(0);
    if (s >= S)
        return;
    for (int j = 1; j < nslices; j++) {
        const size_t o = (size_t)j * S + s;
        if (better(k1[o], k2[o], idx[o], k1[s], k2[s], idx[s])) {
            k1[s] = k1[o], k2[s] = k2[o], idx[s] = idx[o];
            med[s] = med[o], sd[s] = sd[o], msr[s] = msr[o];
        }
    }
}
