/* Source detection and measurement. The matched filter, the threshold, the
 * labelling of connected components and the measurements run on the device;
 * the host turns the label map into pixel lists and splits components with
 * several significant peaks (deblending), which touches only detected pixels. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define M_NOUT 10 /* floats per source from measure_sources (kernels/sources.cl) */
#define COL_ROWS 4 /* output rows per work-item of filter_cols (kernels/sources.cl) */
#define MAX_MOMENT_ITERS 60 /* ~15 steps for a bright star; faint or extended sources need more */

clred_detect_opts clred_detect_defaults(void)
{
    clred_detect_opts o;
    memset(&o, 0, sizeof o);
    o.thresh = 1.5;
    o.minarea = 5;
    o.fwhm = 3.0;
    o.deblend_contrast = 0.2;
    o.deblend_nthresh = 32;
    o.deblend_mincont = 0.005;
    o.clean = 1;
    o.clean_param = 1.0;
    o.saturation = 0.0;
    o.ignore_bits = CLRED_MASK_UNUSABLE;
    o.segmentation = NULL;
    return o;
}

/* ------------------------------------------------------------ background */

/* A regular subsample of at most ~250k pixels is plenty for two numbers:
 * the median's standard error is then 0.0025 of the RMS. */
static size_t background_step(size_t npix) { return npix / 250000 + 1; }

/* Float keys that sort as unsigned integers in the floats' order. */
static uint32_t float_order_key(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u & 0x80000000u ? ~u : u | 0x80000000u;
}

static float key_float(uint32_t k)
{
    uint32_t u = k & 0x80000000u ? k & 0x7fffffffu : ~k;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Sorts the finite v[0..m) ascending: their keys, least significant digit
 * first, 11 bits a pass (three passes). */
static clred_status sort_floats(float *v, size_t m)
{
    enum { DIGIT = 11, BUCKETS = 1 << DIGIT };
    uint32_t *k = malloc(2 * (m ? m : 1) * sizeof *k), *tmp = k + m;
    if (!k)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory sorting %zu background samples", m);
    for (size_t i = 0; i < m; i++)
        k[i] = float_order_key(v[i]);
    size_t count[BUCKETS];
    uint32_t *src = k, *dst = tmp;
    for (unsigned shift = 0; shift < 32; shift += DIGIT) {
        memset(count, 0, sizeof count);
        for (size_t i = 0; i < m; i++)
            count[(src[i] >> shift) & (BUCKETS - 1)]++;
        size_t sum = 0;
        for (size_t b = 0; b < BUCKETS; b++) {
            size_t c = count[b];
            count[b] = sum;
            sum += c;
        }
        for (size_t i = 0; i < m; i++)
            dst[count[(src[i] >> shift) & (BUCKETS - 1)]++] = src[i];
        uint32_t *t = src;
        src = dst;
        dst = t;
    }
    for (size_t i = 0; i < m; i++)
        v[i] = key_float(src[i]);
    free(k);
    return CLRED_OK;
}

/* The 3-sigma clipped median and standard deviation of the finite samples
 * v[0..m) (sorted in place). Sorted once: each round's kept values are a run
 * of the sorted samples, so the median is read off and the clip found by
 * bisection, which keeps what sorting every round would. */
static clred_status clipped_level(float *v, size_t m, double *level, double *rms)
{
    if (m < 3)
        return clred_fail(CLRED_ERR_INPUT, "too few usable pixels (%zu) for a global background", m);
    CLRED_TRY(sort_floats(v, m));
    const float *s = v;
    size_t lo = 0, hi = m;
    double med = 0, sd = 0;
    for (int it = 0; it < 10; it++) {
        size_t k = hi - lo;
        med = 0.5 * ((double)s[lo + (k - 1) / 2] + (double)s[lo + k / 2]);
        /* sums about the median (close to the mean, so the variance's two
         * terms do not cancel) */
        double sum = 0, sum2 = 0;
        for (size_t i = lo; i < hi; i++) {
            double d = (double)s[i] - med;
            sum += d;
            sum2 += d * d;
        }
        double dm = sum / (double)k;
        sd = k > 1 ? sqrt(fmax(sum2 - dm * sum, 0.0) / (double)(k - 1)) : 0.0;
        double lo_clip = med - 3.0 * sd, hi_clip = med + 3.0 * sd;
        /* the first kept value and the first above the clip */
        size_t a = lo, b = hi;
        while (a < b) {
            size_t c = a + (b - a) / 2;
            if ((double)s[c] < lo_clip)
                a = c + 1;
            else
                b = c;
        }
        size_t nlo = a;
        b = hi;
        while (a < b) {
            size_t c = a + (b - a) / 2;
            if ((double)s[c] <= hi_clip)
                a = c + 1;
            else
                b = c;
        }
        size_t nk = a - nlo;
        if (nk == k || nk < 3)
            break;
        lo = nlo;
        hi = a;
    }
    *level = med;
    *rms = sd;
    return CLRED_OK;
}

clred_status clred_global_background(const clred_image *img, uint16_t ignore_bits, double *level, double *rms)
{
    size_t n = img->width * img->height, step = background_step(n);
    float *v = malloc((n / step + 1) * sizeof *v);
    if (!v)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory estimating the background of a %zu x %zu image",
                          img->width, img->height);
    size_t m = 0;
    for (size_t i = 0; i < n; i += step)
        if (isfinite(img->sci[i]) && !(img->mask && (img->mask[i] & ignore_bits)))
            v[m++] = img->sci[i];
    clred_status st = clipped_level(v, m, level, rms);
    free(v);
    return st;
}

/* The same from samples gathered on the device. */
static clred_status global_background_dev(const clred_dimage *img, uint16_t ignore_bits, double *level, double *rms)
{
    size_t n = clred_dimage_pixels(img);
    float *v;
    size_t m;
    CLRED_TRY(clred_dimage_samples(img, 0, 0, img->width, img->height, background_step(n), ignore_bits, &v, &m));
    clred_status st = clipped_level(v, m, level, rms);
    free(v);
    return st;
}

/* -------------------------------------------------------------- filter */

/* The 1-D factor g of a unit-sum Gaussian K(i, j) = g(i) g(j) of the given
 * FWHM, 2 hw + 1 values; returns sqrt(sum K^2) = sum g^2. fwhm 0 gives the
 * identity. */
static double gaussian_factor(double fwhm, int hw, float *g)
{
    double s = fwhm / 2.354820045, sum = 0, sum2 = 0;
    double tmp[2 * 76 + 1]; /* hw <= ceil(1.5 * 50) */
    for (int i = -hw; i <= hw; i++) {
        tmp[i + hw] = (fwhm > 0) ? exp(-0.5 * i * i / (s * s)) : (i == 0);
        sum += tmp[i + hw];
    }
    for (int i = 0; i < 2 * hw + 1; i++) {
        g[i] = (float)(tmp[i] / sum);
        sum2 += (tmp[i] / sum) * (tmp[i] / sum);
    }
    return sum2;
}

/* sum K and sum K^2 rms^2 (scalar rms) of a whole, usable window of
 * K(i, j) = g(i) g(j), in float in filter_cols' order (rows, then columns),
 * which uses them away from the image's top and bottom. */
static void full_window_sums(const float *g, int hw, float rms, float *sk, float *sv)
{
    float rk = 0.0f, rk2 = 0.0f, r2 = rms * rms;
    for (int i = 0; i < 2 * hw + 1; i++) {
        rk += g[i];
        rk2 += (g[i] * g[i]) * r2;
    }
    float a = 0.0f, b = 0.0f;
    for (int j = 0; j < 2 * hw + 1; j++) {
        a += g[j] * rk;
        b += (g[j] * g[j]) * rk2;
    }
    *sk = a;
    *sv = b;
}

/* --------------------------------------------------------- components */

/* The detected pixels the device handed back: index, label, filtered value
 * and RMS of each, in no particular order. */
typedef struct {
    size_t n;
    uint32_t *pix, *label;
    float *f, *rms;
} detected;

