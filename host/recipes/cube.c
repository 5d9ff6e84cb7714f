/* Adaptive-optics cubes: dark subtraction, saturation counts, background
 * flatness, hot/cold pixels from the dark and from the cube's temporal
 * statistics, shift-and-add by peak, centroid or phase correlation, and the
 * plain stack beside it. The steps are the library's own (bad pixels, infill,
 * stats, background, phase correlation, resample, combine); what is new here
 * is the temporal-statistics kernel (kernels/cube.cl) and the star position
 * and FWHM measures on the host. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define CUBE_MAXN 127 /* as kernels/cube.cl */
#define TEMPORAL_MIN_FRAMES 5
#define NOISY_MIN_FRAMES 8
#define NOISY_FACTOR 3.0

clred_cube_opts clred_cube_defaults(void)
{
    clred_cube_opts o;
    memset(&o, 0, sizeof o);
    o.align = CLRED_ALIGN_PEAK;
    o.reference_median = 0;
    o.centroid_box = 15;
    o.interp = CLRED_INTERP_LANCZOS3;
    o.stack = CLRED_COMBINE_SUM;
    o.saturation = 0.0;
    o.saturation_margin = -1.0;
    o.hot_sigma = 5.0;
    o.cold_sigma = 5.0;
    o.temporal_badpix = 1;
    o.repair = 1;
    o.corner = 50;
    o.mesh = 4;
    o.flat_limit = 1.0;
    return o;
}

void clred_cube_result_free(clred_cube_result *r)
{
    if (!r)
        return;
    clred_image_free(&r->master);
    clred_image_free(&r->plain);
    free(r->frames);
    memset(r, 0, sizeof *r);
}

/* ------------------------------------------------------ temporal statistics */

clred_status clred_temporal_stats(clred_ctx *ctx, const clred_image *frames, size_t nframes, float *median, float *mad)
{
    if (!frames || nframes == 0 || !median || !mad)
        return clred_fail(CLRED_ERR_USAGE, "temporal stats: no frames given");
    size_t w = frames[0].width, h = frames[0].height;
    for (size_t f = 0; f < nframes; f++)
        if (!frames[f].sci || frames[f].width != w || frames[f].height != h)
            return clred_fail(CLRED_ERR_INPUT, "temporal stats: frame %zu is %zu x %zu, frame 0 is %zu x %zu", f,
                              frames[f].width, frames[f].height, w, h);
    size_t nuse = nframes < CUBE_MAXN ? nframes : CUBE_MAXN;
    /* rows per band: the band's stack and two outputs within a quarter of the budget and one allocation */
    uint64_t row_bytes = (uint64_t)w * sizeof(float) * (nuse + 2);
    uint64_t cap = clred_ctx_budget(ctx) / 4, max_alloc = clred_ctx_max_alloc(ctx);
    size_t rows = (size_t)(cap / row_bytes);
    if ((uint64_t)rows * w * sizeof(float) * nuse > max_alloc)
        rows = (size_t)(max_alloc / ((uint64_t)w * sizeof(float) * nuse));
    if (rows == 0)
        return clred_fail(CLRED_ERR_DEVICE, "temporal stats: one row of %zu frames x %zu px does not fit the device",
                          nuse, w);
    if (rows > h)
        rows = h;
    float *host = malloc(rows * w * nuse * sizeof *host);
    if (!host)
        return clred_fail(CLRED_ERR_MEMORY, "temporal stats: out of memory for %zu rows x %zu frames", rows, nuse);
    cl_mem stack = NULL, dmed = NULL, dmad = NULL;
    cl_kernel k;
    clred_status s = clred_kernel(ctx, "cube", NULL, "temporal_median_mad", &k);
    if (s == CLRED_OK)
        s = clred_buffer(ctx, CL_MEM_READ_ONLY, rows * w * nuse * sizeof(float), NULL, &stack, "temporal stack");
    if (s == CLRED_OK)
        s = clred_buffer(ctx, CL_MEM_WRITE_ONLY, rows * w * sizeof(float), NULL, &dmed, "temporal median");
    if (s == CLRED_OK)
        s = clred_buffer(ctx, CL_MEM_WRITE_ONLY, rows * w * sizeof(float), NULL, &dmad, "temporal MAD");
    for (size_t y0 = 0; s == CLRED_OK && y0 < h; y0 += rows) {
        size_t nb = h - y0 < rows ? h - y0 : rows, npix = nb * w;
        for (size_t j = 0; j < nuse; j++) {
            /* evenly spaced frames when there are more than the kernel holds */
            size_t f = nuse == nframes ? j : j * (nframes - 1) / (nuse - 1);
            memcpy(host + j * npix, frames[f].sci + y0 * w, npix * sizeof(float));
        }
        cl_uint cn = (cl_uint)npix, cf = (cl_uint)nuse;
        s = clred_upload(ctx, stack, 0, npix * nuse * sizeof(float), host);
        if (s == CLRED_OK)
            s = clred_args(k, "temporal_median_mad", CLRED_ARG(stack), CLRED_ARG(cn), CLRED_ARG(cf), CLRED_ARG(dmed),
                           CLRED_ARG(dmad), (size_t)0);
        if (s == CLRED_OK)
            s = clred_run_tiled(ctx, k, "temporal_median_mad", 1, &npix);
        if (s == CLRED_OK)
            s = clred_download(ctx, dmed, 0, npix * sizeof(float), median + y0 * w);
        if (s == CLRED_OK)
            s = clred_download(ctx, dmad, 0, npix * sizeof(float), mad + y0 * w);
    }
    clred_release(&stack);
    clred_release(&dmed);
    clred_release(&dmad);
    free(host);
    return s;
}

/* ------------------------------------------------------------ star measures */

