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
 * al_stamp_check has sorted the stamps by the unusable pixels they read
 * (nbad): a stamp with some near its star (nbad > 0) is never used, so its
 * rows are left at 0; one with some only further out (nbad < 0) reads them
 * as 0 (al_stamp_finish weights out every fitted pixel whose sums they
 * reach); a clean one (0) needs no checks. */
kernel void al_stamp_rows(global const float *t_sci, global const ushort *t_mask, const int t_flags, const float t_lo,
                          const float t_hi, const ushort ignore, const float t_level, const int width,
                          const int height, global const int2 *centre, global const int *nbad, const int nstamps,
                          global const float *filt, const int nfilt, const int hw, const int r, global float *rows)
{
    int fw = 2 * r + 1, fh = 2 * r + 2 * hw + 1, ksize = 2 * hw + 1;
    int xx = get_global_id(0), g1 = get_global_id(1), yy = g1 % fh, sf = g1 / fh;
    if (xx >= fw || sf >= nstamps * nfilt)
        return;
    int s = sf / nfilt, f = sf % nfilt;
    float acc = 0.0f;
    if (nbad[s] == 0) {
        int2 c = centre[s];
        global const float *tp = t_sci + (size_t)(c.y - r - hw + yy) * (size_t)width + (size_t)(c.x - r + xx + hw);
        global const float *fp = filt + f * ksize;
        /* two sums (even and odd taps): independent chains of additions */
        float a1 = 0.0f;
        int t = 0;
        for (; t + 1 < ksize; t += 2) {
            acc = fma(fp[t], tp[-t] - t_level, acc);
            a1 = fma(fp[t + 1], tp[-t - 1] - t_level, a1);
        }
        if (t < ksize)
            acc = fma(fp[t], tp[-t] - t_level, acc);
        acc += a1;
    } else if (nbad[s] < 0) {
        int2 c = centre[s];
        int y = c.y - r - hw + yy, x0 = c.x - r + xx + hw;
        global const float *fp = filt + f * ksize;
        for (int t = 0; t < ksize && y >= 0 && y < height; t++) {
            int x = x0 - t;
            size_t i = (size_t)y * (size_t)width + (size_t)x;
            if (x >= 0 && x < width && al_ok(t_sci[i], (t_flags & 2) ? t_mask[i] : 0, ignore, t_lo, t_hi))
                acc = fma(fp[t], t_sci[i] - t_level, acc);
        }
    }
    rows[(((size_t)s * nfilt + f) * fh + yy) * fw + xx] = acc;
}

/* Column pass (work-items: p, and b + nbasis s): conv[s][b][p] (p = yy * fw + xx over the fitted box; a stamp
 * holds nbasis + 2 vectors) for basis b = filters (fx[b], fy[b]): sum_v filt[fy][v + hw] rows[s][fx][yy + hw - v][xx].
 * al_stamp_finish then takes bsum[b] times basis 0's off. */
inline float al_col(global const float *rows, global const float *filt, int s, int nfilt, int fx, int fy, int xx,
                    int yy, int hw, int fw, int fh)
{
    int ksize = 2 * hw + 1;
    global const float *rp = rows + ((size_t)s * nfilt + fx) * fh * fw;
    global const float *fp = filt + fy * ksize;
    /* tap t = v + hw reads row yy + 2 hw - t; two sums (even and odd taps) */
    rp += (yy + 2 * hw) * fw + xx;
    float a0 = 0.0f, a1 = 0.0f;
    int t = 0;
    for (; t + 1 < ksize; t += 2) {
        a0 = fma(fp[t], rp[-t * fw], a0);
        a1 = fma(fp[t + 1], rp[-(t + 1) * fw], a1);
    }
    if (t < ksize)
        a0 = fma(fp[t], rp[-t * fw], a0);
    return a0 + a1;
}

kernel void al_stamp_cols(global const float *rows, global const float *filt, const int nfilt,
                          global const int2 *basis_f, const int nbasis, const int nstamps, const int hw, const int r,
                          global float *conv)
{
    int p = get_global_id(0), g1 = get_global_id(1), b = g1 % nbasis, s = g1 / nbasis;
    int fw = 2 * r + 1, fh = 2 * r + 2 * hw + 1, npix = fw * fw;
    if (p >= npix || s >= nstamps)
        return;
    int2 f = basis_f[b];
    conv[((size_t)s * (nbasis + 2) + b) * npix + p] = al_col(rows, filt, s, nfilt, f.x, f.y, p % fw, p / fw, hw, fw, fh);
}

/* Per stamp and pixel of the fitted box, after the column pass: the bases
 * but the first less bsum[b] times basis 0's (so that they sum to 0), the
 * background's constant 1 and I less its level as vectors nbasis and
 * nbasis + 1 of the stamp (conv[s][nbasis + 2][p]), and the weight
 * wt[s][p] = 1 / (var_I + var_T) (0 where that is not positive and finite,
 * and, in a stamp with unusable pixels away from its star (nbad < 0),
 * where I is unusable or the kernel's footprint holds an unusable T). */
