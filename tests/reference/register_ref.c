/* Double-precision references for the registration module (plain loops, no shortcuts). */
#include "register_ref.h"

#include <math.h>
#include <stdlib.h>

#define TWO_PI 6.283185307179586476925286766559

/* cos and sin of 2 pi m / n for m < n (tw[2m], tw[2m + 1]): the phases of
 * an n-point DFT, reduced in integers so they stay exact for any size. */
static double *unit_circle(size_t n)
{
    double *tw = malloc(2 * n * sizeof *tw);
    for (size_t m = 0; m < n; m++) {
        tw[2 * m] = cos(TWO_PI * (double)m / (double)n);
        tw[2 * m + 1] = sin(TWO_PI * (double)m / (double)n);
    }
    return tw;
}

/* The 2-D DFT is the 1-D DFT of every row, then of every column of that:
 * F(kx, ky) = sum_v e^{-2 pi i ky v / ny} [sum_u x(u, v) e^{-2 pi i kx u / nx}]
 * (the same sums as the direct double loop over u and v, grouped by v;
 * O(N^1.5) instead of O(N^2), which keeps the 64 x 48 references of the
 * registration tests to a fraction of a second). */
void ref_dft2_r2c(const double *x, size_t nx, size_t ny, double *re, double *im)
{
    size_t ncx = nx / 2 + 1;
    double *twx = unit_circle(nx), *twy = unit_circle(ny);
    double *rr = malloc(ncx * ny * sizeof *rr), *ri = malloc(ncx * ny * sizeof *ri);
    for (size_t v = 0; v < ny; v++) /* rows: rr + i ri = sum_u x(u, v) e^{-2 pi i kx u / nx} */
        for (size_t kx = 0; kx < ncx; kx++) {
            double sr = 0.0, si = 0.0;
            for (size_t u = 0; u < nx; u++) {
                size_t m = (kx * u) % nx;
                sr += x[v * nx + u] * twx[2 * m];
                si -= x[v * nx + u] * twx[2 * m + 1];
            }
            rr[v * ncx + kx] = sr;
            ri[v * ncx + kx] = si;
        }
    for (size_t ky = 0; ky < ny; ky++) /* columns: times e^{-2 pi i ky v / ny}, summed over v */
        for (size_t kx = 0; kx < ncx; kx++) {
            double sr = 0.0, si = 0.0;
            for (size_t v = 0; v < ny; v++) {
                size_t m = (ky * v) % ny;
                double c = twy[2 * m], s = -twy[2 * m + 1];
                sr += rr[v * ncx + kx] * c - ri[v * ncx + kx] * s;
                si += rr[v * ncx + kx] * s + ri[v * ncx + kx] * c;
            }
            re[ky * ncx + kx] = sr;
            im[ky * ncx + kx] = si;
        }
    free(twx);
    free(twy);
    free(rr);
    free(ri);
}

/* The shift factor along one axis for bin k of n: e^{-2 pi i k d / n} with
 * signed k; the Nyquist bin of an even n is split evenly between +n/2 and
 * -n/2, which leaves the real factor cos(pi d) and keeps the result real. */
static void axis_factor(size_t k, size_t n, double d, double *re, double *im)
{
    if (n % 2 == 0 && k == n / 2) {
        *re = cos(M_PI * d);
        *im = 0.0;
        return;
    }
    double f = k <= n / 2 ? (double)k : (double)k - (double)n;
    *re = cos(TWO_PI * f * d / (double)n);
    *im = -sin(TWO_PI * f * d / (double)n);
}

/* One line of n samples (stride apart) shifted by d through its DFT; tw is
 * unit_circle(n). */
static void shift_line(double *line, size_t n, size_t stride, double d, const double *tw, double *fr, double *fi)
{
    for (size_t k = 0; k < n; k++) {
        double sr = 0.0, si = 0.0;
        for (size_t u = 0; u < n; u++) {
            size_t m = (k * u) % n; /* e^{-2 pi i m / n} */
            sr += line[u * stride] * tw[2 * m];
            si -= line[u * stride] * tw[2 * m + 1];
        }
        double mr, mi;
        axis_factor(k, n, d, &mr, &mi);
        fr[k] = sr * mr - si * mi;
        fi[k] = sr * mi + si * mr;
    }
    for (size_t u = 0; u < n; u++) {
        double s = 0.0;
        for (size_t k = 0; k < n; k++) {
            size_t m = (k * u) % n; /* e^{+2 pi i m / n} */
            s += fr[k] * tw[2 * m] - fi[k] * tw[2 * m + 1];
        }
        line[u * stride] = s / (double)n;
    }
}

