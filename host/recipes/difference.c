/* Difference imaging on files (clred subtract, clred candidates): the
 * inputs with their noise maps and masks read and sent to the device once,
 * PSFs read or measured, ZOGY, candidates, then the products written. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <fitsio.h>
#include <pthread.h>

#include "internal.h"

clred_subtract_job clred_subtract_job_defaults(void)
{
    clred_subtract_job j;
    memset(&j, 0, sizeof j);
    j.psf = clred_psf_defaults();
    j.zogy = clred_zogy_defaults();
    j.al = clred_al_defaults();
    j.cand = clred_cand_defaults();
    j.cutout_size = 63;
    j.al_planes = CLRED_AL_WRITE_DEFAULT;
    return j;
}

static int ends_with(const char *s, const char *tail)
{
    size_t a = strlen(s), b = strlen(tail);
    return a >= b && strcasecmp(s + a - b, tail) == 0;
}

static clred_status write_catalog(const char *path, const clred_candidate *c, size_t n, int overwrite)
{
    if (ends_with(path, ".csv"))
        return clred_candidates_write(NULL, path, NULL, c, n, overwrite);
    if (ends_with(path, ".json"))
        return clred_candidates_write(NULL, NULL, path, c, n, overwrite);
    return clred_candidates_write(path, NULL, NULL, c, n, overwrite);
}

/* An image with its noise map (squared into VAR) and mask (nonzero -> BAD). */
static clred_status read_input(const char *path, const char *noise, const char *mask, clred_image *img)
{
    CLRED_TRY(clred_image_read(path, 0, img));
    clred_image aux;
    memset(&aux, 0, sizeof aux);
    clred_status st = CLRED_OK;
    if (noise) {
        st = clred_image_read(noise, 0, &aux);
        if (st == CLRED_OK && (aux.width != img->width || aux.height != img->height))
            st = clred_fail(CLRED_ERR_INPUT, "%s: %zu x %zu, but %s is %zu x %zu", noise, aux.width, aux.height, path,
                            img->width, img->height);
        if (st == CLRED_OK && !img->var)
            st = clred_image_add_var(img);
        for (size_t i = 0; st == CLRED_OK && i < img->width * img->height; i++)
            img->var[i] = aux.sci[i] * aux.sci[i];
        clred_image_free(&aux);
    }
    if (st == CLRED_OK && mask) {
        st = clred_image_read(mask, 0, &aux);
        if (st == CLRED_OK && (aux.width != img->width || aux.height != img->height))
            st = clred_fail(CLRED_ERR_INPUT, "%s: %zu x %zu, but %s is %zu x %zu", mask, aux.width, aux.height, path,
                            img->width, img->height);
        if (st == CLRED_OK && !img->mask)
            st = clred_image_add_mask(img);
        for (size_t i = 0; st == CLRED_OK && i < img->width * img->height; i++)
            if (aux.sci[i] != 0)
                img->mask[i] |= CLRED_MASK_BAD;
        clred_image_free(&aux);
    }
    if (st != CLRED_OK)
        clred_image_free(img);
    return st;
}

/* The fit mask's nonzero pixels (its zero ones when it selects the pixels
 * to fit) flagged NOFIT in both images (on one grid). */
static clred_status apply_fit_mask(const char *path, int selects, clred_image *ni, clred_image *ri)
{
    clred_image m;
    CLRED_TRY(clred_image_read(path, 0, &m));
    clred_status st = CLRED_OK;
    if (m.width != ni->width || m.height != ni->height)
        st = clred_fail(CLRED_ERR_INPUT, "%s: %zu x %zu, but the images are %zu x %zu", path, m.width, m.height,
                        ni->width, ni->height);
    clred_image *both[2] = {ni, ri};
    for (int k = 0; k < 2 && st == CLRED_OK; k++) {
        if (!both[k]->mask)
            st = clred_image_add_mask(both[k]);
        for (size_t i = 0; st == CLRED_OK && i < m.width * m.height; i++)
            if ((m.sci[i] != 0) != (selects != 0))
                both[k]->mask[i] |= CLRED_MASK_NOFIT;
    }
    clred_image_free(&m);
    return st;
}

