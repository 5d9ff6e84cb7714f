/* Astrometry: a TAN (+ SIP) WCS fitted to a reference catalog.
 *
 * The reference stars near the field are projected onto a pixel-like plane
 * through the starting WCS (the header's, or a TAN from a given centre and
 * pixel scale, whose orientation is unknown); the triangle matcher finds the
 * similarity between that plane and the detected stars from the brightest of
 * each list, which tolerates a starting WCS that is off by many pixels and
 * turned. Every detected star is then paired with the nearest projected
 * reference star, a plain TAN is fitted, the pairs are made again on the sky
 * through it, and the final TAN + SIP fit clips outliers (wcsfit.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "wcs_internal.h"
#include "wcsfit.h"

clred_astrometry_opts clred_astrometry_defaults(void)
{
    clred_astrometry_opts o;
    memset(&o, 0, sizeof o);
    o.sip_order = 3;
    o.clip_sigma = 3.0;
    o.max_iters = 5;
    o.ra = o.dec = o.pixel_scale = NAN;
    o.max_stars = 60;
    o.match_radius = 3.0;
    o.min_stars = 10;
    o.max_rms_px = 0.5;
    o.dopts = clred_detect_defaults();
    o.dopts.thresh = 3;
    return o;
}

typedef struct {
    size_t *idx;       /* reference stars on the frame (indices into the catalog) */
    clred_source *proj; /* their projected positions; flux from the magnitude */
    size_t n;
} projected;

/* The reference stars within radius_deg of (ra0, dec0), projected on the
 * start's plane: through the WCS, or gnomonic about (ra0, dec0) in pixels of
 * the given scale (east to -x, north to +y) around (cx, cy). */
static clred_status project_refs(const clred_refcat *ref, clred_wcs *w, double ra0, double dec0, double radius_deg,
                                 double scale_deg, double cx, double cy, projected *p)
{
    p->idx = malloc((ref->n ? ref->n : 1) * sizeof *p->idx);
    p->proj = calloc(ref->n ? ref->n : 1, sizeof *p->proj);
    p->n = 0;
    if (!p->idx || !p->proj)
        return clred_fail(CLRED_ERR_MEMORY, "astrometry: out of memory for %zu reference stars", ref->n);
    double c0[2] = {ra0, dec0};
    double cosr = cos(radius_deg * M_PI / 180);
    double sd0 = sin(dec0 * M_PI / 180), cd0 = cos(dec0 * M_PI / 180);
    for (size_t i = 0; i < ref->n; i++) {
        double d = ref->dec[i] * M_PI / 180, da = (ref->ra[i] - ra0) * M_PI / 180;
        if (sd0 * sin(d) + cd0 * cos(d) * cos(da) < cosr || !isfinite(ref->mag[i]))
            continue;
        clred_source *s = &p->proj[p->n];
        if (w) {
            if (clred_wcs_sky2pix(w, 1, &ref->ra[i], &ref->dec[i], &s->x, &s->y) != CLRED_OK) {
                clred_clear_error();
                continue;
            }
            if (!isfinite(s->x) || !isfinite(s->y))
                continue;
        } else {
            double xi, eta;
            clred_tan_project(c0, ref->ra[i], ref->dec[i], &xi, &eta);
            s->x = cx - xi / scale_deg;
            s->y = cy + eta / scale_deg;
        }
        s->flux = pow(10.0, -0.4 * ref->mag[i]);
        p->idx[p->n++] = i;
    }
    return CLRED_OK;
}

typedef struct {
    double *x, *y, *ra, *dec;
    size_t n;
} pairs;

static void pairs_free(pairs *p)
{
    free(p->x), free(p->y), free(p->ra), free(p->dec);
    memset(p, 0, sizeof *p);
}