static void detected_free(detected *t)
{
    free(t->pix);
    free(t->label);
    free(t->f);
    free(t->rms);
    memset(t, 0, sizeof *t);
}

typedef struct {
    size_t w, h;
    size_t ncomp;
    size_t *start; /* ncomp + 1 offsets into pix */
    size_t *pix;   /* pixel indices grouped by component, raster order within */
    float *f, *rms; /* filtered value and RMS of each pixel of pix */
} components;

static void components_free(components *c)
{
    free(c->start);
    free(c->pix);
    free(c->f);
    free(c->rms);
    memset(c, 0, sizeof *c);
}

typedef struct {
    uint64_t key; /* label << pixel bits | pixel index */
    uint32_t at;  /* position in the detected lists */
} keyed;

/* Sorts k[0..n) by key, whose set bits lie below bit `bits`: least
 * significant digit first, 11 bits a pass, through tmp (n entries). Returns
 * the sorted array (k or tmp). */
static keyed *radix_sort_keyed(keyed *k, keyed *tmp, size_t n, unsigned bits)
{
    enum { DIGIT = 11, BUCKETS = 1 << DIGIT };
    size_t count[BUCKETS];
    for (unsigned shift = 0; shift < bits; shift += DIGIT) {
        memset(count, 0, sizeof count);
        for (size_t i = 0; i < n; i++)
            count[(k[i].key >> shift) & (BUCKETS - 1)]++;
        size_t sum = 0;
        for (size_t b = 0; b < BUCKETS; b++) {
            size_t c = count[b];
            count[b] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++)
            tmp[count[(k[i].key >> shift) & (BUCKETS - 1)]++] = k[i];
        keyed *t = k;
        k = tmp;
        tmp = t;
    }
    return k;
}

/* Groups the detected pixels by label; labels are "smallest linear index + 1"
 * so components come out in raster order of their first pixel, and sorting
 * by (label, index) puts each component's pixels in raster order. */
static clred_status group_components(const detected *t, size_t w, size_t h, components *c)
{
    size_t n = t->n;
    memset(c, 0, sizeof *c);
    c->w = w;
    c->h = h;
    keyed *buf = malloc(2 * (n ? n : 1) * sizeof *buf);
    c->pix = malloc((n ? n : 1) * sizeof *c->pix);
    c->f = malloc((n ? n : 1) * sizeof *c->f);
    c->rms = malloc((n ? n : 1) * sizeof *c->rms);
    if (!buf || !c->pix || !c->f || !c->rms) {
        free(buf);
        components_free(c);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory grouping %zu detected pixels", n);
    }
    /* labels and indices are below w h + 1 */
    unsigned pb = 1;
    while (pb < 32 && ((uint64_t)1 << pb) <= (uint64_t)w * h)
        pb++;
    for (size_t i = 0; i < n; i++)
        buf[i] = (keyed){(uint64_t)t->label[i] << pb | t->pix[i], (uint32_t)i};
    keyed *k = radix_sort_keyed(buf, buf + (n ? n : 1), n, 2 * pb);
    size_t ncomp = 0;
    for (size_t i = 0; i < n; i++)
        ncomp += i == 0 || (k[i].key >> pb) != (k[i - 1].key >> pb);
    c->start = calloc(ncomp + 1, sizeof *c->start);
    if (!c->start) {
        free(buf);
        components_free(c);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory grouping %zu components", ncomp);
    }
    size_t comp = 0;
    uint64_t pix_mask = ((uint64_t)1 << pb) - 1;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && (k[i].key >> pb) != (k[i - 1].key >> pb))
            c->start[++comp] = i;
        c->pix[i] = (size_t)(k[i].key & pix_mask);
        c->f[i] = t->f[k[i].at];
        c->rms[i] = t->rms[k[i].at];
    }
    c->start[ncomp] = n;
    c->ncomp = ncomp;
    free(buf);
    return CLRED_OK;
}

/* ----------------------------------------------------------- deblending */

typedef struct {
    const float *f;  /* filtered value of each pixel of the component */
    size_t w, h;
    int32_t *local;  /* the component's bounding box: local index, -1 outside */
    size_t local_cap;
    size_t bx, by, bw, bh; /* the box */
    /* per component, sized for the largest */
    size_t *order;
    size_t *parent;
    size_t *peak;    /* per union-find root: local index of its highest pixel */
    unsigned char *kept, *active;
    size_t *owner;   /* per pixel: index into the kept-peak list */
    size_t *kept_list;
    size_t *kept_count;
    double *flux;    /* per union-find root: summed filtered value of its region */
    size_t *area;    /* per union-find root: pixels in its region */
    uint32_t *xs, *ys; /* per pixel: its coordinates in the box (one division each, not one per use) */
} deblender;

/* The SExtractor rule's parameters for one component. */
typedef struct {
    int nthresh;    /* levels between the detection threshold and the peak; 0 = the contrast rule */
    double mincont; /* a branch needs this fraction of the component's flux */
    double contrast;
    double t0;      /* the detection threshold at the component's peak, filtered units */
} deblend_rule;

typedef struct {
    uint32_t key; /* float_order_key of the value, inverted: ascending keys are descending values */
    uint32_t i;
} ranked;

/* Orders r[0..n) (entries in ascending i) by descending value, ties by
 * ascending index, so the order is reproducible: insertion for a few, else a
 * stable least-significant-digit radix sort (11 bits a pass) through tmp.
 * Returns the sorted array (r or tmp). */
static ranked *sort_ranked(ranked *r, ranked *tmp, size_t n)
{
    if (n < 64) {
        for (size_t a = 1; a < n; a++) {
            ranked t = r[a];
            size_t b = a;
            for (; b > 0 && r[b - 1].key > t.key; b--)
                r[b] = r[b - 1];
            r[b] = t;
        }
        return r;
    }
    enum { DIGIT = 11, BUCKETS = 1 << DIGIT };
    size_t count[BUCKETS];
    for (unsigned shift = 0; shift < 32; shift += DIGIT) {
        memset(count, 0, sizeof count);
        for (size_t i = 0; i < n; i++)
            count[(r[i].key >> shift) & (BUCKETS - 1)]++;
        size_t sum = 0;
        for (size_t b = 0; b < BUCKETS; b++) {
            size_t c = count[b];
            count[b] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++)
            tmp[count[(r[i].key >> shift) & (BUCKETS - 1)]++] = r[i];
        ranked *t = r;
        r = tmp;
        tmp = t;
    }
    return r;
}

