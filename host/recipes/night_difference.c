/* The night's difference imaging: each stack of this shard, once written, is
 * registered onto the configured reference by star matching, resampled
 * onto the reference's grid,
 * and subtracted from it by clred_subtract_files (ZOGY, or whichever method
 * the job names), which also writes its candidates.
 *
 * Choices:
 * - stacks, not single frames, are subtracted: a stack is what the night
 *   makes per (object, filter), it is deeper, free of cosmic rays, and its
 *   grid is one frame's, so one registration per group serves;
 * - the subtraction reads the stack back from its file (the writer has it
 *   on disk by then) and goes through the same library call as
 *   `clred subtract`, so every option and method of that call applies;
 * - a stack that cannot be subtracted (bad input: no overlap, too few PSF
 *   stars) leaves its three products unwritten with the reason and the night
 *   goes on; device and memory failures stop it. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "night_internal.h"

void night_subtract_parameters(night *nt)
{
    const clred_night_opts *o = nt->o;
    nt->p_subtract[0] = '\0';
    if (!o->subtract_reference)
        return;
    clred_subtract_job d = clred_subtract_job_defaults();
    const clred_subtract_job *j = o->subtract ? o->subtract : &d;
    struct stat sb;
    memset(&sb, 0, sizeof sb);
    stat(o->subtract_reference, &sb); /* a reference that is not there fails the stage with its name */
    const clred_zogy_opts *z = &j->zogy;
    snprintf(nt->p_subtract, sizeof nt->p_subtract,
             "reference=%s size=%lld mtime=%lld.%09ld method=%d ref_psf=%s ref_noise=%s ref_mask=%s fit_mask=%s,%d "
             "psf_size=%zu "
             "psf=%zu,%g,%g,%g,%d fn=%g fr=%g astrom=%g,%g psferr=%g,%g renormalize=%d grow=%d tile=%zu,%zu thresh=%g both=%d "
             "ap=%g reject=%u",
             o->subtract_reference, (long long)sb.st_size, (long long)sb.st_mtim.tv_sec, (long)sb.st_mtim.tv_nsec,
             (int)j->method, j->ref_psf ? j->ref_psf : "-", j->ref_noise ? j->ref_noise : "-",
             j->ref_mask ? j->ref_mask : "-", j->fit_mask ? j->fit_mask : "-", j->fit_mask_selects, j->psf_size, j->psf.size, j->psf.thresh, j->psf.min_snr,
             j->psf.isolation, j->psf.max_stars, z->fn, z->fr, z->astrom_sigma_x, z->astrom_sigma_y, z->psf_err_n, z->psf_err_r, z->renormalize,
             z->grow, z->tile_size, z->tile_border, j->cand.thresh, j->cand.both_signs, j->cand.ap_radius,
             (unsigned)j->cand.reject_bits);
}

/* The stack (frames[1]) on the reference's grid (frames[0]). */
static clred_status align_onto_reference(night *nt, const clred_image *ref, const clred_image *stack,
                                         clred_image *out)
{
    const clred_stack_opts *so = &nt->o->stack;
    clred_image frames[2] = {*ref, *stack}, aligned[2];
    memset(aligned, 0, sizeof aligned);
    clred_transform to_ref[2] = {clred_transform_identity(), clred_transform_identity()};
    /* Star matching whatever the stack's method: a subtraction needs the
     * registration to a few hundredths of a pixel, and the stack and the
     * reference differ in seeing and depth (phase correlation between them
     * was off by a pixel on the simulated nights). */
    clred_match_result m[2];
    size_t failed = 2;
    CLRED_TRY(clred_find_transforms(nt->ctx, frames, 2, 0, &so->dopts, &so->mopts, m, &failed));
    to_ref[1] = m[1].transform;
    /* The reference rides along as frame 0 (identity): resampling needs the grid's owner among the frames. */
    CLRED_TRY(clred_resample_onto_grid(nt->ctx, frames, 2, to_ref, CLRED_GRID_REFERENCE, &so->ropts, aligned, NULL));
    clred_image_free(&aligned[0]);
    *out = aligned[1];
    /* its header is the stack's with the WCS carried onto the new grid (clred_resample_onto_grid) */
    return CLRED_OK;
}

