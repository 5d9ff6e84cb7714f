/* ZOGY proper image subtraction (Zackay, Ofek & Gal-Yam 2016) around the FFTs
 * (host/steps/zogy.c). Padded planes use the FFT layer's in-place layout:
 * rows of pitch = 2 * (nx / 2 + 1) floats; spectra are rows of nx / 2 + 1
 * complex bins. */

/* The padded planes of both images' w x h tile at (x0, y0) (rows of src_w
 * pixels): the level taken off, 0 beyond the image
 * and wherever either image is unusable (NaN, masked), so that a hole in one
 * image never shows as a source of the other. Variances are the VAR planes,
 * or the background variance where an image has none, and 0 where the data
 * are filled. bits (w x h, the tile's) receives the OR of both masks, NO_DATA where a
 * pixel was filled. */
kernel void zogy_pad(global const float *n_sci, global const float *n_var, global const ushort *n_mask,
                     const int n_flags, const float n_bkg, const float n_var0,
                     global const float *r_sci, global const float *r_var, global const ushort *r_mask,
                     const int r_flags, const float r_bkg, const float r_var0, const ushort ignore,
                     const int src_w, const int x0, const int y0, const int w, const int h, const int pitch,
                     const int ny, global float *pn, global float *pr, global float *vn, global float *vr,
                     global ushort *bits)
{
    int x = get_global_id(0), y = get_global_id(1);
    if (x >= pitch || y >= ny)
        return;
    size_t o = (size_t)y * (size_t)pitch + (size_t)x;
    float a = 0.0f, b = 0.0f, va = 0.0f, vb = 0.0f;
    if (x < w && y < h) {
        size_t i = (size_t)(y0 + y) * (size_t)src_w + (size_t)(x0 + x);
        ushort ma = (n_flags & 2) ? n_mask[i] : 0, mb = (r_flags & 2) ? r_mask[i] : 0;
        float sa = n_sci[i], sb = r_sci[i];
        bool ok = clred_usable(sa, ma, ignore) && clred_usable(sb, mb, ignore);
        va = (n_flags & 1) ? n_var[i] : n_var0;
        vb = (r_flags & 1) ? r_var[i] : r_var0;
        ok = ok && isfinite(va) && isfinite(vb);
        ushort m = ma | mb;
        if (ok) {
            a = sa - n_bkg;
            b = sb - r_bkg;
            va = max(va, 0.0f);
            vb = max(vb, 0.0f);
        } else {
            va = vb = 0.0f;
            m |= CLRED_MASK_NO_DATA;
        }
        bits[(size_t)y * (size_t)w + (size_t)x] = m;
    }
    pn[o] = a;
    pr[o] = b;
    vn[o] = va;
    vr[o] = vb;
}

/* A size x size PSF (centre at size / 2) wrapped into a padded nx x ny plane
 * with its centre on pixel (0, 0): its transform is the PSF's without a phase ramp. */
kernel void zogy_wrap_psf(global const float *psf, const int size, global float *dst, const int pitch, const int nx,
                          const int ny)
{
    int x = get_global_id(0), y = get_global_id(1);
    if (x >= pitch || y >= ny)
        return;
    int hw = size / 2;
    int dx = x <= nx / 2 ? x : x - nx, dy = y <= ny / 2 ? y : y - ny;
    float v = 0.0f;
    if (x < nx && abs(dx) <= hw && abs(dy) <= hw)
        v = psf[(dy + hw) * size + dx + hw];
    dst[(size_t)y * (size_t)pitch + (size_t)x] = v;
}

inline float2 cmul(float2 a, float2 b) { return (float2)(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x); }
inline float2 conj2(float2 a) { return (float2)(a.x, -a.y); }

