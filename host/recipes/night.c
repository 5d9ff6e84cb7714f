/* The night recipe (clred run): classify, masters, science frames, stacks,
 * manifest. See clred.h for the contract; the parts are night_scan.c (headers
 * and kinds), night_stream.c (reader and writer threads) and
 * night_manifest.c (the previous run's products).
 *
 * Choices:
 * - groups are the independent units: the master bias, one master dark per
 *   exposure time, one master flat per filter, and one stack per (object,
 *   filter); a shard owns groups g % n == i of that sorted list and builds
 *   in memory (without writing) the masters its groups need but others own;
 * - a product's key hashes its inputs' identities (path, size, mtime), the
 *   keys of the masters it used and the parameters of its stage: a rerun
 *   skips a product whose file exists and whose previous manifest entry has
 *   the same key, and a product file with no finished entry (a killed run's
 *   last write) is rebuilt;
 * - the manifest is rewritten (atomically) after every product, so a run
 *   killed at any point leaves a manifest that says what was finished;
 * - a science frame is matched with the master dark of the nearest exposure
 *   time (darks are per second) and the master flat of its filter; with no
 *   such flat it is calibrated without one and the progress says so;
 * - frames stay on the device: the reader thread reads each into a host
 *   image, which the main thread hands to the device once (adopted without a
 *   copy where memory is shared); masters are made and kept there for the
 *   calibrators; a science frame is calibrated, cleaned and
 *   background-subtracted there and kept for its stack; every product comes
 *   down once, for the writer thread. A group whose calibrated frames (with
 *   their resampled copies) would take more than half of the budget left is
 *   stacked from its written files instead (report: stacks_read_back). */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "night_internal.h"

clred_night_opts clred_night_defaults(void)
{
    clred_night_opts o;
    memset(&o, 0, sizeof o);
    o.type_keys = "IMAGETYP,OBSTYPE";
    o.exptime_keys = "EXPTIME,EXPOSURE";
    o.filter_keys = "FILTER,INSFLNAM";
    o.object_keys = "OBJECT";
    o.calib = clred_calib_defaults();
    o.bias_combine = clred_combine_defaults();
    /* Median-centred clipping with a MAD spread: with a plain std one cosmic
     * ray among five frames never passes 3 sigma. */
    o.dark_combine = clred_combine_defaults();
    o.dark_combine.reject = CLRED_REJECT_SIGCLIP;
    o.dark_combine.spread_mad = 1;
    o.flat_combine = o.dark_combine;
    o.flat_combine.scale = CLRED_SCALE_MULTIPLICATIVE;
    o.cosmic = 1;
    o.cosmic_opts = clred_cosmic_defaults();
    o.background = 1;
    o.bkg_opts = clred_bkg_defaults();
    o.stack = clred_stack_defaults();
    o.stack.copts = o.dark_combine;
    o.stack.copts.scale = CLRED_SCALE_ADDITIVE; /* the sky changes from frame to frame */
    o.shard_index = 0;
    o.shard_count = 1;
    o.stream = 1;
    o.read_ahead = 2;
    return o;
}

/* ------------------------------------------------------------ state */

typedef enum { GROUP_BIAS = 0, GROUP_DARK, GROUP_FLAT, GROUP_SCIENCE } group_kind;

typedef struct {
    group_kind kind;
    char name[160];
    size_t *members, n;          /* indices into the frames */
    double exptime;              /* darks */
    char filter[72], object[72];
    int here, needed;
    long dark, flat;             /* science and flats: the groups of their masters, -1 = none */
    uint64_t key;
    long product;                /* the master or stack product, -1 = none */
    clred_dimage *master;        /* masters, when built or loaded: on the device for the calibrators */
} night_group;

typedef struct {
    char *path;       /* relative to outdir in the manifest, full here */
    const char *what;
    char group[160];
    uint64_t key;
    int skip;         /* unchanged since the last run */
    int done;         /* written by this run, or skipped */
    char *reason;
    char *inputs;     /* JSON array text */
} night_product;

typedef struct {
    clred_ctx *ctx;
    const clred_night_opts *o;
    const char *outdir;
    night_frame *frames;
    size_t nframes;
    night_group *groups;
    size_t ngroups;
    night_product *prod;
    size_t nprod, cap;
    clred_night_item *left;
    size_t nleft;
    night_previous prev;
    char manifest[4096];
    pthread_mutex_t lock; /* the products' state, the left-out list and the manifest file */
    clred_status write_status;
    char write_error[512];
    clred_night_report *rep; /* its counts are filled at the end: the writer's thread reads them for the manifest */
    size_t frames_in, products_out, stacks_read_back; /* the main thread's counts, for the report */
    double t0;
    char p_calib[512], p_bias[256], p_dark[256], p_flat[256], p_science[768], p_stack[512];
} night;

static void say(night *nt, const char *fmt, ...) CLRED_PRINTF(2, 3);
static void say(night *nt, const char *fmt, ...)
{
    if (!nt->o->progress)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    nt->o->progress(nt->o->progress_user, line);
}

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

static char *join_path(const char *dir, const char *sub, const char *name)
{
    size_t len = strlen(dir) + strlen(sub) + strlen(name) + 3;
    char *p = malloc(len);
    if (p)
        snprintf(p, len, "%s/%s%s%s", dir, sub, *sub ? "/" : "", name);
    return p;
}

static clred_status make_dir(const char *path)
{
    if (mkdir(path, 0777) != 0 && errno != EEXIST)
        return clred_fail(CLRED_ERR_IO, "%s: cannot create the directory (%s)", path, strerror(errno));
    return CLRED_OK;
}

/* Temporaries of killed runs (".name.<pid>.tmp" of a process that is gone)
 * are removed; a live process's (another shard's) are left alone. */
static void remove_stale_temporaries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] != '.' || len < 6 || strcmp(e->d_name + len - 4, ".tmp"))
            continue;
        const char *dot = e->d_name + len - 5;
        while (dot > e->d_name && *dot != '.')
            dot--;
        long pid = strtol(dot + 1, NULL, 10);
        if (pid > 0 && pid != (long)getpid() && kill((pid_t)pid, 0) != 0 && errno == ESRCH) {
            char *p = join_path(dir, "", e->d_name);
            if (p)
                unlink(p);
            free(p);
        }
    }
    closedir(d);
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

