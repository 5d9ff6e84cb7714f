/* Mesh background (SExtractor / SEP style): per-box clipped statistics and
 * the bicubic-spline interpolation of the mesh to full resolution. */

#include "lib_sort.cl"

/* Box values are sorted as clred_float_key keys (lib_sort.cl). */
#define float_key clred_float_key
#define key_float clred_key_float

/* LSD radix sort of the keys in a[0..n) with tmp[0..n) as the other buffer,
 * one byte per pass. hist holds the four byte histograms, counted while the
 * keys were gathered; a byte that is the same in every key (the sign and
 * exponent of a box's values mostly are) needs no pass. Returns the buffer
 * that holds the sorted keys (a or tmp). Linear in n and free of the
 * unpredictable comparisons of a comparison sort (a heapsort here cost 5x
 * more). Keys of equal value are equal floats (NaN never gets here; -0 sorts
 * before +0, which changes no statistic). */
inline global uint *radix_sort(global uint *a, global uint *tmp, const uint n, uint hist[4][256])
{
    global uint *src = a, *dst = tmp;
    for (int pass = 0; pass < 4; pass++) {
        uint sum = 0, single = 0;
        for (int d = 0; d < 256; d++) {
            const uint c = hist[pass][d];
            single |= c == n;
            hist[pass][d] = sum;
            sum += c;
        }
        if (single)
            continue;
        const int shift = 8 * pass;
        for (uint i = 0; i < n; i++) {
            const uint k = src[i];
            dst[hist[pass][(k >> shift) & 255u]++] = k;
        }
        global uint *t = src;
        src = dst;
        dst = t;
    }
    return src;
}

/* The value of sorted key i. */
inline acc_t key_value(global const uint *a, const uint i) { return (acc_t)key_float(a[i]); }

#ifdef CLRED_USE_DOUBLE
typedef double4 acc4_t;
#define convert_acc4_t convert_double4
#else
typedef float4 acc4_t;
#define convert_acc4_t convert_float4
#endif

/* Four sorted keys from a + i as acc_t values. */
inline acc4_t key_values4(global const uint *a, const size_t i)
{
    const uint4 k = vload4(0, a + i);
    /* key_float, lane by lane: select takes the second where the top bit is set */
    const uint4 flip = select((uint4)(0xffffffffu), (uint4)(0x80000000u), as_int4(k));
    return convert_acc4_t(as_float4(k ^ flip));
}

/* Sums of d and d^2, d = value - pivot, over the sorted keys [lo, hi): one
 * pass about the median, whose deviations are of the order of the spread,
 * so the moments lose nothing to cancellation. Eight partial sums in two
 * vectors, because a single chain of dependent additions is what bounds
 * this loop on a CPU. */
inline void moments_about(global const uint *a, const uint lo, const uint hi, const acc_t pivot, acc_t *sum,
                          acc_t *sum2)
{
    acc4_t s0 = 0, s1 = 0, q0 = 0, q1 = 0;
    size_t i = lo;
    for (; i + 8 <= hi; i += 8) {
        const acc4_t d0 = key_values4(a, i) - pivot, d1 = key_values4(a, i + 4) - pivot;
        s0 += d0;
        s1 += d1;
        q0 += d0 * d0;
        q1 += d1 * d1;
    }
    const acc4_t s = s0 + s1, q = q0 + q1;
    acc_t ts = (s.x + s.y) + (s.z + s.w), tq = (q.x + q.y) + (q.z + q.w);
    for (; i < hi; i++) {
        const acc_t d = key_value(a, (uint)i) - pivot;
        ts += d;
        tq += d * d;
    }
    *sum = ts;
    *sum2 = tq;
}

/* First index in sorted a[0..n) whose value is >= x (resp. > x). */
inline uint lower_index(global const uint *a, uint n, const acc_t x)
{
    uint lo = 0;
    while (lo < n) {
        const uint mid = lo + (n - lo) / 2;
        if (key_value(a, mid) < x)
            lo = mid + 1;
        else
            n = mid;
    }
    return lo;
}

