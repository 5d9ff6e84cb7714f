/* Double-precision L.A.Cosmic written for clarity, not speed. */
#include "cosmic_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double cosmic_ref_median(double *v, size_t n)
{
    if (n == 0)
        return NAN;
    qsort(v, n, sizeof *v, cmp_double);
    return (n & 1) ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void square_median(const double *in, double *out, int w, int h, int r)
{
    double v[49];
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            if (x < r || y < r || x >= w - r || y >= h - r) {
                out[y * w + x] = in[y * w + x];
                continue;
            }
            size_t k = 0;
            for (int dy = -r; dy <= r; dy++)
                for (int dx = -r; dx <= r; dx++)
                    v[k++] = in[(y + dy) * w + x + dx];
            out[y * w + x] = cosmic_ref_median(v, k);
        }
}

static void separable_median(const double *in, double *out, int w, int h, int r)
{
    double *rows = malloc((size_t)w * h * sizeof *rows);
    double v[9];
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            if (x < r || x >= w - r) {
                rows[y * w + x] = in[y * w + x];
                continue;
            }
            for (int d = -r; d <= r; d++)
                v[d + r] = in[y * w + x + d];
            rows[y * w + x] = cosmic_ref_median(v, (size_t)(2 * r + 1));
        }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            if (x < r || y < r || x >= w - r || y >= h - r) {
                out[y * w + x] = in[y * w + x];
                continue;
            }
            for (int d = -r; d <= r; d++)
                v[d + r] = rows[(y + d) * w + x];
            out[y * w + x] = cosmic_ref_median(v, (size_t)(2 * r + 1));
        }
    free(rows);
}

void cosmic_ref_median_filter(const double *in, double *out, int w, int h, int size, int separable)
{
    if (separable)
        separable_median(in, out, w, h, size / 2);
    else
        square_median(in, out, w, h, size / 2);
}

void cosmic_ref_dilate(const uint8_t *in, uint8_t *out, int w, int h, int radius)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int hit = 0;
            for (int dy = -radius; dy <= radius; dy++)
                for (int dx = -radius; dx <= radius; dx++) {
                    if (radius >= 2 && abs(dx) == radius && abs(dy) == radius)
                        continue;
                    int xx = x + dx, yy = y + dy;
                    if (xx >= 0 && yy >= 0 && xx < w && yy < h && in[yy * w + xx])
                        hit = 1;
                }
            out[y * w + x] = (uint8_t)hit;
        }
}

void cosmic_ref_laplacian(const double *clean, const double *noise, double *s, int w, int h)
{
    int W = 2 * w, H = 2 * h;
    double *sub = malloc((size_t)W * H * sizeof *sub);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            sub[y * W + x] = clean[(y / 2) * w + x / 2];
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double sum = 0.0;
            for (int sy = 2 * y; sy < 2 * y + 2; sy++)
                for (int sx = 2 * x; sx < 2 * x + 2; sx++) {
                    double l = 4.0 * sub[sy * W + sx];
                    if (sy > 0)
                        l -= sub[(sy - 1) * W + sx];
                    if (sy < H - 1)
                        l -= sub[(sy + 1) * W + sx];
                    if (sx > 0)
                        l -= sub[sy * W + sx - 1];
                    if (sx < W - 1)
                        l -= sub[sy * W + sx + 1];
                    sum += l > 0 ? l : 0.0;
                }
            s[y * w + x] = sum / 4.0 / (2.0 * noise[y * w + x]);
        }
    free(sub);
}

/* astroscrappy's repair median: the lower middle value for an even count */
static double lower_median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return v[(n - 1) / 2];
}

static double good_median(const double *a, const uint8_t *bad, size_t n)
{
    double *v = malloc(n * sizeof *v);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (!bad[i])
            v[m++] = a[i];
    double med = m ? lower_median(v, m) : 0.0;
    free(v);
    return med;
}

static void clean_medmask(double *a, const uint8_t *cr, const uint8_t *bad, int w, int h, double fill)
{
    double v[25];
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            if (!cr[y * w + x])
                continue;
            size_t k = 0;
            for (int dy = -2; dy <= 2; dy++)
                for (int dx = -2; dx <= 2; dx++) {
                    int xx = x + dx, yy = y + dy;
                    if (xx < 0 || yy < 0 || xx >= w || yy >= h)
                        continue;
                    int j = yy * w + xx;
                    if (!cr[j] && !bad[j])
                        v[k++] = a[j];
                }
            a[y * w + x] = k ? lower_median(v, k) : fill;
        }
}

