/* ZOGY proper image subtraction (Zackay, Ofek & Gal-Yam 2016, ApJ 830, 27)
 * on the device, every transform through the FFT layer (host/rt/fft.h):
 * the images and PSFs padded and transformed, D, S_N, S_R, their kernels and
 * P_D formed per frequency (kernels/zogy.cl), the kernels squared in real
 * space and convolved with the variance planes for the source-noise term,
 * then S_corr, the flux map and the difference on the image's pixels.
 *
 * The padding (the sum of both PSF sizes, rounded up to an FFT size) keeps
 * the cyclic convolutions from wrapping the image onto itself: the kernels
 * of D and S reach about a PSF size each way. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fft.h"
#include "psf_internal.h"

clred_zogy_opts clred_zogy_defaults(void)
{
    clred_zogy_opts o;
    memset(&o, 0, sizeof o);
    o.fn = o.fr = 1.0;
    o.subtract_background = 1;
    o.ignore_bits = CLRED_MASK_UNUSABLE;
    o.grow = -1;
    o.backend = CLRED_FFT_DEFAULT;
    o.psf_err_n = o.psf_err_r = NAN;
    return o;
}

void clred_zogy_result_free(clred_zogy_result *r)
{
    if (!r)
        return;
    clred_dimage_free(r->diff);
    clred_dimage_free(r->scorr);
    clred_dimage_free(r->flux);
    clred_psf_free(&r->pd);
    memset(r, 0, sizeof *r);
}

/* Spectra buffers: each tile's planes (the inputs and their variances,
 * the products in place, D), then the PSFs' kernels (made once per call:
 * they do not change from tile to tile; 11 of a whole image's 20
 * transforms), each also squared in real space for the variance terms. */
enum { B_N, B_R, B_VN, B_VR, B_D, B_KN, B_KR, B_KDN, B_KDR, B_KN2, B_KR2, B_KDN2, B_KDR2, NBUF };
/* With the wing term (wing_errors): S_N^2 then the wing variance, S_R^2, and
 * the two wing-error kernels' spectra (made once per call). */
enum { B_WN = NBUF, B_WR, B_WKN, B_WKR, NBUF_WING };

typedef struct {
    clred_ctx *ctx;
    size_t fw, fh;                /* the whole image */
    size_t w, h, x0, y0;          /* the tile now worked on: w x h at (x0, y0) */
    size_t core_w, core_h, border; /* the tiles' cores and the border around them */
    size_t nx, ny, pitch, ncx, bytes;
    clred_fft_plan *plan;
    cl_mem buf[NBUF_WING];
    int wing;                     /* the wing term: the B_W* buffers are taken */
    cl_mem bits, grown_rows, sat_pre, sat_suf, psf_n, psf_r, row_fs, stamp;
    cl_mem vgrid;                 /* the PSFs' variation over the tile (tile_variation), vgrid_n^2 nodes each */
    int vgrid_n;                  /* 0: none */
    size_t psf_n_size, psf_r_size;
    double *tile_level;           /* each tile's level of D */
    double *tile_fs;              /* each tile's F_S (all the same unless the PSFs vary) */
    double gain_n, gain_r;        /* the tile's models' wing errors over their centre's (clred_psf_noise_gain) */
} zogy_state;

static void release(zogy_state *s)
{
    for (int i = 0; i < NBUF_WING; i++)
        if (s->buf[i])
            clred_pool_give(s->ctx, &s->buf[i], s->bytes);
    clred_release(&s->bits);
    clred_release(&s->grown_rows);
    clred_release(&s->sat_pre);
    clred_release(&s->sat_suf);
    clred_release(&s->psf_n);
    clred_release(&s->psf_r);
    clred_release(&s->row_fs);
    clred_release(&s->stamp);
    clred_release(&s->vgrid);
    free(s->tile_level);
    s->tile_level = NULL;
    free(s->tile_fs);
    s->tile_fs = NULL;
}

/* Robust level and noise of an image from samples gathered on the device:
 * the median, and 1.4826 MAD (the sqrt of the VAR plane's median when it has one). */
static clred_status level_and_noise(const clred_dimage *img, uint16_t ignore, const char *what, double *level,
                                    double *sigma)
{
    size_t npix = clred_dimage_pixels(img), stride = npix > 262144 ? npix / 262144 : 1, n;
    float *v;
    CLRED_TRY(clred_dimage_samples(img, 0, 0, img->width, img->height, stride, ignore, &v, &n));
    if (n < 16) {
        free(v);
        return clred_fail(CLRED_ERR_INPUT, "ZOGY: the %s image has %zu usable pixels", what, n);
    }
    double med = clred_median_inplace(v, n);
    for (size_t i = 0; i < n; i++)
        v[i] = fabsf(v[i] - (float)med);
    double mad = clred_median_inplace(v, n);
    free(v);
    *level = med;
    *sigma = 1.4826 * mad;
    if (clred_dimage_var(img)) {
        /* a view whose SCI is the VAR plane, so the same sampler reads it */
        clred_dimage view = *img;
        view.plane[CLRED_PLANE_SCI] = clred_dimage_var(img);
        CLRED_TRY(clred_dimage_samples(&view, 0, 0, img->width, img->height, stride, ignore, &v, &n));
        if (n > 0)
            *sigma = sqrt(fmax(clred_median_inplace(v, n), 0.0));
        free(v);
    }
    if (!(*sigma > 0))
        return clred_fail(CLRED_ERR_INPUT, "ZOGY: the %s image's background noise is %g (a constant image?)", what,
                          *sigma);
    return CLRED_OK;
}

static clred_status check_inputs(const clred_dimage *n, const clred_dimage *r, const clred_psf *pn,
                                 const clred_psf *pr, const clred_zogy_opts *o)
{
    if (!n || !r)
        return clred_fail(CLRED_ERR_USAGE, "ZOGY: no %s image", n ? "reference" : "new");
    if (n->width != r->width || n->height != r->height)
        return clred_fail(CLRED_ERR_INPUT, "ZOGY: the new image is %zu x %zu, the reference %zu x %zu (align them first)",
                          n->width, n->height, r->width, r->height);
    if (!pn || !pr || !pn->data || !pr->data || pn->size % 2 == 0 || pr->size % 2 == 0)
        return clred_fail(CLRED_ERR_USAGE, "ZOGY: both PSFs are needed, odd-sized");
    if (pn->size > n->width || pn->size > n->height || pr->size > n->width || pr->size > n->height)
        return clred_fail(CLRED_ERR_INPUT, "ZOGY: PSFs of %zu and %zu px are larger than the %zu x %zu image", pn->size,
                          pr->size, n->width, n->height);
    if (!(o->fn > 0 && o->fr > 0 && o->sigma_n >= 0 && o->sigma_r >= 0 && o->astrom_sigma_x >= 0 &&
          o->astrom_sigma_y >= 0))
        return clred_fail(CLRED_ERR_USAGE, "ZOGY: zero points must be > 0 and noise terms >= 0");
    if (!(isnan(o->psf_err_n) || (o->psf_err_n >= 0 && o->psf_err_n < 1)) ||
        !(isnan(o->psf_err_r) || (o->psf_err_r >= 0 && o->psf_err_r < 1)))
        return clred_fail(CLRED_ERR_USAGE, "ZOGY: PSF errors %g, %g must be in [0, 1) (fractions of a star's signal)",
                          o->psf_err_n, o->psf_err_r);
    return CLRED_OK;
}

static clred_status upload_psf(clred_ctx *ctx, const clred_psf *p, cl_mem *buf)
{
    return clred_buffer(ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, p->size * p->size * sizeof(float), p->data, buf,
                        "ZOGY PSF");
}

