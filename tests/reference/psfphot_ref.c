#include "psfphot_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAXM CLRED_PSF_MAX_GROUP
#define MAXQ (1 + 3 * MAXM)

/* Keys' cubic convolution kernel (a = -0.5) and its derivative. */
static double kern(double t)
{
    double a = fabs(t);
    return a < 1 ? 1.5 * a * a * a - 2.5 * a * a + 1 : a < 2 ? -0.5 * a * a * a + 2.5 * a * a - 4 * a + 2 : 0;
}

static double dkern(double t)
{
    double a = fabs(t), d = a < 1 ? 4.5 * a * a - 5 * a : a < 2 ? -1.5 * a * a + 5 * a - 4 : 0;
    return t < 0 ? -d : d;
}

/* P(u, v) = sum_ij K(u + c - i) K(v + c - j) psf[j][i], c the centre index;
 * and its partial derivatives in u and v. */
static double psf_value(const clred_psf *p, double u, double v, double *du, double *dv)
{
    double c = (double)(p->size / 2), s = 0, su = 0, sv = 0;
    long i0 = (long)floor(u + c) - 1, j0 = (long)floor(v + c) - 1;
    for (long j = j0; j <= j0 + 3; j++)
        for (long i = i0; i <= i0 + 3; i++) {
            if (i < 0 || j < 0 || i >= (long)p->size || j >= (long)p->size)
                continue;
            double d = p->data[(size_t)j * p->size + (size_t)i];
            double ku = kern(u + c - (double)i), kv = kern(v + c - (double)j);
            s += ku * kv * d;
            su += dkern(u + c - (double)i) * kv * d;
            sv += ku * dkern(v + c - (double)j) * d;
        }
    *du = su;
    *dv = sv;
    return s;
}

/* Solves the symmetric positive definite system m q = rhs by Gauss-Jordan
 * with partial pivoting and returns the inverse in inv; 0 when singular. */
