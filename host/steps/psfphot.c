/* PSF-fit photometry on the device (kernels/psfphot.cl): the host finds each
 * source's close neighbours, the device fits every source with them. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "psf_internal.h"

/* must equal MAXG in kernels/psfphot.cl */
#define PSF_MAX_GROUP CLRED_PSF_MAX_GROUP
/* must equal Q_* in kernels/psfphot.cl */
enum { Q_DX, Q_DY, Q_XERR, Q_YERR, Q_FLUX, Q_FERR, Q_SKY, Q_CHI2, Q_NPIX, Q_FLAGS, Q_NOUT };

clred_psf_phot_opts clred_psf_phot_defaults(void)
{
    clred_psf_phot_opts o;
    memset(&o, 0, sizeof o);
    o.fit_sky = 1;
    o.fit_position = 1;
    o.max_iters = 20;
    o.max_shift = 1.5;
    o.min_snr_position = 3.0;
    o.zeropoint = 25.0;
    o.ignore_bits = CLRED_MASK_UNUSABLE;
    return o;
}

static clred_status check_opts(const clred_psf *psf, const clred_psf_phot_opts *o, size_t n)
{
    if (!psf || !psf->data || psf->size < 3 || psf->size % 2 == 0 || psf->size > 4095)
        return clred_fail(CLRED_ERR_USAGE, "psf_photometry: a PSF of odd size 3..4095 is needed");
    if (psf->order > 0 && psf->basis &&
        (psf->nterms != clred_psf_nterms(psf->order) || psf->nterms > CLRED_PSF_MAX_TERMS || !(psf->xscale > 0) ||
         !(psf->yscale > 0)))
        return clred_fail(CLRED_ERR_USAGE, "psf_photometry: a varying PSF of order %d with %zu terms, scales %g, %g",
                          psf->order, psf->nterms, psf->xscale, psf->yscale);
    if (!(o->fit_radius >= 0) || o->fit_radius > 1000)
        return clred_fail(CLRED_ERR_USAGE, "psf_photometry: fit radius %g must be in [0, 1000]", o->fit_radius);
    if (!(o->group_radius >= 0 || o->group_radius == -1) || o->group_radius > 1000)
        return clred_fail(CLRED_ERR_USAGE, "psf_photometry: group radius %g must be -1 or in [0, 1000]",
                          o->group_radius);
    if (o->max_iters < 0 || o->max_iters > 1000 || !(o->max_shift > 0) || !(o->min_snr_position >= 0))
        return clred_fail(CLRED_ERR_USAGE, "psf_photometry: iterations %d must be 0..1000, max shift %g > 0, "
                          "minimum S/N %g >= 0", o->max_iters, o->max_shift, o->min_snr_position);
    if (!(o->noise_rms >= 0) || !isfinite(o->noise_rms))
        return clred_fail(CLRED_ERR_USAGE, "psf_photometry: noise_rms %g must be finite and >= 0", o->noise_rms);
    if (n >= 0xffffffffu)
        return clred_fail(CLRED_ERR_USAGE, "psf_photometry: %zu positions are too many for one call", n);
    return CLRED_OK;
}

static double fit_radius_of(const clred_psf *psf, const clred_psf_phot_opts *o)
{
    if (o->fit_radius > 0)
        return o->fit_radius;
    double fwhm = isfinite(psf->fwhm) && psf->fwhm > 0 ? psf->fwhm : 2.0;
    return fmin(fmax(2.0 * fwhm, 3.0), (double)(psf->size / 2));
}

/* ------------------------------------------------------------ neighbours */

static _Thread_local const double *sort_x;

static int cmp_x(const void *a, const void *b)
{
    double u = sort_x[*(const size_t *)a], v = sort_x[*(const size_t *)b];
    return (u > v) - (u < v);
}

/* For each source, its nearest PSF_MAX_GROUP - 1 neighbours within radius r:
 * start[i]..start[i + 1] index list. Sources sorted by x, a window of 2r. */
