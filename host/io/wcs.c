/* World coordinates: wcslib reads the header (TAN, TPV, SIP and every
 * projection it knows) and converts pixel <-> sky; this file also rewrites a
 * header's WCS when its pixels are moved through an affine transform
 * (resampling, alignment, stacking, cutouts), and writes a fitted TAN-SIP. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wcslib/wcs.h>
#include <wcslib/wcsfix.h>
#include <wcslib/wcshdr.h>

#include "internal.h"
#include "wcs_internal.h"

struct clred_wcs {
    struct wcsprm prm;
};

/* wcspih wants one string of 80-character records. */
static char *header_records(const clred_header *h, int *nrec)
{
    size_t n = clred_header_count(h);
    char *s = malloc(n * 80 + 1);
    if (!s)
        return NULL;
    for (size_t i = 0; i < n; i++)
        memcpy(s + 80 * i, clred_header_card(h, i), 80);
    s[80 * n] = '\0';
    *nrec = (int)n;
    return s;
}

/* The primary description with a celestial pair on axes 1 and 2, set up;
 * 0 when the header has none. */
static int parse(const clred_header *h, struct wcsprm *out, char *why, size_t why_size)
{
    snprintf(why, why_size, "no celestial WCS (CTYPE1/2 as RA---TAN, DEC--TAN, ...)");
    if (!h || clred_header_count(h) == 0)
        return 0;
    int nrec = 0, nreject = 0, nwcs = 0;
    struct wcsprm *all = NULL;
    char *records = header_records(h, &nrec);
    if (!records) {
        snprintf(why, why_size, "out of memory");
        return 0;
    }
    int rc = wcspih(records, nrec, WCSHDR_all, 0, &nreject, &nwcs, &all);
    free(records);
    if (rc || nwcs == 0) {
        if (all)
            wcsvfree(&nwcs, &all);
        return 0;
    }
    int found = 0;
    for (int i = 0; i < nwcs && !found; i++) {
        struct wcsprm *w = &all[i];
        if (w->alt[0] != ' ' && w->alt[0] != '\0')
            continue;
        int stat[NWCSFIX];
        /* Repairs old-style headers (RADECSYS, DATE-OBS forms, CDELT without
         * PC); wcslib's own fixes, which leave a correct header unchanged. */
        wcsfix(7, NULL, w, stat);
        if (wcsset(w) != 0) {
            snprintf(why, why_size, "wcslib rejects the WCS (%s)", w->err ? w->err->msg : "wcsset failed");
            continue;
        }
        if (w->naxis < 2 || w->lng != 0 || w->lat != 1)
            continue;
        out->flag = -1;
        if (wcssub(1, w, NULL, NULL, out) == 0 && wcsset(out) == 0)
            found = 1;
        else
            wcsfree(out);
    }
    wcsvfree(&nwcs, &all);
    return found;
}

int clred_header_has_wcs(const clred_header *h)
{
    struct wcsprm prm;
    char why[160];
    memset(&prm, 0, sizeof prm);
    if (!parse(h, &prm, why, sizeof why))
        return 0;
    wcsfree(&prm);
    return 1;
}

clred_status clred_wcs_from_header(const clred_header *h, clred_wcs **out)
{
    *out = NULL;
    clred_wcs *w = calloc(1, sizeof *w);
    if (!w)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for a WCS");
    char why[160];
    if (!parse(h, &w->prm, why, sizeof why)) {
        free(w);
        return clred_fail(CLRED_ERR_INPUT, "the header has %s", why);
    }
    *out = w;
    return CLRED_OK;
}

void clred_wcs_free(clred_wcs *w)
{
    if (w) {
        wcsfree(&w->prm);
        free(w);
    }
}

/* Converts in chunks so that wcslib's scratch arrays stay small. */
#define CHUNK 256

clred_status clred_wcs_pix2sky(clred_wcs *w, size_t n, const double *x, const double *y, double *ra, double *dec)
{
    double pix[2 * CHUNK], img[2 * CHUNK], world[2 * CHUNK], phi[CHUNK], theta[CHUNK];
    int stat[CHUNK];
    for (size_t i0 = 0; i0 < n; i0 += CHUNK) {
        int m = (int)(n - i0 < CHUNK ? n - i0 : CHUNK);
        for (int k = 0; k < m; k++) {
            pix[2 * k] = x[i0 + k] + 1.0; /* FITS pixels are 1-based */
            pix[2 * k + 1] = y[i0 + k] + 1.0;
        }
        int rc = wcsp2s(&w->prm, m, 2, pix, img, phi, theta, world, stat);
        if (rc != 0 && rc != 8)
            return clred_fail(CLRED_ERR_INPUT, "pixel to sky: wcslib error %d (%s)", rc,
                              w->prm.err ? w->prm.err->msg : "");
        for (int k = 0; k < m; k++) {
            ra[i0 + k] = stat[k] ? NAN : world[2 * k];
            dec[i0 + k] = stat[k] ? NAN : world[2 * k + 1];
        }
    }
    return CLRED_OK;
}

