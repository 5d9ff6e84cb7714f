#include "al_local_ref.h"

#include <complex.h>
#include <math.h>
#include <stdlib.h>

/* Direct 2-D DFT (sign -1 forward, +1 inverse) of the m x m a, by rows then columns. */
static void dft2_ref(double complex *a, int m, int sign)
{
    double complex *t = malloc((size_t)m * sizeof *t);
    for (int pass = 0; pass < 2; pass++)
        for (int l = 0; l < m; l++) {
            for (int k = 0; k < m; k++) {
                double complex s = 0;
                for (int j = 0; j < m; j++) {
                    size_t q = pass ? (size_t)j * m + l : (size_t)l * m + j;
                    s += a[q] * cexp(sign * 2.0 * M_PI * I * (double)j * k / m);
                }
                t[k] = s;
            }
            for (int k = 0; k < m; k++)
                a[pass ? (size_t)k * m + l : (size_t)l * m + k] = t[k];
        }
    free(t);
}

void al_local_ref_decorrelate(const float *img, int size, const float *kern, int ks, double s2i, double s2t,
                              double ksum, int m, double *out)
{
    double complex *a = calloc((size_t)m * m, sizeof *a);
    int kh = ks / 2, h = size / 2, r = m / 2 - 1;
    for (int j = -kh; j <= kh; j++)
        for (int i = -kh; i <= kh; i++)
            a[(size_t)((j + m) % m) * m + (size_t)((i + m) % m)] = kern[(j + kh) * ks + (i + kh)];
    dft2_ref(a, m, -1);
    for (size_t q = 0; q < (size_t)m * m; q++)
        a[q] = sqrt((s2i + ksum * ksum * s2t) / (s2i + cabs(a[q]) * cabs(a[q]) * s2t));
    dft2_ref(a, m, 1);
    for (int y = -h; y <= h; y++)
        for (int x = -h; x <= h; x++) {
            double s = 0;
            for (int v = -r; v <= r; v++)
                for (int u = -r; u <= r; u++) {
                    int sx = x - u, sy = y - v;
                    if (sx < -h || sx > h || sy < -h || sy > h)
                        continue;
                    s += img[(sy + h) * size + (sx + h)] * creal(a[(size_t)((v + m) % m) * m + (size_t)((u + m) % m)]) /
                         ((double)m * m);
                }
            out[(y + h) * size + (x + h)] = s;
        }
    free(a);
}