/* The PSFs' part of ZOGY, once per call (it is the same for every tile of
 * one FFT size). Per frequency (ZOGY eqs. 13, 14, 25-29), with
 * den = s2n fr^2 |P_r|^2 + s2r fn^2 |P_n|^2:
 *   k_n^  = fn fr^2 |P_r|^2 conj(P_n) / den   (S_N^ = k_n^ N^)     -> kn, kn2
 *   k_r^  = fr fn^2 |P_n|^2 conj(P_r) / den   (S_R^ = k_r^ R^)     -> kr, kr2
 *   kd_n^ = fr P_r / sqrt(den), kd_r^ = fn P_n / sqrt(den)
 *           (D^ = kd_n^ N^ - kd_r^ R^)                            -> kdn, kdn2, kdr, kdr2
 *   P_D^  = fr fn P_r P_n / (F_D sqrt(den))                        -> pd
 * (each kernel written twice: the second copy is squared in real space for
 * the variance terms) and per row the sum of fn^2 fr^2 |P_n|^2 |P_r|^2 / den
 * over the full spectrum (a hw-spectrum bin stands for its conjugate twin
 * too), whose total / (nx ny) is F_S. Where den vanishes (both PSFs'
 * transforms 0) every output is 0. */
kernel void zogy_psf_spectra(global const float2 *pn, global const float2 *pr, global float2 *kn, global float2 *kr,
                             global float2 *kdn, global float2 *kdr, global float2 *kn2, global float2 *kr2,
                             global float2 *kdn2, global float2 *kdr2, global float2 *pd, const int nx, const int ny,
                             const float fn, const float fr, const float s2n, const float s2r, const float f_d,
                             global acc_t *row_fs)
{
    int ncx = nx / 2 + 1;
    int row = get_global_id(0);
    if (row >= ny)
        return;
    acc_t fs = 0;
    for (int kx = 0; kx < ncx; kx++) {
        size_t i = (size_t)row * (size_t)ncx + (size_t)kx;
        float2 Pn = pn[i], Pr = pr[i];
        float an = Pn.x * Pn.x + Pn.y * Pn.y, ar = Pr.x * Pr.x + Pr.y * Pr.y;
        float den = s2n * fr * fr * ar + s2r * fn * fn * an;
        float2 z = (float2)(0.0f, 0.0f), vkn = z, vkr = z, vkdn = z, vkdr = z, vpd = z;
        if (den > 1e-30f) {
            float sq = sqrt(den), inv = 1.0f / den;
            vkdn = fr * Pr / sq;
            vkdr = fn * Pn / sq;
            vkn = (fn * fr * fr * ar * inv) * conj2(Pn);
            vkr = (fr * fn * fn * an * inv) * conj2(Pr);
            vpd = (fr * fn / (f_d * sq)) * cmul(Pr, Pn);
            float wgt = (kx == 0 || (nx % 2 == 0 && kx == nx / 2)) ? 1.0f : 2.0f;
            fs += (acc_t)(wgt * fn * fn * fr * fr * an * ar * inv);
        }
        kn[i] = kn2[i] = vkn;
        kr[i] = kr2[i] = vkr;
        kdn[i] = kdn2[i] = vkdn;
        kdr[i] = kdr2[i] = vkdr;
        pd[i] = vpd;
    }
    row_fs[row] = fs;
}

/* A tile's spectra through the PSFs' kernels, in place: N^ -> S_N^ = k_n^ N^,
 * R^ -> S_R^ = k_r^ R^, and D^ = kd_n^ N^ - kd_r^ R^ into d; the variance
 * planes' spectra become those of V(S_N) + V(S_R) = V_n * k_n^2 + V_r * k_r^2
 * (in vn) and V(D) = V_n * kd_n^2 + V_r * kd_r^2 (in vr), k^2 the squared
 * kernels' spectra. */