static clred_status pairs_alloc(pairs *p, size_t n)
{
    memset(p, 0, sizeof *p);
    size_t m = n ? n : 1;
    p->x = malloc(m * sizeof(double)), p->y = malloc(m * sizeof(double));
    p->ra = malloc(m * sizeof(double)), p->dec = malloc(m * sizeof(double));
    if (!p->x || !p->y || !p->ra || !p->dec) {
        pairs_free(p);
        return clred_fail(CLRED_ERR_MEMORY, "astrometry: out of memory for %zu pairs", n);
    }
    return CLRED_OK;
}

/* Each detected star paired with its nearest reference star within radius,
 * in a plane where both have positions (qx, qy: the stars; rx, ry: the
 * references); a reference claimed by two stars keeps the closer, so pairs
 * are one to one. */
static clred_status pair_up(const double *qx, const double *qy, const clred_source *stars, size_t nstars,
                            const double *rx, const double *ry, const size_t *ridx, size_t nref, double radius,
                            const clred_refcat *ref, pairs *out)
{
    long *best = malloc((nstars ? nstars : 1) * sizeof *best);
    long *owner = malloc((nref ? nref : 1) * sizeof *owner);
    double *bestd = malloc((nstars ? nstars : 1) * sizeof *bestd);
    clred_status st = best && owner && bestd ? CLRED_OK : clred_fail(CLRED_ERR_MEMORY, "astrometry: out of memory");
    if (st == CLRED_OK)
        st = pairs_alloc(out, nstars);
    for (size_t j = 0; st == CLRED_OK && j < nref; j++)
        owner[j] = -1;
    for (size_t i = 0; st == CLRED_OK && i < nstars; i++) {
        best[i] = -1;
        bestd[i] = radius * radius;
        for (size_t j = 0; j < nref; j++) {
            double dx = rx[j] - qx[i], dy = ry[j] - qy[i], d2 = dx * dx + dy * dy;
            if (d2 < bestd[i]) {
                bestd[i] = d2;
                best[i] = (long)j;
            }
        }
        if (best[i] >= 0) {
            long o = owner[best[i]];
            if (o < 0 || bestd[o] > bestd[i]) {
                if (o >= 0)
                    best[o] = -1;
                owner[best[i]] = (long)i;
            } else
                best[i] = -1;
        }
    }
    for (size_t i = 0; st == CLRED_OK && i < nstars; i++)
        if (best[i] >= 0) {
            size_t k = ridx[best[i]];
            out->x[out->n] = stars[i].x;
            out->y[out->n] = stars[i].y;
            out->ra[out->n] = ref->ra[k];
            out->dec[out->n] = ref->dec[k];
            out->n++;
        }
    free(best);
    free(owner);
    free(bestd);
    return st;
}

static clred_status check_opts(const clred_astrometry_opts *o)
{
    if (o->sip_order < 0 || o->sip_order > CLRED_POLY_N - 2)
        return clred_fail(CLRED_ERR_USAGE, "astrometry: SIP order %d must be 0 (TAN) to %d", o->sip_order,
                          CLRED_POLY_N - 2);
    if (!(o->clip_sigma > 0) || o->max_iters < 0 || !(o->match_radius > 0) || o->max_stars < 3 ||
        !(o->max_rms_px > 0))
        return clred_fail(CLRED_ERR_USAGE, "astrometry: clip_sigma, match_radius and max_rms_px must be > 0, "
                                           "max_iters >= 0, max_stars >= 3");
    int centred = isfinite(o->ra) || isfinite(o->dec) || isfinite(o->pixel_scale);
    if (centred && !(isfinite(o->ra) && isfinite(o->dec) && fabs(o->dec) <= 90 && o->pixel_scale > 0))
        return clred_fail(CLRED_ERR_USAGE,
                          "astrometry: a starting centre needs RA, Dec (degrees, |Dec| <= 90) and a pixel scale > 0");
    return CLRED_OK;
}

/* The start: a WCS from the header, or a centre and scale (w = NULL). */
typedef struct {
    clred_wcs *w;
    double ra0, dec0;   /* sky at the image centre */
    double scale_deg;   /* pixel scale */
} start;

