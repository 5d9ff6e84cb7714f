/* The per-pixel sky noise away from the stars (zeropoint.c), shared with the
 * frame-quality step; not part of the public API. */
#ifndef CLRED_BLANKSKY_H
#define CLRED_BLANKSKY_H

#include "internal.h"

/* The median of the clipped spreads of discs (radius po's annulus_out, else
 * twice its aperture radius) on a grid whose centres keep clear of the n
 * detected stars; NaN in *rms when there is no blank sky. */
clred_status clred_blank_sky_rms(clred_ctx *ctx, const clred_dimage *img, const clred_source *stars, size_t n,
                                 const clred_phot_opts *po, double *rms);

#endif
