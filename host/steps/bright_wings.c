/* Candidates in the wings of saturated stars: flagged CLRED_CAND_BRIGHT,
 * never dropped (a broker decides, as ZTF's alerts carry the nearest bright
 * Gaia star's distance and magnitude, neargaiabright / maggaiabright, for
 * its filters). Around a bright star a PSF-matched difference leaves a
 * ring that scales with the star's flux F and a PSF's wing: ZOGY fills the
 * unusable core with 0 before its FFTs, so the core's flux (millions of e-,
 * not the same share in both images) comes back as that flux times the
 * other image's PSF at each distance, with whole PSFs as with cut ones; AL's
 * kernel, cut at its half-width and fitted on noisy wings, leaves a share
 * of the star's wing just past its grown mask. Either is at most about
 * F P(r) at r, so the flag marks where that light, fitted as a point source
 * under the candidate, reaches the candidate's own flux error. Each star's flux is
 * fitted to its unsaturated pixels with the PSF model, whose wing beyond
 * its stamp is continued as the power law of its outer annuli (a Moffat's
 * or a seeing halo's; a Gaussian's real wing falls faster, so that errs
 * toward flagging). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* The PSF's radial profile: azimuthal means of the stamp in 1-px annuli, and
 * the power law r^-slope that continues it beyond the stamp. */
typedef struct {
    double *mean;   /* nbins annuli, mean[k] over r in [k - 0.5, k + 0.5) */
    size_t nbins;   /* the stamp's half size + 1: whole annuli only */
    double slope;   /* 0: no extrapolation (the outer annuli do not fall) */
    double neff;    /* 1 / sum P^2: the PSF's noise-equivalent area, px */
} wing_profile;

static double wing_at(const wing_profile *w, double r)
{
    double k = floor(r + 0.5);
    if (k < (double)w->nbins)
        return w->mean[(size_t)k];
    double edge = (double)(w->nbins - 1);
    return w->slope > 0 ? w->mean[w->nbins - 1] * pow(r / edge, -w->slope) : 0.0;
}

/* Least squares of log(mean) on log(r) over the annuli from 2 FWHM to the
 * stamp's edge (the wing, past the core's curvature). */
static double tail_slope(const double *mean, size_t nbins, double fwhm)
{
    double sx = 0, sy = 0, sxx = 0, sxy = 0, n = 0;
    for (size_t k = (size_t)ceil(fmax(2.0 * fwhm, 2.0)); k < nbins; k++)
        if (mean[k] > 0) {
            double x = log((double)k), y = log(mean[k]);
            sx += x, sy += y, sxx += x * x, sxy += x * y, n++;
        }
    double den = n * sxx - sx * sx;
    if (n < 3 || !(den > 0))
        return 0.0;
    double slope = -(n * sxy - sx * sy) / den;
    return slope > 0 ? slope : 0.0;
}

static clred_status profile_of(const clred_psf *psf, wing_profile *w)
{
    size_t n = psf->size, half = n / 2;
    w->nbins = half + 1;
    w->mean = calloc(w->nbins, sizeof *w->mean);
    size_t *cnt = calloc(w->nbins, sizeof *cnt);
    if (!w->mean || !cnt) {
        free(cnt);
        free(w->mean);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for a PSF profile of %zu annuli", w->nbins);
    }
    double c = 0.5 * (double)(n - 1), p2 = 0;
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < n; i++) {
            double v = psf->data[j * n + i], k = floor(hypot((double)i - c, (double)j - c) + 0.5);
            p2 += v * v;
            if (k < (double)w->nbins) {
                w->mean[(size_t)k] += v;
                cnt[(size_t)k]++;
            }
        }
    for (size_t k = 0; k < w->nbins; k++)
        w->mean[k] = cnt[k] ? w->mean[k] / (double)cnt[k] : 0.0;
    free(cnt);
    w->slope = tail_slope(w->mean, w->nbins, psf->fwhm);
    w->neff = p2 > 0 ? 1.0 / p2 : 0.0;
    return CLRED_OK;
}

typedef struct {
    double x, y, r;   /* the saturated area's centroid and equivalent radius */
    double flux;      /* fitted; 0 where the fit failed */
} bright_star;

/* The saturated areas of img (4-connected), by a flood fill on a stack. */
static clred_status saturated_areas(const clred_image *img, bright_star **out, size_t *nout)
{
    size_t w = img->width, h = img->height, cap = 16, ns = 0;
    unsigned char *seen = calloc(w * h, 1);
    size_t *stack = malloc(w * h * sizeof *stack);
    bright_star *s = malloc(cap * sizeof *s);
    if (!seen || !stack || !s) {
        free(seen), free(stack), free(s);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for a %zux%zu saturation map", w, h);
    }
    for (size_t q0 = 0; q0 < w * h; q0++) {
        if (seen[q0] || !(img->mask[q0] & CLRED_MASK_SATURATED))
            continue;
        double sx = 0, sy = 0, np = 0;
        size_t top = 0;
        stack[top++] = q0;
        seen[q0] = 1;
        while (top) {
            size_t q = stack[--top], x = q % w, y = q / w;
            sx += (double)x, sy += (double)y, np++;
            size_t nb[4] = {x > 0 ? q - 1 : q, x + 1 < w ? q + 1 : q, y > 0 ? q - w : q, y + 1 < h ? q + w : q};
            for (int k = 0; k < 4; k++)
                if (!seen[nb[k]] && (img->mask[nb[k]] & CLRED_MASK_SATURATED)) {
                    seen[nb[k]] = 1;
                    stack[top++] = nb[k];
                }
        }
        if (ns == cap) {
            bright_star *t = realloc(s, 2 * cap * sizeof *s);
            if (!t) {
                free(seen), free(stack), free(s);
                return clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu saturated areas", 2 * cap);
            }
            s = t, cap *= 2;
        }
        s[ns++] = (bright_star){sx / np, sy / np, sqrt(np / 3.14159265358979), 0.0};
    }
    free(seen);
    free(stack);
    *out = s;
    *nout = ns;
    return CLRED_OK;
}