static void parameter_texts(night *nt)
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
    combine_text(&o->stack.copts, cb, sizeof cb);
    snprintf(nt->p_stack, sizeof nt->p_stack, "register=%d ref=%ld grid=%d interp=%d conserve_flux=%d; %s",
             (int)o->stack.method, o->stack.ref_index, (int)o->stack.grid, (int)o->stack.ropts.interp,
             o->stack.ropts.conserve_flux, cb);
}

static uint64_t hash_text(const char *text, uint64_t seed) { return clred_hash(text, strlen(text), seed); }

/* ------------------------------------------------------------ manifest */

static void json_text(FILE *f, const char *s)
{
    fputc('"', f);
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static const char *kind_word(clred_frame_kind k)
{
    static const char *w[] = {"unknown", "bias", "dark", "flat", "science"};
    return w[k];
}

static const char *stage_names[CLRED_NIGHT_NSTAGES] = {"classify", "masters", "science", "stacks"};

/* Writes the manifest atomically; the caller holds the lock. */
static clred_status write_manifest(night *nt, int complete)
{
    char tmp[4200];
    FILE *f;
    CLRED_TRY(clred_atomic_open(nt->manifest, 1, tmp, sizeof tmp, &f));
    const clred_night_opts *o = nt->o;
    fprintf(f, "{\n  \"software\": \"clred %s\",\n  \"complete\": %s,\n  \"shard\": [%zu, %zu],\n", CLRED_VERSION,
            complete ? "true" : "false", o->shard_index + 1, o->shard_count);
    fprintf(f, "  \"device\": ");
    json_text(f, clred_ctx_device(nt->ctx)->name);
    fprintf(f, ",\n  \"keywords\": {\"type\": ");
    json_text(f, o->type_keys);
    fprintf(f, ", \"exptime\": ");
    json_text(f, o->exptime_keys);
    fprintf(f, ", \"filter\": ");
    json_text(f, o->filter_keys);
    fprintf(f, ", \"object\": ");
    json_text(f, o->object_keys);
    fprintf(f, "},\n  \"parameters\": {\"calibration\": ");
    json_text(f, nt->p_calib);
    fprintf(f, ", \"bias_combine\": ");
    json_text(f, nt->p_bias);
    fprintf(f, ", \"dark_combine\": ");
    json_text(f, nt->p_dark);
    fprintf(f, ", \"flat_combine\": ");
    json_text(f, nt->p_flat);
    fprintf(f, ", \"science\": ");
    json_text(f, nt->p_science);
    fprintf(f, ", \"stack\": ");
    json_text(f, nt->p_stack);
    fprintf(f, "},\n  \"inputs\": [");
    for (size_t i = 0; i < nt->nframes; i++) {
        const night_frame *fr = &nt->frames[i];
        fprintf(f, "%s\n    {\"path\": ", i ? "," : "");
        json_text(f, fr->path);
        fprintf(f, ", \"size\": %" PRIu64 ", \"mtime_ns\": %" PRId64 ", \"kind\": \"%s\", \"exptime\": ", fr->size,
                fr->mtime_ns, kind_word(fr->kind));
        if (isfinite(fr->exptime))
            fprintf(f, "%.6g", fr->exptime);
        else
            fprintf(f, "null");
        fprintf(f, ", \"filter\": ");
        json_text(f, fr->filter);
        fprintf(f, ", \"object\": ");
        json_text(f, fr->object);
        fprintf(f, "}");
    }
    fprintf(f, "\n  ],\n  \"left_out\": [");
    for (size_t i = 0; i < nt->nleft; i++) {
        fprintf(f, "%s\n    {\"path\": ", i ? "," : "");
        json_text(f, nt->left[i].path);
        fprintf(f, ", \"reason\": ");
        json_text(f, nt->left[i].reason);
        fprintf(f, "}");
    }
    fprintf(f, "\n  ],\n  \"groups\": [");
    for (size_t g = 0; g < nt->ngroups; g++) {
        fprintf(f, "%s\n    {\"name\": ", g ? "," : "");
        json_text(f, nt->groups[g].name);
        fprintf(f, ", \"frames\": %zu, \"here\": %s}", nt->groups[g].n, nt->groups[g].here ? "true" : "false");
    }
    fprintf(f, "\n  ],\n  \"products\": [");
    for (size_t i = 0; i < nt->nprod; i++) {
        const night_product *p = &nt->prod[i];
        fprintf(f, "%s\n    {\"path\": ", i ? "," : "");
        json_text(f, p->path);
        fprintf(f, ", \"what\": \"%s\", \"group\": ", p->what);
        json_text(f, p->group);
        fprintf(f, ", \"key\": \"%016" PRIx64 "\", \"done\": %s, \"skipped\": %s, \"reason\": ", p->key,
                p->done ? "true" : "false", p->skip ? "true" : "false");
        if (p->reason)
            json_text(f, p->reason);
        else
            fprintf(f, "null");
        fprintf(f, ", \"inputs\": %s}", p->inputs ? p->inputs : "[]");
    }
    fprintf(f, "\n  ],\n  \"timings_s\": {");
    for (int s = 0; s < CLRED_NIGHT_NSTAGES; s++)
        fprintf(f, "\"%s\": %.4f, ", stage_names[s], nt->rep->stage_s[s]);
    clred_timing t = nt->rep->timing;
    fprintf(f, "\"read\": %.4f, \"write\": %.4f, \"wall\": %.4f},\n", nt->rep->read_s, nt->rep->write_s,
            clred_now() - nt->t0);
    const clred_night_report *r = nt->rep;
    uint64_t up = r->image_uploads, down = r->image_downloads;
    fprintf(f, "  \"transfers\": {\"uploads\": %" PRIu64 ", \"downloads\": %" PRIu64 ", \"kernels\": %" PRIu64
               ", \"upload_bytes\": %" PRIu64 ", \"download_bytes\": %" PRIu64 ",\n    \"image_uploads\": %" PRIu64
               ", \"image_downloads\": %" PRIu64 ", \"frames_in\": %zu, \"products_out\": %zu"
               ", \"image_uploads_per_frame\": %.3f, \"image_downloads_per_product\": %.3f"
               ", \"stacks_read_back\": %zu}\n}\n",
            t.uploads, t.downloads, t.kernels, t.upload_bytes, t.download_bytes, up, down, r->frames_in,
            r->products_out, r->frames_in ? (double)up / r->frames_in : 0.0,
            r->products_out ? (double)down / r->products_out : 0.0, r->stacks_read_back);
    return clred_atomic_close(f, tmp, nt->manifest);
}

/* The writer's report of a finished write. */
static void product_written(void *user, size_t index, clred_status st, const char *message)
{
    night *nt = user;
    pthread_mutex_lock(&nt->lock);
    if (st == CLRED_OK) {
        nt->prod[index].done = 1;
        st = write_manifest(nt, 0);
        message = st != CLRED_OK ? clred_last_error() : NULL;
    }
    if (st != CLRED_OK && nt->write_status == CLRED_OK) {
        nt->write_status = st;
        snprintf(nt->write_error, sizeof nt->write_error, "%s", message ? message : "write failed");
    }
    pthread_mutex_unlock(&nt->lock);
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
    p->path = join_path(nt->outdir, sub, file);
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

/* A JSON array of the paths of frames members. */
static char *inputs_of(const night *nt, const size_t *members, size_t n, const char *extra)
{
    size_t len = 8 + (extra ? strlen(extra) + 8 : 0);
    for (size_t i = 0; i < n; i++)
        len += 2 * strlen(nt->frames[members[i]].path) + 8;
    char *s = malloc(len), *p = s;
    if (!s)
        return NULL;
    p += sprintf(p, "[");
    for (size_t i = 0; i < n + (extra != NULL); i++) {
        const char *path = i < n ? nt->frames[members[i]].path : extra;
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

static clred_status add_member(night *nt, group_kind kind, const night_frame *fr, size_t index)
{
    for (size_t g = 0; g < nt->ngroups; g++) {
        night_group *gr = &nt->groups[g];
        int same = gr->kind == kind &&
                   (kind == GROUP_BIAS || (kind == GROUP_DARK && same_exptime(gr->exptime, fr->exptime)) ||
                    (kind == GROUP_FLAT && !strcmp(gr->filter, fr->filter)) ||
                    (kind == GROUP_SCIENCE && !strcmp(gr->filter, fr->filter) && !strcmp(gr->object, fr->object)));
        if (same) {
            size_t *m = realloc(gr->members, (gr->n + 1) * sizeof *m);
            if (!m)
                return clred_fail(CLRED_ERR_MEMORY, "night: out of memory");
            gr->members = m;
            gr->members[gr->n++] = index;
            return CLRED_OK;
        }
    }
    night_group *g = realloc(nt->groups, (nt->ngroups + 1) * sizeof *g);
    if (!g)
        return clred_fail(CLRED_ERR_MEMORY, "night: out of memory");
    nt->groups = g;
    night_group *gr = &g[nt->ngroups++];
    memset(gr, 0, sizeof *gr);
    gr->kind = kind;
    gr->dark = gr->flat = gr->product = -1;
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
    gr->members = malloc(sizeof *gr->members);
    if (!gr->members)
        return clred_fail(CLRED_ERR_MEMORY, "night: out of memory");
    gr->members[0] = index;
    gr->n = 1;
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

static long find_bias(const night *nt)
{
    for (size_t g = 0; g < nt->ngroups; g++)
        if (nt->groups[g].kind == GROUP_BIAS)
            return (long)g;
    return -1;
}

/* The dark group whose exposure time is nearest t (any when t is unknown). */
static long nearest_dark(const night *nt, double t)
{
    long best = -1;
    for (size_t g = 0; g < nt->ngroups; g++)
        if (nt->groups[g].kind == GROUP_DARK &&
            (best < 0 || (isfinite(t) && fabs(nt->groups[g].exptime - t) < fabs(nt->groups[best].exptime - t))))
            best = (long)g;
    return best;
}

static long flat_for(const night *nt, const char *filter)
{
    for (size_t g = 0; g < nt->ngroups; g++)
        if (nt->groups[g].kind == GROUP_FLAT && !strcmp(nt->groups[g].filter, filter))
            return (long)g;
    return -1;
}

/* Groups, their masters, the shard's share and what it needs. */
static clred_status plan_groups(night *nt)
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
    long bias = find_bias(nt);
    for (size_t g = 0; g < nt->ngroups; g++) {
        night_group *gr = &nt->groups[g];
        gr->here = g % nt->o->shard_count == nt->o->shard_index;
        if (gr->kind == GROUP_FLAT) {
            gr->dark = nearest_dark(nt, gr->exptime);
        } else if (gr->kind == GROUP_SCIENCE) {
            gr->flat = flat_for(nt, gr->filter);
        }
    }
    /* What the shard's groups need, masters before their users. */
    for (size_t g = nt->ngroups; g-- > 0;) {
        night_group *gr = &nt->groups[g];
        if (!gr->here && !gr->needed)
            continue;
        gr->needed = 1;
        if (gr->kind != GROUP_BIAS && bias >= 0)
            nt->groups[bias].needed = 1;
        if (gr->kind == GROUP_FLAT && gr->dark >= 0)
            nt->groups[gr->dark].needed = 1;
        if (gr->kind == GROUP_SCIENCE) {
            if (gr->flat >= 0)
                nt->groups[gr->flat].needed = 1;
            for (size_t m = 0; m < gr->n; m++) {
                long d = nearest_dark(nt, nt->frames[gr->members[m]].exptime);
                if (d >= 0)
                    nt->groups[d].needed = 1;
            }
        }
    }
    return CLRED_OK;
}

/* Keys and products of the masters; the science products come later. */
static clred_status plan_masters(night *nt)
{
    long bias = find_bias(nt);
    for (size_t g = 0; g < nt->ngroups; g++) {
        night_group *gr = &nt->groups[g];
        if (gr->kind == GROUP_SCIENCE || !gr->needed)
            continue;
        const char *params = gr->kind == GROUP_BIAS ? nt->p_bias : gr->kind == GROUP_DARK ? nt->p_dark : nt->p_flat;
        uint64_t key = hash_text(params, hash_text(nt->p_calib, (uint64_t)gr->kind + 1));
        for (size_t m = 0; m < gr->n; m++)
            key = clred_hash(&nt->frames[gr->members[m]].identity, sizeof(uint64_t), key);
        if (gr->kind != GROUP_BIAS && bias >= 0)
            key = clred_hash(&nt->groups[bias].key, sizeof(uint64_t), key);
        if (gr->kind == GROUP_FLAT && gr->dark >= 0)
            key = clred_hash(&nt->groups[gr->dark].key, sizeof(uint64_t), key);
        gr->key = key;
        if (!gr->here)
            continue;
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
        CLRED_TRY(add_product(nt, "masters", file, what, gr->name, key, inputs_of(nt, gr->members, gr->n, NULL),
                              &gr->product));
    }
    return CLRED_OK;
}

/* ------------------------------------------------------------ steps */

/* Each frame goes to the device once: the reader thread reads it into a host
 * image, and the main thread hands that to the device (adopted without a copy
 * where the device shares host memory, one upload elsewhere). Every step then
 * works on device images, and each product comes down once, to the writer. */

/* The reader's next image, on the device. */
static clred_status next_on_device(night *nt, night_reader *r, clred_dimage **out)
{
    *out = NULL;
    clred_image img;
    CLRED_TRY(night_reader_next(r, &img));
    clred_status st = clred_dimage_adopt(nt->ctx, &img, out);
    if (st == CLRED_OK)
        nt->frames_in++;
    return st;
}

/* Downloads a product once and queues it for the writer. */
static clred_status put_product(night *nt, night_writer *w, const clred_dimage *d, long index)
{
    clred_image host;
    CLRED_TRY(clred_dimage_download(d, &host));
    nt->products_out++;
    return night_writer_put(w, nt->prod[index].path, &host, 1, (size_t)index);
}

/* Master bias, dark (per second) or flat from the group's raw frames on the device. */
static clred_status night_master(night *nt, night_group *gr, clred_dimage *const *frames, const clred_dimage *bias,
                                 const clred_dimage *dark, clred_dimage **out)
{
    const char **names = malloc(gr->n * sizeof *names);
    if (!names)
        return clred_fail(CLRED_ERR_MEMORY, "night: out of memory");
    for (size_t m = 0; m < gr->n; m++)
        names[m] = nt->frames[gr->members[m]].path;
    const clred_dimage *const *f = (const clred_dimage *const *)frames;
    double t0 = clred_now();
    clred_status st;
    if (gr->kind == GROUP_BIAS)
        st = clred_master_bias_dev(nt->ctx, f, names, gr->n, &nt->o->calib, &nt->o->bias_combine, out);
    else if (gr->kind == GROUP_DARK)
        st = clred_master_dark_dev(nt->ctx, f, names, gr->n, bias, &nt->o->calib, &nt->o->dark_combine, out);
    else
        st = clred_master_flat_dev(nt->ctx, f, names, gr->n, bias, dark, &nt->o->calib, &nt->o->flat_combine, out);
    clred_trace_host(nt->ctx, "host", gr->name, t0, clred_now());
    free(names);
    return st;
}

/* Cosmic rays, with the calibration's variance as the noise model; the
 * saturated pixels are masked already, so no saturation level. */
static clred_status night_cosmic(night *nt, clred_dimage *img, size_t *ncosmic)
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
    clred_status st = clred_cosmic_dev(nt->ctx, img, NULL, nv, &co, &info);
    *ncosmic = info.ncosmic;
    return st;
}

/* The background map (kept as a product) is subtracted from SCI on the device. */
static clred_status night_background(night *nt, clred_dimage *img, clred_dimage **bkg)
{
    clred_bkg_info info;
    CLRED_TRY(clred_background_dev(nt->ctx, img, &nt->o->bkg_opts, bkg, NULL, &info));
    CLRED_TRY(clred_dimage_subtract_sci(img, *bkg));
    char text[160];
    snprintf(text, sizeof text, "clred run: mesh background subtracted (box %dx%d, global %.6g, rms %.6g)",
             nt->o->bkg_opts.box_w, nt->o->bkg_opts.box_h, info.global_back, info.global_rms);
    CLRED_TRY(clred_header_add_history(img->header, text));
    clred_header *h = clred_header_copy(img->header);
    if (!h)
        return clred_fail(CLRED_ERR_MEMORY, "night: out of memory copying a header");
    clred_header_free((*bkg)->header);
    (*bkg)->header = h;
    return CLRED_OK;
}

/* Registration, resampling onto the reference grid and the combine, on the
 * device (one frame: the combine alone, as before the recipe existed). */
static clred_status night_stack_dev(night *nt, const clred_dimage *const *frames, size_t n,
                                    clred_combine_dev_result *out)
{
    clred_stack_opts so = nt->o->stack;
    if (n == 1)
        return clred_combine_dev(nt->ctx, frames, n, &so.copts, out);
    if (so.ref_index >= (long)n)
        so.ref_index = 0; /* a frame left out made the group shorter */
    return clred_stack_dev(nt->ctx, frames, n, &so, out, NULL);
}

/* The same on host images: for a group whose frames do not fit the device
 * budget, read back from their files; the combine goes in bands from host
 * memory. */
static clred_status night_stack_host(night *nt, const clred_image *frames, size_t n, clred_combine_result *out)
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

/* ------------------------------------------------------------ masters */

/* The masters' inputs in the order they are used: the raw frames of a master
 * to build, the product of an unchanged one. */
static clred_status master_paths(night *nt, const char ***paths, size_t *n)
{
    size_t total = 0;
    for (size_t g = 0; g < nt->ngroups; g++)
        if (nt->groups[g].kind != GROUP_SCIENCE && nt->groups[g].needed)
            total += nt->groups[g].n;
    *paths = calloc(total + 1, sizeof **paths);
    if (!*paths)
        return clred_fail(CLRED_ERR_MEMORY, "night: out of memory");
    *n = 0;
    for (size_t g = 0; g < nt->ngroups; g++) {
        night_group *gr = &nt->groups[g];
        if (gr->kind == GROUP_SCIENCE || !gr->needed)
            continue;
        if (gr->product >= 0 && nt->prod[gr->product].skip)
            (*paths)[(*n)++] = nt->prod[gr->product].path;
        else
            for (size_t m = 0; m < gr->n; m++)
                (*paths)[(*n)++] = nt->frames[gr->members[m]].path;
    }
    return CLRED_OK;
}

static clred_status build_master(night *nt, night_group *gr, night_reader *r, night_writer *w)
{
    long bias = find_bias(nt);
    night_product *p = gr->product >= 0 ? &nt->prod[gr->product] : NULL;
    if (p && p->skip) {
        say(nt, "%s: unchanged, read from %s", gr->name, p->path);
        return next_on_device(nt, r, &gr->master);
    }
    clred_dimage **frames = calloc(gr->n, sizeof *frames);
    if (!frames)
        return clred_fail(CLRED_ERR_MEMORY, "night: out of memory");
    clred_status st = CLRED_OK;
    size_t m = 0;
    for (; m < gr->n && st == CLRED_OK; m++)
        st = next_on_device(nt, r, &frames[m]);
    if (st == CLRED_OK) {
        say(nt, "%s from %zu frames%s", gr->name, gr->n, gr->here ? "" : " (in memory: another shard writes it)");
        const clred_dimage *b = gr->kind != GROUP_BIAS && bias >= 0 ? nt->groups[bias].master : NULL;
        const clred_dimage *d = gr->kind == GROUP_FLAT && gr->dark >= 0 ? nt->groups[gr->dark].master : NULL;
        st = night_master(nt, gr, frames, b, d, &gr->master);
    }
    for (size_t i = 0; i < gr->n; i++)
        clred_dimage_free(frames[i]);
    free(frames);
    if (st == CLRED_OK && p)
        st = put_product(nt, w, gr->master, gr->product);
    return st;
}

static clred_status masters_stage(night *nt, night_writer *w)
{
    const char **paths = NULL;
    size_t n = 0;
    CLRED_TRY(master_paths(nt, &paths, &n));
    night_reader *r = NULL;
    clred_status st = night_reader_start(nt->ctx, paths, n, nt->o->read_ahead, nt->o->stream, &r);
    for (size_t g = 0; g < nt->ngroups && st == CLRED_OK; g++)
        if (nt->groups[g].kind != GROUP_SCIENCE && nt->groups[g].needed)
            st = build_master(nt, &nt->groups[g], r, w);
    night_reader_finish(r, &nt->rep->read_s);
    free(paths);
    return st;
}

/* ------------------------------------------------------------ science */

typedef struct {
    long dark, flat;
    clred_calibrator *cal;
} calibrator_slot;

typedef struct {
    size_t frame;          /* index into nt->frames */
    long cal, bkg;         /* products */
    int process;           /* raw frame to reduce (else the calibrated product is read back) */
    int needed;            /* read at all */
} science_job;

static clred_status calibrator_for(night *nt, calibrator_slot *slots, size_t *nslots, long dark, long flat,
                                   clred_calibrator **out)
{
    for (size_t i = 0; i < *nslots; i++)
        if (slots[i].dark == dark && slots[i].flat == flat) {
            *out = slots[i].cal;
            return CLRED_OK;
        }
    long bias = find_bias(nt);
    clred_masters_dev m = {0};
    m.bias = bias >= 0 ? nt->groups[bias].master : NULL;
    m.dark = dark >= 0 ? nt->groups[dark].master : NULL;
    m.flat = flat >= 0 ? nt->groups[flat].master : NULL;
    m.bias_name = "master bias";
    m.dark_name = dark >= 0 ? nt->groups[dark].name : NULL;
    m.flat_name = flat >= 0 ? nt->groups[flat].name : NULL;
    CLRED_TRY(clred_calibrator_create_dev(nt->ctx, &m, &nt->o->calib, &slots[*nslots].cal));
    slots[*nslots].dark = dark;
    slots[*nslots].flat = flat;
    *out = slots[(*nslots)++].cal;
    return CLRED_OK;
}

static void leave_out(night *nt, const char *path, const char *reason)
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

/* Plans the science products of every group here; jobs in reading order. */
static clred_status plan_science(night *nt, science_job **jobs_out, size_t *njobs)
{
    size_t total = 0;
    for (size_t g = 0; g < nt->ngroups; g++)
        total += nt->groups[g].kind == GROUP_SCIENCE && nt->groups[g].here ? nt->groups[g].n : 0;
    science_job *jobs = calloc(total + 1, sizeof *jobs);
    if (!jobs)
        return clred_fail(CLRED_ERR_MEMORY, "night: out of memory");
    size_t k = 0;
    long bias = find_bias(nt);
    for (size_t g = 0; g < nt->ngroups; g++) {
        night_group *gr = &nt->groups[g];
        if (gr->kind != GROUP_SCIENCE || !gr->here)
            continue;
        size_t first = k;
        uint64_t stack_key = hash_text(nt->p_stack, 0x737461636bULL);
        int any_new = 0;
        for (size_t m = 0; m < gr->n; m++, k++) {
            const night_frame *fr = &nt->frames[gr->members[m]];
            long dark = nearest_dark(nt, fr->exptime);
            uint64_t key = hash_text(nt->p_science, hash_text(nt->p_calib, fr->identity));
            if (bias >= 0)
                key = clred_hash(&nt->groups[bias].key, sizeof(uint64_t), key);
            if (dark >= 0)
                key = clred_hash(&nt->groups[dark].key, sizeof(uint64_t), key);
            if (gr->flat >= 0)
                key = clred_hash(&nt->groups[gr->flat].key, sizeof(uint64_t), key);
            stack_key = clred_hash(&key, sizeof key, stack_key);
            jobs[k].frame = gr->members[m];
            CLRED_TRY(add_product(nt, "calibrated", fr->name, "calibrated", gr->name, key,
                                  inputs_of(nt, &gr->members[m], 1, NULL), &jobs[k].cal));
            jobs[k].bkg = -1;
            if (nt->o->background)
                CLRED_TRY(add_product(nt, "background", fr->name, "background", gr->name, key,
                                      inputs_of(nt, &gr->members[m], 1, NULL), &jobs[k].bkg));
            jobs[k].process = !nt->prod[jobs[k].cal].skip || (jobs[k].bkg >= 0 && !nt->prod[jobs[k].bkg].skip);
            any_new |= jobs[k].process;
        }
        char file[300], so[160], sf[100];
        safe_name(gr->object, so, sizeof so);
        safe_name(gr->filter, sf, sizeof sf);
        snprintf(file, sizeof file, "%s_%s.fits", so, sf);
        CLRED_TRY(add_product(nt, "stacks", file, "stack", gr->name, stack_key,
                              inputs_of(nt, gr->members, gr->n, NULL), &gr->product));
        int stack_needed = !nt->prod[gr->product].skip || any_new;
        if (any_new && nt->prod[gr->product].skip) {
            /* A frame was redone: the stack is too. */
            nt->prod[gr->product].skip = nt->prod[gr->product].done = 0;
            free(nt->prod[gr->product].reason);
            nt->prod[gr->product].reason = NULL;
        }
        for (size_t j = first; j < k; j++)
            jobs[j].needed = jobs[j].process || stack_needed;
    }
    *jobs_out = jobs;
    *njobs = k;
    return CLRED_OK;
}

/* Reduces one raw frame on the device into its calibrated,
 * background-subtracted image and the background map. */
static clred_status reduce_frame(night *nt, calibrator_slot *slots, size_t *nslots, const night_group *gr,
                                 const night_frame *fr, const clred_dimage *raw, clred_dimage **cal,
                                 clred_dimage **bkg)
{
    *cal = *bkg = NULL;
    clred_calibrator *c;
    CLRED_TRY(calibrator_for(nt, slots, nslots, nearest_dark(nt, fr->exptime), gr->flat, &c));
    clred_status st = clred_calibrator_apply_dev(c, raw, fr->path, cal);
    size_t ncr = 0;
    if (st == CLRED_OK && nt->o->cosmic)
        st = night_cosmic(nt, *cal, &ncr);
    if (st == CLRED_OK && nt->o->background)
        st = night_background(nt, *cal, bkg);
    if (st != CLRED_OK) {
        clred_dimage_free(*cal);
        clred_dimage_free(*bkg);
        *cal = *bkg = NULL;
        return st;
    }
    say(nt, "%s: calibrated%s%s", fr->name, nt->o->cosmic ? ", cosmic rays removed" : "",
        nt->o->background ? ", background subtracted" : "");
    return CLRED_OK;
}

/* Whether the group's calibrated frames (SCI, VAR, MASK), held on the device
 * for the stack beside their resampled copies, fit half of what the budget
 * leaves; the other half is for the steps' temporaries. The raw shape bounds
 * the trimmed one. */
static int stack_fits(night *nt, const night_group *gr)
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
    uint64_t key = hash_text(nt->p_stack, 0x737461636bULL);
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

static size_t count_ok(const night_group *gr, const int *ok)
{
    size_t n = 0;
    for (size_t m = 0; m < gr->n; m++)
        n += ok[m] != 0;
    return n;
}

static int no_frame_left(night *nt, night_group *gr, size_t n)
{
    if (n)
        return 0;
    say(nt, "%s: no frame left to stack", gr->name);
    pthread_mutex_lock(&nt->lock);
    nt->prod[gr->product].reason = strdup("no usable frame");
    pthread_mutex_unlock(&nt->lock);
    return 1;
}

/* The stack of the group's calibrated frames, held on the device. */
static clred_status stack_group_dev(night *nt, night_group *gr, clred_dimage **frames, const int *ok,
                                    night_writer *w)
{
    size_t n = count_ok(gr, ok);
    if (no_frame_left(nt, gr, n))
        return CLRED_OK;
    const clred_dimage **used = malloc(n * sizeof *used);
    if (!used)
        return clred_fail(CLRED_ERR_MEMORY, "night: out of memory");
    for (size_t m = 0, k = 0; m < gr->n; m++)
        if (ok[m])
            used[k++] = frames[m];
    say(nt, "%s: aligning and stacking %zu frames", gr->name, n);
    clred_combine_dev_result res;
    memset(&res, 0, sizeof res);
    double t0 = clred_now();
    clred_status st = night_stack_dev(nt, used, n, &res);
    clred_trace_host(nt->ctx, "host", "stack", t0, clred_now());
    free(used);
    if (st == CLRED_OK)
        st = stack_done(nt, gr, ok, n, clred_dimage_header(res.image));
    if (st == CLRED_OK)
        st = put_product(nt, w, res.image, gr->product);
    clred_combine_dev_result_free(&res);
    return st;
}

/* The stack of a group whose frames did not fit the device budget: read back
 * from the calibrated products just written. */
static clred_status stack_group_files(night *nt, night_group *gr, const char *const *paths, const int *ok,
                                      night_writer *w)
{
    size_t n = count_ok(gr, ok);
    if (no_frame_left(nt, gr, n))
        return CLRED_OK;
    night_writer_drain(w);
    clred_image *frames = calloc(n, sizeof *frames);
    if (!frames)
        return clred_fail(CLRED_ERR_MEMORY, "night: out of memory");
    clred_status st = CLRED_OK;
    say(nt, "%s: aligning and stacking %zu frames read back from their files (too many to hold on the device)",
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
        st = night_stack_host(nt, frames, n, &res);
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
        nt->products_out++;
        st = night_writer_put(w, nt->prod[gr->product].path, &res.image, 1, (size_t)gr->product);
    }
    clred_combine_result_free(&res);
    return st;
}

/* One science frame: reduced and its products queued, or (unchanged since
 * the last run) its calibrated product read back for the stack. The
 * calibrated frame stays on the device in *keep when asked for. */
static clred_status science_frame(night *nt, night_reader *r, night_writer *w, calibrator_slot *slots,
                                  size_t *nslots, const night_group *gr, const science_job *jb, int hold,
                                  clred_dimage **keep, int *ok)
{
    const night_frame *fr = &nt->frames[jb->frame];
    *ok = 0;
    clred_dimage *d = NULL;
    clred_status rs = next_on_device(nt, r, &d);
    if (rs != CLRED_OK) {
        if (nt->o->strict || !jb->process)
            return rs;
        say(nt, "%s: left out: %s", fr->path, clred_last_error());
        leave_out(nt, fr->path, clred_last_error());
        return CLRED_OK;
    }
    if (!jb->process) {
        if (hold)
            *keep = d;
        else
            clred_dimage_free(d); /* read back from its file for the stack */
        *ok = 1;
        return CLRED_OK;
    }
    clred_dimage *cal = NULL, *bkg = NULL;
    clred_status st = reduce_frame(nt, slots, nslots, gr, fr, d, &cal, &bkg);
    clred_dimage_free(d);
    if (st == CLRED_OK && jb->bkg >= 0)
        st = put_product(nt, w, bkg, jb->bkg);
    clred_dimage_free(bkg);
    if (st == CLRED_OK)
        st = put_product(nt, w, cal, jb->cal);
    if (st == CLRED_OK && hold)
        *keep = cal;
    else
        clred_dimage_free(cal);
    *ok = st == CLRED_OK;
    return st;
}

static clred_status science_stage(night *nt, night_writer *w, double *stack_s)
{
    science_job *jobs = NULL;
    size_t njobs = 0;
    CLRED_TRY(plan_science(nt, &jobs, &njobs));
    pthread_mutex_lock(&nt->lock);
    clred_status st = write_manifest(nt, 0);
    pthread_mutex_unlock(&nt->lock);
    const char **paths = calloc(njobs + 1, sizeof *paths);
    size_t nread = 0;
    for (size_t j = 0; paths && j < njobs; j++)
        if (jobs[j].needed)
            paths[nread++] = jobs[j].process ? nt->frames[jobs[j].frame].path : nt->prod[jobs[j].cal].path;
    night_reader *r = NULL;
    if (st == CLRED_OK)
        st = paths ? night_reader_start(nt->ctx, paths, nread, nt->o->read_ahead, nt->o->stream, &r)
                   : clred_fail(CLRED_ERR_MEMORY, "night: out of memory");
    calibrator_slot *slots = calloc(nt->ngroups + 1, sizeof *slots);
    size_t nslots = 0;
    if (!slots && st == CLRED_OK)
        st = clred_fail(CLRED_ERR_MEMORY, "night: out of memory");
    size_t j = 0;
    for (size_t g = 0; g < nt->ngroups && st == CLRED_OK; g++) {
        night_group *gr = &nt->groups[g];
        if (gr->kind != GROUP_SCIENCE || !gr->here)
            continue;
        clred_dimage **frames = calloc(gr->n, sizeof *frames);
        const char **cal_paths = calloc(gr->n, sizeof *cal_paths);
        int *ok = calloc(gr->n, sizeof *ok);
        int stack = gr->product >= 0 && !nt->prod[gr->product].skip;
        int hold = stack && stack_fits(nt, gr);
        if (!frames || !ok || !cal_paths)
            st = clred_fail(CLRED_ERR_MEMORY, "night: out of memory");
        else if (stack && !hold)
            say(nt, "%s: %zu calibrated frames and their resampled copies would not fit the device's budget: "
                "written, then read back for the stack", gr->name, gr->n);
        for (size_t m = 0; m < gr->n && st == CLRED_OK; m++, j++) {
            if (!jobs[j].needed)
                continue;
            cal_paths[m] = nt->prod[jobs[j].cal].path;
            st = science_frame(nt, r, w, slots, &nslots, gr, &jobs[j], hold, &frames[m], &ok[m]);
        }
        if (st == CLRED_OK && stack) {
            double t0 = clred_now();
            st = hold ? stack_group_dev(nt, gr, frames, ok, w) : stack_group_files(nt, gr, cal_paths, ok, w);
            *stack_s += clred_now() - t0;
        }
        for (size_t m = 0; frames && m < gr->n; m++)
            clred_dimage_free(frames[m]);
        free(frames);
        free(cal_paths);
        free(ok);
    }
    for (size_t i = 0; i < nslots; i++)
        clred_calibrator_free(slots[i].cal);
    free(slots);
    night_reader_finish(r, &nt->rep->read_s);
    free(paths);
    free(jobs);
    return st;
}

/* ------------------------------------------------------------ run */

static clred_status classify(night *nt, const char *const *inputs, size_t n)
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
            say(nt, "%s: left out: %s", fr->path, fr->problem);
            leave_out(nt, fr->path, fr->problem);
            continue;
        }
        nt->rep->nbias += fr->kind == CLRED_FRAME_BIAS;
        nt->rep->ndark += fr->kind == CLRED_FRAME_DARK;
        nt->rep->nflat += fr->kind == CLRED_FRAME_FLAT;
        nt->rep->nscience += fr->kind == CLRED_FRAME_SCIENCE;
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

static clred_status check_opts(const clred_night_opts *o, const char *outdir, size_t n)
{
    if (!outdir || !*outdir)
        return clred_fail(CLRED_ERR_USAGE, "night: no output directory");
    if (!n)
        return clred_fail(CLRED_ERR_USAGE, "night: no input frames");
    if (o->shard_count < 1 || o->shard_index >= o->shard_count)
        return clred_fail(CLRED_ERR_USAGE, "night: shard %zu of %zu: the index must be below the count",
                          o->shard_index + 1, o->shard_count);
    if (!o->type_keys || !o->exptime_keys || !o->filter_keys || !o->object_keys)
        return clred_fail(CLRED_ERR_USAGE, "night: a keyword list is NULL");
    return CLRED_OK;
}

static clred_status prepare_outdir(night *nt)
{
    CLRED_TRY(make_dir(nt->outdir));
    static const char *subs[] = {"masters", "calibrated", "background", "stacks"};
    for (size_t i = 0; i < sizeof subs / sizeof *subs; i++) {
        char *p = join_path(nt->outdir, "", subs[i]);
        if (!p)
            return clred_fail(CLRED_ERR_MEMORY, "night: out of memory");
        clred_status st = make_dir(p);
        if (st == CLRED_OK)
            remove_stale_temporaries(p);
        free(p);
        CLRED_TRY(st);
    }
    remove_stale_temporaries(nt->outdir);
    return CLRED_OK;
}

static void fill_report(night *nt, clred_night_report *rep)
{
    rep->products = calloc(nt->nprod + 1, sizeof *rep->products);
    for (size_t i = 0; rep->products && i < nt->nprod; i++) {
        night_product *p = &nt->prod[i];
        clred_night_item *it = &rep->products[rep->nproducts++];
        it->path = p->path;
        it->what = strdup(p->what);
        it->written = p->done && !p->skip;
        it->reason = p->reason;
        p->path = p->reason = NULL;
        rep->nwritten += it->written;
        rep->nskipped += p->skip;
    }
    rep->left_out = nt->left;
    rep->nleft_out = nt->nleft;
    nt->left = NULL;
    nt->nleft = 0;
    rep->ngroups = nt->ngroups;
    for (size_t g = 0; g < nt->ngroups; g++)
        rep->ngroups_here += nt->groups[g].here;
}

static void night_free(night *nt)
{
    for (size_t i = 0; i < nt->nframes; i++)
        free(nt->frames[i].path);
    free(nt->frames);
    for (size_t g = 0; g < nt->ngroups; g++) {
        free(nt->groups[g].members);
        clred_dimage_free(nt->groups[g].master);
    }
    free(nt->groups);
    for (size_t i = 0; i < nt->nprod; i++) {
        free(nt->prod[i].path);
        free(nt->prod[i].reason);
        free(nt->prod[i].inputs);
    }
    free(nt->prod);
    for (size_t i = 0; i < nt->nleft; i++) {
        free(nt->left[i].path);
        free(nt->left[i].what);
        free(nt->left[i].reason);
    }
    free(nt->left);
    night_previous_free(&nt->prev);
    pthread_mutex_destroy(&nt->lock);
}

clred_status clred_night_run(clred_ctx *ctx, const char *const *inputs, size_t n, const char *outdir,
                             const clred_night_opts *opts, clred_night_report *report)
{
    clred_night_opts defaults = clred_night_defaults();
    const clred_night_opts *o = opts ? opts : &defaults;
    clred_night_report local;
    clred_night_report *rep = report ? report : &local;
    memset(rep, 0, sizeof *rep);
    CLRED_TRY(check_opts(o, outdir, n));

    night nt;
    memset(&nt, 0, sizeof nt);
    nt.ctx = ctx;
    nt.o = o;
    nt.outdir = outdir;
    nt.rep = rep;
    nt.t0 = clred_now();
    pthread_mutex_init(&nt.lock, NULL);
    parameter_texts(&nt);
    clred_ctx_timing_reset(ctx);

    double t = clred_now();
    clred_status st = classify(&nt, inputs, n);
    if (st == CLRED_OK)
        st = plan_groups(&nt);
    if (st == CLRED_OK) {
        if (o->shard_count > 1)
            snprintf(nt.manifest, sizeof nt.manifest, "%s/manifest.shard-%zu-of-%zu.json", outdir, o->shard_index + 1,
                     o->shard_count);
        else
            snprintf(nt.manifest, sizeof nt.manifest, "%s/manifest.json", outdir);
        if (!o->overwrite)
            night_previous_load(nt.manifest, &nt.prev);
        st = prepare_outdir(&nt);
    }
    if (st == CLRED_OK)
        st = plan_masters(&nt);
    rep->stage_s[CLRED_NIGHT_CLASSIFY] = clred_now() - t;
    size_t here = 0;
    for (size_t g = 0; g < nt.ngroups; g++)
        here += nt.groups[g].here;
    say(&nt, "%zu frames: %zu bias, %zu dark, %zu flat, %zu science, %zu left out; %zu groups, %zu in this shard", n,
        rep->nbias, rep->ndark, rep->nflat, rep->nscience, nt.nleft, nt.ngroups, here);

    night_writer *w = NULL;
    if (st == CLRED_OK)
        st = night_writer_start(ctx, o->stream, product_written, &nt, &w);
    if (st == CLRED_OK) {
        t = clred_now();
        st = masters_stage(&nt, w);
        rep->stage_s[CLRED_NIGHT_MASTERS] = clred_now() - t;
    }
    if (st == CLRED_OK) {
        t = clred_now();
        double stack_s = 0;
        st = science_stage(&nt, w, &stack_s);
        rep->stage_s[CLRED_NIGHT_SCIENCE] = clred_now() - t - stack_s;
        rep->stage_s[CLRED_NIGHT_STACKS] = stack_s;
    }
    night_writer_finish(w, &rep->write_s);
    clred_ctx_timing(ctx, &rep->timing);
    rep->image_uploads = ctx->image_uploads;
    rep->image_downloads = ctx->image_downloads;
    rep->frames_in = nt.frames_in;
    rep->products_out = nt.products_out;
    rep->stacks_read_back = nt.stacks_read_back;
    if (st == CLRED_OK && nt.write_status != CLRED_OK)
        st = clred_fail(nt.write_status, "%s", nt.write_error);
    if (w || st == CLRED_OK) {
        pthread_mutex_lock(&nt.lock);
        clred_status ms = write_manifest(&nt, st == CLRED_OK);
        pthread_mutex_unlock(&nt.lock);
        if (st == CLRED_OK)
            st = ms;
        rep->manifest = strdup(nt.manifest);
    }
    rep->wall_s = clred_now() - nt.t0;
    fill_report(&nt, rep);
    night_free(&nt);
    if (!report)
        clred_night_report_free(rep);
    return st;
}

void clred_night_report_free(clred_night_report *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nproducts; i++) {
        free(r->products[i].path);
        free(r->products[i].what);
        free(r->products[i].reason);
    }
    free(r->products);
    for (size_t i = 0; i < r->nleft_out; i++) {
        free(r->left_out[i].path);
        free(r->left_out[i].what);
        free(r->left_out[i].reason);
    }
    free(r->left_out);
    free(r->manifest);
    memset(r, 0, sizeof *r);
}
