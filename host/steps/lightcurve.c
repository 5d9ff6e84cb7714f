/* Light curves: forced aperture or PSF photometry of fixed targets (pixel
 * or sky positions) on a series of direct or difference images, with the
 * time of each image from its header. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

clred_lightcurve_opts clred_lightcurve_defaults(void)
{
    clred_lightcurve_opts o;
    memset(&o, 0, sizeof o);
    o.phot = clred_phot_defaults();
    return o;
}

/* Days from 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static long days_from_civil(long y, long m, long d)
{
    y -= m <= 2;
    long era = (y >= 0 ? y : y - 399) / 400;
    long yoe = y - era * 400;
    long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* "hh:mm:ss[.s]" -> fraction of a day; 0 on a malformed time. */
static int parse_time(const char *s, double *day)
{
    int hh, mm;
    double ss;
    if (sscanf(s, "%d:%d:%lf", &hh, &mm, &ss) != 3 || hh < 0 || hh > 24 || mm < 0 || mm > 59 || ss < 0 || ss > 61)
        return 0;
    *day = (hh * 3600.0 + mm * 60.0 + ss) / 86400.0;
    return 1;
}

clred_status clred_header_mjd(const clred_header *h, double *mjd)
{
    double t = NAN, v;
    char date[80];
    if (clred_header_get_double(h, "MJD-OBS", &v) && v > 0)
        t = v;
    else if (clred_header_get_string(h, "DATE-OBS", date, sizeof date)) {
        int y, mo, d;
        if (sscanf(date, "%d-%d-%d", &y, &mo, &d) != 3 || mo < 1 || mo > 12 || d < 1 || d > 31)
            return clred_fail(CLRED_ERR_INPUT, "DATE-OBS '%s' is not an ISO date (YYYY-MM-DD[Thh:mm:ss])", date);
        double frac = 0;
        const char *tpos = strchr(date, 'T');
        char tobs[80];
        if (tpos) {
            if (!parse_time(tpos + 1, &frac))
                return clred_fail(CLRED_ERR_INPUT, "DATE-OBS '%s' has a malformed time", date);
        } else if (clred_header_get_string(h, "TIME-OBS", tobs, sizeof tobs) && !parse_time(tobs, &frac))
            return clred_fail(CLRED_ERR_INPUT, "TIME-OBS '%s' is not hh:mm:ss", tobs);
        /* MJD 0 is 1858-11-17, 40587 days before 1970-01-01. */
        t = (double)days_from_civil(y, mo, d) + 40587.0 + frac;
    }
    if (!isfinite(t))
        return clred_fail(CLRED_ERR_INPUT, "no MJD-OBS or DATE-OBS keyword: the image's time is unknown");
    double exptime = 0;
    if (clred_header_get_double(h, "EXPTIME", &v) && v > 0)
        exptime = v;
    *mjd = t + 0.5 * exptime / 86400.0;
    return CLRED_OK;
}

void clred_lc_targets_free(clred_lc_targets *t)
{
    if (!t)
        return;
    free(t->a);
    free(t->b);
    free(t->ref_flux);
    memset(t, 0, sizeof *t);
}

clred_status clred_lc_targets_read(const char *path, clred_lc_targets *t, int *sky)
{
    memset(t, 0, sizeof *t);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return clred_fail(CLRED_ERR_INPUT, "%s: cannot open (%s)", path, strerror(errno));
    char line[4096];
    int ca = -1, cb = -1, cf = -1, header = 0;
    size_t cap = 0, lineno = 0;
    clred_status st = CLRED_OK;
    while (st == CLRED_OK && fgets(line, sizeof line, fp)) {
        lineno++;
        char *s = clred_csv_trim(line);
        if (!*s || *s == '#')
            continue;
        char *f[64];
        int nf = clred_csv_split(s, f, 64);
        if (!header) {
            header = 1;
            for (int k = 0; k < nf; k++) {
                if (!strcasecmp(f[k], "x") || !strcasecmp(f[k], "ra"))
                    ca = k, *sky = !strcasecmp(f[k], "ra");
                else if (!strcasecmp(f[k], "y") || !strcasecmp(f[k], "dec"))
                    cb = k;
                else if (!strcasecmp(f[k], "ref_flux"))
                    cf = k;
            }
            if (ca < 0 || cb < 0)
                st = clred_fail(CLRED_ERR_INPUT, "%s: the header line needs columns x, y or ra, dec", path);
            continue;
        }
        if (nf <= ca || nf <= cb) {
            st = clred_fail(CLRED_ERR_INPUT, "%s: line %zu has too few fields", path, lineno);
            break;
        }
        if (t->n == cap) {
            cap = cap ? 2 * cap : 64;
            double *a = realloc(t->a, cap * sizeof *a);
            if (a)
                t->a = a;
            double *b = a ? realloc(t->b, cap * sizeof *b) : NULL;
            if (b)
                t->b = b;
            double *r = b ? realloc(t->ref_flux, cap * sizeof *r) : NULL;
            if (r)
                t->ref_flux = r;
            if (!r) {
                st = clred_fail(CLRED_ERR_MEMORY, "%s: out of memory", path);
                break;
            }
        }
        char *end1, *end2;
        t->a[t->n] = strtod(f[ca], &end1);
        t->b[t->n] = strtod(f[cb], &end2);
        t->ref_flux[t->n] = cf >= 0 && nf > cf && *f[cf] ? strtod(f[cf], NULL) : NAN;
        if (*end1 || *end2 || end1 == f[ca] || end2 == f[cb]) {
            st = clred_fail(CLRED_ERR_INPUT, "%s: line %zu: expected numbers for the position", path, lineno);
            break;
        }
        t->n++;
    }
    fclose(fp);
    if (st == CLRED_OK && t->n == 0)
        st = clred_fail(CLRED_ERR_INPUT, "%s: no targets", path);
    if (st != CLRED_OK)
        clred_lc_targets_free(t);
    return st;
}

