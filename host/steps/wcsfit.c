/* The astrometric fit's mathematics, in double on the host: a small dense
 * least-squares solver, the fit of TAN + SIP of a chosen order to matched
 * pixel / sky pairs with sigma clipping, and the fit of SIP's inverse
 * polynomials (AP, BP) over a pixel box. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "wcs_internal.h"
#include "wcsfit.h"

int clred_solve_spd(double *a, double *b, int n)
{
    /* Gaussian elimination with partial pivoting on the n x n system
     * (row-major a), b overwritten by the solution; 0 when singular. */
    for (int c = 0; c < n; c++) {
        int piv = c;
        for (int r = c + 1; r < n; r++)
            if (fabs(a[r * n + c]) > fabs(a[piv * n + c]))
                piv = r;
        if (!(fabs(a[piv * n + c]) > 1e-300))
            return 0;
        if (piv != c) {
            for (int k = 0; k < n; k++) {
                double t = a[c * n + k];
                a[c * n + k] = a[piv * n + k];
                a[piv * n + k] = t;
            }
            double t = b[c];
            b[c] = b[piv];
            b[piv] = t;
        }
        for (int r = c + 1; r < n; r++) {
            double f = a[r * n + c] / a[c * n + c];
            if (f == 0)
                continue;
            for (int k = c; k < n; k++)
                a[r * n + k] -= f * a[c * n + k];
            b[r] -= f * b[c];
        }
    }
    for (int c = n - 1; c >= 0; c--) {
        double s = b[c];
        for (int k = c + 1; k < n; k++)
            s -= a[c * n + k] * b[k];
        b[c] = s / a[c * n + c];
    }
    for (int c = 0; c < n; c++)
        if (!isfinite(b[c]))
            return 0;
    return 1;
}

/* Monomials u^p v^q with 0 <= p + q <= order, in a fixed order; scaled
 * coordinates keep the normal equations well conditioned. */
static int monomials(int order, int *ps, int *qs, int min_degree)
{
    int n = 0;
    for (int d = min_degree; d <= order; d++)
        for (int p = d; p >= 0; p--) {
            ps[n] = p;
            qs[n] = d - p;
            n++;
        }
    return n;
}

#define MAXTERMS (CLRED_POLY_N * CLRED_POLY_N)

/* Fits fx(u, v) ~ tx and fy(u, v) ~ ty (polynomials of degrees min_degree..order)
 * by least squares over the used points; coordinates scaled by 1/scale. */
static int fit_pair(const double *u, const double *v, const double *tx, const double *ty, const unsigned char *use,
                    size_t n, int order, int min_degree, double scale, clred_poly *fx, clred_poly *fy)
{
    int ps[MAXTERMS], qs[MAXTERMS];
    int m = monomials(order, ps, qs, min_degree);
    double *ata = calloc((size_t)m * m, sizeof *ata), *bx = calloc((size_t)m, sizeof *bx),
           *by = calloc((size_t)m, sizeof *by), *row = calloc((size_t)m, sizeof *row);
    int ok = ata && bx && by && row;
    for (size_t i = 0; ok && i < n; i++) {
        if (use && !use[i])
            continue;
        double su = u[i] / scale, sv = v[i] / scale;
        for (int k = 0; k < m; k++)
            row[k] = pow(su, ps[k]) * pow(sv, qs[k]);
        for (int r = 0; r < m; r++) {
            for (int c = 0; c < m; c++)
                ata[r * m + c] += row[r] * row[c];
            bx[r] += row[r] * tx[i];
            by[r] += row[r] * ty[i];
        }
    }
    double *ata2 = ok ? malloc((size_t)m * m * sizeof *ata2) : NULL;
    if (ata2) {
        memcpy(ata2, ata, (size_t)m * m * sizeof *ata2);
        ok = clred_solve_spd(ata, bx, m) && clred_solve_spd(ata2, by, m);
    } else
        ok = 0;
    if (ok) {
        memset(fx, 0, sizeof *fx);
        memset(fy, 0, sizeof *fy);
        for (int k = 0; k < m; k++) {
            double s = pow(scale, -(ps[k] + qs[k]));
            fx->c[ps[k]][qs[k]] = bx[k] * s;
            fy->c[ps[k]][qs[k]] = by[k] * s;
        }
    }
    free(ata);
    free(ata2);
    free(bx);
    free(by);
    free(row);
    return ok;
}