/* The 2-D shift factor is the product of the axis factors, so the 2-D
 * Fourier shift is exactly a 1-D shift of every row, then of every column. */
void ref_fourier_shift(const double *in, size_t nx, size_t ny, double dx, double dy, double *out)
{
    size_t nmax = nx > ny ? nx : ny;
    double *fr = malloc(nmax * sizeof *fr), *fi = malloc(nmax * sizeof *fi);
    double *twx = unit_circle(nx), *twy = unit_circle(ny);
    for (size_t i = 0; i < nx * ny; i++)
        out[i] = in[i];
    for (size_t y = 0; y < ny; y++)
        shift_line(out + y * nx, nx, 1, dx, twx, fr, fi);
    for (size_t x = 0; x < nx; x++)
        shift_line(out + x, ny, nx, dy, twy, fr, fi);
    free(fr);
    free(fi);
    free(twx);
    free(twy);
}

static double sinc(double x)
{
    if (fabs(x) < 1e-12)
        return 1.0;
    double px = M_PI * x;
    return sin(px) / px;
}

double ref_interp_weight(int kind, double t)
{
    double a = fabs(t);
    switch (kind) {
    case 0: return a < 0.5 ? 1.0 : (a == 0.5 && t < 0 ? 1.0 : 0.0); /* floor(u + 0.5) picks the tap at -0.5 */
    case 1: return a < 1.0 ? 1.0 - a : 0.0;
    case 2: {
        const double A = -0.5;
        if (a < 1.0)
            return ((A + 2.0) * a - (A + 3.0)) * a * a + 1.0;
        if (a < 2.0)
            return ((A * a - 5.0 * A) * a + 8.0 * A) * a - 4.0 * A;
        return 0.0;
    }
    case 3: return a < 3.0 ? sinc(t) * sinc(t / 3.0) : 0.0;
    }
    return 0.0;
}

double ref_interp_at(const float *img, const float *var, const unsigned char *usable, size_t w, size_t h, int kind,
                     double u, double v, double *var_out, int *touched_unusable)
{
    long lo, hi;
    double fu = floor(u), fv = floor(v);
    /* taps: nearest 1, bilinear 0..1, bicubic -1..2, Lanczos-3 -2..3 around floor */
    switch (kind) {
    case 0: lo = 0; hi = 0; fu = floor(u + 0.5); fv = floor(v + 0.5); break;
    case 1: lo = 0; hi = 1; break;
    case 2: lo = -1; hi = 2; break;
    default: lo = -2; hi = 3; break;
    }
    double sw = 0.0, s = 0.0, sv = 0.0;
    int touched = 0;
    for (long j = lo; j <= hi; j++) {
        double wy = kind == 0 ? 1.0 : ref_interp_weight(kind, v - (fv + (double)j));
        long yy = (long)fv + j;
        yy = yy < 0 ? 0 : yy >= (long)h ? (long)h - 1 : yy;
        for (long i = lo; i <= hi; i++) {
            double wx = kind == 0 ? 1.0 : ref_interp_weight(kind, u - (fu + (double)i));
            double wgt = wx * wy;
            if (wgt == 0.0)
                continue;
            long xx = (long)fu + i;
            xx = xx < 0 ? 0 : xx >= (long)w ? (long)w - 1 : xx;
            size_t k = (size_t)yy * w + (size_t)xx;
            if ((usable && !usable[k]) || !isfinite(img[k])) {
                touched = 1;
                continue;
            }
            sw += wgt;
            s += wgt * img[k];
            if (var)
                sv += wgt * wgt * var[k];
        }
    }
    if (touched_unusable)
        *touched_unusable = touched;
    if (fabs(sw) < 1e-3) {
        if (var_out)
            *var_out = NAN;
        return NAN;
    }
    if (var_out)
        *var_out = sv / (sw * sw);
    return s / sw;
}

