/* Translation by phase correlation: apodised, padded frames through the FFT
 * layer on the device, the cross-power spectrum, the integer peak of its
 * inverse, then sub-pixel refinement by the upsampled DFT of the cross-power
 * spectrum around the peak (Guizar-Sicairos, Thurman & Fienup 2008) for a
 * small neighbourhood at the final step, started from a parabola through the
 * integer peak's neighbours: its large sum on the device, the small one on
 * the host in double. The integer peak and the
 * peak-to-sidelobe ratio are reduced on the device (kernels/fft_util.cl):
 * per frame only the peak, the sidelobe sums and the refinement's sums come
 * back. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fft.h"

#define TWO_PI 6.283185307179586476925286766559

clred_phasecorr_opts clred_phasecorr_defaults(void)
{
    clred_phasecorr_opts o;
    memset(&o, 0, sizeof o);
    o.backend = CLRED_FFT_DEFAULT;
    o.window = CLRED_WINDOW_TUKEY;
    o.tukey_alpha = 0.25;
    o.precision = 0.01;
    o.phase_only = 0;
    /* Saturated pixels are used as they are: their flat tops still sit on the
     * stars, while filling them carves pixel-aligned holes whose edges pull
     * the peak towards whole pixels (0.09 px RMS on the simulator's nights
     * against 0.009 px). */
    o.ignore_bits = CLRED_MASK_UNUSABLE & ~CLRED_MASK_SATURATED;
    return o;
}

/* The state of one measurement series: the region, the padded FFT size, the
 * plan and the device buffers, and the reference spectrum. */
typedef struct {
    clred_ctx *ctx;
    clred_phasecorr_opts opts;
    size_t width, height;         /* of the frames */
    size_t x0, y0, w, h;          /* region used */
    size_t nx, ny, ncx;           /* padded FFT size, bins per row */
    clred_fft_plan *plan;
    cl_mem no_mask;               /* stands for the mask of frames without one */
    cl_mem spec, ref;             /* work spectrum, reference spectrum */
    cl_mem cross;                 /* the cross-power spectrum, kept through the inverse FFT */
    cl_mem twiddle, cols;         /* the upsampled DFT's row factors and first-stage sums */
    cl_mem win_x, win_y;          /* the window along each axis of the region */
    size_t acc_size;              /* bytes of the device's acc_t */
    cl_mem row_val, row_x, row_sums; /* per surface row: highest value, its x, sums */
    cl_mem peak;                  /* PEAK_WORDS: see corr_peak_final */
} pc_state;

/* corr_peak_final's result: the peak's value bits and index, two acc_t
 * sums from byte 8, the 3 x 3 neighbourhood's floats from byte 24. */
#define PEAK_WORDS 16

/* Upsampled-DFT grids have at most UPS_MAX points a side: +-1 step of a
 * tenth of the previous step is 21, padded to 24 for the kernel. */
#define UPS_MAX 32

static void pc_release(pc_state *s)
{
    clred_release(&s->no_mask);
    clred_release(&s->spec);
    clred_release(&s->ref);
    clred_release(&s->cross);
    clred_release(&s->twiddle);
    clred_release(&s->cols);
    clred_release(&s->win_x);
    clred_release(&s->win_y);
    clred_release(&s->row_val);
    clred_release(&s->row_x);
    clred_release(&s->row_sums);
    clred_release(&s->peak);
    memset(s, 0, sizeof *s);
}

/* The level subtracted before apodisation and given to unusable pixels: the
 * median of the region's usable pixels, from at most FILL_SAMPLES of them on
 * a regular stride. It only has to remove the sky; an exact median of a
 * 2048^2 frame would cost more than the FFTs. */
#define FILL_SAMPLES 262144

static clred_status region_median(const pc_state *s, const clred_dimage *img, float *median)
{
    size_t npix = s->w * s->h, stride = npix > FILL_SAMPLES ? npix / FILL_SAMPLES : 1;
    float *v;
    size_t n;
    CLRED_TRY(clred_dimage_samples(img, s->x0, s->y0, s->w, s->h, stride, s->opts.ignore_bits, &v, &n));
    if (n == 0) {
        free(v);
        return clred_fail(CLRED_ERR_INPUT, "phase correlation: every pixel of the %zu x %zu region at (%zu, %zu) is NaN or masked",
                          s->w, s->h, s->x0, s->y0);
    }
    *median = (float)clred_median_inplace(v, n);
    free(v);
    return CLRED_OK;
}

/* The window along one axis of n samples into a new buffer. */
static clred_status window_table(clred_ctx *ctx, size_t n, int kind, float alpha, cl_mem *out)
{
    CLRED_TRY(clred_buffer(ctx, CL_MEM_READ_WRITE, n * sizeof(cl_float), NULL, out, "window table"));
    cl_kernel k;
    int in = (int)n;
    CLRED_TRY(clred_kernel(ctx, "fft_util", NULL, "window_table", &k));
    CLRED_TRY(clred_args(k, "window_table", CLRED_ARG(*out), CLRED_ARG(in), CLRED_ARG(kind), CLRED_ARG(alpha), (size_t)0));
    return clred_run_tiled(ctx, k, "window_table", 1, &n);
}