inline bool al_footprint_ok(global const float *i_sci, global const ushort *i_mask, int i_flags, float i_lo,
                            float i_hi, global const float *t_sci, global const ushort *t_mask, int t_flags,
                            float t_lo, float t_hi, ushort ignore, int width, int height, int x, int y, int hw)
{
    if (x - hw < 0 || y - hw < 0 || x + hw >= width || y + hw >= height)
        return false;
    size_t i = (size_t)y * (size_t)width + (size_t)x;
    if (!al_ok(i_sci[i], (i_flags & 2) ? i_mask[i] : 0, ignore, i_lo, i_hi))
        return false;
    for (int v = y - hw; v <= y + hw; v++)
        for (int u = x - hw; u <= x + hw; u++) {
            size_t j = (size_t)v * (size_t)width + (size_t)u;
            if (!al_ok(t_sci[j], (t_flags & 2) ? t_mask[j] : 0, ignore, t_lo, t_hi))
                return false;
        }
    return true;
}

kernel void al_stamp_finish(global float *conv, global const float *bsum, const int nbasis, const int nstamps,
                            global const int2 *centre, const int r, global const float *i_sci,
                            global const float *i_var, const int i_flags, const float i_var0, const float i_level,
                            global const float *t_var, const int t_flags, const float t_var0, const int width,
                            const int height, global const ushort *i_mask, const float i_lo, const float i_hi,
                            global const float *t_sci, global const ushort *t_mask, const float t_lo,
                            const float t_hi, const ushort ignore, const int hw, global const int *nbad,
                            global float *wt)
{
    int p = get_global_id(0), s = get_global_id(1), fw = 2 * r + 1, npix = fw * fw;
    if (p >= npix || s >= nstamps)
        return;
    global float *base = conv + (size_t)s * (nbasis + 2) * npix + p;
    float c0 = base[0];
    for (int b = 1; b < nbasis; b++)
        if (bsum[b] != 0.0f)
            base[(size_t)b * npix] -= bsum[b] * c0;
    int2 c = centre[s];
    int x = c.x - r + p % fw, y = c.y - r + p / fw;
    /* a stamp with unusable pixels near its star is not used (and may reach past the image) */
    bool ok = nbad[s] == 0 || (nbad[s] < 0 && al_footprint_ok(i_sci, i_mask, i_flags, i_lo, i_hi, t_sci, t_mask,
                                                               t_flags, t_lo, t_hi, ignore, width, height, x, y, hw));
    size_t i = ok ? (size_t)y * (size_t)width + (size_t)x : 0;
    float vi = (i_flags & 1) ? i_var[i] : i_var0, vt = (t_flags & 1) ? t_var[i] : t_var0;
    float var = vi + vt;
    base[(size_t)nbasis * npix] = 1.0f;
    base[(size_t)(nbasis + 1) * npix] = ok ? i_sci[i] - i_level : 0.0f;
    wt[(size_t)s * npix + p] = (ok && isfinite(var) && var > 0.0f) ? 1.0f / var : 0.0f;
}

/* The stamps' normal equations: for vectors a <= b among the stamp's nv
 * (the basis convolutions, the constant 1 and I), weighted by wt:
 *   dots[s][pair] = sum_p wt_p a(p) b(p)     (pairs in row-major upper-triangle order).
 * One work-item per (pair, stamp); products in float (4 at a time), summed in
 * acc_t (four sums: independent chains of additions). Work-item q = npairs
 * counts the stamp's pixels of weight > 0 instead (nfit[s]): those alone add
 * to its chi^2, which the stamp rejection judges against their number
 * (al_stamp_outliers), and counted from wt itself they are exactly the
 * pixels the sums take, whatever left the others out. */
kernel void al_stamp_dots(global const float *conv, global const float *wt, const int nv, const int npix,
                          const int nstamps, global const int2 *pairs, const int npairs, global acc_t *dots,
                          global int *nfit)
{
    int q = get_global_id(0), s = get_global_id(1);
    if (q > npairs || s >= nstamps)
        return;
    if (q == npairs) {
        global const float *w = wt + (size_t)s * npix;
        int n = 0;
        for (int p = 0; p < npix; p++)
            n += w[p] > 0.0f;
        nfit[s] = n;
        return;
    }
    int2 ab = pairs[q];
    global const float *a = conv + ((size_t)s * nv + ab.x) * npix, *b = conv + ((size_t)s * nv + ab.y) * npix,
                       *w = wt + (size_t)s * npix;
    acc_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int p = 0;
    for (; p + 4 <= npix; p += 4) {
        float4 t = vload4(0, w + p) * vload4(0, a + p) * vload4(0, b + p);
        s0 += (acc_t)t.x;
        s1 += (acc_t)t.y;
        s2 += (acc_t)t.z;
        s3 += (acc_t)t.w;
    }
    for (; p < npix; p++)
        s0 += (acc_t)(w[p] * a[p] * b[p]);
    acc_t acc = (s0 + s1) + (s2 + s3);
    dots[(size_t)s * npairs + q] = acc;
}

/* Counts the unusable pixels of each stamp: I over the fitted box, T over
 * the box grown by the kernel (what the basis convolutions read). Those
 * that reach the star's core (I within `core` px of the centre, T within
 * hw + core) make the stamp unusable: nbad = their count (> 0). Others
 * only take the fitted pixels they reach out of the fit: nbad = -(their
 * count). Pixels past the image's edge count as unusable. */