static clred_status wrap_psf(zogy_state *s, cl_mem psf, size_t size, cl_mem dst)
{
    cl_kernel k;
    CLRED_TRY(clred_kernel(s->ctx, "zogy", NULL, "zogy_wrap_psf", &k));
    int isize = (int)size, pitch = (int)s->pitch, nx = (int)s->nx, ny = (int)s->ny;
    CLRED_TRY(clred_args(k, "zogy_wrap_psf", CLRED_ARG(psf), CLRED_ARG(isize), CLRED_ARG(dst), CLRED_ARG(pitch),
                         CLRED_ARG(nx), CLRED_ARG(ny), (size_t)0));
    size_t g[2] = {s->pitch, s->ny};
    return clred_run_tiled(s->ctx, k, "zogy_wrap_psf", 2, g);
}

static clred_status pad_inputs(zogy_state *s, const clred_dimage *n, const clred_dimage *r, double bkg_n,
                               double bkg_r, double var_n, double var_r, uint16_t ignore)
{
    cl_kernel k;
    CLRED_TRY(clred_kernel(s->ctx, "zogy", NULL, "zogy_pad", &k));
    cl_mem nsci = clred_dimage_sci(n), rsci = clred_dimage_sci(r);
    /* absent planes: any buffer stands in, the flags say it is not read */
    cl_mem nvar = clred_dimage_var(n) ? clred_dimage_var(n) : nsci, rvar = clred_dimage_var(r) ? clred_dimage_var(r) : rsci;
    cl_mem nmask = clred_dimage_mask(n) ? clred_dimage_mask(n) : nsci, rmask = clred_dimage_mask(r) ? clred_dimage_mask(r) : rsci;
    int nflags = (clred_dimage_var(n) ? 1 : 0) | (clred_dimage_mask(n) ? 2 : 0);
    int rflags = (clred_dimage_var(r) ? 1 : 0) | (clred_dimage_mask(r) ? 2 : 0);
    float fbn = (float)bkg_n, fbr = (float)bkg_r, fvn = (float)var_n, fvr = (float)var_r;
    cl_ushort ig = ignore;
    int w = (int)s->w, h = (int)s->h, pitch = (int)s->pitch, ny = (int)s->ny;
    int src_w = (int)s->fw, x0 = (int)s->x0, y0 = (int)s->y0;
    CLRED_TRY(clred_args(k, "zogy_pad", CLRED_ARG(nsci), CLRED_ARG(nvar), CLRED_ARG(nmask), CLRED_ARG(nflags),
                         CLRED_ARG(fbn), CLRED_ARG(fvn), CLRED_ARG(rsci), CLRED_ARG(rvar), CLRED_ARG(rmask),
                         CLRED_ARG(rflags), CLRED_ARG(fbr), CLRED_ARG(fvr), CLRED_ARG(ig), CLRED_ARG(src_w),
                         CLRED_ARG(x0), CLRED_ARG(y0), CLRED_ARG(w), CLRED_ARG(h), CLRED_ARG(pitch), CLRED_ARG(ny), CLRED_ARG(s->buf[B_N]), CLRED_ARG(s->buf[B_R]),
                         CLRED_ARG(s->buf[B_VN]), CLRED_ARG(s->buf[B_VR]), CLRED_ARG(s->bits), (size_t)0));
    size_t g[2] = {s->pitch, s->ny};
    return clred_run_tiled(s->ctx, k, "zogy_pad", 2, g);
}

/* The PSFs' kernel spectra (into B_KN..B_KDR2) and P_D's (into B_D) from the
 * PSFs' spectra in B_N and B_R; returns F_S. */
static clred_status psf_spectra(zogy_state *s, const clred_zogy_opts *o, double s2n, double s2r, double f_d,
                                double *f_s)
{
    cl_kernel k;
    CLRED_TRY(clred_kernel(s->ctx, "zogy", NULL, "zogy_psf_spectra", &k));
    int nx = (int)s->nx, ny = (int)s->ny;
    float fn = (float)o->fn, fr = (float)o->fr, fs2n = (float)s2n, fs2r = (float)s2r, ffd = (float)f_d;
    CLRED_TRY(clred_args(k, "zogy_psf_spectra", CLRED_ARG(s->buf[B_N]), CLRED_ARG(s->buf[B_R]),
                         CLRED_ARG(s->buf[B_KN]), CLRED_ARG(s->buf[B_KR]), CLRED_ARG(s->buf[B_KDN]),
                         CLRED_ARG(s->buf[B_KDR]), CLRED_ARG(s->buf[B_KN2]), CLRED_ARG(s->buf[B_KR2]),
                         CLRED_ARG(s->buf[B_KDN2]), CLRED_ARG(s->buf[B_KDR2]), CLRED_ARG(s->buf[B_D]), CLRED_ARG(nx),
                         CLRED_ARG(ny), CLRED_ARG(fn), CLRED_ARG(fr), CLRED_ARG(fs2n), CLRED_ARG(fs2r),
                         CLRED_ARG(ffd), CLRED_ARG(s->row_fs), (size_t)0));
    size_t g = s->ny;
    CLRED_TRY(clred_run_tiled(s->ctx, k, "zogy_psf_spectra", 1, &g));
    size_t acc = s->ctx->use_double ? sizeof(double) : sizeof(float);
    void *rows = malloc(s->ny * acc);
    if (!rows)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu row sums", s->ny);
    clred_status st = clred_download(s->ctx, s->row_fs, 0, s->ny * acc, rows);
    double sum = 0;
    for (size_t i = 0; i < s->ny && st == CLRED_OK; i++)
        sum += acc == sizeof(double) ? ((double *)rows)[i] : (double)((float *)rows)[i];
    free(rows);
    *f_s = sum / ((double)s->nx * (double)s->ny);
    return st;
}

static clred_status square(zogy_state *s, cl_mem a)
{
    cl_kernel k;
    CLRED_TRY(clred_kernel(s->ctx, "zogy", NULL, "zogy_square", &k));
    int pitch = (int)s->pitch, nx = (int)s->nx, ny = (int)s->ny;
    CLRED_TRY(clred_args(k, "zogy_square", CLRED_ARG(a), CLRED_ARG(pitch), CLRED_ARG(nx), CLRED_ARG(ny), (size_t)0));
    size_t g[2] = {s->pitch, s->ny};
    return clred_run_tiled(s->ctx, k, "zogy_square", 2, g);
}

/* P_D (real, wrapped in buf[B_D]) as a PSF of the larger input PSF's size. */
static clred_status extract_pd(zogy_state *s, size_t size, clred_psf *pd)
{
    int half = (int)(size / 2), pitch = (int)s->pitch, nx = (int)s->nx, ny = (int)s->ny;
    size_t bytes = size * size * sizeof(float);
    CLRED_TRY(clred_buffer(s->ctx, CL_MEM_WRITE_ONLY, bytes, NULL, &s->stamp, "P_D stamp"));
    cl_kernel k;
    CLRED_TRY(clred_kernel(s->ctx, "zogy", NULL, "zogy_unwrap", &k));
    CLRED_TRY(clred_args(k, "zogy_unwrap", CLRED_ARG(s->buf[B_D]), CLRED_ARG(pitch), CLRED_ARG(nx), CLRED_ARG(ny),
                         CLRED_ARG(half), CLRED_ARG(s->stamp), (size_t)0));
    size_t g[2] = {size, size};
    CLRED_TRY(clred_run_tiled(s->ctx, k, "zogy_unwrap", 2, g));
    float *host = malloc(bytes);
    if (!host)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for P_D");
    clred_status st = clred_download(s->ctx, s->stamp, 0, bytes, host);
    if (st == CLRED_OK)
        st = clred_psf_from_array(host, size, size, 0, pd);
    free(host);
    return st;
}

/* A kernel's spectrum replaced by its square's (k^2)^: the variance a
 * convolution with k carries is V * k^2. */
