/* Cross-dispersion profile fits of spectral frames: single and double
 * Gaussians per bin of columns, by Levenberg-Marquardt in double on the host
 * (a bin's profile is one value per row: too little work for a device). */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

enum { MAXP = 6 };

/* A model with np parameters at y: its value and derivatives. */
typedef double (*model_fn)(const double *p, double y, double *grad, double tie);

static double g(double y, double mu, double s) { return exp(-0.5 * (y - mu) * (y - mu) / (s * s)); }

/* a G(mu, s) + c; p = {a, mu, s, c} */
static double single(const double *p, double y, double *d, double tie)
{
    (void)tie;
    double e = g(y, p[1], p[2]), u = (y - p[1]) / p[2];
    d[0] = e;
    d[1] = p[0] * e * u / p[2];
    d[2] = p[0] * e * u * u / p[2];
    d[3] = 1;
    return p[0] * e + p[3];
}

/* a1 G(mu1, s) + a2 G(mu2, s) + c; p = {a1, mu1, a2, mu2, s, c} */
static double twin(const double *p, double y, double *d, double tie)
{
    (void)tie;
    double e1 = g(y, p[1], p[4]), e2 = g(y, p[3], p[4]), u1 = (y - p[1]) / p[4], u2 = (y - p[3]) / p[4];
    d[0] = e1;
    d[1] = p[0] * e1 * u1 / p[4];
    d[2] = e2;
    d[3] = p[2] * e2 * u2 / p[4];
    d[4] = (p[0] * e1 * u1 * u1 + p[2] * e2 * u2 * u2) / p[4];
    d[5] = 1;
    return p[0] * e1 + p[2] * e2 + p[5];
}

/* a1 (G(mu1, s) + tie G(mu2, s)) + c; p = {a1, mu1, mu2, s, c} */
static double tied(const double *p, double y, double *d, double tie)
{
    double e1 = g(y, p[1], p[3]), e2 = g(y, p[2], p[3]), u1 = (y - p[1]) / p[3], u2 = (y - p[2]) / p[3];
    d[0] = e1 + tie * e2;
    d[1] = p[0] * e1 * u1 / p[3];
    d[2] = p[0] * tie * e2 * u2 / p[3];
    d[3] = p[0] * (e1 * u1 * u1 + tie * e2 * u2 * u2) / p[3];
    d[4] = 1;
    return p[0] * (e1 + tie * e2) + p[4];
}

static double chi2_of(model_fn f, const double *p, const double *y, const double *v, size_t n, double tie)
{
    double d[MAXP], s = 0;
    for (size_t i = 0; i < n; i++) {
        double r = v[i] - f(p, y[i], d, tie);
        s += r * r;
    }
    return s;
}

/* Solves the k x k system a x = b by Gaussian elimination (partial
 * pivoting); 0 when singular. a and b are overwritten. */
static int solve(double *a, double *b, double *x, int k)
{
    for (int c = 0; c < k; c++) {
        int pv = c;
        for (int r = c + 1; r < k; r++)
            if (fabs(a[r * k + c]) > fabs(a[pv * k + c]))
                pv = r;
        if (!(fabs(a[pv * k + c]) > 0))
            return 0;
        for (int j = 0; j < k; j++) {
            double t = a[c * k + j];
            a[c * k + j] = a[pv * k + j];
            a[pv * k + j] = t;
        }
        double t = b[c];
        b[c] = b[pv];
        b[pv] = t;
        for (int r = c + 1; r < k; r++) {
            double f = a[r * k + c] / a[c * k + c];
            for (int j = c; j < k; j++)
                a[r * k + j] -= f * a[c * k + j];
            b[r] -= f * b[c];
        }
    }
    for (int r = k - 1; r >= 0; r--) {
        double s = b[r];
        for (int j = r + 1; j < k; j++)
            s -= a[r * k + j] * x[j];
        x[r] = s / a[r * k + r];
    }
    return 1;
}

/* Levenberg-Marquardt from p (k parameters); width_index names the width
 * parameter, kept positive. Returns 1 when it converged. */
