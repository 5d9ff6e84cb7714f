/* clred combine --align: frames aligned on the device before they are combined. */
#ifndef CLRED_CLI_COMBINE_ALIGN_H
#define CLRED_CLI_COMBINE_ALIGN_H

#include "cli.h"

typedef struct {
    long ref_index;             /* reference frame; -1 = the median of the stack */
    clred_grid grid;            /* reference grid or the union of the frames */
    clred_phasecorr_opts popts;
    clred_resample_opts ropts;
} combine_align_opts;

/* Reads every frame of the inputs into memory, measures each one's shift
 * against the reference, resamples them onto the grid and combines them with
 * copts. *shifts (malloc'd, *nframes entries) receives the measured shifts.
 * Prints any error and returns an exit code. */
int combine_aligned(const char *cmd, clred_ctx *ctx, const char *const *inputs, size_t ninputs,
                    const clred_combine_opts *copts, const combine_align_opts *aopts, clred_combine_result *out,
                    clred_shift **shifts, size_t *nframes);

#endif
