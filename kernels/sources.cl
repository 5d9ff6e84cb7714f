/* Source detection: background subtraction, matched filter with threshold,
 * connected-component labelling and per-source measurement. */

/* must equal CLRED_SRC_* in include/clred.h */
#define SRC_SATURATED 0x01u
#define SRC_EDGE 0x02u
#define SRC_MASKED 0x04u
#define SRC_MOMENTS_FAILED 0x10u

#include "lib_vec.cl"
#include "lib_store.cl"

/* The background-subtracted pixel. A pixel is usable when its value, its
 * mask, its background and its RMS (> 0) are; the maps are read when their
 * use_* flag is set, else the scalars. Unusable pixels give ok = 0. */
#define DETECT_PIXEL_ARGS                                                                                     \
    global const float *sci, global const ushort *mask, const int has_mask, const ushort ignore,              \
        global const float *bkg, const int use_bkg, const float bkg_value, global const float *rms,            \
        const int use_rms, const float rms_value

inline float detect_pixel(global const float *sci, global const ushort *mask, const int has_mask,
                          const ushort ignore, global const float *bkg, const int use_bkg, const float bkg_value,
                          global const float *rms, const int use_rms, const float rms_value, const size_t i,
                          float *r2)
{
    float b = use_bkg ? bkg[i] : bkg_value;
    float s = use_rms ? rms[i] : rms_value;
    ushort m = has_mask ? mask[i] : (ushort)0;
    bool ok = clred_usable(sci[i], m, ignore) && isfinite(b) && isfinite(s) && s > 0.0f;
    *r2 = ok ? s * s : 0.0f;
    return ok ? sci[i] - b : NAN;
}

/* VW pixels' usable flag, value and RMS^2 (0 where unusable), loaded as vectors. */
inline vecf detect_pixels_vec(global const float *sci, global const ushort *mask, const int has_mask,
                              const ushort ignore, global const float *bkg, const int use_bkg, const float bkg_value,
                              global const float *rms, const int use_rms, const float rms_value, const size_t i,
                              vecf *u, vecf *r2)
{
    vecf v = VEC_LOAD(sci + i);
    vecf b = (vecf)bkg_value, s = (vecf)rms_value;
    if (use_bkg)
        b = VEC_LOAD(bkg + i);
    if (use_rms)
        s = VEC_LOAD(rms + i);
    veci ok = TO_VECI(isfinite(v)) & TO_VECI(isfinite(b)) & TO_VECI(isfinite(s)) & TO_VECI(s > 0.0f);
    if (has_mask) {
        vecus m = VEC_LOAD(mask + i);
        ok &= TO_VECI((m & (vecus)ignore) == (vecus)0);
    }
    *u = select((vecf)0.0f, (vecf)1.0f, ok);
    *r2 = select((vecf)0.0f, s * s, ok);
    return select((vecf)0.0f, v - b, ok);
}

/* The matched filter is K(i, j) = g(i) g(j) with a unit-sum 1-D Gaussian g,
 * so F = sum K d / sum K over the usable pixels of the window (a unit-sum
 * kernel renormalised where pixels are missing) and its noise
 * sigma_F = sqrt(sum K^2 rms^2) / sum K are made of three separable sums:
 * of g d, g (usable) and g^2 rms^2 along rows, then along columns. Where a
 * row window is whole and usable the second is sum g and, with a scalar RMS,
 * the third rms^2 sum g^2, the same for every pixel: so the row pass stores
 * only sum g d (and sum g^2 rms^2 with an RMS map), and marks with NaN the
 * windows that are not whole and usable (image edges, masked or NaN pixels).
 * The column pass sums those planes and takes the constant sums; a pixel
 * whose column window meets a NaN mark recomputes that row's sums from the
 * pixels (row_sums), which gives what the three full planes gave. */

/* The three row sums of pixel (x, y) over its usable taps (the window cut
 * at the image's edges); returns whether every tap of the cut window was
 * usable. */
