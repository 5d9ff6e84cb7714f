/* Around the FFTs: padding with apodisation into the in-place R2C layout,
 * the cross-power spectrum, the Fourier-shift phase ramp and unpadding.
 * Layout (host/fft.h): rows of pitch = 2 * (nx / 2 + 1) floats. */

/* Window weight at sample i of n: 0 = none, 1 = Hann, 2 = Tukey(alpha). */
inline float window_weight(int kind, int i, int n, float alpha)
{
    if (kind == 0 || n < 2)
        return 1.0f;
    float t = ((float)i + 0.5f) / (float)n; /* symmetric about the centre, never exactly 0 at the ends */
    if (kind == 1)
        return 0.5f - 0.5f * cospi(2.0f * t);
    float edge = 0.5f * alpha;
    if (edge <= 0.0f)
        return 1.0f;
    if (t < edge)
        return 0.5f - 0.5f * cospi(t / edge);
    if (t > 1.0f - edge)
        return 0.5f - 0.5f * cospi((1.0f - t) / edge);
    return 1.0f;
}

/* out[i] = window_weight(kind, i, n, alpha): a frame's window along one
 * axis, computed once per axis instead of twice per pixel. */
kernel void window_table(global float *out, const int n, const int kind, const float alpha)
{
    int i = get_global_id(0);
    if (i < n)
        out[i] = window_weight(kind, i, n, alpha);
}

/* dst (one nx x ny slot at dst_offset floats) = (src region - fill) * window,
 * zero beyond the region; the window is wx[x] * wy[y] (tables of w and h
 * from window_table) when use_window, else 1. Unusable pixels (NaN, masked
 * when has_mask) take the fill value, so they contribute nothing after the
 * subtraction. One work-item per 8 neighbouring columns of a row: explicit
 * 8-wide loads and stores where all 8 hold data (CPU compilers do not
 * vectorise this kernel's branches across work-items), the same arithmetic
 * per pixel elsewhere. */
inline float pad_value(global const float *src, global const ushort *mask, const int has_mask, const ushort ignore,
                       const int src_width, const int x0, const int y0, const int w, const int h, const int nx,
                       const float fill, global const float *wx, global const float *wy, const int use_window, int x,
                       int y)
{
    float v = 0.0f;
    if (x < w && y < h && x < nx) {
        size_t i = (size_t)(y0 + y) * (size_t)src_width + (size_t)(x0 + x);
        float s = src[i];
        bool ok = isfinite(s) && !(has_mask && (mask[i] & ignore));
        v = ok ? (s - fill) : 0.0f;
        if (use_window)
            v *= wx[x] * wy[y];
    }
    return v;
}

kernel void pad_apodise(global const float *src, global const ushort *mask, const int has_mask, const ushort ignore,
                        const int src_width, const int x0, const int y0, const int w, const int h,
                        global float *dst, const uint dst_offset, const int pitch, const int nx, const int ny,
                        const float fill, global const float *wx, global const float *wy, const int use_window)
{
    int x = 8 * get_global_id(0), y = get_global_id(1);
    if (x >= pitch || y >= ny)
        return;
    global float *out = dst + dst_offset + (size_t)y * (size_t)pitch + (size_t)x;
    if (y < h && x + 8 <= min(w, nx)) {
        size_t i = (size_t)(y0 + y) * (size_t)src_width + (size_t)(x0 + x);
        float8 s = vload8(0, src + i);
        int8 ok = isfinite(s);
        if (has_mask)
            ok &= (convert_int8(vload8(0, mask + i)) & (int8)((int)ignore)) == (int8)(0);
        float8 v = select((float8)(0.0f), s - fill, ok);
        if (use_window)
            v *= vload8(0, wx + x) * wy[y];
        vstore8(v, 0, out);
        return;
    }
    int n = min(8, pitch - x);
    for (int l = 0; l < n; l++)
        out[l] = pad_value(src, mask, has_mask, ignore, src_width, x0, y0, w, h, nx, fill, wx, wy, use_window, x + l, y);
}

/* spec[i] = spec[i] * conj(ref[i mod n_ref]), divided by its modulus for
 * phase correlation, and the same into keep[i] when has_keep (the inverse
 * FFT overwrites spec; the sub-pixel refinement reads keep): one pass
 * instead of a further copy. Bins where either spectrum vanishes become 0. */