/* The region's window tables, once per series: per pixel, the window is
 * then a product of two table entries instead of two cosines. */
static clred_status window_tables(pc_state *s)
{
    if (s->opts.window == CLRED_WINDOW_NONE)
        return CLRED_OK;
    float alpha = (float)s->opts.tukey_alpha;
    CLRED_TRY(window_table(s->ctx, s->w, (int)s->opts.window, alpha, &s->win_x));
    return window_table(s->ctx, s->h, (int)s->opts.window, alpha, &s->win_y);
}

static clred_status pc_init(pc_state *s, clred_ctx *ctx, size_t width, size_t height, const clred_phasecorr_opts *opts)
{
    memset(s, 0, sizeof *s);
    s->ctx = ctx;
    s->opts = *opts;
    s->width = width;
    s->height = height;
    if (opts->precision <= 0.0 || !isfinite(opts->precision))
        return clred_fail(CLRED_ERR_USAGE, "phase correlation precision must be > 0 px, got %g", opts->precision);
    if (opts->window == CLRED_WINDOW_TUKEY && !(opts->tukey_alpha >= 0.0 && opts->tukey_alpha <= 1.0))
        return clred_fail(CLRED_ERR_USAGE, "Tukey window alpha must be in [0, 1], got %g", opts->tukey_alpha);
    if (opts->box_size > 0) {
        double half = 0.5 * (double)opts->box_size;
        double bx0 = floor(opts->box_x - half + 0.5), by0 = floor(opts->box_y - half + 0.5);
        double bx1 = bx0 + (double)opts->box_size, by1 = by0 + (double)opts->box_size;
        bx0 = fmax(bx0, 0.0);
        by0 = fmax(by0, 0.0);
        bx1 = fmin(bx1, (double)width);
        by1 = fmin(by1, (double)height);
        if (!(bx1 - bx0 >= 4 && by1 - by0 >= 4))
            return clred_fail(CLRED_ERR_USAGE, "phase correlation box of %zu px at (%g, %g) lies outside the %zu x %zu frame",
                              opts->box_size, opts->box_x, opts->box_y, width, height);
        s->x0 = (size_t)bx0;
        s->y0 = (size_t)by0;
        s->w = (size_t)(bx1 - bx0);
        s->h = (size_t)(by1 - by0);
    } else if (opts->x1 > 0 || opts->y1 > 0) {
        if (opts->x1 > width || opts->y1 > height || opts->x0 + 4 > opts->x1 || opts->y0 + 4 > opts->y1)
            return clred_fail(CLRED_ERR_USAGE,
                              "phase correlation region [%zu:%zu, %zu:%zu) is empty, under 4 px or outside the %zu x %zu frame",
                              opts->x0, opts->x1, opts->y0, opts->y1, width, height);
        s->x0 = opts->x0;
        s->y0 = opts->y0;
        s->w = opts->x1 - opts->x0;
        s->h = opts->y1 - opts->y0;
    } else {
        if (width < 4 || height < 4)
            return clred_fail(CLRED_ERR_USAGE, "phase correlation needs frames of at least 4 x 4 px, got %zu x %zu", width,
                              height);
        s->w = width;
        s->h = height;
    }
    s->nx = clred_fft_good_size(s->w);
    s->ny = clred_fft_good_size(s->h);
    s->ncx = s->nx / 2 + 1;
    /* The peak reduction indexes the surface with 32-bit pixel numbers. */
    if (!s->nx || !s->ny || (uint64_t)s->nx * s->ny > 0xffffffffu - 65536u)
        return clred_fail(CLRED_ERR_USAGE, "phase correlation: a %zu x %zu region is too large; use a box or region",
                          s->w, s->h);
    size_t bytes = clred_fft_bytes(s->nx, s->ny, 1);
    clred_status st = clred_fft_plan_cached(ctx, opts->backend, s->nx, s->ny, 1, &s->plan);
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_READ_ONLY, sizeof(uint16_t), NULL, &s->no_mask, "phase correlation mask");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_READ_WRITE, bytes, NULL, &s->spec, "phase correlation spectrum");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_READ_WRITE, bytes, NULL, &s->ref, "phase correlation reference spectrum");
    s->acc_size = ctx->use_double ? sizeof(double) : sizeof(float);
    if (st == CLRED_OK && opts->precision < 1.0)
        st = clred_buffer(ctx, CL_MEM_READ_WRITE, bytes, NULL, &s->cross, "cross-power spectrum");
    if (st == CLRED_OK && opts->precision < 1.0)
        st = clred_buffer(ctx, CL_MEM_READ_ONLY, s->ny * UPS_MAX * 2 * sizeof(float), NULL, &s->twiddle,
                          "upsampled DFT factors");
    if (st == CLRED_OK && opts->precision < 1.0)
        st = clred_buffer(ctx, CL_MEM_WRITE_ONLY, UPS_MAX * s->ncx * 2 * s->acc_size, NULL, &s->cols,
                          "upsampled DFT sums");
    if (st == CLRED_OK)
        st = window_tables(s);
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_READ_WRITE, s->ny * sizeof(cl_float), NULL, &s->row_val, "peak rows");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_READ_WRITE, s->ny * sizeof(cl_int), NULL, &s->row_x, "peak rows");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_READ_WRITE, s->ny * 2 * s->acc_size, NULL, &s->row_sums, "sidelobe sums");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_READ_WRITE, PEAK_WORDS * sizeof(cl_uint), NULL, &s->peak, "correlation peak");
    if (st != CLRED_OK)
        pc_release(s);
    return st;
}