static clred_status square_spectrum(zogy_state *s, cl_mem k)
{
    CLRED_TRY(clred_fft_inverse(s->ctx, s->plan, k));
    CLRED_TRY(square(s, k));
    return clred_fft_forward(s->ctx, s->plan, k);
}

/* Once per call: the PSFs wrapped and transformed (in B_N, B_R, free until
 * the first tile), the kernels of S_N, S_R and D and their squares'
 * spectra, F_S, and P_D. */
static clred_status psf_part(zogy_state *s, const clred_zogy_opts *o, double s2n, double s2r, double f_d,
                             size_t big, double *f_s_out, clred_psf *pd)
{
    CLRED_TRY(wrap_psf(s, s->psf_n, s->psf_n_size, s->buf[B_N]));
    CLRED_TRY(wrap_psf(s, s->psf_r, s->psf_r_size, s->buf[B_R]));
    CLRED_TRY(clred_fft_forward(s->ctx, s->plan, s->buf[B_N]));
    CLRED_TRY(clred_fft_forward(s->ctx, s->plan, s->buf[B_R]));
    double f_s = 0;
    CLRED_TRY(psf_spectra(s, o, s2n, s2r, f_d, &f_s));
    if (!(f_s > 0))
        return clred_fail(CLRED_ERR_INPUT, "ZOGY: F_S = %g: the PSFs' transforms vanish", f_s);
    *f_s_out = f_s;
    static const int squared[] = {B_KN2, B_KR2, B_KDN2, B_KDR2};
    for (size_t i = 0; i < sizeof squared / sizeof squared[0]; i++)
        CLRED_TRY(square_spectrum(s, s->buf[squared[i]]));
    if (!pd)
        return CLRED_OK;
    CLRED_TRY(clred_fft_inverse(s->ctx, s->plan, s->buf[B_D]));
    return extract_pd(s, big, pd);
}

/* psf at (x, y); a varying model's wings fitted there as a measured
 * constant model's are (psf.c): its own wings beyond the core are the
 * stamps' mean, too high where the stars' noise and neighbours lift them,
 * and a too-wide P leaves negative rings around every bright star in D. */
static clred_status eval_psf(const clred_psf *psf, double x, double y, clred_psf *out)
{
    CLRED_TRY(clred_psf_eval(psf, x, y, out));
    if (psf->order > 0 && psf->basis)
        clred_psf_analytic_wings(out);
    return CLRED_OK;
}

/* Both PSFs at (x, y) onto the device (varying ones evaluated there). */
static clred_status upload_psfs_at(zogy_state *s, const clred_psf *pn, const clred_psf *pr, double x, double y)
{
    clred_psf en, er;
    s->gain_n = clred_psf_noise_gain(pn, x, y);
    s->gain_r = clred_psf_noise_gain(pr, x, y);
    CLRED_TRY(eval_psf(pn, x, y, &en));
    clred_status st = eval_psf(pr, x, y, &er);
    if (st == CLRED_OK) {
        clred_release(&s->psf_n);
        clred_release(&s->psf_r);
        st = upload_psf(s->ctx, &en, &s->psf_n);
        if (st == CLRED_OK)
            st = upload_psf(s->ctx, &er, &s->psf_r);
        clred_psf_free(&er);
    }
    clred_psf_free(&en);
    return st;
}

/* A tile's spectra through the kernels: S_N^, S_R^, D^, V(S)^ and V(D)^ (see zogy_apply). */
static clred_status apply_kernels(zogy_state *s)
{
    cl_kernel k;
    CLRED_TRY(clred_kernel(s->ctx, "zogy", NULL, "zogy_apply", &k));
    cl_uint n = (cl_uint)(s->ncx * s->ny);
    CLRED_TRY(clred_args(k, "zogy_apply", CLRED_ARG(s->buf[B_N]), CLRED_ARG(s->buf[B_R]), CLRED_ARG(s->buf[B_VN]),
                         CLRED_ARG(s->buf[B_VR]), CLRED_ARG(s->buf[B_D]), CLRED_ARG(s->buf[B_KN]),
                         CLRED_ARG(s->buf[B_KR]), CLRED_ARG(s->buf[B_KDN]), CLRED_ARG(s->buf[B_KDR]),
                         CLRED_ARG(s->buf[B_KN2]), CLRED_ARG(s->buf[B_KR2]), CLRED_ARG(s->buf[B_KDN2]),
                         CLRED_ARG(s->buf[B_KDR2]), CLRED_ARG(n), (size_t)0));
    size_t g = n;
    return clred_run_tiled(s->ctx, k, "zogy_apply", 1, &g);
}

/* |P^|^2 of a PSF of size s (centre on pixel (0, 0), wrapped) on an m x m
 * grid, by separable DFTs in double (once per call, m a few dozen to a few
 * hundred). re, im: scratch of m * m; pw: m * m out. */
static void psf_power(const float *p, size_t s, size_t m, double *re, double *im, double *pw)
{
    const double tau = 6.283185307179586;
    long h = (long)(s / 2);
    double *tr = malloc(2 * m * sizeof *tr), *ti = tr ? tr + m : NULL;
    if (!tr) {
        for (size_t i = 0; i < m * m; i++)
            pw[i] = NAN;
        return;
    }
    memset(re, 0, m * m * sizeof *re);
    memset(im, 0, m * m * sizeof *im);
    for (long j = -h; j <= h; j++)
        for (long i = -h; i <= h; i++)
            re[(size_t)((j + (long)m) % (long)m) * m + (size_t)((i + (long)m) % (long)m)] +=
                p[(size_t)(j + h) * s + (size_t)(i + h)];
    for (int pass = 0; pass < 2; pass++) { /* rows, then columns */
        size_t step = pass ? m : 1, stride = pass ? 1 : m;
        for (size_t l = 0; l < m; l++) {
            double *a = re + l * stride, *b = im + l * stride;
            for (size_t k = 0; k < m; k++) {
                double sr = 0, si = 0;
                for (size_t x = 0; x < m; x++) {
                    double ph = -tau * (double)((k * x) % m) / (double)m, c = cos(ph), sn = sin(ph);
                    sr += a[x * step] * c - b[x * step] * sn;
                    si += a[x * step] * sn + b[x * step] * c;
                }
                tr[k] = sr;
                ti[k] = si;
            }
            for (size_t k = 0; k < m; k++) {
                a[k * step] = tr[k];
                b[k * step] = ti[k];
            }
        }
    }
    for (size_t i = 0; i < m * m; i++)
        pw[i] = re[i] * re[i] + im[i] * im[i];
    free(tr);
}

/* A point source's footprint in S_N, A = sum_x s(x)^2 / s(0)^2 (s its S_N,
 * the same shape as its S_R: both spectra go as |P_n|^2 |P_r|^2 / den), by
 * Parseval on an m x m grid, m twice the larger PSF's size (s reaches about
 * a PSF size each way): A = m^2 sum q^2 / (sum q)^2, q = |P_n|^2 |P_r|^2 /
 * den. Spreading S_N^2 over a kernel e^2 / A leaves a point source's peak
 * S_N^2 times e^2, smoothed over its core. NaN when out of memory. */
double clred_zogy_point_area(const float *pn, size_t sn, const float *pr, size_t sr, double s2n, double s2r,
                             double fn, double fr)
{
    size_t m = 2 * (sn > sr ? sn : sr), m2 = m * m;
    double *w = malloc(4 * m2 * sizeof *w), sq = 0, sq2 = 0;
    if (!w)
        return NAN;
    double *an = w, *ar = w + m2, *re = w + 2 * m2, *im = w + 3 * m2;
    psf_power(pn, sn, m, re, im, an);
    psf_power(pr, sr, m, re, im, ar);
    for (size_t i = 0; i < m2; i++) {
        double den = s2n * fr * fr * ar[i] + s2r * fn * fn * an[i];
        double q = den > 0 ? an[i] * ar[i] / den : 0.0;
        sq += q;
        sq2 += q * q;
    }
    free(w);
    return sq > 0 ? (double)m2 * sq2 / (sq * sq) : NAN;
}

