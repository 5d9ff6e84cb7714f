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

/* dst (one nx x ny slot at dst_offset floats) = (src region - fill) * window,
 * zero beyond the region. Unusable pixels (NaN, masked when has_mask) take
 * the fill value, so they contribute nothing after the subtraction. */
kernel void pad_apodise(global const float *src, global const ushort *mask, const int has_mask, const ushort ignore,
                        const int src_width, const int x0, const int y0, const int w, const int h,
                        global float *dst, const uint dst_offset, const int pitch, const int nx, const int ny,
                        const float fill, const int window, const float alpha)
{
    int x = get_global_id(0), y = get_global_id(1);
    if (x >= pitch || y >= ny)
        return;
    float v = 0.0f;
    if (x < w && y < h && x < nx) {
        size_t i = (size_t)(y0 + y) * (size_t)src_width + (size_t)(x0 + x);
        float s = src[i];
        bool ok = isfinite(s) && !(has_mask && (mask[i] & ignore));
        v = ok ? (s - fill) : 0.0f;
        v *= window_weight(window, x, w, alpha) * window_weight(window, y, h, alpha);
    }
    dst[dst_offset + (size_t)y * (size_t)pitch + (size_t)x] = v;
}

/* spec[i] = spec[i] * conj(ref[i mod n_ref]), divided by its modulus for
 * phase correlation. Bins where either spectrum vanishes become 0. */
kernel void cross_power(global float2 *spec, global const float2 *ref, const uint n_ref, const uint n_total,
                        const int phase_only)
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

/* First stage of the upsampled DFT around a correlation peak (host/phasecorr.c):
 * cols[j][kx] = sum over ky of spec[ky][kx] * twiddle[ky][j]. One work-item
 * per column kx and 4 rows j (nrows is a multiple of 4): neighbouring
 * work-items read neighbouring bins and share the twiddles, and each bin read
 * serves 4 rows. Blocks of 32 ky are summed in float (fast everywhere), the
 * blocks in acc_t: the peak's curvature at 0.01 px is a few 1e-6 of its
 * height, below float's rounding over 2048 terms but well above it over 32. */
#define UPS_MAC(n) \
    b##n += (float2)(r.x * t[n].x - r.y * t[n].y, r.x * t[n].y + r.y * t[n].x)
kernel void upsample_columns(global const float2 *spec, const int ncx, const int ny, global const float2 *twiddle,
                             const int nrows, global acc_t *cols)
{
    int kx = get_global_id(0), j0 = 4 * get_global_id(1);
    if (kx >= ncx || j0 >= nrows)
        return;
    acc_t re0 = 0, im0 = 0, re1 = 0, im1 = 0, re2 = 0, im2 = 0, re3 = 0, im3 = 0;
    for (int k0 = 0; k0 < ny; k0 += 32) {
        float2 b0 = (float2)(0.0f), b1 = (float2)(0.0f), b2 = (float2)(0.0f), b3 = (float2)(0.0f);
        int k1 = min(k0 + 32, ny);
        for (int ky = k0; ky < k1; ky++) {
            float2 r = spec[(size_t)ky * (size_t)ncx + (size_t)kx];
            global const float2 *t = twiddle + (size_t)ky * (size_t)nrows + (size_t)j0;
            UPS_MAC(0);
            UPS_MAC(1);
            UPS_MAC(2);
            UPS_MAC(3);
        }
        re0 += b0.x, im0 += b0.y, re1 += b1.x, im1 += b1.y;
        re2 += b2.x, im2 += b2.y, re3 += b3.x, im3 += b3.y;
    }
    global acc_t *o = cols + 2 * ((size_t)j0 * (size_t)ncx + (size_t)kx);
    size_t row = 2 * (size_t)ncx;
    o[0] = re0, o[1] = im0;
    o[row] = re1, o[row + 1] = im1;
    o[2 * row] = re2, o[2 * row + 1] = im2;
    o[3 * row] = re3, o[3 * row + 1] = im3;
}

/* The correlation surface's peak and its sidelobes, reduced on the device so
 * only a few numbers come back. The surface is nx x ny in rows of pitch
 * floats; pixel i = y * nx + x. Each of nlanes work-items scans pixels lane,
 * lane + nlanes, ... in increasing order; adjacent lanes read adjacent pixels. */
#define CORR_NONE 0xffffffffu

/* Per lane: the highest value within lim px of zero shift (lim < 0: no limit;
 * index x stands for the shift x, or x - nx past nx / 2), the first of equal
 * values kept. NaN never wins; no candidate leaves CORR_NONE. */
kernel void corr_peak_lanes(global const float *surf, const int pitch, const int nx, const int ny, const int lim,
                            const uint nlanes, global float *lane_val, global uint *lane_idx)
{
    uint lane = get_global_id(0);
    if (lane >= nlanes)
        return;
    uint n = (uint)nx * (uint)ny, bi = CORR_NONE;
    float best = -INFINITY;
    for (uint i = lane; i < n; i += nlanes) {
        int y = (int)(i / (uint)nx), x = (int)(i % (uint)nx);
        if (lim >= 0) {
            int sy = y <= ny / 2 ? y : y - ny, sx = x <= nx / 2 ? x : x - nx;
            if (abs(sy) > lim || abs(sx) > lim)
                continue;
        }
        float v = surf[(size_t)y * (size_t)pitch + (size_t)x];
        if (v > best) {
            best = v;
            bi = i;
        }
    }
    lane_val[lane] = best;
    lane_idx[lane] = bi;
}

/* One work-item: the lanes' best, ties to the lowest pixel index, so the
 * result is the first highest pixel in raster order (a sequential scan's).
 * peak[0] = its value's bits, peak[1] = its index (CORR_NONE: none). */
kernel void corr_peak_final(global const float *lane_val, global const uint *lane_idx, const uint nlanes,
                            global uint *peak)
{
    if (get_global_id(0) != 0)
        return;
    float best = -INFINITY;
    uint bi = CORR_NONE;
    for (uint l = 0; l < nlanes; l++) {
        uint i = lane_idx[l];
        float v = lane_val[l];
        if (i != CORR_NONE && (v > best || (v == best && i < bi))) {
            best = v;
            bi = i;
        }
    }
    peak[0] = as_uint(best);
    peak[1] = bi;
}

/* Per lane: sum and sum of squares (acc_t) of the surface outside the
 * 11 x 11 px (cyclic) box around the peak found by corr_peak_final. */
kernel void corr_sidelobe_lanes(global const float *surf, const int pitch, const int nx, const int ny,
                                global const uint *peak, const uint nlanes, global acc_t *lane_sums)
{
    uint lane = get_global_id(0);
    if (lane >= nlanes)
        return;
    uint p = peak[1], n = (uint)nx * (uint)ny;
    acc_t s = 0, s2 = 0;
    if (p != CORR_NONE) {
        int bx = (int)(p % (uint)nx), by = (int)(p / (uint)nx);
        for (uint i = lane; i < n; i += nlanes) {
            int y = (int)(i / (uint)nx), x = (int)(i % (uint)nx);
            int dy = abs(y - by), dx = abs(x - bx);
            dy = dy > ny / 2 ? ny - dy : dy;
            dx = dx > nx / 2 ? nx - dx : dx;
            if (dx <= 5 && dy <= 5)
                continue;
            acc_t v = (acc_t)surf[(size_t)y * (size_t)pitch + (size_t)x];
            s += v;
            s2 += v * v;
        }
    }
    lane_sums[2 * lane] = s;
    lane_sums[2 * lane + 1] = s2;
}
