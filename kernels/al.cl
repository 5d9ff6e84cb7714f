/* Alard-Lupton PSF-matched subtraction (host/steps/alard_lupton.c, al_fit.c).
 *
 * Images: T is the image convolved (the sharper one), I the one it is matched
 * to. Both come with a level taken off, a valid range [lo, hi] of raw values
 * (HOTPANTS -tl/-tu/-il/-iu) and optional VAR and MASK planes (flags bit 0:
 * VAR present, bit 1: MASK present; an absent VAR counts as var0).
 *
 * The kernel's basis functions are separable, G_k(u) u^i G_k(v) v^j, so a
 * stamp's basis convolutions are a row pass (the 1-D filters G_k(u) u^i,
 * index f) and a column pass (G_k(v) v^j). Kernels are stored row-major,
 * K[(v + hw) * ksize + u + hw], and (K * T)(x, y) = sum K(u, v) T(x - u, y - v). */

inline bool al_ok(float v, ushort m, ushort ignore, float lo, float hi)
{
    return clred_usable(v, m, ignore) && v >= lo && v <= hi;
}

/* Row pass (work-items: xx, and yy + fh (s nfilt + f)): rows[s][f][yy][xx] = sum_u filt[f][u + hw] T(x0 + xx - u, y0 + yy) with the
 * stamp's box x0 = cx - r, y0 = cy - r - hw, xx < 2r + 1, yy < 2r + 2hw + 1.
 * Unusable pixels count as 0 (stamps that hold any are dropped by the host). */
kernel void al_stamp_rows(global const float *t_sci, global const ushort *t_mask, const int t_flags,
                          const float t_level, const float t_lo, const float t_hi, const ushort ignore,
                          const int width, const int height, global const int2 *centre, const int nstamps,
                          global const float *filt, const int nfilt, const int hw, const int r,
                          global float *rows)
{
    int fw = 2 * r + 1, fh = 2 * r + 2 * hw + 1, ksize = 2 * hw + 1;
    int xx = get_global_id(0), g1 = get_global_id(1), yy = g1 % fh, sf = g1 / fh;
    if (xx >= fw || sf >= nstamps * nfilt)
        return;
    int s = sf / nfilt, f = sf % nfilt;
    int2 c = centre[s];
    int y = c.y - r - hw + yy, x = c.x - r + xx;
    float acc = 0.0f;
    if (y >= 0 && y < height) {
        for (int u = -hw; u <= hw; u++) {
            int xs = x - u;
            if (xs < 0 || xs >= width)
                continue;
            size_t i = (size_t)y * (size_t)width + (size_t)xs;
            float v = t_sci[i];
            ushort m = (t_flags & 2) ? t_mask[i] : 0;
            if (al_ok(v, m, ignore, t_lo, t_hi))
                acc += filt[f * ksize + u + hw] * (v - t_level);
        }
    }
    rows[(((size_t)s * nfilt + f) * fh + yy) * fw + xx] = acc;
}

/* Column pass (work-items: p, and b + nbasis s): conv[s][b][p] (p = yy * fw + xx over the fitted box) for basis
 * b = filters (fx[b], fy[b]): sum_v filt[fy][v + hw] rows[s][fx][yy + hw - v][xx],
 * less bsum[b] times basis 0's, so that every basis but the first sums to 0. */
inline float al_col(global const float *rows, global const float *filt, int s, int nfilt, int fx, int fy, int xx,
                    int yy, int hw, int fw, int fh)
{
    int ksize = 2 * hw + 1;
    global const float *rp = rows + ((size_t)s * nfilt + fx) * fh * fw;
    float acc = 0.0f;
    for (int v = -hw; v <= hw; v++)
        acc += filt[fy * ksize + v + hw] * rp[(yy + hw - v) * fw + xx];
    return acc;
}

