/* Photometric scaling of a stack's frames from the fluxes of stars they share
 * with the reference frame (combine's CLRED_SCALE_STARS).
 *
 * A frame median mixes the sky with the sources: when transparency and sky
 * brightness change independently (moonlight, twilight, cirrus) a median
 * ratio scales the stars wrongly. Stars measured with a local background
 * annulus see only the transparency. The reference's clean stars are
 * measured once in an aperture of twice the seeing FWHM (so that frames of a
 * different seeing lose the same tiny fraction of the light); each frame's
 * stars are detected, paired with the reference's within the seeing (the
 * frames are aligned), measured with the same aperture and annulus, and the
 * frame's factor is the sigma-clipped median of ref_flux / frame_flux. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define REF_MAX_STARS 1000  /* the brightest reference stars used */
#define REF_MIN_SNR 10.0    /* reference stars measured below this S/N are not used */
#define FRAME_MIN_SNR 5.0   /* the same on a frame */
#define CLIP_SIGMA 3.0
#define CLIP_ITERS 10

struct clred_star_ref {
    size_t n;
    double *x, *y, *flux;
    double fwhm, match_radius;
    clred_phot_opts phot;
};

void clred_star_ref_free(clred_star_ref *r)
{
    if (!r)
        return;
    free(r->x);
    free(r->y);
    free(r->flux);
    free(r);
}

static int by_flux_desc(const void *a, const void *b)
{
    double fa = ((const clred_source *)a)->flux, fb = ((const clred_source *)b)->flux;
    return (fa < fb) - (fa > fb);
}

/* Aperture and annulus from the seeing: r = 2 FWHM holds all but ~1e-4 of a
 * Gaussian's light, so a seeing change between frames hardly moves the ratio. */
static clred_phot_opts phot_for_seeing(double fwhm)
{
    clred_phot_opts p = clred_phot_defaults();
    p.radius = fmin(fmax(2.0 * fwhm, 3.0), 30.0);
    p.annulus_in = p.radius + fmax(fwhm, 2.0);
    p.annulus_out = p.annulus_in + fmax(2.0 * fwhm, 5.0);
    return p;
}

static clred_status measure(clred_ctx *ctx, const clred_dimage *img, const double *x, const double *y, size_t n,
                            const clred_phot_opts *p, clred_phot **out)
{
    *out = calloc(n ? n : 1, sizeof **out);
    if (!*out)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory measuring %zu stars", n);
    if (n == 0)
        return CLRED_OK;
    return clred_aperture_photometry_dev(ctx, img, x, y, n, p, *out);
}

clred_status clred_star_ref_measure(clred_ctx *ctx, const clred_dimage *ref, const char *name, clred_star_ref **out)
{
    *out = NULL;
    clred_source *stars = NULL;
    size_t n = 0;
    CLRED_TRY(clred_detect_stars_dev(ctx, ref, NULL, &stars, &n));
    double fwhm = NAN;
    size_t nseeing = 0;
    clred_sources_seeing(stars, n, &fwhm, &nseeing);
    if (!(fwhm > 0.5))
        fwhm = 3.0; /* too few clean stars to measure it: the detection filter's width */
    qsort(stars, n, sizeof *stars, by_flux_desc);
    if (n > REF_MAX_STARS)
        n = REF_MAX_STARS;
    clred_star_ref *r = calloc(1, sizeof *r);
    double *x = malloc((n ? n : 1) * sizeof *x), *y = malloc((n ? n : 1) * sizeof *y);
    clred_phot *ph = NULL;
    clred_status st = CLRED_OK;
    if (!r || !x || !y)
        st = clred_fail(CLRED_ERR_MEMORY, "out of memory measuring the stars of %s", name);
    if (st == CLRED_OK) {
        for (size_t i = 0; i < n; i++) {
            x[i] = stars[i].x;
            y[i] = stars[i].y;
        }
        r->fwhm = fwhm;
        r->match_radius = fmax(2.0, fwhm);
        r->phot = phot_for_seeing(fwhm);
        st = measure(ctx, ref, x, y, n, &r->phot, &ph);
    }
    if (st == CLRED_OK) {
        r->x = x;
        r->y = y;
        r->flux = malloc((n ? n : 1) * sizeof *r->flux);
        x = y = NULL;
        if (!r->flux)
            st = clred_fail(CLRED_ERR_MEMORY, "out of memory measuring the stars of %s", name);
    }
    if (st == CLRED_OK) {
        for (size_t i = 0; i < n; i++)
            if (ph[i].flags == 0 && ph[i].flux > 0 && ph[i].flux >= REF_MIN_SNR * ph[i].flux_err) {
                r->x[r->n] = r->x[i];
                r->y[r->n] = r->y[i];
                r->flux[r->n++] = ph[i].flux;
            }
        if (r->n < CLRED_STAR_SCALE_MIN)
            st = clred_fail(CLRED_ERR_INPUT,
                            "%s: %zu stars measured at S/N >= %g for star flux scaling (need %d); scale by the "
                            "frames' medians instead",
                            name, r->n, REF_MIN_SNR, CLRED_STAR_SCALE_MIN);
    }
    free(stars);
    free(x);
    free(y);
    free(ph);
    if (st != CLRED_OK)
        clred_star_ref_free(r);
    else
        *out = r;
    return st;
}

