/* Resampling through an affine map: each output pixel is the weighted sum of
 * the input taps around its source position, weights normalised to sum 1 over
 * the usable taps; variance is the sum of squared weights times the input
 * variances; masks flag what was left out. Pixel centres are at integer
 * coordinates. kind: 0 nearest, 1 bilinear, 2 bicubic (Keys a = -0.5),
 * 3 Lanczos-3 (a runtime argument: one program serves every interpolant). */

#include "lib_vec.cl"
#include "lib_store.cl"

#ifdef CLRED_USE_DOUBLE
#define ACC_PI M_PI
#define ACC_ELEM double
#define ACC_MASK_ELEM long
#else
#define ACC_PI M_PI_F
#define ACC_ELEM float
#define ACC_MASK_ELEM int
#endif

/* VW lanes of acc_t (veca) and the selection mask of that width (vecm), for
 * resample_shift; with VW = 1 plain scalars and conditionals. */
#if VW == 1
typedef acc_t veca;
typedef ACC_MASK_ELEM vecm;
#define TO_VECM(c) ((vecm)((c) ? -1 : 0))
#define TO_VECA(x) ((acc_t)(x))
#define TO_VECF(x) ((float)(x))
#define SELECT_A(a, b, m) ((m) ? (b) : (a))
#define SELECT_F(a, b, m) ((m) ? (b) : (a))
#define SELECT_US(a, b, m) ((m) ? (b) : (a))
#else
typedef CLRED_CAT(ACC_ELEM, VW) veca;
typedef CLRED_CAT(ACC_MASK_ELEM, VW) vecm;
#define TO_VECM(c) CLRED_CAT(CLRED_CAT(convert_, ACC_MASK_ELEM), VW)(c)
#define TO_VECA(x) CLRED_CAT(CLRED_CAT(convert_, ACC_ELEM), VW)(x)
#define TO_VECF(x) CLRED_CAT(convert_float, VW)(x)
#define SELECT_A(a, b, m) select((a), (b), (m))
#define SELECT_F(a, b, m) select((a), (b), CLRED_CAT(convert_int, VW)(m))
#define SELECT_US(a, b, m) select((a), (b), CLRED_CAT(convert_short, VW)(m))
#endif

inline acc_t interp_weight(int kind, acc_t t)
{
    acc_t a = fabs(t);
    if (kind == 1)
        return a < 1 ? 1 - a : 0;
    if (kind == 2) {
        const acc_t A = -0.5;
        if (a < 1)
            return ((A + 2) * a - (A + 3)) * a * a + 1;
        if (a < 2)
            return ((A * a - 5 * A) * a + 8 * A) * a - 4 * A;
        return 0;
    }
    if (a >= 3)
        return 0;
    if (a < 1e-12)
        return 1;
    /* sinc(t) sinc(t / 3) = 3 sin(pi t) sin(pi t / 3) / (pi t)^2 */
    acc_t pt = ACC_PI * t;
    return 3 * sin(pt) * sin(pt / 3) / (pt * pt);
}

/* The six Lanczos-3 weights of taps -2..3 at t = f - i (0 <= f < 1) with
 * three sines in place of twelve: sin(pi (f - i)) = (-1)^i sin(pi f), and
 * sin(pi (f - i) / 3) from sin and cos of pi f / 3 by the angle difference. */
inline void lanczos3_weights(const acc_t f, acc_t *w)
{
    const acc_t half_root3 = 0.86602540378443864676;
    const acc_t cos_third[6] = {-0.5, 0.5, 1, 0.5, -0.5, -1}; /* cos(pi i / 3), i = -2..3 */
    const acc_t sin_third[6] = {-half_root3, -half_root3, 0, half_root3, half_root3, 0};
    const acc_t s1 = sin(ACC_PI * f), s3 = sin(ACC_PI * f / 3), c3 = cos(ACC_PI * f / 3);
    for (int k = 0; k < 6; k++) {
        const int i = k - 2;
        const acc_t t = f - i;
        if (fabs(t) < 1e-12) {
            w[k] = 1;
            continue;
        }
        if (fabs(t) >= 3) {
            w[k] = 0;
            continue;
        }
        const acc_t sin_pt = (i & 1) ? -s1 : s1;
        const acc_t sin_pt3 = s3 * cos_third[k] - c3 * sin_third[k];
        const acc_t pt = ACC_PI * t;
        w[k] = 3 * sin_pt * sin_pt3 / (pt * pt);
    }
}

