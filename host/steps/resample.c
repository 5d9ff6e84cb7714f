/* Resampling: affine maps with nearest, bilinear, bicubic and Lanczos-3
 * interpolation in one kernel, and an exact Fourier shift for translations
 * (whose variance and mask come from the Lanczos-3 footprint, the nearest
 * compact stand-in for the sinc). Also the transform helpers and
 * clred_align_images. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fft.h"

clred_resample_opts clred_resample_defaults(void)
{
    clred_resample_opts o;
    memset(&o, 0, sizeof o);
    o.interp = CLRED_INTERP_LANCZOS3;
    o.conserve_flux = 1;
    o.backend = CLRED_FFT_DEFAULT;
    o.ignore_bits = CLRED_MASK_UNUSABLE;
    return o;
}

clred_transform clred_transform_identity(void)
{
    clred_transform t = {{1, 0, 0, 0, 1, 0}};
    return t;
}

clred_transform clred_transform_translation(double dx, double dy)
{
    clred_transform t = {{1, 0, dx, 0, 1, dy}};
    return t;
}

clred_transform clred_transform_similarity(double scale, double angle_deg, double cx, double cy, double tx, double ty)
{
    double a = angle_deg * M_PI / 180.0, c = scale * cos(a), s = scale * sin(a);
    /* x' = R (x - c) + c + t */
    clred_transform t = {{c, -s, cx - c * cx + s * cy + tx, s, c, cy - s * cx - c * cy + ty}};
    return t;
}

clred_status clred_transform_invert(const clred_transform *t, clred_transform *inv)
{
    const double *m = t->m;
    double det = m[0] * m[4] - m[1] * m[3];
    if (!isfinite(det) || fabs(det) < 1e-12)
        return clred_fail(CLRED_ERR_USAGE, "transform [%g %g %g; %g %g %g] is singular", m[0], m[1], m[2], m[3], m[4],
                          m[5]);
    double a = m[4] / det, b = -m[1] / det, c = -m[3] / det, d = m[0] / det;
    inv->m[0] = a;
    inv->m[1] = b;
    inv->m[2] = -(a * m[2] + b * m[5]);
    inv->m[3] = c;
    inv->m[4] = d;
    inv->m[5] = -(c * m[2] + d * m[5]);
    return CLRED_OK;
}

static int is_translation(const clred_transform *t)
{
    return fabs(t->m[0] - 1.0) < 1e-12 && fabs(t->m[1]) < 1e-12 && fabs(t->m[3]) < 1e-12 && fabs(t->m[4] - 1.0) < 1e-12;
}

/* The median of the usable pixels: the level the Fourier shift pads with, so
 * the frame's edges do not ring against a step to zero. */
static clred_status usable_median(const clred_dimage *img, uint16_t ignore, float *median)
{
    float *v;
    size_t m;
    CLRED_TRY(clred_dimage_samples(img, 0, 0, img->width, img->height, 1, ignore, &v, &m));
    *median = m ? (float)clred_median_inplace(v, m) : 0.0f;
    free(v);
    return CLRED_OK;
}

/* Exact band-limited shift of the SCI plane into out's SCI where the affine
 * (Lanczos-3) pass left data. */
