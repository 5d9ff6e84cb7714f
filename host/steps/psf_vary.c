/* The spatially varying PSF model (PSFEx-style): each pixel of the model a
 * polynomial of order 1 or 2 in the star position, fitted to the stars'
 * recentred unit-sum stamps by weighted least squares with iterative
 * rejection of outlier stars; its evaluation anywhere on the image. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "psf_internal.h"

size_t clred_psf_nterms(int order) { return (size_t)((order + 1) * (order + 2) / 2); }

static size_t poly_terms(int order, double u, double v, double t[CLRED_PSF_MAX_TERMS])
{
    t[0] = 1;
    if (order < 1)
        return 1;
    t[1] = u;
    t[2] = v;
    if (order < 2)
        return 3;
    t[3] = u * u;
    t[4] = u * v;
    t[5] = v * v;
    return 6;
}

size_t clred_psf_terms(const clred_psf *p, double x, double y, double t[CLRED_PSF_MAX_TERMS])
{
    if (p->order <= 0 || !p->basis)
        return poly_terms(0, 0, 0, t);
    return poly_terms(p->order, (x - p->x0) / p->xscale, (y - p->y0) / p->yscale, t);
}

clred_status clred_psf_copy(const clred_psf *psf, clred_psf *out)
{
    memset(out, 0, sizeof *out);
    if (!psf || !psf->data || psf->size == 0)
        return clred_fail(CLRED_ERR_USAGE, "PSF copy: no PSF");
    size_t n2 = psf->size * psf->size, nb = psf->order > 0 && psf->basis ? psf->nterms : 0;
    *out = *psf;
    out->data = malloc(n2 * sizeof *out->data);
    out->basis = nb ? malloc(nb * n2 * sizeof *out->basis) : NULL;
    if (!out->data || (nb && !out->basis)) {
        free(out->data);
        free(out->basis);
        memset(out, 0, sizeof *out);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for a %zu px PSF", psf->size);
    }
    memcpy(out->data, psf->data, n2 * sizeof *out->data);
    if (nb)
        memcpy(out->basis, psf->basis, nb * n2 * sizeof *out->basis);
    return CLRED_OK;
}

double clred_psf_noise_gain(const clred_psf *psf, double x, double y)
{
    double t[CLRED_PSF_MAX_TERMS], q = 0;
    size_t nt = clred_psf_terms(psf, x, y, t);
    if (nt != psf->nterms || nt < 2 || psf->term_cov[0] != 1.0)
        return 1.0;
    for (size_t k = 0; k < nt; k++)
        for (size_t l = 0; l < nt; l++)
            q += t[k] * psf->term_cov[k * nt + l] * t[l];
    /* below the centre's only near the stars' weighted mean: keep the
     * measured error as a floor, it is the stars' typical one */
    return q > 1.0 ? sqrt(q) : 1.0;
}

clred_status clred_psf_eval(const clred_psf *psf, double x, double y, clred_psf *out)
{
    memset(out, 0, sizeof *out);
    if (!psf || !psf->data || psf->size == 0)
        return clred_fail(CLRED_ERR_USAGE, "PSF evaluation: no PSF");
    if (!isfinite(x) || !isfinite(y))
        return clred_fail(CLRED_ERR_USAGE, "PSF evaluation at (%g, %g): not a position", x, y);
    if (psf->order <= 0 || !psf->basis) {
        CLRED_TRY(clred_psf_copy(psf, out));
        out->order = 0;
        out->nterms = 1;
        free(out->basis);
        out->basis = NULL;
        return CLRED_OK;
    }
    size_t n2 = psf->size * psf->size;
    if (!(out->data = malloc(n2 * sizeof *out->data)))
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for a %zu px PSF", psf->size);
    out->size = psf->size;
    out->nstars = psf->nstars;
    out->wing_ring_px = psf->wing_ring_px;
    out->nterms = 1;
    double t[CLRED_PSF_MAX_TERMS], s = 0;
    size_t nt = clred_psf_terms(psf, x, y, t);
    double g = clred_psf_noise_gain(psf, x, y);
    out->model_err = psf->model_err;
    for (int k = 0; k < CLRED_PSF_WING_RINGS; k++)
        out->wing_err[k] = psf->wing_err[k] * g;
    for (size_t p = 0; p < n2; p++) {
        double v = 0;
        for (size_t k = 0; k < nt; k++)
            v += t[k] * psf->basis[k * n2 + p];
        out->data[p] = (float)v;
        s += v;
    }
    /* the basis sums to (1, 0, ...): s is 1 to rounding, far out of the
     * image it may not be (a polynomial extrapolated) */
    if (!(s > 0)) {
        clred_psf_free(out);
        return clred_fail(CLRED_ERR_INPUT, "PSF evaluation at (%g, %g): the model sums to %g there", x, y, s);
    }
    for (size_t p = 0; p < n2; p++)
        out->data[p] = (float)(out->data[p] / s);
    clred_psf_shape(out);
    return CLRED_OK;
}