/* Distance along one direction from the peak to where img - bkg first drops
 * below half, linearly interpolated; NaN if it leaves the image first. */
static double half_crossing(const clred_image *img, long px, long py, int ux, int uy, double bkg, double half)
{
    double prev = img->sci[py * (long)img->width + px] - bkg;
    for (long k = 1;; k++) {
        long x = px + k * ux, y = py + k * uy;
        if (x < 0 || y < 0 || x >= (long)img->width || y >= (long)img->height)
            return NAN;
        double v = img->sci[y * (long)img->width + x] - bkg;
        if (!isfinite(v))
            return NAN;
        if (v < half)
            return (double)(k - 1) + (prev - half) / (prev - v);
        prev = v;
    }
}

clred_status clred_psf_measure(const clred_image *img, double bkg, double *x, double *y, double *peak, double *fwhm)
{
    if (!img || !img->sci || img->width == 0 || img->height == 0)
        return clred_fail(CLRED_ERR_USAGE, "psf measure: no image given");
    size_t n = img->width * img->height, best = n;
    for (size_t i = 0; i < n; i++)
        if (isfinite(img->sci[i]) && (best == n || img->sci[i] > img->sci[best]))
            best = i;
    if (best == n)
        return clred_fail(CLRED_ERR_INPUT, "psf measure: no finite pixel in the %zu x %zu image", img->width,
                          img->height);
    long px = (long)(best % img->width), py = (long)(best / img->width);
    double p = img->sci[best] - bkg, sum = 0;
    static const int dirs[4][2] = {{1, 0}, {0, 1}, {1, 1}, {1, -1}};
    for (int d = 0; d < 4 && p > 0; d++) {
        double a = half_crossing(img, px, py, dirs[d][0], dirs[d][1], bkg, 0.5 * p);
        double b = half_crossing(img, px, py, -dirs[d][0], -dirs[d][1], bkg, 0.5 * p);
        sum += (a + b) * ((dirs[d][0] && dirs[d][1]) ? sqrt(2.0) : 1.0);
    }
    *x = (double)px;
    *y = (double)py;
    *peak = p;
    *fwhm = p > 0 ? sum / 4 : NAN;
    return CLRED_OK;
}

/* 3x3 mean of the finite pixels: the light smoothing that keeps a lone noise
 * spike from winning the peak search. */
static void smooth3(const clred_image *img, float *out)
{
    long w = (long)img->width, h = (long)img->height;
    for (long y = 0; y < h; y++)
        for (long x = 0; x < w; x++) {
            double s = 0;
            int m = 0;
            for (long j = y - 1; j <= y + 1; j++)
                for (long i = x - 1; i <= x + 1; i++)
                    if (i >= 0 && j >= 0 && i < w && j < h && isfinite(img->sci[j * w + i])) {
                        s += img->sci[j * w + i];
                        m++;
                    }
            out[y * w + x] = m ? (float)(s / m) : NAN;
        }
}

static size_t argmax_finite(const float *v, size_t n)
{
    size_t best = n;
    for (size_t i = 0; i < n; i++)
        if (isfinite(v[i]) && (best == n || v[i] > v[best]))
            best = i;
    return best;
}

/* Vertex of the parabola through (-1, l), (0, c), (1, r), kept within half a pixel. */
static double parabola_offset(double l, double c, double r)
{
    double d = l - 2 * c + r;
    if (!isfinite(d) || d >= 0)
        return 0.0;
    double o = 0.5 * (l - r) / d;
    return o < -0.5 ? -0.5 : o > 0.5 ? 0.5 : o;
}

/* The peak of the smoothed frame with a parabolic sub-pixel fit per axis. */
static int locate_peak(const clred_image *img, float *work, double *x, double *y)
{
    long w = (long)img->width, h = (long)img->height;
    smooth3(img, work);
    size_t b = argmax_finite(work, (size_t)(w * h));
    if (b == (size_t)(w * h))
        return 0;
    long px = (long)b % w, py = (long)b / w;
    double c = work[b];
    *x = (double)px + ((px > 0 && px < w - 1) ? parabola_offset(work[b - 1], c, work[b + 1]) : 0.0);
    *y = (double)py + ((py > 0 && py < h - 1) ? parabola_offset(work[b - w], c, work[b + w]) : 0.0);
    return 1;
}

/* Background-subtracted, intensity-weighted centroid in a box of side `box`
 * around the smoothed peak; the box follows the centroid (three passes). */
static int locate_centroid(const clred_image *img, float *work, double bkg, int box, double *x, double *y)
{
    double cx, cy;
    if (!locate_peak(img, work, &cx, &cy))
        return 0;
    long w = (long)img->width, h = (long)img->height, half = box / 2;
    for (int pass = 0; pass < 3; pass++) {
        long x0 = lround(cx) - half, y0 = lround(cy) - half;
        double sw = 0, sx = 0, sy = 0;
        for (long j = y0; j <= y0 + 2 * half; j++)
            for (long i = x0; i <= x0 + 2 * half; i++) {
                if (i < 0 || j < 0 || i >= w || j >= h)
                    continue;
                double v = img->sci[j * w + i] - bkg;
                if (!isfinite(v) || v <= 0)
                    continue;
                sw += v;
                sx += v * (double)i;
                sy += v * (double)j;
            }
        if (!(sw > 0))
            return 0;
        cx = sx / sw;
        cy = sy / sw;
    }
    *x = cx;
    *y = cy;
    return 1;
}

/* ------------------------------------------------------------- small helpers */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of the finite values of v[0..n) (v is reordered); NaN if none. */
static double median_finite(double *v, size_t n)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(v[i]))
            v[m++] = v[i];
    if (m == 0)
        return NAN;
    qsort(v, m, sizeof *v, cmp_double);
    return (m & 1) ? v[m / 2] : 0.5 * (v[m / 2 - 1] + v[m / 2]);
}