static clred_status fourier_shift(clred_ctx *ctx, const clred_dimage *img, cl_mem no_mask, double dx, double dy,
                                  const clred_resample_opts *o, clred_dimage *out)
{
    size_t w = img->width, h = img->height;
    if (!(fabs(dx) <= (double)CLRED_MAX_AXIS && fabs(dy) <= (double)CLRED_MAX_AXIS))
        return clred_fail(CLRED_ERR_INPUT, "Fourier shift: a shift of (%g, %g) px is not a shift of this frame", dx,
                          dy);
    size_t nx = clred_fft_shift_size(w, dx), ny = clred_fft_shift_size(h, dy);
    if (!nx || !ny)
        return clred_fail(CLRED_ERR_INPUT, "Fourier shift: a %zu x %zu frame is too large to pad", w, h);
    clred_fft_plan *plan;
    CLRED_TRY(clred_fft_plan_cached(ctx, o->backend, nx, ny, 1, &plan));
    float fill;
    CLRED_TRY(usable_median(img, o->ignore_bits, &fill));
    size_t bytes = clred_fft_bytes(nx, ny, 1);
    cl_mem work;
    CLRED_TRY(clred_pool_take(ctx, bytes, "Fourier shift", &work));
    cl_kernel k;
    clred_status st = clred_kernel(ctx, "fft_util", NULL, "pad_apodise", &k);
    int has_mask = clred_dimage_mask(img) != NULL, iw = (int)w, ih = (int)h, zero = 0, pitch = (int)clred_fft_pitch(nx);
    int inx = (int)nx, iny = (int)ny, use_window = 0;
    cl_ushort ignore = o->ignore_bits;
    cl_uint offset = 0;
    cl_mem src = clred_dimage_sci(img), src_mask = has_mask ? clred_dimage_mask(img) : no_mask;
    cl_mem dst = clred_dimage_sci(out), dst_mask = clred_dimage_mask(out);
    if (st == CLRED_OK)
        st = clred_args(k, "pad_apodise", CLRED_ARG(src), CLRED_ARG(src_mask), CLRED_ARG(has_mask), CLRED_ARG(ignore),
                        CLRED_ARG(iw), CLRED_ARG(zero), CLRED_ARG(zero), CLRED_ARG(iw), CLRED_ARG(ih), CLRED_ARG(work),
                        CLRED_ARG(offset), CLRED_ARG(pitch), CLRED_ARG(inx), CLRED_ARG(iny), CLRED_ARG(fill),
                        CLRED_ARG(work), CLRED_ARG(work), CLRED_ARG(use_window), (size_t)0); /* no window: no tables read */
    size_t g_pad[2] = {((size_t)pitch + 7) / 8, ny}; /* pad_apodise: 8 columns per work-item */
    if (st == CLRED_OK)
        st = clred_run_tiled(ctx, k, "pad_apodise", 2, g_pad);
    if (st == CLRED_OK)
        st = clred_fft_forward(ctx, plan, work);
    if (st == CLRED_OK)
        st = clred_kernel(ctx, "fft_util", NULL, "phase_ramp", &k);
    float fdx = (float)dx, fdy = (float)dy;
    if (st == CLRED_OK)
        st = clred_args(k, "phase_ramp", CLRED_ARG(work), CLRED_ARG(inx), CLRED_ARG(iny), CLRED_ARG(fdx),
                        CLRED_ARG(fdy), (size_t)0);
    size_t g_ramp[2] = {nx / 2 + 1, ny};
    if (st == CLRED_OK)
        st = clred_run_tiled(ctx, k, "phase_ramp", 2, g_ramp);
    if (st == CLRED_OK)
        st = clred_fft_inverse(ctx, plan, work);
    if (st == CLRED_OK)
        st = clred_kernel(ctx, "resample", NULL, "fourier_merge", &k);
    if (st == CLRED_OK)
        st = clred_args(k, "fourier_merge", CLRED_ARG(work), CLRED_ARG(pitch), CLRED_ARG(fill), CLRED_ARG(dst),
                        CLRED_ARG(dst_mask), CLRED_ARG(iw), CLRED_ARG(ih), (size_t)0);
    size_t g_merge[2] = {w, h};
    if (st == CLRED_OK)
        st = clred_run_tiled(ctx, k, "fourier_merge", 2, g_merge);
    clred_pool_give(ctx, &work, bytes);
    return st;
}