kernel void al_stamp_check(global const float *i_sci, global const ushort *i_mask, const int i_flags,
                           const float i_lo, const float i_hi, global const float *t_sci, global const ushort *t_mask,
                           const int t_flags, const float t_lo, const float t_hi, const ushort ignore,
                           const int width, const int height, global const int2 *centre, const int nstamps,
                           const int hw, const int r, const int core, global int *nbad)
{
    int s = get_global_id(0);
    if (s >= nstamps)
        return;
    int2 c = centre[s];
    int bad = 0, outer = 0, R = r + hw;
    for (int y = c.y - R; y <= c.y + R; y++)
        for (int x = c.x - R; x <= c.x + R; x++) {
            int d = max(abs(x - c.x), abs(y - c.y));
            bool in = x >= 0 && y >= 0 && x < width && y < height;
            size_t i = in ? (size_t)y * (size_t)width + (size_t)x : 0;
            if (!in || !al_ok(t_sci[i], (t_flags & 2) ? t_mask[i] : 0, ignore, t_lo, t_hi)) {
                if (d <= hw + core)
                    bad++;
                else
                    outer++;
            }
            if (d <= r && (!in || !al_ok(i_sci[i], (i_flags & 2) ? i_mask[i] : 0, ignore, i_lo, i_hi))) {
                if (d <= core)
                    bad++;
                else
                    outer++;
            }
        }
    nbad[s] = bad > 0 ? bad : -outer;
}

/* The kernel of each block (work-items: tap t, block b): kern[b][t] =
 * sum_l poly[b][l] kl[l][t], the spatial components kl weighted by their
 * polynomials at the block's centre (host-made, nk per block). */
kernel void al_block_kernels(global const float *kl, global const float *poly, const int nk, const int ntaps,
                             const int nblocks, global float *kern)
{
    int t = get_global_id(0), b = get_global_id(1);
    if (t >= ntaps || b >= nblocks)
        return;
    global const float *pb = poly + (size_t)b * (size_t)nk;
    float v = pb[0] * kl[t];
    for (int l = 1; l < nk; l++)
        v = fma(pb[l], kl[(size_t)l * (size_t)ntaps + (size_t)t], v);
    kern[(size_t)b * (size_t)ntaps + (size_t)t] = v;
}

/* Per block: the half-width of the square outside which the kernel's rings
 * hold at most tail of sum K^2 (AL_VAR_TAIL; al_convolve leaves them out of
 * the variance): rings dropped from the outside in while the dropped sum
 * stays within tail sum K^2. */
kernel void al_block_var_hw(global const float *kern, const int hw, const int nblocks, const float tail,
                            global int *var_hw)
{
    int b = get_global_id(0);
    if (b >= nblocks)
        return;
    int ks = 2 * hw + 1;
    global const float *k = kern + (size_t)b * (size_t)(ks * ks);
    float total = 0.0f;
    for (int t = 0; t < ks * ks; t++)
        total = fma(k[t], k[t], total);
    float out = 0.0f;
    int vh = hw;
    while (vh > 0) {
        /* ring vh: rows -vh and vh whole, columns -vh and vh between them */
        float ring = 0.0f;
        for (int u = -vh; u <= vh; u++) {
            float a = k[(hw - vh) * ks + hw + u], c = k[(hw + vh) * ks + hw + u];
            ring = fma(a, a, fma(c, c, ring));
        }
        for (int v = -vh + 1; v <= vh - 1; v++) {
            float a = k[(hw + v) * ks + hw - vh], c = k[(hw + v) * ks + hw + vh];
            ring = fma(a, a, fma(c, c, ring));
        }
        if (out + ring > tail * total)
            break;
        out += ring;
        vh--;
    }
    var_hw[b] = vh;
}

/* What the convolution reads, so that its inner loop is plain arithmetic:
 * tz = T less its level where T is usable, else 0; vz = T's variance there,
 * else 0; bad = 0x10000 | T's ignored mask bits where T is unusable, else 0. */
kernel void al_prep(global const float *t_sci, global const float *t_var, global const ushort *t_mask,
                    const int t_flags, const float t_level, const float t_var0, const float t_lo, const float t_hi,
                    const ushort ignore, const uint n, global float *tz, global float *vz, global uint *bad)
{
    uint i = get_global_id(0);
    if (i >= n)
        return;
    float tv = t_sci[i];
    ushort tm = (t_flags & 2) ? t_mask[i] : 0;
    bool ok = al_ok(tv, tm, ignore, t_lo, t_hi);
    tz[i] = ok ? tv - t_level : 0.0f;
    vz[i] = ok ? ((t_flags & 1) ? t_var[i] : t_var0) : 0.0f;
    bad[i] = ok ? 0u : (0x10000u | (uint)(tm & ignore));
}

/* The unusable-T flags grown by the kernel's footprint, one axis at a time
 * (dx, dy = 1, 0 along rows, then 0, 1 along columns): out = OR of in over
 * the 2 hw + 1 pixels centred on each (those inside the image). 8 pixels of a
 * row per work-item, as vectors away from the left and right borders. */
kernel void al_grow(global const uint *in, const int width, const int height, const int hw, const int dx,
                    const int dy, global uint *out)
{
    int x0 = 8 * get_global_id(0), y = get_global_id(1);
    if (x0 >= width || y >= height)
        return;
    size_t o = (size_t)y * (size_t)width + (size_t)x0;
    if (x0 + 7 < width && (dy || (x0 >= hw && x0 + 7 + hw < width))) {
        uint8 m = 0;
        int lo = dy ? max(-hw, -y) : -hw, hi = dy ? min(hw, height - 1 - y) : hw;
        long step = dy ? (long)width : 1;
        for (int d = lo; d <= hi; d++)
            m |= vload8(0, in + (long)o + d * step);
        vstore8(m, 0, out + o);
        return;
    }
    for (int l = 0; l < 8 && x0 + l < width; l++) {
        uint m = 0;
        for (int d = -hw; d <= hw; d++) {
            int xs = x0 + l + d * dx, ys = y + d * dy;
            if (xs >= 0 && xs < width && ys >= 0 && ys < height)
                m |= in[(size_t)ys * (size_t)width + (size_t)xs];
        }
        out[o + l] = m;
    }
}

