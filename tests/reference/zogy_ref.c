/* ZOGY in double precision: the equations of Zackay, Ofek & Gal-Yam (2016)
 * written out independently of the device code, full complex spectra by
 * separable DFTs (O(n^3): small test images only). */
#include "zogy_ref.h"

#include <complex.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef double complex cplx;

/* In-place 2-D DFT of a nx x ny array (sign -1 forward, +1 inverse with 1/(nx ny)). */
static void dft2(cplx *a, size_t nx, size_t ny, int sign)
{
    size_t m = nx > ny ? nx : ny;
    cplx *tmp = malloc(m * sizeof *tmp), *tw = malloc(m * sizeof *tw);
    for (size_t y = 0; y < ny; y++) {
        for (size_t k = 0; k < nx; k++)
            tw[k] = cexp(sign * 2.0 * M_PI * I * (double)k / (double)nx);
        for (size_t k = 0; k < nx; k++) {
            cplx s = 0;
            for (size_t x = 0; x < nx; x++)
                s += a[y * nx + x] * tw[(k * x) % nx];
            tmp[k] = s;
        }
        memcpy(a + y * nx, tmp, nx * sizeof *tmp);
    }
    for (size_t k = 0; k < ny; k++)
        tw[k] = cexp(sign * 2.0 * M_PI * I * (double)k / (double)ny);
    for (size_t x = 0; x < nx; x++) {
        for (size_t k = 0; k < ny; k++) {
            cplx s = 0;
            for (size_t y = 0; y < ny; y++)
                s += a[y * nx + x] * tw[(k * y) % ny];
            tmp[k] = s;
        }
        for (size_t k = 0; k < ny; k++)
            a[k * nx + x] = sign > 0 ? tmp[k] / (double)(nx * ny) : tmp[k];
    }
    free(tmp);
    free(tw);
}

static void wrap(const float *p, size_t s, size_t nx, size_t ny, cplx *dst)
{
    long h = (long)(s / 2);
    memset(dst, 0, nx * ny * sizeof *dst);
    for (long j = -h; j <= h; j++)
        for (long i = -h; i <= h; i++) {
            size_t x = (size_t)((i + (long)nx) % (long)nx), y = (size_t)((j + (long)ny) % (long)ny);
            dst[y * nx + x] = p[(size_t)(j + h) * s + (size_t)(i + h)];
        }
}

/* The transform of a real plane's square (malloc'd). */
static cplx *squared_transform(const cplx *x, size_t nx, size_t ny)
{
    size_t n = nx * ny;
    cplx *sq = malloc(n * sizeof *sq);
    for (size_t i = 0; i < n; i++)
        sq[i] = creal(x[i]) * creal(x[i]);
    dft2(sq, nx, ny, -1);
    return sq;
}

/* out = real(inverse(p^ q^ + r^ s^)) given the transforms p^, q^, r^, s^. */
static void inverse_of_products(const cplx *p, const cplx *q, const cplx *r, const cplx *s, size_t nx, size_t ny,
                                cplx *out)
{
    for (size_t i = 0; i < nx * ny; i++)
        out[i] = p[i] * q[i] + r[i] * s[i];
    dft2(out, nx, ny, +1);
}

/* out = real(inverse(va^ (k^2)^ + vb^ (kb^2)^)) given real-space kernels ka, kb. */
static void variance(const cplx *ka, const cplx *kb, const cplx *va, const cplx *vb, size_t nx, size_t ny, cplx *out)
{
    cplx *a = squared_transform(ka, nx, ny), *b = squared_transform(kb, nx, ny);
    inverse_of_products(va, a, vb, b, nx, ny, out);
    free(a);
    free(b);
}

/* A PSF's wing-error kernel (zogy_ref_in's K) wrapped onto the nx x ny grid. */
static void wing_kernel(const double *wing, size_t nrings, double ring_px, double core, size_t s, double area,
                        size_t nx, size_t ny, cplx *dst)
{
    long h = (long)(s / 2);
    memset(dst, 0, nx * ny * sizeof *dst);
    for (long j = -h; wing && j <= h; j++)
        for (long i = -h; i <= h; i++) {
            double r = sqrt((double)(i * i + j * j));
            long k = lround(r / ring_px);
            if (r > core && k < (long)nrings)
                dst[(size_t)((j + (long)ny) % (long)ny) * nx + (size_t)((i + (long)nx) % (long)nx)] =
                    wing[k] * wing[k] / area;
        }
}