static clred_status resample_kernels(clred_ctx *ctx, const clred_dimage *img, const clred_transform *t,
                                     const clred_resample_opts *o, cl_mem no_plane, clred_dimage *out)
{
    size_t w = img->width, h = img->height, ow = out->width, oh = out->height;
    clred_transform inv;
    CLRED_TRY(clred_transform_invert(t, &inv));
    cl_kernel k;
    int has_var = clred_dimage_var(img) != NULL, has_mask = clred_dimage_mask(img) != NULL;
    int iw = (int)w, ih = (int)h, iow = (int)ow, ioh = (int)oh;
    cl_mem src = clred_dimage_sci(img), src_var = has_var ? clred_dimage_var(img) : no_plane;
    cl_mem src_mask = has_mask ? clred_dimage_mask(img) : no_plane;
    /* Without an input variance the kernel writes none: a scratch plane takes it. */
    cl_mem dst = clred_dimage_sci(out), dst_var = has_var ? clred_dimage_var(out) : NULL, dst_mask = clred_dimage_mask(out);
    size_t var_bytes = ow * oh * sizeof(float);
    if (!has_var)
        CLRED_TRY(clred_pool_take(ctx, var_bytes, "resample output variance", &dst_var));
    cl_ushort ignore = o->ignore_bits;
    cl_float8 m;
    memset(&m, 0, sizeof m);
    for (int i = 0; i < 6; i++)
        m.s[i] = (cl_float)inv.m[i];
    int kind = o->interp == CLRED_INTERP_FOURIER ? (int)CLRED_INTERP_LANCZOS3 : (int)o->interp;
    /* The input area one output pixel covers: |det| of the inverse map. */
    float flux = o->conserve_flux ? (float)fabs(inv.m[0] * inv.m[4] - inv.m[1] * inv.m[3]) : 1.0f;
    /* A pure translation (dithers) has one set of weights for the whole image:
     * resample_shift gives the same bits with vector loads. In float
     * arithmetic x + du is not exact, so there only the general kernel. */
    const int shift_only = ctx->use_double && m.s[0] == 1.0f && m.s[1] == 0.0f && m.s[3] == 0.0f && m.s[4] == 1.0f;
    const char *name = shift_only ? "resample_shift" : "resample_affine";
    cl_float du = m.s[2], dv = m.s[5];
    clred_status st = clred_kernel(ctx, "resample", NULL, name, &k);
    if (st == CLRED_OK && shift_only)
        st = clred_args(k, name, CLRED_ARG(src), CLRED_ARG(src_var), CLRED_ARG(src_mask), CLRED_ARG(has_var),
                        CLRED_ARG(has_mask), CLRED_ARG(ignore), CLRED_ARG(iw), CLRED_ARG(ih), CLRED_ARG(dst),
                        CLRED_ARG(dst_var), CLRED_ARG(dst_mask), CLRED_ARG(iow), CLRED_ARG(ioh), CLRED_ARG(du),
                        CLRED_ARG(dv), CLRED_ARG(kind), CLRED_ARG(flux), (size_t)0);
    else if (st == CLRED_OK)
        st = clred_args(k, name, CLRED_ARG(src), CLRED_ARG(src_var), CLRED_ARG(src_mask), CLRED_ARG(has_var),
                        CLRED_ARG(has_mask), CLRED_ARG(ignore), CLRED_ARG(iw), CLRED_ARG(ih), CLRED_ARG(dst),
                        CLRED_ARG(dst_var), CLRED_ARG(dst_mask), CLRED_ARG(iow), CLRED_ARG(ioh), CLRED_ARG(m),
                        CLRED_ARG(kind), CLRED_ARG(flux), (size_t)0);
    size_t global[2] = {shift_only ? clred_vector_groups(ctx, ow) : ow, oh};
    if (st == CLRED_OK)
        st = clred_run_tiled(ctx, k, name, 2, global);
    if (!has_var)
        clred_pool_give(ctx, &dst_var, var_bytes);
    if (st == CLRED_OK && o->interp == CLRED_INTERP_FOURIER)
        st = fourier_shift(ctx, img, no_plane, t->m[2], t->m[5], o, out);
    return st;
}