/* Whether a PSF's wing-error profile counts: the model's own error (the
 * caller gave none) and a profile with a ring above 0. */
static int wing_profile(const clred_psf *p, double opt_err, double *emax)
{
    *emax = 0;
    if (!isnan(opt_err) || !(p->wing_ring_px > 0))
        return 0;
    for (int k = 0; k < CLRED_PSF_WING_RINGS; k++)
        *emax = isfinite(p->wing_err[k]) && p->wing_err[k] > *emax ? p->wing_err[k] : *emax;
    return *emax > 0;
}

/* A PSF's wing-error kernel, e(|d|)^2 / area at the lags d beyond its core
 * (|d| > max(1, FWHM), where model_err counts) out to its outermost ring
 * with an error, at most the PSF's half size; *size: odd, 1 (a single 0)
 * without a profile. */
static float *wing_kernel(const clred_psf *p, int use, double area, size_t *size)
{
    long h = 0;
    if (use)
        for (int k = 0; k < CLRED_PSF_WING_RINGS; k++)
            if (isfinite(p->wing_err[k]) && p->wing_err[k] > 0)
                h = (long)floor(((double)k + 0.5) * p->wing_ring_px);
    h = h < (long)(p->size / 2) ? h : (long)(p->size / 2);
    size_t n = (size_t)(2 * h + 1);
    float *kern = calloc(n * n, sizeof *kern);
    double core = fmax(1.0, p->fwhm);
    for (long j = -h; kern && j <= h; j++)
        for (long i = -h; i <= h; i++) {
            double r = hypot((double)i, (double)j);
            long k = lround(r / p->wing_ring_px);
            if (r > core && k < CLRED_PSF_WING_RINGS && isfinite(p->wing_err[k]) && p->wing_err[k] > 0)
                kern[(size_t)(j + h) * n + (size_t)(i + h)] = (float)(p->wing_err[k] * p->wing_err[k] / area);
        }
    *size = n;
    return kern;
}

/* Once per call: both wing-error kernels wrapped and transformed into
 * B_WKN and B_WKR (their PSFs' evaluated at the polynomials' centre for the
 * footprint: it changes little over a field). */
static clred_status wing_kernels(zogy_state *s, const clred_psf *pn, const clred_psf *pr, double s2n, double s2r,
                                 const clred_zogy_opts *o, clred_zogy_result *out)
{
    int use_n = wing_profile(pn, o->psf_err_n, &out->wing_err_n), use_r = wing_profile(pr, o->psf_err_r, &out->wing_err_r);
    double area = clred_zogy_point_area(pn->data, pn->size, pr->data, pr->size, s2n, s2r, o->fn, o->fr);
    if (!(area > 0))
        return clred_fail(CLRED_ERR_MEMORY, "ZOGY: out of memory for the wing term's footprint");
    const clred_psf *ps[2] = {pn, pr};
    int use[2] = {use_n, use_r}, dst[2] = {B_WKN, B_WKR};
    for (int i = 0; i < 2; i++) {
        size_t n;
        float *kern = wing_kernel(ps[i], use[i], area, &n);
        if (!kern)
            return clred_fail(CLRED_ERR_MEMORY, "out of memory for a wing-error kernel");
        cl_mem kb = NULL;
        clred_status st = clred_buffer(s->ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, n * n * sizeof *kern, kern,
                                       &kb, "ZOGY wing kernel");
        free(kern);
        if (st == CLRED_OK)
            st = wrap_psf(s, kb, n, s->buf[dst[i]]);
        if (st == CLRED_OK)
            st = clred_fft_forward(s->ctx, s->plan, s->buf[dst[i]]);
        /* the pool and the queue order the release after the wrap */
        clred_release(&kb);
        CLRED_TRY(st);
    }
    return CLRED_OK;
}

/* A tile's wing variance (into B_WN): S_N^2 and S_R^2 through their wing
 * kernels, each times its model's squared noise gain at the tile's centre
 * (clred_psf_noise_gain). The kernels hold the profiles measured from the
 * stars' residuals, which a varying fit follows: its error near its centre.
 * Away from it the variation terms' error adds, and where few bright stars
 * carry the fit (a spurious gradient from their residuals, 5-10 times their
 * photon noise) the models' wings were off by 2-4 times that profile at
 * the tile centres while S_corr counted the centre's: rings of false
 * candidates 1.5-2.5 FWHM from bright stars once a varying model is
 * evaluated in tiles (sweep_zogy_psf ZP_ORDER=2 ZP_TILE=64, seeds 1-16:
 * 50 false at a constant true PSF, 94 with a FWHM gradient). The core's
 * model_err is not scaled: its estimate is already 1-7 times the truth at
 * the centre, and scaled it cost transients on galaxies (gradient, seeds
 * 1-16: 571 / 614 found instead of 576 for 33 false instead of 44). */
static clred_status wing_variance(zogy_state *s)
{
    cl_kernel k;
    int pitch = (int)s->pitch, nx = (int)s->nx, ny = (int)s->ny;
    CLRED_TRY(clred_kernel(s->ctx, "zogy", NULL, "zogy_wing_in", &k));
    float g2n = (float)(s->gain_n * s->gain_n), g2r = (float)(s->gain_r * s->gain_r);
    CLRED_TRY(clred_args(k, "zogy_wing_in", CLRED_ARG(s->buf[B_N]), CLRED_ARG(s->buf[B_R]), CLRED_ARG(s->buf[B_WN]),
                         CLRED_ARG(s->buf[B_WR]), CLRED_ARG(pitch), CLRED_ARG(nx), CLRED_ARG(ny), CLRED_ARG(g2n),
                         CLRED_ARG(g2r), (size_t)0));
    size_t g[2] = {s->pitch, s->ny};
    CLRED_TRY(clred_run_tiled(s->ctx, k, "zogy_wing_in", 2, g));
    CLRED_TRY(clred_fft_forward(s->ctx, s->plan, s->buf[B_WN]));
    CLRED_TRY(clred_fft_forward(s->ctx, s->plan, s->buf[B_WR]));
    CLRED_TRY(clred_kernel(s->ctx, "zogy", NULL, "zogy_wing_mix", &k));
    cl_uint n = (cl_uint)(s->ncx * s->ny);
    CLRED_TRY(clred_args(k, "zogy_wing_mix", CLRED_ARG(s->buf[B_WN]), CLRED_ARG(s->buf[B_WR]),
                         CLRED_ARG(s->buf[B_WKN]), CLRED_ARG(s->buf[B_WKR]), CLRED_ARG(n), (size_t)0));
    size_t gn = n;
    CLRED_TRY(clred_run_tiled(s->ctx, k, "zogy_wing_mix", 1, &gn));
    return clred_fft_inverse(s->ctx, s->plan, s->buf[B_WN]);
}

/* The level of D over the tile's pixels: the differential background left
 * by the levels subtracted (a 0.1 sigma error in either level would shift
 * S_corr by a sizeable fraction of a sigma everywhere). */
