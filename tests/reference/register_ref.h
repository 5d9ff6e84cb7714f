/* Double-precision references for the registration module: direct DFTs,
 * interpolation kernels and resampling, and a Fourier shift. */
#ifndef CLRED_REGISTER_REF_H
#define CLRED_REGISTER_REF_H

#include <stddef.h>

/* Half spectrum of a real nx x ny image by the plain DFT sums (each row's,
 * then each column's: O(N^1.5) for N pixels, no FFT):
 * re/im hold ny rows of nx / 2 + 1 bins, F(kx, ky) = sum x(u, v) e^{-2 pi i (kx u / nx + ky v / ny)}. */
void ref_dft2_r2c(const double *x, size_t nx, size_t ny, double *re, double *im);

/* Shifts an image by (dx, dy) exactly for a band-limited periodic signal:
 * out(x, y) = in(x - dx, y - dy), by a direct DFT and its inverse (slow; small images). */
void ref_fourier_shift(const double *in, size_t nx, size_t ny, double dx, double dy, double *out);

/* The 1-D interpolation weight of a tap at distance t: kind 0 nearest,
 * 1 bilinear, 2 bicubic (Keys a = -0.5), 3 Lanczos-3. */
double ref_interp_weight(int kind, double t);

/* One resampled value at input position (u, v): the weights of the taps
 * (clamped to the image), normalised to sum 1, with usable[] deciding which
 * inputs count (NULL = all). Returns NaN when no tap is usable; *var_out (if
 * var) = sum w^2 var; *touched_unusable = 1 if a skipped tap had weight. */
double ref_interp_at(const float *img, const float *var, const unsigned char *usable, size_t w, size_t h, int kind,
                     double u, double v, double *var_out, int *touched_unusable);

/* The phase-correlation surface of img against ref (w x h floats) as
 * clred computes it, in double: each frame less the median of its usable
 * pixels (usable[] NULL = every finite pixel; others count as the median),
 * times the window (0 none, 1 Hann, 2 Tukey(alpha)), zero-padded to nx x ny;
 * the cross-power spectrum F(img) conj(F(ref)) (normalised to unit modulus
 * when phase_only), inverted: surface[y * nx + x] (plain DFT sums, row by row then column by
 * column: small frames). */
void ref_phasecorr_surface(const float *ref, const unsigned char *ref_usable, const float *img,
                           const unsigned char *img_usable, size_t w, size_t h, size_t nx, size_t ny, int window,
                           double alpha, int phase_only, double *surface);

/* The same surface off the integer grid, at the points (xs[p], ys[p]): the
 * band-limited interpolant that clred's upsampled DFT evaluates,
 * c(x, y) = Re sum_ky sum_kx w_kx C(kx, ky) e^{2 pi i (kx x / nx + fy y / ny)} / (nx ny)
 * over the half spectrum C, fy = ky or ky - ny past ny / 2, w_kx = 2 except
 * for kx = 0 and the Nyquist column (1). */
void ref_phasecorr_at(const float *ref, const unsigned char *ref_usable, const float *img,
                      const unsigned char *img_usable, size_t w, size_t h, size_t nx, size_t ny, int window,
                      double alpha, int phase_only, const double *xs, const double *ys, size_t npoints, double *out);

/* The first highest value of the surface in raster order within max_shift
 * px of zero (0 = anywhere) as a signed shift (*px, *py), and its
 * peak-to-sidelobe ratio: (peak - mean) / std (sample, two-pass) of the
 * surface outside the 11 x 11 px cyclic box around the peak. */
void ref_surface_peak_psr(const double *surface, size_t nx, size_t ny, double max_shift, long *px, long *py,
                          double *psr);

#endif