static clred_status check_resample(size_t width, size_t height, const clred_transform *transform,
                                   const clred_resample_opts *opts, size_t *ow, size_t *oh)
{
    if ((unsigned)opts->interp > (unsigned)CLRED_INTERP_FOURIER)
        return clred_fail(CLRED_ERR_USAGE, "resample: unknown interpolation %d", (int)opts->interp);
    for (int i = 0; i < 6; i++)
        if (!isfinite(transform->m[i]))
            return clred_fail(CLRED_ERR_USAGE, "resample: transform coefficient %d is not finite", i);
    *ow = opts->out_width ? opts->out_width : width;
    *oh = opts->out_height ? opts->out_height : height;
    if (opts->interp == CLRED_INTERP_FOURIER && (!is_translation(transform) || *ow != width || *oh != height))
        return clred_fail(CLRED_ERR_USAGE,
                          "resample: the Fourier interpolant shifts only (a pure translation, output of the input's shape)");
    if (*ow > 65535 * 4 || *oh > 65535 * 4 || width > 1u << 30)
        return clred_fail(CLRED_ERR_USAGE, "resample: output of %zu x %zu is too large", *ow, *oh);
    return CLRED_OK;
}

clred_status clred_resample_dev(clred_ctx *ctx, const clred_dimage *img, const clred_transform *transform,
                                const clred_resample_opts *opts, clred_dimage **out)
{
    clred_resample_opts defaults = clred_resample_defaults();
    if (!opts)
        opts = &defaults;
    *out = NULL;
    if (!img)
        return clred_fail(CLRED_ERR_USAGE, "resample: no input image");
    size_t ow = 0, oh = 0;
    CLRED_TRY(check_resample(img->width, img->height, transform, opts, &ow, &oh));
    int has_var = clred_dimage_var(img) != NULL;
    clred_dimage *d;
    CLRED_TRY(clred_dimage_create(ctx, ow, oh, has_var, 1, &d));
    /* Stands for the input planes the image lacks (the kernels do not read it). */
    cl_mem no_plane = NULL;
    clred_status st = clred_buffer(ctx, CL_MEM_READ_ONLY, sizeof(float), NULL, &no_plane, "resample placeholder");
    if (st == CLRED_OK)
        st = resample_kernels(ctx, img, transform, opts, no_plane, d);
    clred_release(&no_plane);
    if (st == CLRED_OK) {
        /* The output's WCS describes the output grid. */
        clred_header *h = clred_header_copy(img->header);
        if (!h)
            st = clred_fail(CLRED_ERR_MEMORY, "out of memory copying a header");
        else if ((st = clred_header_wcs_transform(h, transform)) != CLRED_OK)
            clred_header_free(h);
        else {
            clred_header_free(clred_dimage_header(d));
            d->header = h;
        }
    }
    if (st != CLRED_OK) {
        clred_dimage_free(d);
        return st;
    }
    *out = d;
    return CLRED_OK;
}

clred_status clred_resample(clred_ctx *ctx, const clred_image *img, const clred_transform *transform,
                            const clred_resample_opts *opts, clred_image *out)
{
    clred_resample_opts defaults = clred_resample_defaults();
    if (!opts)
        opts = &defaults;
    memset(out, 0, sizeof *out);
    if (!img || !img->sci || img->width == 0 || img->height == 0)
        return clred_fail(CLRED_ERR_USAGE, "resample: the input image is empty");
    size_t ow = 0, oh = 0;
    CLRED_TRY(check_resample(img->width, img->height, transform, opts, &ow, &oh));
    clred_dimage *src, *dst = NULL;
    CLRED_TRY(clred_dimage_borrow(ctx, img, &src));
    clred_status st = clred_resample_dev(ctx, src, transform, opts, &dst);
    clred_dimage_free(src);
    if (st == CLRED_OK)
        st = clred_image_alloc(out, ow, oh, img->var != NULL, 1);
    if (st == CLRED_OK)
        st = clred_dimage_download_into(dst, out);
    if (st == CLRED_OK && img->header) {
        out->header = clred_header_copy(clred_dimage_header_const(dst));
        if (!out->header)
            st = clred_fail(CLRED_ERR_MEMORY, "out of memory copying a header");
    }
    clred_dimage_free(dst);
    if (st != CLRED_OK)
        clred_image_free(out);
    return st;
}

