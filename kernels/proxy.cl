/* Proxy pixels (CUTE): every spectral pixel against every candidate over the
 * dark frames, and the background and final frames from the match.
 * Built with -D NP=<power of two >= the number of darks> (the sorting
 * network's size). Scores are in double (see clred.h for the definitions). */
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
/* no fused multiply-adds: the scores must be the plain operations that a
 * reference (and NumPy) computes, bit for bit */
#pragma OPENCL FP_CONTRACT OFF

#ifndef NP
#define NP 32
#endif
/* candidates per local-memory tile */
#define TILE 32

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

/* One work-item per (spectral pixel s, slice of the candidates): the best
 * candidate of its slice. spec and cand hold each pixel's T dark values
 * (pixel-major); spec_x / cand_x their columns, cand_idx their pixel
 * indices (ascending, so the lowest index wins ties within a slice).
 * method 0: keys (|median|, std); 1: (msr, 0). Outputs per (slice, s). */
kernel void proxy_match(global const float *spec, global const int *spec_x, const int S, global const float *cand,
                        global const int *cand_x, global const int *cand_idx, const int C, const int T,
                        const int method, const int window, const int slice_len, global double *out_k1,
                        global double *out_k2, global int *out_idx, global double *out_med, global double *out_std,
                        global double *out_msr, local float *tile)
{
    const int s = get_global_id(0), slice = get_global_id(1), lid = get_local_id(0), lsz = get_local_size(0);
    const bool active = s < S;
    float mine[NP];
    for (int t = 0; t < NP; t++)
        mine[t] = active && t < T ? spec[(size_t)s * T + t] : 0.0f;
    const int sx = active ? spec_x[s] : 0;
    const int c0 = slice * slice_len, c1 = min(c0 + slice_len, C);
    double b1 = INFINITY, b2 = INFINITY, bmed = NAN, bstd = NAN, bmsr = NAN;
    int bidx = INT_MAX;
    for (int base = c0; base < c1; base += TILE) {
        const int n = min(TILE, c1 - base);
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int k = lid; k < n * T; k += lsz)
            tile[k] = cand[(size_t)base * T + k];
        barrier(CLK_LOCAL_MEM_FENCE);
        if (!active)
            continue;
        for (int c = 0; c < n; c++) {
            const int idx = cand_idx[base + c];
            if (window > 0 && abs(cand_x[base + c] - sx) > window)
                continue;
            float r[NP];
            /* Pruning, exact: when more than half of the residuals lie
             * above b1 (or below -b1), both middle values do, so |median|
             * > b1 and the candidate cannot win (ties are not pruned). Most
             * candidates of the wrong group end here, after T subtractions. */
            int above = 0, below = 0;
            for (int t = 0; t < NP; t++) {
                const float d = t < T ? mine[t] - tile[c * T + t] : INFINITY;
                r[t] = d;
                above += t < T && (double)d > b1;
                below += t < T && (double)d < -b1;
            }
            if (method == 0 && (above > T / 2 || below > T / 2))
                continue;
            /* Least squares prunes too, exactly: the partial sums of
             * squares only grow (rounding is monotone), so once s2 / T
             * exceeds b1 the final msr does. */
            double s1 = 0, s2 = 0;
            bool worse = false;
            for (int t = 0; t < T && !worse; t++) {
                s1 += (double)r[t];
                s2 += (double)r[t] * (double)r[t];
                worse = method == 1 && s2 / T > b1;
            }
            if (worse)
                continue;
            const double msr = s2 / T, m = s1 / T, sd = sqrt(fmax(msr - m * m, 0.0));
            double k1, k2, med = NAN;
            if (method == 0) {
                sort_np(r);
                med = 0.5 * ((double)r[(T - 1) / 2] + (double)r[T / 2]);
                k1 = fabs(med);
                k2 = sd;
            } else {
                k1 = msr;
                k2 = 0.0;
            }
            if (better(k1, k2, idx, b1, b2, bidx)) {
                b1 = k1, b2 = k2, bidx = idx;
                bmed = med, bstd = sd, bmsr = msr;
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

/* bkg = the proxy's value where the pixel has one (proxy >= 0), NaN at
 * unmatched spectral pixels (-2), the pixel's own value elsewhere (-1);
 * final = sci - bkg. */
kernel void proxy_apply(global const float *sci, global const int *proxy, global float *bkg, global float *final,
                        const uint n)
{
    const size_t i = get_global_id(0);
    if (i >= n)
        return;
    const int p = proxy[i];
    const float b = p >= 0 ? sci[p] : p == -2 ? NAN : sci[i];
    bkg[i] = b;
    final[i] = sci[i] - b;
}