/* The apodised, median-filled spectrum of img's region into dst. */
static clred_status pc_spectrum(pc_state *s, const clred_dimage *img, cl_mem dst)
{
    if (clred_dimage_width(img) != s->width || clred_dimage_height(img) != s->height)
        return clred_fail(CLRED_ERR_INPUT, "phase correlation: frame of %zu x %zu differs from the reference's %zu x %zu",
                          clred_dimage_width(img), clred_dimage_height(img), s->width, s->height);
    float fill;
    CLRED_TRY(region_median(s, img, &fill));
    clred_ctx *ctx = s->ctx;
    int has_mask = clred_dimage_mask(img) != NULL;
    cl_mem src = clred_dimage_sci(img), mask = has_mask ? clred_dimage_mask(img) : s->no_mask;
    cl_kernel k;
    CLRED_TRY(clred_kernel(ctx, "fft_util", NULL, "pad_apodise", &k));
    cl_ushort ignore = s->opts.ignore_bits;
    int src_width = (int)s->width, x0 = (int)s->x0, y0 = (int)s->y0, w = (int)s->w, h = (int)s->h;
    cl_uint offset = 0;
    int pitch = (int)clred_fft_pitch(s->nx), nx = (int)s->nx, ny = (int)s->ny, use_window = s->win_x != NULL;
    cl_mem wx = use_window ? s->win_x : dst, wy = use_window ? s->win_y : dst; /* not read without a window */
    CLRED_TRY(clred_args(k, "pad_apodise", CLRED_ARG(src), CLRED_ARG(mask), CLRED_ARG(has_mask), CLRED_ARG(ignore),
                         CLRED_ARG(src_width), CLRED_ARG(x0), CLRED_ARG(y0), CLRED_ARG(w), CLRED_ARG(h), CLRED_ARG(dst),
                         CLRED_ARG(offset), CLRED_ARG(pitch), CLRED_ARG(nx), CLRED_ARG(ny), CLRED_ARG(fill),
                         CLRED_ARG(wx), CLRED_ARG(wy), CLRED_ARG(use_window), (size_t)0));
    size_t global[2] = {(size_t)pitch, s->ny};
    CLRED_TRY(clred_run_tiled(ctx, k, "pad_apodise", 2, global));
    return clred_fft_forward(ctx, s->plan, dst);
}

/* e^{2 pi i f t / n} with the phase reduced to one turn in double. */
static void unit_phasor(double f, double t, double n, double *re, double *im)
{
    double turns = f * t / n;
    turns -= floor(turns);
    *re = cos(TWO_PI * turns);
    *im = sin(TWO_PI * turns);
}

/* Real part of the upsampled cross-correlation on a P x Q grid of positions
 * (xs, ys) from the half spectrum R in s->cross:
 * c(x, y) = Re sum_ky sum_kx w_kx R[ky][kx] e^{2 pi i (kx x / nx + fy y / ny)} / (nx ny),
 * where columns kx > 0 (and not Nyquist) stand for their conjugate twins too
 * (w_kx = 2). The sum over ky, ny * ncx * Q terms, runs on the device; the
 * one over kx, ncx * P * Q terms, here in double. */