clred_status clred_wcs_sky2pix(clred_wcs *w, size_t n, const double *ra, const double *dec, double *x, double *y)
{
    double pix[2 * CHUNK], img[2 * CHUNK], world[2 * CHUNK], phi[CHUNK], theta[CHUNK];
    int stat[CHUNK];
    for (size_t i0 = 0; i0 < n; i0 += CHUNK) {
        int m = (int)(n - i0 < CHUNK ? n - i0 : CHUNK);
        for (int k = 0; k < m; k++) {
            world[2 * k] = ra[i0 + k];
            world[2 * k + 1] = dec[i0 + k];
        }
        int rc = wcss2p(&w->prm, m, 2, world, phi, theta, img, pix, stat);
        if (rc != 0 && rc != 9)
            return clred_fail(CLRED_ERR_INPUT, "sky to pixel: wcslib error %d (%s)", rc,
                              w->prm.err ? w->prm.err->msg : "");
        for (int k = 0; k < m; k++) {
            x[i0 + k] = stat[k] ? NAN : pix[2 * k] - 1.0;
            y[i0 + k] = stat[k] ? NAN : pix[2 * k + 1] - 1.0;
        }
    }
    return CLRED_OK;
}

double clred_wcs_pixel_scale(const clred_wcs *w)
{
    const double *m = w->prm.lin.piximg;
    return sqrt(fabs(m[0] * m[3] - m[1] * m[2])) * 3600.0;
}

void clred_wcs_linear(const clred_wcs *w, double crpix[2], double cd[4])
{
    crpix[0] = w->prm.crpix[0] - 1.0;
    crpix[1] = w->prm.crpix[1] - 1.0;
    memcpy(cd, w->prm.lin.piximg, 4 * sizeof(double));
}

void clred_wcs_crval(const clred_wcs *w, double crval[2])
{
    crval[0] = w->prm.crval[0];
    crval[1] = w->prm.crval[1];
}

/* ------------------------------------------------- SIP polynomials */

static void poly_clear(clred_poly *p) { memset(p, 0, sizeof *p); }

static void poly_mul(const clred_poly *a, const clred_poly *b, clred_poly *out)
{
    clred_poly r;
    poly_clear(&r);
    for (int i = 0; i < CLRED_POLY_N; i++)
        for (int j = 0; j + i < CLRED_POLY_N; j++)
            if (a->c[i][j] != 0)
                for (int k = 0; k + i + j < CLRED_POLY_N; k++)
                    for (int l = 0; l + k + i + j < CLRED_POLY_N; l++)
                        r.c[i + k][j + l] += a->c[i][j] * b->c[k][l];
    *out = r;
}

/* f'(w) = Ainv f(A w) for a pair of polynomials (fx, fy) of (u, v): the SIP
 * distortion seen from pixels that were moved by the linear map A^-1. */
static void sip_compose(clred_poly *fx, clred_poly *fy, const double A[4], const double Ainv[4])
{
    /* powers of u = A0 w1 + A1 w2 and v = A2 w1 + A3 w2 */
    clred_poly upow[CLRED_POLY_N], vpow[CLRED_POLY_N];
    poly_clear(&upow[0]);
    poly_clear(&vpow[0]);
    upow[0].c[0][0] = vpow[0].c[0][0] = 1;
    clred_poly u, v;
    poly_clear(&u);
    poly_clear(&v);
    u.c[1][0] = A[0], u.c[0][1] = A[1];
    v.c[1][0] = A[2], v.c[0][1] = A[3];
    for (int p = 1; p < CLRED_POLY_N; p++) {
        poly_mul(&upow[p - 1], &u, &upow[p]);
        poly_mul(&vpow[p - 1], &v, &vpow[p]);
    }
    clred_poly gx, gy;
    poly_clear(&gx);
    poly_clear(&gy);
    for (int p = 0; p < CLRED_POLY_N; p++)
        for (int q = 0; p + q < CLRED_POLY_N; q++) {
            if (fx->c[p][q] == 0 && fy->c[p][q] == 0)
                continue;
            clred_poly t;
            poly_mul(&upow[p], &vpow[q], &t);
            for (int i = 0; i < CLRED_POLY_N; i++)
                for (int j = 0; i + j < CLRED_POLY_N; j++) {
                    gx.c[i][j] += fx->c[p][q] * t.c[i][j];
                    gy.c[i][j] += fy->c[p][q] * t.c[i][j];
                }
        }
    for (int i = 0; i < CLRED_POLY_N; i++)
        for (int j = 0; i + j < CLRED_POLY_N; j++) {
            fx->c[i][j] = Ainv[0] * gx.c[i][j] + Ainv[1] * gy.c[i][j];
            fy->c[i][j] = Ainv[2] * gx.c[i][j] + Ainv[3] * gy.c[i][j];
        }
}