typedef struct {
    double f, w;
} weighted;

static int by_f(const void *a, const void *b)
{
    double u = ((const weighted *)a)->f, v = ((const weighted *)b)->f;
    return u < v ? -1 : u > v;
}

/* The weighted median of v[0..n) (sorted in place). */
static double weighted_median(weighted *v, size_t n)
{
    double tot = 0, acc = 0;
    qsort(v, n, sizeof *v, by_f);
    for (size_t i = 0; i < n; i++)
        tot += v[i].w;
    for (size_t i = 0; i < n; i++)
        if ((acc += v[i].w) >= 0.5 * tot)
            return v[i].f;
    return NAN;
}

/* The usable pixels of img within [r0, r1] of the star: each one's
 * (value - flux P(r)) (weight 1, for the sky: flux 0 on the first pass) or
 * (value - sky) / P(r) (weight P^2 / var: the inverse variance of that flux
 * estimate). */
static size_t ring_values(const clred_image *img, const wing_profile *w, const bright_star *s, double r0, double r1,
                          double sky, double flux, int for_flux, weighted *out)
{
    size_t n = 0;
    long x0 = (long)floor(s->x - r1), x1 = (long)ceil(s->x + r1), y0 = (long)floor(s->y - r1),
         y1 = (long)ceil(s->y + r1);
    for (long j = y0 > 0 ? y0 : 0; j <= y1 && j < (long)img->height; j++)
        for (long i = x0 > 0 ? x0 : 0; i <= x1 && i < (long)img->width; i++) {
            size_t q = (size_t)j * img->width + (size_t)i;
            double r = hypot((double)i - s->x, (double)j - s->y), v = img->sci[q];
            double var = img->var ? img->var[q] : 1.0, p = wing_at(w, r);
            if (r < r0 || r > r1 || !isfinite(v) || !(var > 0) || !(p > 0) ||
                (img->mask && (img->mask[q] & CLRED_MASK_UNUSABLE)))
                continue;
            out[n++] = for_flux ? (weighted){(v - sky) / p, p * p / var} : (weighted){v - flux * p, 1.0};
        }
    return n;
}

/* The star's flux: the weighted median of the flux each unsaturated pixel
 * from one FWHM outside the saturated area to the stamp's edge implies
 * (robust to a neighbour, a galaxy or a transient over part of the ring),
 * over the local sky, the median of the ring two FWHM wide beyond the stamp
 * less the star's wing there (refined once with the flux). */
static clred_status fit_flux(const clred_image *img, const wing_profile *w, double fwhm, bright_star *s)
{
    double edge = (double)(w->nbins - 1), r1 = edge + 2.0 * fwhm;
    size_t cap = (size_t)(4.0 * (r1 + 1) * (r1 + 1));
    weighted *v = malloc(cap * sizeof *v);
    if (!v)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for a saturated star's %zu pixels", cap);
    double sky = 0, flux = 0;
    for (int pass = 0; pass < 2; pass++) {
        size_t n = ring_values(img, w, s, edge, r1, 0.0, flux, 0, v);
        sky = n ? weighted_median(v, n) : 0.0;
        n = ring_values(img, w, s, s->r + fwhm, edge, sky, 0.0, 1, v);
        flux = n ? weighted_median(v, n) : 0.0;
    }
    s->flux = isfinite(flux) && flux > 0 ? flux : 0.0;
    free(v);
    return CLRED_OK;
}

clred_status clred_candidates_bright(const clred_image *img, const clred_psf *psf, clred_candidate *list, size_t n)
{
    if (!img || !img->sci || !psf || !psf->data || !psf->size || (n && !list))
        return clred_fail(CLRED_ERR_USAGE, "bright-star flags: no image, PSF or candidate list given");
    if (!img->mask || !n)
        return CLRED_OK; /* no saturation known, or nothing to flag */
    bright_star *s = NULL;
    size_t ns = 0;
    CLRED_TRY(saturated_areas(img, &s, &ns));
    if (!ns) {
        free(s);
        return CLRED_OK;
    }
    wing_profile w = {0};
    clred_status st = profile_of(psf, &w);
    if (st != CLRED_OK) {
        free(s);
        return st;
    }
    double fwhm = psf->fwhm > 0 ? psf->fwhm : 2.0;
    for (size_t k = 0; k < ns && st == CLRED_OK; k++)
        st = fit_flux(img, &w, fwhm, &s[k]);
    for (size_t i = 0; i < n && st == CLRED_OK; i++) {
        double wing = 0;
        for (size_t k = 0; k < ns; k++)
            wing += s[k].flux * wing_at(&w, hypot(list[i].x - s[k].x, list[i].y - s[k].y));
        /* a level `wing` per px fitted as a point source: wing * N_eff */
        if (isfinite(list[i].flux_err) && wing * w.neff >= list[i].flux_err)
            list[i].flags |= CLRED_CAND_BRIGHT;
    }
    free(w.mean);
    free(s);
    return st;
}
