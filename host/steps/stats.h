/* Statistics of images already on the device, for other modules (calibration
 * normalises flats with it, combine scales frames). Not public API. */
#ifndef CLRED_STATS_H
#define CLRED_STATS_H

#include "internal.h"

/* 1 / Phi^-1(3/4): turns a MAD into a standard deviation for normal data, the
 * constant astropy.stats.mad_std uses ("1.4826"). */
#define CLRED_MAD_TO_SIGMA 1.482602218505602

/* Sigma-clipped statistics of the float image sci (width x height, row-major)
 * with an optional 16-bit mask (NULL = none), both already on ctx's device.
 * Same semantics as clred_image_stats: opts NULL means clred_stats_defaults();
 * no usable pixel gives CLRED_OK with npix 0 and NaN statistics. */
clred_status clred_stats_device(clred_ctx *ctx, cl_mem sci, cl_mem mask, size_t width, size_t height,
                                const clred_stats_opts *opts, clred_stats *out);

#endif
