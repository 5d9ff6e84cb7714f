/* clred_simulate: writes a simulated raw night (uint16 FITS frames as a CCD
 * would give them) and its truth into a directory. The model lives in
 * simulate_model.c; this file stages the outputs and writes them. */
#include <dirent.h>
#include <errno.h>
#include <fitsio.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "simulate.h"

clred_sim_opts clred_sim_defaults(void)
{
    clred_sim_opts o;
    memset(&o, 0, sizeof o);
    o.seed = 1;
    o.width = 512;
    o.height = 512;
    o.nbias = 5;
    o.ndark = 5;
    o.nflat = 5;
    o.nscience = 8;
    o.nepoch2 = 4;
    o.gain = 1.5;
    o.readnoise = 6;
    o.bias_level = 1000;
    o.dark_current = 0.05;
    o.dark_exptime = 300;
    o.science_exptime = 120;
    o.sky = 15;
    o.nstars = 300;
    o.dither = 4;
    o.ntransients = 5;
    o.saturation = 60000;
    o.cosmic_rate = 2e-6;
    o.filters = "R";
    o.nshort = 0;
    o.short_exptime = 10;
    o.pixel_scale = 0.4;
    o.sip = 0;
    return o;
}

/* ------------------------------------------------------------ FITS */

static clred_status fits_failed(int status, const char *path, const char *doing)
{
    char text[FLEN_STATUS] = "";
    fits_get_errstatus(status, text);
    fits_clear_errmsg();
    return clred_fail(CLRED_ERR_IO, "%s: %s failed (%s)", path, doing, text);
}

static void key_double(fitsfile *f, const char *key, double v, const char *comment, int *status)
{
    fits_write_key(f, TDOUBLE, key, &v, comment, status);
}

static void key_string(fitsfile *f, const char *key, const char *v, const char *comment, int *status)
{
    fits_write_key(f, TSTRING, key, (void *)v, comment, status);
}

static void frame_keys(fitsfile *f, const clred_sim_truth *t, const clred_sim_frame *fr, int *status)
{
    const clred_sim_opts *o = &t->opts;
    static const char *objects[] = {"bias", "dark", "dome flat", "SIMFIELD", "SIMFIELD"};
    key_string(f, "IMAGETYP", clred_sim_imagetyp(fr->kind), "frame type", status);
    key_string(f, "OBJECT", objects[fr->kind], NULL, status);
    key_double(f, "EXPTIME", fr->exptime, "exposure time (s)", status);
    int calibration = fr->kind == CLRED_SIM_BIAS || fr->kind == CLRED_SIM_DARK;
    key_string(f, "FILTER", calibration ? "NONE" : t->filter_names[fr->filter], NULL, status);
    key_string(f, "DATE-OBS", fr->date_obs, "start of exposure (UTC)", status);
    key_double(f, "GAIN", o->gain, "e-/ADU", status);
    key_double(f, "RDNOISE", o->readnoise, "read noise (e-)", status);
    key_double(f, "SATURATE", t->ceiling, "saturation level (ADU)", status);
    key_string(f, "BUNIT", "ADU", NULL, status);
    key_string(f, "INSTRUME", "clred simulator", NULL, status);
    unsigned long long seed = o->seed;
    fits_write_key(f, TULONGLONG, "SIMSEED", &seed, "simulation seed", status);
    long ncr = (long)fr->ncrs;
    fits_write_key(f, TLONG, "SIMNCR", &ncr, "cosmic rays injected (truth.json)", status);
    if (fr->kind == CLRED_SIM_SCIENCE || fr->kind == CLRED_SIM_EPOCH2) {
        int epoch = fr->epoch;
        fits_write_key(f, TINT, "EPOCH", &epoch, "simulated epoch", status);
        key_double(f, "SIMDX", fr->dx, "true dither x (px): x_frame = x_field + SIMDX", status);
        key_double(f, "SIMDY", fr->dy, "true dither in y (px)", status);
        key_double(f, "SIMFWHM", fr->fwhm, "true seeing FWHM (px, Moffat beta 3)", status);
        key_double(f, "SIMSKY", fr->sky, "true mean sky (e-/s/px)", status);
    }
    if (fr->kind == CLRED_SIM_FLAT)
        key_double(f, "SIMLAMP", fr->lamp, "true illumination before the flat (e-)", status);
}

