/* Normal-equation least squares for tests/test_starmatch.c (see the header). */
#include "starmatch_ref.h"

#include <math.h>
#include <string.h>

/* Solves the k x k system a p = r in place (partial pivoting). */
static int solve(double *a, double *r, int k, double *p)
{
    for (int c = 0; c < k; c++) {
        int piv = c;
        for (int i = c + 1; i < k; i++)
            if (fabs(a[i * k + c]) > fabs(a[piv * k + c]))
                piv = i;
        if (a[piv * k + c] == 0.0)
            return 0;
        for (int j = 0; j < k; j++) {
            double t = a[c * k + j];
            a[c * k + j] = a[piv * k + j];
            a[piv * k + j] = t;
        }
        double t = r[c];
        r[c] = r[piv];
        r[piv] = t;
        for (int i = c + 1; i < k; i++) {
            double f = a[i * k + c] / a[c * k + c];
            for (int j = c; j < k; j++)
                a[i * k + j] -= f * a[c * k + j];
            r[i] -= f * r[c];
        }
    }
    for (int i = k - 1; i >= 0; i--) {
        double s = r[i];
        for (int j = i + 1; j < k; j++)
            s -= a[i * k + j] * p[j];
        p[i] = s / a[i * k + i];
    }
    return 1;
}

/* Accumulates J^T J and J^T r for rows J (k wide) with targets r. */
static void accumulate(double *ata, double *atr, const double *row, double target, int k)
{
    for (int i = 0; i < k; i++) {
        atr[i] += row[i] * target;
        for (int j = 0; j < k; j++)
            ata[i * k + j] += row[i] * row[j];
    }
}

int ref_fit_similarity(const double *x, const double *y, const double *xr, const double *yr, size_t n, double m[6])
{
    /* parameters (a, b, c, d) */
    double ata[16], atr[4], p[4];
    memset(ata, 0, sizeof ata);
    memset(atr, 0, sizeof atr);
    for (size_t i = 0; i < n; i++) {
        double rx[4] = {x[i], -y[i], 1, 0}, ry[4] = {y[i], x[i], 0, 1};
        accumulate(ata, atr, rx, xr[i], 4);
        accumulate(ata, atr, ry, yr[i], 4);
    }
    if (!solve(ata, atr, 4, p))
        return 0;
    m[0] = p[0], m[1] = -p[1], m[2] = p[2];
    m[3] = p[1], m[4] = p[0], m[5] = p[3];
    return 1;
}

int ref_fit_affine(const double *x, const double *y, const double *xr, const double *yr, size_t n, double m[6])
{
    double ata[36], atr[6];
    memset(ata, 0, sizeof ata);
    memset(atr, 0, sizeof atr);
    for (size_t i = 0; i < n; i++) {
        double rx[6] = {x[i], y[i], 1, 0, 0, 0}, ry[6] = {0, 0, 0, x[i], y[i], 1};
        accumulate(ata, atr, rx, xr[i], 6);
        accumulate(ata, atr, ry, yr[i], 6);
    }
    return solve(ata, atr, 6, m);
}

double ref_fit_rms(const double *x, const double *y, const double *xr, const double *yr, size_t n, const double m[6])
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        double dx = m[0] * x[i] + m[1] * y[i] + m[2] - xr[i], dy = m[3] * x[i] + m[4] * y[i] + m[5] - yr[i];
        s += dx * dx + dy * dy;
    }
    return n ? sqrt(s / (double)n) : NAN;
}