static size_t uf_find(size_t *parent, size_t i)
{
    while (parent[i] != i) {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    return i;
}

/* Assigns every pixel to the nearest kept peak and counts each peak's pixels. */
static void assign_nearest(deblender *d, size_t n, size_t nkept)
{
    for (size_t k = 0; k < nkept; k++)
        d->kept_count[k] = 0;
    for (size_t p = 0; p < n; p++) {
        double x = (double)d->xs[p], y = (double)d->ys[p];
        size_t best = 0;
        double bd = INFINITY;
        for (size_t k = 0; k < nkept; k++) {
            size_t q = d->kept_list[k];
            double dx = x - (double)d->xs[q], dy = y - (double)d->ys[q];
            double dd = dx * dx + dy * dy;
            if (dd < bd) {
                bd = dd;
                best = k;
            }
        }
        d->owner[p] = best;
        d->kept_count[best]++;
    }
}

/* Splits one component (pixels pix[0..n)) into objects, merging pixels from
 * the highest down (union-find): when two regions meet at a saddle v,
 * - SExtractor's multi-threshold rule (nthresh > 0): with the levels
 *   t_i = t0 (P / t0)^(i / nthresh), i = 1..nthresh-1, between the detection
 *   threshold t0 and the component's peak P, both branches are kept when a
 *   level lies above v and at or below the lower branch's peak (the branches
 *   are separate at that level), each has at least minarea pixels and more
 *   than mincont of the component's flux (filtered values summed; a region's
 *   pixels above the saddle stand for its pixels above that level);
 * - the contrast rule (nthresh 0): the lower peak is kept when its drop to v
 *   exceeds contrast * height and min_drop (a detection threshold).
 * Pixels go to the nearest kept peak; objects smaller than minarea are given
 * back to their neighbours. Returns the number of objects; d->owner holds
 * each pixel's object. */
static size_t deblend(deblender *d, const size_t *pix, size_t n, const deblend_rule *rule, const double *min_drop,
                      int minarea)
{
    double contrast = rule->contrast;
    size_t x0 = SIZE_MAX, y0 = SIZE_MAX, x1 = 0, y1 = 0;
    for (size_t p = 0; p < n; p++) {
        size_t y = pix[p] / d->w, x = pix[p] - y * d->w;
        d->xs[p] = (uint32_t)x;
        d->ys[p] = (uint32_t)y;
        x0 = x < x0 ? x : x0;
        y0 = y < y0 ? y : y0;
        x1 = x > x1 ? x : x1;
        y1 = y > y1 ? y : y1;
    }
    d->bx = x0;
    d->by = y0;
    d->bw = x1 - x0 + 1;
    d->bh = y1 - y0 + 1;
    if (d->bw * d->bh > d->local_cap) {
        int32_t *nl = realloc(d->local, d->bw * d->bh * sizeof *nl);
        if (!nl) { /* out of memory: keep the component whole rather than fail */
            for (size_t p = 0; p < n; p++)
                d->owner[p] = 0;
            return 1;
        }
        d->local = nl;
        d->local_cap = d->bw * d->bh;
    }
    for (size_t i = 0; i < d->bw * d->bh; i++)
        d->local[i] = -1;
    for (size_t p = 0; p < n; p++) {
        d->xs[p] -= (uint32_t)x0;
        d->ys[p] -= (uint32_t)y0;
        d->local[d->ys[p] * d->bw + d->xs[p]] = (int32_t)p;
        d->order[p] = p;
        d->parent[p] = p;
        d->peak[p] = p;
        d->kept[p] = 0;
        d->active[p] = 0;
    }
    /* Regions start at the pixels that outrank all their neighbours (by
     * value, ties by index: the merge order below); with one such peak no two
     * regions ever meet, so the component stays whole. */
    const float *vals = d->f;
    size_t npeaks = 0;
    for (size_t p = 0; p < n && npeaks < 2; p++) {
        size_t x = d->xs[p], y = d->ys[p];
        int top = 1;
        for (int dy = -1; dy <= 1 && top; dy++)
            for (int dx = -1; dx <= 1; dx++) {
                if ((dx == 0 && dy == 0) || (x == 0 && dx < 0) || (y == 0 && dy < 0) ||
                    (x + 1 == d->bw && dx > 0) || (y + 1 == d->bh && dy > 0))
                    continue;
                int32_t q = d->local[(y + dy) * d->bw + x + dx];
                if (q >= 0 && (vals[q] > vals[p] || (vals[q] == vals[p] && (size_t)q < p))) {
                    top = 0;
                    break;
                }
            }
        npeaks += top;
    }
    if (npeaks < 2) {
        for (size_t p = 0; p < n; p++)
            d->owner[p] = 0;
        return 1;
    }
    /* order holds local indices sorted by the filtered value of their pixel */
    ranked *rank = malloc(2 * n * sizeof *rank);
    if (!rank) { /* out of memory: keep the component whole rather than fail */
        for (size_t p = 0; p < n; p++)
            d->owner[p] = 0;
        return 1;
    }
    for (size_t p = 0; p < n; p++)
        rank[p] = (ranked){~float_order_key(vals[p]), (uint32_t)p};
    const ranked *sorted = sort_ranked(rank, rank + n, n);
    double total = 0, top = vals[sorted[0].i];
    for (size_t p = 0; p < n; p++) {
        d->order[p] = sorted[p].i;
        total += vals[sorted[p].i];
    }
    free(rank);
    d->kept[d->order[0]] = 1;
    double span = rule->t0 > 0 && top > rule->t0 ? log(top / rule->t0) : 0.0;
    for (size_t r = 0; r < n; r++) {
        size_t p = d->order[r];
        d->active[p] = 1;
        d->flux[p] = vals[p];
        d->area[p] = 1;
        size_t x = d->xs[p], y = d->ys[p];
        for (int dy = -1; dy <= 1; dy++)
            for (int dx = -1; dx <= 1; dx++) {
                if ((dx == 0 && dy == 0) || (x == 0 && dx < 0) || (y == 0 && dy < 0) ||
                    (x + 1 == d->bw && dx > 0) || (y + 1 == d->bh && dy > 0))
                    continue;
                int32_t q = d->local[(y + dy) * d->bw + x + dx];
                if (q < 0 || !d->active[q])
                    continue;
                size_t a = uf_find(d->parent, p), b = uf_find(d->parent, (size_t)q);
                if (a == b)
                    continue;
                size_t low = vals[d->peak[a]] < vals[d->peak[b]] ? a : b;
                size_t high = low == a ? b : a;
                double height = vals[d->peak[low]];
                if (rule->nthresh > 0) {
                    if (span > 0 && d->area[low] >= (size_t)minarea && d->area[high] >= (size_t)minarea &&
                        d->flux[low] > rule->mincont * total && d->flux[high] > rule->mincont * total) {
                        double v = vals[p];
                        int i = v > rule->t0 ? (int)floor(rule->nthresh * log(v / rule->t0) / span) + 1 : 1;
                        double level = rule->t0 * exp(span * i / rule->nthresh);
                        if (i < rule->nthresh && level > v && level <= height) {
                            d->kept[d->peak[low]] = 1;
                            d->kept[d->peak[high]] = 1;
                        }
                    }
                } else {
                    double drop = height - (double)vals[p];
                    if (contrast > 0 && drop > contrast * height && drop > min_drop[d->peak[low]])
                        d->kept[d->peak[low]] = 1;
                }
                d->parent[low] = high;
                d->flux[high] += d->flux[low];
                d->area[high] += d->area[low];
            }
    }
    size_t nkept = 0;
    for (size_t p = 0; p < n; p++)
        if (d->kept[p])
            d->kept_list[nkept++] = p;
    for (;;) {
        assign_nearest(d, n, nkept);
        if (nkept <= 1)
            break;
        size_t smallest = 0;
        for (size_t k = 1; k < nkept; k++)
            if (d->kept_count[k] < d->kept_count[smallest])
                smallest = k;
        if (d->kept_count[smallest] >= (size_t)minarea)
            break;
        d->kept_list[smallest] = d->kept_list[--nkept];
    }
    return nkept;
}

/* ---------------------------------------------------------------- main */

typedef struct {
    cl_mem none, kern, count, g_label, g_f, g_rms, seg_pix, seg_id, bbox, meas;
    /* image-sized planes from the context's pool, so that frame after frame
     * reuses them instead of page-faulting fresh ones in */
    cl_mem filtered, labels, list, sum_d, sum_k2v;
    size_t plane_bytes, sum_bytes; /* sum_d and sum_k2v are sum_bytes (a padded pitch) */
    cl_uint ndetected;             /* the entries of list: the nonzero pixels of labels */
} detect_buffers;

static clred_status take_plane(clred_ctx *ctx, detect_buffers *b, cl_mem *buf, const char *what)
{
    return clred_pool_take(ctx, b->plane_bytes, what, buf);
}

static void release_buffers(clred_ctx *ctx, detect_buffers *b)
{
    cl_mem *all[] = {&b->none,   &b->kern, &b->count,  &b->g_label, &b->g_f,
                     &b->g_rms,  &b->seg_pix, &b->seg_id, &b->bbox, &b->meas};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        clred_release(all[i]);
    cl_mem *planes[] = {&b->filtered, &b->labels, &b->list};
    for (size_t i = 0; i < sizeof planes / sizeof *planes; i++)
        if (*planes[i])
            clred_pool_give(ctx, planes[i], b->plane_bytes);
    cl_mem *sums[] = {&b->sum_d, &b->sum_k2v};
    for (size_t i = 0; i < sizeof sums / sizeof *sums; i++)
        if (*sums[i])
            clred_pool_give(ctx, sums[i], b->sum_bytes);
}

/* The background and RMS (maps or scalars) and the image's planes, as the
 * kernels' DETECT_PIXEL_ARGS take them. */
typedef struct {
    cl_mem sci, mask, bkg, rms;
    cl_int has_mask, use_bkg, use_rms;
    cl_ushort ignore;
    cl_float bkg_value, rms_value;
} pixel_args;

#define PIXEL_ARGS(p)                                                                                              \
    CLRED_ARG((p).sci), CLRED_ARG((p).mask), CLRED_ARG((p).has_mask), CLRED_ARG((p).ignore), CLRED_ARG((p).bkg),   \
        CLRED_ARG((p).use_bkg), CLRED_ARG((p).bkg_value), CLRED_ARG((p).rms), CLRED_ARG((p).use_rms),              \
        CLRED_ARG((p).rms_value)

static clred_status check_inputs(const clred_dimage *img, const clred_dimage *bkg, const clred_dimage *rms,
                                 const clred_detect_opts *o)
{
    if (!img)
        return clred_fail(CLRED_ERR_USAGE, "detect_sources: no image");
    if ((uint64_t)img->width * img->height >= 0xffffffffu)
        return clred_fail(CLRED_ERR_USAGE, "detect_sources: %zu x %zu image has too many pixels for 32-bit labels",
                          img->width, img->height);
    if (bkg && (bkg->width != img->width || bkg->height != img->height))
        return clred_fail(CLRED_ERR_INPUT, "detect_sources: background is %zu x %zu, image %zu x %zu", bkg->width,
                          bkg->height, img->width, img->height);
    if (rms && (rms->width != img->width || rms->height != img->height))
        return clred_fail(CLRED_ERR_INPUT, "detect_sources: RMS map is %zu x %zu, image %zu x %zu", rms->width,
                          rms->height, img->width, img->height);
    if (o->filter && (!o->filter->k || o->filter->width < 1 || o->filter->height < 1 || o->filter->width > 31 ||
                      o->filter->height > 31 || o->filter->width % 2 == 0 || o->filter->height % 2 == 0))
        return clred_fail(CLRED_ERR_USAGE, "detect_sources: the filter must have odd sides of at most 31 (%d x %d)",
                          o->filter->width, o->filter->height);
    if (o->deblend_nthresh < 0 || o->deblend_nthresh > 1024 || !(o->deblend_mincont >= 0) ||
        !(o->deblend_mincont <= 1) || !(o->clean_param > 0) || o->clean_param > 100)
        return clred_fail(CLRED_ERR_USAGE,
                          "detect_sources: invalid options (deblend_nthresh %d in [0, 1024], deblend_mincont %g in "
                          "[0, 1], clean_param %g in (0, 100])",
                          o->deblend_nthresh, o->deblend_mincont, o->clean_param);
    if (!(o->thresh > 0) || o->minarea < 1 || !(o->fwhm >= 0) || o->fwhm > 50 || !(o->deblend_contrast >= 0) ||
        !(o->deblend_contrast < 1))
        return clred_fail(CLRED_ERR_USAGE,
                          "detect_sources: invalid options (thresh %g > 0, minarea %d >= 1, fwhm %g in [0, 50], "
                          "deblend contrast %g in [0, 1))",
                          o->thresh, o->minarea, o->fwhm, o->deblend_contrast);
    return CLRED_OK;
}

/* Filter, threshold and label on the device; hands back the detected
 * pixels (index, label, filtered value, RMS), not whole maps. */
static clred_status detect_maps(clred_ctx *ctx, detect_buffers *b, const clred_dimage *img, const pixel_args *pa,
                                const clred_detect_opts *o, detected *t)
{
    size_t n = img->width * img->height, fb = n * sizeof(float);
    cl_int w = (cl_int)img->width, h = (cl_int)img->height;
    cl_kernel k;
    b->plane_bytes = fb;
    CLRED_TRY(take_plane(ctx, b, &b->filtered, "filtered image"));
    CLRED_TRY(take_plane(ctx, b, &b->labels, "labels"));
    CLRED_TRY(clred_buffer(ctx, CL_MEM_READ_WRITE, sizeof(cl_uint), NULL, &b->count, "count"));
    CLRED_TRY(take_plane(ctx, b, &b->list, "detected pixels"));
    cl_uint count = 0;
    CLRED_TRY(clred_upload(ctx, b->count, 0, sizeof count, &count));
    if (o->filter) {
        /* A filter file: one 2-D pass. NORM kernels are scaled to unit sum
         * so that thresh keeps its meaning (per-pixel RMS units). */
        const clred_conv_filter *cf = o->filter;
        size_t nk = (size_t)cf->width * (size_t)cf->height;
        float *kv = malloc(nk * sizeof *kv);
        if (!kv)
            return clred_fail(CLRED_ERR_MEMORY, "out of memory for the detection filter");
        double sum = 0, sum2 = 0;
        for (size_t i = 0; i < nk; i++)
            sum += cf->k[i];
        for (size_t i = 0; i < nk; i++) {
            kv[i] = cf->normalize ? (float)(cf->k[i] / sum) : cf->k[i];
            sum2 += (double)kv[i] * kv[i];
        }
        clred_status st = clred_buffer(ctx, CL_MEM_READ_ONLY, nk * sizeof *kv, kv, &b->kern, "filter");
        free(kv);
        CLRED_TRY(st);
        cl_int kw = cf->width, kh = cf->height, renorm = cf->normalize != 0;
        cl_float snr = (cl_float)(o->thresh / sqrt(sum2));
        size_t g2[2] = {clred_round_up(img->width, 16), clred_round_up(img->height, 8)};
        CLRED_TRY(clred_kernel(ctx, "sources", NULL, "filter_2d", &k));
        CLRED_TRY(clred_args(k, "filter_2d", PIXEL_ARGS(*pa), CLRED_ARG(w), CLRED_ARG(h), CLRED_ARG(b->kern),
                             CLRED_ARG(kw), CLRED_ARG(kh), CLRED_ARG(renorm), CLRED_ARG(snr), CLRED_ARG(b->filtered),
                             CLRED_ARG(b->labels), CLRED_ARG(b->list), CLRED_ARG(b->count), (size_t)0));
        CLRED_TRY(clred_run_tiled(ctx, k, "filter_2d", 2, g2));
    } else {
        cl_int hw = o->fwhm > 0 ? (cl_int)ceil(1.5 * o->fwhm) : 0;
        float g[2 * 76 + 1];
        double norm2 = gaussian_factor(o->fwhm, hw, g);
        CLRED_TRY(clred_buffer(ctx, CL_MEM_READ_ONLY, (size_t)(2 * hw + 1) * sizeof *g, g, &b->kern, "filter"));
        /* the row sums' pitch: a cache line past a multiple of 16 floats, so
         * that a power-of-two width does not put a column's rows in one
         * cache set */
        cl_int pitch = (cl_int)(clred_round_up(img->width, 16) + 16);
        b->sum_bytes = (size_t)pitch * img->height * sizeof(float);
        CLRED_TRY(clred_pool_take(ctx, b->sum_bytes, "row sums", &b->sum_d));
        if (pa->use_rms)
            CLRED_TRY(clred_pool_take(ctx, b->sum_bytes, "row sums", &b->sum_k2v));
        cl_mem sum_k2v = pa->use_rms ? b->sum_k2v : b->none;
        /* Global sizes are rounded up (the kernels check bounds) so a GPU can pick
         * full work-groups for any image width. */
        size_t g2[2] = {clred_round_up(clred_vector_groups(ctx, img->width), 16), clred_round_up(img->height, 8)};
        CLRED_TRY(clred_kernel(ctx, "sources", NULL, "filter_rows", &k));
        CLRED_TRY(clred_args(k, "filter_rows", PIXEL_ARGS(*pa), CLRED_ARG(w), CLRED_ARG(h), CLRED_ARG(b->kern),
                             CLRED_ARG(hw), CLRED_ARG(pitch), CLRED_ARG(b->sum_d), CLRED_ARG(sum_k2v), (size_t)0));
        CLRED_TRY(clred_run_tiled(ctx, k, "filter_rows", 2, g2));
        cl_float snr = (cl_float)(o->thresh / norm2), sk_full, sv_full;
        full_window_sums(g, hw, pa->rms_value, &sk_full, &sv_full);
        CLRED_TRY(clred_kernel(ctx, "sources", NULL, "filter_cols", &k));
        CLRED_TRY(clred_args(k, "filter_cols", PIXEL_ARGS(*pa), CLRED_ARG(b->sum_d), CLRED_ARG(sum_k2v),
                             CLRED_ARG(w), CLRED_ARG(h), CLRED_ARG(b->kern), CLRED_ARG(hw), CLRED_ARG(pitch),
                             CLRED_ARG(sk_full),
                             CLRED_ARG(sv_full), CLRED_ARG(snr),
                             CLRED_ARG(b->filtered), CLRED_ARG(b->labels), CLRED_ARG(b->list), CLRED_ARG(b->count),
                             (size_t)0));
        size_t gc[2] = {g2[0], clred_round_up((img->height + COL_ROWS - 1) / COL_ROWS, 8)};
        CLRED_TRY(clred_run_tiled(ctx, k, "filter_cols", 2, gc));
    }
    CLRED_TRY(clred_download(ctx, b->count, 0, sizeof count, &count));
    if (b->sum_d)
        clred_pool_give(ctx, &b->sum_d, b->sum_bytes);
    if (b->sum_k2v)
        clred_pool_give(ctx, &b->sum_k2v, b->sum_bytes);
    size_t gl = count;
    if (count) {
        CLRED_TRY(clred_kernel(ctx, "sources", NULL, "label_union", &k));
        CLRED_TRY(clred_args(k, "label_union", CLRED_ARG(b->labels), CLRED_ARG(b->list), CLRED_ARG(count), CLRED_ARG(w),
                             CLRED_ARG(h), (size_t)0));
        CLRED_TRY(clred_run_tiled(ctx, k, "label_union", 1, &gl));
    }
    t->n = count;
    b->ndetected = count;
    size_t m = count ? count : 1;
    t->pix = malloc(m * sizeof *t->pix);
    t->label = malloc(m * sizeof *t->label);
    t->f = malloc(m * sizeof *t->f);
    t->rms = malloc(m * sizeof *t->rms);
    if (!t->pix || !t->label || !t->f || !t->rms)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for %u detected pixels", count);
    if (!count)
        return CLRED_OK;
    CLRED_TRY(clred_buffer(ctx, CL_MEM_WRITE_ONLY, count * sizeof(cl_uint), NULL, &b->g_label, "labels"));
    CLRED_TRY(clred_buffer(ctx, CL_MEM_WRITE_ONLY, count * sizeof(float), NULL, &b->g_f, "filtered values"));
    CLRED_TRY(clred_buffer(ctx, CL_MEM_WRITE_ONLY, count * sizeof(float), NULL, &b->g_rms, "RMS values"));
    CLRED_TRY(clred_kernel(ctx, "sources", NULL, "gather_detected", &k));
    CLRED_TRY(clred_args(k, "gather_detected", CLRED_ARG(b->list), CLRED_ARG(count), CLRED_ARG(b->labels),
                         CLRED_ARG(b->filtered), CLRED_ARG(pa->rms), CLRED_ARG(pa->use_rms), CLRED_ARG(pa->rms_value),
                         CLRED_ARG(b->g_label), CLRED_ARG(b->g_f), CLRED_ARG(b->g_rms), (size_t)0));
    CLRED_TRY(clred_run_tiled(ctx, k, "gather_detected", 1, &gl));
    CLRED_TRY(clred_download(ctx, b->list, 0, count * sizeof(cl_uint), t->pix));
    CLRED_TRY(clred_download(ctx, b->g_label, 0, count * sizeof(cl_uint), t->label));
    CLRED_TRY(clred_download(ctx, b->g_f, 0, count * sizeof(float), t->f));
    CLRED_TRY(clred_download(ctx, b->g_rms, 0, count * sizeof(float), t->rms));
    return CLRED_OK;
}

typedef struct {
    uint32_t *pix;  /* the objects' pixels (image indices) */
    int32_t *id;    /* object index + 1 of each */
    size_t npix;
    cl_int *bbox; /* 4 per object */
    unsigned char *blended;
    double *fdflux;  /* per object: summed filtered value of its pixels (for CLEAN) */
    double *dthresh; /* per object: the detection threshold at its highest filtered pixel */
    size_t nobj;
} objects;

static void objects_free(objects *ob)
{
    free(ob->pix);
    free(ob->id);
    free(ob->bbox);
    free(ob->blended);
    free(ob->fdflux);
    free(ob->dthresh);
    memset(ob, 0, sizeof *ob);
}

/* Deblends every component of at least minarea pixels into objects, listing
 * each object's pixels and its box. */
static clred_status build_objects(const components *c, const clred_detect_opts *o, objects *ob)
{
    size_t w = c->w, maxn = 1, total = c->ncomp ? c->start[c->ncomp] : 0;
    for (size_t k = 0; k < c->ncomp; k++)
        if (c->start[k + 1] - c->start[k] > maxn)
            maxn = c->start[k + 1] - c->start[k];
    deblender d = {.w = c->w, .h = c->h};
    d.order = malloc(maxn * sizeof(size_t));
    d.parent = malloc(maxn * sizeof(size_t));
    d.peak = malloc(maxn * sizeof(size_t));
    d.kept = malloc(maxn);
    d.active = malloc(maxn);
    d.owner = malloc(maxn * sizeof(size_t));
    d.kept_list = malloc(maxn * sizeof(size_t));
    d.kept_count = malloc(maxn * sizeof(size_t));
    d.flux = malloc(maxn * sizeof(double));
    d.area = malloc(maxn * sizeof(size_t));
    d.xs = malloc(maxn * sizeof(uint32_t));
    d.ys = malloc(maxn * sizeof(uint32_t));
    double *min_drop = malloc(maxn * sizeof *min_drop);
    size_t cap = c->ncomp + 16;
    ob->pix = malloc((total ? total : 1) * sizeof *ob->pix);
    ob->id = malloc((total ? total : 1) * sizeof *ob->id);
    ob->npix = 0;
    ob->bbox = malloc(cap * 4 * sizeof *ob->bbox);
    ob->blended = malloc(cap);
    ob->fdflux = malloc(cap * sizeof *ob->fdflux);
    ob->dthresh = malloc(cap * sizeof *ob->dthresh);
    double *fdpeak = malloc(cap * sizeof *fdpeak);
    ob->nobj = 0;
    clred_status st = CLRED_OK;
    if (!d.order || !d.parent || !d.peak || !d.kept || !d.active || !d.owner || !d.kept_list || !d.kept_count ||
        !d.flux || !d.area || !d.xs || !d.ys || !min_drop || !ob->pix || !ob->id || !ob->bbox || !ob->blended || !ob->fdflux ||
        !ob->dthresh || !fdpeak)
        st = clred_fail(CLRED_ERR_MEMORY, "out of memory deblending %zu components", c->ncomp);
    for (size_t k = 0; k < c->ncomp && st == CLRED_OK; k++) {
        const size_t *pix = c->pix + c->start[k];
        size_t np = c->start[k + 1] - c->start[k];
        if (np < (size_t)o->minarea)
            continue;
        for (size_t p = 0; p < np; p++)
            min_drop[p] = o->thresh * (double)c->rms[c->start[k] + p];
        d.f = c->f + c->start[k];
        /* the detection threshold at the component's peak, in filtered units */
        size_t top = 0;
        for (size_t p = 1; p < np; p++)
            if (d.f[p] > d.f[top])
                top = p;
        deblend_rule rule = {o->deblend_nthresh, o->deblend_mincont, o->deblend_contrast, min_drop[top]};
        size_t nk = (o->deblend_contrast > 0 && o->deblend_mincont < 1 && np >= 2 * (size_t)o->minarea)
                        ? deblend(&d, pix, np, &rule, min_drop, o->minarea)
                        : 1;
        if (nk == 1)
            for (size_t p = 0; p < np; p++)
                d.owner[p] = 0;
        if (ob->nobj + nk > cap) {
            cap = 2 * (ob->nobj + nk);
            cl_int *nb = realloc(ob->bbox, cap * 4 * sizeof *nb);
            unsigned char *nbl = nb ? realloc(ob->blended, cap) : NULL;
            double *nf = nbl ? realloc(ob->fdflux, cap * sizeof *nf) : NULL;
            double *nt = nf ? realloc(ob->dthresh, cap * sizeof *nt) : NULL;
            double *np2 = nt ? realloc(fdpeak, cap * sizeof *np2) : NULL;
            if (nb)
                ob->bbox = nb;
            if (nbl)
                ob->blended = nbl;
            if (nf)
                ob->fdflux = nf;
            if (nt)
                ob->dthresh = nt;
            if (np2)
                fdpeak = np2;
            if (!nb || !nbl || !nf || !nt || !np2) {
                st = clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu sources", cap);
                break;
            }
        }
        for (size_t j = 0; j < nk; j++) {
            cl_int *bb = ob->bbox + 4 * (ob->nobj + j);
            bb[0] = bb[1] = INT32_MAX;
            bb[2] = bb[3] = -1;
            ob->blended[ob->nobj + j] = nk > 1;
            ob->fdflux[ob->nobj + j] = 0;
            ob->dthresh[ob->nobj + j] = 0;
            fdpeak[ob->nobj + j] = -INFINITY;
        }
        for (size_t p = 0; p < np; p++) {
            size_t obj = ob->nobj + d.owner[p];
            cl_int x = (cl_int)(pix[p] % w), y = (cl_int)(pix[p] / w);
            cl_int *bb = ob->bbox + 4 * obj;
            ob->pix[ob->npix] = (uint32_t)pix[p];
            ob->id[ob->npix++] = (int32_t)obj + 1;
            ob->fdflux[obj] += d.f[p];
            if (d.f[p] > fdpeak[obj]) {
                fdpeak[obj] = d.f[p];
                ob->dthresh[obj] = min_drop[p];
            }
            if (x < bb[0]) bb[0] = x;
            if (y < bb[1]) bb[1] = y;
            if (x > bb[2]) bb[2] = x;
            if (y > bb[3]) bb[3] = y;
        }
        ob->nobj += nk;
    }
    free(d.local);
    free(d.order);
    free(d.parent);
    free(d.peak);
    free(d.kept);
    free(d.active);
    free(d.owner);
    free(d.kept_list);
    free(d.kept_count);
    free(d.flux);
    free(d.area);
    free(d.xs);
    free(d.ys);
    free(fdpeak);
    free(min_drop);
    return st;
}

static void shape_from_covariance(double cxx, double cyy, double cxy, clred_source *s)
{
    double mean = 0.5 * (cxx + cyy);
    double diff = sqrt(0.25 * (cxx - cyy) * (cxx - cyy) + cxy * cxy);
    double a2 = mean + diff, b2 = mean - diff;
    s->a = a2 > 0 ? sqrt(a2) : 0.0;
    s->b = b2 > 0 ? sqrt(b2) : 0.0;
    s->theta = 0.5 * atan2(2.0 * cxy, cxx - cyy) * (180.0 / M_PI);
    if (s->theta <= -90.0)
        s->theta += 180.0;
    s->fwhm = 2.3548200450309493 * sqrt(0.5 * (s->a * s->a + s->b * s->b));
    s->ellipticity = s->a > 0 ? 1.0 - s->b / s->a : 0.0;
}

static clred_status measure(clred_ctx *ctx, detect_buffers *b, const clred_dimage *img, const pixel_args *pa,
                            const clred_detect_opts *o, const objects *ob, clred_source *out)
{
    cl_int w = (cl_int)img->width, h = (cl_int)img->height;
    /* The segmentation map on the device: the labels' buffer, zeroed at the
     * detected pixels (the only nonzero ones), takes the objects' pixels. */
    cl_kernel k;
    cl_uint npix = (cl_uint)ob->npix;
    if (b->ndetected) {
        CLRED_TRY(clred_kernel(ctx, "sources", NULL, "clear_listed", &k));
        CLRED_TRY(clred_args(k, "clear_listed", CLRED_ARG(b->list), CLRED_ARG(b->ndetected), CLRED_ARG(b->labels),
                             (size_t)0));
        size_t gs = b->ndetected;
        CLRED_TRY(clred_run_tiled(ctx, k, "clear_listed", 1, &gs));
    }
    if (npix) {
        CLRED_TRY(clred_buffer(ctx, CL_MEM_READ_ONLY, ob->npix * sizeof(cl_uint), ob->pix, &b->seg_pix, "pixels"));
        CLRED_TRY(clred_buffer(ctx, CL_MEM_READ_ONLY, ob->npix * sizeof(cl_int), ob->id, &b->seg_id, "object ids"));
        CLRED_TRY(clred_kernel(ctx, "sources", NULL, "scatter_segments", &k));
        CLRED_TRY(clred_args(k, "scatter_segments", CLRED_ARG(b->seg_pix), CLRED_ARG(b->seg_id), CLRED_ARG(npix),
                             CLRED_ARG(b->labels), (size_t)0));
        size_t gs = ob->npix;
        CLRED_TRY(clred_run_tiled(ctx, k, "scatter_segments", 1, &gs));
    }
    CLRED_TRY(clred_buffer(ctx, CL_MEM_READ_ONLY, ob->nobj * 4 * sizeof(cl_int), ob->bbox, &b->bbox, "boxes"));
    CLRED_TRY(clred_buffer(ctx, CL_MEM_WRITE_ONLY, ob->nobj * M_NOUT * sizeof(float), NULL, &b->meas, "measurements"));
    CLRED_TRY(clred_kernel(ctx, "sources", NULL, "measure_sources", &k));
    cl_mem var = clred_dimage_var(img) ? clred_dimage_var(img) : b->none;
    cl_int has_var = clred_dimage_var(img) != NULL, iters = MAX_MOMENT_ITERS;
    cl_uint nobj = (cl_uint)ob->nobj;
    cl_float sat = (cl_float)o->saturation;
    CLRED_TRY(clred_args(k, "measure_sources", PIXEL_ARGS(*pa), CLRED_ARG(var), CLRED_ARG(has_var),
                         CLRED_ARG(b->labels), CLRED_ARG(b->bbox), CLRED_ARG(nobj), CLRED_ARG(w), CLRED_ARG(h),
                         CLRED_ARG(sat), CLRED_ARG(iters), CLRED_ARG(b->meas), (size_t)0));
    CLRED_TRY(clred_run_items(ctx, k, "measure_sources", ob->nobj));
    float *m = malloc(ob->nobj * M_NOUT * sizeof *m);
    if (!m)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu measurements", ob->nobj);
    clred_status st = clred_download(ctx, b->meas, 0, ob->nobj * M_NOUT * sizeof *m, m);
    for (size_t i = 0; i < ob->nobj && st == CLRED_OK; i++) {
        const float *r = m + i * M_NOUT;
        clred_source *s = &out[i];
        memset(s, 0, sizeof *s);
        s->x = r[0];
        s->y = r[1];
        s->flux = r[2];
        s->flux_err = sqrt(fmax(r[3], 0.0f));
        s->peak = r[4];
        shape_from_covariance(r[5], r[6], r[7], s);
        s->npix = (size_t)r[8];
        s->flags = (unsigned)r[9] | (ob->blended[i] ? CLRED_SRC_BLENDED : 0u);
    }
    free(m);
    return st;
}

/* Whether source j's model swallows source i (SExtractor's CLEAN test):
 * i lies within 10 (a_i + a_j) of j, where j's profile exceeds i's
 * detection threshold. */
static int clean_swallows(const clred_source *s, const objects *ob, const double *q, const double *amp,
                          const double *alpha, double beta, size_t j, size_t i)
{
    double dx = s[i].x - s[j].x, dy = s[i].y - s[j].y, zone = 10.0 * (s[i].a + s[j].a);
    if (dx * dx + dy * dy >= zone * zone)
        return 0;
    double v = 1.0 + alpha[j] * (q[3 * j] * dx * dx + q[3 * j + 1] * dy * dy + q[3 * j + 2] * dx * dy);
    return v > 1.0 && amp[j] * pow(v, -beta) > ob->dthresh[i];
}

/* CLEAN's candidates by place: square cells (32 px, more for a wide
 * extent: at most ~1024 a side) over the sources' extent, each with a list
 * of the sources whose zone disc touches it. */
typedef struct {
    double x0, y0, cell;
    int nx, ny;
    size_t *head;        /* per cell: first entry, SIZE_MAX when none */
    size_t *next, *src;  /* per entry: next entry of the cell, its source */
    size_t nent, cap;
    size_t *rank;        /* per source: its place in brightness order, once listed */
} clean_grid;

static void clean_grid_free(clean_grid *g)
{
    free(g->head), free(g->next), free(g->src), free(g->rank);
    memset(g, 0, sizeof *g);
}

static int clean_grid_init(clean_grid *g, const clred_source *s, size_t n)
{
    memset(g, 0, sizeof *g);
    double x0 = INFINITY, y0 = INFINITY, x1 = -INFINITY, y1 = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(s[i].x) || !isfinite(s[i].y) || !isfinite(s[i].a))
            return 0;
        x0 = fmin(x0, s[i].x), y0 = fmin(y0, s[i].y);
        x1 = fmax(x1, s[i].x), y1 = fmax(y1, s[i].y);
    }
    if (n == 0 || x1 - x0 > 1e7 || y1 - y0 > 1e7)
        return 0;
    g->x0 = x0;
    g->y0 = y0;
    g->cell = fmax(32.0, fmax(x1 - x0, y1 - y0) / 1024.0);
    g->nx = (int)((x1 - x0) / g->cell) + 1;
    g->ny = (int)((y1 - y0) / g->cell) + 1;
    size_t cells = (size_t)g->nx * (size_t)g->ny;
    g->head = malloc(cells * sizeof *g->head);
    g->rank = malloc(n * sizeof *g->rank);
    g->cap = 4 * n + 16;
    g->next = malloc(g->cap * sizeof *g->next);
    g->src = malloc(g->cap * sizeof *g->src);
    if (!g->head || !g->rank || !g->next || !g->src) {
        clean_grid_free(g);
        return 0;
    }
    for (size_t c = 0; c < cells; c++)
        g->head[c] = SIZE_MAX;
    return 1;
}

