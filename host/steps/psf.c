/* Pixel-grid PSF models: from an array or a FITS file (recentred, cut, unit
 * sum), or measured from an image's isolated, unsaturated stars (detection on
 * the device, stamps recentred by sub-pixel bicubic shifts and median-stacked
 * on the host: a few dozen small stamps), with FWHM and ellipticity. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void clred_psf_free(clred_psf *psf)
{
    if (!psf)
        return;
    free(psf->data);
    memset(psf, 0, sizeof *psf);
}

/* Keys' cubic convolution weight (a = -0.5). */
static double cubic_w(double t)
{
    t = fabs(t);
    if (t < 1)
        return (1.5 * t - 2.5) * t * t + 1;
    if (t < 2)
        return ((-0.5 * t + 2.5) * t - 4) * t + 2;
    return 0;
}

/* Bicubic value of a w x h array at (x, y); outside the array it is 0. */
static double sample_cubic(const float *a, size_t w, size_t h, double x, double y)
{
    long ix = (long)floor(x), iy = (long)floor(y);
    double fx = x - (double)ix, fy = y - (double)iy, s = 0;
    for (int j = -1; j <= 2; j++) {
        long yy = iy + j;
        if (yy < 0 || yy >= (long)h)
            continue;
        double wy = cubic_w((double)j - fy);
        for (int i = -1; i <= 2; i++) {
            long xx = ix + i;
            if (xx >= 0 && xx < (long)w)
                s += wy * cubic_w((double)i - fx) * a[(size_t)yy * w + (size_t)xx];
        }
    }
    return s;
}

/* FWHM from the area above half maximum (on a 4x bilinear sub-grid) and
 * ellipticity from Gaussian-windowed second moments. */
static void psf_shape(clred_psf *p)
{
    size_t n = p->size, c = n / 2;
    float peak = 0;
    for (size_t i = 0; i < n * n; i++)
        peak = p->data[i] > peak ? p->data[i] : peak;
    size_t count = 0;
    const int up = 4;
    for (size_t j = 0; j + 1 < n; j++)
        for (size_t i = 0; i + 1 < n; i++)
            for (int sj = 0; sj < up; sj++)
                for (int si = 0; si < up; si++) {
                    double fx = (si + 0.5) / up, fy = (sj + 0.5) / up;
                    double v = (1 - fx) * (1 - fy) * p->data[j * n + i] + fx * (1 - fy) * p->data[j * n + i + 1] +
                               (1 - fx) * fy * p->data[(j + 1) * n + i] + fx * fy * p->data[(j + 1) * n + i + 1];
                    count += v >= 0.5 * peak;
                }
    p->fwhm = 2.0 * sqrt((double)count / (up * up) / 3.14159265358979323846);
    double sig = fmax(p->fwhm / 2.3548, 0.5), sxx = 0, syy = 0, sxy = 0, s = 0;
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < n; i++) {
            double dx = (double)i - (double)c, dy = (double)j - (double)c;
            double wgt = exp(-0.5 * (dx * dx + dy * dy) / (sig * sig)) * p->data[j * n + i];
            sxx += wgt * dx * dx;
            syy += wgt * dy * dy;
            sxy += wgt * dx * dy;
            s += wgt;
        }
    if (s > 0) {
        sxx /= s;
        syy /= s;
        sxy /= s;
        double tr = 0.5 * (sxx + syy), det = sqrt(fmax(0.25 * (sxx - syy) * (sxx - syy) + sxy * sxy, 0));
        double a2 = tr + det, b2 = tr - det;
        p->ellipticity = a2 > 0 && b2 > 0 ? 1.0 - sqrt(b2 / a2) : 0.0;
    }
}