clred_status clred_tan_sip_fit_inverse(clred_tan_sip *s, double x0, double y0, double x1, double y1)
{
    if (s->order == 0) {
        s->inv_order = 0;
        return CLRED_OK;
    }
    /* The inverse of a polynomial is not one: a degree higher keeps the
     * round trip well below a hundredth of a pixel for mild distortions. */
    int order = s->order + 1 < CLRED_POLY_N - 1 ? s->order + 1 : CLRED_POLY_N - 1;
    enum { G = 40 };
    size_t n = G * G;
    double *U = malloc(n * sizeof *U), *V = malloc(n * sizeof *V), *du = malloc(n * sizeof *du),
           *dv = malloc(n * sizeof *dv);
    clred_status st = U && V && du && dv ? CLRED_OK : clred_fail(CLRED_ERR_MEMORY, "out of memory for a SIP inverse");
    for (int j = 0; st == CLRED_OK && j < G; j++)
        for (int i = 0; i < G; i++) {
            double u = x0 + (x1 - x0) * i / (G - 1) - s->crpix[0], v = y0 + (y1 - y0) * j / (G - 1) - s->crpix[1];
            size_t k = (size_t)j * G + i;
            U[k] = u + clred_poly_eval(&s->a, s->order, u, v);
            V[k] = v + clred_poly_eval(&s->b, s->order, u, v);
            du[k] = u - U[k];
            dv[k] = v - V[k];
        }
    double scale = fmax(fmax(fabs(x0 - s->crpix[0]), fabs(x1 - s->crpix[0])),
                        fmax(fabs(y0 - s->crpix[1]), fabs(y1 - s->crpix[1])));
    if (st == CLRED_OK && !fit_pair(U, V, du, dv, NULL, n, order, 1, scale > 0 ? scale : 1, &s->ap, &s->bp))
        st = clred_fail(CLRED_ERR_INPUT, "the SIP inverse fit is singular");
    if (st == CLRED_OK)
        s->inv_order = order;
    free(U);
    free(V);
    free(du);
    free(dv);
    return st;
}

void clred_tan_sip_pix2sky(const clred_tan_sip *s, double x, double y, double *ra, double *dec)
{
    double u = x - s->crpix[0], v = y - s->crpix[1];
    if (s->order) {
        double fu = clred_poly_eval(&s->a, s->order, u, v), fv = clred_poly_eval(&s->b, s->order, u, v);
        u += fu;
        v += fv;
    }
    double xi = s->cd[0] * u + s->cd[1] * v, eta = s->cd[2] * u + s->cd[3] * v;
    clred_tan_deproject(s->crval, xi, eta, ra, dec);
}