/* The cells a disc of radius rad about (x, y) touches, clamped to the grid. */
static void clean_grid_cells(const clean_grid *g, double x, double y, double rad, int *cx0, int *cy0, int *cx1,
                             int *cy1)
{
    double fx0 = floor((x - rad - g->x0) / g->cell), fx1 = floor((x + rad - g->x0) / g->cell);
    double fy0 = floor((y - rad - g->y0) / g->cell), fy1 = floor((y + rad - g->y0) / g->cell);
    *cx0 = (int)fmax(fx0, 0.0);
    *cy0 = (int)fmax(fy0, 0.0);
    *cx1 = (int)fmin(fx1, (double)(g->nx - 1));
    *cy1 = (int)fmin(fy1, (double)(g->ny - 1));
}

/* Lists source i in the cells its zone disc (radius 10 a) touches. */
static int clean_grid_add(clean_grid *g, const clred_source *s, size_t i)
{
    int cx0, cy0, cx1, cy1;
    clean_grid_cells(g, s[i].x, s[i].y, 10.0 * s[i].a, &cx0, &cy0, &cx1, &cy1);
    for (int cy = cy0; cy <= cy1; cy++)
        for (int cx = cx0; cx <= cx1; cx++) {
            if (g->nent == g->cap) {
                size_t nc = 2 * g->cap;
                size_t *nn = realloc(g->next, nc * sizeof *nn);
                if (!nn)
                    return 0;
                g->next = nn;
                size_t *ns = realloc(g->src, nc * sizeof *ns);
                if (!ns)
                    return 0;
                g->src = ns;
                g->cap = nc;
            }
            size_t c = (size_t)cy * g->nx + cx;
            g->src[g->nent] = i;
            g->next[g->nent] = g->head[c];
            g->head[c] = g->nent++;
        }
    return 1;
}

