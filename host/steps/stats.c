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
 * double; medians and MADs are exact, by radix selection (stats.cl) with digits
 * as wide as local memory allows (16 bits: two passes per float, the second of
 * which also sums). A clipping iteration after the first takes its first digit
 * from the previous iteration's histogram, so it reads the image once; the MAD
 * (64-bit keys of double deviations) takes four passes.
 *
 * The bin method (stats_bins.c) answers first where it applies: two passes
 * whatever the iterations, with the same results. Radix selection is what it
 * falls back on, and what a MAD spread or float accumulation uses. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stats_clip.h"

/* Work-items per group we aim for; the device may allow fewer. */
#define STATS_GROUP_CAP 256
/* Work-groups per core on a CPU: enough to even out a busy core. */
#define STATS_GROUPS_PER_CORE 2

typedef struct {
    clred_ctx *ctx;
    cl_mem sci, mask;
    cl_ushort ignore;
    cl_uint width, x0, y0, rw, rh, n; /* n: pixels in the region */
    int use_double;
    cl_kernel k;
    unsigned digit_bits; /* radix digit: 16 bits where local memory allows, down to 8 */
    size_t local, groups;
    cl_mem hist, pabove, pcount, psums, pminmax, pedges;
    cl_uint *hhist;
    cl_uint *hedges;
    /* The first-digit histogram of the values in h0_range, kept between
     * clipping iterations: a narrower range's histogram follows from it but
     * for the two buckets that hold its ends (see select_median). */
    cl_uint *h0;
    int h0_valid;
    cl_ulong *habove;
    cl_uint *hcount;
    void *hsums;
    float *hminmax;
    kept_range h0_range;
} stats_run;

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

/* Local memory the kernel needs for a digit of `bits` bits and `local`
 * work-items: the histogram, then per work-item the above-key, count, two sums
 * and min/max of the group reduction. */
static size_t local_bytes(const stats_run *r, unsigned bits, size_t local)
{
    size_t acc = r->use_double ? sizeof(cl_double) : sizeof(cl_float);
    return ((size_t)1 << bits) * sizeof(cl_uint) +
           local * (sizeof(cl_ulong) + 3 * sizeof(cl_uint) + 2 * acc + 2 * sizeof(cl_float));
}

/* The local arguments of stats_select. */
static const cl_uint local_args[] = {17, 22, 28, 29, 30, 36};

/* Picks the digit width and the launch shape. A CPU runs a work-group as a
 * loop on one core: one work-item per group owns its histogram (no atomics)
 * and walks its rows in order, a few groups per core. Elsewhere: a
 * power-of-two group that the kernel and local memory allow, whose work-items
 * stride along rows; the widest digit that still leaves a group of 64 (or
 * the most the kernel allows), down to 8 bits. The kernel's local arguments are
 * first shrunk to 8 bytes: CL_KERNEL_LOCAL_MEM_SIZE counts the sizes last set,
 * and the kernel object is reused between calls. */
