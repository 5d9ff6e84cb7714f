/* The night's science frames on the device: each raw frame is calibrated
 * (with the master dark of the nearest exposure time and the master flat of
 * its filter, or none, as the progress says), cleaned of cosmic rays and
 * background-subtracted; its calibrated frame and background map are queued
 * for the writer, and the calibrated frame is kept for its group's stack when
 * the budget allows (night_stacks.c). A frame unchanged since the last run
 * has its calibrated product read back instead. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "night_internal.h"

/* One calibrator per (dark, flat) pair met, made once from the masters. */
typedef struct {
    long dark, flat;
    clred_calibrator *cal;
} calibrator_slot;

typedef struct {
    calibrator_slot *slot;
    size_t n;
} calibrators;

static clred_status calibrator_for(night *nt, calibrators *cs, long dark, long flat, clred_calibrator **out)
{
    for (size_t i = 0; i < cs->n; i++)
        if (cs->slot[i].dark == dark && cs->slot[i].flat == flat) {
            *out = cs->slot[i].cal;
            return CLRED_OK;
        }
    long bias = night_bias_group(nt);
    clred_masters_dev m = {0};
    m.bias = bias >= 0 ? nt->groups[bias].master : NULL;
    m.dark = dark >= 0 ? nt->groups[dark].master : NULL;
    m.flat = flat >= 0 ? nt->groups[flat].master : NULL;
    m.bias_name = "master bias";
    m.dark_name = dark >= 0 ? nt->groups[dark].name : NULL;
    m.flat_name = flat >= 0 ? nt->groups[flat].name : NULL;
    calibrator_slot *s = &cs->slot[cs->n];
    CLRED_TRY(clred_calibrator_create_dev(nt->ctx, &m, &nt->o->calib, &s->cal));
    s->dark = dark;
    s->flat = flat;
    cs->n++;
    *out = s->cal;
    return CLRED_OK;
}

/* Cosmic rays, with the calibration's variance as the noise model; the
 * saturated pixels are masked already, so no saturation level. */
static clred_status remove_cosmics(night *nt, clred_dimage *img)
{
    clred_cosmic_opts co = nt->o->cosmic_opts;
    co.var = co.bkg = NULL;
    co.satlevel = -1;
    /* The VAR plane seen as an image: the step reads it (before it rewrites
     * the repaired pixels' variance), so a view does, not a copy. */
    clred_dimage noise = {0};
    const clred_dimage *nv = NULL;
    if (img->plane[CLRED_PLANE_VAR]) {
        noise.ctx = img->ctx;
        noise.width = img->width;
        noise.height = img->height;
        noise.plane[CLRED_PLANE_SCI] = img->plane[CLRED_PLANE_VAR];
        noise.header = img->header;
        nv = &noise;
    }
    clred_cosmic_info info = {0};
    return clred_cosmic_dev(nt->ctx, img, NULL, nv, &co, &info);
}

/* The background model (kept as a product: the mesh, its RMS and the
 * interpolation settings, with the frame's header) is evaluated on the
 * device and subtracted from SCI; *map (may stay NULL) receives the full
 * map on the host when the products carry it. */
static clred_status subtract_background(night *nt, clred_dimage *img, clred_bkg_model *model, float **map)
{
    clred_bkg_info info;
    CLRED_TRY(clred_background_model_dev(nt->ctx, img, &nt->o->bkg_opts, model, &info));
    clred_dimage *bkg = NULL;
    clred_status st = clred_bkg_model_eval_dev(nt->ctx, model, &bkg, NULL);
    if (st == CLRED_OK)
        st = clred_dimage_subtract_sci(img, bkg);
    if (st == CLRED_OK && nt->o->bkg_save_map) {
        clred_image host;
        st = clred_dimage_download(bkg, &host);
        if (st == CLRED_OK) {
            *map = host.sci;
            host.sci = NULL;
            clred_image_free(&host);
        }
    }
    clred_dimage_free(bkg);
    CLRED_TRY(st);
    char text[200];
    snprintf(text, sizeof text,
             "clred run: mesh background subtracted (box %dx%d, global %.6g, rms %.6g); its model is the "
             "background product (add it back to restore)",
             nt->o->bkg_opts.box_w, nt->o->bkg_opts.box_h, info.global_back, info.global_rms);
    return clred_header_add_history(img->header, text);
}

