/* Shared by the calibration files (calibrate.c, overscan.c, masters.c); not
 * public API. */
#ifndef CLRED_CALIBRATE_H
#define CLRED_CALIBRATE_H

#include "internal.h"

/* Inputs the fused kernel has; the same values as in kernels/calibrate.cl. */
#define CAL_OVERSCAN 0x0001u
#define CAL_BIAS 0x0002u
#define CAL_BIAS_VAR 0x0004u
#define CAL_BIAS_MASK 0x0008u
#define CAL_DARK 0x0010u
#define CAL_DARK_VAR 0x0020u
#define CAL_DARK_MASK 0x0040u
#define CAL_FLAT 0x0080u
#define CAL_FLAT_VAR 0x0100u
#define CAL_FLAT_MASK 0x0200u
#define CAL_BPM 0x0400u
#define CAL_POISSON 0x0800u
#define CAL_SCI_ONLY 0x1000u

/* The widest overscan the per-row median sorts in private memory (OVERSCAN_MAX
 * in kernels/calibrate.cl). */
#define CAL_OVERSCAN_MAX 256

/* Sigma clipping of the whole-overscan mean (CLRED_OVERSCAN_MEAN). */
#define CAL_OVERSCAN_CLIP_SIGMA 3.0
#define CAL_OVERSCAN_CLIP_ITERS 5

/* Where a frame's overscan and kept region are, once options and header are
 * resolved. */
typedef struct {
    clred_overscan_mode mode; /* never CLRED_OVERSCAN_AUTO */
    clred_section biassec;    /* 0-based, half-open; set when mode != NONE */
    clred_section trimsec;    /* 0-based, half-open; always set (the whole frame if nothing says otherwise) */
    int order;                /* polynomial order for FIT */
    int biassec_from_header, trimsec_from_header;
    char note[200];           /* a header section that was ignored, and why ("" if none) */
} cal_geometry;

/* "[x1:x2,y1:y2]" of a 0-based section. */
void cal_section_format(const clred_section *s, char *out, size_t size);

/* Resolves the overscan mode and the sections of a raw frame from opts and
 * its header. name is used in messages. */
clred_status cal_resolve_geometry(const clred_image *raw, const char *name, const clred_calib_opts *opts,
                                  cal_geometry *g);

/* The overscan level of every raw row (h values; rows the mode does not
 * define are NaN), estimated on the device from the raw frame already there.
 * *level receives the mean of the estimate over the trimmed rows (for HISTORY). */
clred_status cal_overscan_rows(clred_ctx *ctx, cl_mem raw, size_t width, size_t height, const cal_geometry *g,
                               const char *name, float *rows, double *level);

/* Least-squares polynomial of the given order through the points (i, y[i])
 * whose y[i] is finite, evaluated at i = 0 .. n-1 into out (double
 * throughout). Fails if fewer than order + 1 finite points. */
clred_status cal_poly_fit_eval(const double *y, size_t n, int order, const char *name, double *out);

/* Per-frame variants used by the masters. */
typedef struct {
    int no_poisson;     /* a bias frame: no photon noise */
    double extra_scale; /* multiplies sci (var by its square) after everything; 0 = 1 */
    int sci_only;       /* the output has SCI alone (no VAR, no MASK): less to write and to
                           keep; the SCI bits are those of the full product */
} cal_frame_kind;

/* Calibrates a raw frame on the device into a new device image (SCI, VAR,
 * MASK, the raw header with HISTORY), with the per-frame variant kind (NULL
 * for a science frame). */
/* The context a calibrator works in. */
clred_ctx *cal_ctx(const clred_calibrator *cal);
clred_status cal_apply_dev(clred_calibrator *cal, const clred_dimage *raw, const char *name,
                           const cal_frame_kind *kind, clred_dimage **out);

#endif
