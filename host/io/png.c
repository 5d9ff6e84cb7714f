/* Quick-look PNGs through libpng: any image with a zscale or asinh stretch,
 * and histograms as bar charts. */
#include <limits.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Writes rows (height rows of width grey bytes, top row first) as a PNG. */
static clred_status write_grey(const char *path, const unsigned char *rows, size_t width, size_t height,
                               int overwrite)
{
    if (width == 0 || height == 0 || width > INT_MAX || height > INT_MAX)
        return clred_fail(CLRED_ERR_USAGE, "%s: cannot write a %zu x %zu PNG", path, width, height);
    char tmp[PATH_MAX];
    FILE *f;
    CLRED_TRY(clred_atomic_open(path, overwrite, tmp, sizeof tmp, &f));
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        remove(tmp);
        return clred_fail(CLRED_ERR_MEMORY, "%s: out of memory for the PNG writer", path);
    }
    /* libpng reports errors by longjmp */
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        remove(tmp);
        return clred_fail(CLRED_ERR_IO, "%s: writing the PNG failed", path);
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (size_t y = 0; y < height; y++)
        png_write_row(png, (png_const_bytep)(rows + y * width));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return clred_atomic_close(f, tmp, path);
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Finite values among every stride-th pixel, at most cap of them, sorted. */
static float *finite_samples(const float *pixels, size_t n, size_t cap, size_t *count)
{
    size_t nfinite = 0;
    for (size_t i = 0; i < n; i++)
        nfinite += isfinite(pixels[i]) != 0;
    size_t stride = cap ? nfinite / cap : 1;
    if (stride < 1)
        stride = 1;
    float *s = malloc((nfinite ? nfinite : 1) * sizeof *s);
    if (!s)
        return NULL;
    size_t k = 0, seen = 0;
    for (size_t i = 0; i < n && (!cap || k < cap); i++) {
        if (!isfinite(pixels[i]))
            continue;
        if (seen++ % stride == 0)
            s[k++] = pixels[i];
    }
    qsort(s, k, sizeof *s, cmp_float);
    *count = k;
    return s;
}

clred_status clred_zscale(const float *pixels, size_t n, double *z1, double *z2)
{
    const double contrast = 0.25, krej = 2.5, max_reject = 0.5;
    const int min_npixels = 5, max_iterations = 5;
    size_t npix = 0;
    float *s = finite_samples(pixels, n, 1000, &npix);
    if (!s)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for zscale samples");
    if (npix == 0) {
        free(s);
        *z1 = *z2 = NAN;
        return CLRED_OK;
    }
    double vmin = s[0], vmax = s[npix - 1];
    unsigned char *bad = calloc(npix, 1), *grown = calloc(npix, 1);
    if (!bad || !grown) {
        free(s), free(bad), free(grown);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for zscale samples");
    }
    size_t minpix = (size_t)(npix * max_reject);
    if (minpix < (size_t)min_npixels)
        minpix = (size_t)min_npixels;
    size_t ngrow = (size_t)(npix * 0.01);
    if (ngrow < 1)
        ngrow = 1;
    size_t ngood = npix, last = npix + 1;
    double slope = 0;
    for (int it = 0; it < max_iterations && !(ngood >= last || ngood < minpix); it++) {
        /* least-squares line through the good samples against their rank */
        double sw = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
        for (size_t i = 0; i < npix; i++)
            if (!bad[i]) {
                double x = (double)i, y = s[i];
                sw += 1, sx += x, sy += y, sxx += x * x, sxy += x * y;
            }
        double det = sw * sxx - sx * sx;
        slope = det != 0 ? (sw * sxy - sx * sy) / det : 0.0;
        double icpt = (sy - slope * sx) / sw, m = 0, q = 0;
        for (size_t i = 0; i < npix; i++)
            if (!bad[i])
                m += s[i] - (icpt + slope * (double)i);
        m /= sw;
        for (size_t i = 0; i < npix; i++)
            if (!bad[i]) {
                double d = s[i] - (icpt + slope * (double)i) - m;
                q += d * d;
            }
        double threshold = krej * sqrt(q / sw);
        for (size_t i = 0; i < npix; i++) {
            double flat = s[i] - (icpt + slope * (double)i);
            if (flat < -threshold || flat > threshold)
                bad[i] = 1;
        }
        /* numpy.convolve(bad, ones(ngrow), 'same'): sample i is bad when one
         * of i - ngrow / 2 .. i + (ngrow - 1) / 2 is */
        size_t before = ngrow / 2, after = (ngrow - 1) / 2;
        for (size_t i = 0; i < npix; i++) {
            size_t lo = i >= before ? i - before : 0, hi = i + after < npix ? i + after : npix - 1;
            grown[i] = 0;
            for (size_t j = lo; j <= hi && !grown[i]; j++)
                grown[i] = bad[j];
        }
        memcpy(bad, grown, npix);
        last = ngood;
        ngood = 0;
        for (size_t i = 0; i < npix; i++)
            ngood += !bad[i];
    }
    if (ngood >= minpix) {
        slope /= contrast;
        double center = (double)((npix - 1) / 2);
        double median = (npix & 1) ? s[npix / 2] : 0.5 * ((double)s[npix / 2 - 1] + s[npix / 2]);
        vmin = fmax(vmin, median - (center - 1) * slope);
        vmax = fmin(vmax, median + ((double)npix - center) * slope);
    }
    free(s), free(bad), free(grown);
    *z1 = vmin;
    *z2 = vmax;
    return CLRED_OK;
}