static clred_status upsampled_dft(const pc_state *s, const double *xs, size_t np, const double *ys, size_t nq,
                                  double *out)
{
    size_t ncx = s->ncx, ny = s->ny, nx = s->nx;
    size_t nrows = (nq + 3) / 4 * 4; /* the kernel's rows per work-item; the padding rows have zero factors */
    float *tw = calloc(ny * nrows * 2, sizeof *tw);
    void *cols = malloc(nrows * ncx * 2 * s->acc_size);
    double *er = malloc(ncx * np * sizeof *er), *ei = malloc(ncx * np * sizeof *ei);
    clred_status st = CLRED_OK;
    if (!tw || !cols || !er || !ei)
        st = clred_fail(CLRED_ERR_MEMORY, "out of memory for the upsampled DFT of a %zu x %zu spectrum", nx, ny);
    for (size_t ky = 0; ky < ny && st == CLRED_OK; ky++) {
        double fy = ky <= ny / 2 ? (double)ky : (double)ky - (double)ny;
        for (size_t j = 0; j < nq; j++) {
            double re, im;
            unit_phasor(fy, ys[j], (double)ny, &re, &im);
            tw[2 * (ky * nrows + j)] = (float)re;
            tw[2 * (ky * nrows + j) + 1] = (float)im;
        }
    }
    cl_kernel k = NULL;
    if (st == CLRED_OK)
        st = clred_upload(s->ctx, s->twiddle, 0, ny * nrows * 2 * sizeof *tw, tw);
    if (st == CLRED_OK)
        st = clred_kernel(s->ctx, "fft_util", NULL, "upsample_columns", &k);
    int incx = (int)ncx, iny = (int)ny, inrows = (int)nrows;
    if (st == CLRED_OK)
        st = clred_args(k, "upsample_columns", CLRED_ARG(s->cross), CLRED_ARG(incx), CLRED_ARG(iny),
                        CLRED_ARG(s->twiddle), CLRED_ARG(inrows), CLRED_ARG(s->cols), (size_t)0);
    size_t global[2] = {(ncx + 7) / 8, nrows / 4};
    if (st == CLRED_OK)
        st = clred_run_tiled(s->ctx, k, "upsample_columns", 2, global);
    if (st == CLRED_OK)
        st = clred_download(s->ctx, s->cols, 0, nrows * ncx * 2 * s->acc_size, cols);
    if (st == CLRED_OK) {
        for (size_t kx = 0; kx < ncx; kx++) {
            double wgt = (kx == 0 || (nx % 2 == 0 && kx == nx / 2)) ? 1.0 : 2.0;
            for (size_t i = 0; i < np; i++) {
                unit_phasor((double)kx, xs[i], (double)nx, &er[kx * np + i], &ei[kx * np + i]);
                er[kx * np + i] *= wgt;
                ei[kx * np + i] *= wgt;
            }
        }
        const double *cd = cols;
        const float *cf = cols;
        for (size_t j = 0; j < nq; j++)
            for (size_t i = 0; i < np; i++) {
                double acc = 0.0;
                for (size_t kx = 0; kx < ncx; kx++) {
                    size_t o = 2 * (j * ncx + kx);
                    double cr = s->acc_size == sizeof(double) ? cd[o] : cf[o];
                    double ci = s->acc_size == sizeof(double) ? cd[o + 1] : cf[o + 1];
                    acc += cr * er[kx * np + i] - ci * ei[kx * np + i];
                }
                out[j * np + i] = acc / ((double)nx * (double)ny);
            }
    }
    free(tw);
    free(cols);
    free(er);
    free(ei);
    return st;
}

/* The highest point of the upsampled surface on the (2 half + 1)^2 grid of
 * the given step centred on (cx, cy); *edge: it lies on the grid's border,
 * so the surface may rise beyond it. */
static clred_status grid_best(const pc_state *s, double cx, double cy, double step, size_t half, double *px,
                              double *py, double *peak, int *edge)
{
    double xs[UPS_MAX], ys[UPS_MAX], grid[UPS_MAX * UPS_MAX];
    size_t n = 2 * half + 1;
    for (size_t i = 0; i < n; i++) {
        xs[i] = cx + ((double)i - (double)half) * step;
        ys[i] = cy + ((double)i - (double)half) * step;
    }
    CLRED_TRY(upsampled_dft(s, xs, n, ys, n, grid));
    size_t best = 0;
    for (size_t i = 1; i < n * n; i++)
        if (grid[i] > grid[best])
            best = i;
    size_t bi = best % n, bj = best / n;
    *px = xs[bi];
    *py = ys[bj];
    *peak = grid[best];
    *edge = bi == 0 || bi == n - 1 || bj == 0 || bj == n - 1;
    return CLRED_OK;
}

/* Zooms on the peak from a grid of +-half px at step: then +-1 step at a
 * tenth of the step (the grid's maximum lies within half a step of the true
 * one), until the step reaches the requested precision. */
static clred_status zoom(const pc_state *s, double step, double half, double *px, double *py, double *peak)
{
    for (;;) {
        size_t n = (size_t)floor(2.0 * half / step + 0.5) + 1;
        int edge;
        CLRED_TRY(grid_best(s, *px, *py, step, n / 2, px, py, peak, &edge));
        if (step <= s->opts.precision * 1.001)
            return CLRED_OK;
        half = step;
        step = fmax(step / 10.0, s->opts.precision);
    }
}

/* The vertex of the parabola through (-1, l), (0, c), (1, r), within half a
 * pixel; 0 where the three do not make a peak. */
static double parabola_vertex(double l, double c, double r)
{
    double den = l - 2.0 * c + r;
    if (!(den < 0.0))
        return 0.0;
    return fmax(-0.5, fmin(0.5, 0.5 * (l - r) / den));
}

/* Steps of the fine grid either side of its centre, and how often it may
 * move before the refinement falls back to zooming from the integer peak. */
#define FINE_HALF 10
#define FINE_MOVES 4

/* The sub-pixel peak near the integer peak (*px, *py) whose 3 x 3
 * neighbourhood is nb. A parabola through the neighbourhood puts the peak
 * within a few hundredths of a pixel for any star wider than a pixel, so the
 * upsampled DFT starts at the fine step (0.01 px, or the precision if
 * coarser) on a +-0.1 px grid around it, one read of the spectrum instead of
 * a coarse 0.1 px stage first; where the grid's maximum lies on its border
 * the grid moves there and is measured again, and a peak it cannot hold
 * falls back to zooming from +-0.6 px at 0.1 px. Either way the result is the
 * highest point on the same lattice of steps from the integer peak. */