static clred_status median_d(zogy_state *s, double *med)
{
    clred_dimage view;
    memset(&view, 0, sizeof view);
    view.ctx = s->ctx;
    view.width = s->pitch;
    view.height = s->ny;
    view.plane[CLRED_PLANE_SCI] = s->buf[B_D];
    size_t npix = s->w * s->h, stride = npix > 262144 ? npix / 262144 : 1, n;
    float *v;
    CLRED_TRY(clred_dimage_samples(&view, 0, 0, s->w, s->h, stride, 0, &v, &n));
    /* A 3-sigma clipped mean (sigma from the MAD, three rounds): D is white
     * noise of unit variance plus sparse residuals, so this drops the
     * residuals and averages the rest; a median's larger error counts, as S
     * sums D over the PSF's footprint (an offset c in D is about c sqrt(4 pi)
     * sigma_PSF in S_corr). */
    double centre = n ? clred_median_inplace(v, n) : 0.0, spread = 0;
    if (n > 16) {
        float *dev = malloc(n * sizeof *dev);
        if (!dev) {
            free(v);
            return clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu samples", n);
        }
        for (size_t i = 0; i < n; i++)
            dev[i] = fabsf(v[i] - (float)centre);
        spread = 1.4826 * clred_median_inplace(dev, n);
        free(dev);
        for (int round = 0; round < 3 && spread > 0; round++) {
            double sum = 0;
            size_t m = 0;
            for (size_t i = 0; i < n; i++)
                if (fabs(v[i] - centre) <= 3 * spread) {
                    sum += v[i];
                    m++;
                }
            if (m)
                centre = sum / (double)m;
        }
    }
    *med = centre;
    free(v);
    return CLRED_OK;
}

/* The tile's core [cx0, cx1) x [cy0, cy1) (tile coordinates) into the outputs;
 * the variation grid's (tile_variation) first node at image pixel (gx0, gy0),
 * its spacing gdx x gdy px. */
static clred_status finish(zogy_state *s, const clred_zogy_opts *o, const clred_zogy_result *out, double d_off_tile,
                           double f_s, int gx0, int gy0, float gdx, float gdy, int grow, int grow_sat, int edge,
                           int cx0, int cy0, int cx1, int cy1)
{
    cl_kernel k;
    int w = (int)s->w, h = (int)s->h, pitch = (int)s->pitch;
    cl_ushort unusable = o->ignore_bits | CLRED_MASK_NO_DATA;
    CLRED_TRY(clred_kernel(s->ctx, "zogy", NULL, "zogy_grow_rows", &k));
    CLRED_TRY(clred_args(k, "zogy_grow_rows", CLRED_ARG(s->bits), CLRED_ARG(w), CLRED_ARG(h), CLRED_ARG(grow),
                         CLRED_ARG(unusable), CLRED_ARG(s->grown_rows), (size_t)0));
    size_t gr[2] = {s->w, s->h};
    CLRED_TRY(clred_run_tiled(s->ctx, k, "zogy_grow_rows", 2, gr));
    CLRED_TRY(clred_kernel(s->ctx, "zogy", NULL, "zogy_sat_rows", &k));
    CLRED_TRY(clred_args(k, "zogy_sat_rows", CLRED_ARG(s->bits), CLRED_ARG(w), CLRED_ARG(h), CLRED_ARG(grow_sat),
                         CLRED_ARG(s->grown_rows), (size_t)0));
    CLRED_TRY(clred_run_tiled(s->ctx, k, "zogy_sat_rows", 1, &s->h));
    CLRED_TRY(clred_kernel(s->ctx, "zogy", NULL, "zogy_grow_cols", &k));
    CLRED_TRY(clred_args(k, "zogy_grow_cols", CLRED_ARG(s->grown_rows), CLRED_ARG(w), CLRED_ARG(h), CLRED_ARG(grow_sat),
                         CLRED_ARG(s->sat_pre), CLRED_ARG(s->sat_suf), (size_t)0));
    CLRED_TRY(clred_run_tiled(s->ctx, k, "zogy_grow_cols", 1, &s->w));
    CLRED_TRY(clred_kernel(s->ctx, "zogy", NULL, "zogy_finish", &k));
    float fd = (float)out->f_d, fs = (float)f_s;
    float sx2 = (float)(o->astrom_sigma_x * o->astrom_sigma_x), sy2 = (float)(o->astrom_sigma_y * o->astrom_sigma_y);
    float en2 = (float)(out->psf_err_n * out->psf_err_n), er2 = (float)(out->psf_err_r * out->psf_err_r);
    cl_mem vgrid = s->vgrid_n ? s->vgrid : s->buf[B_VN]; /* not read without the grid */
    int vgrid_n = s->vgrid_n;
    float d_off = (float)d_off_tile;
    cl_mem vw = s->buf[s->wing ? B_WN : B_VN]; /* not read without the wing term */
    int x0 = (int)s->x0, y0 = (int)s->y0, out_w = (int)s->fw, out_h = (int)s->fh;
    cl_mem dsci = clred_dimage_sci(out->diff), dvar = clred_dimage_var(out->diff), dmask = clred_dimage_mask(out->diff);
    cl_mem ssci = clred_dimage_sci(out->scorr), smask = clred_dimage_mask(out->scorr);
    cl_mem fsci = clred_dimage_sci(out->flux), fvar = clred_dimage_var(out->flux);
    /* After apply_kernels and the inverse transforms: V(S) in B_VN, V(D) in B_VR. */
    CLRED_TRY(clred_args(k, "zogy_finish", CLRED_ARG(s->buf[B_D]), CLRED_ARG(s->buf[B_N]), CLRED_ARG(s->buf[B_R]),
                         CLRED_ARG(s->buf[B_VN]), CLRED_ARG(s->buf[B_VR]), CLRED_ARG(s->bits),
                         CLRED_ARG(s->grown_rows), CLRED_ARG(s->sat_pre), CLRED_ARG(s->sat_suf), CLRED_ARG(w), CLRED_ARG(h), CLRED_ARG(pitch), CLRED_ARG(x0), CLRED_ARG(y0), CLRED_ARG(cx0), CLRED_ARG(cy0),
                         CLRED_ARG(cx1), CLRED_ARG(cy1), CLRED_ARG(out_w), CLRED_ARG(out_h), CLRED_ARG(fd), CLRED_ARG(fs), CLRED_ARG(sx2), CLRED_ARG(sy2),
                         CLRED_ARG(en2), CLRED_ARG(er2), CLRED_ARG(vgrid), CLRED_ARG(vgrid_n), CLRED_ARG(gx0), CLRED_ARG(gy0), CLRED_ARG(gdx), CLRED_ARG(gdy), CLRED_ARG(vw), CLRED_ARG(s->wing), CLRED_ARG(d_off), CLRED_ARG(grow), CLRED_ARG(grow_sat), CLRED_ARG(edge), CLRED_ARG(unusable), CLRED_ARG(dsci), CLRED_ARG(dvar),
                         CLRED_ARG(dmask), CLRED_ARG(ssci), CLRED_ARG(smask), CLRED_ARG(fsci), CLRED_ARG(fvar),
                         (size_t)0));
    size_t g[2] = {(size_t)(cx1 - cx0), (size_t)(cy1 - cy0)};
    return clred_run_tiled(s->ctx, k, "zogy_finish", 2, g);
}

/* Core (tx, ty) moved by delta from its tile's level of D to the image's. */
static clred_status relevel(zogy_state *s, const clred_zogy_result *out, double delta, double f_s_tile, size_t tx,
                            size_t ty)
{
    cl_kernel k;
    CLRED_TRY(clred_kernel(s->ctx, "zogy", NULL, "zogy_relevel", &k));
    int x0 = (int)(tx * s->core_w), y0 = (int)(ty * s->core_h);
    int x1 = x0 + (int)s->core_w < (int)s->fw ? x0 + (int)s->core_w : (int)s->fw;
    int y1 = y0 + (int)s->core_h < (int)s->fh ? y0 + (int)s->core_h : (int)s->fh;
    int out_w = (int)s->fw;
    float fd = (float)delta, f_d = (float)out->f_d, f_s = (float)f_s_tile;
    cl_mem d = clred_dimage_sci(out->diff), sc = clred_dimage_sci(out->scorr), fl = clred_dimage_sci(out->flux),
           fv = clred_dimage_var(out->flux);
    CLRED_TRY(clred_args(k, "zogy_relevel", CLRED_ARG(d), CLRED_ARG(sc), CLRED_ARG(fl), CLRED_ARG(fv), CLRED_ARG(out_w),
                         CLRED_ARG(x0), CLRED_ARG(y0), CLRED_ARG(x1), CLRED_ARG(y1), CLRED_ARG(fd), CLRED_ARG(f_d),
                         CLRED_ARG(f_s), (size_t)0));
    size_t g[2] = {(size_t)(x1 - x0), (size_t)(y1 - y0)};
    return clred_run_tiled(s->ctx, k, "zogy_relevel", 2, g);
}