static int lm(model_fn f, double *p, int k, int width_index, const double *y, const double *v, size_t n, double tie,
              double *chi2_out)
{
    double lambda = 1e-3, chi2 = chi2_of(f, p, y, v, n, tie);
    int converged = 0;
    for (int it = 0; it < 200 && !converged; it++) {
        double jtj[MAXP * MAXP] = {0}, jtr[MAXP] = {0}, d[MAXP];
        for (size_t i = 0; i < n; i++) {
            double r = v[i] - f(p, y[i], d, tie);
            for (int a = 0; a < k; a++) {
                jtr[a] += d[a] * r;
                for (int b = 0; b < k; b++)
                    jtj[a * k + b] += d[a] * d[b];
            }
        }
        for (int tries = 0; tries < 30; tries++) {
            double m[MAXP * MAXP], rhs[MAXP], step[MAXP], q[MAXP];
            memcpy(m, jtj, sizeof m);
            memcpy(rhs, jtr, sizeof rhs);
            for (int a = 0; a < k; a++)
                m[a * k + a] *= 1 + lambda;
            if (!solve(m, rhs, step, k)) {
                lambda *= 10;
                continue;
            }
            for (int a = 0; a < k; a++)
                q[a] = p[a] + step[a];
            if (!(q[width_index] > 1e-3)) {
                lambda *= 10;
                continue;
            }
            double c2 = chi2_of(f, q, y, v, n, tie);
            if (c2 <= chi2) {
                converged = chi2 - c2 <= 1e-10 * (chi2 + 1e-30);
                memcpy(p, q, (size_t)k * sizeof *p);
                chi2 = c2;
                lambda = fmax(lambda / 10, 1e-12);
                break;
            }
            lambda *= 10;
            if (tries == 29)
                converged = 1; /* no step lowers chi2: at a minimum */
        }
    }
    *chi2_out = chi2;
    return converged && isfinite(chi2);
}

static void fit_bin(const double *v, size_t n, double tie, clred_trace_bin *b)
{
    double *y = malloc(n * sizeof *y), *vv = malloc(n * sizeof *vv);
    if (!y || !vv) {
        free(y), free(vv);
        return;
    }
    size_t m = 0;
    double lo = INFINITY, hi = -INFINITY;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(v[i]))
            continue;
        y[m] = (double)i;
        vv[m] = v[i];
        if (v[i] < lo)
            lo = v[i];
        if (v[i] > hi) {
            hi = v[i];
            at = i;
        }
        m++;
    }
    b->amp = b->mu = b->sigma = b->offset = b->chi2 = NAN;
    b->amp1 = b->mu1 = b->amp2 = b->mu2 = b->sigma2 = b->offset2 = b->chi2_double = NAN;
    if (m < 8) {
        free(y), free(vv);
        return;
    }
    /* start: the peak, a width from the area above the lowest value */
    double area = 0;
    for (size_t i = 0; i < m; i++)
        area += vv[i] - lo;
    double s0 = hi > lo ? area / ((hi - lo) * 2.5066282746310002) : 1.0;
    s0 = fmin(fmax(s0, 0.7), (double)n / 4);
    double p[MAXP] = {hi - lo, (double)at, s0, lo}, c2;
    b->ok_single = lm(single, p, 4, 2, y, vv, m, 0, &c2);
    b->amp = p[0], b->mu = p[1], b->sigma = fabs(p[2]), b->offset = p[3], b->chi2 = c2;
    /* the double from the single: two halves a width apart */
    double mu = b->ok_single ? b->mu : (double)at, s = b->ok_single ? b->sigma : s0, a = b->ok_single ? b->amp : hi - lo;
    if (tie >= 0) {
        double q[MAXP] = {a / (1 + tie), mu - 0.5 * s, mu + 0.5 * s, s, b->ok_single ? b->offset : lo};
        b->ok_double = lm(tied, q, 5, 3, y, vv, m, tie, &c2);
        b->amp1 = q[0], b->mu1 = q[1], b->amp2 = tie * q[0], b->mu2 = q[2], b->sigma2 = fabs(q[3]);
        b->offset2 = q[4];
    } else {
        double q[MAXP] = {a / 2, mu - 0.5 * s, a / 2, mu + 0.5 * s, s, b->ok_single ? b->offset : lo};
        b->ok_double = lm(twin, q, 6, 4, y, vv, m, 0, &c2);
        b->amp1 = q[0], b->mu1 = q[1], b->amp2 = q[2], b->mu2 = q[3], b->sigma2 = fabs(q[4]), b->offset2 = q[5];
    }
    /* name the lower Gaussian first */
    if (b->mu2 < b->mu1) {
        double t = b->mu1;
        b->mu1 = b->mu2, b->mu2 = t;
        t = b->amp1;
        b->amp1 = b->amp2, b->amp2 = t;
    }
    b->chi2_double = c2;
    free(y), free(vv);
}

