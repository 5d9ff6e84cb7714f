/* The night's plan: frames classified into groups (the master bias, a dark
 * per exposure time, a flat per filter, a stack per (object, filter)), the
 * shard's share of them, and the products with their keys. Nothing here
 * reads pixels or touches the device.
 *
 * A product's key hashes its inputs' identities (path, size, mtime), the keys
 * of the masters it used and the parameters of its stage: a product whose
 * file exists and whose previous manifest entry has the same key is skipped. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "night_internal.h"

/* ------------------------------------------------------------ names */

/* A file-name-safe copy of text. */
static void safe_name(const char *text, char *out, size_t size)
{
    size_t n = 0;
    for (; *text && n + 1 < size; text++) {
        char c = *text;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
                 c == '+';
        out[n++] = ok ? c : '_';
    }
    out[n] = '\0';
}

char *night_join_path(const char *dir, const char *sub, const char *name)
{
    size_t len = strlen(dir) + strlen(sub) + strlen(name) + 3;
    char *p = malloc(len);
    if (p)
        snprintf(p, len, "%s/%s%s%s", dir, sub, *sub ? "/" : "", name);
    return p;
}

/* --------------------------------------------------------- parameters */

static void combine_text(const clred_combine_opts *c, char *out, size_t size)
{
    snprintf(out, size, "method=%d reject=%d sigma=%g,%g iters=%d centre_mean=%d spread_mad=%d minmax=%d,%d "
             "pct=%g,%g scale=%d ignore=0x%x",
             (int)c->method, (int)c->reject, c->sigma_lower, c->sigma_upper, c->max_iters, c->centre_mean,
             c->spread_mad, c->nlow, c->nhigh, c->pct_low, c->pct_high, (int)c->scale, (unsigned)c->ignore_bits);
}

static void section_text(const clred_section *s, char *out, size_t size)
{
    if (s->set)
        snprintf(out, size, "[%zu:%zu,%zu:%zu]", s->x0 + 1, s->x1, s->y0 + 1, s->y1);
    else
        snprintf(out, size, "header");
}

void night_parameter_texts(night *nt)
{
    const clred_night_opts *o = nt->o;
    const clred_calib_opts *c = &o->calib;
    char b[32], t[32], r[32], cb[256];
    section_text(&c->biassec, b, sizeof b);
    section_text(&c->trimsec, t, sizeof t);
    section_text(&c->flat_region, r, sizeof r);
    snprintf(nt->p_calib, sizeof nt->p_calib,
             "overscan=%d order=%d biassec=%s trimsec=%s header_sections=%d gain=%g readnoise=%g saturation=%g "
             "electrons=%d override=%d exptime=%g flat_floor=%g flat_region=%s",
             (int)c->overscan, c->overscan_order, b, t, c->use_header_sections, c->gain, c->readnoise, c->saturation,
             c->to_electrons, c->override_checks, c->exptime, c->flat_floor, r);
    combine_text(&o->bias_combine, nt->p_bias, sizeof nt->p_bias);
    combine_text(&o->dark_combine, nt->p_dark, sizeof nt->p_dark);
    combine_text(&o->flat_combine, nt->p_flat, sizeof nt->p_flat);
    const clred_cosmic_opts *k = &o->cosmic_opts;
    const clred_bkg_opts *g = &o->bkg_opts;
    snprintf(nt->p_science, sizeof nt->p_science,
             "cosmic=%d sigclip=%g sigfrac=%g objlim=%g iters=%d sepmed=%d; background=%d box=%dx%d filter=%dx%d "
             "clip=%g iters=%d min_good=%g mask_sources=%d source_sigma=%g grow=%d",
             o->cosmic, k->sigclip, k->sigfrac, k->objlim, k->max_iters, k->sepmed, o->background, g->box_w,
             g->box_h, g->filter_w, g->filter_h, g->clip_sigma, g->max_iters, g->min_good_frac, g->mask_sources,
             g->source_sigma, g->source_grow);
    /* the background product is the model (the full map on request) */
    if (o->background) {
        size_t len = strlen(nt->p_science);
        snprintf(nt->p_science + len, sizeof nt->p_science - len, " product=model save_map=%d", o->bkg_save_map);
    }
    combine_text(&o->stack.copts, cb, sizeof cb);
    snprintf(nt->p_stack, sizeof nt->p_stack,
             "register=%d ref=%ld grid=%d interp=%d conserve_flux=%d match_background=%d (order %d box %d ref %ld); %s",
             (int)o->stack.method, o->stack.ref_index, (int)o->stack.grid, (int)o->stack.ropts.interp,
             o->stack.ropts.conserve_flux, o->stack.match_background, o->stack.bkgmatch.order, o->stack.bkgmatch.box,
             o->stack.bkgmatch.ref_index, cb);
    if (o->coadd_background) {
        const clred_bkg_opts *f = &o->coadd_bkg_opts;
        size_t len = strlen(nt->p_stack);
        snprintf(nt->p_stack + len, sizeof nt->p_stack - len,
                 "; final_background box=%dx%d filter=%dx%d clip=%g mask_sources=%d", f->box_w, f->box_h,
                 f->filter_w, f->filter_h, f->clip_sigma, f->mask_sources);
    }
    /* Quality limits change which frames a stack holds: part of its key
     * when any is set (so the keys of a night without limits stay). */
    const clred_quality_limits *l = &o->quality_limits;
    if (o->quality && (!isnan(l->max_fwhm) || !isnan(l->max_ellipticity) || !isnan(l->max_sky_noise) ||
                       l->min_stars || !isnan(l->min_limit_mag) || !isnan(l->max_astrom_rms))) {
        size_t len = strlen(nt->p_stack);
        snprintf(nt->p_stack + len, sizeof nt->p_stack - len,
                 "; quality: max_fwhm=%g max_ellipticity=%g max_sky_noise=%g min_stars=%zu min_limit_mag=%g "
                 "max_astrom_rms=%g",
                 l->max_fwhm, l->max_ellipticity, l->max_sky_noise, l->min_stars, l->min_limit_mag, l->max_astrom_rms);
    }
}