inline int row_sums(DETECT_PIXEL_ARGS, const int w, const int x, const int y, global const float *g, const int hw,
                     float *s_out, float *sk_out, float *sv_out)
{
    const size_t row = (size_t)y * w;
    float s = 0.0f, sk = 0.0f, sv = 0.0f;
    int whole = 1;
    for (int i = max(-hw, -x); i <= min(hw, w - 1 - x); i++) {
        float r2, v = detect_pixel(sci, mask, has_mask, ignore, bkg, use_bkg, bkg_value, rms, use_rms, rms_value,
                                   row + x + i, &r2);
        if (!isfinite(v)) {
            whole = 0;
            continue;
        }
        float k = g[i + hw];
        s += k * v;
        sk += k;
        sv += k * k * r2;
    }
    *s_out = s;
    *sk_out = sk;
    *sv_out = sv;
    return whole;
}

/* The row sums of g and g^2 rms^2 of pixel x's whole, usable window (cut at
 * the image's edges) with a scalar RMS r2 = rms^2. */
inline void whole_row_sums(const int w, const int x, global const float *g, const int hw, const float r2, float *rk,
                           float *rk2)
{
    float a = 0.0f, b = 0.0f;
    for (int i = max(-hw, -x); i <= min(hw, w - 1 - x); i++) {
        float k = g[i + hw];
        a += k;
        b += k * k * r2;
    }
    *rk = a;
    *rk2 = b;
}

/* The row pass: VW neighbouring pixels per work-item with vector loads; a
 * group whose window leaves the row goes pixel by pixel. The row sums' rows
 * are pitch floats apart: a pitch off a power of two keeps the column pass's
 * 2 hw + 1 loads a row apart out of one cache set. sum_k2v is written
 * only with an RMS map (use_rms). */
kernel void filter_rows(DETECT_PIXEL_ARGS, const int w, const int h, global const float *g, const int hw,
                        const int pitch, global float *sum_d, global float *sum_k2v)
{
    const int x0 = get_global_id(0) * VW, y = get_global_id(1);
    if (x0 >= w || y >= h)
        return;
    const size_t row = (size_t)y * w, out = (size_t)y * pitch;
    if (x0 >= hw && x0 + VW + hw <= w && !use_bkg && !use_rms && isfinite(bkg_value) && isfinite(rms_value) &&
        rms_value > 0.0f) {
        /* usable scalar background and RMS: a non-finite pixel makes the sum
         * non-finite, so only the mask needs a test per tap */
        vecf s = 0.0f;
        vecus masked = (vecus)0;
        for (int i = -hw; i <= hw; i++) {
            s += g[i + hw] * (VEC_LOAD(sci + row + x0 + i) - bkg_value);
            if (has_mask)
                masked |= VEC_LOAD(mask + row + x0 + i);
        }
        veci whole = TO_VECI(isfinite(s)) & TO_VECI((masked & (vecus)ignore) == (vecus)0);
        VSTORE_WHOLE(select((vecf)NAN, s, whole), sum_d + out + x0);
        return;
    }
    if (x0 >= hw && x0 + VW + hw <= w) {
        vecf s = 0.0f, sv = 0.0f, whole = 1.0f;
        for (int i = -hw; i <= hw; i++) {
            vecf u, r2;
            vecf v = detect_pixels_vec(sci, mask, has_mask, ignore, bkg, use_bkg, bkg_value, rms, use_rms,
                                       rms_value, row + x0 + i, &u, &r2);
            float k = g[i + hw];
            s += k * v;
            sv += (k * k) * r2;
            whole = fmin(whole, u);
        }
        VSTORE_WHOLE(select((vecf)NAN, s, TO_VECI(whole > 0.0f)), sum_d + out + x0);
        if (use_rms)
            VSTORE_WHOLE(sv, sum_k2v + out + x0);
        return;
    }
    for (int x = x0; x < min(x0 + VW, w); x++) {
        float s, sk, sv;
        int whole = row_sums(sci, mask, has_mask, ignore, bkg, use_bkg, bkg_value, rms, use_rms, rms_value, w, x, y,
                             g, hw, &s, &sk, &sv);
        sum_d[out + x] = whole ? s : NAN;
        if (use_rms)
            sum_k2v[out + x] = sv;
    }
}

#if VW == 1
#define LANE_IDS 0
#elif VW == 2
#define LANE_IDS (int2)(0, 1)
#elif VW == 4
#define LANE_IDS (int4)(0, 1, 2, 3)
#elif VW == 8
#define LANE_IDS (int8)(0, 1, 2, 3, 4, 5, 6, 7)
#else
#define LANE_IDS (int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
#endif

