/* Double-precision references for aperture photometry (kernels/photometry.cl). */
#ifndef CLRED_PHOTOMETRY_REF_H
#define CLRED_PHOTOMETRY_REF_H

#include <stddef.h>
#include <stdint.h>

/* Area of the circle (cx, cy, r) inside pixel (px, py) by adaptive Simpson
 * integration of the chord length over x (a different construction from the
 * library's closed form); absolute error below ~1e-11. */
double ref_overlap(double cx, double cy, double r, double px, double py);

typedef struct {
    double flux, err, area, bkg, bkg_rms;
    size_t nannulus;
    unsigned flags; /* 0x02 edge, 0x04 masked, 0x20 no background */
} ref_phot;

/* Aperture photometry of one position: weights from ref_overlap, annulus pixel
 * centres with rin <= d <= rout, clipped median (about the median, population
 * std, as astropy's sigma_clip) by sorting in double. var and
 * mask may be NULL. */
void ref_aperture(const float *sci, const float *var, const uint16_t *mask, uint16_t ignore, size_t w, size_t h,
                  double x, double y, double r, double rin, double rout, double clip_sigma, int clip_iters,
                  ref_phot *out);

#endif
