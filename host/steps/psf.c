/* Pixel-grid PSF models: from an array or a FITS file (recentred, cut, unit
 * sum), or measured from an image's isolated, unsaturated stars (detection on
 * the device, stamps recentred by sub-pixel bicubic shifts and stacked by a
 * clipped, S/N-weighted mean on the host: a few dozen small stamps; the
 * constant model's wings a fitted Moffat profile), with FWHM and ellipticity. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "psf_internal.h"

void clred_psf_free(clred_psf *psf)
{
    if (!psf)
        return;
    free(psf->data);
    free(psf->basis);
    memset(psf, 0, sizeof *psf);
}

double clred_psf_cubic_w(double t)
{
    t = fabs(t);
    if (t < 1)
        return (1.5 * t - 2.5) * t * t + 1;
    if (t < 2)
        return ((-0.5 * t + 2.5) * t - 4) * t + 2;
    return 0;
}

/* Bicubic value of a w x h array at (x, y); outside the array it is 0. */
static double sample_cubic(const float *a, size_t w, size_t h, double x, double y)
{
    long ix = (long)floor(x), iy = (long)floor(y);
    double fx = x - (double)ix, fy = y - (double)iy, s = 0;
    for (int j = -1; j <= 2; j++) {
        long yy = iy + j;
        if (yy < 0 || yy >= (long)h)
            continue;
        double wy = clred_psf_cubic_w((double)j - fy);
        for (int i = -1; i <= 2; i++) {
            long xx = ix + i;
            if (xx >= 0 && xx < (long)w)
                s += wy * clred_psf_cubic_w((double)i - fx) * a[(size_t)yy * w + (size_t)xx];
        }
    }
    return s;
}

/* FWHM from the area above half maximum (on a 4x bilinear sub-grid) and
 * ellipticity from Gaussian-windowed second moments. */
void clred_psf_shape(clred_psf *p)
{
    size_t n = p->size, c = n / 2;
    float peak = 0;
    for (size_t i = 0; i < n * n; i++)
        peak = p->data[i] > peak ? p->data[i] : peak;
    size_t count = 0;
    const int up = 4;
    for (size_t j = 0; j + 1 < n; j++)
        for (size_t i = 0; i + 1 < n; i++)
            for (int sj = 0; sj < up; sj++)
                for (int si = 0; si < up; si++) {
                    double fx = (si + 0.5) / up, fy = (sj + 0.5) / up;
                    double v = (1 - fx) * (1 - fy) * p->data[j * n + i] + fx * (1 - fy) * p->data[j * n + i + 1] +
                               (1 - fx) * fy * p->data[(j + 1) * n + i] + fx * fy * p->data[(j + 1) * n + i + 1];
                    count += v >= 0.5 * peak;
                }
    p->fwhm = 2.0 * sqrt((double)count / (up * up) / 3.14159265358979323846);
    double sig = fmax(p->fwhm / 2.3548, 0.5), sxx = 0, syy = 0, sxy = 0, s = 0;
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < n; i++) {
            double dx = (double)i - (double)c, dy = (double)j - (double)c;
            double wgt = exp(-0.5 * (dx * dx + dy * dy) / (sig * sig)) * p->data[j * n + i];
            sxx += wgt * dx * dx;
            syy += wgt * dy * dy;
            sxy += wgt * dx * dy;
            s += wgt;
        }
    if (s > 0) {
        sxx /= s;
        syy /= s;
        sxy /= s;
        double tr = 0.5 * (sxx + syy), det = sqrt(fmax(0.25 * (sxx - syy) * (sxx - syy) + sxy * sxy, 0));
        double a2 = tr + det, b2 = tr - det;
        p->ellipticity = a2 > 0 && b2 > 0 ? 1.0 - sqrt(b2 / a2) : 0.0;
    }
    if (p->order <= 0)
        for (int c = 0; c < 4; c++) {
            p->corner_fwhm[c] = p->fwhm;
            p->corner_ellipticity[c] = p->ellipticity;
        }
}

clred_status clred_psf_from_array(const float *data, size_t w, size_t h, size_t max_size, clred_psf *psf)
{
    memset(psf, 0, sizeof *psf);
    if (!data || w < 3 || h < 3)
        return clred_fail(CLRED_ERR_INPUT, "PSF: a %zu x %zu array is too small", w, h);
    if (max_size && max_size % 2 == 0)
        return clred_fail(CLRED_ERR_USAGE, "PSF: the largest size must be odd, got %zu", max_size);
    size_t px = 0, py = 0;
    double total = 0;
    for (size_t j = 0; j < h; j++)
        for (size_t i = 0; i < w; i++) {
            float v = data[j * w + i];
            if (!isfinite(v))
                return clred_fail(CLRED_ERR_INPUT, "PSF: pixel (%zu, %zu) is not finite", i, j);
            total += v;
            if (v > data[py * w + px]) {
                px = i;
                py = j;
            }
        }
    if (!(total > 0))
        return clred_fail(CLRED_ERR_INPUT, "PSF: the %zu x %zu array sums to %g, not > 0", w, h, total);
    /* The centre: a Gaussian-windowed centroid (its window's width from the
     * area above half maximum), iterated from the peak pixel; it converges to
     * the centre of any symmetric core, where a plain box centroid is pulled
     * by the box's truncation. */
    double peak = data[py * w + px];
    size_t above = 0;
    for (size_t i = 0; i < w * h; i++)
        above += data[i] >= 0.5 * peak;
    double sw = fmax(1.0, 2.0 * sqrt((double)above / 3.14159265358979323846) / 2.3548);
    double cx = (double)px, cy = (double)py;
    for (int it = 0; it < 30; it++) {
        double sx = 0, sy = 0, s = 0;
        long r = (long)ceil(4 * sw);
        for (long j = lround(cy) - r; j <= lround(cy) + r; j++)
            for (long i = lround(cx) - r; i <= lround(cx) + r; i++)
                if (i >= 0 && j >= 0 && i < (long)w && j < (long)h) {
                    double dx = (double)i - cx, dy = (double)j - cy;
                    double v = data[(size_t)j * w + (size_t)i] * exp(-0.5 * (dx * dx + dy * dy) / (sw * sw));
                    sx += v * dx;
                    sy += v * dy;
                    s += v;
                }
        if (!(s > 0))
            break;
        /* the windowed centroid's step is half the offset for a Gaussian of the window's width */
        double ddx = 2.0 * sx / s, ddy = 2.0 * sy / s;
        cx += fmax(-1.0, fmin(1.0, ddx));
        cy += fmax(-1.0, fmin(1.0, ddy));
        if (fabs(ddx) < 1e-4 && fabs(ddy) < 1e-4)
            break;
    }
    /* within 0.01 px of a pixel centre: no resampling (a model centred by construction stays exact) */
    int shift = fabs(cx - round(cx)) > 0.01 || fabs(cy - round(cy)) > 0.01;
    if (!shift) {
        cx = round(cx);
        cy = round(cy);
    }
    size_t half_w = (size_t)fmin(cx, (double)w - 1 - cx), half_h = (size_t)fmin(cy, (double)h - 1 - cy);
    size_t half = half_w < half_h ? half_w : half_h;
    if (max_size && half > max_size / 2)
        half = max_size / 2;
    if (half < 1)
        return clred_fail(CLRED_ERR_INPUT, "PSF: its centre (%g, %g) lies on the %zu x %zu array's edge", cx, cy, w, h);
    size_t n = 2 * half + 1;
    if (!(psf->data = malloc(n * n * sizeof *psf->data)))
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for a %zu px PSF", n);
    psf->size = n;
    double s = 0;
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < n; i++) {
            double x = cx + (double)i - (double)half, y = cy + (double)j - (double)half;
            double v = shift ? sample_cubic(data, w, h, x, y) : data[(size_t)y * w + (size_t)x];
            psf->data[j * n + i] = (float)v;
            s += v;
        }
    if (!(s > 0)) {
        clred_psf_free(psf);
        return clred_fail(CLRED_ERR_INPUT, "PSF: the cut %zu x %zu model sums to %g", n, n, s);
    }
    for (size_t i = 0; i < n * n; i++)
        psf->data[i] = (float)(psf->data[i] / s);
    clred_psf_shape(psf);
    return CLRED_OK;
}