clred_status clred_psf_from_array(const float *data, size_t w, size_t h, size_t max_size, clred_psf *psf)
{
    memset(psf, 0, sizeof *psf);
    if (!data || w < 3 || h < 3)
        return clred_fail(CLRED_ERR_INPUT, "PSF: a %zu x %zu array is too small", w, h);
    if (max_size && max_size % 2 == 0)
        return clred_fail(CLRED_ERR_USAGE, "PSF: the largest size must be odd, got %zu", max_size);
    size_t px = 0, py = 0;
    double total = 0;
    for (size_t j = 0; j < h; j++)
        for (size_t i = 0; i < w; i++) {
            float v = data[j * w + i];
            if (!isfinite(v))
                return clred_fail(CLRED_ERR_INPUT, "PSF: pixel (%zu, %zu) is not finite", i, j);
            total += v;
            if (v > data[py * w + px]) {
                px = i;
                py = j;
            }
        }
    if (!(total > 0))
        return clred_fail(CLRED_ERR_INPUT, "PSF: the %zu x %zu array sums to %g, not > 0", w, h, total);
    /* The centre: a Gaussian-windowed centroid (its window's width from the
     * area above half maximum), iterated from the peak pixel; it converges to
     * the centre of any symmetric core, where a plain box centroid is pulled
     * by the box's truncation. */
    double peak = data[py * w + px];
    size_t above = 0;
    for (size_t i = 0; i < w * h; i++)
        above += data[i] >= 0.5 * peak;
    double sw = fmax(1.0, 2.0 * sqrt((double)above / 3.14159265358979323846) / 2.3548);
    double cx = (double)px, cy = (double)py;
    for (int it = 0; it < 30; it++) {
        double sx = 0, sy = 0, s = 0;
        long r = (long)ceil(4 * sw);
        for (long j = lround(cy) - r; j <= lround(cy) + r; j++)
            for (long i = lround(cx) - r; i <= lround(cx) + r; i++)
                if (i >= 0 && j >= 0 && i < (long)w && j < (long)h) {
                    double dx = (double)i - cx, dy = (double)j - cy;
                    double v = data[(size_t)j * w + (size_t)i] * exp(-0.5 * (dx * dx + dy * dy) / (sw * sw));
                    sx += v * dx;
                    sy += v * dy;
                    s += v;
                }
        if (!(s > 0))
            break;
        /* the windowed centroid's step is half the offset for a Gaussian of the window's width */
        double ddx = 2.0 * sx / s, ddy = 2.0 * sy / s;
        cx += fmax(-1.0, fmin(1.0, ddx));
        cy += fmax(-1.0, fmin(1.0, ddy));
        if (fabs(ddx) < 1e-4 && fabs(ddy) < 1e-4)
            break;
    }
    /* within 0.01 px of a pixel centre: no resampling (a model centred by construction stays exact) */
    int shift = fabs(cx - round(cx)) > 0.01 || fabs(cy - round(cy)) > 0.01;
    if (!shift) {
        cx = round(cx);
        cy = round(cy);
    }
    size_t half_w = (size_t)fmin(cx, (double)w - 1 - cx), half_h = (size_t)fmin(cy, (double)h - 1 - cy);
    size_t half = half_w < half_h ? half_w : half_h;
    if (max_size && half > max_size / 2)
        half = max_size / 2;
    if (half < 1)
        return clred_fail(CLRED_ERR_INPUT, "PSF: its centre (%g, %g) lies on the %zu x %zu array's edge", cx, cy, w, h);
    size_t n = 2 * half + 1;
    if (!(psf->data = malloc(n * n * sizeof *psf->data)))
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for a %zu px PSF", n);
    psf->size = n;
    double s = 0;
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < n; i++) {
            double x = cx + (double)i - (double)half, y = cy + (double)j - (double)half;
            double v = shift ? sample_cubic(data, w, h, x, y) : data[(size_t)y * w + (size_t)x];
            psf->data[j * n + i] = (float)v;
            s += v;
        }
    if (!(s > 0)) {
        clred_psf_free(psf);
        return clred_fail(CLRED_ERR_INPUT, "PSF: the cut %zu x %zu model sums to %g", n, n, s);
    }
    for (size_t i = 0; i < n * n; i++)
        psf->data[i] = (float)(psf->data[i] / s);
    psf_shape(psf);
    return CLRED_OK;
}

