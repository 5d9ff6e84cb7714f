/* Astrometry on a simulated field with a known TAN-SIP WCS: the fitted WCS
 * puts the catalog's stars on their true pixel positions to <= 0.05 px RMS,
 * starting from a wrong header WCS (15 arcsec off, turned by a degree, 2.5 %
 * off in scale, no SIP) or from a centre and a scale only; a catalog of
 * another field is refused and leaves the header alone; reference catalogs
 * read from CSV and FITS tables. The truth's sky positions come from the
 * plain double reference (tests/reference/wcs_ref.c), not from clred. */
#include <fitsio.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "simulate.h"
#include "wcs_ref.h"

static ref_wcs ref_of(const clred_tan_sip *s)
{
    ref_wcs r;
    memset(&r, 0, sizeof r);
    memcpy(r.crval, s->crval, sizeof r.crval);
    r.crpix[0] = s->crpix[0] + 1, r.crpix[1] = s->crpix[1] + 1;
    memcpy(r.cd, s->cd, sizeof r.cd);
    r.sip_order = s->order;
    for (int p = 0; p <= s->order; p++)
        for (int q = 0; p + q <= s->order; q++)
            r.a[p][q] = s->a.c[p][q], r.b[p][q] = s->b.c[p][q];
    return r;
}

typedef struct {
    clred_sim_truth t;
    size_t frame;
    clred_image img;
    clred_refcat cat;
    double *tx, *ty; /* true frame positions of the catalog's stars */
} field;

static void make_field(field *f)
{
    clred_sim_opts o = clred_sim_defaults();
    o.width = o.height = 320;
    o.nstars = 900;
    o.nbias = o.ndark = o.nflat = 0;
    o.nscience = 1;
    o.nepoch2 = 0;
    o.ntransients = 0;
    o.sip = 2.0;
    CHECK_OK(clred_sim_truth_build(&o, &f->t));
    for (f->frame = 0; f->t.frames[f->frame].kind != CLRED_SIM_SCIENCE; f->frame++)
        ;
    const clred_sim_frame *fr = &f->t.frames[f->frame];
    size_t n = o.width * o.height;
    double *e = malloc(n * sizeof *e);
    clred_sim_expected(&f->t, f->frame, e);
    CHECK_OK(clred_image_alloc(&f->img, o.width, o.height, 0, 0));
    harness_rng r = {42};
    for (size_t i = 0; i < n; i++)
        f->img.sci[i] = (float)(e[i] + sqrt(e[i] + 36.0) * harness_normal(&r));
    free(e);
    f->img.header = clred_header_new();

    clred_tan_sip field_wcs;
    clred_sim_field_wcs(&f->t, 0, 0, &field_wcs);
    ref_wcs rw = ref_of(&field_wcs);
    f->cat.n = f->t.nstars;
    f->cat.ra = malloc(n * sizeof(double)), f->cat.dec = malloc(n * sizeof(double));
    f->cat.mag = malloc(n * sizeof(double)), f->cat.colour = malloc(n * sizeof(double));
    f->tx = malloc(n * sizeof(double)), f->ty = malloc(n * sizeof(double));
    for (size_t i = 0; i < f->t.nstars; i++) {
        const clred_sim_star *s = &f->t.stars[i];
        ref_wcs_pix2sky(&rw, s->x, s->y, &f->cat.ra[i], &f->cat.dec[i]);
        f->cat.mag[i] = -2.5 * log10(s->flux / o.science_exptime) + 25;
        f->cat.colour[i] = NAN;
        f->tx[i] = s->x + fr->dx;
        f->ty[i] = s->y + fr->dy;
    }
}

static void free_field(field *f)
{
    clred_image_free(&f->img);
    clred_refcat_free(&f->cat);
    free(f->tx);
    free(f->ty);
    clred_sim_truth_free(&f->t);
}

/* RMS (px) of the catalog stars on the frame between where the fitted
 * header's WCS puts them and where they truly are. */