/* SExtractor's CLEAN: each source is modelled by a Moffat profile
 * A (1 + alpha q)^-beta, beta = clean_param, with q the quadratic form of its
 * moments' ellipse, A = filtered flux / (2 pi a b) and alpha set so the
 * model meets its detection threshold on the ellipse whose area is its pixel
 * count. A fainter source within 10 (a + a') whose threshold this model
 * exceeds at its centre lies in the brighter one's wings: it is merged into it
 * (fluxes, variances and pixels added, flags joined). Sources are taken from
 * the brightest, so a merged source's own victims follow it. Returns the
 * number kept; map[i] is source i's index after compaction. */
static size_t clean_sources(clred_source *s, const objects *ob, double beta, size_t *map)
{
    size_t n = ob->nobj;
    size_t *order = malloc(n * sizeof *order), *into = malloc(n * sizeof *into);
    double *amp = malloc(n * sizeof *amp), *alpha = malloc(n * sizeof *alpha), *q = malloc(3 * n * sizeof *q);
    if (!order || !into || !amp || !alpha || !q) { /* out of memory: nothing cleaned */
        for (size_t i = 0; i < n; i++)
            map[i] = i;
        free(order), free(into), free(amp), free(alpha), free(q);
        return n;
    }
    for (size_t i = 0; i < n; i++) {
        order[i] = i;
        into[i] = i;
        double a = fmax(s[i].a, 0.3), b = fmax(s[i].b, 0.3), t = s[i].theta * M_PI / 180.0;
        double c = cos(t), sn = sin(t), unit = M_PI * a * b;
        q[3 * i] = c * c / (a * a) + sn * sn / (b * b);
        q[3 * i + 1] = sn * sn / (a * a) + c * c / (b * b);
        q[3 * i + 2] = 2.0 * c * sn * (1.0 / (a * a) - 1.0 / (b * b));
        amp[i] = ob->fdflux[i] / (2.0 * unit);
        alpha[i] = (ob->dthresh[i] > 0 && amp[i] > ob->dthresh[i])
                       ? (pow(amp[i] / ob->dthresh[i], 1.0 / beta) - 1.0) * unit / (double)s[i].npix
                       : 0.0;
    }
    /* brightest first */
    ranked *rk = malloc(2 * n * sizeof *rk);
    if (rk) {
        for (size_t i = 0; i < n; i++)
            rk[i] = (ranked){~float_order_key((float)ob->fdflux[i]), (uint32_t)i};
        const ranked *sorted = sort_ranked(rk, rk + n, n);
        for (size_t i = 0; i < n; i++)
            order[i] = sorted[i].i;
        free(rk);
    }
    /* The candidates of a source are the brighter kept ones with alpha > 0
     * whose zone meets its own: each such source is listed in the cells of
     * a grid that its zone's disc (radius 10 a) touches, and a source looks
     * in the cells its own disc touches (two discs that meet share a cell),
     * taking the first candidate in brightness order that swallows it. */
    clean_grid g;
    int use_grid = clean_grid_init(&g, s, n);
    for (size_t r = 0; r < n; r++) {
        size_t i = order[r];
        if (use_grid) {
            size_t best = SIZE_MAX;
            int cx0, cy0, cx1, cy1;
            clean_grid_cells(&g, s[i].x, s[i].y, 10.0 * s[i].a, &cx0, &cy0, &cx1, &cy1);
            for (int cy = cy0; cy <= cy1; cy++)
                for (int cx = cx0; cx <= cx1; cx++)
                    for (size_t e = g.head[(size_t)cy * g.nx + cx]; e != SIZE_MAX; e = g.next[e]) {
                        size_t j = g.src[e];
                        if (g.rank[j] < best && clean_swallows(s, ob, q, amp, alpha, beta, j, i))
                            best = g.rank[j];
                    }
            if (best != SIZE_MAX)
                into[i] = order[best];
        } else {
            for (size_t k = 0; k < r; k++) {
                size_t j = order[k];
                if (alpha[j] > 0 && into[j] == j && clean_swallows(s, ob, q, amp, alpha, beta, j, i)) {
                    into[i] = j;
                    break;
                }
            }
        }
        if (use_grid && into[i] == i && alpha[i] > 0) {
            g.rank[i] = r;
            if (!clean_grid_add(&g, s, i))
                use_grid = 0; /* out of memory: the rest go through the plain loop */
        }
        if (into[i] != i) {
            clred_source *m = &s[into[i]];
            m->flux += s[i].flux;
            m->flux_err = sqrt(m->flux_err * m->flux_err + s[i].flux_err * s[i].flux_err);
            m->npix += s[i].npix;
            m->peak = fmax(m->peak, s[i].peak);
            m->flags |= s[i].flags & (CLRED_SRC_SATURATED | CLRED_SRC_EDGE | CLRED_SRC_MASKED);
        }
    }
    size_t kept = 0;
    for (size_t i = 0; i < n; i++)
        if (into[i] == i)
            map[i] = kept++;
    for (size_t i = 0; i < n; i++)
        map[i] = map[into[i]];
    for (size_t i = 0, k = 0; i < n; i++)
        if (into[i] == i)
            s[k++] = s[i];
    clean_grid_free(&g);
    free(order), free(into), free(amp), free(alpha), free(q);
    return kept;
}

