/* The night's stacks: a group's calibrated frames registered, resampled onto
 * the reference grid and combined. They are held on the device when they
 * (with their resampled copies) fit half of the budget left; otherwise they
 * are read back from the calibrated products just written and stacked from
 * host memory, the combine going in bands (report: stacks_read_back). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "night_internal.h"

/* On the device (one frame: the combine alone, as before the recipe existed). */
static clred_status stack_dev(night *nt, const clred_dimage *const *frames, size_t n, clred_combine_dev_result *out)
{
    clred_stack_opts so = nt->o->stack;
    if (n == 1)
        return clred_combine_dev(nt->ctx, frames, n, &so.copts, out);
    if (so.ref_index >= (long)n)
        so.ref_index = 0; /* a frame left out made the group shorter */
    return clred_stack_dev(nt->ctx, frames, n, &so, out, NULL);
}

/* The same on host images. */
static clred_status stack_host(night *nt, const clred_image *frames, size_t n, clred_combine_result *out)
{
    const clred_stack_opts *so = &nt->o->stack;
    if (n == 1)
        return clred_combine_images(nt->ctx, frames, n, &so->copts, out);
    clred_transform *to_ref = calloc(n, sizeof *to_ref);
    clred_image *aligned = calloc(n, sizeof *aligned);
    clred_shift *shifts = calloc(n, sizeof *shifts);
    clred_match_result *matches = calloc(n, sizeof *matches);
    clred_status st = to_ref && aligned && shifts && matches ? CLRED_OK
                                                              : clred_fail(CLRED_ERR_MEMORY, "night: out of memory");
    long ref = so->ref_index < (long)n ? so->ref_index : 0;
    if (st == CLRED_OK && so->method == CLRED_REGISTER_STARS) {
        size_t failed = n;
        st = clred_find_transforms(nt->ctx, frames, n, ref < 0 ? 0 : ref, &so->dopts, &so->mopts, matches, &failed);
        for (size_t i = 0; i < n && st == CLRED_OK; i++)
            to_ref[i] = matches[i].transform;
    } else if (st == CLRED_OK) {
        st = clred_measure_shifts(nt->ctx, frames, n, ref, &so->popts, shifts);
        for (size_t i = 0; i < n && st == CLRED_OK; i++)
            to_ref[i] = clred_transform_translation(-shifts[i].dx, -shifts[i].dy);
    }
    clred_grid_geometry geo;
    int have = 0;
    if (st == CLRED_OK)
        have = (st = clred_resample_onto_grid(nt->ctx, frames, n, to_ref, so->grid, &so->ropts, aligned, &geo)) ==
               CLRED_OK;
    if (st == CLRED_OK && so->match_background)
        st = clred_match_backgrounds(nt->ctx, aligned, n, &so->bkgmatch, NULL);
    if (st == CLRED_OK)
        st = clred_combine_images(nt->ctx, aligned, n, &so->copts, out);
    for (size_t i = 0; have && i < n; i++)
        clred_image_free(&aligned[i]);
    free(aligned);
    free(to_ref);
    free(shifts);
    free(matches);
    return st;
}

/* The calibrated frames (SCI, VAR, MASK) beside their resampled copies must
 * fit half of what the budget leaves; the other half is for the steps'
 * temporaries. The raw shape bounds the trimmed one. */
int night_stack_fits(night *nt, const night_group *gr)
{
    uint64_t in_use = 0, budget = 0, px = 0;
    clred_ctx_memory(nt->ctx, &in_use, &budget);
    uint64_t idle = clred_pool_idle_bytes(nt->ctx);
    uint64_t held = in_use > idle ? in_use - idle : 0;
    for (size_t m = 0; m < gr->n; m++) {
        const night_frame *fr = &nt->frames[gr->members[m]];
        uint64_t p = (uint64_t)fr->width * fr->height;
        px = p > px ? p : px;
    }
    uint64_t need = 2 * (uint64_t)gr->n * px * (2 * sizeof(float) + sizeof(uint16_t));
    return held < budget && need <= (budget - held) / 2;
}

/* The stack's key, from the frames that made it; the product's HISTORY. */
static clred_status stack_done(night *nt, night_group *gr, const int *ok, size_t n, clred_header *h)
{
    uint64_t key = night_stack_key_seed(nt);
    for (size_t m = 0; m < gr->n; m++)
        if (ok[m])
            key = clred_hash(&nt->frames[gr->members[m]].identity, sizeof(uint64_t), key);
    if (n < gr->n) {
        pthread_mutex_lock(&nt->lock);
        nt->prod[gr->product].key = key; /* what it was made of */
        pthread_mutex_unlock(&nt->lock);
    }
    char text[240];
    snprintf(text, sizeof text, "clred run: stack of %zu frames of %s", n, gr->name);
    return clred_header_add_history(h, text);
}

/* The stack written; with [stack] final_background its own background is
 * subtracted first (the coadd's sky, possibly negative where the frames'
 * were over-subtracted) and written beside it as a model product with the
 * full map, so that stack + map = the stack as combined. Takes stack. */