clred_psf_opts clred_psf_defaults(void)
{
    clred_psf_opts o;
    memset(&o, 0, sizeof o);
    o.size = 25;
    o.thresh = 5.0;
    o.min_snr = 30.0;
    o.isolation = 0.0;
    o.saturation = 0.0;
    o.max_stars = 50;
    o.ignore_bits = CLRED_MASK_UNUSABLE;
    o.select_order = 1;
    return o;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Which detected sources make the model: no flags, bright, round, of the
 * typical size (galaxies are larger), alone within `isolation` px and with
 * their whole stamp inside the image. Returns how many, brightest first in idx. */
static size_t pick_stars(const clred_source *src, size_t n, const clred_psf_opts *o, size_t w, size_t h, size_t *idx)
{
    double iso = o->isolation > 0 ? o->isolation : 0.5 * (double)o->size;
    double half = (double)(o->size / 2) + 3;
    double *fw = malloc((n ? n : 1) * sizeof *fw);
    size_t m = 0, k = 0;
    if (!fw)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (src[i].flags == 0 && src[i].flux_err > 0 && src[i].flux / src[i].flux_err >= o->min_snr)
            fw[m++] = src[i].fwhm;
    if (m == 0) {
        free(fw);
        return 0;
    }
    qsort(fw, m, sizeof *fw, cmp_double);
    double typical = fw[m / 2];
    free(fw);
    for (size_t i = 0; i < n; i++) {
        const clred_source *s = &src[i];
        if (s->flags != 0 || !(s->flux_err > 0) || s->flux / s->flux_err < o->min_snr || s->ellipticity > 0.3 ||
            fabs(s->fwhm - typical) > 0.25 * typical)
            continue;
        if (s->x < half || s->y < half || s->x > (double)w - 1 - half || s->y > (double)h - 1 - half)
            continue;
        if (o->saturation > 0 && s->peak >= o->saturation)
            continue;
        int alone = 1;
        for (size_t j = 0; j < n && alone; j++)
            alone = j == i || hypot(src[j].x - s->x, src[j].y - s->y) >= iso;
        if (alone)
            idx[k++] = i;
    }
    /* brightest first (insertion sort: a few hundred at most) */
    for (size_t a = 1; a < k; a++)
        for (size_t b = a; b > 0 && src[idx[b]].flux > src[idx[b - 1]].flux; b--) {
            size_t t = idx[b];
            idx[b] = idx[b - 1];
            idx[b - 1] = t;
        }
    return k;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* SExtractor's background estimate of n samples (sorted here): clipped at
 * 3 sigma about the median until stable, then the mode 2.5 median - 1.5
 * mean, or the median where the clipped samples are skewed by more than 0.3
 * sigma (crowded). Other sources' light only raises samples: the mode comes
 * closer to the sky under it than the median does. */
static double clipped_mode(float *v, size_t n, double *spread, double *err2)
{
    qsort(v, n, sizeof *v, cmp_float);
    size_t lo = 0, hi = n; /* the window [lo, hi) */
    double med = v[n / 2], sig = 0;
    for (int it = 0; it < 10 && hi - lo >= 10; it++) {
        size_t m = hi - lo;
        med = v[lo + m / 2];
        sig = 0.5 * (v[lo + (size_t)(0.8413 * (double)m)] - v[lo + (size_t)(0.1587 * (double)m)]);
        size_t nlo = lo, nhi = hi;
        while (nlo < nhi && v[nlo] < med - 3 * sig)
            nlo++;
        while (nhi > nlo && v[nhi - 1] > med + 3 * sig)
            nhi--;
        if (nlo == lo && nhi == hi)
            break;
        lo = nlo;
        hi = nhi;
    }
    /* the estimate's variance for Gaussian samples: pi/2 sigma^2 / m for the
     * median, (2.5^2 pi/2 + 1.5^2 - 2 2.5 1.5) sigma^2 / m for the mode (the
     * median and mean of m samples covary by sigma^2 / m) */
    *spread = sig;
    *err2 = 1.5708 * sig * sig / (double)(hi - lo);
    if (hi - lo < 10 || !(sig > 0))
        return med;
    double mean = 0;
    for (size_t i = lo; i < hi; i++)
        mean += v[i];
    mean /= (double)(hi - lo);
    if (fabs(mean - med) >= 0.3 * sig)
        return med;
    *err2 = 4.57 * sig * sig / (double)(hi - lo);
    return 2.5 * med - 1.5 * mean;
}

/* The sky around a star: the clipped mode of the usable pixels in the
 * annulus from r_in to r_in + 6 px. Far enough out that the PSF's wings are
 * small (a ring at the stamp's own border takes a Moffat beta = 3 star's
 * wings, 4 % of its flux, for sky), and local, where the image's global
 * median is raised by all its sources' wings. NaN when fewer than 20 pixels
 * count. */
typedef struct {
    const clred_source *src; /* the image's sources: their light is no sky */
    size_t n;
    double radius;           /* px around each left out of the sky annulus */
} sky_exclusion;

/* Whether (i, j) lies within ex->radius of a source near (x, y) (in near). */
static int near_source(const sky_exclusion *ex, const size_t *near, size_t nnear, double i, double j)
{
    for (size_t k = 0; k < nnear; k++) {
        double dx = i - ex->src[near[k]].x, dy = j - ex->src[near[k]].y;
        if (dx * dx + dy * dy <= ex->radius * ex->radius)
            return 1;
    }
    return 0;
}

/* The usable annulus pixels from r_in to r_out around (x, y) into buf (at
 * most cap), off the sources in near; quadrant 0-3 (by the signs of the
 * offsets) or -1 for all. Returns how many. */
static size_t sky_samples(const clred_image *img, double x, double y, double r_in, double r_out, uint16_t ignore,
                          const sky_exclusion *ex, const size_t *near, size_t nnear, int quadrant, float *buf,
                          size_t cap)
{
    long x0 = (long)floor(x - r_out), x1 = (long)ceil(x + r_out), y0 = (long)floor(y - r_out), y1 = (long)ceil(y + r_out);
    size_t n = 0;
    for (long j = y0; j <= y1; j++)
        for (long i = x0; i <= x1; i++) {
            if (i < 0 || j < 0 || i >= (long)img->width || j >= (long)img->height)
                continue;
            double dx = (double)i - x, dy = (double)j - y, r = hypot(dx, dy);
            size_t p = (size_t)j * img->width + (size_t)i;
            if (quadrant >= 0 && quadrant != (dx >= 0) + 2 * (dy >= 0))
                continue;
            if (r < r_in || r >= r_out || !isfinite(img->sci[p]) || (img->mask && (img->mask[p] & ignore)) || n >= cap ||
                near_source(ex, near, nnear, (double)i, (double)j))
                continue;
            buf[n++] = img->sci[p];
        }
    return n;
}

static double local_sky(const clred_image *img, double x, double y, double r_in, uint16_t ignore,
                        const sky_exclusion *ex, float *buf, size_t cap, double *spread, double *err2)
{
    double r_out = r_in + 6;
    /* the sources whose exclusion discs reach the annulus, other than the star */
    size_t near[64], nnear = 0;
    for (size_t k = 0; ex && k < ex->n && nnear < 64; k++) {
        double d = hypot(ex->src[k].x - x, ex->src[k].y - y);
        if (d > 0.5 && d < r_out + ex->radius && d > r_in - ex->radius - 1)
            near[nnear++] = k;
    }
    double level_err2;
    *spread = level_err2 = NAN;
    if (err2)
        *err2 = NAN;
    size_t n = sky_samples(img, x, y, r_in, r_out, ignore, ex, near, nnear, -1, buf, cap);
    if (n < 20)
        return NAN;
    double sky = clipped_mode(buf, n, spread, &level_err2);
    if (!err2) /* the level alone: the quadrants below only refine its error */
        return sky;
    *err2 = level_err2;
    /* The level's error also holds the faint sources and wings in the
     * annulus, which differ from star to star: the scatter of the four
     * quadrants' levels, over 4, where it is larger than the noise's */
    double q[4], qs = 0, qv = 0, sp, e2;
    int nq = 0;
    for (int k = 0; k < 4; k++) {
        size_t m = sky_samples(img, x, y, r_in, r_out, ignore, ex, near, nnear, k, buf, cap);
        if (m >= 10) {
            q[nq] = clipped_mode(buf, m, &sp, &e2);
            qs += q[nq++];
        }
    }
    for (int k = 0; k < nq && nq == 4; k++)
        qv += (q[k] - qs / 4) * (q[k] - qs / 4);
    if (nq == 4 && qv / 3 / 4 > *err2)
        *err2 = qv / 3 / 4;
    return sky;
}

/* A star's stamp, its local sky off, recentred on (x, y) and scaled to unit
 * sum, and, when var and sky_var are not NULL, its pixels' noise variance on
 * that scale (var: the VAR plane's nearest pixel; without one the sky
 * annulus' spread squared, which leaves out the star's own photon noise) and
 * its sky level's (sky_var); 0 when a pixel of it is unusable or the sky
 * cannot be measured. */
static int star_stamp(const clred_image *img, double x, double y, const clred_psf_opts *o, const sky_exclusion *ex,
                      float *stamp, float *var, double *sky_var, float *buf, size_t cap)
{
    size_t n = o->size, half = n / 2, w = img->width, h = img->height;
    long x0 = lround(x) - (long)half - 2, y0 = lround(y) - (long)half - 2;
    for (long j = y0; j < y0 + (long)n + 4; j++)
        for (long i = x0; i < x0 + (long)n + 4; i++) {
            if (i < 0 || j < 0 || i >= (long)w || j >= (long)h)
                return 0;
            size_t p = (size_t)j * w + (size_t)i;
            if (!isfinite(img->sci[p]) || (img->mask && (img->mask[p] & o->ignore_bits)))
                return 0;
        }
    double spread, err2, s = 0;
    double sky = local_sky(img, x, y, (double)n, o->ignore_bits, ex, buf, cap, &spread, sky_var ? &err2 : NULL);
    if (!isfinite(sky))
        return 0;
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < n; i++) {
            double v = sample_cubic(img->sci, w, h, x + (double)i - (double)half, y + (double)j - (double)half) - sky;
            stamp[j * n + i] = (float)v;
            s += v;
        }
    if (!(s > 0))
        return 0;
    for (size_t i = 0; i < n * n; i++)
        stamp[i] = (float)(stamp[i] / s);
    if (!var || !sky_var)
        return 1;
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < n; i++) {
            size_t p = (size_t)lround(y + (double)j - (double)half) * w + (size_t)lround(x + (double)i - (double)half);
            double v = img->var ? (double)img->var[p] : spread * spread;
            var[j * n + i] = (float)(isfinite(v) && v > 0 ? v / (s * s) : 0.0);
        }
    *sky_var = isfinite(err2) ? err2 / (s * s) : 0.0;
    return 1;
}

/* The median FWHM of the stars used (the detection's), at least 1 px. */
static double typical_fwhm(const clred_source *src, const size_t *star, size_t used)
{
    double *f = malloc(used * sizeof *f), r = 2.0;
    if (!f)
        return r;
    for (size_t i = 0; i < used; i++)
        f[i] = src[star[i]].fwhm;
    qsort(f, used, sizeof *f, cmp_double);
    r = fmax(f[used / 2], 1.0);
    free(f);
    return r;
}

