/* CCD calibration: per-row overscan estimates and the fused science kernel.
 *
 * The fused kernel reads the untrimmed raw frame once and writes the trimmed
 * SCI, VAR and MASK planes: saturation is judged on the raw value before any
 * arithmetic, then overscan, bias, dark * t and flat are applied and the
 * variance is propagated, so no intermediate frame ever exists. */

#include "lib_sort.cl"

/* Which optional inputs the fused kernel has; the host (host/calibrate.h)
 * uses the same values. Flags rather than -D variants: one compiled program
 * serves every combination of masters. */
#define CAL_OVERSCAN  0x0001u
#define CAL_BIAS      0x0002u
#define CAL_BIAS_VAR  0x0004u
#define CAL_BIAS_MASK 0x0008u
#define CAL_DARK      0x0010u
#define CAL_DARK_VAR  0x0020u
#define CAL_DARK_MASK 0x0040u
#define CAL_FLAT      0x0080u
#define CAL_FLAT_VAR  0x0100u
#define CAL_FLAT_MASK 0x0200u
#define CAL_BPM       0x0400u
#define CAL_POISSON   0x0800u /* add the photon noise of the signal (not for bias frames) */

/* Overscans wider than this are refused by the host: the per-row median sorts
 * the row's overscan values in private memory. */
#define OVERSCAN_MAX 256

/* Median of the finite values of one row of the overscan columns [bx0, bx1)
 * (NaN when none is finite), for rows [by0, by1). One work-item per row. */
kernel void overscan_row_median(global const float *raw, const uint raw_width, const uint bx0, const uint bx1,
                                const uint by0, const uint by1, global float *out)
{
    uint y = by0 + (uint)get_global_id(0);
    if (y >= by1)
        return;
    float v[OVERSCAN_MAX];
    uint n = 0;
    global const float *row = raw + (size_t)y * raw_width;
    for (uint x = bx0; x < bx1 && n < OVERSCAN_MAX; x++) {
        float a = row[x];
        if (!isfinite(a))
            continue;
        clred_insert_sorted(v, (int)n++, a);
    }
    float m = NAN;
    if (n > 0)
        m = (n & 1u) ? v[n / 2] : (float)(0.5 * ((acc_t)v[n / 2 - 1] + (acc_t)v[n / 2]));
    out[y] = m;
}

/* Per-row count, sum and sum of squares (about `centre`, for accuracy in
 * float) of the finite overscan values within [lo, hi], for one iteration of
 * the sigma-clipped mean of the whole overscan; the host adds the rows. */
kernel void overscan_row_sums(global const float *raw, const uint raw_width, const uint bx0, const uint bx1,
                              const uint by0, const uint by1, const float lo, const float hi, const float centre,
                              global acc_t *out)
{
    uint i = (uint)get_global_id(0);
    uint y = by0 + i;
    if (y >= by1)
        return;
    global const float *row = raw + (size_t)y * raw_width;
    acc_t n = 0, s = 0, s2 = 0;
    for (uint x = bx0; x < bx1; x++) {
        float a = row[x];
        if (isfinite(a) && a >= lo && a <= hi) {
            acc_t d = (acc_t)a - (acc_t)centre;
            n += 1;
            s += d;
            s2 += d * d;
        }
    }
    out[3 * i] = n;
    out[3 * i + 1] = s;
    out[3 * i + 2] = s2;
}

/* The fused calibration of one frame, one work-item per output pixel:
 *   signal = raw - overscan[row] - bias - dark * t                  (ADU)
 *   var_s  = (max(signal, 0) * gain + readnoise^2) / gain^2
 *            + var_bias + t^2 * var_dark                            (ADU^2)
 *   sci    = signal / flat
 *   var    = var_s / flat^2 + sci^2 * var_flat / flat^2
 * then sci *= out_scale and var *= out_scale^2 (electrons, or per second).
 * Mask: SATURATED from the raw value, the masters' masks OR'd, BAD from the
 * bad-pixel map, NO_DATA (and NaN sci/var) where anything is not finite or
 * the flat is not positive. */
