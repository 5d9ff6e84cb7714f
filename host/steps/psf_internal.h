/* PSF models: the pieces shared by psf.c (constant models, measurement),
 * psf_vary.c (the spatially varying model) and host/io/psf_fits.c (files). */
#ifndef CLRED_PSF_INTERNAL_H
#define CLRED_PSF_INTERNAL_H

#include "internal.h"

#define CLRED_PSF_MAX_TERMS 6

/* FWHM and ellipticity of p->data into p (the corners' too when p is constant). */
void clred_psf_shape(clred_psf *p);
/* sqrt(T^T term_cov T) at (x, y), at least 1: how much more the noise of
 * psf evaluated there is than at its centre (1 when constant or unknown). */
double clred_psf_noise_gain(const clred_psf *psf, double x, double y);
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
 * centre shape and corners measured) and, when kept_mask is not NULL, which
 * stars the last fit kept (nstars flags), 0 when too few stars are left or
 * their positions do not constrain the terms (the caller lowers the order),
 * -1 on a failure (reported). */
int clred_psf_fit_varying(float *stamps, const double *sx, const double *sy, const double *wt, size_t nstars,
                          size_t size, int order, size_t w, size_t h, double norm_radius, clred_psf *psf,
                          size_t *used, unsigned char *kept_mask);

/* Each star's leverage on a varying fit of p's terms with weights wt, the
 * hat matrix' diagonal h_i = wt_i t_i' (sum_j wt_j t_j t_j')^-1 t_i (t the
 * terms at (sx, sy)): the fit's pull on its own star, whose residual against
 * the model is (1 - h_i) times its residual against the model left without
 * it. wt_i / sum wt for a constant p. 0 when the terms are not constrained. */
int clred_psf_leverage(const clred_psf *p, const double *sx, const double *sy, const double *wt, size_t nstars,
                       double *h);

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
/* What filtering a tile with the PSFs at its centre (cx, cy) leaves of a
 * source at each of the npts points xy (x, y pairs), where the images hold
 * the PSFs there: each model's variation as a matched filter sees it, the
 * signed residual v(d) = (m_c * (m_x - m_c))(d) / (m_c * m_c)(0) at the
 * lags |d| <= max(1, both FWHM) (m_c, m_x the model at the centre and at
 * the point, * the correlation), and its second moments over the lags:
 * vnn = <v_n^2>, vrr = <v_r^2>, vnr = <v_n v_r> per point. A source
 * whose filtered signals are S_N and S_R leaves S_N v_n - S_R v_r in S,
 * of variance S_N^2 vnn - 2 S_N S_R vnr + S_R^2 vrr: a static source's
 * two errors cancel as far as both PSFs vary alike. A constant model's v
 * is 0. Returns 0 on a failure (an evaluation, memory). */
int clred_psf_pair_variation(const clred_psf *pn, const clred_psf *pr, double cx, double cy, const double *xy,
                             size_t npts, double *vnn, double *vrr, double *vnr);
/* clred_psf_model_error's pieces for each star (NaN where a star has no
 * usable stamp): e2, its filtered residual's mean square over the lags
 * relative to the filtered peak squared; nu2, that residual's noise (the
 * stamp's pixels and sky level, times (1 + loo)^2); px2, the pixels' alone,
 * without (1 + loo)^2. 0 when out of memory. */
int clred_psf_star_errors(const float *stamps, const float *vars, const double *vb, const float *models,
                          size_t model_stride, const double *loo, size_t nstars, size_t size, double lag_radius,
                          double *e2, double *nu2, double *px2);
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

/* How much better the model with held-out errors xa (one per star, NaN:
 * none) predicts the stars than the one with xb: over the better measured
 * half of the stars where both are known (the smaller key, e.g. their
 * pixels' noise; all of them below 6), the median of xa - xb, negative
 * when xa's model is the better. A paired comparison, star by star, so
 * that what both models meet alike (the star's noise, a neighbour's light)
 * cancels; over the better measured half because a faint star's difference
 * is its noise (psf.c's order selection: over all the stars, an order-1
 * model of a constant PSF from ~20 stars beat the constant model in 13 of
 * 31 simulated images, over the better half in 5; on a field whose FWHM
 * changes by 30 %, order 1 won all 31 either way). NaN when no star has
 * all three. tmp: scratch of 4 n. */
double clred_psf_paired_median(const double *xa, const double *xb, const double *key, size_t n, double *tmp);

#endif