static double population_std(const double *v, size_t n)
{
    double mean = 0, s = 0;
    for (size_t i = 0; i < n; i++)
        mean += v[i];
    mean /= (double)n;
    for (size_t i = 0; i < n; i++)
        s += (v[i] - mean) * (v[i] - mean);
    return sqrt(s / (double)n);
}

static const char *name_or(const char *name, const char *fallback) { return name ? name : fallback; }

/* ---------------------------------------------------------------- saturation */

static clred_status find_ceiling(const clred_image *frames, size_t n, const clred_cube_opts *o, clred_cube_result *r)
{
    const char *cube = name_or(o->cube_name, "cube");
    double raw_max = -INFINITY;
    int integral = 1;
    for (size_t f = 0; f < n; f++)
        for (size_t i = 0; i < r->width * r->height; i++) {
            float v = frames[f].sci[i];
            if (!isfinite(v))
                continue;
            if (v > raw_max)
                raw_max = v;
            if (v != floorf(v))
                integral = 0;
        }
    if (o->saturation > 0) {
        r->ceiling = o->saturation;
        r->ceiling_source = CLRED_CEILING_OPTION;
    } else if (frames[0].header && clred_header_get_double(frames[0].header, "SATURATE", &r->ceiling) &&
               r->ceiling > 0) {
        r->ceiling_source = CLRED_CEILING_HEADER;
    } else {
        if (!integral || !(raw_max <= 65535.0))
            return clred_fail(CLRED_ERR_USAGE,
                              "%s: no SATURATE keyword and the values are not 16-bit integers, so the saturation "
                              "ceiling cannot be inferred: give one",
                              cube);
        int b = 8;
        while (b < 16 && raw_max > (double)((1u << b) - 1))
            b++;
        r->ceiling = (double)((1u << b) - 1);
        r->ceiling_source = CLRED_CEILING_ADC;
    }
    double margin = o->saturation_margin < 0 ? round(0.01 * r->ceiling) : o->saturation_margin;
    if (!(margin < r->ceiling))
        return clred_fail(CLRED_ERR_USAGE, "%s: saturation margin %g is not below the ceiling %g", cube, margin,
                          r->ceiling);
    r->threshold = r->ceiling - margin;
    /* a ceiling below the typical pixel would flag most of the frame: a wrong option, not data */
    size_t np = r->width * r->height;
    double *v = malloc(np * sizeof *v);
    if (!v)
        return clred_fail(CLRED_ERR_MEMORY, "%s: out of memory", cube);
    for (size_t i = 0; i < np; i++)
        v[i] = frames[0].sci[i];
    double med = median_finite(v, np);
    free(v);
    if (!(r->threshold > med))
        return clred_fail(CLRED_ERR_INPUT,
                          "%s: saturation level %g (ceiling %g - margin %g) is not above the median %g of frame 0",
                          cube, r->threshold, r->ceiling, margin, med);
    return CLRED_OK;
}

/* ---------------------------------------------------------------- bad pixels */

/* 1.4826 * MAD of v over the pixels not flagged in skip (NaN if none). */
static double robust_sigma(const float *v, const uint8_t *skip, size_t n, double *work)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (!skip[i] && isfinite(v[i]))
            work[m++] = v[i];
    double c = median_finite(work, m);
    for (size_t i = 0; i < m; i++)
        work[i] = fabs(work[i] - c);
    return 1.4826 * median_finite(work, m);
}

/* A copy with non-finite values replaced by the median of the finite ones, for the median filter. */
static void fill_nonfinite(const float *in, float *out, size_t n, double *work)
{
    for (size_t i = 0; i < n; i++)
        work[i] = in[i];
    double med = median_finite(work, n);
    for (size_t i = 0; i < n; i++)
        out[i] = isfinite(in[i]) ? in[i] : (float)(isfinite(med) ? med : 0.0);
}

typedef struct {
    float *tmed, *tmad;  /* temporal median and MAD of the dark-subtracted frames */
    uint16_t *bad;       /* BAD from the dark and the temporal statistics */
} cube_maps;

/* Hot, cold and noisy pixels from the temporal statistics: the temporal
 * median (or MAD) against the 5x5 median of its neighbourhood, in units of
 * the robust spread of those residuals over the frame (1.4826 MAD), and only
 * where no neighbour is above the background by hot_sigma: the core and wings
 * of a star, bright next to their neighbours in every frame, are not taken for
 * hot pixels (the dark covers hot pixels under the star; two adjacent hot
 * pixels hide each other here; so does the 2-pixel border, which the median
 * filter copies). Noisy pixels: see NOISY_FACTOR. */