kernel void zogy_apply(global float2 *n, global float2 *r, global float2 *vn, global float2 *vr, global float2 *d,
                       global const float2 *kn, global const float2 *kr, global const float2 *kdn,
                       global const float2 *kdr, global const float2 *kn2, global const float2 *kr2,
                       global const float2 *kdn2, global const float2 *kdr2, const uint count)
{
    uint i = get_global_id(0);
    if (i >= count)
        return;
    float2 N = n[i], R = r[i], Vn = vn[i], Vr = vr[i];
    d[i] = cmul(kdn[i], N) - cmul(kdr[i], R);
    n[i] = cmul(kn[i], N);
    r[i] = cmul(kr[i], R);
    vn[i] = cmul(Vn, kn2[i]) + cmul(Vr, kr2[i]);
    vr[i] = cmul(Vn, kdn2[i]) + cmul(Vr, kdr2[i]);
}

/* The sources' filtered signals squared, S_N^2 and S_R^2 of a padded tile
 * (sn, sr) into wn, wr: the weights of every source's wing error
 * (zogy_wing_mix spreads them over the wing-error kernels), times the
 * squared gains gn, gr of the tile's models' errors over their centre's. */
kernel void zogy_wing_in(global const float *sn, global const float *sr, global float *wn, global float *wr,
                         const int pitch, const int nx, const int ny, const float gn, const float gr)
{
    int x = get_global_id(0), y = get_global_id(1);
    if (x >= pitch || y >= ny)
        return;
    size_t i = (size_t)y * (size_t)pitch + (size_t)x;
    float a = x < nx ? sn[i] : 0.0f, b = x < nx ? sr[i] : 0.0f;
    wn[i] = gn * a * a;
    wr[i] = gr * b * b;
}

/* The wing errors' variance spectrum, (S_N^2)^ wk_n^ + (S_R^2)^ wk_r^, into wn. */
kernel void zogy_wing_mix(global float2 *wn, global const float2 *wr, global const float2 *wkn,
                          global const float2 *wkr, const uint count)
{
    uint i = get_global_id(0);
    if (i >= count)
        return;
    wn[i] = cmul(wn[i], wkn[i]) + cmul(wr[i], wkr[i]);
}

/* Squares a padded real plane in place (the kernels whose squares carry the variances). */
kernel void zogy_square(global float *a, const int pitch, const int nx, const int ny)
{
    int x = get_global_id(0), y = get_global_id(1);
    if (x >= pitch || y >= ny)
        return;
    size_t i = (size_t)y * (size_t)pitch + (size_t)x;
    float v = x < nx ? a[i] : 0.0f;
    a[i] = v * v;
}

/* The (2 hw + 1)^2 centre of a wrapped plane (centre on pixel (0, 0)) as a stamp. */
kernel void zogy_unwrap(global const float *src, const int pitch, const int nx, const int ny, const int hw,
                        global float *dst)
{
    int i = get_global_id(0), j = get_global_id(1), size = 2 * hw + 1;
    if (i >= size || j >= size)
        return;
    int x = i - hw, y = j - hw;
    x = x < 0 ? x + nx : x;
    y = y < 0 ? y + ny : y;
    dst[j * size + i] = src[(size_t)y * (size_t)pitch + (size_t)x];
}

/* The products on the pixels of a tile's core [cx0, cx1) x [cy0, cy1) (tile
 * coordinates; the tile is w x h at (x0, y0) of the out_w x out_h outputs).
 * With S = S_N - S_R:
 *   V_S = V(S_N) + V(S_R) + sx^2 ((d S_N/dx)^2 + (d S_R/dx)^2) + sy^2 (... /dy)^2   (eqs. 30-34)
 *         + en2 S_N^2 + er2 S_R^2 + V_wing + V_var
 * (the PSF models' errors: a model off by a fraction e of a star's
 * filtered signal leaves e times it in S, coherently over the kernel, so it
 * scales with S_N and S_R themselves, as the astrometric term with their
 * gradients; V_wing, when wing is set, the sources' wing errors beyond the
 * core, from zogy_wing_mix, in vw; V_var, when vgrid_n > 1, what filtering
 * the tile with its centre's PSFs leaves of a source imaged with the PSFs
 * at its own position, S_N^2 vnn - 2 S_N S_R vnr + S_R^2 vrr, the three
 * moments interpolated bilinearly from vgrid_n x vgrid_n nodes each, node
 * (i, j) at image pixel (gx0 + i gdx, gy0 + j gdy)),
 *   S_corr = S / sqrt(V_S), flux = S / F_S with variance V_S / F_S^2,
 *   diff = D / F_D with variance V_D / F_D^2,
 * less the constant differential background d_off (the level of D): a
 * constant c = b_n fr - b_r fn left in the inputs adds c / sqrt(den(0)) to D
 * and F_D times that to S.
 * Derivatives are central differences (one-sided at the tile's edges). Pixels filled
 * before the FFTs are NaN in every product. The mask: each pixel's bits, the
 * unusable bits of every pixel within grow px (a square), SATURATED within
 * grow_sat px (a filled saturated core leaves a ring of its wings' residual),
 * and EDGE within edge px of the border. */
