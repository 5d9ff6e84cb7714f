/* Aperture photometry with exact circle/pixel overlap, one work-item per position. */

/* must equal CLRED_SRC_* in include/clred.h */
#define SRC_EDGE 0x02u
#define SRC_MASKED 0x04u
#define SRC_NO_BACKGROUND 0x20u

/* Integral of sqrt(r^2 - t^2) over [u, v] within [-r, r]: half of
 * (v h(v) - u h(u) + r^2 (asin(v/r) - asin(u/r))). The angle difference is
 * taken with one atan2 of the two points' vectors, and h = sqrt((r-t)(r+t)),
 * so neither the asin near +-1 nor r^2 times a large angle loses precision
 * where the chord is short. */
inline acc_t disc_strip(acc_t u, acc_t v, acc_t r)
{
    acc_t hu = sqrt(fmax((r - u) * (r + u), (acc_t)0)), hv = sqrt(fmax((r - v) * (r + v), (acc_t)0));
    acc_t dtheta = atan2(v * hu - u * hv, u * v + hu * hv);
    return 0.5 * (v * hv - u * hu + r * r * dtheta);
}

/* Exact area of the disc of radius r about the origin inside [x0, x1] x [y0, y1].
 * The area is the integral over x of max(0, min(y1, h) - max(y0, -h)) with
 * h = sqrt(r^2 - x^2). Between the x where h or -h crosses y0 or y1 the
 * integrand keeps one form (a constant or +-h), so splitting there and using
 * the primitive of h integrates it exactly. */
inline acc_t disc_rect_overlap(acc_t x0, acc_t x1, acc_t y0, acc_t y1, acc_t r)
{
    acc_t a = fmax(x0, -r), b = fmin(x1, r);
    if (a >= b || y0 >= r || y1 <= -r)
        return 0;
    acc_t pts[6];
    int np = 0;
    pts[np++] = a;
    acc_t ys[2] = {y0, y1};
    for (int k = 0; k < 2; k++)
        if (fabs(ys[k]) < r) {
            acc_t xb = sqrt((r - ys[k]) * (r + ys[k]));
            if (-xb > a && -xb < b)
                pts[np++] = -xb;
            if (xb > a && xb < b)
                pts[np++] = xb;
        }
    pts[np++] = b;
    for (int i = 1; i < np; i++) { /* insertion sort of at most 6 values */
        acc_t v = pts[i];
        int j = i - 1;
        while (j >= 0 && pts[j] > v) {
            pts[j + 1] = pts[j];
            j--;
        }
        pts[j + 1] = v;
    }
    acc_t area = 0;
    for (int i = 0; i + 1 < np; i++) {
        acc_t u = pts[i], v = pts[i + 1];
        if (v <= u)
            continue;
        acc_t m = 0.5 * (u + v);
        acc_t hm = sqrt(fmax((r - m) * (r + m), (acc_t)0));
        if (fmin(y1, hm) <= fmax(y0, -hm))
            continue;
        acc_t ph = disc_strip(u, v, r);
        acc_t top = (y1 < hm) ? y1 * (v - u) : ph;
        acc_t bottom = (y0 > -hm) ? y0 * (v - u) : -ph;
        area += top - bottom;
    }
    return area;
}

/* Overlap of a circle of radius r with a pixel square whose lower-left
 * corner is (dx0, dy0) relative to the circle's centre. Pixels wholly inside
 * or outside skip the exact computation. */
inline acc_t pixel_weight_rel(acc_t dx0, acc_t dy0, acc_t r)
{
    acc_t dx1 = dx0 + 1.0, dy1 = dy0 + 1.0;
    acc_t fx = fmax(fabs(dx0), fabs(dx1)), fy = fmax(fabs(dy0), fabs(dy1));
    if (fx * fx + fy * fy <= r * r)
        return 1;
    acc_t nx = (dx0 > 0) ? dx0 : (dx1 < 0 ? -dx1 : 0);
    acc_t ny = (dy0 > 0) ? dy0 : (dy1 < 0 ? -dy1 : 0);
    if (nx * nx + ny * ny >= r * r)
        return 0;
    return disc_rect_overlap(dx0, dx1, dy0, dy1, r);
}