static int invert(int n, const double *m, double *inv)
{
    double a[MAXQ][2 * MAXQ];
    for (int i = 0; i < n; i++)
        for (int j = 0; j < 2 * n; j++)
            a[i][j] = j < n ? m[i * MAXQ + j] : (j - n == i);
    for (int c = 0; c < n; c++) {
        int piv = c;
        for (int r = c + 1; r < n; r++)
            if (fabs(a[r][c]) > fabs(a[piv][c]))
                piv = r;
        if (!(fabs(a[piv][c]) > 0))
            return 0;
        for (int j = 0; j < 2 * n; j++) {
            double t = a[c][j];
            a[c][j] = a[piv][j];
            a[piv][j] = t;
        }
        double d = a[c][c];
        for (int j = 0; j < 2 * n; j++)
            a[c][j] /= d;
        for (int r = 0; r < n; r++)
            if (r != c && a[r][c] != 0) {
                double f = a[r][c];
                for (int j = 0; j < 2 * n; j++)
                    a[r][j] -= f * a[c][j];
            }
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            inv[i * MAXQ + j] = a[i][j + n];
    return 1;
}

static int usable(const clred_image *img, size_t i, uint16_t ignore)
{
    if (!isfinite(img->sci[i]) || (img->mask && (img->mask[i] & ignore)))
        return 0;
    return !img->var || (img->var[i] > 0 && isfinite(img->var[i]));
}

static void fit_one(const clred_image *img, const clred_psf *psf, const double *x, const double *y, size_t n,
                    size_t self, double fit_radius, double group_radius, double core_radius, int fit_sky, int fit_pos,
                    int max_iters, double max_shift, double min_snr_pos, uint16_t ignore, psfphot_ref_result *res)
{
    /* members: self, then the nearest neighbours within group_radius */
    size_t mem[MAXM];
    int g = 1;
    mem[0] = self;
    double dist[MAXM];
    dist[0] = 0;
    for (size_t j = 0; j < n && group_radius > 0; j++) {
        if (j == self)
            continue;
        double d = hypot(x[j] - x[self], y[j] - y[self]);
        if (!(d <= group_radius))
            continue;
        int at = g;
        while (at > 1 && dist[at - 1] > d)
            at--;
        if (at >= MAXM)
            continue;
        for (int q = (g < MAXM ? g : MAXM - 1); q > at; q--)
            mem[q] = mem[q - 1], dist[q] = dist[q - 1];
        mem[at] = j;
        dist[at] = d;
        if (g < MAXM)
            g++;
    }
    unsigned flags = g > 1 ? CLRED_SRC_BLENDED : 0;
    double sx[MAXM], sy[MAXM], px[MAXM], py[MAXM], f[MAXM] = {0}, sky = 0;
    int held[MAXM];
    for (int k = 0; k < g; k++) {
        sx[k] = px[k] = x[mem[k]];
        sy[k] = py[k] = y[mem[k]];
        held[k] = !fit_pos;
    }
    long w = (long)img->width, h = (long)img->height;
    double xs = x[self], ys = y[self];
    if (xs - fit_radius < -0.5 || ys - fit_radius < -0.5 || xs + fit_radius > w - 0.5 || ys + fit_radius > h - 0.5)
        flags |= CLRED_SRC_EDGE;
    int nq = 1 + 3 * g, converged = 0, npass = fit_pos ? max_iters + 2 : 2;
    memset(res, 0, sizeof *res);
    for (int pass = 0; pass < npass; pass++) {
        int last = pass == npass - 1 || converged;
        int fixed[MAXQ];
        fixed[0] = !fit_sky;
        for (int k = 0; k < g; k++) {
            fixed[1 + k] = 0;
            fixed[1 + g + 2 * k] = fixed[2 + g + 2 * k] = pass == 0 || held[k];
        }
        double m[MAXQ * MAXQ] = {0}, rhs[MAXQ] = {0}, chi2 = 0;
        size_t npix = 0;
        for (long j = 0; j < h; j++)
            for (long i = 0; i < w; i++) {
                int in = 0;
                for (int k = 0; k < g; k++)
                    in |= hypot((double)i - sx[k], (double)j - sy[k]) <= fit_radius;
                if (!in)
                    continue;
                size_t q = (size_t)j * (size_t)w + (size_t)i;
                if (!usable(img, q, ignore)) {
                    if (hypot((double)i - sx[0], (double)j - sy[0]) <= core_radius)
                        flags |= CLRED_SRC_MASKED;
                    continue;
                }
                double wt = img->var ? 1.0 / img->var[q] : 1.0, d[MAXQ], model = sky;
                d[0] = 1;
                for (int k = 0; k < g; k++) {
                    double du, dv, pk = psf_value(psf, (double)i - px[k], (double)j - py[k], &du, &dv);
                    model += f[k] * pk;
                    d[1 + k] = pk;
                    d[1 + g + 2 * k] = -f[k] * du;
                    d[2 + g + 2 * k] = -f[k] * dv;
                }
                for (int k = 0; k < nq; k++)
                    if (fixed[k])
                        d[k] = 0;
                double r = img->sci[q] - model;
                chi2 += wt * r * r;
                npix++;
                for (int a = 0; a < nq; a++) {
                    rhs[a] += wt * d[a] * r;
                    for (int b = 0; b < nq; b++)
                        m[a * MAXQ + b] += wt * d[a] * d[b];
                }
            }
        int nfree = 0;
        for (int k = 0; k < nq; k++) {
            nfree += !fixed[k];
            if (fixed[k])
                m[k * MAXQ + k] = 1;
        }
        double inv[MAXQ * MAXQ];
        if ((int)npix <= nfree || !invert(nq, m, inv)) {
            res->flags = flags | CLRED_SRC_PSF_FAILED;
            res->flux = res->flux_err = res->x_err = res->y_err = res->sky = res->chi2_dof = NAN;
            res->x = xs, res->y = ys, res->npix = npix;
            return;
        }
        if (last) {
            double scale = img->var ? 1.0 : chi2 / (double)(npix - (size_t)nfree);
            res->x = px[0];
            res->y = py[0];
            res->flux = f[0];
            res->flux_err = sqrt(inv[1 * MAXQ + 1] * scale);
            res->x_err = fixed[1 + g] ? NAN : sqrt(inv[(1 + g) * MAXQ + 1 + g] * scale);
            res->y_err = fixed[2 + g] ? NAN : sqrt(inv[(2 + g) * MAXQ + 2 + g] * scale);
            res->sky = sky;
            res->chi2_dof = img->var ? chi2 / (double)(npix - (size_t)nfree) : NAN;
            res->npix = npix;
            res->flags = flags;
            return;
        }
        double step[MAXQ];
        for (int a = 0; a < nq; a++) {
            step[a] = 0;
            for (int b = 0; b < nq; b++)
                step[a] += inv[a * MAXQ + b] * rhs[b];
        }
        sky += step[0];
        for (int k = 0; k < g; k++)
            f[k] += step[1 + k];
        if (pass == 0) {
            for (int k = 0; k < g && fit_pos; k++)
                if (!(fabs(f[k]) >= min_snr_pos * sqrt(fmax(inv[(1 + k) * MAXQ + 1 + k], 0))))
                    held[k] = 1;
            if (fit_pos && held[0])
                flags |= CLRED_SRC_PSF_FIXED;
            continue;
        }
        double biggest = 0;
        for (int k = 0; k < g; k++) {
            double ux = fmin(fmax(step[1 + g + 2 * k], -0.5), 0.5), uy = fmin(fmax(step[2 + g + 2 * k], -0.5), 0.5);
            px[k] += ux;
            py[k] += uy;
            biggest = fmax(biggest, fmax(fabs(ux), fabs(uy)));
        }
        for (int k = 0; k < g; k++)
            if (!held[k] && hypot(px[k] - sx[k], py[k] - sy[k]) > max_shift) {
                px[k] = sx[k], py[k] = sy[k];
                held[k] = 2;
                if (k == 0)
                    flags |= CLRED_SRC_PSF_FIXED;
                biggest = 1;
            }
        converged = biggest < 1e-3;
    }
}

void psfphot_ref(const clred_image *img, const clred_psf *psf, const double *x, const double *y, size_t n,
                 double fit_radius, double group_radius, double core_radius, int fit_sky, int fit_pos, int max_iters,
                 double max_shift, double min_snr_pos, uint16_t ignore, psfphot_ref_result *out)
{
    for (size_t i = 0; i < n; i++)
        fit_one(img, psf, x, y, n, i, fit_radius, group_radius, core_radius, fit_sky, fit_pos, max_iters, max_shift,
                min_snr_pos, ignore, &out[i]);
}
