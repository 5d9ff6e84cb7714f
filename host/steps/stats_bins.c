/* Sigma-clipped statistics in one read of the image where a sample of rows
 * predicts the clipping run, else two (kernels: stats.cl, stats_bin_hist,
 * stats_bin_scan and, for the single read on a CPU, stats_bin_one), with the
 * results radix selection gives.
 *
 * Bins are intervals of order-preserving float keys, in value order: the
 * top 16 bits of the key (coarse bins), except inside a window of keys where
 * bins are 2^ws keys wide (fine bins). The window is placed around the
 * clipping run predicted from the counts of a coarse sample of rows (every
 * 64th of a 2048^2 frame), so that the bins holding the median, the MAD's
 * ends and the final bounds are ~1e-3 of the noise wide instead of ~0.05.
 *
 * The single read: a finer sample (every 16th row, in the window's bins)
 * predicts each iteration's median, MAD and range; the read gathers the
 * pixels of the bins within a few of the sample's standard errors of them
 * (into slots of capacities predicted per group) and sums every other pixel
 * into its shell and side; the host replays the clipping on the gathered
 * values and these sums ("items": a count and the pixels' extrema). A slot
 * that overflows or a count the items cannot decide falls back to:
 *
 * Two passes. Pass 1 counts the usable pixels per bin. From those counts the host
 * predicts the whole clipping run approximately (pixels spread evenly over
 * their bins): each iteration's range, median and MAD. The bins that hold a
 * predicted bound (+-BOUND_WINDOW bins, FINE_RADIUS times as many fine
 * ones), median or MAD end (coarse: and the neighbour it lies close to;
 * fine: +-FINE_NEAR bins) are "refined": pass 2 copies their pixels out
 * (gathers them, contiguous per run of refined bins) and the host orders
 * them, a bin with many pixels for its keys by counting its keys. Every other
 * bin is wholly inside or wholly outside each predicted range, so pass 2 only
 * sums its pixels, into shell s = the last predicted iteration whose range
 * surely holds the bin: iteration j's sums are those of shells >= j, plus the
 * refined pixels inside its range.
 *
 * Either way the host then runs the clipping loop (clred_stats_clip) exactly: a count,
 * median (a k-th value by bisection over float keys) or MAD (a k-th
 * deviation by bisection over doubles) is taken only where every unrefined
 * bin (or item) is decidably inside or outside the interval it counts; otherwise the
 * method gives up and the caller uses radix selection, so a wrong prediction
 * costs time, never exactness. Means and stds sum (x - shift) in double
 * (shift: the predicted median), the same error model as radix selection.
 *
 * Used where sums are in double and the spread is the std; a MAD spread
 * needs a MAD every iteration, which radix selection does. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stats_clip.h"

#define NBINS 65536u            /* coarse bins: the top 16 bits of a key */
#define BIN_SHIFT 16u
#define FINE_MAX 16384u         /* bins in the window at most */
#define NB_MAX (NBINS + FINE_MAX)
/* A sample of about SAMPLE_PIXELS pixels (every row_step-th row, at most
 * every 16th) places the window and predicts the single pass; a region of
 * fewer pixels is its own sample. The single pass's windows narrow as the
 * square root of the sample: every 16th row costs 1/16 of a read and halves
 * the pixels gathered from every 64th. */
#define SAMPLE_PIXELS 131072u
#define SAMPLE_STEP_MAX 16u
/* In the window, a bound's refined bins reach FINE_RADIUS times
 * BOUND_WINDOW bins either side, and a median's or MAD end's FINE_NEAR: fine
 * bins are ~1e-4 of the noise wide, the prediction's error a few of them,
 * and so many bins still hold a small share of the pixels. */
#define FINE_RADIUS 32
#define FINE_NEAR 4
#define MAX_SHELLS 16           /* as STATS_MAX_SHELLS in stats.cl */
/* Bins refined either side of a predicted bound, and whether the MAD's are;
 * tests narrow them to make predictions miss (clred_stats_bins_windows). */
static int BOUND_WINDOW = 2, MAD_WINDOW = 1;
#define GATHER_ALL 16384u       /* a region with no more usable pixels refines every bin */
#define SORT_MAX 4096u          /* a gathered bin with more pixels is counted, not sorted */
#define GROUP_CAP 256
/* stats_bin_scan's table: a byte per bin, an accumulator below SLOT0 (2 x
 * shell + side: below or above the predicted median's bin), else SLOT0 + a
 * gather slot (as STATS_SLOT0 in stats.cl). */
#define SLOT0 (2u * MAX_SHELLS)
#define MAX_SLOTS (256u - SLOT0)
#define MAX_HOLES 4 /* as stats_hot8 in stats.cl */
#define MAX_ITEMS (2 * MAX_SHELLS + MAX_HOLES + 1)

/* Tests: 0 keeps the coarse bins (no window), 1 places one from a sample. */
static int ZOOM = 1;

/* The single pass: the bins it gathers reach ONE_PASS_SD standard errors of
 * the sample's prediction either side of each predicted value; a slot's
 * capacity per group is CAP_SCALE times the pixels the sample predicts
 * there, plus CAP_SLACK and four Poisson deviations. Tests skew the
 * prediction (in robust sigmas) or scale the capacities to make it miss. */
#define ONE_PASS_SD 4.0
/* Bounds get three times the margin: a sample's std is the least sure of
 * its figures (a few bright stars decide it), and at the clipping bounds,
 * in the wings, a wide window costs few pixels. */
#define ONE_PASS_SD_BOUND 12.0
#define CAP_SCALE 1.25
#define CAP_SLACK 256.0
static int ONE_PASS = 1;
static double SKEW = 0.0, CAP_TEST_SCALE = 1.0;
static _Atomic unsigned long one_pass_hit, one_pass_missed, one_read_vector, one_read_keys;

void clred_stats_bins_one_pass(int on, double skew, double cap_scale)
{
    ONE_PASS = on;
    SKEW = skew;
    CAP_TEST_SCALE = cap_scale;
}

void clred_stats_bins_one_pass_counts(unsigned long *hit, unsigned long *missed)
{
    *hit = one_pass_hit;
    *missed = one_pass_missed;
}

/* Regions of fewer pixels take the single read through stats_bin_scan:
 * there stats_bin_one saves little (0.14 ms of 0.4 per call at 512^2,
 * against 1.7 of 3.6 at 2048^2: warm kernel times, clred-bench stats) and
 * compiling it costs a first run about 0.4 CPU s (a cold 512^2 clred demo
 * compiles stats_bin_scan for its masters anyway). The same results either
 * way. Tests lower it (clred_stats_bins_one_read_min). */
static size_t ONE_READ_MIN_PIXELS = (size_t)1 << 20;

void clred_stats_bins_one_read_min(size_t pixels) { ONE_READ_MIN_PIXELS = pixels; }

void clred_stats_bins_one_read_counts(unsigned long *vector, unsigned long *keys)
{
    *vector = one_read_vector;
    *keys = one_read_keys;
}

/* How often the method answered and gave up (tests check it ran), and
 * how often it placed a window of fine bins. */
static _Atomic unsigned long bins_answered, bins_gave_up, bins_zoomed;

void clred_stats_bins_zoom(int on) { ZOOM = on; }

unsigned long clred_stats_bins_zoomed(void) { return bins_zoomed; }

void clred_stats_bins_windows(int bound, int mad)
{
    BOUND_WINDOW = bound;
    MAD_WINDOW = mad;
}

void clred_stats_bins_counts(unsigned long *answered, unsigned long *gave_up)
{
    *answered = bins_answered;
    *gave_up = bins_gave_up;
}

typedef struct {
    float v;
    cl_uint c;
} run;

typedef struct {
    stats_measurer base;
    clred_ctx *ctx;
    cl_mem sci, mask;
    cl_ushort ignore;
    cl_uint width, x0, y0, rw, rh;
    int use_double, own;
    size_t local, groups, slices;
    cl_kernel khist, kscan, kone;
    /* Bins in value order: coarse ones (2^16 keys) outside the window of keys
     * [wlo, whi), 2^ws keys inside it; bin wb0 starts it, wb1 follows it. */
    uint64_t wlo, whi;
    cl_uint ws, wb0, wb1, nb;
    cl_uint *slice_hist; /* slices x (nb + 1): the last count per slice takes unusable pixels */
    cl_uint *count;      /* nb, merged */
    size_t n0;           /* usable pixels */
    /* prediction */
    int npred;
    kept_range pred_range[MAX_SHELLS];
    double pred_median[MAX_SHELLS], pred_mad[MAX_SHELLS], pred_std[MAX_SHELLS], pred_kurt[MAX_SHELLS];
    /* per predicted range, value windows around its ends that hold
     * BOUND_SHARE of the sample's pixels either side of each */
    double share_lo[MAX_SHELLS][2], share_hi[MAX_SHELLS][2];
    double shift;
    /* the sample of rows that placed the window: usable pixels, rows; its
     * per-slice coarse counts stay in slice_hist until a full count */
    size_t sample_n;
    cl_uint sample_rows, sample_step;
    /* the single pass: gather capacities from the sample (one_pass), and
     * whether a slot overflowed (missed); the set measured is then a list of
     * items (count and value bounds per shell and side, and the fast set's
     * pixels between the holes) instead of bins */
    int one_pass, missed;
    cl_uint side_bin;
    float it_lo[MAX_ITEMS], it_hi[MAX_ITEMS];
    size_t it_n[MAX_ITEMS];
    unsigned char it_shell[MAX_ITEMS];
    size_t nitems;
    /* stats_bin_scan's fast set: keys [hot_lo_key, hot_hi_key] less the holes */
    cl_uint hot_lo_key, hot_hi_key, hole_from[MAX_HOLES], hole_to[MAX_HOLES], nholes;
    /* bins */
    unsigned char *shell; /* nb */
    cl_uint *refined;     /* refined bins, ascending */
    size_t nrefined;
    cl_uint *unref;       /* unrefined nonzero bins, ascending */
    size_t nunref;
    run *runs; /* the refined pixels in value order */
    size_t nruns;
    size_t *rc;      /* prefix counts over runs */
    double *r1, *r2; /* sums of c (v - shift), c (v - shift)^2 from the anchor run outward */
    size_t anchor;
    /* the single pass's MAD windows (values), gathered: a deviation whose
     * ends lie in both is counted exactly */
    double madwin[2][2];
    int have_madwin;
    size_t shell_n[MAX_SHELLS];
    double shell_s1[MAX_SHELLS], shell_s2[MAX_SHELLS], shell_min[MAX_SHELLS], shell_max[MAX_SHELLS];
    /* the unrefined bins of the set last measured: value bounds, prefix counts */
    cl_uint hot_lo_bin, hot_hi_bin; /* the innermost shell's core, empty if lo > hi */
    int set_index;
    float *ulo, *uhi;
    size_t *ucum;
    size_t nu;
    double *approx_cum; /* prediction: prefix counts over the nonzero bins */
} bins_run;

