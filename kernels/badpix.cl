/* Bad-pixel maps (hot, cold, saturated, bleed trails) and the infill of
 * masked pixels. The local median comes from kernels/cosmic.cl. */

#include "lib_sort.cl"

/* BAD where the residual from the local median leaves [-cold, +hot] (or the
 * value is not finite), SATURATED at or above the saturation level (<= 0:
 * none). counts: hot, cold, saturated. */
kernel void badpix_classify(global const float *img, global const float *med, global ushort *mask, const uint n,
                            const float hot, const float cold, const float saturation, volatile global uint *counts)
{
    const uint i = get_global_id(0);
    if (i >= n)
        return;
    const float v = img[i];
    ushort m = mask[i];
    if (!isfinite(v)) {
        m |= CLRED_MASK_BAD;
    } else {
        const float r = v - med[i];
        if (r > hot) {
            m |= CLRED_MASK_BAD;
            atomic_inc(&counts[0]);
        } else if (r < -cold) {
            m |= CLRED_MASK_BAD;
            atomic_inc(&counts[1]);
        }
        if (saturation > 0.0f && v >= saturation) {
            m |= CLRED_MASK_SATURATED;
            atomic_inc(&counts[2]);
        }
    }
    mask[i] = m;
}

/* Bleed trails: one work-item per column. From every saturated pixel the
 * trail runs up and down the column while values stay at or above level;
 * trail pixels get SATURATED. counts[3] counts the pixels added. */
kernel void badpix_bleed(global const float *img, global ushort *mask, const int w, const int h, const float level,
                         volatile global uint *counts)
{
    const int x = get_global_id(0);
    if (x >= w)
        return;
    /* upward sweep, then downward: a pixel joins if its neighbour along the
     * sweep is saturated (originally or as trail) and it is above level */
    for (int pass = 0; pass < 2; pass++) {
        const int start = pass == 0 ? 1 : h - 2, step = pass == 0 ? 1 : -1;
        for (int y = start; y >= 0 && y < h; y += step) {
            const int i = y * w + x, prev = (y - step) * w + x;
            if ((mask[prev] & CLRED_MASK_SATURATED) && !(mask[i] & CLRED_MASK_SATURATED) && img[i] >= level) {
                mask[i] |= CLRED_MASK_SATURATED;
                atomic_inc(&counts[3]);
            }
        }
    }
}

inline bool infill_usable(global const float *img, global const ushort *mask, const int i, const ushort bits)
{
    return isfinite(img[i]) && (mask[i] & bits) == 0;
}

/* Median of the usable pixels in the 5x5 window, else the 7x7 one; else the
 * mean of the usable pixels within 15x15; else unchanged. Flagged pixels are
 * written to out (a copy of img) and get INTERPOLATED in mask_out. */
kernel void infill_median(global const float *img, global const ushort *mask, global float *out,
                          global ushort *mask_out, const int w, const int h, const ushort bits,
                          volatile global uint *filled)
{
    const int x = get_global_id(0), y = get_global_id(1);
    if (x >= w || y >= h)
        return;
    const int i = y * w + x;
    if (infill_usable(img, mask, i, bits))
        return;
    float v[49];
    for (int r = 2; r <= 3; r++) {
        int n = 0;
        for (int dy = -r; dy <= r; dy++)
            for (int dx = -r; dx <= r; dx++) {
                const int xx = x + dx, yy = y + dy;
                if (xx < 0 || yy < 0 || xx >= w || yy >= h || !infill_usable(img, mask, yy * w + xx, bits))
                    continue;
                clred_insert_sorted(v, n++, img[yy * w + xx]);
            }
        if (n > 0) {
            out[i] = clred_median_sorted(v, n);
            mask_out[i] = mask[i] | CLRED_MASK_INTERPOLATED;
            atomic_inc(filled);
            return;
        }
    }
    acc_t sum = 0;
    int n = 0;
    for (int dy = -7; dy <= 7; dy++)
        for (int dx = -7; dx <= 7; dx++) {
            const int xx = x + dx, yy = y + dy;
            if (xx >= 0 && yy >= 0 && xx < w && yy < h && infill_usable(img, mask, yy * w + xx, bits)) {
                sum += (acc_t)img[yy * w + xx];
                n++;
            }
        }
    if (n > 0) {
        out[i] = (float)(sum / (acc_t)n);
        mask_out[i] = mask[i] | CLRED_MASK_INTERPOLATED;
        atomic_inc(filled);
    }
}

/* Linear interpolation between the nearest usable pixels along the row
 * (along_cols = 0) or the column (1); with one side only, its value. */
kernel void infill_linear(global const float *img, global const ushort *mask, global float *out,
                          global ushort *mask_out, const int w, const int h, const ushort bits, const int along_cols,
                          volatile global uint *filled)
{
    const int x = get_global_id(0), y = get_global_id(1);
    if (x >= w || y >= h)
        return;
    const int i = y * w + x;
    if (infill_usable(img, mask, i, bits))
        return;
    const int pos = along_cols ? y : x, len = along_cols ? h : w, stride = along_cols ? w : 1;
    const int base = i - pos * stride;
    int lo = pos - 1, hi = pos + 1;
    while (lo >= 0 && !infill_usable(img, mask, base + lo * stride, bits))
        lo--;
    while (hi < len && !infill_usable(img, mask, base + hi * stride, bits))
        hi++;
    float value;
    if (lo >= 0 && hi < len) {
        const float a = img[base + lo * stride], b = img[base + hi * stride];
        value = a + (b - a) * (float)(pos - lo) / (float)(hi - lo);
    } else if (lo >= 0) {
        value = img[base + lo * stride];
    } else if (hi < len) {
        value = img[base + hi * stride];
    } else {
        return;
    }
    out[i] = value;
    mask_out[i] = mask[i] | CLRED_MASK_INTERPOLATED;
    atomic_inc(filled);
}

/* The residuals img - med, whose spread the host measures: computed here so
 * that the frame itself need not come back. */
kernel void badpix_residual(global const float *img, global const float *med, global float *res, const uint n)
{
    const uint i = get_global_id(0);
    if (i < n)
        res[i] = img[i] - med[i];
}

/* Median of the finite values in the (2r+1)^2 window, cut at the image's
 * edges so border pixels are judged too (r <= 3). NaN where none is finite. */
kernel void badpix_local_median(global const float *img, global float *med, const int w, const int h, const int r)
{
    const int x = get_global_id(0), y = get_global_id(1);
    if (x >= w || y >= h)
        return;
    float v[49];
    int n = 0;
    for (int dy = -r; dy <= r; dy++)
        for (int dx = -r; dx <= r; dx++) {
            const int xx = x + dx, yy = y + dy;
            if (xx < 0 || yy < 0 || xx >= w || yy >= h)
                continue;
            const float val = img[yy * w + xx];
            if (isfinite(val))
                clred_insert_sorted(v, n++, val);
        }
    med[y * w + x] = n == 0 ? NAN : clred_median_sorted(v, n);
}