static clred_status neighbours(const double *x, const double *y, size_t n, double r, cl_uint **start_out,
                               cl_uint **list_out, size_t *nlist)
{
    cl_uint *start = calloc(n + 1, sizeof *start);
    size_t cap = n ? n : 1, used = 0;
    cl_uint *list = malloc(cap * sizeof *list);
    size_t *order = malloc((n ? n : 1) * sizeof *order);
    if (!start || !list || !order) {
        free(start), free(list), free(order);
        return clred_fail(CLRED_ERR_MEMORY, "psf_photometry: out of memory for %zu sources' neighbours", n);
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(x[i]) && isfinite(y[i]))
            order[m++] = i;
    sort_x = x;
    qsort(order, m, sizeof *order, cmp_x);
    /* rank of each source in order, to start its window */
    size_t *rank = malloc((n ? n : 1) * sizeof *rank);
    if (!rank) {
        free(start), free(list), free(order);
        return clred_fail(CLRED_ERR_MEMORY, "psf_photometry: out of memory for %zu sources' neighbours", n);
    }
    for (size_t i = 0; i < n; i++)
        rank[i] = (size_t)-1;
    for (size_t k = 0; k < m; k++)
        rank[order[k]] = k;
    clred_status st = CLRED_OK;
    for (size_t i = 0; i < n && st == CLRED_OK; i++) {
        start[i] = (cl_uint)used;
        if (rank[i] == (size_t)-1 || !(r > 0))
            continue;
        size_t best[PSF_MAX_GROUP - 1];
        double bd[PSF_MAX_GROUP - 1];
        int nb = 0;
        for (int dir = -1; dir <= 1; dir += 2)
            for (size_t k = rank[i] + (size_t)(long)dir; k < m; k += (size_t)(long)dir) {
                size_t j = order[k];
                if (fabs(x[j] - x[i]) > r)
                    break;
                double d = hypot(x[j] - x[i], y[j] - y[i]);
                if (d > r)
                    continue;
                /* insert into the nearest list, sorted by distance */
                int at = nb;
                while (at > 0 && bd[at - 1] > d)
                    at--;
                if (at >= PSF_MAX_GROUP - 1)
                    continue;
                int end = nb < PSF_MAX_GROUP - 1 ? nb : PSF_MAX_GROUP - 2;
                for (int q = end; q > at; q--)
                    best[q] = best[q - 1], bd[q] = bd[q - 1];
                best[at] = j;
                bd[at] = d;
                if (nb < PSF_MAX_GROUP - 1)
                    nb++;
            }
        if (used + (size_t)nb > cap) {
            cap = 2 * cap + (size_t)nb;
            cl_uint *l = realloc(list, cap * sizeof *l);
            if (!l) {
                st = clred_fail(CLRED_ERR_MEMORY, "psf_photometry: out of memory for neighbour lists");
                break;
            }
            list = l;
        }
        for (int q = 0; q < nb; q++)
            list[used++] = (cl_uint)best[q];
    }
    start[n] = (cl_uint)used;
    free(order);
    free(rank);
    if (st != CLRED_OK) {
        free(start), free(list);
        return st;
    }
    *start_out = start;
    *list_out = list;
    *nlist = used;
    return CLRED_OK;
}

/* ------------------------------------------------------------ the fit */

/* As split_position in photometry.c: integer part and fraction, so float
 * offsets keep the position's precision anywhere on a large frame. */
static void split(double x, double y, cl_int2 *ip, cl_float2 *fp)
{
    if (!(fabs(x) < 1073741824.0) || !(fabs(y) < 1073741824.0)) {
        ip->s[0] = ip->s[1] = 0;
        fp->s[0] = fp->s[1] = NAN;
        return;
    }
    double fx = floor(x), fy = floor(y);
    ip->s[0] = (cl_int)fx;
    ip->s[1] = (cl_int)fy;
    fp->s[0] = (cl_float)(x - fx);
    fp->s[1] = (cl_float)(y - fy);
}

