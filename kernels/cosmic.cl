/* L.A.Cosmic (van Dokkum 2001) following astroscrappy's semantics. Its
 * median filters are the "median" family (median.cl), a program of their
 * own; the networks of the fine-structure median it computes here (7x7, or
 * 9 + 9 separable) are in lib_median.cl. */

#include "lib_sort.cl"
#include "lib_vec.cl"
#include "lib_store.cl"
#include "lib_median.cl"

/* ---- binary dilation of a 0/1 byte map: 3x3 square (radius 1) or the 5x5
 * square without its corners (radius 2), as astroscrappy's dilate3/dilate5.
 * Pixels off the image count as unset. VW pixels per work-item; groups that
 * reach the edge go pixel by pixel. */
inline uchar dilate_pixel(global const uchar *in, const int w, const int h, const int x, const int y,
                          const int radius)
{
    uchar hit = 0;
    for (int dy = -radius; dy <= radius; dy++)
        for (int dx = -radius; dx <= radius; dx++) {
            const int xx = x + dx, yy = y + dy;
            const bool corner = radius >= 2 && abs(dx) == radius && abs(dy) == radius;
            if (!corner && xx >= 0 && yy >= 0 && xx < w && yy < h)
                hit |= in[yy * w + xx];
        }
    return hit ? 1 : 0;
}

/* Does the group of VW pixels from (x0, y) have its whole radius-r
 * neighbourhood inside the image? */
inline bool group_inside(const int x0, const int y, const int w, const int h, const int r)
{
    return y >= r && y < h - r && x0 >= r && x0 + VW <= w - r;
}

kernel void dilate_map(global const uchar *in, global uchar *out, const int w, const int h, const int radius)
{
    const int x0 = get_global_id(0) * VW, y = get_global_id(1);
    if (x0 >= w || y >= h)
        return;
    if (!group_inside(x0, y, w, h, radius)) {
        for (int x = x0; x < min(x0 + VW, w); x++)
            out[y * w + x] = dilate_pixel(in, w, h, x, y, radius);
        return;
    }
    vecb hit = (vecb)0;
    for (int dy = -radius; dy <= radius; dy++)
        for (int dx = -radius; dx <= radius; dx++)
            if (!(radius >= 2 && abs(dx) == radius && abs(dy) == radius))
                hit |= VEC_LOAD(in + (y + dy) * w + x0 + dx);
    VSTORE_WHOLE(select((vecb)0, (vecb)1, TO_VECC(hit != (vecb)0)), out + y * w + x0);
}

/* ---- preparation: the working arrays of astroscrappy, in electrons.
 * clean = sci * gain (the sky model not yet removed), bkg = inbkg * gain,
 * var = invar * gain^2 - bkg, or clean - bkg + readnoise^2 without invar.
 * Unusable input pixels (mask bits or non-finite values) go to inmask and get
 * the background value so the medians stay finite. */
kernel void cr_prepare(global const float *sci, global const float *inbkg, global const float *invar,
                       global const ushort *inmask, global float *clean, global float *bkg, global float *var,
                       global uchar *bad, const uint n, const float gain, const float readnoise,
                       const int have_bkg, const int have_var, const int have_mask, const ushort ignore_bits)
{
    const uint i = get_global_id(0);
    if (i >= n)
        return;
    const float b = have_bkg ? inbkg[i] * gain : 0.0f;
    float c = sci[i] * gain;
    bool masked = have_mask && (inmask[i] & ignore_bits) != 0;
    float v;
    if (have_var) {
        const float iv = invar[i];
        masked = masked || !isfinite(iv);
        v = iv * gain * gain - b;
    } else {
        v = c - b + readnoise * readnoise;
    }
    if (!isfinite(c) || !isfinite(b))
        masked = true;
    if (!isfinite(c))
        c = isfinite(b) ? b : 0.0f;
    if (!isfinite(v))
        v = readnoise * readnoise;
    clean[i] = c;
    bkg[i] = isfinite(b) ? b : 0.0f;
    var[i] = v;
    bad[i] = masked ? 1 : 0;
}

/* Saturated-star cores: pixels at or above satlevel whose median-filtered
 * value exceeds satlevel / 10 (astroscrappy's update_mask). */
kernel void cr_saturated(global const float *clean, global const float *med, global uchar *sat, const uint n,
                         const float satlevel)
{
    const uint i = get_global_id(0);
    if (i < n)
        sat[i] = (clean[i] >= satlevel && med[i] > satlevel / 10.0f) ? 1 : 0;
}

