#include "sources_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void ref_matched_filter(const double *d, const double *rms, size_t w, size_t h, double fwhm, double *filtered,
                        double *snr, double *norm2)
{
    int half = fwhm > 0 ? (int)ceil(1.5 * fwhm) : 0;
    double s = fwhm / (2.0 * sqrt(2.0 * log(2.0)));
    int size = 2 * half + 1;
    double *k = malloc((size_t)size * size * sizeof *k);
    double total = 0, total2 = 0;
    for (int j = -half; j <= half; j++)
        for (int i = -half; i <= half; i++) {
            double v = fwhm > 0 ? exp(-(i * i + j * j) / (2 * s * s)) : 1.0;
            k[(j + half) * size + i + half] = v;
            total += v;
        }
    for (int i = 0; i < size * size; i++) {
        k[i] /= total;
        total2 += k[i] * k[i];
    }
    *norm2 = sqrt(total2);
    for (size_t y = 0; y < h; y++)
        for (size_t x = 0; x < w; x++) {
            double sum = 0, sk = 0, sk2v = 0;
            for (int j = -half; j <= half; j++)
                for (int i = -half; i <= half; i++) {
                    long xx = (long)x + i, yy = (long)y + j;
                    if (xx < 0 || yy < 0 || xx >= (long)w || yy >= (long)h)
                        continue;
                    double v = d[yy * (long)w + xx];
                    if (isnan(v))
                        continue;
                    double kv = k[(j + half) * size + i + half], r = rms[yy * (long)w + xx];
                    sum += kv * v;
                    sk += kv;
                    sk2v += kv * kv * r * r;
                }
            size_t o = y * w + x;
            filtered[o] = sk > 0 ? sum / sk : NAN;
            snr[o] = sk > 0 ? (sum / sk) / (sqrt(sk2v) / sk) : NAN;
        }
    free(k);
}

void ref_label(const unsigned char *on, size_t w, size_t h, uint32_t *labels)
{
    size_t n = w * h;
    size_t *queue = malloc((n ? n : 1) * sizeof *queue);
    for (size_t i = 0; i < n; i++)
        labels[i] = 0;
    for (size_t i = 0; i < n; i++) {
        if (!on[i] || labels[i])
            continue;
        /* raster order: i is the smallest index of its component */
        size_t head = 0, tail = 0;
        labels[i] = (uint32_t)(i + 1);
        queue[tail++] = i;
        while (head < tail) {
            size_t p = queue[head++];
            long px = (long)(p % w), py = (long)(p / w);
            for (long dy = -1; dy <= 1; dy++)
                for (long dx = -1; dx <= 1; dx++) {
                    long qx = px + dx, qy = py + dy;
                    if (qx < 0 || qy < 0 || qx >= (long)w || qy >= (long)h)
                        continue;
                    size_t q = (size_t)(qy * (long)w + qx);
                    if (on[q] && !labels[q]) {
                        labels[q] = (uint32_t)(i + 1);
                        queue[tail++] = q;
                    }
                }
        }
    }
    free(queue);
}

int ref_adaptive_moments(const double *d, size_t w, size_t h, const int32_t *seg, int32_t label, double x0,
                         double y0, double w0, double *x, double *y, double *cxx, double *cyy, double *cxy)
{
    double cx = x0, cy = y0, wxx = w0, wyy = w0, wxy = 0;
    for (int it = 0; it < 200; it++) {
        double det = wxx * wyy - wxy * wxy;
        double qxx = wyy / det, qyy = wxx / det, qxy = -wxy / det;
        double s = 0, sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
        /* the whole image: the window's weight beyond its 4-sigma ellipse is dropped as in the kernel */
        for (size_t py = 0; py < h; py++)
            for (size_t px = 0; px < w; px++) {
                size_t i = py * w + px;
                if (seg[i] != 0 && seg[i] != label)
                    continue;
                if (isnan(d[i]))
                    continue;
                double dx = (double)px - cx, dy = (double)py - cy;
                double q = qxx * dx * dx + 2 * qxy * dx * dy + qyy * dy * dy;
                if (q > 16.0)
                    continue;
                double wv = exp(-0.5 * q) * d[i];
                s += wv;
                sx += wv * dx;
                sy += wv * dy;
                sxx += wv * dx * dx;
                syy += wv * dy * dy;
                sxy += wv * dx * dy;
            }
        if (!(s > 0))
            return 0;
        double mx = sx / s, my = sy / s;
        double nxx = 2 * (sxx / s - mx * mx), nyy = 2 * (syy / s - my * my), nxy = 2 * (sxy / s - mx * my);
        double change = fabs(nxx - wxx) + fabs(nyy - wyy) + fabs(nxy - wxy);
        cx += mx;
        cy += my;
        wxx = nxx;
        wyy = nyy;
        wxy = nxy;
        if (fabs(mx) < 1e-9 && fabs(my) < 1e-9 && change < 1e-9 * (wxx + wyy)) {
            *x = cx;
            *y = cy;
            *cxx = wxx;
            *cyy = wyy;
            *cxy = wxy;
            return 1;
        }
    }
    return 0;
}

