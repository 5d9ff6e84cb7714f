/* The night's masters on the device: the master bias, a master dark per
 * exposure time (per second) and a master flat per filter, each made from its
 * group's raw frames (or, unchanged since the last run, read from its
 * product) and kept in the group for the calibrators of the science stage.
 * A master another shard owns is built in memory and not written. */
#include <stdlib.h>

#include "night_internal.h"

/* The masters' inputs in the order they are used: the raw frames of a master
 * to build, the product of an unchanged one. */
static clred_status master_paths(night *nt, const char ***paths, size_t *n)
{
    size_t total = 0;
    for (size_t g = 0; g < nt->ngroups; g++)
        if (night_master_needed(&nt->groups[g]))
            total += nt->groups[g].n;
    *paths = calloc(total + 1, sizeof **paths);
    if (!*paths)
        return clred_fail(CLRED_ERR_MEMORY, "night: out of memory");
    *n = 0;
    for (size_t g = 0; g < nt->ngroups; g++) {
        night_group *gr = &nt->groups[g];
        if (!night_master_needed(gr))
            continue;
        if (gr->product >= 0 && nt->prod[gr->product].skip)
            (*paths)[(*n)++] = nt->prod[gr->product].path;
        else
            for (size_t m = 0; m < gr->n; m++)
                (*paths)[(*n)++] = nt->frames[gr->members[m]].path;
    }
    return CLRED_OK;
}

/* Master bias, dark (per second) or flat from the group's raw frames on the device. */
static clred_status combine_master(night *nt, night_group *gr, clred_dimage *const *frames, const clred_dimage *bias,
                                   const clred_dimage *dark, clred_dimage **out)
{
    const char **names = malloc(gr->n * sizeof *names);
    if (!names)
        return clred_fail(CLRED_ERR_MEMORY, "night: out of memory");
    for (size_t m = 0; m < gr->n; m++)
        names[m] = nt->frames[gr->members[m]].path;
    const clred_dimage *const *f = (const clred_dimage *const *)frames;
    const clred_night_opts *o = nt->o;
    double t0 = clred_now();
    clred_status st;
    if (gr->kind == GROUP_BIAS)
        st = clred_master_bias_dev(nt->ctx, f, names, gr->n, &o->calib, &o->bias_combine, out);
    else if (gr->kind == GROUP_DARK)
        st = clred_master_dark_dev(nt->ctx, f, names, gr->n, bias, &o->calib, &o->dark_combine, out);
    else
        st = clred_master_flat_dev(nt->ctx, f, names, gr->n, bias, dark, &o->calib, &o->flat_combine, out);
    clred_trace_host(nt->ctx, "host", gr->name, t0, clred_now());
    free(names);
    return st;
}

static clred_status build_master(night *nt, night_group *gr, clred_stream_reader *r, clred_stream_writer *w)
{
    night_product *p = gr->product >= 0 ? &nt->prod[gr->product] : NULL;
    if (p && p->skip) {
        night_say(nt, "%s: unchanged, read from %s", gr->name, p->path);
        return night_next_on_device(nt, r, &gr->master);
    }
    clred_dimage **frames = calloc(gr->n, sizeof *frames);
    if (!frames)
        return clred_fail(CLRED_ERR_MEMORY, "night: out of memory");
    clred_status st = CLRED_OK;
    for (size_t m = 0; m < gr->n && st == CLRED_OK; m++)
        st = night_next_on_device(nt, r, &frames[m]);
    if (st == CLRED_OK) {
        night_say(nt, "%s from %zu frames%s", gr->name, gr->n,
                  gr->here ? "" : " (in memory: another shard writes it)");
        /* The masters it uses sort before it, so they are built already. */
        long bias = night_bias_group(nt);
        const clred_dimage *b = gr->kind != GROUP_BIAS && bias >= 0 ? nt->groups[bias].master : NULL;
        const clred_dimage *d = gr->kind == GROUP_FLAT && gr->dark >= 0 ? nt->groups[gr->dark].master : NULL;
        st = combine_master(nt, gr, frames, b, d, &gr->master);
    }
    for (size_t i = 0; i < gr->n; i++)
        clred_dimage_free(frames[i]);
    free(frames);
    if (st == CLRED_OK && p)
        st = night_put_product(nt, w, gr->master, gr->product);
    return st;
}

clred_status night_masters_stage(night *nt, clred_stream_writer *w)
{
    const char **paths = NULL;
    size_t n = 0;
    CLRED_TRY(master_paths(nt, &paths, &n));
    clred_stream_reader *r = NULL;
    clred_status st = clred_stream_reader_start(nt->ctx, paths, n, nt->o->read_ahead, nt->o->stream, 0, &r);
    for (size_t g = 0; g < nt->ngroups && st == CLRED_OK; g++)
        if (night_master_needed(&nt->groups[g]))
            st = build_master(nt, &nt->groups[g], r, w);
    clred_stream_reader_finish(r, &nt->rep->read_s);
    free(paths);
    return st;
}