kernel void cross_power(global float2 *spec, global const float2 *ref, const uint n_ref, const uint n_total,
                        const int phase_only, global float2 *keep, const int has_keep)
{
    uint i = get_global_id(0);
    if (i >= n_total)
        return;
    float2 a = spec[i], b = ref[i % n_ref];
    float2 c = (float2)(a.x * b.x + a.y * b.y, a.y * b.x - a.x * b.y);
    if (phase_only) {
        float m = hypot(c.x, c.y);
        c = m > 1e-30f ? c / m : (float2)(0.0f, 0.0f);
    }
    spec[i] = c;
    if (has_keep)
        keep[i] = c;
}

/* The shift factor along one axis for bin k of n: e^{-2 pi i k d / n} with
 * signed k. The Nyquist bin of an even n stands for +n/2 and -n/2 at once:
 * its factor is their mean, cos(pi d), which keeps the spectrum Hermitian.
 * The phase is reduced in acc_t: k d / n needs more than float's 24 bits
 * for large frames. */
inline float2 axis_factor(int k, int n, float d)
{
    if (n % 2 == 0 && k == n / 2)
        return (float2)(cospi(d), 0.0f);
    int f = k <= n / 2 ? k : k - n;
    acc_t turns = (acc_t)f * (acc_t)d / (acc_t)n;
    turns -= floor(turns);
    float ph = 2.0f * (float)turns;
    return (float2)(cospi(ph), -sinpi(ph));
}

/* Multiplies the half spectrum (ny rows of nx / 2 + 1 bins) by the shift
 * factors: the inverse is the image shifted by (dx, dy). */