/* Forced PSF photometry of the targets: flux, error and flags into ph. On a
 * difference image the background is 0 (no sky fitted). */
static clred_status psf_forced(clred_ctx *ctx, const clred_dimage *img, const char *name, const double *x,
                               const double *y, size_t n, const clred_lightcurve_opts *o, clred_phot *ph)
{
    clred_psf measured = {0};
    const clred_psf *psf = o->psf;
    clred_status st = CLRED_OK;
    if (!psf) {
        clred_psf_opts po = clred_psf_defaults();
        st = clred_psf_model_measure_dev(ctx, img, &po, &measured);
        if (st != CLRED_OK)
            return clred_fail(st, "%s: measuring the PSF: %s", name, clred_last_error());
        psf = &measured;
    }
    clred_psf_phot *f = malloc(n * sizeof *f);
    if (!f)
        st = clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu targets", n);
    clred_psf_phot_opts fo = clred_psf_phot_defaults();
    fo.fit_position = 0;
    fo.fit_sky = !o->difference;
    fo.fit_radius = o->psf_fit_radius;
    fo.zeropoint = 0;
    fo.ignore_bits = o->phot.ignore_bits;
    fo.noise_rms = o->phot.noise_rms;
    if (st == CLRED_OK)
        st = clred_psf_photometry_dev(ctx, img, psf, x, y, n, &fo, f);
    for (size_t i = 0; st == CLRED_OK && i < n; i++) {
        memset(&ph[i], 0, sizeof ph[i]);
        ph[i].flux = f[i].flux;
        ph[i].flux_err = f[i].flux_err;
        ph[i].flags = f[i].flags;
    }
    free(f);
    clred_psf_free(&measured);
    return st;
}

/* The targets on one image: positions, photometry, time. */
static clred_status measure_image(clred_ctx *ctx, const clred_dimage *img, const char *name, size_t index,
                                  const clred_lc_targets *tg, const clred_lightcurve_opts *o, clred_lc_point *out)
{
    const clred_header *h = clred_dimage_header_const(img);
    double mjd;
    clred_status st = clred_header_mjd(h, &mjd);
    if (st != CLRED_OK)
        return clred_fail(st, "%s: %s", name, clred_last_error());
    size_t n = tg->n;
    double *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    clred_phot *ph = malloc(n * sizeof *ph);
    if (!x || !y || !ph)
        st = clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu targets", n);
    if (st == CLRED_OK && o->sky) {
        clred_wcs *w = NULL;
        st = clred_wcs_from_header(h, &w);
        if (st != CLRED_OK)
            st = clred_fail(st, "%s: sky targets need the image's WCS: %s", name, clred_last_error());
        else
            st = clred_wcs_sky2pix(w, n, tg->a, tg->b, x, y);
        clred_wcs_free(w);
    } else if (st == CLRED_OK) {
        memcpy(x, tg->a, n * sizeof *x);
        memcpy(y, tg->b, n * sizeof *y);
    }
    double zp = o->phot.zeropoint, v;
    if (clred_header_get_double(h, "MAGZP", &v))
        zp = v;
    clred_phot_opts po = o->phot;
    po.zeropoint = 0;
    if (o->difference && !o->difference_annulus)
        po.annulus_out = po.annulus_in = 0; /* a difference image's background is zero */
    /* Targets off the image (NaN from the WCS) are measured at a far corner
     * and flagged, so the point is still listed. */
    for (size_t i = 0; st == CLRED_OK && i < n; i++)
        if (!isfinite(x[i]) || !isfinite(y[i]))
            x[i] = y[i] = -1e6;
    if (st == CLRED_OK && (o->psf || o->psf_measure))
        st = psf_forced(ctx, img, name, x, y, n, o, ph);
    else if (st == CLRED_OK)
        st = clred_aperture_photometry_dev(ctx, img, x, y, n, &po, ph);
    for (size_t i = 0; st == CLRED_OK && i < n; i++) {
        clred_lc_point *p = &out[i];
        p->target = i;
        p->image = index;
        p->mjd = mjd;
        p->x = x[i] == -1e6 ? NAN : x[i];
        p->y = y[i] == -1e6 ? NAN : y[i];
        double add = o->difference && tg->ref_flux && isfinite(tg->ref_flux[i]) ? tg->ref_flux[i] : 0;
        p->flux = ph[i].flux + add;
        p->flux_err = ph[i].flux_err;
        p->flags = ph[i].flags;
        if (p->flux > 0) {
            p->mag = -2.5 * log10(p->flux) + zp;
            p->mag_err = 2.5 / log(10.0) * p->flux_err / p->flux;
        } else
            p->mag = p->mag_err = NAN;
    }
    free(x), free(y), free(ph);
    return st;
}