clred_status clred_psf_corners(clred_psf *p)
{
    for (int c = 0; c < 4; c++) {
        double x = p->x0 + (c & 1 ? 1 : -1) * p->xscale, y = p->y0 + (c & 2 ? 1 : -1) * p->yscale;
        clred_psf q;
        clred_status st = clred_psf_eval(p, x, y, &q);
        if (st != CLRED_OK) {
            p->corner_fwhm[c] = p->corner_ellipticity[c] = NAN;
            continue; /* a model that does not extrapolate to the corner: NaN there, not a failure */
        }
        p->corner_fwhm[c] = q.fwhm;
        p->corner_ellipticity[c] = q.ellipticity;
        clred_psf_free(&q);
    }
    return CLRED_OK;
}

/* In-place Cholesky of the n x n a (row-major); 0 when not positive definite. */
static int cholesky(double *a, size_t n)
{
    for (size_t j = 0; j < n; j++) {
        double d = a[j * n + j];
        for (size_t k = 0; k < j; k++)
            d -= a[j * n + k] * a[j * n + k];
        if (!(d > 1e-12 * fabs(a[j * n + j])) || !(d > 0))
            return 0;
        d = sqrt(d);
        a[j * n + j] = d;
        for (size_t i = j + 1; i < n; i++) {
            double s = a[i * n + j];
            for (size_t k = 0; k < j; k++)
                s -= a[i * n + k] * a[j * n + k];
            a[i * n + j] = s / d;
        }
    }
    return 1;
}

