/* Align and combine, as one library call: register (phase-correlation shifts
 * or star transforms) -> the output grid (clred_grid_for) -> resample every
 * frame onto it -> combine; on device images (clred_stack_dev) or on files,
 * each frame read once onto the device (clred_stack_files).
 *
 * Choices:
 * - the output header is the reference's (frame 0's for the median
 *   reference), with the combine's NCOMBINE and HISTORY, then one HISTORY card
 *   per frame with what registration found and one with the settings and the
 *   grid;
 * - a registration failure names its frame in the message and in
 *   alignment->failed (star matching: the frame whose stars did not match;
 *   phase correlation always returns a shift, whose PSR says how sure it is);
 * - clred_stack_files frees each input frame once it is resampled, so at most
 *   the inputs and the aligned frames are on the device together.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

clred_stack_opts clred_stack_defaults(void)
{
    clred_stack_opts o;
    memset(&o, 0, sizeof o);
    o.method = CLRED_REGISTER_SHIFTS;
    o.ref_index = 0;
    o.grid = CLRED_GRID_REFERENCE;
    o.popts = clred_phasecorr_defaults();
    /* What clred_detect_stars uses when given no options. */
    o.dopts = clred_detect_defaults();
    o.dopts.thresh = 5.0;
    o.mopts = clred_match_defaults();
    o.ropts = clred_resample_defaults();
    o.copts = clred_combine_defaults();
    o.bkgmatch = clred_bkgmatch_defaults();
    return o;
}

void clred_alignment_free(clred_alignment *a)
{
    if (!a)
        return;
    free(a->to_ref);
    free(a->shifts);
    free(a->matches);
    memset(a, 0, sizeof *a);
    a->failed = -1;
}

/* Where a frame came from, for messages and HISTORY: a file and the frame in
 * it (clred_stack_files), or only its index (clred_stack_dev). */
typedef struct {
    const char *path;
    size_t frame;
} stack_source;

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* "path[frame]" or "frame i", for messages. */
static void frame_label(char *out, size_t size, const stack_source *src, size_t i)
{
    if (src)
        snprintf(out, size, "%s[%zu]", src[i].path, src[i].frame);
    else
        snprintf(out, size, "frame %zu", i);
}

/* Prefixes the current error message with the frame it is about. */
static clred_status fail_for_frame(clred_status st, const stack_source *src, size_t i)
{
    char label[4200], message[1024];
    frame_label(label, sizeof label, src, i);
    snprintf(message, sizeof message, "%s", clred_last_error());
    return clred_fail(st, "%s: %s", label, message);
}

/* ------------------------------------------------------------ the steps */

static clred_status check_request(const clred_dimage *const *frames, size_t n, const clred_stack_opts *o,
                                  const stack_source *src)
{
    if (n == 0)
        return clred_fail(CLRED_ERR_USAGE, "stack: no frames given");
    for (size_t i = 0; i < n; i++)
        if (!frames[i])
            return clred_fail(CLRED_ERR_USAGE, "stack: frame %zu is NULL", i);
    if (o->ref_index >= (long)n)
        return clred_fail(CLRED_ERR_USAGE, "stack: reference frame %ld does not exist: there are %zu frames "
                                           "(numbered from 0)", o->ref_index, n);
    if (o->method == CLRED_REGISTER_STARS && o->ref_index < 0)
        return clred_fail(CLRED_ERR_USAGE, "stack: star matching needs a reference frame, not the median");
    if (o->method == CLRED_REGISTER_STARS && o->ropts.interp == CLRED_INTERP_FOURIER)
        return clred_fail(CLRED_ERR_USAGE, "stack: the Fourier interpolant shifts only; star matching also rotates "
                                           "and scales");
    if (o->ropts.interp == CLRED_INTERP_FOURIER && o->grid != CLRED_GRID_REFERENCE)
        return clred_fail(CLRED_ERR_USAGE, "stack: the Fourier interpolant resamples onto the reference grid only");
    for (size_t i = 1; i < n; i++)
        if (frames[i]->width != frames[0]->width || frames[i]->height != frames[0]->height) {
            char label[4200];
            frame_label(label, sizeof label, src, i);
            return clred_fail(CLRED_ERR_INPUT, "%s: %zux%zu, but the first frame is %zux%zu: frames to stack "
                                               "must have one shape", label, frames[i]->width, frames[i]->height,
                              frames[0]->width, frames[0]->height);
        }
    return CLRED_OK;
}

