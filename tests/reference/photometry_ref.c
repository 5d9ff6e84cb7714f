#include "photometry_ref.h"

#include <math.h>
#include <stdlib.h>

typedef struct {
    double r, y0, y1;
} chord;

/* Length of the vertical chord of the disc at x, clipped to [y0, y1]. */
static double chord_length(const chord *c, double x)
{
    double h2 = c->r * c->r - x * x;
    if (h2 <= 0)
        return 0;
    double h = sqrt(h2);
    double top = fmin(c->y1, h), bottom = fmax(c->y0, -h);
    return top > bottom ? top - bottom : 0;
}

static double simpson(const chord *c, double a, double b, double fa, double fm, double fb, double whole, double eps,
                      int depth)
{
    double m = 0.5 * (a + b), lm = 0.5 * (a + m), rm = 0.5 * (m + b);
    double flm = chord_length(c, lm), frm = chord_length(c, rm);
    double left = (m - a) / 6 * (fa + 4 * flm + fm), right = (b - m) / 6 * (fm + 4 * frm + fb);
    if (depth <= 0 || fabs(left + right - whole) <= 15 * eps)
        return left + right + (left + right - whole) / 15;
    return simpson(c, a, m, fa, flm, fm, left, eps / 2, depth - 1) +
           simpson(c, m, b, fm, frm, fb, right, eps / 2, depth - 1);
}

double ref_overlap(double cx, double cy, double r, double px, double py)
{
    chord c = {r, py - 0.5 - cy, py + 0.5 - cy};
    double a = fmax(px - 0.5 - cx, -r), b = fmin(px + 0.5 - cx, r);
    if (a >= b)
        return 0;
    double fa = chord_length(&c, a), fb = chord_length(&c, b), fm = chord_length(&c, 0.5 * (a + b));
    double whole = (b - a) / 6 * (fa + 4 * fm + fb);
    return simpson(&c, a, b, fa, fm, fb, whole, 1e-13, 40);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int usable(const float *sci, const uint16_t *mask, uint16_t ignore, size_t i)
{
    return isfinite(sci[i]) && !(mask && (mask[i] & ignore));
}

void ref_aperture(const float *sci, const float *var, const uint16_t *mask, uint16_t ignore, size_t w, size_t h,
                  double x, double y, double r, double rin, double rout, double clip_sigma, int clip_iters,
                  ref_phot *out)
{
    out->flags = 0;
    out->bkg = 0;
    out->bkg_rms = NAN;
    out->nannulus = 0;
    if (rout > rin) {
        if (x - rout < -0.5 || y - rout < -0.5 || x + rout > w - 0.5 || y + rout > h - 0.5)
            out->flags |= 0x02;
        double *v = malloc(w * h * sizeof *v);
        size_t m = 0;
        for (size_t py = 0; py < h; py++)
            for (size_t px = 0; px < w; px++) {
                double d2 = (px - x) * (px - x) + (py - y) * (py - y);
                if (d2 >= rin * rin && d2 <= rout * rout && usable(sci, mask, ignore, py * w + px))
                    v[m++] = sci[py * w + px];
            }
        qsort(v, m, sizeof *v, cmp_double);
        /* plain iterative clipping about the median on the whole kept set */
        size_t lo = 0, hi = m;
        double med = NAN, sd = NAN;
        for (int it = 0; it <= clip_iters && hi > lo; it++) {
            size_t k = hi - lo;
            med = 0.5 * (v[lo + (k - 1) / 2] + v[lo + k / 2]);
            double s = 0, s2 = 0;
            for (size_t i = lo; i < hi; i++)
                s += v[i];
            for (size_t i = lo; i < hi; i++)
                s2 += (v[i] - s / k) * (v[i] - s / k);
            sd = sqrt(s2 / (double)k); /* population std, as astropy's sigma_clip */
            if (it == clip_iters)
                break;
            size_t nlo = lo, nhi = hi;
            while (nlo < nhi && v[nlo] < med - clip_sigma * sd)
                nlo++;
            while (nhi > nlo && v[nhi - 1] > med + clip_sigma * sd)
                nhi--;
            if ((nlo == lo && nhi == hi) || nhi - nlo < 3)
                break;
            lo = nlo;
            hi = nhi;
        }
        out->nannulus = hi - lo;
        if (out->nannulus < 5) {
            out->flags |= 0x20;
            out->bkg = NAN;
        } else {
            out->bkg = med;
            out->bkg_rms = sd;
        }
        free(v);
    }
    if (x - r < -0.5 || y - r < -0.5 || x + r > w - 0.5 || y + r > h - 0.5)
        out->flags |= 0x02;
    double sum = 0, err2 = 0, area = 0;
    /* pixels beyond the circle's box have no overlap; the box only saves time */
    long bx0 = (long)floor(x - r) - 1, bx1 = (long)ceil(x + r) + 1;
    long by0 = (long)floor(y - r) - 1, by1 = (long)ceil(y + r) + 1;
    for (size_t py = by0 > 0 ? (size_t)by0 : 0; py < h && (long)py <= by1; py++)
        for (size_t px = bx0 > 0 ? (size_t)bx0 : 0; px < w && (long)px <= bx1; px++) {
            double wt = ref_overlap(x, y, r, (double)px, (double)py);
            if (wt <= 0)
                continue;
            size_t i = py * w + px;
            double pv = var ? var[i] : out->bkg_rms * out->bkg_rms;
            if (!usable(sci, mask, ignore, i) || (var && !isfinite(pv))) {
                out->flags |= 0x04;
                continue;
            }
            sum += wt * sci[i];
            err2 += wt * wt * pv;
            area += wt;
        }
    out->area = area;
    out->flux = area > 0 ? sum - area * out->bkg : NAN;
    if (out->nannulus > 0 && !isnan(out->bkg_rms))
        err2 += area * area * (M_PI / 2) * out->bkg_rms * out->bkg_rms / (double)out->nannulus;
    out->err = sqrt(err2);
}