static clred_status make_start(const clred_header *h, const clred_astrometry_opts *o, double cx, double cy,
                               start *s)
{
    memset(s, 0, sizeof *s);
    if (isfinite(o->ra)) {
        s->ra0 = o->ra;
        s->dec0 = o->dec;
        s->scale_deg = o->pixel_scale / 3600.0;
        return CLRED_OK;
    }
    if (!clred_header_has_wcs(h))
        return clred_fail(CLRED_ERR_USAGE, "astrometry: the image has no celestial WCS to start from; give the "
                                           "field centre and the pixel scale");
    CLRED_TRY(clred_wcs_from_header(h, &s->w));
    s->scale_deg = clred_wcs_pixel_scale(s->w) / 3600.0;
    clred_status st = clred_wcs_pix2sky(s->w, 1, &cx, &cy, &s->ra0, &s->dec0);
    if (st == CLRED_OK && !(isfinite(s->ra0) && s->scale_deg > 0))
        st = clred_fail(CLRED_ERR_INPUT, "astrometry: the header's WCS gives no sky position for the image centre");
    if (st != CLRED_OK) {
        clred_wcs_free(s->w);
        s->w = NULL;
    }
    return st;
}

/* Pairs on the sky through the fitted s: detected stars within radius_px. */
static clred_status pair_on_sky(const clred_tan_sip *s, const clred_source *stars, size_t nstars,
                                const projected *p, const clred_refcat *ref, double radius_px, pairs *out)
{
    /* Both sides go to standard coordinates about the fit's tangent point,
     * in pixels of its scale, where the plane pairing applies. */
    double scale = sqrt(fabs(s->cd[0] * s->cd[3] - s->cd[1] * s->cd[2]));
    double *qx = malloc((nstars ? nstars : 1) * sizeof *qx), *qy = malloc((nstars ? nstars : 1) * sizeof *qy);
    double *rx = malloc((p->n ? p->n : 1) * sizeof *rx), *ry = malloc((p->n ? p->n : 1) * sizeof *ry);
    clred_status st = qx && qy && rx && ry ? CLRED_OK : clred_fail(CLRED_ERR_MEMORY, "astrometry: out of memory");
    for (size_t i = 0; st == CLRED_OK && i < nstars; i++) {
        double ra, dec;
        clred_tan_sip_pix2sky(s, stars[i].x, stars[i].y, &ra, &dec);
        clred_tan_project(s->crval, ra, dec, &qx[i], &qy[i]);
        qx[i] /= scale, qy[i] /= scale;
    }
    for (size_t j = 0; st == CLRED_OK && j < p->n; j++) {
        size_t k = p->idx[j];
        clred_tan_project(s->crval, ref->ra[k], ref->dec[k], &rx[j], &ry[j]);
        rx[j] /= scale, ry[j] /= scale;
    }
    if (st == CLRED_OK)
        st = pair_up(qx, qy, stars, nstars, rx, ry, p->idx, p->n, radius_px, ref, out);
    free(qx), free(qy), free(rx), free(ry);
    return st;
}

static clred_status fit_pairs(const pairs *pr, int order, const clred_astrometry_opts *o, clred_tan_sip *s,
                              clred_tan_sip_fit_info *info)
{
    unsigned char *use = malloc(pr->n ? pr->n : 1);
    if (!use)
        return clred_fail(CLRED_ERR_MEMORY, "astrometry: out of memory");
    clred_tan_sip_fit_opts fo = {order, o->clip_sigma, o->max_iters};
    clred_status st = clred_tan_sip_fit(pr->x, pr->y, pr->ra, pr->dec, pr->n, &fo, s, use, info);
    free(use);
    return st;
}

