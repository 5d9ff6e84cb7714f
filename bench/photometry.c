/* Aperture photometry of 10,000 positions on pair_ref.fits (stars, sky
 * gradient, noise, no cosmic rays): the sources clred_detect_sources finds
 * there (untimed) plus random positions up to 10,000, all at least one pixel
 * inside the frame with their annulus. clred_aperture_photometry with radius
 * 5, annulus 8..12, 3-sigma clipped median (5 iterations), in memory and
 * files in (frame + positions CSV) to catalog out. The positions go to
 * OUT/phot_positions.csv and the catalog to OUT/clred_photometry.csv for
 * bench/peers.py to compare with photutils on the same positions. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define PHOT_POSITIONS 10000
#define PHOT_SEED 0x5eed5eedULL

static clred_phot_opts phot_opts(void)
{
    clred_phot_opts o = clred_phot_defaults();
    o.radius = 5.0;
    o.annulus_in = 8.0;
    o.annulus_out = 12.0;
    o.clip_sigma = 3.0;
    o.max_iters = 5;
    return o;
}

static double next_uniform(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return (double)((*s * 2685821657736338717ULL) >> 11) * (1.0 / 9007199254740992.0);
}

/* Detected sources inside the margin, then uniform random positions. */
static clred_status make_positions(bench_run *run, const clred_image *img, double *x, double *y, size_t *nstars)
{
    clred_detect_opts d = clred_detect_defaults();
    clred_source *list = NULL;
    size_t n = 0;
    CLRED_TRY(clred_detect_sources(run->ctx, img, NULL, NULL, NAN, 0.0, &d, &list, &n));
    const clred_phot_opts o = phot_opts();
    double lo = o.annulus_out + 1.0, hix = (double)img->width - 1.0 - lo, hiy = (double)img->height - 1.0 - lo;
    size_t k = 0;
    for (size_t i = 0; i < n && k < PHOT_POSITIONS; i++)
        if (list[i].x >= lo && list[i].x <= hix && list[i].y >= lo && list[i].y <= hiy) {
            x[k] = list[i].x;
            y[k] = list[i].y;
            k++;
        }
    free(list);
    *nstars = k;
    uint64_t s = PHOT_SEED;
    for (; k < PHOT_POSITIONS; k++) {
        x[k] = lo + (hix - lo) * next_uniform(&s);
        y[k] = lo + (hiy - lo) * next_uniform(&s);
    }
    return CLRED_OK;
}

static clred_status write_positions(const char *path, const double *x, const double *y, size_t n)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return clred_fail(CLRED_ERR_IO, "%s: cannot create the positions file", path);
    fprintf(f, "x,y\n");
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%.17g,%.17g\n", x[i], y[i]);
    if (fclose(f) != 0)
        return clred_fail(CLRED_ERR_IO, "%s: writing the positions failed", path);
    return CLRED_OK;
}

static clred_status phot_memory(bench_run *run, const clred_image *img, const double *x, const double *y,
                                clred_phot *out, bench_result *res)
{
    const clred_phot_opts o = phot_opts();
    for (int rep = 0; rep <= run->repeat; rep++) {
        clred_ctx_timing_reset(run->ctx);
        double t0 = clred_now();
        CLRED_TRY(clred_aperture_photometry(run->ctx, img, x, y, PHOT_POSITIONS, &o, out));
        if (rep > 0)
            bench_keep_best(res, run->ctx, clred_now() - t0);
    }
    return CLRED_OK;
}

static clred_status phot_files_once(bench_run *run, const char *frame, const char *positions, const char *catalog)
{
    clred_image img;
    memset(&img, 0, sizeof img);
    double *x = NULL, *y = NULL;
    size_t n = 0;
    clred_phot *out = NULL;
    const clred_phot_opts o = phot_opts();
    clred_status st = clred_image_read(frame, 0, &img);
    if (st == CLRED_OK)
        st = clred_positions_read(positions, &x, &y, &n);
    if (st == CLRED_OK && !(out = malloc((n ? n : 1) * sizeof *out)))
        st = clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu photometry results", n);
    if (st == CLRED_OK)
        st = clred_aperture_photometry(run->ctx, &img, x, y, n, &o, out);
    if (st == CLRED_OK)
        st = clred_phot_write(NULL, catalog, out, n, NULL, 1);
    free(out);
    free(x);
    free(y);
    clred_image_free(&img);
    return st;
}

static clred_status phot_files(bench_run *run, const char *frame, const char *positions, bench_result *res)
{
    for (int rep = 0; rep <= run->repeat; rep++) {
        clred_ctx_timing_reset(run->ctx);
        double t0 = clred_now();
        CLRED_TRY(phot_files_once(run, frame, positions, res->output));
        if (rep > 0)
            bench_keep_best(res, run->ctx, clred_now() - t0);
    }
    return CLRED_OK;
}

clred_status bench_photometry(bench_run *run, bench_results *out)
{
    char frame[BENCH_PATH], positions[BENCH_PATH];
    bench_dir_path(run->dir, "pair_ref.fits", frame, sizeof frame);
    bench_dir_path(run->out, "phot_positions.csv", positions, sizeof positions);
    clred_image img;
    memset(&img, 0, sizeof img);
    CLRED_TRY(clred_image_read(frame, 0, &img));
    double *x = malloc(PHOT_POSITIONS * sizeof *x), *y = malloc(PHOT_POSITIONS * sizeof *y);
    clred_phot *res = malloc(PHOT_POSITIONS * sizeof *res);
    size_t nstars = 0;
    clred_status st = x && y && res ? CLRED_OK : clred_fail(CLRED_ERR_MEMORY, "out of memory for the positions");
    if (st == CLRED_OK)
        st = make_positions(run, &img, x, y, &nstars);
    if (st == CLRED_OK)
        st = write_positions(positions, x, y, PHOT_POSITIONS);
    bench_result *rm = NULL, *rf = NULL;
    if (st == CLRED_OK && !(rm = bench_results_add(out, "photometry", "memory")))
        st = clred_fail(CLRED_ERR_MEMORY, "out of memory for results");
    if (st == CLRED_OK)
        st = phot_memory(run, &img, x, y, res, rm);
    /* The least it moves: the frame read once; the apertures' and annuli's
     * pixels are re-read from cache. */
    double bytes = (double)img.width * (double)img.height * 4.0;
    if (st == CLRED_OK) {
        rm->model_bytes = bytes;
        snprintf(rm->note, sizeof rm->note, "%d positions (%zu detected stars), r 5, annulus 8-12", PHOT_POSITIONS,
                 nstars);
        /* rm is not used past here: adding a result may move the array */
        if (!(rf = bench_results_add(out, "photometry", "files")))
            st = clred_fail(CLRED_ERR_MEMORY, "out of memory for results");
    }
    if (st == CLRED_OK) {
        rf->model_bytes = bytes;
        snprintf(rf->output, sizeof rf->output, "%s/clred_photometry.csv", run->out);
        snprintf(rf->note, sizeof rf->note, "frame and positions CSV in, catalog CSV out");
        st = phot_files(run, frame, positions, rf);
    }
    if (st != CLRED_OK)
        out->n -= (size_t)(rm != NULL) + (size_t)(rf != NULL);
    free(x);
    free(y);
    free(res);
    clred_image_free(&img);
    return st;
}