inline uint upper_index(global const uint *a, uint n, const acc_t x)
{
    uint lo = 0;
    while (lo < n) {
        const uint mid = lo + (n - lo) / 2;
        if (key_value(a, mid) <= x)
            lo = mid + 1;
        else
            n = mid;
    }
    return lo;
}

/* One work-item per box, boxes first_box .. first_box + get_global_size - 1
 * (the host launches the mesh in chunks that fit its scratch). The box's
 * usable pixels go, as sort keys, into the work-item's slot of scratch
 * (2 * box_w * box_h words: the keys and the radix sort's other buffer) and
 * are sorted once; clipping then only moves the bounds [lo, hi) of the kept
 * range, so the median of each iteration is exact and costs nothing.
 * Clipping at median +- clip * std repeats until the kept range stops
 * changing. Outputs: back (SExtractor's mode estimate), sigma (clipped std)
 * and npix; a box with too few usable pixels gets npix = 0 and is filled on
 * the host. */
kernel void bkg_box_stats(global const float *img, global const ushort *mask, const int have_mask,
                          const ushort ignore_bits, const int w, const int h, const int box_w, const int box_h,
                          const int nx, const int ny, const float clip, const int max_iters,
                          const float min_good_frac, const int first_box, const int nslots,
                          global uint *scratch, global float *back, global float *sigma, global int *npix)
{
    const int slot = get_global_id(0), b = first_box + slot;
    /* nslots: this launch's boxes (the range is rounded up to whole work-groups) */
    if (slot >= nslots || b >= nx * ny)
        return;
    const int bx = b % nx, by = b / nx;
    const int x0 = bx * box_w, y0 = by * box_h;
    const int x1 = min(x0 + box_w, w), y1 = min(y0 + box_h, h);
    const size_t area_max = (size_t)box_w * (size_t)box_h;
    global uint *keys = scratch + (size_t)slot * 2 * area_max;
    uint hist[4][256];
    for (int d = 0; d < 256; d++)
        hist[0][d] = hist[1][d] = hist[2][d] = hist[3][d] = 0;
    uint n = 0;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) {
            const float v = img[y * w + x];
            const ushort m = have_mask ? mask[y * w + x] : 0;
            if (clred_usable(v, m, ignore_bits)) {
                const uint k = float_key(v);
                keys[n++] = k;
                hist[0][k & 255u]++;
                hist[1][(k >> 8) & 255u]++;
                hist[2][(k >> 16) & 255u]++;
                hist[3][k >> 24]++;
            }
        }
    const int area = (x1 - x0) * (y1 - y0);
    if (n == 0 || (float)n < min_good_frac * (float)area) {
        back[b] = 0.0f;
        sigma[b] = 0.0f;
        npix[b] = 0;
        return;
    }
    global const uint *a = radix_sort(keys, keys + area_max, n, hist);
    uint lo = 0, hi = n;
    acc_t mean = 0, std = 0, med = 0;
    for (int it = 0;; it++) {
        const uint m = hi - lo;
        med = (m & 1) ? key_value(a, lo + m / 2) : (key_value(a, lo + m / 2 - 1) + key_value(a, lo + m / 2)) / 2;
        acc_t sum, sum2;
        moments_about(a, lo, hi, med, &sum, &sum2);
        const acc_t shift = sum / (acc_t)m;
        mean = med + shift;
        std = sqrt(fmax(sum2 / (acc_t)m - shift * shift, (acc_t)0));
        if (it >= max_iters || std <= 0)
            break;
        const uint nlo = lower_index(a, n, med - (acc_t)clip * std);
        const uint nhi = upper_index(a, n, med + (acc_t)clip * std);
        if ((nlo == lo && nhi == hi) || nhi <= nlo)
            break;
        lo = nlo;
        hi = nhi;
    }
    acc_t mode = mean;
    if (std > 0)
        mode = fabs((mean - med) / std) < (acc_t)0.3 ? (acc_t)2.5 * med - (acc_t)1.5 * mean : med;
    back[b] = (float)mode;
    sigma[b] = (float)std;
    npix[b] = (int)(hi - lo);
}

/* Natural cubic spline on unit spacing between knots k and k + 1, at t
 * (t outside [0, 1] extrapolates the end piece). */
