/* Alard-Lupton: the difference's PSF where the unconvolved image's PSF
 * varies over the field (a clred_psf model of order >= 1). D' = D * phi with
 * one decorrelation kernel phi (the matching kernel's at the image centre,
 * alard_lupton.c's fourier), so the PSF of D' at (x, y) is P(x, y) * phi =
 * sum_k T_k(x, y) (B_k * phi): the model's basis images B_k each go through
 * phi, exactly, and the candidates' PSF fits (clred_psf_photometry_dev)
 * evaluate it at each candidate. Small images, so on the host in double. */
#include <complex.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "al.h"
#include "psf_internal.h"

/* One 1-D DFT pass in place over the n x n array a, along rows (along = 0)
 * or columns (1): a[k] = sum_j a[j] w[(j k) mod n] (w: e^{-+2 pi i m / n}). */
static void dft_pass(double complex *a, int n, int along, const double complex *w, double complex *line)
{
    for (int l = 0; l < n; l++) {
        size_t base = along ? (size_t)l : (size_t)l * n, step = along ? (size_t)n : 1;
        for (int k = 0; k < n; k++) {
            double complex s = 0;
            for (int j = 0; j < n; j++)
                s += a[base + (size_t)j * step] * w[(size_t)j * k % (size_t)n];
            line[k] = s;
        }
        for (int k = 0; k < n; k++)
            a[base + (size_t)k * step] = line[k];
    }
}

static void dft2(double complex *a, int n, const double complex *w, double complex *line)
{
    dft_pass(a, n, 0, w, line);
    dft_pass(a, n, 1, w, line);
}

/* A centred size x size image into the n x n grid with its centre at the origin (wrapped). */
static void wrap_in(const float *img, int size, int n, double complex *a)
{
    int h = size / 2;
    memset(a, 0, (size_t)n * n * sizeof *a);
    for (int j = -h; j <= h; j++)
        for (int i = -h; i <= h; i++)
            a[(size_t)((j + n) % n) * n + (size_t)((i + n) % n)] = img[(size_t)(j + h) * size + (size_t)(i + h)];
}

/* phi^ on the n x n grid (kf, in place): the kernel's spectrum through
 * sqrt((s2i + ksum^2 s2t) / (s2i + |K^|^2 s2t)), as al_fourier. */
static void phi_spectrum(const float *kimg, int ks, int n, double s2i, double s2t, double ksum,
                         const double complex *w, double complex *line, double complex *kf)
{
    wrap_in(kimg, ks, n, kf);
    dft2(kf, n, w, line);
    for (size_t q = 0; q < (size_t)n * n; q++) {
        double den = s2i + creal(kf[q] * conj(kf[q])) * s2t;
        kf[q] = den > 0 ? sqrt((s2i + ksum * ksum * s2t) / den) : 1.0;
    }
}

/* img (size x size, centred) through phi (its spectrum kf on the n x n
 * grid; b: scratch of n^2), cut to size x size into out. */
static void through_phi(const float *img, int size, int n, const double complex *kf, const double complex *w,
                        const double complex *wi, double complex *line, double complex *b, double *out)
{
    int h = size / 2;
    wrap_in(img, size, n, b);
    dft2(b, n, w, line);
    for (size_t q = 0; q < (size_t)n * n; q++)
        b[q] *= kf[q];
    dft2(b, n, wi, line);
    for (int j = -h; j <= h; j++)
        for (int i = -h; i <= h; i++)
            out[(size_t)(j + h) * size + (size_t)(i + h)] =
                creal(b[(size_t)((j + n) % n) * n + (size_t)((i + n) % n)]) / ((double)n * n);
}

/* The n-th roots of unity and their conjugates. */
static void roots(int n, double complex *w, double complex *wi)
{
    for (int m = 0; m < n; m++) {
        w[m] = cexp(-2.0 * M_PI * I * m / n);
        wi[m] = conj(w[m]);
    }
}

clred_status al_through_phi(const float *img, int size, const float *kimg, int ks, double s2i, double s2t,
                            double ksum, double *out)
{
    /* as below: the grid holds the image and phi's reach on each side */
    int n = size + ks;
    size_t n2 = (size_t)n * n;
    double complex *w = calloc((size_t)n, sizeof *w), *wi = calloc((size_t)n, sizeof *wi),
                   *line = malloc((size_t)n * sizeof *line), *kf = malloc(n2 * sizeof *kf),
                   *b = malloc(n2 * sizeof *b);
    clred_status st = w && wi && line && kf && b ? CLRED_OK
                                                : clred_fail(CLRED_ERR_MEMORY, "out of memory for phi");
    if (st == CLRED_OK) {
        roots(n, w, wi);
        phi_spectrum(kimg, ks, n, s2i, s2t, ksum, w, line, kf);
        through_phi(img, size, n, kf, w, wi, line, b, out);
    }
    free(w);
    free(wi);
    free(line);
    free(kf);
    free(b);
    return st;
}

clred_status al_decorrelated_psf_model(const clred_psf *p, const float *p0, const float *kimg, int ks, double s2i,
                                       double s2t, double ksum, clred_psf *out)
{
    memset(out, 0, sizeof *out);
    int size = (int)p->size;
    /* phi's reach is the kernel's; the grid holds a basis image and that
     * reach on each side, so the circular products wrap nothing of either */
    int n = size + ks;
    size_t n2 = (size_t)n * n, s2 = (size_t)size * size;
    double complex *w = calloc((size_t)n, sizeof *w), *wi = calloc((size_t)n, sizeof *wi),
                   *line = malloc((size_t)n * sizeof *line), *kf = malloc(n2 * sizeof *kf),
                   *b = malloc(n2 * sizeof *b);
    double *bk = malloc(s2 * sizeof *bk);
    clred_status st = w && wi && line && kf && b && bk
                          ? clred_psf_copy(p, out)
                          : clred_fail(CLRED_ERR_MEMORY, "out of memory for the difference's PSF");
    if (st == CLRED_OK) {
        roots(n, w, wi);
        phi_spectrum(kimg, ks, n, s2i, s2t, ksum, w, line, kf);
        /* basis 0 is the centre's P' as the device made it (p0) at unit sum,
         * not recentred (the other terms are not: phi is even, so P' is
         * centred where the model is); the others B_k * phi */
        double sum = 0;
        for (size_t q = 0; q < s2; q++)
            sum += p0[q];
        for (size_t q = 0; q < s2; q++)
            out->data[q] = out->basis[q] = (float)(p0[q] / (sum > 0 ? sum : 1.0));
        for (size_t k = 1; k < out->nterms && st == CLRED_OK; k++) {
            through_phi(p->basis + k * s2, size, n, kf, w, wi, line, b, bk);
            for (size_t q = 0; q < s2; q++)
                out->basis[k * s2 + q] = (float)bk[q];
        }
        clred_psf_shape(out);
        st = clred_psf_corners(out);
    }
    if (st != CLRED_OK)
        clred_psf_free(out);
    free(w);
    free(wi);
    free(line);
    free(kf);
    free(b);
    free(bk);
    return st;
}
