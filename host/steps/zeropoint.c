/* Photometric zero point: detected stars measured in apertures on the
 * device, paired with a reference catalog through the image's WCS, and a
 * clipped fit of mag_cat - mag_inst = ZP (+ c * colour) on the host. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "blanksky.h"

clred_zeropoint_opts clred_zeropoint_defaults(void)
{
    clred_zeropoint_opts o;
    memset(&o, 0, sizeof o);
    o.phot = clred_phot_defaults();
    o.match_radius_arcsec = 1.0;
    o.clip_sigma = 3.0;
    o.max_iters = 5;
    o.mag_min = o.mag_max = NAN;
    o.min_snr = 10;
    o.min_stars = 5;
    o.dopts = clred_detect_defaults();
    o.dopts.thresh = 3;
    return o;
}

/* The catalog star nearest to (ra, dec) within radius (arcsec), or -1:
 * a linear scan (catalogs of a field are thousands of stars). */
static long nearest_star(const clred_refcat *ref, double ra, double dec, double radius)
{
    double c = cos(dec * M_PI / 180), best = radius * radius;
    long k = -1;
    for (size_t i = 0; i < ref->n; i++) {
        double dd = (ref->dec[i] - dec) * 3600;
        if (fabs(dd) > radius)
            continue;
        double dr = remainder(ref->ra[i] - ra, 360.0) * c * 3600, d2 = dr * dr + dd * dd;
        if (d2 < best)
            best = d2, k = (long)i;
    }
    return k;
}

/* Least squares of y = a (+ b x) over the used points; 0 when singular. */
static int line_fit(const double *y, const double *x, const unsigned char *use, size_t n, int with_slope, double *a,
                    double *b, double *cov_aa, double *cov_bb)
{
    double s0 = 0, sx = 0, sxx = 0, sy = 0, sxy = 0;
    for (size_t i = 0; i < n; i++)
        if (use[i]) {
            double xi = with_slope ? x[i] : 0;
            s0 += 1, sx += xi, sxx += xi * xi, sy += y[i], sxy += xi * y[i];
        }
    if (s0 < 1)
        return 0;
    if (!with_slope) {
        *a = sy / s0, *b = 0, *cov_aa = 1 / s0, *cov_bb = 0;
        return 1;
    }
    double det = s0 * sxx - sx * sx;
    if (!(fabs(det) > 1e-12 * s0 * s0))
        return 0;
    *a = (sxx * sy - sx * sxy) / det;
    *b = (s0 * sxy - sx * sy) / det;
    *cov_aa = sxx / det;
    *cov_bb = s0 / det;
    return 1;
}

/* Clipped fit; the errors are the fit's covariance scaled by the scatter. */
static clred_status fit_zeropoint(const double *dm, const double *colour, unsigned char *use, size_t n,
                                  const clred_zeropoint_opts *o, clred_zeropoint_result *r)
{
    for (int iter = 0;; iter++) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            m += use[i];
        size_t params = o->colour_term ? 2 : 1;
        if (m < o->min_stars || m <= params)
            return clred_fail(CLRED_ERR_INPUT,
                              "zeropoint: %zu stars with catalog magnitudes%s left after clipping (%zu needed)", m,
                              o->colour_term ? " and colours" : "", o->min_stars > params + 1 ? o->min_stars : params + 1);
        double a, b, caa, cbb;
        if (!line_fit(dm, colour, use, n, o->colour_term, &a, &b, &caa, &cbb))
            return clred_fail(CLRED_ERR_INPUT, "zeropoint: the colour term cannot be fitted (the stars' colours do "
                                               "not spread)");
        double ss = 0;
        for (size_t i = 0; i < n; i++)
            if (use[i]) {
                double e = dm[i] - a - (o->colour_term ? b * colour[i] : 0);
                ss += e * e;
            }
        double var = ss / (double)(m - params);
        r->zp = a, r->colour = b, r->rms = sqrt(var), r->nused = m;
        r->zp_err = sqrt(caa * var);
        r->colour_err = o->colour_term ? sqrt(cbb * var) : 0;
        if (iter >= o->max_iters)
            break;
        int changed = 0;
        for (size_t i = 0; i < n; i++) {
            double e = fabs(dm[i] - a - (o->colour_term ? b * colour[i] : 0));
            unsigned char keep = e <= o->clip_sigma * r->rms;
            /* stars may come back once the fit has moved */
            if (keep != use[i] && isfinite(dm[i]) && (!o->colour_term || isfinite(colour[i]))) {
                use[i] = keep;
                changed = 1;
            }
        }
        if (!changed)
            break;
    }
    return CLRED_OK;
}