/* The mask's rows ORed over the growth radii: in the low 16 bits the
 * unusable bits within +-grow (here), in the high 16 the saturated bit
 * within +-grow_sat (zogy_sat_rows, after this). zogy_finish then grows by
 * columns only (a square box is the row box of the column box): the small
 * radius by reading its 2 grow + 1 rows, the large one (r = 50 for a 101-px
 * PSF) from zogy_grow_cols. */
kernel void zogy_grow_rows(global const ushort *bits, const int w, const int h, const int grow,
                           const ushort unusable, global uint *rows)
{
    int x = get_global_id(0), y = get_global_id(1);
    if (x >= w || y >= h)
        return;
    const global ushort *r = bits + (size_t)y * (size_t)w;
    uint u = 0;
    for (int k = max(0, x - grow); k <= min(w - 1, x + grow); k++)
        u |= r[k] & unusable;
    rows[(size_t)y * (size_t)w + x] = u;
}

/* The saturated bit within +-r along each row into rows' high 16 bits, at
 * two operations per pixel whatever r: a pixel's window holds a saturated
 * pixel when the nearest one at or left of it, or right of it, is within
 * r (a sweep each way). One work-item per row. */
kernel void zogy_sat_rows(global const ushort *bits, const int w, const int h, const int r, global uint *rows)
{
    int y = get_global_id(0);
    if (y >= h)
        return;
    const global ushort *b = bits + (size_t)y * (size_t)w;
    global uint *o = rows + (size_t)y * (size_t)w;
    const uint sat = (uint)CLRED_MASK_SATURATED << 16;
    int last = -(1 << 30);
    for (int x = 0; x < w; x++) {
        if (b[x] & CLRED_MASK_SATURATED)
            last = x;
        if (x - last <= r)
            o[x] |= sat;
    }
    int next = 1 << 30;
    for (int x = w - 1; x >= 0; x--) {
        if (next - x <= r)
            o[x] |= sat;
        if (b[x] & CLRED_MASK_SATURATED)
            next = x;
    }
}

/* The saturated bits' column pass over +-r rows at a few operations per
 * pixel, whatever r (van Herk, Gil-Werman): each column of rows' high
 * halves, padded with r empty rows each side (padded row p = y + r), is cut
 * into blocks of 2 r + 1 rows; pre[p] ORs p's block from its start to p,
 * suf[p] from p to the block's end. Row y's window, padded rows y ..
 * y + 2 r, is one block or the end of one and the start of the next:
 * suf[y] | pre[y + 2 r]. One work-item per column. */