/* Reads NAME_ORDER and NAME_p_q; order 0 when absent. */
static int read_poly(const clred_header *h, const char *name, clred_poly *p)
{
    poly_clear(p);
    char key[40];
    double order = 0;
    snprintf(key, sizeof key, "%s_ORDER", name);
    if (!clred_header_get_double(h, key, &order) || order < 0 || order >= CLRED_POLY_N)
        return 0;
    for (int i = 0; i <= (int)order; i++)
        for (int j = 0; i + j <= (int)order; j++) {
            snprintf(key, sizeof key, "%s_%d_%d", name, i, j);
            double v;
            if (clred_header_get_double(h, key, &v))
                p->c[i][j] = v;
        }
    return (int)order;
}

static void delete_poly(clred_header *h, const char *name)
{
    char key[40];
    snprintf(key, sizeof key, "%s_ORDER", name);
    clred_header_delete(h, key);
    for (int i = 0; i < CLRED_POLY_N; i++)
        for (int j = 0; i + j < CLRED_POLY_N; j++) {
            snprintf(key, sizeof key, "%s_%d_%d", name, i, j);
            clred_header_delete(h, key);
        }
    snprintf(key, sizeof key, "%s_DMAX", name);
    clred_header_delete(h, key);
}

static clred_status write_poly(clred_header *h, const char *name, const clred_poly *p, int order)
{
    char key[40], comment[64];
    snprintf(key, sizeof key, "%s_ORDER", name);
    CLRED_TRY(clred_header_set_double(h, key, order, "SIP polynomial order"));
    for (int i = 0; i <= order; i++)
        for (int j = 0; i + j <= order; j++) {
            if (p->c[i][j] == 0)
                continue;
            snprintf(key, sizeof key, "%s_%d_%d", name, i, j);
            snprintf(comment, sizeof comment, "SIP coefficient of u^%d v^%d", i, j);
            CLRED_TRY(clred_header_set_double(h, key, p->c[i][j], comment));
        }
    return CLRED_OK;
}