/* As window_weight in kernels/fft_util.cl, in double. */
static double window_weight_ref(int kind, size_t i, size_t n, double alpha)
{
    if (kind == 0 || n < 2)
        return 1.0;
    double t = ((double)i + 0.5) / (double)n;
    if (kind == 1)
        return 0.5 - 0.5 * cos(2.0 * M_PI * t);
    double edge = 0.5 * alpha;
    if (edge <= 0.0)
        return 1.0;
    if (t < edge)
        return 0.5 - 0.5 * cos(M_PI * t / edge);
    if (t > 1.0 - edge)
        return 0.5 - 0.5 * cos(M_PI * (1.0 - t) / edge);
    return 1.0;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* (frame - median of its usable pixels) * window, zero-padded to nx x ny. */
static void padded_frame(const float *img, const unsigned char *usable, size_t w, size_t h, size_t nx, size_t ny,
                         int window, double alpha, double *out)
{
    double *v = malloc(w * h * sizeof *v);
    size_t m = 0;
    for (size_t i = 0; i < w * h; i++)
        if (isfinite(img[i]) && (!usable || usable[i]))
            v[m++] = img[i];
    qsort(v, m, sizeof *v, cmp_dbl);
    double fill = m ? 0.5 * (v[(m - 1) / 2] + v[m / 2]) : 0.0;
    free(v);
    for (size_t y = 0; y < ny; y++)
        for (size_t x = 0; x < nx; x++) {
            double o = 0.0;
            if (x < w && y < h) {
                size_t i = y * w + x;
                int ok = isfinite(img[i]) && (!usable || usable[i]);
                o = ok ? ((double)img[i] - fill) : 0.0;
                o *= window_weight_ref(window, x, w, alpha) * window_weight_ref(window, y, h, alpha);
            }
            out[y * nx + x] = o;
        }
}

/* The cross-power half spectrum F(img) conj(F(ref)) into ar, ai (ny rows of
 * nx / 2 + 1 bins), as ref_phasecorr_surface describes. */
static void cross_spectrum(const float *ref, const unsigned char *ref_usable, const float *img,
                           const unsigned char *img_usable, size_t w, size_t h, size_t nx, size_t ny, int window,
                           double alpha, int phase_only, double *ar, double *ai)
{
    size_t ncx = nx / 2 + 1, n = nx * ny;
    double *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    double *br = malloc(ncx * ny * sizeof *br), *bi = malloc(ncx * ny * sizeof *bi);
    padded_frame(img, img_usable, w, h, nx, ny, window, alpha, a);
    padded_frame(ref, ref_usable, w, h, nx, ny, window, alpha, b);
    ref_dft2_r2c(a, nx, ny, ar, ai);
    ref_dft2_r2c(b, nx, ny, br, bi);
    /* cross power a conj(b) into ar, ai */
    for (size_t k = 0; k < ncx * ny; k++) {
        double cr = ar[k] * br[k] + ai[k] * bi[k], ci = ai[k] * br[k] - ar[k] * bi[k];
        if (phase_only) {
            double m = hypot(cr, ci);
            cr = m > 1e-30 ? cr / m : 0.0;
            ci = m > 1e-30 ? ci / m : 0.0;
        }
        ar[k] = cr;
        ai[k] = ci;
    }
    free(a);
    free(b);
    free(br);
    free(bi);
}

void ref_phasecorr_surface(const float *ref, const unsigned char *ref_usable, const float *img,
                           const unsigned char *img_usable, size_t w, size_t h, size_t nx, size_t ny, int window,
                           double alpha, int phase_only, double *surface)
{
    size_t ncx = nx / 2 + 1, n = nx * ny;
    double *ar = malloc(ncx * ny * sizeof *ar), *ai = malloc(ncx * ny * sizeof *ai);
    cross_spectrum(ref, ref_usable, img, img_usable, w, h, nx, ny, window, alpha, phase_only, ar, ai);
    /* inverse of the half spectrum: bins 0 < kx < nx / 2 stand for their
     * conjugate twins too; surface(x, y) = Re sum_ky e^{2 pi i ky y / ny}
     * [sum_kx w_kx C(kx, ky) e^{2 pi i kx x / nx}] / n, the inner sums first
     * (separable, as ref_dft2_r2c) */
    double *twx = unit_circle(nx), *twy = unit_circle(ny);
    double *br = malloc(nx * ny * sizeof *br), *bi = malloc(nx * ny * sizeof *bi);
    for (size_t ky = 0; ky < ny; ky++)
        for (size_t x = 0; x < nx; x++) {
            double sr = 0.0, si = 0.0;
            for (size_t kx = 0; kx < ncx; kx++) {
                double wgt = (kx == 0 || (nx % 2 == 0 && kx == nx / 2)) ? 1.0 : 2.0;
                size_t m = (kx * x) % nx;
                double c = twx[2 * m], s = twx[2 * m + 1];
                sr += wgt * (ar[ky * ncx + kx] * c - ai[ky * ncx + kx] * s);
                si += wgt * (ar[ky * ncx + kx] * s + ai[ky * ncx + kx] * c);
            }
            br[ky * nx + x] = sr;
            bi[ky * nx + x] = si;
        }
    for (size_t y = 0; y < ny; y++)
        for (size_t x = 0; x < nx; x++) {
            double acc = 0.0;
            for (size_t ky = 0; ky < ny; ky++) {
                size_t m = (ky * y) % ny;
                acc += br[ky * nx + x] * twy[2 * m] - bi[ky * nx + x] * twy[2 * m + 1];
            }
            surface[y * nx + x] = acc / (double)n;
        }
    free(twx);
    free(twy);
    free(br);
    free(bi);
    free(ar);
    free(ai);
}

void ref_phasecorr_at(const float *ref, const unsigned char *ref_usable, const float *img,
                      const unsigned char *img_usable, size_t w, size_t h, size_t nx, size_t ny, int window,
                      double alpha, int phase_only, const double *xs, const double *ys, size_t npoints, double *out)
{
    size_t ncx = nx / 2 + 1;
    double *ar = malloc(ncx * ny * sizeof *ar), *ai = malloc(ncx * ny * sizeof *ai);
    cross_spectrum(ref, ref_usable, img, img_usable, w, h, nx, ny, window, alpha, phase_only, ar, ai);
    for (size_t p = 0; p < npoints; p++) {
        double acc = 0.0;
        for (size_t ky = 0; ky < ny; ky++) {
            double fy = ky <= ny / 2 ? (double)ky : (double)ky - (double)ny;
            for (size_t kx = 0; kx < ncx; kx++) {
                double wgt = (kx == 0 || (nx % 2 == 0 && kx == nx / 2)) ? 1.0 : 2.0;
                double ph = 2.0 * M_PI * ((double)kx * xs[p] / (double)nx + fy * ys[p] / (double)ny);
                acc += wgt * (ar[ky * ncx + kx] * cos(ph) - ai[ky * ncx + kx] * sin(ph));
            }
        }
        out[p] = acc / ((double)nx * (double)ny);
    }
    free(ar);
    free(ai);
}

void ref_surface_peak_psr(const double *surface, size_t nx, size_t ny, double max_shift, long *px, long *py,
                          double *psr)
{
    long bx = -1, by = -1;
    double best = -INFINITY;
    for (size_t y = 0; y < ny; y++)
        for (size_t x = 0; x < nx; x++) {
            double sx = x <= nx / 2 ? (double)x : (double)x - (double)nx;
            double sy = y <= ny / 2 ? (double)y : (double)y - (double)ny;
            if (max_shift > 0 && (fabs(sx) > max_shift || fabs(sy) > max_shift))
                continue;
            if (surface[y * nx + x] > best) {
                best = surface[y * nx + x];
                bx = (long)x;
                by = (long)y;
            }
        }
    *px = bx <= (long)nx / 2 ? bx : bx - (long)nx;
    *py = by <= (long)ny / 2 ? by : by - (long)ny;
    /* two passes for the sidelobes' mean and (sample) standard deviation */
    double sum = 0.0, ss = 0.0;
    size_t count = 0;
    for (int pass = 0; pass < 2; pass++)
        for (size_t y = 0; y < ny; y++)
            for (size_t x = 0; x < nx; x++) {
                long dx = labs((long)x - bx), dy = labs((long)y - by);
                dx = dx > (long)nx / 2 ? (long)nx - dx : dx;
                dy = dy > (long)ny / 2 ? (long)ny - dy : dy;
                if (dx <= 5 && dy <= 5)
                    continue;
                double v = surface[y * nx + x];
                if (pass == 0) {
                    sum += v;
                    count++;
                } else {
                    ss += (v - sum / (double)count) * (v - sum / (double)count);
                }
            }
    double mean = sum / (double)count, sd = sqrt(ss / (double)(count - 1));
    *psr = (best - mean) / sd;
}
