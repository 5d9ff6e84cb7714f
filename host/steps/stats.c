/* Sigma-clipped image statistics computed on the device.
 *
 * The clipping follows astropy.stats.sigma_clipped_stats (cenfunc median,
 * stdfunc std): each iteration computes the centre and spread of the pixels
 * still kept, keeps centre - sigma_lower * spread <= x <= centre + sigma_upper *
 * spread among them, and stops when an iteration removes nothing or after
 * max_iters iterations (the iteration that removes nothing counts, as in
 * astropy). std is the population standard deviation (ddof = 0, numpy's
 * default, which astropy uses). Because each iteration filters the survivors of
 * the previous one, the kept set is always the usable pixels inside the
 * intersection of all bounds so far: one float range [lo, hi], so no per-pixel
 * state lives on the device.
 *
 * Bounds are computed in double on the host and turned into the float range
 * that keeps exactly the floats x with lo_d <= (double)x <= hi_d. Means and
 * spreads come from per-work-group partial sums in acc_t finished on the host in
 * double; medians and MADs are exact, by radix selection (stats.cl). */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stats.h"

/* Work-items per group we aim for; the device may allow fewer. */
#define STATS_GROUP_CAP 256

typedef struct {
    clred_ctx *ctx;
    cl_mem sci, mask;
    cl_ushort ignore;
    cl_uint width, x0, y0, rw, n; /* n: pixels in the region */
    int use_double;
    cl_kernel khist, kmin, kreduce;
    unsigned digit_bits; /* radix digit: 11 bits where local memory allows, else 8 */
    size_t hist_local, hist_groups, min_local, min_groups, red_local, red_groups;
    cl_mem hist, pmin, pcount, psums, pminmax;
    cl_uint *hhist;
    cl_ulong *hmin;
    cl_uint *hcount;
    void *hsums;
    float *hminmax;
} stats_run;

typedef struct {
    float lo, hi;
} kept_range;

typedef struct {
    size_t n;
    double median, mean, std, min, max, mad;
    int have_mad;
} set_stats;

clred_stats_opts clred_stats_defaults(void)
{
    clred_stats_opts o;
    memset(&o, 0, sizeof o);
    o.sigma_lower = 3.0;
    o.sigma_upper = 3.0;
    o.max_iters = 5;
    o.ignore_bits = CLRED_MASK_UNUSABLE;
    return o;
}

/* ---------------------------------------------------------------- checks */

static clred_status check_opts(const clred_stats_opts *o)
{
    if (!(o->sigma_lower >= 0 && isfinite(o->sigma_lower)) || !(o->sigma_upper >= 0 && isfinite(o->sigma_upper)))
        return clred_fail(CLRED_ERR_USAGE, "stats: sigma thresholds must be finite and >= 0 (got lower %g, upper %g)",
                          o->sigma_lower, o->sigma_upper);
    if (o->max_iters < 0)
        return clred_fail(CLRED_ERR_USAGE, "stats: max_iters must be >= 0 (got %d)", o->max_iters);
    return CLRED_OK;
}

/* The region of opts in an image of width x height; all zero = the whole image. */
static clred_status resolve_region(const clred_stats_opts *o, size_t width, size_t height, size_t r[4])
{
    if (o->x0 == 0 && o->x1 == 0 && o->y0 == 0 && o->y1 == 0) {
        r[0] = 0, r[1] = width, r[2] = 0, r[3] = height;
        return CLRED_OK;
    }
    if (o->x0 >= o->x1 || o->y0 >= o->y1 || o->x1 > width || o->y1 > height)
        return clred_fail(CLRED_ERR_USAGE,
                          "stats: region [%zu:%zu, %zu:%zu) (0-based, half-open) is empty or outside the %zux%zu image",
                          o->x0, o->x1, o->y0, o->y1, width, height);
    r[0] = o->x0, r[1] = o->x1, r[2] = o->y0, r[3] = o->y1;
    return CLRED_OK;
}