static double position_rms(const field *f, const clred_header *h, size_t *nstars)
{
    clred_wcs *w = NULL;
    *nstars = 0;
    if (clred_wcs_from_header(h, &w) != CLRED_OK)
        return INFINITY;
    double sum = 0;
    for (size_t i = 0; i < f->cat.n; i++) {
        if (f->tx[i] < 0 || f->ty[i] < 0 || f->tx[i] > (double)f->img.width - 1 || f->ty[i] > (double)f->img.height - 1)
            continue;
        double x, y;
        clred_wcs_sky2pix(w, 1, &f->cat.ra[i], &f->cat.dec[i], &x, &y);
        sum += (x - f->tx[i]) * (x - f->tx[i]) + (y - f->ty[i]) * (y - f->ty[i]);
        (*nstars)++;
    }
    clred_wcs_free(w);
    return *nstars ? sqrt(sum / (double)*nstars) : INFINITY;
}

static void check_refcat_files(const field *f)
{
    const char *dir = harness_tmpdir("test_astrometry");
    char csv[512], fits[512];
    snprintf(csv, sizeof csv, "%s/ref.csv", dir);
    snprintf(fits, sizeof fits, "%s/ref.fits", dir);
    FILE *fp = fopen(csv, "w");
    fprintf(fp, "source_id,RA_ICRS,DE_ICRS,phot_g_mean_mag,bp_rp\n");
    for (size_t i = 0; i < 20; i++)
        fprintf(fp, "%zu,%.10f,%.10f,%.4f,%.3f\n", i, f->cat.ra[i], f->cat.dec[i], f->cat.mag[i], 0.1 * (double)i);
    fclose(fp);
    clred_refcat c;
    CHECK_OK(clred_refcat_read(csv, NULL, &c));
    CHECK(c.n == 20);
    if (c.n == 20) {
        CHECK_NEAR(c.ra[7], f->cat.ra[7], 1e-10);
        CHECK_NEAR(c.dec[7], f->cat.dec[7], 1e-10);
        CHECK_NEAR(c.mag[7], f->cat.mag[7], 1e-4);
        CHECK_NEAR(c.colour[7], 0.7, 1e-9);
    }
    clred_refcat_free(&c);
    CHECK(clred_refcat_read(csv, "rmag", &c) == CLRED_ERR_INPUT);

    remove(fits);
    fitsfile *ff;
    int status = 0;
    char *ttype[] = {"ra", "dec", "mag"}, *tform[] = {"1D", "1D", "1E"};
    fits_create_file(&ff, fits, &status);
    fits_create_tbl(ff, BINARY_TBL, 20, 3, ttype, tform, NULL, "REFCAT", &status);
    fits_write_col(ff, TDOUBLE, 1, 1, 1, 20, f->cat.ra, &status);
    fits_write_col(ff, TDOUBLE, 2, 1, 1, 20, f->cat.dec, &status);
    fits_write_col(ff, TDOUBLE, 3, 1, 1, 20, f->cat.mag, &status);
    fits_close_file(ff, &status);
    CHECK(status == 0);
    CHECK_OK(clred_refcat_read(fits, NULL, &c));
    CHECK(c.n == 20);
    if (c.n == 20) {
        CHECK_NEAR(c.ra[19], f->cat.ra[19], 1e-12);
        CHECK_NEAR(c.mag[19], f->cat.mag[19], 1e-5); /* stored as float */
        CHECK(isnan(c.colour[0]));
    }
    clred_refcat_free(&c);
}