/* Fills al->to_ref and the shifts or matches; a failure names its frame. */
static clred_status register_frames(clred_ctx *ctx, const clred_dimage *const *frames, size_t n,
                                    const clred_stack_opts *o, const stack_source *src, clred_alignment *al)
{
    al->to_ref = calloc(n, sizeof *al->to_ref);
    if (o->method == CLRED_REGISTER_STARS)
        al->matches = calloc(n, sizeof *al->matches);
    else
        al->shifts = calloc(n, sizeof *al->shifts);
    if (!al->to_ref || (!al->matches && !al->shifts))
        return clred_fail(CLRED_ERR_MEMORY, "stack: out of memory for %zu transforms", n);
    if (o->method == CLRED_REGISTER_STARS) {
        size_t failed = n;
        clred_status st = clred_find_transforms_dev(ctx, frames, n, o->ref_index, &o->dopts, &o->mopts, al->matches,
                                                   &failed);
        if (st != CLRED_OK && failed < n) {
            al->failed = (long)failed;
            return fail_for_frame(st, src, failed);
        }
        CLRED_TRY(st);
        for (size_t i = 0; i < n; i++)
            al->to_ref[i] = al->matches[i].transform;
        return CLRED_OK;
    }
    size_t failed;
    clred_status st = clred_measure_shifts_which(ctx, frames, n, o->ref_index, &o->popts, al->shifts, &failed);
    if (st != CLRED_OK && failed < n) {
        al->failed = (long)failed;
        return fail_for_frame(st, src, failed);
    }
    CLRED_TRY(st);
    /* img(x) = ref(x - d): moving each frame by -d lands it on the reference. */
    for (size_t i = 0; i < n; i++)
        al->to_ref[i] = clred_transform_translation(-al->shifts[i].dx, -al->shifts[i].dy);
    return CLRED_OK;
}

/* One HISTORY card per frame with what registration found, then one with
 * the settings and the grid (the combine has added its own). */
static clred_status add_history(clred_header *h, const clred_stack_opts *o, const stack_source *src,
                                const clred_alignment *al)
{
    static const char *const interp_names[] = {"nearest", "bilinear", "bicubic", "lanczos3", "fourier"};
    char text[256], label[64];
    for (size_t i = 0; i < al->n; i++) {
        if (src)
            snprintf(label, sizeof label, "%.24s[%zu]", base_name(src[i].path), src[i].frame);
        else
            snprintf(label, sizeof label, "frame %zu", i);
        if (al->shifts)
            snprintf(text, sizeof text, "clred align: %s dx=%+.3f dy=%+.3f psr=%.0f", label, al->shifts[i].dx,
                     al->shifts[i].dy, al->shifts[i].psr);
        else
            snprintf(text, sizeof text, "clred align: %s stars=%zu rms=%.3f scale=%.5f rot=%+.4f", label,
                     al->matches[i].nmatched, al->matches[i].rms, al->matches[i].scale, al->matches[i].rotation_deg);
        CLRED_TRY(clred_header_add_history(h, text));
    }
    unsigned interp = (unsigned)o->ropts.interp;
    snprintf(text, sizeof text, "clred align: by=%s ref=%s%ld interp=%s grid=%s offset=(%g,%g)",
             o->method == CLRED_REGISTER_STARS ? "stars" : "phasecorr", o->ref_index < 0 ? "median" : "frame ",
             o->ref_index < 0 ? 0L : o->ref_index, interp < 5 ? interp_names[interp] : "?",
             o->grid == CLRED_GRID_UNION ? "union" : "reference", al->geometry.ox, al->geometry.oy);
    return clred_header_add_history(h, text);
}