/* ------------------------------------------------------------ launching */

static size_t floor_pow2(size_t v)
{
    size_t p = 1;
    while (p * 2 <= v)
        p *= 2;
    return p;
}

/* Picks a power-of-two work-group size that the kernel and the device's local
 * memory allow (fixed + per_item * size bytes), and a number of groups. The
 * kernel's local arguments are first shrunk to 8 bytes: CL_KERNEL_LOCAL_MEM_SIZE
 * counts the sizes last set, and the kernel objects are reused between calls. */
static clred_status plan_launch(stats_run *r, cl_kernel k, const char *name, const cl_uint *local_args,
                                size_t nlocal_args, size_t fixed, size_t per_item, size_t groups_per_cu,
                                size_t *local, size_t *groups)
{
    cl_int err = CL_SUCCESS;
    for (size_t i = 0; i < nlocal_args && err == CL_SUCCESS; i++)
        err = clSetKernelArg(k, local_args[i], 8, NULL);
    size_t kwg = 0;
    cl_ulong kstatic = 0;
    if (err == CL_SUCCESS)
        err = clGetKernelWorkGroupInfo(k, r->ctx->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof kwg, &kwg, NULL);
    if (err == CL_SUCCESS)
        err = clGetKernelWorkGroupInfo(k, r->ctx->device, CL_KERNEL_LOCAL_MEM_SIZE, sizeof kstatic, &kstatic, NULL);
    if (err != CL_SUCCESS)
        return clred_fail_cl(err, name);
    uint64_t avail = r->ctx->info.local_mem > kstatic ? r->ctx->info.local_mem - kstatic : 0;
    size_t l = floor_pow2(kwg < STATS_GROUP_CAP ? (kwg ? kwg : 1) : STATS_GROUP_CAP);
    while (l > 1 && fixed + per_item * l > avail)
        l /= 2;
    if (fixed + per_item * l > avail)
        return clred_fail(CLRED_ERR_DEVICE, "stats: kernel %s needs %zu bytes of local memory, %s has %llu", name,
                          fixed + per_item * l, r->ctx->info.name, (unsigned long long)avail);
    size_t want = (r->n + l - 1) / l;
    size_t cap = (r->ctx->info.compute_units ? r->ctx->info.compute_units : 1) * groups_per_cu;
    *local = l;
    *groups = want < cap ? (want ? want : 1) : cap;
    return CLRED_OK;
}

static clred_status set_arg(cl_kernel k, const char *name, cl_uint index, size_t size, const void *value)
{
    cl_int err = clSetKernelArg(k, index, size, value);
    if (err != CL_SUCCESS) {
        char msg[160];
        snprintf(msg, sizeof msg, "setting argument %u of kernel %s", index, name);
        return clred_fail_cl(err, msg);
    }
    return CLRED_OK;
}

/* The ten leading arguments every stats kernel shares. */
static clred_status set_common(const stats_run *r, cl_kernel k, const char *name, kept_range range)
{
    CLRED_TRY(set_arg(k, name, 0, sizeof r->sci, &r->sci));
    CLRED_TRY(set_arg(k, name, 1, sizeof r->mask, &r->mask));
    CLRED_TRY(set_arg(k, name, 2, sizeof r->ignore, &r->ignore));
    CLRED_TRY(set_arg(k, name, 3, sizeof r->width, &r->width));
    CLRED_TRY(set_arg(k, name, 4, sizeof r->x0, &r->x0));
    CLRED_TRY(set_arg(k, name, 5, sizeof r->y0, &r->y0));
    CLRED_TRY(set_arg(k, name, 6, sizeof r->rw, &r->rw));
    CLRED_TRY(set_arg(k, name, 7, sizeof r->n, &r->n));
    CLRED_TRY(set_arg(k, name, 8, sizeof range.lo, &range.lo));
    return set_arg(k, name, 9, sizeof range.hi, &range.hi);
}

