/* The spectral region found from the trace (clred_trace_region_find, host
 * only) against the CUTE-like simulator's truth: its trace centre, and the
 * mask it writes (rows within spectral_half = 5 trace sigmas of the centre)
 * widened by the half of the peaks' separation where the trace has split,
 * which the simulator's fixed band leaves out. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static float median_at(const clred_image *frames, size_t n, size_t i)
{
    float v[16];
    for (size_t k = 0; k < n; k++)
        v[k] = frames[k].sci[i];
    qsort(v, n, sizeof *v, cmp_float);
    return 0.5f * (v[(n - 1) / 2] + v[n / 2]);
}

/* The per-pixel median of the science frames less that of the darks, as
 * clred proxy fits it (the dark signal's groups and the hot pixels would
 * hide the trace). */
static void median_frame(const clred_cute_sim *s, clred_image *med)
{
    for (size_t i = 0; i < s->opts.width * s->opts.height; i++)
        med->sci[i] = median_at(s->science, s->opts.nscience, i) - median_at(s->darks, s->opts.ndarks, i);
}

/* The default simulation's proportions (100 rows: sigma 3, split 12, 15
 * spectral rows each side) on fewer columns. */
static void check_region(size_t width, size_t height, uint64_t seed)
{
    clred_cute_sim_opts so = clred_cute_sim_defaults();
    so.width = width, so.height = height, so.ndarks = 6, so.nscience = 5, so.seed = seed;
    so.sigma = 0.03 * (double)height, so.split_max = 0.12 * (double)height, so.spectral_half = height * 15 / 100;
    so.ngroups = 64;
    clred_cute_sim s;
    CHECK_OK(clred_cute_simulate(&so, &s));
    if (!s.science)
        return;
    double centre = s.opts.centre; /* the simulator's default: height / 2 */
    clred_image med;
    CHECK_OK(clred_image_alloc(&med, width, height, 0, 0));
    median_frame(&s, &med);
    uint8_t *mask = malloc(width * height);
    clred_trace_region r;
    CHECK_OK(clred_trace_region_find(&med, NULL, mask, &r));
    /* Tolerances: the centre within 0.75 row, under half the trace sigma
     * (each bin's centre is good to ~0.05 row, but the quadratic's ends rest
     * on few bins: seen 0.53 row at x = 0 of the 60-row set, 0.02 elsewhere);
     * the half-width within 1 row of the truth's (k = 5 multiplies the
     * fitted width's error of a few per cent of sigma; seen 0.2), and then
     * every pixel of the mask within one row of the truth band's edge. */
    double worst_c = 0, worst_h = 0;
    size_t differ = 0, edge_off = 0;
    for (size_t x = 0; x < width; x++) {
        double u = 2.0 * (double)x / (double)(width - 1) - 1.0;
        double c = clred_trace_region_poly(r.centre, r.order, u);
        double h = 0.5 * fmax(clred_trace_region_poly(r.split, r.order, u), 0) +
                   r.k * fmax(clred_trace_region_poly(r.sigma, r.order, u), 0);
        double split = so.split_max * (double)x / (double)(width - 1);
        double h_true = 0.5 * split + (double)so.spectral_half;
        worst_c = fmax(worst_c, fabs(c - centre));
        worst_h = fmax(worst_h, fabs(h - h_true));
        for (size_t y = 0; y < height; y++) {
            int truth = fabs((double)y - centre) <= h_true;
            int got = mask[y * width + x] != 0;
            differ += truth != got;
            /* a differing pixel must lie at the band's edge: within one row of it */
            edge_off += truth != got && fabs(fabs((double)y - centre) - h_true) > 1.0;
        }
    }
    size_t sim_band = 0, sim_inside = 0;
    for (size_t i = 0; i < width * height; i++) {
        sim_band += s.spectral[i];
        sim_inside += s.spectral[i] && mask[i];
    }
    fprintf(stderr,
            "%zu x %zu: %zu bins used, centre off by <= %.3f row, half-width by <= %.3f; %zu pixels differ from "
            "the truth band (%zu away from its edges); the simulator's mask: %zu of %zu inside\n",
            width, height, r.nbins_used, worst_c, worst_h, differ, edge_off, sim_inside, sim_band);
    CHECK_MSG(worst_c < 0.75, "centre off by %.3f rows", worst_c);
    CHECK_MSG(worst_h < 1.0, "half-width off by %.3f rows", worst_h);
    CHECK(edge_off == 0);
    /* the simulator's own mask (no split term) lies inside the found region
     * but for pixels at its edge (where the half-width is 15 and 14.99 was
     * fitted): at least 99 % */
    CHECK_MSG(sim_inside >= sim_band * 99 / 100, "%zu of the simulator's %zu spectral pixels outside",
              sim_band - sim_inside, sim_band);
    CHECK(r.nspectral > 0 && r.nbins_used >= width / 25 - 1);
    free(mask);
    clred_image_free(&med);
    clred_cute_sim_free(&s);
}

int main(void)
{
    check_region(400, 100, 3);
    check_region(300, 60, 5);

    /* bad options, and a frame without a trace (flat): no bin has a
     * positive Gaussian inside it, or the region is refused */
    clred_image flat;
    CHECK_OK(clred_image_alloc(&flat, 100, 40, 0, 0));
    uint8_t *mask = malloc(100 * 40);
    clred_trace_region_opts o = clred_trace_region_defaults();
    o.order = 4;
    CHECK(clred_trace_region_find(&flat, &o, mask, NULL) == CLRED_ERR_USAGE);
    o = clred_trace_region_defaults();
    o.k = 0;
    CHECK(clred_trace_region_find(&flat, &o, mask, NULL) == CLRED_ERR_USAGE);
    CHECK(clred_trace_region_find(NULL, NULL, mask, NULL) == CLRED_ERR_USAGE);
    for (size_t i = 0; i < 100 * 40; i++)
        flat.sci[i] = 100.0f;
    CHECK(clred_trace_region_find(&flat, NULL, mask, NULL) != CLRED_OK);
    free(mask);
    clred_image_free(&flat);
    return harness_finish();
}