static void fill(const float *q, double x, double y, const clred_psf_phot_opts *o, size_t nfit, clred_psf_phot *p)
{
    memset(p, 0, sizeof *p);
    p->flags = (unsigned)q[Q_FLAGS];
    int moved = isfinite(q[Q_DX]) && isfinite(q[Q_DY]);
    p->x = moved ? x + q[Q_DX] : x;
    p->y = moved ? y + q[Q_DY] : y;
    p->x_err = q[Q_XERR];
    p->y_err = q[Q_YERR];
    p->flux = q[Q_FLUX];
    p->flux_err = q[Q_FERR];
    p->sky = q[Q_SKY];
    p->chi2_dof = q[Q_CHI2];
    p->npix = q[Q_NPIX] > 0 ? (size_t)q[Q_NPIX] : 0;
    p->nfit = nfit;
    if (p->flux > 0) {
        p->mag = -2.5 * log10(p->flux) + o->zeropoint;
        p->mag_err = 1.0857362047581294 * p->flux_err / p->flux;
    } else
        p->mag = p->mag_err = NAN;
}

typedef struct {
    cl_mem none, psf, ipos, fpos, start, list, out;
} psfphot_buffers;

static void release_all(psfphot_buffers *b)
{
    clred_release(&b->none);
    clred_release(&b->psf);
    clred_release(&b->ipos);
    clred_release(&b->fpos);
    clred_release(&b->start);
    clred_release(&b->list);
    clred_release(&b->out);
}

static clred_status run_fit(clred_ctx *ctx, psfphot_buffers *b, const clred_dimage *img, const clred_psf *psf,
                            const double *x, const double *y, size_t n, const clred_psf_phot_opts *o,
                            clred_psf_phot *out)
{
    double fit_r = fit_radius_of(psf, o);
    double fwhm = isfinite(psf->fwhm) && psf->fwhm > 0 ? psf->fwhm : 2.0;
    double group_r = o->group_radius == -1 ? 0 : o->group_radius > 0 ? o->group_radius : fit_r + fwhm;
    /* a varying PSF goes to the device whole: the kernel combines its
     * terms at each source */
    int varying = psf->order > 0 && psf->basis;
    size_t nterms = varying ? psf->nterms : 1;
    cl_int psf_nt = (cl_int)nterms;
    cl_float4 poly = {{0, 0, 0, 0}};
    if (varying) {
        poly.s[0] = (cl_float)psf->x0;
        poly.s[1] = (cl_float)psf->y0;
        poly.s[2] = (cl_float)(1.0 / psf->xscale);
        poly.s[3] = (cl_float)(1.0 / psf->yscale);
    }
    cl_uint *start = NULL, *list = NULL;
    size_t nlist = 0;
    CLRED_TRY(neighbours(x, y, n, group_r, &start, &list, &nlist));
    cl_int2 *hi = malloc(n * sizeof *hi);
    cl_float2 *hf = malloc(n * sizeof *hf);
    float *res = malloc(n * Q_NOUT * sizeof *res);
    clred_status st = (hi && hf && res) ? CLRED_OK : clred_fail(CLRED_ERR_MEMORY, "out of memory for photometry");
    for (size_t i = 0; i < n && st == CLRED_OK; i++)
        split(x[i], y[i], &hi[i], &hf[i]);
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_READ_ONLY, 4, NULL, &b->none, "absent plane");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_READ_ONLY, nterms * psf->size * psf->size * sizeof(float), varying ? psf->basis
                          : psf->data, &b->psf, "PSF");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_READ_ONLY, n * sizeof *hi, hi, &b->ipos, "positions");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_READ_ONLY, n * sizeof *hf, hf, &b->fpos, "positions");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_READ_ONLY, (n + 1) * sizeof *start, start, &b->start, "neighbour index");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_READ_ONLY, (nlist ? nlist : 1) * sizeof *list, nlist ? list : NULL, &b->list,
                          "neighbours");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_WRITE_ONLY, n * Q_NOUT * sizeof(float), NULL, &b->out, "PSF fits");
    cl_kernel k = NULL;
    if (st == CLRED_OK)
        st = clred_kernel(ctx, "psfphot", NULL, "psf_photometry", &k);
    cl_mem sci = clred_dimage_sci(img);
    cl_mem var = clred_dimage_var(img) ? clred_dimage_var(img) : b->none;
    cl_mem mask = clred_dimage_mask(img) ? clred_dimage_mask(img) : b->none;
    cl_int has_var = clred_dimage_var(img) != NULL, has_mask = clred_dimage_mask(img) != NULL;
    cl_int w = (cl_int)clred_dimage_width(img), h = (cl_int)clred_dimage_height(img);
    cl_int psz = (cl_int)psf->size, fit_sky = o->fit_sky != 0, fit_pos = o->fit_position != 0, iters = o->max_iters;
    cl_ushort ignore = o->ignore_bits;
    cl_uint cn = (cl_uint)n;
    cl_float fr = (cl_float)fit_r, core = (cl_float)fwhm, shift = (cl_float)o->max_shift;
    cl_float snr = (cl_float)o->min_snr_position, noise = (cl_float)o->noise_rms;
    if (st == CLRED_OK)
        st = clred_args(k, "psf_photometry", CLRED_ARG(sci), CLRED_ARG(var), CLRED_ARG(has_var), CLRED_ARG(mask),
                        CLRED_ARG(has_mask), CLRED_ARG(ignore), CLRED_ARG(w), CLRED_ARG(h), CLRED_ARG(b->psf),
                        CLRED_ARG(psz), CLRED_ARG(psf_nt), CLRED_ARG(poly), CLRED_ARG(b->ipos), CLRED_ARG(b->fpos), CLRED_ARG(b->start),
                        CLRED_ARG(b->list), CLRED_ARG(cn), CLRED_ARG(fr), CLRED_ARG(core), CLRED_ARG(fit_sky),
                        CLRED_ARG(fit_pos), CLRED_ARG(iters), CLRED_ARG(shift), CLRED_ARG(snr), CLRED_ARG(noise),
                        CLRED_ARG(b->out), (size_t)0);
    if (st == CLRED_OK)
        st = clred_run_items(ctx, k, "psf_photometry", n);
    if (st == CLRED_OK)
        st = clred_download(ctx, b->out, 0, n * Q_NOUT * sizeof *res, res);
    for (size_t i = 0; i < n && st == CLRED_OK; i++) {
        /* the kernel skips neighbours without a position: count as it does */
        size_t nfit = 1;
        for (cl_uint q = start[i]; q < start[i + 1] && nfit < PSF_MAX_GROUP; q++)
            nfit += isfinite(x[list[q]]) && isfinite(y[list[q]]);
        fill(res + i * Q_NOUT, x[i], y[i], o, nfit, &out[i]);
    }
    free(hi);
    free(hf);
    free(res);
    free(start);
    free(list);
    return st;
}

