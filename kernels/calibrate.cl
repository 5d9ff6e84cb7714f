/* CCD calibration: per-row overscan estimates and the fused science kernel.
 *
 * The fused kernel reads the untrimmed raw frame once and writes the trimmed
 * SCI, VAR and MASK planes: saturation is judged on the raw value before any
 * arithmetic, then overscan, bias, dark * t and flat are applied and the
 * variance is propagated, so no intermediate frame ever exists. */

#include "lib_sort.cl"
#include "lib_vec.cl"
#include "lib_store.cl"

/* CLRED_WHOLE_LINES: the fused kernel streams whole rows, so VW is the
 * context's line width (a cache line's floats on a CPU: host/rt/runtime.c),
 * and the host launches it with clred_line_groups. */

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
#define CAL_SCI_ONLY  0x1000u /* write SCI alone (var and mask may be NULL); its bits as with them */

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

/* The fused calibration of one frame:
 *   signal = raw - overscan[row] - bias - dark * t                  (ADU)
 *   var_s  = (max(signal, 0) * gain + readnoise^2) / gain^2
 *            + var_bias + t^2 * var_dark                            (ADU^2)
 *   sci    = signal / flat
 *   var    = var_s / flat^2 + sci^2 * var_flat / flat^2
 * then sci *= out_scale and var *= out_scale^2 (electrons, or per second).
 * Mask: SATURATED from the raw value, the masters' masks OR'd, BAD from the
 * bad-pixel map, NO_DATA (and NaN sci/var) where anything is not finite or
 * the flat is not positive.
 *
 * In float: a handful of operations on values of magnitude M keep the error
 * within a few float roundings of M, inside the tested 1e-6 M (double would
 * halve the SIMD lanes of a CPU and cost a GPU far more). A work-item takes
 * VW pixels of a row (kernels/lib_vec.cl); the tail of a row goes pixel by
 * pixel through the same arithmetic instantiated for one lane. */

#define CAL_MASTER_ARGS                                                                                     \
    global const float *bias, global const float *bias_var, global const ushort *bias_mask,                 \
        global const float *dark, global const float *dark_var, global const ushort *dark_mask,             \
        global const float *flat, global const float *flat_var, global const ushort *flat_mask,             \
        global const ushort *bpm, const uint have, const float gain, const float readnoise2, const float dark_t, \
        const float saturation, const float out_scale, const float bound_bias_var,                         \
        const float bound_dark_var, const float bound_flat_var, global float *sci, global float *var,      \
        global ushort *mask
#define CAL_MASTER_PASS                                                                                     \
    bias, bias_var, bias_mask, dark, dark_var, dark_mask, flat, flat_var, flat_mask, bpm, have, gain, readnoise2, \
        dark_t, saturation, out_scale, bound_bias_var, bound_dark_var, bound_flat_var, sci, var, mask

/* Where SCI alone is written (CAL_SCI_ONLY) the variance matters only for
 * whether it is finite (a pixel whose variance is not is NO_DATA, its SCI
 * NaN). It is first computed with each master's VAR replaced by the bound
 * bound_*_var >= |VAR| over the master's usable pixels (the host scans them
 * once; +inf where any is not finite): every operation is monotone in the
 * magnitudes, so where the bound is finite (with a factor 2 to spare for
 * rounding) the variance is too, and the VAR planes are not read at all.
 * Elsewhere (rare) the exact variance decides, as in the full product. */