/* The reference read on a thread while the caller reads the new image: the
 * two reads (decompression, byte swapping, noise squared) are host work on
 * the critical path before anything reaches the device. */
typedef struct {
    const char *path, *noise, *mask;
    clred_image *img;
    pthread_t thread;
    int started;
    clred_status st;
    char msg[1024];
} input_reader;

static void *input_reader_run(void *arg)
{
    input_reader *r = arg;
    r->st = read_input(r->path, r->noise, r->mask, r->img);
    if (r->st != CLRED_OK)
        snprintf(r->msg, sizeof r->msg, "%s", clred_last_error());
    return NULL;
}

/* Reads both inputs, the second on a thread where cfitsio allows it; the
 * new image's failure is reported first, as when read in turn. */
static clred_status read_inputs(const char *new_path, const char *new_noise, const char *new_mask, clred_image *ni,
                                const char *ref_path, const char *ref_noise, const char *ref_mask, clred_image *ri)
{
    input_reader r;
    memset(&r, 0, sizeof r);
    r.path = ref_path;
    r.noise = ref_noise;
    r.mask = ref_mask;
    r.img = ri;
    r.started = fits_is_reentrant() && pthread_create(&r.thread, NULL, input_reader_run, &r) == 0;
    clred_status st = read_input(new_path, new_noise, new_mask, ni);
    if (r.started) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", clred_last_error());
        pthread_join(r.thread, NULL);
        if (st != CLRED_OK) {
            clred_image_free(ri);
            return clred_fail(st, "%s", msg);
        }
        if (r.st != CLRED_OK) {
            clred_image_free(ni);
            return clred_fail(r.st, "%s", r.msg);
        }
        return CLRED_OK;
    }
    if (st == CLRED_OK)
        st = read_input(ref_path, ref_noise, ref_mask, ri);
    if (st != CLRED_OK)
        clred_image_free(ni);
    return st;
}

static clred_status get_psf(clred_ctx *ctx, const char *path, const clred_dimage *img, const clred_subtract_job *job,
                            const char *what, clred_psf *psf)
{
    if (path)
        return clred_psf_read(path, job->psf_size, psf);
    clred_status st = clred_psf_model_measure_dev(ctx, img, &job->psf, psf);
    if (st != CLRED_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", clred_last_error());
        return clred_fail(st, "%s image: %s (give its PSF instead)", what, msg);
    }
    return CLRED_OK;
}

/* Sky positions and the nearest reference source of each candidate: the
 * reference's sources are detected once, on the device. */
static clred_status add_context(clred_ctx *ctx, const clred_dimage *ref, const clred_header *header,
                                clred_candidate *c, size_t n)
{
    if (!n)
        return CLRED_OK;
    clred_source *src = NULL;
    size_t ns = 0;
    clred_detect_opts d = clred_detect_defaults();
    clred_status st = ref ? clred_detect_sources_dev(ctx, ref, NULL, NULL, NAN, 0.0, &d, &src, &ns) : CLRED_OK;
    if (st == CLRED_OK)
        st = clred_candidates_context(header, src, ns, c, n);
    free(src);
    return st;
}

static clred_status check_outputs(const char *const *outs, size_t nouts, const char *const *ins, size_t nins,
                                  int overwrite)
{
    for (size_t i = 0; i < nouts; i++) {
        if (!outs[i])
            continue;
        for (size_t j = i + 1; j < nouts; j++)
            if (outs[j] && strcmp(outs[i], outs[j]) == 0)
                return clred_fail(CLRED_ERR_USAGE, "%s is named for two outputs", outs[i]);
        CLRED_TRY(clred_output_check(outs[i], ins, nins, overwrite));
    }
    return CLRED_OK;
}