/* One raw frame into its calibrated, background-subtracted image and the
 * background model (and map, when kept). */
static clred_status reduce_frame(night *nt, calibrators *cs, const night_group *gr, const night_frame *fr,
                                 const clred_dimage *raw, clred_dimage **cal, clred_bkg_model *model, float **map)
{
    *cal = NULL;
    *map = NULL;
    memset(model, 0, sizeof *model);
    clred_calibrator *c;
    CLRED_TRY(calibrator_for(nt, cs, night_nearest_dark(nt, fr->exptime), gr->flat, &c));
    clred_status st = clred_calibrator_apply_dev(c, raw, fr->path, cal);
    if (st == CLRED_OK && nt->o->cosmic)
        st = remove_cosmics(nt, *cal);
    if (st == CLRED_OK && nt->o->background)
        st = subtract_background(nt, *cal, model, map);
    if (st != CLRED_OK) {
        clred_dimage_free(*cal);
        clred_bkg_model_free(model);
        free(*map);
        *cal = NULL;
        *map = NULL;
        return st;
    }
    night_say(nt, "%s: calibrated%s%s", fr->name, nt->o->cosmic ? ", cosmic rays removed" : "",
              nt->o->background ? ", background subtracted" : "");
    return CLRED_OK;
}

/* The calibrated frame's quality, kept for the manifest; a frame outside
 * the limits stays out of its stack (*ok 0), its products still written. */
static clred_status judge_frame(night *nt, size_t index, const clred_dimage *cal, int *ok)
{
    if (!nt->o->quality)
        return CLRED_OK;
    clred_frame_quality q;
    if (clred_measure_quality_dev(nt->ctx, cal, &q) != CLRED_OK) {
        /* A frame whose stars cannot be measured is still reduced and stacked. */
        night_say(nt, "%s: quality not measured: %s", nt->frames[index].name, clred_last_error());
        clred_clear_error();
        return CLRED_OK;
    }
    char why[160] = "";
    int pass = clred_quality_passes(&q, &nt->o->quality_limits, why, sizeof why);
    night_frame *fr = &nt->frames[index];
    pthread_mutex_lock(&nt->lock);
    fr->quality = q;
    fr->has_quality = 1;
    snprintf(fr->below_limits, sizeof fr->below_limits, "%s", pass ? "" : why);
    pthread_mutex_unlock(&nt->lock);
    if (!pass) {
        night_say(nt, "%s: left out of the stack: %s", fr->name, why);
        *ok = 0;
    }
    return CLRED_OK;
}

/* One science frame: reduced and its products queued, or (unchanged since
 * the last run) its calibrated product read back for the stack. The
 * calibrated frame stays on the device in *keep when hold asks for it. */
static clred_status science_frame(night *nt, clred_stream_reader *r, clred_stream_writer *w, calibrators *cs,
                                  const night_group *gr, const night_science_job *jb, int hold, clred_dimage **keep,
                                  int *ok)
{
    const night_frame *fr = &nt->frames[jb->frame];
    *ok = 0;
    clred_dimage *d = NULL;
    clred_status rs = night_next_on_device(nt, r, &d);
    if (rs != CLRED_OK) {
        /* A raw frame that scanned well but cannot be read is left out of
         * its stack; an unreadable product of ours is not. */
        if (nt->o->strict || !jb->process)
            return rs;
        night_say(nt, "%s: left out: %s", fr->path, clred_last_error());
        night_leave_out(nt, fr->path, clred_last_error());
        return CLRED_OK;
    }
    if (!jb->process) {
        *ok = 1;
        clred_status qs = judge_frame(nt, jb->frame, d, ok);
        if (hold && qs == CLRED_OK)
            *keep = d;
        else
            clred_dimage_free(d); /* read back from its file for the stack */
        return qs;
    }
    clred_dimage *cal = NULL;
    clred_bkg_model model;
    float *map = NULL;
    clred_status st = reduce_frame(nt, cs, gr, fr, d, &cal, &model, &map);
    clred_dimage_free(d);
    if (st == CLRED_OK && jb->bkg >= 0) {
        clred_header *h = clred_header_copy(clred_dimage_header(cal));
        if (h) {
            st = clred_stream_writer_put_model(w, nt->prod[jb->bkg].path, &model, map, h, (size_t)jb->bkg);
            map = NULL; /* the writer's now */
        } else {
            st = clred_fail(CLRED_ERR_MEMORY, "night: out of memory copying a header");
        }
    }
    clred_bkg_model_free(&model);
    free(map);
    if (st == CLRED_OK)
        st = night_put_product(nt, w, cal, jb->cal);
    *ok = st == CLRED_OK;
    if (st == CLRED_OK)
        st = judge_frame(nt, jb->frame, cal, ok);
    if (st == CLRED_OK && hold)
        *keep = cal;
    else
        clred_dimage_free(cal);
    return st;
}