/* The spatially varying convolution and the difference, with the kernel of
 * each pixel's block, 8 pixels of each of two rows per work-item (8
 * independent sums per tap: vector arithmetic on a CPU, one kernel value read
 * per 8 pixels, and each T row read once for both rows):
 *   C = sum K tz + B(x, y)          (B: the background polynomial, bg[6] over
 *                                    xs = 2 x / (w - 1) - 1, ys likewise: 1, xs, ys, xs^2, xs ys, ys^2)
 *   D = sign (I - C) / norm, VAR = (var_I + sum K^2 vz) / norm^2,
 *   conv = C + I's level.
 * The variance's sum runs over the block's var_hw (<= hw): the host drops the
 * outer rings that hold a negligible share of sum K^2 (see AL_VAR_TAIL).
 * A pixel whose kernel footprint leaves the image is EDGE | NO_DATA; one whose
 * footprint meets an unusable T pixel (grown != 0), or an unusable I pixel,
 * is NO_DATA (with those T pixels' ignored bits); D, VAR and score are NaN
 * there. The 8 pixels take the vector paths when all are inside the border
 * band and in one block; the others (near the border) go one by one. */
inline void al_conv_one(global const float *tz, global const float *vz, global const float *k, int hw, int vh,
                        int width, int x, int y, float *c, float *cv)
{
    int ksize = 2 * hw + 1;
    float acc = 0.0f, vacc = 0.0f;
    for (int v = -hw; v <= hw; v++) {
        size_t row = (size_t)(y - v) * (size_t)width + (size_t)x;
        global const float *kr = k + (v + hw) * ksize + hw;
        for (int u = -hw; u <= hw; u++)
            acc = fma(kr[u], tz[row - u], acc);
        if (v < -vh || v > vh)
            continue;
        for (int u = -vh; u <= vh; u++)
            vacc = fma(kr[u] * kr[u], vz[row - u], vacc);
    }
    *c = acc;
    *cv = vacc;
}

/* 8 pixels of row y, all inside the border band and in one block (kb): the
 * vector path, four sums per plane (taps u mod 4): independent chains of
 * additions, enough to keep a CPU's FMA units busy through their latency. */
inline void al_conv_row8(global const float *tz, global const float *vz, global const float *k, int hw, int vh,
                         int width, int x0, int y, float *c, float *cv)
{
    int ksize = 2 * hw + 1;
    float8 a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f, v0 = 0.0f, v1 = 0.0f, v2 = 0.0f, v3 = 0.0f;
    for (int v = -hw; v <= hw; v++) {
        size_t row = (size_t)(y - v) * (size_t)width + (size_t)x0;
        global const float *kr = k + (v + hw) * ksize + hw;
        global const float *tr = tz + row, *vr = vz + row;
        int u = -hw;
        for (; u + 3 <= hw; u += 4) {
            a0 = fma((float8)kr[u], vload8(0, tr - u), a0);
            a1 = fma((float8)kr[u + 1], vload8(0, tr - u - 1), a1);
            a2 = fma((float8)kr[u + 2], vload8(0, tr - u - 2), a2);
            a3 = fma((float8)kr[u + 3], vload8(0, tr - u - 3), a3);
        }
        for (; u <= hw; u++)
            a0 = fma((float8)kr[u], vload8(0, tr - u), a0);
        if (v < -vh || v > vh)
            continue;
        for (u = -vh; u + 3 <= vh; u += 4) {
            v0 = fma((float8)(kr[u] * kr[u]), vload8(0, vr - u), v0);
            v1 = fma((float8)(kr[u + 1] * kr[u + 1]), vload8(0, vr - u - 1), v1);
            v2 = fma((float8)(kr[u + 2] * kr[u + 2]), vload8(0, vr - u - 2), v2);
            v3 = fma((float8)(kr[u + 3] * kr[u + 3]), vload8(0, vr - u - 3), v3);
        }
        for (; u <= vh; u++)
            v0 = fma((float8)(kr[u] * kr[u]), vload8(0, vr - u), v0);
    }
    vstore8((a0 + a1) + (a2 + a3), 0, c);
    vstore8((v0 + v1) + (v2 + v3), 0, cv);
}

/* The same for rows y and y + 1 at once (one block): each T row is loaded
 * once for both (kernel rows v and v + 1), two sums per row and plane. */
