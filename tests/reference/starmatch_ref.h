/* Double-precision references for star matching: least-squares fits of a
 * similarity or an affine transform by the plain normal equations (no
 * centring, Gaussian elimination with partial pivoting), independent of the
 * closed forms the library uses. */
#ifndef CLRED_STARMATCH_REF_H
#define CLRED_STARMATCH_REF_H

#include <stddef.h>

/* Fits x' = a x - b y + c, y' = b x + a y + d to n pairs (x, y) -> (xr, yr);
 * m receives the six coefficients in clred_transform order. Returns 0 when
 * the normal matrix is singular. */
int ref_fit_similarity(const double *x, const double *y, const double *xr, const double *yr, size_t n, double m[6]);

/* Fits the six-coefficient affine map the same way. */
int ref_fit_affine(const double *x, const double *y, const double *xr, const double *yr, size_t n, double m[6]);

/* RMS distance between (xr, yr) and the mapped (x, y). */
double ref_fit_rms(const double *x, const double *y, const double *xr, const double *yr, size_t n, const double m[6]);

#endif
