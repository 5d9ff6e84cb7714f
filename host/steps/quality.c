/* Frame quality: seeing, ellipticity, sky level and noise and the number of
 * stars measured on the device (star detection and clipped statistics), the
 * zero point, limiting magnitude and astrometric residual from the header
 * keywords clred zeropoint and clred astrometry write; and the limits that
 * keep poor frames out of reference stacks. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blanksky.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

clred_status clred_measure_quality_dev(clred_ctx *ctx, const clred_dimage *img, clred_frame_quality *q)
{
    q->fwhm = q->fwhm_arcsec = q->ellipticity = q->sky = q->sky_noise = NAN;
    q->zeropoint = q->limit_mag = q->astrom_rms = NAN;
    q->nstars = 0;
    if (!img)
        return clred_fail(CLRED_ERR_USAGE, "quality: no image");
    clred_stats_opts so = clred_stats_defaults();
    clred_stats s;
    CLRED_TRY(clred_stats_dev(ctx, img, &so, &s));
    q->sky = s.median;
    clred_source *stars = NULL;
    size_t n = 0;
    CLRED_TRY(clred_detect_stars_dev(ctx, img, NULL, &stars, &n));
    q->nstars = n;
    /* Local noise between the stars; the clipped std of the whole frame
     * (which a gradient or vignetting inflates) where there is no blank sky. */
    clred_phot_opts po = clred_phot_defaults();
    clred_status st = clred_blank_sky_rms(ctx, img, stars, n, &po, &q->sky_noise);
    if (st != CLRED_OK) {
        free(stars);
        return st;
    }
    if (!isfinite(q->sky_noise))
        q->sky_noise = s.std;
    size_t used = 0;
    clred_sources_seeing(stars, n, &q->fwhm, &used);
    double *e = malloc((n ? n : 1) * sizeof *e);
    size_t m = 0;
    for (size_t i = 0; e && i < n; i++)
        if (!stars[i].flags && stars[i].flux >= 20 * stars[i].flux_err && isfinite(stars[i].ellipticity))
            e[m++] = stars[i].ellipticity;
    if (m) {
        qsort(e, m, sizeof *e, cmp_double);
        q->ellipticity = m % 2 ? e[m / 2] : 0.5 * (e[m / 2 - 1] + e[m / 2]);
    }
    free(e);
    free(stars);
    const clred_header *h = clred_dimage_header_const(img);
    if (clred_header_has_wcs(h)) {
        clred_wcs *w;
        if (clred_wcs_from_header(h, &w) == CLRED_OK) {
            q->fwhm_arcsec = q->fwhm * clred_wcs_pixel_scale(w);
            clred_wcs_free(w);
        }
    }
    double v;
    if (clred_header_get_double(h, "MAGZP", &v))
        q->zeropoint = v;
    if (clred_header_get_double(h, "ASTRRMS", &v))
        q->astrom_rms = v;
    if (isfinite(q->zeropoint) && q->fwhm > 0 && q->sky_noise > 0)
        q->limit_mag = q->zeropoint - 2.5 * log10(5 * q->sky_noise * sqrt(M_PI) * q->fwhm);
    return CLRED_OK;
}

clred_status clred_measure_quality(clred_ctx *ctx, const clred_image *img, clred_frame_quality *q)
{
    if (!img || !img->sci)
        return clred_fail(CLRED_ERR_USAGE, "quality: no image");
    clred_dimage *d;
    CLRED_TRY(clred_dimage_borrow(ctx, img, &d));
    clred_status st = clred_measure_quality_dev(ctx, d, q);
    clred_dimage_free(d);
    return st;
}

clred_quality_limits clred_quality_no_limits(void)
{
    clred_quality_limits l;
    l.max_fwhm = l.max_ellipticity = l.max_sky_noise = l.min_limit_mag = l.max_astrom_rms = NAN;
    l.min_stars = 0;
    return l;
}

/* value must be <= limit (upper) or >= limit (!upper); an unmeasured value fails. */
static int within(double value, double limit, int upper)
{
    if (isnan(limit))
        return 1;
    if (!isfinite(value))
        return 0;
    return upper ? value <= limit : value >= limit;
}

int clred_quality_passes(const clred_frame_quality *q, const clred_quality_limits *l, char *why, size_t size)
{
    char text[160] = "";
    int ok = 1;
    if (!within(q->fwhm, l->max_fwhm, 1))
        ok = 0, snprintf(text, sizeof text, "FWHM %.2f px > %.2f", q->fwhm, l->max_fwhm);
    else if (!within(q->ellipticity, l->max_ellipticity, 1))
        ok = 0, snprintf(text, sizeof text, "ellipticity %.3f > %.3f", q->ellipticity, l->max_ellipticity);
    else if (!within(q->sky_noise, l->max_sky_noise, 1))
        ok = 0, snprintf(text, sizeof text, "sky noise %.4g > %.4g", q->sky_noise, l->max_sky_noise);
    else if (q->nstars < l->min_stars)
        ok = 0, snprintf(text, sizeof text, "%zu stars < %zu", q->nstars, l->min_stars);
    else if (!within(q->limit_mag, l->min_limit_mag, 0))
        ok = 0, snprintf(text, sizeof text, "limiting magnitude %.2f < %.2f", q->limit_mag, l->min_limit_mag);
    else if (!within(q->astrom_rms, l->max_astrom_rms, 1))
        ok = 0, snprintf(text, sizeof text, "astrometric RMS %.3f arcsec > %.3f", q->astrom_rms, l->max_astrom_rms);
    if (why && size)
        snprintf(why, size, "%s", text);
    return ok;
}