/* The per-pixel sky noise: the median of the clipped spreads of discs on a
 * grid whose centres keep clear of the detected stars. Local, so a gradient
 * across the frame does not inflate it; the median and the clipping keep
 * faint neighbours and wings out. NaN when the frame has no blank sky. */
clred_status clred_blank_sky_rms(clred_ctx *ctx, const clred_dimage *img, const clred_source *stars, size_t n,
                                  const clred_phot_opts *po, double *rms)
{
    *rms = NAN;
    double rout = po->annulus_out > po->annulus_in ? po->annulus_out : 2 * po->radius;
    double step = rout, clear = rout + 2;
    size_t cap = 400, m = 0;
    double *x = malloc(cap * sizeof *x), *y = malloc(cap * sizeof *y);
    clred_phot *ph = malloc(cap * sizeof *ph);
    clred_status st = x && y && ph ? CLRED_OK : clred_fail(CLRED_ERR_MEMORY, "zeropoint: out of memory");
    for (double gy = rout; st == CLRED_OK && gy < (double)img->height - rout && m < cap; gy += step)
        for (double gx = rout; gx < (double)img->width - rout && m < cap; gx += step) {
            int free_sky = 1;
            for (size_t i = 0; i < n && free_sky; i++)
                free_sky = hypot(stars[i].x - gx, stars[i].y - gy) > clear + 2 * stars[i].a;
            if (free_sky)
                x[m] = gx, y[m] = gy, m++;
        }
    clred_phot_opts o = *po;
    o.annulus_in = 0;
    o.annulus_out = rout;
    if (st == CLRED_OK && m)
        st = clred_aperture_background_dev(ctx, img, x, y, m, &o, ph);
    float *v = st == CLRED_OK ? malloc((m ? m : 1) * sizeof *v) : NULL;
    size_t k = 0;
    for (size_t i = 0; v && i < m; i++)
        if (ph[i].nannulus > 0 && isfinite(ph[i].bkg_rms))
            v[k++] = (float)ph[i].bkg_rms;
    if (k)
        *rms = clred_median_inplace(v, k);
    free(v), free(x), free(y), free(ph);
    return st;
}

/* PSF fluxes of the stars in place of the aperture fluxes (position, sky
 * and neighbours fitted); a star the fit flags is left out as the
 * aperture's flags leave it out. */
static clred_status psf_magnitudes(clred_ctx *ctx, const clred_dimage *img, const clred_psf *psf, const double *x,
                                   const double *y, size_t n, clred_phot *ph)
{
    clred_psf_phot *f = malloc(n * sizeof *f);
    if (!f)
        return clred_fail(CLRED_ERR_MEMORY, "zeropoint: out of memory for %zu stars", n);
    clred_psf_phot_opts fo = clred_psf_phot_defaults();
    fo.zeropoint = 0;
    clred_status st = clred_psf_photometry_dev(ctx, img, psf, x, y, n, &fo, f);
    for (size_t i = 0; st == CLRED_OK && i < n; i++) {
        ph[i].flux = f[i].flux;
        ph[i].flux_err = f[i].flux_err;
        ph[i].flags |= f[i].flags & ~CLRED_SRC_BLENDED; /* neighbours are fitted */
    }
    free(f);
    return st;
}