/* The column pass and the threshold: a pixel is detected when
 * F / sigma_F >= snr_thresh (the host passes thresh / sqrt(sum K^2) of the full
 * kernel, so away from masks and edges this is F >= thresh * rms). labels gets
 * the pixel's linear index + 1 when detected, else 0, and the detected pixels'
 * indices are appended to list (in no particular order), so that labelling
 * touches only them. */

/* VW pixels from o on: F = s / sk, the threshold, the stores and the list. */
inline void emit_group(const vecf s, const vecf sv, const float sk, const float snr_thresh, const size_t o,
                       global float *filtered, global uint *labels, global uint *list, global uint *count)
{
    veci has = (veci)(sk > 0.0f ? -1 : 0);
    vecf f = select((vecf)NAN, s / sk, has);
    veci on = has & TO_VECI(s >= snr_thresh * sqrt(sv));
    VSTORE_WHOLE(f, filtered + o);
    veci lab = select((veci)0, (veci)((int)o + 1) + LANE_IDS, on);
    VSTORE_WHOLE(lab, (global int *)labels + o);
    int non = 0;
    for (int l = 0; l < VW; l++)
        non += (((int *)&lab)[l] != 0);
    if (non) {
        uint at = atomic_add(count, (uint)non);
        for (int l = 0; l < VW; l++)
            if (((int *)&lab)[l] != 0)
                list[at++] = (uint)(o + l);
    }
}

/* The VW pixels from (x0, y): groups at the row's ends or whose window
 * meets a marked row sum go pixel by pixel. */
inline void filter_cols_group(DETECT_PIXEL_ARGS, global const float *sum_d, global const float *sum_k2v, const int w,
                              const int h, global const float *g, const int hw, const int pitch, const float sk_full,
                              const float sv_full, const float snr_thresh, global float *filtered,
                              global uint *labels, global uint *list, global uint *count, const int x0, const int y)
{
    const int j0 = max(-hw, -y), j1 = min(hw, h - 1 - y);
    const size_t o = (size_t)y * w + x0;
    const float r2 = rms_value * rms_value;
    if (x0 >= hw && x0 + VW + hw <= w) {
        /* sum K and sum K^2 rms^2 of a whole, usable window: the host's for a
         * full one, summed here where the image's top or bottom cuts it */
        float sk = sk_full, svs = sv_full;
        if (j0 != -hw || j1 != hw) {
            float rk, rk2;
            whole_row_sums(w, x0, g, hw, r2, &rk, &rk2);
            sk = 0.0f;
            svs = 0.0f;
            for (int j = j0; j <= j1; j++) {
                float k = g[j + hw];
                sk += k * rk;
                svs += (k * k) * rk2;
            }
        }
        vecf s = 0.0f, sv = 0.0f, marked = 0.0f;
        for (int j = j0; j <= j1; j++) {
            size_t p = (size_t)(y + j) * pitch + x0;
            float k = g[j + hw];
            vecf d = VEC_LOAD(sum_d + p);
            s += k * d;
            marked += d - d; /* NaN where a row sum is marked */
            if (use_rms)
                sv += (k * k) * VEC_LOAD(sum_k2v + p);
        }
        if (!any(TO_VECI(isnan(marked)))) {
            emit_group(s, use_rms ? sv : (vecf)svs, sk, snr_thresh, o, filtered, labels, list, count);
            return;
        }
    }
    for (int x = x0; x < min(x0 + VW, w); x++) {
        float s = 0.0f, sk = 0.0f, sv = 0.0f, rk, rk2;
        size_t q = (size_t)y * w + x;
        whole_row_sums(w, x, g, hw, r2, &rk, &rk2);
        for (int j = j0; j <= j1; j++) {
            size_t p = (size_t)(y + j) * pitch + x;
            float rs = sum_d[p], rkj = rk, rv = use_rms ? sum_k2v[p] : rk2;
            if (isnan(rs))
                row_sums(sci, mask, has_mask, ignore, bkg, use_bkg, bkg_value, rms, use_rms, rms_value, w, x, y + j,
                         g, hw, &rs, &rkj, &rv);
            float k = g[j + hw];
            s += k * rs;
            sk += k * rkj;
            sv += k * k * rv;
        }
        bool on = sk > 0.0f && s >= snr_thresh * sqrt(sv);
        filtered[q] = sk > 0.0f ? s / sk : NAN;
        labels[q] = on ? (uint)(q + 1) : 0u;
        if (on)
            list[atomic_inc(count)] = (uint)q;
    }
}