/* NaN over each stamp's pixels within radius of another source. */
static void mask_neighbours(float *stamps, size_t used, size_t n, const clred_source *src, size_t nsrc,
                            const size_t *star, double radius)
{
    double half = (double)(n / 2), reach = half * 1.4143 + radius;
    for (size_t i = 0; i < used; i++) {
        const clred_source *s = &src[star[i]];
        for (size_t j = 0; j < nsrc; j++) {
            if (j == star[i] || fabs(src[j].x - s->x) > reach || fabs(src[j].y - s->y) > reach)
                continue;
            /* the neighbour in stamp coordinates (the stamp is centred on the
             * star); at most half way to the star, whose core stays whole
             * (a core masked in some stars and not others bends the fit) */
            double nx = src[j].x - s->x + half, ny = src[j].y - s->y + half;
            double r = fmin(radius, 0.5 * hypot(src[j].x - s->x, src[j].y - s->y));
            for (size_t q = 0; q < n * n; q++) {
                double dx = (double)(q % n) - nx, dy = (double)(q / n) - ny;
                if (dx * dx + dy * dy <= r * r)
                    stamps[i * n * n + q] = NAN;
            }
        }
    }
}

/* One pixel of the constant model from its value in each stamp (col, with
 * the stamps' weights wt, their S/N squared): the inverse-variance mean of
 * the values within 4 robust sigma of the median, where a stamp's sigma goes
 * as 1 / its S/N. A plain median weighs a star at S/N 30 as much as one at
 * S/N 3000, and its noise (a few 1e-3 of the flux per pixel in the wings)
 * then dominates the model: in ZOGY every bright star leaves that noise
 * times its flux in D. The clip keeps the median's immunity to a neighbour
 * or a cosmic ray in some stamps; NaN values (under a neighbour) are left
 * out. tmp is scratch of used values. */
static double weighted_pixel(const float *col, const double *wt, size_t used, float *tmp)
{
    size_t m = 0;
    for (size_t i = 0; i < used; i++)
        if (isfinite(col[i]))
            tmp[m++] = col[i];
    if (m == 0)
        return 0.0; /* under a neighbour in every stamp: renormalised away with the rest */
    double med = clred_median_inplace(tmp, m);
    m = 0;
    for (size_t i = 0; i < used; i++)
        if (isfinite(col[i]))
            tmp[m++] = (float)(fabs((double)col[i] - med) * sqrt(wt[i]));
    /* the normalised residuals' robust sigma: 1.4826 MAD */
    double sig = 1.4826 * clred_median_inplace(tmp, m), s = 0, sw = 0;
    for (size_t i = 0; i < used; i++) {
        double r = fabs((double)col[i] - med) * sqrt(wt[i]);
        if (!isfinite(col[i]) || (sig > 0 && r > 4.0 * sig))
            continue;
        s += wt[i] * col[i];
        sw += wt[i];
    }
    return sw > 0 ? s / sw : med;
}

/* Wings from a fitted profile. Beyond about 2 FWHM a bright star's pixels
 * are a few 1e-5 of its flux: the stamps' noise and the faint sources in
 * them (which the clip cannot tell from the wing) weigh as much as the star,
 * and the stacked wings came out 5-70 % high at 9-12 px (FWHM 4.5 px, ring
 * means), all of it times each bright star's flux in a ZOGY difference:
 * rings of false candidates 8-13 px from the stars. Seeing-limited wings
 * follow a Moffat profile's power law closely (Racine 1996, PASP 108, 699);
 * it is fitted where the model is good (1-2 FWHM: ring means within a few
 * %) and extrapolated. */

/* Each pixel's squared elliptical radius about the centre: the model's
 * Gaussian-windowed second moments' quadratic form, scaled so that a round
 * profile gives dx^2 + dy^2. */
static void elliptical_r2(const clred_psf *psf, double *r2)
{
    size_t n = psf->size;
    double c = (double)(n / 2), sig = fmax(psf->fwhm / 2.3548, 0.5), sxx = 0, syy = 0, sxy = 0;
    for (size_t p = 0; p < n * n; p++) {
        double dx = (double)(p % n) - c, dy = (double)(p / n) - c;
        double w = exp(-0.5 * (dx * dx + dy * dy) / (sig * sig)) * psf->data[p];
        sxx += w * dx * dx;
        syy += w * dy * dy;
        sxy += w * dx * dy;
    }
    double det = sxx * syy - sxy * sxy, half_tr = 0.5 * (sxx + syy);
    int round = !(det > 0) || !(half_tr > 0);
    for (size_t p = 0; p < n * n; p++) {
        double dx = (double)(p % n) - c, dy = (double)(p / n) - c;
        r2[p] = round ? dx * dx + dy * dy : half_tr * (syy * dx * dx - 2 * sxy * dx * dy + sxx * dy * dy) / det;
    }
}

static double moffat(double a, double alpha, double beta, double r2)
{
    return a * pow(1.0 + r2 / (alpha * alpha), -beta);
}

/* The pixels a Moffat profile is fitted to: their values v and, for each,
 * its squared radius's index at[p] into the distinct squared radii r2 (nr
 * of them; prof: scratch of nr). A model's elliptical radius is the same
 * bits at (dx, dy) and (-dx, -dy), and a round one's at 8 pixels, so the
 * profile is evaluated once a distinct radius, not once a pixel: these
 * fits were a third of a varying PSF's measurement (one for every star,
 * each some 2300 profiles over its ring), most of it in pow. */
typedef struct {
    const double *v, *r2;
    const size_t *at;
    size_t np, nr;
    double *prof;
} moffat_pixels;

/* The relative misfit (sum of ((v - a f) / v)^2) of a Moffat of this alpha
 * and beta to the pixels, with the amplitude that minimises it (*amp,
 * linear least squares). */
static double moffat_misfit(const moffat_pixels *px, double alpha, double beta, double *amp)
{
    double sf = 0, sff = 0;
    for (size_t k = 0; k < px->nr; k++)
        px->prof[k] = moffat(1.0, alpha, beta, px->r2[k]);
    for (size_t p = 0; p < px->np; p++) {
        double f = px->prof[px->at[p]] / px->v[p];
        sf += f;
        sff += f * f;
    }
    *amp = sff > 0 ? sf / sff : 0;
    return (double)px->np - 2 * *amp * sf + *amp * *amp * sff;
}

/* The misfit of the Moffat of this beta with the best alpha (golden-section
 * search) to the pixels, at squared radii out to r1: *alpha, *amp. */
static double best_alpha(const moffat_pixels *px, double r1, double beta, double *alpha, double *amp)
{
    const double g = 0.6180339887498949;
    double lo = 0.3, hi = 4.0 * r1;
    double x1 = hi - g * (hi - lo), x2 = lo + g * (hi - lo);
    double f1 = moffat_misfit(px, x1, beta, amp);
    double f2 = moffat_misfit(px, x2, beta, amp);
    for (int it = 0; it < 40; it++) {
        if (f1 < f2) {
            hi = x2;
            x2 = x1;
            f2 = f1;
            x1 = hi - g * (hi - lo);
            f1 = moffat_misfit(px, x1, beta, amp);
        } else {
            lo = x1;
            x1 = x2;
            f1 = f2;
            x2 = lo + g * (hi - lo);
            f2 = moffat_misfit(px, x2, beta, amp);
        }
    }
    *alpha = 0.5 * (lo + hi);
    return moffat_misfit(px, *alpha, beta, amp);
}