static clred_status solve(clred_ctx *ctx, const clred_dimage *img, const clred_refcat *ref,
                          const clred_astrometry_opts *o, clred_tan_sip *fit, clred_astrometry_result *res)
{
    size_t w = img->width, h = img->height;
    double cx = 0.5 * ((double)w - 1), cy = 0.5 * ((double)h - 1);
    start s0;
    CLRED_TRY(make_start(img->header, o, cx, cy, &s0));
    clred_source *stars = NULL;
    size_t nstars = 0;
    projected p = {0};
    pairs pr = {0};
    clred_status st = clred_detect_stars_dev(ctx, img, &o->dopts, &stars, &nstars);
    res->ndetected = nstars;
    /* Reference stars out to 1.2x the half-diagonal: the frame at any
     * rotation about a centre that may be somewhat off. */
    double radius = 0.6 * hypot((double)w, (double)h) * s0.scale_deg;
    if (st == CLRED_OK)
        st = project_refs(ref, s0.w, s0.ra0, s0.dec0, radius, s0.scale_deg, cx, cy, &p);
    res->nref = p.n;
    if (st == CLRED_OK && (nstars < 3 || p.n < 3))
        st = clred_fail(CLRED_ERR_INPUT,
                        "astrometry: %zu stars detected and %zu reference stars near (%.5f, %.5f): too few to match",
                        nstars, p.n, s0.ra0, s0.dec0);
    clred_match_result m;
    if (st == CLRED_OK) {
        clred_match_opts mo = clred_match_defaults();
        mo.max_stars = o->max_stars;
        mo.radius = o->match_radius;
        mo.allow_mirror = s0.w == NULL;
        mo.min_scale = 0.8;
        mo.max_scale = 1.25;
        st = clred_match_stars(p.proj, p.n, stars, nstars, &mo, &m);
        if (st != CLRED_OK) {
            char why[400];
            snprintf(why, sizeof why, "%s", clred_last_error());
            st = clred_fail(CLRED_ERR_INPUT,
                            "astrometry: the %zu detected stars do not match the %zu reference stars near (%.5f, "
                            "%.5f): check the catalog's field, the starting centre and the pixel scale (%s)",
                            nstars, p.n, s0.ra0, s0.dec0, why);
        }
    }
    double *qx = NULL, *qy = NULL, *rx = NULL, *ry = NULL;
    if (st == CLRED_OK) {
        qx = malloc(nstars * sizeof *qx), qy = malloc(nstars * sizeof *qy);
        rx = malloc(p.n * sizeof *rx), ry = malloc(p.n * sizeof *ry);
        if (!qx || !qy || !rx || !ry)
            st = clred_fail(CLRED_ERR_MEMORY, "astrometry: out of memory");
    }
    if (st == CLRED_OK) {
        const double *t = m.transform.m;
        for (size_t i = 0; i < nstars; i++) {
            qx[i] = t[0] * stars[i].x + t[1] * stars[i].y + t[2];
            qy[i] = t[3] * stars[i].x + t[4] * stars[i].y + t[5];
        }
        for (size_t j = 0; j < p.n; j++)
            rx[j] = p.proj[j].x, ry[j] = p.proj[j].y;
        st = pair_up(qx, qy, stars, nstars, rx, ry, p.idx, p.n, o->match_radius, ref, &pr);
    }
    free(qx), free(qy), free(rx), free(ry);
    clred_tan_sip_fit_info info = {0};
    memset(fit, 0, sizeof *fit);
    fit->crval[0] = s0.ra0;
    fit->crval[1] = s0.dec0;
    fit->crpix[0] = cx;
    fit->crpix[1] = cy;
    /* A plain TAN first, then the pairs again on the sky through it (stars
     * the similarity missed near the corners), then TAN + SIP. */
    if (st == CLRED_OK)
        st = fit_pairs(&pr, 1, o, fit, &info);
    for (int round = 0; round < 2 && st == CLRED_OK; round++) {
        pairs again;
        st = pair_on_sky(fit, stars, nstars, &p, ref, o->match_radius, &again);
        if (st == CLRED_OK) {
            pairs_free(&pr);
            pr = again;
            res->nmatched = pr.n;
            st = fit_pairs(&pr, o->sip_order, o, fit, &info);
        }
    }
    if (st == CLRED_OK) {
        res->nused = info.nused;
        res->rms_arcsec = info.rms_arcsec;
        res->rms_px = info.rms_px;
        res->sip_order = fit->order;
        double det = fit->cd[0] * fit->cd[3] - fit->cd[1] * fit->cd[2];
        res->pixel_scale = sqrt(fabs(det)) * 3600.0;
        res->mirrored = det > 0;
        res->rotation_deg = atan2(fit->cd[1], fit->cd[3]) * 180 / M_PI;
        if (info.nused < o->min_stars)
            st = clred_fail(CLRED_ERR_INPUT,
                            "astrometry: only %zu stars fit the reference catalog (at least %zu needed): the match is "
                            "not credible",
                            info.nused, o->min_stars);
        else if (!(info.rms_px <= o->max_rms_px))
            st = clred_fail(CLRED_ERR_INPUT,
                            "astrometry: the fit's RMS is %.3g px (%.3g arcsec) over %zu stars, above %.3g px: the match "
                            "is not credible",
                            info.rms_px, info.rms_arcsec, info.nused, o->max_rms_px);
    }
    if (st == CLRED_OK)
        st = clred_tan_sip_fit_inverse(fit, -0.5, -0.5, (double)w - 0.5, (double)h - 0.5);
    pairs_free(&pr);
    free(p.idx);
    free(p.proj);
    free(stars);
    clred_wcs_free(s0.w);
    return st;
}