int ref_winpos(const double *d, size_t w, size_t h, const int32_t *seg, int32_t label, double x0, double y0,
               double sig, double *x, double *y)
{
    double px = x0, py = y0, reach = 4.0 * sig;
    for (int it = 0; it < 16; it++) {
        double s = 0, sx = 0, sy = 0;
        for (size_t qy = 0; qy < h; qy++)
            for (size_t qx = 0; qx < w; qx++) {
                size_t i = qy * w + qx;
                if ((seg[i] != 0 && seg[i] != label) || isnan(d[i]))
                    continue;
                double dx = (double)qx - px, dy = (double)qy - py, r2 = dx * dx + dy * dy;
                if (r2 > reach * reach)
                    continue;
                double wv = exp(-0.5 * r2 / (sig * sig)) * d[i];
                s += wv;
                sx += wv * dx;
                sy += wv * dy;
            }
        if (!(s > 0))
            return 0;
        double stx = 2 * sx / s, sty = 2 * sy / s;
        px += stx;
        py += sty;
        if (stx * stx + sty * sty < 1e-8)
            break;
    }
    *x = px;
    *y = py;
    return 1;
}

static int ref_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int ref_clipped_level(const double *v0, size_t m, double *level, double *rms)
{
    if (m < 3)
        return 0;
    double *v = malloc(m * sizeof *v);
    memcpy(v, v0, m * sizeof *v);
    qsort(v, m, sizeof *v, ref_cmp_double);
    size_t lo = 0, hi = m;
    double med = 0, sd = 0;
    for (int it = 0; it < 10; it++) {
        size_t k = hi - lo;
        med = 0.5 * (v[lo + (k - 1) / 2] + v[lo + k / 2]);
        double s = 0, s2 = 0;
        for (size_t i = lo; i < hi; i++)
            s += v[i];
        for (size_t i = lo; i < hi; i++)
            s2 += (v[i] - s / k) * (v[i] - s / k);
        sd = k > 1 ? sqrt(s2 / (double)(k - 1)) : 0.0;
        size_t nlo = lo, nhi = hi;
        while (nlo < nhi && v[nlo] < med - 3.0 * sd)
            nlo++;
        while (nhi > nlo && v[nhi - 1] > med + 3.0 * sd)
            nhi--;
        if ((nlo == lo && nhi == hi) || nhi - nlo < 3)
            break;
        lo = nlo;
        hi = nhi;
    }
    free(v);
    *level = med;
    *rms = sd;
    return 1;
}

void ref_filter_2d(const double *d, const double *rms, size_t w, size_t h, const double *k, int kw, int kh,
                   int renorm, double *filtered, double *snr)
{
    int rx = kw / 2, ry = kh / 2;
    for (size_t y = 0; y < h; y++)
        for (size_t x = 0; x < w; x++) {
            double s = 0, sk = 0, sv = 0;
            int used = 0;
            for (int j = -ry; j <= ry; j++)
                for (int i = -rx; i <= rx; i++) {
                    long xx = (long)x + i, yy = (long)y + j;
                    if (xx < 0 || yy < 0 || xx >= (long)w || yy >= (long)h)
                        continue;
                    size_t p = (size_t)yy * w + (size_t)xx;
                    if (isnan(d[p]))
                        continue;
                    double kk = k[(j + ry) * kw + i + rx];
                    s += kk * d[p];
                    sk += kk;
                    sv += kk * kk * rms[p] * rms[p];
                    used++;
                }
            size_t o = y * w + x;
            int has = renorm ? sk > 0 : used > 0;
            filtered[o] = has ? (renorm ? s / sk : s) : NAN;
            snr[o] = has ? s / sqrt(sv) : NAN;
        }
}
