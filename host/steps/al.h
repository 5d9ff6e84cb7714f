/* Alard-Lupton subtraction: the pieces shared by alard_lupton.c (driver,
 * convolution, decorrelation), al_basis.c (the kernel basis) and al_fit.c
 * (stamps, normal equations, solution). Internal; tests use it to compare
 * each piece with a double-precision reference. */
#ifndef CLRED_AL_H
#define CLRED_AL_H

#include "internal.h"

/* The basis: nfilt 1-D filters of ksize taps (G_k(u) u^i, row-major), and
 * nbasis functions G_k(u) u^i G_k(v) v^j = filt[fx] (x) filt[fy] (outer
 * product), each but the first less bsum times the first (so they sum to 0;
 * the first sums to 1). images: the nbasis kernels so formed, ksize^2 each. */
typedef struct {
    int hw, ksize, nfilt, nbasis;
    float *filt;
    int *fx, *fy;        /* per basis: its row (u) and column (v) filters */
    int *gauss, *du, *dv; /* per basis: which Gaussian, and its degrees */
    double *sigma;       /* per Gaussian */
    float *bsum;         /* per basis: the raw sum taken off (0 for the first) */
    double *images;      /* in double: solutions' coefficients are large and cancel (the basis is
                            far from orthogonal), so kernels are summed from these in double */
} al_basis;

/* sigmas: ngauss values in px; deg: their degrees. The filters are
 * G_k(u) (u / hw)^i; G_0 alone (i = 0) is scaled to unit sum, every other to
 * unit L2 norm (any scale solves the same fit; this keeps float sums well
 * conditioned). */
clred_status al_basis_build(int ngauss, const double *sigmas, const int *deg, int hw, al_basis *b);
void al_basis_free(al_basis *b);

/* Spatial monomials of order `order` at (x, y) of a w x h image, over
 * xs = 2 x / (w - 1) - 1, ys likewise: 1, xs, ys, xs^2, xs ys, ys^2, xs^3, ...
 * Returns how many ((order + 1)(order + 2) / 2); p receives them. */
int al_poly(int order, double x, double y, size_t w, size_t h, double *p);
static inline int al_nterms(int order) { return (order + 1) * (order + 2) / 2; }

/* One side of the subtraction as the kernels read it. */
typedef struct {
    const clred_dimage *img;
    float level;  /* taken off */
    float var0;   /* the variance where the image has no VAR plane */
    float lo, hi; /* valid range of raw values */
} al_side;

/* The stamps' normal equations on the device: for each stamp (centre cx, cy;
 * fitted box of half-size r) the weighted dot products of the nbasis basis
 * convolutions of T, the constant 1 and I (less its level): dots[s] is the
 * full symmetric nv x nv matrix, nv = nbasis + 2, in double. nbad[s]
 * counts the unusable pixels the stamp reads: > 0 where some reach its
 * star's core (I within `core` px of the centre, T within hw + core; such a
 * stamp must not be used: its basis convolutions are not computed and hold
 * zeros), else minus those further out (0: none), whose fitted pixels are
 * left out of the sums (weight 0), so that one masked pixel (a template's
 * hole, a cosmic ray) in a stamp's wide footprint does not cost the stamp.
 * nfit[s] counts the stamp's pixels of weight > 0, the only ones its sums
 * and so its chi^2 take (0 for a stamp with nbad > 0; fewer than the box's
 * (2r + 1)^2 where unusable pixels, a variance not positive and finite or
 * the border left some out): the chi^2's degrees of freedom, against which
 * al_stamp_outliers judges it. */
/* al_stamp_dots_dev's nbad alone: whether an unusable pixel reaches each
 * stamp's core (> 0), lies further out (< 0, minus their count) or none (0). */
clred_status al_stamp_check_dev(clred_ctx *ctx, const al_side *ti, const al_side *ii, uint16_t ignore, int hw, int r,
                                int core, const int *cx, const int *cy, size_t ns, int *nbad);
clred_status al_stamp_dots_dev(clred_ctx *ctx, const al_side *ti, const al_side *ii, uint16_t ignore,
                               const al_basis *b, int r, int core, const int *cx, const int *cy, size_t ns,
                               double *dots, int *nbad, int *nfit);

/* The global least-squares problem of the stamps in use[]: the unknowns are
 * basis 0's coefficient (constant: the kernel sum), each other basis's
 * coefficients of the kernel_order spatial monomials, and the background's of
 * bg_order; the stamps' spatial terms are taken at their centres.
 * coef receives al_nunknowns() values. chi2[s] (may be NULL) receives every
 * stamp's chi^2 under the solution (used or not). */