static int cmp_radius(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The distinct values of the np squared radii rr into r2 (sorted; returns
 * their count) and each radius's index among them into at. */
static size_t distinct_radii(const double *rr, size_t np, double *r2, size_t *at)
{
    memcpy(r2, rr, np * sizeof *r2);
    qsort(r2, np, sizeof *r2, cmp_radius);
    size_t nr = 0;
    for (size_t k = 0; k < np; k++)
        if (nr == 0 || r2[k] != r2[nr - 1])
            r2[nr++] = r2[k];
    for (size_t p = 0; p < np; p++) {
        size_t lo = 0, hi = nr - 1;
        while (lo < hi) { /* the first distinct radius not below rr[p]: rr[p] itself */
            size_t mid = lo + (hi - lo) / 2;
            if (r2[mid] < rr[p])
                lo = mid + 1;
            else
                hi = mid;
        }
        at[p] = lo;
    }
    return nr;
}

/* beta's grid: 0.05 over 1.2-8, searched every FIT_COARSE-th point, then
 * every point within FIT_COARSE of the best of those (the misfit is smooth
 * in beta on that scale: the same minimum at a quarter of the cost) */
#define FIT_NBETA 137
#define FIT_COARSE 5

/* The Moffat profile (*a, *alpha, *beta) fitted to the model's positive
 * pixels with r2 in [r0^2, r1^2], alpha by golden-section search for each
 * beta of the grid. Returns the fit's RMS relative residual, INFINITY with
 * fewer than 20 pixels. The pixels are gathered once and beta's grid is
 * searched coarse to fine: ZOGY fits every tile's PSFs. */
static double fit_moffat(const float *m, const double *r2, size_t n2, double r0, double r1, double *a, double *alpha,
                         double *beta)
{
    double *v = malloc(4 * n2 * sizeof *v), *rr = v + n2;
    size_t *at = malloc(n2 * sizeof *at), np = 0;
    if (!v || !at) {
        free(v);
        free(at);
        return INFINITY; /* no fit: the caller keeps the empirical wings */
    }
    for (size_t p = 0; p < n2; p++)
        if (r2[p] >= r0 * r0 && r2[p] <= r1 * r1 && m[p] > 0) {
            v[np] = m[p];
            rr[np++] = r2[p];
        }
    moffat_pixels px = {.v = v, .r2 = v + 2 * n2, .at = at, .np = np, .prof = v + 3 * n2};
    px.nr = np ? distinct_radii(rr, np, v + 2 * n2, at) : 0;
    double bs[FIT_NBETA], best = INFINITY, b = 1.2;
    for (size_t k = 0; k < FIT_NBETA; k++, b += 0.05)
        bs[k] = b;
    size_t kbest = 0;
    for (int pass = 0; pass < 2 && np >= 20; pass++) {
        size_t k0 = pass ? (kbest > FIT_COARSE ? kbest - FIT_COARSE : 0) : 0;
        size_t k1 = pass ? kbest + FIT_COARSE : FIT_NBETA - 1;
        for (size_t k = k0; k <= k1 && k < FIT_NBETA; k++) {
            if ((k % FIT_COARSE == 0) == (pass == 1))
                continue; /* each point once: the coarse ones in pass 0 */
            double al, amp, e = best_alpha(&px, r1, bs[k], &al, &amp);
            if (e < best && amp > 0) {
                best = e;
                kbest = k;
                *a = amp;
                *alpha = al;
                *beta = bs[k];
            }
        }
    }
    free(v);
    free(at);
    return np >= 20 && isfinite(best) ? sqrt(best / (double)np) : INFINITY;
}

/* The RMS over the 1-px rings (elliptical radius) from r0 to r1 of the
 * relative difference between the model's and the profile's ring means:
 * the pixels' noise averages down, a profile's shape does not. */
static double ring_misfit(const float *m, const double *r2, size_t n2, double r0, double r1, double a, double alpha,
                          double beta)
{
    double sm[64] = {0}, sp[64] = {0}, ss = 0;
    size_t k0 = (size_t)ceil(r0), k1 = (size_t)floor(r1), nr = 0;
    if (k1 >= 64 || k1 < k0)
        return INFINITY;
    for (size_t p = 0; p < n2; p++) {
        size_t k = (size_t)lround(sqrt(r2[p]));
        if (k >= k0 && k <= k1) {
            sm[k] += m[p];
            sp[k] += moffat(a, alpha, beta, r2[p]);
        }
    }
    for (size_t k = k0; k <= k1; k++)
        if (sp[k] > 0) {
            ss += (sm[k] / sp[k] - 1) * (sm[k] / sp[k] - 1);
            nr++;
        }
    return nr >= 2 ? sqrt(ss / (double)nr) : INFINITY;
}

/* The model's wings beyond 2 FWHM (elliptical radius) replaced by the
 * Moffat profile fitted from 1 to 2 FWHM, blended in over half a FWHM,
 * then unit sum again; left as they are where the profile misses the
 * model's ring means there by more than WING_FIT_RMS (a diffraction-limited
 * PSF: Airy rings and spikes that a power law would erase; the simulated
 * Moffat stars' models: 0.5-3 %). */
#define WING_FIT_RMS 0.1

void clred_psf_analytic_wings(clred_psf *psf)
{
    size_t n = psf->size, n2 = n * n;
    double f = psf->fwhm, c = (double)(n / 2), a = 0, alpha = 1, beta = 3;
    double *r2 = malloc(n2 * sizeof *r2);
    if (!r2)
        return; /* the empirical wings stay: a worse model, not a failure */
    elliptical_r2(psf, r2);
    double rms = 2.0 * f < c ? fit_moffat(psf->data, r2, n2, f, 2.0 * f, &a, &alpha, &beta) : INFINITY;
    if (isfinite(rms))
        rms = ring_misfit(psf->data, r2, n2, f, 2.0 * f, a, alpha, beta);
    if (rms <= WING_FIT_RMS) {
        double rb = 2.0 * f, re = 2.5 * f, s = 0;
        for (size_t p = 0; p < n2; p++) {
            double r = sqrt(r2[p]);
            if (r > rb) {
                double t = fmin(1.0, (r - rb) / (re - rb)), w = t * t * (3 - 2 * t);
                psf->data[p] = (float)((1 - w) * psf->data[p] + w * moffat(a, alpha, beta, r2[p]));
            }
            s += psf->data[p];
        }
        for (size_t p = 0; p < n2; p++)
            psf->data[p] = (float)(psf->data[p] / s);
        clred_psf_shape(psf);
    }
    free(r2);
}

/* The constant model: each pixel the stamps' clipped, S/N-weighted mean (weighted_pixel). */
static clred_status weighted_model(const float *stamps, const double *wt, size_t used, size_t n, float *col,
                                   clred_psf *psf)
{
    float *tmp = malloc(used * sizeof *tmp);
    if (!tmp || !(psf->data = malloc(n * n * sizeof *psf->data))) {
        free(tmp);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for a %zu px PSF", n);
    }
    psf->size = n;
    psf->nstars = used;
    psf->order = 0;
    psf->nterms = 1;
    double s = 0;
    for (size_t p = 0; p < n * n; p++) {
        for (size_t i = 0; i < used; i++)
            col[i] = stamps[i * n * n + p];
        psf->data[p] = (float)weighted_pixel(col, wt, used, tmp);
        s += psf->data[p];
    }
    free(tmp);
    for (size_t p = 0; p < n * n; p++)
        psf->data[p] = (float)(psf->data[p] / s);
    clred_psf_shape(psf);
    return CLRED_OK;
}

/* The median of v over the better measured half of its n values (those
 * with the smaller key; all of them below 6). work: scratch of 2 n. */
static double better_half_median(const double *v, const double *key, size_t n, double *x)
{
    for (size_t k = 0; k < n; k++) {
        x[2 * k] = key[k];
        x[2 * k + 1] = v[k];
    }
    /* insertion sort of the pairs by key: a few dozen stars */
    for (size_t a = 1; a < n; a++)
        for (size_t b = a; b > 0 && x[2 * b] < x[2 * (b - 1)]; b--)
            for (int c = 0; c < 2; c++) {
                double t = x[2 * b + c];
                x[2 * b + c] = x[2 * (b - 1) + c];
                x[2 * (b - 1) + c] = t;
            }
    size_t m = n < 6 ? n : (n + 1) / 2;
    for (size_t k = 0; k < m; k++) /* the m best's values, packed to the front (k <= 2 k + 1) */
        x[k] = x[2 * k + 1];
    for (size_t a = 1; a < m; a++)
        for (size_t b = a; b > 0 && x[b] < x[b - 1]; b--) {
            double t = x[b];
            x[b] = x[b - 1];
            x[b - 1] = t;
        }
    return m % 2 ? x[m / 2] : 0.5 * (x[m / 2 - 1] + x[m / 2]);
}

/* clred_psf_model_error's eps^2: the median of the excess e^2 - nu^2 over
 * the better measured half of the stars (the smaller key, their pixels'
 * noise; all of them below 6), unclipped (the callers clip it, a ring's
 * mean of lags after the median). A median weighted by 1 / nu^4
 * instead let the one brightest star decide: on one simulated image it held
 * a neighbour's light and gave 0.055 where the truth is 0.004. */
static double median_excess_raw(const double *e2, const double *nu2, const double *key, size_t n)
{
    double *x = malloc(3 * n * sizeof *x), med = 0;
    if (!x || n == 0) {
        free(x);
        return 0.0;
    }
    for (size_t k = 0; k < n; k++)
        x[2 * n + k] = e2[k] - nu2[k];
    med = better_half_median(x + 2 * n, key, n, x);
    free(x);
    return med;
}

/* The lags d with lag_lo < |d| <= lag_hi (lag_lo < 0: lag 0 included) whose
 * group lround(|d| / group_px) (group_px 0: one group) is below ngroups:
 * dx, dy and group for each of *nlag. NULL when out of memory. */
static int *filter_lags(double lag_lo, double lag_hi, double group_px, size_t ngroups, size_t *nlag)
{
    int L = (int)floor(lag_hi);
    int *lags = malloc(3 * (size_t)(2 * L + 1) * (size_t)(2 * L + 1) * sizeof *lags);
    *nlag = 0;
    for (int dy = -L; lags && dy <= L; dy++)
        for (int dx = -L; dx <= L; dx++) {
            double dd = hypot((double)dx, (double)dy);
            long g = group_px > 0 ? lround(dd / group_px) : 0;
            if (dd > lag_hi || dd <= lag_lo || g >= (long)ngroups)
                continue;
            lags[3 * *nlag] = dx;
            lags[3 * *nlag + 1] = dy;
            lags[3 * (*nlag)++ + 2] = (int)g;
        }
    return lags;
}

/* clred_psf_model_error's measure for each star i and item it (a group of
 * the lags, or with per_lag each lag): e^2, nu^2 and the pixels' part of
 * nu^2 into e2, nu2 and px2 [it * nstars + i]; NaN for a star without
 * usable pixels, whose count is left out of *used. An item without lags
 * counts as noise only (all 0), so every usable star has every item.
 * Returns 0 when out of memory. */
static int star_item_errors(const float *stamps, const float *vars, const double *vb, const float *models,
                            size_t model_stride, const double *loo, size_t nstars, size_t size, const int *lags,
                            size_t nlag, size_t items, int per_lag, double *e2, double *nu2, double *px2,
                            size_t *used)
{
    size_t n = size, n2 = n * n;
    double *r = malloc(4 * n2 * sizeof *r), *acc = malloc(4 * (items ? items : 1) * sizeof *acc);
    double *gx = r ? r + n2 : NULL, *gy = r ? r + 2 * n2 : NULL, *h = r ? r + 3 * n2 : NULL;
    *used = 0;
    for (size_t i = 0; r && acc && i < nstars; i++) {
        const float *s = stamps + i * n2, *v = vars + i * n2, *m = models + i * model_stride;
        for (size_t it = 0; it < items; it++)
            e2[it * nstars + i] = nu2[it * nstars + i] = px2[it * nstars + i] = NAN;
        /* the stamp on the model's scale over its usable pixels: it was made
         * unit-sum with the neighbours' light that is masked now */
        double mm = 0, ts = 0, tm = 0;
        for (size_t p = 0; p < n2; p++) {
            mm += (double)m[p] * m[p];
            if (isfinite(s[p])) {
                ts += s[p];
                tm += m[p];
            }
        }
        if (!(mm > 0) || !(ts > 0) || !(tm > 0))
            continue;
        double k = tm / ts;
        /* s - m_loo, m_loo = m + loo (m - s): (1 + loo) (s - m) */
        for (size_t p = 0; p < n2; p++)
            r[p] = isfinite(s[p]) ? (1.0 + loo[i]) * (k * s[p] - m[p]) : 0.0;
        /* the model's gradients on the usable pixels (central differences),
         * whose part of each filter is taken off: a stamp centred off by a
         * fraction of a pixel (its detection's centroid pulled by a neighbour
         * or a gradient) leaves m's derivative times the offset, an error of
         * the stamp that the star in the image does not have */
        double gg[3] = {0, 0, 0};
        for (size_t p = 0; p < n2; p++) {
            size_t x = p % n, y = p / n;
            gx[p] = gy[p] = 0.0;
            if (!isfinite(s[p]))
                continue;
            gx[p] = 0.5 * ((x + 1 < n ? m[p + 1] : 0.0) - (x > 0 ? m[p - 1] : 0.0));
            gy[p] = 0.5 * ((y + 1 < n ? m[p + n] : 0.0) - (y > 0 ? m[p - n] : 0.0));
            gg[0] += gx[p] * gx[p];
            gg[1] += gx[p] * gy[p];
            gg[2] += gy[p] * gy[p];
        }
        double gdet = gg[0] * gg[2] - gg[1] * gg[1];
        /* per item: se, sn, sp, and the lags counted */
        double *se = acc, *sn = acc + items, *sp = acc + 2 * items, *nl = acc + 3 * items;
        memset(acc, 0, 4 * items * sizeof *acc);
        for (size_t l = 0; l < nlag; l++) {
            int dx = lags[3 * l], dy = lags[3 * l + 1];
            size_t it = per_lag ? l : (size_t)lags[3 * l + 2];
            /* h = the filter m(. - d) on the usable pixels less its projection on the gradients */
            double fx = 0, fy = 0;
            size_t np = 0;
            for (size_t p = 0; p < n2; p++) {
                int x = (int)(p % n), y = (int)(p / n), u = x - dx, w = y - dy;
                h[p] = !isfinite(s[p]) || u < 0 || w < 0 || u >= (int)n || w >= (int)n ? 0.0
                                                                                       : m[(size_t)w * n + (size_t)u];
                np += isfinite(s[p]) != 0;
                fx += h[p] * gx[p];
                fy += h[p] * gy[p];
            }
            double bx = gdet > 0 ? (gg[2] * fx - gg[1] * fy) / gdet : 0.0;
            double by = gdet > 0 ? (gg[0] * fy - gg[1] * fx) / gdet : 0.0;
            double c = 0, cs = 0, hsum = 0;
            for (size_t p = 0; p < n2; p++) {
                if (!isfinite(s[p]))
                    continue;
                h[p] -= bx * gx[p] + by * gy[p];
                c += h[p] * r[p];
                cs += h[p] * s[p];
                hsum += h[p];
            }
            cs /= ts;
            double var = 0, gsum = hsum - cs * (double)np;
            for (size_t p = 0; p < n2; p++)
                if (isfinite(s[p]))
                    var += (h[p] - cs) * (h[p] - cs) * v[p];
            se[it] += c * c;
            sn[it] += (1.0 + loo[i]) * (1.0 + loo[i]) * k * k * (var + gsum * gsum * vb[i]);
            sp[it] += k * k * var;
            nl[it] += 1.0;
        }
        for (size_t it = 0; it < items; it++) {
            double q = nl[it] > 0 ? 1.0 / (nl[it] * mm * mm) : 0.0;
            e2[it * nstars + i] = se[it] * q;
            px2[it * nstars + i] = sp[it] * q;
            nu2[it * nstars + i] = sn[it] * q;
        }
        (*used)++;
    }
    int ok = r && acc;
    free(r);
    free(acc);
    return ok;
}

/* The usable stars' (finite e2) values of e2, nu2 and px2 packed to the
 * front, in order; returns their count. */
static size_t pack_usable(double *e2, double *nu2, double *px2, size_t nstars)
{
    size_t used = 0;
    for (size_t i = 0; i < nstars; i++)
        if (isfinite(e2[i])) {
            e2[used] = e2[i];
            nu2[used] = nu2[i];
            px2[used++] = px2[i];
        }
    return used;
}

/* The filtered residuals of clred_psf_model_error, grouped: the lags d with
 * lag_lo < |d| <= lag_hi (lag_lo < 0: lag 0 included), in group
 * lround(|d| / group_px) (group_px 0: one group), each group's eps into
 * eps[group] (ngroups of them; 0 for a group without lags). per_lag 0: each
 * star's mean over a group's lags, then median_excess_raw over the stars
 * (the core: model_err); 1: median_excess_raw over the stars at each lag,
 * then the group's mean (the wings: a faint source somewhere in a ring of a
 * star's stamp then counts at its own lags only, where most stars are
 * clean, instead of in that star's whole ring; with ~50 lags a ring, most
 * stars hold one). Returns the stars used, 0 with none (or out of memory). */
static size_t filtered_errors(const float *stamps, const float *vars, const double *vb, const float *models,
                              size_t model_stride, const double *loo, int loo_exact, size_t nstars, size_t size,
                              double lag_lo, double lag_hi, double group_px, size_t ngroups, int per_lag,
                              double *eps)
{
    size_t ng = ngroups, nlag = 0, used = 0;
    int *lags = filter_lags(lag_lo, lag_hi, group_px, ng, &nlag);
    size_t items = per_lag ? nlag : ng;
    double *e2 = malloc(3 * nstars * (items ? items : 1) * sizeof *e2), *acc = malloc(2 * ng * sizeof *acc);
    double *nu2 = e2 ? e2 + nstars * items : NULL, *px2 = e2 ? e2 + 2 * nstars * items : NULL;
    for (size_t g = 0; g < ng; g++)
        eps[g] = 0.0;
    if (!lags || !e2 || !acc ||
        !star_item_errors(stamps, vars, vb, models, model_stride, loo, nstars, size, lags, nlag, items, per_lag, e2,
                          nu2, px2, &used))
        used = 0;
    if (acc)
        memset(acc, 0, 2 * ng * sizeof *acc);
    for (size_t it = 0; used && it < items; it++) {
        double *ie2 = e2 + it * nstars, *inu2 = nu2 + it * nstars, *ipx2 = px2 + it * nstars;
        size_t m = pack_usable(ie2, inu2, ipx2, nstars);
        double ex = median_excess_raw(ie2, inu2, loo_exact ? ipx2 : inu2, m);
        if (!per_lag)
            eps[it] = sqrt(fmax(ex, 0.0));
        else { /* the groups' sums of the lags' excess, then their counts */
            size_t g = (size_t)lags[3 * it + 2];
            acc[g] += ex;
            acc[ng + g] += 1.0;
        }
    }
    for (size_t g = 0; per_lag && used && g < ng; g++)
        eps[g] = acc[ng + g] > 0 ? sqrt(fmax(acc[g] / acc[ng + g], 0.0)) : 0.0;
    free(lags);
    free(e2);
    free(acc);
    return used;
}

/* The model's error as ZOGY meets it. A star of flux F leaves F (k * (P -
 * P_model)) in S, k the kernel (about a matched filter to P), both PSFs of
 * unit sum over the model's box: an error coherent over the kernel, so it
 * is estimated in the filtered domain, where the pixels' noise averages
 * down, from each star's unit-sum stamp against the model left without it
 * (leave-one-out: a star's residual against a model it is part of is shrunk
 * by its own weight, to nothing for a star that dominates the weights).
 *
 * Per star, r = s - m_loo filtered with the model, c(d) = sum_p m(p - d)
 * r(p), at the lags |d| <= lag_radius (lag 0 included: a model that puts
 * too much of the flux in its wings leaves its largest residual in S at the
 * star itself), relative to the filtered peak sum m^2: e^2 = mean_d c(d)^2 /
 * (sum m^2)^2. No amplitude is fitted: ZOGY takes fluxes on the models'
 * unit sums, and a fit would hide exactly that part (c(0) = 0). The stamp
 * is scaled to the model's sum over its usable pixels (T = sum s there,
 * k = sum m / T): that normalisation makes c's noise k g_d with g_d = f_d -
 * c_s (f_d = m(. - d), c_s = sum f_d s / T) through the pixels' variances v,
 * plus the sky level's error (variance vb[i], every pixel alike) through
 * sum_p g_d: nu^2 = mean_d k^2 (sum g_d^2 v + (sum g_d)^2 vb) / (sum m^2)^2.
 *
 * Over the stars, eps^2 is the median of e^2 - nu^2 over the better
 * measured half (median_excess_raw). With loo exact (a constant model, the
 * stars' weighted mean) they are ranked by the pixels' noise alone (nu
 * without its sky term), not by nu: the sky level's error comes from the
 * annulus' quadrants and is itself noisy, so the stars it underrates are
 * the ones the ranking by nu picked, and their residual, 5-20 times that
 * nu, counted as the model's (sweep_zogy_psf, order 0, seeds 1-16, with
 * the caller's unshifted stars: the estimate about 1.2x the truth instead
 * of 1.5x; 8 false candidates and 606 / 614 transients found instead of 9
 * and 603). When loo is only a lower bound (a varying fit, whose leverage
 * on its brightest stars is larger), those stars' residuals are shrunk
 * beyond it, and ranking by the pixels' noise picks them: ranked by nu
 * (order 2, seeds 1-8: 61 false candidates against 74 by the pixels'
 * noise, 301 / 308 found either way). A median, not a mean: a
 * faint neighbour, a galaxy or a cosmic ray in a stamp leaves a residual
 * that is no error of the model (both images hold it: ZOGY subtracts it),
 * and such stars are many in a real field. Means weighted as a chi^2
 * variable's (1 / (nu^2 + eps^2)^2), with stars above 9 (nu^2 + eps^2)
 * clipped, gave 0.14 on one simulated image (one contaminated star of 25)
 * and 0.032 on another (the clip readmitting them as eps grew) where the
 * truth is 0.001-0.004; sweep_zogy_psf seeds 1-8: 6 false candidates,
 * completeness 301 / 308, against 2 and 302 with the median. An error that differs from star to star (a PSF varying over
 * the field against a constant model) counts at its RMS, as the stars in a
 * difference show it.
 *
 * What it cannot see: an error common to the model and every stamp (for
 * recentred stamps, the smoothing of their sub-pixel shifts; the caller
 * compares the model shifted onto the unshifted stars). NaN stamp values (under
 * neighbours) count as the model's (no residual, no noise). Returns eps (0
 * when the residuals are all noise), NaN with no usable star. */
double clred_psf_model_error(const float *stamps, const float *vars, const double *vb, const float *models,
                             size_t model_stride, const double *loo, int loo_exact, size_t nstars, size_t size,
                             double lag_radius)
{
    double eps;
    size_t used = filtered_errors(stamps, vars, vb, models, model_stride, loo, loo_exact, nstars, size, -1.0,
                                  lag_radius, 0.0, 1, 0, &eps);
    return used ? eps : NAN;
}

int clred_psf_star_errors(const float *stamps, const float *vars, const double *vb, const float *models,
                          size_t model_stride, const double *loo, size_t nstars, size_t size, double lag_radius,
                          double *e2, double *nu2, double *px2)
{
    size_t nlag = 0, used = 0;
    int *lags = filter_lags(-1.0, lag_radius, 0.0, 1, &nlag);
    int ok = lags && star_item_errors(stamps, vars, vb, models, model_stride, loo, nstars, size, lags, nlag, 1, 0,
                                      e2, nu2, px2, &used);
    free(lags);
    return ok;
}

/* psf's variation from (cx, cy) to each of the npts points xy as a matched
 * filter sees it: v[k nlag + l] = (m_c * (m_k - m_c))(d_l) / (m_c * m_c)(0),
 * m_c the model at (cx, cy), m_k at point k (unit sums), * the
 * correlation, d_l the nlag lags (dx, dy pairs). Signed, and without
 * clred_psf_model_error's gradient projection: a model's centroid moving
 * over the field is a real difference. All 0 for a constant psf. Returns 0
 * on a failure (an evaluation, memory). */
static int variation_residuals(const clred_psf *psf, double cx, double cy, const double *xy, size_t npts,
                               const int *lags, size_t nlag, double *v)
{
    memset(v, 0, npts * nlag * sizeof *v);
    if (!(psf->order > 0 && psf->basis))
        return 1;
    clred_psf mc;
    memset(&mc, 0, sizeof mc);
    if (clred_psf_eval(psf, cx, cy, &mc) != CLRED_OK)
        return 0;
    int n = (int)mc.size, ok = 1;
    double mm = 0;
    for (int p = 0; p < n * n; p++)
        mm += (double)mc.data[p] * mc.data[p];
    for (size_t k = 0; ok && k < npts; k++) {
        clred_psf m;
        memset(&m, 0, sizeof m);
        ok = clred_psf_eval(psf, xy[2 * k], xy[2 * k + 1], &m) == CLRED_OK && (int)m.size == n && mm > 0;
        for (size_t l = 0; ok && l < nlag; l++) {
            int dx = lags[2 * l], dy = lags[2 * l + 1];
            double c = 0;
            for (int y = 0; y < n; y++)
                for (int x = 0; x < n; x++) {
                    int u = x - dx, w = y - dy;
                    if (u >= 0 && w >= 0 && u < n && w < n)
                        c += (double)mc.data[w * n + u] * ((double)m.data[y * n + x] - mc.data[y * n + x]);
                }
            v[k * nlag + l] = c / mm;
        }
        clred_psf_free(&m);
    }
    clred_psf_free(&mc);
    return ok;
}

int clred_psf_pair_variation(const clred_psf *pn, const clred_psf *pr, double cx, double cy, const double *xy,
                             size_t npts, double *vnn, double *vrr, double *vnr)
{
    double r = fmax(1.0, fmax(pn->fwhm, pr->fwhm));
    int L = (int)floor(r), nlag = 0;
    int *lags = malloc(2 * (size_t)(2 * L + 1) * (size_t)(2 * L + 1) * sizeof *lags);
    for (int dy = -L; lags && dy <= L; dy++)
        for (int dx = -L; dx <= L; dx++)
            if (hypot(dx, dy) <= r) {
                lags[2 * nlag] = dx;
                lags[2 * nlag++ + 1] = dy;
            }
    double *v = malloc(2 * npts * (size_t)(nlag ? nlag : 1) * sizeof *v), *w = v ? v + npts * (size_t)nlag : NULL;
    int ok = lags && v && variation_residuals(pn, cx, cy, xy, npts, lags, (size_t)nlag, v) &&
             variation_residuals(pr, cx, cy, xy, npts, lags, (size_t)nlag, w);
    for (size_t k = 0; ok && k < npts; k++) {
        double snn = 0, srr = 0, snr = 0;
        for (int l = 0; l < nlag; l++) {
            double a = v[k * (size_t)nlag + (size_t)l], b = w[k * (size_t)nlag + (size_t)l];
            snn += a * a;
            srr += b * b;
            snr += a * b;
        }
        vnn[k] = nlag ? snn / nlag : 0.0;
        vrr[k] = nlag ? srr / nlag : 0.0;
        vnr[k] = nlag ? snr / nlag : 0.0;
    }
    free(lags);
    free(v);
    return ok;
}

/* The model's wing error ring by ring (psf->wing_err): clred_psf_model_error's
 * measure at the lags beyond core_radius out to the stamp's half size, in
 * rings of ring_px (ring k: |d| / ring_px rounded = k; 0 within the core).
 * The core's lags see a star's residual where its own S_N is large, and
 * model_err S_N covers it; a wing error (a model whose wings are a few %
 * off) leaves its residual in S several px from the star, where S_N is
 * small: there it is the bright star's flux times this ring's error. Same
 * noise model, leave-one-out and median over the better measured half, but
 * taken lag by lag and then averaged over the ring (filtered_errors'
 * per_lag): per star, rings 2-5 times the truth's, flat where the truth
 * decays (faint sources in most stamps' rings); lag by lag, within about
 * 1.5 times of it and decaying (sweep_zogy_psf, ZP_WING). Returns the stars
 * used (0: none, the rings all 0). */
size_t clred_psf_wing_error(const float *stamps, const float *vars, const double *vb, const float *models,
                            size_t model_stride, const double *loo, int loo_exact, size_t nstars, size_t size,
                            double core_radius, double ring_px, double *rings)
{
    return filtered_errors(stamps, vars, vb, models, model_stride, loo, loo_exact, nstars, size, core_radius,
                           (double)(size / 2), ring_px, CLRED_PSF_WING_RINGS, 1, rings);
}

/* The phases of a shift by f pixels over n samples (frequencies -n/2 ..
 * (n-1)/2): the forward transform's cos/sin (fc, fs) and the shifted
 * inverse's (ic, is), each n x n, frequency-major. */
static void shift_phases(size_t n, double f, double *fc, double *fs, double *ic, double *is)
{
    const double tau = 6.283185307179586;
    long lo = -(long)(n / 2);
    for (size_t q = 0; q < n; q++)
        for (size_t x = 0; x < n; x++) {
            double k = (double)(lo + (long)q), pf = -tau * k * (double)x / (double)n;
            double pi = tau * k * ((double)x - f) / (double)n;
            fc[q * n + x] = cos(pf);
            fs[q * n + x] = sin(pf);
            ic[q * n + x] = cos(pi);
            is[q * n + x] = sin(pi);
        }
}

/* One line of n values (step apart) shifted by the phase of its discrete
 * Fourier transform (shift_phases; at an even n the Nyquist term keeps its
 * real part): a band-limited PSF's exact shift, without the smoothing an
 * interpolating kernel adds at half-pixel phases. re, im: scratch of n. */
static void fourier_shift_line(double *a, size_t n, size_t step, const double *ph, double *re, double *im)
{
    const double *fc = ph, *fs = ph + n * n, *ic = ph + 2 * n * n, *is = ph + 3 * n * n;
    for (size_t q = 0; q < n; q++) {
        double sr = 0, si = 0;
        for (size_t x = 0; x < n; x++) {
            sr += a[x * step] * fc[q * n + x];
            si += a[x * step] * fs[q * n + x];
        }
        re[q] = sr;
        im[q] = si;
    }
    for (size_t x = 0; x < n; x++) {
        double v = 0;
        for (size_t q = 0; q < n; q++)
            v += re[q] * ic[q * n + x] - im[q] * is[q * n + x];
        a[x * step] = v / (double)n;
    }
}

/* An n x n model shifted by (fx, fy) pixels (rows, then columns); out may
 * not alias in. work: scratch of 5 n * n + 2 n. */
static void fourier_shift(const float *in, float *out, size_t n, double fx, double fy, double *work)
{
    double *a = work, *ph = work + n * n, *re = ph + 4 * n * n, *im = re + n;
    for (size_t p = 0; p < n * n; p++)
        a[p] = in[p];
    shift_phases(n, fx, ph, ph + n * n, ph + 2 * n * n, ph + 3 * n * n);
    for (size_t j = 0; j < n; j++)
        fourier_shift_line(a + j * n, n, 1, ph, re, im);
    shift_phases(n, fy, ph, ph + n * n, ph + 2 * n * n, ph + 3 * n * n);
    for (size_t i = 0; i < n; i++)
        fourier_shift_line(a + i, n, n, ph, re, im);
    for (size_t p = 0; p < n * n; p++)
        out[p] = (float)a[p];
}

/* psf->wing_err from the stars of clred_psf_model_error (same arguments):
 * rings of 1 px, wider for a model too large for CLRED_PSF_WING_RINGS of
 * them to reach its half size. */
static void model_wing_error(const float *st, const float *vars, const double *skyv, const float *models,
                             size_t stride, const double *loo, int loo_exact, size_t used, size_t n, clred_psf *psf)
{
    double ring = fmax(1.0, ceil((double)(n / 2) / (CLRED_PSF_WING_RINGS - 1)));
    if (clred_psf_wing_error(st, vars, skyv, models, stride, loo, loo_exact, used, n, fmax(1.0, psf->fwhm), ring,
                             psf->wing_err) == 0)
        return;
    for (int k = 0; k < CLRED_PSF_WING_RINGS; k++)
        psf->wing_err[k] = fmin(psf->wing_err[k], 0.5);
    psf->wing_ring_px = ring;
}

/* The stars as the image holds them, for judging a model: each star's stamp
 * on the image's own pixel grid (not recentred), with its pixels' and sky
 * level's variances, and each star's model (at the star's position for a
 * varying fit) shifted onto the star's centroid. Recentred stamps carry each
 * its own interpolation smoothing, which varies with the star's sub-pixel
 * phase and which the model, their mean, has only on average: their
 * residuals would count that spread as the model's error. ZOGY meets the
 * star unshifted, so that is the residual to measure. The neighbours are
 * masked again (the masked copy the fit used is gone). A star whose
 * unshifted stamp cannot be cut is left out (all NaN). The neighbours'
 * masks are placed from the star's centroid, half a pixel at most from the
 * stamp's centre: within the 3 FWHM radius' margin. */
typedef struct {
    size_t used, n;
    float *st, *vars, *models, *base;
    double *skyv, *loo, *work, *e2, *nu2, *px2, *wt;
} star_set;

static void star_set_free(star_set *s)
{
    free(s->st);
    free(s->vars);
    free(s->models);
    free(s->base);
    free(s->skyv);
    free(s->loo);
    free(s->work);
    free(s->e2);
    free(s->wt);
    memset(s, 0, sizeof *s);
}

static clred_status star_set_cut(star_set *s, const clred_image *img, const clred_psf_opts *o,
                                 const sky_exclusion *ex, float *buf, size_t cap, const double *sx, const double *sy,
                                 size_t used, size_t n, const clred_source *src, size_t nsrc, const size_t *star,
                                 double fwhm)
{
    size_t n2 = n * n;
    memset(s, 0, sizeof *s);
    s->used = used;
    s->n = n;
    s->st = malloc(used * n2 * sizeof *s->st);
    s->vars = malloc(used * n2 * sizeof *s->vars);
    s->models = malloc(used * n2 * sizeof *s->models);
    s->base = malloc(n2 * sizeof *s->base);
    s->skyv = malloc(used * sizeof *s->skyv);
    s->loo = malloc(used * sizeof *s->loo);
    s->work = malloc((5 * n2 + 2 * n) * sizeof *s->work);
    s->e2 = malloc(3 * used * sizeof *s->e2);
    s->wt = malloc(used * sizeof *s->wt);
    if (!s->st || !s->vars || !s->models || !s->base || !s->skyv || !s->loo || !s->work || !s->e2 || !s->wt) {
        star_set_free(s);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for the PSF model's error");
    }
    s->nu2 = s->e2 + used;
    s->px2 = s->nu2 + used;
    for (size_t i = 0; i < used; i++) {
        double cx = (double)lround(sx[i]), cy = (double)lround(sy[i]);
        /* on integer positions the cubic samples the pixels themselves */
        if (!star_stamp(img, cx, cy, o, ex, s->st + i * n2, s->vars + i * n2, s->skyv + i, buf, cap)) {
            for (size_t p = 0; p < n2; p++)
                s->st[i * n2 + p] = NAN;
            s->skyv[i] = 0.0;
        }
    }
    mask_neighbours(s->st, used, n, src, nsrc, star, 3.0 * fwhm);
    return CLRED_OK;
}

/* s->models: psf at each star (a constant one's the same for all) shifted
 * onto the star's centroid; with winged, a varying fit evaluated with its
 * wings fitted (clred_psf_analytic_wings), as ZOGY evaluates it. */
static clred_status star_set_models(star_set *s, const clred_psf *psf, const double *sx, const double *sy,
                                    int winged)
{
    size_t n = s->n, n2 = n * n;
    int varying = psf->order > 0 && psf->basis;
    for (size_t i = 0; i < s->used; i++) {
        if (varying || i == 0) {
            clred_psf e;
            CLRED_TRY(clred_psf_eval(psf, varying ? sx[i] : psf->x0, varying ? sy[i] : psf->y0, &e));
            if (varying && winged)
                clred_psf_analytic_wings(&e);
            memcpy(s->base, e.data, n2 * sizeof *s->base);
            clred_psf_free(&e);
        }
        double cx = (double)lround(sx[i]), cy = (double)lround(sy[i]);
        fourier_shift(s->base, s->models + i * n2, n, sx[i] - cx, sy[i] - cy, s->work);
    }
    return CLRED_OK;
}

/* s->loo: each star's leave-one-out factor, s - m_loo = (1 + loo) (s - m),
 * for the model psf fitted with weights wt. With leverage (and a varying
 * psf) the fit's exact one, loo = h / (1 - h) with h the star's leverage
 * (the hat matrix' diagonal), which is large for the stars on the edge of
 * the field, whose position the terms follow; a star the fit rejected
 * (kept: which it kept, NULL for all) does not pull it, loo 0. Otherwise
 * the star's weight over the others': exact for the constant model (the
 * stars' weighted mean), for a varying fit a lower bound. */
static void star_set_loo(star_set *s, const clred_psf *psf, const double *sx, const double *sy, const double *wt,
                         const unsigned char *kept, int leverage)
{
    double wsum = 0;
    for (size_t i = 0; i < s->used; i++)
        wsum += (s->wt[i] = kept && !kept[i] ? 0.0 : wt[i]);
    int lev = leverage && psf->order > 0 && psf->basis && clred_psf_leverage(psf, sx, sy, s->wt, s->used, s->loo);
    for (size_t i = 0; i < s->used; i++)
        if (lev)
            s->loo[i] = s->loo[i] < 1.0 ? s->loo[i] / (1.0 - s->loo[i]) : 0.0;
        else
            s->loo[i] = wsum > s->wt[i] ? s->wt[i] / (wsum - s->wt[i]) : 0.0;
}

/* psf->model_err from the star set (clred_psf_model_error), each star's
 * leave-one-out factor its weight's share (star_set_loo without leverage:
 * the exact leverage makes the edge stars' residuals an extrapolation's,
 * larger than the model's error where they are; with it, sweep_zogy_psf
 * order 2, seeds 1-16, both fields, gave 218 false candidates instead of
 * 287 but found 1191 of 1228 transients instead of 1203, the gradient
 * field's seeds 1-8 below 95 %), lags out to the model's FWHM: the
 * filtered residual's structure within the filtered star's core, where S_N
 * and S_R are large enough for the term to matter (beyond it, the wing
 * profile: model_wing_error). A varying fit is evaluated with its wings
 * fitted, as ZOGY evaluates it: the error of the model ZOGY uses (order 2
 * as given, seeds 1-8: 302 / 308 transients found, 3 false candidates,
 * against 294 / 308 and 2 measured on its raw stacked wings). */
static clred_status estimate_model_error(star_set *s, const double *sx, const double *sy, const double *wt,
                                         clred_psf *psf)
{
    int varying = psf->order > 0 && psf->basis;
    CLRED_TRY(star_set_models(s, psf, sx, sy, 1));
    star_set_loo(s, psf, sx, sy, wt, NULL, 0);
    double e = clred_psf_model_error(s->st, s->vars, s->skyv, s->models, s->n * s->n, s->loo, !varying, s->used, s->n,
                                     fmax(1.0, psf->fwhm));
    psf->model_err = isfinite(e) ? fmin(e, 0.5) : 0.0;
    model_wing_error(s->st, s->vars, s->skyv, s->models, s->n * s->n, s->loo, !varying, s->used, s->n, psf);
    return CLRED_OK;
}

/* Each star's held-out error against the model psf (x): its filtered
 * leave-one-out residual's mean square (clred_psf_star_errors with the
 * fit's exact leave-one-out factors, lags out to lag px) less the star's
 * own noise (its pixels' and sky level's, not the model's: the model's
 * noise is part of how badly it predicts a star it was not fitted to); NaN
 * for a star without a usable stamp. key: the star's pixels' noise (px2),
 * the same whatever the model. */
static clred_status held_out_errors(star_set *s, const clred_psf *psf, const double *sx, const double *sy,
                                    const double *wt, const unsigned char *kept, double lag, double *x, double *key)
{
    CLRED_TRY(star_set_models(s, psf, sx, sy, 0));
    star_set_loo(s, psf, sx, sy, wt, kept, 1);
    if (!clred_psf_star_errors(s->st, s->vars, s->skyv, s->models, s->n * s->n, s->loo, s->used, s->n, lag, s->e2,
                               s->nu2, s->px2))
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for the PSF model's error");
    for (size_t i = 0; i < s->used; i++) {
        x[i] = s->e2[i] - s->nu2[i] / ((1.0 + s->loo[i]) * (1.0 + s->loo[i]));
        if (key)
            key[i] = s->px2[i];
    }
    return CLRED_OK;
}

double clred_psf_paired_median(const double *xa, const double *xb, const double *key, size_t n, double *tmp)
{
    double *d = tmp, *k = tmp + n, *work = tmp + 2 * n;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(xa[i]) && isfinite(xb[i]) && isfinite(key[i])) {
            d[m] = xa[i] - xb[i];
            k[m++] = key[i];
        }
    return m ? better_half_median(d, k, m, work) : NAN;
}