#define CALIBRATE_PIXELS(NAME, VF, VU, LOAD, STORE, COND_S, COND_I, SELECT)                                         \
    inline __attribute__((always_inline)) void NAME(global const float *rawp, const float overscan_row,     \
                                                    const size_t i, CAL_MASTER_ARGS)                        \
    {                                                                                                       \
        const VF r = LOAD(rawp);                                                                            \
        VU m = (VU)0;                                                                                       \
        if (saturation > 0.0f)                                                                              \
            m = SELECT((VU)0, (VU)CLRED_MASK_SATURATED, COND_S(r >= saturation));                           \
        VF s = r - overscan_row;                                                                            \
        if (have & CAL_BIAS) {                                                                              \
            s -= LOAD(bias + i);                                                                            \
            if (have & CAL_BIAS_MASK)                                                                       \
                m |= LOAD(bias_mask + i);                                                                   \
        }                                                                                                   \
        if (have & CAL_DARK) {                                                                              \
            s -= LOAD(dark + i) * dark_t;                                                                   \
            if (have & CAL_DARK_MASK)                                                                       \
                m |= LOAD(dark_mask + i);                                                                   \
        }                                                                                                   \
        const VF poisson = (have & CAL_POISSON) ? fmax(s, (VF)0.0f) * gain : (VF)0.0f;                      \
        VF f = (VF)1.0f;                                                                                    \
        if (have & CAL_FLAT) {                                                                              \
            f = LOAD(flat + i);                                                                             \
            if (have & CAL_FLAT_MASK)                                                                       \
                m |= LOAD(flat_mask + i);                                                                   \
            m |= SELECT((VU)0, (VU)CLRED_MASK_NO_DATA, COND_S((f > 0.0f) == 0));                            \
            s /= f;                                                                                         \
        }                                                                                                   \
        VF v = (VF)0.0f;                                                                                    \
        for (int exact = (have & CAL_SCI_ONLY) ? 0 : 1; exact < 2; exact++) {                               \
            VF v_masters = (VF)0.0f;                                                                        \
            if ((have & CAL_BIAS) && (have & CAL_BIAS_VAR))                                                 \
                v_masters += exact ? LOAD(bias_var + i) : (VF)bound_bias_var;                               \
            if ((have & CAL_DARK) && (have & CAL_DARK_VAR))                                                 \
                v_masters += (dark_t * dark_t) * (exact ? LOAD(dark_var + i) : (VF)bound_dark_var);         \
            v = (poisson + readnoise2) / (gain * gain) + v_masters;                                         \
            if (have & CAL_FLAT) {                                                                          \
                const VF rel = (have & CAL_FLAT_VAR)                                                        \
                                   ? (exact ? LOAD(flat_var + i) : (VF)bound_flat_var) / (f * f)            \
                                   : (VF)0.0f;                                                              \
                v = v / (f * f) + s * s * rel;                                                              \
            }                                                                                               \
            v *= out_scale * out_scale;                                                                     \
            if (!exact && all(COND_I(isfinite(v * 2.0f))))                                                  \
                break;                                                                                      \
        }                                                                                                   \
        if (have & CAL_BPM)                                                                                 \
            m |= SELECT((VU)0, (VU)CLRED_MASK_BAD, COND_S(LOAD(bpm + i) != (VU)0));                         \
        s *= out_scale;                                                                                     \
        m |= SELECT((VU)CLRED_MASK_NO_DATA, (VU)0, COND_S(isfinite(s)) & COND_S(isfinite(v)));             \
        const VF nan = (VF)NAN;                                                                             \
        STORE(SELECT(s, nan, COND_I((m & (VU)CLRED_MASK_NO_DATA) != (VU)0)), sci + i);                      \
        if (!(have & CAL_SCI_ONLY)) {                                                                       \
            STORE(SELECT(v, nan, COND_I((m & (VU)CLRED_MASK_NO_DATA) != (VU)0)), var + i);                  \
            STORE(m, mask + i);                                                                             \
        }                                                                                                   \
    }

#define ONE_LOAD(p) (*(p))
#define ONE_STORE(v, p) (*(p) = (v))
#define ONE_COND_S(c) ((short)((c) ? -1 : 0))
#define ONE_COND_I(c) ((int)((c) ? -1 : 0))
#define ONE_SELECT(a, b, c) ((c) ? (b) : (a))
CALIBRATE_PIXELS(calibrate_one, float, ushort, ONE_LOAD, ONE_STORE, ONE_COND_S, ONE_COND_I, ONE_SELECT)
#if VW > 1
/* a frame larger than a cache is written past it (VSTREAM_WHOLE) */
#define LANES_STORE(v, p) VSTREAM_WHOLE(v, p, get_global_size(0) * get_global_size(1) * VW >= VSTREAM_PIXELS)
CALIBRATE_PIXELS(calibrate_lanes, vecf, vecus, VEC_LOAD, LANES_STORE, TO_VECSS, TO_VECI, select)
#endif

kernel void calibrate_frame(global const float *raw, const uint raw_width, global const float *overscan,
                            const uint x0, const uint y0, const uint width, const uint height, CAL_MASTER_ARGS)
{
    const uint x = (uint)get_global_id(0) * VW, y = (uint)get_global_id(1);
    if (x >= width || y >= height)
        return;
    const float overscan_row = (have & CAL_OVERSCAN) ? overscan[y0 + y] : 0.0f;
    global const float *rawp = raw + (size_t)(y0 + y) * raw_width + (x0 + x);
    const size_t i = (size_t)y * width + x;
#if VW > 1
    if (x + VW <= width) {
        calibrate_lanes(rawp, overscan_row, i, CAL_MASTER_PASS);
        return;
    }
#endif
    for (uint k = 0; k < min((uint)VW, width - x); k++)
        calibrate_one(rawp + k, overscan_row, i + k, CAL_MASTER_PASS);
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