clred_status clred_astrometry_dev(clred_ctx *ctx, clred_dimage *img, const clred_refcat *ref,
                                  const clred_astrometry_opts *opts, clred_astrometry_result *result)
{
    clred_astrometry_opts defaults = clred_astrometry_defaults();
    const clred_astrometry_opts *o = opts ? opts : &defaults;
    clred_astrometry_result res;
    memset(&res, 0, sizeof res);
    if (result)
        *result = res;
    if (!img || !ref || ref->n == 0)
        return clred_fail(CLRED_ERR_USAGE, "astrometry: an image and a reference catalog are needed");
    CLRED_TRY(check_opts(o));
    clred_tan_sip fit;
    clred_status st = solve(ctx, img, ref, o, &fit, &res);
    if (result)
        *result = res;
    if (st != CLRED_OK)
        return st;
    /* Written into a copy, so that a failure leaves the header as it was. */
    clred_header *h = clred_header_copy(img->header);
    if (!h)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory copying a header");
    char text[200];
    snprintf(text, sizeof text,
             "clred astrometry: TAN%s order %d, %zu of %zu stars, RMS %.4f arcsec (%.4f px), scale %.5f arcsec/px",
             fit.order ? "-SIP" : "", fit.order, res.nused, res.ndetected, res.rms_arcsec, res.rms_px,
             res.pixel_scale);
    st = clred_tan_sip_write(&fit, h);
    if (st == CLRED_OK)
        st = clred_header_set_double(h, "ASTRRMS", res.rms_arcsec, "[arcsec] RMS of the astrometric fit");
    if (st == CLRED_OK)
        st = clred_header_set_double(h, "ASTRNSTR", (double)res.nused, "stars in the astrometric fit");
    if (st == CLRED_OK)
        st = clred_header_add_history(h, text);
    if (st != CLRED_OK) {
        clred_header_free(h);
        return st;
    }
    clred_header_free(img->header);
    img->header = h;
    return CLRED_OK;
}

clred_status clred_astrometry(clred_ctx *ctx, clred_image *img, const clred_refcat *ref,
                              const clred_astrometry_opts *opts, clred_astrometry_result *result)
{
    if (!img || !img->sci)
        return clred_fail(CLRED_ERR_USAGE, "astrometry: no image");
    clred_dimage *d;
    CLRED_TRY(clred_dimage_borrow(ctx, img, &d));
    clred_status st = clred_astrometry_dev(ctx, d, ref, opts, result);
    if (st == CLRED_OK)
        st = clred_image_header_from(img, d);
    clred_dimage_free(d);
    return st;
}