static clred_status check(const clred_lc_targets *t, const clred_lightcurve_opts *o, size_t nimages)
{
    if (!t || t->n == 0 || !t->a || !t->b)
        return clred_fail(CLRED_ERR_USAGE, "lightcurve: no targets");
    if (nimages == 0)
        return clred_fail(CLRED_ERR_USAGE, "lightcurve: no images");
    if (!(o->phot.radius > 0))
        return clred_fail(CLRED_ERR_USAGE, "lightcurve: the aperture radius must be > 0");
    if (o->psf_measure && o->difference && !o->psf)
        return clred_fail(CLRED_ERR_USAGE, "lightcurve: a PSF cannot be measured on difference images: give one");
    if (!(o->psf_fit_radius >= 0))
        return clred_fail(CLRED_ERR_USAGE, "lightcurve: the PSF fit radius must be >= 0");
    return CLRED_OK;
}

typedef clred_status (*image_fn)(clred_ctx *ctx, const void *src, size_t i, clred_dimage **d, char *name,
                                 size_t size);

static clred_status run(clred_ctx *ctx, const void *src, image_fn next, size_t nimages, const clred_lc_targets *t,
                        const clred_lightcurve_opts *opts, clred_lc_point **points, size_t *npoints)
{
    clred_lightcurve_opts defaults = clred_lightcurve_defaults();
    const clred_lightcurve_opts *o = opts ? opts : &defaults;
    *points = NULL;
    *npoints = 0;
    CLRED_TRY(check(t, o, nimages));
    clred_lc_point *p = calloc(nimages * t->n, sizeof *p);
    if (!p)
        return clred_fail(CLRED_ERR_MEMORY, "lightcurve: out of memory for %zu points", nimages * t->n);
    clred_status st = CLRED_OK;
    for (size_t i = 0; i < nimages && st == CLRED_OK; i++) {
        clred_dimage *d = NULL;
        char name[512];
        st = next(ctx, src, i, &d, name, sizeof name);
        if (st == CLRED_OK)
            st = measure_image(ctx, d, name, i, t, o, p + i * t->n);
        clred_dimage_free(d);
    }
    if (st != CLRED_OK) {
        free(p);
        return st;
    }
    *points = p;
    *npoints = nimages * t->n;
    return CLRED_OK;
}

static clred_status next_file(clred_ctx *ctx, const void *src, size_t i, clred_dimage **d, char *name, size_t size)
{
    const char *const *paths = src;
    snprintf(name, size, "%s", paths[i]);
    return clred_dimage_read(ctx, paths[i], 0, d);
}

static clred_status next_image(clred_ctx *ctx, const void *src, size_t i, clred_dimage **d, char *name, size_t size)
{
    const clred_image *images = src;
    snprintf(name, size, "image %zu", i);
    return clred_dimage_borrow(ctx, &images[i], d);
}

clred_status clred_lightcurve_files(clred_ctx *ctx, const char *const *paths, size_t npaths,
                                    const clred_lc_targets *targets, const clred_lightcurve_opts *opts,
                                    clred_lc_point **points, size_t *npoints)
{
    return run(ctx, paths, next_file, npaths, targets, opts, points, npoints);
}

clred_status clred_lightcurve_images(clred_ctx *ctx, const clred_image *images, size_t nimages,
                                     const clred_lc_targets *targets, const clred_lightcurve_opts *opts,
                                     clred_lc_point **points, size_t *npoints)
{
    return run(ctx, images, next_image, nimages, targets, opts, points, npoints);
}
