/* Adaptive-optics cubes: per-pixel temporal statistics across the frames of
 * a row band, for hot, cold and noisy pixels (host/cube.c). */

#include "lib_sort.cl"

/* The host sends at most this many frames (evenly spaced beyond it), so the
 * values fit in private memory on any device. */
#define CUBE_MAXN 127


/* stack holds nframes planes of npix pixels each (plane f at f * npix). The
 * median of an even count is the mean of the two middle values; mad is the
 * raw median absolute deviation from that median. NaN where no value is
 * finite. One work-item per pixel, no local memory, no barriers. */
kernel void temporal_median_mad(global const float *stack, const uint npix, const uint nframes,
                                global float *med, global float *mad)
{
    const uint i = get_global_id(0);
    if (i >= npix)
        return;
    float v[CUBE_MAXN];
    int m = 0;
    for (uint f = 0; f < nframes && f < CUBE_MAXN; f++) {
        const float x = stack[(size_t)f * npix + i];
        if (isfinite(x))
            v[m++] = x;
    }
    if (m == 0) {
        med[i] = NAN;
        mad[i] = NAN;
        return;
    }
    clred_sort(v, m);
    const float c = clred_median_sorted(v, m);
    for (int k = 0; k < m; k++)
        v[k] = fabs(v[k] - c);
    clred_sort(v, m);
    med[i] = c;
    mad[i] = clred_median_sorted(v, m);
}