static clred_status scale_plane(clred_ctx *ctx, cl_mem plane, size_t n, float scale)
{
    cl_kernel k;
    CLRED_TRY(clred_kernel(ctx, "arith", NULL, "scale_offset", &k));
    float offset = 0.0f;
    cl_uint un = (cl_uint)n;
    CLRED_TRY(clred_args(k, "scale_offset", CLRED_ARG(plane), CLRED_ARG(scale), CLRED_ARG(offset), CLRED_ARG(un),
                         (size_t)0));
    size_t g = n;
    return clred_run_tiled(ctx, k, "scale_offset", 1, &g);
}

/* The robust spread of S_corr over its unmasked pixels; with renormalize,
 * S_corr is divided by it and the flux variance multiplied by its square. */
static clred_status scorr_spread(zogy_state *s, clred_zogy_result *out, const clred_zogy_opts *o)
{
    size_t npix = s->fw * s->fh, stride = npix > 262144 ? npix / 262144 : 1, n;
    float *v;
    CLRED_TRY(clred_dimage_samples(out->scorr, 0, 0, s->fw, s->fh, stride, 0xffffu, &v, &n));
    double mad = 0;
    if (n > 16) {
        double med = clred_median_inplace(v, n);
        for (size_t i = 0; i < n; i++)
            v[i] = fabsf(v[i] - (float)med);
        mad = clred_median_inplace(v, n);
    }
    free(v);
    out->scorr_scale = 1.4826 * mad;
    if (!o->renormalize)
        return CLRED_OK;
    if (!(out->scorr_scale > 0))
        return clred_fail(CLRED_ERR_INPUT, "ZOGY: S_corr cannot be renormalised: %zu unmasked pixels, spread %g", n,
                          out->scorr_scale);
    CLRED_TRY(scale_plane(s->ctx, clred_dimage_sci(out->scorr), npix, (float)(1.0 / out->scorr_scale)));
    return scale_plane(s->ctx, clred_dimage_var(out->flux), npix, (float)(out->scorr_scale * out->scorr_scale));
}

/* A tile of varying PSFs is filtered with their models at its core's
 * centre, while each source is imaged with the PSFs at its own position:
 * the models' variation over the core (clred_psf_pair_variation) adds
 * S_N^2 vnn - 2 S_N S_R vnr + S_R^2 vrr to V(S) where the models' errors
 * are their own (not given in o) and o asks for it. Those moments on
 * VGRID_N x VGRID_N nodes spanning the core (vnn's grid, vrr's, vnr's),
 * interpolated bilinearly by zogy_finish: v is nearly linear in the
 * models' terms, so the moments are polynomials of degree 2 (order 1) or
 * 4 (order 2) in the position, and bilinear interpolation between nodes a
 * quarter of the core apart misses a quadratic by at most 1/16 of its
 * largest value (9 x 9 nodes found one transient more in 308 on the
 * simulated gradient field, at three times the cost). Sets s->vgrid_n to
 * 0 when nothing is added. */
enum { VGRID_N = 5, VGRID_NODES = VGRID_N * VGRID_N };
static clred_status tile_variation(zogy_state *s, const clred_psf *pn, const clred_psf *pr, const clred_zogy_opts *o,
                                   size_t c0x, size_t c1x, size_t c0y, size_t c1y, float *gdx, float *gdy)
{
    double cx = 0.5 * (double)(c0x + c1x - 1), cy = 0.5 * (double)(c0y + c1y - 1);
    *gdx = (float)fmax((double)(c1x - 1 - c0x) / (VGRID_N - 1), 1.0);
    *gdy = (float)fmax((double)(c1y - 1 - c0y) / (VGRID_N - 1), 1.0);
    s->vgrid_n = 0;
    if (!o->psf_variation || !isnan(o->psf_err_n) || !isnan(o->psf_err_r))
        return CLRED_OK;
    double xy[2 * VGRID_NODES], m[3 * VGRID_NODES];
    float g[3 * VGRID_NODES];
    for (int k = 0; k < VGRID_NODES; k++) {
        xy[2 * k] = (double)c0x + (double)(k % VGRID_N) * *gdx;
        xy[2 * k + 1] = (double)c0y + (double)(k / VGRID_N) * *gdy;
    }
    if (!clred_psf_pair_variation(pn, pr, cx, cy, xy, VGRID_NODES, m, m + VGRID_NODES, m + 2 * VGRID_NODES))
        return clred_fail(CLRED_ERR_MEMORY, "ZOGY: the PSFs' variation over a tile could not be evaluated");
    int any = 0;
    for (int k = 0; k < 3 * VGRID_NODES; k++) {
        g[k] = (float)m[k];
        any |= m[k] != 0;
    }
    if (!any)
        return CLRED_OK;
    s->vgrid_n = VGRID_N;
    if (!s->vgrid)
        CLRED_TRY(clred_buffer(s->ctx, CL_MEM_READ_ONLY, sizeof g, NULL, &s->vgrid, "ZOGY PSF variation grid"));
    return clred_upload(s->ctx, s->vgrid, 0, sizeof g, g);
}