clred_status clred_psf_read(const char *path, size_t max_size, clred_psf *psf)
{
    memset(psf, 0, sizeof *psf);
    clred_image img;
    CLRED_TRY(clred_image_read(path, 0, &img));
    clred_status st = clred_psf_from_array(img.sci, img.width, img.height, max_size, psf);
    clred_image_free(&img);
    if (st != CLRED_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", clred_last_error());
        return clred_fail(st, "%s: %s", path, msg);
    }
    return CLRED_OK;
}

clred_status clred_psf_write(const char *path, const clred_psf *psf, int overwrite)
{
    if (!psf || !psf->data || psf->size == 0)
        return clred_fail(CLRED_ERR_USAGE, "%s: no PSF to write", path);
    clred_image img;
    memset(&img, 0, sizeof img);
    img.width = img.height = psf->size;
    img.sci = psf->data;
    if (!(img.header = clred_header_new()))
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for a header");
    clred_status st = clred_header_set_double(img.header, "PSFFWHM", psf->fwhm, "FWHM, px");
    if (st == CLRED_OK)
        st = clred_header_set_double(img.header, "PSFELLIP", psf->ellipticity, "1 - b/a");
    if (st == CLRED_OK)
        st = clred_header_set_double(img.header, "PSFNSTAR", (double)psf->nstars, "stars averaged");
    if (st == CLRED_OK)
        st = clred_image_write(path, &img, overwrite);
    clred_header_free(img.header);
    return st;
}