/* The whole recipe. owned (NULL for a caller's frames) holds the same frames
 * as frames; they are freed (and set NULL) once resampled. */
static clred_status stack_run(clred_ctx *ctx, const clred_dimage *const *frames, clred_dimage **owned, size_t n,
                              const clred_stack_opts *opts, const stack_source *src, clred_combine_dev_result *out,
                              clred_alignment *alignment)
{
    clred_stack_opts o = opts ? *opts : clred_stack_defaults();
    clred_alignment local;
    clred_alignment *al = alignment ? alignment : &local;
    memset(al, 0, sizeof *al);
    al->failed = -1;
    memset(out, 0, sizeof *out);
    if (!ctx)
        return clred_fail(CLRED_ERR_USAGE, "stack: no context");
    clred_status st = check_request(frames, n, &o, src);
    if (st != CLRED_OK)
        return st;
    al->n = n;
    st = register_frames(ctx, frames, n, &o, src, al);
    if (st == CLRED_OK)
        st = clred_grid_for(al->to_ref, n, frames[0]->width, frames[0]->height, o.grid, &al->geometry);
    clred_dimage **aligned = st == CLRED_OK ? calloc(n, sizeof *aligned) : NULL;
    if (st == CLRED_OK && !aligned)
        st = clred_fail(CLRED_ERR_MEMORY, "stack: out of memory for %zu aligned frames", n);
    if (st == CLRED_OK)
        st = clred_resample_onto_grid_dev(ctx, frames, n, al->to_ref, o.grid, &o.ropts, aligned, &al->geometry);
    for (size_t i = 0; owned && i < n && st == CLRED_OK; i++) {
        clred_dimage_free(owned[i]);
        owned[i] = NULL;
    }
    if (st == CLRED_OK && o.ref_index > 0) {
        /* The combine's header is its first frame's: give it the reference's. */
        clred_header *h = aligned[0]->header;
        aligned[0]->header = aligned[o.ref_index]->header;
        aligned[o.ref_index]->header = h;
    }
    if (st == CLRED_OK && o.match_background && n > 1)
        st = clred_match_backgrounds_dev(ctx, aligned, n, &o.bkgmatch, NULL);
    if (st == CLRED_OK)
        st = clred_combine_dev(ctx, (const clred_dimage *const *)aligned, n, &o.copts, out);
    if (st == CLRED_OK)
        st = add_history(clred_dimage_header(out->image), &o, src, al);
    for (size_t i = 0; aligned && i < n; i++)
        clred_dimage_free(aligned[i]);
    free(aligned);
    if (st != CLRED_OK)
        clred_combine_dev_result_free(out);
    if (al == &local)
        clred_alignment_free(&local);
    else if (st != CLRED_OK && al->failed < 0)
        clred_alignment_free(al);
    return st;
}

clred_status clred_stack_dev(clred_ctx *ctx, const clred_dimage *const *frames, size_t n,
                             const clred_stack_opts *opts, clred_combine_dev_result *out, clred_alignment *alignment)
{
    if (!out)
        return clred_fail(CLRED_ERR_USAGE, "stack: no output given");
    if (n && !frames)
        return clred_fail(CLRED_ERR_USAGE, "stack: no frames given");
    return stack_run(ctx, frames, NULL, n, opts, NULL, out, alignment);
}

/* ---------------------------------------------------------- from files */

/* Every frame of every input (a cube gives each of its planes). */
static clred_status list_frames(const char *const *paths, size_t npaths, stack_source **out, size_t *n)
{
    stack_source *list = NULL;
    size_t count = 0;
    for (size_t i = 0; i < npaths; i++) {
        clred_file_info info;
        clred_status st = clred_file_info_read(paths[i], &info);
        stack_source *grown = st == CLRED_OK ? realloc(list, (count + info.nframes + 1) * sizeof *list) : NULL;
        if (st == CLRED_OK && !grown)
            st = clred_fail(CLRED_ERR_MEMORY, "stack: out of memory listing %zu frames", count + info.nframes);
        if (st != CLRED_OK) {
            free(list);
            return st;
        }
        list = grown;
        for (size_t f = 0; f < info.nframes; f++)
            list[count++] = (stack_source){paths[i], f};
    }
    *out = list;
    *n = count;
    return CLRED_OK;
}