static void chol_solve(const double *l, double *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        double s = b[i];
        for (size_t k = 0; k < i; k++)
            s -= l[i * n + k] * b[k];
        b[i] = s / l[i * n + i];
    }
    for (size_t i = n; i-- > 0;) {
        double s = b[i];
        for (size_t k = i + 1; k < n; k++)
            s -= l[k * n + i] * b[k];
        b[i] = s / l[i * n + i];
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int clred_psf_leverage(const clred_psf *p, const double *sx, const double *sy, const double *wt, size_t nstars,
                       double *h)
{
    double a[CLRED_PSF_MAX_TERMS * CLRED_PSF_MAX_TERMS] = {0}, t[CLRED_PSF_MAX_TERMS];
    size_t nt = 1;
    for (size_t i = 0; i < nstars; i++) {
        nt = clred_psf_terms(p, sx[i], sy[i], t);
        for (size_t k = 0; k < nt; k++)
            for (size_t l = 0; l < nt; l++)
                a[k * nt + l] += wt[i] * t[k] * t[l];
    }
    if (!nstars || !cholesky(a, nt))
        return 0;
    for (size_t i = 0; i < nstars; i++) {
        double b[CLRED_PSF_MAX_TERMS];
        clred_psf_terms(p, sx[i], sy[i], t);
        memcpy(b, t, nt * sizeof *b);
        chol_solve(a, b, nt);
        double q = 0;
        for (size_t k = 0; k < nt; k++)
            q += t[k] * b[k];
        h[i] = wt[i] * q;
    }
    return 1;
}

_Static_assert(sizeof(((clred_psf *)0)->term_cov) == CLRED_PSF_MAX_TERMS * CLRED_PSF_MAX_TERMS * sizeof(double),
               "clred_psf.term_cov holds the largest model's term covariance");

/* The kept stars' normal matrix over the terms (sum of weight T T^T, nt x
 * nt) into a, Cholesky-factored; 0 when it is singular (the stars do not
 * spread over the terms). */
static int stars_normal_matrix(const double *t, const double *wt, const unsigned char *keep, size_t nst, size_t nt,
                               double a[CLRED_PSF_MAX_TERMS * CLRED_PSF_MAX_TERMS])
{
    const size_t M = CLRED_PSF_MAX_TERMS;
    memset(a, 0, M * M * sizeof *a);
    for (size_t i = 0; i < nst; i++)
        if (keep[i])
            for (size_t k = 0; k < nt; k++)
                for (size_t l = 0; l < nt; l++)
                    a[k * nt + l] += wt[i] * t[i * M + k] * t[i * M + l];
    return cholesky(a, nt);
}

/* One weighted fit of the kept stars, pixel by pixel over the stars whose
 * pixel is not masked (NaN): coef (nt planes of n2). A pixel whose stars do
 * not constrain the terms takes their weighted mean as its constant term.
 * 0 when the whole stars' normal matrix is singular (the stars do not spread
 * over the terms). */
static int fit_once(const float *stamps, const double *t, const double *wt, const unsigned char *keep, size_t nst,
                    size_t size, size_t nt_core, double core_radius, double *coef)
{
    size_t n2 = size * size, nt = nt_core;
    double c = (double)(size / 2);
    const size_t M = CLRED_PSF_MAX_TERMS;
    double a[CLRED_PSF_MAX_TERMS * CLRED_PSF_MAX_TERMS];
    if (!stars_normal_matrix(t, wt, keep, nst, nt, a))
        return 0;
    for (size_t p = 0; p < n2; p++) {
        double ap[CLRED_PSF_MAX_TERMS * CLRED_PSF_MAX_TERMS] = {0}, b[CLRED_PSF_MAX_TERMS] = {0}, sw = 0, swv = 0;
        size_t m = 0;
        /* beyond the core the wings are faint and their variation small
         * against their noise: a constant (weighted mean) there */
        double dx = (double)(p % size) - c, dy = (double)(p / size) - c;
        nt = dx * dx + dy * dy <= core_radius * core_radius ? nt_core : 1;
        for (size_t i = 0; i < nst; i++) {
            float v = stamps[i * n2 + p];
            if (!keep[i] || !isfinite(v))
                continue;
            for (size_t k = 0; k < nt; k++) {
                b[k] += wt[i] * v * t[i * M + k];
                for (size_t l = 0; l < nt; l++)
                    ap[k * nt + l] += wt[i] * t[i * M + k] * t[i * M + l];
            }
            sw += wt[i];
            swv += wt[i] * v;
            m++;
        }
        for (size_t k = 0; k < nt_core; k++)
            coef[k * n2 + p] = 0;
        if (m >= CLRED_PSF_STARS_PER_TERM * nt && cholesky(ap, nt)) {
            chol_solve(ap, b, nt);
            for (size_t k = 0; k < nt; k++)
                coef[k * n2 + p] = b[k];
        } else if (sw > 0)
            coef[p] = swv / sw;
    }
    return 1;
}

/* The model's value at pixel p for star i. */
static double model_at(const double *coef, const double *t, size_t i, size_t p, size_t n2, size_t nt)
{
    double v = 0;
    for (size_t k = 0; k < nt; k++)
        v += t[i * CLRED_PSF_MAX_TERMS + k] * coef[k * n2 + p];
    return v;
}

/* Each kept star's misfit in its own noise units (sqrt(w) times the RMS of
 * its unmasked pixels less the model there); rejects those above median + 4
 * robust sigma (and twice the median). Returns how many were rejected. */
static size_t reject(const float *stamps, const double *t, const double *wt, unsigned char *keep, size_t nst, size_t n2,
                     size_t nt, const double *coef, double *r, double *sorted)
{
    size_t m = 0;
    for (size_t i = 0; i < nst; i++) {
        if (!keep[i])
            continue;
        double ss = 0;
        size_t np = 0;
        for (size_t p = 0; p < n2; p++) {
            if (!isfinite(stamps[i * n2 + p]))
                continue;
            double d = stamps[i * n2 + p] - model_at(coef, t, i, p, n2, nt);
            ss += d * d;
            np++;
        }
        r[i] = np ? sqrt(wt[i] * ss / (double)np) : INFINITY;
        sorted[m++] = r[i];
    }
    if (m < 3)
        return 0;
    qsort(sorted, m, sizeof *sorted, cmp_double);
    double med = sorted[m / 2];
    for (size_t i = 0; i < m; i++)
        sorted[i] = fabs(sorted[i] - med);
    qsort(sorted, m, sizeof *sorted, cmp_double);
    /* (at least the median above it: stars that all fit alike, e.g.
     * noiseless, are all kept) */
    double cut = med + fmax(4.0 * 1.4826 * sorted[m / 2], med);
    size_t out = 0;
    for (size_t i = 0; i < nst; i++)
        if (keep[i] && r[i] > cut) {
            keep[i] = 0;
            out++;
        }
    return out;
}

/* The stamp moved by (-dx, -dy): out(i, j) = in(i + dx, j + dy), bicubic;
 * NaN where a tap is NaN or outside. */
static void shift_stamp(const float *in, float *out, size_t n, double dx, double dy)
{
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < n; i++) {
            double x = (double)i + dx, y = (double)j + dy, v = 0;
            long ix = (long)floor(x), iy = (long)floor(y);
            for (long q = iy - 1; q <= iy + 2 && isfinite(v); q++)
                for (long r = ix - 1; r <= ix + 2 && isfinite(v); r++) {
                    double wgt = clred_psf_cubic_w((double)r - x) * clred_psf_cubic_w((double)q - y);
                    if (wgt == 0)
                        continue;
                    v = q < 0 || r < 0 || q >= (long)n || r >= (long)n ? NAN : v + wgt * in[(size_t)q * n + (size_t)r];
                }
            out[j * n + i] = (float)v;
        }
}

