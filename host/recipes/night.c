/* The night recipe (clred run): the options' defaults, clred_night_run and
 * its report. See clred.h for the contract and night_internal.h for the
 * parts; this file prepares the output directory and runs the stages in
 * order: classify and plan, masters, science frames and stacks.
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
    o.bkg_save_map = 0;
    o.coadd_background = 0;
    o.coadd_bkg_opts = clred_coadd_bkg_defaults();
    o.stack = clred_stack_defaults();
    o.stack.copts = o.dark_combine;
    o.stack.copts.scale = CLRED_SCALE_ADDITIVE; /* the sky changes from frame to frame */
    o.quality = 1;
    o.quality_limits = clred_quality_no_limits();
    o.shard_index = 0;
    o.shard_count = 1;
    o.stream = 1;
    o.read_ahead = 2;
    return o;
}

void night_say(night *nt, const char *fmt, ...)
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

/* ------------------------------------------------------------ output directory */

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
            char *p = night_join_path(dir, "", e->d_name);
            if (p)
                unlink(p);
            free(p);
        }
    }
    closedir(d);
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
    if (o->subtract_reference && access(o->subtract_reference, R_OK) != 0)
        return clred_fail(CLRED_ERR_USAGE, "night: the reference %s cannot be read (%s)", o->subtract_reference,
                          strerror(errno));
    return CLRED_OK;
}

static clred_status prepare_outdir(night *nt)
{
    CLRED_TRY(make_dir(nt->outdir));
    static const char *subs[] = {"masters", "calibrated", "background", "stacks", "difference"};
    for (size_t i = 0; i < sizeof subs / sizeof *subs; i++) {
        if (i == 4 && !nt->o->subtract_reference)
            continue;
        char *p = night_join_path(nt->outdir, "", subs[i]);
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

/* ------------------------------------------------------------ report */

static void free_items(clred_night_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(items[i].path);
        free(items[i].what);
        free(items[i].reason);
    }
    free(items);
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
    free_items(nt->left, nt->nleft);
    night_previous_free(&nt->prev);
    pthread_mutex_destroy(&nt->lock);
}

/* The kernel programs a night with options o uses (at most 16), which one
 * thread builds ahead in the order its stages first use them, but for the
 * stacks' programs, which depend on their depth and are left to the stages.
 * Families the night always uses together are one program ("a+b", see
 * clred_programs_group): statistics with the frames' quality (sources and
 * photometry), calibration with the arithmetic, and alignment's phase
 * correlation with its FFTs on a CPU (host/rt/fft.c) and the resampling.
 * The samples' program, used by masters-only nights, the quality and the
 * alignment alike, stays apart, so that each group's makeup depends only on
 * whether that part runs: all a helper compiling ahead for the night is
 * told (clred_night_use_programs). The first program any process builds
 * also pays the compiler's start-up (about 0.4 CPU s); helpers started
 * before this thread gets to their programs build those themselves
 * (clred demo's alignment helper does, on the core this thread leaves
 * idle), the others wait for it and load them. */
static size_t night_families(const clred_night_opts *o, int is_cpu, size_t nscience, const char **families)
{
    size_t n = 0;
    families[n++] = nscience > 0 && o->quality ? "stats+sources+photometry" : "stats";
    families[n++] = "calibrate+arith";
    families[n++] = "sample";
    if (nscience > 0) {
        if (o->cosmic) {
            families[n++] = "cosmic";
            families[n++] = "median";
        }
        if (o->background)
            families[n++] = "background";
        if (nscience > 1)
            families[n++] = is_cpu ? "fft_util+fft_columns+resample" : "fft_util+resample";
    }
    return n;
}

/* Makes ctx build the night's families in the night's programs. */
static void group_families(clred_ctx *ctx, const char *const *families, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strchr(families[i], '+'))
            clred_programs_group(ctx, families[i]);
}

/* Compiles the night's programs in the background while the stages start
 * (on a cold kernel cache, a first night otherwise compiles them one after
 * the other, each when first needed), unless clred_night_prepare started
 * that already. One thread on a two-core host: the stages' own compiles
 * and work take the other core. */
static void build_programs_ahead(clred_ctx *ctx, const clred_night_opts *o, size_t nscience)
{
    if (ctx->ahead)
        return;
    const char *families[16];
    size_t n = night_families(o, ctx->info.is_cpu, nscience, families);
    group_families(ctx, families, n);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (!clred_programs_build_ahead(ctx, families, n, cores > 2 ? (size_t)cores - 1 : 1))
        clred_programs_prefetch(ctx, families, n); /* no disk cache to build into: into the context, now */
}