inline void al_conv_rows2(global const float *tz, global const float *vz, global const float *k, int hw, int vh,
                          int width, int x0, int y, float *c, float *cv)
{
    int ksize = 2 * hw + 1;
    float8 a0 = 0.0f, a1 = 0.0f, b0 = 0.0f, b1 = 0.0f, v0 = 0.0f, v1 = 0.0f, w0 = 0.0f, w1 = 0.0f;
    /* T row y + 1 - j serves row y with kernel row j - 1 and row y + 1 with kernel row j */
    for (int j = -hw; j <= hw + 1; j++) {
        size_t row = (size_t)(y + 1 - j) * (size_t)width + (size_t)x0;
        global const float *tr = tz + row, *vr = vz + row;
        bool top = j - 1 >= -hw, bottom = j <= hw; /* row y uses it / row y + 1 uses it */
        global const float *ka = k + (j - 1 + hw) * ksize + hw, *kb = k + (j + hw) * ksize + hw;
        if (top && bottom) {
            int u = -hw;
            for (; u + 1 <= hw; u += 2) {
                float8 t0 = vload8(0, tr - u), t1 = vload8(0, tr - u - 1);
                a0 = fma((float8)ka[u], t0, a0);
                b0 = fma((float8)kb[u], t0, b0);
                a1 = fma((float8)ka[u + 1], t1, a1);
                b1 = fma((float8)kb[u + 1], t1, b1);
            }
            for (; u <= hw; u++) {
                float8 t0 = vload8(0, tr - u);
                a0 = fma((float8)ka[u], t0, a0);
                b0 = fma((float8)kb[u], t0, b0);
            }
        } else if (top) {
            for (int u = -hw; u <= hw; u++)
                a0 = fma((float8)ka[u], vload8(0, tr - u), a0);
        } else {
            for (int u = -hw; u <= hw; u++)
                b0 = fma((float8)kb[u], vload8(0, tr - u), b0);
        }
        bool vtop = top && j - 1 >= -vh && j - 1 <= vh, vbottom = bottom && j >= -vh && j <= vh;
        if (vtop && vbottom) {
            int u = -vh;
            for (; u + 1 <= vh; u += 2) {
                float8 t0 = vload8(0, vr - u), t1 = vload8(0, vr - u - 1);
                v0 = fma((float8)(ka[u] * ka[u]), t0, v0);
                w0 = fma((float8)(kb[u] * kb[u]), t0, w0);
                v1 = fma((float8)(ka[u + 1] * ka[u + 1]), t1, v1);
                w1 = fma((float8)(kb[u + 1] * kb[u + 1]), t1, w1);
            }
            for (; u <= vh; u++) {
                float8 t0 = vload8(0, vr - u);
                v0 = fma((float8)(ka[u] * ka[u]), t0, v0);
                w0 = fma((float8)(kb[u] * kb[u]), t0, w0);
            }
        } else if (vtop) {
            for (int u = -vh; u <= vh; u++)
                v0 = fma((float8)(ka[u] * ka[u]), vload8(0, vr - u), v0);
        } else if (vbottom) {
            for (int u = -vh; u <= vh; u++)
                w0 = fma((float8)(kb[u] * kb[u]), vload8(0, vr - u), w0);
        }
    }
    vstore8(a0 + a1, 0, c);
    vstore8(b0 + b1, 0, c + 8);
    vstore8(v0 + v1, 0, cv);
    vstore8(w0 + w1, 0, cv + 8);
}

/* Work-items: 8 pixels of a row (x0 = 8 gid0) on two rows (y0 = 2 gid1 and
 * y0 + 1): rows in one block inside the border band take al_conv_rows2, a
 * row alone al_conv_row8, pixels near the border al_conv_one. planes: bit 0
 * conv is written, bit 1 score and s_mask (planes nobody asked for cost
 * their stores). */
kernel void al_convolve(global const float *tz, global const float *vz, global const uint *grown,
                        global const ushort *t_mask, const int t_flags, global const float *i_sci,
                        global const float *i_var, global const ushort *i_mask, const int i_flags,
                        const float i_level, const float i_var0, const float i_lo, const float i_hi,
                        const ushort ignore, const int width, const int height, global const float *kern,
                        const int hw, global const int *var_hw, const int block, const int nbx,
                        global const float *bg, const float sign, const float norm, global float *d_sci, global float *d_var, global ushort *d_mask,
                        const int planes, global float *conv, global float *score, global ushort *s_mask)
{
    int x0 = 8 * get_global_id(0), y0 = 2 * get_global_id(1);
    if (x0 >= width || y0 >= height)
        return;
    int ksize = 2 * hw + 1, nrows = y0 + 1 < height ? 2 : 1;
    bool xin = x0 >= hw && x0 + 7 < width - hw && x0 / block == (x0 + 7) / block;
    float c[16], cv[16];
    bool pair = nrows == 2 && xin && y0 >= hw && y0 + 1 < height - hw && y0 / block == (y0 + 1) / block;
    if (pair) {
        int kb = (y0 / block) * nbx + x0 / block;
        al_conv_rows2(tz, vz, kern + (size_t)kb * (size_t)(ksize * ksize), hw, var_hw[kb], width, x0, y0, c, cv);
    }
    for (int r = 0; r < nrows; r++) {
        int y = y0 + r;
        bool yin = y >= hw && y < height - hw;
        float *cr = c + 8 * r, *cvr = cv + 8 * r;
        if (!pair && yin && xin) {
            int kb = (y / block) * nbx + x0 / block;
            al_conv_row8(tz, vz, kern + (size_t)kb * (size_t)(ksize * ksize), hw, var_hw[kb], width, x0, y, cr, cvr);
        } else if (!pair) {
            for (int l = 0; l < 8; l++) {
                int x = x0 + l;
                cr[l] = NAN;
                cvr[l] = 0.0f;
                if (yin && x >= hw && x < width - hw) {
                    int kb = (y / block) * nbx + x / block;
                    global const float *k = kern + (size_t)kb * (size_t)(ksize * ksize);
                    al_conv_one(tz, vz, k, hw, var_hw[kb], width, x, y, &cr[l], &cvr[l]);
                }
            }
        }
        float ys = 2.0f * (float)y / (float)(height - 1) - 1.0f;
        for (int l = 0; l < 8 && x0 + l < width; l++) {
            int x = x0 + l;
            size_t o = (size_t)y * (size_t)width + (size_t)x;
            ushort mi = (i_flags & 2) ? i_mask[o] : 0, mt = (t_flags & 2) ? t_mask[o] : 0;
            ushort m = mi | mt;
            float iv = i_sci[o];
            bool ok = al_ok(iv, mi, ignore, i_lo, i_hi);
            float vi = (i_flags & 1) ? i_var[o] : i_var0;
            float cc = NAN, ccv = 0.0f;
            if (!yin || x < hw || x >= width - hw) {
                m |= CLRED_MASK_EDGE | CLRED_MASK_NO_DATA;
                ok = false;
            } else {
                float xs = 2.0f * (float)x / (float)(width - 1) - 1.0f;
                cc = cr[l] + bg[0] + bg[1] * xs + bg[2] * ys + bg[3] * xs * xs + bg[4] * xs * ys + bg[5] * ys * ys;
                ccv = cvr[l];
                uint g = grown[o];
                if (g) {
                    m |= (ushort)(g & 0xffffu) | CLRED_MASK_NO_DATA;
                    ok = false;
                }
            }
            ok = ok && isfinite(vi);
            if (!ok)
                m |= CLRED_MASK_NO_DATA;
            float dv = ok ? sign * (iv - i_level - cc) / norm : NAN;
            float var = ok ? (max(vi, 0.0f) + ccv) / (norm * norm) : NAN;
            d_sci[o] = dv;
            d_var[o] = var;
            d_mask[o] = m;
            if (planes & 1)
                conv[o] = cc + i_level;
            if (planes & 2) {
                score[o] = ok && var > 0.0f ? dv / sqrt(var) : NAN;
                s_mask[o] = m;
            }
        }
    }
}