static clred_status measure_on(const clred_image *img, const clred_source *src, size_t nsrc, const clred_psf_opts *o,
                               clred_psf *psf)
{
    size_t n = o->size, *idx = malloc((nsrc ? nsrc : 1) * sizeof *idx);
    size_t maxs = (size_t)(o->max_stars > 0 ? o->max_stars : 50) * (size_t)(o->order + 1);
    float *stamps = malloc(maxs * n * n * sizeof *stamps), *col = malloc(maxs * sizeof *col);
    double *sx = malloc(maxs * sizeof *sx), *sy = malloc(maxs * sizeof *sy), *wt = malloc(maxs * sizeof *wt);
    /* held-out errors of the best model so far and of a candidate, the stars' key, scratch */
    double *xbest = malloc(7 * maxs * sizeof *xbest), *xc = xbest ? xbest + maxs : NULL;
    double *key = xc ? xc + maxs : NULL, *tmp = key ? key + maxs : NULL;
    unsigned char *kept_mask = malloc(maxs);
    size_t *star = malloc(maxs * sizeof *star);
    clred_status st = CLRED_OK;
    if (!idx || !stamps || !col || !sx || !sy || !wt || !star || !xbest || !kept_mask)
        st = clred_fail(CLRED_ERR_MEMORY, "out of memory for PSF stamps");
    size_t cap = (size_t)(4 * (2 * n + 16) * (2 * n + 16));
    float *buf = malloc(cap * sizeof *buf);
    if (st == CLRED_OK && !buf)
        st = clred_fail(CLRED_ERR_MEMORY, "out of memory for PSF sky samples");
    size_t k = st == CLRED_OK ? pick_stars(src, nsrc, o, img->width, img->height, idx) : 0, used = 0;
    /* other sources' light within 3 FWHM is kept out of each star's sky */
    double fwhm = k ? typical_fwhm(src, idx, k) : 2.0;
    sky_exclusion ex = {src, nsrc, 3.0 * fwhm};
    for (size_t i = 0; i < k && used < maxs; i++) {
        const clred_source *sr = &src[idx[i]];
        if (!star_stamp(img, sr->x, sr->y, o, &ex, stamps + used * n * n, NULL, NULL, buf, cap))
            continue;
        /* a normalised stamp's noise goes as 1 / S/N: inverse-variance weights */
        double snr = sr->flux / sr->flux_err;
        sx[used] = sr->x;
        sy[used] = sr->y;
        star[used] = idx[i];
        wt[used++] = snr * snr;
    }
    if (st == CLRED_OK && used < 3)
        st = clred_fail(CLRED_ERR_INPUT,
                        "PSF: %zu isolated, unsaturated stars with S/N >= %g found (of %zu sources); at least 3 needed",
                        used, o->min_snr, nsrc);
    float *masked = NULL;
    if (st == CLRED_OK && !(masked = malloc(used * n * n * sizeof *masked)))
        st = clred_fail(CLRED_ERR_MEMORY, "out of memory for PSF stamps");
    star_set ss = {0};
    if (st == CLRED_OK)
        st = star_set_cut(&ss, img, o, &ex, buf, cap, sx, sy, used, n, src, nsrc, star, fwhm);
    if (st == CLRED_OK) {
        /* neighbours' light, at most 4 sigma above the other stamps, would
         * pass the clip and raise the model's wings */
        memcpy(masked, stamps, used * n * n * sizeof *masked);
        mask_neighbours(masked, used, n, src, nsrc, star, 3.0 * fwhm);
        st = weighted_model(masked, wt, used, n, col, psf);
        if (st == CLRED_OK)
            clred_psf_analytic_wings(psf);
    }
    /* as given, the highest order asked for that the stars support (the fit
     * may reject stars or find their positions too clustered: lower);
     * selected, the order up to it whose model best predicts the stars left
     * out of it: a variation the stars do not support (too few, too faint
     * for the extra terms) follows their noise and contamination and is
     * wrong away from them, and an order they cannot fit is no candidate */
    int sel = o->select_order != 0, step = sel ? 1 : -1;
    double lag = fmax(1.0, fwhm);
    if (st == CLRED_OK && sel && o->order > 0)
        st = held_out_errors(&ss, psf, sx, sy, wt, NULL, lag, xbest, key);
    for (int order = sel ? 1 : o->order; st == CLRED_OK && order >= 1 && order <= o->order; order += step) {
        memcpy(masked, stamps, used * n * n * sizeof *masked);
        mask_neighbours(masked, used, n, src, nsrc, star, 3.0 * fwhm);
        size_t kept = 0;
        clred_psf cand = {0};
        int r = clred_psf_fit_varying(masked, sx, sy, wt, used, n, order, img->width, img->height,
                                      fmin((double)(n / 2), 3.0 * fwhm), &cand, &kept, kept_mask);
        if (r < 0)
            st = CLRED_ERR_MEMORY;
        if (r <= 0)
            continue;
        if (sel)
            st = held_out_errors(&ss, &cand, sx, sy, wt, kept_mask, lag, xc, NULL);
        if (st == CLRED_OK && (!sel || clred_psf_paired_median(xc, xbest, key, used, tmp) < 0)) {
            clred_psf_free(psf);
            *psf = cand;
            if (!sel)
                break;
            memcpy(xbest, xc, used * sizeof *xbest);
        } else
            clred_psf_free(&cand);
    }
    if (st == CLRED_OK)
        st = estimate_model_error(&ss, sx, sy, wt, psf);

    star_set_free(&ss);
    free(masked);
    free(star);
    free(idx);
    free(sx);
    free(sy);
    free(wt);
    free(xbest);
    free(kept_mask);
    free(stamps);
    free(col);
    free(buf);
    if (st != CLRED_OK)
        clred_psf_free(psf);
    return st;
}