int main(void)
{
    field f;
    make_field(&f);
    check_refcat_files(&f);
    clred_ctx *ctx = harness_ctx();
    double cx = 0.5 * ((double)f.img.width - 1), cy = cx;
    clred_astrometry_result res;

    /* From a wrong header: 15" off, turned by 1 degree, scale 2.5 % off, no SIP. */
    CHECK_OK(clred_header_set_tan(f.img.header, CLRED_SIM_RA + 0.003, CLRED_SIM_DEC - 0.002, cx, cy, 0.41,
                                  CLRED_SIM_ROTATION + 1.0, 0));
    size_t n;
    double before = position_rms(&f, f.img.header, &n);
    CHECK_MSG(before > 20, "the starting WCS is off by %.3g px", before);
    clred_astrometry_opts o = clred_astrometry_defaults();
    CHECK_OK(clred_astrometry(ctx, &f.img, &f.cat, &o, &res));
    double rms = position_rms(&f, f.img.header, &n);
    printf("header start: %zu detected, %zu reference, %zu used, fit RMS %.4f px (%.4f arcsec), truth RMS %.4f px over %zu stars, scale %.5f, rotation %.3f\n",
           res.ndetected, res.nref, res.nused, res.rms_px, res.rms_arcsec, rms, n, res.pixel_scale, res.rotation_deg);
    CHECK_MSG(rms <= 0.05, "positions recovered to %.4f px RMS (<= 0.05 wanted)", rms);
    CHECK(n > 500);
    CHECK(res.nused >= 80);
    CHECK(res.sip_order == 3);
    CHECK_NEAR(res.pixel_scale, 0.4, 0.004);
    double v;
    CHECK(clred_header_get_double(f.img.header, "ASTRRMS", &v) && fabs(v - res.rms_arcsec) < 1e-9);
    CHECK(clred_header_get_double(f.img.header, "AP_ORDER", &v) && v == 4);

    /* Without SIP the distortion (2 px at the corners) stays in the residuals. */
    clred_image tan_only = f.img;
    tan_only.header = clred_header_copy(f.img.header);
    clred_astrometry_opts ot = o;
    ot.sip_order = 0;
    ot.max_rms_px = 5;
    CHECK_OK(clred_astrometry(ctx, &tan_only, &f.cat, &ot, &res));
    double rms_tan = position_rms(&f, tan_only.header, &n);
    CHECK_MSG(rms_tan > 0.2, "a TAN fit leaves %.3f px of the SIP distortion", rms_tan);
    clred_header_free(tan_only.header);

    /* From a centre and a scale only. */
    clred_header_free(f.img.header);
    f.img.header = clred_header_new();
    clred_astrometry_opts oc = clred_astrometry_defaults();
    CHECK(clred_astrometry(ctx, &f.img, &f.cat, &oc, &res) == CLRED_ERR_USAGE); /* no WCS, no centre */
    oc.ra = CLRED_SIM_RA - 0.002;
    oc.dec = CLRED_SIM_DEC + 0.003;
    oc.pixel_scale = 0.395;
    CHECK_OK(clred_astrometry(ctx, &f.img, &f.cat, &oc, &res));
    rms = position_rms(&f, f.img.header, &n);
    printf("centre start: %zu used, fit RMS %.4f px, truth RMS %.4f px, rotation %.3f\n", res.nused, res.rms_px, rms,
           res.rotation_deg);
    CHECK_MSG(rms <= 0.05, "from a centre: positions recovered to %.4f px RMS", rms);
    CHECK_NEAR(res.rotation_deg, CLRED_SIM_ROTATION, 0.05);
    CHECK(!res.mirrored);

    /* Another field's catalog is refused and the header stays. */
    clred_refcat other = f.cat;
    double *ra = malloc(f.cat.n * sizeof *ra);
    for (size_t i = 0; i < f.cat.n; i++)
        ra[i] = f.cat.ra[i] + 0.02 * ((i * 7919) % 13) - 0.1; /* scrambled */
    other.ra = ra;
    size_t cards = clred_header_count(f.img.header);
    clred_status st = clred_astrometry(ctx, &f.img, &other, &o, &res);
    CHECK(st == CLRED_ERR_INPUT);
    printf("refused: %s\n", clred_last_error());
    CHECK(strstr(clred_last_error(), "astrometry") != NULL);
    CHECK(clred_header_count(f.img.header) == cards);
    free(ra);

    /* Bad options. */
    clred_astrometry_opts bad = clred_astrometry_defaults();
    bad.sip_order = 12;
    CHECK(clred_astrometry(ctx, &f.img, &f.cat, &bad, &res) == CLRED_ERR_USAGE);

    clred_ctx_destroy(ctx);
    free_field(&f);
    return harness_finish();
}
