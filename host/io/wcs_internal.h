/* World-coordinate helpers shared by the astrometric fit (steps/astrometry.c),
 * the simulator and the WCS module (io/wcs.c); not part of the public API. */
#ifndef CLRED_WCS_INTERNAL_H
#define CLRED_WCS_INTERNAL_H

#include "clred.h"

/* A bivariate polynomial sum c[p][q] u^p v^q with p + q < CLRED_POLY_N. */
#define CLRED_POLY_N 10
typedef struct {
    double c[CLRED_POLY_N][CLRED_POLY_N];
} clred_poly;

double clred_poly_eval(const clred_poly *p, int order, double u, double v);

/* A TAN projection with SIP distortion (Shupe et al. 2005): with u, v the
 * pixel offsets from crpix (0-based here; written 1-based),
 *   (xi, eta) = cd (u + A(u, v), v + B(u, v))   in degrees,
 * and AP, BP the inverse polynomials of the undistorted offsets. order 0 =
 * plain TAN. */
typedef struct {
    double crval[2];
    double crpix[2];
    double cd[4]; /* row-major: cd[0] = CD1_1, cd[1] = CD1_2, cd[2] = CD2_1, cd[3] = CD2_2 */
    int order, inv_order;
    clred_poly a, b, ap, bp;
} clred_tan_sip;

/* Replaces the header's celestial WCS (every form of linear part, SIP and PV
 * cards) by s. */
clred_status clred_tan_sip_write(const clred_tan_sip *s, clred_header *h);

/* Standard coordinates (degrees) of (ra, dec) about crval, and back. */
void clred_tan_project(const double crval[2], double ra, double dec, double *xi, double *eta);
void clred_tan_deproject(const double crval[2], double xi, double eta, double *ra, double *dec);

/* The linear part of a WCS: 0-based reference pixel and the pixel-to-
 * intermediate matrix (deg per pixel, CDELT folded in); and its CRVAL. */
void clred_wcs_linear(const clred_wcs *w, double crpix[2], double cd[4]);
void clred_wcs_crval(const clred_wcs *w, double crval[2]);

#endif
