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

/* The chi^2 model and the rejection by definition, per pixel of each
 * stamp's own (nu[i]: the pixels in its chi^2): over the usable stamps (in
 * use, chi2, signal finite, nu finite and > 0), with x_i = signal_i / nu_i
 * and y_i = chi2_i / nu_i, e2 = max(0, the median of the slopes
 * (y_j - y_i) / (x_j - x_i) over the pairs i < j whose x differ), f0 = the
 * median of y_i - e2 x_i, and drop[i] = 1 where
 * chi2_i - f0 nu_i - e2 signal_i > clip sqrt(2 nu_i f0^2 + 4 f0 e2 max(signal_i, 0)).
 * Medians by counting (a value is the median when as many lie on each side),
 * not by sorting. Under 2 usable stamps: f0 = 1, e2 = 0, nothing dropped;
 * f0 <= 0 likewise. Returns the count dropped. */
size_t al_stamps_ref_outliers(const double *chi2, const double *signal, const double *nu, const int *use, size_t ns,
                              double clip, int *drop, double *f0, double *e2);

#endif
