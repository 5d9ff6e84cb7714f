/* The manifest: rewritten (atomically) after every product, so a run killed
 * at any point leaves one that says what was finished; and a previous run's,
 * read back so that a rerun skips the products whose inputs and parameters
 * have not changed. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "night_internal.h"

void night_previous_load(const char *manifest, night_previous *p)
{
    memset(p, 0, sizeof *p);
    char err[128];
    clred_json *j = clred_json_parse_file(manifest, err, sizeof err);
    if (!j)
        return;
    const clred_json *products = clred_json_get(j, "products");
    size_t n = products && products->type == CLRED_JSON_ARRAY ? products->count : 0;
    p->path = calloc(n + 1, sizeof *p->path);
    p->key = calloc(n + 1, sizeof *p->key);
    for (size_t i = 0; p->path && p->key && i < n; i++) {
        const clred_json *e = clred_json_at(products, i);
        const clred_json *done = clred_json_get(e, "done");
        const char *key = clred_json_str(clred_json_get(e, "key")), *path = clred_json_str(clred_json_get(e, "path"));
        /* Only products the run finished writing count. */
        if (!done || done->type != CLRED_JSON_BOOL || !done->number || !*key || !*path)
            continue;
        p->key[p->n] = strtoull(key, NULL, 16);
        p->path[p->n] = strdup(path);
        if (p->path[p->n])
            p->n++;
    }
    clred_json_free(j);
}

uint64_t night_previous_key(const night_previous *p, const char *path)
{
    for (size_t i = 0; i < p->n; i++)
        if (!strcmp(p->path[i], path))
            return p->key[i];
    return 0;
}

void night_previous_free(night_previous *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->path[i]);
    free(p->path);
    free(p->key);
    memset(p, 0, sizeof *p);
}

/* ------------------------------------------------------------ writing */

static void json_text(FILE *f, const char *s) { clred_json_quote(f, s); }

/* before (punctuation and a name) then value as a JSON string. */
static void json_field(FILE *f, const char *before, const char *value)
{
    fputs(before, f);
    json_text(f, value);
}

static const char *kind_word(clred_frame_kind k)
{
    static const char *w[] = {"unknown", "bias", "dark", "flat", "science"};
    return w[k];
}

static const char *stage_names[CLRED_NIGHT_NSTAGES] = {"classify", "masters", "science", "stacks",
                                                                "difference"};

static void json_number(FILE *f, const char *name, double v)
{
    if (isfinite(v))
        fprintf(f, ", \"%s\": %.6g", name, v);
    else
        fprintf(f, ", \"%s\": null", name);
}

/* A science frame's quality and whether it went into its stack. */
static void write_quality(FILE *f, const night_frame *fr)
{
    const clred_frame_quality *q = &fr->quality;
    fprintf(f, ", \"quality\": {\"nstars\": %zu", q->nstars);
    json_number(f, "fwhm", q->fwhm);
    json_number(f, "fwhm_arcsec", q->fwhm_arcsec);
    json_number(f, "ellipticity", q->ellipticity);
    json_number(f, "sky", q->sky);
    json_number(f, "sky_noise", q->sky_noise);
    json_number(f, "zeropoint", q->zeropoint);
    json_number(f, "limit_mag", q->limit_mag);
    json_number(f, "astrom_rms", q->astrom_rms);
    fprintf(f, ", \"in_stack\": %s", fr->below_limits[0] ? "false" : "true");
    if (fr->below_limits[0])
        json_field(f, ", \"below_limits\": ", fr->below_limits);
    fprintf(f, "}");
}

static void write_inputs(FILE *f, const night *nt)
{
    fprintf(f, "  \"inputs\": [");
    for (size_t i = 0; i < nt->nframes; i++) {
        const night_frame *fr = &nt->frames[i];
        json_field(f, i ? ",\n    {\"path\": " : "\n    {\"path\": ", fr->path);
        fprintf(f, ", \"size\": %" PRIu64 ", \"mtime_ns\": %" PRId64 ", \"kind\": \"%s\", \"exptime\": ", fr->size,
                fr->mtime_ns, kind_word(fr->kind));
        if (isfinite(fr->exptime))
            fprintf(f, "%.6g", fr->exptime);
        else
            fprintf(f, "null");
        json_field(f, ", \"filter\": ", fr->filter);
        json_field(f, ", \"object\": ", fr->object);
        if (fr->has_quality)
            write_quality(f, fr);
        fprintf(f, "}");
    }
    fprintf(f, "\n  ],\n  \"left_out\": [");
    for (size_t i = 0; i < nt->nleft; i++) {
        json_field(f, i ? ",\n    {\"path\": " : "\n    {\"path\": ", nt->left[i].path);
        json_field(f, ", \"reason\": ", nt->left[i].reason);
        fprintf(f, "}");
    }
    fprintf(f, "\n  ],\n");
}