kernel void al_stamp_cols(global const float *rows, global const float *filt, const int nfilt,
                          global const int2 *basis_f, global const float *bsum, const int nbasis, const int nstamps,
                          const int hw, const int r, global float *conv)
{
    int p = get_global_id(0), g1 = get_global_id(1), b = g1 % nbasis, s = g1 / nbasis;
    int fw = 2 * r + 1, fh = 2 * r + 2 * hw + 1, npix = fw * fw;
    if (p >= npix || s >= nstamps)
        return;
    int xx = p % fw, yy = p / fw;
    int2 f = basis_f[b];
    float v = al_col(rows, filt, s, nfilt, f.x, f.y, xx, yy, hw, fw, fh);
    if (b > 0 && bsum[b] != 0.0f) {
        int2 f0 = basis_f[0];
        v -= bsum[b] * al_col(rows, filt, s, nfilt, f0.x, f0.y, xx, yy, hw, fw, fh);
    }
    conv[((size_t)s * nbasis + b) * npix + p] = v;
}

/* The stamps' normal equations: for vectors a <= b among the nbasis basis
 * convolutions, the constant 1 (background) and I, with weights
 * 1 / (var_I + var_T) over the fitted box:
 *   dots[s][pair] = sum_p w_p a(p) b(p)     (pairs in row-major upper-triangle order).
 * One work-item per (pair, stamp). */
kernel void al_stamp_dots(global const float *conv, const int nbasis, const int nstamps, global const int2 *centre,
                          const int r, global const float *i_sci, global const float *i_var, const int i_flags,
                          const float i_var0, const float i_level, global const float *t_var, const int t_flags,
                          const float t_var0, const int width, global const int2 *pairs, const int npairs,
                          global acc_t *dots)
{
    int q = get_global_id(0), s = get_global_id(1);
    if (q >= npairs || s >= nstamps)
        return;
    int fw = 2 * r + 1, npix = fw * fw, nv = nbasis + 2;
    int2 ab = pairs[q];
    int2 c = centre[s];
    global const float *base = conv + (size_t)s * nbasis * npix;
    acc_t acc = 0;
    for (int p = 0; p < npix; p++) {
        int x = c.x - r + p % fw, y = c.y - r + p / fw;
        size_t i = (size_t)y * (size_t)width + (size_t)x;
        float vi = (i_flags & 1) ? i_var[i] : i_var0, vt = (t_flags & 1) ? t_var[i] : t_var0;
        float var = vi + vt;
        float w = (isfinite(var) && var > 0.0f) ? 1.0f / var : 0.0f;
        float a, bv;
        a = ab.x < nbasis ? base[(size_t)ab.x * npix + p] : (ab.x == nv - 2 ? 1.0f : i_sci[i] - i_level);
        bv = ab.y < nbasis ? base[(size_t)ab.y * npix + p] : (ab.y == nv - 2 ? 1.0f : i_sci[i] - i_level);
        acc += (acc_t)(w * a * bv);
    }
    dots[(size_t)s * npairs + q] = acc;
}

/* Counts the unusable pixels of each stamp: I over the fitted box, T over
 * the box grown by the kernel (what the basis convolutions read). */
kernel void al_stamp_check(global const float *i_sci, global const ushort *i_mask, const int i_flags,
                           const float i_lo, const float i_hi, global const float *t_sci, global const ushort *t_mask,
                           const int t_flags, const float t_lo, const float t_hi, const ushort ignore,
                           const int width, const int height, global const int2 *centre, const int nstamps,
                           const int hw, const int r, global int *nbad)
{
    int s = get_global_id(0);
    if (s >= nstamps)
        return;
    int2 c = centre[s];
    int bad = 0, R = r + hw;
    for (int y = c.y - R; y <= c.y + R; y++)
        for (int x = c.x - R; x <= c.x + R; x++) {
            if (x < 0 || y < 0 || x >= width || y >= height) {
                bad++;
                continue;
            }
            size_t i = (size_t)y * (size_t)width + (size_t)x;
            if (!al_ok(t_sci[i], (t_flags & 2) ? t_mask[i] : 0, ignore, t_lo, t_hi))
                bad++;
            if (abs(x - c.x) <= r && abs(y - c.y) <= r &&
                !al_ok(i_sci[i], (i_flags & 2) ? i_mask[i] : 0, ignore, i_lo, i_hi))
                bad++;
        }
    nbad[s] = bad;
}