/* Overlap of the circle (cx, cy, r) with pixel (px, py), whose square is
 * [px - 0.5, px + 0.5] x [py - 0.5, py + 0.5]. */
inline acc_t pixel_weight(acc_t cx, acc_t cy, acc_t r, int px, int py)
{
    return pixel_weight_rel((acc_t)px - 0.5 - cx, (acc_t)py - 0.5 - cy, r);
}

/* Weights of one circle over a w x h grid: tests the geometry against references. */
kernel void circle_weights(const float cx, const float cy, const float r, const int w, const int h,
                           global float *out)
{
    int x = get_global_id(0), y = get_global_id(1);
    if (x < w && y < h)
        out[(size_t)y * w + x] = (float)pixel_weight(cx, cy, r, x, y);
}

/* Shell sort of n floats in place (gaps 1, 4, 13, 40, ...). */
inline void sort_floats(global float *v, int n)
{
    int gap = 1;
    while (gap < n / 3)
        gap = 3 * gap + 1;
    for (; gap > 0; gap /= 3)
        for (int i = gap; i < n; i++) {
            float t = v[i];
            int j = i;
            while (j >= gap && v[j - gap] > t) {
                v[j] = v[j - gap];
                j -= gap;
            }
            v[j] = t;
        }
}

/* Output layout per position (floats). */
#define P_FLUX 0
#define P_ERR 1
#define P_AREA 2
#define P_BKG 3
#define P_BKGRMS 4
#define P_NANN 5
#define P_FLAGS 6
#define P_NOUT 7

/* The local background of one position (annulus pixel centres with
 * rin <= d <= rout, d measured from ix + fx, iy + fy): its usable pixels are
 * gathered into ann (stride floats), sorted, and clipped about the median
 * with the population std (as astropy's sigma_clip): on a sorted array the
 * kept values are a contiguous window, so clipping only moves its ends.
 * Returns how many were kept (bkg NaN, SRC_NO_BACKGROUND where fewer than
 * 5); SRC_EDGE where the annulus leaves the image, whose edges are given
 * relative to the position's integer part. */
inline int annulus_background(global const float *sci, global const ushort *mask, const int has_mask,
                              const ushort ignore, const int w, const int h, const int ix, const int iy,
                              const acc_t fx, const acc_t fy, const acc_t left, const acc_t right,
                              const acc_t bottom, const acc_t top, const float rin, const float rout,
                              const float clip_sigma, const int clip_iters, global float *ann, const uint stride,
                              acc_t *bkg_out, acc_t *rms_out, uint *flags)
{
    int m = 0;
    if (fx - rout < left || fy - rout < bottom || fx + rout > right || fy + rout > top)
        *flags |= SRC_EDGE;
    int x0 = max(ix + (int)floor(fx - rout), 0), x1 = min(ix + (int)ceil(fx + rout), w - 1);
    int y0 = max(iy + (int)floor(fy - rout), 0), y1 = min(iy + (int)ceil(fy + rout), h - 1);
    acc_t r2in = (acc_t)rin * rin, r2out = (acc_t)rout * rout;
    for (int y = y0; y <= y1; y++) {
        const acc_t dy = (acc_t)(y - iy) - fy;
        for (int x = x0; x <= x1; x++) {
            acc_t dx = (acc_t)(x - ix) - fx, d2 = dx * dx + dy * dy;
            if (d2 < r2in || d2 > r2out || m >= (int)stride)
                continue;
            size_t i = (size_t)y * w + x;
            if (clred_usable(sci[i], has_mask ? mask[i] : (ushort)0, ignore))
                ann[m++] = sci[i];
        }
    }
    sort_floats(ann, m);
    int lo = 0, hi = m;
    acc_t med = NAN, sd = NAN;
    for (int it = 0; it <= clip_iters && hi - lo >= 1; it++) {
        int k = hi - lo;
        med = 0.5 * ((acc_t)ann[lo + (k - 1) / 2] + (acc_t)ann[lo + k / 2]);
        acc_t s = 0, s2 = 0;
        for (int i = lo; i < hi; i++)
            s += ann[i];
        acc_t mean = s / k;
        for (int i = lo; i < hi; i++)
            s2 += (ann[i] - mean) * (ann[i] - mean);
        sd = sqrt(s2 / k);
        if (it == clip_iters)
            break;
        int nlo = lo, nhi = hi;
        while (nlo < nhi && ann[nlo] < med - clip_sigma * sd)
            nlo++;
        while (nhi > nlo && ann[nhi - 1] > med + clip_sigma * sd)
            nhi--;
        if ((nlo == lo && nhi == hi) || nhi - nlo < 3)
            break;
        lo = nlo;
        hi = nhi;
    }
    int nkept = hi - lo;
    if (nkept < 5) {
        *flags |= SRC_NO_BACKGROUND;
        *bkg_out = NAN;
    } else {
        *bkg_out = med;
        *rms_out = sd;
    }
    return nkept;
}

