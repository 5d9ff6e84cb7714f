/* Background matching before coaddition and the coadd's final background:
 * differences to a reference measured on a coarse mesh on the device
 * (kernels/background.cl bkg_match_diff, the mesh of clred_background),
 * fitted by a low-order polynomial on the host (a few dozen box values),
 * added back on the device (bkg_add_poly). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "background.h"

clred_bkg_opts clred_coadd_bkg_defaults(void)
{
    clred_bkg_opts o = clred_bkg_defaults();
    o.box_w = o.box_h = 256;
    o.mask_sources = 1; /* a coadd is deep: its sources would lift the boxes */
    return o;
}

clred_status clred_coadd_background(clred_ctx *ctx, clred_image *coadd, const clred_bkg_opts *opts,
                                    clred_bkg_model *model, clred_bkg_info *info)
{
    if (!model)
        return clred_fail(CLRED_ERR_USAGE, "coadd background: no model given");
    clred_bkg_opts o = opts ? *opts : clred_coadd_bkg_defaults();
    CLRED_TRY(clred_background_model(ctx, coadd, &o, model, info));
    clred_status st = clred_bkg_model_subtract(ctx, model, coadd);
    if (st != CLRED_OK)
        clred_bkg_model_free(model);
    return st;
}

clred_bkgmatch_opts clred_bkgmatch_defaults(void)
{
    clred_bkgmatch_opts o;
    memset(&o, 0, sizeof o);
    o.order = 1;
    o.box = 64;
    o.ref_index = -1;
    o.ignore_bits = CLRED_MASK_UNUSABLE;
    return o;
}

void clred_bkgmatch_result_free(clred_bkgmatch_result *r)
{
    if (!r)
        return;
    free(r->coeffs);
    free(r->offset);
    free(r->fit_rms);
    memset(r, 0, sizeof *r);
}

static size_t nterms_of(int order) { return order < 0 ? 0 : (size_t)(order + 1) * (size_t)(order + 2) / 2; }

/* The terms 1, u, v, u^2, u v, v^2, u^3, u^2 v, u v^2, v^3 at (u, v). */
static void poly_terms(double u, double v, double *t)
{
    double all[10] = {1, u, v, u * u, u * v, v * v, u * u * u, u * u * v, u * v * v, v * v * v};
    memcpy(t, all, sizeof all);
}

/* Solves the k x k system a c = b (a is overwritten) by Gaussian elimination
 * with partial pivoting; 0 when singular. */
static int solve(double *a, double *b, double *c, int k)
{
    for (int col = 0; col < k; col++) {
        int piv = col;
        for (int r = col + 1; r < k; r++)
            if (fabs(a[r * k + col]) > fabs(a[piv * k + col]))
                piv = r;
        if (!(fabs(a[piv * k + col]) > 1e-12))
            return 0;
        for (int j = 0; j < k; j++) {
            double t = a[col * k + j];
            a[col * k + j] = a[piv * k + j];
            a[piv * k + j] = t;
        }
        double t = b[col];
        b[col] = b[piv];
        b[piv] = t;
        for (int r = col + 1; r < k; r++) {
            double f = a[r * k + col] / a[col * k + col];
            for (int j = col; j < k; j++)
                a[r * k + j] -= f * a[col * k + j];
            b[r] -= f * b[col];
        }
    }
    for (int r = k - 1; r >= 0; r--) {
        double s = b[r];
        for (int j = r + 1; j < k; j++)
            s -= a[r * k + j] * c[j];
        c[r] = s / a[r * k + r];
    }
    return 1;
}

/* Least-squares polynomial through the mesh values at the centres of the
 * boxes' pixels (partial boxes at the right and top edges included). */