clred_status clred_detect_sources_dev(clred_ctx *ctx, const clred_dimage *img, const clred_dimage *bkg,
                                      const clred_dimage *rms, double bkg_value, double rms_value,
                                      const clred_detect_opts *opts, clred_source **list, size_t *nout)
{
    clred_detect_opts o = opts ? *opts : clred_detect_defaults();
    *list = NULL;
    *nout = 0;
    CLRED_TRY(check_inputs(img, bkg, rms, &o));
    if ((!bkg && isnan(bkg_value)) || (!rms && !(rms_value > 0))) {
        double level, sd, t0 = clred_now();
        CLRED_TRY(global_background_dev(img, o.ignore_bits, &level, &sd));
        clred_trace_host(ctx, "host", "detect: global level", t0, clred_now());
        if (!bkg && isnan(bkg_value))
            bkg_value = level;
        if (!rms && !(rms_value > 0))
            rms_value = sd;
        if (!rms && !(rms_value > 0))
            return clred_fail(CLRED_ERR_INPUT, "detect_sources: the image has zero background RMS");
    }
    /* The host deblends the detected pixels the device lists; the frame stays. */
    size_t n = img->width * img->height;
    detect_buffers b;
    memset(&b, 0, sizeof b);
    detected t = {0};
    components c = {0};
    objects ob = {0};
    clred_source *out = NULL;
    clred_status st = clred_buffer(ctx, CL_MEM_READ_ONLY, 4, NULL, &b.none, "absent plane");
    pixel_args pa = {clred_dimage_sci(img),
                     clred_dimage_mask(img) ? clred_dimage_mask(img) : b.none,
                     bkg ? clred_dimage_sci(bkg) : b.none,
                     rms ? clred_dimage_sci(rms) : b.none,
                     clred_dimage_mask(img) != NULL,
                     bkg != NULL,
                     rms != NULL,
                     o.ignore_bits,
                     (cl_float)bkg_value,
                     (cl_float)rms_value};
    if (st == CLRED_OK)
        st = detect_maps(ctx, &b, img, &pa, &o, &t);
    double t0 = clred_now();
    if (st == CLRED_OK)
        st = group_components(&t, img->width, img->height, &c);
    detected_free(&t);
    double t1 = clred_now();
    clred_trace_host(ctx, "host", "detect: group", t0, t1);
    if (st == CLRED_OK)
        st = build_objects(&c, &o, &ob);
    clred_trace_host(ctx, "host", "detect: deblend", t1, clred_now());
    components_free(&c);
    if (st == CLRED_OK && ob.nobj) {
        out = malloc(ob.nobj * sizeof *out);
        st = out ? measure(ctx, &b, img, &pa, &o, &ob, out)
                 : clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu sources", ob.nobj);
    }
    size_t nkept = ob.nobj;
    if (st == CLRED_OK && o.clean && ob.nobj > 1) {
        size_t *map = malloc(ob.nobj * sizeof *map);
        if (map) {
            nkept = clean_sources(out, &ob, o.clean_param, map);
            for (size_t i = 0; i < ob.npix; i++)
                ob.id[i] = (int32_t)map[ob.id[i] - 1] + 1;
            free(map);
        }
    }
    if (st == CLRED_OK && o.segmentation) {
        memset(o.segmentation, 0, n * sizeof *o.segmentation);
        for (size_t i = 0; i < ob.npix; i++)
            o.segmentation[ob.pix[i]] = ob.id[i];
    }
    if (st == CLRED_OK) {
        *list = out;
        *nout = nkept;
    } else {
        free(out);
    }
    release_buffers(ctx, &b);
    objects_free(&ob);
    return st;
}