static clred_status temporal_bad(clred_ctx *ctx, const clred_cube_opts *o, size_t w, size_t h, size_t n,
                                 cube_maps *m, clred_cube_result *r)
{
    size_t np = w * h;
    float *a = malloc(np * sizeof *a), *lm = malloc(np * sizeof *lm), *lmad = malloc(np * sizeof *lmad);
    float *res = calloc(np, sizeof *res);
    double *work = malloc(np * sizeof *work);
    uint8_t *skip = calloc(np, 1);
    clred_status s = CLRED_OK;
    if (!a || !lm || !lmad || !res || !work || !skip) {
        s = clred_fail(CLRED_ERR_MEMORY, "temporal bad pixels: out of memory for %zu x %zu maps", w, h);
        goto done;
    }
    for (size_t i = 0; i < np; i++)
        skip[i] = (m->bad[i] & CLRED_MASK_BAD) != 0;
    fill_nonfinite(m->tmed, a, np, work);
    if ((s = clred_median_filter(ctx, a, lm, w, h, 5, 0)) != CLRED_OK)
        goto done;
    for (size_t i = 0; i < np; i++)
        res[i] = a[i] - lm[i];
    double sig = robust_sigma(res, skip, np, work);
    for (size_t i = 0; i < np; i++)
        work[i] = skip[i] ? NAN : a[i];
    double back = median_finite(work, np);
    /* quiet: none of the 8 neighbours is above the background by hot_sigma, so
     * the pixel is alone (a star's core and wings have bright neighbours) */
    for (size_t y = 0; y < h; y++)
        for (size_t x = 0; x < w; x++) {
            double top = -INFINITY;
            for (size_t j = y ? y - 1 : 0; j <= y + 1 && j < h; j++)
                for (size_t i = x ? x - 1 : 0; i <= x + 1 && i < w; i++)
                    if (i != x || j != y)
                        top = fmax(top, a[j * w + i]);
            skip[y * w + x] |= (uint8_t)(!(top - back < o->hot_sigma * sig) << 1);
        }
    fill_nonfinite(m->tmad, a, np, work);
    if ((s = clred_median_filter(ctx, a, lmad, w, h, 5, 0)) != CLRED_OK)
        goto done;
    /* noisy: a temporal MAD above NOISY_FACTOR times the local median MAD; the
     * sample MAD of Gaussian noise gets there with probability 2e-4 at 8 frames
     * (1% at 5), hence the 8-frame minimum for this test */
    int test_noisy = n >= NOISY_MIN_FRAMES;
    for (size_t i = 0; i < np; i++) {
        if (skip[i] || !(sig > 0)) /* bad already (bit 0) or not quiet (bit 1) */
            continue;
        if (res[i] > o->hot_sigma * sig) {
            m->bad[i] |= CLRED_MASK_BAD;
            r->nhot_temporal++;
        } else if (res[i] < -o->cold_sigma * sig) {
            m->bad[i] |= CLRED_MASK_BAD;
            r->ncold_temporal++;
        } else if (test_noisy && lmad[i] > 0 && a[i] > NOISY_FACTOR * lmad[i]) {
            m->bad[i] |= CLRED_MASK_BAD;
            r->nnoisy_temporal++;
        }
    }
done:
    free(a);
    free(lm);
    free(lmad);
    free(res);
    free(work);
    free(skip);
    return s;
}

/* ------------------------------------------------------------------ flatness */

static clred_status flatness(clred_ctx *ctx, const clred_cube_opts *o, size_t w, size_t h, const cube_maps *m,
                             clred_cube_flatness *fl)
{
    clred_image img;
    memset(&img, 0, sizeof img);
    img.width = w;
    img.height = h;
    img.sci = m->tmed;
    img.mask = m->bad;
    size_t n = (size_t)o->corner;
    if (n > w / 4)
        n = w / 4;
    if (n > h / 4)
        n = h / 4;
    if (n < 2)
        return clred_fail(CLRED_ERR_INPUT, "%s: %zu x %zu frames are too small for the corner check",
                          name_or(o->cube_name, "cube"), w, h);
    fl->corner = n;
    const size_t x0s[4] = {0, w - n, 0, w - n}, y0s[4] = {0, 0, h - n, h - n};
    double stds[4];
    for (int c = 0; c < 4; c++) {
        clred_stats_opts so = clred_stats_defaults();
        so.x0 = x0s[c];
        so.x1 = x0s[c] + n;
        so.y0 = y0s[c];
        so.y1 = y0s[c] + n;
        clred_stats st;
        CLRED_TRY(clred_image_stats(ctx, &img, &so, &st));
        fl->corner_mean[c] = st.mean;
        fl->corner_std[c] = stds[c] = st.std;
    }
    fl->noise = median_finite(stds, 4);
    double lo = INFINITY, hi = -INFINITY;
    for (int c = 0; c < 4; c++) {
        lo = fmin(lo, fl->corner_mean[c]);
        hi = fmax(hi, fl->corner_mean[c]);
    }
    fl->corner_departure = (hi - lo) / fl->noise;

    clred_bkg_opts bo = clred_bkg_defaults();
    bo.box_w = (int)((w + (size_t)o->mesh - 1) / (size_t)o->mesh);
    bo.box_h = (int)((h + (size_t)o->mesh - 1) / (size_t)o->mesh);
    bo.filter_w = bo.filter_h = 1;
    bo.mask_sources = 1;
    clred_image bkg;
    clred_bkg_info info;
    CLRED_TRY(clred_background(ctx, &img, &bo, &bkg, NULL, &info));
    fl->mesh_w = info.mesh_w;
    fl->mesh_h = info.mesh_h;
    fl->mesh_min = INFINITY;
    fl->mesh_max = -INFINITY;
    /* the spline passes through the box values at the box centres */
    for (size_t by = 0; by < info.mesh_h; by++)
        for (size_t bx = 0; bx < info.mesh_w; bx++) {
            size_t x0 = bx * (size_t)bo.box_w, y0 = by * (size_t)bo.box_h;
            size_t x1 = x0 + (size_t)bo.box_w < w ? x0 + (size_t)bo.box_w : w;
            size_t y1 = y0 + (size_t)bo.box_h < h ? y0 + (size_t)bo.box_h : h;
            double v = bkg.sci[((y0 + y1) / 2) * w + (x0 + x1) / 2];
            fl->mesh_min = fmin(fl->mesh_min, v);
            fl->mesh_max = fmax(fl->mesh_max, v);
        }
    clred_image_free(&bkg);
    fl->mesh_departure = (fl->mesh_max - fl->mesh_min) / fl->noise;
    fl->flat = fl->corner_departure < o->flat_limit && fl->mesh_departure < o->flat_limit;
    return CLRED_OK;
}

/* ------------------------------------------------------------------ shifts */