static int by_value(const void *a, const void *b)
{
    double u = *(const double *)a, v = *(const double *)b;
    return u < v ? -1 : u > v;
}

/* The stack's flux scale against the reference (fn / fr of ZOGY): the
 * median ratio of their aperture fluxes (radius 3 x the reference's seeing,
 * at least 5 px, so both seeings' wings are in) over the reference's bright
 * unflagged stars. Transparency and exposure differ from night to night: a
 * 3 % error leaves every bright star as a candidate. 1 with fewer than 5 stars. */
static clred_status flux_ratio(night *nt, const clred_image *ref, const clred_image *img, double *ratio,
                               size_t *nstars)
{
    *ratio = 1.0;
    *nstars = 0;
    clred_detect_opts d = clred_detect_defaults();
    clred_source *src = NULL;
    size_t ns = 0;
    CLRED_TRY(clred_detect_sources(nt->ctx, ref, NULL, NULL, NAN, 0.0, &d, &src, &ns));
    double seeing = NAN;
    size_t nused = 0;
    clred_sources_seeing(src, ns, &seeing, &nused);
    clred_phot_opts po = clred_phot_defaults();
    po.radius = isfinite(seeing) && 3 * seeing > 5 ? 3 * seeing : 5;
    po.annulus_in = po.radius + 3;
    po.annulus_out = po.radius + 8;
    double *xy = malloc((2 * ns + 1) * sizeof *xy), *r = malloc((ns + 1) * sizeof *r);
    clred_phot *pr = malloc((ns + 1) * sizeof *pr), *pi = malloc((ns + 1) * sizeof *pi);
    clred_status st = xy && r && pr && pi ? CLRED_OK : clred_fail(CLRED_ERR_MEMORY, "night: out of memory");
    size_t m = 0;
    for (size_t i = 0; st == CLRED_OK && i < ns; i++)
        if (!src[i].flags && src[i].flux_err > 0 && src[i].flux > 50 * src[i].flux_err) {
            xy[m] = src[i].x;
            xy[ns + m++] = src[i].y;
        }
    if (st == CLRED_OK && m)
        st = clred_aperture_photometry(nt->ctx, ref, xy, xy + ns, m, &po, pr);
    if (st == CLRED_OK && m)
        st = clred_aperture_photometry(nt->ctx, img, xy, xy + ns, m, &po, pi);
    size_t k = 0;
    for (size_t i = 0; st == CLRED_OK && i < m; i++)
        if (!pr[i].flags && !pi[i].flags && pr[i].flux > 0 && pi[i].flux > 0)
            r[k++] = pi[i].flux / pr[i].flux;
    if (k >= 5) {
        qsort(r, k, sizeof *r, by_value);
        *ratio = k % 2 ? r[k / 2] : 0.5 * (r[k / 2 - 1] + r[k / 2]);
        *nstars = k;
    }
    free(src);
    free(xy);
    free(r);
    free(pr);
    free(pi);
    return st;
}

static void mark(night *nt, const long *idx, int n, const char *reason)
{
    pthread_mutex_lock(&nt->lock);
    for (int i = 0; i < n; i++) {
        night_product *p = &nt->prod[idx[i]];
        if (reason) {
            free(p->reason);
            p->reason = strdup(reason);
        } else {
            p->done = 1;
        }
    }
    pthread_mutex_unlock(&nt->lock);
}