static uint64_t hash_text(const char *text, uint64_t seed) { return clred_hash(text, strlen(text), seed); }

/* Mixes another key (or identity) into a key. */
static uint64_t hash_key(uint64_t key, uint64_t seed) { return clred_hash(&key, sizeof key, seed); }

uint64_t night_stack_key_seed(const night *nt) { return hash_text(nt->p_stack, 0x737461636bULL); }

/* ------------------------------------------------------------ frames */

void night_leave_out(night *nt, const char *path, const char *reason)
{
    pthread_mutex_lock(&nt->lock);
    clred_night_item *l = realloc(nt->left, (nt->nleft + 1) * sizeof *l);
    if (l) {
        nt->left = l;
        l[nt->nleft].path = strdup(path);
        l[nt->nleft].what = strdup("unreadable");
        l[nt->nleft].written = 0;
        l[nt->nleft].reason = strdup(reason);
        nt->nleft++;
    }
    pthread_mutex_unlock(&nt->lock);
}

clred_status night_classify(night *nt, const char *const *inputs, size_t n)
{
    nt->frames = calloc(n + 1, sizeof *nt->frames);
    if (!nt->frames)
        return clred_fail(CLRED_ERR_MEMORY, "night: out of memory");
    for (size_t i = 0; i < n; i++) {
        night_frame *fr = &nt->frames[nt->nframes++];
        night_scan_frame(inputs[i], nt->o, fr);
        if (!fr->path)
            return clred_fail(CLRED_ERR_MEMORY, "night: out of memory");
        if (!fr->usable) {
            night_say(nt, "%s: left out: %s", fr->path, fr->problem);
            night_leave_out(nt, fr->path, fr->problem);
            continue;
        }
        nt->rep->nbias += fr->kind == CLRED_FRAME_BIAS;
        nt->rep->ndark += fr->kind == CLRED_FRAME_DARK;
        nt->rep->nflat += fr->kind == CLRED_FRAME_FLAT;
        nt->rep->nscience += fr->kind == CLRED_FRAME_SCIENCE;
        /* Products are named after their frame. */
        for (size_t k = 0; k + 1 < nt->nframes; k++)
            if (nt->frames[k].usable && fr->kind == CLRED_FRAME_SCIENCE && nt->frames[k].kind == CLRED_FRAME_SCIENCE &&
                !strcmp(nt->frames[k].name, fr->name))
                return clred_fail(CLRED_ERR_USAGE, "%s and %s: two science frames of one name would write the same "
                                  "products; rename one", nt->frames[k].path, fr->path);
    }
    if (nt->o->strict && nt->nleft)
        return clred_fail(CLRED_ERR_INPUT, "%s: %s (strict: nothing was written)", nt->left[0].path,
                          nt->left[0].reason);
    nt->rep->ninputs = n;
    return CLRED_OK;
}

/* ------------------------------------------------------------ products */