/* a = a | b for byte maps; a = a - b for floats. */
kernel void map_or(global uchar *a, global const uchar *b, const uint n)
{
    const uint i = get_global_id(0);
    if (i < n)
        a[i] = (a[i] | b[i]) ? 1 : 0;
}

kernel void subtract_in_place(global float *a, global const float *b, const uint n)
{
    const uint i = get_global_id(0);
    if (i < n)
        a[i] -= b[i];
}

/* The noise map in electrons from the median-filtered variance plus the sky. */
kernel void cr_noise(global const float *medvar, global const float *bkg, global float *noise, const uint n)
{
    const uint i = get_global_id(0);
    if (i < n)
        noise[i] = sqrt(fmax(medvar[i] + bkg[i], 0.00001f));
}

/* S = L+ / (2 noise): the Laplacian of the 2x2-subsampled image with
 * negative values clipped, rebinned back to the original grid. A subsampled
 * pixel's Laplacian is 2 v - (its outer vertical neighbour) - (its outer
 * horizontal neighbour), the other two neighbours being copies of v; pixels
 * off the image count as 0 (astroscrappy's edge rule). */
kernel void cr_laplacian(global const float *clean, global const float *noise, global float *s, const int w,
                         const int h)
{
    const int x = get_global_id(0), y = get_global_id(1);
    if (x >= w || y >= h)
        return;
    const int i = y * w + x;
    const float v2 = 2.0f * clean[i];
    const float up = y > 0 ? clean[i - w] : 0.0f;
    const float down = y < h - 1 ? clean[i + w] : 0.0f;
    const float left = x > 0 ? clean[i - 1] : 0.0f;
    const float right = x < w - 1 ? clean[i + 1] : 0.0f;
    const float lplus = 0.25f * (fmax(v2 - up - left, 0.0f) + fmax(v2 - up - right, 0.0f) +
                                 fmax(v2 - down - left, 0.0f) + fmax(v2 - down - right, 0.0f));
    s[i] = lplus / (2.0f * noise[i]);
}

/* The median filter of the fine-structure image at one pixel: the 7x7 true
 * median, or (sep) the separable 9-pixel one, with the filters' border rules
 * (median_7x7 and sepmedian_9_rows/_cols above). */
inline float fine_median_at(global const float *f, const int w, const int h, const int x, const int y, const int sep)
{
    const int r = sep ? 4 : 3;
    if (x < r || y < r || x >= w - r || y >= h - r)
        return f[y * w + x];
    if (!sep) {
        float v[49];
        int k = 0;
        for (int dy = -3; dy <= 3; dy++)
            for (int dx = -3; dx <= 3; dx++)
                v[k++] = f[(y + dy) * w + x + dx];
        MEDIAN49_NETWORK(v);
        return v[MEDIAN49_AT];
    }
    float col[9];
    for (int dy = -4; dy <= 4; dy++) {
        float row[9];
        for (int dx = -4; dx <= 4; dx++)
            row[dx + 4] = f[(y + dy) * w + x + dx];
        MEDIAN9_NETWORK(row);
        col[dy + 4] = row[MEDIAN9_AT];
    }
    MEDIAN9_NETWORK(col);
    return col[MEDIAN9_AT];
}

/* Candidates: S' = S - med(S) above sigclip, not masked, and contrast
 * S' / F above objlim, with F = (med3 - med7(med3)) / noise clipped at 0.01
 * (separable medians: med5 and med9). sp receives S' for the growth steps.
 * med7(med3) is needed only where the first two hold (a few pixels in a
 * hundred), so it is taken there and nowhere else: its full-image pass was
 * the costliest filter of an iteration. */
kernel void cr_candidates(global const float *s, global const float *meds, global const float *f,
                          global const float *noise, global const uchar *bad, global float *sp, global uchar *cand,
                          const int w, const int h, const float sigclip, const float objlim, const int sep)
{
    const int x = get_global_id(0), y = get_global_id(1);
    if (x >= w || y >= h)
        return;
    const int i = y * w + x;
    const float spv = s[i] - meds[i];
    sp[i] = spv;
    uchar c = 0;
    if (spv > sigclip && !bad[i]) {
        const float fine = fmax((f[i] - fine_median_at(f, w, h, x, y, sep)) / noise[i], 0.01f);
        c = spv / fine > objlim ? 1 : 0;
    }
    cand[i] = c;
}

