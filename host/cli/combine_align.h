/* clred combine --align: frames aligned on the device before they are combined. */
#ifndef CLRED_CLI_COMBINE_ALIGN_H
#define CLRED_CLI_COMBINE_ALIGN_H

#include "cli.h"

typedef struct {
    int by_stars;               /* 0: phase correlation (translations); 1: star matching */
    long ref_index;             /* reference frame; -1 = the median of the stack (phase correlation only) */
    clred_grid grid;            /* reference grid or the union of the frames */
    clred_phasecorr_opts popts;
    clred_match_opts mopts;
    clred_resample_opts ropts;
} combine_align_opts;

/* What the alignment measured, one entry per frame: the transform onto the
 * reference, and for phase correlation the shift with its confidence. */
typedef struct {
    size_t n;
    clred_transform *to_ref;
    clred_shift *shifts;         /* NULL when by stars */
    clred_match_result *matches; /* NULL when by phase correlation */
} combine_alignment;

void combine_alignment_free(combine_alignment *a);

/* Reads every frame of the inputs into memory, finds each one's transform
 * onto the reference, resamples them onto the grid and combines them with
 * copts. Prints any error (naming the frame that failed) and returns an exit code. */
int combine_aligned(const char *cmd, clred_ctx *ctx, const char *const *inputs, size_t ninputs,
                    const clred_combine_opts *copts, const combine_align_opts *aopts, clred_combine_result *out,
                    combine_alignment *found);

#endif
