/* Plain C double-precision reference of PSF-fit photometry (the algorithm of
 * kernels/psfphot.cl, written independently): a source, its nearest
 * neighbours and a constant sky fitted by weighted least squares over the
 * union of discs around their start positions, positions by Gauss-Newton. */
#ifndef PSFPHOT_REF_H
#define PSFPHOT_REF_H

#include <stddef.h>
#include <stdint.h>

#include "clred.h"

typedef struct {
    double x, y, x_err, y_err, flux, flux_err, sky, chi2_dof;
    size_t npix;
    unsigned flags;
} psfphot_ref_result;

/* fit_radius, group_radius (0 = alone) and core_radius in px, as the device
 * receives them (resolved from the options). */
void psfphot_ref(const clred_image *img, const clred_psf *psf, const double *x, const double *y, size_t n,
                 double fit_radius, double group_radius, double core_radius, int fit_sky, int fit_pos, int max_iters,
                 double max_shift, double min_snr_pos, uint16_t ignore, psfphot_ref_result *out);

#endif