static clred_status measure_positions(clred_ctx *ctx, const clred_image *frames, size_t n, const clred_cube_opts *o,
                                      clred_cube_result *r)
{
    const char *cube = name_or(o->cube_name, "cube");
    size_t w = r->width, h = r->height;
    for (size_t f = 0; f < n; f++)
        r->frames[f].dx = r->frames[f].dy = 0, r->frames[f].x = r->frames[f].y = NAN;
    if (o->align == CLRED_ALIGN_NONE)
        return CLRED_OK;
    if (o->align == CLRED_ALIGN_PHASECORR) {
        clred_phasecorr_opts po = clred_phasecorr_defaults();
        /* a saturated core is still the star: replacing it by the median would leave a hole to align on */
        po.ignore_bits = CLRED_MASK_BAD | CLRED_MASK_NO_DATA;
        /* the whole frame: after the dark and the bad pixels are gone, no static
         * pattern pulls the shifts to zero, and a box around one frame's peak
         * would cut an open-loop halo that wanders by more than the box allows */
        clred_shift *sh = malloc(n * sizeof *sh);
        if (!sh)
            return clred_fail(CLRED_ERR_MEMORY, "%s: out of memory", cube);
        clred_status s = clred_measure_shifts(ctx, frames, n, o->reference_median ? -1 : 0, &po, sh);
        for (size_t f = 0; s == CLRED_OK && f < n; f++) {
            r->frames[f].dx = sh[f].dx;
            r->frames[f].dy = sh[f].dy;
        }
        free(sh);
        return s;
    }
    float *work = malloc(w * h * sizeof *work);
    double *px = malloc(2 * n * sizeof *px);
    if (!work || !px) {
        free(work);
        free(px);
        return clred_fail(CLRED_ERR_MEMORY, "%s: out of memory", cube);
    }
    clred_status s = CLRED_OK;
    for (size_t f = 0; f < n && s == CLRED_OK; f++) {
        clred_cube_frame *fr = &r->frames[f];
        int ok = o->align == CLRED_ALIGN_PEAK ? locate_peak(&frames[f], work, &fr->x, &fr->y)
                                              : locate_centroid(&frames[f], work, fr->background, o->centroid_box,
                                                                &fr->x, &fr->y);
        if (!ok)
            s = clred_fail(CLRED_ERR_INPUT, "%s: frame %zu has no star to align on (no pixel above the background)",
                           cube, f);
        px[f] = fr->x;
        px[n + f] = fr->y;
    }
    double rx = r->frames[0].x, ry = r->frames[0].y;
    if (s == CLRED_OK && o->reference_median) {
        rx = median_finite(px, n);
        ry = median_finite(px + n, n);
    }
    for (size_t f = 0; f < n && s == CLRED_OK; f++) {
        r->frames[f].dx = r->frames[f].x - rx;
        r->frames[f].dy = r->frames[f].y - ry;
    }
    free(work);
    free(px);
    return s;
}

/* -------------------------------------------------------------- the stacks */

/* Marks SATURATED where a saturated raw pixel of any frame lands in the
 * stack (moved by -dx, -dy when shifted). */
static void mark_saturated(const clred_image *raw, size_t n, const clred_cube_result *r, int shifted, uint16_t *mask)
{
    long w = (long)r->width, h = (long)r->height;
    for (size_t f = 0; f < n; f++) {
        double dx = shifted ? r->frames[f].dx : 0, dy = shifted ? r->frames[f].dy : 0;
        for (long y = 0; y < h; y++)
            for (long x = 0; x < w; x++) {
                if (!(raw[f].sci[y * w + x] >= r->threshold))
                    continue;
                long ox = lround((double)x - dx), oy = lround((double)y - dy);
                if (ox >= 0 && oy >= 0 && ox < w && oy < h)
                    mask[oy * w + ox] |= CLRED_MASK_SATURATED;
            }
    }
}

static clred_status stack_frames(clred_ctx *ctx, const clred_image *frames, size_t n, const clred_cube_opts *o,
                                 clred_image *out)
{
    clred_combine_opts co = clred_combine_defaults();
    co.method = o->stack;
    /* saturated values are kept (flagged in the output), not silently dropped */
    co.ignore_bits = CLRED_MASK_BAD | CLRED_MASK_NO_DATA;
    clred_combine_result cr;
    CLRED_TRY(clred_combine_images(ctx, frames, n, &co, &cr));
    *out = cr.image;
    memset(&cr.image, 0, sizeof cr.image);
    clred_combine_result_free(&cr);
    return CLRED_OK;
}

static clred_status align_frames(clred_ctx *ctx, const clred_image *frames, size_t n, const clred_cube_opts *o,
                                 const clred_cube_result *r, clred_image *aligned)
{
    clred_resample_opts ro = clred_resample_defaults();
    ro.interp = o->integer_shifts ? CLRED_INTERP_NEAREST : o->interp;
    ro.ignore_bits = CLRED_MASK_BAD | CLRED_MASK_NO_DATA;
    for (size_t f = 0; f < n; f++) {
        clred_transform t = clred_transform_translation(-r->frames[f].dx, -r->frames[f].dy);
        CLRED_TRY(clred_resample(ctx, &frames[f], &t, &ro, &aligned[f]));
    }
    return CLRED_OK;
}

static void measure_stack(const clred_image *img, double *peak, double *fwhm, double *x, double *y)
{
    double bkg, rms;
    *peak = *fwhm = *x = *y = NAN;
    if (clred_global_background(img, CLRED_MASK_UNUSABLE, &bkg, &rms) != CLRED_OK || !isfinite(bkg))
        bkg = 0;
    if (clred_psf_measure(img, bkg, x, y, peak, fwhm) != CLRED_OK)
        clred_clear_error();
}