static clred_status run(zogy_state *s, const clred_dimage *nimg, const clred_dimage *rimg, const clred_psf *pn,
                        const clred_psf *pr, const clred_zogy_opts *o, clred_zogy_result *out)
{
    clred_ctx *ctx = s->ctx;
    double lev_n, lev_r, sig_n, sig_r;
    CLRED_TRY(level_and_noise(nimg, o->ignore_bits, "new", &lev_n, &sig_n));
    CLRED_TRY(level_and_noise(rimg, o->ignore_bits, "reference", &lev_r, &sig_r));
    if (o->sigma_n > 0)
        sig_n = o->sigma_n;
    if (o->sigma_r > 0)
        sig_r = o->sigma_r;
    out->bkg_n = o->subtract_background ? lev_n : 0.0;
    out->bkg_r = o->subtract_background ? lev_r : 0.0;
    out->sigma_n = sig_n;
    out->sigma_r = sig_r;
    double s2n = sig_n * sig_n, s2r = sig_r * sig_r;
    /* a model's own estimate unless the caller gives one (0 for given PSFs) */
    out->psf_err_n = isnan(o->psf_err_n) ? fmax(pn->model_err, 0.0) : o->psf_err_n;
    out->psf_err_r = isnan(o->psf_err_r) ? fmax(pr->model_err, 0.0) : o->psf_err_r;
    out->f_d = o->fn * o->fr / sqrt(s2n * o->fr * o->fr + s2r * o->fn * o->fn);

    for (int i = 0; i < (s->wing ? NBUF_WING : NBUF); i++)
        CLRED_TRY(clred_pool_take(ctx, s->bytes, "ZOGY spectrum", &s->buf[i]));
    CLRED_TRY(clred_buffer(ctx, CL_MEM_READ_WRITE, s->w * s->h * sizeof(cl_ushort), NULL, &s->bits, "ZOGY mask"));
    CLRED_TRY(clred_buffer(ctx, CL_MEM_READ_WRITE, s->w * s->h * sizeof(cl_uint), NULL, &s->grown_rows,
                           "ZOGY mask rows"));
    size_t acc = ctx->use_double ? sizeof(double) : sizeof(float);
    CLRED_TRY(clred_buffer(ctx, CL_MEM_READ_WRITE, s->ny * acc, NULL, &s->row_fs, "ZOGY F_S rows"));
    if (s->wing)
        CLRED_TRY(wing_kernels(s, pn, pr, s2n, s2r, o, out));
    int varying = (pn->order > 0 && pn->basis) || (pr->order > 0 && pr->basis);
    if (!varying) {
        CLRED_TRY(upload_psf(ctx, pn, &s->psf_n));
        CLRED_TRY(upload_psf(ctx, pr, &s->psf_r));
    }
    s->psf_n_size = pn->size;
    s->psf_r_size = pr->size;
    CLRED_TRY(clred_dimage_like(nimg, 1, 1, 1, &out->diff));
    CLRED_TRY(clred_dimage_like(nimg, 0, 1, 1, &out->scorr));
    CLRED_TRY(clred_dimage_like(nimg, 1, 0, 1, &out->flux));
    size_t big = pn->size > pr->size ? pn->size : pr->size;
    /* A filled pixel changes D and S within a kernel's reach, but by little
     * unless the two images differed there (a star under a hole): a FWHM
     * covers its core, the rest is small against the noise. */
    double fwhm = fmax(pn->fwhm, pr->fwhm);
    int grow = o->grow >= 0 ? o->grow : (int)ceil(fwhm > 0 ? fwhm : 2.0);
    int grow_sat = o->grow >= 0 ? o->grow : (int)(big / 2);
    grow_sat = grow_sat > grow ? grow_sat : grow;
    size_t sat_bytes = (s->h + 2 * (size_t)grow_sat) * s->w * sizeof(cl_ushort);
    CLRED_TRY(clred_buffer(ctx, CL_MEM_READ_WRITE, sat_bytes, NULL, &s->sat_pre, "ZOGY mask columns"));
    CLRED_TRY(clred_buffer(ctx, CL_MEM_READ_WRITE, sat_bytes, NULL, &s->sat_suf, "ZOGY mask columns"));

    /* Tiles of s->w x s->h, all the same size (one plan, one set of
     * buffers): a core grid of `core` px, each tile its core plus the border
     * each side, moved inwards at the image's edges. */
    size_t ntx = (s->fw + s->core_w - 1) / s->core_w, nty = (s->fh + s->core_h - 1) / s->core_h;
    if (!(s->tile_level = malloc(ntx * nty * sizeof *s->tile_level)) ||
        !(s->tile_fs = malloc(ntx * nty * sizeof *s->tile_fs)))
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu tiles", ntx * nty);
    if (!varying)
        CLRED_TRY(psf_part(s, o, s2n, s2r, out->f_d, big, &out->f_s, &out->pd));
    /* varying PSFs: each tile's kernels from the PSFs at its core's centre;
     * the result's P_D and F_S are those of the tile holding the image's centre */
    size_t mid_tx = (s->fw / 2) / s->core_w, mid_ty = (s->fh / 2) / s->core_h;
    double d_sum = 0;
    for (size_t ty = 0; ty < nty; ty++)
        for (size_t tx = 0; tx < ntx; tx++) {
            size_t c0x = tx * s->core_w, c1x = c0x + s->core_w < s->fw ? c0x + s->core_w : s->fw;
            size_t c0y = ty * s->core_h, c1y = c0y + s->core_h < s->fh ? c0y + s->core_h : s->fh;
            float gdx = 1, gdy = 1;
            if (varying) {
                int mid = tx == mid_tx && ty == mid_ty;
                CLRED_TRY(tile_variation(s, pn, pr, o, c0x, c1x, c0y, c1y, &gdx, &gdy));
                CLRED_TRY(upload_psfs_at(s, pn, pr, 0.5 * (double)(c0x + c1x - 1), 0.5 * (double)(c0y + c1y - 1)));
                CLRED_TRY(psf_part(s, o, s2n, s2r, out->f_d, big, &s->tile_fs[ty * ntx + tx], mid ? &out->pd : NULL));
                if (mid)
                    out->f_s = s->tile_fs[ty * ntx + tx];
            } else
                s->tile_fs[ty * ntx + tx] = out->f_s;
            s->x0 = c0x > s->border ? c0x - s->border : 0;
            s->y0 = c0y > s->border ? c0y - s->border : 0;
            s->x0 = s->x0 + s->w > s->fw ? s->fw - s->w : s->x0;
            s->y0 = s->y0 + s->h > s->fh ? s->fh - s->h : s->y0;
            double d_off = 0;
            CLRED_TRY(pad_inputs(s, nimg, rimg, out->bkg_n, out->bkg_r, s2n, s2r, o->ignore_bits));
            static const int forward[] = {B_N, B_R, B_VN, B_VR};
            for (size_t i = 0; i < sizeof forward / sizeof forward[0]; i++)
                CLRED_TRY(clred_fft_forward(ctx, s->plan, s->buf[forward[i]]));
            CLRED_TRY(apply_kernels(s));
            static const int inverse[] = {B_N, B_R, B_D, B_VN, B_VR};
            for (size_t i = 0; i < sizeof inverse / sizeof inverse[0]; i++)
                CLRED_TRY(clred_fft_inverse(ctx, s->plan, s->buf[inverse[i]]));
            if (s->wing)
                CLRED_TRY(wing_variance(s));
            CLRED_TRY(median_d(s, &d_off));
            d_sum += d_off;
            s->tile_level[ty * ntx + tx] = d_off;
            CLRED_TRY(finish(s, o, out, d_off, s->tile_fs[ty * ntx + tx], (int)c0x, (int)c0y, gdx, gdy, grow,
                             grow_sat, (int)(big / 2), (int)(c0x - s->x0), (int)(c0y - s->y0), (int)(c1x - s->x0),
                             (int)(c1y - s->y0)));
        }
    out->d_off = d_sum / (double)(ntx * nty);
    out->ntiles = ntx * nty;
    /* One level for the whole image: a tile's own would differ from its
     * neighbours' by its error and leave steps at the seams. */
    for (size_t t = 0; t < out->ntiles && out->ntiles > 1; t++)
        CLRED_TRY(relevel(s, out, out->d_off - s->tile_level[t], s->tile_fs[t], t % ntx, t / ntx));

    CLRED_TRY(scorr_spread(s, out, o));

    clred_header *hd = clred_dimage_header(out->diff);
    CLRED_TRY(clred_header_set_string(hd, "DIFFMETH", "ZOGY", "difference imaging method"));
    CLRED_TRY(clred_header_set_double(hd, "ZOGYFD", out->f_d, "F_D; this image is D / F_D"));
    CLRED_TRY(clred_header_set_double(hd, "ZOGYFS", out->f_s, "F_S"));
    CLRED_TRY(clred_header_set_double(hd, "ZOGYSIGN", sig_n, "background noise of the new image"));
    CLRED_TRY(clred_header_set_double(hd, "ZOGYSIGR", sig_r, "background noise of the reference"));
    CLRED_TRY(clred_header_set_double(hd, "ZOGYBKGN", out->bkg_n, "level subtracted from the new image"));
    CLRED_TRY(clred_header_set_double(hd, "ZOGYBKGR", out->bkg_r, "level subtracted from the reference"));
    CLRED_TRY(clred_header_set_double(hd, "ZOGYDOFF", out->d_off, "level of D taken off (mean over tiles)"));
    CLRED_TRY(clred_header_set_double(hd, "ZOGYNTIL", (double)out->ntiles, "tiles"));
    CLRED_TRY(clred_header_set_double(hd, "ZOGYSCSD", out->scorr_scale, "robust std of S_corr (before renormalising)"));
    CLRED_TRY(clred_header_set_double(hd, "ZOGYRENO", o->renormalize ? 1.0 : 0.0, "S_corr renormalised to unit std"));
    CLRED_TRY(clred_header_set_double(hd, "PDFWHM", out->pd.fwhm, "FWHM of the difference's PSF, px"));
    CLRED_TRY(clred_header_set_double(hd, "PSFERRN", out->psf_err_n, "new PSF model's relative error in V(S)"));
    CLRED_TRY(clred_header_set_double(hd, "PSFERRR", out->psf_err_r, "reference PSF model's rel. error in V(S)"));
    CLRED_TRY(clred_header_set_double(hd, "PSFWINGN", out->wing_err_n, "new PSF model's largest wing error in V(S)"));
    CLRED_TRY(clred_header_set_double(hd, "PSFWINGR", out->wing_err_r, "ref. PSF model's largest wing error in V(S)"));
    CLRED_TRY(clred_header_set_double(hd, "PSFVARY", s->vgrid ? 1.0 : 0.0, "PSF models' variation over tiles in V(S)"));
    CLRED_TRY(clred_header_set_string(clred_dimage_header(out->scorr), "DIFFMETH", "ZOGY S_corr", "score, sigma"));
    CLRED_TRY(clred_header_set_string(clred_dimage_header(out->flux), "DIFFMETH", "ZOGY S/F_S", "PSF flux map"));
    return CLRED_OK;
}

