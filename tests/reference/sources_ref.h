/* Double-precision references for source detection (kernels/sources.cl). */
#ifndef CLRED_SOURCES_REF_H
#define CLRED_SOURCES_REF_H

#include <stddef.h>
#include <stdint.h>

/* Unit-sum Gaussian matched filter of a background-subtracted image d (NaN =
 * unusable), renormalised over usable pixels, half-width ceil(1.5 fwhm).
 * filtered[i] is NaN where no usable pixel is in the window; snr[i] is
 * F / sigma_F with sigma_F = sqrt(sum K^2 rms^2) / sum K; norm2 returns
 * sqrt(sum K^2) of the full kernel. */
void ref_matched_filter(const double *d, const double *rms, size_t w, size_t h, double fwhm, double *filtered,
                        double *snr, double *norm2);

/* 8-connected components of on[] by breadth-first search; each pixel gets the
 * smallest linear index in its component + 1, 0 when off. */
void ref_label(const unsigned char *on, size_t w, size_t h, uint32_t *labels);

/* Adaptive Gaussian-windowed moments of source `label` in seg (pixels of other
 * sources left out), iterating W = 2 M from (x, y) and W0 until converged.
 * Returns 1 and the centre and covariance on success, 0 when not converged. */
int ref_adaptive_moments(const double *d, size_t w, size_t h, const int32_t *seg, int32_t label, double x0,
                         double y0, double w0, double *x, double *y, double *cxx, double *cyy, double *cxy);

/* SExtractor's windowed centroid (XWIN_IMAGE): a circular Gaussian window of
 * sigma sig out to 4 sig (pixels of other sources in seg and NaN left out),
 * x += 2 sum(w d dx) / sum(w d), at most 16 steps, until a step is below
 * 1e-4 px. Returns 0 when the weighted sum is not positive. */
int ref_winpos(const double *d, size_t w, size_t h, const int32_t *seg, int32_t label, double x0, double y0,
               double sig, double *x, double *y);

/* The 3-sigma clipped median and standard deviation (up to 10 rounds) by
 * sorting: the window of the sorted values kept each round. */
int ref_clipped_level(const double *v, size_t m, double *level, double *rms);

/* A filter file's kernel k (kw x kh, row by row from the lowest y) over d
 * (NaN = unusable): renorm (CONV NORM, k of unit sum) F = sum k d / sum k,
 * else F = sum k d, over the usable pixels; snr[i] = sum k d / sqrt(sum k^2
 * rms^2). NaN where nothing usable (or, renormalising, sum k <= 0). */
void ref_filter_2d(const double *d, const double *rms, size_t w, size_t h, const double *k, int kw, int kh,
                   int renorm, double *filtered, double *snr);

#endif