static clred_status add_product(night *nt, const char *sub, const char *file, const char *what, const char *group,
                                uint64_t key, char *inputs, long *index)
{
    /* The writer thread reads the list (for the manifest) while it grows. */
    pthread_mutex_lock(&nt->lock);
    if (nt->nprod == nt->cap) {
        size_t cap = nt->cap ? 2 * nt->cap : 64;
        night_product *p = realloc(nt->prod, cap * sizeof *p);
        if (!p) {
            pthread_mutex_unlock(&nt->lock);
            free(inputs);
            return clred_fail(CLRED_ERR_MEMORY, "night: out of memory");
        }
        nt->prod = p;
        nt->cap = cap;
    }
    night_product *p = &nt->prod[nt->nprod];
    memset(p, 0, sizeof *p);
    p->path = night_join_path(nt->outdir, sub, file);
    p->what = what;
    p->inputs = inputs;
    snprintf(p->group, sizeof p->group, "%s", group);
    if (!p->path) {
        pthread_mutex_unlock(&nt->lock);
        return clred_fail(CLRED_ERR_MEMORY, "night: out of memory");
    }
    p->key = key;
    struct stat sb;
    if (!nt->o->overwrite && stat(p->path, &sb) == 0 && night_previous_key(&nt->prev, p->path) == key) {
        p->skip = 1;
        p->done = 1;
        p->reason = strdup("unchanged inputs and parameters since the last run");
    }
    *index = (long)nt->nprod++;
    pthread_mutex_unlock(&nt->lock);
    return CLRED_OK;
}

/* A JSON array of the paths of the frames members. */
static char *inputs_of(const night *nt, const size_t *members, size_t n)
{
    size_t len = 8;
    for (size_t i = 0; i < n; i++)
        len += 2 * strlen(nt->frames[members[i]].path) + 8;
    char *s = malloc(len), *p = s;
    if (!s)
        return NULL;
    p += sprintf(p, "[");
    for (size_t i = 0; i < n; i++) {
        const char *path = nt->frames[members[i]].path;
        p += sprintf(p, "%s\"", i ? ", " : "");
        for (; *path; path++) {
            if (*path == '"' || *path == '\\')
                *p++ = '\\';
            *p++ = *path;
        }
        *p++ = '"';
    }
    sprintf(p, "]");
    return s;
}

/* ------------------------------------------------------------ groups */

static int same_exptime(double a, double b) { return fabs(a - b) <= 1e-3 * fmax(1.0, fabs(a)); }

/* Whether frame fr belongs in group gr of its kind. */
static int belongs(const night_group *gr, const night_frame *fr)
{
    switch (gr->kind) {
    case GROUP_BIAS:
        return 1;
    case GROUP_DARK:
        return same_exptime(gr->exptime, fr->exptime);
    case GROUP_FLAT:
        return !strcmp(gr->filter, fr->filter);
    default:
        return !strcmp(gr->filter, fr->filter) && !strcmp(gr->object, fr->object);
    }
}

static clred_status add_member(night *nt, group_kind kind, const night_frame *fr, size_t index)
{
    night_group *gr = NULL;
    for (size_t g = 0; g < nt->ngroups && !gr; g++)
        if (nt->groups[g].kind == kind && belongs(&nt->groups[g], fr))
            gr = &nt->groups[g];
    if (!gr) {
        night_group *g = realloc(nt->groups, (nt->ngroups + 1) * sizeof *g);
        if (!g)
            return clred_fail(CLRED_ERR_MEMORY, "night: out of memory");
        nt->groups = g;
        gr = &g[nt->ngroups++];
        memset(gr, 0, sizeof *gr);
        gr->kind = kind;
        gr->dark = gr->flat = gr->product = gr->coadd_bkg = -1;
        gr->exptime = fr->exptime;
        snprintf(gr->filter, sizeof gr->filter, "%s", fr->filter);
        snprintf(gr->object, sizeof gr->object, "%s", fr->object);
        if (kind == GROUP_BIAS)
            snprintf(gr->name, sizeof gr->name, "bias");
        else if (kind == GROUP_DARK)
            snprintf(gr->name, sizeof gr->name, "dark %gs", fr->exptime);
        else if (kind == GROUP_FLAT)
            snprintf(gr->name, sizeof gr->name, "flat %s", fr->filter);
        else
            snprintf(gr->name, sizeof gr->name, "%s %s", fr->object, fr->filter);
    }
    size_t *m = realloc(gr->members, (gr->n + 1) * sizeof *m);
    if (!m)
        return clred_fail(CLRED_ERR_MEMORY, "night: out of memory");
    gr->members = m;
    gr->members[gr->n++] = index;
    return CLRED_OK;
}