/* The device result as host arrays (the planes as clred_combine_files gives them). */
static clred_status download_result(clred_combine_dev_result *d, clred_combine_result *out)
{
    CLRED_TRY(clred_dimage_download(d->image, &out->image));
    clred_dimage *planes[2] = {d->ncontrib, d->nrejected};
    float **dest[2] = {&out->ncontrib, &out->nrejected};
    for (int k = 0; k < 2; k++) {
        if (!planes[k])
            continue;
        clred_image img;
        CLRED_TRY(clred_dimage_download(planes[k], &img));
        *dest[k] = img.sci;
        img.sci = NULL;
        clred_image_free(&img);
    }
    out->scales = d->scales;
    out->scale_errors = d->scale_errors;
    out->scale_stars = d->scale_stars;
    d->scales = NULL;
    d->scale_errors = NULL;
    d->scale_stars = NULL;
    out->bands = d->bands;
    return CLRED_OK;
}

clred_status clred_stack_files(clred_ctx *ctx, const char *const *paths, size_t npaths,
                               const clred_stack_opts *opts, clred_combine_result *out, clred_alignment *alignment)
{
    if (!out)
        return clred_fail(CLRED_ERR_USAGE, "stack: no output given");
    memset(out, 0, sizeof *out);
    if (alignment) {
        memset(alignment, 0, sizeof *alignment);
        alignment->failed = -1;
    }
    if (!ctx)
        return clred_fail(CLRED_ERR_USAGE, "stack: no context");
    if (npaths == 0 || !paths)
        return clred_fail(CLRED_ERR_USAGE, "stack: no input files given");
    stack_source *src = NULL;
    size_t n = 0;
    CLRED_TRY(list_frames(paths, npaths, &src, &n));
    long ref = opts ? opts->ref_index : 0;
    clred_status st = CLRED_OK;
    if (ref >= (long)n)
        st = clred_fail(CLRED_ERR_USAGE, "stack: reference frame %ld does not exist: there are %zu frames "
                                         "(numbered from 0)", ref, n);
    clred_dimage **frames = st == CLRED_OK ? calloc(n ? n : 1, sizeof *frames) : NULL;
    if (st == CLRED_OK && !frames)
        st = clred_fail(CLRED_ERR_MEMORY, "stack: out of memory for %zu frames", n);
    for (size_t i = 0; i < n && st == CLRED_OK; i++) {
        st = clred_dimage_read(ctx, src[i].path, src[i].frame, &frames[i]);
        /* The steps see images, not files: a shape mismatch is named here. */
        if (st == CLRED_OK && i > 0 &&
            (frames[i]->width != frames[0]->width || frames[i]->height != frames[0]->height))
            st = clred_fail(CLRED_ERR_INPUT, "%s[%zu]: %zu x %zu does not match %s[%zu] (%zu x %zu)", src[i].path,
                            src[i].frame, frames[i]->width, frames[i]->height, src[0].path, src[0].frame,
                            frames[0]->width, frames[0]->height);
    }
    clred_combine_dev_result d;
    memset(&d, 0, sizeof d);
    if (st == CLRED_OK)
        st = stack_run(ctx, (const clred_dimage *const *)frames, frames, n, opts, src, &d, alignment);
    if (st == CLRED_OK)
        st = download_result(&d, out);
    clred_combine_dev_result_free(&d);
    for (size_t i = 0; frames && i < n; i++)
        clred_dimage_free(frames[i]);
    free(frames);
    free(src);
    if (st != CLRED_OK) {
        clred_combine_result_free(out);
        memset(out, 0, sizeof *out);
    }
    return st;
}