clred_psf_opts clred_psf_defaults(void)
{
    clred_psf_opts o;
    memset(&o, 0, sizeof o);
    o.size = 25;
    o.thresh = 5.0;
    o.min_snr = 30.0;
    o.isolation = 0.0;
    o.saturation = 0.0;
    o.max_stars = 50;
    o.ignore_bits = CLRED_MASK_UNUSABLE;
    return o;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Which detected sources make the model: no flags, bright, round, of the
 * typical size (galaxies are larger), alone within `isolation` px and with
 * their whole stamp inside the image. Returns how many, brightest first in idx. */
static size_t pick_stars(const clred_source *src, size_t n, const clred_psf_opts *o, size_t w, size_t h, size_t *idx)
{
    double iso = o->isolation > 0 ? o->isolation : 0.5 * (double)o->size;
    double half = (double)(o->size / 2) + 3;
    double *fw = malloc((n ? n : 1) * sizeof *fw);
    size_t m = 0, k = 0;
    if (!fw)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (src[i].flags == 0 && src[i].flux_err > 0 && src[i].flux / src[i].flux_err >= o->min_snr)
            fw[m++] = src[i].fwhm;
    if (m == 0) {
        free(fw);
        return 0;
    }
    qsort(fw, m, sizeof *fw, cmp_double);
    double typical = fw[m / 2];
    free(fw);
    for (size_t i = 0; i < n; i++) {
        const clred_source *s = &src[i];
        if (s->flags != 0 || !(s->flux_err > 0) || s->flux / s->flux_err < o->min_snr || s->ellipticity > 0.3 ||
            fabs(s->fwhm - typical) > 0.25 * typical)
            continue;
        if (s->x < half || s->y < half || s->x > (double)w - 1 - half || s->y > (double)h - 1 - half)
            continue;
        if (o->saturation > 0 && s->peak >= o->saturation)
            continue;
        int alone = 1;
        for (size_t j = 0; j < n && alone; j++)
            alone = j == i || hypot(src[j].x - s->x, src[j].y - s->y) >= iso;
        if (alone)
            idx[k++] = i;
    }
    /* brightest first (insertion sort: a few hundred at most) */
    for (size_t a = 1; a < k; a++)
        for (size_t b = a; b > 0 && src[idx[b]].flux > src[idx[b - 1]].flux; b--) {
            size_t t = idx[b];
            idx[b] = idx[b - 1];
            idx[b - 1] = t;
        }
    return k;
}

/* The sky around a star: the median of the usable pixels in the annulus
 * from r_in to r_in + 6 px. Far enough out that the PSF's wings are small
 * (a ring at the stamp's own border takes a Moffat beta = 3 star's wings,
 * 4 % of its flux, for sky), and local, where the image's global median is
 * raised by all its sources' wings. NaN when fewer than 20 pixels count. */
static double local_sky(const clred_image *img, double x, double y, double r_in, uint16_t ignore, float *buf,
                        size_t cap)
{
    double r_out = r_in + 6;
    long x0 = (long)floor(x - r_out), x1 = (long)ceil(x + r_out), y0 = (long)floor(y - r_out), y1 = (long)ceil(y + r_out);
    size_t n = 0;
    for (long j = y0; j <= y1; j++)
        for (long i = x0; i <= x1; i++) {
            if (i < 0 || j < 0 || i >= (long)img->width || j >= (long)img->height)
                continue;
            double r = hypot((double)i - x, (double)j - y);
            size_t p = (size_t)j * img->width + (size_t)i;
            if (r < r_in || r >= r_out || !isfinite(img->sci[p]) || (img->mask && (img->mask[p] & ignore)) || n >= cap)
                continue;
            buf[n++] = img->sci[p];
        }
    return n >= 20 ? clred_median_inplace(buf, n) : NAN;
}

/* A star's stamp, its local sky off, recentred on (x, y) and scaled to unit
 * sum; 0 when a pixel of it is unusable or the sky cannot be measured. */
static int star_stamp(const clred_image *img, double x, double y, const clred_psf_opts *o, float *stamp, float *buf,
                      size_t cap)
{
    size_t n = o->size, half = n / 2, w = img->width, h = img->height;
    long x0 = lround(x) - (long)half - 2, y0 = lround(y) - (long)half - 2;
    for (long j = y0; j < y0 + (long)n + 4; j++)
        for (long i = x0; i < x0 + (long)n + 4; i++) {
            if (i < 0 || j < 0 || i >= (long)w || j >= (long)h)
                return 0;
            size_t p = (size_t)j * w + (size_t)i;
            if (!isfinite(img->sci[p]) || (img->mask && (img->mask[p] & o->ignore_bits)))
                return 0;
        }
    double sky = local_sky(img, x, y, (double)n, o->ignore_bits, buf, cap), s = 0;
    if (!isfinite(sky))
        return 0;
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < n; i++) {
            double v = sample_cubic(img->sci, w, h, x + (double)i - (double)half, y + (double)j - (double)half) - sky;
            stamp[j * n + i] = (float)v;
            s += v;
        }
    if (!(s > 0))
        return 0;
    for (size_t i = 0; i < n * n; i++)
        stamp[i] = (float)(stamp[i] / s);
    return 1;
}