static clred_status write_frame(const char *path, const clred_sim_truth *t, const clred_sim_frame *fr, const uint16_t *adu)
{
    fitsfile *f;
    int status = 0;
    if (fits_create_file(&f, path, &status))
        return fits_failed(status, path, "creating the file");
    long naxes[2] = {(long)t->width, (long)t->height};
    /* USHORT_IMG: BITPIX 16 with BZERO 32768, as CCD controllers write. */
    fits_create_img(f, USHORT_IMG, 2, naxes, &status);
    frame_keys(f, t, fr, &status);
    if (t->opts.pixel_scale > 0 && (fr->kind == CLRED_SIM_SCIENCE || fr->kind == CLRED_SIM_EPOCH2)) {
        clred_header *h = clred_header_new();
        clred_status s = h ? clred_sim_frame_wcs(t, fr, h) : clred_fail(CLRED_ERR_MEMORY, "out of memory");
        for (size_t i = 0; s == CLRED_OK && i < clred_header_count(h) && !status; i++)
            fits_write_record(f, clred_header_card(h, i), &status);
        clred_header_free(h);
        if (s != CLRED_OK) {
            int ignore = 0;
            fits_close_file(f, &ignore);
            return s;
        }
    }
    fits_write_img(f, TUSHORT, 1, (LONGLONG)(t->width * t->height), (void *)adu, &status);
    int close_status = 0;
    fits_close_file(f, &close_status);
    if (status || close_status)
        return fits_failed(status ? status : close_status, path, "writing");
    return CLRED_OK;
}

static clred_status write_truth_image(const char *path, const clred_sim_truth *t, const double *data, const char *bunit,
                                      const char *what)
{
    fitsfile *f;
    int status = 0;
    if (fits_create_file(&f, path, &status))
        return fits_failed(status, path, "creating the file");
    long naxes[2] = {(long)t->width, (long)t->height};
    fits_create_img(f, FLOAT_IMG, 2, naxes, &status);
    key_string(f, "BUNIT", bunit, NULL, &status);
    key_string(f, "OBJECT", what, NULL, &status);
    unsigned long long seed = t->opts.seed;
    fits_write_key(f, TULONGLONG, "SIMSEED", &seed, "simulation seed", &status);
    fits_write_img(f, TDOUBLE, 1, (LONGLONG)(t->width * t->height), (void *)data, &status);
    int close_status = 0;
    fits_close_file(f, &close_status);
    if (status || close_status)
        return fits_failed(status ? status : close_status, path, "writing");
    return CLRED_OK;
}

/* ------------------------------------------------------- truth.json */

static void json_options(clred_json_writer *w, const clred_sim_opts *o)
{
    clred_json_begin_object(w, "options", 0);
    clred_json_uint(w, "seed", (unsigned long long)o->seed);
    clred_json_int(w, "width", (long long)o->width);
    clred_json_int(w, "height", (long long)o->height);
    clred_json_int(w, "nbias", o->nbias);
    clred_json_int(w, "ndark", o->ndark);
    clred_json_int(w, "nflat", o->nflat);
    clred_json_int(w, "nscience", o->nscience);
    clred_json_int(w, "nepoch2", o->nepoch2);
    clred_json_number(w, "gain", o->gain);
    clred_json_number(w, "readnoise", o->readnoise);
    clred_json_number(w, "bias_level", o->bias_level);
    clred_json_number(w, "dark_current", o->dark_current);
    clred_json_number(w, "dark_exptime", o->dark_exptime);
    clred_json_number(w, "science_exptime", o->science_exptime);
    clred_json_number(w, "sky", o->sky);
    clred_json_int(w, "nstars", o->nstars);
    clred_json_number(w, "dither", o->dither);
    clred_json_int(w, "ntransients", o->ntransients);
    clred_json_number(w, "saturation", o->saturation);
    clred_json_number(w, "cosmic_rate", o->cosmic_rate);
    clred_json_string(w, "filters", o->filters && *o->filters ? o->filters : "R");
    clred_json_int(w, "nshort", o->nshort);
    clred_json_number(w, "short_exptime", o->short_exptime);
    clred_json_number(w, "pixel_scale", o->pixel_scale);
    clred_json_number(w, "sip", o->sip);
    clred_json_end_object(w);
}