/* Rows of output per work-item: each row sum loaded once serves up to this
 * many outputs, instead of being loaded once per output (2 hw + 1 loads at
 * the row pitch, which on a power-of-two width all fall in one cache set). */
#define COL_ROWS 4

/* The column pass over VW columns and COL_ROWS rows per work-item. Inside the
 * image each output sums its window's row sums in the same order as
 * filter_cols_group (so the same floats); an output whose sum is not finite
 * (its window meets a marked row sum, whose NaN propagates) and groups near
 * the image's edges go through filter_cols_group. */
kernel void filter_cols(DETECT_PIXEL_ARGS, global const float *sum_d, global const float *sum_k2v, const int w,
                        const int h, global const float *g, const int hw, const int pitch, const float sk_full, const float sv_full,
                        const float snr_thresh, global float *filtered, global uint *labels, global uint *list,
                        global uint *count)
{
    const int x0 = get_global_id(0) * VW, yb = get_global_id(1) * COL_ROWS;
    if (x0 >= w || yb >= h)
        return;
    const int ye = min(yb + COL_ROWS, h);
    if (x0 >= hw && x0 + VW + hw <= w && yb >= hw && ye - 1 + hw <= h - 1 && ye - yb == COL_ROWS) {
        vecf s[COL_ROWS], sv[COL_ROWS];
        for (int r = 0; r < COL_ROWS; r++) {
            s[r] = 0.0f;
            sv[r] = 0.0f;
        }
        /* with the rows unrolled the sums stay in registers */
        if (use_rms) {
            for (int yy = yb - hw; yy <= ye - 1 + hw; yy++) {
                size_t p = (size_t)yy * pitch + x0;
                vecf d = VEC_LOAD(sum_d + p), v2 = VEC_LOAD(sum_k2v + p);
#pragma unroll
                for (int r = 0; r < COL_ROWS; r++) {
                    int j = yy - (yb + r);
                    float k = j >= -hw && j <= hw ? g[j + hw] : 0.0f;
                    if (j >= -hw && j <= hw) {
                        s[r] += k * d;
                        sv[r] += (k * k) * v2;
                    }
                }
            }
        } else {
            for (int yy = yb - hw; yy <= ye - 1 + hw; yy++) {
                vecf d = VEC_LOAD(sum_d + (size_t)yy * pitch + x0);
#pragma unroll
                for (int r = 0; r < COL_ROWS; r++) {
                    int j = yy - (yb + r);
                    if (j >= -hw && j <= hw)
                        s[r] += g[j + hw] * d;
                }
            }
        }
        for (int r = 0; r < COL_ROWS; r++) {
            if (all(TO_VECI(isfinite(s[r]))))
                emit_group(s[r], use_rms ? sv[r] : (vecf)sv_full, sk_full, snr_thresh, (size_t)(yb + r) * w + x0,
                           filtered, labels, list, count);
            else
                filter_cols_group(sci, mask, has_mask, ignore, bkg, use_bkg, bkg_value, rms, use_rms, rms_value,
                                  sum_d, sum_k2v, w, h, g, hw, pitch, sk_full, sv_full, snr_thresh, filtered, labels, list,
                                  count, x0, yb + r);
        }
        return;
    }
    for (int y = yb; y < ye; y++)
        filter_cols_group(sci, mask, has_mask, ignore, bkg, use_bkg, bkg_value, rms, use_rms, rms_value, sum_d,
                          sum_k2v, w, h, g, hw, pitch, sk_full, sv_full, snr_thresh, filtered, labels, list, count, x0,
                          y);
}

/* A filter file's kernel K (kw x kh, odd, row by row from the lowest y), with
 * the background subtracted on the fly and the threshold: with renorm
 * (CONV NORM, K of unit sum) F = sum K d / sum K and sigma_F =
 * sqrt(sum K^2 rms^2) / sum K over the usable pixels of the window, as the
 * Gaussian; without (CONV NONORM) F = sum K d and sigma_F = sqrt(sum K^2 rms^2).
 * Detected when F >= snr_thresh sigma_F; labels and list as filter_cols. */
