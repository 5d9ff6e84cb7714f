/* The proxy-pixel reduction of a CUTE-like set, end to end (clred proxy):
 * match, background and final frames, medians, profile fits, PNGs. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

/* CPU seconds of the whole process (the device's threads too, on a CPU
 * device): a figure that other processes' load does not change. */
static double process_cpu_seconds(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0)
        return NAN;
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

clred_proxy_run_opts clred_proxy_run_defaults(void)
{
    clred_proxy_run_opts o;
    memset(&o, 0, sizeof o);
    o.match = clred_proxy_defaults();
    o.bin = 25;
    o.png = 1;
    o.cosmic = clred_cosmic_defaults();
    o.cosmic.gain = 1;
    o.cosmic.readnoise = 3;
    o.cosmic.satlevel = 0;
    o.region = clred_trace_region_defaults();
    return o;
}

/* The match as an image: SCI the proxy's x, then its y and the scores. */
static clred_status write_match(const char *path, const clred_proxy_match *m, int overwrite)
{
    size_t np = m->width * m->height;
    clred_image img;
    CLRED_TRY(clred_image_alloc(&img, m->width, m->height, 0, 0));
    float *py = malloc(np * sizeof *py), *med = malloc(np * sizeof *med), *sd = malloc(np * sizeof *sd),
          *msr = malloc(np * sizeof *msr);
    clred_status st = py && med && sd && msr && (img.header = clred_header_new())
                          ? CLRED_OK
                          : clred_fail(CLRED_ERR_MEMORY, "proxy: out of memory");
    for (size_t i = 0; st == CLRED_OK && i < np; i++) {
        int64_t p = m->proxy[i];
        img.sci[i] = p >= 0 ? (float)((size_t)p % m->width) : -1.0f;
        py[i] = p >= 0 ? (float)((size_t)p / m->width) : -1.0f;
        med[i] = (float)m->median[i];
        sd[i] = (float)m->std[i];
        msr[i] = (float)m->msr[i];
    }
    if (st == CLRED_OK)
        st = clred_header_add_history(img.header, "clred proxy: SCI = proxy x, PROXYY = proxy y (-1: none); scores "
                                                  "of the chosen proxy (match.csv has them in full precision)");
    clred_extra_plane extra[4] = {{"PROXYY", py}, {"MEDIAN", med}, {"STD", sd}, {"MSR", msr}};
    if (st == CLRED_OK)
        st = clred_image_write_with(path, &img, extra, 4, overwrite);
    clred_image_free(&img);
    free(py), free(med), free(sd), free(msr);
    return st;
}

static clred_status median_of(clred_ctx *ctx, const clred_image *frames, size_t n, clred_image *out)
{
    clred_combine_opts co = clred_combine_defaults();
    co.method = CLRED_COMBINE_MEDIAN;
    clred_combine_result r;
    CLRED_TRY(clred_combine_images(ctx, frames, n, &co, &r));
    *out = r.image;
    memset(&r.image, 0, sizeof r.image);
    clred_combine_result_free(&r);
    return CLRED_OK;
}

/* No spectral region given: found from the trace in the median science
 * frame (kept in *med for its product) less the median dark (the dark
 * signal's pixel groups and the hot pixels would hide the trace), and
 * written as spectral.fits. */
static clred_status find_region(clred_ctx *ctx, const clred_image *darks, size_t ndarks, const clred_image *science,
                                size_t nscience, const char *path, const clred_proxy_run_opts *o, clred_image *med,
                                uint8_t **found, clred_trace_region *region)
{
    CLRED_TRY(median_of(ctx, science, nscience, med));
    size_t np = med->width * med->height;
    clred_image mask, med_dark;
    memset(&mask, 0, sizeof mask);
    memset(&med_dark, 0, sizeof med_dark);
    *found = malloc(np);
    clred_status st = *found ? clred_image_alloc(&mask, med->width, med->height, 0, 0)
                             : clred_fail(CLRED_ERR_MEMORY, "proxy: out of memory");
    if (st == CLRED_OK)
        st = median_of(ctx, darks, ndarks, &med_dark);
    /* mask.sci holds the difference until the region is found */
    for (size_t i = 0; st == CLRED_OK && i < np; i++)
        mask.sci[i] = med->sci[i] - med_dark.sci[i];
    clred_image_free(&med_dark);
    if (st == CLRED_OK)
        st = clred_trace_region_find(&mask, &o->region, *found, region);
    for (size_t i = 0; st == CLRED_OK && i < np; i++)
        mask.sci[i] = (*found)[i];
    if (st == CLRED_OK && !(mask.header = clred_header_new()))
        st = clred_fail(CLRED_ERR_MEMORY, "proxy: out of memory");
    char text[160];
    snprintf(text, sizeof text, "clred proxy: spectral region from the trace (%zu-column bins, degree %d, k %g)",
             o->region.bin, o->region.order, o->region.k);
    if (st == CLRED_OK)
        st = clred_header_add_history(mask.header, text);
    if (st == CLRED_OK)
        st = clred_image_write(path, &mask, o->overwrite);
    clred_image_free(&mask);
    return st;
}

