/* PSF models: the pieces shared by psf.c (constant models, measurement),
 * psf_vary.c (the spatially varying model) and host/io/psf_fits.c (files). */
#ifndef CLRED_PSF_INTERNAL_H
#define CLRED_PSF_INTERNAL_H

#include "internal.h"

#define CLRED_PSF_MAX_TERMS 6

/* FWHM and ellipticity of p->data into p (the corners' too when p is constant). */
void clred_psf_shape(clred_psf *p);
/* Terms (1, u, v, u^2, u v, v^2; the model's first nterms) of p at (x, y);
 * returns how many (1 for a constant PSF). */
size_t clred_psf_terms(const clred_psf *p, double x, double y, double t[CLRED_PSF_MAX_TERMS]);
/* Keys' cubic convolution weight (a = -0.5), for shifting stamps and models. */
double clred_psf_cubic_w(double t);
/* (order + 1) (order + 2) / 2 */
size_t clred_psf_nterms(int order);
/* The corners' FWHM and ellipticity of a varying p (evaluated there). */
clred_status clred_psf_corners(clred_psf *p);
/* Fits nstars unit-sum stamps (size x size each; NaN = a pixel left out,
 * e.g. under a neighbour) at (sx, sy) with weights wt as a model of the
 * given order (> 0) on a w x h image, leaving out outlier stars (*used:
 * those kept) and rescaling each stamp (in place) by its flux fitted with
 * the model within norm_radius px. Returns 1 with psf filled (unit sum, its
 * centre shape and corners measured), 0 when too few stars are left or their
 * positions do not constrain the terms (the caller lowers the order), -1 on
 * a failure (reported). */
int clred_psf_fit_varying(float *stamps, const double *sx, const double *sy, const double *wt, size_t nstars,
                          size_t size, int order, size_t w, size_t h, double norm_radius, clred_psf *psf,
                          size_t *used);

/* The wings of the constant model psf (measured, or a varying model
 * evaluated at a position) beyond 2 FWHM replaced by a Moffat profile
 * fitted to its pixels from 1 to 2 FWHM, unit sum again; left as they are
 * where the fit misses the model's rings there (a diffraction-limited PSF)
 * or memory is short: the model is then only less good. */
void clred_psf_analytic_wings(clred_psf *psf);

/* The relative error of a PSF model as a matched filter sees it (psf.c):
 * nstars unit-sum stamps (NaN = left out) with their pixels' variances and
 * their sky levels' (vb, on the same unit-sum scale),
 * each star's model (models + i model_stride; stride 0: one for all) and
 * leave-one-out factor loo[i] (the star's weight over the others'; loo_exact:
 * exactly that, not a varying fit's lower bound), the
 * filtered residuals' RMS at lags 0..lag_radius px relative to the filtered
 * peak, less their noise, combined over the stars. NaN with no usable star. */
double clred_psf_model_error(const float *stamps, const float *vars, const double *vb, const float *models,
                             size_t model_stride, const double *loo, int loo_exact, size_t nstars, size_t size,
                             double lag_radius);
/* The wing error's profile (psf.c): the same measure in rings of ring_px
 * beyond core_radius out to the stamps' half size, into rings
 * (CLRED_PSF_WING_RINGS); returns the stars used, 0 (rings all 0) with none. */
size_t clred_psf_wing_error(const float *stamps, const float *vars, const double *vb, const float *models,
                            size_t model_stride, const double *loo, int loo_exact, size_t nstars, size_t size,
                            double core_radius, double ring_px, double *rings);
/* A point source's footprint in ZOGY's S_N (zogy.c): sum of (S_N / its peak)^2
 * for these PSFs (odd sizes), noise variances and zero points. */
double clred_zogy_point_area(const float *pn, size_t sn, const float *pr, size_t sr, double s2n, double s2r,
                             double fn, double fr);

#endif
