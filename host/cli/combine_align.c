/* clred combine --align. The frames are held in memory, unlike a plain
 * combine's bands of rows: every frame is resampled whole before any pixel
 * can be combined. */
#include <stdlib.h>
#include <string.h>

#include "combine_align.h"

/* One HISTORY card per frame with its shift, then the alignment settings. */
static clred_status add_history(clred_header *h, const cli_frame *frames, const clred_shift *s, size_t n,
                                const combine_align_opts *a, const clred_grid_geometry *g)
{
    char text[256];
    for (size_t i = 0; i < n; i++) {
        const char *slash = strrchr(frames[i].path, '/'), *name = slash ? slash + 1 : frames[i].path;
        snprintf(text, sizeof text, "clred align: %.24s[%zu] dx=%+.3f dy=%+.3f psr=%.0f", name, frames[i].frame,
                 s[i].dx, s[i].dy, s[i].psr);
        clred_status st = clred_header_add_history(h, text);
        if (st != CLRED_OK)
            return st;
    }
    snprintf(text, sizeof text, "clred align: ref=%s%ld interp=%s grid=%s offset=(%g,%g) precision=%g",
             a->ref_index < 0 ? "median" : "frame ", a->ref_index < 0 ? 0L : a->ref_index,
             cli_interp_names[a->ropts.interp], a->grid == CLRED_GRID_UNION ? "union" : "reference", g->ox, g->oy,
             a->popts.precision);
    return clred_header_add_history(h, text);
}

static clred_status align_and_combine(clred_ctx *ctx, const cli_frame *list, clred_image *frames, size_t n,
                                      const clred_combine_opts *copts, const combine_align_opts *a,
                                      clred_combine_result *out, clred_shift *shifts)
{
    clred_transform *to_ref = calloc(n, sizeof *to_ref);
    clred_image *aligned = calloc(n, sizeof *aligned);
    if (!to_ref || !aligned) {
        free(to_ref);
        free(aligned);
        return CLRED_ERR_MEMORY;
    }
    clred_status st = clred_measure_shifts(ctx, frames, n, a->ref_index, &a->popts, shifts);
    /* img(x) = ref(x - d): moving each frame by -d lands it on the reference. */
    for (size_t i = 0; i < n && st == CLRED_OK; i++)
        to_ref[i] = clred_transform_translation(-shifts[i].dx, -shifts[i].dy);
    clred_grid_geometry g;
    if (st == CLRED_OK)
        st = clred_resample_onto_grid(ctx, frames, n, to_ref, a->grid, &a->ropts, aligned, &g);
    int have_aligned = st == CLRED_OK;
    if (st == CLRED_OK)
        st = clred_combine_images(ctx, aligned, n, copts, out);
    if (st == CLRED_OK && out->image.header)
        st = add_history(out->image.header, list, shifts, n, a, &g);
    if (have_aligned)
        for (size_t i = 0; i < n; i++)
            clred_image_free(&aligned[i]);
    free(aligned);
    free(to_ref);
    return st;
}

int combine_aligned(const char *cmd, clred_ctx *ctx, const char *const *inputs, size_t ninputs,
                    const clred_combine_opts *copts, const combine_align_opts *aopts, clred_combine_result *out,
                    clred_shift **shifts, size_t *nframes)
{
    cli_frame *list = NULL;
    clred_image *frames = NULL;
    size_t n = 0;
    *shifts = NULL;
    *nframes = 0;
    int rc = cli_list_frames(cmd, inputs, ninputs, &list, &n);
    if (rc == EXIT_OK && aopts->ref_index >= (long)n)
        rc = cli_usage_error(cmd, "--ref %ld: there are %zu frames (numbered from 0)", aopts->ref_index, n);
    if (rc == EXIT_OK)
        rc = cli_read_frames(cmd, list, n, &frames);
    if (rc == EXIT_OK) {
        *shifts = calloc(n, sizeof **shifts);
        clred_status st = *shifts ? align_and_combine(ctx, list, frames, n, copts, aopts, out, *shifts)
                                  : CLRED_ERR_MEMORY;
        if (st == CLRED_ERR_MEMORY && !*clred_last_error()) {
            fprintf(stderr, "clred %s: out of memory aligning %zu frames\n", cmd, n);
            rc = EXIT_BAD_INPUT;
        } else if (st != CLRED_OK) {
            rc = cli_fail(cmd, st);
        }
        if (rc != EXIT_OK) {
            free(*shifts);
            *shifts = NULL;
        }
        cli_free_images(frames, n);
    }
    *nframes = rc == EXIT_OK ? n : 0;
    free(list);
    return rc;
}
