/* Double-precision reference for kernels/cube.cl. */
#ifndef CLRED_CUBE_REF_H
#define CLRED_CUBE_REF_H

#include <stddef.h>

/* Per-pixel median and raw MAD of the finite values of frames[0..n)[i]
 * (median of an even count: the mean of the two middle values); NaN where
 * none is finite. */
void cube_ref_temporal(const float *const *frames, size_t n, size_t npix, double *med, double *mad);

#endif