/* The spatially varying convolution and the difference, per pixel, with the
 * kernel of the pixel's block:
 *   C = sum K T + B(x, y)           (T less its level; B: the background polynomial, bg[6] over
 *                                    xs = 2 x / (w - 1) - 1, ys likewise: 1, xs, ys, xs^2, xs ys, ys^2)
 *   D = sign (I - C) / norm, VAR = (var_I + sum K^2 var_T) / norm^2,
 *   conv = C + I's level.
 * A pixel whose kernel footprint leaves the image is EDGE | NO_DATA; one whose
 * footprint meets an unusable T pixel, or an unusable I pixel, is NO_DATA
 * (with those pixels' bits); D, VAR and score are NaN there. */
kernel void al_convolve(global const float *t_sci, global const float *t_var, global const ushort *t_mask,
                        const int t_flags, const float t_level, const float t_var0, const float t_lo,
                        const float t_hi, global const float *i_sci, global const float *i_var,
                        global const ushort *i_mask, const int i_flags, const float i_level, const float i_var0,
                        const float i_lo, const float i_hi, const ushort ignore, const int width, const int height,
                        global const float *kern, const int hw, const int block, const int nbx,
                        global const float *bg, const float sign, const float norm, global float *d_sci,
                        global float *d_var, global ushort *d_mask, global float *conv, global float *score,
                        global ushort *s_mask)
{
    int x = get_global_id(0), y = get_global_id(1);
    if (x >= width || y >= height)
        return;
    size_t o = (size_t)y * (size_t)width + (size_t)x;
    int ksize = 2 * hw + 1;
    ushort mi = (i_flags & 2) ? i_mask[o] : 0, mt = (t_flags & 2) ? t_mask[o] : 0;
    ushort m = mi | mt;
    float iv = i_sci[o];
    bool ok = al_ok(iv, mi, ignore, i_lo, i_hi);
    float vi = (i_flags & 1) ? i_var[o] : i_var0;
    float c = NAN, cv = 0.0f;
    if (x < hw || y < hw || x >= width - hw || y >= height - hw) {
        m |= CLRED_MASK_EDGE | CLRED_MASK_NO_DATA;
        ok = false;
    } else {
        global const float *k = kern + (size_t)((y / block) * nbx + x / block) * (size_t)(ksize * ksize);
        float acc = 0.0f, vacc = 0.0f;
        ushort grown = 0;
        bool clean = true;
        for (int v = -hw; v <= hw; v++) {
            size_t row = (size_t)(y - v) * (size_t)width;
            global const float *kr = k + (v + hw) * ksize + hw;
            for (int u = -hw; u <= hw; u++) {
                size_t i = row + (size_t)(x - u);
                float tv = t_sci[i], kk = kr[u];
                ushort tm = (t_flags & 2) ? t_mask[i] : 0;
                if (al_ok(tv, tm, ignore, t_lo, t_hi)) {
                    acc += kk * (tv - t_level);
                    vacc += kk * kk * ((t_flags & 1) ? t_var[i] : t_var0);
                } else {
                    clean = false;
                    grown |= tm & ignore;
                }
            }
        }
        float xs = 2.0f * (float)x / (float)(width - 1) - 1.0f, ys = 2.0f * (float)y / (float)(height - 1) - 1.0f;
        c = acc + bg[0] + bg[1] * xs + bg[2] * ys + bg[3] * xs * xs + bg[4] * xs * ys + bg[5] * ys * ys;
        cv = vacc;
        if (!clean) {
            m |= grown | CLRED_MASK_NO_DATA;
            ok = false;
        }
    }
    ok = ok && isfinite(vi);
    if (!ok)
        m |= CLRED_MASK_NO_DATA;
    float dv = ok ? sign * (iv - i_level - c) / norm : NAN;
    float var = ok ? (max(vi, 0.0f) + cv) / (norm * norm) : NAN;
    d_sci[o] = dv;
    d_var[o] = var;
    d_mask[o] = m;
    conv[o] = c + i_level;
    score[o] = ok && var > 0.0f ? dv / sqrt(var) : NAN;
    s_mask[o] = m;
}