clred_status clred_grid_for(const clred_transform *to_ref, size_t n, size_t width, size_t height, clred_grid grid,
                            clred_grid_geometry *geometry)
{
    memset(geometry, 0, sizeof *geometry);
    geometry->width = width;
    geometry->height = height;
    if (grid == CLRED_GRID_REFERENCE)
        return CLRED_OK;
    if (grid != CLRED_GRID_UNION)
        return clred_fail(CLRED_ERR_USAGE, "unknown output grid %d", (int)grid);
    /* The reference itself spans [-0.5, width - 0.5) x [-0.5, height - 0.5). */
    double x0 = -0.5, y0 = -0.5, x1 = (double)width - 0.5, y1 = (double)height - 0.5;
    for (size_t i = 0; i < n; i++) {
        const double *m = to_ref[i].m;
        for (int c = 0; c < 4; c++) {
            double x = c & 1 ? (double)width - 0.5 : -0.5, y = c & 2 ? (double)height - 0.5 : -0.5;
            double xr = m[0] * x + m[1] * y + m[2], yr = m[3] * x + m[4] * y + m[5];
            if (!isfinite(xr) || !isfinite(yr))
                return clred_fail(CLRED_ERR_USAGE, "frame %zu's transform is not finite", i);
            x0 = fmin(x0, xr), x1 = fmax(x1, xr), y0 = fmin(y0, yr), y1 = fmax(y1, yr);
        }
    }
    /* A whole-pixel offset keeps the reference's pixel centres on the grid;
     * the 1e-6 keeps a corner exactly on a pixel edge from adding a column. */
    geometry->ox = ceil(-0.5 - x0 - 1e-6);
    geometry->oy = ceil(-0.5 - y0 - 1e-6);
    double w = ceil(x1 + 0.5 + geometry->ox - 1e-6), h = ceil(y1 + 0.5 + geometry->oy - 1e-6);
    if (w > 65535.0 * 4 || h > 65535.0 * 4)
        return clred_fail(CLRED_ERR_USAGE, "the union of the frames is %.0f x %.0f px: transforms too far apart?", w, h);
    geometry->width = (size_t)w;
    geometry->height = (size_t)h;
    return CLRED_OK;
}

/* The grid of a set of frames and the resampling options that land on it. */
static clred_status grid_setup(const clred_transform *to_ref, size_t n, size_t width, size_t height, clred_grid grid,
                               const clred_resample_opts *ropts, clred_resample_opts *o, clred_grid_geometry *g)
{
    *o = ropts ? *ropts : clred_resample_defaults();
    CLRED_TRY(clred_grid_for(to_ref, n, width, height, grid, g));
    if (o->interp == CLRED_INTERP_FOURIER && grid != CLRED_GRID_REFERENCE)
        return clred_fail(CLRED_ERR_USAGE, "the Fourier interpolant resamples onto the reference grid only");
    o->out_width = g->width;
    o->out_height = g->height;
    return CLRED_OK;
}

/* A frame's transform onto the reference, moved onto the grid. */
static clred_transform onto_grid(const clred_transform *to_ref, const clred_grid_geometry *g)
{
    clred_transform t = *to_ref;
    t.m[2] += g->ox;
    t.m[5] += g->oy;
    return t;
}