#define RESAMPLE_ARGS                                                                                     \
    global const float *src, global const float *src_var, global const ushort *src_mask, const int has_var, \
        const int has_mask, const ushort ignore, const int w, const int h, global float *dst,                \
        global float *dst_var, global ushort *dst_mask, const int ow, const int oh
#define RESAMPLE_PASS src, src_var, src_mask, has_var, has_mask, ignore, w, h, dst, dst_var, dst_mask, ow, oh

/* Taps lo..hi around floor(u) (kind 0: the nearest pixel) and their weights. */
inline void tap_weights(const int kind, const acc_t u, int *lo, int *hi, acc_t *fu, acc_t *wx)
{
    if (kind == 0) {
        *lo = 0;
        *hi = 0;
        *fu = floor(u + 0.5);
        wx[0] = 1;
        return;
    }
    *lo = kind == 1 ? 0 : kind == 2 ? -1 : -2;
    *hi = kind == 1 ? 1 : kind == 2 ? 2 : 3;
    *fu = floor(u);
    if (kind == 3) {
        lanczos3_weights(u - *fu, wx);
        return;
    }
    for (int i = *lo; i <= *hi; i++)
        wx[i - *lo] = interp_weight(kind, u - (*fu + i));
}

/* Output pixel (x, y) from source position (u, v). */
inline void resample_pixel(RESAMPLE_ARGS, const int x, const int y, const acc_t u, const acc_t v, const int kind,
                           const float flux_scale)
{
    size_t o = (size_t)y * (size_t)ow + (size_t)x;
    if (!(u >= -0.5 && u <= w - 0.5 && v >= -0.5 && v <= h - 0.5)) {
        dst[o] = NAN;
        dst_var[o] = NAN;
        dst_mask[o] = CLRED_MASK_NO_DATA;
        return;
    }
    int lo, hi;
    acc_t fu, fv, wx[6], wy[6];
    tap_weights(kind, u, &lo, &hi, &fu, wx);
    tap_weights(kind, v, &lo, &hi, &fv, wy);
    acc_t sw = 0, s = 0, sv = 0;
    bool touched = false;
    for (int j = lo; j <= hi; j++) {
        int yy = clamp((int)fv + j, 0, h - 1);
        for (int i = lo; i <= hi; i++) {
            acc_t wgt = wx[i - lo] * wy[j - lo];
            if (wgt == 0)
                continue;
            int xx = clamp((int)fu + i, 0, w - 1);
            size_t k = (size_t)yy * (size_t)w + (size_t)xx;
            float val = src[k];
            if (!isfinite(val) || (has_mask && (src_mask[k] & ignore))) {
                touched = true;
                continue;
            }
            sw += wgt;
            s += wgt * val;
            if (has_var)
                sv += wgt * wgt * src_var[k];
        }
    }
    if (fabs(sw) < 1e-3) {
        dst[o] = NAN;
        dst_var[o] = NAN;
        dst_mask[o] = CLRED_MASK_NO_DATA;
        return;
    }
    dst[o] = (float)(s / sw * flux_scale);
    dst_var[o] = has_var ? (float)(sv / (sw * sw) * flux_scale * flux_scale) : 0.0f;
    dst_mask[o] = touched ? CLRED_MASK_INTERPOLATED : 0;
}

kernel void resample_affine(RESAMPLE_ARGS, const float8 inv, const int kind, const float flux_scale)
{
    const int x = get_global_id(0), y = get_global_id(1);
    if (x >= ow || y >= oh)
        return;
    const acc_t u = (acc_t)inv.s0 * x + (acc_t)inv.s1 * y + (acc_t)inv.s2;
    const acc_t v = (acc_t)inv.s3 * x + (acc_t)inv.s4 * y + (acc_t)inv.s5;
    resample_pixel(RESAMPLE_PASS, x, y, u, v, kind, flux_scale);
}