void clred_night_use_programs(clred_ctx *ctx, const clred_night_plan *plan)
{
    if (!ctx || !plan)
        return;
    clred_night_opts o = clred_night_defaults();
    o.quality = plan->quality;
    const char *families[16];
    size_t n = night_families(&o, ctx->info.is_cpu, plan->align ? 2 : 1, families);
    group_families(ctx, families, n);
}

/* Tells the caller what the rest of the night will launch (opts.planned),
 * from the science groups of this run: their frames' size, and whether any
 * stack registers two or more frames. Nothing when no science frame is here. */
static void tell_plan(const night *nt)
{
    if (!nt->o->planned)
        return;
    clred_night_plan p;
    memset(&p, 0, sizeof p);
    for (size_t g = 0; g < nt->ngroups; g++) {
        const night_group *gr = &nt->groups[g];
        if (!night_stack_here(gr) || gr->n == 0)
            continue;
        if (p.width == 0) {
            p.width = nt->frames[gr->members[0]].width;
            p.height = nt->frames[gr->members[0]].height;
        }
        if (gr->n > 1) /* (its stack may turn out unchanged: planned later, with the science frames) */
            p.align = 1;
    }
    if (p.width == 0)
        return;
    p.quality = nt->o->quality;
    nt->o->planned(nt->o->planned_user, &p);
}

clred_status clred_night_prepare(clred_ctx *ctx, const clred_night_opts *opts)
{
    if (!ctx)
        return clred_fail(CLRED_ERR_USAGE, "night: no device context");
    clred_night_opts defaults = clred_night_defaults();
    /* as if the night had several science frames: the programs of a night
     * without them are a subset */
    build_programs_ahead(ctx, opts ? opts : &defaults, 2);
    return CLRED_OK;
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
    night_parameter_texts(&nt);
    clred_ctx_timing_reset(ctx);

    double t = clred_now();
    clred_status st = night_classify(&nt, inputs, n);
    if (st == CLRED_OK)
        st = night_plan_groups(&nt);
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
        st = night_plan_masters(&nt);
    rep->stage_s[CLRED_NIGHT_CLASSIFY] = clred_now() - t;
    size_t here = 0;
    for (size_t g = 0; g < nt.ngroups; g++)
        here += nt.groups[g].here;
    night_say(&nt, "%zu frames: %zu bias, %zu dark, %zu flat, %zu science, %zu left out; %zu groups, %zu in this shard",
              n, rep->nbias, rep->ndark, rep->nflat, rep->nscience, nt.nleft, nt.ngroups, here);

    if (st == CLRED_OK) {
        build_programs_ahead(ctx, o, rep->nscience);
        tell_plan(&nt);
    }
    clred_stream_writer *w = NULL;
    if (st == CLRED_OK)
        st = clred_stream_writer_start(ctx, o->stream, 0, night_product_written, &nt, &w);
    if (st == CLRED_OK) {
        t = clred_now();
        st = night_masters_stage(&nt, w);
        rep->stage_s[CLRED_NIGHT_MASTERS] = clred_now() - t;
    }
    if (st == CLRED_OK) {
        t = clred_now();
        double stack_s = 0;
        st = night_science_stage(&nt, w, &stack_s);
        rep->stage_s[CLRED_NIGHT_SCIENCE] = clred_now() - t - stack_s;
        rep->stage_s[CLRED_NIGHT_STACKS] = stack_s;
    }
    if (st == CLRED_OK) {
        t = clred_now();
        st = night_difference_stage(&nt, w);
        rep->stage_s[CLRED_NIGHT_DIFFERENCE] = clred_now() - t;
    }
    clred_programs_wait_ahead(ctx);
    clred_stream_writer_finish(w, 1, &rep->write_s);
    clred_ctx_timing(ctx, &rep->timing);
    rep->image_uploads = ctx->image_uploads;
    rep->image_downloads = ctx->image_downloads;
    rep->frames_in = nt.frames_in;
    rep->products_out = nt.products_out;
    rep->stacks_read_back = nt.stacks_read_back;
    if (st == CLRED_OK && nt.write_status != CLRED_OK)
        st = clred_fail(nt.write_status, "%s", nt.write_error);
    if (w || st == CLRED_OK) {
        clred_status ms = night_manifest_write(&nt, st == CLRED_OK);
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
    free_items(r->products, r->nproducts);
    free_items(r->left_out, r->nleft_out);
    free(r->manifest);
    memset(r, 0, sizeof *r);
}