static clred_status check_psf_opts(const clred_psf_opts *o)
{
    if (o->size < 5 || o->size % 2 == 0 || o->size > 255)
        return clred_fail(CLRED_ERR_USAGE, "PSF size must be odd, 5..255 px, got %zu", o->size);
    if (o->order < 0 || o->order > 2)
        return clred_fail(CLRED_ERR_USAGE, "PSF order must be 0, 1 or 2, got %d", o->order);
    if (!(o->thresh > 0) || !(o->min_snr > 0))
        return clred_fail(CLRED_ERR_USAGE, "PSF: threshold %g and minimum S/N %g must be > 0", o->thresh, o->min_snr);
    return CLRED_OK;
}

clred_status clred_psf_model_measure_dev(clred_ctx *ctx, const clred_dimage *img, const clred_psf_opts *opts,
                                   clred_psf *psf)
{
    clred_psf_opts d = clred_psf_defaults();
    const clred_psf_opts *o = opts ? opts : &d;
    memset(psf, 0, sizeof *psf);
    CLRED_TRY(check_psf_opts(o));
    clred_detect_opts dopts = clred_detect_defaults();
    dopts.thresh = o->thresh;
    dopts.saturation = o->saturation;
    dopts.ignore_bits = o->ignore_bits;
    clred_source *src = NULL;
    size_t nsrc = 0;
    CLRED_TRY(clred_detect_sources_dev(ctx, img, NULL, NULL, NAN, 0.0, &dopts, &src, &nsrc));
    /* The stamps need the pixels around a few dozen stars: the image comes
     * down once (a PSF is measured once per frame). */
    clred_image host;
    clred_status st = clred_dimage_download(img, &host);
    if (st == CLRED_OK)
        st = measure_on(&host, src, nsrc, o, psf);
    clred_image_free(&host);
    free(src);
    return st;
}

clred_status clred_psf_model_measure(clred_ctx *ctx, const clred_image *img, const clred_psf_opts *opts, clred_psf *psf)
{
    memset(psf, 0, sizeof *psf);
    if (!img || !img->sci)
        return clred_fail(CLRED_ERR_USAGE, "PSF: no image");
    clred_psf_opts d = clred_psf_defaults();
    const clred_psf_opts *o = opts ? opts : &d;
    CLRED_TRY(check_psf_opts(o));
    clred_detect_opts dopts = clred_detect_defaults();
    dopts.thresh = o->thresh;
    dopts.saturation = o->saturation;
    dopts.ignore_bits = o->ignore_bits;
    clred_source *src = NULL;
    size_t nsrc = 0;
    CLRED_TRY(clred_detect_sources(ctx, img, NULL, NULL, NAN, 0.0, &dopts, &src, &nsrc));
    clred_status st = measure_on(img, src, nsrc, o, psf);
    free(src);
    return st;
}