/* D's sky samples (alard_lupton.c refit_sky): D at (step i + step / 2,
 * step j + step / 2), NaN where it is unusable or where |score| passes thr
 * within reach px (every second pixel of the box each way). */
kernel void al_sky_samples(global const float *d, global const ushort *d_mask, const ushort ignore,
                           global const float *score, const float thr, const int reach, const int width,
                           const int height, const int step, const int nsx, const int nsy, global float *out)
{
    int i = get_global_id(0), j = get_global_id(1);
    if (i >= nsx || j >= nsy)
        return;
    int x = i * step + step / 2, y = j * step + step / 2;
    size_t o = (size_t)y * (size_t)width + (size_t)x;
    float v = d[o];
    bool ok = isfinite(v) && !(d_mask[o] & ignore);
    int y0 = max(y - reach, 0), y1 = min(y + reach, height - 1), x0 = max(x - reach, 0), x1 = min(x + reach, width - 1);
    for (int yy = y0; yy <= y1 && ok; yy += 2)
        for (int xx = x0; xx <= x1; xx += 2)
            if (fabs(score[(size_t)yy * (size_t)width + (size_t)xx]) > thr) {
                ok = false;
                break;
            }
    out[(size_t)j * (size_t)nsx + (size_t)i] = ok ? v : NAN;
}

/* The sky re-fitted on D (alard_lupton.c refit_sky): delta (the
 * background's layout: 1, xs, ys, xs^2, xs ys, ys^2) taken off D, added to
 * CONV times sign norm, the score D / sqrt(VAR) again. NaN stays NaN. */