/* The products of a subtraction as one MEF: the difference, then S_corr and the flux map. */
static clred_status write_difference(const char *path, const clred_zogy_result *z, clred_image *diff, int overwrite)
{
    clred_image sc, fl;
    memset(&sc, 0, sizeof sc);
    memset(&fl, 0, sizeof fl);
    clred_status st = clred_dimage_download(z->scorr, &sc);
    if (st == CLRED_OK)
        st = clred_dimage_download(z->flux, &fl);
    if (st == CLRED_OK) {
        clred_extra_plane extra[3] = {{"SCORR", sc.sci}, {"FLUX", fl.sci}, {"FLUXVAR", fl.var}};
        st = clred_image_write_with(path, diff, extra, 3, overwrite);
    }
    clred_image_free(&sc);
    clred_image_free(&fl);
    return st;
}

/* AL's products as one MEF: D (SCI, VAR, MASK), then the planes of
 * job->al_planes that exist: CONV, SCORE, DETECT, DECORR and DECORRVAR. The
 * planes are read in place where the device shares host memory (mapped; no
 * copy), else downloaded; the file is written on a thread while the caller
 * goes on (candidates), and al_writer_finish waits for it. The device images
 * must not change meanwhile (the candidates only read them). */
enum { AL_W_DIFF, AL_W_CONV, AL_W_SCORE, AL_W_DETECT, AL_W_DECORR, AL_W_N };

typedef struct {
    const clred_dimage *dev[AL_W_N];
    void *map[AL_W_N][CLRED_NPLANES];
    clred_image host[AL_W_N];
    clred_image img;
    clred_extra_plane extra[5];
    size_t nextra;
    const char *path;
    int overwrite, mapped, started;
    pthread_t thread;
    clred_status st;
    char msg[1024];
} al_writer;

static void *al_writer_run(void *arg)
{
    al_writer *w = arg;
    w->st = clred_image_write_with(w->path, &w->img, w->extra, w->nextra, w->overwrite);
    if (w->st != CLRED_OK)
        snprintf(w->msg, sizeof w->msg, "%s", clred_last_error());
    return NULL;
}

static void *plane_of(al_writer *w, int i, int p)
{
    if (w->mapped)
        return w->map[i][p];
    const clred_image *h = &w->host[i];
    return p == CLRED_PLANE_SCI ? (void *)h->sci : p == CLRED_PLANE_VAR ? (void *)h->var : (void *)h->mask;
}

/* Unmaps or frees what al_writer_start took (after the thread is done). */
static void al_writer_release(al_writer *w)
{
    for (int i = 0; i < AL_W_N; i++) {
        if (w->dev[i] && w->mapped)
            clred_dimage_unmap(w->dev[i], w->map[i]);
        clred_image_free(&w->host[i]);
    }
}

static clred_status al_writer_start(al_writer *w, const char *path, const clred_al_result *a, unsigned planes,
                                    int overwrite)
{
    memset(w, 0, sizeof *w);
    w->path = path;
    w->overwrite = overwrite;
    w->dev[AL_W_DIFF] = a->diff;
    w->dev[AL_W_CONV] = (planes & CLRED_AL_WRITE_CONV) ? a->conv : NULL;
    w->dev[AL_W_SCORE] = (planes & CLRED_AL_WRITE_SCORE) ? a->score : NULL;
    w->dev[AL_W_DETECT] = (planes & CLRED_AL_WRITE_DETECT) ? a->detect : NULL;
    w->dev[AL_W_DECORR] = (planes & CLRED_AL_WRITE_DECORR) ? a->decorr : NULL;
    w->mapped = a->diff->ctx->unified_memory;
    clred_status st = CLRED_OK;
    for (int i = 0; i < AL_W_N && st == CLRED_OK; i++)
        if (w->dev[i])
            st = w->mapped ? clred_dimage_map_read(w->dev[i], w->map[i]) : clred_dimage_download(w->dev[i], &w->host[i]);
    if (st != CLRED_OK) {
        al_writer_release(w);
        return st;
    }
    w->img.width = a->diff->width;
    w->img.height = a->diff->height;
    w->img.sci = plane_of(w, AL_W_DIFF, CLRED_PLANE_SCI);
    w->img.var = plane_of(w, AL_W_DIFF, CLRED_PLANE_VAR);
    w->img.mask = plane_of(w, AL_W_DIFF, CLRED_PLANE_MASK);
    w->img.header = clred_dimage_header(a->diff);
    static const char *const names[AL_W_N] = {NULL, "CONV", "SCORE", "DETECT", "DECORR"};
    for (int i = AL_W_CONV; i < AL_W_N; i++)
        if (w->dev[i]) {
            w->extra[w->nextra].extname = names[i];
            w->extra[w->nextra++].data = plane_of(w, i, CLRED_PLANE_SCI);
            if (i == AL_W_DECORR) {
                w->extra[w->nextra].extname = "DECORRVAR";
                w->extra[w->nextra++].data = plane_of(w, i, CLRED_PLANE_VAR);
            }
        }
    /* cfitsio is used by this thread alone until al_writer_finish (the caller reads no file meanwhile) */
    w->started = fits_is_reentrant() && pthread_create(&w->thread, NULL, al_writer_run, w) == 0;
    if (!w->started)
        al_writer_run(w);
    return CLRED_OK;
}