/* Transforms of one whole-image pass (PSF_FFTS + TILE_FFTS of its size)
 * against 1k tiles (PSF_FFTS once, TILE_FFTS per tile, of the tile's size),
 * each costing n log2 n: at 2048^2 the tiles need about a third less, at
 * 1024^2 the whole image (one tile's worth) is cheaper. The wing term adds
 * its two kernels' spectra once (wing_kernels) and three transforms a tile
 * (wing_variance). */
enum { PSF_FFTS = 11, TILE_FFTS = 9, WING_PSF_FFTS = 2, WING_TILE_FFTS = 3 };

static double fft_cost(size_t nx, size_t ny)
{
    double n = (double)nx * (double)ny;
    return n * log2(n);
}

static int whole_is_cheaper(size_t fw, size_t fh, size_t pad, size_t border, int wing)
{
    double once = PSF_FFTS + (wing ? WING_PSF_FFTS : 0), per_tile = TILE_FFTS + (wing ? WING_TILE_FFTS : 0);
    const size_t core = 1024;
    if (fw <= core && fh <= core)
        return 1;
    size_t tw = core + 2 * border < fw ? core + 2 * border : fw, th = core + 2 * border < fh ? core + 2 * border : fh;
    double ntiles = (double)((fw + core - 1) / core) * (double)((fh + core - 1) / core);
    double tile = fft_cost(clred_fft_good_size(tw + pad), clred_fft_good_size(th + pad));
    double whole = fft_cost(clred_fft_good_size(fw + pad), clred_fft_good_size(fh + pad));
    return (once + per_tile) * whole <= (once + per_tile * ntiles) * tile;
}

clred_status clred_subtract_zogy_dev(clred_ctx *ctx, const clred_dimage *new_img, const clred_dimage *ref,
                                     const clred_psf *psf_new, const clred_psf *psf_ref, const clred_zogy_opts *opts,
                                     clred_zogy_result *out)
{
    memset(out, 0, sizeof *out);
    clred_zogy_opts d = clred_zogy_defaults();
    const clred_zogy_opts *o = opts ? opts : &d;
    CLRED_TRY(check_inputs(new_img, ref, psf_new, psf_ref, o));
    zogy_state s;
    memset(&s, 0, sizeof s);
    s.gain_n = s.gain_r = 1.0;
    s.ctx = ctx;
    s.fw = new_img->width;
    s.fh = new_img->height;
    size_t big = psf_new->size > psf_ref->size ? psf_new->size : psf_ref->size;
    s.border = o->tile_border > 0 ? o->tile_border : (big > 40 ? big : 40);
    double emax;
    s.wing = wing_profile(psf_new, o->psf_err_n, &emax) || wing_profile(psf_ref, o->psf_err_r, &emax);
    size_t nbuf = s.wing ? NBUF_WING : NBUF;
    size_t pad = psf_new->size + psf_ref->size;
    /* Whole-image planes: the inputs, the outputs (six planes) and the mask. */
    uint64_t fixed = 10 * (uint64_t)s.fw * s.fh * sizeof(float);
    size_t core = o->tile_size;
    if (core == 0 && ((psf_new->order > 0 && psf_new->basis) || (psf_ref->order > 0 && psf_ref->basis)))
        core = CLRED_ZOGY_VARYING_TILE;
    if (core == 0) {
        /* 1k tiles, or the whole image when its padded planes fit the budget and its transforms cost less */
        size_t wx = clred_fft_good_size(s.fw + pad), wy = clred_fft_good_size(s.fh + pad);
        uint64_t whole = (uint64_t)nbuf * clred_fft_bytes(wx, wy, 1);
        int fits = whole + fixed <= clred_ctx_budget(ctx);
        core = fits && whole_is_cheaper(s.fw, s.fh, pad, s.border, s.wing) ? (s.fw > s.fh ? s.fw : s.fh) : 1024;
    }
    s.core_w = core < s.fw ? core : s.fw;
    s.core_h = core < s.fh ? core : s.fh;
    s.w = s.core_w + 2 * s.border < s.fw ? s.core_w + 2 * s.border : s.fw;
    s.h = s.core_h + 2 * s.border < s.fh ? s.core_h + 2 * s.border : s.fh;
    s.nx = clred_fft_good_size(s.w + pad);
    s.ny = clred_fft_good_size(s.h + pad);
    s.pitch = clred_fft_pitch(s.nx);
    s.ncx = s.nx / 2 + 1;
    s.bytes = clred_fft_bytes(s.nx, s.ny, 1);
    /* + the mask, its grown rows and the column pass's two tables (zogy_grow_cols) */
    uint64_t need = (uint64_t)nbuf * s.bytes + 6 * (uint64_t)s.w * s.h + 4 * (uint64_t)s.w * (s.h + 2 * big);
    if (need > clred_ctx_budget(ctx))
        return clred_fail(CLRED_ERR_USAGE,
                          "ZOGY: %zu x %zu tiles need %.0f MB of device memory, over the budget of %.0f MB (use smaller "
                          "tiles)",
                          s.w, s.h, need / 1e6, clred_ctx_budget(ctx) / 1e6);
    clred_status st = clred_fft_plan_cached(ctx, o->backend, s.nx, s.ny, 1, &s.plan);
    if (st == CLRED_OK)
        st = run(&s, new_img, ref, psf_new, psf_ref, o, out);
    /* the pool orders the buffers' reuse after their last use on the queue */
    release(&s);
    if (st != CLRED_OK)
        clred_zogy_result_free(out);
    return st;
}

clred_status clred_subtract_zogy(clred_ctx *ctx, const clred_image *new_img, const clred_image *ref,
                                 const clred_psf *psf_new, const clred_psf *psf_ref, const clred_zogy_opts *opts,
                                 clred_zogy_result *out)
{
    memset(out, 0, sizeof *out);
    if (!new_img || !ref || !new_img->sci || !ref->sci)
        return clred_fail(CLRED_ERR_USAGE, "ZOGY: no %s image", new_img && new_img->sci ? "reference" : "new");
    clred_dimage *dn = NULL, *dr = NULL;
    clred_status st = clred_dimage_borrow(ctx, new_img, &dn);
    if (st == CLRED_OK)
        st = clred_dimage_borrow(ctx, ref, &dr);
    if (st == CLRED_OK)
        st = clred_subtract_zogy_dev(ctx, dn, dr, psf_new, psf_ref, opts, out);
    /* the caller may change its arrays once this returns */
    clred_status sync = clred_sync(ctx);
    if (st == CLRED_OK && sync != CLRED_OK) {
        clred_zogy_result_free(out);
        st = sync;
    }
    clred_dimage_free(dn);
    clred_dimage_free(dr);
    return st;
}
