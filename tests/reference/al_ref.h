/* Double-precision reference for the Alard-Lupton pieces (tests/test_al.c):
 * the basis from its definition, stamps' normal equations by direct 2-D
 * convolution, the global system's solution, and the spatially varying
 * convolution at a pixel. */
#ifndef AL_REF_H
#define AL_REF_H

#include <stddef.h>
#include <stdint.h>

/* nbasis images of (2 hw + 1)^2 (malloc'd) built as in host/steps/al_basis.c's
 * comment: G_k(u) (u / hw)^i (x) G_k(v) (v / hw)^j, each axis' factor scaled to
 * unit sum when it is G_0 alone, else to unit L2 norm; every function but
 * the first, when i and j are even, less its sum times the first. */
double *al_ref_basis(int ngauss, const double *sigmas, const int *deg, int hw, int *nbasis);

/* The stamp at (cx, cy): S (nv x nv, nv = nbasis + 2) of the weighted dot
 * products of the basis convolutions of t - tlev, the constant 1 and
 * i - ilev, weights 1 / (ivar + tvar) (the constants where a plane is NULL). */
void al_ref_stamp(const float *t, const float *tvar, double tvar0, double tlev, const float *i, const float *ivar,
                  double ivar0, double ilev, size_t w, const double *basis, int nbasis, int hw, int r, int cx, int cy,
                  double *S);

/* al_ref_stamp where some pixels are unusable (t_ok, i_ok: 1 where usable,
 * w x h): a fitted pixel counts only where I is usable and T over the
 * kernel's footprint is, all within the image (the others weigh 0).
 * Returns the fitted pixels of weight > 0 (usable, variance > 0): those in
 * the stamp's chi^2. */
int al_ref_stamp_masked(const float *t, const float *tvar, double tvar0, double tlev, const unsigned char *t_ok,
                        const float *i, const float *ivar, double ivar0, double ilev, const unsigned char *i_ok,
                        size_t w, size_t h, const double *basis, int nbasis, int hw, int r, int cx, int cy, double *S);

/* The solution of the global system (basis 0 constant, the others with
 * spatial monomials of kernel order ko, the background of order bo, on
 * xs = 2 x / (w - 1) - 1): the normal matrix scaled to a unit diagonal plus
 * ridge times the identity (0: plain least squares), by Cholesky. Returns 0
 * on success. */
int al_ref_solve(const double *S, size_t ns, const int *cx, const int *cy, size_t w, size_t h, int nbasis, int ko,
                 int bo, double ridge, double *coef);

/* The spatial monomials of order `order` at (x, y) into p: 1, xs, ys, xs^2,
 * xs ys, ys^2, ... with xs = 2 x / (w - 1) - 1 (likewise ys); returns their count. */
int al_ref_poly(int order, double x, double y, size_t w, size_t h, double *p);

/* The kernel at (x, y) from a solution (as al_ref_solve lays it out). */
void al_ref_kernel(const double *coef, const double *basis, int nbasis, int hw, int ko, double x, double y, size_t w,
                   size_t h, double *k);
/* sum K(u, v) (t(x - u, y - v) - tlev) and sum K^2 tvar at (x, y). */
void al_ref_convolve(const double *k, int hw, const float *t, const float *tvar, double tvar0, double tlev, size_t w,
                     int x, int y, double *c, double *cv, double *abs_sum);

#endif