/* The linear-part keywords of the primary description, all forms. */
static void delete_linear(clred_header *h)
{
    static const char *keys[] = {"CD1_1", "CD1_2", "CD2_1", "CD2_2", "PC1_1", "PC1_2", "PC2_1", "PC2_2",
                                 "PC001001", "PC001002", "PC002001", "PC002002", "CDELT1", "CDELT2",
                                 "CROTA1", "CROTA2", "CD001001", "CD001002", "CD002001", "CD002002"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        clred_header_delete(h, keys[i]);
}

static clred_status write_linear(clred_header *h, const double crpix[2], const double cd[4])
{
    CLRED_TRY(clred_header_set_double(h, "CRPIX1", crpix[0] + 1.0, "reference pixel (1-based)"));
    CLRED_TRY(clred_header_set_double(h, "CRPIX2", crpix[1] + 1.0, "reference pixel (1-based)"));
    static const char *names[] = {"CD1_1", "CD1_2", "CD2_1", "CD2_2"};
    for (int i = 0; i < 4; i++)
        CLRED_TRY(clred_header_set_double(h, names[i], cd[i], "linear part, deg per pixel"));
    return CLRED_OK;
}

static int has_key(const clred_header *h, const char *key)
{
    char v[80];
    return clred_header_get_string(h, key, v, sizeof v);
}

clred_status clred_header_wcs_transform(clred_header *h, const clred_transform *t)
{
    if (!h)
        return CLRED_OK;
    char why[160];
    clred_wcs w;
    memset(&w, 0, sizeof w);
    if (!parse(h, &w.prm, why, sizeof why))
        return CLRED_OK; /* nothing celestial to carry */
    double crpix[2], cd[4];
    clred_wcs_linear(&w, crpix, cd);
    wcsfree(&w.prm);
    if (has_key(h, "CPDIS1") || has_key(h, "CPDIS2") || has_key(h, "DQDIS1") || has_key(h, "DQDIS2"))
        return clred_fail(CLRED_ERR_INPUT,
                          "the header's WCS has a lookup-table or Paper IV distortion (CPDISj/DQDISj), which "
                          "clred cannot carry through resampling");
    clred_transform inv;
    CLRED_TRY(clred_transform_invert(t, &inv));
    const double *m = t->m;
    double ncrpix[2] = {m[0] * crpix[0] + m[1] * crpix[1] + m[2], m[3] * crpix[0] + m[4] * crpix[1] + m[5]};
    /* input pixel offsets u = A u' with A the linear part of the inverse */
    double A[4] = {inv.m[0], inv.m[1], inv.m[3], inv.m[4]}, Ainv[4] = {m[0], m[1], m[3], m[4]};
    double ncd[4] = {cd[0] * A[0] + cd[1] * A[2], cd[0] * A[1] + cd[1] * A[3], cd[2] * A[0] + cd[3] * A[2],
                     cd[2] * A[1] + cd[3] * A[3]};
    clred_poly a, b, ap, bp;
    int order_a = read_poly(h, "A", &a), order_b = read_poly(h, "B", &b);
    int order_ap = read_poly(h, "AP", &ap), order_bp = read_poly(h, "BP", &bp);
    delete_linear(h);
    CLRED_TRY(write_linear(h, ncrpix, ncd));
    if (order_a || order_b) {
        int order = order_a > order_b ? order_a : order_b;
        sip_compose(&a, &b, A, Ainv);
        delete_poly(h, "A");
        delete_poly(h, "B");
        CLRED_TRY(write_poly(h, "A", &a, order));
        CLRED_TRY(write_poly(h, "B", &b, order));
    }
    if (order_ap || order_bp) {
        /* the inverse polynomials act on the undistorted offsets, which move by the same A */
        int order = order_ap > order_bp ? order_ap : order_bp;
        sip_compose(&ap, &bp, A, Ainv);
        delete_poly(h, "AP");
        delete_poly(h, "BP");
        CLRED_TRY(write_poly(h, "AP", &ap, order));
        CLRED_TRY(write_poly(h, "BP", &bp, order));
    }
    return CLRED_OK;
}

/* Keywords of a celestial WCS (primary description) and its distortions. */
static int wcs_keyword(const char *card)
{
    static const char *prefixes[] = {"CTYPE", "CRVAL", "CRPIX", "CDELT", "CROTA", "CUNIT", "CD1_", "CD2_", "PC1_",
                                     "PC2_", "PC00", "CD00", "PV1_", "PV2_", "A_", "B_", "AP_", "BP_", "RADESYS",
                                     "RADECSYS", "EQUINOX", "LONPOLE", "LATPOLE", "WCSAXES", "MJD-OBS", "DATE-OBS"};
    for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++)
        if (strncmp(card, prefixes[i], strlen(prefixes[i])) == 0 && card[8] == '=')
            return 1;
    return 0;
}

clred_status clred_header_copy_wcs(clred_header *dst, const clred_header *src)
{
    if (!src || !clred_header_has_wcs(src))
        return CLRED_OK;
    for (size_t i = 0; i < clred_header_count(src); i++) {
        const char *card = clred_header_card(src, i);
        if (!wcs_keyword(card))
            continue;
        char key[9];
        snprintf(key, sizeof key, "%.8s", card);
        for (int k = 7; k >= 0 && key[k] == ' '; k--)
            key[k] = '\0';
        clred_header_delete(dst, key);
        CLRED_TRY(clred_header_append_card(dst, card));
    }
    return CLRED_OK;
}

/* ------------------------------------------------- writing a TAN-SIP */