static clred_status al_writer_finish(al_writer *w)
{
    if (w->started)
        pthread_join(w->thread, NULL);
    w->started = 0;
    al_writer_release(w);
    return w->st == CLRED_OK ? CLRED_OK : clred_fail(w->st, "%s", w->msg);
}

/* The robust spread (1.4826 MAD) of AL's detection image over its usable
 * pixels; with renormalize the image is divided by it: for noise the
 * variance planes understate, e.g. the correlated noise of resampled mosaics
 * (as ZOGY's --renormalize does for S_corr). */
static clred_status detect_spread(clred_ctx *ctx, clred_al_result *a, int renormalize, double *spread)
{
    *spread = NAN;
    if (!a->detect)
        return CLRED_OK;
    const clred_dimage *d = a->detect;
    size_t npix = clred_dimage_pixels(d), stride = npix > 262144 ? npix / 262144 : 1, n;
    float *v;
    CLRED_TRY(clred_dimage_samples(d, 0, 0, d->width, d->height, stride, CLRED_MASK_UNUSABLE | CLRED_MASK_EDGE, &v, &n));
    if (n > 16) {
        double med = clred_median_inplace(v, n);
        for (size_t i = 0; i < n; i++)
            v[i] = fabsf(v[i] - (float)med);
        *spread = 1.4826 * clred_median_inplace(v, n);
    }
    free(v);
    if (!renormalize)
        return CLRED_OK;
    if (!(*spread > 0))
        return clred_fail(CLRED_ERR_INPUT, "AL: the detection image cannot be renormalised (%zu usable samples)", n);
    cl_kernel k;
    CLRED_TRY(clred_kernel(ctx, "arith", NULL, "scale_offset", &k));
    float scale = (float)(1.0 / *spread), offset = 0.0f;
    cl_uint un = (cl_uint)npix;
    cl_mem plane = clred_dimage_sci(a->detect);
    CLRED_TRY(clred_args(k, "scale_offset", CLRED_ARG(plane), CLRED_ARG(scale), CLRED_ARG(offset), CLRED_ARG(un),
                         (size_t)0));
    size_t g = npix;
    CLRED_TRY(clred_run_tiled(ctx, k, "scale_offset", 1, &g));
    return clred_header_set_double(clred_dimage_header(a->diff), "ALDETSD", *spread,
                                   "DETECT was divided by its robust std");
}