/* ---------------------------------------------------------------- the steps */

static clred_status check_inputs(const clred_image *frames, size_t n, const clred_image *dark, const clred_cube_opts *o)
{
    const char *cube = name_or(o->cube_name, "cube"), *dk = name_or(o->dark_name, "dark");
    if (!frames || n < 2)
        return clred_fail(CLRED_ERR_INPUT, "%s: %zu frame(s); a cube of at least 2 frames is needed", cube, n);
    for (size_t f = 0; f < n; f++)
        if (!frames[f].sci || frames[f].width != frames[0].width || frames[f].height != frames[0].height ||
            frames[0].width == 0 || frames[0].height == 0)
            return clred_fail(CLRED_ERR_INPUT, "%s: frame %zu is %zu x %zu, frame 0 is %zu x %zu", cube, f,
                              frames[f].width, frames[f].height, frames[0].width, frames[0].height);
    if (dark && (!dark->sci || dark->width != frames[0].width || dark->height != frames[0].height))
        return clred_fail(CLRED_ERR_INPUT, "%s is %zu x %zu but the frames of %s are %zu x %zu", dk, dark->width,
                          dark->height, cube, frames[0].width, frames[0].height);
    if ((unsigned)o->align > (unsigned)CLRED_ALIGN_PHASECORR)
        return clred_fail(CLRED_ERR_USAGE, "%s: unknown alignment mode %d", cube, (int)o->align);
    if (o->stack != CLRED_COMBINE_SUM && o->stack != CLRED_COMBINE_MEAN && o->stack != CLRED_COMBINE_MEDIAN)
        return clred_fail(CLRED_ERR_USAGE, "%s: the stack is sum, mean or median", cube);
    if (o->interp == CLRED_INTERP_NEAREST || (unsigned)o->interp > (unsigned)CLRED_INTERP_FOURIER)
        return clred_fail(CLRED_ERR_USAGE, "%s: sub-pixel shifts need bilinear, bicubic, lanczos3 or fourier", cube);
    if (o->centroid_box < 3 || !(o->hot_sigma > 0) || !(o->cold_sigma > 0) || o->corner < 2 || o->mesh < 1 ||
        !(o->flat_limit > 0) || o->saturation < 0)
        return clred_fail(CLRED_ERR_USAGE,
                          "%s: invalid options (centroid box %d >= 3, hot/cold sigma %g/%g > 0, corner %d >= 2, "
                          "mesh %d >= 1, flat limit %g > 0, saturation %g >= 0)",
                          cube, o->centroid_box, o->hot_sigma, o->cold_sigma, o->corner, o->mesh, o->flat_limit,
                          o->saturation);
    return CLRED_OK;
}

/* Dark-subtracted copies of the raw frames with a mask plane (SATURATED from the raw values). */
static clred_status subtract_dark(const clred_image *raw, size_t n, const clred_image *dark, clred_cube_result *r,
                                  clred_image *sub)
{
    size_t np = r->width * r->height;
    for (size_t f = 0; f < n; f++) {
        CLRED_TRY(clred_image_alloc(&sub[f], r->width, r->height, 0, 1));
        size_t nsat = 0;
        double mx = -INFINITY;
        for (size_t i = 0; i < np; i++) {
            float v = raw[f].sci[i];
            sub[f].sci[i] = dark ? v - dark->sci[i] : v;
            if (v >= r->threshold) {
                sub[f].mask[i] |= CLRED_MASK_SATURATED;
                nsat++;
            }
            if (v > mx)
                mx = v;
        }
        r->frames[f].nsaturated = nsat;
        r->frames[f].raw_max = mx;
        r->nsaturated += nsat;
    }
    return CLRED_OK;
}

static clred_status find_bad(clred_ctx *ctx, const clred_image *sub, size_t n, const clred_image *dark,
                             const clred_cube_opts *o, cube_maps *m, clred_cube_result *r)
{
    size_t w = r->width, h = r->height;
    if (dark) {
        clred_badpix_opts bo = clred_badpix_defaults();
        bo.hot_sigma = o->hot_sigma;
        bo.cold_sigma = o->cold_sigma;
        clred_badpix_info bi;
        clred_status s = clred_find_bad_pixels(ctx, dark, &bo, m->bad, &bi);
        if (s != CLRED_OK) {
            char why[400]; /* the message lives in the buffer clred_fail writes */
            snprintf(why, sizeof why, "%s", clred_last_error());
            return clred_fail(s, "%s: %s", name_or(o->dark_name, "dark"), why);
        }
        r->nhot_dark = bi.nhot;
        r->ncold_dark = bi.ncold;
    }
    CLRED_TRY(clred_temporal_stats(ctx, sub, n, m->tmed, m->tmad));
    if (o->temporal_badpix && n >= TEMPORAL_MIN_FRAMES)
        CLRED_TRY(temporal_bad(ctx, o, w, h, n, m, r));
    return CLRED_OK;
}