/* The arguments of both photometry kernels (aperture_background leaves the
 * aperture's unused: one host path runs either). */
#define PHOT_ARGS                                                                                            \
    global const float *sci, global const float *var, const int has_var, global const ushort *mask,          \
        const int has_mask, const ushort ignore, const int w, const int h, global const int2 *ipos,          \
        global const float2 *fpos, const uint n, const float radius, const float rin, const float rout,      \
        const float clip_sigma, const int clip_iters, const float noise_rms, global float *scratch,          \
        const uint stride, global float *out

/* Position id's integer part and fraction, or 0 (and an unmeasured result,
 * SRC_EDGE, in o) for a position that is not finite. */
inline int phot_position(global const int2 *ipos, global const float2 *fpos, const uint id, global float *o,
                         int *ix, int *iy, acc_t *fx, acc_t *fy)
{
    *ix = ipos[id].x;
    *iy = ipos[id].y;
    *fx = fpos[id].x;
    *fy = fpos[id].y;
    if (isfinite(*fx) && isfinite(*fy))
        return 1;
    for (int k = 0; k < P_NOUT; k++)
        o[k] = NAN;
    o[P_NANN] = 0;
    o[P_FLAGS] = (float)SRC_EDGE;
    return 0;
}

/* One work-item per position. A position arrives as its integer part ipos
 * and fraction fpos (in [0, 1), or NaN for none), so that pixel offsets
 * (x - ipos) - fpos keep the position's full precision in float as well as
 * double: the pixels whose centres fall in the annulus, and the overlaps,
 * are those of the exact position. The local background is
 * annulus_background's; the aperture then loops over its bounding box with
 * exact weights. */