static int group_order(const void *a, const void *b)
{
    const night_group *x = a, *y = b;
    if (x->kind != y->kind)
        return x->kind < y->kind ? -1 : 1;
    if (x->kind == GROUP_DARK && x->exptime != y->exptime)
        return x->exptime < y->exptime ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* The first group of kind (of filter, when given). */
static long find_group(const night *nt, group_kind kind, const char *filter)
{
    for (size_t g = 0; g < nt->ngroups; g++)
        if (nt->groups[g].kind == kind && (!filter || !strcmp(nt->groups[g].filter, filter)))
            return (long)g;
    return -1;
}

long night_bias_group(const night *nt) { return find_group(nt, GROUP_BIAS, NULL); }

long night_nearest_dark(const night *nt, double t)
{
    long best = -1;
    for (size_t g = 0; g < nt->ngroups; g++)
        if (nt->groups[g].kind == GROUP_DARK &&
            (best < 0 || (isfinite(t) && fabs(nt->groups[g].exptime - t) < fabs(nt->groups[best].exptime - t))))
            best = (long)g;
    return best;
}

static void mark_needed(night *nt, long g)
{
    if (g >= 0)
        nt->groups[g].needed = 1;
}

clred_status night_plan_groups(night *nt)
{
    for (size_t i = 0; i < nt->nframes; i++) {
        const night_frame *fr = &nt->frames[i];
        if (!fr->usable)
            continue;
        group_kind k = fr->kind == CLRED_FRAME_BIAS ? GROUP_BIAS
                       : fr->kind == CLRED_FRAME_DARK ? GROUP_DARK
                       : fr->kind == CLRED_FRAME_FLAT ? GROUP_FLAT
                                                      : GROUP_SCIENCE;
        CLRED_TRY(add_member(nt, k, fr, i));
    }
    qsort(nt->groups, nt->ngroups, sizeof *nt->groups, group_order);
    for (size_t g = 0; g < nt->ngroups; g++) {
        night_group *gr = &nt->groups[g];
        gr->here = g % nt->o->shard_count == nt->o->shard_index;
        if (gr->kind == GROUP_FLAT)
            gr->dark = night_nearest_dark(nt, gr->exptime);
        else if (gr->kind == GROUP_SCIENCE)
            gr->flat = find_group(nt, GROUP_FLAT, gr->filter);
    }
    /* What the shard's groups need. Backwards: the masters a group uses sort
     * before it, so they are marked before their turn comes. */
    long bias = night_bias_group(nt);
    for (size_t g = nt->ngroups; g-- > 0;) {
        night_group *gr = &nt->groups[g];
        if (!gr->here && !gr->needed)
            continue;
        gr->needed = 1;
        if (gr->kind != GROUP_BIAS)
            mark_needed(nt, bias);
        if (gr->kind == GROUP_FLAT)
            mark_needed(nt, gr->dark);
        if (gr->kind == GROUP_SCIENCE) {
            mark_needed(nt, gr->flat);
            for (size_t m = 0; m < gr->n; m++)
                mark_needed(nt, night_nearest_dark(nt, nt->frames[gr->members[m]].exptime));
        }
    }
    return CLRED_OK;
}

clred_status night_plan_masters(night *nt)
{
    long bias = night_bias_group(nt);
    for (size_t g = 0; g < nt->ngroups; g++) {
        night_group *gr = &nt->groups[g];
        if (!night_master_needed(gr))
            continue;
        const char *params = gr->kind == GROUP_BIAS ? nt->p_bias : gr->kind == GROUP_DARK ? nt->p_dark : nt->p_flat;
        uint64_t key = hash_text(params, hash_text(nt->p_calib, (uint64_t)gr->kind + 1));
        for (size_t m = 0; m < gr->n; m++)
            key = hash_key(nt->frames[gr->members[m]].identity, key);
        if (gr->kind != GROUP_BIAS && bias >= 0)
            key = hash_key(nt->groups[bias].key, key);
        if (gr->kind == GROUP_FLAT && gr->dark >= 0)
            key = hash_key(nt->groups[gr->dark].key, key);
        gr->key = key;
        if (!gr->here)
            continue; /* built in memory for this shard's users; another shard writes it */
        char file[200], safe[160];
        if (gr->kind == GROUP_BIAS)
            snprintf(file, sizeof file, "bias.fits");
        else if (gr->kind == GROUP_DARK)
            snprintf(file, sizeof file, "dark_%gs.fits", gr->exptime);
        else {
            safe_name(gr->filter, safe, sizeof safe);
            snprintf(file, sizeof file, "flat_%s.fits", safe);
        }
        const char *what = gr->kind == GROUP_BIAS ? "master bias" : gr->kind == GROUP_DARK ? "master dark" : "master flat";
        CLRED_TRY(add_product(nt, "masters", file, what, gr->name, key, inputs_of(nt, gr->members, gr->n),
                              &gr->product));
    }
    return CLRED_OK;
}

/* The products of one (object, filter) group: a calibrated frame and a
 * background map per frame, then the stack; jobs[0..gr->n) are its frames. */
static clred_status plan_stack_group(night *nt, night_group *gr, night_science_job *jobs)
{
    long bias = night_bias_group(nt);
    uint64_t stack_key = night_stack_key_seed(nt);
    int any_new = 0;
    for (size_t m = 0; m < gr->n; m++) {
        night_science_job *jb = &jobs[m];
        const night_frame *fr = &nt->frames[gr->members[m]];
        long dark = night_nearest_dark(nt, fr->exptime);
        uint64_t key = hash_text(nt->p_science, hash_text(nt->p_calib, fr->identity));
        if (bias >= 0)
            key = hash_key(nt->groups[bias].key, key);
        if (dark >= 0)
            key = hash_key(nt->groups[dark].key, key);
        if (gr->flat >= 0)
            key = hash_key(nt->groups[gr->flat].key, key);
        stack_key = hash_key(key, stack_key);
        jb->frame = gr->members[m];
        CLRED_TRY(add_product(nt, "calibrated", fr->name, "calibrated", gr->name, key,
                              inputs_of(nt, &gr->members[m], 1), &jb->cal));
        jb->bkg = -1;
        if (nt->o->background)
            CLRED_TRY(add_product(nt, "background", fr->name, "background", gr->name, key,
                                  inputs_of(nt, &gr->members[m], 1), &jb->bkg));
        jb->process = !nt->prod[jb->cal].skip || (jb->bkg >= 0 && !nt->prod[jb->bkg].skip);
        any_new |= jb->process;
    }
    char file[300], so[160], sf[100];
    safe_name(gr->object, so, sizeof so);
    safe_name(gr->filter, sf, sizeof sf);
    snprintf(file, sizeof file, "%s_%s.fits", so, sf);
    CLRED_TRY(add_product(nt, "stacks", file, "stack", gr->name, stack_key, inputs_of(nt, gr->members, gr->n),
                          &gr->product));
    int bkg_new = 0;
    if (nt->o->coadd_background) {
        snprintf(file, sizeof file, "%s_%s_bkg.fits", so, sf);
        CLRED_TRY(add_product(nt, "stacks", file, "coadd background", gr->name, stack_key,
                              inputs_of(nt, gr->members, gr->n), &gr->coadd_bkg));
        night_product *b = &nt->prod[gr->coadd_bkg];
        bkg_new = !b->skip;
    }
    night_product *stack = &nt->prod[gr->product];
    if ((any_new || bkg_new) && stack->skip) {
        /* A frame was redone (or the final background is missing): the stack is too. */
        stack->skip = stack->done = 0;
        free(stack->reason);
        stack->reason = NULL;
    }
    if (gr->coadd_bkg >= 0 && !stack->skip && nt->prod[gr->coadd_bkg].skip) {
        /* ... and its final background with it */
        night_product *b = &nt->prod[gr->coadd_bkg];
        b->skip = b->done = 0;
        free(b->reason);
        b->reason = NULL;
    }
    int stack_needed = !stack->skip;
    for (size_t m = 0; m < gr->n; m++)
        jobs[m].needed = jobs[m].process || stack_needed;
    return CLRED_OK;
}

clred_status night_plan_science(night *nt, night_science_job **jobs_out, size_t *njobs)
{
    size_t total = 0;
    for (size_t g = 0; g < nt->ngroups; g++)
        total += night_stack_here(&nt->groups[g]) ? nt->groups[g].n : 0;
    night_science_job *jobs = calloc(total + 1, sizeof *jobs);
    if (!jobs)
        return clred_fail(CLRED_ERR_MEMORY, "night: out of memory");
    size_t k = 0;
    for (size_t g = 0; g < nt->ngroups; g++) {
        night_group *gr = &nt->groups[g];
        if (!night_stack_here(gr))
            continue;
        clred_status st = plan_stack_group(nt, gr, &jobs[k]);
        if (st != CLRED_OK) {
            free(jobs);
            return st;
        }
        k += gr->n;
    }
    *jobs_out = jobs;
    *njobs = k;
    return CLRED_OK;
}