/* A pure translation (u = x + du, v = y + dv): every output pixel has the
 * same fractional offset, so one set of weights serves the whole image, and
 * a work-item takes VW pixels of a row with vector loads wherever all their
 * taps lie inside the image. The arithmetic is resample_pixel's, in the same
 * order, so both give the same bits; groups near the edges go through it. */
kernel void resample_shift(RESAMPLE_ARGS, const float du, const float dv, const int kind, const float flux_scale)
{
    const int x0 = get_global_id(0) * VW, y = get_global_id(1);
    if (x0 >= ow || y >= oh)
        return;
    const acc_t u0 = (acc_t)x0 + (acc_t)du, v = (acc_t)y + (acc_t)dv;
    int lo, hi;
    acc_t fu, fv, wx[6], wy[6];
    tap_weights(kind, u0, &lo, &hi, &fu, wx);
    tap_weights(kind, v, &lo, &hi, &fv, wy);
    const int sx = (int)fu, sy = (int)fv; /* source column of lane 0's first tap is sx + lo */
    const bool inside = x0 + VW <= ow && sx + lo >= 0 && sx + VW - 1 + hi <= w - 1 && sy + lo >= 0 && sy + hi <= h - 1;
    if (!inside) {
        for (int x = x0; x < min(x0 + VW, ow); x++)
            resample_pixel(RESAMPLE_PASS, x, y, (acc_t)x + (acc_t)du, v, kind, flux_scale);
        return;
    }
    veca sw = (veca)0, s = (veca)0, sv = (veca)0;
    vecm touched = (vecm)0;
    for (int j = lo; j <= hi; j++) {
        const size_t row = (size_t)(sy + j) * (size_t)w + (size_t)(sx);
        for (int i = lo; i <= hi; i++) {
            const acc_t wgt = wx[i - lo] * wy[j - lo];
            if (wgt == 0)
                continue;
            const size_t k = row + i;
            const vecf val = VEC_LOAD(src + k);
            vecm usable = TO_VECM(isfinite(val));
            if (has_mask)
                usable &= TO_VECM((VEC_LOAD(src_mask + k) & (vecus)ignore) == (vecus)0);
            touched |= ~usable;
            sw += SELECT_A((veca)0, (veca)wgt, usable);
            s += SELECT_A((veca)0, wgt * TO_VECA(val), usable);
            if (has_var)
                sv += SELECT_A((veca)0, wgt * wgt * TO_VECA(VEC_LOAD(src_var + k)), usable);
        }
    }
    const size_t o = (size_t)y * (size_t)ow + (size_t)x0;
    const vecm empty = TO_VECM(fabs(sw) < 1e-3);
    const vecf out = TO_VECF(s / sw * flux_scale);
    const vecf out_var = has_var ? TO_VECF(sv / (sw * sw) * flux_scale * flux_scale) : (vecf)0.0f;
    VSTORE_WHOLE(SELECT_F(out, (vecf)NAN, empty), dst + o);
    VSTORE_WHOLE(SELECT_F(out_var, (vecf)NAN, empty), dst_var + o);
    const vecus flagged = SELECT_US((vecus)0, (vecus)CLRED_MASK_INTERPOLATED, touched);
    VSTORE_WHOLE(SELECT_US(flagged, (vecus)CLRED_MASK_NO_DATA, empty), dst_mask + o);
}

/* The Fourier-shifted pixels (padded rows of pitch floats, offset by add) into
 * dst where the affine pass found data; NO_DATA pixels stay NaN. */
kernel void fourier_merge(global const float *shifted, const int pitch, const float add, global float *dst,
                          global const ushort *dst_mask, const int ow, const int oh)
{
    int x = get_global_id(0), y = get_global_id(1);
    if (x >= ow || y >= oh)
        return;
    size_t o = (size_t)y * (size_t)ow + (size_t)x;
    if (!(dst_mask[o] & CLRED_MASK_NO_DATA))
        dst[o] = shifted[(size_t)y * (size_t)pitch + (size_t)x] + add;
}