/* The frame's star nearest to (x, y) within radius; -1 if none. */
static long nearest(const clred_source *list, size_t n, double x, double y, double radius)
{
    long best = -1;
    double bd = radius * radius;
    for (size_t i = 0; i < n; i++) {
        double dx = list[i].x - x, dy = list[i].y - y, d = dx * dx + dy * dy;
        if (d <= bd) {
            bd = d;
            best = (long)i;
        }
    }
    return best;
}

/* Median of v[0..n) after sigma clipping about it (1.4826 MAD); n > 0. *kept
 * receives the survivors' count, *err the error of their median. v is reordered. */
static clred_status clipped_median(float *v, size_t n, double *median, size_t *kept, double *err)
{
    float *tmp = malloc(n * sizeof *tmp);
    if (!tmp)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu flux ratios", n);
    double med = 0.0, s = 0.0;
    for (int it = 0; it < CLIP_ITERS; it++) {
        memcpy(tmp, v, n * sizeof *tmp);
        med = clred_median_inplace(tmp, n);
        for (size_t i = 0; i < n; i++)
            tmp[i] = fabsf(v[i] - (float)med);
        s = 1.4826 * clred_median_inplace(tmp, n);
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (fabs(v[i] - med) <= CLIP_SIGMA * s)
                v[m++] = v[i];
        if (m == n || m < CLRED_STAR_SCALE_MIN)
            break;
        n = m;
    }
    free(tmp);
    *median = med;
    *kept = n;
    *err = n > 1 ? 1.2533 * s / sqrt((double)n) : NAN;
    return CLRED_OK;
}

clred_status clred_star_scale(clred_ctx *ctx, const clred_star_ref *ref, const clred_dimage *frame, const char *name,
                              double *scale, double *scale_err, size_t *nused)
{
    clred_source *stars = NULL;
    size_t n = 0, npair = 0;
    CLRED_TRY(clred_detect_stars_dev(ctx, frame, NULL, &stars, &n));
    double *x = malloc(ref->n * sizeof *x), *y = malloc(ref->n * sizeof *y);
    size_t *which = malloc(ref->n * sizeof *which);
    float *ratio = malloc(ref->n * sizeof *ratio);
    clred_phot *ph = NULL;
    clred_status st = CLRED_OK;
    if (!x || !y || !which || !ratio)
        st = clred_fail(CLRED_ERR_MEMORY, "out of memory matching the stars of %s", name);
    for (size_t i = 0; st == CLRED_OK && i < ref->n; i++) {
        long k = nearest(stars, n, ref->x[i], ref->y[i], ref->match_radius);
        if (k >= 0) {
            x[npair] = stars[k].x;
            y[npair] = stars[k].y;
            which[npair++] = i;
        }
    }
    if (st == CLRED_OK)
        st = measure(ctx, frame, x, y, npair, &ref->phot, &ph);
    size_t nr = 0;
    for (size_t j = 0; st == CLRED_OK && j < npair; j++)
        if (ph[j].flags == 0 && ph[j].flux > 0 && ph[j].flux >= FRAME_MIN_SNR * ph[j].flux_err)
            ratio[nr++] = (float)(ref->flux[which[j]] / ph[j].flux);
    if (st == CLRED_OK && nr < CLRED_STAR_SCALE_MIN)
        st = clred_fail(CLRED_ERR_INPUT,
                        "%s: %zu of the reference frame's %zu stars found and measured (need %d) for star flux "
                        "scaling; scale by the frames' medians instead",
                        name, nr, ref->n, CLRED_STAR_SCALE_MIN);
    if (st == CLRED_OK)
        st = clipped_median(ratio, nr, scale, nused, scale_err);
    free(stars);
    free(x);
    free(y);
    free(which);
    free(ratio);
    free(ph);
    return st;
}