/* The p-th percentile (0..100) of sorted s[0..n), linear between ranks. */
static double percentile(const float *s, size_t n, double p)
{
    double r = p / 100.0 * (double)(n - 1);
    size_t i = (size_t)r;
    if (i + 1 >= n)
        return s[n - 1];
    return s[i] + (r - (double)i) * ((double)s[i + 1] - s[i]);
}

clred_status clred_png_write(const char *path, const float *pixels, size_t width, size_t height,
                             clred_stretch stretch, int overwrite)
{
    if (!path || !pixels || width == 0 || height == 0)
        return clred_fail(CLRED_ERR_USAGE, "quick-look PNG: no image given");
    size_t n = width * height;
    double lo, hi;
    if (stretch == CLRED_STRETCH_ZSCALE) {
        CLRED_TRY(clred_zscale(pixels, n, &lo, &hi));
    } else if (stretch == CLRED_STRETCH_ASINH) {
        size_t k = 0;
        float *s = finite_samples(pixels, n, 100000, &k);
        if (!s)
            return clred_fail(CLRED_ERR_MEMORY, "out of memory for the stretch of %s", path);
        lo = k ? percentile(s, k, 0.25) : NAN;
        hi = k ? percentile(s, k, 99.75) : NAN;
        free(s);
    } else {
        return clred_fail(CLRED_ERR_USAGE, "quick-look PNG: unknown stretch %d", (int)stretch);
    }
    unsigned char *rows = malloc(n);
    if (!rows)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for %s", path);
    double span = hi > lo ? hi - lo : 1.0, a = 10.0, norm = asinh(a);
    for (size_t y = 0; y < height; y++)
        for (size_t x = 0; x < width; x++) {
            double v = pixels[(height - 1 - y) * width + x], t = (v - lo) / span;
            if (!isfinite(v)) {
                rows[y * width + x] = 0;
                continue;
            }
            t = t < 0 ? 0 : t > 1 ? 1 : t;
            if (stretch == CLRED_STRETCH_ASINH)
                t = asinh(a * t) / norm;
            rows[y * width + x] = (unsigned char)lround(255.0 * t);
        }
    clred_status st = write_grey(path, rows, width, height, overwrite);
    free(rows);
    return st;
}

clred_status clred_histogram_png(const char *path, const clred_map_stats *s, size_t width, size_t height,
                                 int overwrite)
{
    if (!path || !s || !s->counts || s->nbins == 0)
        return clred_fail(CLRED_ERR_USAGE, "histogram PNG: no histogram given");
    if (width == 0)
        width = 512;
    if (height == 0)
        height = 256;
    if (width < s->nbins || height < 8)
        return clred_fail(CLRED_ERR_USAGE, "histogram PNG: %zu x %zu pixels cannot show %zu bins", width, height,
                          s->nbins);
    size_t top = 1;
    for (size_t b = 0; b < s->nbins; b++)
        if (s->counts[b] > top)
            top = s->counts[b];
    unsigned char *rows = malloc(width * height);
    if (!rows)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for %s", path);
    memset(rows, 255, width * height);
    for (size_t x = 0; x < width; x++) {
        size_t b = x * s->nbins / width;
        size_t bar = (size_t)llround((double)s->counts[b] / (double)top * (double)(height - 1));
        for (size_t k = 0; k < bar; k++)
            rows[(height - 1 - k) * width + x] = 40;
    }
    clred_status st = write_grey(path, rows, width, height, overwrite);
    free(rows);
    return st;
}