/* out = real(inverse((a^2)^ ka^ + (b^2)^ kb^)) for real planes a, b and kernels ka, kb. */
static void wing_variance(const cplx *a, const cplx *b, cplx *ka, cplx *kb, size_t nx, size_t ny, cplx *out)
{
    cplx *a2 = squared_transform(a, nx, ny), *b2 = squared_transform(b, nx, ny);
    dft2(ka, nx, ny, -1);
    dft2(kb, nx, ny, -1);
    inverse_of_products(a2, ka, b2, kb, nx, ny, out);
    free(a2);
    free(b2);
}

/* g (n x n nodes, spacing 1) at (u, v) in node units: the weights of the
 * four nodes around the point, the point clamped into the grid. */
static double bilinear(const double *g, size_t n, double u, double v)
{
    u = fmin(fmax(u, 0.0), (double)(n - 1));
    v = fmin(fmax(v, 0.0), (double)(n - 1));
    double sum = 0;
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < n; i++) {
            double wu = 1.0 - fabs(u - (double)i), wv = 1.0 - fabs(v - (double)j);
            if (wu > 0 && wv > 0)
                sum += wu * wv * g[j * n + i];
        }
    return sum;
}

int zogy_ref(const zogy_ref_in *in, zogy_ref_out *out)
{
    size_t w = in->w, h = in->h, nx = in->nx, ny = in->ny, n = nx * ny;
    memset(out, 0, sizeof *out);
    enum { N, R, VN, VR, PN, PR, D, SN, SR, KN, KR, KDN, KDR, VS, VD, WN, WR, VW, NB };
    cplx *b[NB];
    for (int i = 0; i < NB; i++)
        b[i] = calloc(n, sizeof(cplx));
    char *filled = calloc(w * h, 1);
    for (size_t y = 0; y < h; y++)
        for (size_t x = 0; x < w; x++) {
            size_t i = y * w + x, o = y * nx + x;
            double a = in->n[i], c = in->r[i];
            double va = in->vn ? in->vn[i] : in->s2n, vb = in->vr ? in->vr[i] : in->s2r;
            int ok = isfinite(a) && isfinite(c) && isfinite(va) && isfinite(vb) &&
                     !(in->mn && (in->mn[i] & in->ignore)) && !(in->mr && (in->mr[i] & in->ignore));
            filled[i] = !ok;
            if (ok) {
                b[N][o] = a - in->bkg_n;
                b[R][o] = c - in->bkg_r;
                b[VN][o] = va > 0 ? va : 0;
                b[VR][o] = vb > 0 ? vb : 0;
            }
        }
    wrap(in->pn, in->sn, nx, ny, b[PN]);
    wrap(in->pr, in->sr, nx, ny, b[PR]);
    int fwd[] = {N, R, VN, VR, PN, PR};
    for (int i = 0; i < 6; i++)
        dft2(b[fwd[i]], nx, ny, -1);
    double fn = in->fn, fr = in->fr;
    out->f_d = fn * fr / sqrt(in->s2n * fr * fr + in->s2r * fn * fn);
    double fs = 0, q1 = 0, q2 = 0;
    for (size_t i = 0; i < n; i++) {
        cplx Pn = b[PN][i], Pr = b[PR][i];
        double an = creal(Pn * conj(Pn)), ar = creal(Pr * conj(Pr));
        double den = in->s2n * fr * fr * ar + in->s2r * fn * fn * an;
        if (den <= 1e-30)
            continue;
        b[KDN][i] = fr * Pr / sqrt(den);
        b[KDR][i] = fn * Pn / sqrt(den);
        b[D][i] = b[KDN][i] * b[N][i] - b[KDR][i] * b[R][i];
        b[KN][i] = fn * fr * fr * ar * conj(Pn) / den;
        b[KR][i] = fr * fn * fn * an * conj(Pr) / den;
        b[SN][i] = b[KN][i] * b[N][i];
        b[SR][i] = b[KR][i] * b[R][i];
        fs += fn * fn * fr * fr * an * ar / den;
        q1 += an * ar / den;
        q2 += (an * ar / den) * (an * ar / den);
    }
    /* a point source's S_N is the inverse transform of q = an ar / den (times
     * constants): sum s^2 / s(0)^2 = n sum q^2 / (sum q)^2 by Parseval */
    double area = (double)n * q2 / (q1 * q1);
    out->f_s = fs / (double)n;
    int inv[] = {D, SN, SR, KN, KR, KDN, KDR};
    for (int i = 0; i < 7; i++)
        dft2(b[inv[i]], nx, ny, +1);
    variance(b[KN], b[KR], b[VN], b[VR], nx, ny, b[VS]);
    variance(b[KDN], b[KDR], b[VN], b[VR], nx, ny, b[VD]);
    wing_kernel(in->wing_n, in->nrings, in->ring_px_n, in->core_n, in->sn, area, nx, ny, b[WN]);
    wing_kernel(in->wing_r, in->nrings, in->ring_px_r, in->core_r, in->sr, area, nx, ny, b[WR]);
    if (in->wing_n || in->wing_r)
        wing_variance(b[SN], b[SR], b[WN], b[WR], nx, ny, b[VW]);
    out->diff = malloc(w * h * sizeof(double));
    out->diff_var = malloc(w * h * sizeof(double));
    out->scorr = malloc(w * h * sizeof(double));
    out->flux = malloc(w * h * sizeof(double));
    out->flux_var = malloc(w * h * sizeof(double));
    for (size_t y = 0; y < h; y++)
        for (size_t x = 0; x < w; x++) {
            size_t i = y * w + x, o = y * nx + x;
            size_t xl = x ? x - 1 : 0, xr = x + 1 < w ? x + 1 : w - 1, yl = y ? y - 1 : 0, yr = y + 1 < h ? y + 1 : h - 1;
            double hx = 1.0 / (double)(xr - xl), hy = 1.0 / (double)(yr - yl);
#define RE(B, X, Y) creal(b[B][(Y) * nx + (X)])
            double gnx = (RE(SN, xr, y) - RE(SN, xl, y)) * hx, gny = (RE(SN, x, yr) - RE(SN, x, yl)) * hy;
            double grx = (RE(SR, xr, y) - RE(SR, xl, y)) * hx, gry = (RE(SR, x, yr) - RE(SR, x, yl)) * hy;
            double vs = fmax(creal(b[VS][o]), 0) + in->sx2 * (gnx * gnx + grx * grx) + in->sy2 * (gny * gny + gry * gry) +
                        in->en2 * RE(SN, x, y) * RE(SN, x, y) + in->er2 * RE(SR, x, y) * RE(SR, x, y) +
                        fmax(creal(b[VW][o]), 0);
            if (in->vnn) {
                double u = ((double)x - in->gx0) / in->gdx, v = ((double)y - in->gy0) / in->gdy;
                double sn = RE(SN, x, y), sr = RE(SR, x, y);
                vs += fmax(sn * sn * bilinear(in->vnn, in->vgrid_n, u, v) -
                               2 * sn * sr * bilinear(in->vnr, in->vgrid_n, u, v) +
                               sr * sr * bilinear(in->vrr, in->vgrid_n, u, v),
                           0);
            }
            double s = creal(b[SN][o]) - creal(b[SR][o]) - out->f_d * in->d_off;
            out->diff[i] = filled[i] ? NAN : (creal(b[D][o]) - in->d_off) / out->f_d;
            out->diff_var[i] = filled[i] ? NAN : fmax(creal(b[VD][o]), 0) / (out->f_d * out->f_d);
            out->scorr[i] = filled[i] || !(vs > 0) ? NAN : s / sqrt(vs);
            out->flux[i] = filled[i] ? NAN : s / out->f_s;
            out->flux_var[i] = filled[i] ? NAN : vs / (out->f_s * out->f_s);
        }
    for (int i = 0; i < NB; i++)
        free(b[i]);
    free(filled);
    return 0;
}

void zogy_ref_free(zogy_ref_out *out)
{
    free(out->diff);
    free(out->diff_var);
    free(out->scorr);
    free(out->flux);
    free(out->flux_var);
    memset(out, 0, sizeof *out);
}
