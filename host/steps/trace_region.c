/* The spectral region of a CUTE-like frame found from its trace: the
 * profile fits of each bin of columns (trace_fit.c) give a centre, a width
 * and a peak separation per bin; low-order polynomials in x smooth them over
 * the frame, and the rows within the separation's half plus k widths of the
 * centre are spectral. On the host: a few hundred numbers. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

clred_trace_region_opts clred_trace_region_defaults(void)
{
    clred_trace_region_opts o;
    memset(&o, 0, sizeof o);
    o.bin = 25;
    o.order = 2;
    o.k = 5.0;
    return o;
}

/* Least squares of a polynomial of degree order in u (the normal
 * equations, order <= 3: well conditioned for u in [-1, 1]) over the points
 * with use set; 0 when singular. */
static int polyfit(const double *u, const double *v, const int *use, size_t n, int order, double *coef)
{
    enum { M = CLRED_TRACE_REGION_MAX_ORDER + 1 };
    int m = order + 1;
    double a[M][M + 1];
    memset(a, 0, sizeof a);
    for (size_t i = 0; i < n; i++) {
        if (!use[i])
            continue;
        double pw[M];
        pw[0] = 1;
        for (int j = 1; j < m; j++)
            pw[j] = pw[j - 1] * u[i];
        for (int r = 0; r < m; r++) {
            for (int c = 0; c < m; c++)
                a[r][c] += pw[r] * pw[c];
            a[r][m] += pw[r] * v[i];
        }
    }
    for (int c = 0; c < m; c++) {
        int piv = c;
        for (int r = c + 1; r < m; r++)
            if (fabs(a[r][c]) > fabs(a[piv][c]))
                piv = r;
        if (!(fabs(a[piv][c]) > 1e-12))
            return 0;
        for (int k = 0; k <= m; k++) {
            double t = a[c][k];
            a[c][k] = a[piv][k];
            a[piv][k] = t;
        }
        for (int r = 0; r < m; r++) {
            if (r == c)
                continue;
            double f = a[r][c] / a[c][c];
            for (int k = c; k <= m; k++)
                a[r][k] -= f * a[c][k];
        }
    }
    for (int j = 0; j < M; j++)
        coef[j] = j < m ? a[j][m] / a[j][j] : 0.0;
    return 1;
}