static clred_status refine(const pc_state *s, const float nb[9], double *px, double *py, double *peak)
{
    double prec = s->opts.precision;
    if (prec * 1.001 >= 0.1)
        return zoom(s, 0.1, 0.6, px, py, peak);
    double step = fmax(prec, 0.01);
    double cx = *px + step * floor(parabola_vertex(nb[3], nb[4], nb[5]) / step + 0.5);
    double cy = *py + step * floor(parabola_vertex(nb[1], nb[4], nb[7]) / step + 0.5);
    for (int moves = 0;; moves++) {
        double bx, by;
        int edge;
        CLRED_TRY(grid_best(s, cx, cy, step, FINE_HALF, &bx, &by, peak, &edge));
        if (!edge) {
            *px = bx;
            *py = by;
            break;
        }
        if (moves == FINE_MOVES)
            return zoom(s, 0.1, 0.6, px, py, peak);
        cx = bx;
        cy = by;
    }
    if (step <= prec * 1.001)
        return CLRED_OK;
    return zoom(s, fmax(step / 10.0, prec), step, px, py, peak);
}

/* The integer peak of the correlation surface in s->spec (the first highest
 * value in raster order within max_shift) and the sums of its sidelobes,
 * reduced on the device in one read of the surface; one download of a few
 * numbers. *bx < 0: no peak. */
static clred_status surface_peak(pc_state *s, long *bx, long *by, float *best, float nb[9], double *sum,
                                 double *sum2, size_t *count)
{
    clred_ctx *ctx = s->ctx;
    cl_int pitch = (cl_int)clred_fft_pitch(s->nx), nx = (cl_int)s->nx, ny = (cl_int)s->ny;
    /* For a whole shift, |shift| > max_shift is |shift| > floor(max_shift). */
    double maxs = s->opts.max_shift;
    cl_int lim = maxs > 0 ? (cl_int)fmin(floor(maxs), 2147483647.0) : -1;
    cl_kernel k;
    CLRED_TRY(clred_kernel(ctx, "fft_util", NULL, "corr_scan_rows", &k));
    CLRED_TRY(clred_args(k, "corr_scan_rows", CLRED_ARG(s->spec), CLRED_ARG(pitch), CLRED_ARG(nx), CLRED_ARG(ny),
                         CLRED_ARG(lim), CLRED_ARG(s->row_val), CLRED_ARG(s->row_x), CLRED_ARG(s->row_sums),
                         (size_t)0));
    size_t rows = s->ny;
    CLRED_TRY(clred_run_tiled(ctx, k, "corr_scan_rows", 1, &rows));
    CLRED_TRY(clred_kernel(ctx, "fft_util", NULL, "corr_peak_final", &k));
    CLRED_TRY(clred_args(k, "corr_peak_final", CLRED_ARG(s->spec), CLRED_ARG(pitch), CLRED_ARG(nx), CLRED_ARG(ny),
                         CLRED_ARG(s->row_val), CLRED_ARG(s->row_x), CLRED_ARG(s->row_sums), CLRED_ARG(s->peak),
                         (size_t)0));
    size_t one = 1;
    CLRED_TRY(clred_run(ctx, k, "corr_peak_final", 1, &one, NULL));
    union {
        cl_uint u[PEAK_WORDS];
        double d[PEAK_WORDS / 2];
    } res;
    CLRED_TRY(clred_download(ctx, s->peak, 0, sizeof res, &res));
    memcpy(nb, &res.u[6], 9 * sizeof *nb);
    if (res.u[1] == 0xffffffffu) {
        *bx = *by = -1;
        return CLRED_OK;
    }
    memcpy(best, &res.u[0], sizeof *best);
    *bx = (long)(res.u[1] % s->nx);
    *by = (long)(res.u[1] / s->nx);
    if (s->acc_size == sizeof(double)) {
        *sum = res.d[1];
        *sum2 = res.d[2];
    } else {
        float f[2];
        memcpy(f, &res.u[2], sizeof f);
        *sum = f[0];
        *sum2 = f[1];
    }
    /* The 11 x 11 box of cyclic neighbours holds min(n, 11) values per axis. */
    *count = s->nx * s->ny - (s->nx < 11 ? s->nx : 11) * (s->ny < 11 ? s->ny : 11);
    return CLRED_OK;
}

/* Cross-power of the frame's spectrum (in s->spec) with the reference, the
 * correlation surface, its integer peak, the PSR and the sub-pixel peak. */