static void write_products(FILE *f, const night *nt)
{
    fprintf(f, "  \"groups\": [");
    for (size_t g = 0; g < nt->ngroups; g++) {
        json_field(f, g ? ",\n    {\"name\": " : "\n    {\"name\": ", nt->groups[g].name);
        fprintf(f, ", \"frames\": %zu, \"here\": %s}", nt->groups[g].n, nt->groups[g].here ? "true" : "false");
    }
    fprintf(f, "\n  ],\n  \"products\": [");
    for (size_t i = 0; i < nt->nprod; i++) {
        const night_product *p = &nt->prod[i];
        json_field(f, i ? ",\n    {\"path\": " : "\n    {\"path\": ", p->path);
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
    fprintf(f, "\n  ],\n");
}

static void write_timings(FILE *f, const night *nt)
{
    const clred_night_report *r = nt->rep;
    fprintf(f, "  \"timings_s\": {");
    for (int s = 0; s < CLRED_NIGHT_NSTAGES; s++)
        fprintf(f, "\"%s\": %.4f, ", stage_names[s], r->stage_s[s]);
    fprintf(f, "\"read\": %.4f, \"write\": %.4f, \"wall\": %.4f},\n", r->read_s, r->write_s, clred_now() - nt->t0);
    clred_timing t = r->timing;
    uint64_t up = r->image_uploads, down = r->image_downloads;
    fprintf(f, "  \"transfers\": {\"uploads\": %" PRIu64 ", \"downloads\": %" PRIu64 ", \"kernels\": %" PRIu64
               ", \"upload_bytes\": %" PRIu64 ", \"download_bytes\": %" PRIu64 ",\n    \"image_uploads\": %" PRIu64
               ", \"image_downloads\": %" PRIu64 ", \"frames_in\": %zu, \"products_out\": %zu"
               ", \"image_uploads_per_frame\": %.3f, \"image_downloads_per_product\": %.3f"
               ", \"stacks_read_back\": %zu}\n}\n",
            t.uploads, t.downloads, t.kernels, t.upload_bytes, t.download_bytes, up, down, r->frames_in,
            r->products_out, r->frames_in ? (double)up / r->frames_in : 0.0,
            r->products_out ? (double)down / r->products_out : 0.0, r->stacks_read_back);
}

/* The caller holds the lock. */
static clred_status write_manifest(night *nt, int complete)
{
    char tmp[4200];
    FILE *f;
    CLRED_TRY(clred_atomic_open(nt->manifest, 1, tmp, sizeof tmp, &f));
    const clred_night_opts *o = nt->o;
    fprintf(f, "{\n  \"software\": \"clred %s\",\n  \"complete\": %s,\n  \"shard\": [%zu, %zu],\n", CLRED_VERSION,
            complete ? "true" : "false", o->shard_index + 1, o->shard_count);
    json_field(f, "  \"device\": ", clred_ctx_device(nt->ctx)->name);
    json_field(f, ",\n  \"keywords\": {\"type\": ", o->type_keys);
    json_field(f, ", \"exptime\": ", o->exptime_keys);
    json_field(f, ", \"filter\": ", o->filter_keys);
    json_field(f, ", \"object\": ", o->object_keys);
    json_field(f, "},\n  \"parameters\": {\"calibration\": ", nt->p_calib);
    json_field(f, ", \"bias_combine\": ", nt->p_bias);
    json_field(f, ", \"dark_combine\": ", nt->p_dark);
    json_field(f, ", \"flat_combine\": ", nt->p_flat);
    json_field(f, ", \"science\": ", nt->p_science);
    json_field(f, ", \"stack\": ", nt->p_stack);
    if (nt->p_subtract[0])
        json_field(f, ", \"subtract\": ", nt->p_subtract);
    fprintf(f, "},\n");
    write_inputs(f, nt);
    write_products(f, nt);
    write_timings(f, nt);
    return clred_atomic_close(f, tmp, nt->manifest);
}

clred_status night_manifest_write(night *nt, int complete)
{
    pthread_mutex_lock(&nt->lock);
    clred_status st = write_manifest(nt, complete);
    pthread_mutex_unlock(&nt->lock);
    return st;
}

void night_product_written(void *user, size_t index, clred_status st, const char *message)
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
