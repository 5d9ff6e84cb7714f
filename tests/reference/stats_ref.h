/* Double-precision reference for image statistics (tests only). */
#ifndef CLRED_STATS_REF_H
#define CLRED_STATS_REF_H

#include <stddef.h>
#include <stdint.h>

#include "clred.h"

/* Sigma-clipped statistics with the semantics of clred_image_stats, computed the
 * plain way: the usable pixels of the region copied into a double array,
 * their exact median (by selection) each iteration, clipped with bounds from it. mask may be
 * NULL. Returns 0, or -1 when the options or region are invalid. */
int stats_ref(const float *sci, const uint16_t *mask, size_t width, size_t height, const clred_stats_opts *opts,
              clred_stats *out);

/* Median of n doubles (permutes them); NaN for n = 0. */
double stats_ref_median(double *v, size_t n);

#endif