clred_status clred_resample_onto_grid(clred_ctx *ctx, const clred_image *frames, size_t n,
                                      const clred_transform *to_ref, clred_grid grid, const clred_resample_opts *ropts,
                                      clred_image *aligned, clred_grid_geometry *geometry)
{
    if (n == 0)
        return clred_fail(CLRED_ERR_USAGE, "aligning needs at least one frame");
    clred_resample_opts o;
    clred_grid_geometry g;
    CLRED_TRY(grid_setup(to_ref, n, frames[0].width, frames[0].height, grid, ropts, &o, &g));
    clred_status st = CLRED_OK;
    size_t done = 0;
    for (; done < n && st == CLRED_OK; done++) {
        clred_transform t = onto_grid(&to_ref[done], &g);
        st = clred_resample(ctx, &frames[done], &t, &o, &aligned[done]);
    }
    if (st != CLRED_OK)
        for (size_t i = 0; i + 1 < done; i++)
            clred_image_free(&aligned[i]);
    if (st == CLRED_OK && geometry)
        *geometry = g;
    return st;
}

clred_status clred_resample_onto_grid_dev(clred_ctx *ctx, const clred_dimage *const *frames, size_t n,
                                          const clred_transform *to_ref, clred_grid grid,
                                          const clred_resample_opts *ropts, clred_dimage **aligned,
                                          clred_grid_geometry *geometry)
{
    if (n == 0 || !frames)
        return clred_fail(CLRED_ERR_USAGE, "aligning needs at least one frame");
    for (size_t i = 0; i < n; i++)
        if (!frames[i])
            return clred_fail(CLRED_ERR_USAGE, "aligning: frame %zu is missing", i);
    clred_resample_opts o;
    clred_grid_geometry g;
    CLRED_TRY(grid_setup(to_ref, n, frames[0]->width, frames[0]->height, grid, ropts, &o, &g));
    clred_status st = CLRED_OK;
    size_t done = 0;
    for (; done < n && st == CLRED_OK; done++) {
        clred_transform t = onto_grid(&to_ref[done], &g);
        aligned[done] = NULL;
        st = clred_resample_dev(ctx, frames[done], &t, &o, &aligned[done]);
    }
    if (st != CLRED_OK)
        for (size_t i = 0; i < done; i++) {
            clred_dimage_free(aligned[i]);
            aligned[i] = NULL;
        }
    if (st == CLRED_OK && geometry)
        *geometry = g;
    return st;
}

clred_status clred_align_images(clred_ctx *ctx, const clred_image *frames, size_t nframes, long ref_index,
                                const clred_phasecorr_opts *popts, const clred_resample_opts *ropts,
                                clred_image *aligned, clred_shift *shifts)
{
    clred_shift *s = shifts ? shifts : calloc(nframes ? nframes : 1, sizeof *s);
    clred_transform *t = calloc(nframes ? nframes : 1, sizeof *t);
    clred_status st = s && t ? CLRED_OK : clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu shifts", nframes);
    if (st == CLRED_OK)
        st = clred_measure_shifts(ctx, frames, nframes, ref_index, popts, s);
    /* img(x) = ref(x - d): moving it by -d lands it on the reference. */
    for (size_t i = 0; i < nframes && st == CLRED_OK; i++)
        t[i] = clred_transform_translation(-s[i].dx, -s[i].dy);
    clred_resample_opts o = ropts ? *ropts : clred_resample_defaults();
    o.out_width = o.out_height = 0;
    if (st == CLRED_OK)
        st = clred_resample_onto_grid(ctx, frames, nframes, t, CLRED_GRID_REFERENCE, &o, aligned, NULL);
    for (size_t i = 0; i < nframes && st == CLRED_OK; i++) {
        if (!aligned[i].header)
            continue;
        char text[160];
        snprintf(text, sizeof text, "clred register: shifted by dx=%.4f dy=%.4f (measured %+.4f %+.4f, PSR %.1f)",
                 -s[i].dx, -s[i].dy, s[i].dx, s[i].dy, s[i].psr);
        st = clred_header_add_history(aligned[i].header, text);
        if (st != CLRED_OK)
            for (size_t j = 0; j < nframes; j++)
                clred_image_free(&aligned[j]);
    }
    if (!shifts)
        free(s);
    free(t);
    return st;
}