static clred_status repair_frames(clred_ctx *ctx, clred_image *sub, size_t n, const clred_cube_opts *o,
                                  const cube_maps *m, clred_cube_result *r)
{
    size_t np = r->width * r->height;
    for (size_t f = 0; f < n; f++) {
        for (size_t i = 0; i < np; i++)
            sub[f].mask[i] |= m->bad[i];
        if (o->repair) {
            size_t nfilled = 0;
            CLRED_TRY(clred_infill(ctx, &sub[f], CLRED_MASK_BAD, CLRED_INFILL_MEDIAN, &nfilled));
            /* repaired pixels keep INTERPOLATED; BAD goes so the stacks use them */
            for (size_t i = 0; i < np; i++)
                if (sub[f].mask[i] & CLRED_MASK_INTERPOLATED)
                    sub[f].mask[i] &= (uint16_t)~CLRED_MASK_BAD;
            if (nfilled > r->nrepaired)
                r->nrepaired = nfilled;
        }
        double level, rms;
        CLRED_TRY(clred_global_background(&sub[f], CLRED_MASK_UNUSABLE, &level, &rms));
        r->frames[f].background = level;
        r->frames[f].noise = rms;
        double best = -INFINITY;
        for (size_t i = 0; i < np; i++)
            if (isfinite(sub[f].sci[i]) && !(sub[f].mask[i] & CLRED_MASK_BAD) && sub[f].sci[i] > best)
                best = sub[f].sci[i];
        r->frames[f].peak = best - level;
    }
    size_t nsat = 0, nsatbad = 0;
    for (size_t i = 0; i < np; i++) {
        int sat = 0;
        for (size_t f = 0; f < n && !sat; f++)
            sat = (sub[f].mask[i] & CLRED_MASK_SATURATED) != 0;
        nsat += (size_t)sat;
        nsatbad += (size_t)(sat && (m->bad[i] & CLRED_MASK_BAD));
    }
    r->nsaturated_pixels = nsat;
    r->nsaturated_bad = nsatbad;
    return CLRED_OK;
}

static void tiptilt(clred_cube_result *r)
{
    size_t n = r->nframes;
    double *v = malloc(2 * n * sizeof *v);
    if (!v) {
        r->tiptilt_rms_x = r->tiptilt_rms_y = r->tiptilt_rms = NAN;
        return;
    }
    for (size_t f = 0; f < n; f++) {
        v[f] = r->frames[f].dx;
        v[n + f] = r->frames[f].dy;
    }
    r->tiptilt_rms_x = population_std(v, n);
    r->tiptilt_rms_y = population_std(v + n, n);
    r->tiptilt_rms = hypot(r->tiptilt_rms_x, r->tiptilt_rms_y);
    free(v);
}

static const char *align_name(clred_align_mode a)
{
    static const char *names[] = {"none", "peak", "centroid", "phasecorr"};
    return (unsigned)a <= (unsigned)CLRED_ALIGN_PHASECORR ? names[a] : "?";
}

static clred_status add_history(const clred_image *raw, const clred_cube_opts *o, const clred_cube_result *r,
                                int shifted, clred_image *img)
{
    /* The stack may come with a header of its own: the raw frame's replaces it. */
    clred_header_free(img->header);
    img->header = raw[0].header ? clred_header_copy(raw[0].header) : clred_header_new();
    if (!img->header)
        return clred_fail(CLRED_ERR_MEMORY, "cube: out of memory for the header");
    static const char *stacks[] = {"mean", "median", "sum", "min", "max"};
    char text[400];
    snprintf(text, sizeof text,
             "clred cube: %zu frames of %s, dark %s subtracted; saturation >= %g (ceiling %g); bad pixels hot %g "
             "cold %g sigma (dark %zu+%zu, temporal %zu+%zu+%zu) %s; align %s%s ref %s; stack %s; tip-tilt rms %.4g px",
             r->nframes, name_or(o->cube_name, "cube"), name_or(o->dark_name, "none"), r->threshold, r->ceiling,
             o->hot_sigma, o->cold_sigma, r->nhot_dark, r->ncold_dark, r->nhot_temporal, r->ncold_temporal,
             r->nnoisy_temporal, o->repair ? "repaired" : "flagged", shifted ? align_name(o->align) : "none",
             shifted && o->integer_shifts ? " integer" : "", o->reference_median ? "median" : "frame 0",
             stacks[o->stack], r->tiptilt_rms);
    CLRED_TRY(clred_header_add_history(img->header, text));
    CLRED_TRY(clred_header_set_double(img->header, "NCOMBINE", (double)r->nframes, "frames stacked"));
    CLRED_TRY(clred_header_set_double(img->header, "SATRAW", r->threshold, "raw frame level counted as saturated"));
    CLRED_TRY(clred_header_set_double(img->header, "NSATVAL", (double)r->nsaturated,
                                      "saturated raw values, all frames"));
    if (shifted)
        CLRED_TRY(clred_header_set_double(img->header, "TTRMS", r->tiptilt_rms, "tip-tilt rms of the shifts, px"));
    return CLRED_OK;
}

static void free_images(clred_image *v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        clred_image_free(&v[i]);
    free(v);
}

