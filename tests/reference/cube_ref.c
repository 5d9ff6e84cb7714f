/* Double-precision reference for kernels/cube.cl: sorts with qsort, no
 * shared code with the kernel. */
#include "cube_ref.h"

#include <math.h>
#include <stdlib.h>

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median_sorted(const double *v, size_t m)
{
    return (m & 1) ? v[m / 2] : 0.5 * (v[m / 2 - 1] + v[m / 2]);
}

void cube_ref_temporal(const float *const *frames, size_t n, size_t npix, double *med, double *mad)
{
    double *v = malloc((n ? n : 1) * sizeof *v);
    for (size_t i = 0; i < npix; i++) {
        size_t m = 0;
        for (size_t f = 0; f < n; f++)
            if (isfinite(frames[f][i]))
                v[m++] = frames[f][i];
        if (m == 0) {
            med[i] = mad[i] = NAN;
            continue;
        }
        qsort(v, m, sizeof *v, cmp);
        double c = median_sorted(v, m);
        for (size_t k = 0; k < m; k++)
            v[k] = fabs(v[k] - c);
        qsort(v, m, sizeof *v, cmp);
        med[i] = c;
        mad[i] = median_sorted(v, m);
    }
    free(v);
}