static clred_status fit_mesh(const clred_bkg_model *m, int order, double *coeffs, double *rms)
{
    size_t k = nterms_of(order), nbox = m->mesh_w * m->mesh_h;
    if (nbox < k)
        return clred_fail(CLRED_ERR_INPUT,
                          "background matching: a %zu x %zu mesh has too few boxes for a polynomial of order %d; "
                          "use a smaller box or a lower order",
                          m->mesh_w, m->mesh_h, order);
    double ata[100] = {0}, atb[10] = {0}, t[10];
    double sx = m->width > 1 ? 2.0 / (double)(m->width - 1) : 0, sy = m->height > 1 ? 2.0 / (double)(m->height - 1) : 0;
    for (size_t j = 0; j < m->mesh_h; j++)
        for (size_t i = 0; i < m->mesh_w; i++) {
            size_t x0 = i * (size_t)m->box_w, y0 = j * (size_t)m->box_h;
            size_t x1 = x0 + (size_t)m->box_w < m->width ? x0 + (size_t)m->box_w : m->width;
            size_t y1 = y0 + (size_t)m->box_h < m->height ? y0 + (size_t)m->box_h : m->height;
            double u = sx * 0.5 * (double)(x0 + x1 - 1) - (sx > 0), v = sy * 0.5 * (double)(y0 + y1 - 1) - (sy > 0);
            poly_terms(u, v, t);
            double z = m->back[j * m->mesh_w + i];
            for (size_t a = 0; a < k; a++) {
                atb[a] += t[a] * z;
                for (size_t b = 0; b < k; b++)
                    ata[a * k + b] += t[a] * t[b];
            }
        }
    if (!solve(ata, atb, coeffs, (int)k))
        return clred_fail(CLRED_ERR_INPUT,
                          "background matching: the box centres do not constrain a polynomial of order %d "
                          "(a single row or column of boxes?)",
                          order);
    double ss = 0;
    for (size_t j = 0; j < m->mesh_h; j++)
        for (size_t i = 0; i < m->mesh_w; i++) {
            size_t x0 = i * (size_t)m->box_w, y0 = j * (size_t)m->box_h;
            size_t x1 = x0 + (size_t)m->box_w < m->width ? x0 + (size_t)m->box_w : m->width;
            size_t y1 = y0 + (size_t)m->box_h < m->height ? y0 + (size_t)m->box_h : m->height;
            double u = sx * 0.5 * (double)(x0 + x1 - 1) - (sx > 0), v = sy * 0.5 * (double)(y0 + y1 - 1) - (sy > 0);
            poly_terms(u, v, t);
            double p = 0;
            for (size_t a = 0; a < k; a++)
                p += coeffs[a] * t[a];
            double d = m->back[j * m->mesh_w + i] - p;
            ss += d * d;
        }
    *rms = sqrt(ss / (double)nbox);
    return CLRED_OK;
}

/* img's SCI += the polynomial (bkg_add_poly), enqueued. */
static clred_status add_poly(clred_ctx *ctx, clred_dimage *img, const double *coeffs, size_t k)
{
    float c[10] = {0};
    for (size_t i = 0; i < k; i++)
        c[i] = (float)coeffs[i];
    cl_mem cbuf = NULL;
    CLRED_TRY(clred_buffer(ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof c, c, &cbuf, "polynomial"));
    cl_kernel kern;
    int w = (int)img->width, h = (int)img->height, nk = (int)k;
    cl_mem sci = clred_dimage_sci(img);
    clred_status st = clred_kernel(ctx, "background", NULL, "bkg_add_poly", &kern);
    if (st == CLRED_OK)
        st = clred_args(kern, "bkg_add_poly", CLRED_ARG(sci), CLRED_ARG(w), CLRED_ARG(h), CLRED_ARG(cbuf),
                        CLRED_ARG(nk), (size_t)0);
    size_t global[2] = {img->width, img->height};
    if (st == CLRED_OK)
        st = clred_run_tiled(ctx, kern, "bkg_add_poly", 2, global);
    clred_release(&cbuf);
    return st;
}

/* img's SCI += the mesh model's map (order -1). */
static clred_status add_mesh(clred_ctx *ctx, clred_dimage *img, const clred_bkg_model *m)
{
    clred_dimage *map = NULL;
    CLRED_TRY(clred_bkg_model_eval_dev(ctx, m, &map, NULL));
    cl_kernel k;
    cl_mem a = clred_dimage_sci(img), b = clred_dimage_sci(map);
    cl_uint n = (cl_uint)clred_dimage_pixels(img);
    size_t global = n;
    clred_status st = clred_kernel(ctx, "arith", NULL, "add", &k);
    if (st == CLRED_OK)
        st = clred_args(k, "add", CLRED_ARG(a), CLRED_ARG(b), CLRED_ARG(n), (size_t)0);
    if (st == CLRED_OK)
        st = clred_run_tiled(ctx, k, "add", 1, &global);
    if (st == CLRED_OK)
        st = clred_sync(ctx); /* map goes back to the pool */
    clred_dimage_free(map);
    return st;
}

