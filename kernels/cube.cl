/* Adaptive-optics cubes: per-pixel temporal statistics across the frames of
 * a row band, for hot, cold and noisy pixels (host/cube.c). */

/* The host sends at most this many frames (evenly spaced beyond it), so the
 * values fit in private memory on any device. */
#define CUBE_MAXN 127

inline void cube_sort(float *v, const int n)
{
    for (int i = 1; i < n; i++) {
        const float x = v[i];
        int j = i - 1;
        while (j >= 0 && v[j] > x) {
            v[j + 1] = v[j];
            j--;
        }
        v[j + 1] = x;
    }
}

inline float cube_median_sorted(const float *v, const int n)
{
    return (n & 1) ? v[n / 2] : 0.5f * (v[n / 2 - 1] + v[n / 2]);
}

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
    cube_sort(v, m);
    const float c = cube_median_sorted(v, m);
    for (int k = 0; k < m; k++)
        v[k] = fabs(v[k] - c);
    cube_sort(v, m);
    med[i] = c;
    mad[i] = cube_median_sorted(v, m);
}