static clred_status write_stack(night *nt, night_group *gr, clred_image *stack, clred_stream_writer *w)
{
    clred_status st = CLRED_OK;
    if (gr->coadd_bkg >= 0) {
        clred_bkg_model model;
        clred_bkg_info info;
        memset(&model, 0, sizeof model);
        double t0 = clred_now();
        st = clred_coadd_background(nt->ctx, stack, &nt->o->coadd_bkg_opts, &model, &info);
        size_t np = stack->width * stack->height;
        float *map = st == CLRED_OK ? malloc(np * sizeof *map) : NULL;
        if (st == CLRED_OK && !map)
            st = clred_fail(CLRED_ERR_MEMORY, "night: out of memory for %s's final background", gr->name);
        if (st == CLRED_OK)
            st = clred_bkg_model_eval(nt->ctx, &model, 0, stack->height, map, NULL);
        clred_trace_host(nt->ctx, "host", "coadd background", t0, clred_now());
        char text[240];
        const char *slash = strrchr(nt->prod[gr->coadd_bkg].path, '/');
        snprintf(text, sizeof text,
                 "clred run: final background subtracted (box %dx%d, global %.6g): %s (add it back to restore)",
                 model.box_w, model.box_h, info.global_back, slash ? slash + 1 : nt->prod[gr->coadd_bkg].path);
        if (st == CLRED_OK)
            st = clred_header_add_history(stack->header, text);
        clred_header *h = st == CLRED_OK ? clred_header_copy(stack->header) : NULL;
        if (st == CLRED_OK && !h)
            st = clred_fail(CLRED_ERR_MEMORY, "night: out of memory copying a header");
        if (st == CLRED_OK) {
            st = clred_stream_writer_put_model(w, nt->prod[gr->coadd_bkg].path, &model, map, h, (size_t)gr->coadd_bkg);
            map = NULL;
        }
        clred_bkg_model_free(&model);
        free(map);
    }
    if (st == CLRED_OK) {
        nt->products_out++;
        st = clred_stream_writer_put(w, nt->prod[gr->product].path, stack, 1, (size_t)gr->product);
    }
    clred_image_free(stack);
    return st;
}

/* From the frames held on the device. */
static clred_status stack_held(night *nt, night_group *gr, clred_dimage **frames, const int *ok, size_t n,
                               clred_stream_writer *w)
{
    const clred_dimage **used = malloc(n * sizeof *used);
    if (!used)
        return clred_fail(CLRED_ERR_MEMORY, "night: out of memory");
    for (size_t m = 0, k = 0; m < gr->n; m++)
        if (ok[m])
            used[k++] = frames[m];
    night_say(nt, "%s: aligning and stacking %zu frames", gr->name, n);
    clred_combine_dev_result res;
    memset(&res, 0, sizeof res);
    double t0 = clred_now();
    clred_status st = stack_dev(nt, used, n, &res);
    clred_trace_host(nt->ctx, "host", "stack", t0, clred_now());
    free(used);
    if (st == CLRED_OK)
        st = stack_done(nt, gr, ok, n, clred_dimage_header(res.image));
    if (st == CLRED_OK && gr->coadd_bkg < 0)
        st = night_put_product(nt, w, res.image, gr->product);
    else if (st == CLRED_OK) {
        clred_image host;
        st = clred_dimage_download(res.image, &host);
        if (st == CLRED_OK)
            st = write_stack(nt, gr, &host, w);
    }
    clred_combine_dev_result_free(&res);
    return st;
}

/* From the calibrated products just written (once the writer has them on disk). */
static clred_status stack_from_files(night *nt, night_group *gr, const char *const *paths, const int *ok, size_t n,
                                     clred_stream_writer *w)
{
    clred_stream_writer_drain(w);
    clred_image *frames = calloc(n, sizeof *frames);
    if (!frames)
        return clred_fail(CLRED_ERR_MEMORY, "night: out of memory");
    clred_status st = CLRED_OK;
    night_say(nt, "%s: aligning and stacking %zu frames read back from their files (too many to hold on the device)",
              gr->name, n);
    double t0 = clred_now();
    for (size_t m = 0, k = 0; m < gr->n && st == CLRED_OK; m++)
        if (ok[m]) {
            st = clred_image_read(paths[m], 0, &frames[k++]);
            nt->frames_in += st == CLRED_OK;
        }
    clred_combine_result res;
    memset(&res, 0, sizeof res);
    if (st == CLRED_OK)
        st = stack_host(nt, frames, n, &res);
    clred_trace_host(nt->ctx, "host", "stack", t0, clred_now());
    for (size_t k = 0; k < n; k++)
        clred_image_free(&frames[k]);
    free(frames);
    if (st == CLRED_OK && !res.image.header && !(res.image.header = clred_header_new()))
        st = clred_fail(CLRED_ERR_MEMORY, "night: out of memory");
    if (st == CLRED_OK)
        st = stack_done(nt, gr, ok, n, res.image.header);
    if (st == CLRED_OK) {
        nt->stacks_read_back++;
        st = write_stack(nt, gr, &res.image, w);
    }
    clred_combine_result_free(&res);
    return st;
}

clred_status night_stack_group(night *nt, night_group *gr, int held, clred_dimage **frames,
                               const char *const *paths, const int *ok, clred_stream_writer *w)
{
    size_t n = 0;
    for (size_t m = 0; m < gr->n; m++)
        n += ok[m] != 0;
    if (!n) {
        night_say(nt, "%s: no frame left to stack", gr->name);
        pthread_mutex_lock(&nt->lock);
        nt->prod[gr->product].reason = strdup("no usable frame");
        pthread_mutex_unlock(&nt->lock);
        return CLRED_OK;
    }
    return held ? stack_held(nt, gr, frames, ok, n, w) : stack_from_files(nt, gr, paths, ok, n, w);
}