/* The frames of one (object, filter) group (jobs[0..gr->n)), then its stack
 * when that is not unchanged. */
static clred_status science_group(night *nt, clred_stream_reader *r, clred_stream_writer *w, calibrators *cs, night_group *gr,
                                  const night_science_job *jobs, double *stack_s)
{
    clred_dimage **frames = calloc(gr->n, sizeof *frames);
    const char **cal_paths = calloc(gr->n, sizeof *cal_paths);
    int *ok = calloc(gr->n, sizeof *ok);
    int stack = gr->product >= 0 && !nt->prod[gr->product].skip;
    int hold = stack && night_stack_fits(nt, gr);
    clred_status st = CLRED_OK;
    if (!frames || !ok || !cal_paths)
        st = clred_fail(CLRED_ERR_MEMORY, "night: out of memory");
    else if (stack && !hold)
        night_say(nt, "%s: %zu calibrated frames and their resampled copies would not fit the device's budget: "
                  "written, then read back for the stack", gr->name, gr->n);
    for (size_t m = 0; m < gr->n && st == CLRED_OK; m++) {
        if (!jobs[m].needed)
            continue;
        cal_paths[m] = nt->prod[jobs[m].cal].path;
        st = science_frame(nt, r, w, cs, gr, &jobs[m], hold, &frames[m], &ok[m]);
    }
    if (st == CLRED_OK && stack) {
        double t0 = clred_now();
        st = night_stack_group(nt, gr, hold, frames, cal_paths, ok, w);
        *stack_s += clred_now() - t0;
    }
    for (size_t m = 0; frames && m < gr->n; m++)
        clred_dimage_free(frames[m]);
    free(frames);
    free(cal_paths);
    free(ok);
    return st;
}

clred_status night_science_stage(night *nt, clred_stream_writer *w, double *stack_s)
{
    night_science_job *jobs = NULL;
    size_t njobs = 0;
    CLRED_TRY(night_plan_science(nt, &jobs, &njobs));
    clred_status st = night_manifest_write(nt, 0);
    const char **paths = calloc(njobs + 1, sizeof *paths);
    size_t nread = 0;
    for (size_t j = 0; paths && j < njobs; j++)
        if (jobs[j].needed)
            paths[nread++] = jobs[j].process ? nt->frames[jobs[j].frame].path : nt->prod[jobs[j].cal].path;
    clred_stream_reader *r = NULL;
    if (st == CLRED_OK)
        st = paths ? clred_stream_reader_start(nt->ctx, paths, nread, nt->o->read_ahead, nt->o->stream, 0, &r)
                   : clred_fail(CLRED_ERR_MEMORY, "night: out of memory");
    /* Each job meets at most one new (dark, flat) pair. */
    calibrators cs = {calloc(njobs + 1, sizeof *cs.slot), 0};
    if (!cs.slot && st == CLRED_OK)
        st = clred_fail(CLRED_ERR_MEMORY, "night: out of memory");
    for (size_t g = 0, j = 0; g < nt->ngroups && st == CLRED_OK; g++) {
        night_group *gr = &nt->groups[g];
        if (!night_stack_here(gr))
            continue;
        st = science_group(nt, r, w, &cs, gr, &jobs[j], stack_s);
        j += gr->n;
    }
    for (size_t i = 0; i < cs.n; i++)
        clred_calibrator_free(cs.slot[i].cal);
    free(cs.slot);
    clred_stream_reader_finish(r, &nt->rep->read_s);
    free(paths);
    free(jobs);
    return st;
}