/* ref - frame where both are usable, into diff. */
static clred_status difference(clred_ctx *ctx, const clred_dimage *ref, const clred_dimage *img, uint16_t ignore,
                               clred_dimage *diff)
{
    cl_kernel k;
    cl_mem r = clred_dimage_sci(ref), rm = clred_dimage_mask(ref), f = clred_dimage_sci(img),
           fm = clred_dimage_mask(img), out = clred_dimage_sci(diff);
    int rhm = rm != NULL, fhm = fm != NULL;
    if (!rm)
        rm = r; /* never read */
    if (!fm)
        fm = f;
    cl_ushort ig = ignore;
    cl_uint n = (cl_uint)clred_dimage_pixels(img);
    size_t global = n;
    CLRED_TRY(clred_kernel(ctx, "background", NULL, "bkg_match_diff", &k));
    CLRED_TRY(clred_args(k, "bkg_match_diff", CLRED_ARG(r), CLRED_ARG(rm), CLRED_ARG(rhm), CLRED_ARG(f),
                         CLRED_ARG(fm), CLRED_ARG(fhm), CLRED_ARG(ig), CLRED_ARG(out), CLRED_ARG(n), (size_t)0));
    return clred_run_tiled(ctx, k, "bkg_match_diff", 1, &global);
}

/* The frame whose clipped median is the median of them all (the lower of
 * the two middle ones for an even count). */
