#include "al_stamps_ref.h"

#include <math.h>
#include <stdlib.h>

#include "al_ref.h"

double al_stamps_ref_signal(const double *conv, const double *wt, int npix, int nbasis, const double *coef, int ko,
                            double x, double y, size_t w, size_t h)
{
    double p[10];
    int nk = al_ref_poly(ko, x, y, w, h, p);
    double s = 0;
    for (int q = 0; q < npix; q++) {
        double k = coef[0] * conv[q];
        for (int b = 1; b < nbasis; b++) {
            double cb = 0;
            for (int l = 0; l < nk; l++)
                cb += coef[1 + (size_t)(b - 1) * nk + l] * p[l];
            k += cb * conv[(size_t)b * npix + q];
        }
        s += wt[q] * k * k;
    }
    return s;
}

/* The median of v[0..n) by counting: the element with fewer than half the
 * others below it and fewer than half above (the mean of the two middle
 * ones, found the same way, for even n). O(n^2), no reordering. */
static double median_count(const double *v, size_t n)
{
    double lo = NAN, hi = NAN;
    for (size_t i = 0; i < n; i++) {
        size_t below = 0, equal = 0;
        for (size_t j = 0; j < n; j++) {
            below += v[j] < v[i];
            equal += v[j] == v[i];
        }
        /* v[i] occupies the sorted ranks below .. below + equal - 1 */
        size_t r_lo = (n - 1) / 2, r_hi = n / 2;
        if (below <= r_lo && r_lo < below + equal)
            lo = v[i];
        if (below <= r_hi && r_hi < below + equal)
            hi = v[i];
    }
    return 0.5 * (lo + hi);
}

static int usable(const double *chi2, const double *signal, const double *nu, const int *use, size_t i)
{
    return use[i] && isfinite(chi2[i]) && isfinite(signal[i]) && isfinite(nu[i]) && nu[i] > 0;
}

size_t al_stamps_ref_outliers(const double *chi2, const double *signal, const double *nu, const int *use, size_t ns,
                              double clip, int *drop, double *f0, double *e2)
{
    size_t n = 0;
    for (size_t i = 0; i < ns; i++) {
        drop[i] = 0;
        n += usable(chi2, signal, nu, use, i);
    }
    *f0 = 1.0;
    *e2 = 0.0;
    if (n < 2)
        return 0;
    double *slopes = malloc(n * n * sizeof *slopes), *icpt = malloc(n * sizeof *icpt);
    size_t m = 0;
    for (size_t i = 0; i < ns; i++)
        for (size_t j = i + 1; j < ns; j++) {
            if (!usable(chi2, signal, nu, use, i) || !usable(chi2, signal, nu, use, j))
                continue;
            double xi = signal[i] / nu[i], xj = signal[j] / nu[j];
            if (xi != xj)
                slopes[m++] = (chi2[j] / nu[j] - chi2[i] / nu[i]) / (xj - xi);
        }
    double slope = m ? median_count(slopes, m) : 0.0;
    slope = slope > 0 ? slope : 0.0;
    size_t k = 0;
    for (size_t i = 0; i < ns; i++)
        if (usable(chi2, signal, nu, use, i))
            icpt[k++] = chi2[i] / nu[i] - slope * (signal[i] / nu[i]);
    double f = median_count(icpt, k);
    free(slopes);
    free(icpt);
    if (!(f > 0))
        return 0;
    *f0 = f;
    *e2 = slope;
    size_t dropped = 0;
    for (size_t i = 0; i < ns; i++)
        if (usable(chi2, signal, nu, use, i)) {
            double sd = sqrt(2.0 * nu[i] * f * f + 4.0 * f * slope * (signal[i] > 0 ? signal[i] : 0.0));
            if (chi2[i] - f * nu[i] - slope * signal[i] > clip * sd) {
                drop[i] = 1;
                dropped++;
            }
        }
    return dropped;
}
