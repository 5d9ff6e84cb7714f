/* The sigma-clipping loop of the statistics step, shared by its two ways of
 * measuring a kept set: radix selection pass by pass (stats.c) and the
 * few-pass bin method (stats_bins.c). Not public API. */
#ifndef CLRED_STATS_CLIP_H
#define CLRED_STATS_CLIP_H

#include <float.h>
#include <math.h>

#include "stats.h"

typedef struct {
    float lo, hi;
} kept_range;

typedef struct {
    size_t n;
    double median, mean, std, min, max, mad;
    int have_mad;
} set_stats;

/* How one method measures the usable pixels in a range. measure: the median,
 * mean, std, min and max of the kept set into *s, or *unchanged (s untouched)
 * when it still holds previous_n (nonzero) pixels; index counts the calls
 * from 0. mad: s->mad of the set s describes, at most once (have_mad). A
 * method that cannot answer exactly sets gave_up; clip then stops and
 * returns CLRED_OK, and the caller measures another way. */
typedef struct stats_measurer {
    clred_status (*measure)(struct stats_measurer *m, int index, kept_range range, size_t previous_n,
                            set_stats *s, int *unchanged);
    clred_status (*mad)(struct stats_measurer *m, kept_range range, set_stats *s);
    size_t npix; /* pixels in the region */
    int gave_up;
} stats_measurer;

clred_status clred_stats_clip(stats_measurer *m, const clred_stats_opts *o, clred_stats *out);

/* The smallest float >= v, and the largest float <= v: the float range that
 * keeps exactly the floats whose double value lies in [lo, hi]. */
static inline float clred_float_at_or_above(double v)
{
    if (isnan(v) || v > FLT_MAX)
        return INFINITY;
    if (v < -FLT_MAX)
        return -INFINITY;
    float f = (float)v;
    return (double)f < v ? nextafterf(f, INFINITY) : f;
}

static inline float clred_float_at_or_below(double v)
{
    if (isnan(v) || v < -FLT_MAX)
        return -INFINITY;
    if (v > FLT_MAX)
        return INFINITY;
    float f = (float)v;
    return (double)f > v ? nextafterf(f, -INFINITY) : f;
}

/* The few-pass method; *done 0 when it could not answer exactly (the caller
 * then uses radix selection), with out untouched. */
clred_status clred_stats_bins(clred_ctx *ctx, cl_mem sci, cl_mem mask, cl_ushort ignore, size_t width,
                              const size_t region[4], const clred_stats_opts *o, clred_stats *out, int *done);

/* How often clred_stats_bins answered and gave up in this process. */
void clred_stats_bins_counts(unsigned long *answered, unsigned long *gave_up);
/* Tests: how many bins either side of a predicted bound are refined
 * (default 2; -1 refines none, so that a bound falls in an unrefined bin and
 * the method gives up), and whether the predicted MAD's bins are (mad > 0,
 * the default 1). */
void clred_stats_bins_windows(int bound, int mad);
/* Tests: whether the method may place a window of fine bins from a sample
 * (default 1; 0 keeps the top-16-bit bins), and how many times it has. */
void clred_stats_bins_zoom(int on);
unsigned long clred_stats_bins_zoomed(void);
/* Tests: whether the single pass is tried (default 1), a skew of its
 * prediction in robust sigmas (default 0; a few sigmas make it miss on that
 * side) and a factor on its gather capacities (default 1; 0 makes them
 * overflow), and how often it answered and missed (the two passes then
 * answered or gave up) in this process. */
void clred_stats_bins_one_pass(int on, double skew, double cap_scale);
void clred_stats_bins_one_pass_counts(unsigned long *hit, unsigned long *missed);
/* Tests: how many single passes ran the vector kernel (stats_bin_one) and
 * how many the key kernel (stats_bin_scan: not a CPU, a region below
 * clred_stats_bins_one_read_min, more than three holes, or a bound at zero
 * or infinite) in this process. */
void clred_stats_bins_one_read_counts(unsigned long *vector, unsigned long *keys);
/* The fewest pixels a region needs for the single read's vector kernel
 * (default 2^20; tests set 0). */
void clred_stats_bins_one_read_min(size_t pixels);

#endif
