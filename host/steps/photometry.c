/* Aperture photometry on the device (kernels/photometry.cl) and the host's
 * copy of the exact circle/pixel overlap. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define P_NOUT 7 /* floats per position from aperture_photometry */

clred_phot_opts clred_phot_defaults(void)
{
    clred_phot_opts o;
    memset(&o, 0, sizeof o);
    o.radius = 5.0;
    o.annulus_in = 8.0;
    o.annulus_out = 12.0;
    o.clip_sigma = 3.0;
    o.max_iters = 5;
    o.zeropoint = 25.0;
    o.ignore_bits = CLRED_MASK_UNUSABLE;
    return o;
}

/* ----------------------------------------------- geometry (host, double) */

/* As disc_strip in kernels/photometry.cl. */
static double disc_strip(double u, double v, double r)
{
    double hu = sqrt(fmax((r - u) * (r + u), 0.0)), hv = sqrt(fmax((r - v) * (r + v), 0.0));
    double dtheta = atan2(v * hu - u * hv, u * v + hu * hv);
    return 0.5 * (v * hv - u * hu + r * r * dtheta);
}

/* Same construction as disc_rect_overlap in kernels/photometry.cl: the
 * integrand over x keeps one form between the crossings of +-h with y0, y1. */
static double disc_rect_overlap(double x0, double x1, double y0, double y1, double r)
{
    double a = fmax(x0, -r), b = fmin(x1, r);
    if (a >= b || y0 >= r || y1 <= -r)
        return 0.0;
    double pts[6];
    int np = 0;
    pts[np++] = a;
    double ys[2] = {y0, y1};
    for (int k = 0; k < 2; k++)
        if (fabs(ys[k]) < r) {
            double xb = sqrt((r - ys[k]) * (r + ys[k]));
            if (-xb > a && -xb < b)
                pts[np++] = -xb;
            if (xb > a && xb < b)
                pts[np++] = xb;
        }
    pts[np++] = b;
    for (int i = 1; i < np; i++) {
        double v = pts[i];
        int j = i - 1;
        while (j >= 0 && pts[j] > v) {
            pts[j + 1] = pts[j];
            j--;
        }
        pts[j + 1] = v;
    }
    double area = 0;
    for (int i = 0; i + 1 < np; i++) {
        double u = pts[i], v = pts[i + 1];
        if (v <= u)
            continue;
        double m = 0.5 * (u + v), hm = sqrt(fmax((r - m) * (r + m), 0.0));
        if (fmin(y1, hm) <= fmax(y0, -hm))
            continue;
        double ph = disc_strip(u, v, r);
        double top = (y1 < hm) ? y1 * (v - u) : ph;
        double bottom = (y0 > -hm) ? y0 * (v - u) : -ph;
        area += top - bottom;
    }
    return area;
}

double clred_circle_pixel_overlap(double cx, double cy, double r, double px, double py)
{
    if (!(r > 0))
        return 0.0;
    return disc_rect_overlap(px - 0.5 - cx, px + 0.5 - cx, py - 0.5 - cy, py + 0.5 - cy, r);
}

/* ------------------------------------------------------------ photometry */

static clred_status check_phot(size_t width, size_t height, const clred_phot_opts *o, size_t n)
{
    if (width == 0 || height == 0)
        return clred_fail(CLRED_ERR_USAGE, "aperture_photometry: no image");
    if (!(o->radius > 0) || o->radius > 1000)
        return clred_fail(CLRED_ERR_USAGE, "aperture_photometry: radius %g must be in (0, 1000]", o->radius);
    if (o->annulus_out > o->annulus_in && (!(o->annulus_in >= 0) || o->annulus_out > 1000))
        return clred_fail(CLRED_ERR_USAGE, "aperture_photometry: annulus %g,%g must be within [0, 1000]",
                          o->annulus_in, o->annulus_out);
    if (!(o->noise_rms >= 0) || !isfinite(o->noise_rms))
        return clred_fail(CLRED_ERR_USAGE, "aperture_photometry: noise_rms %g must be finite and >= 0", o->noise_rms);
    if (!(o->clip_sigma > 0) || o->max_iters < 0)
        return clred_fail(CLRED_ERR_USAGE, "aperture_photometry: clip sigma %g must be > 0, iterations %d >= 0",
                          o->clip_sigma, o->max_iters);
    if (n > 0xffffffffu)
        return clred_fail(CLRED_ERR_USAGE, "aperture_photometry: %zu positions are too many for one call", n);
    return CLRED_OK;
}