/* The difference into a padded FFT plane (rows of pitch floats), 0 where it is NaN. */
kernel void al_pad(global const float *d, const int width, const int height, const int pitch, const int ny,
                   global float *dst)
{
    int x = get_global_id(0), y = get_global_id(1);
    if (x >= pitch || y >= ny)
        return;
    float v = 0.0f;
    if (x < width && y < height) {
        v = d[(size_t)y * (size_t)width + (size_t)x];
        v = isfinite(v) ? v : 0.0f;
    }
    dst[(size_t)y * (size_t)pitch + (size_t)x] = v;
}

/* Per frequency, with K^ the matching kernel's spectrum and P^ the
 * difference's PSF's: DMTN-021's decorrelation (when decorrelate; else phi = 1)
 *   phi^ = sqrt((s2i + ksum^2 s2t) / (s2i + |K^|^2 s2t)),
 * then D'^ = phi^ D^ (into d), P'^ = phi^ P^ (into p) and the matched filter
 * D'^ conj(P'^) (into k): its inverse is the PSF-weighted sum of D' at each pixel. */
kernel void al_fourier(global float2 *d, global float2 *k, global float2 *p, const uint n, const float s2i,
                       const float s2t, const float ksum, const int decorrelate)
{
    uint i = get_global_id(0);
    if (i >= n)
        return;
    float phi = 1.0f;
    if (decorrelate) {
        float2 kk = k[i];
        float den = s2i + (kk.x * kk.x + kk.y * kk.y) * s2t;
        phi = den > 0.0f ? sqrt((s2i + ksum * ksum * s2t) / den) : 1.0f;
    }
    float2 dv = d[i] * phi, pv = p[i] * phi;
    d[i] = dv;
    p[i] = pv;
    k[i] = (float2)(dv.x * pv.x + dv.y * pv.y, dv.y * pv.x - dv.x * pv.y);
}

/* Back from the padded planes (src: D', filt: the matched filter of D'):
 * where the difference d is NaN, NaN. Decorrelated: out = D', VAR = (var_I +
 * ksum^2 var_T) / norm^2 (white after decorrelation); else D and its VAR.
 * score = D / sqrt(VAR) per pixel; detect = filt / sqrt(VAR sum P'^2), the
 * PSF-matched S/N (the detection statistic: a point source's S/N over its
 * PSF, not its peak pixel's). */
kernel void al_unpad(global const float *src, global const float *filt, const int pitch, global const float *d,
                     global const float *d_var, global const float *i_var, const int i_flags, const float i_var0,
                     global const float *t_var, const int t_flags, const float t_var0, const float ksum,
                     const float norm, const int decorrelate, const float sum_p2, const int width, const int height,
                     global float *out, global float *out_var, global float *score, global float *detect)
{
    int x = get_global_id(0), y = get_global_id(1);
    if (x >= width || y >= height)
        return;
    size_t o = (size_t)y * (size_t)width + (size_t)x, q = (size_t)y * (size_t)pitch + (size_t)x;
    bool ok = isfinite(d[o]);
    float v, var;
    if (decorrelate) {
        float vi = (i_flags & 1) ? i_var[o] : i_var0, vt = (t_flags & 1) ? t_var[o] : t_var0;
        v = ok ? src[q] : NAN;
        var = ok ? (max(vi, 0.0f) + ksum * ksum * max(vt, 0.0f)) / (norm * norm) : NAN;
        out[o] = v;
        out_var[o] = var;
    } else {
        v = d[o];
        var = d_var[o];
    }
    ok = ok && var > 0.0f;
    score[o] = ok ? v / sqrt(var) : NAN;
    detect[o] = ok ? filt[q] / sqrt(var * sum_p2) : NAN;
}