clred_status clred_proxy_run(clred_ctx *ctx, const clred_image *darks, size_t ndarks, const clred_image *science,
                             size_t nscience, const uint8_t *spectral, const char *outdir,
                             const clred_proxy_run_opts *opts, clred_proxy_report *report)
{
    clred_proxy_run_opts o = opts ? *opts : clred_proxy_run_defaults();
    clred_proxy_report rep;
    memset(&rep, 0, sizeof rep);
    if (!science || nscience == 0 || !outdir)
        return clred_fail(CLRED_ERR_USAGE, "proxy: no science frames or output directory given");
    for (size_t i = 0; i < nscience; i++)
        if (!science[i].sci || !darks || science[i].width != darks[0].width || science[i].height != darks[0].height)
            return clred_fail(CLRED_ERR_INPUT, "proxy: science frame %zu is %zu x %zu, the darks are %zu x %zu", i,
                              science[i].width, science[i].height, darks ? darks[0].width : 0,
                              darks ? darks[0].height : 0);
    double t0 = clred_now(), c0;
    char path[PATH_MAX], name[64];
    clred_image med_sci, med_final;
    memset(&med_sci, 0, sizeof med_sci);
    memset(&med_final, 0, sizeof med_final);
    uint8_t *found = NULL;
    if (!spectral) {
        snprintf(path, sizeof path, "%s/spectral.fits", outdir);
        clred_status fs = find_region(ctx, darks, ndarks, science, nscience, path, &o, &med_sci, &found, &rep.region);
        if (fs != CLRED_OK) {
            clred_image_free(&med_sci);
            free(found);
            return fs;
        }
        rep.region_found = 1;
        spectral = found;
    }
    c0 = process_cpu_seconds();
    clred_proxy_match m;
    clred_status ms = clred_proxy_match_pixels(ctx, darks, ndarks, spectral, &o.match, &m);
    if (ms != CLRED_OK) {
        clred_image_free(&med_sci);
        free(found);
        return ms;
    }
    rep.match_s = clred_now() - t0;
    rep.match_cpu_s = process_cpu_seconds() - c0;
    rep.nspectral = m.nspectral, rep.nmatched = m.nmatched, rep.ncandidates = m.ncandidates;
    for (size_t i = 0; i < m.width * m.height; i++) {
        rep.nhot += m.unusable[i] == 1;
        rep.nmissing += m.unusable[i] == 2;
    }
    clred_image *finals = calloc(nscience, sizeof *finals);
    clred_trace_fit *fits = calloc(nscience + 1, sizeof *fits);
    char **names = calloc(nscience + 1, sizeof *names);
    double *ratio = NULL;
    clred_status st = finals && fits && names ? CLRED_OK : clred_fail(CLRED_ERR_MEMORY, "proxy: out of memory");
#define OUT(...) (snprintf(path, sizeof path, "%s/", outdir), \
                  snprintf(path + strlen(path), sizeof path - strlen(path), __VA_ARGS__), path)
    if (st == CLRED_OK)
        st = clred_proxy_match_write_csv(OUT("match.csv"), &m, spectral, o.overwrite);
    if (st == CLRED_OK)
        st = write_match(OUT("match.fits"), &m, o.overwrite);
    for (size_t k = 0; k < nscience && st == CLRED_OK; k++) {
        clred_image bkg;
        st = clred_proxy_background(ctx, &m, &science[k], spectral, &bkg, &finals[k]);
        if (st == CLRED_OK && !(bkg.header = clred_header_new()))
            st = clred_fail(CLRED_ERR_MEMORY, "proxy: out of memory");
        if (st == CLRED_OK)
            st = clred_header_add_history(bkg.header, "clred proxy: background from proxy pixels");
        if (st == CLRED_OK)
            st = clred_image_write(OUT("background_%03zu.fits", k + 1), &bkg, o.overwrite);
        clred_image_free(&bkg);
        if (st == CLRED_OK && !(finals[k].header = clred_header_new()))
            st = clred_fail(CLRED_ERR_MEMORY, "proxy: out of memory");
        if (st == CLRED_OK)
            st = clred_header_add_history(finals[k].header, "clred proxy: science - proxy background");
        if (st == CLRED_OK)
            st = clred_image_write(OUT("final_%03zu.fits", k + 1), &finals[k], o.overwrite);
        if (st == CLRED_OK && o.png)
            st = clred_png_write(OUT("final_%03zu.png", k + 1), finals[k].sci, finals[k].width, finals[k].height,
                                 CLRED_STRETCH_ASINH, o.overwrite);
    }
    if (st == CLRED_OK && !med_sci.sci)
        st = median_of(ctx, science, nscience, &med_sci);
    if (st == CLRED_OK)
        st = clred_image_write(OUT("median_science.fits"), &med_sci, o.overwrite);
    if (st == CLRED_OK)
        st = median_of(ctx, finals, nscience, &med_final);
    if (st == CLRED_OK)
        st = clred_image_write(OUT("median_final.fits"), &med_final, o.overwrite);
    if (st == CLRED_OK && o.png)
        st = clred_png_write(OUT("median_final.png"), med_final.sci, med_final.width, med_final.height,
                             CLRED_STRETCH_ASINH, o.overwrite);
    /* the median's fit, then each final frame's with the median's ratio */
    if (st == CLRED_OK)
        st = clred_trace_fit_frame(&med_final, o.bin, NULL, &fits[0]);
    if (st == CLRED_OK && !(ratio = malloc(fits[0].nbins * sizeof *ratio)))
        st = clred_fail(CLRED_ERR_MEMORY, "proxy: out of memory");
    for (size_t b = 0; st == CLRED_OK && b < fits[0].nbins; b++) {
        const clred_trace_bin *tb = &fits[0].bins[b];
        ratio[b] = tb->ok_double && tb->amp1 > 0 ? tb->amp2 / tb->amp1 : NAN;
    }
    for (size_t k = 0; k < nscience && st == CLRED_OK; k++) {
        st = clred_trace_fit_frame(&finals[k], o.bin, ratio, &fits[k + 1]);
        /* infill from the frame's own fit, then cosmic rays */
        size_t nfill = 0;
        clred_cosmic_info ci;
        memset(&ci, 0, sizeof ci);
        if (st == CLRED_OK)
            st = clred_trace_fit_infill(&finals[k], &fits[k + 1], spectral, &nfill);
        if (st == CLRED_OK)
            st = clred_cosmic(ctx, &finals[k], &o.cosmic, &ci);
        rep.ninfilled += nfill;
        rep.ncosmic += ci.ncosmic;
        if (st == CLRED_OK)
            st = clred_header_add_history(finals[k].header, "clred proxy: empty and negative spectral pixels "
                                                            "infilled from the profile fit, then L.A.Cosmic");
        if (st == CLRED_OK)
            st = clred_image_write(OUT("clean_%03zu.fits", k + 1), &finals[k], o.overwrite);
    }
    for (size_t k = 0; k <= nscience && st == CLRED_OK; k++) {
        snprintf(name, sizeof name, k ? "final_%03zu" : "median_final", k);
        if (!(names[k] = strdup(name)))
            st = clred_fail(CLRED_ERR_MEMORY, "proxy: out of memory");
    }
    if (st == CLRED_OK)
        st = clred_trace_fit_write_csv(OUT("fits.csv"), (const char *const *)names, fits, nscience + 1, o.overwrite);
#undef OUT
    for (size_t k = 0; finals && k < nscience; k++)
        clred_image_free(&finals[k]);
    for (size_t k = 0; fits && k <= nscience; k++)
        clred_trace_fit_free(&fits[k]);
    for (size_t k = 0; names && k <= nscience; k++)
        free(names[k]);
    free(finals), free(fits), free(names), free(ratio);
    clred_image_free(&med_sci);
    clred_image_free(&med_final);
    clred_proxy_match_free(&m);
    free(found);
    rep.total_s = clred_now() - t0;
    if (report)
        *report = rep;
    return st;
}