static inline int al_nunknowns(int nbasis, int kernel_order, int bg_order)
{
    return 1 + (nbasis - 1) * al_nterms(kernel_order) + al_nterms(bg_order);
}
clred_status al_solve(const double *dots, size_t ns, const int *use, const int *cx, const int *cy, size_t w, size_t h,
                      int nbasis, int kernel_order, int bg_order, double *coef, double *chi2);
/* The chi^2 of stamps predicted by a fit that did not use them: the used
 * stamps are split into `folds` interleaved folds, each fitted from the
 * others; *cv is the sum over all used stamps. Fails like al_solve where a
 * fold's fit is singular. */
clred_status al_cv_chi2(const double *dots, size_t ns, const int *use, const int *cx, const int *cy, size_t w,
                        size_t h, int nbasis, int kernel_order, int bg_order, int folds, double *cv);
/* The stamp's own fit of a constant kernel and background: its kernel sum. */
clred_status al_stamp_ksum(const double *dots_s, int nbasis, double *ksum);

/* The stamp's signal under the solution: sum_p w_p (K * T)(p)^2 over its
 * fitted pixels (dots_s: its nv x nv products, al_stamp_dots_dev), K the
 * kernel at (x, y) without the background: the convolved star's S/N^2,
 * against which a model error relative to the star is measured. */
double al_stamp_signal(const double *dots_s, const double *coef, int nbasis, int kernel_order, double x, double y,
                       size_t w, size_t h);

/* The stamps' chi^2 under the fit as noise plus a model error relative to
 * each star (al_fit.c says why): chi2_s ~ f0 nu_s + e2 signal_s over the
 * stamps in use (nu_s: the pixels that enter stamp s's chi^2, nfit of
 * al_stamp_dots_dev), fitted per pixel, chi2_s / nu_s ~ f0 + e2 signal_s /
 * nu_s, f0 and e2 >= 0 by Theil-Sen (the median of the pairs' slopes, then
 * the median intercept, (chi2_s - e2 signal_s) / nu_s), robust to the
 * contaminated stamps it is there to find. A stamp takes part where it is
 * in use, its chi2 and signal are finite and nu_s > 0. Flags in drop[]
 * (0 or 1 for every stamp; only those taking part can be 1) those whose
 * chi^2 exceeds that by more than clip times its standard deviation,
 * sqrt(2 nu_s f0^2 + 4 f0 e2 signal_s), and their count in *ndrop. *f0,
 * *e2 receive the fit (1, 0 with under 2 stamps taking part). */
clred_status al_stamp_outliers(const double *chi2, const double *signal, const double *nu, const int *use, size_t ns,
                               double clip, int *drop, double *f0, double *e2, size_t *ndrop);

/* The kernel's basis coefficients at (x, y) from the solution. */
void al_coef_at(const double *coef, int nbasis, int kernel_order, double x, double y, size_t w, size_t h,
                double *cb);

/* Solves a symmetric positive semidefinite n x n system in place (a, rhs ->
 * x): scaled to a unit diagonal, AL_RIDGE added to it (Tikhonov), Cholesky.
 * Fails when not positive definite even so (a NaN). */
#define AL_RIDGE 1e-6
/* The variance through the kernel, sum K^2 var_T, leaves out the outer
 * square rings of a block's kernel that together hold at most this share of
 * sum K^2: the error is below AL_VAR_TAIL sum K^2 max(var_T) over the
 * footprint (1e-6 of T's variance, or ~1e-3 of it next to a star 1000x the
 * sky's variance), while the kernel's far wings, whose squares are tiny, cost
 * most of the taps. */
#define AL_VAR_TAIL 1e-6
clred_status al_linsolve(double *a, double *rhs, int n);

/* The sky of D re-fitted (alard_lupton.c refit_sky): D sampled on a grid of
 * about AL_SKY_SAMPLES points, a sample dropped where |D / sigma| passes
 * AL_SKY_SCORE within AL_SKY_REACH FWHMs (every second pixel each way), a
 * clipped median per cell of AL_SKY_CELLS^2 (1 for a constant background;
 * cells of fewer than AL_SKY_MIN_SAMPLES samples left out), the background's
 * polynomial through them; AL_SKY_ROUNDS rounds. */
#define AL_SKY_CELLS 4
#define AL_SKY_MIN_SAMPLES 64
#define AL_SKY_SAMPLES 65536
#define AL_SKY_SCORE 3.0f
#define AL_SKY_REACH 3.0
#define AL_SKY_ROUNDS 3