clred_status clred_psf_photometry_dev(clred_ctx *ctx, const clred_dimage *img, const clred_psf *psf, const double *x,
                                      const double *y, size_t n, const clred_psf_phot_opts *opts, clred_psf_phot *out)
{
    clred_psf_phot_opts o = opts ? *opts : clred_psf_phot_defaults();
    if (!img)
        return clred_fail(CLRED_ERR_USAGE, "psf_photometry: no image");
    CLRED_TRY(check_opts(psf, &o, n));
    if (n == 0)
        return CLRED_OK;
    psfphot_buffers b;
    memset(&b, 0, sizeof b);
    clred_status st = run_fit(ctx, &b, img, psf, x, y, n, &o, out);
    release_all(&b);
    return st;
}

clred_status clred_psf_photometry(clred_ctx *ctx, const clred_image *img, const clred_psf *psf, const double *x,
                                  const double *y, size_t n, const clred_psf_phot_opts *opts, clred_psf_phot *out)
{
    clred_psf_phot_opts o = opts ? *opts : clred_psf_phot_defaults();
    if (!img || !img->sci)
        return clred_fail(CLRED_ERR_USAGE, "psf_photometry: no image");
    CLRED_TRY(check_opts(psf, &o, n));
    if (n == 0)
        return CLRED_OK;
    clred_dimage *d;
    CLRED_TRY(clred_dimage_borrow(ctx, img, &d));
    clred_status st = clred_psf_photometry_dev(ctx, d, psf, x, y, n, &o, out);
    clred_dimage_free(d);
    return st;
}