clred_status clred_detect_sources(clred_ctx *ctx, const clred_image *img, const clred_image *bkg,
                                  const clred_image *rms, double bkg_value, double rms_value,
                                  const clred_detect_opts *opts, clred_source **list, size_t *nout)
{
    *list = NULL;
    *nout = 0;
    if (!img || !img->sci || img->width == 0 || img->height == 0)
        return clred_fail(CLRED_ERR_USAGE, "detect_sources: no image");
    if ((bkg && !bkg->sci) || (rms && !rms->sci))
        return clred_fail(CLRED_ERR_USAGE, "detect_sources: the %s image has no SCI plane", bkg && !bkg->sci ? "background" : "RMS");
    /* Only the SCI planes of the maps are read. */
    clred_image bkg_sci = bkg ? *bkg : (clred_image){0}, rms_sci = rms ? *rms : (clred_image){0};
    bkg_sci.var = rms_sci.var = NULL;
    bkg_sci.mask = rms_sci.mask = NULL;
    bkg_sci.header = rms_sci.header = NULL;
    clred_dimage *d = NULL, *db = NULL, *dr = NULL;
    clred_status st = clred_dimage_borrow(ctx, img, &d);
    if (st == CLRED_OK && bkg)
        st = clred_dimage_borrow(ctx, &bkg_sci, &db);
    if (st == CLRED_OK && rms)
        st = clred_dimage_borrow(ctx, &rms_sci, &dr);
    if (st == CLRED_OK)
        st = clred_detect_sources_dev(ctx, d, db, dr, bkg_value, rms_value, opts, list, nout);
    clred_dimage_free(dr);
    clred_dimage_free(db);
    clred_dimage_free(d);
    return st;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void clred_sources_seeing(const clred_source *list, size_t n, double *seeing, size_t *nused)
{
    *seeing = NAN;
    *nused = 0;
    double *v = malloc((n ? n : 1) * sizeof *v);
    if (!v)
        return;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const clred_source *s = &list[i];
        if (s->flags == 0 && s->ellipticity < 0.5 && s->flux_err > 0 && s->flux >= 20.0 * s->flux_err &&
            isfinite(s->fwhm) && s->fwhm > 0)
            v[m++] = s->fwhm;
    }
    if (m) {
        qsort(v, m, sizeof *v, cmp_double);
        *seeing = 0.5 * (v[(m - 1) / 2] + v[m / 2]);
    }
    *nused = m;
    free(v);
}