/* Each star's stamp recentred and rescaled against the model: the flux and
 * the sub-pixel offset that fit the model (linearised: a M + cx dM/dx + cy
 * dM/dy) to its unmasked pixels within radius rad of the centre; the stamp
 * is then moved by the offset (bicubic) and divided by the flux. A stamp's
 * own sum is off by whatever neighbour or masked pixel it holds and by its
 * sky's error times its area; its detected centre by the neighbours' light
 * and the noise. */
static void recentre(float *stamps, const float *orig, double *off, const double *t, unsigned char *keep, size_t nst,
                     size_t size, size_t nt, const double *coef, double rad)
{
    size_t n2 = size * size;
    double c = (double)(size / 2);
    for (size_t i = 0; i < nst; i++) {
        double a[9] = {0}, b[3] = {0};
        for (size_t p = 0; p < n2; p++) {
            size_t px = p % size, py = p / size;
            double dx = (double)px - c, dy = (double)py - c;
            float v = stamps[i * n2 + p];
            if (dx * dx + dy * dy > rad * rad || !isfinite(v) || px == 0 || py == 0 || px + 1 == size ||
                py + 1 == size)
                continue;
            double g[3] = {model_at(coef, t, i, p, n2, nt),
                           0.5 * (model_at(coef, t, i, p + 1, n2, nt) - model_at(coef, t, i, p - 1, n2, nt)),
                           0.5 * (model_at(coef, t, i, p + size, n2, nt) - model_at(coef, t, i, p - size, n2, nt))};
            for (int k = 0; k < 3; k++) {
                b[k] += g[k] * v;
                for (int l = 0; l < 3; l++)
                    a[k * 3 + l] += g[k] * g[l];
            }
        }
        if (!cholesky(a, 3)) {
            keep[i] = 0;
            continue;
        }
        chol_solve(a, b, 3);
        double scale = b[0], sx = -b[1] / b[0], sy = -b[2] / b[0];
        if (!(scale > 0.2) || !(fabs(sx) < 1.5) || !(fabs(sy) < 1.5)) { /* nothing like the model: out */
            keep[i] = 0;
            continue;
        }
        /* from the original stamp, by the offsets so far: one resampling,
         * not one per round (each smooths a little) */
        double *o = off + 3 * i;
        o[0] += sx;
        o[1] += sy;
        o[2] *= scale;
        float *st = stamps + i * n2;
        if (fabs(o[0]) > 0.005 || fabs(o[1]) > 0.005)
            shift_stamp(orig + i * n2, st, size, o[0], o[1]);
        else
            memcpy(st, orig + i * n2, n2 * sizeof *st);
        for (size_t p = 0; p < n2; p++)
            st[p] = (float)(st[p] / o[2]);
    }
}

/* clred_psf's term_cov from the kept stars' terms t and weights wt (left 0
 * when their normal matrix is singular). */
static void term_covariance(const double *t, const double *wt, const unsigned char *keep, size_t nst, size_t nt,
                            double *cov)
{
    const size_t cov_bytes = CLRED_PSF_MAX_TERMS * CLRED_PSF_MAX_TERMS * sizeof *cov;
    double a[CLRED_PSF_MAX_TERMS * CLRED_PSF_MAX_TERMS];
    memset(cov, 0, cov_bytes);
    if (!stars_normal_matrix(t, wt, keep, nst, nt, a))
        return;
    for (size_t l = 0; l < nt; l++) {
        double b[CLRED_PSF_MAX_TERMS] = {0};
        b[l] = 1.0;
        chol_solve(a, b, nt);
        for (size_t k = 0; k < nt; k++)
            cov[k * nt + l] = b[k];
    }
    double c0 = cov[0];
    if (!(c0 > 0)) {
        memset(cov, 0, cov_bytes);
        return;
    }
    for (size_t k = 0; k < nt * nt; k++)
        cov[k] /= c0;
    cov[0] = 1.0;
}