/* The first filter's flat is truth_flat.fits (as in a single-filter night);
 * with several filters each also has truth_flat_F.fits. */
static void truth_flat_name(char *out, size_t size, const clred_sim_truth *t, int k)
{
    if (t->nfilters > 1)
        snprintf(out, size, "truth_flat_%s.fits", t->filter_names[k]);
    else
        snprintf(out, size, "truth_flat.fits");
}

static void json_detector(clred_json_writer *w, const clred_sim_truth *t)
{
    const clred_sim_opts *o = &t->opts;
    clred_json_begin_object(w, "detector", 0);
    clred_json_number(w, "gain_e_per_adu", o->gain);
    clred_json_number(w, "readnoise_e", o->readnoise);
    clred_json_number(w, "readnoise_adu", o->readnoise / o->gain);
    clred_json_number(w, "bias_level_adu", o->bias_level);
    clred_json_string(w, "bias_model", "bias_level + column_offset[x] + (y / height - 0.5) ADU (truth_bias.fits)");
    clred_json_begin_array(w, "bias_column_offsets_adu", 1);
    for (size_t x = 0; x < t->width; x++)
        clred_json_number(w, NULL, t->column_offset[x]);
    clred_json_end_array(w);
    clred_json_number(w, "dark_current_e_per_s", o->dark_current);
    clred_json_number(w, "saturation_adu", t->ceiling);
    clred_json_string(w, "flat_model", "vignetting to 60% in the corners, dust donuts, 1% pixel response; mean 1 "
                                 "(truth_flat.fits)");
    clred_json_number(w, "flat_exptime", CLRED_SIM_FLAT_EXPTIME);
    clred_json_end_object(w);
    clred_json_begin_array(w, "filters", 0);
    for (int k = 0; k < t->nfilters; k++) {
        char file[64];
        truth_flat_name(file, sizeof file, t, k);
        clred_json_begin_object(w, NULL, 1);
        clred_json_string(w, "name", t->filter_names[k]);
        clred_json_string(w, "flat_file", file);
        clred_json_number(w, "vignetting", t->vignetting[k]);
        clred_json_number(w, "sky_scale", t->sky_scale[k]);
        clred_json_end_object(w);
    }
    clred_json_end_array(w);
    clred_json_begin_array(w, "hot_pixels", 0);
    for (size_t i = 0; i < t->nhot; i++) {
        clred_json_begin_array(w, NULL, 1);
        clred_json_int(w, NULL, t->hot[i].x);
        clred_json_int(w, NULL, t->hot[i].y);
        clred_json_number(w, NULL, t->hot[i].rate);
        clred_json_end_array(w);
    }
    clred_json_end_array(w);
}

static void json_sources(clred_json_writer *w, const clred_sim_truth *t)
{
    clred_json_begin_object(w, "psf", 0);
    clred_json_string(w, "profile", "moffat");
    clred_json_number(w, "beta", CLRED_SIM_MOFFAT_BETA);
    clred_json_end_object(w);
    clred_json_int(w, "nsaturating", (long long)t->nsaturating);
    clred_json_begin_array(w, "stars", 0);
    for (size_t i = 0; i < t->nstars; i++) {
        clred_json_begin_array(w, NULL, 1);
        clred_json_number(w, NULL, t->stars[i].x);
        clred_json_number(w, NULL, t->stars[i].y);
        clred_json_number(w, NULL, t->stars[i].flux);
        clred_json_end_array(w);
    }
    clred_json_end_array(w);
    clred_json_begin_array(w, "transients", 0);
    for (size_t i = 0; i < t->ntransients; i++) {
        const clred_sim_transient *tr = &t->transients[i];
        clred_json_begin_object(w, NULL, 1);
        clred_json_string(w, "kind", tr->new_source ? "new" : "brightened");
        clred_json_int(w, "star", tr->star);
        clred_json_number(w, "x", tr->x);
        clred_json_number(w, "y", tr->y);
        clred_json_number(w, "flux_e", tr->flux);
        clred_json_end_object(w);
    }
    clred_json_end_array(w);
}

