/* A CUTE-like simulated set for the proxy-pixel background: dark and
 * science frames whose dark signal and scattered light are shared by groups
 * of pixels, a trace that splits from one Gaussian into two along the
 * dispersion axis, hot and missing pixels, cosmic rays, read noise; with
 * the truth. Deterministic from the seed (the night simulator's streams). */
#include <fitsio.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "simulate.h"

enum { TAG_GROUPS = 101, TAG_PIXELS, TAG_DARK, TAG_SCIENCE, TAG_DEFECTS };

clred_cute_sim_opts clred_cute_sim_defaults(void)
{
    clred_cute_sim_opts o;
    memset(&o, 0, sizeof o);
    o.width = 2048;
    o.height = 100;
    o.ndarks = 30;
    o.nscience = 5;
    o.ngroups = 400;
    o.read_noise = 2.0;
    o.centre = -1; /* height / 2 */
    o.sigma = 3.0;
    o.split_max = 12.0;
    o.peak = 400.0;
    o.spectral_half = 15;
    o.hot_fraction = 0.002;
    o.missing_fraction = 0.001;
    o.cosmic_fraction = 0.0005;
    o.seed = 1;
    return o;
}

void clred_cute_sim_free(clred_cute_sim *s)
{
    if (!s)
        return;
    for (size_t i = 0; s->darks && i < s->opts.ndarks; i++)
        clred_image_free(&s->darks[i]);
    for (size_t i = 0; s->science && i < s->opts.nscience; i++)
        clred_image_free(&s->science[i]);
    for (size_t i = 0; s->truth_background && i < s->opts.nscience; i++)
        free(s->truth_background[i]);
    free(s->darks);
    free(s->science);
    free(s->truth_background);
    free(s->spectral);
    free(s->group);
    free(s->hot);
    free(s->truth_spectrum);
    memset(s, 0, sizeof *s);
}

static double gauss(double y, double mu, double sigma) { return exp(-0.5 * (y - mu) * (y - mu) / (sigma * sigma)); }

/* The noiseless spectrum at (x, y): the continuum (with a few absorption
 * lines) times the two-Gaussian profile, split (x / (w - 1)) * split_max. */
static double spectrum_at(const clred_cute_sim_opts *o, size_t x, size_t y)
{
    double f = o->width > 1 ? (double)x / (double)(o->width - 1) : 0;
    double split = o->split_max * f;
    double cont = o->peak * (0.7 + 0.3 * sin(6.0 * f));
    for (int l = 1; l <= 4; l++)
        cont *= 1.0 - 0.6 * gauss(f, 0.2 * l, 0.01);
    return cont * 0.5 * (gauss((double)y, o->centre - split / 2, o->sigma) + gauss((double)y, o->centre + split / 2, o->sigma));
}