static clred_status plan_launch(stats_run *r)
{
    const char *name = "stats_select";
    cl_int err = CL_SUCCESS;
    for (size_t i = 0; i < sizeof local_args / sizeof *local_args && err == CL_SUCCESS; i++)
        err = clSetKernelArg(r->k, local_args[i], 8, NULL);
    size_t kwg = 0;
    cl_ulong kstatic = 0;
    if (err == CL_SUCCESS)
        err = clGetKernelWorkGroupInfo(r->k, r->ctx->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof kwg, &kwg, NULL);
    if (err == CL_SUCCESS)
        err = clGetKernelWorkGroupInfo(r->k, r->ctx->device, CL_KERNEL_LOCAL_MEM_SIZE, sizeof kstatic, &kstatic,
                                       NULL);
    if (err != CL_SUCCESS)
        return clred_fail_cl(err, name);
    uint64_t avail = r->ctx->info.local_mem > kstatic ? r->ctx->info.local_mem - kstatic : 0;
    size_t cap = r->ctx->info.is_cpu ? 1 : floor_pow2(kwg < STATS_GROUP_CAP ? (kwg ? kwg : 1) : STATS_GROUP_CAP);
    size_t want = cap < 64 ? cap : 64;
    size_t l = 0;
    unsigned bits = 16;
    for (; bits >= 8; bits--) {
        l = cap;
        while (l > 1 && local_bytes(r, bits, l) > avail)
            l /= 2;
        if (local_bytes(r, bits, l) <= avail && (l >= want || bits == 8))
            break;
    }
    if (bits < 8 || local_bytes(r, bits, l) > avail)
        return clred_fail(CLRED_ERR_DEVICE, "stats: kernel %s needs %zu bytes of local memory, %s has %llu", name,
                          local_bytes(r, 8, 1), r->ctx->info.name, (unsigned long long)avail);
    size_t cus = r->ctx->info.compute_units ? r->ctx->info.compute_units : 1;
    size_t groups = cus * (r->ctx->info.is_cpu ? STATS_GROUPS_PER_CORE : 2);
    r->digit_bits = bits;
    r->local = l;
    r->groups = groups < r->rh ? groups : r->rh; /* a group walks whole rows */
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

/* An acc_t argument: double or float as the program was built. */
static clred_status set_acc_arg(const stats_run *r, cl_kernel k, const char *name, cl_uint index, double v)
{
    cl_double d = v;
    cl_float f = (cl_float)v;
    return r->use_double ? set_arg(k, name, index, sizeof d, &d) : set_arg(k, name, index, sizeof f, &f);
}

/* The arguments that stay the same for every pass of one call. */
static clred_status set_fixed_args(stats_run *r)
{
    const char *name = "stats_select";
    cl_kernel k = r->k;
    size_t acc = r->use_double ? sizeof(cl_double) : sizeof(cl_float);
    CLRED_TRY(set_arg(k, name, 0, sizeof r->sci, &r->sci));
    CLRED_TRY(set_arg(k, name, 1, sizeof r->mask, &r->mask));
    CLRED_TRY(set_arg(k, name, 2, sizeof r->ignore, &r->ignore));
    CLRED_TRY(set_arg(k, name, 3, sizeof r->width, &r->width));
    CLRED_TRY(set_arg(k, name, 4, sizeof r->x0, &r->x0));
    CLRED_TRY(set_arg(k, name, 5, sizeof r->y0, &r->y0));
    CLRED_TRY(set_arg(k, name, 6, sizeof r->rw, &r->rw));
    CLRED_TRY(set_arg(k, name, 7, sizeof r->rh, &r->rh));
    CLRED_TRY(set_arg(k, name, 16, sizeof r->hist, &r->hist));
    CLRED_TRY(set_arg(k, name, 17, ((size_t)1 << r->digit_bits) * sizeof(cl_uint), NULL));
    CLRED_TRY(set_arg(k, name, 21, sizeof r->pabove, &r->pabove));
    CLRED_TRY(set_arg(k, name, 22, r->local * sizeof(cl_ulong), NULL));
    CLRED_TRY(set_arg(k, name, 25, sizeof r->pcount, &r->pcount));
    CLRED_TRY(set_arg(k, name, 26, sizeof r->psums, &r->psums));
    CLRED_TRY(set_arg(k, name, 27, sizeof r->pminmax, &r->pminmax));
    CLRED_TRY(set_arg(k, name, 28, r->local * sizeof(cl_uint), NULL));
    CLRED_TRY(set_arg(k, name, 29, r->local * 2 * acc, NULL));
    CLRED_TRY(set_arg(k, name, 30, r->local * 2 * sizeof(cl_float), NULL));
    CLRED_TRY(set_arg(k, name, 35, sizeof r->pedges, &r->pedges));
    return set_arg(k, name, 36, r->local * 2 * sizeof(cl_uint), NULL);
}

/* ------------------------------------------------------------ setup */

static void run_release(stats_run *r)
{
    clred_release(&r->hist);
    clred_release(&r->pabove);
    clred_release(&r->pcount);
    clred_release(&r->psums);
    clred_release(&r->pminmax);
    clred_release(&r->pedges);
    free(r->hhist);
    free(r->hedges);
    free(r->h0);
    free(r->habove);
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
    r->rh = (cl_uint)(region[3] - region[2]);
    r->n = r->rw * r->rh;
    r->use_double = ctx->use_double;
    CLRED_TRY(clred_kernel(ctx, "stats", NULL, "stats_select", &r->k));
    CLRED_TRY(plan_launch(r));

    size_t acc = r->use_double ? sizeof(cl_double) : sizeof(cl_float);
    size_t nbins = (size_t)1 << r->digit_bits, g = r->groups;
    CLRED_TRY(clred_buffer(ctx, CL_MEM_READ_WRITE, nbins * sizeof(cl_uint), NULL, &r->hist, "stats histogram"));
    CLRED_TRY(clred_buffer(ctx, CL_MEM_WRITE_ONLY, g * sizeof(cl_ulong), NULL, &r->pabove, "stats upper keys"));
    CLRED_TRY(clred_buffer(ctx, CL_MEM_WRITE_ONLY, g * sizeof(cl_uint), NULL, &r->pcount, "stats counts"));
    CLRED_TRY(clred_buffer(ctx, CL_MEM_WRITE_ONLY, g * 2 * acc, NULL, &r->psums, "stats sums"));
    CLRED_TRY(clred_buffer(ctx, CL_MEM_WRITE_ONLY, g * 2 * sizeof(cl_float), NULL, &r->pminmax, "stats extrema"));
    CLRED_TRY(clred_buffer(ctx, CL_MEM_WRITE_ONLY, g * 2 * sizeof(cl_uint), NULL, &r->pedges, "stats edge counts"));
    r->hhist = malloc(nbins * sizeof *r->hhist);
    r->habove = malloc(g * sizeof *r->habove);
    r->hcount = malloc(g * sizeof *r->hcount);
    r->hsums = malloc(g * 2 * acc);
    r->hminmax = malloc(g * 2 * sizeof *r->hminmax);
    r->hedges = malloc(g * 2 * sizeof *r->hedges);
    r->h0 = malloc(nbins * sizeof *r->h0);
    if (!r->hhist || !r->habove || !r->hcount || !r->hsums || !r->hminmax || !r->hedges || !r->h0)
        return clred_fail(CLRED_ERR_MEMORY, "stats: out of host memory for partial results");
    return set_fixed_args(r);
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

/* What one pass asks besides the histogram. */
typedef struct {
    int want_above;
    cl_ulong above_prefix, above_mask;
    int want_sums;
    double sum_shift;
    int want_edges;
    cl_ulong edge_lo, edge_hi, edge_mask;
} pass_extras;

static clred_status select_pass(stats_run *r, kept_range range, int deviation, double centre, cl_ulong prefix,
                                cl_ulong prefix_mask, cl_uint shift, cl_uint nbins, const pass_extras *x)
{
    const char *name = "stats_select";
    cl_kernel k = r->k;
    cl_uint dev = (cl_uint)deviation, want_above = (cl_uint)x->want_above, want_sums = (cl_uint)x->want_sums;
    CLRED_TRY(clred_fill_zero(r->ctx, r->hist, nbins * sizeof(cl_uint)));
    CLRED_TRY(set_arg(k, name, 8, sizeof range.lo, &range.lo));
    CLRED_TRY(set_arg(k, name, 9, sizeof range.hi, &range.hi));
    CLRED_TRY(set_arg(k, name, 10, sizeof dev, &dev));
    CLRED_TRY(set_acc_arg(r, k, name, 11, centre));
    CLRED_TRY(set_arg(k, name, 12, sizeof prefix, &prefix));
    CLRED_TRY(set_arg(k, name, 13, sizeof prefix_mask, &prefix_mask));
    CLRED_TRY(set_arg(k, name, 14, sizeof shift, &shift));
    CLRED_TRY(set_arg(k, name, 15, sizeof nbins, &nbins));
    CLRED_TRY(set_arg(k, name, 18, sizeof want_above, &want_above));
    CLRED_TRY(set_arg(k, name, 19, sizeof x->above_prefix, &x->above_prefix));
    CLRED_TRY(set_arg(k, name, 20, sizeof x->above_mask, &x->above_mask));
    CLRED_TRY(set_arg(k, name, 23, sizeof want_sums, &want_sums));
    CLRED_TRY(set_acc_arg(r, k, name, 24, x->sum_shift));
    cl_uint want_edges = (cl_uint)x->want_edges;
    CLRED_TRY(set_arg(k, name, 31, sizeof want_edges, &want_edges));
    CLRED_TRY(set_arg(k, name, 32, sizeof x->edge_lo, &x->edge_lo));
    CLRED_TRY(set_arg(k, name, 33, sizeof x->edge_hi, &x->edge_hi));
    CLRED_TRY(set_arg(k, name, 34, sizeof x->edge_mask, &x->edge_mask));
    size_t global = r->local * r->groups;
    CLRED_TRY(clred_run(r->ctx, k, name, 1, &global, &r->local));
    return clred_download(r->ctx, r->hist, 0, nbins * sizeof(cl_uint), r->hhist);
}

/* The smallest key of the groups' partial minima. */
static clred_status finish_above(stats_run *r, cl_ulong *key)
{
    CLRED_TRY(clred_download(r->ctx, r->pabove, 0, r->groups * sizeof(cl_ulong), r->habove));
    cl_ulong best = ~(cl_ulong)0;
    for (size_t g = 0; g < r->groups; g++)
        if (r->habove[g] < best)
            best = r->habove[g];
    if (best == ~(cl_ulong)0)
        return clred_fail(CLRED_ERR_DEVICE, "stats: no upper middle value found on %s", r->ctx->info.name);
    *key = best;
    return CLRED_OK;
}

/* Count, mean, std, min and max of the kept set from the groups' partials. */
static clred_status finish_sums(stats_run *r, double shift, size_t n, set_stats *s)
{
    size_t acc = r->use_double ? sizeof(cl_double) : sizeof(cl_float);
    CLRED_TRY(clred_download(r->ctx, r->pcount, 0, r->groups * sizeof(cl_uint), r->hcount));
    CLRED_TRY(clred_download(r->ctx, r->psums, 0, r->groups * 2 * acc, r->hsums));
    CLRED_TRY(clred_download(r->ctx, r->pminmax, 0, r->groups * 2 * sizeof(cl_float), r->hminmax));
    size_t count = 0;
    double sum = 0, sumsq = 0, vmin = INFINITY, vmax = -INFINITY;
    for (size_t g = 0; g < r->groups; g++) {
        count += r->hcount[g];
        sum += r->use_double ? ((const double *)r->hsums)[2 * g] : ((const float *)r->hsums)[2 * g];
        sumsq += r->use_double ? ((const double *)r->hsums)[2 * g + 1] : ((const float *)r->hsums)[2 * g + 1];
        if (r->hminmax[2 * g] < vmin)
            vmin = r->hminmax[2 * g];
        if (r->hminmax[2 * g + 1] > vmax)
            vmax = r->hminmax[2 * g + 1];
    }
    if (count != n)
        return clred_fail(CLRED_ERR_DEVICE, "stats: reduction counted %zu pixels, selection %zu, on %s", count, n,
                          r->ctx->info.name);
    double dmean = sum / (double)count;
    double var = sumsq / (double)count - dmean * dmean;
    s->mean = shift + dmean;
    s->std = var > 0 ? sqrt(var) : 0.0;
    s->min = vmin;
    s->max = vmax;
    return CLRED_OK;
}

/* Where the upper middle key of an even count stands after a pass. */
enum upper_state { UPPER_SAME, UPPER_PENDING, UPPER_KNOWN };

/* The first-digit bucket of a float value's key. */
static cl_uint float_bucket(float v, unsigned bits)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    u ^= (u >> 31) ? 0xffffffffu : 0x80000000u;
    return u >> (32 - bits);
}

static clred_status finish_edges(stats_run *r, size_t *nlo, size_t *nhi)
{
    CLRED_TRY(clred_download(r->ctx, r->pedges, 0, r->groups * 2 * sizeof(cl_uint), r->hedges));
    *nlo = *nhi = 0;
    for (size_t g = 0; g < r->groups; g++) {
        *nlo += r->hedges[2 * g];
        *nhi += r->hedges[2 * g + 1];
    }
    return CLRED_OK;
}

/* The bucket holding rank (0-based) of histogram h, and rank within it. */
static cl_uint bucket_of(const cl_uint *h, cl_uint nbins, size_t *rank)
{
    cl_uint b = 0;
    while (b < nbins && *rank >= h[b])
        *rank -= h[b++];
    return b;
}

/* The first-digit histogram of the values in range, which lies inside
 * r->h0_range, from r->h0 without a pass of its own: buckets wholly inside
 * the range keep their counts, those outside have none, and the two that hold
 * the range's ends are counted by the pass that refines the median's bucket.
 * That bucket is guessed from h0 with half of each end bucket kept (clipping
 * cuts far out in the tails, so the guess rarely misses); a miss costs one
 * more pass, never exactness. Leaves the exact histogram in r->h0, the
 * refinement of `*guess` in r->hhist and, when x asks, the sums. */
static clred_status derive_first_digit(stats_run *r, kept_range range, unsigned bits0, unsigned bits1,
                                       pass_extras *x, cl_uint *guess)
{
    const cl_uint nbins0 = 1u << bits0, shift0 = 64 - bits0, shift1 = shift0 - bits1;
    const cl_uint bl = float_bucket(range.lo, bits0), bh = float_bucket(range.hi, bits0);
    for (cl_uint b = 0; b < nbins0; b++)
        if (b < bl || b > bh)
            r->h0[b] = 0;
    size_t total = 0;
    for (cl_uint b = bl; b <= bh && b < nbins0; b++)
        total += (b == bl || b == bh) ? r->h0[b] / 2 : r->h0[b];
    size_t rank = total ? (total - 1) / 2 : 0;
    cl_uint b = 0;
    for (size_t below = 0; b < nbins0; b++) {
        size_t c = (b == bl || b == bh) ? r->h0[b] / 2 : r->h0[b];
        if (rank < below + c)
            break;
        below += c;
    }
    *guess = b < nbins0 ? b : bl;
    x->want_edges = 1;
    x->edge_lo = (cl_ulong)bl << shift0;
    x->edge_hi = (cl_ulong)bh << shift0;
    x->edge_mask = (cl_ulong)(nbins0 - 1) << shift0;
    x->sum_shift = key_value(r, 0, (cl_ulong)*guess << shift0);
    CLRED_TRY(select_pass(r, range, 0, 0.0, (cl_ulong)*guess << shift0, x->edge_mask, shift1, 1u << bits1, x));
    x->want_edges = 0;
    size_t nlo, nhi;
    CLRED_TRY(finish_edges(r, &nlo, &nhi));
    r->h0[bl] = (cl_uint)nlo;
    r->h0[bh] = (cl_uint)nhi; /* the same count when bl == bh */
    return CLRED_OK;
}

/* The median of the kept values (deviation = 0) or of their deviations
 * |x - centre| (deviation = 1), exactly: the middle key by radix selection, and
 * for an even count the mean of the two middle values. *n gets the count. When
 * the count equals stop_if_n (nonzero), returns at once with *n set and no value:
 * the caller's set has not changed. With sums (values only), the last pass also
 * fills s's mean, std, min and max, shifted by a value of the median's bucket.
 * Values in a range inside the previous call's take their first digit from
 * that call's histogram (derive_first_digit): one pass per clipping iteration
 * where the key's two 16-bit digits need two. */
static clred_status select_median(stats_run *r, kept_range range, int deviation, double centre, size_t stop_if_n,
                                  size_t *n, double *value, set_stats *sums)
{
    const unsigned bits_total = key_bits(r, deviation);
    const unsigned bits0 = bits_total < r->digit_bits ? bits_total : r->digit_bits;
    const unsigned bits1 = bits_total - bits0 < r->digit_bits ? bits_total - bits0 : r->digit_bits;
    const cl_uint nbins0 = 1u << bits0, shift0 = 64 - bits0;
    cl_ulong prefix = 0, prefix_mask = 0, upper_key = 0;
    pass_extras x = {0, 0, 0, 0, 0.0, 0, 0, 0, 0};
    enum upper_state upper = UPPER_SAME;
    size_t total = 0, rank = 0;

    /* The first digit: from the previous histogram, or a pass of its own. */
    const int derived = !deviation && r->h0_valid && bits1 > 0 && range.lo >= r->h0_range.lo &&
                        range.hi <= r->h0_range.hi;
    cl_uint guess = 0;
    if (derived) {
        x.want_sums = bits0 + bits1 == bits_total && sums != NULL;
        CLRED_TRY(derive_first_digit(r, range, bits0, bits1, &x, &guess));
    } else {
        CLRED_TRY(select_pass(r, range, deviation, centre, 0, 0, shift0, nbins0, &x));
        if (!deviation)
            memcpy(r->h0, r->hhist, nbins0 * sizeof *r->h0);
    }
    const cl_uint *h = deviation ? r->hhist : r->h0;
    if (!deviation) {
        r->h0_valid = 1;
        r->h0_range = range;
    }
    for (cl_uint b = 0; b < nbins0; b++)
        total += h[b];
    *n = total;
    if (total == 0 || total == stop_if_n)
        return CLRED_OK;
    rank = (total - 1) / 2;
    int reuse = derived; /* r->hhist holds the refinement of bucket `guess` */

    for (unsigned done = 0; done < bits_total;) {
        unsigned bits = bits_total - done < r->digit_bits ? bits_total - done : r->digit_bits;
        cl_uint shift = 64 - done - bits, nbins = 1u << bits;
        int last = done + bits == bits_total;
        if (done > 0) {
            x.want_above = upper == UPPER_PENDING;
            x.want_sums = last && sums != NULL;
            x.sum_shift = key_value(r, deviation, prefix);
            if (!reuse || x.want_above)
                CLRED_TRY(select_pass(r, range, deviation, centre, prefix, prefix_mask, shift, nbins, &x));
            reuse = 0;
            if (x.want_above) {
                CLRED_TRY(finish_above(r, &upper_key));
                upper = UPPER_KNOWN;
            }
        }
        const cl_uint *hist = done == 0 ? h : r->hhist;
        cl_uint b = bucket_of(hist, nbins, &rank);
        if (b == nbins)
            return clred_fail(CLRED_ERR_DEVICE, "stats: inconsistent histogram counts on %s", r->ctx->info.name);
        if (done == 0 && b != guess)
            reuse = 0; /* the guess missed: refine the right bucket */
        /* The upper middle value leaves the bucket when the lower one is the
         * bucket's last: it is then the smallest key of the next non-empty
         * bucket, exact at the last digit, else found by the next pass. */
        if (total % 2 == 0 && upper == UPPER_SAME && rank + 1 >= hist[b]) {
            cl_uint b2 = b + 1;
            while (b2 < nbins && hist[b2] == 0)
                b2++;
            if (b2 == nbins)
                return clred_fail(CLRED_ERR_DEVICE, "stats: no upper middle value found on %s", r->ctx->info.name);
            x.above_prefix = prefix | (cl_ulong)b2 << shift;
            x.above_mask = prefix_mask | (cl_ulong)(nbins - 1) << shift;
            upper_key = x.above_prefix;
            upper = last ? UPPER_KNOWN : UPPER_PENDING;
        }
        prefix |= (cl_ulong)b << shift;
        prefix_mask |= (cl_ulong)(nbins - 1) << shift;
        done += bits;
        if (last && sums)
            CLRED_TRY(finish_sums(r, x.sum_shift, total, sums));
    }
    double lower = key_value(r, deviation, prefix);
    double upper_value = upper == UPPER_SAME ? lower : key_value(r, deviation, upper_key);
    *value = total % 2 ? lower : (lower + upper_value) / 2.0;
    return CLRED_OK;
}

/* Median, mean, std, min and max of the kept set; *unchanged when it still
 * holds previous_n pixels (it can only shrink), in which case s is untouched. */
static clred_status measure(stats_run *r, kept_range range, size_t previous_n, set_stats *s, int *unchanged)
{
    set_stats next = {0};
    double median = NAN;
    CLRED_TRY(select_median(r, range, 0, 0.0, previous_n, &next.n, &median, &next));
    *unchanged = previous_n != 0 && next.n == previous_n;
    if (*unchanged)
        return CLRED_OK;
    next.median = median;
    *s = next;
    return CLRED_OK;
}

static clred_status measure_mad(stats_run *r, kept_range range, set_stats *s)
{
    if (s->have_mad || s->n == 0)
        return CLRED_OK;
    size_t n = 0;
    CLRED_TRY(select_median(r, range, 1, s->median, 0, &n, &s->mad, NULL));
    s->have_mad = 1;
    return CLRED_OK;
}

/* ------------------------------------------------------------ clipping */

clred_status clred_stats_clip(stats_measurer *m, const clred_stats_opts *o, clred_stats *out)
{
    kept_range range = {-INFINITY, INFINITY};
    set_stats cur;
    int unchanged = 0, index = 0;
    CLRED_TRY(m->measure(m, index++, range, 0, &cur, &unchanged));
    if (m->gave_up)
        return CLRED_OK;
    const size_t nvalid = cur.n;
    int iters = 0;
    while (cur.n > 0 && iters < o->max_iters) {
        iters++;
        if (o->spread_mad) {
            CLRED_TRY(m->mad(m, range, &cur));
            if (m->gave_up)
                return CLRED_OK;
        }
        double centre = o->centre_mean ? cur.mean : cur.median;
        double spread = o->spread_mad ? CLRED_MAD_TO_SIGMA * cur.mad : cur.std;
        kept_range next = {clred_float_at_or_above(centre - o->sigma_lower * spread),
                           clred_float_at_or_below(centre + o->sigma_upper * spread)};
        if (next.lo < range.lo)
            next.lo = range.lo;
        if (next.hi > range.hi)
            next.hi = range.hi;
        CLRED_TRY(m->measure(m, index++, next, cur.n, &cur, &unchanged));
        if (m->gave_up)
            return CLRED_OK;
        if (unchanged)
            break;
        range = next;
    }
    if (cur.n > 0) {
        CLRED_TRY(m->mad(m, range, &cur));
        if (m->gave_up)
            return CLRED_OK;
    }
    out->npix = cur.n;
    out->nrejected = nvalid - cur.n;
    out->ninvalid = m->npix - nvalid;
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

/* Radix selection as a stats_measurer. */
typedef struct {
    stats_measurer base;
    stats_run *r;
} select_measurer;

static clred_status select_measure(stats_measurer *m, int index, kept_range range, size_t previous_n, set_stats *s,
                                   int *unchanged)
{
    (void)index;
    return measure(((select_measurer *)m)->r, range, previous_n, s, unchanged);
}

static clred_status select_mad(stats_measurer *m, kept_range range, set_stats *s)
{
    return measure_mad(((select_measurer *)m)->r, range, s);
}

static clred_status clip(stats_run *r, const clred_stats_opts *o, clred_stats *out)
{
    select_measurer m = {{select_measure, select_mad, r->n, 0}, r};
    return clred_stats_clip(&m.base, o, out);
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
    /* The bin method where it applies and answers; radix selection otherwise
     * (CLRED_STATS_METHOD=radix forces it, for comparisons). */
    const char *method = getenv("CLRED_STATS_METHOD");
    if (!method || strcmp(method, "radix") != 0) {
        int done = 0;
        CLRED_TRY(clred_stats_bins(ctx, sci, mask, opts->ignore_bits, width, region, opts, out, &done));
        if (done)
            return CLRED_OK;
    }
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