static clred_status measure_on(const clred_image *img, const clred_source *src, size_t nsrc, const clred_psf_opts *o,
                               clred_psf *psf)
{
    size_t n = o->size, *idx = malloc((nsrc ? nsrc : 1) * sizeof *idx);
    size_t maxs = (size_t)(o->max_stars > 0 ? o->max_stars : 50);
    float *stamps = malloc(maxs * n * n * sizeof *stamps), *col = malloc(maxs * sizeof *col);
    clred_status st = CLRED_OK;
    if (!idx || !stamps || !col || !(psf->data = malloc(n * n * sizeof *psf->data)))
        st = clred_fail(CLRED_ERR_MEMORY, "out of memory for PSF stamps");
    size_t cap = (size_t)(4 * (2 * n + 16) * (2 * n + 16));
    float *buf = malloc(cap * sizeof *buf);
    if (st == CLRED_OK && !buf)
        st = clred_fail(CLRED_ERR_MEMORY, "out of memory for PSF sky samples");
    size_t k = st == CLRED_OK ? pick_stars(src, nsrc, o, img->width, img->height, idx) : 0, used = 0;
    for (size_t i = 0; i < k && used < maxs; i++)
        used += star_stamp(img, src[idx[i]].x, src[idx[i]].y, o, stamps + used * n * n, buf, cap);
    if (st == CLRED_OK && used < 3)
        st = clred_fail(CLRED_ERR_INPUT,
                        "PSF: %zu isolated, unsaturated stars with S/N >= %g found (of %zu sources); at least 3 needed",
                        used, o->min_snr, nsrc);
    if (st == CLRED_OK) {
        psf->size = n;
        psf->nstars = used;
        double s = 0;
        for (size_t p = 0; p < n * n; p++) {
            for (size_t i = 0; i < used; i++)
                col[i] = stamps[i * n * n + p];
            psf->data[p] = (float)clred_median_inplace(col, used);
            s += psf->data[p];
        }
        for (size_t p = 0; p < n * n; p++)
            psf->data[p] = (float)(psf->data[p] / s);
        psf_shape(psf);
    }
    free(idx);
    free(stamps);
    free(col);
    free(buf);
    if (st != CLRED_OK)
        clred_psf_free(psf);
    return st;
}

static clred_status check_psf_opts(const clred_psf_opts *o)
{
    if (o->size < 5 || o->size % 2 == 0 || o->size > 255)
        return clred_fail(CLRED_ERR_USAGE, "PSF size must be odd, 5..255 px, got %zu", o->size);
    if (!(o->thresh > 0) || !(o->min_snr > 0))
        return clred_fail(CLRED_ERR_USAGE, "PSF: threshold %g and minimum S/N %g must be > 0", o->thresh, o->min_snr);
    return CLRED_OK;
}

clred_status clred_psf_model_measure_dev(clred_ctx *ctx, const clred_dimage *img, const clred_psf_opts *opts,
                                   clred_psf *psf)
{
    clred_psf_opts d = clred_psf_defaults();
    const clred_psf_opts *o = opts ? opts : &d;
    memset(psf, 0, sizeof *psf);
    CLRED_TRY(check_psf_opts(o));
    clred_detect_opts dopts = clred_detect_defaults();
    dopts.thresh = o->thresh;
    dopts.saturation = o->saturation;
    dopts.ignore_bits = o->ignore_bits;
    clred_source *src = NULL;
    size_t nsrc = 0;
    CLRED_TRY(clred_detect_sources_dev(ctx, img, NULL, NULL, NAN, 0.0, &dopts, &src, &nsrc));
    /* The stamps need the pixels around a few dozen stars: the image comes
     * down once (a PSF is measured once per frame). */
    clred_image host;
    clred_status st = clred_dimage_download(img, &host);
    if (st == CLRED_OK)
        st = measure_on(&host, src, nsrc, o, psf);
    clred_image_free(&host);
    free(src);
    return st;
}

clred_status clred_psf_model_measure(clred_ctx *ctx, const clred_image *img, const clred_psf_opts *opts, clred_psf *psf)
{
    memset(psf, 0, sizeof *psf);
    if (!img || !img->sci)
        return clred_fail(CLRED_ERR_USAGE, "PSF: no image");
    clred_psf_opts d = clred_psf_defaults();
    const clred_psf_opts *o = opts ? opts : &d;
    CLRED_TRY(check_psf_opts(o));
    clred_detect_opts dopts = clred_detect_defaults();
    dopts.thresh = o->thresh;
    dopts.saturation = o->saturation;
    dopts.ignore_bits = o->ignore_bits;
    clred_source *src = NULL;
    size_t nsrc = 0;
    CLRED_TRY(clred_detect_sources(ctx, img, NULL, NULL, NAN, 0.0, &dopts, &src, &nsrc));
    clred_status st = measure_on(img, src, nsrc, o, psf);
    free(src);
    return st;
}