kernel void filter_2d(DETECT_PIXEL_ARGS, const int w, const int h, global const float *kern, const int kw,
                      const int kh, const int renorm, const float snr_thresh, global float *filtered,
                      global uint *labels, global uint *list, global uint *count)
{
    const int x = get_global_id(0), y = get_global_id(1);
    if (x >= w || y >= h)
        return;
    const int rx = kw / 2, ry = kh / 2;
    float s = 0.0f, sk = 0.0f, sv = 0.0f;
    int used = 0;
    for (int j = max(-ry, -y); j <= min(ry, h - 1 - y); j++)
        for (int i = max(-rx, -x); i <= min(rx, w - 1 - x); i++) {
            float r2, v = detect_pixel(sci, mask, has_mask, ignore, bkg, use_bkg, bkg_value, rms, use_rms,
                                       rms_value, (size_t)(y + j) * w + x + i, &r2);
            if (!isfinite(v))
                continue;
            float k = kern[(j + ry) * kw + i + rx];
            s += k * v;
            sk += k;
            sv += k * k * r2;
            used++;
        }
    const size_t q = (size_t)y * w + x;
    bool has = renorm ? sk > 0.0f : used > 0;
    float f = renorm ? s / sk : s;
    bool on = has && s >= snr_thresh * sqrt(sv);
    filtered[q] = has ? f : NAN;
    labels[q] = on ? (uint)(q + 1) : 0u;
    if (on)
        list[atomic_inc(count)] = (uint)q;
}

/* Connected-component labelling of the listed detected pixels by union-find
 * (Playne and Hawick's scheme): labels[i] holds i's parent + 1, a detected
 * pixel starts as its own root (filter_cols writes i + 1) and 0 marks an
 * undetected one. Links only ever point to a smaller index and are set with
 * atomic_min on a root, so every component ends with one root, its smallest
 * pixel: the label "smallest linear index + 1" that label propagation gave,
 * in one pass instead of one per few rows of chain. */
inline uint uf_root(volatile global uint *labels, uint i)
{
    uint p = labels[i] - 1u;
    while (p != i) {
        i = p;
        p = labels[i] - 1u;
    }
    return i;
}

/* Joins the trees of pixels a and b. A failed atomic_min means b's root was
 * linked meanwhile (to old); the loop then joins a with that, so no link is
 * lost. */
inline void uf_unite(volatile global uint *labels, uint a, uint b)
{
    for (;;) {
        a = uf_root(labels, a);
        b = uf_root(labels, b);
        if (a == b)
            return;
        if (a > b) {
            uint t = a;
            a = b;
            b = t;
        }
        uint old = atomic_min(&labels[b], a + 1u) - 1u;
        if (old == b)
            return;
        b = old;
    }
}

/* Each listed pixel joins its detected neighbours that come before it in
 * raster order (left, and the three above): with 8-connectivity that covers
 * every pair once. */
kernel void label_union(volatile global uint *labels, global const uint *list, const uint nlist, const int w,
                        const int h)
{
    uint k = get_global_id(0);
    if (k >= nlist)
        return;
    uint i = list[k];
    int x = (int)(i % (uint)w), y = (int)(i / (uint)w);
    if (x > 0 && labels[i - 1u] != 0u)
        uf_unite(labels, i, i - 1u);
    if (y > 0) {
        uint up = i - (uint)w;
        for (int dx = -1; dx <= 1; dx++)
            if (x + dx >= 0 && x + dx < w && labels[up + (uint)dx] != 0u)
                uf_unite(labels, i, up + (uint)dx);
    }
}

/* For each listed detected pixel after label_union: its label (its tree's
 * root + 1), filtered value and RMS, so the host's grouping and deblending
 * download these instead of whole maps. */
kernel void gather_detected(global const uint *list, const uint nlist, volatile global uint *labels,
                            global const float *filtered, global const float *rms, const int use_rms,
                            const float rms_value, global uint *out_label, global float *out_f,
                            global float *out_rms)
{
    uint k = get_global_id(0);
    if (k >= nlist)
        return;
    uint i = list[k];
    out_label[k] = uf_root(labels, i) + 1u;
    out_f[k] = filtered[i];
    out_rms[k] = use_rms ? rms[i] : rms_value;
}

/* labels[list[k]] = 0: the label map after labelling is zero but at the
 * listed (detected) pixels, so this zeroes it for the segmentation map
 * without writing the whole plane. */