clred_status clred_trace_fit_frame(const clred_image *img, size_t bin, const double *tie_ratio, clred_trace_fit *out)
{
    memset(out, 0, sizeof *out);
    if (!img || !img->sci || img->width == 0 || img->height < 8)
        return clred_fail(CLRED_ERR_USAGE, "trace fit: need an image at least 8 rows high");
    if (bin == 0)
        bin = 25;
    size_t w = img->width, h = img->height, nb = (w + bin - 1) / bin;
    out->bins = calloc(nb, sizeof *out->bins);
    double *prof = malloc(h * sizeof *prof);
    if (!out->bins || !prof) {
        free(prof);
        clred_trace_fit_free(out);
        return clred_fail(CLRED_ERR_MEMORY, "trace fit: out of memory");
    }
    out->nbins = nb;
    for (size_t k = 0; k < nb; k++) {
        clred_trace_bin *b = &out->bins[k];
        b->x0 = k * bin;
        b->x1 = b->x0 + bin < w ? b->x0 + bin : w;
        for (size_t y = 0; y < h; y++) {
            double s = 0;
            size_t c = 0;
            for (size_t x = b->x0; x < b->x1; x++) {
                float v = img->sci[y * w + x];
                if (isfinite(v))
                    s += v, c++;
            }
            prof[y] = c ? s / (double)c : NAN;
        }
        double tie = tie_ratio && isfinite(tie_ratio[k]) && tie_ratio[k] >= 0 ? tie_ratio[k] : -1;
        fit_bin(prof, h, tie, b);
    }
    free(prof);
    return CLRED_OK;
}

void clred_trace_fit_free(clred_trace_fit *f)
{
    if (!f)
        return;
    free(f->bins);
    memset(f, 0, sizeof *f);
}

clred_status clred_trace_fit_write_csv(const char *path, const char *const *names, const clred_trace_fit *fits,
                                       size_t nfits, int overwrite)
{
    char tmp[PATH_MAX];
    FILE *f;
    CLRED_TRY(clred_atomic_open(path, overwrite, tmp, sizeof tmp, &f));
    fprintf(f, "frame,bin,x0,x1,amp,mu,sigma,offset,chi2,ok,amp1,mu1,amp2,mu2,sigma2,offset2,chi2_double,ok_double\n");
    for (size_t i = 0; i < nfits; i++)
        for (size_t k = 0; k < fits[i].nbins; k++) {
            const clred_trace_bin *b = &fits[i].bins[k];
            fprintf(f, "%s,%zu,%zu,%zu,%.9g,%.9g,%.9g,%.9g,%.9g,%d,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%d\n",
                    names ? names[i] : "frame", k, b->x0, b->x1, b->amp, b->mu, b->sigma, b->offset, b->chi2,
                    b->ok_single, b->amp1, b->mu1, b->amp2, b->mu2, b->sigma2, b->offset2, b->chi2_double,
                    b->ok_double);
        }
    return clred_atomic_close(f, tmp, path);
}

double clred_trace_fit_model(const clred_trace_fit *fit, size_t x, double y)
{
    for (size_t k = 0; k < fit->nbins; k++) {
        const clred_trace_bin *b = &fit->bins[k];
        if (x < b->x0 || x >= b->x1)
            continue;
        if (b->ok_double)
            return b->amp1 * g(y, b->mu1, b->sigma2) + b->amp2 * g(y, b->mu2, b->sigma2) + b->offset2;
        if (b->ok_single)
            return b->amp * g(y, b->mu, b->sigma) + b->offset;
        return NAN;
    }
    return NAN;
}

clred_status clred_trace_fit_infill(clred_image *img, const clred_trace_fit *fit, const uint8_t *spectral,
                                    size_t *ninfilled)
{
    if (ninfilled)
        *ninfilled = 0;
    if (!img || !img->sci || !fit || !spectral)
        return clred_fail(CLRED_ERR_USAGE, "trace infill: no image, fit or spectral region");
    size_t w = img->width, n = 0;
    for (size_t i = 0; i < w * img->height; i++) {
        float v = img->sci[i];
        if (!spectral[i] || (isfinite(v) && v >= 0))
            continue;
        double m = clred_trace_fit_model(fit, i % w, (double)(i / w));
        if (!isfinite(m))
            continue;
        img->sci[i] = (float)m;
        if (img->mask)
            img->mask[i] = (uint16_t)((img->mask[i] & ~CLRED_MASK_NO_DATA) | CLRED_MASK_INTERPOLATED);
        n++;
    }
    if (ninfilled)
        *ninfilled = n;
    return CLRED_OK;
}