static void json_frame(clred_json_writer *w, const clred_sim_truth *t, const clred_sim_frame *f)
{
    clred_json_begin_object(w, NULL, 0);
    clred_json_string(w, "file", f->name);
    clred_json_string(w, "kind", clred_sim_kind_name(f->kind));
    clred_json_int(w, "index", f->index);
    clred_json_string(w, "filter", f->kind == CLRED_SIM_BIAS || f->kind == CLRED_SIM_DARK
                                       ? "NONE" : t->filter_names[f->filter]);
    clred_json_string(w, "imagetyp", clred_sim_imagetyp(f->kind));
    clred_json_number(w, "exptime", f->exptime);
    clred_json_string(w, "date_obs", f->date_obs);
    if (f->kind == CLRED_SIM_FLAT)
        clred_json_number(w, "lamp_e", f->lamp);
    if (f->kind == CLRED_SIM_SCIENCE || f->kind == CLRED_SIM_EPOCH2) {
        clred_json_int(w, "epoch", f->epoch);
        clred_json_number(w, "dx", f->dx);
        clred_json_number(w, "dy", f->dy);
        clred_json_number(w, "fwhm", f->fwhm);
        clred_json_number(w, "sky_e_per_s", f->sky);
        clred_json_begin_array(w, "sky_gradient", 1);
        clred_json_number(w, NULL, f->sky_gx);
        clred_json_number(w, NULL, f->sky_gy);
        clred_json_end_array(w);
    }
    clred_json_int(w, "n_cosmic_rays", (long long)f->ncrs);
    clred_json_begin_array(w, "cosmic_rays", 0);
    for (size_t k = 0; k < f->ncrs; k++) {
        const clred_sim_cosmic_ray *cr = &f->crs[k];
        clred_json_begin_object(w, NULL, 1);
        clred_json_begin_array(w, "bbox", 1);
        clred_json_int(w, NULL, cr->x0);
        clred_json_int(w, NULL, cr->y0);
        clred_json_int(w, NULL, cr->x1);
        clred_json_int(w, NULL, cr->y1);
        clred_json_end_array(w);
        clred_json_begin_array(w, "pixels", 1);
        for (size_t i = 0; i < cr->count; i++) {
            const clred_sim_cr_pixel *p = &f->cr_pixels[cr->first + i];
            clred_json_begin_array(w, NULL, 1);
            clred_json_int(w, NULL, p->x);
            clred_json_int(w, NULL, p->y);
            clred_json_number(w, NULL, p->electrons);
            clred_json_end_array(w);
        }
        clred_json_end_array(w);
        clred_json_end_object(w);
    }
    clred_json_end_array(w);
    clred_json_end_object(w);
}

static clred_status write_truth_json(const char *path, const clred_sim_truth *t)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return clred_fail(CLRED_ERR_IO, "%s: cannot create (%s)", path, strerror(errno));
    clred_json_writer w;
    clred_json_init(&w, f);
    clred_json_begin_object(&w, NULL, 0);
    clred_json_string(&w, "generator", "clred simulate " CLRED_VERSION);
    clred_json_string(&w, "coordinates", "0-based pixels, centres at integers; stars and transients on the field grid: "
                                   "x_frame = x + dx, y_frame = y + dy");
    clred_json_string(&w, "flux_units", "e- per science exposure, before the flat field");
    clred_json_uint(&w, "seed", (unsigned long long)t->opts.seed);
    clred_json_int(&w, "width", (long long)t->width);
    clred_json_int(&w, "height", (long long)t->height);
    json_options(&w, &t->opts);
    json_detector(&w, t);
    json_sources(&w, t);
    clred_json_begin_array(&w, "frames", 0);
    for (size_t i = 0; i < t->nframes; i++)
        json_frame(&w, t, &t->frames[i]);
    clred_json_end_array(&w);
    clred_json_end_object(&w);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad)
        return clred_fail(CLRED_ERR_IO, "%s: writing failed (disk full?)", path);
    return CLRED_OK;
}

/* ------------------------------------------------------ the staging */