kernel void calibrate_frame(global const float *raw, const uint raw_width, global const float *overscan,
                            const uint x0, const uint y0, const uint width, const uint height,
                            global const float *bias, global const float *bias_var, global const ushort *bias_mask,
                            global const float *dark, global const float *dark_var, global const ushort *dark_mask,
                            global const float *flat, global const float *flat_var, global const ushort *flat_mask,
                            global const ushort *bpm, const uint have, const float gain, const float readnoise2,
                            const float dark_t, const float saturation, const float out_scale, global float *sci,
                            global float *var, global ushort *mask)
{
    uint x = (uint)get_global_id(0), y = (uint)get_global_id(1);
    if (x >= width || y >= height)
        return;
    size_t i = (size_t)y * width + x;
    float r = raw[(size_t)(y0 + y) * raw_width + (x0 + x)];
    ushort m = 0;
    if (saturation > 0.0f && r >= saturation)
        m |= CLRED_MASK_SATURATED;

    acc_t s = (acc_t)r;
    acc_t v_masters = 0;
    if (have & CAL_OVERSCAN)
        s -= (acc_t)overscan[y0 + y];
    if (have & CAL_BIAS) {
        s -= (acc_t)bias[i];
        if (have & CAL_BIAS_VAR)
            v_masters += (acc_t)bias_var[i];
        if (have & CAL_BIAS_MASK)
            m |= bias_mask[i];
    }
    if (have & CAL_DARK) {
        acc_t t = (acc_t)dark_t;
        s -= (acc_t)dark[i] * t;
        if (have & CAL_DARK_VAR)
            v_masters += t * t * (acc_t)dark_var[i];
        if (have & CAL_DARK_MASK)
            m |= dark_mask[i];
    }
    acc_t g = (acc_t)gain;
    acc_t poisson = (have & CAL_POISSON) ? fmax(s, (acc_t)0) * g : (acc_t)0;
    acc_t v = (poisson + (acc_t)readnoise2) / (g * g) + v_masters;
    if (have & CAL_FLAT) {
        acc_t f = (acc_t)flat[i];
        if (have & CAL_FLAT_MASK)
            m |= flat_mask[i];
        if (!(f > 0))
            m |= CLRED_MASK_NO_DATA;
        s /= f;
        acc_t rel = (have & CAL_FLAT_VAR) ? (acc_t)flat_var[i] / (f * f) : (acc_t)0;
        v = v / (f * f) + s * s * rel;
    }
    if (have & CAL_BPM) {
        if (bpm[i])
            m |= CLRED_MASK_BAD;
    }
    acc_t k = (acc_t)out_scale;
    s *= k;
    v *= k * k;
    if (!isfinite(s) || !isfinite(v))
        m |= CLRED_MASK_NO_DATA;
    if (m & CLRED_MASK_NO_DATA) {
        sci[i] = NAN;
        var[i] = NAN;
    } else {
        sci[i] = (float)s;
        var[i] = (float)v;
    }
    mask[i] = m;
}

/* The floor of a master flat: pixels below floor (the smallest float not
 * below the requested floor, so a float comparison decides as the double one
 * would), not finite, or already NO_DATA become NaN with NO_DATA; count
 * receives how many. */
kernel void flat_floor(global float *sci, global float *var, global ushort *mask, const float floor_value,
                       const uint n, volatile global uint *count)
{
    size_t i = get_global_id(0);
    if (i >= n)
        return;
    if (!(sci[i] >= floor_value) || (mask[i] & CLRED_MASK_NO_DATA)) {
        sci[i] = NAN;
        var[i] = NAN;
        mask[i] |= CLRED_MASK_NO_DATA;
        atomic_inc(count);
    }
}