kernel void aperture_photometry(PHOT_ARGS)
{
    uint id = get_global_id(0);
    if (id >= n)
        return;
    global float *o = out + (size_t)id * P_NOUT;
    int ix, iy;
    acc_t fx, fy;
    if (!phot_position(ipos, fpos, id, o, &ix, &iy, &fx, &fy))
        return;
    uint flags = 0;
    /* the image's edges relative to the position's integer part */
    const acc_t left = (acc_t)-0.5 - ix, right = (acc_t)(w - 0.5) - ix;
    const acc_t bottom = (acc_t)-0.5 - iy, top = (acc_t)(h - 0.5) - iy;

    /* local background */
    acc_t bkg = 0, bkg_rms = NAN;
    int nkept = 0;
    if (rout > rin)
        nkept = annulus_background(sci, mask, has_mask, ignore, w, h, ix, iy, fx, fy, left, right, bottom, top, rin,
                                   rout, clip_sigma, clip_iters, scratch + (size_t)id * stride, stride, &bkg,
                                   &bkg_rms, &flags);

    /* aperture */
    const acc_t r = radius;
    if (fx - r < left || fy - r < bottom || fx + r > right || fy + r > top)
        flags |= SRC_EDGE;
    int x0 = max(ix + (int)floor(fx - r), 0), x1 = min(ix + (int)ceil(fx + r), w - 1);
    int y0 = max(iy + (int)floor(fy - r), 0), y1 = min(iy + (int)ceil(fy + r), h - 1);
    acc_t sum = 0, err2 = 0, area = 0;
    /* no variance plane: the annulus scatter, else the caller's noise (NaN errors when neither) */
    acc_t fallback_var = !isnan(bkg_rms) ? bkg_rms * bkg_rms
                         : noise_rms > 0 ? (acc_t)noise_rms * noise_rms : (acc_t)NAN;
    for (int y = y0; y <= y1; y++) {
        const acc_t dy0 = (acc_t)(y - iy) - 0.5 - fy;
        for (int x = x0; x <= x1; x++) {
            acc_t wt = pixel_weight_rel((acc_t)(x - ix) - 0.5 - fx, dy0, r);
            if (wt <= 0)
                continue;
            size_t i = (size_t)y * w + x;
            acc_t v = sci[i];
            acc_t pv = has_var ? (acc_t)var[i] : fallback_var;
            if (!clred_usable(sci[i], has_mask ? mask[i] : (ushort)0, ignore) || (has_var && !isfinite(pv))) {
                flags |= SRC_MASKED;
                continue;
            }
            sum += wt * v;
            err2 += wt * wt * pv;
            area += wt;
        }
    }
    acc_t flux = area > 0 ? sum - area * bkg : (acc_t)NAN;
    if (nkept > 0 && !isnan(bkg_rms))
        err2 += area * area * (M_PI_F / 2) * bkg_rms * bkg_rms / nkept;
    o[P_FLUX] = (float)flux;
    o[P_ERR] = (float)sqrt(err2);
    o[P_AREA] = (float)area;
    o[P_BKG] = (float)bkg;
    o[P_BKGRMS] = (float)bkg_rms;
    o[P_NANN] = (float)nkept;
    o[P_FLAGS] = (float)flags;
}

/* aperture_photometry's local background alone (flux, error and area NaN;
 * flags SRC_EDGE of the annulus and SRC_NO_BACKGROUND): the sky noise of
 * blank discs (annulus 0..rout) in frame quality, whose first run then
 * compiles a work-group function of half the size (0.07 against 0.16 CPU s
 * with one work-item per group, 0.31 for aperture_photometry in groups of 8). */
kernel void aperture_background(PHOT_ARGS)
{
    uint id = get_global_id(0);
    if (id >= n)
        return;
    global float *o = out + (size_t)id * P_NOUT;
    int ix, iy;
    acc_t fx, fy;
    if (!phot_position(ipos, fpos, id, o, &ix, &iy, &fx, &fy))
        return;
    uint flags = 0;
    acc_t bkg = NAN, bkg_rms = NAN;
    int nkept = 0;
    if (rout > rin)
        nkept = annulus_background(sci, mask, has_mask, ignore, w, h, ix, iy, fx, fy, (acc_t)-0.5 - ix,
                                   (acc_t)(w - 0.5) - ix, (acc_t)-0.5 - iy, (acc_t)(h - 0.5) - iy, rin, rout,
                                   clip_sigma, clip_iters, scratch + (size_t)id * stride, stride, &bkg, &bkg_rms,
                                   &flags);
    o[P_FLUX] = o[P_ERR] = o[P_AREA] = NAN;
    o[P_BKG] = (float)bkg;
    o[P_BKGRMS] = (float)bkg_rms;
    o[P_NANN] = (float)nkept;
    o[P_FLAGS] = (float)flags;
}