/* dir/name into out; a name that does not fit is an error, not a truncation. */
static clred_status join(char *out, size_t size, const char *dir, const char *name)
{
    int n = snprintf(out, size, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= size)
        return clred_fail(CLRED_ERR_USAGE, "%s/%s: path too long", dir, name);
    return CLRED_OK;
}

static int dir_is_empty(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return 0;
    struct dirent *e;
    int empty = 1;
    while (empty && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            empty = 0;
    closedir(d);
    return empty;
}

/* Removes the staging directory and what is in it (all of it ours). */
static void remove_stage(const char *stage)
{
    DIR *d = opendir(stage);
    if (d) {
        struct dirent *e;
        char p[PATH_MAX];
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                if (join(p, sizeof p, stage, e->d_name) == CLRED_OK)
                    unlink(p);
            }
        closedir(d);
    }
    rmdir(stage);
}

/* A frame or truth-flat file of an earlier simulation ("sci_012.fits",
 * "flat_g_002.fits", "truth_flat_g.fits") that this one does not write: with
 * overwrite it goes, so the directory matches truth.json. */
static int stale_frame(const char *name, const clred_sim_truth *t)
{
    static const char *prefixes[] = {"bias_", "dark_", "flat_", "sci_", "epoch2_", "truth_flat_"};
    size_t len = strlen(name);
    if (len < 6 || strcmp(name + len - 5, ".fits"))
        return 0;
    int ours = 0;
    for (int k = 0; k < 6 && !ours; k++)
        ours = !strncmp(name, prefixes[k], strlen(prefixes[k]));
    /* A frame ends in _NNN.fits; anything else of the user's stays. */
    const char *num = name + len - 8;
    int numbered = len >= 10 && num[-1] == '_' && num[0] >= '0' && num[0] <= '9' && num[1] >= '0' &&
                   num[1] <= '9' && num[2] >= '0' && num[2] <= '9';
    if (!ours || (strncmp(name, "truth_flat_", 11) && !numbered))
        return 0;
    for (size_t i = 0; i < t->nframes; i++)
        if (!strcmp(name, t->frames[i].name))
            return 0;
    for (int k = 0; k < t->nfilters; k++) {
        char file[64];
        truth_flat_name(file, sizeof file, t, k);
        if (!strcmp(name, file))
            return 0;
    }
    return 1;
}

static clred_status move_into(const char *stage, const char *outdir, const clred_sim_truth *t)
{
    DIR *d = opendir(outdir);
    if (d) {
        struct dirent *e;
        char p[PATH_MAX];
        while ((e = readdir(d)))
            if (stale_frame(e->d_name, t)) {
                if (join(p, sizeof p, outdir, e->d_name) == CLRED_OK)
                    unlink(p);
            }
        closedir(d);
    }
    d = opendir(stage);
    if (!d)
        return clred_fail(CLRED_ERR_IO, "%s: cannot read the staging directory (%s)", stage, strerror(errno));
    struct dirent *e;
    clred_status s = CLRED_OK;
    char from[PATH_MAX], to[PATH_MAX];
    while (s == CLRED_OK && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            s = join(from, sizeof from, stage, e->d_name);
            if (s == CLRED_OK)
                s = join(to, sizeof to, outdir, e->d_name);
            if (s == CLRED_OK && rename(from, to) != 0)
                s = clred_fail(CLRED_ERR_IO, "%s: cannot move into place (%s)", to, strerror(errno));
        }
    closedir(d);
    return s;
}

/* ------------------------------------------------------- the night */