static clred_status pc_correlate(pc_state *s, clred_shift *out)
{
    clred_ctx *ctx = s->ctx;
    cl_kernel k;
    CLRED_TRY(clred_kernel(ctx, "fft_util", NULL, "cross_power", &k));
    cl_uint n = (cl_uint)(s->ncx * s->ny);
    int phase_only = s->opts.phase_only, has_keep = s->cross != NULL;
    cl_mem keep = has_keep ? s->cross : s->ref; /* any buffer: not written without has_keep */
    CLRED_TRY(clred_args(k, "cross_power", CLRED_ARG(s->spec), CLRED_ARG(s->ref), CLRED_ARG(n), CLRED_ARG(n),
                         CLRED_ARG(phase_only), CLRED_ARG(keep), CLRED_ARG(has_keep), (size_t)0));
    size_t global = n;
    CLRED_TRY(clred_run_tiled(ctx, k, "cross_power", 1, &global));
    CLRED_TRY(clred_fft_inverse(ctx, s->plan, s->spec));

    long bx, by;
    float best = -INFINITY, nb[9];
    double sum = 0.0, sum2 = 0.0;
    size_t count = 0;
    CLRED_TRY(surface_peak(s, &bx, &by, &best, nb, &sum, &sum2, &count));
    /* Peak-to-sidelobe ratio: the surface outside 11 x 11 px (cyclic) around the peak. */
    double mean = count ? sum / (double)count : 0.0;
    double var = count > 1 ? (sum2 - sum * mean) / (double)(count - 1) : 0.0;
    /* A flat frame (all zero, or constant) correlates to a flat surface:
     * its "peak" is not above the sidelobes and its shift means nothing. */
    if (bx < 0 || !isfinite(best) || !((double)best > mean))
        return s->opts.max_shift > 0
                   ? clred_fail(CLRED_ERR_INPUT, "phase correlation found no peak within %g px (flat or empty frame?)",
                                s->opts.max_shift)
                   : clred_fail(CLRED_ERR_INPUT, "phase correlation found no peak (flat, empty or non-finite frame?)");
    out->psr = var > 0 ? ((double)best - mean) / sqrt(var) : INFINITY;
    size_t nx = s->nx, ny = s->ny;
    double px = bx <= (long)nx / 2 ? (double)bx : (double)bx - (double)nx;
    double py = by <= (long)ny / 2 ? (double)by : (double)by - (double)ny;
    out->peak = best;
    if (s->opts.precision < 1.0)
        CLRED_TRY(refine(s, nb, &px, &py, &out->peak));
    out->dx = px;
    out->dy = py;
    return CLRED_OK;
}

/* ---- the device entry points */

struct clred_phasecorr_ref {
    pc_state s;
};

static clred_status check_dimage(const clred_dimage *img, const char *what)
{
    if (!img)
        return clred_fail(CLRED_ERR_USAGE, "phase correlation: no %s image", what);
    return CLRED_OK;
}

clred_status clred_phasecorr_ref_create(clred_ctx *ctx, const clred_dimage *ref, const clred_phasecorr_opts *opts,
                                        clred_phasecorr_ref **out)
{
    clred_phasecorr_opts defaults = clred_phasecorr_defaults();
    if (!opts)
        opts = &defaults;
    *out = NULL;
    CLRED_TRY(check_dimage(ref, "reference"));
    clred_phasecorr_ref *r = calloc(1, sizeof *r);
    if (!r)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for a phase correlation reference");
    clred_status st = pc_init(&r->s, ctx, clred_dimage_width(ref), clred_dimage_height(ref), opts);
    if (st != CLRED_OK) {
        free(r);
        return st;
    }
    st = pc_spectrum(&r->s, ref, r->s.ref);
    if (st != CLRED_OK) {
        clred_phasecorr_ref_free(r);
        return st;
    }
    *out = r;
    return CLRED_OK;
}

clred_status clred_phasecorr_ref_measure(clred_phasecorr_ref *ref, const clred_dimage *img, clred_shift *shift)
{
    memset(shift, 0, sizeof *shift);
    CLRED_TRY(check_dimage(img, "moving"));
    CLRED_TRY(pc_spectrum(&ref->s, img, ref->s.spec));
    return pc_correlate(&ref->s, shift);
}

void clred_phasecorr_ref_free(clred_phasecorr_ref *ref)
{
    if (!ref)
        return;
    pc_release(&ref->s);
    free(ref);
}

clred_status clred_measure_shift_dev(clred_ctx *ctx, const clred_dimage *ref, const clred_dimage *img,
                                     const clred_phasecorr_opts *opts, clred_shift *shift)
{
    memset(shift, 0, sizeof *shift);
    CLRED_TRY(check_dimage(img, "moving"));
    clred_phasecorr_ref *r;
    CLRED_TRY(clred_phasecorr_ref_create(ctx, ref, opts, &r));
    clred_status st = clred_phasecorr_ref_measure(r, img, shift);
    clred_phasecorr_ref_free(r);
    return st;
}

/* The pixel-wise median of the usable values of a host stack (NaN where
 * none), by the device combine. */
static clred_status host_stack_median(clred_ctx *ctx, const clred_image *frames, size_t n, uint16_t ignore,
                                      clred_image *out)
{
    clred_combine_opts o = clred_combine_defaults();
    o.method = CLRED_COMBINE_MEDIAN;
    o.ignore_bits = ignore;
    clred_combine_result r;
    CLRED_TRY(clred_combine_images(ctx, frames, n, &o, &r));
    *out = r.image;
    memset(&r.image, 0, sizeof r.image);
    clred_combine_result_free(&r);
    return CLRED_OK;
}

/* The same median of a device stack, as a new device image.
 * TODO(combine_dev): until clred_combine_dev lands, the frames are
 * downloaded and combined by clred_combine_images (the same values). */
static clred_status stack_median(clred_ctx *ctx, const clred_dimage *const *frames, size_t n, uint16_t ignore,
                                 clred_dimage **out)
{
    clred_image *host = calloc(n, sizeof *host), median;
    if (!host)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu frames", n);
    clred_status st = CLRED_OK;
    for (size_t i = 0; i < n && st == CLRED_OK; i++)
        st = clred_dimage_download(frames[i], &host[i]);
    if (st == CLRED_OK)
        st = host_stack_median(ctx, host, n, ignore, &median);
    for (size_t i = 0; i < n; i++)
        clred_image_free(&host[i]);
    free(host);
    CLRED_TRY(st);
    st = clred_dimage_upload(ctx, &median, out);
    clred_image_free(&median);
    return st;
}
/* A frame's failure in a loop over a stack: the message says which frame
 * ("frame N: ..."), so that a caller can name its file. */