static clred_status measure(clred_ctx *ctx, const clred_dimage *img, const clred_refcat *ref,
                            const clred_zeropoint_opts *o, clred_zeropoint_result *r)
{
    clred_wcs *w = NULL;
    if (!clred_header_has_wcs(img->header))
        return clred_fail(CLRED_ERR_INPUT, "zeropoint: the image has no celestial WCS to pair its stars with the "
                                           "catalog (run clred astrometry first)");
    CLRED_TRY(clred_wcs_from_header(img->header, &w));
    clred_source *stars = NULL;
    size_t n = 0;
    clred_status st = clred_detect_stars_dev(ctx, img, &o->dopts, &stars, &n);
    double *x = NULL, *y = NULL, *ra = NULL, *dec = NULL, *dm = NULL, *col = NULL;
    clred_phot *ph = NULL;
    unsigned char *use = NULL;
    if (st == CLRED_OK) {
        size_t m = n ? n : 1;
        x = malloc(m * sizeof *x), y = malloc(m * sizeof *y), ra = malloc(m * sizeof *ra);
        dec = malloc(m * sizeof *dec), dm = malloc(m * sizeof *dm), col = malloc(m * sizeof *col);
        ph = malloc(m * sizeof *ph), use = malloc(m);
        if (!x || !y || !ra || !dec || !dm || !col || !ph || !use)
            st = clred_fail(CLRED_ERR_MEMORY, "zeropoint: out of memory for %zu stars", n);
    }
    if (st == CLRED_OK) {
        clred_sources_seeing(stars, n, &r->fwhm, &(size_t){0});
        for (size_t i = 0; i < n; i++)
            x[i] = stars[i].x, y[i] = stars[i].y;
        clred_phot_opts po = o->phot;
        po.zeropoint = 0;
        st = n ? clred_aperture_photometry_dev(ctx, img, x, y, n, &po, ph) : CLRED_OK;
    }
    clred_psf measured = {0};
    const clred_psf *psf = o->psf;
    if (st == CLRED_OK && !psf && o->psf_measure) {
        clred_psf_opts pso = clred_psf_defaults();
        st = clred_psf_model_measure_dev(ctx, img, &pso, &measured);
        if (st != CLRED_OK)
            st = clred_fail(st, "zeropoint: measuring the PSF: %s", clred_last_error());
        psf = &measured;
    }
    if (st == CLRED_OK && psf && n)
        st = psf_magnitudes(ctx, img, psf, x, y, n, ph);
    if (st == CLRED_OK)
        st = clred_wcs_pix2sky(w, n, x, y, ra, dec);
    if (st == CLRED_OK)
        st = clred_blank_sky_rms(ctx, img, stars, n, &o->phot, &r->sky_rms);
    for (size_t i = 0; st == CLRED_OK && i < n; i++) {
        dm[i] = col[i] = NAN;
        use[i] = 0;
        const clred_phot *p = &ph[i];
        if (p->flags || !(p->flux > 0) || !(p->flux >= o->min_snr * p->flux_err) || !isfinite(ra[i]))
            continue;
        long k = nearest_star(ref, ra[i], dec[i], o->match_radius_arcsec);
        if (k < 0 || !isfinite(ref->mag[k]))
            continue;
        if ((isfinite(o->mag_min) && ref->mag[k] < o->mag_min) || (isfinite(o->mag_max) && ref->mag[k] > o->mag_max))
            continue;
        col[i] = ref->colour ? ref->colour[k] : NAN;
        if (o->colour_term && !isfinite(col[i]))
            continue;
        dm[i] = ref->mag[k] + 2.5 * log10(p->flux);
        use[i] = 1;
        r->nmatched++;
    }
    if (st == CLRED_OK)
        st = fit_zeropoint(dm, col, use, n, o, r);
    if (st == CLRED_OK && psf) {
        /* a PSF fit's flux error in sky noise s is s / sqrt(sum P^2) */
        double p2 = 0;
        for (size_t i = 0; i < psf->size * psf->size; i++)
            p2 += (double)psf->data[i] * psf->data[i];
        r->limit_mag = r->sky_rms > 0 && p2 > 0 ? r->zp - 2.5 * log10(5.0 * r->sky_rms / sqrt(p2)) : NAN;
        r->psf = 1;
    } else if (st == CLRED_OK) {
        double area = M_PI * o->phot.radius * o->phot.radius;
        r->limit_mag = r->sky_rms > 0 ? r->zp - 2.5 * log10(5.0 * r->sky_rms * sqrt(area)) : NAN;
    }
    clred_psf_free(&measured);
    free(x), free(y), free(ra), free(dec), free(dm), free(col), free(ph), free(use), free(stars);
    clred_wcs_free(w);
    return st;
}