static clred_status subtract_group(night *nt, night_group *gr, const clred_image *ref)
{
    const char *stack_path = nt->prod[gr->product].path;
    const char *aligned_path = nt->prod[gr->aligned].path;
    clred_image stack, aligned;
    memset(&stack, 0, sizeof stack);
    memset(&aligned, 0, sizeof aligned);
    night_say(nt, "%s: subtracting the reference from the stack", gr->name);
    clred_status st = clred_image_read(stack_path, 0, &stack);
    nt->frames_in += st == CLRED_OK;
    if (st == CLRED_OK)
        st = align_onto_reference(nt, ref, &stack, &aligned);
    double ratio = 1.0;
    size_t nstars = 0;
    if (st == CLRED_OK)
        st = flux_ratio(nt, ref, &aligned, &ratio, &nstars);
    if (st == CLRED_OK && aligned.header)
        st = clred_header_set_double(aligned.header, "FLXSCALE", ratio, "flux of a star here / in the reference");
    if (st == CLRED_OK)
        st = clred_image_write(aligned_path, &aligned, 1);
    clred_image_free(&stack);
    clred_image_free(&aligned);
    if (st != CLRED_OK)
        return st;
    mark(nt, &gr->aligned, 1, NULL);
    CLRED_TRY(night_manifest_write(nt, 0));
    clred_subtract_job d = clred_subtract_job_defaults();
    clred_subtract_job job = nt->o->subtract ? *nt->o->subtract : d;
    job.candidates = nt->prod[gr->cands].path;
    job.cutouts = NULL;
    /* alerts asked for (any non-NULL value): difference/<object>_<filter>_alerts/ beside the catalog */
    char alerts[PATH_MAX];
    if (job.alerts) {
        const char *cands = job.candidates, *tail = "_candidates.csv";
        size_t n = strlen(cands), t = strlen(tail);
        if (n < t || strcmp(cands + n - t, tail) != 0 || n - t + strlen("_alerts") >= sizeof alerts)
            return clred_fail(CLRED_ERR_USAGE, "%s: no alert directory can be named after this catalog", cands);
        snprintf(alerts, sizeof alerts, "%.*s_alerts", (int)(n - t), cands);
        job.alerts = alerts;
    }
    job.psf_out = NULL;
    job.new_psf = NULL; /* the stack's own, measured */
    job.new_noise = job.new_mask = NULL;
    job.overwrite = 1;  /* the keys decide what is redone */
    job.zogy.fn = ratio * job.zogy.fr; /* the difference in the stack's flux units */
    night_say(nt, "%s: flux scale %.4f against the reference (%zu stars)", gr->name, ratio, nstars);
    clred_subtract_report rep;
    CLRED_TRY(clred_subtract_files(nt->ctx, aligned_path, nt->o->subtract_reference, nt->prod[gr->diff].path, &job,
                                   &rep));
    night_say(nt, "%s: %zu candidates (%zu positive)", gr->name, rep.ncandidates, rep.npositive);
    long done[2] = {gr->diff, gr->cands};
    mark(nt, done, 2, NULL);
    return night_manifest_write(nt, 0);
}

clred_status night_difference_stage(night *nt, clred_stream_writer *w)
{
    if (!nt->o->subtract_reference)
        return CLRED_OK;
    clred_stream_writer_drain(w); /* the stacks are on disk */
    if (nt->write_status != CLRED_OK)
        return CLRED_OK; /* the run reports the writer's failure */
    clred_image ref;
    memset(&ref, 0, sizeof ref);
    int have_ref = 0;
    clred_status st = CLRED_OK;
    for (size_t g = 0; g < nt->ngroups && st == CLRED_OK; g++) {
        night_group *gr = &nt->groups[g];
        if (!night_stack_here(gr) || gr->diff < 0 || nt->prod[gr->diff].skip)
            continue;
        long all[3] = {gr->aligned, gr->diff, gr->cands};
        const night_product *stack = &nt->prod[gr->product];
        if (!stack->done || stack->reason) {
            mark(nt, all, 3, "no stack to subtract");
            continue;
        }
        if (!have_ref) {
            st = clred_image_read(nt->o->subtract_reference, 0, &ref);
            nt->frames_in += st == CLRED_OK;
            have_ref = st == CLRED_OK;
            if (st != CLRED_OK)
                break;
        }
        st = subtract_group(nt, gr, &ref);
        if (st == CLRED_ERR_INPUT) {
            /* this stack's problem, not the night's */
            char reason[600];
            snprintf(reason, sizeof reason, "subtraction failed: %s", clred_last_error());
            night_say(nt, "%s: %s", gr->name, reason);
            for (int i = 0; i < 3; i++)
                if (!nt->prod[all[i]].done) { /* the aligned stack may be written already: it stays */
                    mark(nt, &all[i], 1, reason);
                    remove(nt->prod[all[i]].path);
                }
            clred_clear_error();
            st = CLRED_OK;
        }
    }
    clred_image_free(&ref);
    return st;
}