clred_status clred_cute_simulate(const clred_cute_sim_opts *opts, clred_cute_sim *out)
{
    memset(out, 0, sizeof *out);
    clred_cute_sim_opts o = opts ? *opts : clred_cute_sim_defaults();
    if (o.centre < 0)
        o.centre = (double)o.height / 2;
    if (o.width < 4 || o.height < 4 || o.width * o.height > (1u << 28) || o.ndarks < 2 || o.ndarks > 128 ||
        o.nscience < 1 || o.ngroups < 1 || o.spectral_half * 2 + 2 > o.height || !(o.sigma > 0) ||
        !(o.read_noise >= 0) || !(o.hot_fraction >= 0 && o.hot_fraction < 0.5) ||
        !(o.missing_fraction >= 0 && o.missing_fraction < 0.5) || !(o.cosmic_fraction >= 0 && o.cosmic_fraction < 0.5))
        return clred_fail(CLRED_ERR_USAGE,
                          "CUTE simulation: %zu x %zu frames, %zu darks (2..128), %zu science frames, %zu groups, "
                          "spectral half-height %zu: out of range",
                          o.width, o.height, o.ndarks, o.nscience, o.ngroups, o.spectral_half);
    out->opts = o;
    size_t w = o.width, h = o.height, np = w * h, ng = o.ngroups;
    double *ga = malloc(ng * sizeof *ga), *gb = malloc(ng * sizeof *gb), *gc = malloc(ng * sizeof *gc);
    double *hot_level = calloc(np, sizeof *hot_level);
    long *missing_frame = malloc(np * sizeof *missing_frame);
    out->darks = calloc(o.ndarks, sizeof *out->darks);
    out->science = calloc(o.nscience, sizeof *out->science);
    out->truth_background = calloc(o.nscience, sizeof *out->truth_background);
    out->spectral = calloc(np, 1);
    out->group = malloc(np * sizeof *out->group);
    out->hot = calloc(np, 1);
    out->truth_spectrum = malloc(np * sizeof *out->truth_spectrum);
    clred_status st = CLRED_OK;
    if (!ga || !gb || !gc || !hot_level || !missing_frame || !out->darks || !out->science || !out->truth_background ||
        !out->spectral || !out->group || !out->hot || !out->truth_spectrum)
        st = clred_fail(CLRED_ERR_MEMORY, "CUTE simulation: out of memory");
    /* Groups well apart in level (10 ADU steps, shuffled) so that a pixel's
     * true twins are its best proxies; slopes with temperature differ too. */
    clred_sim_rng r;
    clred_sim_rng_init(&r, o.seed, TAG_GROUPS, 0);
    for (size_t g = 0; st == CLRED_OK && g < ng; g++) {
        ga[g] = 50.0 + 10.0 * (double)g;
        gb[g] = 0.5 + 4.5 * clred_sim_uniform(&r);
        gc[g] = clred_sim_uniform(&r);
    }
    for (size_t g = ng; st == CLRED_OK && g > 1; g--) {
        size_t k = (size_t)(clred_sim_uniform(&r) * (double)g);
        double t = ga[g - 1];
        ga[g - 1] = ga[k];
        ga[k] = t;
    }
    clred_sim_rng_init(&r, o.seed, TAG_PIXELS, 0);
    size_t nframes = o.ndarks + o.nscience;
    for (size_t i = 0; st == CLRED_OK && i < np; i++) {
        size_t y = i / w, x = i % w;
        out->group[i] = (int32_t)(clred_sim_uniform(&r) * (double)ng);
        out->spectral[i] = fabs((double)y - o.centre) <= (double)o.spectral_half;
        out->truth_spectrum[i] = (float)spectrum_at(&o, x, y);
    }
    clred_sim_rng_init(&r, o.seed, TAG_DEFECTS, 0);
    for (size_t i = 0; st == CLRED_OK && i < np; i++) {
        missing_frame[i] = -1;
        if (clred_sim_uniform(&r) < o.hot_fraction) {
            out->hot[i] = 1;
            hot_level[i] = 5000 + 20000 * clred_sim_uniform(&r);
        }
        if (clred_sim_uniform(&r) < o.missing_fraction)
            missing_frame[i] = (long)(clred_sim_uniform(&r) * (double)nframes);
    }
    for (size_t f = 0; st == CLRED_OK && f < nframes; f++) {
        int dark = f < o.ndarks;
        size_t k = dark ? f : f - o.ndarks;
        clred_image *img = dark ? &out->darks[k] : &out->science[k];
        st = clred_image_alloc(img, w, h, 0, 0);
        float *truth = NULL;
        if (st == CLRED_OK && !dark && !(truth = out->truth_background[k] = malloc(np * sizeof *truth)))
            st = clred_fail(CLRED_ERR_MEMORY, "CUTE simulation: out of memory");
        if (st != CLRED_OK)
            break;
        clred_sim_rng_init(&r, o.seed, dark ? TAG_DARK : TAG_SCIENCE, k);
        /* the frame's temperature and (science) scattered-light level */
        double temp = 3.0 * clred_sim_normal(&r), light = dark ? 0.0 : 20.0 + 40.0 * clred_sim_uniform(&r);
        for (size_t i = 0; i < np; i++) {
            size_t g = (size_t)out->group[i];
            double bkg = ga[g] + gb[g] * temp + gc[g] * light, s = dark ? 0.0 : out->truth_spectrum[i];
            if (truth)
                truth[i] = (float)bkg;
            double v = bkg + s + o.read_noise * clred_sim_normal(&r) + sqrt(s) * clred_sim_normal(&r) + hot_level[i];
            if (!dark && clred_sim_uniform(&r) < o.cosmic_fraction)
                v += 500 + 4500 * clred_sim_uniform(&r);
            img->sci[i] = missing_frame[i] == (long)f ? NAN : (float)nearbyint(v);
        }
    }
    free(ga), free(gb), free(gc), free(hot_level), free(missing_frame);
    if (st != CLRED_OK)
        clred_cute_sim_free(out);
    return st;
}

/* ------------------------------------------------------------ writing */

/* planes (n of them, each w x h, of cfitsio type datatype) as one FITS
 * image (a cube when n > 1), atomically. */