static clred_status write_night(const char *stage, const clred_sim_truth *t)
{
    size_t n = t->width * t->height;
    double *e = malloc(n * sizeof *e);
    uint16_t *adu = malloc(n * sizeof *adu);
    clred_status s = CLRED_OK;
    if (!e || !adu)
        s = clred_fail(CLRED_ERR_MEMORY, "simulate: cannot allocate a %zux%zu frame", t->width, t->height);
    char path[PATH_MAX];
    for (size_t i = 0; i < t->nframes && s == CLRED_OK; i++) {
        clred_sim_expected(t, i, e);
        clred_sim_render(t, i, e, adu);
        s = join(path, sizeof path, stage, t->frames[i].name);
        if (s == CLRED_OK)
            s = write_frame(path, t, &t->frames[i], adu);
    }
    free(e);
    free(adu);
    if (s == CLRED_OK)
        s = join(path, sizeof path, stage, "truth_flat.fits");
    if (s == CLRED_OK)
        s = write_truth_image(path, t, t->flat, "", "true flat field, normalised to mean 1");
    for (int k = 0; k < t->nfilters && t->nfilters > 1 && s == CLRED_OK; k++) {
        char file[64], what[80];
        truth_flat_name(file, sizeof file, t, k);
        snprintf(what, sizeof what, "true flat field of filter %s, normalised to mean 1", t->filter_names[k]);
        s = join(path, sizeof path, stage, file);
        if (s == CLRED_OK)
            s = write_truth_image(path, t, t->flat + (size_t)k * t->width * t->height, "", what);
    }
    if (s == CLRED_OK)
        s = join(path, sizeof path, stage, "truth_bias.fits");
    if (s == CLRED_OK)
        s = write_truth_image(path, t, t->bias, "ADU", "true noiseless bias");
    if (s == CLRED_OK)
        s = join(path, sizeof path, stage, "truth_dark.fits");
    if (s == CLRED_OK)
        s = write_truth_image(path, t, t->dark, "electron/s", "true dark current");
    if (s == CLRED_OK && t->opts.pixel_scale > 0)
        s = join(path, sizeof path, stage, "stars.csv");
    if (s == CLRED_OK && t->opts.pixel_scale > 0)
        s = clred_sim_write_stars(path, t);
    if (s == CLRED_OK)
        s = join(path, sizeof path, stage, "truth.json");
    if (s == CLRED_OK)
        s = write_truth_json(path, t);
    return s;
}

clred_status clred_simulate(const clred_sim_opts *opts, const char *outdir, int overwrite)
{
    if (!outdir || !*outdir)
        return clred_fail(CLRED_ERR_USAGE, "simulate: no output directory given (-o DIR)");
    CLRED_TRY(clred_sim_check_opts(opts));
    char dir[PATH_MAX];
    if (snprintf(dir, sizeof dir, "%s", outdir) >= (int)sizeof dir - 64)
        return clred_fail(CLRED_ERR_USAGE, "simulate: output directory name too long");
    for (size_t n = strlen(dir); n > 1 && dir[n - 1] == '/'; n--)
        dir[n - 1] = '\0';
    struct stat sb;
    int exists = stat(dir, &sb) == 0;
    if (exists && !S_ISDIR(sb.st_mode))
        return clred_fail(CLRED_ERR_IO, "%s: exists and is not a directory", dir);
    if (exists && !overwrite && !dir_is_empty(dir))
        return clred_fail(CLRED_ERR_IO, "%s: directory is not empty; use --overwrite to replace its simulation", dir);

    /* Everything is written into a staging directory first: a new outdir is
     * the staging directory renamed; an existing one receives each file by
     * rename. Either way a failure leaves nothing behind. */
    char stage[PATH_MAX];
    int len = exists ? snprintf(stage, sizeof stage, "%s/.clred-sim-%ld.tmp", dir, (long)getpid())
                     : snprintf(stage, sizeof stage, "%s.clred-sim-%ld.tmp", dir, (long)getpid());
    if (len < 0 || (size_t)len >= sizeof stage) /* dir is short enough (checked above); the check tells the compiler */
        return clred_fail(CLRED_ERR_USAGE, "simulate: output directory name too long");
    remove_stage(stage);
    if (mkdir(stage, 0777) != 0)
        return clred_fail(CLRED_ERR_IO, "%s: cannot create the output directory (%s)", dir, strerror(errno));

    clred_sim_truth t;
    clred_status s = clred_sim_truth_build(opts, &t);
    if (s == CLRED_OK) {
        s = write_night(stage, &t);
        if (s == CLRED_OK && exists)
            s = move_into(stage, dir, &t);
        else if (s == CLRED_OK && rename(stage, dir) != 0)
            s = clred_fail(CLRED_ERR_IO, "%s: cannot move the finished night into place (%s)", dir, strerror(errno));
        clred_sim_truth_free(&t);
    }
    if (s != CLRED_OK || exists)
        remove_stage(stage);
    return s;
}