double clred_trace_region_poly(const double *coef, int order, double u)
{
    double v = 0;
    for (int j = order; j >= 0; j--)
        v = v * u + coef[j];
    return v;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Fits v(u), then once more without the points further than 4 robust
 * sigmas (1.4826 MAD) from the first fit: a bin whose fit went astray (a
 * cosmic ray, a bad column) does not bend the curve. */
static int robust_fit(const double *u, const double *v, int *use, size_t n, int order, double *coef, double *scratch)
{
    if (!polyfit(u, v, use, n, order, coef))
        return 0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (use[i])
            scratch[k++] = fabs(v[i] - clred_trace_region_poly(coef, order, u[i]));
    qsort(scratch, k, sizeof *scratch, cmp_double);
    double mad = k ? (k % 2 ? scratch[k / 2] : 0.5 * (scratch[k / 2 - 1] + scratch[k / 2])) : 0;
    double limit = 4 * 1.482602218505602 * mad;
    if (!(limit > 0))
        return 1;
    int *keep = malloc(n * sizeof *keep);
    if (!keep)
        return 1;
    size_t nkeep = 0;
    for (size_t i = 0; i < n; i++) {
        keep[i] = use[i] && fabs(v[i] - clred_trace_region_poly(coef, order, u[i])) <= limit;
        nkeep += keep[i];
    }
    double c2[CLRED_TRACE_REGION_MAX_ORDER + 1];
    if (nkeep > (size_t)order && polyfit(u, v, keep, n, order, c2)) {
        memcpy(coef, c2, sizeof c2);
        memcpy(use, keep, n * sizeof *use);
    }
    free(keep);
    return 1;
}

clred_status clred_trace_region_find(const clred_image *frame, const clred_trace_region_opts *opts, uint8_t *spectral,
                                     clred_trace_region *out)
{
    clred_trace_region_opts o = opts ? *opts : clred_trace_region_defaults();
    clred_trace_region r;
    memset(&r, 0, sizeof r);
    if (!frame || !frame->sci || !spectral)
        return clred_fail(CLRED_ERR_USAGE, "trace region: no frame or output mask given");
    if (o.order < 0 || o.order > CLRED_TRACE_REGION_MAX_ORDER || !(o.k > 0) || o.bin == 0)
        return clred_fail(CLRED_ERR_USAGE, "trace region: order %d (0..%d), k %g (> 0) or bin %zu (> 0) out of range",
                          o.order, CLRED_TRACE_REGION_MAX_ORDER, o.k, o.bin);
    size_t w = frame->width, h = frame->height;
    clred_trace_fit fit;
    CLRED_TRY(clred_trace_fit_frame(frame, o.bin, NULL, &fit));
    size_t n = fit.nbins;
    double *u = malloc(n * sizeof *u), *cen = malloc(n * sizeof *cen), *sig = malloc(n * sizeof *sig),
           *sep = malloc(n * sizeof *sep), *scratch = malloc(n * sizeof *scratch);
    int *use = malloc(n * sizeof *use), *use2 = malloc(n * sizeof *use2), *use3 = malloc(n * sizeof *use3);
    clred_status st = u && cen && sig && sep && scratch && use && use2 && use3
                          ? CLRED_OK
                          : clred_fail(CLRED_ERR_MEMORY, "trace region: out of memory");
    size_t nuse = 0;
    for (size_t b = 0; st == CLRED_OK && b < n; b++) {
        const clred_trace_bin *tb = &fit.bins[b];
        u[b] = w > 1 ? 2.0 * (0.5 * (double)(tb->x0 + tb->x1 - 1)) / (double)(w - 1) - 1.0 : 0.0;
        /* the double Gaussian where it is a real pair (both peaks positive,
         * the weaker at least a tenth of the stronger) and fits better;
         * else the single one (its separation 0) */
        double lo = fmin(tb->amp1, tb->amp2), hi = fmax(tb->amp1, tb->amp2);
        int pair = tb->ok_double && lo > 0 && lo >= 0.1 * hi && tb->chi2_double < tb->chi2 && tb->sigma2 != 0;
        if (pair) {
            cen[b] = 0.5 * (tb->mu1 + tb->mu2);
            sig[b] = fabs(tb->sigma2);
            sep[b] = fabs(tb->mu2 - tb->mu1);
        } else {
            cen[b] = tb->mu;
            sig[b] = fabs(tb->sigma);
            sep[b] = 0;
        }
        /* a bin whose fit found no trace inside the frame is not used */
        use[b] = tb->ok_single && tb->amp > 0 && cen[b] >= 0 && cen[b] <= (double)(h - 1) && sig[b] > 0 &&
                 sig[b] < (double)h;
        nuse += use[b];
    }
    if (st == CLRED_OK && nuse <= (size_t)o.order)
        st = clred_fail(CLRED_ERR_INPUT,
                        "trace region: only %zu of %zu bins of %zu columns have a fitted trace; a polynomial of "
                        "degree %d needs %d",
                        nuse, n, o.bin, o.order, o.order + 1);
    if (st == CLRED_OK) {
        memcpy(use2, use, n * sizeof *use);
        memcpy(use3, use, n * sizeof *use);
        r.order = o.order;
        if (!robust_fit(u, cen, use, n, o.order, r.centre, scratch) ||
            !robust_fit(u, sig, use2, n, o.order, r.sigma, scratch) ||
            !robust_fit(u, sep, use3, n, o.order, r.split, scratch))
            st = clred_fail(CLRED_ERR_INPUT, "trace region: the bins' centres do not determine a polynomial of "
                                             "degree %d", o.order);
    }
    for (size_t b = 0; st == CLRED_OK && b < n; b++)
        r.nbins_used += use[b];
    r.k = o.k;
    for (size_t x = 0; st == CLRED_OK && x < w; x++) {
        double ux = w > 1 ? 2.0 * (double)x / (double)(w - 1) - 1.0 : 0.0;
        double c = clred_trace_region_poly(r.centre, r.order, ux);
        double s = fmax(clred_trace_region_poly(r.sigma, r.order, ux), 0.0);
        double d = fmax(clred_trace_region_poly(r.split, r.order, ux), 0.0);
        double half = 0.5 * d + o.k * s;
        for (size_t y = 0; y < h; y++) {
            uint8_t in = fabs((double)y - c) <= half;
            spectral[y * w + x] = in;
            r.nspectral += in;
        }
    }
    free(u), free(cen), free(sig), free(sep), free(scratch), free(use), free(use2), free(use3);
    clred_trace_fit_free(&fit);
    if (st == CLRED_OK && out)
        *out = r;
    return st;
}
