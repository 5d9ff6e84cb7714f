/* Double-precision reference for AL's stamp rejection (host/steps/al_fit.c
 * al_stamp_signal and al_stamp_outliers; tests/test_al_stamps.c). */
#ifndef AL_STAMPS_REF_H
#define AL_STAMPS_REF_H

#include <stddef.h>

/* A stamp's signal by definition: sum_p wt[p] (sum_b c_b conv[b][p])^2 over
 * its npix pixels, conv: nbasis rows of npix (the basis convolutions), c_b
 * the kernel's coefficients at (x, y): coef[0] for basis 0, else
 * sum_l coef[1 + (b - 1) nk + l] P_l(x, y) (al_ref_poly, order ko). */
double al_stamps_ref_signal(const double *conv, const double *wt, int npix, int nbasis, const double *coef, int ko,
                            double x, double y, size_t w, size_t h);

/* The chi^2 model and the rejection by definition: e2 = max(0, the median of
 * the slopes (chi2_j - chi2_i) / (signal_j - signal_i) over the pairs i < j
 * of usable stamps (in use, both values finite) whose signals differ),
 * f0 = the median of chi2 - e2 signal over them / nu, and drop[i] = 1 where
 * chi2_i - f0 nu - e2 signal_i > clip sqrt(2 nu f0^2 + 4 f0 e2 max(signal_i, 0)).
 * Medians by counting (a value is the median when as many lie on each side),
 * not by sorting. Under 2 usable stamps or nu <= 0: f0 = 1, e2 = 0, nothing
 * dropped; f0 <= 0 likewise. Returns the count dropped. */
size_t al_stamps_ref_outliers(const double *chi2, const double *signal, const int *use, size_t ns, double nu,
                              double clip, int *drop, double *f0, double *e2);

#endif