/* An alert directory that exists must be a directory; its files are checked when their names are known. */
static clred_status check_alert_dir(const char *dir)
{
    struct stat sb;
    if (dir && stat(dir, &sb) == 0 && !S_ISDIR(sb.st_mode))
        return clred_fail(CLRED_ERR_IO, "%s: exists and is not a directory (alerts go into a directory)", dir);
    return CLRED_OK;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* An Alard-Lupton difference in the reference's photometric system (PHOTNORM t). */
static int in_ref_system(const clred_header *h)
{
    char v[16];
    return h && clred_header_get_string(h, "PHOTNORM", v, sizeof v) && strcmp(v, "t") == 0;
}

/* Catalog, cutouts, then alerts (psf: the difference's, for their limiting
 * magnitude; ref_system: the difference is in the reference's photometric
 * system, so are its magnitudes); what one wrote is removed when a later one
 * fails. */
static clred_status write_candidate_products(const clred_subtract_job *job, const clred_candidate *c, size_t n,
                                             const clred_image *new_img, const clred_image *ref,
                                             const clred_image *diff, const clred_psf *psf, const char *diff_path,
                                             int ref_system)
{
    if (job->candidates)
        CLRED_TRY(write_catalog(job->candidates, c, n, job->overwrite));
    clred_status st = CLRED_OK;
    if (job->cutouts)
        st = clred_cutouts_write(job->cutouts, new_img, ref, diff, c, n, job->cutout_size, job->overwrite);
    if (st == CLRED_OK && job->alerts) {
        clred_alert_info info;
        st = clred_alert_info_from(diff, psf, new_img && new_img->sci ? new_img->header : NULL,
                                   ref && ref->sci ? ref->header : NULL, base_name(diff_path), &info);
        double zp_ref;
        if (st == CLRED_OK && ref_system && ref && ref->header &&
            clred_header_get_double(ref->header, "MAGZP", &zp_ref) && isfinite(zp_ref)) {
            info.diffmaglim += zp_ref - info.magzpsci;
            info.magzpsci = zp_ref;
            info.magzpsciunc = NAN;
            if (!clred_header_get_double(ref->header, "MAGZPERR", &info.magzpsciunc))
                info.magzpsciunc = NAN;
        }
        if (st == CLRED_OK)
            st = clred_alerts_write(job->alerts, &info, new_img && new_img->sci ? new_img : NULL,
                                    ref && ref->sci ? ref : NULL, diff, c, n, job->cutout_size, job->overwrite);
        if (st != CLRED_OK && job->cutouts)
            remove(job->cutouts);
    }
    if (st != CLRED_OK && job->candidates)
        remove(job->candidates);
    return st;
}

clred_status clred_subtract_files(clred_ctx *ctx, const char *new_path, const char *ref_path, const char *out_path,
                                  const clred_subtract_job *job, clred_subtract_report *report)
{
    clred_subtract_job defaults = clred_subtract_job_defaults();
    const clred_subtract_job *j = job ? job : &defaults;
    clred_subtract_report rep;
    memset(&rep, 0, sizeof rep);
    if (report)
        memset(report, 0, sizeof *report);
    if (!new_path || !ref_path || !out_path)
        return clred_fail(CLRED_ERR_USAGE, "subtract: a new image, a reference and an output are needed");
    const char *ins[] = {new_path,     ref_path,    j->new_psf,  j->ref_psf, j->new_noise,
                         j->ref_noise, j->new_mask, j->ref_mask, j->fit_mask};
    const char *outs[] = {out_path, j->candidates, j->cutouts, j->psf_out, j->kernel_out};
    size_t nins = 0;
    const char *present[9];
    for (size_t i = 0; i < 9; i++)
        if (ins[i])
            present[nins++] = ins[i];
    if (j->kernel_out && j->method != CLRED_DIFF_AL)
        return clred_fail(CLRED_ERR_USAGE, "subtract: a kernel solution (%s) comes from the Alard-Lupton method only",
                          j->kernel_out);
    if (j->fit_mask && j->method != CLRED_DIFF_AL)
        return clred_fail(CLRED_ERR_USAGE, "subtract: a fit mask (%s) is for the Alard-Lupton method: ZOGY fits no "
                          "kernel", j->fit_mask);
    CLRED_TRY(check_outputs(outs, 5, present, nins, j->overwrite));
    CLRED_TRY(check_alert_dir(j->alerts));

    double t0 = clred_now();
    clred_image ni, ri, diff;
    memset(&ni, 0, sizeof ni);
    memset(&ri, 0, sizeof ri);
    memset(&diff, 0, sizeof diff);
    clred_dimage *dn = NULL, *dr = NULL;
    clred_psf pn, pr;
    memset(&pn, 0, sizeof pn);
    memset(&pr, 0, sizeof pr);
    clred_zogy_result z;
    memset(&z, 0, sizeof z);
    clred_al_result al;
    memset(&al, 0, sizeof al);
    clred_candidate *c = NULL;
    size_t nc = 0;
    clred_status st = read_inputs(new_path, j->new_noise, j->new_mask, &ni, ref_path, j->ref_noise, j->ref_mask, &ri);
    if (st == CLRED_OK && (ni.width != ri.width || ni.height != ri.height))
        st = clred_fail(CLRED_ERR_INPUT, "%s is %zu x %zu, %s is %zu x %zu: align them onto one grid first", new_path,
                        ni.width, ni.height, ref_path, ri.width, ri.height);
    if (st == CLRED_OK && j->fit_mask)
        st = apply_fit_mask(j->fit_mask, j->fit_mask_selects, &ni, &ri);
    /* views of the host arrays where the device shares host memory (no copy); ni and ri outlive them and
     * are only read meanwhile */
    if (st == CLRED_OK)
        st = clred_dimage_borrow(ctx, &ni, &dn);
    if (st == CLRED_OK)
        st = clred_dimage_borrow(ctx, &ri, &dr);
    if (st == CLRED_OK)
        st = get_psf(ctx, j->new_psf, dn, j, "new", &pn);
    if (st == CLRED_OK)
        st = get_psf(ctx, j->ref_psf, dr, j, "reference", &pr);
    int is_al = j->method == CLRED_DIFF_AL;
    /* the planes the file leaves out are not computed */
    clred_al_opts alo = j->al;
    alo.omit_planes |= ~j->al_planes & (CLRED_AL_WRITE_CONV | CLRED_AL_WRITE_SCORE);
    if (st == CLRED_OK && is_al)
        st = clred_subtract_al_dev(ctx, dn, dr, &pn, &pr, &alo, &al);
    else if (st == CLRED_OK)
        st = clred_subtract_zogy_dev(ctx, dn, dr, &pn, &pr, &j->zogy, &z);
    double det_spread = NAN;
    if (st == CLRED_OK && is_al)
        st = detect_spread(ctx, &al, j->zogy.renormalize, &det_spread);
    /* AL's products are final here: written meanwhile */
    al_writer aw;
    int writing = 0;
    if (st == CLRED_OK && is_al) {
        st = al_writer_start(&aw, out_path, &al, j->al_planes, j->overwrite);
        writing = st == CLRED_OK;
    }
    /* AL: candidates on the PSF-matched D / sigma, measured on the difference it comes from */
    const clred_dimage *cand_diff = is_al ? (al.decorr ? al.decorr : al.diff) : z.diff;
    if (st == CLRED_OK && (j->candidates || j->cutouts || j->alerts))
        st = clred_find_candidates_dev(ctx, is_al ? al.detect : z.scorr, cand_diff, is_al ? &al.psf_diff : &z.pd,
                                       &j->cand, &c, &nc);
    if (st == CLRED_OK)
        st = add_context(ctx, dr, clred_dimage_header(is_al ? al.diff : z.diff), c, nc);
    /* saturated stars' wings flagged, with the image whose flux units the difference is in */
    if (st == CLRED_OK) {
        int ref_units = is_al && in_ref_system(clred_dimage_header(al.diff));
        st = clred_candidates_bright(ref_units ? &ri : &ni, ref_units ? &pr : &pn, c, nc);
    }
    /* AL: those that the kernel fit's own error could make */
    if (st == CLRED_OK && is_al)
        st = clred_al_candidates_kernel(&al, &ni, &ri, j->cand.thresh, c, nc);
    if (st == CLRED_OK && !is_al)
        st = clred_dimage_download(z.diff, &diff);
    rep.seconds = clred_now() - t0;
    if (writing) {
        clred_status ws = al_writer_finish(&aw);
        st = st == CLRED_OK ? ws : st;
    } else if (st == CLRED_OK && !is_al) {
        st = write_difference(out_path, &z, &diff, j->overwrite);
    }
    if (st == CLRED_OK && j->psf_out)
        st = clred_psf_write(j->psf_out, is_al ? &al.psf_diff : &z.pd, j->overwrite);
    if (st == CLRED_OK && j->kernel_out)
        st = clred_al_kernel_write(j->kernel_out, &al, j->overwrite);
    /* the cutouts show the difference the candidates were measured on */
    if (st == CLRED_OK && is_al && (j->cutouts || j->alerts))
        st = clred_dimage_download(al.decorr ? al.decorr : al.diff, &diff);
    if (st == CLRED_OK)
        st = write_candidate_products(j, c, nc, &ni, &ri, &diff, is_al ? &al.psf_diff : &z.pd, out_path,
                                      is_al && in_ref_system(clred_dimage_header(al.diff)));
    if (st != CLRED_OK) {
        for (size_t i = 0; i < 5; i++)
            if (outs[i])
                remove(outs[i]);
    } else if (is_al) {
        rep.sigma_n = al.sigma_new;
        rep.sigma_r = al.sigma_ref;
        rep.bkg_n = al.bkg_new;
        rep.bkg_r = al.bkg_ref;
        rep.scorr_scale = det_spread; /* of the detection image, before any renormalising */
        rep.fwhm_new = pn.fwhm;
        rep.fwhm_ref = pr.fwhm;
        rep.fwhm_diff = al.psf_diff.fwhm;
        rep.nstars_new = pn.nstars;
        rep.nstars_ref = pr.nstars;
        rep.ksum = al.ksum;
        rep.fom = al.fom;
        rep.convolved_ref = al.convolved_ref;
        rep.nstamps = al.nstamps;
        rep.nstamps_used = al.nstamps_used;
        rep.kernel_order = al.kernel_order;
        rep.bg_order = al.bg_order;
        rep.ncandidates = nc;
        for (size_t i = 0; i < nc; i++)
            rep.npositive += c[i].isdiffpos != 0;
        if (report)
            *report = rep;
    } else {
        rep.f_d = z.f_d;
        rep.f_s = z.f_s;
        rep.sigma_n = z.sigma_n;
        rep.sigma_r = z.sigma_r;
        rep.d_off = z.d_off;
        rep.scorr_scale = z.scorr_scale;
        rep.bkg_n = z.bkg_n;
        rep.bkg_r = z.bkg_r;
        rep.fwhm_new = pn.fwhm;
        rep.fwhm_ref = pr.fwhm;
        rep.fwhm_diff = z.pd.fwhm;
        rep.nstars_new = pn.nstars;
        rep.nstars_ref = pr.nstars;
        rep.ncandidates = nc;
        for (size_t i = 0; i < nc; i++)
            rep.npositive += c[i].isdiffpos != 0;
        if (report)
            *report = rep;
    }
    free(c);
    clred_zogy_result_free(&z);
    clred_al_result_free(&al);
    clred_psf_free(&pn);
    clred_psf_free(&pr);
    clred_dimage_free(dn);
    clred_dimage_free(dr);
    clred_image_free(&ni);
    clred_image_free(&ri);
    clred_image_free(&diff);
    return st;
}

/* "file.fits[EXT]" */
static clred_status read_plane(const char *path, const char *ext, clred_image *img, int *found)
{
    char sel[4096];
    if ((size_t)snprintf(sel, sizeof sel, "%s[%s]", path, ext) >= sizeof sel)
        return clred_fail(CLRED_ERR_USAGE, "%s: path too long", path);
    clred_status st = clred_image_read(sel, 0, img);
    *found = st == CLRED_OK;
    if (st != CLRED_OK)
        clred_clear_error();
    return CLRED_OK;
}

clred_status clred_candidates_files(clred_ctx *ctx, const char *diff_path, const char *psf_path, const char *new_path,
                                    const char *ref_path, const clred_subtract_job *job, size_t *n, size_t *npositive)
{
    clred_subtract_job defaults = clred_subtract_job_defaults();
    const clred_subtract_job *j = job ? job : &defaults;
    *n = 0;
    if (npositive)
        *npositive = 0;
    if (!j->candidates && !j->cutouts && !j->alerts)
        return clred_fail(CLRED_ERR_USAGE, "candidates: no catalog, cutout or alert output given");
    if (j->cutouts && (!new_path || !ref_path))
        return clred_fail(CLRED_ERR_USAGE, "candidates: cutouts need the new image and the reference");
    if (!psf_path && !new_path)
        return clred_fail(CLRED_ERR_USAGE, "candidates: give the difference's PSF, or the new image to measure one");
    const char *ins[] = {diff_path, psf_path ? psf_path : diff_path, new_path ? new_path : diff_path,
                         ref_path ? ref_path : diff_path};
    const char *outs[] = {j->candidates, j->cutouts};
    CLRED_TRY(check_outputs(outs, 2, ins, 4, j->overwrite));
    CLRED_TRY(check_alert_dir(j->alerts));

    clred_image diff, score, ni, ri;
    memset(&diff, 0, sizeof diff);
    memset(&score, 0, sizeof score);
    memset(&ni, 0, sizeof ni);
    memset(&ri, 0, sizeof ri);
    clred_psf psf;
    memset(&psf, 0, sizeof psf);
    clred_dimage *dd = NULL, *ds = NULL, *dn = NULL;
    clred_candidate *c = NULL;
    size_t nc = 0;
    int has_score = 0;
    clred_status st = clred_image_read(diff_path, 0, &diff);
    if (st == CLRED_OK && (!diff.var || !diff.mask))
        st = clred_fail(CLRED_ERR_INPUT, "%s: a difference needs VAR and MASK planes", diff_path);
    if (st == CLRED_OK)
        st = read_plane(diff_path, "SCORR", &score, &has_score);
    if (st == CLRED_OK && has_score && (score.width != diff.width || score.height != diff.height))
        st = clred_fail(CLRED_ERR_INPUT, "%s: SCORR differs in shape from SCI", diff_path);
    if (st == CLRED_OK && !has_score) {
        /* D / sigma from the difference itself */
        st = clred_image_alloc(&score, diff.width, diff.height, 0, 0);
        for (size_t i = 0; st == CLRED_OK && i < diff.width * diff.height; i++)
            score.sci[i] = diff.var[i] > 0 ? diff.sci[i] / sqrtf(diff.var[i]) : NAN;
    }
    if (st == CLRED_OK && !score.mask) {
        st = clred_image_add_mask(&score);
        if (st == CLRED_OK)
            memcpy(score.mask, diff.mask, diff.width * diff.height * sizeof *score.mask);
    }
    if (st == CLRED_OK && new_path)
        st = clred_image_read(new_path, 0, &ni);
    if (st == CLRED_OK && ref_path)
        st = clred_image_read(ref_path, 0, &ri);
    if (st == CLRED_OK && psf_path)
        st = clred_psf_read(psf_path, j->psf_size, &psf);
    if (st == CLRED_OK && !psf_path) {
        st = clred_dimage_upload(ctx, &ni, &dn);
        if (st == CLRED_OK)
            st = get_psf(ctx, NULL, dn, j, "new", &psf);
    }
    if (st == CLRED_OK)
        st = clred_dimage_upload(ctx, &diff, &dd);
    if (st == CLRED_OK)
        st = clred_dimage_upload(ctx, &score, &ds);
    if (st == CLRED_OK)
        st = clred_find_candidates_dev(ctx, ds, dd, &psf, &j->cand, &c, &nc);
    clred_dimage *dr = NULL;
    if (st == CLRED_OK && ref_path)
        st = clred_dimage_upload(ctx, &ri, &dr);
    if (st == CLRED_OK)
        st = add_context(ctx, dr, diff.header, c, nc);
    clred_dimage_free(dr);
    if (st == CLRED_OK)
        st = write_candidate_products(j, c, nc, &ni, &ri, &diff, &psf, diff_path, in_ref_system(diff.header));
    if (st == CLRED_OK) {
        *n = nc;
        for (size_t i = 0; npositive && i < nc; i++)
            *npositive += c[i].isdiffpos != 0;
    }
    free(c);
    clred_psf_free(&psf);
    clred_dimage_free(dd);
    clred_dimage_free(ds);
    clred_dimage_free(dn);
    clred_image_free(&diff);
    clred_image_free(&score);
    clred_image_free(&ni);
    clred_image_free(&ri);
    return st;
}