int cosmic_ref_lacosmic(const float *sci, const uint16_t *mask, int w, int h, const clred_cosmic_opts *o,
                        uint8_t *crmask, double *cleaned, double *cleaned_var)
{
    size_t n = (size_t)w * h;
    double g = o->gain, rn2 = o->readnoise * o->readnoise;
    double *clean = malloc(n * sizeof *clean), *bkg = calloc(n, sizeof *bkg), *var = malloc(n * sizeof *var);
    double *noise = malloc(n * sizeof *noise), *s = malloc(n * sizeof *s), *med = malloc(n * sizeof *med);
    double *f = malloc(n * sizeof *f), *m7 = malloc(n * sizeof *m7), *sp = malloc(n * sizeof *sp);
    uint8_t *inbad = malloc(n), *bad = malloc(n), *sat = calloc(n, 1), *tmp = malloc(n), *a = malloc(n), *b = malloc(n);
    int sep = o->sepmed;

    for (size_t i = 0; i < n; i++) {
        double bk = o->bkg ? (double)o->bkg[i] * g : 0.0;
        double c = (double)sci[i] * g;
        int masked = mask && (mask[i] & o->ignore_bits);
        double v;
        if (o->var) {
            masked = masked || !isfinite(o->var[i]);
            v = (double)o->var[i] * g * g - bk;
        } else {
            v = c - bk + rn2;
        }
        if (!isfinite(c) || !isfinite(bk))
            masked = 1;
        if (!isfinite(c))
            c = isfinite(bk) ? bk : 0.0;
        if (!isfinite(v))
            v = rn2;
        clean[i] = c;
        bkg[i] = isfinite(bk) ? bk : 0.0;
        var[i] = v;
        inbad[i] = (uint8_t)masked;
        crmask[i] = 0;
    }
    cosmic_ref_dilate(inbad, bad, w, h, 1);
    if (o->satlevel > 0) {
        double satlevel = o->satlevel * g;
        cosmic_ref_median_filter(clean, med, w, h, sep ? 7 : 5, sep);
        for (size_t i = 0; i < n; i++)
            sat[i] = clean[i] >= satlevel && med[i] > satlevel / 10.0;
        cosmic_ref_dilate(sat, tmp, w, h, 2);
        cosmic_ref_dilate(tmp, sat, w, h, 2);
        for (size_t i = 0; i < n; i++)
            bad[i] |= sat[i];
    }
    for (size_t i = 0; i < n; i++)
        clean[i] -= bkg[i];
    double fill_clean = good_median(clean, bad, n), fill_var = good_median(var, bad, n);

    int it;
    for (it = 0; it < o->max_iters; it++) {
        cosmic_ref_median_filter(var, med, w, h, sep ? 7 : 5, sep);
        for (size_t i = 0; i < n; i++) {
            double m = med[i] + bkg[i];
            noise[i] = sqrt(m < 0.00001 ? 0.00001 : m);
        }
        cosmic_ref_laplacian(clean, noise, s, w, h);
        cosmic_ref_median_filter(s, med, w, h, sep ? 7 : 5, sep);
        cosmic_ref_median_filter(clean, f, w, h, sep ? 5 : 3, sep);
        cosmic_ref_median_filter(f, m7, w, h, sep ? 9 : 7, sep);
        for (size_t i = 0; i < n; i++) {
            sp[i] = s[i] - med[i];
            double fine = (f[i] - m7[i]) / noise[i];
            if (fine < 0.01)
                fine = 0.01;
            a[i] = sp[i] > o->sigclip && !bad[i] && sp[i] / fine > o->objlim;
        }
        cosmic_ref_dilate(a, b, w, h, 1);
        for (size_t i = 0; i < n; i++)
            b[i] = b[i] && !bad[i] && sp[i] > o->sigclip;
        cosmic_ref_dilate(b, a, w, h, 1);
        size_t found = 0;
        for (size_t i = 0; i < n; i++) {
            a[i] = a[i] && !bad[i] && sp[i] > o->sigfrac * o->sigclip;
            if (a[i]) {
                crmask[i] = 1;
                found++;
            }
        }
        if (found == 0) {
            it++;
            break;
        }
        clean_medmask(clean, crmask, bad, w, h, fill_clean);
        clean_medmask(var, crmask, bad, w, h, fill_var);
    }
    if (cleaned)
        for (size_t i = 0; i < n; i++)
            cleaned[i] = crmask[i] ? (clean[i] + bkg[i]) / g : (double)sci[i];
    if (cleaned_var)
        for (size_t i = 0; i < n; i++)
            cleaned_var[i] = crmask[i] ? fmax(var[i] + bkg[i], 0.0) / (g * g) : NAN;
    free(clean), free(bkg), free(var), free(noise), free(s), free(med), free(f), free(m7), free(sp);
    free(inbad), free(bad), free(sat), free(tmp), free(a), free(b);
    return it > o->max_iters ? o->max_iters : it;
}