static void fill_result(const float *r, double x, double y, const clred_phot_opts *o, clred_phot *p)
{
    p->x = x;
    p->y = y;
    p->flux = r[0];
    p->flux_err = r[1];
    p->area = r[2];
    p->bkg = r[3];
    p->bkg_rms = r[4];
    p->nannulus = r[5] > 0 ? (size_t)r[5] : 0;
    p->flags = (unsigned)r[6];
    if (p->flux > 0) {
        p->mag = -2.5 * log10(p->flux) + o->zeropoint;
        p->mag_err = 1.0857362047581294 * p->flux_err / p->flux;
    } else {
        p->mag = NAN;
        p->mag_err = NAN;
    }
}

typedef struct {
    cl_mem none, ipos, fpos, scratch, out;
} phot_buffers;

static void phot_release(phot_buffers *b)
{
    clred_release(&b->none);
    clred_release(&b->ipos);
    clred_release(&b->fpos);
    clred_release(&b->scratch);
    clred_release(&b->out);
}

/* A position as its integer part and its fraction, which float holds to
 * ~6e-8 px wherever the position is (a float x near 2000 would only be good
 * to 1e-4 px, enough to move annulus pixels across its edges). A position
 * that is not finite or lies beyond 2^30 px is passed as NaN: no measurement. */
static void split_position(double x, double y, cl_int2 *ip, cl_float2 *fp)
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

/* Positions in chunks sized so each work-item's annulus scratch fits the
 * device's largest buffer, through kernel name (aperture_photometry, or
 * aperture_background: the same arguments and results). */
static clred_status run_chunks(clred_ctx *ctx, phot_buffers *b, const char *name, const clred_dimage *img,
                               const double *x, const double *y, size_t n, const clred_phot_opts *o, clred_phot *out)
{
    CLRED_TRY(clred_buffer(ctx, CL_MEM_READ_ONLY, 4, NULL, &b->none, "absent plane"));
    cl_mem sci = clred_dimage_sci(img);
    cl_mem var = clred_dimage_var(img) ? clred_dimage_var(img) : b->none;
    cl_mem mask = clred_dimage_mask(img) ? clred_dimage_mask(img) : b->none;
    int use_annulus = o->annulus_out > o->annulus_in;
    size_t side = use_annulus ? 2 * (size_t)ceil(o->annulus_out) + 3 : 1;
    cl_uint stride = (cl_uint)(side * side);
    uint64_t max_alloc = clred_ctx_max_alloc(ctx);
    size_t chunk = (size_t)(max_alloc / 2 / ((uint64_t)stride * sizeof(float)));
    if (chunk > 65536)
        chunk = 65536;
    if (chunk == 0)
        return clred_fail(CLRED_ERR_DEVICE, "aperture_photometry: an annulus of radius %g needs more than the "
                          "device's largest buffer", o->annulus_out);
    if (chunk > n)
        chunk = n;
    CLRED_TRY(clred_buffer(ctx, CL_MEM_READ_WRITE, chunk * stride * sizeof(float), NULL, &b->scratch, "annulus"));
    CLRED_TRY(clred_buffer(ctx, CL_MEM_READ_ONLY, chunk * sizeof(cl_int2), NULL, &b->ipos, "positions"));
    CLRED_TRY(clred_buffer(ctx, CL_MEM_READ_ONLY, chunk * sizeof(cl_float2), NULL, &b->fpos, "positions"));
    CLRED_TRY(clred_buffer(ctx, CL_MEM_WRITE_ONLY, chunk * P_NOUT * sizeof(float), NULL, &b->out, "results"));
    cl_int2 *hi = malloc(chunk * sizeof *hi);
    cl_float2 *hf = malloc(chunk * sizeof *hf);
    float *res = malloc(chunk * P_NOUT * sizeof *res);
    clred_status st = (hi && hf && res) ? CLRED_OK : clred_fail(CLRED_ERR_MEMORY, "out of memory for photometry");
    cl_kernel k = NULL;
    if (st == CLRED_OK)
        st = clred_kernel(ctx, "photometry", NULL, name, &k);
    cl_int has_var = clred_dimage_var(img) != NULL, has_mask = clred_dimage_mask(img) != NULL;
    cl_int w = (cl_int)clred_dimage_width(img), h = (cl_int)clred_dimage_height(img), iters = o->max_iters;
    cl_ushort ignore = o->ignore_bits;
    cl_float radius = (cl_float)o->radius, rin = (cl_float)o->annulus_in, rout = (cl_float)o->annulus_out;
    cl_float cs = (cl_float)o->clip_sigma, noise = (cl_float)o->noise_rms;
    for (size_t s = 0; s < n && st == CLRED_OK; s += chunk) {
        size_t m = n - s < chunk ? n - s : chunk;
        for (size_t i = 0; i < m; i++)
            split_position(x[s + i], y[s + i], &hi[i], &hf[i]);
        cl_uint cm = (cl_uint)m;
        st = clred_upload(ctx, b->ipos, 0, m * sizeof *hi, hi);
        if (st == CLRED_OK)
            st = clred_upload(ctx, b->fpos, 0, m * sizeof *hf, hf);
        if (st == CLRED_OK)
            st = clred_args(k, name, CLRED_ARG(sci), CLRED_ARG(var), CLRED_ARG(has_var),
                            CLRED_ARG(mask), CLRED_ARG(has_mask), CLRED_ARG(ignore), CLRED_ARG(w), CLRED_ARG(h),
                            CLRED_ARG(b->ipos), CLRED_ARG(b->fpos), CLRED_ARG(cm), CLRED_ARG(radius), CLRED_ARG(rin),
                            CLRED_ARG(rout), CLRED_ARG(cs), CLRED_ARG(iters), CLRED_ARG(noise), CLRED_ARG(b->scratch),
                            CLRED_ARG(stride), CLRED_ARG(b->out), (size_t)0);
        if (st == CLRED_OK)
            st = clred_run_items(ctx, k, name, m);
        if (st == CLRED_OK)
            st = clred_download(ctx, b->out, 0, m * P_NOUT * sizeof *res, res);
        for (size_t i = 0; i < m && st == CLRED_OK; i++)
            fill_result(res + i * P_NOUT, x[s + i], y[s + i], o, &out[s + i]);
    }
    free(hi);
    free(hf);
    free(res);
    return st;
}