kernel void zogy_grow_cols(global const uint *rows, const int w, const int h, const int r, global ushort *pre,
                           global ushort *suf)
{
    int x = get_global_id(0);
    if (x >= w)
        return;
    int n = h + 2 * r, span = 2 * r + 1;
    ushort acc = 0;
    for (int p = 0; p < n; p++) {
        int y = p - r;
        ushort v = y >= 0 && y < h ? (ushort)(rows[(size_t)y * (size_t)w + x] >> 16) : (ushort)0;
        acc = p % span == 0 ? v : (ushort)(acc | v);
        pre[(size_t)p * (size_t)w + x] = acc;
    }
    acc = 0;
    for (int p = n - 1; p >= 0; p--) {
        int y = p - r;
        ushort v = y >= 0 && y < h ? (ushort)(rows[(size_t)y * (size_t)w + x] >> 16) : (ushort)0;
        acc = p % span == span - 1 || p == n - 1 ? v : (ushort)(acc | v);
        suf[(size_t)p * (size_t)w + x] = acc;
    }
}

/* Bilinear interpolation of an n x n grid (n >= 2) at node coordinates
 * (u, v), clamped to the grid. */
float grid_bilinear(global const float *g, const int n, float u, float v)
{
    u = clamp(u, 0.0f, (float)(n - 1));
    v = clamp(v, 0.0f, (float)(n - 1));
    int i = min((int)u, n - 2), j = min((int)v, n - 2);
    float a = u - (float)i, b = v - (float)j;
    global const float *r0 = g + j * n + i, *r1 = r0 + n;
    return (1.0f - b) * ((1.0f - a) * r0[0] + a * r0[1]) + b * ((1.0f - a) * r1[0] + a * r1[1]);
}

kernel void zogy_finish(global const float *dpl, global const float *sn, global const float *sr,
                        global const float *vs, global const float *vd, global const ushort *bits,
                        global const uint *rows, global const ushort *sat_pre, global const ushort *sat_suf, const int w,
                        const int h, const int pitch, const int x0, const int y0, const int cx0, const int cy0,
                        const int cx1, const int cy1, const int out_w, const int out_h, const float f_d,
                        const float f_s, const float sx2,
                        const float sy2, const float en2, const float er2, global const float *vgrid,
                        const int vgrid_n, const int gx0, const int gy0, const float gdx, const float gdy,
                        global const float *vw, const int wing,
                        const float d_off, const int grow, const int grow_sat, const int edge, const ushort unusable,
                        global float *diff, global float *diff_var, global ushort *diff_mask, global float *scorr,
                        global ushort *scorr_mask, global float *flux, global float *flux_var)
{
    int x = get_global_id(0) + cx0, y = get_global_id(1) + cy0;
    if (x >= cx1 || y >= cy1)
        return;
    size_t o = (size_t)y * (size_t)pitch + (size_t)x, i = (size_t)y * (size_t)w + (size_t)x;
    size_t out = (size_t)(y0 + y) * (size_t)out_w + (size_t)(x0 + x);
    ushort m = bits[i];
    for (int j = max(0, y - grow); j <= min(h - 1, y + grow); j++)
        m |= (ushort)(rows[(size_t)j * (size_t)w + (size_t)x] & 0xffffu);
    m |= sat_suf[i] | sat_pre[(size_t)(y + 2 * grow_sat) * (size_t)w + (size_t)x];
    int gx = x0 + x, gy = y0 + y;
    if (gx < edge || gy < edge || gx >= out_w - edge || gy >= out_h - edge)
        m |= CLRED_MASK_EDGE;
    int xl = max(x - 1, 0), xr = min(x + 1, w - 1), yl = max(y - 1, 0), yr = min(y + 1, h - 1);
    /* the grown mask and derivatives read the tile around the core: its border covers them */
    float hx = 1.0f / (float)max(xr - xl, 1), hy = 1.0f / (float)max(yr - yl, 1);
    size_t oxl = (size_t)y * pitch + xl, oxr = (size_t)y * pitch + xr, oyl = (size_t)yl * pitch + x,
           oyr = (size_t)yr * pitch + x;
    float gnx = (sn[oxr] - sn[oxl]) * hx, gny = (sn[oyr] - sn[oyl]) * hy;
    float grx = (sr[oxr] - sr[oxl]) * hx, gry = (sr[oyr] - sr[oyl]) * hy;
    float v_s = max(vs[o], 0.0f) + sx2 * (gnx * gnx + grx * grx) + sy2 * (gny * gny + gry * gry) +
                en2 * sn[o] * sn[o] + er2 * sr[o] * sr[o] + (wing ? max(vw[o], 0.0f) : 0.0f);
    if (vgrid_n > 1) {
        float u = ((float)gx - (float)gx0) / gdx, v = ((float)gy - (float)gy0) / gdy;
        int nn = vgrid_n * vgrid_n;
        float vnn = grid_bilinear(vgrid, vgrid_n, u, v), vrr = grid_bilinear(vgrid + nn, vgrid_n, u, v),
              vnr = grid_bilinear(vgrid + 2 * nn, vgrid_n, u, v);
        /* a quadratic form in (S_N, S_R) of a positive semidefinite matrix: >= 0 up to rounding */
        v_s += max(vnn * sn[o] * sn[o] - 2.0f * vnr * sn[o] * sr[o] + vrr * sr[o] * sr[o], 0.0f);
    }
    float s = sn[o] - sr[o] - f_d * d_off;
    bool filled = (bits[i] & CLRED_MASK_NO_DATA) != 0;
    float nan = NAN;
    diff[out] = filled ? nan : (dpl[o] - d_off) / f_d;
    diff_var[out] = filled ? nan : max(vd[o], 0.0f) / (f_d * f_d);
    diff_mask[out] = m;
    scorr[out] = filled || !(v_s > 0.0f) ? nan : s / sqrt(v_s);
    scorr_mask[out] = m;
    flux[out] = filled ? nan : s / f_s;
    flux_var[out] = filled ? nan : v_s / (f_s * f_s);
}