static clred_status frame_failed(clred_status st, size_t i)
{
    if (st == CLRED_OK)
        return st;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", clred_last_error());
    return clred_fail(st, "frame %zu: %s", i, msg);
}


/* aligned_median on device images (see there). */
static clred_status aligned_median_dev(clred_ctx *ctx, const clred_dimage *const *frames, size_t n,
                                       const clred_phasecorr_opts *opts, clred_dimage **median, size_t *failed)
{
    clred_shift *first = calloc(n, sizeof *first);
    clred_transform *t = calloc(n, sizeof *t);
    clred_dimage **aligned = calloc(n, sizeof *aligned);
    clred_status st = first && t && aligned ? CLRED_OK
                                            : clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu frames", n);
    clred_phasecorr_ref *r = NULL;
    if (st == CLRED_OK)
        st = clred_phasecorr_ref_create(ctx, frames[0], opts, &r);
    for (size_t i = 0; i < n && st == CLRED_OK; i++)
        if ((st = clred_phasecorr_ref_measure(r, frames[i], &first[i])) != CLRED_OK)
            *failed = i;
    clred_phasecorr_ref_free(r);
    for (size_t i = 0; i < n && st == CLRED_OK; i++)
        t[i] = clred_transform_translation(-first[i].dx, -first[i].dy);
    clred_resample_opts ro = clred_resample_defaults();
    ro.interp = CLRED_INTERP_BICUBIC;
    ro.ignore_bits = opts->ignore_bits;
    if (st == CLRED_OK)
        st = clred_resample_onto_grid_dev(ctx, frames, n, t, CLRED_GRID_REFERENCE, &ro, aligned, NULL);
    if (st == CLRED_OK)
        st = stack_median(ctx, (const clred_dimage *const *)aligned, n, opts->ignore_bits | CLRED_MASK_NO_DATA,
                          median);
    for (size_t i = 0; aligned && i < n; i++)
        clred_dimage_free(aligned[i]);
    free(aligned);
    free(t);
    free(first);
    return st;
}

static clred_status check_stack(const clred_dimage *const *frames, size_t nframes, long ref_index)
{
    if (nframes == 0 || !frames)
        return clred_fail(CLRED_ERR_USAGE, "measuring shifts needs at least one frame");
    if (ref_index >= (long)nframes)
        return clred_fail(CLRED_ERR_USAGE, "reference frame %ld does not exist (%zu frames)", ref_index, nframes);
    for (size_t i = 0; i < nframes; i++) {
        CLRED_TRY(check_dimage(frames[i], "a"));
        size_t w = clred_dimage_width(frames[i]), h = clred_dimage_height(frames[i]);
        size_t w0 = clred_dimage_width(frames[0]), h0 = clred_dimage_height(frames[0]);
        if (w != w0 || h != h0)
            return clred_fail(CLRED_ERR_INPUT, "frame %zu is %zu x %zu, frame 0 is %zu x %zu", i, w, h, w0, h0);
    }
    return CLRED_OK;
}

clred_status clred_measure_shifts_which(clred_ctx *ctx, const clred_dimage *const *frames, size_t nframes,
                                        long ref_index, const clred_phasecorr_opts *opts, clred_shift *shifts,
                                        size_t *failed)
{
    clred_phasecorr_opts defaults = clred_phasecorr_defaults();
    if (!opts)
        opts = &defaults;
    *failed = nframes;
    CLRED_TRY(check_stack(frames, nframes, ref_index));
    clred_dimage *median = NULL;
    if (ref_index < 0)
        CLRED_TRY(aligned_median_dev(ctx, frames, nframes, opts, &median, failed));
    clred_phasecorr_ref *r;
    clred_status st = clred_phasecorr_ref_create(ctx, median ? median : frames[ref_index], opts, &r);
    clred_dimage_free(median);
    CLRED_TRY(st);
    for (size_t i = 0; i < nframes && st == CLRED_OK; i++)
        if ((st = clred_phasecorr_ref_measure(r, frames[i], &shifts[i])) != CLRED_OK)
            *failed = i;
    clred_phasecorr_ref_free(r);
    return st;
}

clred_status clred_measure_shifts_dev(clred_ctx *ctx, const clred_dimage *const *frames, size_t nframes,
                                      long ref_index, const clred_phasecorr_opts *opts, clred_shift *shifts)
{
    size_t failed;
    clred_status st = clred_measure_shifts_which(ctx, frames, nframes, ref_index, opts, shifts, &failed);
    return failed < nframes ? frame_failed(st, failed) : st;
}

/* ---- host wrappers: one frame borrowed (or uploaded) at a time */

static clred_status check_image(const clred_image *img, const char *what)
{
    if (!img || !img->sci || img->width == 0 || img->height == 0)
        return clred_fail(CLRED_ERR_USAGE, "phase correlation: %s image is empty", what);
    return CLRED_OK;
}