int clred_psf_fit_varying(float *stamps, const double *sx, const double *sy, const double *wt, size_t nstars,
                          size_t size, int order, size_t w, size_t h, double norm_radius, clred_psf *psf,
                          size_t *used, unsigned char *kept_mask)
{
    size_t n2 = size * size, nt = clred_psf_nterms(order), need = CLRED_PSF_STARS_PER_TERM * nt;
    if (nstars < need)
        return 0;
    double x0 = 0.5 * ((double)w - 1), y0 = 0.5 * ((double)h - 1);
    double xs = x0 > 0.5 ? x0 : 0.5, ys = y0 > 0.5 ? y0 : 0.5;
    double *t = malloc(nstars * CLRED_PSF_MAX_TERMS * sizeof *t), *coef = malloc(nt * n2 * sizeof *coef);
    double *r = malloc(nstars * sizeof *r), *sorted = malloc(nstars * sizeof *sorted);
    unsigned char *keep = malloc(nstars);
    float *orig = malloc(nstars * n2 * sizeof *orig);
    double *off = malloc(3 * nstars * sizeof *off);
    int ok = 1;
    if (!t || !coef || !r || !sorted || !keep || !orig || !off) {
        clred_fail(CLRED_ERR_MEMORY, "out of memory for a varying PSF fit of %zu stars", nstars);
        ok = -1;
    }
    size_t kept = nstars;
    for (size_t i = 0; i < nstars && ok == 1; i++) {
        poly_terms(order, (sx[i] - x0) / xs, (sy[i] - y0) / ys, t + i * CLRED_PSF_MAX_TERMS);
        keep[i] = 1;
        off[3 * i] = off[3 * i + 1] = 0;
        off[3 * i + 2] = 1;
    }
    if (ok == 1)
        memcpy(orig, stamps, nstars * n2 * sizeof *orig);
    /* fit, reject, renormalise the stamps against the model, refit: 4
     * rounds at most, the last one's fit kept */
    for (int round = 0; ok == 1; round++) {
        if (kept < need || !fit_once(stamps, t, wt, keep, nstars, size, nt, norm_radius, coef)) {
            ok = 0;
            break;
        }
        if (round == 4)
            break;
        reject(stamps, t, wt, keep, nstars, n2, nt, coef, r, sorted);
        recentre(stamps, orig, off, t, keep, nstars, size, nt, coef, norm_radius);
        kept = 0;
        for (size_t i = 0; i < nstars; i++)
            kept += keep[i];
    }
    if (ok == 1) {
        memset(psf, 0, sizeof *psf);
        psf->data = malloc(n2 * sizeof *psf->data);
        psf->basis = malloc(nt * n2 * sizeof *psf->basis);
        if (!psf->data || !psf->basis) {
            clred_psf_free(psf);
            clred_fail(CLRED_ERR_MEMORY, "out of memory for a varying PSF of %zu px", size);
            ok = -1;
        }
    }
    if (ok == 1) {
        /* the stamps have unit sum, so the terms' sums are (1, 0, ...) up to
         * rounding: make them exactly so (a term's sum taken off as a
         * multiple of the constant term, whose shape it barely changes) */
        double s0 = 0;
        for (size_t p = 0; p < n2; p++)
            s0 += coef[p];
        for (size_t k = 0; k < nt; k++) {
            double sk = 0;
            for (size_t p = 0; p < n2; p++)
                sk += (coef[k * n2 + p] /= s0);
            for (size_t p = 0; p < n2; p++)
                psf->basis[k * n2 + p] = (float)(k == 0 ? coef[p] : coef[k * n2 + p] - sk * coef[p]);
        }
        memcpy(psf->data, psf->basis, n2 * sizeof *psf->data);
        psf->size = size;
        psf->order = order;
        psf->nterms = nt;
        psf->x0 = x0;
        psf->y0 = y0;
        psf->xscale = xs;
        psf->yscale = ys;
        psf->nstars = kept;
        term_covariance(t, wt, keep, nstars, nt, psf->term_cov);
        clred_psf_shape(psf);
        clred_psf_corners(psf);
        *used = kept;
        if (kept_mask)
            memcpy(kept_mask, keep, nstars);
    }
    free(t);
    free(coef);
    free(r);
    free(sorted);
    free(keep);
    free(orig);
    free(off);
    return ok;
}