static clred_status phot_dev(clred_ctx *ctx, const char *name, const clred_dimage *img, const double *x,
                             const double *y, size_t n, const clred_phot_opts *opts, clred_phot *out)
{
    clred_phot_opts o = opts ? *opts : clred_phot_defaults();
    if (!img)
        return clred_fail(CLRED_ERR_USAGE, "aperture_photometry: no image");
    CLRED_TRY(check_phot(clred_dimage_width(img), clred_dimage_height(img), &o, n));
    if (n == 0)
        return CLRED_OK;
    phot_buffers b;
    memset(&b, 0, sizeof b);
    clred_status st = run_chunks(ctx, &b, name, img, x, y, n, &o, out);
    phot_release(&b);
    return st;
}

clred_status clred_aperture_photometry_dev(clred_ctx *ctx, const clred_dimage *img, const double *x,
                                           const double *y, size_t n, const clred_phot_opts *opts, clred_phot *out)
{
    return phot_dev(ctx, "aperture_photometry", img, x, y, n, opts, out);
}

clred_status clred_aperture_background_dev(clred_ctx *ctx, const clred_dimage *img, const double *x,
                                           const double *y, size_t n, const clred_phot_opts *opts, clred_phot *out)
{
    const clred_phot_opts *o = opts;
    clred_phot_opts defaults = clred_phot_defaults();
    if (!o)
        o = &defaults;
    if (!(o->annulus_out > o->annulus_in))
        return clred_fail(CLRED_ERR_USAGE, "aperture_photometry: a background needs an annulus (%g,%g given)",
                          o->annulus_in, o->annulus_out);
    return phot_dev(ctx, "aperture_background", img, x, y, n, o, out);
}

clred_status clred_aperture_photometry(clred_ctx *ctx, const clred_image *img, const double *x, const double *y,
                                       size_t n, const clred_phot_opts *opts, clred_phot *out)
{
    clred_phot_opts o = opts ? *opts : clred_phot_defaults();
    if (!img || !img->sci)
        return clred_fail(CLRED_ERR_USAGE, "aperture_photometry: no image");
    CLRED_TRY(check_phot(img->width, img->height, &o, n));
    if (n == 0)
        return CLRED_OK;
    clred_dimage *d;
    CLRED_TRY(clred_dimage_borrow(ctx, img, &d));
    clred_status st = clred_aperture_photometry_dev(ctx, d, x, y, n, &o, out);
    clred_dimage_free(d);
    return st;
}