inline float spline_piece(const float y0, const float y1, const float d0, const float d1, const float t)
{
    const float a = 1.0f - t;
    return a * y0 + t * y1 + ((a * a * a - a) * d0 + (t * t * t - t) * d1) * (1.0f / 6.0f);
}

/* The bicubic spline through the mesh, separably: first the spline down
 * each mesh column at every image row, then (bkg_interp) across the row.
 * planes holds, for the background and then the RMS mesh, four planes of
 * nx * ny: the mesh, its second derivatives along y (d2y), along x (d2x),
 * and the second derivatives along y of d2x (d2xy). Interpolating a natural
 * spline is linear in the data, so d2x of the column-interpolated row equals
 * the column interpolation of d2x. rows[y * nx + i] receives, for row y and
 * mesh column i, (background, its d2x, rms, its d2x), for the rows
 * y0 .. y0 + nrows - 1 of the image (row y of the image is rows' row
 * y - y0). Box centres sit at (i + 0.5) * box - 0.5. */
kernel void bkg_rows(global const float *planes, global float4 *rows, const int y0, const int nrows,
                     const int box_h, const int nx, const int ny)
{
    const int i = get_global_id(0), r = get_global_id(1);
    if (i >= nx || r >= nrows)
        return;
    const int y = y0 + r;
    int j = 0;
    float ty = 0.0f;
    if (ny > 1) {
        const float u = ((float)y + 0.5f) / (float)box_h - 0.5f;
        j = clamp((int)floor(u), 0, ny - 2);
        ty = u - (float)j;
    }
    const int j1 = ny > 1 ? j + 1 : j;
    const int k0 = j * nx + i, k1 = j1 * nx + i, np = nx * ny;
    float v[4];
    for (int map = 0; map < 2; map++) {
        global const float *mesh = planes + 4 * map * np, *d2y = mesh + np, *d2x = d2y + np, *d2xy = d2x + np;
        v[2 * map] = spline_piece(mesh[k0], mesh[k1], d2y[k0], d2y[k1], ty);
        v[2 * map + 1] = spline_piece(d2x[k0], d2x[k1], d2xy[k0], d2xy[k1], ty);
    }
    rows[r * nx + i] = (float4)(v[0], v[1], v[2], v[3]);
}

/* Both full-resolution maps at once, from bkg_rows' values: one work-item
 * per column x and band of nrows rows (consecutive work-items take
 * consecutive x, so the stores are contiguous), which works out the
 * column's mesh interval and spline weights once for the band. */
kernel void bkg_interp(global const float4 *rows, global float *bkg, global float *rms, const int w, const int h,
                       const int box_w, const int nx, const int nrows)
{
    const int x = get_global_id(0), y0 = get_global_id(1) * nrows;
    if (x >= w || y0 >= h)
        return;
    int i = 0;
    float t = 0.0f;
    if (nx > 1) {
        const float v = ((float)x + 0.5f) / (float)box_w - 0.5f;
        i = clamp((int)floor(v), 0, nx - 2);
        t = v - (float)i;
    }
    const int i1 = nx > 1 ? i + 1 : i;
    /* spline_piece's weights */
    const float a = 1.0f - t, ca = (a * a * a - a) * (1.0f / 6.0f), ct = (t * t * t - t) * (1.0f / 6.0f);
    const int y1 = min(y0 + nrows, h);
    for (int y = y0; y < y1; y++) {
        const float4 p = rows[y * nx + i], q = rows[y * nx + i1];
        const size_t k = (size_t)y * w + x;
        bkg[k] = a * p.x + t * q.x + ca * p.y + ct * q.y;
        rms[k] = a * p.z + t * q.z + ca * p.w + ct * q.w;
    }
}

/* Sources for the second pass: pixels within `grow` pixels (square) of one
 * above bkg + nsigma * rms get the DETECTED bit in mask_out. */