/* One growth step: out = dilate3(in) & !bad & S' > limit. With final set,
 * the result is also or-ed into the cosmic-ray map and counted: count[0]
 * counts the pixels flagged in this step, count[1] those newly set in the
 * map, so over a run count[1] is the number of pixels the map holds. */
kernel void cr_grow(global const uchar *in, global const float *sp, global const uchar *bad, global uchar *out,
                    global uchar *crmask, volatile global uint *count, const int w, const int h, const float limit,
                    const int final)
{
    const int x0 = get_global_id(0) * VW, y = get_global_id(1);
    if (x0 >= w || y >= h)
        return;
    const int i0 = y * w + x0;
    if (!group_inside(x0, y, w, h, 1)) {
        for (int x = x0; x < min(x0 + VW, w); x++) {
            const int i = y * w + x;
            out[i] = (dilate_pixel(in, w, h, x, y, 1) && !bad[i] && sp[i] > limit) ? 1 : 0;
        }
    } else {
        vecb hit = (vecb)0;
        for (int dy = -1; dy <= 1; dy++)
            for (int dx = -1; dx <= 1; dx++)
                hit |= VEC_LOAD(in + (y + dy) * w + x0 + dx);
        const vecc keep = TO_VECC(hit != (vecb)0) & TO_VECC(VEC_LOAD(bad + i0) == (vecb)0) &
                          TO_VECC(VEC_LOAD(sp + i0) > limit);
        VSTORE_WHOLE(select((vecb)0, (vecb)1, keep), out + i0);
    }
    if (final)
        for (int i = i0; i < min(x0 + VW, w) + y * w; i++)
            if (out[i]) {
                if (!crmask[i])
                    atomic_inc(count + 1);
                crmask[i] = 1;
                atomic_inc(count);
            }
}

kernel void cr_good_histogram(global const float *plane, global const uchar *bad, const uint n, const uint prefix,
                              const uint prefix_mask, const uint shift, global uint *hist, local uint *lhist)
{
    const uint lid = get_local_id(0), lsize = get_local_size(0);
    for (uint b = lid; b < 256; b += lsize)
        lhist[b] = 0;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint i = get_global_id(0); i < n; i += get_global_size(0)) {
        const float v = plane[i];
        if (bad[i] || !isfinite(v))
            continue;
        const uint key = clred_float_key(v);
        if ((key & prefix_mask) == prefix)
            atomic_inc(&lhist[(key >> shift) & 255u]);
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint b = lid; b < 256; b += lsize) {
        const uint c = lhist[b];
        if (c)
            atomic_add(&hist[b], c);
    }
}

/* Repairs flagged pixels in place with the median of the 5x5 neighbours that
 * are neither flagged nor bad (astroscrappy's 'medmask'); fill when none is.
 * Only unflagged pixels are read, so repairing in place is safe. The median
 * of an even count is the lower middle value, as astroscrappy's. */
kernel void clean_medmask(global float *a, global const uchar *flag, global const uchar *bad, const int w,
                          const int h, const float fill)
{
    const int x = get_global_id(0), y = get_global_id(1);
    if (x >= w || y >= h || !flag[y * w + x])
        return;
    float v[25];
    int n = 0;
    for (int dy = -2; dy <= 2; dy++)
        for (int dx = -2; dx <= 2; dx++) {
            const int xx = x + dx, yy = y + dy;
            if (xx < 0 || yy < 0 || xx >= w || yy >= h)
                continue;
            const int j = yy * w + xx;
            if (flag[j] || bad[j])
                continue;
            /* kept sorted as they come; only flagged pixels pay for it */
            clred_insert_sorted(v, n++, a[j]);
        }
    a[y * w + x] = n == 0 ? fill : v[(n - 1) / 2];
}

/* Final output in ADU, (clean + bkg) / gain, written only where a cosmic ray
 * was repaired: every other pixel keeps its input value bit for bit. With a
 * variance plane (have_var), a repaired pixel's variance becomes the cleaned
 * noise model's, (var + bkg) / gain^2, in ADU^2. */
kernel void cr_finish(global const float *clean, global const float *bkg, global const float *var,
                      global const uchar *crmask, global float *sci, global float *sci_var, global ushort *mask,
                      const uint n, const float gain, const ushort bits, const int have_var)
{
    const uint i = get_global_id(0);
    if (i < n && crmask[i]) {
        sci[i] = (clean[i] + bkg[i]) / gain;
        if (have_var)
            sci_var[i] = fmax(var[i] + bkg[i], 0.0f) / (gain * gain);
        mask[i] |= bits;
    }
}
