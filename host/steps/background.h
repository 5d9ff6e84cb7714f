/* The background model's evaluation, for other modules (the model product,
 * coadd backgrounds, matching). Not public API. */
#ifndef CLRED_BACKGROUND_H
#define CLRED_BACKGROUND_H

#include "internal.h"

/* Rows [y0, y0 + nrows) of the model's background and RMS maps into the
 * device buffers bkg_map and rms_map (nrows * width floats each), enqueued. */
clred_status clred_bkg_eval_into(clred_ctx *ctx, const clred_bkg_model *m, size_t y0, size_t nrows, cl_mem bkg_map,
                                 cl_mem rms_map);

#endif