clred_status clred_cube_reduce(clred_ctx *ctx, const clred_image *frames, size_t nframes, const clred_image *dark,
                               const clred_cube_opts *opts, clred_cube_result *out)
{
    clred_cube_opts defaults = clred_cube_defaults();
    const clred_cube_opts *o = opts ? opts : &defaults;
    memset(out, 0, sizeof *out);
    CLRED_TRY(check_inputs(frames, nframes, dark, o));
    clred_cube_result r;
    memset(&r, 0, sizeof r);
    r.nframes = nframes;
    r.width = frames[0].width;
    r.height = frames[0].height;
    size_t np = r.width * r.height;
    cube_maps m = {malloc(np * sizeof(float)), malloc(np * sizeof(float)), calloc(np, sizeof(uint16_t))};
    clred_image *sub = calloc(nframes, sizeof *sub), *aligned = calloc(nframes, sizeof *aligned);
    r.frames = calloc(nframes, sizeof *r.frames);
    clred_status s = CLRED_OK;
    if (!m.tmed || !m.tmad || !m.bad || !sub || !aligned || !r.frames)
        s = clred_fail(CLRED_ERR_MEMORY, "%s: out of memory for %zu frames of %zu x %zu", name_or(o->cube_name, "cube"),
                       nframes, r.width, r.height);
    if (s == CLRED_OK)
        s = find_ceiling(frames, nframes, o, &r);
    if (s == CLRED_OK)
        s = subtract_dark(frames, nframes, dark, &r, sub);
    if (s == CLRED_OK)
        s = find_bad(ctx, sub, nframes, dark, o, &m, &r);
    if (s == CLRED_OK)
        s = flatness(ctx, o, r.width, r.height, &m, &r.flatness);
    if (s == CLRED_OK)
        s = repair_frames(ctx, sub, nframes, o, &m, &r);
    if (s == CLRED_OK)
        s = measure_positions(ctx, sub, nframes, o, &r);
    if (s == CLRED_OK && o->integer_shifts)
        for (size_t f = 0; f < nframes; f++) {
            r.frames[f].dx = round(r.frames[f].dx);
            r.frames[f].dy = round(r.frames[f].dy);
        }
    if (s == CLRED_OK)
        tiptilt(&r);
    if (s == CLRED_OK)
        s = stack_frames(ctx, sub, nframes, o, &r.plain);
    if (s == CLRED_OK)
        s = o->align == CLRED_ALIGN_NONE ? stack_frames(ctx, sub, nframes, o, &r.master)
                                         : align_frames(ctx, sub, nframes, o, &r, aligned);
    if (s == CLRED_OK && o->align != CLRED_ALIGN_NONE)
        s = stack_frames(ctx, aligned, nframes, o, &r.master);
    if (s == CLRED_OK) {
        mark_saturated(frames, nframes, &r, 0, r.plain.mask);
        mark_saturated(frames, nframes, &r, o->align != CLRED_ALIGN_NONE, r.master.mask);
        measure_stack(&r.master, &r.master_peak, &r.master_fwhm, &r.master_x, &r.master_y);
        measure_stack(&r.plain, &r.plain_peak, &r.plain_fwhm, &r.plain_x, &r.plain_y);
        s = add_history(frames, o, &r, o->align != CLRED_ALIGN_NONE, &r.master);
    }
    if (s == CLRED_OK)
        s = add_history(frames, o, &r, 0, &r.plain);
    free(m.tmed);
    free(m.tmad);
    free(m.bad);
    free_images(sub, nframes);
    free_images(aligned, nframes);
    if (s != CLRED_OK) {
        clred_cube_result_free(&r);
        return s;
    }
    *out = r;
    return CLRED_OK;
}

/* ------------------------------------------------------------------- files */

static clred_status read_dark(clred_ctx *ctx, const char *path, clred_image *dark)
{
    clred_file_info info;
    CLRED_TRY(clred_file_info_read(path, &info));
    if (info.nframes <= 1)
        return clred_image_read(path, 0, dark);
    clred_combine_opts co = clred_combine_defaults();
    co.method = CLRED_COMBINE_MEDIAN;
    clred_combine_result cr;
    CLRED_TRY(clred_combine_files(ctx, &path, 1, &co, &cr));
    *dark = cr.image;
    memset(&cr.image, 0, sizeof cr.image);
    clred_combine_result_free(&cr);
    return CLRED_OK;
}

clred_status clred_cube_reduce_files(clred_ctx *ctx, const char *cube_path, const char *dark_path,
                                     const clred_cube_opts *opts, clred_cube_result *out)
{
    clred_cube_opts o = opts ? *opts : clred_cube_defaults();
    memset(out, 0, sizeof *out);
    if (!o.cube_name)
        o.cube_name = cube_path;
    if (!o.dark_name)
        o.dark_name = dark_path;
    clred_file_info info;
    CLRED_TRY(clred_file_info_read(cube_path, &info));
    if (info.nframes < 2)
        return clred_fail(CLRED_ERR_INPUT, "%s is a 2-D image (%zu x %zu); a cube of at least 2 frames is needed",
                          cube_path, info.width, info.height);
    if (dark_path) {
        clred_file_info dinfo;
        CLRED_TRY(clred_file_info_read(dark_path, &dinfo));
        if (dinfo.width != info.width || dinfo.height != info.height)
            return clred_fail(CLRED_ERR_INPUT, "%s is %zu x %zu but the frames of %s are %zu x %zu", dark_path,
                              dinfo.width, dinfo.height, cube_path, info.width, info.height);
    }
    clred_image *frames = calloc(info.nframes, sizeof *frames), dark;
    memset(&dark, 0, sizeof dark);
    if (!frames)
        return clred_fail(CLRED_ERR_MEMORY, "%s: out of memory for %zu frames", cube_path, info.nframes);
    clred_status s = CLRED_OK;
    for (size_t f = 0; f < info.nframes && s == CLRED_OK; f++)
        s = clred_image_read(cube_path, f, &frames[f]);
    if (s == CLRED_OK && dark_path)
        s = read_dark(ctx, dark_path, &dark);
    if (s == CLRED_OK)
        s = clred_cube_reduce(ctx, frames, info.nframes, dark_path ? &dark : NULL, &o, out);
    free_images(frames, info.nframes);
    clred_image_free(&dark);
    return s;
}

clred_status clred_cube_table_write(const char *csv_path, const clred_cube_result *r, int overwrite)
{
    char tmp[4096];
    FILE *f;
    CLRED_TRY(clred_atomic_open(csv_path, overwrite, tmp, sizeof tmp, &f));
    fprintf(f, "frame,dx,dy,x,y,peak,raw_max,nsaturated,background,noise\n");
    for (size_t i = 0; i < r->nframes; i++) {
        const clred_cube_frame *fr = &r->frames[i];
        fprintf(f, "%zu,%.6f,%.6f,%.6f,%.6f,%.6g,%.6g,%zu,%.6g,%.6g\n", i, fr->dx, fr->dy, fr->x, fr->y, fr->peak,
                fr->raw_max, fr->nsaturated, fr->background, fr->noise);
    }
    return clred_atomic_close(f, tmp, csv_path);
}