static void delete_celestial(clred_header *h)
{
    delete_linear(h);
    static const char *names[] = {"A", "B", "AP", "BP"};
    for (int i = 0; i < 4; i++)
        delete_poly(h, names[i]);
    char key[40];
    for (int ax = 1; ax <= 2; ax++)
        for (int k = 0; k < 40; k++) {
            snprintf(key, sizeof key, "PV%d_%d", ax, k);
            clred_header_delete(h, key);
        }
    static const char *keys[] = {"CTYPE1", "CTYPE2", "CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CUNIT1", "CUNIT2",
                                 "LONPOLE", "LATPOLE", "WCSAXES"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        clred_header_delete(h, keys[i]);
}

clred_status clred_tan_sip_write(const clred_tan_sip *s, clred_header *h)
{
    delete_celestial(h);
    CLRED_TRY(clred_header_set_string(h, "CTYPE1", s->order ? "RA---TAN-SIP" : "RA---TAN", "gnomonic projection"));
    CLRED_TRY(clred_header_set_string(h, "CTYPE2", s->order ? "DEC--TAN-SIP" : "DEC--TAN", "gnomonic projection"));
    CLRED_TRY(clred_header_set_string(h, "CUNIT1", "deg", NULL));
    CLRED_TRY(clred_header_set_string(h, "CUNIT2", "deg", NULL));
    CLRED_TRY(clred_header_set_double(h, "CRVAL1", s->crval[0], "RA of the reference pixel (deg)"));
    CLRED_TRY(clred_header_set_double(h, "CRVAL2", s->crval[1], "Dec of the reference pixel (deg)"));
    char sys[16];
    if (!clred_header_get_string(h, "RADESYS", sys, sizeof sys))
        CLRED_TRY(clred_header_set_string(h, "RADESYS", "ICRS", NULL));
    CLRED_TRY(write_linear(h, s->crpix, s->cd));
    if (s->order) {
        CLRED_TRY(write_poly(h, "A", &s->a, s->order));
        CLRED_TRY(write_poly(h, "B", &s->b, s->order));
        CLRED_TRY(write_poly(h, "AP", &s->ap, s->inv_order));
        CLRED_TRY(write_poly(h, "BP", &s->bp, s->inv_order));
    }
    return CLRED_OK;
}

clred_status clred_header_set_tan(clred_header *h, double ra, double dec, double x, double y, double scale_arcsec,
                                  double rotation_deg, int flip)
{
    if (!isfinite(ra) || !isfinite(dec) || fabs(dec) > 90 || !(scale_arcsec > 0))
        return clred_fail(CLRED_ERR_USAGE, "a TAN WCS needs a centre (RA %g, Dec %g) and a positive pixel scale (%g)",
                          ra, dec, scale_arcsec);
    clred_tan_sip s;
    memset(&s, 0, sizeof s);
    s.crval[0] = ra;
    s.crval[1] = dec;
    s.crpix[0] = x;
    s.crpix[1] = y;
    /* North up, east left (RA grows to -x) at rotation 0; flip mirrors x:
     * CD = d [[-cos a, sin a], [sin a, cos a]] (flip: the first column's
     * sign changes), the form clred_astrometry reports its rotation in. */
    double c = cos(rotation_deg * M_PI / 180), sn = sin(rotation_deg * M_PI / 180), d = scale_arcsec / 3600.0;
    double sx = flip ? d : -d;
    s.cd[0] = sx * c;
    s.cd[1] = d * sn;
    s.cd[2] = -sx * sn;
    s.cd[3] = d * c;
    return clred_tan_sip_write(&s, h);
}

/* ------------------------------------------------- gnomonic projection */

void clred_tan_project(const double crval[2], double ra, double dec, double *xi, double *eta)
{
    double a0 = crval[0] * M_PI / 180, d0 = crval[1] * M_PI / 180;
    double a = ra * M_PI / 180, d = dec * M_PI / 180;
    double cosc = sin(d0) * sin(d) + cos(d0) * cos(d) * cos(a - a0);
    *xi = cos(d) * sin(a - a0) / cosc * 180 / M_PI;
    *eta = (cos(d0) * sin(d) - sin(d0) * cos(d) * cos(a - a0)) / cosc * 180 / M_PI;
}

void clred_tan_deproject(const double crval[2], double xi, double eta, double *ra, double *dec)
{
    double a0 = crval[0] * M_PI / 180, d0 = crval[1] * M_PI / 180;
    double x = xi * M_PI / 180, y = eta * M_PI / 180;
    double rho = hypot(x, y);
    if (rho == 0) {
        *ra = crval[0];
        *dec = crval[1];
        return;
    }
    double c = atan(rho);
    double d = asin(cos(c) * sin(d0) + y * sin(c) * cos(d0) / rho);
    double a = a0 + atan2(x * sin(c), rho * cos(d0) * cos(c) - y * sin(d0) * sin(c));
    *ra = fmod(a * 180 / M_PI + 360.0, 360.0);
    *dec = d * 180 / M_PI;
}

double clred_poly_eval(const clred_poly *p, int order, double u, double v)
{
    double s = 0, up = 1;
    for (int i = 0; i <= order; i++, up *= u) {
        double vq = 1;
        for (int j = 0; i + j <= order; j++, vq *= v)
            s += p->c[i][j] * up * vq;
    }
    return s;
}