static clred_status choose_reference(clred_ctx *ctx, clred_dimage *const *d, size_t n, uint16_t ignore, long *ref)
{
    double *level = malloc(n * sizeof *level);
    size_t *order = malloc(n * sizeof *order);
    if (!level || !order) {
        free(level), free(order);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory choosing the reference");
    }
    clred_stats_opts so = clred_stats_defaults();
    so.ignore_bits = ignore;
    clred_status st = CLRED_OK;
    for (size_t i = 0; i < n && st == CLRED_OK; i++) {
        clred_stats s;
        st = clred_stats_dev(ctx, d[i], &so, &s);
        level[i] = s.npix ? s.median : INFINITY;
        order[i] = i;
    }
    for (size_t i = 1; i < n; i++) /* a handful of frames: insertion sort */
        for (size_t j = i; j > 0 && level[order[j - 1]] > level[order[j]]; j--) {
            size_t t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    *ref = (long)order[(n - 1) / 2];
    free(level), free(order);
    return st;
}

/* The matching of device images (one shape) in place. */
static clred_status match_dev(clred_ctx *ctx, clred_dimage *const *d, size_t n, const clred_bkgmatch_opts *o,
                              clred_bkgmatch_result *result)
{
    size_t w = d[0]->width, h = d[0]->height, k = nterms_of(o->order);
    clred_bkgmatch_result r;
    memset(&r, 0, sizeof r);
    r.nterms = k;
    r.coeffs = calloc(n * (k ? k : 1), sizeof *r.coeffs);
    r.offset = calloc(n, sizeof *r.offset);
    r.fit_rms = calloc(n, sizeof *r.fit_rms);
    clred_dimage *diff = NULL;
    clred_status st = r.coeffs && r.offset && r.fit_rms ? CLRED_OK : clred_fail(CLRED_ERR_MEMORY, "out of memory");
    r.ref_index = o->ref_index;
    if (st == CLRED_OK && r.ref_index < 0)
        st = choose_reference(ctx, d, n, o->ignore_bits, &r.ref_index);
    if (st == CLRED_OK)
        st = clred_dimage_new(ctx, w, h, 0, 0, &diff);
    clred_bkg_opts bo = clred_bkg_defaults();
    bo.box_w = bo.box_h = o->box;
    bo.filter_w = bo.filter_h = 1;
    bo.ignore_bits = 0; /* unusable pixels are NaN in the difference */
    for (size_t i = 0; i < n && st == CLRED_OK; i++) {
        if ((long)i == r.ref_index)
            continue;
        clred_bkg_model m;
        memset(&m, 0, sizeof m);
        st = difference(ctx, d[r.ref_index], d[i], o->ignore_bits, diff);
        if (st == CLRED_OK)
            st = clred_background_model_dev(ctx, diff, &bo, &m, NULL);
        if (st == CLRED_OK && o->order >= 0) {
            st = fit_mesh(&m, o->order, r.coeffs + i * k, &r.fit_rms[i]);
            double t[10];
            poly_terms(0, 0, t);
            for (size_t a = 0; a < k; a++)
                r.offset[i] += r.coeffs[i * k + a] * t[a];
            if (st == CLRED_OK)
                st = add_poly(ctx, d[i], r.coeffs + i * k, k);
        } else if (st == CLRED_OK) {
            r.offset[i] = m.global_back;
            st = add_mesh(ctx, d[i], &m);
        }
        clred_bkg_model_free(&m);
        if (st != CLRED_OK) {
            char msg[400];
            snprintf(msg, sizeof msg, "%s", clred_last_error());
            st = clred_fail(st, "frame %zu matched to frame %ld: %s", i, r.ref_index, msg);
        }
    }
    if (st == CLRED_OK)
        st = clred_sync(ctx); /* diff goes back to the pool */
    clred_dimage_free(diff);
    if (st == CLRED_OK && result)
        *result = r;
    else
        clred_bkgmatch_result_free(&r);
    return st;
}

static clred_status check_match(clred_ctx *ctx, size_t n, const clred_bkgmatch_opts *o)
{
    if (!ctx || n == 0)
        return clred_fail(CLRED_ERR_USAGE, "background matching: no context or frames given");
    if (o->order < -1 || o->order > 3 || o->box < 4)
        return clred_fail(CLRED_ERR_USAGE, "background matching: order %d must be -1..3 and box %d at least 4",
                          o->order, o->box);
    if (o->ref_index < -1 || o->ref_index >= (long)n)
        return clred_fail(CLRED_ERR_USAGE, "background matching: reference %ld is not one of the %zu frames",
                          o->ref_index, n);
    return CLRED_OK;
}

clred_status clred_match_backgrounds_dev(clred_ctx *ctx, clred_dimage *const *frames, size_t n,
                                         const clred_bkgmatch_opts *opts, clred_bkgmatch_result *result)
{
    clred_bkgmatch_opts o = opts ? *opts : clred_bkgmatch_defaults();
    if (result)
        memset(result, 0, sizeof *result);
    CLRED_TRY(check_match(ctx, frames ? n : 0, &o));
    for (size_t i = 0; i < n; i++)
        if (!frames[i] || frames[i]->ctx != ctx || frames[i]->width != frames[0]->width ||
            frames[i]->height != frames[0]->height)
            return clred_fail(CLRED_ERR_INPUT, "background matching: frame %zu is missing, of another context or "
                                               "of another shape than frame 0", i);
    if (frames[0]->width * frames[0]->height > 0xffffffffu)
        return clred_fail(CLRED_ERR_USAGE, "background matching: the frames are too large");
    return match_dev(ctx, frames, n, &o, result);
}

clred_status clred_match_backgrounds(clred_ctx *ctx, clred_image *frames, size_t n, const clred_bkgmatch_opts *opts,
                                     clred_bkgmatch_result *result)
{
    clred_bkgmatch_opts o = opts ? *opts : clred_bkgmatch_defaults();
    if (result)
        memset(result, 0, sizeof *result);
    CLRED_TRY(check_match(ctx, frames ? n : 0, &o));
    size_t w = frames[0].width, h = frames[0].height;
    for (size_t i = 0; i < n; i++)
        if (!frames[i].sci || frames[i].width != w || frames[i].height != h)
            return clred_fail(CLRED_ERR_INPUT, "background matching: frame %zu is %zu x %zu, frame 0 %zu x %zu", i,
                              frames[i].width, frames[i].height, w, h);
    if (w * h > 0xffffffffu)
        return clred_fail(CLRED_ERR_USAGE, "background matching: %zu x %zu frames are too large", w, h);
    clred_dimage **d = calloc(n, sizeof *d);
    clred_status st = d ? CLRED_OK : clred_fail(CLRED_ERR_MEMORY, "out of memory");
    for (size_t i = 0; i < n && st == CLRED_OK; i++) {
        clred_image view = {w, h, frames[i].sci, NULL, frames[i].mask, NULL};
        st = clred_dimage_borrow(ctx, &view, &d[i]);
    }
    if (st == CLRED_OK)
        st = match_dev(ctx, d, n, &o, result);
    for (size_t i = 0; i < n && st == CLRED_OK; i++)
        st = clred_dimage_sync_borrowed(d[i]);
    for (size_t i = 0; d && i < n; i++)
        clred_dimage_free(d[i]);
    free(d);
    if (st != CLRED_OK && result)
        clred_bkgmatch_result_free(result);
    return st;
}
