/* The astrometric fit (wcsfit.c); shared by the astrometry step and the
 * simulator, not part of the public API. */
#ifndef CLRED_WCSFIT_H
#define CLRED_WCSFIT_H

#include "wcs_internal.h"

/* Solves the n x n system a x = b (row-major a, overwritten; x into b);
 * 0 when singular. */
int clred_solve_spd(double *a, double *b, int n);

/* Fits AP, BP (degree s->order + 1) so that they invert A, B over the pixel
 * box [x0, x1] x [y0, y1] (0-based pixels). */
clred_status clred_tan_sip_fit_inverse(clred_tan_sip *s, double x0, double y0, double x1, double y1);

/* 0-based pixel -> sky through s (forward polynomials only). */
void clred_tan_sip_pix2sky(const clred_tan_sip *s, double x, double y, double *ra, double *dec);

typedef struct {
    int order;         /* SIP order: 0 or 1 = plain TAN, 2..9 */
    double clip_sigma; /* stars further than clip_sigma x the per-axis RMS are left out */
    int max_iters;
} clred_tan_sip_fit_opts;

typedef struct {
    double rms_arcsec, rms_px; /* RMS distance of the used stars */
    size_t nused;
} clred_tan_sip_fit_info;

/* Fits TAN + SIP to n pixel (0-based) / sky pairs. s enters with the tangent
 * point (crval) near the field and crpix where the WCS is to be referenced;
 * crval is re-fitted (so that it lies on crpix) and cd, a, b are fitted.
 * use (n entries, caller's) receives which stars the final fit kept. */
clred_status clred_tan_sip_fit(const double *x, const double *y, const double *ra, const double *dec, size_t n,
                               const clred_tan_sip_fit_opts *o, clred_tan_sip *s, unsigned char *use,
                               clred_tan_sip_fit_info *info);

#endif