clred_status clred_tan_sip_fit(const double *x, const double *y, const double *ra, const double *dec, size_t n,
                               const clred_tan_sip_fit_opts *o, clred_tan_sip *s, unsigned char *use,
                               clred_tan_sip_fit_info *info)
{
    memset(info, 0, sizeof *info);
    int order = o->order;
    int ps[MAXTERMS], qs[MAXTERMS];
    /* Unknowns per axis: the linear part (3) and SIP of degree 2..order. */
    int nterms = monomials(order < 1 ? 1 : order, ps, qs, 0);
    double *xi = malloc(n * sizeof *xi), *eta = malloc(n * sizeof *eta), *u = malloc(n * sizeof *u),
           *v = malloc(n * sizeof *v);
    if (!xi || !eta || !u || !v) {
        free(xi), free(eta), free(u), free(v);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for an astrometric fit of %zu stars", n);
    }
    for (size_t i = 0; i < n; i++)
        use[i] = isfinite(x[i]) && isfinite(y[i]) && isfinite(ra[i]) && isfinite(dec[i]);
    clred_status st = CLRED_OK;
    for (int iter = 0; iter <= o->max_iters; iter++) {
        size_t nused = 0;
        for (size_t i = 0; i < n; i++)
            nused += use[i];
        if (nused < (size_t)nterms + 2) {
            st = clred_fail(CLRED_ERR_INPUT,
                            "astrometry: %zu matched stars cannot constrain a TAN-SIP fit of order %d (%d terms per "
                            "axis); use a lower --sip-order or more reference stars",
                            nused, order, nterms);
            break;
        }
        /* Standard coordinates about the current CRVAL; the tangent point
         * is then moved to the fit's reference pixel, and the fit repeated
         * once so that CRVAL sits on CRPIX exactly. */
        for (int pass = 0; pass < 2; pass++) {
            for (size_t i = 0; i < n; i++) {
                clred_tan_project(s->crval, ra[i], dec[i], &xi[i], &eta[i]);
                u[i] = x[i] - s->crpix[0];
                v[i] = y[i] - s->crpix[1];
            }
            clred_poly fx, fy;
            double scale = 0;
            for (size_t i = 0; i < n; i++)
                if (use[i])
                    scale = fmax(scale, fmax(fabs(u[i]), fabs(v[i])));
            if (!fit_pair(u, v, xi, eta, use, n, order < 1 ? 1 : order, 0, scale > 0 ? scale : 1, &fx, &fy)) {
                st = clred_fail(CLRED_ERR_INPUT, "astrometry: the fit is singular (stars on a line?)");
                break;
            }
            /* xi = c00 + c10 u + c01 v + higher terms: the linear part gives
             * CD, the constant moves the tangent point. */
            double cd[4] = {fx.c[1][0], fx.c[0][1], fy.c[1][0], fy.c[0][1]};
            double det = cd[0] * cd[3] - cd[1] * cd[2];
            if (!(fabs(det) > 0)) {
                st = clred_fail(CLRED_ERR_INPUT, "astrometry: the fitted linear part is singular");
                break;
            }
            double ra0, dec0;
            clred_tan_deproject(s->crval, fx.c[0][0], fy.c[0][0], &ra0, &dec0);
            s->crval[0] = ra0;
            s->crval[1] = dec0;
            memcpy(s->cd, cd, sizeof cd);
            /* SIP: (u + A, v + B) = CD^-1 (higher terms of xi, eta) */
            double inv[4] = {cd[3] / det, -cd[1] / det, -cd[2] / det, cd[0] / det};
            memset(&s->a, 0, sizeof s->a);
            memset(&s->b, 0, sizeof s->b);
            for (int p = 0; p <= order; p++)
                for (int q = 0; p + q <= order; q++) {
                    if (p + q < 2)
                        continue;
                    s->a.c[p][q] = inv[0] * fx.c[p][q] + inv[1] * fy.c[p][q];
                    s->b.c[p][q] = inv[2] * fx.c[p][q] + inv[3] * fy.c[p][q];
                }
            s->order = order >= 2 ? order : 0;
        }
        if (st != CLRED_OK)
            break;
        /* residuals in pixels (through the CD matrix's scale) */
        double scale_deg = sqrt(fabs(s->cd[0] * s->cd[3] - s->cd[1] * s->cd[2]));
        double sum2 = 0;
        size_t m = 0;
        double *r = xi; /* reused: residual per star, arcsec */
        for (size_t i = 0; i < n; i++) {
            double pra, pdec;
            clred_tan_sip_pix2sky(s, x[i], y[i], &pra, &pdec);
            double dra = (pra - ra[i]) * cos(dec[i] * M_PI / 180), ddec = pdec - dec[i];
            if (dra > 180)
                dra -= 360;
            if (dra < -180)
                dra += 360;
            r[i] = hypot(dra, ddec) * 3600.0;
            if (use[i]) {
                sum2 += r[i] * r[i];
                m++;
            }
        }
        double rms = sqrt(sum2 / (double)(m ? m : 1));
        info->rms_arcsec = rms;
        info->rms_px = rms / (scale_deg * 3600.0);
        info->nused = m;
        if (iter == o->max_iters)
            break;
        /* clip on the 2-D distance; rms per axis is rms / sqrt 2 */
        double limit = o->clip_sigma * rms / sqrt(2.0);
        int changed = 0;
        for (size_t i = 0; i < n; i++)
            if (use[i] && r[i] > limit && r[i] > 1e-3 * scale_deg * 3600.0) {
                use[i] = 0;
                changed = 1;
            }
        if (!changed)
            break;
    }
    free(xi), free(eta), free(u), free(v);
    return st;
}