/* ------------------------------------------------------------ keys and bins */

static uint32_t float_key(float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return u ^ ((u >> 31) ? 0xffffffffu : 0x80000000u);
}

static float key_float(uint32_t k)
{
    uint32_t u = k ^ ((k >> 31) ? 0x80000000u : 0xffffffffu);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* The same map as stats_bin_of in stats.cl. */
static cl_uint key_bin(const bins_run *b, uint32_t key)
{
    if (key < b->wlo)
        return key >> BIN_SHIFT;
    if (key < b->whi)
        return b->wb0 + (cl_uint)((key - b->wlo) >> b->ws);
    return b->wb1 + (cl_uint)((key - b->whi) >> BIN_SHIFT);
}

static int is_fine(const bins_run *b, cl_uint i) { return i >= b->wb0 && i < b->wb1; }

static uint32_t bin_first_key(const bins_run *b, cl_uint i)
{
    if (i < b->wb0)
        return i << BIN_SHIFT;
    if (i < b->wb1)
        return (uint32_t)(b->wlo + ((uint64_t)(i - b->wb0) << b->ws));
    return (uint32_t)(b->whi + ((uint64_t)(i - b->wb1) << BIN_SHIFT));
}

static uint32_t bin_keys(const bins_run *b, cl_uint i) { return is_fine(b, i) ? 1u << b->ws : 1u << BIN_SHIFT; }

static cl_uint bin_of(const bins_run *b, float v) { return key_bin(b, float_key(v)); }
static float bin_lo(const bins_run *b, cl_uint i) { return key_float(bin_first_key(b, i)); }
static float bin_hi(const bins_run *b, cl_uint i) { return key_float(bin_first_key(b, i) + (bin_keys(b, i) - 1)); }

/* No window: the plain top-16-bit bins. */
static void coarse_bins(bins_run *b)
{
    b->wlo = b->whi = 0;
    b->ws = BIN_SHIFT;
    b->wb0 = b->wb1 = 0;
    b->nb = NBINS;
}

/* ------------------------------------------------------------ device passes */

static clred_status set_arg(cl_kernel k, const char *name, cl_uint index, size_t size, const void *value)
{
    cl_int err = clSetKernelArg(k, index, size, value);
    return err == CL_SUCCESS ? CLRED_OK : clred_fail_cl(err, name);
}

static clred_status set_region_args(bins_run *b, cl_kernel k, const char *name)
{
    CLRED_TRY(set_arg(k, name, 0, sizeof b->sci, &b->sci));
    CLRED_TRY(set_arg(k, name, 1, sizeof b->mask, &b->mask));
    CLRED_TRY(set_arg(k, name, 2, sizeof b->ignore, &b->ignore));
    CLRED_TRY(set_arg(k, name, 3, sizeof b->width, &b->width));
    CLRED_TRY(set_arg(k, name, 4, sizeof b->x0, &b->x0));
    CLRED_TRY(set_arg(k, name, 5, sizeof b->y0, &b->y0));
    CLRED_TRY(set_arg(k, name, 6, sizeof b->rw, &b->rw));
    return set_arg(k, name, 7, sizeof b->rh, &b->rh);
}

/* Reduction bytes per work-item of stats_bin_scan. */
static size_t scan_local_bytes(const bins_run *b) { return sizeof(cl_uint) + 2 * (b->use_double ? 8 : 4) + 8; }

/* A CPU: one work-item per group owns its slices, groups per core. Elsewhere
 * power-of-two groups that the kernel and local memory allow, sharing one
 * copy through atomics. */
static clred_status plan(bins_run *b)
{
    const clred_ctx *ctx = b->ctx;
    size_t cus = ctx->info.compute_units ? ctx->info.compute_units : 1;
    if (ctx->info.is_cpu) {
        b->own = 1;
        b->local = 1;
        b->groups = cus * 2;
    } else {
        size_t kwg = 0;
        cl_int err = clGetKernelWorkGroupInfo(b->kscan, ctx->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof kwg, &kwg,
                                              NULL);
        if (err != CL_SUCCESS)
            return clred_fail_cl(err, "stats_bin_scan");
        size_t l = 1;
        while (l * 2 <= (kwg < GROUP_CAP ? kwg : GROUP_CAP) && l * 2 * scan_local_bytes(b) <= ctx->info.local_mem / 2)
            l *= 2;
        b->own = l == 1;
        b->local = l;
        b->groups = cus * 4;
    }
    if (b->local * scan_local_bytes(b) > ctx->info.local_mem)
        return clred_fail(CLRED_ERR_DEVICE, "stats: kernel stats_bin_scan needs %zu bytes of local memory, %s has %llu",
                          b->local * scan_local_bytes(b), ctx->info.name, (unsigned long long)ctx->info.local_mem);
    if (b->groups > b->rh)
        b->groups = b->rh;
    b->slices = b->own ? b->groups : 1;
    return CLRED_OK;
}

/* The bin map's arguments, from index first on. */
static clred_status set_map_args(bins_run *b, cl_kernel k, const char *name, cl_uint first)
{
    cl_uint wlo = (cl_uint)b->wlo, whi = (cl_uint)b->whi;
    CLRED_TRY(set_arg(k, name, first, sizeof wlo, &wlo));
    CLRED_TRY(set_arg(k, name, first + 1, sizeof whi, &whi));
    CLRED_TRY(set_arg(k, name, first + 2, sizeof b->ws, &b->ws));
    CLRED_TRY(set_arg(k, name, first + 3, sizeof b->wb0, &b->wb0));
    return set_arg(k, name, first + 4, sizeof b->wb1, &b->wb1);
}

static clred_status run_pass(bins_run *b, cl_kernel k, const char *name)
{
    size_t global = b->local * b->groups;
    return clred_run(b->ctx, k, name, 1, &global, &b->local);
}

/* Pass 1: the merged bin counts, and each group's where groups own slices,
 * over every row_step-th row of the region. */
static clred_status count_bins(bins_run *b, cl_uint row_step)
{
    const char *name = "stats_bin_hist";
    size_t stride = (size_t)b->nb + 1, bytes = b->slices * stride * sizeof(cl_uint);
    cl_uint rows = (b->rh + row_step - 1) / row_step;
    cl_mem hist = NULL;
    clred_status st = clred_buffer(b->ctx, CL_MEM_READ_WRITE, bytes, NULL, &hist, "stats bin counts");
    if (st == CLRED_OK)
        st = clred_fill_zero(b->ctx, hist, bytes);
    if (st == CLRED_OK)
        st = set_region_args(b, b->khist, name);
    if (st == CLRED_OK)
        st = set_arg(b->khist, name, 7, sizeof rows, &rows);
    if (st == CLRED_OK)
        st = set_arg(b->khist, name, 8, sizeof hist, &hist);
    if (st == CLRED_OK)
        st = set_arg(b->khist, name, 9, sizeof b->nb, &b->nb);
    if (st == CLRED_OK)
        st = set_arg(b->khist, name, 10, sizeof row_step, &row_step);
    if (st == CLRED_OK)
        st = set_map_args(b, b->khist, name, 11);
    if (st == CLRED_OK)
        st = set_arg(b->khist, name, 16, sizeof b->rh, &b->rh);
    if (st == CLRED_OK)
        st = run_pass(b, b->khist, name);
    if (st == CLRED_OK)
        st = clred_download(b->ctx, hist, 0, bytes, b->slice_hist);
    clred_release(&hist);
    CLRED_TRY(st);
    memset(b->count, 0, b->nb * sizeof *b->count);
    b->n0 = 0;
    for (size_t g = 0; g < b->slices; g++)
        for (size_t i = 0; i < b->nb; i++)
            b->count[i] += b->slice_hist[g * stride + i];
    for (size_t i = 0; i < b->nb; i++)
        b->n0 += b->count[i];
    return CLRED_OK;
}

/* ------------------------------------------------------------ prediction */

typedef struct {
    double n, mean, std, median, mad, kurtosis;
} approx_set;

/* The part of bin i inside [lo, hi], as a fraction and a value interval. */
static double bin_overlap(const bins_run *b, cl_uint i, kept_range r, double *a, double *z)
{
    double vlo = bin_lo(b, i), vhi = bin_hi(b, i);
    *a = vlo > r.lo ? vlo : r.lo;
    *z = vhi < r.hi ? vhi : r.hi;
    if (*a > *z)
        return 0.0;
    return vhi > vlo ? (*z - *a) / (vhi - vlo) : 1.0;
}

/* The approximate count of values <= x: the bins below it (approx_cum over
 * the nonzero bins nz), and the even share of the one that holds it. */
static double approx_below(const bins_run *b, const cl_uint *nz, size_t nnz, double x)
{
    size_t lo = 0, hi = nnz;
    while (lo < hi) { /* the first bin that reaches x */
        size_t mid = lo + (hi - lo) / 2;
        if (bin_hi(b, nz[mid]) < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    double n = b->approx_cum[lo];
    if (lo < nnz) {
        double vlo = bin_lo(b, nz[lo]), vhi = bin_hi(b, nz[lo]);
        if (x >= vlo)
            n += b->count[nz[lo]] * (vhi > vlo ? (x - vlo) / (vhi - vlo) : 1.0);
    }
    return n;
}

/* The approximate count of values within d of m, in range. */
static double approx_within(const bins_run *b, const cl_uint *nz, size_t nnz, kept_range r, double m, double d)
{
    double a = fmax(r.lo, m - d), z = fmin(r.hi, m + d);
    return a <= z ? approx_below(b, nz, nnz, z) - approx_below(b, nz, nnz, nextafter(a, -INFINITY)) : 0.0;
}

/* Count, mean, std, median and MAD of the values in r with each bin's pixels
 * spread evenly over its value interval. */
static void approx_measure(const bins_run *b, const cl_uint *nz, size_t nnz, kept_range r, approx_set *s)
{
    double n = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, a, z;
    const double c0 = b->shift;
    for (size_t k = 0; k < nnz; k++) {
        double f = bin_overlap(b, nz[k], r, &a, &z), c = b->count[nz[k]] * f;
        if (c <= 0)
            continue;
        n += c;
        s1 += c * ((a + z) / 2 - c0);
        s2 += c * ((a - c0) * (a - c0) + (a - c0) * (z - c0) + (z - c0) * (z - c0)) / 3;
        double v = (a + z) / 2 - c0;
        s3 += c * v * v * v;
        s4 += c * v * v * v * v;
    }
    memset(s, 0, sizeof *s);
    s->n = n;
    if (n <= 0)
        return;
    s->mean = c0 + s1 / n;
    double var = s2 / n - (s1 / n) * (s1 / n);
    s->std = var > 0 ? sqrt(var) : 0;
    double u = s1 / n, m4 = s4 / n - 4 * u * s3 / n + 6 * u * u * s2 / n - 3 * u * u * u * u;
    s->kurtosis = var > 0 && m4 > 0 ? m4 / (var * var) : 3.0;
    double half = n / 2, below = 0;
    s->median = s->mean;
    for (size_t k = 0; k < nnz; k++) {
        double f = bin_overlap(b, nz[k], r, &a, &z), c = b->count[nz[k]] * f;
        if (c > 0 && below + c >= half) {
            s->median = a + (z - a) * (half - below) / c;
            break;
        }
        below += c;
    }
    double lo = 0, hi = fmax(fabs(r.hi - s->median), fabs(s->median - r.lo));
    if (!isfinite(hi))
        hi = fmax(fabs(bin_hi(b, nz[nnz - 1]) - s->median), fabs(s->median - bin_lo(b, nz[0])));
    for (int it = 0; it < 50; it++) {
        double mid = (lo + hi) / 2;
        if (approx_within(b, nz, nnz, r, s->median, mid) >= half)
            hi = mid;
        else
            lo = mid;
    }
    s->mad = hi;
}

/* Refines the bin of v, and its neighbour when v lies within NEAR_EDGE of
 * a width from their common edge: the prediction's error is far smaller than
 * that, and a big bin gathered costs a random branch per pixel. */
#define NEAR_EDGE 0.25
static void mark_near(bins_run *b, unsigned char *want, double v)
{
    if (!(fabs(v) <= FLT_MAX))
        return;
    cl_uint c = bin_of(b, (float)v);
    if (is_fine(b, c)) {
        for (long i = (long)c - FINE_NEAR; i <= (long)c + FINE_NEAR; i++)
            if (i >= 0 && i < (long)b->nb && b->count[i])
                want[i] = 1;
        return;
    }
    double lo = bin_lo(b, c), hi = bin_hi(b, c), pos = hi > lo ? (v - lo) / (hi - lo) : 0.5;
    if (b->count[c])
        want[c] = 1;
    if (pos < NEAR_EDGE && c > 0 && b->count[c - 1])
        want[c - 1] = 1;
    if (pos > 1 - NEAR_EDGE && c + 1 < b->nb && b->count[c + 1])
        want[c + 1] = 1;
}

/* Bins refined either side of a bound in bin c; assign_shells leaves them
 * out of the shells' cores. */
static long bound_radius(const bins_run *b, cl_uint c)
{
    return BOUND_WINDOW > 0 && is_fine(b, c) ? (long)BOUND_WINDOW * FINE_RADIUS : BOUND_WINDOW;
}

static void mark(bins_run *b, unsigned char *want, double v)
{
    if (!(fabs(v) <= FLT_MAX))
        return;
    long c = bin_of(b, (float)v), radius = bound_radius(b, (cl_uint)c);
    for (long i = c - radius; i <= c + radius; i++)
        if (i >= 0 && i < (long)b->nb && b->count[i])
            want[i] = 1;
}

/* The predicted clipping run: ranges, and the bins to refine in want. */
static void predict(bins_run *b, const clred_stats_opts *o, unsigned char *want)
{
    cl_uint *nz = b->unref; /* scratch: the nonzero bins */
    size_t nnz = 0;
    b->approx_cum[0] = 0;
    for (cl_uint i = 0; i < b->nb; i++)
        if (b->count[i]) {
            nz[nnz++] = i;
            b->approx_cum[nnz] = b->approx_cum[nnz - 1] + b->count[i];
        }
    kept_range range = {-INFINITY, INFINITY};
    size_t below = 0, i = 0, middle = (b->n0 - 1) / 2;
    for (; i < b->nb && below + b->count[i] <= middle; i++)
        below += b->count[i];
    b->shift = i < b->nb ? (bin_lo(b, i) + (double)bin_hi(b, i)) / 2 : 0.0;
    approx_set cur;
    approx_measure(b, nz, nnz, range, &cur);
    b->npred = 0;
    for (int it = 0;; it++) {
        b->pred_median[b->npred] = cur.median;
        b->pred_mad[b->npred] = cur.mad;
        b->pred_std[b->npred] = cur.std;
        b->pred_kurt[b->npred] = cur.kurtosis;
        b->pred_range[b->npred++] = range;
        mark_near(b, want, cur.median);
        if (MAD_WINDOW > 0) {
            mark_near(b, want, cur.median - cur.mad);
            mark_near(b, want, cur.median + cur.mad);
        }
        if (isfinite(range.lo))
            mark(b, want, range.lo);
        if (isfinite(range.hi))
            mark(b, want, range.hi);
        if (it >= o->max_iters || b->npred == MAX_SHELLS || cur.n <= 0)
            break;
        double centre = o->centre_mean ? cur.mean : cur.median;
        kept_range next = {clred_float_at_or_above(centre - o->sigma_lower * cur.std),
                           clred_float_at_or_below(centre + o->sigma_upper * cur.std)};
        if (next.lo < range.lo)
            next.lo = range.lo;
        if (next.hi > range.hi)
            next.hi = range.hi;
        if (it > 0 && bin_of(b, next.lo) == bin_of(b, range.lo) && bin_of(b, next.hi) == bin_of(b, range.hi))
            break; /* the same bins as the last prediction: nothing new to refine */
        range = next;
        approx_measure(b, nz, nnz, range, &cur);
    }
}

/* The window of fine bins: around the last clipping range predicted from the
 * counts of a sample of rows, half as wide again (about +-4.5 sigma), so
 * that the median's, the MAD's and the bounds' bins are narrow next to the
 * noise. Wherever the sample misleads, the counts of the full pass still
 * decide every bin exactly; only more pixels are gathered. A window as wide
 * as the coarse bins (a range across zero, where keys are dense) gains
 * nothing and is not placed. */
/* The value below which the sample's counts put `target` pixels (the
 * approximate count, by bisection). */
static double value_at_count(const bins_run *b, const cl_uint *nz, size_t nnz, double target)
{
    double lo = bin_lo(b, nz[0]), hi = bin_hi(b, nz[nnz - 1]);
    if (target <= 0)
        return lo;
    if (target >= b->approx_cum[nnz])
        return hi;
    for (int it = 0; it < 64; it++) {
        double mid = lo / 2 + hi / 2;
        if (approx_below(b, nz, nnz, mid) < target)
            lo = mid;
        else
            hi = mid;
    }
    return hi;
}

/* The single pass's bound windows by share of the pixels (see share_lo):
 * in the sparse tails, where the first ranges end, the sample's std is
 * least sure and a wide window costs few pixels. */
#define BOUND_SHARE 0.0002
static void share_windows(bins_run *b)
{
    cl_uint *nz = b->unref;
    size_t nnz = 0;
    for (cl_uint i = 0; i < b->nb; i++)
        if (b->count[i])
            nz[nnz++] = i;
    double q = BOUND_SHARE * (double)b->n0;
    for (int j = 0; j < b->npred; j++) {
        kept_range r = b->pred_range[j];
        double nlo = isfinite(r.lo) ? approx_below(b, nz, nnz, r.lo) : 0;
        double nhi = isfinite(r.hi) ? approx_below(b, nz, nnz, r.hi) : 0;
        b->share_lo[j][0] = isfinite(r.lo) ? value_at_count(b, nz, nnz, nlo - q) : r.lo;
        b->share_lo[j][1] = isfinite(r.lo) ? value_at_count(b, nz, nnz, nlo + q) : r.lo;
        b->share_hi[j][0] = isfinite(r.hi) ? value_at_count(b, nz, nnz, nhi - q) : r.hi;
        b->share_hi[j][1] = isfinite(r.hi) ? value_at_count(b, nz, nnz, nhi + q) : r.hi;
    }
}

static clred_status place_window(bins_run *b, const clred_stats_opts *o, unsigned char *scratch)
{
    coarse_bins(b);
    if (!ZOOM || b->base.npix <= GATHER_ALL)
        return CLRED_OK;
    size_t step = b->base.npix / SAMPLE_PIXELS;
    if (step > SAMPLE_STEP_MAX)
        step = SAMPLE_STEP_MAX;
    if (step > b->rh / 2)
        step = b->rh / 2;
    if (step < 1)
        step = 1;
    b->sample_step = (cl_uint)step;
    /* A smaller sample places the window: it need only find the noise. */
    step *= 4;
    if (step > b->rh / 2)
        step = b->rh / 2;
    if (step < 1)
        step = 1;
    CLRED_TRY(count_bins(b, (cl_uint)step));
    if (b->n0 == 0)
        return CLRED_OK;
    predict(b, o, scratch);
    kept_range r = b->pred_range[b->npred - 1];
    if (b->npred < 2 || !isfinite(r.lo) || !isfinite(r.hi))
        return CLRED_OK;
    double centre = (r.lo + (double)r.hi) / 2, half = 1.5 * (r.hi - (double)r.lo) / 2;
    uint64_t klo = float_key(clred_float_at_or_below(centre - half)) & ~(uint64_t)0xffff;
    uint64_t khi = ((uint64_t)float_key(clred_float_at_or_above(centre + half)) | 0xffff) + 1;
    if (khi > 0xffff0000u) /* the top coarse bin stays above the window */
        khi = 0xffff0000u;
    if (khi <= klo)
        return CLRED_OK;
    uint64_t span = khi - klo;
    cl_uint ws = 0;
    while ((span >> ws) > FINE_MAX)
        ws++;
    if (ws >= BIN_SHIFT)
        return CLRED_OK;
    b->wlo = klo;
    b->whi = khi;
    b->ws = ws;
    b->wb0 = (cl_uint)(klo >> BIN_SHIFT);
    b->wb1 = b->wb0 + (cl_uint)(span >> ws);
    b->nb = b->wb1 + (cl_uint)((((uint64_t)1 << 32) - khi) >> BIN_SHIFT);
    bins_zoomed++;
    return CLRED_OK;
}

/* The single pass's prediction: the sample's counts in the bins of the
 * window (a window placed from coarse bins 0.05 of the noise wide would
 * predict the MAD's ends to a few per cent only), per slice for the gather
 * capacities. */
static clred_status sample_fine(bins_run *b, const clred_stats_opts *o, unsigned char *scratch)
{
    cl_uint step = b->sample_step;
    CLRED_TRY(count_bins(b, step));
    b->sample_n = b->n0;
    b->sample_rows = (b->rh + step - 1) / step;
    if (b->n0 == 0)
        return CLRED_OK;
    predict(b, o, scratch);
    share_windows(b);
    return CLRED_OK;
}

/* Shells: the bins of the window start in shell 0, and no bin is hot. */
static void open_shells(bins_run *b, long *clo, long *chi)
{
    *clo = 0, *chi = (long)b->nb - 1;
    memset(b->shell, 0, b->nb);
    b->hot_lo_bin = 1, b->hot_hi_bin = 0;
}

/* Narrows the core to [lo, hi] and gives its bins to predicted range j:
 * cores nest as the ranges do. */
static void nest_shell(bins_run *b, int j, long lo, long hi, long *clo, long *chi)
{
    if (lo > *clo)
        *clo = lo;
    if (hi < *chi)
        *chi = hi;
    for (long i = *clo; i <= *chi; i++)
        b->shell[i] = (unsigned char)j;
}

/* The innermost core's bins are the hot ones. */
static void close_shells(bins_run *b, long clo, long chi)
{
    if (clo <= chi) {
        b->hot_lo_bin = (cl_uint)clo;
        b->hot_hi_bin = (cl_uint)chi;
    }
}

/* Shells: the last predicted range whose core (its range less the bound
 * windows) holds the bin; cores nest as the ranges do. */
static void assign_shells(bins_run *b)
{
    long clo, chi;
    open_shells(b, &clo, &chi);
    for (int j = 1; j < b->npred; j++) {
        kept_range r = b->pred_range[j];
        cl_uint blo = bin_of(b, r.lo), bhi = bin_of(b, r.hi);
        long lo = isfinite(r.lo) ? (long)blo + bound_radius(b, blo) + 1 : 0;
        long hi = isfinite(r.hi) ? (long)bhi - bound_radius(b, bhi) - 1 : (long)b->nb - 1;
        nest_shell(b, j, lo, hi, &clo, &chi);
    }
    close_shells(b, clo, chi);
    b->side_bin = bin_of(b, (float)b->pred_median[b->npred - 1]);
}

/* Marks the bins that hold any value of [a, z], and one more either side. */
static void mark_values(bins_run *b, unsigned char *want, double a, double z)
{
    if (!(a <= z))
        return;
    long i0 = (long)bin_of(b, clred_float_at_or_below(a)) - 1, i1 = (long)bin_of(b, clred_float_at_or_above(z)) + 1;
    for (long i = i0 < 0 ? 0 : i0; i <= i1 && i < (long)b->nb; i++)
        want[i] = 1;
}

/* The single pass's bins and shells, from the sample's prediction alone:
 * gathered are the bins within ONE_PASS_SD standard errors of every
 * predicted median, MAD end and bound (the errors of a sample of n pixels
 * with robust sigma sr: 1.25 sr / sqrt(n) for a median, 1.36 sr / sqrt(n)
 * for a quartile, and for a bound centre +- k std that of the centre plus
 * k std sqrt((kurtosis - 1) / 4n) for the std; the centre's taken as median's plus
 * std / sqrt(n), so that a mean centre is covered too). Shell j's core lies
 * strictly between range j's bound windows. Each prediction the sample
 * misses makes the exact replay give up (or a slot overflow), and the two
 * passes answer. */
static void plan_one_pass(bins_run *b, const clred_stats_opts *o, unsigned char *want)
{
    memset(want, 0, b->nb);
    double rn = sqrt((double)b->sample_n), sr = 0;
    for (int j = 0; j < b->npred; j++)
        sr = fmax(sr, 1.4826 * b->pred_mad[j]);
    double skew = SKEW * sr, mmed = ONE_PASS_SD * 1.2533 * sr / rn, mmad = ONE_PASS_SD * 1.36 * sr / rn;
    double med_lo = INFINITY, med_hi = -INFINITY, dlo_lo = INFINITY, dlo_hi = -INFINITY, dhi_lo = INFINITY,
           dhi_hi = -INFINITY;
    for (int j = 0; j < b->npred; j++) {
        double m = b->pred_median[j] + skew, d = b->pred_mad[j];
        med_lo = fmin(med_lo, m), med_hi = fmax(med_hi, m);
        if (j + 2 < b->npred)
            continue; /* the MAD is of the last set only: the last two predicted, in case one more or fewer run */
        dlo_lo = fmin(dlo_lo, m - d), dlo_hi = fmax(dlo_hi, m - d);
        dhi_lo = fmin(dhi_lo, m + d), dhi_hi = fmax(dhi_hi, m + d);
    }
    mark_values(b, want, med_lo - mmed, med_hi + mmed);
    if (MAD_WINDOW > 0) {
        mark_values(b, want, dlo_lo - mmad, dlo_hi + mmad);
        mark_values(b, want, dhi_lo - mmad, dhi_hi + mmad);
        b->madwin[0][0] = dlo_lo - mmad, b->madwin[0][1] = dlo_hi + mmad;
        b->madwin[1][0] = dhi_lo - mmad, b->madwin[1][1] = dhi_hi + mmad;
        b->have_madwin = 1;
    }
    long clo, chi;
    open_shells(b, &clo, &chi);
    for (int j = 1; j < b->npred; j++) {
        kept_range r = b->pred_range[j];
        /* a std's standard error is std sqrt((kurtosis - 1) / 4n): 1 / sqrt(2n)
         * for normal noise, far more with stars in */
        double sd = b->pred_std[j - 1], centre = 1.2533 * sr + sd;
        double esd = sd * sqrt(fmax(b->pred_kurt[j - 1] - 1.0, 2.0) / 4.0);
        double mlo = BOUND_WINDOW >= 0 ? ONE_PASS_SD_BOUND * (centre + o->sigma_lower * esd) / rn : 0;
        double mhi = BOUND_WINDOW >= 0 ? ONE_PASS_SD_BOUND * (centre + o->sigma_upper * esd) / rn : 0;
        long lo = 0, hi = (long)b->nb - 1;
        if (isfinite(r.lo)) {
            double a = r.lo + skew - mlo, z = r.lo + skew + mlo;
            if (BOUND_WINDOW >= 0) {
                a = fmin(a, b->share_lo[j][0] + skew), z = fmax(z, b->share_lo[j][1] + skew);
                mark_values(b, want, a, z);
            }
            lo = (long)bin_of(b, clred_float_at_or_above(z)) + 2;
        }
        if (isfinite(r.hi)) {
            double a = r.hi + skew - mhi, z = r.hi + skew + mhi;
            if (BOUND_WINDOW >= 0) {
                a = fmin(a, b->share_hi[j][0] + skew), z = fmax(z, b->share_hi[j][1] + skew);
                mark_values(b, want, a, z);
            }
            hi = (long)bin_of(b, clred_float_at_or_below(a)) - 2;
        }
        nest_shell(b, j, lo, hi, &clo, &chi);
    }
    close_shells(b, clo, chi);
    b->side_bin = bin_of(b, (float)(b->pred_median[b->npred - 1] + skew));
}

/* ------------------------------------------------------------ pass 2 */

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* A gathered bin's values as runs of equal values in order: by counting
 * its keys less its first key (at most 2^16 of them) where the bin holds many
 * pixels for its keys, else by sorting. */
static void bin_runs(bins_run *b, cl_uint bin, float *v, size_t n, cl_uint *low_count)
{
    uint32_t keys = bin_keys(b, bin);
    if (n > SORT_MAX || keys <= 16 * n) {
        uint32_t first = bin_first_key(b, bin);
        memset(low_count, 0, keys * sizeof *low_count);
        for (size_t j = 0; j < n; j++)
            low_count[float_key(v[j]) - first]++;
        for (uint32_t low = 0; low < keys; low++)
            if (low_count[low])
                b->runs[b->nruns++] = (run){key_float(first + low), low_count[low]};
        return;
    }
    qsort(v, n, sizeof *v, cmp_float);
    for (size_t j = 0; j < n; j++) {
        if (j > 0 && b->runs[b->nruns - 1].v == v[j])
            b->runs[b->nruns - 1].c++;
        else
            b->runs[b->nruns++] = (run){v[j], 1};
    }
}

/* The innermost shell's keys for stats_bin_scan's vector test: the keys of
 * its core [hot_lo, hot_hi] less MAX_HOLES holes that cover the gather
 * slots inside it (where there are more, the closest neighbours share a
 * hole: a key needlessly in one only takes the table). Every key so found is
 * in a bin whose table entry is the innermost shell; the converse need not
 * hold. Holes go as (first key, last - first); unused ones (0, 0). */
static clred_status set_hot_args(bins_run *b, cl_kernel k, const char *name, cl_uint first, const size_t *sfirst,
                                 size_t nslots)
{
    /* No core: only key 0 (a NaN, never usable) would pass. */
    cl_uint lo = 0, hi = 0, nholes = 0, from[MAX_SLOTS], to[MAX_SLOTS];
    if (b->hot_lo_bin <= b->hot_hi_bin) {
        lo = bin_first_key(b, b->hot_lo_bin);
        hi = bin_first_key(b, b->hot_hi_bin) + (bin_keys(b, b->hot_hi_bin) - 1);
        for (size_t j = 0; j < nslots; j++) {
            cl_uint fb = b->refined[sfirst[j]], lb = b->refined[sfirst[j + 1] - 1];
            if (lb < b->hot_lo_bin || fb > b->hot_hi_bin)
                continue;
            from[nholes] = bin_first_key(b, fb);
            to[nholes] = bin_first_key(b, lb) + (bin_keys(b, lb) - 1);
            nholes++;
        }
        while (nholes > MAX_HOLES) { /* merge across the smallest gap */
            cl_uint best = 1;
            for (cl_uint j = 2; j < nholes; j++)
                if (from[j] - to[j - 1] < from[best] - to[best - 1])
                    best = j;
            to[best - 1] = to[best];
            for (cl_uint j = best; j + 1 < nholes; j++) {
                from[j] = from[j + 1];
                to[j] = to[j + 1];
            }
            nholes--;
        }
    }
    cl_uint8 holes;
    memset(&holes, 0, sizeof holes);
    for (cl_uint j = 0; j < nholes; j++) {
        holes.s[2 * j] = from[j];
        holes.s[2 * j + 1] = to[j] - from[j];
        b->hole_from[j] = from[j];
        b->hole_to[j] = to[j];
    }
    b->nholes = nholes;
    b->hot_lo_key = lo;
    b->hot_hi_key = hi;
    CLRED_TRY(set_arg(k, name, first, sizeof lo, &lo));
    CLRED_TRY(set_arg(k, name, first + 1, sizeof hi, &hi));
    return set_arg(k, name, first + 2, sizeof holes, &holes);
}

/* stats_bin_one's float partition (thr: the core, then up to ONE_HOLES
 * holes, unused NaN), where it is the key partition of stats_bin_scan: the
 * single pass on a CPU (one work-item per group), a nonempty core, at most
 * ONE_HOLES slots inside it (holes unmerged) and every bound finite and
 * nonzero (-0 and +0 compare equal as floats but are different keys). */
#define ONE_HOLES 3
static int one_read_partition(const bins_run *b, const size_t *sfirst, size_t nslots, cl_float8 *thr)
{
    if (!b->one_pass || !b->own || !b->kone || b->hot_lo_bin > b->hot_hi_bin)
        return 0;
    float t[8];
    t[0] = key_float(bin_first_key(b, b->hot_lo_bin));
    t[1] = key_float(bin_first_key(b, b->hot_hi_bin) + (bin_keys(b, b->hot_hi_bin) - 1));
    for (int j = 2; j < 8; j++)
        t[j] = NAN;
    int nholes = 0;
    for (size_t j = 0; j < nslots; j++) {
        cl_uint fb = b->refined[sfirst[j]], lb = b->refined[sfirst[j + 1] - 1];
        if (lb < b->hot_lo_bin || fb > b->hot_hi_bin)
            continue;
        if (nholes == ONE_HOLES)
            return 0;
        t[2 + 2 * nholes] = bin_lo(b, fb);
        t[3 + 2 * nholes] = bin_hi(b, lb);
        nholes++;
    }
    for (int j = 0; j < 2 + 2 * nholes; j++)
        if (!(fabsf(t[j]) <= FLT_MAX) || t[j] == 0.0f)
            return 0;
    memcpy(thr->s, t, sizeof t);
    return 1;
}

/* A slot's gathered values v (of the nbins ascending bins at bins) as runs
 * of equal values in order: placed bin by bin into out, then each bin's
 * runs. */
static clred_status slot_runs(bins_run *b, const cl_uint *bins, size_t nbins, const float *v, float *out,
                              cl_uint *low_count)
{
    size_t n = 0;
    for (size_t j = 0; j < nbins; j++)
        n += b->count[bins[j]];
    if (nbins == 1) {
        memcpy(out, v, n * sizeof *v);
    } else {
        /* Each value's place by its bin's offset from the slot's first bin
         * (the slot's bins ascend; any bin between them is empty). */
        size_t span = (size_t)bins[nbins - 1] - bins[0] + 1, at = 0;
        size_t *next = malloc(span * sizeof *next);
        if (!next)
            return clred_fail(CLRED_ERR_MEMORY, "stats: out of host memory for the bin method");
        for (size_t j = 0; j < nbins; j++) {
            next[bins[j] - bins[0]] = at;
            at += b->count[bins[j]];
        }
        for (size_t i = 0; i < n; i++)
            out[next[bin_of(b, v[i]) - bins[0]]++] = v[i];
        free(next);
    }
    for (size_t j = 0, at = 0; j < nbins; j++) {
        bin_runs(b, bins[j], out + at, b->count[bins[j]], low_count);
        at += b->count[bins[j]];
    }
    return CLRED_OK;
}

/* The pixels bins [i0, i1] should hold in slice g, from the sample's
 * per-slice counts, scaled from the sampled rows to the slice's rows. */
static double sample_expect(const bins_run *b, size_t g, cl_uint i0, cl_uint i1)
{
    const cl_uint *h = b->slice_hist + g * ((size_t)b->nb + 1);
    double n = 0;
    for (cl_uint i = i0; i <= i1; i++)
        n += h[i];
    return n * (double)b->rh / (double)b->sample_rows;
}

/* The capacity of a slot in one slice (or, shared, in all). */
static size_t slot_capacity(const bins_run *b, cl_uint i0, cl_uint i1, size_t g)
{
    double e = 0;
    if (b->own)
        e = sample_expect(b, g, i0, i1);
    else
        for (size_t s = 0; s < b->slices; s++)
            e += sample_expect(b, s, i0, i1);
    double cap = (CAP_SCALE * e + 4.0 * sqrt(e) + CAP_SLACK) * CAP_TEST_SCALE;
    return cap < (double)b->base.npix ? (size_t)cap : b->base.npix;
}

/* The set's items in the single pass: per shell and side the count and the
 * pixels' extrema, and the fast set's pixels between consecutive holes
 * (bounded by their keys and the fast set's extrema); they stand for the
 * unrefined bins in the exact replay. */
static void add_item(bins_run *b, int shell, size_t n, float lo, float hi)
{
    if (!n)
        return;
    b->it_lo[b->nitems] = lo;
    b->it_hi[b->nitems] = hi;
    b->it_n[b->nitems] = n;
    b->it_shell[b->nitems] = (unsigned char)shell;
    b->nitems++;
}

/* Pass 2 (or, with b->one_pass, the single pass) and the runs, prefix sums
 * and shells it gives. Two passes: slots are runs of refined nonempty bins
 * with no unrefined nonempty bin between them, and every group's position
 * per slot is exact from pass 1's counts. One pass: slots are runs of
 * wanted bins, their capacities predicted from the sample; a slot that
 * overflows sets b->missed. */
static size_t runs_from(const bins_run *b, float v);

static clred_status scan_bins(bins_run *b, const unsigned char *want)
{
    const char *name = "stats_bin_scan";
    size_t total_gather = 0;
    size_t *sfirst = malloc((b->nb + 1) * sizeof *sfirst), ngather = 0;
    if (!sfirst)
        return clred_fail(CLRED_ERR_MEMORY, "stats: out of host memory for the bin method");
    b->nrefined = b->nunref = 0;
    int in_slot = 0;
    for (cl_uint i = 0; i < b->nb; i++) {
        if (b->one_pass) {
            if (want[i]) {
                if (!in_slot)
                    sfirst[ngather++] = b->nrefined;
                b->refined[b->nrefined++] = i;
            }
            in_slot = want[i];
            continue;
        }
        if (!b->count[i])
            continue;
        if (want[i]) {
            if (!in_slot)
                sfirst[ngather++] = b->nrefined;
            in_slot = 1;
            b->refined[b->nrefined++] = i;
            total_gather += b->count[i];
        } else {
            in_slot = 0;
            b->unref[b->nunref++] = i;
        }
    }
    sfirst[ngather] = b->nrefined;
    if (ngather > MAX_SLOTS) { /* cannot happen with <= 5 windows per shell; not worth a wider table */
        free(sfirst);
        b->base.gave_up = 1;
        return CLRED_OK;
    }
    size_t ncur = b->slices * ngather + 1;
    cl_uint *cursor = malloc(ncur * sizeof *cursor);
    cl_uint *cursor_end = malloc(ncur * sizeof *cursor_end);
    size_t *gbase = malloc((ngather + 1) * sizeof *gbase);
    clred_status st = CLRED_OK;
    if (!cursor || !cursor_end || !gbase)
        st = clred_fail(CLRED_ERR_MEMORY, "stats: out of host memory for the bin method");
    /* Where each group writes each slot's pixels: slot-major, so a slot's
     * pixels end up together whichever group found them. */
    size_t pos = 0;
    for (size_t k = 0; st == CLRED_OK && k < ngather; k++) {
        gbase[k] = pos;
        for (size_t g = 0; g < b->slices; g++) {
            cursor[g * ngather + k] = (cl_uint)pos;
            if (b->one_pass)
                pos += slot_capacity(b, b->refined[sfirst[k]], b->refined[sfirst[k + 1] - 1], g);
            else
                for (size_t r = sfirst[k]; r < sfirst[k + 1]; r++)
                    pos += b->own ? b->slice_hist[g * ((size_t)b->nb + 1) + b->refined[r]] : b->count[b->refined[r]];
            cursor_end[g * ngather + k] = (cl_uint)pos;
        }
    }
    gbase[ngather] = pos;
    if (b->one_pass)
        total_gather = pos;
    if (st == CLRED_OK && pos > UINT32_MAX - 1) {
        b->missed = 1;
        st = CLRED_OK;
        free(sfirst), free(cursor), free(cursor_end), free(gbase);
        return st;
    }
    size_t nsh = (size_t)b->npred, nent = 2 * nsh;
    size_t acc = b->use_double ? sizeof(cl_double) : sizeof(cl_float);
    size_t parts = b->groups * (nent + 1);
    cl_uchar *table = malloc(b->nb * sizeof *table);
    float *sorted = malloc((total_gather + 1) * sizeof *sorted);
    cl_uint *pcount = malloc(parts * sizeof *pcount);
    cl_uint *pgap = malloc(b->groups * 4 * sizeof *pgap);
    void *psums = malloc(parts * 2 * acc);
    float *pminmax = malloc(parts * 2 * sizeof *pminmax);
    float *gathered = malloc((total_gather + 1) * sizeof *gathered);
    cl_uint *low_count = malloc((1u << BIN_SHIFT) * sizeof *low_count);
    b->runs = malloc((total_gather + 1) * sizeof *b->runs);
    if (!table || !sorted || !pcount || !pgap || !psums || !pminmax || !gathered || !low_count || !b->runs)
        st = clred_fail(CLRED_ERR_MEMORY, "stats: out of host memory for the bin method");

    /* The table: a byte per bin, its shell and side, or SLOT0 + its slot. */
    for (cl_uint i = 0; st == CLRED_OK && i < b->nb; i++)
        table[i] = (cl_uchar)(2 * b->shell[i] + (i > b->side_bin));
    for (size_t k = 0; st == CLRED_OK && k < ngather; k++)
        for (size_t r = sfirst[k]; r < sfirst[k + 1]; r++)
            table[b->refined[r]] = (cl_uchar)(SLOT0 + k);

    cl_mem dtable = NULL, dcursor = NULL, dend = NULL, dcount = NULL, dsums = NULL, dminmax = NULL, dgather = NULL,
           dgap = NULL;
    if (st == CLRED_OK)
        st = clred_buffer(b->ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, b->nb * sizeof *table, table, &dtable,
                          "stats bin table");
    if (st == CLRED_OK)
        st = clred_buffer(b->ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, ncur * sizeof *cursor, cursor, &dcursor,
                          "stats gather cursors");
    if (st == CLRED_OK)
        st = clred_buffer(b->ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, ncur * sizeof *cursor_end, cursor_end,
                          &dend, "stats gather ends");
    if (st == CLRED_OK)
        st = clred_buffer(b->ctx, CL_MEM_WRITE_ONLY, parts * sizeof *pcount, NULL, &dcount, "stats shell counts");
    if (st == CLRED_OK)
        st = clred_buffer(b->ctx, CL_MEM_WRITE_ONLY, parts * 2 * acc, NULL, &dsums, "stats shell sums");
    if (st == CLRED_OK)
        st = clred_buffer(b->ctx, CL_MEM_WRITE_ONLY, parts * 2 * sizeof *pminmax, NULL, &dminmax, "stats shell extrema");
    if (st == CLRED_OK)
        st = clred_buffer(b->ctx, CL_MEM_WRITE_ONLY, (total_gather + 1) * sizeof *gathered, NULL, &dgather,
                          "stats gathered pixels");
    if (st == CLRED_OK)
        st = clred_buffer(b->ctx, CL_MEM_WRITE_ONLY, b->groups * 4 * sizeof *pgap, NULL, &dgap, "stats gap counts");
    cl_uint nentries = (cl_uint)nent, ng = (cl_uint)ngather;
    cl_float8 thr;
    /* stats_bin_one where its float partition is the key one; its fast
     * lanes add exactly 0 to the sums with a shift that is a float */
    int one = one_read_partition(b, sfirst, ngather, &thr);
    if (one) {
        name = "stats_bin_one";
        b->shift = (float)b->shift;
    }
    if (b->one_pass) {
        if (one)
            one_read_vector++;
        else
            one_read_keys++;
    }
    cl_double shift_d = b->shift;
    cl_float shift_f = (cl_float)b->shift;
    cl_kernel k = one ? b->kone : b->kscan;
    cl_uint loc = one ? 0 : 3; /* stats_bin_scan's local reduction arguments */
    if (st == CLRED_OK)
        st = set_region_args(b, k, name);
    if (st == CLRED_OK)
        st = set_arg(k, name, 8, sizeof dtable, &dtable);
    if (st == CLRED_OK)
        st = set_arg(k, name, 9, sizeof nentries, &nentries);
    if (st == CLRED_OK)
        st = b->use_double ? set_arg(k, name, 10, sizeof shift_d, &shift_d)
                           : set_arg(k, name, 10, sizeof shift_f, &shift_f);
    if (st == CLRED_OK)
        st = set_arg(k, name, 11, sizeof dcount, &dcount);
    if (st == CLRED_OK)
        st = set_arg(k, name, 12, sizeof dsums, &dsums);
    if (st == CLRED_OK)
        st = set_arg(k, name, 13, sizeof dminmax, &dminmax);
    if (st == CLRED_OK && !one)
        st = set_arg(k, name, 14, b->local * sizeof(cl_uint), NULL);
    if (st == CLRED_OK && !one)
        st = set_arg(k, name, 15, b->local * 2 * acc, NULL);
    if (st == CLRED_OK && !one)
        st = set_arg(k, name, 16, b->local * 2 * sizeof(cl_float), NULL);
    if (st == CLRED_OK)
        st = set_arg(k, name, 14 + loc, sizeof dgather, &dgather);
    if (st == CLRED_OK)
        st = set_arg(k, name, 15 + loc, sizeof dcursor, &dcursor);
    if (st == CLRED_OK)
        st = set_arg(k, name, 16 + loc, sizeof dend, &dend);
    if (st == CLRED_OK)
        st = set_arg(k, name, 17 + loc, sizeof ng, &ng);
    if (st == CLRED_OK)
        st = set_map_args(b, k, name, 18 + loc);
    if (st == CLRED_OK)
        st = set_hot_args(b, k, name, 23 + loc, sfirst, ngather);
    if (st == CLRED_OK && one)
        st = set_arg(k, name, 26, sizeof thr, &thr);
    if (st == CLRED_OK)
        st = set_arg(k, name, one ? 27 : 29, sizeof dgap, &dgap);
    if (st == CLRED_OK)
        st = run_pass(b, k, name);
    if (st == CLRED_OK)
        st = clred_download(b->ctx, dcount, 0, parts * sizeof *pcount, pcount);
    if (st == CLRED_OK)
        st = clred_download(b->ctx, dsums, 0, parts * 2 * acc, psums);
    if (st == CLRED_OK)
        st = clred_download(b->ctx, dminmax, 0, parts * 2 * sizeof *pminmax, pminmax);
    if (st == CLRED_OK)
        st = clred_download(b->ctx, dgap, 0, b->groups * 4 * sizeof *pgap, pgap);
    if (st == CLRED_OK && ngather)
        st = clred_download(b->ctx, dcursor, 0, b->slices * ngather * sizeof *cursor, cursor);
    /* Two passes: a gathered bin's pixels are taken as its count, so the
     * cursors must have run exactly to the ends pass 1's counts gave. One
     * pass: a cursor past its end is a slot that overflowed. */
    for (size_t c = 0; st == CLRED_OK && c < b->slices * ngather; c++) {
        if (b->one_pass && cursor[c] > cursor_end[c])
            b->missed = 1;
        else if (!b->one_pass && cursor[c] != cursor_end[c])
            st = clred_fail(CLRED_ERR_DEVICE, "stats: gathered %u pixels where the counts gave %u, on %s", cursor[c],
                            cursor_end[c], b->ctx->info.name);
    }
    if (st == CLRED_OK && !b->missed && total_gather)
        st = clred_download(b->ctx, dgather, 0, total_gather * sizeof *gathered, gathered);
    clred_release(&dtable);
    clred_release(&dcursor);
    clred_release(&dend);
    clred_release(&dcount);
    clred_release(&dsums);
    clred_release(&dminmax);
    clred_release(&dgather);
    clred_release(&dgap);

    /* One pass: each slot's pixels together, and the gathered bins' counts. */
    if (st == CLRED_OK && !b->missed && b->one_pass) {
        size_t at = 0;
        for (size_t j = 0; j < ngather; j++) {
            size_t from = at;
            for (size_t g = 0; g < b->slices; g++) {
                size_t c = g * ngather + j, start = g ? cursor_end[c - ngather] : gbase[j];
                memmove(gathered + at, gathered + start, (cursor[c] - start) * sizeof *gathered);
                at += cursor[c] - start;
            }
            gbase[j] = from;
        }
        gbase[ngather] = at;
        total_gather = at;
        for (size_t r = 0; r < b->nrefined; r++)
            b->count[b->refined[r]] = 0;
        for (size_t j = 0; j < at; j++)
            b->count[bin_of(b, gathered[j])]++;
    }

    /* Shells, items, then the gathered pixels as runs of equal values in order. */
    if (st == CLRED_OK && !b->missed) {
        size_t seen = total_gather, hot = nsh - 1;
        size_t fast_n = 0, below[MAX_HOLES + 1] = {0};
        float fast_min = INFINITY, fast_max = -INFINITY;
        b->nitems = 0;
        for (size_t s = 0; s < nsh; s++) {
            b->shell_n[s] = 0;
            b->shell_s1[s] = b->shell_s2[s] = 0;
            b->shell_min[s] = INFINITY;
            b->shell_max[s] = -INFINITY;
        }
        for (size_t e = 0; e <= nent; e++) {
            size_t s = e < nent ? e / 2 : hot, n = 0;
            float lo = INFINITY, hi = -INFINITY;
            for (size_t g = 0; g < b->groups; g++) {
                size_t o = g * (nent + 1) + e;
                n += pcount[o];
                b->shell_s1[s] += b->use_double ? ((double *)psums)[2 * o] : ((float *)psums)[2 * o];
                b->shell_s2[s] += b->use_double ? ((double *)psums)[2 * o + 1] : ((float *)psums)[2 * o + 1];
                lo = fminf(lo, pminmax[2 * o]);
                hi = fmaxf(hi, pminmax[2 * o + 1]);
            }
            b->shell_n[s] += n;
            if (n) {
                b->shell_min[s] = fmin(b->shell_min[s], lo);
                b->shell_max[s] = fmax(b->shell_max[s], hi);
            }
            seen += n;
            if (e < nent)
                add_item(b, (int)s, n, lo, hi);
            else
                fast_n = n, fast_min = lo, fast_max = hi;
        }
        /* The fast set between the holes: gap j holds the keys from the end
         * of hole j - 1 to the start of hole j. */
        for (cl_uint h = 0; h < b->nholes; h++)
            for (size_t g = 0; g < b->groups; g++)
                below[h] += pgap[g * 4 + h];
        below[b->nholes] = fast_n;
        for (cl_uint h = 0; h <= b->nholes; h++) {
            uint32_t k0 = h ? b->hole_to[h - 1] + 1 : b->hot_lo_key, k1 = h < b->nholes ? b->hole_from[h] - 1 : b->hot_hi_key;
            add_item(b, (int)hot, below[h] - (h ? below[h - 1] : 0), fmaxf(key_float(k0), fast_min),
                     fminf(key_float(k1), fast_max));
        }
        if (b->one_pass)
            b->n0 = seen;
        else if (seen != b->n0)
            st = clred_fail(CLRED_ERR_DEVICE, "stats: second pass saw %zu usable pixels, first %zu, on %s", seen,
                            b->n0, b->ctx->info.name);
        b->nruns = 0;
        for (size_t j = 0; st == CLRED_OK && j < ngather; j++)
            st = slot_runs(b, b->refined + sfirst[j], sfirst[j + 1] - sfirst[j], gathered + gbase[j], sorted + gbase[j],
                           low_count);
    }
    if (st == CLRED_OK && !b->missed) {
        b->rc = malloc((b->nruns + 1) * sizeof *b->rc);
        b->r1 = malloc((b->nruns + 1) * sizeof *b->r1);
        b->r2 = malloc((b->nruns + 1) * sizeof *b->r2);
        if (!b->rc || !b->r1 || !b->r2)
            st = clred_fail(CLRED_ERR_MEMORY, "stats: out of host memory for the bin method");
    }
    if (st == CLRED_OK && !b->missed) {
        b->rc[0] = 0;
        for (size_t j = 0; j < b->nruns; j++)
            b->rc[j + 1] = b->rc[j] + b->runs[j].c;
        /* Sums anchored at the shift's run, outward: a set's sums add only
         * its own runs (a prefix difference would cancel, e.g. against a
         * gathered FLT_MAX). */
        size_t a = runs_from(b, (float)b->shift);
        b->anchor = a;
        b->r1[a] = b->r2[a] = 0;
        for (size_t j = a; j < b->nruns; j++) {
            double d = (double)b->runs[j].v - b->shift;
            b->r1[j + 1] = b->r1[j] + b->runs[j].c * d;
            b->r2[j + 1] = b->r2[j] + b->runs[j].c * d * d;
        }
        for (size_t j = a; j-- > 0;) {
            double d = (double)b->runs[j].v - b->shift;
            b->r1[j] = b->r1[j + 1] + b->runs[j].c * d;
            b->r2[j] = b->r2[j + 1] + b->runs[j].c * d * d;
        }
    }
    free(table);
    free(sorted);
    free(sfirst);
    free(cursor);
    free(cursor_end);
    free(gbase);
    free(pcount);
    free(pgap);
    free(psums);
    free(pminmax);
    free(gathered);
    free(low_count);
    return st;
}

/* ------------------------------------------------------------ exact replay */

/* The first run with value >= v, and the first with value > v. */
static size_t runs_from(const bins_run *b, float v)
{
    size_t lo = 0, hi = b->nruns;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (b->runs[mid].v < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static size_t runs_after(const bins_run *b, float v)
{
    size_t lo = 0, hi = b->nruns;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (b->runs[mid].v <= v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The sums over runs [i0, i1): from the anchored sums where the runs reach
 * the anchor, else one by one. */
static void runs_sums(const bins_run *b, size_t i0, size_t i1, double *s1, double *s2)
{
    *s1 = *s2 = 0;
    if (i1 <= i0)
        return;
    if (i0 <= b->anchor && b->anchor <= i1) {
        *s1 = b->r1[i0] + b->r1[i1];
        *s2 = b->r2[i0] + b->r2[i1];
        return;
    }
    for (size_t j = i0; j < i1; j++) {
        double d = (double)b->runs[j].v - b->shift;
        *s1 += b->runs[j].c * d;
        *s2 += b->runs[j].c * d * d;
    }
}

/* Takes set j's unrefined bins (those of shell >= j) as the set measured. */
static void use_set(bins_run *b, int j)
{
    b->nu = 0;
    b->ucum[0] = 0;
    if (b->one_pass) { /* the items of shell >= j (few: counted one by one) */
        for (size_t k = 0; k < b->nitems; k++) {
            if (b->it_shell[k] < j)
                continue;
            b->ulo[b->nu] = b->it_lo[k];
            b->uhi[b->nu] = b->it_hi[k];
            b->ucum[b->nu + 1] = b->ucum[b->nu] + b->it_n[k];
            b->nu++;
        }
        b->set_index = j;
        return;
    }
    for (size_t k = 0; k < b->nunref; k++) {
        cl_uint i = b->unref[k];
        if (b->shell[i] < j)
            continue;
        b->ulo[b->nu] = bin_lo(b, i);
        b->uhi[b->nu] = bin_hi(b, i);
        b->ucum[b->nu + 1] = b->ucum[b->nu] + b->count[i];
        b->nu++;
    }
    b->set_index = j;
}

/* Bounds on the number of pixels of the set with value in [a, z]: refined
 * pixels exactly; an unrefined bin that straddles a or z could hold any
 * number of them, so it widens *hi. */
static void count_between(const bins_run *b, kept_range set, float a, float z, size_t *lo, size_t *hi)
{
    if (a < set.lo)
        a = set.lo;
    if (z > set.hi)
        z = set.hi;
    *lo = *hi = 0;
    if (!(a <= z))
        return;
    *lo = b->rc[runs_after(b, z)] - b->rc[runs_from(b, a)];
    *hi = *lo;
    if (b->one_pass) { /* items need not be disjoint: each on its own */
        for (size_t k = 0; k < b->nu; k++) {
            size_t n = b->ucum[k + 1] - b->ucum[k];
            if (b->uhi[k] < a || b->ulo[k] > z)
                continue;
            *hi += n;
            if (b->ulo[k] >= a && b->uhi[k] <= z)
                *lo += n;
        }
        return;
    }
    /* Unrefined bins: [i0, i1) those not wholly below a or above z. */
    size_t i0 = 0, i1 = b->nu, l = 0, h = b->nu;
    while (l < h) {
        size_t mid = l + (h - l) / 2;
        if (b->uhi[mid] < a)
            l = mid + 1;
        else
            h = mid;
    }
    i0 = l;
    l = i0, h = b->nu;
    while (l < h) {
        size_t mid = l + (h - l) / 2;
        if (b->ulo[mid] <= z)
            l = mid + 1;
        else
            h = mid;
    }
    i1 = l;
    if (i0 >= i1)
        return;
    /* Only the first and the last can reach past a or z. */
    size_t all = b->ucum[i1] - b->ucum[i0], sure = all;
    if (b->ulo[i0] < a || b->uhi[i0] > z)
        sure -= b->ucum[i0 + 1] - b->ucum[i0];
    if (i1 - 1 > i0 && (b->ulo[i1 - 1] < a || b->uhi[i1 - 1] > z))
        sure -= b->ucum[i1] - b->ucum[i1 - 1];
    *lo += sure;
    *hi += all;
}

/* The k-th (0-based) smallest value of set j, or gives up. */
static float kth_value(bins_run *b, kept_range set, double vmin, double vmax, size_t k, int *ok)
{
    uint32_t lo = float_key((float)vmin), hi = float_key((float)vmax);
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        size_t cl, ch;
        count_between(b, set, -INFINITY, key_float(mid), &cl, &ch);
        if (cl >= k + 1)
            hi = mid;
        else if (ch < k + 1)
            lo = mid + 1;
        else {
            *ok = 0;
            return 0;
        }
    }
    return key_float(hi);
}

static int within(float x, double m, double d) { return fabs((double)x - m) <= d; }

/* The float interval [*a, *z] of x with |x - m| <= d computed in double as
 * the reference does (empty: *a > *z). Rounding can stretch it far from
 * m - d (|tiny - 1| rounds to 1), so its ends are found by bisection over
 * float keys, where the predicate is monotone on either side of m. */
static void deviation_interval(double m, double d, float *a, float *z)
{
    float below = clred_float_at_or_below(m), above = clred_float_at_or_above(m);
    *a = 1, *z = 0;
    if (!(fabs(m) <= FLT_MAX) || (!within(below, m, d) && !within(above, m, d)))
        return;
    float inner_lo = within(below, m, d) ? below : above, inner_hi = within(above, m, d) ? above : below;
    uint32_t lo = float_key(-FLT_MAX), hi = float_key(inner_lo);
    while (lo < hi) { /* the smallest key that is within */
        uint32_t mid = lo + (hi - lo) / 2;
        if (within(key_float(mid), m, d))
            hi = mid;
        else
            lo = mid + 1;
    }
    *a = key_float(lo);
    lo = float_key(inner_hi), hi = float_key(FLT_MAX);
    while (lo < hi) { /* the largest key that is within */
        uint32_t mid = lo + (hi - lo + 1) / 2;
        if (within(key_float(mid), m, d))
            lo = mid;
        else
            hi = mid - 1;
    }
    *z = key_float(lo);
}

/* The k-th smallest |x - m| over set j, or gives up. */
static int deviation_count(bins_run *b, kept_range set, double m, double d, size_t *cl, size_t *ch)
{
    float a, z;
    deviation_interval(m, d, &a, &z);
    *cl = *ch = 0;
    if (a <= z)
        count_between(b, set, a, z, cl, ch);
    return *cl == *ch;
}

static double kth_deviation(bins_run *b, kept_range set, double m, double dmax, size_t k, int *ok)
{
    uint64_t lo = 0, hi;
    memcpy(&hi, &dmax, sizeof hi);
    /* The single pass counts exactly only where both ends lie in the MAD
     * windows: [dlo, dhi]. Where the k-th deviation lies there, bisect only
     * there. */
    if (b->one_pass && b->have_madwin) {
        double dlo = fmax(m - b->madwin[0][1], b->madwin[1][0] - m), dhi = fmin(m - b->madwin[0][0], b->madwin[1][1] - m);
        size_t cl, ch;
        if (dlo >= 0 && dlo <= dhi && dhi <= dmax && deviation_count(b, set, m, dlo, &cl, &ch) && ch < k + 1 &&
            deviation_count(b, set, m, dhi, &cl, &ch) && cl >= k + 1) {
            uint64_t l, h;
            memcpy(&l, &dlo, sizeof l);
            memcpy(&h, &dhi, sizeof h);
            lo = l + 1, hi = h;
        }
    }
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        double d;
        memcpy(&d, &mid, sizeof d);
        float a, z;
        deviation_interval(m, d, &a, &z);
        size_t cl = 0, ch = 0;
        if (a <= z)
            count_between(b, set, a, z, &cl, &ch);
        if (cl >= k + 1)
            hi = mid;
        else if (ch < k + 1)
            lo = mid + 1;
        else {
            *ok = 0;
            return 0;
        }
    }
    double d;
    memcpy(&d, &hi, sizeof d);
    return d;
}

static int set_of(const bins_run *b, int index) { return index < b->npred ? index : b->npred - 1; }

static clred_status bins_measure(stats_measurer *m, int index, kept_range range, size_t previous_n, set_stats *s,
                                 int *unchanged)
{
    bins_run *b = (bins_run *)m;
    int j = set_of(b, index);
    *unchanged = 0;
    /* Every unrefined bin must lie wholly inside or outside the range, and
     * inside exactly when its shell says so. */
    size_t nchecks = b->one_pass ? b->nitems : b->nunref;
    for (size_t k = 0; k < nchecks; k++) {
        cl_uint i = b->one_pass ? 0 : b->unref[k];
        float vlo = b->one_pass ? b->it_lo[k] : bin_lo(b, i), vhi = b->one_pass ? b->it_hi[k] : bin_hi(b, i);
        int shell = b->one_pass ? b->it_shell[k] : b->shell[i];
        int inside = vlo >= range.lo && vhi <= range.hi, outside = vhi < range.lo || vlo > range.hi;
        if ((!inside && !outside) || inside != (shell >= j)) {
            m->gave_up = 1;
            return CLRED_OK;
        }
    }
    size_t i0 = runs_from(b, range.lo), i1 = runs_after(b, range.hi);
    size_t n = i1 > i0 ? b->rc[i1] - b->rc[i0] : 0;
    double s1 = 0, s2 = 0;
    runs_sums(b, i0, i1, &s1, &s2);
    double vmin = i1 > i0 ? b->runs[i0].v : INFINITY, vmax = i1 > i0 ? b->runs[i1 - 1].v : -INFINITY;
    for (int sh = j; sh < b->npred; sh++) {
        n += b->shell_n[sh];
        s1 += b->shell_s1[sh];
        s2 += b->shell_s2[sh];
        if (b->shell_n[sh]) {
            vmin = fmin(vmin, b->shell_min[sh]);
            vmax = fmax(vmax, b->shell_max[sh]);
        }
    }
    if (previous_n != 0 && n == previous_n) {
        *unchanged = 1;
        return CLRED_OK;
    }
    set_stats next = {0};
    next.median = NAN;
    next.n = n;
    if (n > 0) {
        use_set(b, j);
        int ok = 1;
        size_t k = (n - 1) / 2;
        double lower = kth_value(b, range, vmin, vmax, k, &ok);
        double upper = ok && n % 2 == 0 ? kth_value(b, range, vmin, vmax, k + 1, &ok) : lower;
        if (!ok) {
            m->gave_up = 1;
            return CLRED_OK;
        }
        next.median = n % 2 ? lower : (lower + upper) / 2.0;
        double dmean = s1 / (double)n, var = s2 / (double)n - dmean * dmean;
        next.mean = b->shift + dmean;
        next.std = var > 0 ? sqrt(var) : 0.0;
        next.min = vmin;
        next.max = vmax;
    }
    *s = next;
    return CLRED_OK;
}

static clred_status bins_mad(stats_measurer *m, kept_range range, set_stats *s)
{
    bins_run *b = (bins_run *)m;
    if (s->have_mad || s->n == 0)
        return CLRED_OK;
    /* The set measured last is the one s describes (clred_stats_clip keeps
     * the last changed measurement). */
    int ok = 1;
    double dmax = fmax(fabs(s->max - s->median), fabs(s->min - s->median));
    size_t k = (s->n - 1) / 2;
    double lower = kth_deviation(b, range, s->median, dmax, k, &ok);
    double upper = ok && s->n % 2 == 0 ? kth_deviation(b, range, s->median, dmax, k + 1, &ok) : lower;
    if (!ok) {
        m->gave_up = 1;
        return CLRED_OK;
    }
    s->mad = s->n % 2 ? lower : (lower + upper) / 2.0;
    s->have_mad = 1;
    return CLRED_OK;
}

/* ------------------------------------------------------------ entry */

static void bins_release(bins_run *b)
{
    free(b->slice_hist);
    free(b->count);
    free(b->shell);
    free(b->refined);
    free(b->unref);
    free(b->runs);
    free(b->rc);
    free(b->r1);
    free(b->r2);
    free(b->ulo);
    free(b->uhi);
    free(b->ucum);
    free(b->approx_cum);
}

clred_status clred_stats_bins(clred_ctx *ctx, cl_mem sci, cl_mem mask, cl_ushort ignore, size_t width,
                              const size_t region[4], const clred_stats_opts *o, clred_stats *out, int *done)
{
    *done = 0;
    if (!ctx->use_double || o->spread_mad)
        return CLRED_OK;
    bins_run b;
    memset(&b, 0, sizeof b);
    b.base.measure = bins_measure;
    b.base.mad = bins_mad;
    b.ctx = ctx;
    b.sci = sci;
    b.mask = mask;
    b.ignore = ignore;
    b.width = (cl_uint)width;
    b.x0 = (cl_uint)region[0];
    b.y0 = (cl_uint)region[2];
    b.rw = (cl_uint)(region[1] - region[0]);
    b.rh = (cl_uint)(region[3] - region[2]);
    b.base.npix = (size_t)b.rw * b.rh;
    b.use_double = ctx->use_double;
    CLRED_TRY(clred_kernel(ctx, "stats", NULL, "stats_bin_hist", &b.khist));
    CLRED_TRY(clred_kernel(ctx, "stats", NULL, "stats_bin_scan", &b.kscan));
    CLRED_TRY(plan(&b));
    if (b.own && b.base.npix >= ONE_READ_MIN_PIXELS) /* the single read's vector kernel: one work-item per group */
        CLRED_TRY(clred_kernel(ctx, "stats", NULL, "stats_bin_one", &b.kone));
    b.slice_hist = malloc(b.slices * (NB_MAX + 1) * sizeof *b.slice_hist);
    b.count = malloc(NB_MAX * sizeof *b.count);
    b.shell = malloc(NB_MAX);
    b.refined = malloc(NB_MAX * sizeof *b.refined);
    b.unref = malloc(NB_MAX * sizeof *b.unref);
    b.ulo = malloc(NB_MAX * sizeof *b.ulo);
    b.uhi = malloc(NB_MAX * sizeof *b.uhi);
    b.ucum = malloc((NB_MAX + 1) * sizeof *b.ucum);
    b.approx_cum = malloc((NB_MAX + 1) * sizeof *b.approx_cum);
    unsigned char *want = calloc(NB_MAX, 1);
    clred_status st = CLRED_OK;
    if (!b.slice_hist || !b.count || !b.shell || !b.refined || !b.unref || !b.ulo || !b.uhi || !b.ucum ||
        !b.approx_cum || !want)
        st = clred_fail(CLRED_ERR_MEMORY, "stats: out of host memory for the bin method");
    if (st == CLRED_OK)
        st = place_window(&b, o, want);
    clred_stats res;
    memset(&res, 0, sizeof res);
    /* One read where the sample's prediction holds. */
    if (st == CLRED_OK && ONE_PASS && b.sample_step > 0)
        st = sample_fine(&b, o, want);
    if (st == CLRED_OK && ONE_PASS && b.sample_n > 0 && b.npred > 0) {
        b.one_pass = 1;
        plan_one_pass(&b, o, want);
        st = scan_bins(&b, want);
        if (st == CLRED_OK && !b.missed && !b.base.gave_up)
            st = clred_stats_clip(&b.base, o, &res);
        if (st == CLRED_OK && !b.missed && !b.base.gave_up) {
            *out = res;
            *done = 1;
            one_pass_hit++;
            bins_answered++;
        } else if (st == CLRED_OK) {
            one_pass_missed++;
        }
        free(b.runs), free(b.rc), free(b.r1), free(b.r2);
        b.runs = NULL, b.rc = NULL, b.r1 = b.r2 = NULL;
        b.one_pass = b.missed = b.base.gave_up = 0;
        memset(&res, 0, sizeof res);
    }
    if (st != CLRED_OK || *done) {
        free(want);
        bins_release(&b);
        return st;
    }
    if (st == CLRED_OK) {
        memset(want, 0, NB_MAX);
        st = count_bins(&b, 1);
    }
    if (st == CLRED_OK && b.n0 > 0) {
        predict(&b, o, want);
        if (b.n0 <= GATHER_ALL) /* a prediction from few pixels is crude: refine every bin */
            memset(want, 1, b.nb);
        assign_shells(&b);
        st = scan_bins(&b, want);
    }
    if (b.n0 == 0)
        b.npred = 1; /* one empty shell: clipping ends at the first measurement */
    if (st == CLRED_OK) {
        st = clred_stats_clip(&b.base, o, &res);
        if (st == CLRED_OK && !b.base.gave_up) {
            *out = res;
            *done = 1;
        }
    }
    if (st == CLRED_OK) {
        if (*done)
            bins_answered++;
        else
            bins_gave_up++;
    }
    free(want);
    bins_release(&b);
    return st;
}
