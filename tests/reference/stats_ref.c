/* Reference statistics: astropy.stats.sigma_clipped_stats(cenfunc='median',
 * stdfunc='std') in double precision, medians by selection (exact). std is the population std
 * (ddof = 0), the mean and std are two-pass, and the MAD is
 * median(|x - median(x)|) of the final set, raw (not scaled). */
#include "stats_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The k-th smallest of v[0..n) (0-based), by selection: v is permuted so
 * that v[k] holds it, everything before is <= and everything after >=.
 * Selection, not a sort, because the statistics tests take the median of
 * ~10^5 values several times per case (a qsort was ~70 % of test_stats);
 * the value is the same, the k-th of the sorted values. */
static double kth_smallest(double *v, size_t n, size_t k)
{
    /* Wirth's selection (Algorithms + Data Structures = Programs, 1976) */
    long lo = 0, hi = (long)n - 1, kk = (long)k;
    while (lo < hi) {
        double pivot = v[k];
        long i = lo, j = hi;
        do {
            while (v[i] < pivot)
                i++;
            while (pivot < v[j])
                j--;
            if (i <= j) {
                double t = v[i];
                v[i] = v[j];
                v[j] = t;
                i++;
                j--;
            }
        } while (i <= j);
        if (j < kk)
            lo = i;
        if (kk < i)
            hi = j;
    }
    return v[k];
}

/* The median of v[0..n) (v is permuted): the middle value, or the mean of
 * the two middle values. */
double stats_ref_median(double *v, size_t n)
{
    if (n == 0)
        return NAN;
    double upper = kth_smallest(v, n, n / 2);
    if (n % 2)
        return upper;
    double lower = v[0]; /* the largest of v[0..n/2): the (n/2 - 1)-th */
    for (size_t i = 1; i < n / 2; i++)
        lower = v[i] > lower ? v[i] : lower;
    return (lower + upper) / 2.0;
}

static double mean_of(const double *v, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += v[i];
    return s / (double)n;
}

static double std_of(const double *v, size_t n, double mean)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (v[i] - mean) * (v[i] - mean);
    return sqrt(s / (double)n);
}

static double mad_of(const double *v, size_t n, double median, double *scratch)
{
    for (size_t i = 0; i < n; i++)
        scratch[i] = fabs(v[i] - median);
    return stats_ref_median(scratch, n);
}

int stats_ref(const float *sci, const uint16_t *mask, size_t width, size_t height, const clred_stats_opts *opts,
              clred_stats *out)
{
    size_t x0 = 0, x1 = width, y0 = 0, y1 = height;
    if (opts->x0 || opts->x1 || opts->y0 || opts->y1) {
        x0 = opts->x0, x1 = opts->x1, y0 = opts->y0, y1 = opts->y1;
        if (x0 >= x1 || y0 >= y1 || x1 > width || y1 > height)
            return -1;
    }
    if (!(opts->sigma_lower >= 0) || !(opts->sigma_upper >= 0) || opts->max_iters < 0)
        return -1;
    size_t total = (x1 - x0) * (y1 - y0), n = 0;
    double *v = malloc(total * sizeof *v), *scratch = malloc(total * sizeof *scratch);
    if (!v || !scratch) {
        free(v);
        free(scratch);
        return -1;
    }
    for (size_t y = y0; y < y1; y++)
        for (size_t x = x0; x < x1; x++) {
            float f = sci[y * width + x];
            if (isfinite(f) && !(mask && (mask[y * width + x] & opts->ignore_bits)))
                v[n++] = f;
        }
    memset(out, 0, sizeof *out);
    out->ninvalid = total - n;
    const size_t nvalid = n;
    int iters = 0;
    while (n > 0 && iters < opts->max_iters) {
        iters++;
        memcpy(scratch, v, n * sizeof *v);
        double median = stats_ref_median(scratch, n);
        double centre = opts->centre_mean ? mean_of(v, n) : median;
        double spread = opts->spread_mad ? 1.482602218505602 * mad_of(v, n, median, scratch) : std_of(v, n, mean_of(v, n));
        double lo = centre - opts->sigma_lower * spread, hi = centre + opts->sigma_upper * spread;
        size_t kept = 0;
        for (size_t i = 0; i < n; i++)
            if (v[i] >= lo && v[i] <= hi)
                v[kept++] = v[i];
        size_t removed = n - kept;
        n = kept;
        if (removed == 0)
            break;
    }
    out->iterations = iters;
    out->npix = n;
    out->nrejected = nvalid - n;
    if (n == 0) {
        out->mean = out->median = out->std = out->mad = out->min = out->max = NAN;
    } else {
        out->mean = mean_of(v, n);
        out->std = std_of(v, n, out->mean);
        memcpy(scratch, v, n * sizeof *v);
        out->median = stats_ref_median(scratch, n);
        out->min = out->max = v[0];
        for (size_t i = 1; i < n; i++) {
            out->min = v[i] < out->min ? v[i] : out->min;
            out->max = v[i] > out->max ? v[i] : out->max;
        }
        out->mad = mad_of(v, n, out->median, scratch);
    }
    free(v);
    free(scratch);
    return 0;
}