/* DETECT's variance: P'^2's separable taps are cut where both fall below
 * this fraction of their peaks (alard_lupton.c's p2_separable). */
#define AL_DETVAR_CUT 1e-4

/* The decorrelated difference's PSF as a varying model (al_local.c): p is
 * the unconvolved image's model (order >= 1), p0 the centre's P' as
 * decorrelated on the device (p's size squared), kimg the matching kernel at the
 * image centre (ks x ks, summing to ksum); s2i, s2t the unconvolved and the
 * convolved image's sky variances, as in the decorrelation. out: p's terms,
 * basis 0 = p0 at unit sum, basis k = p's basis k through the decorrelation
 * kernel. */
clred_status al_decorrelated_psf_model(const clred_psf *p, const float *p0, const float *kimg, int ks, double s2i,
                                       double s2t, double ksum, clred_psf *out);

/* img (size x size, centred) through the decorrelation kernel phi of
 * al_decorrelated_psf_model (same kimg, ks, s2i, s2t, ksum), cut to size x
 * size, in double. */
clred_status al_through_phi(const float *img, int size, const float *kimg, int ks, double s2i, double s2t,
                            double ksum, double *out);

/* The covariance of the kernel's unknowns (al_solve's first 1 + (nbasis - 1)
 * al_nterms(kernel_order): basis 0's constant, then each other basis's
 * spatial terms) from the stamps' normal equations, inverted as al_solve
 * solves them (scaled, AL_RIDGE): cov receives that many squared, row-major,
 * in the units of the weights (1 / variance: the fit's statistical error). */
clred_status al_kernel_covariance(const double *dots, size_t ns, const int *use, const int *cx, const int *cy,
                                  size_t w, size_t h, int nbasis, int kernel_order, int bg_order, double *cov);

/* The kernel fit's error at the candidates (al_kerr.c). g, the filter from
 * D to DETECT's numerator, is cut to the square that holds all but this
 * share of sum g^2: by Cauchy-Schwarz the cut changes a candidate's
 * dDETECT / da by at most sqrt(AL_KERR_TAIL) = 1e-4 of |g| |B * T| there. */
#define AL_KERR_TAIL 1e-8

/* What the model needs of the subtraction: the image's size, the convolved
 * image's level taken off, valid range and ignored bits as the fit read it,
 * what D was divided by, and the covariance's scale (the fit's chi^2 per
 * pixel where above 1). */
typedef struct {
    size_t w, h;
    double level, norm, scale;
    float lo, hi;
    uint16_t ignore;
} al_kerr_frame;

struct clred_al_kerr {
    int nbasis, ko, nk;
    double *cov;  /* nk x nk: the kernel's unknowns (al_kernel_covariance) */
    int gh, rh, ph;
    /* G_{b,m}(r) = sum_q g(q) q^m B_b(q - r), |r| <= rh = gh + hw: g the
     * correlation filter from D to DETECT's numerator (cut to |q| <= gh), q^m
     * the spatial monomials' powers of the offset (qx^a qy^c, a + c <= ko, in
     * al_poly's order); nbasis x nterms images of (2 rh + 1)^2 */
    double *gm;
    double *p2;   /* (2 ph + 1)^2: P'^2, DETECT's noise filter */
    al_kerr_frame frame;
};

/* The model from the basis, the kernel unknowns' covariance, DETECT's PSF
 * P' (pw, psize^2) and, when decorrelated, the decorrelation's kernel and
 * variances (as al_decorrelated_psf_model). */
clred_status al_kerr_create(const al_basis *b, const double *cov, int kernel_order, const float *pw, int psize,
                            const float *kimg, double s2i, double s2t, double ksum, int decorrelated,
                            const al_kerr_frame *frame, clred_al_kerr **out);
void al_kerr_free(clred_al_kerr *k);
/* doubles of scratch al_kerr_sigma needs */
size_t al_kerr_work_size(const clred_al_kerr *k);
/* The kernel's error in DETECT (sigma units) at pixel (x, y): t the
 * convolved image, dvar the image whose VAR DETECT's noise comes from (the
 * decorrelated difference, or the difference). NaN where that noise is 0. */
double al_kerr_sigma(const clred_al_kerr *k, const clred_image *t, const clred_image *dvar, long x, long y,
                     double *work);
/* clred_al_candidates_kernel's flagging, on host images */
clred_status al_kerr_flag(const clred_al_kerr *k, const clred_image *t, const clred_image *dvar, double thresh,
                          clred_candidate *list, size_t n);

#endif