static clred_status ref_borrowed(clred_ctx *ctx, const clred_image *img, const clred_phasecorr_opts *opts,
                                 clred_phasecorr_ref **r)
{
    clred_dimage *d;
    CLRED_TRY(clred_dimage_borrow(ctx, img, &d));
    clred_status st = clred_phasecorr_ref_create(ctx, d, opts, r);
    clred_dimage_free(d);
    return st;
}

static clred_status measure_borrowed(clred_phasecorr_ref *r, clred_ctx *ctx, const clred_image *img,
                                     clred_shift *shift)
{
    memset(shift, 0, sizeof *shift);
    clred_dimage *d;
    CLRED_TRY(clred_dimage_borrow(ctx, img, &d));
    clred_status st = clred_phasecorr_ref_measure(r, d, shift);
    clred_dimage_free(d);
    return st;
}

clred_status clred_measure_shift(clred_ctx *ctx, const clred_image *ref, const clred_image *img,
                                 const clred_phasecorr_opts *opts, clred_shift *shift)
{
    memset(shift, 0, sizeof *shift);
    CLRED_TRY(check_image(ref, "reference"));
    CLRED_TRY(check_image(img, "moving"));
    clred_phasecorr_ref *r;
    CLRED_TRY(ref_borrowed(ctx, ref, opts, &r));
    clred_status st = measure_borrowed(r, ctx, img, shift);
    clred_phasecorr_ref_free(r);
    return st;
}

/* The median reference of a stack: the frames measured against frame 0,
 * shifted onto it and their median taken. The median of frames as they are
 * would smear every star along the drift (tens of pixels between the first
 * and last frame of a night) and bias every shift measured against it. */
static clred_status aligned_median(clred_ctx *ctx, const clred_image *frames, size_t n,
                                   const clred_phasecorr_opts *opts, clred_image *median)
{
    clred_shift *first = calloc(n, sizeof *first);
    clred_transform *t = calloc(n, sizeof *t);
    clred_image *aligned = calloc(n, sizeof *aligned);
    clred_status st = first && t && aligned ? CLRED_OK
                                            : clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu frames", n);
    clred_phasecorr_ref *r = NULL;
    if (st == CLRED_OK)
        st = ref_borrowed(ctx, &frames[0], opts, &r);
    for (size_t i = 0; i < n && st == CLRED_OK; i++)
        st = frame_failed(measure_borrowed(r, ctx, &frames[i], &first[i]), i);
    clred_phasecorr_ref_free(r);
    /* img(x) = ref(x - d): moving it by -d lands it on frame 0. */
    for (size_t i = 0; i < n && st == CLRED_OK; i++)
        t[i] = clred_transform_translation(-first[i].dx, -first[i].dy);
    clred_resample_opts ro = clred_resample_defaults();
    ro.interp = CLRED_INTERP_BICUBIC;
    ro.ignore_bits = opts->ignore_bits;
    if (st == CLRED_OK)
        st = clred_resample_onto_grid(ctx, frames, n, t, CLRED_GRID_REFERENCE, &ro, aligned, NULL);
    if (st == CLRED_OK)
        st = host_stack_median(ctx, aligned, n, opts->ignore_bits | CLRED_MASK_NO_DATA, median);
    for (size_t i = 0; aligned && i < n; i++)
        clred_image_free(&aligned[i]);
    free(aligned);
    free(t);
    free(first);
    return st;
}

clred_status clred_measure_shifts(clred_ctx *ctx, const clred_image *frames, size_t nframes, long ref_index,
                                  const clred_phasecorr_opts *opts, clred_shift *shifts)
{
    clred_phasecorr_opts defaults = clred_phasecorr_defaults();
    if (!opts)
        opts = &defaults;
    if (nframes == 0 || !frames)
        return clred_fail(CLRED_ERR_USAGE, "measuring shifts needs at least one frame");
    if (ref_index >= (long)nframes)
        return clred_fail(CLRED_ERR_USAGE, "reference frame %ld does not exist (%zu frames)", ref_index, nframes);
    for (size_t i = 0; i < nframes; i++) {
        CLRED_TRY(check_image(&frames[i], "a"));
        if (frames[i].width != frames[0].width || frames[i].height != frames[0].height)
            return clred_fail(CLRED_ERR_INPUT, "frame %zu is %zu x %zu, frame 0 is %zu x %zu", i, frames[i].width,
                              frames[i].height, frames[0].width, frames[0].height);
    }
    /* One frame on the device at a time, so that a stack larger than the
     * device's memory is measured too (the median combine bands it). */
    clred_image median;
    memset(&median, 0, sizeof median);
    const clred_image *ref = ref_index >= 0 ? &frames[ref_index] : NULL;
    if (!ref) {
        CLRED_TRY(aligned_median(ctx, frames, nframes, opts, &median));
        ref = &median;
    }
    clred_phasecorr_ref *r = NULL;
    clred_status st = ref_borrowed(ctx, ref, opts, &r);
    clred_image_free(&median);
    for (size_t i = 0; i < nframes && st == CLRED_OK; i++)
        st = frame_failed(measure_borrowed(r, ctx, &frames[i], &shifts[i]), i);
    clred_phasecorr_ref_free(r);
    return st;
}