static clred_status write_planes(const char *path, const void *const *planes, size_t n, size_t w, size_t h,
                                 int bitpix, int datatype, size_t elem, int overwrite)
{
    CLRED_TRY(clred_output_check(path, NULL, 0, overwrite));
    char tmp[PATH_MAX];
    CLRED_TRY(clred_atomic_temp_name(path, tmp, sizeof tmp));
    fitsfile *f;
    int status = 0;
    long naxes[3] = {(long)w, (long)h, (long)n};
    if (fits_create_file(&f, tmp, &status)) {
        fits_clear_errmsg();
        return clred_fail(CLRED_ERR_IO, "%s: cannot create", path);
    }
    fits_create_img(f, bitpix, n > 1 ? 3 : 2, naxes, &status);
    fits_update_key(f, TSTRING, "ORIGIN", "clred CUTE-like simulation", NULL, &status);
    for (size_t k = 0; k < n && !status; k++) {
        long fpixel[3] = {1, 1, (long)k + 1};
        fits_write_pix(f, datatype, fpixel, (LONGLONG)(w * h), (void *)((const char *)planes[k]), &status);
    }
    (void)elem;
    int cs = 0;
    fits_close_file(f, &cs);
    if (status || cs) {
        fits_clear_errmsg();
        remove(tmp);
        return clred_fail(CLRED_ERR_IO, "%s: writing failed (cfitsio status %d)", path, status ? status : cs);
    }
    return clred_atomic_commit(tmp, path);
}

clred_status clred_cute_sim_write(const clred_cute_sim *s, const char *dir, int overwrite)
{
    const clred_cute_sim_opts *o = &s->opts;
    size_t w = o->width, h = o->height, nmax = o->ndarks > o->nscience ? o->ndarks : o->nscience;
    const void **planes = malloc((nmax + 1) * sizeof *planes);
    if (!planes)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory");
    char path[PATH_MAX];
    clred_status st = CLRED_OK;
#define OUT(name) (snprintf(path, sizeof path, "%s/%s", dir, name), path)
    for (size_t k = 0; k < o->ndarks; k++)
        planes[k] = s->darks[k].sci;
    st = write_planes(OUT("darks.fits"), planes, o->ndarks, w, h, FLOAT_IMG, TFLOAT, 4, overwrite);
    for (size_t k = 0; k < o->nscience; k++)
        planes[k] = s->science[k].sci;
    if (st == CLRED_OK)
        st = write_planes(OUT("science.fits"), planes, o->nscience, w, h, FLOAT_IMG, TFLOAT, 4, overwrite);
    planes[0] = s->spectral;
    if (st == CLRED_OK)
        st = write_planes(OUT("spectral.fits"), planes, 1, w, h, BYTE_IMG, TBYTE, 1, overwrite);
    planes[0] = s->truth_spectrum;
    if (st == CLRED_OK)
        st = write_planes(OUT("truth_spectrum.fits"), planes, 1, w, h, FLOAT_IMG, TFLOAT, 4, overwrite);
    for (size_t k = 0; k < o->nscience; k++)
        planes[k] = s->truth_background[k];
    if (st == CLRED_OK)
        st = write_planes(OUT("truth_background.fits"), planes, o->nscience, w, h, FLOAT_IMG, TFLOAT, 4, overwrite);
    planes[0] = s->group;
    if (st == CLRED_OK)
        st = write_planes(OUT("truth_group.fits"), planes, 1, w, h, LONG_IMG, TINT, 4, overwrite);
    planes[0] = s->hot;
    if (st == CLRED_OK)
        st = write_planes(OUT("truth_hot.fits"), planes, 1, w, h, BYTE_IMG, TBYTE, 1, overwrite);
    free(planes);
    if (st != CLRED_OK)
        return st;
    char tmp[PATH_MAX];
    FILE *f;
    CLRED_TRY(clred_atomic_open(OUT("truth.json"), overwrite, tmp, sizeof tmp, &f));
#undef OUT
    fprintf(f,
            "{\"width\": %zu, \"height\": %zu, \"ndarks\": %zu, \"nscience\": %zu, \"ngroups\": %zu, "
            "\"read_noise\": %.9g, \"centre\": %.9g, \"sigma\": %.9g, \"split_max\": %.9g, \"peak\": %.9g, "
            "\"spectral_half\": %zu, \"hot_fraction\": %.9g, \"missing_fraction\": %.9g, \"cosmic_fraction\": %.9g, "
            "\"seed\": %llu,\n \"profile\": \"peak(x) * 0.5 * [G(y; centre - split(x)/2, sigma) + G(y; centre + "
            "split(x)/2, sigma)], split(x) = split_max * x / (width - 1)\"}\n",
            o->width, o->height, o->ndarks, o->nscience, o->ngroups, o->read_noise, o->centre, o->sigma, o->split_max,
            o->peak, o->spectral_half, o->hot_fraction, o->missing_fraction, o->cosmic_fraction,
            (unsigned long long)o->seed);
    return clred_atomic_close(f, tmp, path);
}