clred_status clred_zeropoint_dev(clred_ctx *ctx, clred_dimage *img, const clred_refcat *ref,
                                 const clred_zeropoint_opts *opts, clred_zeropoint_result *result)
{
    clred_zeropoint_opts defaults = clred_zeropoint_defaults();
    const clred_zeropoint_opts *o = opts ? opts : &defaults;
    clred_zeropoint_result r;
    memset(&r, 0, sizeof r);
    r.fwhm = r.limit_mag = r.sky_rms = NAN;
    if (result)
        *result = r;
    if (!img || !ref || ref->n == 0)
        return clred_fail(CLRED_ERR_USAGE, "zeropoint: an image and a reference catalog are needed");
    if (!(o->match_radius_arcsec > 0) || !(o->clip_sigma > 0) || o->max_iters < 0 || o->min_stars < 1 ||
        !(o->phot.radius > 0) || !(o->min_snr >= 0))
        return clred_fail(CLRED_ERR_USAGE, "zeropoint: match radius, clip sigma and aperture radius must be > 0, "
                                           "max_iters >= 0, min_stars >= 1, min_snr >= 0");
    clred_status st = measure(ctx, img, ref, o, &r);
    if (result)
        *result = r;
    if (st != CLRED_OK)
        return st;
    clred_header *h = clred_header_copy(img->header);
    if (!h)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory copying a header");
    char text[200];
    snprintf(text, sizeof text,
             "clred zeropoint: MAGZP %.4f +- %.4f from %zu of %zu stars (rms %.3f mag), %s", r.zp, r.zp_err,
             r.nused, r.nmatched, r.rms, r.psf ? "PSF fluxes" : "aperture");
    if (!r.psf) /* the aperture's radius in the history line */
        snprintf(text + strlen(text), sizeof text - strlen(text), " r=%g px", o->phot.radius);
    st = clred_header_set_double(h, "MAGZP", r.zp,
                                 r.psf ? "mag = -2.5 log10(PSF flux) + MAGZP" : "mag = -2.5 log10(aperture flux) + MAGZP");
    if (st == CLRED_OK)
        st = clred_header_set_double(h, "MAGZPERR", r.zp_err, "error of MAGZP");
    if (st == CLRED_OK && isfinite(r.limit_mag))
        st = clred_header_set_double(h, "MAGLIM", r.limit_mag,
                                     r.psf ? "5 sigma point source, PSF fit" : "5 sigma point source in the aperture");
    if (st == CLRED_OK && o->colour_term)
        st = clred_header_set_double(h, "MAGCOLOR", r.colour, "colour coefficient of the zero point");
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

clred_status clred_zeropoint(clred_ctx *ctx, clred_image *img, const clred_refcat *ref,
                             const clred_zeropoint_opts *opts, clred_zeropoint_result *result)
{
    if (!img || !img->sci)
        return clred_fail(CLRED_ERR_USAGE, "zeropoint: no image");
    clred_dimage *d;
    CLRED_TRY(clred_dimage_borrow(ctx, img, &d));
    clred_status st = clred_zeropoint_dev(ctx, d, ref, opts, result);
    if (st == CLRED_OK)
        st = clred_image_header_from(img, d);
    clred_dimage_free(d);
    return st;
}
