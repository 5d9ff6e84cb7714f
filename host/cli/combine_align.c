/* clred combine --align. The frames are held in memory, unlike a plain
 * combine's bands of rows: every frame is resampled whole before any pixel
 * can be combined. */
#include <stdlib.h>
#include <string.h>

#include "combine_align.h"

void combine_alignment_free(combine_alignment *a)
{
    free(a->to_ref);
    free(a->shifts);
    free(a->matches);
    memset(a, 0, sizeof *a);
}

/* One HISTORY card per frame with what was measured, then the settings. */
static clred_status add_history(clred_header *h, const cli_frame *frames, const combine_alignment *f,
                                const combine_align_opts *a, const clred_grid_geometry *g)
{
    char text[256];
    for (size_t i = 0; i < f->n; i++) {
        const char *slash = strrchr(frames[i].path, '/'), *name = slash ? slash + 1 : frames[i].path;
        if (f->shifts)
            snprintf(text, sizeof text, "clred align: %.24s[%zu] dx=%+.3f dy=%+.3f psr=%.0f", name, frames[i].frame,
                     f->shifts[i].dx, f->shifts[i].dy, f->shifts[i].psr);
        else
            snprintf(text, sizeof text, "clred align: %.24s[%zu] stars=%zu rms=%.3f scale=%.5f rot=%+.4f", name,
                     frames[i].frame, f->matches[i].nmatched, f->matches[i].rms, f->matches[i].scale,
                     f->matches[i].rotation_deg);
        clred_status st = clred_header_add_history(h, text);
        if (st != CLRED_OK)
            return st;
    }
    snprintf(text, sizeof text, "clred align: by=%s ref=%s%ld interp=%s grid=%s offset=(%g,%g)",
             a->by_stars ? "stars" : "phasecorr", a->ref_index < 0 ? "median" : "frame ",
             a->ref_index < 0 ? 0L : a->ref_index, cli_interp_names[a->ropts.interp],
             a->grid == CLRED_GRID_UNION ? "union" : "reference", g->ox, g->oy);
    return clred_header_add_history(h, text);
}

/* Fills f->to_ref (and shifts or matches); *failed names a frame that failed. */
static clred_status find_transforms(clred_ctx *ctx, const clred_image *frames, const combine_align_opts *a,
                                    combine_alignment *f, size_t *failed)
{
    size_t n = f->n;
    *failed = n;
    if (a->by_stars) {
        f->matches = calloc(n, sizeof *f->matches);
        if (!f->matches)
            return CLRED_ERR_MEMORY;
        clred_status st = clred_find_transforms(ctx, frames, n, a->ref_index, NULL, &a->mopts, f->matches,
                                                failed);
        for (size_t i = 0; i < n && st == CLRED_OK; i++)
            f->to_ref[i] = f->matches[i].transform;
        return st;
    }
    f->shifts = calloc(n, sizeof *f->shifts);
    if (!f->shifts)
        return CLRED_ERR_MEMORY;
    clred_status st = clred_measure_shifts(ctx, frames, n, a->ref_index, &a->popts, f->shifts);
    /* img(x) = ref(x - d): moving each frame by -d lands it on the reference. */
    for (size_t i = 0; i < n && st == CLRED_OK; i++)
        f->to_ref[i] = clred_transform_translation(-f->shifts[i].dx, -f->shifts[i].dy);
    return st;
}

static clred_status align_and_combine(clred_ctx *ctx, const cli_frame *list, clred_image *frames,
                                      const clred_combine_opts *copts, const combine_align_opts *a,
                                      clred_combine_result *out, combine_alignment *f, size_t *failed)
{
    size_t n = f->n;
    clred_image *aligned = calloc(n, sizeof *aligned);
    f->to_ref = calloc(n, sizeof *f->to_ref);
    if (!aligned || !f->to_ref) {
        free(aligned);
        return CLRED_ERR_MEMORY;
    }
    clred_status st = find_transforms(ctx, frames, a, f, failed);
    clred_grid_geometry g;
    if (st == CLRED_OK) {
        *failed = n;
        st = clred_resample_onto_grid(ctx, frames, n, f->to_ref, a->grid, &a->ropts, aligned, &g);
    }
    int have_aligned = st == CLRED_OK;
    if (st == CLRED_OK)
        st = clred_combine_images(ctx, aligned, n, copts, out);
    if (st == CLRED_OK && out->image.header)
        st = add_history(out->image.header, list, f, a, &g);
    if (have_aligned)
        for (size_t i = 0; i < n; i++)
            clred_image_free(&aligned[i]);
    free(aligned);
    return st;
}

int combine_aligned(const char *cmd, clred_ctx *ctx, const char *const *inputs, size_t ninputs,
                    const clred_combine_opts *copts, const combine_align_opts *aopts, clred_combine_result *out,
                    combine_alignment *found)
{
    cli_frame *list = NULL;
    clred_image *frames = NULL;
    size_t n = 0;
    memset(found, 0, sizeof *found);
    int rc = cli_list_frames(cmd, inputs, ninputs, &list, &n);
    if (rc == EXIT_OK && aopts->ref_index >= (long)n)
        rc = cli_usage_error(cmd, "--ref %ld: there are %zu frames (numbered from 0)", aopts->ref_index, n);
    if (rc == EXIT_OK)
        rc = cli_read_frames(cmd, list, n, &frames);
    if (rc == EXIT_OK) {
        found->n = n;
        size_t failed = n;
        clred_status st = align_and_combine(ctx, list, frames, copts, aopts, out, found, &failed);
        if (st != CLRED_OK && failed < n) {
            fprintf(stderr, "clred %s: %s[%zu]: %s\n", cmd, list[failed].path, list[failed].frame,
                    clred_last_error());
            rc = cli_exit_code(st);
        } else if (st != CLRED_OK) {
            rc = cli_fail(cmd, st);
        }
        if (rc != EXIT_OK)
            combine_alignment_free(found);
        cli_free_images(frames, n);
    }
    free(list);
    return rc;
}