kernel void al_sky_correct(global const float *delta, const float sign_norm, const int width, const int height,
                           global float *d_sci, global const float *d_var, const int with_conv, global float *conv,
                           global float *score)
{
    int x = get_global_id(0), y = get_global_id(1);
    if (x >= width || y >= height)
        return;
    size_t o = (size_t)y * (size_t)width + (size_t)x;
    float xs = 2.0f * (float)x / (float)(width - 1) - 1.0f, ys = 2.0f * (float)y / (float)(height - 1) - 1.0f;
    float dl = delta[0] + delta[1] * xs + delta[2] * ys + delta[3] * xs * xs + delta[4] * xs * ys + delta[5] * ys * ys;
    float d = d_sci[o] - dl, var = d_var[o];
    d_sci[o] = d;
    if (with_conv)
        conv[o] += sign_norm * dl;
    score[o] = isfinite(d) && var > 0.0f ? d / sqrt(var) : NAN;
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

/* The spectra at bins (fx0 .. fx0 + 7, fy) of a small centred image S (size
 * 2h + 1, S(dx, dy) with dx = dy = 0 in the middle, placed around the origin
 * of the nx x ny grid as zogy_wrap_psf does): S^ = sum_v rows[v][fx]
 * e^{-2 pi i fy (v - h) / ny}, where rows[v][fx] = sum_u S(u - h, v - h)
 * e^{-2 pi i fx (u - h) / nx} (made on the host; real and imaginary parts
 * apart, rows of rpitch, a multiple of 8) and tw_row[j + th] = e^{-2 pi i fy
 * j / ny}, |j| <= th. A direct transform of an image this small costs less
 * than a forward FFT of the whole padded plane. Two sums per part (even and
 * odd v) for the FMA latency. */
inline void al_small_spectrum(global const float *re, global const float *im, const int h, const int rpitch,
                              const int fx0, global const float2 *tw_row, const int th, float8 *sre, float8 *sim)
{
    float8 a0 = 0.0f, b0 = 0.0f, a1 = 0.0f, b1 = 0.0f;
    int v = 0;
    for (; v + 1 <= 2 * h; v += 2) {
        float2 t0 = tw_row[v - h + th], t1 = tw_row[v + 1 - h + th];
        float8 r0 = vload8(0, re + (size_t)v * rpitch + fx0), i0 = vload8(0, im + (size_t)v * rpitch + fx0);
        float8 r1 = vload8(0, re + (size_t)(v + 1) * rpitch + fx0), i1 = vload8(0, im + (size_t)(v + 1) * rpitch + fx0);
        a0 = fma(r0, (float8)t0.x, fma(-i0, (float8)t0.y, a0));
        b0 = fma(r0, (float8)t0.y, fma(i0, (float8)t0.x, b0));
        a1 = fma(r1, (float8)t1.x, fma(-i1, (float8)t1.y, a1));
        b1 = fma(r1, (float8)t1.y, fma(i1, (float8)t1.x, b1));
    }
    for (; v <= 2 * h; v++) {
        float2 t0 = tw_row[v - h + th];
        float8 r0 = vload8(0, re + (size_t)v * rpitch + fx0), i0 = vload8(0, im + (size_t)v * rpitch + fx0);
        a0 = fma(r0, (float8)t0.x, fma(-i0, (float8)t0.y, a0));
        b0 = fma(r0, (float8)t0.y, fma(i0, (float8)t0.x, b0));
    }
    *sre = a0 + a1;
    *sim = b0 + b1;
}

/* Per frequency, with K^ the matching kernel's spectrum and P^ the
 * difference's PSF's (both from al_small_spectrum): DMTN-021's decorrelation
 * (when decorrelate; else phi = 1)
 *   phi^ = sqrt((s2i + ksum^2 s2t) / (s2i + |K^|^2 s2t)),
 * then D'^ = phi^ D^ (into d), P'^ = phi^ P^ (into p) and the matched filter
 * D'^ conj(P'^) (into k): its inverse is the PSF-weighted sum of D' at each
 * pixel. Work-items: 8 bins of a row (nxh = nx / 2 + 1 bins), and the row. */
kernel void al_fourier(global float *d, global float *k, global float *p, const int nxh, const int ny,
                       global const float *rows, const int k_half, const int p_half, const int rpitch,
                       global const float2 *tw, const int th, const float s2i, const float s2t, const float ksum,
                       const int decorrelate)
{
    int fx0 = 8 * get_global_id(0), fy = get_global_id(1);
    if (fx0 >= nxh || fy >= ny)
        return;
    /* rows: the kernel's real, then imaginary parts, then the PSF's */
    size_t kn = (size_t)(2 * k_half + 1) * (size_t)rpitch, pn = (size_t)(2 * p_half + 1) * (size_t)rpitch;
    global const float *k_re = rows, *k_im = rows + kn, *p_re = rows + 2 * kn, *p_im = rows + 2 * kn + pn;
    global const float2 *tw_row = tw + (size_t)fy * (size_t)(2 * th + 1);
    float8 phi = 1.0f, pr, pi;
    if (decorrelate) {
        float8 kr, ki;
        al_small_spectrum(k_re, k_im, k_half, rpitch, fx0, tw_row, th, &kr, &ki);
        float8 den = s2i + (kr * kr + ki * ki) * s2t;
        phi = select((float8)1.0f, sqrt((s2i + ksum * ksum * s2t) / den), den > 0.0f);
    }
    al_small_spectrum(p_re, p_im, p_half, rpitch, fx0, tw_row, th, &pr, &pi);
    pr *= phi;
    pi *= phi;
    float dre[8], dim[8], vpr[8], vpi[8], vph[8];
    vstore8(pr, 0, vpr);
    vstore8(pi, 0, vpi);
    vstore8(phi, 0, vph);
    size_t row = (size_t)fy * (size_t)nxh;
    for (int l = 0; l < 8 && fx0 + l < nxh; l++) {
        size_t q = 2 * (row + (size_t)(fx0 + l));
        dre[l] = d[q] * vph[l];
        dim[l] = d[q + 1] * vph[l];
        d[q] = dre[l];
        d[q + 1] = dim[l];
        p[q] = vpr[l];
        p[q + 1] = vpi[l];
        k[q] = dre[l] * vpr[l] + dim[l] * vpi[l];
        k[q + 1] = dim[l] * vpr[l] - dre[l] * vpi[l];
    }
}

/* The variance of the difference that al_unpad writes: decorrelated, (var_I
 * + ksum^2 var_T) / norm^2 (white after decorrelation); else D's own VAR. */
inline float al_out_var(const size_t o, global const float *d_var, global const float *i_var, const int i_flags,
                        const float i_var0, global const float *t_var, const int t_flags, const float t_var0,
                        const float ksum, const float norm, const int decorrelate)
{
    if (!decorrelate)
        return d_var[o];
    float vi = (i_flags & 1) ? i_var[o] : i_var0, vt = (t_flags & 1) ? t_var[o] : t_var0;
    return (max(vi, 0.0f) + ksum * ksum * max(vt, 0.0f)) / (norm * norm);
}

/* The detection statistic's variance, step 1: W = VAR' (as al_unpad
 * writes it) less v0 (the sky's variance) where the difference d is usable,
 * 0 elsewhere (rows of pitch floats). An unusable pixel adds nothing to the
 * matched filter's sum, so the honest variance would leave it out; counted at
 * the sky's (W = 0), DETECT at a mask's edge stays as conservative as VAR'(x)
 * sum P'^2 made it: the residual wings of a saturated star at its mask's
 * edge are not noise. */
kernel void al_var_pad(global const float *d, global const float *d_var, global const float *i_var,
                       const int i_flags, const float i_var0, global const float *t_var, const int t_flags,
                       const float t_var0, const float ksum, const float norm, const int decorrelate, const float v0,
                       const int width, const int height, const int pitch, global float *dst)
{
    int x = get_global_id(0), y = get_global_id(1);
    if (x >= width || y >= height)
        return;
    size_t o = (size_t)y * (size_t)width + (size_t)x;
    float var = al_out_var(o, d_var, i_var, i_flags, i_var0, t_var, t_flags, t_var0, ksum, norm, decorrelate);
    dst[(size_t)y * (size_t)pitch + (size_t)x] = isfinite(d[o]) && var > 0.0f ? var - v0 : 0.0f;
}

/* Step 2, one axis at a time (dx, dy = 1, 0 along rows, then 0, 1 along
 * columns): out(x, y) = sum_{|t| <= r} g[t + r] in(x + t dx, y + t dy), in
 * read as 0 outside the image (planes of pitch floats). Rows with g = gx,
 * then columns with g = gy, correlate W with gy(v) gx(u), P'^2's best
 * separable approximation. Work-items: 8 pixels of a row, and the row. */
kernel void al_var_pass(global const float *in, const int width, const int height, const int pitch,
                        global const float *g, const int r, const int dx, const int dy, global float *out)
{
    int x0 = 8 * get_global_id(0), y = get_global_id(1);
    if (x0 >= width || y >= height)
        return;
    long step = dx ? 1 : (long)pitch;
    global const float *p = in + (size_t)y * (size_t)pitch + (size_t)x0;
    /* 8 pixels of a row per work-item, as vectors where every tap is inside the image */
    if (x0 + 7 < width && (dy ? (y >= r && y + r < height) : (x0 >= r && x0 + 7 + r < width))) {
        float8 a0 = 0.0f, a1 = 0.0f;
        int t = -r;
        for (; t + 1 <= r; t += 2) {
            a0 = fma((float8)g[t + r], vload8(0, p + t * step), a0);
            a1 = fma((float8)g[t + 1 + r], vload8(0, p + (t + 1) * step), a1);
        }
        if (t <= r)
            a0 = fma((float8)g[t + r], vload8(0, p + t * step), a0);
        vstore8(a0 + a1, 0, out + (size_t)y * (size_t)pitch + (size_t)x0);
        return;
    }
    for (int l = 0; l < 8 && x0 + l < width; l++) {
        int x = x0 + l;
        int lo = dx ? max(-r, -x) : max(-r, -y), hi = dx ? min(r, width - 1 - x) : min(r, height - 1 - y);
        float a0 = 0.0f, a1 = 0.0f;
        int t = lo;
        for (; t + 1 <= hi; t += 2) {
            a0 = fma(g[t + r], p[l + t * step], a0);
            a1 = fma(g[t + 1 + r], p[l + (t + 1) * step], a1);
        }
        if (t <= hi)
            a0 = fma(g[t + r], p[l + t * step], a0);
        out[(size_t)y * (size_t)pitch + (size_t)x] = a0 + a1;
    }
}

/* Back from the padded planes (src: D', filt: the matched filter of D',
 * vfilt: its variance less v_base, from al_var_filter): where the difference
 * d is NaN, NaN. out = D' (decorrelated) with VAR' (al_out_var), else D and
 * its VAR. score = D / sqrt(VAR) per pixel; detect = filt / sqrt(vfilt +
 * v_base), the PSF-matched S/N (the detection statistic: a point source's S/N
 * over its PSF, not its peak pixel's). Its variance is sum_u P'(u)^2 VAR'(x +
 * u), not VAR'(x) sum P'^2: beside a bright star the filter reaches into the
 * star's source noise. */
kernel void al_unpad(global const float *src, global const float *filt, global const float *vfilt,
                     const float v_base, const int pitch, global const float *d,
                     global const float *d_var, global const float *i_var, const int i_flags, const float i_var0,
                     global const float *t_var, const int t_flags, const float t_var0, const float ksum,
                     const float norm, const int decorrelate, const int width, const int height,
                     global float *out, global float *out_var, const int with_score, global float *score,
                     global float *detect)
{
    int x = get_global_id(0), y = get_global_id(1);
    if (x >= width || y >= height)
        return;
    size_t o = (size_t)y * (size_t)width + (size_t)x, q = (size_t)y * (size_t)pitch + (size_t)x;
    bool ok = isfinite(d[o]);
    float var = al_out_var(o, d_var, i_var, i_flags, i_var0, t_var, t_flags, t_var0, ksum, norm, decorrelate);
    float v = ok ? (decorrelate ? src[q] : d[o]) : NAN;
    if (decorrelate) {
        out[o] = v;
        out_var[o] = ok ? var : NAN;
    }
    ok = ok && var > 0.0f;
    float vf = vfilt[q] + v_base;
    if (with_score)
        score[o] = ok ? v / sqrt(var) : NAN;
    detect[o] = ok && vf > 0.0f ? filt[q] / sqrt(vf) : NAN;
}