/* An acc_t argument: double or float as the program was built. */
static clred_status set_acc_arg(const stats_run *r, cl_kernel k, const char *name, cl_uint index, double v)
{
    cl_double d = v;
    cl_float f = (cl_float)v;
    return r->use_double ? set_arg(k, name, index, sizeof d, &d) : set_arg(k, name, index, sizeof f, &f);
}

static clred_status run_groups(stats_run *r, cl_kernel k, const char *name, size_t local, size_t groups)
{
    size_t global = local * groups;
    return clred_run(r->ctx, k, name, 1, &global, &local);
}

/* ------------------------------------------------------------ setup */

static void run_release(stats_run *r)
{
    clred_release(&r->hist);
    clred_release(&r->pmin);
    clred_release(&r->pcount);
    clred_release(&r->psums);
    clred_release(&r->pminmax);
    free(r->hhist);
    free(r->hmin);
    free(r->hcount);
    free(r->hsums);
    free(r->hminmax);
}

static clred_status run_init(stats_run *r, clred_ctx *ctx, cl_mem sci, cl_mem mask, size_t width,
                             const size_t region[4], uint16_t ignore)
{
    memset(r, 0, sizeof *r);
    r->ctx = ctx;
    r->sci = sci;
    r->mask = mask;
    r->ignore = ignore;
    r->width = (cl_uint)width;
    r->x0 = (cl_uint)region[0];
    r->y0 = (cl_uint)region[2];
    r->rw = (cl_uint)(region[1] - region[0]);
    r->n = (cl_uint)((region[1] - region[0]) * (region[3] - region[2]));
    r->use_double = ctx->use_double;
    CLRED_TRY(clred_kernel(ctx, "stats", NULL, "stats_histogram", &r->khist));
    CLRED_TRY(clred_kernel(ctx, "stats", NULL, "stats_min_key_above", &r->kmin));
    CLRED_TRY(clred_kernel(ctx, "stats", NULL, "stats_reduce", &r->kreduce));

    /* 2048 bins (8 KiB) cut a 32-bit key in 3 passes; 256 bins fit any device. */
    size_t acc = r->use_double ? sizeof(cl_double) : sizeof(cl_float);
    static const cl_uint hist_local_args[] = {17}, min_local_args[] = {14}, red_local_args[] = {14, 15, 16};
    r->digit_bits = 11;
    if (plan_launch(r, r->khist, "stats_histogram", hist_local_args, 1, (1u << 11) * sizeof(cl_uint), 0, 2,
                    &r->hist_local, &r->hist_groups) != CLRED_OK) {
        r->digit_bits = 8;
        CLRED_TRY(plan_launch(r, r->khist, "stats_histogram", hist_local_args, 1, (1u << 8) * sizeof(cl_uint), 0, 2,
                              &r->hist_local, &r->hist_groups));
    }
    CLRED_TRY(plan_launch(r, r->kmin, "stats_min_key_above", min_local_args, 1, 0, sizeof(cl_ulong), 4, &r->min_local,
                          &r->min_groups));
    CLRED_TRY(plan_launch(r, r->kreduce, "stats_reduce", red_local_args, 3, 0,
                          sizeof(cl_uint) + 2 * acc + 2 * sizeof(cl_float), 4, &r->red_local, &r->red_groups));

    size_t nbins = (size_t)1 << r->digit_bits;
    CLRED_TRY(clred_buffer(ctx, CL_MEM_READ_WRITE, nbins * sizeof(cl_uint), NULL, &r->hist, "stats histogram"));
    CLRED_TRY(clred_buffer(ctx, CL_MEM_WRITE_ONLY, r->min_groups * sizeof(cl_ulong), NULL, &r->pmin, "stats minima"));
    CLRED_TRY(clred_buffer(ctx, CL_MEM_WRITE_ONLY, r->red_groups * sizeof(cl_uint), NULL, &r->pcount, "stats counts"));
    CLRED_TRY(clred_buffer(ctx, CL_MEM_WRITE_ONLY, r->red_groups * 2 * acc, NULL, &r->psums, "stats sums"));
    CLRED_TRY(
        clred_buffer(ctx, CL_MEM_WRITE_ONLY, r->red_groups * 2 * sizeof(cl_float), NULL, &r->pminmax, "stats extrema"));
    r->hhist = malloc(nbins * sizeof *r->hhist);
    r->hmin = malloc(r->min_groups * sizeof *r->hmin);
    r->hcount = malloc(r->red_groups * sizeof *r->hcount);
    r->hsums = malloc(r->red_groups * 2 * acc);
    r->hminmax = malloc(r->red_groups * 2 * sizeof *r->hminmax);
    if (!r->hhist || !r->hmin || !r->hcount || !r->hsums || !r->hminmax)
        return clred_fail(CLRED_ERR_MEMORY, "stats: out of host memory for partial results");
    return CLRED_OK;
}