kernel void clear_listed(global const uint *list, const uint nlist, global uint *labels)
{
    uint k = get_global_id(0);
    if (k < nlist)
        labels[list[k]] = 0u;
}

/* seg[pix[k]] = id[k]: the host's objects written into a zeroed segmentation map. */
kernel void scatter_segments(global const uint *pix, global const int *id, const uint npix, global int *seg)
{
    uint k = get_global_id(0);
    if (k < npix)
        seg[pix[k]] = id[k];
}

/* Output layout per source (floats). */
#define M_X 0
#define M_Y 1
#define M_FLUX 2
#define M_ERR2 3
#define M_PEAK 4
#define M_CXX 5
#define M_CYY 6
#define M_CXY 7
#define M_NPIX 8
#define M_FLAGS 9
#define M_NOUT 10

/* SExtractor's windowed centroid (XWIN_IMAGE): a circular Gaussian window
 * of sigma sig out to 4 sig, x += 2 sum(w v dx) / sum(w v) until the step is
 * below 1e-4 px (16 steps at most, as SExtractor). */
#define WIN_NSIG 4.0
#define WIN_MAX_ITER 16

/* VW neighbouring pixels of a row at a time in the moment loops: veca holds
 * VW acc_t values; CMP_A turns a veca comparison into a veci condition. */
#if VW == 1
#define VSUF
#define CMP_A(c) ((c) ? -1 : 0)
#else
#define VSUF VW
#define CMP_A(c) CLRED_CAT(convert_int, VSUF)(c)
#endif
#ifdef CLRED_USE_DOUBLE
typedef CLRED_CAT(double, VSUF) veca;
#define TO_VECA(x) CLRED_CAT(convert_double, VSUF)(x)
#else
typedef vecf veca;
#define TO_VECA(x) CLRED_CAT(convert_float, VSUF)(x)
#endif

inline acc_t sum_lanes(veca v)
{
    acc_t t = 0;
    for (int l = 0; l < VW; l++)
        t += ((acc_t *)&v)[l];
    return t;
}

/* Pixels x .. x + VW - 1 of row y: the background-subtracted values, and in
 * *ok the lanes at or left of x1 that are usable and belong to no other
 * source than label (segmentation 0 or label). Vector loads inside the row;
 * at the image's right edge lane by lane from clamped indices. */
inline vecf window_chunk(DETECT_PIXEL_ARGS, global const int *seg, const int label, const int w, const int y,
                         const int x, const int x1, veci *ok)
{
    const size_t row = (size_t)y * w;
    vecf v, u, r2;
    veci sg;
    if (x + VW <= w) {
        v = detect_pixels_vec(sci, mask, has_mask, ignore, bkg, use_bkg, bkg_value, rms, use_rms, rms_value, row + x,
                              &u, &r2);
        sg = VEC_LOAD(seg + row + x);
    } else {
        float tv[VW], tu[VW];
        int ts[VW];
        for (int l = 0; l < VW; l++) {
            size_t i = row + min(x + l, w - 1);
            float pr2, p = detect_pixel(sci, mask, has_mask, ignore, bkg, use_bkg, bkg_value, rms, use_rms,
                                        rms_value, i, &pr2);
            tu[l] = isfinite(p) ? 1.0f : 0.0f;
            tv[l] = isfinite(p) ? p : 0.0f;
            ts[l] = seg[i];
        }
        v = VEC_LOAD(tv);
        u = VEC_LOAD(tu);
        sg = VEC_LOAD(ts);
    }
    *ok = TO_VECI(u > 0.0f) & (TO_VECI(sg == 0) | TO_VECI(sg == label)) & TO_VECI(x + LANE_IDS <= x1);
    return v;
}

/* One work-item per source: isophotal sums over the pixels whose segmentation
 * value is id + 1 inside its bounding box, then adaptive Gaussian-windowed
 * moments: the window covariance W is set to twice the weighted second moment
 * until it stops changing; for a Gaussian source of covariance C the fixed
 * point is W = C exactly, so the FWHM is not biased by the isophote's
 * truncation. Pixels of other sources are left out of the window. The loops
 * have no barriers. */