/* Candidates: pixels whose |score| is at or above thresh and the largest of
 * the 5 x 5 box around them (ties go to the first in raster order), the box
 * inside the image, not on a pixel with a reject bit; NaN never counts. Each is appended (atomically,
 * in no fixed order: the host sorts) as its pixel index while fewer than cap. */
kernel void zogy_peaks(global const float *score, global const ushort *mask, const int has_mask, const ushort reject,
                       const int w, const int h, const float thresh, const int both_signs,
                       volatile global uint *count, global uint *list, const uint cap)
{
    int x = get_global_id(0), y = get_global_id(1);
    if (x < 2 || y < 2 || x >= w - 2 || y >= h - 2)
        return;
    size_t i = (size_t)y * (size_t)w + (size_t)x;
    float v = score[i];
    float a = both_signs ? fabs(v) : v;
    if (!(a >= thresh) || (has_mask && (mask[i] & reject)))
        return;
    for (int j = max(0, y - 2); j <= min(h - 1, y + 2); j++)
        for (int k = max(0, x - 2); k <= min(w - 1, x + 2); k++) {
            if (j == y && k == x)
                continue;
            float u = score[(size_t)j * (size_t)w + (size_t)k];
            float b = both_signs ? fabs(u) : u;
            bool before = j < y || (j == y && k < x);
            if (b > a || (before && b == a))
                return;
        }
    uint slot = atomic_inc(count);
    if (slot < cap)
        list[slot] = (uint)i;
}

/* Moves a tile's core [x0, x1) x [y0, y1) of the products from the tile's
 * level of D to the image's: D less delta, S less F_D delta (S_corr and the
 * flux map through S's standard deviation F_S sqrt(flux_var)). */
kernel void zogy_relevel(global float *diff, global float *scorr, global float *flux, global const float *flux_var,
                         const int out_w, const int x0, const int y0, const int x1, const int y1, const float delta,
                         const float f_d, const float f_s)
{
    int x = get_global_id(0) + x0, y = get_global_id(1) + y0;
    if (x >= x1 || y >= y1)
        return;
    size_t i = (size_t)y * (size_t)out_w + (size_t)x;
    float ds = f_d * delta;
    diff[i] -= delta / f_d;
    flux[i] -= ds / f_s;
    scorr[i] -= ds / (f_s * sqrt(flux_var[i]));
}