/* ------------------------------------------------------------ selection */

/* Width of the keys: a float value or float deviation fills the top 32 bits, a
 * double deviation all 64. */
static unsigned key_bits(const stats_run *r, int deviation) { return deviation && r->use_double ? 64 : 32; }

static double key_value(const stats_run *r, int deviation, cl_ulong key)
{
    if (deviation && r->use_double) {
        cl_ulong u = key & ~(1ULL << 63);
        double d;
        memcpy(&d, &u, sizeof d);
        return d;
    }
    uint32_t k = (uint32_t)(key >> 32);
    uint32_t u = (k & 0x80000000u) ? (k & 0x7fffffffu) : ~k;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static clred_status histogram_pass(stats_run *r, kept_range range, int deviation, double centre, cl_ulong prefix,
                                   cl_ulong prefix_mask, cl_uint shift, cl_uint nbins)
{
    const char *name = "stats_histogram";
    cl_uint dev = (cl_uint)deviation;
    CLRED_TRY(clred_fill_zero(r->ctx, r->hist, nbins * sizeof(cl_uint)));
    CLRED_TRY(set_common(r, r->khist, name, range));
    CLRED_TRY(set_arg(r->khist, name, 10, sizeof dev, &dev));
    CLRED_TRY(set_acc_arg(r, r->khist, name, 11, centre));
    CLRED_TRY(set_arg(r->khist, name, 12, sizeof prefix, &prefix));
    CLRED_TRY(set_arg(r->khist, name, 13, sizeof prefix_mask, &prefix_mask));
    CLRED_TRY(set_arg(r->khist, name, 14, sizeof shift, &shift));
    CLRED_TRY(set_arg(r->khist, name, 15, sizeof nbins, &nbins));
    CLRED_TRY(set_arg(r->khist, name, 16, sizeof r->hist, &r->hist));
    CLRED_TRY(set_arg(r->khist, name, 17, nbins * sizeof(cl_uint), NULL));
    CLRED_TRY(run_groups(r, r->khist, name, r->hist_local, r->hist_groups));
    return clred_download(r->ctx, r->hist, 0, nbins * sizeof(cl_uint), r->hhist);
}

static clred_status min_key_above(stats_run *r, kept_range range, int deviation, double centre, cl_ulong above,
                                  cl_ulong *out)
{
    const char *name = "stats_min_key_above";
    cl_uint dev = (cl_uint)deviation;
    CLRED_TRY(set_common(r, r->kmin, name, range));
    CLRED_TRY(set_arg(r->kmin, name, 10, sizeof dev, &dev));
    CLRED_TRY(set_acc_arg(r, r->kmin, name, 11, centre));
    CLRED_TRY(set_arg(r->kmin, name, 12, sizeof above, &above));
    CLRED_TRY(set_arg(r->kmin, name, 13, sizeof r->pmin, &r->pmin));
    CLRED_TRY(set_arg(r->kmin, name, 14, r->min_local * sizeof(cl_ulong), NULL));
    CLRED_TRY(run_groups(r, r->kmin, name, r->min_local, r->min_groups));
    CLRED_TRY(clred_download(r->ctx, r->pmin, 0, r->min_groups * sizeof(cl_ulong), r->hmin));
    cl_ulong best = ~(cl_ulong)0;
    for (size_t g = 0; g < r->min_groups; g++)
        if (r->hmin[g] < best)
            best = r->hmin[g];
    *out = best;
    return CLRED_OK;
}

/* The median of the kept values (deviation = 0) or of their deviations
 * |x - centre| (deviation = 1), exactly: the middle key by radix selection, and
 * for an even count the mean of the two middle values. *n gets the count. When
 * the count equals stop_if_n (nonzero), returns at once with *n set and no value:
 * the caller's set has not changed. */
static clred_status select_median(stats_run *r, kept_range range, int deviation, double centre, size_t stop_if_n,
                                  size_t *n, double *value)
{
    const unsigned bits_total = key_bits(r, deviation);
    cl_ulong prefix = 0, prefix_mask = 0;
    size_t total = 0, rank = 0, bucket_count = 0;
    for (unsigned done = 0; done < bits_total;) {
        unsigned bits = bits_total - done < r->digit_bits ? bits_total - done : r->digit_bits;
        cl_uint shift = 64 - done - bits, nbins = 1u << bits;
        CLRED_TRY(histogram_pass(r, range, deviation, centre, prefix, prefix_mask, shift, nbins));
        if (done == 0) {
            for (cl_uint b = 0; b < nbins; b++)
                total += r->hhist[b];
            *n = total;
            if (total == 0 || total == stop_if_n)
                return CLRED_OK;
            rank = (total - 1) / 2;
        }
        cl_uint b = 0;
        while (b < nbins && rank >= r->hhist[b])
            rank -= r->hhist[b++];
        if (b == nbins)
            return clred_fail(CLRED_ERR_DEVICE, "stats: inconsistent histogram counts on %s", r->ctx->info.name);
        bucket_count = r->hhist[b];
        prefix |= (cl_ulong)b << shift;
        prefix_mask |= (cl_ulong)(nbins - 1) << shift;
        done += bits;
    }
    double lower = key_value(r, deviation, prefix);
    if (total % 2) {
        *value = lower;
        return CLRED_OK;
    }
    /* The upper middle value equals the lower one unless the lower is the last
     * of its equal keys; then it is the smallest key above. */
    double upper = lower;
    if (rank + 1 >= bucket_count) {
        cl_ulong next;
        CLRED_TRY(min_key_above(r, range, deviation, centre, prefix, &next));
        if (next == ~(cl_ulong)0)
            return clred_fail(CLRED_ERR_DEVICE, "stats: no upper middle value found on %s", r->ctx->info.name);
        upper = key_value(r, deviation, next);
    }
    *value = (lower + upper) / 2.0;
    return CLRED_OK;
}

/* ------------------------------------------------------------ reduction */

static clred_status reduce(stats_run *r, kept_range range, double shift, set_stats *s)
{
    const char *name = "stats_reduce";
    size_t acc = r->use_double ? sizeof(cl_double) : sizeof(cl_float);
    CLRED_TRY(set_common(r, r->kreduce, name, range));
    CLRED_TRY(set_acc_arg(r, r->kreduce, name, 10, shift));
    CLRED_TRY(set_arg(r->kreduce, name, 11, sizeof r->pcount, &r->pcount));
    CLRED_TRY(set_arg(r->kreduce, name, 12, sizeof r->psums, &r->psums));
    CLRED_TRY(set_arg(r->kreduce, name, 13, sizeof r->pminmax, &r->pminmax));
    CLRED_TRY(set_arg(r->kreduce, name, 14, r->red_local * sizeof(cl_uint), NULL));
    CLRED_TRY(set_arg(r->kreduce, name, 15, r->red_local * 2 * acc, NULL));
    CLRED_TRY(set_arg(r->kreduce, name, 16, r->red_local * 2 * sizeof(cl_float), NULL));
    CLRED_TRY(run_groups(r, r->kreduce, name, r->red_local, r->red_groups));
    CLRED_TRY(clred_download(r->ctx, r->pcount, 0, r->red_groups * sizeof(cl_uint), r->hcount));
    CLRED_TRY(clred_download(r->ctx, r->psums, 0, r->red_groups * 2 * acc, r->hsums));
    CLRED_TRY(clred_download(r->ctx, r->pminmax, 0, r->red_groups * 2 * sizeof(cl_float), r->hminmax));
    size_t count = 0;
    double sum = 0, sumsq = 0, vmin = INFINITY, vmax = -INFINITY;
    for (size_t g = 0; g < r->red_groups; g++) {
        count += r->hcount[g];
        sum += r->use_double ? ((const double *)r->hsums)[2 * g] : ((const float *)r->hsums)[2 * g];
        sumsq += r->use_double ? ((const double *)r->hsums)[2 * g + 1] : ((const float *)r->hsums)[2 * g + 1];
        if (r->hminmax[2 * g] < vmin)
            vmin = r->hminmax[2 * g];
        if (r->hminmax[2 * g + 1] > vmax)
            vmax = r->hminmax[2 * g + 1];
    }
    if (count != s->n)
        return clred_fail(CLRED_ERR_DEVICE, "stats: reduction counted %zu pixels, selection %zu, on %s", count, s->n,
                          r->ctx->info.name);
    double dmean = sum / (double)count;
    double var = sumsq / (double)count - dmean * dmean;
    s->mean = shift + dmean;
    s->std = var > 0 ? sqrt(var) : 0.0;
    s->min = vmin;
    s->max = vmax;
    return CLRED_OK;
}

/* Median, mean, std, min and max of the kept set; *unchanged when it still
 * holds previous_n pixels (it can only shrink), in which case s is untouched. */
static clred_status measure(stats_run *r, kept_range range, size_t previous_n, set_stats *s, int *unchanged)
{
    set_stats next = {0};
    double median = NAN;
    CLRED_TRY(select_median(r, range, 0, 0.0, previous_n, &next.n, &median));
    *unchanged = previous_n != 0 && next.n == previous_n;
    if (*unchanged)
        return CLRED_OK;
    next.median = median;
    if (next.n > 0)
        CLRED_TRY(reduce(r, range, median, &next));
    *s = next;
    return CLRED_OK;
}

static clred_status measure_mad(stats_run *r, kept_range range, set_stats *s)
{
    if (s->have_mad || s->n == 0)
        return CLRED_OK;
    size_t n = 0;
    CLRED_TRY(select_median(r, range, 1, s->median, 0, &n, &s->mad));
    s->have_mad = 1;
    return CLRED_OK;
}

/* ------------------------------------------------------------ clipping */

/* The smallest float >= v, and the largest float <= v: the float range that
 * keeps exactly the floats whose double value lies in [lo, hi]. */
static float float_at_or_above(double v)
{
    if (isnan(v) || v > FLT_MAX)
        return INFINITY;
    if (v < -FLT_MAX)
        return -INFINITY;
    float f = (float)v;
    return (double)f < v ? nextafterf(f, INFINITY) : f;
}

static float float_at_or_below(double v)
{
    if (isnan(v) || v < -FLT_MAX)
        return -INFINITY;
    if (v > FLT_MAX)
        return INFINITY;
    float f = (float)v;
    return (double)f > v ? nextafterf(f, -INFINITY) : f;
}

static clred_status clip(stats_run *r, const clred_stats_opts *o, clred_stats *out)
{
    kept_range range = {-INFINITY, INFINITY};
    set_stats cur;
    int unchanged = 0;
    CLRED_TRY(measure(r, range, 0, &cur, &unchanged));
    const size_t nvalid = cur.n;
    int iters = 0;
    while (cur.n > 0 && iters < o->max_iters) {
        iters++;
        if (o->spread_mad)
            CLRED_TRY(measure_mad(r, range, &cur));
        double centre = o->centre_mean ? cur.mean : cur.median;
        double spread = o->spread_mad ? CLRED_MAD_TO_SIGMA * cur.mad : cur.std;
        kept_range next = {float_at_or_above(centre - o->sigma_lower * spread),
                           float_at_or_below(centre + o->sigma_upper * spread)};
        if (next.lo < range.lo)
            next.lo = range.lo;
        if (next.hi > range.hi)
            next.hi = range.hi;
        CLRED_TRY(measure(r, next, cur.n, &cur, &unchanged));
        if (unchanged)
            break;
        range = next;
    }
    CLRED_TRY(measure_mad(r, range, &cur));
    out->npix = cur.n;
    out->nrejected = nvalid - cur.n;
    out->ninvalid = r->n - nvalid;
    out->iterations = iters;
    if (cur.n == 0) {
        out->mean = out->median = out->std = out->mad = out->min = out->max = NAN;
    } else {
        out->mean = cur.mean;
        out->median = cur.median;
        out->std = cur.std;
        out->mad = cur.mad;
        out->min = cur.min;
        out->max = cur.max;
    }
    return CLRED_OK;
}

/* ------------------------------------------------------------ entry points */

clred_status clred_stats_device(clred_ctx *ctx, cl_mem sci, cl_mem mask, size_t width, size_t height,
                                const clred_stats_opts *opts, clred_stats *out)
{
    clred_stats_opts defaults = clred_stats_defaults();
    if (!opts)
        opts = &defaults;
    memset(out, 0, sizeof *out);
    if (!ctx || !sci || width == 0 || height == 0)
        return clred_fail(CLRED_ERR_USAGE, "stats: no image (%zux%zu)", width, height);
    /* Kernels index pixels with 32-bit counters that step by the global size. */
    if ((uint64_t)width * height > INT32_MAX)
        return clred_fail(CLRED_ERR_USAGE, "stats: %zux%zu image has more than 2^31 pixels", width, height);
    CLRED_TRY(check_opts(opts));
    size_t region[4];
    CLRED_TRY(resolve_region(opts, width, height, region));
    stats_run r;
    clred_status st = run_init(&r, ctx, sci, mask, width, region, opts->ignore_bits);
    if (st == CLRED_OK)
        st = clip(&r, opts, out);
    run_release(&r);
    return st;
}

clred_status clred_stats_dev(clred_ctx *ctx, const clred_dimage *img, const clred_stats_opts *opts, clred_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!ctx || !img)
        return clred_fail(CLRED_ERR_USAGE, "stats: no device context or image");
    if (img->ctx != ctx)
        return clred_fail(CLRED_ERR_USAGE, "stats: the device image belongs to another context");
    return clred_stats_device(ctx, clred_dimage_sci(img), clred_dimage_mask(img), img->width, img->height, opts, out);
}

clred_status clred_image_stats(clred_ctx *ctx, const clred_image *img, const clred_stats_opts *opts, clred_stats *out)
{
    clred_stats_opts o = opts ? *opts : clred_stats_defaults();
    memset(out, 0, sizeof *out);
    if (!ctx || !img || !img->sci || img->width == 0 || img->height == 0)
        return clred_fail(CLRED_ERR_USAGE, "stats: no image");
    CLRED_TRY(check_opts(&o));
    size_t region[4];
    CLRED_TRY(resolve_region(&o, img->width, img->height, region));
    /* A view of the region's rows only: where the device has its own memory,
     * only those go up. */
    size_t first = region[2] * img->width;
    clred_image rows = {img->width, region[3] - region[2], img->sci + first, NULL,
                        img->mask ? img->mask + first : NULL, NULL};
    o.x0 = region[0], o.x1 = region[1], o.y0 = 0, o.y1 = rows.height;
    clred_dimage *d;
    CLRED_TRY(clred_dimage_borrow(ctx, &rows, &d));
    clred_status st = clred_stats_dev(ctx, d, &o, out);
    clred_dimage_free(d);
    return st;
}