kernel void phase_ramp(global float2 *spec, const int nx, const int ny, const float dx, const float dy)
{
    int kx = get_global_id(0), row = get_global_id(1);
    int ncx = nx / 2 + 1;
    if (kx >= ncx || row >= ny)
        return;
    float2 a = axis_factor(kx, nx, dx), b = axis_factor(row, ny, dy);
    float2 m = (float2)(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
    size_t i = (size_t)row * (size_t)ncx + (size_t)kx;
    float2 v = spec[i];
    spec[i] = (float2)(v.x * m.x - v.y * m.y, v.x * m.y + v.y * m.x);
}

/* dst (w x h) = src[y * pitch + x] + add. */
kernel void unpad(global const float *src, const int pitch, global float *dst, const int w, const int h,
                  const float add)
{
    int x = get_global_id(0), y = get_global_id(1);
    if (x >= w || y >= h)
        return;
    dst[(size_t)y * (size_t)w + (size_t)x] = src[(size_t)y * (size_t)pitch + (size_t)x] + add;
}

#ifdef CLRED_USE_DOUBLE
typedef double8 acc8_t;
#define convert_acc8 convert_double8
#else
typedef float8 acc8_t;
#define convert_acc8 convert_float8
#endif

/* Bins kx0 .. kx0 + 7 of one spectrum row as (re, im) pairs; zeros past
 * nvalid (the row's last work-item). */
inline float16 load_bins8(global const float2 *row, int kx0, int nvalid)
{
    if (nvalid >= 8)
        return vload16(0, (global const float *)(row + kx0));
    float16 r = (float16)(0.0f);
    float *rp = (float *)&r;
    for (int i = 0; i < nvalid; i++) {
        float2 v = row[kx0 + i];
        rp[2 * i] = v.x;
        rp[2 * i + 1] = v.y;
    }
    return r;
}

/* First stage of the upsampled DFT around a correlation peak (host/phasecorr.c):
 * cols[j][kx] = sum over ky of spec[ky][kx] * twiddle[ky][j]. One work-item
 * per 8 neighbouring columns kx and 4 rows j (nrows is a multiple of 4), in
 * explicit 8-wide vectors: a work-item that loops over ky is not vectorised
 * across work-items by CPU compilers, and each twiddle read then serves 8
 * bins, each bin read 4 rows. Blocks of 32 ky are summed in float (fast
 * everywhere), the blocks in acc_t: the peak's curvature at 0.01 px is a few
 * 1e-6 of its height, below float's rounding over 2048 terms but well above
 * it over 32. */
#define UPS_MAC(n)                                   \
    do {                                             \
        float2 t = tw[n];                            \
        br##n += rr * t.x - ri * t.y;                \
        bi##n += rr * t.y + ri * t.x;                \
    } while (0)
#define UPS_ADD(n) ar##n += convert_acc8(br##n), ai##n += convert_acc8(bi##n)
#define UPS_STORE(n)                                                              \
    do {                                                                          \
        global acc_t *o = cols + 2 * ((size_t)(j0 + n) * (size_t)ncx + (size_t)kx0); \
        acc_t *pr = (acc_t *)&ar##n, *pi = (acc_t *)&ai##n;                       \
        for (int i = 0; i < nvalid; i++) {                                        \
            o[2 * i] = pr[i];                                                     \
            o[2 * i + 1] = pi[i];                                                 \
        }                                                                         \
    } while (0)
kernel void upsample_columns(global const float2 *spec, const int ncx, const int ny, global const float2 *twiddle,
                             const int nrows, global acc_t *cols)
{
    int kx0 = 8 * get_global_id(0), j0 = 4 * get_global_id(1);
    if (kx0 >= ncx || j0 >= nrows)
        return;
    int nvalid = min(8, ncx - kx0);
    acc8_t ar0 = 0, ai0 = 0, ar1 = 0, ai1 = 0, ar2 = 0, ai2 = 0, ar3 = 0, ai3 = 0;
    for (int k0 = 0; k0 < ny; k0 += 32) {
        float8 br0 = 0.0f, bi0 = 0.0f, br1 = 0.0f, bi1 = 0.0f, br2 = 0.0f, bi2 = 0.0f, br3 = 0.0f, bi3 = 0.0f;
        int k1 = min(k0 + 32, ny);
        for (int ky = k0; ky < k1; ky++) {
            float16 r = load_bins8(spec + (size_t)ky * (size_t)ncx, kx0, nvalid);
            float8 rr = r.even, ri = r.odd;
            global const float2 *tw = twiddle + (size_t)ky * (size_t)nrows + (size_t)j0;
            UPS_MAC(0);
            UPS_MAC(1);
            UPS_MAC(2);
            UPS_MAC(3);
        }
        UPS_ADD(0);
        UPS_ADD(1);
        UPS_ADD(2);
        UPS_ADD(3);
    }
    UPS_STORE(0);
    UPS_STORE(1);
    UPS_STORE(2);
    UPS_STORE(3);
}

/* The correlation surface's peak and its sidelobes, reduced on the device in
 * one read of the surface so only a few numbers come back. The surface is
 * nx x ny in rows of pitch floats; pixel i = y * nx + x. */
#define CORR_NONE 0xffffffffu

/* The highest value of row[xa, xb) and its first x, folded into (*best, *bx). */
inline void row_max(global const float *row, int xa, int xb, float *best, int *bx)
{
    int x = xa;
    float8 bv = (float8)(-INFINITY);
    int8 bi = (int8)(-1);
    int8 lane = (int8)(0, 1, 2, 3, 4, 5, 6, 7);
    for (; x + 8 <= xb; x += 8) {
        float8 v = vload8(0, row + x);
        int8 gt = isgreater(v, bv);
        bv = select(bv, v, gt);
        bi = select(bi, lane + x, gt);
    }
    float *bvp = (float *)&bv;
    int *bip = (int *)&bi;
    for (int l = 0; l < 8; l++)
        if (bip[l] >= 0 && (bvp[l] > *best || (bvp[l] == *best && bip[l] < *bx))) {
            *best = bvp[l];
            *bx = bip[l];
        }
    for (; x < xb; x++) {
        float v = row[x];
        if (v > *best) {
            *best = v;
            *bx = x;
        }
    }
}

/* One work-item per row y: the row's highest value within lim px of zero
 * shift (lim < 0: no limit; index x stands for the shift x, or x - nx past
 * nx / 2), the first of equal values kept, NaN never winning (x = -1 when
 * none), and the sum and sum of squares of the whole row in acc_t, for the
 * peak-to-sidelobe ratio. */
kernel void corr_scan_rows(global const float *surf, const int pitch, const int nx, const int ny, const int lim,
                           global float *row_val, global int *row_x, global acc_t *row_sums)
{
    int y = get_global_id(0);
    if (y >= ny)
        return;
    global const float *row = surf + (size_t)y * (size_t)pitch;
    float best = -INFINITY;
    int bx = -1;
    int sy = y <= ny / 2 ? y : y - ny;
    if (lim < 0) {
        row_max(row, 0, nx, &best, &bx);
    } else if (abs(sy) <= lim) {
        /* x in [0, min(lim, nx / 2)] and [max(nx - lim, nx / 2 + 1), nx) */
        row_max(row, 0, min(lim, nx / 2) + 1, &best, &bx);
        row_max(row, max(nx - lim, nx / 2 + 1), nx, &best, &bx);
    }
    acc8_t s = 0, s2 = 0;
    int x = 0;
    for (; x + 8 <= nx; x += 8) {
        acc8_t v = convert_acc8(vload8(0, row + x));
        s += v;
        s2 += v * v;
    }
    acc_t *sp = (acc_t *)&s, *s2p = (acc_t *)&s2;
    acc_t a = 0, b = 0;
    for (int l = 0; l < 8; l++)
        a += sp[l], b += s2p[l];
    for (; x < nx; x++) {
        acc_t v = (acc_t)row[x];
        a += v;
        b += v * v;
    }
    row_val[y] = best;
    row_x[y] = bx;
    row_sums[2 * y] = a;
    row_sums[2 * y + 1] = b;
}

/* One work-item: the rows' best, ties to the lowest pixel index, so the
 * result is the first highest pixel in raster order (a sequential scan's),
 * and the sums of the surface outside the 11 x 11 px (cyclic) box around it:
 * the rows' sums less the box's values. out: uint [0] = the peak value's
 * bits, [1] = its index (CORR_NONE: none), then at byte 8 two acc_t, then at
 * byte 24 the 3 x 3 (cyclic) values around the peak, row by row, from which
 * the host estimates the sub-pixel peak. */
kernel void corr_peak_final(global const float *surf, const int pitch, const int nx, const int ny,
                            global const float *row_val, global const int *row_x, global const acc_t *row_sums,
                            global uint *out)
{
    if (get_global_id(0) != 0)
        return;
    float best = -INFINITY;
    uint bi = CORR_NONE;
    acc_t s = 0, s2 = 0;
    for (int y = 0; y < ny; y++) {
        float v = row_val[y];
        s += row_sums[2 * y];
        s2 += row_sums[2 * y + 1];
        if (row_x[y] >= 0 && v > best) {
            best = v;
            bi = (uint)y * (uint)nx + (uint)row_x[y];
        }
    }
    if (bi != CORR_NONE) {
        int bx = (int)(bi % (uint)nx), by = (int)(bi / (uint)nx);
        /* The box holds min(n, 11) distinct values per axis. */
        int hx = nx <= 11 ? nx : 11, hy = ny <= 11 ? ny : 11;
        int ox = nx <= 11 ? 0 : bx - 5, oy = ny <= 11 ? 0 : by - 5;
        for (int j = 0; j < hy; j++) {
            int y = (oy + j + ny) % ny;
            for (int i = 0; i < hx; i++) {
                int x = (ox + i + nx) % nx;
                acc_t v = (acc_t)surf[(size_t)y * (size_t)pitch + (size_t)x];
                s -= v;
                s2 -= v * v;
            }
        }
    }
    if (bi != CORR_NONE) {
        int bx = (int)(bi % (uint)nx), by = (int)(bi / (uint)nx);
        global float *nb = (global float *)(out + 6);
        for (int j = 0; j < 3; j++)
            for (int i = 0; i < 3; i++)
                nb[3 * j + i] = surf[(size_t)((by + j - 1 + ny) % ny) * (size_t)pitch + (size_t)((bx + i - 1 + nx) % nx)];
    }
    out[0] = as_uint(best);
    out[1] = bi;
    global acc_t *sums = (global acc_t *)(out + 2);
    sums[0] = s;
    sums[1] = s2;
}