kernel void measure_sources(DETECT_PIXEL_ARGS, global const float *var, const int has_var, global const int *seg,
                            global const int4 *bbox, const uint nobj, const int w, const int h,
                            const float saturation, const int max_iter, global float *out)
{
    uint id = get_global_id(0);
    if (id >= nobj)
        return;
    int4 bb = bbox[id]; /* x0, y0, x1, y1 inclusive */
    int label = (int)id + 1;
    uint flags = 0, npix = 0;
    acc_t sw = 0, sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0, flux = 0, err2 = 0;
    float peak = -INFINITY;
    for (int y = bb.y; y <= bb.w; y++)
        for (int x = bb.x; x <= bb.z; x++) {
            size_t i = (size_t)y * w + x;
            if (seg[i] != label)
                continue;
            npix++;
            if ((has_mask && (mask[i] & CLRED_MASK_SATURATED)) || (saturation > 0.0f && sci[i] >= saturation))
                flags |= SRC_SATURATED;
            float r2, v = detect_pixel(sci, mask, has_mask, ignore, bkg, use_bkg, bkg_value, rms, use_rms,
                                       rms_value, i, &r2);
            if (!isfinite(v)) {
                flags |= SRC_MASKED;
                continue;
            }
            flux += v;
            err2 += has_var ? var[i] : r2;
            peak = fmax(peak, v);
            if (v > 0.0f) {
                acc_t dx = x - bb.x, dy = y - bb.y;
                sw += v;
                sx += v * dx;
                sy += v * dy;
                sxx += v * dx * dx;
                syy += v * dy * dy;
                sxy += v * dx * dy;
            }
        }
    if (bb.x == 0 || bb.y == 0 || bb.z == w - 1 || bb.w == h - 1)
        flags |= SRC_EDGE;

    acc_t ix = 0, iy = 0, icxx = 0, icyy = 0, icxy = 0;
    if (sw > 0) {
        ix = sx / sw;
        iy = sy / sw;
        icxx = sxx / sw - ix * ix;
        icyy = syy / sw - iy * iy;
        icxy = sxy / sw - ix * iy;
        ix += bb.x;
        iy += bb.y;
    } else {
        ix = 0.5 * (bb.x + bb.z);
        iy = 0.5 * (bb.y + bb.w);
    }

    /* Start from the isophotal shape, at least a pixel wide. */
    acc_t cx = ix, cy = iy;
    acc_t wxx = fmax(icxx, (acc_t)1.0), wyy = fmax(icyy, (acc_t)1.0), wxy = icxy;
    if (wxy * wxy >= 0.9 * wxx * wyy)
        wxy = 0;
    int converged = 0;
    for (int it = 0; it < max_iter && !converged; it++) {
        acc_t det = wxx * wyy - wxy * wxy;
        if (!(det > 0))
            break;
        acc_t qxx = wyy / det, qyy = wxx / det, qxy = -wxy / det;
        acc_t lmax = 0.5 * (wxx + wyy) + sqrt(0.25 * (wxx - wyy) * (wxx - wyy) + wxy * wxy);
        acc_t reach = 4.0 * sqrt(lmax);
        /* a window this wide is no star (FWHM > 37 px): keep the isophotal shape */
        if (!(reach < 64.0))
            break;
        int x0 = max((int)floor(cx - reach), 0), x1 = min((int)ceil(cx + reach), w - 1);
        int y0 = max((int)floor(cy - reach), 0), y1 = min((int)ceil(cy + reach), h - 1);
        veca vS = 0, vSx = 0, vSy = 0, vSxx = 0, vSyy = 0, vSxy = 0;
        for (int y = y0; y <= y1; y++) {
            acc_t dy = y - cy;
            for (int x = x0; x <= x1; x += VW) {
                veci ok;
                vecf v = window_chunk(sci, mask, has_mask, ignore, bkg, use_bkg, bkg_value, rms, use_rms, rms_value,
                                      seg, label, w, y, x, x1, &ok);
                veca dx = TO_VECA(x + LANE_IDS) - cx;
                veca q = qxx * dx * dx + (acc_t)2 * qxy * dx * dy + qyy * dy * dy;
                ok &= CMP_A(q <= (acc_t)16);
                /* float weight: 1e-7 relative is plenty */
                veca wv = TO_VECA(select((vecf)0.0f, exp(CLRED_CAT(convert_float, VSUF)((acc_t)-0.5 * q)) * v, ok));
                vS += wv;
                vSx += wv * dx;
                vSy += wv * dy;
                vSxx += wv * dx * dx;
                vSyy += wv * dy * dy;
                vSxy += wv * dx * dy;
            }
        }
        acc_t S = sum_lanes(vS), Sx = sum_lanes(vSx), Sy = sum_lanes(vSy), Sxx = sum_lanes(vSxx),
              Syy = sum_lanes(vSyy), Sxy = sum_lanes(vSxy);
        if (!(S > 0))
            break;
        acc_t mx = Sx / S, my = Sy / S;
        acc_t nxx = 2.0 * (Sxx / S - mx * mx), nyy = 2.0 * (Syy / S - my * my), nxy = 2.0 * (Sxy / S - mx * my);
        if (!(nxx > 0 && nyy > 0 && nxx * nyy - nxy * nxy > 0))
            break;
        acc_t change = fabs(nxx - wxx) + fabs(nyy - wyy) + fabs(nxy - wxy);
        cx += mx;
        cy += my;
        wxx = nxx;
        wyy = nyy;
        wxy = nxy;
        if (fabs(cx - ix) > 3.0 + 2.0 * sqrt(lmax) || fabs(cy - iy) > 3.0 + 2.0 * sqrt(lmax))
            break;
        converged = fabs(mx) < 1e-4 && fabs(my) < 1e-4 && change < 1e-4 * (wxx + wyy);
    }
    if (!converged) {
        flags |= SRC_MOMENTS_FAILED;
        cx = ix;
        cy = iy;
        wxx = icxx;
        wyy = icyy;
        wxy = icxy;
    }
    /* The window's sigma is the source's size from the moments: for a
     * Gaussian profile it equals SExtractor's 2 r_half / 2.3548. */
    acc_t sig2 = fmax((acc_t)0.5 * (wxx + wyy), (acc_t)0.25);
    acc_t px = cx, py = cy, inv2 = (acc_t)0.5 / sig2, reach = (acc_t)WIN_NSIG * sqrt(sig2);
    int win_ok = reach < 64.0;
    for (int it = 0; it < WIN_MAX_ITER && win_ok; it++) {
        int x0 = max((int)floor(px - reach), 0), x1 = min((int)ceil(px + reach), w - 1);
        int y0 = max((int)floor(py - reach), 0), y1 = min((int)ceil(py + reach), h - 1);
        veca vS = 0, vSx = 0, vSy = 0;
        for (int y = y0; y <= y1; y++) {
            acc_t dy = y - py;
            for (int x = x0; x <= x1; x += VW) {
                veci ok;
                vecf v = window_chunk(sci, mask, has_mask, ignore, bkg, use_bkg, bkg_value, rms, use_rms, rms_value,
                                      seg, label, w, y, x, x1, &ok);
                veca dx = TO_VECA(x + LANE_IDS) - px, r2w = dx * dx + dy * dy;
                ok &= CMP_A(r2w <= reach * reach);
                veca wv = TO_VECA(
                    select((vecf)0.0f, exp(CLRED_CAT(convert_float, VSUF)(-r2w * inv2)) * v, ok));
                vS += wv;
                vSx += wv * dx;
                vSy += wv * dy;
            }
        }
        acc_t S = sum_lanes(vS), Sx = sum_lanes(vSx), Sy = sum_lanes(vSy);
        if (!(S > 0)) {
            win_ok = 0;
            break;
        }
        acc_t sx = (acc_t)2 * Sx / S, sy = (acc_t)2 * Sy / S;
        px += sx;
        py += sy;
        if (fabs(px - cx) > reach || fabs(py - cy) > reach) {
            win_ok = 0;
            break;
        }
        if (sx * sx + sy * sy < 1e-8)
            break;
    }
    if (win_ok) {
        cx = px;
        cy = py;
    }
    global float *o = out + (size_t)id * M_NOUT;
    o[M_X] = (float)cx;
    o[M_Y] = (float)cy;
    o[M_FLUX] = (float)flux;
    o[M_ERR2] = (float)err2;
    o[M_PEAK] = peak;
    o[M_CXX] = (float)wxx;
    o[M_CYY] = (float)wyy;
    o[M_CXY] = (float)wxy;
    o[M_NPIX] = (float)npix;
    o[M_FLAGS] = (float)flags;
}
