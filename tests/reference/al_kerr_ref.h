/* Double-precision reference for AL's kernel-error model
 * (host/steps/al_kerr.c, host/steps/al_fit.c al_kernel_covariance;
 * tests/test_al_kerr.c). */
#ifndef AL_KERR_REF_H
#define AL_KERR_REF_H

#include <stddef.h>

/* The covariance of the kernel's unknowns by definition: the normal matrix
 * of the stamps in use (dots[s]: nv x nv, nv = nbasis + 2: the basis
 * convolutions, the constant, I), unknowns ordered basis 0's constant, each
 * other basis's spatial monomials (order ko), the background's (order bo),
 * inverted by Gauss-Jordan with partial pivoting; cov receives the kernel's
 * nk x nk block, nk = 1 + (nbasis - 1) (ko + 1)(ko + 2) / 2. */
void al_kerr_ref_covariance(const double *dots, size_t ns, const int *use, const int *cx, const int *cy, size_t w,
                            size_t h, int nbasis, int ko, int bo, double *cov);

/* The kernel's error in DETECT at (x, y) by definition: W_b = B_b * T by
 * direct 2-D convolution (images: nbasis ks x ks, row v, column u; T: w x h,
 * t already less its level, 0 where unusable), h_u = sum_q g(q) P_l(x + q)
 * W_b(x + q) over the whole gsize x gsize g (correlation), den^2 = sum_q
 * p2(q) var(x + q) over psize x psize, sigma = sqrt(scale h^T C h / den^2) / |norm|.
 * cs receives the same with each h_u replaced by |g| |P_l W_b| (L2 norms
 * over g's square) and C by |C|: by Cauchy-Schwarz, a change of g holding a
 * share e of sum g^2 moves sigma by at most sqrt(e) cs (sigma is a norm of h). */
double al_kerr_ref_sigma(const double *images, int nbasis, int ks, int ko, const double *cov, const double *g,
                         int gsize, const double *p2, int psize, const double *t, const float *var, size_t w,
                         size_t h, double norm, double scale, long x, long y, double *cs);

#endif