kernel void bkg_mask_sources(global const float *img, global const float *bkg, global const float *rms,
                             global const ushort *mask_in, const int have_mask, global ushort *mask_out,
                             const int w, const int h, const float nsigma, const int grow)
{
    const int x = get_global_id(0), y = get_global_id(1);
    if (x >= w || y >= h)
        return;
    bool source = false;
    for (int dy = -grow; dy <= grow && !source; dy++)
        for (int dx = -grow; dx <= grow; dx++) {
            const int xx = x + dx, yy = y + dy;
            if (xx < 0 || yy < 0 || xx >= w || yy >= h)
                continue;
            const int k = yy * w + xx;
            if (img[k] - bkg[k] > nsigma * rms[k]) {
                source = true;
                break;
            }
        }
    const ushort m = have_mask ? mask_in[y * w + x] : 0;
    mask_out[y * w + x] = source ? (ushort)(m | CLRED_MASK_DETECTED) : m;
}

/* count += the pixels of mask (n of them) with any of bits set. A
 * grid-stride loop and one atomic per work-item: the host reads one word,
 * not the mask. */
kernel void bkg_count_bits(global const ushort *mask, const uint n, const ushort bits, volatile global uint *count)
{
    uint c = 0;
    for (uint i = get_global_id(0); i < n; i += get_global_size(0))
        c += (mask[i] & bits) != 0;
    if (c)
        atomic_add(count, c);
}

/* One map x (the k-th, k >= 1) into the per-pixel running mean and sum of
 * squared deviations (Welford). Values are taken relative to the first map
 * (shift), which is exact for maps within a factor two of it (Sterbenz), so
 * the float32 mean and m2 carry errors of the order of the spread, not of
 * the level. NaN anywhere makes the pixel NaN. */
kernel void bkg_welford(global const float *x, global float *shift, global float *mean, global float *m2,
                        const int k, const uint n)
{
    const size_t i = get_global_id(0);
    if (i >= n)
        return;
    if (k == 1) {
        shift[i] = x[i];
        mean[i] = isfinite(x[i]) ? 0.0f : NAN;
        m2[i] = mean[i];
        return;
    }
    const float y = x[i] - shift[i], m = mean[i], d = y - m, mk = m + d / (float)k;
    mean[i] = mk;
    m2[i] = m2[i] + d * (y - mk);
}

/* mean = shift + mean, m2 -> population std sqrt(m2 / n). */
kernel void bkg_welford_finish(global const float *shift, global float *mean, global float *m2, const int k,
                               const uint n)
{
    const size_t i = get_global_id(0);
    if (i >= n)
        return;
    mean[i] = shift[i] + mean[i];
    const float q = m2[i];
    m2[i] = isnan(q) ? q : sqrt(fmax(q, 0.0f) / (float)k); /* fmax would drop a NaN */
}

/* out = ref - img where both are usable, else NaN: the background
 * difference a frame is matched by. */
kernel void bkg_match_diff(global const float *ref, global const ushort *ref_mask, const int ref_has_mask,
                           global const float *img, global const ushort *mask, const int has_mask,
                           const ushort ignore, global float *out, const uint n)
{
    const size_t i = get_global_id(0);
    if (i >= n)
        return;
    const float a = ref[i], b = img[i];
    const bool ok = clred_usable(a, ref_has_mask ? ref_mask[i] : (ushort)0, ignore) &&
                    clred_usable(b, has_mask ? mask[i] : (ushort)0, ignore);
    out[i] = ok ? a - b : NAN;
}

/* img += the polynomial sum_k c[k] t_k(u, v), u = 2 x / (w - 1) - 1 and
 * v likewise (0 for a single column or row), with the terms 1, u, v, u^2,
 * u v, v^2, u^3, u^2 v, u v^2, v^3 (nterms of them). */
kernel void bkg_add_poly(global float *img, const int w, const int h, constant float *c, const int nterms)
{
    const int x = get_global_id(0), y = get_global_id(1);
    if (x >= w || y >= h)
        return;
    const float u = w > 1 ? 2.0f * (float)x / (float)(w - 1) - 1.0f : 0.0f;
    const float v = h > 1 ? 2.0f * (float)y / (float)(h - 1) - 1.0f : 0.0f;
    const float t[10] = {1.0f, u, v, u * u, u * v, v * v, u * u * u, u * u * v, u * v * v, v * v * v};
    float p = 0.0f;
    for (int k = 0; k < nterms; k++)
        p += c[k] * t[k];
    img[(size_t)y * w + x] += p;
}
